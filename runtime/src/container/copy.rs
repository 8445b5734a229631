//! `cp`: a container's files out as a tar, and a tar in, always through the container's root
//! as an `Overlay` (every name resolved one component at a time inside the root, symlinks
//! followed as a process in the container would follow them), never through a host path
//! taken from the container. The CLI turns docker's path rules into one `archive` and one
//! `extract`; a host directory on the other side is an `Overlay` with no lowers, so it gets
//! the same protection.
//!
//! Which root a container's files are reached through (`Containers::copy_root`):
//! - stopped or created: its image layers under its upper layer, with its claim held, so
//!   nothing mounts overlayfs over the upper directory while it is written;
//! - running on the Wasm backend: a second `Overlay` over the same directories as the
//!   guest's. An overlay holds directory handles and one cache of merged directories, which
//!   checks its hits against the upper layer (`Overlay::child_cached`), so the guest sees
//!   what `cp` wrote as a second process sees another's writes;
//! - running natively: the kernel overlayfs is mounted in the container's mount namespace
//!   and writing its upper directory underneath is undefined, so the copy goes through the
//!   container's own view, `/proc/<init>/root`, served as an overlay with no lowers (the
//!   same in-root resolution; it also reaches the container's bind mounts, as docker's does).

use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use cap_std::fs::Dir;
use rustix::fs::{FileType, Timestamps};

use super::{Claim, Container, Containers};
use crate::backend::Kind;
use crate::error::{Error, Result};
use crate::fs::{file_type, OpenOptions, Overlay, Stat};

/// A container's filesystem as `cp` reaches it, and what keeps that view valid.
pub struct CopyRoot {
    pub overlay: Overlay<Dir>,
    /// Held for a stopped container: it cannot start while its upper layer is written.
    _claim: Option<Claim>,
}

/// Who owns what `extract` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// The archive's numeric uid/gid (`cp -a`).
    FromArchive,
    /// 0:0, the container's root (docker's default for files copied into a container).
    Root,
    /// Whoever runs the copy (docker's default for files copied out to the host).
    Caller,
}

impl Containers<'_> {
    /// The root `cp` reads and writes `c` through (see the module's comment).
    pub fn copy_root(&self, c: &Container) -> Result<CopyRoot> {
        // A second try for a container that started between reading its record and claiming.
        for _ in 0..2 {
            let c = self.reload(c)?;
            if !c.running() {
                if let Some(claim) = self.claim(&c)? {
                    return Ok(CopyRoot {
                        overlay: self.root(&c)?,
                        _claim: Some(claim),
                    });
                }
                continue;
            }
            let overlay = match c.runtime {
                Kind::Wasm => self.root(&c)?,
                Kind::Native => native_root(&c)?,
            };
            return Ok(CopyRoot {
                overlay,
                _claim: None,
            });
        }
        Err(Error::Conflict(format!(
            "container {} is starting: try again",
            c.name
        )))
    }
}

/// The running native container's root as its own processes see it.
fn native_root(c: &Container) -> Result<Overlay<Dir>> {
    let not_running = || {
        Error::Conflict(format!(
            "container {} is not running (restarting): try again",
            c.name
        ))
    };
    let pid = c.live_pid().ok_or_else(not_running)?;
    let path = format!("/proc/{}/root", rustix::process::Pid::as_raw(Some(pid)));
    let fd = rustix::fs::open(
        &path,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| Error::io(format!("open {path}"), e.into()))?;
    // The init may have ended, and its pid been reused, between the check and the open.
    if c.live_pid() != Some(pid) {
        return Err(not_running());
    }
    Ok(Overlay::new(
        Vec::new(),
        Dir::from_std_file(std::fs::File::from(fd)),
    ))
}

/// A host directory as a root: what is read or written through it stays inside it.
pub fn host_dir(path: &Path) -> Result<Overlay<Dir>> {
    let dir = Dir::open_ambient_dir(path, cap_std::ambient_authority())
        .map_err(|e| Error::io(format!("open directory {}", path.display()), e))?;
    Ok(Overlay::new(Vec::new(), dir))
}

