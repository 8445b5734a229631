use std::collections::{BTreeMap, HashMap};

use anyhow::{anyhow, bail, Result};
use serde_json::{json, Value};
use strata_runtime::container::{Container, Containers, PortMapping, Status};
use strata_runtime::store::Image;
use strata_runtime::Store;

use crate::format::{
    ago, check_template, ellipsis, human_duration, human_size, parse_time, table_format,
    table_template, template,
};

#[derive(clap::Args)]
pub struct Args {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    all: bool,
    /// Filter output based on conditions provided: status=, name=, id=, ancestor=, label=,
    /// exited=, health=
    #[arg(short, long = "filter", value_name = "FILTER")]
    filters: Vec<String>,
    /// Format output: "table", "json", a Go template like '{{.ID}} {{.Names}}', or
    /// 'table TEMPLATE' for a table with a header row
    #[arg(long)]
    format: Option<String>,
    /// Show n last created containers (includes all states)
    #[arg(short = 'n', long = "last", default_value_t = -1, allow_hyphen_values = true)]
    last: i64,
    /// Show the latest created container (includes all states)
    #[arg(short, long)]
    latest: bool,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Only display container IDs
    #[arg(short, long)]
    quiet: bool,
    /// Display total file sizes
    #[arg(short, long)]
    size: bool,
}

/// docker's default `ps` table (`defaultContainerTableFormat`).
const DEFAULT_TABLE: &str =
    "{{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}";

/// docker's column titles for `--format 'table …'` (its container context's header).
const HEADERS: [(&str, &str); 14] = [
    ("Command", "COMMAND"),
    ("CreatedAt", "CREATED AT"),
    ("ID", "CONTAINER ID"),
    ("Image", "IMAGE"),
    ("Labels", "LABELS"),
    ("LocalVolumes", "LOCAL VOLUMES"),
    ("Mounts", "MOUNTS"),
    ("Names", "NAMES"),
    ("Networks", "NETWORKS"),
    ("Ports", "PORTS"),
    ("RunningFor", "CREATED"),
    ("Size", "SIZE"),
    ("State", "STATE"),
    ("Status", "STATUS"),
];

impl Args {
    pub fn run(self, store: &Store) -> Result<()> {
        let limit = if self.latest { 1 } else { self.last };
        let records = Containers::open(store)?;
        let shown = select(store, &records, &self.filters, self.all, limit)?;
        let mut images = Images::new(store);

        // docker: a format given wins over -q; `table` alone is the default table.
        let given = self.format.as_deref().map(|f| f.trim_matches(' '));
        let format = match given.filter(|f| !f.is_empty()) {
            None | Some("table") if self.quiet => "{{.ID}}".to_string(),
            None | Some("table") if self.size => format!("table {DEFAULT_TABLE}\t{{{{.Size}}}}"),
            None | Some("table") => format!("table {DEFAULT_TABLE}"),
            Some("json") => "{{json .}}".to_string(),
            Some(f) => f.to_string(),
        };
        let sized = self.size || format.contains("Size") || format.contains("json");
        // Read only when a container shown is on a network (the state is made at first use).
        let (leases, ports) = if shown.iter().any(|(c, _, _)| c.host.network.attaches()) {
            let networks = strata_net::Networks::open(store);
            (networks.leases()?, networks.ports()?)
        } else {
            Default::default()
        };
        let rows: Vec<Value> = shown
            .iter()
            .map(|(c, labels, health)| {
                let mine: Vec<&strata_net::Lease> =
                    leases.iter().filter(|l| l.container == c.id).collect();
                let ports = ports.get(&c.id).map_or(&[][..], Vec::as_slice);
                let size = sized.then(|| {
                    let writable = records.upper_size(c);
                    let image = images.get(c).map_or(0, |i| super::image_size(store, i));
                    (writable, image + writable)
                });
                self.row(&records, c, labels, health.as_deref(), size, &mine, ports)
            })
            .collect();
        if let Some(body) = table_format(&format) {
            print!("{}", table_template(body, &HEADERS, &rows)?);
        } else {
            check_template(&format)?;
            for row in &rows {
                println!("{}", template(&format, row)?);
            }
        }
        Ok(())
    }

