//! uid 0 in a user namespace is not root on the host: an unprivileged user, inside
//! `unshare --user --map-root-user` with further namespaces forbidden, loads a multi-layer
//! Wasm image with whiteouts and an opaque directory, runs it and builds FROM it. The store
//! it makes is a rootless one (user.overlay.* xattrs, in the user's home).

use crate::common::{self, assert_store_consistent, end_tar, have, probe, raw_entry, sh};
use sha2::Digest as _;
use tar::EntryType::{Directory, Regular};

const USER: &str = "strata-userns";

fn digest(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)))
}

/// An OCI archive of a Wasm image (platform wasi/wasm, entrypoint /hello.wasm) with these
/// uncompressed layers, bottom first, tagged `name`.
fn wasm_oci_archive(layers: &[Vec<u8>], name: &str) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| digest(l)).collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "wasm", "os": "wasi",
        "config": {"Entrypoint": ["/hello.wasm"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids}
    }))
    .unwrap();
    let layer_descriptors: Vec<serde_json::Value> = layers
        .iter()
        .map(|l| {
            serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": digest(l), "size": l.len()})
        })
        .collect();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": digest(&config), "size": config.len()},
        "layers": layer_descriptors
    }))
    .unwrap();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": digest(&manifest), "size": manifest.len(),
        "annotations": {"org.opencontainers.image.ref.name": name}}]
    }))
    .unwrap();
    let mut out = tar::Builder::new(Vec::new());
    let mut files: Vec<(String, &[u8])> = layers
        .iter()
        .map(|l| (format!("blobs/sha256/{}", &digest(l)[7..]), &l[..]))
        .collect();
    files.extend([
        (
            format!("blobs/sha256/{}", &digest(&config)[7..]),
            &config[..],
        ),
        (
            format!("blobs/sha256/{}", &digest(&manifest)[7..]),
            &manifest[..],
        ),
        ("index.json".to_string(), &index[..]),
        (
            "oci-layout".to_string(),
            &br#"{"imageLayoutVersion":"1.0.0"}"#[..],
        ),
    ]);
    for (path, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        out.append_data(&mut h, path, data).unwrap();
    }
    out.into_inner().unwrap()
}

/// A missing prerequisite skips the test, unless CI says everything must be there.
fn missing(why: &str) {
    common::skip(
        "root_in_a_user_namespace_loads_runs_and_builds_wasm_images",
        why,
    );
}

