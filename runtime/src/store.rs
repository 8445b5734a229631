//! The store: an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`) with the
//! unpacked layers beside it (`layers/<diff_id hex>/fs`), a private `tmp/` for staging, and
//! lock files. Any OCI tool can read the layout as it is.
//!
//! Consistency: blobs and unpacked layers are published by rename after verification; an
//! image becomes visible only when its tag is written into `index.json`, last. Writers hold
//! the GC lock shared for their whole run and `prune` takes it exclusively, so garbage
//! collection never removes what an import in progress has published but not yet tagged.

use std::collections::{BTreeMap, HashSet};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use cap_std::ambient_authority;
use cap_std::fs::{Dir, DirBuilder, OpenOptions};
use serde::{Deserialize, Serialize};

use crate::compression::{self, Compression, Encoder};
use crate::content::{temp_name, ContentStore};
use crate::digest::{Digest, Hashing};
use crate::error::{from_io, Error, IoContext, Result};
use crate::fs::DirHandle;
use crate::image::{
    parse_document, Descriptor, Document, ImageConfig, Index, Manifest, ANNOTATION_REF_NAME,
    MAX_DOCUMENT_SIZE, MEDIA_OCI_CONFIG, MEDIA_OCI_MANIFEST,
};
use crate::layer::{apply_layer, write_layer, ApplyOptions, WriteOptions};
use crate::progress::{Progress, ProgressReader};
use crate::reference::Reference;

const LAYOUT_FILE: &str = "oci-layout";
const INDEX_FILE: &str = "index.json";
const LAYERS_DIR: &str = "layers";
const TMP_DIR: &str = "tmp";
const GC_LOCK: &str = "gc.lock";
const INDEX_LOCK: &str = "index.lock";

pub struct Store {
    path: PathBuf,
    root: Dir,
    content: ContentStore,
    layers: Dir,
    tmp: Dir,
    apply: ApplyOptions,
}

/// A layer as the store holds it: its blob descriptor, its diff_id and unpacked size.
#[derive(Debug, Clone)]
pub struct LayerInfo {
    pub descriptor: Descriptor,
    pub diff_id: Digest,
    pub size: u64,
}

/// What the store keeps next to an unpacked layer.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LayerMeta {
    diff_id: Digest,
    /// Bytes of file content, as docker reports layer sizes.
    size: u64,
}

/// An image in the store: a manifest, its config, and the tags that point at it.
#[derive(Debug, Clone)]
pub struct Image {
    pub manifest_descriptor: Descriptor,
    pub manifest: Manifest,
    pub config: ImageConfig,
    /// Tags (index entries) that point at this manifest, as written in `index.json`.
    pub names: Vec<String>,
}

impl Image {
    /// Docker's image ID: the digest of the config.
    pub fn id(&self) -> &Digest {
        &self.manifest.config.digest
    }

