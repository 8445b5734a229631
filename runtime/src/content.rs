//! The content store: blobs by digest under `blobs/sha256/`, as an OCI image layout has
//! them. Writes go to a private temp file, are fsynced and renamed into place, so a blob is
//! either whole or absent. Every read is verified against digest and size as it streams.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};

use cap_std::fs::{Dir, File, OpenOptions};

use sha2::{Digest as _, Sha256};

use crate::compression::Compression;
use crate::digest::{Digest, Hashing};
use crate::error::{Error, IoContext, Result};
use crate::image::Descriptor;

pub struct ContentStore {
    blobs: Dir,
    tmp: Dir,
    /// Blobs this process wrote and hashed on the way in: reading them back (to unpack a
    /// layer just pulled or loaded) need not hash them a second time.
    verified: std::sync::Mutex<std::collections::HashSet<Digest>>,
}

/// What is known about a stored blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    pub digest: Digest,
    pub size: u64,
}

impl ContentStore {
    /// `blobs` is the layout's `blobs/sha256` directory; `tmp` must be on the same filesystem.
    pub fn new(blobs: Dir, tmp: Dir) -> ContentStore {
        ContentStore {
            blobs,
            tmp,
            verified: Default::default(),
        }
    }

    pub fn info(&self, digest: &Digest) -> Option<BlobInfo> {
        let meta = self.blobs.metadata(digest.hex()).ok()?;
        meta.is_file().then(|| BlobInfo {
            digest: digest.clone(),
            size: meta.len(),
        })
    }

    pub fn contains(&self, digest: &Digest) -> bool {
        self.info(digest).is_some()
    }

