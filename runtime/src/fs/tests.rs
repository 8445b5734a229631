//! The overlay against kernel overlayfs on the same layers, operation by operation, plus
//! whiteouts and opaque directories across three layers, and hostile layers.

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use tar::EntryType::{Directory, Regular, Symlink};

use super::*;
use crate::layer::tests::raw_entry;
use crate::layer::{apply_layer, write_layer, ApplyOptions, WriteOptions};

fn open(p: &Path) -> Dir {
    Dir::open_ambient_dir(p, ambient_authority()).unwrap()
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// Three layers, bottom to top, in the store's unpacked form; returns them topmost first.
fn three_layers(base: &Path) -> Vec<PathBuf> {
    let bottom: &[(&str, tar::EntryType, &[u8], Option<&str>)] = &[
        ("etc/", Directory, b"", None),
        ("etc/passwd", Regular, b"root:x:0:0::/root:/bin/sh\n", None),
        ("etc/hosts", Regular, b"127.0.0.1 localhost\n", None),
        ("data/", Directory, b"", None),
        ("data/a", Regular, b"a", None),
        ("data/b", Regular, b"b", None),
        ("data/sub/", Directory, b"", None),
        ("data/sub/x", Regular, b"x", None),
        ("dir1/", Directory, b"", None),
        ("dir1/f", Regular, b"f", None),
        ("lib/", Directory, b"", None),
        ("lib/libc.so", Regular, b"ELF", None),
        ("link", Symlink, b"", Some("/etc/passwd")),
        ("keep/", Directory, b"", None),
        ("keep/file", Regular, b"kept", None),
        ("opq/", Directory, b"", None),
        ("opq/old1", Regular, b"old", None),
        ("gone-later", Regular, b"", None),
    ];
    let middle: &[(&str, tar::EntryType, &[u8], Option<&str>)] = &[
        ("data/", Directory, b"", None),
        ("data/.wh.b", Regular, b"", None),
        ("data/c", Regular, b"c", None),
        ("opq/", Directory, b"", None),
        ("opq/.wh..wh..opq", Regular, b"", None),
        ("opq/new2", Regular, b"new", None),
        ("etc/", Directory, b"", None),
        ("etc/hosts", Regular, b"10.0.0.1 middle\n", None),
        ("dir2/", Directory, b"", None),
        ("dir2/g", Regular, b"g", None),
        (".wh.gone-later", Regular, b"", None),
    ];
    let top: &[(&str, tar::EntryType, &[u8], Option<&str>)] = &[
        ("dir1/", Directory, b"", None),
        ("dir1/h", Regular, b"h", None),
        ("data/", Directory, b"", None),
        ("data/sub/", Directory, b"", None),
        ("data/sub/.wh.x", Regular, b"", None),
        ("newtop", Regular, b"top", None),
    ];
    let mut out = Vec::new();
    for (i, entries) in [top, middle, bottom].iter().enumerate() {
        let mut tar = Vec::new();
        for (name, kind, data, link) in entries.iter() {
            raw_entry(&mut tar, name, *kind, data, *link);
        }
        tar.extend(std::iter::repeat_n(0u8, 1024));
        let dir = base.join(format!("l{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        apply_layer(&open(&dir), &tar[..], &ApplyOptions::default()).unwrap();
        out.push(dir);
    }
    out
}

fn overlay(lowers: &[PathBuf], upper: &Path) -> Overlay<Dir> {
    std::fs::create_dir_all(upper).unwrap();
    Overlay::new(lowers.iter().map(|l| open(l)).collect(), open(upper))
}

fn read(o: &Overlay<Dir>, p: &str) -> Vec<u8> {
    let mut v = Vec::new();
    o.open(
        os(p),
        &OpenOptions {
            read: true,
            ..Default::default()
        },
    )
    .unwrap()
    .read_to_end(&mut v)
    .unwrap();
    v
}

fn names(o: &Overlay<Dir>, p: &str) -> Vec<String> {
    o.read_dir(os(p))
        .unwrap()
        .into_iter()
        .map(|e| e.name.to_string_lossy().into_owned())
        .collect()
}

#[test]
fn lookup_honours_whiteouts_and_opaque_dirs_across_three_layers() {
    let tmp = tempfile::tempdir().unwrap();
    let o = overlay(&three_layers(tmp.path()), &tmp.path().join("upper"));
    assert_eq!(
        names(&o, "/"),
        ["data", "dir1", "dir2", "etc", "keep", "lib", "link", "newtop", "opq"]
    );
    assert_eq!(
        names(&o, "/data"),
        ["a", "c", "sub"],
        "b is whited out in the middle layer"
    );
    assert!(
        names(&o, "/data/sub").is_empty(),
        "x is whited out at the top"
    );
    assert_eq!(
        names(&o, "/opq"),
        ["new2"],
        "the opaque middle dir hides old1"
    );
    assert_eq!(names(&o, "/dir1"), ["f", "h"], "dir1 merges top and bottom");
    assert_eq!(read(&o, "/etc/hosts"), b"10.0.0.1 middle\n");
    assert_eq!(
        read(&o, "/link"),
        b"root:x:0:0::/root:/bin/sh\n",
        "absolute link resolves in the union"
    );
    assert_eq!(o.read_link(os("/link")).unwrap(), "/etc/passwd");
    let err = o.stat(os("/data/b"), false).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(2));
    assert_eq!(
        o.stat(os("/opq/old1"), false).unwrap_err().raw_os_error(),
        Some(2)
    );
    assert_eq!(
        o.stat(os("/gone-later"), false).unwrap_err().raw_os_error(),
        Some(2)
    );
    assert_eq!(
        o.stat(os("/etc/passwd/x"), false)
            .unwrap_err()
            .raw_os_error(),
        Some(20),
        "ENOTDIR"
    );
    // Reading copies nothing.
    assert_eq!(
        std::fs::read_dir(tmp.path().join("upper")).unwrap().count(),
        0
    );
}

#[test]
fn writes_copy_up_only_what_they_touch() {
    let tmp = tempfile::tempdir().unwrap();
    let layers = three_layers(tmp.path());
    let upper = tmp.path().join("upper");
    let o = overlay(&layers, &upper);
    let mut f = o
        .open(
            os("/data/sub/../a"),
            &OpenOptions {
                write: true,
                append: true,
                ..Default::default()
            },
        )
        .unwrap();
    f.write_all(b"+more").unwrap();
    drop(f);
    assert_eq!(read(&o, "/data/a"), b"a+more");
    assert_eq!(std::fs::read(upper.join("data/a")).unwrap(), b"a+more");
    assert_eq!(
        std::fs::read(layers[2].join("data/a")).unwrap(),
        b"a",
        "lower layers never change"
    );
    let listing: Vec<_> = walk(&upper).into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        listing,
        ["data", "data/a"],
        "only the file and its parent were copied up"
    );
    // O_TRUNC copies no data
    let mut f = o
        .open(
            os("/lib/libc.so"),
            &OpenOptions {
                write: true,
                truncate: true,
                ..Default::default()
            },
        )
        .unwrap();
    f.write_all(b"new").unwrap();
    assert_eq!(read(&o, "/lib/libc.so"), b"new");
    // chmod copies up with metadata
    o.set_permissions(os("/keep/file"), 0o600).unwrap();
    assert_eq!(
        std::fs::metadata(upper.join("keep/file"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert_eq!(read(&o, "/keep/file"), b"kept");
}

/// `cp` into a running Wasm container writes through a second overlay over the guest's
/// directories: the guest's instance, which has cached `/etc` as lower-only, sees it.
#[test]
fn a_second_instance_on_the_same_upper_is_seen() {
    let tmp = tempfile::tempdir().unwrap();
    let layers = three_layers(tmp.path());
    let upper = tmp.path().join("upper");
    let guest = overlay(&layers, &upper);
    assert!(guest.stat(os("/etc/new"), false).is_err());
    let cp = overlay(&layers, &upper);
    let mut f = cp
        .open(
            os("/etc/new"),
            &OpenOptions {
                write: true,
                create: true,
                mode: 0o644,
                ..Default::default()
            },
        )
        .unwrap();
    f.write_all(b"copied in").unwrap();
    assert_eq!(read(&guest, "/etc/new"), b"copied in");
    assert!(names(&guest, "/etc").contains(&"new".to_string()));
}

#[test]
fn removal_leaves_whiteouts_only_where_lowers_have_the_name() {
    let tmp = tempfile::tempdir().unwrap();
    let layers = three_layers(tmp.path());
    let upper = tmp.path().join("upper");
    let o = overlay(&layers, &upper);
    o.remove_file(os("/etc/hosts")).unwrap();
    assert!(is_whiteout(
        &rustix::fs::lstat(&upper.join("etc/hosts")).unwrap()
    ));
    o.open(
        os("/fresh"),
        &OpenOptions {
            write: true,
            create: true,
            mode: 0o644,
            ..Default::default()
        },
    )
    .unwrap();
    o.remove_file(os("/fresh")).unwrap();
    assert!(
        !upper.join("fresh").exists() && std::fs::symlink_metadata(upper.join("fresh")).is_err(),
        "no whiteout for an upper-only file"
    );
    assert_eq!(
        o.remove_dir(os("/dir1")).unwrap_err().raw_os_error(),
        Some(39),
        "ENOTEMPTY"
    );
    o.remove_file(os("/dir1/f")).unwrap();
    o.remove_file(os("/dir1/h")).unwrap();
    o.remove_dir(os("/dir1")).unwrap();
    assert!(is_whiteout(
        &rustix::fs::lstat(&upper.join("dir1")).unwrap()
    ));
    // mkdir where a whiteout is: the new directory is opaque, so f and h stay hidden
    o.create_dir(os("/dir1"), 0o755).unwrap();
    assert!(names(&o, "/dir1").is_empty());
    let d = open(&upper.join("dir1"));
    assert!(crate::fs::overlay::is_opaque(&d).unwrap());
}

#[test]
fn rename_files_and_lower_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let layers = three_layers(tmp.path());
    let upper = tmp.path().join("upper");
    let o = overlay(&layers, &upper);
    o.rename(os("/data/c"), os("/data/c2")).unwrap();
    assert_eq!(names(&o, "/data"), ["a", "c2", "sub"]);
    assert_eq!(read(&o, "/data/c2"), b"c");
    o.rename(os("/dir1"), os("/moved")).unwrap();
    assert_eq!(names(&o, "/moved"), ["f", "h"]);
    assert_eq!(read(&o, "/moved/f"), b"f");
    assert_eq!(
        o.stat(os("/dir1"), false).unwrap_err().raw_os_error(),
        Some(2)
    );
    assert_eq!(
        o.rename(os("/moved"), os("/moved/inside"))
            .unwrap_err()
            .raw_os_error(),
        Some(22)
    );
    // an upper-only directory is renamed in place
    o.create_dir(os("/mine"), 0o755).unwrap();
    o.symlink(os("../etc/passwd"), os("/mine/pw")).unwrap();
    o.rename(os("/mine"), os("/yours")).unwrap();
    assert_eq!(read(&o, "/yours/pw"), b"root:x:0:0::/root:/bin/sh\n");
    o.hard_link(os("/etc/passwd"), os("/pw2")).unwrap();
    assert_eq!(
        std::fs::metadata(upper.join("pw2")).unwrap().ino(),
        std::fs::metadata(upper.join("etc/passwd")).unwrap().ino()
    );
    let times = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: 1000,
            tv_nsec: 0,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: 2000,
            tv_nsec: 0,
        },
    };
    o.set_times(os("/newtop"), &times, true).unwrap();
    assert_eq!(o.stat(os("/newtop"), true).unwrap().st_mtime, 2000);
}

/// Symlinks and `..` in hostile layers resolve inside the union, whatever they say.
#[test]
fn hostile_layers_cannot_reach_the_host() {
    let tmp = tempfile::tempdir().unwrap();
    let canary = tmp.path().join("canary");
    std::fs::create_dir(&canary).unwrap();
    std::fs::write(canary.join("file"), "canary").unwrap();
    let layer = tmp.path().join("store/layers/evil");
    std::fs::create_dir_all(&layer).unwrap();
    let mut tar = Vec::new();
    raw_entry(
        &mut tar,
        "up",
        Symlink,
        b"",
        Some("../../../../../../../.."),
    );
    raw_entry(
        &mut tar,
        "abs",
        Symlink,
        b"",
        Some(canary.to_str().unwrap()),
    );
    raw_entry(&mut tar, "chain1", Symlink, b"", Some("chain2"));
    raw_entry(&mut tar, "chain2", Symlink, b"", Some("/up/canary"));
    raw_entry(&mut tar, "loop", Symlink, b"", Some("loop"));
    tar.extend(std::iter::repeat_n(0u8, 1024));
    apply_layer(&open(&layer), &tar[..], &ApplyOptions::default()).unwrap();
    let upper = tmp.path().join("store/upper");
    let o = overlay(&[layer.clone()], &upper);
    let canary_rel = canary.to_str().unwrap();
    for path in [
        "/up/canary/file".to_string(),
        "../../../canary/file".to_string(),
        format!("/abs/file"),
        "/chain1/file".to_string(),
        format!("/up{canary_rel}/file"),
    ] {
        assert!(
            o.stat(os(&path), true).is_err(),
            "{path} must not find the host canary"
        );
        // Creating through the link lands in the union (or fails), never on the host.
        let created = o.open(
            os(&path),
            &OpenOptions {
                write: true,
                create: true,
                truncate: true,
                mode: 0o644,
                ..Default::default()
            },
        );
        if let Ok(mut f) = created {
            f.write_all(b"pwned").unwrap();
        }
        let _ = o.remove_file(os(&path));
        let _ = o.set_permissions(os(&path), 0o777);
        let _ = o.rename(os(&path), os("/stolen"));
    }
    assert_eq!(
        o.stat(os("/loop"), true).unwrap_err().raw_os_error(),
        Some(40),
        "ELOOP"
    );
    let listing: Vec<OsString> = std::fs::read_dir(&canary)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(listing, [OsString::from("file")]);
    assert_eq!(std::fs::read(canary.join("file")).unwrap(), b"canary");
    assert_eq!(
        std::fs::metadata(canary.join("file"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o644
    );
}

#[test]
fn diff_reports_added_changed_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let layers = three_layers(tmp.path());
    let upper = tmp.path().join("upper");
    let o = overlay(&layers, &upper);
    o.open(
        os("/etc/hosts"),
        &OpenOptions {
            write: true,
            truncate: true,
            ..Default::default()
        },
    )
    .unwrap();
    o.remove_file(os("/data/a")).unwrap();
    o.create_dir(os("/new"), 0o755).unwrap();
    o.open(
        os("/new/file"),
        &OpenOptions {
            write: true,
            create: true,
            mode: 0o644,
            ..Default::default()
        },
    )
    .unwrap();
    let lowers: Vec<Dir> = layers.iter().map(|l| open(l)).collect();
    let got: Vec<String> = changes(&lowers, &open(&upper))
        .unwrap()
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert_eq!(
        got,
        [
            "C /data",
            "D /data/a",
            "C /etc",
            "C /etc/hosts",
            "A /new",
            "A /new/file"
        ]
    );
}

// ----- the kernel comparison -----

/// (relative path, description) of every entry under `root`, sorted: type, mode, contents
/// or target, and whether a directory is opaque. Times and overlay bookkeeping xattrs
/// (origin, impure) are left out: they differ by design.
fn walk(root: &Path) -> Vec<(String, String)> {
    walk_with(root, true)
}

/// The merged view of a kernel mount: no opaque flags (the view has none).
fn walk_merged(root: &Path) -> Vec<(String, String)> {
    walk_with(root, false)
}

fn walk_with(root: &Path, show_opaque: bool) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(root.join(&rel))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        entries.sort();
        for name in entries {
            let p = rel.join(&name);
            let full = root.join(&p);
            let st = rustix::fs::lstat(&full).unwrap();
            let desc = match file_type(&st) {
                _ if is_whiteout(&st) => "whiteout".to_string(),
                rustix::fs::FileType::Directory => {
                    let d = open(&full);
                    let opaque = show_opaque && crate::fs::overlay::is_opaque(&d).unwrap();
                    stack.push(p.clone());
                    format!(
                        "dir {:o}{}",
                        st.st_mode & 0o7777,
                        if opaque { " opaque" } else { "" }
                    )
                }
                rustix::fs::FileType::Symlink => {
                    format!("symlink {}", std::fs::read_link(&full).unwrap().display())
                }
                rustix::fs::FileType::RegularFile => {
                    format!(
                        "file {:o} {:?}",
                        st.st_mode & 0o7777,
                        String::from_utf8_lossy(&std::fs::read(&full).unwrap())
                    )
                }
                other => format!("{other:?}"),
            };
            out.push((p.to_string_lossy().into_owned(), desc));
        }
    }
    out.sort();
    out
}

