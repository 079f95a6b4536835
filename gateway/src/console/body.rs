//! Every console request's body, read whole before its handler runs: within
//! `limits.body_timeout` (the proxy's limit) and [`BODY_MAX`] bytes. A body trickled in
//! slower is answered 408 (`request_body_timeout`, as the proxy answers) and its connection
//! freed, so idle browsers' forms cannot hold the console's connections open.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::app::Console;
use super::error::html;
use super::pages;
use crate::protocol::body::{BodyError, read};
use crate::protocol::config::LimitsConfig;

/// The largest body the console reads: its forms are a few KiB, a passkey's answer (an
/// attestation with its certificates) some tens at most.
pub const BODY_MAX: usize = 64 * 1024;

/// Reads the request's body whole, then runs the handler on it; refuses a body too slow or
/// too large.
pub async fn read_whole(
    State(console): State<Arc<Console>>,
    request: Request,
    next: Next,
) -> Response {
    let limits = LimitsConfig {
        max_request_bytes: BODY_MAX,
        body_timeout: console.shared.snapshot.load().config.limits.body_timeout,
        ..LimitsConfig::default()
    };
    let (parts, body) = request.into_parts();
    match read(body, &parts.headers, &limits).await {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(error) => {
            let message = match &error {
                BodyError::TooLarge { .. } => {
                    format!("The request is larger than the {BODY_MAX} bytes the console reads.")
                }
                other => other.to_string(),
            };
            let mut page = html(
                error.status(),
                pages::layout(
                    "Request not read",
                    None,
                    &pages::problem("Request not read", &message, None),
                ),
            );
            if let Ok(code) = http::HeaderValue::from_str(error.code()) {
                page.headers_mut()
                    .insert(crate::protocol::ERROR_HEADER, code);
            }
            page
        }
    }
}