/// `archive` of (root, path, follow, name) into `extract` into (root, directory, owner),
/// the archive written on a second thread; the bytes of tar that went through. The
/// extracting side's error comes first: it is why the writing side's writes failed.
pub fn transfer(
    (from, path, follow, name): (&Overlay<Dir>, &OsStr, bool, &OsStr),
    (to, dir, owner): (&Overlay<Dir>, &OsStr, Owner),
) -> Result<u64> {
    let (reader, writer) = io::pipe().map_err(|e| Error::io("make a pipe".to_string(), e))?;
    std::thread::scope(|s| {
        let producer = s.spawn(move || archive(from, path, follow, name, writer).map(drop));
        let mut counted = Counted(reader, 0);
        let consumed = extract(to, dir, &mut counted, owner).and_then(|()| {
            // What the tar reader left (the end-of-archive blocks), so the writer finishes.
            io::copy(&mut counted, &mut io::sink())
                .map(drop)
                .map_err(|e| Error::io("read archive".to_string(), e))
        });
        let bytes = counted.1;
        drop(counted);
        let produced = producer
            .join()
            .unwrap_or_else(|_| Err(Error::Archive("the archive thread panicked".to_string())));
        consumed?;
        produced?;
        Ok(bytes)
    })
}

/// A reader that counts what it reads.
struct Counted<R>(R, u64);

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.0.read(buf)?;
        self.1 += n as u64;
        Ok(n)
    }
}

/// Whether `path` is a directory, and the path with every symlink (the last one too, with
/// `follow`) and `..` resolved inside the root; `None` when there is nothing there.
pub fn resolve(
    root: &Overlay<Dir>,
    path: &OsStr,
    follow: bool,
) -> Result<Option<(bool, OsString)>> {
    match root.stat_resolved(path, follow) {
        Ok((st, resolved)) => Ok(Some((
            file_type(&st) == FileType::Directory,
            absolute(&resolved),
        ))),
        Err(e) if missing(&e) => Ok(None),
        Err(e) => Err(Error::io(format!("stat {}", path.to_string_lossy()), e)),
    }
}

/// Nothing by that name (a component on the way may be a file: ENOTDIR, as `lstat` says).
fn missing(e: &io::Error) -> bool {
    let is = |errno: rustix::io::Errno| e.raw_os_error() == Some(errno.raw_os_error());
    is(rustix::io::Errno::NOENT) || is(rustix::io::Errno::NOTDIR)
}

/// Write `path` (a whole tree if it is a directory) to `out` as a tar whose top entry is
/// called `name`, or, when `name` is `.`, whose entries are the directory's contents.
/// Without `follow` a symlink at `path` is archived as itself; a path ending in `/` or `/.`
/// names what a link there points to. Links inside a tree are archived as links.
pub fn archive<W: Write>(
    root: &Overlay<Dir>,
    path: &OsStr,
    follow: bool,
    name: &OsStr,
    out: W,
) -> Result<W> {
    let bytes = path.as_bytes();
    let as_dir = bytes.ends_with(b"/") || bytes.ends_with(b"/.");
    let shown = path.to_string_lossy();
    let (st, resolved) = root
        .stat_resolved(path, follow || as_dir)
        .map_err(|e| Error::io(format!("stat {shown}"), e))?;
    if as_dir && file_type(&st) != FileType::Directory {
        return Err(Error::io(
            format!("stat {shown}"),
            rustix::io::Errno::NOTDIR.into(),
        ));
    }
    let mut tar = tar::Builder::new(out);
    let top = if name == "." { OsStr::new("") } else { name };
    append(root, &mut tar, &absolute(&resolved), &st, top)?;
    tar.into_inner()
        .map_err(|e| Error::io("write archive".to_string(), e))
}

