//! Containers: a record (what was run, from which image, its state), an OCI runtime `Spec`
//! (the bundle's `config.json`), and a writable upper layer, under `containers/<id>/` in the
//! store. Both backends use these records; `ps`, `rm`, `diff` and `commit` read them.

mod commit;
pub mod copy;
pub mod health;
mod lifecycle;
pub mod logs;
pub mod monitor;
mod mounts;
mod network;
mod options;
mod spec;

pub use lifecycle::prepare;
pub use mounts::{
    parse_mount, parse_volume, parse_volumes_from, MountKind, MountPoint, MountRequest, VolumeMount,
};
pub use network::{Networking, HOSTS_FILE, RESOLV_FILE};
pub use options::{
    parse_publish, parse_signal, parse_size, parse_ulimit, valid_name, Bind, HostConfig,
    LogOptions, Network, PortMapping, Proto, RestartPolicy, RunOptions, DEFAULT_STOP_TIMEOUT,
};
pub use spec::{
    exec_spec, make_spec, process_args, process_env, ExecOptions, ANNOTATION_EXPOSED_PORTS,
    ANNOTATION_HTTP_MAX_INSTANCES, ANNOTATION_HTTP_TIMEOUT_MS, DEFAULT_CAPABILITIES, DEFAULT_PATH,
    MASKED_PATHS, READONLY_PATHS,
};

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use cap_std::fs::Dir;
use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use crate::backend::Kind;
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::fs::DirHandle;
use crate::store::{open_or_create, write_atomic, write_new, Image, Store};

const CONTAINERS_DIR: &str = "containers";
const RECORD: &str = "state.json";
const SPEC: &str = "config.json";
const UPPER: &str = "upper";
/// A renamed container's name: only `rename` writes it, so a runner that writes the record
/// (from its copy, made before the rename) cannot undo a rename.
const NAME: &str = "name";
/// In a container's directory while its monitor holds it paused.
pub(crate) const PAUSED: &str = "paused";
/// Removed containers' directories kept for reuse (see `make_dir`).
const SPARE_DIR: &str = ".spare";
const SPARES_KEPT: usize = 4;
/// A container's root directory, as `mkdir` makes it under the usual umask.
const UPPER_MODE: u32 = 0o755;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Running,
    /// Between two runs of a restart policy, waiting out the back-off.
    Restarting,
    /// Running, frozen by `pause`. Never written to a record: its monitor's mark file
    /// ([`PAUSED`]) says it, beside a record that says `running`.
    Paused,
    Exited,
}

/// A container as `strata ps` and `inspect` see it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Container {
    pub id: String,
    pub name: String,
    /// The image as the user named it.
    pub image: String,
    pub image_id: Digest,
    /// The image's manifest: kept (with its config and layers) while the container exists.
    pub manifest: crate::image::Descriptor,
    /// The image's layers, bottom first: the container's lower layers.
    pub layers: Vec<Digest>,
    pub runtime: Kind,
    pub created: String,
    pub status: Status,
    #[serde(default)]
    pub pid: Option<u32>,
    /// When that process started (clock ticks since boot, `/proc/PID/stat`): a pid the
    /// kernel has since given to another process is not the container's.
    #[serde(default)]
    pub pid_start: Option<u64>,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub finished_at: Option<String>,
    #[serde(default)]
    pub oom_killed: bool,
    /// Why it could not run, when it could not.
    #[serde(default)]
    pub error: Option<String>,
    /// `run --rm`: removed when it ends. A record left by a run that was killed is treated
    /// as removed: hidden from `list` and cleared by `prune`.
    #[serde(default)]
    pub auto_remove: bool,
    /// Runs started by its restart policy.
    #[serde(default)]
    pub restart_count: u32,
    /// Stopped by `stop`/`kill`: `unless-stopped` and `on-failure` do not restart it.
    #[serde(default)]
    pub stopped_by_user: bool,
    #[serde(default)]
    pub host: HostConfig,
    /// What it mounts (binds, volumes, tmpfs), resolved when it was made.
    #[serde(default)]
    pub mounts: Vec<MountPoint>,
}

