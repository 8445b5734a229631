//! Health checks, as docker runs them: an image's `HEALTHCHECK` or `run --health-*`
//! ([`Healthcheck`], docker's `Config.Healthcheck`), run by the container's monitor inside
//! the container as `exec` runs a process ([`Checker`]: one thread a run, started when the
//! run starts, stopped when it ends), its state ([`Health`], docker's `State.Health`) in
//! `health.json` in the container's directory, written whole (temp file and rename) so that
//! a reader never sees half of it and the monitor's record writes are not touched.
//!
//! moby's rules (`daemon/health.go`): the first check one interval after the start, each
//! next one an interval after the last ended (the start interval instead while the
//! container is starting within its start period); `starting` until a check passes;
//! `unhealthy` after `retries` failures in a row, failures within the start period not
//! counted while starting; a check that outlasts its timeout is killed and fails with
//! exit code -1; the first 4096 bytes of output kept ("..." after them), and the last 5
//! results. Unhealthy changes nothing else (no restart). Each (re)start resets the status
//! to `starting` and the streak to 0, keeping the log.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use cap_std::fs::Dir;
use oci_spec::runtime::Process;
use serde::{Deserialize, Serialize};

use super::{now, Container, Containers};
use crate::backend::{Executor, Signaller, Stdio, Stream};
use crate::error::{Error, Result};

/// The health state's file in the container's directory.
pub const FILE: &str = "health.json";

const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_START_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_RETRIES: i64 = 3;
/// Output kept of each check, and results kept.
const MAX_OUTPUT: usize = 4096;
const MAX_LOG: usize = 5;
/// How long, after a check's process ended, its output is still read: a process it left
/// behind may hold the pipe open.
const OUTPUT_GRACE: Duration = Duration::from_millis(200);

/// docker's `HealthConfig` (durations in nanoseconds, 0: the default), as an image config
/// holds it and `inspect` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Healthcheck {
    /// `["NONE"]`, `["CMD", args…]` or `["CMD-SHELL", command]`; empty: the image's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub test: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub interval: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timeout: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_period: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_interval: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// What `run`/`create` were given: `--health-cmd` and friends (durations in nanoseconds).
#[derive(Debug, Clone, Default)]
pub struct HealthFlags {
    pub cmd: Option<String>,
    pub interval: i64,
    pub timeout: i64,
    pub start_period: i64,
    pub start_interval: i64,
    pub retries: i64,
    /// `--no-healthcheck`.
    pub none: bool,
}

impl HealthFlags {
    /// The container's own healthcheck, as the docker CLI makes it: `["NONE"]` for
    /// `--no-healthcheck`, else what the flags set (`None` when they set nothing).
    pub fn healthcheck(&self) -> Result<Option<Healthcheck>> {
        let bad = |m: &str| Err(Error::InvalidArgument(m.to_string()));
        let any = self.cmd.as_deref().is_some_and(|c| !c.is_empty())
            || self.interval != 0
            || self.timeout != 0
            || self.start_period != 0
            || self.start_interval != 0
            || self.retries != 0;
        if self.none {
            if any {
                return bad("--no-healthcheck conflicts with --health-* options");
            }
            return Ok(Some(Healthcheck {
                test: vec!["NONE".into()],
                ..Healthcheck::default()
            }));
        }
        if !any {
            return Ok(None);
        }
        for (value, flag) in [
            (self.interval, "--health-interval"),
            (self.timeout, "--health-timeout"),
            (self.retries, "--health-retries"),
            (self.start_period, "--health-start-period"),
            (self.start_interval, "--health-start-interval"),
        ] {
            if value < 0 {
                return bad(&format!("{flag} cannot be negative"));
            }
        }
        let own = Healthcheck {
            test: match self.cmd.as_deref() {
                Some(c) if !c.is_empty() => vec!["CMD-SHELL".into(), c.into()],
                _ => Vec::new(),
            },
            interval: self.interval,
            timeout: self.timeout,
            start_period: self.start_period,
            start_interval: self.start_interval,
            retries: self.retries,
        };
        own.validate()?;
        Ok(Some(own))
    }
}

