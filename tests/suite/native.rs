//! The native backend end to end, on a busybox image (Debian's busybox-static): the process
//! (the kill status, PATH lookup, pid 1, hostname, env, users, workdir, capabilities), the
//! root filesystem (overlay, /proc, /dev, /sys, tmpfs, masked paths, bind targets behind
//! links), limits, the terminal, docker's runc/crun safety regressions, and the rootless case
//! as an unprivileged user made for the test. What holds on every backend (exit codes, args
//! and env, binds, diff and commit, ps, inspect and rm) is in `containers`.

use std::process::Output;

use crate::common::{self, busybox_image, have, sh, Env};

const IMAGE: &str = "busybox:native";

/// Root and busybox-static are what the native backend's tests need; CI has both.
fn ready(test: &str) -> Option<Env> {
    if !common::need_root(test) || !common::tools(test, &["busybox"]) {
        return None;
    }
    let env = Env::new();
    busybox_image(&env, IMAGE, &[]);
    Some(env)
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `strata run --rm IMAGE sh -c SCRIPT`, stdout.
fn shell(env: &Env, flags: &[&str], script: &str) -> String {
    let mut args = vec!["run", "--rm"];
    args.extend(flags);
    args.extend([IMAGE, "sh", "-c", script]);
    env.ok(&args)
}

#[test]
fn runs_processes_with_docker_exit_codes() {
    let Some(env) = ready("runs_processes_with_docker_exit_codes") else {
        return;
    };
    // Killed from outside (pid 1 ignores what it has no handler for from inside): 128+9.
    let child = env
        .cmd(&["run", "--name", "k", IMAGE, "sleep", "30"])
        .spawn()
        .unwrap();
    let mut pid = 0;
    for _ in 0..200 {
        std::thread::sleep(std::time::Duration::from_millis(25));
        let out = env.run(&["inspect", "-f", "{{.State.Pid}}", "k"]);
        pid = stdout(&out).trim().parse().unwrap_or(0);
        if pid > 0 {
            break;
        }
    }
    assert!(pid > 0, "the container's pid is recorded while it runs");
    sh(&format!("kill -KILL {pid}"));
    assert_eq!(child.wait_with_output().unwrap().status.code(), Some(137));
    assert_eq!(
        env.ok(&["inspect", "-f", "{{.State.ExitCode}}", "k"]),
        "137\n"
    );
    env.ok(&["rm", "k"]);
    let out = env.run(&["run", "--rm", IMAGE, "no-such-program"]);
    assert_eq!(code(&out), 127, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("exec: \"no-such-program\": executable file not found in $PATH"),
        "{}",
        stderr(&out)
    );
    let out = env.run(&["run", "--rm", IMAGE, "/etc/passwd"]);
    assert_eq!(code(&out), 126, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("permission denied"),
        "{}",
        stderr(&out)
    );
    // pid 1 in its own pid namespace, seeing only its own processes.
    assert_eq!(shell(&env, &[], "echo $$"), "1\n");
    // Only itself: the shell expands the glob without starting another process.
    assert_eq!(shell(&env, &[], "echo /proc/[0-9]*"), "/proc/1\n");
}

#[test]
fn hostname_env_user_and_workdir_follow_docker() {
    let Some(env) = ready("hostname_env_user_and_workdir_follow_docker") else {
        return;
    };
    env.ok(&["run", "--name", "h", IMAGE, "hostname"]);
    let id = env.ok(&["inspect", "-f", "{{.Id}}", "h"]);
    let logged = env.ok(&[
        "run",
        "--rm",
        IMAGE,
        "sh",
        "-c",
        "hostname; cat /etc/hostname; echo $HOSTNAME",
    ]);
    let lines: Vec<&str> = logged.lines().collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0].len(), 12, "hostname is the short id: {logged}");
    assert!(lines.iter().all(|l| *l == lines[0]), "{logged}");
    assert_ne!(lines[0], &id.trim()[..12], "each container has its own");
    let hosts = shell(&env, &[], "cat /etc/hosts");
    assert!(hosts.starts_with("127.0.0.1\tlocalhost\n"), "{hosts}");

    let e = shell(
        &env,
        &["-e", "FOO=bar", "-e", "PATH=/bin"],
        "echo $FOO $PATH $HOME",
    );
    assert_eq!(e, "bar /bin /root\n");
    let default_path = shell(&env, &[], "echo $PATH");
    assert_eq!(
        default_path,
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
    );

    // Users through the image's /etc/passwd and /etc/group.
    assert_eq!(
        shell(&env, &["-u", "app"], "id; echo $HOME"),
        "uid=1000(app) gid=1000(app) groups=50(staff)\n/home/app\n"
    );
    assert_eq!(
        shell(&env, &["-u", "1000:50"], "id -u; id -g"),
        "1000\n50\n"
    );
    assert_eq!(shell(&env, &["-u", "4242"], "id -u; id -g"), "4242\n0\n");
    let out = env.run(&["run", "--rm", "-u", "ghost", IMAGE, "true"]);
    assert_eq!(code(&out), 125);
    assert!(
        stderr(&out).contains("unable to find user ghost"),
        "{}",
        stderr(&out)
    );
    // An image's USER and WORKDIR (created when missing, as docker does).
    busybox_image(&env, "busybox:app", &["USER app", "WORKDIR /srv/data"]);
    assert_eq!(
        env.ok(&[
            "run",
            "--rm",
            "busybox:app",
            "sh",
            "-c",
            "id -un; pwd; touch x 2>&1 || echo denied"
        ]),
        "app\n/srv/data\ntouch: x: Permission denied\ndenied\n"
    );
    assert_eq!(shell(&env, &["-w", "/a/b/c"], "pwd"), "/a/b/c\n");
    // Non-root users keep no capabilities; root keeps docker's set and no more.
    let caps = shell(
        &env,
        &[],
        "grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status",
    );
    assert!(caps.contains("CapEff:\t00000000a80425fb"), "{caps}");
    assert!(caps.contains("CapBnd:\t00000000a80425fb"), "{caps}");
    assert!(caps.contains("NoNewPrivs:\t1"), "{caps}");
    assert!(caps.contains("Seccomp:\t2"), "{caps}");
    let app = shell(&env, &["-u", "app"], "grep CapEff /proc/self/status");
    assert!(app.contains("0000000000000000"), "{app}");
}

