//! Redaction in place: every match of the chosen detectors in a body is replaced with a
//! placeholder that names the detector (`[REDACTED:aws_access_key]`), so the request goes on
//! without the value and keeps its shape. In a JSON body a match inside a string value is
//! replaced within that string (an escape sequence it touches is replaced whole, the quotes
//! stay); a match outside any string (a card number written as a JSON number) becomes a
//! string placeholder. Everything else in the body stays byte for byte.

use std::ops::Range;
use std::sync::Arc;

use super::config::InspectConfig;
use super::{PRIVATE_KEY_DETECTOR, private_keys, scan};
use crate::action::Finding;

/// A body with the matches of some detectors replaced.
#[derive(Debug)]
pub struct Redacted {
    /// The body as it now reads.
    pub body: Vec<u8>,
    /// Each replaced match: its detector and where it started in the original body (never
    /// its value), the location saying it was redacted.
    pub findings: Vec<Finding>,
}

/// The placeholder a match of `detector` becomes.
pub fn placeholder(detector: &str) -> String {
    format!("[REDACTED:{detector}]")
}

/// `body` with every credential the detectors find (every enabled detector but the personal
/// data ones, e-mail addresses and telephone numbers, which `audit.record_content` keeps as
/// configured) replaced with its placeholder: what the audit log records of request content.
/// `None` when there is none.
pub fn credentials_masked(body: &[u8], config: &InspectConfig) -> Option<Vec<u8>> {
    redact(body, config, &|d| !super::personal::is_personal(d)).map(|r| r.body)
}

/// Replaces in `body` every match of each enabled content detector that `wanted` accepts;
/// `None` when there is none.
pub fn redact(
    body: &[u8],
    config: &InspectConfig,
    wanted: &dyn Fn(&str) -> bool,
) -> Option<Redacted> {
    let mut spans = scan::all_spans(body, config, wanted);
    if config.enabled(PRIVATE_KEY_DETECTOR) && wanted(PRIVATE_KEY_DETECTOR) {
        spans.extend(
            private_keys(body)
                .into_iter()
                .map(|span| (PRIVATE_KEY_DETECTOR, span)),
        );
    }
    if spans.is_empty() {
        return None;
    }
    let strings = json_strings(body);
    // In the body's order, so that each match's escape walk goes on from the last one's
    // (one pass over a string however many matches it has).
    spans.sort_by_key(|(_, span)| (span.start, std::cmp::Reverse(span.end)));
    let mut walked = Walked::default();
    let mut edits: Vec<Edit> = spans
        .into_iter()
        .map(|(detector, span)| Edit::of(body, strings.as_deref(), detector, span, &mut walked))
        .collect();
    edits.sort_by_key(|e| (e.span.start, std::cmp::Reverse(e.span.end)));
    // Overlapping matches become one replacement, named for the first.
    let mut merged: Vec<Edit> = Vec::with_capacity(edits.len());
    for edit in edits {
        match merged.last_mut() {
            Some(last) if edit.span.start < last.span.end => {
                last.span.end = last.span.end.max(edit.span.end);
            }
            _ => merged.push(edit),
        }
    }
    let mut out = Vec::with_capacity(body.len());
    let mut findings = Vec::with_capacity(merged.len());
    let mut at = 0;
    for edit in &merged {
        out.extend_from_slice(&body[at..edit.span.start]);
        let placeholder = placeholder(edit.detector);
        if edit.quote {
            out.push(b'"');
        }
        out.extend_from_slice(placeholder.as_bytes());
        if edit.quote {
            out.push(b'"');
        }
        at = edit.span.end;
        findings.push(Finding {
            detector: Arc::from(edit.detector),
            location: format!("body, byte {}: redacted", edit.span.start),
        });
    }
    out.extend_from_slice(&body[at..]);
    Some(Redacted {
        body: out,
        findings,
    })
}

/// One replacement: the bytes it replaces, and whether its placeholder is written as a JSON
/// string (the match was outside any string of a JSON body).
struct Edit {
    detector: &'static str,
    span: Range<usize>,
    quote: bool,
}

/// How far the escape walk of a string has gone: the string (its index) and a position in it
/// that starts no escape sequence's middle, at or before the last match's start.
#[derive(Default)]
struct Walked {
    string: usize,
    at: usize,
}

