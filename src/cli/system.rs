use std::collections::HashSet;

use anyhow::Result;
use strata_runtime::container::Containers;
use strata_runtime::Store;

use crate::format::{human_size, table};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Show store disk usage
    Df,
    /// Remove unused data: content no image refers to (with -a, every image too)
    Prune(PruneArgs),
}

/// `system prune` (and `image prune`, which is the same here).
#[derive(clap::Args)]
pub struct PruneArgs {
    /// Remove all images, not only unreferenced content
    #[arg(short, long)]
    all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
}

impl Command {
    pub fn run(self, store: &Store) -> Result<()> {
        match self {
            Command::Df => {
                let du = strata_runtime::gc::disk_usage(store)?;
                let total = du.used + du.reclaimable;
                let percent = if total == 0 {
                    0
                } else {
                    du.reclaimable * 100 / total
                };
                let containers = Containers::open(store)?;
                let all = containers.list()?;
                let running = all.iter().filter(|c| c.running()).count();
                let used_images: HashSet<_> = all.iter().map(|c| c.image_id.clone()).collect();
                let sizes: Vec<u64> = all.iter().map(|c| containers.upper_size(c)).collect();
                let stopped: u64 = all
                    .iter()
                    .zip(&sizes)
                    .filter(|(c, _)| !c.running())
                    .map(|(_, s)| s)
                    .sum();
                let rows = vec![
                    vec![
                        "Images".into(),
                        du.images.to_string(),
                        used_images.len().to_string(),
                        human_size(total),
                        format!("{} ({percent}%)", human_size(du.reclaimable)),
                    ],
                    vec![
                        "Containers".into(),
                        all.len().to_string(),
                        running.to_string(),
                        human_size(sizes.iter().sum()),
                        human_size(stopped),
                    ],
                    vec![
                        "Local Volumes".into(),
                        "0".into(),
                        "0".into(),
                        "0B".into(),
                        "0B".into(),
                    ],
                    build_cache_row(store)?,
                ];
                print!(
                    "{}",
                    table(&["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"], &rows)
                );
            }
            Command::Prune(PruneArgs { all, force }) => {
                let what = if all {
                    "all images, all content no image refers to, all build cache, and compiled Wasm code"
                } else {
                    "all content (blobs and unpacked layers) no image refers to"
                };
                if !force && !super::confirm(&format!("This will remove:\n  - {what}\n"))? {
                    return Ok(());
                }
                if all {
                    for image in store.images()? {
                        for name in &image.names {
                            store.remove_tag(name)?;
                        }
                        println!("Deleted: {}", image.id());
                    }
                    store.update_index(|index| {
                        index.manifests.clear();
                        Ok(())
                    })?;
                }
                let report = strata_runtime::gc::prune(store)?;
                let records = strata_builder::engine::prune_cache(store, all)?;
                let compiled = strata_runtime::wasm::prune_cache(
                    &store.cache_dir(strata_runtime::wasm::CACHE)?,
                    all,
                )?;
                println!("Deleted blobs: {}", report.blobs);
                println!("Deleted layers: {}", report.layers);
                println!("Deleted build cache records: {records}");
                if all || compiled > 0 {
                    println!("Deleted compiled Wasm code: {compiled}");
                }
                println!("\nTotal reclaimed space: {}", human_size(report.bytes));
            }
        }
        Ok(())
    }
}

/// Build cache: its records; SIZE the layers they name, RECLAIMABLE those no image uses.
fn build_cache_row(store: &Store) -> Result<Vec<String>> {
    let records = strata_builder::engine::cache_usage(store)?;
    let used: HashSet<_> = store
        .images()?
        .into_iter()
        .flat_map(|i| i.config.rootfs.diff_ids)
        .collect();
    let layers: HashSet<_> = records.iter().flatten().cloned().collect();
    let size = |only_unused: bool| -> u64 {
        layers
            .iter()
            .filter(|d| !only_unused || !used.contains(*d))
            .filter_map(|d| store.layer_size(d))
            .sum()
    };
    Ok(vec![
        "Build Cache".into(),
        records.len().to_string(),
        "0".into(),
        human_size(size(false)),
        human_size(size(true)),
    ])
}
