//! Typed instructions (BuildKit's `frontend/dockerfile/instructions`):
//! argument counts, flags and their values are checked here; variable
//! expansion is left to the build, which knows the environment.

mod duration;
mod flags;
mod mount;

use std::time::Duration;

pub use duration::parse_go_duration;
pub use mount::{parse_mount, Mount, MountExpander, MountType, Sharing};

use self::flags::{Flags, Kind};
use super::heredoc::{chomp_heredoc_content, parse_heredoc};
use super::{Dockerfile, Node, ParseError};

/// `KEY=value` of ENV and LABEL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key, as written (quotes are removed at expansion).
    pub key: String,
    /// The value, as written.
    pub value: String,
    /// Legacy `ENV KEY value` form (no `=`).
    pub no_delim: bool,
}

/// One name of an ARG instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    /// The name.
    pub key: String,
    /// The default, as written, if any (`ARG A=` has `Some("")`).
    pub value: Option<String>,
}

/// A heredoc given to RUN (a file whose content feeds the command).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineFile {
    /// The heredoc name.
    pub name: String,
    /// The body, as written (tabs not yet removed).
    pub data: String,
    /// `<<-`: remove leading tabs.
    pub chomp: bool,
    /// The name was unquoted: expand variables in the body.
    pub expand: bool,
}

/// The command of RUN, CMD and ENTRYPOINT.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandLine {
    /// Exec form: the argv. Shell form: one string, to run with SHELL.
    pub args: Vec<String>,
    /// Shell form (prepend the SHELL).
    pub prepend_shell: bool,
    /// Heredocs of RUN.
    pub files: Vec<InlineFile>,
}

/// A heredoc source of COPY or ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceContent {
    /// File name (the heredoc name).
    pub path: String,
    /// The content (tabs removed for `<<-`).
    pub data: String,
    /// Expand variables in the content.
    pub expand: bool,
}

/// Sources and destination of COPY and ADD.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourcesAndDest {
    /// The destination, as written.
    pub dest: String,
    /// Paths, URLs or git references, as written.
    pub paths: Vec<String>,
    /// Heredoc sources.
    pub contents: Vec<SourceContent>,
}

/// `RUN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The command.
    pub cmd: CommandLine,
    /// `--mount` values, as written (see [`parse_mount`]).
    pub mounts: Vec<String>,
    /// `--network`: `default`, `none` or `host`.
    pub network: String,
    /// `--security`: `sandbox` or `insecure`.
    pub security: String,
    /// `--device` values (labs).
    pub devices: Vec<String>,
}

/// `ADD`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Add {
    /// What and where.
    pub sources: SourcesAndDest,
    /// `--chown`.
    pub chown: Option<String>,
    /// `--chmod`.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--keep-git-dir`.
    pub keep_git_dir: bool,
    /// `--checksum`.
    pub checksum: Option<String>,
    /// `--unpack` (`None` when not given).
    pub unpack: Option<bool>,
    /// `--exclude` patterns.
    pub exclude: Vec<String>,
}

/// `COPY`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Copy {
    /// What and where.
    pub sources: SourcesAndDest,
    /// `--from`.
    pub from: Option<String>,
    /// `--chown`.
    pub chown: Option<String>,
    /// `--chmod`.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--parents`.
    pub parents: bool,
    /// `--exclude` patterns.
    pub exclude: Vec<String>,
}

/// `HEALTHCHECK`, as Docker's `HealthConfig`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthConfig {
    /// `["NONE"]`, `["CMD", argv…]` or `["CMD-SHELL", command]`.
    pub test: Vec<String>,
    /// `--interval` (zero: inherit/default).
    pub interval: Duration,
    /// `--timeout`.
    pub timeout: Duration,
    /// `--start-period`.
    pub start_period: Duration,
    /// `--start-interval`.
    pub start_interval: Duration,
    /// `--retries` (zero: default).
    pub retries: i64,
}

/// `ONBUILD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Onbuild {
    /// The trigger instruction, as it will be re-parsed in a child image
    /// (heredoc bodies appended, as BuildKit stores them).
    pub expression: String,
    /// The trigger keyword in upper case.
    pub trigger: String,
}

