//! COPY and ADD: matched sources written into the stage's root through the overlay (whose
//! upper directory becomes the step's layer). Docker's rules: a directory source copies its
//! contents; a destination ending in `/` (or several sources) is a directory; missing
//! parents are created (root-owned, or with `--chown`, and with `--chmod`'s mode); modes and
//! mtimes are kept; owners are root for context files and kept from other stages; symlinks
//! inside a copied directory are copied as symlinks.

use std::io::{Read, Write};

use cap_std::fs::Dir;
use rustix::fs::{FileType, Timestamps};
use strata_runtime::fs::{file_type, OpenOptions, Overlay};

use super::context::{clean, os, read, Matched, Source};

/// `--chmod`: an octal mode or a symbolic one (`u=rw,g=r,o=r`, `go-w`, `a+X`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Chmod {
    Octal(u32),
    Symbolic(Vec<(u32, char, u32, bool)>),
}

impl Chmod {
    pub fn parse(s: &str) -> Result<Chmod, String> {
        let bad = || {
            format!(
                "invalid chmod parameter: '{s}'. it should be octal string and between 0 and 07777"
            )
        };
        if s.bytes().all(|b| b.is_ascii_digit()) {
            let m = u32::from_str_radix(s, 8).map_err(|_| bad())?;
            if m > 0o7777 {
                return Err(bad());
            }
            return Ok(Chmod::Octal(m));
        }
        let mut clauses = Vec::new();
        for clause in s.split(',') {
            let op_at = clause.find(['+', '-', '=']).ok_or_else(bad)?;
            let (who, rest) = clause.split_at(op_at);
            let mut who_mask = 0;
            for c in who.chars() {
                who_mask |= match c {
                    'u' => 0o4700,
                    'g' => 0o2070,
                    'o' => 0o1007,
                    'a' => 0o7777,
                    _ => return Err(bad()),
                };
            }
            if who_mask == 0 {
                who_mask = 0o7777;
            }
            let mut chars = rest.chars();
            let op = chars.next().ok_or_else(bad)?;
            let (mut perm, mut cond_x) = (0, false);
            for c in chars {
                perm |= match c {
                    'r' => 0o444,
                    'w' => 0o222,
                    'x' => 0o111,
                    'X' => {
                        cond_x = true;
                        0
                    }
                    's' => 0o6000,
                    't' => 0o1000,
                    _ => return Err(bad()),
                };
            }
            clauses.push((who_mask, op, perm, cond_x));
        }
        Ok(Chmod::Symbolic(clauses))
    }

    /// The new mode of a file whose mode is `mode` (permission bits only).
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        match self {
            Chmod::Octal(m) => *m,
            Chmod::Symbolic(clauses) => {
                let mut m = mode & 0o7777;
                for &(who, op, perm, cond_x) in clauses {
                    let mut bits = perm;
                    if cond_x && (is_dir || m & 0o111 != 0) {
                        bits |= 0o111;
                    }
                    let bits = bits & who;
                    match op {
                        '+' => m |= bits,
                        '-' => m &= !bits,
                        _ => m = (m & !(who & 0o777)) | bits,
                    }
                }
                m
            }
        }
    }
}

/// How COPY/ADD writes what it copies.
pub(crate) struct CopyOptions {
    /// `--chown`, resolved.
    pub owner: Option<(u32, u32)>,
    pub chmod: Option<Chmod>,
    /// ADD: local tar archives are unpacked into the destination.
    pub unpack: bool,
    /// Ownership changes need root; a rootless build keeps the caller's.
    pub privileged: bool,
    /// `--parents`: each source keeps its path (from the source root) under the destination.
    pub parents: bool,
}

