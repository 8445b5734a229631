//! Directory-handle operations that cap-std's `Dir` lacks, done with `*at` calls on the
//! handle itself (never on joined host paths).

use std::io;

use cap_std::fs::Dir;
use rustix::fs::{Mode, OFlags};

/// Open the subdirectory `name` of `dir`, failing if `name` is a symlink.
pub fn open_dir_nofollow(dir: &Dir, name: impl AsRef<std::path::Path>) -> io::Result<Dir> {
    let fd = rustix::fs::openat(
        dir,
        name.as_ref(),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok(Dir::from_std_file(std::fs::File::from(fd)))
}
