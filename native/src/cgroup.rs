//! Resource limits (`--memory`, `--cpus`, `--pids-limit`) through cgroups: the unified (v2)
//! hierarchy when it is the one mounted at /sys/fs/cgroup, else the v1 controllers (this
//! machine's hybrid layout has a v2 mount beside them with no controllers in it).

use std::path::{Path, PathBuf};

use strata_runtime::oci_spec::runtime::LinuxResources;
use strata_runtime::{Error, Result};

const ROOT: &str = "/sys/fs/cgroup";
const PARENT: &str = "strata";

/// A container's cgroup(s), removed by `remove`.
#[derive(Debug)]
pub(crate) struct Cgroup {
    /// One directory per hierarchy the container joins.
    dirs: Vec<PathBuf>,
    /// Where the OOM-kill counter is: (file, v2).
    memory: Option<(PathBuf, bool)>,
}

/// The limits a spec asks for, in cgroup terms.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Limits {
    pub memory: Option<i64>,
    /// (quota, period) in microseconds.
    pub cpu: Option<(i64, u64)>,
    pub pids: Option<i64>,
}

impl Limits {
    pub fn from_spec(resources: Option<&LinuxResources>) -> Limits {
        let Some(r) = resources else {
            return Limits::default();
        };
        Limits {
            memory: r.memory().as_ref().and_then(|m| m.limit()),
            cpu: r
                .cpu()
                .as_ref()
                .and_then(|c| Some((c.quota()?, c.period()?))),
            pids: r.pids().as_ref().map(|p| p.limit()),
        }
    }

    pub fn any(&self) -> bool {
        self.memory.is_some() || self.cpu.is_some() || self.pids.is_some()
    }
}

impl Cgroup {
    /// Make the container's cgroup with `limits` written. Nothing is joined yet.
    pub fn create(id: &str, limits: &Limits) -> Result<Cgroup> {
        if Path::new(ROOT).join("cgroup.controllers").exists() {
            Self::create_v2(id, limits)
        } else {
            Self::create_v1(id, limits)
        }
    }

    fn create_v2(id: &str, limits: &Limits) -> Result<Cgroup> {
        let parent = Path::new(ROOT).join(PARENT);
        mkdir(&parent)?;
        let wanted = "+memory +cpu +pids";
        // Controllers must be enabled on the way down; best effort (some may be absent).
        for dir in [Path::new(ROOT), parent.as_path()] {
            let _ = std::fs::write(dir.join("cgroup.subtree_control"), wanted);
        }
        let dir = parent.join(id);
        mkdir(&dir)?;
        let cg = Cgroup {
            dirs: vec![dir.clone()],
            memory: Some((dir.join("memory.events"), true)),
        };
        let apply = || -> Result<()> {
            if let Some(m) = limits.memory {
                set(&dir, "memory.max", &m.to_string())?;
                // No swap beyond the limit, so the limit is what the container gets.
                let _ = std::fs::write(dir.join("memory.swap.max"), "0");
            }
            if let Some((quota, period)) = limits.cpu {
                set(&dir, "cpu.max", &format!("{quota} {period}"))?;
            }
            if let Some(p) = limits.pids {
                let v = if p <= 0 { "max".into() } else { p.to_string() };
                set(&dir, "pids.max", &v)?;
            }
            Ok(())
        };
        match apply() {
            Ok(()) => Ok(cg),
            Err(e) => {
                cg.remove();
                Err(e)
            }
        }
    }

