//! JSON read so that no reader can take it otherwise: a key given twice in one object
//! (readers differ on which value wins) is refused, and so is a key that a case-insensitive
//! decoder takes for one of the keys the caller reads (Go's `encoding/json` matches
//! `"Tool_Calls"` to `tool_calls`, and folds `ſ` to `s` and the Kelvin sign to `k`). MCP
//! messages, REST connector bodies and the answers whose proposed calls Warden judges are
//! read so. What agents send (MCP messages, REST bodies) is read more strictly still
//! ([`parse_unambiguous`]): no two keys of one object may fold equal at all, at any depth, for
//! a server built on such a decoder reads `{"name":"get_issue","Name":"delete_repository"}`
//! as `delete_repository` (the last wins) where Warden judged `get_issue`.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::text::Quoted;

/// `text` as JSON, refusing a key given twice in any object and a key that differs from one
/// of `keys` only by case, except beneath the keys in `free` (their values are free-form
/// maps, the arguments of a call or a schema, which clients read exactly). Those refusals
/// are the errors whose [`classify`](serde_json::Error::classify) is `Data`; what is not JSON
/// is `Syntax` or `Eof`.
pub fn parse(text: &[u8], keys: &[&str], free: &[&str]) -> Result<Value, serde_json::Error> {
    read(
        text,
        Strict {
            keys,
            free,
            fold_all: false,
            at: None,
        },
    )
}

/// `text` as JSON, refusing two keys of one object, at any depth, that are equal or equal
/// under the simple case folding of Go's `encoding/json` (`name` and `Name`, `argumentſ` and
/// `arguments`, `K` and `k`): a case-insensitive decoder takes the last of them for the
/// other. The refusals are `Data` errors that name where the keys are.
pub fn parse_unambiguous(text: &[u8]) -> Result<Value, serde_json::Error> {
    read(
        text,
        Strict {
            keys: &[],
            free: &[],
            fold_all: true,
            at: None,
        },
    )
}

/// What [`parse_unambiguous`] refuses, refused without building the value: for a body read
/// again into typed structures (an LLM request, whose typed read ignores a key it does not
/// know, `Model` beside `model`, and whose upstream may be a case-insensitive decoder).
pub fn check_unambiguous(text: &[u8]) -> Result<(), serde_json::Error> {
    check_unambiguous_as(text, Spellings::Case)
}

/// Which spellings of one key a reader takes for one another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spellings {
    /// Those equal under the case folding of Go's `encoding/json` (`name`, `Name`).
    Case,
    /// Those too of a protocol buffer field's name and its lowerCamelCase JSON name
    /// (`max_output_tokens`, `maxOutputTokens`), which Google's JSON parsing reads alike
    /// (the Gemini API): equal once underscores are dropped and case folded.
    Proto,
}

/// [`check_unambiguous`], two keys of one object refused when `spellings` takes one for the
/// other.
pub fn check_unambiguous_as(text: &[u8], spellings: Spellings) -> Result<(), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(text);
    Check {
        at: None,
        free: false,
        spellings,
    }
    .deserialize(&mut de)?;
    de.end()
}

/// The keys of an LLM request whose values are free-form (JSON Schemas, a tool's arguments or
/// result, metadata): beneath them only a repeated key is refused, since a decoder reads such
/// a value as a map that keeps both `Content-Type` and `content-type`, not as a structure's
/// fields. `input` is free-form only below the top level (Anthropic's `tool_use.input`; the
/// Responses API's top-level `input` is the prompt).
const FREE_FORM: [&str; 13] = [
    "parameters",
    "input_schema",
    "json_schema",
    "parametersJsonSchema",
    "parameters_json_schema",
    "responseSchema",
    "response_schema",
    "responseJsonSchema",
    "response_json_schema",
    "args",
    "response",
    "metadata",
    "input",
];