/// The right to run a container: an exclusive lock on its directory, held by whoever runs
/// it (a foreground `run`, or the container's monitor) for as long as that lives. So "is it running" never trusts a record a killed process left.
pub struct Claim(OwnedFd);

/// A recordless container (a build's RUN step): its id and its root.
pub struct Scratch {
    pub id: String,
    pub rootfs: crate::backend::Rootfs,
}

impl Scratch {
    pub fn short_id(&self) -> &str {
        &self.id[..12]
    }
}

/// The containers of a store.
pub struct Containers<'a> {
    store: &'a Store,
    dir: Dir,
}

impl<'a> Containers<'a> {
    pub fn open(store: &'a Store) -> Result<Containers<'a>> {
        let dir = open_or_create(store.root_dir(), CONTAINERS_DIR)
            .context(|| "open containers directory".into())?;
        Ok(Containers { store, dir })
    }

    pub fn store(&self) -> &Store {
        self.store
    }

    /// Make a container: its directory and an empty upper layer. An unnamed container's
    /// record is first written by `save` when it starts (or ends without starting), so such
    /// a run costs one record write; the caller holds the store's writer lock throughout,
    /// and `prune` removes the directory of a create that never got that far. A named one's
    /// record is written here, under the index lock, so that no other create can take the
    /// name in between.
    pub fn create(
        &self,
        image: &Image,
        image_name: &str,
        runtime: Kind,
        name: Option<&str>,
    ) -> Result<Container> {
        let id = new_id()?;
        // Names are unique: checking and claiming one is serialised by the index lock. A
        // generated name needs no lock, like docker's.
        let lock = name.map(|_| self.store.index_lock()).transpose()?;
        let name = match name {
            Some(n) => {
                if !valid_name(n) {
                    return Err(Error::InvalidArgument(format!(
                        "invalid container name {n:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                    )));
                }
                if self.list()?.iter().any(|c| c.name == n) {
                    return Err(Error::Conflict(format!(
                        "the container name {n:?} is already in use"
                    )));
                }
                n.to_string()
            }
            None => generated_name(&id),
        };
        self.make_dir(&id)?;
        let container = Container::new(
            id,
            name,
            image_name.to_string(),
            image.id().clone(),
            image.manifest_descriptor.clone(),
            image.config.rootfs.diff_ids.clone(),
            runtime,
        );
        if lock.is_some() {
            self.save(&container)?;
        }
        Ok(container)
    }

    /// Name container `c` `new`, as docker's `rename`: unique under the index lock, as
    /// `create` names one, and written holding the container's claim, so that no runner
    /// rewrites the record with the old name. Refused while something runs it (its monitor
    /// or a foreground `run` holds the claim and writes the record).
    pub fn rename(&self, c: &Container, new: &str) -> Result<Container> {
        if !valid_name(new) {
            return Err(Error::InvalidArgument(format!(
                "Invalid container name ({new}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        if c.name == new {
            return Err(Error::InvalidArgument(
                "Renaming a container with the same name as its current name".into(),
            ));
        }
        let _lock = self.store.index_lock()?;
        if let Some(other) = self.list()?.into_iter().find(|o| o.name == new) {
            return Err(Error::Conflict(format!(
                "Conflict. The container name \"/{new}\" is already in use by container \"{}\". \
                 You have to remove (or rename) that container to be able to reuse that name.",
                other.id
            )));
        }
        // Under the index lock, as names are made unique.
        write_atomic(&self.dir_of(c)?, NAME, new.as_bytes(), false)?;
        self.reload(c)
    }

    /// Write the container's runtime spec (the bundle's `config.json`), once.
    pub fn save_spec(&self, c: &Container, spec: &Spec) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(spec).expect("serialize");
        write_new(&self.dir_of(c)?, SPEC, &bytes).map(|_| ())
    }

    /// Replace the container's record; advisory, so no fsync.
    pub fn save(&self, c: &Container) -> Result<()> {
        write_record(&self.dir_of(c)?, c)
    }

    /// Take the right to run `c`; `None` while something else runs it.
    pub fn claim(&self, c: &Container) -> Result<Option<Claim>> {
        let dir = self
            .lockable(&c.id)
            .map_err(|e| Error::io(format!("open container {}", c.id), e))?;
        match rustix::fs::flock(&dir, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(Claim(dir))),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(Error::io(format!("lock container {}", c.id), e.into())),
        }
    }

    /// Wait until nothing runs the container `id` (its claim is released).
    pub fn wait_unclaimed(&self, id: &str) -> Result<()> {
        match self.lockable(id) {
            Ok(dir) => rustix::fs::flock(&dir, rustix::fs::FlockOperation::LockShared)
                .map_err(|e| Error::io(format!("wait for container {id}"), e.into())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("open container {id}"), e)),
        }
    }

    /// Whether container `id` exists (its directory; its record may not be written yet).
    pub fn exists(&self, id: &str) -> bool {
        self.dir.is_dir(id)
    }

    /// Whether something runs container `id` (holds its claim).
    pub fn claimed(&self, id: &str) -> Result<bool> {
        match locked(&self.dir, std::ffi::OsStr::new(id)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            r => r.map_err(|e| Error::io(format!("open container {id}"), e)),
        }
    }

    /// Container `id`'s directory opened for reading, so that it can be locked (a `Dir`'s
    /// descriptor is only a path, which `flock` refuses).
    fn lockable(&self, id: &str) -> std::io::Result<OwnedFd> {
        lockable(&self.dir, std::ffi::OsStr::new(id))
    }

    /// `save`, unless the container's directory is gone (`rm -f` may take it while it runs).
    pub(crate) fn save_unless_removed(&self, c: &Container) -> Result<()> {
        match self.dir.open_dir(&c.id) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            dir => write_record(&dir.context(|| format!("open container {}", c.id))?, c),
        }
    }

    /// The container's directory (its bundle; its monitor's socket and log are there).
    pub fn dir_of(&self, c: &Container) -> Result<Dir> {
        self.dir_by_id(&c.id)
    }

    /// Container `id`'s directory, before its record may be written (a foreground run's).
    pub fn dir_by_id(&self, id: &str) -> Result<Dir> {
        self.dir
            .open_dir(id)
            .context(|| format!("open container {id}"))
    }

    /// Every container, newest first. Records that cannot be read are skipped.
    pub fn list(&self) -> Result<Vec<Container>> {
        let mut out = Vec::new();
        for entry in self
            .dir
            .entries()
            .context(|| "list containers".into())?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Ok(c) = self.read_record(&name) {
                if !c.abandoned() {
                    out.push(c);
                }
            }
        }
        out.sort_by(|a, b| b.created.cmp(&a.created));
        Ok(out)
    }

    /// The record in the container directory `name`, refreshed: one that says it runs
    /// while nothing holds its claim (its runner was killed, the machine rebooted) is shown
    /// as exited.
    fn read_record(&self, name: &str) -> std::io::Result<Container> {
        let bytes = self.dir.read(Path::new(name).join(RECORD))?;
        let mut c: Container = serde_json::from_slice(&bytes)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        match self.dir.read_to_string(Path::new(name).join(NAME)) {
            Ok(renamed) => c.name = renamed,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        if c.running() && !self.claimed(name).map_err(std::io::Error::other)? {
            c.orphaned();
        }
        if matches!(c.status, Status::Running | Status::Paused) {
            let paused = self.dir.exists(Path::new(name).join(PAUSED));
            c.status = if paused {
                Status::Paused
            } else {
                Status::Running
            };
        }
        Ok(c)
    }

    /// The record of `c` as it is now on disk (refreshed as `list` shows it).
    pub fn reload(&self, c: &Container) -> Result<Container> {
        self.read_record(&c.id).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::ContainerNotFound(c.id.clone()),
            _ => Error::io(format!("read container {}", c.id), e),
        })
    }

    /// By full or short ID, or by name.
    pub fn get(&self, key: &str) -> Result<Container> {
        // A full ID names its directory: one record read instead of every one.
        if key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()) {
            match self.read_record(key) {
                Ok(c) if !c.abandoned() => return Ok(c),
                _ => {}
            }
        }
        let all = self.list()?;
        if let Some(c) = all.iter().find(|c| c.name == key || c.id == key) {
            return Ok(c.clone());
        }
        let found: Vec<&Container> = all
            .iter()
            .filter(|c| !key.is_empty() && c.id.starts_with(key))
            .collect();
        match found.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(Error::ContainerNotFound(key.to_string())),
            _ => Err(Error::InvalidArgument(format!(
                "{key}: ambiguous container ID prefix"
            ))),
        }
    }

    pub fn spec(&self, c: &Container) -> Result<Spec> {
        let bytes = self
            .dir
            .read(Path::new(&c.id).join(SPEC))
            .context(|| format!("read spec of {}", c.id))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::InvalidDocument(format!("container {} spec: {e}", c.id)))
    }

    /// The host path of the container's directory (its bundle): what a native backend
    /// hands to the kernel (overlayfs upper and work dirs, bind-mount sources).
    pub fn path(&self, c: &Container) -> PathBuf {
        self.path_of(&c.id)
    }

    fn path_of(&self, id: &str) -> PathBuf {
        self.store.path().join(CONTAINERS_DIR).join(id)
    }

    /// The container's writable layer.
    pub fn upper(&self, c: &Container) -> Result<Dir> {
        self.dir
            .open_dir(Path::new(&c.id).join(UPPER))
            .context(|| format!("open upper layer of {}", c.id))
    }

    /// Bytes of file content in the container's upper layer (its own writes), walked
    /// through directory handles without following links; 0 if it cannot be read.
    pub fn upper_size(&self, c: &Container) -> u64 {
        self.upper(c).map(crate::store::tree_size).unwrap_or(0)
    }

    /// The container's root as a backend takes it: its image's unpacked layers, its upper
    /// layer and the work directory beside it.
    pub fn rootfs(&self, c: &Container) -> crate::backend::Rootfs {
        self.rootfs_of(&c.id, &c.layers, c.auto_remove)
    }

    fn rootfs_of(&self, id: &str, layers: &[Digest], volatile: bool) -> crate::backend::Rootfs {
        let dir = self.path_of(id);
        crate::backend::Rootfs {
            lowers: layers
                .iter()
                .rev()
                .map(|d| self.store.layer_path(d))
                .collect(),
            upper: dir.join(UPPER),
            work: dir.join("work"),
            volatile,
        }
    }

    /// A container that gets no record (a build's RUN step): a directory like any
    /// container's, its root `layers` (bottom first) under an empty upper layer. Removed by
    /// `remove_scratch`; one a crash left behind has no record, so `prune` clears it.
    pub fn scratch(&self, layers: &[Digest]) -> Result<Scratch> {
        let id = new_id()?;
        self.make_dir(&id)?;
        // Its upper layer becomes a layer (or nothing) as soon as the step ends.
        let rootfs = self.rootfs_of(&id, layers, true);
        Ok(Scratch { id, rootfs })
    }

    pub fn remove_scratch(&self, s: &Scratch) -> Result<()> {
        self.remove_dir(&s.id)
    }

    /// The container's root: its image's layers under its upper layer.
    pub fn root(&self, c: &Container) -> Result<crate::fs::Overlay<Dir>> {
        self.store.open_root(&c.layers, self.upper(c)?)
    }

    pub fn lowers(&self, c: &Container) -> Result<Vec<Dir>> {
        c.layers
            .iter()
            .rev()
            .map(|d| self.store.layer_dir(d))
            .collect()
    }

    pub fn remove(&self, c: &Container) -> Result<()> {
        self.remove_dir(&c.id)
    }

    /// Remove `c` and the anonymous volumes only it used (`run --rm`, `rm -v`).
    pub fn discard(&self, c: &Container) -> Result<()> {
        self.remove(c)?;
        // Most mount no volume: `run --rm`'s path takes no lock for them.
        if !c.mounts.iter().any(|m| m.kind == MountKind::Volume) {
            return Ok(());
        }
        crate::volume::Volumes::open(self.store)?.remove_anonymous_of(c)
    }

    fn remove_dir(&self, id: &str) -> Result<()> {
        // Most containers leave an empty upper layer: their few known files go directly and
        // the directory is kept as a spare; anything else (files in the upper, directories
        // without write permission) takes the walk that makes everything removable first.
        let quick = (|| -> std::io::Result<()> {
            let cdir = self.dir.open_dir(id)?;
            for file in [RECORD, SPEC] {
                match cdir.remove_file(file) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    r => r?,
                }
            }
            if self.keep_spare(&cdir, id) {
                return Ok(());
            }
            cdir.remove_dir(UPPER)?;
            self.dir.remove_dir(id)
        })();
        if quick.is_ok() {
            return Ok(());
        }
        crate::store::make_removable(&self.dir, id)?;
        self.dir
            .remove_dir_all(id)
            .context(|| format!("remove container {id}"))
    }

    // ----- spare directories -----
    //
    // Removing a directory frees its block, and on a filesystem mounted with `discard` the
    // kernel waits for the device to trim it: ~0.1-0.2 ms per rmdir on ext4 here, the largest
    // cost of a short `run --rm`. So the directory of a removed container whose upper layer
    // stayed empty is kept (up to SPARES_KEPT) and renamed into place for the next one.

    /// A new container directory `id` holding an empty upper layer: a spare one when there
    /// is one, else made.
    fn make_dir(&self, id: &str) -> Result<()> {
        if let Ok(spares) = self.dir.open_dir(SPARE_DIR) {
            for name in spares.names().unwrap_or_default() {
                // The claim of the container it was may still be held by whoever removed it
                // (a `run --rm` about to exit): taken, its new container could not be claimed.
                if locked(&spares, &name).unwrap_or(true) {
                    continue;
                }
                // A concurrent create may take the same spare: the rename decides.
                if spares.rename(&name, &self.dir, id).is_ok() {
                    if self.reset_upper(id).is_ok() {
                        return Ok(());
                    }
                    // Not a usable spare (damaged by hand?): drop it, make a new one.
                    let _ = crate::store::make_removable(&self.dir, id);
                    let _ = self.dir.remove_dir_all(id);
                    break;
                }
            }
        }
        self.dir
            .create_dir(id)
            .context(|| format!("create container {id}"))?;
        let cdir = self
            .dir
            .open_dir(id)
            .context(|| format!("open container {id}"))?;
        let mut builder = cap_std::fs::DirBuilder::new();
        cap_std::fs::DirBuilderExt::mode(&mut builder, UPPER_MODE);
        cdir.create_dir_with(UPPER, &builder)
            .context(|| "create upper layer".into())
    }

    /// Give a recycled upper layer a new directory's mode and times (through a handle opened
    /// without following links).
    fn reset_upper(&self, id: &str) -> Result<()> {
        let upper = self
            .dir
            .open_dir_nofollow(std::ffi::OsStr::new(id))
            .and_then(|cdir| cdir.open_dir_nofollow(std::ffi::OsStr::new(UPPER)))
            .context(|| format!("open upper layer of {id}"))?;
        let now = rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_NOW,
        };
        rustix::fs::fchmod(&upper, rustix::fs::Mode::from_raw_mode(UPPER_MODE))
            .and_then(|()| {
                rustix::fs::futimens(
                    &upper,
                    &rustix::fs::Timestamps {
                        last_access: now,
                        last_modification: now,
                    },
                )
            })
            .context(|| format!("reset upper layer of {id}"))
    }

    /// Move the container's directory (`cdir`, its files already gone) to the spares when it
    /// holds nothing but an empty upper layer that is plainly ours; false to remove it.
    fn keep_spare(&self, cdir: &Dir, id: &str) -> bool {
        let plain = (|| -> std::io::Result<bool> {
            if cdir.names()? != [std::ffi::OsString::from(UPPER)] {
                return Ok(false);
            }
            let upper = cdir.open_dir_nofollow(std::ffi::OsStr::new(UPPER))?;
            let st = rustix::fs::fstat(&upper)?;
            let mut xattrs = [0u8; 1];
            Ok(upper.names()?.is_empty()
                && st.st_uid == rustix::process::geteuid().as_raw()
                && st.st_gid == rustix::process::getegid().as_raw()
                && rustix::fs::flistxattr(&upper, &mut xattrs[..0])? == 0)
        })();
        if !plain.unwrap_or(false) {
            return false;
        }
        let Ok(spares) = open_or_create(&self.dir, SPARE_DIR) else {
            return false;
        };
        spares.names().is_ok_and(|n| n.len() < SPARES_KEPT)
            && self.dir.rename(id, &spares, id).is_ok()
    }

    /// Remove container directories without a record, and `--rm` containers whose run was
    /// killed: debris of a `run` or build step that did not get to clean up. Only under the
    /// store's exclusive GC lock, when no create is in flight.
    pub(crate) fn remove_debris(&self) -> Result<()> {
        for entry in self
            .dir
            .entries()
            .context(|| "list containers".into())?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let debris = match self.read_record(&name) {
                Err(e) => e.kind() == std::io::ErrorKind::NotFound,
                Ok(c) => c.abandoned(),
            };
            // Best effort, as for tmp/: what cannot go now goes at a later prune.
            if debris {
                let _ = crate::store::make_removable(&self.dir, &name);
                let _ = self.dir.remove_dir_all(&name);
            }
        }
        Ok(())
    }
}