fn output(out: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn root_in_a_user_namespace_loads_runs_and_builds_wasm_images() {
    if !common::need_root("root_in_a_user_namespace_loads_runs_and_builds_wasm_images") {
        return;
    }
    for tool in ["useradd", "setpriv", "unshare"] {
        if !have(tool) {
            return missing(&format!("{tool} is not installed"));
        }
    }
    let home = common::host_user(USER);
    let as_user_in_userns = |script: &str| {
        std::process::Command::new("setpriv")
            .args(["--reuid", USER, "--regid", USER, "--init-groups", "--"])
            .args(["unshare", "--user", "--map-root-user", "sh", "-c", script])
            .env("HOME", &home)
            .env_remove("STRATA_ROOT")
            .env_remove("XDG_DATA_HOME")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    if !as_user_in_userns("true").status.success() {
        return missing("this host does not let an unprivileged user make a user namespace");
    }
    let host_limit = std::fs::read_to_string("/proc/sys/user/max_user_namespaces").unwrap();

    let (p1, _) = probe();
    let wasm = std::fs::read(p1).unwrap();
    let mut bottom = Vec::new();
    raw_entry(&mut bottom, "hello.wasm", Regular, &wasm, None);
    raw_entry(&mut bottom, "d/", Directory, b"", None);
    raw_entry(&mut bottom, "d/old", Regular, b"old", None);
    raw_entry(&mut bottom, "d/sub/", Directory, b"", None);
    raw_entry(&mut bottom, "d/sub/deep", Regular, b"deep", None);
    raw_entry(&mut bottom, "gone", Regular, b"bye", None);
    raw_entry(&mut bottom, "kept", Regular, b"kept", None);
    raw_entry(&mut bottom, "e/", Directory, b"", None);
    raw_entry(&mut bottom, "e/x", Regular, b"x", None);
    raw_entry(&mut bottom, "e/y", Regular, b"y", None);
    let mut middle = Vec::new();
    raw_entry(&mut middle, "d/", Directory, b"", None);
    raw_entry(&mut middle, "d/.wh..wh..opq", Regular, b"", None);
    raw_entry(&mut middle, "d/new", Regular, b"new", None);
    raw_entry(&mut middle, ".wh.gone", Regular, b"", None);
    let mut top = Vec::new();
    raw_entry(&mut top, "e/.wh.x", Regular, b"", None);
    raw_entry(&mut top, "d/third", Regular, b"third", None);
    let layers = [end_tar(bottom), end_tar(middle), end_tar(top)];

    let tmp = tempfile::Builder::new()
        .prefix("strata-userns")
        .tempdir_in(&home)
        .unwrap();
    let t = tmp.path();
    std::fs::write(t.join("img.tar"), wasm_oci_archive(&layers, "userns:wasm")).unwrap();
    let ctx = t.join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM userns:wasm\n\
         COPY extra.txt /d/extra.txt\n\
         RUN [\"/hello.wasm\", \"write\", \"/d/made-at-build.txt\", \"during the build\"]\n\
         RUN [\"/hello.wasm\", \"rm\", \"/kept\"]\n",
    )
    .unwrap();
    std::fs::write(ctx.join("extra.txt"), "copied").unwrap();
    sh(&format!("chown -R {USER}:{USER} {}", t.display()));

    let strata = env!("CARGO_BIN_EXE_strata");
    let store = t.join("store");
    let script = format!(
        "set -e; cd {t}; \
         test \"$(id -u)\" = 0; \
         echo 0 > /proc/sys/user/max_user_namespaces; \
         if unshare --user true 2>/dev/null; then echo 'a nested user namespace was made' >&2; exit 90; fi; \
         S='{strata} --root {s}'; \
         $S load -i img.tar; \
         echo \"ROOT=$($S run --rm userns:wasm ls /)\"; \
         echo \"D=$($S run --rm userns:wasm ls /d)\"; \
         echo \"E=$($S run --rm userns:wasm ls /e)\"; \
         echo \"NEW=$($S run --rm userns:wasm cat /d/new)\"; \
         $S build -q --platform wasi/wasm -t userns:built ctx >/dev/null; \
         echo \"BUILT_ROOT=$($S run --rm userns:built ls /)\"; \
         echo \"BUILT_D=$($S run --rm userns:built ls /d)\"; \
         echo \"BUILT_FILE=$($S run --rm userns:built cat /d/made-at-build.txt)\"; \
         {strata} images -q >/dev/null; \
         test -f $HOME/.local/share/strata/index.json; \
         echo done",
        t = t.display(),
        s = store.display(),
    );
    let out = as_user_in_userns(&script);
    let (stdout, stderr) = output(&out);
    assert!(out.status.success(), "{stderr}\n{stdout}");
    let line = |key: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key} in {stdout}"))
            .to_string()
    };
    // Whiteouts hide /gone and /e/x; the opaque /d hides what the bottom layer had there.
    assert_eq!(line("ROOT"), "d e hello.wasm kept");
    assert_eq!(line("D"), "new third");
    assert_eq!(line("E"), "y");
    assert_eq!(line("NEW"), "new");
    // The build copied into and wrote under the opaque /d, and whited out /kept.
    assert_eq!(line("BUILT_ROOT"), "d e hello.wasm");
    assert_eq!(line("BUILT_D"), "extra.txt made-at-build.txt new third");
    assert_eq!(line("BUILT_FILE"), "during the build");
    assert!(stdout.ends_with("done\n"), "{stdout}");

    // The store is a rootless one: the opaque directory is marked with user.overlay.opaque.
    assert_store_consistent(&store);
    let mut marked = 0;
    for layer in std::fs::read_dir(store.join("layers")).unwrap() {
        let d = layer.unwrap().path().join("fs/d");
        let mut value = [0u8; 8];
        if let Ok(n) = rustix::fs::getxattr(&d, "user.overlay.opaque", &mut value) {
            assert_eq!(&value[..n], b"y");
            marked += 1;
        }
        assert!(
            rustix::fs::getxattr(&d, "trusted.overlay.opaque", &mut value).is_err(),
            "{} carries a trusted.overlay xattr",
            d.display()
        );
    }
    assert_eq!(marked, 1, "exactly the middle layer's /d is opaque");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/user/max_user_namespaces").unwrap(),
        host_limit,
        "the limit was set in the test's namespace only"
    );
    drop(tmp);
    sh(&format!("rm -rf {home}/.local/share/strata"));
}
