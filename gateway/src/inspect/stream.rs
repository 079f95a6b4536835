//! Inspection of a body that is too large to hold: the content detectors run over it chunk by
//! chunk, each chunk scanned after the last [`CARRY`] bytes of what came before, so a match
//! that straddles two chunks is seen whole while no more than a chunk and the carried window
//! is ever held.
//!
//! No byte of a match leaves before the whole match is known: the last [`HOLD`] bytes of what
//! has come are held back ([`StreamScan::release`] gives what may leave). A match may run on
//! past what has come, so one that ends within the last [`UNSETTLED`] bytes is judged once more
//! (or the end) has come; since every match that starts before the held bytes and is at most
//! [`CAP`] bytes long ends before them, each byte released has been judged with every match
//! it belongs to. A match that starts before the held bytes and still reaches the end of what
//! has come is longer than [`CAP`]: hitting the cap is a match of its own (judged at once, on
//! what it has shown), and it cannot be redacted in flight ([`Unredactable`]).
//!
//! Redaction in the stream: once policy names detectors to redact ([`StreamScan::redact`]),
//! their matches in what leaves are replaced with the placeholder `redact.rs` writes (a JSON
//! string when the match is outside any string of a JSON body); a release never ends inside
//! a match it redacts.

use std::ops::Range;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::config::InspectConfig;
use super::redact::placeholder;
use super::{PEM_BEGIN, PRIVATE_KEY_DETECTOR, private_key, scan};
use crate::action::Finding;

/// Bytes of what came before that each chunk is scanned after: longer than the held bytes and
/// the context the detectors' patterns read before a match (a secret's name before its value).
pub const CARRY: usize = 4096;
/// Bytes at the end of what has come that never leave before more (or the end) has come.
pub const HOLD: usize = 2048;
/// A match that ends this close to the end of what has come may go on: judged later.
pub const UNSETTLED: usize = 512;
/// The longest match judged whole in a stream; a longer one is judged on its first bytes.
pub const CAP: usize = HOLD - UNSETTLED;

/// `warden_inspect_stream_held_bytes`: the most bytes one streamed request body held at once
/// (its first bytes, then the carried window and a chunk), observed when it ends: bounded by
/// `inspect.stream_above` and the chunk size, whatever the body's length.
pub static HELD: std::sync::LazyLock<prometheus::Histogram> = std::sync::LazyLock::new(|| {
    prometheus::Histogram::with_opts(
        prometheus::HistogramOpts::new(
            "warden_inspect_stream_held_bytes",
            "Most bytes one request body inspected as it streamed held at once",
        )
        .buckets(prometheus::exponential_buckets(16.0 * 1024.0, 2.0, 12).expect("static buckets")),
    )
    .expect("static metric definition")
});

/// A match that cannot be redacted as the body streams by, so the body must not go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a match of {detector} at body byte {at} cannot be redacted in a streamed body ({why}); the request is denied instead"
)]
pub struct Unredactable {
    /// The detector.
    pub detector: &'static str,
    /// Where its match starts in the body.
    pub at: u64,
    /// Why.
    pub why: &'static str,
}

/// What may leave of a streamed body, and what was redacted in it.
#[derive(Debug, Default)]
pub struct Released {
    /// The bytes, redacted.
    pub bytes: Bytes,
    /// Each match replaced: its detector and where it started in the body (never its value).
    pub redacted: Vec<Finding>,
}

