//! The values of an operation's fields (`context.fields`), read from the query string and the
//! body (JSON or form-encoded).
//!
//! Read so that policy sees what the upstream acts on: a field given twice (in the query and
//! the body, twice in the query, or a JSON key repeated anywhere in the body) is refused, as
//! is a body Warden cannot read when the operation has body fields (a policy on them could
//! otherwise be passed by sending, say, multipart), and a value of the wrong type.

use std::sync::Arc;

use http::HeaderMap;
use serde_json::Value;

use super::error::RestError;
use super::operations::{Field, FieldKind, FieldSource};
use crate::action::FieldValue;
use crate::protocol::strict_json::equal_folded;

/// A request body as fields are read from it.
enum Body {
    Empty,
    Json(Value),
    Form(Vec<(String, String)>),
}

/// The values of `fields` in a request with `query`, `headers` and `body`; a field the request
/// does not give is left out.
#[cfg(test)]
pub fn read(
    fields: &[Field],
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<(Arc<str>, FieldValue)>, RestError> {
    read_with_undeclared(fields, query, headers, body).map(|(values, _)| values)
}

/// What a request's fields are, read from its query and body.
pub type Values = Vec<(Arc<str>, FieldValue)>;

/// The values of `fields` in a request with `query`, `headers` and `body` (a field the request
/// does not give is left out) and, when `fields` read the body, the top-level keys of the body
/// that none of them reads ([`undeclared`]).
pub fn read_with_undeclared(
    fields: &[Field],
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Values, Vec<String>), RestError> {
    let query: Vec<(String, String)> = query
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default();
    let wants_body = fields
        .iter()
        .any(|f| matches!(f.source, FieldSource::Body(_)));
    let reads_query = fields
        .iter()
        .any(|f| matches!(f.source, FieldSource::Query(_)));
    let body = if wants_body {
        parse_body(headers, body)?
    } else if reads_query && !body.is_empty() {
        // Read only to see that a query field is not given again in a JSON or form body
        // (an API may take either, and the body's win); any other body is the operation's.
        parse_body(headers, body).unwrap_or(Body::Empty)
    } else {
        Body::Empty
    };
    refuse_method_key(&body)?;
    let mut out = Vec::with_capacity(fields.len());
    for field in fields {
        let value = match &field.source {
            FieldSource::Query(name) => {
                if let Some((folded, _)) = query
                    .iter()
                    .find(|(k, _)| k != name && equal_folded(k, name))
                {
                    return Err(RestError::FoldedKey {
                        place: "query parameter",
                        key: crate::text::Quoted::of(folded),
                        expected: crate::text::Quoted::of(name),
                        field: Arc::clone(&field.name),
                    });
                }
                let in_body = match &body {
                    Body::Form(pairs) => pairs
                        .iter()
                        .any(|(k, _)| form_key(k).0[0].eq_ignore_ascii_case(name)),
                    Body::Json(Value::Object(members)) => {
                        members.keys().any(|k| k.eq_ignore_ascii_case(name))
                    }
                    _ => false,
                };
                if in_body {
                    return Err(RestError::RepeatedField {
                        field: Arc::clone(&field.name),
                    });
                }
                from_strings(field, query_values(&query, name))?
            }
            FieldSource::Body(steps) => {
                let top = &steps[0].key;
                if query.iter().any(|(k, _)| equal_folded(k, top)) {
                    return Err(RestError::RepeatedField {
                        field: Arc::clone(&field.name),
                    });
                }
                match &body {
                    Body::Empty => None,
                    Body::Form(pairs) => from_form(field, pairs, steps)?,
                    Body::Json(json) => from_json(field, json, steps)?,
                }
            }
        };
        if let Some(value) = value {
            out.push((Arc::clone(&field.name), value));
        }
    }
    let undeclared = if wants_body {
        undeclared(fields, &body)
    } else {
        Vec::new()
    };
    Ok((out, undeclared))
}

/// Refuses a read body with a top-level `_method` key (any spelling a server reads so:
/// [`super::names_method`]), which Rails, Laravel and Symfony take for the request's method:
/// the method is judged as sent. A form key counts by its first part (`_method[x]` too).
fn refuse_method_key(body: &Body) -> Result<(), RestError> {
    let found = match body {
        Body::Json(Value::Object(members)) => members
            .keys()
            .find(|k| super::names_method(k))
            .map(|k| ("body key", k.as_str())),
        Body::Form(pairs) => pairs
            .iter()
            .map(|(k, _)| k.as_str())
            .find(|k| super::names_method(k) || super::names_method(form_key(k).0[0]))
            .map(|k| ("form key", k)),
        _ => None,
    };
    match found {
        Some((place, key)) => Err(RestError::BodyMethod {
            place,
            key: crate::text::Quoted::of(key),
        }),
        None => Ok(()),
    }
}

/// The top-level keys of a JSON object or form body that are the first step of no body field
/// of `fields`, sorted, each once (a form key by its first part: `meta[x]` is `meta`): what
/// the upstream is sent that no policy judged.
fn undeclared(fields: &[Field], body: &Body) -> Vec<String> {
    let declared = |key: &str| {
        fields
            .iter()
            .any(|f| matches!(&f.source, FieldSource::Body(steps) if steps[0].key == key))
    };
    let mut keys: Vec<String> = match body {
        Body::Json(Value::Object(members)) => {
            members.keys().filter(|k| !declared(k)).cloned().collect()
        }
        Body::Form(pairs) => pairs
            .iter()
            .map(|(k, _)| form_key(k).0[0])
            .filter(|k| !declared(k))
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    keys.sort();
    keys.dedup();
    keys
}

fn query_values<'q>(pairs: &'q [(String, String)], name: &str) -> Vec<&'q str> {
    pairs
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// How a form key spells a nested field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Spelling {
    /// `a`, or `a[b][c]`, `a[]`, `a[0]` (Rails, PHP, Slack, Stripe).
    Brackets,
    /// `a.b.c`.
    Dots,
}

