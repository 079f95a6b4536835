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
    /// A path that answers with a leased secret.
    Lease { path: String },
}

impl SecretKey {
    /// The path as users write it (`secret/agents/ci/github`).
    pub fn path(&self) -> String {
        match self {
            SecretKey::Kv { mount, path, .. } => format!("{mount}/{path}"),
            SecretKey::Lease { path } => path.clone(),
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
    /// After this, the secret is not used.
    expires: Instant,
    /// From this on, the background task renews or re-reads it.
    refresh_at: Instant,
}

/// One secret's place in the store.
pub struct Slot {
    key: SecretKey,
    current: ArcSwapOption<Held>,
    /// Held while reading from Vault: concurrent misses make one call.
    fetching: tokio::sync::Mutex<()>,
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
/// Longest wait between two tries while Vault fails.
const BACKOFF_MAX: Duration = Duration::from_secs(5);

impl SecretStore {
    /// A store on Vault as `config` says; inside a tokio runtime, its background task runs
    /// for as long as the store lives. Vault need not be up.
    pub fn new(config: VaultConfig) -> Result<Arc<SecretStore>, VaultError> {
        let vault = Vault::start(config.clone())?;
        let store = Arc::new(SecretStore {
            vault,
            config,
            slots: DashMap::new(),
            epoch: Instant::now(),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(tend(Arc::downgrade(&store)));
        }
        Ok(store)
    }

    /// A store that never reaches Vault (no login, no background task): for resolving
    /// routes offline (`warden check`).
    pub fn offline(config: VaultConfig) -> Result<Arc<SecretStore>, VaultError> {
        Ok(Arc::new(SecretStore {
            vault: Vault::offline(config.clone())?,
            config,
            slots: DashMap::new(),
            epoch: Instant::now(),
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
        if Instant::now() >= held.expires {
            return None;
        }
        slot.last_used.store(self.now_ms(), Ordering::Relaxed);
        Some(held)
    }

    /// The secret: from memory when valid, else read from Vault (one call for all who wait).
    pub async fn get(&self, slot: &Slot) -> Result<Arc<Held>, SecretError> {
        if let Some(held) = self.cached(slot) {
            return Ok(held);
        }
        let _fetching = slot.fetching.lock().await;
        if let Some(held) = self.cached(slot) {
            return Ok(held);
        }
        if self.now_ms() < slot.next_try.load(Ordering::Relaxed)
            && let Some(e) = lock(&slot.last_error).clone()
        {
            return Err(e);
        }
        slot.last_used.store(self.now_ms(), Ordering::Relaxed);
        match self.read(&slot.key).await {
            Ok(held) => {
                let held = Arc::new(held);
                self.replace(slot, Some(Arc::clone(&held)));
                self.succeeded(slot);
                Ok(held)
            }
            Err(e) => {
                let e = self.failed(slot, e);
                Err(e)
            }
        }
    }

    /// Reads `key` from Vault.
    async fn read(&self, key: &SecretKey) -> Result<Held, VaultError> {
        let result = match key {
            SecretKey::Kv {
                mount,
                path,
                version,
            } => self.vault.kv(mount, path, *version).await.map(|kv| {
                let now = Instant::now();
                let ttl = self.config.kv_ttl;
                Held {
                    data: kv.data,
                    origin: Arc::new(SecretOrigin {
                        path: key.path(),
                        version: Some(kv.version),
                        lease_id: None,
                    }),
                    lease: None,
                    lease_duration: ttl,
                    expires: now + ttl,
                    refresh_at: now + ttl.saturating_sub(margin(self.config.renew_margin, ttl)),
                }
            }),
            SecretKey::Lease { path } => self.vault.read_leased(path).await.map(|leased| {
                let now = Instant::now();
                // A secret without a lease (a plain read of a non-dynamic path, whose
                // `lease_duration` is only a refresh hint: 32 days on KV v1) is kept as KV is,
                // for `kv_ttl`.
                let duration = if leased.lease_duration.is_zero() || leased.lease_id.is_empty() {
                    self.config.kv_ttl
                } else {
                    leased.lease_duration
                };
                let lease_id = (!leased.lease_id.is_empty()).then_some(leased.lease_id);
                Held {
                    data: leased.data,
                    origin: Arc::new(SecretOrigin {
                        path: path.clone(),
                        version: None,
                        lease_id: lease_id.clone(),
                    }),
                    lease: lease_id.map(|id| (id, leased.renewable)),
                    lease_duration: duration,
                    expires: now + duration,
                    refresh_at: now
                        + duration.saturating_sub(margin(self.config.renew_margin, duration)),
                }
            }),
        };
        VAULT
            .reads
            .with_label_values(&[key.kind(), if result.is_ok() { "ok" } else { "error" }])
            .inc();
        result
    }

    /// Puts `new` in the slot; revokes the lease of what it replaces, in the background.
    fn replace(&self, slot: &Slot, new: Option<Arc<Held>>) {
        let old = slot.current.swap(new);
        self.count_held();
        if let Some(old) = old
            && let Some((lease_id, _)) = &old.lease
        {
            self.revoke_later(lease_id.clone());
        }
    }

    fn count_held(&self) {
        let held = self
            .slots
            .iter()
            .filter(|s| s.current.load().is_some())
            .count();
        VAULT.held.set(i64::try_from(held).unwrap_or(i64::MAX));
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

    /// One pass of the background task: renews or re-reads what is due and in use; drops
    /// (and revokes) what no request used for `idle`.
    async fn tend_once(&self) {
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
                self.replace(&slot, None);
                continue;
            }
            let now = Instant::now();
            if now >= held.expires {
                // Expired while Vault was down: requests read it again when it is back.
                self.replace(&slot, None);
                continue;
            }
            if now < held.refresh_at || now_ms < slot.next_try.load(Ordering::Relaxed) {
                continue;
            }
            let _fetching = slot.fetching.lock().await;
            self.refresh(&slot, &held).await;
        }
    }

    /// Renews `held`'s lease, or reads the secret again when it has no renewable lease or
    /// renewal gave too little.
    async fn refresh(&self, slot: &Slot, held: &Arc<Held>) {
        if let Some((lease_id, true)) = &held.lease {
            match self.vault.renew_lease(lease_id, held.lease_duration).await {
                Ok(granted) if granted > TICK * 3 => {
                    VAULT.renewals.with_label_values(&["ok"]).inc();
                    let now = Instant::now();
                    let renewed = Held {
                        data: held.data.clone(),
                        origin: Arc::clone(&held.origin),
                        lease: held.lease.clone(),
                        lease_duration: held.lease_duration,
                        expires: now + granted,
                        refresh_at: now
                            + granted.saturating_sub(margin(self.config.renew_margin, granted)),
                    };
                    slot.current.store(Some(Arc::new(renewed)));
                    self.succeeded(slot);
                    tracing::debug!(path = %slot.key.path(), granted = ?granted, "lease renewed");
                    return;
                }
                Ok(_) => {
                    // At its maximum TTL: a new lease replaces it below.
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
        match self.read(&slot.key).await {
            Ok(new) => {
                self.replace(slot, Some(Arc::new(new)));
                self.succeeded(slot);
            }
            Err(e) => {
                let answer = self.failed(slot, e);
                tracing::warn!(error = %answer, "cannot refresh a secret from vault; the cached one serves until it expires");
            }
        }
    }

    /// Drops every secret held; returns their leases.
    fn forget_all(&self) -> Vec<String> {
        let leases = self
            .slots
            .iter()
            .filter_map(|s| {
                s.current
                    .swap(None)
                    .and_then(|h| h.lease.as_ref().map(|(id, _)| id.clone()))
            })
            .collect();
        self.count_held();
        leases
    }

    /// Revokes every lease held and forgets every secret (shutdown), within `within`.
    pub async fn shutdown(&self, within: Duration) {
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

/// The background task of a store, for as long as it lives.
async fn tend(store: Weak<SecretStore>) {
    loop {
        tokio::time::sleep(TICK).await;
        let Some(store) = store.upgrade() else {
            return;
        };
        store.tend_once().await;
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
                path: "database/creds/ro".into()
            }
            .path(),
            "database/creds/ro"
        );
    }
}
