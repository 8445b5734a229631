//! What a container does whichever backend runs it, written once over a `Backend` fixture
//! and run on each: native (a busybox image: its programs and `sh -c`), Wasm preview 1 and
//! Wasm preview 2 (the probe as a core module and as a component). The fixture maps an
//! action (exit with n, write a file, print the environment...) to that backend's argv; what
//! the test checks of the result is the same for all. Each test runs as
//! `containers::<backend>::<test>`. What only one backend has stays in `native` (namespaces,
//! cgroups, the terminal, seccomp) and `wasm` (traps, the two ABIs, the compile cache,
//! stopping a guest).

use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{self, busybox_image, probe, sh, Env};

/// The image each backend's store holds: `ENV FROM_IMAGE=yes`, and `/data/greeting.txt`.
const IMAGE: &str = "subject";
const GREETING: &str = "/data/greeting.txt";
const GREETING_TEXT: &str = "hello from a layer\n";

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Native,
    WasmP1,
    WasmP2,
}

/// A private store holding IMAGE for one backend, and that backend's argv for each action.
pub struct Backend {
    kind: Kind,
    env: Env,
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
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

impl Backend {
    /// Root and busybox-static, as the native module needs; None (after `skip`) without.
    fn native(test: &str) -> Option<Backend> {
        if !common::need_root(test) || !common::tools(test, &["busybox"]) {
            return None;
        }
        let env = Env::new();
        // busybox_image packs the tree at this path when it is there: the busybox rootfs
        // with the greeting added, so both backends' images hold the same file.
        let tree = env.path(&format!("{IMAGE}-rootfs"));
        sh(&format!(
            "{}/examples/rootfs/make-busybox-rootfs.sh {}",
            env!("CARGO_MANIFEST_DIR"),
            tree.display()
        ));
        std::fs::create_dir_all(tree.join("data")).unwrap();
        std::fs::write(tree.join(&GREETING[1..]), GREETING_TEXT).unwrap();
        busybox_image(&env, IMAGE, &["ENV FROM_IMAGE=yes"]);
        Some(Backend {
            kind: Kind::Native,
            env,
        })
    }

    fn wasm(kind: Kind) -> Backend {
        let (p1, p2) = probe();
        let env = Env::new();
        let wasm = if kind == Kind::WasmP1 { p1 } else { p2 };
        // /hello.wasm as the entrypoint, ENV FROM_IMAGE=yes, /data/greeting.txt.
        env.wasm_image(&wasm, IMAGE, true);
        Backend { kind, env }
    }

    fn name(&self) -> &'static str {
        match self.kind {
            Kind::Native => "native",
            Kind::WasmP1 => "wasm p1",
            Kind::WasmP2 => "wasm p2",
        }
    }

