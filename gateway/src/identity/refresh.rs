//! Keeps an issuer's key set current: fetched in the background, refetched when a token names
//! an unknown key (rate-limited, one fetch at a time shared by every waiting request, each
//! waiting a bounded time), and kept as it was when a refresh fails.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::error::FetchedAgo;
use super::fetch::{FetchError, JwksFetcher};
use super::jwks::{KeySet, VerifyKey};

/// Longest wait between two attempts after failures (the refresh interval caps it too).
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Most characters of a fetch error kept (and shown in refusals and logs).
const ERROR_MAX: usize = 512;

/// What the last fetches did, and whether one runs now.
#[derive(Default)]
struct Status {
    last_attempt: Option<Instant>,
    last_success: Option<Instant>,
    /// Why the last attempt failed, as callers are told it (no URL: the log has those).
    last_error: Option<Arc<str>>,
    /// A fetch runs (on its own task): no other starts until it ends.
    fetching: bool,
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
    /// Number of completed fetch attempts: requests waiting for a fetch watch it.
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
        let since_attempt = status.last_attempt.map_or(0, |t| t.elapsed().as_secs());
        FetchedAgo {
            success: status.last_success.map(|t| t.elapsed().as_secs()),
            failure: status.last_error.clone().map(|e| (since_attempt, e)),
            running: status.fetching.then_some(since_attempt),
        }
    }

    /// Whether the key set may lack keys the issuer publishes: the last attempt to fetch it
    /// failed, or one still runs.
    pub(crate) fn unconfirmed(&self) -> bool {
        let status = self.status();
        status.last_error.is_some() || status.fetching
    }

    /// Why no key set is available: the last fetch error, or that none has completed yet.
    pub(crate) fn unavailable_reason(&self) -> Arc<str> {
        self.status()
            .last_error
            .clone()
            .unwrap_or_else(|| Arc::from("first JWKS fetch still in progress"))
    }

    /// Refetches because a token needs a key that is not there, waiting at most `wait` for
    /// the result. One fetch runs at a time, on its own task (a request that stops waiting
    /// does not cancel it: the next one waits for the same fetch), and requests start one at
    /// most once per `min_refetch`.
    pub(crate) async fn refresh_on_demand(self: &Arc<Self>, wait: Duration) {
        let mut attempts = self.attempts.subscribe();
        {
            let mut status = self.status();
            if !status.fetching {
                let recent = status
                    .last_attempt
                    .is_some_and(|t| t.elapsed() < self.min_refetch);
                if recent {
                    return;
                }
                self.start_fetch(&mut status);
            }
        }
        // Past the wait the fetch goes on; the request is told it still runs.
        let _ = tokio::time::timeout(wait, attempts.changed()).await;
    }

    /// Fetches now, whatever the rate limit, or waits for the fetch that runs (background
    /// refresh). True when the fetch it waited for succeeded.
    pub(crate) async fn refresh(self: &Arc<Self>) -> bool {
        let mut attempts = self.attempts.subscribe();
        {
            let mut status = self.status();
            if !status.fetching {
                self.start_fetch(&mut status);
            }
        }
        // The sender lives in `self`, so `changed` cannot fail while we borrow it; a fetch
        // ends within the fetcher's time limits.
        let _ = attempts.changed().await;
        self.status().last_error.is_none()
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

    /// Starts a fetch on its own task; `status` is this issuer's, locked, with no fetch
    /// running.
    fn start_fetch(self: &Arc<Self>, status: &mut Status) {
        let this = Arc::clone(self);
        self.start(status, async move { this.fetcher.fetch().await });
    }

    /// Starts `fetch` on its own task as this issuer's one fetch, its result kept and
    /// announced to whoever waits for it. However the task ends (a panic too), the fetch ends
    /// with it: were it left marked running, no other would ever start, and every request
    /// and the background refresh would wait for it forever.
    fn start(
        self: &Arc<Self>,
        status: &mut Status,
        fetch: impl Future<Output = Result<KeySet, FetchError>> + Send + 'static,
    ) {
        status.fetching = true;
        status.last_attempt = Some(Instant::now());
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut running = Running {
                keys: &this,
                result: None,
            };
            running.result = Some(fetch.await);
        });
    }

    /// Keeps the result of one fetch.
    fn keep(&self, status: &mut Status, result: Result<KeySet, FetchError>) {
        match result {
            Ok(set) => {
                tracing::info!(issuer = %self.issuer, keys = set.len(), kids = ?set.kids(), "JWKS loaded");
                self.current.store(Some(Arc::new(set)));
                status.last_success = Some(Instant::now());
                status.last_error = None;
            }
            Err(error) => {
                let keeping = self.current.load().is_some();
                // The log names the URL and the whole cause; callers are told what failed,
                // bounded (what the IdP sent may be quoted), and never where.
                let logged = crate::text::bounded(&error.to_string(), ERROR_MAX).into_owned();
                tracing::warn!(issuer = %self.issuer, error = %logged, keeping_previous_keys = keeping, "JWKS fetch failed");
                let shown = crate::text::bounded(&error.shown(), ERROR_MAX).into_owned();
                status.last_error = Some(Arc::from(shown));
            }
        }
    }

    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The fetch that runs, ended when its task ends: its result kept (a task that ended without
/// one, by a panic, is a failed attempt), the fetch marked ended and the waiters woken.
struct Running<'a> {
    keys: &'a RemoteKeys,
    result: Option<Result<KeySet, FetchError>>,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let keys = self.keys;
        let mut status = keys.status();
        match self.result.take() {
            Some(result) => keys.keep(&mut status, result),
            None => {
                tracing::error!(issuer = %keys.issuer, "JWKS fetch ended without a result");
                status.last_error = Some(Arc::from("the JWKS fetch ended without a result"));
            }
        }
        status.fetching = false;
        // Announced under the status lock: a request that saw the fetch running sees it end.
        keys.attempts.send_modify(|n| *n += 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::config::IssuerConfig;

    fn keys() -> Arc<RemoteKeys> {
        let cfg = IssuerConfig {
            issuer: "https://idp.example".into(),
            audiences: vec!["warden".into()],
            algorithms: super::super::config::default_algorithms(),
            jwks_uri: None,
            claims: None,
            ca_file: None,
            allow_private: Vec::new(),
        };
        let fetcher = JwksFetcher::new(&cfg, "identity.issuers[0]").unwrap();
        RemoteKeys::new(Arc::from("https://idp.example"), fetcher, Duration::ZERO)
    }

    #[tokio::test]
    async fn a_fetch_whose_task_panics_ends_and_wakes_its_waiters() {
        let keys = keys();
        let mut attempts = keys.attempts.subscribe();
        {
            let mut status = keys.status();
            keys.start(&mut status, async { panic!("a fetch that panics") });
        }
        tokio::time::timeout(Duration::from_secs(10), attempts.changed())
            .await
            .expect("the waiters are woken")
            .expect("the sender lives");
        assert_eq!(*attempts.borrow(), 1);
        {
            let status = keys.status();
            assert!(!status.fetching, "no fetch is left running");
            assert_eq!(
                status.last_error.as_deref(),
                Some("the JWKS fetch ended without a result")
            );
        }
        assert!(keys.unconfirmed());
        // The waiters for the first attempt are released too.
        tokio::time::timeout(Duration::from_secs(10), keys.first_attempt_done())
            .await
            .expect("the first attempt is done");
    }
}
