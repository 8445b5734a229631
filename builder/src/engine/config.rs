//! The instructions that only change the image config (ENV, LABEL, CMD, ENTRYPOINT, EXPOSE,
//! VOLUME, USER, WORKDIR, STOPSIGNAL, HEALTHCHECK, ONBUILD, SHELL, MAINTAINER), with Docker's
//! semantics: one dispatch for a build stage, which records the returned history text, and
//! for `commit`/`import --change` ([`apply_changes`]), which records none — as moby's
//! `BuildFromConfig` runs the builder's own dispatchers against the config.

use std::collections::BTreeMap;

use strata_runtime::image::ImageConfig;

use super::history::{go_duration, plain_list, quote_list};
use crate::dockerfile;
use crate::dockerfile::instructions::{
    parse_instruction, CommandLine, HealthConfig, Instruction, KeyValue,
};

const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// What a config instruction reads besides the config itself.
pub(crate) struct Vars<'a> {
    /// The escape character of the Dockerfile.
    pub(crate) escape: char,
    /// The stage's ARGs in order (no value: declared but unset); none for `--change`.
    pub(crate) args: &'a [(String, Option<String>)],
}

impl Vars<'_> {
    /// A variable as instructions see it: ENV first, then the ARGs.
    pub(crate) fn lookup(&self, config: &ImageConfig, name: &str) -> Option<String> {
        let env = config.config.as_ref().and_then(|c| c.env.as_ref());
        if let Some(v) = env.into_iter().flatten().rev().find_map(|e| {
            e.split_once('=')
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }) {
            return Some(v);
        }
        self.args
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.clone())
    }

    fn expand(&self, config: &ImageConfig, word: &str) -> Result<String, String> {
        let lookup = |k: &str| self.lookup(config, k);
        dockerfile::expand(word, &lookup, self.escape).map_err(|e| e.to_string())
    }

    fn expand_words(&self, config: &ImageConfig, word: &str) -> Result<Vec<String>, String> {
        let lookup = |k: &str| self.lookup(config, k);
        dockerfile::expand_words(word, &lookup, self.escape).map_err(|e| e.to_string())
    }

    /// ENV and LABEL pairs, keys and values expanded with the environment from before the
    /// instruction (`ENV A=1 B=$A` sees the old A).
    fn key_values(
        &self,
        config: &ImageConfig,
        kvs: &[KeyValue],
    ) -> Result<Vec<(String, String)>, String> {
        kvs.iter()
            .map(|kv| {
                Ok((
                    self.expand(config, &kv.key)?,
                    self.expand(config, &kv.value)?,
                ))
            })
            .collect()
    }
}

/// The SHELL that shell-form commands run under.
pub(crate) fn shell(config: &ImageConfig) -> Vec<String> {
    config
        .config
        .as_ref()
        .and_then(|c| c.shell.clone())
        .unwrap_or_else(|| DEFAULT_SHELL.map(String::from).to_vec())
}

/// The working directory, `/` when unset.
pub(crate) fn workdir(config: &ImageConfig) -> String {
    config
        .config
        .as_ref()
        .and_then(|c| c.working_dir.clone())
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".into())
}

/// The argv of CMD/ENTRYPOINT/RUN: exec form as is, shell form under SHELL.
pub(crate) fn command(config: &ImageConfig, line: &CommandLine) -> Vec<String> {
    if line.prepend_shell {
        let mut argv = shell(config);
        argv.push(line.args.join(" "));
        argv
    } else {
        line.args.clone()
    }
}

