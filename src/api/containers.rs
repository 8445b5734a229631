//! The container endpoints. `create` turns docker's body into the flags `strata create`
//! takes and parses them with the CLI's own parser, so a container made through the API is
//! made by the same code with the same checks; the rest call what `start`, `stop`, `kill`,
//! `rm`, `logs`, `attach`, `wait` and `exec` call.
//!
//! `AutoRemove` is carried out here, as docker's client did before API 1.25: the container
//! is made without `--rm` and removed once its run ends, so a client attached or waiting
//! from before `start` still reads its output and status (the wait/remove race podman's
//! compat API lost, podman#18889).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use hyper::{Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use strata_runtime::container::logs::{LogReader, Query, Sinks};
use strata_runtime::container::monitor::{self, Request};
use strata_runtime::container::{
    exec_spec, parse_signal, Container, Containers, ExecOptions, Status,
};
use strata_runtime::Store;

use super::images::unix_time;
use super::stream::{hijack, Body, Framed, Sender};
use super::{empty_reply, json_reply, ApiError, Call, Reply, Server};

/// The label that marks a container this server removes when it ends (`AutoRemove`).
const AUTO_REMOVE_LABEL: &str = "org.strata.api.auto-remove";

/// A container by name or id, or docker's 404.
fn get(containers: &Containers<'_>, key: &str) -> Result<Container, ApiError> {
    containers.get(key).map_err(|e| match e.kind() {
        strata_runtime::ErrorKind::NotFound => {
            ApiError::not_found(format!("No such container: {key}"))
        }
        _ => e.into(),
    })
}

