//! Why the container's set-up failed, as the forked processes report it (over `ipc`) and
//! the parent turns it into the engine's error. Its own module so that `rootfs`, `child`
//! and `ipc` can all use it without depending on each other.

use strata_runtime::Error;

/// Why set-up failed, as the parent will report it.
#[derive(Debug)]
pub(crate) struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum FailureKind {
    Other = 0,
    NotFound = 1,
    NotExecutable = 2,
}

impl FailureKind {
    pub fn from_u8(byte: u8) -> Option<FailureKind> {
        match byte {
            0 => Some(FailureKind::Other),
            1 => Some(FailureKind::NotFound),
            2 => Some(FailureKind::NotExecutable),
            _ => None,
        }
    }
}

impl Failure {
    pub fn other(message: String) -> Failure {
        Failure {
            kind: FailureKind::Other,
            message,
        }
    }

    /// The status the container's init exits with when it cannot exec (docker's).
    pub fn exit_code(&self) -> i32 {
        match self.kind {
            FailureKind::NotFound => 127,
            FailureKind::NotExecutable => 126,
            FailureKind::Other => 125,
        }
    }
}

impl From<Failure> for Error {
    fn from(f: Failure) -> Error {
        match f.kind {
            FailureKind::NotFound => Error::ProgramNotFound(f.message),
            FailureKind::NotExecutable => Error::NotExecutable(f.message),
            FailureKind::Other => Error::Unsupported(format!("container set-up: {}", f.message)),
        }
    }
}

/// `what: strerror(errno)` for a failed call.
pub(crate) fn errno(what: impl std::fmt::Display) -> Failure {
    Failure::other(format!("{what}: {}", std::io::Error::last_os_error()))
}

/// Check a libc return value.
pub(crate) fn check(
    ret: libc::c_int,
    what: impl std::fmt::Display,
) -> Result<libc::c_int, Failure> {
    if ret < 0 {
        Err(errno(what))
    } else {
        Ok(ret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_docker_exit_codes_and_errors() {
        let f = |kind| Failure {
            kind,
            message: "m".into(),
        };
        assert_eq!(f(FailureKind::NotFound).exit_code(), 127);
        assert_eq!(f(FailureKind::NotExecutable).exit_code(), 126);
        assert_eq!(f(FailureKind::Other).exit_code(), 125);
        assert!(matches!(
            Error::from(f(FailureKind::NotFound)),
            Error::ProgramNotFound(m) if m == "m"
        ));
        assert!(matches!(
            Error::from(f(FailureKind::NotExecutable)),
            Error::NotExecutable(_)
        ));
        assert_eq!(
            Error::from(f(FailureKind::Other)).to_string(),
            Error::Unsupported("container set-up: m".into()).to_string()
        );
        for k in [
            FailureKind::Other,
            FailureKind::NotFound,
            FailureKind::NotExecutable,
        ] {
            assert_eq!(FailureKind::from_u8(k as u8), Some(k));
        }
        assert_eq!(FailureKind::from_u8(3), None);
    }
}