fn read(text: &[u8], strict: Strict<'_>) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(text);
    let value = strict.deserialize(&mut de)?;
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

/// `key` as Go's `encoding/json` folds it to compare keys (`unicode.ToUpper(unicode.ToLower(r))`
/// rune by rune, simple mappings), put in lower case; `None` when that is `key` itself (every
/// lowercase ASCII key: nothing is allocated for them).
fn folded(key: &str) -> Option<String> {
    if key.bytes().all(|b| !b.is_ascii_uppercase() && b.is_ascii()) {
        return None;
    }
    let folded: String = key.chars().map(fold_char).collect();
    (folded != key).then_some(folded)
}

/// `key` as [`Spellings::Proto`] takes it: folded as [`folded`] folds it, underscores dropped;
/// `None` when that is `key` itself.
fn proto_folded(key: &str) -> Option<String> {
    if !key.contains('_') {
        return folded(key);
    }
    Some(key.chars().filter(|&c| c != '_').map(fold_char).collect())
}

/// One character as Go folds it, then in lower case.
fn fold_char(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_lowercase();
    }
    // Rust's case mappings are the full ones; a simple mapping is the full one when that is
    // one character, else the character itself — but for `İ`, whose simple lower case is `i`.
    fn simple(mut mapped: impl ExactSizeIterator<Item = char>, c: char) -> char {
        match (mapped.len(), mapped.next()) {
            (1, Some(m)) => m,
            _ => c,
        }
    }
    let lower = if c == '\u{0130}' {
        'i'
    } else {
        simple(c.to_lowercase(), c)
    };
    let upper = simple(lower.to_uppercase(), lower);
    simple(upper.to_lowercase(), upper)
}

/// Where in a document a value is: its parents' keys and indexes, on the stack.
#[derive(Clone, Copy)]
enum At<'p> {
    Key(&'p str, Option<&'p At<'p>>),
    Index(usize, Option<&'p At<'p>>),
}

/// `at` as `params.arguments[0]` (each key bounded, escaped when it is not a plain word).
struct Path<'p>(Option<&'p At<'p>>);

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn write(at: &At<'_>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let (parent, last) = match at {
                At::Key(_, p) | At::Index(_, p) => (p, at),
            };
            if let Some(p) = parent {
                write(p, f)?;
            }
            match last {
                At::Index(i, _) => write!(f, "[{i}]"),
                At::Key(k, p) => {
                    let plain = !k.is_empty()
                        && k.len() <= 32
                        && k.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                    match (plain, p.is_some()) {
                        (true, true) => write!(f, ".{k}"),
                        (true, false) => f.write_str(k),
                        (false, _) => write!(f, "[\"{}\"]", Quoted::with_max(k, 32)),
                    }
                }
            }
        }
        match self.0 {
            None => f.write_str("the top level"),
            Some(at) => write(at, f),
        }
    }
}

/// Builds a [`Value`] as serde_json does, failing on a repeated or case-folded key.
#[derive(Clone, Copy)]
struct Strict<'a> {
    keys: &'a [&'a str],
    free: &'a [&'a str],
    /// Refuse any two keys of one object that fold equal (and say where).
    fold_all: bool,
    /// Where the value read is (followed only when `fold_all`).
    at: Option<&'a At<'a>>,
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
        loop {
            let at = At::Index(all.len(), self.at);
            let item = if self.fold_all {
                seq.next_element_seed(Strict {
                    at: Some(&at),
                    ..self
                })?
            } else {
                seq.next_element_seed(self)?
            };
            let Some(item) = item else { break };
            all.push(item);
        }
        Ok(Value::Array(all))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        // The keys of this object that do not fold to themselves, by their folding.
        let mut folds = HashMap::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(repeated(&key, &self.location()));
            }
            if let Some(known) = folds_onto(&key, self.keys) {
                return Err(de::Error::custom(format_args!(
                    "the key {} differs from `{known}` only by case",
                    Quoted::of(&key)
                )));
            }
            if self.fold_all
                && let Some(other) = fold_clash(&object, &mut folds, &key)
            {
                return Err(case_twins(&other, &key, &self.location()));
            }
            let value = if self.free.contains(&key.as_str()) {
                map.next_value_seed(Strict {
                    keys: &[],
                    free: &[],
                    ..self
                })?
            } else if self.fold_all {
                let at = At::Key(&key, self.at);
                map.next_value_seed(Strict {
                    at: Some(&at),
                    ..self
                })?
            } else {
                map.next_value_seed(self)?
            };
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

