//! JSON read as no client could read it otherwise: a key given twice in one object (clients
//! differ on which value wins) or a key that a case-insensitive decoder takes for one Warden
//! reads (Go's `encoding/json` matches `"Tool_Calls"` to `tool_calls`, and folds `ſ` to `s`
//! and the Kelvin sign to `k`) makes the text ambiguous: Warden would judge one thing and the
//! agent's client might run another.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Why JSON text was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotRead {
    /// The text is not JSON.
    #[error("not JSON")]
    NotJson,
    /// JSON that clients may read differently: a key given twice, or one that differs from
    /// a key Warden reads only by case.
    #[error("a key given twice, or one that differs from a key Warden reads only by case")]
    Ambiguous,
}

/// `text` as JSON, refused when it is ambiguous about any of `keys` (or any key at all given
/// twice).
pub fn parse(text: &[u8], keys: &[&str]) -> Result<Value, NotRead> {
    let ambiguous = Cell::new(false);
    let mut de = serde_json::Deserializer::from_slice(text);
    let read = Strict {
        keys,
        ambiguous: &ambiguous,
    }
    .deserialize(&mut de)
    .and_then(|value| de.end().map(|()| value));
    match read {
        Ok(value) => Ok(value),
        Err(_) if ambiguous.get() => Err(NotRead::Ambiguous),
        Err(_) => Err(NotRead::NotJson),
    }
}

/// Whether `key` is not one of `keys` but a case-insensitive decoder would take it for one.
fn folds_onto(key: &str, keys: &[&str]) -> bool {
    !keys.contains(&key) && keys.iter().any(|known| equal_folded(key, known))
}

/// `key` equals the ASCII `known` under Unicode simple case folding (what Go's
/// `bytes.EqualFold` does): ASCII letters in either case, `ſ` (U+017F) as `s`, `K` (U+212A)
/// as `k`.
fn equal_folded(key: &str, known: &str) -> bool {
    let folded = key.chars().map(|c| match c {
        '\u{017F}' => 's',
        '\u{212A}' => 'k',
        c => c.to_ascii_lowercase(),
    });
    folded.eq(known.chars().map(|c| c.to_ascii_lowercase()))
}

/// Builds a [`Value`] as serde_json does, failing on ambiguous keys.
#[derive(Clone, Copy)]
struct Strict<'a> {
    keys: &'a [&'a str],
    ambiguous: &'a Cell<bool>,
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
        f.write_str("JSON")
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
        Ok(Value::from(v))
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
            if object.contains_key(&key) || folds_onto(&key, self.keys) {
                self.ambiguous.set(true);
                return Err(de::Error::custom("ambiguous key"));
            }
            let value = map.next_value_seed(self)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: &[&str] = &["tool_calls", "functionCall"];

    #[test]
    fn reads_json_as_serde_json_does() {
        let text = br#"{"a":[1,-2,3.5,"x",null,true,{"tool_calls":[]}],"functionCall":{}}"#;
        let expected: Value = serde_json::from_slice(text).unwrap_or(Value::Null);
        assert_eq!(parse(text, KEYS), Ok(expected));
    }

    #[test]
    fn a_key_given_twice_anywhere_is_ambiguous() {
        for text in [
            &br#"{"choices":[],"choices":[]}"#[..],
            br#"{"a":{"tool_calls":[],"tool_calls":[]}}"#,
            br#"[{"x":1,"x":1}]"#,
        ] {
            assert_eq!(parse(text, KEYS), Err(NotRead::Ambiguous));
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
            assert_eq!(
                parse(text.as_bytes(), KEYS),
                Err(NotRead::Ambiguous),
                "{key}"
            );
        }
        // Escaped, the same: a JSON parser unescapes it before a client compares it.
        assert_eq!(
            parse(br#"{"Tool\u005fCalls":[]}"#, KEYS),
            Err(NotRead::Ambiguous)
        );
        let kelvin = serde_json::json!({ "\u{212A}": 1 }).to_string();
        assert_eq!(parse(kelvin.as_bytes(), &["k"]), Err(NotRead::Ambiguous));
        assert!(parse(br#"{"Tool_Result":1,"function_call":2}"#, KEYS).is_ok());
    }

    #[test]
    fn text_that_is_not_json_is_told_apart() {
        for text in [&b"{"[..], b"[DONE]", b"{} {}", b""] {
            assert_eq!(parse(text, KEYS), Err(NotRead::NotJson));
        }
    }
}
