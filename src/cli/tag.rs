use anyhow::{bail, Result};
use strata_runtime::{Reference, Store};

#[derive(clap::Args)]
pub struct Args {
    source: String,
    target: String,
}

impl Args {
    pub fn run(self, store: &Store) -> Result<()> {
        let image = store.resolve(&self.source)?;
        let target = Reference::parse(&self.target)?;
        if target.digest().is_some() {
            bail!("refusing to create a tag with a digest reference");
        }
        store.set_tag(&target, &image.manifest_descriptor)?;
        Ok(())
    }
}
