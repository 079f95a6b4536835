//! Brace expansion as bash does it, before anything else reads a word: comma lists
//! (`/{etc,usr}` is `/etc /usr`), sequences (`{1..3}`, `{a..e..2}`, `{01..10}`), nested and
//! side by side (`{a,b}{1,2}`). Only braces written plainly take part: quoted or escaped
//! ones (`'{a,b}'`, `\{a,b}`) and those of `${…}` or `$(…)` are text; a single element
//! (`{x}`), `{}` and an unmatched brace stay as written.
//!
//! A line may expand to at most [`MAX_WORDS`] words and [`MAX_BYTES`] bytes: beyond that it
//! is not read (`{1..100000}` would give policy a hundred thousand paths to weigh).

/// Words brace expansion may make of one line.
pub const MAX_WORDS: usize = 256;
/// Bytes brace expansion may make of one line.
pub const MAX_BYTES: usize = 64 * 1024;

/// One character of a word and whether it was written plainly (unquoted, unescaped, not
/// part of a substitution): only plain braces and commas expand.
type Marked = (char, bool);

/// The line's expansions went beyond [`MAX_WORDS`] or [`MAX_BYTES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooMany;

/// What brace expansion may still make of one line.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    words: usize,
    bytes: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            words: MAX_WORDS,
            bytes: MAX_BYTES,
        }
    }
}

impl Budget {
    fn spend(&mut self, words: usize, bytes: usize) -> Result<(), TooMany> {
        self.words = self.words.checked_sub(words).ok_or(TooMany)?;
        self.bytes = self.bytes.checked_sub(bytes).ok_or(TooMany)?;
        Ok(())
    }
}

/// The words `text` expands to, `None` when it has no brace expansion. `plain` lists the
/// byte ranges of `text` written plainly; `quoted`: some of the word was quoted (an empty
/// result is then kept, as bash keeps `''{,b}`'s first word).
pub fn expand(
    text: &str,
    plain: &[std::ops::Range<usize>],
    quoted: bool,
    budget: &mut Budget,
) -> Result<Option<Vec<String>>, TooMany> {
    let is_plain = |at: usize| plain.iter().any(|r| r.contains(&at));
    let marked: Vec<Marked> = text.char_indices().map(|(i, c)| (c, is_plain(i))).collect();
    if find(&marked, 0).is_none() {
        return Ok(None);
    }
    let mut limit = MAX_WORDS;
    let words = expand_marked(&marked, &mut limit)?;
    let words: Vec<String> = words
        .into_iter()
        .map(|w| w.into_iter().map(|(c, _)| c).collect::<String>())
        .filter(|w| quoted || !w.is_empty())
        .collect();
    budget.spend(words.len(), words.iter().map(String::len).sum())?;
    Ok(Some(words))
}

/// A brace expression in `word` at or after `from`: its `{` and `}` indices and whether it
/// is a list (else a sequence). As bash: a `}` at the opening level with no comma before it
/// ends the expression only when it is a sequence; else the search goes on past it, and a
/// `{` never closed is passed over for the next.
fn find(word: &[Marked], from: usize) -> Option<(usize, usize, bool)> {
    let mut start = from;
    loop {
        let open = start + word[start..].iter().position(|&m| m == ('{', true))?;
        let mut level = 0usize;
        let mut commas = 0usize;
        for (at, &(c, plain)) in word.iter().enumerate().skip(open + 1) {
            if !plain {
                continue;
            }
            match c {
                '}' if level == 0 => {
                    if commas > 0 {
                        return Some((open, at, true));
                    }
                    if sequence(&word[open + 1..at]).is_some() {
                        return Some((open, at, false));
                    }
                }
                '{' => level += 1,
                '}' => level -= 1,
                ',' if level == 0 => commas += 1,
                _ => {}
            }
        }
        start = open + 1;
    }
}