impl Container {
    /// A just-created container's record: not yet run.
    fn new(
        id: String,
        name: String,
        image: String,
        image_id: Digest,
        manifest: crate::image::Descriptor,
        layers: Vec<Digest>,
        runtime: Kind,
    ) -> Container {
        Container {
            id,
            name,
            image,
            image_id,
            manifest,
            layers,
            runtime,
            created: now(),
            status: Status::Created,
            pid: None,
            pid_start: None,
            exit_code: None,
            started_at: None,
            finished_at: None,
            oom_killed: false,
            error: None,
            auto_remove: false,
            restart_count: 0,
            stopped_by_user: false,
            host: HostConfig::default(),
            mounts: Vec::new(),
        }
    }

    /// How a record left "running" by a runner that is gone (killed, machine rebooted) is
    /// shown: exited, killed as its processes were (they die with their runner).
    fn orphaned(&mut self) {
        if matches!(self.status, Status::Running | Status::Paused) {
            self.exit_code = Some(137);
        }
        self.status = Status::Exited;
        self.pid = None;
    }

    /// Record that the container's process `pid` runs.
    pub fn started(&mut self, pid: u32) {
        self.status = Status::Running;
        self.pid = Some(pid);
        self.pid_start = process_start(pid);
        self.started_at = Some(now());
    }

