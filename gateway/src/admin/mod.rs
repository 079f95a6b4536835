//! The admin listener: health, readiness, metrics and Warden's token-signing keys; with
//! `admin.api`, the admin API (`/v1/admin/…`), whose calls are authenticated like agents'
//! and authorised by Cedar's `admin:*` actions (`caller.rs`).

pub mod caller;
pub mod config;
pub mod error;
pub mod operators;
mod quarantines;
mod request;
mod revocations;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use std::sync::Arc;

use crate::shared::Shared;

/// The admin listener's routes.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/.well-known/warden-audit-keys.json", get(audit_keys))
        .route(
            "/v1/admin/quarantines",
            get(quarantines::list).post(quarantines::create),
        )
        .route(
            "/v1/admin/quarantines/{agent}",
            delete(quarantines::release_agent),
        )
        .route(
            "/v1/admin/revocations",
            get(revocations::list).post(revocations::create),
        )
        .route(
            "/v1/admin/quarantines/groups/{group}",
            delete(quarantines::release_group),
        )
        .with_state(shared)
}

/// Liveness: the process answers.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: configuration, policies and the audit log are loaded, the gateway is not
/// shutting down, and, with `audit.fail_closed`, the audit log can be written (else every
/// request would be refused: a load balancer should send agents to another replica). Every
/// answer ends with the build (`version:`, `commit:`), so a rollout can be followed per replica.
async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    let (status, text) = readiness(&shared);
    let build = format!(
        "version: {}\ncommit: {}\n",
        crate::build_info::VERSION,
        crate::build_info::COMMIT
    );
    (status, format!("{text}{build}")).into_response()
}

/// The readiness status and what it says before the build lines.
fn readiness(shared: &Shared) -> (StatusCode, String) {
    if !shared.is_ready() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: starting or shutting down\n".to_owned(),
        );
    }
    if !shared.audit.is_writable() && shared.snapshot.load().config.audit.fail_closed {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the audit log cannot be written, so requests are refused \
             (audit.fail_closed); see the process log\n"
                .to_owned(),
        );
    }
    if shared.audit.is_full() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the audit log is full (audit.retention.max_bytes) and a SIEM sink has \
             not received its oldest segments, so decisions are refused; see the process log\n"
                .to_owned(),
        );
    }
    let version = Arc::clone(shared.snapshot.load().policy.version());
    (
        StatusCode::OK,
        format!("ready\npolicy_version: {version}\n"),
    )
}

/// Prometheus text exposition.
async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        shared.metrics.render(),
    )
        .into_response()
}

/// The public keys of Warden's own agent tokens (JWK Set), for services that verify them.
async fn jwks(State(shared): State<Arc<Shared>>) -> Response {
    match shared.snapshot.load().identity.token_issuer() {
        Some(issuer) => axum::Json(issuer.jwks()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "Warden's token issuer is disabled (identity.warden_issuer.enabled)\n",
        )
            .into_response(),
    }
}

