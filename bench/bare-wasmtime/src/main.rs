//! The floor for Strata's Wasm benchmarks (`bench/wasm.sh`): wasmtime with the same engine
//! configuration as `strata run`, its own on-disk compile cache, and a plain preopened host
//! directory as `/` instead of Strata's overlay filesystem.
//!
//!     bare-wasmtime CACHE_DIR ROOT_DIR WASM [ARGS...]
//!
//! `WASM` is a path in the guest (e.g. `/hello.wasm`), read from `ROOT_DIR`; the guest gets
//! args `[WASM, ARGS...]`, inherited stdio, no environment, blocking file I/O on the calling
//! thread (`allow_blocking_current_thread`). Core modules (preview 1) run on
//! `wasmtime_wasi::p1` directly; components on `wasmtime_wasi::p2`. Exits with the guest's code.

#![allow(unsafe_code)]

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use wasmtime::component::{Component, Linker as ComponentLinker, ResourceTable};
use wasmtime::{Config, Engine, Linker, Module, Store};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::bindings::sync::CommandPre;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

type Result<T> = wasmtime::Result<T>;

struct P2State {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for P2State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    if argv.len() < 4 {
        eprintln!("usage: bare-wasmtime CACHE_DIR ROOT_DIR WASM [ARGS...]");
        return ExitCode::from(2);
    }
    match run(Path::new(&argv[1]), Path::new(&argv[2]), &argv[3..]) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("bare-wasmtime: {e:#}");
            ExitCode::from(125)
        }
    }
}

fn run(cache: &Path, root: &Path, args: &[String]) -> Result<i32> {
    // The same configuration as strata's `WasmHost::new`.
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    let engine = Engine::new(&config)?;
    std::fs::create_dir_all(cache)?;

    let program = root.join(args[0].trim_start_matches('/'));
    let wasm = std::fs::read(&program)
        .map_err(|e| wasmtime::format_err!("read {}: {e}", program.display()))?;
    let cached = cache_path(&engine, cache, &wasm);

    let mut wasi = WasiCtxBuilder::new();
    // The fastest stock setting for a synchronous embedding (the `wasmtime` CLI's too): file
    // operations run on this thread instead of a round trip through tokio's blocking pool.
    // Set before the preopen, which copies it.
    wasi.allow_blocking_current_thread(true);
    wasi.args(args)
        .inherit_stdio()
        .preopened_dir(root, "/", FsPerms::ReadWrite)?;

    let outcome = if wasmparser_is_core(&wasm) {
        let module = match cached
            .exists()
            .then(|| deserialize_module(&engine, &cached))
        {
            Some(Ok(m)) => m,
            _ => {
                let m = Module::new(&engine, &wasm)?;
                store_cache(&cached, &m.serialize()?);
                m
            }
        };
        let mut linker: Linker<WasiP1Ctx> = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |s| s)?;
        let pre = linker.instantiate_pre(&module)?;
        let mut store = Store::new(&engine, wasi.build_p1());
        store.set_epoch_deadline(1);
        store.epoch_deadline_trap();
        pre.instantiate(&mut store)
            .and_then(|instance| instance.get_typed_func::<(), ()>(&mut store, "_start"))
            .and_then(|start| start.call(&mut store, ()))
            .map(|()| 0)
    } else {
        let component = match cached
            .exists()
            .then(|| deserialize_component(&engine, &cached))
        {
            Some(Ok(c)) => c,
            _ => {
                let c = Component::new(&engine, &wasm)?;
                store_cache(&cached, &c.serialize()?);
                c
            }
        };
        let mut linker: ComponentLinker<P2State> = ComponentLinker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        let pre = CommandPre::new(linker.instantiate_pre(&component)?)?;
        let mut store = Store::new(
            &engine,
            P2State {
                wasi: wasi.build(),
                table: ResourceTable::new(),
            },
        );
        store.set_epoch_deadline(1);
        store.epoch_deadline_trap();
        pre.instantiate(&mut store)
            .and_then(|cmd| cmd.wasi_cli_run().call_run(&mut store))
            .map(|r| if r.is_ok() { 0 } else { 1 })
    };
    match outcome {
        Ok(code) => Ok(code),
        Err(e) => match e.downcast_ref::<I32Exit>() {
            Some(exit) => Ok(exit.0),
            None => Err(e),
        },
    }
}

/// A core module starts with the magic and version 1; a component has a different version.
fn wasmparser_is_core(wasm: &[u8]) -> bool {
    wasm.len() >= 8 && wasm[..4] == *b"\0asm" && wasm[4..8] == [1, 0, 0, 0]
}

/// `CACHE/<hash of bytes and engine compatibility hash>.cwasm`.
fn cache_path(engine: &Engine, cache: &Path, wasm: &[u8]) -> PathBuf {
    let mut h = std::hash::DefaultHasher::new();
    wasm.hash(&mut h);
    engine.precompile_compatibility_hash().hash(&mut h);
    cache.join(format!("{:016x}.cwasm", h.finish()))
}

fn store_cache(path: &Path, bytes: &[u8]) {
    // Best effort, written aside and renamed so a concurrent reader never sees half a file.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    if std::fs::write(&tmp, bytes).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}

fn deserialize_module(engine: &Engine, path: &Path) -> Result<Module> {
    // SAFETY: the file was written by `Module::serialize` of this same engine configuration
    // into the benchmark's private cache directory, its name includes the engine's
    // compatibility hash, and wasmtime checks the header before use.
    unsafe { Module::deserialize_file(engine, path) }
}

fn deserialize_component(engine: &Engine, path: &Path) -> Result<Component> {
    // SAFETY: as for `deserialize_module`, written by `Component::serialize`.
    unsafe { Component::deserialize_file(engine, path) }
}
