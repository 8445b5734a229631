//! Output the way the docker CLI prints it: tables padded like Go's tabwriter, sizes in
//! decimal units with three significant digits, ages in words, and `--format` templates.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use gotmpl::parse::{Expr, ListNode, Node, Parser, PipeNode, Pos};
use gotmpl::{Template, TemplateError, Value as TValue};
use serde_json::Value;

/// Print rows under headers, columns padded to their widest cell plus 3 spaces, at least 10
/// wide (docker's `tabwriter.NewWriter(out, 10, 1, 3, ' ', 0)`).
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    table_min(10, headers, rows)
}

/// `table` with columns at least `min_width` wide (`top`'s tabwriter has 20).
pub fn table_min(min_width: usize, headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header_row: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header_row).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                let width = (widths[i] + 3).max(min_width);
                line.push_str(&" ".repeat(width - cell.chars().count()));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// go-units `HumanSizeWithPrecision(size, 3)`: `0B`, `1kB`, `4.26MB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1000.0 && unit < UNITS.len() - 1 {
        size /= 1000.0;
        unit += 1;
    }
    format!("{}{}", three_significant(size), UNITS[unit])
}

/// go-units `BytesSize`: binary units with four significant digits, `7.568GiB`.
pub fn binary_size(bytes: u64) -> String {
    const UNITS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1024.0 && unit < UNITS.len() - 1 {
        size /= 1024.0;
        unit += 1;
    }
    let decimals = 3usize.saturating_sub(size.max(1.0).log10().floor() as usize);
    let s = format!("{size:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        &s
    };
    format!("{s}{}", UNITS[unit])
}

/// Go's `%.3g` for values below 1000: three significant digits, trailing zeros dropped.
fn three_significant(v: f64) -> String {
    let decimals = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    if s == "1000" {
        "1e+03".into()
    } else {
        s
    }
}

/// go-units `HumanDuration`, as in "5 minutes" (callers add " ago").
pub fn human_duration(seconds: i64) -> String {
    let hours = ((seconds as f64) / 3600.0 + 0.5) as i64;
    match seconds {
        s if s < 1 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < 60 => format!("{s} seconds"),
        s if s / 60 == 1 => "About a minute".into(),
        s if s / 60 < 60 => format!("{} minutes", s / 60),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        s => format!("{} years", s / 3600 / 24 / 365),
    }
}

pub fn parse_time(s: Option<&str>) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// "3 hours ago", or "N/A" when the time is unknown.
pub fn ago(t: Option<DateTime<Utc>>) -> String {
    match t {
        Some(t) => format!("{} ago", human_duration((Utc::now() - t).num_seconds())),
        None => "N/A".into(),
    }
}

/// docker's `stringutils.Ellipsis`: cut to `max` characters, the last one an ellipsis.
pub fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `--format`: Go's text/template (the `gotmpl` crate) over the JSON value that docker would
/// template, with docker's functions (`json`, `join`, `lower`, `upper`, `title`, `split`,
/// `truncate`, `pad`) beside Go's builtins (`index`, `len`, `printf`, `print`, `println`, `eq`,
/// `and`, …). A missing field prints `<no value>`, as on docker's maps. The two-character
/// escapes `\t` and `\n` become a tab and a newline, as docker's formatter does.
pub fn template(tmpl: &str, value: &Value) -> anyhow::Result<String> {
    let t = parse(&unescape(tmpl), Funcs::Docker)?;
    execute(&t, &to_template_value(value))
}

/// What `inspect` commands print: each document through `format`, or all of them as one
/// pretty JSON array.
pub fn print_inspected(format: Option<&str>, documents: Vec<Value>) -> anyhow::Result<()> {
    match format {
        Some(fmt) => {
            for d in &documents {
                println!("{}", template(fmt, d)?);
            }
        }
        None => println!(
            "{}",
            serde_json::to_string_pretty(&Value::Array(documents))?
        ),
    }
    Ok(())
}

/// Whether `tmpl` parses as a `--format` template (the error `template` would give if not).
pub fn check_template(tmpl: &str) -> anyhow::Result<()> {
    parse(&unescape(tmpl), Funcs::Docker).map(drop)
}

/// docker's `table` directive: for a format that starts with `table`, the template after it
/// (empty for `table` alone, which asks for the command's default table).
pub fn table_format(format: &str) -> Option<&str> {
    format
        .strip_prefix("table")
        .map(|rest| rest.trim_matches(' '))
}

