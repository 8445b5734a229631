//! Shell-like word processing, as BuildKit's `frontend/dockerfile/shell`
//! lexer does it: quote removal, escapes and `$VAR` / `${VAR…}` expansion.
//!
//! The build uses it for the instructions that Docker expands (ADD, COPY,
//! ENV, EXPOSE, FROM, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR, ARG…); the
//! parser uses it to find heredoc markers.
//!
//! Expansion is single pass (a value taken from the environment is never
//! expanded again), bounded in size ([`Lexer::max_size`]) and in nesting
//! depth, and never panics.

use std::collections::BTreeSet;

use super::pattern::{self, Pattern};

/// Default cap on the size of an expanded word, in bytes.
pub const DEFAULT_MAX_EXPANSION: usize = 1 << 20;

/// How deeply `${a:-${b:-…}}` substitutions may nest.
const MAX_NESTING: usize = 64;

/// Work budget for `#`, `%` and `/` pattern matching, in NFA steps.
const PATTERN_BUDGET: u64 = 10_000_000;

/// A word could not be processed.
///
/// Displays like BuildKit: `failed to process "word": message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to process {word:?}: {message}")]
pub struct ExpandError {
    /// The word as given.
    pub word: String,
    /// What went wrong (e.g. `FOO: is not allowed to be unset`).
    pub message: String,
}

/// Options of the lexer, mirroring BuildKit's `shell.Lex`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lexer {
    /// The escape character (`\` by default, or `` ` `` after `# escape=`).
    pub escape: char,
    /// Keep quote characters in the output (quoted text is still literal).
    pub raw_quotes: bool,
    /// Keep escape characters in the output.
    pub raw_escapes: bool,
    /// Leave references to unset variables as written (`$X`, `${X:-y}`).
    pub skip_unset_env: bool,
    /// Treat quotes as ordinary characters.
    pub skip_process_quotes: bool,
    /// Largest expanded result, in bytes; more is an error.
    pub max_size: usize,
}

/// Everything [`Lexer::process`] computes for one word.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Processed {
    /// The word after quote removal and expansion (spaces kept).
    pub result: String,
    /// The same, split into words at unquoted whitespace (after expansion).
    pub words: Vec<String>,
    /// Variables referenced and found in the environment.
    pub matched: BTreeSet<String>,
    /// Variables referenced but not set.
    pub unmatched: BTreeSet<String>,
}