    /// A reader that fails at EOF unless the bytes hash to `digest` (and number `size`).
    /// A blob whose size is not `size` is refused at once, before anything is read (a
    /// descriptor may claim any size, up to 2^64-1).
    pub fn open(&self, digest: &Digest, size: Option<u64>) -> Result<VerifiedReader<File>> {
        let file = self.blobs.open(digest.hex()).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::BlobNotFound(digest.to_string()),
            _ => Error::io(format!("open blob {digest}"), e),
        })?;
        if let Some(want) = size {
            let actual = file
                .metadata()
                .context(|| format!("stat blob {digest}"))?
                .len();
            if actual != want {
                return Err(Error::SizeMismatch {
                    digest: digest.to_string(),
                    expected: want,
                    actual,
                });
            }
        }
        Ok(VerifiedReader::new(file, digest.clone(), size))
    }

    /// Check a layer descriptor against its stored blob before the layer is used, whether
    /// or not the layer is unpacked already: a media type we can unpack, the blob present
    /// with the descriptor's size, and compressed as the media type says. An uncompressed
    /// blob must be its own diff_id. A compressed one is decompressed and hashed when
    /// `verify_diff_id`: a layer already unpacked is not unpacked again, so nothing else
    /// would check that this blob holds that layer.
    pub fn check_layer(
        &self,
        desc: &Descriptor,
        diff_id: &Digest,
        verify_diff_id: bool,
    ) -> Result<Compression> {
        let layer = &desc.digest;
        let compression = Compression::of_layer_media_type(&desc.media_type)
            .map_err(|e| Error::Unsupported(format!("layer {layer}: {e}")))?;
        let mut blob = self.open(layer, Some(desc.size))?;
        let mut head = Vec::with_capacity(8);
        (&mut blob)
            .take(8)
            .read_to_end(&mut head)
            .context(|| format!("read blob {layer}"))?;
        let found =
            Compression::detect(&head).map_err(|e| Error::Layer(format!("{layer}: {e}")))?;
        if found != compression {
            let name = |c| match c {
                Compression::None => "uncompressed",
                Compression::Gzip => "gzip",
                Compression::Zstd => "zstd",
            };
            return Err(Error::Layer(format!(
                "{layer}: media type {:?} says {}, but the blob is {}",
                desc.media_type,
                name(compression),
                name(found)
            )));
        }
        let actual = match compression {
            Compression::None => layer.clone(),
            _ if !verify_diff_id => return Ok(compression),
            _ => {
                // The head already read is put back in front of the rest of the same reader.
                let rest = io::Cursor::new(head).chain(&mut blob);
                let mut hashed = Hashing::new(crate::compression::decoder(compression, rest)?);
                io::copy(&mut hashed, &mut io::sink()).map_err(crate::error::from_io)?;
                let (_, actual, _) = hashed.finish();
                // The decoder may stop at its trailer; the blob is still verified to its end.
                blob.finish()?;
                actual
            }
        };
        if actual != *diff_id {
            return Err(Error::Layer(format!(
                "{layer} does not match its diff_id: expected {diff_id}, got {actual}"
            )));
        }
        Ok(compression)
    }

    /// A reader of the blob for unpacking: verified as it is read, unless this process
    /// committed the blob itself (and so hashed exactly these bytes already).
    pub fn open_for_unpack(
        &self,
        digest: &Digest,
        size: Option<u64>,
    ) -> Result<Box<dyn Read + Send>> {
        let reader = self.open(digest, size)?;
        if self.verified.lock().expect("lock").contains(digest) {
            return Ok(Box::new(reader.into_inner()));
        }
        Ok(Box::new(reader))
    }

    /// Read a whole (small) blob, verified, refusing anything larger than `max`.
    pub fn read(&self, digest: &Digest, size: Option<u64>, max: u64) -> Result<Vec<u8>> {
        // Opened first: a size that is simply wrong is reported as that.
        let mut reader = self.open(digest, size)?;
        if size.is_some_and(|s| s > max) {
            return Err(Error::InvalidDocument(format!(
                "{digest}: document larger than {max} bytes"
            )));
        }
        // Sized from the descriptor: one read instead of read_to_end's growing probes.
        let capacity = size.unwrap_or(0).min(max) as usize + 1;
        let mut buf = Vec::with_capacity(capacity);
        (&mut reader)
            .take(max + 1)
            .read_to_end(&mut buf)
            .context(|| format!("read blob {digest}"))?;
        if buf.len() as u64 > max {
            return Err(Error::InvalidDocument(format!(
                "{digest}: document larger than {max} bytes"
            )));
        }
        reader.finish()?;
        Ok(buf)
    }

    pub fn writer(&self) -> Result<BlobWriter<'_>> {
        let name = temp_name("blob");
        let file = self
            .tmp
            .open_with(&name, OpenOptions::new().write(true).create_new(true))
            .context(|| format!("create temp blob {name}"))?;
        Ok(BlobWriter {
            store: self,
            name,
            out: Some(Hashing::new(io::BufWriter::with_capacity(1 << 20, file))),
        })
    }

    pub fn put(&self, bytes: &[u8]) -> Result<BlobInfo> {
        let digest = Digest::of(bytes);
        if let Some(info) = self.info(&digest) {
            return Ok(info);
        }
        let mut w = self.writer()?;
        w.write_all(bytes).context(|| "write blob".into())?;
        w.commit(Some(&digest), Some(bytes.len() as u64))
    }

    pub fn delete(&self, digest: &Digest) -> Result<()> {
        match self.blobs.remove_file(digest.hex()) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(Error::io(format!("delete blob {digest}"), e))
            }
            _ => Ok(()),
        }
    }

    /// Every blob, in no particular order. Files that are not named by a digest are skipped.
    pub fn list(&self) -> Result<Vec<BlobInfo>> {
        let mut out = Vec::new();
        for entry in self.blobs.entries().context(|| "list blobs".into())? {
            let entry = entry.context(|| "list blobs".into())?;
            let name = entry.file_name();
            let Some(digest) = name
                .to_str()
                .and_then(|n| format!("sha256:{n}").parse::<Digest>().ok())
            else {
                continue;
            };
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            out.push(BlobInfo { digest, size });
        }
        Ok(out)
    }
}

