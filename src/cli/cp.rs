//! `strata cp` (docker cp): files between a container and the host, or a tar on stdin or
//! stdout. Docker's path rules pick the directory to extract into and the name the copy
//! gets; then one `archive` (a tree as a tar) feeds one `extract`, both from
//! `runtime::container::copy`. The host side is an overlay with no lowers over the host
//! directory (`copy::host_dir`), so a hostile archive cannot write outside it either.

use std::ffi::{OsStr, OsString};
use std::io::{IsTerminal, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{bail, Context, Result};
use strata_runtime::container::copy::{self, Owner};
use strata_runtime::container::Containers;
use strata_runtime::Store;

#[derive(clap::Args)]
pub struct Args {
    /// Archive mode (copy all uid/gid information)
    #[arg(short = 'a', long)]
    archive: bool,
    /// Always follow symbol link in SRC_PATH
    #[arg(short = 'L', long)]
    follow_link: bool,
    /// Suppress progress output during copy (it is also suppressed without a terminal)
    #[arg(short, long)]
    quiet: bool,
    /// CONTAINER:SRC_PATH, SRC_PATH or - (a tar on stdin)
    #[arg(value_name = "SRC")]
    src: String,
    /// CONTAINER:DEST_PATH, DEST_PATH or - (a tar on stdout)
    #[arg(value_name = "DEST")]
    dest: String,
}

/// One side of a copy, as docker's `splitCpArg` reads it: an absolute path, one starting
/// with `.` or one without `:` is the host's.
enum Side<'a> {
    Host(&'a str),
    Container(&'a str, &'a str),
}

fn side(arg: &str) -> Side<'_> {
    if arg.starts_with('/') {
        return Side::Host(arg);
    }
    match arg.split_once(':') {
        Some((c, path)) if !c.starts_with('.') => Side::Container(c, path),
        _ => Side::Host(arg),
    }
}

impl Args {
    pub fn run(self, store: &Store) -> Result<()> {
        match (side(&self.src), side(&self.dest)) {
            (Side::Host(_), Side::Host(_)) => bail!("must specify at least one container source"),
            (Side::Container(..), Side::Container(..)) => {
                bail!("copying between containers is not supported")
            }
            (Side::Container(c, path), Side::Host(dest)) => self.copy_out(store, c, path, dest),
            (Side::Host(src), Side::Container(c, path)) => self.copy_in(store, src, c, path),
        }
    }

