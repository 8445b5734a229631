//! The probe: the guest Strata's tests and benchmarks run (not an example; that is
//! `examples/hello-wasm`). One command per behaviour they check, chosen by argv[1];
//! see README.md. Builds for `wasm32-wasip1` (core module) and `wasm32-wasip2` (component).

use std::io::{self, BufRead, Read, Write};
use std::path::Path;
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let cmd = args.get(1).map(String::as_str).unwrap_or("hello");
    let rest = if args.len() > 2 { &args[2..] } else { &[][..] };

    let code = match cmd {
        "hello" => hello(&args),
        "exit" => cmd_exit(rest),
        "cat" => cmd_cat(rest),
        "write" => cmd_write(rest),
        "ls" => cmd_ls(rest),
        "rm" => cmd_rm(rest),
        "escape" => cmd_escape(),
        "loop" => cmd_loop(),
        "files" => cmd_files(rest),
        "trap" => cmd_trap(),
        "oom" => cmd_oom(),
        "cat-stdin" => cmd_cat_stdin(),
        "sleep-print" => cmd_sleep_print(),
        "sleep" => cmd_sleep(rest),
        "ticks" => cmd_ticks(rest),
        "await" => cmd_await(rest),
        "poll" => cmd_poll(rest),
        "connect" => cmd_connect(rest),
        "serve" => cmd_serve(rest),
        "udp-echo" => cmd_udp_echo(rest),
        other => {
            eprintln!("probe: unknown command {other:?}");
            eprintln!(
                "usage: probe [hello | exit N | cat PATH | write PATH TEXT | ls PATH | rm PATH | \
                 escape | loop | files N M | trap | oom | cat-stdin | sleep-print | sleep SECS | \
                 poll MS TARGET... | connect HOST:PORT]"
            );
            2
        }
    };
    exit(code);
}

/// Flush stdio and exit with `code`, keeping the code on every target.
fn exit(code: i32) -> ! {
    let _ = io::stdout().flush();
    let _ = io::stderr().flush();
    #[cfg(all(target_os = "wasi", target_env = "p2"))]
    {
        // std's process::exit on wasip2 uses the boolean `wasi:cli/exit.exit`
        // (any non-zero code becomes 1); call `exit-with-code` (WASI 0.2.12).
        wasip2::cli::exit::exit_with_code(code as u8);
        // Not reached on a host that implements exit-with-code.
    }
    std::process::exit(code)
}

/// Print an error to stderr and return exit status 1.
fn fail(msg: impl std::fmt::Display) -> i32 {
    eprintln!("probe: {msg}");
    1
}

fn need<'a>(rest: &'a [String], n: usize, usage: &str) -> Result<&'a [String], i32> {
    if rest.len() < n {
        eprintln!("usage: probe {usage}");
        Err(2)
    } else {
        Ok(rest)
    }
}

fn sorted_listing(path: &str) -> io::Result<Vec<String>> {
    let mut names = std::fs::read_dir(path)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<io::Result<Vec<_>>>()?;
    names.sort();
    Ok(names)
}

fn hello(args: &[String]) -> i32 {
    println!("hello from wasm");
    println!("args: {args:?}");
    let mut env: Vec<(String, String)> = std::env::vars().collect();
    env.sort();
    for (k, v) in env {
        println!("env: {k}={v}");
    }
    match sorted_listing("/") {
        Ok(names) => println!("ls /: {}", names.join(" ")),
        Err(e) => return fail(format_args!("ls /: {e}")),
    }
    if let Err(e) = std::fs::create_dir_all("/tmp") {
        return fail(format_args!("mkdir /tmp: {e}"));
    }
    if let Err(e) = std::fs::write("/tmp/hello.txt", "written by the probe") {
        return fail(format_args!("write /tmp/hello.txt: {e}"));
    }
    match std::fs::read_to_string("/tmp/hello.txt") {
        Ok(s) => println!("wrote /tmp/hello.txt: {s}"),
        Err(e) => return fail(format_args!("read /tmp/hello.txt: {e}")),
    }
    0
}

fn cmd_exit(rest: &[String]) -> i32 {
    let n = match rest.first().map(|s| s.parse::<i32>()) {
        Some(Ok(n)) => n,
        Some(Err(e)) => return fail(format_args!("exit: bad status {:?}: {e}", rest[0])),
        None => 0,
    };
    println!("exiting with {n}");
    n
}

