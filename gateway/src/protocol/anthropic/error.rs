//! Anthropic's error body: `{"type": "error", "error": {type, message}}`.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde_json::json;

use crate::protocol::response;

/// An error in Anthropic's shape; `code` travels in `x-warden-error`.
pub fn response(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    let body = json!({
        "type": "error",
        "error": { "type": error_type(status), "message": message }
    });
    response::error(status, code, &body)
}

/// The Anthropic error `type` for a status (Anthropic's documented error types).
fn error_type(status: StatusCode) -> &'static str {
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

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

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
            let response = response(status, "x", "m");
            assert_eq!(response.headers()["x-warden-error"], "x");
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(body["type"], "error");
            assert_eq!(body["error"]["type"], kind, "status {status}");
            assert_eq!(body["error"]["message"], "m");
        }
    }
}
