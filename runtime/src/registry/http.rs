//! The HTTP layer: one `ureq` agent per registry with its TLS trust, what a failed request
//! was (and whether it is worth another try), retries with backoff, and the requests of a
//! [`Session`], which answer the registry's auth challenges (basic, or a bearer token from
//! the challenge's realm).

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::credentials::encoded_login;
use super::{RegistryOptions, Session};
use crate::error::{Error, Result};

const ATTEMPTS: u32 = 5;
/// The whole of a request that moves no blob (probe, token, manifest, HEAD, upload start):
/// a server trickling bytes cannot hold us longer. Blob transfers have the per-read timeout.
pub(super) const SMALL_REQUEST: Duration = Duration::from_secs(120);

pub(super) fn is_loopback(host: &str) -> bool {
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

pub(super) fn insecure_by_config(host: &str) -> bool {
    std::env::var("STRATA_INSECURE_REGISTRIES")
        .is_ok_and(|v| v.split(',').any(|h| h.trim() == host))
}

/// Why a registry request failed.
#[derive(Debug)]
pub(super) enum Failure {
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
pub(super) fn expect(
    response: ureq::Response,
    want: u16,
) -> std::result::Result<ureq::Response, Failure> {
    match response.status() {
        status if status == want => Ok(response),
        status => Err(Failure::Status(status, error_message(response))),
    }
}

pub(super) fn registry_error(what: &str, e: Failure) -> Error {
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
pub(super) fn api_host(domain: &str) -> &str {
    if domain == crate::reference::DEFAULT_DOMAIN {
        "registry-1.docker.io"
    } else {
        domain
    }
}

/// Whether something answers HTTP at `base` (any status but 400, which is how an HTTPS
/// server answers plain HTTP).
pub(super) fn answers(agent: &ureq::Agent, base: &str) -> bool {
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
pub(super) fn agent(opts: &RegistryOptions) -> Result<ureq::Agent> {
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
pub(super) fn retry<T>(
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
pub(super) fn scope(repo: &str, push: bool) -> String {
    format!(
        "repository:{repo}:{}",
        if push { "pull,push" } else { "pull" }
    )
}

impl Session {
    /// `method` on `url`, with what `scopes` were granted (only to the registry itself, not
    /// to an upload location elsewhere); a 401 is answered (once) by its challenge and the
    /// request sent again. `send` sends the request it is given.
    pub(super) fn call(
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
