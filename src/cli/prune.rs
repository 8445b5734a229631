use anyhow::Result;
use strata_runtime::container::{Containers, Networking};
use strata_runtime::Store;

use crate::format::human_size;

/// `container prune`: remove every container that does not run, as docker's.
#[derive(clap::Args)]
pub struct Args {
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
}

impl Args {
    pub fn run(self, store: &Store) -> Result<()> {
        if !self.force && !super::confirm("This will remove all stopped containers.")? {
            return Ok(());
        }
        let (deleted, reclaimed) = prune(store)?;
        if !deleted.is_empty() {
            println!("Deleted Containers:\n{}\n", deleted.join("\n"));
        }
        println!("Total reclaimed space: {}", human_size(reclaimed));
        Ok(())
    }
}

/// Remove every container that does not run (`container prune`, the API's
/// `POST /containers/prune`): their ids and the bytes of their writable layers.
pub(crate) fn prune(store: &Store) -> Result<(Vec<String>, u64)> {
    let containers = Containers::open(store)?;
    let mut deleted = Vec::new();
    let mut reclaimed = 0;
    for c in containers.list()? {
        if c.running() {
            continue;
        }
        // Held while it goes, so that no `start` runs it meanwhile; one that something
        // runs now is not stopped.
        let Some(_claim) = containers.claim(&c)? else {
            continue;
        };
        let size = containers.upper_size(&c);
        containers.remove(&c)?;
        if c.host.network.attaches() {
            strata_net::Networks::open(store).release(&c.id)?;
        }
        reclaimed += size;
        deleted.push(c.id);
    }
    Ok((deleted, reclaimed))
}
