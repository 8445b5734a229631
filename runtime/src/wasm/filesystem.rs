//! `wasi:filesystem@0.2.12` (`types` and `preopens`) served from `runtime::fs`, synchronously.
//!
//! wasmtime-wasi's own filesystem can only expose real host directories, so we generate our
//! own bindings for the two interfaces (reusing wasmtime-wasi's `wasi:io` and `wasi:clocks`
//! types) and link them over the built-in ones (`add_to_linker`, after
//! `wasmtime_wasi::p2::add_to_linker_sync`).
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

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use cap_std::fs::Dir;
use rustix::fs::{FileType, Timespec, Timestamps};
use wasmtime::component::{HasData, Linker, Resource, ResourceTable, ResourceTableError};
use wasmtime_wasi_io::streams::{
    DynInputStream, DynOutputStream, InputStream, OutputStream, StreamError, StreamResult,
};

use crate::fs::{file_type, Overlay, Stat};

/// The generated bindings for `wasi:filesystem/{types,preopens}`; `wasi:io` and `wasi:clocks`
/// are wasmtime-wasi's, so streams and datetimes are the same types as everywhere else.
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "wasi:filesystem/imports@0.2.12",
        imports: { default: trappable },
        trappable_error_type: {
            "wasi:filesystem/types.error-code" => crate::wasm::filesystem::FsError,
        },
        with: {
            "wasi:io": wasmtime_wasi_io::bindings::wasi::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
            "wasi:filesystem/types.descriptor": crate::wasm::filesystem::Descriptor,
            "wasi:filesystem/types.directory-entry-stream": crate::wasm::filesystem::DirectoryEntryStream,
        },
        require_store_data_send: true,
    });
}

use bindings::wasi::clocks::wall_clock::Datetime;
use bindings::wasi::filesystem::{preopens, types};
use types::{
    Advice, DescriptorFlags, DescriptorStat, DescriptorType, DirectoryEntry, ErrorCode, Filesize,
    MetadataHashValue, NewTimestamp, OpenFlags, PathFlags,
};

/// Largest buffer one read allocates, and what an output stream accepts per write.
const MAX_IO: usize = 1 << 20;

// ----- public API -----

/// A directory tree the guest sees at `guest_path`.
pub struct Mount {
    /// Absolute guest path (`/` for the container's root).
    pub guest_path: String,
    /// The root: the image layers under the container's upper directory. A bind mount: no
    /// lowers and the host directory as the upper, so writes go straight to it.
    pub overlay: Arc<Overlay<Dir>>,
    /// Refuse every mutation with `error-code::read-only`.
    pub read_only: bool,
}

struct MountState {
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

/// Our `wasi:filesystem` bindings over the built-in ones. Call after
/// `wasmtime_wasi::p2::add_to_linker_sync` (or `_with_options_sync`); shadowing is allowed
/// only for the duration of this call (and left off afterwards).
pub fn add_to_linker(linker: &mut Linker<super::WasmState>) -> wasmtime::Result<()> {
    fn view(s: &mut super::WasmState) -> FsView<'_> {
        FsView {
            fs: &s.fs,
            table: &mut s.table,
        }
    }
    linker.allow_shadowing(true);
    let result = types::add_to_linker::<super::WasmState, StrataFs>(linker, view)
        .and_then(|()| preopens::add_to_linker::<super::WasmState, StrataFs>(linker, view));
    linker.allow_shadowing(false);
    result
}

/// The `wasi:filesystem/types.descriptor` resource.
pub struct Descriptor {
    mount: usize,
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
    entries: std::vec::IntoIter<Result<DirectoryEntry, ErrorCode>>,
}

/// The error of every fallible `wasi:filesystem` call: an error code for the guest, or a trap.
pub struct FsError(FsErrorKind);

enum FsErrorKind {
    Code(ErrorCode),
    Trap(wasmtime::Error),
}

impl FsError {
    pub fn trap(err: impl Into<wasmtime::Error>) -> FsError {
        FsError(FsErrorKind::Trap(err.into()))
    }

    /// The error code, if this is not a trap.
    pub fn code(&self) -> Option<ErrorCode> {
        match &self.0 {
            FsErrorKind::Code(c) => Some(*c),
            FsErrorKind::Trap(_) => None,
        }
    }
}

impl std::fmt::Debug for FsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            FsErrorKind::Code(c) => write!(f, "{c:?}"),
            FsErrorKind::Trap(e) => write!(f, "trap: {e:?}"),
        }
    }
}

impl From<ErrorCode> for FsError {
    fn from(c: ErrorCode) -> FsError {
        FsError(FsErrorKind::Code(c))
    }
}

impl From<io::Error> for FsError {
    fn from(e: io::Error) -> FsError {
        FsError(FsErrorKind::Code(error_code(&e)))
    }
}

impl From<ResourceTableError> for FsError {
    fn from(e: ResourceTableError) -> FsError {
        FsError::trap(e)
    }
}

impl From<io::Error> for ErrorCode {
    fn from(e: io::Error) -> ErrorCode {
        error_code(&e)
    }
}

type FsResult<T> = Result<T, FsError>;
type Res<T> = Result<T, ErrorCode>;

/// The `wasi:filesystem` error code for an errno.
pub fn error_code_from_errno(errno: i32) -> ErrorCode {
    use rustix::io::Errno as E;
    match E::from_raw_os_error(errno) {
        E::NOENT => ErrorCode::NoEntry,
        E::EXIST => ErrorCode::Exist,
        E::NOTDIR => ErrorCode::NotDirectory,
        E::ISDIR => ErrorCode::IsDirectory,
        E::NOTEMPTY => ErrorCode::NotEmpty,
        E::LOOP => ErrorCode::Loop,
        E::ACCESS => ErrorCode::Access,
        E::PERM => ErrorCode::NotPermitted,
        E::INVAL => ErrorCode::Invalid,
        E::XDEV => ErrorCode::CrossDevice,
        E::BADF => ErrorCode::BadDescriptor,
        E::NAMETOOLONG => ErrorCode::NameTooLong,
        E::NOSPC => ErrorCode::InsufficientSpace,
        E::ROFS => ErrorCode::ReadOnly,
        E::BUSY => ErrorCode::Busy,
        E::FBIG => ErrorCode::FileTooLarge,
        E::MLINK => ErrorCode::TooManyLinks,
        E::OVERFLOW => ErrorCode::Overflow,
        E::ILSEQ => ErrorCode::IllegalByteSequence,
        E::SPIPE => ErrorCode::InvalidSeek,
        E::NOMEM => ErrorCode::InsufficientMemory,
        E::PIPE => ErrorCode::Pipe,
        E::INTR => ErrorCode::Interrupted,
        E::AGAIN => ErrorCode::WouldBlock,
        E::ALREADY => ErrorCode::Already,
        E::INPROGRESS => ErrorCode::InProgress,
        E::NOTSUP => ErrorCode::Unsupported,
        E::TXTBSY => ErrorCode::TextFileBusy,
        E::DQUOT => ErrorCode::Quota,
        E::NODEV => ErrorCode::NoDevice,
        E::NXIO => ErrorCode::NoSuchDevice,
        E::NOTTY => ErrorCode::NoTty,
        E::DEADLK => ErrorCode::Deadlock,
        E::NOLCK => ErrorCode::NoLock,
        E::MSGSIZE => ErrorCode::MessageSize,
        E::NOTRECOVERABLE => ErrorCode::NotRecoverable,
        _ => ErrorCode::Io,
    }
}

