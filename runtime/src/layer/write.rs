//! Directory (overlay form) → OCI layer tar. Deterministic: entries sorted by name, whiteouts
//! first in each directory, numeric owners only, mtimes clamped to `SOURCE_DATE_EPOCH`.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use cap_std::fs::Dir;
use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use super::{is_overlay_xattr, opaque_xattr, OPAQUE_MARKER, WHITEOUT_PREFIX};
use crate::error::{Error, IoContext, Result};

#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// Clamp every mtime to this (the `SOURCE_DATE_EPOCH` convention).
    pub source_date_epoch: Option<i64>,
}

impl WriteOptions {
    /// Options from the environment: `SOURCE_DATE_EPOCH` if it is set and numeric.
    pub fn from_env() -> WriteOptions {
        WriteOptions {
            source_date_epoch: std::env::var("SOURCE_DATE_EPOCH")
                .ok()
                .and_then(|v| v.trim().parse().ok()),
        }
    }
}

struct Child {
    name: OsString,
    stat: rustix::fs::Stat,
}

struct Level {
    dir: Dir,
    prefix: PathBuf,
    children: std::vec::IntoIter<Child>,
}

/// Write the tree under `root` as a layer tar into `out`, and return `out`.
pub fn write_layer<W: Write>(root: &Dir, out: W, opts: &WriteOptions) -> Result<W> {
    let mut tar = tar::Builder::new(out);
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let root = root.try_clone().context(|| "open layer root".into())?;
    let children = list_children(&root, "")?;
    let mut stack = vec![Level {
        dir: root,
        prefix: PathBuf::new(),
        children: children.into_iter(),
    }];
    while let Some(level) = stack.last_mut() {
        let Some(child) = level.children.next() else {
            stack.pop();
            continue;
        };
        let path = level.prefix.join(&child.name);
        let st = &child.stat;
        let ft = FileType::from_raw_mode(st.st_mode);
        let mut header = tar::Header::new_gnu();
        header.set_mode(st.st_mode & 0o7777);
        header.set_uid(st.st_uid as u64);
        header.set_gid(st.st_gid as u64);
        header.set_mtime(clamp(st.st_mtime as i64, opts));
        header.set_size(0);
        let wrap = |e: io::Error| Error::io(format!("write layer entry {}", path.display()), e);
        match ft {
            FileType::CharacterDevice if st.st_rdev == 0 => {
                let mut name = OsString::from(WHITEOUT_PREFIX);
                name.push(&child.name);
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(0);
                h.set_mtime(0);
                tar.append_data(&mut h, level.prefix.join(name), io::empty())
                    .map_err(wrap)?;
            }
            FileType::Directory => {
                let dir = crate::fs::DirHandle::open_dir_nofollow(&level.dir, &child.name)
                    .context(|| format!("open {}", path.display()))?;
                let (xattrs, opaque) = read_xattrs(&dir)?;
                append_pax(&mut tar, &xattrs).map_err(wrap)?;
                header.set_entry_type(tar::EntryType::Directory);
                tar.append_data(&mut header, dir_name(&path), io::empty())
                    .map_err(wrap)?;
                if opaque {
                    let mut h = tar::Header::new_gnu();
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(0o644);
                    h.set_size(0);
                    h.set_mtime(0);
                    tar.append_data(&mut h, path.join(OPAQUE_MARKER), io::empty())
                        .map_err(wrap)?;
                }
                let children = list_children(&dir, &path.display().to_string())?;
                stack.push(Level {
                    dir,
                    prefix: path,
                    children: children.into_iter(),
                });
            }
            FileType::RegularFile => {
                let key = (st.st_dev, st.st_ino);
                if st.st_nlink > 1 {
                    if let Some(first) = links.get(&key) {
                        header.set_entry_type(tar::EntryType::Link);
                        tar.append_link(&mut header, &path, first).map_err(wrap)?;
                        continue;
                    }
                    links.insert(key, path.clone());
                }
                let fd = rustix::fs::openat(
                    &level.dir,
                    child.name.as_os_str(),
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .context(|| format!("open {}", path.display()))?;
                let file = std::fs::File::from(fd);
                let (xattrs, _) = read_xattrs(&file)?;
                append_pax(&mut tar, &xattrs).map_err(wrap)?;
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(st.st_size as u64);
                // A file that changes size while we read it would corrupt the tar; `take`
                // plus the size check below turn that into an error instead.
                let mut reader = io::Read::take(
                    io::BufReader::with_capacity(256 << 10, file),
                    st.st_size as u64,
                );
                tar.append_data(&mut header, &path, &mut reader)
                    .map_err(wrap)?;
            }
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(&level.dir, child.name.as_os_str(), Vec::new())
                    .context(|| format!("readlink {}", path.display()))?;
                header.set_entry_type(tar::EntryType::Symlink);
                let target = PathBuf::from(std::ffi::OsStr::from_bytes(target.as_bytes()));
                tar.append_link(&mut header, &path, target).map_err(wrap)?;
            }
            FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo => {
                header.set_entry_type(match ft {
                    FileType::CharacterDevice => tar::EntryType::Char,
                    FileType::BlockDevice => tar::EntryType::Block,
                    _ => tar::EntryType::Fifo,
                });
                if ft != FileType::Fifo {
                    header
                        .set_device_major(rustix::fs::major(st.st_rdev))
                        .map_err(wrap)?;
                    header
                        .set_device_minor(rustix::fs::minor(st.st_rdev))
                        .map_err(wrap)?;
                }
                tar.append_data(&mut header, &path, io::empty())
                    .map_err(wrap)?;
            }
            // Sockets have no place in an image.
            _ => {}
        }
    }
    tar.into_inner().context(|| "finish layer tar".into())
}

