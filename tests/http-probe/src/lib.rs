//! Routes (the path's first segment; the rest is its argument):
//! - `/env/NAME`: the environment variable's value (404 when unset)
//! - `/file/PATH`: the file's contents (404 when it cannot be read)
//! - `/write/PATH` (the request body): writes the file, answers 201
//! - `/state`: a counter kept in the instance, incremented: 1 on a fresh instance
//! - `/echo`: the request's body, and its `x-probe` header as `x-probe-echo`
//! - `/count`: how many body bytes it read, and how the body ended (`closed`, `failed`)
//! - `/trap`: a trap (`unreachable`)
//! - `/spin`: computes forever; `/sleep/MS`: sleeps in the host
//! - `/grow/MB`: allocates and touches MB MiB, answers their sum
//! - `/print/TEXT`: TEXT on stdout, then 200
//! - `/fetch/AUTHORITY/PATH`: GET http://AUTHORITY/PATH; its status and body
//! - `/big/N`: N bytes of `x`
//! - `/noanswer`: returns without setting the response
//! anything else: 200 `probe`.

use std::sync::atomic::{AtomicU64, Ordering};

use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingRequest, OutgoingResponse,
    ResponseOutparam, Scheme,
};

static STATE: AtomicU64 = AtomicU64::new(0);

struct Probe;

fn answer(out: ResponseOutparam, status: u16, headers: &[(&str, &[u8])], body: &[u8]) {
    let fields = Fields::from_list(
        &headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect::<Vec<_>>(),
    )
    .expect("valid headers");
    let response = OutgoingResponse::new(fields);
    response.set_status_code(status).expect("a valid status");
    let outgoing = response.body().expect("the body, once");
    ResponseOutparam::set(out, Ok(response));
    let stream = outgoing.write().expect("the body's stream, once");
    for chunk in body.chunks(4096) {
        stream
            .blocking_write_and_flush(chunk)
            .expect("write the body");
    }
    drop(stream);
    OutgoingBody::finish(outgoing, None).expect("finish the body");
}

fn read_body(request: &IncomingRequest) -> Vec<u8> {
    let body = request.consume().expect("the body, once");
    let stream = body.stream().expect("the body's stream, once");
    let mut all = Vec::new();
    while let Ok(chunk) = stream.blocking_read(65536) {
        all.extend(chunk);
    }
    all
}

fn fetch(authority: &str, path: &str) -> Result<(u16, Vec<u8>), String> {
    let request = OutgoingRequest::new(Fields::new());
    request.set_method(&Method::Get).map_err(|()| "method")?;
    request
        .set_scheme(Some(&Scheme::Http))
        .map_err(|()| "scheme")?;
    request
        .set_authority(Some(authority))
        .map_err(|()| "authority")?;
    request
        .set_path_with_query(Some(path))
        .map_err(|()| "path")?;
    let pending =
        wasip2::http::outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
    pending.subscribe().block();
    let response = pending
        .get()
        .ok_or("no response")?
        .map_err(|()| "taken")?
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status();
    let body = response.consume().map_err(|()| "body")?;
    let stream = body.stream().map_err(|()| "stream")?;
    let mut all = Vec::new();
    while let Ok(chunk) = stream.blocking_read(65536) {
        all.extend(chunk);
    }
    Ok((status, all))
}

impl wasip2::exports::http::incoming_handler::Guest for Probe {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let (route, arg) = path
            .trim_start_matches('/')
            .split_once('/')
            .unwrap_or((path.trim_start_matches('/'), ""));
        match route {
            "env" => match std::env::var(arg) {
                Ok(v) => answer(out, 200, &[], v.as_bytes()),
                Err(_) => answer(out, 404, &[], b"unset"),
            },
            "file" => match std::fs::read(format!("/{arg}")) {
                Ok(v) => answer(out, 200, &[], &v),
                Err(e) => answer(out, 404, &[], e.to_string().as_bytes()),
            },
            "write" => {
                let body = read_body(&request);
                match std::fs::write(format!("/{arg}"), body) {
                    Ok(()) => answer(out, 201, &[], b"written"),
                    Err(e) => answer(out, 500, &[], e.to_string().as_bytes()),
                }
            }
            "state" => {
                let n = STATE.fetch_add(1, Ordering::SeqCst) + 1;
                answer(out, 200, &[], n.to_string().as_bytes())
            }
            "echo" => {
                let probe = request.headers().get("x-probe");
                let body = read_body(&request);
                let echoed: Vec<(&str, &[u8])> = probe
                    .iter()
                    .map(|v| ("x-probe-echo", v.as_slice()))
                    .collect();
                answer(out, 200, &echoed, &body)
            }
            "count" => {
                let body = request.consume().expect("the body, once");
                let stream = body.stream().expect("the body's stream, once");
                let mut n = 0;
                let ended = loop {
                    match stream.blocking_read(1 << 20) {
                        Ok(chunk) => n += chunk.len(),
                        Err(wasip2::io::streams::StreamError::Closed) => break "closed",
                        Err(_) => break "failed",
                    }
                };
                answer(out, 200, &[], format!("{n} {ended}").as_bytes())
            }
            "trap" => std::process::abort(),
            "spin" => {
                let mut x: u64 = 1;
                loop {
                    x = std::hint::black_box(x.wrapping_mul(3).wrapping_add(1));
                }
            }
            "sleep" => {
                let ms: u64 = arg.parse().unwrap_or(1000);
                std::thread::sleep(std::time::Duration::from_millis(ms));
                answer(out, 200, &[], b"slept")
            }
            "grow" => {
                let mb: usize = arg.parse().unwrap_or(1);
                let v = vec![1u8; mb << 20];
                let sum: u64 = v.iter().map(|&b| b as u64).sum();
                answer(out, 200, &[], sum.to_string().as_bytes())
            }
            "print" => {
                println!("{arg}");
                answer(out, 200, &[], b"printed")
            }
            "fetch" => {
                let (authority, rest) = arg.split_once('/').unwrap_or((arg, ""));
                match fetch(authority, &format!("/{rest}")) {
                    Ok((status, body)) => {
                        let mut text = format!("{status} ").into_bytes();
                        text.extend(body);
                        answer(out, 200, &[], &text)
                    }
                    Err(e) => answer(out, 502, &[], e.as_bytes()),
                }
            }
            "big" => answer(out, 200, &[], &vec![b'x'; arg.parse().unwrap_or(0)]),
            "noanswer" => {}
            _ => answer(out, 200, &[], b"probe"),
        }
    }
}

wasip2::http::proxy::export!(Probe);
