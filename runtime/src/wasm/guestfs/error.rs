//! Errors: the `wasi:filesystem` error code of an errno or io error, and [`FsError`], the
//! error of every fallible `wasi:filesystem` call (a code, or a trap).

use std::io;

use wasmtime::component::ResourceTableError;

use super::bindings::wasi::filesystem::types::ErrorCode;

/// The error of every fallible `wasi:filesystem` call: an error code for the guest, or a trap.
pub struct FsError(pub(in crate::wasm) FsErrorKind);

pub(in crate::wasm) enum FsErrorKind {
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

pub(super) fn is_enoent(e: &io::Error) -> bool {
    e.raw_os_error() == Some(rustix::io::Errno::NOENT.raw_os_error())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
