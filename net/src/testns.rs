//! A network namespace made for one test (`unshare -n sleep infinity`), so no test touches
//! the machine's own links or firewall.

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A network namespace held by `unshare -n sleep infinity`, gone when dropped.
pub struct NetNs {
    holder: Child,
    path: PathBuf,
}

fn ns_link(path: &str) -> PathBuf {
    std::fs::read_link(path).unwrap()
}

impl NetNs {
    /// None (with a note) when not root: making a namespace and running nft need it.
    pub fn new(test: &str) -> Option<NetNs> {
        if !rustix::process::geteuid().is_root() {
            println!("{test}: skipped, needs root (a network namespace and nft)");
            return None;
        }
        let holder = Command::new("unshare")
            .args(["-n", "sleep", "infinity"])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare");
        let path = PathBuf::from(format!("/proc/{}/ns/net", holder.id()));
        let ns = NetNs { holder, path };
        // Until unshare has run, the holder is still in our namespace: wait for it to
        // have its own, so nothing here can reach the machine's firewall.
        let ours = ns_link("/proc/thread-self/ns/net");
        let t0 = Instant::now();
        while std::fs::read_link(&ns.path).ok().is_none_or(|l| l == ours) {
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "unshare -n did not start"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        ns.run(|| {
            let ok = Command::new("ip")
                .args(["link", "set", "lo", "up"])
                .status();
            assert!(ok.unwrap().success());
        });
        Some(ns)
    }

    /// Runs `f` on a thread that has moved into the namespace (so processes it starts
    /// are there too), checking that it got there first.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let want = std::fs::read_link(&self.path).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                let ours = ns_link("/proc/thread-self/ns/net");
                assert_ne!(want, ours);
                let file = std::fs::File::open(&self.path).unwrap();
                rustix::thread::move_into_link_name_space(
                    file.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .expect("setns");
                assert_eq!(ns_link("/proc/thread-self/ns/net"), want);
                f()
            })
            .join()
            .unwrap()
        })
    }

    /// The holder's pid (`nsenter -t`).
    pub fn pid(&self) -> u32 {
        self.holder.id()
    }

    /// The namespace, opened (for setns and IFLA_NET_NS_FD).
    pub fn open(&self) -> std::fs::File {
        std::fs::File::open(&self.path).unwrap()
    }

    /// A command in the namespace; its stdout, or a panic with its stderr.
    pub fn sh(&self, prog: &str, args: &[&str]) -> String {
        let out = self.run(|| Command::new(prog).args(args).output().unwrap());
        assert!(
            out.status.success(),
            "{prog} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}
