//! The system endpoints (`/_ping`, `/version`, `/info`), volumes and networks: the CLI's
//! documents (`cli::info`, `cli::version`, `cli::volume`, `cli::network`) in the API's
//! envelopes.

use std::collections::BTreeMap;

use hyper::{Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use strata_net::networks::NetworkOptions;
use strata_net::Networks;
use strata_runtime::volume::Volumes;
use strata_runtime::Store;

use super::stream::Body;
use super::{empty_reply, json_reply, ApiError, Call, Reply};
use crate::cli::version::API_VERSION;

/// `/_ping`: `OK`, with docker's headers for the legacy builder (what the CLI without buildx
/// uses anyway).
pub fn ping(head: bool) -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header("Content-Type", "text/plain; charset=utf-8")
        .header("Cache-Control", "no-cache, no-store, must-revalidate")
        .header("Pragma", "no-cache")
        .header("Builder-Version", "1")
        .body(Body::full(if head { "" } else { "OK" }))
        .expect("a response")
}

/// `/version`: the server half of `strata version`'s document, in the API's names.
pub fn version() -> Reply {
    let commit = option_env!("STRATA_GIT_COMMIT").unwrap_or("");
    let mut server =
        crate::cli::version::value(&crate::cli::version::built(), commit)["Server"].take();
    if let Value::Object(map) = &mut server {
        map.remove("APIVersion");
        map.insert("ApiVersion".into(), json!(API_VERSION));
        map.insert("MinAPIVersion".into(), json!(super::MIN_API_VERSION));
    }
    if let Some(details) = server["Components"][0]["Details"].as_object_mut() {
        details.insert("MinAPIVersion".into(), json!(super::MIN_API_VERSION));
    }
    json_reply(StatusCode::OK, &server)
}

pub fn info(store: &Store) -> Reply {
    json_reply(StatusCode::OK, &crate::cli::info::info(store)?)
}

/// docker's `filters` parameter: JSON of `{"key": ["value", …]}` (or the old
/// `{"key": {"value": true}}`), as `KEY=VALUE` strings for the CLI's filter parsers.
pub fn filters(call: &Call) -> Result<Vec<String>, ApiError> {
    let Some(text) = call.param("filters").filter(|t| !t.is_empty()) else {
        return Ok(Vec::new());
    };
    let parsed: BTreeMap<String, Value> =
        serde_json::from_str(text).map_err(|e| ApiError::bad(format!("invalid filter: {e}")))?;
    let mut out = Vec::new();
    for (key, values) in parsed {
        match values {
            Value::Array(list) => {
                for v in list {
                    out.push(format!("{key}={}", v.as_str().unwrap_or_default()));
                }
            }
            Value::Object(map) => {
                for (v, on) in map {
                    if on.as_bool().unwrap_or(false) {
                        out.push(format!("{key}={v}"));
                    }
                }
            }
            _ => return Err(ApiError::bad(format!("invalid filter '{key}'"))),
        }
    }
    Ok(out)
}

