//! `strata build` end to end: Dockerfiles (the fixtures, written inline beside what they
//! check) built against a busybox base on the native backend, a Wasm-only build as an
//! unprivileged user, the cache, history as Docker records it, and interop with podman.

use std::path::{Path, PathBuf};

use crate::common::{self, busybox_image, sh, Env};
use serde_json::Value;

const BASE: &str = "busybox:base";

fn ready(test: &str) -> Option<Env> {
    if !common::need_root(test) || !common::tools(test, &["busybox"]) {
        return None;
    }
    let env = Env::new();
    busybox_image(&env, BASE, &[]);
    Some(env)
}

/// A context directory with these files (the Dockerfile among them).
fn context(env: &Env, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = env.path(name);
    for (path, text) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}

/// `strata build ARGS… CONTEXT`: (exit code, stdout, stderr).
fn build(env: &Env, ctx: &Path, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["build"];
    all.extend(args);
    let c = ctx.display().to_string();
    all.push(&c);
    let out = env.run(&all);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn build_ok(env: &Env, ctx: &Path, args: &[&str]) -> String {
    let (code, out, err) = build(env, ctx, args);
    assert_eq!(code, 0, "build failed:\n{out}{err}");
    err
}

/// The image's config document, read from the store.
fn config(env: &Env, image: &str) -> Value {
    let id = env.ok(&["inspect", "-f", "{{.Id}}", image]);
    let hex = id.trim().trim_start_matches("sha256:");
    serde_json::from_slice(&std::fs::read(env.root().join("blobs/sha256").join(hex)).unwrap())
        .unwrap()
}

fn history(cfg: &Value) -> Vec<(String, bool)> {
    cfg["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["created_by"].as_str().unwrap_or("").to_string(),
                h["empty_layer"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

fn run(env: &Env, image: &str, script: &str) -> String {
    env.ok(&["run", "--rm", image, "sh", "-c", script])
}

fn blobs(env: &Env) -> usize {
    std::fs::read_dir(env.root().join("blobs/sha256"))
        .unwrap()
        .count()
}

#[test]
fn classic_shape_history_and_cache() {
    let Some(env) = ready("classic_shape_history_and_cache") else {
        return;
    };
    let ctx = context(
        &env,
        "app",
        &[
            (
                "Dockerfile",
                "FROM busybox:base\n\
                 WORKDIR /app\n\
                 COPY requirements.txt .\n\
                 RUN echo installing $(cat requirements.txt) > installed.txt\n\
                 COPY . .\n\
                 CMD [\"sh\", \"-c\", \"cat installed.txt main.txt\"]\n",
            ),
            ("requirements.txt", "flask\n"),
            ("main.txt", "main v1\n"),
        ],
    );
    let log = build_ok(&env, &ctx, &["-t", "app:1"]);
    assert!(log.contains("#1 [stage-0 1/5] FROM busybox:base"), "{log}");
    assert!(log.contains("[stage-0 4/5] RUN echo installing"), "{log}");
    assert_eq!(
        env.ok(&["run", "--rm", "app:1"]),
        "installing flask\nmain v1\n"
    );
    let cfg = config(&env, "app:1");
    let h = history(&cfg);
    let base_entries = h.len() - 5;
    assert_eq!(
        h[base_entries..],
        [
            ("WORKDIR /app".to_string(), false),
            ("COPY requirements.txt . # buildkit".to_string(), false),
            (
                "RUN /bin/sh -c echo installing $(cat requirements.txt) > installed.txt # buildkit"
                    .to_string(),
                false
            ),
            ("COPY . . # buildkit".to_string(), false),
            (
                "CMD [\"sh\" \"-c\" \"cat installed.txt main.txt\"]".to_string(),
                true
            ),
        ]
    );
    assert!(cfg["history"].as_array().unwrap()[base_entries..]
        .iter()
        .all(|e| e["comment"] == "buildkit.dockerfile.v0"));
    // One layer per filesystem step: the base's, WORKDIR, COPY, RUN, COPY.
    assert_eq!(cfg["rootfs"]["diff_ids"].as_array().unwrap().len(), 1 + 4);
    assert_eq!(cfg["config"]["WorkingDir"], "/app");
    assert_eq!(
        cfg["config"]["Cmd"],
        serde_json::json!(["sh", "-c", "cat installed.txt main.txt"])
    );
    let shown = env.ok(&["history", "--no-trunc", "app:1"]);
    assert!(
        shown.contains("COPY requirements.txt . # buildkit"),
        "{shown}"
    );

    // Unchanged: every step cached, the same image, no new blob.
    let before = blobs(&env);
    let log = build_ok(&env, &ctx, &["-t", "app:2"]);
    assert_eq!(log.matches("CACHED").count(), 4, "{log}");
    assert_eq!(
        env.ok(&["inspect", "-f", "{{.Id}}", "app:1"]),
        env.ok(&["inspect", "-f", "{{.Id}}", "app:2"])
    );
    assert_eq!(blobs(&env), before, "an unchanged rebuild writes nothing");

    // One copied file changes: that step and the ones after it rerun.
    std::fs::write(ctx.join("main.txt"), "main v2\n").unwrap();
    let log = build_ok(&env, &ctx, &["-t", "app:3"]);
    assert_eq!(
        log.matches("CACHED").count(),
        3,
        "WORKDIR, COPY requirements, RUN: {log}"
    );
    assert_eq!(
        env.ok(&["run", "--rm", "app:3"]),
        "installing flask\nmain v2\n"
    );

    // Same size and mtime, different contents: rebuilt.
    let req = ctx.join("requirements.txt");
    let stamp = env.path("stamp");
    sh(&format!("touch -r {} {}", req.display(), stamp.display()));
    std::fs::write(&req, "numpy\n").unwrap();
    sh(&format!("touch -r {} {}", stamp.display(), req.display()));
    build_ok(&env, &ctx, &["-t", "app:4"]);
    assert_eq!(
        env.ok(&["run", "--rm", "app:4"]),
        "installing numpy\nmain v2\n"
    );

    // --no-cache reruns every step.
    let log = build_ok(&env, &ctx, &["--no-cache", "-t", "app:5"]);
    assert_eq!(log.matches("CACHED").count(), 0, "{log}");
    common::assert_store_consistent(&env.root());

    // `system df` counts the cache; `system prune -a` empties it.
    let cache_row = |df: &str| -> Vec<String> {
        let row = df.lines().find(|l| l.starts_with("Build Cache")).unwrap();
        row.split_whitespace().skip(2).map(String::from).collect()
    };
    let df = env.ok(&["system", "df"]);
    assert_ne!(cache_row(&df)[0], "0", "{df}");
    env.ok(&["system", "prune", "-a", "-f"]);
    let df = env.ok(&["system", "df"]);
    assert_eq!(cache_row(&df), ["0", "0", "0B", "0B"], "{df}");
    common::assert_store_consistent(&env.root());
}

#[test]
fn multi_stage_targets_and_args() {
    let Some(env) = ready("multi_stage_targets_and_args") else {
        return;
    };
    let ctx = context(
        &env,
        "ms",
        &[(
            "Dockerfile",
            "ARG BASE=busybox:base\n\
             ARG GREETING=hello\n\
             FROM ${BASE} AS Build\n\
             ARG GREETING\n\
             ARG UNSET\n\
             ARG EMPTY=\n\
             RUN mkdir /out && echo \"$GREETING\" > /out/greeting && env | grep -E '^(UNSET|EMPTY)=' | sort > /out/env\n\
             FROM build AS test\n\
             RUN cat /out/greeting\n\
             FROM busybox:base\n\
             ARG TARGETOS\n\
             ENV GREETING=from-env\n\
             ARG GREETING=from-arg\n\
             COPY --from=BUILD /out/ /result/\n\
             COPY --from=0 /out/greeting /again\n\
             RUN echo $GREETING $TARGETOS > /result/final\n",
        )],
    );
    build_ok(&env, &ctx, &["-t", "ms:default"]);
    assert_eq!(
        run(
            &env,
            "ms:default",
            "cat /result/greeting /again /result/env /result/final"
        ),
        "hello\nhello\nEMPTY=\nfrom-env linux\n"
    );
    build_ok(
        &env,
        &ctx,
        &["--build-arg", "GREETING=bonjour", "-t", "ms:fr"],
    );
    assert_eq!(run(&env, "ms:fr", "cat /result/greeting"), "bonjour\n");
    // --target builds a stage (and what it needs); the test stage was not part of the above.
    let log = build_ok(&env, &ctx, &["--target", "test", "-t", "ms:test"]);
    assert!(log.contains("[test 2/2] RUN cat /out/greeting"), "{log}");
    assert!(
        !log.contains("[stage-2"),
        "the last stage is not built: {log}"
    );
    let (code, _, err) = build(&env, &ctx, &["--target", "bulid"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("target stage \"bulid\" could not be found"),
        "{err}"
    );

    let bad = context(
        &env,
        "order",
        &[(
            "Dockerfile",
            "FROM busybox:base AS a\nCOPY --from=b /x /x\nFROM busybox:base AS b\n",
        )],
    );
    let (code, _, err) = build(&env, &bad, &["--target", "a"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("Dockerfile:2:") && err.contains("needs to be defined before current stage"),
        "{err}"
    );
    let cyc = context(
        &env,
        "cycle",
        &[(
            "Dockerfile",
            "FROM busybox:base AS a\nCOPY --from=a /x /x\n",
        )],
    );
    let (_, _, err) = build(&env, &cyc, &[]);
    assert!(
        err.contains("circular dependency detected on stage: a"),
        "{err}"
    );
    let var = context(
        &env,
        "fromvar",
        &[(
            "Dockerfile",
            "FROM busybox:base\nARG S=a\nCOPY --from=$S /x /x\n",
        )],
    );
    let (_, _, err) = build(&env, &var, &[]);
    assert!(
        err.contains("variable expansion is not supported for --from"),
        "{err}"
    );
}

#[test]
fn copy_and_add_rules() {
    let Some(env) = ready("copy_and_add_rules") else {
        return;
    };
    // A tarball for ADD to unpack.
    let tarsrc = env.path("tarsrc");
    std::fs::create_dir_all(tarsrc.join("pkg")).unwrap();
    std::fs::write(tarsrc.join("pkg/lib.txt"), "from the tarball\n").unwrap();
    let ctx = context(
        &env,
        "copy",
        &[
            (
                "Dockerfile",
                "FROM busybox:base\n\
                 COPY dir /into/\n\
                 COPY dir /plain\n\
                 COPY file.txt /renamed.txt\n\
                 COPY file.txt /d/\n\
                 COPY *.md /docs/\n\
                 COPY --chown=app:staff file.txt /owned/by/app.txt\n\
                 COPY --chown=1234:5678 file.txt /numeric.txt\n\
                 COPY --chmod=0751 file.txt /mode.txt\n\
                 COPY --chmod=go-w file.txt /symbolic.txt\n\
                 COPY --exclude=*.md . /all/\n\
                 ADD pkg.tar.gz /opt/\n\
                 ADD file.txt /added.txt\n\
                 COPY <<EOF /heredoc.txt\nline one\nEOF\n\
                 COPY --parents dir/sub/b.txt /kept/\n\
                 WORKDIR relative\n\
                 COPY file.txt here/\n",
            ),
            ("dir/a.txt", "a\n"),
            ("dir/sub/b.txt", "b\n"),
            ("file.txt", "file\n"),
            ("one.md", "1\n"),
            ("two.md", "2\n"),
            ("ignored.log", "no\n"),
            ("keep.log", "yes\n"),
            ("secrets/key", "hidden\n"),
            (".dockerignore", "*.log\n!keep.log\n**/key\n"),
        ],
    );
    sh(&format!(
        "chmod 0666 {}/file.txt && tar -C {} -czf {}/pkg.tar.gz pkg",
        ctx.display(),
        tarsrc.display(),
        ctx.display()
    ));
    build_ok(&env, &ctx, &["-t", "copy:1"]);
    let check = "cat /into/a.txt /into/sub/b.txt /plain/a.txt /renamed.txt /d/file.txt /docs/one.md /docs/two.md; \
                 stat -c '%n %u:%g %a' /owned/by/app.txt /owned /numeric.txt /mode.txt /symbolic.txt /renamed.txt; \
                 ls -a /all | tr '\\n' ' '; echo; ls -a /all/secrets | tr '\\n' ' '; echo; \
                 cat /opt/pkg/lib.txt /added.txt /heredoc.txt /kept/dir/sub/b.txt /relative/here/file.txt";
    assert_eq!(
        run(&env, "copy:1", check),
        "a\nb\na\nfile\nfile\n1\n2\n\
         /owned/by/app.txt 1000:50 666\n/owned 1000:50 755\n/numeric.txt 1234:5678 666\n/mode.txt 0:0 751\n/symbolic.txt 0:0 644\n/renamed.txt 0:0 666\n\
         . .. .dockerignore Dockerfile dir file.txt keep.log pkg.tar.gz secrets \n. .. \n\
         from the tarball\nfile\nline one\nb\nfile\n"
    );
    let h = history(&config(&env, "copy:1"));
    assert!(
        h.iter()
            .any(|(c, _)| c == "COPY --chown=app:staff file.txt /owned/by/app.txt # buildkit"),
        "{h:?}"
    );
    assert!(
        h.iter()
            .any(|(c, _)| c == "COPY <<EOF /heredoc.txt # buildkit"),
        "{h:?}"
    );

    for (df, want) in [
        (
            "FROM busybox:base\nCOPY *.md /single\n",
            "the destination must be a directory and end with a /",
        ),
        (
            "FROM busybox:base\nCOPY nothing-here /x\n",
            "\"/nothing-here\": not found",
        ),
        (
            "FROM busybox:base\nCOPY --chmod=64a file.txt /x\n",
            "invalid chmod parameter: '64a'",
        ),
        (
            "FROM busybox:base\nCOPY http://example.com/x /x\n",
            "source can't be a URL for COPY",
        ),
        (
            "FROM busybox:base\nCOPY --chown=ghost file.txt /x\n",
            "unable to find user ghost",
        ),
    ] {
        std::fs::write(ctx.join("Dockerfile"), df).unwrap();
        let (code, _, err) = build(&env, &ctx, &[]);
        assert_ne!(code, 0, "{df}");
        assert!(
            err.contains("Dockerfile:2:") && err.contains(want),
            "{df}: {err}"
        );
    }
    // A heredoc's name cannot place its file outside the build's own directory.
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox:base\nCOPY <<../../../strata-heredoc-escape /x\nowned\nEOF\n",
    )
    .unwrap();
    let (code, _, err) = build(&env, &ctx, &[]);
    assert_ne!(code, 0);
    assert!(
        err.contains("Dockerfile:2:") && err.contains("heredoc"),
        "{err}"
    );
    assert!(!Path::new("/strata-heredoc-escape").exists());
    assert!(!Path::new("/tmp/strata-heredoc-escape").exists());
    // Sources cannot leave the context: `..` clamps to its root.
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox:base\nCOPY ../../../../etc/hostname /h\n",
    )
    .unwrap();
    let (code, _, err) = build(&env, &ctx, &[]);
    assert_ne!(code, 0);
    assert!(err.contains("\"/etc/hostname\": not found"), "{err}");
}

#[test]
fn metadata_instructions_and_onbuild() {
    let Some(env) = ready("metadata_instructions_and_onbuild") else {
        return;
    };
    let ctx = context(
        &env,
        "meta",
        &[(
            "Dockerfile",
            "FROM busybox:base\n\
             LABEL a=1 \"b c\"=\"two words\"\n\
             MAINTAINER someone\n\
             EXPOSE 80 53/udp\n\
             VOLUME /data\n\
             STOPSIGNAL SIGINT\n\
             HEALTHCHECK --interval=5s --retries=3 CMD wget -q localhost || exit 1\n\
             SHELL [\"/bin/sh\", \"-ec\"]\n\
             USER app\n\
             WORKDIR /home/app/work\n\
             RUN id -un > who && stat -c %U . > owner\n\
             ENTRYPOINT [\"cat\"]\n\
             ONBUILD RUN echo triggered > onbuild.txt\n",
        )],
    );
    build_ok(&env, &ctx, &["-t", "meta:1", "--label", "extra=yes"]);
    let cfg = config(&env, "meta:1");
    let c = &cfg["config"];
    assert_eq!(
        c["Labels"],
        serde_json::json!({"a": "1", "b c": "two words", "extra": "yes"})
    );
    assert_eq!(cfg["author"], "someone");
    assert_eq!(
        c["ExposedPorts"],
        serde_json::json!({"53/udp": {}, "80/tcp": {}})
    );
    assert_eq!(c["Volumes"], serde_json::json!({"/data": {}}));
    assert_eq!(c["StopSignal"], "SIGINT");
    assert_eq!(
        c["Healthcheck"]["Test"],
        serde_json::json!(["CMD-SHELL", "wget -q localhost || exit 1"])
    );
    assert_eq!(c["Healthcheck"]["Interval"], 5_000_000_000u64);
    assert_eq!(c["Shell"], serde_json::json!(["/bin/sh", "-ec"]));
    assert_eq!(c["User"], "app");
    assert_eq!(c["Entrypoint"], serde_json::json!(["cat"]));
    assert_eq!(c["Cmd"], Value::Null, "ENTRYPOINT resets an inherited CMD");
    assert_eq!(
        c["OnBuild"],
        serde_json::json!(["RUN echo triggered > onbuild.txt"])
    );
    let h: Vec<String> = history(&cfg).into_iter().map(|(c, _)| c).collect();
    for want in [
        "LABEL a=1 b c=two words",
        "EXPOSE [53/udp 80/tcp]",
        "VOLUME [/data]",
        "HEALTHCHECK {Test:[CMD-SHELL wget -q localhost || exit 1] Interval:5s Timeout:0s StartPeriod:0s StartInterval:0s Retries:3}",
        "SHELL [/bin/sh -ec]",
        "USER app",
        "WORKDIR /home/app/work",
        "RUN /bin/sh -ec id -un > who && stat -c %U . > owner # buildkit",
        "ENTRYPOINT [\"cat\"]",
    ] {
        assert!(h.iter().any(|x| x == want), "missing {want:?} in {h:#?}");
    }
    assert!(
        !h.iter().any(|x| x.starts_with("ONBUILD")),
        "ONBUILD has no history entry"
    );
    assert_eq!(
        env.ok(&["run", "--rm", "meta:1", "who", "owner"]),
        "app\napp\n"
    );

    // A child runs the trigger, and its own image no longer carries it.
    let child = context(&env, "child", &[("Dockerfile", "FROM meta:1\nUSER root\n")]);
    build_ok(&env, &child, &["-t", "child:1"]);
    assert_eq!(
        env.ok(&["run", "--rm", "child:1", "onbuild.txt"]),
        "triggered\n"
    );
    assert_eq!(config(&env, "child:1")["config"]["OnBuild"], Value::Null);
}

#[test]
fn failures_are_clear_and_leave_the_store_consistent() {
    let Some(env) = ready("failures_are_clear_and_leave_the_store_consistent") else {
        return;
    };
    let ctx = context(
        &env,
        "fail",
        &[(
            "Dockerfile",
            "FROM busybox:base\nRUN echo partial > /p\nRUN exit 3\n",
        )],
    );
    let (code, _, err) = build(&env, &ctx, &["-t", "fail:1"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("Dockerfile:3: RUN exit 3: process \"/bin/sh -c exit 3\" did not complete successfully: exit code: 3"),
        "{err}"
    );
    assert!(env.fails(&["inspect", "fail:1"]).contains("fail:1"));
    assert_eq!(env.ok(&["ps", "-aq"]), "", "no build container is left");
    common::assert_store_consistent(&env.root());
    let parse = context(
        &env,
        "parse",
        &[("Dockerfile", "FROM busybox:base\nFNTRYPOINT x\n")],
    );
    let (code, _, err) = build(&env, &parse, &[]);
    assert_ne!(code, 0);
    assert!(
        err.contains("Dockerfile:2:") && err.contains("ENTRYPOINT"),
        "{err}"
    );
    let none = context(&env, "nostage", &[("Dockerfile", "ARG A=1\n")]);
    let (_, _, err) = build(&env, &none, &[]);
    assert!(
        err.contains("no stages") || err.contains("no instructions"),
        "{err}"
    );
}

#[test]
fn quiet_iidfile_and_archive_output() {
    let Some(env) = ready("quiet_iidfile_and_archive_output") else {
        return;
    };
    let ctx = context(
        &env,
        "q",
        &[("Dockerfile", "FROM busybox:base\nRUN echo noisy\n")],
    );
    let iid = env.path("iid");
    let out_tar = env.path("out.tar");
    let (code, stdout, stderr) = build(
        &env,
        &ctx,
        &[
            "-q",
            "--iidfile",
            &iid.display().to_string(),
            "-o",
            &format!("type=oci,dest={}", out_tar.display()),
            "-t",
            "q:1",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let id = std::fs::read_to_string(&iid).unwrap();
    assert_eq!(stdout, format!("{id}\n"), "only the ID on stdout");
    assert!(!stderr.contains("noisy"), "{stderr}");
    let other = Env::new();
    other.ok(&["load", "-i", &out_tar.display().to_string()]);
    assert_eq!(other.ok(&["inspect", "-f", "{{.Id}}", "q:1"]).trim(), id);
    // Without -q, RUN output streams on stderr and stdout stays empty.
    let (_, stdout, stderr) = build(&env, &ctx, &["--no-cache"]);
    assert_eq!(stdout, "");
    assert!(stderr.contains("noisy"), "{stderr}");
}

/// A Wasm-only Dockerfile builds with no privileges: as an unprivileged user, RUN runs on
/// the embedded wasmtime.
#[test]
fn wasm_only_build_as_an_unprivileged_user() {
    if !common::need_root("wasm_only_build_as_an_unprivileged_user") {
        return;
    }
    let (p1, _) = common::probe();
    let env = Env::new();
    let ctx = context(
        &env,
        "wasm",
        &[(
            "Dockerfile",
            "FROM scratch\n\
             COPY hello.wasm /hello.wasm\n\
             ENV GREETING=built\n\
             RUN [\"/hello.wasm\", \"write\", \"/made-at-build.txt\", \"during the build\"]\n\
             ENTRYPOINT [\"/hello.wasm\"]\n",
        )],
    );
    std::fs::copy(&p1, ctx.join("hello.wasm")).unwrap();
    sh(&format!(
        "chmod -R a+rwX {0} && chown -R 65534:65534 {0}",
        env.tmp.path().display()
    ));
    let strata = env!("CARGO_BIN_EXE_strata");
    let script = format!(
        "set -e; {strata} --root {r} build --platform wasi/wasm -t hello:built {c} && \
         {strata} --root {r} run --rm hello:built cat /made-at-build.txt",
        r = env.root().display(),
        c = ctx.display()
    );
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "--",
            "sh",
            "-c",
            &script,
        ])
        .env("HOME", env.tmp.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.ends_with("during the build"), "{stdout}");
    sh(&format!("chown -R 0:0 {}", env.tmp.path().display()));
}

/// `strata save` of a built image: Debian's podman loads it and runs it with the same output.
#[test]
fn podman_runs_what_strata_built() {
    if !common::tools("podman_runs_what_strata_built", &["podman", "runc"]) {
        return;
    }
    let Some(env) = ready("podman_runs_what_strata_built") else {
        return;
    };
    let ctx = context(
        &env,
        "pod",
        &[
            ("Dockerfile", "FROM busybox:base\nWORKDIR /srv\nCOPY msg.txt .\nRUN echo built >> msg.txt\nCMD [\"cat\", \"msg.txt\"]\n"),
            ("msg.txt", "hello podman\n"),
        ],
    );
    build_ok(&env, &ctx, &["-t", "localhost/strata-podman:test"]);
    let ours = env.ok(&["run", "--rm", "localhost/strata-podman:test"]);
    let tar = env.path("img.tar");
    env.ok(&[
        "save",
        "-o",
        &tar.display().to_string(),
        "localhost/strata-podman:test",
    ]);
    let podman_root = env.path("podman");
    let p = |args: &[&str]| {
        let mut all = vec![
            "--root".to_string(),
            podman_root.join("root").display().to_string(),
            "--runroot".to_string(),
            podman_root.join("run").display().to_string(),
            "--storage-driver".to_string(),
            "vfs".to_string(),
        ];
        all.extend(args.iter().map(|s| s.to_string()));
        let out = std::process::Command::new("podman")
            .args(&all)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "podman {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    p(&["load", "-i", &tar.display().to_string()]);
    let theirs = p(&[
        "run",
        "--rm",
        "--runtime",
        "runc",
        "--network",
        "none",
        "--ulimit",
        "nofile=20000:20000",
        "--ulimit",
        "nproc=32768:32768",
        "localhost/strata-podman:test",
    ]);
    assert_eq!(theirs, ours);
    assert_eq!(ours, "hello podman\nbuilt\n");
}

/// A tiny HTTP server on loopback answering GET /data.txt (and 404 otherwise).
fn serve(body: &'static str) -> u16 {
    use std::io::{BufRead, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            let _ = reader.read_line(&mut request);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) <= 2 {
                    break;
                }
            }
            let mut stream = stream;
            let response = if request.starts_with("GET /data.txt ") {
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_string()
            };
            let _ = stream.write_all(response.as_bytes());
        }
    });
    port
}

#[test]
fn add_from_a_url() {
    let Some(env) = ready("add_from_a_url") else {
        return;
    };
    let port = serve("downloaded\n");
    let sum = "sha256:8e4b4e5c3dfc52a64d2fe0bff9a6c3f4f4b1bcd4a8a1f4c9d6f0c0f2f1e6a3b1";
    let dockerfile = format!(
        "FROM busybox:base\nADD http://127.0.0.1:{port}/data.txt /fetched/\nADD http://127.0.0.1:{port}/data.txt /named.txt\n"
    );
    let ctx = context(&env, "url", &[("Dockerfile", &dockerfile)]);
    build_ok(&env, &ctx, &["-t", "url:1"]);
    assert_eq!(
        run(
            &env,
            "url:1",
            "cat /fetched/data.txt /named.txt; stat -c '%a %Y' /fetched/data.txt"
        ),
        "downloaded\ndownloaded\n600 1445412480\n"
    );
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM busybox:base\nADD --checksum={sum} http://127.0.0.1:{port}/data.txt /x\n"),
    )
    .unwrap();
    let (code, _, err) = build(&env, &ctx, &[]);
    assert_ne!(code, 0);
    assert!(
        err.contains("Dockerfile:2:") && err.contains("digest mismatch"),
        "{err}"
    );
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM busybox:base\nADD http://127.0.0.1:{port}/missing /x\n"),
    )
    .unwrap();
    let (_, _, err) = build(&env, &ctx, &[]);
    assert!(
        err.contains("failed to GET") && err.contains("404"),
        "{err}"
    );
}

