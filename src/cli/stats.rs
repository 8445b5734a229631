use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{json, Value};
use strata_runtime::backend::Usage;
use strata_runtime::container::{Container, Containers};
use strata_runtime::Store;

use crate::format::{binary_size, human_size, table_format, table_template, template};

/// `stats`: what running containers use: CPU, memory, network and block I/O, processes.
/// Native from the container's cgroup; Wasm from its guests' linear memories and the CPU
/// time of the monitor that runs them.
#[derive(clap::Args)]
pub struct Args {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    all: bool,
    /// Disable streaming stats and only pull the first result
    #[arg(long)]
    no_stream: bool,
    /// Do not truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Format output using a custom template ('table', 'table TEMPLATE', 'json', or a Go template)
    #[arg(long)]
    format: Option<String>,
    /// Containers (default: all running)
    #[arg(value_name = "CONTAINER")]
    containers: Vec<String>,
}

/// docker's default `stats` table.
const DEFAULT_TABLE: &str = "{{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}";

/// docker's column titles (its stats context's header).
const HEADERS: [(&str, &str); 9] = [
    ("BlockIO", "BLOCK I/O"),
    ("CPUPerc", "CPU %"),
    ("Container", "CONTAINER"),
    ("ID", "CONTAINER ID"),
    ("MemPerc", "MEM %"),
    ("MemUsage", "MEM USAGE / LIMIT"),
    ("Name", "NAME"),
    ("NetIO", "NET I/O"),
    ("PIDs", "PIDS"),
];

/// CPU use is the CPU time used over this much wall time.
const SAMPLE: Duration = Duration::from_millis(500);

impl Args {
    pub fn run(self, store: &Store) -> Result<()> {
        let containers = Containers::open(store)?;
        let format = match self.format.as_deref().map(str::trim) {
            None | Some("") | Some("table") => format!("table {DEFAULT_TABLE}"),
            Some("json") => "{{json .}}".to_string(),
            Some(f) => f.to_string(),
        };
        crate::format::check_template(table_format(&format).unwrap_or(&format))?;
        let host_memory = super::info::host_memory();
        loop {
            let shown = self.shown(&containers)?;
            // Two readings: CPU % is the CPU time between them over the time between them.
            let first: Vec<Option<Usage>> =
                shown.iter().map(|(c, _)| usage(&containers, c)).collect();
            let began = Instant::now();
            std::thread::sleep(SAMPLE);
            let rows: Vec<Value> = shown
                .iter()
                .zip(first)
                .map(|((c, key), before)| {
                    let now = usage(&containers, c);
                    self.row(
                        c,
                        key,
                        before.as_ref(),
                        now.as_ref(),
                        began.elapsed(),
                        host_memory,
                    )
                })
                .collect();
            let text = match table_format(&format) {
                Some(body) => table_template(body, &HEADERS, &rows)?,
                None => rows
                    .iter()
                    .map(|r| template(&format, r).map(|line| line + "\n"))
                    .collect::<Result<String>>()?,
            };
            if self.no_stream {
                print!("{text}");
                return Ok(());
            }
            // As docker's live view: the screen cleared, then the table.
            print!("\x1b[2J\x1b[H{text}");
            use std::io::Write;
            std::io::stdout().flush()?;
            std::thread::sleep(Duration::from_secs(1).saturating_sub(SAMPLE));
        }
    }

    /// The containers to show, each with the name the user gave (or its name).
    fn shown(&self, containers: &Containers<'_>) -> Result<Vec<(Container, String)>> {
        if self.containers.is_empty() {
            return Ok(containers
                .list()?
                .into_iter()
                .filter(|c| self.all || c.running())
                .map(|c| {
                    let key = c.short_id().to_string();
                    (c, key)
                })
                .collect());
        }
        self.containers
            .iter()
            .map(|key| Ok((containers.get(key)?, key.clone())))
            .collect()
    }

    /// The fields docker's `stats` templates see, for one container.
    fn row(
        &self,
        c: &Container,
        key: &str,
        before: Option<&Usage>,
        now: Option<&Usage>,
        elapsed: Duration,
        host_memory: u64,
    ) -> Value {
        let id = if self.no_trunc { &c.id } else { c.short_id() };
        let Some(now) = now else {
            // Not running: docker's zeros.
            return json!({
                "BlockIO": "0B / 0B", "CPUPerc": "0.00%", "Container": key, "ID": id,
                "MemPerc": "0.00%", "MemUsage": "0B / 0B", "Name": c.name,
                "NetIO": "0B / 0B", "PIDs": "0",
            });
        };
        let cpu = match before {
            Some(b) if elapsed > Duration::ZERO => {
                now.cpu_ns.saturating_sub(b.cpu_ns) as f64 / elapsed.as_nanos() as f64 * 100.0
            }
            _ => 0.0,
        };
        let limit = now
            .memory_limit
            .unwrap_or(host_memory)
            .min(host_memory.max(1));
        let memory_percent = now.memory as f64 / limit.max(1) as f64 * 100.0;
        json!({
            "BlockIO": format!("{} / {}", human_size(now.block_read), human_size(now.block_write)),
            "CPUPerc": format!("{cpu:.2}%"),
            "Container": key,
            "ID": id,
            "MemPerc": format!("{memory_percent:.2}%"),
            "MemUsage": format!("{} / {}", binary_size(now.memory), binary_size(limit)),
            "Name": c.name,
            "NetIO": format!("{} / {}", human_size(now.net_rx), human_size(now.net_tx)),
            "PIDs": now.pids.len().to_string(),
        })
    }
}

/// A running container's usage; none for one that does not run (or cannot be asked).
fn usage(containers: &Containers<'_>, c: &Container) -> Option<Usage> {
    containers.usage(c).ok().flatten()
}
