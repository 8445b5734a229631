//! `RUN --mount=…` specifications (BuildKit `commands_runmount.go`).
//!
//! At parse time only the shape is checked (and that `from` does not use a
//! variable); the build parses each value fully with [`parse_mount`] and an
//! expander, since mount options are subject to variable expansion.

use crate::dockerfile::directives::parse_go_bool;

/// The kind of a RUN mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountType {
    /// `type=bind` (the default): a read-only view of the context or a stage.
    Bind,
    /// `type=cache`: a persistent cache directory.
    Cache,
    /// `type=tmpfs`.
    Tmpfs,
    /// `type=secret`.
    Secret,
    /// `type=ssh`.
    Ssh,
}

impl MountType {
    fn parse(s: &str) -> Option<MountType> {
        Some(match s {
            "bind" => MountType::Bind,
            "cache" => MountType::Cache,
            "tmpfs" => MountType::Tmpfs,
            "secret" => MountType::Secret,
            "ssh" => MountType::Ssh,
            _ => return None,
        })
    }

    /// The name used in the Dockerfile.
    pub fn as_str(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Cache => "cache",
            MountType::Tmpfs => "tmpfs",
            MountType::Secret => "secret",
            MountType::Ssh => "ssh",
        }
    }
}

/// Cache mount sharing mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// Several builds may use it at once (default).
    Shared,
    /// Each concurrent user gets its own.
    Private,
    /// One user at a time.
    Locked,
}

/// One parsed `--mount` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Mount type.
    pub kind: MountType,
    /// `from=`: stage, image or context the source is taken from.
    pub from: Option<String>,
    /// `source=`/`src=`.
    pub source: Option<String>,
    /// `target=`/`dst=`/`destination=`.
    pub target: Option<String>,
    /// Read-only (defaults: cache and tmpfs writable, others read-only).
    pub read_only: bool,
    /// `id=` (cache id, secret id, ssh id).
    pub id: Option<String>,
    /// `sharing=` for cache mounts.
    pub sharing: Option<Sharing>,
    /// `required` for secret and ssh mounts.
    pub required: bool,
    /// `mode=` (octal).
    pub mode: Option<u32>,
    /// `uid=`.
    pub uid: Option<u32>,
    /// `gid=`.
    pub gid: Option<u32>,
    /// `size=` for tmpfs, in bytes.
    pub size: Option<u64>,
    /// `env=` for secrets: expose the secret as this variable.
    pub env: Option<String>,
}

/// Go's `encoding/csv` reading one record.
fn csv_fields(s: &str) -> Result<Vec<String>, String> {
    if s.is_empty() {
        return Err("EOF".to_string());
    }
    let chars: Vec<char> = s.chars().collect();
    let mut fields = Vec::new();
    let mut i = 0;
    loop {
        let mut field = String::new();
        if chars.get(i) == Some(&'"') {
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(format!("parse error on line 1, column {}: extraneous or missing \" in quoted-field", i + 1)),
                    Some('"') if chars.get(i + 1) == Some(&'"') => {
                        field.push('"');
                        i += 2;
                    }
                    Some('"') => {
                        i += 1;
                        break;
                    }
                    Some(&c) => {
                        field.push(c);
                        i += 1;
                    }
                }
            }
            match chars.get(i) {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => {
                    fields.push(field);
                    i += 1;
                }
                Some(_) => {
                    return Err(format!(
                    "parse error on line 1, column {}: extraneous or missing \" in quoted-field",
                    i + 1
                ))
                }
            }
        } else {
            loop {
                match chars.get(i) {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => {
                        fields.push(field);
                        i += 1;
                        break;
                    }
                    Some('"') => {
                        return Err(format!(
                            "parse error on line 1, column {}: bare \" in non-quoted-field",
                            i + 1
                        ))
                    }
                    Some(&c) => {
                        field.push(c);
                        i += 1;
                    }
                }
            }
        }
    }
}

