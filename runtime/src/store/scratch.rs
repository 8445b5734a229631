//! What the store lends to those above it: its caches (`cache/<name>/`: the build cache,
//! cache mounts, compiled Wasm code) and scratch space in `tmp/`, as directory handles, so
//! no caller joins paths onto the store's root.

use std::io;
use std::path::{Path, PathBuf};

use cap_std::fs::{Dir, DirBuilder, OpenOptions};

use super::{make_removable, open_or_create, Store, CACHE_DIR, TMP_DIR};
use crate::content::temp_name;
use crate::error::{Error, IoContext, Result};

/// A private directory in the store's `tmp/` for work in progress (a build step's new
/// layer), removed with everything in it when dropped. Its maker holds the store's writer
/// lock while it lives: the collector clears `tmp/` when no writer runs.
pub struct Scratch {
    tmp: Dir,
    name: String,
    dir: Dir,
    path: PathBuf,
}

impl Scratch {
    pub fn dir(&self) -> &Dir {
        &self.dir
    }

    /// Its host path, for what must be given a path (an overlayfs upperdir).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Best effort: what cannot go now goes at the next prune.
        let _ = make_removable(&self.tmp, &self.name);
        let _ = self.tmp.remove_dir_all(&self.name);
    }
}

/// A cache's name must be one plain component: a cache is never outside `cache/`.
fn cache_name(name: &str) -> Result<&str> {
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if plain {
        Ok(name)
    } else {
        Err(Error::InvalidArgument(format!(
            "{name:?}: not a store cache name"
        )))
    }
}

impl Store {
    /// The cache `name` (`cache/<name>/`), made private (0700) if missing.
    pub fn cache_dir(&self, name: &str) -> Result<Dir> {
        let name = cache_name(name)?;
        open_or_create(&self.root, CACHE_DIR)
            .and_then(|cache| open_or_create(&cache, name))
            .context(|| format!("open cache {name}"))
    }

    /// The host path of the cache `name`, made as `cache_dir` makes it: only for what the
    /// kernel or a library must be given a path (a bind-mount source, code to map).
    pub fn cache_path(&self, name: &str) -> Result<PathBuf> {
        self.cache_dir(name)?;
        Ok(self.path.join(CACHE_DIR).join(name))
    }

    /// Remove the cache `name` and everything in it; false when there was none.
    pub fn remove_cache(&self, name: &str) -> Result<bool> {
        let name = cache_name(name)?;
        let cache = match self.root.open_dir(CACHE_DIR) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            r => r.context(|| "open cache".into())?,
        };
        match cache.symlink_metadata(name) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            r => r.context(|| format!("open cache {name}"))?,
        };
        // Cache mounts can hold directories a build made read-only.
        let _ = make_removable(&cache, name);
        cache
            .remove_dir_all(name)
            .context(|| format!("remove cache {name}"))?;
        Ok(true)
    }

    /// A new private scratch directory in `tmp/`, named after `prefix`.
    pub fn scratch(&self, prefix: &str) -> Result<Scratch> {
        let tmp = self
            .tmp
            .try_clone()
            .context(|| "duplicate tmp handle".into())?;
        let name = temp_name(prefix);
        let mut private = DirBuilder::new();
        cap_std::fs::DirBuilderExt::mode(&mut private, 0o700);
        tmp.create_dir_with(&name, &private)
            .context(|| "create scratch directory".into())?;
        let dir = match tmp.open_dir(&name) {
            Ok(dir) => dir,
            Err(e) => {
                let _ = tmp.remove_dir(&name);
                return Err(e).context(|| "open scratch directory".into());
            }
        };
        Ok(Scratch {
            path: self.path.join(TMP_DIR).join(&name),
            tmp,
            name,
            dir,
        })
    }

    /// A new scratch file, unnamed (gone when closed, whatever happens to the process)
    /// where the filesystem can do that, else unlinked at once.
    pub fn scratch_file(&self) -> Result<std::fs::File> {
        use rustix::fs::{Mode, OFlags};
        let flags = OFlags::RDWR | OFlags::CLOEXEC;
        match rustix::fs::openat(
            &self.tmp,
            ".",
            flags | OFlags::TMPFILE,
            Mode::RUSR | Mode::WUSR,
        ) {
            Ok(fd) => return Ok(std::fs::File::from(fd)),
            // Filesystems without O_TMPFILE say so in one of these.
            Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::ISDIR) => {}
            Err(e) => return Err(e).context(|| "create scratch file".into()),
        }
        let name = temp_name(".scratch");
        let file = self
            .tmp
            .open_with(
                &name,
                OpenOptions::new().read(true).write(true).create_new(true),
            )
            .context(|| "create scratch file".into())?;
        self.tmp
            .remove_file(&name)
            .context(|| "unlink scratch file".into())?;
        Ok(file.into_std())
    }

    /// Remove everything in `tmp/`: only under the GC lock, when no writer runs (so
    /// nothing there is in use). Best effort, as what is left goes at a later prune.
    pub(crate) fn clear_tmp(&self) -> Result<()> {
        for entry in self.tmp.entries().context(|| "list tmp".into())?.flatten() {
            let name = entry.file_name();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                let _ = make_removable(&self.tmp, &name.to_string_lossy());
                let _ = self.tmp.remove_dir_all(&name);
            } else {
                let _ = self.tmp.remove_file(&name);
            }
        }
        Ok(())
    }
}
