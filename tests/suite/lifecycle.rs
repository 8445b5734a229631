//! Containers that live: `run -d` under a monitor, `create`/`start`/`stop`/`kill`/
//! `restart`/`wait`/`logs`/`attach`, restart policies, and what a killed monitor leaves.
//! Written once over a fixture that maps an action to each backend's argv, run as
//! `lifecycle::native::*`, `lifecycle::wasm_p1::*` and `lifecycle::wasm_p2::*`.

use std::io::{BufRead, BufReader};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{self, busybox_image, probe, sh, Env};

const IMAGE: &str = "service";

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

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl Backend {
    fn native(test: &str) -> Option<Backend> {
        if !common::need_root(test) || !common::tools(test, &["busybox"]) {
            return None;
        }
        let env = Env::new();
        busybox_image(&env, IMAGE, &[]);
        Some(Backend {
            kind: Kind::Native,
            env,
        })
    }

    fn wasm(kind: Kind) -> Backend {
        let (p1, p2) = probe();
        let env = Env::new();
        env.wasm_image(if kind == Kind::WasmP1 { &p1 } else { &p2 }, IMAGE, true);
        Backend { kind, env }
    }

    fn native_only(&self) -> bool {
        self.kind == Kind::Native
    }

    /// `tick i` on stdout and `tock i` on stderr every `ms` ms, `count` times (0: for ever).
    fn ticks(&self, ms: u32, count: u32) -> Vec<String> {
        match self.kind {
            Kind::Native => strings(&[
                "sh",
                "-c",
                r#"i=0; while [ "$1" = 0 ] || [ $i -lt "$1" ]; do echo "tick $i"; echo "tock $i" >&2; i=$((i+1)); sleep "$0"; done"#,
                &format!("{}", ms as f64 / 1000.0),
                &count.to_string(),
            ]),
            _ => strings(&["ticks", &ms.to_string(), &count.to_string()]),
        }
    }

    /// Compute for ever, no host calls (Wasm) or no process made (native).
    fn busy(&self) -> Vec<String> {
        match self.kind {
            Kind::Native => strings(&["sh", "-c", "while :; do :; done"]),
            _ => strings(&["loop"]),
        }
    }

    /// Wait until `name`'s stdout log contains `part`.
    fn until_logged_text(&self, name: &str, part: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !text(&self.strata(&["logs", name]).stdout).contains(part) {
            assert!(Instant::now() < deadline, "{name} never logged {part:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Copy stdin to stdout.
    fn cat(&self) -> Vec<String> {
        match self.kind {
            Kind::Native => strings(&["cat"]),
            _ => strings(&["cat-stdin"]),
        }
    }

    /// The CPU % `stats` shows for `name`.
    fn cpu_percent(&self, name: &str) -> f64 {
        let cpu = self.ok(&["stats", "--no-stream", "--format", "{{.CPUPerc}}", name]);
        cpu.trim_end_matches('%')
            .parse()
            .unwrap_or_else(|_| panic!("{cpu}"))
    }

    /// Lines `name` has logged on stdout.
    fn logged(&self, name: &str) -> usize {
        text(&self.strata(&["logs", name]).stdout).lines().count()
    }

    /// Exit with `code`, natively after printing `line` (the probe's `exit` prints nothing).
    fn say_and_exit(&self, line: &str, code: i32) -> Vec<String> {
        match self.kind {
            Kind::Native => strings(&["sh", "-c", &format!("echo {line}; exit {code}")]),
            _ => strings(&["exit", &code.to_string()]),
        }
    }

    fn strata(&self, args: &[&str]) -> Output {
        self.env.run(args)
    }

    /// A command that must succeed; its stdout, trimmed.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.strata(args);
        assert!(
            out.status.success(),
            "{args:?} failed ({}): {}",
            out.status,
            text(&out.stderr)
        );
        text(&out.stdout).trim().to_string()
    }

    /// `run -d FLAGS IMAGE ACTION`: the id it printed.
    fn detach(&self, flags: &[&str], action: &[String]) -> String {
        let mut args = vec!["run", "-d"];
        args.extend(flags);
        args.push(IMAGE);
        args.extend(action.iter().map(String::as_str));
        self.ok(&args)
    }

    fn inspect(&self, name: &str, format: &str) -> String {
        text(&self.strata(&["inspect", "-f", format, name]).stdout)
            .trim()
            .to_string()
    }

    fn status(&self, name: &str) -> String {
        self.inspect(name, "{{.State.Status}}")
    }

    /// Wait (at most `secs`) until `name`'s status is `want`.
    fn until_status(&self, name: &str, want: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let status = self.status(name);
            if status == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name}: still {status:?}, not {want:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait until `name`'s log holds `line` on stdout.
    fn until_logged(&self, name: &str, line: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !text(&self.strata(&["logs", name]).stdout)
            .lines()
            .any(|l| l == line)
        {
            assert!(Instant::now() < deadline, "{name} never logged {line:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The monitor process of a running container: the Wasm guest runs in it; a native
    /// container's init is the child of an intermediate that is the monitor's child.
    fn monitor_pid(&self, name: &str) -> u32 {
        let pid: u32 = self.inspect(name, "{{.State.Pid}}").parse().unwrap();
        match self.kind {
            Kind::Native => parent(parent(pid)),
            _ => pid,
        }
    }
}

/// Field `n` (1-based) of /proc/PID/stat.
fn stat_field(pid: u32, n: usize) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    after.split(' ').nth(n - 3).unwrap().parse().unwrap()
}

fn parent(pid: u32) -> u32 {
    stat_field(pid, 4)
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| !s[s.rfind(')').unwrap() + 2..].starts_with('Z'))
}

common::on_every_backend!(
    "lifecycle";
    a_detached_container_outlives_its_cli_and_logs_both_streams
    logs_follow_until_the_container_ends
    stop_signals_then_kills_after_the_grace_period
    wait_prints_the_exit_code_to_every_waiter
    on_failure_restarts_as_often_as_it_says
    create_start_attach_and_restart
    commands_in_the_wrong_state_fail_as_docker
    a_killed_monitor_leaves_a_consistent_store
    fifty_detached_containers_at_once
    pause_freezes_everything_until_unpause
    a_paused_container_still_stops_and_dies
    top_lists_the_containers_processes
    stats_reports_memory_processes_and_io
    start_interactive_feeds_stdin_once
    attach_writes_to_an_open_stdin
    exec_detached_runs_in_the_background
    exec_interactive_reads_the_callers_stdin
);

fn a_detached_container_outlives_its_cli_and_logs_both_streams(b: &Backend) {
    let began = Instant::now();
    let id = b.detach(&["--name", "w"], &b.ticks(100, 0));
    assert!(
        id.len() == 64 && id.bytes().all(|c| c.is_ascii_hexdigit()),
        "{id}"
    );
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );
    assert_eq!(b.status("w"), "running");
    let ps = b.ok(&["ps"]);
    assert!(
        ps.lines()
            .any(|l| l.contains(&id[..12]) && l.contains("Up ")),
        "{ps}"
    );
    // Its own session: the terminal and process group of the CLI are not its.
    let monitor = b.monitor_pid("w");
    assert_eq!(
        stat_field(monitor, 6),
        monitor,
        "the monitor leads its own session"
    );
    assert_ne!(parent(monitor), std::process::id());
    b.until_logged("w", "tick 3");
    let out = b.strata(&["logs", "w"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(stdout.starts_with("tick 0\ntick 1\n"), "{stdout}");
    assert!(stderr.starts_with("tock 0\ntock 1\n"), "{stderr}");
    assert!(!stdout.contains("tock") && !stderr.contains("tick"));
    let tail = b.strata(&["logs", "--tail", "2", "w"]);
    let tail_lines = text(&tail.stdout).lines().count() + text(&tail.stderr).lines().count();
    assert_eq!(tail_lines, 2, "{tail:?}");
    let stamped = text(&b.strata(&["logs", "-t", "w"]).stdout);
    let first = stamped.lines().next().unwrap();
    let (time, rest) = first.split_once(' ').unwrap();
    assert!(
        time.ends_with('Z') && time.contains('T') && time.len() == 30,
        "{first}"
    );
    assert_eq!(rest, "tick 0", "{first}");
    assert!(text(
        &b.strata(&["logs", "--since", "2030-01-01T00:00:00Z", "w"])
            .stdout
    )
    .is_empty());
    assert_eq!(b.ok(&["stop", "-t", "5", "w"]), "w");
    assert_eq!(b.status("w"), "exited");
    assert!(!alive(monitor), "the monitor ends with its container");
    b.ok(&["rm", "w"]);
    common::assert_store_consistent(&b.env.root());
}

fn logs_follow_until_the_container_ends(b: &Backend) {
    b.detach(&["--name", "fol"], &b.ticks(150, 8));
    let began = Instant::now();
    let mut follow = b
        .env
        .cmd(&["logs", "-f", "fol"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    // Streamed as it is written: the first line arrives long before the container ends.
    assert_eq!(lines.next().unwrap().unwrap(), "tick 0");
    assert!(
        began.elapsed() < Duration::from_millis(900),
        "{:?}",
        began.elapsed()
    );
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let status = follow.wait().unwrap();
    assert!(status.success());
    assert_eq!(rest.len(), 7, "{rest:?}");
    assert_eq!(rest.last().unwrap(), "tick 7");
    assert_eq!(b.status("fol"), "exited");
    assert_eq!(b.inspect("fol", "{{.State.ExitCode}}"), "0");
}

fn stop_signals_then_kills_after_the_grace_period(b: &Backend) {
    if b.native_only() {
        // A handler for TERM: stopped by it.
        b.detach(
            &["--name", "t"],
            &strings(&[
                "sh",
                "-c",
                r#"trap "exit 3" TERM; while :; do sleep 0.1; done"#,
            ]),
        );
        let began = Instant::now();
        assert_eq!(b.ok(&["stop", "t"]), "t");
        assert!(began.elapsed() < Duration::from_secs(3));
        assert_eq!(b.inspect("t", "{{.State.ExitCode}}"), "3");
        // pid 1 without a handler ignores TERM: SIGKILL once -t has passed, 137.
        b.detach(
            &["--name", "i"],
            &strings(&["sh", "-c", "while :; do sleep 0.1; done"]),
        );
        let began = Instant::now();
        assert_eq!(b.ok(&["stop", "-t", "1", "i"]), "i");
        let took = began.elapsed();
        assert!(
            took >= Duration::from_secs(1) && took < Duration::from_secs(4),
            "{took:?}"
        );
        assert_eq!(b.inspect("i", "{{.State.ExitCode}}"), "137");
        // The image's STOPSIGNAL (here --stop-signal) is sent first.
        b.detach(
            &["--name", "u", "--stop-signal", "SIGUSR1"],
            &strings(&[
                "sh",
                "-c",
                r#"trap "exit 10" USR1; while :; do sleep 0.1; done"#,
            ]),
        );
        b.ok(&["stop", "-t", "5", "u"]);
        assert_eq!(b.inspect("u", "{{.State.ExitCode}}"), "10");
    } else {
        // A guest has no signal handlers: the stop signal ends it at once, 128+15.
        b.detach(&["--name", "t"], &b.ticks(100, 0));
        let began = Instant::now();
        assert_eq!(b.ok(&["stop", "-t", "5", "t"]), "t");
        assert!(began.elapsed() < Duration::from_secs(3));
        assert_eq!(b.inspect("t", "{{.State.ExitCode}}"), "143");
        b.detach(&["--name", "k"], &strings(&["loop"]));
        b.ok(&["kill", "-s", "KILL", "k"]);
        b.until_status("k", "exited", 5);
        assert_eq!(b.inspect("k", "{{.State.ExitCode}}"), "137");
    }
    // Stopping a stopped container is no error.
    assert_eq!(b.ok(&["stop", "t"]), "t");
}

fn wait_prints_the_exit_code_to_every_waiter(b: &Backend) {
    let action = match b.kind {
        Kind::Native => strings(&["sh", "-c", "sleep 1; exit 7"]),
        _ => strings(&["sleep", "1"]),
    };
    let want = if b.native_only() { "7" } else { "0" };
    b.detach(&["--name", "w"], &action);
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            b.env
                .cmd(&["wait", "w"])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for w in waiters {
        let out = w.wait_with_output().unwrap();
        assert!(out.status.success());
        assert_eq!(text(&out.stdout).trim(), want);
    }
    // At once for one that has exited.
    let began = Instant::now();
    assert_eq!(b.ok(&["wait", "w"]), want);
    assert!(began.elapsed() < Duration::from_secs(1));
}

fn on_failure_restarts_as_often_as_it_says(b: &Backend) {
    b.detach(
        &["--name", "r", "--restart", "on-failure:3"],
        &b.say_and_exit("ran", 1),
    );
    // Three restarts after 100, 200 and 400 ms of back-off, then it stays down.
    let deadline = Instant::now() + Duration::from_secs(15);
    while b.inspect("r", "{{.RestartCount}} {{.State.Status}}") != "3 exited" {
        assert!(
            Instant::now() < deadline,
            "{}",
            b.inspect("r", "{{json .State}}")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(b.inspect("r", "{{.State.ExitCode}}"), "1");
    if b.native_only() {
        let runs = text(&b.strata(&["logs", "r"]).stdout);
        assert_eq!(runs, "ran\nran\nran\nran\n");
    }
    // `always` restarts even a success, until `stop`: then it stays stopped.
    b.detach(
        &["--name", "alw", "--restart", "always"],
        &b.say_and_exit("again", 0),
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while b
        .inspect("alw", "{{.RestartCount}}")
        .parse::<u32>()
        .unwrap_or(0)
        < 2
    {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    b.ok(&["stop", "alw"]);
    let count = b.inspect("alw", "{{.RestartCount}}");
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(b.status("alw"), "exited");
    assert_eq!(b.inspect("alw", "{{.RestartCount}}"), count);
}

fn create_start_attach_and_restart(b: &Backend) {
    let id = b.ok(&["create", "--name", "crt", IMAGE, "sleep", "0"]);
    assert_eq!(id.len(), 64);
    assert_eq!(b.status("crt"), "created");
    let ps = b.ok(&["ps", "-a"]);
    assert!(
        ps.lines()
            .any(|l| l.contains("Created") && l.ends_with(" crt")),
        "{ps}"
    );
    b.ok(&["rm", "crt"]);
    // start -a shows the output and exits with the container's status.
    let action = match b.kind {
        Kind::Native => strings(&["sh", "-c", "echo out; echo err >&2; exit 3"]),
        _ => strings(&["cat", "/no/such/file"]),
    };
    let mut args = vec!["create", "--name", "alw", IMAGE];
    args.extend(action.iter().map(String::as_str));
    b.ok(&args);
    let out = b.strata(&["start", "-a", "alw"]);
    if b.native_only() {
        assert_eq!(out.status.code(), Some(3), "{out:?}");
        assert_eq!(text(&out.stdout), "out\n");
        assert_eq!(text(&out.stderr), "err\n");
    } else {
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert!(text(&out.stderr).contains("/no/such/file"), "{out:?}");
    }
    // restart: the same container, a new run.
    b.detach(&["--name", "s"], &b.ticks(100, 0));
    let started = b.inspect("s", "{{.State.StartedAt}}");
    assert_eq!(b.ok(&["restart", "-t", "1", "s"]), "s");
    assert_eq!(b.status("s"), "running");
    assert_ne!(b.inspect("s", "{{.State.StartedAt}}"), started);
    // start of a running container is a no-op; start after stop runs it again.
    assert_eq!(b.ok(&["start", "s"]), "s");
    b.ok(&["stop", "-t", "1", "s"]);
    assert_eq!(b.ok(&["start", "s"]), "s");
    assert_eq!(b.status("s"), "running");
    b.ok(&["rm", "-f", "s"]);
}

fn commands_in_the_wrong_state_fail_as_docker(b: &Backend) {
    let out = b.strata(&["stop", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no such container: nosuch"),
        "{out:?}"
    );
    b.detach(&["--name", "x"], &b.ticks(100, 0));
    let out = b.strata(&["rm", "x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("container is running"),
        "{out:?}"
    );
    b.ok(&["kill", "x"]);
    b.until_status("x", "exited", 5);
    assert_eq!(b.inspect("x", "{{.State.ExitCode}}"), "137");
    let out = b.strata(&["kill", "x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("is not running"), "{out:?}");
    // A name in use; a program that is not there (docker's 127, left `created`).
    let out = b.strata(&["run", "-d", "--name", "x", IMAGE]);
    assert_eq!(out.status.code(), Some(125));
    assert!(text(&out.stderr).contains("already in use"), "{out:?}");
    let out = b.strata(&[
        "run",
        "-d",
        "--name",
        "n",
        "--entrypoint",
        "/no/such",
        IMAGE,
    ]);
    assert_eq!(out.status.code(), Some(127), "{out:?}");
    assert!(text(&out.stdout).is_empty());
    assert_eq!(b.status("n"), "created");
    // rm -f of a running one; nothing is left.
    b.detach(&["--name", "y"], &b.ticks(100, 0));
    assert_eq!(b.ok(&["rm", "-f", "y", "x", "n"]), "y\nx\nn");
    assert!(b.ok(&["ps", "-a", "-q"]).is_empty());
    common::assert_store_consistent(&b.env.root());
}

fn a_killed_monitor_leaves_a_consistent_store(b: &Backend) {
    b.detach(&["--name", "m"], &b.ticks(100, 0));
    let pid: u32 = b.inspect("m", "{{.State.Pid}}").parse().unwrap();
    let monitor = b.monitor_pid("m");
    sh(&format!("kill -9 {monitor}"));
    let deadline = Instant::now() + Duration::from_secs(2);
    while b.status("m") == "running" {
        assert!(
            Instant::now() < deadline,
            "still running after its monitor died"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(b.status("m"), "exited");
    // Its processes went with it (native: the kernel kills them when their parent dies).
    let deadline = Instant::now() + Duration::from_secs(2);
    while alive(pid) {
        assert!(
            Instant::now() < deadline,
            "container process {pid} outlived its monitor"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let ps = b.ok(&["ps", "-a"]);
    assert!(ps.contains("Exited (137)"), "{ps}");
    // It can run again, and be removed; nothing stays mounted.
    assert_eq!(b.ok(&["start", "m"]), "m");
    assert_eq!(b.status("m"), "running");
    b.ok(&["rm", "-f", "m"]);
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&b.env.root().display().to_string()),
        "{mounts}"
    );
    b.ok(&["system", "prune", "-f"]);
    common::assert_store_consistent(&b.env.root());
}

fn fifty_detached_containers_at_once(b: &Backend) {
    let ids: Vec<String> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..5)
            .map(|_| {
                s.spawn(|| {
                    (0..10)
                        .map(|_| b.detach(&[], &b.ticks(500, 0)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 50);
    let listed = b.ok(&["ps", "-q", "--no-trunc"]);
    assert_eq!(listed.lines().count(), 50, "{listed}");
    let mut args = vec!["stop", "-t", "2"];
    args.extend(ids.iter().map(String::as_str));
    assert_eq!(b.ok(&args).lines().count(), 50);
    assert!(b.ok(&["ps", "-q"]).is_empty());
    assert_eq!(b.ok(&["ps", "-a", "-q"]).lines().count(), 50);
}

/// `exec` into a native container: inside its pid namespace, hostname and root, confined as
/// its init is (capabilities, seccomp, no_new_privs), no host fds, docker's codes.
#[test]
fn native_exec_joins_the_container_and_is_confined_like_it() {
    let Some(b) =
        Backend::native("lifecycle::native_exec_joins_the_container_and_is_confined_like_it")
    else {
        return;
    };
    b.detach(
        &["--name", "runner"],
        &strings(&["sh", "-c", "echo main > /tmp/written; exec sleep 1000"]),
    );
    b.until_status("runner", "running", 5);
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.strata(&["exec", "runner", "cat", "/tmp/written"]).stdout != b"main\n" {
        assert!(
            Instant::now() < deadline,
            "the exec never saw the container's file"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = b.strata(&["exec", "runner", "sh", "-c", "echo $$; hostname; exit 5"]);
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    let printed = text(&out.stdout);
    let mut lines = printed.lines();
    let pid: u32 = lines.next().unwrap().parse().unwrap();
    assert!(
        pid > 1 && pid < 100,
        "pid {pid} is not in the container's namespace"
    );
    assert_eq!(
        lines.next().unwrap(),
        b.inspect("runner", "{{.Config.Hostname}}")
    );
    // Writes are the container's: `diff` sees them.
    b.ok(&["exec", "runner", "sh", "-c", "echo x > /exec-wrote"]);
    assert!(b.ok(&["diff", "runner"]).contains("A /exec-wrote"));
    // Confined as the init: the same bounding set, seccomp filter mode and no_new_privs.
    let status = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| {
                ["CapBnd:", "CapEff:", "NoNewPrivs:", "Seccomp:"]
                    .iter()
                    .any(|k| l.starts_with(k))
            })
            .map(str::to_string)
            .collect()
    };
    let init: u32 = b.inspect("runner", "{{.State.Pid}}").parse().unwrap();
    let theirs = status(&std::fs::read_to_string(format!("/proc/{init}/status")).unwrap());
    let ours = status(&b.ok(&["exec", "runner", "cat", "/proc/self/status"]));
    assert_eq!(ours, theirs);
    assert_eq!(ours.len(), 4, "{ours:?}");
    // No descriptor of the host: only 0, 1, 2 (and the one `ls` reads /proc/self/fd with).
    let fds = b.ok(&["exec", "runner", "ls", "/proc/self/fd"]);
    assert!(fds.split_whitespace().count() <= 4, "{fds}");
    // -u, -w, -e, -i.
    assert_eq!(
        b.ok(&[
            "exec",
            "-u",
            "nobody",
            "-w",
            "/tmp",
            "-e",
            "A=b",
            "runner",
            "sh",
            "-c",
            "id -u; pwd; echo $A"
        ]),
        "65534\n/tmp\nb"
    );
    let mut cat = b
        .env
        .cmd(&["exec", "-i", "runner", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut cat.stdin.take().unwrap(), b"through stdin\n").unwrap();
    assert_eq!(
        text(&cat.wait_with_output().unwrap().stdout),
        "through stdin\n"
    );
    let out = b.strata(&["exec", "runner", "nosuch"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(
        text(&out.stderr).contains(r#"exec: "nosuch": executable file not found"#),
        "{out:?}"
    );
    b.ok(&["stop", "-t", "1", "runner"]);
    let out = b.strata(&["exec", "runner", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("is not running"), "{out:?}");
}

/// While execs come and go, a container process that reads every /proc/*/exe never gets
/// the strata binary (CVE-2019-5736 on the exec path).
#[test]
fn native_exec_never_shows_the_strata_binary_inside() {
    let Some(b) = Backend::native("lifecycle::native_exec_never_shows_the_strata_binary_inside")
    else {
        return;
    };
    b.detach(
        &["--name", "prober"],
        &strings(&[
            "sh",
            "-c",
            r#"while :; do for e in /proc/[0-9]*/exe; do l=$(readlink "$e" 2>/dev/null) && case "$l" in *strata*) echo "SAW $l";; esac; done; done"#,
        ]),
    );
    for _ in 0..30 {
        b.ok(&["exec", "prober", "true"]);
    }
    b.ok(&["stop", "-t", "1", "prober"]);
    let log = text(&b.strata(&["logs", "prober"]).stdout);
    assert!(!log.contains("SAW"), "{log}");
}

/// `exec` into a Wasm container: a second guest in the container's monitor, on the same
/// overlay as the running one — each sees the other's writes at once, `diff` sees both.
fn wasm_exec_shares_the_running_guests_root(kind: Kind) {
    let b = Backend::wasm(kind);
    b.detach(&["--name", "guest"], &strings(&["await", "/tmp/from-exec"]));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = b.strata(&["exec", "guest", "/hello.wasm", "cat", "/tmp/awaiting"]);
        if out.status.success() {
            assert_eq!(text(&out.stdout), "yes");
            break;
        }
        assert!(Instant::now() < deadline, "{out:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = b.strata(&["exec", "guest", "/hello.wasm", "exit", "7"]);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    let out = b.strata(&["exec", "guest", "/no/such.wasm"]);
    assert_eq!(out.status.code(), Some(127), "{out:?}");
    b.ok(&[
        "exec",
        "guest",
        "/hello.wasm",
        "write",
        "/tmp/from-exec",
        "hi",
    ]);
    assert_eq!(b.ok(&["wait", "guest"]), "0");
    assert!(b.ok(&["logs", "guest"]).contains("got: hi"));
    let diff = b.ok(&["diff", "guest"]);
    assert!(
        diff.contains("A /tmp/awaiting") && diff.contains("A /tmp/from-exec"),
        "{diff}"
    );
    let out = b.strata(&["exec", "guest", "/hello.wasm", "exit", "0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("is not running"), "{out:?}");
}

#[test]
fn wasm_p1_exec_shares_the_running_guests_root() {
    wasm_exec_shares_the_running_guests_root(Kind::WasmP1);
}

#[test]
fn wasm_p2_exec_shares_the_running_guests_root() {
    wasm_exec_shares_the_running_guests_root(Kind::WasmP2);
}

/// `--init`: tini as pid 1 forwards the stop signal to a program that has no handler (as
/// pid 1 it would ignore it), reaps, and passes the status through.
#[test]
fn native_init_forwards_signals_and_passes_the_status() {
    let Some(b) = Backend::native("lifecycle::native_init_forwards_signals_and_passes_the_status")
    else {
        return;
    };
    assert_eq!(
        b.ok(&[
            "run",
            "--rm",
            "--init",
            IMAGE,
            "sh",
            "-c",
            "tr '\\0' ' ' < /proc/1/cmdline; echo $$"
        ]),
        "/sbin/docker-init -- sh -c tr '\\0' ' ' < /proc/1/cmdline; echo $$ 2"
    );
    let out = b.strata(&["run", "--rm", "--init", IMAGE, "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    b.detach(
        &["--name", "tini", "--init"],
        &strings(&["sh", "-c", "while :; do sleep 0.1; done"]),
    );
    let began = Instant::now();
    b.ok(&["stop", "-t", "5", "tini"]);
    assert!(
        began.elapsed() < Duration::from_secs(3),
        "{:?}",
        began.elapsed()
    );
    assert_eq!(b.inspect("tini", "{{.State.ExitCode}}"), "143");
}

fn pause_freezes_everything_until_unpause(b: &Backend) {
    b.detach(&["--name", "p"], &b.ticks(20, 0));
    b.until_logged("p", "tick 2");
    assert_eq!(b.ok(&["pause", "p"]), "p");
    assert_eq!(b.status("p"), "paused");
    assert_eq!(
        b.inspect("p", "{{.State.Running}} {{.State.Paused}}"),
        "true true"
    );
    let ps = b.ok(&["ps"]);
    assert!(ps.contains("(Paused)"), "{ps}");
    assert_eq!(
        b.ok(&["ps", "-q", "--filter", "status=paused"])
            .lines()
            .count(),
        1
    );
    // A guest in a host call (its sleep) stops once that returns.
    std::thread::sleep(Duration::from_millis(200));
    let frozen = b.logged("p");
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(b.logged("p"), frozen, "it ran while paused");
    // docker's refusals while paused, and of a second pause.
    let out = b.strata(&["pause", "p"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("is already paused"), "{out:?}");
    let out = b.strata(&["exec", "p", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("is paused"), "{out:?}");
    assert_eq!(b.ok(&["unpause", "p"]), "p");
    assert_eq!(b.status("p"), "running");
    let resumed = frozen + 5;
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.logged("p") < resumed {
        assert!(Instant::now() < deadline, "it never ran again");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = b.strata(&["unpause", "p"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("is not paused"), "{out:?}");

    // Pure computation stops too: on Wasm, at its next epoch check.
    b.detach(&["--name", "busy"], &b.busy());
    std::thread::sleep(Duration::from_millis(300));
    let cpu = b.cpu_percent("busy");
    assert!(cpu > 30.0, "a busy loop uses {cpu}%");
    b.ok(&["pause", "busy"]);
    let cpu = b.cpu_percent("busy");
    assert!(cpu < 5.0, "a paused busy loop uses {cpu}%");
    b.ok(&["unpause", "busy"]);
    let cpu = b.cpu_percent("busy");
    assert!(cpu > 30.0, "an unpaused busy loop uses {cpu}%");

    b.ok(&["rm", "-f", "p", "busy"]);
    let mut create = vec!["create", "--name", "c", IMAGE];
    let ticks = b.ticks(100, 1);
    create.extend(ticks.iter().map(String::as_str));
    b.ok(&create);
    let out = b.strata(&["pause", "c", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("is not running") && err.contains("nosuch"),
        "{err}"
    );
    common::assert_store_consistent(&b.env.root());
}

fn a_paused_container_still_stops_and_dies(b: &Backend) {
    b.detach(&["--name", "s"], &b.ticks(50, 0));
    b.until_logged("s", "tick 1");
    b.ok(&["pause", "s"]);
    let began = Instant::now();
    assert_eq!(b.ok(&["stop", "-t", "1", "s"]), "s");
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );
    assert_eq!(b.status("s"), "exited");
    // Nothing says paused once it has ended, and it starts afresh.
    assert!(!b
        .env
        .root()
        .join("containers")
        .read_dir()
        .unwrap()
        .flatten()
        .any(|e| e.path().join("paused").exists()));
    b.ok(&["start", "s"]);
    assert_eq!(b.status("s"), "running");
    b.ok(&["pause", "s"]);
    b.ok(&["kill", "s"]);
    b.until_status("s", "exited", 5);
    assert_eq!(b.inspect("s", "{{.State.ExitCode}}"), "137");
    common::assert_store_consistent(&b.env.root());
}

fn top_lists_the_containers_processes(b: &Backend) {
    b.detach(&["--name", "t"], &b.ticks(100, 0));
    b.until_logged("t", "tick 1");
    let pid = b.inspect("t", "{{.State.Pid}}");
    let top = b.ok(&["top", "t"]);
    let mut lines = top.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"],
        "{top}"
    );
    let rows: Vec<&str> = lines.collect();
    assert!(
        rows.iter()
            .any(|r| r.split_whitespace().nth(1) == Some(pid.as_str())),
        "{pid} not in {top}"
    );
    // Nothing of the host's: every row's pid is the container's.
    let host = std::process::id().to_string();
    assert!(rows
        .iter()
        .all(|r| r.split_whitespace().nth(1) != Some(host.as_str())));
    if b.native_only() {
        // Its init and the sleep it runs, and an exec'd process joins them.
        assert!(top.contains("sleep"), "{top}");
        let exec = b.env.cmd(&["exec", "t", "sleep", "3"]).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !b.ok(&["top", "t", "-o", "pid,args"]).contains("sleep 3") {
            assert!(Instant::now() < deadline, "exec'd process not listed");
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut exec = exec;
        let _ = exec.kill();
        let _ = exec.wait();
    } else {
        assert!(
            top.contains("__monitor"),
            "the process hosting the guest: {top}"
        );
    }
    // ps options, docker's way.
    let custom = b.ok(&["top", "t", "-o", "pid,comm"]);
    assert_eq!(
        custom
            .lines()
            .next()
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["PID", "COMMAND"]
    );
    b.ok(&["stop", "-t", "0", "t"]);
    let out = b.strata(&["top", "t"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("is not running"), "{out:?}");
}

fn stats_reports_memory_processes_and_io(b: &Backend) {
    b.detach(&["--name", "st", "--memory", "64m"], &b.ticks(100, 0));
    b.until_logged("st", "tick 1");
    let table = b.ok(&["stats", "--no-stream"]);
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    for title in [
        "CONTAINER ID",
        "NAME",
        "CPU %",
        "MEM USAGE / LIMIT",
        "MEM %",
        "NET I/O",
        "BLOCK I/O",
        "PIDS",
    ] {
        assert!(header.contains(title), "{header}");
    }
    let row = lines.next().expect("a row for the running container");
    assert!(row.contains("st"), "{table}");
    let usage = b.ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.MemUsage}}|{{.PIDs}}|{{.NetIO}}",
        "st",
    ]);
    let fields: Vec<&str> = usage.split('|').collect();
    assert!(fields[0].ends_with(" / 64MiB"), "{usage}");
    assert!(!fields[0].starts_with("0B"), "no memory in use: {usage}");
    let pids: usize = fields[1].parse().unwrap();
    assert!(pids >= 1, "{usage}");
    assert_eq!(fields[2], "0B / 0B", "no network: {usage}");
    // A stopped container shows docker's zeros with -a, and nothing without.
    let mut create = vec!["create", "--name", "idle", IMAGE];
    let ticks = b.ticks(100, 1);
    create.extend(ticks.iter().map(String::as_str));
    b.ok(&create);
    let all = b.ok(&[
        "stats",
        "--no-stream",
        "-a",
        "--format",
        "{{.Name}} {{.CPUPerc}} {{.MemUsage}} {{.PIDs}}",
    ]);
    assert!(all.lines().any(|l| l == "idle 0.00% 0B / 0B 0"), "{all}");
    let running = b.ok(&["stats", "--no-stream", "--format", "{{.Name}}"]);
    assert_eq!(running, "st");
    let json = b.ok(&["stats", "--no-stream", "--format", "json", "st"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["Name"], "st");
    b.ok(&["rm", "-f", "st", "idle"]);
}

/// `strata ARGS` with `input` on its stdin, left open.
fn with_stdin(b: &Backend, args: &[&str], input: &[u8]) -> std::process::Child {
    b.env.with_stdin(args, input)
}

fn start_interactive_feeds_stdin_once(b: &Backend) {
    let mut args = vec!["create", "-i", "--name", "c", IMAGE];
    let cat = b.cat();
    args.extend(cat.iter().map(String::as_str));
    b.ok(&args);
    assert_eq!(
        b.inspect("c", "{{.Config.OpenStdin}} {{.Config.StdinOnce}}"),
        "true true"
    );
    // The end of our stdin closes the container's (StdinOnce): cat ends, start gives its 0.
    let mut child = with_stdin(b, &["start", "-ai", "c"], b"hello\nworld\n");
    drop(child.stdin.take());
    let out = wait_bounded(child, 20);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text(&out.stdout), "hello\nworld\n");
    assert_eq!(b.status("c"), "exited");
    assert_eq!(b.inspect("c", "{{.State.ExitCode}}"), "0");
    // Without -i, start -a attaches no stdin: the container reads an open, empty pipe.
    b.ok(&["rm", "c"]);
}

fn attach_writes_to_an_open_stdin(b: &Backend) {
    let mut args = vec!["run", "-d", "-i", "--name", "d", IMAGE];
    let cat = b.cat();
    args.extend(cat.iter().map(String::as_str));
    b.ok(&args);
    assert_eq!(b.inspect("d", "{{.Config.StdinOnce}}"), "false");
    // An attacher's stdin ends; the container's stays open for the next one.
    let mut first = with_stdin(b, &["attach", "d"], b"one\n");
    drop(first.stdin.take());
    b.until_logged("d", "one");
    assert_eq!(b.status("d"), "running");
    let _ = first.kill();
    let _ = first.wait();
    let mut second = with_stdin(b, &["attach", "d"], b"two\n");
    b.until_logged("d", "two");
    // --no-stdin sends nothing.
    let mut third = with_stdin(b, &["attach", "--no-stdin", "d"], b"three\n");
    std::thread::sleep(Duration::from_millis(300));
    assert!(!text(&b.strata(&["logs", "d"]).stdout).contains("three"));
    // The attachers end with the container, with its status.
    b.ok(&["stop", "-t", "1", "d"]);
    drop(second.stdin.take());
    drop(third.stdin.take());
    for child in [second, third] {
        let out = wait_bounded(child, 10);
        assert_eq!(out.status.code().map(|c| c != 0), Some(true), "{out:?}");
    }
    b.ok(&["rm", "d"]);
}

/// The output of `child`, which must end within `secs`.
fn wait_bounded(mut child: std::process::Child, secs: u64) -> Output {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "still running after {secs} s: {:?}",
                child.wait_with_output()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn exec_detached_runs_in_the_background(b: &Backend) {
    b.detach(&["--name", "bg"], &b.ticks(100, 0));
    let (sleeper, writer, reader): (Vec<&str>, Vec<&str>, Vec<&str>) = if b.native_only() {
        (
            vec!["sleep", "3"],
            vec!["sh", "-c", "echo done > /tmp/bg"],
            vec!["cat", "/tmp/bg"],
        )
    } else {
        (
            vec!["/hello.wasm", "sleep", "3"],
            vec!["/hello.wasm", "write", "/tmp/bg", "done\n"],
            vec!["/hello.wasm", "cat", "/tmp/bg"],
        )
    };
    // It returns once the process runs, printing nothing; the process goes on.
    let began = Instant::now();
    let mut args = vec!["exec", "-d", "bg"];
    args.extend(&sleeper);
    assert_eq!(b.ok(&args), "");
    assert!(
        began.elapsed() < Duration::from_millis(2500),
        "{:?}",
        began.elapsed()
    );
    let pids: usize = b
        .ok(&["stats", "--no-stream", "--format", "{{.PIDs}}", "bg"])
        .parse()
        .unwrap();
    assert!(pids >= 2, "the detached process is not counted: {pids}");
    let mut args = vec!["exec", "-d", "bg"];
    args.extend(&writer);
    b.ok(&args);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut args = vec!["exec", "bg"];
    args.extend(&reader);
    while b.strata(&args).stdout != b"done\n" {
        assert!(Instant::now() < deadline, "the detached exec wrote nothing");
        std::thread::sleep(Duration::from_millis(50));
    }
    // One that cannot start gives docker's code and says why.
    let out = b.strata(&["exec", "-d", "bg", "/no/such"]);
    assert!(matches!(out.status.code(), Some(126 | 127)), "{out:?}");
    assert!(text(&out.stderr).contains("/no/such"), "{out:?}");
    b.ok(&["rm", "-f", "bg"]);
    let out = b.strata(&["exec", "-d", "bg", "true"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

/// `exec -t` (native): the process gets a terminal of its own, its output relayed as a
/// terminal writes it; and a `-t` container logs one stream.
#[test]
fn native_exec_tty_and_a_detached_tty_container() {
    let Some(b) = Backend::native("lifecycle::native_exec_tty_and_a_detached_tty_container") else {
        return;
    };
    b.detach(
        &["-t", "--name", "term"],
        &strings(&[
            "sh",
            "-c",
            "test -t 1 && echo on-a-tty; echo err >&2; exec sleep 1000",
        ]),
    );
    b.until_status("term", "running", 5);
    let out = b.strata(&[
        "exec",
        "-t",
        "term",
        "sh",
        "-c",
        "test -t 0 && test -t 1 && tty",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(text(&out.stdout).starts_with("/dev/pts/"), "{out:?}");
    // A terminal turns \n into \r\n; without -t the same process has no terminal.
    assert!(text(&out.stdout).ends_with("\r\n"), "{out:?}");
    let out = b.strata(&["exec", "term", "sh", "-c", "test -t 1 || echo no-tty"]);
    assert_eq!(text(&out.stdout), "no-tty\n");
    // Both of the container's streams went to its terminal: one stream in the log.
    b.until_logged_text("term", "on-a-tty");
    let logs = b.strata(&["logs", "term"]);
    assert!(text(&logs.stdout).contains("err"), "{logs:?}");
    assert!(logs.stderr.is_empty(), "{logs:?}");
    b.ok(&["rm", "-f", "term"]);
}

fn exec_interactive_reads_the_callers_stdin(b: &Backend) {
    b.detach(&["--name", "ei"], &b.ticks(100, 0));
    let cat: Vec<&str> = if b.native_only() {
        vec!["cat"]
    } else {
        vec!["/hello.wasm", "cat-stdin"]
    };
    let mut args = vec!["exec", "-i", "ei"];
    args.extend(&cat);
    let mut child = with_stdin(b, &args, b"piped\nin\n");
    drop(child.stdin.take());
    let out = wait_bounded(child, 20);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text(&out.stdout), "piped\nin\n");
    // Without -i its stdin is empty, whatever ours holds.
    let mut args = vec!["exec", "ei"];
    args.extend(&cat);
    let child = with_stdin(b, &args, b"not read\n");
    let out = wait_bounded(child, 20);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text(&out.stdout), "");
    b.ok(&["rm", "-f", "ei"]);
}
