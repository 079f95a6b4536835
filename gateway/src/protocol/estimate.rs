//! Input-token estimate: a fast, tokenizer-free guess of how many tokens a request sends.
//!
//! Heuristic: one token per four characters of text, the ratio OpenAI documents for English.
//! Text is every string inside the prompt-bearing fields (messages, system, input, contents).
//! Payloads under the keys that carry files and media (`data`, `file_data`, `image_url`,
//! `inlineData`, `input_audio`, encrypted reasoning, signatures) count by what they decode to:
//! a `data:` URI or base64 payload of a text type (`text/*`, JSON, XML, YAML — the type named
//! in the URI, or beside the payload as `media_type` / `mimeType`) counts its decoded bytes as
//! text; any other payload (an image, audio, a PDF, a payload of no stated type) one token per
//! [`OPAQUE_BYTES_PER_TOKEN`] decoded bytes, a bound a file's real cost stays under (an image
//! costs about a token per kilobyte) while text smuggled as a "file" still counts. A value under
//! those keys that is neither a `data:` URI nor base64 (Anthropic's plain-text document
//! source) is text. A bare integer in a prompt field (a pre-tokenized prompt) counts as one
//! token. Tool definitions count as the raw JSON length of their name, description and schema.
//! The estimate is for policy thresholds and budgets, not billing: the response's reported
//! usage is the authoritative figure.

use std::fmt;

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// Characters per estimated token.
const CHARS_PER_TOKEN: u64 = 4;

/// Estimated tokens for a count of characters (rounded up).
pub fn tokens_from_chars(chars: u64) -> u64 {
    chars.div_ceil(CHARS_PER_TOKEN)
}

/// Characters counted for one raw JSON value (a tool schema): its length as sent.
pub fn raw_chars(raw: Option<&RawValue>) -> u64 {
    raw.map_or(0, |r| r.get().len() as u64)
}

/// One tool (function) definition, as OpenAI, Anthropic and Gemini spell it; the schema is kept
/// raw (borrowed, unparsed) and only its length counts.
#[derive(Debug, Default, serde::Deserialize)]
pub struct ToolDef<'a> {
    /// Function name.
    pub name: Option<String>,
    /// Tool type (`function`, `web_search`, `bash_20250124`, ...).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    #[serde(borrow)]
    description: Option<&'a RawValue>,
    #[serde(borrow)]
    parameters: Option<&'a RawValue>,
    #[serde(borrow)]
    input_schema: Option<&'a RawValue>,
    #[serde(
        borrow,
        rename = "parametersJsonSchema",
        alias = "parameters_json_schema"
    )]
    parameters_json_schema: Option<&'a RawValue>,
    #[serde(borrow)]
    format: Option<&'a RawValue>,
}

impl ToolDef<'_> {
    /// Characters this definition adds to the prompt: its name and raw description and schema.
    pub fn chars(&self) -> u64 {
        self.name.as_ref().map_or(0, |n| n.chars().count() as u64)
            + raw_chars(self.description)
            + raw_chars(self.parameters)
            + raw_chars(self.input_schema)
            + raw_chars(self.parameters_json_schema)
            + raw_chars(self.format)
    }
}

/// Keys whose values are file or media payloads, counted by what they decode to.
fn is_opaque_key(key: &str) -> bool {
    matches!(
        key,
        "data"
            | "image_url"
            | "input_audio"
            | "file_data"
            | "inlineData"
            | "inline_data"
            | "encrypted_content"
            | "signature"
            | "thoughtSignature"
            | "thought_signature"
    )
}

/// Decoded bytes of a file or media payload counted as one token.
pub const OPAQUE_BYTES_PER_TOKEN: u64 = 32;

/// Keys naming the media type of a payload beside them (Anthropic, Gemini).
fn is_media_type_key(key: &str) -> bool {
    matches!(key, "media_type" | "mimeType" | "mime_type")
}

/// Whether a media type's payload is text, counted as such once decoded.
pub(crate) fn is_text_type(media_type: &str) -> bool {
    let essence = media_type.split(';').next().unwrap_or("").trim();
    let lower = essence.to_ascii_lowercase();
    lower.starts_with("text/")
        || lower.ends_with("+json")
        || lower.ends_with("+xml")
        || matches!(
            lower.as_str(),
            "application/json"
                | "application/xml"
                | "application/yaml"
                | "application/x-yaml"
                | "application/javascript"
                | "application/x-ndjson"
                | "application/jsonl"
        )
}

