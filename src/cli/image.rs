//! `strata image …`: docker's management group, the top-level image commands under their
//! group's names with the same flags.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use super::Command as Top;

#[derive(clap::Subcommand)]
pub enum Command {
    /// List images
    #[command(visible_aliases = ["list"])]
    Ls(super::images::Args),
    /// Remove one or more images
    #[command(visible_aliases = ["rmi", "remove"])]
    Rm(super::rmi::Args),
    /// Display detailed information on one or more images
    Inspect(super::inspect::Args),
    /// Show the history of an image
    History(super::history::Args),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(super::tag::Args),
    /// Save one or more images to a tar archive (OCI layout and docker-archive in one)
    Save(super::save::Args),
    /// Load images from a tar archive (OCI layout or docker-archive) or STDIN
    Load(super::load::Args),
    /// Create an image from a rootfs tarball
    Import(super::import::Args),
    /// Download an image from a registry
    Pull(super::pull::Args),
    /// Upload an image to a registry
    Push(super::push::Args),
    /// Build an image from a Dockerfile
    Build(super::build::Args),
    /// Remove unused data: content no image refers to (with -a, every image too), as
    /// `system prune`
    Prune(super::system::PruneArgs),
}

impl Command {
    /// Run as the top-level command it is.
    pub fn run(self, root: Option<PathBuf>) -> Result<ExitCode> {
        let command = match self {
            Command::Ls(a) => Top::Images(a),
            Command::Rm(a) => Top::Rmi(a),
            Command::Inspect(mut a) => {
                a.kind = Some("image".into());
                Top::Inspect(a)
            }
            Command::History(a) => Top::History(a),
            Command::Tag(a) => Top::Tag(a),
            Command::Save(a) => Top::Save(a),
            Command::Load(a) => Top::Load(a),
            Command::Import(a) => Top::Import(a),
            Command::Pull(a) => Top::Pull(a),
            Command::Push(a) => Top::Push(a),
            Command::Build(a) => Top::Build(a),
            Command::Prune(a) => Top::System(super::system::Command::Prune(a)),
        };
        super::Cli { root, command }.run()
    }
}