/// `--format 'table …'`: `body` run over each row, under a header row, aligned like docker's
/// tabwriter (columns are the tab-separated cells). The header is `body` run over `headers`
/// (field name, column title) with docker's header functions, which keep their first argument
/// as it is, so `{{upper .Tag}}` heads its column `TAG` (`pad` still pads).
pub fn table_template(
    body: &str,
    headers: &[(&str, &str)],
    rows: &[Value],
) -> anyhow::Result<String> {
    let body = unescape(body);
    let row = parse(&body, Funcs::Docker)?;
    let header = parse(&body, Funcs::Header)?;
    let titles: BTreeMap<Arc<str>, TValue> = headers
        .iter()
        .map(|(field, title)| (Arc::from(*field), TValue::String(Arc::from(*title))))
        .collect();
    // docker ignores an error of the header run (a title is a string where a row may have a
    // list) and keeps what it wrote before the error.
    let mut text = String::new();
    let _ = header.execute_fmt(&mut text, &TValue::Map(Arc::new(titles)));
    text.push('\n');
    for r in rows {
        text.push_str(&execute(&row, &to_template_value(r))?);
        text.push('\n');
    }
    Ok(tabwrite(&text))
}

fn unescape(tmpl: &str) -> String {
    tmpl.replace("\\t", "\t").replace("\\n", "\n")
}

/// Which of docker's function sets a template runs with: the real ones, or the header ones
/// of a `table`.
#[derive(Clone, Copy, PartialEq)]
enum Funcs {
    Docker,
    Header,
}

/// The functions every template has: Go's builtins (gotmpl's) and docker's.
const GO_BUILTINS: [&str; 19] = [
    "and", "call", "eq", "ge", "gt", "html", "index", "js", "le", "len", "lt", "ne", "not", "or",
    "print", "printf", "println", "slice", "urlquery",
];
const DOCKER_FUNCS: [&str; 8] = [
    "json", "join", "lower", "pad", "split", "title", "truncate", "upper",
];

fn parse(src: &str, funcs: Funcs) -> anyhow::Result<Template> {
    let parsing = |e: TemplateError| anyhow::anyhow!("template parsing error: {e}");
    // Go's parser refuses more than gotmpl's: blocks that do not nest, and a call of an
    // undefined function wherever it stands (gotmpl fails only when it runs into one).
    let (tree, defines) = Parser::new(src, "{{", "}}")
        .and_then(|p| p.parse())
        .map_err(parsing)?;
    check_blocks(src).map_err(|(offset, message)| parse_error(src, offset, message))?;
    if let Some((pos, name)) = std::iter::once(&tree)
        .chain(defines.iter().map(|d| &d.body))
        .find_map(undefined_function)
    {
        let message = format!("function \"{name}\" not defined");
        return Err(parse_error(src, pos.offset, &message));
    }
    let mut t = Template::new("");
    for name in DOCKER_FUNCS {
        t = t.func(name, move |args| call(funcs, name, args));
    }
    t.parse(src).map_err(parsing)
}

/// `template parsing error: template: LINE:COL: MESSAGE`, in gotmpl's shape.
fn parse_error(src: &str, offset: usize, message: &str) -> anyhow::Error {
    let before = &src[..offset.min(src.len())];
    let line = before.matches('\n').count() + 1;
    let col = before[before.rfind('\n').map_or(0, |i| i + 1)..]
        .chars()
        .count()
        + 1;
    anyhow::anyhow!("template parsing error: template: {line}:{col}: {message}")
}