    /// `--runtime`'s name for this backend.
    fn runtime(&self) -> &'static str {
        match self.kind {
            Kind::Native => "native",
            _ => "wasm",
        }
    }

    /// The image's program, as an absolute path: the native image's `sh` is busybox.
    fn program(&self) -> &'static str {
        match self.kind {
            Kind::Native => "/bin/busybox",
            _ => "/hello.wasm",
        }
    }

    /// Exit with status `n`.
    fn exit(&self, n: i32) -> Vec<String> {
        match self.kind {
            Kind::Native => strings(&["sh", "-c", &format!("exit {n}")]),
            _ => strings(&["exit", &n.to_string()]),
        }
    }

    /// Write `text` to `path`, making its parent directories.
    fn write(&self, path: &str, text: &str) -> Vec<String> {
        match self.kind {
            Kind::Native => strings(&[
                "sh",
                "-c",
                r#"mkdir -p "$(dirname "$0")" && printf %s "$1" > "$0""#,
                path,
                text,
            ]),
            _ => strings(&["write", path, text]),
        }
    }

    /// Print the file at `path` (busybox's and the probe's `cat` alike).
    fn cat(&self, path: &str) -> Vec<String> {
        strings(&["cat", path])
    }

    /// Remove the file at `path`.
    fn rm(&self, path: &str) -> Vec<String> {
        strings(&["rm", path])
    }

    /// Sleep for `secs` seconds.
    fn sleep(&self, secs: u32) -> Vec<String> {
        strings(&["sleep", &secs.to_string()])
    }

    /// Print the arguments after the command word; `printed_args` reads them back.
    fn echo_args(&self, args: &[&str]) -> Vec<String> {
        let mut argv = match self.kind {
            Kind::Native => strings(&["sh", "-c", r#"for a; do echo "[$a]"; done"#, "sh"]),
            _ => strings(&["hello"]),
        };
        argv.extend(strings(args));
        argv
    }

    fn printed_args(&self, out: &str) -> Vec<String> {
        match self.kind {
            Kind::Native => out
                .lines()
                .map(|l| l.trim_start_matches('[').trim_end_matches(']').to_string())
                .collect(),
            _ => {
                // `args: ["/hello.wasm", "hello", ...]`: Rust's Debug of the strings, JSON
                // for the ones used here.
                let line = out
                    .lines()
                    .find_map(|l| l.strip_prefix("args: "))
                    .unwrap_or_else(|| panic!("no args line in {out}"));
                let argv: Vec<String> = serde_json::from_str(line).unwrap();
                assert_eq!(argv[..2], ["/hello.wasm", "hello"], "{out}");
                argv[2..].to_vec()
            }
        }
    }

    /// Print the environment, one `K=V` a line; `printed_env` reads it back.
    fn print_env(&self) -> Vec<String> {
        match self.kind {
            Kind::Native => strings(&["env"]),
            _ => strings(&["hello"]),
        }
    }

    fn printed_env(&self, out: &str) -> Vec<String> {
        match self.kind {
            Kind::Native => out.lines().map(str::to_string).collect(),
            _ => out
                .lines()
                .filter_map(|l| l.strip_prefix("env: "))
                .map(str::to_string)
                .collect(),
        }
    }

    /// `strata run FLAGS… IMAGE ACTION…`.
    fn run(&self, flags: &[&str], action: &[String]) -> Output {
        self.run_image(flags, IMAGE, action)
    }

    fn run_image(&self, flags: &[&str], image: &str, action: &[String]) -> Output {
        self.env.run(&self.argv(flags, image, action))
    }

    fn argv<'a>(&self, flags: &[&'a str], image: &'a str, action: &'a [String]) -> Vec<&'a str> {
        let mut args = vec!["run"];
        args.extend(flags);
        args.push(image);
        args.extend(action.iter().map(String::as_str));
        args
    }

    /// `run`, requiring success; returns stdout.
    fn ok(&self, flags: &[&str], action: &[String]) -> String {
        self.ok_image(flags, IMAGE, action)
    }

    fn ok_image(&self, flags: &[&str], image: &str, action: &[String]) -> String {
        let out = self.run_image(flags, image, action);
        assert!(
            out.status.success(),
            "{}: run {flags:?} {image} {action:?} failed ({}): {}",
            self.name(),
            out.status,
            stderr(&out)
        );
        stdout(&out)
    }

    /// `run FLAGS IMAGE ACTION` in the background, once the container runs.
    fn start(&self, flags: &[&str], action: &[String], name: &str) -> Child {
        let mut argv = vec!["--name", name];
        argv.extend(flags);
        let child = self
            .env
            .cmd(&self.argv(&argv, IMAGE, action))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.inspect(name, "{{.State.Running}}") != "true" {
            assert!(
                Instant::now() < deadline,
                "{}: {name} never ran",
                self.name()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
        child
    }

    /// `inspect -f FORMAT NAME`, trimmed ("" when it fails).
    fn inspect(&self, name: &str, format: &str) -> String {
        stdout(&self.env.run(&["inspect", "-f", format, name]))
            .trim()
            .to_string()
    }

    /// Container directories (records) in the store; spares (dot names) are not containers.
    fn containers_left(&self) -> usize {
        std::fs::read_dir(self.env.root().join("containers"))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.'))
                    .count()
            })
            .unwrap_or(0)
    }
}

common::on_every_backend!(
    "containers";
    exit_codes_are_exact
    args_and_env_reach_the_program
    a_relative_program_is_found_from_the_workdir
    binds_read_write_and_read_only
    dot_dot_crosses_bind_mounts
    named_volumes_outlive_their_containers
    mount_flag_binds_volumes_and_tmpfs
    anonymous_volumes_go_with_their_container
    volumes_from_shares_mounts
    rm_leaves_nothing
    names_are_unique
    diff_and_commit_see_the_containers_writes
    ps_and_inspect_show_state_and_exit_code
);