    fn create_v1(id: &str, limits: &Limits) -> Result<Cgroup> {
        let mut cg = Cgroup {
            dirs: Vec::new(),
            memory: None,
        };
        let mut join = |controller: &str| -> Result<PathBuf> {
            let root = Path::new(ROOT).join(controller);
            if !root.join("cgroup.procs").exists() {
                return Err(Error::Unsupported(format!(
                    "the cgroup controller {controller} is not mounted at {}",
                    root.display()
                )));
            }
            let parent = root.join(PARENT);
            mkdir(&parent)?;
            let dir = parent.join(id);
            mkdir(&dir)?;
            cg.dirs.push(dir.clone());
            Ok(dir)
        };
        let apply = |join: &mut dyn FnMut(&str) -> Result<PathBuf>| -> Result<Option<PathBuf>> {
            let mut oom = None;
            if let Some(m) = limits.memory {
                let dir = join("memory")?;
                set(&dir, "memory.limit_in_bytes", &m.to_string())?;
                // Memory plus swap capped at the same value: no swap, as with v2 above.
                if dir.join("memory.memsw.limit_in_bytes").exists() {
                    set(&dir, "memory.memsw.limit_in_bytes", &m.to_string())?;
                }
                oom = Some(dir.join("memory.oom_control"));
            }
            if let Some((quota, period)) = limits.cpu {
                let dir = join("cpu")?;
                set(&dir, "cpu.cfs_period_us", &period.to_string())?;
                set(&dir, "cpu.cfs_quota_us", &quota.to_string())?;
            }
            if let Some(p) = limits.pids {
                let dir = join("pids")?;
                let v = if p <= 0 { "max".into() } else { p.to_string() };
                set(&dir, "pids.max", &v)?;
            }
            Ok(oom)
        };
        match apply(&mut join) {
            Ok(oom) => {
                cg.memory = oom.map(|f| (f, false));
                Ok(cg)
            }
            Err(e) => {
                cg.remove();
                Err(e)
            }
        }
    }

    /// The cgroup a running container `id`'s limits made, if any: what `exec` joins.
    pub fn existing(id: &str) -> Option<Cgroup> {
        let root = Path::new(ROOT);
        let dirs: Vec<PathBuf> = if root.join("cgroup.controllers").exists() {
            vec![root.join(PARENT).join(id)]
        } else {
            ["memory", "cpu", "pids"]
                .iter()
                .map(|c| root.join(c).join(PARENT).join(id))
                .collect()
        };
        let dirs: Vec<PathBuf> = dirs.into_iter().filter(|d| d.is_dir()).collect();
        (!dirs.is_empty()).then_some(Cgroup { dirs, memory: None })
    }

    /// Move `pid` (and so its future children) into the cgroup.
    pub fn add(&self, pid: i32) -> Result<()> {
        for dir in &self.dirs {
            set(dir, "cgroup.procs", &pid.to_string())?;
        }
        Ok(())
    }

    /// Whether the kernel's OOM killer killed a process of the container.
    pub fn oom_killed(&self) -> bool {
        let Some((file, _)) = &self.memory else {
            return false;
        };
        let text = std::fs::read_to_string(file).unwrap_or_default();
        oom_kills(&text) > 0
    }

    /// Remove the directories (the processes are gone: the pid namespace ended with pid 1).
    pub fn remove(&self) {
        for dir in &self.dirs {
            // A just-exited process can linger in the cgroup for a moment.
            for _ in 0..100 {
                match std::fs::remove_dir(dir) {
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                        std::thread::sleep(std::time::Duration::from_millis(5))
                    }
                    _ => break,
                }
            }
        }
    }
}

/// The `oom_kill N` line of memory.events (v2) or memory.oom_control (v1).
pub(crate) fn oom_kills(text: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

fn mkdir(dir: &Path) -> Result<()> {
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            Err(Error::io(format!("create cgroup {}", dir.display()), e))
        }
        _ => Ok(()),
    }
}

fn set(dir: &Path, file: &str, value: &str) -> Result<()> {
    std::fs::write(dir.join(file), value)
        .map_err(|e| Error::io(format!("set {} to {value}", dir.join(file).display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_counters() {
        assert_eq!(
            oom_kills("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"),
            2
        );
        assert_eq!(
            oom_kills("low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\noom_group_kill 0\n"),
            1
        );
        assert_eq!(oom_kills("oom_kill_disable 0\nunder_oom 0\n"), 0);
    }
}
