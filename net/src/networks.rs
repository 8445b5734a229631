//! The store's networks and what its containers hold on them (design §1): one state file,
//! `networks/state.json`, changed only under the store's network lock, which is held for
//! milliseconds and never across a run. [`Networks`] is the runtime's [`Networking`]: a
//! runner connects a container before each run (address lease, reserved host ports, its
//! `hosts` and `resolv.conf`), attaches the namespace its backend made (bridge, veth,
//! address, route, the nft table), and the connection's drop detaches it. Host resources
//! (bridges, the table) are then [`reconcile`](Networks::reconcile)d from the state: they
//! exist while a live container (active and claimed) needs them, so a runner killed with
//! -9 leaves nothing that the next reconcile does not remove.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use strata_runtime::backend::NetAttach;
use strata_runtime::cap_std::fs::Dir;
use strata_runtime::container::{
    now, Container, Containers, Network as NetworkOption, Networking, PortMapping, Proto,
    HOSTS_FILE, RESOLV_FILE,
};
use strata_runtime::store::write_atomic;
use strata_runtime::Store;
use strata_runtime::{Digest, Error, Result};

use crate::etc;
use crate::ipam::{self, Subnet};
use crate::netlink::{Netlink, Veth};
use crate::nft;
use crate::pasta::{self, Pasta};
use crate::slirp::{self, Slirp};

const STATE_FILE: &str = "state.json";
/// The default network's name, as docker's.
pub const DEFAULT_NETWORK: &str = "bridge";
/// The default network's bridge.
const DEFAULT_BRIDGE_NAME: &str = "strata0";
/// The networks docker lists beside `bridge`, which are modes rather than networks: they
/// cannot be made, removed or connected to.
pub const PREDEFINED: [&str; 3] = [DEFAULT_NETWORK, "host", "none"];
/// How many networks a container can be on: its interfaces are eth0 to eth15.
const MAX_SLOTS: u8 = 16;

/// A network of the store.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Network {
    pub id: String,
    pub name: String,
    pub driver: String,
    pub subnet: Subnet,
    pub gateway: Ipv4Addr,
    /// The host bridge its containers' veths join.
    pub bridge: String,
    /// No outbound NAT and no traffic to other networks or the host's (docker's `--internal`).
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub created: String,
}

/// A container's membership of a network: its address from the first start (or `network
/// connect`) until `rm` (or `network disconnect`), and, while it runs, its published ports
/// as reserved (a requested port 0 resolved).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Lease {
    pub container: String,
    pub network: String,
    /// Its MAC is derived from it (`ipam::mac_of`), as docker's.
    pub ip: Ipv4Addr,
    /// Its interface: `eth<slot>` in the container, `vs<id>< slot in hex>` on the host.
    #[serde(default)]
    pub slot: u8,
    /// Names it has on this network beside the container's name and short id.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// The container's name and hostname as of its last run (a foreground run's record is
    /// written only once its program runs, after its peers must know it).
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub ports: Vec<PortMapping>,
    /// Attached: its namespace is on the bridge (live while its claim is also held).
    #[serde(default)]
    pub active: bool,
}

impl Lease {
    /// The container's interface for it.
    pub fn interface(&self) -> String {
        format!("eth{}", self.slot)
    }

    /// The host end of its veth.
    fn veth(&self) -> String {
        format!("vs{}{:x}", &self.container[..10], self.slot)
    }
}

/// The table as last applied, and where: a change of neither needs no nft run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Applied {
    script: String,
    netns: u64,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct State {
    #[serde(default)]
    networks: Vec<Network>,
    #[serde(default)]
    leases: Vec<Lease>,
    /// Containers disconnected from the network their `--network` names: their next start
    /// does not join it again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    disconnected: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    applied: Option<Applied>,
    /// Running containers that publish on the host's own sockets instead of the table.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    host_runs: Vec<HostRun>,
}

/// A run on `bridge` without privileges: its published ports are the host's own sockets,
/// opened by its pasta (native), or by the guest's mapped binds (Wasm, host-ports mode).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct HostRun {
    container: String,
    ports: Vec<PortMapping>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pasta: Option<Pasta>,
}

impl State {
    fn network(&self, name: &str) -> Option<&Network> {
        self.networks.iter().find(|n| n.name == name)
    }

    /// The network `key` names: a name, an id or a unique id prefix, as docker finds them.
    fn find(&self, key: &str) -> Result<Network> {
        if key == DEFAULT_NETWORK || key == "default" {
            return Ok(self.default_network());
        }
        let not_found = || Error::NetworkNotFound(key.to_string());
        if let Some(n) = self.networks.iter().find(|n| n.name == key || n.id == key) {
            return Ok(n.clone());
        }
        let mut by_prefix = self
            .networks
            .iter()
            .filter(|n| !key.is_empty() && n.id.starts_with(key));
        match (by_prefix.next(), by_prefix.next()) {
            (Some(n), None) => Ok(n.clone()),
            (Some(_), Some(_)) => Err(Error::Conflict(format!(
                "network {key} is ambiguous: more than one network id starts with it"
            ))),
            _ => Err(not_found()),
        }
    }

