//! The two forked processes. The *intermediate* (forked by `strata`) enters the user
//! namespace when rootless, waits while the parent writes its id maps and cgroups, unshares
//! the other namespaces and forks the container's *init*, which is pid 1 of the new pid
//! namespace: it builds the root filesystem, becomes the container's user with docker's
//! capabilities and seccomp profile, and execs the program. The intermediate stays to reap
//! it and exits with its status.
//!
//! Both report to the parent over a SOCK_SEQPACKET socket: `R` ready for maps, `P` + the
//! init's pid, `T` + the pty master (SCM_RIGHTS), `E` + kind + message when something fails.
//! The socket is close-on-exec, so the parent sees end-of-file once the program runs.

use std::convert::Infallible;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use crate::plan::Plan;

pub(crate) const READY: u8 = b'R';
pub(crate) const GO: u8 = b'G';
pub(crate) const PID: u8 = b'P';
pub(crate) const TTY: u8 = b'T';
pub(crate) const ERROR: u8 = b'E';

/// Why set-up failed, as the parent will report it.
#[derive(Debug)]
pub(crate) struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum FailureKind {
    Other = 0,
    NotFound = 1,
    NotExecutable = 2,
}

impl Failure {
    pub fn other(message: String) -> Failure {
        Failure {
            kind: FailureKind::Other,
            message,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![ERROR, self.kind as u8];
        out.extend_from_slice(self.message.as_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Failure {
        let kind = match bytes.get(1) {
            Some(1) => FailureKind::NotFound,
            Some(2) => FailureKind::NotExecutable,
            _ => FailureKind::Other,
        };
        Failure {
            kind,
            message: String::from_utf8_lossy(bytes.get(2..).unwrap_or_default()).into_owned(),
        }
    }
}

/// `what: strerror(errno)` for a failed call.
pub(crate) fn errno(what: impl std::fmt::Display) -> Failure {
    Failure::other(format!("{what}: {}", std::io::Error::last_os_error()))
}

/// Check a libc return value.
pub(crate) fn check(
    ret: libc::c_int,
    what: impl std::fmt::Display,
) -> Result<libc::c_int, Failure> {
    if ret < 0 {
        Err(errno(what))
    } else {
        Ok(ret)
    }
}

pub(crate) fn send(sock: BorrowedFd<'_>, bytes: &[u8]) -> bool {
    // SAFETY: a valid fd and buffer.
    let n = unsafe {
        libc::send(
            sock.as_raw_fd(),
            bytes.as_ptr().cast(),
            bytes.len(),
            libc::MSG_NOSIGNAL,
        )
    };
    n == bytes.len() as isize
}

/// One message (empty at end-of-file), and the fd it carried, if any.
pub(crate) fn recv(sock: BorrowedFd<'_>) -> std::io::Result<(Vec<u8>, Option<OwnedFd>)> {
    let mut buf = vec![0u8; 8192];
    let mut control = [0u8; 64];
    loop {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: msghdr points at live buffers of the given sizes.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = control.len();
        // SAFETY: as above.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let mut fd = None;
        // SAFETY: walking the control buffer the kernel filled, with libc's macros.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                    let raw = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const RawFd);
                    fd = Some(std::os::fd::FromRawFd::from_raw_fd(raw));
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        buf.truncate(n as usize);
        return Ok((buf, fd));
    }
}

fn send_fd(sock: BorrowedFd<'_>, tag: u8, fd: RawFd) -> Result<(), Failure> {
    let mut byte = [tag];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
    let mut control = vec![0u8; space];
    // SAFETY: msghdr points at live buffers; the cmsg header is written inside `control`.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut RawFd, fd);
        if libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) < 0 {
            return Err(errno("send the terminal to strata"));
        }
    }
    Ok(())
}

/// Wait for the parent's go-ahead.
fn wait_for_go(sock: BorrowedFd<'_>) -> Result<(), Failure> {
    match recv(sock) {
        Ok((m, _)) if m.first() == Some(&GO) => Ok(()),
        _ => Err(Failure::other("strata went away during set-up".into())),
    }
}

/// The signals the parent forwards: the intermediate ignores them (a terminal's Ctrl-C
/// reaches the whole process group, and the intermediate must outlive the container).
pub(crate) const FORWARDED: [libc::c_int; 7] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
];

