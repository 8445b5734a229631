//! What a container mounts: `-v`, `--mount` and `--volumes-from` as docker parses them,
//! their resolution into binds when the container is made (named and anonymous volumes
//! made and seeded from the image, an image's VOLUMEs, another container's mounts), and
//! what the record keeps of each (docker's `Mounts`).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::copy::{self, Owner};
use super::{Bind, Container, Containers, RunOptions};
use crate::error::{Error, Result};
use crate::fs::Overlay;
use crate::image::ImageConfig;
use crate::volume::{Volumes, ANONYMOUS_LABEL};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    Bind,
    Volume,
    Tmpfs,
}

impl MountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MountKind::Bind => "bind",
            MountKind::Volume => "volume",
            MountKind::Tmpfs => "tmpfs",
        }
    }
}

/// One of a container's mounts, as its record keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountPoint {
    pub kind: MountKind,
    /// The volume's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The host directory (a volume's `_data`); none for a tmpfs.
    #[serde(default)]
    pub source: PathBuf,
    pub destination: String,
    pub rw: bool,
}

/// A mount asked for by `-v` or `--mount`, before the container exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountRequest {
    /// `create`: make the host directory when it is missing (`-v`); `--mount` refuses.
    Bind {
        bind: Bind,
        create: bool,
    },
    Volume(VolumeMount),
    /// In `--tmpfs`'s form: `DIR[:OPTIONS]`.
    Tmpfs(String),
}

impl MountRequest {
    fn target(&self) -> &str {
        match self {
            MountRequest::Bind { bind, .. } => &bind.container,
            MountRequest::Volume(v) => &v.target,
            MountRequest::Tmpfs(t) => t.split_once(':').map_or(t.as_str(), |(d, _)| d),
        }
    }
}

/// A volume to mount: named, or anonymous (`name: None`), made at first use.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VolumeMount {
    pub name: Option<String>,
    pub target: String,
    pub read_only: bool,
    /// `nocopy`: not seeded from the image.
    pub no_copy: bool,
    /// `volume-label`s, for a volume this mount makes.
    pub labels: BTreeMap<String, String>,
}

fn invalid_spec(spec: &str, kind: &str, why: &str) -> Error {
    Error::InvalidArgument(format!(
        "invalid volume specification: '{spec}': invalid mount config for type \"{kind}\": {why}"
    ))
}

/// A container path: absolute, and not the root (which would hide the image).
fn check_target(target: &str, fail: impl Fn(&str) -> Error) -> Result<()> {
    if !target.starts_with('/') {
        return Err(fail(&format!(
            "invalid mount path: '{target}' mount path must be absolute"
        )));
    }
    let depth = Path::new(target).components().fold(0usize, |d, c| match c {
        Component::Normal(_) => d + 1,
        Component::ParentDir => d.saturating_sub(1),
        _ => d,
    });
    if depth == 0 {
        return Err(fail("invalid specification: destination can't be '/'"));
    }
    Ok(())
}

/// A host path as the docker CLI takes it: relative ones (`.`, `./x`, `../x`) from `cwd`.
fn host_path(source: &str, cwd: &Path) -> PathBuf {
    let path = Path::new(source);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        cwd.join(path)
    }
}

