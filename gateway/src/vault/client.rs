//! The connection to Vault: Warden's login, its token kept alive, and the calls the secret
//! sources make. Every call (logins, token lookups, renewals and revocations, secret reads,
//! lease renewals and revocations) goes through one place, [`Vault::send`]: its answer is
//! read to at most [`MAX_ANSWER_BYTES`] and the whole call, from connecting to the answer's
//! last byte, ends within `vault.timeout`. It follows no redirect: Vault's API sends none to
//! its clients (a standby node forwards requests to the active one), and a redirect followed
//! would carry Warden's token (`X-Vault-Token`) wherever it led.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::Value;
use zeroize::Zeroizing;

use super::config::{BootstrapSecret, VaultAuth, VaultConfig, shown_path};
use super::error::{KvGone, VaultError};
use super::secret::{KvSecret, LeasedSecret, SecretData};
use crate::json_len::json_len;

/// Whether Vault answers, as the last call found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VaultStatus {
    /// The last call succeeded.
    Up,
    /// The last call failed for want of Vault (unreachable, 5xx, login refused): why.
    Down(String),
}

/// The status of a Vault no call has reached yet.
const NOT_LOGGED_IN: &str = "not logged in yet";

/// A handle on Vault, cheap to clone; every clone shares one login.
#[derive(Clone)]
pub struct Vault {
    inner: Arc<Inner>,
}

struct Inner {
    config: VaultConfig,
    /// The client with the current token.
    client: ArcSwap<VaultClient>,
    /// When the current token expires (`None`: it does not).
    token_expires: Mutex<Option<Instant>>,
    /// Whether the current token can be renewed.
    renewable: Mutex<bool>,
    /// Held while logging in, so concurrent failures make one login.
    login: tokio::sync::Mutex<()>,
    status: Mutex<VaultStatus>,
    /// Whether a login has succeeded yet (before that, a call logs in first).
    logged_in: std::sync::atomic::AtomicBool,
    /// Successful logins so far: a task whose token was refused logs in again only if no
    /// other task has since.
    generation: std::sync::atomic::AtomicU64,
    /// Told of each login, so that the upkeep task, waiting for a token that does not expire
    /// (or for none), plans the new token's renewal at once.
    logged_in_now: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("address", &self.inner.config.address)
            .field("auth", &self.inner.config.auth.method())
            .finish_non_exhaustive()
    }
}

impl Vault {
    /// Logs in to Vault as configured; then, inside a tokio runtime, keeps the token alive in
    /// a task of its own for as long as a handle lives.
    pub async fn connect(config: VaultConfig) -> Result<Vault, VaultError> {
        let vault = Vault::unconnected(config)?;
        vault.login(0).await?;
        vault.keep_alive();
        Ok(vault)
    }

    /// A handle that logs in when first used (or when [`Vault::start`] succeeds): a Vault
    /// that is down when Warden starts delays its secrets, not Warden. Fails only on settings
    /// that can never work (an address that is not a URL).
    pub fn start(config: VaultConfig) -> Result<Vault, VaultError> {
        let vault = Vault::unconnected(config)?;
        vault.begin();
        Ok(vault)
    }

