//! `strata build`: a Dockerfile and a context become an OCI image in the store, one layer
//! per filesystem-changing instruction (RUN, COPY, ADD, WORKDIR), with BuildKit's history
//! and a cache that makes an unchanged rebuild nearly free.
//!
//! Stages build in dependency order, independent ones in parallel. RUN steps execute in a
//! temporary container (a directory and a spec, no record) on one of the runtime's
//! `Backends`, chosen by the runtime's one rule (`backend::choose`: wasm for `wasi/wasm`
//! stages and Wasm programs): this crate never names a backend. Each step's output reaches
//! `Progress::output` attributed to its step.

mod cache;
pub mod config;
mod context;
mod copy;
mod history;
mod stage;

pub use context::{read_dockerfile, read_dockerfile_in, DockerfileSource};

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::Mutex;
use std::time::Duration;

use strata_runtime::container::Network;
use strata_runtime::image::{Descriptor, ImageConfig, Platform};
use strata_runtime::store::Image;
use strata_runtime::{Digest, Store};

use crate::dockerfile::instructions::{parse_stages, Instruction, Stages};
use crate::dockerfile::{self, ParseError};

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// A step failed: `Dockerfile:7: RUN …: message`.
    #[error("{file}:{line}: {message}")]
    Step {
        file: String,
        line: usize,
        message: String,
    },
    #[error(transparent)]
    Runtime(#[from] strata_runtime::Error),
    #[error("{0}")]
    Other(String),
}

/// What to build.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The Dockerfile's name for messages (`Dockerfile`) and its text.
    pub dockerfile_name: String,
    pub dockerfile: String,
    /// The Dockerfile's own ignore file (`<name>.dockerignore` beside it), which replaces
    /// the context's `.dockerignore`.
    pub dockerignore: Option<String>,
    /// The context directory.
    pub context: PathBuf,
    pub build_args: BTreeMap<String, String>,
    /// The stage to build (default: the last).
    pub target: Option<String>,
    /// The target platform (default: the host's, or the base image's).
    pub platform: Option<Platform>,
    pub no_cache: bool,
    /// `--label`s added to the image.
    pub labels: BTreeMap<String, String>,
    /// Network of RUN steps on the native backend (docker's default is the host's).
    pub network: Network,
    /// `--secret`s by id: what `RUN --mount=type=secret` gives a step. Never written to a
    /// layer, the cache or the history; a step's key names only the id and where it goes.
    pub secrets: BTreeMap<String, Vec<u8>>,
    /// `--ssh`: agent sockets by id (`default`), bound into `RUN --mount=type=ssh` steps.
    pub ssh: BTreeMap<String, PathBuf>,
}

pub use strata_runtime::backend::Backends;

/// Base images by name: from the store, pulled when missing (the CLI decides how).
pub trait BaseImages: Sync {
    /// `output` takes lines about getting it (a pull's progress), shown under the FROM step.
    fn get(
        &self,
        name: &str,
        platform: Option<&Platform>,
        output: &(dyn Fn(&str) + Sync),
    ) -> Result<Image, BuildError>;
}

/// BuildKit-like progress: numbered steps that are cached or done.
pub trait Progress: Sync {
    fn started(&self, step: usize, label: &str);
    fn cached(&self, step: usize);
    fn done(&self, step: usize, elapsed: Duration);
    /// A line the step's process printed (stdout and stderr together, without the newline).
    fn output(&self, step: usize, line: &str);
}

/// The built image.
#[derive(Debug, Clone)]
pub struct Built {
    pub manifest: Descriptor,
    /// Docker's image ID (the config digest).
    pub id: Digest,
}

/// A finished stage: what later stages and COPY --from see.
#[derive(Debug, Clone)]
pub(crate) struct StageResult {
    pub config: ImageConfig,
    pub layers: Vec<Descriptor>,
    pub key: cache::Key,
}

