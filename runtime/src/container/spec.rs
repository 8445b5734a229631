//! The OCI runtime `Spec` of a container: its process (arguments, environment, user,
//! capabilities, limits), mounts, resources and namespaces, with docker's defaults.

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxMemoryBuilder,
    LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder, LinuxResourcesBuilder, Mount,
    MountBuilder, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

use super::{Network, RunOptions};
use crate::error::{Error, Result};
use crate::image::ImageConfig;

/// Docker's default capability set: what a container's root keeps, and no other.
pub const DEFAULT_CAPABILITIES: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Docker's masked paths: hidden behind /dev/null (files) or an empty read-only tmpfs (dirs).
pub const MASKED_PATHS: [&str; 12] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's read-only paths.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The default PATH docker gives Linux containers that set none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's rules: `--entrypoint` replaces ENTRYPOINT (and drops CMD); arguments replace CMD;
/// the process is ENTRYPOINT followed by CMD.
pub fn process_args(config: &ImageConfig, opts: &RunOptions) -> Result<Vec<String>> {
    let c = config.config.clone().unwrap_or_default();
    let entrypoint = match &opts.entrypoint {
        Some(e) if e.is_empty() => Vec::new(),
        Some(e) => vec![e.clone()],
        None => c.entrypoint.unwrap_or_default(),
    };
    let cmd = if !opts.args.is_empty() {
        opts.args.clone()
    } else if opts.entrypoint.is_some() {
        Vec::new()
    } else {
        c.cmd.unwrap_or_default()
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(Error::InvalidArgument("no command specified".into()));
    }
    Ok(args)
}

