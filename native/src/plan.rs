//! Everything the forked processes need, computed in the parent before it forks: paths,
//! mount options, ids, the environment. The children only apply it (plan, then apply), so
//! they allocate little and decide nothing, and the plan itself is unit-tested.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use strata_runtime::backend::{Stdio, Stream, Task};
use strata_runtime::oci_spec::runtime::{LinuxNamespaceType, PosixRlimitType, Spec};
use strata_runtime::{Error, Result};

use crate::idmap::IdMap;

/// The longest overlay option string the kernel takes through mount(2) (one page).
const MOUNT_DATA_MAX: usize = 4095;

#[derive(Debug)]
pub(crate) struct Plan {
    /// The store root: the children chdir here so overlay options use short relative paths.
    pub store_root: CString,
    /// The overlay's mount point, relative to the store root (one for all containers: each
    /// mounts its root there in its own mount namespace).
    pub rootfs: CString,
    pub overlay_options: CString,
    /// `CLONE_NEW*` flags unshared before the container's pid 1 is forked (user excluded).
    pub namespaces: libc::c_int,
    /// The caller is not root: a user namespace maps it to 0.
    pub id_map: Option<IdMap>,
    /// The parent must act (write id maps, join cgroups, attach the network) before the
    /// children go on.
    pub wait_for_parent: bool,
    /// The network namespace is made before the parent acts (it attaches it to a network),
    /// not with the others.
    pub attach_network: bool,
    /// `--network container:<id>`: the namespace the spec names by path, joined instead of
    /// made (opened here, so the children get it as an fd).
    pub join_network: Option<std::os::fd::OwnedFd>,
    /// Rootless `container:<id>`: the user namespace that owns `join_network` (the other
    /// container's), joined instead of a new one (its id map is already written).
    pub join_user: Option<std::os::fd::OwnedFd>,
    pub hostname: CString,
    /// The terminal's size at start (the spec's `consoleSize`: an API client's); none
    /// takes the caller's own terminal's.
    pub console_size: Option<(u16, u16)>,
    /// Files the runtime provides (hosts, hostname, resolv.conf): container path, content.
    /// They live in the container's /dev tmpfs, bound over the init layer's empty files.
    pub etc_files: Vec<(String, String)>,
    pub binds: Vec<BindMount>,
    /// Fresh tmpfs mounts (`--tmpfs`, `--mount type=tmpfs`, `RUN --mount=type=tmpfs`).
    pub tmpfs: Vec<TmpfsMount>,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    pub rlimits: Vec<(libc::__rlimit_resource_t, u64, u64)>,
    /// `USER` as the image or `-u` gave it; resolved through the container's /etc/passwd.
    pub user: String,
    pub args: Vec<CString>,
    pub env: Vec<CString>,
    /// The container's PATH, to find a program named without a slash.
    pub path: String,
    pub cwd: String,
    /// Capabilities kept in the bounding set (bit numbers).
    pub capabilities: u64,
    pub no_new_privs: bool,
    /// Docker's default profile, compiled before the fork.
    pub seccomp: Vec<seccompiler::BpfProgram>,
    pub tty: bool,
    pub stdin: bool,
    /// The fd it reads, if not the caller's own stdin (valid in the children, as below).
    pub stdin_fd: Option<libc::c_int>,
    /// The fds stdout and stderr go to (valid in the children: the parent holds them until
    /// the container ends); `None`: the caller's own.
    pub stdout: Option<libc::c_int>,
    pub stderr: Option<libc::c_int>,
    /// `exec`: a pidfd of the running container's init, whose namespaces the process joins
    /// instead of making its own root (valid in the children: the parent holds it).
    pub join: Option<libc::c_int>,
}

/// A tmpfs: where, its flags beyond nosuid and nodev, and tmpfs's own options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TmpfsMount {
    pub target: String,
    pub flags: libc::c_ulong,
    pub data: CString,
}

