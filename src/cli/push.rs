use anyhow::Result;
use strata_runtime::registry::{Event, Session};
use strata_runtime::{Reference, Store};

use super::pull::RegistryFlags;
use crate::progress::{Lines, Report, Stream};

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
        let given = self.destination.as_deref().unwrap_or(&self.image);
        let target = Reference::parse(given)?;
        let opts = self.registry.options(None)?;
        let lines = (!self.quiet).then(|| Lines::new(Stream::Stdout));
        if let Some(lines) = &lines {
            if super::pull::names_no_tag(given) {
                lines.line("Using default tag: latest");
            }
        }
        push(
            store,
            &image,
            &target,
            &opts,
            lines.as_ref().map(|l| l as &dyn Report),
        )?;
        if lines.is_none() {
            // As docker, `-q` prints only the reference pushed.
            println!("{target}");
        }
        Ok(())
    }
}

/// Push `image` as `target`, printing on `lines` (none: silently) what docker's daemon
/// reports: the repository, each layer's status, and `<tag>: digest: … size: …`.
pub fn push(
    store: &Store,
    image: &strata_runtime::store::Image,
    target: &Reference,
    opts: &strata_runtime::registry::RegistryOptions,
    lines: Option<&dyn Report>,
) -> Result<strata_runtime::Digest> {
    if let Some(lines) = lines {
        lines.line(&format!(
            "The push refers to repository [{}]",
            target.repository()
        ));
    }
    let session = Session::open(target.domain(), opts)?;
    let report = |event: Event| {
        if let Some(lines) = lines {
            lines.event(&event);
        }
    };
    let digest = session.push(store, image, target, &report)?;
    if let Some(lines) = lines {
        // As docker: `<tag>: digest: … size: <manifest bytes>`; a push by digest names no tag.
        let size = image.manifest_descriptor.size;
        lines.line(&match target.digest() {
            Some(_) => format!("digest: {digest} size: {size}"),
            None => format!("{}: digest: {digest} size: {size}", target.manifest_name()),
        })
    }
    Ok(digest)
}
