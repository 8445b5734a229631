//! Layer compression: media types, detection, decoders, and encoders that use every core.
//!
//! gzip is compressed pigz-style: the stream is cut into fixed 128 KiB chunks, each chunk is
//! deflated on a worker thread with the previous chunk's last 32 KiB as its dictionary and
//! ends on a byte boundary (sync flush), and the pieces are written in order under one gzip
//! header and trailer. Chunking does not depend on the number of threads, so the output, and
//! the layer digest, are the same on every machine.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::{Compress, Compression as Level, FlushCompress, Status};

use crate::error::{Error, Result};

pub const MEDIA_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MEDIA_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MEDIA_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const MEDIA_DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    None,
    #[default]
    Gzip,
    Zstd,
}

impl Compression {
    pub fn parse(name: &str) -> Result<Compression> {
        match name {
            "gzip" => Ok(Compression::Gzip),
            "zstd" => Ok(Compression::Zstd),
            "none" | "uncompressed" => Ok(Compression::None),
            other => Err(Error::InvalidArgument(format!(
                "unknown compression {other:?} (gzip, zstd, none)"
            ))),
        }
    }

    pub fn layer_media_type(self) -> &'static str {
        match self {
            Compression::None => MEDIA_LAYER_TAR,
            Compression::Gzip => MEDIA_LAYER_GZIP,
            Compression::Zstd => MEDIA_LAYER_ZSTD,
        }
    }

    /// The compression a layer descriptor's media type names; unknown types are refused.
    pub fn of_layer_media_type(media_type: &str) -> Result<Compression> {
        match media_type {
            MEDIA_LAYER_TAR
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => Ok(Compression::None),
            MEDIA_LAYER_GZIP
            | MEDIA_DOCKER_LAYER_GZIP
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Ok(Compression::Gzip),
            MEDIA_LAYER_ZSTD | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => {
                Ok(Compression::Zstd)
            }
            other => Err(Error::Unsupported(format!(
                "unsupported layer media type {other:?}"
            ))),
        }
    }

    /// Recognise a stream by its first bytes.
    pub fn detect(head: &[u8]) -> Result<Compression> {
        match head {
            [0x1f, 0x8b, ..] => Ok(Compression::Gzip),
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Ok(Compression::Zstd),
            [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => Err(Error::Unsupported(
                "xz-compressed input is not supported".into(),
            )),
            [b'B', b'Z', b'h', ..] => Err(Error::Unsupported(
                "bzip2-compressed input is not supported".into(),
            )),
            _ => Ok(Compression::None),
        }
    }
}

/// A decompressing reader. gzip accepts several members and is read to its trailer.
pub fn decoder<'a, R: Read + 'a>(compression: Compression, input: R) -> Result<Box<dyn Read + 'a>> {
    Ok(match compression {
        Compression::None => Box::new(input),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(
            io::BufReader::with_capacity(1 << 16, input),
        )),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::new(input).map_err(|e| Error::io("zstd", e))?)
        }
    })
}

/// Peek at the start of `input` and return a reader of its decompressed bytes.
pub fn auto_decoder<'a, R: Read + 'a>(input: R) -> Result<Box<dyn Read + 'a>> {
    let mut buffered = io::BufReader::with_capacity(1 << 16, input);
    let head = io::BufRead::fill_buf(&mut buffered).map_err(|e| Error::io("read input", e))?;
    let compression = Compression::detect(head)?;
    decoder(compression, buffered)
}

/// A compressing writer for one of our compressions; `finish` returns the inner writer.
pub enum Encoder<W: Write> {
    None(W),
    Gzip(ParallelGzip<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    pub fn new(compression: Compression, out: W) -> Result<Encoder<W>> {
        Ok(match compression {
            Compression::None => Encoder::None(out),
            Compression::Gzip => Encoder::Gzip(ParallelGzip::new(out, 6)),
            Compression::Zstd => {
                let mut enc =
                    zstd::stream::write::Encoder::new(out, 3).map_err(|e| Error::io("zstd", e))?;
                // Output is identical for any worker count >= 1, so digests stay stable.
                enc.multithread(worker_count() as u32)
                    .map_err(|e| Error::io("zstd", e))?;
                Encoder::Zstd(enc)
            }
        })
    }

    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::None(w) => Ok(w),
            Encoder::Gzip(g) => g.finish(),
            Encoder::Zstd(z) => z.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::None(w) => w.write(buf),
            Encoder::Gzip(g) => g.write(buf),
            Encoder::Zstd(z) => z.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::None(w) => w.flush(),
            Encoder::Gzip(_) => Ok(()),
            Encoder::Zstd(z) => z.flush(),
        }
    }
}

pub fn worker_count() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 16)
}

const CHUNK: usize = 128 << 10;
const DICT: usize = 32 << 10;

struct Job {
    seq: u64,
    data: Arc<Vec<u8>>,
    dict: Option<Arc<Vec<u8>>>,
    last: bool,
}

struct Done {
    seq: u64,
    deflated: io::Result<Vec<u8>>,
    crc: crc32fast::Hasher,
}

/// gzip on every core; see the module comment.
pub struct ParallelGzip<W: Write> {
    out: Option<W>,
    buf: Vec<u8>,
    prev: Option<Arc<Vec<u8>>>,
    jobs: Option<SyncSender<Job>>,
    done: Receiver<Done>,
    workers: Vec<JoinHandle<()>>,
    next_seq: u64,
    next_write: u64,
    pending: BTreeMap<u64, Done>,
    crc: crc32fast::Hasher,
    total: u64,
    header_written: bool,
}

