//! One audit record as a line: `{"seq":N,"prev":"<hex>",...event fields}`, and its hash.

use serde::de::{self, Deserializer, Visitor};
use serde::ser::{self, Serializer};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

use super::event::AuditEvent;

/// SHA-256 of a record's line bytes (without the newline).
pub type Hash = [u8; 32];

/// The `prev` of the first record of a log: 32 zero bytes.
pub const GENESIS: Hash = [0; 32];

/// SHA-256 of one record line (without its newline).
pub fn hash_line(line: &[u8]) -> Hash {
    Sha256::digest(line).into()
}

/// Lower-case hex of a hash, as written in `prev` and `head.json`.
pub fn to_hex(hash: &Hash) -> String {
    let out = hex_bytes(hash);
    out.iter().map(|&b| b as char).collect()
}

fn hex_bytes(hash: &Hash) -> [u8; 64] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 64];
    for (i, byte) in hash.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(byte >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(byte & 0x0f)];
    }
    out
}

pub(super) fn from_hex(text: &str) -> Option<Hash> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

/// A hash as serialized: 64 lower-case hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HexHash(pub Hash);

impl Serialize for HexHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let out = hex_bytes(&self.0);
        let text = std::str::from_utf8(&out).map_err(ser::Error::custom)?;
        serializer.serialize_str(text)
    }
}

impl<'de> Deserialize<'de> for HexHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HexVisitor;
        impl Visitor<'_> for HexVisitor {
            type Value = HexHash;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a SHA-256 hash as 64 lower-case hex digits")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HexHash, E> {
                from_hex(v)
                    .map(HexHash)
                    .ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
            }
        }
        deserializer.deserialize_str(HexVisitor)
    }
}

/// Appends the record line for `event` (and its newline) to `buf`; returns the line's hash.
///
/// The line is the chain fields, then the event's fields in their declared order, empty ones
/// left out: `{"seq":N,"prev":"<hex>","time":...}`, exactly as serde would write the event
/// (a test holds the two together), without serde's per-field machinery: this runs for every
/// record. On error `buf` is left as it was.
pub fn encode(
    buf: &mut Vec<u8>,
    seq: u64,
    prev: &Hash,
    event: &AuditEvent,
) -> Result<Hash, serde_json::Error> {
    let start = buf.len();
    if let Err(e) = write_record(buf, seq, prev, event) {
        buf.truncate(start);
        return Err(e);
    }
    let hash = hash_line(&buf[start..]);
    buf.push(b'\n');
    Ok(hash)
}