/// The environment: the image's Env, then `-e`/`--env-file` in order (later wins), with
/// PATH defaulted for Linux images as docker does.
pub fn process_env(config: &ImageConfig, opts: &RunOptions, hostname: &str) -> Vec<String> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: &str| match env.iter_mut().find(|(key, _)| key == k) {
        Some(e) => e.1 = v.to_string(),
        None => env.push((k.to_string(), v.to_string())),
    };
    let linux = !config.platform().is_wasm();
    if linux {
        set("PATH", DEFAULT_PATH);
    }
    for e in config
        .config
        .as_ref()
        .and_then(|c| c.env.as_ref())
        .into_iter()
        .flatten()
    {
        let (k, v) = e.split_once('=').unwrap_or((e, ""));
        set(k, v);
    }
    if linux {
        set("HOSTNAME", hostname);
        if opts.tty {
            set("TERM", "xterm");
        }
    }
    for e in &opts.env {
        match e.split_once('=') {
            Some((k, v)) => set(k, v),
            None => {
                if let Ok(v) = std::env::var(e) {
                    set(e, &v);
                }
            }
        }
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// The image's exposed ports and the published ones (`80/tcp,8080/tcp`), as the OCI
/// image spec's conversion names them.
pub const ANNOTATION_EXPOSED_PORTS: &str = "org.opencontainers.image.exposedPorts";
/// `--http-max-instances` and `--http-timeout` (in milliseconds), for a wasi:http handler.
pub const ANNOTATION_HTTP_MAX_INSTANCES: &str = "org.strata.http.max-instances";
pub const ANNOTATION_HTTP_TIMEOUT_MS: &str = "org.strata.http.timeout-ms";

/// The spec's annotations: the container's ports (exposed by the image or published, as
/// docker lists both in `Config.ExposedPorts`) and how a wasi:http handler is served.
fn annotations(
    config: &ImageConfig,
    opts: &RunOptions,
) -> std::collections::HashMap<String, String> {
    // EXPOSE keys through the one port parser (an invalid one names nothing to serve and
    // is left out, as it would be unreachable).
    let exposed = config
        .config
        .as_ref()
        .and_then(|c| c.exposed_ports.as_ref())
        .into_iter()
        .flat_map(|e| e.keys())
        .flat_map(|key| super::parse_publish(key).unwrap_or_default());
    let mut ports: Vec<String> = Vec::new();
    for p in exposed.chain(opts.host.publish.iter().cloned()) {
        let key = format!("{}/{}", p.container_port, p.proto);
        if !ports.contains(&key) {
            ports.push(key);
        }
    }
    let mut annotations = std::collections::HashMap::new();
    if !ports.is_empty() {
        annotations.insert(ANNOTATION_EXPOSED_PORTS.to_string(), ports.join(","));
    }
    if let Some(n) = opts.http_max_instances {
        annotations.insert(ANNOTATION_HTTP_MAX_INSTANCES.to_string(), n.to_string());
    }
    if let Some(t) = opts.http_timeout {
        annotations.insert(
            ANNOTATION_HTTP_TIMEOUT_MS.to_string(),
            t.as_millis().to_string(),
        );
    }
    annotations
}

/// The OCI runtime spec for a container of `image`.
pub fn make_spec(config: &ImageConfig, opts: &RunOptions, hostname: &str) -> Result<Spec> {
    let c = config.config.clone().unwrap_or_default();
    let mut args = process_args(config, opts)?;
    let init = if opts.init {
        if config.platform().is_wasm() {
            return Err(Error::InvalidArgument(
                "--init applies to native containers: a Wasm guest has no processes to reap".into(),
            ));
        }
        args.splice(0..0, [INIT_PATH.to_string(), "--".to_string()]);
        Some(init_binary()?)
    } else {
        None
    };
    let cwd = opts
        .workdir
        .clone()
        .or(c.working_dir.filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        return Err(Error::InvalidArgument(format!(
            "the working directory {cwd:?} is invalid, it needs to be an absolute path"
        )));
    }
    let user = opts.user.clone().or(c.user).unwrap_or_default();
    let (uid, gid) = numeric_user(&user);
    let bad = |e: oci_spec::OciSpecError| Error::InvalidArgument(format!("runtime spec: {e}"));
    let native = !config.platform().is_wasm();
    let mut user_spec = UserBuilder::default().uid(uid).gid(gid);
    if native && !user.is_empty() {
        // Names are resolved through the container's own /etc/passwd when it starts.
        user_spec = user_spec.username(user.clone());
    }
    let mut process = ProcessBuilder::default()
        .args(args)
        .env(process_env(config, opts, hostname))
        .cwd(cwd)
        .terminal(opts.tty)
        .user(user_spec.build().map_err(bad)?);
    if native {
        let caps: oci_spec::runtime::Capabilities = DEFAULT_CAPABILITIES.into_iter().collect();
        process = process
            .capabilities(
                LinuxCapabilitiesBuilder::default()
                    .bounding(caps.clone())
                    .effective(caps.clone())
                    .permitted(caps)
                    .build()
                    .map_err(bad)?,
            )
            .no_new_privileges(true)
            .rlimits(opts.ulimits.clone());
    }
    let process = process.build().map_err(bad)?;
    let mut mounts: Vec<Mount> = Vec::new();
    for b in &opts.binds {
        let mut options = vec!["rbind".to_string()];
        options.push(if b.read_only { "ro" } else { "rw" }.to_string());
        mounts.push(
            MountBuilder::default()
                .destination(&b.container)
                .typ("bind")
                .source(&b.host)
                .options(options)
                .build()
                .map_err(bad)?,
        );
    }
    if let Some(init) = init {
        mounts.push(
            MountBuilder::default()
                .destination(INIT_PATH)
                .typ("bind")
                .source(init)
                .options(vec!["rbind".to_string(), "ro".to_string()])
                .build()
                .map_err(bad)?,
        );
    }
    for t in &opts.tmpfs {
        // `DIR[:OPTIONS]`: the options are tmpfs's own (`size=64m,mode=1770,ro`).
        let (dir, extra) = t.split_once(':').unwrap_or((t, ""));
        let mut options = vec!["nosuid".to_string(), "nodev".to_string()];
        options.extend(extra.split(',').filter(|o| !o.is_empty()).map(String::from));
        mounts.push(
            MountBuilder::default()
                .destination(dir)
                .typ("tmpfs")
                .source("tmpfs")
                .options(options)
                .build()
                .map_err(bad)?,
        );
    }
    let mut linux = LinuxBuilder::default();
    let mut resources = LinuxResourcesBuilder::default();
    if let Some(limit) = opts.memory {
        resources = resources.memory(
            LinuxMemoryBuilder::default()
                .limit(limit as i64)
                .build()
                .map_err(bad)?,
        );
    }
    if let Some(cpus) = opts.cpus {
        let period = 100_000u64;
        resources = resources.cpu(
            LinuxCpuBuilder::default()
                .period(period)
                .quota((cpus * period as f64).round() as i64)
                .build()
                .map_err(bad)?,
        );
    }
    if let Some(limit) = opts.pids_limit {
        resources = resources.pids(
            LinuxPidsBuilder::default()
                .limit(limit)
                .build()
                .map_err(bad)?,
        );
    }
    linux = linux.resources(resources.build().map_err(bad)?);
    // A network namespace is every network but the host's: its own, or another container's
    // (`container:`, whose path the runner fills in for each run; an `exec` joins the
    // container's); for a Wasm guest `none` means no sockets.
    let mut kinds = if native {
        vec![
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::Ipc,
            LinuxNamespaceType::Uts,
            LinuxNamespaceType::Mount,
            LinuxNamespaceType::Cgroup,
        ]
    } else {
        Vec::new()
    };
    if opts.host.network != Network::Host {
        kinds.push(LinuxNamespaceType::Network);
    }
    let namespaces = kinds
        .into_iter()
        .map(|t| LinuxNamespaceBuilder::default().typ(t).build())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(bad)?;
    linux = linux.namespaces(namespaces);
    if native {
        linux = linux
            .masked_paths(MASKED_PATHS.map(String::from).to_vec())
            .readonly_paths(READONLY_PATHS.map(String::from).to_vec());
    }
    SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path("rootfs")
                .readonly(false)
                .build()
                .map_err(bad)?,
        )
        .hostname(hostname)
        .process(process)
        .mounts(mounts)
        .linux(linux.build().map_err(bad)?)
        .annotations(annotations(config, opts))
        .build()
        .map_err(bad)
}

