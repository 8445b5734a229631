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
/// Most images and names one archive may bring in (index.json entries, or docker-archive
/// images and tags): each is checked, and all are tagged in one index update.
pub const MAX_ARCHIVE_NAMES: usize = 10_000;
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
    let mut tmp = store.scratch_file()?;
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

    let has = |name: &str| files.contains_key(name) || links.contains_key(name);
    // A tar with index.json is an OCI layout only if its oci-layout file says so; docker's
    // own archives are docker-archives as well, and are read as such when it does not.
    let layout = has("index.json").then(|| check_layout(store, &lookup));
    let (images, named) = match layout {
        Some(Ok(())) => oci_images(store, &lookup("index.json")?, platform)?,
        Some(Err(e)) if !has("manifest.json") => return Err(e),
        _ if has("manifest.json") => docker_images(store, &lookup)?,
        _ => {
            return Err(Error::Archive(
                "neither an OCI layout (index.json) nor a docker archive (manifest.json)".into(),
            ))
        }
    };

    // Every layer descriptor is checked against its blob before anything is unpacked,
    // whatever the store already holds.
    for image in &images {
        for (desc, diff_id) in image
            .manifest
            .layers
            .iter()
            .zip(&image.config.rootfs.diff_ids)
        {
            store.content().check_layer(desc, diff_id, false)?;
        }
    }
    // A layer that is unpacked already (before this load, or by an earlier image of it) is
    // not unpacked again, so its blob is checked against the diff_id instead.
    let mut checked: HashSet<(&Digest, &Digest)> = HashSet::new();
    for image in &images {
        for (desc, diff_id) in image
            .manifest
            .layers
            .iter()
            .zip(&image.config.rootfs.diff_ids)
        {
            if !checked.insert((&desc.digest, diff_id)) {
                continue;
            }
            if store.has_layer(diff_id) {
                store.content().check_layer(desc, diff_id, true)?;
            } else {
                store.unpack_layer(desc, diff_id, progress)?;
            }
        }
    }

    // A name given twice goes to the last image given it, as tagging one by one would:
    // walked from the end, each name is kept the first time it is met.
    let mut seen: HashSet<String> = HashSet::new();
    let mut names: Vec<Vec<Reference>> = vec![Vec::new(); images.len()];
    for (i, name) in named.into_iter().rev() {
        if seen.insert(name.to_string()) {
            names[i].push(name);
        }
    }
    names.iter_mut().for_each(|n| n.reverse());
    // Tagged only now, all in one index update: every image is whole.
    let records: Vec<(Descriptor, Vec<Reference>)> = images
        .iter()
        .map(|image| image.manifest_descriptor.clone())
        .zip(names)
        .collect();
    store.add_images(&records)?;
    Ok(Loaded {
        images: images
            .iter()
            .zip(records)
            .map(|(image, (_, names))| (image.id().clone(), names))
            .collect(),
    })
}

/// The distinct images of an archive, and the names given to them (image index, name) in
/// the archive's order.
type ArchiveImages = (Vec<Image>, Vec<(usize, Reference)>);

/// An OCI layout's `oci-layout` file must be there and name image layout version 1.x.
fn check_layout(store: &Store, lookup: &dyn Fn(&str) -> Result<BlobInfo>) -> Result<()> {
    let info = lookup("oci-layout").map_err(|_| {
        Error::Archive("index.json without an oci-layout file: not an OCI image layout".into())
    })?;
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Layout {
        image_layout_version: String,
    }
    let bytes = store
        .content()
        .read(&info.digest, None, MAX_DOCUMENT_SIZE)?;
    let layout: Layout =
        serde_json::from_slice(&bytes).map_err(|e| Error::Archive(format!("oci-layout: {e}")))?;
    let version = &layout.image_layout_version;
    let supported = version.strip_prefix("1.").is_some_and(|rest| {
        rest.split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    });
    if !supported {
        return Err(Error::Archive(format!(
            "oci-layout: image layout version {version:?} is not supported (1.x is)"
        )));
    }
    Ok(())
}

