//! A container's log in docker's `json-file` format: `<id>-json.log` in its directory, one
//! JSON object a line (`{"log":"…\n","stream":"stdout","time":"…"}`), written by its
//! monitor and read by `logs`. Lines longer than 16 KiB are cut into entries without a
//! newline, as docker cuts them; with `max-size` the file rotates to `.1`, `.2`, ….

use std::borrow::Cow;
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::Mutex;

use cap_std::fs::{Dir, File, OpenOptions};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::LogOptions;
use crate::error::{Error, Result};

/// The longest entry docker writes; a longer line continues in the next entries.
const MAX_ENTRY: usize = 16 * 1024;

/// The log file's name in the container's directory.
pub fn file_name(id: &str) -> String {
    format!("{id}-json.log")
}

/// Which stream an entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Stdout,
    Stderr,
}

impl Source {
    fn name(self) -> &'static str {
        match self {
            Source::Stdout => "stdout",
            Source::Stderr => "stderr",
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Entry<'a> {
    #[serde(borrow)]
    log: Cow<'a, str>,
    stream: &'a str,
    time: Cow<'a, str>,
}

/// Appends entries to a container's log, rotating it by size.
pub struct LogWriter {
    dir: Dir,
    name: String,
    file: File,
    size: u64,
    opts: LogOptions,
}

impl LogWriter {
    /// The log of container `id` in its directory `dir`, appended to.
    pub fn open(dir: &Dir, id: &str, opts: &LogOptions) -> Result<LogWriter> {
        let name = file_name(id);
        let dir = dir
            .try_clone()
            .map_err(|e| Error::io("open the container's directory", e))?;
        let file = append(&dir, &name)?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(LogWriter {
            dir,
            name,
            file,
            size,
            opts: opts.clone(),
        })
    }

