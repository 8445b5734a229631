//! A bounded in-process pipe, so one stage of a stream (hashing, decompressing) runs on its
//! own thread while the next stage (unpacking) runs on the caller's.

use std::io::{self, Read, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

const PIECE: usize = 256 << 10;

pub struct PipeWriter {
    tx: SyncSender<Vec<u8>>,
    buf: Vec<u8>,
}

pub struct PipeReader {
    rx: Receiver<Vec<u8>>,
    piece: Vec<u8>,
    pos: usize,
}

/// Run `produce` on a new thread, writing into a pipe; read its output from the returned
/// reader. The thread's result comes from the handle. If the reader is dropped early, the
/// producer's writes fail and it stops.
pub fn spawn<T, F>(produce: F) -> (PipeReader, JoinHandle<T>)
where
    T: Send + 'static,
    F: FnOnce(&mut PipeWriter) -> T + Send + 'static,
{
    let (tx, rx) = sync_channel(8);
    let handle = std::thread::spawn(move || {
        let mut w = PipeWriter {
            tx,
            buf: Vec::with_capacity(PIECE),
        };
        produce(&mut w)
    });
    (
        PipeReader {
            rx,
            piece: Vec::new(),
            pos: 0,
        },
        handle,
    )
}

impl PipeWriter {
    /// Send what is buffered; call at the end so the last piece is not lost.
    pub fn close(&mut self) -> io::Result<()> {
        self.flush()
    }
}

impl Write for PipeWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let take = data.len().min(PIECE - self.buf.len());
        self.buf.extend_from_slice(&data[..take]);
        if self.buf.len() == PIECE {
            self.flush()?;
        }
        Ok(take)
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            let piece = std::mem::replace(&mut self.buf, Vec::with_capacity(PIECE));
            self.tx
                .send(piece)
                .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "reader stopped"))?;
        }
        Ok(())
    }
}

impl Read for PipeReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.piece.len() {
            match self.rx.recv() {
                Ok(p) => {
                    self.piece = p;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.piece.len() - self.pos);
        out[..n].copy_from_slice(&self.piece[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
