//! `POST /build`: what the docker CLI's legacy builder sends (`DOCKER_BUILDKIT=0`, and the
//! CLI without buildx): the context as a tar body, the options as query parameters, the
//! build's progress back as a JSON stream of `{"stream": …}` lines, the image as
//! `{"aux": {"ID": …}}`, and docker's `Successfully built`/`Successfully tagged` lines. The
//! build is Strata's own (`strata_builder::engine::build`), with the CLI's base images.

use std::collections::BTreeMap;
use std::path::{Component, Path};
use std::time::Duration;

use hyper::{Response, StatusCode};
use serde_json::json;
use strata_builder::engine::{self, Backends, BuildOptions, Progress};
use strata_runtime::container::copy::{self, Owner};
use strata_runtime::container::Network;
use strata_runtime::image::Platform;
use strata_runtime::{Reference, Store};

use super::stream::{Body, Sender};
use super::{ApiError, Call, Reply};

/// The build's progress as docker's legacy stream: a `Step` line as each step starts, its
/// output, ` ---> Using cache` for a step taken from the cache.
struct StreamProgress {
    sender: Sender,
    quiet: bool,
}

impl StreamProgress {
    fn say(&self, text: String) {
        if !self.quiet {
            let _ = self.sender.json(&json!({ "stream": text }));
        }
    }
}

impl Progress for StreamProgress {
    fn started(&self, step: usize, label: &str) {
        self.say(format!("Step {step} : {label}\n"));
    }

    fn cached(&self, _step: usize) {
        self.say(" ---> Using cache\n".into());
    }

    fn done(&self, _step: usize, _elapsed: Duration) {}

    fn output(&self, _step: usize, line: &str) {
        self.say(format!("{line}\n"));
    }
}

/// A JSON query parameter of string values (`buildargs`, `labels`).
fn string_map(call: &Call, key: &str) -> Result<BTreeMap<String, String>, ApiError> {
    match call.param(key).filter(|v| !v.is_empty()) {
        None => Ok(BTreeMap::new()),
        Some(text) => {
            let map: BTreeMap<String, Option<String>> = serde_json::from_str(text)
                .map_err(|e| ApiError::bad(format!("invalid {key}: {e}")))?;
            // A build arg given without a value (`--build-arg X` with no X set) is left out.
            Ok(map
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k, v)))
                .collect())
        }
    }
}

pub fn build(store: &Store, call: Call) -> Reply {
    if call.param("remote").is_some_and(|r| !r.is_empty()) {
        return Err(ApiError::bad(
            "remote build contexts are not supported: send the context as a tar",
        ));
    }
    let dockerfile = call
        .param("dockerfile")
        .filter(|d| !d.is_empty())
        .unwrap_or("Dockerfile")
        .to_string();
    // The Dockerfile is in the context: no absolute path, no `..`.
    if Path::new(&dockerfile)
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(ApiError::bad(format!(
            "the Dockerfile ({dockerfile}) must be within the build context"
        )));
    }
    let tags: Vec<Reference> = call
        .query
        .get("t")
        .into_iter()
        .flatten()
        .filter(|t| !t.is_empty())
        .map(|t| Reference::parse(t).map_err(|e| ApiError::bad(format!("invalid tag {t:?}: {e}"))))
        .collect::<Result<_, _>>()?;
    let build_args = string_map(&call, "buildargs")?;
    let labels = string_map(&call, "labels")?;
    let target = call
        .param("target")
        .filter(|t| !t.is_empty())
        .map(String::from);
    let platform = call
        .param("platform")
        .filter(|p| !p.is_empty())
        .map(Platform::parse)
        .transpose()?;
    let network = match call
        .param("networkmode")
        .filter(|n| !n.is_empty() && *n != "default")
    {
        None => Network::Host,
        Some(n) => match Network::parse(n)? {
            n @ (Network::Host | Network::None) => n,
            n => {
                return Err(ApiError::bad(format!(
                    "build network {n}: RUN steps run on host or none"
                )))
            }
        },
    };
    let no_cache = call.flag("nocache");
    let quiet = call.flag("q");
    let input = call
        .stream
        .ok_or_else(|| ApiError::bad("no build context in the request"))?;
    let root = store.path().to_path_buf();
    let (sender, body) = Body::channel();
    std::thread::spawn(move || {
        let progress = StreamProgress {
            sender: sender.clone(),
            quiet,
        };
        let built = (|| -> anyhow::Result<strata_runtime::Digest> {
            let store = Store::open(&root)?;
            // The context, unpacked as `cp` extracts: nothing outside this directory.
            let context = tempfile::Builder::new()
                .prefix("strata-build-context")
                .tempdir()?;
            copy::extract(
                &copy::host_dir(context.path())?,
                "/".as_ref(),
                input,
                Owner::FromArchive,
            )?;
            // Through the context's handle: a link in the archive leads nowhere outside it.
            let root = strata_runtime::cap_std::fs::Dir::open_ambient_dir(
                context.path(),
                strata_runtime::cap_std::ambient_authority(),
            )?;
            let source = engine::read_dockerfile_in(&root, Path::new(&dockerfile))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let opts = BuildOptions {
                dockerfile_name: source.name,
                dockerfile: source.text,
                dockerignore: source.ignore,
                context: context.path().to_path_buf(),
                build_args,
                target,
                platform,
                no_cache,
                labels,
                network,
                // The legacy builder's API has neither (they are BuildKit's session's).
                secrets: BTreeMap::new(),
                ssh: BTreeMap::new(),
            };
            let registry = crate::cli::pull::RegistryFlags {
                tls_verify: true,
                cert_dir: None,
            };
            let bases = crate::cli::build::Bases {
                store: &store,
                registry: &registry,
            };
            let (native, wasm) = crate::cli::run::backends(&store)?;
            let backends = Backends {
                native: &native,
                wasm: &wasm,
                network: None,
            };
            let built = engine::build(&store, &opts, &backends, &bases, &progress)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            for tag in &tags {
                store.set_tag(tag, &built.manifest)?;
            }
            if tags.is_empty() {
                store.add_image(None, &built.manifest)?;
            }
            let _ = sender.json(&json!({ "aux": { "ID": built.id.to_string() } }));
            if quiet {
                // What `docker build -q` prints: the image's ID alone.
                let _ = sender.json(&json!({ "stream": format!("{}\n", built.id) }));
            } else {
                progress.say(format!("Successfully built {}\n", built.id.short()));
                for tag in &tags {
                    progress.say(format!("Successfully tagged {}\n", tag.familiar()));
                }
            }
            Ok(built.id)
        })();
        if let Err(e) = built {
            let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            let message = crate::dedup_chain(&chain);
            let _ =
                sender.json(&json!({ "errorDetail": { "message": message }, "error": message }));
        }
    });
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header("Content-Type", "application/json")
        .body(body)
        .expect("a response"))
}
