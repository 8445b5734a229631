//! Docker's default seccomp profile (moby `profiles/seccomp/default.json`) for the default
//! capability set: an allowlist, every other system call fails with EPERM. `clone` may not
//! make namespaces, `socket` may not open AF_VSOCK, `personality` takes docker's few values,
//! and `clone3` fails with ENOSYS so that C libraries fall back to `clone`, whose flags the
//! filter can see.
//!
//! The filter is one classic-BPF program that finds the call's number by binary search over
//! ranges of equal verdict (144 instructions), not a linear chain of one comparison
//! per call (1,500): the kernel checks, JIT-compiles and emulates the whole program for
//! every system call number when it is installed (its verdict cache), so the chain cost
//! 0.8 ms per container start, the tree 0.1 ms.

use seccompiler::{sock_filter, BpfProgram};

macro_rules! syscalls {
    ($($name:ident),* $(,)?) => { &[$(libc::$name),*] };
}

/// Allowed whatever their arguments.
const ALLOWED: &[libc::c_long] = syscalls![
    SYS_accept,
    SYS_accept4,
    SYS_access,
    SYS_adjtimex,
    SYS_alarm,
    SYS_bind,
    SYS_brk,
    SYS_capget,
    SYS_capset,
    SYS_chdir,
    SYS_chmod,
    SYS_chown,
    SYS_chroot,
    SYS_clock_adjtime,
    SYS_clock_getres,
    SYS_clock_gettime,
    SYS_clock_nanosleep,
    SYS_close,
    SYS_close_range,
    SYS_connect,
    SYS_copy_file_range,
    SYS_creat,
    SYS_dup,
    SYS_dup2,
    SYS_dup3,
    SYS_epoll_create,
    SYS_epoll_create1,
    SYS_epoll_ctl,
    SYS_epoll_ctl_old,
    SYS_epoll_pwait,
    SYS_epoll_pwait2,
    SYS_epoll_wait,
    SYS_epoll_wait_old,
    SYS_eventfd,
    SYS_eventfd2,
    SYS_execve,
    SYS_execveat,
    SYS_exit,
    SYS_exit_group,
    SYS_faccessat,
    SYS_faccessat2,
    SYS_fadvise64,
    SYS_fallocate,
    SYS_fanotify_mark,
    SYS_fchdir,
    SYS_fchmod,
    SYS_fchmodat,
    SYS_fchown,
    SYS_fchownat,
    SYS_fcntl,
    SYS_fdatasync,
    SYS_fgetxattr,
    SYS_flistxattr,
    SYS_flock,
    SYS_fork,
    SYS_fremovexattr,
    SYS_fsetxattr,
    SYS_fstat,
    SYS_fstatfs,
    SYS_fsync,
    SYS_ftruncate,
    SYS_futex,
    SYS_futex_waitv,
    SYS_futimesat,
    SYS_getcpu,
    SYS_getcwd,
    SYS_getdents,
    SYS_getdents64,
    SYS_getegid,
    SYS_geteuid,
    SYS_getgid,
    SYS_getgroups,
    SYS_getitimer,
    SYS_getpeername,
    SYS_getpgid,
    SYS_getpgrp,
    SYS_getpid,
    SYS_getppid,
    SYS_getpriority,
    SYS_getrandom,
    SYS_getresgid,
    SYS_getresuid,
    SYS_getrlimit,
    SYS_get_robust_list,
    SYS_getrusage,
    SYS_getsid,
    SYS_getsockname,
    SYS_getsockopt,
    SYS_get_thread_area,
    SYS_gettid,
    SYS_gettimeofday,
    SYS_getuid,
    SYS_getxattr,
    SYS_inotify_add_watch,
    SYS_inotify_init,
    SYS_inotify_init1,
    SYS_inotify_rm_watch,
    SYS_io_cancel,
    SYS_ioctl,
    SYS_io_destroy,
    SYS_io_getevents,
    SYS_ioprio_get,
    SYS_ioprio_set,
    SYS_io_setup,
    SYS_io_submit,
    SYS_kill,
    SYS_landlock_add_rule,
    SYS_landlock_create_ruleset,
    SYS_landlock_restrict_self,
    SYS_lchown,
    SYS_lgetxattr,
    SYS_link,
    SYS_linkat,
    SYS_listen,
    SYS_listxattr,
    SYS_llistxattr,
    SYS_lremovexattr,
    SYS_lseek,
    SYS_lsetxattr,
    SYS_lstat,
    SYS_madvise,
    SYS_membarrier,
    SYS_memfd_create,
    SYS_memfd_secret,
    SYS_mincore,
    SYS_mkdir,
    SYS_mkdirat,
    SYS_mknod,
    SYS_mknodat,
    SYS_mlock,
    SYS_mlock2,
    SYS_mlockall,
    SYS_mmap,
    SYS_mprotect,
    SYS_mq_getsetattr,
    SYS_mq_notify,
    SYS_mq_open,
    SYS_mq_timedreceive,
    SYS_mq_timedsend,
    SYS_mq_unlink,
    SYS_mremap,
    SYS_msgctl,
    SYS_msgget,
    SYS_msgrcv,
    SYS_msgsnd,
    SYS_msync,
    SYS_munlock,
    SYS_munlockall,
    SYS_munmap,
    SYS_name_to_handle_at,
    SYS_nanosleep,
    SYS_newfstatat,
    SYS_open,
    SYS_openat,
    SYS_openat2,
    SYS_pause,
    SYS_pidfd_open,
    SYS_pidfd_send_signal,
    SYS_pipe,
    SYS_pipe2,
    SYS_pkey_alloc,
    SYS_pkey_free,
    SYS_pkey_mprotect,
    SYS_poll,
    SYS_ppoll,
    SYS_prctl,
    SYS_pread64,
    SYS_preadv,
    SYS_preadv2,
    SYS_prlimit64,
    SYS_process_mrelease,
    SYS_process_vm_readv,
    SYS_process_vm_writev,
    SYS_pselect6,
    SYS_ptrace,
    SYS_pwrite64,
    SYS_pwritev,
    SYS_pwritev2,
    SYS_read,
    SYS_readahead,
    SYS_readlink,
    SYS_readlinkat,
    SYS_readv,
    SYS_recvfrom,
    SYS_recvmmsg,
    SYS_recvmsg,
    SYS_remap_file_pages,
    SYS_removexattr,
    SYS_rename,
    SYS_renameat,
    SYS_renameat2,
    SYS_restart_syscall,
    SYS_rmdir,
    SYS_rseq,
    SYS_rt_sigaction,
    SYS_rt_sigpending,
    SYS_rt_sigprocmask,
    SYS_rt_sigqueueinfo,
    SYS_rt_sigreturn,
    SYS_rt_sigsuspend,
    SYS_rt_sigtimedwait,
    SYS_rt_tgsigqueueinfo,
    SYS_sched_getaffinity,
    SYS_sched_getattr,
    SYS_sched_getparam,
    SYS_sched_get_priority_max,
    SYS_sched_get_priority_min,
    SYS_sched_getscheduler,
    SYS_sched_rr_get_interval,
    SYS_sched_setaffinity,
    SYS_sched_setattr,
    SYS_sched_setparam,
    SYS_sched_setscheduler,
    SYS_sched_yield,
    SYS_seccomp,
    SYS_select,
    SYS_semctl,
    SYS_semget,
    SYS_semop,
    SYS_semtimedop,
    SYS_sendfile,
    SYS_sendmmsg,
    SYS_sendmsg,
    SYS_sendto,
    SYS_setfsgid,
    SYS_setfsuid,
    SYS_setgid,
    SYS_setgroups,
    SYS_setitimer,
    SYS_setpgid,
    SYS_setpriority,
    SYS_setregid,
    SYS_setresgid,
    SYS_setresuid,
    SYS_setreuid,
    SYS_setrlimit,
    SYS_set_robust_list,
    SYS_setsid,
    SYS_setsockopt,
    SYS_set_thread_area,
    SYS_set_tid_address,
    SYS_setuid,
    SYS_setxattr,
    SYS_shmat,
    SYS_shmctl,
    SYS_shmdt,
    SYS_shmget,
    SYS_shutdown,
    SYS_sigaltstack,
    SYS_signalfd,
    SYS_signalfd4,
    SYS_socketpair,
    SYS_splice,
    SYS_stat,
    SYS_statfs,
    SYS_statx,
    SYS_symlink,
    SYS_symlinkat,
    SYS_sync,
    SYS_sync_file_range,
    SYS_syncfs,
    SYS_sysinfo,
    SYS_tee,
    SYS_tgkill,
    SYS_time,
    SYS_timer_create,
    SYS_timer_delete,
    SYS_timer_getoverrun,
    SYS_timer_gettime,
    SYS_timer_settime,
    SYS_timerfd_create,
    SYS_timerfd_gettime,
    SYS_timerfd_settime,
    SYS_times,
    SYS_tkill,
    SYS_truncate,
    SYS_umask,
    SYS_uname,
    SYS_unlink,
    SYS_unlinkat,
    SYS_utime,
    SYS_utimensat,
    SYS_utimes,
    SYS_vfork,
    SYS_vmsplice,
    SYS_wait4,
    SYS_waitid,
    SYS_write,
    SYS_writev,
    SYS_arch_prctl,
    SYS_modify_ldt,
    SYS_kcmp,
];

