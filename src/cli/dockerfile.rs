use anyhow::{bail, Context, Result};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Print a Dockerfile's syntax tree (before expansion and semantic checks)
    Parse {
        /// Print JSON (the only format for now)
        #[arg(long)]
        json: bool,
        /// The Dockerfile (- for STDIN)
        file: String,
    },
}

impl Command {
    pub fn run(self) -> Result<()> {
        match self {
            Command::Parse { json, file } => {
                if !json {
                    bail!("only --json output is supported");
                }
                let (name, text) = if file == "-" {
                    let mut text = String::new();
                    std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                        .context("read STDIN")?;
                    ("Dockerfile".to_string(), text)
                } else {
                    let text =
                        std::fs::read_to_string(&file).with_context(|| format!("read {file}"))?;
                    let name = std::path::Path::new(&file)
                        .file_name()
                        .map_or(file.clone(), |n| n.to_string_lossy().into_owned());
                    (name, text)
                };
                let parsed = strata_builder::dockerfile::parse(&name, &text)?;
                println!(
                    "{}",
                    serde_json::to_string_pretty(&strata_builder::dockerfile::ast_json(&parsed))?
                );
                Ok(())
            }
        }
    }
}
