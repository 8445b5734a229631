//! Layer write/apply: whiteouts, opaque dirs, determinism, and hostile entries.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use cap_std::ambient_authority;
use cap_std::fs::Dir;

use super::*;

/// A tar entry with any name, written raw so names the `tar` crate would refuse (`..`,
/// absolute) can be made.
pub(crate) fn raw_entry(
    out: &mut Vec<u8>,
    name: &str,
    kind: tar::EntryType,
    data: &[u8],
    link: Option<&str>,
) {
    let mut h = tar::Header::new_old();
    let bytes = name.as_bytes();
    h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
    if let Some(l) = link {
        h.as_old_mut().linkname[..l.len()].copy_from_slice(l.as_bytes());
    }
    h.set_entry_type(kind);
    h.set_mode(if kind == tar::EntryType::Directory {
        0o755
    } else {
        0o644
    });
    h.set_size(data.len() as u64);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_600_000_000);
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out.extend(std::iter::repeat_n(0u8, (512 - data.len() % 512) % 512));
}

fn finish(mut tar: Vec<u8>) -> Vec<u8> {
    tar.extend(std::iter::repeat_n(0u8, 1024));
    tar
}

fn open(p: &Path) -> Dir {
    Dir::open_ambient_dir(p, ambient_authority()).unwrap()
}

fn names(tar: &[u8]) -> Vec<String> {
    let mut a = tar::Archive::new(tar);
    a.entries()
        .unwrap()
        .map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned())
        .collect()
}

fn is_whiteout(p: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    let m = std::fs::symlink_metadata(p).unwrap();
    m.file_type().is_char_device() && m.rdev() == 0
}

#[test]
fn whiteouts_and_opaque_dirs_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let mut tar = Vec::new();
    raw_entry(&mut tar, "a/", tar::EntryType::Directory, b"", None);
    raw_entry(
        &mut tar,
        "a/.wh..wh..opq",
        tar::EntryType::Regular,
        b"",
        None,
    );
    raw_entry(&mut tar, "a/keep", tar::EntryType::Regular, b"kept", None);
    raw_entry(&mut tar, "a/.wh.gone", tar::EntryType::Regular, b"", None);
    raw_entry(&mut tar, ".wh.top", tar::EntryType::Regular, b"", None);
    // A whiteout for a name this same layer writes only hides lower layers.
    raw_entry(&mut tar, "b", tar::EntryType::Regular, b"mine", None);
    raw_entry(&mut tar, ".wh.b", tar::EntryType::Regular, b"", None);
    let tar = finish(tar);
    let root = tmp.path().join("layer");
    std::fs::create_dir(&root).unwrap();
    apply_layer(&open(&root), &tar[..], &ApplyOptions::default()).unwrap();

    assert!(is_whiteout(&root.join("a/gone")));
    assert!(is_whiteout(&root.join("top")));
    assert_eq!(std::fs::read(root.join("b")).unwrap(), b"mine");
    assert_eq!(std::fs::read(root.join("a/keep")).unwrap(), b"kept");
    let dir = std::fs::File::open(root.join("a")).unwrap();
    let mut v = [0u8; 4];
    let n = rustix::fs::fgetxattr(&dir, opaque_xattr(), &mut v).unwrap();
    assert_eq!(&v[..n], b"y");

    let out = write_layer(&open(&root), Vec::new(), &WriteOptions::default()).unwrap();
    let listed = names(&out);
    assert_eq!(listed[0], ".wh.top", "whiteouts come first: {listed:?}");
    let a = listed.iter().position(|n| n == "a/" || n == "a").unwrap();
    assert_eq!(
        listed[a + 1],
        "a/.wh..wh..opq",
        "opaque marker follows its directory: {listed:?}"
    );
    assert_eq!(listed[a + 2], "a/.wh.gone");
    assert!(listed.contains(&"a/keep".to_string()));
    assert!(!listed.iter().any(|n| n == "a/gone" || n == "top"));
}

