//! Fetches an issuer's JWKS over HTTPS: OIDC discovery (`jwks_uri`) unless configured, then
//! the key set itself, with bounded time and size. Keys are fetched from an address that is
//! not globally reachable only on the issuer's own host (or the configured `jwks_uri`'s), or
//! where the issuer's `allow_private` allows it: a discovery document (or a redirect) cannot
//! point Warden at an internal service. A failure is logged with its URL; callers are told
//! what failed, never where ([`FetchError::shown`]).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use reqwest::Url;

use crate::bounded_body::{self, BoundedBodyError};
use crate::config::url::secure_url;
use crate::upstream::private_allowance::{AddressGuard, PrivateAllowance};

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

/// Which document a fetch was after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Document {
    Discovery,
    KeySet,
}

/// What went wrong with a document, as callers are told it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Problem {
    Unreachable,
    TimedOut,
    Status(reqwest::StatusCode),
    TooLarge,
    Unusable,
    OtherIssuer,
    /// Its address (or a redirect's) is one Warden does not fetch keys from.
    Refused,
    /// The discovery document names a `jwks_uri` Warden does not fetch keys from.
    JwksUriRefused,
}

/// Why fetching an issuer's keys failed. Its `Display` is the operator's (the URL and the
/// whole cause, for the log); [`shown`](Self::shown) is what callers are told.
#[derive(Debug)]
pub(crate) struct FetchError {
    document: Document,
    url: Url,
    problem: Problem,
    detail: String,
}

impl FetchError {
    fn new(document: Document, url: &Url, problem: Problem, detail: impl Into<String>) -> Self {
        FetchError {
            document,
            url: url.clone(),
            problem,
            detail: detail.into(),
        }
    }

    /// What failed, without the issuer's URLs (which may be internal) or what its IdP sent:
    /// `its JWKS answered 503 Service Unavailable`.
    pub(crate) fn shown(&self) -> String {
        let document = match self.document {
            Document::Discovery => "its discovery document",
            Document::KeySet => "its JWKS",
        };
        let what = match &self.problem {
            Problem::Unreachable => "could not be fetched".to_owned(),
            Problem::TimedOut => "did not arrive in time".to_owned(),
            Problem::Status(status) => format!("answered {status}"),
            Problem::TooLarge => format!("is larger than {MAX_DOCUMENT_BYTES} bytes"),
            Problem::Unusable => "is not usable".to_owned(),
            Problem::OtherIssuer => "names another issuer".to_owned(),
            Problem::Refused => "is at an address Warden does not fetch keys from".to_owned(),
            Problem::JwksUriRefused => {
                "names a JWKS at an address Warden does not fetch keys from".to_owned()
            }
        };
        format!("{document} {what}")
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GET {}: {}", self.url, self.detail)
    }
}

