//! A REST request's query and body as they go upstream when `fold_case:` names some of its
//! operation's fields: each value of those fields replaced by its folded form (`fold.rs`),
//! the form policy judged, and every other byte kept as the agent sent it. A query parameter
//! or form pair is re-encoded only when its value changed; in a JSON body (or JSON text in a
//! form value, `message={"to":…}`) only the strings the field's path reaches are written
//! again.

use std::ops::Range;

use http::HeaderMap;

use super::error::RestError;
use super::fields::{Reach, form_key, is_form, reach};
use super::fold;
use super::operations::{BodyStep, Field, FieldKind, FieldSource};

/// `query` with the values of the query fields among `fields` folded; `None` when nothing
/// changed.
pub(super) fn query(query: &str, fields: &[Field]) -> Result<Option<String>, RestError> {
    rewrite_pairs(query.as_bytes(), |key, value| {
        let Some(field) = fields
            .iter()
            .find(|f| matches!(&f.source, FieldSource::Query(name) if name == key))
        else {
            return Ok(None);
        };
        fold_text(field, value).map(Some)
    })
}

/// `body` (its type by `headers`) with the values of the body fields among `fields` folded;
/// `None` when nothing changed. A body that no longer reads as it did when it was judged is
/// refused.
pub(super) fn body(
    headers: &HeaderMap,
    body: &[u8],
    fields: &[Field],
) -> Result<Option<Vec<u8>>, RestError> {
    let steps: Vec<(&Field, &[BodyStep])> = fields
        .iter()
        .filter_map(|f| match &f.source {
            FieldSource::Body(steps) => Some((f, steps.as_slice())),
            FieldSource::Query(_) => None,
        })
        .collect();
    if steps.is_empty() || body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    if is_form(headers) {
        return form(body, &steps);
    }
    let mut spans = Vec::new();
    for (field, steps) in &steps {
        let at = json_strings(body, steps).ok_or_else(unreadable)?;
        spans.extend(at.into_iter().map(|span| (span, *field)));
    }
    replace_strings(body, spans)
}

/// A form body with the fields' values folded: a pair that names a field (or one of a
/// `strings` field's elements), or a parent given as JSON text.
fn form(body: &[u8], steps: &[(&Field, &[BodyStep])]) -> Result<Option<Vec<u8>>, RestError> {
    let folded = rewrite_pairs(body, |key, value| {
        let (path, _) = form_key(key);
        for (field, steps) in steps {
            match reach(&path, steps) {
                Reach::Off => {}
                Reach::Field => return fold_text(field, value).map(Some),
                Reach::Inside { element: true } if field.kind == FieldKind::Strings => {
                    return fold_text(field, value).map(Some);
                }
                Reach::Inside { .. } => {}
                Reach::Parent { below, element } => {
                    return in_json_text(field, value, steps, below, element);
                }
            }
        }
        Ok(None)
    })?;
    Ok(folded.map(String::into_bytes))
}

/// JSON text given in a form value for a parent of `field`'s path, `below` steps down it
/// (`element`: one element of the array the last of them reaches), with the field's strings
/// folded; `None` when it is no JSON or nothing changed.
fn in_json_text(
    field: &Field,
    text: &str,
    steps: &[BodyStep],
    below: usize,
    element: bool,
) -> Result<Option<String>, RestError> {
    if !text.trim_start().starts_with(['{', '[']) {
        return Ok(None);
    }
    // Read as `fields.rs` reads it: set under the last step taken, the path read on from it.
    let Some(last) = below.checked_sub(1) else {
        return Ok(None);
    };
    let key = serde_json::to_string(&steps[last].key).map_err(|_| unreadable())?;
    let (open, close) = if element { ("[", "]") } else { ("", "") };
    let prefix = format!("{{{key}:{open}");
    let wrapped = format!("{prefix}{text}{close}}}");
    let Some(spans) = json_strings(wrapped.as_bytes(), &steps[last..]) else {
        return Ok(None);
    };
    let spans = spans
        .into_iter()
        .map(|s| ((s.start - prefix.len())..(s.end - prefix.len()), field))
        .collect();
    let folded = replace_strings(text.as_bytes(), spans)?;
    folded
        .map(|bytes| String::from_utf8(bytes).map_err(|_| unreadable()))
        .transpose()
}

/// `field`'s text `value` folded, if folding changes it.
fn fold_text(field: &Field, value: &str) -> Result<String, RestError> {
    fold::field_text(&field.name, value, &mut false)
}

