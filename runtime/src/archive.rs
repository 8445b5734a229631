//! `save` and `load`: image archives in both formats docker understands. `save` writes what
//! docker 25+ writes, one tarball that is at once an OCI image layout (`oci-layout`,
//! `index.json`, `blobs/`) and a docker-archive (`manifest.json`), with uncompressed layers.
//! `load` reads either (and the legacy docker-archive with `<id>/layer.tar` files).

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Seek, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::compression::{self, Compression, MEDIA_LAYER_TAR};
use crate::content::BlobInfo;
use crate::digest::{Digest, Hashing};
use crate::error::{from_io, Error, IoContext, Result};
use crate::image::{
    parse_document, Descriptor, Document, ImageConfig, Index, Platform, ANNOTATION_REF_NAME,
    MAX_DOCUMENT_SIZE, MEDIA_OCI_CONFIG, MEDIA_OCI_INDEX,
};
use crate::progress::Progress;
use crate::reference::Reference;
use crate::store::{Image, Store};

/// containerd's and docker's annotation for the full image name in an archive.
const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
const MAX_ARCHIVE_ENTRIES: usize = 100_000;
const MAX_INDEX_DEPTH: usize = 4;

/// One image of docker-archive's `manifest.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerArchiveEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Write the images `images` (each with the names to record for it) to `out` as a tar.
pub fn save<W: Write>(store: &Store, images: &[(Image, Vec<Reference>)], out: W) -> Result<W> {
    let mut tar = tar::Builder::new(out);
    let mut written: HashSet<Digest> = HashSet::new();
    let mut index = Index::empty();
    let mut docker_manifest = Vec::new();
    for (image, names) in images {
        let mut layer_descs = Vec::new();
        for (desc, diff_id) in image
            .manifest
            .layers
            .iter()
            .zip(&image.config.rootfs.diff_ids)
        {
            if written.insert(diff_id.clone()) {
                append_uncompressed_layer(store, &mut tar, desc, diff_id)?;
            }
            let size = uncompressed_size(store, desc, diff_id)?;
            layer_descs.push(Descriptor::new(MEDIA_LAYER_TAR, diff_id.clone(), size));
        }
        let config_bytes = store.content().read(
            image.id(),
            Some(image.manifest.config.size),
            MAX_DOCUMENT_SIZE,
        )?;
        append_blob_bytes(&mut tar, &mut written, &config_bytes)?;
        let mut manifest = image.manifest.clone();
        manifest.layers = layer_descs;
        manifest.config.media_type = MEDIA_OCI_CONFIG.into();
        manifest.media_type = Some(crate::image::MEDIA_OCI_MANIFEST.into());
        let manifest_bytes = serde_json::to_vec(&manifest).expect("serialize");
        let manifest_digest = append_blob_bytes(&mut tar, &mut written, &manifest_bytes)?;
        let entry_for = |name: Option<&Reference>| {
            let mut d = Descriptor::new(
                crate::image::MEDIA_OCI_MANIFEST,
                manifest_digest.clone(),
                manifest_bytes.len() as u64,
            );
            d.platform = Some(image.config.platform());
            if let Some(n) = name {
                d.annotations
                    .insert(ANNOTATION_IMAGE_NAME.into(), n.to_string());
                if let Some(tag) = n.tag() {
                    d.annotations.insert(ANNOTATION_REF_NAME.into(), tag.into());
                }
            }
            d
        };
        if names.is_empty() {
            index.manifests.push(entry_for(None));
        }
        for n in names {
            index.manifests.push(entry_for(Some(n)));
        }
        docker_manifest.push(DockerArchiveEntry {
            config: format!("blobs/sha256/{}", image.id().hex()),
            repo_tags: Some(
                names
                    .iter()
                    .filter(|n| n.tag().is_some())
                    .map(|n| n.familiar())
                    .collect(),
            ),
            layers: image
                .config
                .rootfs
                .diff_ids
                .iter()
                .map(|d| format!("blobs/sha256/{}", d.hex()))
                .collect(),
        });
    }
    append_file(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    append_file(
        &mut tar,
        "index.json",
        &serde_json::to_vec(&index).expect("serialize"),
    )?;
    append_file(
        &mut tar,
        "manifest.json",
        &serde_json::to_vec(&docker_manifest).expect("serialize"),
    )?;
    tar.into_inner().context(|| "finish archive".into())
}

fn append_file<W: Write>(tar: &mut tar::Builder<W>, name: &str, bytes: &[u8]) -> Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o644);
    h.set_size(bytes.len() as u64);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut h, name, bytes)
        .context(|| format!("write {name} to archive"))
}

