//! TLS interception for configured hosts (`egress.intercept`, off by default): the agent's
//! TLS is terminated with a leaf certificate for the tunnel's host, minted and signed by the
//! interception CA ([`ca`], cached in [`leaves`]), so the requests inside can be judged and
//! inspected; they go on over TLS of Warden's own to the real destination, whose certificate
//! is verified ([`upstream`]). Which hosts is [`config`]; the walk of each request is the
//! proxy's (`proxy/egress/intercepted.rs`).

pub mod ca;
pub mod config;
pub mod error;
pub mod leaves;
pub mod upstream;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;

pub use ca::Ca;
pub use config::{HostPattern, InterceptConfig};
pub use error::InterceptError;
pub use upstream::TunnelUpstream;

use super::{Destination, Host};
use leaves::Leaves;

/// What interception needs, shared by every egress worker.
pub struct Interceptor {
    hosts: Vec<HostPattern>,
    leaves: Leaves,
    upstream_tls: rustls::ClientConfig,
}

impl std::fmt::Debug for Interceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interceptor")
            .field("hosts", &self.hosts)
            .finish_non_exhaustive()
    }
}

impl Interceptor {
    /// The interceptor `config` asks for, its CA loaded or created under `data_dir`; `None`
    /// when no host is intercepted.
    pub fn new(
        config: &InterceptConfig,
        data_dir: &Path,
    ) -> Result<Option<Arc<Interceptor>>, InterceptError> {
        if !config.enabled() {
            return Ok(None);
        }
        let hosts = config
            .hosts
            .iter()
            .filter_map(|h| HostPattern::parse(h).ok())
            .collect();
        let ca = Ca::load_or_create(config, data_dir)?;
        let roots =
            crate::upstream::roots(config.upstream_ca_file.as_deref(), config.upstream_ca_only)?;
        let upstream_tls =
            rustls::ClientConfig::builder_with_provider(crate::listener::crypto_provider())
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_no_client_auth();
        Ok(Some(Arc::new(Interceptor {
            hosts,
            leaves: Leaves::new(ca, config.leaf_validity, config.leaf_cache_size),
            upstream_tls,
        })))
    }

    /// Whether tunnels to `host` are intercepted: a name `egress.intercept.hosts` matches
    /// (addresses never are).
    pub fn intercepts(&self, host: &Host) -> bool {
        match host {
            Host::Name(name) => self.hosts.iter().any(|p| p.matches(name)),
            Host::Address(_) => false,
        }
    }

    /// The TLS server configuration agents see for `name`.
    pub async fn server_config(&self, name: &str) -> Result<Arc<ServerConfig>, InterceptError> {
        self.leaves.for_host(name).await
    }

    /// The CA certificate (PEM) agents must trust.
    pub fn ca_pem(&self) -> &str {
        self.leaves.ca().cert_pem()
    }

    /// A client for one tunnel's requests to `dest`.
    pub fn upstream(
        &self,
        dest: Destination,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> TunnelUpstream {
        TunnelUpstream::new(
            self.upstream_tls.clone(),
            dest,
            connect_timeout,
            response_timeout,
        )
    }
}
