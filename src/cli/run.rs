use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use strata_runtime::backend::{Backends, Kind, Stdio, Stream};
use strata_runtime::container::{
    parse_mount, parse_publish, parse_signal, parse_size, parse_ulimit, parse_volume,
    parse_volumes_from, valid_name, Container, Containers, HostConfig, LogOptions, Network,
    PortMapping, RestartPolicy, RunOptions,
};
use strata_runtime::store::Image;
use strata_runtime::wasm::WasmBackend;
use strata_runtime::{ErrorKind, Store};

/// `-P`: the image's exposed ports ("80/tcp", read by the one `-p` parser) not published
/// otherwise, each on a port the kernel picks.
fn exposed_ports(
    config: &strata_runtime::image::ImageConfig,
    published: &[PortMapping],
) -> Result<Vec<PortMapping>> {
    let exposed = config
        .config
        .as_ref()
        .and_then(|c| c.exposed_ports.as_ref());
    let mut out = Vec::new();
    for key in exposed.into_iter().flat_map(|e| e.keys()) {
        for port in parse_publish(key)? {
            let taken =
                |p: &PortMapping| (p.container_port, p.proto) == (port.container_port, port.proto);
            if !published.iter().any(taken) {
                out.push(port);
            }
        }
    }
    Ok(out)
}

/// The two backends, for containers of `store`.
pub fn backends(store: &Store) -> Result<(strata_native::NativeBackend, WasmBackend)> {
    Ok((
        strata_native::NativeBackend {
            state: store.path().to_path_buf(),
        },
        WasmBackend {
            cache: store.cache_path(strata_runtime::wasm::CACHE)?,
        },
    ))
}

#[derive(clap::Args)]
pub struct Args {
    /// Run container in background and print container ID
    #[arg(short, long)]
    detach: bool,
    #[command(flatten)]
    container: ContainerArgs,
}

