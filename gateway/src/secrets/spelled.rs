//! A secret found however a JSON string, a URL or HTML spells each of its characters:
//! literally, as a `\uXXXX` escape (hex in either case, a surrogate pair beyond the BMP), as a
//! short escape (`\/`, `\"`, `\\`, `\n`…), as percent escapes of its UTF-8 bytes (`%2B`,
//! `%2b`) or those escapes percent-encoded again (`%252B`, as a URL encoded twice has it), or as an HTML character reference (`&#43;`, `&#x2b;`, `&amp;`), in any mix, since a
//! decoder reads every one of them as the secret (a .NET serialiser writes `+` as `\u002B`; a
//! debugging upstream may escape every character; an HTML error page writes `&` as `&amp;`).
//! The escape-free forms of a secret are searched for by one automaton (`echo.rs`); this finds
//! every spelling with an escape in it.

/// Whether `text` begins with a spelling of a secret.
#[derive(Debug, PartialEq, Eq)]
pub enum Spelled {
    /// It does, in this many bytes.
    In(usize),
    /// `text` ends inside what could still become one.
    Partial,
    /// It does not.
    No,
}

/// Whether `text` begins with a spelling of `secret` (nothing is allocated unless a character
/// of it that starts escapes, `\\`, `%` or `&`, is both itself and the start of its escape);
/// with `any_case`, its ASCII letters in either case (a hex secret's case carries nothing).
pub fn at(secret: &str, text: &[u8], any_case: bool) -> Spelled {
    walk(secret, text, any_case, 0, 0, &mut Vec::new())
}

/// [`at`] from byte `s` of `secret` and byte `t` of `text`; `tried`: the places, past a
/// character spelled two ways, already followed to no spelling (each once, however many ways
/// lead there), and whether the text ended on the way.
fn walk(
    secret: &str,
    text: &[u8],
    any_case: bool,
    mut s: usize,
    mut t: usize,
    tried: &mut Vec<(usize, usize, bool)>,
) -> Spelled {
    let mut partial = false;
    while let Some(c) = secret[s..].chars().next() {
        let found = one(c, &text[t..], any_case);
        partial |= found.partial;
        s += c.len_utf8();
        match (found.escaped, found.literal) {
            (None, None) if partial => return Spelled::Partial,
            (None, None) => return Spelled::No,
            (Some(n), None) | (None, Some(n)) => t += n,
            // `&` as itself, or `&amp;`: the escape is followed first, then the character.
            (Some(escaped), Some(literal)) => {
                let from = t + escaped;
                match tried.iter().find(|&&(ts, tt, _)| (ts, tt) == (s, from)) {
                    Some(&(_, _, ended)) => partial |= ended,
                    None => match walk(secret, text, any_case, s, from, tried) {
                        Spelled::In(n) => return Spelled::In(n),
                        other => {
                            let ended = other == Spelled::Partial;
                            tried.push((s, from, ended));
                            partial |= ended;
                        }
                    },
                }
                t += literal;
            }
        }
    }
    Spelled::In(t)
}

/// The earliest spelling of `secret` in `text` that starts at or after `from` and before
/// `until` (it may end after): where it starts and ends; with `any_case`, as [`at`] says.
pub fn find(
    secret: &str,
    text: &[u8],
    from: usize,
    until: usize,
    any_case: bool,
) -> Option<(usize, usize)> {
    for p in Starts::new(secret, text, from, any_case)?.take_while(|&p| p < until) {
        if let Spelled::In(n) = at(secret, &text[p..], any_case) {
            return Some((p, p + n));
        }
    }
    None
}

/// How many bytes at the end of `text` could begin a spelling of `secret` (`any_case`: as
/// [`at`] says).
pub fn partial(secret: &str, text: &[u8], any_case: bool) -> usize {
    // No character is spelled in more than 20 bytes (4 percent escapes encoded twice).
    let from = text
        .len()
        .saturating_sub(MAX_SPELLING * secret.chars().count());
    let Some(starts) = Starts::new(secret, text, from, any_case) else {
        return 0;
    };
    for p in starts {
        if at(secret, &text[p..], any_case) == Spelled::Partial {
            return text.len() - p;
        }
    }
    0
}

/// Whether `text` holds a byte that starts an escape: without one, a spelling of a secret is
/// the secret as written.
pub fn has_escapes(text: &[u8]) -> bool {
    memchr::memchr3(b'\\', b'%', b'&', text).is_some()
}

/// The most bytes one character is spelled in: 4 percent escapes encoded twice (`%25F0`…).
const MAX_SPELLING: usize = 20;