fn write_record(
    buf: &mut Vec<u8>,
    seq: u64,
    prev: &Hash,
    e: &AuditEvent,
) -> Result<(), serde_json::Error> {
    buf.extend_from_slice(b"{\"seq\":");
    buf.extend_from_slice(itoa::Buffer::new().format(seq).as_bytes());
    buf.extend_from_slice(b",\"prev\":\"");
    buf.extend_from_slice(&hex_bytes(prev));
    buf.extend_from_slice(b"\",\"time\":\"");
    buf.extend_from_slice(&e.time.rfc3339());
    buf.extend_from_slice(b"\",\"kind\":\"");
    buf.extend_from_slice(e.kind.as_str().as_bytes());
    buf.push(b'"');
    text_field(buf, "replica", &e.replica);
    text_field(buf, "request_id", &e.request_id);
    text_field(buf, "decision_id", &e.decision_id);
    buf.extend_from_slice(b",\"principal\":{");
    let mut first = true;
    for (key, value) in [
        ("kind", &*e.principal.kind),
        ("id", &*e.principal.id),
        ("issuer", &*e.principal.issuer),
    ] {
        if !value.is_empty() {
            if !first {
                buf.push(b',');
            }
            first = false;
            key_and_string(buf, key, value);
        }
    }
    buf.push(b'}');
    text_field(buf, "action", &e.action);
    text_field(buf, "resource", &e.resource);
    text_field(buf, "route", &e.route);
    if let Some(ip) = e.source_ip {
        use std::io::Write;
        buf.extend_from_slice(b",\"source_ip\":\"");
        // An address's text needs no escaping.
        let _ = write!(buf, "{ip}");
        buf.push(b'"');
    }
    text_field(buf, "client_certificate", &e.client_certificate);
    text_field(buf, "decision", &e.decision);
    list_field(buf, "reasons", &e.reasons);
    list_field(buf, "policies", &e.policies);
    text_field(buf, "policy_version", &e.policy_version);
    if let Some(shadow) = &e.shadow {
        buf.extend_from_slice(b",\"shadow\":");
        serde_json::to_writer(&mut *buf, shadow)?;
    }
    if !e.findings.is_empty() {
        buf.extend_from_slice(b",\"findings\":");
        serde_json::to_writer(&mut *buf, &e.findings)?;
    }
    if let Some(outcome) = &e.outcome {
        buf.extend_from_slice(b",\"outcome\":");
        serde_json::to_writer(&mut *buf, outcome)?;
    }
    if let Some(content) = &e.content {
        buf.extend_from_slice(b",\"content\":");
        serde_json::to_writer(&mut *buf, content)?;
    }
    text_field(buf, "content_digest", &e.content_digest);
    text_field(buf, "action_digest", &e.action_digest);
    if let Some(facts) = &e.facts {
        buf.extend_from_slice(b",\"facts\":");
        buf.extend_from_slice(facts.get().as_bytes());
    }
    text_field(buf, "facts_omitted", &e.facts_omitted);
    text_field(buf, "overruled_by", &e.overruled_by);
    text_field(buf, "code", &e.code);
    if let Some(secret) = &e.secret {
        buf.extend_from_slice(b",\"secret\":");
        serde_json::to_writer(&mut *buf, secret)?;
    }
    if let Some(detail) = &e.detail {
        buf.extend_from_slice(b",\"detail\":");
        serde_json::to_writer(&mut *buf, detail)?;
    }
    buf.push(b'}');
    Ok(())
}

/// `,"key":"value"`, unless `value` is empty.
fn text_field(buf: &mut Vec<u8>, key: &str, value: &str) {
    if !value.is_empty() {
        buf.push(b',');
        key_and_string(buf, key, value);
    }
}

/// `,"key":["a","b"]`, unless the list is empty.
fn list_field<T: AsRef<str>>(buf: &mut Vec<u8>, key: &str, items: &[T]) {
    if items.is_empty() {
        return;
    }
    buf.extend_from_slice(b",\"");
    buf.extend_from_slice(key.as_bytes());
    buf.extend_from_slice(b"\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        string(buf, item.as_ref());
    }
    buf.push(b']');
}

/// `"key":"value"` (keys are plain names, never escaped).
fn key_and_string(buf: &mut Vec<u8>, key: &str, value: &str) {
    buf.push(b'"');
    buf.extend_from_slice(key.as_bytes());
    buf.extend_from_slice(b"\":");
    string(buf, value);
}

/// A JSON string, escaped as serde_json escapes: `"`, `\\` and control characters only.
fn string(buf: &mut Vec<u8>, value: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    buf.push(b'"');
    let bytes = value.as_bytes();
    // Most values need no escaping; this test vectorises, the loop below does not.
    if !bytes.iter().fold(false, |seen, &b| {
        seen | (b < 0x20) | (b == b'"') | (b == b'\\')
    }) {
        buf.extend_from_slice(bytes);
        buf.push(b'"');
        return;
    }
    let mut from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => {
                buf.extend_from_slice(&bytes[from..i]);
                buf.extend_from_slice(b"\\u00");
                buf.push(HEX[usize::from(b >> 4)]);
                buf.push(HEX[usize::from(b & 0xf)]);
                from = i + 1;
                continue;
            }
            _ => continue,
        };
        buf.extend_from_slice(&bytes[from..i]);
        buf.extend_from_slice(escape);
        from = i + 1;
    }
    buf.extend_from_slice(&bytes[from..]);
    buf.push(b'"');
}

/// The chain fields of a stored record, and its top-level `kind`; every other field is
/// skipped.
#[derive(Debug, Deserialize)]
pub struct ChainFields {
    /// Sequence number, 1 for the first record of a log.
    pub seq: u64,
    /// Hash of the previous record's line.
    pub prev: HexHash,
    /// The record's own kind (never a `kind` inside its content or detail).
    #[serde(default)]
    pub kind: ChainKind,
}