/// `FROM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct From {
    /// The base image reference, `scratch` or a stage name, as written.
    pub base: String,
    /// `AS name`, lower-cased.
    pub stage_name: Option<String>,
    /// `--platform`.
    pub platform: Option<String>,
}

/// A typed instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    /// `FROM`.
    From(From),
    /// `RUN`.
    Run(Run),
    /// `CMD`.
    Cmd(CommandLine),
    /// `ENTRYPOINT` (an empty command means "unset").
    Entrypoint(CommandLine),
    /// `SHELL` (JSON form only).
    Shell(Vec<String>),
    /// `LABEL`.
    Label(Vec<KeyValue>),
    /// `ENV`.
    Env(Vec<KeyValue>),
    /// `MAINTAINER`.
    Maintainer(String),
    /// `EXPOSE` (sorted as BuildKit sorts them).
    Expose(Vec<String>),
    /// `ADD`.
    Add(Add),
    /// `COPY`.
    Copy(Copy),
    /// `VOLUME`.
    Volume(Vec<String>),
    /// `USER`.
    User(String),
    /// `WORKDIR`.
    Workdir(String),
    /// `ARG`.
    Arg(Vec<ArgDecl>),
    /// `ONBUILD`.
    Onbuild(Onbuild),
    /// `STOPSIGNAL`.
    StopSignal(String),
    /// `HEALTHCHECK`.
    Healthcheck(HealthConfig),
}

/// An instruction with its place in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// First line.
    pub line: usize,
    /// Last line.
    pub end_line: usize,
    /// The instruction text, continuation lines joined.
    pub original: String,
    /// What it says.
    pub instruction: Instruction,
}

/// A build stage: a FROM and the instructions after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// The FROM.
    pub from: From,
    /// Line of the FROM.
    pub line: usize,
    /// The FROM text.
    pub source_code: String,
    /// The instructions of the stage.
    pub commands: Vec<Command>,
}

/// A Dockerfile as stages (BuildKit `instructions.Parse`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stages {
    /// ARGs before the first FROM (global scope).
    pub meta_args: Vec<Command>,
    /// The stages, in order.
    pub stages: Vec<Stage>,
}

/// Every keyword, for "did you mean" suggestions.
const KEYWORDS: [&str; 18] = [
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest keyword, if it is close enough to be a typo.
pub fn suggest_keyword(word: &str) -> Option<&'static str> {
    let w = word.to_uppercase();
    if w.chars().count() < 2 || w.chars().count() > 64 {
        return None;
    }
    let mut best: Option<(usize, &'static str)> = None;
    for k in KEYWORDS {
        let d = levenshtein(&w, k);
        if d < 3 && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, k));
        }
    }
    best.map(|(_, k)| k)
}

/// BuildKit `handleJSONArgs`.
fn json_args(args: &[String], json: bool) -> Vec<String> {
    if args.is_empty() {
        Vec::new()
    } else if json {
        args.to_vec()
    } else {
        vec![args.join(" ")]
    }
}

fn at_least_one(cmd: &str) -> String {
    format!("{cmd} requires at least one argument")
}

fn exactly_one(cmd: &str) -> String {
    format!("{cmd} requires exactly one argument")
}

fn no_destination(cmd: &str) -> String {
    format!(
        "{cmd} requires at least two arguments, but only one was provided. Destination could not be determined."
    )
}

