//! `/v1/admin/quarantines`: quarantine an agent or a group, release it, list what is in
//! force, over HTTP; the same effect as `warden agents …`, for the operator the policy allows
//! (`admin:quarantine`, `admin:release`, `admin:list`).
//!
//! - `POST /v1/admin/quarantines` `{"agent": "<id>"}` or `{"group": "<name>"}`, with
//!   `"reason"` (shown to the agent) and optionally `"until"` (`"2h"`, an RFC 3339 time):
//!   `201` with the quarantine.
//! - `DELETE /v1/admin/quarantines/{agent}`, `DELETE /v1/admin/quarantines/groups/{group}`:
//!   `200` with the released quarantine, `404` when there was none. The name is a
//!   percent-encoded path segment: any agent id identify produces can be named (control
//!   characters, `/`, up to 16 KiB).
//! - `GET /v1/admin/quarantines`: `200` with the quarantines in force on this replica.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::caller::{authorize, decide};
use super::error::ApiError;
use super::request::{answer, caller_and_body, check_on, list_all, name, reason};
use crate::action::{Resource, Verb};
use crate::fleet::quarantine::until::{parse_until, rfc3339};
use crate::shared::Shared;
use crate::state::pins::now_ms;
use crate::state::quarantine::{QuarantineRecord, Target};

/// `POST /v1/admin/quarantines`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewQuarantine {
    agent: Option<String>,
    group: Option<String>,
    reason: Option<String>,
    until: Option<String>,
}

/// `POST /v1/admin/quarantines`.
pub async fn create(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    answer(create_quarantine(&shared, request).await)
}

/// `DELETE /v1/admin/quarantines/{agent}`.
pub async fn release_agent(
    State(shared): State<Arc<Shared>>,
    Path(agent): Path<String>,
    request: Request,
) -> Response {
    answer(release(&shared, Target::Agent(agent), request).await)
}

/// `DELETE /v1/admin/quarantines/groups/{group}`.
pub async fn release_group(
    State(shared): State<Arc<Shared>>,
    Path(group): Path<String>,
    request: Request,
) -> Response {
    answer(release(&shared, Target::Group(group), request).await)
}

/// `GET /v1/admin/quarantines`.
pub async fn list(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    answer(
        list_all(&shared, request, "quarantines", |shared| {
            shared
                .quarantines
                .list()
                .iter()
                .map(|r| describe(r))
                .collect()
        })
        .await,
    )
}

async fn create_quarantine(
    shared: &Shared,
    request: Request,
) -> Result<(StatusCode, Value), ApiError> {
    let (parts, body) = request.into_parts();
    check_on(shared)?;
    let verb = Verb::AdminQuarantine;
    let shape = r#"{"agent" or "group", "reason", "until"}"#;
    let (caller, new): (_, NewQuarantine) =
        caller_and_body(shared, &parts, body, &verb, shape).await?;
    let target = match (new.agent, new.group) {
        (Some(agent), None) => Target::Agent(name(agent, "agent")?),
        (None, Some(group)) => Target::Group(name(group, "group")?),
        _ => {
            return Err(ApiError::BadRequest(
                "name one agent (\"agent\") or one group (\"group\"), not both".into(),
            ));
        }
    };
    let reason = reason(new.reason, "quarantined by an operator")?;
    let until_ms = new
        .until
        .as_deref()
        .map(parse_until)
        .transpose()
        .map_err(|e| ApiError::BadRequest(format!("\"until\": {e}")))?;
    let operator = decide(shared, caller, verb, resource(&target)).await?;
    let record = QuarantineRecord {
        target,
        reason,
        trigger: "manual".into(),
        by: operator.by(),
        created_ms: now_ms(),
        until_ms,
    };
    shared.quarantines.quarantine(record.clone()).await?;
    Ok(operator.answer(StatusCode::CREATED, "quarantine", describe(&record)))
}

async fn release(
    shared: &Shared,
    target: Target,
    request: Request,
) -> Result<(StatusCode, Value), ApiError> {
    check_on(shared)?;
    let target = match target {
        Target::Agent(agent) => Target::Agent(name(agent, "agent")?),
        Target::Group(group) => Target::Group(name(group, "group")?),
    };
    let (parts, _) = request.into_parts();
    let operator = authorize(shared, &parts, Verb::AdminRelease, resource(&target)).await?;
    match shared.quarantines.release(&target, &operator.by()).await? {
        Some(record) => Ok(operator.answer(StatusCode::OK, "released", describe(&record))),
        None => Err(ApiError::NotFound(format!(
            "{target} is not quarantined; GET /v1/admin/quarantines lists the quarantines"
        ))),
    }
}

/// The Cedar resource of an action on `target`'s quarantine.
fn resource(target: &Target) -> Resource {
    Resource::Quarantine {
        kind: target.kind(),
        name: Arc::from(target.name()),
    }
}

/// A quarantine as the API shows it.
fn describe(record: &QuarantineRecord) -> Value {
    json!({
        "target": { "kind": record.target.kind(), "name": record.target.name() },
        "reason": record.reason,
        "trigger": record.trigger,
        "by": record.by.to_json(),
        "since": rfc3339(record.created_ms),
        "until": record.until_ms.map(rfc3339),
    })
}
