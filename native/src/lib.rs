//! strata-native: the native backend. Runs a container's process in new Linux namespaces
//! (mount, pid, uts, ipc, cgroup, network unless `--network host`; user when the caller is
//! not root) over a kernel overlayfs of the image's unpacked layers and the container's
//! upper layer, with docker's capabilities, seccomp profile, masked paths and /dev.
//!
//! Process model: `strata` forks an intermediate process, which enters the namespaces and
//! forks the container's pid 1 (see `child`). Everything the children do is decided here
//! first (`plan`). This is the only crate with `unsafe`: the system calls that make a
//! container.

mod caps;
mod cgroup;
mod child;
mod failure;
mod idmap;
mod ipc;
mod members;
mod plan;
mod rootfs;
mod seccomp;
mod tty;

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use std::path::PathBuf;

use strata_runtime::backend::{Backend, Exit, NetAttach, Signaller, Started, Stdio, Task};
use strata_runtime::{Error, Result};

use crate::cgroup::{Cgroup, Limits};
use crate::failure::Failure;
use crate::ipc::Message;
use crate::plan::Plan;

/// The Linux namespace backend. `state` is the store's root: the init layer and the mount
/// point all containers share live under it, and overlay options name layers relative to
/// it (the kernel takes one page of them).
#[derive(Debug, Clone)]
pub struct NativeBackend {
    pub state: PathBuf,
}

impl Backend for NativeBackend {
    fn run(
        &self,
        task: &Task<'_>,
        stdio: Stdio,
        started: &mut dyn FnMut(Started) -> Result<()>,
    ) -> Result<Exit> {
        let spec = task.spec;
        let limits = Limits::from_spec(spec.linux().as_ref().and_then(|l| l.resources().as_ref()));
        if limits.any() && !strata_runtime::privilege::privileged() {
            return Err(Error::Unsupported(
                "resource limits (--memory, --cpus, --pids-limit) need root on the host: this host's cgroups cannot be delegated to an unprivileged user".into(),
            ));
        }
        // Only limits make a cgroup before the start (`members.rs` says why).
        let cgroup = if limits.any() {
            Some(Cgroup::create(task.id, &limits)?)
        } else {
            None
        };
        let plan = Plan::new(&self.state, task, &stdio, cgroup.is_some())?;
        let memory_limit = limits.memory.map(|m| m as u64);
        let mut started = |mut process: Started| {
            let (id, init) = (task.id.to_string(), process.pid);
            process.exec = Some(self.executor(task, init));
            // The freezer needs a cgroup we may make: root's.
            if strata_runtime::privilege::privileged() {
                process.pause = Some(Arc::new(move |frozen| members::freeze(&id, init, frozen)));
            }
            process.usage = Arc::new(move || members::usage(init, memory_limit));
            started(process)
        };
        let result = run(&plan, cgroup.as_ref(), task.network, &mut started);
        members::forget(task.id);
        // The child had its own copies of the output fds; ours close now, so a reader of a
        // pipe sees its end once the container's processes are gone.
        drop(stdio);
        let oom_killed = cgroup.as_ref().is_some_and(Cgroup::oom_killed);
        if let Some(c) = &cgroup {
            c.remove();
        }
        let mut exit = result?;
        if oom_killed {
            exit.oom_killed = true;
            exit.message = Some(format!(
                "container {} was killed: out of memory",
                task.id.get(..12).unwrap_or(task.id)
            ));
        }
        Ok(exit)
    }
}

impl NativeBackend {
    /// `exec` into the task whose init is `init`, for whoever holds its `Started` (a
    /// monitor): what `exec` does from outside, the process given, joined through a pidfd
    /// of the init opened now, so that the pid, reused once the container is gone, is never
    /// joined by an `exec` (or a health check) that comes late.
    fn executor(&self, task: &Task<'_>, init: u32) -> strata_runtime::backend::Executor {
        use rustix::process::{pidfd_open, Pid, PidfdFlags};
        let pidfd =
            Pid::from_raw(init as i32).and_then(|p| pidfd_open(p, PidfdFlags::empty()).ok());
        let (backend, id) = (self.clone(), task.id.to_string());
        let (spec, rootfs) = (task.spec.clone(), task.rootfs.clone());
        Arc::new(move |process, stdio, started| {
            let init = pidfd
                .as_ref()
                .ok_or_else(|| Error::Conflict(format!("container {id} is not running")))?;
            let mut spec = spec.clone();
            spec.set_process(Some(process.clone()));
            let task = Task {
                id: &id,
                spec: &spec,
                rootfs: &rootfs,
                network: None,
            };
            backend.exec_in(&task, init.as_fd(), stdio, &mut |p| {
                started(Some(p.signal));
                Ok(())
            })
        })
    }