/// The namespace flags `clone` may not carry (docker's mask 0x7E020000).
const NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u64;

/// The values `personality` may take (docker's PER_LINUX, UNAME26, PER_LINUX32, their
/// combination, and the query 0xffffffff).
const PERSONALITIES: [u32; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 62 | 0x8000_0000 | 0x4000_0000;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 183 | 0x8000_0000 | 0x4000_0000;

// Classic BPF (linux/bpf_common.h) and seccomp_data offsets (linux/seccomp.h).
const LD_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const JA: u16 = 0x05;
const JEQ: u16 = 0x05 | 0x10;
const JGE: u16 = 0x05 | 0x30;
const JSET: u16 = 0x05 | 0x40;
const RET: u16 = 0x06;
const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;
/// The low 32 bits of the first argument (little-endian).
const OFFSET_ARG0: u32 = 16;

const RET_ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const RET_EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
const RET_ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
const RET_KILL_PROCESS: u32 = libc::SECCOMP_RET_KILL_PROCESS;

/// What the filter does with one system call number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Return(u32),
    Clone,
    Socket,
    Personality,
}

fn verdict(nr: i64, allowed: &[bool]) -> Verdict {
    match nr {
        libc::SYS_clone => Verdict::Clone,
        libc::SYS_socket => Verdict::Socket,
        libc::SYS_personality => Verdict::Personality,
        libc::SYS_clone3 => Verdict::Return(RET_ENOSYS),
        n if allowed.get(n as usize) == Some(&true) => Verdict::Return(RET_ALLOW),
        _ => Verdict::Return(RET_EPERM),
    }
}