#[test]
fn root_filesystem_mounts_and_changes() {
    let Some(env) = ready("root_filesystem_mounts_and_changes") else {
        return;
    };
    let mounts = shell(&env, &[], "cat /proc/mounts");
    for want in [
        "overlay / overlay rw",
        "proc /proc proc rw,nosuid,nodev,noexec",
        "tmpfs /dev tmpfs rw,nosuid",
        "devpts /dev/pts devpts",
        "shm /dev/shm tmpfs",
        "mqueue /dev/mqueue mqueue",
        "sysfs /sys sysfs ro,",
        "proc /proc/sys proc ro,",
    ] {
        assert!(mounts.contains(want), "{want} missing in\n{mounts}");
    }
    let dev = shell(&env, &[], "ls /dev | tr '\\n' ' '");
    for d in [
        "null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "mqueue", "ptmx", "fd",
    ] {
        assert!(dev.split(' ').any(|x| x == d), "/dev/{d} missing: {dev}");
    }
    assert_eq!(shell(&env, &[], "head -c 4 /dev/zero | wc -c"), "4\n");
    // --tmpfs: a fresh tmpfs, whose files never reach the container's layer.
    assert_eq!(
        shell(
            &env,
            &["--tmpfs", "/scratch"],
            "echo x > /scratch/f; grep ' /scratch ' /proc/mounts | cut -d' ' -f1,3"
        ),
        "tmpfs tmpfs\n"
    );
    // Masked paths read as empty.
    assert_eq!(
        shell(
            &env,
            &[],
            "cat /proc/keys /proc/timer_list | wc -c; ls /sys/firmware | wc -l"
        ),
        "0\n0\n"
    );

    // The container's writes land in its upper layer only, listed in order whatever their
    // kind (diff and commit of each kind, on every backend: containers.rs).
    env.ok(&[
        "run",
        "--name",
        "w",
        IMAGE,
        "sh",
        "-c",
        "echo new > /etc/motd; rm /bin/wc; mkdir /data",
    ]);
    assert_eq!(
        env.ok(&["diff", "w"]),
        "C /bin\nD /bin/wc\nA /data\nC /etc\nA /etc/motd\n"
    );
    env.ok(&["rm", "w"]);
    common::assert_store_consistent(&env.root());
}

