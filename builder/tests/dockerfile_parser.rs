//! Parser behaviours not covered by the golden files: directives, limits,
//! warnings, typed-instruction details, and robustness on arbitrary input.

use strata_builder::dockerfile::instructions::{self, Instruction};
use strata_builder::dockerfile::{ast_json, parse, parse_with_limits, CheckConfig, Limits};

#[test]
fn directives_are_recorded() {
    let df = parse(
        "Dockerfile",
        "# syntax=docker/dockerfile:1\n#CHECK = skip=all;error=true\n# escape=`\n# unknown=x\n# syntax=late\nFROM a\n",
    )
    .unwrap();
    let names: Vec<(&str, &str, usize)> = df
        .directives
        .iter()
        .map(|d| (d.name.as_str(), d.value.as_str(), d.line))
        .collect();
    assert_eq!(
        names,
        vec![
            ("syntax", "docker/dockerfile:1", 1),
            ("check", "skip=all;error=true", 2),
            ("escape", "`", 3)
        ]
    );
    assert_eq!(df.escape, '`');
    assert_eq!(df.syntax(), Some("docker/dockerfile:1"));
    assert_eq!(
        df.check().unwrap().unwrap(),
        CheckConfig {
            skip_all: true,
            skip: vec![],
            error: true
        }
    );
    assert_eq!(
        CheckConfig::parse("skip=JSONArgsRecommended, StageNameCasing")
            .unwrap()
            .skip,
        vec!["JSONArgsRecommended", "StageNameCasing"]
    );
    assert!(CheckConfig::parse("error=maybe").is_err());
    assert!(CheckConfig::parse("nope").is_err());

    // Anything before a directive ends the directive section.
    for text in [
        "FROM a\n# escape=`\nRUN x \\\n y\n",
        "\n# escape=`\nFROM a\n",
        "# hi\n# escape=`\nFROM a\n",
    ] {
        let df = parse("Dockerfile", text).unwrap();
        assert_eq!(df.escape, '\\', "{text:?}");
        assert!(df.directives.is_empty());
    }
    // Leading blanks before the directive are allowed; a BOM too.
    let df = parse("Dockerfile", "\u{feff}  #  escape  =  `  \nFROM a\n").unwrap();
    assert_eq!(df.escape, '`');
    // A duplicate directive after the section is only a comment.
    let df = parse("Dockerfile", "# escape=`\nFROM a\n# escape=\\\n").unwrap();
    assert_eq!(df.escape, '`');
}

#[test]
fn error_display_names_file_and_line() {
    let e = parse("path/to/Dockerfile.dev", "FROM a\nRUN <<EOF\nx\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "path/to/Dockerfile.dev:2: unterminated heredoc"
    );
    assert_eq!((e.line, e.end_line), (2, 3));
    let e = parse("Dockerfile", "FROM a\n\nENV a=b \\\n  c\n").unwrap_err();
    assert_eq!((e.line, e.end_line), (3, 4));
}

#[test]
fn line_length_cap() {
    let ok = format!("FROM a\nRUN {}\n", "x".repeat(65_535 - 4));
    assert!(parse("Dockerfile", &ok).is_ok());
    let long = format!("FROM a\nRUN {}\n", "x".repeat(65_535 - 3));
    let e = parse("Dockerfile", &long).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Dockerfile:2: dockerfile line greater than max allowed size of 65535"
    );
    // Heredoc bodies count too.
    let body = format!("FROM a\nRUN <<EOF\n{}\nEOF\n", "y".repeat(70_000));
    assert_eq!(parse("Dockerfile", &body).unwrap_err().line, 3);
}

