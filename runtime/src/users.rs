//! `USER name[:group]` as docker resolves it: through the image's own `/etc/passwd` and
//! `/etc/group` (text given by the caller, read inside the container's root), numeric ids
//! accepted without an entry.

use crate::error::{Error, Result};

/// A resolved user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ids {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups: the groups that list the user by name.
    pub groups: Vec<u32>,
    /// The home directory from passwd; `/` when the user has no entry.
    pub home: String,
}

/// Resolve `spec` (`user`, `uid`, `user:group`, `uid:gid`, ... ; empty = root) against the
/// contents of passwd and group files (empty when the image has none).
pub fn resolve(spec: &str, passwd: &str, group: &str) -> Result<Ids> {
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user = if user.is_empty() { "0" } else { user };
    let entries: Vec<Vec<&str>> = passwd
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 7)
        .collect();
    let numeric = |s: &str| {
        s.parse::<u32>()
            .ok()
            .filter(|_| s.bytes().all(|b| b.is_ascii_digit()))
    };
    let entry = entries
        .iter()
        .find(|f| f[0] == user)
        .or_else(|| numeric(user).and_then(|n| entries.iter().find(|f| numeric(f[2]) == Some(n))));
    let (uid, mut gid, name, home) = match (entry, numeric(user)) {
        (Some(f), _) => (
            numeric(f[2]).ok_or_else(|| bad_entry("passwd", f))?,
            numeric(f[3]).ok_or_else(|| bad_entry("passwd", f))?,
            Some(f[0]),
            f[5].to_string(),
        ),
        (None, Some(n)) => (n, n, None, "/".to_string()),
        (None, None) => {
            return Err(Error::InvalidArgument(format!(
                "unable to find user {user}: no matching entries in passwd file"
            )))
        }
    };
    if entry.is_none() {
        // docker: a numeric uid without an entry runs with gid 0 unless a group is given.
        gid = 0;
    }
    let groups_table: Vec<Vec<&str>> = group
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .collect();
    if let Some(g) = grp.filter(|g| !g.is_empty()) {
        gid = match groups_table.iter().find(|f| f[0] == g) {
            Some(f) => numeric(f[2]).ok_or_else(|| bad_entry("group", f))?,
            None => numeric(g).ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "unable to find group {g}: no matching entries in group file"
                ))
            })?,
        };
    }
    let mut groups = Vec::new();
    if let (Some(name), None) = (name, grp) {
        for f in &groups_table {
            if f[3].split(',').any(|m| m == name) {
                if let Some(g) = numeric(f[2]) {
                    if g != gid && !groups.contains(&g) {
                        groups.push(g);
                    }
                }
            }
        }
    }
    Ok(Ids {
        uid,
        gid,
        groups,
        home,
    })
}

fn bad_entry(file: &str, fields: &[&str]) -> Error {
    Error::InvalidArgument(format!("invalid {file} entry {:?}", fields.join(":")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n# comment\nwww:x:33:33:www:/var/www:/bin/false\nbob:x:1000:1000::/home/bob:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nwww:x:33:\nstaff:x:50:bob,alice\nbob:x:1000:\nwheel:x:10:bob\n";

    #[test]
    fn names_and_numbers() {
        let root = resolve("", PASSWD, GROUP).unwrap();
        assert_eq!((root.uid, root.gid, root.home.as_str()), (0, 0, "/root"));
        let bob = resolve("bob", PASSWD, GROUP).unwrap();
        assert_eq!((bob.uid, bob.gid), (1000, 1000));
        assert_eq!(bob.groups, vec![50, 10]);
        assert_eq!(bob.home, "/home/bob");
        let www = resolve("33", PASSWD, GROUP).unwrap();
        assert_eq!((www.uid, www.gid, www.home.as_str()), (33, 33, "/var/www"));
        let anon = resolve("4242", PASSWD, GROUP).unwrap();
        assert_eq!((anon.uid, anon.gid, anon.home.as_str()), (4242, 0, "/"));
    }

    #[test]
    fn groups() {
        let b = resolve("bob:staff", PASSWD, GROUP).unwrap();
        assert_eq!((b.uid, b.gid), (1000, 50));
        assert!(
            b.groups.is_empty(),
            "an explicit group replaces the supplementary ones"
        );
        let n = resolve("1000:7", PASSWD, GROUP).unwrap();
        assert_eq!((n.uid, n.gid), (1000, 7));
    }

    #[test]
    fn unknown_names_are_errors() {
        let e = resolve("nobody", PASSWD, GROUP).unwrap_err().to_string();
        assert!(e.contains("unable to find user nobody"), "{e}");
        let e = resolve("bob:nogroup", PASSWD, GROUP)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unable to find group nogroup"), "{e}");
        assert!(resolve("-1", PASSWD, GROUP).is_err());
        assert!(resolve("99999999999", PASSWD, GROUP).is_err());
    }
}
