//! One stage: FROM, then each instruction applied to the stage's config and layers, with
//! Docker's semantics, BuildKit's history strings and the cache.

use std::sync::atomic::Ordering;
use std::time::Instant;

use cap_std::fs::Dir;
use strata_runtime::backend::{Stdio, Stream, Task};
use strata_runtime::compression::Compression;
use strata_runtime::container::{Containers, Network, RunOptions};
use strata_runtime::fs::Overlay;
use strata_runtime::image::{ContainerConfig, Descriptor, History, ImageConfig, Platform, RootFs};
use strata_runtime::layer::WriteOptions;
use strata_runtime::store::Scratch;

use super::cache::{CachedLayer, Key, Record};
use super::config::{self, Vars};
use super::context::{os, Ignore, Matched, Source};
use super::copy::{copy, make_dirs, Chmod, CopyOptions};
use super::history::COMMENT;
use super::{BuildError, Shared, StageResult};
use crate::dockerfile;
use crate::dockerfile::instructions::{Command, CommandLine, Instruction, SourcesAndDest, Stage};

/// Proxy variables reach RUN without an ARG, stay out of history and the cache key.
const PROXY_ARGS: [&str; 8] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// The ARGs BuildKit defines by itself: the build's and the target's platform.
pub(crate) fn automatic_args(
    shared: &Shared<'_>,
    target: Option<&Platform>,
) -> Vec<(String, Option<String>)> {
    let host = Platform::host();
    let t = target
        .cloned()
        .or_else(|| shared.opts.platform.clone())
        .unwrap_or_else(|| host.clone());
    let format = |p: &Platform| match &p.variant {
        Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
        None => format!("{}/{}", p.os, p.architecture),
    };
    vec![
        ("BUILDPLATFORM".into(), Some(format(&host))),
        ("BUILDOS".into(), Some(host.os.clone())),
        ("BUILDARCH".into(), Some(host.architecture.clone())),
        (
            "BUILDVARIANT".into(),
            Some(host.variant.clone().unwrap_or_default()),
        ),
        ("TARGETPLATFORM".into(), Some(format(&t))),
        ("TARGETOS".into(), Some(t.os.clone())),
        ("TARGETARCH".into(), Some(t.architecture.clone())),
        (
            "TARGETVARIANT".into(),
            Some(t.variant.clone().unwrap_or_default()),
        ),
    ]
}

/// Expand a word of a FROM line: global ARGs only.
pub(crate) fn expand_global(
    shared: &Shared<'_>,
    word: &str,
    line: usize,
) -> Result<String, BuildError> {
    let lookup = |k: &str| {
        shared
            .global_args
            .iter()
            .rev()
            .find(|(n, _)| n == k)
            .and_then(|(_, v)| v.clone())
    };
    dockerfile::expand(word, &lookup, shared.escape).map_err(|e| shared.error(line, e.to_string()))
}

struct StageBuilder<'s, 'a> {
    shared: &'s Shared<'a>,
    name: String,
    config: ImageConfig,
    layers: Vec<Descriptor>,
    key: Key,
    /// ARGs declared in this stage, in order (no value: declared but unset).
    args: Vec<(String, Option<String>)>,
    platform: Platform,
    cmd_set: bool,
    /// Numbered steps of the stage (FROM, RUN, COPY, ADD, WORKDIR) and how many so far.
    total: usize,
    done: usize,
}