/// Apply a config instruction to `config`. `Some` is the history text a build records
/// (`ENV A=1`); ONBUILD has none. `cmd_set`: CMD was set earlier in this stage (or change
/// set), so ENTRYPOINT keeps it. On error the config may be partly changed.
pub(crate) fn apply(
    config: &mut ImageConfig,
    instruction: &Instruction,
    vars: &Vars<'_>,
    cmd_set: &mut bool,
) -> Result<Option<String>, String> {
    let created_by = match instruction {
        Instruction::Env(kvs) => {
            let pairs = vars.key_values(config, kvs)?;
            let c = config.container_config();
            for (k, v) in &pairs {
                c.set_env(k, v);
            }
            format!("ENV {}", pairs_text(&pairs))
        }
        Instruction::Label(kvs) => {
            let pairs = vars.key_values(config, kvs)?;
            let labels = config
                .container_config()
                .labels
                .get_or_insert_with(BTreeMap::new);
            for (k, v) in &pairs {
                labels.insert(k.clone(), v.clone());
            }
            format!("LABEL {}", pairs_text(&pairs))
        }
        Instruction::Maintainer(m) => {
            config.author = Some(m.clone());
            format!("MAINTAINER {m}")
        }
        Instruction::User(u) => {
            let u = vars.expand(config, u)?;
            config.container_config().user = Some(u.clone());
            format!("USER {u}")
        }
        Instruction::StopSignal(s) => {
            let s = vars.expand(config, s)?;
            // BuildKit checks the signal (moby's signal.ParseSignal); stored as written.
            if !is_valid_signal(&s) {
                return Err(format!("invalid signal {s:?}"));
            }
            config.container_config().stop_signal = Some(s.clone());
            format!("STOPSIGNAL {s}")
        }
        Instruction::Shell(sh) => {
            config.container_config().shell = Some(sh.clone());
            format!("SHELL {}", plain_list(sh))
        }
        Instruction::Cmd(line) => {
            let argv = command(config, line);
            config.container_config().cmd = Some(argv.clone());
            *cmd_set = true;
            format!("CMD {}", quote_list(&argv))
        }
        Instruction::Entrypoint(line) => {
            let argv = command(config, line);
            let c = config.container_config();
            c.entrypoint = if argv.is_empty() {
                None
            } else {
                Some(argv.clone())
            };
            // A new ENTRYPOINT drops an inherited CMD, as Docker does.
            if !*cmd_set {
                c.cmd = None;
            }
            format!("ENTRYPOINT {}", quote_list(&argv))
        }
        Instruction::Expose(ports) => {
            let mut all = Vec::new();
            for p in ports {
                // `EXPOSE $PORTS` with PORTS="80 443" exposes both.
                for w in vars.expand_words(config, p)? {
                    all.extend(expose_ports(&w)?);
                }
            }
            all.sort();
            all.dedup();
            let map = config
                .container_config()
                .exposed_ports
                .get_or_insert_with(BTreeMap::new);
            for p in &all {
                map.insert(p.clone(), serde_json::json!({}));
            }
            format!("EXPOSE {}", plain_list(&all))
        }
        Instruction::Volume(vols) => {
            let mut all = Vec::new();
            for v in vols {
                let v = vars.expand(config, v)?;
                if v.is_empty() {
                    return Err("VOLUME specified can not be an empty string".into());
                }
                all.push(v);
            }
            let map = config
                .container_config()
                .volumes
                .get_or_insert_with(BTreeMap::new);
            for v in &all {
                map.insert(v.clone(), serde_json::json!({}));
            }
            format!("VOLUME {}", plain_list(&all))
        }
        Instruction::Healthcheck(h) => {
            config.container_config().healthcheck = Some(health_json(h));
            health_history(h)
        }
        Instruction::Onbuild(o) => {
            config
                .container_config()
                .on_build
                .get_or_insert_with(Vec::new)
                .push(o.expression.clone());
            return Ok(None);
        }
        Instruction::Workdir(w) => {
            let w = vars.expand(config, w)?;
            // Relative to the previous WORKDIR, cleaned (`..` stops at `/`).
            let path = if w.starts_with('/') {
                w
            } else {
                format!("{}/{w}", workdir(config))
            };
            let path = format!("/{}", super::context::clean(&path));
            config.container_config().working_dir = Some(path.clone());
            format!("WORKDIR {path}")
        }
        Instruction::From(_)
        | Instruction::Run(_)
        | Instruction::Copy(_)
        | Instruction::Add(_)
        | Instruction::Arg(_) => {
            return Err("this instruction does not change the image config".into())
        }
    };
    Ok(Some(created_by))
}

fn pairs_text(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `80`, `80/udp`, `3000-3002` as docker keys (`80/tcp`); port 0 is allowed, as in BuildKit
/// and docker (0-65535).
fn expose_ports(word: &str) -> Result<Vec<String>, String> {
    let (ports, proto) = match word.split_once('/') {
        // `80/` is tcp, as BuildKit's splitProtoPort.
        Some((p, "")) => (p, "tcp".to_string()),
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (word, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto: {proto}"));
    }
    let parse = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("invalid containerPort: {p}"))
    };
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => (parse(ports)?, parse(ports)?),
    };
    if hi < lo {
        return Err(format!("invalid port range: {ports}"));
    }
    Ok((lo..=hi).map(|p| format!("{p}/{proto}")).collect())
}

/// Linux signal names, without the `SIG` prefix (moby's `signal.SignalMap`).
const SIGNAL_NAMES: &[&str] = &[
    "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT", "KILL",
    "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM", "TRAP", "TSTP",
    "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ", "RTMIN", "RTMAX",
];

/// A signal number (1-64) or a name such as `TERM`, `SIGKILL` or `SIGRTMIN+3`.
fn is_valid_signal(signal: &str) -> bool {
    if let Ok(number) = signal.parse::<i64>() {
        return (1..=64).contains(&number);
    }
    let upper = signal.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let offset_in = |offset: &str, max: u8| {
        offset.bytes().all(|b| b.is_ascii_digit())
            && offset.parse::<u8>().is_ok_and(|n| (1..=max).contains(&n))
    };
    SIGNAL_NAMES.contains(&name)
        || name
            .strip_prefix("RTMIN+")
            .is_some_and(|n| offset_in(n, 15))
        || name
            .strip_prefix("RTMAX-")
            .is_some_and(|n| offset_in(n, 14))
}

