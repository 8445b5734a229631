use anyhow::Result;
use serde_json::json;
use strata_runtime::{Reference, Store};

use crate::format::{
    ago, check_template, human_size, parse_time, table, table_format, table_template, template,
};

#[derive(clap::Args)]
pub struct Args {
    /// Only show image IDs
    #[arg(short, long)]
    quiet: bool,
    /// Show digests
    #[arg(long)]
    digests: bool,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Format output: "table", "json", a Go template like '{{.Repository}}:{{.Tag}}', or
    /// 'table TEMPLATE' for a table with a header row, as '{{.Repository}}\t{{.Tag}}'
    #[arg(long)]
    format: Option<String>,
    /// Only images of this repository (and tag)
    reference: Option<String>,
}

/// docker's column titles for `--format 'table …'` (the header of its image context).
const HEADERS: [(&str, &str); 11] = [
    ("Containers", "CONTAINERS"),
    ("CreatedAt", "CREATED AT"),
    ("CreatedSince", "CREATED"),
    ("Digest", "DIGEST"),
    ("ID", "IMAGE ID"),
    ("Repository", "REPOSITORY"),
    ("SharedSize", "SHARED SIZE"),
    ("Size", "SIZE"),
    ("Tag", "TAG"),
    ("UniqueSize", "UNIQUE SIZE"),
    ("VirtualSize", "SIZE"),
];

/// One row of `images`: an image under one of its names.
struct Row {
    repository: String,
    tag: String,
    digest: String,
    id: String,
    created: Option<chrono::DateTime<chrono::Utc>>,
    size: u64,
}

impl Args {
    pub fn run(self, store: &Store) -> Result<()> {
        let filter = self.reference.as_deref().map(parse_filter).transpose()?;
        let mut rows = Vec::new();
        for image in store.images()? {
            let created = parse_time(image.config.created.as_deref());
            let size = super::image_size(store, &image);
            let names: Vec<Option<Reference>> = if image.names.is_empty() {
                vec![None]
            } else {
                image
                    .names
                    .iter()
                    .map(|n| Reference::parse(n).ok())
                    .collect()
            };
            for name in names {
                if let Some((repo, tag)) = &filter {
                    let Some(n) = &name else { continue };
                    if n.repository() != *repo || tag.as_deref().is_some_and(|t| Some(t) != n.tag())
                    {
                        continue;
                    }
                }
                rows.push(Row {
                    repository: name
                        .as_ref()
                        .map_or("<none>".into(), |n| n.familiar_repository()),
                    tag: name
                        .as_ref()
                        .and_then(|n| n.tag())
                        .unwrap_or("<none>")
                        .to_string(),
                    digest: image.digest().to_string(),
                    id: image.id().to_string(),
                    created,
                    size,
                });
            }
        }
        rows.sort_by(|a, b| {
            b.created
                .cmp(&a.created)
                .then(a.repository.cmp(&b.repository))
                .then(a.tag.cmp(&b.tag))
        });

        let short = |id: &str| {
            if self.no_trunc {
                id.to_string()
            } else {
                id.trim_start_matches("sha256:")[..12].to_string()
            }
        };
        if self.quiet {
            for r in &rows {
                println!("{}", short(&r.id));
            }
            return Ok(());
        }
        // `table` alone is the default table.
        match self
            .format
            .as_deref()
            .filter(|f| table_format(f) != Some(""))
        {
            None => {
                let mut headers = vec!["REPOSITORY", "TAG"];
                if self.digests {
                    headers.push("DIGEST");
                }
                headers.extend(["IMAGE ID", "CREATED", "SIZE"]);
                let cells: Vec<Vec<String>> = rows
                    .iter()
                    .map(|r| {
                        let mut c = vec![r.repository.clone(), r.tag.clone()];
                        if self.digests {
                            c.push(r.digest.clone());
                        }
                        c.extend([short(&r.id), ago(r.created), human_size(r.size)]);
                        c
                    })
                    .collect();
                print!("{}", table(&headers, &cells));
            }
            Some(fmt) => {
                let values: Vec<serde_json::Value> = rows
                    .iter()
                    .map(|r| {
                        json!({
                            "Containers": "N/A",
                            "CreatedAt": r.created.map(|t| t.format("%Y-%m-%d %H:%M:%S %z UTC").to_string()).unwrap_or_default(),
                            "CreatedSince": ago(r.created),
                            "Digest": r.digest,
                            "ID": short(&r.id),
                            "Repository": r.repository,
                            "SharedSize": "N/A",
                            "Size": human_size(r.size),
                            "Tag": r.tag,
                            "UniqueSize": "N/A",
                            "VirtualSize": human_size(r.size),
                        })
                    })
                    .collect();
                if let Some(body) = table_format(fmt) {
                    print!("{}", table_template(body, &HEADERS, &values)?);
                } else if fmt == "json" {
                    for value in &values {
                        println!("{value}");
                    }
                } else {
                    // docker trims the spaces around a format, and refuses a bad one with no
                    // images to show too.
                    let fmt = fmt.trim_matches(' ');
                    check_template(fmt)?;
                    for value in &values {
                        println!("{}", template(fmt, value)?);
                    }
                }
            }
        }
        Ok(())
    }
}

/// `busybox` or `busybox:1.36` as a filter: the full repository, and the tag if one is given.
fn parse_filter(s: &str) -> Result<(String, Option<String>)> {
    let r = Reference::parse(s)?;
    let tagged = s.rsplit('/').next().is_some_and(|last| last.contains(':'));
    Ok((
        r.repository(),
        tagged.then(|| r.tag().unwrap_or_default().to_string()),
    ))
}