pub(crate) fn build_stage(
    shared: &Shared<'_>,
    index: usize,
    stage: &Stage,
) -> Result<StageResult, BuildError> {
    let name = shared.names[index]
        .clone()
        .unwrap_or_else(|| format!("stage-{index}"));
    let total = 1 + stage
        .commands
        .iter()
        .filter(|c| {
            matches!(
                c.instruction,
                Instruction::Run(_)
                    | Instruction::Copy(_)
                    | Instruction::Add(_)
                    | Instruction::Workdir(_)
            )
        })
        .count();
    let base = expand_global(shared, &stage.from.base, stage.line)?;
    if base.is_empty() {
        return Err(shared.error(stage.line, "base name (FROM) should not be blank"));
    }
    let platform = match &stage.from.platform {
        Some(p) => Some(
            Platform::parse(&expand_global(shared, p, stage.line)?)
                .map_err(|e| shared.error(stage.line, e.to_string()))?,
        ),
        None => shared.opts.platform.clone(),
    };
    let started = Instant::now();
    let step = shared.steps.fetch_add(1, Ordering::SeqCst) + 1;
    let mut b = StageBuilder {
        shared,
        name,
        config: ImageConfig::default(),
        layers: Vec::new(),
        key: Key::root("scratch"),
        args: Vec::new(),
        platform: platform.clone().unwrap_or_else(Platform::host),
        cmd_set: false,
        total,
        done: 1,
    };
    let label = format!("[{} 1/{}] FROM {}", b.name, b.total, base);
    shared.progress.started(step, &label);
    let mut onbuild = Vec::new();
    if base.eq_ignore_ascii_case("scratch") {
        let p = b.platform.clone();
        b.config = ImageConfig {
            architecture: p.architecture.clone(),
            os: p.os.clone(),
            variant: p.variant.clone(),
            config: Some(ContainerConfig {
                working_dir: Some("/".into()),
                ..Default::default()
            }),
            rootfs: RootFs {
                kind: "layers".into(),
                diff_ids: Vec::new(),
            },
            ..Default::default()
        };
        b.key = Key::root(&format!("scratch {}/{}", p.os, p.architecture));
    } else if let Some(j) = shared.stage_named(&base) {
        let r = shared
            .results
            .lock()
            .unwrap()
            .get(&j)
            .cloned()
            .ok_or_else(|| shared.error(stage.line, format!("stage {base:?} was not built")))?;
        b.config = r.config;
        b.layers = r.layers;
        b.key = r.key;
        b.platform = b.config.platform();
    } else {
        let image = shared
            .bases
            .get(&base, platform.as_ref())
            .map_err(|e| shared.error(stage.line, e.to_string()))?;
        b.key = Key::root(&image.digest().to_string());
        b.layers = image.manifest.layers.clone();
        b.config = image.config.clone();
        b.platform = b.config.platform();
        onbuild = b
            .config
            .config
            .as_mut()
            .and_then(|c| c.on_build.take())
            .unwrap_or_default();
    }
    if !b.platform.is_wasm() {
        let c = b.config.container_config();
        if !c.env.iter().flatten().any(|e| e.starts_with("PATH=")) {
            c.set_env("PATH", strata_runtime::container::DEFAULT_PATH);
        }
    }
    shared.progress.done(step, started.elapsed());

    // ONBUILD triggers of the base run first, then are gone from this image.
    for trigger in onbuild {
        let df = dockerfile::parse(&shared.opts.dockerfile_name, &trigger)?;
        for node in &df.nodes {
            let cmd = crate::dockerfile::instructions::parse_instruction(&df, node)?;
            let cmd = Command {
                line: stage.line,
                end_line: stage.line,
                ..cmd
            };
            b.dispatch(&cmd)?;
        }
    }
    for cmd in &stage.commands {
        b.dispatch(cmd)?;
    }
    Ok(StageResult {
        config: b.config,
        layers: b.layers,
        key: b.key,
    })
}

impl StageBuilder<'_, '_> {
    fn err(&self, cmd: &Command, message: impl std::fmt::Display) -> BuildError {
        self.shared.error(
            cmd.line,
            format!("{}: {message}", first_line(&cmd.original)),
        )
    }

    /// A variable as instructions see it: ENV first, then this stage's ARGs.
    fn lookup(&self, name: &str) -> Option<String> {
        let vars = Vars {
            escape: self.shared.escape,
            args: &self.args,
        };
        vars.lookup(&self.config, name)
    }

    fn expand(&self, cmd: &Command, word: &str) -> Result<String, BuildError> {
        let lookup = |k: &str| self.lookup(k);
        dockerfile::expand(word, &lookup, self.shared.escape).map_err(|e| self.err(cmd, e))
    }

    fn shell(&self) -> Vec<String> {
        config::shell(&self.config)
    }

    fn workdir(&self) -> String {
        config::workdir(&self.config)
    }

    fn dispatch(&mut self, cmd: &Command) -> Result<(), BuildError> {
        match &cmd.instruction {
            Instruction::From(_) => Err(self.err(cmd, "FROM inside a stage")),
            Instruction::Arg(decls) => {
                let mut shown = Vec::new();
                for d in decls {
                    let value = if let Some(v) = self.shared.opts.build_args.get(&d.key) {
                        Some(v.clone())
                    } else if let Some(default) = &d.value {
                        Some(self.expand(cmd, default)?)
                    } else if d.key == "TARGETSTAGE" {
                        Some(self.shared.target_name.clone())
                    } else {
                        automatic_args(self.shared, Some(&self.platform))
                            .into_iter()
                            .chain(self.shared.global_args.iter().cloned())
                            .rev()
                            .find(|(k, _)| *k == d.key)
                            .and_then(|(_, v)| v)
                    };
                    shown.push(match &value {
                        Some(v) => format!("{}={v}", d.key),
                        None => d.key.clone(),
                    });
                    self.args.retain(|(k, _)| *k != d.key);
                    self.args.push((d.key.clone(), value));
                }
                self.metadata(cmd, format!("ARG {}", shown.join(" ")))
            }
            Instruction::Workdir(_) => self.workdir_step(cmd),
            Instruction::Run(run) => self.run_step(cmd, &run.cmd, &run.network, &run.mounts),
            Instruction::Copy(c) => self.copy_step(
                cmd,
                "COPY",
                &c.sources,
                c.from.as_deref(),
                c.chown.as_deref(),
                c.chmod.as_deref(),
                c.parents,
                &c.exclude,
                false,
                None,
            ),
            Instruction::Add(a) => self.copy_step(
                cmd,
                "ADD",
                &a.sources,
                None,
                a.chown.as_deref(),
                a.chmod.as_deref(),
                false,
                &a.exclude,
                a.unpack.unwrap_or(true),
                a.checksum.as_deref(),
            ),
            // ENV, LABEL, CMD, ENTRYPOINT, EXPOSE, USER, … change only the config.
            _ => match self.apply_config(cmd)? {
                Some(created_by) => self.metadata(cmd, created_by),
                None => Ok(()),
            },
        }
    }

