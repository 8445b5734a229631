//! Compose stacks: a project's files read (`load`), typed (`model`), and each service
//! turned into the `strata create` flags a user would type, with compose v2's names and
//! labels, so `compose down` removes exactly what `up` made. `cli/compose.rs` carries the
//! commands out by running `strata` itself, as podman-compose runs podman.

pub mod load;
pub mod model;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use model::{Model, Mount, Service, StringOrList};

pub const LABEL_PROJECT: &str = "com.docker.compose.project";
pub const LABEL_SERVICE: &str = "com.docker.compose.service";
pub const LABEL_NUMBER: &str = "com.docker.compose.container-number";
pub const LABEL_ONEOFF: &str = "com.docker.compose.oneoff";
pub const LABEL_HASH: &str = "com.docker.compose.config-hash";
pub const LABEL_NETWORK: &str = "com.docker.compose.network";
pub const LABEL_VOLUME: &str = "com.docker.compose.volume";
pub const LABEL_WORKING_DIR: &str = "com.docker.compose.project.working_dir";

/// A loaded project: its name, its directory (relative paths are from it), the model, and
/// the variables it was interpolated with.
pub struct Project {
    pub name: String,
    pub dir: PathBuf,
    pub model: Model,
    pub vars: BTreeMap<String, String>,
    /// The services that take part (those of no profile, and of the profiles enabled).
    pub active: Vec<String>,
}

/// compose's normalisation of a project name: lower case, only `[a-z0-9_-]`, starting with
/// a letter or digit.
pub fn normalize_name(raw: &str) -> String {
    raw.to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
        .collect::<String>()
        .trim_start_matches(['_', '-'])
        .to_string()
}

/// Where `load` reads from and what it was told.
pub struct Options<'a> {
    pub files: &'a [PathBuf],
    pub project_dir: Option<&'a Path>,
    pub name: Option<&'a str>,
    pub profiles: &'a [String],
}

