use std::io::{IsTerminal, Write};

use anyhow::{bail, Context, Result};
use strata_runtime::{Reference, Store};

#[derive(clap::Args)]
pub struct Args {
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    output: Option<std::path::PathBuf>,
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<String>,
}

impl Args {
    pub fn run(self, store: &Store) -> Result<()> {
        let selected = select(store, &self.images)?;
        match &self.output {
            Some(path) => {
                // Written beside the target and renamed, so a failed save leaves no half file.
                let dir = path
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(std::path::Path::new("."));
                let tmp = tempfile::NamedTempFile::new_in(dir)
                    .with_context(|| format!("create {}", path.display()))?;
                let file =
                    strata_runtime::archive::save(store, &selected, std::io::BufWriter::new(tmp))?;
                let tmp = file.into_inner().map_err(|e| e.into_error())?;
                tmp.as_file().sync_all()?;
                tmp.persist(path)
                    .with_context(|| format!("write {}", path.display()))?;
            }
            None => {
                if std::io::stdout().is_terminal() {
                    bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
                }
                let out = strata_runtime::archive::save(
                    store,
                    &selected,
                    std::io::BufWriter::new(std::io::stdout().lock()),
                )?;
                out.into_inner().map_err(|e| e.into_error())?.flush()?;
            }
        }
        Ok(())
    }
}

/// The images `names` name, each once, with the names it is saved under: a name saves that
/// name, an ID the image under all its names (`save`, the API's `images/get`).
pub(crate) fn select(
    store: &Store,
    names: &[String],
) -> Result<Vec<(strata_runtime::store::Image, Vec<Reference>)>> {
    let mut selected = Vec::new();
    for name in names {
        let image = store.resolve(name)?;
        // A name saves that name; an ID saves the image under all its names.
        let names: Vec<Reference> = match Reference::parse(name)
            .ok()
            .filter(|r| image.names.contains(&r.to_string()))
        {
            Some(r) => vec![r],
            None => image
                .names
                .iter()
                .filter_map(|n| Reference::parse(n).ok())
                .collect(),
        };
        match selected.iter_mut().find(
            |(i, _): &&mut (strata_runtime::store::Image, Vec<Reference>)| {
                i.digest() == image.digest()
            },
        ) {
            Some((_, existing)) => existing.extend(names),
            None => selected.push((image, names)),
        }
    }
    Ok(selected)
}
