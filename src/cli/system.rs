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
    /// Serve the Docker Engine API on a unix socket (for DOCKER_HOST=unix://…)
    Service(ServiceArgs),
}

/// `system service`: the Engine API, in the foreground, as podman's.
#[derive(clap::Args)]
pub struct ServiceArgs {
    /// Seconds without a request before the service exits (0: never)
    #[arg(short, long, default_value_t = 0)]
    time: u64,
    /// Where to listen: unix:///path/to.sock (default /run/strata/strata.sock for root,
    /// $XDG_RUNTIME_DIR/strata/strata.sock otherwise)
    uri: Option<String>,
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
    /// Prune anonymous volumes
    #[arg(long)]
    volumes: bool,
}

impl Command {
    pub fn run(self, store: &Store) -> Result<()> {
        match self {
            Command::Service(ServiceArgs { time, uri }) => {
                let socket = match uri.as_deref() {
                    None => crate::api::default_socket(store.path()),
                    Some(u) => match u.strip_prefix("unix://") {
                        Some(path) if !path.is_empty() => std::path::PathBuf::from(path),
                        _ => anyhow::bail!(
                            "unsupported address {u:?}: only unix:///path sockets are served (no TCP unless asked, and TCP is not offered)"
                        ),
                    },
                };
                crate::api::serve(
                    store.path(),
                    &socket,
                    Some(std::time::Duration::from_secs(time)),
                )?;
            }
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
                    volumes_row(store)?,
                    build_cache_row(store)?,
                ];
                print!(
                    "{}",
                    table(&["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"], &rows)
                );
            }
            Command::Prune(PruneArgs {
                all,
                force,
                volumes,
            }) => {
                let what = if all {
                    "all images, all content no image refers to, all build cache, and compiled Wasm code"
                } else {
                    "all content (blobs and unpacked layers) no image refers to"
                };
                let volumes_line = if volumes {
                    "\n  - all anonymous volumes not used by at least one container"
                } else {
                    ""
                };
                if !force
                    && !super::confirm(&format!("This will remove:\n  - {what}{volumes_line}\n"))?
                {
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
                let mut freed = 0;
                if volumes {
                    let (removed, bytes) =
                        strata_runtime::volume::Volumes::open(store)?.prune(false, &|_| true)?;
                    for name in removed {
                        println!("Deleted Volume: {name}");
                    }
                    freed += bytes;
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
                println!(
                    "\nTotal reclaimed space: {}",
                    human_size(report.bytes + freed)
                );
            }
        }
        Ok(())
    }
}

/// Volumes: ACTIVE those some container mounts, RECLAIMABLE the size of the others.
fn volumes_row(store: &Store) -> Result<Vec<String>> {
    let volumes = strata_runtime::volume::Volumes::open(store)?;
    let (mut total, mut active, mut size, mut unused) = (0, 0, 0, 0);
    let counts = volumes.use_counts()?;
    for v in volumes.list()? {
        let bytes = volumes.size(&v);
        total += 1;
        size += bytes;
        if !counts.contains_key(&v.name) {
            unused += bytes;
        } else {
            active += 1;
        }
    }
    Ok(vec![
        "Local Volumes".into(),
        total.to_string(),
        active.to_string(),
        human_size(size),
        human_size(unused),
    ])
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
