//! Why a request could not be interpreted. Messages quote the request only through [`Quoted`]:
//! a short, escaped prefix, never more.

use super::identifier::IdentifierProblem;
use super::request::Endpoint;
use super::rest::error::RestError;
use crate::text::Quoted;

/// Most characters of a parser's description kept in an error message.
const DETAIL_CHARS: usize = 160;

/// A request Warden cannot interpret: refused before it reaches the upstream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The body is not JSON at all (syntax error or truncated input).
    #[error("request body is not valid JSON: {detail}; send a JSON object")]
    MalformedBody {
        /// serde's description with its position; never contains request text.
        detail: String,
    },
    /// The body is JSON but a field Warden reads has the wrong type or value.
    #[error("request body does not match the {endpoint} request shape: {detail}")]
    InvalidBody {
        /// Endpoint whose shape was expected.
        endpoint: Endpoint,
        /// serde's description with its position, quoted values removed.
        detail: String,
    },
    /// Two keys of one object differ only by case (or are the same): readers differ on
    /// which one counts, so the body is not judged.
    #[error("request body is ambiguous: {detail}")]
    AmbiguousKeys {
        /// Both keys (quoted short, escaped) and where they are, with the position.
        detail: String,
    },
    /// The body is valid JSON but not an object.
    #[error("request body must be a JSON object, found {found}")]
    NotAnObject {
        /// What was found instead (`an array`, `a string`, `an empty body`, ...).
        found: &'static str,
    },
    /// The body names no model where the endpoint requires one.
    #[error("request body has no \"model\" field; {endpoint} requests must name the model")]
    MissingModel {
        /// Endpoint that requires a model.
        endpoint: Endpoint,
    },
    /// An identifier (a model name) could hide from policy: refused, not judged.
    #[error("the {field} is not a valid name: {problem}")]
    InvalidIdentifier {
        /// Where it was found (`"model" field`, `model name in the path`).
        field: &'static str,
        /// What is wrong with it.
        problem: IdentifierProblem,
    },
    /// The model in the path is not a plain model name.
    #[error("the model name in path {path} is not valid: {detail}")]
    InvalidModelInPath {
        /// The request path, bounded.
        path: Quoted,
        /// What is wrong with it.
        detail: &'static str,
    },
    /// A body (or one request of a batch) names a model other than the one in the path.
    #[error(
        "{} names model {found} but the path names {expected}; a model named in the body \
         must be the model of the path (as `models/{{model}}` or `{{model}}`), or be left out",
        mismatch_place(*.index)
    )]
    ModelMismatch {
        /// Position of the offending request in a batch; `None` for the body itself.
        index: Option<usize>,
        /// The model named by the path, bounded.
        expected: Quoted,
        /// The model named by the request, bounded.
        found: Quoted,
    },
    /// The body asks for something Warden does not forward, since it could not judge or bound
    /// it.
    #[error(
        "the {endpoint} request sets {option}, which Warden does not forward: {why}; {instead}"
    )]
    UnsupportedOption {
        /// Endpoint of the request.
        endpoint: Endpoint,
        /// The option as the body sets it.
        option: &'static str,
        /// Why it is not forwarded.
        why: &'static str,
        /// What to send instead.
        instead: &'static str,
    },
    /// The request names content cached at the provider (Gemini's `cachedContent`), on a
    /// route that does not allow it: its system text and tools were never judged by policy.
    #[error(
        "the {endpoint} request names a cachedContent: content cached at the provider, whose \
         system text and tools Warden never saw (caches cannot be made through Warden), so \
         policy and inspection cannot judge them; send the content in the request itself, or \
         ask the operator to set allow_cached_content: true on this route"
    )]
    CachedContent {
        /// Endpoint of the request.
        endpoint: Endpoint,
    },
    /// The path is not an endpoint of this protocol Warden knows; unknown endpoints are refused.
    #[error(
        "{method} {path} is not a {dialect} endpoint Warden understands; \
         unknown endpoints are refused, not forwarded"
    )]
    UnsupportedEndpoint {
        /// The route's dialect (`openai`, ...).
        dialect: &'static str,
        /// Request method, bounded.
        method: Quoted,
        /// Request path (route prefix stripped), bounded.
        path: Quoted,
    },
    /// The path is known but not with this method.
    #[error("{method} is not allowed on {path}; use {allowed}")]
    WrongMethod {
        /// Request method, bounded.
        method: Quoted,
        /// Request path (route prefix stripped), bounded.
        path: Quoted,
        /// The method the endpoint accepts.
        allowed: http::Method,
    },
    /// A REST request Warden will not judge as sent.
    #[error(transparent)]
    Rest(#[from] RestError),
}