    /// A config instruction through the dispatch `--change` shares; `Some` is its history text.
    fn apply_config(&mut self, cmd: &Command) -> Result<Option<String>, BuildError> {
        let vars = Vars {
            escape: self.shared.escape,
            args: &self.args,
        };
        config::apply(&mut self.config, &cmd.instruction, &vars, &mut self.cmd_set)
            .map_err(|e| self.err(cmd, e))
    }

    /// The argv of CMD/ENTRYPOINT/RUN: exec form as is, shell form under SHELL.
    fn command(&self, line: &CommandLine) -> Vec<String> {
        config::command(&self.config, line)
    }

    /// A metadata-only step: a history entry with no layer; its time comes from the cache
    /// so that an unchanged rebuild writes the same config.
    fn metadata(&mut self, _cmd: &Command, created_by: String) -> Result<(), BuildError> {
        let key = self.key.then(&["meta", &created_by]);
        let created = match self.lookup_cache(&key) {
            Some(r) => r.created,
            None => {
                let r = Record {
                    created: self.shared.now(),
                    layer: None,
                };
                self.shared.cache.put(&key, &r)?;
                r.created
            }
        };
        self.config.history.push(History {
            created: Some(created.clone()),
            created_by: Some(created_by),
            comment: Some(COMMENT.into()),
            empty_layer: true,
            ..Default::default()
        });
        self.config.created = Some(created);
        self.key = key;
        Ok(())
    }

    fn lookup_cache(&self, key: &Key) -> Option<Record> {
        if self.shared.opts.no_cache {
            None
        } else {
            self.shared.cache.get(key)
        }
    }

    /// A step that makes a layer: cached by `key`, else `make` produces it (given the
    /// step's number, for its output).
    fn layer_step(
        &mut self,
        cmd: &Command,
        key: Key,
        created_by: String,
        make: impl FnOnce(&mut Self, usize) -> Result<CachedLayer, BuildError>,
    ) -> Result<(), BuildError> {
        self.done += 1;
        let step = self.shared.steps.fetch_add(1, Ordering::SeqCst) + 1;
        let label = format!(
            "[{} {}/{}] {}",
            self.name,
            self.done,
            self.total,
            first_line(&cmd.original)
        );
        self.shared.progress.started(step, &label);
        let started = Instant::now();
        // A record without a layer (a damaged cache file) is a miss like any other.
        let cached = self
            .lookup_cache(&key)
            .and_then(|r| r.layer.clone().map(|l| (r.created, l)));
        let (created, layer) = match cached {
            Some(hit) => {
                self.shared.progress.cached(step);
                hit
            }
            None => {
                let layer = make(self, step)?;
                let created = self.shared.now();
                let record = Record {
                    created: created.clone(),
                    layer: Some(layer.clone()),
                };
                self.shared.cache.put(&key, &record)?;
                self.shared.progress.done(step, started.elapsed());
                (created, layer)
            }
        };
        self.layers.push(layer.descriptor);
        self.config.rootfs.diff_ids.push(layer.diff_id);
        self.config.history.push(History {
            created: Some(created.clone()),
            created_by: Some(created_by),
            comment: Some(COMMENT.into()),
            empty_layer: false,
            ..Default::default()
        });
        self.config.created = Some(created);
        self.key = key;
        Ok(())
    }

    /// The stage's root: its layers under a fresh upper directory (the new layer), in the
    /// store's scratch space so the layer can be written from it.
    fn scratch_root(&self) -> Result<(Scratch, Overlay<Dir>), BuildError> {
        let store = self.shared.store;
        let tmp = store.scratch("build-")?;
        let upper = tmp
            .dir()
            .try_clone()
            .map_err(|e| BuildError::Other(format!("open a build directory: {e}")))?;
        let root = store.open_root(&self.config.rootfs.diff_ids, upper)?;
        Ok((tmp, root))
    }

    /// The layer made from a build directory.
    fn commit_dir(&self, dir: &std::path::Path) -> Result<CachedLayer, BuildError> {
        let store = self.shared.store;
        let d = Dir::open_ambient_dir(dir, cap_std::ambient_authority())
            .map_err(|e| BuildError::Other(format!("open {}: {e}", dir.display())))?;
        let layer = store.layer_from_build_dir(&d, Compression::Gzip, &WriteOptions::from_env())?;
        Ok(CachedLayer {
            descriptor: layer.descriptor,
            diff_id: layer.diff_id,
        })
    }

