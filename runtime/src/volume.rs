//! Volumes: directories that outlive containers, docker's `local` driver. Each is
//! `volumes/<name>/` in the store: `_data`, what containers see (a bind mount on both
//! backends), and `volume.json`, what `volume inspect` shows. `volume.lock` serialises
//! making, using and removing volumes, so a volume a container's record names is never
//! removed under it: a container's volumes are resolved and recorded under that lock
//! (`Containers::create_for`), and removal checks every record under it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use cap_std::fs::Dir;
use serde::{Deserialize, Serialize};

use crate::container::{Container, Containers, MountKind};
use crate::error::{Error, IoContext, Result};
use crate::store::{open_or_create, write_atomic, Lock, Store};

const VOLUMES_DIR: &str = "volumes";
const VOLUME_LOCK: &str = "volume.lock";
const META: &str = "volume.json";
/// docker's name for what a container sees, kept so paths look as users know them.
const DATA: &str = "_data";
/// The label docker (23+) puts on the volumes it makes for a container's unnamed mounts.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// A volume as `volume inspect` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Volume {
    pub name: String,
    pub created: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Made for a container's unnamed mount (`-v /data`, an image's VOLUME): removed with
    /// a `--rm` container or by `rm -v`, and what `volume prune` removes by default.
    #[serde(default)]
    pub anonymous: bool,
    /// `_data`'s path on the host.
    #[serde(skip)]
    pub mountpoint: PathBuf,
}

/// docker's rule for local volume names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn check_name(name: &str) -> Result<()> {
    if valid_name(name) {
        return Ok(());
    }
    Err(Error::InvalidArgument(format!(
        "{name:?} includes invalid characters for a local volume name, only \
         \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, \
         use absolute path"
    )))
}

fn not_found(name: &str) -> Error {
    Error::VolumeNotFound(name.to_string())
}

pub struct Volumes<'a> {
    store: &'a Store,
    dir: Dir,
    path: PathBuf,
}

