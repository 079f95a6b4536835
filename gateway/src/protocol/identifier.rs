//! Identifiers taken from requests (model names; tool names next), checked before policy sees
//! them, so that a name cannot slip past a policy that forbids what it looks like.
//!
//! Refused (400): an empty value, one longer than [`MAX_IDENTIFIER_BYTES`], control
//! characters (C0 with NUL, DEL, C1, line and paragraph separators), bidirectional controls
//! (U+061C, U+200E/F, U+202A–E, U+2066–9), invisible formatting characters (every
//! `Default_Ignorable_Code_Point`: zero-width spaces and joiners, soft hyphen, variation
//! selectors, tags, fillers; and the other format characters), and whitespace at either end.
//!
//! Folded: a name that imitates ASCII with other characters is judged as what it looks like.
//! It is NFKC-normalised (fullwidth `ｇｐｔ` → `gpt`, ligatures, compatibility forms), then each
//! remaining non-ASCII character whose UTS #39 confusable prototype is ASCII is replaced by it
//! (Cyrillic `е` → `e`, Greek `ο` → `o`). Characters with no ASCII look-alike (`é`, `通义`) stay.
//! When folding changed the name, policy judges the folded name and the interpretation reports
//! the finding `lookalike_identifier`; the upstream still receives the name as sent.

use std::fmt;

use unicode_normalization::UnicodeNormalization;

use crate::text::{is_bidi_control, is_invisible};

/// Longest identifier accepted, in bytes of UTF-8.
pub const MAX_IDENTIFIER_BYTES: usize = 256;

/// The finding reported when a name was folded to its ASCII look-alike.
pub const LOOKALIKE_FINDING: &str = "lookalike_identifier";

/// Why an identifier is refused. Names the class of the problem and at most one code point,
/// never the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentifierProblem {
    /// The value is empty.
    Empty,
    /// The value is longer than [`MAX_IDENTIFIER_BYTES`].
    TooLong {
        /// Its length in bytes.
        bytes: usize,
    },
    /// A control character (C0 including NUL, DEL, C1, line or paragraph separator).
    Control(char),
    /// A bidirectional control, which reorders how the value displays.
    Bidi(char),
    /// An invisible formatting character (zero-width, joiner, variation selector, tag, ...).
    Invisible(char),
    /// Whitespace at the start or the end.
    EdgeWhitespace,
}

impl fmt::Display for IdentifierProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = |c: &char| *c as u32;
        match self {
            IdentifierProblem::Empty => f.write_str("it is empty"),
            IdentifierProblem::TooLong { bytes } => write!(
                f,
                "it is {bytes} bytes long; at most {MAX_IDENTIFIER_BYTES} are accepted"
            ),
            IdentifierProblem::Control(c) => {
                write!(f, "it contains the control character U+{:04X}", code(c))
            }
            IdentifierProblem::Bidi(c) => {
                write!(f, "it contains the bidirectional control U+{:04X}", code(c))
            }
            IdentifierProblem::Invisible(c) => write!(
                f,
                "it contains the invisible formatting character U+{:04X}",
                code(c)
            ),
            IdentifierProblem::EdgeWhitespace => f.write_str("it begins or ends with whitespace"),
        }
    }
}

/// Checks `value`; `Ok(Some(folded))` when policy must judge a folded name (see the module
/// documentation), `Ok(None)` when the value is judged as sent.
pub fn check(value: &str) -> Result<Option<String>, IdentifierProblem> {
    if value.is_empty() {
        return Err(IdentifierProblem::Empty);
    }
    if value.len() > MAX_IDENTIFIER_BYTES {
        return Err(IdentifierProblem::TooLong { bytes: value.len() });
    }
    let edge = |c: Option<char>| c.is_some_and(char::is_whitespace);
    if edge(value.chars().next()) || edge(value.chars().next_back()) {
        return Err(IdentifierProblem::EdgeWhitespace);
    }
    if value.is_ascii() {
        // The common case: nothing to fold, only ASCII controls to refuse.
        return match value.chars().find(char::is_ascii_control) {
            Some(c) => Err(IdentifierProblem::Control(c)),
            None => Ok(None),
        };
    }
    for c in value.chars() {
        if let Some(problem) = problem(c) {
            return Err(problem);
        }
    }
    let folded = fold(value);
    Ok((folded != value).then_some(folded))
}

/// Why `value` would not read as it is, if it would not: a control, bidirectional or
/// invisible character, or whitespace at either end (as [`check`], without its bound on the
/// length and without folding). For names Warden does not judge as sent but records and shows
/// (an agent's id from its token's claims), so that no record shows one agent as another.
pub fn unreadable(value: &str) -> Option<IdentifierProblem> {
    let edge = |c: Option<char>| c.is_some_and(char::is_whitespace);
    if edge(value.chars().next()) || edge(value.chars().next_back()) {
        return Some(IdentifierProblem::EdgeWhitespace);
    }
    value.chars().find_map(problem)
}

