//! No privileges: an unprivileged user, in an environment where creating any namespace
//! fails (a seccomp filter refuses unshare, setns and clone with CLONE_NEW* flags), imports
//! a Wasm image, runs it and commits the result.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;

use crate::common::{self, probe, sh, Env};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

const NOBODY: &str = "65534";

/// Filters that make every namespace-creating call fail with EPERM. clone3 answers ENOSYS,
/// so the C library falls back to clone, where the flags can be inspected.
fn no_namespaces() -> Vec<BpfProgram> {
    let arch = std::env::consts::ARCH.try_into().unwrap();
    let ns_flags = [
        libc::CLONE_NEWNS,
        libc::CLONE_NEWUTS,
        libc::CLONE_NEWIPC,
        libc::CLONE_NEWUSER,
        libc::CLONE_NEWPID,
        libc::CLONE_NEWNET,
        libc::CLONE_NEWCGROUP,
    ];
    let clone_rules = ns_flags
        .iter()
        .map(|&f| {
            SeccompRule::new(vec![SeccompCondition::new(
                0,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(f as u64),
                f as u64,
            )
            .unwrap()])
            .unwrap()
        })
        .collect();
    let deny: BTreeMap<i64, Vec<SeccompRule>> = [
        (libc::SYS_unshare, vec![]),
        (libc::SYS_setns, vec![]),
        (libc::SYS_clone, clone_rules),
    ]
    .into_iter()
    .collect();
    let no_clone3: BTreeMap<i64, Vec<SeccompRule>> =
        [(libc::SYS_clone3, vec![])].into_iter().collect();
    let eperm = SeccompFilter::new(
        deny,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .unwrap();
    let enosys = SeccompFilter::new(
        no_clone3,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .unwrap();
    vec![eperm.try_into().unwrap(), enosys.try_into().unwrap()]
}

#[allow(unsafe_code)]
fn as_nobody(env: &Env, script: &str) -> std::process::Output {
    let filters = no_namespaces();
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args([
        "--reuid",
        NOBODY,
        "--regid",
        NOBODY,
        "--clear-groups",
        "--inh-caps=-all",
        "--",
        "sh",
        "-c",
        script,
    ])
    .env("HOME", env.tmp.path())
    .env_remove("STRATA_ROOT");
    // SAFETY: between fork and exec the closure only makes the prctl/seccomp system calls
    // seccompiler issues for already-built programs; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            for f in &filters {
                seccompiler::apply_filter(f).map_err(|e| std::io::Error::other(e.to_string()))?;
            }
            Ok(())
        });
    }
    cmd.output().unwrap()
}