/// The profile, as one program: a call from another architecture kills the process (as
/// seccompiler's filters did), numbers past the table's (x32's included) get EPERM.
pub(crate) fn docker_default() -> Result<Vec<BpfProgram>, seccompiler::Error> {
    let top = ALLOWED
        .iter()
        .chain(&[
            libc::SYS_clone,
            libc::SYS_socket,
            libc::SYS_personality,
            libc::SYS_clone3,
        ])
        .copied()
        .max()
        .unwrap_or(0);
    // Indexed by number: the list is searched once, not once per number.
    let mut allowed = vec![false; top as usize + 1];
    for &n in ALLOWED {
        allowed[n as usize] = true;
    }
    // Ranges of equal verdict: (first number, verdict), the last one (EPERM, as `top + 1` is
    // past the table) open-ended.
    let mut ranges: Vec<(u32, Verdict)> = Vec::new();
    for nr in 0..=top + 1 {
        let v = verdict(nr, &allowed);
        if ranges.last().is_none_or(|&(_, last)| last != v) {
            ranges.push((nr as u32, v));
        }
    }
    let mut program = vec![
        stmt(LD_ABS, OFFSET_ARCH),
        jump(JEQ, AUDIT_ARCH, 1, 0),
        stmt(RET, RET_KILL_PROCESS),
        stmt(LD_ABS, OFFSET_NR),
    ];
    program.extend(search(&ranges));
    // BPF_MAXINSNS: the kernel refuses longer programs.
    if program.len() > 4096 {
        return Err(seccompiler::Error::Backend(
            seccompiler::BackendError::FilterTooLarge(program.len()),
        ));
    }
    Ok(vec![program])
}

