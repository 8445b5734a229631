//! WASI preview 1 modules, run natively on a core linker.
//!
//! wasmtime-wasi's preview 1 host serves what is not a descriptor: arguments, environment,
//! clocks and random. `proc_exit` is ours (wasmtime-wasi traps on a status of 126 or more; a
//! process keeps the low 8 bits, as on Linux). Its filesystem can only serve host
//! directories, so its fd and path functions are shadowed by ours: stdio on fds 0-2 (the
//! process's own, written as the guest writes), the mounts of [`GuestFs`] preopened as fds
//! 3, 4, …, and every descriptor opened from them. `poll_oneoff` is ours too, as it waits on
//! those descriptors.
//!
//! A stop signal ends every wait (poll, sleep, stdin: each also watches the stop eventfd of
//! `blocking.rs`), and no host call returns to a guest once one has come: it traps.
//!
//! Layouts and numbers are `wasi_snapshot_preview1.witx`'s; every guest pointer is checked
//! against the guest's memory.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use wasmtime::{Caller, Extern, Linker, StoreLimits, Trap};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::HostMonotonicClock;

use super::filesystem::bindings::wasi::clocks::wall_clock::Datetime;
use super::filesystem::bindings::wasi::filesystem::types::{
    DescriptorFlags, DescriptorType, ErrorCode, NewTimestamp, OpenFlags, PathFlags,
};
use super::filesystem::{descriptor_stat, descriptor_type, identity, Descriptor, GuestFs, Kind};
use crate::backend::Stream;
use crate::fs::{file_type, Stat};

const MODULE: &str = "wasi_snapshot_preview1";

/// What a preview 1 guest's store holds.
pub struct P1State {
    pub wasi: WasiP1Ctx,
    pub files: Files,
    pub limits: StoreLimits,
}

/// The guest's descriptors, by fd: stdio at 0-2, the mounts' preopens from 3.
pub struct Files {
    fs: GuestFs,
    table: Vec<Option<Fd>>,
    /// Whether the guest reads the process's stdin (`-i`); else its stdin is empty.
    stdin: bool,
    /// Where the guest's stdout and stderr go.
    stdio: Arc<HostStdio>,
    /// Stop signals make it readable: every wait watches it.
    wake: BorrowedFd<'static>,
    /// The signal that stopped the guest (0 while none has).
    stop: Arc<AtomicI32>,
    /// The guest's monotonic clock counts from here (see [`GuestClock`]).
    started: Instant,
}

enum Fd {
    /// The process's own stdin, stdout or stderr (0, 1, 2).
    Stdio(u32),
    Open(Open),
}

/// A descriptor of the guest's filesystem.
struct Open {
    desc: Descriptor,
    /// The file position (files only).
    pos: u64,
    append: bool,
    /// A preopen's guest path.
    preopen: Option<String>,
    /// `NONBLOCK` as the guest set it (files never block, as on Linux; it is reported).
    nonblock: bool,
    /// The listing `fd_readdir` pages through (name, filetype, inode), taken at cookie 0.
    listing: Option<Vec<(String, u8, u64)>>,
}

type Errno = u16;
mod errno {
    pub const BADF: u16 = 8;
    pub const FAULT: u16 = 21;
    pub const ILSEQ: u16 = 25;
    pub const INTR: u16 = 27;
    pub const INVAL: u16 = 28;
    pub const ISDIR: u16 = 31;
    pub const NAMETOOLONG: u16 = 37;
    pub const NOTDIR: u16 = 54;
    pub const NOTSOCK: u16 = 57;
    pub const NOTSUP: u16 = 58;
    pub const OVERFLOW: u16 = 61;
    pub const PIPE: u16 = 64;
    pub const SPIPE: u16 = 70;
}

fn errno_of(code: ErrorCode) -> Errno {
    use ErrorCode as E;
    match code {
        E::Access => 2,
        E::WouldBlock => 6,
        E::Already => 7,
        E::BadDescriptor => 8,
        E::Busy => 10,
        E::Deadlock => 16,
        E::Quota => 19,
        E::Exist => 20,
        E::FileTooLarge => 22,
        E::IllegalByteSequence => 25,
        E::InProgress => 26,
        E::Interrupted => 27,
        E::Invalid => 28,
        E::Io => 29,
        E::IsDirectory => 31,
        E::Loop => 32,
        E::TooManyLinks => 34,
        E::MessageSize => 35,
        E::NameTooLong => 37,
        E::NoDevice => 43,
        E::NoEntry => 44,
        E::NoLock => 46,
        E::InsufficientMemory => 48,
        E::InsufficientSpace => 51,
        E::NotDirectory => 54,
        E::NotEmpty => 55,
        E::NotRecoverable => 56,
        E::Unsupported => 58,
        E::NoTty => 59,
        E::NoSuchDevice => 60,
        E::Overflow => 61,
        E::NotPermitted => 63,
        E::Pipe => 64,
        E::ReadOnly => 69,
        E::InvalidSeek => 70,
        E::TextFileBusy => 74,
        E::CrossDevice => 75,
    }
}

