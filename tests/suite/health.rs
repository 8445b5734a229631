//! Health checks (HEALTHCHECK, `run --health-*`), run by a detached container's monitor
//! inside the container: `starting` → `healthy`/`unhealthy`, the start period, timeouts,
//! `--no-healthcheck`, none while paused, `ps`'s status suffix and `--filter health=`, `inspect`'s
//! `State.Health`, and the reset at a restart. Written once over a fixture whose image
//! (built by `strata build` with a HEALTHCHECK) checks that `/ready` exists: a busybox
//! `CMD-SHELL` natively, the probe's `cat` as `CMD` on Wasm. Run as `health::native::*`,
//! `health::wasm_p1::*` and `health::wasm_p2::*`.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{self, busybox_image, probe, Env};

/// The base image, and the one with a HEALTHCHECK on it.
const BASE: &str = "service";
const CHECKED: &str = "checked";

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Native,
    WasmP1,
    WasmP2,
}

struct Backend {
    kind: Kind,
    env: Env,
}

impl Backend {
    fn native(test: &str) -> Option<Backend> {
        if !common::need_root(test) || !common::tools(test, &["busybox"]) {
            return None;
        }
        let env = Env::new();
        busybox_image(&env, BASE, &[]);
        Some(Backend::with_check(Kind::Native, env))
    }

    fn wasm(kind: Kind) -> Backend {
        let (p1, p2) = probe();
        let env = Env::new();
        env.wasm_image(if kind == Kind::WasmP1 { &p1 } else { &p2 }, BASE, true);
        Backend::with_check(kind, env)
    }

    /// `CHECKED`: the base image with a HEALTHCHECK that passes once `/ready` exists
    /// (and says something either way), checked every 200ms.
    fn with_check(kind: Kind, env: Env) -> Backend {
        let test = match kind {
            Kind::Native => "CMD echo checking; test -e /ready",
            _ => r#"CMD ["/hello.wasm", "cat", "/ready"]"#,
        };
        let ctx = env.path("checked-context");
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::write(
            ctx.join("Dockerfile"),
            format!("FROM {BASE}\nHEALTHCHECK --interval=200ms --timeout=5s {test}\n"),
        )
        .unwrap();
        env.ok(&["build", "-q", "-t", CHECKED, ctx.to_str().unwrap()]);
        Backend { kind, env }
    }

