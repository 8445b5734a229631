//! The wasmtime backend: runs WASI preview 2 components, and preview 1 modules natively
//! (`p1.rs`), with the container's root served from `runtime::fs` (no privileges needed).
//!
//! Start-up: compiled code is cached on disk under `cache/wasm/`, keyed by the module's
//! digest and the engine's compatibility hash; later runs deserialize (mmap) it. Stop: a
//! signal bumps the engine's epoch and the guest traps at its next epoch check; a guest
//! waiting in WASI has its wait cut short (`p1/poll.rs`, `blocking.rs`) and traps the same way.

mod backend;
mod blocking;
mod control;
pub mod guestfs;
mod host_ports;
mod http;
mod link;
mod netns;
mod p1;
mod p2;

pub use backend::WasmBackend;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use cap_std::fs::Dir;
use wasmtime::component::{Component, ResourceTable};
use wasmtime::{Config, Engine, Module, Store, StoreLimitsBuilder, Trap, UpdateDeadline};
use wasmtime_wasi::p2::bindings::sync::CommandPre;
use wasmtime_wasi::{I32Exit, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::backend::Stream;
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::fs::{Overlay, Stat};
use control::{Control, GuestLimits};

/// What a guest's store holds.
pub struct WasmState {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub fs: guestfs::GuestFs,
    pub limits: GuestLimits,
    /// Ends wasi:io's blocking calls on a stop signal.
    pub stop: blocking::Stop,
    /// Host-ports mode: the published ports its TCP binds are mapped by.
    pub host_ports: std::sync::Arc<[crate::container::PortMapping]>,
    /// wasi:http's context, and what its outgoing requests may reach.
    pub http: wasmtime_wasi_http::WasiHttpCtx,
    pub http_hooks: http::Hooks,
}

impl wasmtime_wasi_http::WasiHttpView for WasmState {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.http_hooks,
        }
    }
}

impl WasiView for WasmState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// How every engine is configured: components, and stops (and request deadlines) by epoch.
/// Instances are allocated on demand: a `strata run` process holds one, and the pooling
/// allocator measured 0.15-0.2 ms slower per start (it reserves its slots first); a served
/// handler's engine pools (`http.rs`).
fn engine_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config
}

/// The store cache (`Store::cache_dir`) that holds compiled code.
pub const CACHE: &str = "wasm";

/// Changes when how programs are compiled changes, so cached code is rebuilt.
const CACHE_FORMAT: &str = "strata-2 (p1 modules native)";

/// Cache file names: a core module's artifact, and (any other `.cwasm`) a component's.
const MODULE_SUFFIX: &str = ".module.cwasm";
const COMPONENT_SUFFIX: &str = ".cwasm";

/// A compiled guest.
enum Program {
    /// A preview 2 component.
    Component(Component),
    /// A preview 1 core module.
    Module(Module),
}

/// The first bytes of every Wasm binary.
pub use crate::backend::WASM_MAGIC;

/// How a guest run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The guest exited with this status.
    Exited(i32),
    /// Stopped by this signal (SIGINT, SIGTERM) through epoch interruption.
    Interrupted(i32),
    /// It tried to grow memory past `--memory`.
    OutOfMemory,
    /// A trap: one line saying what and where.
    Trapped(String),
}

impl Outcome {
    /// The status `strata run` exits with, as docker would report it.
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Exited(c) => *c,
            Outcome::Interrupted(sig) => 128 + sig,
            Outcome::OutOfMemory => 137,
            Outcome::Trapped(_) => 134,
        }
    }
}

/// A handle that stops a running guest from another thread (a signal handler's).
#[derive(Clone)]
pub struct Interrupt {
    engine: Engine,
    signal: Arc<AtomicI32>,
    killed: Arc<AtomicI32>,
}

impl Interrupt {
    /// Stop the guest because of `signal`; true for the first signal. Async-signal-safe:
    /// atomics and write(2) only.
    pub fn interrupt(&self, signal: i32) -> bool {
        let first = self
            .signal
            .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok();
        if signal == libc::SIGKILL {
            // A served handler drains on the first signal; a kill ends its requests.
            self.killed.store(signal, Ordering::SeqCst);
        }
        self.engine.increment_epoch();
        blocking::wake();
        first
    }