/// The places in a text where a spelling of a secret may start, in order: its first byte (in
/// either case, for a secret looked for in any case; and `+`, when it starts with a space)
/// and every byte that starts an escape.
struct Starts<'t> {
    text: &'t [u8],
    first: u8,
    /// The first byte's other case, or `+` for a space; `None` when there is none.
    second: Option<u8>,
    /// The next place of each kind at or after `from` (`None`: there is none left).
    next_first: Option<usize>,
    next_escape: Option<usize>,
}

impl<'t> Starts<'t> {
    fn new(secret: &str, text: &'t [u8], from: usize, any_case: bool) -> Option<Starts<'t>> {
        let first = *secret.as_bytes().first()?;
        let second = match first {
            b' ' => Some(b'+'),
            c if any_case && c.is_ascii_alphabetic() => Some(c ^ 0x20),
            _ => None,
        };
        let mut starts = Starts {
            text,
            first,
            second,
            next_first: None,
            next_escape: None,
        };
        starts.next_first = starts.find_first(from);
        starts.next_escape = starts.find_escape(from);
        Some(starts)
    }

    fn find_first(&self, from: usize) -> Option<usize> {
        let rest = self.text.get(from..)?;
        let at = match self.second {
            Some(second) => memchr::memchr2(self.first, second, rest),
            None => memchr::memchr(self.first, rest),
        };
        at.map(|p| from + p)
    }

    fn find_escape(&self, from: usize) -> Option<usize> {
        let rest = self.text.get(from..)?;
        memchr::memchr3(b'\\', b'%', b'&', rest).map(|p| from + p)
    }
}

impl Iterator for Starts<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let p = match (self.next_first, self.next_escape) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        if self.next_first == Some(p) {
            self.next_first = self.find_first(p + 1);
        }
        if self.next_escape == Some(p) {
            self.next_escape = self.find_escape(p + 1);
        }
        Some(p)
    }
}

/// What of a character's spellings `rest` begins with.
struct Found {
    /// The character as it is: its length.
    literal: Option<usize>,
    /// An escape of it (only `\\`, `%` and `&` are both): its length.
    escaped: Option<usize>,
    /// `rest` ends inside a spelling.
    partial: bool,
}

/// Whether `rest` begins with a spelling of `c`: as written, as `\uXXXX` escapes of its
/// UTF-16 units, as a short escape, as percent escapes of its UTF-8 bytes, (a space) as `+`,
/// or as an HTML character reference: decimal (`&#43;`), hex (`&#x2b;`, either case) or, for
/// the characters HTML escapes, named (`&amp;`, `&lt;`, `&gt;`, `&quot;`, `&apos;`). A
/// numeric reference with leading zeros (`&#043;`) is not looked for. With `any_case`, an
/// ASCII letter is also spelled as its other case and that case's escapes.
fn one(c: char, rest: &[u8], any_case: bool) -> Found {
    let mut utf8 = [0u8; 4];
    let literal = c.encode_utf8(&mut utf8).as_bytes();
    let mut short = false;
    let mut try_form = |form: &[u8], any_case: bool| -> Option<usize> {
        let n = form.len().min(rest.len());
        let same = if any_case {
            rest[..n].eq_ignore_ascii_case(&form[..n])
        } else {
            rest[..n] == form[..n]
        };
        if same && n == form.len() {
            return Some(n);
        }
        short |= same;
        None
    };
    let literal_found = try_form(literal, any_case);
    if literal_found.is_some() && !matches!(c, '\\' | '%' | '&') {
        // No escape starts with any other character: this is the only spelling here.
        return Found {
            literal: literal_found,
            escaped: None,
            partial: false,
        };
    }
    let mut escaped = one_escaped(c, &mut try_form);
    if escaped.is_none() && any_case && c.is_ascii_alphabetic() {
        let other = char::from(c as u8 ^ 0x20);
        escaped = one_escaped(other, &mut try_form);
    }
    Found {
        literal: literal_found,
        escaped,
        partial: short,
    }
}

