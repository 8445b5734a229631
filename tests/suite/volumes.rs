//! `strata volume …` as docker's volume group: labels and filters, inspect, idempotent
//! create, rm of what is missing or in use, prune's two scopes, and volumes in `system df`
//! and `system prune --volumes`. What containers do with volumes on each backend is in
//! `containers` (`named_volumes_outlive_their_containers` and the tests beside it).

use crate::common::{self, probe, Env};

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

#[test]
fn volume_commands_as_docker() {
    let env = Env::new();
    assert_eq!(
        env.ok(&["volume", "create", "--label", "tier=db", "pgdata"]),
        "pgdata\n"
    );
    // Again: the same volume, as docker answers.
    assert_eq!(env.ok(&["volume", "create", "pgdata"]), "pgdata\n");
    env.ok(&[
        "volume", "create", "--label", "tier=web", "--label", "x", "cache",
    ]);
    let random = env.ok(&["volume", "create"]);
    assert_eq!(random.trim().len(), 64, "{random}");

    let ls = env.ok(&["volume", "ls"]);
    assert!(ls.starts_with("DRIVER    VOLUME NAME\n"), "{ls}");
    assert!(ls.contains("local     pgdata\n"), "{ls}");
    let q = |filters: &[&str]| {
        let mut args = vec!["volume", "ls", "-q"];
        for f in filters {
            args.extend(["--filter", f]);
        }
        env.ok(&args)
    };
    assert_eq!(q(&["label=tier=db"]), "pgdata\n");
    assert_eq!(lines(&q(&["label=tier"])), ["cache", "pgdata"]);
    assert_eq!(q(&["label=x", "name=ca"]), "cache\n");
    assert_eq!(lines(&q(&["name=pg", "name=cac"])), ["cache", "pgdata"]);
    assert_eq!(q(&["dangling=true"]).lines().count(), 3);
    assert!(env
        .fails(&["volume", "ls", "--filter", "colour=red"])
        .contains("invalid filter 'colour'"));

    let inspected: serde_json::Value =
        serde_json::from_str(&env.ok(&["volume", "inspect", "pgdata"])).unwrap();
    let v = &inspected[0];
    assert_eq!(v["Name"], "pgdata");
    assert_eq!(v["Driver"], "local");
    assert_eq!(v["Labels"]["tier"], "db");
    let mountpoint = env.root().join("volumes/pgdata/_data");
    assert_eq!(v["Mountpoint"], mountpoint.display().to_string());
    assert!(mountpoint.is_dir());
    assert_eq!(
        env.ok(&["volume", "inspect", "-f", "{{.Name}} {{.Scope}}", "cache"]),
        "cache local\n"
    );
    let err = env.fails(&["volume", "inspect", "nosuch"]);
    assert!(err.contains("no such volume: nosuch"), "{err}");

    // Names docker refuses, a path among them: nothing is made outside the store.
    for bad in ["a", "../escape", "x/y", "_lead"] {
        let err = env.fails(&["volume", "create", bad]);
        assert!(
            err.contains("invalid characters for a local volume name"),
            "{bad}: {err}"
        );
    }
    assert!(!env.root().join("escape").exists() && !env.tmp.path().join("escape").exists());
    assert!(env
        .fails(&["volume", "create", "-d", "nfs", "v1"])
        .contains("not supported"));

    // rm: several at once; a missing one fails unless -f, the others are still removed.
    let out = env.run(&["volume", "rm", "cache", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "cache\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such volume: nosuch"));
    assert_eq!(
        env.ok(&["volume", "rm", "-f", "nosuch", random.trim()]),
        random
    );
    assert_eq!(q(&[]), "pgdata\n");
}

