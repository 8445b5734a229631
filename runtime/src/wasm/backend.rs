//! The wasm backend: a task's spec becomes a guest run on the embedded wasmtime, its root
//! the capability-scoped overlay of the task's layers and upper layer, bind mounts extra
//! overlay mounts. SIGINT/SIGTERM stop the guest through epoch interruption, and end its
//! waits.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use cap_std::fs::Dir;
use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};

use super::http::HttpOptions;
use super::netns::{on_own_thread, GuestNamespaces};
use super::{guestfs, GuestSpec, Interrupt, Outcome, WasmHost};
use crate::backend::{
    ends_process, Backend, Executor, Exit, Signaller, Started, Stdio, Task, Usage,
};
use crate::error::{Error, Result};
use crate::fs::Overlay;

/// Runs WASI guests; needs no privileges. Compiled code is cached in `cache`.
#[derive(Debug, Clone)]
pub struct WasmBackend {
    pub cache: PathBuf,
}

impl Backend for WasmBackend {
    fn run(
        &self,
        task: &Task<'_>,
        stdio: Stdio,
        started: &mut dyn FnMut(Started) -> Result<()>,
    ) -> Result<Exit> {
        let spec = task.spec;
        let wasm = Arc::new(WasmHost::new(&self.cache)?);
        let mut guest = guest_spec(spec)?;
        // On a network: its sockets are endpoints in its own namespace (attached), or, in
        // host-ports mode, the host's with its binds mapped.
        guest.network |= task.network.is_some();
        guest.host_ports = task.network.and_then(|n| n.host_ports()).map(<[_]>::to_vec);
        let root = Arc::new(task.rootfs.overlay()?);
        let mut binds = Vec::new();
        // A tmpfs is an empty private directory for the run's length.
        let mut scratch = Vec::new();
        // On a network, its own hosts and resolv.conf (files, which guest binds are not):
        // for its name lookups.
        let mut name_files = Vec::new();
        for m in spec.mounts().iter().flatten() {
            let target = m.destination().display().to_string();
            if let (Some("bind"), "/etc/hosts" | "/etc/resolv.conf", Some(source)) =
                (m.typ().as_deref(), target.as_str(), m.source())
            {
                if task.network.is_some() && source.is_file() {
                    name_files.push((source.clone(), target));
                    continue;
                }
            }
            let source = match m.typ().as_deref() {
                Some("bind") => m.source().clone().unwrap_or_default(),
                Some("tmpfs") => {
                    let dir = tempfile::tempdir()
                        .map_err(|e| Error::io("create a tmpfs directory", e))?;
                    let path = dir.path().to_path_buf();
                    scratch.push(dir);
                    path
                }
                _ => continue,
            };
            let dir =
                Dir::open_ambient_dir(&source, cap_std::ambient_authority()).map_err(|e| {
                    Error::IoPath {
                        path: source.clone(),
                        source: e,
                    }
                })?;
            // Mount points exist in the container, as docker makes them.
            make_dirs(&root, &target)
                .map_err(|e| Error::io(format!("create mount point {target}"), e))?;
            binds.push(guestfs::Mount {
                guest_path: target,
                overlay: Arc::new(Overlay::new(Vec::new(), dir)),
                read_only: m
                    .options()
                    .as_ref()
                    .is_some_and(|o| o.iter().any(|x| x == "ro")),
            });
        }

        let stop = StopOnSignal::install(wasm.interrupt_handle())?;
        let interrupt = wasm.interrupt_handle();
        // Set by the guest's thread once it is in its namespaces (on a network): an exec's
        // guest joins them.
        let namespaces: Arc<OnceLock<GuestNamespaces>> = Arc::default();
        let exec: Executor = {
            let (wasm, root, binds) = (Arc::clone(&wasm), Arc::clone(&root), binds.clone());
            let (memory, network) = (guest.memory, guest.network);
            let host_ports = guest.host_ports.clone();
            let namespaces = Arc::clone(&namespaces);
            let id = task.id.to_string();
            Arc::new(
                move |process: &Process, stdio: Stdio, started: &mut dyn FnMut(_)| {
                    let mut guest = process_guest(process);
                    guest.memory = memory;
                    guest.network = network;
                    guest.host_ports = host_ports.clone();
                    let run = |started: &mut dyn FnMut(Option<Signaller>) -> Result<()>| {
                        wasm.run(Arc::clone(&root), binds.clone(), &guest, stdio, &mut || {
                            // No signaller: see `Executor`.
                            started(None)
                        })
                    };
                    let mut tell = |s: Option<Signaller>| {
                        started(s);
                        Ok(())
                    };
                    let outcome = match namespaces.get() {
                        None => run(&mut tell),
                        Some(ns) => on_own_thread(|| ns.enter(), run, &mut tell),
                    }?;
                    Ok(exit(outcome, &id, memory))
                },
            )
        };
        let process = {
            let memory_limit = guest.memory;
            let (wasm, exec) = (Arc::clone(&wasm), Arc::clone(&exec));
            move || {
                let interrupt = interrupt.clone();
                let (pauser, probe) = (Arc::clone(&wasm), Arc::clone(&wasm));
                Started {
                    pid: std::process::id(),
                    signal: Arc::new(move |sig| {
                        if ends_process(sig) {
                            interrupt.interrupt(sig);
                        }
                        Ok(())
                    }),
                    exec: Some(Arc::clone(&exec)),
                    pause: Some(Arc::new(move |paused| {
                        pauser.set_paused(paused);
                        Ok(())
                    })),
                    usage: Arc::new(move || {
                        let (memory, guests) = probe.usage();
                        let pid = std::process::id();
                        Usage {
                            // The guests are this process's only work.
                            cpu_ns: process_cpu_ns(),
                            memory,
                            memory_limit,
                            pids: vec![pid; guests as usize],
                            ..Usage::default()
                        }
                    }),
                    // Guests have no terminal.
                    resize: None,
                }
            }
        };
        let outcome = match task.network {
            Some(attach) if guest.host_ports.is_none() => {
                let guest = &guest;
                on_own_thread(
                    || {
                        let ns = GuestNamespaces::enter_new(attach, &name_files)?;
                        let _ = namespaces.set(ns);
                        Ok(())
                    },
                    |started| wasm.run(root, binds, guest, stdio, &mut || started(process())),
                    started,
                )
            }
            _ => wasm.run(root, binds, &guest, stdio, &mut || started(process())),
        };
        drop(scratch);
        drop(stop);
        Ok(exit(outcome?, task.id, guest.memory))
    }
}

