//! The union view, resolved one component at a time.
//!
//! Every name is looked up with `*at` calls on directory handles (see `handle.rs`); the
//! overlay itself follows symlinks, inside the union, with the container's root as `/`: an
//! absolute target restarts at the union root and `..` stops there. Nothing is ever opened by
//! a host path, so no layer, name or link can reach outside the layers.
//!
//! The rules are kernel overlayfs's (with `redirect_dir=off`, `metacopy=off`, `index=off`):
//! - lookup goes top down; a whiteout (0:0 char device) hides the name in every layer below;
//!   a non-directory hides everything below; an opaque directory hides the directories of
//!   the same name below it;
//! - changing anything copies it (and its parent directories) up into the upper layer first,
//!   with its metadata; opening with `O_TRUNC` copies no data;
//! - removing a name that a lower layer has leaves a whiteout; a directory created where a
//!   whiteout was is marked opaque;
//! - a directory that lower layers contribute to is renamed by copying it (the kernel answers
//!   EXDEV and `mv` copies; we do the copy ourselves).

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, Mutex};

use rustix::fs::{FileType, OFlags, Timestamps};

use super::handle::{file_type, is_whiteout, DirHandle, Stat};
use crate::layer::{is_overlay_xattr, opaque_xattr};

/// Symlinks followed in one lookup before ELOOP, as Linux.
const MAX_SYMLINKS: usize = 40;

fn errno(e: rustix::io::Errno) -> io::Error {
    e.into()
}

pub struct Overlay<D: DirHandle> {
    upper: Arc<D>,
    /// The lower layers' root directories that the union shows, topmost first (an opaque
    /// root hides the ones below it).
    lowers: Vec<Arc<D>>,
    /// Root on the host may give copied-up files their owners.
    privileged: bool,
    /// The lower directories that make up a path, by path. Lower layers never change, so an
    /// entry stays right; the cache only saves reopening them on every lookup.
    lower_dirs: Mutex<HashMap<Vec<OsString>, Vec<Arc<D>>>>,
    /// Merged directories by path, valid while `generation` is unchanged. Every operation
    /// that can change which directories the upper layer has (copy-up, mkdir, removal,
    /// rename, opaque marking) bumps the generation; creating or writing files does not.
    /// This is the one state another instance over the same upper directory can make stale
    /// (everything else is directory handles and the immutable lowers); `child_cached`
    /// checks a hit against the upper layer as it is now, so instances stay coherent for
    /// what `cp` does (copy-ups, new directories and files; it never replaces a directory).
    merged_dirs: Mutex<(u64, HashMap<Vec<OsString>, Merged<D>>)>,
    generation: std::sync::atomic::AtomicU64,
}

/// Directory paths whose lower directories are kept open (each holds one fd per layer).
const LOWER_DIRS_CACHED: usize = 128;

/// Which layer an entry comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layer {
    Upper,
    /// Index into the parent `Merged`'s `lowers`.
    Lower(usize),
}

#[derive(Debug, Clone)]
struct Entry {
    layer: Layer,
    stat: Stat,
}

/// One directory of the union: the real directories that make it up, top first.
struct Merged<D> {
    path: Vec<OsString>,
    upper: Option<Arc<D>>,
    lowers: Vec<Arc<D>>,
}

impl<D> Clone for Merged<D> {
    fn clone(&self) -> Self {
        Merged {
            path: self.path.clone(),
            upper: self.upper.clone(),
            lowers: self.lowers.clone(),
        }
    }
}

/// A name in the merged view, as `read_dir` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: OsString,
    pub kind: FileType,
    pub ino: u64,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct OpenOptions {
    pub read: bool,
    pub write: bool,
    pub append: bool,
    pub truncate: bool,
    pub create: bool,
    pub create_new: bool,
    /// Do not follow a symlink in the last component.
    pub nofollow: bool,
    /// Mode for a created file.
    pub mode: u32,
    /// Writes reach the disk before they return.
    pub sync: SyncMode,
}

/// How much of a write is on disk when it returns (`O_SYNC`, `O_DSYNC`). Reads need no
/// flag: Linux's `O_RSYNC` is the same as the write flag it comes with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SyncMode {
    #[default]
    None,
    /// `O_DSYNC`: the data, and the metadata needed to read it back.
    Data,
    /// `O_SYNC`: data and all metadata.
    File,
}

