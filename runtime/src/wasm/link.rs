//! The linker for one guest: the host side of each interface the component imports, and
//! only those. A linker holding all of WASI (what `wasmtime_wasi::p2::add_to_linker_sync`
//! builds) costs a short run about a tenth of a millisecond to fill, mostly for sockets and
//! a filesystem that ours replaces anyway.

use wasmtime::component::{Component, HasData, Linker, ResourceTable};
use wasmtime::Engine;
use wasmtime_wasi::cli::{WasiCli, WasiCliView};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
use wasmtime_wasi::p2::bindings::{cli, clocks, random, sockets, sync};
use wasmtime_wasi::random::{WasiRandom, WasiRandomView};
use wasmtime_wasi::sockets::{WasiSockets, WasiSocketsView};

use super::host_ports::{Mapped, MappedSockets};
use super::{blocking, p2, WasmState};

/// `wasi:io/error` works on the store's resource table.
struct Io;

impl HasData for Io {
    type Data<'a> = &'a mut ResourceTable;
}

fn table(s: &mut WasmState) -> &mut ResourceTable {
    &mut s.table
}

/// Polls and streams too, with blocking calls that a stop signal ends.
struct BlockingIo;

impl HasData for BlockingIo {
    type Data<'a> = blocking::Io<'a>;
}

fn blocking_io(s: &mut WasmState) -> blocking::Io<'_> {
    blocking::Io {
        table: &mut s.table,
        stop: &s.stop,
    }
}

fn mapped(s: &mut WasmState) -> Mapped<'_> {
    let ports = std::sync::Arc::clone(&s.host_ports);
    Mapped {
        inner: s.sockets(),
        ports,
    }
}

/// A linker with what `component` imports. An import we do not serve is left out, and
/// `instantiate_pre` names it.
///
/// `host_ports`: TCP and UDP binds are mapped by the guest's published ports (`host_ports.rs`).
pub fn linker_for(
    engine: &Engine,
    component: &Component,
    host_ports: bool,
) -> wasmtime::Result<Linker<WasmState>> {
    type S = WasmState;
    let mut linker = Linker::new(engine);
    let l = &mut linker;
    let (mut filesystem, mut http) = (false, false);
    let mut linked = std::collections::HashSet::new();
    for (name, _) in component.component_type().imports(engine) {
        // `wasi:cli/stdout@0.2.3`: the linker matches semver-compatible versions, so an
        // interface imported at two versions is linked once.
        let interface = name.split_once('@').map_or(name, |(i, _)| i);
        if !linked.insert(interface) {
            continue;
        }
        match interface {
            "wasi:io/error" => {
                wasmtime_wasi_io::bindings::wasi::io::error::add_to_linker::<S, Io>(l, table)?
            }
            "wasi:io/poll" => sync::io::poll::add_to_linker::<S, BlockingIo>(l, blocking_io)?,
            "wasi:io/streams" => sync::io::streams::add_to_linker::<S, BlockingIo>(l, blocking_io)?,
            "wasi:clocks/wall-clock" => {
                clocks::wall_clock::add_to_linker::<S, WasiClocks>(l, S::clocks)?
            }
            "wasi:clocks/monotonic-clock" => {
                clocks::monotonic_clock::add_to_linker::<S, WasiClocks>(l, S::clocks)?
            }
            "wasi:random/random" => random::random::add_to_linker::<S, WasiRandom>(l, S::random)?,
            "wasi:random/insecure" => {
                random::insecure::add_to_linker::<S, WasiRandom>(l, S::random)?
            }
            "wasi:random/insecure-seed" => {
                random::insecure_seed::add_to_linker::<S, WasiRandom>(l, S::random)?
            }
            "wasi:cli/exit" => cli::exit::add_to_linker::<S, WasiCli>(l, S::cli)?,
            "wasi:cli/environment" => cli::environment::add_to_linker::<S, WasiCli>(l, S::cli)?,
            "wasi:cli/stdin" => cli::stdin::add_to_linker::<S, WasiCli>(l, S::cli)?,
            "wasi:cli/stdout" => cli::stdout::add_to_linker::<S, WasiCli>(l, S::cli)?,
            "wasi:cli/stderr" => cli::stderr::add_to_linker::<S, WasiCli>(l, S::cli)?,
            "wasi:cli/terminal-input" => {
                cli::terminal_input::add_to_linker::<S, WasiCli>(l, S::cli)?
            }
            "wasi:cli/terminal-output" => {
                cli::terminal_output::add_to_linker::<S, WasiCli>(l, S::cli)?
            }
            "wasi:cli/terminal-stdin" => {
                cli::terminal_stdin::add_to_linker::<S, WasiCli>(l, S::cli)?
            }
            "wasi:cli/terminal-stdout" => {
                cli::terminal_stdout::add_to_linker::<S, WasiCli>(l, S::cli)?
            }
            "wasi:cli/terminal-stderr" => {
                cli::terminal_stderr::add_to_linker::<S, WasiCli>(l, S::cli)?
            }
            "wasi:sockets/network" => sockets::network::add_to_linker::<S, WasiSockets>(
                l,
                &sockets::network::LinkOptions::default(),
                S::sockets,
            )?,
            "wasi:sockets/instance-network" => {
                sockets::instance_network::add_to_linker::<S, WasiSockets>(l, S::sockets)?
            }
            "wasi:sockets/ip-name-lookup" => {
                sockets::ip_name_lookup::add_to_linker::<S, WasiSockets>(l, S::sockets)?
            }
            "wasi:sockets/tcp-create-socket" => {
                sockets::tcp_create_socket::add_to_linker::<S, WasiSockets>(l, S::sockets)?
            }
            "wasi:sockets/tcp" if host_ports => {
                sync::sockets::tcp::add_to_linker::<S, MappedSockets>(l, mapped)?
            }
            "wasi:sockets/tcp" => {
                sync::sockets::tcp::add_to_linker::<S, WasiSockets>(l, S::sockets)?
            }
            "wasi:sockets/udp-create-socket" => {
                sync::sockets::udp_create_socket::add_to_linker::<S, WasiSockets>(l, S::sockets)?
            }
            "wasi:sockets/udp" if host_ports => {
                sync::sockets::udp::add_to_linker::<S, MappedSockets>(l, mapped)?
            }
            "wasi:sockets/udp" => {
                sync::sockets::udp::add_to_linker::<S, WasiSockets>(l, S::sockets)?
            }
            "wasi:filesystem/types" | "wasi:filesystem/preopens" => filesystem = true,
            "wasi:http/types" | "wasi:http/outgoing-handler" => http = true,
            _ => {}
        }
    }
    if filesystem {
        p2::filesystem::add_to_linker(l)?;
    }
    if http {
        // Both wasi:http interfaces: its types, and outgoing requests (`http::Hooks` says
        // where they may go).
        wasmtime_wasi_http::p2::add_only_http_to_linker_sync(l)?;
    }
    Ok(linker)
}
