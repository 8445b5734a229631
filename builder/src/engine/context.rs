//! Where COPY and ADD read from: the build context (a host directory seen as a root, minus
//! what `.dockerignore` excludes) or another stage's or image's root. Both are read through
//! the capability-scoped overlay, so `..` and symlinks resolve inside the source root, as
//! if it were `/`. Source patterns are Go `filepath.Match` wildcards in any component;
//! checksums cover names, modes, owners, link targets and contents (never mtimes).

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;

use cap_std::fs::Dir;
use rustix::fs::FileType;
use sha2::{Digest as _, Sha256};
use strata_runtime::fs::{file_type, OpenOptions, Overlay};

use super::BuildError;

/// A root to copy from, with the names it hides.
pub(crate) struct Source {
    pub root: Overlay<Dir>,
    pub ignore: Ignore,
    /// Files from the context get root as their owner (BuildKit); stage files keep theirs.
    pub keep_owner: bool,
}

/// One matched source path and what it is.
#[derive(Debug, Clone)]
pub(crate) struct Matched {
    /// The path in the source root, `/`-separated, without a leading slash ("" = the root).
    pub path: String,
    pub is_dir: bool,
}

impl Source {
    pub fn context(dir: Dir, ignore: Ignore) -> Source {
        Source {
            root: Overlay::new(Vec::new(), dir),
            ignore,
            keep_owner: false,
        }
    }

    pub fn stage(root: Overlay<Dir>) -> Source {
        Source {
            root,
            ignore: Ignore::default(),
            keep_owner: true,
        }
    }

    /// The paths `pattern` names: the path itself, or every match of its wildcards.
    /// Symlinks named by the pattern are followed (inside the root).
    pub fn matches(&self, pattern: &str) -> Result<Vec<Matched>, String> {
        let clean = clean(pattern);
        let parts: Vec<&str> = clean.split('/').filter(|p| !p.is_empty()).collect();
        let mut found = vec![String::new()];
        for part in &parts {
            let mut next = Vec::new();
            for base in &found {
                if has_wildcard(part) {
                    let Ok(entries) = self.root.read_dir(os(&format!("/{base}"))) else {
                        continue;
                    };
                    let mut names: Vec<String> = entries
                        .iter()
                        .map(|e| e.name.to_string_lossy().into_owned())
                        .filter(|n| n != "." && n != "..")
                        .filter(|n| glob_match(part, n))
                        .collect();
                    names.sort();
                    next.extend(names.into_iter().map(|n| join(base, &n)));
                } else {
                    next.push(join(base, part));
                }
            }
            found = next;
        }
        let mut out = Vec::new();
        for path in found {
            if !path.is_empty() && self.ignore.excludes(&path) {
                continue;
            }
            match self.root.stat(os(&format!("/{path}")), true) {
                Ok(st) => out.push(Matched {
                    is_dir: file_type(&st) == FileType::Directory,
                    path,
                }),
                Err(_) if parts.iter().any(|p| has_wildcard(p)) => {}
                Err(e) => return Err(format!("\"/{path}\": not found: {e}")),
            }
        }
        Ok(out)
    }

