//! A streamed request that waits for its approval (`approvals.mode: wait`): answered at once
//! with its event stream (`200`, `x-warden-approval-id`), which carries a comment
//! (`: waiting for approval apr_…`) every `approvals.keepalive_interval`, so that the idle
//! timeouts of clients and proxies do not cut it. Once the approval is settled, the rest of the
//! path is walked as for any request (credential → forward → observe → record) and its answer
//! is spliced into the stream: the upstream's events, or the refusal (denied, expired, still
//! pending) in the stream the dialect answers it with; an answer that is no event stream (an
//! error) ends the stream as the protocol's in-stream error.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Either};
use tokio::sync::mpsc;
use tracing::{Instrument, Span};

use super::exchange::{Exchange, ProxyBody};
use super::refusal::APPROVAL_HEADER;
use super::stages::Waiting;
use super::{Decided, go_on, record};
use crate::mcp::EventBody;
use crate::protocol::{self, Dialect};
use crate::snapshot::Snapshot;
use crate::upstream::UpstreamClient;

/// Chunks held for a slow agent.
const BUFFER: usize = 16;
/// The most of an answer that is no event stream (an error body) read for the in-stream error.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// A decided request that waits for its approval in its stream.
pub(super) struct InStream {
    /// Its approval, and how often the stream is kept alive.
    pub waiting: Waiting,
    /// The request, for the rest of the path.
    pub decided: Decided,
}

/// The event stream `held` is answered with at once; the approval is settled, the rest of the
/// path walked and its answer spliced in by a task of its own (in `span`).
pub(super) async fn answer(
    mut ex: Exchange,
    snap: Arc<Snapshot>,
    upstream: Arc<UpstreamClient>,
    held: InStream,
    span: Span,
) -> Response<ProxyBody> {
    let InStream {
        waiting: Waiting { approval, every },
        decided,
    } = held;
    let dialect = decided.route.protocol.dialect();
    let (tx, body) = EventBody::channel(BUFFER);
    let mut response = Response::new(Either::Right(Either::Right(body)));
    let headers = response.headers_mut();
    protocol::event_stream_headers(headers);
    headers.insert(
        protocol::DECISION_HEADER,
        HeaderValue::from_static("approval_required"),
    );
    if let Ok(id) = HeaderValue::try_from(approval.id()) {
        headers.insert(APPROVAL_HEADER, id);
    }
    ex.stamp(headers).await;
    let comment = Bytes::from(format!(": waiting for approval {}\n\n", approval.id()));
    tokio::spawn(
        async move {
            // The agent gone, nothing waits any more: the approval stays for its next try.
            let Some(settled) = keep_alive(approval.settle(&mut ex), &tx, comment, every).await
            else {
                tracing::debug!("the agent left while its request waited for approval");
                return;
            };
            let result = match settled {
                Ok(()) => go_on(&snap, &upstream, &mut ex, decided).await,
                Err(refusal) => Err(refusal),
            };
            splice(record(ex, result).await, dialect, &tx).await;
        }
        .instrument(span),
    );
    response
}

/// `settle` run to its end while `tx` carries `comment` at once and every `every`; `None`
/// when the agent left first.
async fn keep_alive<T>(
    settle: impl Future<Output = T>,
    tx: &mpsc::Sender<Bytes>,
    comment: Bytes,
    every: Duration,
) -> Option<T> {
    tokio::pin!(settle);
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            settled = &mut settle => return Some(settled),
            _ = ticks.tick() => if tx.send(comment.clone()).await.is_err() {
                return None;
            },
            () = tx.closed() => return None,
        }
    }
}

/// Sends `response`'s body on `tx`: an event stream as it comes; anything else (an error) as
/// the dialect's in-stream error.
async fn splice(
    response: Response<ProxyBody>,
    dialect: &'static dyn Dialect,
    tx: &mpsc::Sender<Bytes>,
) {
    let (parts, mut body) = response.into_parts();
    let event_stream = parts
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(is_event_stream);
    if parts.status != StatusCode::OK || !event_stream {
        let mut read = Vec::new();
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                read.extend_from_slice(data);
            }
            if read.len() > MAX_ERROR_BODY {
                break;
            }
        }
        let error = match serde_json::from_slice(&read) {
            Ok(error) => error,
            Err(_) => {
                error_body(
                    dialect,
                    parts.status,
                    "upstream_error",
                    &format!("the upstream answered {} after the approval", parts.status),
                )
                .await
            }
        };
        let _ = tx.send(dialect.stream_error(&error)).await;
        return;
    }
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data()
                    && tx.send(data).await.is_err()
                {
                    return;
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "the upstream stream failed after the approval");
                let error = error_body(
                    dialect,
                    StatusCode::BAD_GATEWAY,
                    "upstream_stream_failed",
                    "the upstream's stream broke off",
                )
                .await;
                let _ = tx.send(dialect.stream_error(&error)).await;
                return;
            }
        }
    }
}

