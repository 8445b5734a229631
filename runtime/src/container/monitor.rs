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

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::logs::{self, LogWriter, Source};
use super::{Claim, Container, Containers, Status};
use crate::backend::{
    Backends, Executor, Pauser, Resizer, Signaller, Started, Stdio, Stream, Usage, UsageProbe,
};
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
    /// its stdout and stderr the two descriptors sent with the request (and its stdin a
    /// third, for `-i`). Answered when it
    /// ends, with its status (126/127 and the error when it could not start).
    Exec {
        process: Box<oci_spec::runtime::Process>,
        /// `exec -d`: answered once it runs (or could not start), its output discarded,
        /// no descriptors sent.
        #[serde(default)]
        detach: bool,
    },
    /// `pause` (true) or `unpause` (false) everything the container runs.
    Pause { paused: bool },
    /// What the container uses now (`stats`, `top`).
    Usage,
    /// Its terminal's new size (`attach` on SIGWINCH, the API's resize).
    Resize { rows: u16, cols: u16 },
    /// `attach`/`start -i`: after the reply, the connection carries the attacher's stdin
    /// to the container's, in [`stdin_frame`]s, until the attacher goes.
    Attach,
}

/// One piece of an attacher's stdin on its connection: its length (4 bytes, big endian)
/// and the bytes; an empty one says the attacher's stdin ended (a closed connection only
/// says the attacher went).
pub fn stdin_frame(bytes: &[u8]) -> Vec<u8> {
    let mut frame = (bytes.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(bytes);
    frame
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Reply {
    /// The status of the run that ended (or the last one).
    #[serde(default)]
    pub exit: Option<i32>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub usage: Option<Usage>,
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
    Ok(exchange(containers, c, req, fds)?.map(|(reply, _)| reply))
}

/// `request`, keeping the connection open after the reply (`attach`).
pub fn exchange(
    containers: &Containers<'_>,
    c: &Container,
    req: &Request,
    fds: &[BorrowedFd<'_>],
) -> Result<Option<(Reply, UnixStream)>> {
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
    // One byte at a time: what follows the reply line is the caller's.
    let mut answer = Vec::new();
    let mut byte = [0u8];
    loop {
        match std::io::Read::read(&mut &conn, &mut byte) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => answer.push(byte[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if gone(&e) => return Ok(None),
            Err(e) => return Err(io(e)),
        }
    }
    if answer.is_empty() {
        return Ok(None);
    }
    let reply = serde_json::from_slice(&answer)
        .map_err(|e| Error::InvalidDocument(format!("monitor reply: {e}")))?;
    Ok(Some((reply, conn)))
}

/// Write `line` to `conn`, with `fds` in its first part.
fn send(conn: &UnixStream, line: &[u8], fds: &[BorrowedFd<'_>]) -> std::io::Result<()> {
    use rustix::net::{sendmsg, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    let mut space = vec![std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(3))];
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
        let mut space = vec![std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(3))];
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
    /// The container's directory, where the pause mark goes.
    dir: cap_std::fs::Dir,
    /// The writing end of the container's stdin (`-i`), while it is open.
    stdin: Mutex<Option<OwnedFd>>,
    /// Close it when an attacher's stdin ends (`create -i`).
    stdin_once: bool,
}

struct State {
    /// The running process's signaller (none between runs).
    signal: Option<Signaller>,
    /// Its backend's way to run another process in it, if it has one.
    exec: Option<Executor>,
    pause: Option<Pauser>,
    usage: Option<UsageProbe>,
    resize: Option<Resizer>,
    /// Frozen by `pause` (the mark file says so to other commands).
    paused: bool,
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
            pause: None,
            usage: None,
            resize: None,
            paused: false,
            ended: 0,
            last: c.exit_code,
            stopped_by_user: false,
            stop_signal: c.host.stop_signal()?,
        }),
        changed: Condvar::new(),
        dir: dir
            .try_clone()
            .map_err(|e| Error::io("duplicate a directory handle", e))?,
        stdin: Mutex::new(None),
        stdin_once: c.host.stdin_once,
    });
    // A mark a killed monitor left says nothing about this one's container.
    mark_paused(&shared.dir, false)?;
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
    // `-i`: the container's stdin stays open, for attachers to write to.
    if c.host.open_stdin {
        let (read, write) = pipe()?;
        rustix::stdio::dup2_stdin(&read).map_err(|e| Error::io("set up stdin", e.into()))?;
        *shared.stdin.lock().unwrap_or_else(|e| e.into_inner()) = Some(write);
    }
    let log = Arc::new(Mutex::new(LogWriter::open(&dir, &c.id, &c.host.log)?));
    let mut health = super::health::Checker::new(
        &c,
        &spec,
        dir.try_clone()
            .map_err(|e| Error::io("open the container's directory", e))?,
    );
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
            stdin: c.host.open_stdin.then_some(Stream::Inherit),
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
            state.pause = p.pause.clone();
            state.usage = Some(Arc::clone(&p.usage));
            state.resize = p.resize.clone();
            if let Some(h) = &mut health {
                h.start(p.exec.clone());
            }
            if first {
                ready(Ok(p.pid));
            }
        };
        let outcome = containers.run(&claim, &mut c, &spec, backends, stdio, &mut on_start);
        if let Some(h) = &mut health {
            h.stop();
        }
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
            state.pause = None;
            state.usage = None;
            state.resize = None;
            if state.paused {
                state.paused = false;
                let _ = mark_paused(&shared.dir, false);
            }
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
    let request = serde_json::from_slice::<Request>(&line);
    if let Ok(Request::Attach) = request {
        return attach(conn, shared);
    }
    let reply = match request {
        Ok(Request::Signal { signal }) => kill(shared, signal),
        Ok(Request::Stop { signal, timeout }) => stop(shared, signal, timeout),
        Ok(Request::Wait) => wait(shared),
        Ok(Request::Exec { process, detach }) => exec(shared, *process, detach, fds),
        Ok(Request::Pause { paused }) => pause(shared, paused),
        Ok(Request::Attach) => unreachable!("answered above"),
        Ok(Request::Resize { rows, cols }) => match shared.lock().resize.clone() {
            Some(resize) => match resize(rows, cols) {
                Ok(()) => Reply::default(),
                Err(e) => Reply {
                    error: Some(e.to_string()),
                    ..Reply::default()
                },
            },
            None => Reply {
                error: Some("the container has no terminal".into()),
                ..Reply::default()
            },
        },
        Ok(Request::Usage) => match shared.lock().usage.clone() {
            Some(probe) => Reply {
                usage: Some(probe()),
                ..Reply::default()
            },
            None => not_running(),
        },
        Err(e) => Reply {
            error: Some(format!("bad request: {e}")),
            ..Reply::default()
        },
    };
    let _ = (&conn).write_all(&reply_line(&reply));
}

