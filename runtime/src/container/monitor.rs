//! A container's monitor: the process that keeps a detached container (`run -d`, `start`),
//! as podman's conmon does, with no daemon. It holds the container's claim for as long as
//! it lives, runs the container on its backend (a Wasm guest in the monitor's own process),
//! copies its output into the json-file log, records how each run ended, restarts it as
//! its policy says (moby's back-off), and answers commands on a unix socket in the
//! container's directory: a signal (`kill`), a stop with its grace period (`stop`: the
//! monitor carries it out, so a killed CLI cannot leave it half done) and a wait for the
//! run's end (`wait`). A command that finds no monitor there reads the record instead.
//!
//! The CLI spawns it (the `strata` binary re-executed, in its own session); this module is
//! what it then runs.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::logs::{self, LogWriter, Source};
use super::{Claim, Container, Containers, Status};
use crate::backend::{Backends, Executor, Signaller, Started, Stdio, Stream};
use crate::error::{Error, Result};

/// The monitor's socket in the container's directory.
pub const SOCKET: &str = "monitor.sock";

/// What a command asks of a monitor: one JSON line, answered by one [`Reply`].
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Request {
    /// Send this signal to the container's process (`kill`).
    Signal { signal: i32 },
    /// `stop`: `signal`, then SIGKILL once `timeout` seconds have passed (-1: never); no
    /// restart follows. Answered when the process has ended.
    Stop { signal: i32, timeout: i64 },
    /// Answered when the run going on ends (at once if none is), with its status.
    Wait,
    /// `exec` in a container whose backend runs it in the monitor (Wasm): this process,
    /// its stdout and stderr the two descriptors sent with the request. Answered when it
    /// ends, with its status (126/127 and the error when it could not start).
    Exec {
        process: Box<oci_spec::runtime::Process>,
    },
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Reply {
    /// The status of the run that ended (or the last one).
    #[serde(default)]
    pub exit: Option<i32>,
    #[serde(default)]
    pub error: Option<String>,
}

/// Ask the monitor of `c`. `Ok(None)` when it has none (it does not run detached, or the
/// monitor is gone, or went before it answered): the record then says what there is to know.
pub fn request(containers: &Containers<'_>, c: &Container, req: &Request) -> Result<Option<Reply>> {
    request_with(containers, c, req, &[])
}

/// `request`, passing `fds` with it (`exec`'s stdout and stderr).
pub fn request_with(
    containers: &Containers<'_>,
    c: &Container,
    req: &Request,
    fds: &[BorrowedFd<'_>],
) -> Result<Option<Reply>> {
    let dir = match containers.dir_of(c) {
        Ok(d) => d,
        Err(e) if e.kind() == crate::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let conn = match UnixStream::connect(socket_path(&dir)) {
        Ok(conn) => conn,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(Error::io(format!("connect to the monitor of {}", c.id), e)),
    };
    let mut line = serde_json::to_vec(req).expect("serialize");
    line.push(b'\n');
    // A monitor that ends (its container done) while we ask has nothing more to say: the
    // record, which it wrote first, has.
    let gone = |e: &std::io::Error| {
        matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
        )
    };
    let io = |e| Error::io(format!("ask the monitor of {}", c.id), e);
    match send(&conn, &line, fds) {
        Err(e) if gone(&e) => return Ok(None),
        r => r.map_err(io)?,
    }
    let mut answer = String::new();
    match BufReader::new(&conn).read_line(&mut answer) {
        Err(e) if gone(&e) => return Ok(None),
        r => r.map_err(io)?,
    };
    if answer.is_empty() {
        return Ok(None);
    }
    serde_json::from_str(&answer)
        .map(Some)
        .map_err(|e| Error::InvalidDocument(format!("monitor reply: {e}")))
}

/// Write `line` to `conn`, with `fds` in its first part.
fn send(conn: &UnixStream, line: &[u8], fds: &[BorrowedFd<'_>]) -> std::io::Result<()> {
    use rustix::net::{sendmsg, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    let mut space = vec![std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
    let mut ancillary = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() {
        ancillary.push(SendAncillaryMessage::ScmRights(fds));
    }
    let sent = sendmsg(
        conn,
        &[std::io::IoSlice::new(line)],
        &mut ancillary,
        SendFlags::empty(),
    )?;
    let mut conn = conn;
    conn.write_all(&line[sent..])
}

/// Read one request line from `conn`, and the descriptors sent with it.
fn receive(conn: &UnixStream) -> std::io::Result<(Vec<u8>, Vec<OwnedFd>)> {
    use rustix::net::{recvmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let mut line = Vec::new();
    let mut fds = Vec::new();
    let mut buf = [0u8; 4096];
    while !line.contains(&b'\n') && line.len() < 1 << 20 {
        let mut space = vec![std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
        let mut ancillary = RecvAncillaryBuffer::new(&mut space);
        let got = recvmsg(
            conn,
            &mut [std::io::IoSliceMut::new(&mut buf)],
            &mut ancillary,
            RecvFlags::CMSG_CLOEXEC,
        )?;
        for message in ancillary.drain() {
            if let RecvAncillaryMessage::ScmRights(received) = message {
                fds.extend(received);
            }
        }
        if got.bytes == 0 {
            break;
        }
        line.extend_from_slice(&buf[..got.bytes]);
    }
    Ok((line, fds))
}

/// The socket's address through the directory's descriptor: short whatever the store's
/// path (a unix socket's address has 108 bytes).
fn socket_path(dir: &impl AsRawFd) -> String {
    format!("/proc/self/fd/{}/{SOCKET}", dir.as_raw_fd())
}

/// What the socket's handlers and the runs share.
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

struct State {
    /// The running process's signaller (none between runs).
    signal: Option<Signaller>,
    /// Its backend's way to run another process in it, if it has one.
    exec: Option<Executor>,
    /// Runs that have ended, and the status of the last.
    ended: u64,
    last: Option<i32>,
    /// `stop` (or a kill with the stop signal or SIGKILL): no restart.
    stopped_by_user: bool,
    stop_signal: i32,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// moby's restart back-off: 100 ms, doubled at each restart up to a minute, back to 100 ms
/// after a run of 10 s or more.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            next: Backoff::FIRST,
        }
    }
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(60);
    const RESET_AFTER: Duration = Duration::from_secs(10);

    /// The wait before the next run, after one that lasted `ran`.
    pub fn delay(&mut self, ran: Duration) -> Duration {
        if ran >= Backoff::RESET_AFTER {
            self.next = Backoff::FIRST;
        }
        let delay = self.next;
        self.next = (self.next * 2).min(Backoff::MAX);
        delay
    }
}

/// Run container `c` as its monitor until it ends for good, holding its `claim`. `ready` is
/// told once whether the first run started (its pid) or could not (the error; the record
/// then stays `created`, as docker leaves it).
pub fn serve(
    containers: &Containers<'_>,
    backends: &Backends<'_>,
    claim: Claim,
    mut c: Container,
    ready: &mut dyn FnMut(std::result::Result<u32, &Error>),
) -> Result<()> {
    let spec = containers.spec(&c)?;
    let tty = spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    let dir = containers.dir_of(&c)?;
    let listener = listen(&claim, &dir)?;
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            signal: None,
            exec: None,
            ended: 0,
            last: c.exit_code,
            stopped_by_user: false,
            stop_signal: c.host.stop_signal()?,
        }),
        changed: Condvar::new(),
    });
    {
        let shared = Arc::clone(&shared);
        // Never joined: it ends with the process.
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || answer(conn, &shared));
            }
        });
    }
    // `-i`: the container's stdin stays open (nobody writes to it yet).
    let _stdin_writer = if c.host.open_stdin {
        let (read, write) = pipe()?;
        rustix::stdio::dup2_stdin(&read).map_err(|e| Error::io("set up stdin", e.into()))?;
        Some(write)
    } else {
        None
    };
    let log = Arc::new(Mutex::new(LogWriter::open(&dir, &c.id, &c.host.log)?));
    c.stopped_by_user = false;
    let mut backoff = Backoff::default();
    let mut first = true;
    let result = loop {
        let (out_reader, stdout) = pipe()?;
        // A terminal is one stream, as docker logs it.
        let (err_reader, stderr) = if tty {
            (None, None)
        } else {
            let (r, w) = pipe()?;
            (Some(r), Some(w))
        };
        let copiers: Vec<_> = [
            (Some(out_reader), Source::Stdout),
            (err_reader, Source::Stderr),
        ]
        .into_iter()
        .filter_map(|(r, source)| Some((r?, source)))
        .map(|(reader, source)| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || logs::copy(std::fs::File::from(reader), source, &log))
        })
        .collect();
        let stdio = Stdio {
            stdin: c.host.open_stdin,
            stdout: Stream::Fd(stdout),
            stderr: stderr.map_or(Stream::Inherit, Stream::Fd),
        };
        let began = Instant::now();
        let mut ran = false;
        let mut on_start = |p: &Started| {
            ran = true;
            let mut state = shared.lock();
            state.signal = Some(Arc::clone(&p.signal));
            state.exec = p.exec.clone();
            if first {
                ready(Ok(p.pid));
            }
        };
        let outcome = containers.run(&claim, &mut c, &spec, backends, stdio, &mut on_start);
        // Its output is in the log before anyone hears it ended.
        for copier in copiers {
            let _ = copier.join();
        }
        let code = match &outcome {
            Ok(exit) => exit.code,
            Err(e) => e.exit_code(),
        };
        let stopped_by_user = {
            let mut state = shared.lock();
            state.signal = None;
            state.exec = None;
            state.ended += 1;
            state.last = Some(code);
            state.stopped_by_user
        };
        shared.changed.notify_all();
        if !ran {
            if first {
                if let Err(e) = &outcome {
                    ready(Err(e));
                }
            }
            break outcome.map(|_| ());
        }
        first = false;
        if c.auto_remove {
            break Ok(());
        }
        if stopped_by_user {
            c.stopped_by_user = true;
            containers.save_unless_removed(&c)?;
        }
        if !c
            .host
            .restart
            .should_restart(code, stopped_by_user, c.restart_count)
        {
            break Ok(());
        }
        c.status = Status::Restarting;
        containers.save_unless_removed(&c)?;
        let delay = backoff.delay(began.elapsed());
        let deadline = Instant::now() + delay;
        let mut state = shared.lock();
        while !state.stopped_by_user && Instant::now() < deadline {
            state = shared
                .changed
                .wait_timeout(state, deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        if state.stopped_by_user {
            drop(state);
            c.status = Status::Exited;
            c.stopped_by_user = true;
            containers.save_unless_removed(&c)?;
            break Ok(());
        }
        drop(state);
        c.restart_count += 1;
    };
    let _ = dir.remove_file(SOCKET);
    result
}