impl TmpfsMount {
    /// From the spec's options: `ro`, `noexec`, `nosuid`, `nodev` and their opposites are
    /// flags; the rest (`size=`, `mode=`, `uid=`, …) go to tmpfs, with docker's mode
    /// 1777 unless one is given.
    fn new(target: String, options: &[String]) -> Result<TmpfsMount> {
        let mut flags = 0;
        let mut data: Vec<&str> = Vec::new();
        for o in options {
            match o.as_str() {
                "ro" => flags |= libc::MS_RDONLY,
                "noexec" => flags |= libc::MS_NOEXEC,
                "rw" | "exec" | "nosuid" | "nodev" | "suid" | "dev" => {}
                other => data.push(other),
            }
        }
        if !data.iter().any(|d| d.starts_with("mode=")) {
            data.push("mode=1777");
        }
        Ok(TmpfsMount {
            target,
            flags,
            data: cstring(data.join(",").as_bytes())?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BindMount {
    pub source: CString,
    pub target: String,
    pub read_only: bool,
    pub directory: bool,
}

impl Plan {
    /// The plan for `task`; makes the shared init layer and mount point under `state` (the
    /// store root) once, and the task's work directory if missing.
    pub fn new(state: &Path, task: &Task<'_>, stdio: &Stdio, needs_cgroup: bool) -> Result<Plan> {
        let spec = task.spec;
        let store_root = state.to_path_buf();
        let rel = |p: &Path| -> PathBuf {
            p.strip_prefix(&store_root)
                .map(Path::to_path_buf)
                .unwrap_or_else(|_| p.to_path_buf())
        };
        let (init, mount_point) = shared_dirs(&store_root)?;
        let hostname = spec.hostname().clone().unwrap_or_default();
        let host_network = !has_namespace(spec, LinuxNamespaceType::Network);
        // Those the spec binds (the container's network writes its own) are left to it.
        let mut etc_files = etc_files(&hostname, host_network);
        etc_files.retain(|(name, _)| {
            !spec
                .mounts()
                .iter()
                .flatten()
                .any(|m| m.destination().as_path() == Path::new("/etc").join(name))
        });
        let work = &task.rootfs.work;
        match std::fs::create_dir(work) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(io(work, e)),
            _ => {}
        }
        // Root in a user namespace cannot mount the store's layers as host root does: it
        // maps itself in a namespace of its own, and reads the rootless store's xattrs.
        let id_map = if strata_runtime::privilege::privileged() {
            None
        } else {
            Some(IdMap::for_caller())
        };
        let mut lowers = vec![rel(&init)];
        lowers.extend(task.rootfs.lowers.iter().map(|d| rel(d)));
        let overlay_options = overlay_options(
            &lowers,
            &rel(&task.rootfs.upper),
            &rel(work),
            id_map.is_some(),
            task.rootfs.volatile,
        )?;

        let process = spec
            .process()
            .as_ref()
            .ok_or_else(|| Error::InvalidArgument("runtime spec without a process".into()))?;
        let mut namespaces = 0;
        let mut join_network = None;
        for ns in spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().clone())
            .unwrap_or_default()
        {
            if let (LinuxNamespaceType::Network, Some(path)) = (ns.typ(), ns.path()) {
                let file = std::fs::File::open(path).map_err(|e| io(path, e))?;
                join_network = Some(file.into());
                continue;
            }
            namespaces |= match ns.typ() {
                LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
                LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
                LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
                LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
                LinuxNamespaceType::Network => libc::CLONE_NEWNET,
                LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
                // The user namespace follows from who runs us, not from the spec.
                LinuxNamespaceType::User | LinuxNamespaceType::Time => 0,
            };
        }
        // The root filesystem needs its own mount namespace, whatever the spec says.
        namespaces |= libc::CLONE_NEWNS;
        let attach_network = task.network.is_some() && namespaces & libc::CLONE_NEWNET != 0;
        let join_user = match (&join_network, &id_map) {
            (Some(netns), Some(_)) => Some(owning_userns(netns)?),
            _ => None,
        };

        let binds = spec
            .mounts()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m.typ().as_deref() == Some("bind"))
            .map(|m| {
                let source = m.source().clone().unwrap_or_default();
                let meta = std::fs::metadata(&source).map_err(|e| io(&source, e))?;
                Ok(BindMount {
                    source: cstring(source.as_os_str().as_encoded_bytes())?,
                    target: m.destination().display().to_string(),
                    read_only: m
                        .options()
                        .as_ref()
                        .is_some_and(|o| o.iter().any(|x| x == "ro")),
                    directory: meta.is_dir(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let tmpfs = spec
            .mounts()
            .iter()
            .flatten()
            .filter(|m| m.typ().as_deref() == Some("tmpfs"))
            .map(|m| {
                TmpfsMount::new(
                    m.destination().display().to_string(),
                    m.options().as_deref().unwrap_or_default(),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let linux = spec.linux().clone().unwrap_or_default();
        let env: Vec<String> = process.env().clone().unwrap_or_default();
        let path = env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(strata_runtime::container::DEFAULT_PATH)
            .to_string();
        let capabilities = process
            .capabilities()
            .as_ref()
            .and_then(|c| c.bounding().clone())
            .unwrap_or_default()
            .iter()
            .map(|c| crate::caps::number(&serde_json::to_string(c).unwrap_or_default()))
            .collect::<Result<Vec<u32>>>()?
            .into_iter()
            .fold(0u64, |acc, n| acc | (1 << n));
        Ok(Plan {
            store_root: cstring(store_root.as_os_str().as_encoded_bytes())?,
            rootfs: cstring(rel(&mount_point).as_os_str().as_encoded_bytes())?,
            overlay_options,
            namespaces,
            wait_for_parent: id_map.is_some() || needs_cgroup || attach_network,
            attach_network,
            join_network,
            join_user,
            id_map,
            hostname: cstring(hostname.as_bytes())?,
            console_size: process.console_size().map(|b| {
                let clamp = |n: u64| n.min(u16::MAX as u64) as u16;
                (clamp(b.height()), clamp(b.width()))
            }),
            etc_files,
            binds,
            tmpfs,
            masked_paths: linux.masked_paths().clone().unwrap_or_default(),
            readonly_paths: linux.readonly_paths().clone().unwrap_or_default(),
            rlimits: process
                .rlimits()
                .clone()
                .unwrap_or_default()
                .iter()
                .map(|r| (rlimit_resource(r.typ()), r.soft(), r.hard()))
                .collect(),
            user: process.user().username().clone().unwrap_or_default(),
            args: process
                .args()
                .clone()
                .unwrap_or_default()
                .iter()
                .map(|a| cstring(a.as_bytes()))
                .collect::<Result<_>>()?,
            env: env
                .iter()
                .map(|e| cstring(e.as_bytes()))
                .collect::<Result<_>>()?,
            path,
            cwd: process.cwd().display().to_string(),
            capabilities,
            no_new_privs: process.no_new_privileges().unwrap_or(false),
            seccomp: crate::seccomp::docker_default()
                .map_err(|e| Error::Unsupported(format!("seccomp profile: {e}")))?,
            tty: process.terminal().unwrap_or(false),
            stdin: stdio.stdin.is_some(),
            stdin_fd: stdio.stdin.as_ref().and_then(raw),
            stdout: raw(&stdio.stdout),
            stderr: raw(&stdio.stderr),
            join: None,
        })
    }

    pub fn has_network_namespace(&self) -> bool {
        self.namespaces & libc::CLONE_NEWNET != 0
    }
}

/// The user namespace that owns namespace `ns` (NS_GET_USERNS).
#[allow(unsafe_code)]
fn owning_userns(ns: &std::os::fd::OwnedFd) -> Result<std::os::fd::OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd};
    const NS_GET_USERNS: libc::c_ulong = 0xb701;
    // SAFETY: NS_GET_USERNS takes no argument and returns a new descriptor or -1.
    let fd = unsafe { libc::ioctl(ns.as_raw_fd(), NS_GET_USERNS) };
    if fd < 0 {
        return Err(Error::io(
            "find the user namespace of the shared network namespace",
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: a descriptor just returned to us, owned by nobody else.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

fn raw(stream: &Stream) -> Option<libc::c_int> {
    use std::os::fd::AsRawFd;
    match stream {
        Stream::Inherit => None,
        Stream::Fd(fd) => Some(fd.as_raw_fd()),
    }
}

fn has_namespace(spec: &Spec, kind: LinuxNamespaceType) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|n| n.iter().any(|ns| ns.typ() == kind))
}

/// `lowerdir=…,upperdir=…,workdir=…` with paths relative to the store root, refused when it
/// would not fit the kernel's one page.
pub(crate) fn overlay_options(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    rootless: bool,
    volatile: bool,
) -> Result<CString> {
    let mut text = String::from("lowerdir=");
    for (i, l) in lowers.iter().enumerate() {
        let s = l.to_str().ok_or_else(|| {
            Error::InvalidArgument(format!("layer path {} is not UTF-8", l.display()))
        })?;
        if s.contains([',', ':']) {
            return Err(Error::InvalidArgument(format!(
                "layer path {s} cannot be given to overlayfs"
            )));
        }
        if i > 0 {
            text.push(':');
        }
        text.push_str(s);
    }
    text.push_str(&format!(
        ",upperdir={},workdir={}",
        upper.display(),
        work.display()
    ));
    // Rootless: opaque markers are user.overlay.* xattrs, as the store writes them.
    text.push_str(if rootless { ",userxattr" } else { "" });
    text.push_str(if volatile { ",volatile" } else { "" });
    if text.len() > MOUNT_DATA_MAX {
        return Err(Error::Unsupported(format!(
            "the image has too many layers ({}) for one overlay mount",
            lowers.len() - 1
        )));
    }
    cstring(text.as_bytes())
}

/// The store's shared native directories, made once: the init layer (the mount points
/// the runtime needs, so mounting never creates anything in a container's own upper layer,
/// docker's `-init` layer) and the mount point of container roots.
fn shared_dirs(store_root: &Path) -> Result<(PathBuf, PathBuf)> {
    let base = store_root.join("native");
    let (init, mount_point) = (base.join("init"), base.join("rootfs"));
    if init.exists() && mount_point.exists() {
        return Ok((init, mount_point));
    }
    std::fs::create_dir_all(&base).map_err(|e| io(&base, e))?;
    // Built aside and renamed into place, so a concurrent run never sees half of it.
    let tmp = tempfile::tempdir_in(&base).map_err(|e| io(&base, e))?;
    for d in ["proc", "sys", "dev", "etc"] {
        std::fs::create_dir(tmp.path().join(d)).map_err(|e| io(&tmp.path().join(d), e))?;
    }
    for f in ["etc/hosts", "etc/hostname", "etc/resolv.conf"] {
        std::fs::write(tmp.path().join(f), b"").map_err(|e| io(&tmp.path().join(f), e))?;
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755))
        .map_err(|e| io(tmp.path(), e))?;
    match std::fs::rename(tmp.path(), &init) {
        Ok(()) => {}
        Err(_) if init.is_dir() => {}
        Err(e) => return Err(io(&init, e)),
    }
    match std::fs::create_dir(&mount_point) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(io(&mount_point, e)),
        _ => Ok((init, mount_point)),
    }
}

/// hosts, hostname and resolv.conf as docker writes them for a container.
fn etc_files(hostname: &str, host_network: bool) -> Vec<(String, String)> {
    let hosts = if host_network {
        std::fs::read_to_string("/etc/hosts").unwrap_or_default()
    } else {
        format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::\tip6-localnet\nff00::\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n127.0.1.1\t{hostname}\n"
        )
    };
    let resolv = resolv_conf(
        &std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        host_network,
    );
    vec![
        ("hosts".into(), hosts),
        ("hostname".into(), format!("{hostname}\n")),
        ("resolv.conf".into(), resolv),
    ]
}

/// The host's resolv.conf; with a private network, loopback resolvers cannot be reached,
/// so they are dropped and docker's fallback (Google's public DNS) used when none is left.
pub(crate) fn resolv_conf(host: &str, host_network: bool) -> String {
    if host_network {
        return host.to_string();
    }
    let mut out = String::new();
    let mut servers = 0;
    for line in host.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some("nameserver") {
            let addr = words.next().unwrap_or("");
            if addr.starts_with("127.") || addr == "::1" {
                continue;
            }
            servers += 1;
        }
        out.push_str(line);
        out.push('\n');
    }
    if servers == 0 {
        out.push_str("nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    }
    out
}

fn rlimit_resource(t: PosixRlimitType) -> libc::__rlimit_resource_t {
    match t {
        PosixRlimitType::RlimitCpu => libc::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => libc::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => libc::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => libc::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => libc::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => libc::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => libc::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => libc::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => libc::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => libc::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => libc::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => libc::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

pub(crate) fn cstring(bytes: &[u8]) -> Result<CString> {
    CString::new(bytes).map_err(|_| {
        Error::InvalidArgument(format!(
            "{:?} contains a NUL byte",
            String::from_utf8_lossy(bytes)
        ))
    })
}

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::IoPath {
        path: path.into(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_options_are_relative_and_bounded() {
        let lowers = vec![
            PathBuf::from("containers/c/init"),
            PathBuf::from("layers/b/fs"),
            PathBuf::from("layers/a/fs"),
        ];
        let o = overlay_options(
            &lowers,
            Path::new("containers/c/upper"),
            Path::new("containers/c/work"),
            false,
            false,
        )
        .unwrap();
        assert_eq!(
            o.to_str().unwrap(),
            "lowerdir=containers/c/init:layers/b/fs:layers/a/fs,upperdir=containers/c/upper,workdir=containers/c/work"
        );
        let rootless =
            overlay_options(&lowers, Path::new("u"), Path::new("w"), true, false).unwrap();
        assert!(rootless.to_str().unwrap().ends_with(",userxattr"));
        let volatile =
            overlay_options(&lowers, Path::new("u"), Path::new("w"), true, true).unwrap();
        assert!(volatile.to_str().unwrap().ends_with(",userxattr,volatile"));
        let many: Vec<PathBuf> = (0..100)
            .map(|i| PathBuf::from(format!("layers/{:064x}/fs", i)))
            .collect();
        let err = overlay_options(&many, Path::new("u"), Path::new("w"), false, false).unwrap_err();
        assert!(err.to_string().contains("too many layers"), "{err}");
        let bad = overlay_options(
            &[PathBuf::from("a:b")],
            Path::new("u"),
            Path::new("w"),
            false,
            false,
        );
        assert!(bad.is_err());
    }

    #[test]
    fn resolv_conf_drops_loopback_resolvers_on_a_private_network() {
        let host = "search example.com\nnameserver 127.0.0.53\nnameserver 10.0.0.2\n";
        assert_eq!(
            resolv_conf(host, false),
            "search example.com\nnameserver 10.0.0.2\n"
        );
        assert_eq!(resolv_conf(host, true), host);
        assert!(resolv_conf("nameserver 127.0.0.1\n", false).contains("nameserver 8.8.8.8"));
    }
}
