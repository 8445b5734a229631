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

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;

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
/// The whole of a request that moves no blob (probe, token, manifest, HEAD, upload start):
/// a server trickling bytes cannot hold us longer. Blob transfers have the per-read timeout.
const SMALL_REQUEST: Duration = Duration::from_secs(120);
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
fn encoded_login(user: &str, password: &str) -> String {
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

fn is_loopback(host: &str) -> bool {
    let name = host.rsplit_once(':').map_or(host, |(h, p)| {
        if p.chars().all(|c| c.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    let address = name.trim_start_matches('[').trim_end_matches(']');
    name == "localhost"
        || address
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback())
}

fn insecure_by_config(host: &str) -> bool {
    std::env::var("STRATA_INSECURE_REGISTRIES")
        .is_ok_and(|v| v.split(',').any(|h| h.trim() == host))
}

// ----- HTTP -----

/// Why a registry request failed.
#[derive(Debug)]
enum Failure {
    /// The registry answered with this status; the text is what its error body said.
    Status(u16, String),
    /// No answer: connecting, or the connection broke.
    Transport(String),
    /// A request that cannot succeed as it is: TLS refused the server, a bad URL, redirects
    /// without end.
    Refused(String),
    /// An answer that breaks the protocol (a blob larger than its descriptor, a token
    /// response without a token).
    Invalid(String),
}

impl Failure {
    /// Worth another try: no answer, or the server's own failure.
    fn transient(&self) -> bool {
        match self {
            Failure::Transport(_) => true,
            Failure::Status(code, _) => *code >= 500 || *code == 429,
            Failure::Refused(_) | Failure::Invalid(_) => false,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let said = |m: &str| {
            if m.is_empty() {
                String::new()
            } else {
                format!(" ({m})")
            }
        };
        match self {
            Failure::Status(401, m) => {
                write!(f, "unauthorized: authentication required{}", said(m))
            }
            Failure::Status(403, m) => write!(f, "denied: not authorized{}", said(m)),
            Failure::Status(404, m) => write!(f, "not found{}", said(m)),
            Failure::Status(code, m) => write!(f, "HTTP status {code}{}", said(m)),
            Failure::Transport(m) | Failure::Refused(m) | Failure::Invalid(m) => f.write_str(m),
        }
    }
}

fn failure(e: ureq::Error) -> Failure {
    match e {
        ureq::Error::Status(code, response) => Failure::Status(code, error_message(response)),
        ureq::Error::Transport(t) => {
            let message = with_causes(&t);
            let tls = causes(&t).any(|c| {
                c.is::<rustls::Error>()
                    || c.downcast_ref::<std::io::Error>()
                        .and_then(|io| io.get_ref())
                        .is_some_and(|inner| inner.is::<rustls::Error>())
            });
            match t.kind() {
                ureq::ErrorKind::Dns | ureq::ErrorKind::ConnectionFailed | ureq::ErrorKind::Io
                    if !tls =>
                {
                    Failure::Transport(message)
                }
                _ => Failure::Refused(message),
            }
        }
    }
}

/// `response`, when its status is `want`; else what it was.
fn expect(response: ureq::Response, want: u16) -> std::result::Result<ureq::Response, Failure> {
    match response.status() {
        status if status == want => Ok(response),
        status => Err(Failure::Status(status, error_message(response))),
    }
}

fn registry_error(what: &str, e: Failure) -> Error {
    Error::Registry(format!("{what}: {e}"))
}

/// The chain of `e`'s sources.
fn causes<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(e.source(), |c| c.source())
}

/// An error and its causes on one line (TLS reasons hide in the sources).
fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    for c in causes(e) {
        let s = c.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
    }
    text
}

/// The registry's error envelope (`{"errors":[{"code","message"}]}`) on one line, else the
/// start of the body.
fn error_message(response: ureq::Response) -> String {
    let mut body = String::new();
    let _ = response
        .into_reader()
        .take(64 << 10)
        .read_to_string(&mut body);
    match serde_json::from_str::<serde_json::Value>(&body) {
        Ok(v) => v["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .map(|e| {
                        let code = e["code"].as_str().unwrap_or("ERROR");
                        match e["message"].as_str() {
                            Some(m) if !m.is_empty() => format!("{code}: {m}"),
                            _ => code.to_string(),
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default(),
        Err(_) => body.trim().chars().take(200).collect(),
    }
}

/// A `WWW-Authenticate` challenge: its scheme (lower case) and parameters, whose quoted
/// values may hold commas (`scope="repository:a:pull,push"`).
fn parse_challenge(header: &str) -> (String, HashMap<String, String>) {
    let header = header.trim();
    let (scheme, mut rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = HashMap::new();
    while let Some((key, after)) = rest.split_once('=') {
        let after = after.trim_start();
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => {
                let mut value = String::new();
                let mut end = quoted.len();
                let mut escaped = false;
                for (i, c) in quoted.char_indices() {
                    match c {
                        _ if escaped => {
                            value.push(c);
                            escaped = false;
                        }
                        '\\' => escaped = true,
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        _ => value.push(c),
                    }
                }
                (value, &quoted[end..])
            }
            None => {
                let end = after.find(',').unwrap_or(after.len());
                (after[..end].trim().to_string(), &after[end..])
            }
        };
        params.insert(key.trim().to_ascii_lowercase(), value);
        rest = next.trim_start().trim_start_matches(',');
    }
    (scheme.to_ascii_lowercase(), params)
}

/// The host that serves `domain`'s API (Docker Hub's differs from its name).
fn api_host(domain: &str) -> &str {
    if domain == crate::reference::DEFAULT_DOMAIN {
        "registry-1.docker.io"
    } else {
        domain
    }
}

/// Whether something answers HTTP at `base` (any status but 400, which is how an HTTPS
/// server answers plain HTTP).
fn answers(agent: &ureq::Agent, base: &str) -> bool {
    match agent
        .get(&format!("{base}/v2/"))
        .timeout(SMALL_REQUEST)
        .call()
    {
        Ok(_) => true,
        Err(ureq::Error::Status(code, _)) => code != 400,
        Err(ureq::Error::Transport(_)) => false,
    }
}

/// The agent for one registry: its TLS trust (the system's web roots and `--cert-dir`, or
/// none with `--tls-verify=false`), timeouts, redirects without our credentials.
fn agent(opts: &RegistryOptions) -> Result<ureq::Agent> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Registry(format!("TLS: {e}")))?;
    let tls = if opts.tls_verify {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        // The system's bundle too (where `update-ca-certificates` puts a private CA), as
        // docker trusts it; `SSL_CERT_FILE` names another, as OpenSSL's clients allow.
        let system = std::env::var_os("SSL_CERT_FILE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/etc/ssl/certs/ca-certificates.crt"));
        add_bundle(&mut roots, &system);
        if let Some(dir) = &opts.cert_dir {
            add_certificates(&mut roots, dir)?;
        }
        tls.with_root_certificates(roots)
    } else {
        tls.dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
    };
    Ok(ureq::AgentBuilder::new()
        .tls_config(Arc::new(tls.with_no_client_auth()))
        .timeout_connect(Duration::from_secs(10))
        .timeout_read(Duration::from_secs(60))
        .timeout_write(Duration::from_secs(60))
        .user_agent(concat!("strata/", env!("CARGO_PKG_VERSION")))
        .build())
}

/// The `*.crt` and `*.pem` certificates of `dir` (as `--cert-dir`).
fn add_certificates(roots: &mut rustls::RootCertStore, dir: &Path) -> Result<()> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let entries = std::fs::read_dir(dir).map_err(|e| Error::IoPath {
        path: dir.into(),
        source: e,
    })?;
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.extension().is_some_and(|x| x == "crt" || x == "pem") {
            continue;
        }
        let bad = |e: String| Error::InvalidArgument(format!("{}: {e}", path.display()));
        for cert in CertificateDer::pem_file_iter(&path).map_err(|e| bad(e.to_string()))? {
            roots
                .add(cert.map_err(|e| bad(e.to_string()))?)
                .map_err(|e| bad(e.to_string()))?;
        }
    }
    Ok(())
}

