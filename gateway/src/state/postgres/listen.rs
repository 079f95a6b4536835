//! The connection that `LISTEN`s for changes: every `NOTIFY` on [`CHANNEL`] (sent in the
//! transaction that changed an approval, on any replica) is announced to this store's
//! approval watchers, every one on [`QUARANTINE_CHANNEL`] to its quarantine watchers, every one
//! on [`REVOCATION_CHANNEL`] to its token revocation watchers. When the connection is lost it
//! is opened again, and watchers are told that anything may have changed meanwhile. The store's
//! health hears of it (area `notifications`): the loss and each failed attempt to listen again
//! are failures, listening again a success. The health keeps it an outage of its own, so the
//! pool's operations succeeding between attempts do not end it: the store reads down, logged
//! once when it begins and once when it ends, however many attempts it takes (each at DEBUG).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, oneshot};
use tokio_postgres::AsyncMessage;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::state::approvals::{ANY, Change};
use crate::state::error::{Causes, StateError};
use crate::state::health::{Area, StoreHealth};

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
/// it could not be). Ends with the runtime. The connection's loss and every attempt to open it
/// again go to `health`, as operations about [`Area::Notifications`] on `database`.
pub(super) fn start(
    runtime: &tokio::runtime::Handle,
    connection: Connection,
    changes: Relays,
) -> impl Future<Output = Result<(), String>> + Send + 'static {
    let (ready, listening) = oneshot::channel();
    runtime.spawn(run(connection, changes, ready));
    async move {
        listening
            .await
            .unwrap_or_else(|_| Err("the store's runtime stopped".into()))
    }
}

/// How to open the listening connection, and where its outcomes go.
pub(super) struct Connection {
    pub config: tokio_postgres::Config,
    pub tls: MakeRustlsConnect,
    /// The database, as in the store's errors (no password).
    pub database: Arc<str>,
    pub health: StoreHealth,
}

impl Connection {
    /// Tells the store's health that listening failed (or stopped) for `reason`.
    fn failed(&self, reason: String) {
        let _ = self.health.observe::<()>(
            Area::Notifications,
            Err(StateError::PostgresConnect {
                database: self.database.to_string(),
                reason: format!("the connection listening for changes: {reason}"),
            }),
        );
    }
}

async fn run(connection: Connection, changes: Relays, ready: oneshot::Sender<Result<(), String>>) {
    let mut ready = Some(ready);
    loop {
        match listen_once(&connection, &changes, &mut ready).await {
            Ok(lost) => {
                tracing::debug!(reason = %lost, "the state store's change notifications stopped; reconnecting");
                connection.failed(lost);
            }
            Err(reason) => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Err(reason));
                    return;
                }
                tracing::debug!(%reason, "cannot listen for the state store's changes; retrying");
                connection.failed(reason);
            }
        }
        tokio::time::sleep(RECONNECT_DELAY).await;
    }
}

