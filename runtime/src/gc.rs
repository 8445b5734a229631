//! Garbage collection: the one place that knows both what images and what containers hold
//! on to. A blob or unpacked layer lives while a tag reaches it or a container stands on
//! it (a container keeps its image's manifest, config and layers after `rmi`); the rest,
//! leftover staging in `tmp/` and the debris of killed runs go at `prune`.

use std::collections::HashSet;

use crate::container::Containers;
use crate::digest::Digest;
use crate::error::Result;
use crate::image::Descriptor;
use crate::store::Store;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    pub blobs: usize,
    pub layers: usize,
    pub bytes: u64,
}

#[derive(Debug, Default, Clone)]
pub struct DiskUsage {
    pub images: usize,
    /// Bytes used by blobs and unpacked layers that some image references.
    pub used: u64,
    /// Bytes `prune` would free.
    pub reclaimable: u64,
}

/// Blobs and unpacked layers (entry names in `layers/`) nothing reaches, with their sizes,
/// and the size of all of them, reached or not (from the same listing).
struct Garbage {
    blobs: Vec<(Digest, u64)>,
    layers: Vec<(String, u64)>,
    total: u64,
}

/// Everything reachable from `index.json`, and from the containers: blobs, and layers by
/// diff_id.
fn reachable(
    store: &Store,
    containers: &Containers<'_>,
) -> Result<(HashSet<Digest>, HashSet<Digest>)> {
    let mut blobs = HashSet::new();
    let mut layers = HashSet::new();
    let mut roots: Vec<Descriptor> = Vec::new();
    for c in containers.list()? {
        layers.extend(c.layers);
        roots.push(c.manifest);
    }
    roots.extend(store.index()?.manifests);
    for desc in roots {
        blobs.insert(desc.digest.clone());
        let Ok(manifest) = store.manifest(&desc) else {
            continue;
        };
        blobs.insert(manifest.config.digest.clone());
        blobs.extend(manifest.layers.iter().map(|l| l.digest.clone()));
        if let Ok(config) = store.config(&manifest.config) {
            layers.extend(config.rootfs.diff_ids);
        }
    }
    Ok((blobs, layers))
}

fn garbage(store: &Store, containers: &Containers<'_>) -> Result<Garbage> {
    let (blobs, layers) = reachable(store, containers)?;
    let mut garbage = Garbage {
        blobs: Vec::new(),
        layers: Vec::new(),
        total: 0,
    };
    for blob in store.content().list()? {
        garbage.total += blob.size;
        if !blobs.contains(&blob.digest) {
            garbage.blobs.push((blob.digest, blob.size));
        }
    }
    for name in store.layer_names()? {
        let size = store.layer_size_of(&name);
        garbage.total += size;
        let live = format!("sha256:{name}")
            .parse::<Digest>()
            .is_ok_and(|d| layers.contains(&d));
        if !live {
            garbage.layers.push((name, size));
        }
    }
    Ok(garbage)
}

/// Remove every blob and unpacked layer nothing reaches, leftover staging files, and
/// container and volume directories that killed runs left behind. Waits for every writer to finish.
pub fn prune(store: &Store) -> Result<GcReport> {
    let _gc = store.gc_lock()?;
    let containers = Containers::open(store)?;
    let garbage = garbage(store, &containers)?;
    let mut report = GcReport::default();
    for (digest, size) in garbage.blobs {
        store.content().delete(&digest)?;
        report.blobs += 1;
        report.bytes += size;
    }
    for (name, size) in garbage.layers {
        store.remove_layer(&name)?;
        report.layers += 1;
        report.bytes += size;
    }
    containers.remove_debris()?;
    crate::volume::Volumes::open(store)?.remove_debris()?;
    // No writer holds the GC lock now, so nothing in tmp/ is in use.
    store.clear_tmp()?;
    Ok(report)
}

/// What the store's images use, and what `prune` would free.
pub fn disk_usage(store: &Store) -> Result<DiskUsage> {
    let garbage = garbage(store, &Containers::open(store)?)?;
    let reclaimable = garbage.blobs.iter().map(|b| b.1).sum::<u64>()
        + garbage.layers.iter().map(|l| l.1).sum::<u64>();
    Ok(DiskUsage {
        images: store.images()?.len(),
        used: garbage.total - reclaimable,
        reclaimable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Kind;
    use crate::compression::Compression;
    use crate::image::{ImageConfig, RootFs};
    use crate::reference::Reference;

    /// An image of one layer holding `file`, tagged `name`.
    fn image(store: &Store, name: &str, file: &str) -> crate::store::Image {
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_size(3);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, file, &b"abc"[..]).unwrap();
        let bytes = tar.into_inner().unwrap();
        let layer = store
            .import_layer(&bytes[..], Compression::Gzip, None)
            .unwrap();
        let config = ImageConfig {
            architecture: "amd64".into(),
            os: "linux".into(),
            rootfs: RootFs {
                kind: "layers".into(),
                diff_ids: vec![layer.diff_id.clone()],
            },
            ..Default::default()
        };
        let manifest = store.put_image(&config, vec![layer.descriptor]).unwrap();
        let name = Reference::parse(name).unwrap();
        store.add_image(Some(&name), &manifest).unwrap();
        store.resolve(&name.to_string()).unwrap()
    }

    #[test]
    fn prune_frees_only_what_nothing_holds() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("store")).unwrap();
        let kept = image(&store, "kept", "a");
        let used = image(&store, "used", "b");
        let dropped = image(&store, "dropped", "c");
        let containers = Containers::open(&store).unwrap();
        let c = containers
            .create(&used, "used", Kind::Native, Some("user"))
            .unwrap();
        for i in [&used, &dropped] {
            for n in &i.names {
                store.remove_tag(n).unwrap();
            }
        }
        // Debris: a staging file, and a container directory without a record.
        store.root_dir().write("tmp/stale", b"x").unwrap();
        std::fs::create_dir(tmp.path().join("store/containers/deadbeef")).unwrap();

        let du = disk_usage(&store).unwrap();
        assert_eq!(du.images, 1);
        assert!(du.reclaimable > 0 && du.used > 0, "{du:?}");

        let report = prune(&store).unwrap();
        // The dropped image's manifest, config and layer blob, and its unpacked layer.
        assert_eq!((report.blobs, report.layers), (3, 1), "{report:?}");
        assert_eq!(report.bytes, du.reclaimable);
        let layer = |i: &crate::store::Image| i.config.rootfs.diff_ids[0].clone();
        assert!(store.has_layer(&layer(&kept)));
        assert!(store.has_layer(&layer(&used)), "a container stands on it");
        assert!(store.image(&used.manifest_descriptor).is_ok());
        assert!(!store.has_layer(&layer(&dropped)));
        assert!(store.image(&dropped.manifest_descriptor).is_err());
        assert!(!tmp.path().join("store/tmp/stale").exists());
        assert!(!tmp.path().join("store/containers/deadbeef").exists());
        assert_eq!(disk_usage(&store).unwrap().reclaimable, 0);

        // Once the container goes, so does what it held.
        containers.remove(&c).unwrap();
        let report = prune(&store).unwrap();
        assert_eq!((report.blobs, report.layers), (3, 1), "{report:?}");
        assert!(!store.has_layer(&layer(&used)));
        assert!(store.has_layer(&layer(&kept)));
        assert!(store.resolve("kept").is_ok());
    }
}