    /// The default network, as saved once a container used it, or as it will be.
    fn default_network(&self) -> Network {
        if let Some(n) = self.network(DEFAULT_NETWORK) {
            return n.clone();
        }
        let subnet = Subnet::parse(ipam::DEFAULT_BRIDGE).expect("the default subnet");
        let created = now();
        Network {
            id: Digest::of(format!("network {DEFAULT_NETWORK} {created}").as_bytes())
                .hex()
                .to_string(),
            name: DEFAULT_NETWORK.into(),
            driver: "bridge".into(),
            subnet,
            gateway: subnet.gateway(),
            bridge: DEFAULT_BRIDGE_NAME.into(),
            internal: false,
            labels: BTreeMap::new(),
            created,
        }
    }

    /// `network`, saved if it is the default one used for the first time.
    fn keep(&mut self, network: Network) -> Network {
        if self.network(&network.name).is_none() {
            self.networks.push(network.clone());
        }
        network
    }

    fn lease_mut(&mut self, container: &str, network: &str) -> Option<&mut Lease> {
        self.leases
            .iter_mut()
            .find(|l| l.container == container && l.network == network)
    }

    /// The container's leases, by slot (its interfaces in order).
    fn leases_of(&self, container: &str) -> Vec<Lease> {
        let mut out: Vec<Lease> = self
            .leases
            .iter()
            .filter(|l| l.container == container)
            .cloned()
            .collect();
        out.sort_by_key(|l| l.slot);
        out
    }