/// What `run` and `create` share: the container to make.
#[derive(clap::Args)]
pub struct ContainerArgs {
    /// Automatically remove the container when it exits
    #[arg(long)]
    rm: bool,
    /// Restart policy to apply when a container exits: no, on-failure[:max-retries], always, unless-stopped
    #[arg(long, default_value = "no")]
    restart: String,
    /// Signal to stop the container
    #[arg(long = "stop-signal")]
    stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container
    #[arg(long = "stop-timeout", allow_hyphen_values = true)]
    stop_timeout: Option<i64>,
    /// Logging driver for the container: json-file (or none)
    #[arg(long = "log-driver", default_value = "json-file", value_parser = ["json-file", "none"])]
    log_driver: String,
    /// Log driver options: max-size=SIZE, max-file=N
    #[arg(long = "log-opt", value_name = "KEY=VALUE")]
    log_opts: Vec<String>,
    /// Assign a name to the container
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    health: HealthArgs,
    /// Set meta data on a container
    #[arg(short, long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// Read in a line delimited file of labels
    #[arg(long = "label-file", value_name = "FILE")]
    label_files: Vec<std::path::PathBuf>,
    /// Set environment variables
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file", value_name = "FILE")]
    env_files: Vec<std::path::PathBuf>,
    /// Working directory inside the container
    #[arg(short, long)]
    workdir: Option<String>,
    /// Bind mount a host path or mount a volume: [HOST-PATH|NAME:]CONTAINER-PATH[:OPTIONS]
    #[arg(short, long = "volume", value_name = "[SRC:]DST[:ro]")]
    volumes: Vec<String>,
    /// Attach a filesystem mount: type=bind|volume|tmpfs,src=…,dst=…[,readonly]
    #[arg(long = "mount", value_name = "MOUNT")]
    mounts: Vec<String>,
    /// Mount the volumes of the specified container(s): CONTAINER[:ro|rw]
    #[arg(long = "volumes-from", value_name = "CONTAINER")]
    volumes_from: Vec<String>,
    /// Mount a fresh tmpfs: DIR[:OPTIONS] (e.g. /run:size=64m,mode=1777)
    #[arg(long = "tmpfs", value_name = "DIR")]
    tmpfs: Vec<String>,
    /// Keep STDIN open
    #[arg(short, long)]
    interactive: bool,
    /// Run an init inside the container that forwards signals and reaps processes
    #[arg(long)]
    init: bool,
    /// Allocate a pseudo-TTY (native containers)
    #[arg(short, long)]
    tty: bool,
    /// Memory limit (e.g. 64m, 1g)
    #[arg(short, long)]
    memory: Option<String>,
    /// Number of CPUs (native)
    #[arg(long)]
    cpus: Option<String>,
    /// Tune container pids limit, -1 for unlimited (native)
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pids_limit: Option<i64>,
    /// Ulimit options, e.g. nofile=1024:2048 (native)
    #[arg(long = "ulimit", value_name = "NAME=SOFT[:HARD]")]
    ulimits: Vec<String>,
    /// Container host name
    #[arg(long)]
    hostname: Option<String>,
    /// A wasi:http handler: how many instances serve requests at once; more wait (default 100)
    #[arg(long = "http-max-instances", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    http_max_instances: Option<u32>,
    /// A wasi:http handler: a request's wall time (a Go duration, e.g. 30s), after which it fails with 500 (default 60s)
    #[arg(long = "http-timeout", value_name = "DURATION")]
    http_timeout: Option<String>,
    /// Connect a container to a network: bridge, none, host (native), container:<name|id> or a network made by `network create` [default: bridge when ports are published, else none (for now)]
    #[arg(long)]
    network: Option<String>,
    /// Add network-scoped alias for the container
    #[arg(long = "network-alias", value_name = "ALIAS")]
    network_aliases: Vec<String>,
    /// Publish a container's port(s) to the host ([ip:][hostPort:]containerPort[/tcp|udp])
    #[arg(short = 'p', long = "publish", value_name = "PORT")]
    publish: Vec<String>,
    /// Publish all exposed ports to random ports
    #[arg(short = 'P', long = "publish-all")]
    publish_all: bool,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    entrypoint: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short, long)]
    user: Option<String>,
    /// Backend: wasm or native (default: chosen from the image)
    #[arg(long)]
    runtime: Option<String>,
    /// Pull the image before running: missing, always or never
    #[arg(long, default_value = "missing", value_parser = ["missing", "always", "never"])]
    pull: String,
    /// Platform to pull (e.g. wasi/wasm)
    #[arg(long)]
    platform: Option<String>,
    #[command(flatten)]
    registry: super::pull::RegistryFlags,
    image: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

impl Args {
    /// Exits with the container's status, or docker's 125/126/127 when it cannot run.
    pub fn run(self, store: &Store) -> ExitCode {
        exit_with(self.execute(store))
    }

    fn execute(self, store: &Store) -> Result<i32> {
        let containers = Containers::open(store)?;
        let (mut container, spec, _writer) = self.container.create(
            store,
            &containers,
            if self.detach {
                Mode::Detached
            } else {
                Mode::Foreground
            },
        )?;
        if self.detach {
            let id = container.id.clone();
            super::monitor::start(store, &container)?;
            println!("{id}");
            return Ok(0);
        }
        // The claim is free: the container was just made.
        let claim = containers
            .claim(&container)?
            .ok_or_else(|| anyhow!("container {} is already running", container.id))?;
        let (native, wasm) = backends(store)?;
        let networks = strata_net::Networks::open(store);
        let backends = Backends {
            native: &native,
            wasm: &wasm,
            network: Some(&networks),
        };
        let stdio = Stdio {
            stdin: self.container.interactive.then_some(Stream::Inherit),
            ..Stdio::default()
        };
        let exit = containers.run(&claim, &mut container, &spec, &backends, stdio, &mut |_| {})?;
        if let Some(msg) = &exit.message {
            eprintln!("Error: {msg}");
        }
        Ok(exit.code)
    }
}

/// Who will run a container being made: this `run` (no record kept if it is `--rm`), its
/// monitor now (`run -d`), or a later `start` (`create`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Foreground,
    Detached,
    Created,
}