/// Copy `matched` (from `src`) to `dest` (absolute, in `target`), `dest_dir` telling whether
/// the destination is a directory.
pub(crate) fn copy(
    src: &Source,
    matched: &[Matched],
    dest: &str,
    dest_dir: bool,
    target: &Overlay<Dir>,
    opts: &CopyOptions,
) -> Result<(), String> {
    let dest = format!("/{}", clean(dest));
    let parent_of_dest = if dest_dir {
        dest.clone()
    } else {
        parent(&dest)
    };
    make_dirs(target, &parent_of_dest, opts)?;
    for m in matched {
        // --parents: the source's own directories are recreated under the destination.
        let dest = if opts.parents {
            let dir = parent(&format!("/{}", m.path));
            let d = join(&dest, dir.trim_start_matches('/'));
            make_dirs(target, &d, opts)?;
            d
        } else {
            dest.clone()
        };
        let dest_dir = dest_dir || opts.parents;
        if m.is_dir {
            let dest = if opts.parents {
                join(&dest, m.path.rsplit('/').next().unwrap_or(&m.path))
            } else {
                dest
            };
            make_dirs(target, &dest, opts)?;
            for rel in src.walk(&m.path)? {
                let below = rel
                    .strip_prefix(&m.path)
                    .unwrap_or(&rel)
                    .trim_start_matches('/');
                copy_entry(src, &rel, &join(&dest, below), target, opts, false)?;
            }
            continue;
        }
        let name = m.path.rsplit('/').next().unwrap_or(&m.path);
        let to = if dest_dir {
            join(&dest, name)
        } else {
            dest.clone()
        };
        if opts.unpack && is_archive(src, &m.path) {
            make_dirs(target, &dest, opts)?;
            unpack(src, &m.path, &dest, target, opts)?;
            continue;
        }
        copy_entry(src, &m.path, &to, target, opts, true)?;
    }
    Ok(())
}

fn join(dir: &str, name: &str) -> String {
    if name.is_empty() {
        dir.to_string()
    } else if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

fn parent(path: &str) -> String {
    match path.trim_end_matches('/').rsplit_once('/') {
        Some(("", _)) | None => "/".into(),
        Some((p, _)) => p.into(),
    }
}

/// `mkdir -p` in the target; new directories root-owned (or `--chown`'s) and 0755 (or
/// `--chmod`'s), existing ones untouched.
pub(crate) fn make_dirs(
    target: &Overlay<Dir>,
    path: &str,
    opts: &CopyOptions,
) -> Result<(), String> {
    let mut at = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        at.push('/');
        at.push_str(part);
        match target.stat(os(&at), true) {
            Ok(st) if file_type(&st) == FileType::Directory => continue,
            Ok(_) => {
                return Err(format!(
                    "cannot create directory {at}: a file is in the way"
                ))
            }
            Err(_) => {}
        }
        let mode = opts.chmod.as_ref().map_or(0o755, |c| c.apply(0o755, true));
        target
            .create_dir(os(&at), mode)
            .map_err(|e| format!("mkdir {at}: {e}"))?;
        target
            .set_permissions(os(&at), mode)
            .map_err(|e| format!("chmod {at}: {e}"))?;
        let (uid, gid) = opts.owner.unwrap_or((0, 0));
        chown(target, &at, uid, gid, opts)?;
    }
    Ok(())
}

fn chown(
    target: &Overlay<Dir>,
    path: &str,
    uid: u32,
    gid: u32,
    opts: &CopyOptions,
) -> Result<(), String> {
    if !opts.privileged {
        return Ok(());
    }
    target
        .set_owner(os(path), uid, gid, false)
        .map_err(|e| format!("chown {path}: {e}"))
}

/// One entry: a directory, a file (content copied), a symlink (as a symlink, unless it is
/// the named source itself, which is followed).
fn copy_entry(
    src: &Source,
    from: &str,
    to: &str,
    target: &Overlay<Dir>,
    opts: &CopyOptions,
    follow: bool,
) -> Result<(), String> {
    let st = src
        .root
        .stat(os(&format!("/{from}")), follow)
        .map_err(|e| format!("stat /{from}: {e}"))?;
    let kind = file_type(&st);
    let owner = opts.owner.unwrap_or(if src.keep_owner {
        (st.st_uid, st.st_gid)
    } else {
        (0, 0)
    });
    let mode = match &opts.chmod {
        Some(c) => c.apply(st.st_mode & 0o7777, kind == FileType::Directory),
        None => st.st_mode & 0o7777,
    };
    let entry = match kind {
        FileType::Directory => Entry::Directory,
        FileType::Symlink => Entry::Symlink(
            src.root
                .read_link(os(&format!("/{from}")))
                .map_err(|e| format!("readlink /{from}: {e}"))?,
        ),
        // Sockets, FIFOs and devices in a context become empty regular files.
        FileType::RegularFile => Entry::File(Box::new(
            src.root
                .open(os(&format!("/{from}")), &read())
                .map_err(|e| format!("read /{from}: {e}"))?,
        )),
        _ => Entry::File(Box::new(std::io::empty())),
    };
    let mtime = (st.st_mtime as i64, st.st_mtime_nsec as i64);
    write_entry(target, to, entry, mode, owner, Some(mtime), opts)
}