impl Lexer {
    /// A lexer with BuildKit's defaults and the given escape character.
    pub fn new(escape: char) -> Self {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_unset_env: false,
            skip_process_quotes: false,
            max_size: DEFAULT_MAX_EXPANSION,
        }
    }

    /// Expand `word` to one string (BuildKit `ProcessWord`).
    pub fn process_word(
        &self,
        word: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<String, ExpandError> {
        Ok(self.process(word, env)?.result)
    }

    /// Expand `word` and split it into words (BuildKit `ProcessWords`).
    pub fn process_words(
        &self,
        word: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Vec<String>, ExpandError> {
        Ok(self.process(word, env)?.words)
    }

    /// Expand `word`, returning the joined result, the split words and the
    /// variables it referenced.
    pub fn process(
        &self,
        word: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Processed, ExpandError> {
        let mut chars: Vec<char> = word.chars().collect();
        // Go's text/scanner skips a byte-order mark at the very start.
        if chars.first() == Some(&'\u{feff}') {
            chars.remove(0);
        }
        let mut st = State {
            lex: self,
            chars,
            pos: 0,
            env,
            raw_escapes: self.raw_escapes,
            depth: 0,
            budget: PATTERN_BUDGET,
            matched: BTreeSet::new(),
            unmatched: BTreeSet::new(),
        };
        match st.process_stop_on(None, self.raw_escapes) {
            Ok((result, words)) => Ok(Processed {
                result,
                words,
                matched: st.matched,
                unmatched: st.unmatched,
            }),
            Err(message) => Err(ExpandError {
                word: word.to_string(),
                message,
            }),
        }
    }
}

/// Expand `word` the way BuildKit expands the words of ADD, COPY, ENV, …:
/// quotes are removed, `escape` escapes, variables come from `env`.
pub fn expand(
    word: &str,
    env: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<String, ExpandError> {
    Lexer::new(escape).process_word(word, env)
}

/// Like [`expand`], then split at unquoted whitespace (for EXPOSE, and the
/// other instructions that take several words).
pub fn expand_words(
    word: &str,
    env: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<Vec<String>, ExpandError> {
    Lexer::new(escape).process_words(word, env)
}

/// `unicode.IsSpace` (same set as Rust's `White_Space`).
pub(crate) fn is_space(c: char) -> bool {
    c.is_whitespace()
}

fn is_digit(c: char) -> bool {
    c.is_ascii_digit() || (!c.is_ascii() && c.is_numeric())
}

fn is_letter(c: char) -> bool {
    c.is_alphabetic()
}

fn is_special_param(c: char) -> bool {
    matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}

/// The split-words accumulator (BuildKit `wordsStruct`).
#[derive(Default)]
struct Words {
    buf: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, c: char) {
        if is_space(c) {
            if self.in_word && !self.buf.is_empty() {
                self.words.push(std::mem::take(&mut self.buf));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(c);
        }
    }

    fn add_raw_char(&mut self, c: char) {
        self.buf.push(c);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        for c in s.chars() {
            self.add_char(c);
        }
    }

    fn add_raw_string(&mut self, s: &str) {
        self.buf.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.buf.is_empty() {
            self.words.push(std::mem::take(&mut self.buf));
        }
        self.words
    }
}

struct State<'a> {
    lex: &'a Lexer,
    chars: Vec<char>,
    pos: usize,
    env: &'a dyn Fn(&str) -> Option<String>,
    raw_escapes: bool,
    depth: usize,
    budget: u64,
    matched: BTreeSet<String>,
    unmatched: BTreeSet<String>,
}

type Res<T> = Result<T, String>;

impl State<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    fn check_size(&self, len: usize) -> Res<()> {
        if len > self.lex.max_size {
            return Err(format!(
                "expanded value exceeds the maximum of {} bytes",
                self.lex.max_size
            ));
        }
        Ok(())
    }

    fn get_env(&mut self, name: &str) -> Option<String> {
        let v = (self.env)(name);
        if v.is_some() {
            self.matched.insert(name.to_string());
        } else {
            self.unmatched.insert(name.to_string());
        }
        v
    }

    /// Process until `stop` (consumed) or the end of input. `raw_escapes`
    /// applies for the duration of the call, as in BuildKit.
    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Res<(String, Vec<String>)> {
        let saved = self.raw_escapes;
        self.raw_escapes = raw_escapes;
        let r = self.stop_on_inner(stop);
        self.raw_escapes = saved;
        r
    }

    fn stop_on_inner(&mut self, stop: Option<char>) -> Res<(String, Vec<String>)> {
        let mut result = String::new();
        let mut words = Words::default();
        let quotes = !self.lex.skip_process_quotes;
        while let Some(ch) = self.peek() {
            if stop == Some(ch) {
                self.next();
                return Ok((result, words.finish()));
            }
            if ch == '$' {
                let tmp = self.process_dollar()?;
                self.check_size(result.len() + tmp.len())?;
                result.push_str(&tmp);
                words.add_string(&tmp);
            } else if ch == '<' {
                let tmp = self.possible_heredoc();
                self.check_size(result.len() + tmp.len())?;
                result.push_str(&tmp);
                words.add_raw_string(&tmp);
            } else if quotes && (ch == '\'' || ch == '"') {
                let tmp = if ch == '\'' {
                    self.single_quote()?
                } else {
                    self.double_quote()?
                };
                self.check_size(result.len() + tmp.len())?;
                result.push_str(&tmp);
                words.add_raw_string(&tmp);
            } else {
                self.next();
                if ch == self.lex.escape {
                    if self.raw_escapes {
                        words.add_raw_char(ch);
                        result.push(ch);
                    }
                    // The escape character escapes anything, except at the end.
                    let Some(c) = self.next() else { break };
                    words.add_raw_char(c);
                    result.push(c);
                } else {
                    words.add_char(ch);
                    result.push(ch);
                }
                self.check_size(result.len())?;
            }
        }
        if let Some(s) = stop {
            return Err(format!(
                "unexpected end of statement while looking for matching {s}"
            ));
        }
        Ok((result, words.finish()))
    }

    /// BuildKit `processPossibleHeredoc`: `<<` and the blanks after it stay in one word,
    /// so `<<  EOF` is one heredoc marker.
    fn possible_heredoc(&mut self) -> String {
        self.next(); // '<'
        if self.peek() != Some('<') {
            return "<".to_string();
        }
        self.next();
        let mut out = "<<".to_string();
        while let Some(c) = self.peek().filter(|c| matches!(c, '\t' | '\r' | ' ')) {
            out.push(c);
            self.next();
        }
        out
    }

    fn single_quote(&mut self) -> Res<String> {
        // Everything up to the next ' is literal; ' cannot be escaped.
        let raw = self.lex.raw_quotes;
        let mut result = String::new();
        self.next();
        if raw {
            result.push('\'');
        }
        loop {
            match self.next() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote"
                            .to_string(),
                    )
                }
                Some('\'') => {
                    if raw {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    fn double_quote(&mut self) -> Res<String> {
        // Literal except `$`, and the escape character before `"`, `$` or
        // itself; any other escape is kept as written.
        let raw = self.lex.raw_quotes;
        let esc = self.lex.escape;
        let mut result = String::new();
        self.next();
        if raw {
            result.push('"');
        }
        loop {
            match self.peek() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote"
                            .to_string(),
                    )
                }
                Some('"') => {
                    self.next();
                    if raw {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let v = self.process_dollar()?;
                    self.check_size(result.len() + v.len())?;
                    result.push_str(&v);
                }
                Some(_) => {
                    let mut ch = self.next().unwrap_or(esc);
                    if ch == esc {
                        if self.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            // An escape at the very end is dropped (and the
                            // quote is then unterminated).
                            None => continue,
                            Some(c) if c == '"' || c == '$' || c == esc => {
                                ch = c;
                                self.next();
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                    self.check_size(result.len())?;
                }
            }
        }
    }

    fn process_dollar(&mut self) -> Res<String> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(format!(
                "variable substitutions nested more than {MAX_NESTING} deep"
            ));
        }
        let r = self.dollar_inner();
        self.depth -= 1;
        r
    }

    fn missing_brace<T>(&self, e: String) -> Res<T> {
        if self.peek().is_none() {
            Err("syntax error: missing '}'".to_string())
        } else {
            Err(e)
        }
    }

    fn dollar_inner(&mut self) -> Res<String> {
        self.next(); // '$'
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.lex.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.next(); // '{'
        match self.peek() {
            None => return Err("syntax error: missing '}'".to_string()),
            Some('{') | Some('}') | Some(':') => {
                return Err("syntax error: bad substitution".to_string())
            }
            _ => {}
        }
        let name = self.process_name();
        let Some(mut ch) = self.next() else {
            return Err("syntax error: missing '}'".to_string());
        };
        let mut chs = ch.to_string();
        match ch {
            '}' => Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.lex.skip_unset_env => format!("${{{name}}}"),
                None => String::new(),
            }),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                let null_is_unset = ch == ':';
                if null_is_unset {
                    match self.next() {
                        Some(c) => {
                            ch = c;
                            chs.push(c);
                        }
                        None => return Err("syntax error: missing '}'".to_string()),
                    }
                }
                let raw = ch == '#' || ch == '%';
                if null_is_unset && raw {
                    return Err(format!("unsupported modifier ({chs}) in substitution"));
                }
                let word = match self.process_stop_on(Some('}'), raw) {
                    Ok((w, _)) => w,
                    Err(e) => return self.missing_brace(e),
                };
                let value = self.get_env(&name);
                if self.lex.skip_unset_env && value.is_none() {
                    return Ok(format!("${{{name}{chs}{word}}}"));
                }
                let set = value.is_some();
                let value = value.unwrap_or_default();
                let null = !set || (null_is_unset && value.is_empty());
                match ch {
                    '-' => Ok(if null { word } else { value }),
                    '+' => Ok(if null { String::new() } else { word }),
                    '?' => {
                        if !set {
                            let msg = if word.is_empty() {
                                "is not allowed to be unset"
                            } else {
                                &word
                            };
                            Err(format!("{name}: {msg}"))
                        } else if null_is_unset && value.is_empty() {
                            let msg = if word.is_empty() {
                                "is not allowed to be empty"
                            } else {
                                &word
                            };
                            Err(format!("{name}: {msg}"))
                        } else {
                            Ok(value)
                        }
                    }
                    '%' | '#' => {
                        // `%`/`#` remove the shortest match, `%%`/`##` the longest.
                        let (greedy, pat) = match word.strip_prefix(ch) {
                            Some(rest) => (true, rest),
                            None => (false, word.as_str()),
                        };
                        let compiled = Pattern::compile(pat)
                            .map_err(|e| format!("invalid pattern ({pat}) in substitution: {e}"))?;
                        if ch == '%' {
                            pattern::trim_suffix(&compiled, &value, greedy, &mut self.budget)
                        } else {
                            pattern::trim_prefix(&compiled, &value, greedy, &mut self.budget)
                        }
                    }
                    _ => Err(format!("unsupported modifier ({chs}) in substitution")),
                }
            }
            '/' => {
                let replace_all = self.peek() == Some('/');
                if replace_all {
                    self.next();
                }
                let pat = match self.process_stop_on(Some('/'), true) {
                    Ok((w, _)) => w,
                    Err(e) => {
                        if self.peek().is_none() {
                            return Err("syntax error: missing '/' in ${}".to_string());
                        }
                        return Err(e);
                    }
                };
                let replacement = match self.process_stop_on(Some('}'), true) {
                    Ok((w, _)) => w,
                    Err(e) => return self.missing_brace(e),
                };
                let value = self.get_env(&name);
                if self.lex.skip_unset_env && value.is_none() {
                    return Ok(format!("${{{name}/{pat}/{replacement}}}"));
                }
                let value = value.unwrap_or_default();
                let compiled = Pattern::compile(&pat)
                    .map_err(|e| format!("invalid pattern ({pat}) in substitution: {e}"))?;
                let out = if replace_all {
                    pattern::replace_all(
                        &compiled,
                        &value,
                        &replacement,
                        self.lex.max_size,
                        &mut self.budget,
                    )?
                } else {
                    pattern::replace_first(&compiled, &value, &replacement, &mut self.budget)?
                };
                self.check_size(out.len())?;
                Ok(out)
            }
            _ => Err(format!("unsupported modifier ({chs}) in substitution")),
        }
    }

    /// A variable name: letters, digits and `_`; or a run of digits; or one
    /// special parameter character.
    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && is_digit(ch) {
                while let Some(c) = self.peek() {
                    if !is_digit(c) {
                        break;
                    }
                    self.next();
                    name.push(c);
                }
                return name;
            }
            if name.is_empty() && is_special_param(ch) {
                self.next();
                return ch.to_string();
            }
            if !is_letter(ch) && !is_digit(ch) && ch != '_' {
                break;
            }
            self.next();
            name.push(ch);
        }
        name
    }
}