impl<D: DirHandle> Overlay<D> {
    /// A view of `lowers` (topmost first) under the writable `upper`. Nothing is copied:
    /// the cost does not depend on the size of the layers.
    pub fn new(lowers: Vec<D>, upper: D) -> Overlay<D> {
        // Directory handles are reopened readable: an O_PATH handle cannot read xattrs.
        let readable = |d: D| d.open_dir_nofollow(OsStr::new(".")).unwrap_or(d);
        let mut shown = Vec::new();
        for l in lowers {
            let l = readable(l);
            let opaque = is_opaque(&l).unwrap_or(false);
            shown.push(Arc::new(l));
            if opaque {
                break;
            }
        }
        Overlay {
            upper: Arc::new(readable(upper)),
            lowers: shown,
            privileged: crate::privilege::privileged(),
            lower_dirs: Mutex::new(HashMap::new()),
            merged_dirs: Mutex::new((0, HashMap::new())),
            generation: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn root(&self) -> io::Result<Merged<D>> {
        let lowers = if is_opaque(&*self.upper)? {
            Vec::new()
        } else {
            self.lowers.clone()
        };
        Ok(Merged {
            path: Vec::new(),
            upper: Some(Arc::clone(&self.upper)),
            lowers,
        })
    }

    /// Find `name` in the merged directory `dir`.
    fn lookup(&self, dir: &Merged<D>, name: &OsStr) -> io::Result<Option<Entry>> {
        if let Some(upper) = &dir.upper {
            if let Some(st) = upper.stat_at(name)? {
                return Ok((!is_whiteout(&st)).then_some(Entry {
                    layer: Layer::Upper,
                    stat: st,
                }));
            }
        }
        for (i, lower) in dir.lowers.iter().enumerate() {
            if let Some(st) = lower.stat_at(name)? {
                return Ok((!is_whiteout(&st)).then_some(Entry {
                    layer: Layer::Lower(i),
                    stat: st,
                }));
            }
        }
        Ok(None)
    }

    /// Whether some lower layer under `dir` still shows `name` (so removing it needs a
    /// whiteout).
    fn lower_has(&self, dir: &Merged<D>, name: &OsStr) -> io::Result<bool> {
        for lower in &dir.lowers {
            if let Some(st) = lower.stat_at(name)? {
                return Ok(!is_whiteout(&st));
            }
        }
        Ok(false)
    }

    /// `child`, from the cache of merged directories when nothing has changed the upper
    /// layer's directories since it was made.
    fn child_cached(&self, dir: &Merged<D>, name: &OsStr, entry: &Entry) -> io::Result<Merged<D>> {
        let mut path = dir.path.clone();
        path.push(name.to_owned());
        let generation = self.generation.load(std::sync::atomic::Ordering::SeqCst);
        {
            let cache = self.merged_dirs.lock().expect("lock");
            if cache.0 == generation {
                // Another instance on the same upper layer (`cp` into a running Wasm
                // container) may have copied the directory up since: a hit that still says
                // it has no upper directory is stale.
                if let Some(hit) = cache
                    .1
                    .get(&path)
                    .filter(|hit| hit.upper.is_some() == (entry.layer == Layer::Upper))
                {
                    return Ok(hit.clone());
                }
            }
        }
        let merged = self.child(dir, name, entry)?;
        let mut cache = self.merged_dirs.lock().expect("lock");
        if cache.0 != generation || cache.1.len() >= LOWER_DIRS_CACHED {
            *cache = (generation, HashMap::new());
        }
        cache.1.insert(path, merged.clone());
        Ok(merged)
    }

    /// Something may have changed the upper layer's directories: drop cached merged views.
    fn changed(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// The merged directory `name` inside `dir` (which must be a directory there).
    fn child(&self, dir: &Merged<D>, name: &OsStr, entry: &Entry) -> io::Result<Merged<D>> {
        let mut path = dir.path.clone();
        path.push(name.to_owned());
        let mut upper = None;
        if entry.layer == Layer::Upper {
            let u = dir
                .upper
                .as_ref()
                .expect("entry from upper")
                .open_dir_nofollow(name)?;
            let opaque = is_opaque(&u)?;
            upper = Some(Arc::new(u));
            if opaque {
                return Ok(Merged {
                    path,
                    upper,
                    lowers: Vec::new(),
                });
            }
        }
        // A merged directory's lowers are either none (an opaque upper directory above hid
        // them) or exactly the lower layers' own stack for its path, which never changes.
        let lowers = if dir.lowers.is_empty() {
            Vec::new()
        } else {
            self.lower_stack(&dir.lowers, &path, name)?
        };
        Ok(Merged {
            path,
            upper,
            lowers,
        })
    }

    /// The lower directories for `path`, found under the parent's `lowers`: top down, until
    /// an opaque directory, a whiteout or a non-directory ends the stack.
    fn lower_stack(
        &self,
        parent: &[Arc<D>],
        path: &[OsString],
        name: &OsStr,
    ) -> io::Result<Vec<Arc<D>>> {
        if let Some(hit) = self.lower_dirs.lock().expect("lock").get(path) {
            return Ok(hit.clone());
        }
        let lowers: Vec<Arc<D>> = dir_stack(parent.iter().map(|d| &**d), name)?
            .into_iter()
            .map(Arc::new)
            .collect();
        let mut cache = self.lower_dirs.lock().expect("lock");
        if cache.len() >= LOWER_DIRS_CACHED {
            cache.clear();
        }
        cache.insert(path.to_vec(), lowers.clone());
        Ok(lowers)
    }

    /// Resolve `path` to (parent directory, last name, entry). Symlinks in the middle are
    /// always followed; in the last component only when `follow`. The root is ("", root).
    fn resolve(
        &self,
        path: &OsStr,
        follow: bool,
    ) -> io::Result<(Merged<D>, OsString, Option<Entry>)> {
        let mut todo: std::collections::VecDeque<OsString> = components(path.as_bytes()).collect();
        let mut stack = vec![self.root()?];
        let mut links = 0;
        while let Some(name) = todo.pop_front() {
            if name == ".." {
                if stack.len() > 1 {
                    stack.pop();
                }
                continue;
            }
            let dir = stack.last().expect("root stays");
            let last = todo.is_empty();
            let entry = self.lookup(dir, &name)?;
            if let Some(e) = &entry {
                if file_type(&e.stat) == FileType::Symlink && (!last || follow) {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(errno(rustix::io::Errno::LOOP));
                    }
                    let target = self.layer_dir(dir, e.layer).read_link_at(&name)?;
                    if target.as_bytes().starts_with(b"/") {
                        stack.truncate(1);
                    }
                    for c in components(target.as_bytes())
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                    {
                        todo.push_front(c);
                    }
                    continue;
                }
            }
            if last {
                let dir = stack.pop().expect("root stays");
                return Ok((dir, name, entry));
            }
            match entry {
                Some(e) if file_type(&e.stat) == FileType::Directory => {
                    let child = self.child_cached(dir, &name, &e)?;
                    stack.push(child);
                }
                Some(_) => return Err(errno(rustix::io::Errno::NOTDIR)),
                None => return Err(errno(rustix::io::Errno::NOENT)),
            }
        }
        // The path named a directory (the root, or ended in `..` / `.`): report it as the
        // entry `.` of itself.
        let dir = stack.pop().expect("root stays");
        let stat = match &dir.upper {
            Some(u) => u.stat_self()?,
            None => dir.lowers[0].stat_self()?,
        };
        Ok((
            dir,
            OsString::from("."),
            Some(Entry {
                layer: Layer::Upper,
                stat,
            }),
        ))
    }

    fn layer_dir<'a>(&self, dir: &'a Merged<D>, layer: Layer) -> &'a D {
        match layer {
            Layer::Upper => dir.upper.as_ref().expect("entry from upper"),
            Layer::Lower(i) => &dir.lowers[i],
        }
    }

