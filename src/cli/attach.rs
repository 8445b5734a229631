use std::process::ExitCode;

use anyhow::{bail, Result};
use chrono::{DateTime, Utc};
use strata_runtime::container::logs::{LogReader, Query, Sinks};
use strata_runtime::container::monitor::{self, Request};
use strata_runtime::container::{Container, Containers};
use strata_runtime::Store;

/// `attach`: a running container's output from now on, until it ends, and this
/// terminal's stdin to the container's if it keeps one open (`-i`); exits with its status.
#[derive(clap::Args)]
pub struct Args {
    /// Do not attach STDIN
    #[arg(long)]
    no_stdin: bool,
    container: String,
}

impl Args {
    pub fn run(self, store: &Store) -> ExitCode {
        super::run::exit_with((|| {
            let containers = Containers::open(store)?;
            let c = containers.get(&self.container)?;
            if !c.running() {
                bail!("You cannot attach to a stopped container, start it first");
            }
            follow(&containers, &c, Some(Utc::now()), !self.no_stdin)
        })())
    }
}

/// Show the container's output logged `since` until its run ends, and return its status;
/// with `stdin`, this process's stdin goes to the container's meanwhile (if it keeps one).
pub fn follow(
    containers: &Containers<'_>,
    c: &Container,
    since: Option<DateTime<Utc>>,
    stdin: bool,
) -> Result<i32> {
    // The record as the monitor has it now that it runs.
    let c = containers.get(&c.id)?;
    // Its terminal follows ours: the size now, and again at each SIGWINCH.
    let _resizing = follow_window_size(containers, &c)?;
    // Held open until we return: closing it tells the monitor we went.
    let _attached = if stdin && c.host.open_stdin {
        attach_stdin(containers, &c)?
    } else {
        None
    };
    let query = Query {
        since,
        ..Query::default()
    };
    let dir = containers.dir_of(&c)?;
    let mut reader = LogReader::open(&dir, &c.id)?;
    let (ended, end) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        let waiter = s.spawn(move || {
            let code = containers.wait(&c);
            drop(ended);
            code
        });
        let (stdout, stderr) = (std::io::stdout(), std::io::stderr());
        let (mut out, mut err) = (stdout.lock(), stderr.lock());
        let mut sinks = Sinks {
            stdout: &mut out,
            stderr: &mut err,
        };
        reader.follow(&query, &mut sinks, LogReader::ended_on(&end))?;
        Ok(waiter.join().expect("wait thread")?)
    })
}

/// Send this process's stdin to the container's through its monitor, from a thread, until
/// it ends (an empty frame says so). The connection, to keep while attached.
fn attach_stdin(
    containers: &Containers<'_>,
    c: &Container,
) -> Result<Option<std::os::unix::net::UnixStream>> {
    use std::io::{Read, Write};
    let Some((reply, conn)) = monitor::exchange(containers, c, &Request::Attach, &[])? else {
        return Ok(None);
    };
    if let Some(e) = reply.error {
        bail!("attach to {}: {e}", c.id);
    }
    let mut sender = conn.try_clone()?;
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        let mut stdin = std::io::stdin().lock();
        loop {
            let n = match stdin.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => 0,
            };
            if sender.write_all(&monitor::stdin_frame(&buf[..n])).is_err() || n == 0 {
                return;
            }
        }
    });
    Ok(Some(conn))
}

/// Stops following the terminal's size when dropped.
struct Resizing(signal_hook::iterator::Handle);

impl Drop for Resizing {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// For a container with a terminal, while this process's stdout is one: give it our size,
/// and again whenever ours changes (SIGWINCH), through its monitor, until the returned
/// guard is dropped.
fn follow_window_size(containers: &Containers<'_>, c: &Container) -> Result<Option<Resizing>> {
    use std::os::fd::AsFd;
    let tty = containers
        .spec(c)
        .ok()
        .and_then(|s| s.process().as_ref().and_then(|p| p.terminal()))
        .unwrap_or(false);
    let ours = || rustix::termios::tcgetwinsize(std::io::stdout().as_fd()).ok();
    if !tty || ours().is_none() {
        return Ok(None);
    }
    let resize = {
        let (root, c) = (containers.store().path().to_path_buf(), c.clone());
        move || {
            let (Some(size), Ok(store)) = (ours(), Store::open(&root)) else {
                return;
            };
            if let Ok(containers) = Containers::open(&store) {
                let _ = containers.resize(&c, size.ws_row, size.ws_col);
            }
        }
    };
    resize();
    let mut signals =
        signal_hook::iterator::Signals::new([rustix::process::Signal::WINCH.as_raw()])?;
    let handle = signals.handle();
    std::thread::spawn(move || {
        for _ in signals.forever() {
            resize();
        }
    });
    Ok(Some(Resizing(handle)))
}
