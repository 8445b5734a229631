use anyhow::{bail, Result};
use strata_runtime::{Reference, Store};

#[derive(clap::Args)]
pub struct Args {
    /// Force removal of the image (all its tags, when named by ID)
    #[arg(short, long)]
    force: bool,
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<String>,
}

impl Args {
    pub fn run(self, store: &Store) -> Result<()> {
        let mut deleted = false;
        for arg in &self.images {
            for (what, name) in remove(store, arg, self.force)? {
                println!("{what}: {name}");
                deleted |= what == "Deleted";
            }
        }
        if deleted {
            strata_runtime::gc::prune(store)?;
        }
        Ok(())
    }
}

/// Remove the image `arg` names, as docker's `rmi` (and the API's `DELETE /images`): what
/// was done, as docker reports it (`Untagged`, a name; `Deleted`, the image's ID). Its
/// content goes at the caller's prune.
pub(crate) fn remove(store: &Store, arg: &str, force: bool) -> Result<Vec<(&'static str, String)>> {
    let mut done = Vec::new();
    let containers = strata_runtime::container::Containers::open(store)?.list()?;
    let image = store.resolve(arg)?;
    if let Some(c) = containers.iter().find(|c| c.image_id == *image.id()) {
        if !force {
            bail!(strata_runtime::Error::Conflict(format!(
                "conflict: unable to remove image {arg} (must force) - container {} is using its referenced image {}",
                c.short_id(),
                image.id().short()
            )));
        }
    }
    // Named by a tag: remove that tag. Named by ID: remove every tag (with -f when there
    // are several, as docker asks).
    let by_name = Reference::parse(arg)
        .ok()
        .map(|r| r.to_string())
        .filter(|n| image.names.contains(n));
    let untag: Vec<String> = match by_name {
        Some(n) => vec![n],
        None if image.names.len() > 1 && !force => bail!(strata_runtime::Error::Conflict(format!(
            "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
            image.id().short()
        ))),
        None => image.names.clone(),
    };
    for name in &untag {
        store.remove_tag(name)?;
        let shown = Reference::parse(name)
            .map(|r| r.familiar())
            .unwrap_or_else(|_| name.clone());
        done.push(("Untagged", shown));
    }
    let still_named = store.images()?.iter().any(|i| i.digest() == image.digest());
    if !still_named || (untag.is_empty() && image.names.is_empty()) {
        if image.names.is_empty() {
            store.update_index(|index| {
                index.manifests.retain(|d| d.digest != *image.digest());
                Ok(())
            })?;
        }
        done.push(("Deleted", image.id().to_string()));
    }
    Ok(done)
}