    /// Starts an [offline](Vault::offline) handle's upkeep: a first login in the
    /// background, then its token kept alive (inside a tokio runtime).
    pub fn begin(&self) {
        let vault = self;
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let first = vault.clone();
            runtime.spawn(async move {
                if let Err(e) = first.login(first.generation()).await {
                    tracing::warn!(error = %e, "cannot log in to vault yet; secrets from vault are unavailable until it answers");
                }
            });
        }
        vault.keep_alive();
    }

    /// A handle that logs in only when a call is made, with no task of its own.
    pub fn offline(config: VaultConfig) -> Result<Vault, VaultError> {
        Vault::unconnected(config)
    }

    fn unconnected(config: VaultConfig) -> Result<Vault, VaultError> {
        let client = build_client(&config, "")?;
        Ok(Vault {
            inner: Arc::new(Inner {
                config,
                client: ArcSwap::from_pointee(client),
                token_expires: Mutex::new(None),
                renewable: Mutex::new(false),
                login: tokio::sync::Mutex::new(()),
                status: Mutex::new(VaultStatus::Down(NOT_LOGGED_IN.into())),
                logged_in: std::sync::atomic::AtomicBool::new(false),
                generation: std::sync::atomic::AtomicU64::new(0),
                logged_in_now: Arc::new(tokio::sync::Notify::new()),
            }),
        })
    }

    /// Inside a tokio runtime, keeps the token alive in a task of its own for as long as a
    /// handle lives.
    fn keep_alive(&self) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(keep_alive(
                Arc::downgrade(&self.inner),
                self.inner.logged_in_now.clone(),
            ));
        }
    }

    /// The configuration this handle was made with.
    pub fn config(&self) -> &VaultConfig {
        &self.inner.config
    }

    /// Whether a login has succeeded.
    pub fn is_logged_in(&self) -> bool {
        self.inner
            .logged_in
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Whether Vault answered the last call.
    pub fn status(&self) -> VaultStatus {
        lock(&self.inner.status).clone()
    }

    /// Version `version` (the latest when `None`) of the KV v2 secret at `path` under
    /// `mount`.
    pub async fn kv(
        &self,
        mount: &str,
        path: &str,
        version: Option<u64>,
    ) -> Result<KvSecret, VaultError> {
        let what = format!("KV v2 {mount}/{path}");
        let mut query = String::new();
        if let Some(v) = version {
            query = format!("?version={v}");
        }
        let explained = |e| kv_refusal_explained(e, &what, mount, path, version);
        let answer = self
            .call(
                Method::GET,
                &format!("{mount}/data/{path}{query}"),
                None,
                &what,
            )
            .await
            .map_err(explained)?;
        let mut answer = answer.ok_or_else(|| {
            explained(VaultError::Refused {
                what: what.clone(),
                status: StatusCode::NOT_FOUND,
                message: "no such secret".into(),
            })
        })?;
        let metadata = &answer["data"]["metadata"];
        let found = metadata["version"]
            .as_u64()
            .ok_or_else(|| VaultError::Malformed {
                what: what.clone(),
                reason: "no data.metadata.version (is this a KV version 2 mount?)".into(),
            })?;
        if answer["data"]["data"].is_null() {
            // Older Vaults answer a deleted version with 200 and no data.
            let gone = KvGone::from_metadata(metadata).map_or_else(
                || VaultError::Refused {
                    what: what.clone(),
                    status: StatusCode::NOT_FOUND,
                    message: format!("version {found} is deleted or destroyed"),
                },
                |(version, gone)| VaultError::KvVersionGone {
                    what: what.clone(),
                    version,
                    gone,
                },
            );
            return Err(explained(gone));
        }
        let version = found;
        let data = SecretData::from_json(&what, answer["data"]["data"].take())?;
        Ok(KvSecret { data, version })
    }

    /// Reads `path`, a path that returns a secret with a lease (a database role's
    /// `creds/<role>`, a cloud engine's credentials, ...).
    pub async fn read_leased(&self, path: &str) -> Result<LeasedSecret, VaultError> {
        self.lease(path, None).await
    }

    /// A secret with a lease from `path`: read (`params` `None`), or issued by a write with
    /// `params` (`pki/issue/<role>` with `common_name`, engines that issue on a write).
    pub async fn lease(
        &self,
        path: &str,
        params: Option<&serde_json::Value>,
    ) -> Result<LeasedSecret, VaultError> {
        let what = format!("secret {path}");
        let method = if params.is_some() {
            Method::POST
        } else {
            Method::GET
        };
        let mut answer = self
            .call(method, path, params.cloned(), &what)
            .await?
            .ok_or_else(|| VaultError::Malformed {
                what: what.clone(),
                reason: "an empty answer".into(),
            })?;
        let lease_id = answer["lease_id"].as_str().unwrap_or_default().to_owned();
        let lease_duration = duration(answer["lease_duration"].as_u64().unwrap_or(0));
        let renewable = answer["renewable"].as_bool().unwrap_or(false);
        let data = SecretData::from_json(&what, answer["data"].take())?;
        Ok(LeasedSecret {
            data,
            lease_id,
            lease_duration,
            renewable,
        })
    }

    /// Renews lease `lease_id` by `increment` (Vault may grant less); returns the duration
    /// granted.
    pub async fn renew_lease(
        &self,
        lease_id: &str,
        increment: Duration,
    ) -> Result<Duration, VaultError> {
        let what = format!("renewal of lease {lease_id}");
        let body = serde_json::json!({"lease_id": lease_id, "increment": increment.as_secs()});
        let answer = self
            .call(Method::PUT, "sys/leases/renew", Some(body), &what)
            .await?
            .unwrap_or_default();
        Ok(duration(answer["lease_duration"].as_u64().unwrap_or(0)))
    }

    /// Revokes lease `lease_id` at once.
    pub async fn revoke_lease(&self, lease_id: &str) -> Result<(), VaultError> {
        let what = format!("revocation of lease {lease_id}");
        let body = serde_json::json!({"lease_id": lease_id});
        self.call(Method::PUT, "sys/leases/revoke", Some(body), &what)
            .await
            .map(drop)
    }

    /// One call to `/v1/<path>` with the current token; a 403 (the token was revoked or
    /// expired early) logs in again and tries once more. `None` for an empty answer (204).
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
        what: &str,
    ) -> Result<Option<serde_json::Value>, VaultError> {
        let generation = self.generation();
        if !self
            .inner
            .logged_in
            .load(std::sync::atomic::Ordering::Acquire)
        {
            self.login(generation).await?;
        }
        let generation = self.generation();
        let body = body
            .as_ref()
            .map(|body| json_body(what, body))
            .transpose()?;
        let first = self
            .call_once(method.clone(), path, body.clone(), what)
            .await;
        let result = match first {
            // A 403 is a revoked or expired token, or a path Warden's Vault policy does not
            // grant: only the first needs a login (each login makes a token).
            Err(e) if e.is_forbidden() && !self.token_is_valid().await => {
                match self.login(generation).await {
                    Ok(()) => self.call_once(method, path, body, what).await,
                    Err(login) => Err(login),
                }
            }
            other => other,
        };
        self.note(&result);
        result
    }

    /// Whether Vault still accepts the current token (`auth/token/lookup-self`).
    async fn token_is_valid(&self) -> bool {
        let client = self.inner.client.load_full();
        self.send(&client, Method::GET, LOOKUP_SELF, None, "token lookup")
            .await
            .is_ok()
    }

    async fn call_once(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        what: &str,
    ) -> Result<Option<Value>, VaultError> {
        let client = self.inner.client.load_full();
        self.send(&client, method, path, body, what).await
    }

    /// One call to `/v1/<path>` with `client`'s token (none for a login): the one way Warden
    /// calls Vault. The answer is read to at most [`MAX_ANSWER_BYTES`], and the call ends
    /// within `vault.timeout`, however slowly Vault (or whatever answers at its address)
    /// sends. `None` for an empty answer (204).
    async fn send(
        &self,
        client: &VaultClient,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        what: &str,
    ) -> Result<Option<Value>, VaultError> {
        let limit = self.inner.config.timeout;
        tokio::time::timeout(limit, self.send_unbounded(client, method, path, body, what))
            .await
            .unwrap_or_else(|_| {
                Err(VaultError::TimedOut {
                    address: self.inner.config.address.clone(),
                    what: what.to_owned(),
                    limit,
                })
            })
    }

    /// [`Vault::send`] without its time limit.
    async fn send_unbounded(
        &self,
        client: &VaultClient,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        what: &str,
    ) -> Result<Option<Value>, VaultError> {
        let url = format!(
            "{}/v1/{}",
            self.inner.config.address.trim_end_matches('/'),
            path.trim_start_matches('/')
        );
        let mut request = client
            .http
            .request(method, &url)
            .header("X-Vault-Request", "true");
        let token = client.token.as_str();
        if !token.is_empty() {
            request = request.header("X-Vault-Token", token);
        }
        if let Some(namespace) = &self.inner.config.namespace {
            request = request.header("X-Vault-Namespace", namespace.as_str());
        }
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body);
        }
        let unreachable = |e: String| VaultError::Unreachable {
            address: self.inner.config.address.clone(),
            reason: format!("{what}: {e}"),
        };
        let mut response = request
            .send()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let status = response.status();
        if status.is_redirection() {
            return Err(redirected(what, status, response.url(), response.headers()));
        }
        let too_large = || VaultError::TooLarge {
            address: self.inner.config.address.clone(),
            what: what.to_owned(),
            limit: MAX_ANSWER_BYTES,
        };
        let announced = response.content_length().unwrap_or(0);
        if announced > MAX_ANSWER_BYTES as u64 {
            return Err(too_large());
        }
        let mut bytes = Received::new(usize::try_from(announced).unwrap_or(0));
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| unreachable(e.to_string()))?
        {
            bytes.append(&chunk).map_err(|_| too_large())?;
        }
        let bytes = bytes.bytes;
        if !status.is_success() {
            return Err(refused(what, status, &bytes));
        }
        if bytes.is_empty() {
            return Ok(None);
        }
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| VaultError::Malformed {
                what: what.to_owned(),
                reason: e.to_string(),
            })
    }

    /// Logs in (again), unless another task just did.
    /// Logs in, unless a login succeeded since the caller saw login `generation` (another
    /// task replaced the token the caller found refused). A refused login marks Vault down:
    /// nothing can be read until one succeeds.
    async fn login(&self, generation: u64) -> Result<(), VaultError> {
        let _guard = self.inner.login.lock().await;
        if self.generation() != generation {
            return Ok(());
        }
        let result = self.login_now().await;
        match &result {
            Ok(()) => {
                self.inner
                    .generation
                    .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                self.note(&result);
            }
            Err(e) => self.set_status(VaultStatus::Down(e.to_string())),
        }
        result
    }

    /// How many logins have succeeded.
    fn generation(&self) -> u64 {
        self.inner
            .generation
            .load(std::sync::atomic::Ordering::Acquire)
    }

    async fn login_now(&self) -> Result<(), VaultError> {
        let config = &self.inner.config;
        let anonymous = build_client(config, "")?;
        let method = config.auth.method();
        let auth = match &config.auth {
            VaultAuth::Token { token } => {
                let token = read_bootstrap(method, "the token", token)?;
                let client = build_client(config, &token)?;
                let what = "token lookup";
                let answer = self
                    .send(&client, Method::GET, LOOKUP_SELF, None, what)
                    .await?;
                let data = &answer.unwrap_or_default()["data"];
                Login {
                    token,
                    ttl: duration(data["ttl"].as_u64().unwrap_or(0)),
                    renewable: data["renewable"].as_bool().unwrap_or(false),
                }
            }
            VaultAuth::Approle {
                mount,
                role_id,
                secret_id,
            } => {
                let secret_id = read_bootstrap(method, "the secret id", secret_id)?;
                let body = LoginBody {
                    role_id: Some(role_id),
                    secret_id: Some(&secret_id),
                    ..LoginBody::default()
                };
                self.log_in(&anonymous, mount, &body, "AppRole login")
                    .await?
            }
            VaultAuth::Kubernetes {
                mount,
                role,
                jwt_path,
            } => {
                let jwt = read_bootstrap(
                    method,
                    "the service-account token",
                    &BootstrapSecret::File(jwt_path.clone()),
                )?;
                let body = LoginBody {
                    role: Some(role),
                    jwt: Some(&jwt),
                    ..LoginBody::default()
                };
                self.log_in(&anonymous, mount, &body, "Kubernetes login")
                    .await?
            }
            VaultAuth::Jwt { mount, role, jwt } => {
                let jwt = read_bootstrap(method, "the JWT", jwt)?;
                let body = LoginBody {
                    role: role.as_deref(),
                    jwt: Some(&jwt),
                    ..LoginBody::default()
                };
                self.log_in(&anonymous, mount, &body, "JWT login").await?
            }
        };
        let client = build_client(config, &auth.token)?;
        let old = self.inner.client.swap(Arc::new(client));
        // The token this login replaces is Warden's own (not one it was given): revoke it
        // rather than leave it to its TTL.
        if !matches!(config.auth, VaultAuth::Token { .. })
            && !old.token.is_empty()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let vault = self.clone();
            runtime.spawn(async move {
                let what = "revocation of the replaced token";
                let _ = vault
                    .send(
                        &old,
                        Method::POST,
                        "auth/token/revoke-self",
                        Some(Bytes::from_static(b"{}")),
                        what,
                    )
                    .await;
            });
        }
        self.inner
            .logged_in
            .store(true, std::sync::atomic::Ordering::Release);
        *lock(&self.inner.token_expires) = (!auth.ttl.is_zero()).then(|| Instant::now() + auth.ttl);
        *lock(&self.inner.renewable) = auth.renewable;
        self.inner.logged_in_now.notify_one();
        tracing::info!(
            address = %config.address,
            method,
            ttl = %humantime::format_duration(auth.ttl),
            renewable = auth.renewable,
            "logged in to vault"
        );
        Ok(())
    }

    /// A login to the auth method mounted at `mount` with `body` (its credentials).
    async fn log_in(
        &self,
        anonymous: &VaultClient,
        mount: &str,
        body: &LoginBody<'_>,
        what: &str,
    ) -> Result<Login, VaultError> {
        let path = format!("auth/{}/login", mount.trim_matches('/'));
        let body = json_body(what, body)?;
        let answer = self
            .send(anonymous, Method::POST, &path, Some(body), what)
            .await?;
        Login::from_answer(what, answer)
    }

    /// Renews the token; returns the new time to live.
    async fn renew_token(&self) -> Result<Duration, VaultError> {
        let client = self.inner.client.load_full();
        let answer = self
            .send(
                &client,
                Method::POST,
                "auth/token/renew-self",
                Some(Bytes::from_static(b"{}")),
                "token renewal",
            )
            .await?;
        let ttl = duration(
            answer.unwrap_or_default()["auth"]["lease_duration"]
                .as_u64()
                .unwrap_or(0),
        );
        *lock(&self.inner.token_expires) = (!ttl.is_zero()).then(|| Instant::now() + ttl);
        Ok(ttl)
    }

    /// Records whether Vault answered, logging a change.
    fn note<T>(&self, result: &Result<T, VaultError>) {
        let now = match result {
            Ok(_) => VaultStatus::Up,
            Err(e) if e.is_outage() => VaultStatus::Down(e.to_string()),
            // A refusal of one path (404, 400, or 403 after a fresh login: Warden's Vault
            // policy does not grant it) says nothing about Vault itself; a refused login
            // marks Vault down where it happens (`login`).
            Err(_) => return,
        };
        self.set_status(now);
    }

    /// Records Vault's status, logging a change.
    fn set_status(&self, now: VaultStatus) {
        super::metrics::VAULT
            .up
            .set(i64::from(now == VaultStatus::Up));
        let mut status = lock(&self.inner.status);
        if *status != now {
            match &now {
                // The first login is logged as such (`logged in to vault`): Vault was never
                // down, so it does not "answer again".
                VaultStatus::Up if matches!(&*status, VaultStatus::Down(why) if why == NOT_LOGGED_IN) =>
                    {}
                VaultStatus::Up => {
                    tracing::info!(address = %self.inner.config.address, "vault answers again")
                }
                VaultStatus::Down(why) => {
                    tracing::warn!(address = %self.inner.config.address, reason = %why, "vault is not answering; cached secrets serve until they expire")
                }
            }
            *status = now;
        }
    }

    /// When the token should next be renewed (or a login tried), from now.
    fn next_renewal(&self) -> Option<Duration> {
        let expires = (*lock(&self.inner.token_expires))?;
        let left = expires.saturating_duration_since(Instant::now());
        Some(left.saturating_sub(margin(self.inner.config.renew_margin, left)))
    }
}

