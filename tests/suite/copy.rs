//! `strata cp`: both directions, for running native (through `/proc/<init>/root`) and Wasm
//! containers (a second overlay beside the guest's) and for stopped ones; docker's path
//! rules, `-` as a tar both ways, `-a`, and that no symlink in the container and no name in
//! an archive reaches outside the container's root or the destination.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use crate::common::{self, busybox_image, probe, raw_entry, Env};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A store with the busybox image `bb`; None (after `skip`) without root or busybox.
fn native(test: &str) -> Option<Env> {
    if !common::need_root(test) || !common::tools(test, &["busybox"]) {
        return None;
    }
    let env = Env::new();
    busybox_image(&env, "bb", &[]);
    Some(env)
}

/// A store with the probe guest (preview 1) as the image `wasm`.
fn wasm() -> Env {
    let (p1, _) = probe();
    let env = Env::new();
    env.wasm_image(&p1, "wasm", true);
    env
}

/// `strata ARGS` with `input` on its stdin, to its end.
fn with_stdin(env: &Env, args: &[&str], input: &[u8]) -> Output {
    let mut child = env.with_stdin(args, input);
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

/// A `cp` that must fail as docker's does: exit 1, stderr holding `want`.
fn cp_fails(env: &Env, args: &[&str], want: &str) {
    let out = env.run(args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{args:?}: {}",
        text(&out.stderr)
    );
    let err = text(&out.stderr);
    assert!(err.contains(want), "{args:?}: {err:?} lacks {want:?}");
}

fn sh_in(env: &Env, c: &str, script: &str) -> String {
    env.ok(&["exec", c, "sh", "-c", script])
}

#[test]
fn running_native_both_ways_with_docker_path_rules() {
    let Some(env) = native("copy::running_native_both_ways_with_docker_path_rules") else {
        return;
    };
    env.ok(&["run", "-d", "--name", "n", "bb", "sleep", "300"]);
    let host = env.path("host");
    std::fs::create_dir_all(host.join("d/sub")).unwrap();
    std::fs::write(host.join("f.txt"), "file\n").unwrap();
    std::fs::write(host.join("d/sub/y"), "y\n").unwrap();
    let h = |p: &str| host.join(p).display().to_string();

    // SRC file → DEST directory: into it; → a new name: that name.
    env.ok(&["cp", &h("f.txt"), "n:/tmp/"]);
    env.ok(&["cp", &h("f.txt"), "n:/tmp/renamed"]);
    // SRC dir → DEST missing: created with the contents; → DEST existing: copied into it;
    // SRC/. → the contents into it.
    env.ok(&["cp", &h("d"), "n:/tmp/new"]);
    sh_in(&env, "n", "mkdir /tmp/have /tmp/flat");
    env.ok(&["cp", &h("d"), "n:/tmp/have"]);
    env.ok(&["container", "cp", &format!("{}/.", h("d")), "n:/tmp/flat"]);
    assert_eq!(
        sh_in(
            &env,
            "n",
            "cat /tmp/f.txt /tmp/renamed /tmp/new/sub/y /tmp/have/d/sub/y /tmp/flat/sub/y"
        ),
        "file\nfile\ny\ny\ny\n"
    );
    // Without -a what is copied in is root's; with -a it keeps its ids.
    std::os::unix::fs::chown(host.join("f.txt"), Some(1234), Some(4321)).unwrap();
    env.ok(&["cp", &h("f.txt"), "n:/tmp/plain"]);
    env.ok(&["cp", "-a", &h("f.txt"), "n:/tmp/kept"]);
    assert_eq!(
        sh_in(&env, "n", "stat -c %u:%g /tmp/plain /tmp/kept"),
        "0:0\n1234:4321\n"
    );

    // Out: a file to a directory and to a new name, a directory to a new directory.
    let out = env.path("out");
    std::fs::create_dir(&out).unwrap();
    sh_in(
        &env,
        "n",
        "mkdir -p /srv/x && echo inside > /srv/x/z && chown 77:88 /srv/x/z",
    );
    env.ok(&["cp", "n:/etc/passwd", &out.display().to_string()]);
    env.ok(&["cp", "n:/srv/x/z", &out.join("zz").display().to_string()]);
    env.ok(&["cp", "n:/srv/x", &out.join("xdir").display().to_string()]);
    env.ok(&[
        "cp",
        "-a",
        "n:/srv/x/z",
        &out.join("za").display().to_string(),
    ]);
    assert!(std::fs::read_to_string(out.join("passwd"))
        .unwrap()
        .starts_with("root:"));
    assert_eq!(std::fs::read_to_string(out.join("zz")).unwrap(), "inside\n");
    assert_eq!(
        std::fs::read_to_string(out.join("xdir/z")).unwrap(),
        "inside\n"
    );
    let (plain, kept) = (
        std::fs::metadata(out.join("zz")).unwrap(),
        std::fs::metadata(out.join("za")).unwrap(),
    );
    assert_eq!((plain.uid(), plain.gid()), (0, 0), "the caller's");
    assert_eq!(
        (kept.uid(), kept.gid()),
        (77, 88),
        "-a keeps the container's"
    );

    // Docker's refusals: a directory onto a file, a file into a missing directory.
    cp_fails(
        &env,
        &["cp", &h("d"), "n:/etc/passwd"],
        "cannot copy a directory to a file",
    );
    cp_fails(
        &env,
        &["cp", &h("f.txt"), "n:/nowhere/"],
        "no such directory",
    );
    cp_fails(
        &env,
        &["cp", "n:/srv/x", &out.join("zz").display().to_string()],
        "cannot copy a directory to a file",
    );

    let diff = env.ok(&["diff", "n"]);
    for added in ["A /tmp/f.txt", "A /tmp/new/sub/y", "A /tmp/flat/sub/y"] {
        assert!(diff.lines().any(|l| l == added), "{added} in {diff}");
    }
    env.ok(&["rm", "-f", "n"]);
}

#[test]
fn running_native_reaches_its_bind_mounts() {
    let Some(env) = native("copy::running_native_reaches_its_bind_mounts") else {
        return;
    };
    let vol = env.path("vol");
    std::fs::create_dir(&vol).unwrap();
    let bind = format!("{}:/vol", vol.display());
    env.ok(&[
        "run", "-d", "--name", "n", "-v", &bind, "bb", "sleep", "300",
    ]);
    let f = env.path("f.txt");
    std::fs::write(&f, "to the volume\n").unwrap();
    env.ok(&["cp", &f.display().to_string(), "n:/vol/"]);
    assert_eq!(
        std::fs::read_to_string(vol.join("f.txt")).unwrap(),
        "to the volume\n"
    );
    env.ok(&["rm", "-f", "n"]);
}

#[test]
fn tar_streams_both_ways() {
    let Some(env) = native("copy::tar_streams_both_ways") else {
        return;
    };
    env.ok(&["run", "-d", "--name", "n", "bb", "sleep", "300"]);
    // `-` as DEST: a tar of SRC named by its last component, or of its contents for SRC/.
    let out = env.cmd(&["cp", "n:/etc", "-"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let names = tar_names(&out.stdout);
    assert!(names.iter().any(|n| n == "etc/passwd"), "{names:?}");
    let out = env.cmd(&["cp", "n:/etc/.", "-"]).output().unwrap();
    assert!(tar_names(&out.stdout).iter().any(|n| n == "passwd"));

    // `-` as SRC: a tar (plain, or gzip) extracted in DEST, which must be a directory.
    let mut tar = Vec::new();
    raw_entry(&mut tar, "in/", tar::EntryType::Directory, b"", None);
    raw_entry(
        &mut tar,
        "in/a.txt",
        tar::EntryType::Regular,
        b"from stdin\n",
        None,
    );
    raw_entry(
        &mut tar,
        "/abs.txt",
        tar::EntryType::Regular,
        b"absolute\n",
        None,
    );
    let tar = common::end_tar(tar);
    let done = with_stdin(&env, &["cp", "-", "n:/tmp"], &tar);
    assert!(done.status.success(), "{}", text(&done.stderr));
    assert_eq!(
        sh_in(&env, "n", "cat /tmp/in/a.txt /tmp/abs.txt"),
        "from stdin\nabsolute\n"
    );
    let gz = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&tar).unwrap();
        e.finish().unwrap()
    };
    let done = with_stdin(&env, &["cp", "-", "n:/root"], &gz);
    assert!(done.status.success(), "{}", text(&done.stderr));
    assert_eq!(sh_in(&env, "n", "cat /root/in/a.txt"), "from stdin\n");
    let refused = with_stdin(&env, &["cp", "-", "n:/etc/passwd"], &tar);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused.stderr).contains("must be a directory"),
        "{}",
        text(&refused.stderr)
    );
    env.ok(&["rm", "-f", "n"]);
}

