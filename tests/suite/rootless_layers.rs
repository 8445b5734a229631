//! A user without privileges unpacks layers into its own store, and the kernel stacks them as
//! they are: overlayfs in a user namespace, with `userxattr`, shows the right merged view.

use crate::common::{self, end_tar, raw_entry, sh, Env};
use tar::EntryType::{Directory, Regular};

const NOBODY: &str = "65534";

fn as_nobody(env: &Env, script: &str) -> std::process::Output {
    std::process::Command::new("setpriv")
        .args([
            "--reuid",
            NOBODY,
            "--regid",
            NOBODY,
            "--clear-groups",
            "--",
            "sh",
            "-c",
            script,
        ])
        .env("HOME", env.tmp.path())
        .output()
        .unwrap()
}

#[test]
fn rootless_layers_stack_under_kernel_overlayfs() {
    if !common::need_root("rootless_layers_stack_under_kernel_overlayfs") {
        return;
    }
    let env = Env::new();
    let mut bottom = Vec::new();
    raw_entry(&mut bottom, "d/", Directory, b"", None);
    raw_entry(&mut bottom, "d/old", Regular, b"old", None);
    raw_entry(&mut bottom, "gone", Regular, b"bye", None);
    raw_entry(&mut bottom, "kept", Regular, b"kept", None);
    let mut top = Vec::new();
    raw_entry(&mut top, "d/", Directory, b"", None);
    raw_entry(&mut top, "d/.wh..wh..opq", Regular, b"", None);
    raw_entry(&mut top, "d/new", Regular, b"new", None);
    raw_entry(&mut top, ".wh.gone", Regular, b"", None);
    std::fs::write(env.path("bottom.tar"), end_tar(bottom)).unwrap();
    std::fs::write(env.path("top.tar"), end_tar(top)).unwrap();
    sh(&format!(
        "chmod 0755 {0} && chown -R {NOBODY}:{NOBODY} {0}",
        env.tmp.path().display()
    ));

    let strata = env!("CARGO_BIN_EXE_strata");
    let root = env.root();
    let out = as_nobody(&env, &format!(
        "{strata} --root {r} import {t}/bottom.tar b && {strata} --root {r} import {t}/top.tar t && \
         {strata} --root {r} inspect -f '{{{{json .RootFS.Layers}}}}' b && {strata} --root {r} inspect -f '{{{{json .RootFS.Layers}}}}' t",
        r = root.display(), t = env.tmp.path().display()
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('['))
        .map(|l| {
            serde_json::from_str::<Vec<String>>(l).unwrap()[0]
                .trim_start_matches("sha256:")
                .to_string()
        })
        .collect();
    let layer = |id: &str| root.join("layers").join(id).join("fs");
    // The store's form, as written without privileges: user.overlay.opaque and 0:0 devices.
    let opaque = std::process::Command::new("getfattr")
        .args(["-n", "user.overlay.opaque", "--only-values"])
        .arg(layer(&ids[1]).join("d"))
        .output();
    if let Ok(o) = opaque {
        if o.status.success() {
            assert_eq!(o.stdout, b"y");
        }
    }
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1], "two different layers");
    // A read-only stack of the two layers is all that is needed to see how the kernel reads them.
    let mnt = env.path("mnt");
    std::fs::create_dir(&mnt).unwrap();
    sh(&format!("chown {NOBODY}:{NOBODY} {}", mnt.display()));
    let out = as_nobody(&env, &format!(
        "unshare -Urm sh -c 'mount -t overlay overlay -o userxattr,lowerdir={}:{} {m} && ls {m} {m}/d && cat {m}/d/new {m}/kept'",
        layer(&ids[1]).display(), layer(&ids[0]).display(), m = mnt.display()
    ));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "mount failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = format!("{m}:\nd\nkept\n\n{m}/d:\nnew\nnewkept", m = mnt.display());
    assert_eq!(
        stdout.trim(),
        expected,
        "merged view: gone is whited out, d/old hidden by the opaque dir"
    );
    sh(&format!("chown -R 0:0 {}", env.tmp.path().display()));
}