type R<T> = Result<T, Errno>;

fn fs<T>(r: Result<T, ErrorCode>) -> R<T> {
    r.map_err(errno_of)
}

// Rights (witx `rights`): what fdstat reports; not enforced beyond the descriptor's own
// read/write flags, as wasmtime-wasi.
const RIGHT_FD_READ: u64 = 1 << 1;
const RIGHT_FD_SEEK: u64 = 1 << 2;
const RIGHT_FD_WRITE: u64 = 1 << 6;
const RIGHT_FD_READDIR: u64 = 1 << 14;
const RIGHT_PATH_FILESTAT_SET_SIZE: u64 = 1 << 19;
const RIGHT_FD_FILESTAT_SET_SIZE: u64 = 1 << 22;
const RIGHT_POLL: u64 = 1 << 27;
const ALL_RIGHTS: u64 = (1 << 30) - 1;

// Filetypes.
// Fdflags.
const FDFLAGS_APPEND: u16 = 1;
const FDFLAGS_DSYNC: u16 = 2;
const FDFLAGS_NONBLOCK: u16 = 4;
const FDFLAGS_RSYNC: u16 = 8;
const FDFLAGS_SYNC: u16 = 16;

const FILETYPE_UNKNOWN: u8 = 0;
const FILETYPE_DIRECTORY: u8 = 3;

fn filetype(t: DescriptorType) -> u8 {
    match t {
        DescriptorType::BlockDevice => 1,
        DescriptorType::CharacterDevice => 2,
        DescriptorType::Directory => 3,
        DescriptorType::RegularFile => 4,
        DescriptorType::Socket => 6,
        DescriptorType::SymbolicLink => 7,
        DescriptorType::Unknown | DescriptorType::Fifo => FILETYPE_UNKNOWN,
    }
}

fn stat_filetype(st: &Stat) -> u8 {
    filetype(descriptor_type(file_type(st)))
}

/// `filestat`: 64 bytes, from the same conversion preview 2's `stat` uses (a time before
/// 1970, which WASI cannot hold, is 0, as wasmtime-wasi gives).
fn filestat(st: &Stat) -> [u8; 64] {
    let d = descriptor_stat(st);
    let (dev, ino) = identity(st);
    let ns = |t: Option<Datetime>| {
        t.map_or(0, |t| {
            t.seconds
                .saturating_mul(1_000_000_000)
                .saturating_add(u64::from(t.nanoseconds))
        })
    };
    let mut b = [0u8; 64];
    b[0..8].copy_from_slice(&dev.to_le_bytes());
    b[8..16].copy_from_slice(&ino.to_le_bytes());
    b[16] = filetype(d.type_);
    b[24..32].copy_from_slice(&d.link_count.to_le_bytes());
    b[32..40].copy_from_slice(&d.size.to_le_bytes());
    b[40..48].copy_from_slice(&ns(d.data_access_timestamp).to_le_bytes());
    b[48..56].copy_from_slice(&ns(d.data_modification_timestamp).to_le_bytes());
    b[56..64].copy_from_slice(&ns(d.status_change_timestamp).to_le_bytes());
    b
}

/// `fstflags`: set to a time, to now, or leave.
fn new_timestamp(time: u64, flags: u16, set: u16, now: u16) -> R<NewTimestamp> {
    match (flags & set != 0, flags & now != 0) {
        (true, true) => Err(errno::INVAL),
        (true, false) => Ok(NewTimestamp::Timestamp(Datetime {
            seconds: time / 1_000_000_000,
            nanoseconds: (time % 1_000_000_000) as u32,
        })),
        (false, true) => Ok(NewTimestamp::Now),
        (false, false) => Ok(NewTimestamp::NoChange),
    }
}

fn path_flags(lookup: u32) -> PathFlags {
    if lookup & 1 != 0 {
        PathFlags::SYMLINK_FOLLOW
    } else {
        PathFlags::empty()
    }
}

// ----- guest memory -----

/// The guest's memory and our state, both borrowed from the caller.
fn memory<'a>(caller: &'a mut Caller<'_, P1State>) -> R<(&'a mut [u8], &'a mut P1State)> {
    let mem = caller
        .get_export("memory")
        .and_then(Extern::into_memory)
        .ok_or(errno::FAULT)?;
    Ok(mem.data_and_store_mut(caller))
}

fn bytes(mem: &[u8], ptr: u32, len: u32) -> R<&[u8]> {
    let start = ptr as usize;
    let end = start.checked_add(len as usize).ok_or(errno::FAULT)?;
    mem.get(start..end).ok_or(errno::FAULT)
}

fn bytes_mut(mem: &mut [u8], ptr: u32, len: u32) -> R<&mut [u8]> {
    let start = ptr as usize;
    let end = start.checked_add(len as usize).ok_or(errno::FAULT)?;
    mem.get_mut(start..end).ok_or(errno::FAULT)
}

