//! OCI layer tar → unpacked layer directory (overlay form; see the module comment).
//!
//! Every name is resolved inside the layer root: parents are opened one component at a
//! time without following symlinks, and the final component is created with `*at` calls
//! (`O_EXCL|O_NOFOLLOW`, `AT_SYMLINK_NOFOLLOW`) after any old entry is removed. A name with
//! `..`, a parent that is a symlink, a hardlink that leaves the layer, an overlay xattr or a
//! device node an unprivileged user cannot own is refused with an error naming the entry.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;

use cap_std::fs::Dir;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, XattrFlags};

use super::{is_overlay_xattr, opaque_xattr, OPAQUE_MARKER, WHITEOUT_PREFIX};
use crate::error::{Error, IoContext, Result};

/// Limits on what one layer may hold (security: bounded resources).
const MAX_PATH_BYTES: usize = 4096;
const MAX_DEPTH: usize = 256;
const MAX_ENTRIES: u64 = 4_000_000;

#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Root on the host may chown, create device nodes and set trusted xattrs.
    pub privileged: bool,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            privileged: crate::privilege::privileged(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyStats {
    /// Bytes of regular-file content (what docker reports as a layer's size).
    pub size: u64,
    pub entries: u64,
}

/// A directory whose final mode and mtime are set after its contents are written (so a
/// read-only directory can still be filled, and child writes do not bump its mtime).
struct DirFixup {
    path: Vec<Vec<u8>>,
    mode: u32,
    mtime: i64,
}

/// Apply the layer tar read from `input` into `root`, an empty or partially filled layer
/// directory. Reads `input` only as far as the tar's end; callers that hash the stream drain
/// the rest themselves.
pub fn apply_layer<R: Read>(root: &Dir, input: R, opts: &ApplyOptions) -> Result<ApplyStats> {
    apply(root, input, opts, None)
}

/// [`apply_layer`] of a tar that [`write_layer`](super::write_layer) is making from
/// `source` as it is read (see [`write_and_unpack`](super::write_and_unpack)): a regular
/// file is moved from `source` into `root` (a rename: no new inode, no copy) instead of
/// being written from the tar, when `source` holds at that path a regular file of the
/// entry's size with one link and no xattr the entry lacks (a kernel overlay's
/// `trusted.overlay.*` or metacopy file never qualifies); anything else, or a rename that
/// fails, is written from the tar as usual. Owner, mode, xattrs and mtime always come from
/// the tar, so `root` ends as `apply_layer` would leave it. `source` loses what is moved.
pub fn apply_layer_moving<R: Read>(
    root: &Dir,
    input: R,
    opts: &ApplyOptions,
    source: &Dir,
) -> Result<ApplyStats> {
    apply(root, input, opts, Some(source))
}

fn apply<R: Read>(
    root: &Dir,
    input: R,
    opts: &ApplyOptions,
    source: Option<&Dir>,
) -> Result<ApplyStats> {
    let mut source_cache: Option<(Vec<Vec<u8>>, Dir)> = None;
    let mut archive = tar::Archive::new(input);
    let mut stats = ApplyStats::default();
    let mut written: HashSet<Vec<u8>> = HashSet::new();
    let mut fixups: Vec<DirFixup> = Vec::new();
    let mut parent_cache: Option<(Vec<Vec<u8>>, Dir)> = None;

    let entries = archive
        .entries()
        .map_err(|e| Error::Layer(format!("read tar: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| Error::Layer(format!("read tar: {e}")))?;
        stats.entries += 1;
        if stats.entries > MAX_ENTRIES {
            return Err(Error::Layer(format!("more than {MAX_ENTRIES} entries")));
        }
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader
                | tar::EntryType::XHeader
                | tar::EntryType::GNULongName
                | tar::EntryType::GNULongLink
        ) {
            continue;
        }
        let mut components = clean_path(&raw).map_err(|why| Error::entry(&shown, why))?;
        let Some(base) = components.pop() else {
            continue; // the root itself ("./"): a layer does not set the root's metadata
        };

        // Whiteouts and opaque markers.
        if let Some(hidden) = base.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            if base == OPAQUE_MARKER.as_bytes() {
                let dir = open_parent(root, &components, &mut parent_cache, true, &shown)?;
                set_opaque(&dir).map_err(|e| Error::entry(&shown, format!("mark opaque: {e}")))?;
                continue;
            }
            if hidden.starts_with(WHITEOUT_PREFIX.as_bytes()) {
                continue; // aufs metadata (.wh..wh.plnk, .wh..wh.aufs): not content
            }
            if hidden.is_empty() || hidden == b"." || hidden == b".." || hidden.contains(&b'/') {
                return Err(Error::entry(&shown, "invalid whiteout name"));
            }
            let mut full = components.clone();
            full.push(hidden.to_vec());
            if written.contains(&full.join(&b'/')) {
                continue; // this layer wrote the name itself; the whiteout only hides lowers
            }
            let dir = open_parent(root, &components, &mut parent_cache, true, &shown)?;
            remove_existing(&dir, hidden, &shown)?;
            rustix::fs::mknodat(
                &dir,
                OsStr::from_bytes(hidden),
                FileType::CharacterDevice,
                Mode::empty(),
                0,
            )
            .map_err(|e| Error::entry(&shown, format!("create whiteout: {e}")))?;
            continue;
        }

        let dir = open_parent(root, &components, &mut parent_cache, true, &shown)?;
        let name = OsStr::from_bytes(&base);
        let header = entry.header().clone();
        let mode = header
            .mode()
            .map_err(|e| Error::entry(&shown, format!("bad mode: {e}")))?
            & 0o7777;
        let mtime = header.mtime().unwrap_or(0) as i64;
        let xattrs = pax_xattrs(&mut entry, &shown)?;
        let existing = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW).ok();
        let existing_dir = existing
            .as_ref()
            .is_some_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory);

        if kind != tar::EntryType::Directory || !existing_dir {
            remove_existing(&dir, &base, &shown)?;
        }
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let moved = match source {
                    Some(src) if kind != tar::EntryType::GNUSparse => {
                        let want = Wanted {
                            size: entry.size(),
                            xattrs: &xattrs,
                            privileged: opts.privileged,
                        };
                        let from = &mut source_cache;
                        move_file(src, from, &components, &dir, name, &want, &shown)?
                    }
                    _ => None,
                };
                let file = match moved {
                    // Its data in the tar is skipped when the next entry is read.
                    Some(file) => {
                        stats.size += entry.size();
                        file
                    }
                    None => {
                        let fd = rustix::fs::openat(
                            &dir,
                            name,
                            OFlags::WRONLY
                                | OFlags::CREATE
                                | OFlags::EXCL
                                | OFlags::NOFOLLOW
                                | OFlags::CLOEXEC,
                            Mode::from_raw_mode(0o600),
                        )
                        .map_err(|e| Error::entry(&shown, format!("create: {e}")))?;
                        let mut file = std::fs::File::from(fd);
                        stats.size += io::copy(&mut entry, &mut file)
                            .map_err(|e| Error::entry(&shown, format!("write: {e}")))?;
                        file
                    }
                };
                finish_node(&file, &header, mode, opts, &xattrs, &shown)?;
                set_times_fd(&file, mtime);
            }
            tar::EntryType::Directory => {
                if !existing_dir {
                    rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(0o700))
                        .map_err(|e| Error::entry(&shown, format!("mkdir: {e}")))?;
                }
                let sub = crate::fs::DirHandle::open_dir_nofollow(&dir, name)
                    .map_err(|e| Error::entry(&shown, format!("open: {e}")))?;
                finish_node(&sub, &header, 0o700, opts, &xattrs, &shown)?;
                let mut path = components.clone();
                path.push(base.clone());
                fixups.push(DirFixup { path, mode, mtime });
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| Error::entry(&shown, "symlink without target"))?;
                rustix::fs::symlinkat(OsStr::from_bytes(&target), &dir, name)
                    .map_err(|e| Error::entry(&shown, format!("symlink: {e}")))?;
                if opts.privileged {
                    chown_at(&dir, name, &header, &shown)?;
                }
                set_times_at(&dir, name, mtime);
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| Error::entry(&shown, "hardlink without target"))?;
                let mut target_path = clean_path(&target)
                    .map_err(|why| Error::entry(&shown, format!("hardlink target {why}")))?;
                let target_base = target_path
                    .pop()
                    .ok_or_else(|| Error::entry(&shown, "hardlink to the root"))?;
                let target_dir = open_parent(root, &target_path, &mut None, false, &shown)
                    .map_err(|_| Error::entry(&shown, "hardlink target is not in this layer"))?;
                let st = rustix::fs::statat(
                    &target_dir,
                    OsStr::from_bytes(&target_base),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(|_| Error::entry(&shown, "hardlink target is not in this layer"))?;
                let ft = FileType::from_raw_mode(st.st_mode);
                if ft == FileType::Directory || (ft == FileType::CharacterDevice && st.st_rdev == 0)
                {
                    return Err(Error::entry(
                        &shown,
                        "hardlink target is a directory or a whiteout",
                    ));
                }
                rustix::fs::linkat(
                    &target_dir,
                    OsStr::from_bytes(&target_base),
                    &dir,
                    name,
                    AtFlags::empty(),
                )
                .map_err(|e| Error::entry(&shown, format!("hardlink: {e}")))?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let (ft, dev) = if kind == tar::EntryType::Fifo {
                    (FileType::Fifo, 0)
                } else {
                    if !opts.privileged {
                        return Err(Error::entry(
                            &shown,
                            "device node: only root can unpack device nodes",
                        ));
                    }
                    let major = header.device_major().ok().flatten().unwrap_or(0);
                    let minor = header.device_minor().ok().flatten().unwrap_or(0);
                    if kind == tar::EntryType::Char && major == 0 && minor == 0 {
                        return Err(Error::entry(
                            &shown,
                            "character device 0:0 is reserved for whiteouts",
                        ));
                    }
                    let ft = if kind == tar::EntryType::Char {
                        FileType::CharacterDevice
                    } else {
                        FileType::BlockDevice
                    };
                    (ft, rustix::fs::makedev(major, minor))
                };
                rustix::fs::mknodat(&dir, name, ft, Mode::from_raw_mode(mode & 0o777), dev)
                    .map_err(|e| Error::entry(&shown, format!("mknod: {e}")))?;
                if opts.privileged {
                    chown_at(&dir, name, &header, &shown)?;
                }
                set_times_at(&dir, name, mtime);
            }
            other => {
                return Err(Error::entry(
                    &shown,
                    format!("unsupported tar entry type {other:?}"),
                ))
            }
        }
        let mut full = components;
        full.push(base);
        written.insert(full.join(&b'/'));
    }

    // Deepest first, so setting a parent's mtime comes after its children are final.
    fixups.sort_by(|a, b| b.path.len().cmp(&a.path.len()));
    for fix in fixups {
        let shown = String::from_utf8_lossy(&fix.path.join(&b'/')).into_owned();
        let mut parent = fix.path.clone();
        let base = parent.pop().expect("non-empty");
        // A later entry may have replaced the directory with something else; then this
        // fixup is moot.
        let Ok(dir) = open_parent(root, &parent, &mut None, false, &shown) else {
            continue;
        };
        let Ok(sub) = crate::fs::DirHandle::open_dir_nofollow(&dir, OsStr::from_bytes(&base))
        else {
            continue;
        };
        rustix::fs::fchmod(&sub, Mode::from_raw_mode(fix.mode))
            .map_err(|e| Error::entry(&shown, format!("chmod: {e}")))?;
        set_times_fd(&sub, fix.mtime);
    }
    Ok(stats)
}