/// What is wrong with one character, if anything.
fn problem(c: char) -> Option<IdentifierProblem> {
    if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') {
        Some(IdentifierProblem::Control(c))
    } else if is_bidi_control(c) {
        Some(IdentifierProblem::Bidi(c))
    } else if is_invisible(c) {
        Some(IdentifierProblem::Invisible(c))
    } else {
        None
    }
}

/// NFKC, then each non-ASCII character replaced by its confusable prototype where that is ASCII.
fn fold(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut one = [0u8; 4];
    for c in value.nfkc() {
        if c.is_ascii() {
            out.push(c);
            continue;
        }
        let prototype = unicode_security::skeleton(c.encode_utf8(&mut one));
        let start = out.len();
        let mut ascii = true;
        for p in prototype {
            ascii &= p.is_ascii();
            out.push(p);
        }
        if !ascii {
            out.truncate(start);
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_pass_unchanged() {
        for name in [
            "gpt-4o-mini",
            "meta-llama/Llama-3-8B",
            "claude-sonnet-4-5@20250929",
            "models/gemini-2.5-flash",
            "qwen2.5:7b",
        ] {
            assert_eq!(check(name), Ok(None), "{name}");
        }
    }

    #[test]
    fn non_ascii_names_without_ascii_look_alikes_are_judged_as_sent() {
        assert_eq!(check("通义千问-max"), Ok(None));
        assert_eq!(check("café-model"), Ok(None));
    }

    #[test]
    fn nul_and_other_controls_are_refused() {
        assert_eq!(
            check("denied-model\u{0}"),
            Err(IdentifierProblem::Control('\u{0}'))
        );
        assert_eq!(check("a\u{7f}b"), Err(IdentifierProblem::Control('\u{7f}')));
        assert_eq!(
            check("a\u{85}b"),
            Err(IdentifierProblem::Control('\u{85}')),
            "C1 next line"
        );
        assert_eq!(
            check("a\u{2028}b"),
            Err(IdentifierProblem::Control('\u{2028}'))
        );
        assert_eq!(
            check("é\u{1b}[31m"),
            Err(IdentifierProblem::Control('\u{1b}'))
        );
    }

    #[test]
    fn bidi_controls_are_refused() {
        for c in [
            '\u{061C}', '\u{200E}', '\u{200F}', '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}',
            '\u{202E}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}',
        ] {
            let value = format!("denied{c}-model");
            assert_eq!(
                check(&value),
                Err(IdentifierProblem::Bidi(c)),
                "U+{:04X}",
                c as u32
            );
        }
    }

    #[test]
    fn invisible_formatting_characters_are_refused() {
        for c in [
            '\u{00AD}',
            '\u{200B}',
            '\u{200C}',
            '\u{200D}',
            '\u{2060}',
            '\u{FEFF}',
            '\u{FE0F}',
            '\u{E0041}',
            '\u{3164}',
            '\u{0600}',
        ] {
            let value = format!("denied-{c}model");
            assert_eq!(
                check(&value),
                Err(IdentifierProblem::Invisible(c)),
                "U+{:04X}",
                c as u32
            );
        }
    }

    #[test]
    fn empty_over_long_and_padded_values_are_refused() {
        assert_eq!(check(""), Err(IdentifierProblem::Empty));
        let longest = "m".repeat(MAX_IDENTIFIER_BYTES);
        assert_eq!(check(&longest), Ok(None));
        let long = "m".repeat(MAX_IDENTIFIER_BYTES + 1);
        assert_eq!(check(&long), Err(IdentifierProblem::TooLong { bytes: 257 }));
        let huge = "m".repeat(8 * 1024 * 1024);
        assert!(matches!(
            check(&huge),
            Err(IdentifierProblem::TooLong { .. })
        ));
        assert_eq!(check(" gpt-4o"), Err(IdentifierProblem::EdgeWhitespace));
        assert_eq!(
            check("gpt-4o\u{a0}"),
            Err(IdentifierProblem::EdgeWhitespace)
        );
    }

    #[test]
    fn look_alikes_fold_to_the_ascii_name_they_imitate() {
        // Cyrillic е (U+0435), Greek ο (U+03BF), Cyrillic р (U+0440).
        assert_eq!(
            check("d\u{0435}nied-model").ok().flatten().as_deref(),
            Some("denied-model")
        );
        assert_eq!(
            check("denied-m\u{03bf}del").ok().flatten().as_deref(),
            Some("denied-model")
        );
        assert_eq!(
            check("g\u{0440}t-4o").ok().flatten().as_deref(),
            Some("gpt-4o")
        );
        // Fullwidth forms and ligatures by NFKC.
        assert_eq!(
            check("ｄｅｎｉｅｄ-model").ok().flatten().as_deref(),
            Some("denied-model")
        );
        assert_eq!(
            check("\u{FB01}ne-tune").ok().flatten().as_deref(),
            Some("fine-tune")
        );
    }

    #[test]
    fn problems_name_the_code_point_not_the_value() {
        let text = IdentifierProblem::Bidi('\u{202E}').to_string();
        assert_eq!(text, "it contains the bidirectional control U+202E");
        let text = IdentifierProblem::TooLong { bytes: 300 }.to_string();
        assert_eq!(text, "it is 300 bytes long; at most 256 are accepted");
    }
}