fn string(mem: &[u8], ptr: u32, len: u32) -> R<String> {
    std::str::from_utf8(bytes(mem, ptr, len)?)
        .map(str::to_owned)
        .map_err(|_| errno::ILSEQ)
}

fn put(mem: &mut [u8], ptr: u32, value: &[u8]) -> R<()> {
    bytes_mut(mem, ptr, value.len() as u32)?.copy_from_slice(value);
    Ok(())
}

fn put_u32(mem: &mut [u8], ptr: u32, v: u32) -> R<()> {
    put(mem, ptr, &v.to_le_bytes())
}

fn put_u64(mem: &mut [u8], ptr: u32, v: u64) -> R<()> {
    put(mem, ptr, &v.to_le_bytes())
}

/// The (pointer, length) pairs of an iovec array.
/// Their lengths add up to at most `u32::MAX` (else `INVAL`, as Linux's `readv`/`writev`
/// refuse an overflowing total), so the byte counts returned to the guest cannot overflow.
fn iovecs(mem: &[u8], ptr: u32, count: u32) -> R<Vec<(u32, u32)>> {
    let raw = bytes(mem, ptr, count.checked_mul(8).ok_or(errno::FAULT)?)?;
    let iovs: Vec<(u32, u32)> = raw
        .chunks_exact(8)
        .map(|c| {
            (
                u32::from_le_bytes(c[0..4].try_into().expect("4 bytes")),
                u32::from_le_bytes(c[4..8].try_into().expect("4 bytes")),
            )
        })
        .collect();
    if iovs.iter().map(|&(_, len)| u64::from(len)).sum::<u64>() > u64::from(u32::MAX) {
        return Err(errno::INVAL);
    }
    Ok(iovs)
}

// ----- the descriptor table -----

/// Fd `fd` of `table` (a function of the table alone, so the filesystem stays borrowable).
fn slot(table: &mut [Option<Fd>], fd: u32) -> R<&mut Fd> {
    table
        .get_mut(fd as usize)
        .and_then(Option::as_mut)
        .ok_or(errno::BADF)
}

/// A regular file's descriptor: stdio is a pipe (`SPIPE`), a directory is not a file
/// (`BADF`), as wasmtime answers for seek, tell and allocate.
fn file_slot(table: &mut [Option<Fd>], fd: u32) -> R<&mut Open> {
    match slot(table, fd)? {
        Fd::Stdio(_) => Err(errno::SPIPE),
        Fd::Open(o) if matches!(o.desc.kind, Kind::Dir) => Err(errno::BADF),
        Fd::Open(o) => Ok(o),
    }
}

impl Files {
    /// Stdio, then the mounts of `fs` preopened as fds 3, 4, … Stop signals make `wake`
    /// readable and are recorded in `stop`; the guest's monotonic clock is `clock`.
    pub fn new(
        fs: GuestFs,
        stdin: bool,
        stdio: HostStdio,
        wake: BorrowedFd<'static>,
        stop: Arc<AtomicI32>,
        clock: &GuestClock,
    ) -> Files {
        let fds = (0..3).map(|fd| Some(Fd::Stdio(fd)));
        let preopens = fs.preopens().into_iter().map(|(desc, name)| {
            Some(Fd::Open(Open {
                desc,
                pos: 0,
                append: false,
                nonblock: false,
                preopen: Some(name),
                listing: None,
            }))
        });
        let table = fds.chain(preopens).collect();
        Files {
            fs,
            table,
            stdin,
            stdio: Arc::new(stdio),
            wake,
            stop,
            started: clock.0,
        }
    }

    /// A filesystem descriptor (stdio is not one).
    fn open(&mut self, fd: u32) -> R<&mut Open> {
        match slot(&mut self.table, fd)? {
            Fd::Open(o) => Ok(o),
            Fd::Stdio(_) => Err(errno::BADF),
        }
    }

    fn desc(&self, fd: u32) -> R<&Descriptor> {
        match self.table.get(fd as usize).and_then(Option::as_ref) {
            Some(Fd::Open(o)) => Ok(&o.desc),
            _ => Err(errno::BADF),
        }
    }