#[test]
fn other_limits() {
    let limits = Limits {
        max_instructions: 3,
        max_instruction_bytes: 64,
        max_onbuild_depth: 2,
        max_file_bytes: 4096,
        ..Limits::default()
    };
    let e =
        parse_with_limits("Dockerfile", "FROM a\nRUN 1\nRUN 2\n\nRUN 3\n", &limits).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Dockerfile:5: too many instructions (the maximum is 3)"
    );
    let joined = format!("FROM a\nRUN \\\n{}\\\n{}\n", "a".repeat(40), "b".repeat(40));
    let e = parse_with_limits("Dockerfile", &joined, &limits).unwrap_err();
    assert!(e.message.contains("instruction longer than"), "{e}");
    assert_eq!(e.line, 2);
    assert!(parse_with_limits("Dockerfile", "FROM a\nONBUILD ONBUILD RUN x\n", &limits).is_ok());
    let e = parse_with_limits(
        "Dockerfile",
        "FROM a\nONBUILD ONBUILD ONBUILD RUN x\n",
        &limits,
    )
    .unwrap_err();
    assert!(e.message.contains("ONBUILD nested"), "{e}");
    let e = parse_with_limits("Dockerfile", &"#\n".repeat(3000), &limits).unwrap_err();
    assert!(e.message.contains("larger than"), "{e}");

    // The default ONBUILD depth cap keeps absurd chains from recursing.
    let chain = format!("FROM a\n{}RUN x\n", "ONBUILD ".repeat(5000));
    assert!(parse("Dockerfile", &chain).is_err());
}

#[test]
fn empty_continuation_warning_and_comments() {
    let df = parse(
        "Dockerfile",
        "# first\n#\n# kept 1\n  # kept 2\nFROM a\nRUN a \\\n\n  b\n",
    )
    .unwrap();
    assert_eq!(df.nodes[0].comments, vec!["kept 1", "# kept 2"]);
    assert!(df.nodes[1].comments.is_empty());
    assert_eq!(df.warnings.len(), 1);
    assert_eq!(df.warnings[0].line, 8);
    assert_eq!(
        df.warnings[0].message,
        "Empty continuation line found in: RUN a   b"
    );
    assert_eq!(df.nodes[1].args, vec!["a   b"]);
}

