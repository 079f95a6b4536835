//! What can go wrong in the console, each with its status, its stable code and a message that
//! says what to do; shown as a page or, to the passkey calls, as JSON.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::pages;
use super::recheck::RecheckError;
use super::sso::SsoError;
use crate::approval::attempts::BrakeError;
use crate::approval::operator::OperatorError;
use crate::approval::passkey::PasskeyError;
use crate::state::StateError;

/// Why a console request failed; each knows its status, and its message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("sign in first")]
    SignIn,
    #[error(
        "the form's security token is missing or does not match your session: reload the page \
         and try again"
    )]
    Csrf,
    #[error("the request did not come from the console's own pages")]
    CrossOrigin,
    #[error(transparent)]
    Sso(#[from] SsoError),
    #[error(transparent)]
    Recheck(#[from] RecheckError),
    #[error("{0}")]
    Decide(#[from] OperatorError),
    #[error("the passkey was refused: {0}")]
    Passkey(#[from] PasskeyError),
    #[error("{0}")]
    BadRequest(String),
    #[error("no approval has the id {0:?}: it may have been removed; see the pending list")]
    NotFound(String),
    #[error(
        "changing second factors needs a sign-in within the last {0}: sign out and in again, then \
         retry"
    )]
    NotFresh(String),
    #[error(
        "confirm it is you first, with a code from your authenticator app or your passkey: \
         a factor changes only with one you already have"
    )]
    VerifyFirst,
    #[error("the state store cannot answer ({0}), so nothing was changed: try again shortly")]
    State(#[from] StateError),
    #[error("the audit log cannot record this ({0}), so it was not done: try again shortly")]
    Audit(String),
}