/// The images an OCI layout's `index.json` names, each read once however many entries name
/// it.
fn oci_images(
    store: &Store,
    index_info: &BlobInfo,
    platform: Option<&Platform>,
) -> Result<ArchiveImages> {
    let bytes = store
        .content()
        .read(&index_info.digest, None, MAX_DOCUMENT_SIZE)?;
    let index = match parse_document(MEDIA_OCI_INDEX, &bytes)? {
        Document::Index(i) => i,
        Document::Manifest(_) => {
            return Err(Error::Archive("index.json is not an image index".into()))
        }
    };
    if index.manifests.len() > MAX_ARCHIVE_NAMES {
        return Err(Error::Archive(format!(
            "index.json has {} entries; at most {MAX_ARCHIVE_NAMES} are loaded at once",
            index.manifests.len()
        )));
    }
    let mut images: Vec<Image> = Vec::new();
    let mut named = Vec::new();
    let mut by_entry: HashMap<(&Digest, &str, u64), usize> = HashMap::new();
    let mut by_manifest: HashMap<Digest, usize> = HashMap::new();
    for desc in &index.manifests {
        let key = (&desc.digest, desc.media_type.as_str(), desc.size);
        let i = match by_entry.get(&key) {
            Some(&i) => i,
            None => {
                let chosen = select_manifest(store, desc, platform, 0)?;
                let i = match by_manifest.get(&chosen.digest) {
                    Some(&i) => i,
                    None => {
                        images.push(archive_image(store, &chosen)?);
                        by_manifest.insert(chosen.digest.clone(), images.len() - 1);
                        images.len() - 1
                    }
                };
                by_entry.insert(key, i);
                i
            }
        };
        named.extend(archive_names(desc).into_iter().map(|n| (i, n)));
    }
    Ok((images, named))
}

/// The image whose manifest `desc` names in an OCI archive, checked as `pull` checks one.
fn archive_image(store: &Store, desc: &Descriptor) -> Result<Image> {
    let manifest = store.manifest(desc)?;
    manifest.check_image()?;
    let config = store.config(&manifest.config)?;
    manifest.check_config(&config)?;
    let mut manifest_descriptor = desc.clone();
    manifest_descriptor.platform = Some(config.platform());
    manifest_descriptor.annotations.clear();
    Ok(Image {
        manifest_descriptor,
        manifest,
        config,
        names: Vec::new(),
    })
}

/// The images of a docker-archive's `manifest.json`, with a manifest of our own for each.
fn docker_images(
    store: &Store,
    lookup: &dyn Fn(&str) -> Result<BlobInfo>,
) -> Result<ArchiveImages> {
    let bytes = store
        .content()
        .read(&lookup("manifest.json")?.digest, None, MAX_DOCUMENT_SIZE)?;
    let entries: Vec<DockerArchiveEntry> = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Archive(format!("manifest.json: {e}")))?;
    let count = entries.len()
        + entries
            .iter()
            .map(|e| e.repo_tags.as_ref().map_or(0, Vec::len))
            .sum::<usize>();
    if count > MAX_ARCHIVE_NAMES {
        return Err(Error::Archive(format!(
            "manifest.json names {count} images and tags; at most {MAX_ARCHIVE_NAMES} are loaded at once"
        )));
    }
    let mut images: Vec<Image> = Vec::new();
    let mut named = Vec::new();
    let mut by_manifest: HashMap<Digest, usize> = HashMap::new();
    for entry in entries {
        let config_info = lookup(&entry.config)?;
        let config_bytes = store
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
        let desc = store.put_image(&config, layers)?;
        let i = match by_manifest.get(&desc.digest) {
            Some(&i) => i,
            None => {
                images.push(store.image(&desc)?);
                by_manifest.insert(desc.digest.clone(), images.len() - 1);
                images.len() - 1
            }
        };
        for tag in entry.repo_tags.unwrap_or_default() {
            named.push((i, Reference::parse(&tag)?));
        }
    }
    Ok((images, named))
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
