//! The compose subset Strata carries out, as typed values: each short and long syntax
//! normalised into one form, unknown keys refused inside a service (as compose refuses
//! them) and warned about at the top level, `depends_on` checked for cycles.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Result};
use serde::{Deserialize, Serialize};
use serde_norway::Value;

/// A string, or a list of them (`command`, `entrypoint`, `env_file`, healthcheck `test`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum StringOrList {
    One(String),
    List(Vec<String>),
}

/// A list of `K=V` strings, or a mapping (`environment`, `labels`, build `args`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum ListOrMap {
    List(Vec<String>),
    Map(BTreeMap<String, Option<Scalar>>),
}

/// A scalar in a mapping of values: compose takes numbers and booleans as their text.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Scalar {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Scalar {
    fn text(&self) -> String {
        match self {
            Scalar::Str(s) => s.clone(),
            Scalar::Int(n) => n.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

impl ListOrMap {
    /// As `K=V` entries (`K` alone for a mapping's empty value: taken from the environment).
    pub fn entries(&self) -> Vec<String> {
        match self {
            ListOrMap::List(l) => l.clone(),
            ListOrMap::Map(m) => m
                .iter()
                .map(|(k, v)| match v {
                    Some(v) => format!("{k}={}", v.text()),
                    None => k.clone(),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BuildSpec {
    #[serde(default)]
    pub context: Option<String>,
    #[serde(default)]
    pub dockerfile: Option<String>,
    #[serde(default)]
    pub args: Option<ListOrMap>,
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub labels: Option<ListOrMap>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Build {
    Context(String),
    Spec(BuildSpec),
}

impl Build {
    pub fn spec(&self) -> BuildSpec {
        match self {
            Build::Context(c) => BuildSpec {
                context: Some(c.clone()),
                ..Default::default()
            },
            Build::Spec(s) => s.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Port {
    Short(Scalar),
    Long(LongPort),
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LongPort {
    pub target: u16,
    #[serde(default)]
    pub published: Option<Scalar>,
    #[serde(default)]
    pub host_ip: Option<String>,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub mode: Option<String>,
}

impl Port {
    /// As `-p` takes it: `[ip:][host:]container[/proto]`.
    pub fn publish(&self) -> String {
        match self {
            Port::Short(s) => s.text(),
            Port::Long(p) => {
                let mut out = String::new();
                if let Some(ip) = &p.host_ip {
                    out.push_str(&format!("{ip}:"));
                }
                match &p.published {
                    Some(h) => out.push_str(&format!("{}:", h.text())),
                    None if p.host_ip.is_some() => out.push(':'),
                    None => {}
                }
                out.push_str(&p.target.to_string());
                if let Some(proto) = &p.protocol {
                    out.push_str(&format!("/{proto}"));
                }
                out
            }
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum VolumeEntry {
    Short(String),
    Long(Box<LongVolume>),
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LongVolume {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub source: Option<String>,
    pub target: String,
    #[serde(default)]
    pub read_only: bool,
    #[serde(default)]
    pub volume: Option<Value>,
    #[serde(default)]
    pub bind: Option<Value>,
    #[serde(default)]
    pub tmpfs: Option<TmpfsOptions>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct TmpfsOptions {
    #[serde(default)]
    pub size: Option<Scalar>,
}

/// A service's mount, normalised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Mount {
    /// A host path (relative ones from the project directory).
    Bind {
        source: String,
        target: String,
        read_only: bool,
    },
    /// A named volume of the project (`None`: anonymous).
    Volume {
        name: Option<String>,
        target: String,
        read_only: bool,
    },
    Tmpfs {
        target: String,
        size: Option<String>,
    },
}

impl VolumeEntry {
    pub fn mount(&self) -> Result<Mount> {
        match self {
            VolumeEntry::Short(s) => {
                let parts: Vec<&str> = s.split(':').collect();
                let (source, target, mode) = match parts.as_slice() {
                    [t] => (None, *t, ""),
                    [s, t] => (Some(*s), *t, ""),
                    [s, t, m] => (Some(*s), *t, *m),
                    _ => bail!("invalid volume {s:?}: too many colons"),
                };
                let read_only = mode.split(',').any(|m| m == "ro");
                Ok(match source {
                    None => Mount::Volume {
                        name: None,
                        target: target.into(),
                        read_only,
                    },
                    Some(src) if src.starts_with(['.', '/', '~']) => Mount::Bind {
                        source: src.into(),
                        target: target.into(),
                        read_only,
                    },
                    Some(name) => Mount::Volume {
                        name: Some(name.into()),
                        target: target.into(),
                        read_only,
                    },
                })
            }
            VolumeEntry::Long(l) => Ok(match l.kind.as_str() {
                "bind" => Mount::Bind {
                    source: l
                        .source
                        .clone()
                        .ok_or_else(|| anyhow!("volume {}: a bind needs a source", l.target))?,
                    target: l.target.clone(),
                    read_only: l.read_only,
                },
                "volume" => Mount::Volume {
                    name: l.source.clone(),
                    target: l.target.clone(),
                    read_only: l.read_only,
                },
                "tmpfs" => Mount::Tmpfs {
                    target: l.target.clone(),
                    size: l
                        .tmpfs
                        .as_ref()
                        .and_then(|t| t.size.as_ref())
                        .map(Scalar::text),
                },
                other => bail!(
                    "volume {}: type {other:?} is not supported (bind, volume, tmpfs)",
                    l.target
                ),
            }),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Networks {
    List(Vec<String>),
    Map(BTreeMap<String, Option<ServiceNetwork>>),
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceNetwork {
    #[serde(default)]
    pub aliases: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum DependsOn {
    List(Vec<String>),
    Map(BTreeMap<String, Dependency>),
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Dependency {
    #[serde(default = "started")]
    pub condition: String,
    #[serde(default)]
    pub restart: Option<bool>,
    #[serde(default)]
    pub required: Option<bool>,
}

fn started() -> String {
    "service_started".into()
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Healthcheck {
    #[serde(default)]
    pub test: Option<StringOrList>,
    #[serde(default)]
    pub interval: Option<String>,
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub retries: Option<i64>,
    #[serde(default)]
    pub start_period: Option<String>,
    #[serde(default)]
    pub start_interval: Option<String>,
    #[serde(default)]
    pub disable: bool,
}

/// One service, as the file says it (the subset Strata carries out).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub build: Option<Build>,
    #[serde(default)]
    pub command: Option<StringOrList>,
    #[serde(default)]
    pub entrypoint: Option<StringOrList>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub environment: Option<ListOrMap>,
    #[serde(default)]
    pub env_file: Option<StringOrList>,
    #[serde(default)]
    pub ports: Vec<Port>,
    #[serde(default)]
    pub expose: Vec<Scalar>,
    #[serde(default)]
    pub volumes: Vec<VolumeEntry>,
    #[serde(default)]
    pub tmpfs: Option<StringOrList>,
    #[serde(default)]
    pub networks: Option<Networks>,
    #[serde(default)]
    pub network_mode: Option<String>,
    #[serde(default)]
    pub depends_on: Option<DependsOn>,
    #[serde(default)]
    pub healthcheck: Option<Healthcheck>,
    #[serde(default)]
    pub restart: Option<String>,
    #[serde(default)]
    pub stop_signal: Option<String>,
    #[serde(default)]
    pub stop_grace_period: Option<String>,
    #[serde(default)]
    pub container_name: Option<String>,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub labels: Option<ListOrMap>,
    #[serde(default)]
    pub platform: Option<String>,
    #[serde(default)]
    pub tty: bool,
    #[serde(default)]
    pub stdin_open: bool,
    #[serde(default)]
    pub profiles: Vec<String>,
    #[serde(default)]
    pub init: Option<bool>,
    #[serde(default)]
    pub mem_limit: Option<Scalar>,
    #[serde(default)]
    pub pids_limit: Option<i64>,
}

impl Service {
    /// The services it waits for and how (`service_started`, `service_healthy`,
    /// `service_completed_successfully`).
    pub fn dependencies(&self) -> Vec<(String, String)> {
        match &self.depends_on {
            None => Vec::new(),
            Some(DependsOn::List(l)) => l.iter().map(|s| (s.clone(), started())).collect(),
            Some(DependsOn::Map(m)) => m
                .iter()
                .map(|(s, d)| (s.clone(), d.condition.clone()))
                .collect(),
        }
    }

    /// Its networks by their names in the file, with their aliases.
    pub fn network_list(&self) -> Vec<(String, Vec<String>)> {
        match &self.networks {
            None => Vec::new(),
            Some(Networks::List(l)) => l.iter().map(|n| (n.clone(), Vec::new())).collect(),
            Some(Networks::Map(m)) => m
                .iter()
                .map(|(n, c)| (n.clone(), c.clone().unwrap_or_default().aliases))
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct NetworkDef {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub external: bool,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub driver: Option<String>,
    #[serde(default)]
    pub labels: Option<ListOrMap>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct VolumeDef {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub external: bool,
    #[serde(default)]
    pub driver: Option<String>,
    #[serde(default)]
    pub labels: Option<ListOrMap>,
}

/// A whole file, after interpolation and merging.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Model {
    pub name: Option<String>,
    pub services: BTreeMap<String, Service>,
    pub networks: BTreeMap<String, NetworkDef>,
    pub volumes: BTreeMap<String, VolumeDef>,
}

/// A top-level section's entries; a `null` entry (`volumes: {data:}`) is the default.
fn section<T: serde::de::DeserializeOwned + Default>(
    v: Option<&Value>,
    what: &str,
) -> Result<BTreeMap<String, T>> {
    let Some(Value::Mapping(map)) = v else {
        return match v {
            None | Some(Value::Null) => Ok(BTreeMap::new()),
            _ => bail!("{what} must be a mapping"),
        };
    };
    let mut out = BTreeMap::new();
    for (k, item) in map {
        let name = k
            .as_str()
            .ok_or_else(|| anyhow!("{what}: a name must be a string"))?;
        let value = if item.is_null() {
            T::default()
        } else {
            serde_norway::from_value(item.clone()).map_err(|e| anyhow!("{what}.{name}: {e}"))?
        };
        out.insert(name.to_string(), value);
    }
    Ok(out)
}

impl Model {
    /// The typed model of `tree`; unknown top-level keys go to `warn`.
    pub fn from_tree(tree: &Value, warn: &mut dyn FnMut(String)) -> Result<Model> {
        let map = tree
            .as_mapping()
            .ok_or_else(|| anyhow!("the top level must be a mapping"))?;
        for (k, _) in map {
            match k.as_str().unwrap_or("") {
                "services" | "networks" | "volumes" | "name" => {}
                "version" => warn("the attribute `version` is obsolete, it will be ignored".into()),
                key if key.starts_with("x-") => {}
                key => warn(format!(
                    "the top-level key `{key}` is not supported here, it will be ignored"
                )),
            }
        }
        let model = Model {
            name: tree.get("name").and_then(Value::as_str).map(String::from),
            services: section(tree.get("services"), "services")?,
            networks: section(tree.get("networks"), "networks")?,
            volumes: section(tree.get("volumes"), "volumes")?,
        };
        model.check()?;
        Ok(model)
    }

    fn check(&self) -> Result<()> {
        if self.services.is_empty() {
            bail!("no service is defined: services must hold at least one");
        }
        for (name, s) in &self.services {
            if s.image.is_none() && s.build.is_none() {
                bail!("service {name:?} has neither an image nor a build context specified");
            }
            for (dep, condition) in s.dependencies() {
                if !self.services.contains_key(&dep) {
                    bail!("service {name:?} depends on undefined service {dep:?}");
                }
                if !matches!(
                    condition.as_str(),
                    "service_started" | "service_healthy" | "service_completed_successfully"
                ) {
                    bail!("service {name:?}: unknown depends_on condition {condition:?}");
                }
            }
            for (net, _) in s.network_list() {
                if net != "default" && !self.networks.contains_key(&net) {
                    bail!("service {name:?} refers to undefined network {net}: invalid compose project");
                }
            }
            for v in &s.volumes {
                if let Mount::Volume {
                    name: Some(vol), ..
                } = v.mount()?
                {
                    if !self.volumes.contains_key(&vol) {
                        bail!("service {name:?} refers to undefined volume {vol}: invalid compose project");
                    }
                }
            }
        }
        self.order().map(drop)
    }

    /// The services in the order they start: each after what it depends on; a cycle is
    /// an error naming it.
    pub fn order(&self) -> Result<Vec<String>> {
        let mut done: Vec<String> = Vec::new();
        let mut visiting: Vec<String> = Vec::new();
        fn visit(
            m: &Model,
            name: &str,
            done: &mut Vec<String>,
            visiting: &mut Vec<String>,
        ) -> Result<()> {
            if done.iter().any(|d| d == name) {
                return Ok(());
            }
            if let Some(i) = visiting.iter().position(|v| v == name) {
                let mut cycle = visiting[i..].to_vec();
                cycle.push(name.to_string());
                bail!("dependency cycle detected: {}", cycle.join(" -> "));
            }
            visiting.push(name.to_string());
            for (dep, _) in m.services[name].dependencies() {
                visit(m, &dep, done, visiting)?;
            }
            visiting.pop();
            done.push(name.to_string());
            Ok(())
        }
        for name in self.services.keys() {
            visit(self, name, &mut done, &mut visiting)?;
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(yaml: &str) -> Result<Model> {
        let tree: Value = serde_norway::from_str(yaml).unwrap();
        Model::from_tree(&tree, &mut |_| {})
    }

    #[test]
    fn short_and_long_syntax_normalise_alike() {
        let m = model(
            "services:\n  web:\n    image: web\n    command: echo hi\n    environment:\n      A: 1\n      B:\n    ports:\n      - 8080:80\n      - target: 443\n        published: 8443\n        host_ip: 127.0.0.1\n        protocol: tcp\n    volumes:\n      - data:/data:ro\n      - ./site:/www\n      - /anon\n      - type: tmpfs\n        target: /run\n        tmpfs: {size: 1m}\n    networks:\n      front:\n        aliases: [w]\n    depends_on: [db]\n  db:\n    image: db\n    networks: [front]\nnetworks:\n  front:\nvolumes:\n  data:\n",
        )
        .unwrap();
        let web = &m.services["web"];
        assert_eq!(web.environment.as_ref().unwrap().entries(), ["A=1", "B"]);
        let ports: Vec<String> = web.ports.iter().map(Port::publish).collect();
        assert_eq!(ports, ["8080:80", "127.0.0.1:8443:443/tcp"]);
        let mounts: Vec<Mount> = web.volumes.iter().map(|v| v.mount().unwrap()).collect();
        assert_eq!(
            mounts[0],
            Mount::Volume {
                name: Some("data".into()),
                target: "/data".into(),
                read_only: true
            }
        );
        assert_eq!(
            mounts[1],
            Mount::Bind {
                source: "./site".into(),
                target: "/www".into(),
                read_only: false
            }
        );
        assert_eq!(
            mounts[2],
            Mount::Volume {
                name: None,
                target: "/anon".into(),
                read_only: false
            }
        );
        assert_eq!(
            mounts[3],
            Mount::Tmpfs {
                target: "/run".into(),
                size: Some("1m".into())
            }
        );
        assert_eq!(
            web.network_list(),
            [("front".to_string(), vec!["w".to_string()])]
        );
        assert_eq!(m.order().unwrap(), ["db", "web"]);
    }

    #[test]
    fn bad_projects_are_refused_clearly() {
        let err = |yaml: &str| format!("{:#}", model(yaml).unwrap_err());
        assert!(err("services:\n  a:\n    image: x\n    colour: red\n")
            .contains("unknown field `colour`"));
        assert!(err("services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: y\n    depends_on: [a]\n")
            .contains("dependency cycle detected: a -> b -> a"));
        assert!(
            err("services:\n  a:\n    image: x\n    depends_on: [nope]\n")
                .contains("undefined service")
        );
        assert!(
            err("services:\n  a:\n    build: {}\n    image: x\n    volumes: [v:/v]\n")
                .contains("undefined volume v")
        );
        assert!(err("services:\n  a:\n    command: x\n").contains("neither an image nor a build"));
        let mut warned = Vec::new();
        let tree: Value = serde_norway::from_str(
            "version: '3'\nsecrets: {}\nx-any: 1\nservices:\n  a:\n    image: x\n",
        )
        .unwrap();
        Model::from_tree(&tree, &mut |w| warned.push(w)).unwrap();
        assert_eq!(warned.len(), 2, "{warned:?}");
    }
}
