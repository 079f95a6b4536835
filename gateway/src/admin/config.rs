//! `admin:` the admin API on the admin listener.

use serde::Deserialize;

/// `admin` section.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Serve the admin API (`/v1/admin/…`) on the admin listener: operators' calls,
    /// authenticated like agents and authorised by Cedar's `admin:*` actions. Default off.
    pub api: bool,
}

impl AdminConfig {
    /// Mistakes, as (key, message), given the admin listener's address and whether it has TLS.
    pub fn validate(&self, listen: std::net::SocketAddr, tls: bool) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        if self.api && !listen.ip().is_loopback() && !tls {
            errors.push((
                "admin.api".into(),
                format!(
                    "the admin API carries operators' tokens: it needs TLS on the admin listener \
                     (listen.admin_tls) when it listens on {listen}, beyond this host; or keep \
                     listen.admin on 127.0.0.1"
                ),
            ));
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_api_beyond_this_host_needs_tls() {
        let on = AdminConfig { api: true };
        let outside = "0.0.0.0:9090".parse().unwrap();
        let errors = on.validate(outside, false);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].0, "admin.api");
        assert!(errors[0].1.contains("listen.admin_tls"), "{}", errors[0].1);
        assert!(on.validate(outside, true).is_empty());
        assert!(
            on.validate("127.0.0.1:9090".parse().unwrap(), false)
                .is_empty()
        );
        assert!(AdminConfig::default().validate(outside, false).is_empty());
    }
}
