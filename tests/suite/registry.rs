//! End-to-end tests against a real registry: Debian's `docker-registry` (the CNCF
//! distribution registry), started by each test on a free loopback port with its storage in
//! the test's temp dir, once over plain HTTP and once with TLS (a CA made with `openssl`,
//! trusted through `--cert-dir`) and htpasswd basic auth. Its access log is the witness for
//! what was sent and fetched. skopeo and umoci cross-check what goes through it.
//!
//! Every `strata` process gets `DOCKER_CONFIG=<tmp>/docker`, so credentials never touch the
//! real home. Tests skip (with a note) when `docker-registry`, `openssl` or `htpasswd` is
//! missing, unless `STRATA_TEST_REQUIRE_TOOLS` is set.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{
    assert_same_files, assert_store_consistent, probe, sh, tool_ok, tools, umoci_unpack, Env,
};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// skopeo, required to succeed.
fn skopeo(args: &[&str]) -> String {
    tool_ok("skopeo", args)
}

pub(crate) const REGISTRY_TOOLS: &[&str] = &["docker-registry", "openssl", "htpasswd"];

// ---------------------------------------------------------------------------------------
// The registry under test
// ---------------------------------------------------------------------------------------

/// A `docker-registry` process serving from `dir/data`, logging to `dir/registry.log`;
/// killed when dropped (also when the test panics).
pub(crate) struct Registry {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
    tls: bool,
}

/// A free loopback port: bind port 0 and let it go.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().unwrap().port()
}

impl Registry {
    /// A plain-HTTP registry without authentication.
    pub(crate) fn plain(dir: &Path) -> Registry {
        Registry::start(dir, false)
    }

    /// An HTTPS registry (certificate signed by a CA in `dir/certs/ca.crt`) that requires
    /// basic auth as `user`/`pass`.
    fn tls(dir: &Path) -> Registry {
        Registry::start(dir, true)
    }

    fn start(dir: &Path, tls: bool) -> Registry {
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let port = free_port();
        let mut config = format!(
            "version: 0.1\n\
             log:\n  level: info\n  accesslog:\n    disabled: false\n\
             storage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: strata-test-secret\n",
            data = dir.join("data").display()
        );
        if tls {
            make_certs(dir);
            let htpasswd = sh("htpasswd -Bbn user pass");
            std::fs::write(dir.join("htpasswd"), htpasswd).unwrap();
            config += &format!(
                "  tls:\n    certificate: {crt}\n    key: {key}\n\
                 auth:\n  htpasswd:\n    realm: strata-test\n    path: {htpasswd}\n",
                crt = dir.join("server.crt").display(),
                key = dir.join("server.key").display(),
                htpasswd = dir.join("htpasswd").display()
            );
        }
        std::fs::write(dir.join("config.yml"), config).unwrap();
        let mut registry = Registry {
            child: None,
            dir: dir.to_path_buf(),
            port,
            tls,
        };
        registry.launch();
        registry
    }

