//! The floor for `bench/http.sh`: a wasi:http handler served the way `wasmtime serve` does
//! it (a `ProxyPre`, a new store and instance per request, hyper's HTTP/1 server with
//! keep-alive), with the same engine configuration as Strata and no filesystem, limits,
//! logs or drain.
//!
//!     bare-wasi-http [--pooling] ADDR COMPONENT ROOT_DIR
//!
//! `ROOT_DIR` is preopened as `/` (a plain host directory where Strata serves its overlay),
//! so a handler that reads its files does the same work under both.
//! `--pooling`: wasmtime's pooling instance allocator (slots reserved up front, reused by
//! each request's instance) instead of the default on-demand one.
//! The handler runs on the synchronous bindings on Tokio's blocking threads, as Strata's
//! does: this workspace's wasmtime is built without `async` (one build for both).

use std::sync::Arc;

use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::sync::ProxyPre;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

struct State {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: Default::default(),
        }
    }
}

fn main() -> wasmtime::Result<()> {
    let argv: Vec<String> = std::env::args().collect();
    let (pooling, args) = match &argv[1..] {
        [flag, rest @ ..] if flag == "--pooling" => (true, rest),
        rest => (false, rest),
    };
    let [addr, component, root] = args else {
        eprintln!("usage: bare-wasi-http [--pooling] ADDR COMPONENT ROOT_DIR");
        std::process::exit(2);
    };
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    if pooling {
        let mut pool = wasmtime::PoolingAllocationConfig::default();
        pool.total_component_instances(256)
            .total_core_instances(256)
            .total_memories(256)
            .total_tables(256)
            .max_memory_size(64 << 20);
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
    }
    let engine = Engine::new(&config)?;
    let component = Component::from_file(&engine, component)?;
    let mut linker = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut linker)?;
    let pre = Arc::new(ProxyPre::new(linker.instantiate_pre(&component)?)?);
    let root = Arc::new(root.clone());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr.as_str()).await?;
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let (pre, root) = (Arc::clone(&pre), Arc::clone(&root));
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let (pre, root) = (Arc::clone(&pre), Arc::clone(&root));
                    async move {
                        let (sender, receiver) = tokio::sync::oneshot::channel();
                        let engine = pre.engine().clone();
                        tokio::task::spawn_blocking(move || -> wasmtime::Result<()> {
                            let mut store = Store::new(
                                &engine,
                                State {
                                    wasi: WasiCtx::builder()
                                        .preopened_dir(root.as_str(), "/", FsPerms::ReadWrite)?
                                        .build(),
                                    http: WasiHttpCtx::new(),
                                    table: ResourceTable::new(),
                                },
                            );
                            store.set_epoch_deadline(u64::MAX);
                            let request = store
                                .data_mut()
                                .http()
                                .new_incoming_request(Scheme::Http, request)?;
                            let out = store.data_mut().http().new_response_outparam(sender)?;
                            let proxy = pre.instantiate(&mut store)?;
                            proxy
                                .wasi_http_incoming_handler()
                                .call_handle(&mut store, request, out)
                        });
                        match receiver.await {
                            Ok(Ok(response)) => Ok(response),
                            _ => Err(wasmtime::format_err!("the handler failed")),
                        }
                    }
                });
                let _ = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}
