//! Warden's own event streams to agents: a body of server-sent events handed over a channel
//! by the task that relays an upstream's messages, each message one `event: message` (the
//! relay of a session's server messages is `relay.rs`).

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame};
use serde_json::Value;
use tokio::sync::mpsc;

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
}
