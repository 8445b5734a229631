//! The image endpoints: list, inspect, tag, remove, pull and push, on the store as
//! `images`, `inspect`, `tag`, `rmi`, `pull` and `push` use it.

use hyper::{Response, StatusCode};
use serde_json::{json, Value};
use strata_runtime::registry::Event;
use strata_runtime::{Reference, Store};

use super::stream::{Body, Sender};
use super::{json_reply, ApiError, Call, Reply};
use crate::progress::Report;

/// Seconds since the epoch of an RFC 3339 time (0 when there is none).
pub fn unix_time(t: Option<&str>) -> i64 {
    crate::format::parse_time(t).map_or(0, |t| t.timestamp())
}

pub fn list(store: &Store, call: &Call) -> Reply {
    let filters = crate::format::KeyFilters::parse(
        &super::resources::filters(call)?,
        &["reference", "dangling", "label"],
    )
    .map_err(|e| ApiError::bad(e.to_string()))?;
    let mut out = Vec::new();
    for image in store.images()? {
        let tags = familiar_names(&image);
        let labels = image
            .config
            .config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .unwrap_or_default();
        let pass = filters.matches(|key, value| match key {
            "reference" => tags.iter().any(|t| reference_matches(value, t)),
            "dangling" => matches!(value, "true" | "1") == tags.is_empty(),
            _ => crate::format::KeyFilters::label_holds(&labels, value),
        });
        if !pass {
            continue;
        }
        let size = crate::cli::image_size(store, &image);
        out.push(json!({
            "Containers": -1,
            "Created": unix_time(image.config.created.as_deref()),
            "Id": image.id().to_string(),
            "Labels": if labels.is_empty() { Value::Null } else { json!(labels) },
            "ParentId": "",
            "RepoDigests": [],
            "RepoTags": tags,
            "SharedSize": -1,
            "Size": size,
            "VirtualSize": size,
        }));
    }
    json_reply(StatusCode::OK, &Value::Array(out))
}

/// An image's names as docker shows them (`busybox:1`, not `docker.io/library/busybox:1`).
fn familiar_names(image: &strata_runtime::store::Image) -> Vec<String> {
    image
        .names
        .iter()
        .filter_map(|n| Reference::parse(n).ok())
        .map(|r| r.familiar())
        .collect()
}

/// docker's `reference` filter: `name[:tag]` with `*` wildcards (path.Match), against an
/// image's familiar name; a pattern without a tag matches every tag of the repository.
fn reference_matches(pattern: &str, tag: &str) -> bool {
    let (repo, _) = tag.rsplit_once(':').unwrap_or((tag, ""));
    glob(pattern, tag) || (!pattern.contains(':') && glob(pattern, repo))
}

/// `*` matches any run of characters but `/`; everything else matches itself.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => {
            let Some(after) = text.strip_prefix(head) else {
                return false;
            };
            (0..=after.len())
                .take_while(|&i| !after[..i].contains('/'))
                .filter(|&i| after.is_char_boundary(i))
                .any(|i| glob(rest, &after[i..]))
        }
    }
}

/// A missing image as docker words it (the CLI pulls on this 404).
fn resolve(store: &Store, name: &str) -> Result<strata_runtime::store::Image, ApiError> {
    store.resolve(name).map_err(|e| match e.kind() {
        strata_runtime::ErrorKind::NotFound => {
            ApiError::not_found(format!("No such image: {name}"))
        }
        _ => e.into(),
    })
}

pub fn inspect(store: &Store, name: &str) -> Reply {
    let image = resolve(store, name)?;
    json_reply(
        StatusCode::OK,
        &crate::cli::inspect::describe(store, &image),
    )
}

pub fn tag(store: &Store, name: &str, call: &Call) -> Reply {
    let image = resolve(store, name)?;
    let repo = call
        .param("repo")
        .ok_or_else(|| ApiError::bad("repository name (repo) is required"))?;
    let target = match call.param("tag").filter(|t| !t.is_empty()) {
        Some(tag) => format!("{repo}:{tag}"),
        None => repo.to_string(),
    };
    let target = Reference::parse(&target)?;
    store.set_tag(&target, &image.manifest_descriptor)?;
    super::empty_reply(StatusCode::CREATED)
}

pub fn remove(store: &Store, name: &str, call: &Call) -> Reply {
    resolve(store, name)?;
    let done = crate::cli::rmi::remove(store, name, call.flag("force"))?;
    if done.iter().any(|(what, _)| *what == "Deleted") {
        strata_runtime::gc::prune(store)?;
    }
    let report: Vec<Value> = done.iter().map(|(what, n)| json!({ *what: n })).collect();
    json_reply(StatusCode::OK, &Value::Array(report))
}

/// A pull's or push's report as docker's JSON progress messages.
struct JsonReport(Sender);

impl Report for JsonReport {
    fn line(&self, text: &str) {
        let _ = self.0.json(&json!({ "status": text }));
    }

    fn event(&self, event: &Event) {
        let message = match event {
            Event::Resolved(_) => return,
            Event::Layer { id, status } => json!({
                "status": status.to_string(), "progressDetail": {}, "id": id.short(),
            }),
            Event::Bytes {
                id,
                status,
                done,
                total,
            } => json!({
                "status": status.to_string(),
                "progressDetail": { "current": done, "total": total },
                "id": id.short(),
            }),
        };
        let _ = self.0.json(&message);
    }
}

