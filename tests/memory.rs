//! Layers stream: importing a layer 16 times larger must not need more memory. Alone in its
//! own test binary, because it reads the peak RSS of this process's children.

mod common;

use common::{sh, Env};

/// Largest resident set of any child waited for so far, in KiB.
#[allow(unsafe_code)]
fn children_max_rss_kib() -> i64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage only writes the struct we pass, which outlives the call.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    assert_eq!(rc, 0);
    usage.ru_maxrss
}

#[test]
fn import_memory_stays_flat_with_layer_size() {
    let env = Env::new();
    let mut peaks = Vec::new();
    for mib in [16, 256] {
        let tree = env.path(&format!("tree{mib}"));
        std::fs::create_dir_all(&tree).unwrap();
        // Incompressible content, so compressed buffers cannot hide in a good ratio.
        sh(&format!(
            "head -c {}M /dev/urandom > {}/big",
            mib,
            tree.display()
        ));
        let tar = env.path(&format!("t{mib}.tar"));
        sh(&format!(
            "tar -C {} -cf {} . && rm -r {}",
            tree.display(),
            tar.display(),
            tree.display()
        ));
        env.ok(&["import", tar.to_str().unwrap(), &format!("big:{mib}")]);
        env.ok(&[
            "save",
            "-o",
            env.path("s.tar").to_str().unwrap(),
            &format!("big:{mib}"),
        ]);
        let other = Env::new();
        other.ok(&["load", "-i", env.path("s.tar").to_str().unwrap()]);
        peaks.push(children_max_rss_kib());
        std::fs::remove_file(&tar).unwrap();
    }
    let (small, big) = (peaks[0], peaks[1]);
    eprintln!("peak RSS: 16 MiB layer {small} KiB, 256 MiB layer {big} KiB");
    assert!(
        big - small < 24 * 1024,
        "memory grew with layer size: {small} KiB -> {big} KiB"
    );
}
