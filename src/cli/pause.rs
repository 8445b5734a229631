use std::process::ExitCode;

use strata_runtime::container::Containers;
use strata_runtime::Store;

/// `pause` and `unpause`: freeze or thaw every process of each container.
#[derive(clap::Args)]
pub struct Args {
    #[arg(required = true, value_name = "CONTAINER")]
    containers: Vec<String>,
}

impl Args {
    pub fn run(self, store: &Store, paused: bool) -> anyhow::Result<ExitCode> {
        let containers = Containers::open(store)?;
        Ok(super::each(&self.containers, |key| {
            let c = containers.get(key)?;
            containers.pause(&c, paused)?;
            Ok(key.to_string())
        }))
    }
}
