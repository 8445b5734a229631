use anyhow::Result;
use serde_json::{json, Value};
use strata_runtime::store::Image;
use strata_runtime::{Reference, Store};

use crate::format::template;

#[derive(clap::Args)]
pub struct Args {
    /// Format output using a Go-style template, e.g. '{{.Id}}' or '{{json .Config}}'
    #[arg(short, long)]
    format: Option<String>,
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<String>,
}

impl Args {
    pub fn run(self, store: &Store) -> Result<()> {
        let mut out = Vec::new();
        for name in &self.images {
            out.push(describe(store, &store.resolve(name)?));
        }
        match &self.format {
            Some(fmt) => {
                for v in &out {
                    println!("{}", template(fmt, v)?);
                }
            }
            None => println!("{}", serde_json::to_string_pretty(&Value::Array(out))?),
        }
        Ok(())
    }
}

/// docker's `image inspect` shape.
pub fn describe(store: &Store, image: &Image) -> Value {
    let refs: Vec<Reference> = image
        .names
        .iter()
        .filter_map(|n| Reference::parse(n).ok())
        .collect();
    let repo_tags: Vec<String> = refs
        .iter()
        .filter(|r| r.tag().is_some())
        .map(|r| r.familiar())
        .collect();
    let mut repo_digests: Vec<String> = refs
        .iter()
        .map(|r| format!("{}@{}", r.familiar_repository(), image.digest()))
        .collect();
    repo_digests.dedup();
    let config = &image.config;
    json!({
        "Id": image.id(),
        "RepoTags": repo_tags,
        "RepoDigests": repo_digests,
        "Parent": "",
        "Comment": config.extra.get("comment").cloned().unwrap_or(json!("")),
        "Created": config.created.clone().unwrap_or_default(),
        "Author": config.author.clone().unwrap_or_default(),
        "Config": config.config.clone().unwrap_or_default(),
        "Architecture": config.architecture,
        "Variant": config.variant,
        "Os": config.os,
        "Size": super::image_size(store, image),
        "RootFS": { "Type": "layers", "Layers": config.rootfs.diff_ids },
        "Descriptor": image.manifest_descriptor,
        "Manifest": { "Layers": image.manifest.layers },
    })
}