    /// One entry: `text` (a line with its newline, or a part of one) from `source`.
    pub fn write(&mut self, source: Source, text: &[u8]) -> std::io::Result<()> {
        if self.opts.disabled {
            return Ok(());
        }
        let entry = Entry {
            log: String::from_utf8_lossy(text),
            stream: source.name(),
            time: Cow::Owned(super::now()),
        };
        let mut line = serde_json::to_vec(&entry).map_err(std::io::Error::other)?;
        line.push(b'\n');
        if self
            .opts
            .max_size
            .is_some_and(|max| self.size > 0 && self.size + line.len() as u64 > max)
        {
            self.rotate()?;
        }
        self.file.write_all(&line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    /// `name` → `name.1` → … → `name.(max_file-1)`, the oldest dropped; a fresh `name`.
    fn rotate(&mut self) -> std::io::Result<()> {
        let keep = self.opts.max_file.unwrap_or(1);
        if keep <= 1 {
            self.file.set_len(0)?;
            self.size = 0;
            return Ok(());
        }
        for n in (1..keep - 1).rev() {
            let from = format!("{}.{n}", self.name);
            match self
                .dir
                .rename(&from, &self.dir, format!("{}.{}", self.name, n + 1))
            {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        self.dir
            .rename(&self.name, &self.dir, format!("{}.1", self.name))?;
        self.file = append(&self.dir, &self.name).map_err(std::io::Error::other)?;
        self.size = 0;
        Ok(())
    }
}

fn append(dir: &Dir, name: &str) -> Result<File> {
    let mut opts = OpenOptions::new();
    opts.append(true).create(true);
    dir.open_with(name, &opts)
        .map_err(|e| Error::io(format!("open log {name}"), e))
}

/// Copy a stream of the container's output into its log until it ends: an entry per line,
/// a line longer than 16 KiB in several, a last line without a newline as it is.
pub fn copy(mut from: impl Read, source: Source, log: &Mutex<LogWriter>) {
    let mut buf = vec![0u8; MAX_ENTRY];
    let mut filled = 0;
    loop {
        let n = match from.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        filled += n;
        let mut start = 0;
        while let Some(nl) = buf[start..filled].iter().position(|&b| b == b'\n') {
            let end = start + nl + 1;
            let _ = log.lock().unwrap().write(source, &buf[start..end]);
            start = end;
        }
        if start == 0 && filled == buf.len() {
            // A full buffer and no newline: a partial entry, as docker's.
            let _ = log.lock().unwrap().write(source, &buf[..filled]);
            filled = 0;
        } else {
            buf.copy_within(start..filled, 0);
            filled -= start;
        }
    }
    if filled > 0 {
        let _ = log.lock().unwrap().write(source, &buf[..filled]);
    }
}

/// Which entries `logs` shows.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Only the last this many.
    pub tail: Option<usize>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Each entry prefixed with its time (`-t`).
    pub timestamps: bool,
}

/// Where `logs` writes each stream.
pub struct Sinks<'a> {
    pub stdout: &'a mut dyn Write,
    pub stderr: &'a mut dyn Write,
}

impl Query {
    /// Write one log line (an entry's JSON) to its stream, if the query takes it.
    /// Ok(false) when the entry is past `until` (nothing after it is shown either).
    fn show(&self, line: &[u8], out: &mut Sinks<'_>) -> std::io::Result<bool> {
        let Ok(entry) = serde_json::from_slice::<Entry<'_>>(line) else {
            // A line cut short by a crash mid-write: skipped, as docker skips it.
            return Ok(true);
        };
        if self.since.is_some() || self.until.is_some() {
            let time = DateTime::parse_from_rfc3339(&entry.time)
                .map(|t| t.with_timezone(&Utc))
                .ok();
            if let (Some(since), Some(t)) = (self.since, time) {
                if t < since {
                    return Ok(true);
                }
            }
            if let (Some(until), Some(t)) = (self.until, time) {
                if t > until {
                    return Ok(false);
                }
            }
        }
        let sink: &mut dyn Write = if entry.stream == "stderr" {
            &mut *out.stderr
        } else {
            &mut *out.stdout
        };
        if self.timestamps {
            sink.write_all(entry.time.as_bytes())?;
            sink.write_all(b" ")?;
        }
        sink.write_all(entry.log.as_bytes())?;
        Ok(true)
    }
}

/// Reads a container's log: what is there (rotated files first), then, to follow it, what
/// is appended, across rotations.
/// How often a follower looks for new lines while nothing tells it the writer ended.
const FOLLOW_PACE: std::time::Duration = std::time::Duration::from_millis(20);

pub struct LogReader {
    dir: Dir,
    name: String,
    /// The current file and its inode, once reached.
    current: Option<(BufReader<File>, u64)>,
    partial: Vec<u8>,
    past_until: bool,
}

impl LogReader {
    pub fn open(dir: &Dir, id: &str) -> Result<LogReader> {
        Ok(LogReader {
            dir: dir
                .try_clone()
                .map_err(|e| Error::io("open the container's directory", e))?,
            name: file_name(id),
            current: None,
            partial: Vec::new(),
            past_until: false,
        })
    }

