//! File primitives of the store, shared with the containers beside it: atomic writes,
//! private directories, and removal of trees that layers left read-only.

use std::io::{self, Write};

use cap_std::fs::{Dir, DirBuilder, OpenOptions};

use crate::content::temp_name;
use crate::error::{IoContext, Result};
use crate::fs::DirHandle;

/// Directories unpacked from layers can be read-only (mode 0555); give the owner write
/// permission on every directory below `name` so it can be removed.
pub(crate) fn make_removable(parent: &Dir, name: &str) -> Result<()> {
    let mut stack = vec![parent
        .open_dir_nofollow(std::ffi::OsStr::new(name))
        .context(|| format!("open {name}"))?];
    while let Some(dir) = stack.pop() {
        let _ = rustix::fs::fchmod(&dir, rustix::fs::Mode::from_raw_mode(0o700));
        for entry in dir.entries().context(|| format!("list {name}"))?.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                let name = entry.file_name();
                let opened = dir.open_dir_nofollow(&name).or_else(|_| {
                    // A directory with no permissions (overlayfs's work/work) opens after
                    // its owner gives it some back.
                    let _ = rustix::fs::chmodat(
                        &dir,
                        &*name,
                        rustix::fs::Mode::from_raw_mode(0o700),
                        rustix::fs::AtFlags::empty(),
                    );
                    dir.open_dir_nofollow(&name)
                });
                if let Ok(sub) = opened {
                    stack.push(sub);
                }
            }
        }
    }
    Ok(())
}

/// Write `name` in `dir` atomically: temp file, then rename. `durable` adds an fsync before
/// the rename, for what must survive a crash (the index, layer metadata); container records
/// are advisory and skip it, which keeps `run` fast.
pub fn write_atomic(dir: &Dir, name: &str, bytes: &[u8], durable: bool) -> Result<()> {
    let tmp = temp_name(&format!(".{name}"));
    let result = (|| {
        let f = write_new(dir, &tmp, bytes)?;
        if durable {
            f.sync_all().context(|| format!("fsync {name}"))?;
        }
        dir.rename(&tmp, dir, name)
            .context(|| format!("replace {name}"))
    })();
    if result.is_err() {
        let _ = dir.remove_file(&tmp);
    }
    result
}

/// Write the file `name`, which must not exist yet, in place (no rename).
pub(crate) fn write_new(dir: &Dir, name: &str, bytes: &[u8]) -> Result<cap_std::fs::File> {
    let mut f = dir
        .open_with(name, OpenOptions::new().write(true).create_new(true))
        .context(|| format!("write {name}"))?;
    f.write_all(bytes).context(|| format!("write {name}"))?;
    Ok(f)
}

/// The private (0700) directory `name` in `parent`, made if missing (a concurrent maker
/// is fine).
pub(crate) fn open_or_create(parent: &Dir, name: &str) -> io::Result<Dir> {
    match parent.open_dir(name) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            parent.create_dir_with(name, &private_dirs())?;
            parent.open_dir(name)
        }
        r => r,
    }
}

/// A builder of the store's directories: private (0700), parents made as needed.
pub(super) fn private_dirs() -> DirBuilder {
    let mut private = DirBuilder::new();
    cap_std::fs::DirBuilderExt::mode(&mut private, 0o700);
    private.recursive(true);
    private
}

/// Bytes in the regular files of the tree below `dir` (`ps -s`, `system df`).
pub(crate) fn tree_size(dir: Dir) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir];
    while let Some(dir) = stack.pop() {
        for name in dir.names().unwrap_or_default() {
            match dir.stat_at(&name) {
                Ok(Some(st)) if crate::fs::file_type(&st) == rustix::fs::FileType::Directory => {
                    stack.extend(dir.open_dir_nofollow(&name).ok());
                }
                Ok(Some(st)) if crate::fs::file_type(&st) == rustix::fs::FileType::RegularFile => {
                    total += st.st_size as u64;
                }
                _ => {}
            }
        }
    }
    total
}
