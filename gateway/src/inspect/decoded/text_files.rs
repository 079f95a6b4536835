//! Files of a text type sent as bare base64 in a JSON body, beside what names their type: an
//! object holding `data` or `file_data` (base64) and a media type (`media_type`, `mimeType`,
//! `mime_type`: Anthropic's base64 `document` source, Gemini's `inlineData`) or, with none, a
//! `filename` whose extension is a text type's (OpenAI's `file.file_data` and Responses'
//! `input_file.file_data`, which the SDKs describe as "the base64 encoded file data" beside
//! its `filename`). The model reads such a file as text, so its decoded content is read too.
//! A `data:` URI in those keys is decoded where every `data:` URI is; text that is not base64
//! (Anthropic's `"type": "text"` source) is read as it is.

use std::borrow::Cow;
use std::fmt;

use memchr::memmem;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::protocol::estimate::is_text_type;

/// The keys whose string is a file's content, in base64.
const PAYLOAD_KEYS: [&str; 2] = ["data", "file_data"];
/// The keys naming the media type of a payload beside them.
const MEDIA_TYPE_KEYS: [&str; 3] = ["media_type", "mimeType", "mime_type"];
/// The key naming a payload's file.
const FILENAME: &str = "filename";
/// The key of a part's or a source's type (`"text"`: its `data` is plain text).
const TYPE: &str = "type";

/// File name extensions of text files (those OpenAI's file inputs take as text: plain text,
/// markup, data and source code).
const TEXT_EXTENSIONS: [&str; 44] = [
    "txt", "text", "md", "markdown", "rst", "csv", "tsv", "json", "jsonl", "ndjson", "xml", "yaml",
    "yml", "toml", "ini", "cfg", "conf", "env", "log", "html", "htm", "css", "tex", "sql", "sh",
    "bash", "py", "js", "mjs", "ts", "tsx", "jsx", "java", "c", "h", "cpp", "cs", "go", "rs", "rb",
    "php", "kt", "swift", "pem",
];

/// Each base64 file of a text type in the JSON `body`, decoded, with where its string starts
/// in the body (its opening quote; the nearest place found when the string has escapes). What
/// is found before a part of the body that is not JSON is kept.
pub(super) fn text_files(body: &[u8]) -> Vec<(usize, Vec<u8>)> {
    let mut out = Vec::new();
    let json = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let mut de = serde_json::Deserializer::from_slice(json);
    let _ = Files {
        body,
        want: false,
        out: &mut out,
    }
    .deserialize(&mut de);
    out
}

/// Whether a file named `name` is text by its extension.
fn is_text_file_name(name: &str) -> bool {
    name.rsplit_once('.').is_some_and(|(_, ext)| {
        TEXT_EXTENSIONS
            .iter()
            .any(|known| known.eq_ignore_ascii_case(ext))
    })
}

/// Visits a JSON value, collecting the text files its objects hold; returns the value when it
/// is a string and `want` asks for it.
struct Files<'o, 'de> {
    body: &'de [u8],
    want: bool,
    out: &'o mut Vec<(usize, Vec<u8>)>,
}

impl<'de> Files<'_, 'de> {
    fn child(&mut self, want: bool) -> Files<'_, 'de> {
        Files {
            body: self.body,
            want,
            out: self.out,
        }
    }

    /// Where the string `text` (read from the body) starts in it: its opening quote when it is
    /// the body's own bytes.
    fn origin(&self, text: &str) -> usize {
        let at = (text.as_ptr() as usize).wrapping_sub(self.body.as_ptr() as usize);
        if at
            .checked_add(text.len())
            .is_some_and(|end| end <= self.body.len())
        {
            return at.saturating_sub(1);
        }
        // Escaped (`\/`): its first run without a slash, found in the body.
        let head: &str = text.split('/').find(|p| p.len() >= 8).unwrap_or("");
        let head = &head[..head.len().min(32)];
        (!head.is_empty())
            .then(|| memmem::find(self.body, head.as_bytes()))
            .flatten()
            .unwrap_or(0)
    }
}

impl<'de> DeserializeSeed<'de> for Files<'_, 'de> {
    type Value = Option<Cow<'de, str>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Files<'_, 'de> {
    type Value = Option<Cow<'de, str>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(self.want.then_some(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.want.then(|| Cow::Owned(v.to_owned())))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element_seed(self.child(false))?.is_some() {}
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut payloads = Vec::new();
        let mut media_type = None;
        let mut filename = None;
        let mut plain = false;
        while let Some(Key(key)) = map.next_key()? {
            let key: &str = &key;
            let payload = PAYLOAD_KEYS.contains(&key);
            let media = MEDIA_TYPE_KEYS.contains(&key);
            let want = payload || media || key == FILENAME || key == TYPE;
            let Some(text) = map.next_value_seed(self.child(want))? else {
                continue;
            };
            if payload {
                payloads.push(text);
            } else if media {
                media_type = Some(text);
            } else if key == FILENAME {
                filename = Some(text);
            } else {
                plain = text == "text";
            }
        }
        let text = match (&media_type, &filename) {
            (Some(media_type), _) => is_text_type(media_type),
            (None, Some(name)) => is_text_file_name(name),
            (None, None) => false,
        };
        if text && !plain {
            for payload in payloads {
                if let Some(content) = super::forgiving_base64::whole(payload.as_bytes()) {
                    let at = self.origin(&payload);
                    self.out.push((at, content));
                }
            }
        }
        Ok(None)
    }
}

/// An object key, borrowed from the body unless it has escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}
