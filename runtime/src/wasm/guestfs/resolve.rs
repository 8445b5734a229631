//! Guest paths: where a path relative to a directory descriptor lands.
//!
//! WASI makes a directory descriptor a capability: a path resolved from a descriptor the
//! guest opened never leaves it. `..` past the descriptor's directory, and a symlink whose
//! target would take the walk there (through `..` or by being absolute), are
//! `not-permitted`, as wasmtime answers; so is making a symlink with an absolute target
//! there. The preopens are the exception: they are the container's mounts, which libc
//! resolves every absolute path through, so paths from them have Linux's semantics inside
//! the container: `..` from `/` stays at `/`, an absolute symlink restarts at `/` (images
//! are full of them) and may be made.
//!
//! Mount points are crossed the way the kernel crosses them: stepping onto a bind mount's
//! guest path enters it, and `..` from a bind mount's root goes back to the directory it is
//! mounted on (`data/../data/f` is `f` in the bind mount at `/data`, never the root
//! layer's directory under it).
//!
//! The walk looks at each component in its mount (one `lstat`, plus `readlink` for a
//! symlink) and yields a path with no `..` and no symlink before its last name. When it
//! cannot change the answer — a path from the root with no bind mounts, which is nearly
//! every call a program makes — it is skipped and the overlay resolves the path as it is.

use std::collections::VecDeque;
use std::ffi::OsStr;

use rustix::fs::FileType;

use super::{is_enoent, ErrorCode, GuestFs, Res};
use crate::fs::file_type;

/// Symlinks followed in one lookup before `loop`, as Linux.
const MAX_SYMLINKS: usize = 40;

/// A path resolved to the mount it is in.
pub(super) struct Target {
    pub mount: usize,
    /// Inside the mount, components joined by `/`.
    pub path: String,
    /// The guest's path ended in `/`, `.` or `..`: it must name a directory.
    pub must_be_dir: bool,
}

impl Target {
    pub fn os(&self) -> &OsStr {
        OsStr::new(&self.path)
    }
}

/// The components of an absolute guest path (`[]` for `/`).
pub(super) fn guest_components(path: &str) -> Vec<String> {
    components(path).map(str::to_owned).collect()
}

fn components(path: &str) -> impl DoubleEndedIterator<Item = &str> {
    path.split('/').filter(|c| !c.is_empty() && *c != ".")
}

/// Whether a guest path must name a directory: it ends in `/`, `.` or `..`.
pub(super) fn names_dir(rel: &str) -> bool {
    matches!(rel.rsplit('/').next(), Some("" | "." | ".."))
}

/// The checks every guest path gets: WASI paths are relative (an absolute one is
/// `not-permitted`), not empty (`no-entry`), and hold no NUL (`invalid`).
fn check(rel: &str) -> Res<()> {
    if rel.starts_with('/') {
        return Err(ErrorCode::NotPermitted);
    }
    if rel.is_empty() {
        return Err(ErrorCode::NoEntry);
    }
    if rel.contains('\0') {
        return Err(ErrorCode::Invalid);
    }
    Ok(())
}

impl GuestFs {
    /// Where `rel`, relative to the directory `base`, is. `follow`: a symlink in the last
    /// component is followed (as it always is when the path must name a directory).
    pub(super) fn target(&self, base: &super::Descriptor, rel: &str, follow: bool) -> Res<Target> {
        if !matches!(base.kind, super::Kind::Dir) {
            return Err(ErrorCode::NotDirectory);
        }
        check(rel)?;
        let mount = self.mount(base.mount)?;
        let must_be_dir = names_dir(rel);
        if base.preopen && mount.guest.is_empty() && self.mounts.len() == 1 {
            // From the root's preopen with nothing mounted on it, the overlay's own
            // resolution (`..` stops at `/`, absolute links restart there) is the guest's.
            let mut path = String::new();
            for c in components(rel) {
                if !path.is_empty() {
                    path.push('/');
                }
                path.push_str(c);
            }
            return Ok(Target {
                mount: base.mount,
                path,
                must_be_dir,
            });
        }
        let mut abs: Vec<String> = mount.guest.clone();
        abs.extend(components(&base.path).map(str::to_owned));
        self.walk(abs, !base.preopen, rel, follow, must_be_dir)
    }

    /// Walk `rel` from the absolute guest directory `abs` (canonical), component by
    /// component; `contained`: never above `abs` (else `..` stops at `/`).
    fn walk(
        &self,
        mut abs: Vec<String>,
        contained: bool,
        rel: &str,
        follow: bool,
        dir: bool,
    ) -> Res<Target> {
        let floor = if contained { abs.len() } else { 0 };
        let mut must_be_dir = dir;
        let mut todo: VecDeque<String> = components(rel).map(str::to_owned).collect();
        let mut links = 0;
        while let Some(name) = todo.pop_front() {
            if name == ".." {
                if abs.len() > floor {
                    abs.pop();
                } else if contained {
                    return Err(ErrorCode::NotPermitted);
                }
                continue;
            }
            abs.push(name);
            let last = todo.is_empty();
            if last && !follow {
                break;
            }
            let (mount, path) = self.locate(&abs)?;
            if path.is_empty() {
                // A mount's root: a directory.
                continue;
            }
            let overlay = &self.mounts[mount].overlay;
            let st = match overlay.stat(OsStr::new(&path), false) {
                Ok(st) => st,
                // A name about to be created.
                Err(e) if last && is_enoent(&e) => break,
                Err(e) => return Err(e.into()),
            };
            match file_type(&st) {
                FileType::Symlink => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(ErrorCode::Loop);
                    }
                    let link = overlay
                        .read_link(OsStr::new(&path))?
                        .into_string()
                        .map_err(|_| ErrorCode::IllegalByteSequence)?;
                    if link.is_empty() {
                        return Err(ErrorCode::NoEntry);
                    }
                    abs.pop();
                    if link.starts_with('/') {
                        if contained {
                            return Err(ErrorCode::NotPermitted);
                        }
                        abs.clear();
                    }
                    if last {
                        // The link's target is now the last component, followed in turn;
                        // it must name a directory if the link's text says so.
                        must_be_dir |= names_dir(&link);
                    }
                    for c in components(&link).rev() {
                        todo.push_front(c.to_owned());
                    }
                }
                FileType::Directory => {}
                _ if !last => return Err(ErrorCode::NotDirectory),
                _ => {}
            }
        }
        let (mount, path) = self.locate(&abs)?;
        Ok(Target {
            mount,
            path,
            must_be_dir,
        })
    }

    /// The mount an absolute guest path is in (the most deeply mounted one that holds it),
    /// and the path inside it.
    pub(super) fn locate(&self, abs: &[String]) -> Res<(usize, String)> {
        let (i, m) = self
            .mounts
            .iter()
            .enumerate()
            .filter(|(_, m)| abs.starts_with(&m.guest))
            .max_by_key(|(_, m)| m.guest.len())
            .ok_or(ErrorCode::NoEntry)?;
        Ok((i, abs[m.guest.len()..].join("/")))
    }
}