/// gotmpl's parser takes a stray `{{end}}` or `{{else}}` for the end of the template, and a
/// block still open at the end for closed; Go refuses both (and `{{break}}` outside a
/// `{{range}}`). Check how the actions nest: the offset and message of the first fault.
fn check_blocks(src: &str) -> Result<(), (usize, &'static str)> {
    let mut open: Vec<(&str, usize)> = Vec::new();
    let mut rest = 0;
    while let Some(found) = src[rest..].find("{{") {
        let mut body = rest + found + 2;
        let after = &src[body..];
        if after.starts_with('-') && after[1..].starts_with([' ', '\t', '\r', '\n']) {
            body += 1;
        }
        // gotmpl has lexed the template, so every action is closed.
        let Some(end) = action_end(src, body) else {
            return Ok(());
        };
        let text = src[body..end].trim_start();
        let at = end - text.len();
        let word = &text[..text
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(text.len())];
        match word {
            "if" | "range" | "with" | "define" | "block" => open.push((word, at)),
            "end" => {
                open.pop().ok_or((at, "unexpected {{end}}"))?;
            }
            "else" if !matches!(open.last(), Some(("if" | "range" | "with", _))) => {
                return Err((at, "unexpected {{else}}"));
            }
            "break" if !open.iter().any(|(w, _)| *w == "range") => {
                return Err((at, "{{break}} outside {{range}}"));
            }
            "continue" if !open.iter().any(|(w, _)| *w == "range") => {
                return Err((at, "{{continue}} outside {{range}}"));
            }
            _ => {}
        }
        rest = end + 2;
    }
    match open.last() {
        Some((_, at)) => Err((*at, "unexpected EOF")),
        None => Ok(()),
    }
}

/// Where the `}}` that closes the action whose text starts at `from` stands: after a comment,
/// or outside the action's quoted strings and characters.
fn action_end(src: &str, from: usize) -> Option<usize> {
    let text = &src[from..];
    if let Some(comment) = text.trim_start().strip_prefix("/*") {
        let close = text.len() - comment.len() + comment.find("*/")? + 2;
        return text[close..].find("}}").map(|i| from + close + i);
    }
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' | '\'' => {
                while let Some((_, q)) = chars.next() {
                    if q == '\\' {
                        chars.next();
                    } else if q == c {
                        break;
                    }
                }
            }
            '`' => {
                for (_, q) in chars.by_ref() {
                    if q == '`' {
                        break;
                    }
                }
            }
            '}' if text[i..].starts_with("}}") => return Some(from + i),
            _ => {}
        }
    }
    None
}

fn execute(t: &Template, data: &TValue) -> anyhow::Result<String> {
    t.execute_to_string(data)
        .map_err(|e| anyhow::anyhow!("template: {e}"))
}

/// The first call of a function that is not defined, in a parsed template.
fn undefined_function(list: &ListNode) -> Option<(Pos, String)> {
    list.nodes.iter().find_map(|node| match node {
        Node::List(l) => undefined_function(l),
        Node::Action(a) => undefined_in_pipe(&a.pipe),
        Node::If(b) | Node::Range(b) | Node::With(b) => undefined_in_pipe(&b.pipe)
            .or_else(|| undefined_function(&b.body))
            .or_else(|| b.else_body.as_ref().and_then(undefined_function)),
        Node::Template(t) => t.pipe.as_ref().and_then(undefined_in_pipe),
        Node::Define(d) => undefined_function(&d.body),
        Node::Text(_) | Node::Break(_) | Node::Continue(_) => None,
    })
}

fn undefined_in_pipe(pipe: &PipeNode) -> Option<(Pos, String)> {
    pipe.commands
        .iter()
        .flat_map(|c| &c.args)
        .find_map(undefined_in_expr)
}

fn undefined_in_expr(expr: &Expr) -> Option<(Pos, String)> {
    match expr {
        Expr::Identifier(pos, name)
            if !GO_BUILTINS.contains(&name.as_str()) && !DOCKER_FUNCS.contains(&name.as_str()) =>
        {
            Some((*pos, name.to_string()))
        }
        Expr::Pipe(_, pipe) => undefined_in_pipe(pipe),
        Expr::Chain(_, inner, _) => undefined_in_expr(inner),
        _ => None,
    }
}

