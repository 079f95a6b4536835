//! Why an admin API call was refused, answered as JSON:
//! `{"error": {"code": "...", "message": "...", ...}}`.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::fleet::quarantine::QuarantineError;
use crate::identity::AuthError;
use crate::identity::revocation::RevocationError;

/// What a refused admin action was, and why.
#[derive(Debug)]
pub struct Forbidden {
    /// The caller's principal id.
    pub subject: String,
    /// The `admin:*` action.
    pub action: std::borrow::Cow<'static, str>,
    /// The Cedar resource (`Quarantine::"agent/ci-bot"`).
    pub resource: String,
    /// The policy's reasons, joined.
    pub reasons: String,
    /// The determining policies.
    pub policies: Vec<String>,
    /// The decision record's id.
    pub decision_id: String,
}

/// An admin API refusal: each knows its status and stable code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// `admin.api` is off.
    #[error(
        "the admin API is off on this gateway: set `admin.api: true` (docs/fleet.md#admin-api)"
    )]
    Off,
    /// `admin.identity` is not set, so no operator can be recognised (configuration
    /// validation refuses `admin.api` without it; this guards any other way in).
    #[error(
        "the admin API has no operators' identity provider: set admin.identity.issuers \
         (docs/fleet.md#admin-api)"
    )]
    NoOperatorIdentity,
    /// The listener did not say who connected: nothing is decided about an unknown peer.
    #[error("the admin listener did not report the caller's address; nothing was done")]
    PeerUnknown,
    /// No credential, or one that does not verify as an operator's.
    #[error(
        "{0}; the admin API takes an operator's token from an issuer of admin.identity.issuers, \
         minted for its audience, in `Authorization: Bearer`"
    )]
    Unauthenticated(AuthError),
    /// A Warden agent token (`warden token issue`): it names an agent, never an operator.
    #[error(
        "this is a Warden agent token (`warden token issue`, issuer {0:?}): it identifies an \
         agent, never an operator; call the admin API with a token of your identity provider \
         (admin.identity.issuers)"
    )]
    AgentToken(String),
    /// A verified token without the claim that names the operator.
    #[error(
        "the token has no `{0}` claim naming the operator (admin.identity.issuers[].subject_claim)"
    )]
    NoOperatorClaim(std::sync::Arc<str>),
    /// Policy does not permit the caller this admin action.
    #[error(
        "policy does not permit User::{:?} to {} {}: {}",
        .0.subject, .0.action, .0.resource, .0.reasons
    )]
    Forbidden(Box<Forbidden>),
    /// The request is malformed: what, and what to send.
    #[error("{0}")]
    BadRequest(String),
    /// The body did not arrive within `limits.body_timeout`.
    #[error(transparent)]
    Body(crate::protocol::body::BodyError),
    /// What the call names does not exist (no such quarantine).
    #[error("{0}")]
    NotFound(String),
    /// The decision could not be recorded, and the audit log fails closed.
    #[error("the admin action was not taken: its decision could not be recorded ({0})")]
    Audit(String),
    /// The state store failed.
    #[error("{0}")]
    Store(#[from] QuarantineError),
    /// The state store failed to keep a token revocation.
    #[error("{0}")]
    Revocation(#[from] RevocationError),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::Off | ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unauthenticated(e) => e.status(),
            ApiError::AgentToken(_) | ApiError::NoOperatorClaim(_) => StatusCode::UNAUTHORIZED,
            ApiError::NoOperatorIdentity => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::PeerUnknown => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Body(e) => e.status(),
            ApiError::Audit(_) | ApiError::Store(_) | ApiError::Revocation(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// The message with what the caller is not told (the issuers this gateway trusts), for
    /// the log and the audit record.
    pub fn detailed(&self) -> String {
        match self {
            ApiError::Unauthenticated(e) => e.detailed(self.to_string()),
            _ => self.to_string(),
        }
    }

    /// A stable short code for the answer.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Off => "admin_api_off",
            ApiError::Unauthenticated(e) => e.code(),
            ApiError::AgentToken(_) => "agent_token",
            ApiError::NoOperatorClaim(_) => "missing_claim",
            ApiError::NoOperatorIdentity => "admin_identity_missing",
            ApiError::PeerUnknown => "peer_unknown",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Body(e) => e.code(),
            ApiError::NotFound(_) => "not_quarantined",
            ApiError::Audit(_) => "audit_unavailable",
            ApiError::Store(_) | ApiError::Revocation(_) => "state_unavailable",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut error = json!({ "code": self.code(), "message": self.to_string() });
        if let ApiError::Forbidden(refused) = &self {
            error["policies"] = json!(refused.policies);
            error["decision_id"] = json!(refused.decision_id);
        }
        let mut response = (status, Json(json!({ "error": error }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"warden-admin\""),
            );
        }
        response
    }
}