/// The certificates of a bundle file, those that parse; none when it is missing.
fn add_bundle(roots: &mut rustls::RootCertStore, path: &Path) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    if let Ok(certs) = CertificateDer::pem_file_iter(path) {
        roots.add_parsable_certificates(certs.flatten());
    }
}

/// `--tls-verify=false`: any certificate is accepted (the handshake's signatures are still
/// checked, so the connection is encrypted to whoever holds the key).
#[derive(Debug)]
struct Unverified(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Run a registry call, retrying connection failures and server errors with backoff.
fn retry<T>(
    mut call: impl FnMut() -> std::result::Result<T, Failure>,
) -> std::result::Result<T, Failure> {
    let mut attempt = 0;
    loop {
        match call() {
            Err(e) if attempt + 1 < ATTEMPTS && e.transient() => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(250 << attempt));
            }
            r => return r,
        }
    }
}

/// The token scope for `repo`: pull, or pull and push.
fn scope(repo: &str, push: bool) -> String {
    format!(
        "repository:{repo}:{}",
        if push { "pull,push" } else { "pull" }
    )
}

/// A connection to one registry host: the agent, where its API answers, and the answers to
/// its auth challenges.
pub struct Session {
    agent: ureq::Agent,
    /// `https://host`, or `http://host` for an insecure or loopback registry without TLS.
    base: String,
    host: String,
    login: Option<(String, String)>,
    /// The `Authorization` value each set of scopes was granted.
    granted: Mutex<HashMap<String, String>>,
}

