//! Whether the state store answers, as operators watch it: every operation of either backend
//! reports its outcome here. The first failure of an outage is logged (with its error) and
//! turns `warden_state_store_up` to 0; the first success after it is logged (with how long it
//! lasted and how many operations failed) and turns it back to 1. Every failure is counted in
//! `warden_state_store_failed_operations_total` by what the operation was about and how it
//! failed (both bounded label sets), every success stamps
//! `warden_state_store_last_success_timestamp_seconds`. The followers of quarantines and
//! revocations read the store every refresh interval, so an idle gateway notices too.
//!
//! PostgreSQL's connection that listens for other replicas' changes (area `notifications`) is
//! an outage of its own: while it is down the other operations go on succeeding between its
//! attempts to listen again, and those successes do not end it. The store reads down
//! (`warden_state_store_up` 0) while either outage lasts; each is logged once when it begins
//! (ERROR) and once when it ends (INFO): listening again ends the notifications' outage.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use prometheus::{Gauge, IntCounterVec, IntGauge, Opts};

use super::error::StateError;

/// What a store operation is about: the `area` label of its failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    Pins,
    Approvals,
    Factors,
    Sessions,
    Canaries,
    Quarantine,
    Revocations,
    Fleet,
    BundleFloors,
    /// PostgreSQL's connection that `LISTEN`s for other replicas' changes: its loss, and each
    /// attempt to open it again.
    Notifications,
}

impl Area {
    /// Every area, for tests and for documentation checks.
    pub const ALL: [Area; 10] = [
        Area::Pins,
        Area::Approvals,
        Area::Factors,
        Area::Sessions,
        Area::Canaries,
        Area::Quarantine,
        Area::Revocations,
        Area::Fleet,
        Area::BundleFloors,
        Area::Notifications,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Area::Pins => "pins",
            Area::Approvals => "approvals",
            Area::Factors => "factors",
            Area::Sessions => "sessions",
            Area::Canaries => "canaries",
            Area::Quarantine => "quarantine",
            Area::Revocations => "revocations",
            Area::Fleet => "fleet",
            Area::BundleFloors => "bundle_floors",
            Area::Notifications => "notifications",
        }
    }
}

/// How an operation failed: the `error` label of its failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No connection (server down, login refused, TLS), or the store's thread is gone.
    Unreachable,
    /// Past `state.postgres.query_timeout`.
    Timeout,
    /// A statement failed (I/O, permissions, a lock held past the busy timeout).
    Query,
    /// The store answered with something this Warden did not write.
    Corrupt,
}

impl Failure {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Unreachable => "unreachable",
            Failure::Timeout => "timeout",
            Failure::Query => "query",
            Failure::Corrupt => "corrupt",
        }
    }

    /// How `error` counts: `None` for an answer that is no failure of the store (a cap
    /// reached); a corrupt record is a failure but the store answered, so it is up.
    pub fn of(error: &StateError) -> Option<Failure> {
        match error {
            StateError::TooManyPending { .. } => None,
            StateError::Corrupt { .. } => Some(Failure::Corrupt),
            StateError::PostgresTimeout { .. } => Some(Failure::Timeout),
            StateError::Query { .. }
            | StateError::PostgresQuery { .. }
            | StateError::Migrate { .. }
            | StateError::PostgresMigrate { .. } => Some(Failure::Query),
            _ => Some(Failure::Unreachable),
        }
    }

    /// Whether the store is away (or unusable) while operations fail this way.
    fn is_outage(self) -> bool {
        self != Failure::Corrupt
    }
}

/// The outcomes of a store's operations, for `/metrics` and the log. Cheap to clone.
#[derive(Clone)]
pub struct StoreHealth {
    inner: Arc<Inner>,
}

struct Inner {
    /// The store, as in its errors (no password).
    store: Arc<str>,
    /// True while either outage lasts: `outages.any()`, readable without the lock; written
    /// (as `up` is) only with the lock held.
    down: AtomicBool,
    outages: Mutex<Outages>,
    up: IntGauge,
    failed: IntCounterVec,
    last_success: Gauge,
}

/// The outages in progress.
#[derive(Default)]
struct Outages {
    /// From an operation failing for an outage until one succeeds.
    operations: Option<Outage>,
    /// From the listening connection's loss (or a failed first attempt) until it listens again.
    notifications: Option<Outage>,
}

impl Outages {
    fn any(&self) -> bool {
        self.operations.is_some() || self.notifications.is_some()
    }

