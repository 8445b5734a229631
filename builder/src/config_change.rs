//! `docker commit --change` / `docker import --change`: apply a Dockerfile
//! instruction from a restricted set to an image's container config.
//!
//! Docker parses the `--change` values as a small Dockerfile and runs the
//! builder's dispatchers against the image config (moby `BuildFromConfig`);
//! this module reproduces those dispatchers' effect on [`ContainerConfig`].

use std::collections::BTreeMap;
use std::iter::Peekable;
use std::str::Chars;

use serde_json::Value;
use strata_runtime::image::ContainerConfig;

/// Why a `--change` value was refused. `line` is the offending instruction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    #[error(
        "invalid --change {line:?}: unknown instruction {instruction} \
         (allowed: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR)"
    )]
    UnknownInstruction { line: String, instruction: String },
    #[error("invalid --change {line:?}: {instruction} requires an argument")]
    MissingArgument { line: String, instruction: String },
    #[error("invalid --change {line:?}: {instruction}: {reason}")]
    Invalid {
        line: String,
        instruction: String,
        reason: String,
    },
}

/// Apply one `--change` value (e.g. `ENV PATH=/app/bin:$PATH`) to `config`.
///
/// On error `config` is left untouched. A value holding several lines is
/// applied line by line, since docker joins all `--change` values into one
/// Dockerfile; blank and `#` comment lines are no-ops there too.
pub fn apply_change(config: &mut ContainerConfig, line: &str) -> Result<(), ChangeError> {
    // Work on a copy so a failure half-way leaves nothing applied, as in docker.
    let mut updated = config.clone();
    for instruction in logical_lines(line) {
        apply_instruction(&mut updated, &instruction)?;
    }
    *config = updated;
    Ok(())
}

/// What went wrong inside one instruction; `apply_instruction` adds the context.
enum Problem {
    MissingArgument,
    Invalid(String),
}

impl From<String> for Problem {
    fn from(reason: String) -> Self {
        Problem::Invalid(reason)
    }
}

impl From<&str> for Problem {
    fn from(reason: &str) -> Self {
        Problem::Invalid(reason.to_string())
    }
}

/// Split a value into instructions the way the Dockerfile parser does:
/// skip blank and comment lines, join lines ending in `\` with the next one.
fn logical_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for raw in text.lines() {
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        match raw.trim_end().strip_suffix('\\') {
            Some(head) => current.push_str(head),
            None => {
                current.push_str(raw);
                lines.push(std::mem::take(&mut current));
            }
        }
    }
    if !current.trim().is_empty() {
        lines.push(current);
    }
    lines
}

fn apply_instruction(config: &mut ContainerConfig, line: &str) -> Result<(), ChangeError> {
    let line = line.trim();
    let (keyword, rest) = line
        .split_once(char::is_whitespace)
        .map_or((line, ""), |(keyword, rest)| (keyword, rest.trim()));
    let instruction = keyword.to_ascii_uppercase();
    let result = match instruction.as_str() {
        "CMD" => command_line(config, rest).map(|cmd| config.cmd = Some(cmd)),
        // Cmd is deliberately left alone here (strata's --change contract).
        // Note docker's BuildFromConfig does reset Cmd on ENTRYPOINT unless an
        // earlier change in the same commit set CMD.
        "ENTRYPOINT" => command_line(config, rest).map(|ep| config.entrypoint = Some(ep)),
        "ENV" => set_env(config, rest),
        "EXPOSE" => expose(config, rest),
        "LABEL" => set_labels(config, rest),
        "ONBUILD" => add_onbuild(config, rest),
        "STOPSIGNAL" => set_stop_signal(config, rest),
        "USER" => single_value(config, rest).map(|user| config.user = Some(user)),
        "VOLUME" => add_volumes(config, rest),
        "WORKDIR" => set_workdir(config, rest),
        _ => {
            return Err(ChangeError::UnknownInstruction {
                line: line.to_string(),
                instruction: keyword.to_string(),
            })
        }
    };
    result.map_err(|problem| match problem {
        Problem::MissingArgument => ChangeError::MissingArgument {
            line: line.to_string(),
            instruction,
        },
        Problem::Invalid(reason) => ChangeError::Invalid {
            line: line.to_string(),
            instruction,
            reason,
        },
    })
}

