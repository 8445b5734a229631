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
    /// `--tmpfs DIR[:OPTIONS]`.
    pub tmpfs: Vec<String>,
    /// `-v` and `--mount`: binds, volumes and tmpfs mounts, resolved into `binds` and
    /// `tmpfs` when the container is made.
    pub mounts: Vec<super::MountRequest>,
    /// `--volumes-from`: containers whose mounts it shares, and whether read-only.
    pub volumes_from: Vec<(String, Option<bool>)>,
    pub memory: Option<u64>,
    /// `--cpus`: CPU time as a number of CPUs (native).
    pub cpus: Option<f64>,
    /// `--pids-limit` (native).
    pub pids_limit: Option<i64>,
    /// `--ulimit` (native).
    pub ulimits: Vec<PosixRlimit>,
    pub tty: bool,
    pub stdin: bool,
    /// `--init`: a minimal init (tini) as pid 1 that reaps orphans and forwards signals to
    /// the program (native containers).
    pub init: bool,
    /// `--hostname`; the short id otherwise.
    pub hostname: Option<String>,
    /// `--http-max-instances`: a served wasi:http handler's instances at once.
    pub http_max_instances: Option<usize>,
    /// `--http-timeout`: a served request's wall time.
    pub http_timeout: Option<std::time::Duration>,
    /// What the container's monitor does with it: restarts, stop signal, logs.
    pub host: HostConfig,
}

/// How a container is kept, beyond its process: docker's `HostConfig` parts (and
/// `Config.StopSignal`/`StopTimeout`) that its monitor carries out.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostConfig {
    #[serde(default)]
    pub restart: RestartPolicy,
    /// `--stop-signal`, else the image's STOPSIGNAL (as given: `SIGUSR1`, `USR1`, `10`).
    #[serde(default)]
    pub stop_signal: Option<String>,
    /// `--stop-timeout`: seconds `stop` waits before SIGKILL (-1: forever).
    #[serde(default)]
    pub stop_timeout: Option<i64>,
    #[serde(default)]
    pub log: LogOptions,
    /// `-i` on a detached container: its stdin stays open, for `attach` and `start -i`.
    #[serde(default)]
    pub open_stdin: bool,
    /// The container's stdin closes when the first attacher's stdin ends (`create -i`).
    #[serde(default)]
    pub stdin_once: bool,
    /// `--label`/`--label-file`: the container's own labels (shown over its image's).
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Health checks (`--health-*`, else the image's HEALTHCHECK; docker's
    /// `Config.Healthcheck`): run by the monitor (`container/health.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<super::health::Healthcheck>,
    /// The image's SHELL, which a `CMD-SHELL` check runs under (docker's `Config.Shell`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    /// `--network`.
    #[serde(default)]
    pub network: Network,
    /// `--network-alias`: more names the container has on a user network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// `-p`, and `-P` (every EXPOSEd port to a free host port), resolved at create.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<PortMapping>,
}

/// Docker's stop timeout on Linux.
pub const DEFAULT_STOP_TIMEOUT: i64 = 10;

impl HostConfig {
    /// The signal `stop` sends first.
    pub fn stop_signal(&self) -> Result<i32> {
        self.stop_signal.as_deref().map_or(Ok(15), parse_signal)
    }
}

/// `--restart`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    #[default]
    No,
    /// Restart after a non-zero exit, at most `max` times (0: no limit).
    OnFailure {
        max: u32,
    },
    Always,
    /// As `Always`, unless the user stopped it.
    UnlessStopped,
}

impl RestartPolicy {
    pub fn parse(s: &str) -> Result<RestartPolicy> {
        let bad = || {
            Error::InvalidArgument(format!(
                "invalid restart policy {s:?}: expected no, always, unless-stopped or on-failure[:max-retries]"
            ))
        };
        Ok(match s.split_once(':') {
            None => match s {
                "no" | "" => RestartPolicy::No,
                "always" => RestartPolicy::Always,
                "unless-stopped" => RestartPolicy::UnlessStopped,
                "on-failure" => RestartPolicy::OnFailure { max: 0 },
                _ => return Err(bad()),
            },
            Some(("on-failure", n)) => RestartPolicy::OnFailure {
                max: n.parse().map_err(|_| {
                    Error::InvalidArgument(format!(
                        "invalid restart policy {s:?}: maximum retry count must be a non-negative number"
                    ))
                })?,
            },
            Some((name, _)) if matches!(name, "no" | "always" | "unless-stopped") => {
                return Err(Error::InvalidArgument(format!(
                    "invalid restart policy {s:?}: maximum retry count can only be used with 'on-failure'"
                )))
            }
            Some(_) => return Err(bad()),
        })
    }