fn tar_names(tar: &[u8]) -> Vec<String> {
    tar::Archive::new(tar)
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            e.path()
                .unwrap()
                .display()
                .to_string()
                .trim_end_matches('/')
                .to_string()
        })
        .collect()
}

/// Symlinks in the container that point at the host's canary (an absolute host path) or
/// climb with `..`: used as DEST or SRC, they resolve inside the container's root.
fn links_stay_inside(env: &Env, c: &str, running: bool) {
    let canary_dir = env.path("canary");
    std::fs::create_dir_all(&canary_dir).unwrap();
    let canary = canary_dir.join("canary.txt");
    std::fs::write(&canary, "host secret\n").unwrap();
    let unique = format!("strata-cp-escape-{}", std::process::id());
    let f = env.path(&unique);
    std::fs::write(&f, "copied\n").unwrap();
    let f = f.display().to_string();
    let out = env.path("out");
    std::fs::create_dir_all(&out).unwrap();

    // DEST through `/up -> ../../../../..`: the container's /, never the host's.
    env.ok(&["cp", &f, &format!("{c}:/up/")]);
    assert!(
        !Path::new("/").join(&unique).exists(),
        "nothing in the host's /"
    );
    env.ok(&["cp", &format!("{c}:/{unique}"), &out.display().to_string()]);
    assert_eq!(
        std::fs::read_to_string(out.join(&unique)).unwrap(),
        "copied\n"
    );
    // DEST through `/hostdir -> <the canary's host directory>`: a path inside the
    // container that does not exist there.
    cp_fails(
        env,
        &["cp", &f, &format!("{c}:/hostdir/canary.txt")],
        "No such container:path",
    );
    // SRC through those links: the container's files or nothing, never the host's.
    // Without -L the link is copied as a link, as docker does.
    env.ok(&[
        "cp",
        &format!("{c}:/hostfile"),
        &out.join("link").display().to_string(),
    ]);
    assert_eq!(
        std::fs::read_link(out.join("link")).unwrap(),
        canary_dir.join("canary.txt")
    );
    std::fs::remove_file(out.join("link")).unwrap();
    cp_fails(
        env,
        &[
            "cp",
            "-L",
            &format!("{c}:/hostfile"),
            &out.join("leak").display().to_string(),
        ],
        "No such container:path",
    );
    assert!(!out.join("leak").exists());
    env.ok(&[
        "cp",
        &format!("{c}:/esc/.marker"),
        &out.join("m").display().to_string(),
    ]);
    assert_eq!(
        std::fs::read_to_string(out.join("m")).unwrap(),
        "container root\n"
    );
    assert_eq!(std::fs::read_to_string(&canary).unwrap(), "host secret\n");
    assert_eq!(
        std::fs::read_dir(&canary_dir).unwrap().count(),
        1,
        "canary dir untouched"
    );

    // A hostile tar: `..`, or an entry under a symlink it made, is refused.
    let mut tar = Vec::new();
    raw_entry(&mut tar, "../escape", tar::EntryType::Regular, b"bad", None);
    let hostile = with_stdin(env, &["cp", "-", &format!("{c}:/")], &common::end_tar(tar));
    assert_eq!(hostile.status.code(), Some(1));
    let err = text(&hostile.stderr);
    assert!(
        err.contains("\"../escape\" is outside the destination"),
        "{err}"
    );
    let mut tar = Vec::new();
    raw_entry(&mut tar, "l", tar::EntryType::Symlink, b"", Some("/"));
    raw_entry(
        &mut tar,
        "l/etc/evil",
        tar::EntryType::Regular,
        b"bad",
        None,
    );
    let hostile = with_stdin(env, &["cp", "-", &format!("{c}:/")], &common::end_tar(tar));
    assert_eq!(hostile.status.code(), Some(1));
    assert!(
        text(&hostile.stderr).contains("is a symlink"),
        "{}",
        text(&hostile.stderr)
    );
    for gone in ["/escape", "/etc/evil"] {
        cp_fails(
            env,
            &["cp", &format!("{c}:{gone}"), "-"],
            "No such container:path",
        );
    }
    if running {
        assert!(!canary_dir.join("evil").exists());
    }
}

