//! Reading a compose project's files as compose does: discovery (`compose.yaml`, …), YAML
//! with anchors and merge keys (`<<: *common`), variable interpolation from the process
//! environment over the project's `.env`, and several `-f` files merged in order.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde_norway::{Mapping, Value};

/// The file names compose looks for, in its order.
pub const DEFAULT_FILES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

/// The project's files: those given (`-f`, relative to the working directory), else the
/// first default one in `dir`.
pub fn find_files(given: &[PathBuf], dir: &Path) -> Result<Vec<PathBuf>> {
    if !given.is_empty() {
        return Ok(given.to_vec());
    }
    DEFAULT_FILES
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
        .map(|p| vec![p])
        .ok_or_else(|| {
            anyhow!(
                "no configuration file provided: not found (looked for {} in {})",
                DEFAULT_FILES.join(", "),
                dir.display()
            )
        })
}

/// The variables interpolation sees: the project's `.env` under the process environment
/// (which wins).
pub fn environment(
    dir: &Path,
    process: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>> {
    let mut vars = match std::fs::read_to_string(dir.join(".env")) {
        Ok(text) => parse_env_file(&text)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
        Err(e) => return Err(e).with_context(|| format!("read {}", dir.join(".env").display())),
    };
    vars.extend(process.iter().map(|(k, v)| (k.clone(), v.clone())));
    Ok(vars)
}

/// A `.env` (or `env_file`) file: `KEY=VALUE` lines, `export ` allowed, `#` comments, values
/// in single quotes taken as they are and in double quotes with `\n`, `\"`, `\\` unescaped.
pub fn parse_env_file(text: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            // A name alone takes the process's value (compose), none here: left out.
            continue;
        };
        let key = key.trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            bail!("line {}: invalid variable name {key:?}", n + 1);
        }
        let value = value.trim();
        let value = if let Some(inner) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\''))
        {
            inner.to_string()
        } else if let Some(inner) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
            inner
                .replace("\\n", "\n")
                .replace("\\\"", "\"")
                .replace("\\\\", "\\")
        } else {
            // An unquoted value ends at ` #`.
            value
                .split(" #")
                .next()
                .unwrap_or("")
                .trim_end()
                .to_string()
        };
        out.insert(key.to_string(), value);
    }
    Ok(out)
}

/// Interpolate `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`,
/// `${VAR?error}`, `${VAR:+alt}`, `${VAR+alt}` and `$$` (a `$`), as compose does; defaults
/// may hold interpolations themselves. `missing` hears of each unset variable used bare.
pub fn interpolate(
    text: &str,
    vars: &BTreeMap<String, String>,
    missing: &mut dyn FnMut(&str),
) -> Result<String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = closing_brace(body)
                .ok_or_else(|| anyhow!("invalid interpolation format for {text:?}: missing }}"))?;
            out.push_str(&braced(&body[..end], vars, missing, text)?);
            rest = &body[end + 1..];
        } else {
            let len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            if len == 0 {
                out.push('$');
                rest = after;
                continue;
            }
            let name = &after[..len];
            match vars.get(name) {
                Some(v) => out.push_str(v),
                None => missing(name),
            }
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The index of the `}` that closes a `${`, nested ones skipped.
fn closing_brace(body: &str) -> Option<usize> {
    let mut depth = 0;
    let bytes = body.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'{' if i > 0 && bytes[i - 1] == b'$' => depth += 1,
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
    }
    None
}