/// Split a tar name into clean components: leading `/` and `.` parts dropped (chroot
/// semantics), `..` refused.
fn clean_path(raw: &[u8]) -> std::result::Result<Vec<Vec<u8>>, String> {
    if raw.len() > MAX_PATH_BYTES {
        return Err("name too long".into());
    }
    if raw.contains(&0) {
        return Err("name contains NUL".into());
    }
    let mut out = Vec::new();
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err("path escapes the layer root (..)".into()),
            _ => out.push(part.to_vec()),
        }
    }
    if out.len() > MAX_DEPTH {
        return Err("path too deep".into());
    }
    Ok(out)
}

/// Open the directory `components` inside `root`, never following a symlink; create missing
/// directories when `create`. Reuses the previous entry's parent when it is the same.
fn open_parent(
    root: &Dir,
    components: &[Vec<u8>],
    cache: &mut Option<(Vec<Vec<u8>>, Dir)>,
    create: bool,
    shown: &str,
) -> Result<Dir> {
    if let Some((path, dir)) = cache {
        if path.as_slice() == components {
            return dir
                .try_clone()
                .context(|| format!("open parent of {shown}"));
        }
    }
    let mut dir = root.try_clone().context(|| "open layer root".into())?;
    for part in components {
        let name = OsStr::from_bytes(part);
        let next = match crate::fs::DirHandle::open_dir_nofollow(&dir, name) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(0o755))
                    .map_err(|e| Error::entry(shown, format!("create parent directory: {e}")))?;
                crate::fs::DirHandle::open_dir_nofollow(&dir, name)
                    .map_err(|e| Error::entry(shown, format!("open parent: {e}")))?
            }
            Err(_) => {
                return Err(Error::entry(
                    shown,
                    format!(
                    "parent {:?} is not a directory in this layer (a symlink is never followed)",
                    String::from_utf8_lossy(part)
                ),
                ))
            }
        };
        dir = next;
    }
    *cache = Some((
        components.to_vec(),
        dir.try_clone()
            .context(|| format!("open parent of {shown}"))?,
    ));
    Ok(dir)
}

