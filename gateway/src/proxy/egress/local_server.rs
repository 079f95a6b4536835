//! The egress of a local MCP server's sandboxed process (`sandbox.network: egress`): Warden
//! serves the listener the process made in its own network namespace (`mcp/sandbox/netns.rs`)
//! with the egress proxy's handler, speaking for the agent whose session started the process
//! (no `Proxy-Authorization`: the listener is the process's alone), with the server named in
//! `context.server` and in the records' `detail.egress.server`. Everything else is the
//! agent's own egress: decisions, the internal-address guard, approvals, records, metrics,
//! the agent's tunnel cap.

use std::sync::{Arc, Weak};

use crate::action::Principal;
use crate::identity::revocation::TokenStamp;
use crate::listener::{self, HttpOptions, config::Listener};
use crate::mcp::sandbox::{EgressGuard, ServeEgress};
use crate::shared::Shared;

use super::local::Local;

/// Serves the egress of the local servers of one agent session.
pub struct LocalServers {
    shared: Weak<Shared>,
    principal: Arc<Principal>,
    token: Option<TokenStamp>,
}

impl LocalServers {
    /// For the session `principal` opens through `shared`'s proxy with the Warden token
    /// stamped `token` (revoking it cuts the processes' egress as it cuts the agent's).
    pub fn new(
        shared: &Arc<Shared>,
        principal: &Arc<Principal>,
        token: Option<TokenStamp>,
    ) -> Arc<LocalServers> {
        Arc::new(LocalServers {
            shared: Arc::downgrade(shared),
            principal: Arc::clone(principal),
            token,
        })
    }
}

impl ServeEgress for LocalServers {
    fn serve(
        &self,
        server: &Arc<str>,
        listener: std::net::TcpListener,
        max_connections: usize,
    ) -> Result<EgressGuard, String> {
        let shared = self.shared.upgrade().ok_or("Warden is stopping")?;
        let parts = shared
            .local_egress()
            .ok_or("this Warden serves no egress (it is not running as a server)")?;
        let snap = shared.snapshot.load_full();
        // Dropped with the guard: the tunnels the listener opened close then.
        let (ended_tx, ended) = tokio::sync::watch::channel(());
        let local = Local {
            principal: Arc::clone(&self.principal),
            token: self.token.clone(),
            server: Arc::clone(server),
            ended,
        };
        let handler = super::local_handler(&shared, &snap.config.egress, parts, local)
            .map_err(|e| e.to_string())?;
        let listener = tokio::net::TcpListener::from_std(listener)
            .map_err(|e| format!("cannot serve the process's listener: {e}"))?;
        let listen = &snap.config.listen;
        let options = HttpOptions {
            extended_connect: true,
            detached: Some(parts.tunnels.clone()),
            // Every process's listener shares one cap: an idle one holds no slot, and one
            // process holds at most `max_connections` of them
            // (`sandbox.egress_max_connections`; its tunnels count among its agent's too,
            // `egress.max_tunnels_per_agent`).
            slot_after_accept: true,
            ..HttpOptions::of(listen, Listener::Egress)
        };
        let task = tokio::spawn(listener::serve_with(
            listener,
            None,
            options,
            parts.cap.within(max_connections),
            handler,
            // Served until the guard is dropped (the process ended): aborted then.
            std::future::pending::<()>(),
            listen.shutdown_grace,
        ));
        tracing::debug!(server = %server, principal = %self.principal.id, "serving a local MCP server's egress");
        Ok(EgressGuard::new(task.abort_handle(), ended_tx))
    }
}
