//! Listing and managing containers as docker does: `ps` with its filters, limits, sizes and
//! formats; labels; the `container` and `image` groups; `rename`, `container prune`,
//! `version` and `info`.

use crate::common::{self, busybox_image, probe, Env};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `ps ARGS --format '{{.Names}}'`: the names listed, newest first.
fn names(env: &Env, args: &[&str]) -> Vec<String> {
    let mut all = vec!["ps"];
    all.extend(args);
    all.extend(["--format", "{{.Names}}"]);
    env.ok(&all).lines().map(String::from).collect()
}

/// Three native containers of image `bb` (labelled `from=image`): `made` (created, labels
/// a=b and tier), `three` (exited 3, label a=c) and `zero` (exited 0, wrote 6 bytes).
/// Programs here last a little: one that ends at once can end before the native backend
/// opens its pidfd (`open the container's process: No such process`, a race of its own).
fn three_containers(test: &str) -> Option<Env> {
    if !common::need_root(test) || !common::tools(test, &["busybox"]) {
        return None;
    }
    let env = Env::new();
    busybox_image(&env, "bb", &["LABEL from=image"]);
    env.ok(&[
        "create", "--name", "made", "-l", "a=b", "--label", "tier", "bb", "true",
    ]);
    let out = env.run(&[
        "run",
        "--name",
        "three",
        "-l",
        "a=c",
        "bb",
        "sh",
        "-c",
        "sleep 0.1; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    env.ok(&[
        "run",
        "--name",
        "zero",
        "bb",
        "sh",
        "-c",
        "echo hello > /greeting; sleep 0.1",
    ]);
    Some(env)
}

#[test]
fn ps_filters_like_docker() {
    let Some(env) = three_containers("listing::ps_filters_like_docker") else {
        return;
    };
    // Without -a only running containers; a status filter lists stopped ones too.
    assert_eq!(names(&env, &[]), Vec::<String>::new());
    assert_eq!(names(&env, &["-a"]), ["zero", "three", "made"]);
    assert_eq!(
        names(&env, &["--filter", "status=exited"]),
        ["zero", "three"]
    );
    // One key's values are alternatives; different keys must all hold.
    assert_eq!(
        names(&env, &["-f", "status=exited", "-f", "status=created"]),
        ["zero", "three", "made"]
    );
    assert_eq!(
        names(&env, &["-f", "status=exited", "-f", "name=hre"]),
        ["three"]
    );
    assert_eq!(
        names(&env, &["-a", "-f", "name=ma", "-f", "name=ze"]),
        ["zero", "made"]
    );
    assert_eq!(names(&env, &["-f", "status=running"]), Vec::<String>::new());
    // Labels: the container's own over its image's; several must all hold.
    assert_eq!(names(&env, &["-a", "--filter", "label=a=b"]), ["made"]);
    assert_eq!(
        names(&env, &["-a", "--filter", "label=a"]),
        ["three", "made"]
    );
    assert_eq!(
        names(&env, &["-a", "--filter", "label=from=image"]),
        ["zero", "three", "made"]
    );
    assert_eq!(
        names(&env, &["-a", "-f", "label=a", "-f", "label=tier"]),
        ["made"]
    );
    // exited=N: exited containers with that code (and, as docker, only with -a).
    assert_eq!(names(&env, &["-a", "--filter", "exited=3"]), ["three"]);
    assert_eq!(names(&env, &["-a", "--filter", "exited=0"]), ["zero"]);
    assert_eq!(names(&env, &["--filter", "exited=3"]), Vec::<String>::new());
    // ancestor: the image as named, another name of it, or its ID.
    let image_id = env.ok(&["images", "-q", "bb"]).trim().to_string();
    for ancestor in ["bb", "bb:latest", &image_id, &image_id[..6]] {
        assert_eq!(
            names(&env, &["-a", "--filter", &format!("ancestor={ancestor}")]),
            ["zero", "three", "made"],
            "ancestor={ancestor}"
        );
    }
    assert_eq!(
        names(&env, &["-a", "--filter", "ancestor=nope"]),
        Vec::<String>::new()
    );
    let made = env
        .ok(&["inspect", "-f", "{{.Id}}", "made"])
        .trim()
        .to_string();
    assert_eq!(
        names(&env, &["-a", "--filter", &format!("id={}", &made[..8])]),
        ["made"]
    );
    // -n and -l: the most recent, whatever their state.
    assert_eq!(names(&env, &["-n", "2"]), ["zero", "three"]);
    assert_eq!(names(&env, &["--last", "1"]), ["zero"]);
    assert_eq!(names(&env, &["-l"]), ["zero"]);
    assert_eq!(names(&env, &["-l", "-f", "status=created"]), ["made"]);
    // Bad filters are refused as docker refuses them.
    for (filter, error) in [
        ("colour=red", "invalid filter 'colour'"),
        ("status=sleeping", "invalid filter 'status=sleeping'"),
        ("status", "bad format of filter (expected name=value)"),
    ] {
        let err = env.fails(&["ps", "-a", "--filter", filter]);
        assert!(err.contains(error), "{filter}: {err}");
    }
}

