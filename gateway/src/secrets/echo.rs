//! A credential's echo: what of it an upstream could send back, found in one search. The forms
//! with no escape in them (each value as it is, with `+` for its spaces as a form writes them;
//! its hex in either case; the base64 of the value and of a Basic pair, at each offset and in
//! both alphabets) are the patterns of one Aho-Corasick automaton, built when the credential
//! is made (once per secret read, not per request); every spelling with an escape in it (JSON's
//! `\u002B` and `\/`, a URL's `%2B` or `%252B`, HTML's `&#43;`) is found by [`spelled`],
//! wherever a text holds an escape. A credential with a value whose case carries nothing (hex,
//! such as `9f86d081884c7d65`) is looked for in any case, all of its forms: an upstream that
//! upper-cases it hands the agent the whole secret.

use aho_corasick::automaton::Automaton as _;
use aho_corasick::nfa::contiguous::NFA;
use aho_corasick::{Anchored, Input, MatchKind};
use bytes::BufMut;
use zeroize::Zeroizing;

use super::spelled;

/// What a secret is replaced with.
pub const REDACTED: &[u8] = b"[REDACTED]";

/// A credential's echoed forms and how to find them. The automaton holds its patterns in
/// memory that is not zeroed when it goes (as the header value sent upstream holds the secret).
#[derive(Default)]
pub struct Echo {
    /// The escape-free forms, searched for leftmost-longest; `None` when there are none.
    automaton: Option<NFA>,
    /// The longest escape-free form's length.
    longest: usize,
    /// The bytes an escape-free form begins with.
    firsts: Box<[bool]>,
    /// What is also looked for in any spelling: the values and their base64 forms.
    spelled: Vec<Zeroizing<String>>,
    /// Whether the forms are looked for in any ASCII case ([`case_free`]).
    any_case: bool,
}

impl std::fmt::Debug for Echo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Echo")
            .field("spelled", &self.spelled.len())
            .finish_non_exhaustive()
    }
}

/// Values and forms shorter than this are not redacted from responses: too likely to match
/// text that merely contains them.
pub const MIN_ECHO: usize = 6;

impl Echo {
    /// A credential's echo as [`Echo::new`] builds it, values and encoded forms shorter than
    /// [`MIN_ECHO`] left out.
    pub fn of_secret(
        values: impl IntoIterator<Item = Zeroizing<String>>,
        encoded: impl IntoIterator<Item = Zeroizing<String>>,
    ) -> Echo {
        let long_enough = |form: &Zeroizing<String>| form.len() >= MIN_ECHO;
        Echo::new(
            values.into_iter().filter(long_enough),
            encoded.into_iter().filter(long_enough),
        )
    }

    /// The echo of `values` (a secret, the fields a template uses, a rendered query value):
    /// each as it is, with `+` for its spaces, and its hex in lower and upper case; and of
    /// `encoded` (base64 forms, [`base64_forms`]) as they are. Each is also found in any
    /// spelling but the hex. All are looked for in any case when a value is [`case_free`].
    pub fn new(
        values: impl IntoIterator<Item = Zeroizing<String>>,
        encoded: impl IntoIterator<Item = Zeroizing<String>>,
    ) -> Echo {
        let mut spelled: Vec<Zeroizing<String>> = values.into_iter().collect();
        let any_case = spelled.iter().any(|value| case_free(value));
        let mut forms: Vec<Zeroizing<String>> = Vec::new();
        for value in &spelled {
            forms.push(value.clone());
            if value.contains(' ') {
                forms.push(Zeroizing::new(value.replace(' ', "+")));
            }
            let lower = Zeroizing::new(hex::encode(value.as_bytes()));
            forms.push(Zeroizing::new(lower.to_ascii_uppercase()));
            forms.push(lower);
        }
        for form in encoded {
            forms.push(form.clone());
            spelled.push(form);
        }
        dedup(&mut spelled);
        dedup(&mut forms);
        forms.retain(|f| !f.is_empty());
        let mut firsts = vec![false; 256].into_boxed_slice();
        for form in &forms {
            let first = form.as_bytes()[0];
            firsts[usize::from(first)] = true;
            if any_case {
                firsts[usize::from(first.to_ascii_uppercase())] = true;
                firsts[usize::from(first.to_ascii_lowercase())] = true;
            }
        }
        let automaton = (!forms.is_empty()).then(|| {
            NFA::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .ascii_case_insensitive(any_case)
                .build(forms.iter().map(|f| f.as_bytes()))
                // A few short patterns are far below the automaton's limits.
                .expect("an automaton of a credential's forms")
        });
        Echo {
            automaton,
            longest: forms.iter().map(|f| f.len()).max().unwrap_or(0),
            firsts,
            spelled,
            any_case,
        }
    }