impl Healthcheck {
    /// The image config's `Healthcheck`, when it has one that reads as docker's.
    pub fn of_image(config: &crate::image::ImageConfig) -> Option<Healthcheck> {
        let value = config.config.as_ref()?.healthcheck.clone()?;
        serde_json::from_value(value).ok()
    }

    /// The container's healthcheck: its own (`flags`) over its image's, each field it
    /// leaves unset taken from the image (moby's `merge`).
    pub fn merge(flags: Option<Healthcheck>, image: Option<Healthcheck>) -> Option<Healthcheck> {
        let Some(mut own) = flags else {
            return image;
        };
        if let Some(image) = image {
            if own.test.is_empty() {
                own.test = image.test;
            }
            for (mine, theirs) in [
                (&mut own.interval, image.interval),
                (&mut own.timeout, image.timeout),
                (&mut own.start_period, image.start_period),
                (&mut own.start_interval, image.start_interval),
                (&mut own.retries, image.retries),
            ] {
                if *mine == 0 {
                    *mine = theirs;
                }
            }
        }
        Some(own)
    }

    /// The daemon's checks (moby's `verifyContainerSettings`): durations of at least 1ms
    /// when set, no negative retries.
    pub fn validate(&self) -> Result<()> {
        const MINIMUM: i64 = 1_000_000;
        for (value, name) in [
            (self.interval, "Interval"),
            (self.timeout, "Timeout"),
            (self.start_period, "StartPeriod"),
            (self.start_interval, "StartInterval"),
        ] {
            if value != 0 && value < MINIMUM {
                return Err(Error::InvalidArgument(format!(
                    "{name} in Healthcheck cannot be less than 1ms"
                )));
            }
        }
        if self.retries < 0 {
            return Err(Error::InvalidArgument(
                "Retries in Healthcheck cannot be negative".into(),
            ));
        }
        Ok(())
    }

    /// Whether checks run at all (not `NONE`, not empty, a type docker knows).
    pub fn active(&self) -> bool {
        matches!(
            self.test.first().map(String::as_str),
            Some("CMD" | "CMD-SHELL")
        )
    }

    /// The argv a check runs: `CMD`'s arguments, or `CMD-SHELL`'s command under `shell`
    /// (the image's SHELL, else `/bin/sh -c`).
    pub fn command(&self, shell: Option<&[String]>) -> Option<Vec<String>> {
        let rest = self.test.get(1..).unwrap_or_default().to_vec();
        match self.test.first().map(String::as_str) {
            Some("CMD") if !rest.is_empty() => Some(rest),
            Some("CMD-SHELL") if !rest.is_empty() => {
                let mut argv = match shell {
                    Some(s) if !s.is_empty() => s.to_vec(),
                    _ => vec!["/bin/sh".into(), "-c".into()],
                };
                argv.extend(rest);
                Some(argv)
            }
            _ => None,
        }
    }

    fn duration(nanos: i64, default: Duration) -> Duration {
        if nanos > 0 {
            Duration::from_nanos(nanos as u64)
        } else {
            default
        }
    }

    fn interval(&self) -> Duration {
        Self::duration(self.interval, DEFAULT_INTERVAL)
    }

    fn timeout(&self) -> Duration {
        Self::duration(self.timeout, DEFAULT_TIMEOUT)
    }

    fn start_period(&self) -> Duration {
        Self::duration(self.start_period, Duration::ZERO)
    }

    fn start_interval(&self) -> Duration {
        Self::duration(self.start_interval, DEFAULT_START_INTERVAL)
    }

    fn retries(&self) -> u32 {
        if self.retries > 0 {
            self.retries.min(u32::MAX as i64) as u32
        } else {
            DEFAULT_RETRIES as u32
        }
    }
}

/// docker's health statuses (`none` is having no [`Health`] at all).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Starting,
    Healthy,
    Unhealthy,
}

impl Status {
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Starting => "starting",
            Status::Healthy => "healthy",
            Status::Unhealthy => "unhealthy",
        }
    }
}

