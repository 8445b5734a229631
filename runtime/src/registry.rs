//! Pull and push over the OCI distribution protocol, with `oci-client` doing the HTTP
//! (token and basic auth challenges, uploads). What we add: platform selection, strict
//! documents, every blob verified while it streams into the store (nothing unverified
//! enters it), retries with backoff, layers that the store already has are never fetched,
//! and on push only what the registry lacks is sent (HEAD, then cross-repository mount).
//!
//! Credentials are read from and written to docker's `config.json` (`$DOCKER_CONFIG`, or
//! `~/.docker/config.json`; `REGISTRY_AUTH_FILE` as podman). Plain HTTP is used only for
//! registries marked insecure (`--tls-verify=false`, or `STRATA_INSECURE_REGISTRIES`) and,
//! as docker does, for loopback registries that do not answer TLS.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use futures_util::{StreamExt, TryStreamExt};
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, RegistryOperation};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::{
    parse_document, Descriptor, Document, Platform, MAX_DOCUMENT_SIZE, MEDIA_DOCKER_LIST,
    MEDIA_DOCKER_MANIFEST, MEDIA_OCI_INDEX, MEDIA_OCI_MANIFEST,
};
use crate::progress::Progress;
use crate::reference::Reference;
use crate::store::{Image, Store};

const ACCEPTED: &[&str] = &[
    MEDIA_OCI_MANIFEST,
    MEDIA_OCI_INDEX,
    MEDIA_DOCKER_MANIFEST,
    MEDIA_DOCKER_LIST,
];
const ATTEMPTS: u32 = 5;
const PARALLEL_LAYERS: usize = 3;

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

fn registry_error(what: &str, e: OciDistributionError) -> Error {
    Error::Registry(format!("{what}: {}", with_causes(&e)))
}

/// An error and its causes on one line (reqwest hides the TLS reason in its source).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        cause = c.source();
    }
    text
}

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
            let auth = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            auths.insert(auth_key(host), serde_json::json!({ "auth": auth }));
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

