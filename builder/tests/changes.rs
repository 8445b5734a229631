//! `commit/import --change`: the Dockerfile parser and the build's config dispatch applied to
//! an image config, with docker's set of change commands and no build args.

use std::collections::BTreeMap;

use serde_json::Value;
use strata_builder::engine::config::apply_changes;
use strata_runtime::image::{ContainerConfig, ImageConfig};

fn config_with_env(env: &[&str]) -> ImageConfig {
    ImageConfig {
        config: Some(ContainerConfig {
            env: Some(strings(env)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn apply(config: &mut ImageConfig, change: &str) {
    apply_changes(config, &[change.to_string()])
        .unwrap_or_else(|e| panic!("{change:?} failed: {e}"));
}

fn applied(change: &str) -> ContainerConfig {
    let mut config = ImageConfig::default();
    apply(&mut config, change);
    config.config.unwrap_or_default()
}

fn error(change: &str) -> String {
    apply_changes(&mut ImageConfig::default(), &[change.to_string()])
        .expect_err(change)
        .to_string()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn keys(map: &Option<BTreeMap<String, Value>>) -> Vec<String> {
    map.as_ref()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

fn cc(config: &ImageConfig) -> &ContainerConfig {
    config.config.as_ref().unwrap()
}

// --- instruction keyword ---

#[test]
fn instructions_outside_dockers_change_set_are_refused_with_its_message() {
    assert_eq!(
        error("FOO bar"),
        "invalid --change \"FOO bar\": FOO is not a valid change command"
    );
    for (change, word) in [
        ("RUN make", "RUN"),
        ("copy a b", "copy"),
        ("FROM alpine", "FROM"),
        ("ADD a b", "ADD"),
        ("ARG A=1", "ARG"),
        ("SHELL [\"/bin/bash\"]", "SHELL"),
        ("MAINTAINER me", "MAINTAINER"),
    ] {
        assert_eq!(
            error(change),
            format!("invalid --change {change:?}: {word} is not a valid change command")
        );
    }
}

#[test]
fn keyword_is_case_insensitive() {
    let c = applied("env A=1\nWorkdir /srv");
    assert_eq!(c.env, Some(strings(&["A=1"])));
    assert_eq!(c.working_dir.as_deref(), Some("/srv"));
}

#[test]
fn the_parsers_errors_name_the_change() {
    // Typed-instruction checks come from the Dockerfile front end.
    assert_eq!(
        error("ENV"),
        "invalid --change \"ENV\": ENV requires at least one argument"
    );
    assert!(error("HEALTHCHECK --retries=-1 CMD x").contains("--retries cannot be negative"));
    assert!(error("CMD [\"sleep\", 10]").contains("arrays must be comprised of strings only"));
}

// --- CMD / ENTRYPOINT ---

#[test]
fn cmd_exec_and_shell_forms() {
    assert_eq!(
        applied(r#"CMD ["nginx", "-g", "daemon off;"]"#).cmd,
        Some(strings(&["nginx", "-g", "daemon off;"]))
    );
    // Shell form keeps the line verbatim, no expansion.
    assert_eq!(
        applied(r#"CMD echo "$HOME" && sleep 1"#).cmd,
        Some(strings(&["/bin/sh", "-c", r#"echo "$HOME" && sleep 1"#]))
    );
    assert_eq!(
        applied("CMD [not json").cmd,
        Some(strings(&["/bin/sh", "-c", "[not json"]))
    );
    assert_eq!(applied("CMD []").cmd, Some(vec![]));
}

#[test]
fn shell_form_uses_the_image_shell() {
    let mut config = ImageConfig::default();
    config.container_config().shell = Some(strings(&["/bin/bash", "-o", "pipefail", "-c"]));
    apply(&mut config, "CMD run.sh");
    assert_eq!(
        cc(&config).cmd,
        Some(strings(&["/bin/bash", "-o", "pipefail", "-c", "run.sh"]))
    );
}

#[test]
fn entrypoint_drops_an_inherited_cmd_unless_a_change_set_one() {
    let mut config = ImageConfig::default();
    config.container_config().cmd = Some(strings(&["--serve"]));
    apply(&mut config, r#"ENTRYPOINT ["/app"]"#);
    assert_eq!(cc(&config).entrypoint, Some(strings(&["/app"])));
    assert_eq!(cc(&config).cmd, None, "docker resets CMD");

    let mut config = ImageConfig::default();
    apply_changes(
        &mut config,
        &strings(&["CMD [\"--port\", \"80\"]", "ENTRYPOINT exec app"]),
    )
    .unwrap();
    assert_eq!(
        cc(&config).entrypoint,
        Some(strings(&["/bin/sh", "-c", "exec app"]))
    );
    assert_eq!(cc(&config).cmd, Some(strings(&["--port", "80"])));
}

// --- ENV / LABEL ---

#[test]
fn env_pairs_with_quotes_and_escapes() {
    let c = applied(r#"ENV A=1 B="v 2" C='single $X' D=a\ b E="q\"uote" F="""#);
    assert_eq!(
        c.env,
        Some(strings(&[
            "A=1",
            "B=v 2",
            "C=single $X",
            "D=a b",
            "E=q\"uote",
            "F="
        ]))
    );
}

#[test]
fn env_legacy_form_takes_the_rest_of_the_line() {
    assert_eq!(
        applied("ENV GREETING hello  big world").env,
        Some(strings(&["GREETING=hello  big world"]))
    );
}

#[test]
fn env_expands_from_the_existing_env_only() {
    let mut config = config_with_env(&["PATH=/usr/bin", "HOME=/root"]);
    apply(
        &mut config,
        r#"ENV PATH=/app/bin:$PATH CACHE=${HOME}/.cache NOPE=x${UNSET}y LIT=\$HOME"#,
    );
    assert_eq!(
        cc(&config).env,
        Some(strings(&[
            "PATH=/app/bin:/usr/bin",
            "HOME=/root",
            "CACHE=/root/.cache",
            "NOPE=xy",
            "LIT=$HOME"
        ]))
    );
}

#[test]
fn env_pairs_on_one_line_see_the_previous_env_and_later_changes_the_new_one() {
    let mut config = config_with_env(&["A=old"]);
    apply_changes(&mut config, &strings(&["ENV A=new B=$A", "ENV C=$A"])).unwrap();
    assert_eq!(cc(&config).env, Some(strings(&["A=new", "B=old", "C=new"])));
}

#[test]
fn env_default_and_alternate_substitutions() {
    let mut config = config_with_env(&["EMPTY=", "SET=yes"]);
    apply(
        &mut config,
        "ENV A=${UNSET:-dflt} B=${EMPTY:-dflt} C=${EMPTY-dflt} D=${SET:+alt} E=${UNSET:+alt}",
    );
    assert_eq!(
        cc(&config).env.as_ref().unwrap()[2..],
        strings(&["A=dflt", "B=dflt", "C=", "D=alt", "E="])
    );
    let message = error(r#"ENV A="${UNSET:?must be set}""#);
    assert!(message.contains("UNSET: must be set"), "{message}");
}

#[test]
fn env_errors() {
    assert!(error("ENV ONLYNAME").contains("ENV must have two arguments"));
    assert!(error("ENV =value").contains("ENV names can not be blank"));
    assert!(error("ENV A=1 B").contains("can't find = in \"B\""));
    assert!(error("ENV A=${B").contains("missing '}'"));
}

#[test]
fn label_pairs_with_quotes_expansion_and_replacement() {
    let mut config = config_with_env(&["VERSION=1.2"]);
    apply(
        &mut config,
        r#"LABEL org.opencontainers.image.version=$VERSION "description"="a b c" a=1"#,
    );
    apply(&mut config, "LABEL a=3");
    let labels = cc(&config).labels.clone().unwrap();
    assert_eq!(labels["org.opencontainers.image.version"], "1.2");
    assert_eq!(labels["description"], "a b c");
    assert_eq!(labels["a"], "3");
}

#[test]
fn label_legacy_form_as_in_a_dockerfile() {
    let labels = applied("LABEL maintainer someone else").labels.unwrap();
    assert_eq!(labels["maintainer"], "someone else");
}

// --- EXPOSE ---

#[test]
fn expose_defaults_to_tcp_and_lowercases_protocols() {
    let c = applied("EXPOSE 80 53/udp 443/TCP 9000/");
    assert_eq!(
        keys(&c.exposed_ports),
        strings(&["443/tcp", "53/udp", "80/tcp", "9000/tcp"])
    );
    assert_eq!(c.exposed_ports.unwrap()["80/tcp"], serde_json::json!({}));
}

#[test]
fn expose_ranges_variables_and_port_zero() {
    let mut config = config_with_env(&["PORTS=7000 7001/sctp"]);
    apply(&mut config, "EXPOSE 8000-8002/udp $PORTS 0");
    assert_eq!(
        keys(&cc(&config).exposed_ports),
        strings(&[
            "0/tcp",
            "7000/tcp",
            "7001/sctp",
            "8000/udp",
            "8001/udp",
            "8002/udp"
        ])
    );
    apply(&mut config, "EXPOSE 81");
    assert!(cc(&config).exposed_ports.as_ref().unwrap()["81/tcp"].is_object());
}

#[test]
fn expose_rejects_bad_ports() {
    for bad in [
        "65536",
        "http",
        "-1",
        "8002-8000",
        "80/icmp",
        "1.2.3.4:80:80",
    ] {
        let message = error(&format!("EXPOSE {bad}"));
        assert!(message.contains("invalid"), "{bad}: {message}");
    }
    assert_eq!(
        error("EXPOSE 70000"),
        "invalid --change \"EXPOSE 70000\": invalid containerPort: 70000"
    );
    assert!(error("EXPOSE").contains("EXPOSE requires at least one argument"));
}

// --- VOLUME / USER / WORKDIR / STOPSIGNAL / HEALTHCHECK / ONBUILD ---

#[test]
fn volume_json_and_word_forms() {
    assert_eq!(
        keys(&applied(r#"VOLUME ["/data", "/var/log app"]"#).volumes),
        strings(&["/data", "/var/log app"])
    );
    let mut config = config_with_env(&["BASE=/srv"]);
    apply(&mut config, "VOLUME /data $BASE/cache");
    assert_eq!(
        keys(&cc(&config).volumes),
        strings(&["/data", "/srv/cache"])
    );
    assert!(error("VOLUME").contains("VOLUME requires at least one argument"));
    assert!(error(r#"VOLUME ["/a", ""]"#).contains("can not be an empty string"));
    assert!(error("VOLUME $UNSET").contains("can not be an empty string"));
}

#[test]
fn user_expands_variables() {
    assert_eq!(applied("USER 1000:1000").user.as_deref(), Some("1000:1000"));
    assert_eq!(
        applied(r#"USER "app user""#).user.as_deref(),
        Some("app user")
    );
    // The rest of the line is one word, as in a Dockerfile.
    assert_eq!(applied("USER app user").user.as_deref(), Some("app user"));
    let mut config = config_with_env(&["APP_UID=1001"]);
    apply(&mut config, "USER ${APP_UID}");
    assert_eq!(cc(&config).user.as_deref(), Some("1001"));
    assert!(error("USER").contains("USER requires exactly one argument"));
}

#[test]
fn workdir_absolute_relative_and_cleaned() {
    assert_eq!(
        applied("WORKDIR /app/").working_dir.as_deref(),
        Some("/app")
    );
    assert_eq!(applied("WORKDIR src").working_dir.as_deref(), Some("/src"));
    let mut config = ImageConfig::default();
    for (change, want) in [
        ("WORKDIR /a", "/a"),
        ("WORKDIR b", "/a/b"),
        ("WORKDIR ../c/./d", "/a/c/d"),
        ("WORKDIR /x//y/../z", "/x/z"),
        ("WORKDIR /../..", "/"),
    ] {
        apply(&mut config, change);
        assert_eq!(cc(&config).working_dir.as_deref(), Some(want), "{change}");
    }
    let mut config = config_with_env(&["HOME=/home/app"]);
    apply(&mut config, "WORKDIR $HOME/src");
    assert_eq!(cc(&config).working_dir.as_deref(), Some("/home/app/src"));
    assert!(error("WORKDIR").contains("WORKDIR requires exactly one argument"));
}

#[test]
fn stopsignal_names_and_numbers() {
    for signal in [
        "SIGTERM",
        "TERM",
        "sigquit",
        "9",
        "SIGRTMIN+3",
        "RTMAX-2",
        "SIGRTMAX",
    ] {
        assert_eq!(
            applied(&format!("STOPSIGNAL {signal}"))
                .stop_signal
                .as_deref(),
            Some(signal)
        );
    }
    for bad in [
        "SIGNOPE",
        "0",
        "65",
        "-9",
        "SIGRTMIN+16",
        "RTMAX-+1",
        "TERM KILL",
    ] {
        let message = error(&format!("STOPSIGNAL {bad}"));
        assert!(message.contains("invalid signal"), "{bad}: {message}");
    }
    assert!(error("STOPSIGNAL").contains("STOPSIGNAL requires exactly one argument"));
}

#[test]
fn healthcheck_as_in_a_dockerfile() {
    let c = applied("HEALTHCHECK --interval=5s --retries=3 CMD wget -q localhost");
    assert_eq!(
        c.healthcheck,
        Some(serde_json::json!({
            "Test": ["CMD-SHELL", "wget -q localhost"],
            "Interval": 5_000_000_000u64,
            "Retries": 3
        }))
    );
    assert_eq!(
        applied("HEALTHCHECK NONE").healthcheck,
        Some(serde_json::json!({"Test": ["NONE"]}))
    );
}

#[test]
fn onbuild_appends_the_trigger_verbatim() {
    let mut config = ImageConfig::default();
    apply_changes(
        &mut config,
        &strings(&["ONBUILD RUN make  $TARGET", "onbuild copy . /src"]),
    )
    .unwrap();
    assert_eq!(
        cc(&config).on_build,
        Some(strings(&["RUN make  $TARGET", "copy . /src"]))
    );
    assert!(error("ONBUILD ONBUILD RUN x").contains("Chaining ONBUILD"));
    assert!(error("ONBUILD from alpine").contains("FROM isn't allowed as an ONBUILD trigger"));
    assert!(error("ONBUILD").contains("ONBUILD requires at least one argument"));
}

// --- whole change sets ---

#[test]
fn a_failed_change_set_leaves_the_config_untouched() {
    let mut config = config_with_env(&["A=1"]);
    let before = config.clone();
    assert!(apply_changes(&mut config, &strings(&["ENV B=2", "EXPOSE 65536"])).is_err());
    assert!(apply_changes(&mut config, &strings(&["ENV C=3\nRUN x"])).is_err());
    assert_eq!(config.config, before.config);
}

#[test]
fn values_are_joined_into_one_dockerfile() {
    let c = applied("# set up\nENV A=1 \\\n    B=2\n\nEXPOSE 80\n");
    assert_eq!(c.env, Some(strings(&["A=1", "B=2"])));
    assert_eq!(keys(&c.exposed_ports), strings(&["80/tcp"]));
    // The error names the value that holds the bad line.
    let err = apply_changes(
        &mut ImageConfig::default(),
        &strings(&["ENV A=1\nUSER x", "LABEL a=b", "EXPOSE nope"]),
    )
    .unwrap_err();
    assert_eq!(err.change, "EXPOSE nope");
    assert!(!err.to_string().contains('\n'), "{err}");
}

#[test]
fn blank_or_comment_values_change_nothing() {
    assert_eq!(applied("   "), ContainerConfig::default());
    assert_eq!(applied("# just a comment"), ContainerConfig::default());
    let mut config = ImageConfig::default();
    apply_changes(&mut config, &[]).unwrap();
    assert_eq!(config.config, None);
}
