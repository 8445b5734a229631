//! The store and the image commands, end to end through the `strata` binary.

use std::os::unix::fs::PermissionsExt;

use crate::common::{assert_same_files, assert_store_consistent, sh, Env};
use serde_json::Value;

fn index(env: &Env) -> Value {
    serde_json::from_slice(&std::fs::read(env.root().join("index.json")).unwrap()).unwrap()
}

#[test]
fn the_store_is_an_oci_image_layout() {
    let env = Env::new();
    let (tar, _) = env.rootfs_tar("rootfs");
    let id = env.ok(&["import", tar.to_str().unwrap(), "busybox"]);
    assert!(
        id.trim().starts_with("sha256:") && id.trim().len() == 71,
        "{id}"
    );
    let root = env.root();
    assert_eq!(
        std::fs::read_to_string(root.join("oci-layout")).unwrap(),
        r#"{"imageLayoutVersion":"1.0.0"}"#
    );
    let idx = index(&env);
    assert_eq!(idx["schemaVersion"], 2);
    let entries = idx["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(
        entries[0]["annotations"]["org.opencontainers.image.ref.name"],
        "docker.io/library/busybox:latest"
    );
    assert_eq!(
        entries[0]["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        std::fs::metadata(&root).unwrap().permissions().mode() & 0o777,
        0o700,
        "store is private"
    );
    // manifest → config (whose digest is the image ID) → one gzip layer, all in blobs/
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(
            root.join("blobs/sha256").join(
                entries[0]["digest"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("sha256:"),
            ),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["config"]["digest"], id.trim());
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert_store_consistent(&root);
    // the unpacked layer sits beside the layout, keyed by diff_id
    let config: Value = serde_json::from_slice(
        &std::fs::read(
            root.join("blobs/sha256")
                .join(id.trim().trim_start_matches("sha256:")),
        )
        .unwrap(),
    )
    .unwrap();
    let diff_id = config["rootfs"]["diff_ids"][0]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    assert!(root
        .join("layers")
        .join(diff_id)
        .join("fs/bin/busybox")
        .is_file());
}

#[test]
fn default_root_follows_user_and_env() {
    let env = Env::new();
    let (tar, _) = env.rootfs_tar("rootfs");
    let via_env = env.path("via-env");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .env("STRATA_ROOT", &via_env)
        .args(["import", tar.to_str().unwrap(), "x"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        via_env.join("index.json").exists(),
        "STRATA_ROOT is the store"
    );
}

#[test]
fn eight_concurrent_imports_all_land() {
    let env = Env::new();
    let (tar, _) = env.rootfs_tar("rootfs");
    let children: Vec<_> = (0..8)
        .map(|i| {
            // Half share one layer, half have their own, so blob and layer races both happen.
            let file = if i % 2 == 0 {
                tar.clone()
            } else {
                let t = env.path(&format!("own{i}.tar"));
                let tree = env.path(&format!("own{i}"));
                std::fs::create_dir_all(&tree).unwrap();
                std::fs::write(tree.join("id"), format!("{i}")).unwrap();
                sh(&format!("tar -C {} -cf {} .", tree.display(), t.display()));
                t
            };
            env.cmd(&["import", file.to_str().unwrap(), &format!("img{i}:v{i}")])
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let names: Vec<String> = index(&env)["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(names.len(), 8, "{names:?}");
    for i in 0..8 {
        assert!(names.contains(&format!("docker.io/library/img{i}:v{i}")));
    }
    assert_store_consistent(&env.root());
}

#[test]
fn references_normalise_like_docker() {
    let env = Env::new();
    let (tar, _) = env.rootfs_tar("rootfs");
    env.ok(&["import", tar.to_str().unwrap(), "busybox"]);
    for name in [
        "busybox",
        "busybox:latest",
        "docker.io/library/busybox",
        "index.docker.io/library/busybox:latest",
    ] {
        let id = env.ok(&["inspect", "-f", "{{.Id}}", name]);
        assert!(id.starts_with("sha256:"), "{name}");
    }
    env.ok(&["tag", "busybox", "localhost:5000/team/app:v2"]);
    let out = env.ok(&["images"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("localhost:5000/team/app") && l.contains(" v2 ")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("busybox ") && l.contains(" latest ")),
        "{out}"
    );
    let digest = env.ok(&["inspect", "-f", "{{.Descriptor.digest}}", "busybox"]);
    env.ok(&[
        "inspect",
        &format!("localhost:5000/team/app@{}", digest.trim()),
    ]);
    for bad in ["Busybox", "a:b:c", "busybox:", "host:port/x", "x-"] {
        let err = env.fails(&["tag", "busybox", bad]);
        assert!(err.contains("invalid reference format"), "{bad}: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
    }
    let err = env.fails(&["inspect", "nothere"]);
    assert!(err.contains("no such image: nothere"), "{err}");
}

#[test]
fn images_lists_like_docker() {
    let env = Env::new();
    let (tar, _) = env.rootfs_tar("rootfs");
    let id = env
        .ok(&["import", tar.to_str().unwrap(), "busybox"])
        .trim()
        .to_string();
    env.ok(&["tag", "busybox", "me/app:1.0"]);
    let out = env.ok(&["images"]);
    let mut lines = out.lines();
    let header = lines.next().unwrap();
    assert_eq!(
        header
            .split("  ")
            .filter(|s| !s.trim().is_empty())
            .map(str::trim)
            .collect::<Vec<_>>(),
        ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]
    );
    let row = lines.find(|l| l.starts_with("me/app")).unwrap();
    // Columns line up under their headers.
    assert_eq!(row.find(&id[7..19]), header.find("IMAGE ID"), "{out}");
    assert!(
        row.contains("ago") && (row.ends_with("MB") || row.ends_with("kB")),
        "{row}"
    );
    let quiet = env.ok(&["images", "-q"]);
    assert_eq!(
        quiet.lines().collect::<Vec<_>>(),
        vec![&id[7..19], &id[7..19]]
    );
    assert_eq!(env.ok(&["images", "-q", "--no-trunc", "me/app"]).trim(), id);
    let digests = env.ok(&["images", "--digests"]);
    assert!(digests.lines().next().unwrap().contains("DIGEST"));
    assert!(digests.lines().nth(1).unwrap().contains("sha256:"));
    for line in env.ok(&["images", "--format", "json"]).lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["ID"], &id[7..19]);
        assert!(v["Repository"] == "busybox" || v["Repository"] == "me/app");
    }
    assert_eq!(
        env.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}", "busybox"])
            .trim(),
        "busybox:latest"
    );
}

#[test]
fn history_shows_layers_like_docker() {
    let env = Env::new();
    let (tar, _) = env.rootfs_tar("rootfs");
    let id = env
        .ok(&["import", "-m", "my rootfs", tar.to_str().unwrap(), "base"])
        .trim()
        .to_string();
    let out = env.ok(&["history", "base"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("IMAGE          CREATED")
            && lines[0].contains("CREATED BY")
            && lines[0].ends_with("COMMENT"),
        "{out}"
    );
    assert!(
        lines[1].starts_with(&id[7..19]) && lines[1].ends_with("my rootfs"),
        "{out}"
    );
    assert_eq!(lines.len(), 2);
    assert_eq!(env.ok(&["history", "-q", "base"]).trim(), &id[7..19]);
    assert!(env.ok(&["history", "--no-trunc", "base"]).contains(&id));
    let raw = env.ok(&["history", "-H=false", "base"]);
    assert!(
        raw.lines().nth(1).unwrap().contains("T") && raw.lines().nth(1).unwrap().contains("Z"),
        "RFC 3339 dates: {raw}"
    );
    let plain = env.ok(&["import", tar.to_str().unwrap(), "plain"]);
    assert!(plain.starts_with("sha256:"));
    assert!(env.ok(&["history", "plain"]).contains("Imported from -"));
}

#[test]
fn import_changes_set_the_config() {
    let env = Env::new();
    let (tar, _) = env.rootfs_tar("rootfs");
    env.ok(&[
        "import",
        "-c",
        "ENV PATH=/bin",
        "-c",
        "ENV GREETING=\"hello world\"",
        "-c",
        "WORKDIR /srv",
        "-c",
        "USER nobody",
        "-c",
        "LABEL org.example=yes",
        "-c",
        "EXPOSE 8080 53/udp",
        "-c",
        "VOLUME /data",
        "-c",
        "ENTRYPOINT [\"/bin/sh\", \"-c\"]",
        "-c",
        "CMD echo hi",
        "--platform",
        "linux/arm64",
        tar.to_str().unwrap(),
        "configured",
    ]);
    let v: Value = serde_json::from_str(&env.ok(&["inspect", "configured"])).unwrap();
    let c = &v[0]["Config"];
    assert_eq!(
        c["Env"],
        serde_json::json!(["PATH=/bin", "GREETING=hello world"])
    );
    assert_eq!(c["WorkingDir"], "/srv");
    assert_eq!(c["User"], "nobody");
    assert_eq!(c["Labels"]["org.example"], "yes");
    assert!(c["ExposedPorts"]["8080/tcp"].is_object() && c["ExposedPorts"]["53/udp"].is_object());
    assert!(c["Volumes"]["/data"].is_object());
    assert_eq!(c["Entrypoint"], serde_json::json!(["/bin/sh", "-c"]));
    assert_eq!(c["Cmd"], serde_json::json!(["/bin/sh", "-c", "echo hi"]));
    assert_eq!(v[0]["Architecture"], "arm64");
    let err = env.fails(&["import", "-c", "RUN rm -rf /", tar.to_str().unwrap()]);
    assert!(err.contains("RUN"), "{err}");
    assert!(env
        .fails(&["import", "--platform", "linux", tar.to_str().unwrap()])
        .contains("platform"));
}

/// `--change` and a Dockerfile share one front end: the same instruction gives the same
/// config, and the same bad value the same refusal.
#[test]
fn import_changes_follow_the_dockerfile_rules() {
    let env = Env::new();
    let (tar, _) = env.rootfs_tar("rootfs");
    let tar = tar.to_str().unwrap();
    let ports = |image: &str| {
        let v: Value = serde_json::from_str(&env.ok(&["inspect", image])).unwrap();
        v[0]["Config"]["ExposedPorts"].clone()
    };
    let built = |name: &str, dockerfile: &str| {
        let dir = env.path(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("Dockerfile"), dockerfile).unwrap();
        env.run(&["build", "-t", name, dir.to_str().unwrap()])
    };

    // Port 0 is a port to docker and BuildKit, so to both.
    env.ok(&[
        "import",
        "-c",
        "EXPOSE 0 8000-8001/UDP 9000/",
        tar,
        "imported",
    ]);
    let out = built("built", "FROM scratch\nEXPOSE 0 8000-8001/UDP 9000/\n");
    assert!(out.status.success(), "{out:?}");
    let want = serde_json::json!({"0/tcp": {}, "8000/udp": {}, "8001/udp": {}, "9000/tcp": {}});
    assert_eq!(ports("imported"), want);
    assert_eq!(ports("built"), want);

    let err = env.fails(&["import", "-c", "EXPOSE 70000", tar, "bad"]);
    assert!(err.contains("invalid containerPort: 70000"), "{err}");
    let out = built("badbuild", "FROM scratch\nEXPOSE 70000\n");
    assert!(!out.status.success());
    let build_err = String::from_utf8_lossy(&out.stderr);
    assert!(
        build_err.contains("invalid containerPort: 70000"),
        "{build_err}"
    );

    // Instructions outside docker's change set are refused with docker's words, before
    // anything is imported.
    // (Not a hex word: "bad" is a prefix an image ID may start with.)
    let err = env.fails(&["import", "-c", "ENV A=1", "-c", "COPY a /b", tar, "refused"]);
    assert!(
        err.contains("invalid --change \"COPY a /b\": COPY is not a valid change command"),
        "{err}"
    );
    assert!(env.fails(&["inspect", "refused"]).contains("refused"));
    assert_store_consistent(&env.root());
}

#[test]
fn import_honours_source_date_epoch() {
    let (a, b) = (Env::new(), Env::new());
    let (tar, _) = a.rootfs_tar("rootfs");
    let import = |env: &Env, epoch: Option<&str>| {
        let mut cmd = env.cmd(&["import", "-m", "same", tar.to_str().unwrap(), "imported"]);
        match epoch {
            Some(e) => cmd.env("SOURCE_DATE_EPOCH", e),
            None => cmd.env_remove("SOURCE_DATE_EPOCH"),
        };
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    // Two stores, two imports at different moments: one id.
    let id = import(&a, Some("1700000000"));
    std::thread::sleep(std::time::Duration::from_millis(10));
    assert_eq!(import(&b, Some("1700000000")), id);
    let config: Value = serde_json::from_slice(
        &std::fs::read(a.root().join("blobs/sha256").join(&id[7..])).unwrap(),
    )
    .unwrap();
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");
    assert_eq!(config["history"][0]["created"], "2023-11-14T22:13:20Z");
    // Without it, the import time is the creation time, so ids differ.
    assert_ne!(import(&a, None), import(&b, None));
    assert_store_consistent(&a.root());
}

#[test]
fn compression_formats_and_determinism() {
    let env = Env::new();
    let (tar, _) = env.rootfs_tar("rootfs");
    let mut diff_ids = Vec::new();
    let mut layer_digests = Vec::new();
    for (fmt, media, magic) in [
        (
            "gzip",
            "application/vnd.oci.image.layer.v1.tar+gzip",
            &[0x1f, 0x8b][..],
        ),
        (
            "zstd",
            "application/vnd.oci.image.layer.v1.tar+zstd",
            &[0x28, 0xb5, 0x2f, 0xfd][..],
        ),
        ("none", "application/vnd.oci.image.layer.v1.tar", &b""[..]),
    ] {
        for round in 0..2 {
            env.ok(&[
                "import",
                "--compression-format",
                fmt,
                tar.to_str().unwrap(),
                &format!("c:{fmt}{round}"),
            ]);
            let v: Value =
                serde_json::from_str(&env.ok(&["inspect", &format!("c:{fmt}{round}")])).unwrap();
            let layer = &v[0]["Manifest"]["Layers"][0];
            assert_eq!(layer["mediaType"], media);
            let blob = std::fs::read(
                env.root().join("blobs/sha256").join(
                    layer["digest"]
                        .as_str()
                        .unwrap()
                        .trim_start_matches("sha256:"),
                ),
            )
            .unwrap();
            assert!(blob.starts_with(magic));
            diff_ids.push(v[0]["RootFS"]["Layers"][0].clone());
            layer_digests.push((fmt, layer["digest"].clone()));
        }
    }
    assert!(
        diff_ids.windows(2).all(|w| w[0] == w[1]),
        "one tree, one diff_id: {diff_ids:?}"
    );
    for pair in layer_digests.chunks(2) {
        assert_eq!(
            pair[0].1, pair[1].1,
            "{} output is deterministic",
            pair[0].0
        );
    }
    // A compressed input is recognised and stored as requested.
    sh(&format!(
        "gzip -c {0} > {0}.gz && zstd -q -c {0} > {0}.zst",
        tar.display()
    ));
    for input in [
        format!("{}.gz", tar.display()),
        format!("{}.zst", tar.display()),
    ] {
        env.ok(&["import", &input, "fromcompressed"]);
        let v: Value = serde_json::from_str(&env.ok(&["inspect", "fromcompressed"])).unwrap();
        assert_eq!(v[0]["RootFS"]["Layers"][0], diff_ids[0]);
    }
    // and the same from STDIN
    let out = env
        .cmd(&["import", "-", "stdin:1"])
        .stdin(std::fs::File::open(&tar).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: Value = serde_json::from_str(&env.ok(&["inspect", "stdin:1"])).unwrap();
    assert_eq!(v[0]["RootFS"]["Layers"][0], diff_ids[0]);
}

#[test]
fn rmi_untags_then_deletes() {
    let env = Env::new();
    let (tar, _) = env.rootfs_tar("rootfs");
    let id = env
        .ok(&["import", tar.to_str().unwrap(), "busybox"])
        .trim()
        .to_string();
    env.ok(&["tag", "busybox", "me/bb:1"]);
    let err = env.fails(&["rmi", &id[7..19]]);
    assert!(err.contains("must be forced"), "{err}");
    assert_eq!(env.ok(&["rmi", "me/bb:1"]).trim(), "Untagged: me/bb:1");
    assert!(
        env.root().join("layers").read_dir().unwrap().count() == 1,
        "layer kept while busybox uses it"
    );
    let out = env.ok(&["rmi", "busybox"]);
    assert_eq!(out, format!("Untagged: busybox:latest\nDeleted: {id}\n"));
    assert_eq!(env.ok(&["images", "-q"]), "");
    assert_eq!(
        env.root().join("blobs/sha256").read_dir().unwrap().count(),
        0,
        "blobs deleted"
    );
    assert_eq!(
        env.root().join("layers").read_dir().unwrap().count(),
        0,
        "unpacked layer deleted"
    );
    let id = env
        .ok(&["import", tar.to_str().unwrap(), "a"])
        .trim()
        .to_string();
    env.ok(&["tag", "a", "b"]);
    let out = env.ok(&["rmi", "-f", &id[7..19]]);
    assert!(
        out.contains("Untagged: a:latest")
            && out.contains("Untagged: b:latest")
            && out.contains("Deleted:"),
        "{out}"
    );
    assert!(env.fails(&["rmi", "nothere"]).contains("no such image"));
}

#[test]
fn save_and_load_round_trip() {
    let env = Env::new();
    let (tar, tree) = env.rootfs_tar("rootfs");
    let id = env
        .ok(&[
            "import",
            "-c",
            "CMD [\"/bin/sh\"]",
            tar.to_str().unwrap(),
            "busybox",
        ])
        .trim()
        .to_string();
    env.ok(&["tag", "busybox", "other:2"]);
    let archive = env.path("saved.tar");
    env.ok(&[
        "save",
        "-o",
        archive.to_str().unwrap(),
        "busybox",
        "other:2",
    ]);
    let listing = sh(&format!("tar -tf {}", archive.display()));
    for f in ["oci-layout", "index.json", "manifest.json"] {
        assert!(listing.lines().any(|l| l == f), "{f} in {listing}");
    }
    let other = Env::new();
    let out = other.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert!(
        out.contains("Loaded image: busybox:latest") && out.contains("Loaded image: other:2"),
        "{out}"
    );
    assert_eq!(
        other.ok(&["inspect", "-f", "{{.Id}}", "other:2"]).trim(),
        id,
        "same config, same image ID"
    );
    let diff_id = other.ok(&["inspect", "-f", "{{json .RootFS.Layers}}", "busybox"]);
    let diff_id: Vec<String> = serde_json::from_str(&diff_id).unwrap();
    assert_same_files(
        &tree,
        &other
            .root()
            .join("layers")
            .join(diff_id[0].trim_start_matches("sha256:"))
            .join("fs"),
    );
    // the archive streams through STDIN too, and saving to STDOUT works
    let third = Env::new();
    let saved = env.cmd(&["save", "busybox"]).output().unwrap();
    assert!(saved.status.success());
    std::fs::write(third.path("stdout.tar"), &saved.stdout).unwrap();
    let out = third
        .cmd(&["load"])
        .stdin(std::fs::File::open(third.path("stdout.tar")).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Loaded image: busybox:latest"));
    assert_store_consistent(&third.root());
}

#[test]
fn legacy_docker_archive_loads() {
    // The pre-25 `docker save` form: <id>/layer.tar, <id>.json config, manifest.json.
    let env = Env::new();
    let (_, tree) = env.rootfs_tar("rootfs");
    let layer = env.path("layer.tar");
    sh(&format!(
        "tar -C {} -cf {} .",
        tree.display(),
        layer.display()
    ));
    let diff_id = sh(&format!("sha256sum {} | cut -d' ' -f1", layer.display()))
        .trim()
        .to_string();
    let dir = env.path("legacy");
    std::fs::create_dir_all(dir.join("abc123")).unwrap();
    std::fs::copy(&layer, dir.join("abc123/layer.tar")).unwrap();
    std::fs::create_dir_all(dir.join("dup")).unwrap();
    std::os::unix::fs::symlink("../abc123/layer.tar", dir.join("dup/layer.tar")).unwrap();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "created": "2024-01-02T03:04:05Z",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff_id}"), format!("sha256:{diff_id}")]},
        "history": [{"created_by": "ADD rootfs", "created": "2024-01-02T03:04:05Z"}, {"created_by": "again"}]
    });
    std::fs::write(dir.join("cfg.json"), serde_json::to_vec(&config).unwrap()).unwrap();
    let manifest = serde_json::json!([{"Config": "cfg.json", "RepoTags": ["legacy/app:old"], "Layers": ["abc123/layer.tar", "dup/layer.tar"]}]);
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("repositories"), r#"{"legacy/app":{"old":"x"}}"#).unwrap();
    let archive = env.path("legacy.tar");
    sh(&format!(
        "tar -C {} -cf {} .",
        dir.display(),
        archive.display()
    ));
    let out = env.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(out.trim(), "Loaded image: legacy/app:old");
    assert_same_files(&tree, &env.root().join("layers").join(&diff_id).join("fs"));
    let history = env.ok(&["history", "legacy/app:old"]);
    assert!(
        history.contains("ADD rootfs") && history.contains("again"),
        "{history}"
    );
}

#[test]
fn df_and_prune_reclaim_only_garbage() {
    let env = Env::new();
    let (tar, _) = env.rootfs_tar("rootfs");
    env.ok(&["import", tar.to_str().unwrap(), "keep"]);
    // garbage: a stray blob and a stray unpacked layer
    let junk = b"junk blob".repeat(1000);
    use sha2::Digest as _;
    let name = hex::encode(sha2::Sha256::digest(&junk));
    std::fs::write(env.root().join("blobs/sha256").join(&name), &junk).unwrap();
    std::fs::create_dir_all(env.root().join("layers").join("f".repeat(64)).join("fs")).unwrap();
    let df = env.ok(&["system", "df"]);
    let images = df.lines().find(|l| l.starts_with("Images")).unwrap();
    assert!(
        images.contains("9kB (0%)") || images.contains("9kB ("),
        "{df}"
    );
    let out = env.cmd(&["system", "prune", "-f"]).output().unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.contains("Deleted blobs: 1")
            && out.contains("Deleted layers: 1")
            && out.contains("Total reclaimed space: 9kB"),
        "{out}"
    );
    assert!(!env.root().join("blobs/sha256").join(&name).exists());
    assert!(env.ok(&["system", "df"]).contains("0B (0%)"));
    env.ok(&["inspect", "keep"]);
    assert_store_consistent(&env.root());
    // without -f it asks, and a "no" keeps everything
    let mut child = env
        .cmd(&["system", "prune", "-a"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"n\n").unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    env.ok(&["inspect", "keep"]);
    env.ok(&["system", "prune", "-a", "-f"]);
    assert_eq!(env.ok(&["images", "-q"]), "");
    assert_eq!(
        env.root().join("blobs/sha256").read_dir().unwrap().count(),
        0
    );
}

/// A name wins over an image ID prefix that spells it, as in docker: with image A tagged as
/// the first hex digit of image B's ID, that name is A.
#[test]
fn names_win_over_id_prefixes() {
    let env = Env::new();
    let (tar, _) = env.rootfs_tar("rootfs");
    let a = env.ok(&["import", tar.to_str().unwrap(), "first"]);
    let b = env.ok(&["import", "-m", "other", tar.to_str().unwrap(), "second"]);
    let b_hex = b.trim().trim_start_matches("sha256:");
    let prefix = &b_hex[..1];
    env.ok(&["tag", "first", prefix]);
    assert_eq!(env.ok(&["inspect", "-f", "{{.Id}}", prefix]), a);
    // A longer prefix that is no name still finds B by its ID.
    assert_eq!(env.ok(&["inspect", "-f", "{{.Id}}", &b_hex[..12]]), b);
}
