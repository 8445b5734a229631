//! The guest's filesystem, shared by preview 1 (`p1/`) and preview 2
//! (`p2/filesystem.rs`): its mounts over `runtime::fs`, its descriptors, and every operation
//! on them. The operations speak `wasi:filesystem@0.2.12`'s types (generated here,
//! [`bindings`]): preview 2 serves them as they are, preview 1 maps them to its errnos and
//! layouts.
//!
//! The guest sees one preopen per [`Mount`]: the container's root overlay at `/`, and each
//! bind mount at its guest path. A descriptor is a mount, a path inside that mount and, for
//! files, the open file; the path is resolved through the overlay on every call, with `..`
//! and symlinks handled by the overlay inside the mount (it clamps at the mount root), so
//! nothing is ever opened by a host path and no guest path can leave its mount.
//!
//! A path given relative to a directory descriptor is joined onto the descriptor's path. If
//! the joined path has no `..` and lands, by its names alone, inside a more deeply mounted
//! bind mount (`data/x` from `/` with `-v …:/data`), the call goes to that mount: this is
//! what the guest would see with a kernel bind mount. Symlinks are not looked at for this
//! (a link in the root that points into `/data` resolves inside the root overlay).
//!
//! Read-only mounts refuse every mutation with `error-code::read-only`.
//!
//! By concern: `guestfs/resolve.rs` (where a guest path lands), `guestfs/error.rs` (error
//! codes from errnos, and the error type that may be a trap), `guestfs/stat.rs` (stat and
//! times, converted).

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use cap_std::fs::Dir;
use rustix::fs::FileType;

use crate::fs::{file_type, Overlay, Stat};

mod error;
mod resolve;
mod stat;
#[cfg(test)]
pub(super) mod tests;

use error::is_enoent;
pub(super) use error::FsErrorKind;
pub use error::{error_code, error_code_from_errno, FsError};
use resolve::{guest_components, names_dir, Target};
use stat::timestamps;
pub(super) use stat::{descriptor_stat, descriptor_type, fstat, identity, metadata_hash_of};

/// The generated bindings for `wasi:filesystem/{types,preopens}`; `wasi:io` and `wasi:clocks`
/// are wasmtime-wasi's, so streams and datetimes are the same types as everywhere else.
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "wasi:filesystem/imports@0.2.12",
        imports: { default: trappable },
        trappable_error_type: {
            "wasi:filesystem/types.error-code" => crate::wasm::guestfs::FsError,
        },
        with: {
            "wasi:io": wasmtime_wasi_io::bindings::wasi::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
            "wasi:filesystem/types.descriptor": crate::wasm::guestfs::Descriptor,
            "wasi:filesystem/types.directory-entry-stream": crate::wasm::guestfs::DirectoryEntryStream,
        },
        require_store_data_send: true,
    });
}

use bindings::wasi::filesystem::types::{
    DescriptorFlags, DescriptorType, DirectoryEntry, ErrorCode, Filesize, NewTimestamp, OpenFlags,
    PathFlags,
};

/// Largest buffer one read allocates, and what an output stream accepts per write.
pub(super) const MAX_IO: usize = 1 << 20;

/// A directory tree the guest sees at `guest_path`.
#[derive(Clone)]
pub struct Mount {
    /// Absolute guest path (`/` for the container's root).
    pub guest_path: String,
    /// The root: the image layers under the container's upper directory. A bind mount: no
    /// lowers and the host directory as the upper, so writes go straight to it.
    pub overlay: Arc<Overlay<Dir>>,
    /// Refuse every mutation with `error-code::read-only`.
    pub read_only: bool,
}

pub(super) struct MountState {
    /// The guest path's components (`[]` for `/`).
    guest: Vec<String>,
    overlay: Arc<Overlay<Dir>>,
    read_only: bool,
}

impl MountState {
    fn name(&self) -> String {
        format!("/{}", self.guest.join("/"))
    }
}

/// The filesystem a guest sees: its mounts, each offered as a preopen.
pub struct GuestFs {
    mounts: Vec<MountState>,
}

