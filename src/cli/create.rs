use std::process::ExitCode;

use strata_runtime::container::Containers;
use strata_runtime::Store;

/// `create`: a container made as `run` makes it, left `created` for `start`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    container: super::run::ContainerArgs,
}

impl Args {
    pub fn run(self, store: &Store) -> ExitCode {
        super::run::exit_with((|| {
            let containers = Containers::open(store)?;
            let (container, _, _) =
                self.container
                    .create(store, &containers, super::run::Mode::Created)?;
            println!("{}", container.id);
            Ok(0)
        })())
    }
}
