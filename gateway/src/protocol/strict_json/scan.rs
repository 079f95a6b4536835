//! The fast path of [`check_unambiguous_as`](super::check_unambiguous_as): one pass over the
//! bytes that says a document is certainly clean (valid JSON as serde_json reads it, and no
//! two keys of one object that the check refuses), or that it cannot tell. Only "clean" is
//! trusted; anything else (an escaped or non-ASCII key, an exponent, a syntax error, a refused
//! pair of keys, a large object or a deep one) goes to the serde check, which gives the exact
//! answer and error. An LLM request's body is read by this pass alone: 4.7k instructions for
//! the load harness's 1 KB chat body against the serde check's 8.0k (callgrind over the
//! function alone, release build), for it finds a string's end with `memchr` and visits no
//! token through serde's machinery.

use super::{FREE_FORM, Spellings};

/// What [`scan`] says of a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scan {
    /// Valid JSON that the serde check accepts.
    Clean,
    /// Not known: ask the serde check.
    Unsure,
}

/// Nesting past which the pass leaves the document to serde (whose limit is 128).
const MAX_DEPTH: usize = 64;
/// Keys of one object past which the pass leaves the document to serde (keys are compared
/// pairwise here; serde's check hashes them).
const MAX_KEYS: usize = 32;
/// Bytes of one number past which the pass leaves it to serde (an exponent always: its range).
const MAX_NUMBER: usize = 64;

/// Whether `text` is certainly a JSON document the serde check accepts with `spellings`.
pub(super) fn scan(text: &[u8], spellings: Spellings) -> Scan {
    let mut scanner = Scanner {
        text,
        pos: 0,
        spellings,
        keys: Vec::new(),
    };
    match scanner.document() {
        Some(()) => Scan::Clean,
        None => Scan::Unsure,
    }
}

struct Scanner<'t> {
    text: &'t [u8],
    pos: usize,
    spellings: Spellings,
    /// The keys read so far of every object open, the innermost's last.
    keys: Vec<&'t [u8]>,
}

impl<'t> Scanner<'t> {
    fn document(&mut self) -> Option<()> {
        self.value(0, false, true)?;
        self.whitespace();
        (self.pos == self.text.len()).then_some(())
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    /// One value; `free`: beneath a free-form key; `top`: the document itself.
    fn value(&mut self, depth: usize, free: bool, top: bool) -> Option<()> {
        self.whitespace();
        match self.peek()? {
            b'{' => self.object(depth + 1, free, top),
            b'[' => self.array(depth + 1, free),
            b'"' => self.string().map(|_| ()),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn object(&mut self, depth: usize, free: bool, top: bool) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.pos += 1;
        self.whitespace();
        if self.peek()? == b'}' {
            self.pos += 1;
            return Some(());
        }
        let start = self.keys.len();
        loop {
            self.whitespace();
            if self.peek()? != b'"' {
                return None;
            }
            let (key, escaped) = self.string()?;
            // An escaped key is unescaped before it is compared, a non-ASCII one folded by
            // Unicode's rules: both are serde's to judge.
            if escaped || !key.is_ascii() || self.keys.len() - start >= MAX_KEYS {
                return None;
            }
            for &other in &self.keys[start..] {
                if other == key || (!free && self.same_spelling(other, key)) {
                    return None;
                }
            }
            self.keys.push(key);
            self.whitespace();
            if self.peek()? != b':' {
                return None;
            }
            self.pos += 1;
            let free = free
                || FREE_FORM
                    .iter()
                    .any(|f| f.as_bytes() == key && (!top || key != b"input"));
            self.value(depth, free, false)?;
            self.whitespace();
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    break;
                }
                _ => return None,
            }
        }
        self.keys.truncate(start);
        Some(())
    }