    /// Resolve a path that must name an existing entry.
    fn existing(&self, path: &OsStr, follow: bool) -> io::Result<(Merged<D>, OsString, Entry)> {
        let (dir, name, entry) = self.resolve(path, follow)?;
        let entry = entry.ok_or_else(|| errno(rustix::io::Errno::NOENT))?;
        Ok((dir, name, entry))
    }

    /// Resolve the parent of a path that is about to be created; refuses `/`.
    fn parent_for_create(&self, path: &OsStr) -> io::Result<(Merged<D>, OsString, Option<Entry>)> {
        let (dir, name, entry) = self.resolve(path, false)?;
        if name == "." {
            return Err(errno(rustix::io::Errno::EXIST));
        }
        Ok((dir, name, entry))
    }

    // ----- copy-up -----

    /// Make sure `dir` exists in the upper layer, copying up its parents as needed.
    fn ensure_upper(&self, dir: &mut Merged<D>) -> io::Result<()> {
        if dir.upper.is_some() {
            return Ok(());
        }
        let mut cur = self.root()?;
        for name in dir.path.clone() {
            let entry = self
                .lookup(&cur, &name)?
                .ok_or_else(|| errno(rustix::io::Errno::NOENT))?;
            // `cur` has an upper directory (the root does; each step makes the next one).
            self.copy_up(&mut cur, &name, &entry, true)?;
            let entry = self
                .lookup(&cur, &name)?
                .ok_or_else(|| errno(rustix::io::Errno::NOENT))?;
            cur = self.child(&cur, &name, &entry)?;
        }
        dir.upper = cur.upper;
        Ok(())
    }