/// What a file moved in place of a tar entry must be like to end as the entry would.
struct Wanted<'a> {
    size: u64,
    xattrs: &'a [(String, Vec<u8>)],
    privileged: bool,
}

/// Move the regular file at `components`/`name` in `source` to `name` in `to` (which has
/// no such entry), if it can stand for the tar entry described by `want` (see
/// [`apply_layer_moving`]), and return it open. `None`: nothing was moved.
fn move_file(
    source: &Dir,
    cache: &mut Option<(Vec<Vec<u8>>, Dir)>,
    components: &[Vec<u8>],
    to: &Dir,
    name: &OsStr,
    want: &Wanted<'_>,
    shown: &str,
) -> Result<Option<std::fs::File>> {
    let Ok(from) = open_parent(source, components, cache, false, shown) else {
        return Ok(None);
    };
    // Only a regular file is opened: opening a FIFO or a device could block or act.
    match rustix::fs::statat(&from, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile => {}
        _ => return Ok(None),
    }
    let Ok(fd) = rustix::fs::openat(
        &from,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return Ok(None);
    };
    let Ok(st) = rustix::fs::fstat(&fd) else {
        return Ok(None);
    };
    // One link: a moved inode is the layer's alone. Without privilege the file must have
    // the owner a new file would get, as nothing can chown it to the entry's.
    let own = want.privileged
        || (st.st_uid == rustix::process::geteuid().as_raw()
            && st.st_gid == rustix::process::getegid().as_raw());
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile
        || st.st_size as u64 != want.size
        || st.st_nlink != 1
        || !own
        || !xattrs_covered(&fd, want)
    {
        return Ok(None);
    }
    if rustix::fs::renameat_with(&from, name, to, name, rustix::fs::RenameFlags::NOREPLACE).is_err()
    {
        return Ok(None);
    }
    // The name moved must be the file checked (the source is private, so this only
    // catches a bug or a tampered directory; the entry is then refused).
    match rustix::fs::statat(to, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(now) if now.st_ino == st.st_ino && now.st_dev == st.st_dev => {}
        _ => {
            return Err(Error::entry(
                shown,
                "source file changed while it was moved",
            ))
        }
    }
    Ok(Some(std::fs::File::from(fd)))
}