pub fn list(store: &Store, call: &Call) -> Reply {
    let containers = Containers::open(store)?;
    let limit = call
        .param("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(-1);
    let filters = super::resources::filters(call)?;
    let shown = crate::cli::ps::select(store, &containers, &filters, call.flag("all"), limit)?;
    let (leases, ports) = if shown.iter().any(|(c, _, _)| c.host.network.attaches()) {
        let networks = strata_net::Networks::open(store);
        (networks.leases()?, networks.ports()?)
    } else {
        Default::default()
    };
    let out: Vec<Value> = shown
        .iter()
        .map(|(c, labels, health)| {
            let args = containers
                .spec(c)
                .ok()
                .and_then(|s| s.process().as_ref().and_then(|p| p.args().clone()))
                .unwrap_or_default();
            let networks: serde_json::Map<String, Value> = leases
                .iter()
                .filter(|l| l.container == c.id)
                .map(|l| {
                    (
                        l.network.clone(),
                        json!({ "IPAddress": l.ip.to_string(), "NetworkID": "" }),
                    )
                })
                .collect();
            let ports: Vec<Value> = ports
                .get(&c.id)
                .map_or(&[][..], Vec::as_slice)
                .iter()
                .map(|p| {
                    json!({
                        "IP": p.host_ip.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED).to_string(),
                        "PrivatePort": p.container_port,
                        "PublicPort": p.host_port,
                        "Type": p.proto.to_string(),
                    })
                })
                .collect();
            json!({
                "Id": c.id,
                "Names": [format!("/{}", c.name)],
                "Image": c.image,
                "ImageID": c.image_id.to_string(),
                "Command": args.join(" "),
                "Created": unix_time(Some(&c.created)),
                "Ports": ports,
                "Labels": labels,
                "State": crate::cli::ps::state(c),
                "Status": crate::cli::ps::status(c, health.as_deref()),
                "HostConfig": { "NetworkMode": c.host.network.to_string() },
                "NetworkSettings": { "Networks": networks },
                "Mounts": c.mounts.iter().map(|m| json!({
                    "Type": m.kind.as_str(), "Name": m.name, "Source": m.source,
                    "Destination": m.destination, "RW": m.rw,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json_reply(StatusCode::OK, &Value::Array(out))
}

pub fn inspect(store: &Store, key: &str) -> Reply {
    let containers = Containers::open(store)?;
    let c = get(&containers, key)?;
    let mut doc = crate::cli::inspect::describe_container(store, &containers, &c);
    doc["HostConfig"]["AutoRemove"] =
        json!(c.host.labels.contains_key(AUTO_REMOVE_LABEL) || c.auto_remove);
    json_reply(StatusCode::OK, &doc)
}

/// What `POST /containers/create` takes (the parts Strata carries out).
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct CreateBody {
    image: String,
    cmd: Option<StringOrList>,
    entrypoint: Option<StringOrList>,
    env: Option<Vec<String>>,
    user: String,
    working_dir: String,
    hostname: String,
    tty: bool,
    open_stdin: bool,
    labels: Option<BTreeMap<String, String>>,
    stop_signal: Option<String>,
    stop_timeout: Option<i64>,
    healthcheck: Option<HealthBody>,
    host_config: Option<HostBody>,
    networking_config: Option<NetworkingBody>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StringOrList {
    One(String),
    List(Vec<String>),
}

impl StringOrList {
    fn into_list(self) -> Vec<String> {
        match self {
            StringOrList::One(s) => vec![s],
            StringOrList::List(l) => l,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct HealthBody {
    test: Vec<String>,
    interval: i64,
    timeout: i64,
    start_period: i64,
    start_interval: i64,
    retries: i64,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct HostBody {
    binds: Option<Vec<String>>,
    mounts: Option<Vec<MountBody>>,
    tmpfs: Option<BTreeMap<String, String>>,
    volumes_from: Option<Vec<String>>,
    port_bindings: Option<BTreeMap<String, Option<Vec<PortBinding>>>>,
    publish_all_ports: bool,
    network_mode: String,
    restart_policy: Option<RestartBody>,
    auto_remove: bool,
    memory: i64,
    nano_cpus: i64,
    pids_limit: Option<i64>,
    ulimits: Option<Vec<UlimitBody>>,
    init: Option<bool>,
    runtime: String,
    log_config: Option<LogBody>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct MountBody {
    #[serde(rename = "Type")]
    kind: String,
    source: String,
    target: String,
    read_only: bool,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct PortBinding {
    host_ip: String,
    host_port: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct RestartBody {
    name: String,
    maximum_retry_count: i64,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct UlimitBody {
    name: String,
    soft: i64,
    hard: i64,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct LogBody {
    #[serde(rename = "Type")]
    kind: String,
    config: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct NetworkingBody {
    endpoints_config: Option<BTreeMap<String, Option<EndpointBody>>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct EndpointBody {
    aliases: Option<Vec<String>>,
}

/// `strata create`'s flags, parsed by the CLI's own parser.
#[derive(Parser)]
#[command(no_binary_name = true)]
struct CreateFlags {
    #[command(flatten)]
    container: crate::cli::run::ContainerArgs,
}

/// A flag and its value.
fn push(a: &mut Vec<String>, flag: &str, value: String) {
    a.push(flag.to_string());
    a.push(value);
}

/// docker's create body as `strata create` flags.
fn create_flags(body: CreateBody, name: Option<&str>, platform: Option<&str>) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    if let Some(n) = name.filter(|n| !n.is_empty()) {
        push(&mut a, "--name", n.to_string());
    }
    if let Some(p) = platform.filter(|p| !p.is_empty()) {
        push(&mut a, "--platform", p.to_string());
    }
    for e in body.env.unwrap_or_default() {
        push(&mut a, "-e", e);
    }
    if !body.user.is_empty() {
        push(&mut a, "-u", body.user);
    }
    if !body.working_dir.is_empty() {
        push(&mut a, "-w", body.working_dir);
    }
    if !body.hostname.is_empty() {
        push(&mut a, "--hostname", body.hostname);
    }
    for (k, v) in body.labels.unwrap_or_default() {
        push(&mut a, "-l", format!("{k}={v}"));
    }
    if let Some(s) = body.stop_signal.filter(|s| !s.is_empty()) {
        push(&mut a, "--stop-signal", s);
    }
    if let Some(t) = body.stop_timeout {
        push(&mut a, "--stop-timeout", t.to_string());
    }
    if let Some(h) = body.healthcheck {
        match h.test.first().map(String::as_str) {
            Some("NONE") => a.push("--no-healthcheck".into()),
            Some("CMD-SHELL") => push(&mut a, "--health-cmd", h.test[1..].join(" ")),
            // The exec form, as a shell command of its words quoted.
            Some("CMD") => push(
                &mut a,
                "--health-cmd",
                h.test[1..]
                    .iter()
                    .map(|w| format!("'{}'", w.replace('\'', r"'\''")))
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            _ => {}
        }
        for (f, ns) in [
            ("--health-interval", h.interval),
            ("--health-timeout", h.timeout),
            ("--health-start-period", h.start_period),
            ("--health-start-interval", h.start_interval),
        ] {
            if ns > 0 {
                push(&mut a, f, format!("{ns}ns"));
            }
        }
        if h.retries > 0 {
            push(&mut a, "--health-retries", h.retries.to_string());
        }
    }
    let host = body.host_config.unwrap_or_default();
    for b in host.binds.unwrap_or_default() {
        push(&mut a, "-v", b);
    }
    for m in host.mounts.unwrap_or_default() {
        let mut spec = format!("type={},dst={}", m.kind, m.target);
        if !m.source.is_empty() {
            spec.push_str(&format!(",src={}", m.source));
        }
        if m.read_only {
            spec.push_str(",readonly");
        }
        push(&mut a, "--mount", spec);
    }
    for (dir, opts) in host.tmpfs.unwrap_or_default() {
        push(
            &mut a,
            "--tmpfs",
            if opts.is_empty() {
                dir
            } else {
                format!("{dir}:{opts}")
            },
        );
    }
    for v in host.volumes_from.unwrap_or_default() {
        push(&mut a, "--volumes-from", v);
    }
    for (port, bindings) in host.port_bindings.unwrap_or_default() {
        for b in bindings.unwrap_or_default() {
            let mut spec = String::new();
            if !b.host_ip.is_empty() {
                spec.push_str(&format!("{}:", b.host_ip));
            }
            spec.push_str(&format!("{}:{port}", b.host_port));
            push(&mut a, "-p", spec);
        }
    }
    if host.publish_all_ports {
        a.push("-P".into());
    }
    // docker's "default" is its bridge; Strata's default follows its own rule (`run`).
    if !matches!(host.network_mode.as_str(), "" | "default") {
        push(&mut a, "--network", host.network_mode.clone());
    }
    for (_, endpoint) in body
        .networking_config
        .and_then(|n| n.endpoints_config)
        .unwrap_or_default()
    {
        for alias in endpoint.and_then(|e| e.aliases).unwrap_or_default() {
            push(&mut a, "--network-alias", alias);
        }
    }
    if let Some(r) = host.restart_policy.filter(|r| !r.name.is_empty()) {
        push(
            &mut a,
            "--restart",
            if r.name == "on-failure" && r.maximum_retry_count > 0 {
                format!("on-failure:{}", r.maximum_retry_count)
            } else {
                r.name
            },
        );
    }
    if host.memory > 0 {
        push(&mut a, "-m", host.memory.to_string());
    }
    if host.nano_cpus > 0 {
        push(&mut a, "--cpus", format!("{}", host.nano_cpus as f64 / 1e9));
    }
    if let Some(p) = host.pids_limit.filter(|p| *p != 0) {
        push(&mut a, "--pids-limit", p.to_string());
    }
    for u in host.ulimits.unwrap_or_default() {
        push(
            &mut a,
            "--ulimit",
            format!("{}={}:{}", u.name, u.soft, u.hard),
        );
    }
    if host.init == Some(true) {
        a.push("--init".into());
    }
    if !host.runtime.is_empty() && host.runtime != "runc" {
        push(&mut a, "--runtime", host.runtime);
    }
    if let Some(log) = host.log_config {
        if log.kind == "none" {
            push(&mut a, "--log-driver", "none".into());
        }
        for (k, v) in log.config.unwrap_or_default() {
            push(&mut a, "--log-opt", format!("{k}={v}"));
        }
    }
    if host.auto_remove {
        push(&mut a, "-l", format!("{AUTO_REMOVE_LABEL}=true"));
    }
    if body.tty {
        a.push("-t".into());
    }
    if body.open_stdin {
        a.push("-i".into());
    }
    // docker's `Entrypoint` list: its first word is the program, the rest come before Cmd.
    let mut args = Vec::new();
    if let Some(e) = body.entrypoint {
        let mut words = e.into_list().into_iter();
        push(&mut a, "--entrypoint", words.next().unwrap_or_default());
        args.extend(words);
    }
    args.extend(body.cmd.map(StringOrList::into_list).unwrap_or_default());
    // No pull: docker's client pulls on the 404 and creates again.
    push(&mut a, "--pull", "never".into());
    a.push(body.image);
    a.extend(args);
    a
}

pub fn create(store: &Store, call: &Call) -> Reply {
    let body: CreateBody = call.json()?;
    if body.image.is_empty() {
        return Err(ApiError::bad(
            "config cannot be empty in order to create a container",
        ));
    }
    if let Err(e) = store.resolve(&body.image) {
        if e.kind() == strata_runtime::ErrorKind::NotFound {
            return Err(ApiError::not_found(format!(
                "No such image: {}",
                body.image
            )));
        }
    }
    let flags = create_flags(body, call.param("name"), call.param("platform"));
    let parsed = CreateFlags::try_parse_from(&flags).map_err(|e| {
        let text = e.to_string();
        ApiError::bad(
            text.lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: "),
        )
    })?;
    let containers = Containers::open(store)?;
    let (container, _, _) = parsed
        .container
        .create(store, &containers, crate::cli::run::Mode::Created)
        .map_err(|e| {
            let text = e.to_string();
            if text.contains("is already in use") {
                ApiError::conflict(text)
            } else {
                ApiError::from(e)
            }
        })?;
    json_reply(
        StatusCode::CREATED,
        &json!({ "Id": container.id, "Warnings": [] }),
    )
}

pub fn start(server: &Arc<Server>, store: &Store, key: &str) -> Reply {
    let containers = Containers::open(store)?;
    let c = get(&containers, key)?;
    if c.running() {
        return empty_reply(StatusCode::NOT_MODIFIED);
    }
    crate::cli::monitor::start(store, &c)?;
    if c.host.labels.contains_key(AUTO_REMOVE_LABEL) {
        remove_when_done(server.clone(), c.id.clone());
    }
    empty_reply(StatusCode::NO_CONTENT)
}

/// `AutoRemove`: once the run ends (and has been recorded) and no attach or wait reads
/// its record any more, the container goes, as `rm -v`.
fn remove_when_done(server: Arc<Server>, id: String) {
    std::thread::spawn(move || {
        let Ok(store) = server.store() else { return };
        let Ok(containers) = Containers::open(&store) else {
            return;
        };
        let _ = containers.wait_unclaimed(&id);
        server.unheld(&id);
        if let Ok(c) = containers.get(&id) {
            let _ = crate::cli::rm::remove(&store, &containers, &c, true, true);
        }
    });
}

pub fn stop(store: &Store, key: &str, call: &Call, restart: bool) -> Reply {
    let containers = Containers::open(store)?;
    let c = get(&containers, key)?;
    let signal = call.param("signal").map(parse_signal).transpose()?;
    let timeout = call.param("t").and_then(|t| t.parse().ok());
    if !restart && !c.running() {
        return empty_reply(StatusCode::NOT_MODIFIED);
    }
    containers.stop(&c, signal, timeout)?;
    if restart {
        let c = containers.get(&c.id)?;
        crate::cli::monitor::start(store, &c)?;
    }
    empty_reply(StatusCode::NO_CONTENT)
}

pub fn kill(store: &Store, key: &str, call: &Call) -> Reply {
    let containers = Containers::open(store)?;
    let c = get(&containers, key)?;
    if !c.running() {
        return Err(ApiError::conflict(format!(
            "Cannot kill container: {key}: container {} is not running",
            c.id
        )));
    }
    let signal = parse_signal(call.param("signal").unwrap_or("KILL"))?;
    containers.kill(&c, signal)?;
    empty_reply(StatusCode::NO_CONTENT)
}

pub fn pause(store: &Store, key: &str, paused: bool) -> Reply {
    let containers = Containers::open(store)?;
    let c = get(&containers, key)?;
    containers.pause(&c, paused)?;
    empty_reply(StatusCode::NO_CONTENT)
}

pub fn remove(store: &Store, key: &str, call: &Call) -> Reply {
    let containers = Containers::open(store)?;
    let c = get(&containers, key)?;
    crate::cli::rm::remove(store, &containers, &c, call.flag("force"), call.flag("v"))?;
    empty_reply(StatusCode::NO_CONTENT)
}

/// Block until container `id` has run (or gone): its record says it started or ended.
fn await_start(containers: &Containers<'_>, id: &str) -> Option<Container> {
    loop {
        match containers.get(id) {
            Ok(c) if c.status != Status::Created || c.started_at.is_some() => return Some(c),
            Ok(_) => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => return None,
        }
    }
}

/// `wait`: answered (200 and the body) when the container stops, docker's conditions:
/// `not-running` (the default: at once if it is not running), `next-exit` (the end of the
/// run to come), `removed` (once it is also gone). The headers go at once, as docker's.
pub fn wait(server: &Arc<Server>, key: &str, call: &Call) -> Reply {
    let store = server.store()?;
    let containers = Containers::open(&store)?;
    let c = get(&containers, key)?;
    let condition = call.param("condition").unwrap_or("not-running").to_string();
    if !matches!(condition.as_str(), "not-running" | "next-exit" | "removed") {
        return Err(ApiError::bad(format!("invalid condition: {condition:?}")));
    }
    let (sender, body) = Body::channel();
    let hold = server.hold(&c.id);
    let server = server.clone();
    std::thread::spawn(move || {
        let answer = (|| -> anyhow::Result<i32> {
            let store = server.store().map_err(|e| anyhow::anyhow!(e.message))?;
            let containers = Containers::open(&store)?;
            let c = if condition == "not-running" && !c.running() {
                c
            } else if c.running() {
                c
            } else {
                match await_start(&containers, &c.id) {
                    Some(c) => c,
                    None => return Ok(containers.wait(&c)?),
                }
            };
            let code = containers.wait(&c)?;
            drop(hold);
            if condition == "removed" {
                while containers.exists(&c.id) {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            Ok(code)
        })();
        let doc = match answer {
            Ok(code) => json!({ "StatusCode": code, "Error": null }),
            Err(e) => json!({ "StatusCode": 125, "Error": { "Message": e.to_string() } }),
        };
        let _ = sender.json(&doc);
    });
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header("Content-Type", "application/json")
        .body(body)
        .expect("a response"))
}

/// docker's log query parameters as the log reader's query.
fn log_query(call: &Call) -> Result<Query, ApiError> {
    let now = chrono::Utc::now();
    let time = |key: &str| -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
        call.param(key)
            .filter(|v| !v.is_empty() && *v != "0")
            .map(|v| crate::cli::logs::parse_time(v, now).map_err(|e| ApiError::bad(e.to_string())))
            .transpose()
    };
    Ok(Query {
        tail: match call.param("tail") {
            None | Some("all" | "" | "-1") => None,
            Some(n) => Some(
                n.parse()
                    .map_err(|_| ApiError::bad(format!("invalid tail {n:?}")))?,
            ),
        },
        since: time("since")?,
        until: time("until")?,
        timestamps: call.flag("timestamps"),
    })
}

/// The container's output streams as frames (raw with a terminal), those asked for.
fn sinks_for(
    sender: &Sender,
    raw: bool,
    stdout: bool,
    stderr: bool,
) -> (Box<dyn std::io::Write>, Box<dyn std::io::Write>) {
    let pick = |wanted: bool, stream: u8| -> Box<dyn std::io::Write> {
        if wanted {
            Box::new(Framed {
                sender: sender.clone(),
                stream,
                raw,
            })
        } else {
            Box::new(std::io::sink())
        }
    };
    (pick(stdout, 1), pick(stderr, 2))
}

/// Whether the container has a terminal (its output one raw stream, no frames).
fn tty(containers: &Containers<'_>, c: &Container) -> bool {
    containers
        .spec(c)
        .ok()
        .and_then(|s| s.process().as_ref().and_then(|p| p.terminal()))
        .unwrap_or(false)
}

pub fn logs(root: &Path, key: &str, call: &Call) -> Reply {
    let store = Store::open(root)?;
    let containers = Containers::open(&store)?;
    let c = get(&containers, key)?;
    let query = log_query(call)?;
    let (stdout, stderr) = (call.flag("stdout"), call.flag("stderr"));
    if !stdout && !stderr {
        return Err(ApiError::bad("you must choose at least one stream"));
    }
    let follow = call.flag("follow");
    let raw = tty(&containers, &c);
    let (sender, body) = Body::channel();
    let root = root.to_path_buf();
    std::thread::spawn(move || {
        let _ = (|| -> anyhow::Result<()> {
            let store = Store::open(&root)?;
            let containers = Containers::open(&store)?;
            let dir = containers.dir_of(&c)?;
            let mut reader = LogReader::open(&dir, &c.id)?;
            let (mut out, mut err) = sinks_for(&sender, raw, stdout, stderr);
            let mut sinks = Sinks {
                stdout: &mut *out,
                stderr: &mut *err,
            };
            if follow {
                reader.follow(&query, &mut sinks, |pace| {
                    std::thread::sleep(pace);
                    Ok(!containers.claimed(&c.id)?)
                })?;
            } else {
                reader.read_all(&query, &mut sinks)?;
            }
            Ok(())
        })();
    });
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(
            "Content-Type",
            if raw {
                "application/vnd.docker.raw-stream"
            } else {
                "application/vnd.docker.multiplexed-stream"
            },
        )
        .body(body)
        .expect("a response"))
}

/// The 101 that hands the connection over to a stream.
fn upgraded(c_tty: bool) -> Reply {
    Ok(Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(
            "Content-Type",
            if c_tty {
                "application/vnd.docker.raw-stream"
            } else {
                "application/vnd.docker.multiplexed-stream"
            },
        )
        .header("Connection", "Upgrade")
        .header("Upgrade", "tcp")
        .body(Body::full(Vec::new()))
        .expect("a response"))
}

/// `attach` (what `docker run` and `start -a` use): the connection carries the container's
/// output from its start (docker's clients attach before they start it) until its run
/// ends, and the client's stdin to the container's when it keeps one open.
pub fn attach(server: &Arc<Server>, key: &str, call: Call) -> Reply {
    let store = server.store()?;
    let containers = Containers::open(&store)?;
    let c = get(&containers, key)?;
    let (stdout, stderr, stdin) = (call.flag("stdout"), call.flag("stderr"), call.flag("stdin"));
    let upgrade = call
        .upgrade
        .ok_or_else(|| ApiError::bad("attach needs a connection upgrade (Upgrade: tcp)"))?;
    let raw = tty(&containers, &c);
    let (sender, client_stdin) = hijack(upgrade);
    let hold = server.hold(&c.id);
    let server = server.clone();
    let was_created = c.status == Status::Created && c.started_at.is_none();
    std::thread::spawn(move || {
        let _hold = hold;
        let _ = (|| -> anyhow::Result<()> {
            let store = server.store().map_err(|e| anyhow::anyhow!(e.message))?;
            let containers = Containers::open(&store)?;
            let Some(c) = await_start(&containers, &c.id) else {
                return Ok(());
            };
            let _stdin = if stdin && c.host.open_stdin {
                forward_stdin(&containers, &c, client_stdin)?
            } else {
                None
            };
            let since = (!was_created).then(chrono::Utc::now);
            let query = Query {
                since,
                ..Query::default()
            };
            let dir = containers.dir_of(&c)?;
            let mut reader = LogReader::open(&dir, &c.id)?;
            let (mut out, mut err) = sinks_for(&sender, raw, stdout, stderr);
            let mut sinks = Sinks {
                stdout: &mut *out,
                stderr: &mut *err,
            };
            let (ended, end) = std::sync::mpsc::channel::<()>();
            std::thread::scope(|s| {
                s.spawn(|| {
                    let _ = containers.wait(&c);
                    drop(ended);
                });
                reader.follow(&query, &mut sinks, LogReader::ended_on(&end))
            })?;
            Ok(())
        })();
    });
    upgraded(raw)
}

/// The client's stdin to the container's, through its monitor, until the client's ends.
fn forward_stdin(
    containers: &Containers<'_>,
    c: &Container,
    input: std::sync::mpsc::Receiver<Vec<u8>>,
) -> anyhow::Result<Option<std::os::unix::net::UnixStream>> {
    use std::io::Write;
    let Some((reply, conn)) = monitor::exchange(containers, c, &Request::Attach, &[])? else {
        return Ok(None);
    };
    if let Some(e) = reply.error {
        anyhow::bail!("attach to {}: {e}", c.id);
    }
    let mut to_monitor = conn.try_clone()?;
    std::thread::spawn(move || {
        for bytes in input {
            if to_monitor.write_all(&monitor::stdin_frame(&bytes)).is_err() {
                return;
            }
        }
        let _ = to_monitor.write_all(&monitor::stdin_frame(&[]));
    });
    Ok(Some(conn))
}

/// An exec made by `POST /containers/{id}/exec`, run by `POST /exec/{id}/start`.
pub struct Exec {
    container: String,
    options: ExecOptions,
    stdout: bool,
    stderr: bool,
    running: bool,
    exit_code: Option<i32>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ExecBody {
    cmd: Vec<String>,
    env: Option<Vec<String>>,
    user: String,
    working_dir: String,
    tty: bool,
    attach_stdout: bool,
    attach_stderr: bool,
}

pub fn exec_create(server: &Arc<Server>, store: &Store, key: &str, call: &Call) -> Reply {
    let containers = Containers::open(store)?;
    let c = get(&containers, key)?;
    if c.status != Status::Running {
        return Err(ApiError::conflict(format!(
            "container {} is not running",
            c.id
        )));
    }
    let body: ExecBody = call.json()?;
    if body.cmd.is_empty() {
        return Err(ApiError::bad("No exec command specified"));
    }
    let id = strata_runtime::Digest::of(
        format!("exec {} {:?}", c.id, std::time::SystemTime::now()).as_bytes(),
    )
    .hex()
    .to_string();
    server.execs.lock().expect("execs").insert(
        id.clone(),
        Exec {
            container: c.id,
            options: ExecOptions {
                args: body.cmd,
                env: body.env.unwrap_or_default(),
                workdir: Some(body.working_dir).filter(|w| !w.is_empty()),
                user: Some(body.user).filter(|u| !u.is_empty()),
                tty: body.tty,
            },
            stdout: body.attach_stdout,
            stderr: body.attach_stderr,
            running: false,
            exit_code: None,
        },
    );
    json_reply(StatusCode::CREATED, &json!({ "Id": id }))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ExecStartBody {
    detach: bool,
}

/// Run an exec: its output on the hijacked connection (frames, or raw with a terminal)
/// until it ends; `ExitCode` for `GET /exec/{id}/json` then.
pub fn exec_start(server: &Arc<Server>, id: &str, call: Call) -> Reply {
    let body: ExecStartBody = call.json()?;
    let (container, options, stdout, stderr) = {
        let mut execs = server.execs.lock().expect("execs");
        let exec = execs
            .get_mut(id)
            .ok_or_else(|| ApiError::not_found(format!("No such exec instance: {id}")))?;
        if exec.running || exec.exit_code.is_some() {
            return Err(ApiError::conflict(format!("exec {id} has already run")));
        }
        exec.running = true;
        (
            exec.container.clone(),
            exec.options.clone(),
            exec.stdout,
            exec.stderr,
        )
    };
    let store = server.store()?;
    let containers = Containers::open(&store)?;
    let c = get(&containers, &container)?;
    let spec = exec_spec(&containers.spec(&c)?, &options)?;
    let tty = options.tty;
    let sender = match (body.detach, call.upgrade) {
        (false, Some(upgrade)) => Some(hijack(upgrade).0),
        _ => None,
    };
    let server = server.clone();
    let id = id.to_string();
    std::thread::spawn(move || {
        let code = (|| -> anyhow::Result<i32> {
            let store = server.store().map_err(|e| anyhow::anyhow!(e.message))?;
            let containers = Containers::open(&store)?;
            let (out_r, out_w) = rustix::pipe::pipe()?;
            let (err_r, err_w) = rustix::pipe::pipe()?;
            let pump = |from: std::os::fd::OwnedFd, stream: u8, wanted: bool| {
                let sender = sender.clone();
                std::thread::spawn(move || {
                    let mut from = std::fs::File::from(from);
                    match sender.filter(|_| wanted) {
                        Some(sender) => {
                            let mut to = Framed {
                                sender,
                                stream,
                                raw: tty,
                            };
                            let _ = std::io::copy(&mut from, &mut to);
                        }
                        None => {
                            let _ = std::io::copy(&mut from, &mut std::io::sink());
                        }
                    }
                })
            };
            let pumps = [pump(out_r, 1, stdout), pump(err_r, 2, stderr)];
            let code = crate::cli::exec::exec_in(
                &store,
                &containers,
                &c,
                &spec,
                false,
                Some((out_w, err_w)),
            );
            for p in pumps {
                let _ = p.join();
            }
            code
        })();
        let mut execs = server.execs.lock().expect("execs");
        if let Some(exec) = execs.get_mut(&id) {
            exec.running = false;
            exec.exit_code = Some(code.unwrap_or(126));
        }
        drop(sender);
    });
    if body.detach {
        return empty_reply(StatusCode::OK);
    }
    upgraded(tty)
}

pub fn exec_inspect(server: &Arc<Server>, id: &str) -> Reply {
    let execs = server.execs.lock().expect("execs");
    let exec = execs
        .get(id)
        .ok_or_else(|| ApiError::not_found(format!("No such exec instance: {id}")))?;
    json_reply(
        StatusCode::OK,
        &json!({
            "ID": id,
            "ContainerID": exec.container,
            "Running": exec.running,
            "ExitCode": exec.exit_code,
            "ProcessConfig": { "entrypoint": exec.options.args.first(), "arguments": exec.options.args.get(1..), "tty": exec.options.tty },
        }),
    )
}

/// docker's `X-Docker-Container-Path-Stat`: the path's name, size, Go file mode, mtime and
/// link target, as base64 of JSON.
fn path_stat(
    root: &strata_runtime::fs::Overlay<strata_runtime::cap_std::fs::Dir>,
    path: &str,
) -> Result<String, ApiError> {
    use base64::Engine;
    let (st, _) = root
        .stat_resolved(std::ffi::OsStr::new(path), false)
        .map_err(|_| ApiError::not_found(format!("Could not find the file {path} in container")))?;
    let kind = st.st_mode & libc_mode::S_IFMT;
    let mut mode = st.st_mode & 0o777;
    // Go's os.FileMode type bits.
    if kind == libc_mode::S_IFDIR {
        mode |= 1 << 31;
    } else if kind == libc_mode::S_IFLNK {
        mode |= 1 << 27;
    }
    let link = if kind == libc_mode::S_IFLNK {
        root.read_link(std::ffi::OsStr::new(path))
            .map(|l| l.to_string_lossy().into_owned())
            .unwrap_or_default()
    } else {
        String::new()
    };
    let name =
        String::from_utf8_lossy(&crate::cli::cp::top_name(path.as_bytes()).into_encoded_bytes())
            .into_owned();
    let mtime = chrono::DateTime::from_timestamp(st.st_mtime, 0).unwrap_or_default();
    let doc = json!({
        "name": if name == "." { "/".to_string() } else { name },
        "size": st.st_size,
        "mode": mode,
        "mtime": mtime.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "linkTarget": link,
    });
    Ok(base64::engine::general_purpose::STANDARD.encode(doc.to_string()))
}

/// The file-type bits of `st_mode`.
mod libc_mode {
    pub const S_IFMT: u32 = 0o170000;
    pub const S_IFDIR: u32 = 0o040000;
    pub const S_IFLNK: u32 = 0o120000;
}

/// `HEAD`/`GET /containers/{id}/archive?path=…` (`docker cp` out): the path's stat, and
/// for GET a tar of it whose top entry is its base name, from the root `cp` uses.
pub fn archive(store: &Store, key: &str, call: &Call, head: bool) -> Reply {
    let containers = Containers::open(store)?;
    let c = get(&containers, key)?;
    let path = call
        .param("path")
        .filter(|p| !p.is_empty())
        .ok_or_else(|| ApiError::bad("path is required"))?
        .to_string();
    let root = containers.copy_root(&c)?;
    let stat = path_stat(&root.overlay, &path)?;
    let response = Response::builder()
        .status(StatusCode::OK)
        .header("X-Docker-Container-Path-Stat", stat)
        .header("Content-Type", "application/x-tar");
    if head {
        return Ok(response.body(Body::full(Vec::new())).expect("a response"));
    }
    let (sender, body) = Body::channel();
    std::thread::spawn(move || {
        // `root` (and the claim it holds on a stopped container) lives as long as this.
        let top = crate::cli::cp::top_name(path.as_bytes());
        let mut out = ChannelWriter(sender);
        let _ = strata_runtime::container::copy::archive(
            &root.overlay,
            std::ffi::OsStr::new(&path),
            false,
            &top,
            &mut out,
        );
    });
    Ok(response.body(body).expect("a response"))
}

/// A writer into a channel body.
struct ChannelWriter(Sender);

impl std::io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.send(buf.to_vec())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `PUT /containers/{id}/archive?path=DIR` (`docker cp` in): the tar body extracted into
/// the directory, as `cp`'s `extract` does it (nothing outside it, owners root's unless
/// `copyUIDGID`).
pub fn extract(store: &Store, key: &str, call: Call) -> Reply {
    let containers = Containers::open(store)?;
    let c = get(&containers, key)?;
    let path = call
        .param("path")
        .filter(|p| !p.is_empty())
        .ok_or_else(|| ApiError::bad("path is required"))?
        .to_string();
    let owner = if call.flag("copyUIDGID") {
        strata_runtime::container::copy::Owner::FromArchive
    } else {
        strata_runtime::container::copy::Owner::Root
    };
    let root = containers.copy_root(&c)?;
    let dir = match strata_runtime::container::copy::resolve(
        &root.overlay,
        std::ffi::OsStr::new(&path),
        true,
    )? {
        Some((true, dir)) => dir,
        Some((false, _)) => {
            return Err(ApiError::bad(format!(
                "extraction point is not a directory: {path}"
            )))
        }
        None => {
            return Err(ApiError::not_found(format!(
                "Could not find the file {path} in container"
            )))
        }
    };
    let input = call
        .stream
        .ok_or_else(|| ApiError::bad("no archive in the request"))?;
    strata_runtime::container::copy::extract(&root.overlay, &dir, input, owner)?;
    empty_reply(StatusCode::OK)
}

/// `GET /containers/{id}/changes`: `docker diff`'s changes (Kind 0 changed, 1 added, 2
/// deleted).
pub fn changes(store: &Store, key: &str) -> Reply {
    use strata_runtime::fs::ChangeKind;
    let containers = Containers::open(store)?;
    let c = get(&containers, key)?;
    let changes = strata_runtime::fs::changes(&containers.lowers(&c)?, &containers.upper(&c)?)?;
    let out: Vec<Value> = changes
        .iter()
        .map(|ch| {
            let kind = match ch.kind {
                ChangeKind::Changed => 0,
                ChangeKind::Added => 1,
                ChangeKind::Deleted => 2,
            };
            json!({ "Path": ch.path, "Kind": kind })
        })
        .collect();
    json_reply(StatusCode::OK, &Value::Array(out))
}

pub fn rename(store: &Store, key: &str, call: &Call) -> Reply {
    let containers = Containers::open(store)?;
    let c = get(&containers, key)?;
    let name = call
        .param("name")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad("name is required"))?;
    containers.rename(&c, name)?;
    empty_reply(StatusCode::NO_CONTENT)
}

pub fn prune(store: &Store) -> Reply {
    let (deleted, bytes) = crate::cli::prune::prune(store)?;
    json_reply(
        StatusCode::OK,
        &json!({ "ContainersDeleted": deleted, "SpaceReclaimed": bytes }),
    )
}