    /// Puts `container` on `network`: the lowest free address and the container's lowest
    /// free slot.
    fn join(&mut self, container: &str, network: &Network, aliases: &[String]) -> Result<Lease> {
        if let Some(bad) = aliases
            .iter()
            .find(|a| !strata_runtime::container::valid_name(a))
        {
            return Err(Error::InvalidArgument(format!(
                "invalid network alias {bad:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        let used: Vec<Ipv4Addr> = self
            .leases
            .iter()
            .filter(|l| l.network == network.name)
            .map(|l| l.ip)
            .collect();
        let ip = ipam::allocate(network.subnet, network.gateway, &used).ok_or_else(|| {
            Error::Conflict(format!(
                "no available IPv4 addresses on network {} ({})",
                network.name, network.subnet
            ))
        })?;
        let slots: Vec<u8> = self
            .leases
            .iter()
            .filter(|l| l.container == container)
            .map(|l| l.slot)
            .collect();
        let slot = (0..MAX_SLOTS).find(|s| !slots.contains(s)).ok_or_else(|| {
            Error::Conflict(format!(
                "container {container} is on {MAX_SLOTS} networks, the most it can be on"
            ))
        })?;
        let lease = Lease {
            container: container.to_string(),
            network: network.name.clone(),
            ip,
            slot,
            aliases: aliases.to_vec(),
            name: String::new(),
            hostname: String::new(),
            ports: Vec::new(),
            active: false,
        };
        self.leases.push(lease.clone());
        Ok(lease)
    }

    /// The lease of `c` on the network its `--network` names, made at its first start
    /// unless it was disconnected from it since.
    fn ensure_default_membership(&mut self, c: &Container) -> Result<()> {
        let Some(key) = network_key(c) else {
            return Ok(());
        };
        if self.disconnected.contains(&c.id) {
            return Ok(());
        }
        let network = self.find(key)?;
        if self.lease_mut(&c.id, &network.name).is_some() {
            return Ok(());
        }
        let network = self.keep(network);
        self.join(&c.id, &network, &c.host.aliases).map(|_| ())
    }
}

/// The network a container's `--network` names, if it names one (`bridge` or a user
/// network).
fn network_key(c: &Container) -> Option<&str> {
    match &c.host.network {
        NetworkOption::Bridge => Some(DEFAULT_NETWORK),
        NetworkOption::Named(n) => Some(n),
        _ => None,
    }
}

/// The state in `dir` (none yet: empty). Read without the lock: the file is replaced whole.
fn load(dir: &Dir) -> Result<State> {
    match dir.read(STATE_FILE) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| Error::InvalidDocument(format!("networks/{STATE_FILE}: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
        Err(e) => Err(Error::io(format!("read networks/{STATE_FILE}"), e)),
    }
}

/// What `network create` asks for; what is not given is chosen.
#[derive(Debug, Default, Clone)]
pub struct NetworkOptions {
    pub driver: Option<String>,
    pub subnet: Option<Subnet>,
    pub gateway: Option<Ipv4Addr>,
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
}

/// The networks of a store.
pub struct Networks<'s> {
    store: &'s Store,
}

impl<'s> Networks<'s> {
    pub fn open(store: &'s Store) -> Networks<'s> {
        Networks { store }
    }

    fn load(&self) -> Result<State> {
        load(&self.store.networks_dir()?)
    }

    /// `f` on the state under the lock; the state is saved if `f` succeeds.
    fn change<T>(&self, f: impl FnOnce(&mut State) -> Result<T>) -> Result<T> {
        let _lock = self.store.network_lock()?;
        let dir = self.store.networks_dir()?;
        let mut state = load(&dir)?;
        let out = f(&mut state)?;
        let bytes = serde_json::to_vec_pretty(&state).expect("serialize");
        write_atomic(&dir, STATE_FILE, &bytes, false)?;
        Ok(out)
    }

    /// The store's networks, the default one first.
    pub fn list(&self) -> Result<Vec<Network>> {
        let state = self.load()?;
        let mut out = vec![state.default_network()];
        out.extend(
            state
                .networks
                .into_iter()
                .filter(|n| n.name != DEFAULT_NETWORK),
        );
        Ok(out)
    }

    /// The network `key` names (a name, an id, a unique id prefix).
    pub fn get(&self, key: &str) -> Result<Network> {
        self.load()?.find(key)
    }

    /// Every container's memberships, by slot within a container.
    pub fn leases(&self) -> Result<Vec<Lease>> {
        let mut leases = self.load()?.leases;
        leases.sort_by(|a, b| (&a.container, a.slot).cmp(&(&b.container, b.slot)));
        Ok(leases)
    }

    /// The memberships of running containers (their claim held, attached) on `network`:
    /// docker's endpoints.
    pub fn endpoints(&self, network: &str) -> Result<Vec<Lease>> {
        let state = self.load()?;
        let mut out: Vec<Lease> = self
            .claimed_on(&state, network)?
            .into_iter()
            .filter(|l| l.active)
            .collect();
        out.sort_by_key(|l| l.ip);
        Ok(out)
    }

    /// The published ports of the running containers, by container id (for `ps` and `port`).
    pub fn ports(&self) -> Result<BTreeMap<String, Vec<PortMapping>>> {
        let state = self.load()?;
        let mut out: BTreeMap<String, Vec<PortMapping>> = BTreeMap::new();
        for l in state.leases.into_iter().filter(|l| l.active) {
            out.entry(l.container).or_default().extend(l.ports);
        }
        for run in state.host_runs {
            out.entry(run.container).or_default().extend(run.ports);
        }
        Ok(out)
    }

    /// `network create`: a bridge network named `name` with the subnet asked for (which
    /// must overlap no network of the store and no route of the host) or the next free /24
    /// of 10.89.0.0/16. Its bridge is made when its first container starts.
    pub fn create(&self, name: &str, opts: &NetworkOptions) -> Result<Network> {
        if PREDEFINED.contains(&name) || name == "default" {
            return Err(Error::Conflict(format!(
                "network with name {name} already exists: it is a pre-defined network"
            )));
        }
        if !strata_runtime::container::valid_name(name) {
            return Err(Error::InvalidArgument(format!(
                "invalid network name {name:?}: a network name is made of [a-zA-Z0-9][a-zA-Z0-9_.-]"
            )));
        }
        match opts.driver.as_deref() {
            None | Some("bridge") => {}
            Some(d) => {
                return Err(Error::Unsupported(format!(
                    "network driver {d:?}: only bridge networks are supported"
                )))
            }
        }
        let routes = host_routes(&mut Netlink::open()?)?;
        self.change(|state| {
            if state.network(name).is_some() {
                return Err(Error::Conflict(format!(
                    "network with name {name} already exists"
                )));
            }
            let mut taken: Vec<(Subnet, String)> = state
                .networks
                .iter()
                .map(|n| (n.subnet, format!("network {}", n.name)))
                .collect();
            if state.network(DEFAULT_NETWORK).is_none() {
                let d = state.default_network();
                taken.push((d.subnet, format!("network {}", d.name)));
            }
            taken.extend(routes);
            let subnet = match opts.subnet {
                Some(s) => {
                    ipam::ensure_free(s, &taken)?;
                    s
                }
                None => {
                    let pool = Subnet::parse(ipam::USER_POOL).expect("the user pool");
                    let busy: Vec<Subnet> = taken.iter().map(|(s, _)| *s).collect();
                    ipam::next_subnet(pool, ipam::USER_PREFIX, &busy).ok_or_else(|| {
                        Error::Conflict(format!(
                            "no free /{} left in {pool}: give the network a --subnet",
                            ipam::USER_PREFIX
                        ))
                    })?
                }
            };
            let gateway = match opts.gateway {
                Some(g)
                    if !subnet.contains(g) || g == subnet.address || g == subnet.broadcast() =>
                {
                    return Err(Error::InvalidArgument(format!(
                        "invalid gateway {g}: not a host address of subnet {subnet}"
                    )))
                }
                Some(g) => g,
                None => subnet.gateway(),
            };
            let created = now();
            let id = Digest::of(format!("network {name} {created}").as_bytes())
                .hex()
                .to_string();
            let network = Network {
                bridge: format!("br-{}", &id[..12]),
                id,
                name: name.to_string(),
                driver: "bridge".into(),
                subnet,
                gateway,
                internal: opts.internal,
                labels: opts.labels.clone(),
                created,
            };
            state.networks.push(network.clone());
            Ok(network)
        })
    }

    /// `network rm`: refused for the default network and while a container runs on it
    /// (docker's "has active endpoints"); stopped containers lose their address on it (their
    /// next start fails, as docker's do).
    pub fn remove(&self, key: &str) -> Result<Network> {
        if PREDEFINED.contains(&key) {
            return Err(Error::Conflict(format!(
                "{key} is a pre-defined network and cannot be removed"
            )));
        }
        self.change(|state| {
            let network = state.find(key)?;
            if network.name == DEFAULT_NETWORK {
                return Err(Error::Conflict(format!(
                    "{DEFAULT_NETWORK} is a pre-defined network and cannot be removed"
                )));
            }
            // A container between its connect and its attach counts too: it would start
            // without the network otherwise.
            if !self.claimed_on(state, &network.name)?.is_empty() {
                return Err(Error::Conflict(format!(
                    "error while removing network: network {} id {} has active endpoints",
                    network.name, network.id
                )));
            }
            state.leases.retain(|l| l.network != network.name);
            state.networks.retain(|n| n.name != network.name);
            Netlink::open()?.delete_link(&network.bridge)?;
            self.reconcile(state, None)?;
            Ok(network)
        })
    }

    /// `network prune`: removes every user network no running container is on; their names.
    pub fn prune(&self) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for n in self.list()? {
            if n.name == DEFAULT_NETWORK {
                continue;
            }
            match self.remove(&n.id) {
                Ok(n) => removed.push(n.name),
                Err(Error::Conflict(_)) | Err(Error::NetworkNotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(removed)
    }

    /// The memberships on `network` of containers something runs (attached or about to be).
    fn claimed_on(&self, state: &State, network: &str) -> Result<Vec<Lease>> {
        let containers = Containers::open(self.store)?;
        let mut out = Vec::new();
        for l in state.leases.iter().filter(|l| l.network == network) {
            if containers.claimed(&l.container)? {
                out.push(l.clone());
            }
        }
        Ok(out)
    }

    /// `network connect`: puts `c` on the network `key` names, with `aliases`; a running
    /// container gets its interface now (`eth<n>`), another one at its next start.
    pub fn connect_container(&self, c: &Container, key: &str, aliases: &[String]) -> Result<Lease> {
        attachable(c)?;
        let containers = Containers::open(self.store)?;
        self.change(|state| {
            let network = state.find(key)?;
            if state.lease_mut(&c.id, &network.name).is_some() {
                return Err(Error::Conflict(format!(
                    "endpoint with name {} already exists in network {}",
                    c.name, network.name
                )));
            }
            // Its own network first, so that a container never started keeps eth0 for it.
            let default = network_key(c).and_then(|k| state.find(k).ok());
            if default.as_ref().map(|d| &d.name) == Some(&network.name) {
                state.disconnected.retain(|id| id != &c.id);
            } else {
                state.ensure_default_membership(c)?;
            }
            let network = state.keep(network);
            let hostname = state
                .leases_of(&c.id)
                .first()
                .map(|l| l.hostname.clone())
                .unwrap_or_default();
            let mut lease = state.join(&c.id, &network, aliases)?;
            lease.name = c.name.clone();
            lease.hostname = hostname;
            // Attached already (a lease of its run is active, or it runs on no network at
            // all): plugged now; otherwise its runner's attach, still to come, plugs it.
            let running = c.running() && containers.claimed(&c.id)?;
            let attached = state.leases.iter().any(|l| l.container == c.id && l.active)
                || (c.status == strata_runtime::container::Status::Running
                    && state.leases_of(&c.id).len() == 1);
            if running && attached {
                let ns = netns_of(c)?;
                let routed = state.leases.iter().any(|l| {
                    l.container == c.id
                        && l.active
                        && l.slot != lease.slot
                        && state.network(&l.network).is_some_and(|n| !n.internal)
                });
                let mut nl = Netlink::open()?;
                let mut inside = Netlink::in_netns(ns.as_fd())?;
                plug(&mut nl, &mut inside, ns.as_fd(), &network, &lease, !routed)?;
                lease.active = true;
            }
            *state.lease_mut(&c.id, &network.name).expect("joined above") = lease.clone();
            self.reconcile(state, None)?;
            Ok(lease)
        })
    }

    /// `network disconnect`: takes `c` off the network `key` names; a running container
    /// loses that interface now.
    pub fn disconnect_container(&self, c: &Container, key: &str) -> Result<()> {
        self.change(|state| {
            let network = state.find(key)?;
            let default = network_key(c).and_then(|k| state.find(k).ok());
            let is_default = default.as_ref().map(|d| &d.name) == Some(&network.name);
            let Some(lease) = state.lease_mut(&c.id, &network.name).cloned() else {
                // Never started, so not yet joined: its --network is what it would join.
                if is_default && !state.disconnected.contains(&c.id) && !c.running() {
                    state.disconnected.push(c.id.clone());
                    return Ok(());
                }
                return Err(Error::Conflict(format!(
                    "container {} is not connected to network {}",
                    c.name, network.name
                )));
            };
            state
                .leases
                .retain(|l| !(l.container == c.id && l.network == network.name));
            if is_default {
                state.disconnected.push(c.id.clone());
            }
            if lease.active {
                // Its pair in the container goes with it.
                Netlink::open()?.delete_link(&lease.veth())?;
            }
            self.reconcile(state, None)
        })
    }

    /// Makes the host resources match the state: the table holds the published ports of
    /// the live containers (active, and their claim held), bridges without live members go,
    /// every live container's `hosts` names its live peers on its user networks, and leases
    /// of containers that no longer exist are dropped. `except` is a container that is
    /// leaving (its claim is still held while it detaches).
    fn reconcile(&self, state: &mut State, except: Option<&str>) -> Result<()> {
        let containers = Containers::open(self.store)?;
        state.leases.retain(|l| containers.exists(&l.container));
        state.disconnected.retain(|id| containers.exists(id));
        let mut host_runs = Vec::new();
        for run in std::mem::take(&mut state.host_runs) {
            if Some(run.container.as_str()) != except && containers.claimed(&run.container)? {
                host_runs.push(run);
            } else if let Some(p) = &run.pasta {
                p.stop();
            }
        }
        state.host_runs = host_runs;
        let mut live = Vec::new();
        for l in &state.leases {
            if l.active
                && Some(l.container.as_str()) != except
                && containers.claimed(&l.container)?
            {
                live.push(l);
            }
        }
        let netns = own_netns()?;
        let mut bridges = Vec::new();
        let mut idle = Vec::new();
        for n in &state.networks {
            if live.iter().any(|l| l.network == n.name) {
                bridges.push(nft::BridgeRules {
                    name: n.bridge.clone(),
                    subnet: n.subnet,
                    internal: n.internal,
                });
            } else {
                idle.push(n.bridge.as_str());
            }
        }
        if bridges.is_empty() {
            if state.applied.take().is_some() {
                nft::delete(nft::DEFAULT_TABLE)?;
            }
        } else {
            let forwards: Vec<nft::Forward> = live
                .iter()
                .flat_map(|l| {
                    l.ports.iter().map(|p| nft::Forward {
                        host_ip: p.host_ip,
                        host_port: p.host_port,
                        proto: p.proto,
                        container_ip: l.ip,
                        container_port: p.container_port,
                    })
                })
                .collect();
            let script = nft::ruleset(nft::DEFAULT_TABLE, &bridges, &forwards);
            let applied = Applied { script, netns };
            if state.applied.as_ref() != Some(&applied) {
                nft::apply(&applied.script)?;
                state.applied = Some(applied);
            }
        }
        if !idle.is_empty() {
            let mut nl = Netlink::open()?;
            for bridge in idle {
                nl.delete_link(bridge)?;
            }
        }
        rewrite_hosts(&containers, &live)
    }
}

/// Rewrites the `hosts` of every live container (in place, when its text changed): its own
/// line, then its live peers on its user networks by name, aliases and short id. A name is
/// the record's (a renamed container is found by its new name), else the lease's.
fn rewrite_hosts(containers: &Containers<'_>, live: &[&Lease]) -> Result<()> {
    let mut names: BTreeMap<&str, String> = BTreeMap::new();
    for l in live {
        names.entry(l.container.as_str()).or_insert_with(|| {
            containers
                .get(&l.container)
                .map_or_else(|_| l.name.clone(), |c| c.name)
        });
    }
    for id in names.keys() {
        let mut own: Vec<&&Lease> = live.iter().filter(|l| l.container == *id).collect();
        own.sort_by_key(|l| l.slot);
        let Some(first) = own.first() else { continue };
        let mut peers = Vec::new();
        for mine in own.iter().filter(|l| l.network != DEFAULT_NETWORK) {
            for peer in live.iter().filter(|p| p.network == mine.network) {
                let mut entry = vec![names[peer.container.as_str()].clone()];
                entry.extend(peer.aliases.iter().cloned());
                entry.push(peer.container[..12].to_string());
                peers.push(etc::HostEntry {
                    ip: peer.ip,
                    names: entry,
                });
            }
        }
        let text = etc::hosts(Some(first.ip), &first.hostname, &peers);
        match containers.dir_by_id(id) {
            Ok(dir) => {
                etc::rewrite_in_place(&dir, HOSTS_FILE, &text)?;
            }
            // Removed meanwhile (`rm -f`): nothing to name.
            Err(_) => continue,
        }
    }
    Ok(())
}

/// A run's `hosts` (its own address, without peers until it is attached) and `resolv.conf`
/// in the container's directory `dir`.
fn write_name_files(dir: &Dir, own_ip: Option<Ipv4Addr>, hostname: &str) -> Result<()> {
    etc::rewrite_in_place(dir, HOSTS_FILE, &etc::hosts(own_ip, hostname, &[]))?;
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    etc::rewrite_in_place(dir, RESOLV_FILE, &etc::resolv_conf(&host_resolv)).map(drop)
}

/// Refuses containers that cannot be on networks.
fn attachable(c: &Container) -> Result<()> {
    if !c.host.network.attaches() {
        return Err(Error::Conflict(format!(
            "container {} runs with --network {}: it cannot be connected to networks",
            c.name, c.host.network
        )));
    }
    Ok(())
}

/// The network namespace of running container `c`, checked to be its process's still.
fn netns_of(c: &Container) -> Result<OwnedFd> {
    if c.runtime == strata_runtime::backend::Kind::Wasm {
        // Its pid is its runner's, whose namespace is the host's: the guest's is its thread's.
        return Err(Error::Unsupported(format!(
            "container {} is a running Wasm container: it joins networks when it starts",
            c.name
        )));
    }
    let not_running = || Error::Conflict(format!("container {} is not running", c.name));
    let pid = c.live_pid().ok_or_else(not_running)?;
    let path = format!("/proc/{}/ns/net", pid.as_raw_nonzero());
    let ns = std::fs::File::open(&path).map_err(|e| Error::io(format!("open {path}"), e))?;
    // The pid was not reused between the check and the open.
    c.live_pid().ok_or_else(not_running)?;
    Ok(ns.into())
}

/// Plugs `lease`'s interface into the namespace `ns` (`inside` is a netlink socket there):
/// a veth whose host end joins the network's bridge (made if missing) and whose peer is
/// `eth<slot>` with the lease's address and MAC, up; `route`: the default route through
/// the network's gateway (never for an internal network).
fn plug(
    nl: &mut Netlink,
    inside: &mut Netlink,
    ns: BorrowedFd<'_>,
    network: &Network,
    lease: &Lease,
    route: bool,
) -> Result<()> {
    let bridge = ensure_bridge(nl, network)?;
    let veth = lease.veth();
    // A veth of an earlier run whose namespace still lives (a killed runner).
    nl.delete_link(&veth)?;
    let interface = lease.interface();
    nl.add_veth(&Veth {
        host: &veth,
        controller: bridge,
        peer: &interface,
        peer_ns: ns,
        peer_mac: ipam::mac_of(lease.ip),
        mtu: None,
    })?;
    let index = interface_index(inside, &interface)?;
    inside.set_up(index)?;
    inside.add_address(index, lease.ip, network.subnet.prefix)?;
    if route && !network.internal {
        inside.add_default_route(network.gateway)?;
    }
    Ok(())
}

fn interface_index(nl: &mut Netlink, name: &str) -> Result<u32> {
    nl.link_index(name)?.ok_or_else(|| {
        Error::io(
            format!("container interface {name}"),
            std::io::Error::from_raw_os_error(libc::ENODEV),
        )
    })
}

impl Networking for Networks<'_> {
    fn connect<'a>(&'a self, c: &Container, hostname: &str) -> Result<Box<dyn NetAttach + 'a>> {
        if !strata_runtime::privilege::privileged() {
            return self.connect_rootless(c, hostname);
        }
        let containers = Containers::open(self.store)?;
        let dir = containers.dir_of(c)?;
        // Reserved before the lock and before anything is written: a port in use fails
        // the run with nothing changed.
        let (reservations, ports) = reserve(&c.host.publish, false)?;
        let first = self.change(|state| {
            state.ensure_default_membership(c)?;
            let mut first = None;
            for (i, mine) in state.leases_of(&c.id).into_iter().enumerate() {
                if state.network(&mine.network).is_none() {
                    return Err(Error::NetworkNotFound(mine.network.clone()));
                }
                let lease = state.lease_mut(&c.id, &mine.network).expect("listed");
                lease.name = c.name.clone();
                lease.hostname = hostname.to_string();
                lease.active = false;
                // Published on its first network, as docker publishes them.
                lease.ports = if i == 0 { ports.clone() } else { Vec::new() };
                first.get_or_insert(lease.ip);
            }
            Ok(first)
        })?;
        write_name_files(&dir, first, hostname)?;
        Ok(Box::new(Connection {
            networks: self,
            container: c.id.clone(),
            auto_remove: c.auto_remove,
            attached: AtomicBool::new(false),
            _reservations: reservations,
        }))
    }

    fn release(&self, id: &str) -> Result<()> {
        self.change(|state| {
            let known = state.leases.iter().any(|l| l.container == id)
                || state.disconnected.iter().any(|c| c == id)
                || state.host_runs.iter().any(|r| r.container == id);
            if !known {
                return Ok(());
            }
            state.leases.retain(|l| l.container != id);
            state.disconnected.retain(|c| c != id);
            self.reconcile(state, Some(id))
        })
    }
}

impl Networks<'_> {
    /// Without privileges, `bridge` publishes on the host's own sockets and leases no
    /// address: a native container gets a pasta of its own at attach; a Wasm guest runs on
    /// the host's network with its binds mapped (host-ports mode: no namespace at all). The
    /// published ports are checked free (and port 0 resolved) here.
    fn connect_rootless<'a>(
        &'a self,
        c: &Container,
        hostname: &str,
    ) -> Result<Box<dyn NetAttach + 'a>> {
        if c.host.network != NetworkOption::Bridge {
            return Err(Error::Unsupported(format!(
                "network {}: rootless containers use bridge (through pasta), none or host for now",
                c.host.network
            )));
        }
        let wasm = c.runtime == strata_runtime::backend::Kind::Wasm;
        let containers = Containers::open(self.store)?;
        let dir = containers.dir_of(c)?;
        // A pasta left by a runner killed with -9 still holds its ports: gone first.
        self.change(|state| self.reconcile(state, None))?;
        // Only checked: pasta or the guest binds them, and a socket held now would be
        // inherited by the container's intermediate process.
        let ports = reserve(&c.host.publish, true)?.1;
        write_name_files(&dir, None, hostname)?;
        let forwarder = if wasm {
            Forwarder::GuestBinds
        } else if pasta::available() {
            Forwarder::Pasta(Mutex::new(None))
        } else {
            etc::rewrite_in_place(&dir, RESOLV_FILE, slirp::RESOLV_CONF)?;
            Forwarder::Slirp(Mutex::new(None))
        };
        let connection = HostConnection {
            networks: self,
            container: c.id.clone(),
            dir: containers.path(c),
            ports,
            forwarder,
        };
        if let Forwarder::GuestBinds = connection.forwarder {
            // Nothing attaches a guest in host-ports mode: its run is on record now.
            connection.record(None)?;
        }
        Ok(Box::new(connection))
    }
}

/// What opens a rootless run's published ports: its pasta, its slirp4netns (when pasta is
/// not installed), or, for a Wasm guest, its own mapped binds (host-ports mode).
enum Forwarder {
    Pasta(Mutex<Option<Pasta>>),
    Slirp(Mutex<Option<Slirp>>),
    GuestBinds,
}

/// One run on `bridge` without privileges (see `connect_rootless`).
struct HostConnection<'n> {
    networks: &'n Networks<'n>,
    container: String,
    dir: std::path::PathBuf,
    ports: Vec<PortMapping>,
    forwarder: Forwarder,
}

