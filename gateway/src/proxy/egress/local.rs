//! What the egress of local MCP servers' processes (`sandbox.network: egress`) shares with
//! the egress listener, set once at start: the interceptor, the tunnels held through a
//! shutdown, each agent's tunnels (one cap for the agent's own and its servers'), and the
//! cap on the connections all such listeners hold; and who a process's listener speaks for.

use std::sync::Arc;

use crate::action::Principal;
use crate::egress::intercept::Interceptor;
use crate::identity::revocation::TokenStamp;
use crate::listener::{ConnectionCap, Detached};

use super::room::AgentTunnels;

/// The egress listener's parts the processes' listeners share.
pub struct LocalParts {
    pub interceptor: Option<Arc<Interceptor>>,
    pub tunnels: Detached,
    pub agent_tunnels: AgentTunnels,
    /// Connections open on every process's listener at once (`listen.max_connections.egress`).
    pub cap: ConnectionCap,
}

/// Who a process's listener speaks for: fixed by the listener, not asked of the client.
#[derive(Clone)]
pub struct Local {
    /// The agent whose session started the process.
    pub principal: Arc<Principal>,
    /// The stamp of the Warden token that session was opened with: once it is revoked, the
    /// listener's requests are refused and its tunnels closed, as the agent's own are.
    pub token: Option<TokenStamp>,
    /// The server, by its configured name (`context.server`, `detail.egress.server`).
    pub server: Arc<str>,
    /// Changes (its sender dropped) once the listener's guard is dropped (the process
    /// ended): the tunnels it opened close then.
    pub ended: tokio::sync::watch::Receiver<()>,
}

impl Local {
    /// Resolves once the process's listener is no longer served.
    pub fn ended(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut ended = self.ended.clone();
        async move { while ended.changed().await.is_ok() {} }
    }
}