    /// Everything logged so far that `query` takes, oldest first.
    pub fn read_all(&mut self, query: &Query, out: &mut Sinks<'_>) -> Result<()> {
        let io = |e| Error::io("write the log", e);
        let mut rotated: Vec<(u32, String)> = Vec::new();
        for name in self
            .dir
            .entries()
            .map_err(|e| Error::io("list logs", e))?
            .flatten()
        {
            let name = name.file_name().to_string_lossy().into_owned();
            if let Some(n) = name
                .strip_prefix(&self.name)
                .and_then(|s| s.strip_prefix('.'))
                .and_then(|n| n.parse().ok())
            {
                rotated.push((n, name));
            }
        }
        rotated.sort_by(|a, b| b.0.cmp(&a.0));
        let mut files = Vec::new();
        for (_, name) in &rotated {
            if let Ok(f) = self.dir.open(name) {
                files.push(BufReader::new(f));
            }
        }
        self.current = self.open_current();
        let Some(tail) = query.tail else {
            for f in &mut files {
                for line in f.split(b'\n') {
                    let line = line.map_err(|e| Error::io("read the log", e))?;
                    if !query.show(&line, out).map_err(io)? {
                        self.past_until = true;
                        return Ok(());
                    }
                }
            }
            return self.read_new(query, out);
        };
        // The last `tail` entries: every line is read, only the last ones kept.
        let mut last: std::collections::VecDeque<Vec<u8>> = Default::default();
        let mut keep = |line: Vec<u8>| {
            if tail == 0 {
                return;
            }
            if last.len() == tail {
                last.pop_front();
            }
            last.push_back(line);
        };
        for f in &mut files {
            for line in f.split(b'\n') {
                keep(line.map_err(|e| Error::io("read the log", e))?);
            }
        }
        if let Some((f, _)) = &mut self.current {
            let mut line = Vec::new();
            while f
                .read_until(b'\n', &mut line)
                .map_err(|e| Error::io("read the log", e))?
                > 0
            {
                if line.last() != Some(&b'\n') {
                    // Being written: kept for the next read.
                    self.partial = std::mem::take(&mut line);
                    break;
                }
                line.pop();
                keep(std::mem::take(&mut line));
            }
        }
        for line in last {
            if !query.show(&line, out).map_err(io)? {
                self.past_until = true;
                break;
            }
        }
        Ok(())
    }

    /// What was appended since the last read (following the file through a rotation).
    pub fn read_new(&mut self, query: &Query, out: &mut Sinks<'_>) -> Result<()> {
        let io = |e| Error::io("read the log", e);
        loop {
            if self.current.is_none() {
                self.current = self.open_current();
            }
            let Some((f, ino)) = &mut self.current else {
                return Ok(());
            };
            loop {
                // A line without its newline yet is being written: kept for the next read.
                let n = f.read_until(b'\n', &mut self.partial).map_err(io)?;
                if n == 0 || self.partial.last() != Some(&b'\n') {
                    break;
                }
                self.partial.pop();
                let line = std::mem::take(&mut self.partial);
                if !self.past_until
                    && !query
                        .show(&line, out)
                        .map_err(|e| Error::io("write the log", e))?
                {
                    self.past_until = true;
                }
            }
            // Rotated away: the file under the name now is another; read on in it.
            let renamed = self
                .dir
                .metadata(&self.name)
                .map(|m| cap_std::fs::MetadataExt::ino(&m) != *ino)
                .unwrap_or(false);
            if !renamed {
                return Ok(());
            }
            self.current = None;
            self.partial.clear();
        }
    }

    /// Everything logged so far, then what is appended, until `ended` says the writer is
    /// gone (asked before each read, so what it wrote last is read) or `until` passes.
    /// `ended(d)` may wait up to `d` for the end (a caller that hears of it wakes at once),
    /// and should take about that long when it does not end: it paces the reads.
    pub fn follow(
        &mut self,
        query: &Query,
        out: &mut Sinks<'_>,
        mut ended: impl FnMut(std::time::Duration) -> Result<bool>,
    ) -> Result<()> {
        self.read_all(query, out)?;
        loop {
            let last = ended(FOLLOW_PACE)?;
            self.read_new(query, out)?;
            out.stdout
                .flush()
                .map_err(|e| Error::io("write the log", e))?;
            if last || self.past_until {
                return Ok(());
            }
        }
    }

    /// A `follow`'s `ended` for a writer whose end is heard of on `end` (a message, or its
    /// sender dropped).
    pub fn ended_on(
        end: &std::sync::mpsc::Receiver<()>,
    ) -> impl FnMut(std::time::Duration) -> Result<bool> + '_ {
        move |pace| {
            Ok(!matches!(
                end.recv_timeout(pace),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout)
            ))
        }
    }

    /// `until` has passed: nothing more will be shown.
    pub fn done(&self) -> bool {
        self.past_until
    }