/// docker's template functions (its `templates.basicFunctions`, or `HeaderFunctions`), with
/// Go's argument checks: a missing value where a string is wanted is an error, a missing list
/// is an empty one.
fn call(funcs: Funcs, name: &str, args: &[TValue]) -> gotmpl::Result<TValue> {
    let want = |n: usize| {
        if args.len() == n {
            Ok(())
        } else {
            Err(TemplateError::ArgCount {
                name: name.to_string(),
                expected: n,
                got: args.len(),
            })
        }
    };
    let text = |s: String| Ok(TValue::String(Arc::from(s)));
    if funcs == Funcs::Header && name != "pad" {
        // A column's title stays as it is.
        return match name {
            "json" | "title" | "lower" | "upper" => want(1).map(|_| args[0].clone()),
            _ => want(2).map(|_| args[0].clone()),
        };
    }
    match name {
        "json" => {
            want(1)?;
            let v = to_json(&args[0])?;
            text(serde_json::to_string(&v).map_err(|e| TemplateError::Exec(e.to_string()))?)
        }
        "join" => {
            want(2)?;
            let sep = str_arg(&args[1])?;
            let items: Vec<String> = match &args[0] {
                TValue::List(items) => items.iter().map(|v| v.to_string()).collect(),
                TValue::Nil => Vec::new(),
                other => return Err(wrong_type("[]string", other)),
            };
            text(items.join(sep))
        }
        "split" => {
            want(2)?;
            let (s, sep) = (str_arg(&args[0])?, str_arg(&args[1])?);
            // Go's strings.Split: an empty separator splits after each character.
            let parts: Vec<TValue> = if sep.is_empty() {
                s.chars()
                    .map(|c| TValue::String(Arc::from(c.to_string())))
                    .collect()
            } else {
                s.split(sep).map(|p| TValue::String(Arc::from(p))).collect()
            };
            Ok(TValue::List(parts.into()))
        }
        "lower" => want(1).and_then(|_| text(str_arg(&args[0])?.to_lowercase())),
        "upper" => want(1).and_then(|_| text(str_arg(&args[0])?.to_uppercase())),
        "title" => want(1).and_then(|_| text(go_title(str_arg(&args[0])?))),
        "pad" => {
            want(3)?;
            let s = str_arg(&args[0])?;
            let (prefix, suffix) = (count_arg(&args[1])?, count_arg(&args[2])?);
            if s.is_empty() {
                return text(String::new());
            }
            text(format!("{}{s}{}", " ".repeat(prefix), " ".repeat(suffix)))
        }
        "truncate" => {
            want(2)?;
            let s = str_arg(&args[0])?;
            let n = count_arg(&args[1])?;
            if s.len() < n {
                return text(s.to_string());
            }
            // Go cuts at byte n; stop at the character boundary before it.
            let cut = (0..=n).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
            text(s[..cut].to_string())
        }
        _ => Err(TemplateError::UndefinedFunction(name.to_string())),
    }
}

fn wrong_type(want: &str, got: &TValue) -> TemplateError {
    TemplateError::Exec(format!(
        "wrong type for value; expected {want}; got {}",
        got.type_name()
    ))
}

fn str_arg(v: &TValue) -> gotmpl::Result<&str> {
    match v {
        TValue::String(s) => Ok(s),
        TValue::Nil => Err(TemplateError::Exec("invalid value; expected string".into())),
        other => Err(wrong_type("string", other)),
    }
}

/// An `int` argument that `strings.Repeat` or a slice takes (Go panics on a negative one).
fn count_arg(v: &TValue) -> gotmpl::Result<usize> {
    let n = match v {
        TValue::Int(n) => *n,
        TValue::Uint(n) => i64::try_from(*n).unwrap_or(i64::MAX),
        other => return Err(wrong_type("int", other)),
    };
    usize::try_from(n).map_err(|_| TemplateError::Exec(format!("negative count {n}")))
}

/// Go's `strings.Title`: a letter after a separator (not a letter, digit or `_`) in capitals.
fn go_title(s: &str) -> String {
    let separator = |c: char| {
        if c.is_ascii() {
            !(c.is_ascii_alphanumeric() || c == '_')
        } else {
            c.is_whitespace()
        }
    };
    let mut prev = ' ';
    s.chars()
        .flat_map(|c| {
            let out: Vec<char> = if separator(prev) {
                c.to_uppercase().collect()
            } else {
                vec![c]
            };
            prev = c;
            out
        })
        .collect()
}

fn to_template_value(v: &Value) -> TValue {
    match v {
        Value::Null => TValue::Nil,
        Value::Bool(b) => TValue::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => TValue::Int(i),
            (None, Some(u)) => TValue::Uint(u),
            _ => TValue::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => TValue::String(Arc::from(s.as_str())),
        Value::Array(items) => TValue::List(items.iter().map(to_template_value).collect()),
        Value::Object(map) => TValue::Map(Arc::new(
            map.iter()
                .map(|(k, v)| (Arc::from(k.as_str()), to_template_value(v)))
                .collect(),
        )),
    }
}

