//! The store: an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`) with the
//! unpacked layers beside it (`layers/<diff_id hex>/fs`), a private `tmp/` for staging,
//! private caches (`cache/<name>/`) for those above it, and lock files. Any OCI tool can
//! read the layout as it is.
//!
//! Consistency: blobs and unpacked layers are published by rename after verification; an
//! image becomes visible only when its tag is written into `index.json`, last. Writers hold
//! the GC lock shared for their whole run and the collector (`crate::gc`) takes it
//! exclusively, so it never removes what an import in progress has published but not yet
//! tagged.
//!
//! Parts: `index` (tags and the images they name), `layers` (unpacked layers), `scratch`
//! (the caches and `tmp/` handed out as directories), `files` (atomic writes, removal of
//! read-only trees). This module opens the layout and holds its locks.

mod files;
mod index;
mod layers;
mod scratch;

use std::io;
use std::path::{Path, PathBuf};

use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions};

use crate::content::ContentStore;
use crate::error::{Error, IoContext, Result};
use crate::image::Index;
use crate::layer::ApplyOptions;

use files::private_dirs;
pub use files::write_atomic;
pub(crate) use files::{make_removable, open_or_create, tree_size, write_new};
pub use index::Image;
pub use layers::LayerInfo;
pub use scratch::Scratch;

const LAYOUT_FILE: &str = "oci-layout";
const INDEX_FILE: &str = "index.json";
const LAYERS_DIR: &str = "layers";
const TMP_DIR: &str = "tmp";
const CACHE_DIR: &str = "cache";
const GC_LOCK: &str = "gc.lock";
const INDEX_LOCK: &str = "index.lock";
const NETWORKS_DIR: &str = "networks";
const NETWORK_LOCK: &str = "network.lock";

pub struct Store {
    path: PathBuf,
    root: Dir,
    content: ContentStore,
    layers: Dir,
    tmp: Dir,
    apply: ApplyOptions,
}

/// The default store root: `/var/lib/strata` for root on the host, else (root in a user
/// namespace too: its stores are rootless ones) `$XDG_DATA_HOME/strata` or
/// `~/.local/share/strata`.
pub fn default_root() -> PathBuf {
    if crate::privilege::privileged() {
        return PathBuf::from("/var/lib/strata");
    }
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("strata");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/strata")
}

/// A held flock; released on drop.
pub struct Lock(#[allow(dead_code)] cap_std::fs::File);

impl Store {
    /// Open the store at `path`, creating an empty layout there if needed.
    pub fn open(path: &Path) -> Result<Store> {
        // An initialised store is opened with one open per directory; only a missing part
        // sends us through creating the layout (idempotent, so a concurrent first use is
        // fine). Any other failure (permissions) is reported as it is.
        match Store::open_existing(path) {
            Err(Error::Io { source, .. } | Error::IoPath { source, .. })
                if source.kind() == io::ErrorKind::NotFound =>
            {
                Store::init(path)?;
                Store::open_existing(path)
            }
            opened => opened,
        }
    }

    fn open_existing(path: &Path) -> Result<Store> {
        let root = Dir::open_ambient_dir(path, ambient_authority()).map_err(|e| Error::IoPath {
            path: path.into(),
            source: e,
        })?;
        let open = |name: &str| {
            root.open_dir(name)
                .context(|| format!("open {}", path.join(name).display()))
        };
        let tmp = open(TMP_DIR)?;
        let content = ContentStore::new(
            open("blobs/sha256")?,
            tmp.try_clone().context(|| "duplicate tmp handle".into())?,
        );
        let layers = open(LAYERS_DIR)?;
        // Written last by `init`: its presence means the layout is whole.
        rustix::fs::statat(&root, INDEX_FILE, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).map_err(
            |e| Error::IoPath {
                path: path.join(INDEX_FILE),
                source: e.into(),
            },
        )?;
        Ok(Store {
            path: path.to_path_buf(),
            layers,
            tmp,
            content,
            root,
            apply: ApplyOptions::default(),
        })
    }

    /// Create whatever part of an empty layout is missing at `path`.
    fn init(path: &Path) -> Result<()> {
        let mut builder = std::fs::DirBuilder::new();
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .recursive(true)
            .create(path)
            .map_err(|e| Error::IoPath {
                path: path.into(),
                source: e,
            })?;
        let root = Dir::open_ambient_dir(path, ambient_authority()).map_err(|e| Error::IoPath {
            path: path.into(),
            source: e,
        })?;
        let private = private_dirs();
        for dir in ["blobs/sha256", LAYERS_DIR, TMP_DIR] {
            root.create_dir_with(dir, &private)
                .context(|| format!("create {}", path.join(dir).display()))?;
        }
        if !root.exists(LAYOUT_FILE) {
            write_atomic(
                &root,
                LAYOUT_FILE,
                br#"{"imageLayoutVersion":"1.0.0"}"#,
                true,
            )?;
        }
        if !root.exists(INDEX_FILE) {
            write_atomic(
                &root,
                INDEX_FILE,
                &serde_json::to_vec(&Index::empty()).expect("serialize"),
                true,
            )?;
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The store's root directory handle.
    pub(crate) fn root_dir(&self) -> &Dir {
        &self.root
    }

    pub fn content(&self) -> &ContentStore {
        &self.content
    }

    pub(crate) fn lock(&self, name: &str, exclusive: bool) -> Result<Lock> {
        let file = self
            .root
            .open_with(
                name,
                OpenOptions::new().create(true).truncate(false).write(true),
            )
            .context(|| format!("open lock {name}"))?;
        let op = if exclusive {
            rustix::fs::FlockOperation::LockExclusive
        } else {
            rustix::fs::FlockOperation::LockShared
        };
        rustix::fs::flock(&file, op).context(|| format!("lock {name}"))?;
        Ok(Lock(file))
    }

    /// Serialises changes to `index.json` and to container names.
    pub fn index_lock(&self) -> Result<Lock> {
        self.lock(INDEX_LOCK, true)
    }

    /// Serialises changes to the networks' state (strata-net's); held for milliseconds.
    pub fn network_lock(&self) -> Result<Lock> {
        self.lock(NETWORK_LOCK, true)
    }

    /// The networks' state directory (strata-net's), made at first use.
    pub fn networks_dir(&self) -> Result<Dir> {
        files::open_or_create(&self.root, NETWORKS_DIR).context(|| "open networks directory".into())
    }

    /// Held by every operation that adds content, so the collector waits for it to finish.
    pub fn writer_lock(&self) -> Result<Lock> {
        self.lock(GC_LOCK, false)
    }

    /// Held by the collector: no writer runs while it is held.
    pub(crate) fn gc_lock(&self) -> Result<Lock> {
        self.lock(GC_LOCK, true)
    }
}

#[cfg(test)]
mod tests;