/// What a login gave.
struct Login {
    token: Zeroizing<String>,
    ttl: Duration,
    renewable: bool,
}

impl Login {
    /// The login in Vault's answer to login `what` (`auth.client_token`, its lease).
    fn from_answer(what: &str, answer: Option<Value>) -> Result<Login, VaultError> {
        let mut auth = answer.unwrap_or_default()["auth"].take();
        // Taken out of the answer, not copied: the token's only copy is zeroized on drop.
        let token = match auth["client_token"].take() {
            Value::String(token) if !token.is_empty() => Zeroizing::new(token),
            _ => {
                return Err(VaultError::Malformed {
                    what: what.to_owned(),
                    reason: "no auth.client_token".into(),
                });
            }
        };
        Ok(Login {
            token,
            ttl: duration(auth["lease_duration"].as_u64().unwrap_or(0)),
            renewable: auth["renewable"].as_bool().unwrap_or(false),
        })
    }
}

/// The longest lease or token lifetime taken as Vault gives it (ten years): what is beyond is
/// no lifetime an `Instant` can hold, and would end the task that computes with it.
const MAX_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);

/// Largest answer read from Vault: a secret, a lease, a login, a token lookup or renewal.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// The path of the current token's lookup.
const LOOKUP_SELF: &str = "auth/token/lookup-self";

