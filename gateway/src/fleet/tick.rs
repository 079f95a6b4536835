//! The tick on which a fleet control shares its counts through the state store: every
//! `every`, one step (publish what this replica counted, read what the others did). A failed
//! step is logged when the store starts failing and when it recovers, not on every tick;
//! the control keeps what it has and the next step tries again. The loop ends with its
//! control.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::state::StateError;

/// Runs `step` on `control` every `every` until `control` is dropped; `what` names the
/// control in logs.
pub fn spawn<T: Send + Sync + 'static>(
    control: Weak<T>,
    every: Duration,
    what: &'static str,
    step: impl Fn(Arc<T>) -> BoxFuture<'static, Result<(), StateError>> + Send + 'static,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tick.tick().await;
            let Some(control) = control.upgrade() else {
                return;
            };
            match step(control).await {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!(what, "the state store answers again: sharing resumed");
                }
                Ok(()) => {}
                Err(error) if !failing => {
                    failing = true;
                    tracing::warn!(
                        what,
                        %error,
                        "cannot share through the state store; this replica goes on with what \
                         it knows and keeps its own counts to publish when the store answers"
                    );
                }
                Err(_) => {}
            }
        }
    });
}
