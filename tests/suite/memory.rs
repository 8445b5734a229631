//! Layers stream: importing a layer 16 times larger must not need more memory.

use std::io::Read as _;
use std::process::Stdio;

use crate::common::{sh, Env};

/// Run `strata ARGS…`, require success, and return the peak resident set of that process in
/// KiB. Read from wait4 for this one child: the whole process's RUSAGE_CHILDREN would count
/// the children of every other test running beside this one in the suite.
#[allow(unsafe_code)]
fn peak_rss_kib(env: &Env, args: &[&str]) -> i64 {
    let mut child = env
        .cmd(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run strata");
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain integers, valid when zeroed.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: wait4 only writes the status and the struct we pass, which outlive the
        // call. It reaps the child, and `child` is never waited on after this.
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if rc == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        assert_eq!(e.kind(), std::io::ErrorKind::Interrupted, "wait4: {e}");
    }
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "strata {args:?} failed ({status:#x}): {err}"
    );
    usage.ru_maxrss
}

#[test]
fn import_memory_stays_flat_with_layer_size() {
    let env = Env::new();
    let mut peaks = Vec::new();
    // The largest of every strata process so far, as RUSAGE_CHILDREN's maximum was.
    let mut peak = 0;
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
        peak = peak.max(peak_rss_kib(
            &env,
            &["import", tar.to_str().unwrap(), &format!("big:{mib}")],
        ));
        peak = peak.max(peak_rss_kib(
            &env,
            &[
                "save",
                "-o",
                env.path("s.tar").to_str().unwrap(),
                &format!("big:{mib}"),
            ],
        ));
        let other = Env::new();
        peak = peak.max(peak_rss_kib(
            &other,
            &["load", "-i", env.path("s.tar").to_str().unwrap()],
        ));
        peaks.push(peak);
        std::fs::remove_file(&tar).unwrap();
    }
    let (small, big) = (peaks[0], peaks[1]);
    eprintln!("peak RSS: 16 MiB layer {small} KiB, 256 MiB layer {big} KiB");
    assert!(
        big - small < 24 * 1024,
        "memory grew with layer size: {small} KiB -> {big} KiB"
    );
}