/// The program's status exactly, and docker's codes when there is no program to run (127),
/// one that cannot run (126) or no image (125).
fn exit_codes_are_exact(b: &Backend) {
    let kind = b.name();
    for n in [0, 1, 7, 42, 255] {
        let out = b.run(&["--rm"], &b.exit(n));
        assert_eq!(code(&out), n, "{kind}: exit {n}: {}", stderr(&out));
    }
    let out = b.run(&["--rm", "--entrypoint", "/no/such"], &[]);
    assert_eq!(code(&out), 127, "{kind}: {}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("exec: \"/no/such\"")
            && err.to_lowercase().contains("no such file or directory"),
        "{kind}: {err}"
    );
    // There but not runnable (a directory): 126, as docker.
    let out = b.run(
        &["--rm", "--entrypoint", "/data", "--runtime", b.runtime()],
        &[],
    );
    assert_eq!(code(&out), 126, "{kind}: {}", stderr(&out));
    let out = b
        .env
        .run(&["run", "--rm", "--pull", "never", "nosuchimage"]);
    assert_eq!(code(&out), 125);
    assert!(
        stderr(&out).contains("Unable to find image 'nosuchimage' locally"),
        "{kind}: {}",
        stderr(&out)
    );
}

/// Arguments arrive as given; the environment is the image's ENV, then `--env-file` and
/// `-e` in order (later wins), `-e K` taking the caller's value.
fn args_and_env_reach_the_program(b: &Backend) {
    let kind = b.name();
    let args = ["a b", "", "c", "--flag", "$HOME"];
    let out = b.ok(&["--rm"], &b.echo_args(&args));
    assert_eq!(b.printed_args(&out), args, "{kind}: {out}");

    let out = b.ok(&["--rm"], &b.print_env());
    let env = b.printed_env(&out);
    assert!(env.iter().any(|e| e == "FROM_IMAGE=yes"), "{kind}: {env:?}");

    let file = b.env.path("env-file");
    std::fs::write(
        &file,
        "A=1\n# a comment\n\nB=two words\nFOO=from the file\n",
    )
    .unwrap();
    let file = file.display().to_string();
    let mut cmd = b.env.cmd(&b.argv(
        &[
            "--rm",
            "--env-file",
            &file,
            "-e",
            "FOO=bar",
            "-e",
            "FROM_IMAGE=no",
            "-e",
            "PASSED",
            "-e",
            "UNSET_IN_CALLER",
        ],
        IMAGE,
        &b.print_env(),
    ));
    let out = cmd
        .env("PASSED", "from the caller")
        .env_remove("UNSET_IN_CALLER")
        .output()
        .unwrap();
    assert!(out.status.success(), "{kind}: {}", stderr(&out));
    let env = b.printed_env(&stdout(&out));
    for want in [
        "A=1",
        "B=two words",
        "FOO=bar",
        "FROM_IMAGE=no",
        "PASSED=from the caller",
    ] {
        assert!(env.iter().any(|e| e == want), "{kind}: {want} in {env:?}");
    }
    for gone in ["FOO=from the file", "FROM_IMAGE=yes"] {
        assert!(!env.iter().any(|e| e == gone), "{kind}: {gone} in {env:?}");
    }
    assert!(
        !env.iter().any(|e| e.starts_with("UNSET_IN_CALLER")),
        "{kind}: {env:?}"
    );
}

/// `-w` is where a relative program path starts; it must be absolute.
fn a_relative_program_is_found_from_the_workdir(b: &Backend) {
    let kind = b.name();
    let (dir, file) = b.program().rsplit_once('/').unwrap();
    let dir = if dir.is_empty() { "/" } else { dir };
    let relative = format!("./{file}");
    let out = b.run(&["--rm", "-w", dir, "--entrypoint", &relative], &b.exit(7));
    assert_eq!(code(&out), 7, "{kind}: {}", stderr(&out));
    let out = b.run(&["--rm", "-w", "relative/dir"], &b.exit(0));
    assert_eq!(code(&out), 125, "{kind}");
    assert!(
        stderr(&out).contains("needs to be an absolute path"),
        "{kind}: {}",
        stderr(&out)
    );
}

