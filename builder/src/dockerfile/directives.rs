//! Parser directives: `# syntax=…`, `# escape=…`, `# check=…`.
//!
//! As in BuildKit, they are recognised only at the very top of the file:
//! the first line that is not a directive (an instruction, another comment,
//! a blank line or an unknown `# key=value`) ends them, and each may appear
//! once.

/// One directive found at the top of the Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// `syntax`, `escape` or `check` (lower case).
    pub name: String,
    /// The value, trimmed.
    pub value: String,
    /// 1-based line.
    pub line: usize,
}

const VALID: [&str; 3] = ["syntax", "escape", "check"];

/// Go regexp `\s`.
fn is_re_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\x0c' | '\r' | ' ')
}

/// `^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`
fn match_directive(line: &str) -> Option<(&str, String)> {
    let rest = line.strip_prefix('#')?.trim_start_matches(is_re_space);
    let first = rest.chars().next()?;
    if !first.is_ascii_alphabetic() {
        return None;
    }
    let name_len = rest
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(rest.len());
    let (name, rest) = rest.split_at(name_len);
    let after = rest.trim_start_matches(is_re_space).strip_prefix('=')?;
    if after.contains('\n') {
        return None;
    }
    let trimmed = after.trim_start_matches(is_re_space);
    let value = if trimmed.is_empty() {
        // `(.+?)` needs one character: the regexp backtracks and takes the
        // last blank.
        after.chars().last()?.to_string()
    } else {
        trimmed.trim_end_matches(is_re_space).to_string()
    };
    Some((name, value))
}

/// Tracks the directive section at the top of a Dockerfile.
#[derive(Debug, Default)]
pub(crate) struct DirectiveParser {
    done: bool,
    seen: Vec<String>,
}

impl DirectiveParser {
    /// Look at one line (newline and leading blanks removed). Returns the
    /// directive if the line is one.
    pub(crate) fn parse_line(
        &mut self,
        line: &str,
        lineno: usize,
    ) -> Result<Option<Directive>, String> {
        if self.done {
            return Ok(None);
        }
        let Some((name, value)) = match_directive(line) else {
            self.done = true;
            return Ok(None);
        };
        let key = name.to_ascii_lowercase();
        if !VALID.contains(&key.as_str()) {
            self.done = true;
            return Ok(None);
        }
        if self.seen.contains(&key) {
            return Err(format!("only one {key} parser directive can be used"));
        }
        self.seen.push(key.clone());
        if key == "escape" && value != "`" && value != "\\" {
            return Err(format!(
                "invalid escape token '{value}' does not match ` or \\"
            ));
        }
        Ok(Some(Directive {
            name: key,
            value,
            line: lineno,
        }))
    }
}

/// The `# check=` directive, as BuildKit's linter reads it:
/// `skip=all` or `skip=Rule1,Rule2`, and `error=true|false`, separated by `;`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckConfig {
    /// Every check is skipped.
    pub skip_all: bool,
    /// Names of skipped checks.
    pub skip: Vec<String>,
    /// Warnings fail the build.
    pub error: bool,
}

impl CheckConfig {
    /// Parse the value of a `# check=` directive.
    pub fn parse(value: &str) -> Result<CheckConfig, String> {
        let mut cfg = CheckConfig::default();
        let value = value.trim();
        if value.is_empty() {
            return Ok(cfg);
        }
        for part in value.splitn(2, ';') {
            let Some((k, v)) = part.split_once('=') else {
                return Err(format!("invalid check option {part:?}"));
            };
            match k.trim() {
                "skip" => {
                    let v = v.trim();
                    if v == "all" {
                        cfg.skip_all = true;
                    } else {
                        cfg.skip = v.split(',').map(|s| s.trim().to_string()).collect();
                    }
                }
                "error" => {
                    cfg.error = parse_go_bool(v.trim())
                        .ok_or_else(|| format!("failed to parse check option {part:?}"))?;
                }
                other => return Err(format!("invalid check option {other:?}")),
            }
        }
        Ok(cfg)
    }
}

/// Go's `strconv.ParseBool`.
pub(crate) fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}