impl HostConnection<'_> {
    fn record(&self, pasta: Option<Pasta>) -> Result<()> {
        self.networks.change(|state| {
            state.host_runs.retain(|r| r.container != self.container);
            state.host_runs.push(HostRun {
                container: self.container.clone(),
                ports: self.ports.clone(),
                pasta,
            });
            self.networks.reconcile(state, None)
        })
    }
}

impl NetAttach for HostConnection<'_> {
    fn attach(&self, netns: BorrowedFd<'_>) -> Result<()> {
        match &self.forwarder {
            Forwarder::Pasta(held) => {
                let started = pasta::start(netns, &self.ports, &self.dir)?;
                *held.lock().expect("lock") = Some(started.clone());
                self.record(Some(started))
            }
            Forwarder::Slirp(held) => {
                let started = slirp::start(netns, &self.ports, &self.dir)?;
                *held.lock().expect("lock") = Some(started);
                self.record(None)
            }
            Forwarder::GuestBinds => Err(Error::Unsupported(
                "a Wasm guest without privileges has no namespace to attach".into(),
            )),
        }
    }

    fn host_ports(&self) -> Option<&[PortMapping]> {
        matches!(self.forwarder, Forwarder::GuestBinds).then_some(&self.ports[..])
    }
}

impl Drop for HostConnection<'_> {
    fn drop(&mut self) {
        match &self.forwarder {
            Forwarder::Pasta(held) => {
                if let Some(p) = held.lock().expect("lock").take() {
                    p.stop();
                }
            }
            Forwarder::Slirp(held) => {
                if let Some(mut s) = held.lock().expect("lock").take() {
                    s.stop();
                }
            }
            Forwarder::GuestBinds => {}
        }
        let outcome = self.networks.change(|state| {
            state.host_runs.retain(|r| r.container != self.container);
            self.networks.reconcile(state, Some(&self.container))
        });
        if let Err(e) = outcome {
            eprintln!("strata: detach container {}: {e}", self.container);
        }
    }
}