/// Docker's `units.RAMInBytes`: `64m`, `1g`, `512k`, `100` (bytes).
fn ram_in_bytes(s: &str) -> Option<u64> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024f64.powi(4),
        "p" | "pb" | "pib" => 1024f64.powi(5),
        _ => return None,
    };
    let v = n * mult;
    if !v.is_finite() || v < 0.0 || v > u64::MAX as f64 {
        return None;
    }
    Some(v as u64)
}

/// Check the shape of a `--mount` value at parse time.
pub(crate) fn check_mount_syntax(value: &str) -> Result<(), String> {
    let fields = csv_fields(value).map_err(|e| format!("failed to parse csv mounts: {e}"))?;
    for field in fields {
        let Some((key, v)) = field.split_once('=') else {
            continue;
        };
        if key.eq_ignore_ascii_case("from") {
            if let Some(i) = v.find('$') {
                if i + 1 != v.len() {
                    return Err(format!(
                        "'{}' doesn't support variable expansion, define alias stage instead",
                        key.to_lowercase()
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Expands one mount option value (the build's variable expander).
pub type MountExpander<'a> = &'a dyn Fn(&str) -> Result<String, String>;

/// Parse a `--mount` value. `expand` is applied to every value (the build
/// passes the variable expander; `None` takes values as written).
pub fn parse_mount(value: &str, expand: Option<MountExpander<'_>>) -> Result<Mount, String> {
    check_mount_syntax(value)?;
    let fields = csv_fields(value).map_err(|e| format!("failed to parse csv mounts: {e}"))?;
    let mut m = Mount {
        kind: MountType::Bind,
        from: None,
        source: None,
        target: None,
        read_only: false,
        id: None,
        sharing: None,
        required: false,
        mode: None,
        uid: None,
        gid: None,
        size: None,
        env: None,
    };
    let mut ro_auto = true;
    for field in &fields {
        let (key, val) = match field.split_once('=') {
            Some((k, v)) => (k.to_lowercase(), Some(v)),
            None => (field.to_lowercase(), None),
        };
        let Some(val) = val else {
            match key.as_str() {
                "readonly" | "ro" => {
                    m.read_only = true;
                    ro_auto = false;
                }
                "readwrite" | "rw" => {
                    m.read_only = false;
                    ro_auto = false;
                }
                "required" => m.required = true,
                _ => return Err(format!("invalid field '{field}' must be a key=value pair")),
            }
            continue;
        };
        let val = match expand {
            Some(f) => f(val)?,
            None => val.to_string(),
        };
        let bool_of =
            |v: &str| parse_go_bool(v).ok_or_else(|| format!("invalid value for {key}: {v}"));
        match key.as_str() {
            "type" => {
                m.kind = MountType::parse(&val.to_lowercase())
                    .ok_or_else(|| format!("unsupported mount type {val:?}"))?;
            }
            "from" => m.from = Some(val),
            "source" | "src" => m.source = Some(val),
            "target" | "dst" | "destination" => m.target = Some(val),
            "readonly" | "ro" => {
                m.read_only = bool_of(&val)?;
                ro_auto = false;
            }
            "readwrite" | "rw" => {
                m.read_only = !bool_of(&val)?;
                ro_auto = false;
            }
            "required" => m.required = bool_of(&val)?,
            "id" => m.id = Some(val),
            "sharing" => {
                m.sharing = Some(match val.to_lowercase().as_str() {
                    "shared" => Sharing::Shared,
                    "private" => Sharing::Private,
                    "locked" => Sharing::Locked,
                    _ => return Err(format!("unsupported sharing value {val:?}")),
                });
            }
            "mode" => {
                m.mode = Some(
                    u32::from_str_radix(&val, 8)
                        .map_err(|_| format!("invalid value {val} for mode"))?,
                );
            }
            "uid" => {
                m.uid = Some(
                    val.parse()
                        .map_err(|_| format!("invalid value {val} for uid"))?,
                )
            }
            "gid" => {
                m.gid = Some(
                    val.parse()
                        .map_err(|_| format!("invalid value {val} for gid"))?,
                )
            }
            "size" => {
                m.size = Some(
                    ram_in_bytes(&val).ok_or_else(|| format!("invalid value {val} for size"))?,
                );
            }
            "env" => m.env = Some(val),
            _ => return Err(format!("unexpected key '{key}' in '{field}'")),
        }
    }

    let file_info_allowed = matches!(
        m.kind,
        MountType::Secret | MountType::Ssh | MountType::Cache
    );
    let t = m.kind.as_str();
    if m.mode.is_some() && !file_info_allowed {
        return Err(format!("mode not allowed for {t:?} type mounts"));
    }
    if m.uid.is_some() && !file_info_allowed {
        return Err(format!("uid not allowed for {t:?} type mounts"));
    }
    if m.gid.is_some() && !file_info_allowed {
        return Err(format!("gid not allowed for {t:?} type mounts"));
    }
    if m.required && !matches!(m.kind, MountType::Secret | MountType::Ssh) {
        return Err(format!("unexpected key 'required' for mount type '{t}'"));
    }
    if m.size.is_some() && m.kind != MountType::Tmpfs {
        return Err(format!("size not allowed for {t:?} type mounts"));
    }
    if m.env.is_some() && m.kind != MountType::Secret {
        return Err(format!("env not allowed for {t:?} type mounts"));
    }
    if ro_auto {
        m.read_only = !matches!(m.kind, MountType::Cache | MountType::Tmpfs);
    }
    if m.sharing.is_some() && m.kind != MountType::Cache {
        return Err(format!("invalid cache sharing set for {t} mount"));
    }
    if m.kind == MountType::Secret {
        if m.from.is_some() {
            return Err("secret mount should not have a from".to_string());
        }
        if m.source.is_none() && m.target.is_none() && m.id.is_none() && m.env.is_none() {
            return Err("invalid secret mount. one of source, target required".to_string());
        }
        if m.source.is_some() && m.id.is_some() {
            return Err("both source and id can't be set".to_string());
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts() {
        let m = parse_mount("type=cache,target=/root/.cache,sharing=locked", None).unwrap();
        assert_eq!(m.kind, MountType::Cache);
        assert_eq!(m.target.as_deref(), Some("/root/.cache"));
        assert_eq!(m.sharing, Some(Sharing::Locked));
        assert!(!m.read_only);
        let m = parse_mount("target=/src", None).unwrap();
        assert_eq!(m.kind, MountType::Bind);
        assert!(m.read_only);
        let m = parse_mount("type=secret,id=tok,required", None).unwrap();
        assert!(m.required);
        let m = parse_mount("type=bind,rw,\"source=a,b\"", None).unwrap();
        assert_eq!(m.source.as_deref(), Some("a,b"));
        assert!(!m.read_only);
        let m = parse_mount("type=tmpfs,target=/t,size=64m", None).unwrap();
        assert_eq!(m.size, Some(64 << 20));
        assert!(parse_mount("type=nfs", None)
            .unwrap_err()
            .contains("unsupported mount type"));
        assert!(parse_mount("type=bind,mode=0700", None).is_err());
        assert!(parse_mount("type=bind,required", None).is_err());
        assert!(parse_mount("type=secret", None).is_err());
        assert!(parse_mount("from=$X", None)
            .unwrap_err()
            .contains("doesn't support variable expansion"));
        assert!(parse_mount("bogus", None)
            .unwrap_err()
            .contains("key=value"));
        assert!(parse_mount("a\"b", None).unwrap_err().contains("bare"));
        let exp = |v: &str| -> Result<String, String> { Ok(v.replace("$T", "/cache")) };
        let m = parse_mount("type=cache,target=$T", Some(&exp)).unwrap();
        assert_eq!(m.target.as_deref(), Some("/cache"));
    }
}