fn append_blob_bytes<W: Write>(
    tar: &mut tar::Builder<W>,
    written: &mut HashSet<Digest>,
    bytes: &[u8],
) -> Result<Digest> {
    let digest = Digest::of(bytes);
    if written.insert(digest.clone()) {
        append_file(tar, &format!("blobs/sha256/{}", digest.hex()), bytes)?;
    }
    Ok(digest)
}

fn uncompressed_size(store: &Store, desc: &Descriptor, diff_id: &Digest) -> Result<u64> {
    if Compression::of_layer_media_type(&desc.media_type)? == Compression::None {
        return Ok(desc.size);
    }
    // Decompress once more to count; cheap next to writing, and keeps no state on disk.
    let blob = store.content().open(&desc.digest, Some(desc.size))?;
    let mut hashed = Hashing::new(compression::decoder(
        Compression::of_layer_media_type(&desc.media_type)?,
        blob,
    )?);
    io::copy(&mut hashed, &mut io::sink()).map_err(from_io)?;
    let (_, actual, size) = hashed.finish();
    if actual != *diff_id {
        return Err(Error::Layer(format!(
            "layer {} does not match diff_id {diff_id}",
            desc.digest
        )));
    }
    Ok(size)
}

/// Write the layer as an uncompressed tar named by its diff_id. A compressed blob is
/// decompressed into a private temp file first, because a tar header needs the size.
fn append_uncompressed_layer<W: Write>(
    store: &Store,
    tar: &mut tar::Builder<W>,
    desc: &Descriptor,
    diff_id: &Digest,
) -> Result<()> {
    let name = format!("blobs/sha256/{}", diff_id.hex());
    let compression = Compression::of_layer_media_type(&desc.media_type)?;
    let mut header = tar::Header::new_ustar();
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    if compression == Compression::None {
        header.set_size(desc.size);
        let blob = store.content().open(&desc.digest, Some(desc.size))?;
        return tar.append_data(&mut header, &name, blob).map_err(from_io);
    }
    let mut tmp =
        tempfile::tempfile_in(store.path().join("tmp")).context(|| "create temp file".into())?;
    let blob = store.content().open(&desc.digest, Some(desc.size))?;
    let mut hashed = Hashing::new(compression::decoder(compression, blob)?);
    io::copy(&mut hashed, &mut tmp).map_err(from_io)?;
    let (_, actual, size) = hashed.finish();
    if actual != *diff_id {
        return Err(Error::Layer(format!(
            "layer {} does not match diff_id {diff_id}",
            desc.digest
        )));
    }
    tmp.rewind().context(|| "rewind temp file".into())?;
    header.set_size(size);
    tar.append_data(&mut header, &name, tmp).map_err(from_io)
}

/// What `load` brought in: the images with the names it gave them.
#[derive(Debug)]
pub struct Loaded {
    pub images: Vec<(Digest, Vec<Reference>)>,
}

