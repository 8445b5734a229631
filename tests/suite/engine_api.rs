//! The Docker Engine API (`strata system service`) driven by the stock docker CLI (28.x,
//! on these machines), and by raw requests for docker's error answers. The service runs on
//! a socket in the test's directory; containers it starts outlive it under their monitors,
//! and the `Env` kills those at the end.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{self, busybox_image, Env};
use crate::network::NetHost;

/// A running `strata system service` on a socket of `env`'s, stopped when dropped.
struct Service {
    child: Child,
    socket: PathBuf,
}

impl Service {
    fn start(env: &Env, netns: Option<&NetHost>) -> Service {
        let socket = env.path("api.sock");
        let uri = format!("unix://{}", socket.display());
        let args = ["system", "service", uri.as_str()];
        let mut cmd = match netns {
            Some(host) => host.strata(env, &args),
            None => env.cmd(&args),
        };
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        while !socket.exists() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "the service never listened"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Service { child, socket }
    }

    /// The docker CLI, talking to this service.
    fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.socket.display()))
            .env("DOCKER_CONFIG", self.socket.with_file_name("docker-config"))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// One raw request (curl over the socket): the status and the body.
    fn raw(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let mut args = vec![
            "-s".to_string(),
            "-o".into(),
            "-".into(),
            "-w".into(),
            "\n%{http_code}".into(),
            "--unix-socket".into(),
            self.socket.display().to_string(),
            "-X".into(),
            method.into(),
        ];
        if let Some(b) = body {
            args.extend([
                "-H".into(),
                "Content-Type: application/json".into(),
                "-d".into(),
                b.into(),
            ]);
        }
        args.push(format!("http://localhost{path}"));
        let out = Command::new("curl").args(&args).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap();
        (code.parse().unwrap(), body.to_string())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An image's short ID as `strata images -q` prints it.
fn id_of(env: &Env, image: &str) -> String {
    env.ok(&["images", "-q", image]).trim().to_string()
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn setup(test: &str) -> Option<Env> {
    if !common::need_root(test) || !common::tools(test, &["docker", "busybox", "curl"]) {
        return None;
    }
    let env = Env::new();
    busybox_image(&env, "bb:1", &["CMD [\"sh\"]"]);
    Some(env)
}

#[test]
fn the_docker_cli_runs_containers_through_the_api() {
    let Some(env) = setup("engine_api::the_docker_cli_runs_containers_through_the_api") else {
        return;
    };
    let api = Service::start(&env, None);
    let version = api.ok(&["version"]);
    assert!(version.contains("Server: Strata Engine"), "{version}");
    // The server's line; the client's says it negotiated down to 1.44 (a 28.x client) or
    // speaks its own older version (Debian's 20.10).
    assert!(
        version.contains("API version:      1.44 (minimum version 1.24)"),
        "{version}"
    );
    let images = api.ok(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]);
    let id = env.ok(&["images", "-q", "bb:1"]);
    assert_eq!(images, format!("bb:1 {}", id), "{images}");

    // run --rm: the output, and the status, also of a container that runs a while (the
    // wait/remove race), and nothing left.
    assert_eq!(api.ok(&["run", "--rm", "bb:1", "echo", "hello"]), "hello\n");
    let out = api.docker(&[
        "run",
        "--rm",
        "bb:1",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 7",
    ]);
    assert_eq!(code(&out), 7, "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    let out = api.docker(&["run", "--rm", "bb:1", "sh", "-c", "sleep 2; exit 3"]);
    assert_eq!(code(&out), 3);
    assert_eq!(api.ok(&["ps", "-aq"]), "");
    assert_eq!(env.ok(&["ps", "-aq"]), "");

    // A service: detached, listed, logged, exec'd into, stopped, waited on, removed.
    let id = api.ok(&[
        "run", "-d", "--name", "web", "bb:1", "sh", "-c",
        "trap 'exit 0' TERM; i=0; while :; do echo tick $i; echo e$i >&2; i=$((i+1)); sleep 0.1; done",
    ]);
    assert_eq!(id.trim().len(), 64, "{id}");
    let ps = api.ok(&["ps", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps.starts_with("web Up "), "{ps}");
    let t0 = Instant::now();
    while !api.ok(&["logs", "web"]).contains("tick 3") {
        assert!(t0.elapsed() < Duration::from_secs(10), "no output logged");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = api.docker(&["logs", "--tail", "2", "web"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("tick "),
        "{out:?}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with('e'),
        "{out:?}"
    );
    let out = api.docker(&["exec", "web", "sh", "-c", "echo in exec; exit 4"]);
    assert_eq!(code(&out), 4);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "in exec\n");
    assert_eq!(
        api.ok(&["inspect", "-f", "{{.State.Status}} {{.Name}}", "web"]),
        "running /web\n"
    );
    let top = api.ok(&["top", "web"]);
    assert!(top.starts_with("UID") && top.contains("trap"), "{top}");
    let df = api.ok(&["system", "df"]);
    assert!(df.contains("Local Volumes"), "{df}");
    let stats = api.ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.PIDs}}",
        "web",
    ]);
    assert!(
        stats.starts_with("web ") && !stats.contains(" 0\n"),
        "{stats}"
    );
    // cp both ways through the archive endpoints.
    let src = env.path("to-copy");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("sub/f"), "copied in\n").unwrap();
    api.ok(&["cp", &src.join("sub").display().to_string(), "web:/tmp/"]);
    assert_eq!(api.ok(&["exec", "web", "cat", "/tmp/sub/f"]), "copied in\n");
    let back = env.path("copied-out");
    api.ok(&["cp", "web:/tmp/sub", &back.display().to_string()]);
    assert_eq!(
        std::fs::read_to_string(back.join("f")).unwrap(),
        "copied in\n"
    );
    let out = api.docker(&["cp", "web:/no/such", &back.display().to_string()]);
    assert_ne!(code(&out), 0);
    // The server's 404 (a 28.x client prints it; 20.10's says it its own way).
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Could not find the file /no/such") || err.contains("No such container:path"),
        "{err}"
    );
    assert_eq!(api.ok(&["stop", "-t", "5", "web"]), "web\n");
    assert_eq!(api.ok(&["wait", "web"]), "0\n");
    // What the API did, the CLI sees: one store, one set of records.
    assert!(env
        .ok(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"])
        .starts_with("web Exited (0)"));
    assert_eq!(api.ok(&["rm", "web"]), "web\n");

    // diff, rename, history, container prune.
    api.ok(&[
        "run",
        "--name",
        "changed",
        "bb:1",
        "sh",
        "-c",
        "echo x > /tmp/new; rm /bin/ls",
    ]);
    let diff = api.ok(&["diff", "changed"]);
    assert!(
        diff.contains("A /tmp/new\n") && diff.contains("D /bin/ls\n"),
        "{diff}"
    );
    api.ok(&["rename", "changed", "renamed"]);
    assert_eq!(api.ok(&["ps", "-a", "--format", "{{.Names}}"]), "renamed\n");
    let history = api.ok(&["history", "--format", "{{.ID}} {{.Size}}", "bb:1"]);
    assert!(history.starts_with(&id_of(&env, "bb:1")), "{history}");
    let pruned = api.ok(&["container", "prune", "-f"]);
    assert!(pruned.contains("Deleted Containers:"), "{pruned}");
    assert_eq!(api.ok(&["ps", "-aq"]), "");

    // Volumes through the API, data kept between containers.
    assert_eq!(
        api.ok(&["volume", "create", "--label", "k=v", "vol1"]),
        "vol1\n"
    );
    api.ok(&[
        "run",
        "--rm",
        "-v",
        "vol1:/d",
        "bb:1",
        "sh",
        "-c",
        "echo kept > /d/f",
    ]);
    assert_eq!(
        api.ok(&["run", "--rm", "-v", "vol1:/d:ro", "bb:1", "cat", "/d/f"]),
        "kept\n"
    );
    assert_eq!(
        api.ok(&["volume", "ls", "-q", "--filter", "label=k=v"]),
        "vol1\n"
    );
    assert_eq!(api.ok(&["volume", "rm", "vol1"]), "vol1\n");

    // A Wasm image through the same endpoints: chosen from its config, output and status.
    let (_, p2) = crate::common::probe();
    env.wasm_image(&p2, "probe", true);
    let out = api.docker(&["run", "--rm", "probe", "exit", "9"]);
    assert_eq!(code(&out), 9, "{}", String::from_utf8_lossy(&out.stderr));
    let out = api.ok(&["run", "--rm", "-e", "WHO=api", "probe", "hello", "there"]);
    assert!(
        out.contains("env: WHO=api") && out.contains("\"there\""),
        "{out}"
    );
    api.ok(&["run", "-d", "--name", "wasm-svc", "probe", "sleep", "30"]);
    assert_eq!(
        api.ok(&["inspect", "-f", "{{.Platform}}", "wasm-svc"]),
        "wasi\n"
    );
    assert_eq!(
        api.ok(&["exec", "wasm-svc", "/hello.wasm", "exit", "0"]),
        "exiting with 0\n"
    );
    api.ok(&["rm", "-f", "wasm-svc"]);

    // Errors as docker's: the CLI prints the server's message and exits 1 (125 for run).
    let out = api.docker(&["inspect", "nosuch"]);
    assert_eq!(code(&out), 1);
    let out = api.docker(&["run", "--rm", "--pull", "never", "nosuch:1"]);
    assert_eq!(code(&out), 125);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nosuch"),
        "{out:?}"
    );
    api.ok(&["create", "--name", "twice", "bb:1"]);
    let out = api.docker(&["create", "--name", "twice", "bb:1"]);
    assert_ne!(code(&out), 0);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already in use"),
        "{out:?}"
    );
    common::assert_store_consistent(&env.root());
}

