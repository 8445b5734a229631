//! wasi:http services: a component exporting `wasi:http/incoming-handler`, run detached with
//! `-p`, answers each request with a fresh instance. As root every strata command runs in
//! a network namespace made for the test (`NetHost`), the handler on its bridge behind
//! DNAT; without privileges (host-ports mode) it listens on the published host port.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::{need_root, Env};
use crate::network::NetHost;

/// The HTTP probe (`tests/http-probe`: a route for each behaviour these tests check).
pub fn http_probe() -> std::path::PathBuf {
    crate::common::guest_component("tests/http-probe", "http-probe")
}

/// One HTTP/1.1 exchange on a new connection: the status and the body.
pub(crate) fn request(addr: &str, head: &str, body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    write!(
        s,
        "{head}\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut all = Vec::new();
    s.read_to_end(&mut all)?;
    let text = String::from_utf8_lossy(&all);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let at = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(all.len(), |p| p + 4);
    let head_text = String::from_utf8_lossy(&all[..at]).to_lowercase();
    let mut rest = all[at..].to_vec();
    if head_text.contains("transfer-encoding: chunked") {
        rest = unchunk(&rest);
    }
    Ok((status, rest))
}

fn unchunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(std::str::from_utf8(&data[..eol]).unwrap().trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend(&data[eol + 2..eol + 2 + size]);
        data = &data[eol + 2 + size + 2..];
    }
}

