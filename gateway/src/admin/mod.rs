//! The admin listener: health, readiness, metrics and Warden's token-signing keys.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;

use crate::gateway::Gateway;

/// The admin API.
pub fn router(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/.well-known/jwks.json", get(jwks))
        .with_state(gw)
}

/// Liveness: the process answers.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: configuration, policies and the audit log are loaded and the gateway is not
/// shutting down.
async fn readyz(State(gw): State<Arc<Gateway>>) -> Response {
    if gw.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

/// Prometheus text exposition.
async fn metrics(State(gw): State<Arc<Gateway>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        gw.metrics.render(),
    )
        .into_response()
}

/// The public keys of Warden's own agent tokens (JWK Set), for services that verify them.
async fn jwks(State(gw): State<Arc<Gateway>>) -> Response {
    match gw.runtime.load().identity.token_issuer() {
        Some(issuer) => axum::Json(issuer.jwks()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "Warden's token issuer is disabled (identity.warden_issuer.enabled)\n",
        )
            .into_response(),
    }
}