fn health_json(h: &HealthConfig) -> serde_json::Value {
    let mut v = serde_json::json!({ "Test": h.test });
    let ns = |d: std::time::Duration| d.as_nanos() as u64;
    for (k, d) in [
        ("Interval", h.interval),
        ("Timeout", h.timeout),
        ("StartPeriod", h.start_period),
        ("StartInterval", h.start_interval),
    ] {
        if !d.is_zero() {
            v[k] = serde_json::json!(ns(d));
        }
    }
    if h.retries != 0 {
        v["Retries"] = serde_json::json!(h.retries);
    }
    v
}

/// BuildKit's `HEALTHCHECK %+v` of the health config.
fn health_history(h: &HealthConfig) -> String {
    format!(
        "HEALTHCHECK {{Test:{} Interval:{} Timeout:{} StartPeriod:{} StartInterval:{} Retries:{}}}",
        plain_list(&h.test),
        go_duration(h.interval),
        go_duration(h.timeout),
        go_duration(h.start_period),
        go_duration(h.start_interval),
        h.retries
    )
}

/// The instructions `--change` may use (moby's `validCommitCommands`).
const CHANGE_COMMANDS: [&str; 11] = [
    "cmd",
    "entrypoint",
    "env",
    "expose",
    "healthcheck",
    "label",
    "onbuild",
    "stopsignal",
    "user",
    "volume",
    "workdir",
];

/// A `--change` value was refused; `change` is the value holding the bad instruction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid --change {change:?}: {message}")]
pub struct ChangeError {
    pub change: String,
    pub message: String,
}

/// `docker commit/import --change`: the values are joined into one Dockerfile (as docker
/// does) and parsed by the Dockerfile parser; each instruction must be one of docker's
/// change commands and is applied by the build's dispatch, with no build args (variables
/// come from the config's Env, earlier changes included) and no history. Values that are
/// blank or only comments change nothing. On error `config` is left as it was.
pub fn apply_changes(config: &mut ImageConfig, changes: &[String]) -> Result<(), ChangeError> {
    let blank = |c: &String| {
        c.lines().all(|l| {
            let l = l.trim();
            l.is_empty() || l.starts_with('#')
        })
    };
    if changes.iter().all(blank) {
        return Ok(());
    }
    // The value that holds a line of the joined text, for messages.
    let first_lines: Vec<usize> = changes
        .iter()
        .scan(1, |line, c| {
            let first = *line;
            *line += c.matches('\n').count() + 1;
            Some(first)
        })
        .collect();
    let change_at = |line: usize| {
        let i = first_lines.partition_point(|&first| first <= line);
        changes[i.saturating_sub(1)].clone()
    };
    let refuse = |line: usize, message: String| ChangeError {
        change: change_at(line),
        message,
    };

    let df = dockerfile::parse("--change", &changes.join("\n"))
        .map_err(|e| refuse(e.line, e.message))?;
    let mut commands = Vec::with_capacity(df.nodes.len());
    for node in &df.nodes {
        if !CHANGE_COMMANDS.contains(&node.keyword.as_str()) {
            let written = node.original.split_whitespace().next().unwrap_or_default();
            return Err(refuse(
                node.start_line,
                format!("{written} is not a valid change command"),
            ));
        }
        let cmd = parse_instruction(&df, node).map_err(|e| refuse(e.line, e.message))?;
        commands.push(cmd);
    }
    let mut updated = config.clone();
    let vars = Vars {
        escape: df.escape,
        args: &[],
    };
    let mut cmd_set = false;
    for cmd in &commands {
        apply(&mut updated, &cmd.instruction, &vars, &mut cmd_set)
            .map_err(|message| refuse(cmd.line, message))?;
    }
    *config = updated;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposed_ports() {
        assert_eq!(expose_ports("80").unwrap(), ["80/tcp"]);
        assert_eq!(expose_ports("53/UDP").unwrap(), ["53/udp"]);
        assert_eq!(expose_ports("9000/").unwrap(), ["9000/tcp"]);
        assert_eq!(expose_ports("0").unwrap(), ["0/tcp"]);
        assert_eq!(
            expose_ports("3000-3002").unwrap(),
            ["3000/tcp", "3001/tcp", "3002/tcp"]
        );
        assert!(expose_ports("x").is_err());
        assert!(expose_ports("65536").is_err());
        assert!(expose_ports("80/icmp").is_err());
        assert!(expose_ports("81-80").is_err());
    }

    #[test]
    fn signals() {
        for ok in ["TERM", "sigkill", "15", "64", "SIGRTMIN+15", "RTMAX-14"] {
            assert!(is_valid_signal(ok), "{ok}");
        }
        for bad in [
            "", "0", "65", "SIG", "RTMIN+0", "RTMIN+16", "RTMAX-15", "TERM ",
        ] {
            assert!(!is_valid_signal(bad), "{bad:?}");
        }
    }
}