/// `-v`: a host directory read and written through the container (its target made in the
/// container); `:ro` refuses writes; a bind over `/` is refused.
fn binds_read_write_and_read_only(b: &Backend) {
    let kind = b.name();
    let host = b.env.path("shared");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("in"), "from host\n").unwrap();
    let v = format!("{}:/mnt/data", host.display());
    assert_eq!(
        b.ok(&["--rm", "-v", &v], &b.cat("/mnt/data/in")),
        "from host\n",
        "{kind}"
    );
    b.ok(&["--rm", "-v", &v], &b.write("/mnt/data/out", "out\n"));
    assert_eq!(
        std::fs::read_to_string(host.join("out")).unwrap(),
        "out\n",
        "{kind}"
    );
    let ro = format!("{}:/ro:ro", host.display());
    let out = b.run(&["--rm", "-v", &ro], &b.write("/ro/new", "x"));
    assert_ne!(code(&out), 0, "{kind}");
    assert!(
        stderr(&out).contains("Read-only file system"),
        "{kind}: {}",
        stderr(&out)
    );
    assert!(!host.join("new").exists(), "{kind}");
    for spec in [
        format!("{}:/", host.display()),
        format!("{}:/.:ro", host.display()),
    ] {
        let out = b.run(&["--rm", "-v", &spec], &b.exit(0));
        assert_eq!(code(&out), 125, "{kind}: {spec}");
        assert!(
            stderr(&out).contains("destination can't be '/'"),
            "{kind}: {spec}: {}",
            stderr(&out)
        );
    }
}

/// `volume ls -q`, sorted.
fn volumes(b: &Backend) -> Vec<String> {
    let mut names: Vec<String> = b
        .env
        .ok(&["volume", "ls", "-q"])
        .lines()
        .map(String::from)
        .collect();
    names.sort();
    names
}

/// A named volume is made at first use, seeded from the image's directory there (once: what
/// is removed from it stays removed), written by one container and read by the next after
/// the first is removed; `volume rm` refuses it while a container's record names it.
fn named_volumes_outlive_their_containers(b: &Backend) {
    let kind = b.name();
    assert_eq!(
        b.ok(&["--rm", "-v", "notes:/data"], &b.cat(GREETING)),
        GREETING_TEXT,
        "{kind}: seeded from the image"
    );
    b.ok(
        &["--name", "writer", "-v", "notes:/data"],
        &b.write("/data/note", "kept\n"),
    );
    let err = b.env.fails(&["volume", "rm", "notes"]);
    assert!(err.contains("volume is in use"), "{kind}: {err}");
    b.env.ok(&["rm", "writer"]);
    assert_eq!(
        b.ok(&["--rm", "-v", "notes:/data"], &b.cat("/data/note")),
        "kept\n",
        "{kind}"
    );
    b.ok(&["--rm", "-v", "notes:/data"], &b.rm(GREETING));
    let out = b.run(&["--rm", "-v", "notes:/data"], &b.cat(GREETING));
    assert_ne!(
        code(&out),
        0,
        "{kind}: a non-empty volume is not seeded again"
    );
    let out = b.run(&["--rm", "-v", "bare:/data:nocopy"], &b.cat(GREETING));
    assert_ne!(code(&out), 0, "{kind}: nocopy");
    // The container's own layer has none of it: the volume is not in its root.
    b.ok(
        &["--name", "layered", "-v", "notes:/data"],
        &b.write("/data/more", "x"),
    );
    let diff = b.env.ok(&["diff", "layered"]);
    assert!(!diff.contains("/data/more"), "{kind}: {diff}");
    b.env.ok(&["rm", "layered"]);
    assert_eq!(volumes(b), ["bare", "notes"], "{kind}");
    assert_eq!(
        b.env.ok(&["volume", "rm", "notes", "bare"]),
        "notes\nbare\n"
    );
    assert!(volumes(b).is_empty(), "{kind}");
    common::assert_store_consistent(&b.env.root());
}

