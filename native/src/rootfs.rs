//! The container's root filesystem, built by its init process inside its own mount
//! namespace: kernel overlayfs over the image's layers, /proc, a fresh /dev, read-only /sys,
//! the runtime's etc files, `-v` binds, docker's masked and read-only paths, then
//! pivot_root. Every target inside the root is opened with openat2(RESOLVE_IN_ROOT) and
//! mounted on through its fd, so no image symlink can point a mount outside the root.

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use rustix::fs::{Mode, OFlags, ResolveFlags};

use crate::failure::{check, errno, Failure};
use crate::plan::Plan;

const NOSUID: libc::c_ulong = libc::MS_NOSUID;
const NODEV: libc::c_ulong = libc::MS_NODEV;
const NOEXEC: libc::c_ulong = libc::MS_NOEXEC;

pub(crate) fn setup(plan: &Plan) -> Result<(), Failure> {
    // SAFETY: plain syscalls on valid C strings.
    unsafe {
        check(
            libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ),
            "make mounts private",
        )?;
        check(libc::chdir(plan.store_root.as_ptr()), "enter the store")?;
        check(
            libc::mount(
                c"overlay".as_ptr(),
                plan.rootfs.as_ptr(),
                c"overlay".as_ptr(),
                0,
                plan.overlay_options.as_ptr().cast(),
            ),
            "mount the overlay root filesystem",
        )?;
    }
    let root = rustix::fs::open(
        plan.rootfs.as_c_str(),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Failure::other(format!("open the root filesystem: {e}")))?;
    let rootless = plan.id_map.is_some();

    let proc = directory_in_root(&root, "proc")?;
    mount(
        Some(c"proc"),
        &proc,
        Some(c"proc"),
        NOSUID | NODEV | NOEXEC,
        None,
    )
    .map_err(|e| with_context(e, "mount /proc"))?;

    let dev = directory_in_root(&root, "dev")?;
    mount(
        Some(c"tmpfs"),
        &dev,
        Some(c"tmpfs"),
        NOSUID | libc::MS_STRICTATIME,
        Some(c"mode=755,size=65536k"),
    )
    .map_err(|e| with_context(e, "mount /dev"))?;
    populate_dev(&root, plan, rootless)?;

    let sys = directory_in_root(&root, "sys")?;
    let ro = libc::MS_RDONLY | NOSUID | NODEV | NOEXEC;
    if mount(Some(c"sysfs"), &sys, Some(c"sysfs"), ro, None).is_err() {
        // Rootless with the host's network: sysfs cannot be mounted; bind the host's, read-only.
        bind(c"/sys", &sys, true).map_err(|e| with_context(e, "mount /sys"))?;
        let sys = open_in_root(&root, "sys")?;
        remount_read_only(&sys).map_err(|e| with_context(e, "mount /sys read-only"))?;
    }

    etc_files(&root, plan)?;
    for b in &plan.binds {
        let t = create_in_root(&root, &b.target, b.directory)?;
        bind(&b.source, &t, true).map_err(|e| with_context(e, &format!("mount {}", b.target)))?;
        if b.read_only {
            let t = open_in_root(&root, &b.target)?;
            remount_read_only(&t)
                .map_err(|e| with_context(e, &format!("mount {} read-only", b.target)))?;
        }
    }
    for t in &plan.tmpfs {
        let path = &t.target;
        let at = create_in_root(&root, path, true)?;
        mount(
            Some(c"tmpfs"),
            &at,
            Some(c"tmpfs"),
            NOSUID | NODEV | t.flags,
            Some(&t.data),
        )
        .map_err(|e| with_context(e, &format!("mount a tmpfs on {path}")))?;
    }
    for path in &plan.masked_paths {
        let Some(t) = existing_in_root(&root, path)? else {
            continue;
        };
        let is_dir = rustix::fs::fstat(&t).is_ok_and(|s| {
            rustix::fs::FileType::from_raw_mode(s.st_mode) == rustix::fs::FileType::Directory
        });
        let r = if is_dir {
            mount(
                Some(c"tmpfs"),
                &t,
                Some(c"tmpfs"),
                libc::MS_RDONLY,
                Some(c"size=0"),
            )
        } else {
            bind(c"/dev/null", &t, false)
        };
        r.map_err(|e| with_context(e, &format!("mask {path}")))?;
    }
    for path in &plan.readonly_paths {
        let Some(t) = existing_in_root(&root, path)? else {
            continue;
        };
        bind_self(&t).map_err(|e| with_context(e, &format!("mount {path} read-only")))?;
        let t = open_in_root(&root, path)?;
        remount_read_only(&t).map_err(|e| with_context(e, &format!("mount {path} read-only")))?;
    }
    pivot(&root)
}