#[test]
fn wasm_images_import_run_and_commit_with_no_namespaces() {
    if !common::need_root("wasm_images_import_run_and_commit_with_no_namespaces") {
        return;
    }
    let (p1, p2) = probe();
    let env = Env::new();
    std::fs::copy(&p1, env.path("hello-p1.wasm")).unwrap();
    std::fs::copy(&p2, env.path("hello-p2.wasm")).unwrap();
    sh(&format!(
        "chmod 0755 {0} && chown -R {NOBODY}:{NOBODY} {0}",
        env.tmp.path().display()
    ));
    // Without the filter, this user can make namespaces here...
    let free = std::process::Command::new("setpriv")
        .args([
            "--reuid",
            NOBODY,
            "--regid",
            NOBODY,
            "--clear-groups",
            "--",
            "unshare",
            "-Ur",
            "true",
        ])
        .status()
        .unwrap();
    assert!(
        free.success(),
        "unprivileged user namespaces work on this host"
    );

    // ...with it, none of any kind.
    for kind in ["-U", "-m", "-p -f", "-n", "-Ur"] {
        let out = as_nobody(&env, &format!("unshare {kind} true"));
        assert!(!out.status.success(), "unshare {kind} should fail here");
    }

    let strata = env!("CARGO_BIN_EXE_strata");
    for kind in ["p1", "p2"] {
        let script = format!(
            "set -e; cd {t}; mkdir -p img-{kind} && cp hello-{kind}.wasm img-{kind}/hello.wasm && tar -C img-{kind} -cf img-{kind}.tar . && \
             {strata} import --platform wasi/wasm -c 'ENTRYPOINT [\"/hello.wasm\"]' img-{kind}.tar hello:{kind} >/dev/null && \
             {strata} run --name c-{kind} hello:{kind} write /made-here.txt unprivileged && \
             {strata} commit c-{kind} hello:{kind}-committed >/dev/null && \
             {strata} run --rm hello:{kind}-committed cat /made-here.txt && {strata} rm c-{kind} >/dev/null",
            t = env.tmp.path().display()
        );
        let out = as_nobody(&env, &script);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{kind}: {}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.ends_with("ok\nunprivileged"), "{kind}: {stdout}");
    }
    // `bridge` without namespaces is host-ports mode: the guest's bind of port 80 is made on
    // the published host port (loopback only here: the machine's own network).
    let t = env.tmp.path().display();
    // A named volume in the user's own store: written by one container, read by the next.
    let out = as_nobody(
        &env,
        &format!(
            "cd {t} && {strata} run --rm -v notes:/notes hello:p2 write /notes/n kept >/dev/null \
             && {strata} run --rm -v notes:/notes hello:p1 cat /notes/n \
             && echo && {strata} volume inspect -f '{{{{.Mountpoint}}}}' notes"
        ),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        text,
        format!("kept\n{t}/.local/share/strata/volumes/notes/_data\n")
    );
    let out = as_nobody(
        &env,
        &format!(
            "cd {t} && {strata} run -d --name srv --network bridge -p 127.0.0.1:18087:80 \
             hello:p2 serve 80 1 >/dev/null && {strata} port srv"
        ),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text, "80/tcp -> 127.0.0.1:18087\n");
    // The host's loopback is out of a guest's reach, as pasta keeps it from a container.
    let out = as_nobody(
        &env,
        &format!("cd {t} && {strata} run --rm --network bridge hello:p2 connect 127.0.0.1:18087"),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("connect: 127.0.0.1:18087: Permission denied"),
        "{err}"
    );
    let t0 = std::time::Instant::now();
    let got = loop {
        use std::io::Read;
        match std::net::TcpStream::connect("127.0.0.1:18087") {
            Ok(mut s) => {
                let mut text = String::new();
                s.read_to_string(&mut text).unwrap();
                break text;
            }
            Err(e) => {
                assert!(t0.elapsed().as_secs() < 10, "the guest never listened: {e}");
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    };
    assert_eq!(got, "hello from wasm\n");
    let out = as_nobody(
        &env,
        &format!("cd {t} && {strata} wait srv && {strata} rm srv"),
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "0\nsrv\n");
    // UDP alike: its bind of 53 is made on the published 18088.
    let out = as_nobody(
        &env,
        &format!(
            "cd {t} && {strata} run -d --name dns --network bridge -p 127.0.0.1:18088:53/udp \
             hello:p2 udp-echo 53"
        ),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(std::time::Duration::from_millis(200)))
        .unwrap();
    let t0 = std::time::Instant::now();
    let reply = loop {
        // Sent again until the guest has bound (a datagram before that is lost).
        client.send_to(b"ping", "127.0.0.1:18088").unwrap();
        let mut buf = [0u8; 64];
        if let Ok((n, _)) = client.recv_from(&mut buf) {
            break String::from_utf8_lossy(&buf[..n]).into_owned();
        }
        assert!(t0.elapsed().as_secs() < 10, "the guest never answered");
    };
    assert_eq!(reply, "hello from wasm: ping");
    let out = as_nobody(
        &env,
        &format!("cd {t} && {strata} wait dns && {strata} rm dns"),
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "0\ndns\n");
    // User networks need root: refused, not run without the network asked for.
    let out = as_nobody(
        &env,
        &format!("cd {t} && {strata} network create mine >/dev/null && {strata} run --rm --network mine hello:p2"),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(err.contains("rootless containers use bridge"), "{err}");
    // The default store of an unprivileged user is under its home.
    assert!(env
        .tmp
        .path()
        .join(".local/share/strata/index.json")
        .exists());
    sh(&format!("chown -R 0:0 {}", env.tmp.path().display()));
}

#[test]
fn a_wasi_http_handler_serves_with_no_namespaces() {
    if !common::need_root("a_wasi_http_handler_serves_with_no_namespaces") {
        return;
    }
    let env = Env::new();
    std::fs::create_dir_all(env.path("img")).unwrap();
    std::fs::copy(crate::http::http_probe(), env.path("img/hello.wasm")).unwrap();
    sh(&format!(
        "chmod 0755 {0} && chown -R {NOBODY}:{NOBODY} {0}",
        env.tmp.path().display()
    ));
    let (strata, t) = (env!("CARGO_BIN_EXE_strata"), env.tmp.path().display());
    // `-p` alone: host-ports mode, the handler listening on the published host port.
    let out = as_nobody(
        &env,
        &format!(
            "set -e; cd {t} && tar -C img -cf img.tar . && \
             {strata} import --platform wasi/wasm -c 'ENTRYPOINT [\"/hello.wasm\"]' img.tar hp >/dev/null && \
             {strata} run -d --name web -p 127.0.0.1:18096:8080 hp >/dev/null && {strata} port web"
        ),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "8080/tcp -> 127.0.0.1:18096\n"
    );
    // Its port is open once `run -d` has returned.
    let addr = "127.0.0.1:18096";
    let (status, body) = crate::http::request(addr, "GET /state HTTP/1.1", b"").unwrap();
    assert_eq!((status, &body[..]), (200, &b"1"[..]));
    // Outgoing requests to the host's loopback are refused, as its sockets' connects.
    // By address, by a name that resolves there, or by the unspecified address.
    for target in ["127.0.0.1:18096", "localhost:18096", "0.0.0.0:18096"] {
        let (status, body) =
            crate::http::request(addr, &format!("GET /fetch/{target}/ HTTP/1.1"), b"").unwrap();
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, 502, "{target}: {body}");
        assert!(body.contains("HttpRequestDenied"), "{target}: {body}");
    }
    let out = as_nobody(
        &env,
        &format!("cd {t} && {strata} stop web && {strata} rm web"),
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "web\nweb\n");
    sh(&format!("chown -R 0:0 {}", env.tmp.path().display()));
}
