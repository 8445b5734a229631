//! The store's nftables table (design §3): one table `inet <name>` ("strata" by default),
//! written from the state on disk as one text script and applied whole with `nft -f -` in
//! one atomic transaction. The script starts with `add table` and `delete table`, so it
//! replaces the table whether or not it exists, and a script nft refuses leaves the old
//! table as it was. No other table is ever listed, named or touched.
//!
//! nft 1.0.6 (Debian bookworm) refuses `priority dstnat` on the output hook and a rule on
//! the same line as a `}`: every rule here has its own line.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use strata_runtime::{Error, Result};

use crate::ipam::Subnet;

/// The table's name when the store has no other (`host.json` may pick `strataN`).
pub const DEFAULT_TABLE: &str = "strata";

pub use strata_runtime::container::Proto;

/// A published port: `host_ip:host_port/proto` goes to `container_ip:container_port`.
/// `host_ip` None (or 0.0.0.0) means every host address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub proto: Proto,
    pub container_ip: Ipv4Addr,
    pub container_port: u16,
}

/// A bridge with live containers. An `internal` one gets no outbound NAT, and nothing is
/// forwarded to or from it except within the bridge itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeRules {
    pub name: String,
    pub subnet: Subnet,
    pub internal: bool,
}

/// A table name nft takes unquoted: a letter, then letters, digits and `_`.
fn valid_table(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && name.len() <= 64
}

/// An interface name the kernel takes (at most 15 bytes), limited to what can go inside an
/// nft string: letters, digits, `-`, `_` and `.`.
fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// `name { type …; elements = { … } }` as nft lists it, one element a line; without an
/// `elements` line when there are none (nft refuses `elements = { }`).
fn declare(out: &mut String, kind: &str, name: &str, head: &[&str], elements: &[String]) {
    out.push_str(&format!("\t{kind} {name} {{\n"));
    for line in head {
        out.push_str(&format!("\t\t{line}\n"));
    }
    if !elements.is_empty() {
        out.push_str("\t\telements = {\n");
        for e in elements {
            out.push_str(&format!("\t\t\t{e},\n"));
        }
        out.push_str("\t\t}\n");
    }
    out.push_str("\t}\n");
}

fn chain(out: &mut String, name: &str, base: Option<&str>, rules: &[String]) {
    out.push_str(&format!("\tchain {name} {{\n"));
    if let Some(base) = base {
        out.push_str(&format!("\t\t{base}\n"));
    }
    for rule in rules {
        out.push_str(&format!("\t\t{rule}\n"));
    }
    out.push_str("\t}\n");
}