/// Fetches one issuer's key set.
pub(crate) struct JwksFetcher {
    client: reqwest::Client,
    issuer: Arc<str>,
    issuer_url: Url,
    discovery_url: Url,
    configured_jwks_uri: Option<Url>,
    /// What may be reached at addresses that are not globally reachable.
    guard: AddressGuard,
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
        // The hosts the operator wrote are trusted as written, at whatever address.
        let written = std::iter::once(&issuer_url)
            .chain(configured_jwks_uri.as_ref())
            .filter_map(host_allowance);
        let allowed: Vec<PrivateAllowance> =
            cfg.allow_private.iter().cloned().chain(written).collect();
        let guard = AddressGuard::new(&allowed).judging_localhost();
        let hop_guard = guard.clone();
        let mut builder = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("warden/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(GuardedDns(guard.clone())))
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= MAX_REDIRECTS {
                    attempt.error("too many redirects")
                } else if let Err(problem) = secure_url(attempt.url().as_str()) {
                    attempt.error(format!("redirect refused: {problem}"))
                } else if let Err(problem) = judge_hop(&hop_guard, attempt.url()) {
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
            issuer_url,
            discovery_url,
            configured_jwks_uri,
            guard,
            discovered_jwks_uri: Mutex::new(None),
        })
    }

    /// Fetches the key set, discovering `jwks_uri` first when needed.
    pub(crate) async fn fetch(&self) -> Result<KeySet, FetchError> {
        let (jwks_uri, discovered) = match &self.configured_jwks_uri {
            Some(uri) => (uri.clone(), false),
            None => (self.jwks_uri_by_discovery().await?, true),
        };
        let result = match self.get(Document::KeySet, &jwks_uri).await {
            Ok(body) => KeySet::parse(&body)
                .map_err(|e| FetchError::new(Document::KeySet, &jwks_uri, Problem::Unusable, e)),
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

    async fn jwks_uri_by_discovery(&self) -> Result<Url, FetchError> {
        let known = self
            .discovered_jwks_uri
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(uri) = known {
            return Ok(uri);
        }
        let url = &self.discovery_url;
        let failed =
            |problem, detail: String| FetchError::new(Document::Discovery, url, problem, detail);
        let body = self.get(Document::Discovery, url).await?;
        let doc: Discovery = serde_json::from_slice(&body).map_err(|e| {
            failed(
                Problem::Unusable,
                format!("not an OpenID Provider configuration with `jwks_uri`: {e}"),
            )
        })?;
        if doc.issuer != *self.issuer {
            return Err(failed(
                Problem::OtherIssuer,
                format!(
                    "names issuer {:?}, not {:?} as configured; set `issuer` to exactly the \
                     provider's issuer",
                    crate::text::bounded(&doc.issuer, 200),
                    self.issuer
                ),
            ));
        }
        let uri = secure_url(&doc.jwks_uri)
            .map_err(|p| failed(Problem::Unusable, format!("jwks_uri {p}")))?;
        self.judge_discovered(&uri)
            .map_err(|p| failed(Problem::JwksUriRefused, format!("jwks_uri refused: {p}")))?;
        if uri.host_str() != self.issuer_url.host_str() {
            tracing::info!(
                issuer = %self.issuer,
                jwks_uri = %uri,
                "the issuer publishes its keys on another host; an address of it that is not \
                 globally reachable is refused unless the issuer's allow_private allows it"
            );
        }
        *self
            .discovered_jwks_uri
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(uri.clone());
        Ok(uri)
    }

    /// Whether a `jwks_uri` from discovery may be fetched: plain http only when the issuer
    /// itself is (on a loopback address); on another host than the issuer's, not at an
    /// address written in it that is not globally reachable unless `allow_private` allows it.
    /// (A name, `localhost` too, is judged when it is resolved, by [`GuardedDns`].)
    fn judge_discovered(&self, uri: &Url) -> Result<(), String> {
        if uri.scheme() == "http" && self.issuer_url.scheme() != "http" {
            return Err(format!(
                "{uri} is plain http while the issuer is https; keys are fetched over https"
            ));
        }
        let Some(host) = uri.host_str() else {
            return Ok(());
        };
        if Some(host) == self.issuer_url.host_str() {
            return Ok(());
        }
        judge_hop(&self.guard, uri)
    }

    async fn get(&self, document: Document, url: &Url) -> Result<Vec<u8>, FetchError> {
        let failed = |problem, detail: String| FetchError::new(document, url, problem, detail);
        let mut response = self
            .client
            .get(url.clone())
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| failed(problem_of(&e), error_chain(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(failed(
                Problem::Status(status),
                format!("answered {status}"),
            ));
        }
        let too_big = || {
            failed(
                Problem::TooLarge,
                format!("document larger than {MAX_DOCUMENT_BYTES} bytes"),
            )
        };
        bounded_body::read_to(&mut response, MAX_DOCUMENT_BYTES)
            .await
            .map_err(|e| match e {
                BoundedBodyError::TooLarge { .. } => too_big(),
                BoundedBodyError::Transport(e) => failed(problem_of(&e), error_chain(&e)),
            })
    }
}

/// The allowance for `url`'s host (any address), for a URL the operator wrote.
fn host_allowance(url: &Url) -> Option<PrivateAllowance> {
    let host = url
        .host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']');
    PrivateAllowance::try_from(host.to_owned()).ok()
}

/// What kind of failure a reqwest error is.
fn problem_of(err: &reqwest::Error) -> Problem {
    let refused = std::iter::successors(std::error::Error::source(err), |e| e.source())
        .any(|e| e.is::<NotAllowed>());
    if refused || err.is_redirect() {
        Problem::Refused
    } else if err.is_timeout() {
        Problem::TimedOut
    } else {
        Problem::Unreachable
    }
}

/// A name of an identity provider that resolved to an address its issuer does not allow.
#[derive(Debug, thiserror::Error)]
#[error(
    "{host} resolves to {ip}, a {class} address: keys are fetched from an address that is not \
     globally reachable only on the issuer's own host, or where the issuer's allow_private \
     allows it"
)]
struct NotAllowed {
    host: String,
    ip: IpAddr,
    class: crate::egress::ip_guard::AddressClass,
}

/// The system's resolver under the issuer's [`AddressGuard`]: reqwest dials exactly the
/// addresses judged, so a name that answers differently the next time changes nothing between
/// the check and the dial.
struct GuardedDns(AddressGuard);