impl Edit {
    /// The replacement of `detector`'s match at `span`; `strings`: the content ranges of a
    /// JSON body's strings, `None` when the body is not JSON; `walked`: where the walk of the
    /// previous match (one starting no later) stopped.
    fn of(
        body: &[u8],
        strings: Option<&[Range<usize>]>,
        detector: &'static str,
        span: Range<usize>,
        walked: &mut Walked,
    ) -> Edit {
        let Some(strings) = strings else {
            return Edit {
                detector,
                span,
                quote: false,
            };
        };
        let inside = strings.partition_point(|s| s.end < span.start);
        match strings.get(inside) {
            Some(string) if string.start <= span.start => {
                let from = if walked.string == inside && walked.at >= string.start {
                    walked.at
                } else {
                    string.start
                };
                let (span, at) =
                    whole_escapes(body, string, from, span.start..span.end.min(string.end));
                *walked = Walked { string: inside, at };
                Edit {
                    detector,
                    span,
                    quote: false,
                }
            }
            // Outside every string: a value of its own (a number); never across a string.
            next => Edit {
                detector,
                span: span.start..span.end.min(next.map_or(span.end, |s| s.start - 1)),
                quote: true,
            },
        }
    }
}

/// `span` within `string` (a JSON string's content range in `body`), widened so that it
/// neither starts nor ends inside an escape sequence (`\n`, `\"`, `\u00e9`); the escapes are
/// walked from `from` (in no escape's middle, at or before `span.start`). Also where a walk
/// for a later match may start: the last position walked at or before `span.start`.
fn whole_escapes(
    body: &[u8],
    string: &Range<usize>,
    from: usize,
    span: Range<usize>,
) -> (Range<usize>, usize) {
    let (mut start, mut end) = (span.start, span.end);
    let mut i = from;
    let mut resume = from;
    while i < string.end && i < end {
        if i <= span.start {
            resume = i;
        }
        if body[i] != b'\\' {
            i += 1;
            continue;
        }
        let length = if body.get(i + 1) == Some(&b'u') { 6 } else { 2 };
        let escape = i..(i + length).min(string.end);
        if escape.start < start && start < escape.end {
            start = escape.start;
        }
        if escape.start < end && end < escape.end {
            end = escape.end;
        }
        i = escape.end;
    }
    (start..end, resume)
}

/// The content ranges (between the quotes) of the strings of a JSON body, in order; `None`
/// when the body does not start as JSON (an object or an array).
fn json_strings(body: &[u8]) -> Option<Vec<Range<usize>>> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace())?;
    if !matches!(first, b'{' | b'[') {
        return None;
    }
    let mut strings = Vec::new();
    let mut i = 0;
    while i < body.len() {
        if body[i] != b'"' {
            i += 1;
            continue;
        }
        let start = i + 1;
        let mut j = start;
        while j < body.len() && body[j] != b'"' {
            j += if body[j] == b'\\' { 2 } else { 1 };
        }
        let end = j.min(body.len());
        strings.push(start..end);
        i = end + 1;
    }
    Some(strings)
}

#[cfg(test)]
mod tests {
    use super::*;

    const AWS: &str = "AKIAIOSFODNN7EXAMPLE";

    fn redacted(body: &str, wanted: &[&str]) -> Option<(String, Vec<String>)> {
        let wanted = |d: &str| wanted.contains(&d);
        redact(body.as_bytes(), &InspectConfig::default(), &wanted).map(|r| {
            (
                String::from_utf8(r.body).expect("utf-8"),
                r.findings
                    .iter()
                    .map(|f| format!("{} at {}", f.detector, f.location))
                    .collect(),
            )
        })
    }

    #[test]
    fn recorded_content_masks_credentials_and_keeps_personal_data() {
        let config = InspectConfig::default();
        let body = br#"{"note":"key AKIAIOSFODNN7EXAMPLE mail ops@corp.io"}"#;
        let masked = String::from_utf8(credentials_masked(body, &config).unwrap()).unwrap();
        assert!(masked.contains("[REDACTED:aws_access_key]"), "{masked}");
        assert!(!masked.contains("AKIA"), "{masked}");
        assert!(masked.contains("ops@corp.io"), "{masked}");
        assert_eq!(credentials_masked(b"mail ops@corp.io", &config), None);
    }