/// What every stage of one build shares.
pub(crate) struct Shared<'a> {
    pub store: &'a Store,
    pub opts: &'a BuildOptions,
    pub backends: &'a Backends<'a>,
    pub bases: &'a dyn BaseImages,
    pub progress: &'a dyn Progress,
    pub cache: cache::Cache<'a>,
    pub escape: char,
    /// The build context, opened once: every context path resolves inside it.
    pub context: cap_std::fs::Dir,
    /// Its `.dockerignore` rules, read once.
    pub ignore: context::Ignore,
    /// ARGs before the first FROM, after `--build-arg`s.
    pub global_args: Vec<(String, Option<String>)>,
    /// Stage names (lower case) by index.
    pub names: Vec<Option<String>>,
    /// Stage indexes by name (lower case), the first stage of a name.
    pub by_name: HashMap<String, usize>,
    pub target_name: String,
    pub results: Mutex<HashMap<usize, StageResult>>,
    pub steps: AtomicUsize,
    /// SOURCE_DATE_EPOCH as an RFC 3339 time, when set.
    pub epoch: Option<String>,
}

impl Shared<'_> {
    pub fn error(&self, line: usize, message: impl Into<String>) -> BuildError {
        BuildError::Step {
            file: self.opts.dockerfile_name.clone(),
            line,
            message: message.into(),
        }
    }

    /// The stage a `--from` name refers to, by name or index.
    pub fn stage_index(&self, name: &str) -> Option<usize> {
        self.stage_named(name)
            .or_else(|| name.parse::<usize>().ok().filter(|&i| i < self.names.len()))
    }

    /// The stage a `FROM` names (by name only: `FROM 0` is an image).
    pub fn stage_named(&self, name: &str) -> Option<usize> {
        self.by_name.get(&name.to_ascii_lowercase()).copied()
    }

    /// The context as a COPY source, with `extra` rules (`--exclude`) after its own.
    pub fn context_source(&self, extra: context::Ignore) -> Result<context::Source, BuildError> {
        let dir = self
            .context
            .try_clone()
            .map_err(|e| BuildError::Other(format!("open the build context: {e}")))?;
        Ok(context::Source::context(
            dir,
            self.ignore.clone().with(extra),
        ))
    }

    pub fn now(&self) -> String {
        self.epoch
            .clone()
            .unwrap_or_else(strata_runtime::container::now)
    }
}

/// Build `opts` into an image in `store` (not tagged: the caller names it).
pub fn build(
    store: &Store,
    opts: &BuildOptions,
    backends: &Backends<'_>,
    bases: &dyn BaseImages,
    progress: &dyn Progress,
) -> Result<Built, BuildError> {
    let df = dockerfile::parse(&opts.dockerfile_name, &opts.dockerfile)?;
    let stages = parse_stages(&df)?;
    if stages.stages.is_empty() {
        return Err(BuildError::Other(
            "dockerfile contains no stages to build".into(),
        ));
    }
    let names: Vec<Option<String>> = stages
        .stages
        .iter()
        .map(|s| s.from.stage_name.clone())
        .collect();
    let target = match &opts.target {
        None => stages.stages.len() - 1,
        Some(t) => {
            let lower = t.to_ascii_lowercase();
            names
                .iter()
                .position(|n| n.as_deref() == Some(lower.as_str()))
                .ok_or_else(|| {
                    BuildError::Other(format!("target stage {t:?} could not be found"))
                })?
        }
    };
    let target_name = names[target].clone().unwrap_or_else(|| "default".into());
    let mut by_name = HashMap::new();
    for (i, n) in names.iter().enumerate() {
        if let Some(n) = n {
            by_name.entry(n.clone()).or_insert(i);
        }
    }
    let _writer = store.writer_lock()?;
    let context = cap_std::fs::Dir::open_ambient_dir(&opts.context, cap_std::ambient_authority())
        .map_err(|e| BuildError::Other(format!("open the build context: {e}")))?;
    let ignore = context::Ignore::read(&context, opts.dockerignore.as_deref())?;
    let shared = Shared {
        store,
        opts,
        backends,
        bases,
        progress,
        cache: cache::Cache::open(store)?,
        escape: df.escape,
        context,
        ignore,
        global_args: Vec::new(),
        names,
        by_name,
        target_name,
        results: Mutex::new(HashMap::new()),
        steps: AtomicUsize::new(0),
        epoch: source_date_epoch(),
    };
    let shared = Shared {
        global_args: global_args(&shared, &stages)?,
        ..shared
    };
    let waves = plan(target, |i| stage_deps(&shared, &stages, i))?;
    build_stages(&shared, &stages, &waves)?;
    let result = shared
        .results
        .lock()
        .unwrap()
        .remove(&target)
        .expect("the target was built");
    let mut config = result.config;
    if !opts.labels.is_empty() {
        let c = config.container_config();
        let labels = c.labels.get_or_insert_with(BTreeMap::new);
        labels.extend(opts.labels.clone());
    }
    let manifest = store.put_image(&config, result.layers)?;
    let image = store.image(&manifest)?;
    Ok(Built {
        id: image.id().clone(),
        manifest,
    })
}