impl<'a> Volumes<'a> {
    pub fn open(store: &'a Store) -> Result<Volumes<'a>> {
        let dir = open_or_create(store.root_dir(), VOLUMES_DIR)
            .context(|| "open the volumes directory".into())?;
        Ok(Volumes {
            store,
            dir,
            path: store.path().join(VOLUMES_DIR),
        })
    }

    /// Held while volumes are made, removed, or bound to a container's record.
    pub fn lock(&self) -> Result<Lock> {
        self.store.lock(VOLUME_LOCK, true)
    }

    /// The volume `name`, made (with `labels`) if there is none; whether it was made.
    /// Call with [`Volumes::lock`] held. `None` makes an anonymous volume.
    pub fn ensure(
        &self,
        name: Option<&str>,
        labels: &BTreeMap<String, String>,
    ) -> Result<(Volume, bool)> {
        let name = match name {
            Some(name) => {
                check_name(name)?;
                if let Some(v) = self.find(name)? {
                    return Ok((v, false));
                }
                name.to_string()
            }
            None => crate::container::new_id()?,
        };
        let anonymous = labels.contains_key(ANONYMOUS_LABEL);
        let volume = Volume {
            name: name.clone(),
            created: crate::container::now(),
            labels: labels.clone(),
            anonymous,
            mountpoint: self.path.join(&name).join(DATA),
        };
        // Made under a temporary name and renamed: a volume is there whole or not at all.
        let tmp = format!(".new-{name}");
        let made = (|| -> Result<()> {
            let _ = self.dir.remove_dir_all(&tmp);
            self.dir
                .create_dir(&tmp)
                .context(|| format!("create volume {name}"))?;
            let vdir = self
                .dir
                .open_dir(&tmp)
                .context(|| format!("open volume {name}"))?;
            // As docker's: root's directory, writable by the container's root only.
            vdir.create_dir(DATA)
                .context(|| format!("create volume {name}"))?;
            write_atomic(
                &vdir,
                META,
                &serde_json::to_vec_pretty(&volume).expect("json"),
                true,
            )?;
            self.dir
                .rename(&tmp, &self.dir, &name)
                .context(|| format!("create volume {name}"))
        })();
        if let Err(e) = made {
            let _ = self.dir.remove_dir_all(&tmp);
            return Err(e);
        }
        Ok((volume, true))
    }

    /// `volume create`: idempotent, as docker's (an existing volume is returned as it is).
    pub fn create(&self, name: Option<&str>, labels: &BTreeMap<String, String>) -> Result<Volume> {
        let _lock = self.lock()?;
        Ok(self.ensure(name, labels)?.0)
    }

    fn find(&self, name: &str) -> Result<Option<Volume>> {
        if !valid_name(name) {
            return Ok(None);
        }
        let text = match self.dir.read_to_string(format!("{name}/{META}")) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("read volume {name}"), e)),
        };
        let mut v: Volume = serde_json::from_str(&text)
            .map_err(|e| Error::InvalidDocument(format!("volume {name}: {e}")))?;
        v.mountpoint = self.path.join(name).join(DATA);
        Ok(Some(v))
    }

    pub fn get(&self, name: &str) -> Result<Volume> {
        self.find(name)?.ok_or_else(|| not_found(name))
    }

    /// Every volume, by name.
    pub fn list(&self) -> Result<Vec<Volume>> {
        let mut names: Vec<String> = self
            .dir
            .entries()
            .context(|| "list volumes".into())?
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        Ok(names
            .iter()
            .filter_map(|n| self.find(n).ok().flatten())
            .collect())
    }

    /// The containers (any state) whose records mount `name`.
    pub fn users(&self, name: &str) -> Result<Vec<Container>> {
        Ok(Containers::open(self.store)?
            .list()?
            .into_iter()
            .filter(|c| uses(c, name))
            .collect())
    }

    /// How many containers (any state) mount each volume, by name, from one reading of the
    /// records (`volume ls`, `system df`).
    pub fn use_counts(&self) -> Result<std::collections::HashMap<String, usize>> {
        let mut counts = std::collections::HashMap::new();
        for c in Containers::open(self.store)?.list()? {
            for m in c.mounts.iter().filter(|m| m.kind == MountKind::Volume) {
                if let Some(name) = &m.name {
                    *counts.entry(name.clone()).or_default() += 1;
                }
            }
        }
        Ok(counts)
    }

    /// `volume rm`: refused while any container's record names it, as docker refuses.
    pub fn remove(&self, name: &str) -> Result<()> {
        let _lock = self.lock()?;
        self.get(name)?;
        let users = self.users(name)?;
        if !users.is_empty() {
            let ids: Vec<&str> = users.iter().map(|c| c.id.as_str()).collect();
            return Err(Error::Conflict(format!(
                "remove {name}: volume is in use - [{}]",
                ids.join(", ")
            )));
        }
        self.remove_unused(name)
    }

    /// Remove a volume no record names (the caller checked, under the lock). Renamed away
    /// first, so a volume is never seen half removed.
    fn remove_unused(&self, name: &str) -> Result<()> {
        let doomed = format!(".rm-{name}");
        self.dir
            .rename(name, &self.dir, &doomed)
            .context(|| format!("remove volume {name}"))?;
        crate::store::make_removable(&self.dir, &doomed)?;
        self.dir
            .remove_dir_all(&doomed)
            .context(|| format!("remove volume {name}"))
    }

    /// `volume prune`: the volumes no container uses, only anonymous ones unless `all`
    /// (docker 23's rule), and those matching `keep`'s filter; their names and the bytes
    /// freed.
    pub fn prune(
        &self,
        all: bool,
        matches: &dyn Fn(&Volume) -> bool,
    ) -> Result<(Vec<String>, u64)> {
        let _lock = self.lock()?;
        let containers = Containers::open(self.store)?.list()?;
        let mut removed = Vec::new();
        let mut bytes = 0;
        for v in self.list()? {
            if (!all && !v.anonymous) || !matches(&v) || containers.iter().any(|c| uses(c, &v.name))
            {
                continue;
            }
            let size = self.size(&v);
            self.remove_unused(&v.name)?;
            bytes += size;
            removed.push(v.name);
        }
        Ok((removed, bytes))
    }

    /// The anonymous volumes `c` mounted, removed once no other record names them (`rm -v`,
    /// a `--rm` container's end). Named volumes stay, as docker keeps them.
    pub fn remove_anonymous_of(&self, c: &Container) -> Result<()> {
        let _lock = self.lock()?;
        for m in c.mounts.iter().filter(|m| m.kind == MountKind::Volume) {
            let Some(name) = &m.name else { continue };
            let Some(v) = self.find(name)? else { continue };
            if !v.anonymous || self.users(name)?.iter().any(|u| u.id != c.id) {
                continue;
            }
            self.remove_unused(name)?;
        }
        Ok(())
    }

    /// What a killed `create` or `rm` left: volumes half made or half removed (the
    /// dot names, which `list` never shows).
    pub fn remove_debris(&self) -> Result<()> {
        let _lock = self.lock()?;
        for entry in self
            .dir
            .entries()
            .context(|| "list volumes".into())?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".new-") || name.starts_with(".rm-") {
                crate::store::make_removable(&self.dir, &name)?;
                self.dir
                    .remove_dir_all(&name)
                    .context(|| format!("remove {name}"))?;
            }
        }
        Ok(())
    }

    /// Bytes under the volume's `_data`.
    pub fn size(&self, v: &Volume) -> u64 {
        self.dir
            .open_dir(format!("{}/{DATA}", v.name))
            .map(crate::store::tree_size)
            .unwrap_or(0)
    }

    /// The volume's `_data` as a directory handle.
    pub fn data_dir(&self, v: &Volume) -> Result<Dir> {
        self.dir
            .open_dir(format!("{}/{DATA}", v.name))
            .context(|| format!("open volume {}", v.name))
    }
}