/// Whether `rest` begins with a spelling of `c` that escapes it: its length. `try_form` tries
/// one.
fn one_escaped(c: char, try_form: &mut impl FnMut(&[u8], bool) -> Option<usize>) -> Option<usize> {
    let mut utf8 = [0u8; 4];
    let literal = c.encode_utf8(&mut utf8).as_bytes();
    let mut units = [0u16; 2];
    let mut escaped = [0u8; 12];
    let mut len = 0;
    for unit in c.encode_utf16(&mut units).iter() {
        escaped[len] = b'\\';
        escaped[len + 1] = b'u';
        for (k, shift) in [12, 8, 4, 0].into_iter().enumerate() {
            escaped[len + 2 + k] = HEX[usize::from((unit >> shift) & 0xf)];
        }
        len += 6;
    }
    if let Some(n) = try_form(&escaped[..len], true) {
        return Some(n);
    }
    for form in fixed_escapes(c) {
        if let Some(n) = try_form(form, false) {
            return Some(n);
        }
    }
    // Encoded twice first (`%252B`): once, `%25` is the `%` of a character spelled `%25`.
    let mut twice = [0u8; MAX_SPELLING];
    for (k, byte) in literal.iter().enumerate() {
        twice[5 * k..5 * k + 3].copy_from_slice(b"%25");
        twice[5 * k + 3] = HEX[usize::from(byte >> 4)];
        twice[5 * k + 4] = HEX[usize::from(byte & 0xf)];
    }
    if let Some(n) = try_form(&twice[..5 * literal.len()], true) {
        return Some(n);
    }
    let mut percent = [0u8; 12];
    for (k, byte) in literal.iter().enumerate() {
        percent[3 * k] = b'%';
        percent[3 * k + 1] = HEX[usize::from(byte >> 4)];
        percent[3 * k + 2] = HEX[usize::from(byte & 0xf)];
    }
    if let Some(n) = try_form(&percent[..3 * literal.len()], true) {
        return Some(n);
    }
    let mut reference = [0u8; 12];
    let len = decimal_reference(c, &mut reference);
    if let Some(n) = try_form(&reference[..len], false) {
        return Some(n);
    }
    let len = hex_reference(c, &mut reference);
    if let Some(n) = try_form(&reference[..len], true) {
        return Some(n);
    }
    None
}

/// The escapes of `c` written the same way whatever the character's code: JSON's short ones,
/// a form's `+` for a space, HTML's named references.
fn fixed_escapes(c: char) -> &'static [&'static [u8]] {
    match c {
        '"' => &[b"\\\"", b"&quot;"],
        '\\' => &[b"\\\\"],
        '/' => &[b"\\/"],
        '\n' => &[b"\\n"],
        '\r' => &[b"\\r"],
        '\t' => &[b"\\t"],
        '\u{8}' => &[b"\\b"],
        '\u{c}' => &[b"\\f"],
        ' ' => &[b"+"],
        '&' => &[b"&amp;"],
        '<' => &[b"&lt;"],
        '>' => &[b"&gt;"],
        '\'' => &[b"&apos;"],
        _ => &[],
    }
}

