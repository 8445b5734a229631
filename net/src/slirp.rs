//! The rootless fallback when pasta is not installed (design §7): slirp4netns 1.2, podman
//! 4's default. It is the runner's child, started on the container's namespaces like pasta
//! (`/proc/self/fd/N` paths), and ties its life to a pipe (`--exit-fd`): it ends when the
//! runner closes it, or dies (kill -9 of a monitor leaves nothing). The container gets
//! 10.0.2.100 on `tap0` behind slirp's NAT, slirp's resolver at 10.0.2.3, and no way to the
//! host's loopback; published ports are added through its API socket (`add_hostfwd`).

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use rustix::pipe::{pipe_with, PipeFlags};
use strata_runtime::container::PortMapping;
use strata_runtime::{Error, Result};

use crate::pasta::{fd_path, inheritable_namespaces};

/// Its API socket, in the container's directory.
const API_SOCKET: &str = "slirp.sock";

/// The `resolv.conf` of a container behind slirp4netns: its DNS forwarder.
pub const RESOLV_CONF: &str = "nameserver 10.0.2.3\n";

/// A running slirp4netns: closing `exit` ends it.
pub struct Slirp {
    child: Child,
    exit: Option<OwnedFd>,
}

fn io(what: &str) -> impl FnOnce(rustix::io::Errno) -> Error + '_ {
    move |e| Error::io(what.to_string(), e.into())
}

/// Starts slirp4netns on `netns` and publishes `ports` through it; its API socket and log
/// go to the container's directory `dir`. Returns once the namespace is configured.
pub fn start(netns: BorrowedFd<'_>, ports: &[PortMapping], dir: &Path) -> Result<Slirp> {
    let (userns, netns) = inheritable_namespaces(netns)?;
    let (ready, ready_writer) = pipe_with(PipeFlags::CLOEXEC).map_err(io("pipe"))?;
    let ready_child = rustix::io::dup(&ready_writer).map_err(io("dup"))?;
    drop(ready_writer);
    let (exit_reader, exit) = pipe_with(PipeFlags::CLOEXEC).map_err(io("pipe"))?;
    let exit_child = rustix::io::dup(&exit_reader).map_err(io("dup"))?;
    drop(exit_reader);
    // A socket path has at most 107 bytes, and the store's can be longer: slirp4netns runs
    // in the container's directory and makes it there, and we reach it through that
    // directory's descriptor.
    let here =
        std::fs::File::open(dir).map_err(|e| Error::io("open the container directory", e))?;
    let api = format!("/proc/self/fd/{}/{API_SOCKET}", here.as_raw_fd());
    let _ = std::fs::remove_file(dir.join(API_SOCKET));
    let log = std::fs::File::create(dir.join("slirp4netns.log"))
        .map_err(|e| Error::io("create slirp4netns.log", e))?;
    let child = Command::new("slirp4netns")
        .args(["--configure", "--mtu=65520", "--disable-host-loopback"])
        .arg(format!("--api-socket={API_SOCKET}"))
        .current_dir(dir)
        .arg(format!("--exit-fd={}", exit_child.as_raw_fd()))
        .arg(format!("--ready-fd={}", ready_child.as_raw_fd()))
        .arg("--netns-type=path")
        .arg(format!("--userns-path={}", fd_path(&userns)))
        .arg(fd_path(&netns))
        .arg("tap0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::Unsupported(
                "rootless networking needs pasta (Debian's passt package) or slirp4netns, or use --network none|host"
                    .into(),
            ),
            _ => Error::io("run slirp4netns", e),
        })?;
    drop((userns, netns, ready_child, exit_child));
    let mut slirp = Slirp {
        child,
        exit: Some(exit),
    };
    // "1" once configured; end of file if it failed. Bounded: a process forked meanwhile
    // elsewhere in the runner may hold the write end too.
    let mut byte = [0u8; 1];
    let mut wait = [rustix::event::PollFd::new(
        &ready,
        rustix::event::PollFlags::IN,
    )];
    let timeout = rustix::event::Timespec {
        tv_sec: 10,
        tv_nsec: 0,
    };
    let configured = rustix::event::poll(&mut wait, Some(&timeout)).is_ok_and(|n| n == 1)
        && std::fs::File::from(ready)
            .read(&mut byte)
            .is_ok_and(|n| n == 1);
    if !configured {
        let text = std::fs::read_to_string(dir.join("slirp4netns.log")).unwrap_or_default();
        slirp.stop();
        return Err(Error::io(
            format!(
                "slirp4netns: {}",
                text.lines().last().unwrap_or("see slirp4netns.log")
            ),
            std::io::Error::other("slirp4netns failed"),
        ));
    }
    for p in ports {
        if let Err(e) = add_hostfwd(Path::new(&api), p) {
            slirp.stop();
            return Err(e);
        }
    }
    Ok(slirp)
}

/// Publishes `p` through slirp4netns's API socket.
fn add_hostfwd(api: &Path, p: &PortMapping) -> Result<()> {
    let host = p.host_ip.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
    let request = serde_json::json!({
        "execute": "add_hostfwd",
        "arguments": {
            "proto": p.proto.to_string(),
            "host_addr": host.to_string(),
            "host_port": p.host_port,
            "guest_port": p.container_port,
        }
    });
    let what = format!("publish {host}:{} through slirp4netns", p.host_port);
    let mut conn = UnixStream::connect(api).map_err(|e| Error::io(what.clone(), e))?;
    conn.write_all(request.to_string().as_bytes())
        .and_then(|()| conn.shutdown(std::net::Shutdown::Write))
        .map_err(|e| Error::io(what.clone(), e))?;
    let mut reply = String::new();
    conn.read_to_string(&mut reply)
        .map_err(|e| Error::io(what.clone(), e))?;
    if reply.contains("\"return\"") {
        Ok(())
    } else {
        Err(Error::io(
            what,
            std::io::Error::other(reply.trim().to_string()),
        ))
    }
}

impl Slirp {
    /// Ends it (closing its exit pipe, which it watches) and reaps it.
    pub fn stop(&mut self) {
        drop(self.exit.take());
        let t0 = std::time::Instant::now();
        while matches!(self.child.try_wait(), Ok(None)) {
            if t0.elapsed() > std::time::Duration::from_secs(2) {
                let _ = self.child.kill();
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}
