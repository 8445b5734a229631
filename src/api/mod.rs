//! The Docker Engine API, served on a unix socket by `strata system service` as podman's
//! `system service` serves it: no daemon of its own (containers it starts are detached
//! under their monitors and outlive it), every request the same library calls as the CLI's
//! commands. hyper's HTTP/1 server on tokio; handlers are blocking library calls on tokio's
//! blocking pool, streams (logs, waits, attach, exec) fed from them through channels.
//!
//! Versions: `/v1.24/…` to `/v{API_VERSION}/…` and unversioned paths; a newer version is
//! refused with docker's 400 and words. Errors are docker's `{"message": …}` with its
//! statuses (404 not found, 409 conflict, 400 bad parameter, 500 otherwise).

mod archive;
mod build;
mod containers;
mod create;
mod exec;
mod images;
mod resources;
mod stream;

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use strata_runtime::{ErrorKind, Store};

use stream::Body;

/// The API version Strata speaks (what CLI 28 negotiates down to), and the oldest it takes.
pub const API_VERSION: &str = "1.44";
const MIN_API_VERSION: &str = "1.24";
/// The largest body read whole (JSON documents); archives are streamed.
const MAX_BODY: usize = 16 << 20;

/// Shared by every request: the store's path (each handler opens the store, as each CLI
/// command does) and the execs made but not yet started or inspected.
pub struct Server {
    root: PathBuf,
    execs: Mutex<HashMap<String, exec::Exec>>,
    /// Requests in flight and when the last one ended, for `--time`.
    activity: Mutex<(usize, Instant)>,
    /// Attaches and waits reading a container's record and log, by container: an
    /// `AutoRemove` container is removed only once they are done with it.
    readers: Mutex<HashMap<String, usize>>,
    readers_done: std::sync::Condvar,
}

/// A reader's hold on a container's record (see `Server::readers`), let go on drop.
pub struct Hold {
    server: Arc<Server>,
    id: String,
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut readers = self.server.readers.lock().expect("readers");
        if let Some(n) = readers.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                readers.remove(&self.id);
            }
        }
        self.server.readers_done.notify_all();
    }
}

/// One request's answer, or docker's error for it.
pub type Reply = Result<Response<Body>, ApiError>;

/// An error as docker's API answers it.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, message)
    }
}

/// The library's errors by kind, the CLI's (anyhow) by the library error they carry.
impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> ApiError {
        let status = match e.downcast_ref::<strata_runtime::Error>().map(|e| e.kind()) {
            Some(ErrorKind::NotFound) => StatusCode::NOT_FOUND,
            Some(ErrorKind::AlreadyExists | ErrorKind::FailedPrecondition) => StatusCode::CONFLICT,
            Some(ErrorKind::InvalidArgument) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
        ApiError::new(status, crate::dedup_chain(&chain))
    }
}

impl From<std::io::Error> for ApiError {
    fn from(e: std::io::Error) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

impl From<strata_runtime::Error> for ApiError {
    fn from(e: strata_runtime::Error) -> ApiError {
        anyhow::Error::from(e).into()
    }
}

/// A request as the handlers see it: method, path segments after the version, the query,
/// and the body (read in full, except for the streams that take the connection).
pub struct Call {
    pub method: Method,
    pub segments: Vec<String>,
    pub query: HashMap<String, Vec<String>>,
    pub body: Bytes,
    /// The connection's upgrade (attach, exec start), when the client asked for one.
    pub upgrade: Option<hyper::upgrade::OnUpgrade>,
    /// The body as it comes, for the endpoints that take archives (`body` is empty then).
    pub stream: Option<stream::BodyReader>,
}

impl Call {
    /// The query parameter's last value.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .get(key)
            .and_then(|v| v.last())
            .map(String::as_str)
    }

    /// A boolean parameter as docker reads them: `1`, `true`, `True` (and an empty value).
    pub fn flag(&self, key: &str) -> bool {
        self.param(key)
            .is_some_and(|v| !matches!(v, "0" | "false" | "False" | "FALSE"))
    }

    /// A number parameter (a terminal's `h`, `w`), or a 400 naming it.
    pub fn number<T: std::str::FromStr>(&self, key: &str) -> Result<T, ApiError> {
        self.param(key)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| ApiError::bad(format!("invalid or missing {key}: a number")))
    }

    /// The JSON body, or docker's 400 for one that does not parse.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, ApiError> {
        if self.body.is_empty() {
            return serde_json::from_str("{}").map_err(|e| ApiError::bad(e.to_string()));
        }
        serde_json::from_slice(&self.body)
            .map_err(|e| ApiError::bad(format!("invalid JSON body: {e}")))
    }
}