/// docker's `State.Health`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Health {
    pub status: Status,
    pub failing_streak: u32,
    /// The last results, oldest first.
    #[serde(default)]
    pub log: Vec<CheckResult>,
}

/// One check (docker's `HealthcheckResult`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CheckResult {
    pub start: String,
    pub end: String,
    pub exit_code: i32,
    pub output: String,
}

impl Health {
    /// Take a check's `result` (moby's `handleProbeResult`); `in_start_period`: it started
    /// within the container's start period.
    fn record(&mut self, result: CheckResult, in_start_period: bool, retries: u32) {
        let passed = result.exit_code == 0;
        self.log.push(result);
        if self.log.len() > MAX_LOG {
            self.log.drain(..self.log.len() - MAX_LOG);
        }
        if passed {
            self.failing_streak = 0;
            self.status = Status::Healthy;
        } else if !(self.status == Status::Starting && in_start_period) {
            self.failing_streak += 1;
            if self.failing_streak >= retries {
                self.status = Status::Unhealthy;
            }
        }
    }
}

impl Containers<'_> {
    /// The health state of `c`, when it has checks and they have run (docker's
    /// `State.Health`; `None` is docker's `none`).
    pub fn health(&self, c: &Container) -> Option<Health> {
        if !c.host.healthcheck.as_ref().is_some_and(Healthcheck::active) {
            return None;
        }
        let bytes = self.dir.open_dir(&c.id).ok()?.read(FILE).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// A container's health checks, for its monitor: [`Checker::start`] when a run starts,
/// [`Checker::stop`] when it ends.
pub struct Checker {
    check: Arc<Check>,
    run: Option<Arc<Run>>,
}

/// What every run's checks share.
struct Check {
    config: Healthcheck,
    /// The check's process: the container's (user, cwd, env) with the check's argv.
    process: Process,
    dir: Dir,
}

/// One run's checks: stopped when the run ends. Results are written holding `stopped`'s
/// lock, so none of a stopped run's lands after the next run's reset.
struct Run {
    stopped: Mutex<bool>,
    changed: Condvar,
}

impl Checker {
    /// The checks of container `c` (whose spec is `spec`, whose directory is `dir`), when
    /// it has any.
    pub fn new(c: &Container, spec: &oci_spec::runtime::Spec, dir: Dir) -> Option<Checker> {
        let config = c.host.healthcheck.clone().filter(Healthcheck::active)?;
        let argv = config.command(c.host.shell.as_deref())?;
        let mut process = spec.process().clone()?;
        process.set_args(Some(argv));
        process.set_terminal(Some(false));
        Some(Checker {
            check: Arc::new(Check {
                config,
                process,
                dir,
            }),
            run: None,
        })
    }

    /// A run started: its health is `starting` again (the log kept), and its checks run
    /// through `exec` from now until [`Checker::stop`].
    pub fn start(&mut self, exec: Option<Executor>) {
        self.stop();
        let previous: Health = self
            .check
            .dir
            .read(FILE)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let health = Health {
            status: Status::Starting,
            failing_streak: 0,
            log: previous.log,
        };
        let run = Arc::new(Run {
            stopped: Mutex::new(false),
            changed: Condvar::new(),
        });
        if !self.check.save(&run, &health) {
            return;
        }
        let Some(exec) = exec else { return };
        self.run = Some(Arc::clone(&run));
        let check = Arc::clone(&self.check);
        let started = Instant::now();
        // Never joined: a check that hangs must not hold up the run's end.
        std::thread::spawn(move || check.run(&run, &exec, started, health));
    }

    /// The run ended: no more checks, and no more results written.
    pub fn stop(&mut self) {
        if let Some(run) = self.run.take() {
            *run.stopped.lock().unwrap_or_else(|e| e.into_inner()) = true;
            run.changed.notify_all();
        }
    }
}

impl Drop for Checker {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Run {
    /// Wait `d`, or less if stopped meanwhile: true when stopped.
    fn sleep(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let mut stopped = self.stopped.lock().unwrap_or_else(|e| e.into_inner());
        while !*stopped && Instant::now() < deadline {
            stopped = self
                .changed
                .wait_timeout(stopped, deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *stopped
    }
}

impl Check {
    /// The loop of one run's checks.
    fn run(&self, run: &Run, exec: &Executor, started: Instant, mut health: Health) {
        loop {
            let in_start_period = started.elapsed() < self.config.start_period();
            let wait = if in_start_period && health.status == Status::Starting {
                self.config.start_interval()
            } else {
                self.config.interval()
            };
            if run.sleep(wait) {
                return;
            }
            // None while paused, as docker's checks stop then (its exec would be frozen).
            if self.dir.exists(super::PAUSED) {
                continue;
            }
            let in_start_period = started.elapsed() < self.config.start_period();
            let result = self.probe(exec);
            health.record(result, in_start_period, self.config.retries());
            if !self.save(run, &health) {
                return;
            }
        }
    }

    /// Write `health` unless `run` was stopped; false when it was (or the container's
    /// directory is gone).
    fn save(&self, run: &Run, health: &Health) -> bool {
        let stopped = run.stopped.lock().unwrap_or_else(|e| e.into_inner());
        if *stopped {
            return false;
        }
        let bytes = serde_json::to_vec(health).expect("serialize");
        crate::store::write_atomic(&self.dir, FILE, &bytes, false).is_ok()
    }

    /// Run one check: its exit code and output, -1 and why when it could not run or
    /// outlasted its timeout (then it is killed, and waited for, as moby does, so that
    /// dying checks do not pile up).
    fn probe(&self, exec: &Executor) -> CheckResult {
        let start = now();
        let result = |exit_code, output| CheckResult {
            start: start.clone(),
            end: now(),
            exit_code,
            output,
        };
        let (reader, writer, writer2) = match pipe() {
            Ok(p) => p,
            Err(e) => return result(-1, e.to_string()),
        };
        // Both streams in one buffer, as docker keeps them.
        let output = Arc::new(Mutex::new(Output::default()));
        let (read_done, output_read) = mpsc::channel();
        {
            let output = Arc::clone(&output);
            std::thread::spawn(move || {
                let mut file = std::fs::File::from(reader);
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = file.read(&mut buf) {
                    output
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(&buf[..n]);
                }
                let _ = read_done.send(());
            });
        }
        let signaller: Arc<Mutex<Option<Signaller>>> = Arc::default();
        let (done, ended) = mpsc::channel();
        {
            let (exec, process) = (Arc::clone(exec), self.process.clone());
            let signaller = Arc::clone(&signaller);
            std::thread::spawn(move || {
                let stdio = Stdio {
                    stdin: None,
                    stdout: Stream::Fd(writer),
                    stderr: Stream::Fd(writer2),
                };
                let exit = exec(&process, stdio, &mut |s| {
                    *signaller.lock().unwrap_or_else(|e| e.into_inner()) = s
                });
                let _ = done.send(exit);
            });
        }
        let timeout = self.config.timeout();
        let (exit, timed_out) = match ended.recv_timeout(timeout) {
            Ok(exit) => (exit, false),
            Err(_) => {
                if let Some(kill) = signaller.lock().unwrap_or_else(|e| e.into_inner()).clone() {
                    let _ = kill(9);
                }
                match ended.recv() {
                    Ok(exit) => (exit, true),
                    Err(_) => (Err(Error::Conflict("the check was lost".into())), true),
                }
            }
        };
        let _ = output_read.recv_timeout(OUTPUT_GRACE);
        let text = output.lock().unwrap_or_else(|e| e.into_inner()).text();
        if timed_out {
            let message = format!("Health check exceeded timeout ({})", go_duration(timeout));
            return result(-1, message);
        }
        match exit {
            Ok(exit) => result(exit.code, text),
            Err(e) => result(-1, e.to_string()),
        }
    }
}

/// A check's output: the first `MAX_OUTPUT` bytes, and whether more came.
#[derive(Default)]
struct Output {
    bytes: Vec<u8>,
    truncated: bool,
}

impl Output {
    fn push(&mut self, data: &[u8]) {
        let room = MAX_OUTPUT - self.bytes.len();
        self.bytes.extend_from_slice(&data[..data.len().min(room)]);
        self.truncated |= data.len() > room;
    }

    fn text(&self) -> String {
        let mut s = String::from_utf8_lossy(&self.bytes).into_owned();
        if self.truncated {
            s.push_str("...");
        }
        s
    }
}

/// A pipe's read end and two write ends (the check's stdout and stderr).
fn pipe() -> Result<(OwnedFd, OwnedFd, OwnedFd)> {
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| Error::io("create a pipe", e.into()))?;
    let w2 = w
        .try_clone()
        .map_err(|e| Error::io("duplicate a pipe", e))?;
    Ok((r, w, w2))
}

/// Go's `time.Duration.String()`: `0s`, `100ms`, `1.5s`, `1m30s`, `1h0m0s` (docker's
/// words for durations: a health check's timeout, BuildKit's history).
pub fn go_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    if ns < 1_000_000_000 {
        let (unit, div) = if ns < 1_000 {
            ("ns", 1)
        } else if ns < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{}{unit}", fraction(ns, div));
    }
    let secs = ns / 1_000_000_000;
    let (h, m) = (secs / 3600, (secs % 3600) / 60);
    let s = fraction(ns % 60_000_000_000, 1_000_000_000);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, m) => format!("{m}m{s}s"),
        (h, m) => format!("{h}h{m}m{s}s"),
    }
}