/// A form key's path (`a[b][]` is `a`, `b`, ``), and how it is spelled.
pub(super) fn form_key(key: &str) -> (Vec<&str>, Spelling) {
    if let Some(open) = key.find('[')
        && key.ends_with(']')
    {
        let mut parts = vec![&key[..open]];
        parts.extend(key[open + 1..key.len() - 1].split("]["));
        return (parts, Spelling::Brackets);
    }
    if key.contains('.') {
        return (key.split('.').collect(), Spelling::Dots);
    }
    (vec![key], Spelling::Brackets)
}

/// How a form key's path stands to a field's body path.
pub(super) enum Reach {
    /// It is not on the field's path.
    Off,
    /// It names the field (for `[]` steps, one of its elements).
    Field,
    /// It names a value inside the field's (the field's value is an object or array there).
    Inside {
        /// Its one step further is an array element (`labels[]`, `labels[0]`).
        element: bool,
    },
    /// It names a parent of the field: a value that may hold it as JSON text, `below` steps
    /// down the field's path (`element`: one element of the array the last of them reaches).
    Parent { below: usize, element: bool },
}

/// Whether `part` is an array index in a form key (`[]` or `[3]`).
fn is_index(part: &str) -> bool {
    part.bytes().all(|b| b.is_ascii_digit())
}

/// Where the form key `path` is on the body path `steps`.
pub(super) fn reach(path: &[&str], steps: &[super::operations::BodyStep]) -> Reach {
    reach_by(path, steps, &mut |part, key| part == key)
}

/// The part of the form key `path` that is not the key of its step on the body path `steps`
/// but folds equal to it (`Message[To]` for `body.message.to`), with that key, when the form
/// key would reach the field were it spelled as the field's path is.
fn folded_part<'p>(
    path: &[&'p str],
    steps: &[super::operations::BodyStep],
) -> Option<(&'p str, String)> {
    let mut folded = None;
    let reached = reach_by(path, steps, &mut |part, key| {
        if part != key && equal_folded(part, key) {
            folded.get_or_insert((part, key.to_owned()));
            return true;
        }
        part == key
    });
    folded.filter(|_| !matches!(reached, Reach::Off))
}