#[test]
fn run_mounts_bind_cache_and_tmpfs() {
    let Some(env) = ready("run_mounts_bind_cache_and_tmpfs") else {
        return;
    };
    let ctx = context(
        &env,
        "mounts",
        &[
            (
                "Dockerfile",
                "FROM busybox:base\n\
                 RUN --mount=type=bind,source=data,target=/mnt/data cat /mnt/data/in.txt > /copied.txt\n\
                 RUN --mount=type=cache,target=/var/cache/app echo run >> /var/cache/app/log && wc -l < /var/cache/app/log > /count.txt\n\
                 RUN --mount=type=tmpfs,target=/scratch touch /scratch/x && ls /scratch > /tmpfs.txt\n\
                 RUN mkdir /kept\n\
                 RUN --mount=type=tmpfs,target=/kept --mount=type=tmpfs,target=/made/deep true\n",
            ),
            ("data/in.txt", "bound in\n"),
        ],
    );
    build_ok(&env, &ctx, &["-t", "m:1"]);
    assert_eq!(
        run(
            &env,
            "m:1",
            "cat /copied.txt /count.txt /tmpfs.txt; ls /mnt /scratch /var/cache/app 2>&1 | wc -l"
        ),
        "bound in\n1\nx\n3\n",
        "the mount points are not in the image"
    );
    assert_eq!(
        run(&env, "m:1", "test -d /kept && test ! -e /made && echo ok"),
        "ok\n",
        "an image's own directory used as a mount point stays; one made for the run goes"
    );
    // The cache outlives the build; the bind's content is part of the key.
    build_ok(&env, &ctx, &["--no-cache", "-t", "m:2"]);
    assert_eq!(run(&env, "m:2", "cat /count.txt"), "2\n");
    std::fs::write(ctx.join("data/in.txt"), "changed\n").unwrap();
    let log = build_ok(&env, &ctx, &["-t", "m:3"]);
    assert_eq!(
        log.matches("CACHED").count(),
        0,
        "the bind's step and those after it rerun: {log}"
    );
    assert_eq!(run(&env, "m:3", "cat /copied.txt"), "changed\n");
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox:base\nRUN --mount=type=secret,id=x,required=true true\n",
    )
    .unwrap();
    let (code, _, err) = build(&env, &ctx, &[]);
    assert_ne!(code, 0);
    // A mount's failure names its line (secrets themselves: tests/suite/secrets.rs).
    assert!(
        err.contains("Dockerfile:2:") && err.contains("secret x: not found"),
        "{err}"
    );
}