#[test]
fn typed_instruction_details() {
    let text = "\
FROM alpine
ONBUILD RUN <<EOF
echo hi
EOF
RUN --mount=type=cache,target=/c <<-EOT bash
\techo $X
\tEOT
ENTRYPOINT []
ARG A B=1 C=\"x y\"
HEALTHCHECK --retries=0 --timeout=0s CMD curl -f x
COPY --link=false --exclude=a --exclude=b <<A ./src /dst/
A
";
    let df = parse("Dockerfile", text).unwrap();
    let stages = instructions::parse_stages(&df).unwrap();
    let cmds: Vec<&Instruction> = stages.stages[0]
        .commands
        .iter()
        .map(|c| &c.instruction)
        .collect();
    match cmds[0] {
        Instruction::Onbuild(o) => {
            assert_eq!(o.trigger, "RUN");
            assert_eq!(o.expression, "RUN <<EOF\necho hi\nEOF");
        }
        other => panic!("{other:?}"),
    }
    match cmds[1] {
        Instruction::Run(r) => {
            assert_eq!(r.cmd.args, vec!["<<-EOT bash"]);
            assert!(r.cmd.prepend_shell);
            assert_eq!(r.cmd.files.len(), 1);
            assert_eq!(r.cmd.files[0].data, "\techo $X\n");
            assert!(r.cmd.files[0].chomp && r.cmd.files[0].expand);
            assert_eq!(r.mounts, vec!["type=cache,target=/c"]);
        }
        other => panic!("{other:?}"),
    }
    match cmds[2] {
        Instruction::Entrypoint(c) => assert!(c.args.is_empty() && !c.prepend_shell),
        other => panic!("{other:?}"),
    }
    match cmds[3] {
        Instruction::Arg(a) => {
            let got: Vec<(&str, Option<&str>)> = a
                .iter()
                .map(|d| (d.key.as_str(), d.value.as_deref()))
                .collect();
            assert_eq!(
                got,
                vec![("A", None), ("B", Some("1")), ("C", Some("\"x y\""))]
            );
        }
        other => panic!("{other:?}"),
    }
    match cmds[4] {
        Instruction::Healthcheck(h) => {
            assert_eq!(h.test, vec!["CMD-SHELL", "curl -f x"]);
            assert_eq!(h.retries, 0);
            assert!(h.timeout.is_zero());
        }
        other => panic!("{other:?}"),
    }
    match cmds[5] {
        Instruction::Copy(c) => {
            assert!(!c.link);
            assert_eq!(c.exclude, vec!["a", "b"]);
            assert_eq!(c.sources.paths, vec!["./src"]);
            assert_eq!(c.sources.contents[0].path, "A");
            assert_eq!(c.sources.dest, "/dst/");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn json_elements_and_quirks() {
    let df = parse(
        "Dockerfile",
        "FROM a\nCMD [\"a\"] \nCMD  [\"a\"]x\nCMD [\"a\",]\nCMD [{\"k\": [1, {}]}, \"b\"]\nCMD [\"\\u00e9\", \"\\/\"]\n",
    );
    // An object element is valid JSON that is not all strings: an error.
    let e = df.unwrap_err();
    assert_eq!(e.line, 5);
    let df = parse(
        "Dockerfile",
        "FROM a\nCMD [\"a\"] \nCMD  [\"a\"]x\nCMD [\"a\",]\nCMD [\"\\u00e9\", \"\\/\"]\n",
    )
    .unwrap();
    let v = ast_json(&df);
    assert_eq!(v[1]["args"], serde_json::json!(["a"]));
    assert_eq!(v[1]["json_form"], true);
    assert_eq!(v[2]["args"], serde_json::json!(["[\"a\"]x"]));
    assert_eq!(v[3]["json_form"], false);
    assert_eq!(v[4]["args"], serde_json::json!(["é", "/"]));
}

/// A small deterministic generator, to feed the parser arbitrary text.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

#[test]
fn arbitrary_input_never_panics() {
    const TOKENS: &[&str] = &[
        "FROM",
        "RUN",
        "COPY",
        "ADD",
        "ONBUILD",
        "HEALTHCHECK",
        "ENV",
        "LABEL",
        "ARG",
        "CMD",
        "SHELL",
        "EXPOSE",
        "VOLUME",
        "USER",
        "WORKDIR",
        "STOPSIGNAL",
        "MAINTAINER",
        "ENTRYPOINT",
        "NONE",
        "x",
        " ",
        " ",
        "\t",
        "\n",
        "\n",
        "\r\n",
        "\\",
        "\\\n",
        "`",
        "#",
        "# escape=`\n",
        "# syntax=a\n",
        "=",
        "\"",
        "'",
        "[",
        "]",
        ",",
        "{",
        "}",
        "$",
        "${",
        ":-",
        "<<",
        "<<-",
        "EOF",
        "\nEOF\n",
        "--",
        "--from=",
        "--mount=",
        "\u{feff}",
        "é",
        "\u{85}",
        "\u{a0}",
        "한",
        "1e999",
        "\\u",
        "0",
        "-",
        "*",
        "?",
        "/",
        "%",
        "##",
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..4000 {
        let n = (rng.next() % 60) as usize;
        let text: String = (0..n).map(|_| rng.pick(TOKENS)).collect();
        if let Ok(df) = parse("Dockerfile", &text) {
            let _ = ast_json(&df);
            let _ = instructions::parse_stages(&df);
            for node in &df.nodes {
                for a in &node.args {
                    let env = |k: &str| {
                        if k.len() & 1 == 0 {
                            Some(k.repeat(3))
                        } else {
                            None
                        }
                    };
                    let _ = strata_builder::dockerfile::expand(a, &env, df.escape);
                    let _ = strata_builder::dockerfile::expand_words(a, &env, '`');
                }
                for f in &node.flags {
                    if let Some(v) = f.strip_prefix("--mount=") {
                        let _ = instructions::parse_mount(v, None);
                    }
                }
            }
        }
    }
}

#[test]
fn truncated_fixtures_never_panic() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dockerfile");
    for entry in std::fs::read_dir(root).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path().join("Dockerfile")).unwrap();
        for (i, _) in text.char_indices() {
            if let Ok(df) = parse("Dockerfile", &text[..i]) {
                let _ = ast_json(&df);
                let _ = instructions::parse_stages(&df);
            }
        }
    }
}

/// BuildKit's `parser_heredoc_test.go`, case by case: `TestParseExtractsHeredoc`.
#[test]
fn heredocs_as_buildkit_extracts_them() {
    let text = "
FROM alpine:3.6

ENV NAME=me

RUN ls

USER <<INVALID
INVALID

RUN <<EMPTY
EMPTY

RUN 3<<EMPTY2
EMPTY2

RUN \"<<NOHEREDOC\"

RUN <<INDENT
\tfoo
\tbar
INDENT

RUN <<-UNINDENT
\tbaz
\tquux
UNINDENT

RUN <<-UNINDENT2
\tbaz
\tquux
\tUNINDENT2

RUN <<-EXPAND
\texpand $NAME
EXPAND

RUN <<-'NOEXPAND'
\tdon't expand $NAME
NOEXPAND

RUN <<COPY
echo hello world
echo foo bar
COPY

RUN <<COMMENT
# internal comment
echo hello world
echo foo bar # trailing comment
COMMENT

RUN --mount=type=cache,target=/foo <<MOUNT
echo hello
MOUNT

COPY <<FILE1 <<FILE2 /dest
content 1
FILE1
content 2
FILE2

COPY <<EOF /quotes
\"foo\"
'bar'
EOF

COPY <<X <<Y /dest
Y
X
X
Y

RUN <<COMPLEX python3
print('hello world')
COMPLEX

COPY <<file.txt /dest
hello world
file.txt

RUN <<eo'f'
echo foo
eof

RUN <<eo\\'f
echo foo
eo'f

RUN <<'e'o\\'f
echo foo
eo'f

RUN <<'one two'
echo bar
one two

RUN <<$EOF
$EOF

RUN <<  EOF
EOF

RUN <<  EOF  > foo
EOF
\t";
    // (name, content, expand, chomp, fd) of each node's heredocs after FROM.
    type Doc = (String, String, bool, bool, u64);
    let doc = |name: &str, content: &str, expand, chomp, fd| -> Doc {
        (name.into(), content.into(), expand, chomp, fd)
    };
    let d = |name, content, expand| vec![doc(name, content, expand, false, 0)];
    let c = |name, content, expand| vec![doc(name, content, expand, true, 0)];
    let want: Vec<Vec<Doc>> = vec![
        vec![], // ENV
        vec![], // RUN ls
        vec![], // USER <<INVALID
        vec![], // INVALID
        d("EMPTY", "", true),
        vec![doc("EMPTY2", "", true, false, 3)],
        vec![], // RUN "<<NOHEREDOC"
        d("INDENT", "\tfoo\n\tbar\n", true),
        c("UNINDENT", "\tbaz\n\tquux\n", true),
        c("UNINDENT2", "\tbaz\n\tquux\n", true),
        c("EXPAND", "\texpand $NAME\n", true),
        c("NOEXPAND", "\tdon't expand $NAME\n", false),
        d("COPY", "echo hello world\necho foo bar\n", true),
        d(
            "COMMENT",
            "# internal comment\necho hello world\necho foo bar # trailing comment\n",
            true,
        ),
        d("MOUNT", "echo hello\n", true),
        [
            d("FILE1", "content 1\n", true),
            d("FILE2", "content 2\n", true),
        ]
        .concat(),
        d("EOF", "\"foo\"\n'bar'\n", true),
        [d("X", "Y\n", true), d("Y", "X\n", true)].concat(),
        d("COMPLEX", "print('hello world')\n", true),
        d("file.txt", "hello world\n", true),
        d("eof", "echo foo\n", false),
        d("eo'f", "echo foo\n", true),
        d("eo'f", "echo foo\n", false),
        d("one two", "echo bar\n", false),
        d("$EOF", "", true),
        d("EOF", "", true), // RUN <<  EOF
        d("EOF", "", true), // RUN <<  EOF  > foo
    ];
    let df = parse("Dockerfile", text).unwrap();
    assert_eq!(df.nodes.len(), want.len() + 1);
    for (node, want) in df.nodes[1..].iter().zip(&want) {
        let got: Vec<Doc> = node
            .heredocs
            .iter()
            .map(|h| doc(&h.name, &h.content, h.expand, h.chomp, h.fd))
            .collect();
        assert_eq!(&got, want, "{}", node.original);
    }
    // The command stays as written: the build gives `<<  EOF  > foo` to the shell with
    // its heredoc appended, as BuildKit does.
    assert_eq!(df.nodes.last().unwrap().args, vec!["<<  EOF  > foo"]);
}

/// `TestParseJSONHeredoc`: the exec form has no heredocs.
#[test]
fn json_form_has_no_heredocs() {
    let df = parse(
        "Dockerfile",
        "\nFROM alpine:3.6\n\nRUN [\"whoami\"]\nRUN [\"<<EOF\"]\nRUN [\"<<'EOF'\"]\n\t",
    )
    .unwrap();
    assert_eq!(df.nodes.len(), 4);
    assert!(df.nodes.iter().all(|n| n.heredocs.is_empty()));
}

/// `TestHeredocChomp`, `TestParseHeredocHelpers` and `TestHeredocsFromLine`.
#[test]
fn heredoc_words_as_buildkit_reads_them() {
    use strata_builder::dockerfile::{chomp_heredoc_content, parse_heredoc};
    assert_eq!(
        chomp_heredoc_content("\thello\n\tworld\n"),
        "hello\nworld\n"
    );
    for src in [
        "<<EOF",
        "<<'EOF'",
        "<<\"EOF\"",
        "<<-EOF",
        "<<-'EOF'",
        "<<-\"EOF\"",
        "<<EO\"F\"",
        "<< EOF",
        "<<- EOF",
    ] {
        let h = parse_heredoc(src)
            .unwrap()
            .unwrap_or_else(|| panic!("{src}"));
        assert_eq!(h.name, "EOF", "{src}");
    }
    for src in ["<<'EOF", "<<\"EOF", "<<EOF'", "<<EOF\""] {
        assert!(parse_heredoc(src).is_err(), "{src}");
    }
    for src in ["", "EOF", "<<", "<<-", "<EOF", "<<<EOF", "<<EOF sh"] {
        assert_eq!(parse_heredoc(src).unwrap(), None, "{src}");
    }
    // heredocsFromLine, seen through the parser: each line's heredoc names, in order, and
    // the bodies are not read as instructions.
    for (line, names) in [
        ("RUN <<EOF", &["EOF"][..]),
        ("RUN <<-EOF", &["EOF"]),
        // BuildKit's lexer keeps only blanks right after `<<` in the word: `<<-` and `EOF`
        // are two words, and neither opens a heredoc (its table says "EOF", but its loop
        // over the heredocs found never runs).
        ("RUN <<- EOF", &[]),
        ("RUN << -EOF", &["-EOF"]),
        ("RUN <<\t EOF", &["EOF"]),
        ("RUN <<'EOF'", &["EOF"]),
        ("RUN 4<<EOF", &["EOF"]),
        ("RUN <<EOF <<EOF2", &["EOF", "EOF2"]),
        ("RUN '<<EOF'", &[]),
        ("RUN \"<<EOF\"", &[]),
    ] {
        let mut text = format!("FROM a\n{line}\n");
        for n in names {
            text.push_str(n);
            text.push('\n');
        }
        let df = parse("Dockerfile", &text).unwrap_or_else(|e| panic!("{line}: {e}"));
        let got: Vec<&str> = df.nodes[1]
            .heredocs
            .iter()
            .map(|h| h.name.as_str())
            .collect();
        assert_eq!(got, names, "{line}");
        assert_eq!(df.nodes.len(), 2, "{line}");
    }
}
