//! WASI preview 1 modules, made into components that run on our preview 2 host, keeping
//! exact exit statuses.
//!
//! The preview1 component adapter (from wasmtime 48) implements `proc_exit` as
//! `wasi:cli/exit.exit(err)`, which loses the status. Before adapting, the module's
//! `wasi_snapshot_preview1.proc_exit` import is renamed to `strata:host/exit@0.1.0#exit`
//! (same core signature, `(param i32)`), declared in `wit/strata.wit` and implemented by the
//! host as "stop with this status".

use wasi_preview1_component_adapter_provider::{
    WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
};
use wasm_encoder::reencode::{Reencode, RoundtripReencoder};
use wasmparser::{Parser, Payload, TypeRef};
use wasmtime::component::Linker;
use wasmtime_wasi::I32Exit;
use wit_component::{ComponentEncoder, StringEncoding};

use crate::error::{Error, Result};

/// Changes when the adaptation changes, so cached components are rebuilt.
pub const ADAPTATION_VERSION: &str = "p1-adapter-48.0.8-strata-exit-1";

const STRATA_WIT: &str = include_str!("../../../wit/strata.wit");
pub const EXIT_INTERFACE: &str = "strata:host/exit@0.1.0";

/// A preview 1 command module as a component.
pub fn componentize(module: &[u8]) -> Result<Vec<u8>> {
    let bad = |e: String| Error::InvalidArgument(format!("adapt preview 1 module: {e}"));
    let mut module = redirect_proc_exit(module)?;
    let mut resolve = wit_parser::Resolve::default();
    let pkg = resolve
        .push_source("strata.wit", STRATA_WIT)
        .map_err(|e| bad(format!("{e:#}")))?;
    let world = resolve
        .select_world(&[pkg], Some("p1-exit"))
        .map_err(|e| bad(format!("{e:#}")))?;
    wit_component::embed_component_metadata(&mut module, &resolve, world, StringEncoding::UTF8)
        .map_err(|e| bad(format!("{e:#}")))?;
    ComponentEncoder::default()
        .module(&module)
        .and_then(|e| {
            e.adapter(
                WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
                WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
            )
        })
        .map(|e| e.validate(true))
        .and_then(|mut e| e.encode())
        .map_err(|e| bad(format!("{e:#}")))
}

/// The host side of `strata:host/exit`.
pub fn add_exit_to_linker<T: 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    linker.instance(EXIT_INTERFACE)?.func_wrap(
        "exit",
        |_store, (code,): (u32,)| -> wasmtime::Result<()> {
            Err(wasmtime::Error::from(I32Exit((code & 0xff) as i32)))
        },
    )?;
    Ok(())
}

/// Copy the module with its `proc_exit` import renamed; every other byte is kept.
fn redirect_proc_exit(module: &[u8]) -> Result<Vec<u8>> {
    let bad = |e: wasmparser::BinaryReaderError| {
        Error::InvalidArgument(format!("invalid wasm module: {e}"))
    };
    let mut out = wasm_encoder::Module::new();
    for payload in Parser::new(0).parse_all(module) {
        let payload = payload.map_err(bad)?;
        if let Payload::ImportSection(reader) = &payload {
            let mut imports = wasm_encoder::ImportSection::new();
            for import in reader.clone().into_imports() {
                let import = import.map_err(bad)?;
                let ty = RoundtripReencoder
                    .entity_type(import.ty)
                    .map_err(|e| Error::InvalidArgument(format!("invalid wasm module: {e}")))?;
                let (module_name, name) = if import.module == "wasi_snapshot_preview1"
                    && import.name == "proc_exit"
                    && matches!(import.ty, TypeRef::Func(_))
                {
                    (EXIT_INTERFACE, "exit")
                } else {
                    (import.module, import.name)
                };
                imports.import(module_name, name, ty);
            }
            out.section(&imports);
            continue;
        }
        if let Some((id, range)) = payload.as_section() {
            out.section(&wasm_encoder::RawSection {
                id,
                data: &module[range],
            });
        }
    }
    Ok(out.finish())
}