/// Whether every xattr the open file has is one that applying the entry would set (so
/// none is left behind that an unpack would not make).
fn xattrs_covered(fd: impl rustix::fd::AsFd, want: &Wanted<'_>) -> bool {
    let mut names = vec![0u8; 4096];
    let n = match rustix::fs::flistxattr(&fd, &mut names) {
        Ok(n) => n,
        Err(rustix::io::Errno::NOTSUP) => 0,
        Err(_) => return false,
    };
    names[..n]
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
        .all(|name| {
            want.xattrs.iter().any(|(k, _)| {
                k.as_bytes() == name && (want.privileged || name.starts_with(b"user."))
            })
        })
}

/// Remove whatever is at `name` in `dir` (the OCI rule: an existing path is unlinked, then
/// recreated). A directory is removed with its contents, without following links.
fn remove_existing(dir: &Dir, name: &[u8], shown: &str) -> Result<()> {
    let name = OsStr::from_bytes(name);
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Err(_) => Ok(()),
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => dir
            .remove_dir_all(name)
            .map_err(|e| Error::entry(shown, format!("replace directory: {e}"))),
        Ok(_) => rustix::fs::unlinkat(dir, name, AtFlags::empty())
            .map_err(|e| Error::entry(shown, format!("replace: {e}"))),
    }
}