/// /dev: the standard devices (made with mknod as root, bound from the host's when rootless,
/// where mknod is not allowed), pts (a new instance), shm, mqueue and docker's symlinks.
fn populate_dev(root: &OwnedFd, plan: &Plan, rootless: bool) -> Result<(), Failure> {
    let dev_dir = dev_dir(root)?;
    for (name, major, minor) in [
        (c"null", 1, 3),
        (c"zero", 1, 5),
        (c"full", 1, 7),
        (c"random", 1, 8),
        (c"urandom", 1, 9),
        (c"tty", 5, 0),
    ] {
        let label = name.to_string_lossy();
        if rootless {
            let f = rustix::fs::openat(
                &dev_dir,
                name,
                OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o666),
            )
            .map_err(|e| Failure::other(format!("create /dev/{label}: {e}")))?;
            let host = CString::new(format!("/dev/{label}")).expect("no NUL");
            bind(&host, &f, false).map_err(|e| with_context(e, &format!("bind /dev/{label}")))?;
        } else {
            rustix::fs::mknodat(
                &dev_dir,
                name,
                rustix::fs::FileType::CharacterDevice,
                Mode::from_raw_mode(0o666),
                rustix::fs::makedev(major, minor),
            )
            .map_err(|e| Failure::other(format!("create /dev/{label}: {e}")))?;
            rustix::fs::chmodat(
                &dev_dir,
                name,
                Mode::from_raw_mode(0o666),
                rustix::fs::AtFlags::empty(),
            )
            .map_err(|e| Failure::other(format!("chmod /dev/{label}: {e}")))?;
        }
    }
    for d in [c"pts", c"shm", c"mqueue"] {
        rustix::fs::mkdirat(&dev_dir, d, Mode::from_raw_mode(0o755))
            .map_err(|e| Failure::other(format!("create /dev/{}: {e}", d.to_string_lossy())))?;
    }
    let gid5 = plan.id_map.as_ref().is_none_or(|m| m.setgroups_allowed());
    let pts_options = if gid5 {
        c"newinstance,ptmxmode=0666,mode=0620,gid=5"
    } else {
        c"newinstance,ptmxmode=0666,mode=0620"
    };
    let pts = open_in_root(root, "dev/pts")?;
    mount(
        Some(c"devpts"),
        &pts,
        Some(c"devpts"),
        NOSUID | NOEXEC,
        Some(pts_options),
    )
    .map_err(|e| with_context(e, "mount /dev/pts"))?;
    let shm = open_in_root(root, "dev/shm")?;
    mount(
        Some(c"shm"),
        &shm,
        Some(c"tmpfs"),
        NOSUID | NODEV | NOEXEC,
        Some(c"mode=1777,size=65536k"),
    )
    .map_err(|e| with_context(e, "mount /dev/shm"))?;
    let mq = open_in_root(root, "dev/mqueue")?;
    mount(
        Some(c"mqueue"),
        &mq,
        Some(c"mqueue"),
        NOSUID | NODEV | NOEXEC,
        None,
    )
    .map_err(|e| with_context(e, "mount /dev/mqueue"))?;
    for (link, target) in [
        (c"ptmx", c"pts/ptmx"),
        (c"fd", c"/proc/self/fd"),
        (c"stdin", c"/proc/self/fd/0"),
        (c"stdout", c"/proc/self/fd/1"),
        (c"stderr", c"/proc/self/fd/2"),
        (c"core", c"/proc/kcore"),
    ] {
        rustix::fs::symlinkat(target, &dev_dir, link)
            .map_err(|e| Failure::other(format!("create /dev/{}: {e}", link.to_string_lossy())))?;
    }
    Ok(())
}

