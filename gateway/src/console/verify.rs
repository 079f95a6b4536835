//! Proving it is you before second factors change. A signed-in session alone is not enough
//! to add or remove a factor once the approver has one: whoever holds a stolen session could
//! otherwise enrol their own authenticator and approve with it. The approver first confirms
//! with a factor they already have (a TOTP code, or a passkey assertion bound to this session),
//! which the browser then holds as a sealed cookie (`warden-verified`, path `/factors`, bound
//! to the session, for `console.enrol_within`). An approver with no factor yet enrols on the
//! strength of a recent sign-in alone (trust on first use), and the audit record says which
//! proof each change rested on.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::json;

use super::app::{Console, Peer};
use super::error::{ConsoleError, see_other};
use super::session::{Session, source};
use crate::approval::passkey::ActionBinding;
use crate::approval::sealed::Purpose;
use crate::state::pins::now_ms;
use crate::state::sessions::secret_hash;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The factors an approver can confirm with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsableFactors {
    /// A confirmed authenticator app.
    pub totp: bool,
    /// At least one passkey.
    pub passkeys: bool,
}

/// A passkey ceremony's finish: its id and the browser's credential.
#[derive(Deserialize)]
pub struct CeremonyFinish {
    pub(crate) ceremony: String,
    pub(crate) credential: serde_json::Value,
}

/// The cookie that says the approver proved it is them (sealed, bound to the session).
pub const VERIFIED_COOKIE: &str = "warden-verified";

/// What a change of factors rests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// A recent sign-in, for an approver with no factor yet.
    SignIn,
    /// A code from the approver's authenticator app.
    Totp,
    /// An assertion of one of the approver's passkeys.
    Webauthn,
}

impl Proof {
    /// The proof as the audit log names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Proof::SignIn => "sign_in",
            Proof::Totp => "totp",
            Proof::Webauthn => "webauthn",
        }
    }

    fn parse(text: &str) -> Option<Proof> {
        match text {
            "totp" => Some(Proof::Totp),
            "webauthn" => Some(Proof::Webauthn),
            _ => None,
        }
    }
}

impl Console {
    /// The binding of a passkey assertion that proves it is `session`'s approver: a digest
    /// derived from the session id that is neither the id nor its stored hash (messages may
    /// show it).
    fn verify_binding(session: &Session) -> ActionBinding {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(session.id.as_bytes()).expect("any key length");
        mac.update(b"warden-console-verify");
        ActionBinding {
            approval_id: "factors".into(),
            digest: format!("sha256:{}", hex::encode(mac.finalize().into_bytes())),
            intent: "verify".into(),
        }
    }

    /// The factors `subject` can confirm with: a confirmed authenticator app, passkeys.
    pub(crate) async fn usable_factors(
        &self,
        subject: &str,
    ) -> Result<UsableFactors, ConsoleError> {
        let factors = self.store.factors();
        Ok(UsableFactors {
            totp: factors
                .totp(subject)
                .await?
                .is_some_and(|t| t.confirmed_ms.is_some()),
            passkeys: !factors.webauthn_credentials(subject).await?.is_empty(),
        })
    }

    /// What a change of factors by `session` rests on: a recent sign-in, and a proof with an
    /// existing factor when there is one; refused otherwise.
    pub(crate) async fn proof(
        &self,
        headers: &HeaderMap,
        session: &Session,
    ) -> Result<Proof, ConsoleError> {
        self.fresh(session)?;
        if let Some(proof) = self.verified(headers, session) {
            return Ok(proof);
        }
        let usable = self.usable_factors(&session.record.subject).await?;
        if usable.totp || usable.passkeys {
            Err(ConsoleError::VerifyFirst)
        } else {
            Ok(Proof::SignIn)
        }
    }

    /// The proof the request's cookie holds for `session`, if it holds one still valid.
    pub(crate) fn verified(&self, headers: &HeaderMap, session: &Session) -> Option<Proof> {
        let sealed = super::session::cookie(headers, VERIFIED_COOKIE)
            .and_then(|v| URL_SAFE_NO_PAD.decode(v).ok())?;
        let plain = self
            .sealer
            .open(Purpose::FactorsVerified, &secret_hash(&session.id), &sealed)
            .ok()?;
        let (until, proof) = std::str::from_utf8(&plain).ok()?.split_once(' ')?;
        let until: i64 = until.parse().ok()?;
        (until > now_ms()).then_some(())?;
        Proof::parse(proof)
    }