/// The monitor's socket, made afresh (one a killed monitor left is removed first).
fn listen(claim: &Claim, dir: &cap_std::fs::Dir) -> Result<UnixListener> {
    match dir.remove_file(SOCKET) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(Error::io("remove an old monitor socket", e))
        }
        _ => {}
    }
    let listener = UnixListener::bind(socket_path(&claim.0.as_fd()))
        .map_err(|e| Error::io("create the monitor's socket", e))?;
    // Only the store's owner may command the container.
    let _ = rustix::fs::chmodat(
        dir,
        SOCKET,
        rustix::fs::Mode::from_raw_mode(0o600),
        rustix::fs::AtFlags::empty(),
    );
    Ok(listener)
}

/// A pipe's read and write ends.
fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| Error::io("create a pipe", e.into()))
}

/// Answer one command.
fn answer(conn: UnixStream, shared: &Shared) {
    let Ok((line, fds)) = receive(&conn) else {
        return;
    };
    let reply = match serde_json::from_slice::<Request>(&line) {
        Ok(Request::Signal { signal }) => kill(shared, signal),
        Ok(Request::Stop { signal, timeout }) => stop(shared, signal, timeout),
        Ok(Request::Wait) => wait(shared),
        Ok(Request::Exec { process }) => exec(shared, &process, fds),
        Err(e) => Reply {
            error: Some(format!("bad request: {e}")),
            ..Reply::default()
        },
    };
    let mut out = serde_json::to_vec(&reply).expect("serialize");
    out.push(b'\n');
    let _ = (&conn).write_all(&out);
}

