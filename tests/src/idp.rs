//! The real OpenID Provider (`tests/idp/server.mjs`, node `oidc-provider`) and helpers to get
//! and inspect its access tokens.

use anyhow::{Context, bail};
use base64::Engine;
use serde_json::Value;
use std::time::Duration;
use tokio::process::Command;

use crate::paths;
use crate::process::Proc;

/// A client registered at the IdP (client_credentials grant).
#[derive(Debug, Clone, Copy)]
pub struct IdpClient {
    pub id: &'static str,
    pub secret: &'static str,
}

/// Fleet `research`, owner `alice`, environment `dev`, groups `[researchers]`.
pub const ALPHA: IdpClient = IdpClient {
    id: "agent-alpha",
    secret: "alpha-secret-for-tests-only",
};

/// Fleet `payments`, owner `bob`, environment `prod`, groups `[payments, pci]`.
pub const BETA: IdpClient = IdpClient {
    id: "agent-beta",
    secret: "beta-secret-for-tests-only",
};

/// The default resource: `aud` = the IdP's audience (`warden`), one hour.
pub const RESOURCE_WARDEN: &str = "urn:warden";
/// Same audience, one-second lifetime.
pub const RESOURCE_SHORT: &str = "urn:warden:short";
/// Audience `other-api`.
pub const RESOURCE_OTHER: &str = "urn:other";

/// Attack tokens the IdP can forge (see `tests/idp/server.mjs`).
#[derive(Debug, Clone, Copy)]
pub enum Forgery {
    /// `alg: none`, empty signature.
    AlgNone,
    /// HS256 with the RSA public key's PEM as the HMAC secret.
    Hs256WithPublicKey,
    /// RS256 with a fresh key whose `kid` is in no JWKS.
    UnpublishedKey,
}

/// A running (or shared) IdP.
#[derive(Debug)]
pub struct Idp {
    issuer: String,
    proc: Option<Proc>,
    http: reqwest::Client,
}

impl Idp {
    /// Starts a private IdP on a free port.
    pub async fn start() -> anyhow::Result<Idp> {
        Idp::start_with(&[]).await
    }

    /// Starts a private IdP with extra environment (`IDP_AUDIENCE`, `IDP_CLIENTS`).
    pub async fn start_with(env: &[(&str, &str)]) -> anyhow::Result<Idp> {
        let script = paths::idp_server();
        let modules = paths::tests_dir().join("idp/node_modules/oidc-provider");
        if !modules.is_dir() {
            bail!(
                "{} is missing: run tests/run (it runs `npm ci` in tests/idp)",
                modules.display()
            );
        }
        // Node starts slowly on a busy 2-core machine running the suite in parallel, and once
        // in a great many starts it printed nothing at all (seen in this project's full runs): a
        // start that says nothing for 30 s is killed and tried once more.
        let mut earlier = String::new();
        let mut attempt = 0;
        let (proc, line) = loop {
            attempt += 1;
            let mut cmd = Command::new("node");
            cmd.arg(&script).env("IDP_PORT", "0");
            for (k, v) in env {
                cmd.env(k, v);
            }
            let mut proc = Proc::spawn("idp", cmd)?;
            let wait = Duration::from_secs(if attempt == 1 { 30 } else { 60 });
            match tokio::time::timeout(wait, proc.next_stdout_line()).await {
                Ok(Some(line)) => break (proc, line),
                Ok(None) => bail!(
                    "the IdP exited before it was ready:\n{}{}",
                    earlier,
                    proc.output()
                ),
                Err(_) if attempt == 1 => {
                    earlier = format!(
                        "(a first start printed nothing in {wait:?} and was killed:\n{})\n",
                        proc.output()
                    );
                    proc.kill().await;
                }
                Err(_) => bail!(
                    "the IdP printed no ready line within {wait:?}, twice:\n{}{}",
                    earlier,
                    proc.output()
                ),
            }
        };
        let ready: Value = serde_json::from_str(&line)
            .with_context(|| format!("IdP ready line is not JSON: {line}"))?;
        let issuer = ready["issuer"]
            .as_str()
            .context("IdP ready line has no issuer")?
            .to_owned();
        Ok(Idp {
            issuer,
            proc: Some(proc),
            http: reqwest::Client::new(),
        })
    }

