//! The core's operations on a fixture of mounts (preview 2's own tests, in
//! `p2/filesystem.rs`, use the same fixture).

use std::path::Path;

use super::bindings::wasi::clocks::wall_clock::Datetime;
use super::*;

fn dir(p: &Path) -> Dir {
    Dir::open_ambient_dir(p, cap_std::ambient_authority()).unwrap()
}

/// `/` over one lower layer, `/data` a read-write bind, `/ro` a read-only one; a file
/// `secret` sits next to (outside) the bind directories.
pub(in crate::wasm) struct Fixture {
    tmp: tempfile::TempDir,
    pub(in crate::wasm) fs: GuestFs,
}

impl Fixture {
    pub(in crate::wasm) fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let p = |s: &str| tmp.path().join(s);
        for d in ["lower/etc", "upper", "bind", "robind"] {
            std::fs::create_dir_all(p(d)).unwrap();
        }
        std::fs::write(p("lower/etc/hosts"), "lower hosts\n").unwrap();
        std::fs::write(p("bind/b.txt"), "bound").unwrap();
        std::fs::write(p("robind/r.txt"), "read only").unwrap();
        std::fs::write(p("secret"), "host secret").unwrap();
        let root = Overlay::new(vec![dir(&p("lower"))], dir(&p("upper")));
        let bind = Overlay::new(vec![], dir(&p("bind")));
        let robind = Overlay::new(vec![], dir(&p("robind")));
        let fs = GuestFs::new(vec![
            Mount {
                guest_path: "/".into(),
                overlay: Arc::new(root),
                read_only: false,
            },
            Mount {
                guest_path: "/data/".into(),
                overlay: Arc::new(bind),
                read_only: false,
            },
            Mount {
                guest_path: "/ro".into(),
                overlay: Arc::new(robind),
                read_only: true,
            },
        ]);
        Fixture { tmp, fs }
    }

    fn host(&self, rel: &str) -> std::path::PathBuf {
        self.tmp.path().join(rel)
    }

    pub(in crate::wasm) fn pre(&self, name: &str) -> Descriptor {
        self.fs
            .preopens()
            .into_iter()
            .find(|(_, n)| n == name)
            .unwrap()
            .0
    }

    pub(in crate::wasm) fn open(
        &self,
        base: &Descriptor,
        path: &str,
        oflags: OpenFlags,
        flags: DescriptorFlags,
    ) -> Res<Descriptor> {
        self.fs
            .open_at(base, PathFlags::SYMLINK_FOLLOW, path, oflags, flags)
    }

    pub(in crate::wasm) fn read_all(&self, base: &Descriptor, path: &str) -> Res<String> {
        let d = self.open(base, path, OpenFlags::empty(), DescriptorFlags::READ)?;
        let (data, _) = self.fs.read(&d, 1 << 16, 0)?;
        Ok(String::from_utf8(data).unwrap())
    }

    fn names(&self, d: &Descriptor) -> Vec<String> {
        let mut v: Vec<String> = self
            .fs
            .read_directory(d)
            .unwrap()
            .into_iter()
            .map(|e| e.unwrap().entry.name)
            .collect();
        v.sort();
        v
    }
}

pub(in crate::wasm) fn rw() -> DescriptorFlags {
    DescriptorFlags::READ | DescriptorFlags::WRITE
}

#[test]
fn guest_paths_are_relative_and_clean() {
    let f = Fixture::new();
    let root = f.pre("/");
    assert_eq!(
        f.fs.stat_at(&root, PathFlags::empty(), "/etc").err(),
        Some(ErrorCode::NotPermitted)
    );
    assert_eq!(
        f.fs.stat_at(&root, PathFlags::empty(), "").err(),
        Some(ErrorCode::NoEntry)
    );
    assert_eq!(
        f.fs.stat_at(&root, PathFlags::empty(), "e\0c").err(),
        Some(ErrorCode::Invalid)
    );
    for (path, dir) in [
        ("a/b", false),
        ("a/", true),
        ("a/.", true),
        ("a/..", true),
        (".", true),
    ] {
        assert_eq!(names_dir(path), dir, "{path}");
    }
    assert_eq!(guest_components("/data//x/"), vec!["data", "x"]);
    assert!(guest_components("/").is_empty());
}

