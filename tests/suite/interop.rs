//! End-to-end interop with the real peer tools: images `strata` writes must be readable by
//! skopeo and umoci, and what skopeo writes (OCI layouts, docker-archives) must load into
//! `strata` with every file intact. Each test is skipped (with a note) when a tool it needs
//! is not installed.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::common::{
    self, assert_same_files, run_tool, tool_ok, tools, umoci_args, umoci_unpack, Env,
};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

const BUSYBOX: &str = "docker.io/library/busybox:latest";
const MEDIA_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const MEDIA_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

fn skopeo(args: &[&str]) -> String {
    tool_ok("skopeo", args)
}

fn skopeo_json(args: &[&str]) -> Value {
    let out = skopeo(args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("skopeo {args:?}: not JSON ({e}): {out}"))
}

/// `oci:<layout>:<ref>` for skopeo.
fn oci(layout: &Path, reference: &str) -> String {
    format!("oci:{}:{reference}", layout.display())
}

/// The tree from `Env::rootfs_tar` came through intact: same file bytes, the bin/sh
/// symlink, the readme hardlink pair, and the odd modes.
fn assert_rootfs_intact(original: &Path, unpacked: &Path) {
    assert_same_files(original, unpacked);
    let link = std::fs::read_link(unpacked.join("bin/sh"))
        .unwrap_or_else(|e| panic!("bin/sh in {}: {e}", unpacked.display()));
    assert_eq!(link, Path::new("busybox"), "bin/sh symlink target");
    let a = std::fs::metadata(unpacked.join("usr/share/doc/readme")).unwrap();
    let b = std::fs::metadata(unpacked.join("usr/share/doc/readme.link")).unwrap();
    assert_eq!(
        a.ino(),
        b.ino(),
        "readme and readme.link should be one hardlinked inode in {}",
        unpacked.display()
    );
    assert!(
        a.nlink() >= 2,
        "readme should have 2 links, has {}",
        a.nlink()
    );
    for (file, mode) in [("etc/group", 0o600), ("bin/busybox", 0o755)] {
        let got = std::fs::metadata(unpacked.join(file))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777;
        assert_eq!(got, mode, "{file} mode in {}: {got:o}", unpacked.display());
    }
}