    /// The lowest free fd, as POSIX gives.
    fn insert(&mut self, fd: Fd) -> u32 {
        let slot = match self.table.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                self.table.push(None);
                self.table.len() - 1
            }
        };
        self.table[slot] = Some(fd);
        slot as u32
    }

    fn close(&mut self, fd: u32) -> R<()> {
        slot(&mut self.table, fd)?;
        self.table[fd as usize] = None;
        Ok(())
    }

    /// `to` becomes what `fd` is; `fd` is closed.
    fn renumber(&mut self, fd: u32, to: u32) -> R<()> {
        slot(&mut self.table, fd)?;
        slot(&mut self.table, to)?;
        if fd != to {
            self.table[to as usize] = self.table[fd as usize].take();
        }
        Ok(())
    }

    /// Read into the guest's buffers at `offset` (the file position when None).
    fn read(&mut self, mem: &mut [u8], fd: u32, iovs: &[(u32, u32)], at: Option<u64>) -> R<u32> {
        let (stdin, wake) = (self.stdin, self.wake);
        let f = match (slot(&mut self.table, fd)?, at) {
            (Fd::Stdio(_), Some(_)) => return Err(errno::SPIPE),
            (Fd::Stdio(0), None) if stdin => return read_stdin(mem, iovs, wake),
            (Fd::Stdio(0), None) => return Ok(0),
            (Fd::Stdio(_), None) => return Err(errno::BADF),
            (Fd::Open(f), _) => f,
        };
        if matches!(f.desc.kind, Kind::Dir) {
            return Err(errno::ISDIR);
        }
        let mut offset = at.unwrap_or(f.pos);
        let mut total = 0u32;
        for &(ptr, len) in iovs {
            if len == 0 {
                continue;
            }
            let n = fs(self
                .fs
                .read_into(&f.desc, bytes_mut(mem, ptr, len)?, offset))?;
            total += n as u32;
            offset += n as u64;
            if n < len as usize {
                break;
            }
        }
        if at.is_none() {
            f.pos = offset;
        }
        Ok(total)
    }

    /// Write the guest's buffers at `offset` (the file position, or its end when appending).
    fn write(&mut self, mem: &[u8], fd: u32, iovs: &[(u32, u32)], at: Option<u64>) -> R<u32> {
        let f = match (slot(&mut self.table, fd)?, at) {
            (Fd::Stdio(_), Some(_)) => return Err(errno::SPIPE),
            (Fd::Stdio(out @ (1 | 2)), None) => {
                return write_stdio(self.stdio.fd(*out), mem, iovs)
            }
            (Fd::Stdio(_), None) => return Err(errno::BADF),
            (Fd::Open(f), _) => f,
        };
        if matches!(f.desc.kind, Kind::Dir) {
            return Err(errno::ISDIR);
        }
        let mut offset = at.unwrap_or(f.pos);
        let mut total = 0u32;
        for &(ptr, len) in iovs {
            let data = bytes(mem, ptr, len)?;
            if data.is_empty() {
                continue;
            }
            // In append mode every write goes to the end, `fd_pwrite`'s too (Linux's pwrite
            // ignores the offset of an O_APPEND file).
            let n = if f.append {
                fs(self.fs.append(&f.desc, data))?
            } else {
                fs(self.fs.write(&f.desc, data, offset))?
            };
            total += n as u32;
            offset += n;
            if n < data.len() as u64 {
                break;
            }
        }
        if at.is_none() {
            // The position moves past what was written: the end, when appending.
            f.pos = if f.append {
                fs(self.fs.stat_descriptor(&f.desc))?.st_size as u64
            } else {
                offset
            };
        }
        Ok(total)
    }

    fn seek(&mut self, fd: u32, offset: i64, whence: u8) -> R<u64> {
        let f = file_slot(&mut self.table, fd)?;
        let base = match whence {
            0 => 0,
            1 => f.pos,
            2 => fs(self.fs.stat_descriptor(&f.desc))?.st_size as u64,
            _ => return Err(errno::INVAL),
        };
        let to = i128::from(base) + i128::from(offset);
        f.pos = u64::try_from(to).map_err(|_| errno::INVAL)?;
        Ok(f.pos)
    }

    fn fdstat(&mut self, fd: u32) -> R<[u8; 24]> {
        let mut b = [0u8; 24];
        let f = match slot(&mut self.table, fd)? {
            Fd::Stdio(fd) => {
                let rights = if *fd == 0 {
                    RIGHT_FD_READ
                } else {
                    RIGHT_FD_WRITE
                } | RIGHT_POLL;
                b[0] = stdio_filetype(self.stdio.fd(*fd));
                b[8..16].copy_from_slice(&rights.to_le_bytes());
                return Ok(b);
            }
            Fd::Open(f) => f,
        };
        // Rights as wasmtime reports them: all, less what the descriptor cannot do.
        let mut rights = ALL_RIGHTS;
        let kind = match &f.desc.kind {
            Kind::Dir => {
                rights &=
                    !(RIGHT_FD_SEEK | RIGHT_FD_FILESTAT_SET_SIZE | RIGHT_PATH_FILESTAT_SET_SIZE);
                FILETYPE_DIRECTORY
            }
            Kind::File(_) => stat_filetype(&fs(self.fs.stat_descriptor(&f.desc))?),
        };
        if !f.desc.flags.contains(DescriptorFlags::READ) {
            rights &= !(RIGHT_FD_READ | RIGHT_FD_READDIR);
        }
        if !f.desc.flags.contains(DescriptorFlags::WRITE) {
            rights &= !RIGHT_FD_WRITE;
        }
        let mut flags = 0u16;
        for (set, bit) in [
            (f.append, FDFLAGS_APPEND),
            (f.nonblock, FDFLAGS_NONBLOCK),
            (
                f.desc.flags.contains(DescriptorFlags::DATA_INTEGRITY_SYNC),
                FDFLAGS_DSYNC,
            ),
            (
                f.desc.flags.contains(DescriptorFlags::REQUESTED_WRITE_SYNC),
                FDFLAGS_RSYNC,
            ),
            (
                f.desc.flags.contains(DescriptorFlags::FILE_INTEGRITY_SYNC),
                FDFLAGS_SYNC,
            ),
        ] {
            if set {
                flags |= bit;
            }
        }
        b[0] = kind;
        b[2..4].copy_from_slice(&flags.to_le_bytes());
        // What files opened below a directory may get: everything (libc asks for the
        // rights it needs, masked by these).
        let inheriting = match f.desc.kind {
            Kind::Dir => ALL_RIGHTS,
            Kind::File(_) => rights,
        };
        b[8..16].copy_from_slice(&rights.to_le_bytes());
        b[16..24].copy_from_slice(&inheriting.to_le_bytes());
        Ok(b)
    }

    fn filestat(&mut self, fd: u32) -> R<[u8; 64]> {
        match slot(&mut self.table, fd)? {
            Fd::Stdio(fd) => {
                let mut stat = [0u8; 64];
                stat[16] = stdio_filetype(self.stdio.fd(*fd));
                Ok(stat)
            }
            Fd::Open(f) => Ok(filestat(&fs(self.fs.stat_descriptor(&f.desc))?)),
        }
    }

    fn set_flags(&mut self, fd: u32, flags: u16) -> R<()> {
        let f = match slot(&mut self.table, fd)? {
            Fd::Stdio(_) if flags == 0 => return Ok(()),
            Fd::Stdio(_) => return Err(errno::NOTSUP),
            Fd::Open(f) => f,
        };
        // Only append and nonblock can change; the sync flags are fixed at open.
        if flags & (FDFLAGS_DSYNC | FDFLAGS_RSYNC | FDFLAGS_SYNC) != 0 {
            return Err(errno::INVAL);
        }
        if flags & !(FDFLAGS_APPEND | FDFLAGS_NONBLOCK) != 0 {
            return Err(errno::NOTSUP);
        }
        f.append = flags & FDFLAGS_APPEND != 0;
        f.nonblock = flags & FDFLAGS_NONBLOCK != 0;
        Ok(())
    }

    fn sync(&mut self, fd: u32, data_only: bool) -> R<()> {
        match slot(&mut self.table, fd)? {
            Fd::Stdio(_) => Ok(()),
            Fd::Open(f) => fs(self.fs.sync(&f.desc, data_only)),
        }
    }

    fn advise(&mut self, fd: u32, advice: i32) -> R<()> {
        match slot(&mut self.table, fd)? {
            Fd::Stdio(_) => Err(errno::SPIPE),
            Fd::Open(_) if !(0..=5).contains(&advice) => Err(errno::INVAL),
            Fd::Open(_) => Ok(()),
        }
    }

    fn path_open(
        &mut self,
        dirfd: u32,
        lookup: u32,
        path: &str,
        oflags: u16,
        rights: u64,
        fdflags: u16,
    ) -> R<u32> {
        let mut open = OpenFlags::empty();
        for (bit, flag) in [
            (1, OpenFlags::CREATE),
            (2, OpenFlags::DIRECTORY),
            (4, OpenFlags::EXCLUSIVE),
            (8, OpenFlags::TRUNCATE),
        ] {
            if oflags & bit != 0 {
                open |= flag;
            }
        }
        let append = fdflags & FDFLAGS_APPEND != 0;
        let mut flags = DescriptorFlags::empty();
        if rights & RIGHT_FD_READ != 0 {
            flags |= DescriptorFlags::READ;
        }
        if rights & RIGHT_FD_WRITE != 0 || append {
            flags |= DescriptorFlags::WRITE;
        }
        for (bit, flag) in [
            (FDFLAGS_DSYNC, DescriptorFlags::DATA_INTEGRITY_SYNC),
            (FDFLAGS_RSYNC, DescriptorFlags::REQUESTED_WRITE_SYNC),
            (FDFLAGS_SYNC, DescriptorFlags::FILE_INTEGRITY_SYNC),
        ] {
            if fdflags & bit != 0 {
                flags |= flag;
            }
        }
        let dir = self.desc(dirfd)?;
        let desc = fs(self.fs.open_at(dir, path_flags(lookup), path, open, flags))?;
        Ok(self.insert(Fd::Open(Open {
            desc,
            pos: 0,
            append,
            nonblock: fdflags & FDFLAGS_NONBLOCK != 0,
            preopen: None,
            listing: None,
        })))
    }

    /// Fill `buf` with dirents from `cookie` on (the last one cut short when it does not
    /// fit, as preview 1 wants); returns the bytes used.
    fn readdir(&mut self, buf: &mut [u8], fd: u32, cookie: u64) -> R<u32> {
        let Fd::Open(f) = slot(&mut self.table, fd)? else {
            return Err(errno::BADF);
        };
        if !matches!(f.desc.kind, Kind::Dir) {
            return Err(errno::NOTDIR);
        }
        if cookie == 0 || f.listing.is_none() {
            let ino = |st: &Stat| identity(st).1;
            let here = ino(&fs(self.fs.stat_descriptor(&f.desc))?);
            let parent = ino(&fs(self.fs.parent_stat(&f.desc))?);
            let mut listing = vec![
                (".".to_string(), FILETYPE_DIRECTORY, here),
                ("..".to_string(), FILETYPE_DIRECTORY, parent),
            ];
            for listed in fs(self.fs.read_directory(&f.desc))? {
                let listed = fs(listed)?;
                let kind = filetype(listed.entry.type_);
                listing.push((listed.entry.name, kind, listed.ino));
            }
            f.listing = Some(listing);
        }
        let listing = f.listing.as_deref().unwrap_or_default();
        let mut used = 0usize;
        let start = usize::try_from(cookie).map_err(|_| errno::OVERFLOW)?;
        for (i, (name, kind, ino)) in listing.iter().enumerate().skip(start) {
            let mut dirent = Vec::with_capacity(24 + name.len());
            dirent.extend_from_slice(&(i as u64 + 1).to_le_bytes());
            dirent.extend_from_slice(&ino.to_le_bytes());
            dirent.extend_from_slice(&(name.len() as u32).to_le_bytes());
            dirent.extend_from_slice(&[*kind, 0, 0, 0]);
            dirent.extend_from_slice(name.as_bytes());
            let n = dirent.len().min(buf.len() - used);
            buf[used..used + n].copy_from_slice(&dirent[..n]);
            used += n;
            if used == buf.len() {
                break;
            }
        }
        Ok(used as u32)
    }

    /// What a socket call on `fd` answers: no descriptor we give out is a socket.
    fn not_a_socket(&mut self, fd: u32) -> R<()> {
        slot(&mut self.table, fd)?;
        Err(errno::NOTSOCK)
    }

    /// A preopen's guest path.
    fn preopen(&mut self, fd: u32) -> R<String> {
        self.open(fd)?.preopen.clone().ok_or(errno::BADF)
    }
}

