use std::process::ExitCode;

use strata_runtime::container::Containers;
use strata_runtime::Store;

/// `wait`: block until each container stops, then print its exit code.
#[derive(clap::Args)]
pub struct Args {
    #[arg(required = true, value_name = "CONTAINER")]
    containers: Vec<String>,
}

impl Args {
    pub fn run(self, store: &Store) -> anyhow::Result<ExitCode> {
        let containers = Containers::open(store)?;
        Ok(super::each(&self.containers, |key| {
            let c = containers.get(key)?;
            Ok(containers.wait(&c)?.to_string())
        }))
    }
}
