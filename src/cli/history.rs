use anyhow::{bail, Result};
use strata_runtime::Store;

use crate::format::{ago, ellipsis, human_size, parse_time, table};

#[derive(clap::Args)]
pub struct Args {
    /// Print sizes and dates in human readable format
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set)]
    human: bool,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Only show image IDs
    #[arg(short, long)]
    quiet: bool,
    image: String,
}

impl Args {
    pub fn run(self, store: &Store) -> Result<()> {
        let image = store.resolve(&self.image)?;
        let entries = entries(store, &image)?;
        let id = if self.no_trunc {
            image.id().to_string()
        } else {
            image.id().short().to_string()
        };
        let mut rows = Vec::new();
        for (i, (created, created_by, size, comment)) in entries.iter().rev().enumerate() {
            let row_id = if i == 0 {
                id.clone()
            } else {
                "<missing>".to_string()
            };
            if self.quiet {
                println!("{row_id}");
                continue;
            }
            let created = if self.human {
                ago(parse_time(created.as_deref()))
            } else {
                created.clone().unwrap_or_default()
            };
            let created_by = created_by.replace('\t', " ");
            let created_by = if self.no_trunc {
                created_by
            } else {
                ellipsis(&created_by, 45)
            };
            let size = size.unwrap_or(0);
            let size = if self.human {
                human_size(size)
            } else {
                size.to_string()
            };
            rows.push(vec![row_id, created, created_by, size, comment.clone()]);
        }
        if !self.quiet {
            print!(
                "{}",
                table(
                    &["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
                    &rows
                )
            );
        }
        Ok(())
    }
}

/// An image's history, bottom first: (created, created by, layer size, comment) per entry,
/// each non-empty one owning the next layer (one row per layer for an image without
/// history, as docker shows it).
#[allow(clippy::type_complexity)]
pub(crate) fn entries(
    store: &Store,
    image: &strata_runtime::store::Image,
) -> Result<Vec<(Option<String>, String, Option<u64>, String)>> {
    let config = &image.config;
    let diff_ids = &config.rootfs.diff_ids;
    // Each non-empty history entry owns the next layer, bottom up. An image without
    // history gets one row per layer, as docker shows it.
    let entries: Vec<(Option<String>, String, Option<u64>, String)> = if config.history.is_empty() {
        diff_ids
            .iter()
            .map(|d| {
                (
                    config.created.clone(),
                    String::new(),
                    store.layer_size(d),
                    String::new(),
                )
            })
            .collect()
    } else {
        let mut layers = diff_ids.iter();
        let mut rows = Vec::new();
        for h in &config.history {
            let size = if h.empty_layer {
                Some(0)
            } else {
                layers.next().map(|d| store.layer_size(d).unwrap_or(0))
            };
            rows.push((
                h.created.clone(),
                h.created_by.clone().unwrap_or_default(),
                size,
                h.comment.clone().unwrap_or_default(),
            ));
        }
        if layers.next().is_some() {
            bail!("image {}: history has fewer layers than rootfs", image.id());
        }
        rows
    };
    Ok(entries)
}
