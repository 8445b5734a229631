//! Hostile input through the CLI: every bad layer or archive is refused with one line that
//! names what was wrong, nothing outside the store changes, and the store stays consistent.

mod common;

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::{assert_store_consistent, end_tar, raw_entry, sh, Env};
use tar::EntryType::{Char, Link, Regular, Symlink};

/// A directory next to the store that no input may touch.
fn canary(env: &Env) -> std::path::PathBuf {
    let c = env.path("canary");
    std::fs::create_dir_all(&c).unwrap();
    std::fs::write(c.join("file"), "canary").unwrap();
    c
}

fn assert_canary_intact(c: &Path) {
    let names: Vec<_> = std::fs::read_dir(c)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["file"]);
    assert_eq!(std::fs::read(c.join("file")).unwrap(), b"canary");
    let m = std::fs::metadata(c.join("file")).unwrap();
    assert_eq!(m.nlink(), 1);
    assert_eq!(m.mode() & 0o7777, 0o644);
}

fn assert_refused(env: &Env, args: &[&str], mentions: &[&str]) {
    let err = env.fails(args);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    for m in mentions {
        assert!(err.contains(m), "error should mention {m:?}: {err}");
    }
    assert_eq!(
        env.ok(&["images", "-q"]),
        "",
        "the failed image is not listed"
    );
    assert_store_consistent(&env.root());
}

#[test]
fn hostile_layers_are_refused_and_contained() {
    type Build = fn(&mut Vec<u8>, &str);
    let cases: Vec<(&str, &str, Build)> = vec![
        ("dot-dot name", "../../canary/evil", |t, _| {
            raw_entry(t, "../../canary/evil", Regular, b"x", None)
        }),
        ("symlink out, then a file through it", "out/evil", |t, c| {
            raw_entry(t, "out", Symlink, b"", Some(c));
            raw_entry(t, "out/evil", Regular, b"x", None);
        }),
        (
            "relative symlink out, then through it",
            "up/canary/evil",
            |t, _| {
                raw_entry(t, "up", Symlink, b"", Some("../../../../../../../../../.."));
                raw_entry(t, "up/canary/evil", Regular, b"x", None);
            },
        ),
        ("hardlink to a host file", "hl", |t, c| {
            let target = format!("{c}/file");
            raw_entry(t, "hl", Link, b"", Some(Box::leak(target.into_boxed_str())));
        }),
        ("hardlink up and out", "hl2", |t, _| {
            raw_entry(t, "hl2", Link, b"", Some("../../canary/file"))
        }),
        ("whiteout that escapes", "../.wh.canary", |t, _| {
            raw_entry(t, "../.wh.canary", Regular, b"", None)
        }),
        ("whiteout of ..", ".wh..", |t, _| {
            raw_entry(t, "a/.wh..", Regular, b"", None)
        }),
    ];
    for (what, entry, build) in cases {
        let env = Env::new();
        let c = canary(&env);
        let mut tar = Vec::new();
        raw_entry(&mut tar, "ok", Regular, b"fine", None);
        build(&mut tar, c.to_str().unwrap());
        let file = env.path("evil.tar");
        std::fs::write(&file, end_tar(tar)).unwrap();
        let err = env.fails(&["import", file.to_str().unwrap(), "evil"]);
        assert!(
            err.contains(entry),
            "{what}: error should name {entry:?}: {err}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "{what}: one line: {err}");
        assert_canary_intact(&c);
        assert_eq!(env.ok(&["images", "-q"]), "", "{what}: not listed");
        assert_store_consistent(&env.root());
        assert_eq!(
            std::fs::read_dir(env.root().join("layers"))
                .unwrap()
                .count(),
            0,
            "{what}: no layer published"
        );
    }
}

#[test]
fn absolute_names_stay_inside() {
    // Absolute names are taken relative to the layer root, as docker does.
    let env = Env::new();
    let c = canary(&env);
    let mut tar = Vec::new();
    let inside = format!("{}/file", c.display());
    raw_entry(&mut tar, &inside, Regular, b"overwritten?", None);
    let file = env.path("abs.tar");
    std::fs::write(&file, end_tar(tar)).unwrap();
    env.ok(&["import", file.to_str().unwrap(), "abs"]);
    assert_canary_intact(&c);
    let diff_id: Vec<String> =
        serde_json::from_str(&env.ok(&["inspect", "-f", "{{json .RootFS.Layers}}", "abs"]))
            .unwrap();
    let layer = env
        .root()
        .join("layers")
        .join(diff_id[0].trim_start_matches("sha256:"))
        .join("fs");
    assert_eq!(
        std::fs::read(layer.join(inside.trim_start_matches('/'))).unwrap(),
        b"overwritten?"
    );
}

#[test]
fn device_nodes_are_refused_for_unprivileged_users() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skip: needs root to switch to an unprivileged user");
        return;
    }
    let env = Env::new();
    let mut tar = Vec::new();
    raw_entry(&mut tar, "dev/sda", Char, b"", None);
    let file = env.path("dev.tar");
    std::fs::write(&file, end_tar(tar)).unwrap();
    sh(&format!(
        "chmod 0755 {0} && chown -R 65534:65534 {0}",
        env.tmp.path().display()
    ));
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_strata"))
        .arg("--root")
        .arg(env.root())
        .args(["import", file.to_str().unwrap(), "dev"])
        .env("HOME", env.tmp.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("dev/sda") && err.contains("device"), "{err}");
    sh(&format!("chown -R 0:0 {}", env.tmp.path().display()));
    assert_store_consistent(&env.root());
}

