//! `poll_oneoff`, the guest's monotonic clock, and the wait every blocking call makes (it
//! also watches the stop eventfd, so a stop signal ends it).

use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use wasmtime_wasi::HostMonotonicClock;

use super::abi::*;
use super::files::{slot, Fd, Files};
use crate::wasm::guestfs::Kind;

/// Wait until one of `fds` is ready or `deadline` passes (`None`: no deadline), or a stop
/// signal comes: [`errno::INTR`], and the call traps (see `host_function!` in `linker.rs`).
pub(super) fn wait<'fd>(
    fds: &mut Vec<PollFd<'fd>>,
    deadline: Option<Instant>,
    wake: BorrowedFd<'fd>,
) -> R<()> {
    fds.push(PollFd::from_borrowed_fd(wake, PollFlags::IN));
    let waited = loop {
        let timeout = deadline.map(|d| {
            let left = d.saturating_duration_since(Instant::now());
            rustix::time::Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: left.subsec_nanos().into(),
            }
        });
        match rustix::event::poll(fds, timeout.as_ref()) {
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => break Err(host_errno(e)),
            Ok(_) if fds.last().is_some_and(|w| !w.revents().is_empty()) => break Err(errno::INTR),
            Ok(_) => break Ok(()),
        }
    };
    fds.pop();
    waited
}

/// The guest's monotonic clock: nanoseconds since the guest started, read by
/// `clock_time_get` (through wasmtime-wasi) and by our `poll_oneoff` for absolute deadlines.
#[derive(Clone, Copy)]
pub struct GuestClock(pub(super) Instant);

impl GuestClock {
    pub fn new() -> GuestClock {
        GuestClock(Instant::now())
    }
}

impl HostMonotonicClock for GuestClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

pub(super) const SUBSCRIPTION_SIZE: u32 = 48;
pub(super) const EVENT_SIZE: u32 = 32;
/// More subscriptions than this is `INVAL`, as Linux refuses more fds than RLIMIT_NOFILE:
/// what the host holds per call stays small next to the guest's own memory.
pub(super) const MAX_SUBSCRIPTIONS: u32 = 1 << 16;
const EVENTTYPE_CLOCK: u8 = 0;
const EVENTTYPE_FD_READ: u8 = 1;
const EVENTTYPE_FD_WRITE: u8 = 2;
const CLOCK_REALTIME: u32 = 0;
const CLOCK_MONOTONIC: u32 = 1;
const SUBCLOCKFLAGS_ABSTIME: u16 = 1;
const EVENTRWFLAGS_HANGUP: u16 = 1;

/// A `subscription`, read from the guest.
pub(super) struct Subscription {
    userdata: u64,
    /// `EVENTTYPE_*`.
    kind: u8,
    /// The clock id, or the descriptor.
    id: u32,
    /// Clocks: the timeout (ns) and whether it is absolute.
    timeout: u64,
    absolute: bool,
}

impl Subscription {
    pub(super) fn parse(b: &[u8]) -> Subscription {
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let flags = u16::from_le_bytes(b[40..42].try_into().expect("2 bytes"));
        Subscription {
            userdata: u64_at(0),
            kind: b[8],
            id: u32::from_le_bytes(b[16..20].try_into().expect("4 bytes")),
            timeout: u64_at(24),
            absolute: flags & SUBCLOCKFLAGS_ABSTIME != 0,
        }
    }
}

/// An `event`: what became of one subscription.
pub(super) struct Event {
    userdata: u64,
    error: Errno,
    kind: u8,
    /// Bytes ready to read (fd_read of a file).
    nbytes: u64,
    hangup: bool,
}

impl Event {
    fn new(sub: &Subscription, error: Errno) -> Event {
        Event {
            userdata: sub.userdata,
            error,
            kind: sub.kind,
            nbytes: 0,
            hangup: false,
        }
    }

    pub(super) fn encode(&self) -> [u8; EVENT_SIZE as usize] {
        let mut b = [0u8; EVENT_SIZE as usize];
        b[0..8].copy_from_slice(&self.userdata.to_le_bytes());
        b[8..10].copy_from_slice(&self.error.to_le_bytes());
        b[10] = self.kind;
        b[16..24].copy_from_slice(&self.nbytes.to_le_bytes());
        let flags = if self.hangup { EVENTRWFLAGS_HANGUP } else { 0 };
        b[24..26].copy_from_slice(&flags.to_le_bytes());
        b
    }
}