fn cmd_cat(rest: &[String]) -> i32 {
    let rest = match need(rest, 1, "cat PATH") {
        Ok(r) => r,
        Err(c) => return c,
    };
    match std::fs::read(&rest[0]) {
        Ok(data) => {
            let mut out = io::stdout().lock();
            if let Err(e) = out.write_all(&data).and_then(|_| out.flush()) {
                return fail(format_args!("cat: stdout: {e}"));
            }
            0
        }
        Err(e) => fail(format_args!("cat {}: {e}", rest[0])),
    }
}

fn cmd_write(rest: &[String]) -> i32 {
    let rest = match need(rest, 2, "write PATH TEXT") {
        Ok(r) => r,
        Err(c) => return c,
    };
    let path = Path::new(&rest[0]);
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if let Err(e) = std::fs::create_dir_all(parent) {
            return fail(format_args!("write: mkdir {}: {e}", parent.display()));
        }
    }
    match std::fs::write(path, &rest[1]) {
        Ok(()) => {
            println!("ok");
            0
        }
        Err(e) => fail(format_args!("write {}: {e}", rest[0])),
    }
}

fn cmd_ls(rest: &[String]) -> i32 {
    let path = rest.first().map(String::as_str).unwrap_or("/");
    match sorted_listing(path) {
        Ok(names) => {
            println!("{}", names.join(" "));
            0
        }
        Err(e) => fail(format_args!("ls {path}: {e}")),
    }
}

fn cmd_rm(rest: &[String]) -> i32 {
    let rest = match need(rest, 1, "rm PATH") {
        Ok(r) => r,
        Err(c) => return c,
    };
    match std::fs::remove_file(&rest[0]) {
        Ok(()) => 0,
        Err(e) => fail(format_args!("rm {}: {e}", rest[0])),
    }
}

// ---------------------------------------------------------------------------
// escape: attempts to reach the host file system outside the container root.

