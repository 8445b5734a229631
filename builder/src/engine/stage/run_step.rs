//! RUN: the step's command in a temporary container of the stage's state (a scratch
//! directory and a spec on the backend the runtime chooses), its `--mount`s, and its output
//! under the step's number; the container's changes are the layer.

use cap_std::fs::Dir;
use strata_runtime::backend::{Stdio, Stream, Task};
use strata_runtime::compression::Compression;
use strata_runtime::container::{Containers, Network, RunOptions};
use strata_runtime::fs::Overlay;
use strata_runtime::layer::WriteOptions;

use super::{StageBuilder, PROXY_ARGS};
use crate::dockerfile;
use crate::dockerfile::instructions::{Command, CommandLine};
use crate::engine::cache::CachedLayer;
use crate::engine::context::{os, Ignore};
use crate::engine::{BuildError, Shared};

impl StageBuilder<'_, '_> {
    pub(super) fn run_step(
        &mut self,
        cmd: &Command,
        line: &CommandLine,
        network: &str,
        mounts: &[String],
    ) -> Result<(), BuildError> {
        let argv = if !line.files.is_empty() {
            // As BuildKit: a command that is one heredoc marker runs the heredoc's body with
            // SHELL; any other command gets its heredocs back after it, for the shell to read.
            let [text] = line.args.as_slice() else {
                return Err(self.err(cmd, "parsing produced an invalid run command"));
            };
            if !line.prepend_shell {
                return Err(self.err(cmd, "parsing produced an invalid run command"));
            }
            let script = if dockerfile::parse_heredoc(text).ok().flatten().is_some() {
                let f = &line.files[0];
                if f.chomp {
                    dockerfile::chomp_heredoc_content(&f.data)
                } else {
                    f.data.clone()
                }
            } else {
                let mut full = text.clone();
                for f in &line.files {
                    full.push('\n');
                    full.push_str(&f.data);
                    full.push_str(&f.name);
                }
                full
            };
            let mut argv = self.shell();
            argv.push(script);
            argv
        } else {
            self.command(line)
        };
        // ARGs with a value are in RUN's environment (ENV wins over an ARG of the same name).
        let env_keys: Vec<String> = self
            .config
            .config
            .as_ref()
            .and_then(|c| c.env.clone())
            .unwrap_or_default()
            .iter()
            .map(|e| e.split_once('=').map_or(e.clone(), |(k, _)| k.to_string()))
            .collect();
        let args: Vec<(String, String)> = self
            .args
            .iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
            .collect();
        let mut run_env: Vec<String> = args
            .iter()
            .filter(|(k, _)| !env_keys.contains(k))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        for p in PROXY_ARGS {
            if let Some(v) = self.shared.opts.build_args.get(p) {
                if !args.iter().any(|(k, _)| k == p) {
                    run_env.push(format!("{p}={v}"));
                }
            }
        }
        let prefix = if args.is_empty() {
            String::new()
        } else {
            format!(
                "|{} {} ",
                args.len(),
                args.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        };
        let created_by = format!("RUN {prefix}{} # buildkit", argv.join(" "));
        let network = match network {
            "" | "default" => self.shared.opts.network.clone(),
            "host" => Network::Host,
            "none" => Network::None,
            other => return Err(self.err(cmd, format!("unsupported network mode {other:?}"))),
        };
        let mounts = self.run_mounts(cmd, mounts)?;
        let c = self.config.config.clone().unwrap_or_default();
        let env_json = serde_json::to_string(&(&c.env, &run_env)).expect("serialize");
        let key = self.key.then(&[
            "run",
            &created_by,
            &env_json,
            c.user.as_deref().unwrap_or(""),
            &self.workdir(),
            &format!("{network:?}"),
            &format!("{}/{}", self.platform.os, self.platform.architecture),
            &mounts.key,
        ]);
        self.layer_step(cmd, key, created_by, |b, step| {
            b.execute(cmd, step, argv, run_env, network, &mounts)
        })
    }

    /// `RUN --mount`s: `bind` (read-only, from the context), `cache` (a directory kept in the
    /// store by id, shared by builds) and `tmpfs`. A bind's content is part of the step's key;
    /// a cache's is not (as BuildKit).
    fn run_mounts(&self, cmd: &Command, raw: &[String]) -> Result<RunMounts, BuildError> {
        use crate::dockerfile::instructions::{parse_mount, MountType};
        let mut out = RunMounts::default();
        let expand = |v: &str| self.expand(cmd, v).map_err(|e| e.to_string());
        for r in raw {
            let m = parse_mount(r, Some(&expand)).map_err(|e| self.err(cmd, e))?;
            // Absolute and clean; relative to WORKDIR as written.
            let target = || -> Result<String, BuildError> {
                let t = m
                    .target
                    .clone()
                    .ok_or_else(|| self.err(cmd, "mount target is required"))?;
                let t = if t.starts_with('/') {
                    t
                } else {
                    format!("{}/{t}", self.workdir().trim_end_matches('/'))
                };
                Ok(format!("/{}", crate::engine::context::clean(&t)))
            };
            match m.kind {
                MountType::Bind => {
                    let target = target()?;
                    if m.from.is_some() {
                        return Err(self.err(
                            cmd,
                            "RUN --mount=type=bind,from=… is not supported by this builder yet",
                        ));
                    }
                    // parse_mount makes a bind read-only unless rw (or ro=false) was asked.
                    if !m.read_only {
                        return Err(self.err(
                            cmd,
                            "read-write bind mounts are not supported by this builder yet",
                        ));
                    }
                    let source = crate::engine::context::clean(m.source.as_deref().unwrap_or(""));
                    let host =
                        context_path(&self.shared.context, &self.shared.opts.context, &source)
                            .map_err(|e| self.err(cmd, e))?;
                    let ctx = self.shared.context_source(Ignore::default())?;
                    let path = if source.is_empty() {
                        "."
                    } else {
                        source.as_str()
                    };
                    let matched = ctx.matches(path).map_err(|e| self.err(cmd, e))?;
                    out.key.push_str(&format!(
                        "bind {source} {target} {}\n",
                        ctx.checksum(&matched)?
                    ));
                    out.binds.push(strata_runtime::container::Bind {
                        host,
                        container: target,
                        read_only: true,
                    });
                }
                MountType::Cache => {
                    let target = target()?;
                    use sha2::Digest as _;
                    let id = m.id.clone().unwrap_or_else(|| target.clone());
                    let hash = crate::engine::context::hex(&sha2::Sha256::digest(id.as_bytes()));
                    let dir = self
                        .shared
                        .store
                        .cache_path(crate::engine::MOUNT_CACHE)
                        .map_err(|e| self.err(cmd, e))?
                        .join(hash);
                    if !dir.exists() {
                        std::fs::create_dir_all(&dir).map_err(|e| self.err(cmd, e))?;
                        use std::os::unix::fs::PermissionsExt;
                        let mode = m.mode.unwrap_or(0o755);
                        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode))
                            .map_err(|e| self.err(cmd, e))?;
                        if strata_runtime::privilege::privileged() {
                            std::os::unix::fs::chown(
                                &dir,
                                Some(m.uid.unwrap_or(0)),
                                Some(m.gid.unwrap_or(0)),
                            )
                            .map_err(|e| self.err(cmd, e))?;
                        }
                    }
                    out.key.push_str(&format!("cache {id} {target}\n"));
                    out.binds.push(strata_runtime::container::Bind {
                        host: dir,
                        container: target,
                        read_only: m.read_only,
                    });
                }
                MountType::Tmpfs => {
                    let target = target()?;
                    out.key.push_str(&format!("tmpfs {target}\n"));
                    out.tmpfs.push(target);
                }
                MountType::Secret => {
                    // BuildKit's id: `id=`, else `source=`, else the target's base name.
                    let id =
                        m.id.clone()
                            .or_else(|| m.source.clone())
                            .or_else(|| {
                                m.target
                                    .as_deref()
                                    .and_then(|t| t.rsplit('/').find(|p| !p.is_empty()))
                                    .map(String::from)
                            })
                            .unwrap_or_default();
                    let Some(value) = self.shared.opts.secrets.get(&id) else {
                        if m.required {
                            return Err(self.err(cmd, format!("secret {id}: not found")));
                        }
                        continue;
                    };
                    if let Some(var) = &m.env {
                        let text = std::str::from_utf8(value).map_err(|_| {
                            self.err(cmd, format!("secret {id}: env={var} needs UTF-8 text"))
                        })?;
                        out.env.push(format!("{var}={text}"));
                    }
                    // A file too unless only env= was asked for.
                    let target = match (&m.target, &m.env) {
                        (None, Some(_)) => None,
                        (None, None) => Some(format!("/run/secrets/{id}")),
                        (Some(_), _) => Some(target()?),
                    };
                    out.key.push_str(&format!(
                        "secret {id} {} {}\n",
                        target.as_deref().unwrap_or("-"),
                        m.env.as_deref().unwrap_or("-")
                    ));
                    if let Some(target) = target {
                        let host = out
                            .secret_file(value, m.mode.unwrap_or(0o400), m.uid, m.gid)
                            .map_err(|e| self.err(cmd, format!("secret {id}: {e}")))?;
                        out.files.push(strata_runtime::container::Bind {
                            host,
                            container: target,
                            read_only: true,
                        });
                    }
                }
                MountType::Ssh => {
                    let id = m.id.clone().unwrap_or_else(|| "default".into());
                    let Some(socket) = self.shared.opts.ssh.get(&id) else {
                        if m.required {
                            return Err(self
                                .err(cmd, format!("no SSH key {id:?} forwarded from the client")));
                        }
                        continue;
                    };
                    let target = match &m.target {
                        Some(_) => target()?,
                        None => format!(
                            "/run/buildkit/ssh_agent.{}",
                            out.env
                                .iter()
                                .filter(|e| e.starts_with("SSH_AUTH_SOCK="))
                                .count()
                        ),
                    };
                    out.key.push_str(&format!("ssh {id} {target}\n"));
                    // The first ssh mount is the step's agent, as BuildKit sets it.
                    if !out.env.iter().any(|e| e.starts_with("SSH_AUTH_SOCK=")) {
                        out.env.push(format!("SSH_AUTH_SOCK={target}"));
                    }
                    out.files.push(strata_runtime::container::Bind {
                        host: socket.clone(),
                        container: target,
                        read_only: false,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Run `argv` in a temporary container of the stage's current state; its changes are the
    /// layer. The container is a directory and a spec handed to the backend, nothing more:
    /// no image, no record. Its output reaches the progress line by line, as step `step`'s.
    fn execute(
        &self,
        cmd: &Command,
        step: usize,
        argv: Vec<String>,
        env: Vec<String>,
        network: Network,
        mounts: &RunMounts,
    ) -> Result<CachedLayer, BuildError> {
        let store = self.shared.store;
        let containers = Containers::open(store)?;
        let scratch = containers.scratch(&self.config.rootfs.diff_ids)?;
        let result = (|| -> Result<CachedLayer, BuildError> {
            // Secrets and the agent go into the run, never into the key or the history.
            let mut env = env;
            env.extend(mounts.env.iter().cloned());
            let mut binds = mounts.binds.clone();
            binds.extend(mounts.files.iter().cloned());
            let opts = RunOptions {
                entrypoint: Some(String::new()),
                args: argv.clone(),
                env,
                host: strata_runtime::container::HostConfig {
                    network,
                    ..Default::default()
                },
                binds,
                tmpfs: mounts.tmpfs.clone(),
                ..Default::default()
            };
            // Mount points the image lacks are made for the run and are not part of the layer.
            let root = scratch.rootfs.overlay()?;
            // (first directory made, mount point) for each target the image lacks.
            let made: Vec<(String, String)> = mounts
                .targets()
                .filter_map(|t| first_missing(&root, &t).map(|first| (first, t)))
                .collect();
            let (spec, kind) = strata_runtime::container::prepare(
                &self.config,
                self.platform.is_wasm(),
                &opts,
                scratch.short_id(),
                || scratch.rootfs.overlay(),
                None,
            )?;
            if kind == strata_runtime::backend::Kind::Wasm && !mounts.files.is_empty() {
                return Err(self.err(
                    cmd,
                    "RUN --mount=type=secret|ssh needs a native stage: the Wasm backend binds directories only",
                ));
            }
            let task = Task {
                id: &scratch.id,
                spec: &spec,
                rootfs: &scratch.rootfs,
                network: None,
            };
            let exit = run_with_output(self.shared, step, |stdio| {
                self.shared
                    .backends
                    .get(kind)
                    .run(&task, stdio, &mut |_| Ok(()))
            })
            .map_err(|e| self.err(cmd, e))?;
            if exit.code != 0 {
                return Err(self.err(
                    cmd,
                    format!(
                        "process {:?} did not complete successfully: exit code: {}",
                        argv.join(" "),
                        exit.code
                    ),
                ));
            }
            for (first, target) in &made {
                remove_mount_points(&root, first, target);
            }
            drop(root);
            let upper = Dir::open_ambient_dir(&scratch.rootfs.upper, cap_std::ambient_authority())
                .map_err(|e| self.err(cmd, e))?;
            let layer =
                store.layer_from_build_dir(&upper, Compression::Gzip, &WriteOptions::from_env())?;
            Ok(CachedLayer {
                descriptor: layer.descriptor,
                diff_id: layer.diff_id,
            })
        })();
        containers.remove_scratch(&scratch)?;
        result
    }
}

/// What a RUN's `--mount`s give its container, and their part of the step's key.
#[derive(Debug, Default)]
struct RunMounts {
    binds: Vec<strata_runtime::container::Bind>,
    tmpfs: Vec<String>,
    /// Secret files and agent sockets, bound as files.
    files: Vec<strata_runtime::container::Bind>,
    /// `env=` secrets and SSH_AUTH_SOCK: the run's environment only.
    env: Vec<String>,
    key: String,
    /// Where the secret files are while the step runs: a private directory outside the
    /// store (in memory where /dev/shm is), removed with this.
    secrets: Option<tempfile::TempDir>,
}

impl RunMounts {
    /// A secret's value written to a file of its own (mode, owner as asked) for a bind.
    fn secret_file(
        &mut self,
        value: &[u8],
        mode: u32,
        uid: Option<u32>,
        gid: Option<u32>,
    ) -> std::io::Result<std::path::PathBuf> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        if self.secrets.is_none() {
            let shm = std::path::Path::new("/dev/shm");
            let mut dir = tempfile::Builder::new();
            dir.prefix("strata-secrets");
            self.secrets = Some(if shm.is_dir() {
                dir.tempdir_in(shm).or_else(|_| dir.tempdir())?
            } else {
                dir.tempdir()?
            });
        }
        let dir = self.secrets.as_ref().expect("made above").path();
        let path = dir.join(format!("{}", self.files.len()));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode & 0o7777)
            .open(&path)?;
        f.write_all(value)?;
        if strata_runtime::privilege::privileged() {
            std::os::unix::fs::chown(&path, Some(uid.unwrap_or(0)), Some(gid.unwrap_or(0)))?;
        }
        Ok(path)
    }
}

impl RunMounts {
    fn targets(&self) -> impl Iterator<Item = String> + '_ {
        self.binds
            .iter()
            .chain(&self.files)
            .map(|b| b.container.clone())
            .chain(self.tmpfs.iter().cloned())
    }
}

/// The longest piece of a step's output passed to the progress as one line.
const MAX_LINE: u64 = 64 * 1024;

/// Run `f` with stdout and stderr on one pipe whose lines go to the progress as step
/// `step`'s output (as BuildKit interleaves a step's two streams), until the process and
/// everything that held the pipe are gone.
fn run_with_output<T>(
    shared: &Shared<'_>,
    step: usize,
    f: impl FnOnce(Stdio) -> strata_runtime::Result<T>,
) -> strata_runtime::Result<T> {
    let io = |e: std::io::Error| strata_runtime::Error::io("make the step's output pipe", e);
    let (reader, writer) =
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| io(e.into()))?;
    let stderr = writer.try_clone().map_err(io)?;
    std::thread::scope(|s| {
        let relay = s.spawn(move || {
            relay_lines(std::fs::File::from(reader), |text| {
                shared.progress.output(step, text)
            })
        });
        let result = f(Stdio {
            stdin: None,
            stdout: Stream::Fd(writer),
            stderr: Stream::Fd(stderr),
        });
        let _ = relay.join();
        result
    })
}

/// Pass what `from` gives to `out` line by line, without the newline, until it ends. A line
/// longer than [`MAX_LINE`] goes in pieces, so a process that never writes a newline cannot
/// grow the buffer without end.
fn relay_lines(from: impl std::io::Read, mut out: impl FnMut(&str)) {
    use std::io::{BufRead, Read};
    let mut lines = std::io::BufReader::new(from);
    let mut line = Vec::new();
    while (&mut lines)
        .take(MAX_LINE)
        .read_until(b'\n', &mut line)
        .is_ok_and(|n| n > 0)
    {
        out(String::from_utf8_lossy(&line).trim_end_matches('\n'));
        line.clear();
    }
}

/// The first directory on the way to `target` that the root does not have.
fn first_missing(root: &Overlay<Dir>, target: &str) -> Option<String> {
    let mut at = String::new();
    for part in target.split('/').filter(|p| !p.is_empty()) {
        at.push('/');
        at.push_str(part);
        if root.stat(os(&at), false).is_err() {
            return Some(at);
        }
    }
    None
}

/// Remove the empty directories made for a mount point, from `target` up to `first`.
fn remove_mount_points(root: &Overlay<Dir>, first: &str, target: &str) {
    // A file's mount point (a secret, an agent's socket) first, then the directories made.
    let mut at = target.to_string();
    if root.remove_file(os(target)).is_ok() {
        match at.rsplit_once('/') {
            Some((parent, _)) => at = parent.to_string(),
            None => return,
        }
    }
    while at.len() >= first.len() {
        if root.remove_dir(os(&at)).is_err() {
            break;
        }
        match at.rsplit_once('/') {
            Some((parent, _)) => at = parent.to_string(),
            None => break,
        }
    }
}

/// The host path of `rel` in the build context, for the kernel to bind: each component is
/// looked up through the context's directory handle and must be a real directory or file
/// (no symlink, no `..` out of it).
fn context_path(
    context: &Dir,
    host: &std::path::Path,
    rel: &str,
) -> Result<std::path::PathBuf, String> {
    let mut at = std::path::PathBuf::new();
    for part in rel.split('/').filter(|p| !p.is_empty()) {
        at.push(part);
        let meta = context
            .symlink_metadata(&at)
            .map_err(|e| format!("bind source {rel}: {e}"))?;
        if meta.file_type().is_symlink() {
            return Err(format!(
                "bind source {rel}: symlinks are not followed out of the context"
            ));
        }
    }
    Ok(host.join(at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_without_newlines_is_relayed_in_bounded_pieces() {
        let long = vec![b'x'; 3 * MAX_LINE as usize + 10];
        let mut input = long.clone();
        input.extend_from_slice(b"\nlast\n");
        let mut got = Vec::new();
        relay_lines(&input[..], |l| got.push(l.to_string()));
        assert!(got.iter().all(|l| l.len() <= MAX_LINE as usize));
        assert_eq!(
            got.len(),
            5,
            "three full pieces, the rest, and the last line"
        );
        assert_eq!(got[..4].concat().into_bytes(), long);
        assert_eq!(got[4], "last");
    }
}