/// The intermediate process. Never returns.
pub(crate) fn intermediate(plan: &Plan, sock: OwnedFd) -> ! {
    let code = match run_intermediate(plan, sock.as_fd()) {
        Ok(code) => code,
        Err(f) => {
            send(sock.as_fd(), &f.encode());
            125
        }
    };
    // SAFETY: leaving the forked child without running the parent's destructors.
    unsafe { libc::_exit(code) }
}

fn run_intermediate(plan: &Plan, sock: BorrowedFd<'_>) -> Result<i32, Failure> {
    // SAFETY: plain syscalls in a single-threaded child.
    unsafe {
        check(
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL),
            "set the parent-death signal",
        )?;
        for sig in FORWARDED {
            libc::signal(sig, libc::SIG_IGN);
        }
        if plan.id_map.is_some() {
            check(
                libc::unshare(libc::CLONE_NEWUSER),
                "create a user namespace",
            )?;
        }
        if plan.wait_for_parent {
            send(sock, &[READY]);
            wait_for_go(sock)?;
        }
        check(libc::unshare(plan.namespaces), "create namespaces")?;
        match libc::fork() {
            -1 => Err(errno("fork the container's init")),
            0 => {
                let Err(failure) = init(plan, sock);
                send(sock, &failure.encode());
                libc::_exit(if failure.kind == FailureKind::NotFound {
                    127
                } else if failure.kind == FailureKind::NotExecutable {
                    126
                } else {
                    125
                })
            }
            pid => {
                let mut msg = vec![PID];
                msg.extend_from_slice(&pid.to_le_bytes());
                send(sock, &msg);
                libc::close(sock.as_raw_fd());
                let mut status = 0;
                loop {
                    let r = libc::waitpid(pid, &mut status, 0);
                    if r == pid {
                        break;
                    }
                    if r < 0 && *libc::__errno_location() != libc::EINTR {
                        return Err(errno("wait for the container"));
                    }
                }
                Ok(if libc::WIFEXITED(status) {
                    libc::WEXITSTATUS(status)
                } else {
                    128 + libc::WTERMSIG(status)
                })
            }
        }
    }
}

/// The container's pid 1, up to the exec of its program.
fn init(plan: &Plan, sock: BorrowedFd<'_>) -> Result<Infallible, Failure> {
    // SAFETY: plain syscalls in a single-threaded child.
    unsafe {
        check(
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL),
            "set the parent-death signal",
        )?;
        // The program starts with default signal handling and nothing blocked.
        for sig in 1..=64 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        libc::setsid();
    }
    crate::rootfs::setup(plan)?;
    // SAFETY: a valid C string and length.
    unsafe {
        let h = plan.hostname.as_bytes();
        if plan.namespaces & libc::CLONE_NEWUTS != 0 {
            check(
                libc::sethostname(h.as_ptr().cast(), h.len()),
                "set the hostname",
            )?;
        }
    }
    if plan.has_network_namespace() {
        loopback_up()?;
    }
    for &(resource, soft, hard) in &plan.rlimits {
        let limit = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: a valid rlimit struct.
        check(
            unsafe { libc::setrlimit(resource, &limit) },
            format_args!("set rlimit {resource}"),
        )?;
    }
    let ids = resolve_user(&plan.user)?;
    let mut env = plan.env.clone();
    if !env.iter().any(|e| e.as_bytes().starts_with(b"HOME=")) {
        env.push(
            crate::plan::cstring(format!("HOME={}", ids.home).as_bytes())
                .map_err(|e| Failure::other(e.to_string()))?,
        );
    }
    make_workdir(&plan.cwd)?;
    stdio(plan, sock)?;
    become_user(plan, &ids)?;
    close_other_fds(sock.as_raw_fd());
    enter_workdir(&plan.cwd)?;
    if plan.no_new_privs {
        // SAFETY: a plain prctl.
        check(
            unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) },
            "set no_new_privs",
        )?;
    }
    for f in &plan.seccomp {
        seccompiler::apply_filter(f).map_err(|e| Failure::other(format!("seccomp: {e}")))?;
    }
    Err(exec(plan, &env))
}

/// Docker brings the loopback interface of a private network up.
fn loopback_up() -> Result<(), Failure> {
    // SAFETY: an ifreq for "lo" on a throwaway socket.
    unsafe {
        let fd = check(
            libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0),
            "open a socket",
        )?;
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        let r = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req);
        if r == 0 {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            libc::ioctl(fd, libc::SIOCSIFFLAGS, &mut req);
        }
        libc::close(fd);
    }
    Ok(())
}