// ----- stdio: the process's own, or the fds the run was given -----

/// The host fds behind the guest's stdio: stdin is the process's; stdout and stderr are the
/// process's unless the run gave others (a build step's pipe).
pub struct HostStdio {
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
}

impl HostStdio {
    pub fn new(stdout: Stream, stderr: Stream) -> HostStdio {
        let own = |s: Stream| match s {
            Stream::Inherit => None,
            Stream::Fd(fd) => Some(fd),
        };
        HostStdio {
            stdout: own(stdout),
            stderr: own(stderr),
        }
    }

    fn fd(&self, fd: u32) -> BorrowedFd<'_> {
        match fd {
            0 => rustix::stdio::stdin(),
            1 => match &self.stdout {
                Some(f) => f.as_fd(),
                None => rustix::stdio::stdout(),
            },
            _ => match &self.stderr {
                Some(f) => f.as_fd(),
                None => rustix::stdio::stderr(),
            },
        }
    }
}

/// A terminal is a character device without seek, as wasi-libc's `isatty` asks.
fn stdio_filetype(fd: BorrowedFd<'_>) -> u8 {
    if rustix::termios::isatty(fd) {
        2
    } else {
        FILETYPE_UNKNOWN
    }
}

fn read_stdin(mem: &mut [u8], iovs: &[(u32, u32)], wake: BorrowedFd<'_>) -> R<u32> {
    // One read, into the first non-empty buffer: what is there now, as a pipe gives it.
    let Some(&(ptr, len)) = iovs.iter().find(|(_, len)| *len > 0) else {
        return Ok(0);
    };
    let buf = bytes_mut(mem, ptr, len)?;
    // Waiting in poll, not in read, so that a stop signal ends the wait.
    let mut stdin = vec![PollFd::from_borrowed_fd(rustix::stdio::stdin(), PollFlags::IN)];
    wait(&mut stdin, None, wake)?;
    loop {
        match rustix::io::read(rustix::stdio::stdin(), &mut *buf) {
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(host_errno(e)),
            Ok(n) => return Ok(n as u32),
        }
    }
}