    /// docker's name (`HostConfig.RestartPolicy.Name`) and retry count.
    pub fn name(&self) -> (&'static str, u32) {
        match self {
            RestartPolicy::No => ("no", 0),
            RestartPolicy::OnFailure { max } => ("on-failure", *max),
            RestartPolicy::Always => ("always", 0),
            RestartPolicy::UnlessStopped => ("unless-stopped", 0),
        }
    }

    /// Whether a run that ended with `code` is followed by another, `restarts` having been
    /// made already (moby's `restartmanager.ShouldRestart`).
    pub fn should_restart(&self, code: i32, stopped_by_user: bool, restarts: u32) -> bool {
        if stopped_by_user {
            return false;
        }
        match self {
            RestartPolicy::No => false,
            RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
            RestartPolicy::OnFailure { max } => code != 0 && (*max == 0 || restarts < *max),
        }
    }
}

/// `--log-opt max-size=10m --log-opt max-file=3`: json-file rotation (off by default).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogOptions {
    /// Rotate when the log reaches this many bytes.
    #[serde(default)]
    pub max_size: Option<u64>,
    /// Files kept, the current one included (1 when unset).
    #[serde(default)]
    pub max_file: Option<u32>,
    /// `--log-driver none`: output is read and dropped.
    #[serde(default)]
    pub disabled: bool,
}

impl LogOptions {
    /// Apply one `--log-opt KEY=VALUE`; sizes as docker's `units.RAMInBytes` reads them.
    pub fn set(&mut self, opt: &str) -> Result<()> {
        let bad = |why: &str| Error::InvalidArgument(format!("invalid log opt {opt:?}: {why}"));
        match opt.split_once('=') {
            Some(("max-size", v)) => {
                let n = parse_size(v).ok_or_else(|| bad("expected a size such as 10m"))?;
                if n == 0 {
                    return Err(bad("max-size must be a positive number"));
                }
                self.max_size = Some(n);
            }
            Some(("max-file", v)) => match v.parse::<u32>() {
                Ok(n) if n > 0 => self.max_file = Some(n),
                _ => return Err(bad("max-file must be a positive number")),
            },
            Some((k, _)) => {
                return Err(bad(&format!(
                    "unknown log opt '{k}' for json-file log driver"
                )))
            }
            None => return Err(bad("expected KEY=VALUE")),
        }
        if self.max_file.is_some_and(|n| n > 1) && self.max_size.is_none() {
            return Err(bad("max-file cannot be set without max-size"));
        }
        Ok(())
    }
}

/// `64m`, `1g`, `512k`, `1024`, `10MB` (binary units, as docker's RAMInBytes).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let mult: u64 = match &s[digits.len()..] {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return None,
    };
    digits.parse::<u64>().ok()?.checked_mul(mult)
}

/// A signal as docker takes it: `SIGKILL`, `KILL`, `kill` or `9`.
pub fn parse_signal(s: &str) -> Result<i32> {
    const NAMES: [(&str, i32); 31] = [
        ("HUP", 1),
        ("INT", 2),
        ("QUIT", 3),
        ("ILL", 4),
        ("TRAP", 5),
        ("ABRT", 6),
        ("IOT", 6),
        ("BUS", 7),
        ("FPE", 8),
        ("KILL", 9),
        ("USR1", 10),
        ("SEGV", 11),
        ("USR2", 12),
        ("PIPE", 13),
        ("ALRM", 14),
        ("TERM", 15),
        ("STKFLT", 16),
        ("CHLD", 17),
        ("CONT", 18),
        ("STOP", 19),
        ("TSTP", 20),
        ("TTIN", 21),
        ("TTOU", 22),
        ("URG", 23),
        ("XCPU", 24),
        ("XFSZ", 25),
        ("VTALRM", 26),
        ("PROF", 27),
        ("WINCH", 28),
        ("IO", 29),
        ("PWR", 30),
    ];
    let bad = || Error::InvalidArgument(format!("invalid signal: {s}"));
    if let Ok(n) = s.parse::<i32>() {
        return if (1..=64).contains(&n) {
            Ok(n)
        } else {
            Err(bad())
        };
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if name == "SYS" {
        return Ok(31);
    }
    if let Some(n) = name
        .strip_prefix("RTMIN+")
        .and_then(|n| n.parse::<i32>().ok())
    {
        return if (0..=30).contains(&n) {
            Ok(34 + n)
        } else {
            Err(bad())
        };
    }
    NAMES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
        .ok_or_else(bad)
}

/// `--network`: which network a container's process is on (docker's `HostConfig.NetworkMode`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Network {
    /// A network namespace of its own with only loopback.
    #[default]
    None,
    /// The host's network namespace.
    Host,
    /// The default bridge network (`bridge`, docker's default): an address, outbound NAT,
    /// published ports.
    Bridge,
    /// A user-defined network, by name or id: as `Bridge`, and its containers resolve each
    /// other by name.
    Named(String),
    /// `container:<name|id>`: another running container's network namespace.
    Container(String),
}

