//! The directory-handle operations the overlay and the layer code are built on: one name
//! at a time, never following a symlink, on an open directory. This trait is the seam where
//! the backing can move from cap-std to `openat2(RESOLVE_BENEATH)`; what cap-std lacks
//! (ownership, xattrs, device nodes, times) is done with rustix `*at` calls on the same fd.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;

use cap_std::fs::Dir;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timestamps, XattrFlags};

pub type Stat = rustix::fs::Stat;

pub trait DirHandle: Sized {
    /// Open the subdirectory `name`; a symlink there is an error, not followed.
    fn open_dir_nofollow(&self, name: &OsStr) -> io::Result<Self>;
    /// `lstat` of `name`, `None` when there is nothing by that name.
    fn stat_at(&self, name: &OsStr) -> io::Result<Option<Stat>>;
    fn stat_self(&self) -> io::Result<Stat>;
    fn names(&self) -> io::Result<Vec<OsString>>;
    /// Open (or create, with `OFlags::CREATE`) a file; `O_NOFOLLOW` is always added.
    fn open_file(&self, name: &OsStr, flags: OFlags, mode: u32) -> io::Result<File>;
    fn make_dir(&self, name: &OsStr, mode: u32) -> io::Result<()>;
    fn remove_file_at(&self, name: &OsStr) -> io::Result<()>;
    fn remove_dir_at(&self, name: &OsStr) -> io::Result<()>;
    fn rename_at(&self, name: &OsStr, to: &Self, to_name: &OsStr) -> io::Result<()>;
    fn symlink_at(&self, target: &OsStr, name: &OsStr) -> io::Result<()>;
    fn read_link_at(&self, name: &OsStr) -> io::Result<OsString>;
    fn hard_link_at(&self, name: &OsStr, to: &Self, to_name: &OsStr) -> io::Result<()>;
    /// Create a device node, FIFO, or (0:0 character device) an overlay whiteout.
    fn make_node(&self, name: &OsStr, kind: FileType, mode: u32, dev: u64) -> io::Result<()>;
    fn chmod_at(&self, name: &OsStr, mode: u32) -> io::Result<()>;
    fn chown_at(&self, name: &OsStr, uid: u32, gid: u32) -> io::Result<()>;
    fn set_times_at(&self, name: &OsStr, times: &Timestamps) -> io::Result<()>;
    /// An xattr of this directory itself.
    fn get_xattr(&self, key: &str) -> io::Result<Option<Vec<u8>>>;
    fn set_xattr(&self, key: &str, value: &[u8]) -> io::Result<()>;
    fn try_clone_handle(&self) -> io::Result<Self>;
}

impl DirHandle for Dir {
    fn open_dir_nofollow(&self, name: &OsStr) -> io::Result<Dir> {
        let fd = rustix::fs::openat(
            self,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Dir::from_std_file(File::from(fd)))
    }

    fn stat_at(&self, name: &OsStr) -> io::Result<Option<Stat>> {
        match rustix::fs::statat(self, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn stat_self(&self) -> io::Result<Stat> {
        Ok(rustix::fs::fstat(self)?)
    }

    fn names(&self) -> io::Result<Vec<OsString>> {
        self.entries()?.map(|e| e.map(|e| e.file_name())).collect()
    }

    fn open_file(&self, name: &OsStr, flags: OFlags, mode: u32) -> io::Result<File> {
        let fd = rustix::fs::openat(
            self,
            name,
            flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )?;
        Ok(File::from(fd))
    }

    fn make_dir(&self, name: &OsStr, mode: u32) -> io::Result<()> {
        Ok(rustix::fs::mkdirat(self, name, Mode::from_raw_mode(mode))?)
    }

    fn remove_file_at(&self, name: &OsStr) -> io::Result<()> {
        Ok(rustix::fs::unlinkat(self, name, AtFlags::empty())?)
    }

    fn remove_dir_at(&self, name: &OsStr) -> io::Result<()> {
        Ok(rustix::fs::unlinkat(self, name, AtFlags::REMOVEDIR)?)
    }

    fn rename_at(&self, name: &OsStr, to: &Dir, to_name: &OsStr) -> io::Result<()> {
        Ok(rustix::fs::renameat(self, name, to, to_name)?)
    }

    fn symlink_at(&self, target: &OsStr, name: &OsStr) -> io::Result<()> {
        Ok(rustix::fs::symlinkat(target, self, name)?)
    }

    fn read_link_at(&self, name: &OsStr) -> io::Result<OsString> {
        use std::os::unix::ffi::OsStringExt;
        Ok(OsString::from_vec(
            rustix::fs::readlinkat(self, name, Vec::new())?.into_bytes(),
        ))
    }

    fn hard_link_at(&self, name: &OsStr, to: &Dir, to_name: &OsStr) -> io::Result<()> {
        Ok(rustix::fs::linkat(
            self,
            name,
            to,
            to_name,
            AtFlags::empty(),
        )?)
    }

    fn make_node(&self, name: &OsStr, kind: FileType, mode: u32, dev: u64) -> io::Result<()> {
        Ok(rustix::fs::mknodat(
            self,
            name,
            kind,
            Mode::from_raw_mode(mode),
            dev,
        )?)
    }

    fn chmod_at(&self, name: &OsStr, mode: u32) -> io::Result<()> {
        Ok(rustix::fs::chmodat(
            self,
            name,
            Mode::from_raw_mode(mode),
            AtFlags::empty(),
        )?)
    }

    fn chown_at(&self, name: &OsStr, uid: u32, gid: u32) -> io::Result<()> {
        let (uid, gid) = (
            rustix::fs::Uid::from_raw(uid),
            rustix::fs::Gid::from_raw(gid),
        );
        Ok(rustix::fs::chownat(
            self,
            name,
            Some(uid),
            Some(gid),
            AtFlags::SYMLINK_NOFOLLOW,
        )?)
    }

    fn set_times_at(&self, name: &OsStr, times: &Timestamps) -> io::Result<()> {
        Ok(rustix::fs::utimensat(
            self,
            name,
            times,
            AtFlags::SYMLINK_NOFOLLOW,
        )?)
    }

    fn get_xattr(&self, key: &str) -> io::Result<Option<Vec<u8>>> {
        let mut buf = vec![0u8; 256];
        let got = match rustix::fs::fgetxattr(self, key, &mut buf) {
            // cap-std may hold a directory as an O_PATH fd, which has no xattrs.
            Err(rustix::io::Errno::BADF) => rustix::fs::fgetxattr(&readable(self)?, key, &mut buf),
            r => r,
        };
        match got {
            Ok(n) => {
                buf.truncate(n);
                Ok(Some(buf))
            }
            Err(rustix::io::Errno::NODATA) | Err(rustix::io::Errno::NOTSUP) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn set_xattr(&self, key: &str, value: &[u8]) -> io::Result<()> {
        match rustix::fs::fsetxattr(self, key, value, XattrFlags::empty()) {
            Err(rustix::io::Errno::BADF) => Ok(rustix::fs::fsetxattr(
                &readable(self)?,
                key,
                value,
                XattrFlags::empty(),
            )?),
            r => Ok(r?),
        }
    }

    fn try_clone_handle(&self) -> io::Result<Dir> {
        self.try_clone()
    }
}

/// The same directory opened for reading (for calls an O_PATH fd cannot serve).
fn readable(dir: &Dir) -> io::Result<rustix::fd::OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Whether `st` is an overlay whiteout (a 0:0 character device).
pub fn is_whiteout(st: &Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::CharacterDevice && st.st_rdev == 0
}

pub fn file_type(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}
