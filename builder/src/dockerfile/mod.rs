//! The Dockerfile front end: parser, syntax tree, typed instructions and
//! the shell-word expander, matching BuildKit's behaviour (see
//! `reference/dockerfile.md`).
//!
//! * [`parse`] reads a Dockerfile into a [`Dockerfile`]: directives, and one
//!   [`Node`] per instruction, before expansion and before semantic checks
//!   (BuildKit's `parser.Parse`).
//! * [`ast_json`] prints that tree for `strata dockerfile parse --json`.
//! * [`instructions::parse_stages`] turns the tree into typed instructions
//!   grouped in stages (BuildKit's `instructions.Parse`).
//! * [`expand`] / [`expand_words`] / [`Lexer`] expand variables in words as
//!   the build does.
//!
//! Every error carries the file name and the line (`Dockerfile:7: …`);
//! nothing here panics on any input, and input size is bounded by
//! [`Limits`].
//!
//! Known differences from BuildKit, all deliberate:
//! * errors carry a 1-based `file:line:` prefix (BuildKit attaches ranges,
//!   0-based for directive errors); an empty file fails on line 1;
//! * caps BuildKit lacks: instruction size and count, file size, ONBUILD and
//!   `${…}` nesting depth, expanded size, pattern-matching work (only the
//!   64 KiB line cap is BuildKit's own);
//! * `${VAR` ending right after the name reports `missing '}'` (BuildKit:
//!   `unsupported modifier (\u{fffd})`);
//! * split-words expansion keeps the text before a nested `${…:-…}`
//!   (`x${A:-y}z` gives `xyz`; BuildKit's shared word buffer gives `yz`);
//! * flag words and the HEALTHCHECK type are read as UTF-8 text (BuildKit
//!   reads them byte by byte, mangling non-ASCII);
//! * variable-name characters use Rust's alphabetic/numeric classes
//!   (Go: letters and decimal digits).

mod ast;
mod directives;
mod heredoc;
pub mod instructions;
mod json;
mod parser;
mod pattern;
mod shell;

pub use ast::{ast_json, node_json};
pub use directives::{CheckConfig, Directive};
pub use heredoc::{chomp_heredoc_content, parse_heredoc, Heredoc};
pub use shell::{expand, expand_words, ExpandError, Lexer, Processed, DEFAULT_MAX_EXPANSION};

/// A Dockerfile could not be parsed. Displays as `FILE:LINE: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct ParseError {
    /// The display name given to [`parse`].
    pub file: String,
    /// First line of the offending instruction (1-based).
    pub line: usize,
    /// Last line of the offending instruction.
    pub end_line: usize,
    /// What is wrong, as BuildKit words it where it has a message.
    pub message: String,
}

impl ParseError {
    pub(crate) fn new(
        file: &str,
        line: usize,
        end_line: usize,
        message: impl Into<String>,
    ) -> Self {
        ParseError {
            file: file.to_string(),
            line,
            end_line: end_line.max(line),
            message: message.into(),
        }
    }
}

/// Size limits applied while parsing (security.md: bounded resources).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest physical line, line ending excluded. BuildKit's scanner
    /// refuses lines of 64 KiB and more.
    pub max_line_bytes: usize,
    /// Longest instruction once continuation lines are joined.
    pub max_instruction_bytes: usize,
    /// Most instructions in one file.
    pub max_instructions: usize,
    /// Largest file.
    pub max_file_bytes: usize,
    /// `ONBUILD ONBUILD …` nesting kept in the tree (the instruction layer
    /// refuses any chaining anyway).
    pub max_onbuild_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line_bytes: 65_535,
            max_instruction_bytes: 1 << 20,
            max_instructions: 10_000,
            max_file_bytes: 32 << 20,
            max_onbuild_depth: 16,
        }
    }
}

/// A parse warning (BuildKit's "Empty continuation line" warning).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Line where the instruction ends.
    pub line: usize,
    /// The warning text.
    pub message: String,
}

/// One instruction of the syntax tree (BuildKit's `parser.Node`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    /// The keyword in lower case (`run`, `copy`, or an unknown word).
    pub keyword: String,
    /// Leading `--name[=value]` words, quotes and escapes removed.
    pub flags: Vec<String>,
    /// The arguments, shaped per instruction as in BuildKit's AST:
    /// ENV/LABEL `[key, value, sep]` triples, shell form one string, JSON
    /// form its elements, HEALTHCHECK `[TYPE, …]`, unknown `[""]`.
    pub args: Vec<String>,
    /// The arguments were a JSON array (exec form).
    pub json: bool,
    /// ONBUILD: the trigger instruction.
    pub sub: Option<Box<Node>>,
    /// Heredocs, in order (attached to the ONBUILD node for a trigger).
    pub heredocs: Vec<Heredoc>,
    /// The instruction line, continuation lines joined.
    pub original: String,
    /// Comment lines just before the instruction.
    pub comments: Vec<String>,
    /// First line (1-based).
    pub start_line: usize,
    /// Last line, heredoc bodies included.
    pub end_line: usize,
}

impl Node {
    fn set_lines(&mut self, start: usize, end: usize) {
        self.start_line = start;
        self.end_line = end;
        let mut sub = self.sub.as_deref_mut();
        while let Some(s) = sub {
            s.start_line = start;
            s.end_line = end;
            sub = s.sub.as_deref_mut();
        }
    }

    /// RUN, COPY and ADD in shell form (also as an ONBUILD trigger) may
    /// carry heredocs.
    pub fn can_contain_heredoc(&self) -> bool {
        let n = if self.keyword == "onbuild" {
            self.sub.as_deref().unwrap_or(self)
        } else {
            self
        };
        matches!(n.keyword.as_str(), "add" | "copy" | "run") && !n.json
    }
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The display name used in errors.
    pub name: String,
    /// The escape character in force (`\` or `` ` ``).
    pub escape: char,
    /// The parser directives at the top, in order.
    pub directives: Vec<Directive>,
    /// The instructions, in order.
    pub nodes: Vec<Node>,
    /// Parse warnings.
    pub warnings: Vec<Warning>,
}

impl Dockerfile {
    /// The value of a directive (`syntax`, `escape`, `check`).
    pub fn directive(&self, name: &str) -> Option<&str> {
        self.directives
            .iter()
            .find(|d| d.name == name)
            .map(|d| d.value.as_str())
    }

    /// The `# syntax=` directive.
    pub fn syntax(&self) -> Option<&str> {
        self.directive("syntax")
    }

    /// The `# check=` directive, parsed.
    pub fn check(&self) -> Option<Result<CheckConfig, String>> {
        self.directive("check").map(CheckConfig::parse)
    }

    /// An error located at `node`.
    pub fn error_at(&self, node: &Node, message: impl Into<String>) -> ParseError {
        ParseError::new(&self.name, node.start_line, node.end_line, message)
    }
}

/// Parse `text`, naming it `name` in errors (e.g. `Dockerfile`), with the
/// default [`Limits`].
pub fn parse(name: &str, text: &str) -> Result<Dockerfile, ParseError> {
    parse_with_limits(name, text, &Limits::default())
}

/// [`parse`] with explicit limits.
pub fn parse_with_limits(
    name: &str,
    text: &str,
    limits: &Limits,
) -> Result<Dockerfile, ParseError> {
    parser::parse(name, text, limits)
}