    /// The first signal that stopped the guest (0 if none).
    pub fn signal(&self) -> i32 {
        self.signal.load(Ordering::SeqCst)
    }
}

/// Everything a guest run needs.
#[derive(Clone)]
pub struct GuestSpec {
    /// argv, argv[0] being the module's path in the container.
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: String,
    pub memory: Option<u64>,
    /// wasi:sockets may reach the network of the thread it runs on: the host's (`--network
    /// host`) or its own on a network (else no address at all).
    pub network: bool,
    /// Host-ports mode (no privileges, the host's network): binds of these published
    /// container ports are made on their host ports, other binds on loopback.
    pub host_ports: Option<Vec<crate::container::PortMapping>>,
    /// A container's main guest, when it is a wasi:http handler: how it is served (an
    /// `exec` has none: a handler is not a command).
    pub http: Option<http::HttpOptions>,
}

/// The wasmtime host: the engine and its compile cache; one per process.
pub struct WasmHost {
    engine: Engine,
    /// The engine's compatibility hash: part of every cache key.
    engine_hash: u64,
    cache: PathBuf,
    signal: Arc<AtomicI32>,
    /// SIGKILL came (9): see [`Interrupt::interrupt`].
    killed: Arc<AtomicI32>,
    /// Stop signals write to it; waits watch it (`blocking.rs`).
    wake: std::os::fd::BorrowedFd<'static>,
    control: Arc<Control>,
}

impl WasmHost {
    /// `cache` is a private directory for compiled code.
    pub fn new(cache: &Path) -> Result<WasmHost> {
        let engine = Engine::new(&engine_config())
            .map_err(|e| Error::Unsupported(format!("wasmtime: {e}")))?;
        let engine_hash = {
            use std::hash::{Hash, Hasher};
            let mut h = std::hash::DefaultHasher::new();
            engine.precompile_compatibility_hash().hash(&mut h);
            h.finish()
        };
        Ok(WasmHost {
            engine,
            engine_hash,
            cache: cache.to_path_buf(),
            signal: Arc::new(AtomicI32::new(0)),
            killed: Arc::new(AtomicI32::new(0)),
            wake: blocking::arm()?,
            control: Arc::default(),
        })
    }

    /// `pause` (`true`) or resume every guest of this host: each waits at its next epoch
    /// check, which moving the epoch brings at once to a guest running Wasm code.
    pub fn set_paused(&self, paused: bool) {
        self.control.set_paused(paused);
        if paused {
            self.engine.increment_epoch();
        }
    }

    /// What this host's guests use: their linear memory, and how many run.
    pub fn usage(&self) -> (u64, u64) {
        (self.control.memory(), self.control.guests())
    }

    pub fn interrupt_handle(&self) -> Interrupt {
        Interrupt {
            engine: self.engine.clone(),
            signal: Arc::clone(&self.signal),
            killed: Arc::clone(&self.killed),
        }
    }

    /// The compiled program in `file` (a component, or a preview 1 module), from the cache
    /// when it is there.
    ///
    /// The cache is keyed by the module's digest. A file from a lower layer never changes,
    /// so its identity (device, inode, size, times) also names a link to its cached code
    /// (`file-<hash>`): later starts neither read nor hash the module. `lower` is the
    /// file's stat when it is a lower layer's.
    fn program(&self, file: File, lower: Option<&Stat>) -> Result<Program> {
        let memo = lower.map(|st| self.memo_name(st));
        if let Some(memo) = &memo {
            // The link's target names the artifact, and so says which kind it is.
            if let Ok(target) = std::fs::read_link(self.cache.join(memo)) {
                if let Ok(p) = deserialize(&self.engine, &self.cache.join(target)) {
                    return Ok(p);
                }
            }
        }
        let wasm = read_module(file)?;
        let name = self.cache_name(&wasm);
        let program = match deserialize(&self.engine, &self.cache.join(&name)) {
            Ok(p) => p,
            Err(_) => self.compile(&wasm, &name)?,
        };
        if let Some(memo) = memo {
            // Best effort, as the cache itself: made aside and renamed over a stale link.
            let tmp = self.cache.join(crate::content::temp_name(".link"));
            if std::os::unix::fs::symlink(&name, &tmp).is_ok()
                && std::fs::rename(&tmp, self.cache.join(memo)).is_err()
            {
                let _ = std::fs::remove_file(&tmp);
            }
        }
        Ok(program)
    }

