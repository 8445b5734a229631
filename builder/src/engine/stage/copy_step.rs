//! COPY and ADD: sources from the context, another stage or an image (or a URL, for ADD)
//! copied into a scratch upper over the stage's root; the upper is the layer.

use cap_std::fs::Dir;

use super::StageBuilder;
use crate::dockerfile::instructions::{Command, SourcesAndDest};
use crate::engine::context::{os, Ignore, Matched, Source};
use crate::engine::copy::{copy, Chmod, CopyOptions};
use crate::engine::BuildError;

impl StageBuilder<'_, '_> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn copy_step(
        &mut self,
        cmd: &Command,
        verb: &str,
        sources: &SourcesAndDest,
        from: Option<&str>,
        chown: Option<&str>,
        chmod: Option<&str>,
        parents: bool,
        exclude: &[String],
        unpack: bool,
        checksum: Option<&str>,
    ) -> Result<(), BuildError> {
        let chown = chown.map(|c| self.expand(cmd, c)).transpose()?;
        let chmod_text = chmod.map(|c| self.expand(cmd, c)).transpose()?;
        let chmod = chmod_text
            .as_deref()
            .map(Chmod::parse)
            .transpose()
            .map_err(|e| self.err(cmd, e))?;
        let mut paths = Vec::new();
        let mut urls = Vec::new();
        for p in &sources.paths {
            let p = self.expand(cmd, p)?;
            let url = p.contains("://") || p.starts_with("git@");
            if url && verb == "COPY" {
                return Err(self.err(cmd, "source can't be a URL for COPY"));
            }
            if url && (p.starts_with("git@") || p.ends_with(".git") || !p.starts_with("http")) {
                return Err(self.err(
                    cmd,
                    format!("{p}: git sources are not supported by this builder yet"),
                ));
            }
            if url {
                urls.push(p);
            } else {
                paths.push(p);
            }
        }
        if !urls.is_empty() && !paths.is_empty() {
            return Err(self.err(
                cmd,
                "mixing URLs and local sources in one ADD is not supported",
            ));
        }
        let dest_raw = self.expand(cmd, &sources.dest)?;
        let dest = if dest_raw.starts_with('/') {
            dest_raw.clone()
        } else {
            let wd = self.workdir();
            format!("{}/{}", wd.trim_end_matches('/'), dest_raw)
        };
        let dest_dir_written = dest_raw.is_empty()
            || dest_raw.ends_with('/')
            || dest_raw == "."
            || dest_raw.ends_with("/.");

        // The source root: the context, a heredoc's files, or another stage or image.
        let mut heredocs: Option<tempfile::TempDir> = None;
        let mut ignore = Ignore::default();
        for e in exclude {
            let e = self.expand(cmd, e)?;
            let more = Ignore::parse(&e).map_err(|m| self.err(cmd, m))?;
            ignore = ignore.with(more);
        }
        let (source, source_id) = if !urls.is_empty() {
            let dir = tempfile::tempdir().map_err(|e| self.err(cmd, e))?;
            let d = Dir::open_ambient_dir(dir.path(), cap_std::ambient_authority())
                .map_err(|e| self.err(cmd, e))?;
            for u in &urls {
                let name = download(u, &d, checksum).map_err(|e| self.err(cmd, e))?;
                paths.push(name);
            }
            heredocs = Some(dir);
            (
                Source::context(d, Ignore::default()),
                format!("urls {urls:?}"),
            )
        } else if !sources.contents.is_empty() {
            let dir = tempfile::tempdir().map_err(|e| self.err(cmd, e))?;
            let d = Dir::open_ambient_dir(dir.path(), cap_std::ambient_authority())
                .map_err(|e| self.err(cmd, e))?;
            for c in &sources.contents {
                let data = if c.expand {
                    self.expand(cmd, &c.data)?
                } else {
                    c.data.clone()
                };
                // The heredoc's name comes from the Dockerfile: written inside the handle only.
                d.write(&c.path, data)
                    .map_err(|e| self.err(cmd, format!("heredoc {}: {e}", c.path)))?;
                paths.push(c.path.clone());
            }
            heredocs = Some(dir);
            (Source::context(d, ignore), "heredoc".to_string())
        } else {
            match from {
                None => (self.shared.context_source(ignore)?, "context".to_string()),
                Some(f) => {
                    // Keyed by the checksum of what is copied, not by the source's own key
                    // or digest (BuildKit): a rebuilt stage whose copied files come out the
                    // same leaves this step cached.
                    let (diff_ids, id) = match self.shared.stage_index(f) {
                        Some(j) => {
                            let r = self
                                .shared
                                .results
                                .lock()
                                .unwrap()
                                .get(&j)
                                .cloned()
                                .ok_or_else(|| {
                                    self.err(cmd, format!("stage {f:?} was not built"))
                                })?;
                            (r.config.rootfs.diff_ids.clone(), "stage".to_string())
                        }
                        None => {
                            let image = self
                                .shared
                                .bases
                                // Numbered only once its key is known: a pull here is quiet.
                                .get(f, Some(&self.platform), &|_| {})
                                .map_err(|e| self.err(cmd, e))?;
                            (image.config.rootfs.diff_ids.clone(), "image".to_string())
                        }
                    };
                    let empty = tempfile::tempdir().map_err(|e| self.err(cmd, e))?;
                    let upper = Dir::open_ambient_dir(empty.path(), cap_std::ambient_authority())
                        .map_err(|e| self.err(cmd, e))?;
                    let root = self.shared.store.open_root(&diff_ids, upper)?;
                    heredocs = Some(empty);
                    let mut s = Source::stage(root);
                    s.ignore = ignore;
                    (s, id)
                }
            }
        };
        let mut matched: Vec<Matched> = Vec::new();
        for p in &paths {
            let m = source
                .matches(p)
                .map_err(|e| self.err(cmd, format!("failed to compute cache key: {e}")))?;
            matched.extend(m);
        }
        if matched.is_empty() {
            return Err(self.err(cmd, "no source files were specified"));
        }
        if (paths.len() > 1 || matched.len() > 1) && !dest_dir_written && !parents {
            return Err(self.err(cmd, format!("When using {verb} with more than one source file, the destination must be a directory and end with a /")));
        }
        let checksum = source.checksum(&matched)?;
        let mut flags = Vec::new();
        if let Some(c) = &chown {
            flags.push(format!("--chown={c}"));
        }
        if let Some(c) = &chmod_text {
            flags.push(format!("--chmod={c}"));
        }
        if parents {
            flags.push("--parents".into());
        }
        for e in exclude {
            flags.push(format!("--exclude={e}"));
        }
        let mut words = flags;
        words.extend(sources.paths.iter().map(|p| {
            if sources.contents.iter().any(|c| c.path == *p) {
                format!("<<{p}")
            } else {
                p.clone()
            }
        }));
        for c in &sources.contents {
            if !sources.paths.contains(&c.path) {
                words.push(format!("<<{}", c.path));
            }
        }
        words.push(sources.dest.clone());
        let created_by = format!("{verb} {} # buildkit", words.join(" "));
        let key = self.key.then(&[
            verb,
            &created_by,
            &source_id,
            &checksum,
            &dest,
            &dest_dir_written.to_string(),
            chown.as_deref().unwrap_or(""),
            &unpack.to_string(),
        ]);
        let result = self.layer_step(cmd, key, created_by, |b, _| {
            let (tmp, root) = b.scratch_root()?;
            let owner = chown
                .as_deref()
                .map(|c| b.resolve_owner(&root, c))
                .transpose()
                .map_err(|e| b.err(cmd, e))?;
            // An existing directory at the destination takes the sources into it.
            let dest_dir = dest_dir_written
                || root.stat(os(&dest), true).is_ok_and(|st| {
                    strata_runtime::fs::file_type(&st) == rustix::fs::FileType::Directory
                });
            let opts = CopyOptions {
                owner,
                chmod: chmod.clone(),
                unpack: verb == "ADD" && unpack && urls.is_empty(),
                privileged: strata_runtime::privilege::privileged(),
                parents,
            };
            copy(&source, &matched, &dest, dest_dir, &root, &opts).map_err(|e| b.err(cmd, e))?;
            drop(root);
            b.commit_dir(tmp.path())
        });
        drop(heredocs);
        result
    }
}

