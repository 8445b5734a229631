//! Layers: OCI layer tars and the unpacked form the store keeps of each.
//!
//! An unpacked layer is a directory in kernel overlayfs's own form, so it can be stacked as
//! a lowerdir as it is, and so that a container's upper directory (written by the kernel or
//! by `runtime::fs`) has the same form and turns into a layer with the same code:
//! - a whiteout is a character device 0:0 with the name it hides;
//! - an opaque directory carries `trusted.overlay.opaque=y` in a root store (made by root on
//!   the host, `crate::privilege`), and `user.overlay.opaque=y` in a rootless one (what a
//!   mount with `userxattr` reads; root in a user namespace makes these too). Only
//!   the store's own name counts: with a root mount, `user.overlay.*` is an ordinary xattr
//!   that copy-up carries along, so honouring it would make directories opaque by accident.

mod apply;
mod write;

pub use apply::{apply_layer, apply_layer_moving, ApplyOptions, ApplyStats};
pub(crate) use write::Tee;
pub use write::{write_and_unpack, write_layer, WriteOptions};

pub(crate) const WHITEOUT_PREFIX: &str = ".wh.";
pub(crate) const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// The xattr that marks an opaque directory in this process's stores (see above). Root in a
/// user namespace cannot set trusted.* xattrs: its stores are rootless ones.
pub(crate) fn opaque_xattr() -> &'static str {
    if crate::privilege::privileged() {
        "trusted.overlay.opaque"
    } else {
        "user.overlay.opaque"
    }
}

/// Overlay-private xattrs: never taken from a layer, never written into one.
pub(crate) fn is_overlay_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

#[cfg(test)]
pub(crate) mod tests;