    /// `<digest of module, engine and cache format>.cwasm`, `.module.cwasm` for a core
    /// module: the name says which kind of artifact the file holds.
    fn cache_name(&self, wasm: &[u8]) -> String {
        let k = format!(
            "{} {:x} {}",
            Digest::of(wasm),
            self.engine_hash,
            CACHE_FORMAT
        );
        let kind = if wasmparser::Parser::is_core_wasm(wasm) {
            MODULE_SUFFIX
        } else {
            COMPONENT_SUFFIX
        };
        format!("{}{kind}", Digest::of(k.as_bytes()).hex())
    }

    /// `file-<hash of the file's identity (its stat `st`), engine and cache format>`.
    fn memo_name(&self, st: &Stat) -> String {
        let k = format!(
            "{} {} {} {}.{} {}.{} {:x} {}",
            st.st_dev,
            st.st_ino,
            st.st_size,
            st.st_mtime,
            st.st_mtime_nsec,
            st.st_ctime,
            st.st_ctime_nsec,
            self.engine_hash,
            CACHE_FORMAT
        );
        format!("file-{}", Digest::of(k.as_bytes()).hex())
    }

    /// Compile, and write the result to the cache as `name` (the cache is made on the first
    /// compile, so a start that finds its code made nothing).
    fn compile(&self, wasm: &[u8], name: &str) -> Result<Program> {
        let invalid = |e: wasmtime::Error| Error::InvalidArgument(format!("invalid wasm: {e:#}"));
        let (program, serialized) = if wasmparser::Parser::is_core_wasm(wasm) {
            let m = Module::new(&self.engine, wasm).map_err(invalid)?;
            let bytes = m.serialize();
            (Program::Module(m), bytes)
        } else {
            let c = Component::new(&self.engine, wasm).map_err(invalid)?;
            let bytes = c.serialize();
            (Program::Component(c), bytes)
        };
        // Best effort: a failed cache write only costs the next start a compile.
        let cache = std::fs::create_dir_all(&self.cache)
            .and_then(|()| Dir::open_ambient_dir(&self.cache, cap_std::ambient_authority()));
        if let (Ok(serialized), Ok(cache)) = (serialized, cache) {
            let _ = crate::store::write_atomic(&cache, name, &serialized, false);
        }
        Ok(program)
    }

