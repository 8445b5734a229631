//! What `run` (and a build's RUN step) asks of a container beyond its image, and the
//! parsers for the flags that say it.

use std::path::PathBuf;

use oci_spec::runtime::{PosixRlimit, PosixRlimitBuilder, PosixRlimitType};

use crate::error::{Error, Result};

/// What `run` was asked for, beyond the image.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub name: Option<String>,
    pub entrypoint: Option<String>,
    pub args: Vec<String>,
    /// `-e`/`--env-file` entries in order: `K=V`, or `K` to take the caller's value.
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub binds: Vec<Bind>,
    /// `--tmpfs` mount points (native).
    pub tmpfs: Vec<String>,
    pub memory: Option<u64>,
    /// `--cpus`: CPU time as a number of CPUs (native).
    pub cpus: Option<f64>,
    /// `--pids-limit` (native).
    pub pids_limit: Option<i64>,
    /// `--ulimit` (native).
    pub ulimits: Vec<PosixRlimit>,
    pub network: Network,
    pub tty: bool,
    pub stdin: bool,
}

/// `--network`: a private network namespace with only loopback (the default until bridge
/// networking exists), or the host's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Network {
    #[default]
    None,
    Host,
}

impl Network {
    pub fn parse(s: &str) -> Result<Network> {
        match s {
            "none" => Ok(Network::None),
            "host" => Ok(Network::Host),
            other => Err(Error::InvalidArgument(format!(
                "network {other:?} is not supported (none, host)"
            ))),
        }
    }
}

/// `--ulimit nofile=1024[:2048]`, as docker takes it.
pub fn parse_ulimit(s: &str) -> Result<PosixRlimit> {
    let bad = |why: &str| Error::InvalidArgument(format!("invalid ulimit {s:?}: {why}"));
    let (name, limits) = s
        .split_once('=')
        .ok_or_else(|| bad("expected NAME=SOFT[:HARD]"))?;
    let typ = match name {
        "core" => PosixRlimitType::RlimitCore,
        "cpu" => PosixRlimitType::RlimitCpu,
        "data" => PosixRlimitType::RlimitData,
        "fsize" => PosixRlimitType::RlimitFsize,
        "locks" => PosixRlimitType::RlimitLocks,
        "memlock" => PosixRlimitType::RlimitMemlock,
        "msgqueue" => PosixRlimitType::RlimitMsgqueue,
        "nice" => PosixRlimitType::RlimitNice,
        "nofile" => PosixRlimitType::RlimitNofile,
        "nproc" => PosixRlimitType::RlimitNproc,
        "rss" => PosixRlimitType::RlimitRss,
        "rtprio" => PosixRlimitType::RlimitRtprio,
        "rttime" => PosixRlimitType::RlimitRttime,
        "sigpending" => PosixRlimitType::RlimitSigpending,
        "stack" => PosixRlimitType::RlimitStack,
        _ => return Err(bad("unknown limit name")),
    };
    let number = |v: &str| -> Result<u64> {
        if v == "-1" || v == "unlimited" {
            return Ok(u64::MAX);
        }
        v.parse().map_err(|_| bad("limits are numbers"))
    };
    let (soft, hard) = match limits.split_once(':') {
        Some((a, b)) => (number(a)?, number(b)?),
        None => (number(limits)?, number(limits)?),
    };
    if soft > hard {
        return Err(bad("the soft limit is above the hard limit"));
    }
    PosixRlimitBuilder::default()
        .typ(typ)
        .soft(soft)
        .hard(hard)
        .build()
        .map_err(|e| bad(&e.to_string()))
}

/// `-v HOST:CTR[:ro]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub host: PathBuf,
    pub container: String,
    pub read_only: bool,
}

impl Bind {
    pub fn parse(s: &str) -> Result<Bind> {
        let bad = || {
            Error::InvalidArgument(format!(
                "invalid volume specification {s:?}: expected HOST:CONTAINER[:ro|rw]"
            ))
        };
        let parts: Vec<&str> = s.split(':').collect();
        let (host, ctr, mode) = match parts.as_slice() {
            [h, c] => (*h, *c, "rw"),
            [h, c, m] => (*h, *c, *m),
            _ => return Err(bad()),
        };
        if !host.starts_with('/') || !ctr.starts_with('/') || !matches!(mode, "ro" | "rw") {
            return Err(bad());
        }
        // Docker refuses to mount over the container's root: the image would be hidden.
        let mut depth = 0usize;
        for c in ctr.split('/').filter(|c| !c.is_empty() && *c != ".") {
            depth = if c == ".." {
                depth.saturating_sub(1)
            } else {
                depth + 1
            };
        }
        if depth == 0 {
            return Err(Error::InvalidArgument(format!(
                "invalid volume specification {s:?}: destination can't be '/'"
            )));
        }
        Ok(Bind {
            host: host.into(),
            container: ctr.to_string(),
            read_only: mode == "ro",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_parse_as_docker_reads_them() {
        let b = Bind::parse("/srv/data:/data:ro").unwrap();
        assert_eq!(
            b,
            Bind {
                host: "/srv/data".into(),
                container: "/data".into(),
                read_only: true,
            }
        );
        assert!(!Bind::parse("/a:/b").unwrap().read_only);
        for bad in ["a:/b", "/a:b", "/a:/b:rx", "/a", "/a:/b:ro:x"] {
            let e = Bind::parse(bad).unwrap_err().to_string();
            assert!(e.contains("expected HOST:CONTAINER"), "{bad}: {e}");
        }
        // Nothing may be mounted over the container's root, however it is spelled.
        for root in ["/h:/", "/h://", "/h:/.", "/h:/x/..", "/h:/../:ro"] {
            let e = Bind::parse(root).unwrap_err().to_string();
            assert!(e.contains("destination can't be '/'"), "{root}: {e}");
        }
    }
}
