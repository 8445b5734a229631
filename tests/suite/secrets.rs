//! Build secrets and the SSH agent: `RUN --mount=type=secret|ssh` with `strata build
//! --secret|--ssh`. A step sees the secret (as a file, or a variable with `env=`) and the
//! agent's socket; nothing of the secret reaches a layer, the cache, the history or any
//! other file of the store.

use std::io::Read;
use std::path::Path;

use crate::common::{self, busybox_image, Env};

const SECRET: &[u8] = b"s3cr3t-Strata-9f2c41";

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Every file under `root` (gzip'd blobs decompressed) that holds `needle`.
fn files_holding(root: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                stack.push(path);
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            let Ok(mut bytes) = std::fs::read(&path) else {
                continue;
            };
            if bytes.starts_with(&[0x1f, 0x8b]) {
                let mut plain = Vec::new();
                if flate2::read::MultiGzDecoder::new(&bytes[..])
                    .read_to_end(&mut plain)
                    .is_ok()
                {
                    bytes = plain;
                }
            }
            if bytes.windows(needle.len()).any(|w| w == needle) {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

fn ready(test: &str) -> Option<Env> {
    if !common::need_root(test) || !common::tools(test, &["busybox"]) {
        return None;
    }
    let env = Env::new();
    busybox_image(&env, "base", &[]);
    Some(env)
}

#[test]
fn secrets_reach_the_step_and_nothing_else() {
    let Some(env) = ready("secrets::secrets_reach_the_step_and_nothing_else") else {
        return;
    };
    let ctx = env.path("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM base\n\
         RUN --mount=type=secret,id=token sha256sum /run/secrets/token | cut -d' ' -f1 > /file.sum \\\n\
             && stat -c %a /run/secrets/token > /file.mode\n\
         RUN --mount=type=secret,id=token,target=/etc/app/key,mode=0440 \\\n\
             sha256sum /etc/app/key | cut -d' ' -f1 > /target.sum && stat -c %a /etc/app/key > /target.mode\n\
         RUN --mount=type=secret,id=token,env=TOKEN sh -c 'printf %s \"$TOKEN\" | sha256sum | cut -d\" \" -f1 > /env.sum; test ! -e /run/secrets/token'\n\
         RUN --mount=type=secret,id=absent test ! -e /run/secrets/absent\n",
    )
    .unwrap();
    let secret_file = env.path("token.txt");
    std::fs::write(&secret_file, SECRET).unwrap();
    let ctx_s = ctx.display().to_string();
    let secret_arg = format!("id=token,src={}", secret_file.display());
    let out = env.run(&[
        "build",
        "-t",
        "with-secret",
        "--secret",
        &secret_arg,
        &ctx_s,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = sha256_hex(SECRET);
    let cat = |f: &str| env.ok(&["run", "--rm", "with-secret", "cat", f]);
    assert_eq!(cat("/file.sum").trim(), want);
    assert_eq!(cat("/file.mode").trim(), "400");
    assert_eq!(cat("/target.sum").trim(), want);
    assert_eq!(cat("/target.mode").trim(), "440");
    assert_eq!(cat("/env.sum").trim(), want);
    // No mount point left behind in the image: neither /run/secrets nor /etc/app.
    env.ok(&[
        "run",
        "--rm",
        "with-secret",
        "sh",
        "-c",
        "test ! -e /run/secrets && test ! -e /etc/app",
    ]);
    // Nowhere in the store (layers, blobs decompressed, cache, configs, history).
    let holding = files_holding(&env.root(), SECRET);
    assert!(holding.is_empty(), "the secret is in {holding:?}");
    let history = env.ok(&["history", "--no-trunc", "with-secret"]);
    assert!(
        !history.contains(std::str::from_utf8(SECRET).unwrap()),
        "{history}"
    );

    // Another value of the secret keeps the cache (BuildKit's rule): the same image.
    let id = env.ok(&["images", "-q", "--no-trunc", "with-secret"]);
    std::fs::write(&secret_file, b"another value").unwrap();
    let out = env.run(&[
        "build",
        "-t",
        "with-secret",
        "--secret",
        &secret_arg,
        &ctx_s,
    ]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("CACHED"));
    assert_eq!(env.ok(&["images", "-q", "--no-trunc", "with-secret"]), id);

    // From a variable.
    let out = env
        .cmd(&[
            "build",
            "--no-cache",
            "-t",
            "from-env",
            "--secret",
            "id=token,env=MY_TOKEN",
            &ctx_s,
        ])
        .env("MY_TOKEN", std::str::from_utf8(SECRET).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        env.ok(&["run", "--rm", "from-env", "cat", "/env.sum"])
            .trim(),
        want
    );

    // A required secret that was not given fails the build, by name.
    std::fs::write(
        ctx.join("Dockerfile.required"),
        "FROM base\nRUN --mount=type=secret,id=needed,required=true true\n",
    )
    .unwrap();
    let file = ctx.join("Dockerfile.required").display().to_string();
    let err = env.fails(&["build", "-f", &file, &ctx_s]);
    assert!(err.contains("secret needed: not found"), "{err}");
    let err = env.fails(&["build", "--secret", "id=x,src=/no/such/file", &ctx_s]);
    assert!(err.contains("secret x: read /no/such/file"), "{err}");
    common::assert_store_consistent(&env.root());
}

#[test]
fn the_ssh_agent_socket_reaches_the_step() {
    let Some(env) = ready("secrets::the_ssh_agent_socket_reaches_the_step") else {
        return;
    };
    let sock = env.path("agent.sock");
    let _agent = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    use std::os::unix::fs::MetadataExt;
    let inode = std::fs::metadata(&sock).unwrap().ino();
    let ctx = env.path("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM base\n\
         RUN --mount=type=ssh test -S \"$SSH_AUTH_SOCK\" && stat -c %i \"$SSH_AUTH_SOCK\" > /agent.inode \\\n\
             && echo \"$SSH_AUTH_SOCK\" > /agent.path\n",
    )
    .unwrap();
    let ctx_s = ctx.display().to_string();
    let out = env
        .cmd(&["build", "-t", "with-ssh", "--ssh", "default", &ctx_s])
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cat = |f: &str| env.ok(&["run", "--rm", "with-ssh", "cat", f]);
    assert_eq!(
        cat("/agent.inode").trim(),
        inode.to_string(),
        "the host's socket itself"
    );
    assert_eq!(cat("/agent.path").trim(), "/run/buildkit/ssh_agent.0");
    env.ok(&[
        "run",
        "--rm",
        "with-ssh",
        "test",
        "!",
        "-e",
        "/run/buildkit",
    ]);
    // Required but not forwarded.
    std::fs::write(
        ctx.join("Dockerfile.required"),
        "FROM base\nRUN --mount=type=ssh,required=true true\n",
    )
    .unwrap();
    let file = ctx.join("Dockerfile.required").display().to_string();
    let err = env.fails(&["build", "-f", &file, &ctx_s]);
    assert!(err.contains("no SSH key \"default\" forwarded"), "{err}");
}
