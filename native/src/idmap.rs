//! Rootless: the user namespace's id maps. The caller becomes root inside; with a
//! subordinate range in /etc/subuid and /etc/subgid and the setuid `newuidmap`/`newgidmap`
//! helpers, ids 1… map to that range so images with several users work.

use std::process::Command;

use strata_runtime::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IdMap {
    pub uid: u32,
    pub gid: u32,
    /// (start, count) of the subordinate uids and gids, when the helpers can map them.
    pub subordinate: Option<((u32, u32), (u32, u32))>,
}

impl IdMap {
    pub fn for_caller() -> IdMap {
        let uid = rustix::process::getuid().as_raw();
        let gid = rustix::process::getgid().as_raw();
        let name = user_name(uid);
        let range = |file: &str| {
            let text = std::fs::read_to_string(file).ok()?;
            subordinate_range(&text, name.as_deref(), uid)
        };
        let helpers = which("newuidmap") && which("newgidmap");
        let subordinate = match (helpers, range("/etc/subuid"), range("/etc/subgid")) {
            (true, Some(u), Some(g)) => Some((u, g)),
            _ => None,
        };
        IdMap {
            uid,
            gid,
            subordinate,
        }
    }

    /// Whether the container may call setgroups(2): only with a full mapping written by
    /// newgidmap (a single-id map written by the user must deny it).
    pub fn setgroups_allowed(&self) -> bool {
        self.subordinate.is_some()
    }

    /// Write the maps of the process `pid` (which has just unshared its user namespace).
    pub fn write(&self, pid: i32) -> Result<()> {
        match self.subordinate {
            Some(((us, uc), (gs, gc))) => {
                helper("newuidmap", pid, self.uid, us, uc)?;
                helper("newgidmap", pid, self.gid, gs, gc)
            }
            None => {
                let proc = format!("/proc/{pid}");
                write(&format!("{proc}/uid_map"), &format!("0 {} 1\n", self.uid))?;
                write(&format!("{proc}/setgroups"), "deny")?;
                write(&format!("{proc}/gid_map"), &format!("0 {} 1\n", self.gid))
            }
        }
    }
}

fn helper(program: &str, pid: i32, id: u32, start: u32, count: u32) -> Result<()> {
    let out = Command::new(program)
        .args([pid, 0, id as i32, 1, 1, start as i32, count as i32].map(|n| n.to_string()))
        .output()
        .map_err(|e| Error::io(format!("run {program}"), e))?;
    if !out.status.success() {
        return Err(Error::Unsupported(format!(
            "{program}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

fn write(path: &str, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| Error::io(format!("write {path}"), e))
}

/// The first `name:start:count` (or `uid:start:count`) line for the user.
pub(crate) fn subordinate_range(text: &str, name: Option<&str>, uid: u32) -> Option<(u32, u32)> {
    text.lines().find_map(|line| {
        let mut f = line.trim().split(':');
        let (who, start, count) = (f.next()?, f.next()?, f.next()?);
        let mine = Some(who) == name || who.parse::<u32>().ok() == Some(uid);
        let (start, count) = (start.parse().ok()?, count.parse().ok()?);
        (mine && count > 0).then_some((start, count))
    })
}

fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 2 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[0].to_string())
    })
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
        || ["/usr/bin", "/bin"]
            .iter()
            .any(|d| std::path::Path::new(d).join(program).is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subordinate_ranges_by_name_or_uid() {
        let text = "alice:100000:65536\nbob:165536:65536\n1002:231072:1000\nzero:300000:0\n";
        assert_eq!(
            subordinate_range(text, Some("bob"), 1001),
            Some((165536, 65536))
        );
        assert_eq!(
            subordinate_range(text, Some("carol"), 1002),
            Some((231072, 1000))
        );
        assert_eq!(subordinate_range(text, Some("zero"), 5), None);
        assert_eq!(subordinate_range(text, None, 7), None);
    }
}