#[test]
fn layers_are_deterministic_and_clamped() {
    let tmp = tempfile::tempdir().unwrap();
    let make = |name: &str, mtime: i64| {
        let root = tmp.path().join(name);
        std::fs::create_dir_all(root.join("d/e")).unwrap();
        for i in 0..50 {
            std::fs::write(root.join(format!("d/f{i}")), format!("file {i}")).unwrap();
        }
        std::os::unix::fs::symlink("d/f1", root.join("link")).unwrap();
        std::fs::hard_link(root.join("d/f2"), root.join("d/e/hard")).unwrap();
        let ts = rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: mtime,
                tv_nsec: 0,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: mtime,
                tv_nsec: 0,
            },
        };
        for p in ["d/f1", "d/e", "d", "link"] {
            rustix::fs::utimensat(
                rustix::fs::CWD,
                &root.join(p),
                &ts,
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            )
            .unwrap();
        }
        root
    };
    let a = make("a", 2_000_000_000);
    let b = make("b", 2_100_000_000);
    let opts = WriteOptions {
        source_date_epoch: Some(1_000_000),
    };
    let ta = write_layer(&open(&a), Vec::new(), &opts).unwrap();
    assert_eq!(
        ta,
        write_layer(&open(&a), Vec::new(), &opts).unwrap(),
        "same tree, same bytes"
    );
    assert_eq!(
        ta,
        write_layer(&open(&b), Vec::new(), &opts).unwrap(),
        "mtimes after the epoch are clamped"
    );
    let mut archive = tar::Archive::new(&ta[..]);
    let mut hardlinks = 0;
    for e in archive.entries().unwrap() {
        let e = e.unwrap();
        assert!(e.header().mtime().unwrap() <= 1_000_000);
        if e.header().entry_type() == tar::EntryType::Link {
            // d/e/hard sorts before d/f2, so it is the file and d/f2 the link.
            assert_eq!(e.path().unwrap(), Path::new("d/f2"));
            assert_eq!(e.link_name().unwrap().unwrap(), Path::new("d/e/hard"));
            hardlinks += 1;
        }
    }
    assert_eq!(hardlinks, 1);
    let unclamped = write_layer(&open(&a), Vec::new(), &WriteOptions::default()).unwrap();
    assert_ne!(
        unclamped,
        write_layer(&open(&b), Vec::new(), &WriteOptions::default()).unwrap()
    );
}

#[test]
fn existing_paths_are_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let mut tar = Vec::new();
    raw_entry(&mut tar, "x/", tar::EntryType::Directory, b"", None);
    raw_entry(&mut tar, "x/inner", tar::EntryType::Regular, b"1", None);
    raw_entry(&mut tar, "x", tar::EntryType::Regular, b"now a file", None);
    raw_entry(
        &mut tar,
        "y",
        tar::EntryType::Symlink,
        b"",
        Some("/etc/passwd"),
    );
    raw_entry(
        &mut tar,
        "y",
        tar::EntryType::Regular,
        b"not through the link",
        None,
    );
    let tar = finish(tar);
    std::fs::create_dir(tmp.path().join("l")).unwrap();
    apply_layer(
        &open(&tmp.path().join("l")),
        &tar[..],
        &ApplyOptions::default(),
    )
    .unwrap();
    assert_eq!(
        std::fs::read(tmp.path().join("l/x")).unwrap(),
        b"now a file"
    );
    assert_eq!(
        std::fs::read(tmp.path().join("l/y")).unwrap(),
        b"not through the link"
    );
    assert!(!std::fs::read_to_string("/etc/passwd")
        .unwrap()
        .contains("not through"));
}