/// [`reach`], a part of `path` and a step's key taken as one when `same` says so.
fn reach_by<'p>(
    path: &[&'p str],
    steps: &[super::operations::BodyStep],
    same: &mut dyn FnMut(&'p str, &str) -> bool,
) -> Reach {
    let mut at = 0;
    for (n, step) in steps.iter().enumerate() {
        match path.get(at) {
            None => {
                return Reach::Parent {
                    below: n,
                    element: n > 0 && steps[n - 1].each,
                };
            }
            Some(part) if !same(part, &step.key) => return Reach::Off,
            Some(_) => at += 1,
        }
        if step.each {
            match path.get(at) {
                None => {
                    return Reach::Parent {
                        below: n + 1,
                        element: false,
                    };
                }
                Some(part) if is_index(part) => at += 1,
                Some(_) => return Reach::Off,
            }
        }
    }
    match &path[at..] {
        [] => Reach::Field,
        [one] => Reach::Inside {
            element: is_index(one),
        },
        _ => Reach::Inside { element: false },
    }
}

/// A field from a form body, read as APIs that take nested forms read it: `a[b][c]` or
/// `a.b.c` for `body.a.b.c`, `a[][b]` or `a[0][b]` for `body.a[].b`, `labels[]` for a
/// `strings` field `body.labels`, or JSON text in a parent (`a={"b":...}`, as Slack takes
/// `blocks`). Refused as given twice: a field spelled in two of these ways (an upstream reads
/// one of them, Warden cannot know which). Refused as of the wrong type: a value nested inside
/// a field that is not `strings`.
fn from_form(
    field: &Field,
    pairs: &[(String, String)],
    steps: &[super::operations::BodyStep],
) -> Result<Option<FieldValue>, RestError> {
    let repeated = || RestError::RepeatedField {
        field: Arc::clone(&field.name),
    };
    let mut values: Vec<&str> = Vec::new();
    let mut spelled: Option<Spelling> = None;
    let mut parent: Option<(&str, usize, bool)> = None;
    for (key, value) in pairs {
        let (path, spelling) = form_key(key);
        let reached = reach(&path, steps);
        if matches!(reached, Reach::Off) {
            if let Some((part, expected)) = folded_part(&path, steps) {
                return Err(RestError::FoldedKey {
                    place: "form key",
                    key: crate::text::Quoted::of(part),
                    expected: crate::text::Quoted::of(&expected),
                    field: Arc::clone(&field.name),
                });
            }
            continue;
        }
        if spelled.is_some_and(|s| s != spelling) {
            return Err(repeated());
        }
        spelled = Some(spelling);
        match reached {
            Reach::Off => {}
            Reach::Field => values.push(value),
            Reach::Inside { element: true } if field.kind == FieldKind::Strings => {
                values.push(value)
            }
            Reach::Inside { .. } => {
                return Err(RestError::FieldType {
                    field: Arc::clone(&field.name),
                    expected: match field.kind {
                        FieldKind::String => "a string",
                        FieldKind::Long => "an integer",
                        FieldKind::Bool => "true or false",
                        FieldKind::Strings => "strings",
                    },
                });
            }
            Reach::Parent { below, element } => {
                if parent.is_some() {
                    return Err(repeated());
                }
                parent = Some((value, below, element));
            }
        }
    }
    match parent {
        None => from_strings(field, values),
        Some(_) if !values.is_empty() => Err(repeated()),
        Some((text, below, element)) => {
            // JSON text the API may read the field from; other text holds no field.
            match crate::protocol::strict_json::parse_unambiguous(text.as_bytes()) {
                Ok(json @ (Value::Object(_) | Value::Array(_))) => {
                    from_json_below(field, &json, steps, below, element)
                }
                _ => Ok(None),
            }
        }
    }
}

/// [`from_json`] of a value reached `below` steps down the field's path (`element`: one
/// element of the array the last of them reaches).
fn from_json_below(
    field: &Field,
    json: &Value,
    steps: &[super::operations::BodyStep],
    below: usize,
    element: bool,
) -> Result<Option<FieldValue>, RestError> {
    let Some(last) = below.checked_sub(1) else {
        return from_json(field, json, steps);
    };
    // The value set under the last step taken, so that the steps read on from it.
    let value = if element {
        Value::Array(vec![json.clone()])
    } else {
        json.clone()
    };
    let mut wrapped = serde_json::Map::new();
    wrapped.insert(steps[last].key.clone(), value);
    from_json(field, &Value::Object(wrapped), &steps[last..])
}

/// The media type of form-encoded bodies.
const FORM: &str = "application/x-www-form-urlencoded";

/// A `Content-Type`'s media type, lower-cased.
fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Whether `headers` say the body is form-encoded (else it is read as JSON).
pub(super) fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| essence(v) == FORM)
}

