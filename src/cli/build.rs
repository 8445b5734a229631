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
    /// Secret to expose to RUN --mount=type=secret: id=ID[,src=FILE|,env=VAR]
    #[arg(long = "secret", value_name = "id=ID[,src=FILE|env=VAR]")]
    secrets: Vec<String>,
    /// SSH agent socket to expose to RUN --mount=type=ssh: default|ID[=SOCKET]
    #[arg(long = "ssh", value_name = "default|ID[=SOCKET]")]
    ssh: Vec<String>,
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
                    .and_then(|v| build_args.insert(a.clone(), v)),
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
            secrets: self
                .secrets
                .iter()
                .map(|s| read_secret(s, |k| std::env::var_os(k)))
                .collect::<Result<_>>()?,
            ssh: self
                .ssh
                .iter()
                .map(|s| parse_ssh(s, std::env::var_os("SSH_AUTH_SOCK")))
                .collect::<Result<_>>()?,
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
/// `--secret id=ID[,src=FILE|,env=VAR][,type=file|env]`, as buildx reads it: a file
/// (`src`/`source`), an environment variable (`env`), or, with neither, the variable named
/// ID if it is set, else the file ID. The id and the secret's bytes.
fn read_secret(
    spec: &str,
    env: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<(String, Vec<u8>)> {
    let (mut id, mut src, mut var, mut kind) = (None, None, None, None);
    for field in spec.split(',') {
        match field.split_once('=') {
            Some(("id", v)) => id = Some(v.to_string()),
            Some(("src" | "source", v)) => src = Some(v.to_string()),
            Some(("env", v)) => var = Some(v.to_string()),
            Some(("type", v @ ("file" | "env"))) => kind = Some(v.to_string()),
            Some(("type", v)) => bail!("invalid secret {spec:?}: unsupported type {v:?}"),
            _ => bail!("invalid secret {spec:?}: unexpected key in {field:?} (id, src, env, type)"),
        }
    }
    let id = id
        .filter(|i| !i.is_empty())
        .ok_or_else(|| anyhow!("invalid secret {spec:?}: id= is required"))?;
    let from_env = |name: &str| -> Result<Vec<u8>> {
        use std::os::unix::ffi::OsStringExt;
        env(name)
            .map(OsStringExt::into_vec)
            .ok_or_else(|| anyhow!("secret {id}: environment variable {name} is not set"))
    };
    let from_file = |path: &str| -> Result<Vec<u8>> {
        std::fs::read(path).with_context(|| format!("secret {id}: read {path}"))
    };
    let value = match (kind.as_deref(), src, var) {
        (Some("env"), src, var) => from_env(var.or(src).as_deref().unwrap_or(&id))?,
        (_, Some(path), _) => from_file(&path)?,
        (_, None, Some(var)) => from_env(&var)?,
        (Some("file"), None, None) => from_file(&id)?,
        (_, None, None) => match env(&id) {
            Some(_) => from_env(&id)?,
            None => from_file(&id)?,
        },
    };
    Ok((id, value))
}

/// `--ssh default|ID[=SOCKET]`: the agent's socket, `$SSH_AUTH_SOCK` when none is given.
fn parse_ssh(spec: &str, agent: Option<std::ffi::OsString>) -> Result<(String, PathBuf)> {
    let (id, path) = match spec.split_once('=') {
        Some((id, path)) => (id, Some(PathBuf::from(path))),
        None => (spec, None),
    };
    if id.is_empty() {
        bail!("invalid ssh {spec:?}: an id (default) is required");
    }
    let path = path
        .or_else(|| agent.filter(|a| !a.is_empty()).map(PathBuf::from))
        .ok_or_else(|| anyhow!("--ssh {id}: no socket given and SSH_AUTH_SOCK is not set"))?;
    use std::os::unix::fs::FileTypeExt;
    let meta =
        std::fs::metadata(&path).with_context(|| format!("--ssh {id}: {}", path.display()))?;
    if !meta.file_type().is_socket() {
        bail!("--ssh {id}: {} is not a socket", path.display());
    }
    Ok((id.to_string(), path))
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_as_buildx_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, b"file-value").unwrap();
        let env =
            |k: &str| (k == "TOKEN" || k == "tok").then(|| std::ffi::OsString::from("env-value"));
        let f = file.display();
        assert_eq!(
            read_secret(&format!("id=a,src={f}"), env).unwrap(),
            ("a".into(), b"file-value".to_vec())
        );
        assert_eq!(
            read_secret(&format!("id=a,source={f}"), env).unwrap().1,
            b"file-value"
        );
        assert_eq!(read_secret("id=a,env=TOKEN", env).unwrap().1, b"env-value");
        assert_eq!(read_secret("id=tok", env).unwrap().1, b"env-value");
        assert_eq!(
            read_secret("type=env,id=TOKEN", env).unwrap().1,
            b"env-value"
        );
        for (bad, words) in [
            ("src=/x", "id= is required"),
            ("id=a,env=NOPE", "NOPE is not set"),
            ("id=a,src=/no/such/file", "read /no/such/file"),
            ("id=a,type=ssh", "unsupported type"),
            ("id=a,colour=red", "unexpected key"),
        ] {
            let e = format!("{:#}", read_secret(bad, env).unwrap_err());
            assert!(e.contains(words), "{bad}: {e}");
        }
    }

    #[test]
    fn ssh_sockets_as_buildx_takes_them() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("agent.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        assert_eq!(
            parse_ssh("default", Some(sock.clone().into())).unwrap(),
            ("default".into(), sock.clone())
        );
        let given = format!("work={}", sock.display());
        assert_eq!(parse_ssh(&given, None).unwrap().0, "work");
        assert!(format!("{:#}", parse_ssh("default", None).unwrap_err())
            .contains("SSH_AUTH_SOCK is not set"));
        let file = dir.path().join("plain");
        std::fs::write(&file, b"").unwrap();
        let e = format!(
            "{:#}",
            parse_ssh(&format!("default={}", file.display()), None).unwrap_err()
        );
        assert!(e.contains("is not a socket"), "{e}");
    }
}