/// The error code for an io error: by errno, else by kind.
pub fn error_code(e: &io::Error) -> ErrorCode {
    match e.raw_os_error() {
        Some(errno) => error_code_from_errno(errno),
        None => match e.kind() {
            io::ErrorKind::NotFound => ErrorCode::NoEntry,
            io::ErrorKind::PermissionDenied => ErrorCode::NotPermitted,
            io::ErrorKind::AlreadyExists => ErrorCode::Exist,
            io::ErrorKind::InvalidInput => ErrorCode::Invalid,
            _ => ErrorCode::Io,
        },
    }
}

// ----- paths -----

mod resolve;
use resolve::{guest_components, names_dir, Target};

fn is_enoent(e: &io::Error) -> bool {
    e.raw_os_error() == Some(rustix::io::Errno::NOENT.raw_os_error())
}

pub(super) fn descriptor_type(ft: FileType) -> DescriptorType {
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
pub(super) fn descriptor_stat(st: &Stat) -> DescriptorStat {
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
pub(super) fn identity(st: &Stat) -> (u64, u64) {
    (st.st_dev as u64, st.st_ino as u64)
}

/// As wasmtime-wasi: 64 bits of hash of (dev, ino), and the same xor a constant.
fn metadata_hash_of(st: &Stat) -> MetadataHashValue {
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

fn timestamps(atim: NewTimestamp, mtim: NewTimestamp) -> Res<Timestamps> {
    Ok(Timestamps {
        last_access: timespec(atim)?,
        last_modification: timespec(mtim)?,
    })
}

fn fstat(file: &File) -> Res<Stat> {
    Ok(rustix::fs::fstat(file).map_err(io::Error::from)?)
}

// ----- the operations, on descriptors (no resource table involved) -----

impl GuestFs {
    fn mount(&self, i: usize) -> Res<&MountState> {
        self.mounts.get(i).ok_or(ErrorCode::BadDescriptor)
    }

    fn writable(&self, i: usize) -> Res<&MountState> {
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

    fn read(&self, d: &Descriptor, len: Filesize, offset: Filesize) -> Res<(Vec<u8>, bool)> {
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

fn file(d: &Descriptor) -> Res<&Arc<File>> {
    match &d.kind {
        Kind::File(f) => Ok(f),
        Kind::Dir => Err(ErrorCode::BadDescriptor),
    }
}

// ----- streams -----

/// `read-via-stream`: positional reads on the open file; never waits.
struct FileReader {
    file: Arc<File>,
    pos: u64,
    closed: bool,
}

#[wasmtime_wasi_io::async_trait]
impl wasmtime_wasi_io::poll::Pollable for FileReader {
    async fn ready(&mut self) {}
}

impl InputStream for FileReader {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        if self.closed {
            return Err(StreamError::Closed);
        }
        if size == 0 {
            return Ok(Bytes::new());
        }
        let mut buf = BytesMut::zeroed(size.min(MAX_IO));
        loop {
            match self.file.read_at(&mut buf, self.pos) {
                Ok(0) => {
                    self.closed = true;
                    return Err(StreamError::Closed);
                }
                Ok(n) => {
                    buf.truncate(n);
                    self.pos += n as u64;
                    return Ok(buf.freeze());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.closed = true;
                    return Err(StreamError::LastOperationFailed(e.into()));
                }
            }
        }
    }
}

#[derive(Clone, Copy)]
enum WriteMode {
    At(u64),
    Append,
}

/// `write-via-stream` / `append-via-stream`: each write goes to the file before it returns.
struct FileWriter {
    file: Arc<File>,
    mode: WriteMode,
    closed: bool,
}

impl FileWriter {
    fn write_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let n = match self.mode {
                WriteMode::At(p) => self.file.write_at(buf, p),
                WriteMode::Append => append(&self.file, buf),
            };
            match n {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    if let WriteMode::At(p) = &mut self.mode {
                        *p += n as u64;
                    }
                    buf = &buf[n..];
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Write at the end of the file, atomically where the kernel can (`pwritev2(RWF_APPEND)`).
fn append(file: &File, buf: &[u8]) -> io::Result<usize> {
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

#[wasmtime_wasi_io::async_trait]
impl wasmtime_wasi_io::poll::Pollable for FileWriter {
    async fn ready(&mut self) {}
}

impl OutputStream for FileWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        if self.closed {
            return Err(StreamError::Closed);
        }
        self.write_all(&bytes).map_err(|e| {
            self.closed = true;
            StreamError::LastOperationFailed(e.into())
        })
    }

    fn flush(&mut self) -> StreamResult<()> {
        if self.closed {
            return Err(StreamError::Closed);
        }
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        if self.closed {
            return Err(StreamError::Closed);
        }
        Ok(MAX_IO)
    }
}

// ----- the bindings -----

/// What the generated host traits are implemented on.
struct FsView<'a> {
    fs: &'a GuestFs,
    table: &'a mut ResourceTable,
}

struct StrataFs;

impl HasData for StrataFs {
    type Data<'a> = FsView<'a>;
}

impl preopens::Host for FsView<'_> {
    fn get_directories(&mut self) -> wasmtime::Result<Vec<(Resource<Descriptor>, String)>> {
        let mut out = Vec::new();
        for (d, name) in self.fs.preopens() {
            out.push((self.table.push(d)?, name));
        }
        Ok(out)
    }
}

impl types::Host for FsView<'_> {
    fn convert_error_code(&mut self, err: FsError) -> wasmtime::Result<ErrorCode> {
        match err.0 {
            FsErrorKind::Code(c) => Ok(c),
            FsErrorKind::Trap(e) => Err(e),
        }
    }

    fn filesystem_error_code(
        &mut self,
        err: Resource<wasmtime::Error>,
    ) -> wasmtime::Result<Option<ErrorCode>> {
        let err = self.table.get(&err)?;
        if let Some(e) = err.downcast_ref::<io::Error>() {
            return Ok(Some(error_code(e)));
        }
        Ok(err.downcast_ref::<ErrorCode>().copied())
    }
}

impl FsView<'_> {
    fn get(&self, fd: &Resource<Descriptor>) -> FsResult<&Descriptor> {
        Ok(self.table.get(fd)?)
    }
}

impl types::HostDescriptor for FsView<'_> {
    fn read_via_stream(
        &mut self,
        fd: Resource<Descriptor>,
        offset: Filesize,
    ) -> FsResult<Resource<DynInputStream>> {
        let f = match &self.get(&fd)?.kind {
            Kind::File(f) => f.clone(),
            Kind::Dir => return Err(ErrorCode::IsDirectory.into()),
        };
        let stream: DynInputStream = Box::new(FileReader {
            file: f,
            pos: offset,
            closed: false,
        });
        Ok(self.table.push(stream)?)
    }

    fn write_via_stream(
        &mut self,
        fd: Resource<Descriptor>,
        offset: Filesize,
    ) -> FsResult<Resource<DynOutputStream>> {
        let d = self.get(&fd)?;
        let f = file(d)?.clone();
        self.fs.writable(d.mount)?;
        let stream: DynOutputStream = Box::new(FileWriter {
            file: f,
            mode: WriteMode::At(offset),
            closed: false,
        });
        Ok(self.table.push(stream)?)
    }

    fn append_via_stream(
        &mut self,
        fd: Resource<Descriptor>,
    ) -> FsResult<Resource<DynOutputStream>> {
        let d = self.get(&fd)?;
        let f = file(d)?.clone();
        self.fs.writable(d.mount)?;
        let stream: DynOutputStream = Box::new(FileWriter {
            file: f,
            mode: WriteMode::Append,
            closed: false,
        });
        Ok(self.table.push(stream)?)
    }

    fn advise(
        &mut self,
        fd: Resource<Descriptor>,
        _offset: Filesize,
        _len: Filesize,
        _advice: Advice,
    ) -> FsResult<()> {
        file(self.get(&fd)?)?;
        Ok(())
    }

    fn sync_data(&mut self, fd: Resource<Descriptor>) -> FsResult<()> {
        Ok(self.fs.sync(self.get(&fd)?, true)?)
    }

    fn get_flags(&mut self, fd: Resource<Descriptor>) -> FsResult<DescriptorFlags> {
        Ok(self.get(&fd)?.flags)
    }

    fn get_type(&mut self, fd: Resource<Descriptor>) -> FsResult<DescriptorType> {
        let d = self.get(&fd)?;
        Ok(match &d.kind {
            Kind::Dir => DescriptorType::Directory,
            Kind::File(f) => descriptor_type(file_type(&fstat(f)?)),
        })
    }

    fn set_size(&mut self, fd: Resource<Descriptor>, size: Filesize) -> FsResult<()> {
        Ok(self.fs.set_size(self.get(&fd)?, size)?)
    }

    fn set_times(
        &mut self,
        fd: Resource<Descriptor>,
        atim: NewTimestamp,
        mtim: NewTimestamp,
    ) -> FsResult<()> {
        Ok(self.fs.set_times(self.get(&fd)?, atim, mtim)?)
    }

    fn read(
        &mut self,
        fd: Resource<Descriptor>,
        len: Filesize,
        offset: Filesize,
    ) -> FsResult<(Vec<u8>, bool)> {
        Ok(self.fs.read(self.get(&fd)?, len, offset)?)
    }

    fn write(
        &mut self,
        fd: Resource<Descriptor>,
        buf: Vec<u8>,
        offset: Filesize,
    ) -> FsResult<Filesize> {
        Ok(self.fs.write(self.get(&fd)?, &buf, offset)?)
    }

    fn read_directory(
        &mut self,
        fd: Resource<Descriptor>,
    ) -> FsResult<Resource<DirectoryEntryStream>> {
        let entries = self.fs.read_directory(self.get(&fd)?)?;
        Ok(self.table.push(DirectoryEntryStream {
            entries: entries
                .into_iter()
                .map(|e| e.map(|l| l.entry))
                .collect::<Vec<_>>()
                .into_iter(),
        })?)
    }

    fn sync(&mut self, fd: Resource<Descriptor>) -> FsResult<()> {
        Ok(self.fs.sync(self.get(&fd)?, false)?)
    }

    fn create_directory_at(&mut self, fd: Resource<Descriptor>, path: String) -> FsResult<()> {
        Ok(self.fs.create_directory_at(self.get(&fd)?, &path)?)
    }

    fn stat(&mut self, fd: Resource<Descriptor>) -> FsResult<DescriptorStat> {
        Ok(descriptor_stat(&self.fs.stat_descriptor(self.get(&fd)?)?))
    }

    fn stat_at(
        &mut self,
        fd: Resource<Descriptor>,
        flags: PathFlags,
        path: String,
    ) -> FsResult<DescriptorStat> {
        Ok(descriptor_stat(&self.fs.stat_at(
            self.get(&fd)?,
            flags,
            &path,
        )?))
    }

    fn set_times_at(
        &mut self,
        fd: Resource<Descriptor>,
        flags: PathFlags,
        path: String,
        atim: NewTimestamp,
        mtim: NewTimestamp,
    ) -> FsResult<()> {
        Ok(self
            .fs
            .set_times_at(self.get(&fd)?, flags, &path, atim, mtim)?)
    }

    fn link_at(
        &mut self,
        fd: Resource<Descriptor>,
        old_flags: PathFlags,
        old: String,
        new_fd: Resource<Descriptor>,
        new: String,
    ) -> FsResult<()> {
        Ok(self
            .fs
            .link_at(self.get(&fd)?, old_flags, &old, self.get(&new_fd)?, &new)?)
    }

    fn open_at(
        &mut self,
        fd: Resource<Descriptor>,
        path_flags: PathFlags,
        path: String,
        oflags: OpenFlags,
        flags: DescriptorFlags,
    ) -> FsResult<Resource<Descriptor>> {
        let d = self
            .fs
            .open_at(self.get(&fd)?, path_flags, &path, oflags, flags)?;
        Ok(self.table.push(d)?)
    }

    fn readlink_at(&mut self, fd: Resource<Descriptor>, path: String) -> FsResult<String> {
        Ok(self.fs.readlink_at(self.get(&fd)?, &path)?)
    }

    fn remove_directory_at(&mut self, fd: Resource<Descriptor>, path: String) -> FsResult<()> {
        Ok(self.fs.remove_directory_at(self.get(&fd)?, &path)?)
    }

    fn rename_at(
        &mut self,
        fd: Resource<Descriptor>,
        old: String,
        new_fd: Resource<Descriptor>,
        new: String,
    ) -> FsResult<()> {
        Ok(self
            .fs
            .rename_at(self.get(&fd)?, &old, self.get(&new_fd)?, &new)?)
    }

    fn symlink_at(
        &mut self,
        fd: Resource<Descriptor>,
        target: String,
        path: String,
    ) -> FsResult<()> {
        Ok(self.fs.symlink_at(self.get(&fd)?, &target, &path)?)
    }

    fn unlink_file_at(&mut self, fd: Resource<Descriptor>, path: String) -> FsResult<()> {
        Ok(self.fs.unlink_file_at(self.get(&fd)?, &path)?)
    }

    fn is_same_object(
        &mut self,
        a: Resource<Descriptor>,
        b: Resource<Descriptor>,
    ) -> wasmtime::Result<bool> {
        let (a, b) = (self.table.get(&a)?, self.table.get(&b)?);
        Ok(
            match (self.fs.stat_descriptor(a), self.fs.stat_descriptor(b)) {
                (Ok(a), Ok(b)) => identity(&a) == identity(&b),
                _ => false,
            },
        )
    }

    fn metadata_hash(&mut self, fd: Resource<Descriptor>) -> FsResult<MetadataHashValue> {
        Ok(metadata_hash_of(&self.fs.stat_descriptor(self.get(&fd)?)?))
    }

    fn metadata_hash_at(
        &mut self,
        fd: Resource<Descriptor>,
        flags: PathFlags,
        path: String,
    ) -> FsResult<MetadataHashValue> {
        Ok(metadata_hash_of(&self.fs.stat_at(
            self.get(&fd)?,
            flags,
            &path,
        )?))
    }

    fn drop(&mut self, fd: Resource<Descriptor>) -> wasmtime::Result<()> {
        self.table.delete(fd)?;
        Ok(())
    }
}

impl types::HostDirectoryEntryStream for FsView<'_> {
    fn read_directory_entry(
        &mut self,
        stream: Resource<DirectoryEntryStream>,
    ) -> FsResult<Option<DirectoryEntry>> {
        Ok(self.table.get_mut(&stream)?.entries.next().transpose()?)
    }

    fn drop(&mut self, stream: Resource<DirectoryEntryStream>) -> wasmtime::Result<()> {
        self.table.delete(stream)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn dir(p: &Path) -> Dir {
        Dir::open_ambient_dir(p, cap_std::ambient_authority()).unwrap()
    }

    /// `/` over one lower layer, `/data` a read-write bind, `/ro` a read-only one; a file
    /// `secret` sits next to (outside) the bind directories.
    struct Fixture {
        tmp: tempfile::TempDir,
        fs: GuestFs,
    }

    impl Fixture {
        fn new() -> Fixture {
            let tmp = tempfile::tempdir().unwrap();
            let p = |s: &str| tmp.path().join(s);
            for d in ["lower/etc", "upper", "bind", "robind"] {
                std::fs::create_dir_all(p(d)).unwrap();
            }
            std::fs::write(p("lower/etc/hosts"), "lower hosts\n").unwrap();
            std::fs::write(p("bind/b.txt"), "bound").unwrap();
            std::fs::write(p("robind/r.txt"), "read only").unwrap();
            std::fs::write(p("secret"), "host secret").unwrap();
            let root = Overlay::new(vec![dir(&p("lower"))], dir(&p("upper")));
            let bind = Overlay::new(vec![], dir(&p("bind")));
            let robind = Overlay::new(vec![], dir(&p("robind")));
            let fs = GuestFs::new(vec![
                Mount {
                    guest_path: "/".into(),
                    overlay: Arc::new(root),
                    read_only: false,
                },
                Mount {
                    guest_path: "/data/".into(),
                    overlay: Arc::new(bind),
                    read_only: false,
                },
                Mount {
                    guest_path: "/ro".into(),
                    overlay: Arc::new(robind),
                    read_only: true,
                },
            ]);
            Fixture { tmp, fs }
        }

        fn host(&self, rel: &str) -> std::path::PathBuf {
            self.tmp.path().join(rel)
        }

        fn pre(&self, name: &str) -> Descriptor {
            self.fs
                .preopens()
                .into_iter()
                .find(|(_, n)| n == name)
                .unwrap()
                .0
        }

        fn open(
            &self,
            base: &Descriptor,
            path: &str,
            oflags: OpenFlags,
            flags: DescriptorFlags,
        ) -> Res<Descriptor> {
            self.fs
                .open_at(base, PathFlags::SYMLINK_FOLLOW, path, oflags, flags)
        }

        fn read_all(&self, base: &Descriptor, path: &str) -> Res<String> {
            let d = self.open(base, path, OpenFlags::empty(), DescriptorFlags::READ)?;
            let (data, _) = self.fs.read(&d, 1 << 16, 0)?;
            Ok(String::from_utf8(data).unwrap())
        }

        fn names(&self, d: &Descriptor) -> Vec<String> {
            let mut v: Vec<String> = self
                .fs
                .read_directory(d)
                .unwrap()
                .into_iter()
                .map(|e| e.unwrap().entry.name)
                .collect();
            v.sort();
            v
        }
    }

    fn rw() -> DescriptorFlags {
        DescriptorFlags::READ | DescriptorFlags::WRITE
    }

    #[test]
    fn errnos_map_to_error_codes() {
        use rustix::io::Errno as E;
        let cases = [
            (E::NOENT, ErrorCode::NoEntry),
            (E::EXIST, ErrorCode::Exist),
            (E::NOTDIR, ErrorCode::NotDirectory),
            (E::ISDIR, ErrorCode::IsDirectory),
            (E::NOTEMPTY, ErrorCode::NotEmpty),
            (E::LOOP, ErrorCode::Loop),
            (E::ACCESS, ErrorCode::Access),
            (E::PERM, ErrorCode::NotPermitted),
            (E::INVAL, ErrorCode::Invalid),
            (E::XDEV, ErrorCode::CrossDevice),
            (E::BADF, ErrorCode::BadDescriptor),
            (E::NAMETOOLONG, ErrorCode::NameTooLong),
            (E::NOSPC, ErrorCode::InsufficientSpace),
            (E::ROFS, ErrorCode::ReadOnly),
            (E::BUSY, ErrorCode::Busy),
            (E::CHILD, ErrorCode::Io),
            (E::IO, ErrorCode::Io),
        ];
        for (errno, code) in cases {
            assert_eq!(
                error_code_from_errno(errno.raw_os_error()),
                code,
                "{errno:?}"
            );
            assert_eq!(error_code(&io::Error::from(errno)), code, "{errno:?}");
        }
        assert_eq!(
            error_code(&io::Error::from(io::ErrorKind::NotFound)),
            ErrorCode::NoEntry
        );
        assert_eq!(error_code(&io::Error::other("x")), ErrorCode::Io);
        assert_eq!(
            FsError::from(io::Error::from(E::EXIST)).code(),
            Some(ErrorCode::Exist)
        );
        assert_eq!(FsError::trap(io::Error::other("x")).code(), None);
    }

    #[test]
    fn guest_paths_are_relative_and_clean() {
        let f = Fixture::new();
        let root = f.pre("/");
        assert_eq!(
            f.fs.stat_at(&root, PathFlags::empty(), "/etc").err(),
            Some(ErrorCode::NotPermitted)
        );
        assert_eq!(
            f.fs.stat_at(&root, PathFlags::empty(), "").err(),
            Some(ErrorCode::NoEntry)
        );
        assert_eq!(
            f.fs.stat_at(&root, PathFlags::empty(), "e\0c").err(),
            Some(ErrorCode::Invalid)
        );
        for (path, dir) in [
            ("a/b", false),
            ("a/", true),
            ("a/.", true),
            ("a/..", true),
            (".", true),
        ] {
            assert_eq!(names_dir(path), dir, "{path}");
        }
        assert_eq!(guest_components("/data//x/"), vec!["data", "x"]);
        assert!(guest_components("/").is_empty());
    }

    /// (mount, path inside it) that `path` from `base` resolves to.
    fn target(f: &Fixture, base: &Descriptor, path: &str) -> Res<(usize, String)> {
        f.fs.target(base, path, true).map(|t| (t.mount, t.path))
    }

    #[test]
    fn paths_cross_mount_points_both_ways() {
        let f = Fixture::new();
        let root = f.pre("/");
        let t = |p: &str| target(&f, &root, p).unwrap();
        assert_eq!(t("data/b.txt"), (1, "b.txt".into()));
        assert_eq!(t("data/new"), (1, "new".into()));
        assert_eq!(t("data"), (1, String::new()));
        // Only the last name may be missing.
        assert_eq!(target(&f, &root, "data/x/y"), Err(ErrorCode::NoEntry));
        assert_eq!(t("database"), (0, "database".into()));
        assert_eq!(t("data/../etc"), (0, "etc".into()));
        // `..` from the bind's root goes back to `/`, and `data` enters the bind again: the
        // file is the bind's, not the root layer's under the mount point.
        assert_eq!(t("data/../data/f2"), (1, "f2".into()));
        // From the container's root, `..` stays at `/` (Linux's rule for `/..`).
        assert_eq!(t("../../data/b.txt"), (1, "b.txt".into()));
        assert_eq!(f.read_all(&root, "data/b.txt").unwrap(), "bound");
        assert_eq!(f.read_all(&root, "ro/r.txt").unwrap(), "read only");
        // A symlink in the root into a bind mount lands in the bind, absolute or relative.
        std::os::unix::fs::symlink("/data/b.txt", f.host("upper/abs")).unwrap();
        std::os::unix::fs::symlink("data/b.txt", f.host("upper/rel")).unwrap();
        assert_eq!(f.read_all(&root, "abs").unwrap(), "bound");
        assert_eq!(f.read_all(&root, "rel").unwrap(), "bound");
        // And one in a bind mount that leaves it, through `..` or `/`, leaves it.
        std::os::unix::fs::symlink("../etc/hosts", f.host("bind/up")).unwrap();
        std::os::unix::fs::symlink("/etc/hosts", f.host("bind/root")).unwrap();
        assert_eq!(f.read_all(&root, "data/up").unwrap(), "lower hosts\n");
        assert_eq!(f.read_all(&root, "data/root").unwrap(), "lower hosts\n");
        // Created through `..`, a file is where the path names it.
        let w = f
            .open(&root, "data/../data/f2", OpenFlags::CREATE, rw())
            .unwrap();
        f.fs.write(&w, b"two", 0).unwrap();
        assert_eq!(std::fs::read(f.host("bind/f2")).unwrap(), b"two");
        assert!(
            !f.host("upper/data").exists(),
            "nothing under the mount point"
        );
        // The root lists the mount points.
        assert_eq!(f.names(&root), vec!["abs", "data", "etc", "rel", "ro"]);
    }

    #[test]
    fn a_directory_descriptor_is_a_capability() {
        let f = Fixture::new();
        let root = f.pre("/");
        std::fs::create_dir_all(f.host("lower/etc/sub")).unwrap();
        std::os::unix::fs::symlink("../hosts", f.host("lower/etc/sub/up")).unwrap();
        std::os::unix::fs::symlink("/etc/hosts", f.host("lower/etc/sub/abs")).unwrap();
        std::os::unix::fs::symlink("../../etc/hosts", f.host("lower/etc/sub/out")).unwrap();
        std::fs::create_dir_all(f.host("lower/etc/sub/d0")).unwrap();
        let flags = DescriptorFlags::READ | DescriptorFlags::MUTATE_DIRECTORY;
        let sub =
            f.fs.open_at(
                &root,
                PathFlags::SYMLINK_FOLLOW,
                "etc/sub",
                OpenFlags::DIRECTORY,
                flags,
            )
            .unwrap();
        let denied = Some(ErrorCode::NotPermitted);
        let follow = PathFlags::SYMLINK_FOLLOW;
        for path in [
            "..",
            "../hosts",
            "d0/../../hosts",
            "up",
            "abs",
            "out",
            "up/",
        ] {
            assert_eq!(f.fs.stat_at(&sub, follow, path).err(), denied, "{path}");
        }
        assert_eq!(f.fs.create_directory_at(&sub, "../y").err(), denied);
        assert_eq!(
            f.open(&sub, "../new", OpenFlags::CREATE, rw()).err(),
            denied
        );
        assert!(!f.host("upper/etc/new").exists() && !f.host("upper/etc/y").exists());
        // Not following the link in the last name is fine: the link itself is below.
        assert!(f.fs.stat_at(&sub, PathFlags::empty(), "up").is_ok());
        // Inside the descriptor, `..` works as usual.
        f.fs.create_directory_at(&sub, "d").unwrap();
        assert!(f.fs.stat_at(&sub, follow, "d/../d/.").is_ok());
        // The same links from the root resolve as Linux resolves them.
        assert_eq!(f.read_all(&root, "etc/sub/up").unwrap(), "lower hosts\n");
        assert_eq!(f.read_all(&root, "etc/sub/abs").unwrap(), "lower hosts\n");
        assert_eq!(f.read_all(&root, "etc/sub/out").unwrap(), "lower hosts\n");
        // A preopen is a mount of the container: `..` from the bind's root is `/`, as libc
        // (which resolves every absolute path through the preopens) needs. A descriptor
        // the guest opens on it is a boundary.
        let data = f.pre("/data");
        assert_eq!(f.read_all(&data, "../etc/hosts").unwrap(), "lower hosts\n");
        let opened =
            f.fs.open_at(&data, follow, ".", OpenFlags::DIRECTORY, flags)
                .unwrap();
        assert_eq!(f.fs.stat_at(&opened, follow, "../etc").err(), denied);
        // A descriptor opened through `..` and links holds the resolved path.
        let etc =
            f.fs.open_at(
                &root,
                follow,
                "data/../etc/sub/..",
                OpenFlags::DIRECTORY,
                flags,
            )
            .unwrap();
        assert_eq!((etc.mount, etc.path.as_str()), (0, "etc"));
    }

    #[test]
    fn preopens_are_the_mounts() {
        let f = Fixture::new();
        let pre = f.fs.preopens();
        let names: Vec<&str> = pre.iter().map(|(_, n)| n.as_str()).collect();
        assert_eq!(names, vec!["/", "/data", "/ro"]);
        assert!(pre[0].0.flags.contains(DescriptorFlags::MUTATE_DIRECTORY));
        assert!(!pre[2].0.flags.contains(DescriptorFlags::MUTATE_DIRECTORY));
        // A later mount at the same path replaces the earlier one.
        let again = GuestFs::new(vec![
            Mount {
                guest_path: "/x".into(),
                overlay: f.fs.mounts[1].overlay.clone(),
                read_only: false,
            },
            Mount {
                guest_path: "/x/".into(),
                overlay: f.fs.mounts[2].overlay.clone(),
                read_only: true,
            },
        ]);
        assert_eq!(again.mounts.len(), 1);
        assert!(again.mounts[0].read_only);
    }

    #[test]
    fn create_write_read_stat() {
        let f = Fixture::new();
        let root = f.pre("/");
        let d = f
            .open(
                &root,
                "etc/new",
                OpenFlags::CREATE | OpenFlags::EXCLUSIVE,
                rw(),
            )
            .unwrap();
        assert_eq!(f.fs.write(&d, b"hello", 0).unwrap(), 5);
        assert_eq!(f.fs.write(&d, b"!", 5).unwrap(), 1);
        assert_eq!(f.fs.read(&d, 100, 0).unwrap(), (b"hello!".to_vec(), false));
        assert_eq!(f.fs.read(&d, 100, 6).unwrap(), (Vec::new(), true));
        let st = descriptor_stat(&f.fs.stat_descriptor(&d).unwrap());
        assert_eq!((st.type_, st.size), (DescriptorType::RegularFile, 6));
        let st = descriptor_stat(&f.fs.stat_at(&root, PathFlags::empty(), "etc/new").unwrap());
        assert_eq!(
            (st.type_, st.size, st.link_count),
            (DescriptorType::RegularFile, 6, 1)
        );
        assert!(st.data_modification_timestamp.is_some());
        assert_eq!(
            std::fs::read_to_string(f.host("upper/etc/new")).unwrap(),
            "hello!"
        );
        assert!(!f.host("lower/etc/new").exists());
        assert_eq!(d.flags, rw());
        // Exclusive create of an existing name; plain create opens it.
        assert_eq!(
            f.open(
                &root,
                "etc/new",
                OpenFlags::CREATE | OpenFlags::EXCLUSIVE,
                rw()
            )
            .err(),
            Some(ErrorCode::Exist)
        );
        f.open(&root, "etc/new", OpenFlags::CREATE, rw()).unwrap();
        let t = f
            .open(
                &root,
                "etc/new",
                OpenFlags::TRUNCATE,
                DescriptorFlags::WRITE,
            )
            .unwrap();
        assert_eq!(descriptor_stat(&f.fs.stat_descriptor(&t).unwrap()).size, 0);
        // Descriptor-relative paths.
        let etc = f
            .open(&root, "etc", OpenFlags::DIRECTORY, DescriptorFlags::READ)
            .unwrap();
        assert!(matches!(etc.kind, Kind::Dir));
        assert_eq!(f.read_all(&etc, "hosts").unwrap(), "lower hosts\n");
        assert_eq!(
            f.read_all(&etc, "../etc/./hosts").err(),
            Some(ErrorCode::NotPermitted),
            "not above the descriptor"
        );
        assert_eq!(f.fs.read_directory(&t).err(), Some(ErrorCode::NotDirectory));
        assert_eq!(
            f.fs.stat_at(&t, PathFlags::empty(), "x").err(),
            Some(ErrorCode::NotDirectory)
        );
    }

    #[test]
    fn writing_a_lower_file_copies_it_up() {
        let f = Fixture::new();
        let root = f.pre("/");
        let d = f
            .open(&root, "etc/hosts", OpenFlags::empty(), rw())
            .unwrap();
        f.fs.write(&d, b"UPPER", 0).unwrap();
        assert_eq!(
            std::fs::read_to_string(f.host("lower/etc/hosts")).unwrap(),
            "lower hosts\n"
        );
        assert_eq!(
            std::fs::read_to_string(f.host("upper/etc/hosts")).unwrap(),
            "UPPER hosts\n"
        );
        assert_eq!(f.read_all(&root, "etc/hosts").unwrap(), "UPPER hosts\n");
        // A read-only descriptor cannot write.
        let r = f
            .open(
                &root,
                "etc/hosts",
                OpenFlags::empty(),
                DescriptorFlags::READ,
            )
            .unwrap();
        assert_eq!(
            f.fs.write(&r, b"x", 0).err(),
            Some(ErrorCode::BadDescriptor)
        );
    }

    #[test]
    fn open_flags_and_directories() {
        let f = Fixture::new();
        let root = f.pre("/");
        let open = |p: &str, o: OpenFlags, d: DescriptorFlags| f.open(&root, p, o, d).err();
        assert_eq!(
            open("etc", OpenFlags::empty(), rw()),
            Some(ErrorCode::IsDirectory)
        );
        assert_eq!(
            open("etc", OpenFlags::CREATE, DescriptorFlags::READ),
            Some(ErrorCode::IsDirectory)
        );
        assert_eq!(
            open("etc", OpenFlags::CREATE | OpenFlags::EXCLUSIVE, rw()),
            Some(ErrorCode::Exist)
        );
        assert_eq!(
            open("etc/hosts", OpenFlags::DIRECTORY, DescriptorFlags::READ),
            Some(ErrorCode::NotDirectory)
        );
        assert_eq!(
            open("etc/hosts/", OpenFlags::empty(), DescriptorFlags::READ),
            Some(ErrorCode::NotDirectory)
        );
        assert_eq!(
            open("nope", OpenFlags::empty(), DescriptorFlags::READ),
            Some(ErrorCode::NoEntry)
        );
        assert_eq!(
            open("nope", OpenFlags::DIRECTORY, DescriptorFlags::READ),
            Some(ErrorCode::NoEntry)
        );
        assert_eq!(
            open("nope/", OpenFlags::CREATE, rw()),
            Some(ErrorCode::IsDirectory)
        );
        assert_eq!(
            open("nope/x", OpenFlags::CREATE, rw()),
            Some(ErrorCode::NoEntry)
        );
        assert_eq!(
            open("x", OpenFlags::DIRECTORY | OpenFlags::CREATE, rw()),
            Some(ErrorCode::Invalid)
        );
        assert_eq!(
            open("/etc/hosts", OpenFlags::empty(), DescriptorFlags::READ),
            Some(ErrorCode::NotPermitted)
        );
        let d = f
            .open(&root, "etc/", OpenFlags::empty(), DescriptorFlags::READ)
            .unwrap();
        assert!(d.flags.contains(DescriptorFlags::MUTATE_DIRECTORY));
        assert_eq!(f.names(&d), vec!["hosts"]);
        // Root itself, by `.`.
        let top = f
            .open(&root, ".", OpenFlags::DIRECTORY, DescriptorFlags::READ)
            .unwrap();
        assert_eq!(top.path, "");
        assert_eq!(f.fs.read(&top, 1, 0).err(), Some(ErrorCode::BadDescriptor));
    }

    #[test]
    fn directories_links_and_renames() {
        let f = Fixture::new();
        let root = f.pre("/");
        f.fs.create_directory_at(&root, "srv").unwrap();
        assert_eq!(
            f.fs.create_directory_at(&root, "srv").err(),
            Some(ErrorCode::Exist)
        );
        assert_eq!(
            f.fs.create_directory_at(&root, ".").err(),
            Some(ErrorCode::Exist)
        );
        f.open(&root, "srv/a", OpenFlags::CREATE, rw()).unwrap();
        assert_eq!(
            f.fs.remove_directory_at(&root, "srv").err(),
            Some(ErrorCode::NotEmpty)
        );
        assert_eq!(
            f.fs.unlink_file_at(&root, "srv").err(),
            Some(ErrorCode::IsDirectory)
        );
        assert_eq!(
            f.fs.unlink_file_at(&root, "srv/").err(),
            Some(ErrorCode::IsDirectory)
        );
        assert_eq!(
            f.fs.unlink_file_at(&root, "srv/a/").err(),
            Some(ErrorCode::NotDirectory)
        );
        f.fs.rename_at(&root, "srv/a", &root, "srv/b").unwrap();
        f.fs.link_at(&root, PathFlags::empty(), "srv/b", &root, "srv/c")
            .unwrap();
        let b = f.fs.stat_at(&root, PathFlags::empty(), "srv/b").unwrap();
        let c = f.fs.stat_at(&root, PathFlags::empty(), "srv/c").unwrap();
        assert_eq!(identity(&b), identity(&c));
        let (hb, hc) = (metadata_hash_of(&b), metadata_hash_of(&c));
        assert_eq!((hb.lower, hb.upper), (hc.lower, hc.upper));
        assert_eq!(descriptor_stat(&b).link_count, 2);
        f.fs.symlink_at(&root, "b", "srv/l").unwrap();
        f.fs.symlink_at(&root, "/etc/hosts", "abs").unwrap();
        assert_eq!(f.fs.readlink_at(&root, "srv/l").unwrap(), "b");
        assert_eq!(f.read_all(&root, "abs").unwrap(), "lower hosts\n");
        let l = f.fs.stat_at(&root, PathFlags::empty(), "srv/l").unwrap();
        assert_eq!(descriptor_stat(&l).type_, DescriptorType::SymbolicLink);
        assert_eq!(
            f.fs.open_at(
                &root,
                PathFlags::empty(),
                "srv/l",
                OpenFlags::empty(),
                DescriptorFlags::READ
            )
            .err(),
            Some(ErrorCode::Loop)
        );
        assert_eq!(
            f.fs.readlink_at(&root, "srv/b").err(),
            Some(ErrorCode::Invalid)
        );
        assert_eq!(
            f.names(
                &f.open(&root, "srv", OpenFlags::DIRECTORY, DescriptorFlags::READ)
                    .unwrap()
            ),
            vec!["b", "c", "l"]
        );
        for n in ["b", "c", "l"] {
            f.fs.unlink_file_at(&root, &format!("srv/{n}")).unwrap();
        }
        f.fs.remove_directory_at(&root, "srv").unwrap();
        assert_eq!(
            f.fs.stat_at(&root, PathFlags::empty(), "srv").err(),
            Some(ErrorCode::NoEntry)
        );
        // Across mounts.
        let data = f.pre("/data");
        assert_eq!(
            f.fs.rename_at(&root, "abs", &data, "abs").err(),
            Some(ErrorCode::CrossDevice)
        );
        assert_eq!(
            f.fs.rename_at(&root, "abs", &root, "data/abs").err(),
            Some(ErrorCode::CrossDevice)
        );
        assert_eq!(
            f.fs.link_at(&data, PathFlags::empty(), "b.txt", &root, "b")
                .err(),
            Some(ErrorCode::CrossDevice)
        );
        // An absolute symlink in a bind mount means the container's root, as in the kernel.
        f.fs.symlink_at(&data, "/etc", "l").unwrap();
        assert_eq!(f.read_all(&data, "l/hosts").unwrap(), "lower hosts\n");
    }

    #[test]
    fn read_only_mounts_refuse_every_mutation() {
        let f = Fixture::new();
        let ro = f.pre("/ro");
        let root = f.pre("/");
        let ro_err = Some(ErrorCode::ReadOnly);
        assert_eq!(f.read_all(&ro, "r.txt").unwrap(), "read only");
        assert_eq!(f.open(&ro, "r.txt", OpenFlags::empty(), rw()).err(), ro_err);
        assert_eq!(
            f.open(&ro, "n", OpenFlags::CREATE, DescriptorFlags::READ)
                .err(),
            ro_err
        );
        assert_eq!(
            f.open(&ro, "r.txt", OpenFlags::TRUNCATE, DescriptorFlags::READ)
                .err(),
            ro_err
        );
        assert_eq!(f.fs.create_directory_at(&ro, "d").err(), ro_err);
        assert_eq!(f.fs.unlink_file_at(&ro, "r.txt").err(), ro_err);
        assert_eq!(f.fs.remove_directory_at(&ro, "x").err(), ro_err);
        assert_eq!(f.fs.rename_at(&ro, "r.txt", &ro, "s").err(), ro_err);
        assert_eq!(f.fs.symlink_at(&ro, "r.txt", "s").err(), ro_err);
        assert_eq!(
            f.fs.link_at(&ro, PathFlags::empty(), "r.txt", &ro, "s")
                .err(),
            ro_err
        );
        assert_eq!(
            f.fs.set_times_at(
                &ro,
                PathFlags::empty(),
                "r.txt",
                NewTimestamp::Now,
                NewTimestamp::Now
            )
            .err(),
            ro_err
        );
        let r = f
            .open(&ro, "r.txt", OpenFlags::empty(), DescriptorFlags::READ)
            .unwrap();
        assert_eq!(f.fs.write(&r, b"x", 0).err(), ro_err);
        assert_eq!(f.fs.set_size(&r, 0).err(), ro_err);
        assert_eq!(
            f.fs.set_times(&r, NewTimestamp::Now, NewTimestamp::NoChange)
                .err(),
            ro_err
        );
        // Reached through the root, it is the same mount.
        assert_eq!(f.fs.unlink_file_at(&root, "ro/r.txt").err(), ro_err);
        assert_eq!(
            std::fs::read_to_string(f.host("robind/r.txt")).unwrap(),
            "read only"
        );
    }

    #[test]
    fn bind_mounts_write_to_the_host_and_do_not_escape() {
        let f = Fixture::new();
        let data = f.pre("/data");
        let d = f.open(&data, "new.txt", OpenFlags::CREATE, rw()).unwrap();
        f.fs.write(&d, b"to host", 0).unwrap();
        assert_eq!(
            std::fs::read_to_string(f.host("bind/new.txt")).unwrap(),
            "to host"
        );
        // `..` and symlinks leave the bind mount for the container's root, never for the
        // host directories around the bind's.
        assert_eq!(
            f.read_all(&data, "../secret").err(),
            Some(ErrorCode::NoEntry)
        );
        assert_eq!(f.read_all(&data, "../../../data/b.txt").unwrap(), "bound");
        std::fs::create_dir(f.host("bind/sub")).unwrap();
        std::os::unix::fs::symlink("../../../..", f.host("bind/sub/up")).unwrap();
        std::os::unix::fs::symlink("/secret", f.host("bind/abs")).unwrap();
        assert_eq!(f.read_all(&data, "sub/up/data/b.txt").unwrap(), "bound");
        assert_eq!(
            f.read_all(&data, "sub/up/secret").err(),
            Some(ErrorCode::NoEntry)
        );
        assert_eq!(f.read_all(&data, "abs").err(), Some(ErrorCode::NoEntry));
        let up = f
            .open(&data, "sub/up", OpenFlags::DIRECTORY, DescriptorFlags::READ)
            .unwrap();
        assert_eq!(
            (up.mount, up.path.as_str()),
            (0, ""),
            "the container's root"
        );
        assert_eq!(f.names(&up), vec!["data", "etc", "ro"]);
    }

    #[test]
    fn times_and_sizes() {
        let f = Fixture::new();
        let root = f.pre("/");
        let ts = |s| {
            NewTimestamp::Timestamp(Datetime {
                seconds: s,
                nanoseconds: 5,
            })
        };
        f.fs.set_times_at(
            &root,
            PathFlags::SYMLINK_FOLLOW,
            "etc/hosts",
            ts(1000),
            ts(2000),
        )
        .unwrap();
        let st = descriptor_stat(
            &f.fs
                .stat_at(&root, PathFlags::empty(), "etc/hosts")
                .unwrap(),
        );
        assert_eq!(
            st.data_access_timestamp.map(|d| (d.seconds, d.nanoseconds)),
            Some((1000, 5))
        );
        assert_eq!(
            st.data_modification_timestamp
                .map(|d| (d.seconds, d.nanoseconds)),
            Some((2000, 5))
        );
        // The lower layer keeps its times: the file was copied up.
        let lower = std::fs::metadata(f.host("lower/etc/hosts")).unwrap();
        assert_ne!(std::os::unix::fs::MetadataExt::mtime(&lower), 2000);
        // Through a read-only descriptor of a lower file: copied up, not changed in place.
        let r = f
            .open(
                &root,
                "etc/hosts",
                OpenFlags::empty(),
                DescriptorFlags::READ,
            )
            .unwrap();
        f.fs.set_times(&r, NewTimestamp::NoChange, ts(3000))
            .unwrap();
        let st = descriptor_stat(
            &f.fs
                .stat_at(&root, PathFlags::empty(), "etc/hosts")
                .unwrap(),
        );
        assert_eq!(
            st.data_modification_timestamp.map(|d| d.seconds),
            Some(3000)
        );
        assert_eq!(st.data_access_timestamp.map(|d| d.seconds), Some(1000));
        let w = f
            .open(&root, "etc/hosts", OpenFlags::empty(), rw())
            .unwrap();
        f.fs.set_size(&w, 3).unwrap();
        f.fs.set_times(&w, ts(7), ts(8)).unwrap();
        let st = descriptor_stat(&f.fs.stat_descriptor(&w).unwrap());
        assert_eq!(
            (st.size, st.data_modification_timestamp.map(|d| d.seconds)),
            (3, Some(8))
        );
        assert_eq!(
            f.fs.set_size(&root, 0).err(),
            Some(ErrorCode::BadDescriptor)
        );
        let big = NewTimestamp::Timestamp(Datetime {
            seconds: u64::MAX,
            nanoseconds: 0,
        });
        assert_eq!(
            f.fs.set_times(&w, big, NewTimestamp::NoChange).err(),
            Some(ErrorCode::Overflow)
        );
    }

    #[test]
    fn streams_read_write_and_append() {
        let f = Fixture::new();
        let root = f.pre("/");
        let d = f.open(&root, "s", OpenFlags::CREATE, rw()).unwrap();
        let Kind::File(file) = &d.kind else { panic!() };
        let mut w = FileWriter {
            file: file.clone(),
            mode: WriteMode::At(2),
            closed: false,
        };
        assert_eq!(w.check_write().unwrap(), MAX_IO);
        w.write(Bytes::from_static(b"abc")).unwrap();
        w.write(Bytes::from_static(b"de")).unwrap();
        w.flush().unwrap();
        let mut a = FileWriter {
            file: file.clone(),
            mode: WriteMode::Append,
            closed: false,
        };
        a.write(Bytes::from_static(b"XY")).unwrap();
        assert_eq!(f.read_all(&root, "s").unwrap(), "\0\0abcdeXY");
        let mut r = FileReader {
            file: file.clone(),
            pos: 2,
            closed: false,
        };
        assert_eq!(&r.read(3).unwrap()[..], b"abc");
        assert_eq!(&r.read(0).unwrap()[..], b"");
        assert_eq!(&r.read(100).unwrap()[..], b"deXY");
        assert!(matches!(r.read(1), Err(StreamError::Closed)));
        // A failed write is last-operation-failed with an io error, then the stream is closed.
        let ro = f
            .open(&root, "s", OpenFlags::empty(), DescriptorFlags::READ)
            .unwrap();
        let Kind::File(rofile) = &ro.kind else {
            panic!()
        };
        let mut bad = FileWriter {
            file: rofile.clone(),
            mode: WriteMode::At(0),
            closed: false,
        };
        match bad.write(Bytes::from_static(b"x")) {
            Err(StreamError::LastOperationFailed(e)) => {
                assert_eq!(
                    error_code(e.downcast_ref::<io::Error>().unwrap()),
                    ErrorCode::BadDescriptor
                )
            }
            _ => panic!("expected a failure"),
        }
        assert!(matches!(bad.check_write(), Err(StreamError::Closed)));
    }

    #[test]
    fn resources_go_through_the_table() {
        use types::{HostDescriptor, HostDirectoryEntryStream};
        let f = Fixture::new();
        let mut table = ResourceTable::new();
        let mut view = FsView {
            fs: &f.fs,
            table: &mut table,
        };
        let pre = preopens::Host::get_directories(&mut view).unwrap();
        assert_eq!(pre.len(), 3);
        let root = Resource::<Descriptor>::new_borrow(pre[0].0.rep());
        let fd = view
            .open_at(
                root,
                PathFlags::empty(),
                "etc/x".into(),
                OpenFlags::CREATE,
                rw(),
            )
            .unwrap();
        let fd2 = Resource::<Descriptor>::new_borrow(fd.rep());
        let out = view.append_via_stream(fd2).unwrap();
        view.table.delete(out).unwrap();
        assert_eq!(
            view.get_type(Resource::new_borrow(fd.rep())).unwrap(),
            DescriptorType::RegularFile
        );
        assert!(view
            .is_same_object(
                Resource::new_borrow(fd.rep()),
                Resource::new_borrow(fd.rep())
            )
            .unwrap());
        assert!(!view
            .is_same_object(
                Resource::new_borrow(fd.rep()),
                Resource::new_borrow(pre[0].0.rep())
            )
            .unwrap());
        let err = view
            .read_via_stream(Resource::new_borrow(pre[0].0.rep()), 0)
            .err()
            .unwrap();
        assert_eq!(err.code(), Some(ErrorCode::IsDirectory));
        let s = view
            .read_directory(Resource::new_borrow(pre[0].0.rep()))
            .unwrap();
        let mut names = Vec::new();
        while let Some(e) = view
            .read_directory_entry(Resource::new_borrow(s.rep()))
            .unwrap()
        {
            names.push(e.name);
        }
        names.sort();
        assert_eq!(names, vec!["data", "etc", "ro"]);
        HostDirectoryEntryStream::drop(&mut view, s).unwrap();
        HostDescriptor::drop(&mut view, fd).unwrap();
        // A table error is a trap, not an error code.
        let gone = Resource::<Descriptor>::new_borrow(9999);
        assert_eq!(view.stat(gone).err().unwrap().code(), None);
    }

    #[test]
    fn shadows_the_builtin_filesystem_in_a_linker() {
        let engine = wasmtime::Engine::default();
        let mut linker: Linker<super::super::WasmState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
        add_to_linker(&mut linker).unwrap();
    }
}