    /// The cookie that says `session`'s approver proved it is them with `proof`.
    fn verified_cookie(
        &self,
        session: &Session,
        proof: Proof,
    ) -> Result<HeaderValue, ConsoleError> {
        let within = self.config.enrol_within;
        let until = now_ms().saturating_add(i64::try_from(within.as_millis()).unwrap_or(i64::MAX));
        let sealed = self
            .sealer
            .seal(
                Purpose::FactorsVerified,
                &secret_hash(&session.id),
                format!("{until} {}", proof.as_str()).as_bytes(),
            )
            .map_err(|e| ConsoleError::Decide(e.into()))?;
        Ok(self.set_cookie(
            VERIFIED_COOKIE,
            &URL_SAFE_NO_PAD.encode(sealed),
            "/factors",
            within,
        ))
    }

    /// Records that `session`'s approver proved it is them, and the cookie that says so.
    async fn verified_now(
        &self,
        session: &Session,
        proof: Proof,
        source: Option<std::net::IpAddr>,
    ) -> Result<HeaderValue, ConsoleError> {
        let cookie = self.verified_cookie(session, proof)?;
        self.audit(
            Some(&session.record.subject),
            source,
            json!({
                "event": "factors_verified",
                "subject": session.record.subject,
                "factor": proof.as_str(),
            }),
        )
        .await?;
        Ok(cookie)
    }
}

#[derive(Deserialize)]
pub struct VerifyForm {
    csrf: Option<String>,
    code: Option<String>,
}

/// `POST /factors/verify`: a code from the approver's app proves it is them.
pub async fn with_code(
    State(c): State<Arc<Console>>,
    peer: Option<axum::Extension<Peer>>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<VerifyForm>,
) -> Response {
    let session = match c.session(&headers).await {
        Ok(Some(s)) => s,
        Ok(None) => return ConsoleError::SignIn.page(None),
        Err(e) => return e.page(None),
    };
    let result = async {
        c.check_post(&headers, &session, form.csrf.as_deref())?;
        c.fresh(&session)?;
        let code = form.code.as_deref().unwrap_or_default();
        c.checked_code(&session, code, false).await?;
        c.verified_now(&session, Proof::Totp, source(&peer)).await
    }
    .await;
    match result {
        Ok(cookie) => {
            let mut response = see_other("/factors?done=verified");
            response.headers_mut().append(header::SET_COOKIE, cookie);
            response
        }
        Err(e) => {
            c.refused_verification(&session, Proof::Totp, source(&peer), &e);
            c.factors_page(
                &headers,
                &session,
                None,
                Some((&e.to_string(), false)),
                e.status(),
            )
            .await
        }
    }
}

/// `POST /factors/verify/passkey/start`: a WebAuthn challenge bound to this session.
pub async fn passkey_start(
    State(c): State<Arc<Console>>,
    peer: Option<axum::Extension<Peer>>,
    headers: HeaderMap,
) -> Response {
    let session = match c.signed_in(&headers).await {
        Ok(s) => s,
        Err(e) => return e.json(),
    };
    let result = async {
        c.check_post(&headers, &session, None)?;
        c.fresh(&session)?;
        let stored = c.stored_passkeys(&session.record.subject).await?;
        Ok::<_, ConsoleError>(c.passkeys.start_authentication(
            &session.record.subject,
            &stored,
            &Console::verify_binding(&session),
        )?)
    }
    .await;
    if let Err(e) = &result {
        c.refused_verification(&session, Proof::Webauthn, source(&peer), e);
    }
    super::error::ceremony(result)
}

/// `POST /factors/verify/passkey/finish`: the assertion; the proof when it holds.
pub async fn passkey_finish(
    State(c): State<Arc<Console>>,
    peer: Option<axum::Extension<Peer>>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<CeremonyFinish>,
) -> Response {
    let session = match c.signed_in(&headers).await {
        Ok(s) => s,
        Err(e) => return e.json(),
    };
    let result = async {
        c.check_post(&headers, &session, None)?;
        c.fresh(&session)?;
        c.assert_passkey(
            &session,
            &body.ceremony,
            &Console::verify_binding(&session),
            &body.credential,
        )
        .await?;
        c.verified_now(&session, Proof::Webauthn, source(&peer))
            .await
    }
    .await;
    match result {
        Ok(cookie) => {
            let mut response =
                axum::Json(json!({ "redirect": "/factors?done=verified" })).into_response();
            response.headers_mut().append(header::SET_COOKIE, cookie);
            response
        }
        Err(e) => {
            c.refused_verification(&session, Proof::Webauthn, source(&peer), &e);
            e.json()
        }
    }
}

impl Console {
    /// Audits a refused proof.
    fn refused_verification(
        &self,
        session: &Session,
        proof: Proof,
        source: Option<std::net::IpAddr>,
        error: &ConsoleError,
    ) {
        self.audit_detached(
            Some(&session.record.subject),
            source,
            json!({
                "event": "factors_verification_refused",
                "subject": session.record.subject,
                "factor": proof.as_str(),
                "code": error.code(),
                "reason": error.to_string(),
            }),
        );
    }
}