#[test]
fn truncated_gzip_is_refused() {
    let env = Env::new();
    let (tar, _) = env.rootfs_tar("rootfs");
    sh(&format!(
        "gzip -c {0} | head -c 300000 > {0}.cut.gz",
        tar.display()
    ));
    assert_refused(
        &env,
        &["import", &format!("{}.cut.gz", tar.display()), "cut"],
        &["import"],
    );
}

/// Save an image, then rewrite one file of the archive with `edit`.
fn tampered_archive(env: &Env, edit: impl Fn(&str, &mut Vec<u8>)) -> std::path::PathBuf {
    let (tar, _) = env.rootfs_tar("rootfs");
    env.ok(&["import", tar.to_str().unwrap(), "victim"]);
    let saved = env.path("saved.tar");
    env.ok(&["save", "-o", saved.to_str().unwrap(), "victim"]);
    env.ok(&["rmi", "victim"]);
    let mut archive = tar::Archive::new(std::fs::File::open(&saved).unwrap());
    let mut out = tar::Builder::new(Vec::new());
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        edit(&name, &mut data);
        let mut h = e.header().clone();
        h.set_size(data.len() as u64);
        out.append_data(&mut h, &name, &data[..]).unwrap();
    }
    let path = env.path("tampered.tar");
    std::fs::File::create(&path)
        .unwrap()
        .write_all(&out.into_inner().unwrap())
        .unwrap();
    path
}

#[test]
fn a_blob_that_does_not_match_its_digest_is_refused() {
    let env = Env::new();
    let archive = tampered_archive(&env, |name, data| {
        if name.starts_with("blobs/") && data.len() > 100_000 {
            data[50_000] ^= 0xff; // flip a byte inside the layer
        }
    });
    assert_refused(
        &env,
        &["load", "-i", archive.to_str().unwrap()],
        &["digest mismatch"],
    );
}

/// An OCI archive built by hand: one layer, a config claiming `diff_id`, manifest, index.
fn oci_archive(layer: &[u8], diff_id: &str) -> Vec<u8> {
    use sha2::Digest as _;
    let digest = |b: &[u8]| format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)));
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [diff_id]}
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest(layer), "size": layer.len()}]
    }))
    .unwrap();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": digest(&manifest), "size": manifest.len(),
        "annotations": {"org.opencontainers.image.ref.name": "example.com/liar:1"}}]
    }))
    .unwrap();
    let mut out = tar::Builder::new(Vec::new());
    for (name, data) in [
        (format!("blobs/sha256/{}", &digest(layer)[7..]), layer),
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
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        out.append_data(&mut h, name, data).unwrap();
    }
    out.into_inner().unwrap()
}

#[test]
fn a_layer_that_does_not_match_its_diff_id_is_refused() {
    let env = Env::new();
    let mut layer = Vec::new();
    raw_entry(&mut layer, "hello", Regular, b"world", None);
    let layer = end_tar(layer);
    let file = env.path("liar.tar");
    std::fs::write(
        &file,
        oci_archive(&layer, &format!("sha256:{}", "0".repeat(64))),
    )
    .unwrap();
    assert_refused(&env, &["load", "-i", file.to_str().unwrap()], &["diff_id"]);
    assert_eq!(
        std::fs::read_dir(env.root().join("layers"))
            .unwrap()
            .count(),
        0,
        "no layer published"
    );
    // The same archive with the true diff_id loads: the check, not the archive, refused it.
    use sha2::Digest as _;
    let truth = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&layer)));
    std::fs::write(&file, oci_archive(&layer, &truth)).unwrap();
    assert_eq!(
        env.ok(&["load", "-i", file.to_str().unwrap()]).trim(),
        "Loaded image: example.com/liar:1"
    );
}

#[test]
fn archive_names_that_escape_are_refused() {
    let env = Env::new();
    let c = canary(&env);
    let mut tar = Vec::new();
    raw_entry(&mut tar, "../../canary/file", Regular, b"pwned", None);
    let file = env.path("bad-archive.tar");
    std::fs::write(&file, end_tar(tar)).unwrap();
    assert_refused(
        &env,
        &["load", "-i", file.to_str().unwrap()],
        &["../../canary/file"],
    );
    assert_canary_intact(&c);
}

#[test]
fn garbage_input_is_a_clear_error() {
    let env = Env::new();
    let file = env.path("garbage");
    std::fs::write(&file, vec![0x42u8; 10_000]).unwrap();
    assert_refused(&env, &["import", file.to_str().unwrap(), "g"], &["import"]);
    assert_refused(&env, &["load", "-i", file.to_str().unwrap()], &["load"]);
    std::fs::write(&file, b"BZh91AY&SY").unwrap();
    assert_refused(&env, &["import", file.to_str().unwrap(), "g"], &["bzip2"]);
}