/// hosts, hostname and resolv.conf: written into the container's /dev tmpfs (no host file
/// per container), bound over the init layer's empty files, then unlinked from /dev (the
/// bind mounts keep them).
fn etc_files(root: &OwnedFd, plan: &Plan) -> Result<(), Failure> {
    let dev_dir = dev_dir(root)?;
    for (name, text) in &plan.etc_files {
        let tmp = format!(".strata-{name}");
        let fd = rustix::fs::openat(
            &dev_dir,
            tmp.as_str(),
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .map_err(|e| Failure::other(format!("write /etc/{name}: {e}")))?;
        rustix::io::write(&fd, text.as_bytes())
            .map_err(|e| Failure::other(format!("write /etc/{name}: {e}")))?;
        let source = CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("no NUL");
        let target = create_in_root(root, &format!("etc/{name}"), false)?;
        bind(&source, &target, false)
            .map_err(|e| with_context(e, &format!("mount /etc/{name}")))?;
        rustix::fs::unlinkat(&dev_dir, tmp.as_str(), rustix::fs::AtFlags::empty())
            .map_err(|e| Failure::other(format!("unlink /dev/{tmp}: {e}")))?;
    }
    Ok(())
}

/// The container's /dev (our tmpfs), opened for `*at` calls.
fn dev_dir(root: &OwnedFd) -> Result<OwnedFd, Failure> {
    let dev = open_in_root(root, "dev")?;
    rustix::fs::openat(
        &dev,
        c".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Failure::other(format!("open /dev: {e}")))
}

/// pivot_root into the container's root and detach the host's (runc's `pivot_root(".", ".")`).
fn pivot(root: &OwnedFd) -> Result<(), Failure> {
    // SAFETY: plain syscalls on valid arguments.
    unsafe {
        check(libc::fchdir(root.as_raw_fd()), "enter the root filesystem")?;
        if libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) < 0 {
            return Err(errno("pivot_root"));
        }
        check(
            libc::umount2(c".".as_ptr(), libc::MNT_DETACH),
            "detach the host's root",
        )?;
        check(libc::chdir(c"/".as_ptr()), "chdir /")?;
    }
    Ok(())
}

/// `path` resolved as if `root` were `/` (symlinks and `..` cannot leave it), as an O_PATH fd.
fn open_in_root(root: &OwnedFd, path: &str) -> Result<OwnedFd, Failure> {
    resolve(root, path).map_err(|e| Failure::other(format!("open {path} in the container: {e}")))
}

fn resolve(root: &OwnedFd, path: &str) -> rustix::io::Result<OwnedFd> {
    let rel = path.trim_start_matches('/');
    let rel = if rel.is_empty() { "." } else { rel };
    // EAGAIN: a `..` raced with a rename or mount somewhere on the system (other containers
    // starting); the kernel asks for a retry.
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(
            root,
            rel,
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ) {
            Err(rustix::io::Errno::AGAIN) if tries < 100 => tries += 1,
            r => return r,
        }
    }
}

/// Like `open_in_root`, or None when the path does not exist in this image or kernel.
fn existing_in_root(root: &OwnedFd, path: &str) -> Result<Option<OwnedFd>, Failure> {
    match resolve(root, path) {
        Ok(fd) => Ok(Some(fd)),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(Failure::other(format!("open {path} in the container: {e}"))),
    }
}

/// A mount point that must be a real directory (proc, sys, dev).
fn directory_in_root(root: &OwnedFd, path: &str) -> Result<OwnedFd, Failure> {
    let fd = open_in_root(root, path)?;
    let st = rustix::fs::fstat(&fd).map_err(|e| Failure::other(format!("stat /{path}: {e}")))?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::Directory {
        return Err(Failure::other(format!(
            "/{path} in the image is not a directory"
        )));
    }
    Ok(fd)
}