/// `n / div` with the fraction's trailing zeros trimmed (Go's fmtFrac).
fn fraction(n: u128, div: u128) -> String {
    let whole = n / div;
    let rest = n % div;
    if rest == 0 {
        return whole.to_string();
    }
    let width = div.to_string().len() - 1;
    let frac = format!("{rest:0width$}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_000_000;

    fn result(code: i32) -> CheckResult {
        CheckResult {
            exit_code: code,
            ..CheckResult::default()
        }
    }

    #[test]
    fn flags_make_a_shell_check_and_refuse_what_docker_refuses() {
        let flags = HealthFlags {
            cmd: Some("test -e /ready".into()),
            interval: 200 * MS,
            ..HealthFlags::default()
        };
        let h = flags.healthcheck().unwrap().unwrap();
        assert_eq!(h.test, ["CMD-SHELL", "test -e /ready"]);
        assert_eq!(h.interval, 200 * MS);
        assert_eq!(HealthFlags::default().healthcheck().unwrap(), None);
        let none = HealthFlags {
            none: true,
            ..HealthFlags::default()
        };
        assert_eq!(none.healthcheck().unwrap().unwrap().test, ["NONE"]);
        let both = HealthFlags {
            none: true,
            retries: 2,
            ..HealthFlags::default()
        };
        assert!(both
            .healthcheck()
            .unwrap_err()
            .to_string()
            .contains("--no-healthcheck conflicts with --health-* options"));
        let negative = HealthFlags {
            timeout: -1,
            ..HealthFlags::default()
        };
        assert!(negative
            .healthcheck()
            .unwrap_err()
            .to_string()
            .contains("--health-timeout cannot be negative"));
        let tiny = HealthFlags {
            cmd: Some("true".into()),
            interval: 1000,
            ..HealthFlags::default()
        };
        assert!(tiny
            .healthcheck()
            .unwrap_err()
            .to_string()
            .contains("Interval in Healthcheck cannot be less than 1ms"));
        assert!(Healthcheck {
            interval: MS,
            ..Healthcheck::default()
        }
        .validate()
        .is_ok());
    }

    #[test]
    fn the_containers_fields_win_and_the_images_fill_the_rest() {
        let image = Healthcheck {
            test: vec!["CMD".into(), "/probe".into()],
            interval: 5000 * MS,
            retries: 7,
            ..Healthcheck::default()
        };
        let own = Healthcheck {
            interval: 200 * MS,
            ..Healthcheck::default()
        };
        let merged = Healthcheck::merge(Some(own), Some(image.clone())).unwrap();
        assert_eq!(merged.test, ["CMD", "/probe"]);
        assert_eq!((merged.interval, merged.retries), (200 * MS, 7));
        assert_eq!(Healthcheck::merge(None, Some(image.clone())), Some(image));
        let none = Healthcheck {
            test: vec!["NONE".into()],
            ..Healthcheck::default()
        };
        assert!(!Healthcheck::merge(Some(none), None).unwrap().active());
    }

    #[test]
    fn commands_and_defaults() {
        let shell = Healthcheck {
            test: vec!["CMD-SHELL".into(), "exit 1".into()],
            ..Healthcheck::default()
        };
        assert_eq!(shell.command(None).unwrap(), ["/bin/sh", "-c", "exit 1"]);
        let bash = ["/bin/bash".to_string(), "-c".to_string()];
        assert_eq!(shell.command(Some(&bash)).unwrap()[0], "/bin/bash");
        let cmd = Healthcheck {
            test: vec!["CMD".into(), "/bin/true".into(), "x".into()],
            ..Healthcheck::default()
        };
        assert_eq!(cmd.command(None).unwrap(), ["/bin/true", "x"]);
        assert_eq!(cmd.interval(), Duration::from_secs(30));
        assert_eq!(cmd.timeout(), Duration::from_secs(30));
        assert_eq!(cmd.start_period(), Duration::ZERO);
        assert_eq!(cmd.retries(), 3);
        let empty = Healthcheck {
            test: vec!["CMD".into()],
            ..Healthcheck::default()
        };
        assert_eq!(empty.command(None), None);
    }

    #[test]
    fn the_dockerfile_durations_the_builder_writes_read_back() {
        // What `HEALTHCHECK --interval=200ms --timeout=1s --start-period=2s --retries=4`
        // becomes in the image config (builder/src/engine/config.rs).
        let config = serde_json::json!({
            "Test": ["CMD-SHELL", "true"],
            "Interval": 200_000_000u64,
            "Timeout": 1_000_000_000u64,
            "StartPeriod": 2_000_000_000u64,
            "Retries": 4,
        });
        let h: Healthcheck = serde_json::from_value(config.clone()).unwrap();
        assert_eq!(h.interval(), Duration::from_millis(200));
        assert_eq!(h.timeout(), Duration::from_secs(1));
        assert_eq!(h.start_period(), Duration::from_secs(2));
        assert_eq!(h.retries(), 4);
        assert_eq!(serde_json::to_value(&h).unwrap(), config);
    }

    #[test]
    fn unhealthy_after_retries_failures_and_not_within_the_start_period() {
        let mut h = Health::default();
        for _ in 0..5 {
            h.record(result(1), true, 3);
        }
        assert_eq!((h.status, h.failing_streak), (Status::Starting, 0));
        h.record(result(1), false, 3);
        h.record(result(1), false, 3);
        assert_eq!((h.status, h.failing_streak), (Status::Starting, 2));
        h.record(result(1), false, 3);
        assert_eq!((h.status, h.failing_streak), (Status::Unhealthy, 3));
        h.record(result(0), true, 3);
        assert_eq!((h.status, h.failing_streak), (Status::Healthy, 0));
        // Once healthy, failures count even within the start period.
        h.record(result(1), true, 3);
        assert_eq!((h.status, h.failing_streak), (Status::Healthy, 1));
        assert_eq!(h.log.len(), MAX_LOG);
        assert_eq!(h.log.last().unwrap().exit_code, 1);
    }

    #[test]
    fn output_keeps_the_first_4096_bytes() {
        let mut out = Output::default();
        out.push(&[b'a'; 4000]);
        out.push(&[b'b'; 200]);
        let text = out.text();
        assert_eq!(text.len(), 4096 + 3);
        assert!(text.ends_with("bbb..."));
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(Duration::from_secs(1)), "1s");
        assert_eq!(go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
    }
}
