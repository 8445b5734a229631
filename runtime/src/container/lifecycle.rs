//! A container's life, written once for every caller: create → spec → the one backend
//! choice → record → run → final record (or removal, `--rm`). `strata run` goes through
//! all of it; a build's RUN step, which keeps no record, through `prepare` and a backend.

use std::time::{Duration, Instant};

use cap_std::fs::Dir;
use oci_spec::runtime::Spec;

use super::monitor::{self, Reply, Request};
use super::{make_spec, now, Claim, Container, Containers, Network, RunOptions, Status};
use crate::backend::{self, Backends, Exit, Kind, Started, Stdio, Task};
use crate::error::{Error, Result};
use crate::fs::Overlay;
use crate::image::ImageConfig;
use crate::store::Image;

/// The runtime spec of a container of an image (its `config`; `wasm_image` when the image
/// says it is Wasm) run with `opts`, and the backend that runs it: `forced` (`--runtime`),
/// else the one rule, [`backend::choose`], which may look at the program in the container's
/// root (opened by `root` only then).
pub fn prepare(
    config: &ImageConfig,
    wasm_image: bool,
    opts: &RunOptions,
    hostname: &str,
    root: impl FnOnce() -> Result<Overlay<Dir>>,
    forced: Option<Kind>,
) -> Result<(Spec, Kind)> {
    let spec = make_spec(config, opts, hostname)?;
    let kind = match forced {
        Some(kind) => kind,
        None if wasm_image => Kind::Wasm,
        None => {
            let args = spec
                .process()
                .as_ref()
                .and_then(|p| p.args().clone())
                .unwrap_or_default();
            backend::choose(false, &root()?, &args)
        }
    };
    Ok((spec, kind))
}

impl Containers<'_> {
    /// A new container of `image` (named by the user `image_name`) for `opts`: its record
    /// (`auto_remove` for `--rm`), its spec written as the bundle's `config.json`, and its
    /// backend chosen. Nothing is left behind when it cannot be prepared.
    pub fn create_for(
        &self,
        image: &Image,
        image_name: &str,
        opts: &RunOptions,
        auto_remove: bool,
        forced: Option<Kind>,
    ) -> Result<(Container, Spec)> {
        // A named container's record is written at once, with a provisional kind.
        let provisional = forced.unwrap_or(Kind::Wasm);
        let mut container = self.create(image, image_name, provisional, opts.name.as_deref())?;
        container.auto_remove = auto_remove;
        container.host = opts.host.clone();
        if container.host.stop_signal.is_none() {
            container.host.stop_signal = image
                .config
                .config
                .as_ref()
                .and_then(|c| c.stop_signal.clone());
        }
        let healthcheck = super::health::Healthcheck::merge(
            container.host.healthcheck.take(),
            super::health::Healthcheck::of_image(&image.config),
        );
        if healthcheck.as_ref().is_some_and(|h| h.active()) {
            container.host.shell = image.config.config.as_ref().and_then(|c| c.shell.clone());
        }
        container.host.healthcheck = healthcheck;
        let prepared = (|| {
            let opts = self.resolve_mounts(&mut container, &image.config, opts)?;
            let (spec, kind) = prepare(
                &image.config,
                backend::wasm_image(image),
                &opts,
                opts.hostname.as_deref().unwrap_or(container.short_id()),
                || self.root(&container),
                forced,
            )?;
            container.runtime = kind;
            self.save_spec(&container, &spec)?;
            Ok(spec)
        })();
        match prepared {
            Ok(spec) => Ok((container, spec)),
            Err(e) => {
                self.discard(&container)?;
                Err(e)
            }
        }
    }

    /// Run a created container to its end on its backend, holding its `claim`: its record
    /// says it runs (and which process) once the backend has started it (`on_start` hears
    /// of it then), and how it ended afterwards — or, for `--rm`, the container is
    /// removed. An engine error is recorded as docker records it (exit code 125, 126 or
    /// 127, the error's text; still `created` if it never started) and returned.
    pub fn run(
        &self,
        _claim: &Claim,
        container: &mut Container,
        spec: &Spec,
        backends: &Backends<'_>,
        stdio: Stdio,
        on_start: &mut dyn FnMut(&Started),
    ) -> Result<Exit> {
        let rootfs = self.rootfs(container);
        let mut record = container.clone();
        let mut ran = false;
        let mut started = |process: Started| {
            ran = true;
            record.started(process.pid);
            // Recorded before anyone hears of it.
            let saved = self.save(&record);
            on_start(&process);
            saved
        };
        let outcome = (|| {
            // Dropped when the run ends, however it ends: that detaches it.
            let connection = self.connect(container, spec, backends)?;
            // `container:`: the other container's namespace, held open for the run.
            let mut shared = None;
            let spec = match (&connection, &container.host.network) {
                (Some(_), _) => with_network_files(spec, &self.path(container)),
                (None, Network::Container(key)) => {
                    self.sharing_network(container, spec, key, &mut shared)?
                }
                (None, _) => spec.clone(),
            };
            let task = Task {
                id: &container.id,
                spec: &spec,
                rootfs: &rootfs,
                network: connection.as_deref(),
            };
            backends
                .get(container.runtime)
                .run(&task, stdio, &mut started)
        })();
        if container.auto_remove {
            // The final record would only serve a later `ps`/`inspect`.
            self.discard(container)?;
            return outcome;
        }
        // The record as `started` left it: the container, and its process once it ran.
        *container = record;
        container.status = if ran { Status::Exited } else { Status::Created };
        container.exit_code = Some(match &outcome {
            Ok(exit) => exit.code,
            Err(e) => e.exit_code(),
        });
        container.finished_at = Some(now());
        container.oom_killed = outcome.as_ref().is_ok_and(|e| e.oom_killed);
        container.error = outcome.as_ref().err().map(|e| e.to_string());
        // Removed while it ran (`rm -f`): there is no record left to write.
        self.save_unless_removed(container)?;
        outcome
    }
}

