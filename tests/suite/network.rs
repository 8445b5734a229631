//! Bridge networking end to end (native): every strata command of a test runs in a network
//! namespace made for it (`NetHost`), so bridges, veths and the nft table never touch the
//! machine's own; clients connect from threads that entered that namespace.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{busybox_image, need_root, Env};

/// A network namespace held by `unshare -n sleep infinity`, gone (with everything in it)
/// when dropped.
pub(crate) struct NetHost {
    holder: Child,
    path: PathBuf,
}

impl NetHost {
    pub(crate) fn new() -> NetHost {
        let holder = Command::new("unshare")
            .args(["-n", "sleep", "infinity"])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare");
        let path = PathBuf::from(format!("/proc/{}/ns/net", holder.id()));
        let ours = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
        let t0 = Instant::now();
        // Until unshare has run, the holder is still in our namespace.
        while std::fs::read_link(&path).ok().is_none_or(|l| l == ours) {
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "unshare -n did not start"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        let host = NetHost { holder, path };
        host.sh(&["ip", "link", "set", "lo", "up"]);
        host
    }

    /// `strata ARGS` of `env`, in this namespace.
    pub(crate) fn strata(&self, env: &Env, args: &[&str]) -> Command {
        let inner = env.cmd(args);
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.path.display()))
            .arg(inner.get_program())
            .args(inner.get_args())
            .stdin(Stdio::null());
        c.env_remove("STRATA_ROOT");
        c
    }

    pub(crate) fn ok(&self, env: &Env, args: &[&str]) -> String {
        let out = self.strata(env, args).output().unwrap();
        assert!(
            out.status.success(),
            "strata {args:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs and requires failure; returns stderr.
    pub(crate) fn fails(&self, env: &Env, args: &[&str]) -> String {
        let out = self.strata(env, args).output().unwrap();
        assert!(!out.status.success(), "strata {args:?}: {out:?}");
        String::from_utf8(out.stderr).unwrap()
    }

    /// A command of the machine's in this namespace; its stdout.
    pub(crate) fn sh(&self, args: &[&str]) -> String {
        let out = Command::new("nsenter")
            .arg(format!("--net={}", self.path.display()))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    /// `f` on a thread inside the namespace (sockets made there stay there).
    pub(crate) fn inside<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            s.spawn(|| {
                let ns = std::fs::File::open(&self.path).unwrap();
                rustix::thread::move_into_link_name_space(
                    ns.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .expect("setns");
                f()
            })
            .join()
            .unwrap()
        })
    }

    /// An HTTP GET of `path` from `addr`, retried while the server starts; the body.
    pub(crate) fn get(&self, addr: &str, path: &str) -> String {
        self.inside(|| {
            let t0 = Instant::now();
            loop {
                let attempt = (|| -> std::io::Result<String> {
                    let mut s =
                        TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2))?;
                    s.set_read_timeout(Some(Duration::from_secs(5)))?;
                    write!(s, "GET {path} HTTP/1.0\r\n\r\n")?;
                    let mut text = String::new();
                    s.read_to_string(&mut text)?;
                    Ok(text)
                })();
                match attempt {
                    Ok(text) if text.starts_with("HTTP/1") => {
                        return text
                            .split_once("\r\n\r\n")
                            .map(|(_, b)| b.to_string())
                            .unwrap();
                    }
                    r if t0.elapsed() > Duration::from_secs(10) => {
                        panic!("GET {addr}{path}: {r:?}")
                    }
                    _ => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        })
    }

    /// A second namespace made for the test, linked to this one by a veth: this side
    /// 192.0.2.1/24 (`up0`), the uplink 192.0.2.2/24. What a container reaches through it
    /// left through NAT. (192.0.2.0/24 is TEST-NET-1: no machine has it.)
    pub(crate) fn uplink(&self) -> NetHost {
        let up = NetHost::new();
        let pid = up.holder.id().to_string();
        self.sh(&[
            "ip", "link", "add", "up0", "type", "veth", "peer", "name", "up1", "netns", &pid,
        ]);
        self.sh(&["ip", "addr", "add", "192.0.2.1/24", "dev", "up0"]);
        self.sh(&["ip", "link", "set", "up0", "up"]);
        up.sh(&["ip", "addr", "add", "192.0.2.2/24", "dev", "up1"]);
        up.sh(&["ip", "link", "set", "up1", "up"]);
        up
    }

    /// What strata may leave in the namespace: links other than lo, and nft tables.
    pub(crate) fn leftovers(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .sh(&["ip", "-br", "link"])
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| *n != "lo" && !n.starts_with("up0"))
            .map(String::from)
            .collect();
        out.extend(
            self.sh(&["nft", "list", "tables"])
                .lines()
                .map(String::from),
        );
        out
    }
}