/// What to write at a path.
enum Entry<'a> {
    Directory,
    Symlink(std::ffi::OsString),
    File(Box<dyn Read + 'a>),
}

/// Write `entry` at `to` (replacing what is there, but merging into an existing directory),
/// then give it its mode, owner and mtime (symlinks: owner only).
fn write_entry(
    target: &Overlay<Dir>,
    to: &str,
    entry: Entry<'_>,
    mode: u32,
    (uid, gid): (u32, u32),
    mtime: Option<(i64, i64)>,
    opts: &CopyOptions,
) -> Result<(), String> {
    let existing = target.stat(os(to), false).ok().map(|s| file_type(&s));
    let keep_dir = matches!(entry, Entry::Directory) && existing == Some(FileType::Directory);
    if existing.is_some() && !keep_dir {
        target
            .remove_tree(os(to))
            .map_err(|e| format!("replace {to}: {e}"))?;
    }
    match entry {
        Entry::Directory => {
            if !keep_dir {
                target
                    .create_dir(os(to), mode)
                    .map_err(|e| format!("mkdir {to}: {e}"))?;
            }
        }
        Entry::Symlink(link) => {
            target
                .symlink(&link, os(to))
                .map_err(|e| format!("symlink {to}: {e}"))?;
            return chown(target, to, uid, gid, opts);
        }
        Entry::File(mut content) => {
            let mut out = target
                .open(
                    os(to),
                    &OpenOptions {
                        write: true,
                        create: true,
                        truncate: true,
                        nofollow: true,
                        mode,
                        ..Default::default()
                    },
                )
                .map_err(|e| format!("write {to}: {e}"))?;
            std::io::copy(&mut content, &mut out).map_err(|e| format!("write {to}: {e}"))?;
            out.flush().map_err(|e| format!("write {to}: {e}"))?;
            // Metadata through the descriptor just written: three fewer walks of the
            // overlay per file. Owner first, as chown clears setuid bits.
            if opts.privileged {
                rustix::fs::fchown(
                    &out,
                    Some(rustix::fs::Uid::from_raw(uid)),
                    Some(rustix::fs::Gid::from_raw(gid)),
                )
                .map_err(|e| format!("chown {to}: {e}"))?;
            }
            rustix::fs::fchmod(&out, rustix::fs::Mode::from_raw_mode(mode))
                .map_err(|e| format!("chmod {to}: {e}"))?;
            if let Some((secs, nanos)) = mtime {
                let _ = rustix::fs::futimens(&out, &timestamps(secs, nanos));
            }
            return Ok(());
        }
    }
    target
        .set_permissions(os(to), mode)
        .map_err(|e| format!("chmod {to}: {e}"))?;
    chown(target, to, uid, gid, opts)?;
    if let Some((secs, nanos)) = mtime {
        // Best effort, as a copy's mtime is: the content and modes are what matter.
        let _ = target.set_times(os(to), &timestamps(secs, nanos), false);
    }
    Ok(())
}

