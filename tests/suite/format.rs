//! `--format` templates (Go's text/template, with docker's functions and its `table`
//! directive), end to end through the `strata` binary.

use crate::common::Env;
use serde_json::Value;

/// A rootfs imported as `busybox` with two variables, created at a fixed moment; its id.
fn import(env: &Env) -> String {
    let (tar, _) = env.rootfs_tar("rootfs");
    let out = env
        .cmd(&[
            "import",
            "-c",
            "ENV A=1",
            "-c",
            "ENV B=\"two words\"",
            tar.to_str().unwrap(),
            "busybox",
        ])
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Run and require failure; (stdout, stderr).
fn fails(env: &Env, args: &[&str]) -> (String, String) {
    let out = env.run(args);
    assert!(!out.status.success(), "strata {args:?} should have failed");
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn inspect_runs_go_templates() {
    let env = Env::new();
    let id = import(&env);
    let v: Value = serde_json::from_str(&env.ok(&["inspect", "busybox"])).unwrap();
    let layers = v[0]["RootFS"]["Layers"].as_array().unwrap();
    let layer = layers[0].as_str().unwrap();
    assert!(layer.starts_with("sha256:"), "{layer}");
    let inspect = |format: &str| env.ok(&["inspect", "-f", format, "busybox"]);

    assert_eq!(inspect("{{index .RootFS.Layers 0}}"), format!("{layer}\n"));
    assert_eq!(
        inspect("{{range .Config.Env}}{{.}};{{end}}"),
        "A=1;B=two words;\n"
    );
    assert_eq!(inspect("{{.Id}}"), format!("{id}\n"));
    assert_eq!(inspect("{{.Config.Env}}"), "[A=1 B=two words]\n");
    assert_eq!(
        inspect(
            "{{range $i, $e := .Config.Env}}{{if $i}},{{end}}{{index (split $e \"=\") 0}}{{end}}"
        ),
        "A,B\n"
    );
    assert_eq!(
        inspect("{{join .Config.Env \" \" | upper}} {{len .RootFS.Layers}}"),
        format!("A=1 B=TWO WORDS {}\n", layers.len())
    );
    assert_eq!(
        inspect("{{if eq .Os \"linux\" \"wasi\"}}{{.Os | printf \"os=%s\"}}{{end}}"),
        format!("os={}\n", v[0]["Os"].as_str().unwrap())
    );
    // A missing field is no error: docker prints `<no value>` for it.
    assert_eq!(
        inspect("{{.Nope}} {{.Config.Nope}}"),
        "<no value> <no value>\n"
    );
    assert_eq!(
        inspect("{{json .Config.Env}}"),
        "[\"A=1\",\"B=two words\"]\n"
    );

    // A template that does not parse: one line, nothing on stdout, a failure.
    let (out, err) = fails(&env, &["inspect", "-f", "{{range .Config.Env}}", "busybox"]);
    assert_eq!(out, "");
    assert_eq!(
        err,
        "Error: template parsing error: template: 1:3: unexpected EOF\n"
    );
    let (_, err) = fails(&env, &["inspect", "-f", "{{nope .Os}}", "busybox"]);
    assert_eq!(
        err,
        "Error: template parsing error: template: 1:3: function \"nope\" not defined\n"
    );
}

#[test]
fn images_format_tables_and_json() {
    let env = Env::new();
    let id = import(&env);
    env.ok(&["tag", "busybox", "me/app:1.0"]);

    assert_eq!(
        env.ok(&["images", "--format", "table {{.Repository}}\\t{{.Tag}}"]),
        "REPOSITORY   TAG\n\
         busybox      latest\n\
         me/app       1.0\n"
    );
    assert_eq!(
        env.ok(&[
            "images",
            "--format",
            "table {{.ID}}\\t{{.CreatedAt}}",
            "me/app"
        ]),
        format!(
            "IMAGE ID       CREATED AT\n{}   2023-11-14 22:13:20 +0000 UTC\n",
            &id[7..19]
        )
    );
    // `table` alone is the default table.
    assert_eq!(
        env.ok(&["images", "--format", "table"]),
        env.ok(&["images"])
    );

    let v: Value = serde_json::from_str(&env.ok(&["inspect", "busybox"])).unwrap();
    let digest = v[0]["RepoDigests"][0]
        .as_str()
        .unwrap()
        .split_once('@')
        .unwrap()
        .1
        .to_string();
    let field = |name: &str| {
        env.ok(&["images", "--format", &format!("{{{{.{name}}}}}"), "busybox"])
            .trim_end()
            .to_string()
    };
    let (since, size) = (field("CreatedSince"), field("Size"));
    assert!(since.ends_with(" ago"), "{since}");
    let want = serde_json::json!({
        "Containers": "N/A",
        "CreatedAt": "2023-11-14 22:13:20 +0000 UTC",
        "CreatedSince": since,
        "Digest": digest,
        "ID": &id[7..19],
        "Repository": "busybox",
        "SharedSize": "N/A",
        "Size": size,
        "Tag": "latest",
        "UniqueSize": "N/A",
        "VirtualSize": size,
    });
    assert_eq!(
        env.ok(&["images", "--format", "{{json .}}", "busybox"]),
        format!("{want}\n")
    );
    assert_eq!(
        env.ok(&["images", "--format", "json", "busybox"]),
        format!("{want}\n")
    );

    let (out, err) = fails(&env, &["images", "--format", "table {{.ID"]);
    assert_eq!(out, "");
    assert!(
        err.starts_with("Error: template parsing error: ") && err.lines().count() == 1,
        "{err}"
    );
}

#[test]
fn images_format_with_no_images() {
    let env = Env::new();
    assert_eq!(
        env.ok(&["images", "--format", "table {{.ID}}\\t{{.Tag}}"]),
        "IMAGE ID   TAG\n"
    );
    assert_eq!(env.ok(&["images", "--format", "{{.ID}}"]), "");
    let (_, err) = fails(&env, &["images", "--format", "{{if .ID}}"]);
    assert_eq!(
        err,
        "Error: template parsing error: template: 1:3: unexpected EOF\n"
    );
}
