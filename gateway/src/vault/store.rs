//! The secrets Warden holds from Vault, in memory only: read when first needed (one Vault
//! call however many requests wait for it), served from memory until a margin before their
//! lease or TTL ends, renewed in the background while requests use them, revoked when no
//! request used them for `vault.idle` and at shutdown. While Vault is down, what is cached
//! serves until it expires; then requests fail closed.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use dashmap::DashMap;

use super::client::{Vault, VaultStatus, margin};
use super::config::VaultConfig;
use super::error::VaultError;
use super::metrics::VAULT;
use super::secret::SecretData;

/// Where a secret came from: what audit records keep (never the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretOrigin {
    /// The secret's path (`secret/agents/team-a/github`, `database/creds/readonly`).
    pub path: String,
    /// The KV version read.
    pub version: Option<u64>,
    /// The lease of a dynamic secret.
    pub lease_id: Option<String>,
}

/// Why the store has no secret to give. Never holds a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// Vault is unreachable and no cached copy of the secret is still valid: fail closed.
    #[error(
        "vault is unreachable and the cached secret {path} has expired (or was never read): {reason}"
    )]
    Down { path: String, reason: String },
    /// Vault answered, but not with the secret (no such path, no permission, a bad answer).
    #[error("vault could not give {path}: {reason}")]
    Refused { path: String, reason: String },
}

/// Which secret: a KV v2 version, or a leased path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SecretKey {
    /// A KV v2 secret: its mount, its path below the mount, and a version (`None`: latest).
    Kv {
        mount: String,
        path: String,
        version: Option<u64>,
    },
    /// A path that answers with a leased secret: read, or written with `params` (their
    /// JSON text).
    Lease {
        path: String,
        params: Option<String>,
    },
}

impl SecretKey {
    /// The path as users write it (`secret/agents/ci/github`).
    pub fn path(&self) -> String {
        match self {
            SecretKey::Kv { mount, path, .. } => format!("{mount}/{path}"),
            SecretKey::Lease { path, .. } => path.clone(),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            SecretKey::Kv { .. } => "kv",
            SecretKey::Lease { .. } => "lease",
        }
    }
}

/// A secret in memory.
pub struct Held {
    pub data: SecretData,
    /// What audit records name.
    pub origin: Arc<SecretOrigin>,
    /// The lease, when there is one, and whether it can be renewed.
    lease: Option<(String, bool)>,
    /// The lease duration asked for at renewal (the one first granted).
    lease_duration: Duration,
    /// Vault granted less than asked at the last renewal (the lease nears its maximum TTL):
    /// the next refresh reads a new lease instead of renewing.
    last_renewal: bool,
    /// After this, the secret is not used.
    expires: Instant,
    /// From this on, the background task renews or re-reads it.
    refresh_at: Instant,
    /// What a user of the secret made of it (a formatted credential), kept as long as the
    /// secret is: dropped with it when it expires, idles or is replaced.
    made: ArcSwapOption<Made>,
}

/// A value made from a [`Held`] secret by one of its users.
pub struct Made {
    owner: u64,
    value: Arc<dyn std::any::Any + Send + Sync>,
}

impl Held {
    /// What user `owner` made of this secret, if it did.
    pub fn made_by(&self, owner: u64) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        let made = self.made.load();
        made.as_ref()
            .filter(|m| m.owner == owner)
            .map(|m| Arc::clone(&m.value))
    }

    /// Keeps what user `owner` made of this secret (the last user's only).
    pub fn remember(&self, owner: u64, value: Arc<dyn std::any::Any + Send + Sync>) {
        self.made.store(Some(Arc::new(Made { owner, value })));
    }
}

/// One secret's place in the store.
pub struct Slot {
    key: SecretKey,
    current: ArcSwapOption<Held>,
    /// Held while reading from Vault: concurrent misses make one call.
    fetching: tokio::sync::Mutex<()>,
    /// A reload asked for it to be read again while a read was under way (one that may have
    /// left before the secret was rotated): read again once that read ends. Read and written
    /// `SeqCst`: a reload's mark then failed `try_lock`, and a reader's unlock then check,
    /// must not both miss the other.
    stale: std::sync::atomic::AtomicBool,
    /// When a request last used it (milliseconds since the store's epoch).
    last_used: AtomicU64,
    /// Failed refreshes in a row, and when the next may be tried (ms since the epoch).
    failures: AtomicU32,
    next_try: AtomicU64,
    /// The last failure, answered at once until `next_try` (so an outage does not make every
    /// request wait for Vault's timeout).
    last_error: std::sync::Mutex<Option<SecretError>>,
}

