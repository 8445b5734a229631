//! Dockerfile → syntax tree, a port of BuildKit's `frontend/dockerfile/parser`
//! (`parser.go`, `line_parsers.go`, `split_command.go`).

use super::directives::DirectiveParser;
use super::heredoc::heredocs_from_line;
use super::json::{parse_string_array, JsonArray};
use super::shell::is_space;
use super::{Dockerfile, Limits, Node, ParseError, Warning};

const BOM: char = '\u{feff}';

/// `[\t\v\f\r ]`, BuildKit's `reWhitespace`.
fn is_token_ws(c: char) -> bool {
    matches!(c, '\t' | '\x0b' | '\x0c' | '\r' | ' ')
}

/// Physical lines, each with its line ending, and the line-length cap.
struct Lines<'a> {
    rest: &'a str,
    max: usize,
    /// Lines handed out so far.
    count: usize,
}

impl<'a> Lines<'a> {
    fn next_line(&mut self, file: &str) -> Result<Option<&'a str>, ParseError> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let end = self
            .rest
            .find('\n')
            .map(|i| i + 1)
            .unwrap_or(self.rest.len());
        let (line, rest) = self.rest.split_at(end);
        self.rest = rest;
        self.count += 1;
        if line.trim_end_matches('\n').len() > self.max {
            return Err(ParseError::new(
                file,
                self.count,
                self.count,
                format!(
                    "dockerfile line greater than max allowed size of {}",
                    self.max
                ),
            ));
        }
        Ok(Some(line))
    }
}

fn trim_newline(s: &str) -> &str {
    s.trim_end_matches(['\r', '\n'])
}

fn is_comment(line: &str) -> bool {
    line.trim_start_matches(is_space).starts_with('#')
}

fn is_empty_continuation_line(line: &str) -> bool {
    trim_newline(line).trim_start_matches(is_space).is_empty()
}

/// The continuation regexp `([^E])E[ \t]*$|^E[ \t]*$`: returns the line
/// without the escape (and what follows it) and whether the instruction
/// ends here.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let t = line.trim_end_matches([' ', '\t']);
    if let Some(before) = t.strip_suffix(escape) {
        match before.chars().last() {
            None => return ("", false),
            Some(c) if c != escape => return (before, false),
            Some(_) => {}
        }
    }
    (line, true)
}

struct Ctx<'a> {
    escape: char,
    limits: &'a Limits,
}