/// One run of a container on its networks.
struct Connection<'n> {
    networks: &'n Networks<'n>,
    container: String,
    auto_remove: bool,
    attached: AtomicBool,
    /// The published host ports, bound (not listening) for as long as the run lasts, so
    /// that nothing else takes them.
    _reservations: Vec<OwnedFd>,
}

impl NetAttach for Connection<'_> {
    /// Plugs every network the container is on as the lock finds it (one connected since
    /// `connect` included), the default route through the first that is not internal.
    fn attach(&self, netns: BorrowedFd<'_>) -> Result<()> {
        // Set first: a failure half way leaves veths for the drop to delete.
        self.attached.store(true, Ordering::Relaxed);
        self.networks.change(|state| {
            let mut nl = Netlink::open()?;
            let mut inside = Netlink::in_netns(netns)?;
            let lo = interface_index(&mut inside, "lo")?;
            inside.set_up(lo)?;
            let mut routed = false;
            for lease in state.leases_of(&self.container) {
                let network = state
                    .network(&lease.network)
                    .cloned()
                    .ok_or_else(|| Error::NetworkNotFound(lease.network.clone()))?;
                plug(&mut nl, &mut inside, netns, &network, &lease, !routed)?;
                routed |= !network.internal;
                state
                    .lease_mut(&self.container, &lease.network)
                    .expect("listed")
                    .active = true;
            }
            self.networks.reconcile(state, None)
        })
    }
}

