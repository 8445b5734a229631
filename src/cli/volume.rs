//! `strata volume …`: docker's volume group over the store's volumes
//! (`strata_runtime::volume`), the `local` driver's directories.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{bail, Result};
use serde_json::{json, Value};
use strata_runtime::volume::{Volume, Volumes};
use strata_runtime::{ErrorKind, Store};

use crate::format::{human_size, print_inspected, print_rows, KeyFilters};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Create a volume
    Create(CreateArgs),
    /// List volumes
    #[command(visible_aliases = ["list"])]
    Ls(LsArgs),
    /// Display detailed information on one or more volumes
    Inspect(InspectArgs),
    /// Remove one or more volumes
    #[command(visible_aliases = ["remove"])]
    Rm(RmArgs),
    /// Remove unused volumes (anonymous ones; with -a, all)
    Prune(PruneArgs),
}

impl Command {
    pub fn run(self, store: &Store) -> Result<ExitCode> {
        let volumes = Volumes::open(store)?;
        match self {
            Command::Create(a) => a.run(&volumes)?,
            Command::Ls(a) => a.run(&volumes)?,
            Command::Inspect(a) => a.run(&volumes)?,
            Command::Rm(a) => return Ok(a.run(&volumes)),
            Command::Prune(a) => a.run(&volumes)?,
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// `KEY=VALUE` labels (`KEY` alone: an empty value), as docker reads `--label`.
fn labels(given: &[String]) -> BTreeMap<String, String> {
    given
        .iter()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or((l, ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[derive(clap::Args)]
pub struct CreateArgs {
    /// Specify volume driver name (only local)
    #[arg(short, long, default_value = "local")]
    driver: String,
    /// Set driver specific options (none are supported)
    #[arg(short, long = "opt", value_name = "KEY=VALUE")]
    opts: Vec<String>,
    /// Set metadata for a volume
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// The volume's name (a random one when not given)
    name: Option<String>,
}

impl CreateArgs {
    fn run(self, volumes: &Volumes<'_>) -> Result<()> {
        if self.driver != "local" {
            bail!(
                "volume driver {:?} is not supported: only local",
                self.driver
            );
        }
        if let Some(o) = self.opts.first() {
            bail!("volume option {o:?} is not supported: local volumes here are plain directories");
        }
        let v = volumes.create(self.name.as_deref(), &labels(&self.labels))?;
        println!("{}", v.name);
        Ok(())
    }
}

#[derive(clap::Args)]
pub struct LsArgs {
    /// Only display volume names
    #[arg(short, long)]
    quiet: bool,
    /// Provide filter values (e.g. 'dangling=true', 'name=…', 'label=k[=v]', 'driver=local')
    #[arg(short, long = "filter")]
    filters: Vec<String>,
    /// Format output using a Go-style template, e.g. 'table {{.Name}}\t{{.Mountpoint}}'
    #[arg(long)]
    format: Option<String>,
}

impl LsArgs {
    fn run(self, volumes: &Volumes<'_>) -> Result<()> {
        let filters = KeyFilters::parse(&self.filters, &["dangling", "driver", "label", "name"])?;
        let mut rows = Vec::new();
        let counts = volumes.use_counts()?;
        for v in volumes.list()? {
            let users = counts.get(&v.name).copied().unwrap_or(0);
            let pass = filters.matches(|key, value| match key {
                "dangling" => matches!(value, "true" | "1") == (users == 0),
                "driver" => value == "local",
                "name" => v.name.contains(value),
                _ => KeyFilters::label_holds(&v.labels, value),
            });
            if pass {
                rows.push((v, users));
            }
        }
        if self.quiet {
            for (v, _) in &rows {
                println!("{}", v.name);
            }
            return Ok(());
        }
        let values: Vec<Value> = rows
            .iter()
            .map(|(v, users)| {
                json!({
                    "Name": v.name,
                    "Driver": "local",
                    "Scope": "local",
                    "Mountpoint": v.mountpoint,
                    "Labels": v.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
                    "Links": users.to_string(),
                    "Size": human_size(volumes.size(v)),
                    "CreatedAt": v.created,
                })
            })
            .collect();
        let headers = [
            ("Name", "VOLUME NAME"),
            ("Driver", "DRIVER"),
            ("Scope", "SCOPE"),
            ("Mountpoint", "MOUNTPOINT"),
            ("Labels", "LABELS"),
            ("Links", "LINKS"),
            ("Size", "SIZE"),
            ("CreatedAt", "CREATED"),
        ];
        print_rows(
            self.format.as_deref(),
            "table {{.Driver}}\t{{.Name}}",
            &headers,
            &values,
        )?;
        Ok(())
    }
}

#[derive(clap::Args)]
pub struct InspectArgs {
    /// Format output using a Go-style template, e.g. '{{.Mountpoint}}'
    #[arg(short, long)]
    format: Option<String>,
    #[arg(required = true, value_name = "VOLUME")]
    volumes: Vec<String>,
}

impl InspectArgs {
    fn run(self, volumes: &Volumes<'_>) -> Result<()> {
        let documents = self
            .volumes
            .iter()
            .map(|name| volumes.get(name).map(|v| describe(&v)))
            .collect::<strata_runtime::Result<Vec<_>>>()?;
        print_inspected(self.format.as_deref(), documents)
    }
}

/// docker's `volume inspect` shape.
pub(crate) fn describe(v: &Volume) -> Value {
    json!({
        "CreatedAt": v.created,
        "Driver": "local",
        "Labels": if v.labels.is_empty() { Value::Null } else { json!(v.labels) },
        "Mountpoint": v.mountpoint,
        "Name": v.name,
        "Options": Value::Null,
        "Scope": "local",
    })
}

#[derive(clap::Args)]
pub struct RmArgs {
    /// Do not fail on volumes that do not exist
    #[arg(short, long)]
    force: bool,
    #[arg(required = true, value_name = "VOLUME")]
    volumes: Vec<String>,
}

impl RmArgs {
    fn run(self, volumes: &Volumes<'_>) -> ExitCode {
        let mut failed = false;
        for name in &self.volumes {
            match volumes.remove(name) {
                Ok(()) => println!("{name}"),
                Err(e) if self.force && e.kind() == ErrorKind::NotFound => {}
                Err(e) => {
                    eprintln!("Error response from daemon: {e}");
                    failed = true;
                }
            }
        }
        if failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        }
    }
}

#[derive(clap::Args)]
pub struct PruneArgs {
    /// Remove all unused volumes, not just anonymous ones
    #[arg(short, long)]
    all: bool,
    /// Provide filter values (e.g. 'label=k[=v]', 'label!=k[=v]')
    #[arg(long = "filter")]
    filters: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
}

impl PruneArgs {
    fn run(self, volumes: &Volumes<'_>) -> Result<()> {
        let filters = KeyFilters::parse(&self.filters, &["label", "label!"])?;
        let what = if self.all {
            "all local volumes not used by at least one container"
        } else {
            "all anonymous local volumes not used by at least one container"
        };
        if !self.force && !super::confirm(&format!("This will remove {what}.\n"))? {
            return Ok(());
        }
        let (removed, bytes) = volumes.prune(self.all, &|v| {
            filters.matches(|key, value| {
                let has = KeyFilters::label_holds(&v.labels, value);
                if key == "label" {
                    has
                } else {
                    !has
                }
            })
        })?;
        if !removed.is_empty() {
            println!("Deleted Volumes:");
            for name in &removed {
                println!("{name}");
            }
            println!();
        }
        println!("Total reclaimed space: {}", human_size(bytes));
        Ok(())
    }
}
