//! `strata network …`: docker's network group. Networks live in the store's network state
//! (`strata_net::Networks`); `host` and `none` are listed beside `bridge` as docker lists
//! them, though they are modes, not networks.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Result};
use serde_json::{json, Value};
use strata_net::ipam::{self, Subnet};
use strata_net::networks::{NetworkOptions, DEFAULT_NETWORK};
use strata_net::{Lease, Network, Networks};
use strata_runtime::container::Containers;
use strata_runtime::{Digest, Store};

use crate::format::{print_inspected, print_rows, KeyFilters};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Create a network
    Create(CreateArgs),
    /// List networks
    #[command(visible_aliases = ["list"])]
    Ls(LsArgs),
    /// Display detailed information on one or more networks
    Inspect(InspectArgs),
    /// Remove one or more networks
    #[command(visible_aliases = ["remove"])]
    Rm(RmArgs),
    /// Remove all unused networks
    Prune(PruneArgs),
    /// Connect a container to a network
    Connect(ConnectArgs),
    /// Disconnect a container from a network
    Disconnect(DisconnectArgs),
}

impl Command {
    pub fn run(self, store: &Store) -> Result<ExitCode> {
        let networks = Networks::open(store);
        match self {
            Command::Create(a) => a.run(&networks)?,
            Command::Ls(a) => a.run(&networks)?,
            Command::Inspect(a) => a.run(store, &networks)?,
            Command::Rm(a) => return Ok(a.run(&networks)),
            Command::Prune(a) => a.run(&networks)?,
            Command::Connect(a) => a.run(store, &networks)?,
            Command::Disconnect(a) => a.run(store, &networks)?,
        }
        Ok(ExitCode::SUCCESS)
    }
}

#[derive(clap::Args)]
pub struct CreateArgs {
    /// Driver to manage the Network (only bridge)
    #[arg(short, long)]
    driver: Option<String>,
    /// Subnet in CIDR format that represents a network segment
    #[arg(long)]
    subnet: Option<String>,
    /// IPv4 Gateway for the master subnet
    #[arg(long)]
    gateway: Option<String>,
    /// Restrict external access to the network
    #[arg(long)]
    internal: bool,
    /// Set metadata on a network
    #[arg(long = "label")]
    labels: Vec<String>,
    name: String,
}

impl CreateArgs {
    fn run(self, networks: &Networks<'_>) -> Result<()> {
        let subnet = self.subnet.as_deref().map(Subnet::parse).transpose()?;
        let gateway = self
            .gateway
            .as_deref()
            .map(|g| {
                g.parse()
                    .map_err(|_| anyhow!("invalid gateway {g:?}: expected an IPv4 address"))
            })
            .transpose()?;
        if gateway.is_some() && subnet.is_none() {
            bail!("every ip-range or gateway must have a corresponding subnet");
        }
        let labels = self
            .labels
            .iter()
            .map(|l| {
                let (k, v) = l.split_once('=').unwrap_or((l, ""));
                (k.to_string(), v.to_string())
            })
            .collect();
        let network = networks.create(
            &self.name,
            &NetworkOptions {
                driver: self.driver,
                subnet,
                gateway,
                internal: self.internal,
                labels,
            },
        )?;
        println!("{}", network.id);
        Ok(())
    }
}

/// A row of `network ls`: a network of the store, or one of docker's two modes.
struct Listed {
    id: String,
    name: String,
    driver: String,
    internal: bool,
    labels: BTreeMap<String, String>,
    created: String,
}

/// `host` and `none`, docker's pre-defined networks beside `bridge` (stable ids per name).
fn modes() -> [Listed; 2] {
    [("host", "host"), ("none", "null")].map(|(name, driver)| Listed {
        id: Digest::of(format!("network {name}").as_bytes())
            .hex()
            .to_string(),
        name: name.into(),
        driver: driver.into(),
        internal: false,
        labels: BTreeMap::new(),
        created: String::new(),
    })
}

