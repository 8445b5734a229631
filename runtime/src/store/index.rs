//! The index: `index.json`'s tags, and the images (manifest and config) they name.

use std::collections::{BTreeMap, HashSet};

use super::{write_atomic, Store, INDEX_FILE};
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::image::{
    parse_document, Descriptor, Document, ImageConfig, Index, Manifest, ANNOTATION_REF_NAME,
    MAX_DOCUMENT_SIZE, MEDIA_OCI_CONFIG, MEDIA_OCI_MANIFEST,
};
use crate::reference::Reference;

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

impl Store {
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
        let _lock = self.index_lock()?;
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
}
