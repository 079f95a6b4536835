//! Text that came from a request, as Warden repeats it in messages, logs, audit records and
//! metric labels: always bounded and escaped, so no request can make any of them grow with its
//! size or hide what it says behind invisible or direction-changing characters.

use std::borrow::Cow;
use std::fmt;

/// Most characters of a request value quoted in a message by default.
pub const QUOTE_MAX: usize = 64;

/// Most characters of a request path quoted in a message.
pub const PATH_MAX: usize = 200;

/// Most characters of one free-text field (a reason, an error) an audit record or log line
/// keeps.
pub const FIELD_MAX: usize = 1024;

/// `s` cut to at most `max` characters, with `…` where it was cut; borrowed when it fits.
pub fn bounded(s: &str, max: usize) -> Cow<'_, str> {
    match s.char_indices().nth(max) {
        Some((cut, _)) => {
            let mut out = String::with_capacity(cut + 3);
            out.push_str(&s[..cut]);
            out.push('…');
            Cow::Owned(out)
        }
        None => Cow::Borrowed(s),
    }
}

/// A piece of the request quoted in a message: at most a bound of characters, control,
/// bidirectional and invisible characters escaped (`\u{202e}`), an ellipsis where it was cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quoted(String);

impl Quoted {
    /// The quotation of `text`, at most [`QUOTE_MAX`] characters.
    pub fn of(text: &str) -> Quoted {
        Quoted::with_max(text, QUOTE_MAX)
    }

    /// The quotation of `text`, at most `max` characters; reads at most `max` + 1 of them.
    pub fn with_max(text: &str, max: usize) -> Quoted {
        let mut out = String::with_capacity(text.len().min(max) + 3);
        for (i, c) in text.chars().enumerate() {
            if i == max {
                out.push('…');
                break;
            }
            if c.is_control() || is_bidi_control(c) || is_invisible(c) {
                out.extend(c.escape_unicode());
            } else {
                out.push(c);
            }
        }
        Quoted(out)
    }

    /// The quotation as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Quoted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Bidirectional formatting characters: marks, embeddings, overrides and isolates.
pub fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

/// Characters that display as nothing: Unicode's `Default_Ignorable_Code_Point` set
/// (DerivedCoreProperties 15.1) and the other format characters (general category `Cf`).
pub fn is_invisible(c: char) -> bool {
    matches!(
        c,
        // Default_Ignorable_Code_Point
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFF8}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
            // other format characters (Cf)
            | '\u{0600}'..='\u{0605}'
            | '\u{06DD}'
            | '\u{070F}'
            | '\u{0890}'..='\u{0891}'
            | '\u{08E2}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
    )
}

/// `text` with every character that is invisible or reorders text ([`is_hidden`]) shown as its
/// `\u{…}` escape, newlines and tabs kept: what a person reads of agent-controlled text (the
/// console, `warden approvals show`, approval notifications), so an agent can neither hide
/// part of it nor make it read in another order. Borrowed when nothing is hidden.
pub fn revealed(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_hidden) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_hidden(c) {
            shown.extend(c.escape_unicode());
        } else {
            shown.push(c);
        }
    }
    Cow::Owned(shown)
}

/// `text` as [`revealed`] shows it, on one line: newlines and tabs escaped too. For
/// agent-controlled text in a terminal's plain-text output (`warden budgets show`,
/// `warden agents list`): a terminal escape (ESC, BEL…) is printed as `\u{1b}`, never acted on.
pub fn revealed_line(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c == '\n' || c == '\t') {
        return revealed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| match c {
                '\n' => "\\n".to_owned(),
                '\t' => "\\t".to_owned(),
                c => revealed(c.encode_utf8(&mut [0; 4])).into_owned(),
            })
            .collect(),
    )
}

/// Whether `c` is invisible or changes how text around it reads: Unicode's format characters
/// (category Cf: the bidirectional embeddings, overrides, isolates and marks, zero-width
/// spaces and joiners, the byte-order mark, invisible operators, tag characters…), the line
/// and paragraph separators, control characters other than newline and tab, and the
/// characters that render blank (Hangul fillers, the blank Braille pattern, variation
/// selectors, the combining grapheme joiner).
pub fn is_hidden(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(
            u32::from(c),
            0x00AD
                | 0x0600..=0x0605
                | 0x061C
                | 0x06DD
                | 0x070F
                | 0x0890..=0x0891
                | 0x08E2
                | 0x180E
                | 0x200B..=0x200F
                | 0x2028..=0x202E
                | 0x2060..=0x2064
                | 0x2066..=0x206F
                | 0xFEFF
                | 0xFFF9..=0xFFFB
                | 0x110BD
                | 0x110CD
                | 0x13430..=0x1343F
                | 0x1BCA0..=0x1BCA3
                | 0x1D173..=0x1D17A
                | 0xE0001
                | 0xE0020..=0xE007F
                // Characters that show as nothing though not format characters: the combining
                // grapheme joiner, the Hangul fillers, the blank Braille pattern, and the
                // variation selectors (a run of them can carry hidden bytes after any letter).
                | 0x034F
                | 0x115F
                | 0x1160
                | 0x2800
                | 0x3164
                | 0xFFA0
                | 0xFE00..=0xFE0F
                | 0xE0100..=0xE01EF
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_on_a_character_boundary_and_marked() {
        assert_eq!(bounded("short", 10), "short");
        assert!(matches!(bounded("short", 10), Cow::Borrowed(_)));
        assert_eq!(bounded("ééééé", 3), "ééé…");
        let huge = "x".repeat(8 * 1024 * 1024);
        assert_eq!(
            Quoted::with_max(&huge, PATH_MAX).as_str().chars().count(),
            PATH_MAX + 1
        );
    }

    #[test]
    fn quotations_escape_what_would_hide_or_reorder_text() {
        assert_eq!(Quoted::of("/v1/files").as_str(), "/v1/files");
        assert_eq!(
            Quoted::of("a\u{0}b\u{202e}c\nd\u{200b}").as_str(),
            "a\\u{0}b\\u{202e}c\\u{a}d\\u{200b}"
        );
    }

    #[test]
    fn revealed_text_shows_what_would_hide_or_reorder_it_and_keeps_the_rest() {
        assert!(matches!(revealed("Zoë 日本 ✅\n\t"), Cow::Borrowed(_)));
        assert_eq!(
            revealed("pay\u{202e}gnp.exe \u{2066}x\u{2069} a\u{200b}b\u{2028}\u{7}"),
            r"pay\u{202e}gnp.exe \u{2066}x\u{2069} a\u{200b}b\u{2028}\u{7}"
        );
        assert_eq!(
            revealed("a\u{fe0f}\u{e0100}b\u{3164}\u{2800}c\u{34f}"),
            r"a\u{fe0f}\u{e0100}b\u{3164}\u{2800}c\u{34f}"
        );
    }
}
