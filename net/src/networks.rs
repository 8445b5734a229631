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
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use strata_runtime::backend::NetAttach;
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

const STATE_FILE: &str = "state.json";
/// The default network's name, as docker's.
pub const DEFAULT_NETWORK: &str = "bridge";
/// The default network's bridge.
const DEFAULT_BRIDGE_NAME: &str = "strata0";
/// A container's interface in its namespace.
const CONTAINER_IFNAME: &str = "eth0";

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
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub created: String,
}

/// What a container holds on a network: its address from its first start until `rm`, and,
/// while it runs, its published ports as reserved (a requested port 0 resolved).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Lease {
    pub container: String,
    pub network: String,
    /// Its MAC is derived from it (`ipam::mac_of`), as docker's.
    pub ip: Ipv4Addr,
    #[serde(default)]
    pub ports: Vec<PortMapping>,
    /// Attached: its namespace is on the bridge (live while its claim is also held).
    #[serde(default)]
    pub active: bool,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    applied: Option<Applied>,
}

impl State {
    fn network(&self, name: &str) -> Option<&Network> {
        self.networks.iter().find(|n| n.name == name)
    }

    fn lease_mut(&mut self, container: &str, network: &str) -> Option<&mut Lease> {
        self.leases
            .iter_mut()
            .find(|l| l.container == container && l.network == network)
    }
}

/// The state in `dir` (none yet: empty). Read without the lock: the file is replaced whole.
fn load(dir: &strata_runtime::cap_std::fs::Dir) -> Result<State> {
    match dir.read(STATE_FILE) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| Error::InvalidDocument(format!("networks/{STATE_FILE}: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
        Err(e) => Err(Error::io(format!("read networks/{STATE_FILE}"), e)),
    }
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

    /// The store's networks (the default one once a container has used it).
    pub fn list(&self) -> Result<Vec<Network>> {
        Ok(self.load()?.networks)
    }

    /// The published ports of the running containers, by container id (for `ps` and `port`).
    pub fn ports(&self) -> Result<BTreeMap<String, Vec<PortMapping>>> {
        let mut out: BTreeMap<String, Vec<PortMapping>> = BTreeMap::new();
        for l in self.load()?.leases.into_iter().filter(|l| l.active) {
            out.entry(l.container).or_default().extend(l.ports);
        }
        Ok(out)
    }

    /// The network `option` names; the default one is made at its first use.
    fn network_for(state: &mut State, option: &NetworkOption) -> Result<Network> {
        let name = match option {
            NetworkOption::Bridge => DEFAULT_NETWORK,
            NetworkOption::Named(n) => n.as_str(),
            other => {
                return Err(Error::InvalidArgument(format!(
                    "network {other}: not a network containers are attached to"
                )));
            }
        };
        if let Some(n) = state.network(name) {
            return Ok(n.clone());
        }
        if name != DEFAULT_NETWORK {
            return Err(Error::InvalidArgument(format!("network {name} not found")));
        }
        let subnet = Subnet::parse(ipam::DEFAULT_BRIDGE)?;
        let created = now();
        let network = Network {
            id: Digest::of(format!("network {name} {created}").as_bytes())
                .hex()
                .to_string(),
            name: name.to_string(),
            driver: "bridge".into(),
            subnet,
            gateway: subnet.gateway(),
            bridge: DEFAULT_BRIDGE_NAME.into(),
            internal: false,
            labels: BTreeMap::new(),
            created,
        };
        state.networks.push(network.clone());
        Ok(network)
    }

    /// Makes the host resources match the state: the table holds the published ports of
    /// the live containers (active, and their claim held), bridges without live members go,
    /// and leases of containers that no longer exist are dropped. `except` is a container
    /// that is leaving (its claim is still held while it detaches).
    fn reconcile(&self, state: &mut State, except: Option<&str>) -> Result<()> {
        let containers = Containers::open(self.store)?;
        state.leases.retain(|l| containers.exists(&l.container));
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
        Ok(())
    }
}

impl Networking for Networks<'_> {
    fn connect<'a>(&'a self, c: &Container, hostname: &str) -> Result<Box<dyn NetAttach + 'a>> {
        let containers = Containers::open(self.store)?;
        let dir = containers.dir_of(c)?;
        // Reserved before the lock and before anything is written: a port in use fails
        // the run with nothing changed.
        let (reservations, ports) = reserve(&c.host.publish)?;
        let lease = self.change(|state| {
            let network = Self::network_for(state, &c.host.network)?;
            let lease = match state.lease_mut(&c.id, &network.name) {
                Some(l) => l,
                None => {
                    let used: Vec<Ipv4Addr> = state
                        .leases
                        .iter()
                        .filter(|l| l.network == network.name)
                        .map(|l| l.ip)
                        .collect();
                    let ip = ipam::allocate(network.subnet, network.gateway, &used).ok_or_else(
                        || {
                            Error::Conflict(format!(
                                "no available IPv4 addresses on network {} ({})",
                                network.name, network.subnet
                            ))
                        },
                    )?;
                    state.leases.push(Lease {
                        container: c.id.clone(),
                        network: network.name.clone(),
                        ip,
                        ports: Vec::new(),
                        active: false,
                    });
                    state.leases.last_mut().expect("pushed")
                }
            };
            lease.ports = ports;
            lease.active = false;
            Ok(lease.clone())
        })?;
        etc::rewrite_in_place(&dir, HOSTS_FILE, &etc::hosts(Some(lease.ip), hostname, &[]))?;
        let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        etc::rewrite_in_place(&dir, RESOLV_FILE, &etc::resolv_conf(&host_resolv))?;
        Ok(Box::new(Connection {
            networks: self,
            container: c.id.clone(),
            network: lease.network,
            auto_remove: c.auto_remove,
            veth: format!("vs{}0", &c.id[..10]),
            attached: AtomicBool::new(false),
            _reservations: reservations,
        }))
    }

    fn release(&self, id: &str) -> Result<()> {
        self.change(|state| {
            let before = state.leases.len();
            state.leases.retain(|l| l.container != id);
            if state.leases.len() == before {
                return Ok(());
            }
            self.reconcile(state, Some(id))
        })
    }
}

