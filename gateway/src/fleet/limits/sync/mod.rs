//! Rate counts shared through the state store. Each replica paces requests with its own GCRA
//! buckets; every `rate_limits.sync_interval` it publishes how many requests each bucket
//! admitted (a running count per replica) and charges what the other replicas admitted since
//! it last read them to its own buckets, as if those requests had come through it. A bucket
//! this replica has not used yet starts with what the others owe it.
//!
//! The bound: another replica's admissions reach this one's buckets at most two intervals
//! after they happened (one for it to publish, one for this one to read). Over any stretch of
//! time the fleet admits at most what one gateway would, plus, for each other replica, what it
//! can admit on its own in two intervals: `burst + 2 × rate × sync_interval`. Long-run rates
//! hold for the fleet. When the store fails, each replica goes on with its own counts (the
//! bound is then per replica) and publishes its running counts when the store answers, so
//! nothing it admitted is lost to the others.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Limiter;
use super::sharing::Sharing;
use crate::fleet::tick;
use crate::state::StateError;
use crate::state::fleet::{FleetRepository, RateCount};
use crate::state::pins::now_ms;

/// A count unchanged is published again this often, so that it does not look abandoned.
const HEARTBEAT_MS: i64 = 5 * 60 * 1000;

/// Counts not published for this long are a stopped replica's, and removed.
const STALE_MS: i64 = 30 * 60 * 1000;

/// Owed charges kept at most for buckets this replica has not used.
const OWED_MAX: usize = 65_536;

impl Limiter {
    /// Shares rate counts through `store`: a [`Limiter::sync`] every `every`; it stops when
    /// the limiter is dropped.
    pub fn attach(self: &Arc<Self>, store: Arc<dyn FleetRepository>, every: Duration) {
        self.share();
        tick::spawn(Arc::downgrade(self), every, "rate limits", move |limiter| {
            let store = Arc::clone(&store);
            Box::pin(async move { limiter.sync(&*store, now_ms()).await })
        });
    }

    /// Names new buckets among the replicas from now on, for [`Limiter::sync`].
    pub fn share(&self) {
        let _ = self.sharing.set(Sharing::new());
    }

    /// One tick at `now_ms`: publishes this replica's changed counts, then charges what the
    /// other replicas admitted since the last read to this one's buckets.
    pub async fn sync(&self, store: &dyn FleetRepository, now_ms: i64) -> Result<(), StateError> {
        let Some(sharing) = self.sharing.get() else {
            return Ok(());
        };
        let (counts, names) = self.changed(sharing, now_ms);
        if !counts.is_empty() {
            store.publish_counts(counts.clone()).await?;
            let mut published = sharing.published.lock().expect("not poisoned");
            published.retain(|name, _| names.contains_key(name));
            for count in counts {
                published.insert(
                    Arc::from(count.bucket),
                    (u64::try_from(count.admitted).unwrap_or(0), now_ms),
                );
            }
        }
        let rows = store.counts(now_ms - STALE_MS).await?;
        let owed = others_since_last_read(sharing, rows);
        let now = self.now();
        for (bucket, (requests, interval)) in owed {
            let charge = requests.saturating_mul(interval);
            let local = names
                .get(&*bucket)
                .and_then(|key| self.buckets.get_mut(key));
            match local {
                Some(mut b) => b.tat = b.tat.max(now).saturating_add(charge),
                None if sharing.owed.len() < OWED_MAX || sharing.owed.contains_key(&*bucket) => {
                    let mut tat = sharing.owed.entry(Arc::from(bucket)).or_insert(now);
                    *tat = (*tat).max(now).saturating_add(charge);
                }
                None => {}
            }
        }
        sharing.owed.retain(|_, tat| *tat > now);
        Ok(())
    }

    /// The counts to publish (changed since published, or not published for a while), and
    /// every shared bucket's key by name.
    fn changed(&self, sharing: &Sharing, now_ms: i64) -> (Vec<RateCount>, HashMap<Arc<str>, u64>) {
        let published = sharing.published.lock().expect("not poisoned");
        let mut counts = Vec::new();
        let mut names = HashMap::new();
        for bucket in self.buckets.iter() {
            let Some(name) = &bucket.name else {
                continue;
            };
            names.insert(Arc::clone(name), *bucket.key());
            let due = match published.get(name) {
                None => bucket.admitted > 0,
                Some(&(n, at)) => n != bucket.admitted || now_ms - at >= HEARTBEAT_MS,
            };
            if due {
                counts.push(RateCount {
                    replica: sharing.replica.clone(),
                    bucket: name.to_string(),
                    admitted: i64::try_from(bucket.admitted).unwrap_or(i64::MAX),
                    interval_ns: i64::try_from(bucket.interval).unwrap_or(i64::MAX),
                    updated_ms: now_ms,
                });
            }
        }
        (counts, names)
    }
}

/// Per bucket, what the other replicas admitted since their counts were last read (requests,
/// and the bucket's interval); nothing on the first read, which is taken as the start.
fn others_since_last_read(sharing: &Sharing, rows: Vec<RateCount>) -> HashMap<String, (u64, u64)> {
    let first = !sharing.started.swap(true, Ordering::SeqCst);
    let mut seen = sharing.seen.lock().expect("not poisoned");
    let mut next = HashMap::with_capacity(rows.len());
    let mut owed: HashMap<String, (u64, u64)> = HashMap::new();
    for row in rows {
        if row.replica == sharing.replica {
            continue;
        }
        let key = (row.replica, row.bucket);
        let delta = match seen.get(&key) {
            // A count that went down started again (the replica dropped the bucket).
            Some(&before) if row.admitted >= before => row.admitted - before,
            Some(_) => row.admitted,
            None if first => 0,
            None => row.admitted,
        };
        if delta > 0 {
            let entry = owed.entry(key.1.clone()).or_insert((0, 1));
            entry.0 = entry.0.saturating_add(u64::try_from(delta).unwrap_or(0));
            entry.1 = u64::try_from(row.interval_ns).unwrap_or(1).max(1);
        }
        next.insert(key, row.admitted);
    }
    *seen = next;
    owed
}

#[cfg(test)]
mod tests;