/// Every word `word` expands to; `limit` bounds how many any step may make.
fn expand_marked(word: &[Marked], limit: &mut usize) -> Result<Vec<Vec<Marked>>, TooMany> {
    let Some((open, close, list)) = find(word, 0) else {
        return Ok(vec![word.to_vec()]);
    };
    let preamble = &word[..open];
    let amble = &word[open + 1..close];
    let alternatives: Vec<Vec<Marked>> = if list {
        let mut all = Vec::new();
        for part in split_commas(amble) {
            all.extend(expand_marked(part, limit)?);
            if all.len() > *limit {
                return Err(TooMany);
            }
        }
        all
    } else {
        sequence(amble)
            .ok_or(TooMany)?
            .items(*limit)?
            .into_iter()
            .map(|s| s.chars().map(|c| (c, true)).collect())
            .collect()
    };
    let postscripts = expand_marked(&word[close + 1..], limit)?;
    if alternatives.len().saturating_mul(postscripts.len()) > *limit {
        return Err(TooMany);
    }
    let mut out = Vec::with_capacity(alternatives.len() * postscripts.len());
    for alternative in &alternatives {
        for post in &postscripts {
            let mut w = Vec::with_capacity(preamble.len() + alternative.len() + post.len());
            w.extend_from_slice(preamble);
            w.extend_from_slice(alternative);
            w.extend_from_slice(post);
            out.push(w);
        }
    }
    Ok(out)
}

/// `amble` split at its plain commas outside nested braces.
fn split_commas(amble: &[Marked]) -> Vec<&[Marked]> {
    let mut parts = Vec::new();
    let mut level = 0usize;
    let mut from = 0;
    for (at, &(c, plain)) in amble.iter().enumerate() {
        if !plain {
            continue;
        }
        match c {
            '{' => level += 1,
            '}' => level = level.saturating_sub(1),
            ',' if level == 0 => {
                parts.push(&amble[from..at]);
                from = at + 1;
            }
            _ => {}
        }
    }
    parts.push(&amble[from..]);
    parts
}

/// A sequence expression: `x..y` or `x..y..step`, both ends integers or both single
/// letters.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Sequence {
    Numbers {
        from: i64,
        to: i64,
        step: u64,
        /// Zero-padded to this width (an end written with a leading zero: `{01..10}`).
        width: usize,
    },
    Letters {
        from: u8,
        to: u8,
        step: u64,
    },
}

/// `amble` read as a sequence expression (every character plain).
fn sequence(amble: &[Marked]) -> Option<Sequence> {
    if amble.iter().any(|&(_, plain)| !plain) {
        return None;
    }
    let text: String = amble.iter().map(|&(c, _)| c).collect();
    let mut parts = text.split("..");
    let (from, to) = (parts.next()?, parts.next()?);
    let step = match parts.next() {
        Some(step) => integer(step)?.unsigned_abs().max(1),
        None => 1,
    };
    if parts.next().is_some() {
        return None;
    }
    if let (Some(a), Some(b)) = (integer(from), integer(to)) {
        let padded = |s: &str| {
            let digits = s.trim_start_matches(['-', '+']);
            digits.len() > 1 && digits.starts_with('0')
        };
        let width = if padded(from) || padded(to) {
            from.len().max(to.len())
        } else {
            0
        };
        return Some(Sequence::Numbers {
            from: a,
            to: b,
            step,
            width,
        });
    }
    let letter = |s: &str| match s.as_bytes() {
        [b] if b.is_ascii_alphabetic() => Some(*b),
        _ => None,
    };
    Some(Sequence::Letters {
        from: letter(from)?,
        to: letter(to)?,
        step,
    })
}