/// Characters counted for `bytes` decoded bytes of a payload that is not text.
fn opaque_chars(bytes: u64) -> u64 {
    bytes.saturating_mul(CHARS_PER_TOKEN) / OPAQUE_BYTES_PER_TOKEN
}

/// Bytes that base64 text of `len` characters decodes to (padding and line breaks included:
/// an upper bound).
fn base64_bytes(len: usize) -> u64 {
    (len as u64).saturating_mul(3) / 4
}

/// Whether `v` is base64 (standard or URL-safe alphabet, padding, line breaks).
fn is_base64(v: &str) -> bool {
    !v.is_empty()
        && v.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(b, b'+' | b'/' | b'-' | b'_' | b'=' | b'\r' | b'\n')
        })
}

/// What a value counts: characters of text, and decoded bytes of payloads whose type is not
/// known yet (resolved by a media type beside them, else counted as opaque).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Count {
    chars: u64,
    untyped: u64,
}

impl Count {
    fn chars(chars: u64) -> Count {
        Count { chars, untyped: 0 }
    }

    fn absorb(&mut self, other: Count) {
        self.chars = self.chars.saturating_add(other.chars);
        self.untyped = self.untyped.saturating_add(other.untyped);
    }

    /// Payloads of no known type resolved: as text when `text`, else as opaque.
    fn resolved(self, text: bool) -> Count {
        let untyped = if text {
            self.untyped
        } else {
            opaque_chars(self.untyped)
        };
        Count::chars(self.chars.saturating_add(untyped))
    }
}

/// What a string under a payload key counts.
fn payload(v: &str) -> Count {
    if let Some(uri) = v.strip_prefix("data:")
        && let Some((header, data)) = uri.split_once(',')
    {
        let (media_type, base64) = match header.strip_suffix(";base64") {
            Some(media_type) => (media_type, true),
            None => (header, false),
        };
        let bytes = if base64 {
            base64_bytes(data.len())
        } else {
            data.len() as u64
        };
        return if is_text_type(media_type) {
            Count::chars(bytes)
        } else {
            Count::chars(opaque_chars(bytes))
        };
    }
    if is_base64(v) {
        return Count {
            chars: 0,
            untyped: base64_bytes(v.len()),
        };
    }
    Count::chars(v.chars().count() as u64)
}

/// The number of text characters in any JSON value, counted while it is parsed (no tree built).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TextChars(pub u64);

impl<'de> Deserialize<'de> for TextChars {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let count = deserializer.deserialize_any(CountVisitor { payload: false })?;
        Ok(TextChars(count.resolved(false).chars))
    }
}

/// Visits a JSON value and returns its count; `payload`: the value is under a payload key.
#[derive(Clone, Copy)]
struct CountVisitor {
    payload: bool,
}