#[test]
fn bind_targets_cannot_leave_the_root() {
    let Some(env) = ready("bind_targets_cannot_leave_the_root") else {
        return;
    };
    // An image whose /escape is a symlink to a host path: the bind lands inside the root.
    let outside = env.path("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let tree = env.path("evil-tree");
    std::fs::create_dir_all(tree.join("bin")).unwrap();
    sh(&format!(
        "cp -a {}/busybox-native-rootfs/. {t}/ && ln -s {o} {t}/escape && ln -s ../../../../../../{o} {t}/rel",
        env.tmp.path().display(),
        t = tree.display(),
        o = outside.display()
    ));
    sh(&format!(
        "tar -C {} -cf {}/evil.tar .",
        tree.display(),
        env.tmp.path().display()
    ));
    env.ok(&[
        "import",
        &env.path("evil.tar").display().to_string(),
        "evil:1",
    ]);
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), "bound\n").unwrap();
    for target in ["/escape/mnt", "/rel/mnt"] {
        let v = format!("{}:{target}", src.display());
        assert_eq!(
            env.ok(&[
                "run",
                "--rm",
                "-v",
                &v,
                "evil:1",
                "cat",
                &format!("{target}/f")
            ]),
            "bound\n"
        );
    }
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "nothing was created outside the root"
    );
}

#[test]
fn limits_are_enforced_and_oom_is_reported() {
    let Some(env) = ready("limits_are_enforced_and_oom_is_reported") else {
        return;
    };
    let out = env.run(&[
        "run",
        "--name",
        "oom",
        "-m",
        "16m",
        IMAGE,
        "sh",
        "-c",
        "x=$(head -c 100m /dev/zero | tr '\\0' a); echo survived",
    ]);
    assert_eq!(code(&out), 137, "{}", stderr(&out));
    assert!(!stdout(&out).contains("survived"));
    assert!(stderr(&out).contains("out of memory"), "{}", stderr(&out));
    assert_eq!(
        env.ok(&[
            "inspect",
            "-f",
            "{{.State.OOMKilled}} {{.State.ExitCode}}",
            "oom"
        ]),
        "true 137\n"
    );
    // Under the limit it runs.
    assert_eq!(
        shell(
            &env,
            &["-m", "64m"],
            "x=$(head -c 1m /dev/zero | tr '\\0' a); echo ${#x}"
        ),
        "1048576\n"
    );

    let out = env.run(&[
        "run",
        "--rm",
        "--pids-limit",
        "5",
        IMAGE,
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6 7 8; do sleep 2 & done; wait",
    ]);
    assert_ne!(code(&out), 0, "a fork beyond the limit fails");
    assert!(stderr(&out).contains("can't fork"), "{}", stderr(&out));

    // The CPU quota is written where the kernel reads it, while the container runs.
    let mut child = env
        .cmd(&["run", "--name", "cpu", "--cpus", "0.5", IMAGE, "sleep", "3"])
        .spawn()
        .unwrap();
    let mut quota = String::new();
    for _ in 0..100 {
        std::thread::sleep(std::time::Duration::from_millis(50));
        let id = env.run(&["inspect", "-f", "{{.Id}}", "cpu"]);
        let id = stdout(&id).trim().to_string();
        for file in [
            format!("/sys/fs/cgroup/cpu/strata/{id}/cpu.cfs_quota_us"),
            format!("/sys/fs/cgroup/strata/{id}/cpu.max"),
        ] {
            if let Ok(q) = std::fs::read_to_string(&file) {
                quota = q;
            }
        }
        if !quota.is_empty() {
            break;
        }
    }
    assert!(child.wait().unwrap().success());
    assert!(
        quota == "50000\n" || quota == "50000 100000\n",
        "quota: {quota:?}"
    );
}

