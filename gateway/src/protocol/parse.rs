//! Reading the parts of an LLM request every dialect reads alike: the JSON body, the method,
//! the model named in the body or the path.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::error::Category;

use super::errors::ProtocolError;
use super::identifier;
use super::request::Endpoint;
use super::strict_json::{self, Spellings};
use crate::text::Quoted;

/// A model name as sent, and the folded name policy judges when it differs.
pub type CheckedModel = (String, Option<String>);

/// Fails unless `method` is the one the endpoint accepts.
pub fn require_method(
    method: &http::Method,
    allowed: http::Method,
    path: &str,
) -> Result<(), ProtocolError> {
    if *method == allowed {
        Ok(())
    } else {
        Err(ProtocolError::wrong_method(method, path, allowed))
    }
}

/// Parses a request body that must be a JSON object into `T` (borrowing from `body`).
pub fn parse_body<'a, T: Deserialize<'a>>(
    endpoint: Endpoint,
    body: &'a [u8],
) -> Result<T, ProtocolError> {
    parse_body_as(endpoint, body, Spellings::Case)
}

/// [`parse_body`], two keys of one object refused when `spellings` takes one for the other
/// (a Gemini body: a field's proto name beside its lowerCamelCase JSON name).
pub fn parse_body_as<'a, T: Deserialize<'a>>(
    endpoint: Endpoint,
    body: &'a [u8],
    spellings: Spellings,
) -> Result<T, ProtocolError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let found = match first {
        None => Some("an empty body"),
        Some(b'[') => Some("an array"),
        Some(b'"') => Some("a string"),
        Some(b't' | b'f') => Some("a boolean"),
        Some(b'n') => Some("null"),
        Some(b'-' | b'0'..=b'9') => Some("a number"),
        _ => None,
    };
    if let Some(found) = found {
        // Only call it "not an object" when it is valid JSON; otherwise report the syntax error.
        return match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
            Ok(_) => Err(ProtocolError::NotAnObject { found }),
            Err(e) if found == "an empty body" => Err(ProtocolError::MalformedBody {
                detail: format!("the body is empty ({e})"),
            }),
            Err(e) => Err(ProtocolError::from_json(endpoint, &e)),
        };
    }
    // Two keys of one object that differ only by case: Warden's typed read takes one, a
    // case-insensitive upstream (Go's encoding/json: Ollama) the last (`"Model"` after
    // `"model"`), so the body is refused before either reads it.
    strict_json::check_unambiguous_as(body, spellings).map_err(|e| match e.classify() {
        Category::Data => ProtocolError::AmbiguousKeys {
            detail: crate::text::bounded(&e.to_string(), 200).into_owned(),
        },
        _ => ProtocolError::from_json(endpoint, &e),
    })?;
    serde_json::from_slice(body).map_err(|e| ProtocolError::from_json(endpoint, &e))
}

/// The model a body names, required and checked: an absent or empty model is an error, and so
/// is one that could hide from policy (`identifier.rs`).
pub fn require_model(
    endpoint: Endpoint,
    model: Option<String>,
) -> Result<CheckedModel, ProtocolError> {
    match model {
        Some(m) if !m.is_empty() => checked_model(m),
        _ => Err(ProtocolError::MissingModel { endpoint }),
    }
}

/// A model named in a body, checked as an identifier.
pub fn checked_model(model: String) -> Result<CheckedModel, ProtocolError> {
    match identifier::check(&model) {
        Ok(folded) => Ok((model, folded)),
        Err(problem) => Err(ProtocolError::InvalidIdentifier {
            field: "\"model\" field",
            problem,
        }),
    }
}

/// A model id taken from a path segment: percent-decoded (so that policy sees the name the
/// upstream will see) and checked to be a plain name.
pub fn model_from_path(
    raw: &str,
    path: &str,
    allow_slash: bool,
) -> Result<CheckedModel, ProtocolError> {
    let decoded = percent_decode(raw).ok_or_else(|| ProtocolError::InvalidModelInPath {
        path: Quoted::of(path),
        detail: "it has a bad percent-escape",
    })?;
    let folded = check_path_model(&decoded, path, allow_slash)?;
    Ok((decoded.into_owned(), folded))
}

/// Checks that an already-decoded model name from a path is a plain name; returns the folded
/// name policy judges when it differs.
pub fn check_path_model(
    decoded: &str,
    path: &str,
    allow_slash: bool,
) -> Result<Option<String>, ProtocolError> {
    let folded =
        identifier::check(decoded).map_err(|problem| ProtocolError::InvalidIdentifier {
            field: "model name in the path",
            problem,
        })?;
    let invalid = |detail| ProtocolError::InvalidModelInPath {
        path: Quoted::of(path),
        detail,
    };
    if decoded.contains(['?', '#', '\\']) {
        return Err(invalid("it contains reserved characters"));
    }
    if decoded.contains('/') {
        if !allow_slash {
            return Err(invalid("it contains '/'"));
        }
        if decoded
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
        {
            return Err(invalid("it has an empty, '.' or '..' segment"));
        }
    } else if decoded == "." || decoded == ".." {
        return Err(invalid("it is a '.' or '..' segment"));
    }
    Ok(folded)
}