/// Wait until one of `fds` is ready or `deadline` passes (`None`: no deadline), or a stop
/// signal comes: [`errno::INTR`], and the call traps (see [`host_function`]).
fn wait<'fd>(
    fds: &mut Vec<PollFd<'fd>>,
    deadline: Option<Instant>,
    wake: BorrowedFd<'fd>,
) -> R<()> {
    fds.push(PollFd::from_borrowed_fd(wake, PollFlags::IN));
    let waited = loop {
        let timeout = deadline.map(|d| {
            let left = d.saturating_duration_since(Instant::now());
            rustix::time::Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: left.subsec_nanos().into(),
            }
        });
        match rustix::event::poll(fds, timeout.as_ref()) {
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => break Err(host_errno(e)),
            Ok(_) if fds.last().is_some_and(|w| !w.revents().is_empty()) => break Err(errno::INTR),
            Ok(_) => break Ok(()),
        }
    };
    fds.pop();
    waited
}

fn write_stdio(fd: BorrowedFd<'_>, mem: &[u8], iovs: &[(u32, u32)]) -> R<u32> {
    let mut total = 0u32;
    for &(ptr, len) in iovs {
        let mut data = bytes(mem, ptr, len)?;
        while !data.is_empty() {
            match rustix::io::write(fd, data) {
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) if total == 0 => return Err(host_errno(e)),
                Err(_) => return Ok(total),
                Ok(n) => {
                    total += n as u32;
                    data = &data[n..];
                }
            }
        }
    }
    Ok(total)
}

