//! Table-driven tests of the shell-word expander, following BuildKit's
//! `shell/lex_test.go`, `envVarTest` and `wordsTest`.

use std::collections::HashMap;

use strata_builder::dockerfile::{expand, expand_words, Lexer};

fn env_of(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn base_env() -> HashMap<String, String> {
    env_of(&[
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
        ("FILE", "/a/b/c.tar.gz"),
        ("SPACED", "x  y"),
        ("PORTS", "3000 4000/udp"),
    ])
}

/// `None` as the expected value means "an error containing the text".
fn check(escape: char, env: &HashMap<String, String>, cases: &[(&str, Result<&str, &str>)]) {
    let lookup = |k: &str| env.get(k).cloned();
    let mut failures = Vec::new();
    for (input, want) in cases {
        let got = expand(input, &lookup, escape);
        match (want, &got) {
            (Ok(w), Ok(g)) if w == g => {}
            (Err(w), Err(e)) if e.to_string().contains(w) => {}
            _ => failures.push(format!("{input:?}: want {want:?}, got {got:?}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn quotes_and_escapes() {
    check(
        '\\',
        &base_env(),
        &[
            ("hello", Ok("hello")),
            ("he'll'o", Ok("hello")),
            (
                "he'llo",
                Err("unexpected end of statement while looking for matching single-quote"),
            ),
            ("he\\'llo", Ok("he'llo")),
            ("he\\\\'llo", Err("matching single-quote")),
            ("abc\\\\", Ok("abc\\")),
            ("abc\\", Ok("abc")),
            ("\\a\\b\\ c", Ok("ab c")),
            ("'abc'", Ok("abc")),
            ("\"abc\"", Ok("abc")),
            ("\"a'b\"", Ok("a'b")),
            ("'a\"b'", Ok("a\"b")),
            ("\"a\\\"b\"", Ok("a\"b")),
            ("\"a\\\\b\"", Ok("a\\b")),
            ("\"a\\b\"", Ok("a\\b")),
            ("'a\\b'", Ok("a\\b")),
            ("'a\\'", Ok("a\\")),
            (
                "\"abc",
                Err("unexpected end of statement while looking for matching double-quote"),
            ),
            ("\"abc\\\"", Err("matching double-quote")),
            ("a\"\"b", Ok("ab")),
            ("''", Ok("")),
            ("\"'$PWD'\"", Ok("'/home'")),
            ("'\"$PWD\"'", Ok("\"$PWD\"")),
        ],
    );
}

#[test]
fn simple_variables() {
    check(
        '\\',
        &base_env(),
        &[
            ("$PWD", Ok("/home")),
            ("${PWD}", Ok("/home")),
            ("\\$PWD", Ok("$PWD")),
            ("'$PWD'", Ok("$PWD")),
            ("\"$PWD\"", Ok("/home")),
            ("\"\\$PWD\"", Ok("$PWD")),
            ("$PWD/x", Ok("/home/x")),
            ("${PWD}x", Ok("/homex")),
            ("$PWDx", Ok("")),
            ("$", Ok("$")),
            ("a$", Ok("a$")),
            ("$.x", Ok("$.x")),
            ("$1", Ok("")),
            ("$12x", Ok("x")),
            ("$@x", Ok("x")),
            ("${1}", Ok("")),
            ("$KOREAN", Ok("한국어")),
            ("${KOREAN}", Ok("한국어")),
            ("${UNSET}", Ok("")),
            ("${}", Err("syntax error: bad substitution")),
            ("${:}", Err("syntax error: bad substitution")),
            ("${{}", Err("syntax error: bad substitution")),
            ("${", Err("syntax error: missing '}'")),
            ("${PWD", Err("syntax error: missing '}'")),
            ("${PWD:", Err("syntax error: missing '}'")),
            ("${PWD:-x", Err("syntax error: missing '}'")),
            ("${PWD.x}", Err("unsupported modifier (.) in substitution")),
            ("${PWD=x}", Err("unsupported modifier (=) in substitution")),
            (
                "${PWD:=x}",
                Err("unsupported modifier (:=) in substitution"),
            ),
        ],
    );
}

#[test]
fn default_alternative_and_required() {
    check(
        '\\',
        &base_env(),
        &[
            ("${PWD:-x}", Ok("/home")),
            ("${XX:-x}", Ok("x")),
            ("${NULL:-x}", Ok("x")),
            ("${PWD-x}", Ok("/home")),
            ("${NULL-x}", Ok("")),
            ("${XX-x}", Ok("x")),
            ("${XX:-}", Ok("")),
            ("${PWD:+x}", Ok("x")),
            ("${NULL:+x}", Ok("")),
            ("${XX:+x}", Ok("")),
            ("${PWD+x}", Ok("x")),
            ("${NULL+x}", Ok("x")),
            ("${XX+x}", Ok("")),
            ("${PWD:?}", Ok("/home")),
            ("${PWD?}", Ok("/home")),
            ("${NULL?}", Ok("")),
            ("${XX:?}", Err("XX: is not allowed to be unset")),
            ("${NULL:?}", Err("NULL: is not allowed to be empty")),
            ("${XX?}", Err("XX: is not allowed to be unset")),
            ("${XX:?custom error}", Err("XX: custom error")),
            ("${XX?\"custom error\"}", Err("XX: custom error")),
            ("${NULL:?message here$SHELL}", Err("NULL: message herebash")),
            ("${XX:-\"a b\"}", Ok("a b")),
            ("${XX:-'$PWD'}", Ok("$PWD")),
            ("${XX:-$PWD}", Ok("/home")),
            ("${XX:-${YY:-nested}}", Ok("nested")),
            ("${XX:-${PWD:+set}}", Ok("set")),
            ("${XX:-a\\}b}", Ok("a}b")),
            ("\"${XX:-x y}\"", Ok("x y")),
            ("pre${XX:-mid}post", Ok("premidpost")),
        ],
    );
}

#[test]
fn prefix_and_suffix_removal() {
    let mut env = base_env();
    for (k, v) in [
        ("FOO", "xxyy"),
        ("STARS", "xx**"),
        ("QMARKS", "???y"),
        ("SPECIAL", "()[]{}^$.*?|\\x"),
        ("MANY", "a***yy*"),
        ("BAR", "x"),
        ("MULTI", "ab\ncd"),
    ] {
        env.insert(k.to_string(), v.to_string());
    }
    check(
        '\\',
        &env,
        &[
            ("${PWD#/}", Ok("home")),
            ("${PWD#*o}", Ok("me")),
            ("${FILE#*.}", Ok("tar.gz")),
            ("${FILE##*.}", Ok("gz")),
            ("${FILE##*/}", Ok("c.tar.gz")),
            ("${FILE%.*}", Ok("/a/b/c.tar")),
            ("${FILE%%.*}", Ok("/a/b/c")),
            ("${FILE%/*}", Ok("/a/b")),
            ("${FILE%nomatch}", Ok("/a/b/c.tar.gz")),
            ("${FOO#*x*y}", Ok("y")),
            ("${FOO#*}", Ok("xxyy")),
            ("${FOO##*}", Ok("")),
            ("${FOO#$BAR}", Ok("xyy")),
            ("${FOO#$NULL}", Ok("xxyy")),
            ("${FOO#}", Ok("xxyy")),
            ("${FOO##*x}", Ok("yy")),
            ("${FOO##}", Ok("xxyy")),
            ("${FOO%}", Ok("xxyy")),
            ("${FOO%%$NULL}", Ok("xxyy")),
            ("${FOO%y}", Ok("xxy")),
            ("${FOO%%y*}", Ok("xx")),
            ("${FOO%y*}", Ok("xxy")),
            ("${QMARKS#?\\?}", Ok("?y")),
            ("${STARS%%\\**}", Ok("xx")),
            ("${MANY%%\\**\\*}", Ok("a")),
            ("${SPECIAL#()[]{\\}^$.\\*\\?|\\\\}", Ok("x")),
            ("${ABC:-.}${FOO%x}${ABC:-.}", Ok(".xxyy.")),
            ("${KOREAN#한}", Ok("국어")),
            ("${KOREAN%?}", Ok("한국")),
            // `*` does not cross a newline (Go's `.`).
            ("${MULTI#*d}", Ok("ab\ncd")),
            ("${MULTI#ab?}", Ok("ab\ncd")),
            (
                "${FOO#\\x}",
                Err("invalid pattern (\\x) in substitution: invalid escape '\\x'"),
            ),
            (
                "${FOO:#x}",
                Err("unsupported modifier (:#) in substitution"),
            ),
            (
                "${FOO:##x}",
                Err("unsupported modifier (:#) in substitution"),
            ),
            ("${FOO:%}", Err("unsupported modifier (:%) in substitution")),
            (
                "${FOO:%%}",
                Err("unsupported modifier (:%) in substitution"),
            ),
            ("${FOO#x", Err("syntax error: missing '}'")),
        ],
    );
}

#[test]
fn substitution() {
    let mut env = base_env();
    for (k, v) in [
        ("FOO", "xxyy"),
        ("GLOB", "/foo*/*/*.txt"),
        ("NEEDLE", "\\*/"),
        ("TMPS", "/tmp/tmp/bar.txt"),
        ("T", "/tmp"),
        ("PATHS", "/a/foo/b/c.txt"),
        ("ANY", "/?/"),
        ("SLASH", "/"),
        ("URL", "http://google.de"),
        ("HTTP", "http://"),
        ("HTTPS", "https://"),
        ("DOLLAR", "$0!"),
    ] {
        env.insert(k.to_string(), v.to_string());
    }
    check(
        '\\',
        &env,
        &[
            ("${FILE/b/X}", Ok("/a/X/c.tar.gz")),
            ("${FILE//\\//_}", Ok("_a_b_c.tar.gz")),
            ("${FILE/nomatch/X}", Ok("/a/b/c.tar.gz")),
            (
                "${GLOB/$NEEDLE/.} - ${GLOB//$NEEDLE/.}",
                Ok("/foo.*/*.txt - /foo..*.txt"),
            ),
            ("${TMPS/$T/} - ${TMPS//$T/}", Ok("/tmp/bar.txt - /bar.txt")),
            (
                "${PATHS/$ANY/$SLASH} - ${PATHS//$ANY/$SLASH}",
                Ok("/foo/b/c.txt - /foo/c.txt"),
            ),
            ("${URL/$HTTP/$HTTPS}", Ok("https://google.de")),
            ("${T//\\//\\/}", Ok("\\/tmp")),
            ("${FOO/$NULL/ww}", Ok("wwxxyy")),
            ("${FOO//$NULL/-}", Ok("-x-x-y-y-")),
            ("${FOO/x*/z}", Ok("z")),
            ("${FOO//x/$DOLLAR}", Ok("x!x!yy")),
            ("${FOO/x/$DOLLAR}", Ok("$0!xyy")),
            ("${FOO///}", Ok("xxyy")),
            ("${UNSET///}", Ok("")),
            ("${FOO//ww}", Err("syntax error: missing '/' in ${}")),
            ("${FOO//}", Err("syntax error: missing '/' in ${}")),
            ("${FOO/x/y", Err("syntax error: missing '}'")),
        ],
    );
}

#[test]
fn backtick_escape() {
    check(
        '`',
        &base_env(),
        &[
            ("a`$PWD", Ok("a$PWD")),
            ("\"a`\"b\"", Ok("a\"b")),
            ("c:\\windows\\system32", Ok("c:\\windows\\system32")),
            ("a``b", Ok("a`b")),
            ("a` b", Ok("a b")),
            ("\"`$PWD\"", Ok("$PWD")),
            ("\"a`b\"", Ok("a`b")),
            ("'a`b'", Ok("a`b")),
            ("$PWD`", Ok("/home")),
            ("${XX:-`}}", Ok("}")),
        ],
    );
}

#[test]
fn words() {
    let env = base_env();
    let lookup = |k: &str| env.get(k).cloned();
    let cases: &[(&str, &[&str])] = &[
        ("a b c", &["a", "b", "c"]),
        ("  lead   trail  ", &["lead", "trail"]),
        ("'a b' c", &["a b", "c"]),
        ("a\"b c\"d", &["ab cd"]),
        ("a\\ b", &["a b"]),
        ("$SPACED", &["x", "y"]),
        ("\"$SPACED\"", &["x  y"]),
        ("a \"\" b", &["a", "b"]),
        ("80 $PORTS", &["80", "3000", "4000/udp"]),
        ("${XX:-a b}", &["a", "b"]),
        ("x${XX:-y}z", &["xyz"]),
        ("he'll'o wor\"ld\"", &["hello", "world"]),
        ("", &[]),
    ];
    let mut failures = Vec::new();
    for (input, want) in cases {
        match expand_words(input, &lookup, '\\') {
            Ok(got) if got == *want => {}
            other => failures.push(format!("{input:?}: want {want:?}, got {other:?}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn lexer_options() {
    let env = env_of(&[("SET", "v")]);
    let lookup = |k: &str| env.get(k).cloned();

    // Unset references are kept, set ones expanded (heredoc detection mode).
    let mut lex = Lexer::new('\\');
    lex.skip_unset_env = true;
    assert_eq!(
        lex.process_word("$X ${Y} ${Z:-d} ${W/a/b} $SET", &lookup)
            .unwrap(),
        "$X ${Y} ${Z:-d} ${W/a/b} v"
    );

    // Raw quotes and escapes are kept.
    let mut lex = Lexer::new('\\');
    lex.raw_quotes = true;
    lex.raw_escapes = true;
    assert_eq!(
        lex.process_word("'a' \"b\" \\c", &lookup).unwrap(),
        "'a' \"b\" \\c"
    );
    assert_eq!(
        lex.process_words("<<'EOF' x\\ y", &lookup).unwrap(),
        vec!["<<'EOF'", "x\\ y"]
    );

    // Quotes as ordinary characters.
    let mut lex = Lexer::new('\\');
    lex.skip_process_quotes = true;
    assert_eq!(
        lex.process_word("'$SET' \"x\"", &lookup).unwrap(),
        "'v' \"x\""
    );

    // Matched and unmatched variables are reported.
    let p = Lexer::new('\\')
        .process("${SET} ${NOPE:-x} $ALSO", &lookup)
        .unwrap();
    assert_eq!(p.result, "v x ");
    assert_eq!(p.matched.into_iter().collect::<Vec<_>>(), vec!["SET"]);
    assert_eq!(
        p.unmatched.into_iter().collect::<Vec<_>>(),
        vec!["ALSO", "NOPE"]
    );

    // Errors name the word.
    let e = expand("${A:?}", &lookup, '\\').unwrap_err();
    assert_eq!(
        e.to_string(),
        "failed to process \"${A:?}\": A: is not allowed to be unset"
    );
}

#[test]
fn limits() {
    let big = "x".repeat(600 * 1024);
    let env = env_of(&[("BIG", &big), ("ONE", "a")]);
    let lookup = |k: &str| env.get(k).cloned();

    assert_eq!(expand("$BIG", &lookup, '\\').unwrap().len(), big.len());
    let e = expand("$BIG$BIG", &lookup, '\\').unwrap_err();
    assert!(e.message.contains("exceeds the maximum"), "{e}");

    let mut lex = Lexer::new('\\');
    lex.max_size = 8;
    assert!(lex.process_word("123456789", &lookup).is_err());
    assert!(lex.process_word("${ONE//$NULL/12345}", &lookup).is_err());
    assert_eq!(lex.process_word("12345678", &lookup).unwrap(), "12345678");

    // Deep nesting is an error, not a stack overflow.
    let deep = format!("{}x{}", "${A:-".repeat(10_000), "}".repeat(10_000));
    let e = expand(&deep, &lookup, '\\').unwrap_err();
    assert!(e.message.contains("nested"), "{}", e.message);

    // An expensive pattern gives up instead of hanging.
    let long = "a".repeat(200_000);
    let env2 = env_of(&[("L", &long)]);
    let lookup2 = |k: &str| env2.get(k).cloned();
    let pat = format!("${{L//{}b/x}}", "*a".repeat(200));
    let e = expand(&pat, &lookup2, '\\').unwrap_err();
    assert!(e.message.contains("too expensive"), "{}", e.message);

    // Values are not expanded again (single pass).
    let env3 = env_of(&[("A", "$B"), ("B", "no")]);
    let lookup3 = |k: &str| env3.get(k).cloned();
    assert_eq!(expand("$A ${A}", &lookup3, '\\').unwrap(), "$B $B");
}
