//! A container's cgroups: its resource limits (`--memory`, `--cpus`, `--pids-limit`), made
//! before it starts, and its freezer (`pause`), made when it is first paused. The unified
//! (v2) hierarchy when it is the one mounted at /sys/fs/cgroup, else the v1 controllers
//! (this machine's hybrid layout has a v2 mount beside them with no controllers in it).
//!
//! Only what needs a cgroup gets one: moving a process into a cgroup costs a kernel RCU
//! grace period (8–16 ms here, most of a `run` or an `exec`).

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
    /// Unified (v2): `dirs` is that one directory.
    v2: bool,
}

/// The v1 controllers a container may have joined.
const V1_CONTROLLERS: [&str; 4] = ["memory", "cpu", "pids", "freezer"];

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
            v2: true,
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
            v2: false,
        };
        let apply = |cg: &mut Cgroup| -> Result<()> {
            let wanted = [
                ("memory", limits.memory.is_some()),
                ("cpu", limits.cpu.is_some()),
                ("pids", limits.pids.is_some()),
            ];
            for (controller, _) in wanted.iter().filter(|(_, w)| *w) {
                cg.dirs.push(v1_dir(controller, id)?);
            }
            if let Some(m) = limits.memory {
                let dir = cg.v1("memory").expect("joined above");
                set(dir, "memory.limit_in_bytes", &m.to_string())?;
                // Memory plus swap capped at the same value: no swap, as with v2 above.
                if dir.join("memory.memsw.limit_in_bytes").exists() {
                    set(dir, "memory.memsw.limit_in_bytes", &m.to_string())?;
                }
            }
            if let Some((quota, period)) = limits.cpu {
                let dir = cg.v1("cpu").expect("joined above");
                set(dir, "cpu.cfs_period_us", &period.to_string())?;
                set(dir, "cpu.cfs_quota_us", &quota.to_string())?;
            }
            if let Some(p) = limits.pids {
                let dir = cg.v1("pids").expect("joined above");
                let v = if p <= 0 { "max".into() } else { p.to_string() };
                set(dir, "pids.max", &v)?;
            }
            Ok(())
        };
        match apply(&mut cg) {
            Ok(()) => Ok(cg),
            Err(e) => {
                cg.remove();
                Err(e)
            }
        }
    }

    /// The directory of v1 `controller`, if the container joined it.
    fn v1(&self, controller: &str) -> Option<&Path> {
        if self.v2 {
            return None;
        }
        let hierarchy = Path::new(ROOT).join(controller);
        self.dirs
            .iter()
            .find(|d| d.starts_with(&hierarchy))
            .map(PathBuf::as_path)
    }

    /// The directory a v2 file or a v1 `controller`'s file is in.
    fn dir_for(&self, controller: &str) -> Option<&Path> {
        if self.v2 {
            self.dirs.first().map(PathBuf::as_path)
        } else {
            self.v1(controller)
        }
    }

    /// The cgroup a running container `id`'s limits made, if any: what `exec` joins.
    pub fn existing(id: &str) -> Option<Cgroup> {
        let root = Path::new(ROOT);
        let v2 = root.join("cgroup.controllers").exists();
        let dirs: Vec<PathBuf> = if v2 {
            vec![root.join(PARENT).join(id)]
        } else {
            V1_CONTROLLERS
                .iter()
                .map(|c| root.join(c).join(PARENT).join(id))
                .collect()
        };
        let dirs: Vec<PathBuf> = dirs.into_iter().filter(|d| d.is_dir()).collect();
        (!dirs.is_empty()).then_some(Cgroup { dirs, v2 })
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
        let file = if self.v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        let text = self.read(&["memory"], file).unwrap_or_default();
        oom_kills(&text) > 0
    }

    /// Freeze (`pause`) or thaw every process in the container, and return once the kernel
    /// says it is done: a frozen container's processes run no more instructions.
    pub fn freeze(&self, frozen: bool) -> Result<()> {
        let (file, value, done) = match (self.v2, frozen) {
            (true, true) => ("cgroup.freeze", "1", "frozen 1"),
            (true, false) => ("cgroup.freeze", "0", "frozen 0"),
            (false, true) => ("freezer.state", "FROZEN", "FROZEN"),
            (false, false) => ("freezer.state", "THAWED", "THAWED"),
        };
        let dir = self
            .dir_for("freezer")
            .ok_or_else(|| Error::Unsupported("this host has no cgroup freezer".into()))?;
        set(dir, file, value)?;
        // v1 passes through FREEZING; v2 reports it in cgroup.events.
        let (state, expected) = if self.v2 {
            ("cgroup.events", done)
        } else {
            ("freezer.state", done)
        };
        for _ in 0..1000 {
            let text = std::fs::read_to_string(dir.join(state)).unwrap_or_default();
            if text.lines().any(|l| l.trim() == expected) {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        Err(Error::Unsupported(format!(
            "the cgroup freezer did not reach {expected:?} in a second"
        )))
    }

    /// The container's freezer cgroup, made if it is not there yet (`pause`).
    pub fn freezer(id: &str) -> Result<Cgroup> {
        if Path::new(ROOT).join("cgroup.controllers").exists() {
            let parent = Path::new(ROOT).join(PARENT);
            mkdir(&parent)?;
            let dir = parent.join(id);
            mkdir(&dir)?;
            return Ok(Cgroup {
                dirs: vec![dir],
                v2: true,
            });
        }
        Ok(Cgroup {
            dirs: vec![v1_dir("freezer", id)?],
            v2: false,
        })
    }

    /// The freezer cgroup a pause made for container `id`, if any.
    pub fn existing_freezer(id: &str) -> Option<Cgroup> {
        let root = Path::new(ROOT);
        let v2 = root.join("cgroup.controllers").exists();
        let dir = if v2 {
            root.join(PARENT).join(id)
        } else {
            root.join("freezer").join(PARENT).join(id)
        };
        dir.is_dir().then(|| Cgroup {
            dirs: vec![dir],
            v2,
        })
    }

    /// The processes in the cgroup (of its first directory).
    pub fn processes(&self) -> Vec<u32> {
        let Some(dir) = self.dirs.first() else {
            return Vec::new();
        };
        std::fs::read_to_string(dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// `file` of the first of `controllers` the container joined (v1), or of its one
    /// directory (v2).
    fn read(&self, controllers: &[&str], file: &str) -> Option<String> {
        let dir = if self.v2 {
            self.dirs.first()?.as_path()
        } else {
            controllers.iter().find_map(|c| self.v1(c))?
        };
        std::fs::read_to_string(dir.join(file)).ok()
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

/// The container's directory in v1 `controller`'s hierarchy, made if missing.
fn v1_dir(controller: &str, id: &str) -> Result<PathBuf> {
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
    Ok(dir)
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
