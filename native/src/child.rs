//! The two forked processes. The *intermediate* (forked by `strata`) enters the user
//! namespace when rootless, waits while the parent writes its id maps and cgroups, unshares
//! the other namespaces and forks the container's *init*, which is pid 1 of the new pid
//! namespace: it builds the root filesystem, becomes the container's user with docker's
//! capabilities and seccomp profile, and execs the program. The intermediate stays to reap
//! it and exits with its status.
//!
//! Both report to the parent over the `ipc` socket.

use std::convert::Infallible;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use crate::failure::{check, errno, Failure, FailureKind};
use crate::ipc::{self, Message};
use crate::plan::Plan;

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
            let _ = ipc::send(sock.as_fd(), &Message::Failed(f));
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
        if let Some(pidfd) = plan.join {
            // exec: until it runs its program, this is the strata binary: never to be read
            // or traced from inside (/proc/PID/exe, CVE-2019-5736).
            check(
                libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0),
                "make the process non-dumpable",
            )?;
            if plan.wait_for_parent {
                // Joins the container's cgroup first, as its children then do.
                let _ = ipc::send(sock, &Message::Ready);
                ipc::wait_for_go(sock)?;
            }
            let user = if plan.id_map.is_some() {
                libc::CLONE_NEWUSER
            } else {
                0
            };
            check(
                libc::setns(pidfd, plan.namespaces | user),
                "join the container's namespaces",
            )?;
            libc::close(pidfd);
        } else {
            match (&plan.id_map, &plan.join_user) {
                (Some(_), Some(userns)) => {
                    check(
                        libc::setns(userns.as_raw_fd(), libc::CLONE_NEWUSER),
                        "join the user namespace of the container it shares",
                    )?;
                }
                (Some(_), None) => {
                    check(
                        libc::unshare(libc::CLONE_NEWUSER),
                        "create a user namespace",
                    )?;
                }
                (None, _) => {}
            }
            let mut namespaces = plan.namespaces;
            if let Some(netns) = &plan.join_network {
                check(
                    libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET),
                    "join the network namespace of the container it shares",
                )?;
            }
            if plan.attach_network {
                // Made now (owned by the user namespace just made, if any) for the parent
                // to attach to a network before the container starts.
                check(
                    libc::unshare(libc::CLONE_NEWNET),
                    "create a network namespace",
                )?;
                namespaces &= !libc::CLONE_NEWNET;
            }
            if plan.wait_for_parent {
                let _ = ipc::send(sock, &Message::Ready);
                ipc::wait_for_go(sock)?;
            }
            check(libc::unshare(namespaces), "create namespaces")?;
        }
        match libc::fork() {
            -1 => Err(errno("fork the container's init")),
            0 => {
                let Err(failure) = init(plan, sock);
                let code = failure.exit_code();
                let _ = ipc::send(sock, &Message::Failed(failure));
                libc::_exit(code)
            }
            pid => {
                let _ = ipc::send(sock, &Message::Pid(pid));
                // Everything else it inherited, close-on-exec or not, stays open as long
                // as it waits: the monitor's pipes (a stdin that must reach its end when the
                // monitor closes it), sockets, its claim.
                libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
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
    // An exec's root and hostname are the running container's.
    if plan.join.is_none() {
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
    if plan.join.is_none() {
        make_workdir(&plan.cwd)?;
    }
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
            let master = OwnedFd::from_raw_fd(check(
                libc::open(
                    c"/dev/ptmx".as_ptr(),
                    libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
                ),
                "open /dev/ptmx",
            )?);
            check(libc::unlockpt(master.as_raw_fd()), "unlock the pty")?;
            let slave = check(
                libc::ioctl(
                    master.as_raw_fd(),
                    libc::TIOCGPTPEER,
                    libc::O_RDWR | libc::O_NOCTTY,
                ),
                "open the pty",
            )?;
            // Our copy of the master closes once it is sent.
            ipc::send(sock, &Message::Tty(master))
                .map_err(|e| Failure::other(format!("send the terminal to strata: {e}")))?;
            ipc::wait_for_go(sock)?;
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
        } else if let Some(fd) = plan.stdin_fd {
            check(libc::dup2(fd, 0), "attach stdin")?;
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