/// The detectors over one body, as it streams by.
pub struct StreamScan {
    config: Arc<InspectConfig>,
    /// The carried window (released bytes, for context) and the bytes not released yet.
    window: Vec<u8>,
    /// Where `window` starts in the body.
    start: u64,
    /// How much of the body has been released.
    released: u64,
    /// Whether the end of the body has come.
    ended: bool,
    /// Detectors already reported (each once, at its first match, as whole-body inspection).
    reported: Vec<&'static str>,
    /// Detectors whose matches are redacted in what leaves.
    redacting: Vec<&'static str>,
    /// Every match in the window at the last feed, by where it starts.
    matches: Vec<(&'static str, Range<usize>)>,
    /// Whether the body is JSON, and where a JSON body's released bytes end.
    json: Json,
}

impl StreamScan {
    /// A scan with the detectors `config` enables.
    pub fn new(config: Arc<InspectConfig>) -> StreamScan {
        StreamScan {
            config,
            window: Vec::with_capacity(2 * CARRY),
            start: 0,
            released: 0,
            ended: false,
            reported: Vec::new(),
            redacting: Vec::new(),
            matches: Vec::new(),
            json: Json::Unknown,
        }
    }

    /// What the detectors find in `chunk`, the next bytes of the body (`last`: the body ends
    /// with it), that they had not reported yet: each detector once, located by its byte in
    /// the whole body. Call [`StreamScan::release`] after each feed (once policy has judged
    /// the findings) for what may leave.
    pub fn feed(&mut self, chunk: &[u8], last: bool) -> Vec<Finding> {
        self.window.extend_from_slice(chunk);
        self.ended = last;
        if self.json == Json::Unknown
            && let Some(&first) = self.window.iter().find(|b| !b.is_ascii_whitespace())
        {
            self.json = if matches!(first, b'{' | b'[') {
                Json::At(JsonState::default())
            } else {
                Json::Not
            };
        }
        let len = self.window.len();
        let (settled, held) = self.bounds();
        let config = &*self.config;
        self.matches = scan::all_spans(&self.window, config, &|_| true);
        if config.enabled(PRIVATE_KEY_DETECTOR)
            && let Some(at) = private_key(&self.window)
        {
            // Its opening line: what the detector needs to see whole.
            let line = (at + PEM_BEGIN.len() + super::LABEL_MAX + 5).min(len);
            self.matches.push((PRIVATE_KEY_DETECTOR, at..line));
        }
        self.matches.sort_by_key(|(_, span)| span.start);
        let mut found = Vec::new();
        for (detector, span) in &self.matches {
            // Settled, or longer than the cap (a match of its own).
            let judged = span.end <= settled || span.start < held;
            if judged && !self.reported.contains(detector) {
                self.reported.push(detector);
                found.push(Finding {
                    detector: Arc::from(*detector),
                    location: format!("body, byte {}", self.start + span.start as u64),
                });
            }
        }
        found
    }

    /// From now on, matches of `detectors` are redacted in what leaves.
    pub fn redact<'a>(&mut self, detectors: impl IntoIterator<Item = &'a str>) {
        for name in detectors {
            if let Some(known) = super::DETECTOR_NAMES.iter().find(|d| **d == name)
                && !self.redacting.contains(known)
            {
                self.redacting.push(known);
            }
        }
    }