impl Network {
    pub fn parse(s: &str) -> Result<Network> {
        let bad = |why: &str| Error::InvalidArgument(format!("invalid network {s:?}: {why}"));
        Ok(match s {
            "none" => Network::None,
            "host" => Network::Host,
            "bridge" | "default" => Network::Bridge,
            _ => match s.strip_prefix("container:") {
                Some("") => return Err(bad("container: needs a container's name or id")),
                Some(c) => Network::Container(c.to_string()),
                None if valid_name(s) => Network::Named(s.to_string()),
                None => return Err(bad("a network name is made of [a-zA-Z0-9][a-zA-Z0-9_.-]")),
            },
        })
    }

    /// Whether the container gets an address on a network (a veth on its bridge).
    pub fn attaches(&self) -> bool {
        matches!(self, Network::Bridge | Network::Named(_))
    }
}

/// docker's rule for the names of containers, networks and network aliases
/// (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`).
pub fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Network::None => f.write_str("none"),
            Network::Host => f.write_str("host"),
            Network::Bridge => f.write_str("bridge"),
            Network::Named(n) => f.write_str(n),
            Network::Container(c) => write!(f, "container:{c}"),
        }
    }
}

impl From<Network> for String {
    fn from(n: Network) -> String {
        n.to_string()
    }
}

impl TryFrom<String> for Network {
    type Error = Error;
    fn try_from(s: String) -> Result<Network> {
        Network::parse(&s)
    }
}

/// A port's protocol.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// A published port (`-p`): connections to `host_ip:host_port` (every host address when
/// `host_ip` is none; a free port the kernel picks when `host_port` is 0) reach the
/// container's `container_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortMapping {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<std::net::Ipv4Addr>,
    pub host_port: u16,
    pub container_port: u16,
    pub proto: Proto,
}

impl std::fmt::Display for PortMapping {
    /// As docker's PORTS column shows it: `0.0.0.0:8080->80/tcp`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ip = self.host_ip.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
        write!(
            f,
            "{ip}:{}->{}/{}",
            self.host_port, self.container_port, self.proto
        )
    }
}