#[cfg(target_os = "wasi")]
fn symlink(target: &str, link: &str) -> io::Result<()> {
    // std's wasi symlink helper is unstable; wasi-libc's symlink() resolves
    // `link` against the preopens like every other path function.
    use std::ffi::{c_char, c_int, CString};
    extern "C" {
        fn symlink(target: *const c_char, link: *const c_char) -> c_int;
    }
    let t = CString::new(target)?;
    let l = CString::new(link)?;
    // SAFETY: two valid NUL-terminated strings.
    if unsafe { symlink(t.as_ptr(), l.as_ptr()) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(unix)]
fn symlink(target: &str, link: &str) -> io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

fn summarize(data: &[u8]) -> String {
    let s = String::from_utf8_lossy(data);
    let first = s.lines().next().unwrap_or("");
    let first: String = first.chars().take(60).collect();
    format!("{} bytes: {first:?}", data.len())
}

fn cmd_escape() -> i32 {
    let canary = match std::env::var("CANARY") {
        Ok(c) if c.starts_with('/') && c.len() > 1 => c,
        _ => {
            eprintln!("escape: set CANARY to an absolute host path (e.g. /var/tmp/x/canary/file)");
            return 2;
        }
    };
    let canary_dir = Path::new(&canary)
        .parent()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|| "/".into());
    // Links left by an earlier run would make the symlink attempts fail with
    // EEXIST; remove them (only the links themselves) so reruns are alike.
    for link in ["/esc", "/abs", "/tmp/deep", "/hardlink", "/stolen"] {
        let _ = std::fs::remove_file(link);
    }
    let up = "../../../../../..";
    let esc_canary = format!("/esc{canary}");
    let esc_dir = format!("/esc{canary_dir}");

    type Attempt = (String, Box<dyn Fn() -> io::Result<String>>);
    let read = |p: String| -> Attempt {
        (format!("read {p}"), Box::new(move || std::fs::read(&p).map(|d| summarize(&d))))
    };
    let write = |p: String, text: &'static str| -> Attempt {
        (
            format!("write {p}"),
            Box::new(move || std::fs::write(&p, text).map(|_| String::new())),
        )
    };
    let ls = |p: String| -> Attempt {
        (format!("ls {p}"), Box::new(move || sorted_listing(&p).map(|n| n.join(" "))))
    };
    let mut attempts: Vec<Attempt> = vec![
        read(canary.clone()),
        read(format!("{up}{canary}")),
        read(format!("/{up}{canary}")),
        ls("/..".into()),
        ls(format!("/{up}{canary_dir}")),
        (
            format!("symlink /esc -> {up}"),
            Box::new(move || symlink(up, "/esc").map(|_| String::new())),
        ),
        read(esc_canary.clone()),
        ls(esc_dir.clone()),
        {
            let d = canary_dir.clone();
            (
                format!("symlink /abs -> {d}"),
                Box::new(move || symlink(&d, "/abs").map(|_| String::new())),
            )
        },
        write("/abs/pwned".into(), "pwned"),
        read(format!("/abs/{}", Path::new(&canary).file_name().unwrap().to_string_lossy())),
        write(canary.clone(), "pwned"),
        write(esc_canary.clone(), "pwned"),
        write(format!("{esc_dir}/pwned"), "pwned"),
        write(format!("{up}{canary_dir}/pwned"), "pwned"),
        {
            let (from, to) = (esc_canary.clone(), "/stolen".to_string());
            (
                format!("rename {from} -> {to}"),
                Box::new(move || std::fs::rename(&from, &to).map(|_| String::new())),
            )
        },
        {
            let to = format!("{esc_dir}/pwned-rename");
            (
                format!("rename /tmp/escape-src -> {to}"),
                Box::new(move || {
                    std::fs::create_dir_all("/tmp")?;
                    std::fs::write("/tmp/escape-src", "pwned")?;
                    std::fs::rename("/tmp/escape-src", &to).map(|_| String::new())
                }),
            )
        },
        {
            let from = esc_canary.clone();
            (
                format!("hard_link {from} -> /hardlink"),
                Box::new(move || std::fs::hard_link(&from, "/hardlink").map(|_| String::new())),
            )
        },
        read("/hardlink".into()),
        {
            let d = format!("{esc_dir}/pwned-dir");
            (format!("mkdir {d}"), Box::new(move || std::fs::create_dir(&d).map(|_| String::new())))
        },
        {
            // A relative symlink created deeper in the tree, climbing past the root.
            (
                format!("symlink /tmp/deep -> ../{up}{canary_dir}"),
                Box::new(move || {
                    std::fs::create_dir_all("/tmp")?;
                    symlink(&format!("../{up}{canary_dir}"), "/tmp/deep").map(|_| String::new())
                }),
            )
        },
        write("/tmp/deep/pwned".into(), "pwned"),
        {
            let p = esc_canary.clone();
            (format!("rm {p}"), Box::new(move || std::fs::remove_file(&p).map(|_| String::new())))
        },
    ];

    for (n, (what, f)) in attempts.drain(..).enumerate() {
        let n = n + 1;
        // The description goes to stderr so stdout keeps the exact
        // `attempt <n>: <ok|err: message>` format.
        eprintln!("attempt {n}: {what}");
        match f() {
            Ok(detail) => {
                println!("attempt {n}: ok");
                if !detail.is_empty() {
                    eprintln!("attempt {n}: ok: {detail}");
                }
            }
            Err(e) => println!("attempt {n}: err: {e}"),
        }
        let _ = io::stdout().flush();
    }
    0
}

// ---------------------------------------------------------------------------

fn cmd_loop() -> i32 {
    println!("looping");
    let _ = io::stdout().flush();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    loop {
        // xorshift: pure computation, no host calls.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x = std::hint::black_box(x);
    }
}

fn cmd_files(rest: &[String]) -> i32 {
    let rest = match need(rest, 2, "files N M") {
        Ok(r) => r,
        Err(c) => return c,
    };
    let (n, m) = match (rest[0].parse::<usize>(), rest[1].parse::<usize>()) {
        (Ok(n), Ok(m)) => (n, m),
        _ => return fail("files: N and M must be non-negative integers"),
    };
    let run = || -> io::Result<()> {
        std::fs::create_dir_all("/bench")?;
        let block: Vec<u8> = (0..1024u32).map(|i| b'a' + (i % 26) as u8).collect();
        for i in 0..n {
            let p = format!("/bench/in-{i}");
            if std::fs::metadata(&p).is_err() {
                std::fs::write(&p, &block)?;
            }
        }
        let mut total = 0usize;
        let mut buf = Vec::with_capacity(1024);
        for i in 0..n {
            buf.clear();
            std::fs::File::open(format!("/bench/in-{i}"))?.read_to_end(&mut buf)?;
            total += buf.len();
        }
        std::hint::black_box(total);
        for i in 0..m {
            std::fs::write(format!("/bench/out-{i}"), &block)?;
        }
        Ok(())
    };
    match run() {
        Ok(()) => {
            println!("read {n} wrote {m}");
            0
        }
        Err(e) => fail(format_args!("files: {e}")),
    }
}