fn braced(
    body: &str,
    vars: &BTreeMap<String, String>,
    missing: &mut dyn FnMut(&str),
    whole: &str,
) -> Result<String> {
    let name_len = body
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(body.len());
    let (name, op) = body.split_at(name_len);
    if name.is_empty() {
        bail!("invalid interpolation format for {whole:?}: an empty variable name");
    }
    let value = vars.get(name);
    let set_nonempty = value.is_some_and(|v| !v.is_empty());
    let mut inner = |s: &str| interpolate(s, vars, &mut *missing);
    Ok(match op.get(..2).unwrap_or(op) {
        "" => match value {
            Some(v) => v.clone(),
            None => {
                missing(name);
                String::new()
            }
        },
        ":-" => {
            if set_nonempty {
                value.cloned().unwrap_or_default()
            } else {
                inner(&op[2..])?
            }
        }
        ":?" => {
            if set_nonempty {
                value.cloned().unwrap_or_default()
            } else {
                bail!(
                    "required variable {name} is missing a value: {}",
                    inner(&op[2..])?
                )
            }
        }
        ":+" => {
            if set_nonempty {
                inner(&op[2..])?
            } else {
                String::new()
            }
        }
        _ => match op.chars().next() {
            Some('-') => match value {
                Some(v) => v.clone(),
                None => inner(&op[1..])?,
            },
            Some('?') => match value {
                Some(v) => v.clone(),
                None => bail!(
                    "required variable {name} is missing a value: {}",
                    inner(&op[1..])?
                ),
            },
            Some('+') => match value {
                Some(_) => inner(&op[1..])?,
                None => String::new(),
            },
            _ => bail!("invalid interpolation format for {whole:?}: ${{{body}}}"),
        },
    })
}

/// Interpolate every string of the tree (mapping keys too, as compose's do).
fn interpolate_tree(
    v: &mut Value,
    vars: &BTreeMap<String, String>,
    missing: &mut dyn FnMut(&str),
    at: &str,
) -> Result<()> {
    match v {
        Value::String(s) => {
            *s = interpolate(s, vars, missing).with_context(|| at.to_string())?;
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_tree(item, vars, missing, &format!("{at}[{i}]"))?;
            }
        }
        Value::Mapping(map) => {
            for (k, item) in map.iter_mut() {
                let key = k.as_str().unwrap_or("?");
                let path = if at.is_empty() {
                    key.to_string()
                } else {
                    format!("{at}.{key}")
                };
                interpolate_tree(item, vars, missing, &path)?;
            }
        }
        Value::Tagged(t) => interpolate_tree(&mut t.value, vars, missing, at)?,
        _ => {}
    }
    Ok(())
}

/// `b` merged over `a` as compose merges files: mappings key by key, anything else replaced;
/// the lists compose appends (ports, volumes, …) are appended.
fn merge(a: &mut Value, b: Value, key: &str) {
    const APPENDED: [&str; 7] = [
        "ports",
        "expose",
        "volumes",
        "env_file",
        "extra_hosts",
        "dns",
        "profiles",
    ];
    match (a, b) {
        (Value::Mapping(a), Value::Mapping(b)) => {
            for (k, v) in b {
                let name = k.as_str().unwrap_or("").to_string();
                match a.get_mut(&k) {
                    Some(existing) => merge(existing, v, &name),
                    None => {
                        a.insert(k, v);
                    }
                }
            }
        }
        (Value::Sequence(a), Value::Sequence(b)) if APPENDED.contains(&key) => a.extend(b),
        (a, b) => *a = b,
    }
}