fn not_running() -> Reply {
    Reply {
        error: Some("is not running".into()),
        ..Reply::default()
    }
}

fn exec(shared: &Shared, process: &oci_spec::runtime::Process, fds: Vec<OwnedFd>) -> Reply {
    let Some(run) = shared.lock().exec.clone() else {
        return not_running();
    };
    let mut fds = fds.into_iter();
    let (Some(stdout), Some(stderr)) = (fds.next(), fds.next()) else {
        return Reply {
            error: Some("exec: no stdout and stderr sent".into()),
            ..Reply::default()
        };
    };
    let stdio = Stdio {
        stdin: false,
        stdout: Stream::Fd(stdout),
        stderr: Stream::Fd(stderr),
    };
    match run(process, stdio) {
        Ok(exit) => Reply {
            exit: Some(exit.code),
            error: exit.message,
        },
        Err(e) => Reply {
            exit: Some(e.exit_code()),
            error: Some(e.to_string()),
        },
    }
}

fn kill(shared: &Shared, signal: i32) -> Reply {
    let mut state = shared.lock();
    let Some(send) = state.signal.clone() else {
        return not_running();
    };
    if signal == 9 || signal == state.stop_signal {
        state.stopped_by_user = true;
    }
    match send(signal) {
        Ok(()) => Reply::default(),
        Err(e) => Reply {
            error: Some(e.to_string()),
            ..Reply::default()
        },
    }
}

