//! The configuration file's YAML read into the JSON value every section is read from, as
//! `serde_json::Value` would read it, but for a secret source's `env` or `file` value, which
//! is kept as written. YAML 1.1 reads a plain `Y`, `NO`, `on`, `0600` or `1e3` as a boolean or
//! a number, and by then its spelling is gone (`Y` and `on` are both `true`); there it is an
//! environment variable's name or a file's path (`{ env: Y }`, `{ file: 0600 }`), so its
//! characters are taken from the file, where the parser says the scalar was written. That
//! holds for YAML 1.2's `.nan` and `.inf` too (`{ file: .inf }` is a path), which anywhere else
//! no setting takes: refused with their line, never quoted (a value may be secret-ish).

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use serde_saphyr::{Span, Spanned};

use crate::vault::config::{ENV_KEY, FILE_KEY};

/// `text` as one JSON value (see the module's documentation).
pub fn parse(text: &str) -> Result<Value, serde_saphyr::Error> {
    // Non-finite numbers reach the visitor, which keeps them as written under `env` and
    // `file` and refuses them elsewhere without quoting them (the library's own refusal
    // quotes the scalar).
    let options = serde_saphyr::options! {
        non_finite_float_policy: serde_saphyr::NonFiniteFloatPolicy::PassThrough,
    };
    let node: Node = serde_saphyr::from_str_with_options(text, options)?;
    Ok(node.into_value(text))
}

/// A YAML node as read, before it becomes a JSON value.
enum Node {
    /// A scalar YAML read as a boolean or a number.
    Typed(Value),
    /// A string or null.
    Text(Value),
    Seq(Vec<Node>),
    /// Entries in the order written (a later one of the same key wins, as in `Value`).
    Map(Vec<(String, Node)>),
    /// The value of an `env` or `file` key, with where it was written.
    Written(Box<Node>, Span),
}

impl Node {
    fn into_value(self, text: &str) -> Value {
        match self {
            Node::Typed(value) | Node::Text(value) => value,
            Node::Seq(items) => {
                Value::Array(items.into_iter().map(|n| n.into_value(text)).collect())
            }
            Node::Map(entries) => {
                let mut map = Map::with_capacity(entries.len());
                for (key, node) in entries {
                    map.insert(key, node.into_value(text));
                }
                Value::Object(map)
            }
            Node::Written(node, span) => match *node {
                Node::Typed(value) => written(text, span).map_or(value, Value::String),
                other => other.into_value(text),
            },
        }
    }
}

/// The characters at `span` in `text` (the parser gives byte offsets for text it read whole).
fn written(text: &str, span: Span) -> Option<String> {
    let start = usize::try_from(span.byte_offset()?).ok()?;
    let len = usize::try_from(span.byte_len()?).ok()?;
    text.get(start..start.checked_add(len)?).map(str::to_owned)
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor { written: false })
    }
}

/// The value of an `env` or `file` key: a [`Node`] whose text is taken as written.
struct WrittenNode(Node);

impl<'de> Deserialize<'de> for WrittenNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<WrittenNode, D::Error> {
        d.deserialize_any(NodeVisitor { written: true })
            .map(WrittenNode)
    }
}