    /// Whether a header's `name` holds a form of the credential. Names reach Warden in lower
    /// case (the HTTP stack folds them), so the forms are looked for in any case.
    pub fn in_header_name(&self, name: &str) -> bool {
        let name = name.as_bytes();
        self.find(name, 0).is_some()
            || self.spelled.iter().any(|form| {
                let form = form.as_bytes();
                !form.is_empty()
                    && name.len() >= form.len()
                    && name
                        .windows(form.len())
                        .any(|w| w.eq_ignore_ascii_case(form))
            })
    }

    /// Whether there is nothing to look for.
    pub fn is_empty(&self) -> bool {
        self.automaton.is_none() && self.spelled.is_empty()
    }

    /// The earliest form of the credential in `text` at or after `from` (the longest where
    /// several start there): where it starts and ends.
    pub fn find(&self, text: &[u8], from: usize) -> Option<(usize, usize)> {
        let literal = self.automaton.as_ref().and_then(|nfa| {
            let input = Input::new(text).span(from..text.len());
            // An unanchored search of an NFA that supports one cannot fail.
            let found = nfa.try_find(&input).ok().flatten()?;
            Some((found.start(), found.end()))
        });
        if self.spelled.is_empty() || !spelled::has_escapes(&text[from..]) {
            return literal;
        }
        // A spelling that starts after the form found is not the earliest.
        let until = literal.map_or(text.len(), |(at, _)| at + 1);
        self.spelled
            .iter()
            .filter_map(|s| spelled::find(s, text, from, until, self.any_case))
            .chain(literal)
            .min_by_key(|&(at, end)| (at, std::cmp::Reverse(end)))
    }

    /// How many bytes at the end of `text` could be the start of a form (held back until the
    /// next chunk shows whether the form follows).
    pub fn partial(&self, text: &[u8]) -> usize {
        let mut longest = 0;
        if let Some(nfa) = &self.automaton {
            let from = text.len() - (self.longest - 1).min(text.len());
            for p in from..text.len() {
                if self.firsts[usize::from(text[p])] && prefix_of_a_form(nfa, &text[p..]) {
                    longest = text.len() - p;
                    break;
                }
            }
        }
        if spelled::has_escapes(text) {
            for secret in &self.spelled {
                longest = longest.max(spelled::partial(secret, text, self.any_case));
            }
        }
        longest
    }

    /// `text` with every form replaced by [`REDACTED`] (longest first where two start at one
    /// place), written to `out`; how many were replaced.
    pub fn replace(&self, text: &[u8], out: &mut impl BufMut) -> usize {
        let mut count = 0;
        let mut i = 0;
        while let Some((at, end)) = self.find(text, i) {
            out.put_slice(&text[i..at]);
            out.put_slice(REDACTED);
            count += 1;
            i = end;
        }
        out.put_slice(&text[i..]);
        count
    }
}

/// Whether `text` is the start of one of `nfa`'s patterns (all of `text` read without the
/// anchored search dying).
fn prefix_of_a_form(nfa: &NFA, text: &[u8]) -> bool {
    let Ok(mut state) = nfa.start_state(Anchored::Yes) else {
        return false;
    };
    for &byte in text {
        state = nfa.next_state(Anchored::Yes, state, byte);
        if nfa.is_dead(state) {
            return false;
        }
    }
    true
}

/// Whether `value`'s case carries nothing: hex digits, with at least one letter, and perhaps
/// the separators hex is written with (`-`, `:`, `_`, `.`). A decoder reads it the same in
/// either case, so an upstream that changes its case still echoes it.
pub fn case_free(value: &str) -> bool {
    let bytes = value.as_bytes();
    bytes.iter().any(u8::is_ascii_alphabetic)
        && bytes
            .iter()
            .all(|b| b.is_ascii_hexdigit() || matches!(b, b'-' | b':' | b'_' | b'.'))
}

fn dedup(forms: &mut Vec<Zeroizing<String>>) {
    forms.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    forms.dedup_by(|a, b| a.as_str() == b.as_str());
}