    /// Run the guest at `spec.args[0]` in `root`, with extra `binds`.
    pub fn run(
        &self,
        root: Arc<Overlay<Dir>>,
        binds: Vec<guestfs::Mount>,
        spec: &GuestSpec,
        stdio: crate::backend::Stdio,
        started: &mut dyn FnMut() -> Result<()>,
    ) -> Result<Outcome> {
        let program = spec
            .args
            .first()
            .ok_or_else(|| Error::InvalidArgument("no command specified".into()))?;
        let (file, lower) = open_program(&root, program, &spec.cwd)?;
        let compiled = self.program(file, lower.as_ref()).map_err(|e| match e {
            Error::NotExecutable(msg) => Error::NotExecutable(format!("exec: {program:?}: {msg}")),
            e => e,
        })?;
        let mut mounts = vec![guestfs::Mount {
            guest_path: "/".into(),
            overlay: root,
            read_only: false,
        }];
        mounts.extend(binds);
        if let Program::Component(c) = &compiled {
            if http::is_handler(&self.engine, c) {
                return self.serve(program, c, spec, mounts, stdio, started);
            }
        }
        // Found and compiled: what `exec` would have checked.
        let _running = self.control.running();
        started()?;

        let mut wasi = wasi_builder(spec);
        // Preview 1 stdio is ours (`p1::HostStdio`); these serve components.
        let file = |fd: &std::os::fd::OwnedFd| {
            fd.try_clone()
                .map(|fd| wasmtime_wasi::cli::OutputFile::new(File::from(fd)))
                .map_err(|e| Error::io("duplicate an output stream", e))
        };
        let crate::backend::Stdio {
            stdin,
            stdout,
            stderr,
        } = stdio;
        match &stdout {
            Stream::Inherit => wasi.inherit_stdout(),
            Stream::Fd(fd) => wasi.stdout(file(fd)?),
        };
        match &stderr {
            Stream::Inherit => wasi.inherit_stderr(),
            Stream::Fd(fd) => wasi.stderr(file(fd)?),
        };
        let reads_stdin = stdin.is_some();
        match &stdin {
            None => {}
            Some(Stream::Inherit) => {
                wasi.inherit_stdin();
            }
            Some(Stream::Fd(fd)) => {
                let fd = fd
                    .try_clone()
                    .map_err(|e| Error::io("duplicate the stdin stream", e))?;
                wasi.stdin(wasmtime_wasi::cli::InputFile::new(File::from(fd)));
            }
        }
        let host_stdio = p1::HostStdio::new(stdin, stdout, stderr);
        let fs = guestfs::GuestFs::new(mounts);
        let mut limits = StoreLimitsBuilder::new().trap_on_grow_failure(true);
        if let Some(m) = spec.memory {
            limits = limits.memory_size(m as usize);
        }
        let limits = GuestLimits::new(limits.build(), &self.control);

        let result = match compiled {
            Program::Component(c) => {
                // wasmtime-wasi's synchronous bindings run host futures (every stdio write)
                // on the thread's Tokio runtime when there is one, else on a global one with
                // a worker per CPU (counted by reading cgroup files). One worker serves one
                // guest and starts faster. (Preview 1 stdio is ours and needs none.)
                let tokio = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .map_err(|e| Error::io("start the I/O runtime", e))?;
                let entered = tokio.enter();
                let result = self.run_component(program, &c, wasi, fs, limits, spec);
                drop(entered);
                // Its worker only waits for work: do not wait for it to stop.
                tokio.shutdown_background();
                result
            }
            Program::Module(m) => {
                self.run_module(program, &m, wasi, fs, reads_stdin, host_stdio, limits)
            }
        };
        Ok(match result? {
            Ok(code) => Outcome::Exited(code),
            Err(e) => self.classify(e, spec.memory),
        })
    }

