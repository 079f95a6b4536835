//! The approval console: where a human signs in with the company's SSO, reads what an agent
//! waits to do, and approves or denies it with a fresh second factor (TOTP or a passkey)
//! bound to that exact action. Served on its own listener (`console.listen`) when
//! `console.oidc` is set.
//!
//! - `sso`: sign-in (OIDC authorization code + PKCE), the sign-in in flight sealed in a cookie;
//! - `idp_token`: the sign-in's access and refresh tokens at the provider, sealed with the
//!   session;
//! - `refresh`: renewing that access token with the refresh token when it expires, one replica
//!   at a time;
//! - `recheck`: asking the provider again who an approver is before they see or decide;
//! - `session`: the session cookie (only its hash is stored, in the state store shared by
//!   every replica), CSRF tokens, the same-origin check, the security headers on every answer;
//! - `approve`: the pending list, an approval's page, deciding with TOTP or a passkey;
//! - `factors`: enrolling and removing an approver's TOTP app and passkeys;
//! - `verify`: proving it is you with a factor you have before factors change;
//! - `body`: every request's body read whole within `limits.body_timeout` first;
//! - `pages`: the HTML; `assets/`: the one stylesheet and script (no inline script or style).
//!
//! Whoever decides must be allowed by the same rules as on the command line
//! (`approval::operator::may_decide`: the policy's `@approvers` groups, never their own
//! agent's action, Cedar's `approval:decide`), judged with the groups the SSO provider names
//! at that moment (`recheck`) unless `console.oidc.recheck_at_vote` is off. Everything is audited: sign-ins, votes (who,
//! which factor, from which address), refused attempts, enrolments.

pub mod app;
pub mod approve;
mod body;
pub mod config;
pub mod error;
pub mod factors;
pub mod idp_token;
pub mod pages;
mod provider_http;
pub mod recheck;
pub mod refresh;
pub mod session;
pub mod sso;
pub mod verify;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

pub use app::{Console, ConsoleSetupError, Peer};
pub use error::{ConsoleError, html, see_other};

/// The console's routes, security headers on every answer.
pub fn router(console: Arc<Console>) -> Router {
    let https = console.https();
    let reads_bodies = axum::middleware::from_fn_with_state(console.clone(), body::read_whole);
    Router::new()
        .route("/", get(|| async { see_other("/approvals") }))
        .route("/login", get(session::login))
        .route("/auth/callback", get(session::callback))
        .route("/logout", post(session::logout))
        .route("/signed-out", get(session::signed_out))
        .route("/approvals", get(approve::list))
        .route("/approvals/{id}", get(approve::show))
        .route("/approvals/{id}/decide", post(approve::decide_totp))
        .route(
            "/approvals/{id}/passkey/start",
            post(approve::passkey_start),
        )
        .route(
            "/approvals/{id}/passkey/finish",
            post(approve::passkey_finish),
        )
        .route("/factors", get(factors::page))
        .route("/factors/totp", post(factors::totp_begin))
        .route("/factors/totp/confirm", post(factors::totp_confirm))
        .route("/factors/totp/remove", post(factors::totp_remove))
        .route("/factors/passkeys/start", post(factors::passkey_start))
        .route("/factors/passkeys/finish", post(factors::passkey_finish))
        .route("/factors/passkeys/remove", post(factors::passkey_remove))
        .route("/factors/verify", post(verify::with_code))
        .route("/factors/verify/passkey/start", post(verify::passkey_start))
        .route(
            "/factors/verify/passkey/finish",
            post(verify::passkey_finish),
        )
        .route("/assets/console.css", get(css))
        .route("/assets/console.js", get(js))
        .fallback(|| async {
            html(
                StatusCode::NOT_FOUND,
                pages::layout(
                    "Not found",
                    None,
                    &pages::problem(
                        "Not found",
                        "This page does not exist.",
                        Some(("/approvals", "Pending approvals")),
                    ),
                ),
            )
        })
        .with_state(console)
        .layer(reads_bodies)
        .layer(axum::middleware::map_response(
            move |mut response: Response| async move {
                session::secure_headers(response.headers_mut(), https);
                response
            },
        ))
}

async fn css() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("assets/console.css"),
    )
}

async fn js() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("assets/console.js"),
    )
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, kind.parse().expect("static"));
    (StatusCode::OK, headers, body).into_response()
}