/// `--mount`: a bind given relative to the working directory (read-only), a volume, a
/// tmpfs; a missing bind source is refused (where `-v` makes it).
fn mount_flag_binds_volumes_and_tmpfs(b: &Backend) {
    let kind = b.name();
    let cwd = b.env.path("cwd");
    std::fs::create_dir_all(cwd.join("rel")).unwrap();
    std::fs::write(cwd.join("rel/f"), "relative\n").unwrap();
    let in_cwd = |flags: &[&str], action: &[String]| {
        b.env
            .cmd(&b.argv(flags, IMAGE, action))
            .current_dir(&cwd)
            .output()
            .unwrap()
    };
    let ro = ["--rm", "--mount", "type=bind,src=./rel,dst=/r,readonly"];
    let out = in_cwd(&ro, &b.cat("/r/f"));
    assert_eq!(stdout(&out), "relative\n", "{kind}: {}", stderr(&out));
    let out = in_cwd(&ro, &b.write("/r/new", "x"));
    assert_ne!(code(&out), 0, "{kind}: readonly");
    assert!(!cwd.join("rel/new").exists());
    let out = in_cwd(&["--rm", "-v", "./rel:/r"], &b.write("/r/new", "y"));
    assert_eq!(code(&out), 0, "{kind}: {}", stderr(&out));
    assert_eq!(std::fs::read_to_string(cwd.join("rel/new")).unwrap(), "y");

    b.ok(
        &["--rm", "--mount", "type=volume,src=mounted,dst=/m"],
        &b.write("/m/f", "in volume\n"),
    );
    assert_eq!(
        b.ok(&["--rm", "-v", "mounted:/m:ro"], &b.cat("/m/f")),
        "in volume\n",
        "{kind}"
    );
    b.ok(
        &["--name", "scratchpad", "--mount", "type=tmpfs,dst=/t"],
        &b.write("/t/f", "gone"),
    );
    let diff = b.env.ok(&["diff", "scratchpad"]);
    assert!(
        !diff.contains("/t/f"),
        "{kind}: a tmpfs is not the container's layer: {diff}"
    );

    let missing = b.env.path("no-such-dir");
    let spec = format!("type=bind,src={},dst=/x", missing.display());
    let out = b.run(&["--rm", "--mount", &spec], &b.exit(0));
    assert_eq!(code(&out), 125, "{kind}");
    assert!(
        stderr(&out).contains("bind source path does not exist"),
        "{kind}: {}",
        stderr(&out)
    );
    let spec = format!("{}:/x", missing.display());
    b.ok(&["--rm", "-v", &spec], &b.exit(0));
    assert!(
        missing.is_dir(),
        "{kind}: -v makes a missing host directory"
    );
    for (flag, bad, words) in [
        (
            "--mount",
            "type=bind,dst=/x,bogus=1",
            "unexpected key 'bogus'",
        ),
        ("--mount", "type=volume,src=v,dst=/x", "invalid characters"),
        ("-v", "a:b:c:d", "too many colons"),
    ] {
        let out = b.run(&["--rm", flag, bad], &b.exit(0));
        assert_eq!(code(&out), 125, "{kind}: {bad}");
        assert!(
            stderr(&out).contains(words),
            "{kind}: {bad}: {}",
            stderr(&out)
        );
    }
}

/// Anonymous volumes (`-v /path`, an image's VOLUME): a `--rm` container's go with it, as
/// do those of one removed with `rm -v`; a plain `rm` leaves them for `volume prune`.
fn anonymous_volumes_go_with_their_container(b: &Backend) {
    let kind = b.name();
    b.ok(&["--rm", "-v", "/anon"], &b.write("/anon/f", "x"));
    assert!(volumes(b).is_empty(), "{kind}: --rm took it");
    b.ok(&["--name", "kept", "-v", "/anon"], &b.write("/anon/f", "x"));
    assert_eq!(volumes(b).len(), 1, "{kind}");
    b.env.ok(&["rm", "kept"]);
    assert_eq!(volumes(b).len(), 1, "{kind}: plain rm keeps it");
    b.env.ok(&["volume", "create", "named"]);
    let pruned = b.env.ok(&["volume", "prune", "-f"]);
    assert!(pruned.contains("Deleted Volumes:"), "{kind}: {pruned}");
    assert_eq!(
        volumes(b),
        ["named"],
        "{kind}: prune takes anonymous ones only"
    );

    // An image's VOLUME gets one too, seeded from the image.
    b.ok(&["--name", "base"], &b.exit(0));
    b.env.ok(&[
        "commit",
        "--change",
        "VOLUME /data",
        "base",
        "subject:volume",
    ]);
    b.env.ok(&["rm", "base"]);
    let out = b.run_image(&["--name", "user"], "subject:volume", &b.cat(GREETING));
    assert_eq!(stdout(&out), GREETING_TEXT, "{kind}: {}", stderr(&out));
    let mounts = b.inspect("user", "{{range .Mounts}}{{.Type}} {{.Destination}}{{end}}");
    assert_eq!(mounts, "volume /data", "{kind}");
    assert_eq!(volumes(b).len(), 2, "{kind}");
    b.env.ok(&["rm", "-v", "user"]);
    assert_eq!(volumes(b), ["named"], "{kind}: rm -v took it");
    common::assert_store_consistent(&b.env.root());
}