#[test]
fn independent_stages_build_in_parallel_and_env_sees_before() {
    let Some(env) = ready("independent_stages_build_in_parallel_and_env_sees_before") else {
        return;
    };
    // Each stage waits for the other's marker in a shared cache mount: built one after the
    // other, the first would give up after 10 s and fail the build.
    let wait = |me: &str, other: &str| {
        format!(
            "RUN --mount=type=cache,id=rendezvous,target=/r touch /r/{me} && \
             for i in $(seq 100); do [ -e /r/{other} ] && exit 0; sleep 0.1; done; exit 1\n"
        )
    };
    let dockerfile = format!(
        "FROM busybox:base AS left\n{}RUN echo left > /side\n\
         FROM busybox:base AS right\n{}RUN echo right > /side\n\
         FROM busybox:base\n\
         ENV A=1\n\
         ENV A=2 B=$A\n\
         COPY --from=left /side /left\n\
         COPY --from=right /side /right\n",
        wait("left", "right"),
        wait("right", "left")
    );
    let ctx = context(&env, "parallel", &[("Dockerfile", &dockerfile)]);
    build_ok(&env, &ctx, &["-t", "par:1"]);
    assert_eq!(
        run(&env, "par:1", "cat /left /right; echo $A $B"),
        "left\nright\n2 1\n"
    );
}

