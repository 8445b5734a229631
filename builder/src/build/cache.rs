//! The build cache: one record per step key, in the store (`cache/build/<key>.json`). A key
//! chains its parent's key with everything the step depends on (the instruction after
//! expansion, the environment and user of a RUN, the checksum of a COPY's sources), so a
//! hit is never wrong; a record whose layer was pruned is a miss.

use cap_std::fs::Dir;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use strata_runtime::image::Descriptor;
use strata_runtime::store::write_atomic;
use strata_runtime::{Digest, Store};

use super::BuildError;

/// What a step produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Record {
    /// The history time of the step, so a cached rebuild writes the same config.
    pub created: String,
    /// The layer of a filesystem step.
    #[serde(default)]
    pub layer: Option<CachedLayer>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct CachedLayer {
    pub descriptor: Descriptor,
    pub diff_id: Digest,
}

/// A cache key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Key(pub String);

impl Key {
    pub fn root(what: &str) -> Key {
        Key(hash(&["root", what]))
    }

    /// The key of a step after `self`, from the parts it depends on.
    pub fn then(&self, parts: &[&str]) -> Key {
        let mut all = vec![self.0.as_str()];
        all.extend_from_slice(parts);
        Key(hash(&all))
    }
}

fn hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    super::context::hex(&h.finalize())
}

pub(crate) struct Cache<'a> {
    store: &'a Store,
    dir: Dir,
}

impl<'a> Cache<'a> {
    pub fn open(store: &'a Store) -> Result<Cache<'a>, BuildError> {
        let path = store.path().join("cache/build");
        std::fs::create_dir_all(&path)
            .map_err(|e| BuildError::Other(format!("create {}: {e}", path.display())))?;
        let dir = Dir::open_ambient_dir(&path, cap_std::ambient_authority())
            .map_err(|e| BuildError::Other(format!("open {}: {e}", path.display())))?;
        Ok(Cache { store, dir })
    }

    /// The record of `key`, if its layer is still in the store.
    pub fn get(&self, key: &Key) -> Option<Record> {
        self.read(&format!("{}.json", key.0))
            .filter(|r| self.live(r))
    }

    /// The record in file `name`; None if it cannot be read.
    fn read(&self, name: &str) -> Option<Record> {
        let bytes = self.dir.read(name).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Whether the record's layer (if any) is still in the store.
    fn live(&self, record: &Record) -> bool {
        record.layer.as_ref().is_none_or(|l| {
            self.store.content().contains(&l.descriptor.digest) && self.store.has_layer(&l.diff_id)
        })
    }

    pub fn put(&self, key: &Key, record: &Record) -> Result<(), BuildError> {
        let bytes = serde_json::to_vec(record).expect("serialize");
        write_atomic(&self.dir, &format!("{}.json", key.0), &bytes, false)
            .map_err(BuildError::Runtime)
    }
}

impl Cache<'_> {
    /// Every record's layer (None for metadata steps).
    pub fn layers(&self) -> Vec<Option<Digest>> {
        self.records()
            .filter_map(|name| self.read(&name))
            .map(|r| r.layer.map(|l| l.diff_id))
            .collect()
    }

    /// Remove the records whose layer is gone from the store (or that cannot be read), or
    /// every record with `all`; how many went.
    pub fn prune(&self, all: bool) -> usize {
        let mut removed = 0;
        for name in self.records().collect::<Vec<_>>() {
            let stale = self.read(&name).is_none_or(|r| !self.live(&r));
            if (all || stale) && self.dir.remove_file(&name).is_ok() {
                removed += 1;
            }
        }
        removed
    }

    fn records(&self) -> impl Iterator<Item = String> + '_ {
        self.dir
            .entries()
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json"))
    }
}
