//! A secret found however a JSON string or a URL spells each of its characters: literally, as
//! a `\uXXXX` escape (hex in either case, a surrogate pair beyond the BMP), as a short escape
//! (`\/`, `\"`, `\\`, `\n`…) or as percent escapes of its UTF-8 bytes (`%2B`, `%2b`), in any
//! mix, since a decoder reads every one of them as the secret (a .NET serialiser writes `+` as
//! `\u002B`; a debugging upstream may escape every character). The echoed forms redaction
//! lists are the common spellings; this finds the rest.

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

/// Whether `text` begins with a spelling of `secret` (nothing is allocated).
pub fn at(secret: &str, text: &[u8]) -> Spelled {
    let mut i = 0;
    for c in secret.chars() {
        match one(c, &text[i..]) {
            Spelled::In(n) => i += n,
            other => return other,
        }
    }
    Spelled::In(i)
}

/// The earliest spelling of `secret` in `text` at or after `from`: where it starts and ends.
pub fn find(secret: &str, text: &[u8], from: usize) -> Option<(usize, usize)> {
    let first = *secret.as_bytes().first()?;
    let mut from = from;
    while from < text.len() {
        let p = from + memchr::memchr3(first, b'\\', b'%', &text[from..])?;
        if let Spelled::In(n) = at(secret, &text[p..]) {
            return Some((p, p + n));
        }
        from = p + 1;
    }
    None
}

/// How many bytes at the end of `text` could begin a spelling of `secret`.
pub fn partial(secret: &str, text: &[u8]) -> usize {
    let Some(&first) = secret.as_bytes().first() else {
        return 0;
    };
    // No character is spelled in more than 12 bytes (a surrogate pair, or 4 percent escapes).
    let mut from = text.len().saturating_sub(12 * secret.chars().count());
    while let Some(p) = memchr::memchr3(first, b'\\', b'%', &text[from..]).map(|p| from + p) {
        if at(secret, &text[p..]) == Spelled::Partial {
            return text.len() - p;
        }
        from = p + 1;
    }
    0
}

/// Whether `text` holds a byte that starts an escape: without one, a spelling of a secret is
/// the secret as written.
pub fn has_escapes(text: &[u8]) -> bool {
    memchr::memchr2(b'\\', b'%', text).is_some()
}

/// Whether `rest` begins with a spelling of `c`: as written, as `\uXXXX` escapes of its
/// UTF-16 units, as a short escape, as percent escapes of its UTF-8 bytes, or (a space) `+`.
fn one(c: char, rest: &[u8]) -> Spelled {
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
    if let Some(n) = try_form(literal, false) {
        return Spelled::In(n);
    }
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
        return Spelled::In(n);
    }
    let short_escape: &[u8] = match c {
        '"' => b"\\\"",
        '\\' => b"\\\\",
        '/' => b"\\/",
        '\n' => b"\\n",
        '\r' => b"\\r",
        '\t' => b"\\t",
        '\u{8}' => b"\\b",
        '\u{c}' => b"\\f",
        ' ' => b"+",
        _ => b"",
    };
    if !short_escape.is_empty()
        && let Some(n) = try_form(short_escape, false)
    {
        return Spelled::In(n);
    }
    let mut percent = [0u8; 12];
    for (k, byte) in literal.iter().enumerate() {
        percent[3 * k] = b'%';
        percent[3 * k + 1] = HEX[usize::from(byte >> 4)];
        percent[3 * k + 2] = HEX[usize::from(byte & 0xf)];
    }
    if let Some(n) = try_form(&percent[..3 * literal.len()], true) {
        return Spelled::In(n);
    }
    if short { Spelled::Partial } else { Spelled::No }
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
            let (at, end) = find(secret, &bytes, 0).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(&bytes[at..end], text.as_bytes());
        }
        for text in [
            "sk-proj/Abc-def ü",
            r"sk-proj\/Abc\u002Cdef ü",
            "sk-proj%2FAbc",
        ] {
            assert_eq!(find(secret, text.as_bytes(), 0), None, "{text}");
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
            assert_eq!(partial("ab+c", text.as_bytes()), held, "{text}");
        }
        assert_eq!(at("ab+c", b"ab\\u002Bc"), Spelled::In(9));
        assert_eq!(at("ab+c", b"ab\\u002"), Spelled::Partial);
        assert_eq!(at("ab+c", b"ab\\u0020"), Spelled::No);
    }

    #[test]
    fn a_character_beyond_the_bmp_is_a_surrogate_pair() {
        assert!(find("k😀y", br"k\ud83d\ude00y", 0).is_some());
        assert!(find("k😀y", b"k%F0%9F%98%80y", 0).is_some());
    }
}