/// The links `links_stay_inside` uses, in a directory that becomes an image layer.
fn hostile_tree(env: &Env, tree: &Path) {
    std::os::unix::fs::symlink("../../../../..", tree.join("up")).unwrap();
    std::os::unix::fs::symlink("/", tree.join("esc")).unwrap();
    std::os::unix::fs::symlink(env.path("canary"), tree.join("hostdir")).unwrap();
    std::os::unix::fs::symlink(env.path("canary/canary.txt"), tree.join("hostfile")).unwrap();
    std::fs::write(tree.join(".marker"), "container root\n").unwrap();
}

#[test]
fn symlinks_and_archives_never_leave_a_running_native_root() {
    let Some(env) = native("copy::symlinks_and_archives_never_leave_a_running_native_root") else {
        return;
    };
    // The image again, with the links in its layer.
    hostile_tree(&env, &env.path("bb-rootfs"));
    busybox_image(&env, "bb", &[]);
    env.ok(&["run", "-d", "--name", "n", "bb", "sleep", "300"]);
    links_stay_inside(&env, "n", true);
    env.ok(&["rm", "-f", "n"]);
}

#[test]
fn symlinks_and_archives_never_leave_a_stopped_wasm_root() {
    let env = wasm();
    let tree = env.path("wasm-wasm-tree");
    hostile_tree(&env, &tree);
    // The same image again, with the links in its layer.
    let (p1, _) = probe();
    env.wasm_image(&p1, "wasm", true);
    env.ok(&["create", "--name", "w", "wasm", "exit", "0"]);
    links_stay_inside(&env, "w", false);
}