/// One connection's life: connect, `LISTEN`, relay notifications until it ends; why it ended
/// (`Err` when it could not listen at all).
async fn listen_once(
    connection: &Connection,
    changes: &Relays,
    ready: &mut Option<oneshot::Sender<Result<(), String>>>,
) -> Result<String, String> {
    let (client, mut socket) = connection
        .config
        .connect(connection.tls.clone())
        .await
        .map_err(|e| Causes(&e).to_string())?;
    let relay_changes = changes.clone();
    let relay = tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| socket.poll_message(cx)).await {
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
                Err(error) => return Causes(&error).to_string(),
            }
        }
        "the server closed it".to_owned()
    });
    client
        .batch_execute(&format!(
            "LISTEN {CHANNEL}; LISTEN {QUARANTINE_CHANNEL}; LISTEN {REVOCATION_CHANNEL}"
        ))
        .await
        .map_err(|e| Causes(&e).to_string())?;
    let _ = connection.health.observe(Area::Notifications, Ok(()));
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
    let lost = relay
        .await
        .unwrap_or_else(|_| "its task stopped".to_owned());
    drop(client);
    Ok(lost)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::health::Failure;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// What the fake server does with each connection it accepts, in turn.
    enum Then {
        /// Lets it `LISTEN`, then closes it when told.
        Listen(oneshot::Receiver<()>),
        /// Closes it before the startup is answered.
        Refuse,
    }

    /// Answers the startup (no password asked) and each query as `LISTEN` would, until `close`
    /// fires or the client goes.
    async fn serve(mut socket: TcpStream, close: oneshot::Receiver<()>) {
        let len = socket.read_i32().await.unwrap();
        let mut startup = vec![0; usize::try_from(len - 4).unwrap()];
        socket.read_exact(&mut startup).await.unwrap();
        // AuthenticationOk, ReadyForQuery (idle).
        socket
            .write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 0, b'Z', 0, 0, 0, 5, b'I'])
            .await
            .unwrap();
        let queries = async {
            loop {
                let Ok(kind) = socket.read_u8().await else {
                    return;
                };
                let len = socket.read_i32().await.unwrap();
                let mut body = vec![0; usize::try_from(len - 4).unwrap()];
                socket.read_exact(&mut body).await.unwrap();
                if kind == b'Q' {
                    let done = b"LISTEN\0";
                    let mut answer = vec![b'C'];
                    answer.extend_from_slice(&(4 + done.len() as i32).to_be_bytes());
                    answer.extend_from_slice(done);
                    answer.extend_from_slice(&[b'Z', 0, 0, 0, 5, b'I']);
                    socket.write_all(&answer).await.unwrap();
                }
            }
        };
        tokio::select! {
            _ = queries => {}
            _ = close => {}
        }
    }

    async fn until(health: &StoreHealth, up: bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while health.is_up() != up {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the store is not {} within 10 s",
                if up { "up" } else { "down" }
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn losing_the_listening_connection_and_listening_again_drive_the_store_s_health() {
        let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = server.local_addr().unwrap().port();
        let (cut, first) = oneshot::channel();
        let (_keep, third) = oneshot::channel();
        tokio::spawn(async move {
            for then in [Then::Listen(first), Then::Refuse, Then::Listen(third)] {
                let (socket, _) = server.accept().await.unwrap();
                match then {
                    Then::Listen(close) => {
                        tokio::spawn(serve(socket, close));
                    }
                    Then::Refuse => drop(socket),
                }
            }
        });
        let health = StoreHealth::new("warden@127.0.0.1/warden");
        let config: tokio_postgres::Config =
            format!("host=127.0.0.1 port={port} user=warden dbname=warden sslmode=disable")
                .parse()
                .unwrap();
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let relays = Relays {
            approvals: broadcast::channel(8).0,
            quarantine: broadcast::channel(8).0,
            revocations: broadcast::channel(8).0,
        };
        let mut told = relays.quarantine.subscribe();
        start(
            &tokio::runtime::Handle::current(),
            Connection {
                config,
                tls: MakeRustlsConnect::new(tls),
                database: Arc::from("warden@127.0.0.1/warden"),
                health: health.clone(),
            },
            relays,
        )
        .await
        .unwrap();
        assert!(health.is_up());
        let failed = || health.failures(Area::Notifications, Failure::Unreachable);
        assert_eq!(failed(), 0);

        // The connection is lost: the store is down, the loss counted.
        cut.send(()).unwrap();
        until(&health, false).await;
        assert!(failed() >= 1);
        // The pool answers meanwhile: the store stays down until it listens again.
        health.observe(Area::Pins, Ok(())).unwrap();
        assert!(!health.is_up());
        // The first attempt again fails, the next listens: up again, watchers told.
        until(&health, true).await;
        assert_eq!(failed(), 2, "the loss and the failed attempt");
        tokio::time::timeout(Duration::from_secs(1), told.recv())
            .await
            .expect("watchers told that anything may have changed")
            .unwrap();
    }
}