impl Session {
    /// Connect to `host` over HTTPS. Plain HTTP is tried only for registries marked insecure
    /// (`--tls-verify=false`, `STRATA_INSECURE_REGISTRIES`) or on loopback, and only when the
    /// registry does not speak TLS at all (an HTTPS server answering plain HTTP with 400 keeps
    /// us on HTTPS, so a certificate problem is reported, not bypassed).
    pub fn open(host: &str, opts: &RegistryOptions) -> Result<Session> {
        let agent = agent(opts)?;
        let https = format!("https://{}", api_host(host));
        let http = format!("http://{}", api_host(host));
        let may_use_http = !opts.tls_verify || insecure_by_config(host) || is_loopback(host);
        let base = if may_use_http && !answers(&agent, &https) && answers(&agent, &http) {
            http
        } else {
            https
        };
        Ok(Session {
            agent,
            base,
            host: host.to_string(),
            login: credentials(host)?,
            granted: Mutex::default(),
        })
    }

    pub fn with_auth(mut self, user: &str, password: &str) -> Session {
        self.login = Some((user.into(), password.into()));
        self
    }

    /// `method` on `url`, with what `scopes` were granted (only to the registry itself, not
    /// to an upload location elsewhere); a 401 is answered (once) by its challenge and the
    /// request sent again. `send` sends the request it is given.
    fn call(
        &self,
        method: &str,
        url: &str,
        scopes: &[String],
        send: &dyn Fn(ureq::Request) -> std::result::Result<ureq::Response, ureq::Error>,
    ) -> std::result::Result<ureq::Response, Failure> {
        let key = scopes.join(" ");
        let our_prefix = format!("{}/", self.base);
        let ours = url.starts_with(&our_prefix);
        let mut answered = false;
        loop {
            let mut request = self.agent.request(method, url);
            let granted = ours
                .then(|| self.granted.lock().expect("lock").get(&key).cloned())
                .flatten();
            if let Some(auth) = granted {
                request = request.set("Authorization", &auth);
            }
            match send(request) {
                // A challenge from anywhere else (an upload location, a redirect's target)
                // is not answered: our login goes to no other host.
                Err(ureq::Error::Status(401, response))
                    if !answered && ours && response.get_url().starts_with(&our_prefix) =>
                {
                    let challenge = response
                        .header("WWW-Authenticate")
                        .unwrap_or("")
                        .to_string();
                    let auth = self.answer(&challenge, scopes)?;
                    self.granted.lock().expect("lock").insert(key.clone(), auth);
                    answered = true;
                }
                result => return result.map_err(failure),
            }
        }
    }

