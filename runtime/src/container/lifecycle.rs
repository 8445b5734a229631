//! A container's life, written once for every caller: create → spec → the one backend
//! choice → record → run → final record (or removal, `--rm`). `strata run` goes through
//! all of it; a build's RUN step, which keeps no record, through `prepare` and a backend.

use cap_std::fs::Dir;
use oci_spec::runtime::Spec;

use super::{make_spec, now, Container, Containers, RunOptions, Status};
use crate::backend::{self, Backends, Exit, Kind, Stdio, Task};
use crate::error::Result;
use crate::fs::Overlay;
use crate::image::ImageConfig;
use crate::store::Image;

/// The runtime spec of a container of an image (its `config`; `wasm_image` when the image
/// says it is Wasm) run with `opts`, and the backend that runs it: `forced` (`--runtime`),
/// else the one rule, [`backend::choose`], which may look at the program in the container's
/// root (opened by `root` only then).
pub fn prepare(
    config: &ImageConfig,
    wasm_image: bool,
    opts: &RunOptions,
    hostname: &str,
    root: impl FnOnce() -> Result<Overlay<Dir>>,
    forced: Option<Kind>,
) -> Result<(Spec, Kind)> {
    let spec = make_spec(config, opts, hostname)?;
    let kind = match forced {
        Some(kind) => kind,
        None if wasm_image => Kind::Wasm,
        None => {
            let args = spec
                .process()
                .as_ref()
                .and_then(|p| p.args().clone())
                .unwrap_or_default();
            backend::choose(false, &root()?, &args)
        }
    };
    Ok((spec, kind))
}

impl Containers<'_> {
    /// A new container of `image` (named by the user `image_name`) for `opts`: its record
    /// (`auto_remove` for `--rm`), its spec written as the bundle's `config.json`, and its
    /// backend chosen. Nothing is left behind when it cannot be prepared.
    pub fn create_for(
        &self,
        image: &Image,
        image_name: &str,
        opts: &RunOptions,
        auto_remove: bool,
        forced: Option<Kind>,
    ) -> Result<(Container, Spec)> {
        // A named container's record is written at once, with a provisional kind.
        let provisional = forced.unwrap_or(Kind::Wasm);
        let mut container = self.create(image, image_name, provisional, opts.name.as_deref())?;
        container.auto_remove = auto_remove;
        let prepared = (|| {
            let (spec, kind) = prepare(
                &image.config,
                backend::wasm_image(image),
                opts,
                container.short_id(),
                || self.root(&container),
                forced,
            )?;
            container.runtime = kind;
            self.save_spec(&container, &spec)?;
            Ok(spec)
        })();
        match prepared {
            Ok(spec) => Ok((container, spec)),
            Err(e) => {
                self.remove(&container)?;
                Err(e)
            }
        }
    }

    /// Run a created container to its end on its backend: its record says it runs (and
    /// which process) once the backend has started it, and how it ended afterwards — or,
    /// for `--rm`, the container is removed. An engine error is recorded as docker records
    /// it (exit code 125, the error's text) and returned.
    pub fn run(
        &self,
        container: &mut Container,
        spec: &Spec,
        backends: &Backends<'_>,
        stdio: Stdio,
    ) -> Result<Exit> {
        let rootfs = self.rootfs(container);
        let task = Task {
            id: &container.id,
            spec,
            rootfs: &rootfs,
        };
        let mut record = container.clone();
        let mut started = |pid: u32| {
            record.started(pid);
            self.save(&record)
        };
        let outcome = backends
            .get(container.runtime)
            .run(&task, stdio, &mut started);
        if container.auto_remove {
            // The final record would only serve a later `ps`/`inspect`.
            self.remove(container)?;
            return outcome;
        }
        // The record as `started` left it: the container, and its process once it ran.
        *container = record;
        container.status = Status::Exited;
        container.exit_code = Some(match &outcome {
            Ok(exit) => exit.code,
            Err(_) => 125,
        });
        container.finished_at = Some(now());
        container.oom_killed = outcome.as_ref().is_ok_and(|e| e.oom_killed);
        container.error = outcome.as_ref().err().map(|e| e.to_string());
        // Removed while it ran (`rm -f`): there is no record left to write.
        self.save_unless_removed(container)?;
        outcome
    }
}
