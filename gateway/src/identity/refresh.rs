//! Keeps an issuer's key set current: fetched in the background, refetched when a token names
//! an unknown key (rate-limited, one fetch shared by every waiting request), and kept as it was
//! when a refresh fails.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::error::FetchedAgo;
use super::fetch::JwksFetcher;
use super::jwks::{KeySet, VerifyKey};

/// Longest wait between two attempts after failures (the refresh interval caps it too).
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Most characters of a fetch error kept (and shown in refusals and logs).
const ERROR_MAX: usize = 512;

/// What the last fetches did.
#[derive(Default)]
struct Status {
    last_attempt: Option<Instant>,
    last_success: Option<Instant>,
    last_error: Option<Arc<str>>,
}

/// The key of a remote issuer that verified a token: what the token proved stands only while
/// the issuer still publishes that key (a key withdrawn from the JWKS, as after its
/// compromise, takes its tokens with it, cached or not).
#[derive(Clone)]
pub(crate) struct KeyInUse {
    keys: Arc<RemoteKeys>,
    key: Arc<VerifyKey>,
}

impl KeyInUse {
    /// `key` of the issuer whose keys are `keys`.
    pub(crate) fn new(keys: Arc<RemoteKeys>, key: Arc<VerifyKey>) -> KeyInUse {
        KeyInUse { keys, key }
    }

    /// Whether the issuer's current key set still holds the key (a failed refresh keeps the
    /// set it had).
    pub(crate) fn still_published(&self) -> bool {
        self.keys
            .current
            .load()
            .as_ref()
            .is_some_and(|set| set.publishes(&self.key))
    }
}

/// One remote issuer's keys and the machinery that refreshes them.
pub(crate) struct RemoteKeys {
    issuer: Arc<str>,
    fetcher: JwksFetcher,
    current: ArcSwapOption<KeySet>,
    status: Mutex<Status>,
    /// Held while a fetch runs: requests that need one wait here and share its result.
    in_flight: tokio::sync::Mutex<()>,
    /// Number of completed fetch attempts.
    attempts: watch::Sender<u64>,
    min_refetch: Duration,
}

impl RemoteKeys {
    /// Keys of `issuer`, not fetched yet.
    pub(crate) fn new(issuer: Arc<str>, fetcher: JwksFetcher, min_refetch: Duration) -> Arc<Self> {
        Arc::new(RemoteKeys {
            issuer,
            fetcher,
            current: ArcSwapOption::empty(),
            status: Mutex::new(Status::default()),
            in_flight: tokio::sync::Mutex::new(()),
            attempts: watch::Sender::new(0),
            min_refetch,
        })
    }

    /// The current key set, if one was ever fetched.
    pub(crate) fn keys(&self) -> Option<Arc<KeySet>> {
        self.current.load_full()
    }

    /// How long ago the key set was last fetched successfully, and whether the attempts since
    /// failed.
    pub(crate) fn fetched_ago(&self) -> FetchedAgo {
        let status = self.status();
        FetchedAgo {
            success: status.last_success.map(|t| t.elapsed().as_secs()),
            failure: status
                .last_error
                .clone()
                .map(|e| (status.last_attempt.map_or(0, |t| t.elapsed().as_secs()), e)),
        }
    }

    /// Why no key set is available: the last fetch error, or that none has completed yet.
    pub(crate) fn unavailable_reason(&self) -> Arc<str> {
        self.status()
            .last_error
            .clone()
            .unwrap_or_else(|| Arc::from("first JWKS fetch still in progress"))
    }

    /// Refetches because a token needs a key that is not there. At most one fetch per
    /// `min_refetch`; a request arriving while a fetch runs waits for it and uses its result.
    pub(crate) async fn refresh_on_demand(&self) {
        let seen = *self.attempts.borrow();
        let _guard = self.in_flight.lock().await;
        if *self.attempts.borrow() != seen {
            return;
        }
        let recent = self
            .status()
            .last_attempt
            .is_some_and(|t| t.elapsed() < self.min_refetch);
        if !recent {
            self.fetch_locked().await;
        }
    }

    /// Fetches now, whatever the rate limit (background refresh). True when it succeeded.
    pub(crate) async fn refresh(&self) -> bool {
        let _guard = self.in_flight.lock().await;
        self.fetch_locked().await
    }

    /// Resolves once the first fetch attempt has completed, successfully or not.
    pub(crate) async fn first_attempt_done(&self) {
        let mut attempts = self.attempts.subscribe();
        // The sender lives in `self`, so `wait_for` cannot fail while we borrow it.
        let _ = attempts.wait_for(|n| *n > 0).await;
    }

    /// Starts the background refresh loop: now, then every `interval`, retrying failures with
    /// backoff. The task stops when its handle is aborted.
    pub(crate) fn spawn_refresher(self: &Arc<Self>, interval: Duration) -> JoinHandle<()> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut failures: u32 = 0;
            loop {
                let wait = if this.refresh().await {
                    failures = 0;
                    interval
                } else {
                    failures = failures.saturating_add(1);
                    let backoff = Duration::from_secs(1 << failures.min(6).saturating_sub(1));
                    backoff.min(MAX_BACKOFF).min(interval)
                };
                tokio::time::sleep(wait).await;
            }
        })
    }

    async fn fetch_locked(&self) -> bool {
        self.status().last_attempt = Some(Instant::now());
        let result = self.fetcher.fetch().await;
        let ok = result.is_ok();
        match result {
            Ok(set) => {
                tracing::info!(issuer = %self.issuer, keys = set.len(), kids = ?set.kids(), "JWKS loaded");
                self.current.store(Some(Arc::new(set)));
                let mut status = self.status();
                status.last_success = Some(Instant::now());
                status.last_error = None;
            }
            Err(error) => {
                // What the IdP sent may be quoted in the error (serde quotes an odd string
                // whole): bounded, since refusals of any caller repeat it.
                let error = crate::text::bounded(&error, ERROR_MAX);
                let keeping = self.current.load().is_some();
                tracing::warn!(issuer = %self.issuer, %error, keeping_previous_keys = keeping, "JWKS fetch failed");
                self.status().last_error = Some(Arc::from(error.as_ref()));
            }
        }
        self.attempts.send_modify(|n| *n += 1);
        ok
    }

    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