    /// Start (or restart) the process on the same port, storage and log.
    fn launch(&mut self) {
        assert!(self.child.is_none(), "registry already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let mut command = Command::new("docker-registry");
        // The registry reads REGISTRY_* variables as configuration (REGISTRY_AUTH_FILE, which
        // podman users may have set, would become `auth: file`).
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("REGISTRY_") {
                command.env_remove(key);
            }
        }
        let child = command
            .arg("serve")
            .arg(self.dir.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                panic!(
                    "docker-registry exited ({status}) at start:\n{}",
                    self.log()
                );
            }
            if self.answers() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer /v2/ in 30s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether `/v2/` answers: an HTTP status line for plain HTTP; for TLS, a server that
    /// accepts the connection and says it listens (the handshake is rustls's business).
    fn answers(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        if self.tls {
            return self.log().contains("listening on");
        }
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if s.write_all(b"GET /v2/ HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut head = [0u8; 12];
        s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
    }

    /// SIGKILL the process and reap it.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `127.0.0.1:PORT` (plain) or `localhost:PORT` (TLS: the name the certificate has).
    pub(crate) fn host(&self) -> String {
        if self.tls {
            format!("localhost:{}", self.port)
        } else {
            format!("127.0.0.1:{}", self.port)
        }
    }

    fn cert_dir(&self) -> PathBuf {
        self.dir.join("certs")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("registry.log")
    }

    fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.log_path()).unwrap_or_default()).into_owned()
    }

    /// The access-log request lines (`"METHOD URI HTTP/1.1" STATUS`) written so far, once
    /// the log has stopped growing (the registry logs a request after answering it).
    fn requests(&self) -> Vec<String> {
        let mut last = u64::MAX;
        for _ in 0..40 {
            let len = std::fs::metadata(self.log_path())
                .map(|m| m.len())
                .unwrap_or(0);
            if len == last {
                break;
            }
            last = len;
            std::thread::sleep(Duration::from_millis(100));
        }
        self.log()
            .lines()
            .filter_map(|l| {
                let start = l.find("] \"")? + 3;
                let rest = &l[start..];
                let end = rest.find('"')?;
                let status = rest[end + 1..].split_whitespace().next().unwrap_or("");
                Some(format!("{} {status}", &rest[..end]))
            })
            .collect()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A CA, and a server certificate for localhost/127.0.0.1 signed by it (not a CA itself:
/// rustls refuses a CA certificate as a server's); the CA goes in `dir/certs/ca.crt`.
fn make_certs(dir: &Path) {
    std::fs::create_dir_all(dir.join("certs")).unwrap();
    sh(&format!(
        "set -e; cd {dir}
         openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out certs/ca.crt \
           -days 2 -subj /CN=strata-test-ca -addext basicConstraints=critical,CA:TRUE \
           -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
         openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key -out server.csr \
           -subj /CN=localhost 2>/dev/null
         printf 'basicConstraints=critical,CA:FALSE\\nsubjectAltName=DNS:localhost,IP:127.0.0.1\\nkeyUsage=critical,digitalSignature\\nextendedKeyUsage=serverAuth\\n' > server.ext
         openssl x509 -req -in server.csr -CA certs/ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 \
           -extfile server.ext 2>/dev/null",
        dir = dir.display()
    ));
}

// ---------------------------------------------------------------------------------------
// strata, with a private DOCKER_CONFIG
// ---------------------------------------------------------------------------------------

/// `strata --root <env store> ARGS…` with `DOCKER_CONFIG=<env>/docker`.
fn cmd(env: &Env, args: &[&str]) -> Command {
    let mut c = env.cmd(args);
    c.env("DOCKER_CONFIG", docker_config(env))
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("STRATA_INSECURE_REGISTRIES")
        .env_remove("SOURCE_DATE_EPOCH");
    c
}

fn docker_config(env: &Env) -> PathBuf {
    env.path("docker")
}

fn run(env: &Env, args: &[&str]) -> Output {
    cmd(env, args).output().expect("run strata")
}

fn show(out: &Output) -> String {
    format!(
        "({})\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Run and require success; returns stdout.
fn ok(env: &Env, args: &[&str]) -> String {
    let out = run(env, args);
    assert!(
        out.status.success(),
        "strata {args:?} failed {}",
        show(&out)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Run and require failure; returns stderr.
fn fails(env: &Env, args: &[&str]) -> String {
    let out = run(env, args);
    assert!(
        !out.status.success(),
        "strata {args:?} should have failed {}",
        show(&out)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn inspect(env: &Env, image: &str, format: &str) -> String {
    ok(env, &["inspect", "-f", format, image])
        .trim()
        .to_string()
}

/// The image's manifest as stored (the blob its descriptor names).
fn manifest(env: &Env, image: &str) -> Value {
    let digest = inspect(env, image, "{{.Descriptor.digest}}");
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    serde_json::from_slice(&std::fs::read(env.root().join("blobs/sha256").join(hex)).unwrap())
        .unwrap()
}

fn layer_digests(env: &Env, image: &str) -> Vec<String> {
    manifest(env, image)["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

fn diff_ids(env: &Env, image: &str) -> Vec<String> {
    serde_json::from_str::<Vec<String>>(&inspect(env, image, "{{json .RootFS.Layers}}")).unwrap()
}

/// `<root>/layers/<diff_id hex>/fs`
fn layer_fs(env: &Env, diff_id: &str) -> PathBuf {
    env.root()
        .join("layers")
        .join(diff_id.trim_start_matches("sha256:"))
        .join("fs")
}

fn layer_dirs(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(root.join("layers")) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

/// Every blob in the store hashes to its name.
fn assert_blobs_intact(root: &Path) {
    for e in std::fs::read_dir(root.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        let bytes = std::fs::read(e.path()).unwrap();
        assert_eq!(
            hex::encode(Sha256::digest(&bytes)),
            e.file_name().to_string_lossy(),
            "blob {:?} is intact",
            e.file_name()
        );
    }
}

fn count(requests: &[String], pred: impl Fn(&str) -> bool) -> usize {
    requests.iter().filter(|r| pred(r)).count()
}

/// Import the standard rootfs (busybox or a few files) as `name`; returns the tree.
fn import_rootfs(env: &Env, name: &str) -> PathBuf {
    let (tar, tree) = env.rootfs_tar("rootfs");
    ok(
        env,
        &[
            "import",
            "-c",
            "CMD [\"/bin/sh\"]",
            tar.to_str().unwrap(),
            name,
        ],
    );
    tree
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

/// push, then pull into a fresh store by tag and by digest: same image, same files, and a
/// consistent store.
#[test]
fn push_then_pull_round_trip() {
    if !tools("push_then_pull_round_trip", REGISTRY_TOOLS) {
        return;
    }
    let a = Env::new();
    let reg = Registry::plain(&a.path("registry"));
    let name = format!("{}/test/bb:1", reg.host());
    let tree = import_rootfs(&a, &name);
    let id = inspect(&a, &name, "{{.Id}}");
    let digest = inspect(&a, &name, "{{.Descriptor.digest}}");

    let out = ok(&a, &["push", &name]);
    assert!(
        out.contains(&digest),
        "push prints the manifest digest {digest}: {out}"
    );
    let reqs = reg.requests();
    assert!(
        count(&reqs, |r| r.starts_with("PUT /v2/test/bb/manifests/1 ")
            && r.ends_with(" 201"))
            == 1,
        "the registry got the manifest once: {reqs:#?}"
    );

    // Pull by tag into a fresh store.
    let b = Env::new();
    let out = ok(&b, &["pull", &name]);
    assert!(
        out.contains(&digest),
        "pull reports the digest {digest}: {out}"
    );
    assert_eq!(
        inspect(&b, &name, "{{.Id}}"),
        id,
        "same image ID after the round trip"
    );
    assert_eq!(
        inspect(&b, &name, "{{.Descriptor.digest}}"),
        digest,
        "same manifest digest"
    );
    let diffs = diff_ids(&a, &name);
    assert_eq!(diffs, diff_ids(&b, &name));
    let hexes: Vec<String> = diffs
        .iter()
        .map(|d| d.trim_start_matches("sha256:").to_string())
        .collect();
    assert_eq!(
        layer_dirs(&b.root()),
        hexes,
        "exactly the image's layers are unpacked"
    );
    for d in &diffs {
        assert_same_files(&layer_fs(&a, d), &layer_fs(&b, d));
    }
    assert_same_files(&tree, &layer_fs(&b, &diffs[0]));
    assert_store_consistent(&b.root());
    let listed = ok(&b, &["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(
        listed.trim(),
        name,
        "the pulled image is listed under its name"
    );

    // Pull by digest into another fresh store.
    let c = Env::new();
    let by_digest = format!("{}/test/bb@{digest}", reg.host());
    ok(&c, &["pull", &by_digest]);
    assert_eq!(
        inspect(&c, &by_digest, "{{.Id}}"),
        id,
        "pull by digest gives the same image"
    );
    assert_same_files(&tree, &layer_fs(&c, &diffs[0]));
    assert_store_consistent(&c.root());

    // A digest the registry does not have is an error, and leaves nothing behind.
    let wrong = format!("{}/test/bb@sha256:{}", reg.host(), "0".repeat(64));
    let d = Env::new();
    let err = fails(&d, &["pull", &wrong]);
    assert!(!err.trim().is_empty(), "a failed pull says why");
    assert_eq!(
        ok(&d, &["images", "-q"]).trim(),
        "",
        "nothing tagged after a failed pull"
    );

    // Push by digest (of an image pulled by digest): the manifest goes to that digest, and
    // no tag moves.
    let before = reg.requests().len();
    ok(&c, &["push", &by_digest]);
    let pushed = reg.requests()[before..].to_vec();
    assert_eq!(
        count(&pushed, |r| r
            .starts_with(&format!("PUT /v2/test/bb/manifests/{digest} "))
            && r.ends_with(" 201")),
        1,
        "{pushed:#?}"
    );
    assert_eq!(
        count(&pushed, |r| r.contains("/manifests/latest")),
        0,
        "{pushed:#?}"
    );
}

/// A Wasm image goes through the registry with its wasi/wasm platform; `run` pulls it
/// implicitly; `--pull never` does not touch the registry.
#[test]
fn wasm_image_keeps_its_platform() {
    if !tools("wasm_image_keeps_its_platform", REGISTRY_TOOLS) {
        return;
    }
    let (_, p2) = probe();
    let a = Env::new();
    let reg = Registry::plain(&a.path("registry"));
    let name = format!("{}/hello:p2", reg.host());
    a.wasm_image(&p2, &name, true);
    let id = inspect(&a, &name, "{{.Id}}");
    ok(&a, &["push", &name]);

    let b = Env::new();
    let out = run(&b, &["run", "--rm", &name, "exit", "3"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "run pulls and runs the guest {}",
        show(&out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Unable to find image"),
        "docker's implicit-pull notice: {stderr}"
    );
    // The pull's lines go to stderr, as docker run's do: stdout is the container's.
    let layer = layer_digests(&a, &name)[0].clone();
    for want in [
        "p2: Pulling from hello".to_string(),
        format!("{}: Pull complete", short(&layer)),
        format!("Status: Downloaded newer image for {name}"),
    ] {
        assert!(
            stderr.contains(&format!("{want}\n")),
            "{want:?} in {stderr}"
        );
    }
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("Digest:"),
        "{}",
        show(&out)
    );
    assert_eq!(
        inspect(&b, &name, "{{.Os}}/{{.Architecture}}"),
        "wasi/wasm",
        "platform intact"
    );
    assert_eq!(
        inspect(&b, &name, "{{.Id}}"),
        id,
        "same image after the pull"
    );
    let desc = manifest_descriptor_platform(&b, &name);
    assert_eq!(
        desc, "wasi/wasm",
        "the store's index records the pulled platform"
    );

    // Present now: run does not pull again (no new manifest request).
    let before = count(&reg.requests(), |r| r.contains("/manifests/"));
    let out = run(&b, &["run", "--rm", &name, "exit", "4"]);
    assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("Unable to find image"));
    assert_eq!(
        count(&reg.requests(), |r| r.contains("/manifests/")),
        before,
        "a present image is not pulled with --pull missing"
    );

    // --pull always asks the registry again, even though the image is here.
    let out = run(&b, &["run", "--rm", "--pull", "always", &name, "exit", "5"]);
    assert_eq!(out.status.code(), Some(5), "{}", show(&out));
    assert!(
        count(&reg.requests(), |r| r.contains("/manifests/")) > before,
        "--pull always fetched the manifest"
    );

    // --pull never on a missing image: 125, and no request reaches the registry.
    let before = reg.requests().len();
    let missing = format!("{}/hello:nope", reg.host());
    let out = run(
        &b,
        &["run", "--rm", "--pull", "never", &missing, "exit", "0"],
    );
    assert_eq!(out.status.code(), Some(125), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Unable to find image"),
        "{}",
        show(&out)
    );
    assert_eq!(reg.requests().len(), before, "--pull never made no request");

    // A tag the registry lacks: run fails with 125 and a message.
    let out = run(&b, &["run", "--rm", &missing, "exit", "0"]);
    assert_eq!(out.status.code(), Some(125), "{}", show(&out));
    assert_store_consistent(&b.root());

    // Explicit pull with --platform wasi/wasm into another store.
    let c = Env::new();
    ok(&c, &["pull", "--platform", "wasi/wasm", &name]);
    assert_eq!(inspect(&c, &name, "{{.Os}}/{{.Architecture}}"), "wasi/wasm");
}

/// The platform recorded on the store's index.json entry for `name`.
fn manifest_descriptor_platform(env: &Env, name: &str) -> String {
    let index: Value =
        serde_json::from_slice(&std::fs::read(env.root().join("index.json")).unwrap()).unwrap();
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .is_some_and(|n| n == name || n.ends_with(name))
        })
        .unwrap_or_else(|| panic!("{name} in index.json: {index}"))
        .clone();
    format!(
        "{}/{}",
        entry["platform"]["os"].as_str().unwrap_or("?"),
        entry["platform"]["architecture"].as_str().unwrap_or("?")
    )
}

/// Pushed by strata → copied out by skopeo and unpacked by umoci: the same files. Pushed by
/// skopeo (OCI and Docker schema 2 manifests) → pulled by strata and run.
#[test]
fn skopeo_cross_checks() {
    if !tools(
        "skopeo_cross_checks",
        &["docker-registry", "openssl", "htpasswd", "skopeo", "umoci"],
    ) {
        return;
    }
    let a = Env::new();
    let reg = Registry::plain(&a.path("registry"));
    let host = reg.host();

    // strata → registry → skopeo + umoci
    let name = format!("{host}/test/bb:1");
    let tree = import_rootfs(&a, &name);
    ok(&a, &["push", &name]);
    let layout = a.path("skopeo-layout");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{name}"),
        &format!("oci:{}:x", layout.display()),
    ]);
    let rootfs = umoci_unpack(&layout, "x", &a.path("unpacked"));
    assert_same_files(&tree, &rootfs);
    assert_eq!(
        std::fs::read_link(rootfs.join("bin/sh")).unwrap(),
        Path::new("busybox"),
        "symlink intact"
    );
    let mode = std::fs::metadata(rootfs.join("etc/group"))
        .unwrap()
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!(mode, 0o600, "etc/group mode intact");
    let inspected: Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{name}"),
    ]))
    .unwrap();
    assert_eq!(
        inspected["Digest"].as_str().unwrap(),
        inspect(&a, &name, "{{.Descriptor.digest}}"),
        "skopeo sees the manifest strata pushed"
    );

    // our store → skopeo → registry → strata pull + run, once with each manifest format.
    let (_, p2) = probe();
    a.wasm_image(&p2, "docker.io/library/hello:latest", true);
    let diffs = diff_ids(&a, "docker.io/library/hello:latest");
    for (format, expect_media) in [
        ("oci", "application/vnd.oci.image.manifest.v1+json"),
        (
            "v2s2",
            "application/vnd.docker.distribution.manifest.v2+json",
        ),
    ] {
        let remote = format!("{host}/skopeo/hello:{format}");
        skopeo(&[
            "copy",
            "--dest-tls-verify=false",
            "--format",
            format,
            &format!("oci:{}:docker.io/library/hello:latest", a.root().display()),
            &format!("docker://{remote}"),
        ]);
        let b = Env::new();
        ok(&b, &["pull", &remote]);
        assert_eq!(
            manifest(&b, &remote)["mediaType"].as_str().unwrap_or(""),
            expect_media,
            "{format}: manifest kept as pushed"
        );
        assert_eq!(diff_ids(&b, &remote), diffs, "{format}: same layers");
        assert_same_files(&layer_fs(&a, &diffs[0]), &layer_fs(&b, &diffs[0]));
        let out = run(&b, &["run", "--rm", &remote, "exit", "6"]);
        assert_eq!(
            out.status.code(),
            Some(6),
            "{format}: the pulled image runs {}",
            show(&out)
        );
        let out = run(&b, &["run", "--rm", &remote]);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("hello from wasm"),
            "{format}: {}",
            show(&out)
        );
        assert_store_consistent(&b.root());
    }
}

/// Two images on one base: the base layer is uploaded once (the second push mounts it from
/// the first repository), and a fresh store pulling both fetches it once.
#[test]
fn shared_base_is_transferred_once() {
    if !tools("shared_base_is_transferred_once", REGISTRY_TOOLS) {
        return;
    }
    let (_, p2) = probe();
    let a = Env::new();
    let reg = Registry::plain(&a.path("registry"));
    let host = reg.host();
    let img_a = format!("{host}/test/a:1");
    let img_b = format!("{host}/test/b:1");
    a.wasm_image(&p2, &img_a, true);
    let out = run(&a, &["run", "--name", "c", &img_a, "write", "/x", "y"]);
    assert!(
        out.status.success(),
        "write into the container {}",
        show(&out)
    );
    ok(&a, &["commit", "c", &img_b]);
    let base = layer_digests(&a, &img_a);
    let layers_b = layer_digests(&a, &img_b);
    assert_eq!(base.len(), 1);
    assert_eq!(layers_b.len(), 2, "B is A plus one layer");
    assert_eq!(layers_b[0], base[0], "B is built on A's layer");
    let base_hex = base[0].trim_start_matches("sha256:").to_string();
    let top_hex = layers_b[1].trim_start_matches("sha256:").to_string();

    ok(&a, &["push", &img_a]);
    ok(&a, &["push", &img_b]);
    let reqs = reg.requests();
    // An upload ends with `PUT …/blobs/uploads/<id>?digest=sha256:<hex>`.
    let uploads = |hex: &str| {
        count(&reqs, |r| {
            r.starts_with("PUT ") && r.contains("/blobs/uploads/") && r.contains(hex)
        })
    };
    assert_eq!(
        uploads(&base_hex),
        1,
        "the base layer is uploaded once: {reqs:#?}"
    );
    assert_eq!(
        uploads(&top_hex),
        1,
        "B's own layer is uploaded once: {reqs:#?}"
    );
    let mounts = count(&reqs, |r| {
        r.starts_with("POST /v2/test/b/blobs/uploads/")
            && r.contains("mount=")
            && r.contains(&base_hex)
            && r.ends_with(" 201")
    });
    assert_eq!(
        mounts, 1,
        "B got the base by a cross-repository mount from test/a: {reqs:#?}"
    );
    // B's own blobs went into the uploads its mount requests started (202), no others.
    assert_eq!(
        count(&reqs, |r| r.starts_with("POST /v2/test/b/blobs/uploads/ ")),
        0,
        "{reqs:#?}"
    );

    // Pushing B again sends no blob at all.
    let before = reqs.len();
    ok(&a, &["push", &img_b]);
    let again = reg.requests()[before..].to_vec();
    assert_eq!(
        count(&again, |r| r.starts_with("PUT ") && r.contains("/blobs/")),
        0,
        "a second push uploads nothing: {again:#?}"
    );
    assert_eq!(
        count(&again, |r| r.starts_with("POST ")),
        0,
        "a second push starts no upload: {again:#?}"
    );

    // A fresh store pulls A then B: the base blob is fetched exactly once, B's layer once.
    let b = Env::new();
    let before = reg.requests().len();
    ok(&b, &["pull", &img_a]);
    ok(&b, &["pull", &img_b]);
    let pulls = reg.requests()[before..].to_vec();
    let gets = |hex: &str| {
        count(&pulls, |r| {
            r.starts_with("GET /v2/") && r.contains(&format!("/blobs/sha256:{hex} "))
        })
    };
    assert_eq!(
        gets(&base_hex),
        1,
        "base layer fetched once across both pulls: {pulls:#?}"
    );
    assert_eq!(gets(&top_hex), 1, "B's layer fetched once: {pulls:#?}");
    assert_eq!(
        inspect(&b, &img_b, "{{.Id}}"),
        inspect(&a, &img_b, "{{.Id}}")
    );
    for d in diff_ids(&a, &img_b) {
        assert_same_files(&layer_fs(&a, &d), &layer_fs(&b, &d));
    }
    assert_store_consistent(&b.root());
    let out = run(&b, &["run", "--rm", &img_b, "cat", "/x"]);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains('y'),
        "B's file is there {}",
        show(&out)
    );

    // Pulling B again fetches no blob.
    let before = reg.requests().len();
    ok(&b, &["pull", &img_b]);
    let again = reg.requests()[before..].to_vec();
    assert_eq!(
        count(&again, |r| r.contains("/blobs/")),
        0,
        "a repeated pull fetches no blob: {again:#?}"
    );
}

/// Run and require success with nothing on stderr; returns stdout's lines.
fn lines(env: &Env, args: &[&str]) -> Vec<String> {
    let out = run(env, args);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "strata {args:?}: success, nothing on stderr {}",
        show(&out)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Docker's 12-hex id of a digest.
fn short(digest: &str) -> &str {
    &digest.trim_start_matches("sha256:")[..12]
}

/// What the registry serves for `reference`: its digest and size, as skopeo reads them.
fn remote_manifest(reference: &str) -> (String, usize) {
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ]);
    (
        format!("sha256:{}", hex::encode(Sha256::digest(&raw))),
        raw.len(),
    )
}

/// `push` and `pull` print docker's lines on stdout: per layer (pull by blob digest, push by
/// diff_id, docker's 12 hex), `Digest:`, `Status:`, the reference last; `-q` only that;
/// `Using default tag: latest` when no tag was given; docker's not-found error.
#[test]
fn pull_and_push_print_dockers_lines() {
    if !tools(
        "pull_and_push_print_dockers_lines",
        &["docker-registry", "openssl", "htpasswd", "skopeo"],
    ) {
        return;
    }
    let (_, p2) = probe();
    let a = Env::new();
    let reg = Registry::plain(&a.path("registry"));
    let host = reg.host();
    let img_a = format!("{host}/test/a:1");
    let img_b = format!("{host}/test/b:1");
    a.wasm_image(&p2, &img_a, true);
    let out = run(&a, &["run", "--name", "c", &img_a, "write", "/x", "y"]);
    assert!(out.status.success(), "{}", show(&out));
    ok(&a, &["commit", "c", &img_b]);
    let (base_diff, top_diff) = {
        let d = diff_ids(&a, &img_b);
        (d[0].clone(), d[1].clone())
    };
    let (base_blob, top_blob) = {
        let l = layer_digests(&a, &img_b);
        (l[0].clone(), l[1].clone())
    };
    assert_ne!(
        short(&base_diff),
        short(&base_blob),
        "ids differ for push and pull"
    );

    // push: layers by diff_id, top first; `TAG: digest: D size: N`, N the manifest's bytes.
    let pushed = lines(&a, &["push", &img_a]);
    let (digest_a, size_a) = remote_manifest(&img_a);
    assert_eq!(digest_a, inspect(&a, &img_a, "{{.Descriptor.digest}}"));
    assert_eq!(
        pushed,
        [
            format!("The push refers to repository [{host}/test/a]"),
            format!("{}: Preparing", short(&base_diff)),
            format!("{}: Pushed", short(&base_diff)),
            format!("1: digest: {digest_a} size: {size_a}"),
        ]
    );
    assert_eq!(
        lines(&a, &["push", &img_a])[2],
        format!("{}: Layer already exists", short(&base_diff)),
        "a second push sends nothing"
    );
    let (digest_b, size_b) = {
        let pushed = lines(&a, &["push", &img_b]);
        let remote = remote_manifest(&img_b);
        assert_eq!(
            pushed,
            [
                format!("The push refers to repository [{host}/test/b]"),
                format!("{}: Preparing", short(&top_diff)),
                format!("{}: Preparing", short(&base_diff)),
                format!("{}: Pushed", short(&top_diff)),
                format!("{}: Mounted from test/a", short(&base_diff)),
                format!("1: digest: {} size: {}", remote.0, remote.1),
            ],
            "the shared base is mounted from the first repository"
        );
        remote
    };
    assert_eq!(lines(&a, &["push", "-q", &img_b]), [img_b.as_str()]);
    // No tag: docker's default, said first.
    let untagged = format!("{host}/test/c");
    ok(&a, &["tag", &img_a, &untagged]);
    let pushed = lines(&a, &["push", &untagged]);
    assert_eq!(pushed[0], "Using default tag: latest");
    assert_eq!(
        pushed.last().unwrap(),
        &format!("latest: digest: {digest_a} size: {size_a}")
    );

    // First pull: each layer pulled; the Digest is the registry's; the reference last.
    let b = Env::new();
    let pulled_a = [
        "1: Pulling from test/a".to_string(),
        format!("{}: Pulling fs layer", short(&base_blob)),
        format!("{}: Verifying Checksum", short(&base_blob)),
        format!("{}: Download complete", short(&base_blob)),
        format!("{}: Pull complete", short(&base_blob)),
        format!("Digest: {digest_a}"),
        format!("Status: Downloaded newer image for {img_a}"),
        img_a.clone(),
    ];
    assert_eq!(lines(&b, &["pull", &img_a]), pulled_a);
    // Again: nothing to fetch, no layer lines, the tag unchanged.
    assert_eq!(
        lines(&b, &["pull", &img_a]),
        [
            "1: Pulling from test/a".to_string(),
            format!("Digest: {digest_a}"),
            format!("Status: Image is up to date for {img_a}"),
            img_a.clone(),
        ]
    );
    // A second image on the same base: the base is there already.
    assert_eq!(
        lines(&b, &["pull", &img_b]),
        [
            "1: Pulling from test/b".to_string(),
            format!("{}: Already exists", short(&base_blob)),
            format!("{}: Pulling fs layer", short(&top_blob)),
            format!("{}: Verifying Checksum", short(&top_blob)),
            format!("{}: Download complete", short(&top_blob)),
            format!("{}: Pull complete", short(&top_blob)),
            format!("Digest: {digest_b}"),
            format!("Status: Downloaded newer image for {img_b}"),
            img_b.clone(),
        ]
    );
    assert_eq!(size_b, manifest_bytes(&b, &img_b));

    // -q: the reference only, though everything was fetched.
    let c = Env::new();
    assert_eq!(lines(&c, &["pull", "-q", &img_b]), [img_b.as_str()]);
    assert_eq!(inspect(&c, &img_b, "{{.Descriptor.digest}}"), digest_b);
    // No tag: docker's default first, and the full reference last.
    let pulled = lines(&c, &["pull", &untagged]);
    assert_eq!(pulled[0], "Using default tag: latest");
    assert_eq!(pulled[1], "latest: Pulling from test/c");
    assert_eq!(
        pulled.last().unwrap(),
        &format!("{untagged}:latest"),
        "{pulled:#?}"
    );
    // By digest: the digest where the tag was.
    let by_digest = format!("{host}/test/a@{digest_a}");
    let pulled = lines(&Env::new(), &["pull", &by_digest]);
    assert_eq!(pulled[0], format!("{digest_a}: Pulling from test/a"));
    assert_eq!(
        pulled[pulled.len() - 2..],
        [
            format!("Status: Downloaded newer image for {by_digest}"),
            by_digest.clone()
        ]
    );

    // A tag the registry lacks: docker's message, exit 1, nothing on stdout.
    let out = run(&c, &["pull", &format!("{host}/test/a:nope")]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(out.stdout.is_empty(), "{}", show(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        format!(
            "Error: manifest for {host}/test/a:nope not found: manifest unknown: manifest unknown"
        )
    );

    // A build pulling its base says so under the FROM step, as BuildKit's plain progress.
    let ctx = a.path("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), format!("FROM {img_a}\nENV X=1\n")).unwrap();
    let d = Env::new();
    let out = run(&d, &["build", "-t", "built", ctx.to_str().unwrap()]);
    assert!(out.status.success(), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for want in [
        format!("#1 [stage-0 1/1] FROM {img_a}\n"),
        format!("#1 resolve {img_a}@{digest_a} done\n"),
        format!("#1 {base_blob} done\n"),
        format!("#1 extracting {base_blob} done\n"),
    ] {
        assert!(stderr.contains(&want), "{want:?} in {stderr}");
    }
}

/// The byte length of the stored manifest of `image`.
fn manifest_bytes(env: &Env, image: &str) -> usize {
    let digest = inspect(env, image, "{{.Descriptor.digest}}");
    std::fs::read(
        env.root()
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:")),
    )
    .unwrap()
    .len()
}

/// The registry dies in the middle of a 200 MiB blob: the pull fails promptly and says so,
/// nothing unverified is in the store, nothing is tagged or unpacked; after a restart the
/// next pull completes with the right files.
#[test]
fn registry_killed_mid_pull() {
    if !tools("registry_killed_mid_pull", REGISTRY_TOOLS) {
        return;
    }
    let a = Env::new();
    let mut reg = Registry::plain(&a.path("registry"));
    let name = format!("{}/test/big:1", reg.host());
    let tree = a.path("big-tree");
    std::fs::create_dir_all(&tree).unwrap();
    sh(&format!(
        "head -c 200M /dev/urandom > {0}/big && echo small > {0}/small && tar -C {0} -cf {0}.tar .",
        tree.display()
    ));
    ok(
        &a,
        &[
            "import",
            "--compression-format",
            "none",
            &format!("{}.tar", tree.display()),
            &name,
        ],
    );
    std::fs::remove_file(format!("{}.tar", tree.display())).unwrap();
    ok(&a, &["push", &name]);
    let diffs = diff_ids(&a, &name);
    let layer_hex = layer_digests(&a, &name)[0]
        .trim_start_matches("sha256:")
        .to_string();

    let b = Env::new();
    let stderr_path = b.path("pull.stderr");
    std::fs::create_dir_all(b.tmp.path()).unwrap();
    let mut pull = cmd(&b, &["pull", &name])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("start strata pull");
    // Wait for a temp blob under <root>/tmp to pass 8 MiB, then kill the registry.
    let deadline = Instant::now() + Duration::from_secs(60);
    let staged = loop {
        let biggest = std::fs::read_dir(b.root().join("tmp"))
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.metadata().ok())
                    .filter(|m| m.is_file())
                    .map(|m| m.len())
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        if biggest > 8 << 20 {
            reg.kill(); // SIGKILL
            break biggest;
        }
        if let Some(status) = pull.try_wait().unwrap() {
            panic!(
                "pull ended ({status}) before the registry could be killed mid-blob: {}",
                std::fs::read_to_string(&stderr_path).unwrap()
            );
        }
        assert!(
            Instant::now() < deadline,
            "no temp blob grew under tmp/ in 60s"
        );
        std::thread::sleep(Duration::from_millis(1));
    };
    let killed_at = Instant::now();
    let status = loop {
        if let Some(status) = pull.try_wait().unwrap() {
            break status;
        }
        if killed_at.elapsed() > Duration::from_secs(120) {
            let _ = pull.kill();
            let _ = pull.wait();
            panic!("pull still running 120s after the registry died");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(
        !status.success(),
        "the pull cannot succeed without its registry (killed at {staged} bytes): {stderr}"
    );
    assert!(
        stderr.contains(&layer_hex)
            || stderr.to_lowercase().contains("connect")
            || stderr.contains("blob"),
        "the error says what failed: {stderr}"
    );
    eprintln!(
        "pull failed {:?} after the kill: {}",
        killed_at.elapsed(),
        stderr.trim()
    );

    // Nothing unverified entered the store; the image is not there; no layer is published.
    assert_blobs_intact(&b.root());
    assert!(
        !b.root().join("blobs/sha256").join(&layer_hex).exists(),
        "the partial layer blob is not in blobs/"
    );
    assert_eq!(
        ok(&b, &["images", "-q"]).trim(),
        "",
        "no image after a failed pull"
    );
    assert_eq!(
        layer_dirs(&b.root()),
        Vec::<String>::new(),
        "no layer unpacked after a failed pull"
    );
    let index: Value =
        serde_json::from_slice(&std::fs::read(b.root().join("index.json")).unwrap()).unwrap();
    assert!(
        index["manifests"].as_array().is_none_or(|m| m.is_empty()),
        "index.json has no entry: {index}"
    );
    ok(&b, &["system", "prune", "-f"]);
    assert_store_consistent(&b.root());

    // Same port, same storage: the next pull completes.
    reg.launch();
    ok(&b, &["pull", &name]);
    assert_eq!(inspect(&b, &name, "{{.Id}}"), inspect(&a, &name, "{{.Id}}"));
    assert_same_files(&tree, &layer_fs(&b, &diffs[0]));
    assert_store_consistent(&b.root());
}

/// HTTPS with a private CA and htpasswd basic auth: refused without credentials; `login` checks and stores credentials in `$DOCKER_CONFIG/config.json`,
/// push and pull work with them, `logout` removes them.
#[test]
fn tls_and_basic_auth() {
    if !tools("tls_and_basic_auth", REGISTRY_TOOLS) {
        return;
    }
    let a = Env::new();
    let reg = Registry::tls(&a.path("registry"));
    let host = reg.host();
    let certs = reg.cert_dir();
    let certs = certs.to_str().unwrap();
    let name = format!("{host}/test/secure:1");
    let tree = import_rootfs(&a, &name);
    let config = docker_config(&a).join("config.json");
    let auths = |path: &Path| -> Value {
        std::fs::read(path)
            .ok()
            .map(|b| serde_json::from_slice::<Value>(&b).unwrap()["auths"].clone())
            .unwrap_or(Value::Null)
    };

    // No credentials: refused as unauthorized.
    let err = fails(&a, &["push", "--cert-dir", certs, &name]);
    assert!(is_auth_error(&err), "an auth error: {err}");
    assert_eq!(
        count(&reg.requests(), |r| r.contains("/manifests/")
            && r.starts_with("PUT ")),
        0
    );

    // Wrong password.
    let err = fails(
        &a,
        &[
            "login",
            "-u",
            "user",
            "-p",
            "wrong",
            "--cert-dir",
            certs,
            &host,
        ],
    );
    assert!(is_auth_error(&err), "wrong password: an auth error: {err}");
    assert!(
        auths(&config).get(&host).is_none(),
        "no credentials saved after a wrong password"
    );

    // Right password.
    let out = ok(
        &a,
        &[
            "login",
            "-u",
            "user",
            "-p",
            "pass",
            "--cert-dir",
            certs,
            &host,
        ],
    );
    assert!(out.contains("Login Succeeded"), "{out}");
    let saved = auths(&config);
    assert_eq!(
        saved[&host]["auth"].as_str(),
        Some("dXNlcjpwYXNz"),
        "base64(user:pass) under {host}: {saved}"
    );
    let mode = std::fs::metadata(&config).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "config.json is private");

    // Push and pull with the credentials and the CA.
    ok(&a, &["push", "--cert-dir", certs, &name]);
    let b = Env::new();
    let err = fails(&b, &["pull", "--cert-dir", certs, &name]);
    assert!(is_auth_error(&err), "pull needs credentials too: {err}");
    std::fs::create_dir_all(docker_config(&b)).unwrap();
    std::fs::copy(&config, docker_config(&b).join("config.json")).unwrap();
    ok(&b, &["pull", "--cert-dir", certs, &name]);
    assert_eq!(inspect(&b, &name, "{{.Id}}"), inspect(&a, &name, "{{.Id}}"));
    assert_same_files(&tree, &layer_fs(&b, &diff_ids(&b, &name)[0]));
    assert_store_consistent(&b.root());
    // The blobs were served (to the authenticated pull).
    let reqs = reg.requests();
    assert!(
        count(&reqs, |r| r.starts_with("GET /v2/test/secure/blobs/")
            && r.ends_with(" 200"))
            >= 2,
        "{reqs:#?}"
    );

    // logout removes the entry, and the registry refuses again.
    let out = ok(&a, &["logout", &host]);
    assert!(out.contains(&host), "{out}");
    assert!(
        auths(&config).get(&host).is_none(),
        "logout removed {host}: {}",
        auths(&config)
    );
    let c = Env::new();
    std::fs::create_dir_all(docker_config(&c)).unwrap();
    std::fs::copy(&config, docker_config(&c).join("config.json")).unwrap();
    let err = fails(&c, &["pull", "--cert-dir", certs, &name]);
    assert!(is_auth_error(&err), "logged out: {err}");
    let err = fails(&a, &["push", "--cert-dir", certs, &name]);
    assert!(is_auth_error(&err), "logged out: {err}");
}

/// `tests/suite/common/token_proxy.py` in front of a registry: bearer tokens, as Docker Hub asks
/// for them. Killed when dropped.
struct TokenProxy {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl TokenProxy {
    fn start(dir: &Path, registry_port: u16) -> TokenProxy {
        std::fs::create_dir_all(dir).unwrap();
        let port = free_port();
        let log = dir.join("token-proxy.log");
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/suite/common/token_proxy.py"
        );
        let child = Command::new("python3")
            .args([script, &port.to_string(), &registry_port.to_string()])
            .arg(&log)
            .stdin(Stdio::null())
            .spawn()
            .expect("start the token proxy");
        let proxy = TokenProxy { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the token proxy never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        proxy
    }

    /// `METHOD PATH STATUS`, a line per request.
    fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }
}

impl Drop for TokenProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A registry that wants bearer tokens: push is refused without a login, `login` checks the
/// credentials at the token realm, push then answers the challenges (the cross-repository
/// mount asks for the source repository's scope too) and uploads to a location on another
/// host without credentials, and a fresh store pulls with an anonymous token.
#[test]
fn bearer_token_auth() {
    let mut needed = REGISTRY_TOOLS.to_vec();
    needed.push("python3");
    if !tools("bearer_token_auth", &needed) {
        return;
    }
    let a = Env::new();
    let reg = Registry::plain(&a.path("registry"));
    let proxy = TokenProxy::start(&a.path("proxy"), reg.port);
    let host = format!("127.0.0.1:{}", proxy.port);
    let name = format!("{host}/test/token:1");
    let tree = import_rootfs(&a, &name);

    let err = fails(&a, &["push", &name]);
    assert!(is_auth_error(&err), "push without a login: {err}");
    let err = fails(&a, &["login", "-u", "user", "-p", "wrong", &host]);
    assert!(is_auth_error(&err), "wrong password: {err}");
    let out = ok(&a, &["login", "-u", "user", "-p", "pass", &host]);
    assert!(out.contains("Login Succeeded"), "{out}");
    ok(&a, &["push", &name]);
    let other = format!("{host}/test/other:1");
    ok(&a, &["tag", &name, &other]);
    ok(&a, &["push", &other]);
    let reqs = proxy.requests();
    // Requests that start with `prefix` and got `status`.
    let answered =
        |prefix: &str, status: &str| count(&reqs, |r| r.starts_with(prefix) && r.ends_with(status));
    assert!(
        answered("GET /token?", " 200") >= 2,
        "tokens were asked for: {reqs:#?}"
    );
    assert_eq!(
        answered("PUT /v2/test/token/manifests/1 ", " 201"),
        1,
        "{reqs:#?}"
    );
    assert!(
        answered("POST /v2/test/other/blobs/uploads/?mount=", " 201") >= 1,
        "the second repository got its blobs by mount: {reqs:#?}"
    );
    // Uploads went to the location the registry named, another host to us, without our
    // credentials.
    assert!(
        answered("PUT /v2/test/token/blobs/uploads/", " 201") >= 2,
        "{reqs:#?}"
    );
    assert_eq!(
        count(&reqs, |r| r.contains("CREDENTIALS SENT")),
        0,
        "{reqs:#?}"
    );

    let b = Env::new();
    ok(&b, &["pull", &other]);
    assert_eq!(
        inspect(&b, &other, "{{.Id}}"),
        inspect(&a, &name, "{{.Id}}")
    );
    assert_same_files(&tree, &layer_fs(&b, &diff_ids(&b, &other)[0]));
    assert_store_consistent(&b.root());
}

/// The error a client reports when the registry refuses it credentials.
fn is_auth_error(err: &str) -> bool {
    let lower = err.to_lowercase();
    ["unauthorized", "not authorized", "authentication", "401"]
        .iter()
        .any(|w| lower.contains(w))
}

/// The TLS error a client reports when it does not trust the server's certificate.
fn is_tls_error(err: &str) -> bool {
    let lower = err.to_lowercase();
    lower.contains("certificate") || lower.contains("unknownissuer") || lower.contains("tls")
}

/// Without `--cert-dir` the registry's certificate is not trusted: `login` fails (whatever
/// the password) and saves nothing, `pull` and `push` fail with a TLS verification error
/// rather than falling back to plain HTTP.
#[test]
fn tls_untrusted_certificate_is_refused() {
    if !tools("tls_untrusted_certificate_is_refused", REGISTRY_TOOLS) {
        return;
    }
    let a = Env::new();
    let reg = Registry::tls(&a.path("registry"));
    let host = reg.host();
    let name = format!("{host}/test/secure:1");
    import_rootfs(&a, &name);
    let config = docker_config(&a).join("config.json");
    let saved = || {
        std::fs::read(&config)
            .ok()
            .map(|b| serde_json::from_slice::<Value>(&b).unwrap()["auths"][&host].clone())
    };

    for password in ["pass", "wrong"] {
        let err = fails(&a, &["login", "-u", "user", "-p", password, &host]);
        assert!(
            is_tls_error(&err),
            "login -p {password}: a TLS verification error: {err}"
        );
        assert!(
            saved().is_none_or(|v| v.is_null()),
            "no credentials saved after a failed login"
        );
    }
    let err = fails(&a, &["pull", &name.replace(":1", ":2")]);
    assert!(is_tls_error(&err), "pull: a TLS verification error: {err}");
    let err = fails(&a, &["push", &name]);
    assert!(is_tls_error(&err), "push: a TLS verification error: {err}");
    // No request reached the registry as plain HTTP (Go answers those with a 400).
    let reqs = reg.requests();
    assert_eq!(
        count(&reqs, |r| r.ends_with(" 400")),
        0,
        "plain HTTP sent to the TLS port: {reqs:#?}"
    );
}

/// `--tls-verify=false` (podman's flag: "do not verify certificates; also allow plain
/// HTTP") works against an HTTPS registry whose certificate is not trusted.
#[test]
fn tls_verify_false_skips_verification() {
    if !tools("tls_verify_false_skips_verification", REGISTRY_TOOLS) {
        return;
    }
    let a = Env::new();
    let reg = Registry::tls(&a.path("registry"));
    let host = reg.host();
    let name = format!("{host}/test/insecure:1");
    let tree = import_rootfs(&a, &name);
    let out = ok(
        &a,
        &[
            "login",
            "-u",
            "user",
            "-p",
            "pass",
            "--tls-verify=false",
            &host,
        ],
    );
    assert!(out.contains("Login Succeeded"), "{out}");
    ok(&a, &["push", "--tls-verify=false", &name]);
    let b = Env::new();
    std::fs::create_dir_all(docker_config(&b)).unwrap();
    std::fs::copy(
        docker_config(&a).join("config.json"),
        docker_config(&b).join("config.json"),
    )
    .unwrap();
    ok(&b, &["pull", "--tls-verify=false", &name]);
    assert_same_files(&tree, &layer_fs(&b, &diff_ids(&b, &name)[0]));
    assert_store_consistent(&b.root());
}

/// The registry dies mid-blob and comes back while the pull is still retrying: the same
/// pull completes (retries with backoff), with the right files and nothing left over.
#[test]
fn pull_retries_through_a_registry_restart() {
    if !tools("pull_retries_through_a_registry_restart", REGISTRY_TOOLS) {
        return;
    }
    let a = Env::new();
    let mut reg = Registry::plain(&a.path("registry"));
    let name = format!("{}/test/big:1", reg.host());
    let tree = a.path("big-tree");
    std::fs::create_dir_all(&tree).unwrap();
    sh(&format!(
        "head -c 100M /dev/urandom > {0}/big && tar -C {0} -cf {0}.tar .",
        tree.display()
    ));
    ok(
        &a,
        &[
            "import",
            "--compression-format",
            "none",
            &format!("{}.tar", tree.display()),
            &name,
        ],
    );
    std::fs::remove_file(format!("{}.tar", tree.display())).unwrap();
    ok(&a, &["push", &name]);
    let layer_hex = layer_digests(&a, &name)[0]
        .trim_start_matches("sha256:")
        .to_string();

    let b = Env::new();
    let stderr_path = a.path("pull.stderr");
    let mut pull = cmd(&b, &["pull", &name])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("start strata pull");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let biggest = std::fs::read_dir(b.root().join("tmp"))
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.metadata().ok())
                    .filter(|m| m.is_file())
                    .map(|m| m.len())
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        if biggest > 8 << 20 {
            reg.kill();
            break;
        }
        if let Some(status) = pull.try_wait().unwrap() {
            panic!(
                "pull ended ({status}) before the registry could be killed mid-blob: {}",
                std::fs::read_to_string(&stderr_path).unwrap()
            );
        }
        assert!(
            Instant::now() < deadline,
            "no temp blob grew under tmp/ in 60s"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    reg.launch();
    let status = pull.wait().unwrap();
    assert!(
        status.success(),
        "the pull retried and completed: {}",
        std::fs::read_to_string(&stderr_path).unwrap()
    );
    let gets = count(&reg.requests(), |r| {
        r.starts_with("GET ") && r.contains(&format!("/blobs/sha256:{layer_hex} "))
    });
    // The killed registry never logged the interrupted request; the restarted one served it.
    assert!(gets >= 1, "the layer was requested again after the restart");
    assert_same_files(&tree, &layer_fs(&b, &diff_ids(&b, &name)[0]));
    assert_store_consistent(&b.root());
}

/// A multi-platform index (a Linux image and a Wasm one, pushed with skopeo as an OCI index
/// and as a Docker manifest list): pull picks the host's platform by default, wasi/wasm with
/// `--platform`, fetches only the chosen image's layers, and refuses a platform it lacks.
#[test]
fn index_platform_selection() {
    if !tools(
        "index_platform_selection",
        &["docker-registry", "openssl", "htpasswd", "skopeo"],
    ) {
        return;
    }
    let (_, p2) = probe();
    let a = Env::new();
    let reg = Registry::plain(&a.path("registry"));
    let host = reg.host();
    let (linux, wasm) = (
        "docker.io/library/multi:linux",
        "docker.io/library/multi:wasm",
    );
    import_rootfs(&a, linux);
    a.wasm_image(&p2, wasm, true);
    let host_platform = inspect(&a, linux, "{{.Os}}/{{.Architecture}}");
    assert_ne!(host_platform, "wasi/wasm");
    let linux_layer = layer_digests(&a, linux)[0]
        .trim_start_matches("sha256:")
        .to_string();
    let wasm_layer = layer_digests(&a, wasm)[0]
        .trim_start_matches("sha256:")
        .to_string();

    // An OCI layout holding our blobs and one index over both images.
    let layout = a.path("multi-layout");
    sh(&format!(
        "mkdir -p {0} && cp -r {1}/blobs {1}/oci-layout {0}/",
        layout.display(),
        a.root().display()
    ));
    let entry = |image: &str| {
        let mut d: Value =
            serde_json::from_str(&inspect(&a, image, "{{json .Descriptor}}")).unwrap();
        d["platform"] = serde_json::json!({ "os": inspect(&a, image, "{{.Os}}"), "architecture": inspect(&a, image, "{{.Architecture}}") });
        d.as_object_mut().unwrap().remove("annotations");
        d
    };
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [entry(wasm), entry(linux)],
    });
    let bytes = serde_json::to_vec(&index).unwrap();
    let hex = hex::encode(Sha256::digest(&bytes));
    std::fs::write(layout.join("blobs/sha256").join(&hex), &bytes).unwrap();
    let top = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": format!("sha256:{hex}"),
            "size": bytes.len(),
            "annotations": { "org.opencontainers.image.ref.name": "multi" },
        }],
    });
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();

    for (tag, format) in [("oci", "oci"), ("list", "v2s2")] {
        let remote = format!("{host}/test/multi:{tag}");
        let copied = Command::new("skopeo")
            .args([
                "copy",
                "--all",
                "--dest-tls-verify=false",
                "--format",
                format,
            ])
            .arg(format!("oci:{}:multi", layout.display()))
            .arg(format!("docker://{remote}"))
            .output()
            .unwrap();
        if !copied.status.success() {
            // skopeo may refuse to convert an index's format; the OCI form is required.
            assert_ne!(format, "oci", "skopeo copy --all failed {}", show(&copied));
            eprintln!(
                "note: skopeo cannot push the index as {format}: {}",
                String::from_utf8_lossy(&copied.stderr).trim()
            );
            continue;
        }
        let raw: Value = serde_json::from_str(&skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{remote}"),
        ]))
        .unwrap();
        assert_eq!(
            raw["manifests"].as_array().map(Vec::len),
            Some(2),
            "{tag}: the registry holds an index: {raw}"
        );
        let want = if tag == "oci" {
            "application/vnd.oci.image.index.v1+json"
        } else {
            "application/vnd.docker.distribution.manifest.list.v2+json"
        };
        assert_eq!(raw["mediaType"].as_str(), Some(want), "{tag}: {raw}");

        // Default: the host's platform; only its layer is fetched. As docker, the Digest
        // printed is the index's, and only the chosen image's layer is listed.
        let b = Env::new();
        let before = reg.requests().len();
        let pulled = lines(&b, &["pull", &remote]);
        assert_eq!(
            pulled,
            [
                format!("{tag}: Pulling from test/multi"),
                format!("{}: Pulling fs layer", &linux_layer[..12]),
                format!("{}: Verifying Checksum", &linux_layer[..12]),
                format!("{}: Download complete", &linux_layer[..12]),
                format!("{}: Pull complete", &linux_layer[..12]),
                format!("Digest: {}", remote_manifest(&remote).0),
                format!("Status: Downloaded newer image for {remote}"),
                remote.clone(),
            ]
        );
        assert_ne!(
            remote_manifest(&remote).0,
            inspect(&b, &remote, "{{.Descriptor.digest}}"),
            "{tag}: the index's digest, not the image's"
        );
        assert_eq!(
            inspect(&b, &remote, "{{.Os}}/{{.Architecture}}"),
            host_platform,
            "{tag}: host platform by default"
        );
        assert_eq!(
            inspect(&b, &remote, "{{.Id}}"),
            inspect(&a, linux, "{{.Id}}")
        );
        let reqs = reg.requests()[before..].to_vec();
        assert_eq!(
            count(&reqs, |r| r.contains(&linux_layer)),
            1,
            "{tag}: the Linux layer fetched once: {reqs:#?}"
        );
        assert_eq!(
            count(&reqs, |r| r.contains(&wasm_layer)),
            0,
            "{tag}: the Wasm layer not fetched: {reqs:#?}"
        );
        assert_store_consistent(&b.root());

        // --platform wasi/wasm, explicitly and through run.
        let c = Env::new();
        ok(&c, &["pull", "--platform", "wasi/wasm", &remote]);
        assert_eq!(
            inspect(&c, &remote, "{{.Os}}/{{.Architecture}}"),
            "wasi/wasm",
            "{tag}"
        );
        assert_eq!(
            inspect(&c, &remote, "{{.Id}}"),
            inspect(&a, wasm, "{{.Id}}")
        );
        let d = Env::new();
        let out = run(
            &d,
            &[
                "run",
                "--rm",
                "--platform",
                "wasi/wasm",
                &remote,
                "exit",
                "7",
            ],
        );
        assert_eq!(
            out.status.code(),
            Some(7),
            "{tag}: run pulls the Wasm image from the index {}",
            show(&out)
        );

        // A platform the index lacks.
        let e = Env::new();
        let err = fails(&e, &["pull", "--platform", "linux/s390x", &remote]);
        assert!(
            err.contains("s390x"),
            "{tag}: names the missing platform: {err}"
        );
        assert_eq!(ok(&e, &["images", "-q"]).trim(), "");
    }
}