impl Drop for Connection<'_> {
    fn drop(&mut self) {
        let attached = self.attached.load(Ordering::Relaxed);
        let outcome = self.networks.change(|state| {
            let mine = state.leases_of(&self.container);
            if self.auto_remove {
                state.leases.retain(|l| l.container != self.container);
                state.disconnected.retain(|c| c != &self.container);
            } else {
                for l in state
                    .leases
                    .iter_mut()
                    .filter(|l| l.container == self.container)
                {
                    l.active = false;
                    l.ports.clear();
                }
            }
            if attached {
                // Usually gone with the namespace already.
                let mut nl = Netlink::open()?;
                for lease in &mine {
                    nl.delete_link(&lease.veth())?;
                }
            }
            self.networks.reconcile(state, Some(&self.container))
        });
        if let Err(e) = outcome {
            eprintln!(
                "strata: detach container {} from its networks: {e}",
                self.container
            );
        }
    }
}

/// The host's routes, as what has each subnet, for the overlap check.
fn host_routes(nl: &mut Netlink) -> Result<Vec<(Subnet, String)>> {
    let links = nl.links()?;
    Ok(nl
        .routes()?
        .into_iter()
        .filter(|r| r.prefix > 0)
        .map(|r| {
            let device = r
                .device
                .and_then(|d| links.iter().find(|l| l.index == d))
                .map_or_else(|| "a route".to_string(), |l| l.name.clone());
            (
                Subnet {
                    address: r.destination,
                    prefix: r.prefix,
                },
                device,
            )
        })
        .collect())
}