/// `USER` through the container's own /etc/passwd and /etc/group (after pivot_root, so these
/// are the image's files, never the host's).
fn resolve_user(user: &str) -> Result<strata_runtime::users::Ids, Failure> {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    if user.is_empty() {
        let passwd = read("/etc/passwd");
        return Ok(strata_runtime::users::resolve("0", &passwd, "").unwrap_or(
            strata_runtime::users::Ids {
                uid: 0,
                gid: 0,
                groups: Vec::new(),
                home: "/root".into(),
            },
        ));
    }
    strata_runtime::users::resolve(user, &read("/etc/passwd"), &read("/etc/group"))
        .map_err(|e| Failure::other(e.to_string()))
}

/// docker creates a missing working directory.
fn make_workdir(cwd: &str) -> Result<(), Failure> {
    let mut at = String::new();
    for part in cwd.split('/').filter(|p| !p.is_empty()) {
        at.push('/');
        at.push_str(part);
        let c = CString::new(at.as_bytes())
            .map_err(|_| Failure::other("bad working directory".into()))?;
        // SAFETY: a valid C string.
        if unsafe { libc::mkdir(c.as_ptr(), 0o755) } < 0
            && std::io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST)
        {
            return Err(errno(format_args!("create working directory {cwd}")));
        }
    }
    Ok(())
}

/// chdir, then make sure the directory is inside the container's root (a leaked fd in
/// `/proc/self/fd/N` would show as "(unreachable)", CVE-2024-21626).
fn enter_workdir(cwd: &str) -> Result<(), Failure> {
    let c = CString::new(cwd).map_err(|_| Failure::other("bad working directory".into()))?;
    // SAFETY: a valid C string.
    check(
        unsafe { libc::chdir(c.as_ptr()) },
        format_args!("chdir to {cwd}"),
    )?;
    let here = std::env::current_dir().map_err(|e| Failure::other(format!("getcwd: {e}")))?;
    if !here.is_absolute() || here.to_string_lossy().starts_with("(unreachable)") {
        return Err(Failure::other(format!(
            "working directory {cwd} is outside the container"
        )));
    }
    Ok(())
}

/// stdin from /dev/null unless `-i`; with `-t`, a pty made in the container's own devpts,
/// whose master goes to strata.
fn stdio(plan: &Plan, sock: BorrowedFd<'_>) -> Result<(), Failure> {
    // SAFETY: opening and dup'ing fds in the container's /dev.
    unsafe {
        if plan.tty {
            let master = check(
                libc::open(
                    c"/dev/ptmx".as_ptr(),
                    libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
                ),
                "open /dev/ptmx",
            )?;
            check(libc::unlockpt(master), "unlock the pty")?;
            let slave = check(
                libc::ioctl(master, libc::TIOCGPTPEER, libc::O_RDWR | libc::O_NOCTTY),
                "open the pty",
            )?;
            send_fd(sock, TTY, master)?;
            libc::close(master);
            wait_for_go(sock)?;
            check(
                libc::ioctl(slave, libc::TIOCSCTTY, 0),
                "set the controlling terminal",
            )?;
            for fd in 0..3 {
                check(libc::dup2(slave, fd), "attach the terminal")?;
            }
            if slave > 2 {
                libc::close(slave);
            }
        } else if !plan.stdin {
            let null = check(
                libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC),
                "open /dev/null",
            )?;
            check(libc::dup2(null, 0), "attach stdin")?;
            libc::close(null);
        }
        if !plan.tty {
            // The run's own output fds (a build step's pipe); dup2 clears close-on-exec.
            for (fd, to) in [(plan.stdout, 1), (plan.stderr, 2)] {
                if let Some(fd) = fd {
                    check(libc::dup2(fd, to), "attach the output")?;
                }
            }
        }
    }
    Ok(())
}

/// Drop every capability outside the plan's set from the bounding set, then switch to the
/// container's user. At exec, root gets exactly the bounding set and other users none.
fn become_user(plan: &Plan, ids: &strata_runtime::users::Ids) -> Result<(), Failure> {
    // SAFETY: plain syscalls.
    unsafe {
        for cap in 0..64u32 {
            if plan.capabilities & (1 << cap) == 0 {
                let r = libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0);
                if r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
                    break; // past the kernel's last capability
                }
                check(r, format_args!("drop capability {cap}"))?;
            }
        }
        let setgroups_allowed = plan.id_map.as_ref().is_none_or(|m| m.setgroups_allowed());
        if setgroups_allowed {
            check(
                libc::setgroups(ids.groups.len(), ids.groups.as_ptr()),
                "set supplementary groups",
            )?;
        }
        check(
            libc::setresgid(ids.gid, ids.gid, ids.gid),
            format_args!("set group {}", ids.gid),
        )?;
        check(
            libc::setresuid(ids.uid, ids.uid, ids.uid),
            format_args!("set user {}", ids.uid),
        )?;
    }
    Ok(())
}