/// A JSON answer.
pub fn json_reply(status: StatusCode, value: &Value) -> Reply {
    Ok(Response::builder()
        .status(status)
        .header("Content-Type", "application/json")
        .body(Body::full(serde_json::to_vec(value).expect("json")))
        .expect("a response"))
}

/// An empty answer (204 No Content, 304 Not Modified).
pub fn empty_reply(status: StatusCode) -> Reply {
    Ok(Response::builder()
        .status(status)
        .body(Body::full(Vec::new()))
        .expect("a response"))
}

/// Compare two `major.minor` versions.
fn version_key(v: &str) -> Option<(u32, u32)> {
    let (major, minor) = v.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// The path's version prefix checked and taken off: the segments that remain.
fn route_path(path: &str) -> Result<Vec<String>, ApiError> {
    let mut segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    if let Some(v) = segments.first().and_then(|s| s.strip_prefix('v')) {
        if let Some(version) = version_key(v) {
            if version > version_key(API_VERSION).expect("ours") {
                return Err(ApiError::bad(format!(
                    "client version {v} is too new. Maximum supported API version is {API_VERSION}"
                )));
            }
            if version < version_key(MIN_API_VERSION).expect("ours") {
                return Err(ApiError::bad(format!(
                    "client version {v} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
                )));
            }
            segments.remove(0);
        }
    }
    Ok(segments)
}

/// `%XX` escapes decoded; invalid ones are kept as they are.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: Option<&str>) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.entry(percent_decode(&k.replace('+', " ")))
            .or_default()
            .push(percent_decode(&v.replace('+', " ")));
    }
    out
}

impl Server {
    /// Open the store (here, once, so a bad root fails at start), and the headers' values.
    fn store(&self) -> Result<Store, ApiError> {
        Store::open(&self.root).map_err(ApiError::from)
    }

    /// Hold container `id`'s record for a reader until the `Hold` is dropped.
    pub fn hold(self: &Arc<Self>, id: &str) -> Hold {
        *self
            .readers
            .lock()
            .expect("readers")
            .entry(id.to_string())
            .or_default() += 1;
        Hold {
            server: self.clone(),
            id: id.to_string(),
        }
    }

    /// Block until no reader holds container `id`.
    pub fn unheld(&self, id: &str) {
        let mut readers = self.readers.lock().expect("readers");
        while readers.contains_key(id) {
            readers = self.readers_done.wait(readers).expect("readers");
        }
    }

    async fn handle(self: Arc<Self>, mut req: Request<Incoming>) -> Response<Body> {
        self.activity.lock().expect("activity").0 += 1;
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let t0 = Instant::now();
        let query = parse_query(req.uri().query());
        let upgrade = req
            .headers()
            .get(hyper::header::UPGRADE)
            .is_some()
            .then(|| hyper::upgrade::on(&mut req));
        let reply = match route_path(&path) {
            Err(e) => Err(e),
            Ok(segments) => {
                // Archives are read as they come; the rest is JSON, read whole up to a bound.
                let streamed = (method == Method::PUT
                    && segments.last().is_some_and(|s| s == "archive"))
                    || (method == Method::POST
                        && (segments == ["build"] || segments == ["images", "load"]));
                let (body, stream) = if streamed {
                    (
                        Ok(Bytes::new()),
                        Some(stream::BodyReader::new(req.into_body())),
                    )
                } else {
                    let limited = http_body_util::Limited::new(req.into_body(), MAX_BODY);
                    let body = limited
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .map_err(|e| ApiError::bad(format!("read the request body: {e}")));
                    (body, None)
                };
                match body {
                    Err(e) => Err(e),
                    Ok(body) => {
                        let call = Call {
                            method: method.clone(),
                            segments,
                            query,
                            body,
                            upgrade,
                            stream,
                        };
                        self.clone().dispatch(call).await
                    }
                }
            }
        };
        let mut response = reply.unwrap_or_else(|e| {
            Response::builder()
                .status(e.status)
                .header("Content-Type", "application/json")
                .body(Body::full(
                    serde_json::to_vec(&json!({ "message": e.message })).expect("json"),
                ))
                .expect("a response")
        });
        let headers = response.headers_mut();
        headers.insert("Api-Version", API_VERSION.parse().expect("header"));
        headers.insert(
            "Server",
            format!("Strata/{} (linux)", env!("CARGO_PKG_VERSION"))
                .parse()
                .expect("header"),
        );
        headers.insert("Ostype", "linux".parse().expect("header"));
        headers.insert("Docker-Experimental", "false".parse().expect("header"));
        if std::env::var_os("STRATA_API_TRACE").is_some() {
            eprintln!("{method} {path} {} {:?}", response.status(), t0.elapsed());
        }
        let mut a = self.activity.lock().expect("activity");
        a.0 -= 1;
        a.1 = Instant::now();
        response
    }

