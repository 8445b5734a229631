//! OCI image documents: descriptors, manifests, indexes and the image config.
//!
//! These are our own serde types rather than `oci-spec`'s because the image config must
//! carry Docker's extensions (Healthcheck, OnBuild, Shell, …) and keep fields we do not
//! know, and because parsing must be strict about media types (CVE-2021-41190).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, Result};

pub const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const MEDIA_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// The config media type of an OCI Wasm artifact (the CNCF wasm OCI format).
pub const MEDIA_WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";

/// The annotation that names a tag in an OCI layout's `index.json`.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Largest manifest, index or config we accept (security: bounded resources).
pub const MAX_DOCUMENT_SIZE: u64 = 8 << 20;
/// Most layers an image may have (overlayfs stacks at most ~500 lowers anyway).
pub const MAX_LAYERS: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Self {
        Descriptor {
            media_type: media_type.to_string(),
            digest,
            size,
            platform: None,
            urls: None,
            annotations: BTreeMap::new(),
            artifact_type: None,
        }
    }

    pub fn ref_name(&self) -> Option<&str> {
        self.annotations
            .get(ANNOTATION_REF_NAME)
            .map(String::as_str)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    #[serde(
        rename = "os.features",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_features: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// The platform of this machine, in Go's names (`linux/amd64`).
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Platform {
            architecture: arch.into(),
            os: "linux".into(),
            ..Default::default()
        }
    }

    /// Parse `os/arch[/variant]` as docker's `--platform` does.
    pub fn parse(s: &str) -> Result<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        let bad = || {
            Error::InvalidArgument(format!(
                "invalid platform {s:?}: expected os/arch[/variant]"
            ))
        };
        if parts.len() < 2 || parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
            return Err(bad());
        }
        if !parts.iter().all(|p| {
            p.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        }) {
            return Err(bad());
        }
        Ok(Platform {
            os: parts[0].to_ascii_lowercase(),
            architecture: parts[1].to_ascii_lowercase(),
            variant: parts.get(2).map(|v| v.to_string()),
            ..Default::default()
        })
    }

    /// Whether a Wasm runtime should run images of this platform.
    pub fn is_wasm(&self) -> bool {
        self.architecture == "wasm" || matches!(self.os.as_str(), "wasi" | "wasip1" | "wasip2")
    }

    pub fn matches(&self, other: &Platform) -> bool {
        self.os == other.os
            && self.architecture == other.architecture
            && (self.variant.is_none() || other.variant.is_none() || self.variant == other.variant)
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Manifest {
    /// What pull and load require of an image manifest before they take anything it names,
    /// whatever the store already holds: a config descriptor that is an image config (OCI,
    /// docker or Wasm; not a layer or an artifact, as containers/image and umoci require)
    /// and layers of media types we can unpack.
    pub fn check_image(&self) -> Result<()> {
        let config = &self.config.media_type;
        if ![MEDIA_OCI_CONFIG, MEDIA_DOCKER_CONFIG, MEDIA_WASM_CONFIG].contains(&config.as_str()) {
            return Err(Error::InvalidDocument(format!(
                "config {}: media type {config:?} is not an image config",
                self.config.digest
            )));
        }
        if self.config.size > MAX_DOCUMENT_SIZE {
            return Err(Error::InvalidDocument(format!(
                "config {}: larger than {MAX_DOCUMENT_SIZE} bytes",
                self.config.digest
            )));
        }
        for layer in &self.layers {
            crate::compression::Compression::of_layer_media_type(&layer.media_type)
                .map_err(|e| Error::Unsupported(format!("layer {}: {e}", layer.digest)))?;
        }
        Ok(())
    }

    /// The check of `check_image` that needs the config: one diff_id per layer.
    pub fn check_config(&self, config: &ImageConfig) -> Result<()> {
        if config.rootfs.diff_ids.len() != self.layers.len() {
            return Err(Error::InvalidDocument(format!(
                "config {}: {} diff_ids for {} layers",
                self.config.digest,
                config.rootfs.diff_ids.len(),
                self.layers.len()
            )));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Index {
    pub fn empty() -> Index {
        Index {
            schema_version: 2,
            media_type: Some(MEDIA_OCI_INDEX.into()),
            manifests: Vec::new(),
            annotations: BTreeMap::new(),
        }
    }
}

/// A parsed manifest-like document, once its media type has been checked.
#[derive(Debug, Clone)]
pub enum Document {
    Manifest(Manifest),
    Index(Index),
}

/// Parse a manifest or index whose descriptor says `media_type`. The document's own
/// mediaType must agree with the descriptor, and a document that has both `layers` and
/// `manifests` is refused (it could be read as either: CVE-2021-41190).
pub fn parse_document(media_type: &str, bytes: &[u8]) -> Result<Document> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| Error::InvalidDocument(format!("{media_type}: {e}")))?;
    let obj = value
        .as_object()
        .ok_or_else(|| Error::InvalidDocument(format!("{media_type}: not a JSON object")))?;
    if obj.contains_key("layers") && obj.contains_key("manifests") {
        return Err(Error::InvalidDocument(
            "ambiguous document: has both \"layers\" and \"manifests\"".into(),
        ));
    }
    if let Some(inner) = obj.get("mediaType").and_then(|m| m.as_str()) {
        if inner != media_type {
            return Err(Error::InvalidDocument(format!(
                "document mediaType {inner:?} does not match its descriptor's {media_type:?}"
            )));
        }
    }
    let bad = |e: serde_json::Error| Error::InvalidDocument(format!("{media_type}: {e}"));
    match media_type {
        MEDIA_OCI_MANIFEST | MEDIA_DOCKER_MANIFEST => {
            let m: Manifest = serde_json::from_slice(bytes).map_err(bad)?;
            if m.schema_version != 2 {
                return Err(Error::InvalidDocument(format!(
                    "unsupported schemaVersion {}",
                    m.schema_version
                )));
            }
            if m.layers.len() > MAX_LAYERS {
                return Err(Error::InvalidDocument(format!(
                    "too many layers ({})",
                    m.layers.len()
                )));
            }
            Ok(Document::Manifest(m))
        }
        MEDIA_OCI_INDEX | MEDIA_DOCKER_LIST => {
            let i: Index = serde_json::from_slice(bytes).map_err(bad)?;
            if i.schema_version != 2 {
                return Err(Error::InvalidDocument(format!(
                    "unsupported schemaVersion {}",
                    i.schema_version
                )));
            }
            Ok(Document::Index(i))
        }
        other => Err(Error::InvalidDocument(format!(
            "unsupported manifest media type {other:?}"
        ))),
    }
}

/// The image configuration (OCI image-spec config, with Docker's extensions). Fields we do
/// not model are kept in `extra` so a config survives a round trip unchanged.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ContainerConfig>,
    pub rootfs: RootFs,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl ImageConfig {
    pub fn platform(&self) -> Platform {
        Platform {
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            variant: self.variant.clone(),
            ..Default::default()
        }
    }

    pub fn parse(bytes: &[u8]) -> Result<ImageConfig> {
        let c: ImageConfig = serde_json::from_slice(bytes)
            .map_err(|e| Error::InvalidDocument(format!("image config: {e}")))?;
        if c.rootfs.kind != "layers" {
            return Err(Error::InvalidDocument(format!(
                "image config: rootfs type {:?}",
                c.rootfs.kind
            )));
        }
        if c.rootfs.diff_ids.len() > MAX_LAYERS {
            return Err(Error::InvalidDocument(
                "image config: too many layers".into(),
            ));
        }
        Ok(c)
    }

    pub fn container_config(&mut self) -> &mut ContainerConfig {
        self.config.get_or_insert_with(ContainerConfig::default)
    }
}

/// The runtime defaults an image carries (`config` in the image config).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<serde_json::Value>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl ContainerConfig {
    /// Set `KEY=value` in Env, replacing an earlier value of the same key.
    pub fn set_env(&mut self, key: &str, value: &str) {
        let env = self.env.get_or_insert_with(Vec::new);
        let entry = format!("{key}={value}");
        match env
            .iter_mut()
            .find(|e| e.split_once('=').map(|(k, _)| k) == Some(key))
        {
            Some(e) => *e = entry,
            None => env.push(entry),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<Digest>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ambiguous_documents_are_refused() {
        let doc = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"a","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":1},"layers":[],"manifests":[]}"#;
        assert!(parse_document(MEDIA_OCI_MANIFEST, doc).is_err());
    }

    #[test]
    fn media_type_must_match_descriptor() {
        let doc = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        assert!(parse_document(MEDIA_OCI_MANIFEST, doc).is_err());
        assert!(parse_document(MEDIA_OCI_INDEX, doc).is_ok());
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let doc = br#"{"schemaVersion":2,"schemaVersion":2,"manifests":[]}"#;
        assert!(parse_document(MEDIA_OCI_INDEX, doc).is_err());
    }

    #[test]
    fn config_round_trips_unknown_fields() {
        let raw = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{"Env":["A=1"],"Healthcheck":{"Test":["NONE"]},"X":1},"moby.buildkit":"y"}"#;
        let c = ImageConfig::parse(raw).unwrap();
        let out = serde_json::to_value(&c).unwrap();
        assert_eq!(out["moby.buildkit"], "y");
        assert_eq!(out["config"]["X"], 1);
        assert_eq!(out["config"]["Healthcheck"]["Test"][0], "NONE");
    }

    #[test]
    fn only_image_configs_and_known_layers_pass_check_image() {
        let zero = format!("sha256:{}", "0".repeat(64))
            .parse::<Digest>()
            .unwrap();
        let manifest = |config: &str, layer: &str| Manifest {
            schema_version: 2,
            media_type: Some(MEDIA_OCI_MANIFEST.into()),
            artifact_type: None,
            config: Descriptor::new(config, zero.clone(), 2),
            layers: vec![Descriptor::new(layer, zero.clone(), 2)],
            subject: None,
            annotations: BTreeMap::new(),
        };
        let tar = crate::compression::MEDIA_LAYER_TAR;
        for config in [MEDIA_OCI_CONFIG, MEDIA_DOCKER_CONFIG, MEDIA_WASM_CONFIG] {
            assert!(manifest(config, tar).check_image().is_ok(), "{config}");
        }
        for config in [tar, "application/vnd.oci.empty.v1+json", ""] {
            let err = manifest(config, tar).check_image().unwrap_err().to_string();
            assert!(err.contains("is not an image config"), "{err}");
        }
        let err = manifest(MEDIA_OCI_CONFIG, "text/plain")
            .check_image()
            .unwrap_err()
            .to_string();
        assert!(err.contains("unsupported layer media type"), "{err}");
        let mut huge = manifest(MEDIA_OCI_CONFIG, tar);
        huge.config.size = u64::MAX;
        assert!(huge.check_image().is_err());
    }

    #[test]
    fn platforms_parse() {
        let p = Platform::parse("wasi/wasm").unwrap();
        assert!(p.is_wasm());
        assert!(Platform::parse("linux").is_err());
        assert!(!Platform::host().is_wasm());
    }
}
