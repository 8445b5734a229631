//! One stage: FROM, then each instruction applied to the stage's config and layers, with
//! Docker's semantics, BuildKit's history strings and the cache.

use std::sync::atomic::Ordering;
use std::time::Instant;

use cap_std::fs::Dir;
use strata_runtime::compression::Compression;
use strata_runtime::fs::Overlay;
use strata_runtime::image::{ContainerConfig, Descriptor, History, ImageConfig, Platform, RootFs};
use strata_runtime::layer::WriteOptions;
use strata_runtime::store::Scratch;

use super::cache::{CachedLayer, Key, Record};
use super::config::{self, Vars};
use super::context::os;
use super::copy::{make_dirs, CopyOptions};
use super::history::COMMENT;
use super::{BuildError, Shared, StageResult};
use crate::dockerfile;
use crate::dockerfile::instructions::{Command, CommandLine, Instruction, Stage};

mod copy_step;
mod run_step;

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
            .get(&base, platform.as_ref(), &|line| {
                shared.progress.output(step, line)
            })
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
