//! wasi:http services: a component that exports `wasi:http/incoming-handler` (the
//! `wasi:http/proxy` world, as `wasmtime serve` and Spin run it) is served, not run: the
//! container's process listens on its ports and answers each request with a fresh instance
//! of the pre-instantiated component, on its own store (its memory capped by `--memory`, its
//! wall time by a deadline), so no request sees another's memory. A trap or a timeout is a
//! 500 for that request and a line on stderr; every request is a line on stdout (the logs).
//!
//! Bounds, for a flood or hostile clients: at most [`MAX_CONNECTIONS`] connections (more
//! wait in the kernel's backlog), request heads of at most [`MAX_HEAD_BYTES`] and
//! [`MAX_HEADERS`] fields sent within [`HEAD_TIMEOUT`], bodies of at most [`MAX_BODY_BYTES`]
//! (streamed to the guest, never buffered here), and at most `max_instances` instances at
//! once (a request waits for a slot until its deadline, then gets a 503).
//!
//! A stop signal drains: no new connection, in-flight requests run to their end, then the
//! service exits 0. A SIGKILL (what `stop` sends after its grace period) ends the requests
//! still running.

use std::convert::Infallible;
use std::fs::File;
use std::future::Future;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use wasmtime::component::{Component, ResourceTable};
use wasmtime::{Engine, Store, StoreLimitsBuilder, Trap, UpdateDeadline};
use wasmtime_wasi::cli::OutputFile;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::bindings::sync::ProxyPre;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpHooks, WasiHttpView};

use super::control::{Control, GuestLimits};
use super::{blocking, guestfs, link, GuestSpec, Outcome, WasmHost, WasmState};
use crate::backend::{Stdio, Stream};
use crate::error::{Error, Result};

/// Where a handler listens when the image exposes no port and none is published.
pub const DEFAULT_PORT: u16 = 8080;
/// Instances serving at once, unless `--http-max-instances` says otherwise.
pub const DEFAULT_MAX_INSTANCES: usize = 100;
/// A request's wall time, unless `--http-timeout` says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
pub const MAX_CONNECTIONS: usize = 1024;
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
pub const MAX_HEADERS: usize = 100;
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
pub const MAX_BODY_BYTES: usize = 64 << 20;
/// How often the engine's epoch moves while serving: the granularity of request deadlines.
const TICK: Duration = Duration::from_millis(10);

/// How a handler is served: `--http-*` and the ports to listen on.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// The container's TCP ports (exposed or published); none: [`DEFAULT_PORT`].
    pub ports: Vec<u16>,
    pub max_instances: usize,
    pub timeout: Duration,
}