    /// Every entry under `dir` (not following symlinks below it), skipping ignored ones,
    /// sorted, as paths relative to the source root; iterative, depth-first.
    pub fn walk(&self, dir: &str) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_string()];
        while let Some(d) = stack.pop() {
            let mut entries = self
                .root
                .read_dir(os(&format!("/{d}")))
                .map_err(|e| format!("read /{d}: {e}"))?;
            entries.sort_by(|a, b| b.name.cmp(&a.name));
            for e in entries {
                let name = e.name.to_string_lossy().into_owned();
                if name == "." || name == ".." {
                    continue;
                }
                let path = join(&d, &name);
                if self.ignore.excludes(&path) && !self.ignore.may_include_below(&path) {
                    continue;
                }
                if e.kind == FileType::Directory {
                    stack.push(path.clone());
                }
                if !self.ignore.excludes(&path) {
                    out.push(path);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// The checksum of what COPY would take from the matches: names relative to each match,
    /// types, modes, owners (when kept), link targets and contents.
    pub fn checksum(&self, matched: &[Matched]) -> Result<String, BuildError> {
        let mut h = Sha256::new();
        for m in matched {
            h.update(m.path.as_bytes());
            h.update([0]);
            let mut paths = vec![m.path.clone()];
            if m.is_dir {
                paths.extend(self.walk(&m.path).map_err(BuildError::Other)?);
            }
            for (i, p) in paths.iter().enumerate() {
                // The match itself is followed if it is a link; what is below is not.
                let st = self
                    .root
                    .stat(os(&format!("/{p}")), i == 0)
                    .map_err(|e| BuildError::Other(format!("stat /{p}: {e}")))?;
                let kind = file_type(&st);
                let (uid, gid) = if self.keep_owner {
                    (st.st_uid, st.st_gid)
                } else {
                    (0, 0)
                };
                h.update(format!("{p}\0{:o}\0{uid}\0{gid}\0", st.st_mode).as_bytes());
                match kind {
                    FileType::RegularFile => {
                        let mut f = self
                            .root
                            .open(os(&format!("/{p}")), &read())
                            .map_err(|e| BuildError::Other(format!("read /{p}: {e}")))?;
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = f
                                .read(&mut buf)
                                .map_err(|e| BuildError::Other(format!("read /{p}: {e}")))?;
                            if n == 0 {
                                break;
                            }
                            h.update(&buf[..n]);
                        }
                    }
                    FileType::Symlink => {
                        let target = self
                            .root
                            .read_link(os(&format!("/{p}")))
                            .unwrap_or_default();
                        h.update(target.as_bytes());
                    }
                    _ => {}
                }
                h.update([0xff]);
            }
        }
        Ok(hex(&h.finalize()))
    }
}

/// A Dockerfile, read from its directory as BuildKit reads it.
#[derive(Debug, Clone)]
pub struct DockerfileSource {
    /// Its file name, for messages (`Dockerfile`).
    pub name: String,
    pub text: String,
    /// `<name>.dockerignore` beside it, if there is one: it replaces the context's
    /// `.dockerignore`.
    pub ignore: Option<String>,
}

/// Read the Dockerfile at `path` and its own ignore file. Both are opened through a handle
/// on the Dockerfile's directory: a symlink that stays inside it is followed, one that
/// leaves it is refused (BuildKit reads them from that directory alone). Only a regular
/// file of at most the parser's size limit is read (no FIFO or device to hang on).
pub fn read_dockerfile(path: &std::path::Path) -> Result<DockerfileSource, BuildError> {
    let fail = |e: std::io::Error| BuildError::Other(format!("read {}: {e}", path.display()));
    // None for a path that ends in `..` as well.
    let name = path
        .file_name()
        .ok_or_else(|| fail(std::io::Error::other("not a file name")))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    let dir = Dir::open_ambient_dir(parent, cap_std::ambient_authority()).map_err(fail)?;
    read_dockerfile_from(&dir, name, parent, path)
}

/// Read the Dockerfile at `rel` inside `root` (a context received as an archive), as
/// [`read_dockerfile`] does: its directory is opened through `root`, so no link in the
/// path leads out of the context.
pub fn read_dockerfile_in(
    root: &Dir,
    rel: &std::path::Path,
) -> Result<DockerfileSource, BuildError> {
    let fail = |e: std::io::Error| BuildError::Other(format!("read {}: {e}", rel.display()));
    let name = rel
        .file_name()
        .ok_or_else(|| fail(std::io::Error::other("not a file name")))?;
    let parent = rel.parent().filter(|p| !p.as_os_str().is_empty());
    let dir = match parent {
        Some(p) => root.open_dir(p),
        None => root.try_clone(),
    }
    .map_err(fail)?;
    read_dockerfile_from(&dir, name, parent.unwrap_or(std::path::Path::new(".")), rel)
}

/// The Dockerfile `name` and its ignore file in `dir`; messages name `path` and `parent`.
fn read_dockerfile_from(
    dir: &Dir,
    name: &std::ffi::OsStr,
    parent: &std::path::Path,
    path: &std::path::Path,
) -> Result<DockerfileSource, BuildError> {
    let fail = |e: std::io::Error| BuildError::Other(format!("read {}: {e}", path.display()));
    let text = read_text(dir, name).map_err(|e| {
        if e.kind() == std::io::ErrorKind::PermissionDenied
            && dir.symlink_metadata(name).is_ok_and(|m| m.is_symlink())
        {
            fail(std::io::Error::other(format!(
                "a symlink out of {} ({e})",
                parent.display()
            )))
        } else {
            fail(e)
        }
    })?;
    let name = name.to_string_lossy().into_owned();
    let ignore_name = format!("{name}.dockerignore");
    let ignore = match read_text(dir, &ignore_name) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            let p = parent.join(&ignore_name);
            return Err(BuildError::Other(format!("read {}: {e}", p.display())));
        }
    };
    Ok(DockerfileSource { name, text, ignore })
}