#[test]
fn bad_requests_get_dockers_answers() {
    let Some(env) = setup("engine_api::bad_requests_get_dockers_answers") else {
        return;
    };
    let api = Service::start(&env, None);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&api.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660, "the socket is for root and its group");
    let (status, body) = api.raw("GET", "/_ping", None);
    assert_eq!((status, body.as_str()), (200, "OK"));
    let (status, body) = api.raw("GET", "/v1.99/version", None);
    assert_eq!(status, 400);
    assert_eq!(
        body,
        r#"{"message":"client version 1.99 is too new. Maximum supported API version is 1.44"}"#
    );
    let (status, body) = api.raw("GET", "/v1.41/no/such/endpoint", None);
    assert_eq!(
        (status, body.as_str()),
        (404, r#"{"message":"page not found"}"#)
    );
    let (status, body) = api.raw("POST", "/containers/create", Some("{not json"));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("invalid JSON body"), "{body}");
    let (status, body) = api.raw(
        "POST",
        "/containers/create",
        Some(r#"{"Image":"nosuch:1"}"#),
    );
    assert_eq!(
        (status, body.as_str()),
        (404, r#"{"message":"No such image: nosuch:1"}"#)
    );
    let (status, body) = api.raw("POST", "/containers/nosuch/start", None);
    assert_eq!(
        (status, body.as_str()),
        (404, r#"{"message":"No such container: nosuch"}"#)
    );
    let (status, body) = api.raw(
        "POST",
        "/containers/create",
        Some(r#"{"Image":"bb:1","HostConfig":{"Binds":["/h:/"]}}"#),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("destination can't be '/'"), "{body}");
    let (status, _) = api.raw("GET", "/containers/json?filters=%7Bbad", None);
    assert_eq!(status, 400);
    // Nothing half made by the failed creates.
    assert_eq!(env.ok(&["ps", "-aq"]), "");
    common::assert_store_consistent(&env.root());
}

/// A user network through the API, inside a network namespace made for the test: two
/// containers reach each other by name.
#[test]
fn containers_on_a_network_made_through_the_api_meet_by_name() {
    let Some(env) = setup("engine_api::containers_on_a_network_made_through_the_api_meet_by_name")
    else {
        return;
    };
    let host = NetHost::new();
    let api = Service::start(&env, Some(&host));
    let id = api.ok(&["network", "create", "appnet"]);
    assert_eq!(id.trim().len(), 64, "{id}");
    assert!(api
        .ok(&["network", "ls", "--format", "{{.Name}}"])
        .contains("appnet\n"));
    api.ok(&[
        "run",
        "-d",
        "--name",
        "server",
        "--network",
        "appnet",
        "bb:1",
        "sh",
        "-c",
        "echo answer | nc -l -p 8080",
    ]);
    let out = api.ok(&[
        "run",
        "--rm",
        "--network",
        "appnet",
        "bb:1",
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6 7 8 9 10; do nc server 8080 && exit 0; sleep 0.2; done; exit 1",
    ]);
    assert_eq!(out, "answer\n");
    api.ok(&["rm", "-f", "server"]);
    assert_eq!(api.ok(&["network", "rm", "appnet"]), "appnet\n");
}

/// Push and pull through the API against a loopback `docker-registry`: docker's progress
/// stream, and `run` of an image that is not local pulling it (the create's 404).
#[test]
fn push_pull_and_run_of_a_missing_image_through_the_api() {
    let test = "engine_api::push_pull_and_run_of_a_missing_image_through_the_api";
    let Some(env) = setup(test) else {
        return;
    };
    if !common::tools(test, crate::registry::REGISTRY_TOOLS) {
        return;
    }
    let registry = crate::registry::Registry::plain(&env.path("registry"));
    let api = Service::start(&env, None);
    let remote = format!("{}/bb:1", registry.host());
    api.ok(&["tag", "bb:1", &remote]);
    let pushed = api.ok(&["push", &remote]);
    assert!(
        pushed.contains("Pushed") && pushed.contains("1: digest: sha256:"),
        "{pushed}"
    );
    api.ok(&["rmi", &remote]);
    api.ok(&["rmi", "bb:1"]);
    assert_eq!(api.ok(&["images", "-q"]), "");
    let out = api.docker(&["run", "--rm", &remote, "echo", "pulled"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "pulled\n");
    assert!(
        err.contains(&format!("Unable to find image '{remote}' locally")),
        "{err}"
    );
    assert!(err.contains("Status: Downloaded newer image for"), "{err}");
    let pulled = api.ok(&["pull", &remote]);
    assert!(
        pulled.contains("Status: Image is up to date for"),
        "{pulled}"
    );
    let out = api.docker(&["pull", &format!("{}/nosuch:1", registry.host())]);
    assert_eq!(code(&out), 1, "{out:?}");
    common::assert_store_consistent(&env.root());
}

/// The Python SDK (docker-py), as tools built on it use the API.
#[test]
fn the_python_sdk_runs_containers_through_the_api() {
    let test = "engine_api::the_python_sdk_runs_containers_through_the_api";
    let Some(env) = setup(test) else {
        return;
    };
    let have_sdk = Command::new("python3")
        .args(["-c", "import docker"])
        .status()
        .is_ok_and(|s| s.success());
    if !have_sdk && common::skip(test, "the Python docker SDK is not installed") {
        return;
    }
    let api = Service::start(&env, None);
    let script = r#"
import docker, sys
client = docker.from_env()
print(client.version()["ApiVersion"])
out = client.containers.run("bb:1", ["sh", "-c", "echo via-sdk"], remove=True)
print(out.decode().strip())
c = client.containers.run("bb:1", ["sh", "-c", "for i in 1 2 3; do echo line $i; done; exit 5"], detach=True, name="sdk")
lines = b"".join(c.logs(stream=True, follow=True)).decode().split()
print(" ".join(lines))
print(c.wait()["StatusCode"])
c.reload()
print(c.status, c.name)
c.remove()
print(len(client.containers.list(all=True)))
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .env("DOCKER_HOST", format!("unix://{}", api.socket.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "1.44\nvia-sdk\nline 1 line 2 line 3\n5\nexited sdk\n0\n"
    );
}

/// `docker build` with the legacy builder (what the CLI without buildx uses): the context
/// sent as a tar, the steps streamed, the image tagged; a failing step fails the build.
#[test]
fn docker_build_through_the_api() {
    let Some(env) = setup("engine_api::docker_build_through_the_api") else {
        return;
    };
    let api = Service::start(&env, None);
    let ctx = env.path("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM bb:1\nARG WHO=nobody\nRUN echo \"built by $WHO\" > /b.txt\nCOPY f /f\nCMD [\"cat\", \"/b.txt\", \"/f\"]\n",
    )
    .unwrap();
    std::fs::write(ctx.join("f"), "from the context\n").unwrap();
    std::fs::write(ctx.join("Dockerfile.bad"), "FROM bb:1\nRUN exit 3\n").unwrap();
    let ctx_s = ctx.display().to_string();
    let out = Command::new("docker")
        .args([
            "build",
            "-t",
            "built:1",
            "--build-arg",
            "WHO=the api",
            &ctx_s,
        ])
        .env("DOCKER_HOST", format!("unix://{}", api.socket.display()))
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("Step 1 : ") && text.contains("Successfully tagged built:1"),
        "{text}"
    );
    assert_eq!(
        api.ok(&["run", "--rm", "built:1"]),
        "built by the api\nfrom the context\n"
    );
    // Unchanged: every step from the cache; -q prints the ID alone.
    let quiet = api.ok(&[
        "build",
        "-q",
        "-t",
        "built:1",
        "--build-arg",
        "WHO=the api",
        &ctx_s,
    ]);
    let id = api.ok(&["images", "--no-trunc", "-q", "built:1"]);
    assert_eq!(quiet, id, "{quiet}");
    // save, then load back what was removed.
    let archive = env.path("built.tar").display().to_string();
    api.ok(&["save", "-o", &archive, "built:1"]);
    api.ok(&["rmi", "built:1"]);
    assert_eq!(api.ok(&["load", "-i", &archive]), "Loaded image: built:1\n");
    assert_eq!(
        api.ok(&["run", "--rm", "built:1", "cat", "/f"]),
        "from the context\n"
    );
    let bad = ctx.join("Dockerfile.bad").display().to_string();
    let out = api.docker(&["build", "-f", &bad, &ctx_s]);
    assert_eq!(code(&out), 1);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("exit code: 3"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A context whose link leads out of it: the Dockerfile behind the link is not read.
    let linked = env.path("linked-ctx");
    std::fs::create_dir_all(&linked).unwrap();
    std::os::unix::fs::symlink("/etc", linked.join("sub")).unwrap();
    let tar = env.path("linked.tar");
    common::sh(&format!(
        "tar -C {} -cf {} .",
        linked.display(),
        tar.display()
    ));
    let out = Command::new("curl")
        .args([
            "-s",
            "--unix-socket",
            &api.socket.display().to_string(),
            "-X",
            "POST",
        ])
        .args(["-H", "Content-Type: application/x-tar", "--data-binary"])
        .arg(format!("@{}", tar.display()))
        .arg("http://localhost/build?dockerfile=sub/hostname")
        .output()
        .unwrap();
    let body = String::from_utf8_lossy(&out.stdout);
    let hostname = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    assert!(body.contains("errorDetail"), "{body}");
    assert!(
        hostname.trim().is_empty() || !body.contains(hostname.trim()),
        "{body}"
    );
    // A Dockerfile outside the context is refused.
    let (status, body) = api.raw("POST", "/build?dockerfile=../../etc/passwd", Some(""));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("must be within the build context"), "{body}");
    common::assert_store_consistent(&env.root());
}

/// `docker run -it` and `docker exec -it` through the API, under a real terminal: the
/// terminal takes the CLI's size (resize; an exec's ConsoleSize), the status comes back; and
/// `exec -i` reads piped stdin.
#[test]
fn docker_run_and_exec_it_get_the_terminal_size() {
    let test = "engine_api::docker_run_and_exec_it_get_the_terminal_size";
    let Some(env) = setup(test) else {
        return;
    };
    if !common::tools(test, &["script"]) {
        return;
    }
    let api = Service::start(&env, None);
    // `docker ARGS` under a 31x97 terminal (`script`): what the terminal showed, then
    // `status=N`, less the terminal's echo of what the CLI wrote to it (a NUL shows as `^@`).
    let under_terminal = |args: &str| {
        let cmd = format!(
            "stty cols 97 rows 31; DOCKER_HOST=unix://{} docker {args}; echo status=$?",
            api.socket.display()
        );
        let out = Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .replace('\r', "")
            .replace("^@", "")
    };
    let inner = crate::native::WAIT_FOR_SIZE.replace("exit 0", "exit 3");
    let text = under_terminal(&format!("run -it --rm bb:1 sh -c '{inner}'"));
    assert!(text.contains("resized 31 97\nstatus=3"), "{text}");

    // exec -it: its terminal gets the CLI's size (from the start through ConsoleSize with a
    // client of API 1.42+, by resize with an older one); exec -i: piped stdin.
    api.ok(&["run", "-d", "--name", "box", "bb:1", "sleep", "60"]);
    let inner = crate::native::WAIT_FOR_SIZE.replace("exit 0", "exit 6");
    let text = under_terminal(&format!("exec -it box sh -c '{inner}'"));
    assert!(text.contains("resized 31 97\nstatus=6"), "{text}");
    let mut child = Command::new("docker")
        .args(["exec", "-i", "box", "sh", "-c", "read line; echo got $line"])
        .env("DOCKER_HOST", format!("unix://{}", api.socket.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"piped\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "got piped\n");
    api.ok(&["rm", "-f", "box"]);
}
