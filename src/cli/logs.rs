use anyhow::{anyhow, Result};
use chrono::{DateTime, Utc};
use strata_runtime::container::logs::{LogReader, Query, Sinks};
use strata_runtime::container::Containers;
use strata_runtime::Store;

/// `logs`: a container's output from its json-file log, stdout lines on stdout and stderr
/// lines on stderr.
#[derive(clap::Args)]
pub struct Args {
    /// Follow log output
    #[arg(short, long)]
    follow: bool,
    /// Number of lines to show from the end of the logs ("all" for all)
    #[arg(short = 'n', long, default_value = "all")]
    tail: String,
    /// Show logs since timestamp (e.g. 2013-01-02T13:23:37Z) or relative (e.g. 42m for 42 minutes)
    #[arg(long)]
    since: Option<String>,
    /// Show logs before a timestamp (e.g. 2013-01-02T13:23:37Z) or relative (e.g. 42m for 42 minutes)
    #[arg(long)]
    until: Option<String>,
    /// Show timestamps
    #[arg(short, long)]
    timestamps: bool,
    container: String,
}

impl Args {
    pub fn run(self, store: &Store) -> Result<()> {
        let containers = Containers::open(store)?;
        let c = containers.get(&self.container)?;
        let now = Utc::now();
        let query = Query {
            tail: match self.tail.as_str() {
                "all" | "-1" => None,
                n => Some(
                    n.parse()
                        .map_err(|_| anyhow!("invalid --tail {n:?}: a number or \"all\""))?,
                ),
            },
            since: self
                .since
                .as_deref()
                .map(|s| parse_time(s, now))
                .transpose()?,
            until: self
                .until
                .as_deref()
                .map(|s| parse_time(s, now))
                .transpose()?,
            timestamps: self.timestamps,
        };
        let dir = containers.dir_of(&c)?;
        let mut reader = LogReader::open(&dir, &c.id)?;
        let (stdout, stderr) = (std::io::stdout(), std::io::stderr());
        let (mut out, mut err) = (stdout.lock(), stderr.lock());
        let mut sinks = Sinks {
            stdout: &mut out,
            stderr: &mut err,
        };
        if self.follow {
            // Until nothing runs the container any more (its monitor is gone).
            reader.follow(&query, &mut sinks, |pace| {
                std::thread::sleep(pace);
                Ok(!containers.claimed(&c.id)?)
            })?;
        } else {
            reader.read_all(&query, &mut sinks)?;
        }
        Ok(())
    }
}

/// A time as `--since`/`--until` take it: RFC 3339 (or a date), Unix seconds with an
/// optional fraction, or a Go duration before `now` (`10m`, `1h30m`).
pub fn parse_time(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    for layout in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, layout) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight").and_utc());
    }
    if let Some((secs, nanos)) = unix_time(s) {
        return DateTime::from_timestamp(secs, nanos)
            .ok_or_else(|| anyhow!("time {s:?} is out of range"));
    }
    let nanos = strata_builder::dockerfile::instructions::parse_go_duration(s)
        .map_err(|_| anyhow!("invalid time {s:?}: expected a timestamp (2013-01-02T13:23:37Z), Unix seconds or a duration (42m)"))?;
    Ok(now - chrono::Duration::nanoseconds(nanos))
}

/// `1700000000` or `1700000000.5`.
fn unix_time(s: &str) -> Option<(i64, u32)> {
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    if secs.is_empty()
        || !secs.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || frac.len() > 9
    {
        return None;
    }
    let nanos = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().ok()?
    };
    Some((secs.parse().ok()?, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_as_docker_takes_them() {
        let now = DateTime::parse_from_rfc3339("2026-12-02T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let t = |s: &str| parse_time(s, now).unwrap().to_rfc3339();
        assert_eq!(t("2026-12-01T09:00:00Z"), "2026-12-01T09:00:00+00:00");
        assert_eq!(t("2026-12-01"), "2026-12-01T00:00:00+00:00");
        assert_eq!(t("42m"), "2026-12-02T09:18:00+00:00");
        assert_eq!(t("1h30m"), "2026-12-02T08:30:00+00:00");
        assert_eq!(t("1700000000.5"), "2023-11-14T22:13:20.500+00:00");
        assert!(parse_time("yesterday", now).is_err());
    }
}