#[test]
fn ps_formats_like_docker() {
    let Some(env) = three_containers("listing::ps_formats_like_docker") else {
        return;
    };
    assert_eq!(
        env.ok(&[
            "ps",
            "-a",
            "--format",
            "table {{.Names}}\\t{{.State}}\\t{{.Labels}}"
        ]),
        "NAMES     STATE     LABELS\n\
         zero      exited    from=image\n\
         three     exited    a=c,from=image\n\
         made      created   a=b,from=image,tier=\n"
    );
    // The default table, and -s's SIZE column last: the writable layer's bytes, and the
    // image's with them.
    let table = env.ok(&["ps", "-a"]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap()
        .split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        header,
        [
            "CONTAINER ID",
            "IMAGE",
            "COMMAND",
            "CREATED",
            "STATUS",
            "PORTS",
            "NAMES"
        ]
    );
    assert!(
        table.lines().nth(2).unwrap().contains("Exited (3) "),
        "{table}"
    );
    let sized = env.ok(&["ps", "-a", "-s"]);
    assert!(
        sized.lines().next().unwrap().ends_with("NAMES     SIZE"),
        "{sized}"
    );
    let zero = env.ok(&["ps", "-l", "-s", "--format", "{{.Size}}"]);
    assert!(
        zero.starts_with("6B (virtual ") && zero.trim_end().ends_with("MB)"),
        "{zero}"
    );
    assert!(env
        .ok(&["ps", "-a", "--format", "{{.Size}}"])
        .contains("(virtual "));
    // {{json .}} and json: docker's fields.
    for format in ["{{json .}}", "json"] {
        let line = env.ok(&["ps", "-a", "-f", "name=three", "--format", format]);
        let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(v["Names"], "three");
        assert_eq!(v["State"], "exited");
        assert_eq!(v["Image"], "bb");
        assert_eq!(v["Command"], "\"sh -c sleep 0.1; ex…\"");
        assert_eq!(v["Labels"], "a=c,from=image");
        assert_eq!(v["Networks"], "none");
        assert_eq!(v["ID"].as_str().unwrap().len(), 12);
        assert!(v["Status"].as_str().unwrap().starts_with("Exited (3) "));
    }
    let id = env.ok(&["ps", "-l", "--no-trunc", "--format", "{{.ID}}"]);
    assert_eq!(id.trim().len(), 64);
    // A format wins over -q; `table` alone with -q is the IDs.
    assert_eq!(env.ok(&["ps", "-lq", "--format", "{{.Names}}"]), "zero\n");
    assert_eq!(
        env.ok(&["ps", "-aq", "--format", "table"]).lines().count(),
        3
    );
    // Labels in inspect, over the image's.
    assert_eq!(
        env.ok(&["inspect", "-f", "{{json .Config.Labels}}", "made"])
            .trim(),
        r#"{"a":"b","from":"image","tier":""}"#
    );
    let labels = env.path("labels");
    std::fs::write(&labels, "# a comment\n\nfile=yes\na=from-file\n").unwrap();
    let id = env.ok(&[
        "create",
        "--label-file",
        labels.to_str().unwrap(),
        "-l",
        "a=flag",
        "bb",
        "true",
    ]);
    assert_eq!(
        env.ok(&[
            "container",
            "inspect",
            "-f",
            "{{json .Config.Labels}}",
            id.trim()
        ])
        .trim(),
        r#"{"a":"flag","file":"yes","from":"image"}"#
    );
}

