//! The fleet repository: what the replicas of a fleet add up together so that fleet controls
//! hold for the fleet rather than for each replica — budget spend per account and period,
//! each replica's rate-limit counts, the labels sessions earned and each replica's counts per
//! session, each replica's recent denies per agent (the quarantine trigger), and which replicas
//! were seen lately. The rules (what counts,
//! what is allowed) live in `fleet/`; this is only what is stored. Replicas write on a tick
//! and read on the same tick: nothing here is on the request path.

use futures_util::future::BoxFuture;

use super::error::StateError;
use super::quarantine::Actor;

/// Spend of one account in one period: added to by [`FleetRepository::add_spend`], read as
/// the fleet's total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendRow {
    /// `agent`, `group` or `fleet`.
    pub scope: String,
    /// The agent's id, the group's name, or `*` for the fleet.
    pub name: String,
    /// `day` or `month`.
    pub period: String,
    /// Which day (since 1970) or month (`year * 12 + month - 1`).
    pub index: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    /// Millionths of a US dollar.
    pub micro_usd: i64,
}

/// What `warden budgets reset` resets: one account (`scope` and `name`), every account of a
/// scope (`scope` alone), or every account (neither).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendReset {
    /// `agent`, `group` or `fleet`; `None`: every scope.
    pub scope: Option<String>,
    /// The agent's id or the group's name; `None`: every account of `scope`.
    pub name: Option<String>,
    /// Who reset it.
    pub by: Actor,
}

/// A reset as the store keeps it, in the transaction that wiped the spend: every gateway on
/// the store audits it when its budget sync reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendResetRecord {
    /// Its number: increasing in the order resets were committed.
    pub id: i64,
    pub reset: SpendReset,
    /// How many accounts (scope and name) had spend of the current day or month wiped.
    pub accounts: i64,
    /// When, milliseconds since the Unix epoch (the store's writer's clock).
    pub at_ms: i64,
}

/// How long reset records are kept: past a month, no period they reset is current.
pub const RESETS_KEPT_MS: i64 = 35 * 86_400_000;

/// Reset records one read of [`FleetRepository::spend_resets`] answers at most, oldest first
/// (the next read takes the rest).
pub const RESETS_READ_MAX: i64 = 1000;

/// One replica's count of requests a rate bucket admitted since it started counting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateCount {
    /// The replica that counted (random per process).
    pub replica: String,
    /// The bucket: its rule and the value counted, the same text on every replica.
    pub bucket: String,
    /// Requests admitted, in all.
    pub admitted: i64,
    /// The bucket's pace: nanoseconds between requests.
    pub interval_ns: i64,
    /// When the replica last published it, milliseconds since the Unix epoch.
    pub updated_ms: i64,
}

/// A label a session earned (what it touched), until it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionLabel {
    /// The session: a digest of the agent and the session's name or window.
    pub session: String,
    pub label: String,
    /// Its agent: the digest of the agent alone (its trail's key; a trail's label names its
    /// own key), so that a replica that learns the session counts it as that agent's; empty
    /// when stored by a Warden before state migration 19.
    pub owner: String,
    /// When it is forgotten, milliseconds since the Unix epoch.
    pub expires_ms: i64,
    /// When it was last stored (set by the store).
    pub updated_ms: i64,
}

/// One replica's counts in one session: what it remembered of the session's actions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionCount {
    /// The replica that counted (random per process).
    pub replica: String,
    /// The session: a digest of the agent and the session's name or window.
    pub session: String,
    /// Its agent, as [`SessionLabel::owner`].
    pub owner: String,
    /// Actions counted, in all.
    pub actions: i64,
    /// Per action and per resource, as the session module writes them (`fleet/session`):
    /// opaque here.
    pub keys: String,
    /// When it is forgotten (the session idle past its window), milliseconds since the Unix
    /// epoch.
    pub expires_ms: i64,
    /// When it was last stored (set by the store).
    pub updated_ms: i64,
}

/// One replica's recent denies of one agent, for the quarantine trigger on denies
/// (`fleet.quarantine.triggers.denies`): the fleet's denies within the window, not each
/// replica's, quarantine an agent whose requests a load balancer spreads over replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenyWindow {
    /// The replica that counted (random per process).
    pub replica: String,
    /// The agent's id.
    pub agent: String,
    /// When it was denied, milliseconds since the Unix epoch: at most the trigger's count, the
    /// latest ones; empty once the trigger fired on this replica.
    pub at_ms: Vec<i64>,
    /// When the trigger last fired for the agent on this replica, milliseconds since the Unix
    /// epoch (0: never): the other replicas drop their denies made until then, which it
    /// counted (or could have), so that a release does not leave them to fire again.
    pub fired_ms: i64,
    /// When it is forgotten (the last deny, or the firing, out of the window), milliseconds
    /// since the Unix epoch.
    pub expires_ms: i64,
}