#[test]
fn prune_and_disk_usage_count_volumes() {
    let env = Env::new();
    let (p1, _) = probe();
    env.wasm_image(&p1, "probe", true);
    env.ok(&["volume", "create", "--label", "keep=yes", "kept"]);
    env.ok(&["volume", "create", "spare"]);
    // In use by a stopped container: never pruned.
    env.ok(&[
        "run", "--name", "user", "-v", "used:/u", "probe", "write", "/u/f", "12345",
    ]);
    // Anonymous, left by a plain rm.
    env.ok(&[
        "run", "--name", "gone", "-v", "/anon", "probe", "write", "/anon/f", "123",
    ]);
    env.ok(&["rm", "gone"]);

    let df = env.ok(&["system", "df"]);
    let row = df.lines().find(|l| l.starts_with("Local Volumes")).unwrap();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[2..5], ["4", "1", "8B"], "{df}");
    assert_eq!(cells[5], "3B", "{df}");

    // Without -a only the anonymous one; with a label filter only what matches.
    let out = env.ok(&["volume", "prune", "-f"]);
    assert!(
        out.contains("Deleted Volumes:\n") && out.contains("Total reclaimed space: 3B"),
        "{out}"
    );
    let names = env.ok(&["volume", "ls", "-q"]);
    assert_eq!(lines(&names), ["kept", "spare", "used"]);
    let out = env.ok(&["volume", "prune", "-f", "-a", "--filter", "label!=keep"]);
    assert!(out.contains("spare") && !out.contains("kept"), "{out}");
    assert_eq!(lines(&env.ok(&["volume", "ls", "-q"])), ["kept", "used"]);

    // system prune keeps volumes unless --volumes, which takes anonymous ones only.
    env.ok(&[
        "run", "--name", "gone2", "-v", "/anon", "probe", "exit", "0",
    ]);
    env.ok(&["rm", "gone2"]);
    env.ok(&["system", "prune", "-f"]);
    assert_eq!(env.ok(&["volume", "ls", "-q"]).lines().count(), 3);
    let out = env.ok(&["system", "prune", "-f", "--volumes"]);
    assert!(out.contains("Deleted Volume: "), "{out}");
    assert_eq!(lines(&env.ok(&["volume", "ls", "-q"])), ["kept", "used"]);
    let err = env.fails(&["volume", "rm", "used"]);
    assert!(err.contains("volume is in use"), "{err}");
    env.ok(&["rm", "-v", "user"]);
    assert_eq!(
        env.ok(&["volume", "rm", "used"]),
        "used\n",
        "rm -v keeps named volumes"
    );
    common::assert_store_consistent(&env.root());
}

/// An image whose VOLUME is a symlink out of its root (`/data -> ../../../../<host dir>`):
/// seeding and mounting resolve it inside the container's root, so nothing on the host
/// beside the store is read or written.
#[test]
fn a_volume_behind_an_escaping_link_stays_in_the_root() {
    let test = "volumes::a_volume_behind_an_escaping_link_stays_in_the_root";
    if !common::need_root(test) || !common::tools(test, &["busybox"]) {
        return;
    }
    let env = Env::new();
    let outside = env.path("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret"), "host file\n").unwrap();
    let tree = env.path("hostile-rootfs");
    common::sh(&format!(
        "{}/examples/rootfs/make-busybox-rootfs.sh {}",
        env!("CARGO_MANIFEST_DIR"),
        tree.display()
    ));
    let link = format!("../../../../../../../..{}", outside.display());
    std::os::unix::fs::symlink(&link, tree.join("data")).unwrap();
    common::busybox_image(&env, "hostile", &["VOLUME /data"]);
    let out = env.run(&[
        "run",
        "--rm",
        "-v",
        "seeded:/data",
        "hostile",
        "sh",
        "-c",
        "ls /data; echo written > /data/new",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("secret"),
        "the host directory was seeded into the volume"
    );
    assert!(
        !outside.join("new").exists(),
        "a write went through the link to the host"
    );
    let data = env.root().join("volumes/seeded/_data");
    assert_eq!(
        std::fs::read_to_string(data.join("new")).unwrap(),
        "written\n"
    );
    assert!(!data.join("secret").exists());
    common::assert_store_consistent(&env.root());
}