impl GuestFs {
    /// Mounts with the same guest path: the later one wins (as a later bind mount hides an
    /// earlier one).
    pub fn new(mounts: Vec<Mount>) -> GuestFs {
        let mut out: Vec<MountState> = Vec::new();
        for m in mounts {
            let guest = guest_components(&m.guest_path);
            out.retain(|o| o.guest != guest);
            out.push(MountState {
                guest,
                overlay: m.overlay,
                read_only: m.read_only,
            });
        }
        GuestFs { mounts: out }
    }
}

/// The `wasi:filesystem/types.descriptor` resource.
pub struct Descriptor {
    pub(super) mount: usize,
    /// Inside the mount, components joined by `/`; `""` is the mount's root.
    path: String,
    /// A mount's preopen: paths from it are the container's own, `..` from its root goes
    /// to the directory it is mounted on. Paths from every other directory descriptor
    /// stay below it (`resolve.rs`).
    preopen: bool,
    pub(super) flags: DescriptorFlags,
    pub(super) kind: Kind,
}

pub(super) enum Kind {
    Dir,
    File(Arc<File>),
}

/// A directory entry and its inode number.
pub(super) struct Listed {
    pub entry: DirectoryEntry,
    pub ino: u64,
}

/// The `wasi:filesystem/types.directory-entry-stream` resource: a listing taken when
/// `read-directory` was called.
pub struct DirectoryEntryStream {
    pub(super) entries: std::vec::IntoIter<Result<DirectoryEntry, ErrorCode>>,
}

pub(super) type Res<T> = Result<T, ErrorCode>;

// ----- the operations, on descriptors (no resource table involved) -----

impl GuestFs {
    fn mount(&self, i: usize) -> Res<&MountState> {
        self.mounts.get(i).ok_or(ErrorCode::BadDescriptor)
    }

    pub(super) fn writable(&self, i: usize) -> Res<&MountState> {
        let m = self.mount(i)?;
        if m.read_only {
            return Err(ErrorCode::ReadOnly);
        }
        Ok(m)
    }

