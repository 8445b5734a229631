//! Pull and push over the OCI distribution protocol, on `ureq` (the one HTTP client Strata
//! has). What is here: the token and basic auth challenges, platform selection, strict
//! documents, every blob verified while it streams into the store (nothing unverified enters
//! it), retries with backoff, layers that the store already has are never fetched, and on
//! push only what the registry lacks is sent (HEAD, then cross-repository mount, then one
//! streamed PUT per blob).
//!
//! Credentials are read from and written to docker's `config.json` (`$DOCKER_CONFIG`, or
//! `~/.docker/config.json`; `REGISTRY_AUTH_FILE` as podman). Plain HTTP is used only for
//! registries marked insecure (`--tls-verify=false`, or `STRATA_INSECURE_REGISTRIES`) and,
//! as docker does, for loopback registries that do not answer TLS.
//!
//! By concern: `credentials.rs` (docker's `config.json`: login, logout, lookup), `http.rs`
//! (the agent and its TLS trust, failures, retries, answering auth challenges with tokens)
//! and `session.rs` (the pull and push protocol on one registry).
//!
//! Progress is reported, never printed: a pull or push calls back with an [`Event`] per
//! change (docker's per-layer statuses), and the caller decides what to show.

mod credentials;
mod http;
mod session;

pub use credentials::{auth_file, credentials, logged_in, store_credentials};
pub use session::{Pulled, Session};

use std::fmt;
use std::path::PathBuf;

use crate::digest::Digest;
use crate::image::Platform;

/// What a pull or push reports as it goes, one event per change, in docker's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The reference resolved to this manifest (or index) digest; its layers follow
    /// (docker's `TAG: Pulling from REPO`).
    Resolved(Digest),
    /// A layer's status changed. Docker names a layer by its blob digest in a pull and by
    /// its diff_id in a push; `id.short()` is the 12 hex digits it prints.
    Layer { id: Digest, status: Status },
    /// `done` of `total` bytes of a layer moved (`status` is `Downloading` or `Pushing`):
    /// for a progress bar; docker's plain output shows none of these.
    Bytes {
        id: Digest,
        status: Status,
        done: u64,
        total: u64,
    },
}

/// A layer's status, displayed as docker words it (moby's `distribution/xfer` and
/// `distribution/{pull,push}_v2.go`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    AlreadyExists,
    PullingFsLayer,
    Waiting,
    Downloading,
    VerifyingChecksum,
    DownloadComplete,
    PullComplete,
    Preparing,
    Pushing,
    Pushed,
    LayerAlreadyExists,
    /// Mounted from this repository (its path) of the same registry.
    MountedFrom(String),
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::AlreadyExists => "Already exists",
            Status::PullingFsLayer => "Pulling fs layer",
            Status::Waiting => "Waiting",
            Status::Downloading => "Downloading",
            Status::VerifyingChecksum => "Verifying Checksum",
            Status::DownloadComplete => "Download complete",
            Status::PullComplete => "Pull complete",
            Status::Preparing => "Preparing",
            Status::Pushing => "Pushing",
            Status::Pushed => "Pushed",
            Status::LayerAlreadyExists => "Layer already exists",
            Status::MountedFrom(repo) => return write!(f, "Mounted from {repo}"),
        })
    }
}

/// Where a pull or push sends its events (`&|_| {}` to ignore them). Layers move on
/// several threads, hence `Sync`.
pub type Report<'a> = &'a (dyn Fn(Event) + Sync);

#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Verify TLS; false also allows plain HTTP (podman's `--tls-verify=false`).
    pub tls_verify: bool,
    /// A directory of CA certificates (`*.crt`) to trust, as `--cert-dir`.
    pub cert_dir: Option<PathBuf>,
    /// The platform to pull from a multi-platform image (default: this host's).
    pub platform: Option<Platform>,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            tls_verify: true,
            cert_dir: None,
            platform: None,
        }
    }
}
