//! JSON read so that no reader can take it otherwise: a key given twice in one object
//! (readers differ on which value wins) is refused, and so is a key that a case-insensitive
//! decoder takes for one of the keys the caller reads (Go's `encoding/json` matches
//! `"Tool_Calls"` to `tool_calls`, and folds `ſ` to `s` and the Kelvin sign to `k`). MCP
//! messages, REST connector bodies and the answers whose proposed calls Warden judges are
//! read so.

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::text::Quoted;

/// `text` as JSON, refusing a key given twice in any object and a key that differs from one
/// of `keys` only by case, except beneath the keys in `free` (their values are free-form
/// maps, the arguments of a call or a schema, which clients read exactly). Those refusals
/// are the errors whose [`classify`](serde_json::Error::classify) is `Data`; what is not JSON
/// is `Syntax` or `Eof`.
pub fn parse(text: &[u8], keys: &[&str], free: &[&str]) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(text);
    let value = Strict { keys, free }.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// The key of `keys` that `key` is not but a case-insensitive decoder would take it for.
fn folds_onto<'k>(key: &str, keys: &[&'k str]) -> Option<&'k str> {
    if keys.contains(&key) {
        return None;
    }
    keys.iter().copied().find(|known| equal_folded(key, known))
}

/// `key` equals the ASCII `known` under Unicode simple case folding (what Go's
/// `bytes.EqualFold` does): ASCII letters in either case, `ſ` (U+017F) as `s`, `K` (U+212A)
/// as `k`.
pub fn equal_folded(key: &str, known: &str) -> bool {
    let folded = key.chars().map(|c| match c {
        '\u{017F}' => 's',
        '\u{212A}' => 'k',
        c => c.to_ascii_lowercase(),
    });
    folded.eq(known.chars().map(|c| c.to_ascii_lowercase()))
}

/// Builds a [`Value`] as serde_json does, failing on a repeated or case-folded key.
#[derive(Clone, Copy)]
struct Strict<'a> {
    keys: &'a [&'a str],
    free: &'a [&'a str],
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut all = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            all.push(item);
        }
        Ok(Value::Array(all))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "the key {} appears twice in one object; send each key once",
                    Quoted::of(&key)
                )));
            }
            if let Some(known) = folds_onto(&key, self.keys) {
                return Err(de::Error::custom(format_args!(
                    "the key {} differs from `{known}` only by case",
                    Quoted::of(&key)
                )));
            }
            let value = if self.free.contains(&key.as_str()) {
                map.next_value_seed(Strict {
                    keys: &[],
                    free: &[],
                })?
            } else {
                map.next_value_seed(self)?
            };
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::error::Category;

    use super::*;

    /// What `parse` says of `text`: the value, or the category of its error.
    fn read(text: &[u8], keys: &[&str]) -> Result<Value, Category> {
        parse(text, keys, &["args"]).map_err(|e| e.classify())
    }

    const KEYS: &[&str] = &["tool_calls", "functionCall"];

    #[test]
    fn reads_json_as_serde_json_does() {
        let text = br#"{"a":[1,-2,3.5,"x",null,true,{"tool_calls":[]}],"functionCall":{}}"#;
        let expected: Value = serde_json::from_slice(text).unwrap_or(Value::Null);
        assert_eq!(read(text, KEYS), Ok(expected));
    }

    #[test]
    fn a_key_given_twice_anywhere_is_ambiguous() {
        for text in [
            &br#"{"choices":[],"choices":[]}"#[..],
            br#"{"a":{"tool_calls":[],"tool_calls":[]}}"#,
            br#"[{"x":1,"x":1}]"#,
        ] {
            assert_eq!(read(text, KEYS), Err(Category::Data));
        }
    }

    #[test]
    fn a_key_that_folds_onto_a_read_key_is_ambiguous_and_others_are_not() {
        for key in [
            "TOOL_CALLS",
            "Tool_Calls",
            "tool_call\u{17F}",
            "FUNCTIONCALL",
        ] {
            let text = serde_json::json!({ "a": { key: [] } }).to_string();
            assert_eq!(read(text.as_bytes(), KEYS), Err(Category::Data), "{key}");
        }
        // Escaped, the same: a JSON parser unescapes it before a client compares it.
        assert_eq!(
            read(br#"{"Tool\u005fCalls":[]}"#, KEYS),
            Err(Category::Data)
        );
        let kelvin = serde_json::json!({ "\u{212A}": 1 }).to_string();
        assert_eq!(read(kelvin.as_bytes(), &["k"]), Err(Category::Data));
        assert!(read(br#"{"Tool_Result":1,"function_call":2}"#, KEYS).is_ok());
        // Beneath a free-form key only repeated keys count.
        assert!(read(br#"{"args":{"TOOL_CALLS":1}}"#, KEYS).is_ok());
        assert_eq!(
            read(br#"{"args":{"a":{"x":1,"x":2}}}"#, KEYS),
            Err(Category::Data)
        );
    }

    #[test]
    fn text_that_is_not_json_is_told_apart() {
        for text in [&b"{"[..], b"[DONE]", b"{} {}", b""] {
            let category = read(text, KEYS).err();
            assert!(
                matches!(category, Some(Category::Syntax | Category::Eof)),
                "{category:?}"
            );
        }
    }
}