    /// The container's process, if the record names one that still runs: the pid alive
    /// and started when the record says (never a pid the kernel reused).
    pub fn live_pid(&self) -> Option<rustix::process::Pid> {
        let pid = self.pid?;
        let start = self.pid_start?;
        (process_start(pid) == Some(start)).then(|| rustix::process::Pid::from_raw(pid as i32))?
    }

    // ----- what a command may do, by status -----

    /// `start`: not while it runs.
    pub fn can_start(&self) -> bool {
        !self.running()
    }

    /// `kill`: only while it runs.
    pub fn can_kill(&self) -> bool {
        matches!(self.status, Status::Running | Status::Paused)
    }

    /// `rm`: not while it runs (or waits to run again), unless forced (it is killed first).
    pub fn can_remove(&self, force: bool) -> bool {
        force || !self.running()
    }

    /// Running (paused or not), or between two runs of its restart policy.
    pub fn running(&self) -> bool {
        matches!(
            self.status,
            Status::Running | Status::Paused | Status::Restarting
        )
    }

    /// The id's first 12 characters; a record edited by hand may hold a shorter id.
    pub fn short_id(&self) -> &str {
        self.id.get(..12).unwrap_or(&self.id)
    }

    /// A `--rm` container whose run is gone without removing it (after `refresh`).
    fn abandoned(&self) -> bool {
        self.auto_remove && self.status == Status::Exited
    }
}

