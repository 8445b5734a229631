//! Credentials: docker's `config.json` (`$DOCKER_CONFIG`, or `~/.docker/config.json`;
//! `REGISTRY_AUTH_FILE` as podman), read for every session and written by `login`/`logout`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use crate::error::{Error, Result};

/// The registry host that `reference` names, as docker's config keys it.
fn auth_key(host: &str) -> String {
    if host == "docker.io" {
        "https://index.docker.io/v1/".to_string()
    } else {
        host.to_string()
    }
}

/// docker's `config.json`: where credentials live.
pub fn auth_file() -> PathBuf {
    if let Some(p) = std::env::var_os("REGISTRY_AUTH_FILE") {
        return PathBuf::from(p);
    }
    if let Some(d) = std::env::var_os("DOCKER_CONFIG") {
        return PathBuf::from(d).join("config.json");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".docker/config.json")
}

fn read_auth_file(path: &Path) -> Result<serde_json::Value> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| Error::InvalidDocument(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(serde_json::json!({})),
        Err(e) => Err(Error::IoPath {
            path: path.into(),
            source: e,
        }),
    }
}

/// Stored credentials for `host`, if any.
pub fn credentials(host: &str) -> Result<Option<(String, String)>> {
    let config = read_auth_file(&auth_file())?;
    let Some(auth) = config["auths"][auth_key(host)]["auth"].as_str() else {
        return Ok(None);
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth)
        .map_err(|_| {
            Error::InvalidDocument(format!("{}: bad auth for {host}", auth_file().display()))
        })?;
    let text = String::from_utf8_lossy(&decoded).into_owned();
    Ok(text
        .split_once(':')
        .map(|(u, p)| (u.to_string(), p.to_string())))
}

/// `user:password` in base64: docker's `auth` field, and basic auth's credentials.
pub(super) fn encoded_login(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

/// Save (or with `None`, remove) credentials for `host`; true when something changed.
pub fn store_credentials(host: &str, creds: Option<(&str, &str)>) -> Result<bool> {
    let path = auth_file();
    let mut config = read_auth_file(&path)?;
    if !config["auths"].is_object() {
        config["auths"] = serde_json::json!({});
    }
    let auths = config["auths"].as_object_mut().expect("object");
    let changed = match creds {
        Some((u, p)) => {
            auths.insert(
                auth_key(host),
                serde_json::json!({ "auth": encoded_login(u, p) }),
            );
            true
        }
        None => auths.remove(&auth_key(host)).is_some(),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::IoPath {
            path: dir.into(),
            source: e,
        })?;
    }
    let tmp = path.with_extension(crate::content::temp_name("tmp"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode_private()
        .open(&tmp)
        .map_err(|e| Error::IoPath {
            path: tmp.clone(),
            source: e,
        })?;
    f.write_all(&serde_json::to_vec_pretty(&config).expect("serialize"))
        .map_err(|e| Error::IoPath {
            path: tmp.clone(),
            source: e,
        })?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::IoPath {
        path: path.clone(),
        source: e,
    })?;
    Ok(changed)
}

trait ModePrivate {
    fn mode_private(&mut self) -> &mut Self;
}

impl ModePrivate for std::fs::OpenOptions {
    /// Credentials are readable by their owner only.
    fn mode_private(&mut self) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::mode(self, 0o600)
    }
}

/// Who is logged in where, for `login` without arguments.
pub fn logged_in() -> Result<BTreeMap<String, String>> {
    let config = read_auth_file(&auth_file())?;
    let mut out = BTreeMap::new();
    if let Some(auths) = config["auths"].as_object() {
        for (host, _) in auths {
            if let Ok(Some((u, _))) = credentials(if host == "https://index.docker.io/v1/" {
                "docker.io"
            } else {
                host
            }) {
                out.insert(host.clone(), u);
            }
        }
    }
    Ok(out)
}