    /// What may leave after the last feed: every byte before the held ones (all of them once
    /// the body has ended), with the matches of the redacted detectors replaced, and never
    /// ending inside one of those matches.
    pub fn release(&mut self) -> Result<Released, Unredactable> {
        let len = self.window.len();
        let from = usize::try_from(self.released - self.start).unwrap_or(len);
        let (settled, held) = self.bounds();
        let mut upto = held.max(from);
        let mut edits: Vec<(&'static str, Range<usize>)> = Vec::new();
        for (detector, span) in &self.matches {
            if span.start >= upto {
                break;
            }
            if span.end <= from || !self.redacting.contains(detector) {
                continue;
            }
            let at = self.start + span.start as u64;
            if *detector == PRIVATE_KEY_DETECTOR {
                return Err(Unredactable {
                    detector,
                    at,
                    why: "a private key block may be longer than what a stream holds",
                });
            }
            if span.end > settled {
                return Err(Unredactable {
                    detector,
                    at,
                    why: "the match is longer than the bytes a stream holds back",
                });
            }
            let span = span.start.max(from)..span.end;
            upto = upto.max(span.end);
            match edits.last_mut() {
                Some((_, last)) if span.start < last.end => last.end = last.end.max(span.end),
                _ => edits.push((detector, span)),
            }
        }
        let mut out = BytesMut::with_capacity(upto - from);
        let mut redacted = Vec::with_capacity(edits.len());
        let mut at = from;
        for (detector, span) in edits {
            out.extend_from_slice(&self.window[at..span.start]);
            let quote = self.json.advance(&self.window[at..span.start]);
            self.json.advance(&self.window[span.clone()]);
            let placeholder = placeholder(detector);
            if quote {
                out.extend_from_slice(b"\"");
            }
            out.extend_from_slice(placeholder.as_bytes());
            if quote {
                out.extend_from_slice(b"\"");
            }
            redacted.push(Finding {
                detector: Arc::from(detector),
                location: format!("body, byte {}: redacted", self.start + span.start as u64),
            });
            at = span.end;
        }
        out.extend_from_slice(&self.window[at..upto]);
        self.json.advance(&self.window[at..upto]);
        self.released = self.start + upto as u64;
        self.matches.clear();
        // Keep the bytes not released and, before them, what the carried window holds.
        let keep = CARRY.max(len - upto);
        if len > keep {
            let drop = len - keep;
            self.window.drain(..drop);
            self.start += drop as u64;
        }
        Ok(Released {
            bytes: out.freeze(),
            redacted,
        })
    }

    /// How many bytes of what has come are not released yet: what a stream holds.
    pub fn held(&self) -> usize {
        (self.start + self.window.len() as u64 - self.released) as usize
    }

    /// The carried window and the last chunk: what a canary search of the same chunk reads.
    pub fn window(&self) -> &[u8] {
        &self.window
    }

    /// Where in the window matches are settled (those ending before are judged) and where the
    /// held bytes start.
    fn bounds(&self) -> (usize, usize) {
        let len = self.window.len();
        if self.ended {
            (len, len)
        } else {
            (len.saturating_sub(UNSETTLED), len.saturating_sub(HOLD))
        }
    }
}

/// Whether a streamed body is JSON: not known before its first byte that is not white space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Json {
    Unknown,
    Not,
    /// JSON, in this state where its released bytes end.
    At(JsonState),
}

/// Where a JSON text is, as far as strings go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct JsonState {
    in_string: bool,
    escaped: bool,
}

