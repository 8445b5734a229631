//! Layer benchmark: Strata's layer code against the floor tools, in the same run.
//!
//! For two trees (10,000 small files; one 100 MiB file) it times
//! - making a gzip layer: `Store::layer_from_dir` (tar → sha256 diff_id → parallel gzip →
//!   sha256 → fsynced blob) against `tar -cf - | gzip -6 | tee OUT.gz | sha256sum`;
//! - applying it: `Store::unpack_layer` (verifies blob digest and diff_id while unpacking)
//!   against `mkdir D && tar -xzf OUT.gz -C D`,
//!
//! and prints the median wall time of each and their ratio. Run with
//! `cargo bench -p strata-runtime --bench layers` (or `bench/layers.sh`).

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use strata_runtime::compression::Compression;
use strata_runtime::layer::WriteOptions;
use strata_runtime::store::{LayerInfo, Store};

const WARMUP: usize = 1;
const RUNS: usize = 5;

const SMALL_FILES: usize = 10_000;
const SMALL_DIRS: usize = 100;
const BIG_FILE: usize = 100 << 20;

const PEER_MAKE: &str = "tar|gzip -6|sha256sum";
const PEER_APPLY: &str = "tar -xzf";

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it,
    // and should not sit through minutes of benchmarking.
    if !std::env::args().any(|a| a == "--bench") {
        println!("layers: benchmark skipped (run it with `cargo bench -p strata-runtime --bench layers`)");
        return;
    }
    for tool in ["tar", "gzip", "sha256sum", "tee"] {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output();
        assert!(
            found.is_ok_and(|o| o.status.success()),
            "{tool} is needed for this benchmark"
        );
    }

    // /var/tmp is disk-backed on most systems, where /tmp may be tmpfs; layers live on disk.
    let base = if Path::new("/var/tmp").is_dir() {
        PathBuf::from("/var/tmp")
    } else {
        std::env::temp_dir()
    };
    let work = tempfile::Builder::new()
        .prefix("strata-bench-layers-")
        .tempdir_in(&base)
        .expect("create work dir");
    let work = work.path();

    println!(
        "strata layer benchmark: median of {RUNS} runs after {WARMUP} warm-up, work dir {}",
        work.display()
    );
    println!(
        "cores: {}, {}, {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        first_line("tar --version"),
        first_line("gzip --version"),
    );
    println!("(strata's time includes hashing the uncompressed tar and fsyncing the blob; the pipelines do neither)");

    eprintln!("generating trees…");
    let small = work.join("small");
    let small_bytes = make_small_tree(&small);
    let big = work.join("big");
    let big_bytes = make_big_tree(&big);

    bench_tree(
        work,
        &format!("{SMALL_FILES} small files"),
        "small",
        &small,
        small_bytes,
    );
    bench_tree(work, "one 100 MiB file", "big", &big, big_bytes);
}

/// Make and apply a layer of `tree` both ways, and print the comparison.
fn bench_tree(work: &Path, label: &str, tag: &str, tree: &Path, content_bytes: u64) {
    eprintln!("benchmarking {label}…");
    let tree_dir = Dir::open_ambient_dir(tree, ambient_authority()).expect("open tree");
    let store_root = work.join(format!("store-{tag}"));
    let peer_gz = work.join(format!("peer-{tag}.tar.gz"));
    let peer_out = work.join(format!("peer-{tag}-out"));

    // Make: each strata run gets a fresh store, so the blob is really written each time.
    let mut layer: Option<LayerInfo> = None;
    let make_strata = || {
        remove(&store_root);
        let store = Store::open(&store_root).expect("open store");
        settle();
        let start = Instant::now();
        let info = store
            .layer_from_dir(&tree_dir, Compression::Gzip, &WriteOptions::default())
            .expect("make layer");
        let elapsed = start.elapsed();
        layer = Some(info);
        elapsed
    };
    let make_peer = || {
        remove(&peer_gz);
        settle();
        let start = Instant::now();
        sh(&format!(
            "tar -C {} -cf - . | gzip -6 | tee {} | sha256sum > /dev/null",
            q(tree),
            q(&peer_gz)
        ));
        start.elapsed()
    };
    let (strata, peer) = compare(make_strata, make_peer);
    print_case(
        &format!("make gzip layer, {label}"),
        strata,
        PEER_MAKE,
        peer,
    );
    // The store of the last run keeps its blob for the apply case below.
    let layer = layer.expect("made a layer");
    // An empty output could come from a failed `tar` that `sh` does not report (no pipefail).
    sh(&format!("gzip -t {}", q(&peer_gz)));
    let peer_size = fs::metadata(&peer_gz).expect("peer output").len();
    println!(
        "  compressed size: strata {}  gzip -6 {}  ({:.2}x of gzip's; {} of file content)",
        mib(layer.descriptor.size),
        mib(peer_size),
        layer.descriptor.size as f64 / peer_size as f64,
        mib(content_bytes),
    );

    // Apply: the unpacked layer is removed before each run so unpack_layer really unpacks.
    let store = Store::open(&store_root).expect("open store");
    let unpacked = store_root.join("layers").join(layer.diff_id.hex());
    let apply_strata = || {
        remove(&unpacked);
        settle();
        let start = Instant::now();
        let size = store
            .unpack_layer(&layer.descriptor, &layer.diff_id, None)
            .expect("unpack layer");
        let elapsed = start.elapsed();
        assert_eq!(size, content_bytes, "unpacked layer holds the whole tree");
        elapsed
    };
    let apply_peer = || {
        remove(&peer_out);
        settle();
        let start = Instant::now();
        sh(&format!(
            "mkdir {0} && tar -xzf {1} -C {0}",
            q(&peer_out),
            q(&peer_gz)
        ));
        start.elapsed()
    };
    let (strata, peer) = compare(apply_strata, apply_peer);
    print_case(
        &format!("apply gzip layer, {label}"),
        strata,
        PEER_APPLY,
        peer,
    );

    // Free the disk before the next tree.
    remove(&store_root);
    remove(&peer_gz);
    remove(&peer_out);
}