impl Drop for NetHost {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// Imports `web` (busybox, EXPOSE 80 and 81) and writes a site for its httpd; the `-v`
/// that mounts the site at /www.
fn web_image(env: &Env) -> String {
    busybox_image(env, "web", &["EXPOSE 80", "EXPOSE 81"]);
    std::fs::create_dir_all(env.path("site")).unwrap();
    std::fs::write(env.path("site/index.html"), "hello from the container\n").unwrap();
    format!("{}:/www", env.path("site").display())
}

#[test]
fn published_ports_reach_the_container_and_go_with_it() {
    if !need_root("published_ports_reach_the_container_and_go_with_it") {
        return;
    }
    let env = Env::new();
    let host = NetHost::new();
    let site = web_image(&env);
    let id = host.ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            "web",
            "--network",
            "bridge",
            "-p",
            "18080:80",
            "-p",
            "127.0.0.1:18081:81",
            "-v",
            &site,
            "web",
            "sh",
            "-c",
            "httpd -p 80 -h /www; httpd -f -p 81 -h /www",
        ],
    );
    let id = id.trim();
    // Through loopback (the output hook and route_localnet), through the gateway, the
    // 127.0.0.1-only port, and the container's own address on the bridge.
    for addr in [
        "127.0.0.1:18080",
        "10.88.0.1:18080",
        "127.0.0.1:18081",
        "10.88.0.2:80",
    ] {
        assert_eq!(
            host.get(addr, "/index.html"),
            "hello from the container\n",
            "{addr}"
        );
    }

    assert_eq!(
        host.ok(&env, &["port", "web"]),
        "80/tcp -> 0.0.0.0:18080\n81/tcp -> 127.0.0.1:18081\n"
    );
    assert_eq!(host.ok(&env, &["port", "web", "81"]), "127.0.0.1:18081\n");
    let err = host.fails(&env, &["port", "web", "82/tcp"]);
    assert!(
        err.contains("No public port '82/tcp' published for web"),
        "{err}"
    );
    let ps = host.ok(&env, &["ps", "--format", "{{.Ports}}|{{.Networks}}"]);
    assert_eq!(
        ps,
        "0.0.0.0:18080->80/tcp, 127.0.0.1:18081->81/tcp|bridge\n"
    );

    // The port is taken while it runs: a second container asking for it fails at once,
    // with docker's words, and leaves nothing behind.
    let err = host.fails(
        &env,
        &[
            "run",
            "--rm",
            "--network",
            "bridge",
            "-p",
            "18080:80",
            "web",
            "true",
        ],
    );
    assert!(
        err.contains("Bind for 0.0.0.0:18080 failed: port is already allocated"),
        "{err}"
    );
    assert_eq!(host.ok(&env, &["ps", "-aq"]).lines().count(), 1);

    host.ok(&env, &["rm", "-f", id]);
    assert_eq!(host.leftovers(), Vec::<String>::new(), "after rm -f");
    let state = std::fs::read_to_string(env.root().join("networks/state.json")).unwrap();
    assert!(
        !state.contains(id),
        "the lease went with the container: {state}"
    );
}

#[test]
fn a_container_on_the_bridge_gets_its_address_route_and_files() {
    if !need_root("a_container_on_the_bridge_gets_its_address_route_and_files") {
        return;
    }
    let env = Env::new();
    let host = NetHost::new();
    busybox_image(&env, "bb", &[]);
    let show = "ip -4 addr show eth0; ip route; cat /etc/hosts /etc/resolv.conf; hostname";
    let out = host.ok(
        &env,
        &["run", "--rm", "--network", "bridge", "bb", "sh", "-c", show],
    );
    assert!(
        out.contains("eth0@") && out.contains("inet 10.88.0.2/16"),
        "{out}"
    );
    assert!(out.contains("default via 10.88.0.1 dev eth0"), "{out}");
    assert!(out.contains("127.0.0.1\tlocalhost\n"), "{out}");
    let hostname = out.trim_end().lines().last().unwrap();
    assert!(out.contains(&format!("10.88.0.2\t{hostname}\n")), "{out}");
    assert!(
        !out.contains("nameserver 127."),
        "loopback resolvers are dropped: {out}"
    );
    // --rm: its lease is given up, so the next container gets the same address again.
    let again = host.ok(
        &env,
        &[
            "run",
            "--rm",
            "--network",
            "bridge",
            "bb",
            "ip",
            "-4",
            "addr",
            "show",
            "eth0",
        ],
    );
    assert!(again.contains("inet 10.88.0.2/16"), "{again}");
    // Two at once get different addresses, and reach each other.
    let a = host.ok(
        &env,
        &["run", "-d", "--network", "bridge", "bb", "sleep", "30"],
    );
    let b = host.ok(
        &env,
        &[
            "run",
            "--rm",
            "--network",
            "bridge",
            "bb",
            "sh",
            "-c",
            "ip -4 addr show eth0; ping -c1 -W2 10.88.0.2 >/dev/null && echo reached",
        ],
    );
    assert!(
        b.contains("inet 10.88.0.3/16") && b.contains("reached"),
        "{b}"
    );
    host.ok(&env, &["rm", "-f", a.trim()]);
    assert_eq!(host.leftovers(), Vec::<String>::new());
    assert_eq!(host.ok(&env, &["ps", "-aq"]), "");
}