impl Slot {
    pub fn key(&self) -> &SecretKey {
        &self.key
    }
}

/// The secrets of one `vault:` configuration.
pub struct SecretStore {
    vault: Vault,
    config: VaultConfig,
    slots: DashMap<SecretKey, Arc<Slot>>,
    epoch: Instant,
    /// Shut down: nothing more is read, renewed or held.
    closed: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretStore")
            .field("vault", &self.vault)
            .field("secrets", &self.slots.len())
            .finish()
    }
}

/// How often the background task looks at what is held.
const TICK: Duration = Duration::from_secs(1);
/// How many KV secrets a reload reads again at once: one Vault read per secret held (per
/// principal, with per-agent paths) would otherwise leave all together at every reload.
const REREADS_AT_ONCE: usize = 4;
/// Longest wait between two tries while Vault fails.
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Every store alive in the process (a reload may leave an old one in use by open MCP
/// sessions): shutdown revokes what each holds.
static STORES: std::sync::Mutex<Vec<Weak<SecretStore>>> = std::sync::Mutex::new(Vec::new());

impl SecretStore {
    /// A store on Vault as `config` says; inside a tokio runtime, its background task runs
    /// for as long as the store lives. Vault need not be up.
    pub fn new(config: VaultConfig) -> Result<Arc<SecretStore>, VaultError> {
        let store = SecretStore::idle(config)?;
        store.start();
        Ok(store)
    }

    /// A store whose upkeep has not started: it reads on demand, but makes no login and no
    /// renewal of its own until [`SecretStore::start`] (a reload starts its new store only
    /// once the whole new configuration is valid).
    pub fn idle(config: VaultConfig) -> Result<Arc<SecretStore>, VaultError> {
        let store = Arc::new(SecretStore {
            vault: Vault::offline(config.clone())?,
            config,
            slots: DashMap::new(),
            epoch: Instant::now(),
            closed: std::sync::atomic::AtomicBool::new(false),
        });
        let mut stores = lock(&STORES);
        stores.retain(|s| s.strong_count() > 0);
        stores.push(Arc::downgrade(&store));
        Ok(store)
    }

    /// Starts the upkeep: Vault's login and token renewal, and the background task that
    /// renews, re-reads and revokes what is held.
    pub fn start(self: &Arc<Self>) {
        self.vault.begin();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(tend(Arc::downgrade(self)));
        }
    }

    /// A store that never reaches Vault (no login, no background task): for resolving
    /// routes offline (`warden check`).
    pub fn offline(config: VaultConfig) -> Result<Arc<SecretStore>, VaultError> {
        Ok(Arc::new(SecretStore {
            vault: Vault::offline(config.clone())?,
            config,
            slots: DashMap::new(),
            epoch: Instant::now(),
            closed: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// The configuration it was made with.
    pub fn config(&self) -> &VaultConfig {
        &self.config
    }

    /// Whether Vault answered the last call.
    pub fn status(&self) -> VaultStatus {
        self.vault.status()
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The slot of `key`, made on first use.
    pub fn slot(&self, key: &SecretKey) -> Arc<Slot> {
        if let Some(slot) = self.slots.get(key) {
            return Arc::clone(&slot);
        }
        Arc::clone(&self.slots.entry(key.clone()).or_insert_with(|| {
            Arc::new(Slot {
                key: key.clone(),
                current: ArcSwapOption::empty(),
                fetching: tokio::sync::Mutex::new(()),
                stale: std::sync::atomic::AtomicBool::new(false),
                last_used: AtomicU64::new(0),
                failures: AtomicU32::new(0),
                next_try: AtomicU64::new(0),
                last_error: std::sync::Mutex::new(None),
            })
        }))
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The secret, if one still valid is in memory (no I/O); marks it used.
    pub fn cached(&self, slot: &Slot) -> Option<Arc<Held>> {
        let held = slot.current.load_full()?;
        let now = Instant::now();
        if now >= held.expires {
            return None;
        }
        // Written at most once a second: every worker touches this line.
        let now_ms = u64::try_from(now.saturating_duration_since(self.epoch).as_millis())
            .unwrap_or(u64::MAX);
        if now_ms.saturating_sub(slot.last_used.load(Ordering::Relaxed)) >= 1000 {
            slot.last_used.store(now_ms, Ordering::Relaxed);
        }
        Some(held)
    }

    /// The secret: from memory when valid, else read from Vault (one call for all who wait).
    /// The read runs in a task of its own: a request that goes away while it waits leaves
    /// the read to finish and its lease to be kept (and revoked in time), never lost.
    pub async fn get(self: &Arc<Self>, slot: &Arc<Slot>) -> Result<Arc<Held>, SecretError> {
        if let Some(held) = self.cached(slot) {
            return Ok(held);
        }
        let store = Arc::clone(self);
        let slot = Arc::clone(slot);
        let path = slot.key.path();
        match tokio::spawn(async move {
            let result = store.fetch(&slot).await;
            if slot.stale.load(Ordering::SeqCst) {
                // A reload came during the read: read again, without making this request wait.
                tokio::spawn(async move { store.reread_stale(&slot).await });
            }
            result
        })
        .await
        {
            Ok(result) => result,
            Err(e) => Err(SecretError::Refused {
                path,
                reason: format!("the read was interrupted: {e}"),
            }),
        }
    }

    async fn fetch(&self, slot: &Slot) -> Result<Arc<Held>, SecretError> {
        let _fetching = slot.fetching.lock().await;
        if let Some(held) = self.cached(slot) {
            return Ok(held);
        }
        if self.is_closed() {
            return Err(SecretError::Refused {
                path: slot.key.path(),
                reason: "Warden is shutting down".into(),
            });
        }
        if self.now_ms() < slot.next_try.load(Ordering::Relaxed)
            && let Some(e) = lock(&slot.last_error).clone()
        {
            return Err(e);
        }
        slot.last_used.store(self.now_ms(), Ordering::Relaxed);
        // This read leaves now: it reads what any reload before it asked for (and is counted
        // as that reload's re-read; nothing valid is held, so none is kept stale).
        let asked = slot.stale.swap(false, Ordering::SeqCst);
        let (answer, refreshed) = match self.read(&slot.key).await {
            Ok(held) => {
                let held = Arc::new(held);
                self.replace(slot, Some(Arc::clone(&held)), Revoke::Never);
                self.succeeded(slot);
                (Ok(held), Refreshed::Ok)
            }
            Err(e) => (Err(self.failed(slot, e)), Refreshed::Failed),
        };
        if asked {
            refreshed.count_reread();
        }
        answer
    }

    /// Reads `key` from Vault.
    async fn read(&self, key: &SecretKey) -> Result<Held, VaultError> {
        let result = match key {
            SecretKey::Kv {
                mount,
                path,
                version,
            } => self.vault.kv(mount, path, *version).await.map(|kv| {
                let ttl = self.config.kv_ttl;
                self.held(kv.data, key.path(), Some(kv.version), None, ttl)
            }),
            SecretKey::Lease { path, params } => {
                let params = params
                    .as_deref()
                    .map(serde_json::from_str::<serde_json::Value>)
                    .transpose()
                    .map_err(|e| VaultError::Config(format!("params of {path}: {e}")))?;
                self.vault.lease(path, params.as_ref()).await.map(|leased| {
                    // A secret without a lease (a plain read of a non-dynamic path, whose
                    // `lease_duration` is only a refresh hint: 32 days on KV v1) is kept as
                    // KV is, for `kv_ttl`.
                    let duration = if leased.lease_duration.is_zero() || leased.lease_id.is_empty()
                    {
                        self.config.kv_ttl
                    } else {
                        leased.lease_duration
                    };
                    let lease = (!leased.lease_id.is_empty())
                        .then_some((leased.lease_id, leased.renewable));
                    self.held(leased.data, path.clone(), None, lease, duration)
                })
            }
        };
        VAULT
            .reads
            .with_label_values(&[key.kind(), if result.is_ok() { "ok" } else { "error" }])
            .inc();
        result
    }

    fn held(
        &self,
        data: SecretData,
        path: String,
        version: Option<u64>,
        lease: Option<(String, bool)>,
        duration: Duration,
    ) -> Held {
        let now = Instant::now();
        Held {
            data,
            origin: Arc::new(SecretOrigin {
                path,
                version,
                lease_id: lease.as_ref().map(|(id, _)| id.clone()),
            }),
            lease,
            lease_duration: duration,
            last_renewal: false,
            expires: now + duration,
            refresh_at: now + duration.saturating_sub(margin(self.config.renew_margin, duration)),
            made: ArcSwapOption::empty(),
        }
    }

    /// Puts `new` in the slot. What it replaces is revoked when `revoke` says so; a lease
    /// replaced by a fresh one is left to run out (requests that took it may still use it,
    /// and it has at most the renewal margin left).
    fn replace(&self, slot: &Slot, new: Option<Arc<Held>>, revoke: Revoke) {
        let had = new.is_some();
        let old = slot.current.swap(new);
        match (old.is_some(), had) {
            (false, true) => VAULT.held.inc(),
            (true, false) => VAULT.held.dec(),
            _ => {}
        }
        if let (Some(old), Revoke::Now) = (old, revoke)
            && let Some((lease_id, _)) = &old.lease
        {
            self.revoke_later(lease_id.clone());
        }
    }

    fn revoke_later(&self, lease_id: String) {
        let vault = self.vault.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { revoke(&vault, &lease_id).await });
        }
    }

    fn succeeded(&self, slot: &Slot) {
        slot.failures.store(0, Ordering::Relaxed);
        slot.next_try.store(0, Ordering::Relaxed);
        *lock(&slot.last_error) = None;
    }

    /// Notes a failed read of `slot` and answers the error requests get: Vault down (and
    /// nothing valid cached) or Vault refusing.
    fn failed(&self, slot: &Slot, e: VaultError) -> SecretError {
        let path = slot.key.path();
        let answer = if e.is_outage() || (e.is_forbidden() && !self.vault.is_logged_in()) {
            SecretError::Down {
                path,
                reason: e.to_string(),
            }
        } else {
            SecretError::Refused {
                path,
                reason: e.to_string(),
            }
        };
        let failures = slot.failures.fetch_add(1, Ordering::Relaxed) + 1;
        let wait = backoff(failures);
        slot.next_try.store(
            self.now_ms() + u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        *lock(&slot.last_error) = Some(answer.clone());
        answer
    }

    /// Reads again now every KV secret held that follows the latest version (no `version`
    /// pinned): after a reload, a secret rotated in Vault is used from the moment it is read,
    /// not only once `kv_ttl` has passed. One task reads them, [`REREADS_AT_ONCE`] at a time.
    /// A secret whose read is under way (which may have left before the rotation) is marked
    /// stale and read again when that read ends. The held one serves until then, and on if
    /// Vault cannot be read (as at any refresh); leases are left as they are.
    pub fn reread_latest_kv(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let slots: Vec<Arc<Slot>> = self
            .slots
            .iter()
            .filter(|s| {
                matches!(s.key, SecretKey::Kv { version: None, .. }) && s.current.load().is_some()
            })
            .map(|s| Arc::clone(&s))
            .collect();
        if slots.is_empty() {
            return;
        }
        // Marked before any is tried: a read under way now sees the mark when it ends.
        for slot in &slots {
            slot.stale.store(true, Ordering::SeqCst);
        }
        let store = Arc::clone(self);
        runtime.spawn(async move {
            use futures_util::StreamExt;
            futures_util::stream::iter(slots)
                .for_each_concurrent(REREADS_AT_ONCE, |slot| {
                    let store = &store;
                    async move { store.reread_stale(&slot).await }
                })
                .await;
        });
    }

    /// Reads `slot` again for as long as it is marked stale and something is held. A read
    /// under way keeps the mark for its own task to see when it ends (each task that held
    /// the read's lock calls this after letting go of it), so the mark is never lost.
    async fn reread_stale(&self, slot: &Slot) {
        while slot.stale.load(Ordering::SeqCst) {
            let Ok(_fetching) = slot.fetching.try_lock() else {
                return;
            };
            if !slot.stale.load(Ordering::SeqCst) || self.is_closed() {
                return;
            }
            let Some(held) = slot.current.load_full() else {
                // Nothing held: the next request reads the latest version.
                slot.stale.store(false, Ordering::SeqCst);
                return;
            };
            self.refresh(slot, &held).await;
        }
    }

    /// One pass of the background task: drops (and revokes) what no request used for
    /// `idle`, drops what expired; starts the renewal or re-read of what is due, each in a
    /// task of its own (one slow slot delays no other).
    fn tend_once(self: &Arc<Self>) {
        let now_ms = self.now_ms();
        let idle_ms = u64::try_from(self.config.idle.as_millis()).unwrap_or(u64::MAX);
        let slots: Vec<Arc<Slot>> = self.slots.iter().map(|s| Arc::clone(&s)).collect();
        for slot in slots {
            let Some(held) = slot.current.load_full() else {
                // Nothing held and nobody but the store refers to it: forget the slot.
                if Arc::strong_count(&slot) <= 2
                    && now_ms.saturating_sub(slot.last_used.load(Ordering::Relaxed)) > idle_ms
                {
                    self.slots
                        .remove_if(&slot.key, |_, s| Arc::strong_count(s) <= 2);
                }
                continue;
            };
            let unused_ms = now_ms.saturating_sub(slot.last_used.load(Ordering::Relaxed));
            if unused_ms > idle_ms {
                tracing::debug!(path = %slot.key.path(), "secret idle: dropped from memory");
                self.replace(&slot, None, Revoke::Now);
                continue;
            }
            let now = Instant::now();
            if now >= held.expires {
                // Expired while Vault was down: requests read it again when it is back.
                self.replace(&slot, None, Revoke::Never);
                continue;
            }
            if now < held.refresh_at || now_ms < slot.next_try.load(Ordering::Relaxed) {
                continue;
            }
            let store = Arc::clone(self);
            tokio::spawn(async move {
                {
                    // A refresh (or a request's read) already under way does this one's work.
                    let Ok(_fetching) = slot.fetching.try_lock() else {
                        return;
                    };
                    if !store.is_closed() {
                        store.refresh(&slot, &held).await;
                    }
                }
                store.reread_stale(&slot).await;
            });
        }
    }

    /// Renews `held`'s lease, or reads the secret again when it has no renewable lease or
    /// the last renewal was capped by the lease's maximum TTL. A read that takes a reload's
    /// mark is counted as that reload's re-read.
    async fn refresh(&self, slot: &Slot, held: &Arc<Held>) {
        if let (Some((lease_id, true)), false) = (&held.lease, held.last_renewal) {
            match self.vault.renew_lease(lease_id, held.lease_duration).await {
                Ok(granted) if !granted.is_zero() => {
                    VAULT.renewals.with_label_values(&["ok"]).inc();
                    let now = Instant::now();
                    let renewed = Held {
                        data: held.data.clone(),
                        origin: Arc::clone(&held.origin),
                        lease: held.lease.clone(),
                        lease_duration: held.lease_duration,
                        // Less than asked: the maximum TTL is near; a new lease comes next.
                        last_renewal: granted < held.lease_duration,
                        expires: now + granted,
                        refresh_at: now
                            + granted.saturating_sub(margin(self.config.renew_margin, granted)),
                        made: ArcSwapOption::empty(),
                    };
                    slot.current.store(Some(Arc::new(renewed)));
                    self.succeeded(slot);
                    tracing::debug!(path = %slot.key.path(), granted = ?granted, "lease renewed");
                    return;
                }
                Ok(_) => {
                    VAULT.renewals.with_label_values(&["exhausted"]).inc();
                }
                Err(e) if e.is_outage() => {
                    VAULT.renewals.with_label_values(&["error"]).inc();
                    self.failed(slot, e);
                    return;
                }
                Err(e) => {
                    VAULT.renewals.with_label_values(&["error"]).inc();
                    tracing::info!(path = %slot.key.path(), error = %e, "lease not renewed; reading a new one");
                }
            }
        }
        let asked = slot.stale.swap(false, Ordering::SeqCst);
        let refreshed = match self.read(&slot.key).await {
            Ok(new) => {
                self.replace(slot, Some(Arc::new(new)), Revoke::Never);
                self.succeeded(slot);
                Refreshed::Ok
            }
            Err(e) if e.is_outage() => {
                let answer = self.failed(slot, e);
                tracing::warn!(error = %answer, "cannot refresh a secret from vault; the cached one serves until it expires");
                Refreshed::KeptStale
            }
            Err(e) => {
                // Vault refuses it now (deleted, destroyed, no longer granted): so does Warden.
                let answer = self.failed(slot, e);
                tracing::warn!(error = %answer, "vault no longer gives a secret; it is dropped and its requests refused");
                self.replace(slot, None, Revoke::Now);
                Refreshed::Failed
            }
        };
        if asked {
            refreshed.count_reread();
        }
    }

    /// Drops every secret held; returns their leases.
    fn forget_all(&self) -> Vec<String> {
        self.slots
            .iter()
            .filter_map(|s| {
                let old = s.current.swap(None)?;
                VAULT.held.dec();
                old.lease.as_ref().map(|(id, _)| id.clone())
            })
            .collect()
    }

    /// Revokes every lease held and forgets every secret (shutdown), within `within`;
    /// nothing is read or renewed afterwards.
    pub async fn shutdown(&self, within: Duration) {
        self.closed.store(true, Ordering::Release);
        // Wait for reads and renewals under way, so that none stores a lease afterwards.
        let slots: Vec<Arc<Slot>> = self.slots.iter().map(|s| Arc::clone(&s)).collect();
        let settled = async {
            for slot in &slots {
                drop(slot.fetching.lock().await);
            }
        };
        let _ = tokio::time::timeout(within, settled).await;
        let leases = self.forget_all();
        if leases.is_empty() {
            return;
        }
        let vault = self.vault.clone();
        let all = futures_util::future::join_all(
            leases
                .iter()
                .map(|id| revoke(&vault, id))
                .collect::<Vec<_>>(),
        );
        if tokio::time::timeout(within, all).await.is_err() {
            tracing::warn!(
                leases = leases.len(),
                "vault did not confirm every lease revocation in time; the rest expire on their own"
            );
        }
    }

    /// Shuts down every store of the process (the current configuration's, and older ones
    /// open MCP sessions still use).
    pub async fn shutdown_all(within: Duration) {
        let stores: Vec<Arc<SecretStore>> =
            lock(&STORES).iter().filter_map(Weak::upgrade).collect();
        futures_util::future::join_all(stores.iter().map(|s| s.shutdown(within))).await;
    }
}

/// What came of a read of a secret held, as `warden_vault_reload_rereads_total` counts it
/// when a reload asked for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refreshed {
    /// Read again: the secret held is current.
    Ok,
    /// Vault refused it (deleted, destroyed, no longer granted): dropped.
    Failed,
    /// Vault did not answer: what is held serves until it expires.
    KeptStale,
}

impl Refreshed {
    /// Counts it as the re-read a reload asked for.
    fn count_reread(self) {
        let result = match self {
            Refreshed::Ok => "ok",
            Refreshed::Failed => "failed",
            Refreshed::KeptStale => "kept_stale",
        };
        VAULT.reload_rereads.with_label_values(&[result]).inc();
    }
}

/// Whether a replaced secret's lease is revoked.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Revoke {
    /// Now: nobody uses it (idle), or Vault no longer gives it.
    Now,
    /// Never: it runs out (a fresh lease replaced it; or it expired).
    Never,
}

impl Drop for SecretStore {
    /// A store replaced by a reload (another `vault:`) revokes what it held.
    fn drop(&mut self) {
        for id in self.forget_all() {
            self.revoke_later(id);
        }
    }
}

async fn revoke(vault: &Vault, lease_id: &str) {
    match vault.revoke_lease(lease_id).await {
        Ok(()) => {
            VAULT.revocations.with_label_values(&["ok"]).inc();
            tracing::debug!(lease_id, "lease revoked");
        }
        Err(e) => {
            VAULT.revocations.with_label_values(&["error"]).inc();
            tracing::warn!(lease_id, error = %e, "cannot revoke a lease; it expires on its own");
        }
    }
}

/// The wait after `failures` failed tries in a row: 1 s, 2 s, 4 s, then 5 s.
fn backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(5);
    (Duration::from_secs(1) * 2u32.pow(exp)).min(BACKOFF_MAX)
}

/// The background task of a store, for as long as it lives (and is not shut down).
async fn tend(store: Weak<SecretStore>) {
    loop {
        tokio::time::sleep(TICK).await;
        let Some(store) = store.upgrade() else {
            return;
        };
        if store.is_closed() {
            return;
        }
        store.tend_once();
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_limit() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(3), Duration::from_secs(4));
        assert_eq!(backoff(50), BACKOFF_MAX);
    }

    #[test]
    fn keys_name_their_path() {
        let kv = SecretKey::Kv {
            mount: "secret".into(),
            path: "agents/ci/github".into(),
            version: Some(2),
        };
        assert_eq!(kv.path(), "secret/agents/ci/github");
        assert_eq!(
            SecretKey::Lease {
                path: "database/creds/ro".into(),
                params: None,
            }
            .path(),
            "database/creds/ro"
        );
    }

    use axum::extract::{Path, State};
    use axum::routing::get;
    use serde_json::json;

    /// A fake Vault's KV v2: every path answers `version`, decided when the request arrives;
    /// an answer waits while `gate` is closed, and for `delay`. It counts the reads, and the
    /// most under way at once.
    #[derive(Clone)]
    struct Kv {
        version: Arc<AtomicU64>,
        reads: Arc<AtomicU64>,
        under_way: Arc<AtomicU64>,
        most: Arc<AtomicU64>,
        gate: tokio::sync::watch::Sender<bool>,
        delay: Duration,
    }

    async fn kv_read(
        State(kv): State<Kv>,
        Path(_path): Path<String>,
    ) -> axum::Json<serde_json::Value> {
        let version = kv.version.load(Ordering::SeqCst);
        kv.reads.fetch_add(1, Ordering::SeqCst);
        let now = kv.under_way.fetch_add(1, Ordering::SeqCst) + 1;
        kv.most.fetch_max(now, Ordering::SeqCst);
        let mut open = kv.gate.subscribe();
        let _ = open.wait_for(|open| *open).await;
        tokio::time::sleep(kv.delay).await;
        kv.under_way.fetch_sub(1, Ordering::SeqCst);
        axum::Json(json!({"data": {"data": {"token": format!("v{version}")},
                                    "metadata": {"version": version}}}))
    }

    async fn fake_kv(delay: Duration) -> (Kv, Arc<SecretStore>, tempfile::TempDir) {
        let kv = Kv {
            version: Arc::new(AtomicU64::new(1)),
            reads: Arc::default(),
            under_way: Arc::default(),
            most: Arc::default(),
            gate: tokio::sync::watch::channel(true).0,
            delay,
        };
        let app = axum::Router::new()
            .route(
                "/v1/auth/token/lookup-self",
                get(|| async { axum::Json(json!({"data": {"ttl": 3600, "renewable": false}})) }),
            )
            .route("/v1/secret/data/{*path}", get(kv_read))
            .with_state(kv.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "t").unwrap();
        let config = VaultConfig {
            address,
            namespace: None,
            auth: super::super::config::VaultAuth::Token {
                token: super::super::config::BootstrapSecret::File(token),
            },
            ca_cert: None,
            timeout: Duration::from_secs(10),
            renew_margin: Duration::from_secs(60),
            kv_ttl: Duration::from_secs(300),
            idle: Duration::from_secs(600),
        };
        (kv, SecretStore::idle(config).unwrap(), dir)
    }

    fn latest(path: &str) -> SecretKey {
        SecretKey::Kv {
            mount: "secret".into(),
            path: path.into(),
            version: None,
        }
    }

    fn version_held(store: &SecretStore, slot: &Slot) -> Option<u64> {
        store.cached(slot).and_then(|held| held.origin.version)
    }

    async fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ok() {
            assert!(Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A reload re-reads every KV secret held, but never more than `REREADS_AT_ONCE` at a
    /// time (per-agent paths hold one per agent).
    #[tokio::test]
    async fn a_reload_rereads_every_kv_secret_a_few_at_a_time() {
        let (kv, store, _dir) = fake_kv(Duration::from_millis(30)).await;
        let slots: Vec<Arc<Slot>> = (0..24)
            .map(|i| store.slot(&latest(&format!("agents/a{i}/github"))))
            .collect();
        for slot in &slots {
            store.get(slot).await.unwrap();
        }
        assert_eq!(kv.reads.load(Ordering::SeqCst), 24);
        kv.most.store(0, Ordering::SeqCst);
        kv.version.store(2, Ordering::SeqCst);

        store.reread_latest_kv();
        wait_until("every secret read again", || {
            slots.iter().all(|s| version_held(&store, s) == Some(2))
        })
        .await;
        assert_eq!(kv.reads.load(Ordering::SeqCst), 48, "one read each");
        let most = kv.most.load(Ordering::SeqCst);
        assert!(
            most as usize <= REREADS_AT_ONCE,
            "{most} reads at once, more than {REREADS_AT_ONCE}"
        );
    }

    /// A secret whose read left before the rotation, still under way at the reload, is read
    /// again when that read ends: the reload's "at once" holds, not `kv_ttl` later.
    #[tokio::test]
    async fn a_reload_during_a_read_reads_again_when_it_ends() {
        let (kv, store, _dir) = fake_kv(Duration::ZERO).await;
        let slot = store.slot(&latest("warden/openai"));
        store.get(&slot).await.unwrap();
        assert_eq!(version_held(&store, &slot), Some(1));

        // A re-read (a first reload) leaves, and waits at Vault with version 1 decided...
        kv.gate.send_replace(false);
        store.reread_latest_kv();
        wait_until("the first re-read reached vault", || {
            kv.under_way.load(Ordering::SeqCst) == 1
        })
        .await;
        // ...the secret is rotated, and a second reload comes while that read is under way.
        kv.version.store(2, Ordering::SeqCst);
        store.reread_latest_kv();
        tokio::time::sleep(Duration::from_millis(50)).await;
        kv.gate.send_replace(true);

        wait_until(
            "the rotated version is read after the read under way",
            || version_held(&store, &slot) == Some(2),
        )
        .await;
        assert_eq!(kv.reads.load(Ordering::SeqCst), 3);
        assert!(!slot.stale.load(Ordering::SeqCst));
    }

    /// A request's read under way at a reload is followed by a re-read as well.
    #[tokio::test]
    async fn a_reload_during_a_requests_read_reads_again_when_it_ends() {
        let (kv, store, _dir) = fake_kv(Duration::ZERO).await;
        let slot = store.slot(&latest("warden/openai"));
        store.get(&slot).await.unwrap();
        // The held version expires: the next request reads, and waits at Vault.
        let expired = slot.current.load_full().unwrap();
        slot.current.store(Some(Arc::new(Held {
            data: expired.data.clone(),
            origin: Arc::clone(&expired.origin),
            lease: None,
            lease_duration: expired.lease_duration,
            last_renewal: false,
            expires: Instant::now(),
            refresh_at: Instant::now(),
            made: ArcSwapOption::empty(),
        })));
        kv.gate.send_replace(false);
        let request = {
            let store = Arc::clone(&store);
            let slot = Arc::clone(&slot);
            tokio::spawn(async move { store.get(&slot).await.map(|h| h.origin.version) })
        };
        wait_until("the request's read reached vault", || {
            kv.under_way.load(Ordering::SeqCst) == 1
        })
        .await;
        kv.version.store(2, Ordering::SeqCst);
        store.reread_latest_kv();
        kv.gate.send_replace(true);
        assert_eq!(request.await.unwrap().unwrap(), Some(1));
        wait_until(
            "the rotated version is read after the request's read",
            || version_held(&store, &slot) == Some(2),
        )
        .await;
    }
}