impl reqwest::dns::Resolve for GuardedDns {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.0.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addresses: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let ips: Vec<IpAddr> = addresses.iter().map(SocketAddr::ip).collect();
            guard.judge(&host, &ips).map_err(|refused| NotAllowed {
                host: refused.host,
                ip: refused.ip,
                class: refused.class,
            })?;
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The certificates in an issuer's `ca_file` (PEM), or what is wrong with the file.
pub(crate) fn read_ca_bundle(path: &Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("{} is not a PEM bundle: {e}", path.display()))
}

/// A hop to `next` (a redirect, or a discovered `jwks_uri`) whose host is an address: refused
/// when the address is not globally reachable and `guard` (the issuer's `allow_private` and
/// the hosts the operator wrote) does not allow it. (A hop to a name is judged when the name
/// is resolved, by [`GuardedDns`].)
fn judge_hop(guard: &AddressGuard, next: &Url) -> Result<(), String> {
    let Some(host) = next.host_str() else {
        return Ok(());
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let Ok(ip) = bare.parse::<IpAddr>() else {
        return Ok(());
    };
    guard
        .judge(bare, &[ip])
        .map_err(|refused| format!("{next} is at {ip}, a {} address", refused.class))
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

    fn fetcher(issuer: &str, allow_private: &[&str]) -> JwksFetcher {
        let cfg = IssuerConfig {
            issuer: issuer.into(),
            audiences: vec!["warden".into()],
            algorithms: super::super::config::default_algorithms(),
            jwks_uri: None,
            claims: None,
            ca_file: None,
            allow_private: allow_private
                .iter()
                .map(|a| PrivateAllowance::try_from(a.to_string()).unwrap())
                .collect(),
        };
        JwksFetcher::new(&cfg, "identity.issuers[0]").unwrap()
    }

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn a_redirect_to_an_internal_address_is_refused_unless_configured() {
        let guard = fetcher("https://idp.example.com", &[]).guard;
        let err = judge_hop(&guard, &url("https://169.254.169.254/latest/meta-data/")).unwrap_err();
        assert!(err.contains("a link_local address"), "{err}");
        assert!(judge_hop(&guard, &url("https://8.8.8.8/keys")).is_ok());
        assert!(judge_hop(&guard, &url("https://keys.example.com/jwks")).is_ok());
        let internal = fetcher("https://10.0.0.5/realms/agents", &[]).guard;
        assert!(judge_hop(&internal, &url("https://10.0.0.5/realms/agents/keys")).is_ok());
        assert!(judge_hop(&internal, &url("https://10.0.0.6/keys")).is_err());
    }

    #[test]
    fn a_discovered_jwks_uri_on_another_host_at_an_internal_address_is_refused() {
        let google = fetcher("https://accounts.google.com", &[]);
        assert!(
            google
                .judge_discovered(&url("https://www.googleapis.com/oauth2/v3/certs"))
                .is_ok(),
            "a name on another host is judged when it is resolved"
        );
        for internal in [
            "https://169.254.169.254/latest/meta-data/",
            "https://10.0.0.5/keys",
            "https://[::1]/keys",
        ] {
            let err = google.judge_discovered(&url(internal)).unwrap_err();
            assert!(err.contains("address"), "{internal}: {err}");
        }
        let err = google
            .judge_discovered(&url("http://127.0.0.1:8080/keys"))
            .unwrap_err();
        assert!(err.contains("plain http"), "{err}");
        let allowed = fetcher("https://accounts.google.com", &["10.0.0.0/8"]);
        assert!(
            allowed
                .judge_discovered(&url("https://10.0.0.5/keys"))
                .is_ok()
        );
        let in_cluster = fetcher("http://127.0.0.1:8080/realms/agents", &[]);
        assert!(
            in_cluster
                .judge_discovered(&url("http://127.0.0.1:8080/realms/agents/certs"))
                .is_ok(),
            "the issuer's own host is trusted as written"
        );
    }

    #[tokio::test]
    async fn a_name_resolving_to_an_internal_address_is_not_dialled_unless_allowed() {
        use reqwest::dns::Resolve;
        let name = |n: &str| n.parse::<reqwest::dns::Name>().unwrap();
        let guard = fetcher("https://idp.example.com", &[]).guard;
        let err = GuardedDns(guard)
            .resolve(name("localhost"))
            .await
            .err()
            .expect("localhost is refused to another issuer's keys");
        assert!(err.to_string().contains("loopback"), "{err}");
        let allowed = fetcher("https://idp.example.com", &["localhost"]).guard;
        assert!(GuardedDns(allowed).resolve(name("localhost")).await.is_ok());
        let own = fetcher("http://localhost:8080", &[]).guard;
        assert!(
            GuardedDns(own).resolve(name("localhost")).await.is_ok(),
            "the issuer's own host resolves where it does"
        );
    }
}
