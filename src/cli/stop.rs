use std::process::ExitCode;

use strata_runtime::container::{parse_signal, Containers};
use strata_runtime::Store;

/// `stop` and `restart`.
#[derive(clap::Args)]
pub struct Args {
    /// Signal to send to the container
    #[arg(short, long)]
    signal: Option<String>,
    /// Seconds to wait before killing the container
    #[arg(short, long, allow_hyphen_values = true)]
    time: Option<i64>,
    #[arg(required = true, value_name = "CONTAINER")]
    containers: Vec<String>,
}

impl Args {
    /// Stop each container (then start it again, for `restart`), printing its name as given.
    pub fn run(self, store: &Store, restart: bool) -> anyhow::Result<ExitCode> {
        let containers = Containers::open(store)?;
        let signal = self.signal.as_deref().map(parse_signal).transpose()?;
        Ok(super::each(&self.containers, |key| {
            let c = containers.get(key)?;
            containers.stop(&c, signal, self.time)?;
            if restart {
                let c = containers.get(&c.id)?;
                super::monitor::start(store, &c)?;
            }
            Ok(key.to_string())
        }))
    }
}