/// When an fd subscription is ready.
enum Readiness {
    /// Now, with this many bytes to read.
    Now(u64),
    /// When the process's stdio fd (0, 1, 2) is, for these poll flags.
    Stdio(u32, PollFlags),
}

impl Files {
    /// `poll_oneoff`: the events of the subscriptions that are ready, after waiting for the
    /// first when none is. Files and directories are always ready, as on Linux; stdio waits
    /// on the process's own.
    pub(super) fn poll(&mut self, subscriptions: &[Subscription]) -> R<Vec<Event>> {
        let start = Instant::now();
        let host = Arc::clone(&self.stdio);
        let mut events = Vec::new();
        let mut clocks = Vec::new();
        let mut stdio = Vec::new();
        let mut fds = Vec::new();
        for sub in subscriptions {
            match sub.kind {
                EVENTTYPE_CLOCK => match self.deadline(sub, start) {
                    Ok(at) => clocks.push((sub, at)),
                    Err(e) => events.push(Event::new(sub, e)),
                },
                EVENTTYPE_FD_READ | EVENTTYPE_FD_WRITE => {
                    match self.readiness(sub.id, sub.kind == EVENTTYPE_FD_WRITE) {
                        Ok(Readiness::Now(nbytes)) => events.push(Event {
                            nbytes,
                            ..Event::new(sub, 0)
                        }),
                        Ok(Readiness::Stdio(fd, flags)) => {
                            stdio.push(sub);
                            fds.push(PollFd::from_borrowed_fd(host.fd(fd), flags));
                        }
                        Err(e) => events.push(Event::new(sub, e)),
                    }
                }
                _ => return Err(errno::INVAL),
            }
        }
        loop {
            // With an event already, only look at stdio; else wait for it or the first clock
            // (with neither, until a stop signal: the guest asked to sleep past our clock).
            let deadline = if events.is_empty() {
                clocks.iter().filter_map(|c| c.1).min()
            } else {
                Some(start)
            };
            wait(&mut fds, deadline, self.wake)?;
            for (sub, fd) in stdio.iter().zip(&fds) {
                let revents = fd.revents();
                let error = if revents.contains(PollFlags::NVAL) {
                    errno::BADF
                } else if revents.contains(PollFlags::ERR) {
                    errno::PIPE
                } else {
                    0
                };
                if !revents.is_empty() {
                    events.push(Event {
                        hangup: revents.contains(PollFlags::HUP),
                        ..Event::new(sub, error)
                    });
                }
            }
            let now = Instant::now();
            events.extend(
                clocks
                    .iter()
                    .filter(|c| c.1.is_some_and(|at| at <= now))
                    .map(|(sub, _)| Event::new(sub, 0)),
            );
            if !events.is_empty() {
                return Ok(events);
            }
        }
    }

    /// When a clock subscription fires (`None`: beyond any instant we can hold).
    fn deadline(&self, sub: &Subscription, now: Instant) -> R<Option<Instant>> {
        let timeout = Duration::from_nanos(sub.timeout);
        Ok(match (sub.id, sub.absolute) {
            (CLOCK_REALTIME | CLOCK_MONOTONIC, false) => now.checked_add(timeout),
            (CLOCK_MONOTONIC, true) => self.started.checked_add(timeout),
            (CLOCK_REALTIME, true) => {
                let wall = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                now.checked_add(timeout.saturating_sub(wall))
            }
            // The CPU-time clocks do not advance while the guest waits.
            _ => return Err(errno::INVAL),
        })
    }

    /// When fd `fd` is ready for reading (or `write`-ing).
    fn readiness(&mut self, fd: u32, write: bool) -> R<Readiness> {
        match (slot(&mut self.table, fd)?, write) {
            (Fd::Stdio(0), false) if self.stdin => Ok(Readiness::Stdio(0, PollFlags::IN)),
            // An empty stdin: at its end.
            (Fd::Stdio(0), false) => Ok(Readiness::Now(0)),
            (Fd::Stdio(out @ (1 | 2)), true) => Ok(Readiness::Stdio(*out, PollFlags::OUT)),
            (Fd::Stdio(_), _) => Err(errno::BADF),
            (Fd::Open(f), false) if matches!(f.desc.kind, Kind::File(_)) => {
                let size = fs(self.fs.stat_descriptor(&f.desc))?.st_size as u64;
                Ok(Readiness::Now(size.saturating_sub(f.pos)))
            }
            (Fd::Open(_), _) => Ok(Readiness::Now(0)),
        }
    }
}
