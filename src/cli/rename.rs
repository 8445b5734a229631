use std::process::ExitCode;

use strata_runtime::container::Containers;
use strata_runtime::Store;

/// `rename CONTAINER NEW_NAME`: docker's errors, as its daemon words them, exit 1.
#[derive(clap::Args)]
pub struct Args {
    #[arg(value_name = "CONTAINER")]
    container: String,
    #[arg(value_name = "NEW_NAME")]
    new_name: String,
}

impl Args {
    pub fn run(self, store: &Store) -> ExitCode {
        let renamed = (|| -> anyhow::Result<()> {
            let containers = Containers::open(store)?;
            let c = containers.get(&self.container)?;
            containers.rename(&c, &self.new_name)?;
            Ok(())
        })();
        match renamed {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
                eprintln!("Error response from daemon: {}", crate::dedup_chain(&chain));
                ExitCode::from(1)
            }
        }
    }
}
