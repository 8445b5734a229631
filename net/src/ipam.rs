//! Addresses: subnets, the pools networks take them from, the lowest free address for a
//! container, overlap checks and the MAC derived from an address (design §4). Pure: the
//! callers hold the lock and read the leases and the host's routes.

use std::collections::HashSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use strata_runtime::{Error, Result};

/// The default `bridge` network's subnet (podman's; its gateway is .1).
pub const DEFAULT_BRIDGE: &str = "10.88.0.0/16";
/// The pool user networks take their /24s from (podman's `default_subnet_pools`).
pub const USER_POOL: &str = "10.89.0.0/16";
/// The prefix of a subnet taken from [`USER_POOL`].
pub const USER_PREFIX: u8 = 24;

/// An IPv4 subnet: its network address (host bits zero) and prefix length, at most /30 (a
/// network needs a gateway and at least one address to lease). Serialized as "10.88.0.0/16".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Subnet {
    pub address: Ipv4Addr,
    pub prefix: u8,
}

/// The longest prefix a network can have.
const MAX_PREFIX: u8 = 30;

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl Subnet {
    /// Parses "10.89.3.0/24". Host bits set give docker's error (`invalid subnet
    /// 10.89.3.5/24: it should be 10.89.3.0/24`); a prefix over /30, an IPv6 subnet or
    /// anything else that is not `A.B.C.D/N` give a line saying what is expected.
    pub fn parse(s: &str) -> Result<Subnet> {
        let bad = |why: &str| Error::InvalidArgument(format!("invalid subnet {s:?}: {why}"));
        let Some((addr, prefix)) = s.split_once('/') else {
            return Err(bad(
                "expected an IPv4 address and a prefix length, such as 10.89.0.0/24",
            ));
        };
        let address = match addr.parse::<Ipv4Addr>() {
            Ok(a) => a,
            Err(_) if addr.parse::<std::net::Ipv6Addr>().is_ok() => {
                return Err(bad("only IPv4 subnets are supported"));
            }
            Err(_) => {
                return Err(bad(
                    "expected an IPv4 address and a prefix length, such as 10.89.0.0/24",
                ))
            }
        };
        let prefix: u8 = match prefix {
            p if !p.is_empty() && p.len() <= 2 && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse().expect("one or two digits")
            }
            _ => return Err(bad("the prefix length must be a number from 0 to 30")),
        };
        if prefix > MAX_PREFIX {
            return Err(bad(&format!(
                "the prefix length must be at most /{MAX_PREFIX} (a network needs a gateway and an address to lease)"
            )));
        }
        let network = Ipv4Addr::from(u32::from(address) & mask(prefix));
        if network != address {
            return Err(Error::InvalidArgument(format!(
                "invalid subnet {s}: it should be {network}/{prefix}"
            )));
        }
        Ok(Subnet { address, prefix })
    }

    fn mask(&self) -> u32 {
        mask(self.prefix)
    }

    fn first(&self) -> u32 {
        u32::from(self.address) & self.mask()
    }

    fn last(&self) -> u32 {
        self.first() | !self.mask()
    }

    /// Whether `a` is in this subnet (its network and broadcast addresses included).
    pub fn contains(&self, a: Ipv4Addr) -> bool {
        u32::from(a) & self.mask() == self.first()
    }

    /// Whether the two share any address (one contains the other's network address).
    pub fn overlaps(&self, other: &Subnet) -> bool {
        self.contains(other.address) || other.contains(self.address)
    }

    /// The first host address (.1), the default gateway.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.first() + 1)
    }

    /// The last address of the subnet.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.last())
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = Error;
    fn from_str(s: &str) -> Result<Subnet> {
        Subnet::parse(s)
    }
}

impl TryFrom<String> for Subnet {
    type Error = Error;
    fn try_from(s: String) -> Result<Subnet> {
        Subnet::parse(&s)
    }
}

impl From<Subnet> for String {
    fn from(s: Subnet) -> String {
        s.to_string()
    }
}

