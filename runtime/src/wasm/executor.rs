//! The wasm backend behind the `Executor` seam: the container's spec becomes a guest run on
//! the embedded wasmtime, its root the capability-scoped overlay of its layers and upper
//! layer, `-v` binds extra overlay mounts. SIGINT/SIGTERM stop the guest through epoch
//! interruption.

use std::sync::Arc;

use cap_std::fs::Dir;
use oci_spec::runtime::Spec;

use super::{filesystem, GuestSpec, Outcome, WasmRuntime};
use crate::container::{Container, Containers};
use crate::error::{Error, Result};
use crate::exec::{Executor, Exit, Stdio};
use crate::fs::Overlay;

/// Runs WASI guests; needs no privileges.
#[derive(Debug, Default, Clone, Copy)]
pub struct WasmExecutor;

impl Executor for WasmExecutor {
    fn run(
        &self,
        containers: &Containers<'_>,
        container: &Container,
        spec: &Spec,
        stdio: Stdio,
        started: &mut dyn FnMut(u32) -> Result<()>,
    ) -> Result<Exit> {
        let wasm = WasmRuntime::new(&containers.store().path().join("cache/wasm"))?;
        let process = spec
            .process()
            .as_ref()
            .ok_or_else(|| Error::InvalidArgument("runtime spec without a process".into()))?;
        let memory = spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().as_ref())
            .and_then(|r| r.memory().as_ref())
            .and_then(|m| m.limit())
            .map(|l| l as u64);
        let guest = GuestSpec {
            args: process.args().clone().unwrap_or_default(),
            env: process
                .env()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|e| match e.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (e, String::new()),
                })
                .collect(),
            cwd: process.cwd().display().to_string(),
            stdin: stdio.stdin,
            memory,
        };
        let root = containers.root(container)?;
        let mut binds = Vec::new();
        // A tmpfs is an empty private directory for the run's length.
        let mut scratch = Vec::new();
        for m in spec.mounts().iter().flatten() {
            let source = match m.typ().as_deref() {
                Some("bind") => m.source().clone().unwrap_or_default(),
                Some("tmpfs") => {
                    let dir = tempfile::tempdir()
                        .map_err(|e| Error::io("create a tmpfs directory", e))?;
                    let path = dir.path().to_path_buf();
                    scratch.push(dir);
                    path
                }
                _ => continue,
            };
            let dir =
                Dir::open_ambient_dir(&source, cap_std::ambient_authority()).map_err(|e| {
                    Error::IoPath {
                        path: source.clone(),
                        source: e,
                    }
                })?;
            let target = m.destination().display().to_string();
            // Mount points exist in the container, as docker makes them.
            make_dirs(&root, &target)
                .map_err(|e| Error::io(format!("create mount point {target}"), e))?;
            binds.push(filesystem::Mount {
                guest_path: target,
                overlay: Arc::new(Overlay::new(Vec::new(), dir)),
                read_only: m
                    .options()
                    .as_ref()
                    .is_some_and(|o| o.iter().any(|x| x == "ro")),
            });
        }

        let interrupt = wasm.interrupt_handle();
        let mut signals = signal_hook::iterator::Signals::new([
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
        ])
        .map_err(|e| Error::io("install signal handlers", e))?;
        let handle = signals.handle();
        let (finished, guest_done) = std::sync::mpsc::channel::<()>();
        let watcher = std::thread::spawn(move || {
            if let Some(sig) = signals.forever().next() {
                interrupt.interrupt(sig);
                // A guest blocked in a host call (reading stdin) never reaches an epoch
                // check: if it has not stopped after a grace period, leave without it.
                if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    guest_done.recv_timeout(std::time::Duration::from_secs(3))
                {
                    std::process::exit(128 + sig);
                }
            }
        });
        started(std::process::id())?;
        let outcome = wasm.run(root, binds, &guest);
        drop(scratch);
        drop(finished);
        handle.close();
        let _ = watcher.join();
        let outcome = outcome?;
        Ok(Exit {
            code: outcome.exit_code(),
            oom_killed: outcome == Outcome::OutOfMemory,
            message: match outcome {
                Outcome::Trapped(msg) => Some(msg),
                Outcome::OutOfMemory => Some(format!(
                    "container {} ran out of memory (limit {} bytes)",
                    &container.id[..12],
                    memory.unwrap_or(0)
                )),
                _ => None,
            },
        })
    }
}

/// `mkdir -p` in the container's root.
fn make_dirs(root: &Overlay<Dir>, path: &str) -> std::io::Result<()> {
    let mut at = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        at.push('/');
        at.push_str(part);
        match root.create_dir(std::ffi::OsStr::new(&at), 0o755) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            r => r?,
        }
    }
    Ok(())
}
