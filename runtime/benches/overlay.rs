//! Setting up a container root is lazy: the time to open the overlay over an image does not
//! depend on the image's size. Prints the set-up time over a 200 MiB layer and over a 1 KiB
//! one, and their ratio (target <= 1.2), with `cp -a` of the big image as the eager floor.
//!
//! cargo bench -p strata-runtime --bench overlay

use std::ffi::OsStr;
use std::path::Path;
use std::time::{Duration, Instant};

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use strata_runtime::compression::Compression;
use strata_runtime::Store;

const ROUNDS: usize = 300;

fn image_with_file(store: &Store, work: &Path, name: &str, bytes: usize) -> strata_runtime::Digest {
    let tree = work.join(name);
    std::fs::create_dir_all(tree.join("data")).unwrap();
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::write(tree.join("etc/hostname"), "bench\n").unwrap();
    let chunk: Vec<u8> = (0..1 << 20)
        .map(|i: u32| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let mut f = std::fs::File::create(tree.join("data/blob")).unwrap();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len());
        std::io::Write::write_all(&mut f, &chunk[..n]).unwrap();
        left -= n;
    }
    drop(f);
    let tar = work.join(format!("{name}.tar"));
    assert!(std::process::Command::new("tar")
        .arg("-C")
        .arg(&tree)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap()
        .success());
    let layer = store
        .import_layer(std::fs::File::open(&tar).unwrap(), Compression::None, None)
        .unwrap();
    layer.diff_id
}

/// Median time to create an empty upper directory, open the root over the layers and read
/// a file through it (so the root is really usable).
fn setup_time(store: &Store, work: &Path, diff_id: &strata_runtime::Digest) -> Duration {
    let mut times = Vec::new();
    for i in 0..ROUNDS {
        let upper = work.join(format!("upper-{}-{i}", diff_id.short()));
        let start = Instant::now();
        std::fs::create_dir(&upper).unwrap();
        let root = store
            .open_root(
                std::slice::from_ref(diff_id),
                Dir::open_ambient_dir(&upper, ambient_authority()).unwrap(),
            )
            .unwrap();
        let st = root.stat(OsStr::new("/etc/hostname"), true).unwrap();
        times.push(start.elapsed());
        assert_eq!(st.st_size, 6);
        std::fs::remove_dir(&upper).unwrap();
    }
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let work = tempfile::Builder::new()
        .prefix("strata-bench-overlay")
        .tempdir_in("/var/tmp")
        .unwrap();
    let store = Store::open(&work.path().join("store")).unwrap();
    let big = image_with_file(&store, work.path(), "big", 200 << 20);
    let small = image_with_file(&store, work.path(), "small", 1 << 10);
    let t_small = setup_time(&store, work.path(), &small);
    let t_big = setup_time(&store, work.path(), &big);
    let eager = {
        let start = Instant::now();
        let ok = std::process::Command::new("cp")
            .arg("-a")
            .arg(store.layer_path(&big))
            .arg(work.path().join("copy"))
            .status()
            .unwrap();
        assert!(ok.success());
        start.elapsed()
    };
    println!("container root set-up (median of {ROUNDS}): 1 KiB image {:.1}µs, 200 MiB image {:.1}µs, ratio {:.2} (target <= 1.2)",
        t_small.as_secs_f64() * 1e6, t_big.as_secs_f64() * 1e6, t_big.as_secs_f64() / t_small.as_secs_f64());
    println!(
        "for scale, copying the 200 MiB image (cp -a): {:.1}ms, {:.0}x the lazy set-up",
        eager.as_secs_f64() * 1e3,
        eager.as_secs_f64() / t_big.as_secs_f64()
    );
}