    /// Every endpoint is a blocking library call (streams feed their bodies from it).
    async fn dispatch(self: Arc<Self>, call: Call) -> Reply {
        if (call.method == Method::HEAD || call.method == Method::GET) && call.segments == ["_ping"]
        {
            return Ok(resources::ping(call.method == Method::HEAD));
        }
        let server = self.clone();
        tokio::task::spawn_blocking(move || server.blocking(call))
            .await
            .unwrap_or_else(|e| {
                Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("the handler failed: {e}"),
                ))
            })
    }

    /// The endpoints that are library calls, on a blocking thread.
    fn blocking(self: Arc<Self>, call: Call) -> Reply {
        let store = self.store()?;
        let segments = call.segments.clone();
        let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
        match (call.method.as_str(), seg.as_slice()) {
            ("GET", ["version"]) => resources::version(),
            ("GET", ["info"]) => resources::info(&store),
            ("GET", ["system", "df"]) => resources::disk_usage(&store),
            ("POST", ["build"]) => build::build(&store, call),
            ("GET", ["images", "json"]) => images::list(&store, &call),
            ("GET", ["images", "get"]) => {
                images::save(&store, call.query.get("names").cloned().unwrap_or_default())
            }
            ("POST", ["images", "load"]) => images::load(&store, call),
            ("GET", ["images", rest @ .., "get"]) => images::save(&store, vec![rest.join("/")]),
            ("GET", ["images", rest @ .., "json"]) => images::inspect(&store, &rest.join("/")),
            ("POST", ["images", "create"]) => images::pull(&store, &call),
            ("POST", ["images", rest @ .., "push"]) => images::push(&store, &rest.join("/"), &call),
            ("GET", ["images", rest @ .., "history"]) => images::history(&store, &rest.join("/")),
            ("POST", ["images", rest @ .., "tag"]) => images::tag(&store, &rest.join("/"), &call),
            ("DELETE", ["images", rest @ ..]) if !rest.is_empty() => {
                images::remove(&store, &rest.join("/"), &call)
            }
            ("GET", ["containers", "json"]) => containers::list(&store, &call),
            ("POST", ["containers", "create"]) => create::create(&store, &call),
            ("POST", ["containers", "prune"]) => containers::prune(&store),
            ("GET", ["containers", id, "json"]) => containers::inspect(&store, id),
            ("POST", ["containers", id, "start"]) => containers::start(&self, &store, id),
            ("POST", ["containers", id, "stop"]) => containers::stop(&store, id, &call, false),
            ("POST", ["containers", id, "restart"]) => containers::stop(&store, id, &call, true),
            ("POST", ["containers", id, "kill"]) => containers::kill(&store, id, &call),
            ("POST", ["containers", id, "pause"]) => containers::pause(&store, id, true),
            ("POST", ["containers", id, "unpause"]) => containers::pause(&store, id, false),
            ("POST", ["containers", id, "rename"]) => containers::rename(&store, id, &call),
            ("GET", ["containers", id, "changes"]) => containers::changes(&store, id),
            ("GET", ["containers", id, "top"]) => containers::top(&store, id, &call),
            ("GET", ["containers", id, "stats"]) => containers::stats(&store, id, &call),
            ("POST", ["containers", id, "wait"]) => containers::wait(&self, id, &call),
            ("GET", ["containers", id, "logs"]) => containers::logs(&self.root, id, &call),
            ("POST", ["containers", id, "attach"]) => containers::attach(&self, id, call),
            ("POST", ["containers", id, "resize"]) => containers::resize(&store, id, &call),
            ("POST", ["exec", id, "resize"]) => exec::exec_resize(&self, id, &call),
            ("DELETE", ["containers", id]) => containers::remove(&store, id, &call),
            ("HEAD" | "GET", ["containers", id, "archive"]) => {
                archive::archive(&store, id, &call, call.method == Method::HEAD)
            }
            ("PUT", ["containers", id, "archive"]) => archive::extract(&store, id, call),
            ("POST", ["containers", id, "exec"]) => exec::exec_create(&self, &store, id, &call),
            ("POST", ["exec", id, "start"]) => exec::exec_start(&self, id, call),
            ("GET", ["exec", id, "json"]) => exec::exec_inspect(&self, id),
            ("GET", ["volumes"]) => resources::volumes(&store, &call),
            ("POST", ["volumes", "create"]) => resources::volume_create(&store, &call),
            ("POST", ["volumes", "prune"]) => resources::volume_prune(&store, &call),
            ("GET", ["volumes", name]) => resources::volume_inspect(&store, name),
            ("DELETE", ["volumes", name]) => resources::volume_remove(&store, name, &call),
            ("GET", ["networks"]) => resources::networks(&store, &call),
            ("POST", ["networks", "create"]) => resources::network_create(&store, &call),
            ("POST", ["networks", "prune"]) => resources::network_prune(&store),
            ("GET", ["networks", id]) => resources::network_inspect(&store, id),
            ("POST", ["networks", id, "connect"]) => {
                resources::network_connect(&store, id, &call, true)
            }
            ("POST", ["networks", id, "disconnect"]) => {
                resources::network_connect(&store, id, &call, false)
            }
            ("DELETE", ["networks", id]) => resources::network_remove(&store, id),
            _ => Err(ApiError::not_found("page not found")),
        }
    }
}