impl<'de> DeserializeSeed<'de> for CountVisitor {
    type Value = Count;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Count, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for CountVisitor {
    type Value = Count;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Count, E> {
        if self.payload {
            Ok(payload(v))
        } else {
            Ok(Count::chars(v.chars().count() as u64))
        }
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Count, E> {
        Ok(Count::default())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Count, E> {
        Ok(Count::chars(CHARS_PER_TOKEN))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Count, E> {
        Ok(Count::chars(CHARS_PER_TOKEN))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Count, E> {
        Ok(Count::default())
    }

    fn visit_unit<E: de::Error>(self) -> Result<Count, E> {
        Ok(Count::default())
    }

    fn visit_none<E: de::Error>(self) -> Result<Count, E> {
        Ok(Count::default())
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Count, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Count, A::Error> {
        let mut total = Count::default();
        while let Some(count) = seq.next_element_seed(self)? {
            total.absorb(count);
        }
        Ok(total)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Count, A::Error> {
        let mut total = Count::default();
        // The media type named beside a payload, if any: whether it is text.
        let mut text_type = None;
        while let Some(KeyKind(kind)) = map.next_key()? {
            match kind {
                Key::MediaType => {
                    let MediaType(media_type) = map.next_value()?;
                    if let Some(media_type) = media_type {
                        total.absorb(Count::chars(media_type.chars().count() as u64));
                        text_type = Some(is_text_type(&media_type));
                    }
                }
                Key::Payload => total.absorb(map.next_value_seed(CountVisitor { payload: true })?),
                Key::Text => total.absorb(map.next_value_seed(self)?),
            }
        }
        // A payload's type is told beside it, or never.
        Ok(match text_type {
            Some(text) => total.resolved(text),
            None => total,
        })
    }
}

/// What an object key says of its value.
enum Key {
    /// A file or media payload.
    Payload,
    /// The media type of a payload beside it.
    MediaType,
    /// Anything else: text.
    Text,
}

/// An object key, classified without allocating.
struct KeyKind(Key);

impl<'de> Deserialize<'de> for KeyKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = KeyKind;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyKind, E> {
                Ok(KeyKind(if is_opaque_key(v) {
                    Key::Payload
                } else if is_media_type_key(v) {
                    Key::MediaType
                } else {
                    Key::Text
                }))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// A media type named beside a payload (`None` when it is not a string).
struct MediaType(Option<String>);

impl<'de> Deserialize<'de> for MediaType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::String(s) => Ok(MediaType(Some(s))),
            _ => Ok(MediaType(None)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(json: &str) -> u64 {
        serde_json::from_str::<TextChars>(json).map_or(u64::MAX, |c| c.0)
    }

    #[test]
    fn counts_characters_not_bytes_of_strings() {
        assert_eq!(count(r#""héllo""#), 5);
        assert_eq!(count(r#""a\nb""#), 3);
    }

    #[test]
    fn sums_nested_message_text() {
        let messages = r#"[{"role":"user","content":[{"type":"text","text":"abcd"}]}]"#;
        // "user" + "text" + "abcd"
        assert_eq!(count(messages), 12);
    }

    #[test]
    fn counts_media_payloads_by_a_bound_on_their_decoded_size() {
        let image = "A".repeat(4096); // 3072 bytes: 96 tokens, 384 characters
        let openai = format!(
            r#"[{{"role":"user","content":[{{"type":"image_url","image_url":{{"url":"data:image/png;base64,{image}"}}}}]}}]"#
        );
        assert_eq!(
            count(&openai),
            ("user".len() + "image_url".len() + 384) as u64
        );
        let anthropic = format!(
            r#"{{"type":"image","source":{{"type":"base64","media_type":"image/png","data":"{image}"}}}}"#
        );
        assert_eq!(
            count(&anthropic),
            ("image".len() + "base64".len() + "image/png".len() + 384) as u64
        );
        let gemini = format!(
            r#"{{"parts":[{{"inlineData":{{"mimeType":"image/png","data":"{image}"}}}},{{"text":"hi"}}]}}"#
        );
        assert_eq!(count(&gemini), ("image/png".len() + 384 + 2) as u64);
        // A payload of no stated type is bounded as opaque.
        assert_eq!(count(&format!(r#"{{"signature":"{image}"}}"#)), 384);
    }

    #[test]
    fn text_sent_as_a_file_counts_as_the_text_it_decodes_to() {
        let text = "a".repeat(3000);
        let b64 = "QUFB".repeat(1000); // "AAA" x 1000: 3000 bytes
        for body in [
            format!(
                r#"[{{"role":"user","content":[{{"type":"file","file":{{"file_data":"data:text/plain;base64,{b64}"}}}}]}}]"#
            ),
            format!(
                r#"[{{"role":"user","content":[{{"type":"image_url","image_url":{{"url":"data:text/plain;base64,{b64}"}}}}]}}]"#
            ),
            format!(r#"{{"inlineData":{{"data":"{b64}","mimeType":"text/plain"}}}}"#),
            format!(
                r#"{{"source":{{"type":"base64","media_type":"application/json","data":"{b64}"}}}}"#
            ),
            // Anthropic's plain-text document source: the text itself.
            format!(r#"{{"source":{{"type":"text","media_type":"text/plain","data":"{text} "}}}}"#),
            format!(r#"{{"data":"data:text/plain,{text}"}}"#),
        ] {
            let n = count(&body);
            assert!((3000..3200).contains(&n), "{n}: {}", &body[..80]);
        }
    }

    #[test]
    fn pre_tokenized_prompts_count_one_token_per_integer() {
        assert_eq!(tokens_from_chars(count("[1,2,3]")), 3);
    }

    #[test]
    fn rounds_up_to_whole_tokens() {
        assert_eq!(tokens_from_chars(0), 0);
        assert_eq!(tokens_from_chars(1), 1);
        assert_eq!(tokens_from_chars(8), 2);
        assert_eq!(tokens_from_chars(9), 3);
    }
}