/// The whole script for `table inet <table>`: the same text for the same input in any
/// order (everything is sorted), so a caller can hash it to skip re-applying.
///
/// - `hostports`: one DNAT map per protocol for forwards on every host address
///   (`<tcp|udp>_any`: port → address . port) and one for address-specific ones
///   (`<tcp|udp>_addr`: address . port → address . port), looked up address-specific
///   first. `prerouting` (priority dstnat) and `output` (priority -100) jump there for
///   packets to a local address. Of forwards with the same protocol, host address and
///   host port (the caller's port reservation prevents them), the lowest container address
///   and port is kept.
/// - `postrouting`: masquerade for loopback sources going to a bridge (`127.0.0.1:H`, with
///   `route_localnet`), for DNATed connections from our subnets (hairpin), and for our
///   non-internal subnets leaving through anything but our bridges (outbound).
/// - `forward`: a bridge's traffic to another of our bridges is dropped; an internal
///   bridge's traffic to or from anything but itself is dropped.
///
/// # Panics
///
/// If `table` is not a plain identifier or a bridge's name is not an interface name: both
/// come from the store's own state, never from a user's text.
pub fn ruleset(table: &str, bridges: &[BridgeRules], forwards: &[Forward]) -> String {
    assert!(valid_table(table), "invalid nftables table name {table:?}");
    for b in bridges {
        assert!(valid_ifname(&b.name), "invalid bridge name {:?}", b.name);
    }
    let mut bridges = bridges.to_vec();
    bridges.sort_by(|a, b| a.name.cmp(&b.name));
    bridges.dedup_by(|a, b| a.name == b.name);

    // (proto, host address or None, host port) → (container address, port), sorted.
    let mut fwd: Vec<_> = forwards
        .iter()
        .map(|f| {
            let host_ip = f.host_ip.filter(|a| !a.is_unspecified());
            (
                (f.proto, host_ip, f.host_port),
                (f.container_ip, f.container_port),
            )
        })
        .collect();
    fwd.sort();
    fwd.dedup_by(|a, b| a.0 == b.0);

    let mut out =
        format!("add table inet {table}\ndelete table inet {table}\ntable inet {table} {{\n");
    for proto in [Proto::Tcp, Proto::Udp] {
        let of_proto = || fwd.iter().filter(move |((p, _, _), _)| *p == proto);
        let any: Vec<String> = of_proto()
            .filter(|((_, ip, _), _)| ip.is_none())
            .map(|((_, _, hp), (cip, cp))| format!("{hp} : {cip} . {cp}"))
            .collect();
        let addr: Vec<String> = of_proto()
            .filter_map(|((_, ip, hp), (cip, cp))| {
                ip.map(|ip| format!("{ip} . {hp} : {cip} . {cp}"))
            })
            .collect();
        declare(
            &mut out,
            "map",
            &format!("{proto}_any"),
            &["type inet_service : ipv4_addr . inet_service"],
            &any,
        );
        declare(
            &mut out,
            "map",
            &format!("{proto}_addr"),
            &["type ipv4_addr . inet_service : ipv4_addr . inet_service"],
            &addr,
        );
    }
    let subnets = |internal_too: bool| -> Vec<String> {
        let set: BTreeSet<(u32, u8)> = bridges
            .iter()
            .filter(|b| internal_too || !b.internal)
            .map(|b| (u32::from(b.subnet.address), b.subnet.prefix))
            .collect();
        set.into_iter()
            .map(|(a, p)| format!("{}/{p}", Ipv4Addr::from(a)))
            .collect()
    };
    // auto-merge: nft refuses overlapping intervals in one declaration otherwise.
    let interval = ["type ipv4_addr", "flags interval", "auto-merge"];
    declare(&mut out, "set", "subnets", &interval, &subnets(true));
    declare(&mut out, "set", "outbound", &interval, &subnets(false));
    let names: Vec<String> = bridges.iter().map(|b| format!("\"{}\"", b.name)).collect();
    declare(&mut out, "set", "bridges", &["type ifname"], &names);

    let mut hostports = Vec::new();
    for proto in [Proto::Tcp, Proto::Udp] {
        hostports.push(format!(
            "dnat ip to ip daddr . {proto} dport map @{proto}_addr"
        ));
        hostports.push(format!("dnat ip to {proto} dport map @{proto}_any"));
    }
    chain(&mut out, "hostports", None, &hostports);
    let jump = ["fib daddr type local meta l4proto { tcp, udp } jump hostports".to_string()];
    chain(
        &mut out,
        "prerouting",
        Some("type nat hook prerouting priority dstnat; policy accept;"),
        &jump,
    );
    // nft 1.0.6 refuses "dstnat" on the output hook; -100 is its value.
    chain(
        &mut out,
        "output",
        Some("type nat hook output priority -100; policy accept;"),
        &jump,
    );
    chain(
        &mut out,
        "postrouting",
        Some("type nat hook postrouting priority srcnat; policy accept;"),
        &[
            "oifname @bridges ip saddr 127.0.0.0/8 masquerade".into(),
            "oifname @bridges ct status dnat ip saddr @subnets masquerade".into(),
            "oifname != @bridges ip saddr @outbound masquerade".into(),
        ],
    );
    let mut forward = Vec::new();
    for b in &bridges {
        let n = &b.name;
        if b.internal {
            forward.push(format!("iifname \"{n}\" oifname != \"{n}\" drop"));
            forward.push(format!("oifname \"{n}\" iifname != \"{n}\" drop"));
        } else {
            forward.push(format!(
                "iifname \"{n}\" oifname @bridges oifname != \"{n}\" drop"
            ));
        }
    }
    chain(
        &mut out,
        "forward",
        Some("type filter hook forward priority filter; policy accept;"),
        &forward,
    );
    out.push_str("}\n");
    out
}

