//! Rootless `--network bridge` (design §7, 4a): one pasta (Debian's `passt` package) per
//! container, as podman 5 does. Between Ready and Go the runner points pasta at the network
//! namespace the native backend made (and at the user namespace that owns it): pasta copies
//! the host's addresses and routes into it (`--config-net`, loopback up too) and forwards the
//! published host ports to it (`-t`/`-u`); the container's traffic leaves through the host's
//! own sockets, so neither a bridge, NAT nor any privilege is involved. pasta daemonizes once
//! the namespace is set up and does not end with its target: the connection's drop stops it,
//! and reconcile stops those of containers nothing runs any more (a runner killed with -9).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};

use strata_runtime::container::{process_start, PortMapping, Proto};
use strata_runtime::{Error, Result};

/// A pasta that serves a container: its pid and when it started (never a reused pid).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pasta {
    pub pid: u32,
    pub start: u64,
}

/// pasta's forwards for one protocol: `FLAG [ADDR/]HOST:CONTAINER` per port, or `FLAG none`.
fn port_args(flag: &str, ports: &[PortMapping], proto: Proto) -> Vec<String> {
    let mut out = Vec::new();
    for p in ports.iter().filter(|p| p.proto == proto) {
        out.push(flag.to_string());
        out.push(match p.host_ip.filter(|a| !a.is_unspecified()) {
            Some(ip) => format!("{ip}/{}:{}", p.host_port, p.container_port),
            None => format!("{}:{}", p.host_port, p.container_port),
        });
    }
    if out.is_empty() {
        out = vec![flag.to_string(), "none".to_string()];
    }
    out
}

/// Whether pasta is on PATH (else slirp4netns serves: `slirp.rs`).
pub fn available() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("pasta").is_file()))
}

/// A container's namespaces for a helper process (pasta, slirp4netns): the network
/// namespace `netns` and the user namespace that owns it (NS_GET_USERNS), as descriptors that
/// are not close-on-exec, which the child opens as `/proc/self/fd/N` (another process's
/// `/proc/PID/fd` is closed to it once it has joined the user namespace). Dropped once the
/// helper has set up.
#[allow(unsafe_code)]
pub(crate) fn inheritable_namespaces(netns: BorrowedFd<'_>) -> Result<(OwnedFd, OwnedFd)> {
    const NS_GET_USERNS: libc::c_ulong = 0xb701;
    // SAFETY: NS_GET_USERNS takes no argument and returns a new descriptor or -1.
    let fd = unsafe { libc::ioctl(netns.as_raw_fd(), NS_GET_USERNS) };
    if fd < 0 {
        return Err(Error::io(
            "find the user namespace of the container's network namespace",
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: a descriptor just returned to us, owned by nobody else.
    let owner = unsafe { OwnedFd::from_raw_fd(fd) };
    let dup = |fd: BorrowedFd<'_>| rustix::io::dup(fd).map_err(|e| Error::io("dup", e.into()));
    Ok((dup(owner.as_fd())?, dup(netns)?))
}

/// `/proc/self/fd/N` for an inherited descriptor.
pub(crate) fn fd_path(fd: &OwnedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// Starts a pasta on `netns`, forwarding `ports`; its pid file and log go
/// to the container's directory `dir`. Returns once pasta has set the namespace up.
pub fn start(netns: BorrowedFd<'_>, ports: &[PortMapping], dir: &Path) -> Result<Pasta> {
    let (userns, netns) = inheritable_namespaces(netns)?;
    let pid_file = dir.join("pasta.pid");
    let log = std::fs::File::create(dir.join("pasta.log"))
        .map_err(|e| Error::io("create pasta.log", e))?;
    let status = Command::new("pasta")
        .args(["--config-net", "--quiet", "--no-map-gw"])
        .args(port_args("-t", ports, Proto::Tcp))
        .args(port_args("-u", ports, Proto::Udp))
        // Nothing from the container to the host's own ports.
        .args(["-T", "none", "-U", "none"])
        .arg("-P")
        .arg(&pid_file)
        .args(["--userns", &fd_path(&userns)])
        .args(["--netns", &fd_path(&netns)])
        .stdin(Stdio::null())
        // Never a pipe: the daemon keeps what it was given open.
        .stdout(Stdio::null())
        .stderr(log)
        .status()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::Unsupported(
                "rootless networking needs pasta (Debian's passt package), or use --network none|host"
                    .into(),
            ),
            _ => Error::io("run pasta", e),
        })?;
    if !status.success() {
        let text = std::fs::read_to_string(dir.join("pasta.log")).unwrap_or_default();
        let tun = std::fs::metadata("/dev/net/tun").ok().map(|m| {
            use std::os::unix::fs::PermissionsExt;
            m.permissions().mode() & 0o777
        });
        if let Some(mode) = tun.filter(|m| m & 0o006 != 0o006) {
            return Err(Error::Unsupported(format!(
                "pasta: cannot open /dev/net/tun (mode {mode:04o}): rootless networking needs it 0666 (Debian's default), or use --network none|host"
            )));
        }
        let last = text.lines().rfind(|l| !l.starts_with("Failed to send"));
        return Err(Error::io(
            format!("pasta {status}: {}", last.unwrap_or("see pasta.log")),
            std::io::Error::other("pasta failed"),
        ));
    }
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| Error::io("read pasta.pid", std::io::Error::other("no pid")))?;
    let start = process_start(pid)
        .ok_or_else(|| Error::io("find pasta", std::io::Error::other("it ended at once")))?;
    Ok(Pasta { pid, start })
}

impl Pasta {
    /// Ends it, if it is still this pasta, and waits until it is gone (SIGKILL after 1 s),
    /// so that its ports are free again when this returns.
    pub fn stop(&self) {
        // Debian's pasta runs as `passt.avx2` where the CPU has AVX2.
        let comm = std::fs::read_to_string(format!("/proc/{}/comm", self.pid)).unwrap_or_default();
        let pasta = comm.starts_with("pasta") || comm.starts_with("passt");
        if process_start(self.pid) == Some(self.start) && pasta {
            if let Some(pid) = rustix::process::Pid::from_raw(self.pid as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            let t0 = std::time::Instant::now();
            while process_start(self.pid) == Some(self.start) {
                if t0.elapsed() > std::time::Duration::from_secs(1) {
                    if let Some(pid) = rustix::process::Pid::from_raw(self.pid as i32) {
                        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                    }
                }
                if t0.elapsed() > std::time::Duration::from_secs(2) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_arguments_as_pasta_takes_them() {
        let ports = [
            PortMapping {
                host_ip: None,
                host_port: 8080,
                container_port: 80,
                proto: Proto::Tcp,
            },
            PortMapping {
                host_ip: Some("127.0.0.1".parse().unwrap()),
                host_port: 8081,
                container_port: 81,
                proto: Proto::Tcp,
            },
            PortMapping {
                host_ip: Some("0.0.0.0".parse().unwrap()),
                host_port: 5353,
                container_port: 53,
                proto: Proto::Udp,
            },
        ];
        assert_eq!(
            port_args("-t", &ports, Proto::Tcp),
            ["-t", "8080:80", "-t", "127.0.0.1/8081:81"]
        );
        assert_eq!(port_args("-u", &ports, Proto::Udp), ["-u", "5353:53"]);
        assert_eq!(port_args("-u", &ports[..1], Proto::Udp), ["-u", "none"]);
    }
}