impl ProtocolError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> http::StatusCode {
        match self {
            ProtocolError::UnsupportedEndpoint { .. } => http::StatusCode::NOT_FOUND,
            ProtocolError::WrongMethod { .. } => http::StatusCode::METHOD_NOT_ALLOWED,
            ProtocolError::Rest(e) => e.status(),
            _ => http::StatusCode::BAD_REQUEST,
        }
    }

    /// A short machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ProtocolError::MalformedBody { .. } => "malformed_body",
            ProtocolError::InvalidBody { .. } => "invalid_body",
            ProtocolError::AmbiguousKeys { .. } => "ambiguous_keys",
            ProtocolError::NotAnObject { .. } => "body_not_an_object",
            ProtocolError::MissingModel { .. } => "missing_model",
            ProtocolError::InvalidIdentifier { .. } => "invalid_identifier",
            ProtocolError::InvalidModelInPath { .. } => "invalid_model_in_path",
            ProtocolError::ModelMismatch { .. } => "model_mismatch",
            ProtocolError::UnsupportedOption { .. } => "unsupported_option",
            ProtocolError::CachedContent { .. } => "cached_content_refused",
            ProtocolError::UnsupportedEndpoint { .. } => "unsupported_endpoint",
            ProtocolError::WrongMethod { .. } => "method_not_allowed",
            ProtocolError::Rest(e) => e.code(),
        }
    }

    /// Converts a serde_json error on a request body, dropping any quoted input it echoes.
    pub(crate) fn from_json(endpoint: Endpoint, err: &serde_json::Error) -> Self {
        use serde_json::error::Category;
        let detail = redact_quoted(&err.to_string());
        match err.classify() {
            Category::Data => ProtocolError::InvalidBody { endpoint, detail },
            Category::Io | Category::Syntax | Category::Eof => {
                ProtocolError::MalformedBody { detail }
            }
        }
    }

    /// The same error for a method and path, each bounded.
    pub(crate) fn wrong_method(method: &http::Method, path: &str, allowed: http::Method) -> Self {
        ProtocolError::WrongMethod {
            method: Quoted::of(method.as_str()),
            path: Quoted::of(path),
            allowed,
        }
    }

    /// A path the dialect named `dialect` does not have.
    pub(crate) fn unsupported(dialect: &'static str, method: &http::Method, path: &str) -> Self {
        ProtocolError::UnsupportedEndpoint {
            dialect,
            method: Quoted::of(method.as_str()),
            path: Quoted::of(path),
        }
    }
}

/// Removes the content of double-quoted strings from a serde message, so that a value from the
/// request (`invalid type: string "<prompt text>"`) never reaches an error body or a log.
/// Where a mismatched model was named: `request 2 of the batch`, or `the body`.
fn mismatch_place(index: Option<usize>) -> String {
    match index {
        Some(index) => format!("request {index} of the batch"),
        None => "the body".to_owned(),
    }
}