    /// The fields docker's `ps` templates see (its container context), for one container;
    /// `size` is its writable layer's bytes and those with its image's.
    fn row(
        &self,
        records: &Containers<'_>,
        c: &Container,
        labels: &BTreeMap<String, String>,
        health: Option<&str>,
        size: Option<(u64, u64)>,
        leases: &[&strata_net::Lease],
        ports: &[PortMapping],
    ) -> Value {
        let trunc = !self.no_trunc;
        let spec = records.spec(c).ok();
        let command = spec
            .as_ref()
            .and_then(|s| s.process().as_ref().and_then(|p| p.args().clone()))
            .unwrap_or_default()
            .join(" ");
        let command = if trunc {
            ellipsis(&command, 20)
        } else {
            command
        };
        // docker's column: a volume's name, a bind's host path.
        let mounts: Vec<String> = c
            .mounts
            .iter()
            .filter(|m| m.kind != strata_runtime::container::MountKind::Tmpfs)
            .map(|m| {
                m.name
                    .clone()
                    .unwrap_or_else(|| m.source.display().to_string())
            })
            .map(|s| if trunc { ellipsis(&s, 15) } else { s })
            .collect();
        let own_network = spec
            .as_ref()
            .and_then(|s| s.linux().as_ref())
            .and_then(|l| l.namespaces().clone())
            .unwrap_or_default()
            .iter()
            .any(|n| n.typ() == strata_runtime::oci_spec::runtime::LinuxNamespaceType::Network);
        let created = parse_time(Some(&c.created));
        let size = match size {
            Some((writable, virt)) if virt > 0 => {
                format!("{} (virtual {})", human_size(writable), human_size(virt))
            }
            Some((writable, _)) => human_size(writable),
            None => human_size(0),
        };
        json!({
            "Command": serde_json::to_string(&command).expect("a string"),
            "CreatedAt": created
                .map(|t| t.format("%Y-%m-%d %H:%M:%S %z UTC").to_string())
                .unwrap_or_default(),
            "ID": if trunc { c.short_id() } else { &c.id },
            "Image": c.image,
            "Labels": labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(","),
            "LocalVolumes": c.mounts.iter().filter(|m| m.kind == strata_runtime::container::MountKind::Volume).count().to_string(),
            "Mounts": mounts.join(","),
            "Names": c.name,
            "Networks": if !leases.is_empty() {
                leases.iter().map(|l| l.network.as_str()).collect::<Vec<_>>().join(",")
            } else if c.host.network.attaches() {
                c.host.network.to_string()
            } else if own_network {
                "none".into()
            } else {
                "host".into()
            },
            "Ports": ports.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
            "RunningFor": ago(created),
            "Size": size,
            "State": state(c),
            "Status": status(c, health),
        })
    }
}

/// docker's `State` of a container.
pub fn state(c: &Container) -> &'static str {
    match c.status {
        Status::Created => "created",
        Status::Running => "running",
        Status::Paused => "paused",
        Status::Restarting => "restarting",
        Status::Exited => "exited",
    }
}

/// A container `ps` (and the API's `GET /containers/json`) shows, its labels and health.
pub(crate) type Shown = (Container, BTreeMap<String, String>, Option<String>);

/// The containers `ps` shows for these filters, newest first: running ones unless `all`
/// (or a limit or a status filter, as docker's), at most `limit` when it is positive.
pub(crate) fn select(
    store: &Store,
    records: &Containers<'_>,
    filters: &[String],
    all: bool,
    limit: i64,
) -> Result<Vec<Shown>> {
    let mut filters = Filters::parse(filters)?;
    filters.resolve_ancestors(store);
    filters.resolve_containers(records)?;
    let all = all || limit > 0 || filters.has("status");
    let mut images = Images::new(store);
    let mut shown = Vec::new();
    for c in records.list()? {
        if !all && !c.running() {
            continue;
        }
        let labels = labels_of(images.get(&c), &c);
        let health = records.health(&c).map(|h| h.status.as_str().to_string());
        let subject = Subject {
            id: &c.id,
            name: &c.name,
            image: &c.image,
            image_id: c.image_id.as_str(),
            state: state(&c),
            exit_code: c.exit_code,
            labels: &labels,
            health: health.as_deref().unwrap_or("none"),
            created: parse_time(Some(&c.created)),
        };
        if filters.matches(&subject) {
            shown.push((c, labels, health));
        }
        if limit > 0 && shown.len() as i64 == limit {
            break;
        }
    }
    Ok(shown)
}

