//! The linker: wasmtime-wasi's preview 1 functions, with the fd, path, poll and socket ones
//! shadowed by ours (`host_function!`: guest memory and our descriptors in, an errno out, a
//! trap once a stop signal has come).

use std::sync::atomic::Ordering;

use wasmtime::{Caller, Linker, Trap};

use super::abi::*;
use super::files::file_slot;
use super::poll::{Subscription, EVENT_SIZE, MAX_SUBSCRIPTIONS, SUBSCRIPTION_SIZE};
use super::P1State;

const MODULE: &str = "wasi_snapshot_preview1";

/// Define the preview 1 functions: wasmtime-wasi's, with the fd and path ones shadowed by
/// ours.
pub fn add_to_linker(linker: &mut Linker<P1State>) -> wasmtime::Result<()> {
    wasmtime_wasi::p1::add_to_linker_sync(linker, |s: &mut P1State| &mut s.wasi)?;
    linker.allow_shadowing(true);
    let result = shadow(linker);
    linker.allow_shadowing(false);
    result
}

/// An errno as the function's result.
fn result(r: R<()>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(e) => i32::from(e),
    }
}

/// Defines `$name`: `$body` (an `R<()>`, the function's errno) runs with the guest memory
/// `$mem` and our descriptors `$files`. Once a stop signal has come the call traps instead
/// of returning (a wait it ended returns `INTR`).
macro_rules! host_function {
    ($linker:ident, $name:literal,
     |$mem:ident, $files:ident $(, $arg:ident : $ty:ty)*| $body:block) => {{
        $linker.func_wrap(
            MODULE,
            $name,
            move |mut caller: Caller<'_, P1State> $(, $arg: $ty)*| -> wasmtime::Result<i32> {
                let errno = result((|| -> R<()> {
                    let ($mem, state) = memory(&mut caller)?;
                    let $files = &mut state.files;
                    $body
                })());
                if caller.data().files.stop.load(Ordering::SeqCst) != 0 {
                    return Err(Trap::Interrupt.into());
                }
                Ok(errno)
            },
        )?;
    }};
}

/// A function whose first argument is a descriptor: `$fd`, as u32 in `$body`.
macro_rules! fd_function {
    ($linker:ident, $name:literal,
     |$mem:ident, $files:ident, $fd:ident $(, $arg:ident : $ty:ty)*| $body:block) => {
        host_function!($linker, $name, |$mem, $files, $fd: i32 $(, $arg: $ty)*| {
            let $fd = $fd as u32;
            $body
        })
    };
}