fn is_loopback(host: &str) -> bool {
    let name = host.rsplit_once(':').map_or(host, |(h, p)| {
        if p.chars().all(|c| c.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    matches!(name, "localhost" | "127.0.0.1" | "[::1]") || name.starts_with("127.")
}

fn insecure_by_config(host: &str) -> bool {
    std::env::var("STRATA_INSECURE_REGISTRIES")
        .is_ok_and(|v| v.split(',').any(|h| h.trim() == host))
}

/// Whether the registry answers `client` at the HTTP level (any status but a transport
/// failure or a 400, which is how an HTTPS server answers plain HTTP).
fn answers(runtime: &tokio::runtime::Runtime, host: &str, client: &Client) -> bool {
    let probe =
        oci_client::Reference::with_tag(host.to_string(), "strata/probe".into(), "latest".into());
    let result =
        runtime.block_on(client.pull_manifest_raw(&probe, &RegistryAuth::Anonymous, ACCEPTED));
    !matches!(
        result,
        Err(OciDistributionError::RequestError(_))
            | Err(OciDistributionError::ServerError { code: 400, .. })
    )
}

/// A connection to one registry host.
pub struct Session {
    client: Client,
    auth: RegistryAuth,
    runtime: tokio::runtime::Runtime,
    host: String,
}

impl Session {
    /// Connect to `host` over HTTPS. Plain HTTP is tried only for registries marked insecure
    /// (`--tls-verify=false`, `STRATA_INSECURE_REGISTRIES`) or on loopback, and only when the
    /// registry does not speak TLS at all (an HTTPS server answering plain HTTP with 400 keeps
    /// us on HTTPS, so a certificate problem is reported, not bypassed).
    pub fn open(host: &str, opts: &RegistryOptions) -> Result<Session> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .map_err(|e| Error::io("start the registry client", e))?;
        let auth = match credentials(host)? {
            Some((u, p)) => RegistryAuth::Basic(u, p),
            None => RegistryAuth::Anonymous,
        };
        // Probes use their own clients: a client keeps the first credentials it is given.
        let may_use_http = !opts.tls_verify || insecure_by_config(host) || is_loopback(host);
        let http = may_use_http
            && !answers(&runtime, host, &Client::new(client_config(opts, false)?))
            && answers(&runtime, host, &Client::new(client_config(opts, true)?));
        Ok(Session {
            client: Client::new(client_config(opts, http)?),
            auth,
            runtime,
            host: host.to_string(),
        })
    }

    /// Answer the registry's auth challenge for `r` (bearer token or basic credentials), so
    /// the requests that follow carry them.
    fn authenticate(&self, r: &oci_client::Reference, op: RegistryOperation) -> Result<()> {
        retry(|| self.runtime.block_on(self.client.auth(r, &self.auth, op)))
            .map(|_| ())
            .map_err(|e| registry_error(&format!("authenticate to {}", self.host), e))
    }

    /// Check credentials: a request that needs them must not be refused as unauthorized.
    pub fn check_login(&self) -> Result<()> {
        let probe = oci_client::Reference::with_tag(
            self.host.clone(),
            "strata/login-check".into(),
            "latest".into(),
        );
        self.authenticate(&probe, RegistryOperation::Pull)?;
        match self
            .runtime
            .block_on(self.client.pull_manifest_raw(&probe, &self.auth, ACCEPTED))
        {
            // The probe image does not exist: being told so means we were let in.
            Ok(_) | Err(OciDistributionError::ImageManifestNotFoundError(_)) => Ok(()),
            Err(OciDistributionError::RegistryError { envelope, .. })
                if envelope.errors.iter().all(|e| {
                    !format!("{:?}", e.code)
                        .to_ascii_lowercase()
                        .contains("unauthorized")
                }) =>
            {
                Ok(())
            }
            Err(OciDistributionError::AuthenticationFailure(m)) => {
                Err(Error::Registry(format!("login to {}: {m}", self.host)))
            }
            Err(OciDistributionError::UnauthorizedError { .. })
            | Err(OciDistributionError::RegistryError { .. }) => Err(Error::Registry(format!(
                "login to {}: unauthorized: wrong username or password",
                self.host
            ))),
            Err(e) => Err(Error::Registry(format!(
                "login to {}: {}",
                self.host,
                with_causes(&e)
            ))),
        }
    }

    pub fn with_auth(mut self, user: &str, password: &str) -> Session {
        self.auth = RegistryAuth::Basic(user.into(), password.into());
        self
    }

    /// Fetch a manifest or index by tag or digest, checked against the digest when one is known.
    fn fetch_document(
        &self,
        r: &oci_client::Reference,
        expected: Option<&Digest>,
    ) -> Result<(Vec<u8>, String, Digest)> {
        let (bytes, _) = retry(|| {
            self.runtime
                .block_on(self.client.pull_manifest_raw(r, &self.auth, ACCEPTED))
        })
        .map_err(|e| registry_error(&format!("fetch manifest {r}"), e))?;
        if bytes.len() as u64 > MAX_DOCUMENT_SIZE {
            return Err(Error::InvalidDocument(format!(
                "{r}: manifest larger than {MAX_DOCUMENT_SIZE} bytes"
            )));
        }
        let digest = Digest::of(&bytes);
        if let Some(want) = expected {
            if *want != digest {
                return Err(Error::DigestMismatch {
                    expected: want.to_string(),
                    actual: digest.to_string(),
                });
            }
        }
        let media_type = document_media_type(&bytes)?;
        Ok((bytes.to_vec(), media_type, digest))
    }

    /// Download a blob into the store, verifying digest and size as it streams. Already
    /// present: nothing is fetched.
    fn fetch_blob(
        &self,
        store: &Store,
        r: &oci_client::Reference,
        desc: &Descriptor,
        progress: Option<&dyn Progress>,
    ) -> Result<()> {
        if store
            .content()
            .info(&desc.digest)
            .is_some_and(|i| i.size == desc.size)
        {
            return Ok(());
        }
        let mut last = None;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(250 << attempt));
            }
            let mut writer = store.content().writer()?;
            let result: std::result::Result<(), String> = self.runtime.block_on(async {
                let mut stream = self
                    .client
                    .pull_blob_stream(r, desc.digest.as_str())
                    .await
                    .map_err(|e| with_causes(&e))?;
                while let Some(chunk) = stream.stream.next().await {
                    let chunk = chunk.map_err(|e| e.to_string())?;
                    if writer.written() + chunk.len() as u64 > desc.size {
                        return Err(format!(
                            "blob {} is larger than its descriptor says ({} bytes)",
                            desc.digest, desc.size
                        ));
                    }
                    writer.write_all(&chunk).map_err(|e| e.to_string())?;
                    if let Some(p) = progress {
                        p.advance(chunk.len() as u64);
                    }
                }
                Ok(())
            });
            match result {
                Ok(()) => {
                    return writer
                        .commit(Some(&desc.digest), Some(desc.size))
                        .map(|_| ())
                }
                Err(e) => last = Some(e),
            }
        }
        Err(Error::Registry(format!(
            "fetch blob {}: {}",
            desc.digest,
            last.unwrap_or_default()
        )))
    }

    /// Pull `reference` into the store and tag it. Only layers the store lacks are fetched.
    pub fn pull(
        &self,
        store: &Store,
        reference: &Reference,
        opts: &RegistryOptions,
        progress: Option<&dyn Progress>,
    ) -> Result<Image> {
        let _writer = store.writer_lock()?;
        let remote = remote_ref(reference);
        self.authenticate(&remote, RegistryOperation::Pull)?;
        let (mut bytes, mut media_type, mut digest) =
            self.fetch_document(&remote, reference.digest())?;
        let want = opts.platform.clone().unwrap_or_else(Platform::host);
        for _ in 0..4 {
            match parse_document(&media_type, &bytes)? {
                Document::Manifest(_) => break,
                Document::Index(index) => {
                    let chosen = index
                        .manifests
                        .iter()
                        .find(|m| m.platform.as_ref().is_some_and(|p| want.matches(p)))
                        .ok_or_else(|| {
                            Error::InvalidDocument(format!(
                                "{reference}: no image for platform {want}"
                            ))
                        })?;
                    let by_digest = remote.clone_with_digest(chosen.digest.to_string());
                    (bytes, media_type, digest) =
                        self.fetch_document(&by_digest, Some(&chosen.digest))?;
                }
            }
        }
        let Document::Manifest(manifest) = parse_document(&media_type, &bytes)? else {
            return Err(Error::InvalidDocument(format!(
                "{reference}: image index nested too deeply"
            )));
        };
        let by_digest = remote.clone_with_digest(digest.to_string());
        self.fetch_blob(store, &by_digest, &manifest.config, None)?;
        let config = store.config(&manifest.config)?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(Error::InvalidDocument(format!(
                "{reference}: layers and diff_ids differ in number"
            )));
        }
        for layer in &manifest.layers {
            crate::compression::Compression::of_layer_media_type(&layer.media_type)?;
        }
        let missing: Vec<&Descriptor> = manifest
            .layers
            .iter()
            .filter(|l| !store.content().contains(&l.digest))
            .collect();
        if let Some(p) = progress {
            p.start(
                &format!("Pulling {}", reference.familiar()),
                Some(missing.iter().map(|l| l.size).sum()),
            );
        }
        // A few layers at a time, each on its own thread with the shared client.
        for chunk in missing.chunks(PARALLEL_LAYERS) {
            let results: Vec<Result<()>> = std::thread::scope(|s| {
                let handles: Vec<_> = chunk
                    .iter()
                    .map(|l| s.spawn(|| self.fetch_blob(store, &by_digest, l, progress)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| {
                            Err(Error::Registry("download thread panicked".into()))
                        })
                    })
                    .collect()
            });
            for r in results {
                r?;
            }
        }
        if let Some(p) = progress {
            p.finish();
        }
        for (layer, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
            store.unpack_layer(layer, diff_id, progress)?;
        }
        let info = store.content().put(&bytes)?;
        let mut desc = Descriptor::new(&media_type, info.digest, info.size);
        desc.platform = Some(config.platform());
        store.set_tag(reference, &desc)?;
        Ok(Image {
            manifest_descriptor: desc,
            manifest,
            config,
            names: vec![reference.to_string()],
        })
    }

    /// Push `image` as `target`: blobs the registry lacks (mounted from another repository of
    /// ours on the same registry when it has them there), then the manifest and tag.
    pub fn push(
        &self,
        store: &Store,
        image: &Image,
        target: &Reference,
        progress: Option<&dyn Progress>,
    ) -> Result<Digest> {
        let remote = remote_ref(target);
        self.authenticate(&remote, RegistryOperation::Push)?;
        let mut blobs = vec![image.manifest.config.clone()];
        blobs.extend(image.manifest.layers.iter().cloned());
        let siblings: Vec<oci_client::Reference> = store
            .images()?
            .iter()
            .flat_map(|i| i.names.clone())
            .filter_map(|n| Reference::parse(&n).ok())
            .filter(|r| r.domain() == target.domain() && r.path() != target.path())
            .map(|r| remote_ref(&r))
            .collect();
        if let Some(p) = progress {
            p.start(
                &format!("Pushing {}", target.familiar()),
                Some(blobs.iter().map(|b| b.size).sum()),
            );
        }
        for blob in &blobs {
            let digest = blob.digest.as_str();
            let exists = retry(|| {
                self.runtime
                    .block_on(self.client.blob_exists(&remote, digest))
            })
            .map_err(|e| registry_error(&format!("check blob {digest}"), e))?;
            if exists {
                continue;
            }
            let mounted = siblings.iter().any(|src| {
                self.runtime
                    .block_on(self.client.mount_blob(&remote, src, digest))
                    .is_ok()
                    && self
                        .runtime
                        .block_on(self.client.blob_exists(&remote, digest))
                        .unwrap_or(false)
            });
            if mounted {
                continue;
            }
            let mut last = None;
            let mut done = false;
            for attempt in 0..ATTEMPTS {
                if attempt > 0 {
                    std::thread::sleep(Duration::from_millis(250 << attempt));
                }
                let file = store.content().open(&blob.digest, Some(blob.size))?;
                let stream = blob_stream(file);
                match self.runtime.block_on(self.client.push_blob_stream(
                    &remote,
                    stream,
                    digest,
                    Some(blob.size),
                )) {
                    Ok(_) => {
                        done = true;
                        break;
                    }
                    Err(e) => last = Some(with_causes(&e)),
                }
            }
            if !done {
                return Err(Error::Registry(format!(
                    "upload blob {digest}: {}",
                    last.unwrap_or_default()
                )));
            }
            if let Some(p) = progress {
                p.advance(blob.size);
            }
        }
        let bytes = store.content().read(
            image.digest(),
            Some(image.manifest_descriptor.size),
            MAX_DOCUMENT_SIZE,
        )?;
        let content_type = http::HeaderValue::from_str(&image.manifest_descriptor.media_type)
            .map_err(|e| Error::InvalidDocument(format!("media type: {e}")))?;
        retry(|| {
            self.runtime.block_on(self.client.push_manifest_raw(
                &remote,
                bytes.clone(),
                content_type.clone(),
            ))
        })
        .map_err(|e| registry_error(&format!("push manifest {target}"), e))?;
        if let Some(p) = progress {
            p.finish();
        }
        Ok(image.digest().clone())
    }
}