fn reply_line(reply: &Reply) -> Vec<u8> {
    let mut out = serde_json::to_vec(reply).expect("serialize");
    out.push(b'\n');
    out
}

/// Copy an attacher's stdin frames to the container's stdin until the attacher goes; at
/// the end of its stdin, close the container's if it is `stdin_once`. A container without
/// an open stdin takes none (docker ignores the attacher's, too).
fn attach(conn: UnixStream, shared: &Shared) {
    let writer = shared
        .stdin
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .and_then(|w| w.try_clone().ok());
    if (&conn).write_all(&reply_line(&Reply::default())).is_err() {
        return;
    }
    let Some(writer) = writer else {
        return;
    };
    let mut writer = std::fs::File::from(writer);
    let mut conn = std::io::BufReader::new(&conn);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut len = [0u8; 4];
        if conn.read_exact(&mut len).is_err() {
            return;
        }
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 {
            break;
        }
        let mut left = len;
        while left > 0 {
            let n = left.min(buf.len());
            if conn.read_exact(&mut buf[..n]).is_err() {
                return;
            }
            // A container that closed its stdin takes no more; the frames are still read.
            let _ = writer.write_all(&buf[..n]);
            left -= n;
        }
    }
    if shared.stdin_once {
        drop(writer);
        shared
            .stdin
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }
}

fn not_running() -> Reply {
    failed("is not running")
}

fn failed(error: impl Into<String>) -> Reply {
    Reply {
        error: Some(error.into()),
        ..Reply::default()
    }
}

