//! Waits cut short by a stop signal. wasmtime-wasi's waits run to their end, so a guest
//! sleeping, polling, or reading a stdin that stays open would not stop on SIGINT/SIGTERM
//! until it came back to Wasm (an epoch check). Here the signal handler writes to an eventfd
//! (async-signal-safe) that every wait also watches: preview 1's `poll` includes it
//! (`p1/poll.rs`), and wasi:io's blocking calls (`poll`, `pollable.block`, the streams'
//! `blocking-*`) race it (below). The count stays, so a signal that came before the wait
//! ends it too; the call then traps, and the run ends as a spinning guest's does.

use std::future::Future;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::OnceLock;

use tokio::io::unix::AsyncFd;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime::Trap;
use wasmtime_wasi::p2::bindings::sync::io::{poll, streams};
use wasmtime_wasi::p2::{StreamError, StreamResult};
use wasmtime_wasi::runtime::in_tokio;
use wasmtime_wasi_io::bindings::wasi::io::poll as async_poll;
use wasmtime_wasi_io::bindings::wasi::io::streams::{
    HostInputStream as AsyncInput, HostOutputStream as AsyncOutput,
};
use wasmtime_wasi_io::poll::DynPollable;
use wasmtime_wasi_io::streams::{DynInputStream, DynOutputStream};

use crate::error::{Error, Result};

/// The eventfd that stop signals write to. It lives as long as the process, so a handler
/// never writes to a closed (or reused) descriptor.
static WAKE: OnceLock<OwnedFd> = OnceLock::new();

/// The stop eventfd, emptied: called before the signal handlers are installed, so what it
/// counts from then on are this run's stop signals.
pub fn arm() -> Result<BorrowedFd<'static>> {
    let fd = match WAKE.get() {
        Some(fd) => {
            // Emptied of an earlier run's signals (a new eventfd is empty).
            let _ = rustix::io::read(fd, &mut [0u8; 8]);
            fd
        }
        None => {
            use rustix::event::{eventfd, EventfdFlags};
            let fd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)
                .map_err(|e| Error::io("set up stop signals", e.into()))?;
            WAKE.get_or_init(|| fd)
        }
    };
    Ok(fd.as_fd())
}

/// Tell the waits that a stop signal came. Async-signal-safe: an atomic load (`get`) and
/// write(2).
pub fn wake() {
    if let Some(fd) = WAKE.get() {
        let _ = rustix::io::write(fd, &1u64.to_ne_bytes());
    }
}

/// What ends a guest's waits.
pub enum Stop {
    /// A command's: the stop eventfd, registered with the current Tokio runtime (the
    /// component's).
    Signal(AsyncFd<BorrowedFd<'static>>),
    /// A served request's: its deadline, or the service's kill (a stop signal only drains
    /// a service: its requests run on).
    Request {
        deadline: tokio::time::Instant,
        killed: tokio::sync::watch::Receiver<bool>,
    },
}

impl Stop {
    /// `fd` is [`arm`]'s.
    #[allow(unsafe_code)]
    pub fn new(fd: BorrowedFd<'static>) -> Result<Stop> {
        // SAFETY: WAKE's descriptor stays open, and the same, for the rest of the process.
        unsafe { AsyncFd::register(fd) }
            .map(Stop::Signal)
            .map_err(|e| Error::io("set up stop signals", e.into()))
    }

    /// `work`'s output, or `stopped()` when what ends the waits comes first.
    fn wait<T>(&self, work: impl Future<Output = T>, stopped: impl FnOnce() -> T) -> T {
        let ends = async {
            match self {
                Stop::Signal(wake) => drop(wake.readable().await),
                Stop::Request { deadline, killed } => {
                    let mut killed = killed.clone();
                    tokio::select! {
                        _ = tokio::time::sleep_until(*deadline) => {}
                        _ = killed.wait_for(|k| *k) => {}
                    }
                }
            }
        };
        in_tokio(async {
            tokio::select! {
                biased;
                out = work => out,
                _ = ends => stopped(),
            }
        })
    }
}

fn interrupted() -> wasmtime::Error {
    Trap::Interrupt.into()
}

fn stream_interrupted<T>() -> StreamResult<T> {
    Err(StreamError::Trap(interrupted()))
}

/// wasi:io's host, for the linker: the store's resource table and the stop signals.
pub struct Io<'a> {
    pub table: &'a mut ResourceTable,
    pub stop: &'a Stop,
}