/// `mkdir -p` of `path` inside the root (and an empty file at the end unless `directory`),
/// every step resolved in the root; a dangling symlink on the way is followed by creating
/// its target, inside the root too. The existing or new target, as an O_PATH fd.
fn create_in_root(root: &OwnedFd, path: &str, directory: bool) -> Result<OwnedFd, Failure> {
    make_in_root(root, path, directory, 0)?;
    open_in_root(root, path)
}

fn make_in_root(root: &OwnedFd, path: &str, directory: bool, links: u32) -> Result<(), Failure> {
    if links > 40 {
        return Err(Failure::other(format!(
            "create {path} in the container: too many symlinks"
        )));
    }
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let mut prefix = String::new();
    for (i, part) in parts.iter().enumerate() {
        let parent = if prefix.is_empty() {
            ".".to_string()
        } else {
            prefix.clone()
        };
        prefix = if prefix.is_empty() {
            part.to_string()
        } else {
            format!("{prefix}/{part}")
        };
        match resolve(root, &prefix) {
            Ok(_) => continue,
            Err(rustix::io::Errno::NOENT) => {}
            Err(e) => {
                return Err(Failure::other(format!(
                    "open {prefix} in the container: {e}"
                )))
            }
        }
        let dir = open_in_root(root, &parent)?;
        let last = i + 1 == parts.len();
        if let Ok(target) = rustix::fs::readlinkat(&dir, *part, Vec::new()) {
            let target = target.to_string_lossy().into_owned();
            let target = if target.starts_with('/') {
                target
            } else {
                format!("{parent}/{target}")
            };
            make_in_root(root, &target, directory || !last, links + 1)?;
            continue;
        }
        let made = if last && !directory {
            rustix::fs::openat(
                &dir,
                *part,
                OFlags::CREATE | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
            )
            .map(drop)
        } else {
            rustix::fs::mkdirat(&dir, *part, Mode::from_raw_mode(0o755))
        };
        match made {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => {
                return Err(Failure::other(format!(
                    "create {prefix} in the container: {e}"
                )))
            }
        }
    }
    Ok(())
}

fn fd_path(fd: &OwnedFd) -> CString {
    CString::new(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd())).expect("no NUL")
}

fn mount(
    source: Option<&CStr>,
    target: &OwnedFd,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> Result<(), std::io::Error> {
    let t = fd_path(target);
    // SAFETY: valid C strings or nulls.
    let r = unsafe {
        libc::mount(
            source.map_or(std::ptr::null(), CStr::as_ptr),
            t.as_ptr(),
            fstype.map_or(std::ptr::null(), CStr::as_ptr),
            flags,
            data.map_or(std::ptr::null(), |d| d.as_ptr().cast()),
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn bind(source: &CStr, target: &OwnedFd, recursive: bool) -> Result<(), std::io::Error> {
    let flags = libc::MS_BIND | if recursive { libc::MS_REC } else { 0 };
    mount(Some(source), target, None, flags, None)
}

fn bind_self(target: &OwnedFd) -> Result<(), std::io::Error> {
    let path = fd_path(target);
    mount(
        Some(&path),
        target,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )
}

/// Remount a bind read-only, keeping the flags the kernel locks (nosuid, nodev, noexec).
fn remount_read_only(target: &OwnedFd) -> Result<(), std::io::Error> {
    let st = rustix::fs::fstatvfs(target).map_err(std::io::Error::from)?;
    let mut flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY;
    for (st_flag, ms_flag) in [
        (rustix::fs::StatVfsMountFlags::NOSUID, NOSUID),
        (rustix::fs::StatVfsMountFlags::NODEV, NODEV),
        (rustix::fs::StatVfsMountFlags::NOEXEC, NOEXEC),
    ] {
        if st.f_flag.contains(st_flag) {
            flags |= ms_flag;
        }
    }
    mount(None, target, None, flags, None)
}

fn with_context(e: std::io::Error, what: &str) -> Failure {
    Failure::other(format!("{what}: {e}"))
}