fn pause(shared: &Shared, paused: bool) -> Reply {
    let mut state = shared.lock();
    if state.signal.is_none() {
        return not_running();
    }
    match (state.paused, paused) {
        (true, true) => return failed("is already paused"),
        (false, false) => return failed("is not paused"),
        _ => {}
    }
    let Some(freeze) = state.pause.clone() else {
        return failed("cannot be paused: it has no cgroup (a rootless container on this host)");
    };
    // Marked before it is frozen and unmarked after it is thawed: a command that reads
    // "running" may rely on it.
    let result = if paused {
        mark_paused(&shared.dir, true).and_then(|()| freeze(true))
    } else {
        freeze(false).and_then(|()| mark_paused(&shared.dir, false))
    };
    match result {
        Ok(()) => {
            state.paused = paused;
            Reply::default()
        }
        Err(e) => {
            let _ = mark_paused(&shared.dir, state.paused);
            failed(e.to_string())
        }
    }
}

/// Make or remove the mark that says the container is paused.
fn mark_paused(dir: &cap_std::fs::Dir, paused: bool) -> Result<()> {
    let result = if paused {
        dir.write(super::PAUSED, b"")
    } else {
        match dir.remove_file(super::PAUSED) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            r => r,
        }
    };
    result.map_err(|e| Error::io("mark the container paused", e))
}

/// A paused container's processes take a SIGKILL only once thawed (cgroup v1), as docker
/// does it: the kill, then the thaw.
fn thaw_after_kill(state: &mut State, dir: &cap_std::fs::Dir) {
    if state.paused {
        if let Some(freeze) = &state.pause {
            if freeze(false).is_ok() {
                state.paused = false;
                let _ = mark_paused(dir, false);
            }
        }
    }
}

fn exec(
    shared: &Shared,
    process: oci_spec::runtime::Process,
    detach: bool,
    fds: Vec<OwnedFd>,
) -> Reply {
    let run = {
        let state = shared.lock();
        if state.paused {
            return failed("is paused");
        }
        state.exec.clone()
    };
    let Some(run) = run else {
        return not_running();
    };
    let ended = |outcome: Result<crate::backend::Exit>| match outcome {
        Ok(exit) => Reply {
            exit: Some(exit.code),
            error: exit.message,
            ..Reply::default()
        },
        Err(e) => Reply {
            exit: Some(e.exit_code()),
            error: Some(e.to_string()),
            ..Reply::default()
        },
    };
    if detach {
        let null = || {
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/null")
                .map(|f| Stream::Fd(f.into()))
        };
        let stdio = match (null(), null()) {
            (Ok(stdout), Ok(stderr)) => Stdio {
                stdin: None,
                stdout,
                stderr,
            },
            (Err(e), _) | (_, Err(e)) => return failed(format!("open /dev/null: {e}")),
        };
        // The answer is sent once it runs, or with why it could not start.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let started = tx.clone();
            let outcome = run(&process, stdio, &mut |_| {
                let _ = started.send(None);
            });
            let _ = tx.send(Some(outcome));
        });
        return match rx.recv() {
            Ok(None) => Reply::default(),
            Ok(Some(outcome)) => ended(outcome),
            Err(_) => failed("exec: its thread ended unannounced"),
        };
    }
    let mut fds = fds.into_iter();
    let (Some(stdout), Some(stderr)) = (fds.next(), fds.next()) else {
        return failed("exec: no stdout and stderr sent");
    };
    let stdio = Stdio {
        // A third descriptor: `-i`, its stdin.
        stdin: fds.next().map(Stream::Fd),
        stdout: Stream::Fd(stdout),
        stderr: Stream::Fd(stderr),
    };
    ended(run(&process, stdio, &mut |_| {}))
}

fn kill(shared: &Shared, signal: i32) -> Reply {
    let mut state = shared.lock();
    let Some(send) = state.signal.clone() else {
        return not_running();
    };
    if signal == 9 || signal == state.stop_signal {
        state.stopped_by_user = true;
    }
    let sent = send(signal);
    if signal == 9 {
        thaw_after_kill(&mut state, &shared.dir);
    }
    match sent {
        Ok(()) => Reply::default(),
        Err(e) => failed(e.to_string()),
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
        thaw_after_kill(&mut state, &shared.dir);
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