    /// Copy `name` (found in a lower layer of `dir`) up into the upper layer. With
    /// `with_data` false a regular file is created empty (`O_TRUNC` opens).
    fn copy_up(
        &self,
        dir: &mut Merged<D>,
        name: &OsStr,
        entry: &Entry,
        with_data: bool,
    ) -> io::Result<()> {
        let Layer::Lower(i) = entry.layer else {
            return Ok(());
        };
        self.changed();
        self.ensure_upper(dir)?;
        let upper = dir.upper.as_ref().expect("ensured");
        let lower = &dir.lowers[i];
        let st = &entry.stat;
        match file_type(st) {
            FileType::RegularFile => {
                // Into a temp name, then renamed: a crash never leaves a half-copied file
                // under the real name.
                let tmp =
                    OsString::from(format!(".strata-copyup-{}", crate::content::temp_name("f")));
                let mut out =
                    upper.open_file(&tmp, OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL, 0o600)?;
                let result = (|| {
                    if with_data {
                        let mut src = lower.open_file(name, OFlags::RDONLY, 0)?;
                        io::copy(&mut src, &mut out)?;
                        copy_xattrs_fd(&src, &out)?;
                    }
                    drop(out);
                    self.copy_metadata(upper, &tmp, st)?;
                    upper.rename_at(&tmp, upper, name)
                })();
                if result.is_err() {
                    let _ = upper.remove_file_at(&tmp);
                }
                result?;
            }
            FileType::Directory => {
                upper.make_dir(name, 0o700)?;
                self.copy_metadata(upper, name, st)?;
            }
            FileType::Symlink => {
                let target = lower.read_link_at(name)?;
                upper.symlink_at(&target, name)?;
                self.copy_metadata(upper, name, st)?;
            }
            kind => {
                upper.make_node(name, kind, st.st_mode & 0o7777, st.st_rdev)?;
                self.copy_metadata(upper, name, st)?;
            }
        }
        Ok(())
    }