fn get(addr: &str, path: &str) -> (u16, String) {
    let (status, body) = request(addr, &format!("GET {path} HTTP/1.1"), b"")
        .unwrap_or_else(|e| panic!("GET {addr}{path}: {e}"));
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Retried until the service answers (its port opens when `run -d` returns, but DNAT to a
/// fresh veth can take a moment).
fn first_get(addr: &str, path: &str) -> (u16, String) {
    let t0 = Instant::now();
    loop {
        match request(addr, &format!("GET {path} HTTP/1.1"), b"") {
            Ok((status, body)) => return (status, String::from_utf8_lossy(&body).into_owned()),
            Err(e) if t0.elapsed() > Duration::from_secs(10) => panic!("GET {addr}{path}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn logs(host: &NetHost, env: &Env, name: &str) -> (String, String) {
    let out = host.strata(env, &["logs", name]).output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Until `name`'s logs hold `text` (on stdout or stderr).
fn until_logged(host: &NetHost, env: &Env, name: &str, text: &str) {
    let t0 = Instant::now();
    loop {
        let (out, err) = logs(host, env, name);
        if out.contains(text) || err.contains(text) {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{text:?} never logged:\n{out}\n{err}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A root test's store, its network namespace, and the probe's image; none without root.
fn setup(test: &str) -> Option<(Env, NetHost, String)> {
    if !need_root(test) {
        return None;
    }
    let env = Env::new();
    let host = NetHost::new();
    let image = env.wasm_image(&http_probe(), "hp", true);
    Some((env, host, image))
}

/// `web`, the probe run detached on the namespace's own network (`--network host`) with
/// `flags`, once it answers on 127.0.0.1:8080.
fn serve_on_host(host: &NetHost, env: &Env, image: &str, flags: &[&str]) {
    let mut args = vec!["run", "-d", "--name", "web", "--network", "host"];
    args.extend(flags);
    args.push(image);
    host.ok(env, &args);
    host.inside(|| assert_eq!(first_get("127.0.0.1:8080", "/"), (200, "probe".into())));
}

#[test]
fn a_handler_serves_each_request_with_a_fresh_instance() {
    let Some((env, host, image)) = setup("a_handler_serves_each_request_with_a_fresh_instance")
    else {
        return;
    };
    std::fs::create_dir_all(env.path("vol")).unwrap();
    std::fs::write(env.path("vol/bound.txt"), "from a bind\n").unwrap();
    let bind = format!("{}:/mnt", env.path("vol").display());
    // `-p` alone chooses the bridge, as docker's default network.
    let id = host.ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            "web",
            "-p",
            "127.0.0.1:18090:80",
            "-e",
            "GREETING=hi",
            "-v",
            &bind,
            "--memory",
            "64m",
            "--http-timeout",
            "2s",
            &image,
        ],
    );
    assert_eq!(id.trim().len(), 64, "{id}");
    let addr = "127.0.0.1:18090";
    host.inside(|| {
        assert_eq!(first_get(addr, "/"), (200, "probe".into()));
        // Env (the image's and -e), the layered root, binds.
        assert_eq!(get(addr, "/env/GREETING"), (200, "hi".into()));
        assert_eq!(get(addr, "/env/FROM_IMAGE"), (200, "yes".into()));
        assert_eq!(
            get(addr, "/file/data/greeting.txt"),
            (200, "hello from a layer\n".into())
        );
        assert_eq!(
            get(addr, "/file/mnt/bound.txt"),
            (200, "from a bind\n".into())
        );
        // Each request has a fresh instance: no state carries over.
        for _ in 0..3 {
            assert_eq!(get(addr, "/state"), (200, "1".into()));
        }
        // Bodies and headers both ways.
        let (status, body) = request(
            addr,
            "POST /echo HTTP/1.1\r\nx-probe: yes-it-is",
            b"a body to echo",
        )
        .unwrap();
        assert_eq!((status, &body[..]), (200, &b"a body to echo"[..]));
        // Writes go to the container's upper layer: a later request reads them.
        let (status, _) = request(addr, "POST /write/data/note.txt HTTP/1.1", b"noted").unwrap();
        assert_eq!(status, 201);
        assert_eq!(get(addr, "/file/data/note.txt"), (200, "noted".into()));
        // A trap, a timeout, memory past --memory, a handler that never answers: a 500
        // for that request only.
        assert_eq!(get(addr, "/trap").0, 500);
        let t0 = Instant::now();
        assert_eq!(get(addr, "/spin").0, 500);
        assert_eq!(get(addr, "/sleep/60000").0, 500);
        assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
        assert_eq!(get(addr, "/grow/128").0, 500);
        assert_eq!(get(addr, "/grow/8"), (200, (8u64 << 20).to_string()));
        assert_eq!(get(addr, "/noanswer").0, 500);
        assert_eq!(
            get(addr, "/print/said-by-the-guest"),
            (200, "printed".into())
        );
        assert_eq!(get(addr, "/"), (200, "probe".into()));
    });
    // A handler is not a command: `exec` of it is refused.
    let err = host.fails(&env, &["exec", "web", "/hello.wasm"]);
    assert!(
        err.contains("a wasi:http handler serves requests; it cannot run as a command"),
        "{err}"
    );
    // What the container wrote is in its diff, as any container's.
    assert!(host.ok(&env, &["diff", "web"]).contains("A /data/note.txt"));
    // One access line per request, the errors on stderr, the guest's own output.
    until_logged(&host, &env, "web", "said-by-the-guest");
    let (out, err) = logs(&host, &env, "web");
    assert!(out.contains("\"GET /env/GREETING HTTP/1.1\" 200 "), "{out}");
    assert!(out.contains("\"GET /trap HTTP/1.1\" 500 "), "{out}");
    assert!(err.contains("GET /trap: wasm trap"), "{err}");
    assert!(err.contains("GET /spin: timed out after 2s"), "{err}");
    assert!(err.contains("GET /grow/128: out of memory"), "{err}");
    assert!(
        err.contains("GET /noanswer: the handler returned without a response"),
        "{err}"
    );
    assert_eq!(
        host.ok(&env, &["inspect", "-f", "{{.State.Status}}", "web"])
            .trim(),
        "running"
    );
    host.ok(&env, &["rm", "-f", "web"]);
}

#[test]
fn a_handler_is_reached_by_name_and_calls_out_on_its_network() {
    let Some((env, host, image)) =
        setup("a_handler_is_reached_by_name_and_calls_out_on_its_network")
    else {
        return;
    };
    crate::common::busybox_image(&env, "bb", &[]);
    host.ok(&env, &["network", "create", "edge"]);
    host.ok(
        &env,
        &["run", "-d", "--name", "api", "--network", "edge", &image],
    );
    host.ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            "front",
            "--network",
            "edge",
            "-p",
            "127.0.0.1:18091:8080",
            &image,
        ],
    );
    // A native container reaches the handler by name, on its default port 8080.
    let t0 = Instant::now();
    let out = loop {
        let out = host
            .strata(
                &env,
                &[
                    "run",
                    "--rm",
                    "--network",
                    "edge",
                    "bb",
                    "wget",
                    "-qO-",
                    "http://api:8080/env/FROM_IMAGE",
                ],
            )
            .output()
            .unwrap();
        if out.status.success() || t0.elapsed() > Duration::from_secs(10) {
            break out;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(String::from_utf8_lossy(&out.stdout), "yes", "{out:?}");
    // One handler calls the other by name (wasi:http/outgoing-handler).
    host.inside(|| {
        assert_eq!(
            first_get("127.0.0.1:18091", "/fetch/api:8080/state"),
            (200, "200 1".into())
        );
    });
    host.ok(&env, &["rm", "-f", "api", "front"]);
    host.ok(&env, &["network", "rm", "edge"]);
    assert_eq!(host.leftovers(), Vec::<String>::new());
}

#[test]
fn stop_drains_requests_in_flight() {
    let Some((env, host, image)) = setup("stop_drains_requests_in_flight") else {
        return;
    };
    serve_on_host(&host, &env, &image, &["--http-max-instances", "4"]);
    // A slow request in flight when stop comes is answered; the service then exits 0.
    let slow = std::thread::scope(|s| {
        let slow = s.spawn(|| host.inside(|| get("127.0.0.1:8080", "/sleep/3000")));
        // Long enough for the request to be in the guest, even on a loaded machine.
        std::thread::sleep(Duration::from_millis(1000));
        let t0 = Instant::now();
        host.ok(&env, &["stop", "-t", "10", "web"]);
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(1500),
            "stop did not wait: {took:?}"
        );
        assert!(took < Duration::from_secs(9), "stop took {took:?}");
        slow.join().unwrap()
    });
    assert_eq!(slow, (200, "slept".into()));
    assert_eq!(
        host.ok(&env, &["inspect", "-f", "{{.State.ExitCode}}", "web"])
            .trim(),
        "0"
    );
    // Gone: nothing listens any more.
    host.inside(|| assert!(TcpStream::connect("127.0.0.1:8080").is_err()));
    // A request that outlives the grace period is ended by the kill.
    host.ok(&env, &["start", "web"]);
    host.inside(|| assert_eq!(first_get("127.0.0.1:8080", "/"), (200, "probe".into())));
    std::thread::scope(|s| {
        let slow =
            s.spawn(|| host.inside(|| request("127.0.0.1:8080", "GET /sleep/60000 HTTP/1.1", b"")));
        std::thread::sleep(Duration::from_millis(300));
        let t0 = Instant::now();
        host.ok(&env, &["stop", "-t", "1", "web"]);
        assert!(t0.elapsed() < Duration::from_secs(6), "{:?}", t0.elapsed());
        // The connection ends without an answer, or with a 500.
        match slow.join().unwrap() {
            Ok((status, _)) => assert!(status == 500 || status == 0, "{status}"),
            Err(_) => {}
        }
    });
    assert_eq!(
        host.ok(&env, &["inspect", "-f", "{{.State.ExitCode}}", "web"])
            .trim(),
        "137"
    );
    host.ok(&env, &["rm", "web"]);
}

#[test]
fn hostile_clients_and_floods_are_bounded() {
    let Some((env, host, image)) = setup("hostile_clients_and_floods_are_bounded") else {
        return;
    };
    serve_on_host(
        &host,
        &env,
        &image,
        &["--http-max-instances", "8", "--http-timeout", "3s"],
    );
    let addr = "127.0.0.1:8080";
    host.inside(|| {
        // Malformed request lines: a 400, and the service goes on.
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"NOT HTTP AT ALL\r\n\r\n").unwrap();
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        assert!(text.starts_with("HTTP/1.1 400"), "{text:?}");
        // A head past 64 KiB: 431 and the connection closed at once (the client, still
        // writing, may see the reset instead), never buffered without end.
        let huge = format!("GET / HTTP/1.1\r\nx-big: {}", "a".repeat(100 * 1024));
        let t0 = Instant::now();
        let (status, _) = request(addr, &huge, b"").unwrap_or((0, Vec::new()));
        assert!(status == 431 || status == 0, "{status}");
        assert!(t0.elapsed() < Duration::from_secs(5));
        // Bodies are streamed to the guest up to 64 MiB; past it, its read fails.
        assert_eq!(
            request(addr, "POST /count HTTP/1.1", &[7u8; 100_000]).unwrap(),
            (200, b"100000 closed".to_vec())
        );
        let (status, body) =
            request(addr, "POST /count HTTP/1.1", &vec![7u8; (64 << 20) + 4096]).unwrap();
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, 200, "{body}");
        let (n, ended) = body.split_once(' ').unwrap();
        assert!(n.parse::<usize>().unwrap() <= 64 << 20, "{body}");
        assert_eq!(ended, "failed", "{body}");
        // 100 concurrent requests, 8 instances at a time: all succeed.
        let ok = std::thread::scope(|s| {
            let clients: Vec<_> = (0..100)
                .map(|_| s.spawn(|| request(addr, "GET /state HTTP/1.1", b"")))
                .collect();
            clients
                .into_iter()
                .map(|c| c.join().unwrap())
                .filter(|r| matches!(r, Ok((200, b)) if b == b"1"))
                .count()
        });
        assert_eq!(ok, 100);
        // Slow clients that send half a head hold no instance; after them, it serves.
        let slow: Vec<TcpStream> = (0..50)
            .map(|_| {
                let mut s = TcpStream::connect(addr).unwrap();
                s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
                s
            })
            .collect();
        assert_eq!(get(addr, "/"), (200, "probe".into()));
        drop(slow);
        assert_eq!(get(addr, "/"), (200, "probe".into()));
    });
    host.ok(&env, &["rm", "-f", "web"]);
}

#[test]
fn what_is_not_a_service_fails_at_run() {
    let env = Env::new();
    let image = env.wasm_image(&http_probe(), "hp", true);
    // A handler without a network to serve on.
    let err = env.fails(&["run", "-d", "--name", "web", &image]);
    assert!(err.contains("needs a network to serve on"), "{err}");
    // A component that is neither a command nor a handler: a clear error at run.
    let (_, p2) = crate::common::probe();
    let cmd = env.wasm_image(&p2, "cmd", true);
    assert_eq!(
        env.ok(&["run", "--rm", &cmd, "exit", "0"]),
        "exiting with 0\n"
    );
    // An empty component: the magic and the component layer's version, no exports.
    let bad = env.path("empty.wasm");
    std::fs::write(&bad, b"\0asm\x0d\x00\x01\x00").unwrap();
    let err = env.fails(&[
        "run",
        "--rm",
        "--network",
        "host",
        &env.wasm_image(&bad, "bad", true),
    ]);
    assert!(
        err.contains("neither a WASI command nor a wasi:http handler"),
        "{err}"
    );
}
