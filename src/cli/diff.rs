use anyhow::Result;
use strata_runtime::container::Containers;
use strata_runtime::Store;

#[derive(clap::Args)]
pub struct Args {
    container: String,
}

impl Args {
    /// `docker diff`: A added, C changed, D deleted, one path a line.
    pub fn run(self, store: &Store) -> Result<()> {
        let containers = Containers::open(store)?;
        let c = containers.get(&self.container)?;
        let changes = strata_runtime::fs::changes(&containers.lowers(&c)?, &containers.upper(&c)?)?;
        for change in changes {
            println!("{change}");
        }
        Ok(())
    }
}