/// Write the layer tar of `source` into `out` and unpack the same tar into `root` in one
/// pass: the tar is made on its own thread and read here, hashed (the diff_id), copied to
/// `out` and applied with [`apply_layer_moving`](super::apply_layer_moving), so the files
/// of `source` move into `root` instead of being written again. For a build step's
/// directory, which is discarded afterwards (it loses the files that moved). Returns `out`,
/// the diff_id and what was unpacked.
pub fn write_and_unpack<W: Write>(
    source: &Dir,
    out: W,
    root: &Dir,
    write: &WriteOptions,
    apply: &super::ApplyOptions,
) -> Result<(W, crate::digest::Digest, super::ApplyStats)> {
    let src = source.try_clone().context(|| "open layer root".into())?;
    let write = write.clone();
    // The producer lists each directory before it emits its entries and opens each file
    // before its entry, so a file moved on reading its entry is already open there.
    let (reader, producer) = crate::pipe::spawn(move |pipe| -> Result<()> {
        write_layer(&src, &mut *pipe, &write)?;
        pipe.close().context(|| "write layer".into())
    });
    let mut tee = Tee::new(crate::digest::Hashing::new(reader), out);
    let applied = super::apply_layer_moving(root, &mut tee, apply, source).and_then(|stats| {
        // The tar's end-of-archive blocks are part of the diff_id.
        io::copy(&mut tee, &mut io::sink()).context(|| "read layer".into())?;
        Ok(stats)
    });
    let Tee { inner, copy, ended } = tee;
    let (reader, diff_id, _) = inner.finish();
    // Dropped first: a producer blocked on a full pipe then fails and ends.
    drop(reader);
    let produced = producer
        .join()
        .unwrap_or_else(|_| Err(Error::Layer("layer writer thread panicked".into())));
    match (applied, produced) {
        (Ok(stats), Ok(())) => Ok((copy, diff_id, stats)),
        // A producer that ended by itself with an error cut the stream short: its error
        // says why. One that failed after the unpack stopped reading only saw the pipe close.
        (_, Err(e)) if ended => Err(e),
        (Err(e), _) | (Ok(_), Err(e)) => Err(e),
    }
}