/// Replace the record in the container's directory `dir`; advisory, so no fsync.
/// Directory `name` in `dir` opened for reading, so that it can be locked (a `Dir`'s
/// descriptor is only a path, which `flock` refuses).
fn lockable(dir: &Dir, name: &std::ffi::OsStr) -> std::io::Result<OwnedFd> {
    use rustix::fs::OFlags;
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(Into::into)
}

/// Whether directory `name` in `dir` is locked by a claim (the probe's own lock goes with
/// its descriptor).
fn locked(dir: &Dir, name: &std::ffi::OsStr) -> std::io::Result<bool> {
    let fd = lockable(dir, name)?;
    Ok(rustix::fs::flock(&fd, rustix::fs::FlockOperation::NonBlockingLockShared).is_err())
}

fn write_record(dir: &Dir, c: &Container) -> Result<()> {
    let bytes = if c.status == Status::Paused {
        // Paused is the mark file's to say (it goes with the monitor).
        let mut running = c.clone();
        running.status = Status::Running;
        serde_json::to_vec_pretty(&running)
    } else {
        serde_json::to_vec_pretty(c)
    }
    .expect("serialize");
    write_atomic(dir, RECORD, &bytes, false)
}

/// When process `pid` started, in clock ticks since boot (field 22 of `/proc/PID/stat`).
pub fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces or parentheses.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// 256 random bits, as docker's IDs.
pub(crate) fn new_id() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::io("draw a container ID", std::io::Error::other(e)))?;
    Ok(hex::encode(bytes))
}