/// The forms `bytes` takes base64-encoded where an upstream echoes it: the whole padded
/// encoding, and the part that stays the same wherever it sits in a longer encoded text (no
/// padding, or one or two bytes before it: the first and last groups of four depend on its
/// neighbours and are left out), each in the standard and the URL-safe alphabet. Parts shorter
/// than 8 characters are left out.
pub fn base64_forms(bytes: &[u8]) -> Vec<Zeroizing<String>> {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    let mut forms = vec![Zeroizing::new(STANDARD.encode(bytes))];
    for offset in 0..3 {
        let mut shifted = Zeroizing::new(vec![0u8; offset]);
        shifted.extend_from_slice(bytes);
        let encoded = Zeroizing::new(STANDARD.encode(&*shifted));
        let from = if offset == 0 { 0 } else { 4 };
        let to = 4 * (shifted.len() / 3);
        if to >= from + 8 {
            forms.push(Zeroizing::new(encoded[from..to].to_owned()));
        }
    }
    let url_safe: Vec<Zeroizing<String>> = forms
        .iter()
        .map(|f| Zeroizing::new(f.replace('+', "-").replace('/', "_").replace('=', "")))
        .collect();
    forms.extend(url_safe);
    dedup(&mut forms);
    forms
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo(values: &[&str]) -> Echo {
        Echo::new(values.iter().map(|v| Zeroizing::new((*v).to_owned())), [])
    }

    #[test]
    fn the_earliest_form_is_found_and_the_longest_of_those_starting_there() {
        let e = echo(&["ghp-0123", "ghp-0123456789"]);
        assert_eq!(e.find(b"x ghp-0123456789 y", 0), Some((2, 16)));
        assert_eq!(e.find(b"x ghp-01234 y", 0), Some((2, 10)));
        // A spelling with escapes earlier than a literal form wins; later, it waits.
        let text = br"a ghp\u002d0123 b ghp-0123456789";
        assert_eq!(e.find(text, 0), Some((2, 15)));
        assert_eq!(e.find(text, 3), Some((18, 32)));
        assert_eq!(e.find(b"nothing here \\ %41", 0), None);
    }

    #[test]
    fn the_end_of_a_text_that_begins_a_form_is_partial() {
        let e = echo(&["sk-live-123456"]);
        assert_eq!(e.partial(b"key sk-li"), 5);
        // The start of its hex, in either case.
        assert_eq!(e.partial(b"hex 736B2D"), 6);
        assert_eq!(e.partial(b"key sk-la"), 0);
        // At most one byte short of the longest form.
        assert_eq!(e.partial(b"sk-live-12345"), 13);
        // The start of a spelling with an escape.
        assert_eq!(e.partial(br"sk\u002"), 7);
        assert_eq!(e.partial(b""), 0);
    }

    #[test]
    fn a_hex_secret_is_found_in_any_case_and_escaped_in_either() {
        let e = echo(&["9f86d081884c7d659a2feaa0c55ad015"]);
        for text in [
            "9F86D081884C7D659A2FEAA0C55AD015",
            "9f86D081884c7d659A2FEAA0C55AD015",
            r"\u0039F86D081884C7D659A2FEAA0C55AD015",
        ] {
            let bytes = format!("bad key: {text}.").into_bytes();
            let mut out = Vec::new();
            assert_eq!(e.replace(&bytes, &mut out), 1, "{text}");
            assert_eq!(out, b"bad key: [REDACTED].", "{text}");
        }
        // The start of an upper-cased one, at a chunk's end, is held back.
        assert_eq!(e.partial(b"key 9F86D0"), 6);
        // A secret whose case is its own is not looked for in another.
        let cased = echo(&["sk-Live-AbCdEf"]);
        assert_eq!(cased.find(b"SK-LIVE-ABCDEF", 0), None);
        assert!(case_free("0BADC0DE-dead:beef") && !case_free("12345678"));
        assert!(!case_free("sk-live-abc"));
    }

    #[test]
    fn a_header_credential_percent_encoded_twice_or_in_lower_hex_is_found() {
        let e = echo(&["sk-proj+Abc/def=="]);
        for text in [
            "sk-proj%252BAbc%252Fdef%253D%253D",
            "sk-proj%252bAbc%252fdef%253d%253d",
            "sk-proj%2bAbc%2fdef%3d%3d",
        ] {
            let bytes = format!("GET /cb?token={text}&x=1").into_bytes();
            let mut out = Vec::new();
            assert_eq!(e.replace(&bytes, &mut out), 1, "{text}");
            assert_eq!(out, b"GET /cb?token=[REDACTED]&x=1", "{text}");
        }
        // Split where a chunk ends inside the doubly-encoded `+`: held back.
        assert_eq!(e.partial(b"token=sk-proj%25"), 10);
    }

    #[test]
    fn an_echo_of_nothing_is_empty_and_finds_nothing() {
        let e = Echo::new([], []);
        assert!(e.is_empty());
        assert_eq!(e.find(b"sk-live \\u0041", 0), None);
        assert_eq!(e.partial(b"sk"), 0);
        assert!(!echo(&["sk-live-123456"]).is_empty());
    }

    #[test]
    fn replace_writes_every_form_as_redacted_and_counts_them() {
        let e = echo(&["sk-live-123456"]);
        let mut out = Vec::new();
        let n = e.replace(b"a sk-live-123456 b sk-live-123456", &mut out);
        assert_eq!((n, out.as_slice()), (2, &b"a [REDACTED] b [REDACTED]"[..]));
        let mut out = Vec::new();
        assert_eq!(e.replace(b"clean", &mut out), 0);
        assert_eq!(out, b"clean");
    }
}