    /// The outage that operations about `area` begin and end.
    fn of(&mut self, area: Area) -> &mut Option<Outage> {
        if area == Area::Notifications {
            &mut self.notifications
        } else {
            &mut self.operations
        }
    }
}

/// An outage in progress.
struct Outage {
    since: Instant,
    failed: u64,
}

impl std::fmt::Debug for StoreHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreHealth")
            .field("store", &self.inner.store)
            .field("up", &self.is_up())
            .finish_non_exhaustive()
    }
}

impl StoreHealth {
    /// The health of `store` (its location, for logs), up until an operation fails.
    pub fn new(store: &str) -> StoreHealth {
        let up = IntGauge::new(
            "warden_state_store_up",
            "1 while the state store answers; 0 from an operation failing (unreachable, timeout, \
             failed statement) until one succeeds, and while PostgreSQL's connection listening \
             for changes is down.",
        )
        .expect("static metric definition");
        up.set(1);
        let failed = IntCounterVec::new(
            Opts::new(
                "warden_state_store_failed_operations_total",
                "State store operations that failed, by what they were about (area) and how \
                 they failed (error: unreachable, timeout, query, corrupt).",
            ),
            &["area", "error"],
        )
        .expect("static metric definition");
        let last_success = Gauge::new(
            "warden_state_store_last_success_timestamp_seconds",
            "When a state store operation last succeeded, in seconds since the Unix epoch (0: \
             none yet).",
        )
        .expect("static metric definition");
        StoreHealth {
            inner: Arc::new(Inner {
                store: Arc::from(store),
                down: AtomicBool::new(false),
                outages: Mutex::new(Outages::default()),
                up,
                failed,
                last_success,
            }),
        }
    }

    /// Notes how an operation about `area` ended, and passes its result on.
    pub fn observe<T>(&self, area: Area, result: Result<T, StateError>) -> Result<T, StateError> {
        match &result {
            Ok(_) => self.succeeded(area),
            Err(error) => {
                if let Some(failure) = Failure::of(error) {
                    self.failed(area, failure, error);
                }
            }
        }
        result
    }

    /// Whether the last operation that could tell found the store answering.
    pub fn is_up(&self) -> bool {
        !self.inner.down.load(Ordering::Acquire)
    }