/// Parse a whole Dockerfile (see [`super::parse`]).
pub(crate) fn parse(file: &str, text: &str, limits: &Limits) -> Result<Dockerfile, ParseError> {
    if text.len() > limits.max_file_bytes {
        return Err(ParseError::new(
            file,
            1,
            1,
            format!(
                "dockerfile is larger than the maximum of {} bytes",
                limits.max_file_bytes
            ),
        ));
    }
    let mut lines = Lines {
        rest: text,
        max: limits.max_line_bytes,
        count: 0,
    };
    let mut dp = DirectiveParser::default();
    let mut directives = Vec::new();
    let mut escape = '\\';
    let mut nodes: Vec<Node> = Vec::new();
    let mut warnings = Vec::new();
    let mut comments: Vec<String> = Vec::new();
    let mut current_line = 0usize;

    // BuildKit's processLine: newline trimmed, leading blanks trimmed for
    // the first line of an instruction, directive check, comment removed.
    let mut process_line = |raw: &str,
                            strip_left: bool,
                            lineno: usize,
                            escape: &mut char|
     -> Result<(String, bool), ParseError> {
        let mut token = trim_newline(raw);
        if strip_left {
            token = token.trim_start_matches(is_space);
        }
        let directive = dp
            .parse_line(token, lineno)
            .map_err(|m| ParseError::new(file, lineno, lineno, m))?;
        let ok = directive.is_some();
        if let Some(d) = directive {
            if d.name == "escape" {
                *escape = d.value.chars().next().unwrap_or('\\');
            }
            directives.push(d);
        }
        let out = if is_comment(token) {
            String::new()
        } else {
            token.to_string()
        };
        Ok((out, ok))
    };

    while let Some(raw) = lines.next_line(file)? {
        let mut raw = raw;
        if current_line == 0 {
            raw = raw.strip_prefix(BOM).unwrap_or(raw);
        }
        if is_comment(raw) {
            // BuildKit drops the first byte of the untrimmed line.
            let mut chars = raw.chars();
            chars.next();
            let comment = chars.as_str().trim();
            if comment.is_empty() {
                comments.clear();
            } else {
                comments.push(comment.to_string());
            }
        }
        let (first, directive_ok) = process_line(raw, true, current_line + 1, &mut escape)?;
        if directive_ok {
            comments.pop();
        }
        current_line += 1;
        let start_line = current_line;

        let (first, mut end_of_line) = trim_continuation(&first, escape);
        if end_of_line && first.is_empty() {
            continue;
        }
        let mut buf = first.to_string();
        let mut has_empty_continuation = false;
        while !end_of_line {
            let Some(raw) = lines.next_line(file)? else {
                break;
            };
            let (processed, _) = process_line(raw, false, current_line + 1, &mut escape)?;
            current_line += 1;
            if is_comment(raw) {
                continue;
            }
            if is_empty_continuation_line(&processed) {
                has_empty_continuation = true;
                continue;
            }
            let (part, eol) = trim_continuation(&processed, escape);
            end_of_line = eol;
            buf.push_str(part);
            if buf.len() > limits.max_instruction_bytes {
                return Err(ParseError::new(
                    file,
                    start_line,
                    current_line,
                    format!(
                        "instruction longer than the maximum of {} bytes",
                        limits.max_instruction_bytes
                    ),
                ));
            }
        }

        if has_empty_continuation {
            warnings.push(Warning {
                line: current_line,
                message: format!("Empty continuation line found in: {buf}"),
            });
        }

        if nodes.len() >= limits.max_instructions {
            return Err(ParseError::new(
                file,
                start_line,
                current_line,
                format!(
                    "too many instructions (the maximum is {})",
                    limits.max_instructions
                ),
            ));
        }

        let ctx = Ctx { escape, limits };
        let mut node = new_node_from_line(&ctx, &buf, 0)
            .map_err(|m| ParseError::new(file, start_line, current_line, m))?;
        node.comments = std::mem::take(&mut comments);

        if node.can_contain_heredoc() && buf.contains("<<") {
            let heredocs = heredocs_from_line(&buf)
                .map_err(|m| ParseError::new(file, start_line, current_line, m))?;
            for mut heredoc in heredocs {
                let mut terminated = false;
                while let Some(raw) = lines.next_line(file)? {
                    current_line += 1;
                    let mut candidate = trim_newline(raw);
                    if heredoc.chomp {
                        candidate = candidate.trim_start_matches('\t');
                    }
                    if candidate == heredoc.name {
                        terminated = true;
                        break;
                    }
                    heredoc.content.push_str(raw);
                }
                if !terminated {
                    return Err(ParseError::new(
                        file,
                        start_line,
                        current_line,
                        "unterminated heredoc",
                    ));
                }
                node.heredocs.push(heredoc);
            }
        }

        node.set_lines(start_line, current_line);
        nodes.push(node);
    }

    if nodes.is_empty() {
        let line = current_line.max(1);
        return Err(ParseError::new(
            file,
            line,
            line,
            "file with no instructions",
        ));
    }

    Ok(Dockerfile {
        name: file.to_string(),
        escape,
        directives,
        nodes,
        warnings,
    })
}

/// BuildKit `splitCommand` + dispatch to the line parser of the keyword.
fn new_node_from_line(ctx: &Ctx<'_>, line: &str, depth: usize) -> Result<Node, String> {
    let (keyword, flags, args) = split_command(line);
    let mut node = Node {
        keyword,
        flags,
        original: line.to_string(),
        ..Node::default()
    };
    let rest = args.as_str();
    match node.keyword.as_str() {
        "add" | "copy" | "volume" => {
            let (a, json) = parse_maybe_json_to_list(rest)?;
            node.args = a;
            node.json = json;
        }
        "cmd" | "entrypoint" | "run" | "shell" => {
            let (a, json) = parse_maybe_json(rest)?;
            node.args = a;
            node.json = json;
        }
        "arg" => node.args = parse_words(rest, ctx.escape),
        "env" => node.args = parse_name_val(rest, "ENV", ctx.escape)?,
        "label" => node.args = parse_name_val(rest, "LABEL", ctx.escape)?,
        "expose" | "from" => node.args = split_ws(rest),
        "healthcheck" => {
            let (a, json) = parse_health_config(rest)?;
            node.args = a;
            node.json = json;
        }
        "maintainer" | "stopsignal" | "user" | "workdir" => {
            if !rest.is_empty() {
                node.args = vec![rest.to_string()];
            }
        }
        "onbuild" => {
            if !rest.is_empty() {
                if depth + 1 > ctx.limits.max_onbuild_depth {
                    return Err(format!(
                        "ONBUILD nested more than {} levels deep",
                        ctx.limits.max_onbuild_depth
                    ));
                }
                node.sub = Some(Box::new(new_node_from_line(ctx, rest, depth + 1)?));
            }
        }
        // Unknown instructions are kept, without arguments, and refused
        // later by the instruction layer.
        _ => node.args = vec![String::new()],
    }
    Ok(node)
}