    /// `USER` (or `--chown`) resolved through the stage's own /etc/passwd and /etc/group.
    fn resolve_owner(&self, root: &Overlay<Dir>, spec: &str) -> Result<(u32, u32), String> {
        let read = |p: &str| -> String {
            let mut s = String::new();
            if let Ok(mut f) = root.open(os(p), &super::context::read()) {
                let _ = std::io::Read::read_to_string(&mut f, &mut s);
            }
            s
        };
        strata_runtime::users::resolve(spec, &read("/etc/passwd"), &read("/etc/group"))
            .map(|ids| (ids.uid, ids.gid))
            .map_err(|e| e.to_string())
    }

    /// WORKDIR: the config's path (build/config.rs), and the directory made as a layer.
    fn workdir_step(&mut self, cmd: &Command) -> Result<(), BuildError> {
        let created_by = self.apply_config(cmd)?.unwrap_or_default();
        let path = self.workdir();
        if path == "/" {
            return self.metadata(cmd, created_by);
        }
        let user = self
            .config
            .config
            .as_ref()
            .and_then(|c| c.user.clone())
            .unwrap_or_default();
        let key = self.key.then(&["workdir", &created_by, &user]);
        self.layer_step(cmd, key, created_by, |b, _| {
            let (tmp, root) = b.scratch_root()?;
            let owner = if user.is_empty() {
                (0, 0)
            } else {
                b.resolve_owner(&root, &user).map_err(|e| b.err(cmd, e))?
            };
            let opts = CopyOptions {
                owner: Some(owner),
                chmod: None,
                unpack: false,
                privileged: strata_runtime::privilege::privileged(),
                parents: false,
            };
            make_dirs(&root, &path, &opts).map_err(|e| b.err(cmd, e))?;
            drop(root);
            b.commit_dir(tmp.path())
        })
    }

