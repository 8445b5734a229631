//! `info`: docker's layout, where it applies to a daemonless engine: the store's
//! containers and images, its root, and the host.

use anyhow::Result;
use serde_json::{json, Value};
use strata_runtime::container::Containers;
use strata_runtime::Store;

use crate::format::{binary_size, template};

#[derive(clap::Args)]
pub struct Args {
    /// Format output: "json", or a Go template like '{{.Containers}}'
    #[arg(short, long)]
    format: Option<String>,
}

impl Args {
    pub fn run(self, store: &Store) -> Result<()> {
        let info = info(store)?;
        match self.format.as_deref().map(|f| f.trim_matches(' ')) {
            Some("json") => println!("{info}"),
            Some(f) => println!("{}", template(f, &info)?),
            None => print!("{}", render(&info)),
        }
        Ok(())
    }
}

/// The fields docker's `info --format` templates see (the parts Strata has).
pub(crate) fn info(store: &Store) -> Result<Value> {
    let containers = Containers::open(store)?.list()?;
    let paused = containers
        .iter()
        .filter(|c| c.status == strata_runtime::container::Status::Paused)
        .count();
    let running = containers.iter().filter(|c| c.running()).count() - paused;
    let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let os_field = |key: &str| {
        os_release
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim().trim_matches('"').to_string())
            .unwrap_or_default()
    };
    let mem_total = host_memory();
    let cgroup2 = rustix::fs::statfs("/sys/fs/cgroup").is_ok_and(|s| s.f_type == 0x6367_7270);
    Ok(json!({
        "Containers": containers.len(),
        "ContainersRunning": running,
        "ContainersPaused": paused,
        "ContainersStopped": containers.len() - running - paused,
        "Images": store.images()?.len(),
        "Driver": "overlay",
        "DriverStatus": [["Backing Filesystem", backing_filesystem(store)]],
        "LoggingDriver": "json-file",
        // Strata writes the cgroup files itself, as docker's cgroupfs driver does.
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": if cgroup2 { "2" } else { "1" },
        "Runtimes": { "native": {}, "wasm": {} },
        "DefaultRuntime": "native",
        "KernelVersion": super::version::kernel_version(),
        "OperatingSystem": os_field("PRETTY_NAME"),
        "OSVersion": os_field("VERSION_ID"),
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "NCPU": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "MemTotal": mem_total,
        "DockerRootDir": store.path(),
        "Name": std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        "ServerVersion": env!("CARGO_PKG_VERSION"),
        "Debug": false,
        "ExperimentalBuild": false,
        "LiveRestoreEnabled": false,
    }))
}

/// docker's `info` text.
fn render(i: &Value) -> String {
    let s = |key: &str| match &i[key] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut out = format!(
        "Client:\n Version:    {}\n Context:    default\n Debug Mode: false\n\nServer:\n",
        s("ServerVersion")
    );
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    line(format!(" Containers: {}", s("Containers")));
    line(format!("  Running: {}", s("ContainersRunning")));
    line(format!("  Paused: {}", s("ContainersPaused")));
    line(format!("  Stopped: {}", s("ContainersStopped")));
    line(format!(" Images: {}", s("Images")));
    line(format!(" Server Version: {}", s("ServerVersion")));
    line(format!(" Storage Driver: {}", s("Driver")));
    for pair in i["DriverStatus"].as_array().into_iter().flatten() {
        line(format!(
            "  {}: {}",
            pair[0].as_str().unwrap_or(""),
            pair[1].as_str().unwrap_or("")
        ));
    }
    line(format!(" Logging Driver: {}", s("LoggingDriver")));
    line(format!(" Cgroup Driver: {}", s("CgroupDriver")));
    line(format!(" Cgroup Version: {}", s("CgroupVersion")));
    let runtimes: Vec<&String> = i["Runtimes"]
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    line(format!(
        " Runtimes: {}",
        runtimes
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    ));
    line(format!(" Default Runtime: {}", s("DefaultRuntime")));
    line(format!(" Kernel Version: {}", s("KernelVersion")));
    line(format!(" Operating System: {}", s("OperatingSystem")));
    line(format!(" OSType: {}", s("OSType")));
    line(format!(" Architecture: {}", s("Architecture")));
    line(format!(" CPUs: {}", s("NCPU")));
    line(format!(
        " Total Memory: {}",
        binary_size(i["MemTotal"].as_u64().unwrap_or(0))
    ));
    line(format!(" Name: {}", s("Name")));
    line(format!(" Docker Root Dir: {}", s("DockerRootDir")));
    line(" Debug Mode: false".into());
    line(" Experimental: false".into());
    line(" Live Restore Enabled: false".into());
    out
}

/// docker's name of the filesystem the store is on (moby's `graphdriver.FsNames`).
fn backing_filesystem(store: &Store) -> &'static str {
    let Ok(st) = rustix::fs::statfs(store.path()) else {
        return "<unknown>";
    };
    match st.f_type as u64 {
        0xEF53 => "extfs",
        0x5846_5342 => "xfs",
        0x9123_683E => "btrfs",
        0x0102_1994 => "tmpfs",
        0x794C_7630 => "overlayfs",
        0x2FC1_2FC1 => "zfs",
        0xF2F5_2010 => "f2fs",
        0x6969 => "nfs",
        0x858_458F6 => "ramfs",
        _ => "<unknown>",
    }
}

/// The host's memory in bytes (`MemTotal` of /proc/meminfo).
pub fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}