/// (mount, path inside it) that `path` from `base` resolves to.
fn target(f: &Fixture, base: &Descriptor, path: &str) -> Res<(usize, String)> {
    f.fs.target(base, path, true).map(|t| (t.mount, t.path))
}

#[test]
fn paths_cross_mount_points_both_ways() {
    let f = Fixture::new();
    let root = f.pre("/");
    let t = |p: &str| target(&f, &root, p).unwrap();
    assert_eq!(t("data/b.txt"), (1, "b.txt".into()));
    assert_eq!(t("data/new"), (1, "new".into()));
    assert_eq!(t("data"), (1, String::new()));
    // Only the last name may be missing.
    assert_eq!(target(&f, &root, "data/x/y"), Err(ErrorCode::NoEntry));
    assert_eq!(t("database"), (0, "database".into()));
    assert_eq!(t("data/../etc"), (0, "etc".into()));
    // `..` from the bind's root goes back to `/`, and `data` enters the bind again: the
    // file is the bind's, not the root layer's under the mount point.
    assert_eq!(t("data/../data/f2"), (1, "f2".into()));
    // From the container's root, `..` stays at `/` (Linux's rule for `/..`).
    assert_eq!(t("../../data/b.txt"), (1, "b.txt".into()));
    assert_eq!(f.read_all(&root, "data/b.txt").unwrap(), "bound");
    assert_eq!(f.read_all(&root, "ro/r.txt").unwrap(), "read only");
    // A symlink in the root into a bind mount lands in the bind, absolute or relative.
    std::os::unix::fs::symlink("/data/b.txt", f.host("upper/abs")).unwrap();
    std::os::unix::fs::symlink("data/b.txt", f.host("upper/rel")).unwrap();
    assert_eq!(f.read_all(&root, "abs").unwrap(), "bound");
    assert_eq!(f.read_all(&root, "rel").unwrap(), "bound");
    // And one in a bind mount that leaves it, through `..` or `/`, leaves it.
    std::os::unix::fs::symlink("../etc/hosts", f.host("bind/up")).unwrap();
    std::os::unix::fs::symlink("/etc/hosts", f.host("bind/root")).unwrap();
    assert_eq!(f.read_all(&root, "data/up").unwrap(), "lower hosts\n");
    assert_eq!(f.read_all(&root, "data/root").unwrap(), "lower hosts\n");
    // Created through `..`, a file is where the path names it.
    let w = f
        .open(&root, "data/../data/f2", OpenFlags::CREATE, rw())
        .unwrap();
    f.fs.write(&w, b"two", 0).unwrap();
    assert_eq!(std::fs::read(f.host("bind/f2")).unwrap(), b"two");
    assert!(
        !f.host("upper/data").exists(),
        "nothing under the mount point"
    );
    // The root lists the mount points.
    assert_eq!(f.names(&root), vec!["abs", "data", "etc", "rel", "ro"]);
}