fn cmd_trap() -> i32 {
    println!("trapping");
    let _ = io::stdout().flush();
    #[cfg(target_arch = "wasm32")]
    std::arch::wasm32::unreachable();
    #[cfg(not(target_arch = "wasm32"))]
    std::process::abort();
}

fn cmd_oom() -> i32 {
    const MIB: usize = 1 << 20;
    // Reserve the outer vector up front (4 GiB / 1 MiB entries) so that only
    // the 1 MiB chunks can fail; failures are detected with try_reserve
    // instead of aborting in the global allocation error handler.
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    if chunks.try_reserve_exact(4096).is_err() {
        eprintln!("oom: allocated 0 MiB before allocation failed");
        return 0;
    }
    loop {
        let mut chunk: Vec<u8> = Vec::new();
        if chunk.try_reserve_exact(MIB).is_err() {
            break;
        }
        // Touch every byte so the pages are really committed.
        chunk.resize(MIB, 1);
        chunks.push(std::hint::black_box(chunk));
        if chunks.len() == chunks.capacity() && chunks.try_reserve(chunks.len()).is_err() {
            break;
        }
    }
    eprintln!("oom: allocated {} MiB before allocation failed", chunks.len());
    0
}

fn cmd_cat_stdin() -> i32 {
    let mut stdin = io::stdin().lock();
    let mut stdout = io::stdout().lock();
    match io::copy(&mut stdin, &mut stdout).and_then(|_| stdout.flush()) {
        Ok(()) => 0,
        Err(e) => fail(format_args!("cat-stdin: {e}")),
    }
}

fn cmd_sleep_print() -> i32 {
    for i in 1..=3 {
        println!("tick {i}");
        let _ = io::stdout().flush();
        std::thread::sleep(Duration::from_secs(1));
    }
    0
}

/// `ticks MS COUNT`: `tick i` on stdout and `tock i` on stderr every MS milliseconds,
/// COUNT times (0: for ever), then exit 0. A service's output, for the lifecycle tests.
fn cmd_ticks(rest: &[String]) -> i32 {
    let numbers: Vec<u64> = rest.iter().filter_map(|s| s.parse().ok()).collect();
    let [ms, count] = numbers[..] else {
        return fail(format_args!("ticks: expected MS COUNT"));
    };
    let mut i = 0;
    while count == 0 || i < count {
        println!("tick {i}");
        eprintln!("tock {i}");
        let _ = io::stdout().flush();
        std::thread::sleep(Duration::from_millis(ms));
        i += 1;
    }
    0
}

