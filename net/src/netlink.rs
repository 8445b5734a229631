//! A small synchronous rtnetlink client (design §2): the few link, address and route
//! requests that attaching a container needs, on netlink-packet-route's message types and a
//! plain netlink-sys socket. No async runtime, no `ip` execs. A socket acts in the network
//! namespace it was opened in, so [`Netlink::in_netns`] opens one on a thread that entered
//! the target namespace and hands it back.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, BorrowedFd};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVeth, LinkAttribute,
    LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use strata_runtime::{Error, Result};

/// A link as a dump shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// "bridge", "veth", … (None for a plain device such as lo).
    pub kind: Option<String>,
    /// The bridge it is a port of.
    pub controller: Option<u32>,
    pub up: bool,
}

/// An IPv4 route of the main table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub destination: Ipv4Addr,
    pub prefix: u8,
    pub device: Option<u32>,
}

/// The veth to create for a container: the host end joins `controller`, the peer moves into
/// `peer_ns` with its name, MAC and state set in the same request.
pub struct Veth<'a> {
    pub host: &'a str,
    pub controller: u32,
    pub peer: &'a str,
    pub peer_ns: BorrowedFd<'a>,
    pub peer_mac: [u8; 6],
    pub mtu: Option<u32>,
}

pub struct Netlink {
    socket: Socket,
    sequence: u32,
}

