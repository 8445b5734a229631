//! The backend seam: every way a container runs (`run`, a build's RUN step, later a
//! monitor or a shim) hands a backend a [`Task`] — the OCI runtime `Spec`, the root as data
//! and the process's stdio — and gets back how the process ended. A backend never opens
//! container records or the store's index: what it runs is in the task, nothing else.
//!
//! Two backends implement it: `strata_native::NativeBackend` (namespaces over kernel
//! overlayfs) and `wasm::WasmBackend` (wasmtime over the capability-scoped overlay).
//! [`choose`] is the one rule for which one an image runs on.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;

use cap_std::fs::Dir;
use oci_spec::runtime::Spec;

use crate::error::Result;

/// How a container's process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// The status docker would report: the process's exit code, or 128+signal.
    pub code: i32,
    /// The kernel (or the Wasm memory limit) stopped it for lack of memory.
    pub oom_killed: bool,
    /// One line to show the user beside the status (a Wasm trap, an OOM note).
    pub message: Option<String>,
}

impl Exit {
    pub fn code(code: i32) -> Exit {
        Exit {
            code,
            oom_killed: false,
            message: None,
        }
    }
}

/// A container's root filesystem, as data: the image's unpacked layers under one writable
/// layer. Native mounts them with overlayfs; Wasm serves them with `runtime::fs`.
#[derive(Debug, Clone)]
pub struct Rootfs {
    /// The image's unpacked layer directories, topmost first.
    pub lowers: Vec<PathBuf>,
    /// The container's writable layer.
    pub upper: PathBuf,
    /// A directory on the upper layer's filesystem, for the backend alone while the
    /// container runs (overlayfs's work directory); made if missing.
    pub work: PathBuf,
    /// The upper layer is thrown away or turned into a layer when the run ends (`--rm`, a
    /// build step), so its writes need not reach the disk before that: overlayfs may skip
    /// syncing (`volatile`; unmounting a synced overlay syncs the whole host filesystem).
    pub volatile: bool,
}

impl Rootfs {
    /// The union view of the root, for a backend that serves it in user space.
    pub fn overlay(&self) -> Result<crate::fs::Overlay<Dir>> {
        let open = |p: &PathBuf| {
            Dir::open_ambient_dir(p, cap_std::ambient_authority()).map_err(|e| {
                crate::error::Error::IoPath {
                    path: p.clone(),
                    source: e,
                }
            })
        };
        let lowers = self.lowers.iter().map(open).collect::<Result<Vec<_>>>()?;
        Ok(crate::fs::Overlay::new(lowers, open(&self.upper)?))
    }
}

/// Where a standard stream goes.
#[derive(Debug, Default)]
pub enum Stream {
    /// The caller's own (its terminal, say).
    #[default]
    Inherit,
    /// This file descriptor (a pipe, a log file).
    Fd(OwnedFd),
}

/// The process's standard streams.
#[derive(Debug, Default)]
pub struct Stdio {
    /// Where its stdin comes from (`-i`: the caller's, or a descriptor given); none, an
    /// empty stdin.
    pub stdin: Option<Stream>,
    pub stdout: Stream,
    pub stderr: Stream,
}

/// What a backend runs.
pub struct Task<'a> {
    /// The container's id: names it in messages and in host resources (cgroups).
    pub id: &'a str,
    pub spec: &'a Spec,
    pub rootfs: &'a Rootfs,
    /// What joins the task's own network namespace (its spec has one) to a network, once
    /// the backend has made it and before the program starts; none: it keeps loopback only.
    pub network: Option<&'a dyn NetAttach>,
}

/// Joins a network namespace to a network (a veth on its bridge, an address, a route):
/// called by a backend with the namespace it made for a task (native: the intermediate's,
/// before it forks the container's init; Wasm: the guest thread's). An error fails the run
/// before its program starts.
pub trait NetAttach: Sync {
    fn attach(&self, netns: std::os::fd::BorrowedFd<'_>) -> Result<()>;

    /// Host-ports mode (a Wasm guest without privileges): no namespace to attach; the
    /// guest's binds of these published container ports are made on their host ports.
    fn host_ports(&self) -> Option<&[crate::container::PortMapping]> {
        None
    }
}

/// Sends a signal to a started task's process, from any thread, for as long as the run
/// lasts: native, to the container's init through a pidfd (never a pid the kernel reused);
/// Wasm, whose guests have no handlers, a signal whose default action ends a process stops
/// the guest with 128+signal and the others are ignored. Fails once the process is gone.
pub type Signaller = Arc<dyn Fn(i32) -> Result<()> + Send + Sync>;

/// Runs another process in a started task (`exec`, a health check) and waits for it,
/// calling `started` once it runs (an error before that: it could not start) with a way to
/// signal it where the backend has one (a health check past its timeout is killed). Native:
/// a process joining the container's namespaces and cgroup (`NativeBackend::exec`), and its
/// signaller; Wasm: a second guest on the same overlay instance, mounts and host as the
/// running one, and none (a guest cannot be stopped apart from the others in its process:
/// their epoch and stop signals are shared).
pub type Executor = Arc<
    dyn Fn(&oci_spec::runtime::Process, Stdio, &mut dyn FnMut(Option<Signaller>)) -> Result<Exit>
        + Send
        + Sync,
>;

/// Freezes (`true`) or thaws (`false`) everything a started task runs, its `exec`s too,
/// returning once it is done: native, through the cgroup freezer; Wasm, its guests wait
/// at their next epoch check (a guest in a host call, a sleep say, stops when it returns).
pub type Pauser = Arc<dyn Fn(bool) -> Result<()> + Send + Sync>;

/// What a started task uses now (`stats`, `top`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    /// CPU time used since it started, in nanoseconds.
    pub cpu_ns: u64,
    /// Memory in use, in bytes (native: the cgroup's, less the page cache the kernel can
    /// drop, as docker counts it; Wasm: its guests' linear memories).
    pub memory: u64,
    /// Its memory limit, if it has one.
    pub memory_limit: Option<u64>,
    /// The host processes it runs in (native: those of its cgroup; Wasm: the one hosting
    /// its guests, once per guest).
    pub pids: Vec<u32>,
    /// Bytes received and sent on its network interfaces (loopback aside).
    pub net_rx: u64,
    pub net_tx: u64,
    /// Bytes read from and written to block devices.
    pub block_read: u64,
    pub block_write: u64,
}