/// Form-encoded `pairs` (a query or a form body) with each value `fold` gives a new one for
/// (by the decoded key and value) written in its place, the key kept as sent; `None` when no
/// value changed.
fn rewrite_pairs(
    pairs: &[u8],
    mut fold: impl FnMut(&str, &str) -> Result<Option<String>, RestError>,
) -> Result<Option<String>, RestError> {
    let mut out = String::with_capacity(pairs.len());
    let mut changed = false;
    for (n, pair) in pairs.split(|b| *b == b'&').enumerate() {
        if n > 0 {
            out.push('&');
        }
        let raw = std::str::from_utf8(pair).map_err(|_| unreadable())?;
        let decoded = form_urlencoded::parse(pair).next();
        let folded = match &decoded {
            Some((key, value)) => fold(key, value)?.filter(|f| f != value),
            None => None,
        };
        match folded {
            Some(value) => {
                changed = true;
                let key = raw.split_once('=').map_or(raw, |(key, _)| key);
                out.push_str(key);
                out.push('=');
                out.extend(form_urlencoded::byte_serialize(value.as_bytes()));
            }
            None => out.push_str(raw),
        }
    }
    Ok(changed.then_some(out))
}

/// `text` with each JSON string at `spans` (quotes included) folded as its field's value;
/// `None` when none changed.
fn replace_strings(
    text: &[u8],
    mut spans: Vec<(Range<usize>, &Field)>,
) -> Result<Option<Vec<u8>>, RestError> {
    spans.sort_by_key(|(span, _)| span.start);
    let mut out = Vec::with_capacity(text.len());
    let mut from = 0;
    let mut changed = false;
    for (span, field) in spans {
        let value: String =
            serde_json::from_slice(&text[span.clone()]).map_err(|_| unreadable())?;
        let folded = fold_text(field, &value)?;
        if folded == value || span.start < from {
            continue;
        }
        changed = true;
        out.extend_from_slice(&text[from..span.start]);
        out.extend(
            serde_json::to_string(&folded)
                .map_err(|_| unreadable())?
                .bytes(),
        );
        from = span.end;
    }
    out.extend_from_slice(&text[from..]);
    Ok(changed.then_some(out))
}

/// A body that was read when it was judged and cannot be now.
fn unreadable() -> RestError {
    RestError::Body {
        detail: "it no longer reads as it was judged".to_owned(),
    }
}

/// The byte ranges (quotes included) of the JSON strings a field's body path `steps` reaches
/// in `text`: the string there, or each string of the array there (a `strings` field);
/// `None` when `text` is no JSON.
fn json_strings(text: &[u8], steps: &[BodyStep]) -> Option<Vec<Range<usize>>> {
    let mut reader = Reader { text, at: 0 };
    let mut out = Vec::new();
    reader.value(Want::Path(steps), &mut out)?;
    Some(out)
}

/// What the reader wants of the value it is at.
#[derive(Clone, Copy)]
enum Want<'s> {
    /// Nothing: it is read past.
    Skip,
    /// The value down these steps (none: this value).
    Path(&'s [BodyStep]),
    /// This value, if it is a string (an element of a `strings` field's array).
    String,
}

/// A cursor over JSON text already judged well-formed (`strict_json`).
struct Reader<'t> {
    text: &'t [u8],
    at: usize,
}