/// Where `--init` puts the init in the container, as docker does.
pub const INIT_PATH: &str = "/sbin/docker-init";

/// The host's static init for `--init`: tini, static so that it runs in any image (Debian's
/// `tini` package), or docker's own.
fn init_binary() -> Result<std::path::PathBuf> {
    [
        "/usr/bin/tini-static",
        "/usr/bin/docker-init",
        "/usr/libexec/docker/docker-init",
    ]
    .iter()
    .map(std::path::PathBuf::from)
    .find(|p| p.is_file())
    .ok_or_else(|| {
        Error::Unsupported(
            "--init needs a static tini on the host (/usr/bin/tini-static: apt-get install tini)"
                .into(),
        )
    })
}

/// `uid[:gid]` when numeric; names are resolved by the native backend through the image's
/// /etc/passwd. Wasm guests have no users.
fn numeric_user(user: &str) -> (u32, u32) {
    let (u, g) = user.split_once(':').unwrap_or((user, ""));
    let uid = u.parse().unwrap_or(0);
    (uid, g.parse().unwrap_or(uid))
}

/// What `exec` runs in a running container, beyond its spec.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub args: Vec<String>,
    /// `-e`: `K=V`, or `K` for the caller's value; over the container's environment.
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub tty: bool,
}

/// The spec of a process `exec` starts in a container whose spec is `spec`: the container's
/// own (namespaces, capabilities, seccomp, no_new_privs, limits), with the exec's command,
/// environment, working directory, user and terminal.
pub fn exec_spec(spec: &Spec, opts: &ExecOptions) -> Result<Spec> {
    let bad = |why: String| Error::InvalidArgument(why);
    if opts.args.is_empty() {
        return Err(bad("no command specified".into()));
    }
    let mut process = spec
        .process()
        .clone()
        .ok_or_else(|| bad("the container's spec has no process".into()))?;
    let mut env: Vec<String> = process.env().clone().unwrap_or_default();
    for e in &opts.env {
        let (k, v) = match e.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => match std::env::var(e) {
                Ok(v) => (e.clone(), v),
                Err(_) => continue,
            },
        };
        env.retain(|x| x.split_once('=').map_or(x.as_str(), |(key, _)| key) != k);
        env.push(format!("{k}={v}"));
    }
    if opts.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    process.set_args(Some(opts.args.clone()));
    process.set_env(Some(env));
    process.set_terminal(Some(opts.tty));
    if let Some(w) = &opts.workdir {
        if !w.starts_with('/') {
            return Err(bad(format!(
                "the working directory {w:?} is invalid, it needs to be an absolute path"
            )));
        }
        process.set_cwd(w.into());
    }
    if let Some(u) = &opts.user {
        let (uid, gid) = numeric_user(u);
        let mut user = process.user().clone();
        user.set_uid(uid);
        user.set_gid(gid);
        user.set_username(Some(u.clone()));
        process.set_user(user);
    }
    let mut spec = spec.clone();
    spec.set_process(Some(process));
    Ok(spec)
}
