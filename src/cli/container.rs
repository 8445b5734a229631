//! `strata container …`: docker's management group, the top-level commands under their
//! group's names with the same flags, and `prune`, which only the group has.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use strata_runtime::Store;

use super::Command as Top;

#[derive(clap::Subcommand)]
pub enum Command {
    /// List containers
    #[command(visible_aliases = ["list", "ps"])]
    Ls(super::ps::Args),
    /// Create and run a new container from an image
    Run(super::run::Args),
    /// Create a new container
    Create(super::create::Args),
    /// Start one or more stopped containers
    Start(super::start::Args),
    /// Stop one or more running containers
    Stop(super::stop::Args),
    /// Restart one or more containers
    Restart(super::stop::Args),
    /// Kill one or more running containers
    Kill(super::kill::Args),
    /// Block until one or more containers stop, then print their exit codes
    Wait(super::wait::Args),
    /// Fetch the logs of a container
    Logs(super::logs::Args),
    /// Attach to a running container's output
    Attach(super::attach::Args),
    /// Execute a command in a running container
    Exec(super::exec::Args),
    /// Pause all processes within one or more containers
    Pause(super::pause::Args),
    /// Unpause all processes within one or more containers
    Unpause(super::pause::Args),
    /// Display the running processes of a container
    Top(super::top::Args),
    /// Display a live stream of container(s) resource usage statistics
    Stats(super::stats::Args),
    /// Remove one or more containers
    #[command(visible_alias = "remove")]
    Rm(super::rm::Args),
    /// Display detailed information on one or more containers
    Inspect(super::inspect::Args),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(super::diff::Args),
    /// Create a new image from a container's changes
    Commit(super::commit::Args),
    /// Copy files/folders between a container and the local filesystem
    Cp(super::cp::Args),
    /// Remove all stopped containers
    Prune(super::prune::Args),
    /// Rename a container
    Rename(super::rename::Args),
}

impl Command {
    /// Run as the top-level command it is (`prune` as itself).
    pub fn run(self, root: Option<PathBuf>, store: impl Fn() -> Result<Store>) -> Result<ExitCode> {
        let command = match self {
            Command::Prune(a) => return a.run(&store()?).map(|()| ExitCode::SUCCESS),
            Command::Ls(a) => Top::Ps(a),
            Command::Run(a) => Top::Run(a),
            Command::Create(a) => Top::Create(a),
            Command::Start(a) => Top::Start(a),
            Command::Stop(a) => Top::Stop(a),
            Command::Restart(a) => Top::Restart(a),
            Command::Kill(a) => Top::Kill(a),
            Command::Wait(a) => Top::Wait(a),
            Command::Logs(a) => Top::Logs(a),
            Command::Attach(a) => Top::Attach(a),
            Command::Exec(a) => Top::Exec(a),
            Command::Pause(a) => Top::Pause(a),
            Command::Unpause(a) => Top::Unpause(a),
            Command::Top(a) => Top::Top(a),
            Command::Stats(a) => Top::Stats(a),
            Command::Rm(a) => Top::Rm(a),
            Command::Inspect(mut a) => {
                a.kind = Some("container".into());
                Top::Inspect(a)
            }
            Command::Diff(a) => Top::Diff(a),
            Command::Commit(a) => Top::Commit(a),
            Command::Cp(a) => Top::Cp(a),
            Command::Rename(a) => Top::Rename(a),
        };
        super::Cli { root, command }.run()
    }
}