/// The build cache's records and the layers they name (`system df`).
pub fn cache_usage(store: &Store) -> Result<Vec<Option<Digest>>, BuildError> {
    Ok(cache::Cache::open(store)?.layers())
}

/// The store cache that holds `RUN --mount=type=cache` directories (one per cache id).
pub(crate) const MOUNT_CACHE: &str = "mounts";

/// Forget cache records whose layers `system prune` removed; with `all`, every record and
/// the `RUN --mount=type=cache` directories too. Returns how many records went.
pub fn prune_cache(store: &Store, all: bool) -> Result<usize, BuildError> {
    let removed = cache::Cache::open(store)?.prune(all);
    if all {
        store.remove_cache(MOUNT_CACHE)?;
    }
    Ok(removed)
}

fn source_date_epoch() -> Option<String> {
    let secs: i64 = std::env::var("SOURCE_DATE_EPOCH").ok()?.parse().ok()?;
    let t = chrono::DateTime::<chrono::Utc>::from_timestamp(secs, 0)?;
    Some(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// The global ARGs, in order, each overridden by a `--build-arg` of its name.
fn global_args(
    shared: &Shared<'_>,
    stages: &Stages,
) -> Result<Vec<(String, Option<String>)>, BuildError> {
    let mut args: Vec<(String, Option<String>)> = stage::automatic_args(shared, None);
    for cmd in &stages.meta_args {
        let Instruction::Arg(decls) = &cmd.instruction else {
            continue;
        };
        for d in decls {
            let value = match shared.opts.build_args.get(&d.key) {
                Some(v) => Some(v.clone()),
                None => match &d.value {
                    Some(v) => {
                        let lookup = |k: &str| {
                            args.iter()
                                .rev()
                                .find(|(n, _)| n == k)
                                .and_then(|(_, v)| v.clone())
                        };
                        Some(
                            dockerfile::expand(v, &lookup, shared.escape)
                                .map_err(|e| shared.error(cmd.line, e.to_string()))?,
                        )
                    }
                    None => None,
                },
            };
            args.retain(|(n, _)| n != &d.key);
            args.push((d.key.clone(), value));
        }
    }
    Ok(args)
}

/// The earlier stages stage `i` uses (its base and COPY --from sources); errors for
/// references to itself or later stages (cycles).
fn stage_deps(shared: &Shared<'_>, stages: &Stages, i: usize) -> Result<Vec<usize>, BuildError> {
    let stage = &stages.stages[i];
    let mut out = Vec::new();
    let base = stage::expand_global(shared, &stage.from.base, stage.line)?;
    if let Some(j) = shared.stage_named(&base) {
        if j >= i {
            return Err(shared.error(
                stage.line,
                format!(
                    "circular dependency detected on stage: {}",
                    shared.names[i].clone().unwrap_or_else(|| i.to_string())
                ),
            ));
        }
        out.push(j);
    }
    for cmd in &stage.commands {
        let Instruction::Copy(c) = &cmd.instruction else {
            continue;
        };
        let Some(from) = &c.from else { continue };
        if from.contains('$') {
            return Err(shared.error(cmd.line, "variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround"));
        }
        if let Some(j) = shared.stage_index(from) {
            if j >= i {
                let current = shared.names[i].clone().unwrap_or_else(|| i.to_string());
                return Err(if j == i {
                    shared.error(
                        cmd.line,
                        format!("circular dependency detected on stage: {current}"),
                    )
                } else {
                    shared.error(cmd.line, format!("cannot copy from stage {from:?}, it needs to be defined before current stage {current:?}"))
                });
            }
            out.push(j);
        }
    }
    Ok(out)
}

/// The stages `target` needs, in waves: a stage's dependencies are all in earlier waves,
/// so each wave can build in parallel. `deps` (called once per needed stage) gives a
/// stage's dependencies, always earlier stages; that makes index order a topological
/// order, and a stage's wave is one more than its latest dependency's. Linear in the
/// stages and edges.
fn plan(
    target: usize,
    mut deps: impl FnMut(usize) -> Result<Vec<usize>, BuildError>,
) -> Result<Vec<Vec<usize>>, BuildError> {
    let mut needed: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut stack = vec![target];
    while let Some(i) = stack.pop() {
        if needed.contains_key(&i) {
            continue;
        }
        let d = deps(i)?;
        debug_assert!(d.iter().all(|&j| j < i));
        stack.extend(d.iter().copied().filter(|j| !needed.contains_key(j)));
        needed.insert(i, d);
    }
    let mut order: Vec<usize> = needed.keys().copied().collect();
    order.sort_unstable();
    let mut wave_of: HashMap<usize, usize> = HashMap::with_capacity(order.len());
    let mut waves: Vec<Vec<usize>> = Vec::new();
    for i in order {
        let w = needed[&i]
            .iter()
            .map(|j| wave_of.get(j).map_or(0, |w| w + 1))
            .max()
            .unwrap_or(0);
        wave_of.insert(i, w);
        if w == waves.len() {
            waves.push(Vec::new());
        }
        waves[w].push(i);
    }
    Ok(waves)
}

/// Build the stages wave by wave, the stages of a wave in parallel.
fn build_stages(
    shared: &Shared<'_>,
    stages: &Stages,
    waves: &[Vec<usize>],
) -> Result<(), BuildError> {
    // A wave of many independent stages builds a bounded number at a time.
    const PARALLEL: usize = 16;
    for ready in waves.iter().flat_map(|w| w.chunks(PARALLEL)) {
        let results: Vec<Result<(usize, StageResult), BuildError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = ready
                .iter()
                .map(|&i| {
                    let stage = &stages.stages[i];
                    scope.spawn(move || stage::build_stage(shared, i, stage).map(|r| (i, r)))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(BuildError::Other("a stage's build panicked".into()))
                    })
                })
                .collect()
        });
        for r in results {
            let (i, result) = r?;
            shared.results.lock().unwrap().insert(i, result);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_orders_needed_stages_in_waves() {
        // 0 ← 1 ← 3, 0 ← 2 ← 3 (a diamond), 4 unused, 5 the target uses 3 and 0.
        let deps: Vec<Vec<usize>> = vec![vec![], vec![0], vec![0], vec![1, 2], vec![0], vec![3, 0]];
        let mut asked = Vec::new();
        let waves = plan(5, |i| {
            asked.push(i);
            Ok(deps[i].clone())
        })
        .unwrap();
        assert_eq!(waves, vec![vec![0], vec![1, 2], vec![3], vec![5]]);
        asked.sort_unstable();
        assert_eq!(asked, vec![0, 1, 2, 3, 5], "each needed stage's deps once");
        let err = plan(2, |i| {
            if i == 1 {
                Err(BuildError::Other("bad".into()))
            } else {
                Ok(vec![i.saturating_sub(1)]
                    .into_iter()
                    .filter(|&j| j < i)
                    .collect())
            }
        });
        assert!(matches!(err, Err(BuildError::Other(m)) if m == "bad"));
    }

    #[test]
    fn plan_is_linear_in_a_long_chain() {
        let n = 50_000;
        let started = std::time::Instant::now();
        let waves = plan(n - 1, |i| Ok(if i == 0 { vec![] } else { vec![i - 1] })).unwrap();
        assert_eq!(waves.len(), n);
        assert!(waves.iter().enumerate().all(|(w, s)| s == &[w]));
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }
}
