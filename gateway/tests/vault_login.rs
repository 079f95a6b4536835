//! Warden's JWT login to a real OpenBao dev server with access tokens from the suite's
//! OpenID Provider (node `oidc-provider`): OpenBao's JWT auth method trusts the IdP through
//! its discovery document, and a role binds the audience and the subject. (AppRole and token
//! logins are in vault.rs.) Each test starts its own OpenBao.

mod common;

use std::path::{Path, PathBuf};

use common::idp::{ALPHA, BETA, Idp, RESOURCE_OTHER, RESOURCE_WARDEN};
use common::openbao::OpenBao;
use warden::vault::config::{BootstrapSecret, VaultAuth};
use warden::vault::{Vault, VaultConfig, VaultError, VaultStatus};

/// Enables the JWT auth method on `bao`, trusting `idp` (its discovery document), with role
/// `warden` for tokens whose `aud` is `warden` and `sub` is `agent-alpha`, given policy
/// `warden`; the login configuration reading the JWT from `dir/jwt`.
fn jwt_login(bao: &OpenBao, idp: &Idp, dir: &Path) -> (VaultConfig, PathBuf) {
    bao.warden_policy(dir);
    bao.run(&["auth", "enable", "jwt"]);
    bao.run(&[
        "write",
        "auth/jwt/config",
        &format!("oidc_discovery_url={}", idp.issuer()),
        &format!("bound_issuer={}", idp.issuer()),
    ]);
    bao.run(&[
        "write",
        "auth/jwt/role/warden",
        "role_type=jwt",
        "user_claim=sub",
        "bound_audiences=warden",
        &format!("bound_subject={}", ALPHA.0),
        "token_policies=warden",
        "token_ttl=1h",
    ]);
    let file = dir.join("jwt");
    let config = bao.config(VaultAuth::Jwt {
        mount: "jwt".into(),
        role: Some("warden".into()),
        jwt: BootstrapSecret::File(file.clone()),
    });
    (config, file)
}

#[tokio::test]
async fn jwt_login_with_a_token_from_the_idp_reads_kv_secrets() {
    let idp = Idp::shared();
    let bao = OpenBao::start().await;
    let dir = tempfile::tempdir().unwrap();
    bao.run(&["kv", "put", "secret/agents/alpha/github", "token=ghp-alpha"]);
    let (config, file) = jwt_login(&bao, &idp, dir.path());
    std::fs::write(&file, idp.token(ALPHA, RESOURCE_WARDEN).await).unwrap();

    let vault = Vault::connect(config).await.unwrap();
    assert_eq!(vault.status(), VaultStatus::Up);
    let secret = vault
        .kv("secret", "agents/alpha/github", None)
        .await
        .unwrap();
    assert_eq!(secret.data.field("github", "token").unwrap(), "ghp-alpha");
}

#[tokio::test]
async fn jwt_login_refuses_a_token_for_another_subject_or_audience() {
    let idp = Idp::shared();
    let bao = OpenBao::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (config, file) = jwt_login(&bao, &idp, dir.path());

    for (client, resource) in [(BETA, RESOURCE_WARDEN), (ALPHA, RESOURCE_OTHER)] {
        let jwt = idp.token(client, resource).await;
        std::fs::write(&file, &jwt).unwrap();
        let e = Vault::connect(config.clone()).await.unwrap_err();
        assert!(
            matches!(&e, VaultError::Refused { status, .. } if status.is_client_error()),
            "{} for {resource}: {e:?}",
            client.0
        );
        let shown = format!("{e} {e:?}");
        assert!(shown.contains("JWT login"), "{shown}");
        assert!(!shown.contains(&jwt), "the JWT was shown: {shown}");
    }
}

#[tokio::test]
async fn the_jwt_file_is_read_again_at_each_login() {
    let idp = Idp::shared();
    let bao = OpenBao::start().await;
    let dir = tempfile::tempdir().unwrap();
    bao.run(&["kv", "put", "secret/app", "key=v1"]);
    let (config, file) = jwt_login(&bao, &idp, dir.path());
    std::fs::write(&file, idp.token(ALPHA, RESOURCE_WARDEN).await).unwrap();
    let vault = Vault::connect(config).await.unwrap();
    vault.kv("secret", "app", None).await.unwrap();

    // Warden's token revoked and the file holding a token OpenBao refuses: the new login
    // fails, so the file was read again.
    std::fs::write(&file, idp.token(BETA, RESOURCE_WARDEN).await).unwrap();
    bao.run(&["lease", "revoke", "-prefix", "auth/jwt/login"]);
    let e = vault.kv("secret", "app", None).await.unwrap_err();
    assert!(matches!(&e, VaultError::Refused { .. }), "{e:?}");
    assert!(e.to_string().contains("JWT login"), "{e}");
    assert!(
        matches!(vault.status(), VaultStatus::Down(_)),
        "a refused login leaves nothing readable: Vault is down for Warden"
    );

    // A good token in the file again (as a token file rotated by its issuer): the next call
    // logs in with it.
    std::fs::write(&file, idp.token(ALPHA, RESOURCE_WARDEN).await).unwrap();
    let secret = vault.kv("secret", "app", None).await.unwrap();
    assert_eq!(secret.data.field("app", "key").unwrap(), "v1");
}