#[test]
fn restarts_keep_the_address_and_a_killed_runner_is_cleaned_up() {
    if !need_root("restarts_keep_the_address_and_a_killed_runner_is_cleaned_up") {
        return;
    }
    let env = Env::new();
    let host = NetHost::new();
    busybox_image(&env, "bb", &[]);
    host.ok(
        &env,
        &[
            "create",
            "--name",
            "first",
            "--network",
            "bridge",
            "bb",
            "sleep",
            "30",
        ],
    );
    host.ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            "second",
            "--network",
            "bridge",
            "-p",
            "18090:80",
            "bb",
            "sleep",
            "30",
        ],
    );
    host.ok(&env, &["start", "first"]);
    let ip = |name: &str| host.ok(&env, &["exec", name, "ip", "-4", "addr", "show", "eth0"]);
    assert!(ip("second").contains("inet 10.88.0.2/16"));
    assert!(ip("first").contains("inet 10.88.0.3/16"));
    host.ok(&env, &["restart", "-t", "0", "second"]);
    assert!(
        ip("second").contains("inet 10.88.0.2/16"),
        "a restart keeps its address"
    );
    // A monitor killed with -9 takes its container with it; `rm -f` then removes the rest.
    let pattern = format!("--root {} __monitor", env.root().display());
    let monitors = host.sh(&["pgrep", "-f", "--", &pattern]);
    assert!(monitors.lines().count() >= 2, "{monitors}");
    for pid in monitors.split_whitespace() {
        host.sh(&["kill", "-9", pid]);
    }
    std::thread::sleep(Duration::from_millis(300));
    host.ok(&env, &["rm", "-f", "first", "second"]);
    assert_eq!(host.leftovers(), Vec::<String>::new());
}

#[test]
fn bad_network_flags_fail_clearly_and_change_nothing() {
    let env = Env::new();
    busybox_image(&env, "bb", &[]);
    for (args, want) in [
        (
            &["-p", "99999:80"][..],
            "invalid port mapping \"99999:80\": port 99999 is out of range",
        ),
        (
            &["--network", "none", "-p", "8080:80"][..],
            "published ports need a network",
        ),
        (
            &["--network", "nosuchnet"][..],
            "network nosuchnet not found",
        ),
        (
            &["--network", "bridge", "--network-alias", "x"][..],
            "only supported for user-defined networks",
        ),
        (
            &["--hostname", "not_a-host!"][..],
            "invalid hostname format: not_a-host!",
        ),
        (
            &["--network-alias", "db\n10.0.0.1 bank"][..],
            "invalid network alias",
        ),
        (
            &["--network", "container:other", "--hostname", "h"][..],
            "conflicting options: hostname and the network mode",
        ),
    ] {
        let mut all = vec!["run", "--rm"];
        all.extend(args);
        all.extend(["bb", "true"]);
        let out = env.run(&all);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{all:?}: {err}");
        assert!(err.contains(want), "{all:?}: {err}");
    }
    // Nor is a container made for a network that does not exist.
    let err = env.fails(&["create", "--network", "nosuchnet", "bb", "true"]);
    assert!(err.contains("network nosuchnet not found"), "{err}");
    assert_eq!(env.ok(&["ps", "-aq"]), "");
    assert!(!env.root().join("networks/state.json").exists());
}

#[test]
fn outbound_connections_leave_through_nat() {
    if !need_root("outbound_connections_leave_through_nat") {
        return;
    }
    let env = Env::new();
    let host = NetHost::new();
    let uplink = host.uplink();
    busybox_image(&env, "bb", &[]);
    let listener = uplink.inside(|| std::net::TcpListener::bind("192.0.2.2:9000").unwrap());
    let server = std::thread::spawn(move || {
        let (mut conn, peer) = listener.accept().unwrap();
        let mut text = String::new();
        conn.read_to_string(&mut text).unwrap();
        (peer, text)
    });
    host.ok(
        &env,
        &[
            "run",
            "--rm",
            "--network",
            "bridge",
            "bb",
            "sh",
            "-c",
            "echo out | nc 192.0.2.2 9000",
        ],
    );
    let (peer, text) = server.join().unwrap();
    assert_eq!(text, "out\n");
    // Masqueraded: the uplink sees the host's address, not the container's 10.88.0.2.
    assert_eq!(peer.ip().to_string(), "192.0.2.1");
    assert_eq!(host.leftovers(), Vec::<String>::new());
}