/// Read the project as compose would: files found or given, `.env` and the environment,
/// the name from `-p`, `COMPOSE_PROJECT_NAME`, the file's `name:` or the directory.
pub fn load(opts: &Options<'_>, warn: &mut dyn FnMut(String)) -> Result<Project> {
    let cwd = std::env::current_dir().context("the current directory")?;
    let files = load::find_files(opts.files, &cwd)?;
    let dir = match opts.project_dir {
        Some(d) => d.to_path_buf(),
        None => files[0]
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or(cwd),
    };
    let dir = std::fs::canonicalize(&dir)
        .with_context(|| format!("project directory {}", dir.display()))?;
    let process: BTreeMap<String, String> = std::env::vars().collect();
    let vars = load::environment(&dir, &process)?;
    let tree = load::read(&files, &vars, warn)?;
    let model = Model::from_tree(&tree, warn)?;
    let raw = opts
        .name
        .map(String::from)
        .or_else(|| {
            vars.get("COMPOSE_PROJECT_NAME")
                .cloned()
                .filter(|n| !n.is_empty())
        })
        .or_else(|| model.name.clone())
        .unwrap_or_else(|| {
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
    let name = normalize_name(&raw);
    if name.is_empty() {
        bail!("project name {raw:?} must contain a letter or a digit (use -p NAME)");
    }
    let mut profiles: Vec<String> = opts.profiles.to_vec();
    if let Some(p) = vars.get("COMPOSE_PROFILES") {
        profiles.extend(p.split(',').filter(|p| !p.is_empty()).map(String::from));
    }
    let active = model
        .order()?
        .into_iter()
        .filter(|s| {
            let svc = &model.services[s];
            svc.profiles.is_empty() || svc.profiles.iter().any(|p| profiles.contains(p))
        })
        .collect();
    Ok(Project {
        name,
        dir,
        model,
        vars,
        active,
    })
}

/// Words of a command string, as compose splits `command: echo "a b"` (shell quoting, no
/// shell).
pub fn split_words(s: &str) -> Result<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => bail!("unterminated quote in {s:?}"),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => bail!("unterminated quote in {s:?}"),
                        },
                        Some(c) => word.push(c),
                        None => bail!("unterminated quote in {s:?}"),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    word.push(c);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// A flag and its value.
fn flag(a: &mut Vec<String>, f: &str, v: String) {
    a.push(f.into());
    a.push(v);
}

fn words(v: &StringOrList) -> Result<Vec<String>> {
    match v {
        StringOrList::One(s) => split_words(s),
        StringOrList::List(l) => Ok(l.clone()),
    }
}

impl Project {
    pub fn service(&self, name: &str) -> Result<&Service> {
        self.model
            .services
            .get(name)
            .ok_or_else(|| anyhow!("no such service: {name}"))
    }

    /// A network's name on the host: its `name:`, else `<project>_<network>`.
    pub fn network_name(&self, net: &str) -> String {
        match self.model.networks.get(net) {
            Some(def) if def.name.is_some() => def.name.clone().unwrap_or_default(),
            Some(def) if def.external => net.to_string(),
            _ => format!("{}_{net}", self.name),
        }
    }

    /// A volume's name in the store: its `name:`, else `<project>_<volume>`.
    pub fn volume_name(&self, vol: &str) -> String {
        match self.model.volumes.get(vol) {
            Some(def) if def.name.is_some() => def.name.clone().unwrap_or_default(),
            Some(def) if def.external => vol.to_string(),
            _ => format!("{}_{vol}", self.name),
        }
    }

    /// `container_name`, else compose v2's `<project>-<service>-1`.
    pub fn container_name(&self, service: &str) -> String {
        self.model.services[service]
            .container_name
            .clone()
            .unwrap_or_else(|| format!("{}-{service}-1", self.name))
    }

    /// The image a service runs: its `image`, else the one its build makes,
    /// `<project>-<service>`.
    pub fn image_of(&self, service: &str) -> String {
        self.model.services[service]
            .image
            .clone()
            .unwrap_or_else(|| format!("{}-{service}", self.name))
    }

    /// The networks a service joins (host names) with its aliases (the service's name on
    /// each, as compose gives it); `<project>_default` when it names none.
    pub fn service_networks(&self, service: &str) -> Vec<(String, Vec<String>)> {
        let s = &self.model.services[service];
        if s.network_mode.is_some() {
            return Vec::new();
        }
        let mut list = s.network_list();
        if list.is_empty() {
            list.push(("default".into(), Vec::new()));
        }
        list.into_iter()
            .map(|(net, mut aliases)| {
                aliases.insert(0, service.to_string());
                (self.network_name(&net), aliases)
            })
            .collect()
    }

    /// The networks `up` makes: each service's, those not external.
    pub fn networks_to_make(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for s in &self.active {
            let svc = &self.model.services[s];
            if svc.network_mode.is_some() {
                continue;
            }
            let mut nets: Vec<String> = svc.network_list().into_iter().map(|(n, _)| n).collect();
            if nets.is_empty() {
                nets.push("default".into());
            }
            for n in nets {
                let external = self.model.networks.get(&n).is_some_and(|d| d.external);
                if !external && !out.iter().any(|(k, _)| *k == n) {
                    out.push((n.clone(), self.network_name(&n)));
                }
            }
        }
        out
    }

    /// The named volumes `up` makes (those not external): (key in the file, name).
    pub fn volumes_to_make(&self) -> Vec<(String, String)> {
        self.model
            .volumes
            .iter()
            .filter(|(_, d)| !d.external)
            .map(|(k, _)| (k.clone(), self.volume_name(k)))
            .collect()
    }

    /// What identifies a service's configuration: a change recreates its container.
    pub fn config_hash(&self, service: &str) -> String {
        use sha2::Digest;
        let s = &self.model.services[service];
        let text = serde_json::to_string(&(s, self.service_networks(service))).unwrap_or_default();
        hex::encode(sha2::Sha256::digest(text.as_bytes()))
    }

    /// A host path of the file, relative ones (and `~`) resolved from the project.
    fn host_path(&self, p: &str) -> String {
        if let Some(rest) = p.strip_prefix("~/") {
            let home = self.vars.get("HOME").cloned().unwrap_or_default();
            return format!("{home}/{rest}");
        }
        let path = Path::new(p);
        if path.is_absolute() {
            p.to_string()
        } else {
            self.dir.join(path).display().to_string()
        }
    }

    /// The `strata create …` arguments that make a service's container: its flags, the
    /// image and the command's words. (`up` connects its other networks, then starts it.)
    pub fn run_args(&self, service: &str) -> Result<Vec<String>> {
        let s = self.service(service)?;
        let mut a: Vec<String> = vec!["create".into()];
        flag(&mut a, "--name", self.container_name(service));
        let mut labels: Vec<String> = s
            .labels
            .as_ref()
            .map(model::ListOrMap::entries)
            .unwrap_or_default();
        labels.extend([
            format!("{LABEL_PROJECT}={}", self.name),
            format!("{LABEL_SERVICE}={service}"),
            format!("{LABEL_NUMBER}=1"),
            format!("{LABEL_ONEOFF}=False"),
            format!("{LABEL_HASH}={}", self.config_hash(service)),
            format!("{LABEL_WORKING_DIR}={}", self.dir.display()),
        ]);
        for l in labels {
            flag(&mut a, "--label", l);
        }
        // env_file first, environment over it, as compose.
        if let Some(files) = &s.env_file {
            let files = match files {
                StringOrList::One(f) => vec![f.clone()],
                StringOrList::List(l) => l.clone(),
            };
            for f in files {
                flag(&mut a, "--env-file", self.host_path(&f));
            }
        }
        for e in s
            .environment
            .as_ref()
            .map(model::ListOrMap::entries)
            .unwrap_or_default()
        {
            // A name alone takes its value from the project's variables, as compose.
            let e = match e.split_once('=') {
                Some(_) => e,
                None => match self.vars.get(&e) {
                    Some(v) => format!("{e}={v}"),
                    None => continue,
                },
            };
            flag(&mut a, "-e", e);
        }
        for p in &s.ports {
            flag(&mut a, "-p", p.publish());
        }
        for v in &s.volumes {
            let ro = |read_only: bool| if read_only { ":ro" } else { "" };
            match v.mount()? {
                Mount::Bind {
                    source,
                    target,
                    read_only,
                } => {
                    let host = self.host_path(&source);
                    flag(&mut a, "-v", format!("{host}:{target}{}", ro(read_only)));
                }
                Mount::Volume {
                    name,
                    target,
                    read_only,
                } => {
                    let source = match name {
                        Some(n) => format!("{}:", self.volume_name(&n)),
                        None => String::new(),
                    };
                    flag(&mut a, "-v", format!("{source}{target}{}", ro(read_only)));
                }
                Mount::Tmpfs { target, size } => flag(
                    &mut a,
                    "--tmpfs",
                    match size {
                        Some(size) => format!("{target}:size={size}"),
                        None => target,
                    },
                ),
            }
        }
        if let Some(t) = &s.tmpfs {
            let list = match t {
                StringOrList::One(x) => vec![x.clone()],
                StringOrList::List(l) => l.clone(),
            };
            for t in list {
                flag(&mut a, "--tmpfs", t);
            }
        }
        match &s.network_mode {
            Some(mode) if mode.starts_with("service:") => {
                let other = &mode["service:".len()..];
                self.service(other)?;
                flag(
                    &mut a,
                    "--network",
                    format!("container:{}", self.container_name(other)),
                );
            }
            Some(mode) => flag(&mut a, "--network", mode.clone()),
            None => {
                // The first network at create; `up` connects the others before it starts.
                if let Some((net, aliases)) = self.service_networks(service).into_iter().next() {
                    flag(&mut a, "--network", net);
                    for alias in aliases {
                        flag(&mut a, "--network-alias", alias);
                    }
                }
            }
        }
        if let Some(r) = &s.restart {
            flag(&mut a, "--restart", r.clone());
        }
        if let Some(sig) = &s.stop_signal {
            flag(&mut a, "--stop-signal", sig.clone());
        }
        if let Some(g) = &s.stop_grace_period {
            let ns = strata_builder::dockerfile::instructions::parse_go_duration(g)
                .map_err(|e| anyhow!("service {service}: stop_grace_period {g:?}: {e}"))?;
            flag(
                &mut a,
                "--stop-timeout",
                (ns / 1_000_000_000).max(0).to_string(),
            );
        }
        if let Some(h) = &s.hostname {
            flag(&mut a, "--hostname", h.clone());
        }
        if let Some(w) = &s.working_dir {
            flag(&mut a, "-w", w.clone());
        }
        if let Some(u) = &s.user {
            flag(&mut a, "-u", u.clone());
        }
        if let Some(p) = &s.platform {
            flag(&mut a, "--platform", p.clone());
        }
        if let Some(m) = &s.mem_limit {
            flag(
                &mut a,
                "-m",
                match m {
                    model::Scalar::Str(s) => s.clone(),
                    other => serde_json::to_string(other).unwrap_or_default(),
                },
            );
        }
        if let Some(p) = s.pids_limit {
            flag(&mut a, "--pids-limit", p.to_string());
        }
        if let Some(h) = &s.healthcheck {
            if h.disable {
                a.push("--no-healthcheck".into());
            } else {
                for (f, v) in [
                    ("--health-interval", &h.interval),
                    ("--health-timeout", &h.timeout),
                    ("--health-start-period", &h.start_period),
                    ("--health-start-interval", &h.start_interval),
                ] {
                    if let Some(v) = v {
                        flag(&mut a, f, v.clone());
                    }
                }
                if let Some(r) = h.retries {
                    a.push("--health-retries".into());
                    a.push(r.to_string());
                }
                match &h.test {
                    None => {}
                    Some(StringOrList::One(cmd)) => {
                        a.push("--health-cmd".into());
                        a.push(cmd.clone());
                    }
                    Some(StringOrList::List(l)) => a.extend(
                        crate::cli::run::health_test_flags(l)
                            .map_err(|e| anyhow!("service {service}: {e}"))?,
                    ),
                }
            }
        }
        if s.init == Some(true) {
            a.push("--init".into());
        }
        if s.tty {
            a.push("-t".into());
        }
        if s.stdin_open {
            a.push("-i".into());
        }
        // An entrypoint list: the first word is the program, the rest come before the command.
        let mut tail = Vec::new();
        if let Some(e) = &s.entrypoint {
            let mut w = words(e)?.into_iter();
            a.push("--entrypoint".into());
            a.push(w.next().unwrap_or_default());
            tail.extend(w);
        }
        a.push("--pull".into());
        a.push("never".into());
        a.push(self.image_of(service));
        tail.extend(match &s.command {
            Some(c) => words(c)?,
            None => Vec::new(),
        });
        a.extend(tail);
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_as_compose_splits_commands() {
        assert_eq!(
            split_words("echo 'a b' \"c \\\"d\\\"\" e\\ f").unwrap(),
            ["echo", "a b", "c \"d\"", "e f"]
        );
        assert_eq!(
            split_words("  sh -c 'exit 3'  ").unwrap(),
            ["sh", "-c", "exit 3"]
        );
        assert!(split_words("echo 'open").is_err());
    }

    #[test]
    fn names_as_compose_normalises_them() {
        assert_eq!(normalize_name("My_App.v2"), "my_appv2");
        assert_eq!(normalize_name("-x"), "x");
        assert_eq!(normalize_name("..."), "");
    }
}