/// The CPU time this process has used (user and system, all threads): its guests' work.
#[allow(unsafe_code)]
fn process_cpu_ns() -> u64 {
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    ns(usage.ru_utime) + ns(usage.ru_stime)
}

/// How a guest run ended, as the backend reports it.
fn exit(outcome: Outcome, id: &str, memory: Option<u64>) -> Exit {
    Exit {
        code: outcome.exit_code(),
        oom_killed: outcome == Outcome::OutOfMemory,
        message: match outcome {
            Outcome::Trapped(msg) => Some(msg),
            Outcome::OutOfMemory => Some(format!(
                "container {} ran out of memory (limit {} bytes)",
                id.get(..12).unwrap_or(id),
                memory.unwrap_or(0)
            )),
            _ => None,
        },
    }
}

/// What the guest gets from the spec: args, env, cwd, memory limit, network.
fn guest_spec(spec: &Spec) -> Result<GuestSpec> {
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::InvalidArgument("runtime spec without a process".into()))?;
    let memory = spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
        .and_then(|r| r.memory().as_ref())
        .and_then(|m| m.limit())
        .map(|l| l as u64);
    let mut guest = process_guest(process);
    guest.memory = memory;
    guest.http = Some(http_options(spec)?);
    // Namespaces listed without a network one; a spec that lists none at all gets no
    // network either.
    guest.network = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| ns.iter().all(|n| n.typ() != LinuxNamespaceType::Network));
    Ok(guest)
}

/// A process's args, env and cwd as a guest takes them (no memory limit, no network).
fn process_guest(process: &Process) -> GuestSpec {
    GuestSpec {
        args: process.args().clone().unwrap_or_default(),
        env: process
            .env()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|e| match e.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (e, String::new()),
            })
            .collect(),
        cwd: process.cwd().display().to_string(),
        memory: None,
        network: false,
        host_ports: None,
        http: None,
    }
}