/// Read a blob file as a stream of chunks for upload; the content store verifies it as it
/// is read, so a corrupt local blob fails the upload instead of being sent.
fn blob_stream(
    file: crate::content::VerifiedReader<cap_std::fs::File>,
) -> impl futures_util::Stream<Item = std::result::Result<bytes::Bytes, OciDistributionError>>
       + Send
       + 'static {
    futures_util::stream::try_unfold(file, |mut file| async move {
        let mut buf = vec![0u8; 1 << 20];
        let n = file.read(&mut buf).map_err(OciDistributionError::IoError)?;
        if n == 0 {
            return Ok(None);
        }
        buf.truncate(n);
        Ok(Some((bytes::Bytes::from(buf), file)))
    })
    .into_stream()
}

/// Run a registry call, retrying connection failures and server errors with backoff.
fn retry<T>(
    mut call: impl FnMut() -> std::result::Result<T, OciDistributionError>,
) -> std::result::Result<T, OciDistributionError> {
    let mut attempt = 0;
    loop {
        match call() {
            Err(e) if attempt + 1 < ATTEMPTS && transient(&e) => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(250 << attempt));
            }
            r => return r,
        }
    }
}

fn transient(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::RequestError(r) => {
            r.is_connect() || r.is_timeout() || r.is_request() || r.is_body()
        }
        OciDistributionError::ServerError { code, .. } => *code >= 500,
        OciDistributionError::IoError(_) => true,
        _ => false,
    }
}