/// A small text file in `dir` (symlinks followed inside it only): a regular file, UTF-8,
/// at most the parser's size limit.
fn read_text(dir: &Dir, name: impl AsRef<std::path::Path>) -> std::io::Result<String> {
    let max = crate::dockerfile::Limits::default().max_file_bytes as u64;
    let not_file = || std::io::Error::other("not a regular file");
    // Checked before opening too: opening a FIFO would wait for a writer.
    if !dir.metadata(name.as_ref())?.is_file() {
        return Err(not_file());
    }
    let file = dir.open(name)?;
    if !file.metadata()?.is_file() {
        return Err(not_file());
    }
    let mut text = String::new();
    file.take(max + 1).read_to_string(&mut text)?;
    if text.len() as u64 > max {
        return Err(std::io::Error::other(format!(
            "larger than the maximum of {max} bytes"
        )));
    }
    Ok(text)
}

pub(crate) fn read() -> OpenOptions {
    OpenOptions {
        read: true,
        ..Default::default()
    }
}

pub(crate) fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn join(base: &str, name: &str) -> String {
    if base.is_empty() {
        name.to_string()
    } else {
        format!("{base}/{name}")
    }
}

/// `filepath.Clean` of a source path, relative to the root (`..` cannot climb above it).
pub(crate) fn clean(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            p => out.push(p),
        }
    }
    out.join("/")
}

fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Go's `filepath.Match` for one path component: `*`, `?`, `[...]` (with `^` and ranges)
/// and `\` escapes. A malformed class matches nothing.
pub(crate) fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Iterative matching with one backtrack point for the last star.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ni));
                    pi += 1;
                    continue;
                }
                '?' if n[ni] != '/' => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                '[' => {
                    if let Some((matched, len)) = class_match(&p[pi..], n[ni]) {
                        if matched {
                            pi += len;
                            ni += 1;
                            continue;
                        }
                    } else {
                        return false;
                    }
                }
                '\\' if pi + 1 < p.len() && p[pi + 1] == n[ni] => {
                    pi += 2;
                    ni += 1;
                    continue;
                }
                // An escape that does not match falls to the backtrack below.
                '\\' if pi + 1 < p.len() => {}
                c if c == n[ni] && c != '?' => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, sn)) if n[sn] != '/' => {
                star = Some((sp, sn + 1));
                pi = sp + 1;
                ni = sn + 1;
            }
            _ => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// A `[...]` class at the start of `p`: whether `c` is in it, and the class's length.
fn class_match(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(p.get(i), Some('^') | Some('!'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let lo = *p.get(i)?;
        if lo == ']' && !first {
            i += 1;
            break;
        }
        first = false;
        let lo = if lo == '\\' {
            i += 1;
            *p.get(i)?
        } else {
            lo
        };
        i += 1;
        let mut hi = lo;
        if p.get(i) == Some(&'-') && p.get(i + 1).is_some_and(|&x| x != ']') {
            hi = if p[i + 1] == '\\' {
                *p.get(i + 2)?
            } else {
                p[i + 1]
            };
            i += if p[i + 1] == '\\' { 3 } else { 2 };
        }
        if lo <= c && c <= hi {
            matched = true;
        }
    }
    Some((matched != negate, i))
}

/// `.dockerignore` rules (moby's patternmatcher): each line a pattern, `!` re-includes,
/// the last matching rule wins, `**` matches any number of directories, and a rule that
/// matches a directory matches everything below it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ignore {
    rules: Vec<(bool, Vec<String>)>,
}

