//! A container's cgroup, made for every container when the host lets us (root): its
//! resource limits (`--memory`, `--cpus`, `--pids-limit`), its freezer (`pause`), and what
//! it uses (`stats`, `top`). The unified (v2) hierarchy when it is the one mounted at
//! /sys/fs/cgroup, else the v1 controllers (this machine's hybrid layout has a v2 mount
//! beside them with no controllers in it).

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

/// The v1 controllers every container joins (when mounted) besides those its limits need:
/// pause, and what `stats` and `top` read.
const V1_ALWAYS: [&str; 5] = ["memory", "cpuacct", "pids", "freezer", "blkio"];

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
            let mut wanted: Vec<&str> = V1_ALWAYS.to_vec();
            if limits.cpu.is_some() {
                wanted.push("cpu");
            }
            for controller in wanted {
                let root = Path::new(ROOT).join(controller);
                if !root.join("cgroup.procs").exists() {
                    // Only a limit makes a controller a requirement.
                    let needed = match controller {
                        "memory" => limits.memory.is_some(),
                        "pids" => limits.pids.is_some(),
                        "cpu" => true,
                        _ => false,
                    };
                    if needed {
                        return Err(Error::Unsupported(format!(
                            "the cgroup controller {controller} is not mounted at {}",
                            root.display()
                        )));
                    }
                    continue;
                }
                let parent = root.join(PARENT);
                mkdir(&parent)?;
                let dir = parent.join(id);
                mkdir(&dir)?;
                cg.dirs.push(dir);
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
            V1_ALWAYS
                .iter()
                .chain(&["cpu"])
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

    /// What the container's processes use now.
    pub fn usage(&self) -> strata_runtime::backend::Usage {
        let number = |controllers: &[&str], file: &str| -> Option<u64> {
            self.read(controllers, file)?.trim().parse().ok()
        };
        let stat_field = |controllers: &[&str], file: &str, key: &str| -> Option<u64> {
            let text = self.read(controllers, file)?;
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))?
                .trim()
                .parse()
                .ok()
        };
        let (cpu_ns, memory, inactive, limit) = if self.v2 {
            (
                stat_field(&[], "cpu.stat", "usage_usec").map(|us| us * 1000),
                number(&[], "memory.current"),
                stat_field(&[], "memory.stat", "inactive_file"),
                number(&[], "memory.max"),
            )
        } else {
            (
                number(&["cpuacct"], "cpuacct.usage"),
                number(&["memory"], "memory.usage_in_bytes"),
                stat_field(&["memory"], "memory.stat", "total_inactive_file"),
                number(&["memory"], "memory.limit_in_bytes"),
            )
        };
        let pids: Vec<u32> = self
            .read(&["pids", "freezer", "memory"], "cgroup.procs")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        let (block_read, block_write) = if self.v2 {
            io_stat(&self.read(&[], "io.stat").unwrap_or_default())
        } else {
            blkio_bytes(
                &self
                    .read(&["blkio"], "blkio.throttle.io_service_bytes_recursive")
                    .unwrap_or_default(),
            )
        };
        strata_runtime::backend::Usage {
            block_read,
            block_write,
            cpu_ns: cpu_ns.unwrap_or(0),
            // As docker shows it: the page cache the kernel can drop does not count.
            memory: memory.unwrap_or(0).saturating_sub(inactive.unwrap_or(0)),
            // v1 says "no limit" with a huge number.
            memory_limit: limit.filter(|&l| l < (1 << 62)),
            pids,
            ..Default::default()
        }
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

/// Bytes read and written, from v2's `io.stat` (`8:0 rbytes=… wbytes=… …` a device).
fn io_stat(text: &str) -> (u64, u64) {
    let mut total = (0, 0);
    for field in text.split_whitespace() {
        let number = |v: &str| v.parse::<u64>().unwrap_or(0);
        if let Some(v) = field.strip_prefix("rbytes=") {
            total.0 += number(v);
        } else if let Some(v) = field.strip_prefix("wbytes=") {
            total.1 += number(v);
        }
    }
    total
}

/// Bytes read and written, from v1's `blkio.throttle.io_service_bytes_recursive`
/// (`8:0 Read 4096` lines a device, and a `Total`).
fn blkio_bytes(text: &str) -> (u64, u64) {
    let mut total = (0, 0);
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let [_device, op, bytes] = fields[..] {
            let bytes = bytes.parse::<u64>().unwrap_or(0);
            match op {
                "Read" => total.0 += bytes,
                "Write" => total.1 += bytes,
                _ => {}
            }
        }
    }
    total
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
    fn block_io_counters() {
        let v1 =
            "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:16 Read 1\n8:16 Write 2\nTotal 12291\n";
        assert_eq!(blkio_bytes(v1), (4097, 8194));
        let v2 = "8:0 rbytes=100 wbytes=20 rios=1 wios=1 dbytes=0 dios=0\n8:16 rbytes=1 wbytes=2\n";
        assert_eq!(io_stat(v2), (101, 22));
    }

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
