//! The backend seam: `run` and every build RUN step hand a container (its record, its OCI
//! runtime `Spec`, its layers and upper layer) to an `Executor`, which runs its process to
//! the end and reports how it ended. The CLI picks the executor (native or wasm); nothing
//! above this trait knows which one runs.

use oci_spec::runtime::Spec;

use crate::container::{Container, Containers};
use crate::error::Result;

/// How a container's process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// The status docker would report: the process's exit code, or 128+signal.
    pub code: i32,
    /// The kernel (or the Wasm memory limit) stopped it for lack of memory.
    pub oom_killed: bool,
    /// One line to show the user beside the status (a Wasm trap, an OOM note).
    pub message: Option<String>,
}

impl Exit {
    pub fn code(code: i32) -> Exit {
        Exit {
            code,
            oom_killed: false,
            message: None,
        }
    }
}

/// What the caller's terminal gives the container.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stdio {
    /// Keep stdin open (`-i`); otherwise the process reads an empty stdin.
    pub stdin: bool,
}

/// A backend. `run` blocks until the process ends; signals the caller receives (SIGINT,
/// SIGTERM, …) go to the container while it runs. `started` is called with the process id
/// (or the caller's own, for in-process backends) once it runs, so the record can say so.
pub trait Executor {
    fn run(
        &self,
        containers: &Containers<'_>,
        container: &Container,
        spec: &Spec,
        stdio: Stdio,
        started: &mut dyn FnMut(u32) -> Result<()>,
    ) -> Result<Exit>;
}