fn set_opaque(dir: &Dir) -> io::Result<()> {
    crate::fs::DirHandle::set_xattr(dir, opaque_xattr(), b"y")
}

/// The `SCHILY.xattr.*` records of an entry; overlay-private names are refused.
fn pax_xattrs<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    shown: &str,
) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    let Some(exts) = entry
        .pax_extensions()
        .map_err(|e| Error::entry(shown, format!("pax header: {e}")))?
    else {
        return Ok(out);
    };
    for ext in exts {
        let ext = ext.map_err(|e| Error::entry(shown, format!("pax header: {e}")))?;
        let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") else {
            continue;
        };
        if is_overlay_xattr(name) {
            return Err(Error::entry(
                shown,
                format!(
                    "overlay xattr {} is not allowed in a layer",
                    String::from_utf8_lossy(name)
                ),
            ));
        }
        out.push((
            String::from_utf8_lossy(name).into_owned(),
            ext.value_bytes().to_vec(),
        ));
    }
    Ok(out)
}

/// Owner, xattrs and mode of a file or directory we hold open. Owner first: chown clears
/// setuid bits.
fn finish_node(
    fd: impl rustix::fd::AsFd,
    header: &tar::Header,
    mode: u32,
    opts: &ApplyOptions,
    xattrs: &[(String, Vec<u8>)],
    shown: &str,
) -> Result<()> {
    if opts.privileged {
        let (uid, gid) = header_ids(header, shown)?;
        rustix::fs::fchown(&fd, Some(uid), Some(gid))
            .map_err(|e| Error::entry(shown, format!("chown: {e}")))?;
    }
    for (name, value) in xattrs {
        // Unprivileged users may only set user.* xattrs; others are dropped, as podman does.
        if !opts.privileged && !name.starts_with("user.") {
            continue;
        }
        rustix::fs::fsetxattr(&fd, name.as_str(), value, XattrFlags::empty())
            .map_err(|e| Error::entry(shown, format!("set xattr {name}: {e}")))?;
    }
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))
        .map_err(|e| Error::entry(shown, format!("chmod: {e}")))?;
    Ok(())
}

/// The entry's owner, range-checked.
fn header_ids(header: &tar::Header, shown: &str) -> Result<(rustix::fs::Uid, rustix::fs::Gid)> {
    let uid = header
        .uid()
        .map_err(|e| Error::entry(shown, format!("bad uid: {e}")))?;
    let gid = header
        .gid()
        .map_err(|e| Error::entry(shown, format!("bad gid: {e}")))?;
    ids(uid, gid).ok_or_else(|| Error::entry(shown, "uid or gid out of range"))
}

fn chown_at(dir: &Dir, name: &OsStr, header: &tar::Header, shown: &str) -> Result<()> {
    let (uid, gid) = header_ids(header, shown)?;
    rustix::fs::chownat(dir, name, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| Error::entry(shown, format!("chown: {e}")))
}

fn ids(uid: u64, gid: u64) -> Option<(rustix::fs::Uid, rustix::fs::Gid)> {
    // u32::MAX is the kernel's "no id"; anything above it does not exist.
    let uid = u32::try_from(uid).ok().filter(|&u| u != u32::MAX)?;
    let gid = u32::try_from(gid).ok().filter(|&g| g != u32::MAX)?;
    Some((
        rustix::fs::Uid::from_raw(uid),
        rustix::fs::Gid::from_raw(gid),
    ))
}

fn timestamps(mtime: i64) -> Timestamps {
    let t = Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

fn set_times_fd(fd: impl rustix::fd::AsFd, mtime: i64) {
    // Times are best effort: a wrong mtime never makes a layer unsafe.
    let _ = rustix::fs::futimens(fd, &timestamps(mtime));
}

fn set_times_at(dir: &Dir, name: &OsStr, mtime: i64) {
    let _ = rustix::fs::utimensat(dir, name, &timestamps(mtime), AtFlags::SYMLINK_NOFOLLOW);
}
