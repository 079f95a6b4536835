//! The connection that `LISTEN`s for changes: every `NOTIFY` on [`CHANNEL`] (sent in the
//! transaction that changed an approval, on any replica) is announced to this store's
//! approval watchers, every one on [`QUARANTINE_CHANNEL`] to its quarantine watchers, every one
//! on [`REVOCATION_CHANNEL`] to its token revocation watchers. When the connection is lost it is opened again, and watchers are
//! told that anything may have changed meanwhile.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, oneshot};
use tokio_postgres::AsyncMessage;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::state::approvals::{ANY, Change};
use crate::state::error::Causes;

/// The notification channel of approval changes; the payload is the approval's id.
pub(super) const CHANNEL: &str = "warden_approvals";

/// The notification channel of quarantine changes (no payload: watchers read them all).
pub(super) const QUARANTINE_CHANNEL: &str = "warden_quarantine";

/// The notification channel of token revocation changes (no payload: watchers read them all).
pub(super) const REVOCATION_CHANNEL: &str = "warden_revocations";

/// Where the notifications of each channel go.
#[derive(Clone)]
pub(super) struct Relays {
    pub approvals: broadcast::Sender<Change>,
    pub quarantine: broadcast::Sender<()>,
    pub revocations: broadcast::Sender<()>,
}

/// How long to wait before connecting again after the connection was lost.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// Starts listening on `runtime`; the answer says when the first `LISTEN` is in place (or why
/// it could not be). Ends with the runtime.
pub(super) fn start(
    runtime: &tokio::runtime::Handle,
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    changes: Relays,
) -> impl Future<Output = Result<(), String>> + Send + 'static {
    let (ready, listening) = oneshot::channel();
    runtime.spawn(run(config, tls, changes, ready));
    async move {
        listening
            .await
            .unwrap_or_else(|_| Err("the store's runtime stopped".into()))
    }
}

async fn run(
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    changes: Relays,
    ready: oneshot::Sender<Result<(), String>>,
) {
    let mut ready = Some(ready);
    loop {
        match listen_once(&config, &tls, &changes, &mut ready).await {
            Ok(()) => {
                tracing::warn!("the state store's change notifications stopped; reconnecting")
            }
            Err(reason) => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Err(reason));
                    return;
                }
                tracing::warn!(%reason, "cannot listen for the state store's changes; retrying");
            }
        }
        tokio::time::sleep(RECONNECT_DELAY).await;
    }
}

/// One connection's life: connect, `LISTEN`, relay notifications until it ends.
async fn listen_once(
    config: &tokio_postgres::Config,
    tls: &MakeRustlsConnect,
    changes: &Relays,
    ready: &mut Option<oneshot::Sender<Result<(), String>>>,
) -> Result<(), String> {
    let (client, mut connection) = config
        .connect(tls.clone())
        .await
        .map_err(|e| Causes(&e).to_string())?;
    let relay_changes = changes.clone();
    let relay = tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(AsyncMessage::Notification(n)) if n.channel() == CHANNEL => {
                    let _ = relay_changes.approvals.send(Arc::from(n.payload()));
                }
                Ok(AsyncMessage::Notification(n)) if n.channel() == QUARANTINE_CHANNEL => {
                    let _ = relay_changes.quarantine.send(());
                }
                Ok(AsyncMessage::Notification(n)) if n.channel() == REVOCATION_CHANNEL => {
                    let _ = relay_changes.revocations.send(());
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(error = %Causes(&error), "the state store's notification connection failed");
                    break;
                }
            }
        }
    });
    client
        .batch_execute(&format!(
            "LISTEN {CHANNEL}; LISTEN {QUARANTINE_CHANNEL}; LISTEN {REVOCATION_CHANNEL}"
        ))
        .await
        .map_err(|e| Causes(&e).to_string())?;
    match ready.take() {
        Some(ready) => {
            let _ = ready.send(Ok(()));
        }
        // Reconnected: what changed while nobody listened is unknown.
        None => {
            let _ = changes.approvals.send(Arc::from(ANY));
            let _ = changes.quarantine.send(());
            let _ = changes.revocations.send(());
        }
    }
    let _ = relay.await;
    drop(client);
    Ok(())
}