/// `-v [SOURCE:]TARGET[:MODE]`: SOURCE a host path (absolute, or relative starting with
/// `.`) or a volume name; no SOURCE is an anonymous volume. MODE: `ro`/`rw`, `nocopy`
/// (volumes), `z`/`Z` (SELinux labels, nothing to do without SELinux), and the default
/// propagation `rprivate`/`private`.
pub fn parse_volume(spec: &str, cwd: &Path) -> Result<MountRequest> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [t] => (None, *t, ""),
        [a, b] if valid_mode(b) && !b.starts_with('/') => (None, *a, *b),
        [s, t] => (Some(*s), *t, ""),
        [s, t, m] => (Some(*s), *t, *m),
        _ => {
            return Err(Error::InvalidArgument(format!(
                "invalid spec: {spec}: too many colons"
            )))
        }
    };
    if source == Some("") || target.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "invalid spec: {spec}: empty section between colons"
        )));
    }
    if !valid_mode(mode) {
        return Err(Error::InvalidArgument(format!("invalid mode: {mode}")));
    }
    let options: Vec<&str> = mode.split(',').filter(|o| !o.is_empty()).collect();
    let read_only = options.contains(&"ro");
    let no_copy = options.contains(&"nocopy");
    let is_path = |s: &str| s.starts_with('/') || s.starts_with('.');
    let kind = if source.is_some_and(is_path) {
        "bind"
    } else {
        "volume"
    };
    check_target(target, |why| invalid_spec(spec, kind, why))?;
    match source {
        Some(s) if is_path(s) => {
            if no_copy {
                return Err(Error::InvalidArgument(format!("invalid mode: {mode}")));
            }
            Ok(MountRequest::Bind {
                bind: Bind {
                    host: host_path(s, cwd),
                    container: target.to_string(),
                    read_only,
                },
                create: true,
            })
        }
        name => {
            if let Some(name) = name {
                if !crate::volume::valid_name(name) {
                    return Err(invalid_spec(
                        spec,
                        "volume",
                        &format!(
                            "{name:?} includes invalid characters for a local volume name, only \
                             \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass \
                             a host directory, use absolute path"
                        ),
                    ));
                }
            }
            Ok(MountRequest::Volume(VolumeMount {
                name: name.map(String::from),
                target: target.to_string(),
                read_only,
                no_copy,
                labels: BTreeMap::new(),
            }))
        }
    }
}

/// docker's modes for `-v`: at most one of each kind.
fn valid_mode(mode: &str) -> bool {
    let (mut rw, mut label, mut copy, mut propagation) = (0, 0, 0, 0);
    for o in mode.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" | "rw" => rw += 1,
            "z" | "Z" => label += 1,
            "nocopy" => copy += 1,
            "private" | "rprivate" => propagation += 1,
            _ => return false,
        }
    }
    rw <= 1 && label <= 1 && copy <= 1 && propagation <= 1
}

