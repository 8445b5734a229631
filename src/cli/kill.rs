use std::process::ExitCode;

use strata_runtime::container::{parse_signal, Containers};
use strata_runtime::Store;

/// `kill`: a signal (SIGKILL by default) to each running container.
#[derive(clap::Args)]
pub struct Args {
    /// Signal to send to the container
    #[arg(short, long, default_value = "KILL")]
    signal: String,
    #[arg(required = true, value_name = "CONTAINER")]
    containers: Vec<String>,
}

impl Args {
    pub fn run(self, store: &Store) -> anyhow::Result<ExitCode> {
        let containers = Containers::open(store)?;
        let signal = parse_signal(&self.signal)?;
        Ok(super::each(&self.containers, |key| {
            let c = containers.get(key)?;
            containers
                .kill(&c, signal)
                .map_err(|e| anyhow::anyhow!("cannot kill container: {key}: {e}"))?;
            Ok(key.to_string())
        }))
    }
}
