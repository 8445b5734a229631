//! The JSON (exec) form: `["a", "b"]`, read the way BuildKit reads it with
//! Go's `encoding/json` into a `[]interface{}`.
//!
//! Invalid JSON (including a number out of `float64` range, which Go also
//! refuses) means "not JSON": the instruction falls back to shell form.
//! Valid JSON with a non-string element is an error. The validator is
//! iterative, so nesting depth costs no stack.

/// What the text after an instruction keyword is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JsonArray {
    /// A JSON array of strings.
    Strings(Vec<String>),
    /// A valid JSON array holding something other than a string.
    NotStrings,
    /// Not valid JSON (or not an array).
    Invalid,
}

/// Go's `encoding/json` nesting limit.
const MAX_DEPTH: usize = 10_000;

pub(crate) fn parse_string_array(text: &str) -> JsonArray {
    let t = text.trim_start_matches(char::is_whitespace);
    if !t.starts_with('[') {
        return JsonArray::Invalid;
    }
    let mut p = Reader {
        b: t.as_bytes(),
        s: t,
        i: 0,
    };
    p.ws();
    if !p.eat(b'[') {
        return JsonArray::Invalid;
    }
    let mut items = Vec::new();
    let mut all_strings = true;
    p.ws();
    if !p.eat(b']') {
        loop {
            p.ws();
            if p.peek() == Some(b'"') {
                match p.string() {
                    Some(s) => items.push(s),
                    None => return JsonArray::Invalid,
                }
            } else {
                all_strings = false;
                if !p.skip_value() {
                    return JsonArray::Invalid;
                }
            }
            p.ws();
            if p.eat(b',') {
                continue;
            }
            if p.eat(b']') {
                break;
            }
            return JsonArray::Invalid;
        }
    }
    p.ws();
    if p.i != p.b.len() {
        return JsonArray::Invalid;
    }
    if all_strings {
        JsonArray::Strings(items)
    } else {
        JsonArray::NotStrings
    }
}

struct Reader<'a> {
    b: &'a [u8],
    s: &'a str,
    i: usize,
}

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn hex4(&self, at: usize) -> Option<u32> {
        let h = self.b.get(at..at + 4)?;
        let mut v = 0u32;
        for &c in h {
            v = v * 16 + (c as char).to_digit(16)?;
        }
        Some(v)
    }

    /// A string at the cursor (which is on `"`), decoded as Go does:
    /// unpaired surrogates become U+FFFD.
    fn string(&mut self) -> Option<String> {
        self.i += 1;
        let mut out = String::new();
        loop {
            let c = self.peek()?;
            match c {
                b'"' => {
                    self.i += 1;
                    return Some(out);
                }
                b'\\' => {
                    let e = *self.b.get(self.i + 1)?;
                    self.i += 2;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let r = self.hex4(self.i)?;
                            self.i += 4;
                            if (0xD800..0xE000).contains(&r) {
                                // A surrogate: valid only as a high + low pair.
                                let low = if self.b.get(self.i) == Some(&b'\\')
                                    && self.b.get(self.i + 1) == Some(&b'u')
                                {
                                    self.hex4(self.i + 2)
                                } else {
                                    None
                                };
                                match low {
                                    Some(lo)
                                        if (0xD800..0xDC00).contains(&r)
                                            && (0xDC00..0xE000).contains(&lo) =>
                                    {
                                        let cp = 0x10000 + ((r - 0xD800) << 10) + (lo - 0xDC00);
                                        out.push(char::from_u32(cp).unwrap_or('\u{fffd}'));
                                        self.i += 6;
                                    }
                                    _ => out.push('\u{fffd}'),
                                }
                            } else {
                                out.push(char::from_u32(r).unwrap_or('\u{fffd}'));
                            }
                        }
                        _ => return None,
                    }
                }
                0..=0x1f => return None,
                _ => {
                    // Copy one UTF-8 character.
                    let ch = self.s.get(self.i..)?.chars().next()?;
                    out.push(ch);
                    self.i += ch.len_utf8();
                }
            }
        }
    }

    fn number(&mut self) -> bool {
        let start = self.i;
        self.eat(b'-');
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                while matches!(self.peek(), Some(b'0'..=b'9')) {
                    self.i += 1;
                }
            }
            _ => return false,
        }
        if self.eat(b'.') {
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return false;
            }
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.i += 1;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return false;
            }
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.i += 1;
            }
        }
        // Go refuses a number that does not fit a float64.
        match self
            .s
            .get(start..self.i)
            .and_then(|n| n.parse::<f64>().ok())
        {
            Some(f) => f.is_finite(),
            None => false,
        }
    }

    fn literal(&mut self, lit: &[u8]) -> bool {
        if self.b.get(self.i..self.i + lit.len()) == Some(lit) {
            self.i += lit.len();
            true
        } else {
            false
        }
    }

    /// Validate one JSON value of any kind, iteratively.
    fn skip_value(&mut self) -> bool {
        let mut stack: Vec<u8> = Vec::new();
        loop {
            // A value is expected here.
            self.ws();
            let ok = match self.peek() {
                Some(b'"') => self.string().is_some(),
                Some(b'[') => {
                    self.i += 1;
                    self.ws();
                    if self.eat(b']') {
                        true
                    } else {
                        if stack.len() >= MAX_DEPTH {
                            return false;
                        }
                        stack.push(b'[');
                        continue;
                    }
                }
                Some(b'{') => {
                    self.i += 1;
                    self.ws();
                    if self.eat(b'}') {
                        true
                    } else {
                        if stack.len() >= MAX_DEPTH {
                            return false;
                        }
                        stack.push(b'{');
                        if !self.object_key() {
                            return false;
                        }
                        continue;
                    }
                }
                Some(b't') => self.literal(b"true"),
                Some(b'f') => self.literal(b"false"),
                Some(b'n') => self.literal(b"null"),
                Some(b'-' | b'0'..=b'9') => self.number(),
                _ => false,
            };
            if !ok {
                return false;
            }
            // After a value: close containers or move to the next element.
            loop {
                let Some(&top) = stack.last() else {
                    return true;
                };
                self.ws();
                if self.eat(b',') {
                    if top == b'{' && !self.object_key() {
                        return false;
                    }
                    break;
                }
                if (top == b'[' && self.eat(b']')) || (top == b'{' && self.eat(b'}')) {
                    stack.pop();
                    continue;
                }
                return false;
            }
        }
    }

    fn object_key(&mut self) -> bool {
        self.ws();
        if self.peek() != Some(b'"') || self.string().is_none() {
            return false;
        }
        self.ws();
        self.eat(b':')
    }
}