/// `-p [IP:][HOST_PORT:]CONTAINER_PORT[/tcp|udp]`, ports or equal ranges (`8000-8001:80-81`),
/// as docker reads them; no host port (or `IP::80`) takes a free one.
pub fn parse_publish(s: &str) -> Result<Vec<PortMapping>> {
    let bad = |why: String| Error::InvalidArgument(format!("invalid port mapping {s:?}: {why}"));
    let (spec, proto) = match s.rsplit_once('/') {
        Some((spec, "tcp")) => (spec, Proto::Tcp),
        Some((spec, "udp")) => (spec, Proto::Udp),
        Some((_, p)) => return Err(bad(format!("unknown protocol {p:?} (tcp, udp)"))),
        None => (s, Proto::Tcp),
    };
    if spec.starts_with('[') {
        return Err(bad("IPv6 host addresses are not supported".into()));
    }
    let parts: Vec<&str> = spec.split(':').collect();
    let (ip, host, ctr) = match parts[..] {
        [c] => ("", "", c),
        [h, c] => ("", h, c),
        [ip, h, c] => (ip, h, c),
        _ => return Err(bad("expected [IP:][HOST_PORT:]CONTAINER_PORT".into())),
    };
    let host_ip = match ip {
        "" => None,
        ip => Some(
            ip.parse::<std::net::Ipv4Addr>()
                .map_err(|_| bad(format!("{ip:?} is not an IPv4 address")))?,
        ),
    };
    let range = |r: &str, zero_ok: bool| -> Result<(u16, u16)> {
        let (a, b) = r.split_once('-').unwrap_or((r, r));
        let port = |p: &str| match p.parse::<u32>() {
            Ok(n) if n <= 65535 && (n > 0 || zero_ok) => Ok(n as u16),
            Ok(n) => Err(bad(format!("port {n} is out of range"))),
            Err(_) => Err(bad(format!("{p:?} is not a port"))),
        };
        let (a, b) = (port(a)?, port(b)?);
        if a > b {
            return Err(bad(format!("range {r} ends before it starts")));
        }
        Ok((a, b))
    };
    let (c0, c1) = range(ctr, false)?;
    let (h0, h1) = if host.is_empty() {
        (0, 0)
    } else {
        range(host, false)?
    };
    if host.is_empty() {
        return Ok((c0..=c1)
            .map(|c| PortMapping {
                host_ip,
                host_port: 0,
                container_port: c,
                proto,
            })
            .collect());
    }
    if h1 - h0 != c1 - c0 {
        return Err(bad(
            "the host and container port ranges must be the same length".into(),
        ));
    }
    Ok((0..=c1 - c0)
        .map(|i| PortMapping {
            host_ip,
            host_port: h0 + i,
            container_port: c0 + i,
            proto,
        })
        .collect())
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

/// A host directory (or file) bound into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub host: PathBuf,
    pub container: String,
    pub read_only: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policies_as_docker() {
        assert_eq!(RestartPolicy::parse("no").unwrap(), RestartPolicy::No);
        assert_eq!(
            RestartPolicy::parse("on-failure:3").unwrap(),
            RestartPolicy::OnFailure { max: 3 }
        );
        assert_eq!(
            RestartPolicy::parse("on-failure").unwrap(),
            RestartPolicy::OnFailure { max: 0 }
        );
        for bad in ["sometimes", "always:3", "on-failure:x", "on-failure:-1"] {
            assert!(RestartPolicy::parse(bad).is_err(), "{bad}");
        }
        let three = RestartPolicy::OnFailure { max: 3 };
        assert!(three.should_restart(1, false, 2));
        assert!(!three.should_restart(1, false, 3));
        assert!(!three.should_restart(0, false, 0));
        assert!(!three.should_restart(1, true, 0));
        assert!(RestartPolicy::Always.should_restart(0, false, 100));
        assert!(!RestartPolicy::UnlessStopped.should_restart(0, true, 0));
        assert!(!RestartPolicy::No.should_restart(1, false, 0));
    }

    #[test]
    fn signals_and_log_options_as_docker() {
        for (s, n) in [
            ("SIGTERM", 15),
            ("term", 15),
            ("9", 9),
            ("SIGUSR1", 10),
            ("SIGRTMIN+1", 35),
        ] {
            assert_eq!(parse_signal(s).unwrap(), n, "{s}");
        }
        for bad in ["SIGNOPE", "0", "65", ""] {
            assert!(parse_signal(bad).is_err(), "{bad}");
        }
        let mut log = LogOptions::default();
        log.set("max-size=1k").unwrap();
        log.set("max-file=3").unwrap();
        assert_eq!((log.max_size, log.max_file), (Some(1024), Some(3)));
        assert!(LogOptions::default().set("max-file=3").is_err());
        assert!(log.set("max-size=0").is_err() && log.set("compress=true").is_err());
    }

    #[test]
    fn networks_and_published_ports_as_docker_reads_them() {
        assert_eq!(Network::parse("default").unwrap(), Network::Bridge);
        assert_eq!(
            Network::parse("container:web").unwrap(),
            Network::Container("web".into())
        );
        assert_eq!(Network::parse("n1").unwrap(), Network::Named("n1".into()));
        for bad in ["container:", "-x", "a b", ""] {
            assert!(Network::parse(bad).is_err(), "{bad}");
        }
        let n: Network = serde_json::from_str("\"container:web\"").unwrap();
        assert_eq!(serde_json::to_string(&n).unwrap(), "\"container:web\"");

        let one = |s: &str| parse_publish(s).unwrap();
        let m = |ip: Option<[u8; 4]>, h, c, proto| PortMapping {
            host_ip: ip.map(std::net::Ipv4Addr::from),
            host_port: h,
            container_port: c,
            proto,
        };
        assert_eq!(one("8080:80"), [m(None, 8080, 80, Proto::Tcp)]);
        assert_eq!(one("80"), [m(None, 0, 80, Proto::Tcp)]);
        assert_eq!(
            one("127.0.0.1:8081:81/udp"),
            [m(Some([127, 0, 0, 1]), 8081, 81, Proto::Udp)]
        );
        assert_eq!(
            one("127.0.0.1::81"),
            [m(Some([127, 0, 0, 1]), 0, 81, Proto::Tcp)]
        );
        assert_eq!(
            one("8000-8001:80-81"),
            [m(None, 8000, 80, Proto::Tcp), m(None, 8001, 81, Proto::Tcp)]
        );
        assert_eq!(
            one("8080:80").first().unwrap().to_string(),
            "0.0.0.0:8080->80/tcp"
        );
        for (bad, why) in [
            ("99999:80", "port 99999 is out of range"),
            ("8080:0", "port 0 is out of range"),
            ("8080:80/sctp", "unknown protocol"),
            ("x:80", "not a port"),
            ("1.2.3:80:80", "not an IPv4 address"),
            ("8000-8002:80-81", "same length"),
            ("[::1]:80:80", "IPv6"),
            ("1:2:3:4", "expected"),
        ] {
            let e = parse_publish(bad).unwrap_err().to_string();
            assert!(e.contains(why) && e.contains(bad), "{bad}: {e}");
        }
    }
}
