//! The relay of a session's server messages to an agent's event stream, with keep-alive
//! comments, held for resumption (`resume.rs`) when the transport can resume.

use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::mpsc;

use super::resume::Stream;
use super::stream::event;

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
    use crate::mcp::EventBody;

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
