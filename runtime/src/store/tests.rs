use std::io::{Read, Seek, Write};
use std::os::unix::fs::PermissionsExt;

use super::*;

fn store() -> (tempfile::TempDir, Store) {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("store")).unwrap();
    (tmp, store)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn caches_are_private_directories_under_cache() {
    let (_tmp, store) = store();
    let dir = store.cache_dir("build").unwrap();
    dir.write("r.json", b"{}").unwrap();
    let path = store.cache_path("build").unwrap();
    assert_eq!(path, store.path().join("cache/build"));
    assert_eq!(std::fs::read(path.join("r.json")).unwrap(), b"{}");
    assert_eq!(mode(&store.path().join("cache")), 0o700);
    assert_eq!(mode(&path), 0o700);
    // Opened again, it is the same cache.
    assert!(store.cache_dir("build").unwrap().exists("r.json"));
}

#[test]
fn cache_names_are_one_plain_component() {
    let (_tmp, store) = store();
    for bad in ["", ".", "..", "../tmp", "a/b", "/etc", "a\0b", "ä"] {
        let e = store.cache_dir(bad).err().expect(bad).to_string();
        assert!(e.contains("not a store cache name"), "{bad:?}: {e}");
        assert!(store.cache_path(bad).is_err(), "{bad:?}");
        assert!(store.remove_cache(bad).is_err(), "{bad:?}");
    }
    assert!(!store.path().join("tmp/a").exists());
}

#[test]
fn remove_cache_takes_read_only_trees() {
    let (_tmp, store) = store();
    assert!(!store.remove_cache("mounts").unwrap(), "no cache yet");
    let dir = store.cache_dir("mounts").unwrap();
    dir.create_dir_all("id/sub").unwrap();
    dir.write("id/sub/f", b"x").unwrap();
    let sub = store.cache_path("mounts").unwrap().join("id/sub");
    std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o555)).unwrap();
    assert!(store.remove_cache("mounts").unwrap());
    assert!(!store.path().join("cache/mounts").exists());
    assert!(!store.remove_cache("mounts").unwrap());
    // Another cache stays.
    store.cache_dir("wasm").unwrap();
    store.remove_cache("mounts").unwrap();
    assert!(store.path().join("cache/wasm").is_dir());
}

#[test]
fn scratch_is_private_and_goes_when_dropped() {
    let (_tmp, store) = store();
    let scratch = store.scratch("build").unwrap();
    let path = scratch.path().to_path_buf();
    assert!(path.starts_with(store.path().join("tmp")));
    assert_eq!(mode(&path), 0o700);
    scratch.dir().create_dir("ro").unwrap();
    scratch.dir().write("ro/f", b"x").unwrap();
    std::fs::set_permissions(path.join("ro"), std::fs::Permissions::from_mode(0o500)).unwrap();
    assert_eq!(std::fs::read(path.join("ro/f")).unwrap(), b"x");
    let other = store.scratch("build").unwrap();
    assert_ne!(other.path(), path, "each scratch is its own");
    drop(scratch);
    assert!(!path.exists(), "removed with its read-only contents");
    drop(other);
    assert_eq!(
        std::fs::read_dir(store.path().join("tmp")).unwrap().count(),
        0
    );
}

#[test]
fn scratch_file_leaves_no_name() {
    let (_tmp, store) = store();
    let mut f = store.scratch_file().unwrap();
    f.write_all(b"hello").unwrap();
    f.rewind().unwrap();
    let mut back = String::new();
    f.read_to_string(&mut back).unwrap();
    assert_eq!(back, "hello");
    assert_eq!(
        std::fs::read_dir(store.path().join("tmp")).unwrap().count(),
        0
    );
}
