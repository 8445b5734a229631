//! The container monitor as a process: `start` (and `run -d`) spawn the `strata` binary
//! again as `strata __monitor ID`, in its own session, and read one line from its stdout —
//! the first run started (`started PID`) or could not (`failed CODE MESSAGE`) — before they
//! return. The monitor then lives on alone: `runtime::container::monitor` is what it runs.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use strata_runtime::backend::Backends;
use strata_runtime::container::{monitor, Container, Containers};
use strata_runtime::Store;

#[derive(clap::Args)]
pub struct Args {
    id: String,
}

/// Start container `c` under a new monitor; returns once it runs. An error carries the
/// status docker gives when it cannot start (125, 126, 127).
pub fn start(store: &Store, c: &Container) -> Result<u32> {
    let mut child = std::process::Command::new("/proc/self/exe")
        .arg("--root")
        .arg(store.path())
        .arg("__monitor")
        .arg(&c.id)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("start the container's monitor")?;
    // One line: the container's processes may hold the pipe open after it (their
    // intermediate is forked from the monitor), so its end is not awaited.
    let mut report = String::new();
    std::io::BufReader::new(child.stdout.take().expect("piped"))
        .read_line(&mut report)
        .context("read from the container's monitor")?;
    let report = report.trim_end();
    if let Some(pid) = report.strip_prefix("started ") {
        return Ok(pid.parse().unwrap_or(0));
    }
    if report == "busy" {
        bail!(strata_runtime::Error::Conflict(format!(
            "container {} is already running",
            c.name
        )));
    }
    if let Some(failure) = report.strip_prefix("failed ") {
        let (code, message) = failure.split_once(' ').unwrap_or(("125", failure));
        let error = match code {
            "127" => strata_runtime::Error::ProgramNotFound(message.to_string()),
            "126" => strata_runtime::Error::NotExecutable(message.to_string()),
            _ => strata_runtime::Error::Conflict(message.to_string()),
        };
        return Err(error.into());
    }
    let status = child.wait().ok();
    Err(anyhow!(
        "the monitor of container {} ended before it started ({})",
        c.short_id(),
        status.map_or("no status".into(), |s| s.to_string())
    ))
}

impl Args {
    /// Run the container until it ends for good. The caller hears of its first start on
    /// our stdout, which is then closed.
    pub fn run(self, store: &Store) -> ExitCode {
        // Our own session: the caller's terminal closing, its SIGHUP, its exit do not reach us.
        let _ = rustix::process::setsid();
        let sync = rustix::io::fcntl_dupfd_cloexec(std::io::stdout(), 3).ok();
        if let Ok(null) = std::fs::File::options()
            .read(true)
            .write(true)
            .open("/dev/null")
        {
            let _ = rustix::stdio::dup2_stdout(&null);
            let _ = rustix::stdio::dup2_stderr(&null);
        }
        let mut sync = sync.map(std::fs::File::from);
        let mut tell = |line: String| {
            if let Some(mut out) = sync.take() {
                let _ = out.write_all(format!("{line}\n").as_bytes());
            }
        };
        match serve(store, &self.id, &mut tell) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tell(format!("failed 125 {e:#}"));
                ExitCode::from(125)
            }
        }
    }
}

fn serve(store: &Store, id: &str, tell: &mut dyn FnMut(String)) -> Result<()> {
    let containers = Containers::open(store)?;
    let c = containers.get(id)?;
    let Some(claim) = containers.claim(&c)? else {
        tell("busy".into());
        return Ok(());
    };
    // The record as it is now that it is ours.
    let c = containers.reload(&c)?;
    let (native, wasm) = super::run::backends(store)?;
    let networks = strata_net::Networks::open(store);
    let backends = Backends {
        native: &native,
        wasm: &wasm,
        network: Some(&networks),
    };
    monitor::serve(&containers, &backends, claim, c, &mut |first| match first {
        Ok(pid) => tell(format!("started {pid}")),
        Err(e) => tell(format!("failed {} {e}", e.exit_code())),
    })?;
    Ok(())
}