    /// Owner, mode and times of `st` onto `name` in the upper layer.
    fn copy_metadata(&self, upper: &D, name: &OsStr, st: &Stat) -> io::Result<()> {
        if self.privileged || rustix::process::geteuid().as_raw() == st.st_uid {
            // Unprivileged, chown to ourselves is a no-op; to others it fails, so it is skipped.
            let _ = upper.chown_at(name, st.st_uid, st.st_gid);
        }
        if file_type(st) != FileType::Symlink {
            upper.chmod_at(name, st.st_mode & 0o7777)?;
        }
        let times = Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: st.st_atime as _,
                tv_nsec: st.st_atime_nsec as _,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: st.st_mtime as _,
                tv_nsec: st.st_mtime_nsec as _,
            },
        };
        upper.set_times_at(name, &times)
    }

    /// Remove what the upper layer has at `name` (a whiteout, or an empty-in-the-union
    /// directory that may hold whiteouts), so something new can be put there.
    fn clear_upper(&self, upper: &D, name: &OsStr) -> io::Result<()> {
        let Some(st) = upper.stat_at(name)? else {
            return Ok(());
        };
        if file_type(&st) == FileType::Directory {
            let d = upper.open_dir_nofollow(name)?;
            for n in d.names()? {
                match d.stat_at(&n)? {
                    Some(s) if is_whiteout(&s) => d.remove_file_at(&n)?,
                    Some(_) => return Err(errno(rustix::io::Errno::NOTEMPTY)),
                    None => {}
                }
            }
            upper.remove_dir_at(name)
        } else {
            upper.remove_file_at(name)
        }
    }

    fn whiteout(&self, upper: &D, name: &OsStr) -> io::Result<()> {
        upper.make_node(name, FileType::CharacterDevice, 0, 0)
    }

    fn set_opaque(&self, dir: &D) -> io::Result<()> {
        self.changed();
        dir.set_xattr(opaque_xattr(), b"y")
    }

    // ----- the operations -----

    pub fn stat(&self, path: &OsStr, follow: bool) -> io::Result<Stat> {
        Ok(self.existing(path, follow)?.2.stat)
    }

    /// `stat`, and the path it names with every `..` and followed symlink resolved.
    pub fn stat_resolved(&self, path: &OsStr, follow: bool) -> io::Result<(Stat, Vec<OsString>)> {
        let (dir, name, entry) = self.existing(path, follow)?;
        let mut resolved = dir.path;
        if name != "." {
            resolved.push(name);
        }
        Ok((entry.stat, resolved))
    }

    pub fn read_link(&self, path: &OsStr) -> io::Result<OsString> {
        let (dir, name, entry) = self.existing(path, false)?;
        if file_type(&entry.stat) != FileType::Symlink {
            return Err(errno(rustix::io::Errno::INVAL));
        }
        self.layer_dir(&dir, entry.layer).read_link_at(&name)
    }

    /// The merged directory's entries, sorted by name; whiteouts and what they hide are not
    /// listed.
    pub fn read_dir(&self, path: &OsStr) -> io::Result<Vec<DirEntry>> {
        let dir = self.open_merged(path)?;
        merged_entries(dir.upper.iter().chain(dir.lowers.iter()).map(|d| &**d))
    }

    /// The merged directory at `path` (following symlinks).
    fn open_merged(&self, path: &OsStr) -> io::Result<Merged<D>> {
        let (dir, name, entry) = self.existing(path, true)?;
        if name == "." {
            return Ok(dir);
        }
        if file_type(&entry.stat) != FileType::Directory {
            return Err(errno(rustix::io::Errno::NOTDIR));
        }
        self.child(&dir, &name, &entry)
    }

    /// Open a regular file. Writing opens copy the file up first; creating puts it in the
    /// upper layer.
    pub fn open(&self, path: &OsStr, opts: &OpenOptions) -> io::Result<File> {
        let (mut dir, name, entry) = self.resolve(path, !opts.nofollow)?;
        let writing = opts.write || opts.append || opts.truncate;
        let mut flags = match (opts.read || !writing, writing) {
            (true, true) => OFlags::RDWR,
            (false, true) => OFlags::WRONLY,
            _ => OFlags::RDONLY,
        };
        if opts.append {
            flags |= OFlags::APPEND;
        }
        if opts.truncate {
            flags |= OFlags::TRUNC;
        }
        flags |= match opts.sync {
            SyncMode::None => OFlags::empty(),
            SyncMode::Data => OFlags::DSYNC,
            SyncMode::File => OFlags::SYNC,
        };
        match entry {
            Some(_) if opts.create_new => Err(errno(rustix::io::Errno::EXIST)),
            Some(e) => {
                match file_type(&e.stat) {
                    FileType::Directory => return Err(errno(rustix::io::Errno::ISDIR)),
                    FileType::Symlink => return Err(errno(rustix::io::Errno::LOOP)),
                    _ => {}
                }
                if !writing {
                    return self.layer_dir(&dir, e.layer).open_file(&name, flags, 0);
                }
                self.copy_up(&mut dir, &name, &e, !opts.truncate)?;
                dir.upper
                    .as_ref()
                    .expect("copied up")
                    .open_file(&name, flags, 0)
            }
            None if opts.create || opts.create_new => {
                if name == "." {
                    return Err(errno(rustix::io::Errno::ISDIR));
                }
                self.ensure_upper(&mut dir)?;
                let upper = dir.upper.as_ref().expect("ensured");
                self.clear_upper(upper, &name)?;
                upper.open_file(&name, flags | OFlags::CREATE | OFlags::EXCL, opts.mode)
            }
            None => Err(errno(rustix::io::Errno::NOENT)),
        }
    }

    /// Open a regular file for reading (following symlinks), with its stat when it is a
    /// lower layer's: such a file never changes while the layer exists.
    pub fn open_read(&self, path: &OsStr) -> io::Result<(File, Option<Stat>)> {
        let (dir, name, e) = self.existing(path, true)?;
        match file_type(&e.stat) {
            FileType::RegularFile => {}
            FileType::Directory => return Err(errno(rustix::io::Errno::ISDIR)),
            // Opening a FIFO or a device could block or reach the host: not a program.
            _ => return Err(errno(rustix::io::Errno::ACCESS)),
        }
        let file = self
            .layer_dir(&dir, e.layer)
            .open_file(&name, OFlags::RDONLY, 0)?;
        Ok((file, (e.layer != Layer::Upper).then_some(e.stat)))
    }

    pub fn create_dir(&self, path: &OsStr, mode: u32) -> io::Result<()> {
        self.changed();
        let (mut dir, name, entry) = self.parent_for_create(path)?;
        if entry.is_some() {
            return Err(errno(rustix::io::Errno::EXIST));
        }
        self.ensure_upper(&mut dir)?;
        let upper = dir.upper.as_ref().expect("ensured");
        let over_whiteout = upper.stat_at(&name)?.is_some_and(|st| is_whiteout(&st));
        self.clear_upper(upper, &name)?;
        upper.make_dir(&name, mode)?;
        if over_whiteout {
            // What the whiteout hid must stay hidden under the new directory.
            self.set_opaque(&upper.open_dir_nofollow(&name)?)?;
        }
        Ok(())
    }

    pub fn symlink(&self, target: &OsStr, path: &OsStr) -> io::Result<()> {
        let (mut dir, name, entry) = self.parent_for_create(path)?;
        if entry.is_some() {
            return Err(errno(rustix::io::Errno::EXIST));
        }
        self.ensure_upper(&mut dir)?;
        let upper = dir.upper.as_ref().expect("ensured");
        self.clear_upper(upper, &name)?;
        upper.symlink_at(target, &name)
    }

    /// A new name `new` for the non-directory `existing` (copied up first).
    pub fn hard_link(&self, existing: &OsStr, new: &OsStr) -> io::Result<()> {
        let (mut src_dir, src_name, src) = self.existing(existing, false)?;
        if file_type(&src.stat) == FileType::Directory {
            return Err(errno(rustix::io::Errno::PERM));
        }
        let (mut dst_dir, dst_name, dst) = self.parent_for_create(new)?;
        if dst.is_some() {
            return Err(errno(rustix::io::Errno::EXIST));
        }
        self.copy_up(&mut src_dir, &src_name, &src, true)?;
        self.ensure_upper(&mut dst_dir)?;
        let upper = dst_dir.upper.as_ref().expect("ensured");
        self.clear_upper(upper, &dst_name)?;
        src_dir
            .upper
            .as_ref()
            .expect("copied up")
            .hard_link_at(&src_name, upper, &dst_name)
    }

    pub fn remove_file(&self, path: &OsStr) -> io::Result<()> {
        let (mut dir, name, entry) = self.existing(path, false)?;
        if file_type(&entry.stat) == FileType::Directory {
            return Err(errno(rustix::io::Errno::ISDIR));
        }
        self.remove_entry(&mut dir, &name, &entry)
    }

    pub fn remove_dir(&self, path: &OsStr) -> io::Result<()> {
        let (mut dir, name, entry) = self.existing(path, false)?;
        if name == "." {
            return Err(errno(rustix::io::Errno::BUSY));
        }
        if file_type(&entry.stat) != FileType::Directory {
            return Err(errno(rustix::io::Errno::NOTDIR));
        }
        let child = self.child(&dir, &name, &entry)?;
        if !self.read_dir_of(&child)?.is_empty() {
            return Err(errno(rustix::io::Errno::NOTEMPTY));
        }
        self.remove_entry(&mut dir, &name, &entry)
    }

    fn read_dir_of(&self, dir: &Merged<D>) -> io::Result<Vec<OsString>> {
        let layers = dir.upper.iter().chain(dir.lowers.iter()).map(|d| &**d);
        Ok(merged_entries(layers)?
            .into_iter()
            .map(|e| e.name)
            .collect())
    }

    /// Remove `name` from the union: drop the upper entry, and whiteout what lowers show.
    fn remove_entry(&self, dir: &mut Merged<D>, name: &OsStr, entry: &Entry) -> io::Result<()> {
        self.changed();
        let needs_whiteout = self.lower_has(dir, name)?;
        self.ensure_upper(dir)?;
        let upper = dir.upper.as_ref().expect("ensured");
        if entry.layer == Layer::Upper {
            self.clear_upper(upper, name)?;
        }
        if needs_whiteout {
            self.whiteout(upper, name)?;
        }
        Ok(())
    }

    /// Rename `from` to `to`, replacing `to` as rename(2) does.
    pub fn rename(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
        self.changed();
        let (mut src_dir, src_name, src) = self.existing(from, false)?;
        let (mut dst_dir, dst_name, dst) = self.parent_for_create(to)?;
        if src_name == "." {
            return Err(errno(rustix::io::Errno::BUSY));
        }
        if src_dir.path == dst_dir.path && src_name == dst_name {
            return Ok(());
        }
        let src_is_dir = file_type(&src.stat) == FileType::Directory;
        if let Some(d) = &dst {
            let dst_is_dir = file_type(&d.stat) == FileType::Directory;
            match (src_is_dir, dst_is_dir) {
                (true, false) => return Err(errno(rustix::io::Errno::NOTDIR)),
                (false, true) => return Err(errno(rustix::io::Errno::ISDIR)),
                (true, true) => {
                    if !self
                        .read_dir_of(&self.child(&dst_dir, &dst_name, d)?)?
                        .is_empty()
                    {
                        return Err(errno(rustix::io::Errno::NOTEMPTY));
                    }
                }
                _ => {}
            }
            // Moving a directory into itself is refused, as rename(2) does.
        }
        if src_is_dir {
            let mut to_path = dst_dir.path.clone();
            to_path.push(dst_name.clone());
            let mut from_path = src_dir.path.clone();
            from_path.push(src_name.clone());
            if to_path.starts_with(&from_path) {
                return Err(errno(rustix::io::Errno::INVAL));
            }
        }
        let dst_lower = self.lower_has(&dst_dir, &dst_name)?;
        let src_child = if src_is_dir {
            Some(self.child(&src_dir, &src_name, &src)?)
        } else {
            None
        };
        let merged_dir = src_child.as_ref().is_some_and(|c| !c.lowers.is_empty());

        self.ensure_upper(&mut dst_dir)?;
        if merged_dir {
            // A directory lower layers contribute to: copy its merged tree, then remove it.
            let dst_upper = dst_dir.upper.as_ref().expect("ensured");
            if let Some(d) = &dst {
                if d.layer == Layer::Upper {
                    self.clear_upper(dst_upper, &dst_name)?;
                }
            }
            if dst_upper
                .stat_at(&dst_name)?
                .is_some_and(|st| is_whiteout(&st))
            {
                dst_upper.remove_file_at(&dst_name)?;
            }
            self.copy_tree(
                src_child.as_ref().expect("dir"),
                dst_upper,
                &dst_name,
                &src.stat,
                dst_lower,
            )?;
            return self.remove_tree(from);
        }
        self.copy_up(&mut src_dir, &src_name, &src, true)?;
        // The source and destination parents may be the same directory; re-resolve the
        // destination's upper handle after the copy-up.
        let (mut dst_dir, _, _) = self.parent_for_create(to)?;
        self.ensure_upper(&mut dst_dir)?;
        let dst_upper = dst_dir.upper.as_ref().expect("ensured");
        self.clear_upper(dst_upper, &dst_name)?;
        let src_upper = src_dir.upper.as_ref().expect("copied up");
        src_upper.rename_at(&src_name, dst_upper, &dst_name)?;
        if src_is_dir && dst_lower {
            self.set_opaque(&dst_upper.open_dir_nofollow(&dst_name)?)?;
        }
        let (src_dir, _, _) = self.resolve(from, false)?;
        if self.lower_has(&src_dir, &src_name)? {
            self.whiteout(src_dir.upper.as_ref().expect("copied up"), &src_name)?;
        }
        Ok(())
    }

    /// Copy the merged directory `src` to a new upper directory `name` in `into`.
    fn copy_tree(
        &self,
        src: &Merged<D>,
        into: &D,
        name: &OsStr,
        st: &Stat,
        opaque: bool,
    ) -> io::Result<()> {
        into.make_dir(name, 0o700)?;
        let made = into.open_dir_nofollow(name)?;
        if opaque {
            self.set_opaque(&made)?;
        }
        for child in self.read_dir_of(src)? {
            let entry = self.lookup(src, &child)?.expect("listed");
            if file_type(&entry.stat) == FileType::Directory {
                let sub = self.child(src, &child, &entry)?;
                self.copy_tree(&sub, &made, &child, &entry.stat, false)?;
            } else {
                // Reuse copy-up: it copies a lower entry into `made` under the same name.
                let from = match entry.layer {
                    Layer::Upper => Arc::clone(src.upper.as_ref().expect("entry from upper")),
                    Layer::Lower(i) => Arc::clone(&src.lowers[i]),
                };
                let mut target = Merged {
                    path: Vec::new(),
                    upper: Some(Arc::new(made.try_clone_handle()?)),
                    lowers: vec![from],
                };
                self.copy_up(
                    &mut target,
                    &child,
                    &Entry {
                        layer: Layer::Lower(0),
                        stat: entry.stat,
                    },
                    true,
                )?;
            }
        }
        self.copy_metadata(into, name, st)
    }

    /// `rm -r` in the union.
    pub fn remove_tree(&self, path: &OsStr) -> io::Result<()> {
        let (dir, name, entry) = self.existing(path, false)?;
        if file_type(&entry.stat) == FileType::Directory {
            let child = self.child(&dir, &name, &entry)?;
            for n in self.read_dir_of(&child)? {
                let mut p = path.to_owned();
                p.push("/");
                p.push(&n);
                self.remove_tree(&p)?;
            }
            self.remove_dir(path)
        } else {
            self.remove_file(path)
        }
    }

    pub fn set_permissions(&self, path: &OsStr, mode: u32) -> io::Result<()> {
        let (mut dir, name, entry) = self.existing(path, true)?;
        let dir_upper = self.upper_entry(&mut dir, &name, &entry)?;
        dir_upper.0.chmod_at(&dir_upper.1, mode & 0o7777)
    }

    pub fn set_owner(&self, path: &OsStr, uid: u32, gid: u32, follow: bool) -> io::Result<()> {
        let (mut dir, name, entry) = self.existing(path, follow)?;
        let dir_upper = self.upper_entry(&mut dir, &name, &entry)?;
        dir_upper.0.chown_at(&dir_upper.1, uid, gid)
    }

    pub fn set_times(&self, path: &OsStr, times: &Timestamps, follow: bool) -> io::Result<()> {
        let (mut dir, name, entry) = self.existing(path, follow)?;
        let dir_upper = self.upper_entry(&mut dir, &name, &entry)?;
        dir_upper.0.set_times_at(&dir_upper.1, times)
    }

    /// Copy an entry up and return its upper parent handle and name (the root: its parent
    /// is the upper root itself, named ".").
    fn upper_entry(
        &self,
        dir: &mut Merged<D>,
        name: &OsStr,
        entry: &Entry,
    ) -> io::Result<(D, OsString)> {
        if name == "." {
            self.ensure_upper(dir)?;
            return Ok((
                dir.upper.as_ref().expect("ensured").try_clone_handle()?,
                name.to_owned(),
            ));
        }
        self.copy_up(dir, name, entry, true)?;
        Ok((
            dir.upper.as_ref().expect("copied up").try_clone_handle()?,
            name.to_owned(),
        ))
    }
}

