//! WASI preview 1 modules, run natively on a core linker.
//!
//! wasmtime-wasi's preview 1 host serves what is not a descriptor: arguments, environment,
//! clocks and random. `proc_exit` is ours (wasmtime-wasi traps on a status of 126 or more; a
//! process keeps the low 8 bits, as on Linux). Its filesystem can only serve host
//! directories, so its fd and path functions are shadowed by ours: stdio on fds 0-2 (the
//! process's own, written as the guest writes), the mounts of [`GuestFs`] preopened as fds
//! 3, 4, …, and every descriptor opened from them. `poll_oneoff` is ours too, as it waits on
//! those descriptors.
//!
//! A stop signal ends every wait (poll, sleep, stdin: each also watches the stop eventfd of
//! `blocking.rs`), and no host call returns to a guest once one has come: it traps.
//!
//! Layouts and numbers are `wasi_snapshot_preview1.witx`'s; every guest pointer is checked
//! against the guest's memory.
//!
//! By concern: `abi.rs` (errnos, rights, flags and filetypes; reading and writing guest
//! memory), `files.rs` (the descriptor table and the fd and path functions on it),
//! `stdio.rs` (fds 0-2), `poll.rs` (`poll_oneoff`, the guest's clock, the stop-aware wait)
//! and `linker.rs` (the host functions, shadowing wasmtime-wasi's).
//!
//! [`GuestFs`]: super::guestfs::GuestFs

mod abi;
mod files;
mod linker;
mod poll;
mod stdio;

pub use files::Files;
pub use linker::add_to_linker;
pub use poll::GuestClock;
pub use stdio::HostStdio;

use wasmtime_wasi::p1::WasiP1Ctx;

/// What a preview 1 guest's store holds.
pub struct P1State {
    pub wasi: WasiP1Ctx,
    pub files: Files,
    pub limits: super::control::GuestLimits,
}
