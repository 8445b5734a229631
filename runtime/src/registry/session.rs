//! A session with one registry: connecting (HTTPS, or plain HTTP where allowed), logging
//! in, and the pull and push protocol. Every request goes through `Session::call`
//! (`http.rs`), which answers auth challenges.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use super::credentials::credentials;
use super::http::{
    agent, answers, api_host, expect, insecure_by_config, is_loopback, registry_error, retry,
    scope, Failure, SMALL_REQUEST,
};
use super::{Event, RegistryOptions, Report, Status};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::{
    parse_document, Descriptor, Document, Platform, MAX_DOCUMENT_SIZE, MEDIA_DOCKER_LIST,
    MEDIA_DOCKER_MANIFEST, MEDIA_OCI_INDEX, MEDIA_OCI_MANIFEST,
};
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
        .map_err(|e| match e {
            // Docker's words, so scripts that look for them find them.
            Failure::Status(404, said) => Error::Registry(format!(
                "manifest for {} not found: {}",
                reference.familiar(),
                docker_error_code(&said)
            )),
            e => registry_error(&format!("fetch manifest {label}"), e),
        })?;
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

    /// Download a blob into the store, verifying digest and size as it streams, telling
    /// `progress` how many bytes have arrived. Already present: nothing is fetched.
    fn fetch_blob(
        &self,
        store: &Store,
        repo: &str,
        desc: &Descriptor,
        progress: &dyn Fn(u64),
    ) -> Result<()> {
        if has_blob(store, desc) {
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
                progress(writer.written());
            }
        })
        .map_err(|e| registry_error(&format!("fetch blob {}", desc.digest), e))?;
        writer
            .commit(Some(&desc.digest), Some(desc.size))
            .map(|_| ())
    }

    /// Pull `reference` into the store and tag it, reporting as docker's pull does: each
    /// layer the store has is `Already exists`, the others go `Pulling fs layer` (`Waiting`
    /// past the first three), `Verifying Checksum`, `Download complete`, `Pull complete`;
    /// an image the store already has whole reports no layer at all. Only layers the store
    /// lacks are fetched.
    pub fn pull(
        &self,
        store: &Store,
        reference: &Reference,
        opts: &RegistryOptions,
        report: Report<'_>,
    ) -> Result<Pulled> {
        let _writer = store.writer_lock()?;
        let repo = reference.path();
        let (mut bytes, mut media_type) = self.fetch_document(reference)?;
        let resolved = Digest::of(&bytes);
        report(Event::Resolved(resolved.clone()));
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
        let had_config = has_blob(store, &manifest.config);
        self.fetch_blob(store, repo, &manifest.config, &|_| {})?;
        let config = store.config(&manifest.config)?;
        manifest.check_config(&config)?;

        // Each blob once, in the manifest's order (bottom first), as docker lists them.
        let mut layers: Vec<&Descriptor> = Vec::new();
        for l in &manifest.layers {
            if !layers.iter().any(|seen| seen.digest == l.digest) {
                layers.push(l);
            }
        }
        let missing: Vec<&Descriptor> = layers
            .iter()
            .copied()
            .filter(|l| !has_blob(store, l))
            .collect();
        let whole = had_config
            && missing.is_empty()
            && config.rootfs.diff_ids.iter().all(|d| store.has_layer(d));
        if !whole {
            let mut queued = 0;
            for l in &layers {
                let id = l.digest.clone();
                if missing.contains(l) {
                    report(Event::Layer {
                        id: id.clone(),
                        status: Status::PullingFsLayer,
                    });
                    if queued >= PARALLEL_LAYERS {
                        report(Event::Layer {
                            id,
                            status: Status::Waiting,
                        });
                    }
                    queued += 1;
                } else {
                    report(Event::Layer {
                        id,
                        status: Status::AlreadyExists,
                    });
                }
            }
        }
        self.download(store, repo, &missing, report)?;
        let mut completed: Vec<&Digest> = Vec::new();
        // Checked against its blob even when the layer is unpacked already (load does the same).
        for (layer, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
            store.content().check_layer(layer, diff_id, false)?;
        }
        for (layer, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
            if store.has_layer(diff_id) {
                store.content().check_layer(layer, diff_id, true)?;
            } else {
                store.unpack_layer(layer, diff_id, None)?;
            }
            // A blob the manifest names twice completes once.
            if missing.contains(&layer) && !completed.contains(&&layer.digest) {
                completed.push(&layer.digest);
                report(Event::Layer {
                    id: layer.digest.clone(),
                    status: Status::PullComplete,
                });
            }
        }
        let info = store.content().put(&bytes)?;
        let mut desc = Descriptor::new(&media_type, info.digest, info.size);
        desc.platform = Some(config.platform());
        let name = reference.to_string();
        let before = store.index()?;
        let updated = !before
            .manifests
            .iter()
            .any(|d| d.ref_name() == Some(name.as_str()) && d.digest == desc.digest);
        store.set_tag(reference, &desc)?;
        Ok(Pulled {
            image: Image {
                manifest_descriptor: desc,
                manifest,
                config,
                names: vec![name],
            },
            digest: resolved,
            updated,
        })
    }

    /// Fetch `layers` into the store, `PARALLEL_LAYERS` at a time (docker's default
    /// concurrency), each on its own thread with the shared agent.
    fn download(
        &self,
        store: &Store,
        repo: &str,
        layers: &[&Descriptor],
        report: Report<'_>,
    ) -> Result<()> {
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let worker = || -> Result<()> {
            while !failed.load(Ordering::Relaxed) {
                let Some(layer) = layers.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    break;
                };
                let id = &layer.digest;
                let bytes = |done: u64| {
                    report(Event::Bytes {
                        id: id.clone(),
                        status: Status::Downloading,
                        done,
                        total: layer.size,
                    })
                };
                if let Err(e) = self.fetch_blob(store, repo, layer, &bytes) {
                    failed.store(true, Ordering::Relaxed);
                    return Err(e);
                }
                // The digest was verified as the blob streamed in; docker says so after.
                for status in [Status::VerifyingChecksum, Status::DownloadComplete] {
                    report(Event::Layer {
                        id: id.clone(),
                        status,
                    });
                }
            }
            Ok(())
        };
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..PARALLEL_LAYERS.min(layers.len()))
                .map(|_| s.spawn(worker))
                .collect();
            workers
                .into_iter()
                .map(|w| {
                    w.join()
                        .unwrap_or_else(|_| Err(Error::Registry("download thread panicked".into())))
                })
                .collect::<Vec<_>>()
                .into_iter()
                .collect::<Result<()>>()
        })
    }

    /// Push `image` as `target`: blobs the registry lacks (mounted from another repository of
    /// ours on the same registry when it has them there), then the manifest and tag. Reports
    /// as docker's push does, each layer by its diff_id, top first: `Preparing`, then
    /// `Layer already exists`, `Mounted from REPO` or `Pushed`.
    pub fn push(
        &self,
        store: &Store,
        image: &Image,
        target: &Reference,
        report: Report<'_>,
    ) -> Result<Digest> {
        let repo = target.path();
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
        // Layers by diff_id, top first, each blob once; the config last, unreported.
        let mut blobs: Vec<(Option<&Digest>, &Descriptor)> = Vec::new();
        let layers = image
            .manifest
            .layers
            .iter()
            .zip(&image.config.rootfs.diff_ids);
        for (layer, diff_id) in layers.rev() {
            if !blobs.iter().any(|(_, b)| b.digest == layer.digest) {
                blobs.push((Some(diff_id), layer));
            }
        }
        for (id, _) in &blobs {
            if let Some(id) = id {
                report(Event::Layer {
                    id: (*id).clone(),
                    status: Status::Preparing,
                });
            }
        }
        blobs.push((None, &image.manifest.config));
        let push_scope = [scope(repo, true)];
        for (id, blob) in blobs {
            let tell = |status| {
                if let Some(id) = id {
                    report(Event::Layer {
                        id: id.clone(),
                        status,
                    });
                }
            };
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
                tell(Status::LayerAlreadyExists);
                continue;
            }
            // A mount the registry cannot do starts an upload instead (202): that one is used.
            let mut mounted = None;
            let mut started = None;
            for from in &siblings {
                let url = self.url(repo, &format!("blobs/uploads/?mount={digest}&from={from}"));
                let scopes = [scope(repo, true), scope(from, false)];
                let post = |r: ureq::Request| r.timeout(SMALL_REQUEST).send_bytes(&[]);
                match self.call("POST", &url, &scopes, &post) {
                    Ok(r) if r.status() == 201 && exists(self).unwrap_or(false) => {
                        mounted = Some(from);
                        break;
                    }
                    Ok(r) if r.status() == 202 => {
                        started = self.location(&r).ok();
                        break;
                    }
                    _ => {}
                }
            }
            match mounted {
                Some(from) => tell(Status::MountedFrom(from.clone())),
                None => {
                    let progress = |done: u64| {
                        if let Some(id) = id {
                            report(Event::Bytes {
                                id: id.clone(),
                                status: Status::Pushing,
                                done,
                                total: blob.size,
                            });
                        }
                    };
                    self.upload(store, repo, blob, started, &progress)?;
                    tell(Status::Pushed);
                }
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
        progress: &dyn Fn(u64),
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
                    .send(Counting {
                        inner: file,
                        done: 0,
                        progress,
                    })
            };
            expect(self.call("PUT", &url, &scopes, &put)?, 201).map(|_| ())
        };
        retry(attempt).map_err(|e| registry_error(&format!("upload blob {digest}"), e))
    }
}

