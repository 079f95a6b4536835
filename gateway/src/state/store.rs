//! The store the configuration names, opened, with one repository per concern.

use std::path::Path;
use std::sync::Arc;

use super::approvals::ApprovalRepository;
use super::bundle_floors::BundleFloorRepository;
use super::canaries::CanaryRepository;
use super::config::StateConfig;
use super::error::StateError;
use super::factors::FactorRepository;
use super::fleet::FleetRepository;
use super::health::StoreHealth;
use super::migrated::Migrated;
use super::pins::PinRepository;
use super::postgres::{PostgresOptions, PostgresStore};
use super::quarantine::QuarantineRepository;
use super::revocations::RevocationRepository;
use super::sessions::SessionRepository;
use super::sqlite::SqliteStore;
use crate::vault::SecretStore;

/// Warden's durable state, opened: one repository per concern (tool pins, approvals,
/// approvers' second factors, console sessions, canary tokens, quarantines, token revocations, fleet counters, policy bundles' rollback floors), all in the same backend. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    location: Arc<str>,
    migrated: Migrated,
    health: StoreHealth,
    pins: Arc<dyn PinRepository>,
    approvals: Arc<dyn ApprovalRepository>,
    factors: Arc<dyn FactorRepository>,
    sessions: Arc<dyn SessionRepository>,
    canaries: Arc<dyn CanaryRepository>,
    quarantine: Arc<dyn QuarantineRepository>,
    revocations: Arc<dyn RevocationRepository>,
    fleet: Arc<dyn FleetRepository>,
    bundle_floors: Arc<dyn BundleFloorRepository>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the store `config` names, migrating it: PostgreSQL with `state.postgres` (its URL
    /// read from its source, Vault through `secrets`), else SQLite under `data_dir`.
    pub async fn open(
        config: &StateConfig,
        data_dir: &Path,
        secrets: Option<&Arc<SecretStore>>,
    ) -> Result<Store, StateError> {
        match &config.postgres {
            Some(postgres) => {
                let url = crate::secrets::own::read(&postgres.url, secrets, "state.postgres.url")
                    .await
                    .map_err(|e| StateError::PostgresUrl {
                        reason: e.to_string(),
                    })?;
                let store = PostgresStore::connect(PostgresOptions {
                    url: zeroize::Zeroizing::new(url.trim().to_owned()),
                    pool_size: postgres.pool_size,
                    connect_timeout: postgres.connect_timeout,
                    query_timeout: postgres.query_timeout,
                    ca_file: postgres.tls.ca_file.clone(),
                })
                .await?;
                Ok(Store::postgres(store))
            }
            None => Ok(Store::sqlite(
                SqliteStore::open(&config.sqlite_path(data_dir)).await?,
            )),
        }
    }

    /// Opens the store `config` names for a command that manages a gateway: as
    /// [`Store::open`], but a SQLite store that does not exist yet is an error rather than
    /// created, since the gateway would never read what the command wrote there.
    pub async fn open_existing(
        config: &StateConfig,
        data_dir: &Path,
        secrets: Option<&Arc<SecretStore>>,
    ) -> Result<Store, StateError> {
        if config.postgres.is_none() {
            let path = config.sqlite_path(data_dir);
            if !path.exists() {
                return Err(StateError::Missing { path });
            }
        }
        Store::open(config, data_dir, secrets).await
    }

    /// The store on an opened SQLite file.
    pub fn sqlite(store: SqliteStore) -> Store {
        let store = Arc::new(store);
        Store {
            location: Arc::from(store.path().display().to_string()),
            migrated: store.migrated(),
            health: store.health(),
            pins: store.clone(),
            approvals: store.clone(),
            factors: store.clone(),
            sessions: store.clone(),
            canaries: store.clone(),
            quarantine: store.clone(),
            revocations: store.clone(),
            fleet: store.clone(),
            bundle_floors: store,
        }
    }

    /// The store on a connected PostgreSQL database.
    pub fn postgres(store: PostgresStore) -> Store {
        let store = Arc::new(store);
        Store {
            location: Arc::from(format!("postgres {}", store.database())),
            migrated: store.migrated(),
            health: store.health(),
            pins: store.clone(),
            approvals: store.clone(),
            factors: store.clone(),
            sessions: store.clone(),
            canaries: store.clone(),
            quarantine: store.clone(),
            revocations: store.clone(),
            fleet: store.clone(),
            bundle_floors: store,
        }
    }

    /// Where the state is (the SQLite file, or `postgres user@host:port/database`), for
    /// messages.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// What opening the store did to its schema (the steps applied, or none).
    pub fn migrated(&self) -> Migrated {
        self.migrated
    }

    /// Whether the store answers: its operations' outcomes, for `/metrics` and the log.
    pub fn health(&self) -> StoreHealth {
        self.health.clone()
    }

    /// Tool-definition pins.
    pub fn pins(&self) -> Arc<dyn PinRepository> {
        Arc::clone(&self.pins)
    }

    /// Approval requests and their votes.
    pub fn approvals(&self) -> Arc<dyn ApprovalRepository> {
        Arc::clone(&self.approvals)
    }

    /// Approvers' second factors: TOTP enrolments and passkeys.
    pub fn factors(&self) -> Arc<dyn FactorRepository> {
        Arc::clone(&self.factors)
    }

    /// Quarantined agents and groups.
    pub fn quarantine(&self) -> Arc<dyn QuarantineRepository> {
        Arc::clone(&self.quarantine)
    }

    /// Revoked Warden agent tokens.
    pub fn revocations(&self) -> Arc<dyn RevocationRepository> {
        Arc::clone(&self.revocations)
    }

    /// Fleet counters the replicas add up: budget spend, rate-limit counts, session labels.
    pub fn fleet(&self) -> Arc<dyn FleetRepository> {
        Arc::clone(&self.fleet)
    }

    /// The rollback floors of signed policy bundles.
    pub fn bundle_floors(&self) -> Arc<dyn BundleFloorRepository> {
        Arc::clone(&self.bundle_floors)
    }

    /// Approval-console sessions.
    pub fn sessions(&self) -> Arc<dyn SessionRepository> {
        Arc::clone(&self.sessions)
    }

    /// Canary tokens.
    pub fn canaries(&self) -> Arc<dyn CanaryRepository> {
        Arc::clone(&self.canaries)
    }
}