/// ADD of a URL: the body saved in `dir` as the URL's last path segment (a name from the
/// Dockerfile, so created through the handle), mode 0600 and the server's Last-Modified
/// time, checked against `--checksum` when given; never unpacked.
fn download(url: &str, dir: &Dir, checksum: Option<&str>) -> Result<String, String> {
    use sha2::Digest as _;
    const MAX: u64 = 8 << 30;
    let response = ureq::get(url)
        .call()
        .map_err(|e| format!("failed to GET {url}: {e}"))?;
    let modified = response
        .header("Last-Modified")
        .and_then(|h| chrono::DateTime::parse_from_rfc2822(h).ok())
        .map(|t| t.timestamp());
    let path_part = url.split(['?', '#']).next().unwrap_or(url);
    let name = path_part
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty() && *n != "." && *n != "..")
        .unwrap_or("__unnamed__")
        .to_string();
    let mut file = dir
        .create(&name)
        .map_err(|e| format!("{name}: {e}"))?
        .into_std();
    let mut hasher = sha2::Sha256::new();
    let mut reader = std::io::Read::take(response.into_reader(), MAX + 1);
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n =
            std::io::Read::read(&mut reader, &mut buf).map_err(|e| format!("read {url}: {e}"))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > MAX {
            return Err(format!("{url}: larger than {MAX} bytes"));
        }
        hasher.update(&buf[..n]);
        std::io::Write::write_all(&mut file, &buf[..n]).map_err(|e| format!("{name}: {e}"))?;
    }
    let digest = format!("sha256:{}", crate::engine::context::hex(&hasher.finalize()));
    if let Some(want) = checksum {
        if want != digest {
            return Err(format!("digest mismatch {digest}: {want}"));
        }
    }
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("{name}: {e}"))?;
    if let Some(secs) = modified {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
        let _ = file.set_modified(t);
    }
    Ok(name)
}