/// Runs `strata ARGS` in `host` and returns (success, stdout and stderr together).
fn try_run(host: &NetHost, env: &Env, args: &[&str]) -> (bool, String) {
    let out = host.strata(env, args).output().unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// `try_run` again until it succeeds (a server still starting), for at most 10 s; its output.
fn until_ok(host: &NetHost, env: &Env, args: &[&str]) -> String {
    let t0 = Instant::now();
    loop {
        let (ok, out) = try_run(host, env, args);
        if ok {
            return out;
        }
        if t0.elapsed() > Duration::from_secs(10) {
            let (_, ps) = try_run(host, env, &["ps", "-a"]);
            panic!("strata {args:?}: {out}\n{ps}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `hosts` of running container `name`.
fn hosts_of(host: &NetHost, env: &Env, name: &str) -> String {
    host.ok(env, &["exec", name, "cat", "/etc/hosts"])
}

#[test]
fn containers_on_a_user_network_find_each_other_by_name() {
    if !need_root("containers_on_a_user_network_find_each_other_by_name") {
        return;
    }
    let env = Env::new();
    let host = NetHost::new();
    let site = web_image(&env);
    let id = host.ok(&env, &["network", "create", "front"]);
    assert_eq!(id.trim().len(), 64, "{id}");
    host.ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            "web",
            "--network",
            "front",
            "--network-alias",
            "www",
            "-v",
            &site,
            "web",
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/www",
        ],
    );
    // A container started later finds the first by its name and its alias.
    let got = host.ok(
        &env,
        &[
            "run",
            "--rm",
            "--network",
            "front",
            "web",
            "sh",
            "-c",
            "wget -qO- http://web/index.html && wget -qO- http://www/index.html",
        ],
    );
    assert_eq!(got, "hello from the container\n".repeat(2));
    // And the first finds one started after it: its hosts is rewritten in place.
    host.ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            "late",
            "--network",
            "front",
            "web",
            "sleep",
            "60",
        ],
    );
    let hosts = hosts_of(&host, &env, "web");
    assert!(hosts.contains("10.89.0.3\tlate "), "{hosts}");
    assert!(
        hosts.contains("10.89.0.2\t") && hosts.contains(" web www"),
        "{hosts}"
    );
    host.ok(&env, &["exec", "web", "ping", "-c1", "-W2", "late"]);
    // A stopped container is no longer named.
    host.ok(&env, &["stop", "-t", "0", "late"]);
    let hosts = hosts_of(&host, &env, "web");
    assert!(!hosts.contains("late"), "{hosts}");

    // Another network neither resolves nor reaches them.
    host.ok(&env, &["network", "create", "back"]);
    let (ok, out) = try_run(
        &host,
        &env,
        &[
            "run",
            "--rm",
            "--network",
            "back",
            "web",
            "sh",
            "-c",
            "ip -4 addr show eth0; ping -c1 -W1 web; wget -T 2 -qO- http://10.89.0.2/index.html",
        ],
    );
    assert!(!ok, "{out}");
    assert!(out.contains("inet 10.89.1.2/24"), "the next /24: {out}");
    assert!(out.contains("bad address 'web'"), "{out}");
    assert!(!out.contains("hello from the container"), "isolated: {out}");

    // An internal network has no way out: no default route.
    host.ok(&env, &["network", "create", "--internal", "sealed"]);
    let routes = host.ok(
        &env,
        &["run", "--rm", "--network", "sealed", "web", "ip", "route"],
    );
    assert!(!routes.contains("default"), "{routes}");
    assert!(routes.contains("10.89.2.0/24 dev eth0"), "{routes}");

    host.ok(&env, &["rm", "-f", "web", "late"]);
    host.ok(&env, &["network", "rm", "front", "back", "sealed"]);
    assert_eq!(host.leftovers(), Vec::<String>::new());
}

#[test]
fn network_commands_manage_networks_as_docker_does() {
    if !need_root("network_commands_manage_networks_as_docker_does") {
        return;
    }
    let env = Env::new();
    let host = NetHost::new();
    let _uplink = host.uplink();
    busybox_image(&env, "bb", &[]);
    host.ok(&env, &["network", "create", "one"]);
    for (args, want) in [
        (&["one"][..], "network with name one already exists"),
        (&["bridge"][..], "pre-defined network"),
        (
            &["--subnet", "10.89.0.0/25", "x"][..],
            "Pool overlaps with other one on this address space (10.89.0.0/24 on network one)",
        ),
        (
            &["--subnet", "10.88.5.0/24", "x"][..],
            "Pool overlaps with other one on this address space (10.88.0.0/16 on network bridge)",
        ),
        (
            &["--subnet", "192.0.2.0/24", "x"][..],
            "(192.0.2.0/24 on up0)",
        ),
        (
            &["--subnet", "10.50.0.5/24", "x"][..],
            "it should be 10.50.0.0/24",
        ),
        (
            &["--gateway", "10.50.0.1", "x"][..],
            "must have a corresponding subnet",
        ),
        (
            &["--subnet", "10.50.0.0/24", "--gateway", "10.51.0.1", "x"][..],
            "not a host address of subnet 10.50.0.0/24",
        ),
        (
            &["-d", "macvlan", "x"][..],
            "only bridge networks are supported",
        ),
        (&["bad name"][..], "invalid network name"),
    ] {
        let mut all = vec!["network", "create"];
        all.extend(args);
        let err = host.fails(&env, &all);
        assert!(err.contains(want), "{all:?}: {err}");
    }
    host.ok(
        &env,
        &[
            "network",
            "create",
            "--subnet",
            "10.50.0.0/24",
            "--gateway",
            "10.50.0.254",
            "--label",
            "team=a",
            "two",
        ],
    );
    let names = host.ok(
        &env,
        &["network", "ls", "--format", "{{.Name}} {{.Driver}}"],
    );
    assert_eq!(
        names,
        "bridge bridge\nhost host\nnone null\none bridge\ntwo bridge\n"
    );
    let table = host.ok(&env, &["network", "ls"]);
    assert!(
        table.starts_with("NETWORK ID     NAME      DRIVER    SCOPE\n"),
        "{table}"
    );
    let custom = host.ok(
        &env,
        &[
            "network",
            "ls",
            "-f",
            "type=custom",
            "--format",
            "{{.Name}}",
        ],
    );
    assert_eq!(custom, "one\ntwo\n");
    let labelled = host.ok(&env, &["network", "ls", "-q", "--filter", "label=team=a"]);
    let two_id = host.ok(&env, &["network", "inspect", "-f", "{{.Id}}", "two"]);
    assert_eq!(labelled.trim(), &two_id.trim()[..12]);
    let ipam = "{{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}}";
    assert_eq!(
        host.ok(
            &env,
            &["network", "inspect", "-f", ipam, "one", &two_id.trim()[..6]]
        ),
        "10.89.0.0/24 10.89.0.1\n10.50.0.0/24 10.50.0.254\n"
    );

    // Running containers are its endpoints, as docker shows them; it cannot go then.
    host.ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            "member",
            "--network",
            "two",
            "bb",
            "sleep",
            "60",
        ],
    );
    let members = host.ok(
        &env,
        &[
            "network",
            "inspect",
            "-f",
            "{{range .Containers}}{{.Name}} {{.IPv4Address}} {{.MacAddress}}{{end}}",
            "two",
        ],
    );
    assert_eq!(members, "member 10.50.0.1/24 02:42:0a:32:00:01\n");
    let err = host.fails(&env, &["network", "rm", "two"]);
    assert!(
        err.contains("network two id") && err.contains("has active endpoints"),
        "{err}"
    );
    let err = host.fails(&env, &["network", "rm", "bridge"]);
    assert!(
        err.contains("bridge is a pre-defined network and cannot be removed"),
        "{err}"
    );
    let err = host.fails(&env, &["network", "inspect", "nosuch"]);
    assert!(err.contains("network nosuch not found"), "{err}");

    // prune takes the networks no container runs on; a stopped one's start then fails.
    host.ok(
        &env,
        &["create", "--name", "idle", "--network", "one", "bb", "true"],
    );
    host.ok(&env, &["start", "-a", "idle"]);
    assert_eq!(
        host.ok(&env, &["network", "prune", "-f"]),
        "Deleted Networks:\none\n"
    );
    let err = host.fails(&env, &["start", "idle"]);
    assert!(err.contains("network one not found"), "{err}");
    host.ok(&env, &["rm", "-f", "member", "idle"]);
    assert_eq!(
        host.ok(&env, &["network", "prune", "-f"]),
        "Deleted Networks:\ntwo\n"
    );
    assert_eq!(host.ok(&env, &["network", "ls", "-q"]).lines().count(), 3);
    assert_eq!(host.leftovers(), Vec::<String>::new());
}

