//! The shell patterns of `${V#p}`, `${V%p}` and `${V/p/r}`: `*` (any run of
//! characters), `?` (one character) and `\` escapes, as BuildKit converts
//! them to a Go regular expression (where `.` does not match a newline).
//!
//! Matching is a bounded NFA simulation: every call draws on a step budget,
//! so an adversarial pattern gives an error, never a hang.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Lit(char),
    Any,
    Star,
}

/// A compiled pattern.
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    toks: Vec<Tok>,
}

impl Pattern {
    /// Compile BuildKit's pattern syntax. `\}` and `\/` stand for `}` and
    /// `/`; `\*`, `\?` and `\\` for the character; any other escape is an
    /// error.
    pub(crate) fn compile(pattern: &str) -> Result<Pattern, String> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut toks = Vec::with_capacity(chars.len());
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            i += 1;
            match c {
                '*' => toks.push(Tok::Star),
                '?' => toks.push(Tok::Any),
                '\\' => match chars.get(i) {
                    // The escape only protected the delimiter of ${}; the
                    // character itself is read on the next round.
                    Some('}') | Some('/') => {}
                    Some(&t) if t == '*' || t == '?' || t == '\\' => {
                        toks.push(Tok::Lit(t));
                        i += 1;
                    }
                    Some(&t) => return Err(format!("invalid escape '\\{t}'")),
                    None => return Err("invalid escape '\\\u{fffd}'".to_string()),
                },
                other => toks.push(Tok::Lit(other)),
            }
        }
        Ok(Pattern { toks })
    }

    fn reversed(&self) -> Pattern {
        let mut toks = self.toks.clone();
        toks.reverse();
        Pattern { toks }
    }

    fn closure(&self, set: &mut [bool]) {
        for j in 0..self.toks.len() {
            if set[j] && self.toks[j] == Tok::Star {
                set[j + 1] = true;
            }
        }
    }

    /// The shortest and the longest end of a match of the pattern starting
    /// at `start` of `s`.
    fn match_ends(
        &self,
        s: &[char],
        start: usize,
        budget: &mut u64,
    ) -> Result<(Option<usize>, Option<usize>), String> {
        let m = self.toks.len();
        let mut cur = vec![false; m + 1];
        cur[0] = true;
        self.closure(&mut cur);
        let (mut shortest, mut longest) = (None, None);
        if cur[m] {
            shortest = Some(start);
            longest = Some(start);
        }
        let mut next = vec![false; m + 1];
        for (i, &c) in s.iter().enumerate().skip(start) {
            let cost = (m as u64) + 1;
            if *budget < cost {
                return Err("pattern matching is too expensive".to_string());
            }
            *budget -= cost;
            next.iter_mut().for_each(|b| *b = false);
            let mut alive = false;
            for j in 0..m {
                if !cur[j] {
                    continue;
                }
                match self.toks[j] {
                    Tok::Lit(x) if x == c => {
                        next[j + 1] = true;
                        alive = true;
                    }
                    Tok::Any if c != '\n' => {
                        next[j + 1] = true;
                        alive = true;
                    }
                    Tok::Star if c != '\n' => {
                        next[j] = true;
                        alive = true;
                    }
                    _ => {}
                }
            }
            if !alive {
                break;
            }
            self.closure(&mut next);
            if next[m] {
                if shortest.is_none() {
                    shortest = Some(i + 1);
                }
                longest = Some(i + 1);
            }
            std::mem::swap(&mut cur, &mut next);
        }
        Ok((shortest, longest))
    }

    /// Leftmost match at or after `from`, longest at that start.
    fn find(
        &self,
        s: &[char],
        from: usize,
        budget: &mut u64,
    ) -> Result<Option<(usize, usize)>, String> {
        for start in from..=s.len() {
            if *budget == 0 {
                return Err("pattern matching is too expensive".to_string());
            }
            *budget -= 1;
            if let (_, Some(end)) = self.match_ends(s, start, budget)? {
                return Ok(Some((start, end)));
            }
        }
        Ok(None)
    }
}

