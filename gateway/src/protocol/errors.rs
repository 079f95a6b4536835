//! Why a request could not be interpreted, and HTTP errors in each provider's own shape.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use serde_json::json;

use super::{Endpoint, Protocol};

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
    /// The model in the path is empty or not a plain model name.
    #[error("the model name in path {path} is not valid: {detail}")]
    InvalidModelInPath {
        /// The request path.
        path: String,
        /// What is wrong with it.
        detail: &'static str,
    },
    /// A batch names a model other than the one in the path.
    #[error(
        "request {index} of the batch names model {found:?} but the path names {expected:?}; \
         every request of a batch must use the model of the path"
    )]
    ModelMismatch {
        /// Position of the offending request in the batch.
        index: usize,
        /// The model named by the path.
        expected: String,
        /// The model named by the request.
        found: String,
    },
    /// The path is not an endpoint of this protocol Warden knows; unknown endpoints are refused.
    #[error(
        "{method} {path} is not a {protocol} endpoint Warden understands; \
         unknown endpoints are refused, not forwarded"
    )]
    UnsupportedEndpoint {
        /// Protocol of the route.
        protocol: Protocol,
        /// Request method.
        method: http::Method,
        /// Request path (route prefix stripped).
        path: String,
    },
    /// The path is known but not with this method.
    #[error("{method} is not allowed on {path}; use {allowed}")]
    WrongMethod {
        /// Request method.
        method: http::Method,
        /// Request path (route prefix stripped).
        path: String,
        /// The method the endpoint accepts.
        allowed: http::Method,
    },
}

impl ProtocolError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            ProtocolError::UnsupportedEndpoint { .. } => StatusCode::NOT_FOUND,
            ProtocolError::WrongMethod { .. } => StatusCode::METHOD_NOT_ALLOWED,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// A short machine-readable code (the OpenAI `code` field).
    pub fn code(&self) -> &'static str {
        match self {
            ProtocolError::MalformedBody { .. } => "malformed_body",
            ProtocolError::InvalidBody { .. } => "invalid_body",
            ProtocolError::NotAnObject { .. } => "body_not_an_object",
            ProtocolError::MissingModel { .. } => "missing_model",
            ProtocolError::InvalidModelInPath { .. } => "invalid_model_in_path",
            ProtocolError::ModelMismatch { .. } => "model_mismatch",
            ProtocolError::UnsupportedEndpoint { .. } => "unsupported_endpoint",
            ProtocolError::WrongMethod { .. } => "method_not_allowed",
        }
    }

    /// This error as an HTTP response in the provider's own error shape.
    pub fn to_response(&self, protocol: Protocol) -> Response<Full<Bytes>> {
        error_response(protocol, self.status(), self.code(), &self.to_string())
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
}

/// Removes the content of double-quoted strings from a serde message, so that a value from the
/// request (`invalid type: string "<prompt text>"`) never reaches an error body or a log.
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
    out
}

/// The OpenAI error `type` for a status.
fn openai_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        500..=599 => "server_error",
        _ => "invalid_request_error",
    }
}

/// The Anthropic error `type` for a status (Anthropic's documented error types).
fn anthropic_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

/// The Google RPC status name for an HTTP status.
fn gemini_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        405 | 501 => "UNIMPLEMENTED",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        502 | 503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        500..=599 => "INTERNAL",
        _ => "INVALID_ARGUMENT",
    }
}

/// An HTTP error in the provider's own error shape: OpenAI `{"error":{message,type,param,code}}`,
/// Anthropic `{"type":"error","error":{type,message}}`, Gemini `{"error":{code,message,status}}`.
/// `code` also travels in the `x-warden-error` header.
pub fn error_response(
    protocol: Protocol,
    status: StatusCode,
    code: &str,
    message: &str,
) -> Response<Full<Bytes>> {
    let body = match protocol {
        Protocol::Openai => json!({
            "error": {
                "message": message,
                "type": openai_type(status),
                "param": null,
                "code": code,
            }
        }),
        Protocol::Anthropic => json!({
            "type": "error",
            "error": { "type": anthropic_type(status), "message": message }
        }),
        Protocol::Gemini => json!({
            "error": {
                "code": status.as_u16(),
                "message": message,
                "status": gemini_status(status),
                "details": [{
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": code,
                    "domain": "warden",
                }],
            }
        }),
    };
    let mut response = json_response(status, body.to_string());
    if let Ok(value) = HeaderValue::from_str(code) {
        response.headers_mut().insert("x-warden-error", value);
    }
    response
}

/// A response with a JSON body.
pub(crate) fn json_response(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body_json(response: Response<Full<Bytes>>) -> serde_json::Value {
        let bytes = response
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null)
    }

    #[tokio::test]
    async fn openai_error_has_message_type_param_and_code() {
        let response = error_response(
            Protocol::Openai,
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            "no valid agent credential",
        );
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()["content-type"], "application/json");
        assert_eq!(response.headers()["x-warden-error"], "invalid_api_key");
        let body = body_json(response).await;
        assert_eq!(body["error"]["message"], "no valid agent credential");
        assert_eq!(body["error"]["type"], "authentication_error");
        assert!(body["error"]["param"].is_null());
        assert_eq!(body["error"]["code"], "invalid_api_key");
    }

    #[tokio::test]
    async fn anthropic_error_uses_documented_types_per_status() {
        let cases = [
            (400, "invalid_request_error"),
            (401, "authentication_error"),
            (403, "permission_error"),
            (404, "not_found_error"),
            (413, "request_too_large"),
            (429, "rate_limit_error"),
            (500, "api_error"),
            (502, "api_error"),
            (503, "overloaded_error"),
            (504, "timeout_error"),
        ];
        for (status, kind) in cases {
            let status = StatusCode::from_u16(status).unwrap_or_default();
            let body = body_json(error_response(Protocol::Anthropic, status, "x", "m")).await;
            assert_eq!(body["type"], "error");
            assert_eq!(body["error"]["type"], kind, "status {status}");
            assert_eq!(body["error"]["message"], "m");
        }
    }

    #[tokio::test]
    async fn gemini_error_carries_numeric_code_and_rpc_status() {
        let cases = [
            (400, "INVALID_ARGUMENT"),
            (401, "UNAUTHENTICATED"),
            (403, "PERMISSION_DENIED"),
            (404, "NOT_FOUND"),
            (413, "INVALID_ARGUMENT"),
            (429, "RESOURCE_EXHAUSTED"),
            (500, "INTERNAL"),
            (502, "UNAVAILABLE"),
            (503, "UNAVAILABLE"),
            (504, "DEADLINE_EXCEEDED"),
        ];
        for (status, rpc) in cases {
            let http_status = StatusCode::from_u16(status).unwrap_or_default();
            let body = body_json(error_response(Protocol::Gemini, http_status, "why", "m")).await;
            assert_eq!(body["error"]["code"], status);
            assert_eq!(body["error"]["status"], rpc);
            assert_eq!(body["error"]["details"][0]["reason"], "why");
        }
    }

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
    fn statuses_match_error_kinds() {
        let wrong = ProtocolError::WrongMethod {
            method: http::Method::GET,
            path: "/v1/messages".into(),
            allowed: http::Method::POST,
        };
        assert_eq!(wrong.status(), StatusCode::METHOD_NOT_ALLOWED);
        let unknown = ProtocolError::UnsupportedEndpoint {
            protocol: Protocol::Openai,
            method: http::Method::POST,
            path: "/v1/files".into(),
        };
        assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            ProtocolError::NotAnObject { found: "an array" }.status(),
            StatusCode::BAD_REQUEST
        );
    }
}