fn components(path: &[u8]) -> impl Iterator<Item = OsString> + '_ {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(|c| OsStr::from_bytes(c).to_owned())
}

/// The union of the listings of `layers` (top first), sorted by name: the topmost layer
/// that has a name decides it, and a whiteout there hides it.
pub(crate) fn merged_entries<'a, D: DirHandle + 'a>(
    layers: impl IntoIterator<Item = &'a D>,
) -> io::Result<Vec<DirEntry>> {
    let mut seen = std::collections::BTreeMap::<OsString, Option<DirEntry>>::new();
    for layer in layers {
        for name in layer.names()? {
            if seen.contains_key(&name) {
                continue;
            }
            let Some(st) = layer.stat_at(&name)? else {
                continue;
            };
            let entry = (!is_whiteout(&st)).then(|| DirEntry {
                name: name.clone(),
                kind: file_type(&st),
                ino: st.st_ino,
            });
            seen.insert(name, entry);
        }
    }
    Ok(seen.into_values().flatten().collect())
}

/// The directories named `name` under `parents` (top first) that stack in the union: top
/// down, until an opaque directory, a whiteout or a non-directory ends the stack.
pub(crate) fn dir_stack<'a, D: DirHandle + 'a>(
    parents: impl IntoIterator<Item = &'a D>,
    name: &OsStr,
) -> io::Result<Vec<D>> {
    let mut stack = Vec::new();
    for parent in parents {
        match parent.stat_at(name)? {
            None => continue,
            Some(st) if file_type(&st) == FileType::Directory => {
                let d = parent.open_dir_nofollow(name)?;
                let opaque = is_opaque(&d)?;
                stack.push(d);
                if opaque {
                    break;
                }
            }
            // A whiteout or a non-directory hides everything further down.
            Some(_) => break,
        }
    }
    Ok(stack)
}

pub(crate) fn is_opaque<D: DirHandle>(dir: &D) -> io::Result<bool> {
    Ok(dir.get_xattr(opaque_xattr())?.is_some_and(|v| v == b"y"))
}

/// Copy the xattrs of `src` to `dst` (open files), except overlay-private ones.
fn copy_xattrs_fd(src: &File, dst: &File) -> io::Result<()> {
    let mut names = vec![0u8; 65536];
    let n = match rustix::fs::flistxattr(src, &mut names) {
        Ok(n) => n,
        Err(rustix::io::Errno::NOTSUP) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    for key in names[..n]
        .split(|&b| b == 0)
        .filter(|k| !k.is_empty() && !is_overlay_xattr(k))
    {
        let Ok(key) = std::str::from_utf8(key) else {
            continue;
        };
        let mut value = vec![0u8; 65536];
        if let Ok(len) = rustix::fs::fgetxattr(src, key, &mut value) {
            // Best effort, as the kernel's copy-up: security.* may be refused unprivileged.
            let _ = rustix::fs::fsetxattr(dst, key, &value[..len], rustix::fs::XattrFlags::empty());
        }
    }
    Ok(())
}
