//! WASI preview 2 components run on wasmtime-wasi's host. What we serve ourselves is
//! `wasi:filesystem` (`p2/filesystem.rs`, on the [`GuestFs`](super::guestfs::GuestFs) that
//! preview 1 shares); `../blocking.rs` cuts `wasi:io`'s waits short on a stop signal.

pub mod filesystem;
