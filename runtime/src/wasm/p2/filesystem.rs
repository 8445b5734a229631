//! `wasi:filesystem@0.2.12` (`types` and `preopens`) served from [`GuestFs`],
//! synchronously.
//!
//! wasmtime-wasi's own filesystem can only expose real host directories, so we generate our
//! own bindings for the two interfaces (`guestfs::bindings`, reusing wasmtime-wasi's `wasi:io`
//! and `wasi:clocks` types) and link them over the built-in ones (`add_to_linker`, after
//! `wasmtime_wasi::p2::add_to_linker_sync`). What a call does is [`GuestFs`]'s; here are the
//! host traits on the resource table, and the streams.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi_io::streams::{
    DynInputStream, DynOutputStream, InputStream, OutputStream, StreamError, StreamResult,
};

use crate::fs::file_type;
use crate::wasm::guestfs::bindings::wasi::filesystem::{preopens, types};
use crate::wasm::guestfs::{
    append, descriptor_stat, descriptor_type, error_code, file, fstat, identity, metadata_hash_of,
    Descriptor, DirectoryEntryStream, FsError, FsErrorKind, GuestFs, Kind, MAX_IO,
};
use crate::wasm::WasmState;
use types::{
    Advice, DescriptorFlags, DescriptorStat, DescriptorType, DirectoryEntry, ErrorCode, Filesize,
    MetadataHashValue, NewTimestamp, OpenFlags, PathFlags,
};

type FsResult<T> = Result<T, FsError>;

/// Our `wasi:filesystem` bindings over the built-in ones. Call after
/// `wasmtime_wasi::p2::add_to_linker_sync` (or `_with_options_sync`); shadowing is allowed
/// only for the duration of this call (and left off afterwards).
pub fn add_to_linker(linker: &mut Linker<WasmState>) -> wasmtime::Result<()> {
    fn view(s: &mut WasmState) -> FsView<'_> {
        FsView {
            fs: &s.fs,
            table: &mut s.table,
        }
    }
    linker.allow_shadowing(true);
    let result = types::add_to_linker::<WasmState, StrataFs>(linker, view)
        .and_then(|()| preopens::add_to_linker::<WasmState, StrataFs>(linker, view));
    linker.allow_shadowing(false);
    result
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
    use super::*;
    use crate::wasm::guestfs::tests::{rw, Fixture};

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
        let mut linker: Linker<WasmState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
        add_to_linker(&mut linker).unwrap();
    }
}