/// Median wall times of `a` and `b`, each a run that returns its own timed span. Runs
/// alternate so that drift (other load, thermal state, the disk) hits both sides alike.
fn compare(
    mut a: impl FnMut() -> Duration,
    mut b: impl FnMut() -> Duration,
) -> (Duration, Duration) {
    for _ in 0..WARMUP {
        a();
        b();
    }
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        ta.push(a());
        tb.push(b());
    }
    (median(ta), median(tb))
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn print_case(case: &str, strata: Duration, peer_name: &str, peer: Duration) {
    println!(
        "{case}: strata {:.3}s  {peer_name} {:.3}s  ratio {:.2} (strata/peer; <1 is faster)",
        strata.as_secs_f64(),
        peer.as_secs_f64(),
        strata.as_secs_f64() / peer.as_secs_f64(),
    );
}

/// Write back the previous run's dirty pages before timing the next, so one side does not
/// pay for the other's writeback. (Dropping the page cache needs root and a quiet system;
/// the warm-up run stands in for it: every run reads a cached tree.)
fn settle() {
    rustix::fs::sync();
}

fn remove(path: &Path) {
    let result = if path.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
    match result {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            panic!("remove {}: {e}", path.display())
        }
        _ => {}
    }
}

fn sh(script: &str) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "`{script}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn first_line(cmd: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("run sh");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("?")
        .to_string()
}

/// A path quoted for `sh`. Ours are made by tempfile and never hold a quote.
fn q(path: &Path) -> String {
    let s = path.to_str().expect("UTF-8 path");
    assert!(!s.contains('\''), "path with a quote: {s}");
    format!("'{s}'")
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

// ----- test trees -----

/// xorshift64: deterministic, so every run and every machine benchmarks the same bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const WORDS: &[&str] = &[
    "the",
    "layer",
    "store",
    "image",
    "container",
    "digest",
    "blob",
    "config",
    "manifest",
    "index",
    "root",
    "tar",
    "gzip",
    "path",
    "file",
    "directory",
    "mount",
    "overlay",
    "upper",
    "lower",
    "whiteout",
    "opaque",
    "entry",
    "header",
    "mode",
    "owner",
    "group",
    "size",
    "time",
    "stream",
    "write",
    "read",
    "open",
    "close",
    "build",
    "run",
    "copy",
    "from",
    "into",
    "with",
    "error",
    "result",
    "option",
    "value",
    "name",
    "tag",
    "version",
    "platform",
    "linux",
    "amd64",
    "arm64",
    "sha256",
    "verify",
    "unpack",
    "apply",
    "commit",
    "rename",
    "fsync",
    "lock",
    "index.json",
    "oci-layout",
    "usr",
    "bin",
    "lib",
];

/// Percent of runs that are random bytes; 20 makes gzip -6 shrink the content about 2.5x.
const RANDOM_PERCENT: u64 = 20;

/// Append `len` semi-compressible bytes: runs of words (which compress well) mixed with runs
/// of random bytes (which do not), like text and binaries in a real image.
fn fill(rng: &mut Rng, out: &mut Vec<u8>, len: usize) {
    let end = out.len() + len;
    while out.len() < end {
        if rng.below(100) < RANDOM_PERCENT {
            for _ in 0..=rng.below(4) {
                out.extend_from_slice(&rng.next().to_le_bytes());
            }
        } else {
            for _ in 0..=rng.below(8) {
                out.extend_from_slice(WORDS[rng.below(WORDS.len() as u64) as usize].as_bytes());
                out.push(if rng.below(10) == 0 { b'\n' } else { b' ' });
            }
        }
    }
    out.truncate(end);
}

/// 10,000 files of 100 B–8 KiB in 100 directories (10 × 10, so there is some depth).
/// Returns the bytes of file content.
fn make_small_tree(root: &Path) -> u64 {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut buf = Vec::with_capacity(8 << 10);
    let mut total = 0;
    for d in 0..SMALL_DIRS {
        let dir = root.join(format!("d{}/s{}", d / 10, d % 10));
        fs::create_dir_all(&dir).expect("create tree dir");
        for f in 0..SMALL_FILES / SMALL_DIRS {
            buf.clear();
            let len = 100 + rng.below((8 << 10) - 100 + 1) as usize;
            fill(&mut rng, &mut buf, len);
            fs::write(dir.join(format!("f{f:03}.dat")), &buf).expect("write tree file");
            total += len as u64;
        }
    }
    total
}

/// One 100 MiB file. Returns the bytes of file content.
fn make_big_tree(root: &Path) -> u64 {
    fs::create_dir_all(root).expect("create tree dir");
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut out = BufWriter::new(fs::File::create(root.join("big.dat")).expect("create big file"));
    let mut buf = Vec::with_capacity(1 << 20);
    let mut left = BIG_FILE;
    while left > 0 {
        buf.clear();
        let n = left.min(1 << 20);
        fill(&mut rng, &mut buf, n);
        out.write_all(&buf).expect("write big file");
        left -= n;
    }
    out.into_inner()
        .expect("flush big file")
        .sync_all()
        .expect("fsync big file");
    BIG_FILE as u64
}