/// How the container's main guest is served if it is a wasi:http handler: the spec's
/// annotations (its exposed and published ports, `--http-*`).
fn http_options(spec: &Spec) -> Result<HttpOptions> {
    use crate::container::{
        Proto, ANNOTATION_EXPOSED_PORTS, ANNOTATION_HTTP_MAX_INSTANCES, ANNOTATION_HTTP_TIMEOUT_MS,
    };
    let annotations = spec.annotations().clone().unwrap_or_default();
    let bad = |key: &str, value: &str| {
        Error::InvalidArgument(format!(
            "runtime spec: annotation {key}={value:?} is invalid"
        ))
    };
    let mut options = HttpOptions::default();
    if let Some(ports) = annotations.get(ANNOTATION_EXPOSED_PORTS) {
        for key in ports.split(',').filter(|p| !p.is_empty()) {
            let mappings = crate::container::parse_publish(key)
                .map_err(|_| bad(ANNOTATION_EXPOSED_PORTS, ports))?;
            for m in mappings.into_iter().filter(|m| m.proto == Proto::Tcp) {
                if !options.ports.contains(&m.container_port) {
                    options.ports.push(m.container_port);
                }
            }
        }
    }
    if let Some(n) = annotations.get(ANNOTATION_HTTP_MAX_INSTANCES) {
        options.max_instances = n
            .parse()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| bad(ANNOTATION_HTTP_MAX_INSTANCES, n))?;
    }
    if let Some(ms) = annotations.get(ANNOTATION_HTTP_TIMEOUT_MS) {
        options.timeout = ms
            .parse()
            .ok()
            .filter(|&ms| ms > 0)
            .map(std::time::Duration::from_millis)
            .ok_or_else(|| bad(ANNOTATION_HTTP_TIMEOUT_MS, ms))?;
    }
    Ok(options)
}

/// SIGINT and SIGTERM stop the guest at its next epoch check, and end the WASI waits
/// (sleep, poll, stdin) at once (`p1/poll.rs`, `blocking.rs`). A guest stuck in another host call
/// (opening a FIFO nobody writes, writing to a full pipe) reaches neither, so the first signal also starts a grace
/// period after which SIGALRM ends the process with 128 + the signal, as the guest would
/// have. No thread: the handlers only do async-signal-safe work (atomics, write, alarm,
/// _exit).
struct StopOnSignal {
    handlers: Vec<signal_hook::SigId>,
}

const GRACE_SECONDS: u32 = 3;

impl StopOnSignal {
    #[allow(unsafe_code)]
    fn install(interrupt: Interrupt) -> Result<StopOnSignal> {
        use signal_hook::consts::{SIGALRM, SIGINT, SIGTERM};
        let mut stop = StopOnSignal {
            handlers: Vec::new(),
        };
        let failed = |e| Error::io("install signal handlers", e);
        for sig in [SIGINT, SIGTERM] {
            let interrupt = interrupt.clone();
            // SAFETY: atomic operations, write(2) and alarm(2) only, all async-signal-safe.
            let id = unsafe {
                signal_hook::low_level::register(sig, move || {
                    if interrupt.interrupt(sig) {
                        libc::alarm(GRACE_SECONDS);
                    }
                })
            }
            .map_err(failed)?;
            stop.handlers.push(id);
        }
        // SAFETY: an atomic load and _exit(2), both async-signal-safe.
        let id = unsafe {
            signal_hook::low_level::register(SIGALRM, move || libc::_exit(128 + interrupt.signal()))
        }
        .map_err(failed)?;
        stop.handlers.push(id);
        Ok(stop)
    }
}

impl Drop for StopOnSignal {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: alarm(2) has no memory effects; 0 cancels a pending grace period.
        unsafe { libc::alarm(0) };
        for id in self.handlers.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

/// `mkdir -p` in the container's root.
fn make_dirs(root: &Overlay<Dir>, path: &str) -> std::io::Result<()> {
    let mut at = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        at.push('/');
        at.push_str(part);
        match root.create_dir(std::ffi::OsStr::new(&at), 0o755) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            r => r?,
        }
    }
    Ok(())
}