/// Copies everything read from `inner` into `copy`; `ended` once `inner` reached its end.
pub(crate) struct Tee<R, W> {
    pub(crate) inner: R,
    pub(crate) copy: W,
    pub(crate) ended: bool,
}

impl<R, W> Tee<R, W> {
    pub(crate) fn new(inner: R, copy: W) -> Self {
        Tee {
            inner,
            copy,
            ended: false,
        }
    }
}

impl<R: io::Read, W: Write> io::Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.ended |= n == 0 && !buf.is_empty();
        self.copy.write_all(&buf[..n])?;
        Ok(n)
    }
}

fn clamp(mtime: i64, opts: &WriteOptions) -> u64 {
    let t = match opts.source_date_epoch {
        Some(epoch) if mtime > epoch => epoch,
        _ => mtime,
    };
    t.max(0) as u64
}

fn dir_name(path: &std::path::Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push("/");
    PathBuf::from(s)
}

/// The children of `dir`, stat'ed without following links: whiteouts first, then the rest,
/// each group sorted by name bytes.
fn list_children(dir: &Dir, shown: &str) -> Result<Vec<Child>> {
    let mut out = Vec::new();
    for entry in dir
        .entries()
        .context(|| format!("read directory {shown:?}"))?
    {
        let name = entry
            .context(|| format!("read directory {shown:?}"))?
            .file_name();
        let stat = rustix::fs::statat(dir, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)
            .context(|| format!("stat {shown}/{}", name.to_string_lossy()))?;
        out.push(Child { name, stat });
    }
    let is_whiteout = |c: &Child| {
        FileType::from_raw_mode(c.stat.st_mode) == FileType::CharacterDevice && c.stat.st_rdev == 0
    };
    out.sort_by(|a, b| {
        is_whiteout(b)
            .cmp(&is_whiteout(a))
            .then_with(|| a.name.as_bytes().cmp(b.name.as_bytes()))
    });
    Ok(out)
}

/// The xattrs to record for an open file or directory, and whether it is an opaque dir.
fn read_xattrs(fd: impl rustix::fd::AsFd) -> Result<(Vec<(String, Vec<u8>)>, bool)> {
    let mut names = vec![0u8; 4096];
    let n = match rustix::fs::flistxattr(&fd, &mut names) {
        Ok(n) => n,
        Err(rustix::io::Errno::NOTSUP) => return Ok((Vec::new(), false)),
        Err(rustix::io::Errno::RANGE) => {
            names = vec![0u8; 65536];
            rustix::fs::flistxattr(&fd, &mut names).context(|| "list xattrs".into())?
        }
        Err(e) => return Err(Error::io("list xattrs", e.into())),
    };
    let mut xattrs = Vec::new();
    let mut opaque = false;
    for name in names[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let Ok(name_str) = std::str::from_utf8(name) else {
            continue;
        };
        let mut value = vec![0u8; 65536];
        let len = match rustix::fs::fgetxattr(&fd, name_str, &mut value) {
            Ok(len) => len,
            Err(_) => continue,
        };
        value.truncate(len);
        if is_overlay_xattr(name) {
            opaque |= name_str == opaque_xattr() && value == b"y";
            continue;
        }
        xattrs.push((name_str.to_string(), value));
    }
    xattrs.sort();
    Ok((xattrs, opaque))
}

fn append_pax<W: Write>(tar: &mut tar::Builder<W>, xattrs: &[(String, Vec<u8>)]) -> io::Result<()> {
    if xattrs.is_empty() {
        return Ok(());
    }
    let keys: Vec<String> = xattrs
        .iter()
        .map(|(k, _)| format!("SCHILY.xattr.{k}"))
        .collect();
    tar.append_pax_extensions(
        keys.iter()
            .zip(xattrs)
            .map(|(k, (_, v))| (k.as_str(), v.as_slice())),
    )
}
