//! Response bodies every dialect sends: JSON, a complete event stream, an error with Warden's
//! stable error code.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

/// `x-warden-error`: Warden's stable error code on every error it answers.
pub const ERROR_HEADER: HeaderName = HeaderName::from_static("x-warden-error");

/// A response with a JSON body.
pub fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A 200 response carrying a complete server-sent event stream.
pub fn event_stream(body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    event_stream_headers(response.headers_mut());
    response
}

/// The headers of a server-sent event stream: its content type, and no caching.
pub fn event_stream_headers(headers: &mut http::HeaderMap) {
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
}

/// An error response: `body` (the dialect's error shape) with `code` in `x-warden-error`.
pub fn error(status: StatusCode, code: &str, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = json(status, body.to_string());
    if let Ok(value) = HeaderValue::from_str(code) {
        response.headers_mut().insert(ERROR_HEADER, value);
    }
    response
}