    fn open_current(&self) -> Option<(BufReader<File>, u64)> {
        let f = self.dir.open(&self.name).ok()?;
        let ino = cap_std::fs::MetadataExt::ino(&f.metadata().ok()?);
        Some((BufReader::new(f), ino))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, Dir) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Dir::open_ambient_dir(tmp.path(), cap_std::ambient_authority()).unwrap();
        (tmp, dir)
    }

    fn read(dir: &Dir, query: &Query) -> (String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut reader = LogReader::open(dir, "c").unwrap();
        reader
            .read_all(
                query,
                &mut Sinks {
                    stdout: &mut out,
                    stderr: &mut err,
                },
            )
            .unwrap();
        (
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn lines_come_back_on_their_streams_byte_for_byte() {
        let (_tmp, dir) = setup();
        let log = Mutex::new(LogWriter::open(&dir, "c", &LogOptions::default()).unwrap());
        let long = "x".repeat(100 * 1024);
        let out = format!("one\ntwo\n{long}\nlast, no newline");
        copy(out.as_bytes(), Source::Stdout, &log);
        copy(&b"err\n"[..], Source::Stderr, &log);
        let (stdout, stderr) = read(&dir, &Query::default());
        assert_eq!(stdout, out);
        assert_eq!(stderr, "err\n");
        // The file is docker's: one JSON object a line, long lines in 16 KiB parts.
        let text = dir.read_to_string(file_name("c")).unwrap();
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["log"], "one\n");
        assert_eq!(first["stream"], "stdout");
        assert!(first["time"].as_str().unwrap().ends_with('Z'));
        assert_eq!(text.lines().count(), 2 + 7 + 1 + 1);
        let tail = Query {
            tail: Some(2),
            ..Query::default()
        };
        // The last two entries of both streams.
        let two = (String::from("last, no newline"), String::from("err\n"));
        assert_eq!(read(&dir, &tail), two);
        let last = Query {
            tail: Some(1),
            ..Query::default()
        };
        assert_eq!(read(&dir, &last), (String::new(), "err\n".into()));
    }

    #[test]
    fn rotation_keeps_max_file_files_and_reads_them_in_order() {
        let (_tmp, dir) = setup();
        let opts = LogOptions {
            max_size: Some(200),
            max_file: Some(3),
            disabled: false,
        };
        let log = Mutex::new(LogWriter::open(&dir, "c", &opts).unwrap());
        let lines: String = (0..40).map(|i| format!("line {i}\n")).collect();
        copy(lines.as_bytes(), Source::Stdout, &log);
        let names = {
            let mut n: Vec<String> = dir
                .entries()
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            n.sort();
            n
        };
        assert_eq!(names, ["c-json.log", "c-json.log.1", "c-json.log.2"]);
        let (stdout, _) = read(&dir, &Query::default());
        // The oldest entries were dropped; what is left is in order and ends with the last.
        assert!(stdout.ends_with("line 39\n"), "{stdout}");
        let numbers: Vec<u32> = stdout
            .lines()
            .map(|l| l.trim_start_matches("line ").parse().unwrap())
            .collect();
        assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");
    }

    #[test]
    fn following_reads_what_is_appended_across_a_rotation() {
        let (_tmp, dir) = setup();
        let opts = LogOptions {
            max_size: Some(300),
            max_file: Some(2),
            disabled: false,
        };
        let log = Mutex::new(LogWriter::open(&dir, "c", &opts).unwrap());
        copy(&b"first\n"[..], Source::Stdout, &log);
        let mut reader = LogReader::open(&dir, "c").unwrap();
        let mut out = Vec::new();
        let mut err = Vec::new();
        let q = Query::default();
        reader
            .read_all(
                &q,
                &mut Sinks {
                    stdout: &mut out,
                    stderr: &mut err,
                },
            )
            .unwrap();
        let more: String = (0..6).map(|i| format!("more {i}\n")).collect();
        for line in more.lines() {
            copy(format!("{line}\n").as_bytes(), Source::Stdout, &log);
            reader
                .read_new(
                    &q,
                    &mut Sinks {
                        stdout: &mut out,
                        stderr: &mut err,
                    },
                )
                .unwrap();
        }
        assert_eq!(String::from_utf8(out).unwrap(), format!("first\n{more}"));
    }
}
