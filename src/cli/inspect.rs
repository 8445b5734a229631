use anyhow::Result;
use serde_json::{json, Value};
use strata_runtime::store::Image;
use strata_runtime::{Reference, Store};

use crate::format::print_inspected;

#[derive(clap::Args)]
pub struct Args {
    /// Format output using a Go-style template, e.g. '{{.Id}}' or '{{json .Config}}'
    #[arg(short, long)]
    format: Option<String>,
    /// Only look at this type of object: container or image
    #[arg(long = "type", value_parser = ["container", "image"])]
    pub kind: Option<String>,
    /// Containers or images (a container wins, as in `docker inspect` without --type)
    #[arg(required = true, value_name = "CONTAINER|IMAGE")]
    images: Vec<String>,
}

impl Args {
    pub fn run(self, store: &Store) -> Result<()> {
        let mut out = Vec::new();
        let containers = strata_runtime::container::Containers::open(store)?;
        for name in &self.images {
            // docker's order without --type: a container, then an image (so a container
            // named `c` is not taken for an image whose ID starts with c).
            if self.kind.as_deref() != Some("image") {
                match containers.get(name) {
                    Ok(c) => {
                        out.push(describe_container(store, &containers, &c));
                        continue;
                    }
                    Err(e) if self.kind.is_some() => return Err(e.into()),
                    Err(_) => {}
                }
            }
            out.push(describe(store, &store.resolve(name)?));
        }
        print_inspected(self.format.as_deref(), out)
    }
}

/// docker's `image inspect` shape.
pub fn describe(store: &Store, image: &Image) -> Value {
    let refs: Vec<Reference> = image
        .names
        .iter()
        .filter_map(|n| Reference::parse(n).ok())
        .collect();
    let repo_tags: Vec<String> = refs
        .iter()
        .filter(|r| r.tag().is_some())
        .map(|r| r.familiar())
        .collect();
    let mut repo_digests: Vec<String> = refs
        .iter()
        .map(|r| format!("{}@{}", r.familiar_repository(), image.digest()))
        .collect();
    repo_digests.dedup();
    let config = &image.config;
    json!({
        "Id": image.id(),
        "RepoTags": repo_tags,
        "RepoDigests": repo_digests,
        "Parent": "",
        "Comment": config.extra.get("comment").cloned().unwrap_or(json!("")),
        "Created": config.created.clone().unwrap_or_default(),
        "Author": config.author.clone().unwrap_or_default(),
        "Config": config.config.clone().unwrap_or_default(),
        "Architecture": config.architecture,
        "Variant": config.variant,
        "Os": config.os,
        "Size": super::image_size(store, image),
        "RootFS": { "Type": "layers", "Layers": config.rootfs.diff_ids },
        "Descriptor": image.manifest_descriptor,
        "Manifest": { "Layers": image.manifest.layers },
    })
}

/// docker's `container inspect` shape (the parts Strata has).
pub(crate) fn describe_container(
    store: &Store,
    containers: &strata_runtime::container::Containers<'_>,
    c: &strata_runtime::container::Container,
) -> Value {
    use strata_runtime::container::Status;
    let spec = containers.spec(c).ok();
    let process = spec.as_ref().and_then(|s| s.process().clone());
    let args = process
        .as_ref()
        .and_then(|p| p.args().clone())
        .unwrap_or_default();
    let status = super::ps::state(c);
    let running = matches!(c.status, Status::Running | Status::Paused);
    let (restart, retries) = c.host.restart.name();
    let dir = containers.path(c);
    let mut described = json!({
        "Id": c.id,
        "Created": c.created,
        "Path": args.first().cloned().unwrap_or_default(),
        "Args": args.get(1..).unwrap_or_default(),
        "State": {
            "Status": status,
            "Running": running,
            "Paused": c.status == Status::Paused,
            "Restarting": c.status == Status::Restarting,
            "OOMKilled": c.oom_killed,
            "Dead": false,
            "Pid": c.pid.filter(|_| running).unwrap_or(0),
            "ExitCode": c.exit_code.unwrap_or(0),
            "Error": c.error.clone().unwrap_or_default(),
            "StartedAt": c.started_at.clone().unwrap_or_default(),
            "FinishedAt": c.finished_at.clone().unwrap_or_default(),
        },
        "Image": c.image_id,
        "LogPath": dir.join(strata_runtime::container::logs::file_name(&c.id)),
        "Name": format!("/{}", c.name),
        "RestartCount": c.restart_count,
        "HostConfig": {
            "RestartPolicy": { "Name": restart, "MaximumRetryCount": retries },
            "AutoRemove": c.auto_remove,
            "LogConfig": {
                "Type": if c.host.log.disabled { "none" } else { "json-file" },
                "Config": log_config(&c.host.log),
            },
        },
        "Mounts": c.mounts.iter().map(describe_mount).collect::<Vec<_>>(),
        "Driver": "overlay",
        "Platform": match c.runtime {
            strata_runtime::backend::Kind::Native => "linux",
            strata_runtime::backend::Kind::Wasm => "wasi",
        },
        "Config": {
            "Hostname": spec.as_ref().and_then(|s| s.hostname().clone()).unwrap_or_default(),
            "User": process.as_ref().and_then(|p| p.user().username().clone()).unwrap_or_default(),
            "Env": process.as_ref().and_then(|p| p.env().clone()).unwrap_or_default(),
            "Cmd": args,
            "Image": c.image,
            "WorkingDir": process.as_ref().map(|p| p.cwd().display().to_string()).unwrap_or_default(),
            "Tty": process.as_ref().and_then(|p| p.terminal()).unwrap_or(false),
            "OpenStdin": c.host.open_stdin,
            "StdinOnce": c.host.stdin_once,
            "StopSignal": c.host.stop_signal.clone().unwrap_or_default(),
            "StopTimeout": c.host.stop_timeout,
            "Labels": super::ps::labels(store, c),
        },
    });
    // docker shows these only when there are some.
    if let Some(h) = &c.host.healthcheck {
        described["Config"]["Healthcheck"] = json!(h);
    }
    if let Some(h) = containers.health(c) {
        described["State"]["Health"] = json!(h);
    }
    described
}

/// One of `Mounts`, as docker shows it: a volume's name and driver, a bind's propagation.
fn describe_mount(m: &strata_runtime::container::MountPoint) -> Value {
    use strata_runtime::container::MountKind;
    let mut d = json!({
        "Type": m.kind.as_str(),
        "Source": m.source,
        "Destination": m.destination,
        "Mode": "",
        "RW": m.rw,
        "Propagation": if m.kind == MountKind::Bind { "rprivate" } else { "" },
    });
    if let Some(name) = &m.name {
        d["Name"] = json!(name);
        d["Driver"] = json!("local");
    }
    d
}

/// `--log-opt`s as docker shows them.
fn log_config(log: &strata_runtime::container::LogOptions) -> Value {
    let mut config = serde_json::Map::new();
    if let Some(size) = log.max_size {
        config.insert("max-size".into(), json!(size.to_string()));
    }
    if let Some(n) = log.max_file {
        config.insert("max-file".into(), json!(n.to_string()));
    }
    Value::Object(config)
}