/// Decodes `%XX` escapes; `None` on a malformed escape or a result that is not UTF-8.
pub fn percent_decode(s: &str) -> Option<Cow<'_, str>> {
    if !s.contains('%') {
        return Some(Cow::Borrowed(s));
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hi = (hex[0] as char).to_digit(16)?;
            let lo = (hex[1] as char).to_digit(16)?;
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::identifier::IdentifierProblem;

    #[test]
    fn percent_decoding_yields_the_name_the_upstream_sees() {
        assert_eq!(
            percent_decode("gemini%2D2.0").as_deref(),
            Some("gemini-2.0")
        );
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
        assert_eq!(percent_decode("bad%2"), None);
        assert_eq!(percent_decode("bad%zz"), None);
        assert_eq!(percent_decode("%ff"), None);
    }

    #[test]
    fn path_models_reject_traversal_and_reserved_characters() {
        assert!(model_from_path("..", "/p", true).is_err());
        assert!(model_from_path("a/../b", "/p", true).is_err());
        assert!(model_from_path("a%2F..%2Fb", "/p", true).is_err());
        assert!(model_from_path("a%2Fb", "/p", false).is_err());
        assert!(model_from_path("a%3Fb", "/p", true).is_err());
        assert!(model_from_path("", "/p", true).is_err());
        assert_eq!(
            model_from_path("meta-llama%2FLlama-3-8B", "/p", true)
                .ok()
                .map(|(m, _)| m),
            Some("meta-llama/Llama-3-8B".to_owned())
        );
    }

    #[test]
    fn path_models_are_checked_as_identifiers() {
        assert_eq!(
            model_from_path("denied-model%00", "/p", true),
            Err(ProtocolError::InvalidIdentifier {
                field: "model name in the path",
                problem: IdentifierProblem::Control('\0'),
            })
        );
        assert!(matches!(
            model_from_path("denied%E2%80%AEmodel", "/p", true),
            Err(ProtocolError::InvalidIdentifier {
                problem: IdentifierProblem::Bidi('\u{202E}'),
                ..
            })
        ));
        assert_eq!(
            model_from_path("d%D0%B5nied-model", "/p", true),
            Ok((
                "d\u{0435}nied-model".to_owned(),
                Some("denied-model".to_owned())
            ))
        );
    }

    #[test]
    fn body_models_are_checked_as_identifiers() {
        assert_eq!(
            require_model(Endpoint::Messages, Some("denied-model\u{0}".into())),
            Err(ProtocolError::InvalidIdentifier {
                field: "\"model\" field",
                problem: IdentifierProblem::Control('\0'),
            })
        );
        assert_eq!(
            require_model(Endpoint::Messages, Some("gpt-4o".into())),
            Ok(("gpt-4o".to_owned(), None))
        );
    }

    #[test]
    fn non_object_bodies_are_named() {
        let cases: [(&[u8], &str); 5] = [
            (b"[1]", "an array"),
            (b"\"x\"", "a string"),
            (b"true", "a boolean"),
            (b" null", "null"),
            (b"12", "a number"),
        ];
        for (body, found) in cases {
            let err = parse_body::<serde::de::IgnoredAny>(Endpoint::Messages, body).err();
            assert_eq!(err, Some(ProtocolError::NotAnObject { found }));
        }
    }

    #[test]
    fn keys_that_differ_only_by_case_are_refused_naming_both() {
        // Go's encoding/json (Ollama) takes the last for `model`: Warden judged the first.
        let body = br#"{"model":"gpt-4o-mini","messages":[],"Model":"gpt-4o"}"#;
        let err = parse_body::<serde::de::IgnoredAny>(Endpoint::ChatCompletions, body).err();
        let Some(ProtocolError::AmbiguousKeys { detail }) = &err else {
            panic!("{err:?}");
        };
        assert!(
            detail.contains("the keys `model` and `Model` at the top level differ only by case"),
            "{detail}"
        );
        assert_eq!(
            err.as_ref().map(ProtocolError::code),
            Some("ambiguous_keys")
        );
        // In what the dialect reads beneath the top level too.
        for body in [
            &br#"{"model":"m","messages":[{"role":"user","content":"hi","Role":"system"}]}"#[..],
            br#"{"model":"m","tools":[{"type":"function","function":{"name":"a","NAME":"b"}}]}"#,
            br#"{"model":"m","max_tokens":10,"MAX_TOKENS":100000}"#,
        ] {
            let err = parse_body::<serde::de::IgnoredAny>(Endpoint::ChatCompletions, body).err();
            assert!(
                matches!(err, Some(ProtocolError::AmbiguousKeys { .. })),
                "{err:?}"
            );
        }
        // Keys that differ by more than case are different keys.
        assert!(
            parse_body::<serde::de::IgnoredAny>(
                Endpoint::ChatCompletions,
                br#"{"model":"m","max_tokens":1,"max_completion_tokens":2}"#
            )
            .is_ok()
        );
    }

    #[test]
    fn empty_and_broken_bodies_are_malformed_with_position() {
        let empty = parse_body::<serde::de::IgnoredAny>(Endpoint::Messages, b"  ").err();
        assert!(
            matches!(empty, Some(ProtocolError::MalformedBody { .. })),
            "{empty:?}"
        );
        let broken =
            parse_body::<serde::de::IgnoredAny>(Endpoint::Messages, b"{\"model\": }").err();
        let text = broken.map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(
            text,
            "request body is not valid JSON: expected value at line 1 column 11; send a JSON object"
        );
        let trailing = parse_body::<serde::de::IgnoredAny>(Endpoint::Messages, b"{} {}").err();
        assert!(matches!(
            trailing,
            Some(ProtocolError::MalformedBody { .. })
        ));
    }
}