    /// The preopens: one directory descriptor per mount, with its guest path.
    pub(super) fn preopens(&self) -> Vec<(Descriptor, String)> {
        self.mounts
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let mut d = self.dir_descriptor(i, String::new());
                d.preopen = true;
                (d, m.name())
            })
            .collect()
    }

    fn dir_descriptor(&self, mount: usize, path: String) -> Descriptor {
        let mut flags = DescriptorFlags::READ;
        if !self.mounts[mount].read_only {
            flags |= DescriptorFlags::MUTATE_DIRECTORY;
        }
        Descriptor {
            mount,
            path,
            preopen: false,
            flags,
            kind: Kind::Dir,
        }
    }

    fn stat_target(&self, t: &Target, follow: bool) -> Res<Stat> {
        let st = self.mount(t.mount)?.overlay.stat(t.os(), follow)?;
        if t.must_be_dir && file_type(&st) != FileType::Directory {
            return Err(ErrorCode::NotDirectory);
        }
        Ok(st)
    }

    pub(super) fn stat_descriptor(&self, d: &Descriptor) -> Res<Stat> {
        match &d.kind {
            Kind::File(f) => fstat(f),
            Kind::Dir => Ok(self
                .mount(d.mount)?
                .overlay
                .stat(OsStr::new(&d.path), true)?),
        }
    }

    /// The directory a directory descriptor's `..` names (the root's is itself), across
    /// mounts as `..` goes.
    pub(super) fn parent_stat(&self, d: &Descriptor) -> Res<Stat> {
        let mut abs = self.mount(d.mount)?.guest.clone();
        abs.extend(guest_components(&d.path));
        abs.pop();
        let (mount, path) = self.locate(&abs)?;
        Ok(self.mounts[mount].overlay.stat(OsStr::new(&path), true)?)
    }

    pub(super) fn open_at(
        &self,
        base: &Descriptor,
        path_flags: PathFlags,
        path: &str,
        oflags: OpenFlags,
        flags: DescriptorFlags,
    ) -> Res<Descriptor> {
        let create = oflags.contains(OpenFlags::CREATE);
        let exclusive = create && oflags.contains(OpenFlags::EXCLUSIVE);
        // O_CREAT|O_EXCL never follows a symlink in the last component.
        let follow =
            (path_flags.contains(PathFlags::SYMLINK_FOLLOW) || names_dir(path)) && !exclusive;
        let t = self.target(base, path, follow)?;
        let m = self.mount(t.mount)?;
        let truncate = oflags.contains(OpenFlags::TRUNCATE);
        let directory = oflags.contains(OpenFlags::DIRECTORY);
        let write = flags.contains(DescriptorFlags::WRITE);
        if directory && (create || oflags.contains(OpenFlags::EXCLUSIVE) || truncate) {
            return Err(ErrorCode::Invalid);
        }
        if m.read_only && (write || create || truncate) {
            return Err(ErrorCode::ReadOnly);
        }
        match m.overlay.stat_resolved(t.os(), follow) {
            Ok((st, resolved)) => {
                let ft = file_type(&st);
                if ft == FileType::Directory {
                    if exclusive {
                        return Err(ErrorCode::Exist);
                    }
                    if write || create || truncate {
                        return Err(ErrorCode::IsDirectory);
                    }
                    // A directory descriptor holds its path with no `..` or symlink left:
                    // paths from it are resolved below it.
                    let path = resolved
                        .into_iter()
                        .map(|c| c.into_string())
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|_| ErrorCode::IllegalByteSequence)?
                        .join("/");
                    return Ok(self.dir_descriptor(t.mount, path));
                }
                if exclusive {
                    return Err(ErrorCode::Exist);
                }
                if directory || t.must_be_dir {
                    return Err(if ft == FileType::Symlink {
                        ErrorCode::Loop
                    } else {
                        ErrorCode::NotDirectory
                    });
                }
            }
            Err(e) if is_enoent(&e) => {
                if directory || !create {
                    return Err(ErrorCode::NoEntry);
                }
                if t.must_be_dir {
                    return Err(ErrorCode::IsDirectory);
                }
            }
            Err(e) => return Err(e.into()),
        }
        let opts = crate::fs::OpenOptions {
            read: flags.contains(DescriptorFlags::READ),
            write,
            append: false,
            truncate,
            create: create && !exclusive,
            create_new: exclusive,
            nofollow: !follow,
            mode: 0o666,
            sync: if flags.contains(DescriptorFlags::FILE_INTEGRITY_SYNC) {
                crate::fs::SyncMode::File
            } else if flags.contains(DescriptorFlags::DATA_INTEGRITY_SYNC) {
                crate::fs::SyncMode::Data
            } else {
                crate::fs::SyncMode::None
            },
        };
        let file = m.overlay.open(t.os(), &opts)?;
        let kept = DescriptorFlags::READ
            | DescriptorFlags::WRITE
            | DescriptorFlags::FILE_INTEGRITY_SYNC
            | DescriptorFlags::DATA_INTEGRITY_SYNC
            | DescriptorFlags::REQUESTED_WRITE_SYNC;
        Ok(Descriptor {
            mount: t.mount,
            path: t.path,
            preopen: false,
            flags: flags & kept,
            kind: Kind::File(Arc::new(file)),
        })
    }

    /// The directory's entries, each with its inode number (as `stat` would give it).
    pub(super) fn read_directory(&self, d: &Descriptor) -> Res<Vec<Res<Listed>>> {
        if !matches!(d.kind, Kind::Dir) {
            return Err(ErrorCode::NotDirectory);
        }
        let m = self.mount(d.mount)?;
        let mut out: Vec<Res<Listed>> = m
            .overlay
            .read_dir(OsStr::new(&d.path))?
            .into_iter()
            .map(|e| match e.name.into_string() {
                Ok(name) => Ok(Listed {
                    entry: DirectoryEntry {
                        type_: descriptor_type(e.kind),
                        name,
                    },
                    ino: e.ino,
                }),
                Err(_) => Err(ErrorCode::IllegalByteSequence),
            })
            .collect();
        // Bind mounts directly below this directory are listed (as what is mounted there)
        // even where the overlay has no directory for them.
        let mut abs = m.guest.clone();
        abs.extend(guest_components(&d.path));
        for other in &self.mounts {
            if other.guest.len() == abs.len() + 1 && other.guest.starts_with(&abs) {
                let name = &other.guest[abs.len()];
                out.retain(|e| !matches!(e, Ok(e) if &e.entry.name == name));
                let st = other.overlay.stat(OsStr::new(""), true)?;
                out.push(Ok(Listed {
                    entry: DirectoryEntry {
                        type_: DescriptorType::Directory,
                        name: name.clone(),
                    },
                    ino: identity(&st).1,
                }));
            }
        }
        Ok(out)
    }

    pub(super) fn create_directory_at(&self, d: &Descriptor, path: &str) -> Res<()> {
        let t = self.target(d, path, false)?;
        Ok(self.writable(t.mount)?.overlay.create_dir(t.os(), 0o777)?)
    }

    pub(super) fn remove_directory_at(&self, d: &Descriptor, path: &str) -> Res<()> {
        let t = self.target(d, path, false)?;
        Ok(self.writable(t.mount)?.overlay.remove_dir(t.os())?)
    }

    pub(super) fn unlink_file_at(&self, d: &Descriptor, path: &str) -> Res<()> {
        let t = self.target(d, path, false)?;
        let m = self.writable(t.mount)?;
        if t.must_be_dir {
            // `file/` is not-directory; `dir/` is-directory.
            let st = m.overlay.stat(t.os(), true)?;
            return Err(if file_type(&st) == FileType::Directory {
                ErrorCode::IsDirectory
            } else {
                ErrorCode::NotDirectory
            });
        }
        Ok(m.overlay.remove_file(t.os())?)
    }

    pub(super) fn rename_at(
        &self,
        from: &Descriptor,
        old: &str,
        to: &Descriptor,
        new: &str,
    ) -> Res<()> {
        let src = self.target(from, old, false)?;
        let dst = self.target(to, new, false)?;
        self.writable(src.mount)?;
        let m = self.writable(dst.mount)?;
        if src.mount != dst.mount {
            return Err(ErrorCode::CrossDevice);
        }
        if src.must_be_dir || dst.must_be_dir {
            let st = m.overlay.stat(src.os(), false)?;
            if file_type(&st) != FileType::Directory {
                return Err(ErrorCode::NotDirectory);
            }
        }
        Ok(m.overlay.rename(src.os(), dst.os())?)
    }

    pub(super) fn symlink_at(&self, d: &Descriptor, target: &str, path: &str) -> Res<()> {
        let t = self.target(d, path, false)?;
        let m = self.writable(t.mount)?;
        if target.is_empty() {
            return Err(ErrorCode::NoEntry);
        }
        // Only the container's own mounts may hold links to the container's root: from a
        // descriptor the guest opened, an absolute link could never be followed.
        if target.starts_with('/') && !d.preopen {
            return Err(ErrorCode::NotPermitted);
        }
        self.refuse_new_dir_name(&t)?;
        Ok(m.overlay.symlink(OsStr::new(target), t.os())?)
    }

    /// A name that only a directory may have (`x/`) cannot be given to a new symlink or
    /// hard link: `exist` if something has it, else `no-entry`, as Linux answers.
    fn refuse_new_dir_name(&self, t: &Target) -> Res<()> {
        if !t.must_be_dir {
            return Ok(());
        }
        match self.mount(t.mount)?.overlay.stat(t.os(), false) {
            Ok(_) => Err(ErrorCode::Exist),
            Err(e) if is_enoent(&e) => Err(ErrorCode::NoEntry),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) fn readlink_at(&self, d: &Descriptor, path: &str) -> Res<String> {
        let t = self.target(d, path, false)?;
        let link = self.mount(t.mount)?.overlay.read_link(t.os())?;
        link.into_string()
            .map_err(|_| ErrorCode::IllegalByteSequence)
    }

    pub(super) fn link_at(
        &self,
        from: &Descriptor,
        old_flags: PathFlags,
        old: &str,
        to: &Descriptor,
        new: &str,
    ) -> Res<()> {
        if old_flags.contains(PathFlags::SYMLINK_FOLLOW) {
            return Err(ErrorCode::Invalid);
        }
        let src = self.target(from, old, false)?;
        let dst = self.target(to, new, false)?;
        self.writable(src.mount)?;
        let m = self.writable(dst.mount)?;
        if src.mount != dst.mount {
            return Err(ErrorCode::CrossDevice);
        }
        if src.must_be_dir {
            // `file/`: not a directory; a directory cannot be linked at all.
            let st = m.overlay.stat(src.os(), true)?;
            return Err(if file_type(&st) == FileType::Directory {
                ErrorCode::NotPermitted
            } else {
                ErrorCode::NotDirectory
            });
        }
        self.refuse_new_dir_name(&dst)?;
        Ok(m.overlay.hard_link(src.os(), dst.os())?)
    }

    pub(super) fn set_times(
        &self,
        d: &Descriptor,
        atim: NewTimestamp,
        mtim: NewTimestamp,
    ) -> Res<()> {
        let m = self.writable(d.mount)?;
        let times = timestamps(atim, mtim)?;
        match &d.kind {
            // Opened for writing, the file is in the upper layer already.
            Kind::File(f) if d.flags.contains(DescriptorFlags::WRITE) => {
                Ok(rustix::fs::futimens(&**f, &times).map_err(io::Error::from)?)
            }
            // Otherwise it may be a lower layer's: go through the overlay, which copies up.
            _ => Ok(m.overlay.set_times(OsStr::new(&d.path), &times, true)?),
        }
    }

    pub(super) fn set_times_at(
        &self,
        d: &Descriptor,
        flags: PathFlags,
        path: &str,
        atim: NewTimestamp,
        mtim: NewTimestamp,
    ) -> Res<()> {
        let follow = flags.contains(PathFlags::SYMLINK_FOLLOW) || names_dir(path);
        let t = self.target(d, path, follow)?;
        let m = self.writable(t.mount)?;
        let times = timestamps(atim, mtim)?;
        Ok(m.overlay.set_times(t.os(), &times, follow)?)
    }

    pub(super) fn set_size(&self, d: &Descriptor, size: Filesize) -> Res<()> {
        self.writable(d.mount)?;
        Ok(file(d)?.set_len(size)?)
    }

    pub(super) fn read(
        &self,
        d: &Descriptor,
        len: Filesize,
        offset: Filesize,
    ) -> Res<(Vec<u8>, bool)> {
        let mut buf = vec![0; usize::try_from(len).unwrap_or(usize::MAX).min(MAX_IO)];
        if buf.is_empty() {
            return Ok((buf, false));
        }
        let n = self.read_into(d, &mut buf, offset)?;
        buf.truncate(n);
        Ok((buf, n == 0))
    }

    /// Read at `offset` into `buf` (a guest's own memory, for preview 1); bytes read.
    pub(super) fn read_into(&self, d: &Descriptor, buf: &mut [u8], offset: Filesize) -> Res<usize> {
        let f = file(d)?;
        loop {
            match f.read_at(buf, offset) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return Ok(r?),
            }
        }
    }

    pub(super) fn write(&self, d: &Descriptor, buf: &[u8], offset: Filesize) -> Res<Filesize> {
        self.writable(d.mount)?;
        let n = file(d)?.write_at(buf, offset)?;
        Ok(n as Filesize)
    }

    /// Write at the end of the file.
    pub(super) fn append(&self, d: &Descriptor, buf: &[u8]) -> Res<Filesize> {
        self.writable(d.mount)?;
        Ok(append(file(d)?, buf)? as Filesize)
    }

    pub(super) fn sync(&self, d: &Descriptor, data_only: bool) -> Res<()> {
        match &d.kind {
            Kind::File(f) if data_only => Ok(f.sync_data()?),
            Kind::File(f) => Ok(f.sync_all()?),
            // The overlay keeps no directory handles to sync.
            Kind::Dir => Ok(()),
        }
    }

    pub(super) fn stat_at(&self, d: &Descriptor, flags: PathFlags, path: &str) -> Res<Stat> {
        let follow = flags.contains(PathFlags::SYMLINK_FOLLOW) || names_dir(path);
        let t = self.target(d, path, follow)?;
        self.stat_target(&t, follow)
    }
}

pub(super) fn file(d: &Descriptor) -> Res<&Arc<File>> {
    match &d.kind {
        Kind::File(f) => Ok(f),
        Kind::Dir => Err(ErrorCode::BadDescriptor),
    }
}

/// Write at the end of the file, atomically where the kernel can (`pwritev2(RWF_APPEND)`).
pub(super) fn append(file: &File, buf: &[u8]) -> io::Result<usize> {
    match rustix::io::pwritev2(
        file,
        &[io::IoSlice::new(buf)],
        0,
        rustix::io::ReadWriteFlags::APPEND,
    ) {
        Err(rustix::io::Errno::NOSYS) | Err(rustix::io::Errno::NOTSUP) => {}
        r => return Ok(r?),
    }
    let end = file.metadata()?.len();
    file.write_at(buf, end)
}