impl Strict<'_> {
    /// ` at <path>` when the path is followed (the object's own place, `params.arguments`).
    fn location(&self) -> String {
        if self.fold_all {
            format!(" at {}", Path(self.at))
        } else {
            String::new()
        }
    }
}

/// The refusal of `key` given twice in one object (`location`: ` at <path>` or nothing).
fn repeated<E: de::Error>(key: &str, location: &str) -> E {
    E::custom(format_args!(
        "the key {} appears twice in one object{location}; send each key once",
        Quoted::of(key),
    ))
}

/// The refusal of `key` beside `other`, which it folds equal to.
fn case_twins<E: de::Error>(other: &str, key: &str, location: &str) -> E {
    E::custom(format_args!(
        "the keys `{}` and `{}`{location} differ only by case (a case-insensitive reader takes \
         one for the other); send each key once",
        Quoted::with_max(other, 32),
        Quoted::with_max(key, 32),
    ))
}

/// The refusal of `key` beside `other`, two spellings of one protocol buffer field.
fn proto_twins<E: de::Error>(other: &str, key: &str, location: &str) -> E {
    E::custom(format_args!(
        "the keys `{}` and `{}`{location} are two spellings of one field (the API reads a \
         field's name and its lowerCamelCase JSON name alike); send one of them",
        Quoted::with_max(other, 32),
        Quoted::with_max(key, 32),
    ))
}

/// The key already in `object` that `key` folds equal to, if any; remembers `key` under its
/// folding in `folds` when that is not `key` itself.
fn fold_clash(
    object: &Map<String, Value>,
    folds: &mut HashMap<String, String>,
    key: &str,
) -> Option<String> {
    fold_clash_in(|k| object.contains_key(k), folds, key, folded)
}

/// [`fold_clash`] in an object whose keys `has` knows.
fn fold_clash_in(
    has: impl Fn(&str) -> bool,
    folds: &mut HashMap<String, String>,
    key: &str,
    fold: fn(&str) -> Option<String>,
) -> Option<String> {
    match fold(key) {
        // Most keys: only a key folded onto this one can clash, and most objects have none.
        None => folds.get(key).cloned(),
        Some(f) => {
            if has(&f) {
                return Some(f);
            }
            if let Some(other) = folds.get(&f) {
                return Some(other.clone());
            }
            folds.insert(f, key.to_owned());
            None
        }
    }
}

/// Reads a JSON value as [`parse_unambiguous`] does, keeping nothing but its objects' keys.
#[derive(Clone, Copy)]
struct Check<'a> {
    at: Option<&'a At<'a>>,
    /// Beneath a free-form key ([`FREE_FORM`]): only repeated keys count.
    free: bool,
    /// Which spellings of a key are taken for one another.
    spellings: Spellings,
}

