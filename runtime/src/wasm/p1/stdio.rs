//! Stdio: the process's own, or the fds the run was given.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::event::{PollFd, PollFlags};

use super::abi::*;
use super::poll::wait;
use crate::backend::Stream;

/// The host fds behind the guest's stdio: the process's unless the run gave others (a build
/// step's pipe, an exec's stdin from its caller).
pub struct HostStdio {
    stdin: Option<OwnedFd>,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
}

impl HostStdio {
    pub fn new(stdin: Option<Stream>, stdout: Stream, stderr: Stream) -> HostStdio {
        let own = |s: Stream| match s {
            Stream::Inherit => None,
            Stream::Fd(fd) => Some(fd),
        };
        HostStdio {
            stdin: stdin.and_then(own),
            stdout: own(stdout),
            stderr: own(stderr),
        }
    }

    pub(super) fn fd(&self, fd: u32) -> BorrowedFd<'_> {
        match fd {
            0 => match &self.stdin {
                Some(f) => f.as_fd(),
                None => rustix::stdio::stdin(),
            },
            1 => match &self.stdout {
                Some(f) => f.as_fd(),
                None => rustix::stdio::stdout(),
            },
            _ => match &self.stderr {
                Some(f) => f.as_fd(),
                None => rustix::stdio::stderr(),
            },
        }
    }
}

/// A terminal is a character device without seek, as wasi-libc's `isatty` asks.
pub(super) fn stdio_filetype(fd: BorrowedFd<'_>) -> u8 {
    if rustix::termios::isatty(fd) {
        2
    } else {
        FILETYPE_UNKNOWN
    }
}

pub(super) fn read_stdin(
    stdin: BorrowedFd<'_>,
    mem: &mut [u8],
    iovs: &[(u32, u32)],
    wake: BorrowedFd<'_>,
) -> R<u32> {
    // One read, into the first non-empty buffer: what is there now, as a pipe gives it.
    let Some(&(ptr, len)) = iovs.iter().find(|(_, len)| *len > 0) else {
        return Ok(0);
    };
    let buf = bytes_mut(mem, ptr, len)?;
    // Waiting in poll, not in read, so that a stop signal ends the wait.
    let mut ready = vec![PollFd::from_borrowed_fd(stdin, PollFlags::IN)];
    wait(&mut ready, None, wake)?;
    loop {
        match rustix::io::read(stdin, &mut *buf) {
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(host_errno(e)),
            Ok(n) => return Ok(n as u32),
        }
    }
}

pub(super) fn write_stdio(fd: BorrowedFd<'_>, mem: &[u8], iovs: &[(u32, u32)]) -> R<u32> {
    let mut total = 0u32;
    for &(ptr, len) in iovs {
        let mut data = bytes(mem, ptr, len)?;
        while !data.is_empty() {
            match rustix::io::write(fd, data) {
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) if total == 0 => return Err(host_errno(e)),
                Err(_) => return Ok(total),
                Ok(n) => {
                    total += n as u32;
                    data = &data[n..];
                }
            }
        }
    }
    Ok(total)
}