#[test]
fn connect_and_disconnect_change_a_containers_networks() {
    if !need_root("connect_and_disconnect_change_a_containers_networks") {
        return;
    }
    let env = Env::new();
    let host = NetHost::new();
    let site = web_image(&env);
    host.ok(&env, &["network", "create", "front"]);
    host.ok(&env, &["network", "create", "back"]);
    host.ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            "web",
            "--network",
            "front",
            "-v",
            &site,
            "web",
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/www",
        ],
    );
    // Plugged while it runs: a second interface, and a name on that network.
    host.ok(
        &env,
        &["network", "connect", "--alias", "site", "back", "web"],
    );
    let eth1 = host.ok(&env, &["exec", "web", "ip", "-4", "addr", "show", "eth1"]);
    assert!(eth1.contains("inet 10.89.1.2/24"), "{eth1}");
    let got = host.ok(
        &env,
        &[
            "run",
            "--rm",
            "--network",
            "back",
            "web",
            "wget",
            "-qO-",
            "http://site/index.html",
        ],
    );
    assert_eq!(got, "hello from the container\n");
    let err = host.fails(&env, &["network", "connect", "back", "web"]);
    assert!(
        err.contains("endpoint with name web already exists in network back"),
        "{err}"
    );

    // Unplugged: the interface and the name go.
    host.ok(&env, &["network", "disconnect", "back", "web"]);
    let (ok, out) = try_run(&host, &env, &["exec", "web", "ip", "link", "show", "eth1"]);
    assert!(!ok, "{out}");
    let (ok, out) = try_run(
        &host,
        &env,
        &[
            "run",
            "--rm",
            "--network",
            "back",
            "web",
            "ping",
            "-c1",
            "-W1",
            "site",
        ],
    );
    assert!(!ok && out.contains("bad address 'site'"), "{out}");
    let err = host.fails(&env, &["network", "disconnect", "back", "web"]);
    assert!(
        err.contains("container web is not connected to network back"),
        "{err}"
    );

    // A container not yet started gets the network at its start, after its own.
    host.ok(
        &env,
        &[
            "create",
            "--name",
            "later",
            "--network",
            "bridge",
            "web",
            "sleep",
            "60",
        ],
    );
    host.ok(&env, &["network", "connect", "front", "later"]);
    host.ok(&env, &["start", "later"]);
    let addrs = host.ok(&env, &["exec", "later", "ip", "-4", "addr"]);
    assert!(
        addrs.contains("inet 10.88.0.2/16") && addrs.contains("inet 10.89.0.3/24"),
        "{addrs}"
    );
    host.ok(&env, &["exec", "later", "ping", "-c1", "-W2", "web"]);
    let ps = host.ok(&env, &["ps", "--format", "{{.Names}} {{.Networks}}"]);
    assert_eq!(ps, "later bridge,front\nweb front\n");

    host.ok(
        &env,
        &[
            "create",
            "--name",
            "alone",
            "--network",
            "none",
            "web",
            "true",
        ],
    );
    let err = host.fails(&env, &["network", "connect", "front", "alone"]);
    assert!(err.contains("cannot be connected to networks"), "{err}");

    host.ok(&env, &["rm", "-f", "web", "later", "alone"]);
    host.ok(&env, &["network", "rm", "front", "back"]);
    assert_eq!(host.leftovers(), Vec::<String>::new());
}

