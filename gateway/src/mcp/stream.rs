//! Warden's own event streams to agents: a body of server-sent events handed over a channel
//! by the task that relays an upstream's messages, each message one `event: message`, and
//! the relay of a session's server messages with keep-alive comments.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use serde_json::Value;
use tokio::sync::mpsc;

use super::resume::Stream;

/// A response body fed by a channel; it ends when the sender is dropped.
pub struct EventBody {
    rx: mpsc::Receiver<Bytes>,
}

impl EventBody {
    /// A body and the sender that feeds it.
    pub fn channel(capacity: usize) -> (mpsc::Sender<Bytes>, EventBody) {
        let (tx, rx) = mpsc::channel(capacity);
        (tx, EventBody { rx })
    }

    /// The next chunk, or `None` once every sender is gone.
    pub async fn next(&mut self) -> Option<Bytes> {
        self.rx.recv().await
    }
}

impl Body for EventBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}

/// One JSON-RPC message as a server-sent event (`event: message`).
pub fn event(message: &Value) -> Bytes {
    message_event(Vec::with_capacity(128), message)
}

/// One JSON-RPC message as a server-sent event with the id `<tag>-<stream>-<n>`
/// (`resume.rs`).
pub fn identified_event(tag: u64, stream: u64, n: u64, message: &Value) -> Bytes {
    use std::io::Write as _;
    let mut out = Vec::with_capacity(160);
    let _ = writeln!(out, "id: {tag:016x}-{stream}-{n}");
    message_event(out, message)
}

/// `message` appended to `out` as an `event: message`.
fn message_event(mut out: Vec<u8>, message: &Value) -> Bytes {
    out.extend_from_slice(b"event: message\ndata: ");
    // serde_json escapes newlines inside strings: the data is one line.
    let _ = serde_json::to_writer(&mut out, message);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// A comment that keeps an idle event stream open through proxies.
const KEEPALIVE: &[u8] = b": keepalive\n\n";

/// Relays a session's server messages (`events`) to an agent's event stream (`tx`), through
/// `held` when the stream is resumable (`tx` is then its connection), with a keep-alive
/// comment every `period`, until the agent leaves, the messages end, or `done` (asked at every
/// keep-alive) says the session is over.
pub async fn relay(
    events: &mut mpsc::Receiver<Value>,
    held: Option<&Stream>,
    tx: &mpsc::Sender<Bytes>,
    period: Duration,
    done: impl Fn() -> bool,
) {
    let mut keepalive = tokio::time::interval(period);
    keepalive.tick().await;
    loop {
        tokio::select! {
            m = events.recv() => match m {
                Some(m) => {
                    let sent = match held {
                        Some(stream) => stream.send(&m).await,
                        None => tx.send(event(&m)).await.is_ok(),
                    };
                    if !sent { return }
                }
                None => return,
            },
            _ = keepalive.tick() => {
                if done() || tx.send(Bytes::from_static(KEEPALIVE)).await.is_err() {
                    return;
                }
            }
            () = tx.closed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_one_event_on_one_data_line() {
        let e = event(&serde_json::json!({"a": "line1\nline2"}));
        assert_eq!(
            &e[..],
            b"event: message\ndata: {\"a\":\"line1\\nline2\"}\n\n"
        );
    }

    #[tokio::test]
    async fn a_quiet_stream_carries_keepalives_until_the_session_is_over() {
        let (events_tx, mut events) = mpsc::channel(4);
        let (tx, mut body) = EventBody::channel(8);
        let over = std::sync::atomic::AtomicBool::new(false);
        let relay = relay(&mut events, None, &tx, Duration::from_millis(20), || {
            over.load(std::sync::atomic::Ordering::Relaxed)
        });
        let agent = async {
            events_tx.send(serde_json::json!({"n": 1})).await.unwrap();
            assert!(body.next().await.unwrap().starts_with(b"event: message\n"));
            assert_eq!(&body.next().await.unwrap()[..], KEEPALIVE);
            over.store(true, std::sync::atomic::Ordering::Relaxed);
        };
        let ((), ()) = tokio::join!(relay, agent);
    }
}
