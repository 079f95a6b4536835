//! Text that came from a request, as Warden repeats it in messages, logs, audit records and
//! metric labels: always bounded and escaped, so no request can make any of them grow with its
//! size or hide what it says behind invisible or direction-changing characters.

use std::borrow::Cow;
use std::fmt;

use unicode_normalization::UnicodeNormalization;

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

/// `text` as an approver reads it (the console, `warden approvals show`, approval
/// notifications): [`revealed`], and every character that imitates ASCII ([`imitates_ascii`]:
/// Cyrillic `а`, Greek `ο`, fullwidth `ｅ`, the ligature `ﬀ`, the two-dot leader `‥`) or that
/// Unicode's compatibility normalization (NFKC) would change ([`changes_under_nfkc`]: `²`,
/// `ℌ`) shown as its `\u{…}` escape where it sits in a word ([`looks_ascii`]) that reads as
/// ASCII, so that `boss@cоrp.com` with a Cyrillic `о` reads `boss@c\u{43e}rp.com` and
/// `oﬀice@corp.com` reads `o\u{fb00}ice@corp.com`, not as the addresses they imitate. Words in
/// other scripts (`Москва`, `日本`, halfwidth `ｶﾀｶﾅ`), accented letters (`café`) and the
/// ellipsis `…` (which marks where Warden cut a text) stay as they are. Borrowed when nothing
/// is hidden or imitated.
pub fn revealed_for_approvers(text: &str) -> Cow<'_, str> {
    let text = revealed(text);
    if text.is_ascii()
        || !text
            .split(separates_words)
            .any(|word| !word.is_ascii() && looks_ascii(word))
    {
        return text;
    }
    let mut shown = String::with_capacity(text.len() + 16);
    let mut rest = text.as_ref();
    while let Some(start) = rest.find(|c: char| !separates_words(c)) {
        shown.push_str(&rest[..start]);
        rest = &rest[start..];
        let end = rest.find(separates_words).unwrap_or(rest.len());
        let word = &rest[..end];
        if looks_ascii(word) {
            for c in word.chars() {
                if imitates_ascii(c) || changes_under_nfkc(c) {
                    shown.extend(c.escape_unicode());
                } else {
                    shown.push(c);
                }
            }
        } else {
            shown.push_str(word);
        }
        rest = &rest[end..];
    }
    shown.push_str(rest);
    Cow::Owned(shown)
}

/// Whether `c` is not ASCII and yet looks like ASCII: its UTS #39 confusable prototype is a
/// single printable ASCII character (Cyrillic `а` → `a`, Greek `Ο` → `O`, fullwidth `／` → `/`,
/// the one dot leader `․` → `.`), or its compatibility form (NFKC) is printable ASCII (the
/// ligature `ﬀ` → `ff`, the two-dot leader `‥` → `..`, `㎏` → `kg`). The ellipsis `…` is not
/// counted: Warden marks with it where it cut a text.
fn imitates_ascii(c: char) -> bool {
    if c.is_ascii() || c.is_whitespace() || c == '…' {
        return false;
    }
    let mut one = [0u8; 4];
    let mut prototype = unicode_security::skeleton(c.encode_utf8(&mut one));
    if matches!(
        (prototype.next(), prototype.next()),
        (Some(p), None) if p.is_ascii_graphic()
    ) {
        return true;
    }
    let mut compatible = std::iter::once(c).nfkc().peekable();
    compatible.peek().is_some() && compatible.all(|n| n.is_ascii_graphic())
}

/// Whether Unicode's compatibility normalization (NFKC) changes `c` (`²` → `2`, `ℌ` → `H`,
/// `½` → `1⁄2`): a character that stands for other ones, escaped in a word that reads as
/// ASCII. Whitespace and the ellipsis `…` are not counted.
fn changes_under_nfkc(c: char) -> bool {
    !c.is_ascii()
        && !c.is_whitespace()
        && c != '…'
        && !std::iter::once(c).nfkc().eq(std::iter::once(c))
}