#[test]
fn a_directory_descriptor_is_a_capability() {
    let f = Fixture::new();
    let root = f.pre("/");
    std::fs::create_dir_all(f.host("lower/etc/sub")).unwrap();
    std::os::unix::fs::symlink("../hosts", f.host("lower/etc/sub/up")).unwrap();
    std::os::unix::fs::symlink("/etc/hosts", f.host("lower/etc/sub/abs")).unwrap();
    std::os::unix::fs::symlink("../../etc/hosts", f.host("lower/etc/sub/out")).unwrap();
    std::fs::create_dir_all(f.host("lower/etc/sub/d0")).unwrap();
    let flags = DescriptorFlags::READ | DescriptorFlags::MUTATE_DIRECTORY;
    let sub =
        f.fs.open_at(
            &root,
            PathFlags::SYMLINK_FOLLOW,
            "etc/sub",
            OpenFlags::DIRECTORY,
            flags,
        )
        .unwrap();
    let denied = Some(ErrorCode::NotPermitted);
    let follow = PathFlags::SYMLINK_FOLLOW;
    for path in [
        "..",
        "../hosts",
        "d0/../../hosts",
        "up",
        "abs",
        "out",
        "up/",
    ] {
        assert_eq!(f.fs.stat_at(&sub, follow, path).err(), denied, "{path}");
    }
    assert_eq!(f.fs.create_directory_at(&sub, "../y").err(), denied);
    assert_eq!(
        f.open(&sub, "../new", OpenFlags::CREATE, rw()).err(),
        denied
    );
    assert!(!f.host("upper/etc/new").exists() && !f.host("upper/etc/y").exists());
    // Not following the link in the last name is fine: the link itself is below.
    assert!(f.fs.stat_at(&sub, PathFlags::empty(), "up").is_ok());
    // Inside the descriptor, `..` works as usual.
    f.fs.create_directory_at(&sub, "d").unwrap();
    assert!(f.fs.stat_at(&sub, follow, "d/../d/.").is_ok());
    // The same links from the root resolve as Linux resolves them.
    assert_eq!(f.read_all(&root, "etc/sub/up").unwrap(), "lower hosts\n");
    assert_eq!(f.read_all(&root, "etc/sub/abs").unwrap(), "lower hosts\n");
    assert_eq!(f.read_all(&root, "etc/sub/out").unwrap(), "lower hosts\n");
    // A preopen is a mount of the container: `..` from the bind's root is `/`, as libc
    // (which resolves every absolute path through the preopens) needs. A descriptor
    // the guest opens on it is a boundary.
    let data = f.pre("/data");
    assert_eq!(f.read_all(&data, "../etc/hosts").unwrap(), "lower hosts\n");
    let opened =
        f.fs.open_at(&data, follow, ".", OpenFlags::DIRECTORY, flags)
            .unwrap();
    assert_eq!(f.fs.stat_at(&opened, follow, "../etc").err(), denied);
    // A descriptor opened through `..` and links holds the resolved path.
    let etc =
        f.fs.open_at(
            &root,
            follow,
            "data/../etc/sub/..",
            OpenFlags::DIRECTORY,
            flags,
        )
        .unwrap();
    assert_eq!((etc.mount, etc.path.as_str()), (0, "etc"));
}

#[test]
fn preopens_are_the_mounts() {
    let f = Fixture::new();
    let pre = f.fs.preopens();
    let names: Vec<&str> = pre.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names, vec!["/", "/data", "/ro"]);
    assert!(pre[0].0.flags.contains(DescriptorFlags::MUTATE_DIRECTORY));
    assert!(!pre[2].0.flags.contains(DescriptorFlags::MUTATE_DIRECTORY));
    // A later mount at the same path replaces the earlier one.
    let again = GuestFs::new(vec![
        Mount {
            guest_path: "/x".into(),
            overlay: f.fs.mounts[1].overlay.clone(),
            read_only: false,
        },
        Mount {
            guest_path: "/x/".into(),
            overlay: f.fs.mounts[2].overlay.clone(),
            read_only: true,
        },
    ]);
    assert_eq!(again.mounts.len(), 1);
    assert!(again.mounts[0].read_only);
}