    /// `exec`: run the process of `task.spec` inside the running container whose init is
    /// `init` (its pid, checked by the caller to be that container's): the same namespaces,
    /// cgroup, capabilities, seccomp filter, no_new_privs, limits and user rules as its
    /// init. Blocks until the process ends.
    pub fn exec(
        &self,
        task: &Task<'_>,
        init: rustix::process::Pid,
        stdio: Stdio,
        started: &mut dyn FnMut(Started) -> Result<()>,
    ) -> Result<Exit> {
        use rustix::process::{pidfd_open, PidfdFlags};
        let pidfd = pidfd_open(init, PidfdFlags::empty())
            .map_err(|_| Error::Conflict(format!("container {} is not running", task.id)))?;
        self.exec_in(task, pidfd.as_fd(), stdio, started)
    }

    /// `exec` into the container whose init is `init` (a pidfd: never a reused pid).
    fn exec_in(
        &self,
        task: &Task<'_>,
        init: std::os::fd::BorrowedFd<'_>,
        stdio: Stdio,
        started: &mut dyn FnMut(Started) -> Result<()>,
    ) -> Result<Exit> {
        use std::os::fd::AsRawFd;
        let cgroup = Cgroup::existing(task.id);
        let mut plan = Plan::new(&self.state, task, &stdio, false)?;
        plan.join = Some(init.as_raw_fd());
        plan.wait_for_parent = cgroup.is_some();
        let result = run(&plan, cgroup.as_ref(), None, started);
        drop(stdio);
        result
    }
}

/// Kills and reaps the intermediate (and so the container) if set-up fails half way.
struct Reaper(i32);

impl Drop for Reaper {
    fn drop(&mut self) {
        if self.0 > 0 {
            // SAFETY: signalling and reaping our own child.
            unsafe {
                libc::kill(self.0, libc::SIGKILL);
                libc::waitpid(self.0, std::ptr::null_mut(), 0);
            }
        }
    }
}

/// Signals the container's init through a pidfd: once it is gone, an error, never another
/// process that got its pid. (A process that has already ended — a quick one, reaped by the
/// intermediate before this runs — can no longer be signalled at all.)
fn signaller(init: i32) -> Signaller {
    use rustix::process::{pidfd_open, pidfd_send_signal, Pid, PidfdFlags, Signal};
    let gone = || Error::Conflict("the container is not running".into());
    let pidfd = Pid::from_raw(init).and_then(|pid| pidfd_open(pid, PidfdFlags::empty()).ok());
    Arc::new(move |sig| {
        let sig = Signal::from_named_raw(sig)
            .ok_or_else(|| Error::InvalidArgument(format!("invalid signal {sig}")))?;
        let pidfd = pidfd.as_ref().ok_or_else(gone)?;
        pidfd_send_signal(pidfd, sig).map_err(|e| match e {
            rustix::io::Errno::SRCH => gone(),
            e => Error::io("signal the container", e.into()),
        })
    })
}