impl Reader<'_> {
    /// The next byte that is not whitespace, not consumed.
    fn peek(&mut self) -> Option<u8> {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.text.get(self.at) {
            self.at += 1;
        }
        self.text.get(self.at).copied()
    }

    /// Consumes `byte`, which must come next.
    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// Consumes `open` and, when it is empty, `close`: whether it is (`{}`, `[]`).
    fn opened(&mut self, open: u8, close: u8) -> Option<bool> {
        self.eat(open)?;
        let empty = self.peek()? == close;
        if empty {
            self.at += 1;
        }
        Some(empty)
    }

    /// A string: its range, quotes included.
    fn string(&mut self) -> Option<Range<usize>> {
        let start = self.at;
        self.eat(b'"')?;
        let mut i = self.at;
        loop {
            match self.text.get(i)? {
                b'\\' => i += 2,
                b'"' => break,
                _ => i += 1,
            }
        }
        self.at = i + 1;
        Some(start..self.at)
    }

    /// Reads one value, adding to `out` the strings `want` reaches in it.
    fn value(&mut self, want: Want<'_>, out: &mut Vec<Range<usize>>) -> Option<()> {
        match self.peek()? {
            b'"' => {
                let span = self.string()?;
                if matches!(want, Want::String | Want::Path([])) {
                    out.push(span);
                }
            }
            b'{' => self.object(want, out)?,
            b'[' => {
                let each = match want {
                    Want::Path([]) => Want::String,
                    _ => Want::Skip,
                };
                self.array(each, out)?;
            }
            _ => {
                // A number, true, false or null.
                while !matches!(
                    self.text.get(self.at),
                    None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                ) {
                    self.at += 1;
                }
            }
        }
        Some(())
    }

    /// Reads an object; the member `want`'s next step names is read on down its path.
    fn object(&mut self, want: Want<'_>, out: &mut Vec<Range<usize>>) -> Option<()> {
        if self.opened(b'{', b'}')? {
            return Some(());
        }
        loop {
            self.peek()?;
            let key = self.string()?;
            self.eat(b':')?;
            let step = match want {
                Want::Path([step, rest @ ..]) => {
                    let name: String = serde_json::from_slice(&self.text[key]).ok()?;
                    (name == step.key).then_some((step.each, rest))
                }
                _ => None,
            };
            match step {
                Some((true, rest)) if self.peek()? == b'[' => self.array(Want::Path(rest), out)?,
                Some((false, rest)) => self.value(Want::Path(rest), out)?,
                _ => self.value(Want::Skip, out)?,
            }
            if self.ended(b'}')? {
                return Some(());
            }
        }
    }

    /// Reads an array, each element as `each` wants it.
    fn array(&mut self, each: Want<'_>, out: &mut Vec<Range<usize>>) -> Option<()> {
        if self.opened(b'[', b']')? {
            return Some(());
        }
        loop {
            self.value(each, out)?;
            if self.ended(b']')? {
                return Some(());
            }
        }
    }

    /// After a member or an element: consumes the `,` before the next (`false`) or the
    /// `close` that ends the object or array (`true`).
    fn ended(&mut self, close: u8) -> Option<bool> {
        let next = self.peek()?;
        self.at += 1;
        match next {
            b',' => Some(false),
            b if b == close => Some(true),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::rest::fields::tests::fields;

    fn headers(content_type: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::CONTENT_TYPE, content_type.parse().unwrap());
        h
    }

    fn sent(content_type: &str, body: &str, fields: &[Field]) -> Option<String> {
        body_of(content_type, body, fields)
            .expect("folds")
            .map(|b| String::from_utf8(b).unwrap())
    }

    fn body_of(
        content_type: &str,
        body: &str,
        fields: &[Field],
    ) -> Result<Option<Vec<u8>>, RestError> {
        super::body(&headers(content_type), body.as_bytes(), fields)
    }

    #[test]
    fn folded_json_fields_are_rewritten_in_place_and_every_other_byte_kept() {
        let f = fields(&[
            ("channel", "body.channel", FieldKind::String),
            ("to", "body.message.to[].address", FieldKind::Strings),
            ("labels", "body.labels", FieldKind::Strings),
        ]);
        let body = r#"{ "text": "Hello GENERAL", "channel" : "GEN\u0045RAL", "n": 1.50,
            "message": {"to": [{"address": "Ops"}, {"address": "x"}], "channel": "KEEP"},
            "labels": ["A", "b"] }"#;
        assert_eq!(
            sent("application/json", body, &f).expect("changed"),
            r#"{ "text": "Hello GENERAL", "channel" : "general", "n": 1.50,
            "message": {"to": [{"address": "ops"}, {"address": "x"}], "channel": "KEEP"},
            "labels": ["a", "b"] }"#
        );
        // Nothing to fold: the body goes as it came.
        assert_eq!(
            sent("application/json", r#"{"channel":"general"}"#, &f),
            None
        );
        // A value that could hide from policy is refused, whatever was judged before.
        let hidden = body_of("application/json", "{\"channel\":\"a\\u200bb\"}", &f);
        assert!(
            matches!(hidden, Err(RestError::FieldIdentifier { .. })),
            "{hidden:?}"
        );
    }

    #[test]
    fn folded_form_fields_are_rewritten_as_apis_read_them_and_the_rest_kept() {
        let f = fields(&[
            ("channel", "body.channel", FieldKind::String),
            ("to", "body.message.to", FieldKind::String),
            ("labels", "body.labels", FieldKind::Strings),
        ]);
        let form = "application/x-www-form-urlencoded";
        assert_eq!(
            sent(form, "text=Hi+THERE&channel=GENERAL&labels%5B%5D=A", &f).unwrap(),
            "text=Hi+THERE&channel=general&labels%5B%5D=a"
        );
        assert_eq!(
            sent(form, "message%5Bto%5D=%C3%89QUIPE&labels=B", &f).unwrap(),
            "message%5Bto%5D=%C3%A9quipe&labels=b"
        );
        // A parent given as JSON text: the field's string inside it folded.
        assert_eq!(
            sent(form, r#"message={"to":"PAYROLL","x":"Y"}"#, &f).unwrap(),
            "message=%7B%22to%22%3A%22payroll%22%2C%22x%22%3A%22Y%22%7D"
        );
    }

    #[test]
    fn folded_query_fields_are_rewritten_and_the_rest_of_the_query_kept() {
        let f = fields(&[
            ("channel", "query.channel", FieldKind::String),
            ("cursor", "body.cursor", FieldKind::String),
        ]);
        assert_eq!(
            query("cursor=AbC&channel=Gen%45ral&limit=5", &f).unwrap(),
            Some("cursor=AbC&channel=general&limit=5".to_owned())
        );
        assert_eq!(query("channel=general", &f).unwrap(), None);
    }
}
