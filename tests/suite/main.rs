//! The end-to-end tests, one binary (`cargo test --test suite`; filter by module, e.g.
//! `cargo test --test suite native::`). Each module drives the built `strata` binary against
//! a private store; `common` has the helpers. All tests run as threads of this one process,
//! so a test must not change process-wide state (environment, cwd, umask, signal
//! dispositions): it sets such things on the `Command`s it starts instead.

mod common;

mod build;
mod compose;
mod containers;
mod copy;
mod dockerfile;
mod engine_api;
mod format;
mod health;
mod hostile;
mod http;
mod interop;
mod lifecycle;
mod listing;
mod memory;
mod native;
mod network;
mod registry;
mod rootless_layers;
mod secrets;
mod store;
mod userns_root;
mod volumes;
mod wasi_testsuite;
mod wasm;
mod wasm_unprivileged;
