//! Canary tokens, on both backends.

use super::Backend;
use crate::state::canaries::CanaryRecord;

on_both_backends!(issued_canaries_are_listed_by_every_replica_until_revoked,);

fn canary(id: &str, created_ms: i64) -> CanaryRecord {
    CanaryRecord {
        id: id.into(),
        kind: "aws-key".into(),
        label: "ci runner env".into(),
        needles: vec!["AKIAEXAMPLECANARY234".into(), "secret/part".into()],
        created_ms,
        revoked_ms: None,
    }
}

async fn issued_canaries_are_listed_by_every_replica_until_revoked(backend: Backend) {
    let issuer = backend.open().await.canaries();
    issuer.issue(canary("cn_b", 2)).await.unwrap();
    issuer.issue(canary("cn_a", 1)).await.unwrap();
    let replica = backend.open().await.canaries();
    let listed = replica.list().await.unwrap();
    assert_eq!(listed, [canary("cn_a", 1), canary("cn_b", 2)]);
    assert!(
        issuer.issue(canary("cn_a", 3)).await.is_err(),
        "ids are unique"
    );
    assert!(replica.revoke("cn_a").await.unwrap());
    assert!(!replica.revoke("cn_a").await.unwrap(), "already revoked");
    assert!(!replica.revoke("cn_zz").await.unwrap(), "no such canary");
    let listed = issuer.list().await.unwrap();
    assert!(listed[0].revoked_ms.is_some() && listed[1].revoked_ms.is_none());
}
