//! The OpenID Provider of the test suite (`tests/idp/server.mjs`, node `oidc-provider`): the
//! one `tests/run` started (`WARDEN_E2E_IDP_ISSUER`), else one of this test's own, as the
//! end-to-end tests do (`tests/src/idp.rs`). Its clients get JWT access tokens with the
//! client_credentials grant.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Client `agent-alpha` of the IdP's built-in clients: its tokens' `sub` and `client_id`.
pub const ALPHA: (&str, &str) = ("agent-alpha", "alpha-secret-for-tests-only");
/// Client `agent-beta`.
pub const BETA: (&str, &str) = ("agent-beta", "beta-secret-for-tests-only");
/// The default resource: `aud` = `warden`, one hour.
pub const RESOURCE_WARDEN: &str = "urn:warden";
/// Audience `other-api`, one hour.
pub const RESOURCE_OTHER: &str = "urn:other";

/// A running (or shared) IdP; one of the test's own is stopped when dropped.
pub struct Idp {
    issuer: String,
    child: Option<Child>,
}

impl Idp {
    /// The IdP `tests/run` started, else one of this test's own.
    pub fn shared() -> Idp {
        match std::env::var("WARDEN_E2E_IDP_ISSUER") {
            Ok(issuer) if !issuer.is_empty() => Idp {
                issuer,
                child: None,
            },
            _ => Idp::start(),
        }
    }

    /// Starts an IdP on a free port; waits at most 30 s for its ready line.
    fn start() -> Idp {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/idp");
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "{} has no node_modules: run tests/run (it runs `npm ci` there)",
            dir.display()
        );
        let mut child = Command::new("node")
            .arg(dir.join("server.mjs"))
            .env("IDP_PORT", "0")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start node (tests/run installs it): {e}"));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut idp = Idp {
            issuer: String::new(),
            child: Some(child),
        };
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("the IdP printed no ready line in 30 s"));
        let ready: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("the IdP's ready line {line:?} is not JSON: {e}"));
        idp.issuer = ready["issuer"]
            .as_str()
            .expect("the IdP's ready line has no issuer")
            .to_owned();
        idp
    }

    /// Issuer URL (`http://127.0.0.1:PORT`), the tokens' `iss`.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// An access token (a JWT) for client `(id, secret)` and resource indicator `resource`.
    pub async fn token(&self, (id, secret): (&str, &str), resource: &str) -> String {
        let response = reqwest::Client::new()
            .post(format!("{}/token", self.issuer))
            .basic_auth(id, Some(secret))
            .form(&[
                ("grant_type", "client_credentials"),
                ("resource", resource),
                ("scope", "llm"),
            ])
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap_or_else(|e| panic!("the IdP's token endpoint: {e}"));
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(
            status.is_success(),
            "token endpoint answered {status}: {body}"
        );
        body["access_token"]
            .as_str()
            .expect("the token answer has no access_token")
            .to_owned()
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
