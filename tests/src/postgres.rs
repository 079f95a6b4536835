//! The PostgreSQL cluster `tests/run` starts for the whole run (`WARDEN_TEST_PG_URL`, a
//! superuser, and `WARDEN_TEST_PSQL`), reached with `psql`. Tests run in parallel against it:
//! each names its roles and databases after itself.

use std::path::PathBuf;
use std::process::Command;

use reqwest::Url;

/// The run's cluster, as its superuser.
pub struct Postgres {
    url: Url,
    psql: PathBuf,
}

impl Postgres {
    /// The cluster `tests/run` started; a test that needs it fails here when run without it.
    pub fn from_env() -> Postgres {
        let url = match std::env::var("WARDEN_TEST_PG_URL") {
            Ok(url) if !url.is_empty() => url,
            _ => panic!(
                "WARDEN_TEST_PG_URL is not set: this test needs the PostgreSQL cluster that \
                 tests/run starts; run it through tests/run (e.g. \
                 E2E_SKIP_LINT=1 NEXTEST_ARGS='-E binary(/^vault/)' tests/run)"
            ),
        };
        let url =
            Url::parse(&url).unwrap_or_else(|e| panic!("WARDEN_TEST_PG_URL is not a URL ({e})"));
        let psql = std::env::var_os("WARDEN_TEST_PSQL").map_or_else(|| "psql".into(), Into::into);
        Postgres { url, psql }
    }

    /// `host:port` of the cluster.
    pub fn host_port(&self) -> String {
        format!(
            "{}:{}",
            self.url.host_str().unwrap_or("127.0.0.1"),
            self.url.port().unwrap_or(5432)
        )
    }

    /// A fresh database `name` (dropped first if it exists), and the superuser's URL to it.
    pub fn fresh_database(&self, name: &str) -> String {
        self.query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        self.query(&format!("CREATE DATABASE {name}"));
        let mut url = self.url.clone();
        url.set_path(&format!("/{name}"));
        url.to_string()
    }

    /// The superuser's name.
    pub fn superuser(&self) -> &str {
        self.url.username()
    }

    /// The superuser's password.
    pub fn password(&self) -> &str {
        self.url.password().unwrap_or_default()
    }

    /// Runs `sql` as the superuser; its output, one row a line, columns split by `|`.
    pub fn query(&self, sql: &str) -> String {
        self.psql(&self.url, sql)
            .unwrap_or_else(|e| panic!("psql as the superuser, {sql:?}: {e}"))
    }

    /// Runs `sql` as the superuser in database `name`; its output as [`Postgres::query`]'s.
    pub fn query_db(&self, name: &str, sql: &str) -> String {
        let mut url = self.url.clone();
        url.set_path(&format!("/{name}"));
        self.psql(&url, sql)
            .unwrap_or_else(|e| panic!("psql as the superuser in {name}, {sql:?}: {e}"))
    }

    /// Runs `sql` as `user` with `password` (the same database as the superuser's).
    pub fn query_as(&self, user: &str, password: &str, sql: &str) -> Result<String, String> {
        let mut url = self.url.clone();
        url.set_username(user)
            .and_then(|()| url.set_password(Some(password)))
            .map_err(|()| format!("cannot put user {user:?} in a URL"))?;
        self.psql(&url, sql)
    }

    /// Whether role `name` exists.
    pub fn role_exists(&self, name: &str) -> bool {
        let sql = format!(
            "select count(*) from pg_roles where rolname = {}",
            literal(name)
        );
        match self.query(&sql).as_str() {
            "0" => false,
            "1" => true,
            other => panic!("{sql}: {other}"),
        }
    }

    /// Seconds from now until role `name`'s password stops working (its `VALID UNTIL`).
    pub fn seconds_valid(&self, name: &str) -> i64 {
        let sql = format!(
            "select extract(epoch from rolvaliduntil - now())::bigint from pg_roles \
             where rolname = {}",
            literal(name)
        );
        let out = self.query(&sql);
        out.parse()
            .unwrap_or_else(|_| panic!("{sql}: {out:?} (no such role, or no VALID UNTIL)"))
    }

    /// `psql` on `url`, bounded: 10 s to connect, 10 s per statement, stopping at the first
    /// error; its trimmed output or its error output.
    fn psql(&self, url: &Url, sql: &str) -> Result<String, String> {
        let out = Command::new(&self.psql)
            .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(url.as_str())
            .args(["-c", sql])
            .env("PGCONNECT_TIMEOUT", "10")
            .env("PGOPTIONS", "-c statement_timeout=10000")
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.psql.display()))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }
}

/// `s` as an SQL string literal.
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