impl ConsoleError {
    /// The HTTP status of this failure.
    pub fn status(&self) -> StatusCode {
        use OperatorError as O;
        match self {
            ConsoleError::SignIn => StatusCode::UNAUTHORIZED,
            ConsoleError::Csrf | ConsoleError::CrossOrigin => StatusCode::FORBIDDEN,
            ConsoleError::Sso(
                SsoError::Discovery { .. } | SsoError::Exchange(_) | SsoError::UserInfo(_),
            ) => StatusCode::BAD_GATEWAY,
            ConsoleError::Sso(SsoError::Config(_)) => StatusCode::INTERNAL_SERVER_ERROR,
            ConsoleError::Sso(SsoError::UnreadableSubject { .. }) => StatusCode::FORBIDDEN,
            ConsoleError::Sso(_) => StatusCode::BAD_REQUEST,
            ConsoleError::Recheck(e) => match e {
                RecheckError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                RecheckError::Refused => StatusCode::FORBIDDEN,
                RecheckError::NoGroupsClaim(_) | RecheckError::NoUserInfo => {
                    StatusCode::BAD_GATEWAY
                }
                RecheckError::NoToken | RecheckError::Expired | RecheckError::Ended => {
                    StatusCode::UNAUTHORIZED
                }
            },
            ConsoleError::Decide(e) => match e {
                O::Unknown(_) => StatusCode::NOT_FOUND,
                O::NotPending { .. }
                | O::AlreadyDecided { .. }
                | O::Withdrawn { .. }
                | O::AlreadyVoted { .. } => StatusCode::CONFLICT,
                O::Brake(BrakeError::TooManyAttempts { .. }) => StatusCode::TOO_MANY_REQUESTS,
                O::State(_) | O::Sealed(_) | O::Brake(BrakeError::Unavailable(_)) => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                _ => StatusCode::FORBIDDEN,
            },
            ConsoleError::Passkey(PasskeyError::Busy) => StatusCode::SERVICE_UNAVAILABLE,
            ConsoleError::Passkey(PasskeyError::UserBusy(_)) => StatusCode::TOO_MANY_REQUESTS,
            ConsoleError::Passkey(PasskeyError::Malformed(_)) => StatusCode::BAD_REQUEST,
            ConsoleError::Passkey(_) => StatusCode::FORBIDDEN,
            ConsoleError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ConsoleError::NotFound(_) => StatusCode::NOT_FOUND,
            ConsoleError::NotFresh(_) | ConsoleError::VerifyFirst => StatusCode::FORBIDDEN,
            ConsoleError::State(_) | ConsoleError::Audit(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A stable code for the audit log and JSON answers.
    pub fn code(&self) -> &'static str {
        use OperatorError as O;
        match self {
            ConsoleError::SignIn => "sign_in",
            ConsoleError::Csrf => "csrf",
            ConsoleError::CrossOrigin => "cross_origin",
            ConsoleError::Sso(SsoError::UnreadableSubject { .. }) => "unreadable_principal",
            ConsoleError::Sso(_) => "sso",
            ConsoleError::Recheck(e) => match e {
                RecheckError::Unavailable(_) => "idp_unavailable",
                RecheckError::Refused => "idp_refused",
                RecheckError::NoGroupsClaim(_) => "idp_no_groups_claim",
                RecheckError::NoUserInfo => "idp_no_userinfo",
                RecheckError::NoToken | RecheckError::Expired => "sign_in_again",
                RecheckError::Ended => "idp_session_ended",
            },
            ConsoleError::Decide(e) => match e {
                O::NotEnrolled(_) => "not_enrolled",
                O::Code(crate::approval::totp::CodeRefused::Replayed { .. }) => "replayed_code",
                O::Code(_) => "wrong_code",
                O::Replayed => "replayed_code",
                O::Brake(BrakeError::TooManyAttempts { .. }) => "too_many_attempts",
                O::Unknown(_) => "unknown_approval",
                O::NotPending { .. } => "not_pending",
                O::AlreadyDecided { .. } => "already_decided",
                O::Withdrawn { .. } => "withdrawn",
                O::AlreadyVoted { .. } => "already_voted",
                O::NotInGroup { .. } => "not_in_group",
                O::OwnAgent { .. } => "own_agent",
                O::Policy { .. } => "policy",
                _ => "unavailable",
            },
            ConsoleError::Passkey(_) => "passkey_refused",
            ConsoleError::BadRequest(_) => "bad_request",
            ConsoleError::NotFound(_) => "unknown_approval",
            ConsoleError::NotFresh(_) => "sign_in_again",
            ConsoleError::VerifyFirst => "verify_first",
            ConsoleError::State(_) => "unavailable",
            ConsoleError::Audit(_) => "audit_unavailable",
        }
    }

    /// The failure as a page.
    pub fn page(&self, viewer: Option<&pages::Viewer<'_>>) -> Response {
        let (title, action) = match self {
            ConsoleError::SignIn | ConsoleError::Sso(_) => {
                ("Sign-in failed", Some(("/login", "Sign in again")))
            }
            ConsoleError::Recheck(RecheckError::Unavailable(_)) => (
                "Could not confirm it is you",
                Some(("/approvals", "Try again")),
            ),
            ConsoleError::Recheck(_) => (
                "Could not confirm it is you",
                Some(("/login", "Sign in again")),
            ),
            ConsoleError::NotFound(_) => ("Not found", Some(("/approvals", "Pending approvals"))),
            _ => (
                "That did not work",
                Some(("/approvals", "Pending approvals")),
            ),
        };
        html(
            self.status(),
            pages::layout(
                title,
                viewer,
                &pages::problem(title, &self.to_string(), action),
            ),
        )
    }

    /// The failure as JSON: `{"error": code, "message": …}`.
    pub fn json(&self) -> Response {
        (
            self.status(),
            axum::Json(serde_json::json!({ "error": self.code(), "message": self.to_string() })),
        )
            .into_response()
    }
}

/// A passkey ceremony's start as the browser takes it (`{ceremony, options}`), or the failure.
pub fn ceremony(started: Result<crate::approval::passkey::Started, ConsoleError>) -> Response {
    match started {
        Ok(started) => axum::Json(
            serde_json::json!({ "ceremony": started.ceremony, "options": started.options }),
        )
        .into_response(),
        Err(e) => e.json(),
    }
}

/// An HTML answer.
pub fn html(status: StatusCode, page: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page,
    )
        .into_response()
}

/// A `303 See Other` to `to`.
pub fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_owned())]).into_response()
}
