use anyhow::{bail, Result};
use strata_runtime::container::Containers;
use strata_runtime::{Reference, Store};

#[derive(clap::Args)]
pub struct Args {
    /// Commit message
    #[arg(short, long)]
    message: Option<String>,
    /// Author (e.g. "John Hannibal Smith <hannibal@a-team.com>")
    #[arg(short, long)]
    author: Option<String>,
    /// Apply Dockerfile instruction to the created image
    #[arg(short = 'c', long = "change", value_name = "INSTRUCTION")]
    changes: Vec<String>,
    container: String,
    /// REPOSITORY[:TAG]
    reference: Option<String>,
}

impl Args {
    /// A new image: the container's image plus one layer made of its changes.
    pub fn run(self, store: &Store) -> Result<()> {
        let reference = self
            .reference
            .as_deref()
            .map(Reference::parse)
            .transpose()?;
        if reference.as_ref().is_some_and(|r| r.digest().is_some()) {
            bail!("refusing to create a tag with a digest reference");
        }
        let containers = Containers::open(store)?;
        let c = containers.get(&self.container)?;
        let apply =
            |config: &mut strata_runtime::image::ImageConfig| -> strata_runtime::Result<()> {
                strata_builder::engine::config::apply_changes(config, &self.changes)
                    .map_err(|e| strata_runtime::Error::InvalidArgument(e.to_string()))
            };
        let manifest =
            containers.commit(&c, self.message.as_deref(), self.author.as_deref(), apply)?;
        store.add_image(reference.as_ref(), &manifest)?;
        println!("{}", store.manifest(&manifest)?.config.digest);
        Ok(())
    }
}
