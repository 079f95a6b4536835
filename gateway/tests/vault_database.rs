//! Database credentials through Warden's Vault client: OpenBao's database secrets engine
//! (`postgresql-database-plugin`) against the PostgreSQL cluster tests/run starts. A leased
//! login is read, works, is renewed and is revoked, each step observed in OpenBao and in
//! PostgreSQL. Each test starts its own OpenBao; all share the one cluster, each with roles
//! of its own.

mod common;

use std::time::{Duration, Instant};

use common::openbao::OpenBao;
use common::postgres::Postgres;
use warden::vault::Vault;

/// Enables the database engine on `bao`, connected to `pg` as its superuser, with role `role`
/// creating login roles whose leases last `default_ttl`, renewable up to `max_ttl`.
fn database_role(bao: &OpenBao, pg: &Postgres, role: &str, default_ttl: &str, max_ttl: &str) {
    bao.run(&["secrets", "enable", "database"]);
    let connection_url = format!(
        "connection_url=postgresql://{{{{username}}}}:{{{{password}}}}@{}/postgres?sslmode=disable",
        pg.host_port()
    );
    bao.run(&[
        "write",
        "database/config/warden-test",
        "plugin_name=postgresql-database-plugin",
        &connection_url,
        &format!("username={}", pg.superuser()),
        &format!("password={}", pg.password()),
        &format!("allowed_roles={role}"),
    ]);
    bao.run(&[
        "write",
        &format!("database/roles/{role}"),
        "db_name=warden-test",
        "creation_statements=CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' \
         VALID UNTIL '{{expiration}}';",
        &format!("default_ttl={default_ttl}"),
        &format!("max_ttl={max_ttl}"),
    ]);
}

/// `bao lease lookup` of `lease_id`: its `data` (`ttl`, `expire_time`, `last_renewal`, ...).
fn lookup(bao: &OpenBao, lease_id: &str) -> serde_json::Value {
    let out = bao.run(&["lease", "lookup", "-format=json", lease_id]);
    let mut answer: serde_json::Value = serde_json::from_str(&out).unwrap();
    answer["data"].take()
}

#[tokio::test]
async fn a_leased_database_login_works_is_renewed_and_is_dropped_when_revoked() {
    let pg = Postgres::from_env();
    let bao = OpenBao::start().await;
    let dir = tempfile::tempdir().unwrap();
    database_role(&bao, &pg, "lease-cycle", "30s", "10m");
    let vault = Vault::connect(bao.approle(dir.path(), "1h")).await.unwrap();

    let path = "database/creds/lease-cycle";
    let secret = vault.read_leased(path).await.unwrap();
    assert!(
        secret.lease_id.starts_with("database/creds/lease-cycle/"),
        "{}",
        secret.lease_id
    );
    assert_eq!(secret.lease_duration, Duration::from_secs(30));
    assert!(secret.renewable);
    let user = secret.data.field(path, "username").unwrap().to_owned();
    let password = secret.data.field(path, "password").unwrap().to_owned();

    // The role exists, may log in, and its password ends with the lease.
    assert!(pg.role_exists(&user), "no role {user} in pg_roles");
    let valid = pg.seconds_valid(&user);
    assert!((20..=40).contains(&valid), "valid for {valid} s");
    assert_eq!(
        pg.query_as(&user, &password, "select current_user")
            .unwrap(),
        user
    );
    let before = lookup(&bao, &secret.lease_id);
    assert!(before["ttl"].as_u64().unwrap() <= 30, "{before}");

    // A renewal extends the lease in OpenBao and the password's validity in PostgreSQL.
    let granted = vault
        .renew_lease(&secret.lease_id, Duration::from_secs(300))
        .await
        .unwrap();
    assert_eq!(granted, Duration::from_secs(300));
    let after = lookup(&bao, &secret.lease_id);
    let ttl = after["ttl"].as_u64().unwrap();
    assert!((240..=300).contains(&ttl), "{after}");
    assert_ne!(before["expire_time"], after["expire_time"]);
    assert!(after["last_renewal"].is_string(), "{after}");
    let valid = pg.seconds_valid(&user);
    assert!(valid >= 240, "valid for {valid} s after the renewal");

    // No renewal outlives max_ttl: an hour asked, what is left of the ten minutes granted.
    let granted = vault
        .renew_lease(&secret.lease_id, Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(
        granted > Duration::from_secs(500) && granted <= Duration::from_secs(600),
        "{granted:?}"
    );

    // Revocation drops the role at once: the lease is gone and the login fails.
    vault.revoke_lease(&secret.lease_id).await.unwrap();
    assert!(!pg.role_exists(&user), "role {user} outlived its lease");
    let refused = pg
        .query_as(&user, &password, "select 1")
        .expect_err("a revoked login still works");
    assert!(
        refused.contains("password authentication failed"),
        "{refused}"
    );
    assert!(
        bao.cli(&["lease", "lookup", &secret.lease_id]).is_err(),
        "the lease outlived its revocation"
    );
}

#[tokio::test]
async fn a_lease_left_to_run_out_ends_its_login() {
    let pg = Postgres::from_env();
    let bao = OpenBao::start().await;
    let dir = tempfile::tempdir().unwrap();
    database_role(&bao, &pg, "run-out", "2s", "2s");
    let vault = Vault::connect(bao.approle(dir.path(), "1h")).await.unwrap();

    let path = "database/creds/run-out";
    let secret = vault.read_leased(path).await.unwrap();
    assert_eq!(secret.lease_duration, Duration::from_secs(2));
    let user = secret.data.field(path, "username").unwrap().to_owned();
    let password = secret.data.field(path, "password").unwrap().to_owned();
    pg.query_as(&user, &password, "select 1").unwrap();

    // OpenBao revokes the lease when it ends, which drops the role.
    let deadline = Instant::now() + Duration::from_secs(30);
    while pg.role_exists(&user) {
        assert!(
            Instant::now() < deadline,
            "role {user} outlived its 2 s lease by 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(pg.query_as(&user, &password, "select 1").is_err());
}