/// Two stages running at once print interleaved lines on stdout and stderr: every line in
/// the log is under its own step's number, and stdout is left for the image ID.
#[test]
fn run_output_is_attributed_to_its_step() {
    let Some(env) = ready("run_output_is_attributed_to_its_step") else {
        return;
    };
    // Both stages print while they wait for each other, so their output overlaps in time.
    let talk = |me: &str, other: &str| {
        format!(
            "RUN --mount=type=cache,id=talk,target=/r touch /r/{me} && \
             for i in $(seq 100); do echo {me}-out-$i; echo {me}-err-$i >&2; \
             [ -e /r/{other} ] && [ $i -gt 5 ] && exit 0; sleep 0.05; done; exit 1\n"
        )
    };
    let dockerfile = format!(
        "FROM busybox:base AS left\n{}\
         FROM busybox:base AS right\n{}\
         FROM busybox:base\n\
         COPY --from=left /etc/passwd /l\n\
         COPY --from=right /etc/passwd /r\n",
        talk("left", "right"),
        talk("right", "left")
    );
    let ctx = context(&env, "talk", &[("Dockerfile", &dockerfile)]);
    let (code, out, log) = build(&env, &ctx, &["-q"]);
    assert_eq!(code, 0, "{log}");
    assert!(
        out.trim().starts_with("sha256:"),
        "stdout is the image ID: {out:?}"
    );
    assert!(!log.contains("-out-"), "-q shows no output: {log}");
    let log = build_ok(&env, &ctx, &["--no-cache"]);
    assert!(!log.contains("CACHED"), "{log}");
    for me in ["left", "right"] {
        let label = format!("[{me} 2/2] RUN");
        let step = log
            .lines()
            .find(|l| l.contains(&label))
            .and_then(|l| l.split(' ').next())
            .unwrap_or_else(|| panic!("no step {label:?} in\n{log}"));
        for stream in ["out", "err"] {
            let lines: Vec<&str> = log
                .lines()
                .filter(|l| l.contains(&format!("{me}-{stream}-")))
                .collect();
            assert!(lines.len() >= 6, "{me} {stream}: {lines:?}");
            for l in &lines {
                assert_eq!(
                    l.split(' ').next(),
                    Some(step),
                    "{l:?} is not step {step}'s"
                );
            }
        }
    }
}

