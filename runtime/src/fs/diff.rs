//! What a container changed: its upper directory read against the lower layers, as
//! `docker diff` reports it (A added, C changed, D deleted). The layer tar of the same
//! changes is `layer::write_layer` of the upper directory.

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStrExt;

use rustix::fs::FileType;

use super::handle::{file_type, is_whiteout, DirHandle};
use super::overlay::{dir_stack, is_opaque, merged_entries};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Changed,
    Deleted,
}

impl fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChangeKind::Added => "A",
            ChangeKind::Changed => "C",
            ChangeKind::Deleted => "D",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    /// Absolute path in the container, e.g. `/etc/hosts`.
    pub path: String,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.path)
    }
}

/// The changes in `upper` over `lowers` (topmost first), sorted by path.
pub fn changes<D: DirHandle>(lowers: &[D], upper: &D) -> io::Result<Vec<Change>> {
    let mut out = Vec::new();
    let lowers: Vec<D> = lowers
        .iter()
        .map(|l| l.try_clone_handle())
        .collect::<io::Result<_>>()?;
    let mut stack = vec![(upper.try_clone_handle()?, lowers, String::new())];
    while let Some((dir, lowers, prefix)) = stack.pop() {
        let mut names = dir.names()?;
        names.sort();
        for name in names {
            let Some(st) = dir.stat_at(&name)? else {
                continue;
            };
            let path = format!("{prefix}/{}", String::from_utf8_lossy(name.as_bytes()));
            let below = lower_kind(&lowers, &name)?;
            if is_whiteout(&st) {
                if below.is_some() {
                    out.push(Change {
                        kind: ChangeKind::Deleted,
                        path,
                    });
                }
                continue;
            }
            let kind = if below.is_some() {
                ChangeKind::Changed
            } else {
                ChangeKind::Added
            };
            out.push(Change {
                kind,
                path: path.clone(),
            });
            if file_type(&st) != FileType::Directory {
                continue;
            }
            let sub = dir.open_dir_nofollow(&name)?;
            let mut sub_lowers = Vec::new();
            if below == Some(FileType::Directory) {
                sub_lowers = dir_stack(&lowers, &name)?;
                if is_opaque(&sub)? {
                    // Everything the lower layers had here is gone.
                    for gone in merged_entries(&sub_lowers)?.into_iter().map(|e| e.name) {
                        if sub.stat_at(&gone)?.is_none() {
                            out.push(Change {
                                kind: ChangeKind::Deleted,
                                path: format!(
                                    "{path}/{}",
                                    String::from_utf8_lossy(gone.as_bytes())
                                ),
                            });
                        }
                    }
                    sub_lowers.clear();
                }
            }
            stack.push((sub, sub_lowers, path));
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// The type of `name` as the lower layers show it, if they do.
fn lower_kind<D: DirHandle>(lowers: &[D], name: &OsString) -> io::Result<Option<FileType>> {
    for l in lowers {
        if let Some(st) = l.stat_at(name)? {
            return Ok((!is_whiteout(&st)).then(|| file_type(&st)));
        }
    }
    Ok(None)
}
