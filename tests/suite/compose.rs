//! `strata compose`: stacks of native and Wasm services from a compose file, brought up and
//! down inside a network namespace made for each test (their bridges and rules stay in it).

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{self, busybox_image, probe, Env};
use crate::network::NetHost;

/// A project directory and its namespace.
struct Stack {
    env: Env,
    host: NetHost,
    dir: PathBuf,
}

impl Stack {
    fn new(test: &str, compose_yaml: &str) -> Option<Stack> {
        if !common::need_root(test) || !common::tools(test, &["busybox"]) {
            return None;
        }
        let env = Env::new();
        busybox_image(&env, "bb:test", &["CMD [\"sh\"]"]);
        let dir = env.path("proj");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("compose.yaml"), compose_yaml).unwrap();
        Some(Stack {
            env,
            host: NetHost::new(),
            dir,
        })
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = self.host.strata(&self.env, args);
        c.current_dir(&self.dir).env_remove("COMPOSE_PROJECT_NAME");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "strata {args:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn compose(&self, args: &[&str]) -> String {
        let mut all = vec!["compose"];
        all.extend(args);
        self.ok(&all)
    }

    fn inspect(&self, name: &str, format: &str) -> String {
        self.ok(&["inspect", "-f", format, name]).trim().to_string()
    }

    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .ok(&["ps", "-a", "--format", "{{.Names}}"])
            .lines()
            .map(String::from)
            .collect();
        names.sort();
        names
    }
}

fn time(s: &str) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

/// web built from the project's Dockerfile, db with a healthcheck that turns healthy after a
/// second, a named volume, two networks: names, labels, order, lookups by name.
const BASIC: &str = r#"
name: proj
services:
  web:
    build: .
    command: ["sh", "-c", "nc db 5000 > /data/from-db; sleep 300"]
    volumes: [data:/data]
    networks: [front, back]
    depends_on:
      db:
        condition: service_healthy
  db:
    image: bb:test
    command: sh -c 'sleep 1; touch /ready; while :; do echo hello-from-db | nc -l -p 5000; done'
    networks: [back]
    healthcheck:
      test: ["CMD", "test", "-f", "/ready"]
      interval: 200ms
      retries: 50
volumes:
  data:
networks:
  front:
  back:
"#;

#[test]
fn a_stack_comes_up_in_order_and_goes_down() {
    let Some(stack) = Stack::new("compose::a_stack_comes_up_in_order_and_goes_down", BASIC) else {
        return;
    };
    std::fs::write(
        stack.dir.join("Dockerfile"),
        "FROM bb:test\nRUN echo built > /built\n",
    )
    .unwrap();
    stack.compose(&["up", "-d"]);
    assert_eq!(stack.names(), ["proj-db-1", "proj-web-1"]);
    assert_eq!(
        stack.inspect("proj-web-1", "{{index .Config.Labels \"com.docker.compose.project\"}} {{index .Config.Labels \"com.docker.compose.service\"}}"),
        "proj web"
    );
    // web started only once db was healthy (db turns healthy a second after it starts).
    let db_started = time(&stack.inspect("proj-db-1", "{{.State.StartedAt}}"));
    let web_started = time(&stack.inspect("proj-web-1", "{{.State.StartedAt}}"));
    assert!(
        web_started - db_started >= chrono::Duration::milliseconds(900),
        "{db_started} {web_started}"
    );
    assert_eq!(
        stack.inspect("proj-db-1", "{{.State.Health.Status}}"),
        "healthy"
    );
    // web reached db by its service name, wrote into the named volume; it was built.
    let t0 = Instant::now();
    while stack
        .ok(&["exec", "proj-web-1", "cat", "/data/from-db"])
        .is_empty()
    {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "web never heard from db"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        stack.ok(&["exec", "proj-web-1", "cat", "/data/from-db"]),
        "hello-from-db\n"
    );
    assert_eq!(
        stack.ok(&["exec", "proj-web-1", "cat", "/built"]),
        "built\n"
    );
    let volumes = stack.ok(&["volume", "ls", "-q"]);
    assert!(volumes.lines().any(|v| v == "proj_data"), "{volumes}");
    let networks = stack.ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(
        networks.contains("proj_front\n") && networks.contains("proj_back\n"),
        "{networks}"
    );
    let ps = stack.compose(&["ps"]);
    assert!(
        ps.contains("proj-web-1") && ps.contains(" web ") && ps.contains("(healthy)"),
        "{ps}"
    );

    // up -d again: nothing recreated.
    let ids = stack.ok(&["ps", "-q", "--no-trunc"]);
    stack.compose(&["up", "-d"]);
    assert_eq!(stack.ok(&["ps", "-q", "--no-trunc"]), ids);
    // A changed service is recreated, the other kept.
    let db_id = stack.inspect("proj-db-1", "{{.Id}}");
    let web_id = stack.inspect("proj-web-1", "{{.Id}}");
    std::fs::write(
        stack.dir.join("compose.yaml"),
        BASIC.replace("sleep 300", "sleep 301"),
    )
    .unwrap();
    stack.compose(&["up", "-d"]);
    assert_eq!(stack.inspect("proj-db-1", "{{.Id}}"), db_id);
    assert_ne!(stack.inspect("proj-web-1", "{{.Id}}"), web_id);

    // down: containers and networks go, the volume stays; down -v takes it.
    stack.compose(&["down"]);
    assert!(stack.names().is_empty());
    let networks = stack.ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(!networks.contains("proj_"), "{networks}");
    assert!(stack.ok(&["volume", "ls", "-q"]).contains("proj_data"));
    stack.ok(&["volume", "create", "unrelated"]);
    stack.compose(&["up", "-d", "db"]);
    assert_eq!(stack.names(), ["proj-db-1"], "only db and what it needs");
    stack.compose(&["down", "-v"]);
    assert_eq!(stack.ok(&["volume", "ls", "-q"]), "unrelated\n");
    common::assert_store_consistent(&stack.env.root());
}