impl Ignore {
    /// The build's rules: the Dockerfile's own ignore file when it has one (read beside
    /// it, see [`read_dockerfile`]), else the context's `.dockerignore`, read through the
    /// context's directory handle (a link out of the context is an error, not "no rules").
    pub fn read(context: &Dir, dockerfile_own: Option<&str>) -> Result<Ignore, BuildError> {
        let text = match dockerfile_own {
            Some(text) => text.to_string(),
            None => match read_text(context, ".dockerignore") {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                Err(e) => return Err(BuildError::Other(format!("read .dockerignore: {e}"))),
            },
        };
        Ignore::parse(&text).map_err(BuildError::Other)
    }

    pub fn parse(text: &str) -> Result<Ignore, String> {
        let mut rules = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = if i == 0 {
                line.trim_start_matches('\u{feff}')
            } else {
                line
            };
            if line.starts_with('#') {
                continue;
            }
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let (exclude, pattern) = match line.strip_prefix('!') {
                Some(rest) => (false, rest.trim()),
                None => (true, line),
            };
            if pattern.is_empty() {
                return Err("illegal exclusion pattern: \"!\"".into());
            }
            let cleaned = clean(pattern);
            if cleaned.is_empty() {
                continue;
            }
            rules.push((exclude, cleaned.split('/').map(String::from).collect()));
        }
        Ok(Ignore { rules })
    }

    /// These rules, then `more`'s (which win where both match).
    pub fn with(mut self, more: Ignore) -> Ignore {
        self.rules.extend(more.rules);
        self
    }

    /// Whether `path` (relative, `/`-separated) is excluded.
    pub fn excludes(&self, path: &str) -> bool {
        let parts: Vec<&str> = path.split('/').collect();
        let mut excluded = false;
        for (exclude, rule) in &self.rules {
            // A rule matching the path or one of its parents.
            let hit = (1..=parts.len()).any(|n| path_match(rule, &parts[..n]));
            if hit {
                excluded = *exclude;
            }
        }
        excluded
    }

    /// Whether an exception rule could re-include something below the excluded `dir`.
    pub fn may_include_below(&self, dir: &str) -> bool {
        let depth = dir.split('/').count();
        self.rules.iter().any(|(exclude, rule)| {
            !exclude && (rule.len() > depth || rule.iter().any(|p| p == "**"))
        })
    }
}

/// A rule's components against a path's, `**` spanning any number of components.
fn path_match(rule: &[String], parts: &[&str]) -> bool {
    match rule.first() {
        None => parts.is_empty(),
        Some(r) if r == "**" => {
            (0..=parts.len()).any(|skip| path_match(&rule[1..], &parts[skip..]))
        }
        Some(r) => {
            !parts.is_empty() && glob_match(r, parts[0]) && path_match(&rule[1..], &parts[1..])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_filepath_match() {
        assert!(glob_match("*.go", "main.go"));
        assert!(!glob_match("*.go", "main.rs"));
        assert!(glob_match("f?le", "file"));
        assert!(glob_match("[a-c]x", "bx"));
        assert!(!glob_match("[^a-c]x", "bx"));
        assert!(glob_match("[!a-c]x", "dx"));
        assert!(glob_match("a\\*b", "a*b"));
        assert!(!glob_match("a\\*b", "axb"));
        assert!(glob_match("*", ""));
        assert!(glob_match("foo*", "foo"));
        assert!(!glob_match("[a-", "a"));
    }

    #[test]
    fn dockerignore_rules() {
        let ig =
            Ignore::parse("# comment\n*.log\n!keep.log\nbuild/\n**/secret\nba*\n!bay\n").unwrap();
        assert!(ig.excludes("x.log"));
        assert!(!ig.excludes("keep.log"));
        assert!(ig.excludes("build"));
        assert!(ig.excludes("build/out/a.o"), "below an excluded directory");
        assert!(ig.excludes("a/b/secret"));
        assert!(ig.excludes("secret"));
        assert!(ig.excludes("bar"));
        assert!(!ig.excludes("bay"), "the last matching rule wins");
        assert!(!ig.excludes("src/main.rs"));
        assert!(Ignore::parse("!\n").is_err());
        let ig = Ignore::parse("/docs\n").unwrap();
        assert!(ig.excludes("docs/readme"), "a leading slash is dropped");
    }

    #[test]
    fn cleaning_stays_in_the_root() {
        assert_eq!(clean("../../etc/passwd"), "etc/passwd");
        assert_eq!(clean("./a/./b/../c/"), "a/c");
        assert_eq!(clean("/"), "");
    }
}
