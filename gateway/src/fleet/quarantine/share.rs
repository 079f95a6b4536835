//! The denies the `denies` trigger counts, shared through the state store: every
//! `fleet.quarantine.refresh_interval` a replica stores its recent denies of each agent whose
//! window changed and reads the other replicas', so that the trigger counts the fleet's denies
//! within `triggers.denies.window`, not each replica's (an agent whose requests a load
//! balancer spreads over N replicas would otherwise be denied N times as often before it is
//! quarantined). Another replica's deny counts here at most two intervals after it was made
//! (one for that replica to store it, one for this one to read it). When the store fails, each
//! replica counts its own and stores what changed when the store answers.

use std::sync::Arc;
use std::time::Duration;

use super::Quarantines;
use super::config::DeniesTrigger;
use crate::fleet::tick;
use crate::state::StateError;
use crate::state::fleet::FleetRepository;

impl Quarantines {
    /// Shares the denies the trigger counts through `store`: a [`Quarantines::share_step`]
    /// every `every`, with the trigger `trigger` gives (none: nothing is shared); it stops when
    /// the quarantines are dropped.
    pub fn share_denies(
        self: &Arc<Self>,
        store: Arc<dyn FleetRepository>,
        every: Duration,
        trigger: impl Fn() -> Option<DeniesTrigger> + Send + Sync + 'static,
    ) {
        let replica: Arc<str> = Arc::from(uuid::Uuid::now_v7().simple().to_string());
        let trigger = Arc::new(trigger);
        tick::spawn(
            Arc::downgrade(self),
            every,
            "quarantine denies",
            move |quarantines| {
                let (store, trigger, replica) = (
                    Arc::clone(&store),
                    Arc::clone(&trigger),
                    Arc::clone(&replica),
                );
                Box::pin(async move {
                    let trigger = trigger();
                    quarantines
                        .share_step(
                            &*store,
                            &replica,
                            trigger.as_ref(),
                            crate::state::pins::now_ms(),
                        )
                        .await
                })
            },
        );
    }

    /// One tick at `now_ms`, as `replica`: stores this replica's windows that changed, then
    /// reads the other replicas'. Without a `denies` trigger nothing is stored or read.
    pub(super) async fn share_step(
        &self,
        store: &dyn FleetRepository,
        replica: &str,
        trigger: Option<&DeniesTrigger>,
        now_ms: i64,
    ) -> Result<(), StateError> {
        let Some(trigger) = trigger else {
            return Ok(());
        };
        let windows = self.denies.to_publish(replica, trigger, now_ms);
        if !windows.is_empty()
            && let Err(error) = store.publish_denies(windows.clone()).await
        {
            self.denies.unpublished(&windows);
            return Err(error);
        }
        // Agents whose denies left the window (and are stored so) are forgotten here.
        self.denies.tidy(trigger.window, now_ms);
        let rows = store.denies(replica.to_owned()).await?;
        self.denies.read(rows);
        Ok(())
    }
}