impl From<&Network> for Listed {
    fn from(n: &Network) -> Listed {
        Listed {
            id: n.id.clone(),
            name: n.name.clone(),
            driver: n.driver.clone(),
            internal: n.internal,
            labels: n.labels.clone(),
            created: n.created.clone(),
        }
    }
}

#[derive(clap::Args)]
pub struct LsArgs {
    /// Only display network IDs
    #[arg(short, long)]
    quiet: bool,
    /// Do not truncate the output
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    /// Provide filter values (e.g. 'name=n1', 'driver=bridge', 'id=…', 'label=k[=v]', 'type=custom|builtin')
    #[arg(short, long = "filter")]
    filters: Vec<String>,
    /// Format output using a Go-style template, e.g. 'table {{.Name}}\t{{.Driver}}'
    #[arg(long)]
    format: Option<String>,
}

impl LsArgs {
    fn run(self, networks: &Networks<'_>) -> Result<()> {
        let mut rows: Vec<Listed> = networks.list()?.iter().map(Listed::from).collect();
        rows.extend(modes());
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        let filters = KeyFilters::parse(&self.filters, &["name", "id", "driver", "label", "type"])?;
        rows.retain(|r| {
            let builtin = strata_net::networks::PREDEFINED.contains(&r.name.as_str());
            filters.matches(|key, value| match key {
                "name" => r.name.contains(value),
                "id" => r.id.starts_with(value),
                "driver" => r.driver == value,
                "type" => (value == "builtin") == builtin,
                _ => KeyFilters::label_holds(&r.labels, value),
            })
        });
        let id = |r: &Listed| {
            if self.no_trunc {
                r.id.clone()
            } else {
                r.id[..12].to_string()
            }
        };
        if self.quiet {
            for r in &rows {
                println!("{}", id(r));
            }
            return Ok(());
        }
        let values: Vec<Value> = rows
            .iter()
            .map(|r| {
                json!({
                    "ID": id(r),
                    "Name": r.name,
                    "Driver": r.driver,
                    "Scope": "local",
                    "IPv6": "false",
                    "Internal": r.internal.to_string(),
                    "Labels": r.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
                    "CreatedAt": r.created,
                })
            })
            .collect();
        let headers = [
            ("ID", "NETWORK ID"),
            ("Name", "NAME"),
            ("Driver", "DRIVER"),
            ("Scope", "SCOPE"),
            ("IPv6", "IPV6"),
            ("Internal", "INTERNAL"),
            ("Labels", "LABELS"),
            ("CreatedAt", "CREATED"),
        ];
        print_rows(
            self.format.as_deref(),
            "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}",
            &headers,
            &values,
        )?;
        Ok(())
    }
}

#[derive(clap::Args)]
pub struct InspectArgs {
    /// Format output using a Go-style template, e.g. '{{.Name}}' or '{{json .IPAM}}'
    #[arg(short, long)]
    format: Option<String>,
    #[arg(required = true, value_name = "NETWORK")]
    networks: Vec<String>,
}

impl InspectArgs {
    fn run(self, store: &Store, networks: &Networks<'_>) -> Result<()> {
        let out = self
            .networks
            .iter()
            .map(|key| inspect(store, networks, key))
            .collect::<Result<Vec<_>>>()?;
        print_inspected(self.format.as_deref(), out)
    }
}

/// `network inspect KEY`'s document: a network by name or id prefix, or a mode.
pub(crate) fn inspect(store: &Store, networks: &Networks<'_>, key: &str) -> Result<Value> {
    if let Some(mode) = modes().into_iter().find(|m| m.name == key) {
        return Ok(describe_mode(&mode));
    }
    let network = networks.get(key)?;
    let endpoints = networks.endpoints(&network.name)?;
    Ok(describe(&network, &endpoints, &Containers::open(store)?))
}

/// Every network's document, the modes among them, by name (the API's `GET /networks`).
pub(crate) fn inspect_all(store: &Store, networks: &Networks<'_>) -> Result<Vec<Value>> {
    let mut names: Vec<String> = networks.list()?.into_iter().map(|n| n.name).collect();
    names.extend(modes().map(|m| m.name));
    names.sort();
    names.iter().map(|n| inspect(store, networks, n)).collect()
}

