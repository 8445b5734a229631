//! A running container's processes, found without a cgroup: those in its init's pid
//! namespace (a namespace it nests inside is not looked into). What `top`, `stats` and
//! `pause` work on, so that a container needs no cgroup until it has limits or is paused.

use strata_runtime::backend::Usage;
use strata_runtime::{Error, Result};

use crate::cgroup::Cgroup;

/// The host pids of the processes in the pid namespace of `init` (init first).
pub(crate) fn processes(init: u32) -> Vec<u32> {
    let namespace = |pid: u32| std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
    let Some(ours) = namespace(init) else {
        return Vec::new();
    };
    let mut pids = vec![init];
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != init && namespace(pid).as_ref() == Some(&ours) {
            pids.push(pid);
        }
    }
    pids
}

/// What the processes in `init`'s pid namespace use, from /proc: CPU time (their own and
/// that of the children they reaped, so every process that ever ran is counted once),
/// resident memory, block I/O, and the network of init's namespace.
pub(crate) fn usage(init: u32, memory_limit: Option<u64>) -> Usage {
    let pids = processes(init);
    // SAFETY: sysconf reads a constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    let mut usage = Usage {
        memory_limit,
        ..Usage::default()
    };
    for &pid in &pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // The fields after the command (which may hold spaces), from field 3 on.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        // utime, stime, cutime, cstime: fields 14 to 17, in USER_HZ (100 on Linux).
        let ticks: u64 = (11..15)
            .filter_map(|i| fields.get(i)?.parse::<u64>().ok())
            .sum();
        usage.cpu_ns += ticks * 10_000_000;
        let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).unwrap_or_default();
        let resident: u64 = statm
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        usage.memory += resident * page;
        let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
        let counter = |key: &str| {
            io.lines()
                .find_map(|l| l.strip_prefix(key)?.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        usage.block_read += counter("read_bytes:");
        usage.block_write += counter("write_bytes:");
    }
    (usage.net_rx, usage.net_tx) = net_io(init);
    usage.pids = pids;
    usage
}

/// Freeze (`pause`) or thaw the container `id` whose init is `init`: its processes are
/// moved into its freezer cgroup (made on the first pause), then frozen. A process that
/// forks meanwhile leaves a child outside, so the moves go on until none is left outside,
/// and once more after the freeze (a task moved into a frozen cgroup freezes).
pub(crate) fn freeze(id: &str, init: u32, frozen: bool) -> Result<()> {
    let freezer = Cgroup::freezer(id)?;
    if !frozen {
        return freezer.freeze(false);
    }
    let gather = || -> Result<()> {
        for _ in 0..100 {
            let inside = freezer.processes();
            let outside: Vec<u32> = processes(init)
                .into_iter()
                .filter(|p| !inside.contains(p))
                .collect();
            if outside.is_empty() {
                return Ok(());
            }
            for pid in outside {
                // One that ended meanwhile is no matter.
                let _ = freezer.add(pid as i32);
            }
        }
        Err(Error::Conflict(format!(
            "container {id} makes processes faster than they can be paused"
        )))
    };
    gather()?;
    freezer.freeze(true)?;
    gather()
}

/// Remove the container's freezer cgroup, if a pause made one (its processes are gone).
pub(crate) fn forget(id: &str) {
    if let Some(cg) = Cgroup::existing_freezer(id) {
        cg.remove();
    }
}

/// Bytes received and sent on the network interfaces of process `pid`'s network namespace,
/// loopback aside (`/proc/PID/net/dev`: two header lines, then `name: rx_bytes … tx_bytes …`).
fn net_io(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap_or_default();
    let mut total = (0, 0);
    for line in text.lines().skip(2) {
        let Some((name, counters)) = line.split_once(':') else {
            continue;
        };
        if name.trim() == "lo" {
            continue;
        }
        let counters: Vec<u64> = counters
            .split_whitespace()
            .map(|n| n.parse().unwrap_or(0))
            .collect();
        total.0 += counters.first().copied().unwrap_or(0);
        total.1 += counters.get(8).copied().unwrap_or(0);
    }
    total
}
