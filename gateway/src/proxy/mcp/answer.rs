//! The HTTP answers of MCP endpoints: a JSON-RPC message, an event stream Warden writes, or
//! an empty status.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{Either, Full};
use serde_json::Value;

use crate::mcp::EventBody;
use crate::protocol;
use crate::proxy::exchange::ProxyBody;

/// `body` as JSON under `status`.
pub(super) fn json_response(status: StatusCode, body: &Value) -> Response<ProxyBody> {
    protocol::json_response(status, body.to_string()).map(Either::Left)
}

/// An event stream fed by `body`'s channel.
pub(super) fn event_stream(body: EventBody) -> Response<ProxyBody> {
    let mut response = Response::new(Either::Right(Either::Right(body)));
    protocol::event_stream_headers(response.headers_mut());
    response
}

/// `status` without a body.
pub(super) fn empty(status: StatusCode) -> Response<ProxyBody> {
    let mut response = Response::new(Either::Left(Full::new(Bytes::new())));
    *response.status_mut() = status;
    response
}