/// The manifest's layer media types, as skopeo reads them.
fn layer_media_types(image: &str) -> Vec<String> {
    let manifest = skopeo_json(&["inspect", "--raw", image]);
    manifest["layers"]
        .as_array()
        .unwrap_or_else(|| panic!("{image}: manifest without layers: {manifest}"))
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `strata import <rootfs tar> busybox` into `env`; returns the original tree.
fn import_busybox(env: &Env, extra: &[&str]) -> PathBuf {
    let (tar, tree) = env.rootfs_tar("rootfs");
    let tar = tar.display().to_string();
    let mut args = vec!["import"];
    args.extend_from_slice(extra);
    args.extend([tar.as_str(), "busybox"]);
    env.ok(&args);
    tree
}

#[test]
fn skopeo_and_umoci_read_an_imported_image() {
    if !tools(
        "skopeo_and_umoci_read_an_imported_image",
        &["skopeo", "umoci"],
    ) {
        return;
    }
    let env = Env::new();
    let tree = import_busybox(&env, &[]);
    let root = env.root();

    let info = skopeo_json(&["inspect", &oci(&root, BUSYBOX)]);
    assert_eq!(info["Os"], "linux", "skopeo inspect: {info}");
    let layers = info["Layers"]
        .as_array()
        .unwrap_or_else(|| panic!("no Layers: {info}"));
    assert_eq!(layers.len(), 1, "one layer expected: {info}");
    let arch = env.ok(&["inspect", "-f", "{{.Architecture}}", "busybox"]);
    assert_eq!(
        info["Architecture"],
        arch.trim(),
        "skopeo and strata disagree on the architecture"
    );
    // The layer skopeo sees is the one strata's manifest records.
    let manifest = env.ok(&["inspect", "-f", "{{json .Manifest}}", "busybox"]);
    assert!(
        manifest.contains(layers[0].as_str().unwrap()),
        "layer {} not in strata's manifest {manifest}",
        layers[0]
    );

    let rootfs = umoci_unpack(&root, BUSYBOX, &env.path("unpacked"));
    assert_rootfs_intact(&tree, &rootfs);
}

#[test]
fn skopeo_oci_layout_loads_byte_identical() {
    if !tools(
        "skopeo_oci_layout_loads_byte_identical",
        &["skopeo", "umoci", "tar", "gzip"],
    ) {
        return;
    }
    let a = Env::new();
    let tree = import_busybox(&a, &[]);
    let layout = a.path("layout");
    skopeo(&[
        "copy",
        &oci(&a.root(), BUSYBOX),
        &oci(&layout, "busybox:latest"),
    ]);
    let layout_tar = a.path("layout.tar");
    common::sh(&format!(
        "tar -C {} -cf {} .",
        layout.display(),
        layout_tar.display()
    ));
    common::sh(&format!("gzip -c {0} > {0}.gz", layout_tar.display()));
    let layout_gz = a.path("layout.tar.gz");

    for (what, file) in [("plain", &layout_tar), ("gzip", &layout_gz)] {
        let b = Env::new();
        let out = b.ok(&["load", "-i", &file.display().to_string()]);
        assert!(
            out.contains("Loaded image: busybox:latest"),
            "{what} layout: unexpected load output {out:?}"
        );
        let listed = b.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
        assert_eq!(
            listed.trim(),
            "busybox:latest",
            "{what} layout: images after load"
        );
        assert_eq!(
            b.ok(&["inspect", "-f", "{{.Id}}", "busybox"]),
            a.ok(&["inspect", "-f", "{{.Id}}", "busybox"]),
            "{what} layout: the loaded config should be the original one"
        );
        let rootfs = umoci_unpack(&b.root(), BUSYBOX, &b.path("unpacked"));
        assert_rootfs_intact(&tree, &rootfs);
    }
}

#[test]
fn skopeo_docker_archive_loads_byte_identical() {
    if !tools(
        "skopeo_docker_archive_loads_byte_identical",
        &["skopeo", "umoci"],
    ) {
        return;
    }
    let a = Env::new();
    let tree = import_busybox(&a, &[]);
    let archive = a.path("docker-archive.tar");
    skopeo(&[
        "copy",
        &oci(&a.root(), BUSYBOX),
        &format!("docker-archive:{}:example.com/app:v1", archive.display()),
    ]);

    let b = Env::new();
    let out = b.ok(&["load", "-i", &archive.display().to_string()]);
    assert!(
        out.contains("Loaded image: example.com/app:v1"),
        "unexpected load output {out:?}"
    );
    let listed = b.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(listed.trim(), "example.com/app:v1", "images after load");
    let table = b.ok(&["images"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("example.com/app") && l.contains(" v1 ")),
        "images table: {table}"
    );
    assert_eq!(
        b.ok(&["inspect", "-f", "{{.Id}}", "example.com/app:v1"]),
        a.ok(&["inspect", "-f", "{{.Id}}", "busybox"]),
        "the loaded config should be the original one"
    );
    // skopeo reads what load wrote to store B as well.
    let info = skopeo_json(&["inspect", &oci(&b.root(), "example.com/app:v1")]);
    assert_eq!(info["Os"], "linux", "{info}");

    let rootfs = umoci_unpack(&b.root(), "example.com/app:v1", &b.path("unpacked"));
    assert_rootfs_intact(&tree, &rootfs);
}

#[test]
fn strata_save_is_read_by_skopeo() {
    if !tools("strata_save_is_read_by_skopeo", &["skopeo", "umoci"]) {
        return;
    }
    let env = Env::new();
    let tree = import_busybox(&env, &[]);
    let saved = env.path("s.tar");
    env.ok(&["save", "-o", &saved.display().to_string(), "busybox"]);

    for transport in ["docker-archive", "oci-archive"] {
        let out = env.path(&format!("out-{transport}"));
        skopeo(&[
            "copy",
            &format!("{transport}:{}", saved.display()),
            &oci(&out, "x"),
        ]);
        let media = layer_media_types(&oci(&out, "x"));
        assert_eq!(
            media.len(),
            1,
            "{transport}: one layer expected, got {media:?}"
        );
        let rootfs = umoci_unpack(&out, "x", &env.path(&format!("unpacked-{transport}")));
        assert_rootfs_intact(&tree, &rootfs);
    }

    // Two images in one archive: skopeo picks each by its tag (ref.name) in the OCI view and
    // by its name in the docker-archive view.
    let other_tree = env.path("other-tree");
    std::fs::create_dir_all(other_tree.join("app")).unwrap();
    std::fs::write(other_tree.join("app/hello"), "another image\n").unwrap();
    let other_tar = env.path("other.tar");
    common::sh(&format!(
        "tar -C {} -cf {} .",
        other_tree.display(),
        other_tar.display()
    ));
    env.ok(&[
        "import",
        &other_tar.display().to_string(),
        "example.com/other:v2",
    ]);
    let two = env.path("two.tar");
    env.ok(&[
        "save",
        "-o",
        &two.display().to_string(),
        "busybox",
        "example.com/other:v2",
    ]);

    let id = |name: &str| {
        env.ok(&["inspect", "-f", "{{.Id}}", name])
            .trim()
            .trim_start_matches("sha256:")
            .to_string()
    };
    let (busybox_id, other_id) = (id("busybox"), id("example.com/other:v2"));
    assert_ne!(busybox_id, other_id);
    let config_of =
        |image: String| sha256_hex(skopeo(&["inspect", "--config", "--raw", &image]).as_bytes());
    assert_eq!(
        config_of(format!("oci-archive:{}:v2", two.display())),
        other_id,
        "oci-archive:…:v2"
    );
    assert_eq!(
        config_of(format!("oci-archive:{}:latest", two.display())),
        busybox_id,
        "oci-archive:…:latest"
    );
    assert_eq!(
        config_of(format!(
            "docker-archive:{}:example.com/other:v2",
            two.display()
        )),
        other_id
    );
    assert_eq!(
        config_of(format!("docker-archive:{}:busybox:latest", two.display())),
        busybox_id
    );
    let missing = run_tool(
        "skopeo",
        &["inspect", &format!("oci-archive:{}:nosuch", two.display())],
    );
    assert!(
        !missing.status.success(),
        "skopeo found a tag that was never saved"
    );

    let out = env.path("out-two");
    skopeo(&[
        "copy",
        &format!("oci-archive:{}:v2", two.display()),
        &oci(&out, "x"),
    ]);
    let rootfs = umoci_unpack(&out, "x", &env.path("unpacked-two"));
    assert_same_files(&other_tree, &rootfs);
}

#[test]
fn wasm_platform_survives_save_load() {
    if !tools("wasm_platform_survives_save_load", &["skopeo"]) {
        return;
    }
    let a = Env::new();
    let tree = a.path("wasm-tree");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("app.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let tar = a.path("wasm.tar");
    common::sh(&format!(
        "tar -C {} -cf {} .",
        tree.display(),
        tar.display()
    ));
    let name = "example.com/wasm:v1";
    a.ok(&[
        "import",
        "--platform",
        "wasi/wasm",
        &tar.display().to_string(),
        name,
    ]);
    let platform = "{{.Os}}/{{.Architecture}}";
    assert_eq!(a.ok(&["inspect", "-f", platform, name]).trim(), "wasi/wasm");

    let check_layout = |root: &Path, what: &str| {
        let config = skopeo_json(&["inspect", "--config", &oci(root, name)]);
        assert_eq!(config["os"], "wasi", "{what}: config {config}");
        assert_eq!(config["architecture"], "wasm", "{what}: config {config}");
        let info = skopeo_json(&["inspect", &oci(root, name)]);
        assert_eq!(
            (&info["Os"], &info["Architecture"]),
            (&Value::from("wasi"), &Value::from("wasm")),
            "{what}: {info}"
        );
    };
    check_layout(&a.root(), "imported");

    let saved = a.path("wasm-save.tar");
    a.ok(&["save", "-o", &saved.display().to_string(), name]);
    let b = Env::new();
    let out = b.ok(&["load", "-i", &saved.display().to_string()]);
    assert!(
        out.contains(&format!("Loaded image: {name}")),
        "unexpected load output {out:?}"
    );
    assert_eq!(
        b.ok(&["inspect", "-f", platform, name]).trim(),
        "wasi/wasm",
        "platform after save/load"
    );
    check_layout(&b.root(), "loaded");
}

#[test]
fn zstd_and_uncompressed_layers_interop() {
    if !tools("zstd_and_uncompressed_layers_interop", &["skopeo", "umoci"]) {
        return;
    }
    let env = Env::new();
    let (tar, tree) = env.rootfs_tar("rootfs");
    let tar = tar.display().to_string();
    let (zstd, none) = ("example.com/layers:zstd", "example.com/layers:none");
    env.ok(&["import", "--compression-format", "zstd", &tar, zstd]);
    env.ok(&["import", "--compression-format", "none", &tar, none]);
    let root = env.root();

    assert_eq!(layer_media_types(&oci(&root, zstd)), [MEDIA_LAYER_ZSTD]);
    assert_eq!(layer_media_types(&oci(&root, none)), [MEDIA_LAYER_TAR]);
    for name in [zstd, none] {
        let info = skopeo_json(&["inspect", &oci(&root, name)]);
        assert_eq!(
            info["Layers"].as_array().map(Vec::len),
            Some(1),
            "{name}: {info}"
        );
    }

    // Uncompressed: umoci reads it.
    let rootfs = umoci_unpack(&root, none, &env.path("unpacked-none"));
    assert_rootfs_intact(&tree, &rootfs);

    // zstd: umoci 0.4 refuses the media type; then at least skopeo must copy it unchanged.
    let image = format!("{}:{zstd}", root.display());
    let dest = env.path("unpacked-zstd").display().to_string();
    let attempt = run_tool("umoci", &umoci_args(&image, &dest));
    if attempt.status.success() {
        assert_rootfs_intact(&tree, &env.path("unpacked-zstd/rootfs"));
    } else {
        let err = String::from_utf8_lossy(&attempt.stderr);
        assert!(
            err.contains("zstd"),
            "umoci failed on the zstd image for another reason than zstd: {err}"
        );
        eprintln!("note: this umoci cannot unpack zstd layers; checking skopeo copy only");
    }
    let copy = env.path("zstd-copy");
    skopeo(&["copy", &oci(&root, zstd), &oci(&copy, "z")]);
    assert_eq!(
        skopeo_json(&["inspect", "--raw", &oci(&copy, "z")])["layers"],
        skopeo_json(&["inspect", "--raw", &oci(&root, zstd)])["layers"],
        "skopeo oci→oci copy should keep the zstd layer as it is"
    );

    // save (layers become uncompressed) and load into a fresh store.
    let saved = env.path("zstd-save.tar");
    env.ok(&["save", "-o", &saved.display().to_string(), zstd]);
    let b = Env::new();
    let out = b.ok(&["load", "-i", &saved.display().to_string()]);
    assert!(
        out.contains(&format!("Loaded image: {zstd}")),
        "unexpected load output {out:?}"
    );
    assert_eq!(
        layer_media_types(&oci(&b.root(), zstd)),
        [MEDIA_LAYER_TAR],
        "layers after save/load"
    );
    assert_eq!(
        b.ok(&["inspect", "-f", "{{.Id}}", zstd]),
        env.ok(&["inspect", "-f", "{{.Id}}", zstd]),
        "save/load should keep the config"
    );
    let rootfs = umoci_unpack(&b.root(), zstd, &b.path("unpacked"));
    assert_rootfs_intact(&tree, &rootfs);
}