#[test]
fn a_container_can_share_another_containers_network() {
    if !need_root("a_container_can_share_another_containers_network") {
        return;
    }
    let env = Env::new();
    let host = NetHost::new();
    let site = web_image(&env);
    host.ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            "web",
            "--hostname",
            "webhost",
            "--network",
            "bridge",
            "-v",
            &site,
            "web",
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/www",
        ],
    );
    let out = host.ok(
        &env,
        &[
            "run",
            "--rm",
            "--network",
            "container:web",
            "web",
            "sh",
            "-c",
            "ip -4 addr show eth0; wget -qO- http://127.0.0.1/index.html; cat /etc/hosts",
        ],
    );
    assert!(out.contains("inet 10.88.0.2/16"), "{out}");
    assert!(out.contains("hello from the container\n"), "{out}");
    assert!(
        out.contains("10.88.0.2\twebhost"),
        "its hosts file is shared: {out}"
    );

    // An exec into a container sharing it is in that namespace too.
    host.ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            "side",
            "--network",
            "container:web",
            "web",
            "sleep",
            "60",
        ],
    );
    let side = host.ok(&env, &["exec", "side", "ip", "-4", "addr", "show", "eth0"]);
    assert!(side.contains("inet 10.88.0.2/16"), "{side}");
    host.ok(&env, &["rm", "-f", "side"]);

    host.ok(&env, &["stop", "-t", "0", "web"]);
    let err = host.fails(
        &env,
        &["run", "--rm", "--network", "container:web", "web", "true"],
    );
    assert!(
        err.contains("cannot join network of a non running container: web"),
        "{err}"
    );
    let err = host.fails(
        &env,
        &[
            "run",
            "--rm",
            "--network",
            "container:nosuch",
            "web",
            "true",
        ],
    );
    assert!(err.contains("no such container: nosuch"), "{err}");
    host.ok(&env, &["rm", "-f", "web"]);
    assert_eq!(host.leftovers(), Vec::<String>::new());
    assert_eq!(host.ok(&env, &["ps", "-aq"]), "");
}