pub fn volumes(store: &Store, call: &Call) -> Reply {
    let filters =
        crate::format::KeyFilters::parse(&filters(call)?, &["dangling", "driver", "label", "name"])
            .map_err(|e| ApiError::bad(e.to_string()))?;
    let volumes = Volumes::open(store)?;
    let mut listed = Vec::new();
    let counts = volumes.use_counts()?;
    for v in volumes.list()? {
        let unused = !counts.contains_key(&v.name);
        if filters.matches(|key, value| match key {
            "dangling" => matches!(value, "true" | "1") == unused,
            "driver" => value == "local",
            "name" => v.name.contains(value),
            _ => crate::format::KeyFilters::label_holds(&v.labels, value),
        }) {
            listed.push(crate::cli::volume::describe(&v));
        }
    }
    json_reply(
        StatusCode::OK,
        &json!({ "Volumes": listed, "Warnings": [] }),
    )
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct VolumeCreate {
    name: Option<String>,
    driver: Option<String>,
    driver_opts: Option<BTreeMap<String, String>>,
    labels: Option<BTreeMap<String, String>>,
}

pub fn volume_create(store: &Store, call: &Call) -> Reply {
    let body: VolumeCreate = call.json()?;
    if body
        .driver
        .as_deref()
        .is_some_and(|d| !d.is_empty() && d != "local")
    {
        return Err(ApiError::bad("only the local volume driver is supported"));
    }
    if body.driver_opts.as_ref().is_some_and(|o| !o.is_empty()) {
        return Err(ApiError::bad(
            "volume options are not supported: local volumes here are plain directories",
        ));
    }
    let name = body.name.filter(|n| !n.is_empty());
    let v = Volumes::open(store)?.create(name.as_deref(), &body.labels.unwrap_or_default())?;
    json_reply(StatusCode::CREATED, &crate::cli::volume::describe(&v))
}

pub fn volume_inspect(store: &Store, name: &str) -> Reply {
    let v = Volumes::open(store)?.get(name)?;
    json_reply(StatusCode::OK, &crate::cli::volume::describe(&v))
}

pub fn volume_remove(store: &Store, name: &str, call: &Call) -> Reply {
    match Volumes::open(store)?.remove(name) {
        Err(e) if call.flag("force") && e.kind() == strata_runtime::ErrorKind::NotFound => {}
        r => r?,
    }
    empty_reply(StatusCode::NO_CONTENT)
}

pub fn volume_prune(store: &Store, call: &Call) -> Reply {
    let given = filters(call)?;
    // docker 23+: `all=true` among the filters takes named volumes too.
    let all = given.iter().any(|f| f == "all=true" || f == "all=1");
    let rest: Vec<String> = given
        .into_iter()
        .filter(|f| !f.starts_with("all="))
        .collect();
    let filters = crate::format::KeyFilters::parse(&rest, &["label", "label!"])
        .map_err(|e| ApiError::bad(e.to_string()))?;
    let (removed, bytes) = Volumes::open(store)?.prune(all, &|v| {
        filters.matches(|key, value| {
            let has = crate::format::KeyFilters::label_holds(&v.labels, value);
            (key == "label") == has
        })
    })?;
    json_reply(
        StatusCode::OK,
        &json!({ "VolumesDeleted": removed, "SpaceReclaimed": bytes }),
    )
}

pub fn networks(store: &Store, call: &Call) -> Reply {
    let filters = crate::format::KeyFilters::parse(
        &filters(call)?,
        &["name", "id", "driver", "label", "type"],
    )
    .map_err(|e| ApiError::bad(e.to_string()))?;
    let all = crate::cli::network::inspect_all(store, &Networks::open(store))?;
    let listed: Vec<Value> = all
        .into_iter()
        .filter(|n| {
            let s = |k: &str| n[k].as_str().unwrap_or_default().to_string();
            filters.matches(|key, value| match key {
                "name" => s("Name").contains(value),
                "id" => s("Id").starts_with(value),
                "driver" => s("Driver") == value,
                "type" => {
                    let builtin = strata_net::networks::PREDEFINED.contains(&s("Name").as_str());
                    (value == "builtin") == builtin
                }
                _ => {
                    let labels: BTreeMap<String, String> =
                        serde_json::from_value(n["Labels"].clone()).unwrap_or_default();
                    crate::format::KeyFilters::label_holds(&labels, value)
                }
            })
        })
        .collect();
    json_reply(StatusCode::OK, &Value::Array(listed))
}

pub fn network_inspect(store: &Store, key: &str) -> Reply {
    json_reply(
        StatusCode::OK,
        &crate::cli::network::inspect(store, &Networks::open(store), key)?,
    )
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct NetworkCreate {
    name: String,
    driver: Option<String>,
    internal: bool,
    labels: Option<BTreeMap<String, String>>,
    #[serde(rename = "IPAM")]
    ipam: Option<Ipam>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct Ipam {
    config: Option<Vec<IpamConfig>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct IpamConfig {
    subnet: Option<String>,
    gateway: Option<String>,
}

pub fn network_create(store: &Store, call: &Call) -> Reply {
    let body: NetworkCreate = call.json()?;
    let config = body
        .ipam
        .and_then(|i| i.config)
        .and_then(|c| c.into_iter().next())
        .unwrap_or_default();
    let subnet = config
        .subnet
        .as_deref()
        .map(strata_net::ipam::Subnet::parse)
        .transpose()?;
    let gateway = config
        .gateway
        .as_deref()
        .map(|g| {
            g.parse().map_err(|_| {
                ApiError::bad(format!("invalid gateway {g:?}: expected an IPv4 address"))
            })
        })
        .transpose()?;
    let network = Networks::open(store).create(
        &body.name,
        &NetworkOptions {
            driver: body.driver.filter(|d| !d.is_empty()),
            subnet,
            gateway,
            internal: body.internal,
            labels: body.labels.unwrap_or_default(),
        },
    )?;
    json_reply(
        StatusCode::CREATED,
        &json!({ "Id": network.id, "Warning": "" }),
    )
}

pub fn network_remove(store: &Store, key: &str) -> Reply {
    Networks::open(store).remove(key)?;
    empty_reply(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ConnectBody {
    container: String,
    endpoint_config: Option<EndpointConfig>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct EndpointConfig {
    aliases: Option<Vec<String>>,
}

/// `POST /networks/{id}/connect` and `…/disconnect`, as `network connect`/`disconnect`.
pub fn network_connect(store: &Store, network: &str, call: &Call, connect: bool) -> Reply {
    let body: ConnectBody = call.json()?;
    let c = strata_runtime::container::Containers::open(store)?
        .get(&body.container)
        .map_err(|_| ApiError::not_found(format!("No such container: {}", body.container)))?;
    let networks = Networks::open(store);
    if connect {
        let aliases = body
            .endpoint_config
            .and_then(|e| e.aliases)
            .unwrap_or_default();
        networks.connect_container(&c, network, &aliases)?;
    } else {
        networks.disconnect_container(&c, network)?;
    }
    empty_reply(StatusCode::OK)
}

pub fn network_prune(store: &Store) -> Reply {
    let removed = Networks::open(store).prune()?;
    json_reply(StatusCode::OK, &json!({ "NetworksDeleted": removed }))
}

/// `GET /system/df`: what `system df` counts, as docker's document (the CLI sums it).
pub fn disk_usage(store: &Store) -> Reply {
    let containers = strata_runtime::container::Containers::open(store)?;
    let all = containers.list()?;
    let du = strata_runtime::gc::disk_usage(store)?;
    let images: Vec<Value> = store
        .images()?
        .iter()
        .map(|i| {
            let users = all.iter().filter(|c| c.image_id == *i.id()).count();
            json!({
                "Id": i.id().to_string(),
                "RepoTags": i.names,
                "Created": super::images::unix_time(i.config.created.as_deref()),
                "Size": crate::cli::image_size(store, i),
                "SharedSize": -1,
                "Containers": users,
            })
        })
        .collect();
    let listed: Vec<Value> = all
        .iter()
        .map(|c| {
            json!({
                "Id": c.id,
                "Names": [format!("/{}", c.name)],
                "Image": c.image,
                "ImageID": c.image_id.to_string(),
                "SizeRw": containers.upper_size(c),
                "State": crate::cli::ps::state(c),
                "Status": crate::cli::ps::status(c, None),
            })
        })
        .collect();
    let volumes = Volumes::open(store)?;
    let counts = volumes.use_counts()?;
    let vols: Vec<Value> = volumes
        .list()?
        .iter()
        .map(|v| {
            let refs = counts.get(&v.name).copied().unwrap_or(0);
            let mut doc = crate::cli::volume::describe(v);
            doc["UsageData"] = json!({ "Size": volumes.size(v), "RefCount": refs });
            doc
        })
        .collect();
    json_reply(
        StatusCode::OK,
        &json!({
            "LayersSize": du.used + du.reclaimable,
            "Images": images,
            "Containers": listed,
            "Volumes": vols,
            "BuildCache": [],
        }),
    )
}