/// Sets the size (rows, columns) of a started task's terminal, from any thread.
pub type Resizer = Arc<dyn Fn(u16, u16) -> Result<()> + Send + Sync>;

/// Reads a started task's [`Usage`], from any thread, while the run lasts.
pub type UsageProbe = Arc<dyn Fn() -> Usage + Send + Sync>;

/// A task's process, once it runs.
pub struct Started {
    /// Its process id (for an in-process backend, the host process's own).
    pub pid: u32,
    pub signal: Signaller,
    pub exec: Option<Executor>,
    /// None where the backend cannot (native without cgroups: rootless).
    pub pause: Option<Pauser>,
    pub usage: UsageProbe,
    /// Its terminal's size, for a task with one (`-t`; none on the Wasm backend).
    pub resize: Option<Resizer>,
}

/// A backend. `run` blocks until the process ends; signals the caller receives (SIGINT,
/// SIGTERM, …) go to the container while it runs. `started` is called once the process
/// runs, so that a record can say which it is and a monitor can signal it.
pub trait Backend: Sync {
    fn run(
        &self,
        task: &Task<'_>,
        stdio: Stdio,
        started: &mut dyn FnMut(Started) -> Result<()>,
    ) -> Result<Exit>;
}

/// Whether a signal's default action ends the process (what it does to a Wasm guest).
pub fn ends_process(signal: i32) -> bool {
    use rustix::process::Signal as S;
    let harmless = [
        S::CHILD,
        S::CONT,
        S::URG,
        S::WINCH,
        S::STOP,
        S::TSTP,
        S::TTIN,
        S::TTOU,
    ];
    (1..=64).contains(&signal) && !harmless.iter().any(|s| s.as_raw() == signal)
}

/// Which backend runs a container (its record's `runtime`, `--runtime`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Wasm,
    Native,
}

impl Kind {
    pub fn parse(s: &str) -> Result<Kind> {
        match s {
            "wasm" => Ok(Kind::Wasm),
            "native" => Ok(Kind::Native),
            other => Err(crate::error::Error::InvalidArgument(format!(
                "unknown runtime {other:?} (wasm, native)"
            ))),
        }
    }
}

/// The backends a caller can pick from, by kind, and what puts their containers on
/// networks (none: a container asking for one fails; a build's RUN steps).
#[derive(Clone, Copy)]
pub struct Backends<'a> {
    pub native: &'a dyn Backend,
    pub wasm: &'a dyn Backend,
    pub network: Option<&'a dyn crate::container::Networking>,
}

impl<'a> Backends<'a> {
    pub fn get(&self, kind: Kind) -> &'a dyn Backend {
        match kind {
            Kind::Native => self.native,
            Kind::Wasm => self.wasm,
        }
    }
}

/// The one rule for which backend an image runs on: Wasm when its config says so
/// (platform `wasi/wasm`, or the Wasm artifact config type: `wasm_image`), or when its
/// program (`args[0]`, found in `root`) starts with the Wasm magic; native otherwise (ELF,
/// `#!`, or nothing to look at).
pub fn choose(wasm_image: bool, root: &crate::fs::Overlay<Dir>, args: &[String]) -> Kind {
    use std::io::Read;
    if wasm_image {
        return Kind::Wasm;
    }
    let Some(program) = args.first() else {
        return Kind::Native;
    };
    let mut head = [0u8; 4];
    // `open_read` takes regular files only: an image's FIFO there must not block the create.
    match root.open_read(std::ffi::OsStr::new(program)) {
        Ok((mut f, _)) => match f.read_exact(&mut head) {
            Ok(()) if &head == WASM_MAGIC => Kind::Wasm,
            _ => Kind::Native,
        },
        Err(_) => Kind::Native,
    }
}

/// Whether an image's config says it is Wasm: platform `wasi/wasm` (or os wasip1/wasip2),
/// or the Wasm artifact config type.
pub fn wasm_image(image: &crate::store::Image) -> bool {
    image.config.platform().is_wasm()
        || image.manifest.config.media_type == crate::image::MEDIA_WASM_CONFIG
}

/// The first bytes of every Wasm binary (module or component).
pub const WASM_MAGIC: &[u8; 4] = b"\0asm";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choose_reads_only_a_regular_program() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("guest"), b"\0asm\x01\0\0\0").unwrap();
        std::fs::write(tmp.path().join("elf"), b"\x7fELF").unwrap();
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            tmp.path().join("fifo"),
            rustix::fs::Mode::from_raw_mode(0o644),
        )
        .unwrap();
        let upper = Dir::open_ambient_dir(tmp.path(), cap_std::ambient_authority()).unwrap();
        let root = crate::fs::Overlay::new(Vec::new(), upper);
        let kind = |p: &str| choose(false, &root, &[p.to_string()]);
        assert_eq!(kind("/guest"), Kind::Wasm);
        assert_eq!(kind("/elf"), Kind::Native);
        // Opening a FIFO nobody writes would block the create.
        assert_eq!(kind("/fifo"), Kind::Native);
        assert_eq!(kind("/missing"), Kind::Native);
    }
}