/// Each hostile entry is refused with an error naming it, and nothing outside the layer
/// directory changes.
#[test]
fn hostile_entries_are_refused() {
    type Build = fn(&mut Vec<u8>);
    let cases: Vec<(&str, &str, Build)> = vec![
        ("dotdot", "../canary/evil", |t| {
            raw_entry(t, "../canary/evil", tar::EntryType::Regular, b"x", None)
        }),
        ("inner dotdot", "a/../../canary/evil", |t| {
            raw_entry(
                t,
                "a/../../canary/evil",
                tar::EntryType::Regular,
                b"x",
                None,
            )
        }),
        ("symlink then write through", "link/evil", |t| {
            raw_entry(
                t,
                "link",
                tar::EntryType::Symlink,
                b"",
                Some("../../canary"),
            );
            raw_entry(t, "link/evil", tar::EntryType::Regular, b"x", None);
        }),
        ("absolute symlink then write through", "abs/evil", |t| {
            raw_entry(t, "abs", tar::EntryType::Symlink, b"", Some("/tmp"));
            raw_entry(t, "abs/evil", tar::EntryType::Regular, b"x", None);
        }),
        ("hardlink outside", "hl", |t| {
            raw_entry(t, "hl", tar::EntryType::Link, b"", Some("../canary/file"))
        }),
        ("hardlink to host file", "hl2", |t| {
            raw_entry(t, "hl2", tar::EntryType::Link, b"", Some("/etc/passwd"))
        }),
        ("whiteout escape", ".wh..", |t| {
            raw_entry(t, ".wh..", tar::EntryType::Regular, b"", None)
        }),
        ("whiteout of dotdot path", "../.wh.canary", |t| {
            raw_entry(t, "../.wh.canary", tar::EntryType::Regular, b"", None)
        }),
    ];
    for (what, entry, build) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let canary = tmp.path().join("canary");
        std::fs::create_dir(&canary).unwrap();
        std::fs::write(canary.join("file"), "canary").unwrap();
        let layer = tmp.path().join("store/layer");
        std::fs::create_dir_all(&layer).unwrap();
        let mut tar = Vec::new();
        build(&mut tar);
        let err = apply_layer(&open(&layer), &finish(tar)[..], &ApplyOptions::default())
            .expect_err(what)
            .to_string();
        assert!(
            err.contains(entry),
            "{what}: error {err:?} should name {entry:?}"
        );
        assert!(!err.contains('\n'), "{what}: one line");
        let listing: Vec<_> = std::fs::read_dir(&canary)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            listing,
            vec![std::ffi::OsString::from("file")],
            "{what}: canary dir untouched"
        );
        assert_eq!(std::fs::read(canary.join("file")).unwrap(), b"canary");
        assert_eq!(
            std::fs::metadata(canary.join("file")).unwrap().nlink(),
            1,
            "{what}: no link to the canary"
        );
    }
}

#[test]
fn devices_and_overlay_xattrs_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let layer = tmp.path().join("l");
    std::fs::create_dir(&layer).unwrap();
    let mut tar = Vec::new();
    raw_entry(&mut tar, "dev/null", tar::EntryType::Char, b"", None);
    let unprivileged = ApplyOptions { privileged: false };
    let err = apply_layer(&open(&layer), &finish(tar)[..], &unprivileged)
        .unwrap_err()
        .to_string();
    assert!(err.contains("dev/null") && err.contains("device"), "{err}");

    let mut tar = Vec::new();
    raw_entry(&mut tar, "fake-whiteout", tar::EntryType::Char, b"", None);
    let err = apply_layer(
        &open(&layer),
        &finish(tar)[..],
        &ApplyOptions { privileged: true },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("fake-whiteout"), "{err}");

    let mut builder = tar::Builder::new(Vec::new());
    builder
        .append_pax_extensions([("SCHILY.xattr.trusted.overlay.opaque", &b"y"[..])])
        .unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    builder
        .append_data(&mut h, "sneaky/", std::io::empty())
        .unwrap();
    let tar = builder.into_inner().unwrap();
    let err = apply_layer(&open(&layer), &tar[..], &ApplyOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("sneaky") && err.contains("overlay"), "{err}");
}

#[test]
fn unpack_then_repack_gives_the_same_tar() {
    // A layer we wrote, applied and written again, is byte-identical: diff_ids are stable.
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("etc/conf.d")).unwrap();
    std::fs::write(src.join("etc/conf.d/a"), "a").unwrap();
    std::fs::write(src.join("etc/ro"), "ro").unwrap();
    std::fs::set_permissions(
        src.join("etc/ro"),
        std::os::unix::fs::PermissionsExt::from_mode(0o4755),
    )
    .unwrap();
    std::os::unix::fs::symlink("conf.d/a", src.join("etc/link")).unwrap();
    let first = write_layer(&open(&src), Vec::new(), &WriteOptions::default()).unwrap();
    let dst = tmp.path().join("dst");
    std::fs::create_dir(&dst).unwrap();
    let stats = apply_layer(&open(&dst), &first[..], &ApplyOptions::default()).unwrap();
    assert_eq!(stats.size, 3);
    let second = write_layer(&open(&dst), Vec::new(), &WriteOptions::default()).unwrap();
    assert_eq!(first, second);
    let mut s = String::new();
    std::fs::File::open(dst.join("etc/conf.d/a"))
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    assert_eq!(s, "a");
}

