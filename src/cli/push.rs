use anyhow::Result;
use strata_runtime::registry::Session;
use strata_runtime::{Reference, Store};

use super::pull::RegistryFlags;
use crate::progress::Bars;

#[derive(clap::Args)]
pub struct Args {
    /// Suppress verbose output
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    registry: RegistryFlags,
    /// NAME[:TAG]: the local image, pushed under the same name
    image: String,
    /// Push under this name instead (podman's DESTINATION)
    destination: Option<String>,
}

impl Args {
    pub fn run(self, store: &Store) -> Result<()> {
        let image = store.resolve(&self.image)?;
        let target = Reference::parse(self.destination.as_deref().unwrap_or(&self.image))?;
        let opts = self.registry.options(None)?;
        let session = Session::open(target.domain(), &opts)?;
        let bars = Bars::new(self.quiet);
        let progress = bars
            .as_ref()
            .map(|b| b as &dyn strata_runtime::progress::Progress);
        let digest = session.push(store, &image, &target, progress)?;
        if !self.quiet {
            // As docker: `<tag>: digest: … size: …`; a push by digest names no tag.
            let size = image.manifest_descriptor.size;
            match target.digest() {
                Some(_) => println!("digest: {digest} size: {size}"),
                None => println!("{}: digest: {digest} size: {size}", target.manifest_name()),
            }
        }
        Ok(())
    }
}