/// How [`DenyWindow::at_ms`] is stored: the times, comma-separated.
pub(crate) fn deny_times_text(at_ms: &[i64]) -> String {
    at_ms
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// [`DenyWindow::at_ms`] as stored; what is not a time is skipped (a deny not counted).
pub(crate) fn deny_times(text: &str) -> Vec<i64> {
    text.split(',').filter_map(|t| t.parse().ok()).collect()
}

/// Fleet counters in the state store, shared by every replica.
pub trait FleetRepository: Send + Sync {
    /// Adds every row's tokens and dollars to its account's stored spend, in one transaction:
    /// all are added or none is. A sum past what a count holds (`i64::MAX`) stays there: an
    /// overflowing addition would refuse every later flush to the account, and leave every
    /// replica's budgets stale, on a figure one answer reported.
    fn add_spend(&self, deltas: Vec<SpendRow>) -> BoxFuture<'_, Result<(), StateError>>;

    /// The stored spend of the day `day` and the month `month`, by scope, name and period.
    fn spend(&self, day: i64, month: i64) -> BoxFuture<'_, Result<Vec<SpendRow>, StateError>>;

    /// Forgets the spend of the day and the month `periods` of what `reset` names, and keeps
    /// the record of it (who, what, when, how many accounts), in one transaction: the spend
    /// is not wiped without its record. Past periods go too, and records older than
    /// [`RESETS_KEPT_MS`]. Records are numbered in the order they are committed.
    fn reset_spend(
        &self,
        reset: SpendReset,
        periods: (i64, i64),
    ) -> BoxFuture<'_, Result<SpendResetRecord, StateError>>;

    /// The reset records numbered after `after_id`, oldest first, at most
    /// [`RESETS_READ_MAX`].
    fn spend_resets(
        &self,
        after_id: i64,
    ) -> BoxFuture<'_, Result<Vec<SpendResetRecord>, StateError>>;

    /// Stores this replica's counts, replacing those it published before.
    fn publish_counts(&self, counts: Vec<RateCount>) -> BoxFuture<'_, Result<(), StateError>>;

    /// Every replica's counts published at or after `since_ms`; older ones are removed.
    fn counts(&self, since_ms: i64) -> BoxFuture<'_, Result<Vec<RateCount>, StateError>>;

    /// Stores labels sessions earned (a label stored again lives until the later expiry).
    fn add_labels(&self, labels: Vec<SessionLabel>) -> BoxFuture<'_, Result<(), StateError>>;

    /// The labels stored at or after `since_ms` that have not expired; expired ones are
    /// removed.
    fn labels(&self, since_ms: i64) -> BoxFuture<'_, Result<Vec<SessionLabel>, StateError>>;

    /// Stores this replica's counts of the sessions given, replacing those it stored before.
    fn publish_session_counts(
        &self,
        counts: Vec<SessionCount>,
    ) -> BoxFuture<'_, Result<(), StateError>>;

    /// The other replicas' (all but `replica`'s) session counts stored at or after `since_ms`
    /// that have not expired; expired ones are removed.
    fn session_counts(
        &self,
        replica: String,
        since_ms: i64,
    ) -> BoxFuture<'_, Result<Vec<SessionCount>, StateError>>;

    /// Stores this replica's recent denies of the agents given, replacing those it stored
    /// before.
    fn publish_denies(&self, windows: Vec<DenyWindow>) -> BoxFuture<'_, Result<(), StateError>>;

    /// The other replicas' (all but `replica`'s) recent denies that have not expired; expired
    /// ones are removed.
    fn denies(&self, replica: String) -> BoxFuture<'_, Result<Vec<DenyWindow>, StateError>>;

    /// Marks `replica` seen at `now_ms`; how many replicas (it included) were seen at or after
    /// `since_ms`. Those seen before are removed.
    fn seen(
        &self,
        replica: String,
        now_ms: i64,
        since_ms: i64,
    ) -> BoxFuture<'_, Result<u64, StateError>>;
}
