use std::process::ExitCode;

use strata_runtime::container::Containers;
use strata_runtime::Store;

/// `start`: each container under a new monitor; `-a` then shows its output until it ends
/// and exits with its status, as docker's.
#[derive(clap::Args)]
pub struct Args {
    /// Attach STDOUT/STDERR and forward signals
    #[arg(short, long)]
    attach: bool,
    /// Attach container's STDIN
    #[arg(short, long)]
    interactive: bool,
    #[arg(required = true, value_name = "CONTAINER")]
    containers: Vec<String>,
}

impl Args {
    pub fn run(self, store: &Store) -> ExitCode {
        super::run::exit_with((|| {
            let containers = Containers::open(store)?;
            let attach = self.attach || self.interactive;
            if attach && self.containers.len() > 1 {
                anyhow::bail!("you cannot start and attach multiple containers at once");
            }
            for key in &self.containers {
                let c = containers.get(key)?;
                if c.running() {
                    // docker: starting a running container is a no-op.
                    if !attach {
                        println!("{key}");
                    }
                    continue;
                }
                let since = chrono::Utc::now();
                super::monitor::start(store, &c)?;
                if attach {
                    return super::attach::follow(&containers, &c, Some(since), self.interactive);
                }
                println!("{key}");
            }
            Ok(0)
        })())
    }
}
