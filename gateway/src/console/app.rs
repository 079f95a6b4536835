//! The console's state: what its pages need (the state store, the sealer, passkeys, SSO),
//! and its audit records.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::config::ConsoleConfig;
use super::error::ConsoleError;
use super::recheck::Recheck;
use super::sso::{Sso, SsoError};
use crate::approval::passkey::{PasskeyError, Passkeys};
use crate::approval::sealed::Sealer;
use crate::audit::event::{AuditEvent, AuditPrincipal, EventKind};
use crate::shared::Shared;
use crate::state::Store;

/// How often expired console sessions are removed from the state store.
pub const PURGE_EVERY: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// The client's address, as the listener saw it.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// The console, with what its pages need.
pub struct Console {
    pub(crate) shared: Arc<Shared>,
    pub(crate) store: Store,
    pub(crate) sealer: Sealer,
    pub(crate) passkeys: Passkeys,
    pub(crate) sso: Sso,
    /// Asking the SSO provider again who an approver is.
    pub(crate) recheck: Recheck,
    pub(crate) config: ConsoleConfig,
    /// `approvals.console_url`, without a trailing `/`.
    pub(crate) url: String,
    /// Its origin (`https://warden.example.com`), for the same-origin check.
    pub(crate) origin: String,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// Why the console cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleSetupError {
    #[error("console.oidc is not set: the console is served only with an SSO provider")]
    NoSso,
    #[error("the console needs approvals.console_url, its public address")]
    NoUrl,
    #[error("console.oidc.client_secret cannot be read: {0}")]
    Secret(String),
    #[error("{0}")]
    Sso(#[from] SsoError),
    #[error("passkeys cannot be offered: {0}")]
    Passkeys(#[from] PasskeyError),
}

impl Console {
    /// The console `shared`'s configuration describes, on `store`, sealing with `sealer`.
    pub async fn new(
        shared: Arc<Shared>,
        store: Store,
        sealer: Sealer,
    ) -> Result<Console, ConsoleSetupError> {
        let snapshot = shared.snapshot.load_full();
        let config = snapshot.config.console.clone();
        let oidc = config.oidc.clone().ok_or(ConsoleSetupError::NoSso)?;
        let url = snapshot
            .config
            .approvals
            .console_url
            .clone()
            .ok_or(ConsoleSetupError::NoUrl)?
            .trim_end_matches('/')
            .to_owned();
        let client_secret = match &oidc.client_secret {
            Some(source) => Some(
                crate::secrets::own::read(
                    source,
                    snapshot.secrets.as_ref(),
                    "console.oidc.client_secret",
                )
                .await
                .map_err(|e| ConsoleSetupError::Secret(e.to_string()))?,
            ),
            None => None,
        };
        let sso = Sso::new(&oidc, client_secret, &url)?;
        let recheck = Recheck::new(&oidc, config.session_ttl);
        let passkeys = Passkeys::new(&url)?;
        let origin = reqwest::Url::parse(&url)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_else(|_| url.clone());
        Ok(Console {
            shared,
            store,
            sealer,
            passkeys,
            sso,
            recheck,
            config,
            url,
            origin,
        })
    }

    /// Removes expired sessions from the state store now and every [`PURGE_EVERY`], for as
    /// long as the console lives (any replica may do it: the delete is idempotent).
    pub fn keep_tidy(self: &Arc<Self>) {
        let console = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(PURGE_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let Some(console) = console.upgrade() else {
                    return;
                };
                match console.store.sessions().purge_expired().await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(removed = n, "expired console sessions removed"),
                    Err(e) => {
                        tracing::warn!(error = %e, "expired console sessions could not be removed")
                    }
                }
            }
        });
    }

    /// Whether cookies may carry the `__Host-` prefix (an https console).
    pub(crate) fn https(&self) -> bool {
        self.url.starts_with("https://")
    }

    /// Appends a console event to the audit log and waits until it is durable: what is
    /// decided in the console happens only once it is recorded.
    pub(crate) async fn audit(
        &self,
        subject: Option<&str>,
        source: Option<IpAddr>,
        detail: serde_json::Value,
    ) -> Result<(), ConsoleError> {
        let event = self.event(subject, source, detail);
        self.shared
            .audit
            .append(event)
            .await
            .map(|_| ())
            .map_err(|e| ConsoleError::Audit(e.to_string()))
    }

    /// Appends a console event without waiting (refused attempts, sign-ins).
    pub(crate) fn audit_detached(
        &self,
        subject: Option<&str>,
        source: Option<IpAddr>,
        detail: serde_json::Value,
    ) {
        let event = self.event(subject, source, detail);
        self.shared.audit.append_detached(event);
    }

    /// Appends, without waiting, the record of a refusal of someone not signed in (`code`):
    /// folded per source beyond `audit.unauthenticated.per_source`.
    pub(crate) fn audit_unauthenticated(
        &self,
        source: Option<IpAddr>,
        code: &'static str,
        detail: serde_json::Value,
    ) {
        let mut event = self.event(None, source, detail);
        event.code = code.into();
        self.shared.audit.append_refusal(event);
    }

    fn event(
        &self,
        subject: Option<&str>,
        source: Option<IpAddr>,
        detail: serde_json::Value,
    ) -> AuditEvent {
        let mut event = AuditEvent::now(EventKind::System);
        event.route = Arc::from("console");
        event.source_ip = source;
        if let Some(subject) = subject {
            event.principal = AuditPrincipal {
                kind: "user".into(),
                id: Arc::from(subject),
                issuer: Arc::from(self.sso.issuer()),
            };
        }
        event.detail = Some(detail);
        event
    }
}