    pub fn digest(&self) -> &Digest {
        &self.manifest_descriptor.digest
    }
}

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

    fn lock(&self, name: &str, exclusive: bool) -> Result<Lock> {
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

    /// Held by every operation that adds content, so `prune` waits for it to finish.
    pub fn writer_lock(&self) -> Result<Lock> {
        self.lock(GC_LOCK, false)
    }

    // ----- the index: tags -----

    pub fn index(&self) -> Result<Index> {
        let bytes = self
            .root
            .read(INDEX_FILE)
            .context(|| "read index.json".into())?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::InvalidDocument(format!("index.json: {e}")))
    }

    /// Read-modify-write `index.json` under the index lock; the write is atomic.
    pub fn update_index<T>(&self, f: impl FnOnce(&mut Index) -> Result<T>) -> Result<T> {
        let _lock = self.lock(INDEX_LOCK, true)?;
        let mut index = self.index()?;
        let out = f(&mut index)?;
        index
            .manifests
            .sort_by(|a, b| a.ref_name().cmp(&b.ref_name()));
        write_atomic(
            &self.root,
            INDEX_FILE,
            &serde_json::to_vec_pretty(&index).expect("serialize"),
            true,
        )?;
        Ok(out)
    }

    /// Point `name` at the manifest `target` (replacing what it pointed at).
    pub fn set_tag(&self, name: &Reference, target: &Descriptor) -> Result<()> {
        self.add_images(&[(target.clone(), vec![name.clone()])])
    }

    /// Record a new image: tagged `name`, or untagged (listed as `<none>`) without one.
    pub fn add_image(&self, name: Option<&Reference>, manifest: &Descriptor) -> Result<()> {
        self.add_images(&[(manifest.clone(), name.into_iter().cloned().collect())])
    }

    /// Record images in one index update (one rewrite and fsync, however many): each
    /// manifest tagged with its names, which stop pointing at anything else, or added
    /// untagged when it has none and is not in the index yet.
    pub fn add_images(&self, images: &[(Descriptor, Vec<Reference>)]) -> Result<()> {
        let names: HashSet<String> = images
            .iter()
            .flat_map(|(_, names)| names.iter().map(Reference::to_string))
            .collect();
        self.update_index(|index| {
            index
                .manifests
                .retain(|d| d.ref_name().is_none_or(|n| !names.contains(n)));
            let mut present: HashSet<Digest> =
                index.manifests.iter().map(|d| d.digest.clone()).collect();
            // A name given twice points at the last image given it.
            let mut tagged: BTreeMap<String, Descriptor> = BTreeMap::new();
            for (target, names) in images {
                if names.is_empty() && present.insert(target.digest.clone()) {
                    index.manifests.push(target.clone());
                }
                for name in names {
                    let mut desc =
                        Descriptor::new(&target.media_type, target.digest.clone(), target.size);
                    desc.platform = target.platform.clone();
                    desc.annotations
                        .insert(ANNOTATION_REF_NAME.into(), name.to_string());
                    present.insert(target.digest.clone());
                    tagged.insert(name.to_string(), desc);
                }
            }
            index.manifests.extend(tagged.into_values());
            Ok(())
        })
    }

    /// Remove tag `name`; false when it did not exist.
    pub fn remove_tag(&self, name: &str) -> Result<bool> {
        self.update_index(|index| {
            let before = index.manifests.len();
            index.manifests.retain(|d| d.ref_name() != Some(name));
            Ok(index.manifests.len() != before)
        })
    }

    // ----- images -----

    pub fn manifest(&self, desc: &Descriptor) -> Result<Manifest> {
        let bytes = self
            .content
            .read(&desc.digest, Some(desc.size), MAX_DOCUMENT_SIZE)?;
        match parse_document(&desc.media_type, &bytes)? {
            Document::Manifest(m) => Ok(m),
            Document::Index(_) => Err(Error::InvalidDocument(format!(
                "{}: expected a manifest, found an index",
                desc.digest
            ))),
        }
    }

    pub fn config(&self, desc: &Descriptor) -> Result<ImageConfig> {
        let bytes = self
            .content
            .read(&desc.digest, Some(desc.size), MAX_DOCUMENT_SIZE)?;
        ImageConfig::parse(&bytes)
    }

    /// The image whose manifest is `desc`, tagged or not.
    pub fn image(&self, desc: &Descriptor) -> Result<Image> {
        let manifest = self.manifest(desc)?;
        let config = self.config(&manifest.config)?;
        Ok(Image {
            manifest_descriptor: desc.clone(),
            manifest,
            config,
            names: Vec::new(),
        })
    }

    /// Every tagged image, grouped by manifest, in index order.
    pub fn images(&self) -> Result<Vec<Image>> {
        self.images_in(&self.index()?)
    }

    fn images_in(&self, index: &Index) -> Result<Vec<Image>> {
        let mut seen = HashSet::new();
        index
            .manifests
            .iter()
            .filter(|d| seen.insert(&d.digest))
            .map(|d| self.indexed_image(index, d))
            .collect()
    }

    /// The image `entry` of `index` points at, as `images` lists it: the descriptor of the
    /// first entry for its manifest, and the tags of all of them.
    fn indexed_image(&self, index: &Index, entry: &Descriptor) -> Result<Image> {
        let same = || index.manifests.iter().filter(|d| d.digest == entry.digest);
        let mut image = self.image(same().next().unwrap_or(entry))?;
        image.names = same()
            .filter_map(|d| d.ref_name().map(str::to_string))
            .collect();
        Ok(image)
    }

    /// Find an image the way docker does: by name (`busybox` = `docker.io/library/busybox:latest`),
    /// by full or short image ID (`sha256:…`, a unique hex prefix), or `name@digest`. Only
    /// an ID needs every image read (it is the config's digest, named by the manifests).
    pub fn resolve(&self, name: &str) -> Result<Image> {
        let index = self.index()?;
        // A name wins over an ID prefix that happens to spell it (`b`, `cafe`), as in docker.
        if !name.starts_with("sha256:") {
            if let Ok(reference) = Reference::parse(name) {
                let wanted = reference.to_string();
                let tagged = |d: &&Descriptor| d.ref_name() == Some(wanted.as_str());
                let by_digest = |d: &&Descriptor| {
                    reference.digest() == Some(&d.digest)
                        && d.ref_name().is_some_and(|n| {
                            Reference::parse(n)
                                .is_ok_and(|r| r.repository() == reference.repository())
                        })
                };
                if let Some(entry) = index
                    .manifests
                    .iter()
                    .find(tagged)
                    .or_else(|| index.manifests.iter().find(by_digest))
                {
                    return self.indexed_image(&index, entry);
                }
            }
        }
        let id = name.strip_prefix("sha256:").unwrap_or(name);
        let is_id = !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
        if !is_id {
            // Not a known name and not an ID: say why the name is bad, if it is.
            Reference::parse(name)?;
            return Err(Error::ImageNotFound(name.into()));
        }
        let images = self.images_in(&index)?;
        let found: Vec<&Image> = images
            .iter()
            .filter(|i| i.id().hex().starts_with(id))
            .collect();
        match found.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(Error::ImageNotFound(name.into())),
            _ => Err(Error::InvalidArgument(format!(
                "{name}: ambiguous image ID prefix"
            ))),
        }
    }

    /// Write config and manifest for an image with `layers` (already in the store).
    pub fn put_image(&self, config: &ImageConfig, layers: Vec<Descriptor>) -> Result<Descriptor> {
        let config_bytes = serde_json::to_vec(config).expect("serialize");
        let config_info = self.content.put(&config_bytes)?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(MEDIA_OCI_MANIFEST.into()),
            artifact_type: None,
            config: Descriptor::new(MEDIA_OCI_CONFIG, config_info.digest, config_info.size),
            layers,
            subject: None,
            annotations: BTreeMap::new(),
        };
        let bytes = serde_json::to_vec(&manifest).expect("serialize");
        let info = self.content.put(&bytes)?;
        let mut desc = Descriptor::new(MEDIA_OCI_MANIFEST, info.digest, info.size);
        desc.platform = Some(config.platform());
        Ok(desc)
    }

    // ----- layers -----

    /// The host path of an unpacked layer's tree: what overlayfs takes as a lowerdir.
    pub fn layer_path(&self, diff_id: &Digest) -> PathBuf {
        self.path.join(LAYERS_DIR).join(diff_id.hex()).join("fs")
    }

    pub fn layer_dir(&self, diff_id: &Digest) -> Result<Dir> {
        self.layers
            .open_dir(Path::new(diff_id.hex()).join("fs"))
            .context(|| format!("open layer {diff_id}"))
    }

    pub fn has_layer(&self, diff_id: &Digest) -> bool {
        self.layers
            .exists(Path::new(diff_id.hex()).join("meta.json"))
    }

    /// The unpacked size of a layer, if it is unpacked.
    pub fn layer_size(&self, diff_id: &Digest) -> Option<u64> {
        let bytes = self
            .layers
            .read(Path::new(diff_id.hex()).join("meta.json"))
            .ok()?;
        serde_json::from_slice::<LayerMeta>(&bytes)
            .ok()
            .map(|m| m.size)
    }

    /// A container root over an image's layers (`diff_ids` bottom first, as in the config)
    /// with `upper` as its writable layer. Nothing is copied, whatever the image's size.
    pub fn open_root(&self, diff_ids: &[Digest], upper: Dir) -> Result<crate::fs::Overlay<Dir>> {
        let lowers = diff_ids
            .iter()
            .rev()
            .map(|d| self.layer_dir(d))
            .collect::<Result<Vec<_>>>()?;
        Ok(crate::fs::Overlay::new(lowers, upper))
    }

    fn staging(&self) -> Result<(String, Dir)> {
        let name = temp_name("layer");
        self.tmp
            .create_dir(&name)
            .context(|| "create staging directory".into())?;
        self.tmp
            .create_dir(format!("{name}/fs"))
            .context(|| "create staging directory".into())?;
        let fs = self
            .tmp
            .open_dir(format!("{name}/fs"))
            .context(|| "open staging directory".into())?;
        Ok((name, fs))
    }

    /// Move a staged layer into `layers/` (or drop it if that layer is already there).
    fn publish_layer(&self, staging: &str, meta: &LayerMeta) -> Result<()> {
        let result = (|| {
            if self.has_layer(&meta.diff_id) {
                return Ok(());
            }
            let staged = self
                .tmp
                .open_dir(staging)
                .context(|| "open staging".into())?;
            write_atomic(
                &staged,
                "meta.json",
                &serde_json::to_vec(meta).expect("serialize"),
                true,
            )?;
            match self.tmp.rename(staging, &self.layers, meta.diff_id.hex()) {
                // Another process published the same layer first.
                Err(_) if self.has_layer(&meta.diff_id) => Ok(()),
                r => r.context(|| format!("publish layer {}", meta.diff_id)),
            }
        })();
        self.discard_staging(staging);
        result
    }

    fn discard_staging(&self, staging: &str) {
        if self.tmp.exists(staging) {
            let _ = make_removable(&self.tmp, staging);
            let _ = self.tmp.remove_dir_all(staging);
        }
    }

    /// Take in a layer tar (compressed or not) in one pass: it is hashed (diff_id), compressed
    /// with `compression` into a new blob, and unpacked, all from the same stream.
    pub fn import_layer(
        &self,
        input: impl Read,
        compression: Compression,
        progress: Option<&dyn Progress>,
    ) -> Result<LayerInfo> {
        let decoded = compression::auto_decoder(ProgressReader {
            inner: input,
            progress,
        })?;
        let (staging, fs) = self.staging()?;
        let result = (|| {
            let blob = self.content.writer()?;
            let encoder = Encoder::new(compression, blob)?;
            let mut tee = Tee {
                inner: Hashing::new(decoded),
                copy: encoder,
            };
            let stats = apply_layer(&fs, &mut tee, &self.apply)?;
            io::copy(&mut tee, &mut io::sink()).map_err(from_io)?;
            let (_, diff_id, _) = tee.inner.finish();
            let blob = tee
                .copy
                .finish()
                .map_err(|e| Error::io("compress layer", e))?;
            let info = blob.commit(None, None)?;
            let meta = LayerMeta {
                diff_id: diff_id.clone(),
                size: stats.size,
            };
            Ok((info, meta))
        })();
        let (info, meta) = match result {
            Ok(v) => v,
            Err(e) => {
                self.discard_staging(&staging);
                return Err(e);
            }
        };
        self.publish_layer(&staging, &meta)?;
        Ok(LayerInfo {
            descriptor: Descriptor::new(compression.layer_media_type(), info.digest, info.size),
            diff_id: meta.diff_id,
            size: meta.size,
        })
    }

    /// Make sure the layer in blob `desc` is unpacked, checking the blob against its digest
    /// and the tar against `diff_id`. Decompression runs on its own thread.
    pub fn unpack_layer(
        &self,
        desc: &Descriptor,
        diff_id: &Digest,
        progress: Option<&dyn Progress>,
    ) -> Result<u64> {
        if let Some(size) = self.layer_size(diff_id) {
            return Ok(size);
        }
        let compression = Compression::of_layer_media_type(&desc.media_type)?;
        let blob = self
            .content
            .open_for_unpack(&desc.digest, Some(desc.size))?;
        if let Some(p) = progress {
            p.start(
                &format!("Unpacking {}", desc.digest.short()),
                Some(desc.size),
            );
        }
        let (reader, producer) = crate::pipe::spawn(move |out| -> Result<Digest> {
            let mut blob = blob;
            let mut hashed = Hashing::new(compression::decoder(compression, &mut blob)?);
            io::copy(&mut hashed, out).map_err(from_io)?;
            out.close().map_err(|e| Error::io("unpack", e))?;
            let (_, diff_id, _) = hashed.finish();
            // The decoder may stop at its trailer; the blob must still be read to its end.
            io::copy(&mut blob, &mut io::sink()).map_err(from_io)?;
            Ok(diff_id)
        });
        let (staging, fs) = self.staging()?;
        let mut reader = reader;
        let applied = apply_layer(&fs, &mut reader, &self.apply).and_then(|stats| {
            io::copy(&mut reader, &mut io::sink()).map_err(from_io)?;
            Ok(stats)
        });
        drop(reader);
        let produced = producer
            .join()
            .unwrap_or_else(|_| Err(Error::Layer("unpack thread panicked".into())));
        if let Some(p) = progress {
            p.advance(desc.size);
            p.finish();
        }
        let outcome = match (applied, produced) {
            // A broken stream shows up in both; the producer's error says why.
            (Err(_), Err(e)) | (Ok(_), Err(e)) => Err(e),
            (Err(e), Ok(_)) => Err(e),
            (Ok(stats), Ok(actual)) if actual != *diff_id => {
                let _ = stats;
                Err(Error::Layer(format!(
                    "layer {} does not match its diff_id: expected {diff_id}, got {actual}",
                    desc.digest
                )))
            }
            (Ok(stats), Ok(_)) => Ok(stats),
        };
        match outcome {
            Ok(stats) => {
                self.publish_layer(
                    &staging,
                    &LayerMeta {
                        diff_id: diff_id.clone(),
                        size: stats.size,
                    },
                )?;
                Ok(stats.size)
            }
            Err(e) => {
                self.discard_staging(&staging);
                Err(e)
            }
        }
    }

    /// Make a layer blob from a directory in overlay form (an unpacked layer or a container's
    /// upper directory). The tar is hashed for its diff_id and compressed in the same pass.
    pub fn layer_from_dir(
        &self,
        dir: &Dir,
        compression: Compression,
        opts: &WriteOptions,
    ) -> Result<LayerInfo> {
        let blob = self.content.writer()?;
        let encoder = Encoder::new(compression, blob)?;
        let hashed = write_layer(dir, Hashing::new(encoder), opts)?;
        let (encoder, diff_id, _) = hashed.finish();
        let blob = encoder
            .finish()
            .map_err(|e| Error::io("compress layer", e))?;
        let info = blob.commit(None, None)?;
        Ok(LayerInfo {
            descriptor: Descriptor::new(compression.layer_media_type(), info.digest, info.size),
            diff_id,
            size: 0,
        })
    }

    // ----- garbage collection -----

    /// Everything reachable from `index.json`, and the layers containers stand on.
    fn reachable(&self) -> Result<(HashSet<Digest>, HashSet<Digest>)> {
        let mut blobs = HashSet::new();
        let mut layers = HashSet::new();
        let mut roots: Vec<Descriptor> = Vec::new();
        for c in crate::container::Containers::open(self)?.list()? {
            layers.extend(c.layers);
            roots.push(c.manifest);
        }
        roots.extend(self.index()?.manifests);
        for desc in roots {
            blobs.insert(desc.digest.clone());
            let Ok(manifest) = self.manifest(&desc) else {
                continue;
            };
            blobs.insert(manifest.config.digest.clone());
            blobs.extend(manifest.layers.iter().map(|l| l.digest.clone()));
            if let Ok(config) = self.config(&manifest.config) {
                layers.extend(config.rootfs.diff_ids);
            }
        }
        Ok((blobs, layers))
    }

    fn unreferenced(&self) -> Result<(Vec<(Digest, u64)>, Vec<(String, u64)>)> {
        let (blobs, layers) = self.reachable()?;
        let dead_blobs = self
            .content
            .list()?
            .into_iter()
            .filter(|b| !blobs.contains(&b.digest))
            .map(|b| (b.digest, b.size))
            .collect();
        let mut dead_layers = Vec::new();
        for entry in self.layers.entries().context(|| "list layers".into())? {
            let name = entry
                .context(|| "list layers".into())?
                .file_name()
                .to_string_lossy()
                .into_owned();
            let live = format!("sha256:{name}")
                .parse::<Digest>()
                .is_ok_and(|d| layers.contains(&d));
            if !live {
                let size = format!("sha256:{name}")
                    .parse::<Digest>()
                    .ok()
                    .and_then(|d| self.layer_size(&d))
                    .unwrap_or(0);
                dead_layers.push((name, size));
            }
        }
        Ok((dead_blobs, dead_layers))
    }

    /// Remove every blob and unpacked layer no tag reaches, and leftover staging files.
    pub fn prune(&self) -> Result<GcReport> {
        let _gc = self.lock(GC_LOCK, true)?;
        let (blobs, layers) = self.unreferenced()?;
        let mut report = GcReport::default();
        for (digest, size) in blobs {
            self.content.delete(&digest)?;
            report.blobs += 1;
            report.bytes += size;
        }
        for (name, size) in layers {
            let _ = make_removable(&self.layers, &name);
            self.layers
                .remove_dir_all(&name)
                .context(|| format!("remove layer {name}"))?;
            report.layers += 1;
            report.bytes += size;
        }
        crate::container::Containers::open(self)?.remove_debris()?;
        // No writer holds the GC lock now, so nothing in tmp/ is in use.
        for entry in self.tmp.entries().context(|| "list tmp".into())?.flatten() {
            let name = entry.file_name();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                let _ = make_removable(&self.tmp, &name.to_string_lossy());
                let _ = self.tmp.remove_dir_all(&name);
            } else {
                let _ = self.tmp.remove_file(&name);
            }
        }
        Ok(report)
    }

    pub fn disk_usage(&self) -> Result<DiskUsage> {
        let (dead_blobs, dead_layers) = self.unreferenced()?;
        let blob_total: u64 = self.content.list()?.iter().map(|b| b.size).sum();
        let mut layer_total = 0;
        for entry in self
            .layers
            .entries()
            .context(|| "list layers".into())?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            layer_total += format!("sha256:{name}")
                .parse::<Digest>()
                .ok()
                .and_then(|d| self.layer_size(&d))
                .unwrap_or(0);
        }
        let reclaimable = dead_blobs.iter().map(|b| b.1).sum::<u64>()
            + dead_layers.iter().map(|l| l.1).sum::<u64>();
        Ok(DiskUsage {
            images: self.images()?.len(),
            used: blob_total + layer_total - reclaimable,
            reclaimable,
        })
    }
}

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
fn private_dirs() -> DirBuilder {
    let mut private = DirBuilder::new();
    cap_std::fs::DirBuilderExt::mode(&mut private, 0o700);
    private.recursive(true);
    private
}

/// Copies everything read from `inner` into `copy`.
struct Tee<R, W> {
    inner: R,
    copy: W,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        Ok(n)
    }
}