/// The config's current Env, which docker expands `$VAR` references against.
fn env_of(config: &ContainerConfig) -> &[String] {
    config.env.as_deref().unwrap_or(&[])
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

/// CMD / ENTRYPOINT arguments: a JSON string array (exec form) or a shell
/// command run by the image's SHELL (default `/bin/sh -c`). Neither form
/// expands variables, as in docker.
fn command_line(config: &ContainerConfig, rest: &str) -> Result<Vec<String>, Problem> {
    if let Some(args) = json_string_array(rest)? {
        return Ok(args);
    }
    // Docker accepts a bare `CMD` / `ENTRYPOINT` and clears the value.
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    let mut command = match &config.shell {
        Some(shell) if !shell.is_empty() => shell.clone(),
        _ => vec!["/bin/sh".to_string(), "-c".to_string()],
    };
    command.push(rest.to_string());
    Ok(command)
}

/// `Ok(None)` when `rest` is not JSON: docker (and BuildKit) then fall back to
/// the plain form. A valid JSON array with a non-string element is an error.
fn json_string_array(rest: &str) -> Result<Option<Vec<String>>, String> {
    if !rest.starts_with('[') {
        return Ok(None);
    }
    let Ok(values) = serde_json::from_str::<Vec<Value>>(rest) else {
        return Ok(None);
    };
    values
        .into_iter()
        .map(|value| match value {
            Value::String(s) => Ok(s),
            other => Err(format!(
                "JSON array must contain only strings, found {other}"
            )),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn set_env(config: &mut ContainerConfig, rest: &str) -> Result<(), Problem> {
    let pairs = key_value_pairs(rest, env_of(config), "ENV")?;
    for (key, value) in pairs {
        config.set_env(&key, &value);
    }
    Ok(())
}

fn set_labels(config: &mut ContainerConfig, rest: &str) -> Result<(), Problem> {
    let pairs = key_value_pairs(rest, env_of(config), "LABEL")?;
    config
        .labels
        .get_or_insert_with(BTreeMap::new)
        .extend(pairs);
    Ok(())
}

/// `NAME=value ...` pairs, or (ENV only) the legacy `NAME value with spaces`.
/// Every pair is expanded against the Env from before this instruction, so
/// `ENV A=1 B=$A` sees the old A, as in docker.
fn key_value_pairs(
    rest: &str,
    env: &[String],
    instruction: &str,
) -> Result<Vec<(String, String)>, Problem> {
    let words = split_words(rest);
    let Some(first) = words.first() else {
        return Err(Problem::MissingArgument);
    };
    let raw_pairs: Vec<(&str, &str)> = if first.contains('=') {
        words
            .iter()
            .map(|word| {
                word.split_once('=')
                    .ok_or_else(|| format!("expected NAME=value, got {word:?}"))
            })
            .collect::<Result<_, _>>()?
    } else if instruction == "ENV" {
        match rest.split_once(char::is_whitespace) {
            Some((name, value)) => vec![(name, value.trim_start())],
            None => return Err(format!("{first:?} has no value (use {first}=value)").into()),
        }
    } else {
        return Err(format!(
            "expected NAME=value, got {first:?} (the legacy \"{instruction} name value\" form is not supported)"
        )
        .into());
    };
    raw_pairs
        .into_iter()
        .map(|(raw_key, raw_value)| {
            let key = expand_word(raw_key, env)?;
            if key.is_empty() {
                return Err(format!("empty name in {raw_key}={raw_value}").into());
            }
            Ok((key, expand_word(raw_value, env)?))
        })
        .collect()
}

fn expose(config: &mut ContainerConfig, rest: &str) -> Result<(), Problem> {
    if rest.is_empty() {
        return Err(Problem::MissingArgument);
    }
    let env = env_of(config);
    let mut keys = Vec::new();
    for word in rest.split_whitespace() {
        // `EXPOSE $PORTS` with PORTS="80 443" exposes both, as in docker.
        for spec in expand_word(word, env)?.split_whitespace() {
            keys.extend(port_keys(spec)?);
        }
    }
    let exposed = config.exposed_ports.get_or_insert_with(BTreeMap::new);
    for key in keys {
        exposed.insert(key, empty_object());
    }
    Ok(())
}

/// `80`, `53/udp` or `8000-8002/tcp` → the `port/proto` keys of ExposedPorts.
fn port_keys(spec: &str) -> Result<Vec<String>, String> {
    let (ports, proto) = match spec.split_once('/') {
        Some((ports, "")) => (ports, "tcp".to_string()),
        Some((ports, proto)) => (ports, proto.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!(
            "invalid protocol {proto:?} in {spec:?} (expected tcp, udp or sctp)"
        ));
    }
    let (start, end) = match ports.split_once('-') {
        Some((start, end)) => (parse_port(start)?, parse_port(end)?),
        None => (parse_port(ports)?, parse_port(ports)?),
    };
    if start > end {
        return Err(format!("invalid port range {ports:?}: start is above end"));
    }
    Ok((start..=end)
        .map(|port| format!("{port}/{proto}"))
        .collect())
}

fn parse_port(port: &str) -> Result<u16, String> {
    let digits_only = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
    match port.parse::<u16>() {
        Ok(n) if digits_only && n != 0 => Ok(n),
        _ => Err(format!("invalid port {port:?} (must be 1-65535)")),
    }
}

fn add_volumes(config: &mut ContainerConfig, rest: &str) -> Result<(), Problem> {
    let raw_paths = match json_string_array(rest)? {
        Some(paths) => paths,
        None => rest.split_whitespace().map(str::to_string).collect(),
    };
    if raw_paths.is_empty() {
        return Err(Problem::MissingArgument);
    }
    let env = env_of(config);
    let mut paths = Vec::new();
    for raw in &raw_paths {
        let path = expand_word(raw, env)?;
        let path = path.trim();
        if path.is_empty() {
            return Err(format!("volume {raw:?} is an empty path").into());
        }
        paths.push(path.to_string());
    }
    let volumes = config.volumes.get_or_insert_with(BTreeMap::new);
    for path in paths {
        volumes.insert(path, empty_object());
    }
    Ok(())
}

/// USER / WORKDIR / STOPSIGNAL: the whole rest of the line is one word,
/// with quotes removed and variables expanded.
fn single_value(config: &ContainerConfig, rest: &str) -> Result<String, Problem> {
    if rest.is_empty() {
        return Err(Problem::MissingArgument);
    }
    let value = expand_word(rest, env_of(config))?;
    if value.is_empty() {
        return Err(format!("{rest:?} expands to an empty value").into());
    }
    Ok(value)
}

fn set_workdir(config: &mut ContainerConfig, rest: &str) -> Result<(), Problem> {
    let requested = single_value(config, rest)?;
    let current = config.working_dir.as_deref().unwrap_or("/");
    // Relative paths are joined onto the previous WORKDIR, like docker's normalizeWorkdir.
    let joined = if requested.starts_with('/') {
        requested
    } else {
        format!("{current}/{requested}")
    };
    config.working_dir = Some(clean_absolute_path(&joined));
    Ok(())
}

/// Lexical cleanup of an absolute path (Go's `filepath.Clean` on `/`-rooted input).
fn clean_absolute_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    format!("/{}", parts.join("/"))
}

fn set_stop_signal(config: &mut ContainerConfig, rest: &str) -> Result<(), Problem> {
    let signal = single_value(config, rest)?;
    if !is_valid_signal(&signal) {
        return Err(format!("invalid signal {signal:?}").into());
    }
    // Stored as written (e.g. "SIGTERM" or "15"), as docker does.
    config.stop_signal = Some(signal);
    Ok(())
}

/// Linux signal names docker accepts, without the `SIG` prefix.
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

/// Dockerfile instructions that may follow ONBUILD (FROM, MAINTAINER and
/// ONBUILD itself are refused with their own message, as in docker).
#[rustfmt::skip]
const ONBUILD_TRIGGERS: &[&str] = &[
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "HEALTHCHECK", "LABEL", "RUN", "SHELL",
    "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
];

fn add_onbuild(config: &mut ContainerConfig, rest: &str) -> Result<(), Problem> {
    let trigger = rest
        .split_whitespace()
        .next()
        .ok_or(Problem::MissingArgument)?
        .to_ascii_uppercase();
    match trigger.as_str() {
        "ONBUILD" => Err("chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into()),
        "FROM" | "MAINTAINER" => {
            Err(format!("{trigger} isn't allowed as an ONBUILD trigger").into())
        }
        // Docker only notices an unknown trigger when a child image is built; fail now instead.
        t if !ONBUILD_TRIGGERS.contains(&t) => {
            Err(format!("unknown trigger instruction {trigger}").into())
        }
        // The trigger is stored verbatim and only parsed when a child image is built.
        _ => {
            config
                .on_build
                .get_or_insert_with(Vec::new)
                .push(rest.to_string());
            Ok(())
        }
    }
}

/// Split on unquoted whitespace, keeping quotes and escapes in the words for
/// the later expansion step (docker's `parseWords` for ENV / LABEL).
fn split_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                word.push(c);
                if c == q {
                    quote = None;
                } else if c == '\\' && q == '"' {
                    word.extend(chars.next());
                }
            }
            None if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            None => {
                word.push(c);
                if c == '\'' || c == '"' {
                    quote = Some(c);
                } else if c == '\\' {
                    word.extend(chars.next());
                }
            }
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// Docker's single-word processing: remove quotes and backslash escapes and
/// expand `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR:+alt}`, `${VAR:?msg}`
/// (and the colon-less forms) from `env`. Unset variables expand to "".
fn expand_word(word: &str, env: &[String]) -> Result<String, String> {
    Lexer {
        chars: word.chars().peekable(),
        env,
    }
    .word_until(None)
}

struct Lexer<'a> {
    chars: Peekable<Chars<'a>>,
    env: &'a [String],
}

impl<'a> Lexer<'a> {
    /// Read up to (and consume) `stop`, or to the end when `stop` is None.
    fn word_until(&mut self, stop: Option<char>) -> Result<String, String> {
        let mut out = String::new();
        loop {
            let Some(c) = self.chars.next() else {
                return match stop {
                    None => Ok(out),
                    Some(stop) => Err(format!("missing '{stop}' in variable substitution")),
                };
            };
            match c {
                c if Some(c) == stop => return Ok(out),
                '\'' => out.push_str(&self.single_quoted()?),
                '"' => out.push_str(&self.double_quoted()?),
                // A backslash escapes the next character; a trailing one is dropped.
                '\\' => out.extend(self.chars.next()),
                '$' => out.push_str(&self.dollar()?),
                c => out.push(c),
            }
        }
    }

    fn single_quoted(&mut self) -> Result<String, String> {
        let mut out = String::new();
        for c in self.chars.by_ref() {
            if c == '\'' {
                return Ok(out);
            }
            out.push(c);
        }
        Err("unterminated single quote".to_string())
    }

    fn double_quoted(&mut self) -> Result<String, String> {
        let mut out = String::new();
        while let Some(c) = self.chars.next() {
            match c {
                '"' => return Ok(out),
                '$' => out.push_str(&self.dollar()?),
                // Inside double quotes only `"`, `$` and `\` can be escaped.
                '\\' => match self.chars.peek() {
                    Some(&escaped @ ('"' | '$' | '\\')) => {
                        self.chars.next();
                        out.push(escaped);
                    }
                    _ => out.push('\\'),
                },
                c => out.push(c),
            }
        }
        Err("unterminated double quote".to_string())
    }

    /// Called after a `$`.
    fn dollar(&mut self) -> Result<String, String> {
        match self.chars.peek() {
            Some('{') => {
                self.chars.next();
                self.braced()
            }
            Some(&c) if c.is_alphanumeric() || c == '_' => {
                let name = self.name();
                Ok(self.lookup(&name).unwrap_or_default().to_string())
            }
            // A `$` not followed by a name is literal.
            _ => Ok("$".to_string()),
        }
    }

    fn name(&mut self) -> String {
        // Like sh, `$1abc` is parameter 1 followed by "abc".
        let positional = self.chars.peek().is_some_and(|c| c.is_ascii_digit());
        let mut name = String::new();
        while let Some(&c) = self.chars.peek() {
            let part_of_name = if positional {
                c.is_ascii_digit()
            } else {
                c.is_alphanumeric() || c == '_'
            };
            if !part_of_name {
                break;
            }
            name.push(c);
            self.chars.next();
        }
        name
    }

    /// Called after `${`.
    fn braced(&mut self) -> Result<String, String> {
        let name = self.name();
        if name.is_empty() {
            return Err("bad substitution: expected a variable name after ${".to_string());
        }
        let value = self.lookup(&name);
        let (colon, operator) = match self.chars.next() {
            Some('}') => return Ok(value.unwrap_or_default().to_string()),
            None => return Err(format!("missing '}}' in variable substitution ${{{name}")),
            Some(':') => (true, self.chars.next()),
            other => (false, other),
        };
        if !matches!(operator, Some('-' | '+' | '?')) {
            return Err(format!("unsupported substitution in ${{{name}...}}"));
        }
        let word = self.word_until(Some('}'))?;
        // With a colon an empty value counts as unset, as in sh.
        let set = value.filter(|v| !(colon && v.is_empty()));
        match (operator, set) {
            (Some('-'), Some(value)) | (Some('?'), Some(value)) => Ok(value.to_string()),
            (Some('-'), None) => Ok(word),
            (Some('+'), Some(_)) => Ok(word),
            (Some('+'), None) => Ok(String::new()),
            _ if word.is_empty() => Err(format!("{name}: variable is not set")),
            _ => Err(format!("{name}: {word}")),
        }
    }

    fn lookup(&self, name: &str) -> Option<&'a str> {
        self.env
            .iter()
            .find_map(|entry| match entry.split_once('=') {
                Some((key, value)) if key == name => Some(value),
                _ => None,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_with_env(env: &[&str]) -> ContainerConfig {
        ContainerConfig {
            env: Some(env.iter().map(|e| e.to_string()).collect()),
            ..Default::default()
        }
    }

    fn apply(config: &mut ContainerConfig, line: &str) {
        apply_change(config, line).unwrap_or_else(|e| panic!("{line:?} failed: {e}"));
    }

    fn applied(line: &str) -> ContainerConfig {
        let mut config = ContainerConfig::default();
        apply(&mut config, line);
        config
    }

    fn error(line: &str) -> String {
        let mut config = ContainerConfig::default();
        apply_change(&mut config, line).expect_err(line).to_string()
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn keys(map: &Option<BTreeMap<String, Value>>) -> Vec<String> {
        map.as_ref()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    // --- instruction keyword ---

    #[test]
    fn unknown_instruction_is_refused_with_the_allowed_list() {
        assert_eq!(
            error("FOO bar"),
            "invalid --change \"FOO bar\": unknown instruction FOO (allowed: CMD, ENTRYPOINT, ENV, \
             EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR)"
        );
    }

    #[test]
    fn build_only_instructions_are_refused() {
        for line in [
            "RUN make",
            "COPY a b",
            "FROM alpine",
            "HEALTHCHECK NONE",
            "SHELL [\"/bin/bash\"]",
        ] {
            assert!(error(line).contains("unknown instruction"), "{line}");
        }
    }

    #[test]
    fn keyword_is_case_insensitive() {
        let mut config = ContainerConfig::default();
        apply(&mut config, "env A=1");
        apply(&mut config, "Workdir /srv");
        assert_eq!(config.env, Some(strings(&["A=1"])));
        assert_eq!(config.working_dir.as_deref(), Some("/srv"));
    }

    // --- CMD / ENTRYPOINT ---

    #[test]
    fn cmd_exec_form() {
        assert_eq!(
            applied(r#"CMD ["nginx", "-g", "daemon off;"]"#).cmd,
            Some(strings(&["nginx", "-g", "daemon off;"]))
        );
    }

    #[test]
    fn cmd_shell_form_keeps_the_line_verbatim() {
        assert_eq!(
            applied(r#"CMD echo "$HOME" && sleep 1"#).cmd,
            Some(strings(&["/bin/sh", "-c", r#"echo "$HOME" && sleep 1"#]))
        );
    }

    #[test]
    fn shell_form_uses_the_image_shell() {
        let mut config = ContainerConfig {
            shell: Some(strings(&["/bin/bash", "-o", "pipefail", "-c"])),
            ..Default::default()
        };
        apply(&mut config, "CMD run.sh");
        assert_eq!(
            config.cmd,
            Some(strings(&["/bin/bash", "-o", "pipefail", "-c", "run.sh"]))
        );
    }

    #[test]
    fn invalid_json_falls_back_to_shell_form() {
        assert_eq!(
            applied("CMD [not json").cmd,
            Some(strings(&["/bin/sh", "-c", "[not json"]))
        );
        assert_eq!(
            applied(r#"CMD ["a"] extra"#).cmd,
            Some(strings(&["/bin/sh", "-c", r#"["a"] extra"#]))
        );
    }

    #[test]
    fn json_array_of_non_strings_is_refused() {
        let message = error(r#"CMD ["sleep", 10]"#);
        assert!(
            message.contains("CMD: JSON array must contain only strings"),
            "{message}"
        );
    }

    #[test]
    fn empty_exec_form_or_bare_cmd_clears_cmd() {
        let mut config = ContainerConfig {
            cmd: Some(strings(&["old"])),
            ..Default::default()
        };
        apply(&mut config, "CMD []");
        assert_eq!(config.cmd, Some(vec![]));
        config.cmd = Some(strings(&["old"]));
        apply(&mut config, "CMD");
        assert_eq!(config.cmd, Some(vec![]));
    }

    #[test]
    fn entrypoint_exec_and_shell_forms() {
        assert_eq!(
            applied(r#"ENTRYPOINT ["tini", "--"]"#).entrypoint,
            Some(strings(&["tini", "--"]))
        );
        assert_eq!(
            applied("ENTRYPOINT exec app").entrypoint,
            Some(strings(&["/bin/sh", "-c", "exec app"]))
        );
    }

    #[test]
    fn entrypoint_keeps_existing_cmd() {
        let mut config = ContainerConfig {
            cmd: Some(strings(&["--serve"])),
            ..Default::default()
        };
        apply(&mut config, r#"ENTRYPOINT ["/app"]"#);
        assert_eq!(config.entrypoint, Some(strings(&["/app"])));
        assert_eq!(config.cmd, Some(strings(&["--serve"])));
    }

    // --- ENV ---

    #[test]
    fn env_pairs_with_quotes_and_escapes() {
        let config = applied(r#"ENV A=1 B="v 2" C='single $X' D=a\ b E="q\"uote" F="""#);
        assert_eq!(
            config.env,
            Some(strings(&[
                "A=1",
                "B=v 2",
                "C=single $X",
                "D=a b",
                "E=q\"uote",
                "F="
            ]))
        );
    }

    #[test]
    fn env_legacy_form_takes_the_rest_of_the_line() {
        assert_eq!(
            applied("ENV GREETING hello  big world").env,
            Some(strings(&["GREETING=hello  big world"]))
        );
    }

    #[test]
    fn env_expands_from_existing_env() {
        let mut config = config_with_env(&["PATH=/usr/bin", "HOME=/root"]);
        apply(
            &mut config,
            r#"ENV PATH=/app/bin:$PATH CACHE=${HOME}/.cache NOPE=x${UNSET}y LIT=\$HOME"#,
        );
        assert_eq!(
            config.env,
            Some(strings(&[
                "PATH=/app/bin:/usr/bin",
                "HOME=/root",
                "CACHE=/root/.cache",
                "NOPE=xy",
                "LIT=$HOME"
            ]))
        );
    }

    #[test]
    fn env_pairs_on_one_line_see_the_previous_env() {
        let mut config = config_with_env(&["A=old"]);
        apply(&mut config, "ENV A=new B=$A");
        assert_eq!(config.env, Some(strings(&["A=new", "B=old"])));
        apply(&mut config, "ENV C=$A");
        assert_eq!(config.env, Some(strings(&["A=new", "B=old", "C=new"])));
    }

    #[test]
    fn env_default_and_alternate_substitutions() {
        let mut config = config_with_env(&["EMPTY=", "SET=yes"]);
        apply(
            &mut config,
            "ENV A=${UNSET:-dflt} B=${EMPTY:-dflt} C=${EMPTY-dflt} D=${SET:+alt} E=${UNSET:+alt}",
        );
        assert_eq!(
            config.env.unwrap()[2..],
            strings(&["A=dflt", "B=dflt", "C=", "D=alt", "E="])
        );
        assert!(apply_change(
            &mut config_with_env(&[]),
            r#"ENV A="${UNSET:?must be set}""#
        )
        .unwrap_err()
        .to_string()
        .contains("UNSET: must be set"));
    }

    #[test]
    fn env_errors() {
        assert_eq!(
            error("ENV"),
            "invalid --change \"ENV\": ENV requires an argument"
        );
        assert!(error("ENV ONLYNAME").contains("ENV: \"ONLYNAME\" has no value"));
        assert!(error("ENV =value").contains("empty name"));
        assert!(error("ENV A=1 B").contains("expected NAME=value, got \"B\""));
        assert!(error(r#"ENV A="open"#).contains("unterminated double quote"));
        assert!(error("ENV A=${B").contains("missing '}'"));
    }

    // --- LABEL ---

    #[test]
    fn label_pairs_with_quotes_and_expansion() {
        let mut config = config_with_env(&["VERSION=1.2"]);
        apply(
            &mut config,
            r#"LABEL org.opencontainers.image.version=$VERSION "description"="a b c""#,
        );
        let labels = config.labels.unwrap();
        assert_eq!(labels["org.opencontainers.image.version"], "1.2");
        assert_eq!(labels["description"], "a b c");
    }

    #[test]
    fn label_replaces_an_existing_value() {
        let mut config = applied("LABEL a=1 b=2");
        apply(&mut config, "LABEL a=3");
        let labels = config.labels.unwrap();
        assert_eq!((labels["a"].as_str(), labels["b"].as_str()), ("3", "2"));
    }

    #[test]
    fn label_legacy_form_is_refused() {
        let message = error("LABEL maintainer someone");
        assert!(message.starts_with(
            "invalid --change \"LABEL maintainer someone\": LABEL: expected NAME=value"
        ));
        assert!(message.contains("legacy"), "{message}");
        assert!(error("LABEL").contains("LABEL requires an argument"));
    }

    // --- EXPOSE ---

    #[test]
    fn expose_defaults_to_tcp_and_lowercases_protocols() {
        let config = applied("EXPOSE 80 53/udp 443/TCP 9000/");
        assert_eq!(
            keys(&config.exposed_ports),
            strings(&["443/tcp", "53/udp", "80/tcp", "9000/tcp"])
        );
        assert_eq!(
            config.exposed_ports.unwrap()["80/tcp"],
            serde_json::json!({})
        );
    }

    #[test]
    fn expose_ranges_and_variables() {
        let mut config = config_with_env(&["PORTS=7000 7001/sctp"]);
        apply(&mut config, "EXPOSE 8000-8002/udp $PORTS");
        assert_eq!(
            keys(&config.exposed_ports),
            strings(&["7000/tcp", "7001/sctp", "8000/udp", "8001/udp", "8002/udp"])
        );
    }

    #[test]
    fn expose_adds_to_existing_ports() {
        let mut config = applied("EXPOSE 80");
        apply(&mut config, "EXPOSE 81");
        assert_eq!(keys(&config.exposed_ports), strings(&["80/tcp", "81/tcp"]));
    }

    #[test]
    fn expose_rejects_bad_ports() {
        for bad in [
            "0",
            "65536",
            "http",
            "-1",
            "+80",
            "8002-8000",
            "80/icmp",
            "1.2.3.4:80:80",
        ] {
            let message = error(&format!("EXPOSE {bad}"));
            assert!(message.contains("EXPOSE: invalid"), "{bad}: {message}");
        }
        assert!(error("EXPOSE 70000").contains("invalid port \"70000\" (must be 1-65535)"));
        assert!(error("EXPOSE").contains("EXPOSE requires an argument"));
    }

    // --- VOLUME ---

    #[test]
    fn volume_json_and_word_forms() {
        assert_eq!(
            keys(&applied(r#"VOLUME ["/data", "/var/log app"]"#).volumes),
            strings(&["/data", "/var/log app"])
        );
        let mut config = config_with_env(&["BASE=/srv"]);
        apply(&mut config, "VOLUME /data $BASE/cache");
        assert_eq!(keys(&config.volumes), strings(&["/data", "/srv/cache"]));
        assert_eq!(config.volumes.unwrap()["/data"], serde_json::json!({}));
    }

    #[test]
    fn volume_errors() {
        assert!(error("VOLUME").contains("VOLUME requires an argument"));
        assert!(error("VOLUME []").contains("VOLUME requires an argument"));
        assert!(error(r#"VOLUME ["/a", ""]"#).contains("empty path"));
        assert!(error("VOLUME [1]").contains("JSON array must contain only strings"));
    }

    // --- USER / WORKDIR / STOPSIGNAL ---

    #[test]
    fn user_takes_the_whole_value() {
        assert_eq!(applied("USER 1000:1000").user.as_deref(), Some("1000:1000"));
        assert_eq!(
            applied(r#"USER "app user""#).user.as_deref(),
            Some("app user")
        );
        let mut config = config_with_env(&["APP_UID=1001"]);
        apply(&mut config, "USER ${APP_UID}");
        assert_eq!(config.user.as_deref(), Some("1001"));
    }

    #[test]
    fn user_errors() {
        assert_eq!(
            error("USER"),
            "invalid --change \"USER\": USER requires an argument"
        );
        assert_eq!(
            error("USER   "),
            "invalid --change \"USER\": USER requires an argument"
        );
        assert!(error("USER $UNSET").contains("expands to an empty value"));
    }

    #[test]
    fn workdir_absolute_relative_and_cleaned() {
        assert_eq!(
            applied("WORKDIR /app/").working_dir.as_deref(),
            Some("/app")
        );
        assert_eq!(applied("WORKDIR src").working_dir.as_deref(), Some("/src"));
        let mut config = applied("WORKDIR /a");
        apply(&mut config, "WORKDIR b");
        assert_eq!(config.working_dir.as_deref(), Some("/a/b"));
        apply(&mut config, "WORKDIR ../c/./d");
        assert_eq!(config.working_dir.as_deref(), Some("/a/c/d"));
        apply(&mut config, "WORKDIR /x//y/../z");
        assert_eq!(config.working_dir.as_deref(), Some("/x/z"));
        apply(&mut config, "WORKDIR /../..");
        assert_eq!(config.working_dir.as_deref(), Some("/"));
    }

    #[test]
    fn workdir_expands_variables() {
        let mut config = config_with_env(&["HOME=/home/app"]);
        apply(&mut config, "WORKDIR $HOME/src");
        assert_eq!(config.working_dir.as_deref(), Some("/home/app/src"));
    }

    #[test]
    fn workdir_errors() {
        assert!(error("WORKDIR").contains("WORKDIR requires an argument"));
        assert!(error(r#"WORKDIR """#).contains("expands to an empty value"));
    }

    #[test]
    fn stopsignal_names_and_numbers() {
        for signal in [
            "SIGTERM",
            "TERM",
            "sigquit",
            "9",
            "SIGRTMIN+3",
            "RTMAX-2",
            "SIGRTMAX",
        ] {
            assert_eq!(
                applied(&format!("STOPSIGNAL {signal}"))
                    .stop_signal
                    .as_deref(),
                Some(signal)
            );
        }
    }

    #[test]
    fn stopsignal_errors() {
        for bad in [
            "SIGNOPE",
            "0",
            "65",
            "-9",
            "SIGRTMIN+16",
            "RTMAX-+1",
            "TERM KILL",
        ] {
            let message = error(&format!("STOPSIGNAL {bad}"));
            assert!(
                message.contains("STOPSIGNAL: invalid signal"),
                "{bad}: {message}"
            );
        }
        assert!(error("STOPSIGNAL").contains("STOPSIGNAL requires an argument"));
    }

    // --- ONBUILD ---

    #[test]
    fn onbuild_appends_the_trigger_verbatim() {
        let mut config = applied("ONBUILD RUN make  $TARGET");
        apply(&mut config, "onbuild copy . /src");
        assert_eq!(
            config.on_build,
            Some(strings(&["RUN make  $TARGET", "copy . /src"]))
        );
    }

    #[test]
    fn onbuild_refuses_forbidden_and_unknown_triggers() {
        assert!(error("ONBUILD ONBUILD RUN x").contains("ONBUILD: chaining ONBUILD"));
        assert!(error("ONBUILD from alpine")
            .contains("ONBUILD: FROM isn't allowed as an ONBUILD trigger"));
        assert!(error("ONBUILD MAINTAINER me").contains("MAINTAINER isn't allowed"));
        assert!(error("ONBUILD RUNN make").contains("unknown trigger instruction RUNN"));
        assert!(error("ONBUILD").contains("ONBUILD requires an argument"));
    }

    // --- whole values ---

    #[test]
    fn failed_change_leaves_config_untouched() {
        let mut config = config_with_env(&["A=1"]);
        let before = config.clone();
        assert!(apply_change(&mut config, "ENV B=2 =3").is_err());
        assert!(apply_change(&mut config, "ENV C=3\nEXPOSE 0").is_err());
        assert_eq!(config, before);
    }

    #[test]
    fn multi_line_values_apply_each_instruction() {
        let config = applied("# set up\nENV A=1 \\\n    B=2\n\nEXPOSE 80\n");
        assert_eq!(config.env, Some(strings(&["A=1", "B=2"])));
        assert_eq!(keys(&config.exposed_ports), strings(&["80/tcp"]));
    }

    #[test]
    fn blank_or_comment_value_is_a_no_op() {
        assert_eq!(applied("   "), ContainerConfig::default());
        assert_eq!(applied("# just a comment"), ContainerConfig::default());
    }

    #[test]
    fn error_message_is_a_single_line() {
        let message = error("ENV A=1\nUSER");
        assert_eq!(
            message,
            "invalid --change \"USER\": USER requires an argument"
        );
        assert!(!error("BAD\"quote\"\tx").contains('\n'));
    }
}