/// The public key of the audit log's checkpoints and decision receipts (JWK Set), for
/// `warden audit verify --jwks` and `warden receipt verify --jwks`. Kept apart from the agent
/// tokens' keys: a service that trusts those must not trust a receipt as a token.
async fn audit_keys(State(shared): State<Arc<Shared>>) -> Response {
    match shared.audit.signer() {
        Some(signer) => axum::Json(signer.jwks()).into_response(),
        None => (StatusCode::NOT_FOUND, "the audit log is not signed\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditLog;
    use crate::audit::event::{AuditEvent, EventKind};
    use crate::audit::faults::Faults;
    use crate::config::Config;
    use crate::snapshot::Snapshot;
    use crate::telemetry::metrics::Metrics;
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};
    use tower::ServiceExt;

    /// A ready gateway on the embedded defaults whose audit log fails when `faults` say so.
    async fn gateway(fail_closed: bool) -> (tempfile::TempDir, Arc<Shared>, Arc<Faults>) {
        gateway_with(|config| config.audit.fail_closed = fail_closed).await
    }

    /// A ready gateway on the embedded defaults changed by `change`.
    async fn gateway_with(
        change: impl FnOnce(&mut Config),
    ) -> (tempfile::TempDir, Arc<Shared>, Arc<Faults>) {
        let tmp = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: tmp.path().to_path_buf(),
            ..Config::default()
        };
        config.policy.dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
        change(&mut config);
        let faults = Arc::new(Faults::default());
        let audit = AuditLog::open_with(
            &tmp.path().join("audit"),
            &config.audit,
            faults.clone(),
            None,
            Vec::new(),
        )
        .unwrap();
        let snapshot = Snapshot::build(config, None).await.unwrap();
        let shared = Shared::new(
            snapshot,
            audit,
            Metrics::new(),
            None,
            crate::telemetry::trace::Traces::off(),
        );
        shared.set_ready(true);
        (tmp, shared, faults)
    }

    async fn readyz(shared: &Arc<Shared>) -> (StatusCode, String) {
        let req = axum::http::Request::get("/readyz")
            .body(axum::body::Body::empty())
            .unwrap();
        let resp = router(shared.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1024).await.unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    fn decision() -> AuditEvent {
        AuditEvent::now(EventKind::Decision)
    }

    #[tokio::test]
    async fn readiness_follows_the_audit_log_when_it_fails_closed() {
        let (_tmp, shared, faults) = gateway(true).await;
        assert_eq!(readyz(&shared).await.0, StatusCode::OK);

        faults.failed_syncs.store(1, Ordering::SeqCst);
        assert!(shared.audit.append(decision()).await.is_err());
        let (status, body) = readyz(&shared).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("audit log cannot be written"), "{body}");

        // No traffic comes (the load balancer took the replica out): the writer retries on
        // its own, and readiness comes back.
        let deadline = Instant::now() + Duration::from_secs(5);
        while readyz(&shared).await.0 != StatusCode::OK {
            assert!(Instant::now() < deadline, "readiness did not come back");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(shared.audit.append(decision()).await.is_ok());

        shared.set_ready(false);
        let (status, body) = readyz(&shared).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("shutting down"), "{body}");
        shared.audit.close().await.unwrap();
    }

    #[tokio::test]
    async fn readiness_names_the_build_whether_ready_or_not() {
        let (_tmp, shared, _faults) = gateway(true).await;
        let build = format!(
            "version: {}\ncommit: {}\n",
            env!("CARGO_PKG_VERSION"),
            crate::build_info::COMMIT
        );
        let (status, body) = readyz(&shared).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.starts_with("ready\npolicy_version: "), "{body}");
        assert!(body.ends_with(&build), "{body}");
        shared.set_ready(false);
        let (status, body) = readyz(&shared).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body,
            format!("not ready: starting or shutting down\n{build}")
        );
        shared.audit.close().await.unwrap();
    }

    #[tokio::test]
    async fn a_failing_audit_log_does_not_affect_readiness_when_it_fails_open() {
        let (_tmp, shared, faults) = gateway(false).await;
        faults.failed_syncs.store(1, Ordering::SeqCst);
        assert!(shared.audit.append(decision()).await.is_err());
        assert!(!shared.audit.is_writable());
        assert_eq!(readyz(&shared).await.0, StatusCode::OK);
        shared.audit.close().await.unwrap();
    }

    #[tokio::test]
    async fn an_admin_call_whose_peer_is_unknown_is_refused_not_taken_for_loopback() {
        let (_tmp, shared, _faults) = gateway_with(|config| config.admin.api = true).await;
        // The listener inserts the peer; without it, nothing is decided (no loopback assumed).
        let req = axum::http::Request::get("/v1/admin/quarantines")
            .body(axum::body::Body::empty())
            .unwrap();
        let resp = router(shared.clone()).oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(resp.into_body(), 4096).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "peer_unknown", "{body}");
        // With its peer, the same call goes on to authentication.
        let resp = call_from_peer(&shared, axum::http::Request::get("/v1/admin/quarantines")).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        shared.audit.close().await.unwrap();
    }

    /// The answer to the bodiless call `req`, made from 192.0.2.7 as the listener reports it.
    async fn call_from_peer(
        shared: &Arc<Shared>,
        req: axum::http::request::Builder,
    ) -> axum::response::Response {
        let mut req = req.body(axum::body::Body::empty()).unwrap();
        req.extensions_mut()
            .insert(caller::Peer([192, 0, 2, 7].into()));
        router(shared.clone()).oneshot(req).await.unwrap()
    }

    #[tokio::test]
    async fn a_secret_in_a_refused_admin_call_is_not_in_its_record() {
        let (tmp, shared, _faults) = gateway_with(|config| config.admin.api = true).await;
        let key = "AKIAIOSFODNN7EXAMPLE";
        let path = format!("/v1/admin/quarantines/{key}");
        let resp = call_from_peer(&shared, axum::http::Request::delete(path)).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        shared.audit.close().await.unwrap();

        let records = crate::audit::read::Reader::new(&tmp.path().join("audit"))
            .next_batch()
            .unwrap();
        let refused = records
            .iter()
            .map(|r| &r.value)
            .find(|r| r["kind"] == "rejected" && r["route"] == "admin")
            .expect("the refusal's record");
        let text = refused.to_string();
        assert!(!text.contains(key), "the secret is not recorded: {text}");
        assert!(
            refused["resource"]
                .as_str()
                .unwrap()
                .contains("[redacted: "),
            "{text}"
        );
    }
}