/// One entry (named `name` in the tar, or the contents only when `name` is empty) and, for
/// a directory, everything under it.
fn append<W: Write>(
    root: &Overlay<Dir>,
    tar: &mut tar::Builder<W>,
    from: &OsStr,
    st: &Stat,
    name: &OsStr,
) -> Result<()> {
    let show = String::from_utf8_lossy(from.as_bytes()).into_owned();
    let io_err = |e: io::Error| Error::io(format!("archive {show}"), e);
    let mut h = tar::Header::new_gnu();
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(st.st_uid as u64);
    h.set_gid(st.st_gid as u64);
    h.set_mtime(st.st_mtime.max(0) as u64);
    h.set_size(0);
    match file_type(st) {
        FileType::Directory => {
            if !name.is_empty() {
                h.set_entry_type(tar::EntryType::Directory);
                tar.append_data(&mut h, name, io::empty()).map_err(io_err)?;
            }
            for e in root.read_dir(from).map_err(io_err)? {
                let child = join(from, &e.name);
                let child_st = root.stat(&child, false).map_err(io_err)?;
                let child_name = if name.is_empty() {
                    e.name.clone()
                } else {
                    join(name, &e.name)
                };
                append(root, tar, &child, &child_st, &child_name)?;
            }
        }
        FileType::RegularFile => {
            let file = root
                .open(
                    from,
                    &OpenOptions {
                        read: true,
                        nofollow: true,
                        ..Default::default()
                    },
                )
                .map_err(io_err)?;
            let size = st.st_size as u64;
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(size);
            // Exactly the size in the header, even if a running container changes the file.
            let data = file.take(size).chain(io::repeat(0)).take(size);
            tar.append_data(&mut h, name, data).map_err(io_err)?;
        }
        FileType::Symlink => {
            let target = root.read_link(from).map_err(io_err)?;
            h.set_entry_type(tar::EntryType::Symlink);
            tar.append_link(&mut h, name, target).map_err(io_err)?;
        }
        kind @ (FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo) => {
            h.set_entry_type(match kind {
                FileType::CharacterDevice => tar::EntryType::Char,
                FileType::BlockDevice => tar::EntryType::Block,
                _ => tar::EntryType::Fifo,
            });
            let dev = st.st_rdev;
            h.set_device_major(rustix::fs::major(dev)).map_err(io_err)?;
            h.set_device_minor(rustix::fs::minor(dev)).map_err(io_err)?;
            tar.append_data(&mut h, name, io::empty()).map_err(io_err)?;
        }
        // A socket has no form in a tar (docker skips them too).
        _ => {}
    }
    Ok(())
}