    /// The IdP `tests/run` started (`WARDEN_E2E_IDP_ISSUER`), else a private one. Use a private
    /// one ([`Idp::start`]) in tests that rotate keys.
    pub async fn shared() -> anyhow::Result<Idp> {
        match std::env::var("WARDEN_E2E_IDP_ISSUER") {
            Ok(issuer) if !issuer.is_empty() => Ok(Idp {
                issuer,
                proc: None,
                http: reqwest::Client::new(),
            }),
            _ => Idp::start().await,
        }
    }

    /// Issuer URL (`http://127.0.0.1:PORT`), equal to the tokens' `iss`.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// An access token for `client` from the token endpoint (client_credentials).
    pub async fn token(&self, client: IdpClient) -> anyhow::Result<String> {
        self.token_for(client, RESOURCE_WARDEN).await
    }

    /// An access token for `client` and resource indicator `resource`.
    pub async fn token_for(&self, client: IdpClient, resource: &str) -> anyhow::Result<String> {
        let response = self
            .http
            .post(format!("{}/token", self.issuer))
            .basic_auth(client.id, Some(client.secret))
            .form(&[
                ("grant_type", "client_credentials"),
                ("resource", resource),
                ("scope", "llm"),
            ])
            .timeout(Duration::from_secs(10))
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        if !status.is_success() {
            bail!("token endpoint answered {status}: {body}");
        }
        body["access_token"]
            .as_str()
            .map(str::to_owned)
            .context("token response has no access_token")
    }