impl Containers<'_> {
    /// The container's network for one run, when it is on one (`bridge` or a user network).
    fn connect<'n>(
        &self,
        c: &Container,
        spec: &Spec,
        backends: &Backends<'n>,
    ) -> Result<Option<Box<dyn backend::NetAttach + 'n>>> {
        if !c.host.network.attaches() {
            return Ok(None);
        }
        let net = backends.network.ok_or_else(|| {
            Error::Unsupported(format!(
                "network {}: this caller runs containers without networks",
                c.host.network
            ))
        })?;
        let hostname = spec.hostname().as_deref().unwrap_or(&c.id[..12]);
        net.connect(c, hostname).map(Some)
    }
}

impl Containers<'_> {
    /// `--network container:<key>`: `spec` joining the network namespace of the running
    /// container `key` names (opened into `held`, which must outlive the run's start), with
    /// its `hosts` and `resolv.conf` when it has its own (a container on a network), as
    /// docker shares them.
    fn sharing_network(
        &self,
        c: &Container,
        spec: &Spec,
        key: &str,
        held: &mut Option<std::fs::File>,
    ) -> Result<Spec> {
        if c.runtime == backend::Kind::Wasm {
            return Err(Error::Unsupported(format!(
                "network container:{key}: Wasm containers cannot share a namespace yet"
            )));
        }
        let target = self.get(key)?;
        if target.id == c.id {
            return Err(Error::InvalidArgument(format!(
                "network container:{key}: a container cannot share its own network namespace"
            )));
        }
        let not_running = || {
            Error::Conflict(format!(
                "cannot join network of a non running container: {key}"
            ))
        };
        if target.status != Status::Running || target.runtime != backend::Kind::Native {
            return Err(not_running());
        }
        let pid = target.live_pid().ok_or_else(not_running)?;
        let path = format!("/proc/{}/ns/net", pid.as_raw_nonzero());
        let ns = std::fs::File::open(&path).map_err(|e| Error::io(format!("open {path}"), e))?;
        // Opened while the pid was still its process's (never a reused pid's namespace).
        target.live_pid().ok_or_else(not_running)?;
        let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&ns));
        *held = Some(ns);
        let mut spec = if target.host.network.attaches() {
            with_network_files(spec, &self.path(&target))
        } else {
            spec.clone()
        };
        let mut linux = spec.linux().clone().unwrap_or_default();
        let mut namespaces = linux.namespaces().clone().unwrap_or_default();
        namespaces.retain(|n| n.typ() != oci_spec::runtime::LinuxNamespaceType::Network);
        namespaces.push(
            oci_spec::runtime::LinuxNamespaceBuilder::default()
                .typ(oci_spec::runtime::LinuxNamespaceType::Network)
                .path(path)
                .build()
                .expect("a namespace"),
        );
        linux.set_namespaces(Some(namespaces));
        spec.set_linux(Some(linux));
        Ok(spec)
    }
}

/// `spec` with the container's own `hosts` and `resolv.conf` (in its directory `dir`,
/// written by its network, rewritten as peers come and go) bound over the image's.
fn with_network_files(spec: &Spec, dir: &std::path::Path) -> Spec {
    let mut spec = spec.clone();
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    for name in [super::HOSTS_FILE, super::RESOLV_FILE] {
        let mount = oci_spec::runtime::MountBuilder::default()
            .destination(format!("/etc/{name}"))
            .typ("bind")
            .source(dir.join(name))
            .options(vec!["rbind".to_string(), "rw".to_string()])
            .build()
            .expect("a bind mount");
        mounts.push(mount);
    }
    spec.set_mounts(Some(mounts));
    spec
}

