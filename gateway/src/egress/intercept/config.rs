//! `egress.intercept:` which hosts' TLS Warden terminates with a certificate of its own CA
//! so the requests inside are judged and inspected, and how.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::egress::host::Host;

/// Longest validity a minted leaf certificate may have.
const LEAF_VALIDITY_MAX: Duration = Duration::from_secs(30 * 24 * 3600);

/// `egress.intercept:` section. Without `hosts` nothing is intercepted (the default).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct InterceptConfig {
    /// The hosts whose tunnels are intercepted: exact names (`api.example.com`) or
    /// `*.example.com` (any name under it, not the name itself). Empty: none.
    pub hosts: Vec<String>,
    /// The CA certificate (PEM) leaf certificates are signed with; absent: Warden's own,
    /// created on first use in `<data_dir>/keys/egress-ca.pem`.
    pub ca_cert: Option<PathBuf>,
    /// The CA's private key (PKCS#8 PEM); set with `ca_cert`, and only with it.
    pub ca_key: Option<PathBuf>,
    /// How long a minted leaf certificate is valid; a cached one is replaced at half of it.
    #[serde(with = "humantime_serde")]
    pub leaf_validity: Duration,
    /// How many hosts' leaf certificates are kept (least recently used dropped first).
    pub leaf_cache_size: usize,
    /// More CA certificates (PEM bundle) the intercepted destinations' certificates are
    /// verified against, besides the system's.
    pub upstream_ca_file: Option<PathBuf>,
    /// Verify the destinations' certificates against `upstream_ca_file` only.
    pub upstream_ca_only: bool,
}

impl Default for InterceptConfig {
    fn default() -> Self {
        InterceptConfig {
            hosts: Vec::new(),
            ca_cert: None,
            ca_key: None,
            leaf_validity: Duration::from_secs(24 * 3600),
            leaf_cache_size: 1000,
            upstream_ca_file: None,
            upstream_ca_only: false,
        }
    }
}

/// A host pattern of `egress.intercept.hosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// This name only.
    Exact(String),
    /// Any name ending in `.<suffix>` (`*.<suffix>`).
    Under(String),
}

impl HostPattern {
    /// The pattern `text` stands for, or why it is not one.
    pub fn parse(text: &str) -> Result<HostPattern, String> {
        let (under, name) = match text.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        // A name as the proxy reads hosts, already in the form it keeps them (lower-case
        // ASCII, punycode): what `matches` compares with.
        let valid = matches!(Host::parse(name), Ok(Host::Name(parsed)) if parsed == name);
        if !valid {
            return Err(format!(
                "{text:?} is not a host pattern: write a lower-case DNS name (api.example.com, \
                 punycode for international names) or *.example.com for the names under one, \
                 without scheme or port"
            ));
        }
        let name = name.to_owned();
        Ok(if under {
            HostPattern::Under(name)
        } else {
            HostPattern::Exact(name)
        })
    }

    /// Whether `name` (lower-case, as `egress::Host` keeps it) matches.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            HostPattern::Exact(exact) => name == exact,
            HostPattern::Under(suffix) => name
                .strip_suffix(suffix.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
        }
    }
}

impl InterceptConfig {
    /// Whether any host is intercepted.
    pub fn enabled(&self) -> bool {
        !self.hosts.is_empty()
    }

    /// `(key, message)` for every mistake.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        let mut error = |key: &str, message: String| {
            errors.push((format!("egress.intercept.{key}"), message));
        };
        for (i, host) in self.hosts.iter().enumerate() {
            if let Err(message) = HostPattern::parse(host) {
                error(&format!("hosts[{i}]"), message);
            }
        }
        match (&self.ca_cert, &self.ca_key) {
            (Some(_), None) => error(
                "ca_key",
                "ca_cert is set without ca_key: give both (the CA certificate and its private \
                 key), or neither for Warden's own CA"
                    .to_owned(),
            ),
            (None, Some(_)) => error(
                "ca_cert",
                "ca_key is set without ca_cert: give both, or neither for Warden's own CA"
                    .to_owned(),
            ),
            _ => {}
        }
        if self.leaf_validity < Duration::from_secs(3600) || self.leaf_validity > LEAF_VALIDITY_MAX
        {
            error(
                "leaf_validity",
                "must be between 1h and 30d (e.g. 24h): leaf certificates are minted on demand \
                 and kept short-lived"
                    .to_owned(),
            );
        }
        if self.leaf_cache_size == 0 {
            error(
                "leaf_cache_size",
                "must be at least 1 (e.g. 1000)".to_owned(),
            );
        }
        if self.upstream_ca_only && self.upstream_ca_file.is_none() {
            error(
                "upstream_ca_only",
                "is true without upstream_ca_file: no certificate could be trusted; set \
                 upstream_ca_file or turn upstream_ca_only off"
                    .to_owned(),
            );
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_the_name_or_the_names_under_it() {
        let exact = HostPattern::parse("api.example.com").unwrap();
        assert!(exact.matches("api.example.com"));
        assert!(!exact.matches("x.api.example.com"));
        assert!(!exact.matches("example.com"));
        let under = HostPattern::parse("*.example.com").unwrap();
        assert!(under.matches("api.example.com"));
        assert!(under.matches("a.b.example.com"));
        assert!(!under.matches("example.com"));
        assert!(!under.matches("badexample.com"));
        for bad in [
            "",
            "*.",
            "API.example.com",
            "example.com:443",
            "https://x",
            "a..b",
            "*",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn refuses_half_a_ca_and_out_of_range_settings() {
        assert!(InterceptConfig::default().validate().is_empty());
        let config = InterceptConfig {
            hosts: vec!["ok.example".into(), "Bad Host".into()],
            ca_cert: Some("ca.pem".into()),
            leaf_validity: Duration::from_secs(60),
            leaf_cache_size: 0,
            upstream_ca_only: true,
            ..Default::default()
        };
        let keys: Vec<String> = config.validate().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "egress.intercept.hosts[1]",
                "egress.intercept.ca_key",
                "egress.intercept.leaf_validity",
                "egress.intercept.leaf_cache_size",
                "egress.intercept.upstream_ca_only",
            ]
        );
    }
}