    /// A preview 2 command: its exit status, or what stopped it.
    fn run_component(
        &self,
        program: &str,
        component: &Component,
        mut wasi: WasiCtxBuilder,
        fs: guestfs::GuestFs,
        limits: GuestLimits,
        spec: &GuestSpec,
    ) -> Result<wasmtime::Result<i32>> {
        let linker = link::linker_for(&self.engine, component, spec.host_ports.is_some())
            .map_err(wasm_err)?;
        let pre = CommandPre::new(
            linker
                .instantiate_pre(component)
                .map_err(|e| Error::InvalidArgument(format!("{program}: {e:#}")))?,
        )
        .map_err(|e| {
            Error::InvalidArgument(format!(
                "{program}: neither a WASI command nor a wasi:http handler \
                 (it exports neither wasi:cli/run nor wasi:http/incoming-handler): {e:#}"
            ))
        })?;
        let mut store = self.store(WasmState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            fs,
            limits,
            stop: blocking::Stop::new(self.wake)?,
            host_ports: spec.host_ports.clone().unwrap_or_default().into(),
            http: wasmtime_wasi_http::WasiHttpCtx::new(),
            http_hooks: http::Hooks::for_guest(spec),
        });
        store.limiter(|s| &mut s.limits);
        Ok(pre
            .instantiate(&mut store)
            .and_then(|cmd| cmd.wasi_cli_run().call_run(&mut store))
            .map(|r| if r.is_ok() { 0 } else { 1 }))
    }

    /// A preview 1 command module (`_start`): its exit status, or what stopped it.
    fn run_module(
        &self,
        program: &str,
        module: &Module,
        mut wasi: WasiCtxBuilder,
        fs: guestfs::GuestFs,
        stdin: bool,
        stdio: p1::HostStdio,
        limits: GuestLimits,
    ) -> Result<wasmtime::Result<i32>> {
        let clock = p1::GuestClock::new();
        let mut store = self.store(p1::P1State {
            wasi: wasi.monotonic_clock(clock).build_p1(),
            files: p1::Files::new(
                fs,
                stdin,
                stdio,
                self.wake,
                Arc::clone(&self.signal),
                &clock,
            ),
            limits,
        });
        store.limiter(|s| &mut s.limits);
        let mut linker = wasmtime::Linker::new(&self.engine);
        p1::add_to_linker(&mut linker).map_err(wasm_err)?;
        let pre = linker
            .instantiate_pre(module)
            .map_err(|e| Error::InvalidArgument(format!("{program}: {e:#}")))?;
        if module.get_export("_start").is_none() {
            return Err(Error::InvalidArgument(format!(
                "{program}: not a WASI command: no _start"
            )));
        }
        Ok(pre
            .instantiate(&mut store)
            .and_then(|i| i.get_typed_func::<(), ()>(&mut store, "_start"))
            .and_then(|start| start.call(&mut store, ()))
            .map(|()| 0))
    }

    /// A store that checks at its next epoch check once the engine's epoch moves (or has
    /// moved, for a stop signal): it stops there for a stop signal, and waits there while
    /// the host is paused.
    fn store<T: 'static>(&self, state: T) -> Store<T> {
        let mut store = Store::new(&self.engine, state);
        store.set_epoch_deadline(1);
        // The deadline counts from the epoch now: a signal that already moved it (the
        // handler records the signal first) stops the guest at its first check.
        if self.signal.load(Ordering::SeqCst) != 0 {
            store.set_epoch_deadline(0);
        }
        let (control, signal) = (Arc::clone(&self.control), Arc::clone(&self.signal));
        store.epoch_deadline_callback(move |_| {
            control.wait_while_paused(&signal);
            Ok(if signal.load(Ordering::SeqCst) != 0 {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Continue(1)
            })
        });
        store
    }

    fn classify(&self, e: wasmtime::Error, memory: Option<u64>) -> Outcome {
        classify(e, memory, self.signal.load(Ordering::SeqCst))
    }
}

/// How a guest's error ended its run; `signal`: the stop signal that came, if any (0).
fn classify(e: wasmtime::Error, memory: Option<u64>, signal: i32) -> Outcome {
    if let Some(exit) = e.downcast_ref::<I32Exit>() {
        return Outcome::Exited(exit.0);
    }
    if let Some(Trap::Interrupt) = e.downcast_ref::<Trap>() {
        return Outcome::Interrupted(if signal == 0 { 15 } else { signal });
    }
    // The limiter's refusal is in the error's chain of causes.
    let text = format!("{e:?}");
    if memory.is_some()
        && (text.contains("forcing trap when growing memory")
            || text.contains("forcing a memory growth failure"))
    {
        return Outcome::OutOfMemory;
    }
    let trap = e.downcast_ref::<Trap>().map(|t| t.to_string());
    // The innermost frame: its name when the module kept names, else its index.
    let function = e.downcast_ref::<wasmtime::WasmBacktrace>().and_then(|bt| {
        bt.frames().first().map(|f| match f.func_name() {
            Some(name) => name.to_string(),
            None => format!("function #{}", f.func_index()),
        })
    });
    let trap = trap.map(|t| t.trim_start_matches("wasm trap: ").to_string());
    Outcome::Trapped(match (trap, function) {
        (Some(t), Some(f)) => format!("wasm trap in {f}: {t}"),
        (Some(t), None) => format!("wasm trap: {t}"),
        (None, _) => format!("{e:#}")
            .lines()
            .next()
            .unwrap_or("wasm error")
            .to_string(),
    })
}