fn timestamps(secs: i64, nanos: i64) -> Timestamps {
    let t = rustix::fs::Timespec {
        tv_sec: secs as _,
        tv_nsec: nanos as _,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// A tar archive, plain or compressed (gzip, zstd), by its first bytes.
fn is_archive(src: &Source, path: &str) -> bool {
    let Ok(mut f) = src.root.open(os(&format!("/{path}")), &read()) else {
        return false;
    };
    let mut head = vec![0u8; 512];
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    head.truncate(n);
    head.starts_with(&[0x1f, 0x8b])
        || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || (head.len() >= 262 && &head[257..262] == b"ustar")
}

/// ADD of a local archive: its entries extracted under `into`, every path resolved inside
/// the target root.
fn unpack(
    src: &Source,
    path: &str,
    into: &str,
    target: &Overlay<Dir>,
    opts: &CopyOptions,
) -> Result<(), String> {
    let file = src
        .root
        .open(os(&format!("/{path}")), &read())
        .map_err(|e| format!("read /{path}: {e}"))?;
    let mut buffered = std::io::BufReader::new(file);
    let compression = strata_runtime::compression::Compression::detect(
        std::io::BufRead::fill_buf(&mut buffered).map_err(|e| format!("read /{path}: {e}"))?,
    )
    .map_err(|e| format!("{path}: {e}"))?;
    let reader = strata_runtime::compression::decoder(compression, buffered)
        .map_err(|e| format!("{path}: {e}"))?;
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().map_err(|e| format!("{path}: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("{path}: {e}"))?;
        let name = entry
            .path()
            .map_err(|e| format!("{path}: {e}"))?
            .to_string_lossy()
            .into_owned();
        let rel = clean(&name);
        if rel.is_empty() {
            continue;
        }
        let to = join(into, &rel);
        make_dirs(target, &parent(&to), opts)?;
        let header = entry.header().clone();
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        let owner = opts.owner.unwrap_or((
            header.uid().unwrap_or(0) as u32,
            header.gid().unwrap_or(0) as u32,
        ));
        let link = || {
            header
                .link_name()
                .ok()
                .flatten()
                .map(|l| l.into_owned().into_os_string())
                .unwrap_or_default()
        };
        let written = match header.entry_type() {
            tar::EntryType::Directory => Entry::Directory,
            tar::EntryType::Symlink => Entry::Symlink(link()),
            tar::EntryType::Link => {
                let existing = join(into, &clean(&link().to_string_lossy()));
                if target.stat(os(&to), false).is_ok() {
                    target
                        .remove_tree(os(&to))
                        .map_err(|e| format!("replace {to}: {e}"))?;
                }
                target
                    .hard_link(os(&existing), os(&to))
                    .map_err(|e| format!("link {to}: {e}"))?;
                continue;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                Entry::File(Box::new(&mut entry))
            }
            // Devices, FIFOs and tar extensions are not extracted by ADD.
            _ => continue,
        };
        let mtime = header.mtime().ok().map(|m| (m as i64, 0));
        write_entry(target, &to, written, mode, owner, mtime, opts)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copied_file_keeps_mode_setuid_and_mtime() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let tmp = tempfile::tempdir().unwrap();
        let (ctx, upper) = (tmp.path().join("ctx"), tmp.path().join("upper"));
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::create_dir_all(&upper).unwrap();
        std::fs::write(ctx.join("tool"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(ctx.join("tool"), PermissionsExt::from_mode(0o4755)).unwrap();
        let t = rustix::fs::Timespec {
            tv_sec: 1_500_000_000,
            tv_nsec: 123_456_789,
        };
        let times = Timestamps {
            last_access: t,
            last_modification: t,
        };
        rustix::fs::utimensat(
            rustix::fs::CWD,
            &ctx.join("tool"),
            &times,
            rustix::fs::AtFlags::empty(),
        )
        .unwrap();
        let open = |p: &std::path::Path| Dir::open_ambient_dir(p, cap_std::ambient_authority());
        let src = Source::context(open(&ctx).unwrap(), Default::default());
        let target = Overlay::new(Vec::new(), open(&upper).unwrap());
        let opts = CopyOptions {
            owner: None,
            chmod: None,
            unpack: false,
            privileged: strata_runtime::privilege::privileged(),
            parents: false,
        };
        let matched = src.matches("tool").unwrap();
        copy(&src, &matched, "/bin/", true, &target, &opts).unwrap();
        let meta = std::fs::metadata(upper.join("bin/tool")).unwrap();
        // chown after chmod would have cleared the setuid bit.
        assert_eq!(meta.mode() & 0o7777, 0o4755);
        assert_eq!(
            (meta.mtime(), meta.mtime_nsec()),
            (1_500_000_000, 123_456_789)
        );
        assert_eq!(
            std::fs::read(upper.join("bin/tool")).unwrap(),
            b"#!/bin/sh\n"
        );
        if opts.privileged {
            assert_eq!((meta.uid(), meta.gid()), (0, 0));
        }
    }

    #[test]
    fn chmod_forms() {
        assert_eq!(Chmod::parse("755").unwrap().apply(0o600, false), 0o755);
        assert_eq!(Chmod::parse("go-w").unwrap().apply(0o777, false), 0o755);
        assert_eq!(
            Chmod::parse("u=rw,g=r,o=r").unwrap().apply(0o777, false),
            0o644
        );
        assert_eq!(Chmod::parse("a+X").unwrap().apply(0o600, true), 0o711);
        assert_eq!(Chmod::parse("a+X").unwrap().apply(0o600, false), 0o600);
        assert_eq!(Chmod::parse("+x").unwrap().apply(0o644, false), 0o755);
        for bad in ["64a", "10000", "q+r", "u*r"] {
            let e = Chmod::parse(bad).unwrap_err();
            assert!(
                e.starts_with(&format!("invalid chmod parameter: '{bad}'")),
                "{e}"
            );
        }
    }
}