/// Extract the tar `input` (plain, gzip or zstd) into the existing directory `dir`. Entry
/// names are relative to `dir` whatever they start with; a name with a `..` component is
/// refused, and so is an entry below a symlink (one already there or one the archive
/// made): nothing is written outside `dir`. As docker's `cp`, a directory is never replaced
/// by a non-directory, nor the other way round.
pub fn extract<R: Read>(root: &Overlay<Dir>, dir: &OsStr, input: R, owner: Owner) -> Result<()> {
    let shown_dir = dir.to_string_lossy();
    let (st, resolved) = root
        .stat_resolved(dir, true)
        .map_err(|e| Error::io(format!("stat {shown_dir}"), e))?;
    if file_type(&st) != FileType::Directory {
        return Err(Error::io(
            format!("extract into {shown_dir}"),
            rustix::io::Errno::NOTDIR.into(),
        ));
    }
    let base = absolute(&resolved);
    let privileged = crate::privilege::privileged();
    let owner_of = |h: &tar::Header| -> Option<(u32, u32)> {
        if !privileged {
            // Only root gives files to others; the caller's own ids are what it gets anyway.
            return None;
        }
        match owner {
            Owner::FromArchive => Some((h.uid().unwrap_or(0) as u32, h.gid().unwrap_or(0) as u32)),
            Owner::Root => Some((0, 0)),
            Owner::Caller => None,
        }
    };
    let implicit_owner = match owner {
        Owner::Caller => None,
        _ if privileged => Some((0, 0)),
        _ => None,
    };
    let input =
        crate::compression::auto_decoder(io::BufReader::new(input)).map_err(|e| match e {
            Error::Io { source, .. } => Error::io("read archive".to_string(), source),
            other => other,
        })?;
    let mut archive = tar::Archive::new(input);
    // Directories' times are set last: what is written into them changes them.
    let mut dir_times = Vec::new();
    let bad = |e: io::Error| Error::Archive(format!("read: {e}"));
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let rel = relative(&raw, &shown)?;
        let Some((last, parents)) = rel.split_last() else {
            continue; // the destination itself
        };
        let parent = real_dirs(root, &base, parents, &shown, Some(implicit_owner))?;
        let at = join(&parent, last);
        let at_shown = String::from_utf8_lossy(at.as_bytes()).into_owned();
        let io_err = |what: &str, e: io::Error| Error::io(format!("{what} {at_shown}"), e);
        let header = entry.header().clone();
        let kind = header.entry_type();
        let is_dir = kind == tar::EntryType::Directory;
        use tar::EntryType as T;
        if !matches!(
            kind,
            T::Directory | T::Regular | T::Continuous | T::Symlink | T::Link
        ) {
            // Devices and FIFOs need privileges a copy does not assume (and the overlay
            // makes no nodes but whiteouts); tar's extension headers are no files.
            continue;
        }
        let existing = match root.stat(&at, false) {
            Ok(st) => Some(file_type(&st)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err("stat", e)),
        };
        match existing {
            Some(FileType::Directory) if !is_dir => {
                return Err(Error::Archive(format!(
                    "cannot overwrite directory {at_shown:?} with non-directory {shown:?}"
                )))
            }
            Some(FileType::Directory) | None => {}
            Some(_) if is_dir => {
                return Err(Error::Archive(format!(
                    "cannot overwrite non-directory {at_shown:?} with directory {shown:?}"
                )))
            }
            // A file or a symlink is replaced, never written through.
            Some(_) => root.remove_file(&at).map_err(|e| io_err("replace", e))?,
        }
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        let mtime = header.mtime().unwrap_or(0) as i64;
        match kind {
            tar::EntryType::Directory => {
                if existing.is_none() {
                    root.create_dir(&at, 0o700)
                        .map_err(|e| io_err("mkdir", e))?;
                }
                if let Some((uid, gid)) = owner_of(&header) {
                    root.set_owner(&at, uid, gid, false)
                        .map_err(|e| io_err("chown", e))?;
                }
                root.set_permissions(&at, mode)
                    .map_err(|e| io_err("chmod", e))?;
                dir_times.push((at.clone(), mtime));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut out = root
                    .open(
                        &at,
                        &OpenOptions {
                            write: true,
                            create_new: true,
                            nofollow: true,
                            mode: 0o600,
                            ..Default::default()
                        },
                    )
                    .map_err(|e| io_err("write", e))?;
                io::copy(&mut entry, &mut out).map_err(|e| io_err("write", e))?;
                // Metadata through the descriptor just written; owner first, as chown
                // clears setuid bits.
                if let Some((uid, gid)) = owner_of(&header) {
                    rustix::fs::fchown(
                        &out,
                        Some(rustix::fs::Uid::from_raw(uid)),
                        Some(rustix::fs::Gid::from_raw(gid)),
                    )
                    .map_err(|e| io_err("chown", e.into()))?;
                }
                rustix::fs::fchmod(&out, rustix::fs::Mode::from_raw_mode(mode))
                    .map_err(|e| io_err("chmod", e.into()))?;
                rustix::fs::futimens(&out, &timestamps(mtime))
                    .map_err(|e| io_err("set times of", e.into()))?;
            }
            tar::EntryType::Symlink => {
                let target = header
                    .link_name_bytes()
                    .map(|l| OsString::from_vec(l.into_owned()))
                    .unwrap_or_default();
                root.symlink(&target, &at)
                    .map_err(|e| io_err("symlink", e))?;
                if let Some((uid, gid)) = owner_of(&header) {
                    root.set_owner(&at, uid, gid, false)
                        .map_err(|e| io_err("chown", e))?;
                }
                let _ = root.set_times(&at, &timestamps(mtime), false);
            }
            tar::EntryType::Link => {
                let raw_target = header
                    .link_name_bytes()
                    .map(|l| l.into_owned())
                    .unwrap_or_default();
                let target_rel = relative(&raw_target, &shown)?;
                let Some((target_last, target_parents)) = target_rel.split_last() else {
                    return Err(Error::Archive(format!(
                        "entry {shown:?}: a hard link to the destination itself"
                    )));
                };
                let target_dir = real_dirs(root, &base, target_parents, &shown, None)?;
                root.hard_link(&join(&target_dir, target_last), &at)
                    .map_err(|e| io_err("link", e))?;
            }
            _ => unreachable!("other kinds were skipped"),
        }
    }
    for (at, mtime) in dir_times.into_iter().rev() {
        // Best effort, as a copy's directory times are.
        let _ = root.set_times(&at, &timestamps(mtime), false);
    }
    Ok(())
}