#[test]
fn write_and_unpack_moves_files_and_ends_as_apply_would() {
    // A build directory: plain files (moved), a hardlinked pair, a file with an overlay
    // xattr (as a kernel overlay's upper has), a symlink, a whiteout, an opaque directory.
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("app/src")).unwrap();
    for i in 0..40 {
        std::fs::write(src.join(format!("app/src/f{i}")), format!("file {i}")).unwrap();
    }
    std::fs::write(src.join("app/suid"), "s").unwrap();
    std::fs::set_permissions(
        src.join("app/suid"),
        std::os::unix::fs::PermissionsExt::from_mode(0o4755),
    )
    .unwrap();
    std::fs::write(src.join("app/pair"), "pair").unwrap();
    std::fs::hard_link(src.join("app/pair"), src.join("app/pair2")).unwrap();
    std::os::unix::fs::symlink("src/f1", src.join("app/link")).unwrap();
    let privileged = crate::privilege::privileged();
    let marked = src.join("app/marked");
    std::fs::write(&marked, "marked").unwrap();
    rustix::fs::setxattr(
        &marked,
        if privileged {
            "trusted.overlay.origin"
        } else {
            "user.overlay.origin"
        },
        b"x",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    rustix::fs::setxattr(
        src.join("app/src/f2"),
        "user.note",
        b"kept",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    if privileged {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &src.join("app/gone"),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::empty(),
            0,
        )
        .unwrap();
        std::fs::create_dir(src.join("opaque")).unwrap();
        rustix::fs::setxattr(
            src.join("opaque"),
            opaque_xattr(),
            b"y",
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
    }

    let opts = WriteOptions::default();
    let expected = write_layer(&open(&src), Vec::new(), &opts).unwrap();
    let by_apply = tmp.path().join("by-apply");
    std::fs::create_dir(&by_apply).unwrap();
    let stats = apply_layer(&open(&by_apply), &expected[..], &ApplyOptions::default()).unwrap();

    let moved = tmp.path().join("moved");
    std::fs::create_dir(&moved).unwrap();
    let (tar, diff_id, moved_stats) = write_and_unpack(
        &open(&src),
        Vec::new(),
        &open(&moved),
        &opts,
        &ApplyOptions::default(),
    )
    .unwrap();
    assert_eq!(tar, expected, "the same tar as write_layer");
    assert_eq!(diff_id, crate::digest::Digest::of(&expected));
    assert_eq!(moved_stats, stats);
    assert_eq!(
        write_layer(&open(&moved), Vec::new(), &opts).unwrap(),
        write_layer(&open(&by_apply), Vec::new(), &opts).unwrap(),
        "the unpacked trees agree in names, kinds, modes, owners, times, xattrs and data"
    );
    assert_eq!(std::fs::read(moved.join("app/src/f7")).unwrap(), b"file 7");
    // Plain files moved; the linked pair and the overlay-marked file were written anew.
    assert!(!src.join("app/src/f7").exists() && !src.join("app/suid").exists());
    assert!(src.join("app/pair").exists() && marked.exists());
    let mut v = [0u8; 8];
    assert!(
        rustix::fs::getxattr(moved.join("app/marked"), "trusted.overlay.origin", &mut v).is_err()
    );
    assert!(rustix::fs::getxattr(moved.join("app/marked"), "user.overlay.origin", &mut v).is_err());
    assert_eq!(
        std::fs::metadata(moved.join("app/pair")).unwrap().ino(),
        std::fs::metadata(moved.join("app/pair2")).unwrap().ino()
    );
    if privileged {
        assert!(is_whiteout(&moved.join("app/gone")));
    }
}

#[test]
fn a_source_file_that_differs_from_its_entry_is_not_moved() {
    // The entry says 5 bytes; the source's file of another size, or a symlink, stays put
    // and the entry's own data is written.
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("a"), "longer than five").unwrap();
    std::os::unix::fs::symlink("a", src.join("b")).unwrap();
    let mut tar = Vec::new();
    raw_entry(&mut tar, "a", tar::EntryType::Regular, b"fresh", None);
    raw_entry(&mut tar, "b", tar::EntryType::Regular, b"fresh", None);
    raw_entry(&mut tar, "c", tar::EntryType::Regular, b"fresh", None);
    let tar = finish(tar);
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let stats = apply_layer_moving(
        &open(&root),
        &tar[..],
        &ApplyOptions::default(),
        &open(&src),
    )
    .unwrap();
    assert_eq!(stats.size, 15);
    for n in ["a", "b", "c"] {
        assert_eq!(std::fs::read(root.join(n)).unwrap(), b"fresh");
    }
    assert_eq!(std::fs::read(src.join("a")).unwrap(), b"longer than five");
    assert!(std::fs::symlink_metadata(src.join("b"))
        .unwrap()
        .file_type()
        .is_symlink());
}