/// The network's bridge in this namespace, made (with its gateway address, up, and the
/// forwarding sysctls docker and netavark set) if it is not there. Its subnet must not
/// overlap a route of the host.
fn ensure_bridge(nl: &mut Netlink, network: &Network) -> Result<u32> {
    if let Some(index) = nl.link_index(&network.bridge)? {
        return Ok(index);
    }
    let taken = host_routes(nl)?;
    ipam::ensure_free(network.subnet, &taken)?;
    let index = nl.add_bridge(&network.bridge)?;
    nl.add_address(index, network.gateway, network.subnet.prefix)?;
    sysctl("net/ipv4/ip_forward", "1")?;
    // 127.0.0.1:<published port> is DNATed to the container: such packets must be routable.
    sysctl(
        &format!("net/ipv4/conf/{}/route_localnet", network.bridge),
        "1",
    )?;
    Ok(index)
}

/// Writes a sysctl of the calling thread's network namespace.
fn sysctl(name: &str, value: &str) -> Result<()> {
    let path = format!("/proc/sys/{name}");
    if std::fs::read_to_string(&path).is_ok_and(|v| v.trim() == value) {
        return Ok(());
    }
    std::fs::write(&path, value).map_err(|e| Error::io(format!("write {path}"), e))
}

/// The calling thread's network namespace, by inode.
fn own_netns() -> Result<u64> {
    let stat = rustix::fs::stat("/proc/thread-self/ns/net")
        .map_err(|e| Error::io("stat /proc/thread-self/ns/net", e.into()))?;
    Ok(stat.st_ino)
}