    /// The metrics, to register once.
    pub fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.inner.up.clone()),
            Box::new(self.inner.failed.clone()),
            Box::new(self.inner.last_success.clone()),
        ]
    }

    /// How many operations about `area` failed with `failure`, for tests.
    #[cfg(test)]
    pub(crate) fn failures(&self, area: Area, failure: Failure) -> u64 {
        self.inner
            .failed
            .with_label_values(&[area.as_str(), failure.as_str()])
            .get()
    }

    fn succeeded(&self, area: Area) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.inner.last_success.set(now);
        if !self.inner.down.load(Ordering::Acquire) {
            return;
        }
        // `down` and the gauge change only under the outages' lock, with them: a failure
        // between ending an outage and marking the store up would otherwise open an outage
        // that this then hides, and the store would read up through every failure after it.
        let ended = {
            let mut outages = self.outages();
            let ended = outages.of(area).take();
            if ended.is_some() && !outages.any() {
                self.inner.down.store(false, Ordering::Release);
                self.inner.up.set(1);
            }
            ended
        };
        let Some(outage) = ended else {
            return;
        };
        let down_for = humantime::format_duration(round_to_ms(outage.since.elapsed()));
        if area == Area::Notifications {
            tracing::info!(
                store = %self.inner.store,
                %down_for,
                failed_attempts = outage.failed,
                "the state store's change notifications are back (listening again)"
            );
        } else {
            tracing::info!(
                store = %self.inner.store,
                %down_for,
                failed_operations = outage.failed,
                "the state store answers again"
            );
        }
    }

    fn failed(&self, area: Area, failure: Failure, error: &StateError) {
        self.inner
            .failed
            .with_label_values(&[area.as_str(), failure.as_str()])
            .inc();
        if !failure.is_outage() {
            tracing::error!(store = %self.inner.store, area = area.as_str(), %error, "the state store holds a record this Warden cannot read");
            return;
        }
        let began = {
            let mut outages = self.outages();
            match outages.of(area) {
                Some(outage) => {
                    outage.failed += 1;
                    false
                }
                outage @ None => {
                    *outage = Some(Outage {
                        since: Instant::now(),
                        failed: 1,
                    });
                    self.inner.down.store(true, Ordering::Release);
                    self.inner.up.set(0);
                    true
                }
            }
        };
        if began && area == Area::Notifications {
            tracing::error!(
                store = %self.inner.store,
                area = area.as_str(),
                error = failure.as_str(),
                reason = %error,
                "the state store's change notifications stopped: what other replicas change \
                 is seen only when this one next reads it, until it listens again \
                 (warden_state_store_up is 0)"
            );
        } else if began {
            tracing::error!(
                store = %self.inner.store,
                area = area.as_str(),
                error = failure.as_str(),
                reason = %error,
                "the state store does not answer; what needs it fails (fails closed) until \
                 it does (warden_state_store_up is 0)"
            );
        }
    }

    fn outages(&self) -> std::sync::MutexGuard<'_, Outages> {
        self.inner
            .outages
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn round_to_ms(d: std::time::Duration) -> std::time::Duration {
    std::time::Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeout() -> StateError {
        StateError::PostgresTimeout {
            database: "warden@db:5432/warden".into(),
            timeout: std::time::Duration::from_secs(5),
        }
    }

    fn unreachable() -> StateError {
        StateError::PostgresConnect {
            database: "warden@db:5432/warden".into(),
            reason: "connection refused".into(),
        }
    }

    fn failed(health: &StoreHealth, area: Area, error: Failure) -> u64 {
        health
            .inner
            .failed
            .with_label_values(&[area.as_str(), error.as_str()])
            .get()
    }

    #[test]
    fn the_store_is_down_from_a_failure_until_a_success() {
        let health = StoreHealth::new("warden@db:5432/warden");
        assert!(health.is_up());
        assert_eq!(health.inner.up.get(), 1);
        assert_eq!(health.inner.last_success.get(), 0.0);

        health.observe(Area::Quarantine, Ok(())).unwrap();
        let first = health.inner.last_success.get();
        assert!(first > 1.0e9, "{first}");

        health
            .observe::<()>(Area::Quarantine, Err(unreachable()))
            .unwrap_err();
        health
            .observe::<()>(Area::Approvals, Err(timeout()))
            .unwrap_err();
        assert!(!health.is_up());
        assert_eq!(health.inner.up.get(), 0);
        assert_eq!(failed(&health, Area::Quarantine, Failure::Unreachable), 1);
        assert_eq!(failed(&health, Area::Approvals, Failure::Timeout), 1);
        assert_eq!(health.outages().operations.as_ref().unwrap().failed, 2);
        assert_eq!(health.inner.last_success.get(), first);

        assert_eq!(health.observe(Area::Fleet, Ok(7)).unwrap(), 7);
        assert!(health.is_up());
        assert_eq!(health.inner.up.get(), 1);
        assert!(!health.outages().any());
        assert!(health.inner.last_success.get() >= first);
        // The counts stay: a counter only grows.
        assert_eq!(failed(&health, Area::Quarantine, Failure::Unreachable), 1);
    }

    /// Successes and failures racing must leave the store's state as the last of them says:
    /// after one success and two failures the store is down, whatever came before.
    #[test]
    fn racing_successes_and_failures_never_leave_the_store_up_through_failures() {
        let deadline = Instant::now() + std::time::Duration::from_secs(3);
        let mut rounds = 0;
        while rounds < 2000 && Instant::now() < deadline {
            rounds += 1;
            let health = StoreHealth::new("warden@db:5432/warden");
            let race = std::time::Duration::from_micros(300);
            std::thread::scope(|scope| {
                for fails in [false, true, false, true] {
                    let health = &health;
                    scope.spawn(move || {
                        let until = Instant::now() + race;
                        while Instant::now() < until {
                            if fails {
                                let _ = health.observe::<()>(Area::Pins, Err(unreachable()));
                            } else {
                                let _ = health.observe(Area::Pins, Ok(()));
                            }
                        }
                    });
                }
            });
            health.observe(Area::Fleet, Ok(())).unwrap();
            for _ in 0..2 {
                health
                    .observe::<()>(Area::Fleet, Err(timeout()))
                    .unwrap_err();
            }
            assert!(!health.is_up(), "up after two failures, round {rounds}");
            assert_eq!(health.inner.up.get(), 0, "round {rounds}");
            health.observe(Area::Fleet, Ok(())).unwrap();
            assert!(health.is_up(), "round {rounds}");
            assert_eq!(health.inner.up.get(), 1, "round {rounds}");
        }
    }

    /// The listening connection down for a while, the pool's operations succeeding between
    /// its attempts: one outage, logged once each way, the store down throughout.
    #[test]
    fn a_notifications_outage_is_one_outage_whatever_succeeds_meanwhile() {
        use crate::state::tests::capture_logs;
        let store = "warden@notifications-outage.test:5432/warden";
        let health = StoreHealth::new(store);
        let (guard, captured) = capture_logs(tracing::Level::INFO);
        let lost = || StateError::PostgresConnect {
            database: store.into(),
            reason: "the connection listening for changes: connection refused".into(),
        };
        for _ in 0..5 {
            health
                .observe::<()>(Area::Notifications, Err(lost()))
                .unwrap_err();
            assert!(!health.is_up());
            assert_eq!(health.inner.up.get(), 0);
            // The pool answers meanwhile: that does not end the notifications' outage.
            health.observe(Area::Quarantine, Ok(())).unwrap();
            health.observe(Area::Approvals, Ok(())).unwrap();
            assert!(!health.is_up());
            assert_eq!(health.inner.up.get(), 0);
        }
        // An operation's outage within it ends on its own; the store stays down.
        health
            .observe::<()>(Area::Pins, Err(timeout()))
            .unwrap_err();
        health.observe(Area::Pins, Ok(())).unwrap();
        assert!(!health.is_up());
        assert_eq!(
            failed(&health, Area::Notifications, Failure::Unreachable),
            5
        );
        // Listening again ends it.
        health.observe(Area::Notifications, Ok(())).unwrap();
        assert!(health.is_up());
        assert_eq!(health.inner.up.get(), 1);
        drop(guard);
        let log = captured.text();
        let own: Vec<&str> = log.lines().filter(|l| l.contains(store)).collect();
        let notifications: Vec<&&str> = own
            .iter()
            .filter(|l| l.contains("change notifications"))
            .collect();
        assert_eq!(notifications.len(), 2, "{log}");
        assert!(notifications[0].contains(" ERROR "), "{log}");
        assert!(notifications[0].contains("connection refused"), "{log}");
        assert!(notifications[1].contains(" INFO "), "{log}");
        assert!(notifications[1].contains("failed_attempts=5"), "{log}");
        // The operation's outage: its own ERROR and INFO, nothing else.
        assert_eq!(own.len(), 4, "{log}");
    }

    #[test]
    fn a_refusal_is_no_failure_and_a_corrupt_record_leaves_the_store_up() {
        let health = StoreHealth::new("state.db");
        let cap = StateError::TooManyPending {
            principal: "Agent::\"a\"".into(),
            pending: 5,
            cap: 5,
        };
        health.observe::<()>(Area::Approvals, Err(cap)).unwrap_err();
        assert!(health.is_up());
        for area in Area::ALL {
            for error in [
                Failure::Unreachable,
                Failure::Timeout,
                Failure::Query,
                Failure::Corrupt,
            ] {
                assert_eq!(failed(&health, area, error), 0);
            }
        }
        let corrupt = StateError::Corrupt {
            store: "state.db".into(),
            what: "pin".into(),
        };
        health.observe::<()>(Area::Pins, Err(corrupt)).unwrap_err();
        assert!(health.is_up());
        assert_eq!(failed(&health, Area::Pins, Failure::Corrupt), 1);
    }

    #[test]
    fn errors_are_classed_by_how_the_store_failed() {
        assert_eq!(Failure::of(&timeout()), Some(Failure::Timeout));
        assert_eq!(Failure::of(&unreachable()), Some(Failure::Unreachable));
        let closed = StateError::Closed {
            store: "state.db".into(),
        };
        assert_eq!(Failure::of(&closed), Some(Failure::Unreachable));
        let query = StateError::Query {
            path: "state.db".into(),
            operation: "read a pin",
            source: rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR),
                None,
            ),
        };
        assert_eq!(Failure::of(&query), Some(Failure::Query));
    }

    #[test]
    fn the_metrics_are_exposed_under_their_documented_names() {
        let health = StoreHealth::new("state.db");
        health
            .observe::<()>(Area::BundleFloors, Err(timeout()))
            .unwrap_err();
        let registry = prometheus::Registry::new();
        for collector in health.collectors() {
            registry.register(collector).unwrap();
        }
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        assert!(text.contains("warden_state_store_up 0"), "{text}");
        assert!(
            text.contains(
                "warden_state_store_failed_operations_total{area=\"bundle_floors\",error=\"timeout\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("warden_state_store_last_success_timestamp_seconds 0"),
            "{text}"
        );
    }
}