impl<W: Write> ParallelGzip<W> {
    pub fn new(out: W, level: u32) -> Self {
        let n = worker_count();
        let (job_tx, job_rx) = mpsc::sync_channel::<Job>(n * 2);
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let workers = (0..n)
            .map(|_| {
                let rx = Arc::clone(&job_rx);
                let tx = done_tx.clone();
                std::thread::spawn(move || loop {
                    let job = match rx.lock().map(|r| r.recv()) {
                        Ok(Ok(job)) => job,
                        _ => return,
                    };
                    let mut crc = crc32fast::Hasher::new();
                    crc.update(&job.data);
                    let deflated = deflate_chunk(&job, level);
                    if tx
                        .send(Done {
                            seq: job.seq,
                            deflated,
                            crc,
                        })
                        .is_err()
                    {
                        return;
                    }
                })
            })
            .collect();
        ParallelGzip {
            out: Some(out),
            buf: Vec::with_capacity(CHUNK),
            prev: None,
            jobs: Some(job_tx),
            done: done_rx,
            workers,
            next_seq: 0,
            next_write: 0,
            pending: BTreeMap::new(),
            crc: crc32fast::Hasher::new(),
            total: 0,
            header_written: false,
        }
    }

    fn submit(&mut self, last: bool) -> io::Result<()> {
        let data = Arc::new(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        let dict = self.prev.take();
        self.prev = Some(Arc::clone(&data));
        let job = Job {
            seq: self.next_seq,
            data,
            dict,
            last,
        };
        self.next_seq += 1;
        // Keep at most a few chunks in flight so memory stays flat.
        while self.next_seq - self.next_write > 4 * self.workers.len() as u64 {
            self.collect_one()?;
        }
        self.jobs
            .as_ref()
            .expect("open")
            .send(job)
            .map_err(|_| io::Error::other("gzip worker stopped"))
    }

    fn collect_one(&mut self) -> io::Result<()> {
        let done = self
            .done
            .recv()
            .map_err(|_| io::Error::other("gzip worker stopped"))?;
        self.pending.insert(done.seq, done);
        while let Some(done) = self.pending.remove(&self.next_write) {
            let out = self.out.as_mut().expect("open");
            if !self.header_written {
                // gzip header: no name, mtime 0, OS unknown, so output is reproducible.
                out.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff])?;
                self.header_written = true;
            }
            out.write_all(&done.deflated?)?;
            self.crc.combine(&done.crc);
            self.next_write += 1;
        }
        Ok(())
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.submit(true)?;
        while self.next_write < self.next_seq {
            self.collect_one()?;
        }
        let crc = std::mem::take(&mut self.crc).finalize();
        let mut out = self.out.take().expect("open");
        out.write_all(&crc.to_le_bytes())?;
        out.write_all(&(self.total as u32).to_le_bytes())?;
        Ok(out)
    }
}

fn deflate_chunk(job: &Job, level: u32) -> io::Result<Vec<u8>> {
    let mut c = Compress::new(Level::new(level), false);
    if let Some(dict) = &job.dict {
        c.set_dictionary(&dict[dict.len().saturating_sub(DICT)..])
            .map_err(io::Error::other)?;
    }
    let mut out = Vec::with_capacity(job.data.len() / 2 + 1024);
    let flush = if job.last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut input = &job.data[..];
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity().max(4096));
        }
        let before = c.total_in();
        let status = c
            .compress_vec(input, &mut out, flush)
            .map_err(io::Error::other)?;
        input = &input[(c.total_in() - before) as usize..];
        match status {
            Status::StreamEnd => break,
            // The sync flush is complete once all input is taken and output space is left over.
            Status::Ok | Status::BufError
                if input.is_empty() && !job.last && out.len() < out.capacity() =>
            {
                break
            }
            _ => {}
        }
    }
    Ok(out)
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let take = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..take]);
        self.total += take as u64;
        if self.buf.len() == CHUNK {
            self.submit(false)?;
        }
        Ok(take)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for ParallelGzip<W> {
    fn drop(&mut self) {
        self.jobs.take();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut g = ParallelGzip::new(Vec::new(), 6);
        for piece in data.chunks(7777) {
            g.write_all(piece).unwrap();
        }
        g.finish().unwrap()
    }

    #[test]
    fn parallel_gzip_round_trips_and_is_deterministic() {
        let mut data = Vec::new();
        for i in 0..200_000u32 {
            data.extend_from_slice(format!("line {i} {}\n", i % 97).as_bytes());
        }
        let a = gzip(&data);
        assert_eq!(a, gzip(&data));
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&a[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        assert!(
            a.len() < data.len() / 3,
            "compresses: {} of {}",
            a.len(),
            data.len()
        );
        // and the system's gzip agrees that it is one valid stream
        if let Ok(mut child) = std::process::Command::new("gzip")
            .args(["-d", "-c"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
        {
            let mut stdin = child.stdin.take().unwrap();
            let input = a.clone();
            let t = std::thread::spawn(move || stdin.write_all(&input));
            let out = child.wait_with_output().unwrap();
            t.join().unwrap().unwrap();
            assert!(out.status.success());
            assert_eq!(out.stdout, data);
        }
    }

    #[test]
    fn empty_gzip_is_valid() {
        let a = gzip(b"");
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&a[..])
            .read_to_end(&mut back)
            .unwrap();
        assert!(back.is_empty());
    }

    #[test]
    fn detects_compression() {
        assert_eq!(
            Compression::detect(&[0x1f, 0x8b, 8]).unwrap(),
            Compression::Gzip
        );
        assert_eq!(
            Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd]).unwrap(),
            Compression::Zstd
        );
        assert_eq!(Compression::detect(b"abc").unwrap(), Compression::None);
        assert!(Compression::detect(b"BZh9").is_err());
    }
}
