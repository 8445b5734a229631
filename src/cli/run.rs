use std::io::Read;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use strata_runtime::container::{Bind, Containers, RunOptions, Runtime, Status};
use strata_runtime::image::MEDIA_WASM_CONFIG;
use strata_runtime::store::Image;
use strata_runtime::wasm::{filesystem, GuestSpec, Outcome, WasmRuntime, WASM_MAGIC};
use strata_runtime::{ErrorKind, Store};

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
    /// Keep STDIN open
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a pseudo-TTY (native containers)
    #[arg(short, long)]
    tty: bool,
    /// Memory limit (e.g. 64m, 1g)
    #[arg(short, long)]
    memory: Option<String>,
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
            memory: self.memory.as_deref().map(parse_bytes).transpose()?,
            tty: self.tty,
            stdin: self.interactive,
        };
        let containers = Containers::open(store)?;
        let _writer = store.writer_lock()?;
        let provisional = self
            .runtime
            .as_deref()
            .map(Runtime::parse)
            .transpose()?
            .unwrap_or(Runtime::Wasm);
        let mut container =
            containers.create(&image, &self.image, provisional, self.name.as_deref())?;
        let prepared = (|| -> Result<_> {
            let spec = strata_runtime::container::make_spec(&image, &opts, container.short_id())?;
            containers.save_spec(&container, &spec)?;
            if self.runtime.is_none() {
                container.runtime = detect_runtime(&containers, &container, &image, &spec)?;
            }
            if container.runtime == Runtime::Native {
                bail!("the native backend is not available yet; this image needs it (use --runtime wasm for a Wasm image)");
            }
            Ok(spec)
        })();
        let spec = match prepared {
            Ok(spec) => spec,
            Err(e) => {
                containers.remove(&container)?;
                return Err(e);
            }
        };
        let outcome = run_wasm(store, &containers, &mut container, &spec, &opts);
        let code = match &outcome {
            Ok(o) => o.exit_code(),
            Err(_) => 125,
        };
        container.status = Status::Exited;
        container.exit_code = Some(code);
        container.finished_at = Some(strata_runtime::container::now());
        container.oom_killed = matches!(outcome, Ok(Outcome::OutOfMemory));
        container.error = outcome.as_ref().err().map(|e| e.to_string());
        containers.save(&container)?;
        if self.rm {
            containers.remove(&container)?;
        }
        match outcome? {
            Outcome::Trapped(msg) => eprintln!("Error: {msg}"),
            Outcome::OutOfMemory => eprintln!(
                "Error: container {} ran out of memory (limit {})",
                container.short_id(),
                self.memory.as_deref().unwrap_or("")
            ),
            _ => {}
        }
        Ok(code)
    }
}

fn run_wasm(
    store: &Store,
    containers: &Containers<'_>,
    container: &mut strata_runtime::container::Container,
    spec: &strata_runtime::oci_spec::runtime::Spec,
    opts: &RunOptions,
) -> strata_runtime::Result<Outcome> {
    let wasm = WasmRuntime::new(&store.path().join("cache/wasm"))?;
    let interrupt = wasm.interrupt_handle();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .map_err(|e| strata_runtime::Error::io("install signal handlers", e))?;
    let handle = signals.handle();
    let (finished, guest_done) = std::sync::mpsc::channel::<()>();
    let watcher = std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            interrupt.interrupt(sig);
            // A guest blocked in a host call (reading stdin) never reaches an epoch check:
            // if it has not stopped after a grace period, leave without it.
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                guest_done.recv_timeout(std::time::Duration::from_secs(3))
            {
                std::process::exit(128 + sig);
            }
        }
    });
    let process = spec.process().as_ref().expect("make_spec sets a process");
    let guest = GuestSpec {
        args: process.args().clone().unwrap_or_default(),
        env: process
            .env()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|e| match e.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (e, String::new()),
            })
            .collect(),
        cwd: process.cwd().display().to_string(),
        stdin: opts.stdin,
        memory: opts.memory,
    };
    let binds = opts
        .binds
        .iter()
        .map(|b| {
            let dir = cap_std_dir(&b.host)?;
            Ok(filesystem::Mount {
                guest_path: b.container.clone(),
                overlay: std::sync::Arc::new(strata_runtime::fs::Overlay::new(Vec::new(), dir)),
                read_only: b.read_only,
            })
        })
        .collect::<strata_runtime::Result<Vec<_>>>()?;
    let root = containers.root(container)?;
    for b in &opts.binds {
        // Mount points exist in the container, as docker makes them.
        make_dirs(&root, &b.container).map_err(|e| {
            strata_runtime::Error::io(format!("create mount point {}", b.container), e)
        })?;
    }
    container.status = Status::Running;
    container.pid = Some(std::process::id());
    container.started_at = Some(strata_runtime::container::now());
    containers.save(container)?;
    let outcome = wasm.run(root, binds, &guest);
    drop(finished);
    handle.close();
    let _ = watcher.join();
    outcome
}

/// `mkdir -p` in the container's root.
fn make_dirs(
    root: &strata_runtime::fs::Overlay<strata_runtime::cap_std::fs::Dir>,
    path: &str,
) -> std::io::Result<()> {
    let mut at = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        at.push('/');
        at.push_str(part);
        match root.create_dir(std::ffi::OsStr::new(&at), 0o755) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            r => r?,
        }
    }
    Ok(())
}

fn cap_std_dir(path: &std::path::Path) -> strata_runtime::Result<strata_runtime::cap_std::fs::Dir> {
    strata_runtime::cap_std::fs::Dir::open_ambient_dir(
        path,
        strata_runtime::cap_std::ambient_authority(),
    )
    .map_err(|e| strata_runtime::Error::IoPath {
        path: path.into(),
        source: e,
    })
}

/// An image runs on Wasm when its config says so (platform wasi/wasm, or the Wasm artifact
/// config type), or when its program starts with the Wasm magic; ELF and `#!` are native.
fn detect_runtime(
    containers: &Containers<'_>,
    container: &strata_runtime::container::Container,
    image: &Image,
    spec: &strata_runtime::oci_spec::runtime::Spec,
) -> Result<Runtime> {
    if image.config.platform().is_wasm() || image.manifest.config.media_type == MEDIA_WASM_CONFIG {
        return Ok(Runtime::Wasm);
    }
    let args = spec
        .process()
        .as_ref()
        .and_then(|p| p.args().clone())
        .unwrap_or_default();
    let Some(program) = args.first() else {
        return Ok(Runtime::Native);
    };
    let root = containers.root(container)?;
    let mut head = [0u8; 4];
    let opened = root.open(
        std::ffi::OsStr::new(program),
        &strata_runtime::fs::OpenOptions {
            read: true,
            ..Default::default()
        },
    );
    if let Ok(mut f) = opened {
        if f.read_exact(&mut head).is_ok() && &head == WASM_MAGIC {
            return Ok(Runtime::Wasm);
        }
    }
    Ok(Runtime::Native)
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
