//! `state:` configuration: where Warden keeps its durable state.

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::secrets::config::CredentialSource;

/// `state:` section: SQLite in a file (the default), or PostgreSQL (`state.postgres`) for
/// several replicas sharing one state.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StateConfig {
    /// The SQLite database file. Default: `<data_dir>/state.db`.
    pub sqlite: Option<PathBuf>,
    /// A PostgreSQL database instead of the SQLite file.
    pub postgres: Option<PostgresConfig>,
}

/// `state.postgres`: the database several replicas share.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// The connection URL (`postgres://warden:PASSWORD@db.internal:5432/warden?sslmode=require`)
    /// from a secret source, since it holds the password. Never logged.
    pub url: CredentialSource,
    /// Connections kept open at most.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// How long connecting (TCP, TLS, login) or waiting for a free connection may take.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// How long one operation may take once it has a connection; past it, its statement is
    /// cancelled and the operation fails (which security decisions treat as a refusal).
    #[serde(default = "default_query_timeout", with = "humantime_serde")]
    pub query_timeout: Duration,
    /// How the server's TLS certificate is checked when the URL's `sslmode` asks for TLS.
    #[serde(default)]
    pub tls: PostgresTls,
}

/// `state.postgres.tls`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresTls {
    /// PEM certificates of the CA that issued the server's certificate, trusted besides the
    /// system's roots.
    pub ca_file: Option<PathBuf>,
}

fn default_pool_size() -> usize {
    8
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_query_timeout() -> Duration {
    Duration::from_secs(5)
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
    fn the_postgres_backend_is_read_with_its_defaults() {
        let config = crate::config::load::parse(
            "state:\n  postgres:\n    url: { env: WARDEN_STATE_URL }\n",
            None,
        )
        .unwrap();
        let postgres = config.state.postgres.unwrap();
        assert_eq!(
            postgres.url,
            CredentialSource::Env("WARDEN_STATE_URL".into())
        );
        assert_eq!(postgres.pool_size, 8);
        assert_eq!(postgres.connect_timeout, Duration::from_secs(5));
        assert_eq!(postgres.query_timeout, Duration::from_secs(5));
        assert_eq!(postgres.tls, PostgresTls::default());
        let config = crate::config::load::parse(
            "state:\n  postgres:\n    url: { file: /run/secrets/pg }\n    pool_size: 2\n    \
             connect_timeout: 1s\n    query_timeout: 2s\n    tls: { ca_file: /etc/pg-ca.pem }\n",
            None,
        )
        .unwrap();
        let postgres = config.state.postgres.unwrap();
        assert_eq!(postgres.pool_size, 2);
        assert_eq!(postgres.query_timeout, Duration::from_secs(2));
        assert_eq!(
            postgres.tls.ca_file.as_deref(),
            Some(Path::new("/etc/pg-ca.pem"))
        );
    }

    #[test]
    fn a_url_written_in_place_of_its_source_is_refused_without_quoting_it() {
        let errors = crate::config::load::parse(
            "state:\n  postgres:\n    url: \"postgres://warden:s3cr3t-pw@db/x\"\n",
            None,
        )
        .unwrap_err()
        .0;
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        let text = text.join("\n");
        assert!(text.contains("state.postgres.url"), "{text}");
        assert!(text.contains("secret source"), "{text}");
        assert!(!text.contains("s3cr3t-pw"), "{text}");
        assert!(!text.contains("warden:"), "{text}");
    }

    #[test]
    fn one_backend_at_a_time_and_a_vault_url_needs_the_vault_section() {
        let errors = crate::config::load::parse(
            "state:\n  sqlite: /srv/state.db\n  postgres:\n    url: { vault: { kv: secret/pg } }\n    \
             pool_size: 0\n",
            None,
        )
        .unwrap_err()
        .0;
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        let text = text.join("\n");
        assert!(
            text.contains("state.postgres: the state is either"),
            "{text}"
        );
        assert!(text.contains("state.postgres.url.vault"), "{text}");
        assert!(
            text.contains("state.postgres.pool_size: must be at least 1"),
            "{text}"
        );
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
            postgres: None,
        };
        assert_eq!(
            config.sqlite_path(Path::new("/var/lib/warden")),
            Path::new("/srv/state.sqlite")
        );
    }
}
