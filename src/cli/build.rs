use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use strata_builder::engine::{self, Backends, BaseImages, BuildError, BuildOptions, Progress};
use strata_runtime::container::Network;
use strata_runtime::image::Platform;
use strata_runtime::registry::{Event, Session, Status};
use strata_runtime::store::Image;
use strata_runtime::{ErrorKind, Reference, Store};

#[derive(clap::Args)]
pub struct Args {
    /// Name and optionally a tag (name:tag); may be repeated
    #[arg(short, long = "tag", value_name = "NAME[:TAG]")]
    tags: Vec<String>,
    /// Name of the Dockerfile (default: CONTEXT/Dockerfile; `-` reads STDIN)
    #[arg(short, long)]
    file: Option<PathBuf>,
    /// Set build-time variables
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    build_args: Vec<String>,
    /// Set the target build stage to build
    #[arg(long)]
    target: Option<String>,
    /// Set the target platform (e.g. linux/amd64, wasi/wasm)
    #[arg(long)]
    platform: Option<String>,
    /// Do not use cache when building the image
    #[arg(long = "no-cache")]
    no_cache: bool,
    /// Set metadata for an image
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// Type of progress output: auto, plain, tty, quiet
    #[arg(long, default_value = "auto", value_parser = ["auto", "plain", "tty", "quiet"])]
    progress: String,
    /// Suppress the build output and print the image ID on success
    #[arg(short, long)]
    quiet: bool,
    /// Write the image ID to the file
    #[arg(long, value_name = "FILE")]
    iidfile: Option<PathBuf>,
    /// Output destination: type=oci|docker,dest=FILE (an archive `strata load`, docker and
    /// podman load)
    #[arg(short, long, value_name = "type=TYPE,dest=FILE")]
    output: Option<String>,
    /// Network of RUN steps: host (docker's default for builds) or none
    #[arg(long, default_value = "host")]
    network: String,
    #[command(flatten)]
    registry: super::pull::RegistryFlags,
    /// The build context directory
    context: PathBuf,
}

impl Args {
    pub fn run(self, store: &Store) -> Result<()> {
        let dockerfile_path = self
            .file
            .clone()
            .unwrap_or_else(|| self.context.join("Dockerfile"));
        let source = if dockerfile_path.as_os_str() == "-" {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)?;
            engine::DockerfileSource {
                name: "Dockerfile".to_string(),
                text,
                ignore: None,
            }
        } else {
            // Inside its own directory only, as BuildKit: no symlink out of it.
            engine::read_dockerfile(&dockerfile_path).map_err(|e| anyhow!("{e}"))?
        };
        if !self.context.is_dir() {
            bail!(
                "unable to prepare context: path {:?} not found",
                self.context.display().to_string()
            );
        }
        let mut build_args = BTreeMap::new();
        for a in &self.build_args {
            match a.split_once('=') {
                Some((k, v)) => build_args.insert(k.to_string(), v.to_string()),
                None => std::env::var(a)
                    .ok()
                    .map(|v| build_args.insert(a.clone(), v))
                    .flatten(),
            };
        }
        let mut labels = BTreeMap::new();
        for l in &self.labels {
            let (k, v) = l.split_once('=').unwrap_or((l, ""));
            labels.insert(k.to_string(), v.to_string());
        }
        let tags: Vec<Reference> = self
            .tags
            .iter()
            .map(|t| Reference::parse(t).map_err(|e| anyhow!("invalid tag {t:?}: {e}")))
            .collect::<Result<_>>()?;
        let output = self.output.as_deref().map(parse_output).transpose()?;
        let opts = BuildOptions {
            dockerfile_name: source.name,
            dockerfile: source.text,
            dockerignore: source.ignore,
            context: self.context.clone(),
            build_args,
            target: self.target.clone(),
            platform: self.platform.as_deref().map(Platform::parse).transpose()?,
            no_cache: self.no_cache,
            labels,
            network: match Network::parse(&self.network)? {
                n @ (Network::Host | Network::None) => n,
                n => anyhow::bail!("build --network {n}: RUN steps run on host or none"),
            },
        };
        let quiet = self.quiet || self.progress == "quiet";
        let progress = Printer { quiet };
        let bases = Bases {
            store,
            registry: &self.registry,
        };
        let (native, wasm) = super::run::backends(store)?;
        let backends = Backends {
            native: &native,
            wasm: &wasm,
            network: None,
        };
        let built = engine::build(store, &opts, &backends, &bases, &progress);
        let built = built.map_err(|e| anyhow!("{e}"))?;
        for tag in &tags {
            store.set_tag(tag, &built.manifest)?;
        }
        if tags.is_empty() {
            store.add_image(None, &built.manifest)?;
        }
        if !quiet {
            eprintln!("#{} writing image {} done", progress.next(), built.id);
            for tag in &tags {
                eprintln!("#{} naming to {tag} done", progress.next());
            }
        }
        if let Some(path) = &self.iidfile {
            std::fs::write(path, built.id.to_string())
                .with_context(|| format!("write {}", path.display()))?;
        }
        if let Some(dest) = output {
            let image = store.image(&built.manifest)?;
            let file = std::fs::File::create(&dest)
                .with_context(|| format!("create {}", dest.display()))?;
            let out = strata_runtime::archive::save(
                store,
                &[(image, tags.clone())],
                std::io::BufWriter::new(file),
            )?;
            out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        }
        if quiet {
            println!("{}", built.id);
        }
        Ok(())
    }
}