fn parse_flags(node: &Node, defs: &[(&'static str, Kind)]) -> Result<Flags, String> {
    let mut f = Flags::new(defs);
    f.parse(&node.flags)?;
    Ok(f)
}

fn key_values(args: &[String], cmd: &str) -> Result<Vec<KeyValue>, String> {
    if args.is_empty() {
        return Err(at_least_one(cmd));
    }
    if !args.chunks_exact(3).remainder().is_empty() {
        return Err(format!("Bad input to {cmd}, too many arguments"));
    }
    args.chunks(3)
        .map(|c| {
            if c[0].is_empty() {
                return Err(format!("{cmd} names can not be blank"));
            }
            Ok(KeyValue {
                key: c[0].clone(),
                value: c[1].clone(),
                no_delim: c[2].is_empty(),
            })
        })
        .collect()
}

fn sources_and_dest(node: &Node, cmd: &str) -> Result<SourcesAndDest, String> {
    let (dest, srcs) = node.args.split_last().ok_or_else(|| no_destination(cmd))?;
    if parse_heredoc(dest).ok().flatten().is_some() {
        return Err(format!("{cmd} cannot accept a heredoc as a destination"));
    }
    let mut out = SourcesAndDest {
        dest: dest.clone(),
        ..SourcesAndDest::default()
    };
    for src in srcs {
        match parse_heredoc(src).ok().flatten() {
            Some(h) => {
                let content = node
                    .heredocs
                    .iter()
                    .find(|d| d.name == h.name)
                    .map(|d| d.content.clone())
                    .unwrap_or_default();
                let data = if h.chomp {
                    chomp_heredoc_content(&content)
                } else {
                    content
                };
                out.contents.push(SourceContent {
                    path: h.name,
                    data,
                    expand: h.expand,
                });
            }
            None => out.paths.push(src.clone()),
        }
    }
    Ok(out)
}

fn command_line(node: &Node, args: &[String]) -> CommandLine {
    CommandLine {
        args: json_args(args, node.json),
        prepend_shell: !node.json,
        files: node
            .heredocs
            .iter()
            .map(|h| InlineFile {
                name: h.name.clone(),
                data: h.content.clone(),
                chomp: h.chomp,
                expand: h.expand,
            })
            .collect(),
    }
}

fn opt_interval(f: &Flags, name: &str) -> Result<Duration, String> {
    let Some(v) = f.string(name).filter(|v| !v.is_empty()) else {
        return Ok(Duration::ZERO);
    };
    let d = parse_go_duration(&v)?;
    if d == 0 {
        return Ok(Duration::ZERO);
    }
    if d < 1_000_000 {
        return Err(format!("Interval {name:?} cannot be less than 1ms"));
    }
    Ok(duration::to_duration(d))
}

/// Go `regexp` `\s`.
fn is_re_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\x0c' | '\r' | ' ')
}

/// `(?i)^\s*ONBUILD\s*` removed from the original line.
fn strip_onbuild(original: &str) -> String {
    let t = original.trim_start_matches(is_re_space);
    match t.get(..7) {
        Some(k) if k.eq_ignore_ascii_case("onbuild") => {
            t[7..].trim_start_matches(is_re_space).to_string()
        }
        _ => original.to_string(),
    }
}

fn parse_node(node: &Node) -> Result<Instruction, String> {
    use Kind::{Bool, Strings};
    const STR: Kind = Kind::String;
    let args = &node.args;
    Ok(match node.keyword.as_str() {
        "env" | "label" => {
            parse_flags(node, &[])?;
            let cmd = if node.keyword == "env" {
                "ENV"
            } else {
                "LABEL"
            };
            let kv = key_values(args, cmd)?;
            if node.keyword == "env" {
                Instruction::Env(kv)
            } else {
                Instruction::Label(kv)
            }
        }
        "maintainer" => {
            if args.len() != 1 {
                return Err(exactly_one("MAINTAINER"));
            }
            parse_flags(node, &[])?;
            Instruction::Maintainer(args[0].clone())
        }
        "add" => {
            if args.len() < 2 {
                return Err(no_destination("ADD"));
            }
            let f = parse_flags(
                node,
                &[
                    ("chown", STR),
                    ("chmod", STR),
                    ("link", Bool),
                    ("keep-git-dir", Bool),
                    ("checksum", STR),
                    ("unpack", Bool),
                    ("exclude", Strings),
                ],
            )?;
            Instruction::Add(Add {
                sources: sources_and_dest(node, "ADD")?,
                chown: f.string("chown"),
                chmod: f.string("chmod"),
                link: f.bool("link"),
                keep_git_dir: f.bool("keep-git-dir"),
                checksum: f.string("checksum"),
                unpack: f.opt_bool("unpack"),
                exclude: f.strings("exclude"),
            })
        }
        "copy" => {
            if args.len() < 2 {
                return Err(no_destination("COPY"));
            }
            let f = parse_flags(
                node,
                &[
                    ("chown", STR),
                    ("from", STR),
                    ("chmod", STR),
                    ("link", Bool),
                    ("parents", Bool),
                    ("exclude", Strings),
                ],
            )?;
            Instruction::Copy(Copy {
                sources: sources_and_dest(node, "COPY")?,
                from: f.string("from"),
                chown: f.string("chown"),
                chmod: f.string("chmod"),
                link: f.bool("link"),
                parents: f.bool("parents"),
                exclude: f.strings("exclude"),
            })
        }
        "from" => {
            let stage_name = match args.len() {
                3 if args[1].eq_ignore_ascii_case("as") => {
                    let name = args[2].to_lowercase();
                    let mut chars = name.chars();
                    let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase())
                        && chars.all(|c| {
                            c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c)
                        });
                    if !valid {
                        return Err(format!(
                            "invalid name for build stage: {:?}, name can't start with a number or contain symbols",
                            args[2]
                        ));
                    }
                    Some(name)
                }
                1 => None,
                _ => return Err("FROM requires either one or three arguments".to_string()),
            };
            let f = parse_flags(node, &[("platform", STR)])?;
            Instruction::From(From {
                base: args[0].clone(),
                stage_name,
                platform: f.string("platform"),
            })
        }
        "onbuild" => {
            let Some(sub) = node.sub.as_deref() else {
                return Err(at_least_one("ONBUILD"));
            };
            parse_flags(node, &[])?;
            let trigger = sub.keyword.trim().to_uppercase();
            match trigger.as_str() {
                "ONBUILD" => {
                    return Err("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".to_string())
                }
                "MAINTAINER" | "FROM" => {
                    return Err(format!("{trigger} isn't allowed as an ONBUILD trigger"))
                }
                _ => {}
            }
            let mut expression = strip_onbuild(&node.original);
            for h in &node.heredocs {
                expression.push('\n');
                expression.push_str(&h.content);
                expression.push_str(&h.name);
            }
            Instruction::Onbuild(Onbuild {
                expression,
                trigger,
            })
        }
        "workdir" => {
            if args.len() != 1 {
                return Err(exactly_one("WORKDIR"));
            }
            parse_flags(node, &[])?;
            Instruction::Workdir(args[0].clone())
        }
        "run" => {
            let f = parse_flags(
                node,
                &[
                    ("mount", Strings),
                    ("network", STR),
                    ("security", STR),
                    ("device", Strings),
                ],
            )?;
            let mounts = f.strings("mount");
            for m in &mounts {
                mount::check_mount_syntax(m)?;
            }
            let network = f.string("network").unwrap_or_else(|| "default".to_string());
            if !matches!(network.as_str(), "default" | "none" | "host") {
                return Err(format!("invalid network mode {network:?}"));
            }
            let security = f
                .string("security")
                .unwrap_or_else(|| "sandbox".to_string());
            if !matches!(security.as_str(), "sandbox" | "insecure") {
                return Err(format!("security {security:?} is not valid"));
            }
            Instruction::Run(Run {
                cmd: command_line(node, args),
                mounts,
                network,
                security,
                devices: f.strings("device"),
            })
        }
        "cmd" => {
            parse_flags(node, &[])?;
            Instruction::Cmd(command_line(node, args))
        }
        "entrypoint" => {
            parse_flags(node, &[])?;
            Instruction::Entrypoint(command_line(node, args))
        }
        "healthcheck" => {
            let Some(first) = args.first() else {
                return Err(at_least_one("HEALTHCHECK"));
            };
            let typ = first.to_uppercase();
            let rest = &args[1..];
            if typ == "NONE" {
                if !rest.is_empty() {
                    return Err("HEALTHCHECK NONE takes no arguments".to_string());
                }
                Instruction::Healthcheck(HealthConfig {
                    test: vec![typ],
                    ..HealthConfig::default()
                })
            } else {
                let f = parse_flags(
                    node,
                    &[
                        ("interval", STR),
                        ("timeout", STR),
                        ("start-period", STR),
                        ("start-interval", STR),
                        ("retries", STR),
                    ],
                )?;
                if typ != "CMD" {
                    return Err(format!("Unknown type {typ:?} in HEALTHCHECK (try CMD)"));
                }
                let cmd = json_args(rest, node.json);
                if cmd.is_empty() {
                    return Err("Missing command after HEALTHCHECK CMD".to_string());
                }
                let mut test = vec![if node.json { "CMD" } else { "CMD-SHELL" }.to_string()];
                test.extend(cmd);
                let retries = match f.string("retries").filter(|v| !v.is_empty()) {
                    None => 0,
                    Some(v) => {
                        let n: i64 = v
                            .parse()
                            .ok()
                            .filter(|n| i32::try_from(*n).is_ok())
                            .ok_or_else(|| {
                                format!("strconv.ParseInt: parsing {v:?}: invalid syntax")
                            })?;
                        if n < 0 {
                            return Err(format!("--retries cannot be negative ({n})"));
                        }
                        n
                    }
                };
                Instruction::Healthcheck(HealthConfig {
                    test,
                    interval: opt_interval(&f, "interval")?,
                    timeout: opt_interval(&f, "timeout")?,
                    start_period: opt_interval(&f, "start-period")?,
                    start_interval: opt_interval(&f, "start-interval")?,
                    retries,
                })
            }
        }
        "expose" => {
            if args.is_empty() {
                return Err(at_least_one("EXPOSE"));
            }
            parse_flags(node, &[])?;
            let mut ports = args.clone();
            ports.sort();
            Instruction::Expose(ports)
        }
        "user" => {
            if args.len() != 1 {
                return Err(exactly_one("USER"));
            }
            parse_flags(node, &[])?;
            Instruction::User(args[0].clone())
        }
        "volume" => {
            if args.is_empty() {
                return Err(at_least_one("VOLUME"));
            }
            parse_flags(node, &[])?;
            let mut vols = Vec::with_capacity(args.len());
            for v in args {
                let v = v.trim();
                if v.is_empty() {
                    return Err("VOLUME specified can not be an empty string".to_string());
                }
                vols.push(v.to_string());
            }
            Instruction::Volume(vols)
        }
        "stopsignal" => {
            // BuildKit does not look at STOPSIGNAL's flags.
            if args.len() != 1 {
                return Err(exactly_one("STOPSIGNAL"));
            }
            Instruction::StopSignal(args[0].clone())
        }
        "arg" => {
            if args.is_empty() {
                return Err(at_least_one("ARG"));
            }
            parse_flags(node, &[])?;
            let mut decls = Vec::with_capacity(args.len());
            for a in args {
                decls.push(match a.split_once('=') {
                    Some((k, v)) => {
                        if k.is_empty() {
                            return Err("ARG names can not be blank".to_string());
                        }
                        ArgDecl {
                            key: k.to_string(),
                            value: Some(v.to_string()),
                        }
                    }
                    None => ArgDecl {
                        key: a.clone(),
                        value: None,
                    },
                });
            }
            Instruction::Arg(decls)
        }
        "shell" => {
            parse_flags(node, &[])?;
            let shell = json_args(args, node.json);
            if shell.is_empty() {
                return Err(at_least_one("SHELL"));
            }
            if !node.json {
                return Err("SHELL requires the arguments to be in JSON form".to_string());
            }
            Instruction::Shell(shell)
        }
        other => {
            let upper = other.to_uppercase();
            let mut msg = format!("unknown instruction: {upper}");
            if let Some(s) = suggest_keyword(other) {
                msg.push_str(&format!(" (did you mean {s}?)"));
            }
            return Err(msg);
        }
    })
}

/// Type one instruction of `df`.
pub fn parse_instruction(df: &Dockerfile, node: &Node) -> Result<Command, ParseError> {
    let instruction = parse_node(node).map_err(|m| df.error_at(node, m))?;
    Ok(Command {
        line: node.start_line,
        end_line: node.end_line,
        original: node.original.clone(),
        instruction,
    })
}

/// Type every instruction and group them in stages. ARGs before the first
/// FROM are global; any other instruction there is an error.
pub fn parse_stages(df: &Dockerfile) -> Result<Stages, ParseError> {
    let mut meta_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for node in &df.nodes {
        let cmd = parse_instruction(df, node)?;
        match cmd.instruction {
            Instruction::From(from) => stages.push(Stage {
                from,
                line: cmd.line,
                source_code: cmd.original.trim().to_string(),
                commands: Vec::new(),
            }),
            Instruction::Arg(_) if stages.is_empty() => meta_args.push(cmd),
            _ => match stages.last_mut() {
                Some(stage) => stage.commands.push(cmd),
                None => return Err(df.error_at(node, "no build stage in current context")),
            },
        }
    }
    Ok(Stages { meta_args, stages })
}