/// A lifetime of `secs` seconds as Vault states it, at most [`MAX_LIFETIME`].
fn duration(secs: u64) -> Duration {
    Duration::from_secs(secs).min(MAX_LIFETIME)
}

/// The margin to keep before an expiry `left` away: `configured`, or a third of `left` when
/// that is shorter (a 30 s token is renewed after 20 s, not never).
pub fn margin(configured: Duration, left: Duration) -> Duration {
    configured.min(left / 3)
}

/// Keeps the token alive while the handle lives: renews it before it expires; when renewal
/// fails or the token cannot be renewed, logs in again, retrying with backoff.
async fn keep_alive(inner: std::sync::Weak<Inner>, logged_in: Arc<tokio::sync::Notify>) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let Some(vault) = inner.upgrade().map(|inner| Vault { inner }) else {
            return;
        };
        let wait = match vault.next_renewal() {
            Some(wait) => wait,
            // A token that does not expire (or none yet) needs nothing; look again after the
            // next login, which may give one that does, or a minute from now.
            None => Duration::from_secs(60),
        };
        drop(vault);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = logged_in.notified() => continue,
        }
        let Some(vault) = inner.upgrade().map(|inner| Vault { inner }) else {
            return;
        };
        if vault
            .next_renewal()
            .is_none_or(|w| w > Duration::from_millis(500))
        {
            continue;
        }
        let renewable = *lock(&vault.inner.renewable);
        let renewed = if renewable {
            vault.renew_token().await.map(|ttl| !ttl.is_zero())
        } else {
            Ok(false)
        };
        let result = match renewed {
            Ok(true) => Ok(()),
            // Not renewable, or renewed to nothing (at its max TTL): a new login.
            Ok(false) | Err(_) => vault.login(vault.generation()).await,
        };
        vault.note(&result);
        match result {
            Ok(()) => backoff = Duration::from_secs(1),
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "vault token could not be renewed or obtained");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// The HTTP client Warden calls Vault with, and the token its calls carry (none for a login).
struct VaultClient {
    http: reqwest::Client,
    token: Zeroizing<String>,
}

fn build_client(config: &VaultConfig, token: &str) -> Result<VaultClient, VaultError> {
    // The HTTP client takes rustls's process default: make sure there is one (`warden serve`
    // installs it at start; a library caller may not have).
    crate::listener::crypto::install_crypto_provider();
    let address = &config.address;
    match reqwest::Url::parse(address) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => {}
        _ => {
            return Err(VaultError::Config(format!(
                "address {address:?} is not an http(s) URL: write vault.address as \
                 https://vault.example:8200"
            )));
        }
    }
    // No time limit of the client's own: `Vault::send` bounds every call. No redirect is
    // followed (the token would go with it).
    let mut builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
    if let Some(path) = &config.ca_cert {
        let ca =
            |reason: String| VaultError::Config(format!("ca_cert {}: {reason}", path.display()));
        let pem = std::fs::read(path).map_err(|e| ca(e.to_string()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| ca(format!("not a PEM bundle: {e}")))?;
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    let http = builder
        .build()
        .map_err(|e| VaultError::Config(format!("cannot build the HTTP client: {e}")))?;
    Ok(VaultClient {
        http,
        token: Zeroizing::new(token.to_owned()),
    })
}

/// The credentials of a login, as Vault's login endpoints take them.
#[derive(Default, serde::Serialize)]
struct LoginBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jwt: Option<&'a str>,
}

/// `body` as the JSON of a request to Vault, in a buffer of its exact size (one that grew would
/// leave copies behind) wiped when the request is done with it: a login's body holds its
/// credential.
fn json_body(what: &str, body: &impl serde::Serialize) -> Result<Bytes, VaultError> {
    let mut bytes = Zeroizing::new(Vec::with_capacity(json_len(body)));
    serde_json::to_writer(&mut *bytes, body).map_err(|e| VaultError::Malformed {
        what: what.to_owned(),
        reason: format!("the request cannot be written: {e}"),
    })?;
    Ok(Bytes::from_owner(bytes))
}

/// First capacity of an answer whose size was not announced.
const FIRST_ANSWER_BYTES: usize = 16 * 1024;

/// An answer from Vault as it is read: grown up to its bound, every buffer it outgrows wiped
/// before it is freed (an answer may hold a secret).
struct Received {
    bytes: Zeroizing<Vec<u8>>,
    limit: usize,
}

impl Received {
    /// For an answer that announced `announced` bytes (0: not announced, read to at most
    /// [`MAX_ANSWER_BYTES`]).
    fn new(announced: usize) -> Received {
        let (first, limit) = match announced {
            0 => (FIRST_ANSWER_BYTES, MAX_ANSWER_BYTES),
            n => (n, n.min(MAX_ANSWER_BYTES)),
        };
        Received {
            bytes: Zeroizing::new(Vec::with_capacity(first.min(limit))),
            limit,
        }
    }