/// Where `system service` listens by default: `/run/strata/strata.sock` for root,
/// `$XDG_RUNTIME_DIR/strata/strata.sock` (else under the store) for a user.
pub fn default_socket(store: &Path) -> PathBuf {
    if strata_runtime::privilege::privileged() {
        return PathBuf::from("/run/strata/strata.sock");
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("strata/strata.sock"),
        None => store.join("strata.sock"),
    }
}

/// Serve the API on `socket` until killed, or until `idle` has passed with no request in
/// flight (`--time`; `None` or zero: forever). The socket is made 0660 for root, 0600 for a
/// user, replacing one a killed server left.
pub fn serve(root: &Path, socket: &Path, idle: Option<Duration>) -> Result<()> {
    Store::open(root).with_context(|| format!("open the store at {}", root.display()))?;
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    match std::fs::remove_file(socket) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("remove the old socket {}", socket.display()))
        }
        _ => {}
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the server's runtime")?;
    let server = Arc::new(Server {
        root: root.to_path_buf(),
        execs: Mutex::new(HashMap::new()),
        activity: Mutex::new((0, Instant::now())),
        readers: Mutex::new(HashMap::new()),
        readers_done: std::sync::Condvar::new(),
    });
    runtime.block_on(async move {
        // Made with no permissions for others from the start: the mode is set before
        // anyone can connect.
        let mode = if strata_runtime::privilege::privileged() {
            0o660
        } else {
            0o600
        };
        let listener = {
            let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o777 & !mode));
            let bound = tokio::net::UnixListener::bind(socket);
            rustix::process::umask(old);
            bound.with_context(|| format!("listen on {}", socket.display()))?
        };
        eprintln!("Strata API listening on unix://{}", socket.display());
        loop {
            let accepted = match idle.filter(|d| !d.is_zero()) {
                None => Some(listener.accept().await),
                Some(idle) => {
                    tokio::select! {
                        a = listener.accept() => Some(a),
                        _ = tokio::time::sleep(Duration::from_millis(250)) => {
                            let (busy, last) = *server.activity.lock().expect("activity");
                            if busy == 0 && last.elapsed() >= idle {
                                return Ok(());
                            }
                            None
                        }
                    }
                }
            };
            let Some(accepted) = accepted else { continue };
            let (conn, _) = match accepted {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("accept: {e}");
                    continue;
                }
            };
            let server = server.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let server = server.clone();
                    async move { Ok::<_, Infallible>(server.handle(req).await) }
                });
                let io = hyper_util::rt::TokioIo::new(conn);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .with_upgrades()
                    .await;
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_negotiated_as_docker_does() {
        assert_eq!(
            route_path("/v1.41/containers/json").unwrap(),
            ["containers", "json"]
        );
        assert_eq!(route_path("/version").unwrap(), ["version"]);
        assert_eq!(route_path("/v1.44/_ping").unwrap(), ["_ping"]);
        let e = route_path("/v1.99/version").unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            e.message,
            "client version 1.99 is too new. Maximum supported API version is 1.44"
        );
        assert!(route_path("/v1.12/version")
            .unwrap_err()
            .message
            .contains("too old"));
        // A volume called like a version is not taken for one.
        assert_eq!(route_path("/volumes/v1.2x").unwrap(), ["volumes", "v1.2x"]);
    }

    #[test]
    fn queries_decode() {
        let q = parse_query(Some("fromImage=localhost%3A5000%2Fbb&tag=1&t=a&t=b&x"));
        assert_eq!(q["fromImage"], ["localhost:5000/bb"]);
        assert_eq!(q["t"], ["a", "b"]);
        assert_eq!(q["x"], [""]);
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