/// A binary search over `ranges` for the number in the accumulator; every leaf returns.
fn search(ranges: &[(u32, Verdict)]) -> Vec<sock_filter> {
    if let [(_, v)] = ranges {
        return leaf(*v);
    }
    let mid = ranges.len() / 2;
    let (below, above) = (search(&ranges[..mid]), search(&ranges[mid..]));
    let mut out = Vec::with_capacity(below.len() + above.len() + 2);
    match u8::try_from(below.len()) {
        Ok(skip) => out.push(jump(JGE, ranges[mid].0, skip, 0)),
        // A conditional jump reaches 255 instructions at most; JA reaches any.
        Err(_) => {
            out.push(jump(JGE, ranges[mid].0, 0, 1));
            out.push(stmt(JA, below.len() as u32));
        }
    }
    out.extend(below);
    out.extend(above);
    out
}

/// The instructions for one range's verdict, checking the first argument where docker does.
fn leaf(v: Verdict) -> Vec<sock_filter> {
    let arg0 = stmt(LD_ABS, OFFSET_ARG0);
    match v {
        Verdict::Return(r) => vec![stmt(RET, r)],
        // The mask is in the low half, so the high half cannot match it.
        Verdict::Clone => vec![
            arg0,
            jump(JSET, NAMESPACE_FLAGS as u32, 0, 1),
            stmt(RET, RET_EPERM),
            stmt(RET, RET_ALLOW),
        ],
        Verdict::Socket => vec![
            arg0,
            jump(JEQ, libc::AF_VSOCK as u32, 0, 1),
            stmt(RET, RET_EPERM),
            stmt(RET, RET_ALLOW),
        ],
        Verdict::Personality => {
            let n = PERSONALITIES.len();
            let mut out = vec![arg0];
            for (i, p) in PERSONALITIES.iter().enumerate() {
                out.push(jump(JEQ, *p, (n - i) as u8, 0));
            }
            out.push(stmt(RET, RET_EPERM));
            out.push(stmt(RET, RET_ALLOW));
            out
        }
    }
}