/// A shell loop that waits (at most 10 s) for its terminal to be 31 rows by 97 columns, then
/// prints `resized 31 97` and exits 0 (1 if it never is).
pub(crate) const WAIT_FOR_SIZE: &str = "i=0; while [ $i -lt 100 ]; do s=$(stty size); \
    if [ \"$s\" = \"31 97\" ]; then echo resized $s; exit 0; fi; sleep 0.1; i=$((i+1)); done; \
    echo never: $s; exit 1";

#[test]
fn terminal_and_signals() {
    let Some(env) = ready("terminal_and_signals") else {
        return;
    };
    // -t: a pty from the container's own devpts; docker's TERM.
    let out = env.ok(&["run", "--rm", "-t", IMAGE, "sh", "-c", "tty; echo $TERM"]);
    assert_eq!(out, "/dev/pts/0\r\nxterm\r\n");
    assert_eq!(shell(&env, &[], "tty || true"), "not a tty\n");
    // -it under a real terminal: the window size is passed on.
    if have("script") {
        let cmd = format!(
            "stty cols 97 rows 31; {} --root {} run --rm -it {IMAGE} stty size",
            env!("CARGO_BIN_EXE_strata"),
            env.root().display()
        );
        let out = std::process::Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(stdout(&out).contains("31 97"), "{}", stdout(&out));
    }
    // A detached container's terminal takes the size of the terminal that attaches to it
    // (through its monitor): it waits to see 31x97, then says so and ends.
    if have("script") {
        env.ok(&[
            "run",
            "-d",
            "-t",
            "--name",
            "sized",
            IMAGE,
            "sh",
            "-c",
            WAIT_FOR_SIZE,
        ]);
        let cmd = format!(
            "stty cols 97 rows 31; {} --root {} attach sized",
            env!("CARGO_BIN_EXE_strata"),
            env.root().display()
        );
        let out = std::process::Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(stdout(&out).contains("resized 31 97"), "{}", stdout(&out));
        assert_eq!(env.ok(&["wait", "sized"]), "0\n");
        env.ok(&["rm", "sized"]);
    }
    // -i: stdin reaches the container; without it, the container reads nothing.
    let mut child = env
        .cmd(&[
            "run",
            "--rm",
            "-i",
            IMAGE,
            "sh",
            "-c",
            "read line; echo got $line",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"piped\n").unwrap();
    assert_eq!(stdout(&child.wait_with_output().unwrap()), "got piped\n");

    // SIGTERM to strata goes to the container's pid 1.
    let child = env
        .cmd(&[
            "run",
            "--rm",
            IMAGE,
            "sh",
            "-c",
            "trap 'echo got TERM; exit 3' TERM; echo ready; while :; do sleep 0.1; done",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut reader = std::io::BufReader::new(child.stdout.unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
    assert_eq!(line, "ready\n");
    sh(&format!("kill -TERM {pid}"));
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
    assert_eq!(rest, "got TERM\n");
}

/// runc CVE-2019-5736, CVE-2024-21626 and the usual containment checks.
#[test]
fn safety_regressions() {
    let Some(env) = ready("safety_regressions") else {
        return;
    };
    let strata = env!("CARGO_BIN_EXE_strata");
    let before = sh(&format!("sha256sum {strata}"));
    let out = env.run(&[
        "run", "--rm", IMAGE, "sh", "-c",
        "echo pwned > /proc/self/exe; echo pwned > /proc/1/exe; cat /proc/1/cmdline | tr '\\0' ' '; exit 0",
    ]);
    assert_eq!(
        sh(&format!("sha256sum {strata}")),
        before,
        "strata binary untouched"
    );
    assert!(
        stdout(&out).starts_with("sh -c"),
        "pid 1 is the container's program, not strata"
    );

    // Only stdin, stdout, stderr (and ls's own directory) are open in the container.
    let fds = shell(&env, &[], "ls /proc/self/fd | tr '\\n' ' '");
    assert_eq!(fds, "0 1 2 3 ", "leaked fds: {fds}");
    for n in 3..10 {
        let dir = format!("/proc/self/fd/{n}");
        let out = env.run(&[
            "run",
            "--rm",
            "-w",
            &dir,
            IMAGE,
            "sh",
            "-c",
            "ls ../../../../ | head -3",
        ]);
        assert_ne!(
            code(&out),
            0,
            "-w {dir} reached something: {}",
            stdout(&out)
        );
    }

    let marker = env.path("host-marker");
    std::fs::write(&marker, "host").unwrap();
    let check = format!(
        "test -e {m} && echo host-visible; \
         mount -t tmpfs none /mnt 2>/dev/null && echo mounted; \
         echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null && echo proc-sys-written; \
         echo x > /sys/kernel/uevent_helper 2>/dev/null && echo sys-written; \
         touch /sys/strata 2>/dev/null && echo sys-touched; \
         unshare -m true 2>/dev/null && echo unshared; \
         echo done",
        m = marker.display()
    );
    assert_eq!(shell(&env, &[], &check), "done\n");
    let root = shell(&env, &[], "ls /");
    assert_eq!(root, "bin\ndev\netc\nproc\nroot\nsys\ntmp\nvar\n");
}

/// An unprivileged user runs a busybox image from a store in its home.
#[test]
fn rootless_as_an_unprivileged_user() {
    let Some(env) = ready("rootless_as_an_unprivileged_user") else {
        return;
    };
    let user = "strata-rootless";
    let home = common::host_user(user);
    let uid: u32 = sh(&format!("id -u {user}")).trim().parse().unwrap();
    let tar = env.path("busybox-native-rootfs.tar");
    sh(&format!(
        "cp {} {home}/bb.tar && chown {user} {home}/bb.tar && rm -rf {home}/store",
        tar.display()
    ));
    let strata = env!("CARGO_BIN_EXE_strata");
    let as_user = |script: &str| {
        let out = std::process::Command::new("setpriv")
            .args([
                "--reuid",
                user,
                "--regid",
                user,
                "--init-groups",
                "--",
                "sh",
                "-c",
                script,
            ])
            .env("HOME", &home)
            .env_remove("STRATA_ROOT")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{script}: {}", stderr(&out));
        stdout(&out)
    };
    let s = format!("{strata} --root {home}/store");
    as_user(&format!("{s} import {home}/bb.tar bb:rootless"));
    let out = as_user(&format!(
        "{s} run --name mine bb:rootless sh -c 'id -u; head -1 /proc/self/uid_map; echo data > /root/file; grep CapEff /proc/self/status'"
    ));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0", "root inside: {out}");
    let map: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        map,
        ["0", &uid.to_string(), "1"],
        "uid 0 inside is {user} outside"
    );
    assert!(lines[2].contains("a80425fb"), "{out}");
    let owner = sh(&format!(
        "stat -c %u {home}/store/containers/*/upper/root/file"
    ));
    assert_eq!(
        owner.trim(),
        uid.to_string(),
        "the upper layer's files are the user's"
    );
    if have("newuidmap") && sh(&format!("grep -c ^{user}: /etc/subuid || true")).trim() != "0" {
        // Subordinate ids: images with several users work.
        assert_eq!(
            as_user(&format!("{s} run --rm -u app bb:rootless id -u")),
            "1000\n"
        );
    }
    as_user(&format!("{s} rm mine"));
    assert_eq!(
        as_user(&format!("ls {home}/store/containers | wc -l")),
        "0\n"
    );
    sh(&format!("rm -rf {home}/store {home}/bb.tar"));
}