#[test]
fn running_wasm_guest_sees_what_is_copied_in() {
    let env = wasm();
    // The guest looks up /data/in.txt again and again: /data is only in the image's layer
    // until the copy puts it in the upper one, under the guest's cached view of it.
    env.ok(&["run", "-d", "--name", "w", "wasm", "await", "/data/in.txt"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !env.run(&["cp", "w:/tmp/awaiting", "-"]).status.success() {
        assert!(Instant::now() < deadline, "the guest never started waiting");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let f = env.path("in.txt");
    std::fs::write(&f, "copied in").unwrap();
    env.ok(&["cp", &f.display().to_string(), "w:/data/in.txt"]);
    assert_eq!(env.ok(&["wait", "w"]).trim(), "0");
    assert_eq!(env.ok(&["logs", "w"]), "got: copied in\n");
    // Out of a container the guest wrote in: its own file.
    let out = env.ok(&["cp", "w:/tmp/awaiting", "-"]);
    assert!(out.contains("yes"), "{out:?}");
    let diff = env.ok(&["diff", "w"]);
    assert!(diff.lines().any(|l| l == "A /data/in.txt"), "{diff}");
}

#[test]
fn running_wasm_copy_out_while_it_runs() {
    let env = wasm();
    env.ok(&["run", "-d", "--name", "w", "wasm", "sleep", "30"]);
    let out = env.path("out");
    std::fs::create_dir(&out).unwrap();
    env.ok(&["cp", "w:/data", &out.display().to_string()]);
    assert_eq!(
        std::fs::read_to_string(out.join("data/greeting.txt")).unwrap(),
        "hello from a layer\n"
    );
    env.ok(&["rm", "-f", "w"]);
}

#[test]
fn stopped_containers_both_ways() {
    // Wasm: created, never run; the guest then reads what was copied in.
    let env = wasm();
    env.ok(&["create", "--name", "w", "wasm", "cat", "/data/motd"]);
    let f = env.path("motd");
    std::fs::write(&f, "copied before the start\n").unwrap();
    env.ok(&["cp", &f.display().to_string(), "w:/data/motd"]);
    env.ok(&["start", "w"]);
    assert_eq!(env.ok(&["wait", "w"]).trim(), "0");
    assert_eq!(env.ok(&["logs", "w"]), "copied before the start\n");
    assert_eq!(env.ok(&["diff", "w"]), "C /data\nA /data/motd\n");
    let back = env.path("back");
    env.ok(&["cp", "w:/data", &back.display().to_string()]);
    assert_eq!(
        std::fs::read_to_string(back.join("motd")).unwrap(),
        "copied before the start\n"
    );

    // Native: exited, then copied into, then started again.
    let Some(env) = native("copy::stopped_containers_both_ways") else {
        return;
    };
    env.ok(&[
        "run",
        "--name",
        "n",
        "bb",
        "sh",
        "-c",
        "cat /tmp/x 2>/dev/null; true",
    ]);
    let f = env.path("x");
    std::fs::write(&f, "after it stopped\n").unwrap();
    env.ok(&["cp", &f.display().to_string(), "n:/tmp/x"]);
    env.ok(&["start", "n"]);
    assert_eq!(env.ok(&["wait", "n"]).trim(), "0");
    assert!(env.ok(&["logs", "n"]).contains("after it stopped"));
    let out = env.ok(&["cp", "n:/tmp/x", "-"]);
    assert!(out.contains("after it stopped"));
}

#[test]
fn bad_arguments_fail_as_docker() {
    let env = wasm();
    env.ok(&["create", "--name", "w", "wasm", "exit", "0"]);
    let f = env.path("f");
    std::fs::write(&f, "x").unwrap();
    let f = f.display().to_string();
    cp_fails(
        &env,
        &["cp", "w:/nope", "-"],
        "No such container:path: w:/nope",
    );
    cp_fails(
        &env,
        &["cp", "w:/nope", &env.path("o").display().to_string()],
        "w:/nope",
    );
    cp_fails(
        &env,
        &["cp", &f, "w:/nope/deeper/x"],
        "No such container:path: w:/nope/deeper",
    );
    cp_fails(&env, &["cp", &f, "ghost:/tmp"], "no such container: ghost");
    cp_fails(&env, &["cp", "ghost:/tmp", "-"], "no such container: ghost");
    cp_fails(
        &env,
        &["cp", &f, "/tmp/elsewhere"],
        "must specify at least one container",
    );
    cp_fails(
        &env,
        &["cp", "w:/a", "w:/b"],
        "copying between containers is not supported",
    );
    cp_fails(&env, &["cp", "/no/such/file", "w:/tmp"], "/no/such/file");
    cp_fails(&env, &["cp", "w:/hello.wasm/", "-"], "not a directory");
}