/// An entry's name as components under the destination: leading `/` and `.` dropped, `..`
/// refused.
fn relative(raw: &[u8], shown: &str) -> Result<Vec<OsString>> {
    let mut out = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                return Err(Error::Archive(format!(
                    "entry {shown:?} is outside the destination (a name with `..` is refused)"
                )))
            }
            c => out.push(OsString::from_vec(c.to_vec())),
        }
    }
    Ok(out)
}

/// `base` joined with `parents`, each of which must be a real directory, never a symlink
/// (so nothing the archive names lands outside `base`); a missing one is made when
/// `create` is given, owned by its ids when it holds some.
fn real_dirs(
    root: &Overlay<Dir>,
    base: &OsStr,
    parents: &[OsString],
    shown: &str,
    create: Option<Option<(u32, u32)>>,
) -> Result<OsString> {
    let mut at = base.to_owned();
    for name in parents {
        at = join(&at, name);
        let at_shown = String::from_utf8_lossy(at.as_bytes()).into_owned();
        match root.stat(&at, false) {
            Ok(st) if file_type(&st) == FileType::Directory => continue,
            Ok(st) => {
                let what = if file_type(&st) == FileType::Symlink {
                    "is a symlink, which an archive's entries are never written through"
                } else {
                    "is not a directory"
                };
                return Err(Error::Archive(format!(
                    "entry {shown:?}: {at_shown} {what}"
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && create.is_some() => {
                root.create_dir(&at, 0o755)
                    .map_err(|e| Error::io(format!("mkdir {at_shown}"), e))?;
                if let Some(Some((uid, gid))) = create {
                    root.set_owner(&at, uid, gid, false)
                        .map_err(|e| Error::io(format!("chown {at_shown}"), e))?;
                }
            }
            Err(e) => return Err(Error::io(format!("entry {shown:?}: {at_shown}"), e)),
        }
    }
    Ok(at)
}

/// `/a/b` of the components `[a, b]`.
fn absolute(components: &[OsString]) -> OsString {
    let mut out = Vec::new();
    for c in components {
        out.push(b'/');
        out.extend_from_slice(c.as_bytes());
    }
    if out.is_empty() {
        out.push(b'/');
    }
    OsString::from_vec(out)
}

fn join(dir: &OsStr, name: &OsStr) -> OsString {
    let mut out = dir.as_bytes().to_vec();
    if !out.is_empty() && !out.ends_with(b"/") {
        out.push(b'/');
    }
    out.extend_from_slice(name.as_bytes());
    OsString::from_vec(out)
}

fn timestamps(secs: i64) -> Timestamps {
    let t = rustix::fs::Timespec {
        tv_sec: secs as _,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}