/// The lowest free host address of `subnet`: never its network, `gateway` or broadcast
/// address, nor one of `used`, so an address freed is the next one given. None when the
/// subnet is full.
pub fn allocate(subnet: Subnet, gateway: Ipv4Addr, used: &[Ipv4Addr]) -> Option<Ipv4Addr> {
    let used: HashSet<u32> = used.iter().map(|&a| u32::from(a)).collect();
    let gateway = u32::from(gateway);
    (subnet.first() + 1..subnet.last())
        .find(|a| *a != gateway && !used.contains(a))
        .map(Ipv4Addr::from)
}

/// The first subnet of length `prefix` inside `pool` (in address order) that overlaps none
/// of `taken`. None when the pool is used up, or `prefix` is shorter than the pool's or
/// longer than /30.
pub fn next_subnet(pool: Subnet, prefix: u8, taken: &[Subnet]) -> Option<Subnet> {
    if prefix < pool.prefix || prefix > MAX_PREFIX {
        return None;
    }
    let step = 1u64 << (32 - u32::from(prefix));
    let end = u64::from(pool.last());
    let mut start = u64::from(pool.first());
    while start + step - 1 <= end {
        let candidate = Subnet {
            address: Ipv4Addr::from(u32::try_from(start).expect("inside the pool")),
            prefix,
        };
        match taken.iter().find(|t| t.overlaps(&candidate)) {
            None => return Some(candidate),
            // Skip past the subnet in the way, to the next aligned start.
            Some(t) => {
                let past = u64::from(t.last()) + 1;
                start = (start + step).max(past.div_ceil(step) * step);
            }
        }
    }
    None
}

/// Why `candidate` cannot be used: the first of `taken` it overlaps, as (that subnet, what
/// has it: a network name or a host interface name). None when it is free.
pub fn overlap(candidate: Subnet, taken: &[(Subnet, String)]) -> Option<&(Subnet, String)> {
    taken.iter().find(|(s, _)| s.overlaps(&candidate))
}

/// [`overlap`] as docker's error (`invalid pool request: Pool overlaps with other one on
/// this address space (10.88.0.0/16 on eth0)`), an `Error::Conflict`.
pub fn ensure_free(candidate: Subnet, taken: &[(Subnet, String)]) -> Result<()> {
    match overlap(candidate, taken) {
        None => Ok(()),
        Some((subnet, owner)) => Err(Error::Conflict(format!(
            "invalid pool request: Pool overlaps with other one on this address space ({subnet} on {owner})"
        ))),
    }
}

/// A container's MAC from its address, as docker derives it: 02:42 (locally administered)
/// then the 4 address bytes.
pub fn mac_of(a: Ipv4Addr) -> [u8; 6] {
    let [b0, b1, b2, b3] = a.octets();
    [0x02, 0x42, b0, b1, b2, b3]
}

