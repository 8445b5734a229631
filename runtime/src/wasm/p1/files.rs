//! The guest's descriptor table: stdio at fds 0-2, the mounts' preopens from 3, and what the
//! guest opens from them; the fd and path functions of preview 1, on [`GuestFs`].

use std::os::fd::BorrowedFd;
use std::sync::atomic::AtomicI32;
use std::sync::Arc;
use std::time::Instant;

use super::abi::*;
use super::poll::GuestClock;
use super::stdio::{read_stdin, stdio_filetype, write_stdio, HostStdio};
use crate::fs::Stat;
use crate::wasm::guestfs::bindings::wasi::filesystem::types::{DescriptorFlags, OpenFlags};
use crate::wasm::guestfs::{identity, Descriptor, GuestFs, Kind};

/// The guest's descriptors, by fd: stdio at 0-2, the mounts' preopens from 3.
pub struct Files {
    pub(super) fs: GuestFs,
    pub(super) table: Vec<Option<Fd>>,
    /// Whether the guest reads the process's stdin (`-i`); else its stdin is empty.
    pub(super) stdin: bool,
    /// Where the guest's stdout and stderr go.
    pub(super) stdio: Arc<HostStdio>,
    /// Stop signals make it readable: every wait watches it.
    pub(super) wake: BorrowedFd<'static>,
    /// The signal that stopped the guest (0 while none has).
    pub(super) stop: Arc<AtomicI32>,
    /// The guest's monotonic clock counts from here (see [`GuestClock`]).
    pub(super) started: Instant,
}

pub(super) enum Fd {
    /// The process's own stdin, stdout or stderr (0, 1, 2).
    Stdio(u32),
    Open(Open),
}

/// A descriptor of the guest's filesystem.
pub(super) struct Open {
    pub(super) desc: Descriptor,
    /// The file position (files only).
    pub(super) pos: u64,
    pub(super) append: bool,
    /// A preopen's guest path.
    pub(super) preopen: Option<String>,
    /// `NONBLOCK` as the guest set it (files never block, as on Linux; it is reported).
    pub(super) nonblock: bool,
    /// The listing `fd_readdir` pages through (name, filetype, inode), taken at cookie 0.
    pub(super) listing: Option<Vec<(String, u8, u64)>>,
}

/// Fd `fd` of `table` (a function of the table alone, so the filesystem stays borrowable).
pub(super) fn slot(table: &mut [Option<Fd>], fd: u32) -> R<&mut Fd> {
    table
        .get_mut(fd as usize)
        .and_then(Option::as_mut)
        .ok_or(errno::BADF)
}

/// A regular file's descriptor: stdio is a pipe (`SPIPE`), a directory is not a file
/// (`BADF`), as wasmtime answers for seek, tell and allocate.
pub(super) fn file_slot(table: &mut [Option<Fd>], fd: u32) -> R<&mut Open> {
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
    pub(super) fn open(&mut self, fd: u32) -> R<&mut Open> {
        match slot(&mut self.table, fd)? {
            Fd::Open(o) => Ok(o),
            Fd::Stdio(_) => Err(errno::BADF),
        }
    }

    pub(super) fn desc(&self, fd: u32) -> R<&Descriptor> {
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

    pub(super) fn close(&mut self, fd: u32) -> R<()> {
        slot(&mut self.table, fd)?;
        self.table[fd as usize] = None;
        Ok(())
    }

    /// `to` becomes what `fd` is; `fd` is closed.
    pub(super) fn renumber(&mut self, fd: u32, to: u32) -> R<()> {
        slot(&mut self.table, fd)?;
        slot(&mut self.table, to)?;
        if fd != to {
            self.table[to as usize] = self.table[fd as usize].take();
        }
        Ok(())
    }

    /// Read into the guest's buffers at `offset` (the file position when None).
    pub(super) fn read(
        &mut self,
        mem: &mut [u8],
        fd: u32,
        iovs: &[(u32, u32)],
        at: Option<u64>,
    ) -> R<u32> {
        let (stdin, wake, stdio) = (self.stdin, self.wake, Arc::clone(&self.stdio));
        let f = match (slot(&mut self.table, fd)?, at) {
            (Fd::Stdio(_), Some(_)) => return Err(errno::SPIPE),
            (Fd::Stdio(0), None) if stdin => return read_stdin(stdio.fd(0), mem, iovs, wake),
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
    pub(super) fn write(
        &mut self,
        mem: &[u8],
        fd: u32,
        iovs: &[(u32, u32)],
        at: Option<u64>,
    ) -> R<u32> {
        let f = match (slot(&mut self.table, fd)?, at) {
            (Fd::Stdio(_), Some(_)) => return Err(errno::SPIPE),
            (Fd::Stdio(out @ (1 | 2)), None) => return write_stdio(self.stdio.fd(*out), mem, iovs),
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

    pub(super) fn seek(&mut self, fd: u32, offset: i64, whence: u8) -> R<u64> {
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

    pub(super) fn fdstat(&mut self, fd: u32) -> R<[u8; 24]> {
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

    pub(super) fn filestat(&mut self, fd: u32) -> R<[u8; 64]> {
        match slot(&mut self.table, fd)? {
            Fd::Stdio(fd) => {
                let mut stat = [0u8; 64];
                stat[16] = stdio_filetype(self.stdio.fd(*fd));
                Ok(stat)
            }
            Fd::Open(f) => Ok(filestat(&fs(self.fs.stat_descriptor(&f.desc))?)),
        }
    }

    pub(super) fn set_flags(&mut self, fd: u32, flags: u16) -> R<()> {
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

    pub(super) fn sync(&mut self, fd: u32, data_only: bool) -> R<()> {
        match slot(&mut self.table, fd)? {
            Fd::Stdio(_) => Ok(()),
            Fd::Open(f) => fs(self.fs.sync(&f.desc, data_only)),
        }
    }

    pub(super) fn advise(&mut self, fd: u32, advice: i32) -> R<()> {
        match slot(&mut self.table, fd)? {
            Fd::Stdio(_) => Err(errno::SPIPE),
            Fd::Open(_) if !(0..=5).contains(&advice) => Err(errno::INVAL),
            Fd::Open(_) => Ok(()),
        }
    }

    pub(super) fn path_open(
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
    pub(super) fn readdir(&mut self, buf: &mut [u8], fd: u32, cookie: u64) -> R<u32> {
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
    pub(super) fn not_a_socket(&mut self, fd: u32) -> R<()> {
        slot(&mut self.table, fd)?;
        Err(errno::NOTSOCK)
    }

    /// A preopen's guest path.
    pub(super) fn preopen(&mut self, fd: u32) -> R<String> {
        self.open(fd)?.preopen.clone().ok_or(errno::BADF)
    }
}