fn stop(shared: &Shared, signal: i32, timeout: i64) -> Reply {
    let mut state = shared.lock();
    state.stopped_by_user = true;
    // Ends a restart back-off at once.
    shared.changed.notify_all();
    let Some(send) = state.signal.clone() else {
        return Reply {
            exit: state.last,
            ..Reply::default()
        };
    };
    let ended = state.ended;
    let _ = send(signal);
    let deadline = (timeout >= 0).then(|| Instant::now() + Duration::from_secs(timeout as u64));
    while state.ended == ended {
        match deadline {
            Some(d) if Instant::now() >= d => break,
            Some(d) => {
                state = shared
                    .changed
                    .wait_timeout(state, d.saturating_duration_since(Instant::now()))
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
            None => {
                state = shared
                    .changed
                    .wait(state)
                    .unwrap_or_else(|e| e.into_inner())
            }
        }
    }
    if state.ended == ended {
        let _ = send(9);
        state = until_ended(shared, state, ended);
    }
    Reply {
        exit: state.last,
        ..Reply::default()
    }
}

/// Wait until more than `ended` runs have ended.
fn until_ended<'a>(
    shared: &'a Shared,
    mut state: MutexGuard<'a, State>,
    ended: u64,
) -> MutexGuard<'a, State> {
    while state.ended == ended {
        state = shared
            .changed
            .wait(state)
            .unwrap_or_else(|e| e.into_inner());
    }
    state
}

fn wait(shared: &Shared) -> Reply {
    let mut state = shared.lock();
    if state.signal.is_some() {
        let ended = state.ended;
        state = until_ended(shared, state, ended);
    }
    Reply {
        exit: state.last,
        ..Reply::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_minute_and_resets_after_a_long_run() {
        let mut b = Backoff::default();
        let short = Duration::from_millis(50);
        let delays: Vec<u64> = (0..12).map(|_| b.delay(short).as_millis() as u64).collect();
        assert_eq!(&delays[..4], &[100, 200, 400, 800]);
        assert_eq!(*delays.last().unwrap(), 60_000);
        assert_eq!(b.delay(Duration::from_secs(10)).as_millis(), 100);
        assert_eq!(b.delay(short).as_millis(), 200);
    }

    #[test]
    fn requests_are_one_json_line_each() {
        let req = serde_json::to_string(&Request::Stop {
            signal: 15,
            timeout: 10,
        })
        .unwrap();
        assert_eq!(req, r#"{"op":"stop","signal":15,"timeout":10}"#);
        assert!(matches!(
            serde_json::from_str::<Request>(r#"{"op":"wait"}"#).unwrap(),
            Request::Wait
        ));
    }
}