/// The keyword (lower case), the leading `--flags` and the rest, trimmed.
pub(crate) fn split_command(line: &str) -> (String, Vec<String>, String) {
    let t = line.trim();
    match t.find(is_token_ws) {
        None => (t.to_lowercase(), Vec::new(), String::new()),
        Some(i) => {
            let cmd = t[..i].to_lowercase();
            let rest = t[i..].trim_start_matches(is_token_ws);
            let (args, flags) = extract_builder_flags(rest);
            (cmd, flags, args.trim().to_string())
        }
    }
}

/// BuildKit `extractBuilderFlags`: leading words starting with `--`, with
/// quotes and `\` escapes removed; a bare `--` ends them.
fn extract_builder_flags(line: &str) -> (&str, Vec<String>) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let n = chars.len();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut pos = 0usize;
    while pos <= n {
        let at_end = pos == n;
        let mut ch = if at_end { '\0' } else { chars[pos].1 };
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if is_space(ch) {
                pos += 1;
                continue;
            }
            if ch != '-' || pos + 1 == n || chars[pos + 1].1 != '-' {
                return (&line[chars[pos].0..], words);
            }
            phase = Phase::Word;
        }
        if at_end {
            if word != "--" && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            break;
        }
        if phase == Phase::Word {
            if is_space(ch) {
                phase = Phase::Spaces;
                if word == "--" {
                    return (&line[chars[pos].0..], words);
                }
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                word.clear();
                blank_ok = false;
                pos += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
                pos += 1;
                continue;
            }
            if ch == '\\' {
                if pos + 1 == n {
                    pos += 1;
                    continue;
                }
                pos += 1;
                ch = chars[pos].1;
            }
            word.push(ch);
            pos += 1;
            continue;
        }
        // In quotes.
        if ch == quote {
            phase = Phase::Word;
            pos += 1;
            continue;
        }
        if ch == '\\' {
            if pos + 1 == n {
                phase = Phase::Word;
                pos += 1;
                continue;
            }
            pos += 1;
            ch = chars[pos].1;
        }
        word.push(ch);
        pos += 1;
    }
    ("", words)
}

/// Split on `[\t\v\f\r ]+` (BuildKit `parseStringsWhitespaceDelimited`).
fn split_ws(rest: &str) -> Vec<String> {
    if rest.is_empty() {
        return Vec::new();
    }
    rest.split(is_token_ws)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

const NOT_STRING_ARRAY: &str =
    "when using JSON array syntax, arrays must be comprised of strings only";

/// RUN, CMD, ENTRYPOINT, SHELL: a JSON array, or the whole text.
fn parse_maybe_json(rest: &str) -> Result<(Vec<String>, bool), String> {
    if rest.is_empty() {
        return Ok((Vec::new(), false));
    }
    match parse_string_array(rest) {
        JsonArray::Strings(v) => Ok((v, true)),
        JsonArray::NotStrings => Err(NOT_STRING_ARRAY.to_string()),
        JsonArray::Invalid => Ok((vec![rest.to_string()], false)),
    }
}

/// ADD, COPY, VOLUME: a JSON array, or whitespace-separated words.
fn parse_maybe_json_to_list(rest: &str) -> Result<(Vec<String>, bool), String> {
    match parse_string_array(rest) {
        JsonArray::Strings(v) => Ok((v, true)),
        JsonArray::NotStrings => Err(NOT_STRING_ARRAY.to_string()),
        JsonArray::Invalid => Ok((split_ws(rest), false)),
    }
}

/// HEALTHCHECK: the type word, then the command as for CMD.
fn parse_health_config(rest: &str) -> Result<(Vec<String>, bool), String> {
    let sep = rest.find(is_space).unwrap_or(rest.len());
    if sep == 0 {
        return Ok((Vec::new(), false));
    }
    let typ = &rest[..sep];
    let cmd = rest[sep..].trim_start_matches(is_space);
    let (args, json) = parse_maybe_json(cmd)?;
    let mut out = vec![typ.to_string()];
    out.extend(args);
    Ok((out, json))
}

/// BuildKit `parseWords`: split at unquoted whitespace, keeping quotes and
/// escapes (they are removed at expansion time).
pub(crate) fn parse_words(rest: &str, escape: char) -> Vec<String> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let chars: Vec<char> = rest.chars().collect();
    let n = chars.len();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut pos = 0usize;
    while pos <= n {
        let at_end = pos == n;
        let mut ch = if at_end { '\0' } else { chars[pos] };
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if is_space(ch) {
                pos += 1;
                continue;
            }
            phase = Phase::Word;
        }
        if at_end {
            if blank_ok || !word.is_empty() {
                words.push(word);
            }
            break;
        }
        if phase == Phase::Word {
            if is_space(ch) {
                phase = Phase::Spaces;
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                word.clear();
                blank_ok = false;
                pos += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
            }
            if ch == escape {
                if pos + 1 == n {
                    pos += 1;
                    continue;
                }
                word.push(ch);
                pos += 1;
                ch = chars[pos];
            }
            word.push(ch);
            pos += 1;
            continue;
        }
        // In quotes.
        if ch == quote {
            phase = Phase::Word;
        }
        if ch == escape && quote != '\'' {
            if pos + 1 == n {
                phase = Phase::Word;
                pos += 1;
                continue;
            }
            pos += 1;
            word.push(ch);
            ch = chars[pos];
        }
        word.push(ch);
        pos += 1;
    }
    words
}

