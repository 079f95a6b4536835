//! The store the configuration names, opened, with one repository per concern.

use std::path::Path;
use std::sync::Arc;

use super::config::StateConfig;
use super::error::StateError;
use super::pins::PinRepository;
use super::sqlite::SqliteStore;

/// Warden's durable state, opened: one repository per concern (tool pins today; approvals,
/// quarantine and SIEM spool cursors add theirs), all in the same backend. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    location: Arc<str>,
    pins: Arc<dyn PinRepository>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the store `config` names (SQLite under `data_dir` by default), migrating it.
    pub async fn open(config: &StateConfig, data_dir: &Path) -> Result<Store, StateError> {
        let sqlite = SqliteStore::open(&config.sqlite_path(data_dir)).await?;
        Ok(Store {
            location: Arc::from(sqlite.path().display().to_string()),
            pins: Arc::new(sqlite),
        })
    }

    /// Where the state is (the SQLite file), for messages.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Tool-definition pins.
    pub fn pins(&self) -> Arc<dyn PinRepository> {
        Arc::clone(&self.pins)
    }
}