fn shadow(linker: &mut Linker<P1State>) -> wasmtime::Result<()> {
    // wasmtime-wasi turns a status of 126 or more into a trap; a process keeps its low 8 bits.
    linker.func_wrap(MODULE, "proc_exit", |status: i32| -> wasmtime::Result<()> {
        Err(wasmtime_wasi::I32Exit(status & 0xff).into())
    })?;
    host_function!(
        linker,
        "poll_oneoff",
        |mem, files, subscriptions: i32, events: i32, count: i32, nevents: i32| {
            let count = count as u32;
            // None would wait for nothing, forever.
            if count == 0 || count > MAX_SUBSCRIPTIONS {
                return Err(errno::INVAL);
            }
            let subscriptions: Vec<Subscription> =
                bytes(mem, subscriptions as u32, count * SUBSCRIPTION_SIZE)?
                    .chunks_exact(SUBSCRIPTION_SIZE as usize)
                    .map(Subscription::parse)
                    .collect();
            bytes(mem, events as u32, count * EVENT_SIZE)?;
            let ready = files.poll(&subscriptions)?;
            for (i, event) in (0u32..).zip(&ready) {
                put(mem, events as u32 + i * EVENT_SIZE, &event.encode())?;
            }
            put_u32(mem, nevents as u32, ready.len() as u32)
        }
    );
    fd_function!(
        linker,
        "fd_read",
        |mem, files, fd, iovs: i32, len: i32, nread: i32| {
            let iovs = iovecs(mem, iovs as u32, len as u32)?;
            let n = files.read(mem, fd, &iovs, None)?;
            put_u32(mem, nread as u32, n)
        }
    );
    fd_function!(
        linker,
        "fd_pread",
        |mem, files, fd, iovs: i32, len: i32, offset: i64, nread: i32| {
            let iovs = iovecs(mem, iovs as u32, len as u32)?;
            let n = files.read(mem, fd, &iovs, Some(offset as u64))?;
            put_u32(mem, nread as u32, n)
        }
    );
    fd_function!(
        linker,
        "fd_write",
        |mem, files, fd, iovs: i32, len: i32, nwritten: i32| {
            let iovs = iovecs(mem, iovs as u32, len as u32)?;
            let n = files.write(mem, fd, &iovs, None)?;
            put_u32(mem, nwritten as u32, n)
        }
    );
    fd_function!(
        linker,
        "fd_pwrite",
        |mem, files, fd, iovs: i32, len: i32, offset: i64, nwritten: i32| {
            let iovs = iovecs(mem, iovs as u32, len as u32)?;
            let n = files.write(mem, fd, &iovs, Some(offset as u64))?;
            put_u32(mem, nwritten as u32, n)
        }
    );
    fd_function!(
        linker,
        "fd_seek",
        |mem, files, fd, offset: i64, whence: i32, newoffset: i32| {
            let to = files.seek(fd, offset, whence as u8)?;
            put_u64(mem, newoffset as u32, to)
        }
    );
    fd_function!(linker, "fd_tell", |mem, files, fd, offset: i32| {
        let pos = files.seek(fd, 0, 1)?;
        put_u64(mem, offset as u32, pos)
    });
    fd_function!(linker, "fd_close", |_mem, files, fd| { files.close(fd) });
    fd_function!(linker, "fd_fdstat_get", |mem, files, fd, buf: i32| {
        let stat = files.fdstat(fd)?;
        put(mem, buf as u32, &stat)
    });
    fd_function!(
        linker,
        "fd_fdstat_set_flags",
        |_mem, files, fd, flags: i32| { files.set_flags(fd, flags as u16) }
    );
    fd_function!(
        linker,
        "fd_fdstat_set_rights",
        |_mem, files, fd, _base: i64, _inheriting: i64| {
            // Rights are not kept, so they cannot be narrowed (wasmtime answers the same).
            files.open(fd)?;
            Err(errno::NOTSUP)
        }
    );
    fd_function!(linker, "fd_filestat_get", |mem, files, fd, buf: i32| {
        let stat = files.filestat(fd)?;
        put(mem, buf as u32, &stat)
    });
    fd_function!(
        linker,
        "fd_filestat_set_size",
        |_mem, files, fd, size: i64| {
            let d = files.desc(fd)?;
            fs(files.fs.set_size(d, size as u64))
        }
    );
    fd_function!(
        linker,
        "fd_filestat_set_times",
        |_mem, files, fd, atim: i64, mtim: i64, flags: i32| {
            let atim = new_timestamp(atim as u64, flags as u16, 1, 2)?;
            let mtim = new_timestamp(mtim as u64, flags as u16, 4, 8)?;
            let d = files.desc(fd)?;
            fs(files.fs.set_times(d, atim, mtim))
        }
    );
    fd_function!(linker, "fd_sync", |_mem, files, fd| {
        files.sync(fd, false)
    });
    fd_function!(linker, "fd_datasync", |_mem, files, fd| {
        files.sync(fd, true)
    });
    fd_function!(
        linker,
        "fd_advise",
        |_mem, files, fd, _offset: i64, _len: i64, advice: i32| { files.advise(fd, advice) }
    );
    fd_function!(
        linker,
        "fd_allocate",
        |_mem, files, fd, _offset: i64, _len: i64| {
            match file_slot(&mut files.table, fd) {
                Err(errno::SPIPE) => Err(errno::BADF),
                Err(e) => Err(e),
                Ok(_) => Err(errno::NOTSUP),
            }
        }
    );
    fd_function!(
        linker,
        "fd_readdir",
        |mem, files, fd, buf: i32, len: i32, cookie: i64, used: i32| {
            let n = files.readdir(bytes_mut(mem, buf as u32, len as u32)?, fd, cookie as u64)?;
            put_u32(mem, used as u32, n)
        }
    );
    fd_function!(linker, "fd_prestat_get", |mem, files, fd, buf: i32| {
        let name = files.preopen(fd)?;
        let mut prestat = [0u8; 8];
        prestat[4..8].copy_from_slice(&(name.len() as u32).to_le_bytes());
        put(mem, buf as u32, &prestat)
    });
    fd_function!(
        linker,
        "fd_prestat_dir_name",
        |mem, files, fd, path: i32, len: i32| {
            let name = files.preopen(fd)?;
            if (len as u32 as usize) < name.len() {
                return Err(errno::NAMETOOLONG);
            }
            put(mem, path as u32, name.as_bytes())
        }
    );
    fd_function!(linker, "fd_renumber", |_mem, files, fd, to: i32| {
        files.renumber(fd, to as u32)
    });

    // wasmtime-wasi's socket calls look in its own table, where our descriptors are not.
    fd_function!(
        linker,
        "sock_accept",
        |_mem, files, fd, _flags: i32, _new: i32| { files.not_a_socket(fd) }
    );
    fd_function!(
        linker,
        "sock_recv",
        |_mem, files, fd, _iovs: i32, _len: i32, _flags: i32, _n: i32, _out: i32| {
            files.not_a_socket(fd)
        }
    );
    fd_function!(
        linker,
        "sock_send",
        |_mem, files, fd, _iovs: i32, _len: i32, _flags: i32, _n: i32| { files.not_a_socket(fd) }
    );
    fd_function!(linker, "sock_shutdown", |_mem, files, fd, _how: i32| {
        files.not_a_socket(fd)
    });
    host_function!(
        linker,
        "path_open",
        |mem,
         files,
         fd: i32,
         lookup: i32,
         path: i32,
         len: i32,
         oflags: i32,
         rights: i64,
         _inheriting: i64,
         fdflags: i32,
         opened: i32| {
            let path = string(mem, path as u32, len as u32)?;
            let new = files.path_open(
                fd as u32,
                lookup as u32,
                &path,
                oflags as u16,
                rights as u64,
                fdflags as u16,
            )?;
            put_u32(mem, opened as u32, new)
        }
    );
    host_function!(
        linker,
        "path_create_directory",
        |mem, files, fd: i32, path: i32, len: i32| {
            let path = string(mem, path as u32, len as u32)?;
            let dir = files.desc(fd as u32)?;
            fs(files.fs.create_directory_at(dir, &path))
        }
    );
    host_function!(
        linker,
        "path_remove_directory",
        |mem, files, fd: i32, path: i32, len: i32| {
            let path = string(mem, path as u32, len as u32)?;
            let dir = files.desc(fd as u32)?;
            fs(files.fs.remove_directory_at(dir, &path))
        }
    );
    host_function!(
        linker,
        "path_unlink_file",
        |mem, files, fd: i32, path: i32, len: i32| {
            let path = string(mem, path as u32, len as u32)?;
            let dir = files.desc(fd as u32)?;
            fs(files.fs.unlink_file_at(dir, &path))
        }
    );
    host_function!(
        linker,
        "path_filestat_get",
        |mem, files, fd: i32, lookup: i32, path: i32, len: i32, buf: i32| {
            let path = string(mem, path as u32, len as u32)?;
            let dir = files.desc(fd as u32)?;
            let st = fs(files.fs.stat_at(dir, path_flags(lookup as u32), &path))?;
            put(mem, buf as u32, &filestat(&st))
        }
    );
    host_function!(
        linker,
        "path_filestat_set_times",
        |mem,
         files,
         fd: i32,
         lookup: i32,
         path: i32,
         len: i32,
         atim: i64,
         mtim: i64,
         flags: i32| {
            let path = string(mem, path as u32, len as u32)?;
            let atim = new_timestamp(atim as u64, flags as u16, 1, 2)?;
            let mtim = new_timestamp(mtim as u64, flags as u16, 4, 8)?;
            let dir = files.desc(fd as u32)?;
            fs(files
                .fs
                .set_times_at(dir, path_flags(lookup as u32), &path, atim, mtim))
        }
    );
    host_function!(
        linker,
        "path_readlink",
        |mem, files, fd: i32, path: i32, len: i32, buf: i32, buf_len: i32, used: i32| {
            let path = string(mem, path as u32, len as u32)?;
            let dir = files.desc(fd as u32)?;
            let target = fs(files.fs.readlink_at(dir, &path))?;
            let n = target.len().min(buf_len as u32 as usize);
            put(mem, buf as u32, &target.as_bytes()[..n])?;
            put_u32(mem, used as u32, n as u32)
        }
    );
    host_function!(
        linker,
        "path_rename",
        |mem, files, fd: i32, old: i32, old_len: i32, new_fd: i32, new: i32, new_len: i32| {
            let old = string(mem, old as u32, old_len as u32)?;
            let new = string(mem, new as u32, new_len as u32)?;
            let from = files.desc(fd as u32)?;
            let to = files.desc(new_fd as u32)?;
            fs(files.fs.rename_at(from, &old, to, &new))
        }
    );
    host_function!(
        linker,
        "path_link",
        |mem,
         files,
         fd: i32,
         lookup: i32,
         old: i32,
         old_len: i32,
         new_fd: i32,
         new: i32,
         new_len: i32| {
            let old = string(mem, old as u32, old_len as u32)?;
            let new = string(mem, new as u32, new_len as u32)?;
            let from = files.desc(fd as u32)?;
            let to = files.desc(new_fd as u32)?;
            fs(files
                .fs
                .link_at(from, path_flags(lookup as u32), &old, to, &new))
        }
    );
    host_function!(
        linker,
        "path_symlink",
        |mem, files, target: i32, target_len: i32, fd: i32, path: i32, len: i32| {
            let target = string(mem, target as u32, target_len as u32)?;
            let path = string(mem, path as u32, len as u32)?;
            let dir = files.desc(fd as u32)?;
            fs(files.fs.symlink_at(dir, &target, &path))
        }
    );
    Ok(())
}