fn client_config(opts: &RegistryOptions, http: bool) -> Result<ClientConfig> {
    // reqwest is built without a crypto provider: use ring's (an error only says one is
    // already installed).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut extra = Vec::new();
    if let Some(dir) = &opts.cert_dir {
        let entries = std::fs::read_dir(dir).map_err(|e| Error::IoPath {
            path: dir.clone(),
            source: e,
        })?;
        for entry in entries.flatten() {
            let p = entry.path();
            if p.extension().is_some_and(|x| x == "crt" || x == "pem") {
                let data = std::fs::read(&p).map_err(|e| Error::IoPath {
                    path: p.clone(),
                    source: e,
                })?;
                extra.push(Certificate {
                    encoding: CertificateEncoding::Pem,
                    data,
                });
            }
        }
    }
    Ok(ClientConfig {
        protocol: if http {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        },
        accept_invalid_certificates: !opts.tls_verify,
        extra_root_certificates: extra,
        // One streamed PUT per blob (the size is known), not a PATCH per 4 MiB chunk.
        use_monolithic_push: true,
        max_concurrent_download: PARALLEL_LAYERS,
        max_concurrent_upload: PARALLEL_LAYERS,
        read_timeout: Some(Duration::from_secs(60)),
        connect_timeout: Some(Duration::from_secs(10)),
        ..Default::default()
    })
}

fn remote_ref(r: &Reference) -> oci_client::Reference {
    match (r.tag(), r.digest()) {
        (_, Some(d)) => {
            oci_client::Reference::with_digest(r.domain().into(), r.path().into(), d.to_string())
        }
        (Some(t), None) => {
            oci_client::Reference::with_tag(r.domain().into(), r.path().into(), t.into())
        }
        (None, None) => {
            oci_client::Reference::with_tag(r.domain().into(), r.path().into(), "latest".into())
        }
    }
}

/// The media type of a manifest document: its own `mediaType`, or (OCI allows leaving it
/// out) what its fields say it is.
fn document_media_type(bytes: &[u8]) -> Result<String> {
    let v: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| Error::InvalidDocument(format!("manifest: {e}")))?;
    if let Some(m) = v.get("mediaType").and_then(|m| m.as_str()) {
        return Ok(m.to_string());
    }
    Ok(if v.get("manifests").is_some() {
        MEDIA_OCI_INDEX
    } else {
        MEDIA_OCI_MANIFEST
    }
    .to_string())
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