/// `-o type=oci,dest=F` / `type=docker,dest=F` / `F`: where to write the archive (one
/// archive format serves both: an OCI layout with docker's manifest.json).
fn parse_output(s: &str) -> Result<PathBuf> {
    if !s.contains('=') {
        return Ok(PathBuf::from(s));
    }
    let mut dest = None;
    for part in s.split(',') {
        match part.split_once('=') {
            Some(("type", "oci" | "docker" | "tar")) => {}
            Some(("type", t)) => bail!("output type {t:?} is not supported (oci, docker)"),
            Some(("dest", d)) => dest = Some(PathBuf::from(d)),
            _ => bail!("invalid output {s:?}: expected type=oci|docker,dest=FILE"),
        }
    }
    dest.ok_or_else(|| anyhow!("invalid output {s:?}: dest= is missing"))
}

/// Base images from the store, pulled when missing.
/// Base images: the store's, pulled when missing (the CLI's and the API's builds).
pub(crate) struct Bases<'a> {
    pub store: &'a Store,
    pub registry: &'a super::pull::RegistryFlags,
}

impl BaseImages for Bases<'_> {
    fn get(
        &self,
        name: &str,
        platform: Option<&Platform>,
        output: &(dyn Fn(&str) + Sync),
    ) -> Result<Image, BuildError> {
        match self.store.resolve(name) {
            Ok(image) => Ok(image),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let reference = Reference::parse(name).map_err(BuildError::Runtime)?;
                let platform = platform.map(|p| format!("{}/{}", p.os, p.architecture));
                let opts = self
                    .registry
                    .options(platform.as_deref())
                    .map_err(|e| BuildError::Other(e.to_string()))?;
                // Under the FROM step, as BuildKit's plain progress shows a pull.
                let report = |event: Event| match event {
                    Event::Resolved(digest) if reference.digest().is_none() => {
                        output(&format!("resolve {reference}@{digest} done"))
                    }
                    Event::Resolved(_) => output(&format!("resolve {reference} done")),
                    Event::Layer {
                        id,
                        status: Status::DownloadComplete,
                    } => output(&format!("{id} done")),
                    Event::Layer {
                        id,
                        status: Status::PullComplete,
                    } => output(&format!("extracting {id} done")),
                    _ => {}
                };
                Session::open(reference.domain(), &opts)
                    .and_then(|session| session.pull(self.store, &reference, &opts, &report))
                    .map(|pulled| pulled.image)
                    .map_err(|e| BuildError::Other(format!("pull {name}: {e:#}")))
            }
            Err(e) => Err(BuildError::Runtime(e)),
        }
    }
}

/// BuildKit's plain progress on stderr: `#N [stage k/n] INSTR`, `#N CACHED`, `#N DONE 0.3s`.
struct Printer {
    quiet: bool,
}

static LAST_STEP: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Printer {
    fn next(&self) -> usize {
        LAST_STEP.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1
    }
}

impl Progress for Printer {
    fn started(&self, step: usize, label: &str) {
        LAST_STEP.fetch_max(step, std::sync::atomic::Ordering::SeqCst);
        if !self.quiet {
            eprintln!("#{step} {label}");
        }
    }
    fn cached(&self, step: usize) {
        if !self.quiet {
            eprintln!("#{step} CACHED");
        }
    }
    fn done(&self, step: usize, elapsed: Duration) {
        if !self.quiet {
            eprintln!("#{step} DONE {:.1}s", elapsed.as_secs_f64());
        }
    }
    /// RUN output goes where the progress goes (stderr), each line under its step, as
    /// BuildKit's plain progress shows it; stdout is left for the image ID.
    fn output(&self, step: usize, line: &str) {
        if !self.quiet {
            eprintln!("#{step} {line}");
        }
    }
}