    /// The `Authorization` value that answers `challenge` for `scopes`: the login as basic
    /// credentials, or a bearer token from the challenge's realm (asked for with the login
    /// when there is one, anonymously otherwise).
    fn answer(&self, challenge: &str, scopes: &[String]) -> std::result::Result<String, Failure> {
        let (scheme, params) = parse_challenge(challenge);
        let basic = self
            .login
            .as_ref()
            .map(|(user, password)| format!("Basic {}", encoded_login(user, password)));
        match scheme.as_str() {
            "basic" => basic.ok_or_else(|| Failure::Status(401, String::new())),
            "bearer" => {
                let realm = params.get("realm").ok_or_else(|| {
                    Failure::Invalid(format!("a bearer challenge without a realm: {challenge}"))
                })?;
                let mut request = self.agent.get(realm).timeout(SMALL_REQUEST);
                if let Some(service) = params.get("service") {
                    request = request.query("service", service);
                }
                // The scopes we need; the challenge's own when we named none (login).
                let wanted = if scopes.is_empty() {
                    params.get("scope").into_iter().cloned().collect()
                } else {
                    scopes.to_vec()
                };
                for s in &wanted {
                    request = request.query("scope", s);
                }
                if let Some(basic) = &basic {
                    request = request.set("Authorization", basic);
                }
                let response = request.call().map_err(failure)?;
                let body: serde_json::Value =
                    serde_json::from_reader(response.into_reader().take(1 << 20))
                        .map_err(|e| Failure::Invalid(format!("token from {realm}: {e}")))?;
                let token = [&body["token"], &body["access_token"]]
                    .into_iter()
                    .filter_map(|t| t.as_str())
                    .find(|t| !t.is_empty())
                    .ok_or_else(|| Failure::Invalid(format!("no token from {realm}")))?;
                Ok(format!("Bearer {token}"))
            }
            _ => Err(Failure::Invalid(format!(
                "an auth challenge strata cannot answer: {challenge:?}"
            ))),
        }
    }

    /// Check credentials the way `docker login` does: the API root must let us in.
    pub fn check_login(&self) -> Result<()> {
        let url = format!("{}/v2/", self.base);
        match retry(|| self.call("GET", &url, &[], &|r| r.timeout(SMALL_REQUEST).call())) {
            Ok(_) => Ok(()),
            Err(Failure::Status(401 | 403, _)) => Err(Error::Registry(format!(
                "login to {}: unauthorized: wrong username or password",
                self.host
            ))),
            Err(e) => Err(registry_error(&format!("login to {}", self.host), e)),
        }
    }

    fn url(&self, repo: &str, tail: &str) -> String {
        format!("{}/v2/{repo}/{tail}", self.base)
    }

    /// Fetch a manifest or index by tag or digest, checked against the digest when there is
    /// one.
    fn fetch_document(&self, reference: &Reference) -> Result<(Vec<u8>, String)> {
        let repo = reference.path();
        let url = self.url(repo, &format!("manifests/{}", reference.manifest_name()));
        let label = reference.to_string();
        let accept = ACCEPTED.join(", ");
        let response = retry(|| {
            self.call("GET", &url, &[scope(repo, false)], &|r| {
                r.timeout(SMALL_REQUEST).set("Accept", &accept).call()
            })
        })
        .map_err(|e| registry_error(&format!("fetch manifest {label}"), e))?;
        let mut bytes = Vec::new();
        response
            .into_reader()
            .take(MAX_DOCUMENT_SIZE + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::Registry(format!("fetch manifest {label}: {e}")))?;
        if bytes.len() as u64 > MAX_DOCUMENT_SIZE {
            return Err(Error::InvalidDocument(format!(
                "{label}: manifest larger than {MAX_DOCUMENT_SIZE} bytes"
            )));
        }
        let digest = Digest::of(&bytes);
        if let Some(want) = reference.digest() {
            if *want != digest {
                return Err(Error::DigestMismatch {
                    expected: want.to_string(),
                    actual: digest.to_string(),
                });
            }
        }
        let media_type = document_media_type(&bytes)?;
        Ok((bytes, media_type))
    }

