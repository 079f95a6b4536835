//! What Warden's two clients of remote servers share (Streamable HTTP, `streamable_http.rs`,
//! and the legacy HTTP+SSE transport, `legacy_sse.rs`): the server's credential header, the
//! server-sent events of a response read as they come, and errors described without URLs.

use serde_json::Value;

use super::endpoint::RemoteServer;
use super::error::LinkError;
use super::router::Router;
use crate::action::Principal;
use crate::protocol::{SseDecoder, SseSink};
use crate::secrets::{NoPrincipal, Placed};

/// Largest server-sent event accepted from a server.
const MAX_EVENT: usize = 16 * 1024 * 1024;

/// The upstream credential of `remote` (the server `router` speaks with), if it takes one: a
/// header or a query parameter; its forms are redacted from the server's messages. An
/// unavailable credential fails closed.
pub(super) async fn credential(
    remote: &RemoteServer,
    router: &Router,
) -> Result<Option<Placed>, LinkError> {
    let server = &*router.server;
    let Some(provider) = &remote.credential else {
        return Ok(None);
    };
    match provider
        .credential(&Principal::anonymous(), &NoPrincipal)
        .get()
        .await
    {
        Ok(c) => {
            router.redact(&c.echo);
            Ok(Some(c.placed.clone()))
        }
        Err(e) => Err(LinkError::Credential {
            server: server.to_owned(),
            reason: e.to_string(),
        }),
    }
}

/// `request` with the upstream credential: a header, or a query parameter (already encoded).
pub(super) fn with_credential(
    request: reqwest::RequestBuilder,
    credential: Option<Placed>,
) -> reqwest::RequestBuilder {
    match credential {
        None => request,
        Some(Placed::Header(name, value)) => request.header(name, value),
        Some(Placed::Query(name, value)) => {
            let value = percent_encoding::percent_decode_str(&value).decode_utf8_lossy();
            request.query(&[(name.as_str(), &*value)])
        }
    }
}

/// Reads the server-sent events of `response` until it ends, handing each to `event` with
/// its name (empty when it has none) and data. `Err` says why the stream broke.
pub(super) async fn read_events(
    response: &mut reqwest::Response,
    mut event: impl FnMut(&[u8], &[u8]),
) -> Result<(), String> {
    let mut decoder = SseDecoder::new(MAX_EVENT);
    let mut events = Collect::default();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                decoder.feed(&chunk, &mut events);
                for (name, data) in events.0.drain(..) {
                    event(&name, &data);
                }
            }
            Ok(None) => return Ok(()),
            Err(e) => return Err(describe(e)),
        }
    }
}

/// Dispatches the data of one `message` event (a JSON-RPC message) through `router`;
/// `during`: the request whose response carried it.
pub(super) fn dispatch_event(router: &Router, data: &[u8], during: Option<i64>) {
    match serde_json::from_slice::<Value>(data) {
        Ok(value) => router.dispatch(value, during),
        Err(_) if data.is_empty() => {}
        Err(e) => {
            tracing::info!(server = %router.server, error = %e, "MCP server sent an event that is not JSON")
        }
    }
}

/// The events decoded from one chunk.
#[derive(Default)]
struct Collect(Vec<(Vec<u8>, Vec<u8>)>);

impl SseSink for Collect {
    fn event(&mut self, event: &[u8], data: &[u8]) {
        self.0.push((event.to_vec(), data.to_vec()));
    }
}

/// A reqwest error without the URL (whose query could carry a secret or a session).
pub(super) fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    crate::text::bounded(&text, crate::text::FIELD_MAX).into_owned()
}