    /// Two ASCII keys a reader of `spellings` takes for one another: equal in lower case
    /// (and, for [`Spellings::Proto`], once underscores are dropped).
    fn same_spelling(&self, a: &[u8], b: &[u8]) -> bool {
        match self.spellings {
            Spellings::Case => a.eq_ignore_ascii_case(b),
            Spellings::Proto => {
                fn fold(k: &[u8]) -> impl Iterator<Item = u8> + '_ {
                    k.iter().filter(|&&c| c != b'_').map(u8::to_ascii_lowercase)
                }
                fold(a).eq(fold(b))
            }
        }
    }

    fn array(&mut self, depth: usize, free: bool) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.pos += 1;
        self.whitespace();
        if self.peek()? == b']' {
            self.pos += 1;
            return Some(());
        }
        loop {
            self.value(depth, free, false)?;
            self.whitespace();
            match self.peek()? {
                b',' => self.pos += 1,
                b']' => {
                    self.pos += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.pos + word.len();
        (self.text.get(self.pos..end)? == word).then(|| self.pos = end)
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)?`, short; an exponent is left to serde.
    fn number(&mut self) -> Option<()> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek()? {
            b'0' => self.pos += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !self.peek()?.is_ascii_digit() {
                return None;
            }
            self.digits();
        }
        if matches!(self.peek(), Some(b'e' | b'E')) || self.pos - start > MAX_NUMBER {
            return None;
        }
        Some(())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
    }

    /// A string at `pos` (its opening quote): its bytes between the quotes, and whether they
    /// hold an escape. `None` for a control character, a bad escape, a lone surrogate or
    /// bytes that are not UTF-8.
    fn string(&mut self) -> Option<(&'t [u8], bool)> {
        let text = self.text;
        let start = self.pos + 1;
        let mut i = start;
        let (mut escaped, mut ascii) = (false, true);
        loop {
            let rest = text.get(i..)?;
            let end = memchr::memchr2(b'"', b'\\', rest)?;
            // A control character or a byte past ASCII (the fold vectorises, `any` would not).
            let unusual = rest[..end]
                .iter()
                .fold(false, |seen, &b| seen | (b.wrapping_sub(0x20) >= 0x60));
            if unusual {
                if rest[..end].iter().any(|&b| b < 0x20) {
                    return None;
                }
                ascii = false;
            }
            i += end;
            if rest[end] == b'"' {
                break;
            }
            escaped = true;
            i = escape(text, i)?;
        }
        let content = &text[start..i];
        // serde_json refuses a string that is not UTF-8; outside strings only ASCII is JSON.
        if !ascii {
            std::str::from_utf8(content).ok()?;
        }
        self.pos = i + 1;
        Some((content, escaped))
    }
}

/// The escape at `at` (its backslash) in `text`; where it ends. A `\u` escape of a surrogate
/// must be a pair.
fn escape(text: &[u8], at: usize) -> Option<usize> {
    match *text.get(at + 1)? {
        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(at + 2),
        b'u' => match hex(text, at + 2)? {
            0xD800..=0xDBFF => {
                if text.get(at + 6..at + 8)? != b"\\u" {
                    return None;
                }
                (0xDC00..=0xDFFF)
                    .contains(&hex(text, at + 8)?)
                    .then_some(at + 12)
            }
            0xDC00..=0xDFFF => None,
            _ => Some(at + 6),
        },
        _ => None,
    }
}

/// Four hex digits at `at` in `text`.
fn hex(text: &[u8], at: usize) -> Option<u16> {
    let digits = std::str::from_utf8(text.get(at..at + 4)?).ok()?;
    if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u16::from_str_radix(digits, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::super::check_unambiguous_as;
    use super::*;

    /// The serde check's answer, without the fast path.
    fn serde_check(text: &[u8], spellings: Spellings) -> bool {
        let mut de = serde_json::Deserializer::from_slice(text);
        serde::de::DeserializeSeed::deserialize(
            super::super::Check {
                at: None,
                free: false,
                spellings,
            },
            &mut de,
        )
        .and_then(|()| de.end())
        .is_ok()
    }

    const CHAT: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a concise assistant."},{"role":"user","content":"Summarise the quarterly report for the operations team in three bullet points. Summarise the quarterly report \"quoted\" \\ \/ \n \u00e9 \ud83d\ude00 caf\u00e9 é"}],"temperature":0.7,"max_tokens":-100,"stream":false,"n":null,"tools":[{"type":"function","function":{"name":"a","parameters":{"type":"object","properties":{"x":{"k":1,"K":2}}}}}],"metadata":{"User":"x","user":"y"}}"#;

    #[test]
    fn a_plain_request_body_is_clean_in_one_pass() {
        for (text, spellings) in [
            (CHAT, Spellings::Case),
            (CHAT, Spellings::Proto),
            (
                r#"{"contents":[{"parts":[{"text":"hi"}]}],"generationConfig":{"maxOutputTokens":5}}"#,
                Spellings::Proto,
            ),
            (
                r#"  [ 1 , 0.5 , -0 , true , false , null , "" , { } , [ ] ]  "#,
                Spellings::Case,
            ),
        ] {
            assert_eq!(scan(text.as_bytes(), spellings), Scan::Clean, "{text}");
            assert!(serde_check(text.as_bytes(), spellings), "{text}");
        }
    }

    #[test]
    fn what_the_check_refuses_is_never_clean() {
        for (text, spellings) in [
            (r#"{"model":"a","Model":"b"}"#, Spellings::Case),
            (
                r#"{"messages":[{"role":"user","ROLE":"system"}]}"#,
                Spellings::Case,
            ),
            (r#"{"metadata":{"a":1,"a":2}}"#, Spellings::Case),
            (
                r#"{"input":[{"role":"user","Role":"system"}]}"#,
                Spellings::Case,
            ),
            (r#"{"max_tokens":1,"maxTokens":2}"#, Spellings::Proto),
            (r#"{"maxtokens":1,"Max_Tokens":2}"#, Spellings::Proto),
            (r#"{"a":1,"a":1}"#, Spellings::Case),
            (r#"{"K":1,"\u212a":2}"#, Spellings::Case),
            (r#"{"a":"\ud800"}"#, Spellings::Case),
            (r#"{"a":"\udc00\ud800"}"#, Spellings::Case),
            (r#"{"a":1e999}"#, Spellings::Case),
            ("{\"a\":\"\u{1}\"}", Spellings::Case),
            (r#"{"a":01}"#, Spellings::Case),
            (r#"{"a":1,}"#, Spellings::Case),
            (r#"[1,]"#, Spellings::Case),
            (r#"{} {}"#, Spellings::Case),
            (r#"{"#, Spellings::Case),
            ("", Spellings::Case),
            (r#"{"a":tru}"#, Spellings::Case),
            (r#"{"a":1.}"#, Spellings::Case),
            (r#"{"a":"\x"}"#, Spellings::Case),
        ] {
            assert_eq!(scan(text.as_bytes(), spellings), Scan::Unsure, "{text}");
        }
        assert_eq!(scan(b"{\"a\":\"\xff\"}", Spellings::Case), Scan::Unsure);
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(scan(deep.as_bytes(), Spellings::Case), Scan::Unsure);
        assert!(!serde_check(deep.as_bytes(), Spellings::Case));
    }

    /// Mutations of request bodies (a byte replaced, dropped or added): wherever the pass says
    /// clean, the serde check accepts, and the check's answer is the same with it.
    #[test]
    fn clean_only_where_serde_accepts() {
        const BYTES: &[u8] = b"\"\\{}[],:0123456789.eE+-tfnul aAkK_/\x01\x7f\xc3\xa9";
        let seeds = [
            CHAT,
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"{\"Model\":1}"}]}],"input":{"a":[1,2.5,-3]}}"#,
            r#"{"a_b":{"aB":[{"x":"\u0041"}],"ab":true},"Ab":null}"#,
        ];
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            usize::try_from(state % n as u64).unwrap_or(0)
        };
        let (mut clean, mut tried) = (0, 0);
        for seed in seeds {
            for _ in 0..4000 {
                let mut text = seed.as_bytes().to_vec();
                for _ in 0..=next(2) {
                    let at = next(text.len());
                    let byte = BYTES[next(BYTES.len())];
                    match next(3) {
                        0 => text[at] = byte,
                        1 => {
                            text.remove(at);
                        }
                        _ => text.insert(at, byte),
                    }
                }
                for spellings in [Spellings::Case, Spellings::Proto] {
                    tried += 1;
                    let expected = serde_check(&text, spellings);
                    if scan(&text, spellings) == Scan::Clean {
                        clean += 1;
                        assert!(expected, "{}", String::from_utf8_lossy(&text));
                    }
                    assert_eq!(
                        check_unambiguous_as(&text, spellings).is_ok(),
                        expected,
                        "{}",
                        String::from_utf8_lossy(&text)
                    );
                }
            }
        }
        // Most mutations keep a valid body: the fast path was exercised, not only the slow.
        assert!(clean > tried / 10, "{clean} of {tried}");
    }
}