    /// Appends `chunk`; `Err` past the bound.
    fn append(&mut self, chunk: &[u8]) -> Result<(), ()> {
        let needed = self.bytes.len() + chunk.len();
        if needed > self.limit {
            return Err(());
        }
        if needed > self.bytes.capacity() {
            // Grown here, never by the Vec itself, which would free the old buffer unwiped.
            let capacity = needed.max(self.bytes.capacity() * 2).min(self.limit);
            let mut grown = Zeroizing::new(Vec::with_capacity(capacity));
            grown.extend_from_slice(&self.bytes);
            self.bytes = grown;
        }
        self.bytes.extend_from_slice(chunk);
        Ok(())
    }
}

/// A redirect Vault (or whatever answers at its address) sent, refused: where it led is named
/// by its origin only.
fn redirected(
    what: &str,
    status: StatusCode,
    asked: &reqwest::Url,
    headers: &http::HeaderMap,
) -> VaultError {
    let to = headers
        .get(http::header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .and_then(|l| asked.join(l).ok())
        .map_or_else(
            || "elsewhere".to_owned(),
            |l| l.origin().ascii_serialization(),
        );
    VaultError::Refused {
        what: what.to_owned(),
        status,
        message: format!(
            "a redirect to {to}, which Warden does not follow (it would take Warden's token \
             with it): set vault.address to the active node or a load balancer in front of \
             Vault, or let standby nodes forward requests"
        ),
    }
}

fn read_bootstrap(
    method: &'static str,
    what: &str,
    source: &BootstrapSecret,
) -> Result<Zeroizing<String>, VaultError> {
    // A file's path is shown as what reading it gave allows.
    let (origin, value) = match source {
        BootstrapSecret::Env(name) => (
            format!("env {name}"),
            std::env::var(name).map_err(|_| "not set".to_owned()),
        ),
        BootstrapSecret::File(path) => match std::fs::read_to_string(path) {
            Ok(value) => (format!("file {}", shown_path(path, None)), Ok(value)),
            Err(e) => (
                format!("file {}", shown_path(path, Some(&e))),
                Err(e.to_string()),
            ),
        },
    };
    let failed = |reason: String| VaultError::Bootstrap {
        method,
        what: format!("{what} ({origin})"),
        reason,
    };
    let value = Zeroizing::new(value.map_err(failed)?);
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(failed("empty".into()));
    }
    Ok(Zeroizing::new(trimmed.to_owned()))
}