/// A record's top-level `kind`, as far as walking the chain cares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChainKind {
    /// A signed checkpoint (`audit/checkpoint.rs`).
    Checkpoint,
    /// Retention removed segments (`audit/retention.rs`).
    Retention,
    /// Gateway lifecycle: `start`, `stop`, policy reload.
    System,
    /// Any other kind, or none.
    #[default]
    #[serde(other)]
    Other,
}

impl ChainFields {
    /// Parses the chain fields of one line; the error says what is wrong with it.
    pub fn parse(line: &[u8]) -> Result<ChainFields, String> {
        if line.is_empty() {
            return Err("empty line".to_owned());
        }
        if line[0] != b'{' {
            return Err("not a JSON object".to_owned());
        }
        serde_json::from_slice(line).map_err(|e| format!("{e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::EventKind;

    #[test]
    fn record_line_starts_with_chain_fields_and_flattens_the_event() {
        let mut event = AuditEvent::now(EventKind::Decision);
        event.time = crate::audit::event::Timestamp(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_793_872_800),
        );
        event.action = "llm:chat".into();
        let mut buf = Vec::new();
        let hash = encode(&mut buf, 7, &GENESIS, &event).unwrap();
        let line = std::str::from_utf8(&buf).unwrap();
        let zeros = "0".repeat(64);
        assert_eq!(
            line,
            format!(
                "{{\"seq\":7,\"prev\":\"{zeros}\",\"time\":\"2026-11-05T10:00:00.000Z\",\
                 \"kind\":\"decision\",\"principal\":{{}},\"action\":\"llm:chat\"}}\n"
            )
        );
        assert_eq!(hash, hash_line(&buf[..buf.len() - 1]));
    }

    #[test]
    fn encoded_record_parses_back_with_its_chain_fields_and_event() {
        let prev = hash_line(b"previous");
        let event = AuditEvent::now(EventKind::Outcome);
        let mut buf = b"earlier bytes stay\n".to_vec();
        encode(&mut buf, 42, &prev, &event).unwrap();
        let line = &buf[19..buf.len() - 1];
        let fields = ChainFields::parse(line).unwrap();
        assert_eq!(fields.seq, 42);
        assert_eq!(fields.prev, HexHash(prev));
        let back: AuditEvent = serde_json::from_slice(line).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn kind_is_the_top_level_one_never_one_inside_content_or_detail() {
        let zeros = "0".repeat(64);
        let line = |rest: &str| format!("{{\"seq\":3,\"prev\":\"{zeros}\",{rest}}}");
        let kind = |rest: &str| ChainFields::parse(line(rest).as_bytes()).unwrap().kind;
        assert_eq!(
            kind(
                r#""kind":"decision","principal":{"kind":"checkpoint"},"content":{"kind":"checkpoint"},"detail":{"kind":"retention"}"#
            ),
            ChainKind::Other
        );
        assert_eq!(
            kind(r#""kind":"checkpoint","principal":{}"#),
            ChainKind::Checkpoint
        );
        assert_eq!(kind(r#""kind":"retention""#), ChainKind::Retention);
        assert_eq!(kind(r#""kind":"system""#), ChainKind::System);
        assert_eq!(kind(r#""kind":"tool_change""#), ChainKind::Other);
        assert_eq!(kind(r#""time":"x""#), ChainKind::Other);
    }

    #[test]
    fn rejects_prev_that_is_not_64_lower_case_hex_digits() {
        let upper = format!("{{\"seq\":1,\"prev\":\"{}\"}}", "A".repeat(64));
        assert!(ChainFields::parse(upper.as_bytes()).is_err());
        let short = format!("{{\"seq\":1,\"prev\":\"{}\"}}", "a".repeat(63));
        assert!(ChainFields::parse(short.as_bytes()).is_err());
        assert!(ChainFields::parse(b"[1,\"00\"]").is_err());
        assert!(ChainFields::parse(b"{\"prev\":\"00\"}").is_err());
    }

    #[test]
    fn hex_round_trips() {
        let hash = hash_line(b"x");
        assert_eq!(from_hex(&to_hex(&hash)), Some(hash));
    }

    #[test]
    fn hand_encoding_writes_what_serde_writes() {
        use crate::audit::event::{AuditOutcome, AuditPrincipal, EventKind, Timestamp};
        let mut full = AuditEvent::now(EventKind::Outcome);
        full.time =
            Timestamp(std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_793_872_800_042));
        full.request_id = "0193a1b2c3d47e5f8a9b0c1d2e3f4a5b".into();
        full.decision_id = "0193a1b2c3d47e5f8a9b0c1d2e3f4a5c".into();
        full.principal = AuditPrincipal {
            kind: "agent".into(),
            id: "bot \"q\" \\ \u{7} \n\t\r\u{8}\u{c} é ☃ \u{1f}".into(),
            issuer: "https://idp.example.com/</script>".into(),
        };
        full.action = "llm:chat".into();
        full.resource = "Model::\"openai/gpt-4o\"".into();
        full.route = "openai".into();
        full.source_ip = Some("2001:db8::1".parse().unwrap());
        full.client_certificate = "spiffe://fleet.example/agent/7".into();
        full.findings = vec![crate::audit::event::AuditFinding {
            detector: "lookalike_identifier".into(),
            location: "model \"x\"".into(),
        }];
        full.decision = "deny".into();
        full.reasons = vec!["too \"big\"".into(), String::new()];
        full.policies = vec!["p1".into(), "p\u{0}2".into()];
        full.policy_version = "sha256:abcd".into();
        full.shadow = Some(Box::new(crate::audit::event::AuditShadow {
            decision: "deny".into(),
            policy: "p\"3".into(),
            policies: vec!["p\"3".into()],
            version: "sha256:ef".into(),
        }));
        full.outcome = Some(AuditOutcome {
            status: 502,
            latency_ms: 12.345678,
            upstream_ms: Some(0.1),
            input_tokens: Some(17),
            output_tokens: None,
            usage_estimated: true,
            response_model: Some("gpt-4o-2024-08-06".into()),
            error: Some("cut \"short\"".into()),
            is_error: Some(true),
            bytes_up: Some(1024),
            bytes_down: None,
            answer: Some(crate::audit::event::AuditAnswer {
                decision: "deny".into(),
                policies: vec!["p\"4".into()],
                reasons: vec!["injected \"text\"".into()],
                shadow: Some(crate::audit::event::AuditShadow {
                    decision: "deny".into(),
                    policy: "p\"5".into(),
                    policies: vec!["p\"5".into()],
                    version: "sha256:ef".into(),
                }),
            }),
            reserved: Some(crate::audit::event::AuditReserved {
                input_tokens: 8201,
                output_tokens: 128_000,
                usd: 1.300_502_5,
            }),
        });
        full.content = Some(serde_json::json!({"messages": [{"content": "hi\u{1}"}]}));
        full.content_digest = "sha256:00ff".into();
        full.action_digest = "sha256:ff00".into();
        full.facts = Some(
            crate::audit::event::RawJson::of(
                &serde_json::json!({"action": "llm:chat", "context": {}}),
            )
            .unwrap(),
        );
        full.facts_omitted = "too large".into();
        full.overruled_by = "quarantine".into();
        full.code = "rate_limited".into();
        full.secret = Some(crate::audit::event::AuditSecret {
            path: "database/creds/ro".into(),
            version: None,
            lease_id: Some("database/creds/ro/abc".into()),
        });
        full.detail = Some(serde_json::json!({"event": "start", "n": 1.5}));
        let mut bare = AuditEvent::now(EventKind::System);
        bare.time = full.time;
        let prev = hash_line(b"previous");
        for event in [full, bare] {
            let mut buf = Vec::new();
            let hash = encode(&mut buf, 9, &prev, &event).unwrap();
            let line = std::str::from_utf8(&buf[..buf.len() - 1]).unwrap();
            let via_serde = serde_json::to_string(&event).unwrap();
            let expected = format!(
                "{{\"seq\":9,\"prev\":\"{}\",{}",
                to_hex(&prev),
                &via_serde[1..]
            );
            assert_eq!(line, expected);
            assert_eq!(hash, hash_line(line.as_bytes()));
            let back: AuditEvent = serde_json::from_str(line).unwrap();
            assert_eq!(back, event);
        }
    }
}