/// `--mount type=bind|volume|tmpfs,src=…,dst=…[,readonly][,…]`, with the docker CLI's
/// checks and words.
pub fn parse_mount(spec: &str, cwd: &Path) -> Result<MountRequest> {
    let bad = |why: String| -> Error {
        Error::InvalidArgument(format!(
            "invalid argument {spec:?} for \"--mount\" flag: {why}"
        ))
    };
    let mut kind = "volume".to_string();
    let (mut source, mut target) = (None::<String>, None::<String>);
    let mut read_only = false;
    let mut no_copy = false;
    let mut labels = BTreeMap::new();
    let mut tmpfs_options = Vec::new();
    let (mut volume_opts, mut tmpfs_opts, mut bind_opts) = (false, false, false);
    let boolean = |key: &str, value: Option<&str>| -> Result<bool> {
        match value {
            None => Ok(true),
            Some("1" | "true" | "True" | "TRUE" | "t" | "T") => Ok(true),
            Some("0" | "false" | "False" | "FALSE" | "f" | "F") => Ok(false),
            Some(v) => Err(bad(format!("invalid value for {key}: {v}"))),
        }
    };
    for field in spec.split(',') {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v)),
            None => (field.trim().to_ascii_lowercase(), None),
        };
        let need = || -> Result<&str> {
            value.ok_or_else(|| bad(format!("invalid field '{field}' must be a key=value pair")))
        };
        match key.as_str() {
            "readonly" | "ro" => read_only = boolean(&key, value)?,
            "volume-nocopy" => {
                volume_opts = true;
                no_copy = boolean(&key, value)?;
            }
            "bind-nonrecursive" => {
                bind_opts = true;
                if boolean(&key, value)? {
                    return Err(bad("bind-nonrecursive is not supported".into()));
                }
            }
            _ if value.is_none() => {
                return Err(bad(format!(
                    "invalid field '{field}' must be a key=value pair"
                )))
            }
            "type" => kind = need()?.to_string(),
            "source" | "src" => source = Some(need()?.to_string()),
            "target" | "dst" | "destination" => target = Some(need()?.to_string()),
            // Docker Desktop's hints for macOS; nothing on Linux.
            "consistency" => {}
            "bind-propagation" => {
                bind_opts = true;
                match need()? {
                    "private" | "rprivate" => {}
                    other => {
                        return Err(bad(format!(
                            "bind-propagation {other} is not supported: mounts are rprivate"
                        )))
                    }
                }
            }
            "volume-label" => {
                volume_opts = true;
                let (k, v) = need()?.split_once('=').unwrap_or((need()?, ""));
                labels.insert(k.to_string(), v.to_string());
            }
            "volume-driver" => {
                volume_opts = true;
                if need()? != "local" {
                    return Err(bad(format!("volume driver {:?} is not supported", need()?)));
                }
            }
            "volume-opt" => {
                return Err(bad(
                    "volume-opt is not supported: volumes are directories of the local driver"
                        .into(),
                ))
            }
            "tmpfs-size" => {
                tmpfs_opts = true;
                let v = need()?;
                let bytes = super::parse_size(v)
                    .ok_or_else(|| bad(format!("invalid value for tmpfs-size: {v}")))?;
                tmpfs_options.push(format!("size={bytes}"));
            }
            "tmpfs-mode" => {
                tmpfs_opts = true;
                let v = need()?;
                let mode = u32::from_str_radix(v, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| bad(format!("invalid value for tmpfs-mode: {v}")))?;
                tmpfs_options.push(format!("mode={mode:o}"));
            }
            _ => return Err(bad(format!("unexpected key '{key}' in '{field}'"))),
        }
    }
    let Some(target) = target else {
        return Err(bad("target is required".into()));
    };
    for (used, prefix) in [
        (volume_opts, "volume"),
        (tmpfs_opts, "tmpfs"),
        (bind_opts, "bind"),
    ] {
        if used && kind != prefix {
            return Err(bad(format!(
                "cannot mix '{prefix}-*' options with mount type '{kind}'"
            )));
        }
    }
    let config = |why: &str| {
        Error::InvalidArgument(format!("invalid mount config for type \"{kind}\": {why}"))
    };
    check_target(&target, config)?;
    match kind.as_str() {
        "bind" => {
            let source = source.ok_or_else(|| config("field Source must not be empty"))?;
            Ok(MountRequest::Bind {
                bind: Bind {
                    host: host_path(&source, cwd),
                    container: target,
                    read_only,
                },
                create: false,
            })
        }
        "volume" => {
            if let Some(name) = &source {
                if !crate::volume::valid_name(name) {
                    return Err(config(&format!(
                        "{name:?} includes invalid characters for a local volume name, only \
                         \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a \
                         host directory, use absolute path"
                    )));
                }
            }
            Ok(MountRequest::Volume(VolumeMount {
                name: source,
                target,
                read_only,
                no_copy,
                labels,
            }))
        }
        "tmpfs" => {
            if source.is_some() {
                return Err(config("field Source must not be specified"));
            }
            if read_only {
                tmpfs_options.push("ro".into());
            }
            Ok(MountRequest::Tmpfs(if tmpfs_options.is_empty() {
                target
            } else {
                format!("{target}:{}", tmpfs_options.join(","))
            }))
        }
        _ => Err(config("mount type unknown")),
    }
}

/// `--volumes-from CONTAINER[:ro|rw]`: the container's name and whether its mounts become
/// read-only (`None`: as they are).
pub fn parse_volumes_from(spec: &str) -> Result<(String, Option<bool>)> {
    match spec.split_once(':') {
        None => Ok((spec.to_string(), None)),
        Some((c, "ro")) => Ok((c.to_string(), Some(true))),
        Some((c, "rw")) => Ok((c.to_string(), Some(false))),
        Some((_, m)) => Err(Error::InvalidArgument(format!("invalid mode: {m}"))),
    }
}