/// One run of a container on its network.
struct Connection<'n> {
    networks: &'n Networks<'n>,
    container: String,
    network: String,
    auto_remove: bool,
    /// The host end of its veth.
    veth: String,
    attached: AtomicBool,
    /// The published host ports, bound (not listening) for as long as the run lasts, so
    /// that nothing else takes them.
    _reservations: Vec<OwnedFd>,
}

impl NetAttach for Connection<'_> {
    fn attach(&self, netns: BorrowedFd<'_>) -> Result<()> {
        // Set first: a failure half way leaves a veth for the drop to delete.
        self.attached.store(true, Ordering::Relaxed);
        self.networks.change(|state| {
            let network = state.network(&self.network).cloned().ok_or_else(|| {
                Error::InvalidArgument(format!("network {} not found", self.network))
            })?;
            let lease = state
                .lease_mut(&self.container, &self.network)
                .ok_or_else(|| {
                    Error::Conflict(format!("container {} has no address", self.container))
                })?;
            let mut nl = Netlink::open()?;
            let bridge = ensure_bridge(&mut nl, &network)?;
            // A veth of an earlier run whose namespace still lives (a killed runner).
            nl.delete_link(&self.veth)?;
            let ip = lease.ip;
            nl.add_veth(&Veth {
                host: &self.veth,
                controller: bridge,
                peer: CONTAINER_IFNAME,
                peer_ns: netns,
                peer_mac: ipam::mac_of(ip),
                mtu: None,
            })?;
            let mut inside = Netlink::in_netns(netns)?;
            for name in ["lo", CONTAINER_IFNAME] {
                let index = inside.link_index(name)?.ok_or_else(|| {
                    Error::io(
                        format!("container interface {name}"),
                        std::io::Error::from_raw_os_error(libc::ENODEV),
                    )
                })?;
                inside.set_up(index)?;
                if name == CONTAINER_IFNAME {
                    inside.add_address(index, ip, network.subnet.prefix)?;
                }
            }
            inside.add_default_route(network.gateway)?;
            lease.active = true;
            self.networks.reconcile(state, None)
        })
    }
}

impl Drop for Connection<'_> {
    fn drop(&mut self) {
        let attached = self.attached.load(Ordering::Relaxed);
        let outcome = self.networks.change(|state| {
            if self.auto_remove {
                state.leases.retain(|l| l.container != self.container);
            } else if let Some(l) = state.lease_mut(&self.container, &self.network) {
                l.active = false;
                l.ports.clear();
            }
            if attached {
                // Usually gone with the namespace already.
                Netlink::open()?.delete_link(&self.veth)?;
            }
            self.networks.reconcile(state, Some(&self.container))
        });
        if let Err(e) = outcome {
            eprintln!(
                "strata: detach container {} from network {}: {e}",
                self.container, self.network
            );
        }
    }
}

/// The network's bridge in this namespace, made (with its gateway address, up, and the
/// forwarding sysctls docker and netavark set) if it is not there. Its subnet must not
/// overlap a route of the host.
fn ensure_bridge(nl: &mut Netlink, network: &Network) -> Result<u32> {
    if let Some(index) = nl.link_index(&network.bridge)? {
        return Ok(index);
    }
    let links = nl.links()?;
    let taken: Vec<(Subnet, String)> = nl
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
        .collect();
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
fn reserve(publish: &[PortMapping]) -> Result<(Vec<OwnedFd>, Vec<PortMapping>)> {
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