    /// Adds a new signing key and signs with it from now on; `publish` puts it in the JWKS.
    /// Returns its `kid`.
    pub async fn rotate(&self, publish: bool) -> anyhow::Result<String> {
        let url = format!("{}/admin/rotate?publish={publish}", self.issuer);
        let body: Value = self
            .http
            .post(url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        body["kid"]
            .as_str()
            .map(str::to_owned)
            .context("rotate answered no kid")
    }

    /// Publishes every key generated so far in the JWKS.
    pub async fn publish(&self) -> anyhow::Result<()> {
        self.admin("publish", &[]).await
    }

    /// A token shaped like a Kubernetes projected service-account token for service account
    /// `serviceaccount` in `namespace`, mounted in `pod`, for `audience` (see
    /// `tests/idp/server.mjs`): `sub` is `system:serviceaccount:<namespace>:<serviceaccount>`.
    pub async fn kubernetes_token(
        &self,
        namespace: &str,
        serviceaccount: &str,
        pod: &str,
        audience: &str,
    ) -> anyhow::Result<String> {
        self.admin_token(
            "kubernetes-token",
            &[
                ("namespace", namespace),
                ("serviceaccount", serviceaccount),
                ("pod", pod),
                ("audience", audience),
            ],
        )
        .await
    }

    /// The JWT access token person `login` (one of the IdP's users: alice, bob, dave in
    /// `sre`, carol in `finance`) gets for `audience` after signing in: `sub` the login, with
    /// the person's `groups`, `email` and `preferred_username` (see `tests/idp/server.mjs`).
    pub async fn person_token(&self, login: &str, audience: &str) -> anyhow::Result<String> {
        self.admin_token("person-token", &[("login", login), ("audience", audience)])
            .await
    }

    /// The token `POST /admin/<endpoint>?<query>` answers.
    async fn admin_token(&self, endpoint: &str, query: &[(&str, &str)]) -> anyhow::Result<String> {
        let body: Value = self
            .http
            .post(format!("{}/admin/{endpoint}", self.issuer))
            .query(query)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        body["token"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("{endpoint} answered no token"))
    }

    /// An attack token carrying the same claims a real token for `client` has.
    pub async fn forge(&self, forgery: Forgery, client: IdpClient) -> anyhow::Result<String> {
        let mode = match forgery {
            Forgery::AlgNone => "none",
            Forgery::Hs256WithPublicKey => "hs256-public-key",
            Forgery::UnpublishedKey => "unpublished-key",
        };
        self.admin_token("forge", &[("mode", mode), ("client", client.id)])
            .await
    }

    /// Gives person `login` the groups `groups` from now on (their ID tokens, access tokens
    /// and userinfo answers say so).
    pub async fn set_groups(&self, login: &str, groups: &[&str]) -> anyhow::Result<()> {
        self.admin("person", &[("login", login), ("groups", &groups.join(","))])
            .await
    }

    /// Disables (or enables again) person `login`'s account: disabled, it cannot sign in and
    /// the userinfo endpoint refuses its access tokens (401).
    pub async fn set_disabled(&self, login: &str, disabled: bool) -> anyhow::Result<()> {
        let disabled = if disabled { "true" } else { "false" };
        self.admin("person", &[("login", login), ("disabled", disabled)])
            .await
    }

    /// Makes the userinfo endpoint answer 503 (`fail`) or work again.
    pub async fn fail_userinfo(&self, fail: bool) -> anyhow::Result<()> {
        let fail = if fail { "true" } else { "false" };
        self.admin("userinfo", &[("fail", fail)]).await
    }

    /// Makes the token endpoint answer 503 (`fail`) or work again.
    pub async fn fail_token(&self, fail: bool) -> anyhow::Result<()> {
        let fail = if fail { "true" } else { "false" };
        self.admin("token", &[("fail", fail)]).await
    }

    /// Revokes every access token the console's client holds for person `login` (their
    /// refresh tokens still renew them): how many were revoked.
    pub async fn revoke_access_tokens(&self, login: &str) -> anyhow::Result<u64> {
        let request = self
            .http
            .post(format!("{}/admin/revoke-access-tokens", self.issuer))
            .query(&[("login", login)]);
        count(request, "revoked").await
    }

    /// How many refresh_token grants the token endpoint has answered with new tokens.
    pub async fn refreshes(&self) -> anyhow::Result<u64> {
        let request = self.http.get(format!("{}/admin/refreshes", self.issuer));
        count(request, "refreshes").await
    }

    /// `POST /admin/<endpoint>?<query>`, refused unless it succeeds.
    async fn admin(&self, endpoint: &str, query: &[(&str, &str)]) -> anyhow::Result<()> {
        self.http
            .post(format!("{}/admin/{endpoint}", self.issuer))
            .query(query)
            .send()
            .await?
            .error_for_status()
            .with_context(|| format!("IdP admin endpoint {endpoint}"))?;
        Ok(())
    }

    /// What the IdP printed (empty for a shared one).
    pub fn output(&self) -> String {
        self.proc.as_ref().map(Proc::output).unwrap_or_default()
    }
}

fn jwt_part(token: &str, index: usize) -> anyhow::Result<Value> {
    let part = token
        .split('.')
        .nth(index)
        .context("not a JWT: too few parts")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .context("JWT part is not base64url")?;
    serde_json::from_slice(&bytes).context("JWT part is not JSON")
}

/// The number `key` of the JSON answer to the admin `request`.
async fn count(request: reqwest::RequestBuilder, key: &str) -> anyhow::Result<u64> {
    let body: Value = request
        .timeout(Duration::from_secs(10))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    body[key]
        .as_u64()
        .with_context(|| format!("the IdP's {key:?} is not a number: {body}"))
}

/// The JOSE header of a JWT, unverified.
pub fn jwt_header(token: &str) -> anyhow::Result<Value> {
    jwt_part(token, 0)
}

/// The claims of a JWT, unverified.
pub fn jwt_claims(token: &str) -> anyhow::Result<Value> {
    jwt_part(token, 1)
}