impl Containers<'_> {
    /// `opts`' mounts made concrete for `container` of an image with `config`:
    /// `--volumes-from` copied, the image's VOLUMEs
    /// not otherwise mounted given anonymous volumes, every volume made (seeded from the
    /// image when it is new or empty) and turned into a bind; the record's `mounts` say
    /// what was mounted, written before the lock is let go. Returns the options the spec
    /// is made from.
    pub(super) fn resolve_mounts(
        &self,
        container: &mut Container,
        config: &ImageConfig,
        opts: &RunOptions,
    ) -> Result<RunOptions> {
        let image_volumes = config
            .config
            .as_ref()
            .and_then(|c| c.volumes.as_ref())
            .map(|v| v.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default();
        // Volumes are made and named in the record under the volumes' lock, so no `volume
        // rm` takes one in between; a container without any takes no lock.
        let wants_volumes = !opts.volumes_from.is_empty()
            || !image_volumes.is_empty()
            || opts
                .mounts
                .iter()
                .any(|m| matches!(m, MountRequest::Volume(_)));
        let volumes = wants_volumes
            .then(|| Volumes::open(self.store))
            .transpose()?;
        let _lock = volumes.as_ref().map(Volumes::lock).transpose()?;
        let mut requests: Vec<MountRequest> = Vec::new();
        for b in &opts.binds {
            requests.push(MountRequest::Bind {
                bind: b.clone(),
                create: false,
            });
        }
        requests.extend(opts.mounts.iter().cloned());
        for t in &opts.tmpfs {
            requests.push(MountRequest::Tmpfs(t.clone()));
        }
        for (from, mode) in &opts.volumes_from {
            let other = self.get(from)?;
            for m in &other.mounts {
                let read_only = mode.unwrap_or(!m.rw);
                requests.push(match m.kind {
                    MountKind::Volume => MountRequest::Volume(VolumeMount {
                        name: m.name.clone(),
                        target: m.destination.clone(),
                        read_only,
                        no_copy: true,
                        labels: BTreeMap::new(),
                    }),
                    MountKind::Bind => MountRequest::Bind {
                        bind: Bind {
                            host: m.source.clone(),
                            container: m.destination.clone(),
                            read_only,
                        },
                        create: false,
                    },
                    MountKind::Tmpfs => continue,
                });
            }
        }
        let mut seen = std::collections::HashSet::new();
        for r in &requests {
            if !seen.insert(normal(r.target())) {
                return Err(Error::InvalidArgument(format!(
                    "Duplicate mount point: {}",
                    r.target()
                )));
            }
        }
        // The image's VOLUMEs that nothing else mounts get fresh volumes, as docker gives.
        for target in image_volumes {
            if target.starts_with('/') && seen.insert(normal(&target)) {
                requests.push(MountRequest::Volume(VolumeMount {
                    target,
                    ..Default::default()
                }));
            }
        }
        let mut resolved = opts.clone();
        resolved.binds.clear();
        resolved.tmpfs.clear();
        resolved.mounts.clear();
        resolved.volumes_from.clear();
        container.mounts.clear();
        for r in requests {
            match r {
                MountRequest::Bind { bind, create } => {
                    if !bind.host.exists() {
                        if !create {
                            return Err(Error::InvalidArgument(format!(
                                "invalid mount config for type \"bind\": bind source path does not exist: {}",
                                bind.host.display()
                            )));
                        }
                        std::fs::create_dir_all(&bind.host).map_err(|e| {
                            Error::io(format!("create bind source {}", bind.host.display()), e)
                        })?;
                    }
                    container.mounts.push(MountPoint {
                        kind: MountKind::Bind,
                        name: None,
                        source: bind.host.clone(),
                        destination: bind.container.clone(),
                        rw: !bind.read_only,
                    });
                    resolved.binds.push(bind);
                }
                MountRequest::Volume(v) => {
                    let volumes = volumes.as_ref().expect("opened for any volume");
                    let mut labels = v.labels.clone();
                    if v.name.is_none() {
                        labels.insert(ANONYMOUS_LABEL.to_string(), String::new());
                    }
                    let (volume, _) = volumes.ensure(v.name.as_deref(), &labels)?;
                    if !v.no_copy {
                        seed(&self.root(container)?, &v.target, volumes, &volume)?;
                    }
                    container.mounts.push(MountPoint {
                        kind: MountKind::Volume,
                        name: Some(volume.name.clone()),
                        source: volume.mountpoint.clone(),
                        destination: v.target.clone(),
                        rw: !v.read_only,
                    });
                    resolved.binds.push(Bind {
                        host: volume.mountpoint,
                        container: v.target,
                        read_only: v.read_only,
                    });
                }
                MountRequest::Tmpfs(t) => {
                    let (target, options) = t.split_once(':').unwrap_or((&t, ""));
                    container.mounts.push(MountPoint {
                        kind: MountKind::Tmpfs,
                        name: None,
                        source: PathBuf::new(),
                        destination: target.to_string(),
                        rw: !options.split(',').any(|o| o == "ro"),
                    });
                    resolved.tmpfs.push(t);
                }
            }
        }
        if !container.mounts.is_empty() {
            self.save(container)?;
        }
        Ok(resolved)
    }
}

