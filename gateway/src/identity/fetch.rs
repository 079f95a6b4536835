//! Fetches an issuer's JWKS over HTTPS: OIDC discovery (`jwks_uri`) unless configured, then
//! the key set itself, with bounded time and size.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use reqwest::Url;

use crate::config::url::secure_url;

use serde::Deserialize;

use super::config::IssuerConfig;
use super::error::IdentityError;
use super::jwks::KeySet;

/// Largest discovery or JWKS document read.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// Whole-request time limit for one discovery or JWKS fetch.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_REDIRECTS: usize = 3;

/// The part of an OpenID Provider configuration Warden reads.
#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

/// Fetches one issuer's key set.
pub(crate) struct JwksFetcher {
    client: reqwest::Client,
    issuer: Arc<str>,
    discovery_url: Url,
    configured_jwks_uri: Option<Url>,
    /// `jwks_uri` found by discovery, kept until a fetch from it fails.
    discovered_jwks_uri: Mutex<Option<Url>>,
}

impl JwksFetcher {
    /// Builds the fetcher for `cfg` (`key` names it in configuration errors).
    pub(crate) fn new(cfg: &IssuerConfig, key: &str) -> Result<JwksFetcher, IdentityError> {
        let config_err = |field: &str, problem: String| IdentityError::Config {
            key: format!("{key}.{field}"),
            problem,
        };
        let issuer_url = secure_url(&cfg.issuer).map_err(|p| config_err("issuer", p))?;
        let discovery_url = Url::parse(&format!(
            "{}/.well-known/openid-configuration",
            issuer_url.as_str().trim_end_matches('/')
        ))
        .map_err(|e| config_err("issuer", e.to_string()))?;
        let configured_jwks_uri = match &cfg.jwks_uri {
            Some(uri) => Some(secure_url(uri).map_err(|p| config_err("jwks_uri", p))?),
            None => None,
        };
        let mut builder = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("warden/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                if attempt.previous().len() >= MAX_REDIRECTS {
                    attempt.error("too many redirects")
                } else if let Err(problem) = secure_url(attempt.url().as_str()) {
                    attempt.error(format!("redirect refused: {problem}"))
                } else if let Err(problem) = judge_hop(attempt.previous(), attempt.url()) {
                    attempt.error(format!("redirect refused: {problem}"))
                } else {
                    attempt.follow()
                }
            }));
        if let Some(ca_file) = &cfg.ca_file {
            for cert in read_ca_bundle(ca_file).map_err(|p| config_err("ca_file", p))? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder
            .build()
            .map_err(|e| config_err("issuer", format!("cannot build HTTP client: {e}")))?;
        Ok(JwksFetcher {
            client,
            issuer: Arc::from(cfg.issuer.as_str()),
            discovery_url,
            configured_jwks_uri,
            discovered_jwks_uri: Mutex::new(None),
        })
    }

    /// Fetches the key set, discovering `jwks_uri` first when needed. The error says which
    /// URL failed and how.
    pub(crate) async fn fetch(&self) -> Result<KeySet, String> {
        let (jwks_uri, discovered) = match &self.configured_jwks_uri {
            Some(uri) => (uri.clone(), false),
            None => (self.jwks_uri_by_discovery().await?, true),
        };
        let result = match self.get(&jwks_uri).await {
            Ok(body) => KeySet::parse(&body).map_err(|e| format!("{jwks_uri}: {e}")),
            Err(e) => Err(e),
        };
        if result.is_err() && discovered {
            *self
                .discovered_jwks_uri
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = None;
        }
        result
    }

    async fn jwks_uri_by_discovery(&self) -> Result<Url, String> {
        let known = self
            .discovered_jwks_uri
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(uri) = known {
            return Ok(uri);
        }
        let url = &self.discovery_url;
        let body = self.get(url).await?;
        let doc: Discovery = serde_json::from_slice(&body).map_err(|e| {
            format!("{url}: not an OpenID Provider configuration with `jwks_uri`: {e}")
        })?;
        if doc.issuer != *self.issuer {
            return Err(format!(
                "{url} names issuer {:?}, not {:?} as configured; set `issuer` to exactly the \
                 provider's issuer",
                doc.issuer, self.issuer
            ));
        }
        let uri = secure_url(&doc.jwks_uri).map_err(|p| format!("{url}: jwks_uri {p}"))?;
        *self
            .discovered_jwks_uri
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(uri.clone());
        Ok(uri)
    }

    async fn get(&self, url: &Url) -> Result<Vec<u8>, String> {
        let mut response = self
            .client
            .get(url.clone())
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| format!("GET {url}: {}", error_chain(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("GET {url} answered {status}"));
        }
        let too_big = || format!("GET {url}: document larger than {MAX_DOCUMENT_BYTES} bytes");
        if response
            .content_length()
            .is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64)
        {
            return Err(too_big());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("GET {url}: {}", error_chain(&e)))?
        {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(too_big());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// The certificates in an issuer's `ca_file` (PEM), or what is wrong with the file.
pub(crate) fn read_ca_bundle(path: &Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("{} is not a PEM bundle: {e}", path.display()))
}

/// A redirect hop to `next` after `previous` (the first the configured URL), judged by the
/// egress address guard: a hop to an address that is not globally reachable is refused,
/// unless the configured URL names that address itself. (A hop to a name goes to the host the
/// IdP names, resolved by the system, as the configured URL is.)
fn judge_hop(previous: &[Url], next: &Url) -> Result<(), String> {
    let Some(host) = next.host_str() else {
        return Ok(());
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let Ok(ip) = bare.parse::<std::net::IpAddr>() else {
        return Ok(());
    };
    if previous
        .first()
        .is_some_and(|first| first.host_str() == next.host_str())
    {
        return Ok(());
    }
    match crate::egress::ip_guard::classify(ip) {
        class if class.is_global() => Ok(()),
        class => Err(format!("{next} is at {ip}, a {class} address")),
    }
}

/// `error: cause: root cause`, without repeating the URL reqwest puts in its message.
fn error_chain(err: &reqwest::Error) -> String {
    let mut text = if err.is_timeout() {
        "timed out".to_string()
    } else {
        let mut causes = Vec::new();
        let mut source = std::error::Error::source(err);
        while let Some(cause) = source {
            causes.push(cause.to_string());
            source = cause.source();
        }
        causes.dedup();
        causes.join(": ")
    };
    if text.is_empty() {
        text = err.to_string();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redirect_to_an_internal_address_is_refused_unless_configured() {
        let first = Url::parse("https://idp.example.com/.well-known/openid-configuration").unwrap();
        let metadata = Url::parse("https://169.254.169.254/latest/meta-data/").unwrap();
        let err = judge_hop(std::slice::from_ref(&first), &metadata).unwrap_err();
        assert!(err.contains("a link_local address"), "{err}");
        let public = Url::parse("https://8.8.8.8/keys").unwrap();
        assert!(judge_hop(std::slice::from_ref(&first), &public).is_ok());
        let named = Url::parse("https://keys.example.com/jwks").unwrap();
        assert!(judge_hop(std::slice::from_ref(&first), &named).is_ok());
        let internal = Url::parse("https://10.0.0.5/realms/agents").unwrap();
        let same = Url::parse("https://10.0.0.5/realms/agents/keys").unwrap();
        assert!(judge_hop(std::slice::from_ref(&internal), &same).is_ok());
    }
}