/// docker's `Status` column: `Up 5 minutes`, `Up 2 seconds (health: starting)`,
/// `Exited (3) 2 hours ago`.
pub(crate) fn status(c: &Container, health: Option<&str>) -> String {
    match c.status {
        Status::Created => "Created".to_string(),
        Status::Running | Status::Paused => {
            let since = parse_time(c.started_at.as_deref())
                .map(|t| (chrono::Utc::now() - t).num_seconds())
                .unwrap_or(0);
            let up = format!("Up {}", human_duration(since));
            // docker: paused wins over health.
            match health {
                _ if c.status == Status::Paused => format!("{up} (Paused)"),
                Some("starting") => format!("{up} (health: starting)"),
                Some(h) => format!("{up} ({h})"),
                None => up,
            }
        }
        Status::Restarting => format!(
            "Restarting ({}) {}",
            c.exit_code.unwrap_or(0),
            ago(parse_time(c.finished_at.as_deref()))
        ),
        Status::Exited => format!(
            "Exited ({}) {}",
            c.exit_code.unwrap_or(0),
            ago(parse_time(c.finished_at.as_deref()))
        ),
    }
}

/// A container's labels as docker shows them: its image's, overlaid by its own
/// (`run --label`).
pub fn labels(store: &Store, c: &Container) -> BTreeMap<String, String> {
    labels_of(store.image(&c.manifest).ok().as_ref(), c)
}

fn labels_of(image: Option<&Image>, c: &Container) -> BTreeMap<String, String> {
    let mut labels = image
        .and_then(|i| i.config.config.as_ref())
        .and_then(|config| config.labels.clone())
        .unwrap_or_default();
    labels.extend(c.host.labels.clone());
    labels
}

/// The images of the containers listed, each read once.
struct Images<'a> {
    store: &'a Store,
    read: HashMap<String, Option<Image>>,
}

impl<'a> Images<'a> {
    fn new(store: &'a Store) -> Images<'a> {
        Images {
            store,
            read: HashMap::new(),
        }
    }

    fn get(&mut self, c: &Container) -> Option<&Image> {
        self.read
            .entry(c.manifest.digest.to_string())
            .or_insert_with(|| self.store.image(&c.manifest).ok())
            .as_ref()
    }
}

/// What a filter looks at in a container.
pub struct Subject<'a> {
    pub id: &'a str,
    pub name: &'a str,
    /// The image as the user named it.
    pub image: &'a str,
    pub image_id: &'a str,
    pub state: &'a str,
    pub exit_code: Option<i32>,
    pub labels: &'a BTreeMap<String, String>,
    /// Its health status, `none` without checks.
    pub health: &'a str,
    pub created: Option<chrono::DateTime<chrono::Utc>>,
}

/// `--filter KEY=VALUE`s, as docker's `ps` takes them: the values of one key are
/// alternatives, except `label`, whose values must all hold (docker's `MatchKVList`); the
/// keys must all hold.
#[derive(Default, Debug)]
pub struct Filters {
    by_key: BTreeMap<String, Vec<String>>,
    /// What each `ancestor` value names in the store: an image ID.
    ancestors: HashMap<String, String>,
    /// When the container each `before`/`since` value names was created.
    created: HashMap<String, chrono::DateTime<chrono::Utc>>,
}

const KEYS: [&str; 9] = [
    "ancestor", "before", "exited", "health", "id", "label", "name", "since", "status",
];
/// docker's health statuses (`none`: no health check).
const HEALTH: [&str; 4] = ["starting", "healthy", "unhealthy", "none"];
/// docker's container states (`container.IsValidStateString`).
const STATES: [&str; 7] = [
    "created",
    "running",
    "paused",
    "restarting",
    "removing",
    "exited",
    "dead",
];