fn uses(c: &Container, name: &str) -> bool {
    c.mounts
        .iter()
        .any(|m| m.kind == MountKind::Volume && m.name.as_deref() == Some(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_docker_allows() {
        for good in ["ab", "data", "my-vol_1.x", "0a"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["a", "", "-a", ".a", "a/b", "a:b", "../x", "a b"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn made_once_listed_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("store")).unwrap();
        let volumes = Volumes::open(&store).unwrap();
        let labels = BTreeMap::from([("k".to_string(), "v".to_string())]);
        let v = volumes.create(Some("data"), &labels).unwrap();
        assert!(v.mountpoint.is_dir());
        std::fs::write(v.mountpoint.join("f"), b"kept").unwrap();
        // A second create is the same volume, its content untouched.
        let again = volumes.create(Some("data"), &BTreeMap::new()).unwrap();
        assert_eq!(again.labels, labels);
        assert_eq!(std::fs::read(again.mountpoint.join("f")).unwrap(), b"kept");
        let anon = volumes
            .create(
                None,
                &BTreeMap::from([(ANONYMOUS_LABEL.to_string(), String::new())]),
            )
            .unwrap();
        assert!(anon.anonymous && anon.name.len() == 64);
        let names: Vec<_> = volumes
            .list()
            .unwrap()
            .into_iter()
            .map(|v| v.name)
            .collect();
        assert_eq!(names.len(), 2);
        assert!(volumes.create(Some("a/../b"), &BTreeMap::new()).is_err());
        // prune without `all` takes only the anonymous one.
        let (removed, _) = volumes.prune(false, &|_| true).unwrap();
        assert_eq!(removed, vec![anon.name.clone()]);
        // What a killed create or rm leaves is not a volume, and goes at the next prune.
        std::fs::create_dir_all(tmp.path().join("store/volumes/.new-x/_data")).unwrap();
        std::fs::create_dir_all(tmp.path().join("store/volumes/.rm-y/_data")).unwrap();
        assert_eq!(volumes.list().unwrap().len(), 1);
        crate::gc::prune(&store).unwrap();
        assert!(!tmp.path().join("store/volumes/.new-x").exists());
        assert!(!tmp.path().join("store/volumes/.rm-y").exists());
        volumes.remove("data").unwrap();
        assert!(!v.mountpoint.exists());
        assert!(matches!(
            volumes.remove("data"),
            Err(Error::VolumeNotFound(_))
        ));
        assert!(volumes.list().unwrap().is_empty());
    }
}
