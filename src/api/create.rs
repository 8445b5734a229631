//! `POST /containers/create`: docker's body turned into the flags `strata create` takes and
//! parsed by the CLI's own parser, so a container made through the API is made by the same
//! code, with the same checks and words, as one made by `strata create`.

use std::collections::BTreeMap;

use clap::Parser;
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::json;
use strata_runtime::container::Containers;
use strata_runtime::Store;

use super::containers::AUTO_REMOVE_LABEL;
use super::{json_reply, ApiError, Call, Reply};

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
        // A test of another kind sets no check, as before.
        a.extend(crate::cli::run::health_test_flags(&h.test).unwrap_or_default());
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