/// docker-style `adjective_name`, chosen by the ID.
fn generated_name(id: &str) -> String {
    const LEFT: [&str; 16] = [
        "admiring", "brave", "clever", "dreamy", "eager", "fervent", "gallant", "happy", "jolly",
        "keen", "lucid", "modest", "nifty", "quirky", "serene", "vibrant",
    ];
    const RIGHT: [&str; 16] = [
        "babbage", "curie", "darwin", "euler", "faraday", "galois", "hopper", "kepler", "lovelace",
        "meitner", "noether", "pascal", "ritchie", "shannon", "turing", "wozniak",
    ];
    let n = u32::from_str_radix(&id[..8], 16).unwrap_or(0) as usize;
    format!("{}_{}", LEFT[n % 16], RIGHT[(n / 16) % 16])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: Status, pid: Option<u32>) -> Container {
        let digest: Digest = format!("sha256:{}", "0".repeat(64)).parse().unwrap();
        let mut c = Container::new(
            "a".repeat(64),
            "n".into(),
            "i".into(),
            digest.clone(),
            crate::image::Descriptor::new("m", digest, 0),
            Vec::new(),
            Kind::Native,
        );
        if let Some(pid) = pid {
            c.started(pid);
        }
        c.status = status;
        c
    }

    #[test]
    fn a_record_names_its_process_only_while_it_is_that_process() {
        let me = std::process::id();
        let running = record(Status::Running, Some(me));
        assert_eq!(
            running.live_pid().map(|p| p.as_raw_nonzero().get() as u32),
            Some(me)
        );
        assert!(running.can_kill() && !running.can_start());
        assert!(!running.can_remove(false) && running.can_remove(true));
        // The same pid with another start time: the kernel gave it to someone else.
        let mut reused = running.clone();
        reused.pid_start = reused.pid_start.map(|t| t + 1);
        assert!(reused.live_pid().is_none());
        let mut orphan = reused.clone();
        orphan.orphaned();
        assert_eq!(
            (orphan.status, orphan.exit_code),
            (Status::Exited, Some(137))
        );
        let restarting = record(Status::Restarting, None);
        assert!(!restarting.can_start() && !restarting.can_kill());
        assert!(!restarting.can_remove(false));
        // A record from before start times were kept is never taken for a live process.
        let mut old = running.clone();
        old.pid_start = None;
        assert!(old.live_pid().is_none());
        let exited = record(Status::Exited, None);
        assert!(exited.can_start() && exited.can_remove(false) && !exited.can_kill());
    }

    #[test]
    fn a_short_id_in_a_record_is_shown_whole() {
        let mut c = record(Status::Exited, None);
        assert_eq!(c.short_id(), "a".repeat(12));
        c.id = "abc".into();
        assert_eq!(c.short_id(), "abc");
    }
}
