//! Golden tests of the Dockerfile parser.
//!
//! * `fixtures/dockerfile/<case>/Dockerfile` is parsed and its syntax tree
//!   (`ast_json`) must equal `expected.json`. When the case also has
//!   `stages.txt`, the typed instructions must parse, and each line of
//!   that file must appear in their debug rendering.
//! * `fixtures/dockerfile-negative/<case>/Dockerfile` must fail, in the
//!   parser or in the instruction layer, with an error containing each line
//!   of `expected_error` (which names the file and line, e.g.
//!   `Dockerfile:3: unterminated heredoc`).
//!
//! `STRATA_UPDATE_GOLDEN=1` rewrites the `expected.json` files (review the
//! diff: they are meant to follow BuildKit, not this implementation).

use std::fs;
use std::path::{Path, PathBuf};

use strata_builder::dockerfile::{ast_json, instructions, parse};

fn cases(dir: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir);
    let mut out: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    out.sort();
    out
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn golden_ast() {
    let update = std::env::var_os("STRATA_UPDATE_GOLDEN").is_some();
    let cases = cases("dockerfile");
    assert!(cases.len() >= 15, "expected at least 15 golden cases");
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let text = read(&case.join("Dockerfile"));
        let df = match parse("Dockerfile", &text) {
            Ok(df) => df,
            Err(e) => {
                failures.push(format!("{name}: parse failed: {e}"));
                continue;
            }
        };
        let got = ast_json(&df);
        let expected_path = case.join("expected.json");
        if update {
            let mut s = serde_json::to_string_pretty(&got).unwrap();
            s.push('\n');
            fs::write(&expected_path, s).unwrap();
        } else {
            let expected: serde_json::Value = serde_json::from_str(&read(&expected_path))
                .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()));
            if got != expected {
                failures.push(format!(
                    "{name}: AST differs\n--- expected\n{}\n--- got\n{}",
                    serde_json::to_string_pretty(&expected).unwrap(),
                    serde_json::to_string_pretty(&got).unwrap()
                ));
            }
        }
        let stages_path = case.join("stages.txt");
        if stages_path.exists() {
            match instructions::parse_stages(&df) {
                Ok(stages) => {
                    let rendered = format!("{stages:?}");
                    for want in read(&stages_path).lines().filter(|l| !l.trim().is_empty()) {
                        if !rendered.contains(want) {
                            failures.push(format!(
                                "{name}: typed instructions lack {want:?}\n{rendered}"
                            ));
                        }
                    }
                }
                Err(e) => failures.push(format!("{name}: instructions failed: {e}")),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn negative_fixtures() {
    let cases = cases("dockerfile-negative");
    assert!(!cases.is_empty());
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let text = read(&case.join("Dockerfile"));
        let result =
            parse("Dockerfile", &text).and_then(|df| instructions::parse_stages(&df).map(|_| ()));
        let err = match result {
            Ok(()) => {
                failures.push(format!("{name}: parsed without error"));
                continue;
            }
            Err(e) => e.to_string(),
        };
        for want in read(&case.join("expected_error"))
            .lines()
            .filter(|l| !l.trim().is_empty())
        {
            if !err.contains(want) {
                failures.push(format!("{name}: error {err:?} lacks {want:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
