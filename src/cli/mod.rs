//! Command-line definitions. Flags follow docker's names; each command's body is in its
//! own file and only turns flags into library calls.

mod attach;
pub(crate) mod build;
mod commit;
mod compose;
mod container;
pub(crate) mod cp;
mod create;
mod diff;
mod dockerfile;
pub(crate) mod exec;
pub(crate) mod history;
mod image;
pub(crate) mod images;
mod import;
pub(crate) mod info;
pub(crate) mod inspect;
pub(crate) mod kill;
mod load;
mod login;
pub(crate) mod logs;
pub(crate) mod monitor;
pub(crate) mod network;
pub(crate) mod pause;
mod port;
pub(crate) mod prune;
pub(crate) mod ps;
pub(crate) mod pull;
pub(crate) mod push;
mod rename;
pub(crate) mod rm;
pub(crate) mod rmi;
pub(crate) mod run;
pub(crate) mod save;
pub(crate) mod start;
mod stats;
pub(crate) mod stop;
mod system;
pub(crate) mod tag;
pub(crate) mod top;
pub(crate) mod version;
pub(crate) mod volume;
mod wait;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use strata_runtime::Store;

#[derive(Parser)]
#[command(
    name = "strata",
    version,
    about = "Build, store and run OCI images: native containers and Wasm"
)]
pub struct Cli {
    /// Store root (default: /var/lib/strata for root, $XDG_DATA_HOME/strata otherwise)
    #[arg(long, global = true, env = "STRATA_ROOT", value_name = "DIR")]
    root: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

/// Each subcommand's flags are built only when it is the one invoked (clap's `defer`): the
/// whole tree costs a short `run` more than a tenth of a millisecond.
#[derive(Subcommand)]
#[command(defer = true)]
enum Command {
    /// Build an image from a Dockerfile
    Build(build::Args),
    /// Create and run a new container from an image
    Run(run::Args),
    /// Create a new container
    Create(create::Args),
    /// Start one or more stopped containers
    Start(start::Args),
    /// Stop one or more running containers
    Stop(stop::Args),
    /// Restart one or more containers
    Restart(stop::Args),
    /// Kill one or more running containers
    Kill(kill::Args),
    /// Block until one or more containers stop, then print their exit codes
    Wait(wait::Args),
    /// Fetch the logs of a container
    Logs(logs::Args),
    /// Execute a command in a running container
    Exec(exec::Args),
    /// Attach to a running container's output
    Attach(attach::Args),
    /// Pause all processes within one or more containers
    Pause(pause::Args),
    /// Unpause all processes within one or more containers
    Unpause(pause::Args),
    /// List port mappings or a specific mapping for the container
    Port(port::Args),
    /// Display the running processes of a container
    Top(top::Args),
    /// Display a live stream of container(s) resource usage statistics
    Stats(stats::Args),
    /// A detached container's monitor (started by `run -d` and `start`)
    #[command(name = "__monitor", hide = true)]
    Monitor(monitor::Args),
    /// List containers
    Ps(ps::Args),
    /// Remove one or more containers
    Rm(rm::Args),
    /// Rename a container
    Rename(rename::Args),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(diff::Args),
    /// Create a new image from a container's changes
    Commit(commit::Args),
    /// Copy files/folders between a container and the local filesystem
    Cp(cp::Args),
    /// Download an image from a registry
    Pull(pull::Args),
    /// Upload an image to a registry
    Push(push::Args),
    /// Log in to a registry
    Login(login::LoginArgs),
    /// Log out from a registry
    Logout(login::LogoutArgs),
    /// Create an image from a rootfs tarball
    Import(import::Args),
    /// List images
    Images(images::Args),
    /// Show low-level information on images, as JSON
    Inspect(inspect::Args),
    /// Show the history of an image
    History(history::Args),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(tag::Args),
    /// Remove one or more images
    Rmi(rmi::Args),
    /// Save one or more images to a tar archive (OCI layout and docker-archive in one)
    Save(save::Args),
    /// Load images from a tar archive (OCI layout or docker-archive) or STDIN
    Load(load::Args),
    /// Manage containers
    #[command(subcommand)]
    Container(container::Command),
    /// Manage images
    #[command(subcommand)]
    Image(image::Command),
    /// Manage networks
    #[command(subcommand)]
    Network(network::Command),
    /// Manage volumes
    #[command(subcommand)]
    Volume(volume::Command),
    /// Define and run stacks of containers (native and Wasm) from a compose file
    Compose(compose::Args),
    /// Display system-wide information
    Info(info::Args),
    /// Show the Strata version information
    Version(version::Args),
    /// Manage the store
    #[command(subcommand)]
    System(system::Command),
    /// Dockerfile tools
    #[command(subcommand)]
    Dockerfile(dockerfile::Command),
}

impl Cli {
    pub fn run(self) -> Result<ExitCode> {
        let root = self
            .root
            .clone()
            .unwrap_or_else(strata_runtime::store::default_root);
        let open = || Store::open(&root).with_context(|| format!("open store {}", root.display()));
        match self.command {
            Command::Run(a) => return Ok(a.run(&open()?)),
            Command::Create(a) => return Ok(a.run(&open()?)),
            Command::Start(a) => return Ok(a.run(&open()?)),
            Command::Stop(a) => return a.run(&open()?, false),
            Command::Restart(a) => return a.run(&open()?, true),
            Command::Kill(a) => return a.run(&open()?),
            Command::Wait(a) => return a.run(&open()?),
            Command::Logs(a) => a.run(&open()?),
            Command::Exec(a) => return Ok(a.run(&open()?)),
            Command::Attach(a) => return Ok(a.run(&open()?)),
            Command::Pause(a) => return a.run(&open()?, true),
            Command::Unpause(a) => return a.run(&open()?, false),
            Command::Port(a) => a.run(&open()?),
            Command::Top(a) => return a.run(&open()?),
            Command::Stats(a) => a.run(&open()?),
            Command::Monitor(a) => return Ok(a.run(&open()?)),
            Command::Build(a) => a.run(&open()?),
            Command::Ps(a) => a.run(&open()?),
            Command::Rm(a) => a.run(&open()?),
            Command::Rename(a) => return Ok(a.run(&open()?)),
            Command::Container(c) => return c.run(self.root, open),
            Command::Image(c) => return c.run(self.root),
            Command::Network(c) => return c.run(&open()?),
            Command::Volume(c) => return c.run(&open()?),
            Command::Compose(a) => return Ok(a.run(&open()?)),
            Command::Info(a) => a.run(&open()?),
            Command::Version(a) => a.run(),
            Command::Diff(a) => a.run(&open()?),
            Command::Commit(a) => a.run(&open()?),
            Command::Cp(a) => a.run(&open()?),
            Command::Pull(a) => a.run(&open()?),
            Command::Push(a) => a.run(&open()?),
            Command::Login(a) => a.run(),
            Command::Dockerfile(c) => c.run(),
            Command::Logout(a) => a.run(),
            Command::Import(a) => a.run(&open()?),
            Command::Images(a) => a.run(&open()?),
            Command::Inspect(a) => a.run(&open()?),
            Command::History(a) => a.run(&open()?),
            Command::Tag(a) => a.run(&open()?),
            Command::Rmi(a) => a.run(&open()?),
            Command::Save(a) => a.run(&open()?),
            Command::Load(a) => a.run(&open()?),
            Command::System(c) => c.run(&open()?),
        }?;
        Ok(ExitCode::SUCCESS)
    }
}

/// Docker's prune prompt: `WARNING! {what}` and a yes/no question; true for yes.
fn confirm(what: &str) -> Result<bool> {
    use std::io::{BufRead, Write};
    print!("WARNING! {what}\nAre you sure you want to continue? [y/N] ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// Do `f` to each container named, as docker's commands that take several: the line it
/// returns printed, or its error; exit 1 if any failed.
fn each(keys: &[String], mut f: impl FnMut(&str) -> Result<String>) -> ExitCode {
    let mut failed = false;
    for key in keys {
        match f(key) {
            Ok(line) => println!("{line}"),
            Err(e) => {
                let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
                eprintln!("Error: {}", crate::dedup_chain(&chain));
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Total unpacked size of an image's layers, as docker's SIZE column shows it.
pub fn image_size(store: &Store, image: &strata_runtime::store::Image) -> u64 {
    image
        .config
        .rootfs
        .diff_ids
        .iter()
        .filter_map(|d| store.layer_size(d))
        .sum()
}
