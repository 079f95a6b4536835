//! `state:` configuration: where Warden keeps its durable state.

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// `state:` section. Today one backend, SQLite in a file; PostgreSQL (`state.postgres`) comes
/// with approvals, for several replicas sharing one state.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StateConfig {
    /// The SQLite database file. Default: `<data_dir>/state.db`.
    pub sqlite: Option<PathBuf>,
}

impl StateConfig {
    /// The SQLite file this configuration names, under `data_dir` unless set.
    pub fn sqlite_path(&self, data_dir: &Path) -> PathBuf {
        self.sqlite
            .clone()
            .unwrap_or_else(|| data_dir.join("state.db"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_is_read_from_the_configuration_file() {
        let config =
            crate::config::load::parse("state:\n  sqlite: /srv/warden/state.db\n", None).unwrap();
        assert_eq!(
            config.state.sqlite.as_deref(),
            Some(Path::new("/srv/warden/state.db"))
        );
        let errors = crate::config::load::parse("state:\n  postgres: x\n", None)
            .unwrap_err()
            .0;
        assert_eq!(errors[0].line, Some(2), "{errors:?}");
    }

    #[test]
    fn the_store_defaults_to_state_db_under_data_dir() {
        let config = StateConfig::default();
        assert_eq!(
            config.sqlite_path(Path::new("/var/lib/warden")),
            Path::new("/var/lib/warden/state.db")
        );
        let config = StateConfig {
            sqlite: Some("/srv/state.sqlite".into()),
        };
        assert_eq!(
            config.sqlite_path(Path::new("/var/lib/warden")),
            Path::new("/srv/state.sqlite")
        );
    }
}