/// docker's `network inspect` shape for a network and its running containers.
fn describe(network: &Network, endpoints: &[Lease], containers: &Containers<'_>) -> Value {
    let members: serde_json::Map<String, Value> = endpoints
        .iter()
        .map(|l| {
            let name = containers
                .get(&l.container)
                .map(|c| c.name)
                .unwrap_or_default();
            let endpoint = Digest::of(format!("endpoint {} {}", l.container, l.network).as_bytes());
            (
                l.container.clone(),
                json!({
                    "Name": name,
                    "EndpointID": endpoint.hex(),
                    "MacAddress": ipam::format_mac(ipam::mac_of(l.ip)),
                    "IPv4Address": format!("{}/{}", l.ip, network.subnet.prefix),
                    "IPv6Address": "",
                }),
            )
        })
        .collect();
    let mut options = serde_json::Map::new();
    options.insert(
        "com.docker.network.bridge.name".into(),
        json!(network.bridge),
    );
    if network.name == DEFAULT_NETWORK {
        options.insert(
            "com.docker.network.bridge.default_bridge".into(),
            json!("true"),
        );
    }
    json!({
        "Name": network.name,
        "Id": network.id,
        "Created": network.created,
        "Scope": "local",
        "Driver": network.driver,
        "EnableIPv6": false,
        "IPAM": {
            "Driver": "default",
            "Options": {},
            "Config": [{"Subnet": network.subnet.to_string(), "Gateway": network.gateway.to_string()}],
        },
        "Internal": network.internal,
        "Attachable": false,
        "Ingress": false,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": false,
        "Containers": members,
        "Options": options,
        "Labels": network.labels,
    })
}

fn describe_mode(mode: &Listed) -> Value {
    json!({
        "Name": mode.name,
        "Id": mode.id,
        // Go's zero time: the modes were never made (docker shows its start).
        "Created": "0001-01-01T00:00:00Z",
        "Scope": "local",
        "Driver": mode.driver,
        "EnableIPv6": false,
        "IPAM": {"Driver": "default", "Options": null, "Config": []},
        "Internal": false,
        "Attachable": false,
        "Ingress": false,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": false,
        "Containers": {},
        "Options": {},
        "Labels": {},
    })
}

#[derive(clap::Args)]
pub struct RmArgs {
    #[arg(required = true, value_name = "NETWORK")]
    networks: Vec<String>,
}

impl RmArgs {
    fn run(self, networks: &Networks<'_>) -> ExitCode {
        super::each(&self.networks, |key| {
            networks.remove(key)?;
            Ok(key.to_string())
        })
    }
}

#[derive(clap::Args)]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
}

impl PruneArgs {
    fn run(self, networks: &Networks<'_>) -> Result<()> {
        if !self.force
            && !super::confirm(
                "This will remove all custom networks not used by at least one container.",
            )?
        {
            return Ok(());
        }
        let removed = networks.prune()?;
        if !removed.is_empty() {
            println!("Deleted Networks:");
            for name in removed {
                println!("{name}");
            }
        }
        Ok(())
    }
}

#[derive(clap::Args)]
pub struct ConnectArgs {
    /// Add network-scoped alias for the container
    #[arg(long = "alias")]
    aliases: Vec<String>,
    network: String,
    container: String,
}

impl ConnectArgs {
    fn run(self, store: &Store, networks: &Networks<'_>) -> Result<()> {
        let c = Containers::open(store)?.get(&self.container)?;
        networks.connect_container(&c, &self.network, &self.aliases)?;
        Ok(())
    }
}

#[derive(clap::Args)]
pub struct DisconnectArgs {
    /// Force the container to disconnect from a network (accepted: a disconnect never
    /// waits for anything here)
    #[arg(short, long)]
    _force: bool,
    network: String,
    container: String,
}

impl DisconnectArgs {
    fn run(self, store: &Store, networks: &Networks<'_>) -> Result<()> {
        let c = Containers::open(store)?.get(&self.container)?;
        networks.disconnect_container(&c, &self.network)?;
        Ok(())
    }
}