/// A non-2xx answer as an error, with Vault's own messages (which name paths and reasons,
/// never values).
fn refused(what: &str, status: StatusCode, body: &[u8]) -> VaultError {
    let answer = serde_json::from_slice::<serde_json::Value>(body).ok();
    // KV v2 answers a deleted or destroyed version with 404 and the version's metadata.
    if status == StatusCode::NOT_FOUND
        && let Some((version, gone)) = answer
            .as_ref()
            .and_then(|v| KvGone::from_metadata(&v["data"]["metadata"]))
    {
        return VaultError::KvVersionGone {
            what: what.to_owned(),
            version,
            gone,
        };
    }
    let message = answer
        .and_then(|v| {
            v["errors"].as_array().map(|errors| {
                errors
                    .iter()
                    .filter_map(|e| e.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            })
        })
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
    VaultError::Refused {
        what: what.to_owned(),
        status,
        message: crate::text::bounded(&message, 300).into_owned(),
    }
}

/// A KV v2 read (`read`, the call's name, of `version` or the latest) Vault refused with 404
/// or 403, told as what to do: Vault's own answer to a missing secret or version is a bare
/// `404` with no message, to a deleted or destroyed one a `404` with its metadata, and to an
/// ungranted one `permission denied`, none naming what the operator can change. Any other
/// error (a refused login among them) is left as it is.
fn kv_refusal_explained(
    e: VaultError,
    read: &str,
    mount: &str,
    path: &str,
    pinned: Option<u64>,
) -> VaultError {
    let at = format!("{mount}/{path}");
    // A pinned version is not replaced by writing a new one.
    let or_pin = if pinned.is_some() {
        format!(
            "; this source pins it with `version`: pin another (`bao kv metadata get {at}` \
             lists them) or drop `version` to follow the latest"
        )
    } else {
        String::new()
    };
    let (what, status, message) = match e {
        VaultError::KvVersionGone {
            what,
            version,
            gone,
        } if what == read => {
            let message = match gone {
                KvGone::Deleted { at: when } => format!(
                    "version {version} of {at} was deleted at {when}: undelete it with `bao kv \
                     undelete -versions={version} {at}` (or `vault kv undelete`), or write a \
                     new version with `bao kv put {at} FIELD=VALUE`{or_pin}"
                ),
                KvGone::Destroyed => format!(
                    "version {version} of {at} is destroyed (its data cannot be recovered): \
                     write a new version with `bao kv put {at} FIELD=VALUE`{or_pin}"
                ),
            };
            return VaultError::Refused {
                what,
                status: StatusCode::NOT_FOUND,
                message,
            };
        }
        VaultError::Refused {
            what,
            status,
            message,
        } if what == read => (what, status, message),
        other => return other,
    };
    let vault_said = if message.is_empty() || Some(message.as_str()) == status.canonical_reason() {
        String::new()
    } else {
        format!(" (vault said: {message})")
    };
    let message = match (status, pinned) {
        (StatusCode::NOT_FOUND, Some(version)) => format!(
            "version {version} of {at} does not exist{vault_said}: it was never written, or \
             is older than the versions KV keeps (`max_versions`), or the secret itself is \
             missing; `bao kv metadata get {at}` (or `vault kv metadata get`) lists its \
             versions: pin one of them, or drop `version` to follow the latest"
        ),
        (StatusCode::NOT_FOUND, None) => format!(
            "no secret at {at}{vault_said}: check the path with `bao kv get {at}` (or `vault \
             kv get`) and write it with `bao kv put {at} FIELD=VALUE`; `kv` is \
             <mount>/<path>, and a mount whose name holds a `/` is set with `mount` \
             (docs/secrets.md#secret-sources)"
        ),
        (StatusCode::FORBIDDEN, _) => format!(
            "Warden's Vault token may not read {mount}/data/{path}{vault_said}: grant `read` \
             on that path in the Vault policy Warden logs in with \
             (docs/secrets.md#the-vault-policy-warden-needs)"
        ),
        _ => message,
    };
    VaultError::Refused {
        what,
        status,
        message,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Json;
    use axum::routing::{get, put};
    use serde_json::{Value, json};

    #[test]
    fn a_login_secret_files_path_that_may_be_the_secret_is_not_shown() {
        let dir = tempfile::tempdir().unwrap();
        // A token written where its file's path goes, starting with `/` as base64 may.
        let token = "/q3Zf9kXW0b1T0sH7nJcYkq2r8mPz4vLx6aB5eD1uC0s";
        let e = read_bootstrap("token", "the token", &BootstrapSecret::File(token.into()))
            .unwrap_err()
            .to_string();
        assert!(!e.contains("q3Zf"), "{e}");
        assert!(
            e.contains("the token (file (path not shown") && e.contains("may be the secret"),
            "{e}"
        );
        // A missing file in a directory that exists, and an empty file, are named.
        let missing = dir.path().join("token");
        let e = read_bootstrap(
            "token",
            "the token",
            &BootstrapSecret::File(missing.clone()),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains(&missing.display().to_string()), "{e}");
        std::fs::write(&missing, "\n").unwrap();
        let e = read_bootstrap(
            "token",
            "the token",
            &BootstrapSecret::File(missing.clone()),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains(&format!("(file {}): empty", missing.display())),
            "{e}"
        );
    }

    /// A Vault that answers as no Vault should: lifetimes of `u64::MAX` seconds, a secret of
    /// 2 MiB.
    async fn hostile_vault() -> (String, tokio::task::JoinHandle<()>) {
        let forever = u64::MAX;
        let app = axum::Router::new()
            .route(
                "/v1/auth/token/lookup-self",
                get(move || async move {
                    Json(
                        json!({"request_id": "r", "lease_id": "", "renewable": false,
                        "lease_duration": 0, "wrap_info": null, "warnings": null, "auth": null,
                        "data": {
                        "accessor": "a", "creation_time": 1, "creation_ttl": 0,
                        "display_name": "token", "entity_id": "", "expire_time": null,
                        "explicit_max_ttl": 0, "id": "t", "issue_time": "2026-12-06T09:46:53Z",
                        "meta": null, "num_uses": 0, "orphan": true, "path": "auth/token/create",
                        "policies": ["root"], "renewable": true, "ttl": forever,
                        "type": "service"}}),
                    )
                }),
            )
            .route(
                "/v1/database/creds/ro",
                get(move || async move {
                    Json(
                        json!({"lease_id": "database/creds/ro/1", "lease_duration": forever,
                                "renewable": true, "data": {"password": "p"}}),
                    )
                }),
            )
            .route(
                "/v1/sys/leases/renew",
                put(move || async move {
                    Json(
                        json!({"lease_id": "database/creds/ro/1", "lease_duration": forever,
                                "renewable": true}),
                    )
                }),
            )
            .route(
                "/v1/secret/data/big",
                get(|| async {
                    let value = "x".repeat(2 * 1024 * 1024);
                    Json::<Value>(json!({"data": {"data": {"key": value},
                                                  "metadata": {"version": 1}}}))
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (address, task)
    }

    fn config(address: String, token_file: &std::path::Path) -> VaultConfig {
        VaultConfig {
            address,
            namespace: None,
            auth: VaultAuth::Token {
                token: BootstrapSecret::File(token_file.to_owned()),
            },
            ca_cert: None,
            timeout: Duration::from_secs(10),
            renew_margin: Duration::from_secs(60),
            kv_ttl: Duration::from_secs(300),
            idle: Duration::from_secs(600),
        }
    }

    #[tokio::test]
    async fn lifetimes_past_any_instant_are_capped_and_a_huge_answer_refused() {
        let (address, server) = hostile_vault().await;
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "t").unwrap();
        // A token living "forever" is logged in with (its expiry computed, not overflowed).
        let vault = Vault::connect(config(address, &token)).await.unwrap();
        assert!(vault.next_renewal().is_some());

        let leased = vault.read_leased("database/creds/ro").await.unwrap();
        assert_eq!(leased.lease_duration, MAX_LIFETIME);
        assert!(Instant::now().checked_add(leased.lease_duration).is_some());
        let renewed = vault
            .renew_lease(&leased.lease_id, leased.lease_duration)
            .await
            .unwrap();
        assert_eq!(renewed, MAX_LIFETIME);

        let err = vault.kv("secret", "big", None).await.unwrap_err();
        assert!(
            matches!(&err, VaultError::TooLarge { what, limit: 1_048_576, .. }
                if what == "KV v2 secret/big"),
            "{err}"
        );
        assert!(!err.to_string().contains("xxxx"), "{err}");
        server.abort();
    }

    /// How the hostile server answers a path.
    #[derive(Clone)]
    enum Answer {
        /// This JSON, whole.
        Json(Value),
        /// 8 MiB of blanks with no `Content-Length` (a body read whole would grow with
        /// it), then nothing more, the connection left open.
        Huge,
        /// Nothing at all, the connection left open.
        Silent,
        /// `307 Temporary Redirect` to this URL.
        Redirect(String),
    }

    /// Something at Vault's address that speaks HTTP/1.1 as it pleases, each path answered
    /// as `answers` says (404 for the others).
    struct RawVault {
        address: String,
        answers: Arc<Mutex<std::collections::HashMap<&'static str, Answer>>>,
        /// The head of every request, lower-cased, as it came.
        seen: Arc<Mutex<Vec<String>>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl RawVault {
        async fn start() -> RawVault {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = format!("http://{}", listener.local_addr().unwrap());
            let answers = Arc::new(Mutex::new(std::collections::HashMap::new()));
            let seen = Arc::new(Mutex::new(Vec::new()));
            let shared = answers.clone();
            let heads = seen.clone();
            let task = tokio::spawn(async move {
                loop {
                    let Ok((mut socket, _)) = listener.accept().await else {
                        return;
                    };
                    let answers = shared.clone();
                    let heads = heads.clone();
                    tokio::spawn(async move {
                        let mut head = Vec::new();
                        let mut byte = [0u8; 1];
                        while !head.ends_with(b"\r\n\r\n") {
                            if socket.read(&mut byte).await.unwrap_or(0) == 0 {
                                return;
                            }
                            head.push(byte[0]);
                        }
                        let head = String::from_utf8_lossy(&head).to_lowercase();
                        lock(&heads).push(head.clone());
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|n| n.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        let mut body = vec![0; length];
                        if socket.read_exact(&mut body).await.is_err() {
                            return;
                        }
                        let path = head
                            .split_whitespace()
                            .nth(1)
                            .unwrap_or_default()
                            .trim_start_matches("/v1/")
                            .to_owned();
                        let answer = lock(&answers).get(path.as_str()).cloned();
                        match answer {
                            Some(Answer::Json(json)) => {
                                let body = json.to_string();
                                let head = format!(
                                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                                     content-length: {}\r\nconnection: close\r\n\r\n",
                                    body.len()
                                );
                                let _ = socket.write_all(head.as_bytes()).await;
                                let _ = socket.write_all(body.as_bytes()).await;
                            }
                            Some(Answer::Huge) => {
                                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                                            connection: close\r\n\r\n";
                                let _ = socket.write_all(head.as_bytes()).await;
                                let chunk = vec![b' '; 64 * 1024];
                                for _ in 0..128 {
                                    if socket.write_all(&chunk).await.is_err() {
                                        return;
                                    }
                                }
                                std::future::pending::<()>().await;
                            }
                            Some(Answer::Silent) => std::future::pending::<()>().await,
                            Some(Answer::Redirect(to)) => {
                                let head = format!(
                                    "HTTP/1.1 307 Temporary Redirect\r\nlocation: {to}\r\n\
                                     content-length: 0\r\nconnection: close\r\n\r\n"
                                );
                                let _ = socket.write_all(head.as_bytes()).await;
                            }
                            None => {
                                let _ = socket
                                    .write_all(
                                        b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\
                                          connection: close\r\n\r\n",
                                    )
                                    .await;
                            }
                        }
                    });
                }
            });
            RawVault {
                address,
                answers,
                seen,
                task,
            }
        }

        fn answer(&self, path: &'static str, answer: Answer) {
            lock(&self.answers).insert(path, answer);
        }
    }

    impl Drop for RawVault {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    /// A configuration logging in with `auth`, each call limited to 300 ms.
    fn hostile_config(address: &str, auth: VaultAuth) -> VaultConfig {
        VaultConfig {
            auth,
            timeout: Duration::from_millis(300),
            ..config(address.to_owned(), std::path::Path::new("unused"))
        }
    }

    fn assert_too_large(err: &VaultError, address: &str, call: &str) {
        assert!(
            matches!(err, VaultError::TooLarge { what, limit: MAX_ANSWER_BYTES, .. } if what == call),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains(address) && text.contains(call) && text.contains("1048576 bytes"),
            "{text}"
        );
    }

    fn assert_timed_out(err: &VaultError, address: &str, call: &str) {
        assert!(
            matches!(err, VaultError::TimedOut { what, .. } if what == call),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains(address) && text.contains(call) && text.contains("300ms"),
            "{text}"
        );
        assert!(err.is_outage(), "a Vault that does not answer is down");
    }

    #[tokio::test]
    async fn a_login_answered_with_a_huge_body_or_never_is_refused_within_the_bounds() {
        let server = RawVault::start().await;
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "s").unwrap();
        let logins = [
            (
                "auth/approle/login",
                "AppRole login",
                VaultAuth::Approle {
                    mount: "approle".into(),
                    role_id: "warden".into(),
                    secret_id: BootstrapSecret::File(secret.clone()),
                },
            ),
            (
                "auth/kubernetes/login",
                "Kubernetes login",
                VaultAuth::Kubernetes {
                    mount: "kubernetes".into(),
                    role: "warden".into(),
                    jwt_path: secret.clone(),
                },
            ),
            (
                "auth/jwt/login",
                "JWT login",
                VaultAuth::Jwt {
                    mount: "jwt".into(),
                    role: None,
                    jwt: BootstrapSecret::File(secret.clone()),
                },
            ),
        ];
        for (path, call, auth) in logins {
            let config = hostile_config(&server.address, auth);
            server.answer(path, Answer::Huge);
            let err = Vault::connect(config.clone()).await.unwrap_err();
            assert_too_large(&err, &server.address, call);
            server.answer(path, Answer::Silent);
            let err = Vault::connect(config.clone()).await.unwrap_err();
            assert_timed_out(&err, &server.address, call);
            // The same server answering as Vault does: logged in.
            server.answer(
                path,
                Answer::Json(json!({"auth": {"client_token": "t", "lease_duration": 60,
                                             "renewable": true}})),
            );
            let vault = Vault::offline(config).unwrap();
            vault.login(0).await.unwrap();
            assert!(vault.is_logged_in());
        }
    }

    #[tokio::test]
    async fn token_lookups_and_renewals_are_bounded_in_size_and_time() {
        let server = RawVault::start().await;
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "t").unwrap();
        let config = hostile_config(
            &server.address,
            VaultAuth::Token {
                token: BootstrapSecret::File(token),
            },
        );
        server.answer(LOOKUP_SELF, Answer::Huge);
        let err = Vault::connect(config.clone()).await.unwrap_err();
        assert_too_large(&err, &server.address, "token lookup");
        server.answer(LOOKUP_SELF, Answer::Silent);
        let err = Vault::connect(config.clone()).await.unwrap_err();
        assert_timed_out(&err, &server.address, "token lookup");

        server.answer(
            LOOKUP_SELF,
            Answer::Json(json!({"data": {"ttl": 3600, "renewable": true}})),
        );
        let vault = Vault::offline(config).unwrap();
        vault.login(0).await.unwrap();
        server.answer("auth/token/renew-self", Answer::Huge);
        let err = vault.renew_token().await.unwrap_err();
        assert_too_large(&err, &server.address, "token renewal");
        server.answer("auth/token/renew-self", Answer::Silent);
        let err = vault.renew_token().await.unwrap_err();
        assert_timed_out(&err, &server.address, "token renewal");
        server.answer(
            "auth/token/renew-self",
            Answer::Json(json!({"auth": {"client_token": "t", "lease_duration": 7200,
                                         "renewable": true}})),
        );
        assert_eq!(
            vault.renew_token().await.unwrap(),
            Duration::from_secs(7200)
        );
    }

    #[tokio::test]
    async fn a_redirect_is_refused_and_the_token_never_leaves_for_where_it_leads() {
        let vault_server = RawVault::start().await;
        let elsewhere = RawVault::start().await;
        // Elsewhere answers as Vault would: a client that followed the redirect would log in.
        elsewhere.answer(
            LOOKUP_SELF,
            Answer::Json(json!({"data": {"ttl": 3600, "renewable": true}})),
        );
        elsewhere.answer(
            "auth/approle/login",
            Answer::Json(json!({"auth": {"client_token": "t", "lease_duration": 60}})),
        );
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret-token").unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "s3cret-id").unwrap();
        let to = |path: &str| Answer::Redirect(format!("{}/v1/{path}", elsewhere.address));
        vault_server.answer(LOOKUP_SELF, to(LOOKUP_SELF));
        vault_server.answer("auth/approle/login", to("auth/approle/login"));
        let logins = [
            (
                VaultAuth::Token {
                    token: BootstrapSecret::File(token),
                },
                "token lookup",
            ),
            (
                VaultAuth::Approle {
                    mount: "approle".into(),
                    role_id: "warden".into(),
                    secret_id: BootstrapSecret::File(secret),
                },
                "AppRole login",
            ),
        ];
        for (auth, call) in logins {
            let config = hostile_config(&vault_server.address, auth);
            let err = Vault::connect(config).await.unwrap_err();
            assert!(
                matches!(&err, VaultError::Refused { what, status, .. }
                    if what == call && *status == StatusCode::TEMPORARY_REDIRECT),
                "{err:?}"
            );
            let text = err.to_string();
            assert!(text.contains("redirect to http://127.0.0.1:"), "{text}");
            assert!(!text.contains("s3cret") && !text.contains("/v1/"), "{text}");
        }
        assert_eq!(
            lock(&vault_server.seen).len(),
            2,
            "both calls reached Vault"
        );
        assert!(
            lock(&vault_server.seen)[0].contains("x-vault-token: s3cret-token"),
            "the token went to Vault"
        );
        assert!(
            lock(&elsewhere.seen).is_empty(),
            "nothing went where the redirect led: {:?}",
            lock(&elsewhere.seen)
        );
    }

    #[test]
    fn an_answer_of_unknown_size_starts_small_and_grows_to_its_bound() {
        let mut answer = Received::new(0);
        assert_eq!(answer.bytes.capacity(), FIRST_ANSWER_BYTES);
        let chunk = vec![b'x'; 10_000];
        let mut written = 0;
        while written + chunk.len() <= MAX_ANSWER_BYTES {
            answer.append(&chunk).unwrap();
            written += chunk.len();
            assert!(answer.bytes.capacity() <= MAX_ANSWER_BYTES);
        }
        assert_eq!(answer.bytes.len(), written);
        assert!(answer.bytes.iter().all(|b| *b == b'x'));
        assert_eq!(answer.append(&chunk), Err(()), "past the bound");
        // As announced: sized once, no byte more.
        let mut announced = Received::new(5);
        assert_eq!(announced.bytes.capacity(), 5);
        announced.append(b"{}").unwrap();
        announced.append(b"   ").unwrap();
        assert_eq!(announced.append(b" "), Err(()));
    }

    /// KV v2 answers a deleted or destroyed version with 404 and its metadata, a version that
    /// does not exist with a bare 404: each is told as what it is, and what to do.
    #[tokio::test]
    async fn a_kv_404_says_deleted_destroyed_or_no_such_version() {
        use axum::http::StatusCode as Status;
        let gone = |version: u64, deleted: &str, destroyed: bool| {
            json!({"data": {"data": null, "metadata": {
                "created_time": "2026-12-07T09:00:00Z", "custom_metadata": null,
                "deletion_time": deleted, "destroyed": destroyed, "version": version}}})
        };
        let deleted = gone(3, "2026-12-07T10:00:00.5Z", false);
        let destroyed = gone(2, "", true);
        let app = axum::Router::new()
            .route(
                "/v1/auth/token/lookup-self",
                get(|| async { Json(json!({"data": {"ttl": 3600, "renewable": false}})) }),
            )
            .route(
                "/v1/secret/data/deleted",
                get(move || async move { (Status::NOT_FOUND, Json(deleted)) }),
            )
            .route(
                "/v1/secret/data/destroyed",
                get(move || async move { (Status::NOT_FOUND, Json(destroyed)) }),
            )
            .route(
                "/v1/secret/data/missing",
                get(|| async { (Status::NOT_FOUND, Json(json!({"errors": []}))) }),
            )
            .route(
                "/v1/secret/data/older-vault",
                get(move || async move { Json(gone(4, "2026-12-07T10:00:00Z", false)) }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "t").unwrap();
        let vault = Vault::connect(config(address, &token)).await.unwrap();
        let refusal = |e: VaultError| match e {
            VaultError::Refused {
                status, message, ..
            } => {
                assert_eq!(status, StatusCode::NOT_FOUND, "{message}");
                message
            }
            other => panic!("{other:?}"),
        };

        let said = refusal(vault.kv("secret", "deleted", None).await.unwrap_err());
        for says in [
            "version 3 of secret/deleted was deleted at 2026-12-07T10:00:00.5Z",
            "`bao kv undelete -versions=3 secret/deleted`",
            "`bao kv put secret/deleted FIELD=VALUE`",
        ] {
            assert!(said.contains(says), "{says:?} not in {said}");
        }
        assert!(!said.contains("no secret at"), "{said}");
        let said = refusal(vault.kv("secret", "deleted", Some(3)).await.unwrap_err());
        assert!(said.contains("pin another"), "{said}");

        let said = refusal(vault.kv("secret", "destroyed", None).await.unwrap_err());
        for says in [
            "version 2 of secret/destroyed is destroyed",
            "`bao kv put secret/destroyed FIELD=VALUE`",
        ] {
            assert!(said.contains(says), "{says:?} not in {said}");
        }
        assert!(!said.contains("undelete"), "{said}");

        let said = refusal(vault.kv("secret", "missing", Some(7)).await.unwrap_err());
        for says in [
            "version 7 of secret/missing does not exist",
            "`bao kv metadata get secret/missing`",
        ] {
            assert!(said.contains(says), "{says:?} not in {said}");
        }
        let said = refusal(vault.kv("secret", "missing", None).await.unwrap_err());
        assert!(said.contains("no secret at secret/missing"), "{said}");

        let said = refusal(vault.kv("secret", "older-vault", None).await.unwrap_err());
        assert!(
            said.contains("version 4 of secret/older-vault was deleted at 2026-12-07T10:00:00Z"),
            "{said}"
        );
        server.abort();
    }

    #[test]
    fn kv_metadata_tells_deleted_from_destroyed_from_present() {
        let meta = |deleted: &str, destroyed: bool| json!({"version": 5, "deletion_time": deleted, "destroyed": destroyed});
        assert_eq!(
            KvGone::from_metadata(&meta("2026-12-07T10:00:00Z", false)),
            Some((
                5,
                KvGone::Deleted {
                    at: "2026-12-07T10:00:00Z".into()
                }
            ))
        );
        // Destroyed after a delete: destroyed is what matters.
        assert_eq!(
            KvGone::from_metadata(&meta("2026-12-07T10:00:00Z", true)),
            Some((5, KvGone::Destroyed))
        );
        assert_eq!(KvGone::from_metadata(&meta("", false)), None);
        assert_eq!(KvGone::from_metadata(&json!(null)), None);
    }
}