#[test]
fn create_write_read_stat() {
    let f = Fixture::new();
    let root = f.pre("/");
    let d = f
        .open(
            &root,
            "etc/new",
            OpenFlags::CREATE | OpenFlags::EXCLUSIVE,
            rw(),
        )
        .unwrap();
    assert_eq!(f.fs.write(&d, b"hello", 0).unwrap(), 5);
    assert_eq!(f.fs.write(&d, b"!", 5).unwrap(), 1);
    assert_eq!(f.fs.read(&d, 100, 0).unwrap(), (b"hello!".to_vec(), false));
    assert_eq!(f.fs.read(&d, 100, 6).unwrap(), (Vec::new(), true));
    let st = descriptor_stat(&f.fs.stat_descriptor(&d).unwrap());
    assert_eq!((st.type_, st.size), (DescriptorType::RegularFile, 6));
    let st = descriptor_stat(&f.fs.stat_at(&root, PathFlags::empty(), "etc/new").unwrap());
    assert_eq!(
        (st.type_, st.size, st.link_count),
        (DescriptorType::RegularFile, 6, 1)
    );
    assert!(st.data_modification_timestamp.is_some());
    assert_eq!(
        std::fs::read_to_string(f.host("upper/etc/new")).unwrap(),
        "hello!"
    );
    assert!(!f.host("lower/etc/new").exists());
    assert_eq!(d.flags, rw());
    // Exclusive create of an existing name; plain create opens it.
    assert_eq!(
        f.open(
            &root,
            "etc/new",
            OpenFlags::CREATE | OpenFlags::EXCLUSIVE,
            rw()
        )
        .err(),
        Some(ErrorCode::Exist)
    );
    f.open(&root, "etc/new", OpenFlags::CREATE, rw()).unwrap();
    let t = f
        .open(
            &root,
            "etc/new",
            OpenFlags::TRUNCATE,
            DescriptorFlags::WRITE,
        )
        .unwrap();
    assert_eq!(descriptor_stat(&f.fs.stat_descriptor(&t).unwrap()).size, 0);
    // Descriptor-relative paths.
    let etc = f
        .open(&root, "etc", OpenFlags::DIRECTORY, DescriptorFlags::READ)
        .unwrap();
    assert!(matches!(etc.kind, Kind::Dir));
    assert_eq!(f.read_all(&etc, "hosts").unwrap(), "lower hosts\n");
    assert_eq!(
        f.read_all(&etc, "../etc/./hosts").err(),
        Some(ErrorCode::NotPermitted),
        "not above the descriptor"
    );
    assert_eq!(f.fs.read_directory(&t).err(), Some(ErrorCode::NotDirectory));
    assert_eq!(
        f.fs.stat_at(&t, PathFlags::empty(), "x").err(),
        Some(ErrorCode::NotDirectory)
    );
}

#[test]
fn writing_a_lower_file_copies_it_up() {
    let f = Fixture::new();
    let root = f.pre("/");
    let d = f
        .open(&root, "etc/hosts", OpenFlags::empty(), rw())
        .unwrap();
    f.fs.write(&d, b"UPPER", 0).unwrap();
    assert_eq!(
        std::fs::read_to_string(f.host("lower/etc/hosts")).unwrap(),
        "lower hosts\n"
    );
    assert_eq!(
        std::fs::read_to_string(f.host("upper/etc/hosts")).unwrap(),
        "UPPER hosts\n"
    );
    assert_eq!(f.read_all(&root, "etc/hosts").unwrap(), "UPPER hosts\n");
    // A read-only descriptor cannot write.
    let r = f
        .open(
            &root,
            "etc/hosts",
            OpenFlags::empty(),
            DescriptorFlags::READ,
        )
        .unwrap();
    assert_eq!(
        f.fs.write(&r, b"x", 0).err(),
        Some(ErrorCode::BadDescriptor)
    );
}

