//! hello-wasm: the example Wasm guest. It shows what a program sees inside a Strata Wasm
//! container: its arguments, its environment and its root directory, which it can also write.
//!
//!     hello-wasm [ARGS...]         greet, print the args, the env and `/`, write /tmp/hello.txt
//!     hello-wasm cat PATH          print a file
//!     hello-wasm write PATH TEXT   write TEXT to PATH
//!     hello-wasm exit N            exit with status N
//!
//! The same source builds for `wasm32-wasip1` (a core module) and `wasm32-wasip2` (a component).

use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let words: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    let result = match words.as_slice() {
        ["cat", path] => cat(path),
        ["write", path, text] => write(path, text),
        ["exit", n] => status(n),
        _ => greet(&args),
    };
    let code = result.unwrap_or_else(|e| {
        eprintln!("hello-wasm: {e}");
        1
    });
    exit(code);
}

fn greet(args: &[String]) -> Result<i32, String> {
    println!("hello from wasm");
    println!("args: {args:?}");
    let mut env: Vec<(String, String)> = std::env::vars().collect();
    env.sort();
    for (k, v) in env {
        println!("env: {k}={v}");
    }
    let mut names: Vec<String> = std::fs::read_dir("/")
        .and_then(|dir| {
            dir.map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect()
        })
        .map_err(|e: std::io::Error| format!("ls /: {e}"))?;
    names.sort();
    println!("ls /: {}", names.join(" "));
    // Writes land in the container's own layer: `strata diff` lists them and `strata commit`
    // keeps them, while the image stays as it was.
    std::fs::create_dir_all("/tmp").map_err(|e| format!("mkdir /tmp: {e}"))?;
    std::fs::write("/tmp/hello.txt", "written by hello-wasm")
        .map_err(|e| format!("write /tmp/hello.txt: {e}"))?;
    let back = std::fs::read_to_string("/tmp/hello.txt")
        .map_err(|e| format!("read /tmp/hello.txt: {e}"))?;
    println!("wrote /tmp/hello.txt: {back}");
    Ok(0)
}

fn cat(path: &str) -> Result<i32, String> {
    let data = std::fs::read(path).map_err(|e| format!("cat {path}: {e}"))?;
    std::io::stdout()
        .write_all(&data)
        .map_err(|e| format!("cat: stdout: {e}"))?;
    Ok(0)
}

/// Write `text` to `path`, creating its parent directories (an image may have no /etc).
fn write(path: &str, text: &str) -> Result<i32, String> {
    if let Some(parent) = std::path::Path::new(path).parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("mkdir {}: {e}", parent.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("write {path}: {e}"))?;
    println!("ok");
    Ok(0)
}

fn status(n: &str) -> Result<i32, String> {
    let code = n.parse().map_err(|e| format!("exit {n}: {e}"))?;
    println!("exiting with {code}");
    Ok(code)
}

/// Flush stdout and exit with `code`.
fn exit(code: i32) -> ! {
    let _ = std::io::stdout().flush();
    // Rust std's `process::exit` on wasm32-wasip2 calls the boolean `wasi:cli/exit.exit`, so
    // any non-zero code would reach the host as 1; `exit-with-code` (WASI 0.2.12) keeps it.
    #[cfg(all(target_os = "wasi", target_env = "p2"))]
    wasip2::cli::exit::exit_with_code(code as u8);
    std::process::exit(code)
}