/// The body as JSON or form pairs; refused when it has content in another type.
fn parse_body(headers: &HeaderMap, body: &[u8]) -> Result<Body, RestError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Body::Empty);
    }
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = essence(content_type);
    if essence == FORM {
        let pairs = form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        return Ok(Body::Form(pairs));
    }
    if essence == "application/json" || essence.ends_with("+json") || essence.is_empty() {
        // Objects never repeat a key, nor hold two that differ only by case: the upstream may
        // keep another copy than Warden would.
        let value =
            crate::protocol::strict_json::parse_unambiguous(body).map_err(|e| RestError::Body {
                detail: e.to_string().chars().take(240).collect(),
            })?;
        return Ok(Body::Json(value));
    }
    Err(RestError::UnreadableBody {
        content_type: crate::text::Quoted::of(content_type),
    })
}

/// A field from text values (query or form): one value, or several for `strings`.
fn from_strings(field: &Field, values: Vec<&str>) -> Result<Option<FieldValue>, RestError> {
    let wrong = |expected: &'static str| RestError::FieldType {
        field: Arc::clone(&field.name),
        expected,
    };
    match (field.kind, values.as_slice()) {
        (_, []) => Ok(None),
        (FieldKind::Strings, all) => Ok(Some(FieldValue::Strings(
            all.iter().map(|v| (*v).to_owned()).collect(),
        ))),
        (_, [_, _, ..]) => Err(RestError::RepeatedField {
            field: Arc::clone(&field.name),
        }),
        (FieldKind::String, [v]) => Ok(Some(FieldValue::String((*v).to_owned()))),
        (FieldKind::Long, [v]) => v
            .parse()
            .map(|n| Some(FieldValue::Long(n)))
            .map_err(|_| wrong("an integer")),
        (FieldKind::Bool, [v]) => match *v {
            "true" => Ok(Some(FieldValue::Bool(true))),
            "false" => Ok(Some(FieldValue::Bool(false))),
            _ => Err(wrong("true or false")),
        },
    }
}

/// A field from a JSON body, following `steps`.
fn from_json(
    field: &Field,
    json: &Value,
    steps: &[super::operations::BodyStep],
) -> Result<Option<FieldValue>, RestError> {
    let wrong = |expected: &'static str| RestError::FieldType {
        field: Arc::clone(&field.name),
        expected,
    };
    let mut reached: Vec<&Value> = vec![json];
    for step in steps {
        let mut next = Vec::new();
        for value in reached {
            refuse_folded_key(field, value, &step.key)?;
            match value.get(&step.key) {
                None | Some(Value::Null) => {}
                Some(Value::Array(items)) if step.each => next.extend(items.iter()),
                Some(_) if step.each => return Err(wrong("an array")),
                Some(v) => next.push(v),
            }
        }
        reached = next;
    }
    let many = steps.iter().any(|s| s.each);
    match field.kind {
        FieldKind::Strings => {
            let mut all = Vec::new();
            for value in reached {
                match value {
                    Value::String(s) => all.push(s.clone()),
                    Value::Array(items) if !many => {
                        for item in items {
                            match item {
                                Value::String(s) => all.push(s.clone()),
                                _ => return Err(wrong("an array of strings")),
                            }
                        }
                    }
                    _ => return Err(wrong("strings")),
                }
            }
            Ok((!all.is_empty() || !many).then_some(FieldValue::Strings(all)))
        }
        kind => match (kind, reached.first()) {
            (_, None) => Ok(None),
            (FieldKind::String, Some(Value::String(s))) => Ok(Some(FieldValue::String(s.clone()))),
            (FieldKind::Long, Some(Value::Number(n))) => n
                .as_i64()
                .map(|n| Some(FieldValue::Long(n)))
                .ok_or_else(|| wrong("an integer")),
            (FieldKind::Bool, Some(Value::Bool(b))) => Ok(Some(FieldValue::Bool(*b))),
            (FieldKind::String, _) => Err(wrong("a string")),
            (FieldKind::Long, _) => Err(wrong("an integer")),
            _ => Err(wrong("true or false")),
        },
    }
}

