//! The image endpoints: list, inspect, tag, remove, on the store as `images`, `inspect`,
//! `tag` and `rmi` use it.

use hyper::StatusCode;
use serde_json::{json, Value};
use strata_runtime::{Reference, Store};

use super::{json_reply, ApiError, Call, Reply};

/// Seconds since the epoch of an RFC 3339 time (0 when there is none).
pub fn unix_time(t: Option<&str>) -> i64 {
    crate::format::parse_time(t).map_or(0, |t| t.timestamp())
}

pub fn list(store: &Store, call: &Call) -> Reply {
    let dangling_only = super::resources::filters(call)?
        .iter()
        .any(|f| f == "dangling=true");
    let mut out = Vec::new();
    for image in store.images()? {
        let tags: Vec<String> = image
            .names
            .iter()
            .filter_map(|n| Reference::parse(n).ok())
            .map(|r| r.familiar())
            .collect();
        if dangling_only && !tags.is_empty() {
            continue;
        }
        let size = crate::cli::image_size(store, &image);
        let labels = image
            .config
            .config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .map_or(Value::Null, |l| json!(l));
        out.push(json!({
            "Containers": -1,
            "Created": unix_time(image.config.created.as_deref()),
            "Id": image.id().to_string(),
            "Labels": labels,
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
