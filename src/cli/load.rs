use std::io::Read;

use anyhow::{Context, Result};
use strata_runtime::image::Platform;
use strata_runtime::Store;

use crate::progress::Bars;

#[derive(clap::Args)]
pub struct Args {
    /// Read from tar archive file, instead of STDIN
    #[arg(short, long)]
    input: Option<std::path::PathBuf>,
    /// Suppress the load output
    #[arg(short, long)]
    quiet: bool,
    /// Load the image of this platform from a multi-platform archive
    #[arg(long)]
    platform: Option<String>,
}

impl Args {
    pub fn run(self, store: &Store) -> Result<()> {
        let platform = self.platform.as_deref().map(Platform::parse).transpose()?;
        let input: Box<dyn Read> = match &self.input {
            Some(p) => {
                Box::new(std::fs::File::open(p).with_context(|| format!("open {}", p.display()))?)
            }
            None => Box::new(std::io::stdin().lock()),
        };
        let bars = Bars::new(self.quiet);
        let progress = bars
            .as_ref()
            .map(|b| b as &dyn strata_runtime::progress::Progress);
        let loaded = strata_runtime::archive::load(store, input, platform.as_ref(), progress)
            .context("load")?;
        if !self.quiet {
            for (id, names) in &loaded.images {
                if names.is_empty() {
                    println!("Loaded image ID: {id}");
                }
                for n in names {
                    println!("Loaded image: {}", n.familiar());
                }
            }
        }
        Ok(())
    }
}