impl poll::Host for Io<'_> {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        let work = async_poll::Host::poll(self.table, pollables);
        self.stop.wait(work, || Err(interrupted()))
    }
}

impl poll::HostPollable for Io<'_> {
    fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        poll::HostPollable::ready(self.table, pollable)
    }

    fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        let work = async_poll::HostPollable::block(self.table, pollable);
        self.stop.wait(work, || Err(interrupted()))
    }

    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        poll::HostPollable::drop(self.table, pollable)
    }
}

impl streams::Host for Io<'_> {
    fn convert_stream_error(&mut self, err: StreamError) -> wasmtime::Result<streams::StreamError> {
        streams::Host::convert_stream_error(self.table, err)
    }
}

impl streams::HostInputStream for Io<'_> {
    fn drop(&mut self, stream: Resource<DynInputStream>) -> wasmtime::Result<()> {
        streams::HostInputStream::drop(self.table, stream)
    }

    fn read(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<Vec<u8>> {
        streams::HostInputStream::read(self.table, stream, len)
    }

    fn blocking_read(
        &mut self,
        stream: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<Vec<u8>> {
        let work = AsyncInput::blocking_read(self.table, stream, len);
        self.stop.wait(work, stream_interrupted)
    }

    fn skip(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<u64> {
        streams::HostInputStream::skip(self.table, stream, len)
    }

    fn blocking_skip(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<u64> {
        let work = AsyncInput::blocking_skip(self.table, stream, len);
        self.stop.wait(work, stream_interrupted)
    }

    fn subscribe(
        &mut self,
        stream: Resource<DynInputStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        streams::HostInputStream::subscribe(self.table, stream)
    }
}

impl streams::HostOutputStream for Io<'_> {
    fn drop(&mut self, stream: Resource<DynOutputStream>) -> wasmtime::Result<()> {
        streams::HostOutputStream::drop(self.table, stream)
    }

    fn check_write(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<u64> {
        streams::HostOutputStream::check_write(self.table, stream)
    }

    fn write(&mut self, stream: Resource<DynOutputStream>, bytes: Vec<u8>) -> StreamResult<()> {
        streams::HostOutputStream::write(self.table, stream, bytes)
    }

    fn blocking_write_and_flush(
        &mut self,
        stream: Resource<DynOutputStream>,
        bytes: Vec<u8>,
    ) -> StreamResult<()> {
        let work = AsyncOutput::blocking_write_and_flush(self.table, stream, bytes);
        self.stop.wait(work, stream_interrupted)
    }

    fn blocking_write_zeroes_and_flush(
        &mut self,
        stream: Resource<DynOutputStream>,
        len: u64,
    ) -> StreamResult<()> {
        let work = AsyncOutput::blocking_write_zeroes_and_flush(self.table, stream, len);
        self.stop.wait(work, stream_interrupted)
    }

    fn subscribe(
        &mut self,
        stream: Resource<DynOutputStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        streams::HostOutputStream::subscribe(self.table, stream)
    }

    fn write_zeroes(&mut self, stream: Resource<DynOutputStream>, len: u64) -> StreamResult<()> {
        streams::HostOutputStream::write_zeroes(self.table, stream, len)
    }

    fn flush(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<()> {
        streams::HostOutputStream::flush(self.table, stream)
    }

    fn blocking_flush(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<()> {
        let work = AsyncOutput::blocking_flush(self.table, stream);
        self.stop.wait(work, stream_interrupted)
    }

    fn splice(
        &mut self,
        dst: Resource<DynOutputStream>,
        src: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        streams::HostOutputStream::splice(self.table, dst, src, len)
    }

    fn blocking_splice(
        &mut self,
        dst: Resource<DynOutputStream>,
        src: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        let work = AsyncOutput::blocking_splice(self.table, dst, src, len);
        self.stop.wait(work, stream_interrupted)
    }
}