    fn run_step(
        &mut self,
        cmd: &Command,
        line: &CommandLine,
        network: &str,
        mounts: &[String],
    ) -> Result<(), BuildError> {
        let argv = if !line.files.is_empty() {
            // As BuildKit: a command that is one heredoc marker runs the heredoc's body with
            // SHELL; any other command gets its heredocs back after it, for the shell to read.
            let [text] = line.args.as_slice() else {
                return Err(self.err(cmd, "parsing produced an invalid run command"));
            };
            if !line.prepend_shell {
                return Err(self.err(cmd, "parsing produced an invalid run command"));
            }
            let script = if dockerfile::parse_heredoc(text).ok().flatten().is_some() {
                let f = &line.files[0];
                if f.chomp {
                    dockerfile::chomp_heredoc_content(&f.data)
                } else {
                    f.data.clone()
                }
            } else {
                let mut full = text.clone();
                for f in &line.files {
                    full.push('\n');
                    full.push_str(&f.data);
                    full.push_str(&f.name);
                }
                full
            };
            let mut argv = self.shell();
            argv.push(script);
            argv
        } else {
            self.command(line)
        };
        // ARGs with a value are in RUN's environment (ENV wins over an ARG of the same name).
        let env_keys: Vec<String> = self
            .config
            .config
            .as_ref()
            .and_then(|c| c.env.clone())
            .unwrap_or_default()
            .iter()
            .map(|e| e.split_once('=').map_or(e.clone(), |(k, _)| k.to_string()))
            .collect();
        let args: Vec<(String, String)> = self
            .args
            .iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
            .collect();
        let mut run_env: Vec<String> = args
            .iter()
            .filter(|(k, _)| !env_keys.contains(k))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        for p in PROXY_ARGS {
            if let Some(v) = self.shared.opts.build_args.get(p) {
                if !args.iter().any(|(k, _)| k == p) {
                    run_env.push(format!("{p}={v}"));
                }
            }
        }
        let prefix = if args.is_empty() {
            String::new()
        } else {
            format!(
                "|{} {} ",
                args.len(),
                args.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        };
        let created_by = format!("RUN {prefix}{} # buildkit", argv.join(" "));
        let network = match network {
            "" | "default" => self.shared.opts.network,
            "host" => Network::Host,
            "none" => Network::None,
            other => return Err(self.err(cmd, format!("unsupported network mode {other:?}"))),
        };
        let mounts = self.run_mounts(cmd, mounts)?;
        let c = self.config.config.clone().unwrap_or_default();
        let env_json = serde_json::to_string(&(&c.env, &run_env)).expect("serialize");
        let key = self.key.then(&[
            "run",
            &created_by,
            &env_json,
            c.user.as_deref().unwrap_or(""),
            &self.workdir(),
            &format!("{network:?}"),
            &format!("{}/{}", self.platform.os, self.platform.architecture),
            &mounts.key,
        ]);
        self.layer_step(cmd, key, created_by, |b, step| {
            b.execute(cmd, step, argv, run_env, network, &mounts)
        })
    }

    /// `RUN --mount`s: `bind` (read-only, from the context), `cache` (a directory kept in the
    /// store by id, shared by builds) and `tmpfs`. A bind's content is part of the step's key;
    /// a cache's is not (as BuildKit).
    fn run_mounts(&self, cmd: &Command, raw: &[String]) -> Result<RunMounts, BuildError> {
        use crate::dockerfile::instructions::{parse_mount, MountType};
        let mut out = RunMounts::default();
        let expand = |v: &str| self.expand(cmd, v).map_err(|e| e.to_string());
        for r in raw {
            let m = parse_mount(r, Some(&expand)).map_err(|e| self.err(cmd, e))?;
            // Absolute and clean; relative to WORKDIR as written.
            let target = || -> Result<String, BuildError> {
                let t = m
                    .target
                    .clone()
                    .ok_or_else(|| self.err(cmd, "mount target is required"))?;
                let t = if t.starts_with('/') {
                    t
                } else {
                    format!("{}/{t}", self.workdir().trim_end_matches('/'))
                };
                Ok(format!("/{}", super::context::clean(&t)))
            };
            match m.kind {
                MountType::Bind => {
                    let target = target()?;
                    if m.from.is_some() {
                        return Err(self.err(
                            cmd,
                            "RUN --mount=type=bind,from=… is not supported by this builder yet",
                        ));
                    }
                    if !m.read_only
                        && r.split(',')
                            .any(|f| matches!(f, "rw" | "readwrite" | "readwrite=true" | "rw=true"))
                    {
                        return Err(self.err(
                            cmd,
                            "read-write bind mounts are not supported by this builder yet",
                        ));
                    }
                    let source = super::context::clean(m.source.as_deref().unwrap_or(""));
                    let host =
                        context_path(&self.shared.context, &self.shared.opts.context, &source)
                            .map_err(|e| self.err(cmd, e))?;
                    let ctx = self.shared.context_source(Ignore::default())?;
                    let path = if source.is_empty() {
                        "."
                    } else {
                        source.as_str()
                    };
                    let matched = ctx.matches(path).map_err(|e| self.err(cmd, e))?;
                    out.key.push_str(&format!(
                        "bind {source} {target} {}\n",
                        ctx.checksum(&matched)?
                    ));
                    out.binds.push(strata_runtime::container::Bind {
                        host,
                        container: target,
                        read_only: true,
                    });
                }
                MountType::Cache => {
                    let target = target()?;
                    use sha2::Digest as _;
                    let id = m.id.clone().unwrap_or_else(|| target.clone());
                    let hash = super::context::hex(&sha2::Sha256::digest(id.as_bytes()));
                    let dir = self
                        .shared
                        .store
                        .cache_path(super::MOUNT_CACHE)
                        .map_err(|e| self.err(cmd, e))?
                        .join(hash);
                    if !dir.exists() {
                        std::fs::create_dir_all(&dir).map_err(|e| self.err(cmd, e))?;
                        use std::os::unix::fs::PermissionsExt;
                        let mode = m.mode.unwrap_or(0o755);
                        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode))
                            .map_err(|e| self.err(cmd, e))?;
                        if strata_runtime::privilege::privileged() {
                            std::os::unix::fs::chown(
                                &dir,
                                Some(m.uid.unwrap_or(0)),
                                Some(m.gid.unwrap_or(0)),
                            )
                            .map_err(|e| self.err(cmd, e))?;
                        }
                    }
                    out.key.push_str(&format!("cache {id} {target}\n"));
                    out.binds.push(strata_runtime::container::Bind {
                        host: dir,
                        container: target,
                        read_only: m.read_only,
                    });
                }
                MountType::Tmpfs => {
                    let target = target()?;
                    out.key.push_str(&format!("tmpfs {target}\n"));
                    out.tmpfs.push(target);
                }
                MountType::Secret | MountType::Ssh => {
                    return Err(self.err(
                        cmd,
                        format!(
                            "RUN --mount=type={} is not supported by this builder yet",
                            m.kind.as_str()
                        ),
                    ))
                }
            }
        }
        Ok(out)
    }

    /// Run `argv` in a temporary container of the stage's current state; its changes are the
    /// layer. The container is a directory and a spec handed to the backend, nothing more:
    /// no image, no record. Its output reaches the progress line by line, as step `step`'s.
    fn execute(
        &self,
        cmd: &Command,
        step: usize,
        argv: Vec<String>,
        env: Vec<String>,
        network: Network,
        mounts: &RunMounts,
    ) -> Result<CachedLayer, BuildError> {
        let store = self.shared.store;
        let containers = Containers::open(store)?;
        let scratch = containers.scratch(&self.config.rootfs.diff_ids)?;
        let result = (|| -> Result<CachedLayer, BuildError> {
            let opts = RunOptions {
                entrypoint: Some(String::new()),
                args: argv.clone(),
                env,
                network,
                binds: mounts.binds.clone(),
                tmpfs: mounts.tmpfs.clone(),
                ..Default::default()
            };
            // Mount points the image lacks are made for the run and are not part of the layer.
            let root = scratch.rootfs.overlay()?;
            // (first directory made, mount point) for each target the image lacks.
            let made: Vec<(String, String)> = mounts
                .targets()
                .filter_map(|t| first_missing(&root, &t).map(|first| (first, t)))
                .collect();
            let (spec, kind) = strata_runtime::container::prepare(
                &self.config,
                self.platform.is_wasm(),
                &opts,
                scratch.short_id(),
                &root,
                None,
            )?;
            let task = Task {
                id: &scratch.id,
                spec: &spec,
                rootfs: &scratch.rootfs,
            };
            let exit = run_with_output(self.shared, step, |stdio| {
                self.shared
                    .backends
                    .get(kind)
                    .run(&task, stdio, &mut |_| Ok(()))
            })
            .map_err(|e| self.err(cmd, e))?;
            if exit.code != 0 {
                return Err(self.err(
                    cmd,
                    format!(
                        "process {:?} did not complete successfully: exit code: {}",
                        argv.join(" "),
                        exit.code
                    ),
                ));
            }
            for (first, target) in &made {
                remove_mount_points(&root, first, target);
            }
            drop(root);
            let upper = Dir::open_ambient_dir(&scratch.rootfs.upper, cap_std::ambient_authority())
                .map_err(|e| self.err(cmd, e))?;
            let layer =
                store.layer_from_build_dir(&upper, Compression::Gzip, &WriteOptions::from_env())?;
            Ok(CachedLayer {
                descriptor: layer.descriptor,
                diff_id: layer.diff_id,
            })
        })();
        containers.remove_scratch(&scratch)?;
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn copy_step(
        &mut self,
        cmd: &Command,
        verb: &str,
        sources: &SourcesAndDest,
        from: Option<&str>,
        chown: Option<&str>,
        chmod: Option<&str>,
        parents: bool,
        exclude: &[String],
        unpack: bool,
        checksum: Option<&str>,
    ) -> Result<(), BuildError> {
        let chown = chown.map(|c| self.expand(cmd, c)).transpose()?;
        let chmod_text = chmod.map(|c| self.expand(cmd, c)).transpose()?;
        let chmod = chmod_text
            .as_deref()
            .map(Chmod::parse)
            .transpose()
            .map_err(|e| self.err(cmd, e))?;
        let mut paths = Vec::new();
        let mut urls = Vec::new();
        for p in &sources.paths {
            let p = self.expand(cmd, p)?;
            let url = p.contains("://") || p.starts_with("git@");
            if url && verb == "COPY" {
                return Err(self.err(cmd, "source can't be a URL for COPY"));
            }
            if url && (p.starts_with("git@") || p.ends_with(".git") || !p.starts_with("http")) {
                return Err(self.err(
                    cmd,
                    format!("{p}: git sources are not supported by this builder yet"),
                ));
            }
            if url {
                urls.push(p);
            } else {
                paths.push(p);
            }
        }
        if !urls.is_empty() && !paths.is_empty() {
            return Err(self.err(
                cmd,
                "mixing URLs and local sources in one ADD is not supported",
            ));
        }
        let dest_raw = self.expand(cmd, &sources.dest)?;
        let dest = if dest_raw.starts_with('/') {
            dest_raw.clone()
        } else {
            let wd = self.workdir();
            format!("{}/{}", wd.trim_end_matches('/'), dest_raw)
        };
        let dest_dir_written = dest_raw.is_empty()
            || dest_raw.ends_with('/')
            || dest_raw == "."
            || dest_raw.ends_with("/.");

        // The source root: the context, a heredoc's files, or another stage or image.
        let mut heredocs: Option<tempfile::TempDir> = None;
        let mut ignore = Ignore::default();
        for e in exclude {
            let e = self.expand(cmd, e)?;
            let more = Ignore::parse(&e).map_err(|m| self.err(cmd, m))?;
            ignore = ignore.with(more);
        }
        let (source, source_id) = if !urls.is_empty() {
            let dir = tempfile::tempdir().map_err(|e| self.err(cmd, e))?;
            for u in &urls {
                let name = download(u, dir.path(), checksum).map_err(|e| self.err(cmd, e))?;
                paths.push(name);
            }
            let d = Dir::open_ambient_dir(dir.path(), cap_std::ambient_authority())
                .map_err(|e| self.err(cmd, e))?;
            heredocs = Some(dir);
            (
                Source::context(d, Ignore::default()),
                format!("urls {urls:?}"),
            )
        } else if !sources.contents.is_empty() {
            let dir = tempfile::tempdir().map_err(|e| self.err(cmd, e))?;
            let d = Dir::open_ambient_dir(dir.path(), cap_std::ambient_authority())
                .map_err(|e| self.err(cmd, e))?;
            for c in &sources.contents {
                let data = if c.expand {
                    self.expand(cmd, &c.data)?
                } else {
                    c.data.clone()
                };
                // The heredoc's name comes from the Dockerfile: written inside the handle only.
                d.write(&c.path, data)
                    .map_err(|e| self.err(cmd, format!("heredoc {}: {e}", c.path)))?;
                paths.push(c.path.clone());
            }
            heredocs = Some(dir);
            (Source::context(d, ignore), "heredoc".to_string())
        } else {
            match from {
                None => (self.shared.context_source(ignore)?, "context".to_string()),
                Some(f) => {
                    // Keyed by the checksum of what is copied, not by the source's own key
                    // or digest (BuildKit): a rebuilt stage whose copied files come out the
                    // same leaves this step cached.
                    let (diff_ids, id) = match self.shared.stage_index(f) {
                        Some(j) => {
                            let r = self
                                .shared
                                .results
                                .lock()
                                .unwrap()
                                .get(&j)
                                .cloned()
                                .ok_or_else(|| {
                                    self.err(cmd, format!("stage {f:?} was not built"))
                                })?;
                            (r.config.rootfs.diff_ids.clone(), "stage".to_string())
                        }
                        None => {
                            let image = self
                                .shared
                                .bases
                                .get(f, Some(&self.platform))
                                .map_err(|e| self.err(cmd, e))?;
                            (image.config.rootfs.diff_ids.clone(), "image".to_string())
                        }
                    };
                    let empty = tempfile::tempdir().map_err(|e| self.err(cmd, e))?;
                    let upper = Dir::open_ambient_dir(empty.path(), cap_std::ambient_authority())
                        .map_err(|e| self.err(cmd, e))?;
                    let root = self.shared.store.open_root(&diff_ids, upper)?;
                    heredocs = Some(empty);
                    let mut s = Source::stage(root);
                    s.ignore = ignore;
                    (s, id)
                }
            }
        };
        let mut matched: Vec<Matched> = Vec::new();
        for p in &paths {
            let m = source
                .matches(p)
                .map_err(|e| self.err(cmd, format!("failed to compute cache key: {e}")))?;
            matched.extend(m);
        }
        if matched.is_empty() {
            return Err(self.err(cmd, "no source files were specified"));
        }
        if (paths.len() > 1 || matched.len() > 1) && !dest_dir_written && !parents {
            return Err(self.err(cmd, format!("When using {verb} with more than one source file, the destination must be a directory and end with a /")));
        }
        let checksum = source.checksum(&matched)?;
        let mut flags = Vec::new();
        if let Some(c) = &chown {
            flags.push(format!("--chown={c}"));
        }
        if let Some(c) = &chmod_text {
            flags.push(format!("--chmod={c}"));
        }
        if parents {
            flags.push("--parents".into());
        }
        for e in exclude {
            flags.push(format!("--exclude={e}"));
        }
        let mut words = flags;
        words.extend(sources.paths.iter().map(|p| {
            if sources.contents.iter().any(|c| c.path == *p) {
                format!("<<{p}")
            } else {
                p.clone()
            }
        }));
        for c in &sources.contents {
            if !sources.paths.contains(&c.path) {
                words.push(format!("<<{}", c.path));
            }
        }
        words.push(sources.dest.clone());
        let created_by = format!("{verb} {} # buildkit", words.join(" "));
        let key = self.key.then(&[
            verb,
            &created_by,
            &source_id,
            &checksum,
            &dest,
            &dest_dir_written.to_string(),
            chown.as_deref().unwrap_or(""),
            &unpack.to_string(),
        ]);
        let result = self.layer_step(cmd, key, created_by, |b, _| {
            let (tmp, root) = b.scratch_root()?;
            let owner = chown
                .as_deref()
                .map(|c| b.resolve_owner(&root, c))
                .transpose()
                .map_err(|e| b.err(cmd, e))?;
            // An existing directory at the destination takes the sources into it.
            let dest_dir = dest_dir_written
                || root.stat(os(&dest), true).is_ok_and(|st| {
                    strata_runtime::fs::file_type(&st) == rustix::fs::FileType::Directory
                });
            let opts = CopyOptions {
                owner,
                chmod: chmod.clone(),
                unpack: verb == "ADD" && unpack && urls.is_empty(),
                privileged: strata_runtime::privilege::privileged(),
                parents,
            };
            copy(&source, &matched, &dest, dest_dir, &root, &opts).map_err(|e| b.err(cmd, e))?;
            drop(root);
            b.commit_dir(tmp.path())
        });
        drop(heredocs);
        result
    }
}

fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or("");
    if line.len() > 200 {
        format!(
            "{}…",
            &line[..line.char_indices().take(200).last().map_or(0, |(i, _)| i)]
        )
    } else {
        line.to_string()
    }
}

/// What a RUN's `--mount`s give its container, and their part of the step's key.
#[derive(Debug, Default)]
struct RunMounts {
    binds: Vec<strata_runtime::container::Bind>,
    tmpfs: Vec<String>,
    key: String,
}

impl RunMounts {
    fn targets(&self) -> impl Iterator<Item = String> + '_ {
        self.binds
            .iter()
            .map(|b| b.container.clone())
            .chain(self.tmpfs.iter().cloned())
    }
}

/// Run `f` with stdout and stderr on one pipe whose lines go to the progress as step
/// `step`'s output (as BuildKit interleaves a step's two streams), until the process and
/// everything that held the pipe are gone.
fn run_with_output<T>(
    shared: &Shared<'_>,
    step: usize,
    f: impl FnOnce(Stdio) -> strata_runtime::Result<T>,
) -> strata_runtime::Result<T> {
    use std::io::BufRead;
    let io = |e: std::io::Error| strata_runtime::Error::io("make the step's output pipe", e);
    let (reader, writer) =
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| io(e.into()))?;
    let stderr = writer.try_clone().map_err(io)?;
    std::thread::scope(|s| {
        let relay = s.spawn(move || {
            let mut lines = std::io::BufReader::new(std::fs::File::from(reader));
            let mut line = Vec::new();
            while lines.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                let text = String::from_utf8_lossy(&line);
                shared.progress.output(step, text.trim_end_matches('\n'));
                line.clear();
            }
        });
        let result = f(Stdio {
            stdin: false,
            stdout: Stream::Fd(writer),
            stderr: Stream::Fd(stderr),
        });
        let _ = relay.join();
        result
    })
}