/// A reader that tells `progress` how many bytes have been read through it.
struct Counting<'a, R> {
    inner: R,
    done: u64,
    progress: &'a dyn Fn(u64),
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        (self.progress)(self.done);
        Ok(n)
    }
}

/// A registry's `CODE: message` as docker's errcode prints it: `manifest unknown: manifest
/// unknown`.
fn docker_error_code(said: &str) -> String {
    said.split("; ")
        .map(|e| match e.split_once(": ") {
            Some((code, message)) => {
                format!("{}: {message}", code.replace('_', " ").to_lowercase())
            }
            None => e.replace('_', " ").to_lowercase(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Whether the store holds `desc`'s blob (of its size).
fn has_blob(store: &Store, desc: &Descriptor) -> bool {
    store
        .content()
        .info(&desc.digest)
        .is_some_and(|i| i.size == desc.size)
}

/// A pulled image, with what docker's pull reports at the end.
#[derive(Debug, Clone)]
pub struct Pulled {
    pub image: Image,
    /// What the reference resolved to: the manifest's digest, or the index's for a
    /// multi-platform image (docker's `Digest:` line).
    pub digest: Digest,
    /// Whether the tag now names another image than before (docker's `Downloaded newer
    /// image` rather than `Image is up to date`).
    pub updated: bool,
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
