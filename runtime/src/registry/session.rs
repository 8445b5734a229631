//! A session with one registry: connecting (HTTPS, or plain HTTP where allowed), logging
//! in, and the pull and push protocol. Every request goes through `Session::call`
//! (`http.rs`), which answers auth challenges.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::Mutex;

use super::credentials::credentials;
use super::http::{
    agent, answers, api_host, expect, insecure_by_config, is_loopback, registry_error, retry,
    scope, Failure, SMALL_REQUEST,
};
use super::RegistryOptions;
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
const PARALLEL_LAYERS: usize = 3;

/// A connection to one registry host: the agent, where its API answers, and the answers to
/// its auth challenges.
pub struct Session {
    pub(super) agent: ureq::Agent,
    /// `https://host`, or `http://host` for an insecure or loopback registry without TLS.
    pub(super) base: String,
    host: String,
    pub(super) login: Option<(String, String)>,
    /// The `Authorization` value each set of scopes was granted.
    pub(super) granted: Mutex<HashMap<String, String>>,
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
