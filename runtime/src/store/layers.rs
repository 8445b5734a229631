//! Unpacked layers (`layers/<diff_id hex>/{fs,meta.json}`): staged in `tmp/`, verified,
//! and published by rename; and layer blobs made from directories.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use cap_std::fs::Dir;
use serde::{Deserialize, Serialize};

use super::{make_removable, write_atomic, Store, LAYERS_DIR};
use crate::compression::{self, Compression, Encoder};
use crate::content::{temp_name, BlobWriter};
use crate::digest::{Digest, Hashing};
use crate::error::{from_io, Error, IoContext, Result};
use crate::image::Descriptor;
use crate::layer::{apply_layer, write_layer, Tee, WriteOptions};
use crate::progress::{Progress, ProgressReader};

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

impl Store {
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
        self.make_layer(compression, |fs, encoder| {
            let mut tee = Tee::new(Hashing::new(decoded), encoder);
            let stats = apply_layer(fs, &mut tee, &self.apply)?;
            io::copy(&mut tee, &mut io::sink()).map_err(from_io)?;
            let (_, diff_id, _) = tee.inner.finish();
            Ok((tee.copy, diff_id, stats.size))
        })
    }

    /// A new layer, blob and unpacked tree at once: `fill` unpacks into a staging directory
    /// while it writes the blob's tar to the encoder, and returns the encoder, the diff_id
    /// and the unpacked size; the blob is committed and the layer published, or the staging
    /// directory dropped on failure.
    fn make_layer<'s>(
        &'s self,
        compression: Compression,
        fill: impl FnOnce(
            &Dir,
            Encoder<BlobWriter<'s>>,
        ) -> Result<(Encoder<BlobWriter<'s>>, Digest, u64)>,
    ) -> Result<LayerInfo> {
        let (staging, fs) = self.staging()?;
        let result = (|| {
            let encoder = Encoder::new(compression, self.content.writer()?)?;
            let (encoder, diff_id, size) = fill(&fs, encoder)?;
            let blob = encoder
                .finish()
                .map_err(|e| Error::io("compress layer", e))?;
            let info = blob.commit(None, None)?;
            Ok((info, LayerMeta { diff_id, size }))
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
            (Ok(_), Ok(actual)) if actual != *diff_id => Err(Error::Layer(format!(
                "layer {} does not match its diff_id: expected {diff_id}, got {actual}",
                desc.digest
            ))),
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

    /// The names of the entries in `layers/` (diff_id hexes, or debris), for the collector.
    pub(crate) fn layer_names(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in self.layers.entries().context(|| "list layers".into())? {
            let entry = entry.context(|| "list layers".into())?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }

    /// The unpacked size of the entry `name` of `layers/`; 0 for one that is not a layer.
    pub(crate) fn layer_size_of(&self, name: &str) -> u64 {
        format!("sha256:{name}")
            .parse::<Digest>()
            .ok()
            .and_then(|d| self.layer_size(&d))
            .unwrap_or(0)
    }

    /// Remove the entry `name` of `layers/`, read-only directories and all.
    pub(crate) fn remove_layer(&self, name: &str) -> Result<()> {
        let _ = make_removable(&self.layers, name);
        self.layers
            .remove_dir_all(name)
            .context(|| format!("remove layer {name}"))
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

    /// `layer_from_dir` and the layer published unpacked, in one pass, for a directory the
    /// build made and throws away (a COPY's scratch, a RUN step's upper layer): as the tar
    /// is written it is unpacked into the store, and each plain file is moved from `dir`
    /// into the new layer (a rename) instead of being written a second time; anything that
    /// cannot be moved exactly as the tar says is written from the tar. `dir` loses what
    /// was moved.
    pub fn layer_from_build_dir(
        &self,
        dir: &Dir,
        compression: Compression,
        opts: &WriteOptions,
    ) -> Result<LayerInfo> {
        self.make_layer(compression, |fs, encoder| {
            let (encoder, diff_id, stats) =
                crate::layer::write_and_unpack(dir, encoder, fs, opts, &self.apply)?;
            Ok((encoder, diff_id, stats.size))
        })
    }
}
