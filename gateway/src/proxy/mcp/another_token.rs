//! What an agent opens in a session with another Warden token than the session's own (its GET
//! event stream, a POST's answer) is cut when that token is revoked or its agent quarantined:
//! the session's own cut watches only the token the session was opened with. A cut answer
//! ends its call: the server is told it is cancelled and no longer waited for, and the cut is
//! recorded (`detail.cut`: `mcp_stream`).

use serde_json::{Map, Value, json};

use crate::fleet::cut::{Cause, Cut};
use crate::mcp::{Link, Session};
use crate::proxy::exchange::Exchange;

/// The cut of what `ex`'s request opens in `session`: `None` when it came with the session's
/// own token (or with none Warden can revoke).
pub(super) fn cut_of(ex: &Exchange, session: &Session) -> Option<Cut> {
    let token = ex.token();
    ex.cut()
        .filter(|_| session.watches_another_token(token.as_ref()))
}

/// Why `cut` cut its stream, once it does (never, without one).
pub(super) async fn cut(cut: Option<&mut Cut>) -> Cause {
    match cut {
        Some(cut) => cut.cut().await,
        None => std::future::pending().await,
    }
}

/// Records that `cause` cut `cut`'s stream at `endpoint`.
pub(super) fn record(cut: &Cut, cause: &Cause, endpoint: &str) {
    cut.record(cause, json!({"cut": "mcp_stream", "endpoint": endpoint}));
}

/// Ends call `upstream_id` to `link`'s server, whose answer `cause` cut: the server is told
/// the request is cancelled (MCP's `notifications/cancelled`), and no longer waited for.
pub(super) async fn cancel(link: &Link, upstream_id: i64, cause: &Cause) {
    let mut params = Map::new();
    params.insert("requestId".into(), Value::from(upstream_id));
    params.insert("reason".into(), Value::from(cause.what()));
    if let Err(e) = link.notify("notifications/cancelled", params).await {
        tracing::info!(server = %link.router.server, error = %e, "the MCP server could not be told that a cut call is cancelled");
    }
    link.router.abandon(upstream_id);
}
