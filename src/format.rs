//! Output the way the docker CLI prints it: tables padded like Go's tabwriter, sizes in
//! decimal units with three significant digits, ages in words, and `--format` templates.

use chrono::{DateTime, Utc};
use serde_json::Value;

/// Print rows under headers, columns padded to their widest cell plus 3 spaces, at least 10
/// wide (docker's `tabwriter.NewWriter(out, 10, 1, 3, ' ', 0)`).
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
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
                let width = (widths[i] + 3).max(10);
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

/// The subset of Go templates that `--format` is used with in practice: `{{.Field}}`,
/// `{{.A.B}}`, `{{json .Field}}`, `{{json .}}`, and `\t`/`\n` escapes.
pub fn template(tmpl: &str, value: &Value) -> anyhow::Result<String> {
    let tmpl = tmpl.replace("\\t", "\t").replace("\\n", "\n");
    let mut out = String::new();
    let mut rest = tmpl.as_str();
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find("}}")
            .ok_or_else(|| anyhow::anyhow!("template: unclosed action in {tmpl:?}"))?;
        let action = rest[start + 2..start + end].trim();
        let (as_json, path) = match action.strip_prefix("json ") {
            Some(p) => (true, p.trim()),
            None => (false, action),
        };
        let path = path
            .strip_prefix('.')
            .ok_or_else(|| anyhow::anyhow!("template: unsupported action {{{{{action}}}}}"))?;
        let mut v = value;
        for key in path.split('.').filter(|k| !k.is_empty()) {
            v = v
                .get(key)
                .ok_or_else(|| anyhow::anyhow!("template: no field {key:?} in {action:?}"))?;
        }
        out.push_str(&if as_json { v.to_string() } else { go_print(v) });
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// How Go's text/template prints a value.
fn go_print(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "<no value>".into(),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(go_print).collect::<Vec<_>>().join(" ")
        ),
        Value::Object(map) => format!(
            "map[{}]",
            map.iter()
                .map(|(k, v)| format!("{k}:{}", go_print(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        other => other.to_string(),
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

    #[test]
    fn templates() {
        let v = serde_json::json!({"Id": "sha256:1", "Config": {"Env": ["A=1", "B=2"]}});
        assert_eq!(
            template("{{.Id}}\\t{{.Config.Env}}", &v).unwrap(),
            "sha256:1\t[A=1 B=2]"
        );
        assert_eq!(
            template("{{json .Config.Env}}", &v).unwrap(),
            r#"["A=1","B=2"]"#
        );
        assert!(template("{{.Nope}}", &v).is_err());
    }
}