/// "02:42:0a:58:00:02".
pub fn format_mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Subnet {
        Subnet::parse(s).unwrap()
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn err(s: &str) -> String {
        Subnet::parse(s).unwrap_err().to_string()
    }

    #[test]
    fn parse_and_display() {
        let s = net("10.89.3.0/24");
        assert_eq!(
            s,
            Subnet {
                address: ip("10.89.3.0"),
                prefix: 24
            }
        );
        assert_eq!(s.to_string(), "10.89.3.0/24");
        assert_eq!(
            "10.88.0.0/16".parse::<Subnet>().unwrap(),
            net(DEFAULT_BRIDGE)
        );
        assert_eq!(net("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert_eq!(net("192.168.1.4/30").broadcast(), ip("192.168.1.7"));
        net(USER_POOL);
    }

    #[test]
    fn parse_errors_say_what_is_wrong() {
        assert_eq!(
            err("10.89.3.5/24"),
            "invalid subnet 10.89.3.5/24: it should be 10.89.3.0/24"
        );
        assert_eq!(
            err("10.88.0.1/16"),
            "invalid subnet 10.88.0.1/16: it should be 10.88.0.0/16"
        );
        assert!(
            err("10.0.0.0/31").contains("at most /30"),
            "{}",
            err("10.0.0.0/31")
        );
        assert!(err("10.0.0.0/33").contains("at most /30"));
        for garbage in [
            "",
            "10.0.0.0",
            "10.0.0.0/",
            "10.0.0/24",
            "10.0.0.256/24",
            "x/24",
            "10.0.0.0/+8",
            "10.0.0.0/ 8",
            "10.0.0.0/008",
            "010.0.0.0/8",
            " 10.0.0.0/8",
        ] {
            let e = err(garbage);
            assert!(e.starts_with("invalid subnet "), "{garbage:?}: {e}");
            assert!(
                e.contains("such as 10.89.0.0/24") || e.contains("prefix length"),
                "{garbage:?}: {e}"
            );
        }
        assert!(err("fd00::/64").contains("only IPv4"));
        assert!(matches!(
            Subnet::parse("1.2.3.4/8"),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn serde_as_a_string() {
        let s = net("10.88.0.0/16");
        assert_eq!(serde_json::to_string(&s).unwrap(), r#""10.88.0.0/16""#);
        assert_eq!(
            serde_json::from_str::<Subnet>(r#""10.88.0.0/16""#).unwrap(),
            s
        );
        let e = serde_json::from_str::<Subnet>(r#""10.88.0.3/16""#).unwrap_err();
        assert!(e.to_string().contains("it should be 10.88.0.0/16"), "{e}");
        assert!(serde_json::from_str::<Subnet>("7").is_err());
    }

    #[test]
    fn contains_gateway_broadcast() {
        let s = net("10.88.0.0/16");
        assert!(s.contains(ip("10.88.0.0")));
        assert!(s.contains(ip("10.88.255.255")));
        assert!(!s.contains(ip("10.89.0.0")));
        assert!(!s.contains(ip("10.87.255.255")));
        assert_eq!(s.gateway(), ip("10.88.0.1"));
        assert_eq!(s.broadcast(), ip("10.88.255.255"));
        let all = net("0.0.0.0/0");
        assert!(all.contains(ip("255.255.255.255")));
        assert_eq!(all.broadcast(), ip("255.255.255.255"));
    }

    #[test]
    fn overlaps_both_ways() {
        let big = net("10.88.0.0/16");
        let small = net("10.88.7.0/24");
        let other = net("10.89.0.0/24");
        assert!(big.overlaps(&small) && small.overlaps(&big));
        assert!(big.overlaps(&big));
        assert!(!big.overlaps(&other) && !other.overlaps(&big));
        assert!(net("0.0.0.0/0").overlaps(&other));
        // Adjacent subnets share nothing.
        assert!(!net("10.0.0.0/25").overlaps(&net("10.0.0.128/25")));
    }

    #[test]
    fn allocate_lowest_free_and_reuses_a_freed_one() {
        let s = net("10.88.0.0/16");
        let gw = s.gateway();
        assert_eq!(allocate(s, gw, &[]), Some(ip("10.88.0.2")));
        let used = [ip("10.88.0.2"), ip("10.88.0.3"), ip("10.88.0.4")];
        assert_eq!(allocate(s, gw, &used), Some(ip("10.88.0.5")));
        // .3 freed (rm): it is given next.
        assert_eq!(allocate(s, gw, &[used[0], used[2]]), Some(ip("10.88.0.3")));
        // Crossing an octet.
        let used: Vec<Ipv4Addr> = (2..=255).map(|n| Ipv4Addr::new(10, 88, 0, n)).collect();
        assert_eq!(allocate(s, gw, &used), Some(ip("10.88.1.0")));
    }

    #[test]
    fn allocate_never_gives_network_gateway_or_broadcast() {
        let s = net("192.168.5.0/30"); // .0 network, .1 gateway, .2 free, .3 broadcast
        assert_eq!(allocate(s, s.gateway(), &[]), Some(ip("192.168.5.2")));
        assert_eq!(allocate(s, s.gateway(), &[ip("192.168.5.2")]), None);
        // An explicit gateway elsewhere: .1 can be leased, the gateway cannot.
        assert_eq!(allocate(s, ip("192.168.5.2"), &[]), Some(ip("192.168.5.1")));
        assert_eq!(allocate(s, ip("192.168.5.2"), &[ip("192.168.5.1")]), None);
        // A full /24.
        let s = net("10.89.0.0/24");
        let used: Vec<Ipv4Addr> = (2..=254).map(|n| Ipv4Addr::new(10, 89, 0, n)).collect();
        assert_eq!(allocate(s, s.gateway(), &used), None);
        // Used addresses outside the subnet are ignored.
        assert_eq!(
            allocate(s, s.gateway(), &[ip("10.88.0.2")]),
            Some(ip("10.89.0.2"))
        );
    }

    #[test]
    fn next_subnet_takes_the_first_free_24() {
        let pool = net(USER_POOL);
        assert_eq!(next_subnet(pool, 24, &[]), Some(net("10.89.0.0/24")));
        let taken = [net("10.89.0.0/24"), net("10.89.2.0/24")];
        assert_eq!(next_subnet(pool, 24, &taken), Some(net("10.89.1.0/24")));
        let taken = [net("10.89.0.0/24"), net("10.89.1.0/24")];
        assert_eq!(next_subnet(pool, 24, &taken), Some(net("10.89.2.0/24")));
        // A host route covering part of the pool, unaligned to /24s.
        let taken = [net("10.89.0.0/22"), net("10.89.4.128/25")];
        assert_eq!(next_subnet(pool, 24, &taken), Some(net("10.89.5.0/24")));
        // Something bigger than the pool covers it.
        assert_eq!(next_subnet(pool, 24, &[net("10.0.0.0/8")]), None);
        // Full.
        let all: Vec<Subnet> = (0..=255)
            .map(|n| Subnet {
                address: Ipv4Addr::new(10, 89, n, 0),
                prefix: 24,
            })
            .collect();
        assert_eq!(next_subnet(pool, 24, &all), None);
        assert_eq!(next_subnet(pool, 24, &all[1..]), Some(net("10.89.0.0/24")));
        // Subnets of other taken sets outside the pool do not matter.
        assert_eq!(
            next_subnet(pool, 24, &[net(DEFAULT_BRIDGE)]),
            Some(net("10.89.0.0/24"))
        );
        // Bad prefixes.
        assert_eq!(next_subnet(pool, 8, &[]), None);
        assert_eq!(next_subnet(pool, 31, &[]), None);
        assert_eq!(next_subnet(pool, 16, &[]), Some(pool));
        // The end of the address space does not overflow.
        let top = net("255.255.255.0/24");
        assert_eq!(next_subnet(top, 30, &[]), Some(net("255.255.255.0/30")));
        assert_eq!(
            next_subnet(top, 25, &[net("255.255.255.0/25")]),
            Some(net("255.255.255.128/25"))
        );
        assert_eq!(next_subnet(top, 24, &[top]), None);
    }

    #[test]
    fn overlap_names_what_is_in_the_way() {
        let taken = vec![
            (net("10.88.0.0/16"), "bridge".to_string()),
            (net("192.168.1.0/24"), "eth0".to_string()),
        ];
        assert_eq!(overlap(net("10.89.0.0/24"), &taken), None);
        assert_eq!(overlap(net("10.88.3.0/24"), &taken), Some(&taken[0]));
        assert_eq!(overlap(net("192.168.0.0/16"), &taken), Some(&taken[1]));
        assert!(ensure_free(net("10.89.0.0/24"), &taken).is_ok());
        let e = ensure_free(net("192.168.1.0/25"), &taken).unwrap_err();
        assert!(matches!(e, Error::Conflict(_)));
        assert_eq!(
            e.to_string(),
            "invalid pool request: Pool overlaps with other one on this address space (192.168.1.0/24 on eth0)"
        );
    }

    #[test]
    fn mac_as_docker_derives_it() {
        let m = mac_of(ip("10.88.0.2"));
        assert_eq!(m, [0x02, 0x42, 10, 88, 0, 2]);
        assert_eq!(format_mac(m), "02:42:0a:58:00:02");
        assert_eq!(
            format_mac(mac_of(ip("172.17.255.254"))),
            "02:42:ac:11:ff:fe"
        );
    }
}