/// A path with `.`, `..` and repeated slashes resolved lexically, to compare mount points.
fn normal(path: &str) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// Docker's first use of a volume: when it is empty and the image has a directory at
/// `target`, that directory's content (owners and modes too) is copied into it.
fn seed(
    root: &Overlay<cap_std::fs::Dir>,
    target: &str,
    volumes: &Volumes<'_>,
    volume: &crate::volume::Volume,
) -> Result<()> {
    let data = volumes.data_dir(volume)?;
    let empty = data
        .entries()
        .map_err(|e| Error::io(format!("list volume {}", volume.name), e))?
        .next()
        .is_none();
    if !empty {
        return Ok(());
    }
    match copy::resolve(root, OsStr::new(target), true)? {
        Some((true, _)) => {}
        _ => return Ok(()),
    }
    let into = Overlay::new(Vec::new(), data);
    let from = format!("{}/.", target.trim_end_matches('/'));
    copy::transfer(
        (root, OsStr::new(&from), true, OsStr::new(".")),
        (&into, OsStr::new("."), Owner::FromArchive),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cwd() -> PathBuf {
        PathBuf::from("/work/here")
    }

    fn bind(host: &str, ctr: &str, ro: bool, create: bool) -> MountRequest {
        MountRequest::Bind {
            bind: Bind {
                host: host.into(),
                container: ctr.into(),
                read_only: ro,
            },
            create,
        }
    }

    fn volume(name: Option<&str>, target: &str, ro: bool, no_copy: bool) -> MountRequest {
        MountRequest::Volume(VolumeMount {
            name: name.map(String::from),
            target: target.into(),
            read_only: ro,
            no_copy,
            labels: BTreeMap::new(),
        })
    }

    #[test]
    fn dash_v_as_docker_reads_it() {
        let p = |s: &str| parse_volume(s, &cwd());
        assert_eq!(p("/h:/c").unwrap(), bind("/h", "/c", false, true));
        assert_eq!(p("/h:/c:ro").unwrap(), bind("/h", "/c", true, true));
        assert_eq!(
            p("./d:/c").unwrap(),
            bind("/work/here/./d", "/c", false, true)
        );
        assert_eq!(
            p("../d:/c:rw,z").unwrap(),
            bind("/work/here/../d", "/c", false, true)
        );
        assert_eq!(
            p("data:/c").unwrap(),
            volume(Some("data"), "/c", false, false)
        );
        assert_eq!(
            p("data:/c:ro,nocopy").unwrap(),
            volume(Some("data"), "/c", true, true)
        );
        assert_eq!(p("/c").unwrap(), volume(None, "/c", false, false));
        assert_eq!(p("/c:ro").unwrap(), volume(None, "/c", true, false));
        let err = |s: &str| p(s).unwrap_err().to_string();
        assert!(
            err("a:b:c:d").contains("too many colons"),
            "{}",
            err("a:b:c:d")
        );
        assert!(err("/h:/c:rx").contains("invalid mode: rx"));
        assert!(err("/h:/c:ro,rw").contains("invalid mode"));
        assert!(
            err("/h:/").contains("destination can't be '/'"),
            "{}",
            err("/h:/")
        );
        // Nothing may be mounted over the container's root, however it is spelled.
        for root in ["/h:/", "/h://", "/h:/.", "/h:/x/..", "/h:/../:ro", "v1:/"] {
            assert!(
                err(root).contains("destination can't be '/'"),
                "{root}: {}",
                err(root)
            );
        }
        assert!(err("data:rel").contains("mount path must be absolute"));
        assert!(err("x:/c").contains("invalid characters for a local volume name"));
        assert!(err("a/b:/c").contains("invalid characters"));
        assert!(err("/h:/c:nocopy").contains("invalid mode"));
        assert!(err(":/c").contains("empty section"));
    }

    #[test]
    fn dash_dash_mount_as_docker_reads_it() {
        let p = |s: &str| parse_mount(s, &cwd());
        assert_eq!(
            p("type=bind,src=/h,dst=/c,readonly").unwrap(),
            bind("/h", "/c", true, false)
        );
        assert_eq!(
            p("type=bind,source=rel,target=/c,ro=false").unwrap(),
            bind("/work/here/rel", "/c", false, false)
        );
        assert_eq!(
            p("src=data,dst=/c").unwrap(),
            volume(Some("data"), "/c", false, false)
        );
        assert_eq!(
            p("type=volume,dst=/c,volume-nocopy").unwrap(),
            volume(None, "/c", false, true)
        );
        assert_eq!(
            p("type=tmpfs,dst=/t,tmpfs-size=1m,tmpfs-mode=1770").unwrap(),
            MountRequest::Tmpfs("/t:size=1048576,mode=1770".into())
        );
        match p("type=volume,src=v1,dst=/c,volume-label=a=b").unwrap() {
            MountRequest::Volume(v) => assert_eq!(v.labels["a"], "b"),
            other => panic!("{other:?}"),
        }
        let err = |s: &str| p(s).unwrap_err().to_string();
        for (spec, words) in [
            ("type=bind", "target is required"),
            ("foo", "invalid field 'foo' must be a key=value pair"),
            ("dst=/x,bogus=1", "unexpected key 'bogus' in 'bogus=1'"),
            (
                "type=bind,src=/a,dst=/x,volume-nocopy",
                "cannot mix 'volume-*' options with mount type 'bind'",
            ),
            (
                "type=volume,dst=/x,tmpfs-size=1m",
                "cannot mix 'tmpfs-*' options with mount type 'volume'",
            ),
            (
                "type=bind,src=/a,dst=/x,ro=maybe",
                "invalid value for ro: maybe",
            ),
            (
                "type=tmpfs,dst=/x,tmpfs-size=abc",
                "invalid value for tmpfs-size: abc",
            ),
            (
                "type=nope,dst=/x",
                "invalid mount config for type \"nope\": mount type unknown",
            ),
            ("type=bind,dst=/x", "field Source must not be empty"),
            (
                "type=tmpfs,src=a,dst=/x",
                "field Source must not be specified",
            ),
            ("type=bind,src=/a,dst=/", "destination can't be '/'"),
            ("type=volume,src=/abs,dst=/x", "invalid characters"),
        ] {
            assert!(err(spec).contains(words), "{spec}: {}", err(spec));
        }
    }

    #[test]
    fn volumes_from_modes() {
        assert_eq!(parse_volumes_from("c").unwrap(), ("c".into(), None));
        assert_eq!(
            parse_volumes_from("c:ro").unwrap(),
            ("c".into(), Some(true))
        );
        assert!(parse_volumes_from("c:x").is_err());
        assert_eq!(normal("/a//b/./c/../d/"), PathBuf::from("/a/b/d"));
    }
}