#[test]
fn wasm_and_native_containers_talk_by_name_both_ways() {
    if !need_root("wasm_and_native_containers_talk_by_name_both_ways") {
        return;
    }
    let env = Env::new();
    let host = NetHost::new();
    busybox_image(&env, "bb", &[]);
    let (_, p2) = crate::common::probe();
    let image = env.wasm_image(&p2, "probe", true);
    host.ok(&env, &["network", "create", "mixed"]);
    // A guest listening on port 80 of its own address, published on 18085.
    host.ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            "wsrv",
            "--network",
            "mixed",
            "-p",
            "18085:80",
            &image,
            "serve",
            "80",
            "3",
        ],
    );
    host.ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            "nat",
            "--network",
            "mixed",
            "bb",
            "sh",
            "-c",
            "while :; do echo hello-from-native | nc -l -p 7000; done",
        ],
    );
    // Native to Wasm by name (once the guest listens).
    let out = until_ok(
        &host,
        &env,
        &[
            "run",
            "--rm",
            "--network",
            "mixed",
            "bb",
            "nc",
            "wsrv",
            "80",
        ],
    );
    assert_eq!(out, "hello from wasm\n");
    // The host through the published port.
    let got = host.inside(|| {
        let mut s = TcpStream::connect("127.0.0.1:18085").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text
    });
    assert_eq!(got, "hello from wasm\n");
    // Wasm to native by name, from a new guest and from one exec'd into the running one
    // (it joins the guest's namespaces).
    let out = until_ok(
        &host,
        &env,
        &[
            "run",
            "--rm",
            "--network",
            "mixed",
            &image,
            "connect",
            "nat:7000",
        ],
    );
    assert_eq!(out, "received: hello-from-native\n");
    let out = host.ok(
        &env,
        &["exec", "wsrv", "/hello.wasm", "connect", "nat:7000"],
    );
    assert_eq!(out, "received: hello-from-native\n");
    // Wasm to Wasm by name: its third connection, after which it exits 0.
    let out = host.ok(
        &env,
        &[
            "run",
            "--rm",
            "--network",
            "mixed",
            &image,
            "connect",
            "wsrv:80",
        ],
    );
    assert_eq!(out, "received: hello from wasm\n");
    assert_eq!(host.ok(&env, &["wait", "wsrv"]), "0\n");
    // The guest's name files were bound in its own mount namespace, never the machine's.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(" /etc/hosts "), "{mounts}");

    host.ok(&env, &["rm", "-f", "wsrv", "nat"]);
    host.ok(&env, &["network", "rm", "mixed"]);
    assert_eq!(host.leftovers(), Vec::<String>::new());
}

