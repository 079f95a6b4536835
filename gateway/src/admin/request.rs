//! What every admin API call reads alike: whether the API is on, its caller and then its JSON
//! body, the names and reasons it carries; how an answer is sent; and the listing of what is
//! kept.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::Request;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::caller::{Caller, Peer, authenticate, authorize};
use super::error::ApiError;
use crate::action::{Resource, Verb};
use crate::protocol::body::{BodyError, read};
use crate::protocol::config::LimitsConfig;
use crate::shared::Shared;

/// The largest request body the API reads: room for the longest agent id a token can carry,
/// each of its characters escaped.
const BODY_MAX: usize = 64 * 1024;
/// The longest agent or group name, in bytes: the longest token Warden reads
/// (`identity`'s 16 KiB), which carries it.
pub const NAME_MAX: usize = 16 * 1024;
/// The longest reason, in bytes.
const REASON_MAX: usize = 1024;

/// The call's answer: its status and JSON body, or the refusal.
pub fn answer(result: Result<(StatusCode, Value), ApiError>) -> Response {
    match result {
        Ok((status, body)) => (status, Json(body)).into_response(),
        Err(error) => error.into_response(),
    }
}

/// Refuses every call while `admin.api` is off.
pub fn check_on(shared: &Shared) -> Result<(), ApiError> {
    if shared.snapshot.load().config.admin.api {
        Ok(())
    } else {
        Err(ApiError::Off)
    }
}

/// The body as `T`, read within `limits.body_timeout` (a body trickled in slower is refused
/// 408 and its connection freed); `shape` says what to send when it is not.
async fn json_body<T: DeserializeOwned>(
    shared: &Shared,
    headers: &HeaderMap,
    body: Body,
    shape: &str,
) -> Result<T, ApiError> {
    let limits = LimitsConfig {
        max_request_bytes: BODY_MAX,
        body_timeout: shared.snapshot.load().config.limits.body_timeout,
        ..LimitsConfig::default()
    };
    let body = read(body, headers, &limits).await.map_err(|e| match e {
        BodyError::Timeout { .. } => ApiError::Body(e),
        _ => ApiError::BadRequest(format!(
            "the body could not be read, or is larger than {BODY_MAX} bytes"
        )),
    })?;
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("the body must be a JSON object {shape}: {e}")))
}

/// The caller of a call with a body, verified as an operator before a byte of the body is
/// read (a caller who is not one is refused and recorded for `verb`), then the body as `T`.
pub async fn caller_and_body<T: DeserializeOwned>(
    shared: &Shared,
    parts: &Parts,
    body: Body,
    verb: &Verb,
    shape: &str,
) -> Result<(Caller, T), ApiError> {
    let peer = parts.extensions.get::<Peer>().copied();
    let caller = authenticate(shared, &parts.headers, peer, verb, None).await?;
    let body = json_body(shared, &parts.headers, body, shape).await?;
    Ok((caller, body))
}

/// An agent's, group's or token's name exactly as sent (in the JSON body, or a path segment
/// percent-decoded): any name identify can produce, control characters and spaces included
/// (an identity provider may name an agent so); not empty, at most [`NAME_MAX`] bytes.
pub fn name(text: String, what: &str) -> Result<String, ApiError> {
    if text.is_empty() || text.len() > NAME_MAX {
        return Err(ApiError::BadRequest(format!(
            "the {what} name must be 1 to {NAME_MAX} bytes, exactly as the audit log records it \
             (an agent: its principal id); in a path, percent-encode it"
        )));
    }
    Ok(text)
}

/// The sentence the agent is told: `given` or `default`, trimmed, 1 to [`REASON_MAX`] bytes.
pub fn reason(given: Option<String>, default: &str) -> Result<String, ApiError> {
    let reason = given.as_deref().unwrap_or(default).trim().to_owned();
    if reason.is_empty() || reason.len() > REASON_MAX {
        return Err(ApiError::BadRequest(format!(
            "\"reason\" must be a sentence of 1 to {REASON_MAX} bytes: the agent is told it"
        )));
    }
    Ok(reason)
}

/// `GET` of every record of a kind (`what`: `quarantines`, `revocations`), for an operator the
/// policy allows `admin:list`: `described` as this replica knows them.
pub async fn list_all(
    shared: &Shared,
    request: Request,
    what: &str,
    described: impl FnOnce(&Shared) -> Vec<Value>,
) -> Result<(StatusCode, Value), ApiError> {
    check_on(shared)?;
    let resource = Resource::Quarantine {
        kind: "all",
        name: Arc::from("*"),
    };
    authorize(shared, &request.into_parts().0, Verb::AdminList, resource).await?;
    let mut body = serde_json::Map::new();
    body.insert(what.to_owned(), Value::Array(described(shared)));
    Ok((StatusCode::OK, Value::Object(body)))
}