fn redact_quoted(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut in_quote = false;
    let mut escaped = false;
    for c in msg.chars() {
        if in_quote {
            match (escaped, c) {
                (false, '\\') => escaped = true,
                (false, '"') => {
                    in_quote = false;
                    out.push_str("\"…\"");
                }
                _ => escaped = false,
            }
        } else if c == '"' {
            in_quote = true;
        } else {
            out.push(c);
        }
    }
    if in_quote {
        out.push_str("\"…\"");
    }
    if let Some((cut, _)) = out.char_indices().nth(DETAIL_CHARS) {
        out.truncate(cut);
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::QUOTE_MAX;

    #[test]
    fn type_errors_do_not_echo_request_text() {
        let err = serde_json::from_str::<bool>("\"my secret prompt\"").unwrap_err();
        let converted = ProtocolError::from_json(Endpoint::ChatCompletions, &err);
        let text = converted.to_string();
        assert!(!text.contains("secret"), "{text}");
        assert!(text.contains("line 1 column"), "{text}");
        assert!(matches!(converted, ProtocolError::InvalidBody { .. }));
    }

    #[test]
    fn redaction_handles_escaped_quotes_inside_values() {
        let msg = r#"invalid type: string "a \"b\" c", expected a boolean at line 1 column 9"#;
        assert_eq!(
            redact_quoted(msg),
            "invalid type: string \"…\", expected a boolean at line 1 column 9"
        );
    }

    #[test]
    fn parser_descriptions_are_bounded() {
        let long = format!("expected `{}` at line 1 column 2", "x".repeat(1_000_000));
        let text = redact_quoted(&long);
        assert_eq!(text.chars().count(), DETAIL_CHARS + 1);
        assert!(text.ends_with('…'));
    }

    #[test]
    fn echoes_keep_a_short_escaped_prefix_of_multi_megabyte_values() {
        let huge = "/v1/".to_owned() + &"a".repeat(8 * 1024 * 1024);
        let echo = Quoted::of(&huge);
        assert_eq!(echo.as_str().chars().count(), QUOTE_MAX + 1);
        assert!(echo.as_str().starts_with("/v1/aaa") && echo.as_str().ends_with('…'));
        assert_eq!(
            Quoted::of("/v1/files").as_str(),
            "/v1/files",
            "short values whole"
        );
        assert_eq!(
            Quoted::of("a\u{0}b\u{202e}c\nd").as_str(),
            "a\\u{0}b\\u{202e}c\\u{a}d",
            "controls and bidi escaped"
        );
        let error = ProtocolError::unsupported("openai", &http::Method::POST, &huge);
        assert!(error.to_string().len() < 300, "{error}");
        let error = ProtocolError::ModelMismatch {
            index: Some(1),
            expected: Quoted::of("m"),
            found: Quoted::of(&huge),
        };
        assert!(error.to_string().len() < 300, "{error}");
        let error = ProtocolError::InvalidModelInPath {
            path: Quoted::of(&huge),
            detail: "it contains '/'",
        };
        assert!(error.to_string().len() < 300, "{error}");
    }

    #[test]
    fn statuses_match_error_kinds() {
        let wrong =
            ProtocolError::wrong_method(&http::Method::GET, "/v1/messages", http::Method::POST);
        assert_eq!(wrong.status(), http::StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(
            wrong.to_string(),
            "GET is not allowed on /v1/messages; use POST"
        );
        let unknown = ProtocolError::unsupported("openai", &http::Method::POST, "/v1/files");
        assert_eq!(unknown.status(), http::StatusCode::NOT_FOUND);
        assert_eq!(
            ProtocolError::NotAnObject { found: "an array" }.status(),
            http::StatusCode::BAD_REQUEST
        );
        let invalid = ProtocolError::InvalidIdentifier {
            field: "\"model\" field",
            problem: IdentifierProblem::Control('\0'),
        };
        assert_eq!(invalid.status(), http::StatusCode::BAD_REQUEST);
        assert_eq!(invalid.code(), "invalid_identifier");
        assert_eq!(
            invalid.to_string(),
            "the \"model\" field is not a valid name: it contains the control character U+0000"
        );
    }
}