/// The image ID of `strata build` (through --iidfile) and its log.
fn build_id(env: &Env, ctx: &Path, args: &[&str]) -> (String, String) {
    let file = env.path("iid");
    let f = file.display().to_string();
    let mut all = vec!["--iidfile", f.as_str()];
    all.extend(args);
    let log = build_ok(env, ctx, &all);
    (std::fs::read_to_string(&file).unwrap(), log)
}

/// The progress line of the step labelled `label`, and whether it was a cache hit.
fn step_cached(log: &str, label: &str) -> bool {
    let line = log
        .lines()
        .find(|l| l.contains(label))
        .unwrap_or_else(|| panic!("no step {label:?} in\n{log}"));
    let step = line.split(' ').next().unwrap();
    log.lines().any(|l| l == format!("{step} CACHED"))
}

#[test]
fn copy_from_is_keyed_by_the_copied_content() {
    let Some(env) = ready("copy_from_is_keyed_by_the_copied_content") else {
        return;
    };
    let ctx = context(
        &env,
        "content",
        &[
            (
                "Dockerfile",
                "FROM busybox:base AS build\n\
                 WORKDIR /src\n\
                 COPY . .\n\
                 RUN mkdir -p /out && cat a.txt > /out/result.txt\n\
                 FROM busybox:base\n\
                 COPY --from=0 /out/result.txt /result.txt\n",
            ),
            ("a.txt", "output v1\n"),
            ("b.txt", "seen by the first stage only\n"),
        ],
    );
    let copy = "[stage-1 2/2] COPY --from=0";
    let (first, log) = build_id(&env, &ctx, &["-t", "content:1"]);
    assert!(!step_cached(&log, copy), "{log}");
    // b.txt changes the first stage (its COPY and RUN run again), not what the last copies.
    std::fs::write(ctx.join("b.txt"), "changed\n").unwrap();
    let (second, log) = build_id(&env, &ctx, &["-t", "content:2"]);
    assert!(!step_cached(&log, "[build 4/4] RUN mkdir"), "{log}");
    assert!(step_cached(&log, copy), "{log}");
    assert_eq!(second, first, "{log}");
    // a.txt changes the copied file: a new image with the new content.
    std::fs::write(ctx.join("a.txt"), "output v2\n").unwrap();
    let (third, log) = build_id(&env, &ctx, &["-t", "content:3"]);
    assert!(!step_cached(&log, copy), "{log}");
    assert_ne!(third, first);
    assert_eq!(run(&env, "content:3", "cat /result.txt"), "output v2\n");
    // So does a mode change of the copied file, with the same bytes.
    std::fs::write(ctx.join("a.txt"), "output v1\n").unwrap();
    let (back, _) = build_id(&env, &ctx, &["-t", "content:4"]);
    assert_eq!(back, first, "the first content again: the first image");
    let ctx_df = std::fs::read_to_string(ctx.join("Dockerfile")).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        ctx_df.replace(
            "> /out/result.txt",
            "> /out/result.txt && chmod 600 /out/result.txt",
        ),
    )
    .unwrap();
    let (mode, log) = build_id(&env, &ctx, &["-t", "content:5"]);
    assert!(!step_cached(&log, copy), "{log}");
    assert_ne!(mode, first);
    common::assert_store_consistent(&env.root());
}

