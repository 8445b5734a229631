//! strata-runtime: the core every other Strata crate stands on. The store (an OCI image
//! layout with unpacked layers beside it), image documents, layers, and the archives that
//! move images in and out.

pub mod archive;
pub mod backend;
pub mod compression;
pub mod container;
pub mod content;
pub mod digest;
pub mod error;
pub mod fs;
pub mod gc;
pub mod image;
pub mod layer;
pub mod pipe;
pub mod privilege;
pub mod progress;
pub mod reference;
#[cfg(feature = "registry")]
pub mod registry;
pub mod store;
pub mod users;
pub mod volume;
#[cfg(feature = "wasm")]
pub mod wasm;

pub use cap_std;
pub use digest::Digest;
pub use error::{Error, ErrorKind, Result};
pub use oci_spec;
pub use reference::Reference;
pub use store::Store;