fn run(
    plan: &Plan,
    cgroup: Option<&Cgroup>,
    network: Option<&dyn NetAttach>,
    started: &mut dyn FnMut(Started) -> Result<()>,
) -> Result<Exit> {
    use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};
    let (parent, child) = socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| Error::io("create a socket pair", e.into()))?;
    // Registered before the fork so no signal is lost in between; the intermediate
    // ignores them, the container's init resets them.
    let mut signals = signal_hook::iterator::Signals::new(child::FORWARDED)
        .map_err(|e| Error::io("install signal handlers", e))?;
    // SAFETY: fork; the child only runs the plan and leaves through _exit or exec.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Error::io("fork", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        drop(parent);
        child::intermediate(plan, child);
    }
    drop(child);
    let mut reaper = Reaper(pid);
    let sock = parent.as_fd();
    if plan.wait_for_parent {
        match ipc::recv(sock).map_err(|e| Error::io("read from the container", e))? {
            Some(Message::Ready) => {}
            Some(Message::Failed(f)) => return Err(f.into()),
            other => return Err(ipc::unexpected(other.as_ref(), "ready")),
        }
        // Not for a user namespace it joined (exec, a shared network): that one has its map.
        if let (Some(map), None, None) = (&plan.id_map, plan.join, &plan.join_user) {
            map.write(pid)?;
        }
        if let Some(cg) = cgroup {
            cg.add(pid)?;
        }
        if let (Some(network), true) = (network, plan.attach_network) {
            let path = format!("/proc/{pid}/ns/net");
            let netns =
                std::fs::File::open(&path).map_err(|e| Error::io(format!("open {path}"), e))?;
            network.attach(netns.as_fd())?;
        }
        // A child that died meanwhile has left its failure to read below.
        let _ = ipc::send(sock, &Message::Go);
    }

    let target = Arc::new(AtomicI32::new(0));
    let terminal: Arc<std::sync::Mutex<Option<OwnedFd>>> = Default::default();
    let handle = signals.handle();
    let forwarder = {
        let target = Arc::clone(&target);
        let terminal = Arc::clone(&terminal);
        std::thread::spawn(move || {
            for sig in signals.forever() {
                if sig == libc::SIGWINCH {
                    if let Some(master) = terminal.lock().unwrap().as_ref() {
                        tty::copy_window_size(master);
                    }
                    continue;
                }
                let pid = target.load(Ordering::SeqCst);
                if pid > 0 {
                    // SAFETY: signalling the container's init by its pid.
                    unsafe { libc::kill(pid, sig) };
                }
            }
        })
    };
    let mut failure: Option<Failure> = None;
    // The container's init, reported as started once it has exec'd its program: the
    // socket closes then (close-on-exec), or brings why it could not.
    let mut process = None;
    loop {
        let msg = match ipc::recv(sock) {
            Ok(Some(m)) => m,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                // Closing our end below makes a child that waits for us give up.
                failure.get_or_insert(Failure::other(e.to_string()));
                break;
            }
            // ECONNRESET: the last child died with a Go unread; its status tells why.
            Ok(None) | Err(_) => break,
        };
        match msg {
            Message::Pid(init) => {
                target.store(init, Ordering::SeqCst);
                process = Some(Started {
                    pid: init as u32,
                    signal: signaller(init),
                    exec: None,
                    pause: None,
                    usage: Arc::new(move || members::usage(init as u32, None)),
                    resize: None,
                });
            }
            Message::Tty(master) => {
                // Sized before the program runs: what it first asks is right.
                match plan.console_size {
                    Some((rows, cols)) => {
                        let _ = tty::set_window_size(&master, rows, cols);
                    }
                    None => tty::copy_window_size(&master),
                }
                *terminal.lock().unwrap() = Some(master);
                let _ = ipc::send(sock, &Message::Go);
            }
            Message::Failed(f) => failure = Some(f),
            // Only the parent sends Go; Ready comes before the loop.
            Message::Ready | Message::Go => {}
        }
    }
    drop(parent);
    if let (Some(mut process), None) = (process, &failure) {
        if terminal.lock().unwrap().is_some() {
            let terminal = Arc::clone(&terminal);
            process.resize = Some(Arc::new(move |rows, cols| {
                let terminal = terminal.lock().unwrap();
                let master = terminal
                    .as_ref()
                    .ok_or_else(|| Error::Conflict("the container's terminal is closed".into()))?;
                tty::set_window_size(master, rows, cols)
            }));
        }
        started(process)?;
    }
    let master = terminal
        .lock()
        .unwrap()
        .as_ref()
        .and_then(|m| m.try_clone().ok());
    if let (Some(master), None) = (master, &failure) {
        // SAFETY: the plan's fds stay open until `stdio` is dropped, after this run.
        let out = plan
            .stdout
            .map(|fd| unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) });
        let input = plan.stdin.then(|| match plan.stdin_fd {
            // SAFETY: as `out`.
            Some(fd) => tty::Input::Given(unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }),
            None => tty::Input::Ours,
        });
        tty::relay(master, input, out);
    }
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        if r < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return Err(Error::io(
                "wait for the container",
                std::io::Error::last_os_error(),
            ));
        }
    }
    reaper.0 = 0;
    handle.close();
    let _ = forwarder.join();
    if let Some(f) = failure {
        return Err(f.into());
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    Ok(Exit::code(code))
}