impl Filters {
    pub fn parse(args: &[String]) -> Result<Filters> {
        let mut filters = Filters::default();
        for arg in args {
            let (key, value) = arg
                .split_once('=')
                .ok_or_else(|| anyhow!("bad format of filter (expected name=value)"))?;
            let (key, value) = (key.trim().to_ascii_lowercase(), value.trim());
            if !KEYS.contains(&key.as_str()) {
                bail!("invalid filter '{key}'");
            }
            if key == "health" && !HEALTH.contains(&value) {
                bail!("Unrecognised filter value for health: {value}");
            }
            let valid = match key.as_str() {
                "status" => STATES.contains(&value),
                "exited" => value.parse::<i32>().is_ok(),
                _ => true,
            };
            if !valid {
                bail!("invalid filter '{key}={value}'");
            }
            filters
                .by_key
                .entry(key)
                .or_default()
                .push(value.to_string());
        }
        Ok(filters)
    }

    fn has(&self, key: &str) -> bool {
        self.by_key.contains_key(key)
    }

    /// Look up the images the `ancestor` values name (by name or ID), as docker does.
    /// Look up the containers `before` and `since` values name; one that is not there is
    /// docker's error.
    fn resolve_containers(&mut self, records: &Containers<'_>) -> Result<()> {
        for key in ["before", "since"] {
            for value in self.by_key.get(key).into_iter().flatten() {
                let c = records.get(value)?;
                if let Some(t) = parse_time(Some(&c.created)) {
                    self.created.insert(value.clone(), t);
                }
            }
        }
        Ok(())
    }

    fn resolve_ancestors(&mut self, store: &Store) {
        for value in self.by_key.get("ancestor").into_iter().flatten() {
            if let Ok(image) = store.resolve(value) {
                self.ancestors
                    .insert(value.clone(), image.id().as_str().to_string());
            }
        }
    }

    pub fn matches(&self, s: &Subject<'_>) -> bool {
        self.by_key.iter().all(|(key, values)| {
            if key == "label" {
                values.iter().all(|v| match v.split_once('=') {
                    Some((k, v)) => s.labels.get(k).is_some_and(|have| have == v),
                    None => s.labels.contains_key(v),
                })
            } else {
                values.iter().any(|v| self.holds(key, v, s))
            }
        })
    }

