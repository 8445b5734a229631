use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use strata_runtime::backend::{Backends, Kind, Stdio};
use strata_runtime::container::{parse_ulimit, Bind, Containers, Network, RunOptions};
use strata_runtime::store::Image;
use strata_runtime::wasm::WasmBackend;
use strata_runtime::{ErrorKind, Store};

/// The two backends, for containers of `store`.
pub fn backends(store: &Store) -> Result<(strata_native::NativeBackend, WasmBackend)> {
    Ok((
        strata_native::NativeBackend {
            state: store.path().to_path_buf(),
        },
        WasmBackend {
            cache: store.cache_path(strata_runtime::wasm::CACHE)?,
        },
    ))
}

#[derive(clap::Args)]
pub struct Args {
    /// Automatically remove the container when it exits
    #[arg(long)]
    rm: bool,
    /// Assign a name to the container
    #[arg(long)]
    name: Option<String>,
    /// Set environment variables
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file", value_name = "FILE")]
    env_files: Vec<std::path::PathBuf>,
    /// Working directory inside the container
    #[arg(short, long)]
    workdir: Option<String>,
    /// Bind mount a host directory: HOST:CONTAINER[:ro]
    #[arg(short, long = "volume", value_name = "HOST:CONTAINER[:ro]")]
    volumes: Vec<String>,
    /// Mount a fresh tmpfs at this directory
    #[arg(long = "tmpfs", value_name = "DIR")]
    tmpfs: Vec<String>,
    /// Keep STDIN open
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a pseudo-TTY (native containers)
    #[arg(short, long)]
    tty: bool,
    /// Memory limit (e.g. 64m, 1g)
    #[arg(short, long)]
    memory: Option<String>,
    /// Number of CPUs (native)
    #[arg(long)]
    cpus: Option<String>,
    /// Tune container pids limit, -1 for unlimited (native)
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pids_limit: Option<i64>,
    /// Ulimit options, e.g. nofile=1024:2048 (native)
    #[arg(long = "ulimit", value_name = "NAME=SOFT[:HARD]")]
    ulimits: Vec<String>,
    /// Network: none (the default until bridge networking exists) or host (native)
    #[arg(long, default_value = "none")]
    network: String,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    entrypoint: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short, long)]
    user: Option<String>,
    /// Backend: wasm or native (default: chosen from the image)
    #[arg(long)]
    runtime: Option<String>,
    /// Pull the image before running: missing, always or never
    #[arg(long, default_value = "missing", value_parser = ["missing", "always", "never"])]
    pull: String,
    /// Platform to pull (e.g. wasi/wasm)
    #[arg(long)]
    platform: Option<String>,
    #[command(flatten)]
    registry: super::pull::RegistryFlags,
    image: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

impl Args {
    /// Exits with the container's status, or docker's 125/126/127 when it cannot run.
    pub fn run(self, store: &Store) -> ExitCode {
        match self.execute(store) {
            Ok(code) => ExitCode::from(code as u8),
            Err(err) => {
                let code = match err.downcast_ref::<strata_runtime::Error>() {
                    Some(strata_runtime::Error::ProgramNotFound(_)) => 127,
                    Some(strata_runtime::Error::NotExecutable(_)) => 126,
                    _ => 125,
                };
                let chain: Vec<String> = err.chain().map(|c| c.to_string()).collect();
                eprintln!("Error: {}", crate::dedup_chain(&chain));
                ExitCode::from(code)
            }
        }
    }

    /// The image, pulled first when `--pull` says so (docker's `missing` by default).
    fn image(&self, store: &Store) -> Result<Image> {
        let local = store.resolve(&self.image);
        let wanted = |e: &strata_runtime::Error| e.kind() == ErrorKind::NotFound;
        match (self.pull.as_str(), local) {
            ("never", Err(e)) if wanted(&e) => {
                Err(anyhow!("Unable to find image '{}' locally", self.image))
            }
            ("never", r) | ("missing", r @ Ok(_)) => Ok(r?),
            (mode, r) => {
                if let Err(e) = &r {
                    if !wanted(e) {
                        return Err(anyhow!("{e}"));
                    }
                }
                if mode == "missing" {
                    eprintln!("Unable to find image '{}' locally", self.image);
                }
                let reference = strata_runtime::Reference::parse(&self.image)?;
                let opts = self.registry.options(self.platform.as_deref())?;
                super::pull::pull(store, &reference, &opts, false)
                    .map_err(|e| anyhow!("pull {}: {e:#}", self.image))
            }
        }
    }

    fn execute(self, store: &Store) -> Result<i32> {
        let image = self.image(store)?;
        let mut env = Vec::new();
        for file in &self.env_files {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("read env file {}", file.display()))?;
            env.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(String::from),
            );
        }
        env.extend(self.env.iter().cloned());
        let opts = RunOptions {
            name: self.name.clone(),
            entrypoint: self.entrypoint.clone(),
            args: self.args.clone(),
            env,
            workdir: self.workdir.clone(),
            user: self.user.clone(),
            binds: self
                .volumes
                .iter()
                .map(|v| Bind::parse(v))
                .collect::<strata_runtime::Result<_>>()?,
            tmpfs: self.tmpfs.clone(),
            memory: self.memory.as_deref().map(parse_bytes).transpose()?,
            cpus: self.cpus.as_deref().map(parse_cpus).transpose()?,
            pids_limit: self.pids_limit,
            ulimits: self
                .ulimits
                .iter()
                .map(|u| parse_ulimit(u))
                .collect::<strata_runtime::Result<_>>()?,
            network: Network::parse(&self.network)?,
            tty: self.tty,
            stdin: self.interactive,
        };
        let containers = Containers::open(store)?;
        let _writer = store.writer_lock()?;
        let forced = self.runtime.as_deref().map(Kind::parse).transpose()?;
        let (mut container, spec) =
            containers.create_for(&image, &self.image, &opts, self.rm, forced)?;
        let (native, wasm) = backends(store)?;
        let backends = Backends {
            native: &native,
            wasm: &wasm,
        };
        let stdio = Stdio {
            stdin: self.interactive,
            ..Stdio::default()
        };
        let outcome = containers.run(&mut container, &spec, &backends, stdio);
        let exit = outcome?;
        if let Some(msg) = &exit.message {
            eprintln!("Error: {msg}");
        }
        Ok(exit.code)
    }
}

/// `--cpus 1.5`: a positive number of CPUs.
fn parse_cpus(s: &str) -> Result<f64> {
    match s.parse::<f64>() {
        Ok(n) if n > 0.0 && n.is_finite() => Ok(n),
        _ => Err(anyhow!("invalid --cpus {s:?}: expected a positive number")),
    }
}

/// `64m`, `1g`, `512k`, `1024` (bytes), as docker parses `--memory`.
pub fn parse_bytes(s: &str) -> Result<u64> {
    let s = s.trim().to_ascii_lowercase();
    let (num, mult) = match s.trim_end_matches('b').chars().last() {
        Some('k') => (&s[..s.trim_end_matches('b').len() - 1], 1u64 << 10),
        Some('m') => (&s[..s.trim_end_matches('b').len() - 1], 1 << 20),
        Some('g') => (&s[..s.trim_end_matches('b').len() - 1], 1 << 30),
        _ => (s.trim_end_matches('b'), 1),
    };
    let n: u64 = num.parse().map_err(|_| {
        anyhow!("invalid size {s:?}: expected a number with an optional k, m or g suffix")
    })?;
    Ok(n * mult)
}