/// For `json`: the value back as JSON (Go's encoding of a nil is `null`).
fn to_json(v: &TValue) -> gotmpl::Result<Value> {
    Ok(match v {
        TValue::Nil => Value::Null,
        TValue::Bool(b) => Value::Bool(*b),
        TValue::Int(n) => Value::from(*n),
        TValue::Uint(n) => Value::from(*n),
        TValue::Float(f) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .ok_or_else(|| TemplateError::Exec(format!("json: unsupported value: {f}")))?,
        TValue::String(s) => Value::String(s.to_string()),
        TValue::List(items) => Value::Array(items.iter().map(to_json).collect::<Result<_, _>>()?),
        TValue::Map(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.to_string(), to_json(v)?)))
                .collect::<gotmpl::Result<_>>()?,
        ),
        TValue::Function(_) => {
            return Err(TemplateError::Exec("json: unsupported type: func".into()))
        }
    })
}

/// docker's `tabwriter.NewWriter(out, 10, 1, 3, ' ', 0)` over `text`: a tab ends a cell, and
/// the cells of one column in adjacent lines (a block) are padded to the block's widest plus
/// 3, at least 10; a line's last cell (after its last tab) belongs to no column.
fn tabwrite(text: &str) -> String {
    let lines: Vec<Vec<&str>> = text.split('\n').map(|l| l.split('\t').collect()).collect();
    let mut out = String::new();
    tab_block(&lines, 0, lines.len(), &mut Vec::new(), &mut out);
    out
}

/// Go's `Writer.format`: lay out lines `line0..line1`, whose columns left of `widths.len()`
/// already have their widths.
fn tab_block(
    lines: &[Vec<&str>],
    mut line0: usize,
    line1: usize,
    widths: &mut Vec<usize>,
    out: &mut String,
) {
    let column = widths.len();
    let mut this = line0;
    while this < line1 {
        if column + 1 >= lines[this].len() {
            this += 1;
            continue;
        }
        tab_lines(lines, line0, this, widths, out);
        line0 = this;
        let mut width = 10;
        while this < line1 && column + 1 < lines[this].len() {
            width = width.max(lines[this][column].chars().count() + 3);
            this += 1;
        }
        widths.push(width);
        tab_block(lines, line0, this, widths, out);
        widths.pop();
        line0 = this;
    }
    tab_lines(lines, line0, line1, widths, out);
}