/// An ingest in progress. Dropped without `commit`, it leaves nothing behind.
pub struct BlobWriter<'a> {
    store: &'a ContentStore,
    name: String,
    out: Option<Hashing<io::BufWriter<File>>>,
}

impl BlobWriter<'_> {
    pub fn written(&self) -> u64 {
        self.out.as_ref().map_or(0, |o| o.count())
    }

    /// fsync, check against what was expected, and rename into the store. Committing a
    /// blob that is already there succeeds ("stored at DIGEST", not "because of this call").
    pub fn commit(
        mut self,
        expected: Option<&Digest>,
        expected_size: Option<u64>,
    ) -> Result<BlobInfo> {
        let out = self.out.take().expect("commit once");
        let (buf, digest, size) = out.finish();
        let file = buf
            .into_inner()
            .map_err(|e| Error::io("write blob", e.into_error()))?;
        if let Some(want) = expected {
            if *want != digest {
                return Err(Error::DigestMismatch {
                    expected: want.to_string(),
                    actual: digest.to_string(),
                });
            }
        }
        if let Some(want) = expected_size {
            if want != size {
                return Err(Error::SizeMismatch {
                    digest: digest.to_string(),
                    expected: want,
                    actual: size,
                });
            }
        }
        file.sync_all().context(|| "fsync blob".into())?;
        drop(file);
        if !self.store.contains(&digest) {
            self.store
                .tmp
                .rename(&self.name, &self.store.blobs, digest.hex())
                .context(|| format!("commit blob {digest}"))?;
            self.store
                .verified
                .lock()
                .expect("lock")
                .insert(digest.clone());
        }
        Ok(BlobInfo { digest, size })
    }
}

impl Write for BlobWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.as_mut().expect("not committed").write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.as_mut().expect("not committed").flush()
    }
}

impl Drop for BlobWriter<'_> {
    fn drop(&mut self) {
        // Removes the temp file when not committed; after a rename this finds nothing.
        let _ = self.store.tmp.remove_file(&self.name);
    }
}

/// Hashes what it reads and turns EOF into an error unless digest and size match.
pub struct VerifiedReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
    expected: Digest,
    size: Option<u64>,
    verified: bool,
}

impl<R: Read> VerifiedReader<R> {
    pub fn new(inner: R, expected: Digest, size: Option<u64>) -> Self {
        VerifiedReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
            expected,
            size,
            verified: false,
        }
    }

    fn check(&mut self) -> Result<()> {
        let digest = Digest::from_sha256(std::mem::take(&mut self.hasher).finalize().into());
        if digest != self.expected {
            return Err(Error::DigestMismatch {
                expected: self.expected.to_string(),
                actual: digest.to_string(),
            });
        }
        if let Some(want) = self.size.filter(|&want| want != self.count) {
            return Err(Error::SizeMismatch {
                digest: digest.to_string(),
                expected: want,
                actual: self.count,
            });
        }
        self.verified = true;
        Ok(())
    }

    fn into_inner(self) -> R {
        self.inner
    }

    /// Read to the end and verify; the caller's proof that the whole blob was good.
    pub fn finish(mut self) -> Result<()> {
        io::copy(&mut self, &mut io::sink()).map_err(crate::error::from_io)?;
        Ok(())
    }
}

impl<R: Read> Read for VerifiedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.verified {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        if let Some(want) = self.size.filter(|&want| self.count > want) {
            return Err(io::Error::other(Error::SizeMismatch {
                digest: self.expected.to_string(),
                expected: want,
                actual: self.count,
            }));
        }
        if n == 0 && !buf.is_empty() {
            self.check().map_err(io::Error::other)?;
        }
        Ok(n)
    }
}

/// A name for a private temp file or directory: unique across processes and threads.
pub fn temp_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}
