//! The `strata` command: parse flags, open the store, call the library, map errors to
//! docker's exit codes. Each command lives in `cli/<command>.rs`.

mod api;
mod cli;
mod compose;
mod format;
mod progress;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = match cli::Cli::try_parse() {
        Ok(args) => args,
        Err(e) => {
            let code = if e.use_stderr() { 125 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match args.run() {
        Ok(code) => code,
        Err(err) => {
            // A closed pipe (`strata images | head`) is not a failure.
            if err.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            let chain: Vec<String> = err.chain().map(|c| c.to_string()).collect();
            eprintln!("Error: {}", dedup_chain(&chain));
            ExitCode::from(1)
        }
    }
}

/// Join an error chain into one line, dropping links that only repeat their cause.
fn dedup_chain(chain: &[String]) -> String {
    let mut out: Vec<&str> = Vec::new();
    for (i, msg) in chain.iter().enumerate() {
        if chain
            .get(i + 1)
            .is_some_and(|next| msg.ends_with(next.as_str()) && msg != next)
        {
            out.push(
                msg.strip_suffix(chain[i + 1].as_str())
                    .unwrap_or(msg)
                    .trim_end_matches([':', ' ']),
            );
            continue;
        }
        out.push(msg);
    }
    out.join(": ")
}
