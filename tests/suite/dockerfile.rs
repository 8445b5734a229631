//! `strata dockerfile parse --json`: the CLI prints the builder's syntax tree, and errors name
//! the file and line.

use crate::common::Env;

#[test]
fn parse_json_prints_the_golden_trees() {
    let env = Env::new();
    let fixtures =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("builder/tests/fixtures/dockerfile");
    let mut checked = 0;
    for case in std::fs::read_dir(&fixtures).unwrap() {
        let case = case.unwrap().path();
        let dockerfile = case.join("Dockerfile");
        let Ok(expected) = std::fs::read(case.join("expected.json")) else {
            continue;
        };
        let out = env.ok(&[
            "dockerfile",
            "parse",
            "--json",
            dockerfile.to_str().unwrap(),
        ]);
        let got: serde_json::Value = serde_json::from_str(&out).unwrap();
        let want: serde_json::Value = serde_json::from_slice(&expected).unwrap();
        assert_eq!(got, want, "{}", case.display());
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} fixtures");
}

#[test]
fn parse_errors_name_the_line() {
    let env = Env::new();
    let file = env.path("Dockerfile");
    std::fs::write(
        &file,
        "FROM busybox\nRUN echo ok\nRUN <<EOF\necho never closed\n",
    )
    .unwrap();
    let err = env.fails(&["dockerfile", "parse", "--json", file.to_str().unwrap()]);
    assert!(err.contains("Dockerfile:3:"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