impl Json {
    /// Moves past `bytes`; whether a placeholder written after them must be a JSON string
    /// (the body is JSON and they end outside any string).
    fn advance(&mut self, bytes: &[u8]) -> bool {
        let Json::At(state) = self else {
            return false;
        };
        for &b in bytes {
            if state.escaped {
                state.escaped = false;
            } else if state.in_string {
                match b {
                    b'\\' => state.escaped = true,
                    b'"' => state.in_string = false,
                    _ => {}
                }
            } else if b == b'"' {
                state.in_string = true;
            }
        }
        !state.in_string
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AWS: &str = "AKIAIOSFODNN7EXAMPLE";

    /// What a stream of `body` in chunks of `chunk` bytes finds, and what leaves of it,
    /// with `redacting` redacted from the start.
    fn through(body: &[u8], chunk: usize, redacting: &[&str]) -> (Vec<String>, Vec<u8>) {
        let mut scan = StreamScan::new(Arc::new(InspectConfig::default()));
        scan.redact(redacting.iter().copied());
        let mut found = Vec::new();
        let mut out = Vec::new();
        let chunks: Vec<&[u8]> = body.chunks(chunk).collect();
        for (i, c) in chunks.iter().enumerate() {
            found.extend(scan.feed(c, i + 1 == chunks.len()));
            out.extend_from_slice(&scan.release().expect("redactable").bytes);
            assert!(
                scan.window().len() <= CARRY + chunk,
                "the window stays bounded"
            );
            assert!(scan.held() <= HOLD, "at most the held bytes wait");
        }
        let found = found
            .iter()
            .map(|f| format!("{} at {}", f.detector, f.location))
            .collect();
        (found, out)
    }

    fn streamed(body: &[u8], chunk: usize) -> Vec<String> {
        let (found, out) = through(body, chunk, &[]);
        assert_eq!(out, body, "what leaves is the body, byte for byte");
        found
    }

    #[test]
    fn a_match_across_any_chunk_boundary_is_found_once_where_it_starts() {
        let mut body = vec![b'x'; 20_000];
        body.extend_from_slice(format!(" key {AWS} and ").as_bytes());
        body.extend_from_slice(&[b'y'; 3000]);
        let at = 20_005;
        for chunk in [1, 7, 100, 1000, 4096, 8192, 20_003, 20_010, 64 * 1024] {
            assert_eq!(
                streamed(&body, chunk),
                [format!("aws_access_key at body, byte {at}")],
                "chunks of {chunk}"
            );
        }
    }

    /// A body with `secret` at byte 5000 of 9000 (JSON, the secret inside a string).
    fn body_with(secret: &str) -> (Vec<u8>, usize) {
        let before = format!(r#"{{"upload":"{}"#, "a ".repeat(2494));
        let body = format!(r#"{before}{secret} {}"}}"#, "b ".repeat(1990));
        (body.into_bytes(), before.len())
    }

    /// Streams `body` split in two at every offset: when a detector reports its finding, how
    /// much has left; the finding must come before any byte of `secret` has.
    #[test]
    fn no_byte_of_a_secret_leaves_before_it_is_found_wherever_the_body_is_split() {
        let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
        for (detector, secret) in [
            ("aws_access_key", AWS.to_owned()),
            ("jwt", jwt.to_owned()),
            ("email", "jane.doe@acme-corp.com".to_owned()),
            // Longer than what a stream holds back: judged on its first bytes.
            ("openai_key", format!("sk-proj-{}", "Ab3".repeat(700))),
        ] {
            let (body, at) = body_with(&secret);
            for split in (at - HOLD - 64..at + secret.len() + 64).step_by(3) {
                let mut scan = StreamScan::new(Arc::new(InspectConfig::default()));
                let mut left = 0;
                let mut found_after = None;
                for (part, last) in [(&body[..split], false), (&body[split..], true)] {
                    let found = scan.feed(part, last);
                    if found_after.is_none() && found.iter().any(|f| &*f.detector == detector) {
                        found_after = Some(left);
                    }
                    left += scan.release().expect("nothing redacted").bytes.len();
                }
                let found_after =
                    found_after.unwrap_or_else(|| panic!("{detector} split at {split}: missed"));
                assert!(
                    found_after <= at,
                    "{detector} split at {split}: {} bytes of it left before it was found",
                    found_after - at
                );
            }
        }
    }

    #[test]
    fn a_redacted_secret_never_leaves_wherever_the_chunks_end() {
        let (body, at) = body_with(AWS);
        let mut expected = body[..at].to_vec();
        expected.extend_from_slice(b"[REDACTED:aws_access_key]");
        expected.extend_from_slice(&body[at + AWS.len()..]);
        for split in at - HOLD - 8..at + AWS.len() + 8 {
            for chunk in [split, 1000] {
                let mut scan = StreamScan::new(Arc::new(InspectConfig::default()));
                scan.redact(["aws_access_key"]);
                let mut out = Vec::new();
                let mut redacted = Vec::new();
                let mut parts = vec![&body[..split]];
                parts.extend(body[split..].chunks(chunk));
                for (i, part) in parts.iter().enumerate() {
                    scan.feed(part, i + 1 == parts.len());
                    let released = scan.release().expect("redactable");
                    assert!(
                        !contains(&released.bytes, &AWS.as_bytes()[..4]),
                        "split at {split}, chunks of {chunk}: part of the key left"
                    );
                    out.extend_from_slice(&released.bytes);
                    redacted.extend(released.redacted);
                }
                assert_eq!(out, expected, "split at {split}, chunks of {chunk}");
                assert_eq!(redacted.len(), 1);
                assert_eq!(
                    redacted[0].location,
                    format!("body, byte {at}: redacted"),
                    "located where it started, never its value"
                );
            }
        }
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn a_match_outside_json_strings_becomes_a_string_and_text_stays_text() {
        let body = format!(
            r#"{{"card":4111111111111111,"pad":"{}"}}"#,
            "x".repeat(5000)
        );
        let (_, out) = through(body.as_bytes(), 700, &["payment_card"]);
        let out = String::from_utf8(out).expect("utf-8");
        assert!(out.starts_with(r#"{"card":"[REDACTED:payment_card]","pad":"#));
        serde_json::from_str::<serde_json::Value>(&out).expect("still JSON");
        let body = format!("card 4111111111111111 {}", "x".repeat(5000));
        let (_, out) = through(body.as_bytes(), 700, &["payment_card"]);
        assert!(out.starts_with(b"card [REDACTED:payment_card] x"));
    }

    #[test]
    fn a_match_too_long_to_hold_or_a_private_key_cannot_be_redacted_in_flight() {
        let (body, at) = body_with(&format!("sk-proj-{}", "Ab3".repeat(700)));
        let mut scan = StreamScan::new(Arc::new(InspectConfig::default()));
        scan.redact(["openai_key"]);
        let found = scan.feed(&body[..at + CAP + 600], false);
        assert_eq!(found.len(), 1, "hitting the cap is a match: {found:?}");
        let refused = scan.release().expect_err("cannot be redacted");
        assert_eq!((refused.detector, refused.at), ("openai_key", at as u64));
        let mut scan = StreamScan::new(Arc::new(InspectConfig::default()));
        scan.redact(["private_key"]);
        let mut body = b"x".repeat(3000);
        body.extend_from_slice(b"-----BEGIN RSA PRIVATE KEY-----\nMIIE");
        body.extend_from_slice(&[b'y'; 3000]);
        scan.feed(&body, false);
        assert!(scan.release().is_err());
    }

    #[test]
    fn findings_match_whole_body_inspection_and_a_truncated_look_alike_is_not_one() {
        let body = format!(
            "{}mail jane.doe@acme-corp.com\n-----BEGIN RSA PRIVATE KEY-----\nMIIE\n{}card 4111 1111 1111 1111 end",
            "a".repeat(9000),
            "b".repeat(7000)
        );
        let mut whole = crate::action::Findings::none();
        super::super::inspect(&mut whole, body.as_bytes(), None, &InspectConfig::default());
        let mut whole: Vec<String> = whole
            .0
            .iter()
            .map(|f| format!("{} at {}", f.detector, f.location))
            .collect();
        whole.sort();
        for chunk in [3, 333, 4096, 5000] {
            let mut found = streamed(body.as_bytes(), chunk);
            found.sort();
            assert_eq!(found, whole, "chunks of {chunk}");
        }
        // Digits at the end of what has come may go on: judged once more has come.
        let mut scan = StreamScan::new(Arc::new(InspectConfig::default()));
        assert!(scan.feed(b"card 4111 1111 1111 1111", false).is_empty());
        assert!(scan.release().expect("nothing redacted").bytes.is_empty());
        let found = scan.feed(b"1 end", true);
        assert!(found.is_empty(), "17 digits are no card: {found:?}");
        let mut scan = StreamScan::new(Arc::new(InspectConfig::default()));
        assert!(scan.feed(b"card 4111 1111 1111 1111", false).is_empty());
        assert_eq!(scan.feed(b" end", true).len(), 1);
    }
}
