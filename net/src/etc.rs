//! The files a networked container gets in `containers/<id>/` (design §5): `hosts` as
//! docker writes it, with one line per live peer on a user network, and `resolv.conf`
//! without the host's loopback resolvers. Peers appear and go by rewriting a member's
//! `hosts` in place, so the bind mount of it shows the new text.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::FileExt;

use strata_runtime::cap_std::fs::{Dir, OpenOptions, OpenOptionsExt};

use strata_runtime::container::valid_name;
use strata_runtime::{Error, Result};

/// docker's localhost lines, in its order.
const LOCALHOST: &str = "127.0.0.1\tlocalhost\n\
::1\tlocalhost ip6-localhost ip6-loopback\n\
fe00::0\tip6-localnet\n\
ff00::0\tip6-mcastprefix\n\
ff02::1\tip6-allnodes\n\
ff02::2\tip6-allrouters\n";

/// One line of a `hosts` file: an address and its names (a container's name, its aliases,
/// its short id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry {
    pub ip: Ipv4Addr,
    pub names: Vec<String>,
}

/// `/etc/hosts` as docker writes it for a container on a network: the localhost lines,
/// then `<ip>\t<hostname>` for the container itself (none with `own_ip` None), then, on a
/// user network, one line per peer, `<ip>\t<name> <aliases…>`, sorted by address. Names of
/// entries at the container's own address follow its hostname (so it resolves its own name
/// and aliases, as docker's DNS answers them); entries at the same address are one line; a
/// name is given once per line; entries without names are left out.
pub fn hosts(own_ip: Option<Ipv4Addr>, hostname: &str, peers: &[HostEntry]) -> String {
    let mut out = String::from(LOCALHOST);
    let mut own: Vec<&str> = vec![hostname];
    let mut lines: BTreeMap<Ipv4Addr, Vec<&str>> = BTreeMap::new();
    for peer in peers {
        let names = if Some(peer.ip) == own_ip {
            &mut own
        } else {
            lines.entry(peer.ip).or_default()
        };
        // Only what names are made of: no name can add a line or an address to the file.
        for name in peer.names.iter().map(String::as_str) {
            if valid_name(name) && !names.contains(&name) {
                names.push(name);
            }
        }
    }
    if let Some(ip) = own_ip {
        out.push_str(&format!("{ip}\t{}\n", own.join(" ")));
    }
    for (ip, names) in lines.iter().filter(|(_, n)| !n.is_empty()) {
        out.push_str(&format!("{ip}\t{}\n", names.join(" ")));
    }
    out
}