/// The project's files read, merge keys applied, interpolated and merged into one tree.
/// Warnings (unset variables) go to `warn`.
pub fn read(
    files: &[PathBuf],
    vars: &BTreeMap<String, String>,
    warn: &mut dyn FnMut(String),
) -> Result<Value> {
    let mut merged = Value::Mapping(Mapping::new());
    let mut unset = std::collections::BTreeSet::new();
    for file in files {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("read {}", file.display()))?;
        let mut doc: Value =
            serde_norway::from_str(&text).with_context(|| format!("parse {}", file.display()))?;
        if doc.is_null() {
            doc = Value::Mapping(Mapping::new());
        }
        if !doc.is_mapping() {
            bail!("{}: the top level must be a mapping", file.display());
        }
        doc.apply_merge()
            .with_context(|| format!("{}: merge keys", file.display()))?;
        interpolate_tree(
            &mut doc,
            vars,
            &mut |name| {
                unset.insert(name.to_string());
            },
            "",
        )
        .with_context(|| file.display().to_string())?;
        merge(&mut merged, doc, "");
    }
    for name in unset {
        warn(format!(
            "The \"{name}\" variable is not set. Defaulting to a blank string."
        ));
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn interp(text: &str, v: &BTreeMap<String, String>) -> Result<String> {
        interpolate(text, v, &mut |_| {})
    }

    #[test]
    fn interpolation_as_compose_does_it() {
        let v = vars(&[("TAG", "1.2"), ("EMPTY", ""), ("PORT", "9090")]);
        assert_eq!(interp("busybox:${TAG:-latest}", &v).unwrap(), "busybox:1.2");
        assert_eq!(
            interp("busybox:${NOPE:-latest}", &v).unwrap(),
            "busybox:latest"
        );
        assert_eq!(
            interp("${EMPTY:-d}|${EMPTY-d}|${NOPE-d}", &v).unwrap(),
            "d||d"
        );
        assert_eq!(interp("$PORT:${PORT}/tcp", &v).unwrap(), "9090:9090/tcp");
        assert_eq!(interp("$$HOME and $$$TAG", &v).unwrap(), "$HOME and $1.2");
        assert_eq!(interp("${NOPE:-${TAG}}", &v).unwrap(), "1.2");
        assert_eq!(
            interp("${TAG:+set}${NOPE:+set}|${EMPTY+set}", &v).unwrap(),
            "set|set"
        );
        assert_eq!(interp("cost $5", &v).unwrap(), "cost ");
        let e = interp("${REQ:?need REQ}", &v).unwrap_err().to_string();
        assert_eq!(e, "required variable REQ is missing a value: need REQ");
        assert!(interp("${EMPTY?x}", &v).is_ok());
        assert!(interp("${unclosed", &v).is_err());
        let mut unset = Vec::new();
        interpolate("${A} $B ${C:-x}", &v, &mut |n| unset.push(n.to_string())).unwrap();
        assert_eq!(unset, ["A", "B"]);
    }

    #[test]
    fn env_files_as_compose_reads_them() {
        let parsed = parse_env_file(
            "# comment\nA=1\nexport B=two words\nC='$literal # kept'\nD=\"quoted\\nline\"\nE=x # note\n\nF=\n",
        )
        .unwrap();
        assert_eq!(parsed["A"], "1");
        assert_eq!(parsed["B"], "two words");
        assert_eq!(parsed["C"], "$literal # kept");
        assert_eq!(parsed["D"], "quoted\nline");
        assert_eq!(parsed["E"], "x");
        assert_eq!(parsed["F"], "");
        assert!(parse_env_file("bad key=1\n").is_err());
    }

    #[test]
    fn files_merge_with_merge_keys_applied() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.yaml");
        let b = dir.path().join("b.yaml");
        std::fs::write(
            &a,
            "x-common: &common\n  restart: always\n  environment:\n    MODE: shared\nservices:\n  web:\n    <<: *common\n    image: web:${TAG:-latest}\n    ports: [\"80\"]\n  db:\n    <<: *common\n    image: db\n",
        )
        .unwrap();
        std::fs::write(
            &b,
            "services:\n  web:\n    ports: [\"443\"]\n    image: web:override\n",
        )
        .unwrap();
        let mut warnings = Vec::new();
        let v = read(&[a, b], &vars(&[]), &mut |w| warnings.push(w)).unwrap();
        let web = &v["services"]["web"];
        assert_eq!(web["restart"].as_str(), Some("always"));
        assert_eq!(
            v["services"]["db"]["environment"]["MODE"].as_str(),
            Some("shared")
        );
        assert_eq!(web["image"].as_str(), Some("web:override"));
        let ports: Vec<&str> = web["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(|p| p.as_str())
            .collect();
        assert_eq!(ports, ["80", "443"]);
        assert!(warnings.is_empty(), "{warnings:?}");
    }
}
