//! Input-token estimate: a fast, tokenizer-free guess of how many tokens a request sends.
//!
//! Heuristic: one token per four characters of text, the ratio OpenAI documents for English.
//! Text is every string inside the prompt-bearing fields (messages, system, input, contents),
//! except values that carry binary or opaque payloads (base64 images, audio, files, encrypted
//! reasoning, signatures), whose length says nothing about tokens. A bare integer in a prompt
//! field (a pre-tokenized prompt) counts as one token. Tool definitions count as the raw JSON
//! length of their name, description and schema. The estimate is for policy thresholds and
//! budgets, not billing: the response's reported usage is the authoritative figure.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
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

/// Keys whose values are binary or opaque payloads and are not counted as text.
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

/// The number of text characters in any JSON value, counted while it is parsed (no tree built).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TextChars(pub u64);

impl<'de> Deserialize<'de> for TextChars {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(CountVisitor).map(TextChars)
    }
}

/// Visits a JSON value and returns its text character count.
struct CountVisitor;

impl<'de> Visitor<'de> for CountVisitor {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        Ok(v.chars().count() as u64)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<u64, E> {
        Ok(0)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<u64, E> {
        Ok(CHARS_PER_TOKEN)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<u64, E> {
        Ok(CHARS_PER_TOKEN)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<u64, E> {
        Ok(0)
    }

    fn visit_unit<E: de::Error>(self) -> Result<u64, E> {
        Ok(0)
    }

    fn visit_none<E: de::Error>(self) -> Result<u64, E> {
        Ok(0)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<u64, D::Error> {
        d.deserialize_any(CountVisitor)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<u64, A::Error> {
        let mut total = 0u64;
        while let Some(TextChars(n)) = seq.next_element()? {
            total = total.saturating_add(n);
        }
        Ok(total)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<u64, A::Error> {
        let mut total = 0u64;
        while let Some(KeyKind(opaque)) = map.next_key()? {
            if opaque {
                map.next_value::<IgnoredAny>()?;
            } else {
                let TextChars(n) = map.next_value()?;
                total = total.saturating_add(n);
            }
        }
        Ok(total)
    }
}

/// An object key, classified as opaque (skipped) or text-bearing, without allocating.
struct KeyKind(bool);

impl<'de> Deserialize<'de> for KeyKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = KeyKind;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyKind, E> {
                Ok(KeyKind(is_opaque_key(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
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
    fn skips_base64_image_and_file_payloads() {
        let openai = r#"[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAAAAAAAAAAAAAA"}}]}]"#;
        assert_eq!(
            count(openai),
            "user".len() as u64 + "image_url".len() as u64
        );
        let anthropic = r#"{"type":"image","source":{"type":"base64","media_type":"image/png","data":"AAAAAAAAAAAAAAAAAAAAAAAA"}}"#;
        assert_eq!(
            count(anthropic),
            ("image".len() + "base64".len() + "image/png".len()) as u64
        );
        let gemini = r#"{"parts":[{"inlineData":{"mimeType":"image/png","data":"AAAAAAAA"}},{"text":"hi"}]}"#;
        assert_eq!(count(gemini), 2);
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