/// `resolv.conf` for a container in its own network namespace: the host's file
/// (`host_text`) with its loopback nameservers (127.0.0.0/8, ::1) dropped, since they
/// cannot be reached from there; when no nameserver is left, docker's fallback
/// (`nameserver 8.8.8.8`, `nameserver 8.8.4.4`). Every other line (search, options,
/// comments) is kept.
pub fn resolv_conf(host_text: &str) -> String {
    let mut out = String::new();
    let mut servers = 0;
    for line in host_text.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some("nameserver") {
            let addr = words.next().unwrap_or("");
            if addr.parse::<IpAddr>().is_ok_and(|a| a.is_loopback()) {
                continue;
            }
            servers += 1;
        }
        out.push_str(line);
        out.push('\n');
    }
    if servers == 0 {
        out.push_str("nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    }
    out
}

/// Rewrites `name` in `dir` to `text` in place, keeping its inode, so a bind mount of it shows the
/// new text (a rename would not be seen): only when the text differs, with a write at
/// offset 0 and then a truncate to its length. A missing file is created (0644). Returns
/// whether the file changed.
pub fn rewrite_in_place(dir: &Dir, name: &str, text: &str) -> Result<bool> {
    let err = |what: &str, e| Error::io(format!("{what} {name}"), e);
    let mut file = dir
        .open_with(
            name,
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o644),
        )
        .map_err(|e| err("open", e))?
        .into_std();
    let mut old = Vec::new();
    file.read_to_end(&mut old).map_err(|e| err("read", e))?;
    if old == text.as_bytes() {
        return Ok(false);
    }
    file.write_all_at(text.as_bytes(), 0)
        .map_err(|e| err("write", e))?;
    file.set_len(text.len() as u64)
        .map_err(|e| err("truncate", e))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn entry(a: &str, names: &[&str]) -> HostEntry {
        HostEntry {
            ip: ip(a),
            names: names.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn hosts_on_the_default_bridge_as_docker_writes_it() {
        assert_eq!(
            hosts(Some(ip("10.88.0.2")), "0123456789ab", &[]),
            "127.0.0.1\tlocalhost\n\
             ::1\tlocalhost ip6-localhost ip6-loopback\n\
             fe00::0\tip6-localnet\n\
             ff00::0\tip6-mcastprefix\n\
             ff02::1\tip6-allnodes\n\
             ff02::2\tip6-allrouters\n\
             10.88.0.2\t0123456789ab\n"
        );
    }

    #[test]
    fn hosts_without_an_address_has_the_localhost_lines_only() {
        assert_eq!(hosts(None, "web", &[]), LOCALHOST);
        // Peers are still written if given.
        assert_eq!(
            hosts(None, "web", &[entry("10.89.0.3", &["db"])]),
            format!("{LOCALHOST}10.89.0.3\tdb\n")
        );
    }

    #[test]
    fn hosts_on_a_user_network_lists_peers_sorted_once_each() {
        let peers = [
            entry("10.89.0.10", &["web", "frontend", "aaaaaaaaaaaa"]),
            entry("10.89.0.2", &["me", "alias-of-me"]), // the container itself
            entry("10.89.0.3", &["db", "postgres", "bbbbbbbbbbbb"]),
            entry("10.89.0.3", &["db", "postgres", "extra"]), // same peer again
            entry("10.89.0.9", &["cache", "cache", " ", "evil\n10.0.0.1 bank"]),
            entry("10.89.0.4", &[]),
        ];
        assert_eq!(
            hosts(Some(ip("10.89.0.2")), "cccccccccccc", &peers),
            format!(
                "{LOCALHOST}10.89.0.2\tcccccccccccc me alias-of-me\n\
                 10.89.0.3\tdb postgres bbbbbbbbbbbb extra\n\
                 10.89.0.9\tcache\n\
                 10.89.0.10\tweb frontend aaaaaaaaaaaa\n"
            )
        );
    }

    #[test]
    fn resolv_conf_drops_loopback_resolvers() {
        let host = "# generated\nsearch example.com\nnameserver 127.0.0.53\nnameserver 10.0.0.2\noptions edns0 trust-ad\n";
        assert_eq!(
            resolv_conf(host),
            "# generated\nsearch example.com\nnameserver 10.0.0.2\noptions edns0 trust-ad\n"
        );
        assert_eq!(
            resolv_conf("nameserver 127.0.0.1\nnameserver ::1\nnameserver 127.1.2.3\nsearch lan\n"),
            "search lan\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        assert_eq!(resolv_conf(""), "nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
        // A non-loopback IPv6 resolver, tabs, and no final newline are kept.
        assert_eq!(
            resolv_conf("nameserver\t2001:db8::53\nnameserver 1.1.1.1"),
            "nameserver\t2001:db8::53\nnameserver 1.1.1.1\n"
        );
        // Today's behaviour (native/src/plan.rs) on its test input.
        let host = "search example.com\nnameserver 127.0.0.53\nnameserver 10.0.0.2\n";
        assert_eq!(
            resolv_conf(host),
            "search example.com\nnameserver 10.0.0.2\n"
        );
    }

    #[test]
    fn rewrite_keeps_the_inode_and_skips_equal_text() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("hosts");
        let dir = Dir::open_ambient_dir(tmp.path(), strata_runtime::cap_std::ambient_authority())
            .unwrap();
        assert!(rewrite_in_place(&dir, "hosts", "first version, rather long\n").unwrap());
        let ino = std::fs::metadata(&path).unwrap().ino();
        // A reader holding the file open (as a bind mount would) sees the new text.
        let held = std::fs::File::open(&path).unwrap();
        assert!(rewrite_in_place(&dir, "hosts", "short\n").unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "short\n");
        let mut seen = String::new();
        (&held).read_to_string(&mut seen).unwrap();
        assert_eq!(seen, "short\n");
        assert_eq!(std::fs::metadata(&path).unwrap().ino(), ino);
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        assert!(!rewrite_in_place(&dir, "hosts", "short\n").unwrap());
        assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), mtime);
        assert!(rewrite_in_place(&dir, "hosts", "a longer text than before\n").unwrap());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "a longer text than before\n"
        );
        assert_eq!(std::fs::metadata(&path).unwrap().ino(), ino);
        let e = rewrite_in_place(&dir, "no/such/dir", "x").unwrap_err();
        assert!(e.to_string().starts_with("open "), "{e}");
    }
}