/// The first directory on the way to `target` that the root does not have.
fn first_missing(root: &Overlay<Dir>, target: &str) -> Option<String> {
    let mut at = String::new();
    for part in target.split('/').filter(|p| !p.is_empty()) {
        at.push('/');
        at.push_str(part);
        if root.stat(os(&at), false).is_err() {
            return Some(at);
        }
    }
    None
}

/// Remove the empty directories made for a mount point, from `target` up to `first`.
fn remove_mount_points(root: &Overlay<Dir>, first: &str, target: &str) {
    let mut at = target.to_string();
    while at.len() >= first.len() {
        if root.remove_dir(os(&at)).is_err() {
            break;
        }
        match at.rsplit_once('/') {
            Some((parent, _)) => at = parent.to_string(),
            None => break,
        }
    }
}

/// The host path of `rel` in the build context, for the kernel to bind: each component is
/// looked up through the context's directory handle and must be a real directory or file
/// (no symlink, no `..` out of it).
fn context_path(
    context: &Dir,
    host: &std::path::Path,
    rel: &str,
) -> Result<std::path::PathBuf, String> {
    let mut at = std::path::PathBuf::new();
    for part in rel.split('/').filter(|p| !p.is_empty()) {
        at.push(part);
        let meta = context
            .symlink_metadata(&at)
            .map_err(|e| format!("bind source {rel}: {e}"))?;
        if meta.file_type().is_symlink() {
            return Err(format!(
                "bind source {rel}: symlinks are not followed out of the context"
            ));
        }
    }
    Ok(host.join(at))
}

