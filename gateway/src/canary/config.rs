//! `canaries:` how replicas learn of canary tokens, the host URL canaries point at, and where
//! a hit is announced.

use std::time::Duration;

use serde::Deserialize;

/// `canaries:` section.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CanaryConfig {
    /// How often a replica reads the canaries from the state store (new ones are looked for,
    /// revoked ones no longer, within this interval).
    #[serde(with = "humantime_serde")]
    pub refresh_interval: Duration,
    /// The host name URL canaries are minted on (`warden canary issue --kind url`); each
    /// canary gets a name of its own below it.
    pub url_host: Option<String>,
    /// A webhook told of every hit (absent: hits are recorded and counted only).
    pub alert: Option<AlertConfig>,
}

/// `canaries.alert:` the webhook a hit is posted to.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AlertConfig {
    /// Where the JSON alert is posted (`https://…`, or `http://` to a loopback address).
    pub url: String,
    /// Tries per alert before it is given up (logged and counted).
    pub attempts: u32,
    /// Longest wait for one try.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for CanaryConfig {
    fn default() -> Self {
        CanaryConfig {
            refresh_interval: Duration::from_secs(2),
            url_host: None,
            alert: None,
        }
    }
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig {
            url: String::new(),
            attempts: 5,
            timeout: Duration::from_secs(5),
        }
    }
}

impl CanaryConfig {
    /// `(key, message)` for every mistake.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        if self.refresh_interval < Duration::from_millis(100)
            || self.refresh_interval > Duration::from_secs(300)
        {
            errors.push((
                "canaries.refresh_interval".to_owned(),
                "must be between 100ms and 5m: new canaries reach every replica within it"
                    .to_owned(),
            ));
        }
        if let Some(host) = &self.url_host
            && !host_name(host)
        {
            errors.push((
                "canaries.url_host".to_owned(),
                format!("{host:?} is not a DNS host name (e.g. assets.acme-corp.com)"),
            ));
        }
        if let Some(alert) = &self.alert {
            if let Err(problem) = crate::config::url::secure_url(&alert.url) {
                errors.push(("canaries.alert.url".to_owned(), problem));
            }
            if !(1..=20).contains(&alert.attempts) {
                errors.push((
                    "canaries.alert.attempts".to_owned(),
                    "must be between 1 and 20".to_owned(),
                ));
            }
            if alert.timeout.is_zero() {
                errors.push((
                    "canaries.alert.timeout".to_owned(),
                    "must be more than 0s".to_owned(),
                ));
            }
        }
        errors
    }
}

/// A DNS host name: dot-separated labels of letters, digits and inner hyphens.
pub(super) fn host_name(host: &str) -> bool {
    host.len() <= 200
        && host.contains('.')
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert_errors(url: &str) -> Vec<(String, String)> {
        CanaryConfig {
            alert: Some(AlertConfig {
                url: url.to_owned(),
                ..AlertConfig::default()
            }),
            ..CanaryConfig::default()
        }
        .validate()
    }

    #[test]
    fn the_alert_url_is_https_or_loopback_http() {
        assert!(alert_errors("https://hooks.example.com/canary").is_empty());
        assert!(alert_errors("http://127.0.0.1:9000/canary").is_empty());
        // `localhost` in any case is loopback, as for every other URL Warden posts to.
        assert!(alert_errors("http://LOCALHOST:9000/canary").is_empty());
        let errors = alert_errors("http://hooks.example.com/canary");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].0, "canaries.alert.url");
        assert!(errors[0].1.contains("must use https"), "{errors:?}");
        assert!(
            alert_errors("hooks.example.com")[0]
                .1
                .contains("is not a URL")
        );
    }
}