#[test]
fn merge_keys_interpolation_and_dot_env() {
    let yaml = r#"
x-common: &common
  restart: unless-stopped
  environment:
    MODE: shared
    LITERAL: "$$HOME"
services:
  one:
    <<: *common
    image: "bb:${TAG:-latest}"
    command: ["sh", "-c", "echo $$MODE $$LITERAL ${GREETING}; sleep 300"]
  two:
    <<: *common
    image: bb:test
    command: sleep 300
    ports: ["127.0.0.1:${PORT:-18099}:80"]
"#;
    let Some(stack) = Stack::new("compose::merge_keys_interpolation_and_dot_env", yaml) else {
        return;
    };
    std::fs::write(
        stack.dir.join(".env"),
        "TAG=test\nGREETING=from-dot-env\nPORT=18098\n",
    )
    .unwrap();
    let config = stack.compose(&["config"]);
    assert!(
        config.contains("image: bb:test") && config.contains("127.0.0.1:18098:80"),
        "{config}"
    );
    assert!(
        config.contains("name: proj\n"),
        "the directory names the project: {config}"
    );
    // The process's environment wins over .env.
    let out = stack
        .cmd(&["compose", "config"])
        .env("PORT", "18097")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("127.0.0.1:18097:80"));
    stack.compose(&["up", "-d"]);
    assert_eq!(stack.names(), ["proj-one-1", "proj-two-1"]);
    for c in ["proj-one-1", "proj-two-1"] {
        assert_eq!(
            stack.inspect(c, "{{.HostConfig.RestartPolicy.Name}}"),
            "unless-stopped"
        );
    }
    let t0 = Instant::now();
    while stack.ok(&["logs", "proj-one-1"]).is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        stack.ok(&["logs", "proj-one-1"]),
        "shared $HOME from-dot-env\n"
    );
    assert_eq!(
        stack.ok(&["port", "proj-two-1"]),
        "80/tcp -> 127.0.0.1:18098\n"
    );
    stack.compose(&["down"]);

    // A required variable's own message, exit 1; a file that is not YAML; a cycle.
    std::fs::write(
        stack.dir.join("req.yaml"),
        "services:\n  a:\n    image: \"${REQ:?need REQ}\"\n",
    )
    .unwrap();
    let out = stack.run(&["compose", "-f", "req.yaml", "config"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("required variable REQ is missing a value: need REQ"));
    std::fs::write(
        stack.dir.join("cycle.yaml"),
        "services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n    depends_on: [a]\n",
    )
    .unwrap();
    let out = stack.run(&["compose", "-f", "cycle.yaml", "up", "-d"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("dependency cycle detected"));
    std::fs::write(
        stack.dir.join("unknown.yaml"),
        "services:\n  a:\n    image: x\n    colour: red\n",
    )
    .unwrap();
    let out = stack.run(&["compose", "-f", "unknown.yaml", "config"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field `colour`"));
    assert!(stack.names().is_empty());
}

#[test]
fn a_wasm_service_reaches_a_native_one_by_name() {
    let yaml = r#"
services:
  db:
    image: bb:test
    command: sh -c 'while :; do echo hello-from-db | nc -l -p 5000; done'
  client:
    image: probe
    platform: wasi/wasm
    command: ["connect", "db:5000"]
    depends_on: [db]
"#;
    let Some(stack) = Stack::new("compose::a_wasm_service_reaches_a_native_one_by_name", yaml)
    else {
        return;
    };
    let (_, p2) = probe();
    stack.env.wasm_image(&p2, "probe", true);
    // The client may try before db listens: up again (it runs once) until it has heard.
    let t0 = Instant::now();
    loop {
        stack.compose(&["up", "-d"]);
        let _ = stack.ok(&["wait", "proj-client-1"]);
        if stack.ok(&["logs", "proj-client-1"]) == "received: hello-from-db\n" {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{}",
            stack.ok(&["logs", "proj-client-1"])
        );
        stack.ok(&["rm", "proj-client-1"]);
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(stack.inspect("proj-client-1", "{{.Platform}}"), "wasi");
    stack.compose(&["down"]);
}

#[test]
fn attached_up_prefixes_logs_and_stops_on_sigint() {
    let yaml = r#"
services:
  web:
    image: bb:test
    command: sh -c 'trap "echo web stops; exit 0" TERM; echo web ready; while :; do sleep 0.1; done'
  worker:
    image: bb:test
    command: sh -c 'trap "exit 0" TERM; echo worker ready; while :; do sleep 0.1; done'
"#;
    let Some(stack) = Stack::new(
        "compose::attached_up_prefixes_logs_and_stops_on_sigint",
        yaml,
    ) else {
        return;
    };
    let child = stack
        .cmd(&["compose", "up"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while stack.names().len() < 2
        || stack.ok(&["logs", "proj-web-1"]).is_empty()
        || stack.ok(&["logs", "proj-worker-1"]).is_empty()
    {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the stack never came up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    // SIGINT, as Ctrl-C sends it (nsenter has exec'd compose: it is the child itself).
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("web-1     | web ready\n"), "{text}");
    assert!(text.contains("worker-1  | worker ready\n"), "{text}");
    assert!(
        text.contains("web-1     | web stops\n"),
        "stopped with its stop signal: {text}"
    );
    assert_eq!(
        stack.inspect("proj-web-1", "{{.State.Status}} {{.State.ExitCode}}"),
        "exited 0"
    );
    assert_eq!(
        stack.inspect("proj-worker-1", "{{.State.Status}}"),
        "exited"
    );
    stack.compose(&["down"]);
}

#[test]
fn a_failed_up_leaves_nothing_started() {
    let yaml = r#"
services:
  app:
    image: bb:test
    command: sleep 300
    depends_on:
      db:
        condition: service_healthy
  db:
    image: bb:test
    command: sleep 300
    healthcheck:
      test: ["CMD", "false"]
      interval: 100ms
      retries: 2
"#;
    let Some(stack) = Stack::new("compose::a_failed_up_leaves_nothing_started", yaml) else {
        return;
    };
    let out = stack.run(&["compose", "up", "-d"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("dependency failed to start: container proj-db-1 is unhealthy"),
        "{err}"
    );
    assert!(stack.names().is_empty(), "{:?}", stack.names());
}

/// examples/stack: the Wasm front end answers through its published port with what the
/// native backend, reached by its service name, counted in its named volume; the count
/// outlives `down` and goes with `down -v`.
#[test]
fn the_example_stack_answers_through_its_published_port() {
    let Some(stack) = Stack::new(
        "compose::the_example_stack_answers_through_its_published_port",
        "",
    ) else {
        return;
    };
    common::guest_component("examples/stack/front", "front");
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/stack/compose.yaml");
    let compose = |args: &[&str]| {
        let mut all = vec!["compose", "-f", file];
        all.extend(args);
        let out = stack
            .cmd(&all)
            .env("BASE_IMAGE", "bb:test")
            .env("FRONT_PORT", "18091")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "compose {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let get = || {
        stack.host.sh(&[
            "curl",
            "-s",
            "--retry",
            "20",
            "--retry-connrefused",
            "--retry-delay",
            "0",
            "--max-time",
            "10",
            "127.0.0.1:18091/",
        ])
    };
    compose(&["up", "-d"]);
    let first = get();
    assert!(
        first.starts_with("front (wasm) -> backend:8080 (native): visit 1,"),
        "{first}"
    );
    assert!(get().contains("visit 2,"));
    compose(&["down"]);
    compose(&["up", "-d"]);
    let again = get();
    assert!(
        again.contains("visit 3,"),
        "the volume kept the count: {again}"
    );
    compose(&["down", "-v"]);
    assert!(stack.names().is_empty());
    assert!(!stack.ok(&["volume", "ls", "-q"]).contains("stack_pages"));
}
