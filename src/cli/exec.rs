use std::process::ExitCode;

use anyhow::{anyhow, Result};
use std::os::fd::{AsFd, OwnedFd};
use strata_runtime::backend::{Kind, Stdio, Stream, Task};
use strata_runtime::container::monitor::{self, Request};
use strata_runtime::container::{exec_spec, Container, Containers, ExecOptions, Status};
use strata_runtime::Store;

/// `exec`: a new process in a running container, confined as its own are.
#[derive(clap::Args)]
pub struct Args {
    /// Keep STDIN open
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    tty: bool,
    /// Detached mode: run command in the background
    #[arg(short, long)]
    detach: bool,
    /// Username or UID (format: "<name|uid>[:<group|gid>]")
    #[arg(short, long)]
    user: Option<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    workdir: Option<String>,
    /// Set environment variables
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    container: String,
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

impl Args {
    /// Exits with the process's status, 126/127 when it cannot start, 1 when the
    /// container does not run.
    pub fn run(self, store: &Store) -> ExitCode {
        let containers = match Containers::open(store) {
            Ok(c) => c,
            Err(e) => return super::run::exit_with(Err(e.into())),
        };
        let c = match containers.get(&self.container) {
            Ok(c) if c.status == Status::Running => c,
            Ok(c) if c.status == Status::Paused => {
                eprintln!(
                    "Error: container {} is paused, unpause the container before exec",
                    c.id
                );
                return ExitCode::from(1);
            }
            Ok(c) => {
                eprintln!("Error: container {} is not running", c.id);
                return ExitCode::from(1);
            }
            Err(e) => {
                eprintln!("Error: {e}");
                return ExitCode::from(1);
            }
        };
        super::run::exit_with((|| {
            let spec = exec_spec(
                &containers.spec(&c)?,
                &ExecOptions {
                    args: self.command.clone(),
                    env: self.env.clone(),
                    workdir: self.workdir.clone(),
                    user: self.user.clone(),
                    tty: self.tty,
                },
            )?;
            if self.detach {
                return detached_exec(&containers, &c, &spec);
            }
            exec_in(
                store,
                &containers,
                &c,
                &spec,
                self.interactive,
                None,
                &mut |_| {},
            )
        })())
    }
}

/// An exec's streams when they are not this process's own (the API's pipes): its stdin
/// (none: an empty one), stdout and stderr.
pub(crate) struct ExecIo {
    pub stdin: Option<OwnedFd>,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// Run `spec`'s process in running container `c` and wait for it: its status. Its streams
/// are this process's (stdin with `interactive`), or `io`'s; `started` hears of the
/// process once it runs (its `Started`: a terminal's resizer, for the API).
pub(crate) fn exec_in(
    store: &Store,
    containers: &Containers<'_>,
    c: &Container,
    spec: &strata_runtime::oci_spec::runtime::Spec,
    interactive: bool,
    io: Option<ExecIo>,
    started: &mut dyn FnMut(&strata_runtime::backend::Started),
) -> Result<i32> {
    if c.runtime == Kind::Wasm {
        return wasm_exec(containers, c, spec, interactive, io);
    }
    let init = c
        .live_pid()
        .ok_or_else(|| anyhow!("container {} is not running", c.id))?;
    let native = strata_native::NativeBackend {
        state: store.path().to_path_buf(),
    };
    let rootfs = containers.rootfs(c);
    let task = Task {
        id: &c.id,
        spec,
        rootfs: &rootfs,
        network: None,
    };
    let stdio = match io {
        None => Stdio {
            stdin: interactive.then_some(Stream::Inherit),
            ..Stdio::default()
        },
        Some(io) => Stdio {
            stdin: io.stdin.map(Stream::Fd),
            stdout: Stream::Fd(io.stdout),
            stderr: Stream::Fd(io.stderr),
        },
    };
    Ok(native
        .exec(&task, init, stdio, &mut |s| {
            started(&s);
            Ok(())
        })?
        .code)
}

/// A Wasm container's exec: a second guest in its monitor's process, on the same overlay
/// (its writes and the running guest's are one upper layer), our stdout and stderr handed
/// to it.
fn wasm_exec(
    containers: &Containers<'_>,
    c: &Container,
    spec: &strata_runtime::oci_spec::runtime::Spec,
    interactive: bool,
    io: Option<ExecIo>,
) -> Result<i32> {
    let process = spec.process().clone().expect("exec_spec gives a process");
    let (stdin, stdout, stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    let mut fds = match &io {
        Some(io) => vec![io.stdout.as_fd(), io.stderr.as_fd()],
        None => vec![stdout.as_fd(), stderr.as_fd()],
    };
    match &io {
        Some(ExecIo {
            stdin: Some(input), ..
        }) => fds.push(input.as_fd()),
        Some(_) => {}
        None if interactive => fds.push(stdin.as_fd()),
        None => {}
    }
    let reply = monitor::request_with(
        containers,
        c,
        &Request::Exec {
            process: Box::new(process),
            detach: false,
        },
        &fds,
    )?
    .ok_or_else(|| {
        anyhow!(
            "container {} runs in the foreground of another strata: exec into a Wasm container needs it detached (run -d)",
            c.id
        )
    })?;
    if let Some(msg) = &reply.error {
        eprintln!("Error: {msg}");
    }
    Ok(reply.exit.unwrap_or(125))
}

/// `exec -d`: the container's monitor runs the process (its output discarded) and answers
/// once it runs; 126/127 and docker's message when it cannot start.
fn detached_exec(
    containers: &Containers<'_>,
    c: &Container,
    spec: &strata_runtime::oci_spec::runtime::Spec,
) -> Result<i32> {
    let process = spec.process().clone().expect("exec_spec gives a process");
    let request = Request::Exec {
        process: Box::new(process),
        detach: true,
    };
    let reply = monitor::request(containers, c, &request)?.ok_or_else(|| {
        anyhow!(
            "container {} runs in the foreground of another strata: exec -d needs it detached (run -d)",
            c.id
        )
    })?;
    match reply.error {
        Some(msg) => {
            eprintln!("Error: {msg}");
            Ok(reply.exit.unwrap_or(126))
        }
        None => Ok(0),
    }
}