/// Exit with a container's status, or docker's 125/126/127 (and the error) when it could
/// not run.
pub fn exit_with(outcome: Result<i32>) -> ExitCode {
    match outcome {
        Ok(code) => ExitCode::from(code as u8),
        Err(err) => {
            let code = err
                .downcast_ref::<strata_runtime::Error>()
                .map_or(125, |e| e.exit_code());
            let chain: Vec<String> = err.chain().map(|c| c.to_string()).collect();
            eprintln!("Error: {}", crate::dedup_chain(&chain));
            ExitCode::from(code as u8)
        }
    }
}

impl ContainerArgs {
    /// The image, pulled first when `--pull` says so (docker's `missing` by default).
    fn image(&self, store: &Store) -> Result<Image> {
        let local = store.resolve(&self.image);
        let wanted = |e: &strata_runtime::Error| e.kind() == ErrorKind::NotFound;
        match (self.pull.as_str(), local) {
            ("never", Err(e)) if wanted(&e) => {
                Err(anyhow!("Unable to find image '{}' locally", self.image))
            }
            ("never", r) | ("missing", r @ Ok(_)) => Ok(r?),
            (mode, r) => {
                if let Err(e) = &r {
                    if !wanted(e) {
                        return Err(anyhow!("{e}"));
                    }
                }
                if mode == "missing" {
                    eprintln!("Unable to find image '{}' locally", self.image);
                }
                let reference = strata_runtime::Reference::parse(&self.image)?;
                let opts = self.registry.options(self.platform.as_deref())?;
                // Docker's pull lines, on stderr: stdout is the container's.
                let lines = crate::progress::Lines::new(crate::progress::Stream::Stderr);
                super::pull::pull(store, &reference, &opts, Some(&lines))
                    .map_err(|e| anyhow!("pull {}: {e:#}", self.image))
            }
        }
    }

