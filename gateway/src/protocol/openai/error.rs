//! OpenAI's error body: `{"error": {message, type, param, code}}`.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde_json::json;

use crate::protocol::response;

/// An error in OpenAI's shape; `code` is Warden's stable error code.
pub fn response(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    let body = json!({
        "error": {
            "message": message,
            "type": error_type(status),
            "param": null,
            "code": code,
        }
    });
    response::error(status, code, &body)
}

/// The OpenAI error `type` for a status.
fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        500..=599 => "server_error",
        _ => "invalid_request_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn openai_error_has_message_type_param_and_code() {
        let response = response(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            "no valid agent credential",
        );
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()["content-type"], "application/json");
        assert_eq!(response.headers()["x-warden-error"], "invalid_api_key");
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["error"]["message"], "no valid agent credential");
        assert_eq!(body["error"]["type"], "authentication_error");
        assert!(body["error"]["param"].is_null());
        assert_eq!(body["error"]["code"], "invalid_api_key");
    }

    #[test]
    fn error_types_follow_the_status() {
        for (status, kind) in [
            (400, "invalid_request_error"),
            (403, "permission_error"),
            (404, "not_found_error"),
            (413, "invalid_request_error"),
            (429, "rate_limit_error"),
            (503, "server_error"),
        ] {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(error_type(status), kind, "{status}");
        }
    }
}