fn tab_lines(lines: &[Vec<&str>], line0: usize, line1: usize, widths: &[usize], out: &mut String) {
    for (i, line) in lines.iter().enumerate().take(line1).skip(line0) {
        for (j, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if let Some(w) = widths.get(j) {
                out.push_str(&" ".repeat(w.saturating_sub(cell.chars().count())));
            }
        }
        if i + 1 < lines.len() {
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_go_units() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1000), "1kB");
        assert_eq!(human_size(4_261_530), "4.26MB");
        assert_eq!(human_size(123_456), "123kB");
        assert_eq!(human_size(10_500_000), "10.5MB");
        assert_eq!(human_size(1_200_000_000), "1.2GB");
    }

    #[test]
    fn binary_sizes_like_go_units() {
        assert_eq!(binary_size(0), "0B");
        assert_eq!(binary_size(1023), "1023B");
        assert_eq!(binary_size(1024), "1KiB");
        assert_eq!(binary_size(1536), "1.5KiB");
        assert_eq!(binary_size(8_126_464_000), "7.568GiB");
        assert_eq!(binary_size(16 << 30), "16GiB");
    }

    #[test]
    fn durations_like_go_units() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(30), "30 seconds");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(600), "10 minutes");
        assert_eq!(human_duration(3600), "About an hour");
        assert_eq!(human_duration(5 * 3600), "5 hours");
        assert_eq!(human_duration(3 * 86400), "3 days");
        assert_eq!(human_duration(20 * 86400), "2 weeks");
        assert_eq!(human_duration(100 * 86400), "3 months");
        assert_eq!(human_duration(800 * 86400), "2 years");
    }

    #[test]
    fn tables_pad_like_tabwriter() {
        let t = table(&["A", "BB"], &[vec!["x".into(), "y".into()]]);
        assert_eq!(t, "A         BB\nx         y\n");
    }

    fn image() -> Value {
        serde_json::json!({
            "Id": "sha256:1",
            "Os": "Linux",
            "Size": 42,
            "RootFS": {"Type": "layers", "Layers": ["sha256:a", "sha256:b"]},
            "Config": {
                "Env": ["A=1", "B=2"],
                "Cmd": ["/bin/sh", "-c", "echo hi"],
                "Labels": {"z": "last", "a": "first"},
                "Entrypoint": null,
            },
            "State": {"Status": "running", "Running": true, "ExitCode": 0},
            "Empty": [],
        })
    }

    fn t(tmpl: &str) -> String {
        template(tmpl, &image()).unwrap_or_else(|e| panic!("{tmpl}: {e}"))
    }

    fn err(tmpl: &str) -> String {
        template(tmpl, &image()).unwrap_err().to_string()
    }

    #[test]
    fn templates_print_values_like_go() {
        assert_eq!(t("{{.Id}}\\t{{.Config.Env}}"), "sha256:1\t[A=1 B=2]");
        assert_eq!(t("a\\nb"), "a\nb");
        assert_eq!(t("{{.State.Status}}"), "running");
        assert_eq!(t("{{.Size}} {{.State.Running}}"), "42 true");
        assert_eq!(t("{{.Config.Labels}}"), "map[a:first z:last]");
        assert_eq!(t("{{.Empty}}"), "[]");
        // A missing field is no error (docker's values are maps).
        assert_eq!(t("{{.Nope}}"), "<no value>");
        assert_eq!(t("{{.Config.Nope}}"), "<no value>");
        assert_eq!(t("{{.Config.Entrypoint}}"), "<no value>");
        assert_eq!(
            template(
                "{{.}}",
                &serde_json::json!({"b": [1, "x", 1.5], "a": {"c": true}})
            )
            .unwrap(),
            "map[a:map[c:true] b:[1 x 1.5]]"
        );
        assert!(err("{{.Os.Name}}").starts_with("template: "));
    }

    #[test]
    fn templates_have_go_control_flow() {
        assert_eq!(t("{{range .Config.Env}}{{.}};{{end}}"), "A=1;B=2;");
        assert_eq!(t("{{range .Nope}}x{{else}}none{{end}}"), "none");
        assert_eq!(
            t("{{range $i, $e := .Config.Env}}{{$i}}:{{$e}} {{end}}"),
            "0:A=1 1:B=2 "
        );
        assert_eq!(
            t("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}},{{end}}"),
            "a=first,z=last,"
        );
        assert_eq!(t("{{if .State.Running}}up{{else}}down{{end}}"), "up");
        assert_eq!(t("{{if .Empty}}some{{else}}none{{end}}"), "none");
        assert_eq!(t("{{with .RootFS}}{{.Type}}{{end}}"), "layers");
        assert_eq!(t("{{with .Nope}}x{{else}}y{{end}}"), "y");
        assert_eq!(t("{{$os := .Os}}{{$os}}/{{$.Id}}"), "Linux/sha256:1");
        assert_eq!(t("{{- \" a \" -}}  {{- .Os -}}  "), " a Linux");
        assert_eq!(t("{{/* a comment */}}ok"), "ok");
    }

    #[test]
    fn templates_have_go_builtins() {
        assert_eq!(t("{{index .RootFS.Layers 0}}"), "sha256:a");
        assert_eq!(t("{{index .Config.Labels \"z\"}}"), "last");
        assert!(err("{{index .RootFS.Layers 5}}").contains("out of range"));
        assert_eq!(t("{{len .RootFS.Layers}} {{len .Os}}"), "2 5");
        assert_eq!(t("{{printf \"%s=%d\" .Os .Size}}"), "Linux=42");
        assert_eq!(t("{{printf \"%v\" .Config.Env}}"), "[A=1 B=2]");
        assert_eq!(t("{{print .Os .Size}}"), "Linux42");
        assert_eq!(t("{{print 1 2}}"), "1 2");
        assert_eq!(t("{{println .Os .Size}}"), "Linux 42\n");
        assert_eq!(t("{{eq .State.Status \"running\"}}"), "true");
        assert_eq!(t("{{ne .Size 42}}"), "false");
        assert_eq!(t("{{and .State.Running .Os}}"), "Linux");
        assert_eq!(t("{{or .Empty .Os}}"), "Linux");
        assert_eq!(t("{{not .State.Running}}"), "false");
        assert_eq!(t("{{if and .State.Running (eq .Size 42)}}y{{end}}"), "y");
    }

    #[test]
    fn templates_have_docker_functions() {
        assert_eq!(t("{{json .}}"), image().to_string());
        assert_eq!(t("{{json .Config.Env}}"), r#"["A=1","B=2"]"#);
        assert_eq!(t("{{json .Nope}}"), "null");
        assert_eq!(
            template("{{json .}}", &serde_json::json!({"a": "<&>"})).unwrap(),
            r#"{"a":"<&>"}"#
        );
        assert_eq!(t("{{join .Config.Cmd \" \"}}"), "/bin/sh -c echo hi");
        assert_eq!(t("{{join .Nope \",\"}}"), "");
        assert_eq!(t("{{lower .Os}} {{upper .Os}}"), "linux LINUX");
        assert_eq!(t("{{title \"hello wide_world-x\"}}"), "Hello Wide_world-X");
        assert_eq!(t("{{split \"a,b\" \",\"}}"), "[a b]");
        assert_eq!(t("{{index (split \"a,b\" \",\") 1}}"), "b");
        assert_eq!(t("{{split \"ab\" \"\"}}"), "[a b]");
        assert_eq!(t("{{len (split \"\" \",\")}}"), "1");
        assert_eq!(t("{{truncate .Id 6}}|{{truncate .Os 10}}"), "sha256|Linux");
        assert_eq!(t("{{truncate \"né\" 2}}"), "n");
        assert_eq!(t("[{{pad .Os 2 1}}]"), "[  Linux ]");
        assert_eq!(t("[{{pad \"\" 2 1}}]"), "[]");
        // Pipelines feed the last argument.
        assert_eq!(t("{{.Os | upper}}"), "LINUX");
        assert_eq!(
            t("{{join .Config.Cmd \",\" | upper}}"),
            "/BIN/SH,-C,ECHO HI"
        );
        assert_eq!(t("{{.Os | printf \"%s!\"}}"), "Linux!");
        // Go's type checks.
        assert!(err("{{upper .Size}}").contains("expected string"));
        assert!(err("{{upper .Nope}}").contains("expected string"));
        assert!(err("{{join .Os \",\"}}").contains("expected []string"));
        assert!(err("{{upper}}").contains("wrong number of arguments"));
        assert!(err("{{pad .Os -1 0}}").contains("negative"));
    }

    #[test]
    fn bad_templates_are_parsing_errors() {
        for bad in [
            "{{.Id",
            "{{if .Os}}x",
            "{{range .Config.Env}}{{if .}}x{{end}}",
            "{{define \"a\"}}x",
            "{{end}}after",
            "{{if .Os}}{{end}}{{end}}",
            "a{{else}}b",
            "{{with .Os}}{{else}}{{else}}{{end}}",
            "{{break}}",
            "{{if .Os}}{{continue}}{{end}}",
            "{{nope .Os}}",
            "{{if 1}}{{nope}}{{end}}",
            "{{.Os | nope}}",
        ] {
            let e = err(bad);
            assert!(
                e.starts_with("template parsing error: template: "),
                "{bad}: {e}"
            );
            assert!(!e.contains('\n'), "{e}");
        }
        assert_eq!(
            err("x{{nope .Os}}"),
            "template parsing error: template: 1:4: function \"nope\" not defined"
        );
        assert_eq!(
            err("a\n{{ end}}"),
            "template parsing error: template: 2:4: unexpected {{end}}"
        );
        assert_eq!(
            err("{{if .Os}}\n{{range .Empty}}{{end}}"),
            "template parsing error: template: 1:3: unexpected EOF"
        );
        // Braces in strings and comments are no action's end; keywords need a word's end.
        assert_eq!(t("{{printf \"}}{{end}}\"}}"), "}}{{end}}");
        assert_eq!(t("{{/* {{end}} }} */}}{{`}}`}}{{'}'}}"), "}}125");
        assert_eq!(t("{{- /* it's {{end}} */ -}} x"), "x");
        assert_eq!(t("{{- if .Os -}} y {{- else -}} n {{- end -}}"), "y");
        assert_eq!(
            t("{{range .Config.Env}}{{if eq . \"B=2\"}}{{break}}{{end}}{{.}}{{end}}"),
            "A=1"
        );
        assert_eq!(t("{{if .Nope}}a{{else if .Os}}b{{else}}c{{end}}"), "b");
        assert_eq!(
            t("{{define \"x\"}}[{{.}}]{{end}}{{template \"x\" .Os}}"),
            "[Linux]"
        );
    }

    #[test]
    fn table_directive() {
        assert_eq!(
            table_format("table {{.A}}\\t{{.B}}"),
            Some("{{.A}}\\t{{.B}}")
        );
        assert_eq!(table_format("table"), Some(""));
        assert_eq!(table_format("{{.A}}"), None);
        let rows = [
            serde_json::json!({"Repository": "busybox", "Tag": "latest", "Names": ["a"]}),
            serde_json::json!({"Repository": "me/a-much-longer-name", "Tag": "1", "Names": []}),
        ];
        let headers = [
            ("Repository", "REPOSITORY"),
            ("Tag", "TAG"),
            ("Names", "NAMES"),
        ];
        assert_eq!(
            table_template("{{.Repository}}\\t{{.Tag}}", &headers, &rows).unwrap(),
            "REPOSITORY              TAG\n\
             busybox                 latest\n\
             me/a-much-longer-name   1\n"
        );
        // Header functions keep the title; the rows get the real ones.
        assert_eq!(
            table_template(
                "{{lower .Tag}}\\t{{join .Names \",\"}}",
                &headers,
                &rows[..1]
            )
            .unwrap(),
            "TAG       NAMES\nlatest    a\n"
        );
        // No rows: the header alone.
        assert_eq!(
            table_template("{{.Tag}}\\t{{.Repository}}", &headers, &[]).unwrap(),
            "TAG       REPOSITORY\n"
        );
        assert!(check_template("{{.Tag}}").is_ok());
        assert!(check_template("{{.Tag").is_err());
        assert!(table_template("{{.Tag", &headers, &rows)
            .unwrap_err()
            .to_string()
            .starts_with("template parsing error: "));
    }

    #[test]
    fn tabwriter_blocks_like_go() {
        // Cells end with a tab; a column is the cells of adjacent lines; the last cell of a
        // line is in no column.
        assert_eq!(tabwrite("a\tb\tc\n"), "a         b         c\n");
        assert_eq!(
            tabwrite("aaaa\tbbb\td\naa\tb\tdd\na\t\naa\tcccc\teee\n"),
            "aaaa      bbb       d\n\
             aa        b         dd\n\
             a         \n\
             aa        cccc      eee\n"
        );
        assert_eq!(
            tabwrite("one\nlonger-than-ten\tx\n"),
            "one\nlonger-than-ten   x\n"
        );
        assert_eq!(tabwrite("no newline"), "no newline");
    }
}

