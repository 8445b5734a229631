//! The preview 1 ABI: errnos, rights, fd flags and filetypes as `wasi_snapshot_preview1.witx`
//! numbers them, their mapping from `wasi:filesystem`'s types, and reading and writing the
//! guest's memory (every pointer checked against it).

use wasmtime::{Caller, Extern};

use super::P1State;
use crate::fs::{file_type, Stat};
use crate::wasm::guestfs::bindings::wasi::clocks::wall_clock::Datetime;
use crate::wasm::guestfs::bindings::wasi::filesystem::types::{
    DescriptorType, ErrorCode, NewTimestamp, PathFlags,
};
use crate::wasm::guestfs::{descriptor_stat, descriptor_type, error_code_from_errno, identity};

pub(super) type Errno = u16;
pub(super) mod errno {
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

pub(super) fn errno_of(code: ErrorCode) -> Errno {
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

pub(super) type R<T> = Result<T, Errno>;

pub(super) fn fs<T>(r: Result<T, ErrorCode>) -> R<T> {
    r.map_err(errno_of)
}

// Rights (witx `rights`): what fdstat reports; not enforced beyond the descriptor's own
// read/write flags, as wasmtime-wasi.
pub(super) const RIGHT_FD_READ: u64 = 1 << 1;
pub(super) const RIGHT_FD_SEEK: u64 = 1 << 2;
pub(super) const RIGHT_FD_WRITE: u64 = 1 << 6;
pub(super) const RIGHT_FD_READDIR: u64 = 1 << 14;
pub(super) const RIGHT_PATH_FILESTAT_SET_SIZE: u64 = 1 << 19;
pub(super) const RIGHT_FD_FILESTAT_SET_SIZE: u64 = 1 << 22;
pub(super) const RIGHT_POLL: u64 = 1 << 27;
pub(super) const ALL_RIGHTS: u64 = (1 << 30) - 1;

// Filetypes.
// Fdflags.
pub(super) const FDFLAGS_APPEND: u16 = 1;
pub(super) const FDFLAGS_DSYNC: u16 = 2;
pub(super) const FDFLAGS_NONBLOCK: u16 = 4;
pub(super) const FDFLAGS_RSYNC: u16 = 8;
pub(super) const FDFLAGS_SYNC: u16 = 16;

pub(super) const FILETYPE_UNKNOWN: u8 = 0;
pub(super) const FILETYPE_DIRECTORY: u8 = 3;

pub(super) fn filetype(t: DescriptorType) -> u8 {
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

pub(super) fn stat_filetype(st: &Stat) -> u8 {
    filetype(descriptor_type(file_type(st)))
}

/// `filestat`: 64 bytes, from the same conversion preview 2's `stat` uses (a time before
/// 1970, which WASI cannot hold, is 0, as wasmtime-wasi gives).
pub(super) fn filestat(st: &Stat) -> [u8; 64] {
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
pub(super) fn new_timestamp(time: u64, flags: u16, set: u16, now: u16) -> R<NewTimestamp> {
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

pub(super) fn path_flags(lookup: u32) -> PathFlags {
    if lookup & 1 != 0 {
        PathFlags::SYMLINK_FOLLOW
    } else {
        PathFlags::empty()
    }
}

pub(super) fn host_errno(e: rustix::io::Errno) -> Errno {
    errno_of(error_code_from_errno(e.raw_os_error()))
}

// ----- guest memory -----

/// The guest's memory and our state, both borrowed from the caller.
pub(super) fn memory<'a>(
    caller: &'a mut Caller<'_, P1State>,
) -> R<(&'a mut [u8], &'a mut P1State)> {
    let mem = caller
        .get_export("memory")
        .and_then(Extern::into_memory)
        .ok_or(errno::FAULT)?;
    Ok(mem.data_and_store_mut(caller))
}

pub(super) fn bytes(mem: &[u8], ptr: u32, len: u32) -> R<&[u8]> {
    let start = ptr as usize;
    let end = start.checked_add(len as usize).ok_or(errno::FAULT)?;
    mem.get(start..end).ok_or(errno::FAULT)
}

pub(super) fn bytes_mut(mem: &mut [u8], ptr: u32, len: u32) -> R<&mut [u8]> {
    let start = ptr as usize;
    let end = start.checked_add(len as usize).ok_or(errno::FAULT)?;
    mem.get_mut(start..end).ok_or(errno::FAULT)
}

pub(super) fn string(mem: &[u8], ptr: u32, len: u32) -> R<String> {
    std::str::from_utf8(bytes(mem, ptr, len)?)
        .map(str::to_owned)
        .map_err(|_| errno::ILSEQ)
}

pub(super) fn put(mem: &mut [u8], ptr: u32, value: &[u8]) -> R<()> {
    bytes_mut(mem, ptr, value.len() as u32)?.copy_from_slice(value);
    Ok(())
}

pub(super) fn put_u32(mem: &mut [u8], ptr: u32, v: u32) -> R<()> {
    put(mem, ptr, &v.to_le_bytes())
}

pub(super) fn put_u64(mem: &mut [u8], ptr: u32, v: u64) -> R<()> {
    put(mem, ptr, &v.to_le_bytes())
}

/// The (pointer, length) pairs of an iovec array.
/// Their lengths add up to at most `u32::MAX` (else `INVAL`, as Linux's `readv`/`writev`
/// refuse an overflowing total), so the byte counts returned to the guest cannot overflow.
pub(super) fn iovecs(mem: &[u8], ptr: u32, count: u32) -> R<Vec<(u32, u32)>> {
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
