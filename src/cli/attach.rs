use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Result};
use chrono::{DateTime, Utc};
use strata_runtime::container::logs::{LogReader, Query, Sinks};
use strata_runtime::container::{Container, Containers};
use strata_runtime::Store;

/// `attach`: a running container's output from now on, until it ends; exits with its
/// status. (Its stdin is not attached.)
#[derive(clap::Args)]
pub struct Args {
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
            follow(&containers, &c, Some(Utc::now()))
        })())
    }
}

/// Show the container's output logged `since` until its run ends, and return its status.
pub fn follow(
    containers: &Containers<'_>,
    c: &Container,
    since: Option<DateTime<Utc>>,
) -> Result<i32> {
    // The record as the monitor has it now that it runs.
    let c = containers.get(&c.id)?;
    let query = Query {
        since,
        ..Query::default()
    };
    let dir = containers.dir_of(&c)?;
    let mut reader = LogReader::open(&dir, &c.id)?;
    let ended = AtomicBool::new(false);
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            let code = containers.wait(&c);
            ended.store(true, Ordering::SeqCst);
            code
        });
        let (stdout, stderr) = (std::io::stdout(), std::io::stderr());
        let (mut out, mut err) = (stdout.lock(), stderr.lock());
        let mut sinks = Sinks {
            stdout: &mut out,
            stderr: &mut err,
        };
        reader.follow(&query, &mut sinks, || Ok(ended.load(Ordering::SeqCst)))?;
        Ok(waiter.join().expect("wait thread")?)
    })
}
