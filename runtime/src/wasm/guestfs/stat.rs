//! Stat and times: `runtime::fs`'s stat as `wasi:filesystem`'s types (preview 1 builds its
//! `filestat` from the same), and the guest's new timestamps as the kernel's.

use std::fs::File;
use std::io;

use rustix::fs::{FileType, Timespec, Timestamps};

use super::bindings::wasi::clocks::wall_clock::Datetime;
use super::bindings::wasi::filesystem::types::{
    DescriptorStat, DescriptorType, ErrorCode, MetadataHashValue, NewTimestamp,
};
use super::Res;
use crate::fs::{file_type, Stat};

pub(in crate::wasm) fn descriptor_type(ft: FileType) -> DescriptorType {
    match ft {
        FileType::RegularFile => DescriptorType::RegularFile,
        FileType::Directory => DescriptorType::Directory,
        FileType::Symlink => DescriptorType::SymbolicLink,
        FileType::Fifo => DescriptorType::Fifo,
        FileType::Socket => DescriptorType::Socket,
        FileType::CharacterDevice => DescriptorType::CharacterDevice,
        FileType::BlockDevice => DescriptorType::BlockDevice,
        _ => DescriptorType::Unknown,
    }
}

fn datetime(sec: i64, nsec: i64) -> Option<Datetime> {
    Some(Datetime {
        seconds: u64::try_from(sec).ok()?,
        nanoseconds: u32::try_from(nsec).ok().filter(|n| *n < 1_000_000_000)?,
    })
}

#[allow(
    clippy::unnecessary_cast,
    reason = "stat field types differ between targets"
)]
pub(in crate::wasm) fn descriptor_stat(st: &Stat) -> DescriptorStat {
    DescriptorStat {
        type_: descriptor_type(file_type(st)),
        link_count: st.st_nlink as u64,
        size: st.st_size as u64,
        data_access_timestamp: datetime(st.st_atime as i64, st.st_atime_nsec as i64),
        data_modification_timestamp: datetime(st.st_mtime as i64, st.st_mtime_nsec as i64),
        status_change_timestamp: datetime(st.st_ctime as i64, st.st_ctime_nsec as i64),
    }
}

#[allow(
    clippy::unnecessary_cast,
    reason = "stat field types differ between targets"
)]
pub(in crate::wasm) fn identity(st: &Stat) -> (u64, u64) {
    (st.st_dev as u64, st.st_ino as u64)
}

/// As wasmtime-wasi: 64 bits of hash of (dev, ino), and the same xor a constant.
pub(in crate::wasm) fn metadata_hash_of(st: &Stat) -> MetadataHashValue {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    identity(st).hash(&mut hasher);
    let lower = hasher.finish();
    MetadataHashValue {
        lower,
        upper: lower ^ 4614256656552045848u64,
    }
}

fn timespec(t: NewTimestamp) -> Res<Timespec> {
    Ok(match t {
        NewTimestamp::NoChange => Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        },
        NewTimestamp::Now => Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_NOW,
        },
        NewTimestamp::Timestamp(d) => {
            let secs = d
                .seconds
                .checked_add(u64::from(d.nanoseconds / 1_000_000_000))
                .ok_or(ErrorCode::Overflow)?;
            Timespec {
                tv_sec: secs.try_into().map_err(|_| ErrorCode::Overflow)?,
                tv_nsec: (d.nanoseconds % 1_000_000_000).into(),
            }
        }
    })
}

pub(super) fn timestamps(atim: NewTimestamp, mtim: NewTimestamp) -> Res<Timestamps> {
    Ok(Timestamps {
        last_access: timespec(atim)?,
        last_modification: timespec(mtim)?,
    })
}

pub(in crate::wasm) fn fstat(file: &File) -> Res<Stat> {
    Ok(rustix::fs::fstat(file).map_err(io::Error::from)?)
}