/// An integer as bash reads a sequence's end: an optional sign and decimal digits.
fn integer(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl Sequence {
    /// The words it makes, in order; more than `limit` is too many.
    fn items(&self, limit: usize) -> Result<Vec<String>, TooMany> {
        let (from, to, step) = match *self {
            Sequence::Numbers { from, to, step, .. } => (i128::from(from), i128::from(to), step),
            Sequence::Letters { from, to, step } => (i128::from(from), i128::from(to), step),
        };
        let step = i128::from(step);
        let count = (from - to).abs() / step + 1;
        if count > limit as i128 {
            return Err(TooMany);
        }
        let direction = if to < from { -step } else { step };
        Ok((0..count)
            .map(|n| {
                let value = from + n * direction;
                match *self {
                    Sequence::Numbers { width, .. } => format!("{value:0width$}"),
                    Sequence::Letters { .. } => {
                        char::from(u8::try_from(value).unwrap_or(b'?')).to_string()
                    }
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One range: all of `word`, plain.
    fn whole(word: &str) -> Vec<std::ops::Range<usize>> {
        std::iter::once(0..word.len()).collect()
    }

    /// `word` expanded, every character plain.
    fn plain(word: &str) -> Option<Vec<String>> {
        let all = whole(word);
        expand(word, &all, false, &mut Budget::default()).unwrap()
    }

    #[test]
    fn words_expand_as_bash_expands_them() {
        // Each expectation is what bash 5 prints for `printf '[%s]' WORD`.
        let cases: &[(&str, &[&str])] = &[
            ("/{etc,usr}", &["/etc", "/usr"]),
            ("{/etc,x}", &["/etc", "x"]),
            ("a{,b}", &["a", "ab"]),
            ("{,b}", &["b"]),
            ("{,}", &[]),
            ("{a{b,c}", &["{ab", "{ac"]),
            ("{x}{a,b}", &["{x}a", "{x}b"]),
            ("{a,b}{c,d}", &["ac", "ad", "bc", "bd"]),
            ("{a,{b,c}d}e", &["ae", "bde", "cde"]),
            ("{a{b,c}d,e}", &["abd", "acd", "e"]),
            ("{1..3}", &["1", "2", "3"]),
            ("{3..1}", &["3", "2", "1"]),
            ("{01..3}", &["01", "02", "03"]),
            ("{-01..2}", &["-01", "000", "001", "002"]),
            ("{1..10..3}", &["1", "4", "7", "10"]),
            ("{1..10..-3}", &["1", "4", "7", "10"]),
            ("{1..3..0}", &["1", "2", "3"]),
            ("{-3..-1}", &["-3", "-2", "-1"]),
            ("{+1..3}", &["1", "2", "3"]),
            ("{a..e..2}", &["a", "c", "e"]),
            ("{Z..b}", &["Z", "[", "\\", "]", "^", "_", "`", "a", "b"]),
            ("{a..c}{1..2}", &["a1", "a2", "b1", "b2", "c1", "c2"]),
            ("{a,b}}", &["a}", "b}"]),
            ("{{a,b}", &["{a", "{b"]),
            ("{a}b,c}", &["a}b", "c"]),
            ("x{a,b}y{c}", &["xay{c}", "xby{c}"]),
            ("{,,}x", &["x", "x", "x"]),
            ("}{a,b}", &["}a", "}b"]),
            ("{a,b}{", &["a{", "b{"]),
            ("~{,x}", &["~", "~x"]),
        ];
        for (word, expected) in cases {
            let expected: Vec<String> = expected.iter().map(|w| (*w).to_owned()).collect();
            assert_eq!(plain(word), Some(expected), "{word}");
        }
    }

    #[test]
    fn what_is_no_brace_expression_stays_as_written() {
        for word in [
            "{}", "{x}", "{a,b", "a}b,{c", "{a..3}", "{1..}", "{a...c}", "{1.5..3}", "@{u}",
            "plain",
        ] {
            assert_eq!(plain(word), None, "{word}");
        }
    }

    #[test]
    fn quoted_braces_and_commas_do_not_expand() {
        // `{a',b',c}`: the quoted comma is text; `'{a,b}'`: nothing plain.
        let text = "{a,b,c}";
        let quoted_comma = [0..2, 4..7];
        assert_eq!(
            expand(text, &quoted_comma, true, &mut Budget::default()).unwrap(),
            Some(vec!["a,b".to_owned(), "c".to_owned()])
        );
        assert_eq!(
            expand(text, &[], true, &mut Budget::default()).unwrap(),
            None
        );
        // A quoted part keeps an empty result (`''{,b}`).
        assert_eq!(
            expand("{,b}", &whole("{,b}"), true, &mut Budget::default()).unwrap(),
            Some(vec![String::new(), "b".to_owned()])
        );
    }

    #[test]
    fn a_line_that_expands_beyond_the_bounds_is_too_many() {
        let all = whole;
        for word in [
            "{1..257}",
            "{1..100000000000}",
            "{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}",
        ] {
            assert_eq!(
                expand(word, &all(word), false, &mut Budget::default()),
                Err(TooMany),
                "{word}"
            );
        }
        // The budget is the line's: two words of 200 are too many together.
        let mut budget = Budget::default();
        let word = "{1..200}";
        assert!(expand(word, &all(word), false, &mut budget).is_ok());
        assert_eq!(expand(word, &all(word), false, &mut budget), Err(TooMany));
        // As are long words.
        let long = format!("{{{},{}}}", "x".repeat(40_000), "y".repeat(40_000));
        assert_eq!(
            expand(&long, &all(&long), false, &mut Budget::default()),
            Err(TooMany)
        );
        assert!(plain("{1..256}").is_some_and(|w| w.len() == 256));
    }
}