/// Whether `word` (no whitespace, quotes or brackets) holds a character that imitates ASCII
/// and reads as ASCII: it has an ASCII letter or digit too (`bоss`, `exаmple.com`,
/// `oﬀice`), or each of its letters and digits is ASCII or imitates it (`аррӏе`, all
/// Cyrillic); or it holds a character NFKC changes and otherwise reads as ASCII (`x²`: ASCII
/// letters or digits and no letter of another script).
fn looks_ascii(word: &str) -> bool {
    let mut imitated = false;
    let mut changed = false;
    let mut ascii = false;
    let mut other = false;
    for c in word.chars() {
        if imitates_ascii(c) {
            imitated = true;
        } else if changes_under_nfkc(c) {
            changed = true;
        } else if c.is_ascii_alphanumeric() {
            ascii = true;
        } else if c.is_alphanumeric() {
            other = true;
        }
    }
    (imitated && (ascii || !other)) || (changed && ascii && !other)
}

/// What separates words in [`revealed_for_approvers`]: whitespace, quotes, brackets, commas.
fn separates_words(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '"' | '\'' | '`' | ',' | ';' | '(' | ')' | '[' | ']' | '{' | '}' | '<' | '>'
        )
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
    fn approvers_read_look_alikes_of_ascii_as_escapes_and_other_scripts_as_they_are() {
        // A Cyrillic о in an address, a Cyrillic а in a host, Greek Ο in a word.
        assert_eq!(
            revealed_for_approvers("{\"to\": \"boss@c\u{43e}rp.com\", \"n\": \"\u{39f}K\"}"),
            r#"{"to": "boss@c\u{43e}rp.com", "n": "\u{39f}K"}"#
        );
        assert_eq!(
            revealed_for_approvers("boss@c\u{43e}rp.com"),
            r"boss@c\u{43e}rp.com"
        );
        assert_eq!(
            revealed_for_approvers("send to https://ex\u{430}mple.com now"),
            r"send to https://ex\u{430}mple.com now"
        );
        // A word all of look-alikes reads as ASCII too (аррӏе, all Cyrillic).
        assert_eq!(
            revealed_for_approvers("\u{430}\u{440}\u{440}\u{4cf}\u{435}.com"),
            r"\u{430}\u{440}\u{440}\u{4cf}\u{435}.com"
        );
        // Fullwidth letters and a dot that is not a dot.
        assert_eq!(
            revealed_for_approvers("evil\u{2024}com \u{ff41}dmin"),
            r"evil\u{2024}com \u{ff41}dmin"
        );
        // Words of other scripts, accents, emoji and punctuation stay as they are.
        for same in [
            "Москва",
            "日本 ✅",
            "café Zoë",
            "wait…",
            "Ελλάδα",
            "привет мир",
            "ｶﾀｶﾅ",
            "½",
        ] {
            assert_eq!(revealed_for_approvers(same), same, "{same}");
            assert!(
                matches!(revealed_for_approvers(same), Cow::Borrowed(_)),
                "{same}"
            );
        }
        // Characters NFKC expands into ASCII (a ligature, a two-dot leader, a unit) and
        // other compatibility characters in a word that reads as ASCII.
        assert_eq!(
            revealed_for_approvers("oﬀice@corp.com"),
            r"o\u{fb00}ice@corp.com"
        );
        assert_eq!(
            revealed_for_approvers("to: evil\u{2025}com, 5\u{338f} x\u{b2} \u{210c}ello"),
            r"to: evil\u{2025}com, 5\u{338f} x\u{b2} \u{210c}ello"
        );
        // Hidden characters are still revealed.
        assert_eq!(
            revealed_for_approvers("pay\u{202e}gnp.exe b\u{43e}ss"),
            r"pay\u{202e}gnp.exe b\u{43e}ss"
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