#[test]
fn heredocs_with_blanks_after_the_marker_build() {
    let Some(env) = ready("heredocs_with_blanks_after_the_marker_build") else {
        return;
    };
    let ctx = context(
        &env,
        "heredoc",
        &[(
            "Dockerfile",
            "FROM busybox:base\n\
             RUN <<  EOF\n\
             echo simple > /simple\n\
             EOF\n\
             RUN cat <<  EOF  > /complex\n\
             line one\n\
             EOF\n\
             RUN <<\tEOF  > /empty\n\
             ignored\n\
             EOF\n",
        )],
    );
    build_ok(&env, &ctx, &["-t", "heredoc:1"]);
    assert_eq!(
        run(&env, "heredoc:1", "cat /simple /complex; wc -c < /empty"),
        "simple\nline one\n0\n"
    );
}

#[test]
fn thousands_of_chained_stages_plan_in_linear_time() {
    let env = Env::new();
    // s0 ← s1 ← … ← s4999, an unused stage among them, and the target at the end.
    let n = 5000;
    let mut dockerfile = String::from("FROM scratch AS s0\n");
    for i in 1..n {
        dockerfile.push_str(&format!("FROM s{} AS s{i}\n", i - 1));
        if i == n / 2 {
            dockerfile.push_str("FROM scratch AS unused\n");
        }
    }
    let ctx = context(&env, "chain", &[("Dockerfile", &dockerfile)]);
    let started = std::time::Instant::now();
    let log = build_ok(&env, &ctx, &["-t", "chain:1"]);
    let elapsed = started.elapsed();
    assert!(elapsed < std::time::Duration::from_secs(30), "{elapsed:?}");
    // Each stage's FROM step comes after its base's.
    let mut steps = vec![None; n];
    for line in log.lines() {
        let Some((step, rest)) = line.split_once(" [s") else {
            continue;
        };
        let Some((i, _)) = rest.split_once(' ') else {
            continue;
        };
        let step: usize = step.trim_start_matches('#').parse().unwrap();
        steps[i.parse::<usize>().unwrap()] = Some(step);
    }
    let steps: Vec<usize> = steps
        .into_iter()
        .map(|s| s.expect("every stage built"))
        .collect();
    assert!(steps.windows(2).all(|w| w[0] < w[1]), "{log}");
    assert!(!log.contains("[unused "), "{log}");

    // Forward references and cycles are still refused, by name and line, before any step.
    let forward = format!("{dockerfile}COPY --from=later /x /x\nFROM scratch AS later\n");
    let ctx = context(&env, "forward", &[("Dockerfile", &forward)]);
    let target = format!("s{}", n - 1);
    let (code, _, err) = build(&env, &ctx, &["--target", &target]);
    assert_ne!(code, 0);
    assert!(
        err.contains(&format!(
            "Dockerfile:{}: cannot copy from stage \"later\", it needs to be defined before current stage \"s{}\"",
            n + 2,
            n - 1
        )),
        "{err}"
    );
    assert!(!err.contains("FROM"), "nothing was built: {err}");
    let ctx = context(
        &env,
        "cycle",
        &[("Dockerfile", "FROM b AS a\nFROM scratch AS b\nFROM a\n")],
    );
    let (code, _, err) = build(&env, &ctx, &[]);
    assert_ne!(code, 0);
    assert!(
        err.contains("Dockerfile:1: circular dependency detected on stage: a"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn the_dockerfile_is_read_inside_its_directory() {
    let env = Env::new();
    let outside = env.path("outside.Dockerfile");
    std::fs::write(&outside, "FROM scratch\nLABEL secret=outside-text\n").unwrap();
    std::fs::write(env.path("outside.ignore"), "*\n").unwrap();
    let ctx = context(
        &env,
        "links",
        &[
            (
                "real.Dockerfile",
                "FROM scratch\nLABEL from=inside\nCOPY f /f\n",
            ),
            ("f", "data\n"),
        ],
    );
    // A link out of the directory: refused in one line, the outside text goes nowhere.
    std::os::unix::fs::symlink(&outside, ctx.join("Dockerfile")).unwrap();
    let (code, _, err) = build(&env, &ctx, &["-t", "links:out"]);
    assert_ne!(code, 0);
    assert!(err.contains("a symlink out of"), "{err}");
    assert!(!err.contains("outside-text"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    std::fs::remove_file(ctx.join("Dockerfile")).unwrap();
    std::os::unix::fs::symlink("../outside.Dockerfile", ctx.join("Dockerfile")).unwrap();
    let (code, _, err) = build(&env, &ctx, &["-t", "links:out"]);
    assert_ne!(code, 0);
    assert!(err.contains("a symlink out of"), "{err}");
    assert!(env.fails(&["inspect", "links:out"]).contains("links:out"));

    // A FIFO is not read (opening it would wait for a writer).
    std::fs::remove_file(ctx.join("Dockerfile")).unwrap();
    sh(&format!("mkfifo {}", ctx.join("Dockerfile").display()));
    let (code, _, err) = build(&env, &ctx, &["-t", "links:out"]);
    assert_ne!(code, 0);
    assert!(err.contains("not a regular file"), "{err}");

    // A link inside the directory is followed.
    std::fs::remove_file(ctx.join("Dockerfile")).unwrap();
    std::os::unix::fs::symlink("real.Dockerfile", ctx.join("Dockerfile")).unwrap();
    build_ok(&env, &ctx, &["-t", "links:in"]);
    let cfg = config(&env, "links:in");
    assert_eq!(cfg["config"]["Labels"]["from"], "inside");

    // .dockerignore through a link out of the context: an error, not "no rules".
    std::os::unix::fs::symlink("../outside.ignore", ctx.join(".dockerignore")).unwrap();
    let (code, _, err) = build(&env, &ctx, &["-t", "links:ignore"]);
    assert_ne!(code, 0);
    assert!(err.contains("read .dockerignore:"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // Inside, it applies (here it excludes the copied file).
    std::fs::remove_file(ctx.join(".dockerignore")).unwrap();
    std::fs::write(ctx.join("ignore-f"), "f\n").unwrap();
    std::os::unix::fs::symlink("ignore-f", ctx.join(".dockerignore")).unwrap();
    let (code, _, err) = build(&env, &ctx, &["-t", "links:ignore"]);
    assert_ne!(code, 0);
    assert!(err.contains("COPY f /f"), "{err}");

    // `-f` elsewhere: the Dockerfile and its own ignore file are read from that directory,
    // which overrides the context's .dockerignore.
    let dir = env.path("dfdir");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("app.Dockerfile"), "FROM scratch\nCOPY f /f\n").unwrap();
    std::fs::write(dir.join("app.Dockerfile.dockerignore"), "nothing\n").unwrap();
    let df = dir.join("app.Dockerfile").display().to_string();
    build_ok(&env, &ctx, &["-f", &df, "-t", "links:own"]);
    std::fs::remove_file(dir.join("app.Dockerfile.dockerignore")).unwrap();
    std::os::unix::fs::symlink(
        env.path("outside.ignore"),
        dir.join("app.Dockerfile.dockerignore"),
    )
    .unwrap();
    let (code, _, err) = build(&env, &ctx, &["-f", &df]);
    assert_ne!(code, 0);
    assert!(err.contains("app.Dockerfile.dockerignore"), "{err}");
    common::assert_store_consistent(&env.root());
}