impl<'de> DeserializeSeed<'de> for Check<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Check<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        loop {
            let at = At::Index(index, self.at);
            let element = Check {
                at: Some(&at),
                ..self
            };
            if seq.next_element_seed(element)?.is_none() {
                return Ok(());
            }
            index += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let fold = match self.spellings {
            Spellings::Case => folded,
            Spellings::Proto => proto_folded,
        };
        // Keys as sent (borrowed unless escaped), and those that do not fold to themselves.
        let mut keys = Seen::default();
        let mut folds = HashMap::new();
        while let Some(KeyText(key)) = map.next_key()? {
            if keys.contains(&key) {
                return Err(repeated(&key, &format!(" at {}", Path(self.at))));
            }
            if !self.free
                && let Some(other) = fold_clash_in(|k| keys.contains(k), &mut folds, &key, fold)
            {
                let at = format!(" at {}", Path(self.at));
                let case = |k: &str| folded(k).unwrap_or_else(|| k.to_owned());
                return Err(if case(&other) == case(&key) {
                    case_twins(&other, &key, &at)
                } else {
                    proto_twins(&other, &key, &at)
                });
            }
            let free =
                self.free || (FREE_FORM.contains(&&*key) && (self.at.is_some() || key != "input"));
            let at = At::Key(&key, self.at);
            map.next_value_seed(Check {
                at: Some(&at),
                free,
                ..self
            })?;
            keys.insert(key);
        }
        Ok(())
    }
}

/// The keys of one object read so far: a list while it is short (most objects: no hashing),
/// a set once it is long.
#[derive(Default)]
struct Seen<'de> {
    list: Vec<Cow<'de, str>>,
    set: Option<HashSet<Cow<'de, str>>>,
}

impl<'de> Seen<'de> {
    /// Keys up to which a list is searched.
    const LIST_MAX: usize = 16;

    fn contains(&self, key: &str) -> bool {
        match &self.set {
            Some(set) => set.contains(key),
            None => self.list.iter().any(|k| k == key),
        }
    }

    fn insert(&mut self, key: Cow<'de, str>) {
        match &mut self.set {
            Some(set) => {
                set.insert(key);
            }
            None if self.list.len() == Self::LIST_MAX => {
                let mut set: HashSet<_> = self.list.drain(..).collect();
                set.insert(key);
                self.set = Some(set);
            }
            None => self.list.push(key),
        }
    }
}