/// Close every fd but 0-2 and the report socket (which closes itself at exec).
fn close_other_fds(keep: RawFd) {
    // SAFETY: close_range on ranges that exclude `keep`.
    unsafe {
        if keep > 3 {
            libc::syscall(libc::SYS_close_range, 3u32, (keep - 1) as u32, 0u32);
        }
        libc::syscall(libc::SYS_close_range, (keep + 1) as u32, u32::MAX, 0u32);
    }
}

/// execve the program, found through the container's PATH when it has no slash, with
/// docker's messages when it cannot run.
fn exec(plan: &Plan, env: &[CString]) -> Failure {
    let Some(program) = plan.args.first() else {
        return Failure::other("no command specified".into());
    };
    let name = program.to_string_lossy().into_owned();
    let mut argv: Vec<*const libc::c_char> = plan.args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());
    let candidates: Vec<CString> = if name.contains('/') {
        vec![program.clone()]
    } else {
        plan.path
            .split(':')
            .filter(|d| !d.is_empty())
            .filter_map(|d| CString::new(format!("{d}/{name}")).ok())
            .collect()
    };
    let mut denied = false;
    for c in &candidates {
        // SAFETY: NUL-terminated argv/envp of live C strings.
        unsafe { libc::execve(c.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) => continue,
            Some(libc::EACCES) => {
                denied = true;
                continue;
            }
            _ => {
                return Failure {
                    kind: FailureKind::NotExecutable,
                    message: format!("exec: {name:?}: {}", std::io::Error::last_os_error()),
                }
            }
        }
    }
    if denied {
        Failure {
            kind: FailureKind::NotExecutable,
            message: format!("exec: {name:?}: permission denied"),
        }
    } else if name.contains('/') {
        Failure {
            kind: FailureKind::NotFound,
            message: format!("exec: {name:?}: stat {name}: no such file or directory"),
        }
    } else {
        Failure {
            kind: FailureKind::NotFound,
            message: format!("exec: {name:?}: executable file not found in $PATH"),
        }
    }
}

/// `CAP_CHOWN` → 0, …, as in linux/capability.h.
pub(crate) fn capability_number(name: &str) -> strata_runtime::Result<u32> {
    const NAMES: [&str; 41] = [
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "KILL",
        "SETGID",
        "SETUID",
        "SETPCAP",
        "LINUX_IMMUTABLE",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_ADMIN",
        "NET_RAW",
        "IPC_LOCK",
        "IPC_OWNER",
        "SYS_MODULE",
        "SYS_RAWIO",
        "SYS_CHROOT",
        "SYS_PTRACE",
        "SYS_PACCT",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_NICE",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "MKNOD",
        "LEASE",
        "AUDIT_WRITE",
        "AUDIT_CONTROL",
        "SETFCAP",
        "MAC_OVERRIDE",
        "MAC_ADMIN",
        "SYSLOG",
        "WAKE_ALARM",
        "BLOCK_SUSPEND",
        "AUDIT_READ",
        "PERFMON",
        "BPF",
        "CHECKPOINT_RESTORE",
    ];
    let bare = name.trim_matches('"').trim_start_matches("CAP_");
    NAMES
        .iter()
        .position(|n| *n == bare)
        .map(|n| n as u32)
        .ok_or_else(|| strata_runtime::Error::InvalidArgument(format!("unknown capability {name}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_numbers() {
        assert_eq!(capability_number("\"CAP_CHOWN\"").unwrap(), 0);
        assert_eq!(capability_number("CAP_AUDIT_WRITE").unwrap(), 29);
        assert_eq!(capability_number("CAP_SYS_ADMIN").unwrap(), 21);
        assert!(capability_number("CAP_NOPE").is_err());
    }

    #[test]
    fn failures_round_trip() {
        let f = Failure {
            kind: FailureKind::NotFound,
            message: "exec: \"x\": executable file not found in $PATH".into(),
        };
        let back = Failure::decode(&f.encode());
        assert_eq!(back.kind, FailureKind::NotFound);
        assert_eq!(back.message, f.message);
    }
}
