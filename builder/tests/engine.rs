//! The build engine's logic on a test backend: no namespaces, no wasmtime. The backend
//! records every task it is given, writes a file into the task's upper layer (so the step
//! makes a layer) and prints a line, so these tests check what the builder hands a backend
//! (spec, root, stdio), what it makes of the result (layers, cache, progress), and that a
//! failing step fails the build.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use strata_builder::engine::{self, Backends, BaseImages, BuildError, BuildOptions, Progress};
use strata_runtime::backend::{Backend, Exit, Stdio, Stream, Task};
use strata_runtime::container::Network;
use strata_runtime::image::Platform;
use strata_runtime::store::{Image, Store};

/// What the backend saw of one task.
#[derive(Debug, Clone)]
struct Seen {
    args: Vec<String>,
    env: Vec<String>,
    cwd: String,
    lowers: usize,
    has_network_namespace: bool,
}

/// Runs nothing: records the task, writes `/ran-<n>` holding the command into the upper
/// layer, prints `ran <command>` on stdout, and exits with the status a command `exit N`
/// asks for (else 0).
#[derive(Default)]
struct TestBackend {
    seen: Mutex<Vec<Seen>>,
}

impl Backend for TestBackend {
    fn run(
        &self,
        task: &Task<'_>,
        stdio: Stdio,
        started: &mut dyn FnMut(strata_runtime::backend::Started) -> strata_runtime::Result<()>,
    ) -> strata_runtime::Result<Exit> {
        started(strata_runtime::backend::Started {
            pid: std::process::id(),
            signal: std::sync::Arc::new(|_| Ok(())),
            exec: None,
            pause: None,
            usage: std::sync::Arc::new(Default::default),
            resize: None,
        })?;
        let process = task.spec.process().as_ref().expect("a process");
        let args = process.args().clone().unwrap_or_default();
        let has_network_namespace = task
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().as_ref())
            .is_some_and(|ns| {
                ns.iter().any(|n| {
                    n.typ() == strata_runtime::oci_spec::runtime::LinuxNamespaceType::Network
                })
            });
        let mut seen = self.seen.lock().unwrap();
        seen.push(Seen {
            args: args.clone(),
            env: process.env().clone().unwrap_or_default(),
            cwd: process.cwd().display().to_string(),
            lowers: task.rootfs.lowers.len(),
            has_network_namespace,
        });
        let command = args.last().cloned().unwrap_or_default();
        std::fs::write(
            task.rootfs.upper.join(format!("ran-{}", seen.len())),
            &command,
        )
        .unwrap();
        if let Stream::Fd(fd) = stdio.stdout {
            writeln!(std::fs::File::from(fd), "ran {command}").unwrap();
        }
        let code = command
            .strip_prefix("exit ")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        Ok(Exit::code(code))
    }
}

/// No base images: the tests build FROM scratch.
struct NoBases;

impl BaseImages for NoBases {
    fn get(
        &self,
        name: &str,
        _: Option<&Platform>,
        _: &(dyn Fn(&str) + Sync),
    ) -> Result<Image, BuildError> {
        Err(BuildError::Other(format!(
            "no base image {name} in this test"
        )))
    }
}

/// Progress as lines: `N label`, `N CACHED`, `N DONE`, `N> output`.
#[derive(Default)]
struct Log(Mutex<Vec<String>>);

impl Progress for Log {
    fn started(&self, step: usize, label: &str) {
        self.0.lock().unwrap().push(format!("{step} {label}"));
    }
    fn cached(&self, step: usize) {
        self.0.lock().unwrap().push(format!("{step} CACHED"));
    }
    fn done(&self, step: usize, _: Duration) {
        self.0.lock().unwrap().push(format!("{step} DONE"));
    }
    fn output(&self, step: usize, line: &str) {
        self.0.lock().unwrap().push(format!("{step}> {line}"));
    }
}

