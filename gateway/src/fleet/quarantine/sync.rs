//! Keeps a process's quarantines current: refreshed from the store when it announces a change
//! (PostgreSQL `NOTIFY`, any replica) and whenever its quarantine revision moves (read every
//! `refresh_interval`: how SQLite learns of another process's change, and PostgreSQL's safety
//! net for a lost notification). Ends with the process's [`Quarantines`].

use std::sync::Weak;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;

use super::Quarantines;
use crate::state::quarantine::QuarantineRepository;
use std::sync::Arc;

pub(super) fn spawn(
    quarantines: Weak<Quarantines>,
    store: Arc<dyn QuarantineRepository>,
    mut revision: i64,
    every: Duration,
) {
    let mut announcements = store.announcements();
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
            let Some(quarantines) = quarantines.upgrade() else {
                return;
            };
            let mut moved = None;
            if !announced {
                match store.revision().await {
                    Ok(now) if now == revision => {
                        // Expiries need no store: `check` compares `until` with the clock;
                        // the refresh below drops them from the copy.
                        if !quarantines.has_expired() {
                            continue;
                        }
                    }
                    Ok(now) => moved = Some(now),
                    Err(error) => {
                        tracing::warn!(%error, "cannot read the quarantine revision; quarantines in force stay as they are");
                        continue;
                    }
                }
            }
            // The revision is taken as seen only once the refresh succeeded: after a failure
            // the next tick tries again.
            match quarantines.refresh().await {
                Ok(()) => revision = moved.unwrap_or(revision),
                Err(error) => {
                    tracing::warn!(%error, "cannot read the quarantines; those in force stay as they are");
                }
            }
        }
    });
}