impl Default for HttpOptions {
    fn default() -> HttpOptions {
        HttpOptions {
            ports: Vec::new(),
            max_instances: DEFAULT_MAX_INSTANCES,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// Whether `component` is a wasi:http handler.
pub fn is_handler(engine: &Engine, component: &Component) -> bool {
    component
        .component_type()
        .exports(engine)
        .any(|(name, _)| name.split('@').next() == Some("wasi:http/incoming-handler"))
}

/// Where a guest's outgoing wasi:http requests may go: as its sockets may (its network).
#[derive(Default)]
pub struct Hooks {
    outgoing: Outgoing,
}

#[derive(Default, Clone, Copy, PartialEq)]
enum Outgoing {
    /// `--network none`.
    #[default]
    Denied,
    /// Its own network namespace, or the host's (`--network host`).
    Allowed,
    /// Host-ports mode: the host's network but not its loopback (as its sockets).
    NotLoopback,
}

impl Hooks {
    pub fn for_guest(spec: &GuestSpec) -> Hooks {
        Hooks {
            outgoing: match (spec.network, &spec.host_ports) {
                (false, _) => Outgoing::Denied,
                (true, None) => Outgoing::Allowed,
                (true, Some(_)) => Outgoing::NotLoopback,
            },
        }
    }
}

impl WasiHttpHooks for Hooks {
    fn send_request(
        &mut self,
        request: hyper::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<
        dyn Future<
                Output = wasmtime_wasi_http::Result<(
                    hyper::Response<wasmtime_wasi_http::WasiBody>,
                    Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
                )>,
            > + Send,
    > {
        drop(fut);
        let outgoing = self.outgoing;
        Box::new(async move {
            let denied = match outgoing {
                Outgoing::Denied => true,
                Outgoing::Allowed => false,
                Outgoing::NotLoopback => to_the_host(request.uri()).await,
            };
            if denied {
                return Err(wasmtime_wasi_http::Error::HttpRequestDenied);
            }
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

/// Whether a request to `uri` would reach the host itself (as [`super::reaches_host`]
/// decides for sockets): any address its host resolves to. A name that fails to resolve
/// here fails the request's own lookup too. (The request resolves the name again: a
/// resolver that answers differently the second time is not covered.)
async fn to_the_host(uri: &hyper::Uri) -> bool {
    let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    match tokio::net::lookup_host((host, port)).await {
        Ok(mut addresses) => addresses.any(|a| super::reaches_host(a.ip())),
        Err(_) => false,
    }
}

impl WasmHost {
    /// Serve the handler `component` (at `program`) until a stop signal has drained it.
    /// It is started once it listens on every address.
    pub(super) fn serve(
        &self,
        program: &str,
        component: &Component,
        spec: &GuestSpec,
        mounts: Vec<guestfs::Mount>,
        stdio: Stdio,
        started: &mut dyn FnMut() -> Result<()>,
    ) -> Result<Outcome> {
        let options = spec.http.as_ref().ok_or_else(|| {
            Error::InvalidArgument(format!(
                "{program}: a wasi:http handler serves requests; it cannot run as a command"
            ))
        })?;
        let addresses = listen_addresses(program, spec, &options.ports)?;
        let engine = pooling_engine(options.max_instances)?;
        // SAFETY: the bytes are this process's serialization of a component compiled for
        // the same configuration (the allocator is not part of compiled code); wasmtime
        // checks the header and the configuration's compatibility before use.
        #[allow(unsafe_code)]
        let component = &component
            .serialize()
            .and_then(|bytes| unsafe { Component::deserialize(&engine, bytes) })
            .map_err(super::wasm_err)?;
        let linker = link::linker_for(&engine, component, spec.host_ports.is_some())
            .map_err(super::wasm_err)?;
        let pre = linker
            .instantiate_pre(component)
            .and_then(ProxyPre::new)
            .map_err(|e| Error::InvalidArgument(format!("{program}: {e:#}")))?;
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(options.max_instances + 2)
            .enable_all()
            .build()
            .map_err(|e| Error::io("start the HTTP runtime", e))?;
        let listeners = addresses
            .iter()
            .map(|addr| {
                let listener = std::net::TcpListener::bind(addr)
                    .and_then(|l| l.set_nonblocking(true).map(|()| l))
                    .map_err(|e| Error::io(format!("listen on {addr}"), e))?;
                let _entered = tokio.enter();
                tokio::net::TcpListener::from_std(listener)
                    .map_err(|e| Error::io(format!("listen on {addr}"), e))
            })
            .collect::<Result<Vec<_>>>()?;
        let (killed_tx, killed_rx) = watch::channel(false);
        let service = Arc::new(Service {
            pre,
            engine,
            control: Arc::clone(&self.control),
            spec: spec.clone(),
            mounts,
            stdout: Arc::new(output(&stdio.stdout, rustix::stdio::stdout())?),
            stderr: Arc::new(output(&stdio.stderr, rustix::stdio::stderr())?),
            guest_stdout: OutputFile::new(output(&stdio.stdout, rustix::stdio::stdout())?),
            guest_stderr: OutputFile::new(output(&stdio.stderr, rustix::stdio::stderr())?),
            instances: Arc::new(Semaphore::new(options.max_instances)),
            timeout: options.timeout,
            killed: Arc::clone(&self.killed),
            killed_rx,
        });
        let _running = self.control.running();
        started()?;
        let outcome = tokio.block_on(serve(
            service,
            listeners,
            Arc::clone(&self.signal),
            killed_tx,
        ));
        // A killed guest ends at its next epoch check or wait; none is waited for longer.
        tokio.shutdown_timeout(Duration::from_millis(200));
        Ok(outcome)
    }
}

/// A handler's engine: [`super::engine_config`] with wasmtime's pooling allocator, slots for
/// `max_instances` instances reserved (address space only) once and reused by each
/// request's instance. `bench/http.sh` measured it at 1.2-2.3x the requests/s of allocating
/// each instance on demand.
fn pooling_engine(max_instances: usize) -> Result<Engine> {
    // A component instance is several core instances (its modules and adapters), each
    // with its memories and tables.
    const PER_INSTANCE: u32 = 8;
    let slots = u32::try_from(max_instances)
        .unwrap_or(u32::MAX)
        .min(u32::MAX / PER_INSTANCE);
    let mut pool = wasmtime::PoolingAllocationConfig::default();
    pool.total_component_instances(slots)
        .total_core_instances(slots * PER_INSTANCE)
        .total_memories(slots * PER_INSTANCE)
        .total_tables(slots * PER_INSTANCE);
    let mut config = super::engine_config();
    config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config).map_err(|e| Error::Unsupported(format!("wasmtime (pooling): {e}")))
}

/// The addresses a handler listens on, one per port: in host-ports mode each published
/// port's host address (an unpublished one on loopback, as its sockets' binds), else
/// every address of its network (its own namespace's, or the host's).
fn listen_addresses(program: &str, spec: &GuestSpec, ports: &[u16]) -> Result<Vec<SocketAddr>> {
    let ports = if ports.is_empty() {
        &[DEFAULT_PORT][..]
    } else {
        ports
    };
    if !spec.network {
        return Err(Error::InvalidArgument(format!(
            "{program}: a wasi:http handler needs a network to serve on (--network none): \
             publish its port with -p, or use --network host"
        )));
    }
    let mut addresses = Vec::new();
    for &port in ports {
        match &spec.host_ports {
            Some(published) => {
                let mapped: Vec<_> = published
                    .iter()
                    .filter(|m| m.container_port == port && m.proto == crate::container::Proto::Tcp)
                    .map(|m| {
                        SocketAddr::from((m.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED), m.host_port))
                    })
                    .collect();
                if mapped.is_empty() {
                    addresses.push(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
                }
                addresses.extend(mapped);
            }
            None => addresses.push(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))),
        }
    }
    Ok(addresses)
}

/// A stream of the container's as a file of its own (the service's lines, or its guests'):
/// a copy of its descriptor, or of the process's own (`inherited`).
fn output(stream: &Stream, inherited: std::os::fd::BorrowedFd<'static>) -> Result<File> {
    match stream {
        Stream::Fd(fd) => fd.try_clone(),
        Stream::Inherit => inherited.try_clone_to_owned(),
    }
    .map(File::from)
    .map_err(|e| Error::io("duplicate an output stream", e))
}

/// What every request of one service shares.
struct Service {
    pre: ProxyPre<WasmState>,
    engine: Engine,
    control: Arc<Control>,
    spec: GuestSpec,
    mounts: Vec<guestfs::Mount>,
    stdout: Arc<File>,
    stderr: Arc<File>,
    /// The same streams as the guests write to them.
    guest_stdout: OutputFile,
    guest_stderr: OutputFile,
    /// Free instance slots.
    instances: Arc<Semaphore>,
    timeout: Duration,
    /// SIGKILL came (9), as the guests' epoch checks see it; and as their waits do.
    killed: Arc<AtomicI32>,
    killed_rx: watch::Receiver<bool>,
}

type Response = hyper::Response<HyperOutgoingBody>;

/// Accept connections on every listener until a stop signal, then drain: the result once
/// every connection has ended, or a SIGKILL came first.
async fn serve(
    service: Arc<Service>,
    listeners: Vec<tokio::net::TcpListener>,
    signal: Arc<AtomicI32>,
    killed: watch::Sender<bool>,
) -> Outcome {
    let (draining_tx, draining) = watch::channel(false);
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    for listener in listeners {
        tokio::spawn(accept(
            listener,
            Arc::clone(&service),
            Arc::clone(&connections),
            draining.clone(),
        ));
    }
    // The epoch moves every tick: request deadlines and pauses are checked at it.
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while signal.load(Ordering::SeqCst) == 0 {
        tick.tick().await;
        service.engine.increment_epoch();
    }
    draining_tx.send_replace(true);
    let ended = connections.acquire_many(MAX_CONNECTIONS as u32);
    tokio::pin!(ended);
    loop {
        tokio::select! {
            _ = &mut ended => return Outcome::Exited(0),
            _ = tick.tick() => {
                service.engine.increment_epoch();
                if service.killed.load(Ordering::SeqCst) != 0 {
                    killed.send_replace(true);
                    return Outcome::Interrupted(9);
                }
            }
        }
    }
}

/// Until the service drains (its value turns true); the value's guard is not held.
async fn drained(draining: &mut watch::Receiver<bool>) {
    let _ = draining.wait_for(|d| *d).await;
}

/// One listener's connections, each served on its own task with HTTP/1.1 keep-alive.
async fn accept(
    listener: tokio::net::TcpListener,
    service: Arc<Service>,
    connections: Arc<Semaphore>,
    mut draining: watch::Receiver<bool>,
) {
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&connections).acquire_owned() => permit.expect("never closed"),
            _ = drained(&mut draining) => return,
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => {
                    // Out of descriptors, or a connection reset before it was taken.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = drained(&mut draining) => return,
        };
        let _ = stream.set_nodelay(true);
        let (service, mut draining) = (Arc::clone(&service), draining.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let handler = hyper::service::service_fn(move |request| {
                let service = Arc::clone(&service);
                async move { Ok::<_, Infallible>(service.respond(remote, request).await) }
            });
            let mut http = http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .max_header_size(MAX_HEAD_BYTES)
                .max_headers(MAX_HEADERS);
            let connection = http.serve_connection(TokioIo::new(stream), handler);
            tokio::pin!(connection);
            let drain = tokio::select! {
                _ = connection.as_mut() => false,
                _ = drained(&mut draining) => true,
            };
            if drain {
                connection.as_mut().graceful_shutdown();
                let _ = connection.await;
            }
        });
    }
}

impl Service {
    /// One request's response, and its line in the logs.
    async fn respond(
        self: Arc<Self>,
        remote: SocketAddr,
        mut request: hyper::Request<Incoming>,
    ) -> Response {
        let began = Instant::now();
        let deadline = began + self.timeout;
        // A parsed URI holds no spaces or quotes: the line needs no escaping.
        let line = format!(
            "{} {}",
            request.method(),
            request.uri().path_and_query().map_or("/", |p| p.as_str())
        );
        let version = request.version();
        // An HTTP/1.0 request may name no host: wasi:http's needs an authority.
        if !request.headers().contains_key(hyper::header::HOST) {
            request.headers_mut().insert(
                hyper::header::HOST,
                hyper::header::HeaderValue::from_static("localhost"),
            );
        }
        let slot = tokio::time::timeout_at(deadline, Arc::clone(&self.instances).acquire_owned());
        let answered = match slot.await {
            Ok(Ok(slot)) => Arc::clone(&self).call(slot, request, deadline).await,
            _ => Err((
                503,
                "no instance slot free before the request's deadline".into(),
            )),
        };
        let response = answered.unwrap_or_else(|(status, why)| {
            self.log_error(&line, &why);
            plain(status)
        });
        let took = began.elapsed();
        // One write per line: the log reader never sees half of it.
        let access = format!(
            "{remote} \"{line} {version:?}\" {} {:.3}ms\n",
            response.status().as_u16(),
            took.as_secs_f64() * 1e3
        );
        let _ = (&*self.stdout).write_all(access.as_bytes());
        response
    }

    fn log_error(&self, line: &str, why: &str) {
        let _ = (&*self.stderr).write_all(format!("{line}: {why}\n").as_bytes());
    }

    /// The guest's response, on a fresh instance run on a blocking thread (holding `slot`
    /// until it returns, its body written included); an error is a status and why.
    async fn call(
        self: Arc<Self>,
        slot: OwnedSemaphorePermit,
        request: hyper::Request<Incoming>,
        deadline: Instant,
    ) -> std::result::Result<Response, (u16, String)> {
        let request = request.map(|body| {
            Limited::new(body, MAX_BODY_BYTES)
                .map_err(|e| match e.downcast::<hyper::Error>() {
                    Ok(e) => wasmtime_wasi_http::Error::Hyper(*e),
                    Err(_) => wasmtime_wasi_http::Error::HttpRequestBodySize(None),
                })
                .boxed_unsync()
        });
        let (sender, receiver) = oneshot::channel();
        let guest = {
            let service = Arc::clone(&self);
            tokio::task::spawn_blocking(move || {
                let _slot = slot;
                service.handle(request, sender, deadline)
            })
        };
        match receiver.await {
            Ok(Ok(response)) => {
                // The body may still be written: a failure after the head is logged.
                let service = Arc::clone(&self);
                tokio::spawn(async move {
                    if let Ok(Err(e)) = guest.await {
                        let why = service.failure(e, deadline);
                        service.log_error("(after the response head)", &why);
                    }
                });
                Ok(response)
            }
            Ok(Err(code)) => Err((500, format!("the handler answered with an error: {code:?}"))),
            Err(_) => Err((
                500,
                match guest.await {
                    Ok(Ok(())) => "the handler returned without a response".into(),
                    Ok(Err(e)) => self.failure(e, deadline),
                    Err(e) => format!("the handler's thread failed: {e}"),
                },
            )),
        }
    }

    /// Instantiate and call the handler (on a blocking thread).
    fn handle(
        &self,
        request: hyper::Request<wasmtime_wasi_http::p2::body::HyperIncomingBody>,
        sender: oneshot::Sender<std::result::Result<Response, ErrorCode>>,
        deadline: Instant,
    ) -> wasmtime::Result<()> {
        let mut store = self.store(deadline.into_std());
        let request = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, request)?;
        let out = store.data_mut().http().new_response_outparam(sender)?;
        let proxy = self.pre.instantiate(&mut store)?;
        proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut store, request, out)
    }