    /// The container these flags ask for, made but not run; its record is written when it is
    /// to be `kept` (for other commands to start), else first when it starts, under the
    /// store's writer lock returned here.
    pub fn create(
        &self,
        store: &Store,
        containers: &Containers<'_>,
        mode: Mode,
    ) -> Result<(
        Container,
        strata_runtime::oci_spec::runtime::Spec,
        strata_runtime::store::Lock,
    )> {
        let image = self.image(store)?;
        let mut env = Vec::new();
        for file in &self.env_files {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("read env file {}", file.display()))?;
            env.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(String::from),
            );
        }
        env.extend(self.env.iter().cloned());
        let mut opts = RunOptions {
            name: self.name.clone(),
            entrypoint: self.entrypoint.clone(),
            args: self.args.clone(),
            env,
            workdir: self.workdir.clone(),
            user: self.user.clone(),
            mounts: {
                let cwd = std::env::current_dir().context("the current directory")?;
                let volumes = self.volumes.iter().map(|v| parse_volume(v, &cwd));
                let mounts = self.mounts.iter().map(|m| parse_mount(m, &cwd));
                volumes
                    .chain(mounts)
                    .collect::<strata_runtime::Result<_>>()?
            },
            volumes_from: self
                .volumes_from
                .iter()
                .map(|v| parse_volumes_from(v))
                .collect::<strata_runtime::Result<_>>()?,
            binds: Vec::new(),
            tmpfs: self.tmpfs.clone(),
            memory: self
                .memory
                .as_deref()
                .map(|m| {
                    parse_size(m).ok_or_else(|| {
                        anyhow!("invalid size {m:?}: expected a number with an optional k, m or g suffix")
                    })
                })
                .transpose()?,
            cpus: self.cpus.as_deref().map(parse_cpus).transpose()?,
            pids_limit: self.pids_limit,
            ulimits: self
                .ulimits
                .iter()
                .map(|u| parse_ulimit(u))
                .collect::<strata_runtime::Result<_>>()?,
            tty: self.tty,
            stdin: self.interactive,
            init: self.init,
            hostname: self.hostname.clone(),
            http_max_instances: self.http_max_instances.map(|n| n as usize),
            http_timeout: self
                .http_timeout
                .as_deref()
                .map(|s| {
                    strata_builder::dockerfile::instructions::parse_go_duration(s)
                        .ok()
                        .filter(|&ns| ns > 0)
                        .map(|ns| std::time::Duration::from_nanos(ns as u64))
                        .ok_or_else(|| anyhow!("invalid argument {s:?} for \"--http-timeout\" flag: a positive duration, e.g. 30s"))
                })
                .transpose()?,
            host: HostConfig {
                // docker: `create -i` (attached later by `start -ai`) closes the
                // container's stdin when its attacher's ends; `run -di` keeps it open.
                stdin_once: self.interactive && mode == Mode::Created,
                ..self.host_config()?
            },
        };
        if let Network::Named(name) = &opts.host.network {
            // As docker: no container is made for a network that does not exist.
            strata_net::Networks::open(store).get(name)?;
        }
        if self.publish_all {
            opts.host
                .publish
                .extend(exposed_ports(&image.config, &opts.host.publish)?);
        }
        let writer = store.writer_lock()?;
        let forced = self.runtime.as_deref().map(Kind::parse).transpose()?;
        let (container, spec) =
            containers.create_for(&image, &self.image, &opts, self.rm, forced)?;
        if mode != Mode::Foreground {
            containers.save(&container)?;
        }
        Ok((container, spec, writer))
    }

    /// The monitor's part of the flags.
    fn host_config(&self) -> Result<HostConfig> {
        let mut log = LogOptions::default();
        for opt in &self.log_opts {
            log.set(opt)?;
        }
        if let Some(sig) = &self.stop_signal {
            parse_signal(sig)?;
        }
        let restart = RestartPolicy::parse(&self.restart)?;
        if self.rm && restart != RestartPolicy::No {
            return Err(anyhow!(
                "conflicting options: cannot specify both --restart and --rm"
            ));
        }
        // docker: the files first, then the flags; `KEY` alone is an empty value.
        let mut labels = std::collections::BTreeMap::new();
        for file in &self.label_files {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("read label file {}", file.display()))?;
            for line in text.lines().map(str::trim) {
                if !line.is_empty() && !line.starts_with('#') {
                    let (k, v) = line.split_once('=').unwrap_or((line, ""));
                    labels.insert(k.to_string(), v.to_string());
                }
            }
        }
        for label in &self.labels {
            let (k, v) = label.split_once('=').unwrap_or((label, ""));
            labels.insert(k.to_string(), v.to_string());
        }
        let mut publish = Vec::new();
        for p in &self.publish {
            publish.extend(parse_publish(p)?);
        }
        // Published ports go nowhere without a network: they choose docker's default.
        let default_network = if publish.is_empty() && !self.publish_all {
            "none"
        } else {
            "bridge"
        };
        let network = Network::parse(self.network.as_deref().unwrap_or(default_network))?;
        if (!publish.is_empty() || self.publish_all) && !network.attaches() {
            // docker ignores them with a warning; a port that silently goes nowhere is worse.
            return Err(anyhow!(
                "published ports need a network: --network {network} has none (use --network bridge)"
            ));
        }
        if let Some(h) = &self.hostname {
            if !valid_hostname(h) {
                return Err(anyhow!("invalid hostname format: {h}"));
            }
            if matches!(network, Network::Container(_)) {
                return Err(anyhow!(
                    "conflicting options: hostname and the network mode"
                ));
            }
        }
        if let Some(bad) = self.network_aliases.iter().find(|a| !valid_name(a)) {
            return Err(anyhow!(
                "invalid network alias {bad:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            ));
        }
        if !self.network_aliases.is_empty() && !matches!(network, Network::Named(_)) {
            return Err(anyhow!(
                "network-scoped aliases are only supported for user-defined networks"
            ));
        }
        Ok(HostConfig {
            restart,
            stop_signal: self.stop_signal.clone(),
            stop_timeout: self.stop_timeout,
            log: LogOptions {
                disabled: self.log_driver == "none",
                ..log
            },
            open_stdin: self.interactive,
            stdin_once: false,
            labels,
            healthcheck: self.health.healthcheck()?,
            shell: None,
            network,
            aliases: self.network_aliases.clone(),
            publish,
        })
    }
}