#[test]
fn open_flags_and_directories() {
    let f = Fixture::new();
    let root = f.pre("/");
    let open = |p: &str, o: OpenFlags, d: DescriptorFlags| f.open(&root, p, o, d).err();
    assert_eq!(
        open("etc", OpenFlags::empty(), rw()),
        Some(ErrorCode::IsDirectory)
    );
    assert_eq!(
        open("etc", OpenFlags::CREATE, DescriptorFlags::READ),
        Some(ErrorCode::IsDirectory)
    );
    assert_eq!(
        open("etc", OpenFlags::CREATE | OpenFlags::EXCLUSIVE, rw()),
        Some(ErrorCode::Exist)
    );
    assert_eq!(
        open("etc/hosts", OpenFlags::DIRECTORY, DescriptorFlags::READ),
        Some(ErrorCode::NotDirectory)
    );
    assert_eq!(
        open("etc/hosts/", OpenFlags::empty(), DescriptorFlags::READ),
        Some(ErrorCode::NotDirectory)
    );
    assert_eq!(
        open("nope", OpenFlags::empty(), DescriptorFlags::READ),
        Some(ErrorCode::NoEntry)
    );
    assert_eq!(
        open("nope", OpenFlags::DIRECTORY, DescriptorFlags::READ),
        Some(ErrorCode::NoEntry)
    );
    assert_eq!(
        open("nope/", OpenFlags::CREATE, rw()),
        Some(ErrorCode::IsDirectory)
    );
    assert_eq!(
        open("nope/x", OpenFlags::CREATE, rw()),
        Some(ErrorCode::NoEntry)
    );
    assert_eq!(
        open("x", OpenFlags::DIRECTORY | OpenFlags::CREATE, rw()),
        Some(ErrorCode::Invalid)
    );
    assert_eq!(
        open("/etc/hosts", OpenFlags::empty(), DescriptorFlags::READ),
        Some(ErrorCode::NotPermitted)
    );
    let d = f
        .open(&root, "etc/", OpenFlags::empty(), DescriptorFlags::READ)
        .unwrap();
    assert!(d.flags.contains(DescriptorFlags::MUTATE_DIRECTORY));
    assert_eq!(f.names(&d), vec!["hosts"]);
    // Root itself, by `.`.
    let top = f
        .open(&root, ".", OpenFlags::DIRECTORY, DescriptorFlags::READ)
        .unwrap();
    assert_eq!(top.path, "");
    assert_eq!(f.fs.read(&top, 1, 0).err(), Some(ErrorCode::BadDescriptor));
}

#[test]
fn directories_links_and_renames() {
    let f = Fixture::new();
    let root = f.pre("/");
    f.fs.create_directory_at(&root, "srv").unwrap();
    assert_eq!(
        f.fs.create_directory_at(&root, "srv").err(),
        Some(ErrorCode::Exist)
    );
    assert_eq!(
        f.fs.create_directory_at(&root, ".").err(),
        Some(ErrorCode::Exist)
    );
    f.open(&root, "srv/a", OpenFlags::CREATE, rw()).unwrap();
    assert_eq!(
        f.fs.remove_directory_at(&root, "srv").err(),
        Some(ErrorCode::NotEmpty)
    );
    assert_eq!(
        f.fs.unlink_file_at(&root, "srv").err(),
        Some(ErrorCode::IsDirectory)
    );
    assert_eq!(
        f.fs.unlink_file_at(&root, "srv/").err(),
        Some(ErrorCode::IsDirectory)
    );
    assert_eq!(
        f.fs.unlink_file_at(&root, "srv/a/").err(),
        Some(ErrorCode::NotDirectory)
    );
    f.fs.rename_at(&root, "srv/a", &root, "srv/b").unwrap();
    f.fs.link_at(&root, PathFlags::empty(), "srv/b", &root, "srv/c")
        .unwrap();
    let b = f.fs.stat_at(&root, PathFlags::empty(), "srv/b").unwrap();
    let c = f.fs.stat_at(&root, PathFlags::empty(), "srv/c").unwrap();
    assert_eq!(identity(&b), identity(&c));
    let (hb, hc) = (metadata_hash_of(&b), metadata_hash_of(&c));
    assert_eq!((hb.lower, hb.upper), (hc.lower, hc.upper));
    assert_eq!(descriptor_stat(&b).link_count, 2);
    f.fs.symlink_at(&root, "b", "srv/l").unwrap();
    f.fs.symlink_at(&root, "/etc/hosts", "abs").unwrap();
    assert_eq!(f.fs.readlink_at(&root, "srv/l").unwrap(), "b");
    assert_eq!(f.read_all(&root, "abs").unwrap(), "lower hosts\n");
    let l = f.fs.stat_at(&root, PathFlags::empty(), "srv/l").unwrap();
    assert_eq!(descriptor_stat(&l).type_, DescriptorType::SymbolicLink);
    assert_eq!(
        f.fs.open_at(
            &root,
            PathFlags::empty(),
            "srv/l",
            OpenFlags::empty(),
            DescriptorFlags::READ
        )
        .err(),
        Some(ErrorCode::Loop)
    );
    assert_eq!(
        f.fs.readlink_at(&root, "srv/b").err(),
        Some(ErrorCode::Invalid)
    );
    assert_eq!(
        f.names(
            &f.open(&root, "srv", OpenFlags::DIRECTORY, DescriptorFlags::READ)
                .unwrap()
        ),
        vec!["b", "c", "l"]
    );
    for n in ["b", "c", "l"] {
        f.fs.unlink_file_at(&root, &format!("srv/{n}")).unwrap();
    }
    f.fs.remove_directory_at(&root, "srv").unwrap();
    assert_eq!(
        f.fs.stat_at(&root, PathFlags::empty(), "srv").err(),
        Some(ErrorCode::NoEntry)
    );
    // Across mounts.
    let data = f.pre("/data");
    assert_eq!(
        f.fs.rename_at(&root, "abs", &data, "abs").err(),
        Some(ErrorCode::CrossDevice)
    );
    assert_eq!(
        f.fs.rename_at(&root, "abs", &root, "data/abs").err(),
        Some(ErrorCode::CrossDevice)
    );
    assert_eq!(
        f.fs.link_at(&data, PathFlags::empty(), "b.txt", &root, "b")
            .err(),
        Some(ErrorCode::CrossDevice)
    );
    // An absolute symlink in a bind mount means the container's root, as in the kernel.
    f.fs.symlink_at(&data, "/etc", "l").unwrap();
    assert_eq!(f.read_all(&data, "l/hosts").unwrap(), "lower hosts\n");
}

