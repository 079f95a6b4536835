//! `/v1/admin/revocations`: revoke Warden agent tokens over HTTP, list the revocations kept;
//! the same effect as `warden token revoke …`, for the operator the policy allows
//! (`admin:revoke`, `admin:list`).
//!
//! - `POST /v1/admin/revocations` `{"token": "<jti>"}` (one token, judged on
//!   `Quarantine::"token/<jti>"`) or `{"agent": "<id>"}` (every token of the agent issued
//!   until now, judged on `Quarantine::"agent/<id>"`), with `"reason"` (shown to the agent):
//!   `201` with the revocation, in force on this replica at once and on the others once
//!   stored; `503 state_unavailable` when the store failed (in force on this replica until
//!   its next read of the store: revoke again).
//! - `GET /v1/admin/revocations`: `200` with the revocations kept, as this replica knows them.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::caller::decide;
use super::error::ApiError;
use super::request::{answer, caller_and_body, check_on, list_all, name, reason};
use crate::action::{Resource, Verb};
use crate::fleet::quarantine::until::rfc3339;
use crate::identity::revocation::revocation;
use crate::shared::Shared;
use crate::state::revocations::{RevocationRecord, Revoked};

/// `POST /v1/admin/revocations`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRevocation {
    token: Option<String>,
    agent: Option<String>,
    reason: Option<String>,
}

/// `POST /v1/admin/revocations`.
pub async fn create(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    answer(create_revocation(&shared, request).await)
}

/// `GET /v1/admin/revocations`.
pub async fn list(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    answer(
        list_all(&shared, request, "revocations", |shared| {
            shared
                .revocations
                .list()
                .iter()
                .map(|r| describe(r))
                .collect()
        })
        .await,
    )
}

async fn create_revocation(
    shared: &Shared,
    request: Request,
) -> Result<(StatusCode, Value), ApiError> {
    let (parts, body) = request.into_parts();
    check_on(shared)?;
    let verb = Verb::AdminRevoke;
    let shape = r#"{"token" or "agent", "reason"}"#;
    let (caller, new): (_, NewRevocation) =
        caller_and_body(shared, &parts, body, &verb, shape).await?;
    let target = match (new.token, new.agent) {
        (Some(id), None) => Revoked::Token(name(id, "token")?),
        (None, Some(agent)) => Revoked::Agent(name(agent, "agent")?),
        _ => {
            return Err(ApiError::BadRequest(
                "name one token (\"token\": its jti) or one agent (\"agent\"), not both".into(),
            ));
        }
    };
    let reason = reason(new.reason, "revoked by an operator")?;
    let resource = Resource::Quarantine {
        kind: target.kind(),
        name: Arc::from(target.name()),
    };
    let operator = decide(shared, caller, verb, resource).await?;
    let record = revocation(target, reason, operator.by());
    shared.revocations.revoke(record.clone()).await?;
    Ok(operator.answer(StatusCode::CREATED, "revocation", describe(&record)))
}

/// A revocation as the API shows it.
fn describe(record: &RevocationRecord) -> Value {
    json!({
        "target": { "kind": record.target.kind(), "name": record.target.name() },
        "reason": record.reason,
        "by": record.by.to_json(),
        "since": rfc3339(record.created_ms),
        "kept_until": rfc3339(record.expires_ms),
    })
}