    /// Download a blob into the store, verifying digest and size as it streams. Already
    /// present: nothing is fetched.
    fn fetch_blob(
        &self,
        store: &Store,
        repo: &str,
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
        let url = self.url(repo, &format!("blobs/{}", desc.digest));
        let scopes = [scope(repo, false)];
        // Each attempt streams into a fresh temp file; only a complete one is committed.
        let writer = retry(|| {
            let mut writer = store
                .content()
                .writer()
                .map_err(|e| Failure::Invalid(e.to_string()))?;
            let response = self.call("GET", &url, &scopes, &|r| r.call())?;
            let mut body = response.into_reader();
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = match body.read(&mut buf) {
                    Ok(0) => return Ok(writer),
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(Failure::Transport(e.to_string())),
                };
                if writer.written() + n as u64 > desc.size {
                    return Err(Failure::Invalid(format!(
                        "larger than its descriptor says ({} bytes)",
                        desc.size
                    )));
                }
                writer
                    .write_all(&buf[..n])
                    .map_err(|e| Failure::Invalid(e.to_string()))?;
                if let Some(p) = progress {
                    p.advance(n as u64);
                }
            }
        })
        .map_err(|e| registry_error(&format!("fetch blob {}", desc.digest), e))?;
        writer
            .commit(Some(&desc.digest), Some(desc.size))
            .map(|_| ())
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
        let repo = reference.path();
        let (mut bytes, mut media_type) = self.fetch_document(reference)?;
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
                    (bytes, media_type) =
                        self.fetch_document(&reference.with_digest(chosen.digest.clone()))?;
                }
            }
        }
        let Document::Manifest(manifest) = parse_document(&media_type, &bytes)? else {
            return Err(Error::InvalidDocument(format!(
                "{reference}: image index nested too deeply"
            )));
        };
        manifest.check_image()?;
        self.fetch_blob(store, repo, &manifest.config, None)?;
        let config = store.config(&manifest.config)?;
        manifest.check_config(&config)?;
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
        // A few layers at a time, each on its own thread with the shared agent.
        for chunk in missing.chunks(PARALLEL_LAYERS) {
            let results: Vec<Result<()>> = std::thread::scope(|s| {
                let handles: Vec<_> = chunk
                    .iter()
                    .map(|l| s.spawn(|| self.fetch_blob(store, repo, l, progress)))
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
        // Checked against its blob even when the layer is unpacked already (load does the same).
        for (layer, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
            store.content().check_layer(layer, diff_id, false)?;
        }
        for (layer, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
            if store.has_layer(diff_id) {
                store.content().check_layer(layer, diff_id, true)?;
            } else {
                store.unpack_layer(layer, diff_id, progress)?;
            }
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
        let repo = target.path();
        let mut blobs = vec![image.manifest.config.clone()];
        blobs.extend(image.manifest.layers.iter().cloned());
        // A manifest pushed by digest must be that digest; by tag (or neither: `latest`).
        if target.digest().is_some_and(|d| d != image.digest()) {
            return Err(Error::InvalidArgument(format!(
                "{target}: the image's digest is {}",
                image.digest()
            )));
        }
        let mut siblings: Vec<String> = store
            .images()?
            .iter()
            .flat_map(|i| i.names.clone())
            .filter_map(|n| Reference::parse(&n).ok())
            .filter(|r| r.domain() == target.domain() && r.path() != target.path())
            .map(|r| r.path().to_string())
            .collect();
        siblings.sort();
        siblings.dedup();
        if let Some(p) = progress {
            p.start(
                &format!("Pushing {}", target.familiar()),
                Some(blobs.iter().map(|b| b.size).sum()),
            );
        }
        let push_scope = [scope(repo, true)];
        for blob in &blobs {
            let digest = blob.digest.as_str();
            let blob_url = self.url(repo, &format!("blobs/{digest}"));
            let head = |r: ureq::Request| r.timeout(SMALL_REQUEST).call();
            let exists = |s: &Session| match s.call("HEAD", &blob_url, &push_scope, &head) {
                Ok(_) => Ok(true),
                Err(Failure::Status(404, _)) => Ok(false),
                Err(e) => Err(e),
            };
            if retry(|| exists(self))
                .map_err(|e| registry_error(&format!("check blob {digest}"), e))?
            {
                continue;
            }
            // A mount the registry cannot do starts an upload instead (202): that one is used.
            let mut mounted = false;
            let mut started = None;
            for from in &siblings {
                let url = self.url(repo, &format!("blobs/uploads/?mount={digest}&from={from}"));
                let scopes = [scope(repo, true), scope(from, false)];
                let post = |r: ureq::Request| r.timeout(SMALL_REQUEST).send_bytes(&[]);
                match self.call("POST", &url, &scopes, &post) {
                    Ok(r) if r.status() == 201 && exists(self).unwrap_or(false) => {
                        mounted = true;
                        break;
                    }
                    Ok(r) if r.status() == 202 => {
                        started = self.location(&r).ok();
                        break;
                    }
                    _ => {}
                }
            }
            if !mounted {
                self.upload(store, repo, blob, started)?;
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
        let url = self.url(repo, &format!("manifests/{}", target.manifest_name()));
        let media_type = &image.manifest_descriptor.media_type;
        retry(|| {
            let put = |r: ureq::Request| {
                r.timeout(SMALL_REQUEST)
                    .set("Content-Type", media_type)
                    .send_bytes(&bytes)
            };
            expect(self.call("PUT", &url, &push_scope, &put)?, 201)
        })
        .map_err(|e| registry_error(&format!("push manifest {target}"), e))?;
        if let Some(p) = progress {
            p.finish();
        }
        Ok(image.digest().clone())
    }

    /// Where an upload the registry started goes on: its `Location`, made absolute.
    fn location(&self, started: &ureq::Response) -> std::result::Result<String, Failure> {
        let location = started
            .header("Location")
            .ok_or_else(|| Failure::Invalid("upload started without a Location".into()))?;
        Ok(if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            location.to_string()
        })
    }

    /// Upload one blob: start an upload (or go on with `started`, one a mount began), then
    /// one streamed PUT of the whole blob, read from the store through its verifier (a
    /// corrupt local blob fails the upload instead of being sent).
    fn upload(
        &self,
        store: &Store,
        repo: &str,
        blob: &Descriptor,
        mut started: Option<String>,
    ) -> Result<()> {
        let scopes = [scope(repo, true)];
        let digest = blob.digest.as_str();
        let start = self.url(repo, "blobs/uploads/");
        let attempt = || -> std::result::Result<(), Failure> {
            let url = match started.take() {
                Some(url) => url,
                None => {
                    let post = |r: ureq::Request| r.timeout(SMALL_REQUEST).send_bytes(&[]);
                    self.location(&expect(self.call("POST", &start, &scopes, &post)?, 202)?)?
                }
            };
            let url = format!(
                "{url}{}digest={digest}",
                if url.contains('?') { '&' } else { '?' }
            );
            let put = |r: ureq::Request| {
                let file = store
                    .content()
                    .open(&blob.digest, Some(blob.size))
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                r.set("Content-Type", "application/octet-stream")
                    .set("Content-Length", &blob.size.to_string())
                    .send(file)
            };
            expect(self.call("PUT", &url, &scopes, &put)?, 201).map(|_| ())
        };
        retry(attempt).map_err(|e| registry_error(&format!("upload blob {digest}"), e))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse_with_quoted_commas() {
        let (scheme, params) = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(scheme, "bearer");
        assert_eq!(params["realm"], "https://auth.example/token");
        assert_eq!(params["service"], "registry.example");
        assert_eq!(params["scope"], "repository:a/b:pull,push");
        let (scheme, params) = parse_challenge(r#"Basic realm="say \"hi\", please""#);
        assert_eq!(scheme, "basic");
        assert_eq!(params["realm"], r#"say "hi", please"#);
        let (scheme, params) = parse_challenge("Bearer realm=https://t.example/x, service=s");
        assert_eq!(scheme, "bearer");
        assert_eq!(params["realm"], "https://t.example/x");
        assert_eq!(params["service"], "s");
        // Unterminated quotes and missing values end the parameters, not the process.
        let (_, params) = parse_challenge(r#"Bearer realm="open"#);
        assert_eq!(params["realm"], "open");
        assert!(parse_challenge("Bearer").1.is_empty());
    }

    #[test]
    fn loopback_is_an_address_not_a_prefix() {
        for host in [
            "localhost",
            "localhost:5000",
            "127.0.0.1",
            "127.1.2.3:80",
            "[::1]:5000",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "127.example.com",
            "127.example.com:5000",
            "registry.example",
            "10.0.0.1",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }
}