/// `await PATH`: write `/tmp/awaiting`, then wait (polling, up to a minute) for PATH to
/// appear, print `got: ` and its content, exit 0. For exec into a running guest.
fn cmd_await(rest: &[String]) -> i32 {
    let rest = match need(rest, 1, "await PATH") {
        Ok(r) => r,
        Err(c) => return c,
    };
    let _ = std::fs::create_dir_all("/tmp");
    if let Err(e) = std::fs::write("/tmp/awaiting", "yes") {
        return fail(format_args!("write /tmp/awaiting: {e}"));
    }
    for _ in 0..1200 {
        if let Ok(text) = std::fs::read_to_string(&rest[0]) {
            println!("got: {text}");
            return 0;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    fail(format_args!("await {}: it never came", rest[0]))
}

fn cmd_sleep(rest: &[String]) -> i32 {
    let Some(secs) = rest.first().and_then(|s| s.parse::<f64>().ok()) else {
        return fail(format_args!("sleep: expected a number of seconds"));
    };
    println!("sleeping");
    let _ = io::stdout().flush();
    std::thread::sleep(Duration::from_secs_f64(secs));
    println!("slept");
    0
}

/// wasi-libc's `poll` (`<poll.h>`): what C programs use to wait on descriptors.
#[repr(C)]
struct PollFd {
    fd: i32,
    events: i16,
    revents: i16,
}

const POLLIN: i16 = 0x1;
const POLLOUT: i16 = 0x2;

extern "C" {
    fn poll(fds: *mut PollFd, nfds: usize, timeout: i32) -> i32;
}

fn cmd_poll(rest: &[String]) -> i32 {
    use std::os::fd::AsRawFd;
    let Some(Ok(ms)) = rest.first().map(|s| s.parse::<i32>()) else {
        return fail(format_args!("poll: expected MS TARGET..."));
    };
    // Each target: `stdin` (for reading), `stdout` (for writing) or a file (for reading).
    let mut files = Vec::new();
    let mut fds = Vec::new();
    for target in &rest[1..] {
        let (fd, events) = match target.as_str() {
            "stdin" => (0, POLLIN),
            "stdout" => (1, POLLOUT),
            path => match std::fs::File::open(path) {
                Ok(f) => {
                    let fd = f.as_raw_fd();
                    files.push(f);
                    (fd, POLLIN)
                }
                Err(e) => return fail(format_args!("poll: {path}: {e}")),
            },
        };
        fds.push(PollFd { fd, events, revents: 0 });
    }
    let ready = unsafe { poll(fds.as_mut_ptr(), fds.len(), ms) };
    if ready < 0 {
        return fail(format_args!("poll: {}", io::Error::last_os_error()));
    }
    let flags: Vec<&str> = fds
        .iter()
        .map(|f| match (f.revents & POLLIN != 0, f.revents & POLLOUT != 0) {
            (true, _) => "in",
            (_, true) => "out",
            _ => "-",
        })
        .collect();
    println!("poll {ready} {}", flags.join(" "));
    0
}

/// `serve PORT COUNT`: listens on 0.0.0.0:PORT and answers COUNT connections with one line.
fn cmd_serve(rest: &[String]) -> i32 {
    let rest = match need(rest, 2, "serve PORT COUNT") {
        Ok(r) => r,
        Err(code) => return code,
    };
    let (Ok(port), Ok(count)) = (rest[0].parse::<u16>(), rest[1].parse::<u32>()) else {
        return fail(format_args!("serve: expected PORT COUNT"));
    };
    let listener = match std::net::TcpListener::bind(("0.0.0.0", port)) {
        Ok(l) => l,
        Err(e) => return fail(format_args!("serve: bind 0.0.0.0:{port}: {e}")),
    };
    println!("listening on {port}");
    let _ = io::stdout().flush();
    for _ in 0..count {
        match listener.accept() {
            Ok((mut conn, _)) => {
                let _ = conn.write_all(b"hello from wasm\n");
            }
            Err(e) => return fail(format_args!("serve: accept: {e}")),
        }
    }
    0
}

/// `udp-echo PORT`: binds 0.0.0.0:PORT (UDP), answers the first datagram with
/// `hello from wasm: ` and its text, and exits 0.
fn cmd_udp_echo(rest: &[String]) -> i32 {
    let Some(port) = rest.first().and_then(|p| p.parse::<u16>().ok()) else {
        return fail(format_args!("udp-echo: expected PORT"));
    };
    let socket = match std::net::UdpSocket::bind(("0.0.0.0", port)) {
        Ok(s) => s,
        Err(e) => return fail(format_args!("udp-echo: bind 0.0.0.0:{port}: {e}")),
    };
    println!("listening on {port}/udp");
    let _ = io::stdout().flush();
    let mut buf = [0u8; 512];
    match socket.recv_from(&mut buf) {
        Ok((n, from)) => {
            let mut reply = b"hello from wasm: ".to_vec();
            reply.extend_from_slice(&buf[..n]);
            match socket.send_to(&reply, from) {
                Ok(_) => 0,
                Err(e) => fail(format_args!("udp-echo: send to {from}: {e}")),
            }
        }
        Err(e) => fail(format_args!("udp-echo: receive: {e}")),
    }
}

fn cmd_connect(rest: &[String]) -> i32 {
    let Some(addr) = rest.first() else {
        return fail(format_args!("connect: expected HOST:PORT"));
    };
    let mut stream = match std::net::TcpStream::connect(addr.as_str()) {
        Ok(s) => s,
        Err(e) => return fail(format_args!("connect: {addr}: {e}")),
    };
    let mut line = String::new();
    match io::BufReader::new(&mut stream).read_line(&mut line) {
        Ok(_) => {
            print!("received: {line}");
            0
        }
        Err(e) => fail(format_args!("connect: read: {e}")),
    }
}
