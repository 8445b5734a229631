//! `strata compose …`: a stack described once, brought up and down. The project is read by
//! `crate::compose`; each step is a `strata` command run by this binary on the same store
//! (`create`, `start`, `network create`, `volume create`, `build`, `logs -f`, `stop`, `rm`), so a
//! stack's containers are ordinary containers under their monitors, listed and handled by
//! every other command, and nothing here is a second implementation of them.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use strata_runtime::Store;

use crate::compose::{
    self, Project, LABEL_HASH, LABEL_NETWORK, LABEL_PROJECT, LABEL_SERVICE, LABEL_VOLUME,
};

#[derive(clap::Args)]
pub struct Args {
    /// Compose configuration files (default: compose.yaml, compose.yml, docker-compose.yaml, docker-compose.yml)
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Project name (default: COMPOSE_PROJECT_NAME, the file's name:, or the directory's)
    #[arg(short = 'p', long = "project-name")]
    project: Option<String>,
    /// Working directory of the project (default: the first file's)
    #[arg(long = "project-directory", value_name = "DIR")]
    project_directory: Option<PathBuf>,
    /// Profiles to enable
    #[arg(long = "profile")]
    profiles: Vec<String>,
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Create and start the stack's containers (attached: their logs, until Ctrl-C stops them)
    Up {
        /// Detached mode: run containers in the background
        #[arg(short, long)]
        detach: bool,
        /// Build images before starting containers
        #[arg(long)]
        build: bool,
        /// Seconds to wait for a dependency's condition (healthy, completed)
        #[arg(long = "wait-timeout", default_value_t = 120)]
        wait_timeout: u64,
        services: Vec<String>,
    },
    /// Stop and remove the stack's containers and networks (-v: and its volumes)
    Down {
        /// Remove named volumes declared in the volumes section and anonymous volumes
        #[arg(short, long)]
        volumes: bool,
        /// Remove containers for services not defined in the compose file
        #[arg(long = "remove-orphans")]
        remove_orphans: bool,
    },
    /// List the stack's containers
    Ps {
        /// Show all stopped containers
        #[arg(short, long)]
        all: bool,
        /// Only display IDs
        #[arg(short, long)]
        quiet: bool,
        services: Vec<String>,
    },
    /// View output from the stack's containers
    Logs {
        /// Follow log output
        #[arg(short, long)]
        follow: bool,
        services: Vec<String>,
    },
    /// Build the services' images
    Build { services: Vec<String> },
    /// Pull the services' images
    Pull { services: Vec<String> },
    /// Execute a command in a running service's container
    Exec {
        service: String,
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Restart the stack's containers
    Restart { services: Vec<String> },
    /// Stop the stack's containers
    Stop { services: Vec<String> },
    /// Start the stack's stopped containers
    Start { services: Vec<String> },
    /// Print the resolved model (interpolated, merged, normalised)
    Config {
        /// Only check the files
        #[arg(short, long)]
        quiet: bool,
    },
}

/// `strata ARGS` on this store, its output captured.
fn strata(root: &Path, args: &[String]) -> Command {
    let mut c = Command::new("/proc/self/exe");
    c.arg("--root").arg(root).args(args).stdin(Stdio::null());
    c
}

/// Run `strata ARGS`; its stdout, or its error line.
fn run(root: &Path, args: &[String]) -> Result<String> {
    let out = strata(root, args).output().context("run strata")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let line = err
            .lines()
            .last()
            .unwrap_or("")
            .trim_start_matches("Error: ");
        bail!("{}: {line}", args.first().map(String::as_str).unwrap_or(""));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// One of the project's containers, as `inspect` shows it.
struct Member {
    id: String,
    name: String,
    service: String,
    hash: String,
    running: bool,
}

/// The project's containers (any state), by label.
fn members(root: &Path, project: &str) -> Result<Vec<Member>> {
    let ids = run(
        root,
        &s(&[
            "ps",
            "-a",
            "-q",
            "--no-trunc",
            "--filter",
            &format!("label={LABEL_PROJECT}={project}"),
        ]),
    )?;
    let ids: Vec<String> = ids.split_whitespace().map(String::from).collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut args = s(&["inspect", "--type", "container"]);
    args.extend(ids);
    let docs: Vec<Value> = serde_json::from_str(&run(root, &args)?)?;
    Ok(docs
        .iter()
        .map(|d| {
            let label = |k: &str| d["Config"]["Labels"][k].as_str().unwrap_or("").to_string();
            Member {
                id: d["Id"].as_str().unwrap_or("").to_string(),
                name: d["Name"]
                    .as_str()
                    .unwrap_or("")
                    .trim_start_matches('/')
                    .to_string(),
                service: label(LABEL_SERVICE),
                hash: label(LABEL_HASH),
                running: d["State"]["Running"].as_bool().unwrap_or(false),
            }
        })
        .collect())
}

fn say(what: &str, name: &str, state: &str) {
    eprintln!(" {what} {name}  {state}");
}

impl Args {
    pub fn run(self, store: &Store) -> ExitCode {
        match self.execute(store) {
            Ok(code) => code,
            Err(e) => {
                let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
                eprintln!("Error: {}", crate::dedup_chain(&chain));
                ExitCode::from(1)
            }
        }
    }

    fn execute(self, store: &Store) -> Result<ExitCode> {
        let project = compose::load(
            &compose::Options {
                files: &self.files,
                project_dir: self.project_directory.as_deref(),
                name: self.project.as_deref(),
                profiles: &self.profiles,
            },
            &mut |w| eprintln!("WARN: {w}"),
        )?;
        let root = store.path();
        match self.command {
            Sub::Config { quiet } => {
                if !quiet {
                    print!("{}", config(&project)?);
                }
            }
            Sub::Up {
                detach,
                build,
                wait_timeout,
                services,
            } => {
                return up(
                    root,
                    &project,
                    &services,
                    detach,
                    build,
                    Duration::from_secs(wait_timeout),
                );
            }
            Sub::Down {
                volumes,
                remove_orphans,
            } => down(root, &project, volumes, remove_orphans)?,
            Sub::Ps {
                all,
                quiet,
                services,
            } => ps(root, &project, all, quiet, &services)?,
            Sub::Logs { follow, services } => logs(root, &project, follow, &services)?,
            Sub::Build { services } => {
                for svc in selected(&project, &services)? {
                    if project.model.services[&svc].build.is_some() {
                        build(root, &project, &svc)?;
                    }
                }
            }
            Sub::Pull { services } => {
                for svc in selected(&project, &services)? {
                    let sv = &project.model.services[&svc];
                    if sv.build.is_none() {
                        let mut args = s(&["pull"]);
                        if let Some(p) = &sv.platform {
                            args.extend(s(&["--platform", p]));
                        }
                        args.push(project.image_of(&svc));
                        let status = strata(root, &args).stdin(Stdio::null()).status()?;
                        if !status.success() {
                            bail!("pull {}: failed", project.image_of(&svc));
                        }
                    }
                }
            }
            Sub::Exec { service, command } => {
                project.service(&service)?;
                let mut args = s(&["exec", &project.container_name(&service)]);
                args.extend(command);
                let status = strata(root, &args).stdin(Stdio::inherit()).status()?;
                return Ok(ExitCode::from(status.code().unwrap_or(1) as u8));
            }
            Sub::Restart { services } => each_member(root, &project, &services, "restart")?,
            Sub::Stop { services } => each_member(root, &project, &services, "stop")?,
            Sub::Start { services } => each_member(root, &project, &services, "start")?,
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// The services asked for (all active ones when none), checked to exist.
fn selected(project: &Project, services: &[String]) -> Result<Vec<String>> {
    if services.is_empty() {
        return Ok(project.active.clone());
    }
    for s in services {
        project.service(s)?;
    }
    Ok(project
        .active
        .iter()
        .filter(|a| services.contains(a))
        .cloned()
        .collect())
}

/// `config`: the resolved model as YAML, with the project's name.
fn config(project: &Project) -> Result<String> {
    let mut doc = serde_json::to_value(&project.model)?;
    doc["name"] = Value::String(project.name.clone());
    drop_unset(&mut doc);
    Ok(serde_norway::to_string(&doc)?)
}

/// What the file did not set (nulls, empty lists, false flags) left out, as compose's
/// `config` prints only what is there.
fn drop_unset(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for item in map.values_mut() {
                drop_unset(item);
            }
            map.retain(|_, item| {
                !(item.is_null()
                    || item == &Value::Bool(false)
                    || item.as_array().is_some_and(Vec::is_empty))
            });
        }
        Value::Array(items) => items.iter_mut().for_each(drop_unset),
        _ => {}
    }
}

fn build(root: &Path, project: &Project, svc: &str) -> Result<()> {
    let sv = &project.model.services[svc];
    let spec = sv.build.as_ref().map(|b| b.spec()).unwrap_or_default();
    let context = project.dir.join(spec.context.as_deref().unwrap_or("."));
    let mut args = s(&["build", "-t", &project.image_of(svc)]);
    if let Some(f) = &spec.dockerfile {
        args.extend(s(&["-f", &context.join(f).display().to_string()]));
    }
    for a in spec
        .args
        .as_ref()
        .map(compose::model::ListOrMap::entries)
        .unwrap_or_default()
    {
        args.extend(s(&["--build-arg", &a]));
    }
    if let Some(t) = &spec.target {
        args.extend(s(&["--target", t]));
    }
    if let Some(p) = &sv.platform {
        args.extend(s(&["--platform", p]));
    }
    for l in spec
        .labels
        .as_ref()
        .map(compose::model::ListOrMap::entries)
        .unwrap_or_default()
    {
        args.extend(s(&["--label", &l]));
    }
    args.push(context.display().to_string());
    eprintln!(" Building {svc}");
    let status = strata(root, &args).stdout(Stdio::null()).status()?;
    if !status.success() {
        bail!("build of service {svc} failed");
    }
    Ok(())
}

/// Wait for `dep`'s container to meet `condition`.
fn await_condition(
    root: &Path,
    project: &Project,
    dep: &str,
    condition: &str,
    limit: Duration,
) -> Result<()> {
    let name = project.container_name(dep);
    let t0 = Instant::now();
    loop {
        let state = run(root, &s(&["inspect", "--type", "container", "-f",
            "{{.State.Status}} {{.State.ExitCode}} {{if .State.Health}}{{.State.Health.Status}}{{end}}", &name]))?;
        let mut parts = state.split_whitespace();
        let (status, code, health) = (
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        match condition {
            "service_healthy" => match health {
                "healthy" => return Ok(()),
                "unhealthy" => bail!("dependency failed to start: container {name} is unhealthy"),
                "" if status != "running" => {
                    bail!("dependency failed to start: container {name} is {status}")
                }
                "" => bail!("dependency failed to start: container {name} has no healthcheck"),
                _ => {}
            },
            "service_completed_successfully" => {
                if status == "exited" {
                    if code == "0" {
                        return Ok(());
                    }
                    bail!("service {dep:?} didn't complete successfully: exit {code}");
                }
            }
            _ => {
                if status == "running" || status == "exited" {
                    return Ok(());
                }
            }
        }
        if t0.elapsed() > limit {
            bail!(
                "timed out after {}s waiting for {name} ({condition})",
                limit.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn up(
    root: &Path,
    project: &Project,
    services: &[String],
    detach: bool,
    rebuild: bool,
    limit: Duration,
) -> Result<ExitCode> {
    // What was asked for, and what it depends on.
    let mut wanted: Vec<String> = selected(project, services)?;
    let mut i = 0;
    while i < wanted.len() {
        for (dep, _) in project.model.services[&wanted[i]].dependencies() {
            if !wanted.contains(&dep) {
                wanted.push(dep);
            }
        }
        i += 1;
    }
    let order: Vec<String> = project
        .active
        .iter()
        .filter(|s| wanted.contains(s))
        .cloned()
        .collect();
    for svc in &order {
        let sv = &project.model.services[svc];
        let have = run(root, &s(&["images", "-q", &project.image_of(svc)]))?;
        if sv.build.is_some() && (rebuild || have.trim().is_empty()) {
            build(root, project, svc)?;
        }
    }
    for (key, name) in project.networks_to_make() {
        if run(root, &s(&["network", "inspect", &name])).is_err() {
            let mut args = s(&[
                "network",
                "create",
                "--label",
                &format!("{LABEL_PROJECT}={}", project.name),
                "--label",
                &format!("{LABEL_NETWORK}={key}"),
            ]);
            if project.model.networks.get(&key).is_some_and(|d| d.internal) {
                args.push("--internal".into());
            }
            args.push(name.clone());
            run(root, &args)?;
            say("Network", &name, "Created");
        }
    }
    for (key, name) in project.volumes_to_make() {
        if run(root, &s(&["volume", "inspect", &name])).is_err() {
            run(
                root,
                &s(&[
                    "volume",
                    "create",
                    "--label",
                    &format!("{LABEL_PROJECT}={}", project.name),
                    "--label",
                    &format!("{LABEL_VOLUME}={key}"),
                    &name,
                ]),
            )?;
            say("Volume", &name, "Created");
        }
    }
    let existing = members(root, &project.name)?;
    // Made by this `up`: removed again if it fails, so nothing is left half started.
    let mut made: Vec<String> = Vec::new();
    let started = (|| -> Result<()> {
        for svc in &order {
            for (dep, condition) in project.model.services[svc].dependencies() {
                await_condition(root, project, &dep, &condition, limit)?;
            }
            let name = project.container_name(svc);
            let hash = project.config_hash(svc);
            match existing.iter().find(|m| m.name == name) {
                Some(m) if m.hash == hash && m.running => {
                    say("Container", &name, "Running");
                    continue;
                }
                Some(m) if m.hash == hash => {
                    run(root, &s(&["start", &m.id]))?;
                    say("Container", &name, "Started");
                    continue;
                }
                Some(m) => {
                    run(root, &s(&["rm", "-f", &m.id]))?;
                    say("Container", &name, "Recreate");
                }
                None => {}
            }
            run(root, &project.run_args(svc)?)?;
            made.push(name.clone());
            // On all its networks before its program runs, as compose attaches them.
            for (net, aliases) in project.service_networks(svc).into_iter().skip(1) {
                let mut args = s(&["network", "connect"]);
                for a in aliases {
                    args.extend(s(&["--alias", &a]));
                }
                args.extend([net, name.clone()]);
                run(root, &args)?;
            }
            run(root, &s(&["start", &name]))?;
            say("Container", &name, "Started");
        }
        Ok(())
    })();
    if let Err(e) = started {
        for name in made.iter().rev() {
            let _ = run(root, &s(&["rm", "-f", name]));
        }
        return Err(e);
    }
    if detach {
        return Ok(ExitCode::SUCCESS);
    }
    attached(root, project, &order)
}

/// Attached `up`: every service's output prefixed by its container's short name, until they
/// have all ended; SIGINT or SIGTERM stops them (with their stop signals) first.
fn attached(root: &Path, project: &Project, order: &[String]) -> Result<ExitCode> {
    let names: Vec<(String, String)> = order
        .iter()
        .map(|svc| {
            let full = project.container_name(svc);
            let short = full
                .strip_prefix(&format!("{}-", project.name))
                .unwrap_or(&full)
                .to_string();
            (full, short)
        })
        .collect();
    let followers = follow_logs(root, &names)?;
    let mut signals = signal_hook::iterator::Signals::new([libc_signal::INT, libc_signal::TERM])?;
    let handle = signals.handle();
    let stopping = {
        let root = root.to_path_buf();
        let names: Vec<String> = names.iter().map(|(f, _)| f.clone()).rev().collect();
        std::thread::spawn(move || {
            if signals.forever().next().is_some() {
                eprintln!("Gracefully stopping... (press Ctrl+C again to force)");
                for n in &names {
                    let _ = run(&root, &s(&["stop", n]));
                }
                return true;
            }
            false
        })
    };
    for f in followers {
        let _ = f.join();
    }
    handle.close();
    let interrupted = stopping.join().unwrap_or(false);
    for (full, short) in &names {
        if let Ok(code) = run(
            root,
            &s(&[
                "inspect",
                "--type",
                "container",
                "-f",
                "{{.State.ExitCode}}",
                full,
            ]),
        ) {
            println!("{short} exited with code {}", code.trim());
        }
    }
    Ok(if interrupted {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    })
}

mod libc_signal {
    pub const INT: i32 = 2;
    pub const TERM: i32 = 15;
}

/// A `logs -f` for each container, its lines printed as `short  | line` (names padded to
/// the longest, as compose does); the threads end when their containers' runs do.
fn follow_logs(
    root: &Path,
    names: &[(String, String)],
) -> Result<Vec<std::thread::JoinHandle<()>>> {
    let width = names.iter().map(|(_, s)| s.len()).max().unwrap_or(0);
    let mut threads = Vec::new();
    for (full, short) in names {
        let mut child = strata(root, &s(&["logs", "-f", full]))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let prefix = format!("{short:<width$}  | ");
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let prefix = prefix.clone();
            threads.push(std::thread::spawn(move || {
                for line in std::io::BufReader::new(pipe).lines().map_while(|l| l.ok()) {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{prefix}{line}");
                }
            }));
        }
        threads.push(std::thread::spawn(move || {
            let _ = child.wait();
        }));
    }
    Ok(threads)
}

fn down(root: &Path, project: &Project, volumes: bool, orphans: bool) -> Result<()> {
    let mut members = members(root, &project.name)?;
    // Dependents first: the reverse of the order they start in (orphans first of all).
    members.sort_by_key(|m| std::cmp::Reverse(project.active.iter().position(|a| *a == m.service)));
    let known: Vec<String> = project.model.services.keys().cloned().collect();
    for m in &members {
        if !known.contains(&m.service) && !orphans {
            eprintln!(
                "WARN: found orphan container {} (service {:?}): --remove-orphans removes it",
                m.name, m.service
            );
            continue;
        }
        if m.running {
            run(root, &s(&["stop", &m.id]))?;
        }
        let mut args = s(&["rm", "-f"]);
        if volumes {
            args.push("-v".into());
        }
        args.push(m.id.clone());
        run(root, &args)?;
        say("Container", &m.name, "Removed");
    }
    let label = format!("label={LABEL_PROJECT}={}", project.name);
    for net in run(
        root,
        &s(&["network", "ls", "-q", "--no-trunc", "--filter", &label]),
    )?
    .split_whitespace()
    {
        let name = run(root, &s(&["network", "inspect", "-f", "{{.Name}}", net]))?;
        run(root, &s(&["network", "rm", net]))?;
        say("Network", name.trim(), "Removed");
    }
    if volumes {
        for vol in run(root, &s(&["volume", "ls", "-q", "--filter", &label]))?.split_whitespace() {
            run(root, &s(&["volume", "rm", vol]))?;
            say("Volume", vol, "Removed");
        }
    }
    Ok(())
}

fn ps(root: &Path, project: &Project, all: bool, quiet: bool, services: &[String]) -> Result<()> {
    let label = format!("label={LABEL_PROJECT}={}", project.name);
    let mut args = s(&[
        "ps",
        "--no-trunc",
        "--filter",
        &label,
        "--format",
        "{{json .}}",
    ]);
    if all {
        args.push("-a".into());
    }
    let mut rows = Vec::new();
    for line in run(root, &args)?.lines() {
        let v: Value = serde_json::from_str(line)?;
        let labels: BTreeMap<&str, &str> = v["Labels"]
            .as_str()
            .unwrap_or("")
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .collect();
        let service = labels.get(LABEL_SERVICE).copied().unwrap_or("").to_string();
        if !services.is_empty() && !services.contains(&service) {
            continue;
        }
        let text = |k: &str| v[k].as_str().unwrap_or("").to_string();
        if quiet {
            println!("{}", text("ID"));
            continue;
        }
        rows.push(vec![
            text("Names"),
            text("Image"),
            text("Command"),
            service,
            text("RunningFor"),
            text("Status"),
            text("Ports"),
        ]);
    }
    if !quiet {
        print!(
            "{}",
            crate::format::table(
                &["NAME", "IMAGE", "COMMAND", "SERVICE", "CREATED", "STATUS", "PORTS"],
                &rows
            )
        );
    }
    Ok(())
}

fn logs(root: &Path, project: &Project, follow: bool, services: &[String]) -> Result<()> {
    let wanted = selected(project, services)?;
    let names: Vec<(String, String)> = members(root, &project.name)?
        .into_iter()
        .filter(|m| wanted.contains(&m.service))
        .map(|m| {
            let short = m
                .name
                .strip_prefix(&format!("{}-", project.name))
                .unwrap_or(&m.name)
                .to_string();
            (m.name, short)
        })
        .collect();
    if follow {
        for t in follow_logs(root, &names)? {
            let _ = t.join();
        }
        return Ok(());
    }
    let width = names.iter().map(|(_, s)| s.len()).max().unwrap_or(0);
    for (full, short) in &names {
        let out = strata(root, &s(&["logs", full])).output()?;
        for line in String::from_utf8_lossy(&out.stdout)
            .lines()
            .chain(String::from_utf8_lossy(&out.stderr).lines())
        {
            println!("{short:<width$}  | {line}");
        }
    }
    Ok(())
}

/// `stop`, `start` or `restart` each of the project's containers of these services.
fn each_member(root: &Path, project: &Project, services: &[String], verb: &str) -> Result<()> {
    let wanted = selected(project, services)?;
    let mut members: Vec<_> = members(root, &project.name)?
        .into_iter()
        .filter(|m| wanted.contains(&m.service))
        .collect();
    // Started in dependency order, stopped in reverse.
    members.sort_by_key(|m| project.active.iter().position(|a| *a == m.service));
    if verb == "stop" {
        members.reverse();
    }
    for m in &members {
        run(root, &s(&[verb, &m.id]))?;
        say(
            "Container",
            &m.name,
            match verb {
                "stop" => "Stopped",
                "start" => "Started",
                _ => "Restarted",
            },
        );
    }
    if members.is_empty() && !wanted.is_empty() {
        return Err(anyhow!(
            "no container of the project to {verb}: run compose up first"
        ));
    }
    Ok(())
}
