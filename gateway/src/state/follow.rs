//! Keeps a process's copy of something the state store holds (quarantines, token
//! revocations) current: refreshed when the store announces a change (PostgreSQL `NOTIFY`, any
//! replica) and whenever its revision moves (read every `every`: how SQLite learns of another
//! process's change, and PostgreSQL's safety net for a lost notification). When the store
//! cannot answer, the copy stays as it is and the next tick tries again. Ends with the copy's
//! owner.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use super::error::StateError;

/// A process's copy of something in the store.
pub trait Follower: Send + Sync + 'static {
    /// What it is, for logs (`quarantines`).
    const WHAT: &'static str;

    /// Reads it from the store again and applies the difference to the copy.
    fn refresh(&self) -> BoxFuture<'_, Result<(), StateError>>;

    /// Whether something in the copy has expired (the copy needs a refresh though the
    /// revision did not move).
    fn has_expired(&self) -> bool;
}

/// Loads `follower`'s copy from `store` (its revision, read by `revision`, first, so that a
/// change made meanwhile moves it) and follows the store from then on, as [`spawn`] does.
pub async fn start<T: Follower, S: ?Sized + Send + Sync + 'static>(
    follower: &Arc<T>,
    store: Arc<S>,
    revision: fn(&S) -> BoxFuture<'_, Result<i64, StateError>>,
    announcements: Option<broadcast::Receiver<()>>,
    every: Duration,
) -> Result<(), StateError> {
    let read_revision = move || {
        let store = Arc::clone(&store);
        Box::pin(async move { revision(&store).await }) as _
    };
    let revision = read_revision().await?;
    follower.refresh().await?;
    spawn(
        Arc::downgrade(follower),
        read_revision,
        announcements,
        revision,
        every,
    );
    Ok(())
}

/// Follows the store for `follower`, whose copy is of `revision`: reads the store's revision
/// with `read_revision` (it changes whenever what is followed changes, in any process) and
/// hears `announcements` when the backend makes them.
pub fn spawn<T: Follower>(
    follower: Weak<T>,
    read_revision: impl Fn() -> BoxFuture<'static, Result<i64, StateError>> + Send + 'static,
    mut announcements: Option<broadcast::Receiver<()>>,
    mut revision: i64,
    every: Duration,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let announced = async {
                match announcements.as_mut() {
                    Some(rx) => match rx.recv().await {
                        Ok(()) | Err(RecvError::Lagged(_)) => true,
                        Err(RecvError::Closed) => std::future::pending().await,
                    },
                    None => std::future::pending().await,
                }
            };
            let announced = tokio::select! {
                announced = announced => announced,
                _ = tick.tick() => false,
            };
            let Some(follower) = follower.upgrade() else {
                return;
            };
            let mut moved = None;
            if !announced {
                match read_revision().await {
                    Ok(now) if now == revision => {
                        // Expiries need no store: the copy compares them with the clock;
                        // the refresh below drops them from it.
                        if !follower.has_expired() {
                            continue;
                        }
                    }
                    Ok(now) => moved = Some(now),
                    Err(error) => {
                        tracing::warn!(what = T::WHAT, %error, "cannot read the state store's revision; what is in force stays as it is");
                        continue;
                    }
                }
            }
            // The revision is taken as seen only once the refresh succeeded: after a failure
            // the next tick tries again.
            match follower.refresh().await {
                Ok(()) => revision = moved.unwrap_or(revision),
                Err(error) => {
                    tracing::warn!(what = T::WHAT, %error, "cannot read the state store; what is in force stays as it is");
                }
            }
        }
    });
}