/// A JSON progress stream fed by `work` on a thread: its report, then its error as docker
/// ends a failed stream (`errorDetail`), which the CLI prints and exits 1 for.
fn progress_stream(work: impl FnOnce(&JsonReport) -> anyhow::Result<()> + Send + 'static) -> Reply {
    let (sender, body) = Body::channel();
    std::thread::spawn(move || {
        let report = JsonReport(sender);
        if let Err(e) = work(&report) {
            let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            let message = crate::dedup_chain(&chain);
            let _ = report
                .0
                .json(&json!({ "errorDetail": { "message": message }, "error": message }));
        }
    });
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header("Content-Type", "application/json")
        .body(body)
        .expect("a response"))
}

/// `POST /images/create?fromImage=…&tag=…`: a pull, as `strata pull` does it (the registry
/// credentials are docker's config.json's, as the CLI's; `X-Registry-Auth` is not read).
pub fn pull(store: &Store, call: &Call) -> Reply {
    if call.param("fromSrc").is_some() {
        return Err(ApiError::bad(
            "importing through the API is not supported: use strata import",
        ));
    }
    let from = call
        .param("fromImage")
        .filter(|f| !f.is_empty())
        .ok_or_else(|| ApiError::bad("fromImage is required"))?;
    let name = match call.param("tag").filter(|t| !t.is_empty()) {
        Some(tag) if tag.contains(':') => format!("{from}@{tag}"),
        Some(tag) => format!("{from}:{tag}"),
        None => from.to_string(),
    };
    let reference = Reference::parse(&name)?;
    let opts = strata_runtime::registry::RegistryOptions {
        tls_verify: true,
        cert_dir: None,
        platform: call
            .param("platform")
            .filter(|p| !p.is_empty())
            .map(strata_runtime::image::Platform::parse)
            .transpose()?,
    };
    let root = store.path().to_path_buf();
    progress_stream(move |report| {
        let store = Store::open(&root)?;
        crate::cli::pull::pull(&store, &reference, &opts, Some(report))?;
        Ok(())
    })
}

/// `POST /images/{name}/push?tag=…`, as `strata push`.
pub fn push(store: &Store, name: &str, call: &Call) -> Reply {
    let target = match call.param("tag").filter(|t| !t.is_empty()) {
        Some(tag) => format!("{name}:{tag}"),
        None => name.to_string(),
    };
    let image = resolve(store, &target)?;
    let target = Reference::parse(&target)?;
    let root = store.path().to_path_buf();
    progress_stream(move |report| {
        let store = Store::open(&root)?;
        let opts = strata_runtime::registry::RegistryOptions {
            tls_verify: true,
            cert_dir: None,
            platform: None,
        };
        crate::cli::push::push(&store, &image, &target, &opts, Some(report))?;
        Ok(())
    })
}

/// `GET /images/{name}/history`: `history`'s entries, newest first; the top one carries
/// the image's ID and names, the others `<missing>` as docker's.
pub fn history(store: &Store, name: &str) -> Reply {
    let image = resolve(store, name)?;
    let entries = crate::cli::history::entries(store, &image)?;
    let tags = familiar_names(&image);
    let out: Vec<Value> = entries
        .iter()
        .rev()
        .enumerate()
        .map(|(i, (created, created_by, size, comment))| {
            json!({
                "Id": if i == 0 { image.id().to_string() } else { "<missing>".to_string() },
                "Created": unix_time(created.as_deref()),
                "CreatedBy": created_by,
                "Tags": if i == 0 { json!(tags) } else { Value::Null },
                "Size": size.unwrap_or(0),
                "Comment": comment,
            })
        })
        .collect();
    json_reply(StatusCode::OK, &Value::Array(out))
}

/// `GET /images/get?names=…` and `GET /images/{name}/get`: `strata save`'s archive (an OCI
/// layout that docker loads too), streamed.
pub fn save(store: &Store, names: Vec<String>) -> Reply {
    if names.is_empty() {
        return Err(ApiError::bad("no image names given"));
    }
    for n in &names {
        resolve(store, n)?;
    }
    let selected = crate::cli::save::select(store, &names)?;
    let root = store.path().to_path_buf();
    let (sender, body) = Body::channel();
    std::thread::spawn(move || {
        let Ok(store) = Store::open(&root) else {
            return;
        };
        let out = std::io::BufWriter::with_capacity(1 << 20, super::stream::Writer(sender));
        if let Ok(out) = strata_runtime::archive::save(&store, &selected, out) {
            let _ = out.into_inner();
        }
        // A save that failed ends the body short: the client's tar reader reports it.
    });
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header("Content-Type", "application/x-tar")
        .body(body)
        .expect("a response"))
}

/// `POST /images/load`: an archive as `strata load` takes it, checked as it loads, then
/// docker's `Loaded image: …` lines.
pub fn load(store: &Store, call: Call) -> Reply {
    let input = call
        .stream
        .ok_or_else(|| ApiError::bad("no archive in the request"))?;
    let loaded = strata_runtime::archive::load(store, input, None, None)?;
    let mut text = String::new();
    for (id, names) in &loaded.images {
        if names.is_empty() {
            text.push_str(&format!("Loaded image ID: {id}\n"));
        }
        for n in names {
            text.push_str(&format!("Loaded image: {}\n", n.familiar()));
        }
    }
    json_reply(StatusCode::OK, &json!({ "stream": text }))
}

#[cfg(test)]
mod tests {
    use super::reference_matches;

    #[test]
    fn reference_filters_as_docker_matches_them() {
        assert!(reference_matches("built:1", "built:1"));
        assert!(reference_matches("built", "built:1"));
        assert!(!reference_matches("built:2", "built:1"));
        assert!(reference_matches("bu*", "built:1"));
        assert!(reference_matches("*:1", "built:1"));
        assert!(!reference_matches("a*", "a/b:1"));
        assert!(reference_matches("a/*", "a/b:1"));
        assert!(!reference_matches("bb", "bbb:1"));
    }
}