/// `c` as a decimal HTML character reference (`&#43;`) in `out`; how many bytes it takes.
fn decimal_reference(c: char, out: &mut [u8; 12]) -> usize {
    let mut digits = [0u8; 7];
    let mut n = u32::from(c);
    let mut count = 0;
    loop {
        digits[count] = b'0' + (n % 10) as u8;
        count += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    reference(b"&#", digits[..count].iter().rev().copied(), out)
}

/// `c` as a hex HTML character reference (`&#x2b;`) in `out`; how many bytes it takes.
fn hex_reference(c: char, out: &mut [u8; 12]) -> usize {
    let code = u32::from(c);
    let count = (8 - code.leading_zeros() as usize / 4).max(1);
    let digits = (0..count)
        .rev()
        .map(|k| HEX[((code >> (4 * k)) & 0xf) as usize]);
    reference(b"&#x", digits, out)
}

/// `start`, `digits` and `;` written into `out`; how many bytes they take (at most 11: `&#x`,
/// 6 hex digits or 7 decimal ones, `;`).
fn reference(start: &[u8], digits: impl Iterator<Item = u8>, out: &mut [u8; 12]) -> usize {
    out[..start.len()].copy_from_slice(start);
    let mut len = start.len();
    for d in digits {
        out[len] = d;
        len += 1;
    }
    out[len] = b';';
    len + 1
}

/// Hex digits, as escapes write them (compared without regard to case).
const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_a_decoder_reads_as_the_secret_is_found() {
        let secret = "sk-proj/Abc+def ü";
        for text in [
            "sk-proj/Abc+def ü",
            r"sk-proj\/Abc\u002Bdef \u00fc",
            r"sk-proj/Abc\u002bdef \u00FC",
            r"\u0073\u006b\u002d\u0070\u0072\u006f\u006a\u002f\u0041\u0062\u0063\u002b\u0064\u0065\u0066\u0020\u00fc",
            "sk-proj%2FAbc%2bdef+%C3%BC",
            r"sk-pro%6a\/Abc\u002Bdef%20ü",
        ] {
            let bytes = format!("error: {text} end").into_bytes();
            let (at, end) =
                find(secret, &bytes, 0, bytes.len(), false).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(&bytes[at..end], text.as_bytes());
        }
        for text in [
            "sk-proj/Abc-def ü",
            r"sk-proj\/Abc\u002Cdef ü",
            "sk-proj%2FAbc",
        ] {
            assert_eq!(
                find(secret, text.as_bytes(), 0, text.len(), false),
                None,
                "{text}"
            );
        }
    }

    #[test]
    fn a_text_ending_inside_a_spelling_is_partial() {
        for (text, held) in [
            ("x ab\\u00", 6),
            ("x ab\\", 3),
            ("x a%6", 3),
            ("x ab", 2),
            ("x ab\\u002Bc", 0),
            ("x ab\\u003", 0),
        ] {
            assert_eq!(partial("ab+c", text.as_bytes(), false), held, "{text}");
        }
        assert_eq!(at("ab+c", b"ab\\u002Bc", false), Spelled::In(9));
        assert_eq!(at("ab+c", b"ab\\u002", false), Spelled::Partial);
        assert_eq!(at("ab+c", b"ab\\u0020", false), Spelled::No);
    }

    #[test]
    fn html_character_references_spell_a_character() {
        let secret = "a+<b>&\"'😀";
        for text in [
            "a&#43;&lt;b&gt;&amp;&quot;&apos;&#128512;",
            "a&#x2b;&#x3C;b&#X3e;&#38;&#34;&#x27;&#x1F600;",
            r#"a%2B&lt;b\u003e&amp;\"'\ud83d\ude00"#,
        ] {
            let bytes = format!("<p>{text}</p>").into_bytes();
            let (at, end) =
                find(secret, &bytes, 0, bytes.len(), false).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(&bytes[at..end], text.as_bytes());
        }
        for text in ["a&#44;&lt;b", "a&#043;&lt;b", "a&#x2b&lt;b", "a&#x2b;&LT;b"] {
            assert_eq!(
                find("a+<b", text.as_bytes(), 0, text.len(), false),
                None,
                "{text}"
            );
        }
        assert_eq!(at("a+b", b"a&#4", false), Spelled::Partial);
        assert_eq!(at("a+b", b"a&#x2", false), Spelled::Partial);
        assert_eq!(partial("ab+c", b"x ab&#x2", false), 6);
    }

    #[test]
    fn a_url_encoded_twice_spells_a_character_in_either_case() {
        let secret = "sk-proj/Abc+def";
        for text in [
            "sk-proj%252FAbc%252Bdef",
            "sk-proj%252fAbc%252bdef",
            "sk-proj%2FAbc%252bdef",
        ] {
            let bytes = format!("?next={text}&x").into_bytes();
            let (at, end) =
                find(secret, &bytes, 0, bytes.len(), false).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(&bytes[at..end], text.as_bytes());
        }
        assert_eq!(find(secret, b"sk-proj%252FAbc%252Cdef", 0, 23, false), None);
        assert_eq!(at("a+b", b"a%252", false), Spelled::Partial);
        assert_eq!(partial("ab+c", b"x ab%25", false), 5);
        assert!(find("k\u{1F600}y", b"k%25F0%259F%2598%2580y", 0, 22, false).is_some());
    }

    #[test]
    fn a_secret_looked_for_in_any_case_is_found_upper_cased_and_escaped() {
        let secret = "deadbeef:0badc0de";
        for text in [
            "DEADBEEF:0BADC0DE",
            "DeadBeef%3a0BadC0de",
            r"\u0044EADBEEF%253A0badc0de",
        ] {
            let bytes = format!("echo {text} end").into_bytes();
            let (at, end) =
                find(secret, &bytes, 0, bytes.len(), true).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(&bytes[at..end], text.as_bytes());
            assert_eq!(find(secret, &bytes, 0, bytes.len(), false), None, "{text}");
        }
        assert_eq!(partial(secret, b"x DEADBE", true), 6);
    }

    #[test]
    fn a_secret_that_starts_with_a_space_is_found_after_a_plus() {
        assert_eq!(find(" key=1", b"q=+key%3D1", 0, 10, false), Some((2, 10)));
    }

    #[test]
    fn a_character_beyond_the_bmp_is_a_surrogate_pair() {
        assert!(find("k😀y", br"k\ud83d\ude00y", 0, 14, false).is_some());
        assert!(find("k😀y", b"k%F0%9F%98%80y", 0, 14, false).is_some());
    }
}
