//! Whether connections to the state store may go in plain text. Whoever can change what
//! Warden reads and writes there can approve held requests and lift quarantines, so a database
//! off this machine is reached over TLS unless the URL says otherwise: a URL without `sslmode`
//! gets `require` (libpq's default `prefer` gives way to a network attacker who answers "no
//! TLS"), and an explicit `sslmode=prefer` or `disable` to such a host is warned of at start and
//! by `warden check`. The loopback interface and Unix sockets keep libpq's default.

use std::net::IpAddr;

use tokio_postgres::Config;
use tokio_postgres::config::{Host, SslMode};

/// An explicit `sslmode` that lets connections to a database off this machine go in plain text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "state.postgres.url: sslmode={mode} lets the connections to {database} go in plain text{how}; \
     whoever can change what Warden reads and writes there can approve held requests: use \
     sslmode=require (the server's certificate and host name are then verified, \
     state.postgres.tls.ca_file names a private CA), or reach the database over the loopback \
     interface or a Unix socket"
)]
pub struct PlainText {
    /// `prefer` or `disable`.
    pub mode: &'static str,
    /// `user@host:port/database`.
    pub database: String,
    how: &'static str,
}

/// Settles `config`'s TLS mode from the URL it was parsed from: `require` when the URL names no
/// `sslmode` and a host off this machine; what the URL says otherwise, with a [`PlainText`]
/// warning when that allows plain text to such a host.
pub fn settle(url: &str, config: &mut Config, database: &str) -> Option<PlainText> {
    if !off_this_machine(config) {
        return None;
    }
    if !names_sslmode(url) {
        config.ssl_mode(SslMode::Require);
        return None;
    }
    let (mode, how) = match config.get_ssl_mode() {
        SslMode::Disable => ("disable", ""),
        SslMode::Prefer => (
            "prefer",
            " whenever someone on the network answers that the server has no TLS",
        ),
        _ => return None,
    };
    Some(PlainText {
        mode,
        database: database.to_owned(),
        how,
    })
}

/// Whether the connection URL (or `key=value` string) sets `sslmode` itself.
fn names_sslmode(url: &str) -> bool {
    let url = url.trim();
    let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
    if is_url {
        url.split_once('?').is_some_and(|(_, query)| {
            query
                .split('&')
                .any(|pair| pair.split('=').next() == Some("sslmode"))
        })
    } else {
        url.split_whitespace()
            .any(|pair| pair.split('=').next().map(str::trim) == Some("sslmode"))
    }
}

/// Whether any host `config` may connect to is reached over a network: a TCP host that is not
/// `localhost` or a loopback address (a `hostaddr` counts as what is dialled).
fn off_this_machine(config: &Config) -> bool {
    let named_remote = config.get_hosts().iter().any(|host| match host {
        Host::Tcp(name) => !is_loopback_name(name),
        #[cfg(unix)]
        Host::Unix(_) => false,
    });
    let dialled = config.get_hostaddrs();
    if dialled.is_empty() {
        named_remote
    } else {
        dialled.iter().any(|addr| !addr.is_loopback())
    }
}

fn is_loopback_name(name: &str) -> bool {
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost")
        || name.to_ascii_lowercase().ends_with(".localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settled(url: &str) -> (SslMode, Option<PlainText>) {
        let mut config: Config = url.parse().unwrap();
        let warning = settle(url, &mut config, "warden@db");
        (config.get_ssl_mode(), warning)
    }

    #[test]
    fn a_remote_database_without_sslmode_is_reached_over_tls() {
        for url in [
            "postgres://warden:pw@db.internal:5432/warden",
            "postgresql://warden:pw@10.0.0.7/warden?connect_timeout=3",
            "host=db.internal user=warden password=pw dbname=warden",
            "postgres://warden:pw@localhost,db.internal/warden",
        ] {
            assert_eq!(settled(url), (SslMode::Require, None), "{url}");
        }
    }

    #[test]
    fn plain_text_to_a_remote_database_is_warned_of_naming_the_key() {
        let (mode, warning) = settled("postgres://warden:pw@db.internal/warden?sslmode=prefer");
        assert_eq!(mode, SslMode::Prefer);
        let text = warning.unwrap().to_string();
        assert!(
            text.starts_with("state.postgres.url: sslmode=prefer"),
            "{text}"
        );
        assert!(text.contains("warden@db"), "{text}");
        assert!(text.contains("use sslmode=require"), "{text}");
        assert!(!text.contains("pw"), "{text}");
        let (mode, warning) = settled("host=10.1.2.3 user=warden sslmode=disable");
        assert_eq!(mode, SslMode::Disable);
        assert_eq!(warning.unwrap().mode, "disable");
        // A loopback name resolved to a remote address is what is dialled.
        let (_, warning) =
            settled("postgres://warden:pw@localhost/warden?hostaddr=10.1.2.3&sslmode=disable");
        assert!(warning.is_some());
    }

    #[test]
    fn this_machine_keeps_the_url_s_mode_without_a_warning() {
        for (url, mode) in [
            (
                "postgres://warden:pw@127.0.0.1:5432/warden",
                SslMode::Prefer,
            ),
            (
                "postgres://warden:pw@[::1]/warden?sslmode=disable",
                SslMode::Disable,
            ),
            ("postgres://warden:pw@localhost/warden", SslMode::Prefer),
            (
                "postgres://warden@localhost/warden?host=/run/postgresql&sslmode=disable",
                SslMode::Disable,
            ),
            (
                "postgres://warden:pw@db.internal/w?sslmode=require",
                SslMode::Require,
            ),
        ] {
            assert_eq!(settled(url), (mode, None), "{url}");
        }
    }
}