fn stmt(code: u16, k: u32) -> sock_filter {
    jump(code, k, 0, 0)
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use seccompiler::{
        SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
        SeccompRule, TargetArch,
    };

    use super::*;

    /// The profile as seccompiler builds it (a linear allowlist plus a second filter for
    /// clone3), the reference the compact program must agree with.
    fn reference() -> Vec<BpfProgram> {
        let arch = TargetArch::try_from(std::env::consts::ARCH).unwrap();
        let cond = |arg, len, op, value| SeccompCondition::new(arg, len, op, value).unwrap();
        let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
            ALLOWED.iter().map(|&n| (n, Vec::new())).collect();
        rules.insert(libc::SYS_clone3, Vec::new());
        rules.insert(
            libc::SYS_clone,
            vec![SeccompRule::new(vec![cond(
                0,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(NAMESPACE_FLAGS),
                0,
            )])
            .unwrap()],
        );
        rules.insert(
            libc::SYS_socket,
            vec![SeccompRule::new(vec![cond(
                0,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::Ne,
                libc::AF_VSOCK as u64,
            )])
            .unwrap()],
        );
        rules.insert(
            libc::SYS_personality,
            PERSONALITIES
                .iter()
                .map(|&v| {
                    SeccompRule::new(vec![cond(
                        0,
                        SeccompCmpArgLen::Dword,
                        SeccompCmpOp::Eq,
                        v.into(),
                    )])
                    .unwrap()
                })
                .collect(),
        );
        let allowlist = SeccompFilter::new(
            rules,
            SeccompAction::Errno(libc::EPERM as u32),
            SeccompAction::Allow,
            arch,
        )
        .unwrap();
        let clone3 = SeccompFilter::new(
            BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
            SeccompAction::Allow,
            SeccompAction::Errno(libc::ENOSYS as u32),
            arch,
        )
        .unwrap();
        vec![allowlist.try_into().unwrap(), clone3.try_into().unwrap()]
    }

    /// A classic-BPF interpreter for the instructions seccomp filters use.
    fn run(program: &[sock_filter], data: &[u8; 64]) -> u32 {
        let (mut a, mut pc) = (0u32, 0usize);
        loop {
            let i = &program[pc];
            pc += 1;
            let k = i.k;
            let taken = |c: bool| if c { i.jt as usize } else { i.jf as usize };
            match i.code {
                LD_ABS => {
                    let o = k as usize;
                    a = u32::from_le_bytes(data[o..o + 4].try_into().unwrap());
                }
                0x54 => a &= k, // BPF_ALU | BPF_AND | BPF_K
                JA => pc += k as usize,
                JEQ => pc += taken(a == k),
                0x25 => pc += taken(a > k), // JGT
                JGE => pc += taken(a >= k),
                JSET => pc += taken(a & k != 0),
                RET => return k,
                c => panic!("opcode {c:#x} at {}", pc - 1),
            }
        }
    }

    /// The kernel's verdict over all filters: the most restrictive action wins.
    fn verdict_of(filters: &[BpfProgram], data: &[u8; 64]) -> u32 {
        let rank = |r: u32| (r & libc::SECCOMP_RET_ACTION_FULL) as i32;
        filters.iter().rev().fold(RET_ALLOW, |best, f| {
            let r = run(f, data);
            if rank(r) < rank(best) {
                r
            } else {
                best
            }
        })
    }

    fn data(arch: u32, nr: u32, arg0: u64) -> [u8; 64] {
        let mut d = [0u8; 64];
        d[0..4].copy_from_slice(&nr.to_le_bytes());
        d[4..8].copy_from_slice(&arch.to_le_bytes());
        d[16..24].copy_from_slice(&arg0.to_le_bytes());
        d
    }

    #[test]
    fn the_compact_profile_agrees_with_the_linear_one_for_every_call() {
        let compact = docker_default().unwrap();
        assert_eq!(compact.len(), 1);
        assert!(compact[0].len() < 400, "{} instructions", compact[0].len());
        let reference = reference();
        let args = [
            0u64,
            libc::SIGCHLD as u64,
            (libc::CLONE_VM | libc::CLONE_FS | libc::CLONE_THREAD) as u64,
            libc::CLONE_NEWUSER as u64,
            (libc::CLONE_NEWNS | libc::SIGCHLD) as u64,
            NAMESPACE_FLAGS,
            1 << 32,
            libc::AF_INET as u64,
            libc::AF_VSOCK as u64,
            (1 << 32) | libc::AF_VSOCK as u64,
            8,
            0x20000,
            0x20008,
            0x2_0000_0008,
            0xffff_ffff,
            7,
        ];
        let numbers = (0..1100u32)
            .chain(0x4000_0000..0x4000_0000 + 600)
            .chain([u32::MAX, 0x8000_0000]);
        for nr in numbers {
            for arch in [AUDIT_ARCH, 3 | 0x4000_0000, 0] {
                for &arg in &args {
                    let d = data(arch, nr, arg);
                    assert_eq!(
                        verdict_of(&compact, &d),
                        verdict_of(&reference, &d),
                        "call {nr}, arch {arch:#x}, arg0 {arg:#x}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_profile_says_what_docker_says() {
        let p = docker_default().unwrap();
        let v = |nr: i64, arg0: u64| verdict_of(&p, &data(AUDIT_ARCH, nr as u32, arg0));
        assert_eq!(v(libc::SYS_read, 0), RET_ALLOW);
        assert_eq!(v(libc::SYS_mount, 0), RET_EPERM);
        assert_eq!(v(libc::SYS_unshare, 0), RET_EPERM);
        assert_eq!(v(libc::SYS_clone3, 0), RET_ENOSYS);
        assert_eq!(v(libc::SYS_clone, libc::SIGCHLD as u64), RET_ALLOW);
        assert_eq!(v(libc::SYS_clone, libc::CLONE_NEWUSER as u64), RET_EPERM);
        assert_eq!(v(libc::SYS_socket, libc::AF_VSOCK as u64), RET_EPERM);
        assert_eq!(v(libc::SYS_socket, libc::AF_UNIX as u64), RET_ALLOW);
        assert_eq!(v(libc::SYS_personality, 0x20008), RET_ALLOW);
        assert_eq!(v(libc::SYS_personality, 0x1), RET_EPERM);
        assert_eq!(v(0x4000_0000, 0), RET_EPERM, "x32");
        assert_eq!(
            verdict_of(&p, &data(3 | 0x4000_0000, 0, 0)),
            RET_KILL_PROCESS,
            "i386"
        );
    }
}