/// ADD of a URL: the body saved under `dir` as the URL's last path segment, mode 0600 and
/// the server's Last-Modified time, checked against `--checksum` when given; never unpacked.
fn download(url: &str, dir: &std::path::Path, checksum: Option<&str>) -> Result<String, String> {
    use sha2::Digest as _;
    const MAX: u64 = 8 << 30;
    let response = ureq::get(url)
        .call()
        .map_err(|e| format!("failed to GET {url}: {e}"))?;
    let modified = response
        .header("Last-Modified")
        .and_then(|h| chrono::DateTime::parse_from_rfc2822(h).ok())
        .map(|t| t.timestamp());
    let path_part = url.split(['?', '#']).next().unwrap_or(url);
    let name = path_part
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty() && *n != "." && *n != "..")
        .unwrap_or("__unnamed__")
        .to_string();
    let file_path = dir.join(&name);
    let mut file = std::fs::File::create(&file_path).map_err(|e| format!("{name}: {e}"))?;
    let mut hasher = sha2::Sha256::new();
    let mut reader = std::io::Read::take(response.into_reader(), MAX + 1);
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n =
            std::io::Read::read(&mut reader, &mut buf).map_err(|e| format!("read {url}: {e}"))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > MAX {
            return Err(format!("{url}: larger than {MAX} bytes"));
        }
        hasher.update(&buf[..n]);
        std::io::Write::write_all(&mut file, &buf[..n]).map_err(|e| format!("{name}: {e}"))?;
    }
    let digest = format!("sha256:{}", super::context::hex(&hasher.finalize()));
    if let Some(want) = checksum {
        if want != digest {
            return Err(format!("digest mismatch {digest}: {want}"));
        }
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file_path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("{name}: {e}"))?;
    if let Some(secs) = modified {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
        let _ = file.set_modified(t);
    }
    Ok(name)
}