    fn copy_out(&self, store: &Store, name: &str, src: &str, dest: &str) -> Result<()> {
        let containers = Containers::open(store)?;
        let c = containers.get(name)?;
        let root = containers.copy_root(&c)?;
        let src = if src.is_empty() { "/" } else { src };
        let as_dir = src.ends_with('/') || src.ends_with("/.");
        let Some((src_is_dir, _)) =
            copy::resolve(&root.overlay, OsStr::new(src), self.follow_link || as_dir)?
        else {
            bail!("No such container:path: {name}:{src}");
        };
        if as_dir && !src_is_dir {
            bail!("{name}:{src}: not a directory");
        }
        let top = top_name(src.as_bytes());
        if dest == "-" {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            copy::archive(
                &root.overlay,
                OsStr::new(src),
                self.follow_link,
                &top,
                &mut out,
            )?;
            out.flush().context("write to stdout")?;
            return Ok(());
        }
        // Where the copy goes on the host, by docker's rules (host links followed, as
        // docker's client does).
        let (dir, name_there) = match std::fs::metadata(dest) {
            Ok(m) if m.is_dir() => (dest.to_string(), top),
            Ok(_) if src_is_dir => bail!("cannot copy a directory to a file: {dest}"),
            Ok(_) => split_host(dest),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if dest.ends_with('/') && !src_is_dir {
                    bail!("no such directory: {dest}");
                }
                split_host(dest)
            }
            Err(e) => return Err(e).with_context(|| format!("stat {dest}")),
        };
        let host = copy::host_dir(Path::new(&dir))?;
        let owner = if self.archive {
            Owner::FromArchive
        } else {
            Owner::Caller
        };
        let bytes = copy::transfer(
            (
                &root.overlay,
                OsStr::new(src),
                self.follow_link,
                &name_there,
            ),
            (&host, OsStr::new("/"), owner),
        )?;
        self.report(bytes, dest);
        Ok(())
    }

    fn copy_in(&self, store: &Store, src: &str, name: &str, dest: &str) -> Result<()> {
        let containers = Containers::open(store)?;
        let c = containers.get(name)?;
        let root = containers.copy_root(&c)?;
        let dest = if dest.is_empty() { "/" } else { dest };
        let owner = if self.archive {
            Owner::FromArchive
        } else {
            Owner::Root
        };
        let found = copy::resolve(&root.overlay, OsStr::new(dest), true)?;
        if src == "-" {
            return match found {
                Some((true, dir)) => Ok(copy::extract(
                    &root.overlay,
                    &dir,
                    std::io::stdin().lock(),
                    owner,
                )?),
                Some((false, _)) => bail!("destination \"{name}:{dest}\" must be a directory"),
                None => bail!("No such container:path: {name}:{dest}"),
            };
        }
        let as_dir = src.ends_with('/') || src.ends_with("/.");
        let meta = if self.follow_link || as_dir {
            std::fs::metadata(src)
        } else {
            std::fs::symlink_metadata(src)
        }
        .with_context(|| format!("lstat {src}"))?;
        if as_dir && !meta.is_dir() {
            bail!("{src}: not a directory");
        }
        let src_is_dir = meta.is_dir();
        let top = top_name(src.as_bytes());
        // The host source as an overlay over its parent directory, the source a name in it.
        let (src_parent, src_name) = host_source(src, self.follow_link)?;
        let source = copy::host_dir(Path::new(&src_parent))?;
        let mut src_path = OsString::from("/");
        src_path.push(&src_name);
        if top == "." {
            src_path.push("/.");
        }
        let (dir, name_there) = match found {
            Some((true, dir)) => (dir, top),
            Some((false, _)) if src_is_dir => {
                bail!("cannot copy a directory to a file: {name}:{dest}")
            }
            Some((false, file)) => split_container(&file),
            None if dest.ends_with('/') && !src_is_dir => {
                bail!("no such directory: {name}:{dest}")
            }
            None => {
                let (parent, last) = split_container(OsStr::new(dest.trim_end_matches('/')));
                match copy::resolve(&root.overlay, &parent, true)? {
                    Some((true, parent)) => (parent, last),
                    _ => bail!(
                        "No such container:path: {name}:{}",
                        parent.to_string_lossy()
                    ),
                }
            }
        };
        let bytes = copy::transfer(
            (&source, &src_path, false, &name_there),
            (&root.overlay, &dir, owner),
        )?;
        self.report(bytes, &format!("{name}:{dest}"));
        Ok(())
    }

    /// Docker's last line, on a terminal only.
    fn report(&self, bytes: u64, dest: &str) {
        if !self.quiet && std::io::stderr().is_terminal() {
            eprintln!(
                "Successfully copied {} to {dest}",
                crate::format::human_size(bytes)
            );
        }
    }
}

/// The name a copied source gets in a directory: its last component, or `.` (its contents)
/// for a path ending in `/.` (or the root).
pub(crate) fn top_name(path: &[u8]) -> OsString {
    if path.ends_with(b"/.") || path == b"." {
        return ".".into();
    }
    let trimmed = path.strip_suffix(b"/").unwrap_or(path);
    match trimmed.rsplit(|&b| b == b'/').next() {
        Some(last) if !last.is_empty() => OsStr::from_bytes(last).to_owned(),
        _ => ".".into(),
    }
}

/// A host destination that is not a directory: its parent (which must exist) and its name.
fn split_host(path: &str) -> (String, OsString) {
    let p = Path::new(path.trim_end_matches('/'));
    let parent = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.display().to_string(),
        _ if path.starts_with('/') => "/".into(),
        _ => ".".into(),
    };
    let name = p
        .file_name()
        .map(OsStr::to_owned)
        .unwrap_or_else(|| ".".into());
    (parent, name)
}

/// A container path's parent and last component.
fn split_container(path: &OsStr) -> (OsString, OsString) {
    let bytes = path.as_bytes();
    match bytes.iter().rposition(|&b| b == b'/') {
        Some(i) => (
            OsStr::from_bytes(if i == 0 { b"/" } else { &bytes[..i] }).to_owned(),
            OsStr::from_bytes(&bytes[i + 1..]).to_owned(),
        ),
        None => ("/".into(), path.to_owned()),
    }
}

/// The host source's parent directory and its name there; with `follow` (or a name such as
/// `.` that is no entry of a parent), the path the links lead to.
fn host_source(src: &str, follow: bool) -> Result<(String, OsString)> {
    let trimmed = src.trim_end_matches("/.").trim_end_matches('/');
    let trimmed = if trimmed.is_empty() && src.starts_with('/') {
        "/"
    } else {
        trimmed
    };
    let last = Path::new(trimmed).file_name();
    if follow || last.is_none() {
        let real = std::fs::canonicalize(trimmed).with_context(|| format!("lstat {src}"))?;
        return Ok(match (real.parent(), real.file_name()) {
            (Some(p), Some(n)) => (p.display().to_string(), n.to_owned()),
            // The host's root itself: its contents, from itself.
            _ => ("/".into(), ".".into()),
        });
    }
    Ok(split_host(trimmed))
}