// ----- poll_oneoff -----

/// The guest's monotonic clock: nanoseconds since the guest started, read by
/// `clock_time_get` (through wasmtime-wasi) and by our `poll_oneoff` for absolute deadlines.
#[derive(Clone, Copy)]
pub struct GuestClock(Instant);

impl GuestClock {
    pub fn new() -> GuestClock {
        GuestClock(Instant::now())
    }
}

impl HostMonotonicClock for GuestClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

const SUBSCRIPTION_SIZE: u32 = 48;
const EVENT_SIZE: u32 = 32;
/// More subscriptions than this is `INVAL`, as Linux refuses more fds than RLIMIT_NOFILE:
/// what the host holds per call stays small next to the guest's own memory.
const MAX_SUBSCRIPTIONS: u32 = 1 << 16;
const EVENTTYPE_CLOCK: u8 = 0;
const EVENTTYPE_FD_READ: u8 = 1;
const EVENTTYPE_FD_WRITE: u8 = 2;
const CLOCK_REALTIME: u32 = 0;
const CLOCK_MONOTONIC: u32 = 1;
const SUBCLOCKFLAGS_ABSTIME: u16 = 1;
const EVENTRWFLAGS_HANGUP: u16 = 1;

/// A `subscription`, read from the guest.
struct Subscription {
    userdata: u64,
    /// `EVENTTYPE_*`.
    kind: u8,
    /// The clock id, or the descriptor.
    id: u32,
    /// Clocks: the timeout (ns) and whether it is absolute.
    timeout: u64,
    absolute: bool,
}

impl Subscription {
    fn parse(b: &[u8]) -> Subscription {
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let flags = u16::from_le_bytes(b[40..42].try_into().expect("2 bytes"));
        Subscription {
            userdata: u64_at(0),
            kind: b[8],
            id: u32::from_le_bytes(b[16..20].try_into().expect("4 bytes")),
            timeout: u64_at(24),
            absolute: flags & SUBCLOCKFLAGS_ABSTIME != 0,
        }
    }
}

/// An `event`: what became of one subscription.
struct Event {
    userdata: u64,
    error: Errno,
    kind: u8,
    /// Bytes ready to read (fd_read of a file).
    nbytes: u64,
    hangup: bool,
}

impl Event {
    fn new(sub: &Subscription, error: Errno) -> Event {
        Event {
            userdata: sub.userdata,
            error,
            kind: sub.kind,
            nbytes: 0,
            hangup: false,
        }
    }

    fn encode(&self) -> [u8; EVENT_SIZE as usize] {
        let mut b = [0u8; EVENT_SIZE as usize];
        b[0..8].copy_from_slice(&self.userdata.to_le_bytes());
        b[8..10].copy_from_slice(&self.error.to_le_bytes());
        b[10] = self.kind;
        b[16..24].copy_from_slice(&self.nbytes.to_le_bytes());
        let flags = if self.hangup { EVENTRWFLAGS_HANGUP } else { 0 };
        b[24..26].copy_from_slice(&flags.to_le_bytes());
        b
    }
}

/// When an fd subscription is ready.
enum Readiness {
    /// Now, with this many bytes to read.
    Now(u64),
    /// When the process's stdio fd (0, 1, 2) is, for these poll flags.
    Stdio(u32, PollFlags),
}