#[test]
fn read_only_mounts_refuse_every_mutation() {
    let f = Fixture::new();
    let ro = f.pre("/ro");
    let root = f.pre("/");
    let ro_err = Some(ErrorCode::ReadOnly);
    assert_eq!(f.read_all(&ro, "r.txt").unwrap(), "read only");
    assert_eq!(f.open(&ro, "r.txt", OpenFlags::empty(), rw()).err(), ro_err);
    assert_eq!(
        f.open(&ro, "n", OpenFlags::CREATE, DescriptorFlags::READ)
            .err(),
        ro_err
    );
    assert_eq!(
        f.open(&ro, "r.txt", OpenFlags::TRUNCATE, DescriptorFlags::READ)
            .err(),
        ro_err
    );
    assert_eq!(f.fs.create_directory_at(&ro, "d").err(), ro_err);
    assert_eq!(f.fs.unlink_file_at(&ro, "r.txt").err(), ro_err);
    assert_eq!(f.fs.remove_directory_at(&ro, "x").err(), ro_err);
    assert_eq!(f.fs.rename_at(&ro, "r.txt", &ro, "s").err(), ro_err);
    assert_eq!(f.fs.symlink_at(&ro, "r.txt", "s").err(), ro_err);
    assert_eq!(
        f.fs.link_at(&ro, PathFlags::empty(), "r.txt", &ro, "s")
            .err(),
        ro_err
    );
    assert_eq!(
        f.fs.set_times_at(
            &ro,
            PathFlags::empty(),
            "r.txt",
            NewTimestamp::Now,
            NewTimestamp::Now
        )
        .err(),
        ro_err
    );
    let r = f
        .open(&ro, "r.txt", OpenFlags::empty(), DescriptorFlags::READ)
        .unwrap();
    assert_eq!(f.fs.write(&r, b"x", 0).err(), ro_err);
    assert_eq!(f.fs.set_size(&r, 0).err(), ro_err);
    assert_eq!(
        f.fs.set_times(&r, NewTimestamp::Now, NewTimestamp::NoChange)
            .err(),
        ro_err
    );
    // Reached through the root, it is the same mount.
    assert_eq!(f.fs.unlink_file_at(&root, "ro/r.txt").err(), ro_err);
    assert_eq!(
        std::fs::read_to_string(f.host("robind/r.txt")).unwrap(),
        "read only"
    );
}