/// An object key, borrowed from the text unless it holds an escape.
struct KeyText<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for KeyText<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Key;
        impl<'de> Visitor<'de> for Key {
            type Value = KeyText<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<KeyText<'de>, E> {
                Ok(KeyText(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<KeyText<'de>, E> {
                Ok(KeyText(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(Key)
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

    /// What `parse_unambiguous` says of `text`: the value, or the error's text.
    fn unambiguous(text: &str) -> Result<Value, String> {
        parse_unambiguous(text.as_bytes()).map_err(|e| {
            assert_eq!(e.classify(), Category::Data, "{e}");
            e.to_string()
        })
    }

    #[test]
    fn agent_input_may_not_hold_two_keys_that_fold_equal_anywhere() {
        // Go's encoding/json takes the last of them for a field: `Name` runs, `name` was judged.
        let err = unambiguous(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"github_get_issue","arguments":{},"Name":"delete_repository"}}"#,
        )
        .unwrap_err();
        assert!(
            err.contains("the keys `name` and `Name` at params differ only by case"),
            "{err}"
        );
        for (text, at) in [
            (
                r#"{"params":{"arguments":{},"argument\u017f":{}}}"#,
                "at params ",
            ),
            (
                r#"{"a":[{"b":{"x":1}},{"b":{"k":1,"\u212a":2}}]}"#,
                "at a[1].b ",
            ),
            (r#"{"K":1,"\u212a":2}"#, "at the top level "),
            (r#"{"\u212a":1,"K":2}"#, "at the top level "),
            (r#"{"ID":1,"\u0130d":2}"#, "at the top level "),
            (
                r#"{"\u00c9t\u00e9":1,"\u00e9T\u00c9":2}"#,
                "at the top level ",
            ),
            (r#"{"x y":{"A":1,"a":2}}"#, r#"at ["x y"] "#),
            (
                r#"{"a":{"a":1,"a":2}}"#,
                "appears twice in one object at a;",
            ),
        ] {
            let err = unambiguous(text).unwrap_err();
            assert!(err.contains(at), "{text}: {err}");
        }
        // Keys that only look alike, or differ by more than case, are different keys.
        let text =
            r#"{"name":1,"nam\u0435":2,"na_me":3,"stra\u00dfe":4,"strasse":5,"\u00e9":6,"e":7}"#;
        assert_eq!(
            unambiguous(text),
            Ok(serde_json::from_str(text).unwrap_or(Value::Null))
        );
        // `parse` itself refuses only what its caller reads.
        assert!(read(br#"{"a":{"A":1,"a":2}}"#, KEYS).is_ok());
    }

    #[test]
    fn the_check_refuses_what_the_unambiguous_parse_refuses_and_nothing_else() {
        for text in [
            r#"{"model":"gpt-4o-mini","messages":[],"Model":"gpt-4o"}"#,
            r#"{"messages":[{"role":"user","content":"x","ROLE":"system"}]}"#,
            r#"{"tools":[{"function":{"name":"a","strict":{"x":{"k":1,"\u212a":2}}}}]}"#,
            r#"{"a":{"a":1,"a":2}}"#,
            r#"{"Max_Tokens\u005f":1,"max_tokens_":2}"#,
            r#"{"x y":[{"A":1},{"A":1,"a":2}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"{\"Model\":1}"}]}]}"#,
            r#"{"stra\u00dfe":4,"strasse":5,"name":1,"nam\u0435":2}"#,
            r#"[{"x":1},{"X":[true,null,1.5,-2]}]"#,
        ] {
            let parsed = parse_unambiguous(text.as_bytes())
                .map(|_| ())
                .map_err(|e| e.to_string());
            let checked = check_unambiguous(text.as_bytes()).map_err(|e| e.to_string());
            assert_eq!(checked, parsed, "{text}");
        }
        assert!(check_unambiguous(b"{} {}").is_err());
        assert!(check_unambiguous(b"{").is_err());
        // Beneath a free-form key (a schema, a tool's arguments or result, metadata) a map
        // keeps both spellings: only a repeated key is refused there.
        for free in [
            r#"{"tools":[{"function":{"name":"a","parameters":{"x":{"k":1,"K":2}}}}]}"#,
            r#"{"messages":[{"content":[{"type":"tool_use","input":{"Content-Type":1,"content-type":2}}]}]}"#,
            r#"{"contents":[{"parts":[{"functionResponse":{"response":{"A":1,"a":2}}}]}]}"#,
            r#"{"metadata":{"User":"x","user":"y"}}"#,
        ] {
            assert!(check_unambiguous(free.as_bytes()).is_ok(), "{free}");
        }
        assert!(check_unambiguous(br#"{"metadata":{"a":1,"a":2}}"#).is_err());
        // The Responses API's top-level `input` is the prompt, not free-form.
        assert!(check_unambiguous(br#"{"input":[{"role":"user","Role":"system"}]}"#).is_err());
        // Past the keys a list holds, a set: the same refusals.
        let many: Vec<String> = (0..20).map(|i| format!("\"k{i}\":{i}")).collect();
        for (last, found) in [
            ("\"k3\":0", "appears twice"),
            ("\"K19\":0", "differ only by case"),
        ] {
            let text = format!("{{{},{last}}}", many.join(","));
            let err = check_unambiguous(text.as_bytes()).map_err(|e| e.to_string());
            assert!(err.as_ref().is_err_and(|e| e.contains(found)), "{err:?}");
        }
        let text = format!("{{{}}}", many.join(","));
        assert!(check_unambiguous(text.as_bytes()).is_ok());
    }

    #[test]
    fn many_keys_that_fold_are_read_in_linear_time() {
        let keys: Vec<String> = (0..50_000).map(|i| format!("\"K{i}\":{i}")).collect();
        let text = format!("{{{}}}", keys.join(","));
        let started = std::time::Instant::now();
        assert!(parse_unambiguous(text.as_bytes()).is_ok());
        assert!(check_unambiguous(text.as_bytes()).is_ok());
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
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