    /// A request's store: the container's root, mounts, env and outputs, its own memory
    /// cap, checked at every epoch tick for its deadline, a pause and a kill.
    fn store(&self, deadline: std::time::Instant) -> Store<WasmState> {
        let spec = &self.spec;
        let mut wasi = super::wasi_builder(spec);
        wasi.stdout(self.guest_stdout.clone());
        wasi.stderr(self.guest_stderr.clone());
        let mut limits = StoreLimitsBuilder::new().trap_on_grow_failure(true);
        if let Some(m) = spec.memory {
            limits = limits.memory_size(m as usize);
        }
        let state = WasmState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            fs: guestfs::GuestFs::new(self.mounts.clone()),
            limits: GuestLimits::new(limits.build(), &self.control),
            stop: blocking::Stop::Request {
                deadline: deadline.into(),
                killed: self.killed_rx.clone(),
            },
            host_ports: spec.host_ports.clone().unwrap_or_default().into(),
            http: wasmtime_wasi_http::WasiHttpCtx::new(),
            http_hooks: Hooks::for_guest(spec),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(1);
        let (control, killed) = (Arc::clone(&self.control), Arc::clone(&self.killed));
        store.epoch_deadline_callback(move |_| {
            control.wait_while_paused(&killed);
            Ok(
                if killed.load(Ordering::SeqCst) != 0 || std::time::Instant::now() >= deadline {
                    UpdateDeadline::Interrupt
                } else {
                    UpdateDeadline::Continue(1)
                },
            )
        });
        store
    }

    /// What a failed request's line says.
    fn failure(&self, e: wasmtime::Error, deadline: Instant) -> String {
        if let Some(Trap::Interrupt) = e.downcast_ref::<Trap>() {
            return if self.killed.load(Ordering::SeqCst) != 0 {
                "killed".into()
            } else if Instant::now() >= deadline {
                format!("timed out after {:?}", self.timeout)
            } else {
                "interrupted".into()
            };
        }
        match super::classify(e, self.spec.memory, 0) {
            Outcome::OutOfMemory => format!(
                "out of memory (limit {} bytes)",
                self.spec.memory.unwrap_or_default()
            ),
            Outcome::Trapped(why) => why,
            Outcome::Exited(code) => format!("the handler exited with status {code}"),
            Outcome::Interrupted(sig) => format!("stopped by signal {sig}"),
        }
    }
}

/// A status with its reason as a plain-text body.
fn plain(status: u16) -> Response {
    let status =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    let text = format!("{}\n", status.canonical_reason().unwrap_or("error"));
    let mut response = hyper::Response::new(
        Full::new(Bytes::from(text))
            .map_err(|never: Infallible| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
