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

/// The store cache that holds the records.
const CACHE: &str = "build";

pub(crate) struct Cache<'a> {
    store: &'a Store,
    dir: Dir,
}

impl<'a> Cache<'a> {
    pub fn open(store: &'a Store) -> Result<Cache<'a>, BuildError> {
        let dir = store.cache_dir(CACHE)?;
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn records_live_in_the_store_cache_and_prune_drops_stale_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("store")).unwrap();
        let cache = Cache::open(&store).unwrap();
        let meta = Record {
            created: "2024-01-01T00:00:00Z".into(),
            layer: None,
        };
        let gone = Record {
            created: meta.created.clone(),
            layer: Some(CachedLayer {
                descriptor: Descriptor::new(
                    "application/vnd.oci.image.layer.v1.tar",
                    Digest::of(b"x"),
                    1,
                ),
                diff_id: Digest::of(b"x"),
            }),
        };
        let (k1, k2) = (Key::root("a"), Key::root("b"));
        cache.put(&k1, &meta).unwrap();
        cache.put(&k2, &gone).unwrap();
        let dir = store.path().join("cache/build");
        assert!(dir.join(format!("{}.json", k1.0)).is_file());
        assert_eq!(cache.get(&k1), Some(meta));
        assert_eq!(cache.get(&k2), None, "its layer is not in the store");
        assert_eq!(cache.layers().len(), 2);

        let mounts = store.cache_dir(crate::engine::MOUNT_CACHE).unwrap();
        mounts.create_dir_all("id/ro").unwrap();
        let ro = store.path().join("cache/mounts/id/ro");
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();

        assert_eq!(crate::engine::prune_cache(&store, false).unwrap(), 1);
        assert!(ro.is_dir(), "cache mounts stay without --all");
        assert_eq!(crate::engine::prune_cache(&store, true).unwrap(), 1);
        assert!(!store.path().join("cache/mounts").exists());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    }
}
