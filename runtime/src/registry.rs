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

mod credentials;
mod http;
mod session;

pub use credentials::{auth_file, credentials, logged_in, store_credentials};
pub use session::Session;

use std::path::PathBuf;

use crate::image::Platform;

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