/// Binds (without listening) every published host port, as podman reserves them: taken
/// ports fail here with docker's message; port 0 gets one the kernel picks. Returns the
/// sockets and the mappings with their ports resolved.
///
/// `reuse`: SO_REUSEADDR, for a check of ports that pasta then listens on (a port it served
/// before keeps connections in TIME_WAIT, which a plain bind refuses; a listening socket is
/// refused either way).
fn reserve(publish: &[PortMapping], reuse: bool) -> Result<(Vec<OwnedFd>, Vec<PortMapping>)> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    let mut sockets = Vec::new();
    let mut resolved = Vec::new();
    for p in publish {
        let ip = p.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
        let kind = match p.proto {
            Proto::Tcp => SocketType::STREAM,
            Proto::Udp => SocketType::DGRAM,
        };
        let fd = rustix::net::socket_with(AddressFamily::INET, kind, SocketFlags::CLOEXEC, None)
            .map_err(|e| Error::io("socket", e.into()))?;
        if reuse {
            rustix::net::sockopt::set_socket_reuseaddr(&fd, true)
                .map_err(|e| Error::io("set SO_REUSEADDR", e.into()))?;
        }
        let addr = SocketAddrV4::new(ip, p.host_port);
        rustix::net::bind(&fd, &addr).map_err(|e| {
            if e == rustix::io::Errno::ADDRINUSE {
                Error::Conflict(format!("Bind for {addr} failed: port is already allocated"))
            } else {
                Error::io(format!("bind {addr}/{}", p.proto), e.into())
            }
        })?;
        let port = match rustix::net::getsockname(&fd).map(SocketAddrV4::try_from) {
            Ok(Ok(a)) => a.port(),
            _ => p.host_port,
        };
        resolved.push(PortMapping {
            host_port: port,
            ..*p
        });
        sockets.push(fd);
    }
    Ok((sockets, resolved))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(name: &str, id: &str, subnet: &str) -> Network {
        let subnet = Subnet::parse(subnet).unwrap();
        Network {
            id: id.into(),
            name: name.into(),
            driver: "bridge".into(),
            subnet,
            gateway: subnet.gateway(),
            bridge: format!("br-{}", &id[..4]),
            internal: false,
            labels: BTreeMap::new(),
            created: String::new(),
        }
    }

    fn state() -> State {
        State {
            networks: vec![
                network("front", "aaaa1111", "10.89.0.0/24"),
                network("back", "aaaa2222", "10.89.1.0/30"),
            ],
            ..State::default()
        }
    }

    #[test]
    fn networks_are_found_by_name_id_or_unique_prefix() {
        let s = state();
        assert_eq!(s.find("front").unwrap().id, "aaaa1111");
        assert_eq!(s.find("aaaa2222").unwrap().name, "back");
        assert_eq!(s.find("aaaa2").unwrap().name, "back");
        assert!(matches!(s.find("aaaa"), Err(Error::Conflict(_))));
        assert!(matches!(s.find("nosuch"), Err(Error::NetworkNotFound(_))));
        // The default network exists before its first use, and under docker's other name.
        assert_eq!(s.find("default").unwrap().bridge, "strata0");
        assert_eq!(s.find("bridge").unwrap().subnet.to_string(), "10.88.0.0/16");
    }

    #[test]
    fn a_join_takes_the_lowest_free_address_and_interface() {
        let mut s = state();
        let front = s.find("front").unwrap();
        let back = s.find("back").unwrap();
        let a = s.join("cccccccccccc1", &front, &[]).unwrap();
        let b = s.join("cccccccccccc1", &back, &["db".into()]).unwrap();
        let c = s.join("dddddddddddd2", &front, &[]).unwrap();
        assert_eq!((a.ip.to_string().as_str(), a.slot), ("10.89.0.2", 0));
        assert_eq!((b.ip.to_string().as_str(), b.slot), ("10.89.1.2", 1));
        assert_eq!((c.ip.to_string().as_str(), c.slot), ("10.89.0.3", 0));
        assert_eq!(b.interface(), "eth1");
        assert_eq!(b.veth(), "vscccccccccc1");
        assert_eq!(b.aliases, ["db"]);
        // A /30 has one address beside its gateway.
        let err = s.join("dddddddddddd2", &back, &[]).unwrap_err();
        assert!(
            err.to_string()
                .contains("no available IPv4 addresses on network back"),
            "{err}"
        );
        // Freed slots and addresses are given again.
        s.leases
            .retain(|l| !(l.container == "cccccccccccc1" && l.network == "front"));
        let again = s.join("cccccccccccc1", &front, &[]).unwrap();
        assert_eq!(
            (again.ip.to_string().as_str(), again.slot),
            ("10.89.0.2", 0)
        );
    }
}
