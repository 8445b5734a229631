//! The official WASI test suite (preview 1, `../shared/wasi-testsuite`, its README says the
//! format), every test run as a Strata Wasm container: the test's `root` directory is the
//! container's `/` (a fresh copy per test, in the image's layer, so the guest's changes go
//! to the container's upper layer over a read-only lower), the module sits in it as
//! `/test.wasm`, and the exit status and output must be what the suite expects.
//!
//! The suite's tests work in the preopen named `/`, and a host directory cannot be bound
//! there (`-v HOST:/` is refused, as docker refuses it), so the suite runs on the layered
//! root only; what bind mounts change (mount points crossed by `..` and by links, files
//! written through them) is tested in `tests/suite/wasm.rs` and `runtime/src/wasm/guestfs/`.

use std::path::{Path, PathBuf};

use crate::common::{self, sh, Env};

/// The one test whose premise a container cannot meet: it calls `shutdown(3)` expecting
/// EBADF because it was given no directory, but in a Strata container fd 3 is always the
/// root's preopen, a directory, for which the answer is ENOTSOCK (as Linux answers, and
/// wasmtime given any preopen). It must fail exactly so, on that assertion.
const FD_3_IS_THE_ROOT: (&str, &str) = (
    "c/sock_shutdown-invalid_fd",
    "Assertion failed: errno == EBADF",
);

fn suite() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/wasi-testsuite");
    if dir.join("README.md").exists() {
        return Some(dir);
    }
    common::skip(
        "wasi_testsuite",
        &format!("no WASI test suite at {}", dir.display()),
    );
    None
}

/// One test of the suite, read from its `NAME.json`.
struct Case {
    name: String,
    wasm: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    root: Option<PathBuf>,
    stdin: Option<String>,
    exit_code: i32,
    stdout: Option<String>,
}

fn cases(suite: &Path) -> Vec<Case> {
    let mut out = Vec::new();
    for group in ["assemblyscript", "c", "rust"] {
        let dir = suite.join(group).join("wasm32-wasip1");
        let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
            .collect();
        names.sort();
        for wasm in names {
            let json = wasm.with_extension("json");
            let spec: serde_json::Value = if json.exists() {
                serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap()
            } else {
                serde_json::json!({})
            };
            let strings = |v: &serde_json::Value| -> Vec<String> {
                v.as_array()
                    .map(|a| a.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
                    .unwrap_or_default()
            };
            out.push(Case {
                name: format!("{group}/{}", wasm.file_stem().unwrap().to_string_lossy()),
                args: strings(&spec["args"]),
                env: spec["env"]
                    .as_object()
                    .map(|o| {
                        o.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                            .collect()
                    })
                    .unwrap_or_default(),
                root: spec["root"].as_str().map(|r| dir.join(r)),
                stdin: spec["stdin"].as_str().map(str::to_owned),
                exit_code: spec["exit_code"].as_i64().unwrap_or(0) as i32,
                stdout: spec["stdout"].as_str().map(str::to_owned),
                wasm,
            });
        }
    }
    out
}

/// Run one case; `Err` says how it failed.
fn run_case(env: &Env, case: &Case, n: usize) -> Result<(), String> {
    let work = env.path(&format!("case-{n}"));
    let tree = work.join("root");
    std::fs::create_dir_all(&tree).unwrap();
    if let Some(root) = &case.root {
        sh(&format!("cp -a {}/. {}", root.display(), tree.display()));
    }
    std::fs::copy(&case.wasm, tree.join("test.wasm")).unwrap();
    let tar = work.join("image.tar");
    sh(&format!(
        "tar -C {} -cf {} .",
        tree.display(),
        tar.display()
    ));
    let image = format!("wasi-test:{n}");
    env.ok(&[
        "import",
        "--platform",
        "wasi/wasm",
        "-c",
        "ENTRYPOINT [\"/test.wasm\"]",
        tar.to_str().unwrap(),
        &image,
    ]);
    let mut args: Vec<String> = vec!["run".into(), "--rm".into()];
    for (k, v) in &case.env {
        args.extend(["-e".into(), format!("{k}={v}")]);
    }
    if case.stdin.is_some() {
        args.push("-i".into());
    }
    args.push(image.clone());
    args.extend(case.args.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = env.cmd(&args);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if case.stdin.is_some() {
        cmd.stdin(std::process::Stdio::piped());
    }
    let mut child = cmd.spawn().expect("run strata");
    if let Some(input) = &case.stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    env.ok(&["rmi", &image]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let code = out.status.code().unwrap_or(-1);
    let mut why = Vec::new();
    if code != case.exit_code {
        why.push(format!("exit {code}, expected {}", case.exit_code));
    }
    if let Some(expected) = &case.stdout {
        if !stdout.starts_with(expected.as_str()) {
            why.push(format!("stdout {stdout:?}, expected {expected:?}"));
        }
    }
    if why.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}; stderr: {}",
            case.name,
            why.join(", "),
            String::from_utf8_lossy(&out.stderr).trim_end()
        ))
    }
}

#[test]
fn wasi_testsuite_passes() {
    let Some(suite) = suite() else { return };
    let cases = cases(&suite);
    assert_eq!(cases.len(), 72, "the suite has 72 tests");
    let env = Env::new();
    let mut failures: Vec<String> = cases
        .iter()
        .enumerate()
        .filter_map(|(n, case)| run_case(&env, case, n).err())
        .collect();
    let (name, assertion) = FD_3_IS_THE_ROOT;
    let known = failures
        .iter()
        .position(|f| f.starts_with(&format!("{name}:")) && f.contains(assertion));
    assert!(
        known.is_some(),
        "{name} should fail only on its fd 3 premise: {failures:?}"
    );
    failures.remove(known.unwrap());
    assert!(
        failures.is_empty(),
        "{}/71 passed; failures:\n{}",
        71 - failures.len(),
        failures.join("\n")
    );
    common::assert_store_consistent(&env.root());
}