/// `--volumes-from`: another container's volumes, read-only with `:ro`.
fn volumes_from_shares_mounts(b: &Backend) {
    let kind = b.name();
    b.ok(
        &["--name", "source", "-v", "shared:/s"],
        &b.write("/s/f", "from source\n"),
    );
    assert_eq!(
        b.ok(&["--rm", "--volumes-from", "source"], &b.cat("/s/f")),
        "from source\n",
        "{kind}"
    );
    let out = b.run(
        &["--rm", "--volumes-from", "source:ro"],
        &b.write("/s/g", "x"),
    );
    assert_ne!(code(&out), 0, "{kind}: read-only");
    let out = b.run(&["--rm", "--volumes-from", "nobody"], &b.exit(0));
    assert_eq!(code(&out), 125, "{kind}: {}", stderr(&out));
}

/// `..` crosses mount points as the kernel crosses them: out of a bind mount to the
/// directory it is mounted on, and into it again, so `/mnt/../mnt/x` is the bind's `x` (on
/// Wasm it used to land in the container's upper layer, under the mount point).
fn dot_dot_crosses_bind_mounts(b: &Backend) {
    let kind = b.name();
    let host = b.env.path("shared");
    std::fs::create_dir_all(&host).unwrap();
    let bind = format!("{}:/mnt", host.display());
    b.ok(
        &["--name", "dotdot", "-v", &bind],
        &b.write("/mnt/../mnt/file.txt", kind),
    );
    assert_eq!(
        std::fs::read_to_string(host.join("file.txt")).unwrap(),
        kind
    );
    // The upper layer holds the mount point (as docker's does), not the file.
    assert_eq!(
        b.env.ok(&["diff", "dotdot"]),
        "A /mnt\n",
        "{kind}: only the mount point in the upper layer"
    );
    // And out of the bind to the root's files.
    assert_eq!(
        b.ok(&["--rm", "-v", &bind], &b.cat("/mnt/../data/greeting.txt")),
        GREETING_TEXT,
        "{kind}"
    );
}

/// `run --rm` leaves no container, listed or on disk, whatever the program's status.
fn rm_leaves_nothing(b: &Backend) {
    let kind = b.name();
    b.ok(&["--rm"], &b.write("/tmp/made", "x"));
    assert_eq!(code(&b.run(&["--rm"], &b.exit(7))), 7, "{kind}");
    assert_eq!(b.env.ok(&["ps", "-aq"]), "", "{kind}: none listed");
    assert_eq!(b.containers_left(), 0, "{kind}: none on disk");
}

/// A name belongs to one container until it is removed.
fn names_are_unique(b: &Backend) {
    let kind = b.name();
    b.ok(&["--name", "taken"], &b.exit(0));
    let out = b.run(&["--name", "taken"], &b.exit(0));
    assert_eq!(code(&out), 125, "{kind}");
    assert!(
        stderr(&out).contains("the container name \"taken\" is already in use"),
        "{kind}: {}",
        stderr(&out)
    );
    assert_eq!(
        b.env.ok(&["ps", "-aq"]).lines().count(),
        1,
        "{kind}: the refused run made no container"
    );
    assert_eq!(b.env.ok(&["rm", "taken"]).trim(), "taken");
    b.ok(&["--name", "taken"], &b.exit(0));
}

