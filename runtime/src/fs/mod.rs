//! The capability-scoped overlay: a container's root as read-only lower layers (the store's
//! unpacked layers) under one writable upper directory, served in user space with the same
//! semantics and the same on-disk form as kernel overlayfs. See `overlay.rs`.

mod diff;
mod handle;
mod overlay;

pub use diff::{changes, Change, ChangeKind};
pub use handle::{file_type, is_whiteout, DirHandle, Stat};
pub use overlay::{DirEntry, OpenOptions, Overlay, SyncMode};

#[cfg(test)]
mod tests;