#[test]
fn rootless_containers_publish_ports_and_reach_out_through_pasta_or_slirp4netns() {
    if !need_root("rootless_containers_publish_ports_and_reach_out_through_pasta_or_slirp4netns") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata("/dev/net/tun")
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(
        mode, 0o666,
        "/dev/net/tun must be 0666 (tests/setup.sh makes it so)"
    );
    let env = Env::new();
    let host = NetHost::new();
    let uplink = host.uplink();
    // pasta copies the host's addresses and routes: it needs a way out.
    host.sh(&["ip", "route", "add", "default", "via", "192.0.2.2"]);
    web_image(&env);
    let user = "strata-pasta";
    let home = crate::common::host_user(user);
    crate::common::sh(&format!(
        "rm -rf {home}/store {home}/site && cp {} {home}/web.tar && cp -r {} {home}/site && chown -R {user} {home}",
        env.path("web-rootfs.tar").display(),
        env.path("site").display(),
    ));
    let strata = format!("{} --root {home}/store", env!("CARGO_BIN_EXE_strata"));
    // `sh -c SCRIPT` as the user, in the test's namespace; (success, stdout + stderr).
    let as_user = |script: &str| -> (bool, String) {
        let out = Command::new("nsenter")
            .arg(format!("--net={}", host.path.display()))
            .args([
                "setpriv",
                "--reuid",
                user,
                "--regid",
                user,
                "--init-groups",
                "--",
            ])
            .args(["sh", "-c", script])
            .env("HOME", &home)
            .env_remove("STRATA_ROOT")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    };
    let ok = |script: &str| {
        let (ok, out) = as_user(script);
        assert!(ok, "{script}: {out}");
        out
    };
    let pastas = || {
        let out = Command::new("pgrep")
            .args(["-u", user, "passt|pasta"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    let none_left = |after: &str| {
        let t0 = Instant::now();
        while pastas() > 0 {
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "pasta outlived {after}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    ok(&format!("{strata} import {home}/web.tar web"));
    ok(&format!(
        "{strata} run -d --name web --network bridge -p 18080:80 -p 127.0.0.1:18081:81 \
         -v {home}/site:/www web sh -c 'httpd -p 80 -h /www; httpd -f -p 81 -h /www'"
    ));
    for addr in ["127.0.0.1:18080", "192.0.2.1:18080", "127.0.0.1:18081"] {
        assert_eq!(
            host.get(addr, "/index.html"),
            "hello from the container\n",
            "{addr}"
        );
    }
    assert_eq!(
        ok(&format!("{strata} port web")),
        "80/tcp -> 0.0.0.0:18080\n81/tcp -> 127.0.0.1:18081\n"
    );
    assert_eq!(pastas(), 1, "one pasta for the running container");
    // Sharing its namespace (and its user namespace, which owns it), rootless too.
    let shared = ok(&format!(
        "{strata} run --rm --network container:web web sh -c \
         'ip -4 addr show up0; wget -qO- http://127.0.0.1:81/index.html'"
    ));
    assert!(shared.contains("inet 192.0.2.1/24"), "{shared}");
    assert!(shared.contains("hello from the container"), "{shared}");
    // A port taken: docker's words, nothing started.
    let (taken, out) = as_user(&format!(
        "{strata} run --rm --network bridge -p 18080:80 web true"
    ));
    assert!(
        !taken && out.contains("Bind for 0.0.0.0:18080 failed: port is already allocated"),
        "{out}"
    );
    assert_eq!(pastas(), 1);

    // Outbound: through the host's own sockets, so the far side sees the host's address.
    let listener = uplink.inside(|| std::net::TcpListener::bind("192.0.2.2:9000").unwrap());
    let server = std::thread::spawn(move || {
        let (mut conn, peer) = listener.accept().unwrap();
        let mut text = String::new();
        conn.read_to_string(&mut text).unwrap();
        (peer, text)
    });
    ok(&format!(
        "{strata} run --rm --network bridge web sh -c 'echo out | nc 192.0.2.2 9000'"
    ));
    let (peer, text) = server.join().unwrap();
    assert_eq!(
        (peer.ip().to_string().as_str(), text.as_str()),
        ("192.0.2.1", "out\n")
    );

    // rm, and kill -9 of a monitor then rm -f: no pasta is left.
    ok(&format!("{strata} rm -f web"));
    none_left("its container");
    ok(&format!(
        "{strata} run -d --name again --network bridge -p 18080:80 web sleep 60"
    ));
    assert_eq!(pastas(), 1);
    let monitors = host.sh(&["pgrep", "-u", user, "-f", "__monitor"]);
    for pid in monitors.split_whitespace() {
        host.sh(&["kill", "-9", pid]);
    }
    ok(&format!("{strata} rm -f again"));
    none_left("its killed runner");
    // Without pasta, slirp4netns serves (a PATH with it and the id-map helpers only); it
    // ends by itself when its runner is killed.
    crate::common::sh(&format!(
        "mkdir -p {home}/nopasta && for t in slirp4netns newuidmap newgidmap; do ln -sf \"$(command -v $t)\" {home}/nopasta/$t; done"
    ));
    let no_pasta = format!("PATH={home}/nopasta:/usr/sbin:/sbin; export PATH; {strata}");
    ok(&format!(
        "{no_pasta} run -d --name slow --network bridge -p 18083:80 -v {home}/site:/www web httpd -f -p 80 -h /www"
    ));
    assert_eq!(
        host.get("127.0.0.1:18083", "/index.html"),
        "hello from the container\n"
    );
    assert_eq!(pastas(), 0, "slirp4netns, not pasta");
    let slirps = || {
        let out = Command::new("pgrep")
            .args(["-u", user, "-x", "slirp4netns"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    assert_eq!(slirps(), 1);
    let resolv = ok(&format!("{no_pasta} exec slow cat /etc/resolv.conf"));
    assert_eq!(resolv, "nameserver 10.0.2.3\n");
    for pid in host
        .sh(&["pgrep", "-u", user, "-f", "__monitor"])
        .split_whitespace()
    {
        host.sh(&["kill", "-9", pid]);
    }
    let t0 = Instant::now();
    while slirps() > 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "slirp4netns outlived its killed runner"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    ok(&format!("{strata} rm -f slow"));

    // User networks are not rootless yet: a clear refusal.
    ok(&format!("{strata} network create mine"));
    let (ran, out) = as_user(&format!("{strata} run --rm --network mine web true"));
    assert!(
        !ran && out.contains("rootless containers use bridge"),
        "{out}"
    );
}

#[test]
fn publish_all_puts_every_exposed_port_on_a_free_host_port() {
    if !need_root("publish_all_puts_every_exposed_port_on_a_free_host_port") {
        return;
    }
    let env = Env::new();
    let host = NetHost::new();
    let site = web_image(&env); // EXPOSE 80 and 81
    host.ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            "web",
            "--network",
            "bridge",
            "-P",
            "-p",
            "18070:81",
            "-v",
            &site,
            "web",
            "sh",
            "-c",
            "httpd -p 80 -h /www; httpd -f -p 81 -h /www",
        ],
    );
    let ports = host.ok(&env, &["port", "web"]);
    let mut lines = ports.lines();
    let first = lines.next().unwrap_or_default();
    // 80 on a port the kernel chose; 81 where -p put it (-P leaves it alone).
    let chosen: u16 = first
        .strip_prefix("80/tcp -> 0.0.0.0:")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{ports}"));
    assert_ne!(chosen, 0, "{ports}");
    assert_eq!(
        lines.collect::<Vec<_>>(),
        ["81/tcp -> 0.0.0.0:18070"],
        "{ports}"
    );
    for addr in [format!("127.0.0.1:{chosen}"), "127.0.0.1:18070".to_string()] {
        assert_eq!(
            host.get(&addr, "/index.html"),
            "hello from the container\n",
            "{addr}"
        );
    }
    host.ok(&env, &["rm", "-f", "web"]);
    assert_eq!(host.leftovers(), Vec::<String>::new());
}
