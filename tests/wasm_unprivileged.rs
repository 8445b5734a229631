//! No privileges: an unprivileged user, on a host where creating any namespace fails,
//! imports a Wasm image, runs it and commits the result. Alone in its test binary because
//! it lowers `user.max_user_namespaces` for the whole machine while it runs.

mod common;

use common::{hello_wasm, sh, Env};

const NOBODY: &str = "65534";

/// Restores the sysctl when the test ends, even by panic.
struct MaxUserNamespaces(String);

impl Drop for MaxUserNamespaces {
    fn drop(&mut self) {
        let _ = std::fs::write("/proc/sys/user/max_user_namespaces", &self.0);
    }
}

fn as_nobody(env: &Env, script: &str) -> std::process::Output {
    std::process::Command::new("setpriv")
        .args(["--reuid", NOBODY, "--regid", NOBODY, "--clear-groups", "--inh-caps=-all", "--", "sh", "-c", script])
        .env("HOME", env.tmp.path())
        .env_remove("STRATA_ROOT")
        .output()
        .unwrap()
}

#[test]
fn wasm_images_import_run_and_commit_with_no_namespaces() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skip: needs root to set up the unprivileged environment");
        return;
    }
    let (p1, p2) = hello_wasm();
    let env = Env::new();
    std::fs::copy(&p1, env.path("hello-p1.wasm")).unwrap();
    std::fs::copy(&p2, env.path("hello-p2.wasm")).unwrap();
    sh(&format!("chmod 0755 {0} && chown -R {NOBODY}:{NOBODY} {0}", env.tmp.path().display()));
    let old = std::fs::read_to_string("/proc/sys/user/max_user_namespaces").unwrap();
    let _restore = MaxUserNamespaces(old);
    std::fs::write("/proc/sys/user/max_user_namespaces", "0").unwrap();

    // The environment really allows no namespace of any kind.
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
        assert!(out.status.success(), "{kind}: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.ends_with("ok\nunprivileged"), "{kind}: {stdout}");
    }
    // The default store of an unprivileged user is under its home.
    assert!(env.tmp.path().join(".local/share/strata/index.json").exists());
    sh(&format!("chown -R 0:0 {}", env.tmp.path().display()));
}