/// `${V#p}` (shortest) / `${V##p}` (greedy).
pub(crate) fn trim_prefix(
    p: &Pattern,
    value: &str,
    greedy: bool,
    budget: &mut u64,
) -> Result<String, String> {
    let s: Vec<char> = value.chars().collect();
    let (shortest, longest) = p.match_ends(&s, 0, budget)?;
    let end = if greedy { longest } else { shortest };
    Ok(match end {
        Some(e) => s[e..].iter().collect(),
        None => value.to_string(),
    })
}

/// `${V%p}` (shortest) / `${V%%p}` (greedy): the prefix match of the reversed
/// pattern on the reversed value, as BuildKit does it.
pub(crate) fn trim_suffix(
    p: &Pattern,
    value: &str,
    greedy: bool,
    budget: &mut u64,
) -> Result<String, String> {
    let rev: String = value.chars().rev().collect();
    let out = trim_prefix(&p.reversed(), &rev, greedy, budget)?;
    Ok(out.chars().rev().collect())
}

/// `${V/p/r}`: replace the leftmost (longest) match, literally.
pub(crate) fn replace_first(
    p: &Pattern,
    value: &str,
    replacement: &str,
    budget: &mut u64,
) -> Result<String, String> {
    let s: Vec<char> = value.chars().collect();
    Ok(match p.find(&s, 0, budget)? {
        Some((a, b)) => {
            let mut out: String = s[..a].iter().collect();
            out.push_str(replacement);
            out.extend(&s[b..]);
            out
        }
        None => value.to_string(),
    })
}

/// `${V//p/r}`: Go's `Regexp.ReplaceAllString`, including its handling of
/// empty matches and its `$n` / `${name}` template syntax in `replacement`
/// (`$0` is the match; the pattern has no groups, so others are empty).
pub(crate) fn replace_all(
    p: &Pattern,
    value: &str,
    replacement: &str,
    max: usize,
    budget: &mut u64,
) -> Result<String, String> {
    let s: Vec<char> = value.chars().collect();
    let mut out = String::new();
    let mut last_end = 0usize;
    let mut search = 0usize;
    while search <= s.len() {
        let Some((a, b)) = p.find(&s, search, budget)? else {
            break;
        };
        out.extend(&s[last_end..a]);
        if b > last_end || a == 0 {
            let matched: String = s[a..b].iter().collect();
            expand_template(&mut out, replacement, &matched);
        }
        if out.len() > max {
            return Err(format!("expanded value exceeds the maximum of {max} bytes"));
        }
        last_end = b;
        search = if search + 1 > b { search + 1 } else { b };
    }
    out.extend(&s[last_end.min(s.len())..]);
    Ok(out)
}

fn expand_template(out: &mut String, template: &str, matched: &str) {
    let mut t = template;
    while let Some(i) = t.find('$') {
        out.push_str(&t[..i]);
        t = &t[i + 1..];
        if let Some(rest) = t.strip_prefix('$') {
            out.push('$');
            t = rest;
            continue;
        }
        match extract_name(t) {
            Some((name, rest)) => {
                if name == "0" {
                    out.push_str(matched);
                }
                t = rest;
            }
            None => out.push('$'),
        }
    }
    out.push_str(t);
}

/// Go's `regexp.extract`: `name` or `{name}` at the start of `s`.
fn extract_name(s: &str) -> Option<(&str, &str)> {
    let (brace, body) = match s.strip_prefix('{') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let len: usize = body
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .map(char::len_utf8)
        .sum();
    if len == 0 {
        return None;
    }
    let name = &body[..len];
    let mut rest = &body[len..];
    if brace {
        rest = rest.strip_prefix('}')?;
    }
    Some((name, rest))
}
