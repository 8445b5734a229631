use anyhow::Result;
use strata_runtime::container::{Containers, Status};
use strata_runtime::Store;

use crate::format::{ago, ellipsis, human_duration, parse_time, table};

#[derive(clap::Args)]
pub struct Args {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    all: bool,
    /// Only display container IDs
    #[arg(short, long)]
    quiet: bool,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
}

impl Args {
    pub fn run(self, store: &Store) -> Result<()> {
        let records = Containers::open(store)?;
        let containers = records.list()?;
        let shown: Vec<_> = containers
            .into_iter()
            .filter(|c| self.all || c.running())
            .collect();
        if self.quiet {
            for c in &shown {
                println!("{}", if self.no_trunc { &c.id } else { c.short_id() });
            }
            return Ok(());
        }
        let rows: Vec<Vec<String>> = shown
            .iter()
            .map(|c| {
                let spec = records.spec(c).ok();
                let command = spec
                    .and_then(|s| s.process().as_ref().and_then(|p| p.args().clone()))
                    .unwrap_or_default()
                    .join(" ");
                let command = format!(
                    "\"{}\"",
                    if self.no_trunc {
                        command
                    } else {
                        ellipsis(&command, 20)
                    }
                );
                let status = match c.status {
                    Status::Created => "Created".to_string(),
                    Status::Running => {
                        let since = parse_time(c.started_at.as_deref())
                            .map(|t| (chrono::Utc::now() - t).num_seconds())
                            .unwrap_or(0);
                        format!("Up {}", human_duration(since))
                    }
                    Status::Restarting => format!(
                        "Restarting ({}) {}",
                        c.exit_code.unwrap_or(0),
                        ago(parse_time(c.finished_at.as_deref()))
                    ),
                    Status::Exited => format!(
                        "Exited ({}) {}",
                        c.exit_code.unwrap_or(0),
                        ago(parse_time(c.finished_at.as_deref()))
                    ),
                };
                vec![
                    if self.no_trunc {
                        c.id.clone()
                    } else {
                        c.short_id().to_string()
                    },
                    c.image.clone(),
                    command,
                    ago(parse_time(Some(&c.created))),
                    status,
                    String::new(),
                    c.name.clone(),
                ]
            })
            .collect();
        print!(
            "{}",
            table(
                &[
                    "CONTAINER ID",
                    "IMAGE",
                    "COMMAND",
                    "CREATED",
                    "STATUS",
                    "PORTS",
                    "NAMES"
                ],
                &rows
            )
        );
        Ok(())
    }
}
