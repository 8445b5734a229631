//! The container endpoints besides create (`create.rs`), exec (`exec.rs`) and archives
//! (`archive.rs`): they call what `start`, `stop`, `kill`, `rm`, `logs`, `attach`, `wait`,
//! `diff`, `rename` and `container prune` call.
//!
//! `AutoRemove` is carried out here, as docker's client did before API 1.25: the container
//! is made without `--rm` and removed once its run ends, so a client attached or waiting
//! from before `start` still reads its output and status (the wait/remove race podman's
//! compat API lost, podman#18889).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper::{Response, StatusCode};
use serde_json::{json, Value};
use strata_runtime::container::logs::{LogReader, Query, Sinks};
use strata_runtime::container::monitor::{self, Request};
use strata_runtime::container::{parse_signal, Container, Containers, Status};
use strata_runtime::Store;

use super::images::unix_time;
use super::stream::{hijack, Body, Framed, Sender};
use super::{empty_reply, json_reply, ApiError, Call, Reply, Server};

/// The label that marks a container this server removes when it ends (`AutoRemove`).
pub(super) const AUTO_REMOVE_LABEL: &str = "org.strata.api.auto-remove";

/// A container by name or id, or docker's 404.
pub(super) fn get(containers: &Containers<'_>, key: &str) -> Result<Container, ApiError> {
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
    let condition = call
        .param("condition")
        .filter(|c| !c.is_empty())
        .unwrap_or("not-running")
        .to_string();
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
            // One not running yet, for a condition about its run to come: wait for it to start.
            let c = if c.running() || condition == "not-running" {
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
pub(super) fn upgraded(c_tty: bool) -> Reply {
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

/// The host's CPU time in nanoseconds (`system_cpu_usage`): /proc/stat's first line.
fn system_cpu_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let jiffies: u64 = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    // USER_HZ is 100 on Linux.
    jiffies * 10_000_000
}

/// One reading in docker's stats document's terms.
fn cpu_stats(usage: Option<&strata_runtime::backend::Usage>, system: u64) -> Value {
    json!({
        "cpu_usage": { "total_usage": usage.map_or(0, |u| u.cpu_ns) },
        "system_cpu_usage": system,
        "online_cpus": std::thread::available_parallelism().map_or(1, |n| n.get()),
    })
}

/// `GET /containers/{id}/stats`: docker's document from the monitor's usage probe, two
/// readings apart (`precpu_stats` the first) so a client's CPU % is right; a stream of
/// one a second unless `stream=false`.
pub fn stats(store: &Store, key: &str, call: &Call) -> Reply {
    let containers = Containers::open(store)?;
    let c = get(&containers, key)?;
    let stream = call
        .param("stream")
        .is_none_or(|v| !matches!(v, "0" | "false"));
    let one_shot = call.flag("one-shot");
    let root = store.path().to_path_buf();
    let (sender, body) = Body::channel();
    std::thread::spawn(move || {
        let Ok(store) = Store::open(&root) else {
            return;
        };
        let Ok(containers) = Containers::open(&store) else {
            return;
        };
        let host_memory = crate::cli::info::host_memory();
        let mut before = (
            containers.usage(&c).ok().flatten(),
            system_cpu_ns(),
            chrono::Utc::now(),
        );
        if !one_shot {
            std::thread::sleep(Duration::from_millis(if stream { 1000 } else { 500 }));
        }
        loop {
            let now = (
                containers.usage(&c).ok().flatten(),
                system_cpu_ns(),
                chrono::Utc::now(),
            );
            let u = now.0.as_ref();
            let doc = json!({
                "read": now.2.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
                "preread": before.2.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
                "id": c.id,
                "name": format!("/{}", c.name),
                "pids_stats": { "current": u.map_or(0, |u| u.pids.len()) },
                "cpu_stats": cpu_stats(u, now.1),
                "precpu_stats": cpu_stats(before.0.as_ref(), before.1),
                "memory_stats": {
                    "usage": u.map_or(0, |u| u.memory),
                    "limit": u.and_then(|u| u.memory_limit).unwrap_or(host_memory),
                },
                "networks": { "eth0": {
                    "rx_bytes": u.map_or(0, |u| u.net_rx),
                    "tx_bytes": u.map_or(0, |u| u.net_tx),
                } },
                "blkio_stats": { "io_service_bytes_recursive": [
                    { "op": "read", "value": u.map_or(0, |u| u.block_read) },
                    { "op": "write", "value": u.map_or(0, |u| u.block_write) },
                ] },
            });
            if sender.json(&doc).is_err() || !stream || u.is_none() {
                return;
            }
            before = now;
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header("Content-Type", "application/json")
        .body(body)
        .expect("a response"))
}

/// `POST /containers/{id}/resize?h=ROWS&w=COLS`: its terminal's size, through its monitor.
pub fn resize(store: &Store, key: &str, call: &Call) -> Reply {
    let containers = Containers::open(store)?;
    let c = get(&containers, key)?;
    containers.resize(&c, call.number("h")?, call.number("w")?)?;
    empty_reply(StatusCode::OK)
}

/// `GET /containers/{id}/top?ps_args=…`: `strata top`'s rows.
pub fn top(store: &Store, key: &str, call: &Call) -> Reply {
    let containers = Containers::open(store)?;
    let c = get(&containers, key)?;
    if !c.running() {
        return Err(ApiError::conflict(format!(
            "container {} is not running",
            c.id
        )));
    }
    let args: Vec<String> = call
        .param("ps_args")
        .map(|a| a.split_whitespace().map(String::from).collect())
        .unwrap_or_default();
    let (titles, rows) = crate::cli::top::top(&containers, &c, &args)?;
    json_reply(
        StatusCode::OK,
        &json!({ "Titles": titles, "Processes": rows }),
    )
}
