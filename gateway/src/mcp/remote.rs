//! What Warden's two clients of remote servers share (Streamable HTTP, `streamable_http.rs`,
//! and the legacy HTTP+SSE transport, `legacy_sse.rs`): the server's credential header, the
//! server-sent events of a response read as they come, and errors described without URLs.

use std::sync::Arc;

use serde_json::Value;

use super::endpoint::RemoteServer;
use super::error::LinkError;
use super::router::Router;
use crate::action::Principal;
use crate::protocol::{SseDecoder, SseSink};
use crate::secrets::{NoPrincipal, Placed};

/// Largest server-sent event, and largest JSON answer, accepted from a server.
pub(super) const MAX_EVENT: usize = 16 * 1024 * 1024;

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
        Err(e) => {
            tracing::warn!(server, code = e.code(), error = %e, "the MCP server's credential is unavailable; requests to it are refused (fail closed)");
            Err(LinkError::Credential {
                server: server.to_owned(),
                reason: e.to_string(),
                code: e.code(),
            })
        }
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

/// The server-sent events of a response, read as they come.
pub(super) struct Events<'a> {
    response: &'a mut reqwest::Response,
    decoder: SseDecoder,
    ready: std::collections::VecDeque<(Vec<u8>, Vec<u8>)>,
}

impl<'a> Events<'a> {
    /// The events of `response`.
    pub(super) fn of(response: &'a mut reqwest::Response) -> Events<'a> {
        Events {
            response,
            decoder: SseDecoder::new(MAX_EVENT),
            ready: std::collections::VecDeque::new(),
        }
    }

    /// The next event: its name (empty when it has none) and data; `None` once the stream
    /// ended, `Err` why it broke.
    pub(super) async fn next(&mut self) -> Result<Option<(Vec<u8>, Vec<u8>)>, String> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Ok(Some(event));
            }
            match self.response.chunk().await {
                Ok(Some(chunk)) => {
                    let mut events = Collect::default();
                    self.decoder.feed(&chunk, &mut events);
                    self.ready.extend(events.0);
                }
                Ok(None) => return Ok(None),
                Err(e) => return Err(describe(e)),
            }
        }
    }
}

/// The body of `response`, at most `max` bytes: a larger one is not read further (a server
/// cannot exhaust Warden's memory), and `Err` says why, as does a body that broke.
pub(super) async fn read_body(
    response: &mut reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, String> {
    let too_large = || {
        format!(
            "the server's answer is larger than {} bytes, the most Warden reads",
            max
        )
    };
    let announced = response.content_length().unwrap_or(0);
    if usize::try_from(announced).map_or(true, |n| n > max) {
        return Err(too_large());
    }
    let mut body = Vec::with_capacity(usize::try_from(announced).unwrap_or(0));
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > max {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(describe(e)),
        }
    }
}

/// Dispatches the data of one `message` event (a JSON-RPC message) through `router`;
/// `during`: the request whose response carried it.
pub(super) async fn dispatch_event(router: &Arc<Router>, data: &[u8], during: Option<i64>) {
    match serde_json::from_slice::<Value>(data) {
        Ok(value) => router.dispatch(value, during).await,
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

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A server that answers every connection with `head` and `size` bytes of body.
    async fn serving(head: &'static str, size: usize) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("address"));
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = [0u8; 1024];
                let _ = socket.read(&mut request).await;
                let _ = socket.write_all(head.as_bytes()).await;
                let chunked = head.contains("chunked");
                let mut left = size;
                while left > 0 {
                    let n = left.min(512);
                    let data = vec![b' '; n];
                    let written = if chunked {
                        let mut framed = format!("{n:x}\r\n").into_bytes();
                        framed.extend_from_slice(&data);
                        framed.extend_from_slice(b"\r\n");
                        socket.write_all(&framed).await
                    } else {
                        socket.write_all(&data).await
                    };
                    if written.is_err() {
                        return;
                    }
                    left -= n;
                }
                if chunked {
                    let _ = socket.write_all(b"0\r\n\r\n").await;
                }
            }
        });
        url
    }

    #[tokio::test]
    async fn a_json_answer_past_the_limit_is_not_read() {
        let client = reqwest::Client::new();
        for (head, size) in [
            (
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 4096\r\n\r\n",
                4096,
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
                4096,
            ),
        ] {
            let url = serving(head, size).await;
            let mut response = client.get(&url).send().await.expect("answered");
            let err = read_body(&mut response, 1024).await.expect_err(head);
            assert!(err.contains("larger than 1024 bytes"), "{err}");
            // Within the limit, the body is read whole.
            let mut response = client.get(&url).send().await.expect("answered");
            assert_eq!(
                read_body(&mut response, 4096).await.map(|b| b.len()),
                Ok(4096)
            );
        }
    }
}