/// Applies `script` with `nft -f -` (on its stdin) in the calling thread's network
/// namespace, which the `nft` process inherits. A refused script changes nothing; the
/// error carries nft's own message.
pub fn apply(script: &str) -> Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            let what = if e.kind() == std::io::ErrorKind::NotFound {
                "nft: not found (install nftables)"
            } else {
                "nft"
            };
            Error::io(what, e)
        })?;
    let mut stdin = child.stdin.take().expect("piped");
    // Written on a thread while stderr is read, so neither side can block the other.
    let (written, output) = std::thread::scope(|s| {
        let writer = s.spawn(move || stdin.write_all(script.as_bytes()));
        let output = child.wait_with_output();
        (writer.join().expect("the writer does not panic"), output)
    });
    let output = output.map_err(|e| Error::io("nft -f -", e))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let msg = match stderr.trim() {
            "" => format!("exited with {}", output.status),
            s => s.to_string(),
        };
        return Err(Error::io("nft -f -", std::io::Error::other(msg)));
    }
    written.map_err(|e| Error::io("nft -f -: writing the script", e))
}

/// Removes `table inet <table>` (`add table` then `delete table`, so a missing table is no
/// error), in the calling thread's network namespace.
pub fn delete(table: &str) -> Result<()> {
    if !valid_table(table) {
        return Err(Error::InvalidArgument(format!(
            "invalid nftables table name {table:?}"
        )));
    }
    apply(&format!(
        "add table inet {table}\ndelete table inet {table}\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testns::NetNs;
    use std::time::{Duration, Instant};

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn bridge(name: &str, subnet: &str, internal: bool) -> BridgeRules {
        BridgeRules {
            name: name.into(),
            subnet: Subnet::parse(subnet).unwrap(),
            internal,
        }
    }

    fn fwd(host_ip: Option<&str>, hp: u16, proto: Proto, cip: &str, cp: u16) -> Forward {
        Forward {
            host_ip: host_ip.map(ip),
            host_port: hp,
            proto,
            container_ip: ip(cip),
            container_port: cp,
        }
    }

    fn sample() -> (Vec<BridgeRules>, Vec<Forward>) {
        (
            vec![bridge("strata0", "10.88.0.0/16", false)],
            vec![
                fwd(None, 8080, Proto::Tcp, "10.88.0.2", 80),
                fwd(Some("127.0.0.1"), 8081, Proto::Tcp, "10.88.0.2", 81),
                fwd(None, 5353, Proto::Udp, "10.88.0.3", 53),
                fwd(None, 8443, Proto::Tcp, "10.88.0.3", 443),
            ],
        )
    }

    const GOLDEN: &str = "\
add table inet strata
delete table inet strata
table inet strata {
\tmap tcp_any {
\t\ttype inet_service : ipv4_addr . inet_service
\t\telements = {
\t\t\t8080 : 10.88.0.2 . 80,
\t\t\t8443 : 10.88.0.3 . 443,
\t\t}
\t}
\tmap tcp_addr {
\t\ttype ipv4_addr . inet_service : ipv4_addr . inet_service
\t\telements = {
\t\t\t127.0.0.1 . 8081 : 10.88.0.2 . 81,
\t\t}
\t}
\tmap udp_any {
\t\ttype inet_service : ipv4_addr . inet_service
\t\telements = {
\t\t\t5353 : 10.88.0.3 . 53,
\t\t}
\t}
\tmap udp_addr {
\t\ttype ipv4_addr . inet_service : ipv4_addr . inet_service
\t}
\tset subnets {
\t\ttype ipv4_addr
\t\tflags interval
\t\tauto-merge
\t\telements = {
\t\t\t10.88.0.0/16,
\t\t}
\t}
\tset outbound {
\t\ttype ipv4_addr
\t\tflags interval
\t\tauto-merge
\t\telements = {
\t\t\t10.88.0.0/16,
\t\t}
\t}
\tset bridges {
\t\ttype ifname
\t\telements = {
\t\t\t\"strata0\",
\t\t}
\t}
\tchain hostports {
\t\tdnat ip to ip daddr . tcp dport map @tcp_addr
\t\tdnat ip to tcp dport map @tcp_any
\t\tdnat ip to ip daddr . udp dport map @udp_addr
\t\tdnat ip to udp dport map @udp_any
\t}
\tchain prerouting {
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tfib daddr type local meta l4proto { tcp, udp } jump hostports
\t}
\tchain output {
\t\ttype nat hook output priority -100; policy accept;
\t\tfib daddr type local meta l4proto { tcp, udp } jump hostports
\t}
\tchain postrouting {
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\toifname @bridges ip saddr 127.0.0.0/8 masquerade
\t\toifname @bridges ct status dnat ip saddr @subnets masquerade
\t\toifname != @bridges ip saddr @outbound masquerade
\t}
\tchain forward {
\t\ttype filter hook forward priority filter; policy accept;
\t\tiifname \"strata0\" oifname @bridges oifname != \"strata0\" drop
\t}
}
";

    #[test]
    fn golden_script() {
        let (b, f) = sample();
        let script = ruleset("strata", &b, &f);
        assert_eq!(script, GOLDEN, "got:\n{script}");
    }

    #[test]
    fn script_is_the_same_in_any_order() {
        let (mut b, mut f) = sample();
        b.push(bridge("br-0123456789ab", "10.89.0.0/24", true));
        b.push(bridge("br-ba9876543210", "10.89.1.0/24", false));
        let one = ruleset("strata", &b, &f);
        b.reverse();
        f.reverse();
        // Duplicates, and 0.0.0.0 written out, change nothing.
        f.push(f[0].clone());
        f.push(fwd(Some("0.0.0.0"), 8080, Proto::Tcp, "10.88.0.2", 80));
        b.push(b[0].clone());
        assert_eq!(ruleset("strata", &b, &f), one);
    }

    #[test]
    fn internal_and_several_bridges() {
        let b = [
            bridge("strata0", "10.88.0.0/16", false),
            bridge("br-aaaaaaaaaaaa", "10.89.0.0/24", true),
            bridge("br-bbbbbbbbbbbb", "10.89.1.0/24", false),
        ];
        let s = ruleset("strata2", &b, &[]);
        assert!(s.starts_with(
            "add table inet strata2\ndelete table inet strata2\ntable inet strata2 {\n"
        ));
        let forward = s.split("\tchain forward {\n").nth(1).unwrap();
        assert_eq!(
            forward,
            "\t\ttype filter hook forward priority filter; policy accept;\n\
             \t\tiifname \"br-aaaaaaaaaaaa\" oifname != \"br-aaaaaaaaaaaa\" drop\n\
             \t\toifname \"br-aaaaaaaaaaaa\" iifname != \"br-aaaaaaaaaaaa\" drop\n\
             \t\tiifname \"br-bbbbbbbbbbbb\" oifname @bridges oifname != \"br-bbbbbbbbbbbb\" drop\n\
             \t\tiifname \"strata0\" oifname @bridges oifname != \"strata0\" drop\n\
             \t}\n}\n"
        );
        // The internal subnet is hairpinned but not masqueraded outbound.
        let outbound = s.split("\tset outbound {\n").nth(1).unwrap();
        let outbound = &outbound[..outbound.find("\t}\n").unwrap()];
        assert!(!outbound.contains("10.89.0.0/24"), "{outbound}");
        assert!(outbound.contains("10.89.1.0/24") && outbound.contains("10.88.0.0/16"));
        let subnets = s.split("\tset subnets {\n").nth(1).unwrap();
        assert!(subnets[..subnets.find("\t}\n").unwrap()].contains("10.89.0.0/24"));
        // Every rule on its own line: no line has text after a closing brace.
        for line in s.lines() {
            let t = line.trim();
            assert!(!t.starts_with('}') || t == "}", "{line:?}");
        }
    }

    #[test]
    fn conflicting_forwards_keep_one() {
        let f = [
            fwd(None, 8080, Proto::Tcp, "10.88.0.3", 80),
            fwd(None, 8080, Proto::Tcp, "10.88.0.2", 80),
            fwd(None, 8080, Proto::Udp, "10.88.0.4", 80),
        ];
        let s = ruleset("strata", &[], &f);
        assert!(s.contains("\t\t\t8080 : 10.88.0.2 . 80,\n"));
        assert!(!s.contains("10.88.0.3"));
        assert!(s.contains("\t\t\t8080 : 10.88.0.4 . 80,\n"));
    }

    #[test]
    #[should_panic(expected = "invalid bridge name")]
    fn a_bridge_name_cannot_inject_rules() {
        ruleset(
            "strata",
            &[bridge("x\" drop\n", "10.88.0.0/16", false)],
            &[],
        );
    }

    #[test]
    fn delete_refuses_a_bad_table_name() {
        for bad in ["", "1abc", "a b", "a;delete table ip other", "a\"b"] {
            assert!(
                matches!(delete(bad), Err(Error::InvalidArgument(_))),
                "{bad:?}"
            );
        }
    }

    // ---- against real nft, in network namespaces made for the test ----

    trait NftNs {
        fn nft(&self, args: &[&str]) -> String;
        fn apply(&self, script: &str) -> Result<Duration>;
    }

    impl NftNs for NetNs {
        fn nft(&self, args: &[&str]) -> String {
            self.sh("nft", args)
        }

        fn apply(&self, script: &str) -> Result<Duration> {
            self.run(|| {
                let t0 = Instant::now();
                apply(script).map(|()| t0.elapsed())
            })
        }
    }

    #[test]
    fn script_applies_in_a_fresh_netns() {
        let Some(ns) = NetNs::new("script_applies_in_a_fresh_netns") else {
            return;
        };
        let (b, f) = sample();
        let took = ns.apply(&ruleset("strata", &b, &f)).unwrap();
        let listed = ns.nft(&["list", "table", "inet", "strata"]);
        for want in [
            "8080 : 10.88.0.2 . 80",
            "8443 : 10.88.0.3 . 443",
            "127.0.0.1 . 8081 : 10.88.0.2 . 81",
            "5353 : 10.88.0.3 . 53",
            "10.88.0.0/16",
            "\"strata0\"",
            "jump hostports",
            "oifname != @bridges ip saddr @outbound masquerade",
        ] {
            assert!(listed.contains(want), "{want:?} not in:\n{listed}");
        }
        let script = ruleset("strata", &b, &f);
        let mut again: Vec<Duration> = (0..9).map(|_| ns.apply(&script).unwrap()).collect();
        again.sort();
        println!(
            "nft apply (one nft exec): first {took:?}; again, of 9: min {:?}, median {:?}, max {:?}",
            again[0], again[4], again[8]
        );
        // An empty table (no bridge, no forward) is valid too, and so are internal bridges.
        ns.apply(&ruleset("strata", &[], &[])).unwrap();
        let b = [
            bridge("strata0", "10.88.0.0/16", false),
            bridge("br-aaaaaaaaaaaa", "10.89.0.0/24", true),
            bridge("br-bbbbbbbbbbbb", "10.89.0.0/25", false), // overlapping: auto-merged
        ];
        ns.apply(&ruleset("strata", &b, &[])).unwrap();
        let listed = ns.nft(&["list", "chain", "inet", "strata", "forward"]);
        assert!(
            listed.contains("oifname \"br-aaaaaaaaaaaa\" iifname != \"br-aaaaaaaaaaaa\" drop"),
            "{listed}"
        );
    }

    #[test]
    fn reapply_replaces_atomically() {
        let Some(ns) = NetNs::new("reapply_replaces_atomically") else {
            return;
        };
        let b = [bridge("strata0", "10.88.0.0/16", false)];
        let first = [fwd(None, 8080, Proto::Tcp, "10.88.0.2", 80)];
        let second = [fwd(None, 9090, Proto::Tcp, "10.88.0.5", 90)];
        ns.apply(&ruleset("strata", &b, &first)).unwrap();
        let took = ns.apply(&ruleset("strata", &b, &second)).unwrap();
        println!("nft re-apply with a change: {took:?}");
        let listed = ns.nft(&["list", "table", "inet", "strata"]);
        assert!(listed.contains("9090 : 10.88.0.5 . 90"), "{listed}");
        assert!(!listed.contains("8080"), "{listed}");
        // A script nft refuses half-way changes nothing: the delete in it is undone too.
        let broken = ruleset("strata", &b, &first).replace(
            "ct status dnat ip saddr @subnets masquerade",
            "ct status dnat ip saddr @nosuchset masquerade",
        );
        let e = ns.apply(&broken).unwrap_err().to_string();
        assert!(
            e.starts_with("nft -f -: ") && e.contains("nosuchset"),
            "{e}"
        );
        let after = ns.nft(&["list", "table", "inet", "strata"]);
        assert_eq!(after, listed);
    }

    #[test]
    fn delete_removes_only_our_table() {
        let Some(ns) = NetNs::new("delete_removes_only_our_table") else {
            return;
        };
        ns.nft(&["add", "table", "ip", "other"]);
        ns.nft(&["add", "chain", "ip", "other", "c"]);
        let (b, f) = sample();
        ns.apply(&ruleset("strata", &b, &f)).unwrap();
        let tables = ns.nft(&["list", "tables"]);
        assert!(tables.contains("table ip other") && tables.contains("table inet strata"));
        let t0 = Instant::now();
        ns.run(|| delete("strata")).unwrap();
        println!("nft delete: {:?}", t0.elapsed());
        assert_eq!(ns.nft(&["list", "tables"]), "table ip other\n");
        // Deleting again, when there is none, is fine.
        ns.run(|| delete("strata")).unwrap();
        assert_eq!(ns.nft(&["list", "tables"]), "table ip other\n");
        assert!(ns
            .nft(&["list", "table", "ip", "other"])
            .contains("chain c"));
    }

    /// design/probes/nft-e2e.sh in Rust: a "host" namespace with the bridge and the table,
    /// a "container" namespace on it; published ports reached from the host's loopback and
    /// from the container itself (hairpin), over TCP and UDP.
    #[test]
    fn published_ports_reach_the_container() {
        use std::io::{Read, Write};
        use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
        let Some(host) = NetNs::new("published_ports_reach_the_container") else {
            return;
        };
        let ctr = NetNs::new("published_ports_reach_the_container").unwrap();
        let cpid = ctr.pid().to_string();
        for args in [
            "link add strata0 type bridge",
            "addr add 10.88.0.1/16 dev strata0",
            "link set strata0 up",
            &format!("link add vethtest type veth peer name eth0 netns {cpid}"),
            "link set vethtest master strata0 up",
            "link set vethtest type bridge_slave hairpin on",
        ] {
            host.sh("ip", &args.split(' ').collect::<Vec<_>>());
        }
        for args in [
            "addr add 10.88.0.2/16 dev eth0",
            "link set eth0 up",
            "route add default via 10.88.0.1",
        ] {
            ctr.sh("ip", &args.split(' ').collect::<Vec<_>>());
        }
        host.sh(
            "sysctl",
            &[
                "-qw",
                "net.ipv4.ip_forward=1",
                "net.ipv4.conf.strata0.route_localnet=1",
            ],
        );
        let b = [bridge("strata0", "10.88.0.0/16", false)];
        let f = [
            fwd(None, 18080, Proto::Tcp, "10.88.0.2", 80),
            fwd(Some("127.0.0.1"), 18081, Proto::Tcp, "10.88.0.2", 81),
            fwd(None, 18082, Proto::Udp, "10.88.0.2", 82),
        ];
        host.apply(&ruleset("strata", &b, &f)).unwrap();

        // Servers in the container: TCP answers "<port> <peer address>", UDP echoes.
        let (l80, l81, u82) = ctr.run(|| {
            (
                TcpListener::bind("0.0.0.0:80").unwrap(),
                TcpListener::bind("0.0.0.0:81").unwrap(),
                UdpSocket::bind("0.0.0.0:82").unwrap(),
            )
        });
        let serve = |l: TcpListener, port: u16| {
            std::thread::spawn(move || {
                for conn in l.incoming() {
                    let Ok(mut c) = conn else { return };
                    let peer = c.peer_addr().unwrap().ip();
                    let _ = c.write_all(format!("{port} {peer}").as_bytes());
                }
            })
        };
        serve(l80, 80);
        serve(l81, 81);
        std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while let Ok((n, from)) = u82.recv_from(&mut buf) {
                let _ = u82.send_to(&buf[..n], from);
            }
        });
        let get = |ns: &NetNs, to: &str| -> std::io::Result<String> {
            let to: SocketAddr = to.parse().unwrap();
            ns.run(|| {
                let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(3))?;
                s.set_read_timeout(Some(Duration::from_secs(3)))?;
                let mut got = String::new();
                s.read_to_string(&mut got)?;
                Ok(got)
            })
        };
        // From the host's loopback: masqueraded to the gateway address.
        assert_eq!(get(&host, "127.0.0.1:18080").unwrap(), "80 10.88.0.1");
        assert_eq!(get(&host, "127.0.0.1:18081").unwrap(), "81 10.88.0.1");
        // From the host to the bridge's address: any-address forwards only.
        assert_eq!(get(&host, "10.88.0.1:18080").unwrap(), "80 10.88.0.1");
        assert!(get(&host, "10.88.0.1:18081").is_err());
        // Hairpin: the container reaches its own published port through the gateway.
        assert_eq!(get(&ctr, "10.88.0.1:18080").unwrap(), "80 10.88.0.1");
        // UDP.
        let echoed = host.run(|| {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            s.send_to(b"ping", "127.0.0.1:18082").unwrap();
            let mut buf = [0u8; 16];
            let (n, _) = s.recv_from(&mut buf).unwrap();
            buf[..n].to_vec()
        });
        assert_eq!(echoed, b"ping");
        // The table goes; the ports with it.
        host.run(|| delete("strata")).unwrap();
        assert!(get(&host, "127.0.0.1:18080").is_err());
    }
}