impl Netlink {
    /// A socket in the calling thread's network namespace.
    pub fn open() -> Result<Netlink> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(|e| Error::io("netlink socket", e))?;
        socket
            .bind_auto()
            .map_err(|e| Error::io("netlink bind", e))?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(|e| Error::io("netlink connect", e))?;
        Ok(Netlink {
            socket,
            sequence: 0,
        })
    }

    /// A socket in the namespace `ns`: opened on a short-lived thread that entered it (a
    /// namespace is per thread), so the caller's thread never changes namespace.
    pub fn in_netns(ns: BorrowedFd<'_>) -> Result<Netlink> {
        std::thread::scope(|s| {
            s.spawn(|| {
                rustix::thread::move_into_link_name_space(
                    ns,
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .map_err(|e| Error::io("enter the container's network namespace", e.into()))?;
                Netlink::open()
            })
            .join()
            .expect("opening a socket does not panic")
        })
    }

    /// Sends one request and reads its answers until the ACK (or, for a dump, DONE).
    fn request(
        &mut self,
        what: &str,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        self.sequence = self.sequence.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.sequence;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
        packet.finalize();
        let mut buf = vec![0; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket
            .send(&buf, 0)
            .map_err(|e| Error::io(what.to_string(), e))?;
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut answers = Vec::new();
        loop {
            let (datagram, _) = self
                .socket
                .recv_from_full()
                .map_err(|e| Error::io(what.to_string(), e))?;
            let mut rest = &datagram[..];
            while !rest.is_empty() {
                let reply =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(rest).map_err(|e| {
                        Error::io(what.to_string(), std::io::Error::other(e.to_string()))
                    })?;
                let len = reply.header.length as usize;
                if len == 0 || len > rest.len() {
                    return Err(Error::io(
                        what.to_string(),
                        std::io::Error::other("truncated netlink reply"),
                    ));
                }
                rest = &rest[len..];
                if reply.header.sequence_number != self.sequence {
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(answers),
                            Some(code) => Err(Error::io(
                                what.to_string(),
                                std::io::Error::from_raw_os_error(-code.get()),
                            )),
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(answers),
                    NetlinkPayload::InnerMessage(m) => {
                        answers.push(m);
                        if !dump {
                            // A non-dump request ends with its ACK.
                            continue;
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    pub fn links(&mut self) -> Result<Vec<Link>> {
        let answers = self.request(
            "list links",
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
        )?;
        Ok(answers
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(link_of(&l)),
                _ => None,
            })
            .collect())
    }

    pub fn link_index(&mut self, name: &str) -> Result<Option<u32>> {
        Ok(self
            .links()?
            .into_iter()
            .find(|l| l.name == name)
            .map(|l| l.index))
    }

    /// Creates the bridge `name` (up) and returns its index; EEXIST if it is there.
    pub fn add_bridge(&mut self, name: &str) -> Result<u32> {
        let mut msg = LinkMessage::default();
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        msg.attributes = vec![
            LinkAttribute::IfName(name.to_string()),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]),
        ];
        self.request(
            &format!("create bridge {name}"),
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )?;
        self.link_index(name)?.ok_or_else(|| {
            Error::io(
                format!("create bridge {name}"),
                std::io::Error::other("created but not listed"),
            )
        })
    }

    /// Creates a veth pair in one request: the host end up and a port of its bridge with
    /// hairpin on (a container reaching its own published port goes out and back the same
    /// port), the peer in its namespace with its name and MAC, down.
    pub fn add_veth(&mut self, veth: &Veth<'_>) -> Result<u32> {
        let what = format!("create veth {}", veth.host);
        // Not up yet: the kernel configures the peer before the pair is joined, and a veth
        // without its peer refuses to open (ENOTCONN). The namespace's side sets it up.
        let mut peer = LinkMessage::default();
        peer.attributes = vec![
            LinkAttribute::IfName(veth.peer.to_string()),
            LinkAttribute::Address(veth.peer_mac.to_vec()),
            LinkAttribute::NetNsFd(veth.peer_ns.as_raw_fd()),
        ];
        let mut host = LinkMessage::default();
        host.header.flags = LinkFlags::Up;
        host.header.change_mask = LinkFlags::Up;
        host.attributes = vec![
            LinkAttribute::IfName(veth.host.to_string()),
            LinkAttribute::Controller(veth.controller),
        ];
        if let Some(mtu) = veth.mtu {
            host.attributes.push(LinkAttribute::Mtu(mtu));
            peer.attributes.push(LinkAttribute::Mtu(mtu));
        }
        host.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]));
        self.request(
            &what,
            RouteNetlinkMessage::NewLink(host),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )?;
        let index = self.link_index(veth.host)?.ok_or_else(|| {
            Error::io(
                what.clone(),
                std::io::Error::other("created but not listed"),
            )
        })?;
        // Port options apply only to a link that already is a port: a second request.
        let mut port = LinkMessage::default();
        port.header.index = index;
        port.attributes = vec![LinkAttribute::LinkInfo(vec![
            LinkInfo::PortKind(InfoPortKind::Bridge),
            LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
                true,
            )])),
        ])];
        self.request(
            &format!("set hairpin on {}", veth.host),
            RouteNetlinkMessage::NewLink(port),
            NLM_F_ACK,
        )?;
        Ok(index)
    }

    pub fn set_up(&mut self, index: u32) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        self.request(
            &format!("set link {index} up"),
            RouteNetlinkMessage::SetLink(msg),
            NLM_F_ACK,
        )?;
        Ok(())
    }

    /// Adds `ip/prefix` to the link; an address already there is fine.
    pub fn add_address(&mut self, index: u32, ip: Ipv4Addr, prefix: u8) -> Result<()> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.prefix_len = prefix;
        msg.header.index = index;
        msg.attributes = vec![
            AddressAttribute::Local(ip.into()),
            AddressAttribute::Address(ip.into()),
        ];
        let what = format!("add address {ip}/{prefix}");
        match self.request(
            &what,
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
            r => r.map(drop),
        }
    }

    /// The default route through `gateway`.
    pub fn add_default_route(&mut self, gateway: Ipv4Addr) -> Result<()> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.scope = RouteScope::Universe;
        msg.header.kind = RouteType::Unicast;
        msg.attributes = vec![RouteAttribute::Gateway(RouteAddress::Inet(gateway))];
        self.request(
            &format!("add default route via {gateway}"),
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )?;
        Ok(())
    }

    /// Deletes the link `name`; false if there was none.
    pub fn delete_link(&mut self, name: &str) -> Result<bool> {
        let Some(index) = self.link_index(name)? else {
            return Ok(false);
        };
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        match self.request(
            &format!("delete link {name}"),
            RouteNetlinkMessage::DelLink(msg),
            NLM_F_ACK,
        ) {
            // Gone in between (its namespace died): what was asked for.
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(false),
            r => r.map(|_| true),
        }
    }

    /// The main table's IPv4 routes (for the overlap check).
    pub fn routes(&mut self) -> Result<Vec<Route>> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        let answers = self.request(
            "list routes",
            RouteNetlinkMessage::GetRoute(msg),
            NLM_F_DUMP,
        )?;
        Ok(answers
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r)
                    if r.header.table == RouteHeader::RT_TABLE_MAIN
                        && r.header.kind == RouteType::Unicast =>
                {
                    let mut route = Route {
                        destination: Ipv4Addr::UNSPECIFIED,
                        prefix: r.header.destination_prefix_length,
                        device: None,
                    };
                    for a in &r.attributes {
                        match a {
                            RouteAttribute::Destination(RouteAddress::Inet(d)) => {
                                route.destination = *d
                            }
                            RouteAttribute::Oif(i) => route.device = Some(*i),
                            _ => {}
                        }
                    }
                    Some(route)
                }
                _ => None,
            })
            .collect())
    }
}