/// Read an archive (OCI layout or docker-archive, plain or compressed) into the store.
/// Every file is verified as it is taken in; images are tagged only when all their layers
/// are unpacked and match their diff_ids.
pub fn load<R: Read>(
    store: &Store,
    input: R,
    platform: Option<&Platform>,
    progress: Option<&dyn Progress>,
) -> Result<Loaded> {
    let _writer = store.writer_lock()?;
    let decoded = compression::auto_decoder(input)?;
    let mut archive = tar::Archive::new(decoded);
    let mut files: HashMap<String, BlobInfo> = HashMap::new();
    let mut links: HashMap<String, String> = HashMap::new();
    let mut count = 0;
    for entry in archive
        .entries()
        .map_err(|e| Error::Archive(format!("read: {e}")))?
    {
        let mut entry = entry.map_err(|e| Error::Archive(format!("read: {e}")))?;
        count += 1;
        if count > MAX_ARCHIVE_ENTRIES {
            return Err(Error::Archive("too many entries".into()));
        }
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = entry.header().entry_type();
        if !matches!(
            kind,
            tar::EntryType::Regular
                | tar::EntryType::Continuous
                | tar::EntryType::Symlink
                | tar::EntryType::Link
        ) {
            continue; // directories and the like carry nothing an image needs
        }
        let path = clean_archive_path(&raw)
            .ok_or_else(|| Error::Archive(format!("entry {raw:?}: invalid name")))?;
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if let Some(p) = progress {
                    p.start(&format!("Loading {path}"), entry.header().size().ok());
                }
                let mut w = store.content().writer()?;
                io::copy(&mut entry, &mut w)
                    .map_err(|e| Error::Archive(format!("entry {path}: {e}")))?;
                let expected = path
                    .strip_prefix("blobs/sha256/")
                    .map(|hex| format!("sha256:{hex}").parse::<Digest>());
                let info = match expected {
                    Some(Ok(d)) => w
                        .commit(Some(&d), None)
                        .map_err(|e| Error::Archive(format!("entry {path}: {e}")))?,
                    Some(Err(_)) => {
                        return Err(Error::Archive(format!(
                            "entry {path}: not named by a sha256 digest"
                        )))
                    }
                    None => w.commit(None, None)?,
                };
                if let Some(p) = progress {
                    p.advance(info.size);
                    p.finish();
                }
                files.insert(path, info);
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                // Legacy docker-archives link identical layers to each other.
                let target = entry
                    .link_name_bytes()
                    .map(|t| String::from_utf8_lossy(&t).into_owned())
                    .unwrap_or_default();
                let base = if kind == tar::EntryType::Symlink {
                    PathBuf::from(&path)
                        .parent()
                        .map(|p| p.join(&target))
                        .unwrap_or_else(|| target.clone().into())
                } else {
                    target.clone().into()
                };
                let resolved = clean_archive_path(&base.to_string_lossy()).ok_or_else(|| {
                    Error::Archive(format!(
                        "entry {path}: link target {target:?} leaves the archive"
                    ))
                })?;
                links.insert(path, resolved);
            }
            _ => {}
        }
    }
    let lookup = |path: &str| -> Result<BlobInfo> {
        let mut p = clean_archive_path(path)
            .ok_or_else(|| Error::Archive(format!("invalid path {path:?}")))?;
        for _ in 0..8 {
            if let Some(info) = files.get(&p) {
                return Ok(info.clone());
            }
            match links.get(&p) {
                Some(next) => p = next.clone(),
                None => break,
            }
        }
        Err(Error::Archive(format!(
            "{path:?} is missing from the archive"
        )))
    };

    let mut pending: Vec<(Image, Vec<Reference>)> = Vec::new();
    if files.contains_key("index.json") {
        let bytes = store
            .content()
            .read(&lookup("index.json")?.digest, None, MAX_DOCUMENT_SIZE)?;
        let index = match parse_document(MEDIA_OCI_INDEX, &bytes)? {
            Document::Index(i) => i,
            Document::Manifest(_) => {
                return Err(Error::Archive("index.json is not an image index".into()))
            }
        };
        for desc in &index.manifests {
            let names = archive_names(desc);
            let mut image = store.image(&select_manifest(store, desc, platform, 0)?)?;
            image.manifest_descriptor.platform = Some(image.config.platform());
            image.manifest_descriptor.annotations.clear();
            pending.push((image, names));
        }
    } else if files.contains_key("manifest.json") {
        let bytes =
            store
                .content()
                .read(&lookup("manifest.json")?.digest, None, MAX_DOCUMENT_SIZE)?;
        let entries: Vec<DockerArchiveEntry> = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Archive(format!("manifest.json: {e}")))?;
        for entry in entries {
            let config_info = lookup(&entry.config)?;
            let config_bytes =
                store
                    .content()
                    .read(&config_info.digest, None, MAX_DOCUMENT_SIZE)?;
            let config = ImageConfig::parse(&config_bytes)?;
            if config.rootfs.diff_ids.len() != entry.layers.len() {
                return Err(Error::Archive(format!(
                    "{}: layer count does not match the config's diff_ids",
                    entry.config
                )));
            }
            let mut layers = Vec::new();
            for path in &entry.layers {
                let info = lookup(path)?;
                let mut head = [0u8; 8];
                let n = store
                    .content()
                    .open(&info.digest, None)?
                    .read(&mut head)
                    .context(|| format!("read {path}"))?;
                let compression = Compression::detect(&head[..n])?;
                layers.push(Descriptor::new(
                    compression.layer_media_type(),
                    info.digest,
                    info.size,
                ));
            }
            let image = store.image(&store.put_image(&config, layers)?)?;
            let names = entry
                .repo_tags
                .unwrap_or_default()
                .iter()
                .map(|t| Reference::parse(t))
                .collect::<Result<Vec<_>>>()?;
            pending.push((image, names));
        }
    } else {
        return Err(Error::Archive(
            "neither an OCI layout (index.json) nor a docker archive (manifest.json)".into(),
        ));
    }

    let mut loaded = Loaded { images: Vec::new() };
    for (image, names) in pending {
        if image.manifest.layers.len() != image.config.rootfs.diff_ids.len() {
            return Err(Error::Archive(format!(
                "image {}: layers and diff_ids differ in number",
                image.digest()
            )));
        }
        for (desc, diff_id) in image
            .manifest
            .layers
            .iter()
            .zip(&image.config.rootfs.diff_ids)
        {
            store.unpack_layer(desc, diff_id, progress)?;
        }
        if names.is_empty() {
            store.add_image(None, &image.manifest_descriptor)?;
        }
        for name in &names {
            store.add_image(Some(name), &image.manifest_descriptor)?;
        }
        loaded.images.push((image.id().clone(), names));
    }
    Ok(loaded)
}

