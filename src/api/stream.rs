//! The API's bodies and streams: a whole body, or one fed from a blocking handler through a
//! channel (logs, waits, JSON progress); docker's multiplexed framing of stdout and stderr;
//! and a hijacked connection (attach, exec start) fed the same way.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::Frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// A response body: all of it now, or what a handler sends until it drops its `Sender`.
pub enum Body {
    Full(Option<Bytes>),
    Channel(mpsc::Receiver<Bytes>),
}

impl Body {
    pub fn full(bytes: impl Into<Bytes>) -> Body {
        Body::Full(Some(bytes.into()))
    }

    /// A body fed from a blocking thread, and its feeding end.
    pub fn channel() -> (Sender, Body) {
        let (tx, rx) = mpsc::channel(64);
        (Sender(tx), Body::Channel(rx))
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Body::Channel(rx) => rx.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b)))),
        }
    }
}

/// The feeding end of a channel body or a hijacked connection, for a blocking thread. A
/// send fails once the client has gone, which ends what feeds it.
#[derive(Clone)]
pub struct Sender(mpsc::Sender<Bytes>);

impl Sender {
    pub fn send(&self, bytes: impl Into<Bytes>) -> io::Result<()> {
        self.0
            .blocking_send(bytes.into())
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))
    }

    /// One JSON message and its newline (docker's progress and build streams).
    pub fn json(&self, value: &serde_json::Value) -> io::Result<()> {
        let mut line = serde_json::to_vec(value).expect("json");
        line.push(b'\n');
        self.send(line)
    }
}

/// A writer into a channel body (archives streamed out).
pub struct Writer(pub Sender);

impl io::Write for Writer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.send(buf.to_vec())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A writer of one of a container's streams: docker's 8-byte header (`[stream, 0, 0, 0,
/// length]`, 1 stdout, 2 stderr) before each write, or the bytes as they are for a
/// container with a terminal (one raw stream).
pub struct Framed {
    pub sender: Sender,
    pub stream: u8,
    pub raw: bool,
}

impl io::Write for Framed {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut frame = Vec::with_capacity(buf.len() + 8);
        if !self.raw {
            frame.extend([self.stream, 0, 0, 0]);
            frame.extend((buf.len() as u32).to_be_bytes());
        }
        frame.extend_from_slice(buf);
        self.sender.send(frame)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Take over an upgraded connection (after the 101): what is sent goes to the client, in
/// order, and the connection is shut for writing once every `Sender` is dropped; what the
/// client writes (a container's stdin) arrives on the returned receiver, which ends at its
/// half-close. Called on a blocking thread of the server's runtime.
pub fn hijack(upgrade: hyper::upgrade::OnUpgrade) -> (Sender, std::sync::mpsc::Receiver<Vec<u8>>) {
    let (tx, mut rx) = mpsc::channel::<Bytes>(64);
    let (stdin_tx, stdin_rx) = std::sync::mpsc::channel();
    tokio::runtime::Handle::current().spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let (mut reader, mut writer) = tokio::io::split(hyper_util::rt::TokioIo::new(upgraded));
        tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if stdin_tx.send(buf[..n].to_vec()).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        while let Some(bytes) = rx.recv().await {
            if writer.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = writer.shutdown().await;
    });
    (Sender(tx), stdin_rx)
}

/// A request body as a blocking reader (a `cp` upload's tar), fed by a task of the server's
/// runtime; a body that breaks off reads as an error, not as its end.
pub struct BodyReader {
    chunks: std::sync::mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl BodyReader {
    pub fn new(body: hyper::body::Incoming) -> BodyReader {
        use http_body_util::BodyExt;
        let (tx, rx) = std::sync::mpsc::sync_channel(16);
        tokio::runtime::Handle::current().spawn(async move {
            let mut body = body;
            loop {
                match body.frame().await {
                    None => return,
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            // A blocking send on a runtime thread: bounded, and the reader
                            // drains it; the reader's end closing ends this task.
                            if tokio::task::block_in_place(|| tx.send(Ok(data))).is_err() {
                                return;
                            }
                        }
                    }
                    Some(Err(e)) => {
                        let _ = tx.send(Err(io::Error::other(e)));
                        return;
                    }
                }
            }
        });
        BodyReader {
            chunks: rx,
            current: Bytes::new(),
        }
    }
}

impl io::Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.recv() {
                Ok(chunk) => self.current = chunk?,
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn frames_carry_docker_headers() {
        let (tx, mut rx) = mpsc::channel(4);
        let mut out = Framed {
            sender: Sender(tx),
            stream: 2,
            raw: false,
        };
        std::thread::spawn(move || out.write_all(b"err\n").unwrap())
            .join()
            .unwrap();
        let frame = rx.blocking_recv().unwrap();
        assert_eq!(&frame[..], b"\x02\x00\x00\x00\x00\x00\x00\x04err\n");
    }
}
