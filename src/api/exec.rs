//! Execs: made by `POST /containers/{id}/exec` (kept in the server until inspected),
//! run by `POST /exec/{id}/start` through what `strata exec` runs, their output on the
//! hijacked connection.

use std::sync::Arc;

use hyper::StatusCode;
use serde::Deserialize;
use serde_json::json;
use strata_runtime::container::{exec_spec, Containers, ExecOptions, Status};
use strata_runtime::Store;

use super::containers::{get, upgraded};
use super::stream::{hijack, Framed};
use super::{empty_reply, json_reply, ApiError, Call, Reply, Server};

/// An exec made by `POST /containers/{id}/exec`, run by `POST /exec/{id}/start`.
pub struct Exec {
    container: String,
    options: ExecOptions,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    console_size: Option<[u64; 2]>,
    running: bool,
    exit_code: Option<i32>,
    /// Its terminal's size, once it runs with one (`POST /exec/{id}/resize`).
    resize: Option<strata_runtime::backend::Resizer>,
    /// The size last asked for: a client may ask before the process runs.
    size: Option<(u16, u16)>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ExecBody {
    cmd: Vec<String>,
    env: Option<Vec<String>>,
    user: String,
    working_dir: String,
    tty: bool,
    attach_stdin: bool,
    attach_stdout: bool,
    attach_stderr: bool,
    /// `[rows, columns]` of the client's terminal, for a `Tty` exec.
    console_size: Option<[u64; 2]>,
}

pub fn exec_create(server: &Arc<Server>, store: &Store, key: &str, call: &Call) -> Reply {
    let containers = Containers::open(store)?;
    let c = get(&containers, key)?;
    if c.status != Status::Running {
        return Err(ApiError::conflict(format!(
            "container {} is not running",
            c.id
        )));
    }
    let body: ExecBody = call.json()?;
    if body.cmd.is_empty() {
        return Err(ApiError::bad("No exec command specified"));
    }
    let id = strata_runtime::Digest::of(
        format!("exec {} {:?}", c.id, std::time::SystemTime::now()).as_bytes(),
    )
    .hex()
    .to_string();
    server.execs.lock().expect("execs").insert(
        id.clone(),
        Exec {
            container: c.id,
            options: ExecOptions {
                args: body.cmd,
                env: body.env.unwrap_or_default(),
                workdir: Some(body.working_dir).filter(|w| !w.is_empty()),
                user: Some(body.user).filter(|u| !u.is_empty()),
                tty: body.tty,
            },
            stdin: body.attach_stdin,
            console_size: body.console_size.filter(|[h, w]| *h > 0 && *w > 0),
            stdout: body.attach_stdout,
            stderr: body.attach_stderr,
            running: false,
            exit_code: None,
            resize: None,
            size: None,
        },
    );
    json_reply(StatusCode::CREATED, &json!({ "Id": id }))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ExecStartBody {
    detach: bool,
}

/// Run an exec: its output on the hijacked connection (frames, or raw with a terminal)
/// until it ends; `ExitCode` for `GET /exec/{id}/json` then.
pub fn exec_start(server: &Arc<Server>, id: &str, call: Call) -> Reply {
    let body: ExecStartBody = call.json()?;
    let (container, options, stdin, stdout, stderr, console_size) = {
        let mut execs = server.execs.lock().expect("execs");
        let exec = execs
            .get_mut(id)
            .ok_or_else(|| ApiError::not_found(format!("No such exec instance: {id}")))?;
        if exec.running || exec.exit_code.is_some() {
            return Err(ApiError::conflict(format!("exec {id} has already run")));
        }
        exec.running = true;
        (
            exec.container.clone(),
            exec.options.clone(),
            exec.stdin,
            exec.stdout,
            exec.stderr,
            exec.console_size,
        )
    };
    let store = server.store()?;
    let containers = Containers::open(&store)?;
    let c = get(&containers, &container)?;
    let mut spec = exec_spec(&containers.spec(&c)?, &options)?;
    if let (true, Some([rows, cols]), Some(process)) =
        (options.tty, console_size, spec.process_mut().as_mut())
    {
        let size = strata_runtime::oci_spec::runtime::BoxBuilder::default()
            .height(rows)
            .width(cols)
            .build()
            .map_err(|e| ApiError::bad(format!("console size: {e}")))?;
        process.set_console_size(Some(size));
    }
    let tty = options.tty;
    let (sender, client_stdin) = match (body.detach, call.upgrade) {
        (false, Some(upgrade)) => {
            let (sender, input) = hijack(upgrade);
            (Some(sender), Some(input))
        }
        _ => (None, None),
    };
    let server = server.clone();
    let id = id.to_string();
    std::thread::spawn(move || {
        let code = (|| -> anyhow::Result<i32> {
            let store = server.store().map_err(|e| anyhow::anyhow!(e.message))?;
            let containers = Containers::open(&store)?;
            let (out_r, out_w) = rustix::pipe::pipe()?;
            let (err_r, err_w) = rustix::pipe::pipe()?;
            let pump = |from: std::os::fd::OwnedFd, stream: u8, wanted: bool| {
                let sender = sender.clone();
                std::thread::spawn(move || {
                    let mut from = std::fs::File::from(from);
                    match sender.filter(|_| wanted) {
                        Some(sender) => {
                            let mut to = Framed {
                                sender,
                                stream,
                                raw: tty,
                            };
                            let _ = std::io::copy(&mut from, &mut to);
                        }
                        None => {
                            let _ = std::io::copy(&mut from, &mut std::io::sink());
                        }
                    }
                })
            };
            let pumps = [pump(out_r, 1, stdout), pump(err_r, 2, stderr)];
            // The client's stdin, when it attaches one, to the process's through a pipe;
            // its half-close is the process's end of input.
            let input = match (stdin, client_stdin) {
                (true, Some(client)) => {
                    let (read, write) = rustix::pipe::pipe()?;
                    std::thread::spawn(move || {
                        use std::io::Write;
                        let mut to = std::fs::File::from(write);
                        for bytes in client {
                            if to.write_all(&bytes).is_err() {
                                return;
                            }
                        }
                    });
                    Some(read)
                }
                _ => None,
            };
            let io = crate::cli::exec::ExecIo {
                stdin: input,
                stdout: out_w,
                stderr: err_w,
            };
            let code = crate::cli::exec::exec_in(
                &store,
                &containers,
                &c,
                &spec,
                false,
                Some(io),
                &mut |started| {
                    if let Some(exec) = server.execs.lock().expect("execs").get_mut(&id) {
                        exec.resize = started.resize.clone();
                        if let (Some(resize), Some((rows, cols))) = (&exec.resize, exec.size) {
                            let _ = resize(rows, cols);
                        }
                    }
                },
            );
            for p in pumps {
                let _ = p.join();
            }
            code
        })();
        let mut execs = server.execs.lock().expect("execs");
        if let Some(exec) = execs.get_mut(&id) {
            exec.running = false;
            exec.exit_code = Some(code.unwrap_or(126));
        }
        drop(sender);
    });
    if body.detach {
        return empty_reply(StatusCode::OK);
    }
    upgraded(tty)
}

/// `POST /exec/{id}/resize?h=ROWS&w=COLS`: the size of an exec's terminal.
pub fn exec_resize(server: &Arc<Server>, id: &str, call: &Call) -> Reply {
    let (rows, cols): (u16, u16) = (call.number("h")?, call.number("w")?);
    let resize = {
        let mut execs = server.execs.lock().expect("execs");
        let exec = execs
            .get_mut(id)
            .ok_or_else(|| ApiError::not_found(format!("No such exec instance: {id}")))?;
        // Kept for a process that does not run yet: it gets this size when it does.
        exec.size = Some((rows, cols));
        exec.resize.clone()
    };
    if let Some(resize) = resize {
        resize(rows, cols)?;
    }
    empty_reply(StatusCode::OK)
}

pub fn exec_inspect(server: &Arc<Server>, id: &str) -> Reply {
    let execs = server.execs.lock().expect("execs");
    let exec = execs
        .get(id)
        .ok_or_else(|| ApiError::not_found(format!("No such exec instance: {id}")))?;
    json_reply(
        StatusCode::OK,
        &json!({
            "ID": id,
            "ContainerID": exec.container,
            "Running": exec.running,
            "ExitCode": exec.exit_code,
            "ProcessConfig": { "entrypoint": exec.options.args.first(), "arguments": exec.options.args.get(1..), "tty": exec.options.tty },
        }),
    )
}