/// The names an OCI archive gives an index entry: the full name docker and containerd
/// record, or a ref.name that is itself a full reference.
fn archive_names(desc: &Descriptor) -> Vec<Reference> {
    let full = desc
        .annotations
        .get(ANNOTATION_IMAGE_NAME)
        .and_then(|n| Reference::parse(n).ok());
    let from_ref = desc
        .ref_name()
        .filter(|n| n.contains('/') || n.contains(':'))
        .and_then(|n| Reference::parse(n).ok());
    full.or(from_ref).into_iter().collect()
}

/// Follow an index entry to a single-platform manifest: the host's, or `platform`.
fn select_manifest(
    store: &Store,
    desc: &Descriptor,
    platform: Option<&Platform>,
    depth: usize,
) -> Result<Descriptor> {
    if depth > MAX_INDEX_DEPTH {
        return Err(Error::InvalidDocument(
            "image index nested too deeply".into(),
        ));
    }
    let bytes = store
        .content()
        .read(&desc.digest, Some(desc.size), MAX_DOCUMENT_SIZE)?;
    match parse_document(&desc.media_type, &bytes)? {
        Document::Manifest(_) => Ok(desc.clone()),
        Document::Index(index) => {
            let want = platform.cloned().unwrap_or_else(Platform::host);
            let chosen = index
                .manifests
                .iter()
                .find(|m| m.platform.as_ref().is_some_and(|p| want.matches(p)))
                .ok_or_else(|| {
                    Error::InvalidDocument(format!(
                        "no image for platform {want} in {}",
                        desc.digest
                    ))
                })?;
            select_manifest(store, chosen, platform, depth + 1)
        }
    }
}

fn clean_archive_path(raw: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}