struct Fixture {
    _tmp: tempfile::TempDir,
    store: Store,
    context: std::path::PathBuf,
    backend: TestBackend,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("store")).unwrap();
        let context = tmp.path().join("ctx");
        std::fs::create_dir(&context).unwrap();
        Fixture {
            _tmp: tmp,
            store,
            context,
            backend: TestBackend::default(),
        }
    }

    fn build(&self, dockerfile: &str) -> (Result<engine::Built, BuildError>, Vec<String>) {
        let opts = BuildOptions {
            dockerfile_name: "Dockerfile".into(),
            dockerfile: dockerfile.into(),
            dockerignore: None,
            context: self.context.clone(),
            build_args: BTreeMap::new(),
            target: None,
            platform: Some(Platform::parse("linux/amd64").unwrap()),
            no_cache: false,
            labels: BTreeMap::new(),
            network: Network::None,
            secrets: BTreeMap::new(),
            ssh: BTreeMap::new(),
        };
        let backends = Backends {
            native: &self.backend,
            wasm: &self.backend,
            network: None,
        };
        let log = Log::default();
        let built = engine::build(&self.store, &opts, &backends, &NoBases, &log);
        (built, log.0.into_inner().unwrap())
    }

    fn seen(&self) -> Vec<Seen> {
        self.backend.seen.lock().unwrap().clone()
    }
}

#[test]
fn run_steps_get_a_spec_a_root_and_a_pipe() {
    let f = Fixture::new();
    let (built, log) = f.build("FROM scratch\nENV A=1\nWORKDIR /w\nRUN echo one\nRUN echo two\n");
    built.unwrap();
    let seen = f.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].args, ["/bin/sh", "-c", "echo one"]);
    assert_eq!(seen[1].args, ["/bin/sh", "-c", "echo two"]);
    assert!(
        seen[0].env.contains(&"A=1".to_string()),
        "{:?}",
        seen[0].env
    );
    assert_eq!(seen[0].cwd, "/w");
    // Each step's root is the layers made so far: WORKDIR's, then RUN one's too.
    assert_eq!((seen[0].lowers, seen[1].lowers), (1, 2));
    assert!(seen[0].has_network_namespace, "--network none");
    // The output is the step's, under its number.
    let step_of = |text: &str| {
        log.iter()
            .find(|l| l.contains(text) && !l.contains('>'))
            .and_then(|l| l.split(' ').next())
            .unwrap_or_else(|| panic!("no step {text:?} in {log:?}"))
            .to_string()
    };
    let one = step_of("RUN echo one");
    assert!(log.contains(&format!("{one}> ran echo one")), "{log:?}");
    assert!(log.contains(&format!("{}> ran echo two", step_of("RUN echo two"))));
    // The build wrote no container records.
    let containers = strata_runtime::container::Containers::open(&f.store).unwrap();
    assert!(containers.list().unwrap().is_empty());
}

#[test]
fn a_cached_step_does_not_run_and_a_changed_one_does() {
    let f = Fixture::new();
    let first = f.build("FROM scratch\nRUN echo a\nRUN echo b\n").0.unwrap();
    assert_eq!(f.seen().len(), 2);
    let (again, log) = f.build("FROM scratch\nRUN echo a\nRUN echo b\n");
    assert_eq!(again.unwrap().id, first.id, "same steps, same image");
    assert_eq!(f.seen().len(), 2, "nothing ran again: {log:?}");
    assert_eq!(log.iter().filter(|l| l.ends_with("CACHED")).count(), 2);
    let changed = f.build("FROM scratch\nRUN echo a\nRUN echo c\n").0.unwrap();
    assert_ne!(changed.id, first.id);
    let seen = f.seen();
    assert_eq!(seen.len(), 3, "only the changed step ran");
    assert_eq!(seen[2].args.last().unwrap(), "echo c");
}

#[test]
fn a_failing_step_fails_the_build_and_leaves_nothing() {
    let f = Fixture::new();
    let (built, _) = f.build("FROM scratch\nRUN exit 3\n");
    let e = built.unwrap_err().to_string();
    assert!(e.contains("exit code: 3"), "{e}");
    let containers = strata_runtime::container::Containers::open(&f.store).unwrap();
    assert!(containers.list().unwrap().is_empty());
    // No scratch directory is left either.
    let left: Vec<_> = std::fs::read_dir(f.store.path().join("containers"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.iter().all(|n| n.to_string_lossy().starts_with('.')),
        "{left:?}"
    );
}