/// The merged view as our overlay serves it, in `walk`'s form.
fn walk_overlay(o: &Overlay<Dir>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        for e in o.read_dir(os(&format!("/{rel}"))).unwrap() {
            let p = if rel.is_empty() {
                e.name.to_string_lossy().into_owned()
            } else {
                format!("{rel}/{}", e.name.to_string_lossy())
            };
            let st = o.stat(os(&p), false).unwrap();
            let desc = match file_type(&st) {
                rustix::fs::FileType::Directory => {
                    stack.push(p.clone());
                    format!("dir {:o}", st.st_mode & 0o7777)
                }
                rustix::fs::FileType::Symlink => {
                    format!("symlink {}", o.read_link(os(&p)).unwrap().to_string_lossy())
                }
                rustix::fs::FileType::RegularFile => {
                    format!(
                        "file {:o} {:?}",
                        st.st_mode & 0o7777,
                        String::from_utf8_lossy(&read(o, &p))
                    )
                }
                other => format!("{other:?}"),
            };
            out.push((p, desc));
        }
    }
    out.sort();
    out
}

/// One step of the shared script: the same call on the kernel mount (through std::fs) and
/// on our overlay.
enum Op {
    Write(&'static str, &'static [u8]),
    Append(&'static str, &'static [u8]),
    Mkdir(&'static str),
    Unlink(&'static str),
    Rmdir(&'static str),
    Rename(&'static str, &'static str),
    Symlink(&'static str, &'static str),
    Link(&'static str, &'static str),
    Chmod(&'static str, u32),
}

const SCRIPT: &[Op] = &[
    Op::Write("etc/hosts", b"new hosts\n"),
    Op::Append("etc/passwd", b"app:x:1000:1000::/app:/bin/sh\n"),
    Op::Write("newfile", b"hello"),
    Op::Mkdir("newdir"),
    Op::Write("newdir/inner", b"inner"),
    Op::Unlink("data/a"),
    Op::Unlink("newtop"),
    Op::Unlink("dir2/g"),
    Op::Rmdir("dir2"),
    Op::Rename("data/c", "data/c2"),
    Op::Rename("dir1", "dir1moved"),
    Op::Symlink("/etc/hosts", "newlink"),
    Op::Link("etc/hosts", "hosts.hard"),
    Op::Chmod("lib/libc.so", 0o600),
    Op::Mkdir("data/a"),
    Op::Unlink("opq/new2"),
    Op::Rmdir("opq"),
    Op::Write("keep/file2", b"two"),
    Op::Rename("newfile", "etc/passwd"),
    Op::Rename("data/sub", "subdir-moved"),
];

fn run_kernel(mnt: &Path, op: &Op) {
    let p = |s: &str| mnt.join(s);
    match op {
        Op::Write(f, d) => std::fs::write(p(f), d).unwrap(),
        Op::Append(f, d) => std::fs::OpenOptions::new()
            .append(true)
            .open(p(f))
            .unwrap()
            .write_all(d)
            .unwrap(),
        Op::Mkdir(d) => std::fs::create_dir(p(d)).unwrap(),
        Op::Unlink(f) => std::fs::remove_file(p(f)).unwrap(),
        Op::Rmdir(d) => std::fs::remove_dir(p(d)).unwrap(),
        Op::Rename(a, b) => match std::fs::rename(p(a), p(b)) {
            // The kernel (redirect_dir=off) will not rename a merged directory; mv copies.
            Err(e) if e.raw_os_error() == Some(18) => {
                let out = std::process::Command::new("sh")
                    .arg("-c")
                    .arg(format!(
                        "cp -a {} {} && rm -rf {}",
                        p(a).display(),
                        p(b).display(),
                        p(a).display()
                    ))
                    .output()
                    .unwrap();
                assert!(out.status.success());
            }
            r => r.unwrap(),
        },
        Op::Symlink(t, l) => std::os::unix::fs::symlink(t, p(l)).unwrap(),
        Op::Link(a, b) => std::fs::hard_link(p(a), p(b)).unwrap(),
        Op::Chmod(f, m) => {
            std::fs::set_permissions(p(f), std::fs::Permissions::from_mode(*m)).unwrap()
        }
    }
}

fn run_ours(o: &Overlay<Dir>, op: &Op) {
    let p = |s: &str| format!("/{s}");
    let w = OpenOptions {
        write: true,
        create: true,
        truncate: true,
        mode: 0o644,
        ..Default::default()
    };
    match op {
        Op::Write(f, d) => o.open(os(&p(f)), &w).unwrap().write_all(d).unwrap(),
        Op::Append(f, d) => o
            .open(
                os(&p(f)),
                &OpenOptions {
                    append: true,
                    ..Default::default()
                },
            )
            .unwrap()
            .write_all(d)
            .unwrap(),
        Op::Mkdir(d) => o.create_dir(os(&p(d)), 0o755).unwrap(),
        Op::Unlink(f) => o.remove_file(os(&p(f))).unwrap(),
        Op::Rmdir(d) => o.remove_dir(os(&p(d))).unwrap(),
        Op::Rename(a, b) => o.rename(os(&p(a)), os(&p(b))).unwrap(),
        Op::Symlink(t, l) => o.symlink(os(t), os(&p(l))).unwrap(),
        Op::Link(a, b) => o.hard_link(os(&p(a)), os(&p(b))).unwrap(),
        Op::Chmod(f, m) => o.set_permissions(os(&p(f)), *m).unwrap(),
    }
}

/// Mounting kernel overlayfs needs root: without it the test is skipped with a note, or fails
/// under CI (`STRATA_TEST_REQUIRE_TOOLS`, as `skip` in tests/suite/common does for the
/// integration tests).
fn root_for(test: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var_os("STRATA_TEST_REQUIRE_TOOLS").is_none(),
        "{test}: needs root (STRATA_TEST_REQUIRE_TOOLS is set)"
    );
    eprintln!("note: skipping {test}: mounting overlayfs needs root");
    false
}

#[test]
fn same_results_as_kernel_overlayfs() {
    if !root_for("same_results_as_kernel_overlayfs") {
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("strata-ovl")
        .tempdir_in("/var/tmp")
        .unwrap();
    let base = tmp.path();
    let layers = three_layers(base);
    for d in ["kupper", "kwork", "mnt"] {
        std::fs::create_dir(base.join(d)).unwrap();
    }
    let lowerdir = layers
        .iter()
        .map(|l| l.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let opts = format!(
        "lowerdir={lowerdir},upperdir={},workdir={},redirect_dir=off,metacopy=off,index=off",
        base.join("kupper").display(),
        base.join("kwork").display()
    );
    let mounted = std::process::Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &opts])
        .arg(base.join("mnt"))
        .status()
        .unwrap();
    assert!(mounted.success(), "mount overlay");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(base.join("mnt"));
    let ours = overlay(&layers, &base.join("upper"));

    // Before any change, the merged trees agree.
    assert_eq!(walk_merged(&base.join("mnt")), walk_overlay(&ours));
    for (i, op) in SCRIPT.iter().enumerate() {
        run_kernel(&base.join("mnt"), op);
        run_ours(&ours, op);
        assert_eq!(
            walk_merged(&base.join("mnt")),
            walk_overlay(&ours),
            "merged trees differ after step {i}"
        );
    }
    assert_eq!(
        walk(&base.join("kupper")),
        walk(&base.join("upper")),
        "upper directories differ"
    );
    // Both uppers make the same layer.
    let opts = WriteOptions {
        source_date_epoch: Some(0),
    };
    let kernel_layer = write_layer(&open(&base.join("kupper")), Vec::new(), &opts).unwrap();
    let our_layer = write_layer(&open(&base.join("upper")), Vec::new(), &opts).unwrap();
    assert!(
        kernel_layer == our_layer,
        "the two uppers diff into different layers"
    );
    let lowers: Vec<Dir> = layers.iter().map(|l| open(l)).collect();
    assert_eq!(
        changes(&lowers, &open(&base.join("kupper"))).unwrap(),
        changes(&lowers, &open(&base.join("upper"))).unwrap()
    );
}

#[test]
fn kernel_mounts_our_upper_as_written() {
    // The upper our overlay writes is one the kernel takes as it is (as a lower here).
    if !root_for("kernel_mounts_our_upper_as_written") {
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("strata-ovl")
        .tempdir_in("/var/tmp")
        .unwrap();
    let base = tmp.path();
    let layers = three_layers(base);
    let ours = overlay(&layers, &base.join("upper"));
    for op in SCRIPT {
        run_ours(&ours, op);
    }
    std::fs::create_dir(base.join("mnt")).unwrap();
    let mut lowers = vec![base.join("upper").display().to_string()];
    lowers.extend(layers.iter().map(|l| l.display().to_string()));
    let opts = format!("lowerdir={}", lowers.join(":"));
    assert!(std::process::Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &opts])
        .arg(base.join("mnt"))
        .status()
        .unwrap()
        .success());
    let merged = walk_merged(&base.join("mnt"));
    let _ = std::process::Command::new("umount")
        .arg(base.join("mnt"))
        .status();
    let expected: Vec<(String, String)> = walk_overlay(&ours);
    assert_eq!(merged, expected);
    let _ = OsStr::from_bytes(b"");
}