/// A healthcheck's `test` list as docker's engine takes it (`["NONE"]`, `["CMD-SHELL",
/// command]`, `["CMD", words…]`) as the flags `run` takes: the exec form a shell command
/// of its words quoted. For the API's create body and compose files.
pub(crate) fn health_test_flags(test: &[String]) -> Result<Vec<String>> {
    let cmd = |c: String| vec!["--health-cmd".to_string(), c];
    Ok(match test.first().map(String::as_str) {
        None => Vec::new(),
        Some("NONE") => vec!["--no-healthcheck".into()],
        Some("CMD-SHELL") => cmd(test[1..].join(" ")),
        Some("CMD") => cmd(test[1..]
            .iter()
            .map(|w| format!("'{}'", w.replace('\'', r"'\''")))
            .collect::<Vec<_>>()
            .join(" ")),
        Some(other) => {
            return Err(anyhow!(
                "healthcheck test {other:?}: it must start with CMD, CMD-SHELL or NONE"
            ))
        }
    })
}

/// docker's health check flags (the image's HEALTHCHECK otherwise).
#[derive(clap::Args)]
struct HealthArgs {
    /// Command to run to check health
    #[arg(long = "health-cmd")]
    cmd: Option<String>,
    /// Time between running the check (ms|s|m|h) (default 0s)
    #[arg(long = "health-interval", allow_hyphen_values = true)]
    interval: Option<String>,
    /// Maximum time to allow one check to run (ms|s|m|h) (default 0s)
    #[arg(long = "health-timeout", allow_hyphen_values = true)]
    timeout: Option<String>,
    /// Start period for the container to initialize before starting health-retries countdown (ms|s|m|h) (default 0s)
    #[arg(long = "health-start-period", allow_hyphen_values = true)]
    start_period: Option<String>,
    /// Time between running the check during the start period (ms|s|m|h) (default 0s)
    #[arg(long = "health-start-interval", allow_hyphen_values = true)]
    start_interval: Option<String>,
    /// Consecutive failures needed to report unhealthy
    #[arg(long = "health-retries", allow_hyphen_values = true)]
    retries: Option<i64>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long = "no-healthcheck")]
    none: bool,
}

impl HealthArgs {
    fn healthcheck(&self) -> Result<Option<strata_runtime::container::health::Healthcheck>> {
        // Go durations, as docker's flags take them.
        let duration = |flag: &str, v: &Option<String>| -> Result<i64> {
            v.as_deref().map_or(Ok(0), |s| {
                strata_builder::dockerfile::instructions::parse_go_duration(s)
                    .map_err(|e| anyhow!("invalid argument {s:?} for \"--{flag}\" flag: {e}"))
            })
        };
        let flags = strata_runtime::container::health::HealthFlags {
            cmd: self.cmd.clone(),
            interval: duration("health-interval", &self.interval)?,
            timeout: duration("health-timeout", &self.timeout)?,
            start_period: duration("health-start-period", &self.start_period)?,
            start_interval: duration("health-start-interval", &self.start_interval)?,
            retries: self.retries.unwrap_or(0),
            none: self.none,
        };
        Ok(flags.healthcheck()?)
    }
}

/// RFC 1123 host names, as docker checks `--hostname`: dot-separated labels of letters,
/// digits and inner hyphens, each at most 63 bytes.
fn valid_hostname(h: &str) -> bool {
    h.len() <= 253
        && h.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// `--cpus 1.5`: a positive number of CPUs.
fn parse_cpus(s: &str) -> Result<f64> {
    match s.parse::<f64>() {
        Ok(n) if n > 0.0 && n.is_finite() => Ok(n),
        _ => Err(anyhow!("invalid --cpus {s:?}: expected a positive number")),
    }
}