#[test]
fn bind_mounts_write_to_the_host_and_do_not_escape() {
    let f = Fixture::new();
    let data = f.pre("/data");
    let d = f.open(&data, "new.txt", OpenFlags::CREATE, rw()).unwrap();
    f.fs.write(&d, b"to host", 0).unwrap();
    assert_eq!(
        std::fs::read_to_string(f.host("bind/new.txt")).unwrap(),
        "to host"
    );
    // `..` and symlinks leave the bind mount for the container's root, never for the
    // host directories around the bind's.
    assert_eq!(
        f.read_all(&data, "../secret").err(),
        Some(ErrorCode::NoEntry)
    );
    assert_eq!(f.read_all(&data, "../../../data/b.txt").unwrap(), "bound");
    std::fs::create_dir(f.host("bind/sub")).unwrap();
    std::os::unix::fs::symlink("../../../..", f.host("bind/sub/up")).unwrap();
    std::os::unix::fs::symlink("/secret", f.host("bind/abs")).unwrap();
    assert_eq!(f.read_all(&data, "sub/up/data/b.txt").unwrap(), "bound");
    assert_eq!(
        f.read_all(&data, "sub/up/secret").err(),
        Some(ErrorCode::NoEntry)
    );
    assert_eq!(f.read_all(&data, "abs").err(), Some(ErrorCode::NoEntry));
    let up = f
        .open(&data, "sub/up", OpenFlags::DIRECTORY, DescriptorFlags::READ)
        .unwrap();
    assert_eq!(
        (up.mount, up.path.as_str()),
        (0, ""),
        "the container's root"
    );
    assert_eq!(f.names(&up), vec!["data", "etc", "ro"]);
}

#[test]
fn times_and_sizes() {
    let f = Fixture::new();
    let root = f.pre("/");
    let ts = |s| {
        NewTimestamp::Timestamp(Datetime {
            seconds: s,
            nanoseconds: 5,
        })
    };
    f.fs.set_times_at(
        &root,
        PathFlags::SYMLINK_FOLLOW,
        "etc/hosts",
        ts(1000),
        ts(2000),
    )
    .unwrap();
    let st = descriptor_stat(
        &f.fs
            .stat_at(&root, PathFlags::empty(), "etc/hosts")
            .unwrap(),
    );
    assert_eq!(
        st.data_access_timestamp.map(|d| (d.seconds, d.nanoseconds)),
        Some((1000, 5))
    );
    assert_eq!(
        st.data_modification_timestamp
            .map(|d| (d.seconds, d.nanoseconds)),
        Some((2000, 5))
    );
    // The lower layer keeps its times: the file was copied up.
    let lower = std::fs::metadata(f.host("lower/etc/hosts")).unwrap();
    assert_ne!(std::os::unix::fs::MetadataExt::mtime(&lower), 2000);
    // Through a read-only descriptor of a lower file: copied up, not changed in place.
    let r = f
        .open(
            &root,
            "etc/hosts",
            OpenFlags::empty(),
            DescriptorFlags::READ,
        )
        .unwrap();
    f.fs.set_times(&r, NewTimestamp::NoChange, ts(3000))
        .unwrap();
    let st = descriptor_stat(
        &f.fs
            .stat_at(&root, PathFlags::empty(), "etc/hosts")
            .unwrap(),
    );
    assert_eq!(
        st.data_modification_timestamp.map(|d| d.seconds),
        Some(3000)
    );
    assert_eq!(st.data_access_timestamp.map(|d| d.seconds), Some(1000));
    let w = f
        .open(&root, "etc/hosts", OpenFlags::empty(), rw())
        .unwrap();
    f.fs.set_size(&w, 3).unwrap();
    f.fs.set_times(&w, ts(7), ts(8)).unwrap();
    let st = descriptor_stat(&f.fs.stat_descriptor(&w).unwrap());
    assert_eq!(
        (st.size, st.data_modification_timestamp.map(|d| d.seconds)),
        (3, Some(8))
    );
    assert_eq!(
        f.fs.set_size(&root, 0).err(),
        Some(ErrorCode::BadDescriptor)
    );
    let big = NewTimestamp::Timestamp(Datetime {
        seconds: u64::MAX,
        nanoseconds: 0,
    });
    assert_eq!(
        f.fs.set_times(&w, big, NewTimestamp::NoChange).err(),
        Some(ErrorCode::Overflow)
    );
}