    /// The main process: one that runs until stopped.
    fn forever(&self) -> Vec<&'static str> {
        vec!["sleep", "1000"]
    }

    /// `exec` into `name` the command that makes (or removes) `/ready`.
    fn set_ready(&self, name: &str, ready: bool) {
        let args: Vec<&str> = match (self.kind, ready) {
            (Kind::Native, true) => vec!["touch", "/ready"],
            (Kind::Native, false) => vec!["rm", "/ready"],
            (_, true) => vec!["/hello.wasm", "write", "/ready", "ready"],
            (_, false) => vec!["/hello.wasm", "rm", "/ready"],
        };
        let mut cmd = vec!["exec", name];
        cmd.extend(args);
        self.env.ok(&cmd);
    }

    /// `run -d --name NAME FLAGS IMAGE` running forever.
    fn detach(&self, name: &str, flags: &[&str], image: &str) {
        let mut args = vec!["run", "-d", "--name", name];
        args.extend(flags);
        args.push(image);
        args.extend(self.forever());
        self.env.ok(&args);
    }

    /// `State.Health` of `name` (null without one).
    fn health(&self, name: &str) -> Value {
        let out = self
            .env
            .ok(&["inspect", "-f", "{{json .State.Health}}", name]);
        serde_json::from_str(out.trim()).unwrap()
    }

    fn status(&self, name: &str) -> String {
        self.env
            .ok(&["inspect", "-f", "{{.State.Health.Status}}", name])
            .trim()
            .to_string()
    }

    /// Wait (at most 20 s) until `name`'s health status is `want`; its health then.
    fn until(&self, name: &str, want: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let health = self.health(name);
            if health["Status"] == want {
                return health;
            }
            assert!(
                Instant::now() < deadline,
                "{name} never became {want}: {health}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `ps` names of the containers that `--filter health=VALUE` lists.
    fn ps_health(&self, value: &str) -> Vec<String> {
        self.env
            .ok(&[
                "ps",
                "--filter",
                &format!("health={value}"),
                "--format",
                "{{.Names}}",
            ])
            .lines()
            .map(String::from)
            .collect()
    }

    /// `ps`'s STATUS of `name`.
    fn ps_status(&self, name: &str) -> String {
        self.env
            .ok(&[
                "ps",
                "--filter",
                &format!("name={name}"),
                "--format",
                "{{.Status}}",
            ])
            .trim()
            .to_string()
    }
}

common::on_every_backend!(
    "health";
    starting_until_a_check_passes_then_healthy
    failures_in_a_row_make_it_unhealthy_with_their_log
    failures_within_the_start_period_do_not_count
    no_healthcheck_disables_the_images
    a_restart_resets_the_status_and_keeps_the_log
    no_checks_run_while_paused
);

fn starting_until_a_check_passes_then_healthy(b: &Backend) {
    // Retries enough that failures never make it unhealthy here.
    b.detach("web", &["--health-retries", "1000"], CHECKED);
    assert_eq!(b.status("web"), "starting");
    let status = b.ps_status("web");
    assert!(
        status.starts_with("Up ") && status.ends_with(" (health: starting)"),
        "{status}"
    );
    assert_eq!(b.ps_health("starting"), ["web"]);
    assert!(b.ps_health("healthy").is_empty());
    b.set_ready("web", true);
    let health = b.until("web", "healthy");
    assert_eq!(health["FailingStreak"], 0);
    let last = health["Log"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["ExitCode"], 0, "{health}");
    let said = if b.kind == Kind::Native {
        "checking\n"
    } else {
        "ready"
    };
    assert_eq!(last["Output"], said, "{health}");
    assert!(last["Start"].as_str().unwrap() <= last["End"].as_str().unwrap());
    let status = b.ps_status("web");
    assert!(status.ends_with(" (healthy)"), "{status}");
    assert_eq!(b.ps_health("healthy"), ["web"]);
    assert!(b.ps_health("starting").is_empty());
    assert!(b.ps_health("none").is_empty());
    // The image's check with the container's retries over it, as docker merges them.
    let config: Value = serde_json::from_str(
        b.env
            .ok(&["inspect", "-f", "{{json .Config.Healthcheck}}", "web"])
            .trim(),
    )
    .unwrap();
    assert_eq!(config["Interval"], 200_000_000, "{config}");
    assert_eq!(config["Timeout"], 5_000_000_000u64, "{config}");
    assert_eq!(config["Retries"], 1000, "{config}");
    let test = config["Test"].as_array().unwrap();
    let kind = if b.kind == Kind::Native {
        "CMD-SHELL"
    } else {
        "CMD"
    };
    assert_eq!(test[0], kind, "{config}");
    b.env.ok(&["rm", "-f", "web"]);
}

fn failures_in_a_row_make_it_unhealthy_with_their_log(b: &Backend) {
    b.detach("web", &[], CHECKED);
    // Every state seen on the way: starting below 3 failures, unhealthy from the third.
    let deadline = Instant::now() + Duration::from_secs(20);
    let health = loop {
        let health = b.health("web");
        let streak = health["FailingStreak"].as_u64().unwrap();
        let status = health["Status"].as_str().unwrap().to_string();
        if streak < 3 {
            assert_eq!(status, "starting", "{health}");
        } else {
            assert_eq!(status, "unhealthy", "{health}");
            break health;
        }
        assert!(Instant::now() < deadline, "never unhealthy: {health}");
        std::thread::sleep(Duration::from_millis(10));
    };
    let log = health["Log"].as_array().unwrap();
    assert!(log.len() >= 3 && log.len() <= 5, "{health}");
    let said = if b.kind == Kind::Native {
        "checking\n"
    } else {
        "probe: cat /ready: No such file or directory"
    };
    for entry in log {
        assert_eq!(entry["ExitCode"], 1, "{health}");
        assert!(
            entry["Output"].as_str().unwrap().starts_with(said),
            "{health}"
        );
    }
    let status = b.ps_status("web");
    assert!(status.ends_with(" (unhealthy)"), "{status}");
    assert_eq!(b.ps_health("unhealthy"), ["web"]);
    // Unhealthy stops nothing (docker): it still runs, and it recovers once a check passes.
    assert_eq!(
        b.env
            .ok(&["inspect", "-f", "{{.State.Status}}", "web"])
            .trim(),
        "running"
    );
    b.set_ready("web", true);
    b.until("web", "healthy");
    // At most 5 results are kept.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(b.health("web")["Log"].as_array().unwrap().len(), 5);
    b.env.ok(&["rm", "-f", "web"]);
}

fn failures_within_the_start_period_do_not_count(b: &Backend) {
    let began = Instant::now();
    b.detach(
        "web",
        &[
            "--health-start-period",
            "5s",
            "--health-start-interval",
            "200ms",
            "--health-retries",
            "1",
        ],
        CHECKED,
    );
    // Checks run and fail during the start period, and it stays starting. The period is long
    // so that a loaded machine still fits a first (cold) check inside it.
    let mut health = b.health("web");
    while health["Log"].as_array().is_none_or(|log| log.len() < 2)
        && began.elapsed() < Duration::from_millis(4500)
    {
        assert_eq!(health["Status"], "starting", "{health}");
        assert_eq!(health["FailingStreak"], 0, "{health}");
        std::thread::sleep(Duration::from_millis(50));
        health = b.health("web");
    }
    let log = health["Log"].as_array().unwrap();
    assert!(
        !log.is_empty(),
        "no check ran in the start period: {health}"
    );
    assert_eq!(health["Status"], "starting", "{health}");
    assert_eq!(health["FailingStreak"], 0, "{health}");
    assert!(log.iter().all(|e| e["ExitCode"] == 1), "{health}");
    // The first failure after it counts: one retry.
    let health = b.until("web", "unhealthy");
    assert_eq!(health["FailingStreak"], 1, "{health}");
    assert!(began.elapsed() >= Duration::from_secs(5));
    b.env.ok(&["rm", "-f", "web"]);
}

fn no_healthcheck_disables_the_images(b: &Backend) {
    b.detach("plain", &["--no-healthcheck"], CHECKED);
    b.detach("checked", &[], CHECKED);
    b.until("checked", "unhealthy");
    assert_eq!(b.health("plain"), Value::Null);
    let status = b.ps_status("plain");
    assert!(
        status.starts_with("Up ") && !status.contains('('),
        "{status}"
    );
    assert_eq!(b.ps_health("none"), ["plain"]);
    assert_eq!(b.ps_health("unhealthy"), ["checked"]);
    let test = b.env.ok(&[
        "inspect",
        "-f",
        "{{json .Config.Healthcheck.Test}}",
        "plain",
    ]);
    assert_eq!(test.trim(), r#"["NONE"]"#);
    // An image without a HEALTHCHECK has no health at all.
    b.detach("bare", &[], BASE);
    assert_eq!(b.health("bare"), Value::Null);
    assert!(b.ps_health("none").contains(&"bare".to_string()));
    b.env.ok(&["rm", "-f", "plain", "checked", "bare"]);
}

fn a_restart_resets_the_status_and_keeps_the_log(b: &Backend) {
    b.detach("web", &["--health-retries", "1000"], CHECKED);
    b.set_ready("web", true);
    b.until("web", "healthy");
    b.set_ready("web", false);
    // `restart` is these two; the state in between is the last run's, kept as it ended.
    b.env.ok(&["stop", "-t", "1", "web"]);
    let before = b.health("web");
    assert_eq!(before["Status"], "healthy", "{before}");
    b.env.ok(&["start", "web"]);
    let after = b.health("web");
    assert_eq!(after["Status"], "starting", "{after}");
    assert_eq!(after["FailingStreak"], 0, "{after}");
    // The results of the last run are still there.
    assert_eq!(after["Log"], before["Log"], "{before} {after}");
    // Its checks run again, and fail now.
    let deadline = Instant::now() + Duration::from_secs(20);
    while b.health("web")["FailingStreak"] == 0 {
        assert!(Instant::now() < deadline, "no check after the restart");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(b.status("web"), "starting");
    b.env.ok(&["rm", "-f", "web"]);
}

fn no_checks_run_while_paused(b: &Backend) {
    // A check started while paused would be frozen, time out, and fail once thawed.
    b.detach("web", &["--health-timeout", "500ms"], CHECKED);
    b.set_ready("web", true);
    b.until("web", "healthy");
    b.env.ok(&["pause", "web"]);
    // A check under way as it was paused is frozen with it, so nothing changes from here.
    std::thread::sleep(Duration::from_millis(300));
    let paused = b.health("web");
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(b.health("web"), paused);
    let status = b.ps_status("web");
    assert!(status.ends_with(" (Paused)"), "{status}");
    b.env.ok(&["unpause", "web"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while b.health("web")["Log"] == paused["Log"] {
        assert!(Instant::now() < deadline, "no check after unpause");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let after = b.health("web");
    assert_eq!(after["Status"], "healthy", "{after}");
    let last = paused["Log"].as_array().unwrap().last().unwrap();
    let log = after["Log"].as_array().unwrap();
    let new = &log[log.iter().position(|e| e == last).map_or(0, |i| i + 1)..];
    assert!(
        !new.is_empty() && new.iter().all(|e| e["ExitCode"] == 0),
        "{after}"
    );
    b.env.ok(&["rm", "-f", "web"]);
}

/// A check that outlasts its timeout is killed and fails with -1 and docker's words.
/// Native only: a Wasm check guest cannot be stopped apart from the container's guest (see
/// `backend::Executor`), so it fails once it ends.
#[test]
fn a_check_past_its_timeout_is_killed_and_fails() {
    let Some(b) = Backend::native("health::a_check_past_its_timeout_is_killed_and_fails") else {
        return;
    };
    b.detach(
        "slow",
        &[
            "--health-cmd",
            "sleep 100",
            "--health-timeout",
            "1s",
            "--health-interval",
            "200ms",
            "--health-retries",
            "1",
        ],
        BASE,
    );
    let health = b.until("slow", "unhealthy");
    let entry = &health["Log"][0];
    assert_eq!(entry["ExitCode"], -1, "{health}");
    assert_eq!(
        entry["Output"], "Health check exceeded timeout (1s)",
        "{health}"
    );
    let time = |k: &str| chrono::DateTime::parse_from_rfc3339(entry[k].as_str().unwrap()).unwrap();
    // A result is written once the check's process has ended: at the timeout, so it
    // was killed then, not after its 100 s.
    let took = (time("End") - time("Start")).num_milliseconds();
    assert!((1000..4000).contains(&took), "took {took} ms: {health}");
    b.env.ok(&["rm", "-f", "slow"]);
}

#[test]
fn bad_health_flags_are_refused_as_docker_refuses_them() {
    let (p1, _) = probe();
    let env = Env::new();
    env.wasm_image(&p1, BASE, true);
    for (flags, says) in [
        (
            &["--no-healthcheck", "--health-retries", "2"][..],
            "--no-healthcheck conflicts with --health-* options",
        ),
        (
            &["--health-cmd", "true", "--health-interval", "1us"][..],
            "Interval in Healthcheck cannot be less than 1ms",
        ),
        (
            &["--health-timeout", "-1s"][..],
            "--health-timeout cannot be negative",
        ),
        (
            &["--health-interval", "5x"][..],
            r#"invalid argument "5x" for "--health-interval" flag"#,
        ),
    ] {
        let mut args = vec!["create"];
        args.extend(flags);
        args.push(BASE);
        let out = env.run(&args);
        assert_eq!(out.status.code(), Some(125), "{flags:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{flags:?}: {err}");
    }
    assert_eq!(env.ok(&["ps", "-aq"]).trim(), "");
}
