//! `version`: docker's layout. Strata has no daemon, so its `Server:` section describes the
//! engine in this binary, as podman's does.

use anyhow::Result;
use serde_json::{json, Value};

use crate::format::template;

/// The docker API version whose behaviour Strata's commands follow.
pub const API_VERSION: &str = "1.44";
const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(clap::Args)]
pub struct Args {
    /// Format output: "json", or a Go template like '{{.Client.Version}}'
    #[arg(short, long)]
    format: Option<String>,
}

impl Args {
    pub fn run(self) -> Result<()> {
        let built = built();
        let commit = option_env!("STRATA_GIT_COMMIT").unwrap_or("");
        let os_arch = format!("linux/{}", go_arch());
        match self.format.as_deref().map(|f| f.trim_matches(' ')) {
            Some("json") => println!("{}", value(&built, commit)),
            Some(f) => println!("{}", template(f, &value(&built, commit))?),
            None => {
                let mut client = vec![
                    (" Version:", VERSION.to_string()),
                    (" API version:", API_VERSION.to_string()),
                ];
                let mut engine = vec![
                    ("  Version:", VERSION.to_string()),
                    ("  API version:", API_VERSION.to_string()),
                ];
                if !commit.is_empty() {
                    client.push((" Git commit:", commit.to_string()));
                    engine.push(("  Git commit:", commit.to_string()));
                }
                client.extend([
                    (" Built:", built.clone()),
                    (" OS/Arch:", os_arch.clone()),
                    (" Context:", "default".into()),
                ]);
                engine.extend([
                    ("  Built:", built),
                    ("  OS/Arch:", os_arch),
                    ("  Experimental:", "false".into()),
                ]);
                println!("Client:");
                print_lines(&client);
                println!("\nServer: Strata Engine\n Engine:");
                print_lines(&engine);
            }
        }
        Ok(())
    }
}

/// docker's `tabwriter.NewWriter(out, 20, 1, 1, ' ', 0)`: labels padded to 20 columns.
fn print_lines(lines: &[(&str, String)]) {
    let width = lines
        .iter()
        .map(|(l, _)| l.len() + 1)
        .max()
        .unwrap_or(0)
        .max(20);
    for (label, value) in lines {
        println!("{label:<width$}{value}");
    }
}

/// The fields docker's `version --format` templates see.
pub(crate) fn value(built: &str, commit: &str) -> Value {
    json!({
        "Client": {
            "Platform": { "Name": "" },
            "Version": VERSION,
            "APIVersion": API_VERSION,
            "DefaultAPIVersion": API_VERSION,
            "GitCommit": commit,
            "GoVersion": "",
            "Os": "linux",
            "Arch": go_arch(),
            "BuildTime": built,
            "Context": "default",
        },
        "Server": {
            "Platform": { "Name": "Strata Engine" },
            "Components": [{
                "Name": "Engine",
                "Version": VERSION,
                "Details": {
                    "ApiVersion": API_VERSION,
                    "Arch": go_arch(),
                    "BuildTime": built,
                    "Experimental": "false",
                    "GitCommit": commit,
                    "KernelVersion": kernel_version(),
                    "Os": "linux",
                },
            }],
            "Version": VERSION,
            "APIVersion": API_VERSION,
            "GitCommit": commit,
            "Os": "linux",
            "Arch": go_arch(),
            "KernelVersion": kernel_version(),
            "BuildTime": built,
        },
    })
}

/// When this binary was built: its file's modification time (the link), as Go's ANSIC.
pub(crate) fn built() -> String {
    std::env::current_exe()
        .and_then(std::fs::metadata)
        .and_then(|m| m.modified())
        .map(|t| {
            chrono::DateTime::<chrono::Local>::from(t)
                .format("%a %b %e %H:%M:%S %Y")
                .to_string()
        })
        .unwrap_or_default()
}

/// The machine's architecture as Go names it (`GOARCH`).
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

pub fn kernel_version() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}