/// wasi's context for a guest of `spec`, but for its stdio: args, env, and the network its
/// sockets may use.
fn wasi_builder(spec: &GuestSpec) -> WasiCtxBuilder {
    let mut wasi = WasiCtxBuilder::new();
    wasi.args(&spec.args).envs(&spec.env);
    if spec.network {
        wasi.inherit_network()
            .allow_tcp(true)
            .allow_udp(true)
            .allow_ip_name_lookup(true);
        if spec.host_ports.is_some() {
            // On the host's own network, its loopback is the host's: no connection to
            // it, as pasta's `-T none` refuses a rootless native container one. (UDP is
            // not filtered: a datagram cannot tell a reply to a client on loopback from
            // a first message.)
            wasi.socket_addr_check(|addr, use_| {
                let refused = matches!(use_, wasmtime_wasi::sockets::SocketAddrUse::TcpConnect)
                    && reaches_host(addr.ip());
                Box::pin(async move { !refused })
            });
        }
    }
    wasi
}

/// Whether a connection to `ip` reaches the host itself: its loopback, or the unspecified
/// address (a connect to 0.0.0.0 lands there). What host-ports mode keeps a guest from.
fn reaches_host(ip: std::net::IpAddr) -> bool {
    let ip = ip.to_canonical();
    ip.is_loopback() || ip.is_unspecified()
}

/// Prune the compile cache `cache`: every artifact and link with `all`, else only links
/// whose artifact is gone. Returns how many entries went. A running guest keeps its mapping.
pub fn prune_cache(cache: &Dir, all: bool) -> Result<usize> {
    let mut removed = 0;
    for entry in cache
        .entries()
        .context(|| "list the compile cache".into())?
        .flatten()
    {
        let name = entry.file_name();
        // A link's artifact is a name in the same directory, so the handle resolves it.
        let dangling =
            entry.file_type().is_ok_and(|t| t.is_symlink()) && cache.metadata(&name).is_err();
        if (all || dangling) && cache.remove_file(&name).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

/// Open the program named by argv[0]: a path in the container (relative to `cwd`); with
/// its stat when it is a lower layer's (unchanging) file.
fn open_program(root: &Overlay<Dir>, program: &str, cwd: &str) -> Result<(File, Option<Stat>)> {
    let path = if program.starts_with('/') {
        program.to_string()
    } else {
        format!("{}/{program}", cwd.trim_end_matches('/'))
    };
    // As docker: a program that is missing exits 127, one that is there but cannot be run
    // (a directory, a device, unreadable) 126.
    root.open_read(std::ffi::OsStr::new(&path))
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                Error::ProgramNotFound(format!("exec: {program:?}: {e}"))
            }
            _ => Error::NotExecutable(format!("exec: {program:?}: {e}")),
        })
}

/// The whole module; it must start with the Wasm magic.
fn read_module(mut file: File) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut file, &mut bytes).context(|| "read the program".into())?;
    if !bytes.starts_with(WASM_MAGIC) {
        return Err(Error::NotExecutable("not a WebAssembly binary".into()));
    }
    Ok(bytes)
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, path: &Path) -> wasmtime::Result<Program> {
    // SAFETY: the file was written by `Module::serialize` or `Component::serialize` of this
    // engine configuration into the store's private (0700) cache, and its name includes the
    // engine's compatibility hash; wasmtime also checks the header (kind included) before use.
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    if name.ends_with(MODULE_SUFFIX) {
        Ok(Program::Module(unsafe {
            Module::deserialize_file(engine, path)
        }?))
    } else if name.ends_with(COMPONENT_SUFFIX) {
        Ok(Program::Component(unsafe {
            Component::deserialize_file(engine, path)
        }?))
    } else {
        Err(wasmtime::format_err!("{name}: not compiled code"))
    }
}

fn wasm_err(e: wasmtime::Error) -> Error {
    Error::Unsupported(format!("wasmtime: {e:#}"))
}