impl Files {
    /// `poll_oneoff`: the events of the subscriptions that are ready, after waiting for the
    /// first when none is. Files and directories are always ready, as on Linux; stdio waits
    /// on the process's own.
    fn poll(&mut self, subscriptions: &[Subscription]) -> R<Vec<Event>> {
        let start = Instant::now();
        let host = Arc::clone(&self.stdio);
        let mut events = Vec::new();
        let mut clocks = Vec::new();
        let mut stdio = Vec::new();
        let mut fds = Vec::new();
        for sub in subscriptions {
            match sub.kind {
                EVENTTYPE_CLOCK => match self.deadline(sub, start) {
                    Ok(at) => clocks.push((sub, at)),
                    Err(e) => events.push(Event::new(sub, e)),
                },
                EVENTTYPE_FD_READ | EVENTTYPE_FD_WRITE => {
                    match self.readiness(sub.id, sub.kind == EVENTTYPE_FD_WRITE) {
                        Ok(Readiness::Now(nbytes)) => events.push(Event {
                            nbytes,
                            ..Event::new(sub, 0)
                        }),
                        Ok(Readiness::Stdio(fd, flags)) => {
                            stdio.push(sub);
                            fds.push(PollFd::from_borrowed_fd(host.fd(fd), flags));
                        }
                        Err(e) => events.push(Event::new(sub, e)),
                    }
                }
                _ => return Err(errno::INVAL),
            }
        }
        loop {
            // With an event already, only look at stdio; else wait for it or the first clock
            // (with neither, until a stop signal: the guest asked to sleep past our clock).
            let deadline = if events.is_empty() {
                clocks.iter().filter_map(|c| c.1).min()
            } else {
                Some(start)
            };
            wait(&mut fds, deadline, self.wake)?;
            for (sub, fd) in stdio.iter().zip(&fds) {
                let revents = fd.revents();
                let error = if revents.contains(PollFlags::NVAL) {
                    errno::BADF
                } else if revents.contains(PollFlags::ERR) {
                    errno::PIPE
                } else {
                    0
                };
                if !revents.is_empty() {
                    events.push(Event {
                        hangup: revents.contains(PollFlags::HUP),
                        ..Event::new(sub, error)
                    });
                }
            }
            let now = Instant::now();
            events.extend(
                clocks
                    .iter()
                    .filter(|c| c.1.is_some_and(|at| at <= now))
                    .map(|(sub, _)| Event::new(sub, 0)),
            );
            if !events.is_empty() {
                return Ok(events);
            }
        }
    }

    /// When a clock subscription fires (`None`: beyond any instant we can hold).
    fn deadline(&self, sub: &Subscription, now: Instant) -> R<Option<Instant>> {
        let timeout = Duration::from_nanos(sub.timeout);
        Ok(match (sub.id, sub.absolute) {
            (CLOCK_REALTIME | CLOCK_MONOTONIC, false) => now.checked_add(timeout),
            (CLOCK_MONOTONIC, true) => self.started.checked_add(timeout),
            (CLOCK_REALTIME, true) => {
                let wall = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                now.checked_add(timeout.saturating_sub(wall))
            }
            // The CPU-time clocks do not advance while the guest waits.
            _ => return Err(errno::INVAL),
        })
    }

    /// When fd `fd` is ready for reading (or `write`-ing).
    fn readiness(&mut self, fd: u32, write: bool) -> R<Readiness> {
        match (slot(&mut self.table, fd)?, write) {
            (Fd::Stdio(0), false) if self.stdin => Ok(Readiness::Stdio(0, PollFlags::IN)),
            // An empty stdin: at its end.
            (Fd::Stdio(0), false) => Ok(Readiness::Now(0)),
            (Fd::Stdio(out @ (1 | 2)), true) => Ok(Readiness::Stdio(*out, PollFlags::OUT)),
            (Fd::Stdio(_), _) => Err(errno::BADF),
            (Fd::Open(f), false) if matches!(f.desc.kind, Kind::File(_)) => {
                let size = fs(self.fs.stat_descriptor(&f.desc))?.st_size as u64;
                Ok(Readiness::Now(size.saturating_sub(f.pos)))
            }
            (Fd::Open(_), _) => Ok(Readiness::Now(0)),
        }
    }
}

fn host_errno(e: rustix::io::Errno) -> Errno {
    errno_of(super::filesystem::error_code_from_errno(e.raw_os_error()))
}

// ----- the linker -----

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

#[cfg(test)]
mod tests {
    use super::*;

    /// Two iovecs of 2 GiB each (the guest may point both at the same buffer) would make
    /// the byte count overflow: refused, as Linux refuses such a `writev`.
    #[test]
    fn iovec_totals_past_4_gib_are_invalid() {
        let mut mem = vec![0u8; 64];
        for (i, (ptr, len)) in [(32u32, 1u32 << 31), (32, 1 << 31)].into_iter().enumerate() {
            mem[i * 8..i * 8 + 4].copy_from_slice(&ptr.to_le_bytes());
            mem[i * 8 + 4..i * 8 + 8].copy_from_slice(&len.to_le_bytes());
        }
        assert_eq!(iovecs(&mem, 0, 2), Err(errno::INVAL));
        assert_eq!(iovecs(&mem, 0, 1), Ok(vec![(32, 1 << 31)]));
        assert_eq!(iovecs(&mem, 60, 1), Err(errno::FAULT));
    }
}
