//! Helpers shared by the end-to-end tests: run the built `strata` binary against a private
//! store, and make rootfs trees and tarballs to feed it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A private store root and scratch space, removed at the end of the test.
pub struct Env {
    pub tmp: tempfile::TempDir,
}

/// A test that ends (or fails) with detached containers running leaves none behind: their
/// monitors (the processes named `strata --root <this store> __monitor`) are killed, and
/// their containers' processes go with them.
impl Drop for Env {
    fn drop(&mut self) {
        let root = self.root();
        let ours = format!("--root\0{}\0__monitor\0", root.display());
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&ours) {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        }
    }
}

impl Env {
    pub fn new() -> Env {
        Env {
            tmp: tempfile::Builder::new()
                .prefix("strata-test")
                .tempdir()
                .expect("tempdir"),
        }
    }

    pub fn root(&self) -> PathBuf {
        self.tmp.path().join("store")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// `strata --root <store> ARGS…`
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_strata"));
        c.arg("--root")
            .arg(self.root())
            .args(args)
            .stdin(Stdio::null());
        c.env_remove("STRATA_ROOT");
        c
    }

    /// Run and require success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().expect("run strata");
        assert!(
            out.status.success(),
            "strata {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// Run and require failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().expect("run strata");
        assert!(
            !out.status.success(),
            "strata {args:?} should have failed; stdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).expect("utf-8 output")
    }

    /// `strata ARGS` started with `input` written to its stdin, which stays open (in
    /// `child.stdin`) until the caller drops it.
    pub fn with_stdin(&self, args: &[&str], input: &[u8]) -> std::process::Child {
        use std::io::Write;
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run strata");
        child.stdin.as_mut().unwrap().write_all(input).unwrap();
        child
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run strata")
    }

    /// A small rootfs (busybox if the host has a static one, else a few files) packed as
    /// `name`.tar; returns the tar and the tree it came from.
    pub fn rootfs_tar(&self, name: &str) -> (PathBuf, PathBuf) {
        let tree = self.path(&format!("{name}-tree"));
        make_rootfs(&tree);
        let tar = self.path(&format!("{name}.tar"));
        sh(&format!(
            "tar -C {} -cf {} .",
            tree.display(),
            tar.display()
        ));
        (tar, tree)
    }
}

/// A rootfs with a binary, a symlink, nested dirs, a hardlink and odd modes.
pub fn make_rootfs(tree: &Path) {
    std::fs::create_dir_all(tree.join("bin")).unwrap();
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::create_dir_all(tree.join("usr/share/doc")).unwrap();
    let busybox = Path::new("/bin/busybox");
    if busybox.exists() {
        std::fs::copy(busybox, tree.join("bin/busybox")).unwrap();
    } else {
        std::fs::write(tree.join("bin/busybox"), vec![0x7fu8; 100_000]).unwrap();
    }
    std::os::unix::fs::symlink("busybox", tree.join("bin/sh")).unwrap();
    std::fs::write(
        tree.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n",
    )
    .unwrap();
    std::fs::write(tree.join("etc/group"), "root:x:0:\n").unwrap();
    std::fs::write(
        tree.join("usr/share/doc/readme"),
        "hello layers\n".repeat(100),
    )
    .unwrap();
    std::fs::hard_link(
        tree.join("usr/share/doc/readme"),
        tree.join("usr/share/doc/readme.link"),
    )
    .unwrap();
    sh(&format!(
        "chmod 0600 {0}/etc/group && chmod 0755 {0}/bin/busybox",
        tree.display()
    ));
}

pub fn sh(script: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "`{script}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether CI asked for every prerequisite (`STRATA_TEST_REQUIRE_TOOLS` set, as the README's
/// test command sets it): then a test that cannot run here fails instead of passing unseen.
fn everything_required() -> bool {
    std::env::var_os("STRATA_TEST_REQUIRE_TOOLS").is_some()
}

/// The one way a test (or a part of one) is skipped: a failure under CI, else a note saying
/// why. Returns false, so a guard reads `if !need_root(test) { return; }`.
pub fn skip(test: &str, why: &str) -> bool {
    assert!(
        !everything_required(),
        "{test} cannot run: {why} (STRATA_TEST_REQUIRE_TOOLS is set; tests/setup.sh, run as root, \
         installs what the tests use)"
    );
    eprintln!("note: skipping {test}: {why}");
    false
}

/// True when the test runs as root (the native backend, switching to another user);
/// otherwise `skip`.
pub fn need_root(test: &str) -> bool {
    rustix::process::geteuid().is_root() || skip(test, "needs root")
}

fn installed(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether a peer tool is installed, for a part of a test that needs it. Under CI a missing
/// tool is a failure, not a skipped check.
pub fn have(tool: &str) -> bool {
    installed(tool) || skip(&format!("the part that runs {tool}"), "not installed")
}

/// The host user `name`, made with a home if missing; returns its home. Serialised, because
/// two `useradd`s at once (tests run as threads of one process) race for /etc/passwd's lock.
pub fn host_user(name: &str) -> String {
    static USERADD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = USERADD.lock().unwrap_or_else(|e| e.into_inner());
    sh(&format!(
        "id -u {name} >/dev/null 2>&1 || useradd -m {name}"
    ));
    sh(&format!("getent passwd {name} | cut -d: -f6"))
        .trim()
        .to_string()
}

/// Every regular file under `a` exists in `b` with identical bytes (and vice versa for names).
pub fn assert_same_files(a: &Path, b: &Path) {
    let list = |p: &Path| sh(&format!("cd {} && find . -type f | sort", p.display()));
    let files = list(a);
    assert_eq!(
        files,
        list(b),
        "file lists differ between {} and {}",
        a.display(),
        b.display()
    );
    for f in files.lines() {
        let x = std::fs::read(a.join(f)).unwrap();
        let y = std::fs::read(b.join(f)).unwrap();
        assert!(
            x == y,
            "{f} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
}

/// Append a tar entry with any name (even ones the `tar` crate refuses, like `../x`).
pub fn raw_entry(
    out: &mut Vec<u8>,
    name: &str,
    kind: tar::EntryType,
    data: &[u8],
    link: Option<&str>,
) {
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    if let Some(l) = link {
        h.as_old_mut().linkname[..l.len()].copy_from_slice(l.as_bytes());
    }
    h.set_entry_type(kind);
    h.set_mode(if kind == tar::EntryType::Directory {
        0o755
    } else {
        0o644
    });
    h.set_size(data.len() as u64);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_600_000_000);
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out.extend(std::iter::repeat_n(0u8, (512 - data.len() % 512) % 512));
}

/// End a tar made with `raw_entry`.
pub fn end_tar(mut tar: Vec<u8>) -> Vec<u8> {
    tar.extend(std::iter::repeat_n(0u8, 1024));
    tar
}

/// The store holds no partial or corrupt blob, no staging leftovers, and no unpacked layer
/// that no image refers to.
pub fn assert_store_consistent(root: &Path) {
    use sha2::Digest as _;
    for e in std::fs::read_dir(root.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        let bytes = std::fs::read(e.path()).unwrap();
        assert_eq!(
            hex::encode(sha2::Sha256::digest(&bytes)),
            e.file_name().to_string_lossy(),
            "blob {:?} is intact",
            e.file_name()
        );
    }
    let tmp: Vec<_> = std::fs::read_dir(root.join("tmp")).unwrap().collect();
    assert!(tmp.is_empty(), "staging area is empty: {tmp:?}");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("index.json")).unwrap()).unwrap();
    for m in index["manifests"].as_array().unwrap() {
        let d = m["digest"].as_str().unwrap().trim_start_matches("sha256:");
        assert!(
            root.join("blobs/sha256").join(d).exists(),
            "tagged manifest {d} is present"
        );
    }
}

/// The test probe (`tests/probe`: a command for each behaviour the tests check) built for
/// wasm32-wasip1 and wasm32-wasip2.
pub fn probe() -> (PathBuf, PathBuf) {
    guest("tests/probe", "probe")
}

/// The example guest (`examples/hello-wasm`), for tests of what the README shows it doing.
pub fn hello_wasm() -> (PathBuf, PathBuf) {
    guest("examples/hello-wasm", "hello")
}

/// The guest crate at `dir` (relative to the repository) built by its build.sh into
/// `out/<name>-p1.wasm` and `out/<name>-p2.wasm`.
fn guest(dir: &str, name: &str) -> (PathBuf, PathBuf) {
    let [p1, p2] = built(
        dir,
        "src/main.rs",
        [format!("{name}-p1.wasm"), format!("{name}-p2.wasm")],
    );
    (p1, p2)
}

/// The component crate at `dir` (a library: `src/lib.rs`) built by its build.sh into
/// `out/<name>.wasm`.
pub fn guest_component(dir: &str, name: &str) -> PathBuf {
    let [wasm] = built(dir, "src/lib.rs", [format!("{name}.wasm")]);
    wasm
}

/// The files `outputs` in `dir/out`, built by `dir/build.sh`: built once per change of its
/// source `src` and shared by every test (and every process running tests) through a lock
/// file.
fn built<const N: usize>(dir: &str, src: &str, outputs: [String; N]) -> [PathBuf; N] {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(std::env::temp_dir().join(format!("strata-guest-{name}.lock")))
        .unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let outputs = outputs.map(|o| dir.join("out").join(o));
    let src = dir.join(src);
    let stale = |p: &Path| {
        !p.exists()
            || std::fs::metadata(p).unwrap().modified().unwrap()
                < std::fs::metadata(&src).unwrap().modified().unwrap()
    };
    if outputs.iter().any(|p| stale(p)) {
        let status = Command::new(dir.join("build.sh"))
            .stdout(Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("run {}: {e}", dir.join("build.sh").display()));
        assert!(
            status.success(),
            "building the guest in {} failed",
            dir.display()
        );
    }
    outputs
}

impl Env {
    /// Import a Wasm image holding `wasm` as /hello.wasm (and a data file), named `name`.
    pub fn wasm_image(&self, wasm: &Path, name: &str, platform: bool) -> String {
        let tree = self.path(&format!("{name}-wasm-tree").replace([':', '/'], "_"));
        std::fs::create_dir_all(tree.join("data")).unwrap();
        std::fs::copy(wasm, tree.join("hello.wasm")).unwrap();
        std::fs::write(tree.join("data/greeting.txt"), "hello from a layer\n").unwrap();
        let tar = tree.with_extension("tar");
        sh(&format!(
            "tar -C {} -cf {} .",
            tree.display(),
            tar.display()
        ));
        let mut args = vec![
            "import",
            "-c",
            "ENTRYPOINT [\"/hello.wasm\"]",
            "-c",
            "ENV FROM_IMAGE=yes",
        ];
        if platform {
            args.extend(["--platform", "wasi/wasm"]);
        }
        args.extend([tar.to_str().unwrap(), name]);
        self.ok(&args).trim().to_string()
    }
}

/// True when every tool the test needs is installed; otherwise `skip`.
pub fn tools(test: &str, needed: &[&str]) -> bool {
    let missing: Vec<&str> = needed.iter().copied().filter(|t| !installed(t)).collect();
    missing.is_empty() || skip(test, &format!("{} not installed", missing.join(", ")))
}

pub fn run_tool(tool: &str, args: &[&str]) -> std::process::Output {
    Command::new(tool)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {tool}: {e}"))
}

/// Run a peer tool, require success, return stdout.
pub fn tool_ok(tool: &str, args: &[&str]) -> String {
    let out = run_tool(tool, args);
    assert!(
        out.status.success(),
        "{tool} {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn is_root() -> bool {
    sh("id -u").trim() == "0"
}

pub fn umoci_args<'a>(layout_ref: &'a str, dest: &'a str) -> Vec<&'a str> {
    let mut args = vec!["unpack"];
    if !is_root() {
        args.push("--rootless");
    }
    args.extend(["--image", layout_ref, dest]);
    args
}

/// `umoci unpack --image <layout>:<ref> <dest>`; returns the unpacked rootfs.
pub fn umoci_unpack(layout: &Path, reference: &str, dest: &Path) -> PathBuf {
    let image = format!("{}:{reference}", layout.display());
    let dest_s = dest.display().to_string();
    tool_ok("umoci", &umoci_args(&image, &dest_s));
    let rootfs = dest.join("rootfs");
    assert!(
        rootfs.is_dir(),
        "umoci unpack made no rootfs in {}",
        dest.display()
    );
    rootfs
}

/// A busybox image for native containers, made by examples/rootfs/make-busybox-rootfs.sh
/// (Debian's busybox-static: every applet, users root, app (1000) and nobody) and imported
/// as `name` with the `--change`s given.
pub fn busybox_image(env: &Env, name: &str, changes: &[&str]) -> PathBuf {
    let tree = env.path(&format!("{}-rootfs", name.replace([':', '/'], "-")));
    if !tree.exists() {
        sh(&format!(
            "{}/examples/rootfs/make-busybox-rootfs.sh {}",
            env!("CARGO_MANIFEST_DIR"),
            tree.display()
        ));
    }
    let tar = tree.with_extension("tar");
    sh(&format!(
        "tar -C {} -cf {} .",
        tree.display(),
        tar.display()
    ));
    let mut args = vec!["import"];
    for c in changes {
        args.extend(["-c", c]);
    }
    let tar_arg = tar.display().to_string();
    args.extend([tar_arg.as_str(), name]);
    env.ok(&args);
    tree
}

/// A test for each backend, in the module that invokes it (`on_every_backend!("name"; t…)`):
/// `name::native::t`, `name::wasm_p1::t`, `name::wasm_p2::t`, each calling `t(&Backend)` with
/// that module's `Backend::native(test name)` (None after `skip`) or `Backend::wasm(Kind)`.
macro_rules! on_every_backend {
    ($module:literal; $($test:ident)*) => {
        mod native {
            $(#[test]
            fn $test() {
                let name = concat!($module, "::native::", stringify!($test));
                if let Some(b) = super::Backend::native(name) {
                    super::$test(&b);
                }
            })*
        }
        mod wasm_p1 {
            $(#[test]
            fn $test() {
                super::$test(&super::Backend::wasm(super::Kind::WasmP1));
            })*
        }
        mod wasm_p2 {
            $(#[test]
            fn $test() {
                super::$test(&super::Backend::wasm(super::Kind::WasmP2));
            })*
        }
    };
}
pub(crate) use on_every_backend;