#[test]
fn management_groups_take_the_same_flags() {
    let Some(env) = three_containers("listing::management_groups_take_the_same_flags") else {
        return;
    };
    for ls in ["ls", "list", "ps"] {
        assert_eq!(
            env.ok(&["container", ls, "-a", "--format", "{{.Names}}"]),
            "zero\nthree\nmade\n"
        );
    }
    assert_eq!(
        env.ok(&["container", "ls", "-a", "-f", "exited=3", "-q"]),
        env.ok(&["ps", "-a", "-f", "exited=3", "-q"])
    );
    assert_eq!(
        env.ok(&["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]),
        "bb:latest\n"
    );
    assert_eq!(env.ok(&["image", "list", "-q"]), env.ok(&["images", "-q"]));
    // Each group's inspect looks only at its kind of object.
    assert!(env
        .fails(&["container", "inspect", "bb"])
        .contains("no such container"));
    assert!(env
        .fails(&["image", "inspect", "made"])
        .contains("no such image"));
    assert_eq!(
        env.ok(&["image", "inspect", "-f", "{{.Os}}", "bb"]),
        "linux\n"
    );
    assert_eq!(
        env.ok(&["container", "inspect", "-f", "{{.State.ExitCode}}", "three"]),
        "3\n"
    );
    // run, create, start, logs, rm, image tag and rm through the groups.
    let out = env.run(&[
        "container",
        "run",
        "--name",
        "four",
        "bb",
        "sh",
        "-c",
        "sleep 0.1; exit 4",
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    env.ok(&[
        "container",
        "create",
        "--name",
        "five",
        "bb",
        "sh",
        "-c",
        "echo five; sleep 0.1; exit 5",
    ]);
    let out = env.run(&["container", "start", "-a", "five"]);
    assert_eq!(
        (out.status.code(), text(&out.stdout)),
        (Some(5), "five\n".into())
    );
    assert_eq!(env.ok(&["container", "logs", "five"]), "five\n");
    env.ok(&["container", "rm", "four", "five"]);
    env.ok(&["image", "tag", "bb", "bb:two"]);
    env.ok(&["image", "rm", "-f", "bb:two"]);
    assert_eq!(env.ok(&["image", "ls", "--format", "{{.Tag}}"]), "latest\n");
}

/// A Wasm image `w` (the probe), which needs no root.
fn wasm_env() -> Env {
    let (p1, _) = probe();
    let env = Env::new();
    env.wasm_image(&p1, "w", true);
    env
}

#[test]
fn rename_keeps_names_unique() {
    let env = wasm_env();
    env.ok(&["create", "--name", "a", "w", "exit", "0"]);
    let out = env.run(&["run", "--name", "b", "w", "exit", "2"]);
    assert_eq!(out.status.code(), Some(2));
    let b = env
        .ok(&["inspect", "-f", "{{.Id}}", "b"])
        .trim()
        .to_string();
    let out = env.run(&["rename", "a", "b"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!(
            "Error response from daemon: Conflict. The container name \"/b\" is already in use by \
             container \"{b}\". You have to remove (or rename) that container to be able to reuse \
             that name.\n"
        )
    );
    let out = env.run(&["rename", "a", "a"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("same name as its current name"));
    assert!(env
        .fails(&["rename", "a", "no/slash"])
        .contains("Invalid container name (no/slash)"));
    assert!(env
        .fails(&["rename", "nope", "x"])
        .contains("no such container: nope"));
    env.ok(&["rename", "a", "c"]);
    env.ok(&["container", "rename", &b[..12], "d"]);
    assert_eq!(names(&env, &["-a"]), ["d", "c"]);
    assert_eq!(env.ok(&["inspect", "-f", "{{.Name}}", "c"]), "/c\n");
    // The old name is free again; the renamed container still starts.
    env.ok(&["create", "--name", "a", "w", "exit", "0"]);
    env.ok(&["start", "c"]);
    // (Polled: a `wait` as the monitor ends can meet its socket closing, a race of its own.)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while env.ok(&["inspect", "-f", "{{.State.Status}}", "c"]) != "exited\n" {
        assert!(std::time::Instant::now() < deadline, "c never exited");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(names(&env, &["-a", "-f", "status=exited"]), ["d", "c"]);
    // A running container is renamed too; its monitor's record writes keep the new name.
    env.ok(&["run", "-d", "--name", "live", "w", "ticks", "100", "0"]);
    env.ok(&["rename", "live", "renamed"]);
    assert_eq!(names(&env, &[]), ["renamed"]);
    env.ok(&["stop", "renamed"]);
    assert_eq!(
        names(&env, &["-a", "-f", "status=exited", "-f", "name=renamed"]),
        ["renamed"]
    );
    env.ok(&["create", "--name", "live", "w", "exit", "0"]);
    env.ok(&["rm", "live"]);
    env.ok(&["start", "renamed"]);
    env.ok(&["stop", "-t", "0", "renamed"]);
    assert_eq!(
        env.ok(&["inspect", "-f", "{{.Name}}", "renamed"]),
        "/renamed\n"
    );
    env.ok(&["rm", "-f", "renamed"]);
}

#[test]
fn container_prune_removes_what_does_not_run() {
    let env = wasm_env();
    env.ok(&["create", "--name", "made", "w", "exit", "0"]);
    env.ok(&["run", "--name", "wrote", "w", "write", "/f", "hello"]);
    env.ok(&["run", "-d", "--name", "live", "w", "ticks", "100", "0"]);
    let ids: Vec<String> = env
        .ok(&[
            "ps",
            "-a",
            "--no-trunc",
            "-f",
            "status=exited",
            "-f",
            "status=created",
            "-q",
        ])
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(ids.len(), 2);
    // Without -f it asks, and a closed stdin is no.
    env.ok(&["container", "prune"]);
    assert_eq!(env.ok(&["ps", "-aq"]).lines().count(), 3);
    assert_eq!(
        env.ok(&["container", "prune", "-f"]),
        format!(
            "Deleted Containers:\n{}\n\nTotal reclaimed space: 5B\n",
            ids.join("\n")
        )
    );
    assert_eq!(names(&env, &["-a"]), ["live"]);
    assert_eq!(
        env.ok(&["container", "prune", "-f"]),
        "Total reclaimed space: 0B\n"
    );
    env.ok(&["rm", "-f", "live"]);
}

#[test]
fn version_and_info_describe_the_engine() {
    let env = wasm_env();
    let version = env.ok(&["version"]);
    let ours = env!("CARGO_PKG_VERSION");
    assert!(
        version.starts_with(&format!(
            "Client:\n Version:           {ours}\n API version:       1.44\n"
        )),
        "{version}"
    );
    assert!(
        version.contains(&format!(
            "\n\nServer: Strata Engine\n Engine:\n  Version:          {ours}\n"
        )),
        "{version}"
    );
    assert!(version.contains(" OS/Arch:           linux/"), "{version}");
    assert_eq!(
        env.ok(&[
            "version",
            "--format",
            "{{.Client.Version}} {{.Server.APIVersion}}"
        ]),
        format!("{ours} 1.44\n")
    );
    env.ok(&["create", "w", "exit", "0"]);
    env.ok(&["run", "w", "exit", "0"]);
    assert_eq!(
        env.ok(&[
            "info",
            "--format",
            "{{.Containers}} {{.ContainersRunning}} {{.ContainersStopped}} {{.Images}} {{.Driver}}"
        ]),
        "2 0 2 1 overlay\n"
    );
    let info = env.ok(&["info"]);
    for line in [
        "\nServer:\n Containers: 2\n  Running: 0\n  Paused: 0\n  Stopped: 2\n Images: 1\n",
        &format!(" Server Version: {ours}\n Storage Driver: overlay\n  Backing Filesystem: "),
        " Logging Driver: json-file\n",
        " Runtimes: native wasm\n Default Runtime: native\n",
        &format!(" Docker Root Dir: {}\n", env.root().display()),
    ] {
        assert!(info.contains(line), "{line:?} in {info}");
    }
    let v: serde_json::Value =
        serde_json::from_str(&env.ok(&["info", "--format", "json"])).unwrap();
    assert_eq!(v["OSType"], "linux");
    assert!(v["NCPU"].as_u64().unwrap() >= 1);
}

/// `ps --filter before=X` / `since=X`: containers created before or after the one named.
#[test]
fn ps_filters_by_creation_order() {
    let env = wasm_env();
    for name in ["first", "second", "third"] {
        env.ok(&["create", "--name", name, "w", "exit", "0"]);
    }
    assert_eq!(names(&env, &["-a", "-f", "before=second"]), ["first"]);
    assert_eq!(names(&env, &["-a", "-f", "since=second"]), ["third"]);
    assert_eq!(
        names(&env, &["-a", "-f", "since=first", "-f", "before=third"]),
        ["second"]
    );
    let third = env.ok(&["inspect", "-f", "{{.Id}}", "third"]);
    assert_eq!(
        names(&env, &["-a", "-f", &format!("before={}", &third[..12])]),
        ["second", "first"]
    );
    assert!(env
        .fails(&["ps", "-a", "-f", "before=nosuch"])
        .contains("no such container: nosuch"));
}
