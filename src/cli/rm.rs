use anyhow::{bail, Result};
use strata_runtime::container::{Container, Containers, Networking};
use strata_runtime::Store;

#[derive(clap::Args)]
pub struct Args {
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short, long)]
    force: bool,
    /// Remove anonymous volumes associated with the container
    #[arg(short, long)]
    volumes: bool,
    #[arg(required = true, value_name = "CONTAINER")]
    containers: Vec<String>,
}

impl Args {
    pub fn run(self, store: &Store) -> Result<()> {
        let containers = Containers::open(store)?;
        for key in &self.containers {
            let c = containers.get(key)?;
            remove(store, &containers, &c, self.force, self.volumes)?;
            println!("{key}");
        }
        Ok(())
    }
}

/// Remove container `c` as `rm` does (and the API's `DELETE /containers`): refused while it
/// runs unless `force` (then killed first), with its anonymous volumes for `volumes`, and
/// its network addresses released.
pub(crate) fn remove(
    store: &Store,
    containers: &Containers<'_>,
    c: &Container,
    force: bool,
    volumes: bool,
) -> Result<()> {
    if !c.can_remove(force) {
        bail!(strata_runtime::Error::Conflict(format!(
            "cannot remove container {}: container is running: stop the container before removing or force remove",
            c.name
        )));
    }
    // Killed through whoever runs it (its monitor, or the process its record names,
    // checked to be it), which is gone once it has recorded the end.
    if c.running() {
        containers.stop(c, Some(9), Some(0))?;
    }
    if volumes {
        containers.discard(c)?;
    } else {
        containers.remove(c)?;
    }
    if c.host.network.attaches() {
        // Its address, and anything of the network only it used.
        strata_net::Networks::open(store).release(&c.id)?;
    }
    Ok(())
}