/// A container's writes land in its upper layer only: `diff` lists them, `commit` makes an
/// image of them (with its message in the history), and the image it ran is untouched.
fn diff_and_commit_see_the_containers_writes(b: &Backend) {
    let kind = b.name();
    b.ok(&["--name", "added"], &b.write("/made/deep/file", "new\n"));
    assert_eq!(
        b.env.ok(&["diff", "added"]),
        "A /made\nA /made/deep\nA /made/deep/file\n",
        "{kind}"
    );
    b.ok(&["--name", "changed"], &b.write(GREETING, "changed\n"));
    assert_eq!(
        b.env.ok(&["diff", "changed"]),
        "C /data\nC /data/greeting.txt\n",
        "{kind}"
    );
    b.ok(&["--name", "removed"], &b.rm(GREETING));
    assert_eq!(
        b.env.ok(&["diff", "removed"]),
        "C /data\nD /data/greeting.txt\n",
        "{kind}"
    );
    let layers = b.env.root().join("layers");
    assert!(
        std::fs::read_dir(&layers)
            .unwrap()
            .all(|l| !l.unwrap().path().join("fs/made").exists()),
        "{kind}: lower layers untouched"
    );

    let id = b.env.ok(&["commit", "added", "subject:added"]);
    assert!(id.starts_with("sha256:"), "{kind}: {id}");
    b.env.ok(&["commit", "changed", "subject:changed"]);
    b.env.ok(&[
        "commit",
        "-m",
        "without the greeting",
        "removed",
        "subject:removed",
    ]);
    assert_eq!(
        b.ok_image(&["--rm"], "subject:added", &b.cat("/made/deep/file")),
        "new\n",
        "{kind}"
    );
    assert_eq!(
        b.ok_image(&["--rm"], "subject:changed", &b.cat(GREETING)),
        "changed\n",
        "{kind}"
    );
    let out = b.run_image(&["--rm"], "subject:removed", &b.cat(GREETING));
    assert_ne!(code(&out), 0, "{kind}: the committed removal");
    assert!(
        b.env
            .ok(&["history", "subject:removed"])
            .contains("without the greeting"),
        "{kind}"
    );
    // The image the containers ran is untouched.
    assert_eq!(b.ok(&["--rm"], &b.cat(GREETING)), GREETING_TEXT, "{kind}");
    let out = b.run(&["--rm"], &b.cat("/made/deep/file"));
    assert_ne!(code(&out), 0, "{kind}: the image is untouched");
    // An image a container uses is not removed without -f.
    assert!(
        b.env.fails(&["rmi", IMAGE]).contains("must force"),
        "{kind}"
    );
    for name in ["added", "changed", "removed"] {
        assert_eq!(b.env.ok(&["rm", name]).trim(), name, "{kind}");
    }
    common::assert_store_consistent(&b.env.root());
}

/// `ps` and `inspect` show a running container and how an exited one ended; `rm` refuses a
/// running container unless forced, and removes an exited one.
fn ps_and_inspect_show_state_and_exit_code(b: &Backend) {
    let kind = b.name();
    let mut child = b.start(&[], &b.sleep(30), "sleeper");
    let ps = b.env.ok(&["ps"]);
    assert!(
        ps.lines()
            .any(|l| l.contains("sleeper") && l.contains("Up ")),
        "{kind}: running shows in ps: {ps}"
    );
    assert_eq!(
        b.inspect("sleeper", "{{.State.Status}} {{.State.Running}}"),
        "running true",
        "{kind}"
    );
    let pid: i32 = b.inspect("sleeper", "{{.State.Pid}}").parse().unwrap();
    assert!(pid > 0, "{kind}: the running container's pid is recorded");
    let out = b.env.run(&["rm", "sleeper"]);
    assert!(!out.status.success(), "{kind}: rm of a running container");
    assert!(
        stderr(&out).contains("container is running"),
        "{kind}: {}",
        stderr(&out)
    );
    assert_eq!(b.env.ok(&["rm", "-f", "sleeper"]).trim(), "sleeper");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "{kind}: rm -f ended the container's run"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    // The run ends as docker's does: killed (137, or SIGKILL itself for an in-process
    // guest), without an error about the record it can no longer write.
    let status = child.wait().unwrap();
    assert!(
        status.code() == Some(137)
            || std::os::unix::process::ExitStatusExt::signal(&status) == Some(9),
        "{kind}: {status:?}"
    );
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!err.contains("Error"), "{kind}: {err}");
    assert_eq!(b.env.ok(&["ps", "-aq"]), "", "{kind}: rm -f removed it");

    assert_eq!(code(&b.run(&["--name", "seven"], &b.exit(7))), 7);
    let ps = b.env.ok(&["ps", "-a"]);
    assert!(
        ps.lines()
            .any(|l| l.contains("seven") && l.contains("Exited (7)")),
        "{kind}: {ps}"
    );
    assert_eq!(b.env.ok(&["ps"]).lines().count(), 1, "{kind}: none running");
    assert_eq!(
        b.inspect(
            "seven",
            "{{.State.Status}} {{.State.Running}} {{.State.ExitCode}} {{.State.Pid}}"
        ),
        "exited false 7 0",
        "{kind}"
    );
    assert_eq!(b.env.ok(&["rm", "seven"]).trim(), "seven");
    assert_eq!(b.env.ok(&["ps", "-aq"]), "", "{kind}");
    assert_eq!(b.containers_left(), 0, "{kind}");
}
