//! For tests of what shares through the store: a real store that can be made to fail, as a
//! database outage would.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::future::BoxFuture;

use super::error::StateError;
use super::fleet::{
    DenyWindow, FleetRepository, RateCount, SessionCount, SessionLabel, SpendReset,
    SpendResetRecord, SpendRow,
};
use super::sqlite::SqliteStore;
use super::store::Store;

/// `inner`, refusing every call while `down`.
pub struct Flaky {
    pub inner: Arc<dyn FleetRepository>,
    pub down: AtomicBool,
}

impl Flaky {
    /// A SQLite store in `dir`, up.
    pub async fn sqlite(dir: &std::path::Path) -> Arc<Flaky> {
        let store = SqliteStore::open(&dir.join("state.db"))
            .await
            .expect("opens");
        Arc::new(Flaky {
            inner: Store::sqlite(store).fleet(),
            down: AtomicBool::new(false),
        })
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), StateError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StateError::Closed {
                store: "the test's store (down)".into(),
            });
        }
        Ok(())
    }
}

impl FleetRepository for Flaky {
    fn add_spend(&self, deltas: Vec<SpendRow>) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(async move {
            self.check()?;
            self.inner.add_spend(deltas).await
        })
    }
    fn spend(&self, day: i64, month: i64) -> BoxFuture<'_, Result<Vec<SpendRow>, StateError>> {
        Box::pin(async move {
            self.check()?;
            self.inner.spend(day, month).await
        })
    }
    fn reset_spend(
        &self,
        reset: SpendReset,
        periods: (i64, i64),
    ) -> BoxFuture<'_, Result<SpendResetRecord, StateError>> {
        Box::pin(async move {
            self.check()?;
            self.inner.reset_spend(reset, periods).await
        })
    }
    fn spend_resets(
        &self,
        after_id: i64,
    ) -> BoxFuture<'_, Result<Vec<SpendResetRecord>, StateError>> {
        Box::pin(async move {
            self.check()?;
            self.inner.spend_resets(after_id).await
        })
    }
    fn publish_counts(&self, counts: Vec<RateCount>) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(async move {
            self.check()?;
            self.inner.publish_counts(counts).await
        })
    }
    fn counts(&self, since_ms: i64) -> BoxFuture<'_, Result<Vec<RateCount>, StateError>> {
        Box::pin(async move {
            self.check()?;
            self.inner.counts(since_ms).await
        })
    }
    fn add_labels(&self, labels: Vec<SessionLabel>) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(async move {
            self.check()?;
            self.inner.add_labels(labels).await
        })
    }
    fn labels(&self, since_ms: i64) -> BoxFuture<'_, Result<Vec<SessionLabel>, StateError>> {
        Box::pin(async move {
            self.check()?;
            self.inner.labels(since_ms).await
        })
    }
    fn publish_session_counts(
        &self,
        counts: Vec<SessionCount>,
    ) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(async move {
            self.check()?;
            self.inner.publish_session_counts(counts).await
        })
    }
    fn session_counts(
        &self,
        replica: String,
        since_ms: i64,
    ) -> BoxFuture<'_, Result<Vec<SessionCount>, StateError>> {
        Box::pin(async move {
            self.check()?;
            self.inner.session_counts(replica, since_ms).await
        })
    }
    fn publish_denies(&self, windows: Vec<DenyWindow>) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(async move {
            self.check()?;
            self.inner.publish_denies(windows).await
        })
    }
    fn denies(&self, replica: String) -> BoxFuture<'_, Result<Vec<DenyWindow>, StateError>> {
        Box::pin(async move {
            self.check()?;
            self.inner.denies(replica).await
        })
    }
    fn seen(
        &self,
        replica: String,
        now_ms: i64,
        since_ms: i64,
    ) -> BoxFuture<'_, Result<u64, StateError>> {
        Box::pin(async move {
            self.check()?;
            self.inner.seen(replica, now_ms, since_ms).await
        })
    }
}
