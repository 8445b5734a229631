//! The Wasm backend end to end: preview 1 modules and preview 2 components from layered
//! images: the example guest, traps and memory, detection by magic, escapes, stdin and
//! streaming, stopping a guest (signals, waits, the grace period), polls, the network, the
//! compile cache, spare container directories and large directories. What holds on every
//! backend (exit codes, args and env, binds, diff and commit, ps, inspect and rm) is in
//! `containers`.

use std::io::{BufRead, Read, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{self, hello_wasm, probe, Env};

/// Both builds of the test probe, with a label for messages.
fn guests() -> Vec<(&'static str, std::path::PathBuf)> {
    let (p1, p2) = probe();
    vec![("p1", p1), ("p2", p2)]
}

fn code(out: &std::process::Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

/// The example guest does what the README shows.
#[test]
fn hello_runs_with_args_env_and_a_layered_root() {
    let (p1, p2) = hello_wasm();
    for (kind, wasm) in [("p1", p1), ("p2", p2)] {
        let env = Env::new();
        env.wasm_image(&wasm, "hello", true);
        let out = env.ok(&[
            "run",
            "--name",
            "first",
            "-e",
            "GREETING=hi there",
            "hello",
            "hello",
            "a b",
            "c",
        ]);
        assert!(out.contains("hello from wasm"), "{kind}: {out}");
        assert!(
            out.contains(r#"args: ["/hello.wasm", "hello", "a b", "c"]"#),
            "{kind}: {out}"
        );
        assert!(
            out.contains("env: FROM_IMAGE=yes") && out.contains("env: GREETING=hi there"),
            "{kind}: {out}"
        );
        assert!(
            out.lines()
                .any(|l| l.starts_with("ls /: ") && l.contains("data") && l.contains("hello.wasm")),
            "{kind}: {out}"
        );
        assert!(
            out.contains("wrote /tmp/hello.txt: written by hello-wasm"),
            "{kind}: {out}"
        );
        // The container stays, exited, with its changes in its own upper layer only.
        let ps = env.ok(&["ps", "-a"]);
        assert!(
            ps.lines()
                .any(|l| l.contains("first") && l.contains("Exited (0)")),
            "{kind}: {ps}"
        );
        let df = env.ok(&["system", "df"]);
        let containers_row: Vec<&str> = df
            .lines()
            .find(|l| l.starts_with("Containers"))
            .unwrap()
            .split_whitespace()
            .collect();
        assert_eq!(
            &containers_row[1..3],
            ["1", "0"],
            "{kind}: one container, none running: {df}"
        );
        let diff = env.ok(&["diff", "first"]);
        assert!(
            diff.lines().any(|l| l == "A /tmp/hello.txt"),
            "{kind}: {diff}"
        );
        let layers = env.root().join("layers");
        assert!(
            std::fs::read_dir(&layers)
                .unwrap()
                .all(|l| !l.unwrap().path().join("fs/tmp").exists()),
            "{kind}: lower layers untouched"
        );
        // commit: a new image whose top layer is the container's changes
        let id = env.ok(&["commit", "-m", "with hello.txt", "first", "hello:committed"]);
        assert!(id.starts_with("sha256:"));
        let cat = env.ok(&["run", "--rm", "hello:committed", "cat", "/tmp/hello.txt"]);
        assert_eq!(cat, "written by hello-wasm", "{kind}");
        assert!(env
            .ok(&["history", "hello:committed"])
            .contains("with hello.txt"));
        // An image a container uses is not removed without -f, and its content stays.
        assert!(
            env.fails(&["rmi", "hello"]).contains("must force"),
            "{kind}"
        );
        assert_eq!(env.ok(&["rm", "first"]).trim(), "first");
        assert_eq!(
            env.ok(&["ps", "-aq"]),
            "",
            "{kind}: --rm and rm leave no containers"
        );
    }
}

/// What only Wasm has: a trap and running out of memory end the guest with docker's codes,
/// and a program that is not a Wasm binary cannot be invoked. (The program's own status and
/// the codes every backend shares are in `containers`.)
#[test]
fn traps_out_of_memory_and_non_wasm_programs() {
    for (kind, wasm) in guests() {
        let env = Env::new();
        env.wasm_image(&wasm, "hello", true);
        let out = env.run(&["run", "--rm", "hello", "trap"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(code(&out), 134, "{kind}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{kind}: one line: {err}");
        assert!(
            err.contains("wasm trap") && err.contains("unreachable"),
            "{kind}: {err}"
        );
        let out = env.run(&["run", "--rm", "-m", "32m", "hello", "oom"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(code(&out), 137, "{kind}: out of memory: {err}");
        assert!(err.contains("out of memory"), "{kind}: {err}");
        // Not a Wasm binary, with docker's code.
        let out = env.run(&[
            "run",
            "--rm",
            "--entrypoint",
            "/data/greeting.txt",
            "--runtime",
            "wasm",
            "hello",
        ]);
        assert_eq!(
            code(&out),
            126,
            "{kind}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn detected_by_magic_without_a_platform() {
    let (_, p2) = probe();
    let env = Env::new();
    env.wasm_image(&p2, "plain", false);
    assert!(env
        .ok(&["inspect", "-f", "{{.Os}}", "plain"])
        .starts_with("linux"));
    assert!(env
        .ok(&["run", "--rm", "plain", "exit", "0"])
        .contains("exiting with 0"));
    // Forced onto the native backend, a Wasm binary is not something Linux can exec.
    let out = env.run(&["run", "--rm", "--runtime", "native", "plain"]);
    if common::need_root("detected_by_magic_without_a_platform (its native half)") {
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(code(&out), 126, "{err}");
        assert!(err.contains("exec: \"/hello.wasm\""), "{err}");
    }
}

#[test]
fn guests_cannot_escape_the_root() {
    for (kind, wasm) in guests() {
        let env = Env::new();
        let canary_dir = env.path("canary");
        std::fs::create_dir_all(&canary_dir).unwrap();
        let canary = canary_dir.join("file");
        std::fs::write(&canary, "canary").unwrap();
        env.wasm_image(&wasm, "hello", true);
        let out = env.run(&[
            "run",
            "--rm",
            "-e",
            &format!("CANARY={}", canary.display()),
            "hello",
            "escape",
        ]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("attempt 1:"),
            "{kind}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            std::fs::read_to_string(&canary).unwrap(),
            "canary",
            "{kind}"
        );
        let names: Vec<_> = std::fs::read_dir(&canary_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["file"], "{kind}: nothing created beside the canary");
        assert!(!std::path::Path::new("/pwned").exists());
    }
}

#[test]
fn stdin_and_streaming_output() {
    let (_, p2) = probe();
    let env = Env::new();
    env.wasm_image(&p2, "hello", true);
    let mut child = env
        .cmd(&["run", "--rm", "-i", "hello", "cat-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"line one\nline two\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "line one\nline two\n");
    // Output arrives as the guest writes it, not at exit.
    let start = Instant::now();
    let mut child = env
        .cmd(&["run", "--rm", "hello", "sleep-print"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    reader.read_line(&mut first).unwrap();
    let first_at = start.elapsed();
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("tick 3"), "{rest}");
    assert!(first.starts_with("tick 1"), "{first}");
    let status = child.wait().unwrap();
    assert!(status.success());
    assert!(
        first_at < start.elapsed() - Duration::from_millis(1500),
        "first line at {first_at:?}, exit at {:?}",
        start.elapsed()
    );
}

/// `run [flags] hello loop`, once the guest has said it is looping.
fn spin(env: &Env, flags: &[&str]) -> std::process::Child {
    let mut args = vec!["run"];
    args.extend(flags);
    args.extend(["hello", "loop"]);
    let mut child = env.cmd(&args).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("looping"), "{line}");
    child
}

fn signal(child: &std::process::Child, sig: rustix::process::Signal) {
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(child.id() as i32).unwrap(),
        sig,
    )
    .unwrap();
}

#[test]
fn sigterm_and_sigint_stop_a_spinning_guest() {
    for (kind, wasm) in guests() {
        let env = Env::new();
        env.wasm_image(&wasm, "hello", true);
        for (sig, expected) in [
            (rustix::process::Signal::TERM, 143),
            (rustix::process::Signal::INT, 130),
        ] {
            let mut child = spin(&env, &["--name", "spinner"]);
            let ps = env.ok(&["ps"]);
            assert!(
                ps.contains("spinner") && ps.contains("Up "),
                "{kind}: running shows in ps: {ps}"
            );
            let sent = Instant::now();
            signal(&child, sig);
            let status = child.wait().unwrap();
            assert_eq!(status.code(), Some(expected), "{kind}");
            assert!(
                sent.elapsed() < Duration::from_secs(2),
                "{kind}: stopped promptly ({:?})",
                sent.elapsed()
            );
            let ps = env.ok(&["ps", "-a"]);
            assert!(ps.contains(&format!("Exited ({expected})")), "{kind}: {ps}");
            env.ok(&["rm", "spinner"]);
        }
    }
}

/// Count of container directories (records) left in the store.
fn containers_left(env: &Env) -> usize {
    std::fs::read_dir(env.root().join("containers"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .count()
}

/// SIGTERM to `run`'s `child` once its guest has started (the container shows as running)
/// and then, with `wchan`, once a thread of it sleeps in that kernel function, else after a
/// moment: how it ended, and how long after the signal.
fn stop_when_waiting(
    env: &Env,
    child: &mut std::process::Child,
    wchan: Option<&str>,
) -> (std::process::ExitStatus, Duration) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while env.ok(&["ps", "-q"]).trim().is_empty() {
        assert!(Instant::now() < deadline, "the guest never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    match wchan {
        Some(wanted) => {
            let sleeping_in = || {
                std::fs::read_dir(format!("/proc/{}/task", child.id()))
                    .into_iter()
                    .flatten()
                    .flatten()
                    .any(|t| {
                        std::fs::read_to_string(t.path().join("wchan")).is_ok_and(|w| w == wanted)
                    })
            };
            while !sleeping_in() {
                assert!(
                    Instant::now() < deadline,
                    "the guest never waited in {wanted}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        None => std::thread::sleep(Duration::from_millis(300)),
    }
    let sent = Instant::now();
    signal(child, rustix::process::Signal::TERM);
    let status = child.wait().unwrap();
    (status, sent.elapsed())
}

/// A guest waiting in WASI (sleeping, reading stdin, polling) stops at once on SIGTERM, and
/// `--rm` still removes its container.
#[test]
fn a_waiting_guest_stops_at_once() {
    for (kind, wasm) in guests() {
        let env = Env::new();
        env.wasm_image(&wasm, "hello", true);
        for args in [
            &["hello", "sleep", "60"][..],
            &["-i", "hello", "cat-stdin"],
            &["-i", "hello", "poll", "60000", "stdin"],
        ] {
            let mut argv = vec!["run", "--rm"];
            argv.extend(args);
            let mut child = env
                .cmd(&argv)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            // Held open: the guest reading it waits.
            let _stdin = child.stdin.take().unwrap();
            let (status, took) = stop_when_waiting(&env, &mut child, None);
            assert_eq!(status.code(), Some(143), "{kind} {args:?}");
            assert!(
                took < Duration::from_millis(2500),
                "{kind} {args:?}: stopped at once, not by the grace period: {took:?}"
            );
        }
        assert_eq!(containers_left(&env), 0, "{kind}: --rm cleaned up");
    }
}

/// `poll` in the guest: files and stdout are ready at once, stdin when it has data (or has
/// none to give without `-i`), and a timeout passes when nothing is ready; sleep sleeps.
#[test]
fn poll_and_sleep_wait_as_asked() {
    for (kind, wasm) in guests() {
        let env = Env::new();
        env.wasm_image(&wasm, "hello", true);
        let start = Instant::now();
        let out = env.ok(&[
            "run",
            "--rm",
            "hello",
            "poll",
            "30000",
            "/data/greeting.txt",
            "stdout",
            "stdin",
        ]);
        assert_eq!(out, "poll 3 in out in\n", "{kind}");
        assert!(start.elapsed() < Duration::from_secs(15), "{kind}: no wait");

        let poll_stdin = |ms: &str, input: &[u8]| {
            let start = Instant::now();
            let mut child = env
                .cmd(&["run", "--rm", "-i", "hello", "poll", ms, "stdin"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(input).unwrap();
            let mut out = String::new();
            child
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut out)
                .unwrap();
            assert!(child.wait().unwrap().success(), "{kind}: {out}");
            drop(stdin);
            (out, start.elapsed())
        };
        let (out, took) = poll_stdin("400", b"");
        assert_eq!(out, "poll 0 -\n", "{kind}: nothing to read");
        assert!(
            took >= Duration::from_millis(400),
            "{kind}: waited {took:?}"
        );
        let (out, took) = poll_stdin("30000", b"x\n");
        assert_eq!(out, "poll 1 in\n", "{kind}");
        assert!(took < Duration::from_secs(15), "{kind}: {took:?}");

        let start = Instant::now();
        let out = env.ok(&["run", "--rm", "hello", "sleep", "0.4"]);
        assert_eq!(out, "sleeping\nslept\n", "{kind}");
        assert!(start.elapsed() >= Duration::from_millis(400), "{kind}");
    }
}

/// A guest blocked in a host call that no signal ends (opening a FIFO that nobody writes)
/// never reaches an epoch check: after a grace period the process ends with the signal's
/// status all the same.
#[test]
fn a_guest_blocked_in_the_host_stops_after_the_grace_period() {
    let (_, p2) = probe();
    let env = Env::new();
    env.wasm_image(&p2, "hello", true);
    let shared = env.path("fifo-dir");
    std::fs::create_dir_all(&shared).unwrap();
    let fifo = shared.join("fifo");
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .unwrap();
    let bind = format!("{}:/mnt", shared.display());
    let mut child = env
        .cmd(&["run", "--rm", "-v", &bind, "hello", "cat", "/mnt/fifo"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Blocked opening the FIFO (the kernel waits for a writer there).
    let (status, took) = stop_when_waiting(&env, &mut child, Some("wait_for_partner"));
    assert_eq!(status.code(), Some(143));
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "ended by the grace period: {took:?}"
    );
    // It left without cleaning up, as does a `run --rm` killed outright: such a container
    // counts as removed, and `system prune` clears what it left.
    let mut killed = spin(&env, &["--rm"]);
    killed.kill().unwrap();
    killed.wait().unwrap();
    assert!(
        env.ok(&["ps", "-a", "-q"]).trim().is_empty(),
        "nothing listed"
    );
    assert_eq!(containers_left(&env), 2, "both records are still on disk");
    env.ok(&["system", "prune", "-f"]);
    assert_eq!(containers_left(&env), 0, "prune removed them");
}

/// `--network host` lets a component's wasi:sockets reach the host's network; by default
/// (`--network none`, as a native container) it reaches no address. (Preview 1 has no way
/// to open a socket.)
#[test]
fn network_host_reaches_the_host_and_none_nothing() {
    let (_, p2) = probe();
    let env = Env::new();
    env.wasm_image(&p2, "hello", true);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let _ = conn.unwrap().write_all(b"hello over tcp\n");
        }
    });
    let connect = |flags: &[&str], target: &str| {
        let mut args = vec!["run", "--rm"];
        args.extend(flags);
        args.extend(["hello", "connect", target]);
        env.run(&args)
    };
    let host = ["--network", "host"];
    let out = connect(&host, &addr);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "received: hello over tcp\n"
    );
    let out = connect(&host, &addr.replace("127.0.0.1", "localhost"));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "received: hello over tcp\n",
        "names resolve"
    );
    for flags in [&[][..], &["--network", "none"]] {
        let out = connect(flags, &addr);
        assert_eq!(code(&out), 1, "{flags:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("Permission denied"), "{flags:?}: {err}");
    }
}

#[test]
fn compiled_code_is_cached() {
    let (p1, p2) = probe();
    let env = Env::new();
    env.wasm_image(&p1, "hello", true);
    env.ok(&["run", "--rm", "hello", "exit", "0"]);
    let cache = env.root().join("cache/wasm");
    let listing = || {
        let mut artifacts = Vec::new();
        let mut links = Vec::new();
        for entry in std::fs::read_dir(&cache).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            if name.ends_with(".cwasm") {
                artifacts.push(path);
            } else {
                assert!(name.starts_with("file-"), "unexpected cache entry {name}");
                links.push(path);
            }
        }
        artifacts.sort();
        (artifacts, links)
    };
    let (artifacts, links) = listing();
    assert_eq!(artifacts.len(), 1, "one compiled artifact: {artifacts:?}");
    // The module comes from a lower layer: its identity names a link to the artifact, so
    // later starts need not read or hash it.
    assert_eq!(links.len(), 1, "one link by file identity: {links:?}");
    assert_eq!(
        std::fs::canonicalize(&links[0]).unwrap(),
        std::fs::canonicalize(&artifacts[0]).unwrap()
    );
    let before = std::fs::metadata(&artifacts[0])
        .unwrap()
        .modified()
        .unwrap();
    let start = Instant::now();
    env.ok(&["run", "--rm", "hello", "exit", "0"]);
    let warm = start.elapsed();
    assert_eq!(
        std::fs::metadata(&artifacts[0])
            .unwrap()
            .modified()
            .unwrap(),
        before,
        "second run reuses the artifact"
    );
    assert_eq!(listing(), (artifacts.clone(), links.clone()));
    eprintln!("warm run: {warm:?}");
    let mut f = std::fs::File::open(&artifacts[0]).unwrap();
    let mut head = [0u8; 4];
    f.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"\x7fELF", "a serialized wasmtime artifact");

    // A link whose artifact is gone falls back to the module's digest: compiled again.
    std::fs::remove_file(&artifacts[0]).unwrap();
    let out = env.ok(&["run", "--rm", "hello", "exit", "0"]);
    assert!(out.contains("exiting with 0"), "{out}");
    assert_eq!(listing().0, artifacts, "recompiled under the same digest");

    // Another module at the same path in another image: its own artifact.
    env.wasm_image(&p2, "other", true);
    env.ok(&["run", "--rm", "other", "exit", "0"]);
    let (more, links) = listing();
    assert_eq!(more.len(), 2, "{more:?}");
    assert_eq!(links.len(), 2, "{links:?}");

    // `system prune` drops links whose artifact is gone; `-a` all compiled code.
    std::fs::remove_file(&more[0]).unwrap();
    env.ok(&["system", "prune", "-f"]);
    let (left, links) = listing();
    assert_eq!(left, [more[1].clone()]);
    assert_eq!(links.len(), 1, "the dangling link went: {links:?}");
    let out = env.ok(&["system", "prune", "-a", "-f"]);
    assert!(out.contains("Deleted compiled Wasm code: 2"), "{out}");
    assert_eq!(listing(), (vec![], vec![]));
}

/// `run --rm` leaves nothing behind but, when the container wrote nothing, its directory as
/// a spare for the next container; a container that wrote gets a fresh root all the same.
/// A container directory without a record (a killed create) is removed by `system prune`.
#[test]
fn removed_containers_leave_no_trace() {
    let (_, p2) = probe();
    let env = Env::new();
    env.wasm_image(&p2, "hello", true);
    let containers = env.root().join("containers");
    let names = |dir: &std::path::Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    env.ok(&["run", "--rm", "hello", "exit", "0"]);
    assert_eq!(names(&containers), [".spare"], "only the spare directory");
    let spare = names(&containers.join(".spare"));
    assert_eq!(spare.len(), 1, "{spare:?}");
    assert_eq!(
        names(&containers.join(".spare").join(&spare[0])),
        ["upper"],
        "a spare is an empty container directory"
    );

    // The next container takes the spare; it writes, so its directory is not kept.
    let out = env.ok(&["run", "--rm", "hello", "write", "/made-here", "x"]);
    assert!(out.contains("ok"), "{out}");
    assert_eq!(names(&containers), [".spare"]);
    assert!(
        names(&containers.join(".spare")).is_empty(),
        "the spare was used"
    );
    // A new container sees the image's root, not what the last one wrote.
    let out = env.ok(&["run", "--rm", "hello", "ls", "/"]);
    assert!(!out.contains("made-here"), "{out}");
    assert!(out.contains("hello.wasm"), "{out}");
    assert_eq!(names(&containers.join(".spare")).len(), 1);
    // A kept container (made from that spare) is listed; `rm` returns its directory.
    env.ok(&["run", "--name", "kept", "hello", "exit", "0"]);
    assert!(names(&containers.join(".spare")).is_empty());
    let ps = env.ok(&["ps", "-a", "-q"]);
    assert_eq!(ps.lines().count(), 1, "only the kept container: {ps}");
    env.ok(&["rm", "kept"]);
    assert_eq!(names(&containers), [".spare"]);
    assert_eq!(names(&containers.join(".spare")).len(), 1);

    // Debris: a container directory whose record was never written.
    let debris = containers.join("0".repeat(64));
    std::fs::create_dir_all(debris.join("upper/etc")).unwrap();
    std::fs::write(debris.join("upper/etc/x"), "x").unwrap();
    assert!(env.ok(&["ps", "-a", "-q"]).trim().is_empty());
    env.ok(&["system", "prune", "-f"]);
    assert!(
        !debris.exists(),
        "prune removes a container directory without a record"
    );
    assert_eq!(names(&containers.join(".spare")).len(), 1, "spares stay");

    // Concurrent runs take and return spares without losing or sharing a directory.
    let children: Vec<_> = (0..6)
        .map(|i| {
            env.cmd(&["run", "--rm", "hello", "exit", &i.to_string()])
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, mut child) in children.into_iter().enumerate() {
        assert_eq!(child.wait().unwrap().code(), Some(i as i32));
    }
    assert_eq!(names(&containers), [".spare"], "every container went");
    let spares = names(&containers.join(".spare")).len();
    assert!((1..=4).contains(&spares), "{spares} spares");
}

/// A directory longer than one `fd_readdir` buffer is listed whole (preview 1 pages through
/// it with cookies; preview 2 streams it), and files written and read back keep their bytes.
#[test]
fn large_directories_and_file_contents() {
    for (kind, wasm) in guests() {
        let env = Env::new();
        env.wasm_image(&wasm, "hello", true);
        // `files 300 0` creates /bench/in-0..299 (1 KiB each) and reads them all back.
        let out = env.ok(&["run", "--name", "filler", "hello", "files", "300", "0"]);
        assert!(out.contains("read 300 wrote 0"), "{kind}: {out}");
        env.ok(&["commit", "filler", "filled"]);
        let out = env.ok(&["run", "--rm", "filled", "ls", "/bench"]);
        let mut names: Vec<&str> = out.split_whitespace().collect();
        names.sort();
        let mut want: Vec<String> = (0..300).map(|i| format!("in-{i}")).collect();
        want.sort();
        assert_eq!(names, want, "{kind}");
        let out = env.ok(&["run", "--rm", "filled", "cat", "/bench/in-7"]);
        let want: String = (0..1024u32)
            .map(|i| (b'a' + (i % 26) as u8) as char)
            .collect();
        assert_eq!(out.trim_end(), want, "{kind}");
    }
}
