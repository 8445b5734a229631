use anyhow::{bail, Result};
use strata_runtime::container::Containers;
use strata_runtime::Store;

#[derive(clap::Args)]
pub struct Args {
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short, long)]
    force: bool,
    #[arg(required = true, value_name = "CONTAINER")]
    containers: Vec<String>,
}

impl Args {
    pub fn run(self, store: &Store) -> Result<()> {
        let containers = Containers::open(store)?;
        for key in &self.containers {
            let c = containers.get(key)?;
            if !c.can_remove(self.force) {
                bail!("cannot remove container {key}: container is running: stop the container before removing or force remove");
            }
            // Only the container's own process: a stale record's pid may be someone else's.
            if let Some(pid) = c.live_pid() {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
            containers.remove(&c)?;
            println!("{key}");
        }
        Ok(())
    }
}