/// Whether a `Content-Type` is `text/event-stream`: a media type's case carries nothing, and
/// parameters may follow it (`Text/Event-Stream; charset=utf-8`).
fn is_event_stream(content_type: &HeaderValue) -> bool {
    let media_type = content_type.as_bytes().split(|&b| b == b';').next();
    media_type.is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"text/event-stream"))
}

/// The body of `dialect`'s error with `status`, `code` and `message`.
async fn error_body(
    dialect: &'static dyn Dialect,
    status: StatusCode,
    code: &str,
    message: &str,
) -> serde_json::Value {
    let body = dialect.error(status, code, message).into_body();
    let bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| serde_json::json!({"error": {"message": message, "code": code}}))
}

#[cfg(test)]
mod tests {
    use http_body_util::Full;

    use super::*;
    use crate::protocol::Protocol;

    /// Everything `body` carried until its senders were gone.
    async fn drain(mut body: EventBody) -> String {
        let mut out = String::new();
        while let Some(chunk) = body.next().await {
            out.push_str(&String::from_utf8_lossy(&chunk));
        }
        out
    }

    #[tokio::test]
    async fn the_stream_carries_a_comment_at_once_and_at_each_interval_until_settled() {
        let (tx, body) = EventBody::channel(BUFFER);
        let comment = Bytes::from_static(b": waiting for approval apr_1\n\n");
        let settled = keep_alive(
            tokio::time::sleep(Duration::from_millis(130)),
            &tx,
            comment,
            Duration::from_millis(50),
        )
        .await;
        assert_eq!(settled, Some(()));
        drop(tx);
        let read = drain(body).await;
        // At 0, 50 and 100 ms.
        assert_eq!(read, ": waiting for approval apr_1\n\n".repeat(3));
    }

    #[tokio::test]
    async fn the_wait_ends_when_the_agent_leaves() {
        let (tx, body) = EventBody::channel(BUFFER);
        drop(body);
        let settled = keep_alive(
            std::future::pending::<()>(),
            &tx,
            Bytes::from_static(b": waiting\n\n"),
            Duration::from_millis(10),
        )
        .await;
        assert_eq!(settled, None);
    }

    #[tokio::test]
    async fn an_answer_that_is_no_event_stream_ends_the_stream_as_the_protocols_error() {
        for (protocol, expected) in [
            (Protocol::Openai, "data: {"),
            (Protocol::Anthropic, "event: error\ndata: {"),
        ] {
            let dialect = protocol.dialect();
            let refusal = dialect
                .error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "approval_unavailable",
                    "no store",
                )
                .map(Either::Left);
            let (tx, body) = EventBody::channel(BUFFER);
            splice(refusal, dialect, &tx).await;
            drop(tx);
            let read = drain(body).await;
            assert!(read.starts_with(expected), "{read}");
            assert!(
                read.contains("\"error\":{") && read.contains("no store"),
                "{read}"
            );
            assert_eq!(
                read.matches('\n').count(),
                expected.matches('\n').count() + 2
            );
        }
    }

    #[tokio::test]
    async fn an_event_stream_answer_passes_as_it_is_whatever_the_case_of_its_media_type() {
        let stream = "data: {\"a\":1}\n\ndata: [DONE]\n\n";
        for content_type in [
            "text/event-stream",
            "Text/Event-Stream; charset=utf-8",
            "TEXT/EVENT-STREAM ;charset=UTF-8",
        ] {
            let mut answer = Response::new(Either::Left(Full::new(Bytes::from_static(
                stream.as_bytes(),
            ))));
            protocol::event_stream_headers(answer.headers_mut());
            answer
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            let (tx, body) = EventBody::channel(BUFFER);
            splice(answer, Protocol::Openai.dialect(), &tx).await;
            drop(tx);
            assert_eq!(drain(body).await, stream, "{content_type}");
        }
        // A media type that only begins with it is another.
        for other in ["text/event-streamed", "application/json"] {
            assert!(
                !is_event_stream(&HeaderValue::from_static(other)),
                "{other}"
            );
        }
    }
}