/// What a command does to a container that runs, detached (through its monitor) or in the
/// foreground of another `strata` (to the process its record names, checked to be it).
impl Containers<'_> {
    /// `kill`: send `signal` to the container's process.
    pub fn kill(&self, c: &Container, signal: i32) -> Result<()> {
        let not_running = || Error::Conflict(format!("container {} is not running", c.id));
        if !c.can_kill() {
            return Err(not_running());
        }
        match monitor::request(self, c, &Request::Signal { signal })? {
            Some(Reply { error: Some(_), .. }) => Err(not_running()),
            Some(_) => Ok(()),
            None => {
                let pid = c.live_pid().ok_or_else(not_running)?;
                let sig = rustix::process::Signal::from_named_raw(signal)
                    .ok_or_else(|| Error::InvalidArgument(format!("invalid signal {signal}")))?;
                rustix::process::kill_process(pid, sig)
                    .map_err(|e| Error::io(format!("signal container {}", c.id), e.into()))
            }
        }
    }

    /// `stop`: `signal` (the container's stop signal by default), then SIGKILL after
    /// `timeout` seconds (its own, else docker's 10; -1 waits forever). Returns once it
    /// has ended and nothing runs it any more; a container that does not run is left as it is.
    pub fn stop(&self, c: &Container, signal: Option<i32>, timeout: Option<i64>) -> Result<()> {
        // A record that says exited while its monitor still holds the claim is one between
        // a run's end and its restart: the monitor must hear the stop, or it restarts.
        if !c.running() && !self.claimed(&c.id)? {
            return Ok(());
        }
        let signal = match signal {
            Some(s) => s,
            None => c.host.stop_signal()?,
        };
        let timeout = timeout
            .or(c.host.stop_timeout)
            .unwrap_or(super::DEFAULT_STOP_TIMEOUT);
        if monitor::request(self, c, &Request::Stop { signal, timeout })?.is_none() {
            // Run in the foreground: its runner ends when its process does.
            let grace = (timeout >= 0).then(|| Duration::from_secs(timeout as u64));
            if c.status == Status::Running {
                let _ = self.kill(c, signal);
                if !self.wait_unclaimed_for(&c.id, grace)? {
                    let _ = self.kill(c, 9);
                }
            }
        }
        self.wait_unclaimed_for(&c.id, None).map(|_| ())
    }

    /// `pause` (`paused`) or `unpause` everything the container runs, through its
    /// monitor: native, with the cgroup freezer; Wasm, its guests held at their next
    /// epoch check.
    pub fn pause(&self, c: &Container, paused: bool) -> Result<()> {
        let conflict = |what: &str| Error::Conflict(format!("container {} {what}", c.id));
        match (c.status, paused) {
            (Status::Paused, true) => return Err(conflict("is already paused")),
            (Status::Running, false) => return Err(conflict("is not paused")),
            (Status::Running | Status::Paused, _) => {}
            _ => return Err(conflict("is not running")),
        }
        match monitor::request(self, c, &Request::Pause { paused })? {
            Some(Reply { error: Some(e), .. }) => Err(conflict(&e)),
            Some(_) => Ok(()),
            None => Err(conflict(
                "runs in the foreground of another strata: only a detached container (run -d, start) can be paused",
            )),
        }
    }

    /// Give the running container's terminal `rows` × `cols` (its monitor holds it):
    /// what `attach` does as its own terminal changes size, and the API's `resize`.
    pub fn resize(&self, c: &Container, rows: u16, cols: u16) -> Result<()> {
        let conflict = |what: &str| Error::Conflict(format!("container {} {what}", c.id));
        if !c.running() {
            return Err(conflict("is not running"));
        }
        match monitor::request(self, c, &Request::Resize { rows, cols })? {
            Some(Reply { error: Some(e), .. }) => Err(conflict(&e)),
            Some(_) => Ok(()),
            // A foreground run resizes its own terminal, from its own.
            None => Ok(()),
        }
    }

    /// What the running container uses now (`stats`, `top`); `None` for one that does
    /// not run, or runs in the foreground of another strata (it has no monitor to ask).
    pub fn usage(&self, c: &Container) -> Result<Option<backend::Usage>> {
        if !matches!(c.status, Status::Running | Status::Paused) {
            return Ok(None);
        }
        Ok(monitor::request(self, c, &Request::Usage)?.and_then(|r| r.usage))
    }

    /// `wait`: the status the container's run ends with (that of its last run if none is
    /// going on).
    pub fn wait(&self, c: &Container) -> Result<i32> {
        if c.running() {
            if let Some(Reply {
                exit: Some(code), ..
            }) = monitor::request(self, c, &Request::Wait)?
            {
                return Ok(code);
            }
            self.wait_unclaimed_for(&c.id, None)?;
        }
        match self.reload(c) {
            Ok(c) => Ok(c.exit_code.unwrap_or(0)),
            // Removed as it ended (`--rm`): its status went with it.
            Err(e) if e.kind() == crate::ErrorKind::NotFound => Ok(c.exit_code.unwrap_or(0)),
            Err(e) => Err(e),
        }
    }

    /// Wait until nothing runs container `id`, at most `limit`: false if it still runs then.
    pub fn wait_unclaimed_for(&self, id: &str, limit: Option<Duration>) -> Result<bool> {
        let Some(limit) = limit else {
            self.wait_unclaimed(id)?;
            return Ok(true);
        };
        let deadline = Instant::now() + limit;
        loop {
            if !self.claimed(id)? {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