struct NodeVisitor {
    /// Whether the node's characters are taken from the file (the value of `env` or `file`).
    written: bool,
}

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Typed(Value::Bool(v)))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Typed(Value::Number(v.into())))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Typed(Value::Number(v.into())))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Node, E> {
        match Number::from_f64(v) {
            Some(number) => Ok(Node::Typed(Value::Number(number))),
            // `.nan`, `.inf`, `1e999`: as written under `env` and `file` (the text replaces
            // this placeholder); elsewhere no setting takes one.
            None if self.written => Ok(Node::Typed(Value::Null)),
            None => Err(E::invalid_value(
                serde::de::Unexpected::Other(
                    "a number that is not finite (.nan, .inf, or too large for one)",
                ),
                &"a finite number, or text in quotes",
            )),
        }
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Text(Value::String(v.to_owned())))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::Text(Value::String(v)))
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Node, E> {
        Ok(Node::Text(Value::Null))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Node, E> {
        Ok(Node::Text(Value::Null))
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(1024));
        while let Some(key) = map.next_key::<String>()? {
            let node = if key == ENV_KEY.0 || key == FILE_KEY.0 {
                let spanned = map.next_value::<Spanned<WrittenNode>>()?;
                Node::Written(Box::new(spanned.value.0), spanned.defined.span())
            } else {
                map.next_value::<Node>()?
            };
            entries.push((key, node));
        }
        Ok(Node::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_as_serde_json_reads_yaml_but_for_env_and_file_values_kept_as_written() {
        let text = "a: Y\nb: [1, 0600, 1e3, on, ~, 'x', 18446744073709551616]\nc: {d: -2}\n\
                    anchored: &n on\n\
                    s1: {env: Y}\ns2: {env: NO}\ns3: {file: 0600}\ns4: {env: 1e3}\n\
                    s5: {env: \"Y\"}\ns6: {env: ~}\ns7: {file: !!bool yes}\ns8: {env: *n}\n\
                    s9: {file: {file: 0700}}\ns10: {env: [1]}\n";
        let sources = json!({
            "s1": {"env": "Y"},
            "s2": {"env": "NO"},
            "s3": {"file": "0600"},
            "s4": {"env": "1e3"},
            "s5": {"env": "Y"},
            "s6": {"env": null},
            "s7": {"file": "yes"},
            "s8": {"env": "on"},
            "s9": {"file": {"file": "0700"}},
            "s10": {"env": [1]},
        });
        let read = parse(text).unwrap();
        // Everything else reads exactly as `serde_json::Value` reads it.
        let mut want: Value = serde_saphyr::from_str(text).unwrap();
        assert_eq!(want["a"], true);
        assert_eq!(want["s1"]["env"], true, "YAML 1.1 reads Y as a boolean");
        for (key, value) in sources.as_object().unwrap() {
            want[key] = value.clone();
        }
        assert_eq!(read, want);
    }

    #[test]
    fn what_serde_json_refuses_is_refused_with_its_place() {
        for text in ["a: 1\na: 2\n", "a: [1,\n", "a: *nowhere\n"] {
            let plain = serde_saphyr::from_str::<Value>(text).unwrap_err();
            let e = parse(text).unwrap_err();
            assert_eq!(
                e.location().map(|l| l.line()),
                plain.location().map(|l| l.line()),
                "{text:?}: {e}"
            );
        }
    }

    #[test]
    fn non_finite_numbers_are_read_as_written_under_env_and_file_and_refused_unquoted_elsewhere() {
        let text = "s1: {file: .inf}\ns2: {file: -.Inf}\ns3: {env: .NaN}\ns4: {file: 1e999}\n";
        assert_eq!(
            parse(text).unwrap(),
            json!({
                "s1": {"file": ".inf"},
                "s2": {"file": "-.Inf"},
                "s3": {"env": ".NaN"},
                "s4": {"file": "1e999"},
            })
        );
        for (text, line, written) in [
            ("a: 1\nb: -.INF\n", 2, "-.INF"),
            ("a:\n  - 2e999\n", 2, "2e999"),
            ("a: {b: .NaN}\n", 1, ".NaN"),
            ("s: {file: [.Inf]}\n", 1, ".Inf"),
        ] {
            let e = parse(text).unwrap_err();
            let shown = crate::config::error::saphyr_message(&e);
            assert!(shown.contains("not finite"), "{text:?}: {shown}");
            assert!(!shown.contains(written), "{text:?}: {shown}");
            let message = e.without_snippet().to_string();
            assert!(!message.contains(written), "{text:?}: {message}");
            assert_eq!(e.location().map(|l| l.line()), Some(line), "{text:?}: {e}");
        }
    }
}