/// ENV and LABEL: `k=v …` triples `[k, v, "="]`, or the legacy `K v…` form
/// as one triple `[K, "v…", ""]`.
fn parse_name_val(rest: &str, key: &str, escape: char) -> Result<Vec<String>, String> {
    let words = parse_words(rest, escape);
    let Some(first) = words.first() else {
        return Ok(Vec::new());
    };
    if !first.contains('=') {
        let Some(i) = rest.find(is_token_ws) else {
            return Err(format!("{key} must have two arguments"));
        };
        let value = rest[i..].trim_start_matches(is_token_ws);
        return Ok(vec![
            rest[..i].to_string(),
            value.to_string(),
            String::new(),
        ]);
    }
    let mut out = Vec::with_capacity(words.len() * 3);
    for word in &words {
        let Some((k, v)) = word.split_once('=') else {
            return Err(format!(
                "Syntax error - can't find = in {word:?}. Must be of the form: name=value"
            ));
        };
        out.push(k.to_string());
        out.push(v.to_string());
        out.push("=".to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_regexp() {
        assert_eq!(trim_continuation("a \\", '\\'), ("a ", false));
        assert_eq!(trim_continuation("a\\  \t", '\\'), ("a", false));
        assert_eq!(trim_continuation("\\", '\\'), ("", false));
        assert_eq!(trim_continuation("  \\", '\\'), ("  ", false));
        assert_eq!(trim_continuation("a\\\\", '\\'), ("a\\\\", true));
        assert_eq!(trim_continuation("a`", '`'), ("a", false));
        assert_eq!(trim_continuation("a\\", '`'), ("a\\", true));
        assert_eq!(trim_continuation("", '\\'), ("", true));
    }

    #[test]
    fn flags() {
        let (cmd, flags, args) = split_command("COPY --chown=\"a b\" --link -- --x y");
        assert_eq!(cmd, "copy");
        assert_eq!(flags, vec!["--chown=a b", "--link"]);
        assert_eq!(args, "--x y");
        let (_, flags, args) = split_command("CMD --doit -- [ ]");
        assert_eq!(flags, vec!["--doit"]);
        assert_eq!(args, "[ ]");
        let (_, flags, args) = split_command("RUN --a=\\\"b -c");
        assert_eq!(flags, vec!["--a=\"b"]);
        assert_eq!(args, "-c");
        let (cmd, flags, args) = split_command("RUN");
        assert_eq!((cmd.as_str(), flags.len(), args.as_str()), ("run", 0, ""));
    }

    #[test]
    fn words_keep_quotes() {
        assert_eq!(
            parse_words("a=\"b c\" d='e f'", '\\'),
            vec!["a=\"b c\"", "d='e f'"]
        );
        assert_eq!(parse_words("a=b\\ c", '\\'), vec!["a=b\\ c"]);
        assert_eq!(parse_words("x=\"\"", '\\'), vec!["x=\"\""]);
        assert_eq!(parse_words("a=`\"b c", '`'), vec!["a=`\"b", "c"]);
        assert_eq!(parse_words("  ", '\\'), Vec::<String>::new());
    }
}