fn link_of(m: &LinkMessage) -> Link {
    let mut link = Link {
        index: m.header.index,
        name: String::new(),
        kind: None,
        controller: None,
        up: m.header.flags.contains(LinkFlags::Up),
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => link.name = n.clone(),
            LinkAttribute::Controller(c) => link.controller = Some(*c),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        link.kind = Some(k.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    link
}

/// The errno behind a netlink error, to tell "already there" from a failure.
pub fn errno(e: &Error) -> Option<i32> {
    match e {
        Error::Io { source, .. } => source.raw_os_error(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testns::NetNs;
    use std::os::fd::AsFd;

    #[test]
    fn bridge_veth_address_and_route_in_test_namespaces() {
        let Some(host) = NetNs::new("bridge_veth_address_and_route_in_test_namespaces") else {
            return;
        };
        let container = NetNs::new("container").unwrap();
        let ns = container.open();
        let host_file = host.open();
        let mut nl = Netlink::in_netns(host_file.as_fd()).unwrap();
        let bridge = nl.add_bridge("tbr0").unwrap();
        nl.add_address(bridge, Ipv4Addr::new(10, 77, 0, 1), 16)
            .unwrap();
        // Twice is fine for an address, an error naming the bridge for the link.
        nl.add_address(bridge, Ipv4Addr::new(10, 77, 0, 1), 16)
            .unwrap();
        let again = nl.add_bridge("tbr0").unwrap_err().to_string();
        assert!(
            again.contains("create bridge tbr0") && again.contains("exists"),
            "{again}"
        );

        let mac = [0x02, 0x42, 10, 77, 0, 2];
        let host_end = nl
            .add_veth(&Veth {
                host: "vtest0",
                controller: bridge,
                peer: "eth0",
                peer_ns: ns.as_fd(),
                peer_mac: mac,
                mtu: None,
            })
            .unwrap();
        let links = nl.links().unwrap();
        let veth = links.iter().find(|l| l.name == "vtest0").unwrap();
        assert_eq!(veth.index, host_end);
        assert_eq!(veth.controller, Some(bridge));
        assert_eq!(veth.kind.as_deref(), Some("veth"));
        assert!(veth.up);
        assert!(!links.iter().any(|l| l.name == "eth0"), "the peer moved");
        let detail = host.sh("ip", &["-d", "link", "show", "vtest0"]);
        assert!(detail.contains("hairpin on"), "{detail}");

        let mut inside = Netlink::in_netns(ns.as_fd()).unwrap();
        let eth0 = inside.link_index("eth0").unwrap().unwrap();
        inside.set_up(eth0).unwrap();
        inside
            .add_address(eth0, Ipv4Addr::new(10, 77, 0, 2), 16)
            .unwrap();
        inside
            .add_default_route(Ipv4Addr::new(10, 77, 0, 1))
            .unwrap();
        let shown = container.sh("ip", &["-br", "addr", "show", "eth0"]);
        assert!(
            shown.contains("10.77.0.2/16") && shown.contains("UP"),
            "{shown}"
        );
        assert!(container
            .sh("ip", &["link", "show", "eth0"])
            .contains("02:42:0a:4d:00:02"));
        assert!(container
            .sh("ip", &["route"])
            .contains("default via 10.77.0.1 dev eth0"));
        let routes = inside.routes().unwrap();
        assert!(
            routes
                .iter()
                .any(|r| r.prefix == 0 && r.device == Some(eth0)),
            "{routes:?}"
        );
        assert!(routes
            .iter()
            .any(|r| r.destination == Ipv4Addr::new(10, 77, 0, 0) && r.prefix == 16));
        // The bridge reaches the container.
        let listener = container.run(|| std::net::TcpListener::bind("10.77.0.2:7000").unwrap());
        host.run(|| std::net::TcpStream::connect("10.77.0.2:7000").unwrap());
        listener.accept().unwrap();

        assert!(nl.delete_link("vtest0").unwrap());
        assert!(!nl.delete_link("vtest0").unwrap());
        assert!(container
            .sh("ip", &["-br", "link"])
            .lines()
            .all(|l| !l.starts_with("eth0")));
    }
}