/// A listing's rows through `--format`: docker's default table when none (or `table`) is
/// given, `json` a JSON object a line, `table TEMPLATE` a table with a header row, any
/// other template a line a row. `headers` names each field's column.
pub fn print_rows(
    format: Option<&str>,
    default_table: &str,
    headers: &[(&str, &str)],
    rows: &[Value],
) -> anyhow::Result<()> {
    let format = match format {
        None | Some("table") => default_table,
        Some("json") => "{{json .}}",
        Some(f) => f,
    };
    match table_format(format) {
        Some(body) => print!("{}", table_template(body, headers, rows)?),
        None => {
            for r in rows {
                println!("{}", template(format, r)?);
            }
        }
    }
    Ok(())
}

/// `--filter KEY=VALUE`s of the listing commands (`network ls`, `volume ls`, the prunes):
/// the values of one key are alternatives, different keys must all hold, as docker's.
pub struct KeyFilters(Vec<(String, String)>);

impl KeyFilters {
    /// Parsed, every key one of `known`.
    pub fn parse(filters: &[String], known: &[&str]) -> anyhow::Result<KeyFilters> {
        let mut out = Vec::new();
        for f in filters {
            let (key, value) = f
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("bad format of filter (expected name=value)"))?;
            if !known.contains(&key) {
                anyhow::bail!("invalid filter '{key}'");
            }
            out.push((key.to_string(), value.to_string()));
        }
        Ok(KeyFilters(out))
    }

    /// Whether a subject passes, `holds(key, value)` saying whether one filter holds.
    pub fn matches(&self, holds: impl Fn(&str, &str) -> bool) -> bool {
        let mut keys: Vec<&str> = self.0.iter().map(|(k, _)| k.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        keys.iter().all(|k| {
            self.0
                .iter()
                .filter(|(fk, _)| fk == k)
                .any(|(_, v)| holds(k, v))
        })
    }

    /// docker's `label=KEY` (the label is there) or `label=KEY=VALUE` (with that value).
    pub fn label_holds(labels: &BTreeMap<String, String>, value: &str) -> bool {
        match value.split_once('=') {
            Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
            None => labels.contains_key(value),
        }
    }
}