    fn holds(&self, key: &str, value: &str, s: &Subject<'_>) -> bool {
        match key {
            "status" => s.state == value,
            "health" => s.health == value,
            // docker matches the name with its leading slash.
            "name" => format!("/{}", s.name).contains(value),
            "id" => s.id.starts_with(value),
            "before" => {
                matches!((s.created, self.created.get(value)), (Some(c), Some(b)) if c < *b)
            }
            "since" => matches!((s.created, self.created.get(value)), (Some(c), Some(b)) if c > *b),
            "exited" => s.state == "exited" && value.parse().ok() == s.exit_code,
            "ancestor" => {
                let hex = value.strip_prefix("sha256:").unwrap_or(value);
                s.image == value
                    || self.ancestors.get(value).is_some_and(|id| id == s.image_id)
                    || (!hex.is_empty()
                        && hex.bytes().all(|b| b.is_ascii_hexdigit())
                        && s.image_id
                            .strip_prefix("sha256:")
                            .is_some_and(|id| id.starts_with(hex)))
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filters(args: &[&str]) -> Filters {
        Filters::parse(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn subject<'a>(
        name: &'a str,
        state: &'a str,
        code: Option<i32>,
        labels: &'a BTreeMap<String, String>,
    ) -> Subject<'a> {
        Subject {
            id: "abc123def456",
            name,
            image: "busybox",
            image_id: "sha256:feedbeef00",
            state,
            exit_code: code,
            labels,
            health: "none",
            created: None,
        }
    }

    #[test]
    fn one_key_ors_and_keys_and() {
        let none = BTreeMap::new();
        let web = subject("web-1", "running", None, &none);
        let job = subject("job", "exited", Some(3), &none);
        let f = filters(&["status=running", "status=exited"]);
        assert!(f.matches(&web) && f.matches(&job));
        let f = filters(&["status=exited", "name=web"]);
        assert!(!f.matches(&web) && !f.matches(&job));
        let f = filters(&["status=running", "name=web"]);
        assert!(f.matches(&web) && !f.matches(&job));
        assert!(filters(&[]).matches(&web));
        assert!(!filters(&["status=created"]).matches(&web));
    }

    #[test]
    fn names_are_substrings_ids_prefixes() {
        let none = BTreeMap::new();
        let web = subject("web-1", "running", None, &none);
        assert!(filters(&["name=eb-"]).matches(&web));
        assert!(filters(&["name=/web"]).matches(&web));
        assert!(!filters(&["name=/eb"]).matches(&web));
        assert!(filters(&["name=nope", "name=web"]).matches(&web));
        assert!(filters(&["id=abc1"]).matches(&web));
        assert!(!filters(&["id=def4"]).matches(&web));
    }

    #[test]
    fn health_filters_match_the_health_status() {
        let none = BTreeMap::new();
        let mut web = subject("web", "running", None, &none);
        assert!(filters(&["health=none"]).matches(&web));
        web.health = "healthy";
        assert!(filters(&["health=healthy"]).matches(&web));
        assert!(filters(&["health=starting", "health=healthy"]).matches(&web));
        assert!(!filters(&["health=unhealthy"]).matches(&web));
        let err = Filters::parse(&["health=sick".to_string()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Unrecognised filter value for health: sick"
        );
    }

    #[test]
    fn exited_needs_an_exited_container_with_that_code() {
        let none = BTreeMap::new();
        assert!(filters(&["exited=3"]).matches(&subject("a", "exited", Some(3), &none)));
        assert!(filters(&["exited=0", "exited=3"]).matches(&subject(
            "a",
            "exited",
            Some(3),
            &none
        )));
        assert!(!filters(&["exited=0"]).matches(&subject("a", "exited", Some(3), &none)));
        // A container that could not start keeps its code but never exited.
        assert!(!filters(&["exited=127"]).matches(&subject("a", "created", Some(127), &none)));
    }

    #[test]
    fn labels_must_all_hold() {
        let labels: BTreeMap<String, String> = [("a", "b"), ("tier", "")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let s = subject("x", "created", None, &labels);
        assert!(filters(&["label=a"]).matches(&s));
        assert!(filters(&["label=a=b"]).matches(&s));
        assert!(filters(&["label=tier"]).matches(&s));
        assert!(filters(&["label=tier="]).matches(&s));
        assert!(!filters(&["label=a=c"]).matches(&s));
        assert!(!filters(&["label=a=b", "label=other"]).matches(&s));
        assert!(filters(&["label=a=b", "label=tier"]).matches(&s));
        let none = BTreeMap::new();
        assert!(!filters(&["label=a"]).matches(&subject("x", "created", None, &none)));
    }

    #[test]
    fn ancestors_by_name_id_prefix_or_resolved() {
        let none = BTreeMap::new();
        let s = subject("x", "created", None, &none);
        assert!(filters(&["ancestor=busybox"]).matches(&s));
        assert!(filters(&["ancestor=feedbe"]).matches(&s));
        assert!(filters(&["ancestor=sha256:feedbe"]).matches(&s));
        assert!(!filters(&["ancestor=beef"]).matches(&s));
        assert!(!filters(&["ancestor=alpine"]).matches(&s));
        let mut f = filters(&["ancestor=busybox:latest"]);
        assert!(!f.matches(&s));
        f.ancestors
            .insert("busybox:latest".into(), "sha256:feedbeef00".into());
        assert!(f.matches(&s));
    }

    #[test]
    fn bad_filters_are_refused_as_docker_does() {
        let err = |a: &str| Filters::parse(&[a.to_string()]).unwrap_err().to_string();
        assert_eq!(err("status"), "bad format of filter (expected name=value)");
        assert_eq!(err("colour=red"), "invalid filter 'colour'");
        assert_eq!(err("status=sleeping"), "invalid filter 'status=sleeping'");
        assert_eq!(err("exited=x"), "invalid filter 'exited=x'");
        assert!(filters(&["Status=paused"]).has("status"));
    }
}
