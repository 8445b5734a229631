//! Heredocs (`<<EOF`, `<<-EOF`, `<<"EOF"`, `3<<EOF`, `<< EOF`) in RUN, COPY and ADD,
//! detected as BuildKit does: the instruction line is split into shell
//! words (quotes and escapes kept), and every word of the form
//! `[fd]<<[-]NAME` opens a heredoc, read in order after the instruction.

use super::shell::Lexer;

/// One heredoc attached to an instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The terminator, quotes removed.
    pub name: String,
    /// The file descriptor before `<<` (0 when none).
    pub fd: u64,
    /// False when the name was quoted (`<<'EOF'`): no variable expansion.
    pub expand: bool,
    /// `<<-`: leading tabs are removed from the body (and the terminator
    /// may be indented with tabs).
    pub chomp: bool,
    /// The body as written, every line with its line ending, leading tabs
    /// kept (see [`Heredoc::chomped_content`]).
    pub content: String,
}

impl Heredoc {
    /// The body with leading tabs removed from every line when `chomp`.
    pub fn chomped_content(&self) -> String {
        if self.chomp {
            chomp_heredoc_content(&self.content)
        } else {
            self.content.clone()
        }
    }
}

/// BuildKit `ChompHeredocContent`: remove the leading tabs of every line.
pub fn chomp_heredoc_content(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    for line in src.split_inclusive('\n') {
        out.push_str(line.trim_start_matches('\t'));
    }
    out
}

fn no_env(_: &str) -> Option<String> {
    None
}

/// BuildKit `ParseHeredoc`: is `src` (one shell word) a heredoc marker?
pub fn parse_heredoc(src: &str) -> Result<Option<Heredoc>, String> {
    // ^(\d*)<<(-?)\s*([^<]*)$ (Go's \s: tab, newline, form feed, carriage return, space)
    let digits = src.bytes().take_while(u8::is_ascii_digit).count();
    let Some(rest) = src[digits..].strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let rest = rest.trim_start_matches(['\t', '\n', '\x0c', '\r', ' ']);
    if rest.contains('<') || rest.is_empty() {
        return Ok(None);
    }
    let fd = src[..digits].parse::<u64>().unwrap_or(0);

    let mut lex = Lexer::new('\\');
    lex.skip_unset_env = true;
    let words = lex
        .process_words(rest, &no_env)
        .map_err(|e| e.to_string())?;
    if words.len() != 1 {
        return Ok(None);
    }
    lex.raw_quotes = true;
    let words_raw = lex
        .process_words(rest, &no_env)
        .map_err(|e| e.to_string())?;
    if words_raw.len() != words.len() {
        return Err(format!(
            "internal lexing of heredoc produced inconsistent results: {rest}"
        ));
    }
    let quotes = |s: &str| s.chars().filter(|c| *c == '\'' || *c == '"').count();
    let word = words.into_iter().next().unwrap_or_default();
    let expand = quotes(&word) == quotes(&words_raw[0]);
    Ok(Some(Heredoc {
        name: word,
        fd,
        expand,
        chomp,
        content: String::new(),
    }))
}

/// BuildKit `heredocsFromLine`: the heredoc markers of an instruction line,
/// in order.
pub(crate) fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, String> {
    let mut lex = Lexer::new('\\');
    lex.raw_quotes = true;
    lex.raw_escapes = true;
    lex.skip_unset_env = true;
    // A line that does not lex (an unbalanced quote…) has no heredocs.
    let words = lex.process_words(line, &no_env).unwrap_or_default();
    let mut docs = Vec::new();
    for w in words {
        if let Some(h) = parse_heredoc(&w)? {
            docs.push(h);
        }
    }
    Ok(docs)
}