    #[test]
    fn matches_inside_json_strings_become_placeholders_and_the_rest_stays_byte_for_byte() {
        let body = format!(
            r#"{{"model":"gpt-4o", "messages":[{{"role":"user","content":"key {AWS}, mail jane.doe@acme-corp.com\nthanks"}}]}}"#
        );
        let (out, findings) = redacted(&body, &["aws_access_key", "email"]).expect("redacted");
        assert_eq!(
            out,
            r#"{"model":"gpt-4o", "messages":[{"role":"user","content":"key [REDACTED:aws_access_key], mail [REDACTED:email]\nthanks"}]}"#
        );
        serde_json::from_str::<serde_json::Value>(&out).expect("still JSON");
        assert_eq!(
            findings,
            [
                format!(
                    "aws_access_key at body, byte {}: redacted",
                    body.find(AWS).unwrap()
                ),
                format!(
                    "email at body, byte {}: redacted",
                    body.find("jane").unwrap()
                ),
            ]
        );
        assert!(
            !findings
                .iter()
                .any(|f| f.contains(AWS) || f.contains("jane"))
        );
    }

    #[test]
    fn only_the_wanted_detectors_are_redacted_and_every_match_of_them() {
        let body = format!("a@acme-corp.com,b@acme-corp.com {AWS} {AWS}");
        let (out, _) = redacted(&body, &["email"]).expect("redacted");
        assert_eq!(
            out,
            format!("[REDACTED:email],[REDACTED:email] {AWS} {AWS}")
        );
        let (out, findings) = redacted(&body, &["aws_access_key"]).expect("redacted");
        assert_eq!(
            out,
            "a@acme-corp.com,b@acme-corp.com [REDACTED:aws_access_key] [REDACTED:aws_access_key]"
        );
        assert_eq!(findings.len(), 2);
        assert!(redacted(&body, &["iban"]).is_none());
    }

    #[test]
    fn a_private_key_block_is_redacted_whole_and_escapes_are_never_cut() {
        let body = r#"{"content":"use -----BEGIN RSA PRIVATE KEY-----\nMIIEow\u0041IBAAKCAQEA\n-----END RSA PRIVATE KEY-----\" ok"}"#;
        let (out, _) = redacted(body, &["private_key"]).expect("redacted");
        assert_eq!(out, r#"{"content":"use [REDACTED:private_key]\" ok"}"#);
        serde_json::from_str::<serde_json::Value>(&out).expect("still JSON");
        // A block that never ends is redacted to the end of its string, not beyond.
        let body = r#"{"a":"-----BEGIN PRIVATE KEY-----\nMIIEv","b":"kept"}"#;
        let (out, _) = redacted(body, &["private_key"]).expect("redacted");
        assert_eq!(out, r#"{"a":"[REDACTED:private_key]","b":"kept"}"#);
    }

    #[test]
    fn a_card_number_written_as_a_json_number_becomes_a_string() {
        let body = r#"{"card":4111111111111111,"name":"x"}"#;
        let (out, _) = redacted(body, &["payment_card"]).expect("redacted");
        assert_eq!(out, r#"{"card":"[REDACTED:payment_card]","name":"x"}"#);
    }

    #[test]
    fn escapes_a_match_touches_are_replaced_whole() {
        let string = 0..10;
        // `ab\u0041cd`: a span starting inside `\u0041` starts at its backslash.
        assert_eq!(whole_escapes(br"ab\u0041cd", &string, 0, 4..9).0, 2..9);
        assert_eq!(whole_escapes(br"ab\u0041cd", &string, 0, 0..3).0, 0..8);
        assert_eq!(whole_escapes(br#"a\"b"#, &(0..4), 0, 2..4).0, 1..4);
        // Walked on from where the previous match's walk stopped: the escape that holds the
        // match's start, not a position inside it.
        let (span, resume) = whole_escapes(br"ab\u0041cd", &string, 0, 4..9);
        assert_eq!((span, resume), (2..9, 2));
        assert_eq!(whole_escapes(br"ab\u0041cd", &string, resume, 5..6).0, 2..8);
    }

    #[test]
    fn many_matches_in_one_string_with_escapes_between_are_each_replaced() {
        let mut content = String::new();
        for i in 0..50 {
            content.push_str(&format!("line {i}\\n\\\"quoted\\\" {AWS} \\u00e9 "));
        }
        let body = format!(r#"{{"messages":[{{"content":"{content}"}}]}}"#);
        let (out, findings) = redacted(&body, &["aws_access_key"]).expect("redacted");
        assert_eq!(findings.len(), 50);
        assert!(!out.contains(AWS));
        assert_eq!(
            out,
            body.replace(AWS, "[REDACTED:aws_access_key]"),
            "only the keys changed"
        );
        serde_json::from_str::<serde_json::Value>(&out).expect("still JSON");
    }
}