/// Refuses a key of `value` (an object) that is not `key` but that a case-insensitive decoder
/// takes for it (`CcRecipients` for `ccRecipients`): policy reads `key` as absent, the
/// upstream reads that value. Two such keys together are refused already (`strict_json`).
fn refuse_folded_key(field: &Field, value: &Value, key: &str) -> Result<(), RestError> {
    let Value::Object(members) = value else {
        return Ok(());
    };
    match members.keys().find(|k| *k != key && equal_folded(k, key)) {
        Some(folded) => Err(RestError::FoldedKey {
            place: "body key",
            key: crate::text::Quoted::of(folded),
            expected: crate::text::Quoted::of(key),
            field: Arc::clone(&field.name),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::protocol::rest::operations::{FieldSpec, OperationSpec, Operations};
    use std::collections::BTreeMap;

    /// The fields of one operation: `(name, from, kind)`.
    pub(in crate::protocol::rest) fn fields(specs: &[(&str, &str, FieldKind)]) -> Vec<Field> {
        let spec = OperationSpec {
            action: "op".into(),
            method: "POST".into(),
            path: "/op".into(),
            fields: specs
                .iter()
                .map(|(name, from, kind)| {
                    (
                        (*name).to_owned(),
                        FieldSpec::Typed {
                            from: (*from).to_owned(),
                            kind: *kind,
                        },
                    )
                })
                .collect::<BTreeMap<_, _>>(),
            read: None,
        };
        let table = Operations::compile("t", &[spec]).expect("valid");
        table
            .iter()
            .next()
            .and_then(|o| o.fields.clone())
            .unwrap_or_default()
    }

    fn json_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::CONTENT_TYPE,
            "application/json".parse().unwrap(),
        );
        h
    }

    #[test]
    fn fields_are_read_from_query_json_and_form() {
        let f = fields(&[
            ("channel", "body.channel", FieldKind::String),
            (
                "to",
                "body.message.toRecipients[].emailAddress.address",
                FieldKind::Strings,
            ),
            ("draft", "body.draft", FieldKind::Bool),
            ("state", "query.state", FieldKind::String),
        ]);
        let body = br#"{"channel":"C1","draft":true,"message":{"toRecipients":[{"emailAddress":{"address":"a@x"}},{"emailAddress":{"address":"b@y"}}]}}"#;
        let got = read(&f, Some("state=open&page=2"), &json_headers(), body).expect("reads");
        let got: BTreeMap<String, FieldValue> =
            got.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        assert_eq!(got["channel"], FieldValue::String("C1".into()));
        assert_eq!(got["draft"], FieldValue::Bool(true));
        assert_eq!(got["state"], FieldValue::String("open".into()));
        assert_eq!(
            got["to"],
            FieldValue::Strings(vec!["a@x".into(), "b@y".into()])
        );

        let mut form = HeaderMap::new();
        form.insert(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded; charset=utf-8"
                .parse()
                .unwrap(),
        );
        let got = read(&f[..1], None, &form, b"channel=C2&text=hi").expect("reads");
        assert_eq!(got[0].1, FieldValue::String("C2".into()));
    }

    #[test]
    fn body_keys_no_field_reads_are_named() {
        let f = fields(&[
            ("channel", "body.channel", FieldKind::String),
            ("to", "body.message.to[].address", FieldKind::Strings),
            ("state", "query.state", FieldKind::String),
        ]);
        let body = br#"{"channel":"C1","message":{"to":[]},"attachments":[1],"as_user":true}"#;
        let (values, undeclared) =
            read_with_undeclared(&f, Some("state=open"), &json_headers(), body).expect("reads");
        assert_eq!(values.len(), 2);
        assert_eq!(undeclared, ["as_user", "attachments"]);
        let (_, undeclared) = read_with_undeclared(
            &f,
            None,
            &form_headers(),
            b"channel=C2&blocks[0]=x&blocks[1]=y&icon_url=u",
        )
        .expect("reads");
        assert_eq!(undeclared, ["blocks", "icon_url"]);
        // Everything declared, or no body field to read the body: none named.
        let (_, none) =
            read_with_undeclared(&f, None, &json_headers(), br#"{"channel":"C"}"#).expect("reads");
        assert!(none.is_empty());
        let q = fields(&[("state", "query.state", FieldKind::String)]);
        let (_, none) =
            read_with_undeclared(&q, None, &HeaderMap::new(), b"{\"x\":1}").expect("reads");
        assert!(none.is_empty());
    }

    #[test]
    fn a_method_key_in_a_read_body_is_refused() {
        let f = fields(&[("channel", "body.channel", FieldKind::String)]);
        for body in [
            &br#"{"channel":"C","_method":"DELETE"}"#[..],
            br#"{"_METHOD":"delete"}"#,
        ] {
            let refused = read(&f, None, &json_headers(), body);
            assert!(
                matches!(
                    &refused,
                    Err(RestError::BodyMethod {
                        place: "body key",
                        ..
                    })
                ),
                "{refused:?}"
            );
        }
        // Form keys as Rails, Laravel and Symfony (PHP) read them.
        for body in [
            &b"channel=C&_method=DELETE"[..],
            b"_METHOD=delete",
            b"%5Fmethod=DELETE",
            b".method=DELETE",
            b"+method=DELETE",
            b"[method=DELETE",
            b"_method[x]=DELETE",
            b"_method%00x=DELETE",
        ] {
            let refused = read(&f, None, &form_headers(), body);
            assert!(
                matches!(
                    &refused,
                    Err(RestError::BodyMethod {
                        place: "form key",
                        ..
                    })
                ),
                "{}: {refused:?}",
                String::from_utf8_lossy(body)
            );
        }
        // A body read to see that a query field is not given twice is held to it too.
        let q = fields(&[("state", "query.state", FieldKind::String)]);
        let refused = read(&q, None, &form_headers(), b"_method=PUT");
        assert!(
            matches!(refused, Err(RestError::BodyMethod { .. })),
            "{refused:?}"
        );
        // Not `_method`: read as before.
        for body in [
            &b"channel=_method&method=DELETE&x_method=1&a.method=1&_methods=1"[..],
            b"meta[_method]=1",
        ] {
            assert!(read(&f, None, &form_headers(), body).is_ok());
        }
        let nested = br#"{"channel":"C","meta":{"_method":"DELETE"}}"#;
        assert!(read(&f, None, &json_headers(), nested).is_ok());
    }

    #[test]
    fn a_field_given_twice_or_in_an_unreadable_body_is_refused() {
        let f = fields(&[("channel", "body.channel", FieldKind::String)]);
        let dup = read(
            &f,
            None,
            &json_headers(),
            br#"{"channel":"A","channel":"B"}"#,
        );
        assert!(matches!(dup, Err(RestError::Body { .. })), "{dup:?}");
        // A Go upstream takes `Channel` for `channel`: Warden would judge A, it would post to B.
        for body in [
            &br#"{"channel":"A","Channel":"B"}"#[..],
            br#"{"channel":"A","meta":{"to":"x","TO":"y"}}"#,
        ] {
            let folded = read(&f, None, &json_headers(), body);
            assert!(
                matches!(&folded, Err(RestError::Body { detail }) if detail.contains("differ only by case")),
                "{folded:?}"
            );
        }
        let both = read(
            &f,
            Some("channel=A"),
            &json_headers(),
            br#"{"channel":"B"}"#,
        );
        assert!(
            matches!(both, Err(RestError::RepeatedField { .. })),
            "{both:?}"
        );
        let mut multipart = HeaderMap::new();
        multipart.insert(
            http::header::CONTENT_TYPE,
            "multipart/form-data; boundary=x".parse().unwrap(),
        );
        let other = read(&f, None, &multipart, b"--x\r\n");
        assert!(
            matches!(other, Err(RestError::UnreadableBody { .. })),
            "{other:?}"
        );
        let wrong = read(&f, None, &json_headers(), br#"{"channel":7}"#);
        assert!(
            matches!(wrong, Err(RestError::FieldType { .. })),
            "{wrong:?}"
        );
        let q = fields(&[("state", "query.state", FieldKind::String)]);
        let twice = read(&q, Some("state=a&state=b"), &HeaderMap::new(), b"");
        assert!(
            matches!(twice, Err(RestError::RepeatedField { .. })),
            "{twice:?}"
        );
        // A query field given again in a JSON or form body, though no field is read from the
        // body: an API that takes either (the body's winning) would act on what was not judged.
        let again = read(&q, Some("state=a"), &json_headers(), br#"{"State":"b"}"#);
        assert!(
            matches!(again, Err(RestError::RepeatedField { .. })),
            "{again:?}"
        );
        let again = read(&q, Some("state=a"), &form_headers(), b"state=b");
        assert!(
            matches!(again, Err(RestError::RepeatedField { .. })),
            "{again:?}"
        );
        // Any other body is the operation's own.
        let upload = read(&q, Some("state=a"), &multipart, b"--x\r\n").expect("reads");
        assert_eq!(upload[0].1, FieldValue::String("a".into()));
    }

    #[test]
    fn a_key_spelled_otherwise_but_for_case_than_a_fields_key_is_refused() {
        let f = fields(&[
            (
                "cc",
                "body.message.ccRecipients[].emailAddress.address",
                FieldKind::Strings,
            ),
            (
                "to",
                "body.message.toRecipients[].emailAddress.address",
                FieldKind::Strings,
            ),
        ]);
        for (body, key, expected) in [
            (
                r#"{"message":{"CcRecipients":[{"emailAddress":{"address":"x@evil.example"}}]}}"#,
                "CcRecipients",
                "ccRecipients",
            ),
            (
                r#"{"message":{"toRecipients":[{"emailAddress":{"Address":"x@evil.example"}}]}}"#,
                "Address",
                "address",
            ),
            (r#"{"Message":{"toRecipients":[]}}"#, "Message", "message"),
            (
                r#"{"message":{"toRecipient\u017f":[]}}"#,
                "toRecipient\u{17f}",
                "toRecipients",
            ),
        ] {
            let got = read(&f, None, &json_headers(), body.as_bytes());
            let Err(RestError::FoldedKey {
                place: "body key",
                key: k,
                expected: e,
                field: _,
            }) = &got
            else {
                panic!("{body}: {got:?}");
            };
            assert_eq!((k.as_str(), e.as_str()), (key, expected), "{body}");
            let text = got.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(text.contains("differs only by case from"), "{text}");
        }
        // Keys off the fields' paths are the operation's own, whatever their case.
        let got = read(
            &f,
            None,
            &json_headers(),
            br#"{"message":{"Subject":"hi","toRecipients":[{"emailAddress":{"address":"a@x","Name":"A"}}]}}"#,
        )
        .expect("reads");
        assert_eq!(got.len(), 1);
    }

    #[test]
    fn a_form_key_or_query_parameter_spelled_otherwise_but_for_case_is_refused() {
        let f = fields(&[
            ("to", "body.message.to", FieldKind::String),
            ("channel", "body.channel", FieldKind::String),
            ("labels", "body.labels", FieldKind::Strings),
        ]);
        for (body, key, expected) in [
            ("Channel=payroll", "Channel", "channel"),
            ("message[To]=payroll", "To", "to"),
            ("Message.to=payroll", "Message", "message"),
            ("label\u{17f}[]=a", "label\u{17f}", "labels"),
            (r#"Message={"to":"payroll"}"#, "Message", "message"),
        ] {
            let got = read(&f, None, &form_headers(), body.as_bytes());
            let Err(RestError::FoldedKey {
                place,
                key: k,
                expected: e,
                ..
            }) = &got
            else {
                panic!("{body}: {got:?}");
            };
            assert_eq!(
                (*place, k.as_str(), e.as_str()),
                ("form key", key, expected),
                "{body}"
            );
        }
        // A key inside JSON text given in a form value is a body key like any other.
        let got = read(&f, None, &form_headers(), br#"message={"To":"payroll"}"#);
        assert!(
            matches!(
                &got,
                Err(RestError::FoldedKey {
                    place: "body key",
                    ..
                })
            ),
            "{got:?}"
        );
        // Keys off the fields' paths are the operation's own, whatever their case.
        let got = read(
            &f,
            None,
            &form_headers(),
            b"Subject=hi&channel=c&message[Cc]=x",
        )
        .expect("reads");
        assert_eq!(got.len(), 1);

        let q = fields(&[("state", "query.state", FieldKind::String)]);
        let got = read(&q, Some("State=closed"), &HeaderMap::new(), b"");
        let Err(RestError::FoldedKey { place, key, .. }) = &got else {
            panic!("{got:?}");
        };
        assert_eq!((*place, key.as_str()), ("query parameter", "State"));
        let text = got.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains("query parameter"), "{text}");
        // A query parameter that folds onto a body field's key gives the field twice.
        let got = read(&f, Some("CHANNEL=x"), &form_headers(), b"channel=y");
        assert!(
            matches!(&got, Err(RestError::RepeatedField { .. })),
            "{got:?}"
        );
    }

    fn form_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
        h
    }

    #[test]
    fn nested_form_fields_are_read_as_apis_read_them() {
        let f = fields(&[
            ("to", "body.message.to", FieldKind::String),
            ("labels", "body.labels", FieldKind::Strings),
            ("names", "body.items[].name", FieldKind::Strings),
        ]);
        let read_form = |body: &str| -> Result<BTreeMap<String, FieldValue>, RestError> {
            read(&f, None, &form_headers(), body.as_bytes())
                .map(|got| got.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
        };
        for body in [
            "message%5Bto%5D=payroll&labels%5B%5D=a&labels%5B%5D=b&items%5B0%5D%5Bname%5D=x&items%5B1%5D%5Bname%5D=y",
            "message.to=payroll&labels=a&labels=b&items[][name]=x&items[][name]=y",
            r#"message={"to":"payroll"}&labels=a&labels=b&items=[{"name":"x"},{"name":"y"}]"#,
        ] {
            let got = read_form(body).expect(body);
            assert_eq!(got["to"], FieldValue::String("payroll".into()), "{body}");
            assert_eq!(
                got["labels"],
                FieldValue::Strings(vec!["a".into(), "b".into()]),
                "{body}"
            );
            assert_eq!(
                got["names"],
                FieldValue::Strings(vec!["x".into(), "y".into()]),
                "{body}"
            );
        }
        // One element given as JSON text: `items[0]={"name":"x"}`.
        let got = read_form(r#"items[0]={"name":"x"}"#).unwrap();
        assert_eq!(got["names"], FieldValue::Strings(vec!["x".into()]));
        // Text that is no JSON holds no nested field.
        assert!(!read_form("message=hello").unwrap().contains_key("to"));
    }

    #[test]
    fn a_nested_form_field_spelled_two_ways_or_nested_too_deep_is_refused() {
        let f = fields(&[
            ("to", "body.message.to", FieldKind::String),
            ("channel", "body.channel", FieldKind::String),
        ]);
        for body in [
            "message[to]=a&message.to=b",
            r#"message={"to":"a"}&message[to]=b"#,
            "message[to]=a&message[to]=b",
        ] {
            let got = read(&f, None, &form_headers(), body.as_bytes());
            assert!(
                matches!(got, Err(RestError::RepeatedField { .. })),
                "{body}: {got:?}"
            );
        }
        // `channel[x]` makes the channel an object: not the string policy reads.
        for body in ["channel[x]=payroll", "message[to][x]=a", "channel[]=a"] {
            let got = read(&f, None, &form_headers(), body.as_bytes());
            assert!(
                matches!(got, Err(RestError::FieldType { .. })),
                "{body}: {got:?}"
            );
        }
    }
}
