//! The runtime's one error type. Each variant carries what a user needs to see; `kind()`
//! classifies it (containerd's classes) so the CLI can choose an exit code.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    AlreadyExists,
    InvalidArgument,
    FailedPrecondition,
    Unsupported,
    Io,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    IoPath {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid reference format: {0}")]
    InvalidReference(String),
    #[error("invalid digest {0:?}")]
    InvalidDigest(String),
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: String, actual: String },
    #[error("size mismatch for {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        digest: String,
        expected: u64,
        actual: u64,
    },
    #[error("{0}")]
    InvalidDocument(String),
    #[error("layer entry {entry:?}: {reason}")]
    LayerEntry { entry: String, reason: String },
    #[error("layer: {0}")]
    Layer(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("archive: {0}")]
    Archive(String),
    #[error("no such image: {0}")]
    ImageNotFound(String),
    /// The container's program does not exist (docker's 127); the whole message.
    #[error("{0}")]
    ProgramNotFound(String),
    /// The container's program cannot be executed (docker's 126); the whole message.
    #[error("{0}")]
    NotExecutable(String),
    #[error("{0}")]
    Registry(String),
    #[error("no such container: {0}")]
    ContainerNotFound(String),
    #[error("blob {0} not found in the store")]
    BlobNotFound(String),
    /// docker's words.
    #[error("network {0} not found")]
    NetworkNotFound(String),
    #[error("no such volume: {0}")]
    VolumeNotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unsupported(String),
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Io { .. } | Error::IoPath { .. } => ErrorKind::Io,
            Error::ImageNotFound(_)
            | Error::BlobNotFound(_)
            | Error::ContainerNotFound(_)
            | Error::NetworkNotFound(_)
            | Error::VolumeNotFound(_) => ErrorKind::NotFound,
            Error::Conflict(_) => ErrorKind::FailedPrecondition,
            Error::Unsupported(_) => ErrorKind::Unsupported,
            _ => ErrorKind::InvalidArgument,
        }
    }

    /// The status docker gives a container that could not run for this reason: 127 when
    /// its program is missing, 126 when it cannot be executed, 125 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::ProgramNotFound(_) => 127,
            Error::NotExecutable(_) => 126,
            _ => 125,
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub fn entry(entry: impl std::fmt::Display, reason: impl Into<String>) -> Error {
        Error::LayerEntry {
            entry: entry.to_string(),
            reason: reason.into(),
        }
    }
}

/// Attach context to `std::io::Result`s.
pub trait IoContext<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: what(),
            source,
        })
    }
}

impl<T> IoContext<T> for rustix::io::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::Io {
            context: what(),
            source: e.into(),
        })
    }
}

/// Recover our own error from an `io::Error` that carries one (verified readers report
/// digest mismatches through `Read`), or wrap a plain I/O error.
pub fn from_io(e: std::io::Error) -> Error {
    if e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
        let inner = e.into_inner().expect("checked above");
        return *inner.downcast::<Error>().expect("checked above");
    }
    Error::io("read", e)
}
