//! An approver's second factors: enrolling an authenticator app (TOTP, with its QR code; the
//! secret sealed in the state store and shown once) and passkeys (WebAuthn registration), and
//! removing them. Changing factors needs a recent sign-in (`console.enrol_within`), and
//! removing the TOTP app a current code; every change is audited.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::{Value, json};

use super::app::{Console, Peer};
use super::error::{ConsoleError, html, see_other};
use super::pages::{self, PasskeyRow, TotpState};
use super::session::{Session, source, to_login};
use crate::approval::operator::begin_totp;
use crate::approval::passkey::{PasskeyError, PasskeyUser, StoredPasskey};
use crate::state::pins::now_ms;

/// A credential id's bytes from its base64url text.
pub fn credential_bytes(id: &str) -> Result<Vec<u8>, ConsoleError> {
    URL_SAFE_NO_PAD
        .decode(id)
        .map_err(|_| ConsoleError::BadRequest(format!("{id:?} is not a passkey's credential id")))
}

impl Console {
    /// `subject`'s passkeys as the passkey module takes them.
    pub(crate) async fn stored_passkeys(
        &self,
        subject: &str,
    ) -> Result<Vec<StoredPasskey>, ConsoleError> {
        Ok(self
            .store
            .factors()
            .webauthn_credentials(subject)
            .await?
            .into_iter()
            .map(|c| StoredPasskey {
                credential_id: URL_SAFE_NO_PAD.encode(&c.credential_id),
                counter: c.sign_count,
                json: c.passkey,
            })
            .collect())
    }

    fn fresh(&self, session: &Session) -> Result<(), ConsoleError> {
        if session.is_fresh(self.config.enrol_within) {
            Ok(())
        } else {
            Err(ConsoleError::NotFresh(
                humantime::format_duration(self.config.enrol_within).to_string(),
            ))
        }
    }

    async fn factors_page(
        &self,
        session: &Session,
        started: Option<(&str, &str)>,
        flash: Option<(&str, bool)>,
        status: StatusCode,
    ) -> Response {
        let subject = &session.record.subject;
        let factors = self.store.factors();
        let loaded = async {
            let totp = factors.totp(subject).await?;
            let keys = factors.webauthn_credentials(subject).await?;
            Ok::<_, ConsoleError>((totp, keys))
        }
        .await;
        let (totp, keys) = match loaded {
            Ok(l) => l,
            Err(e) => return e.page(Some(&session.viewer())),
        };
        let state = match (started, &totp) {
            (Some((qr_svg, secret)), _) => TotpState::Started { qr_svg, secret },
            (None, Some(t)) if t.confirmed_ms.is_some() => TotpState::Confirmed,
            (None, Some(_)) => TotpState::Unconfirmed,
            (None, None) => TotpState::None,
        };
        let rows: Vec<PasskeyRow> = keys
            .iter()
            .map(|k| PasskeyRow {
                credential_id: URL_SAFE_NO_PAD.encode(&k.credential_id),
                created_ms: k.created_ms,
                last_used_ms: k.last_used_ms,
            })
            .collect();
        let body = pages::factors(
            state,
            &rows,
            session.is_fresh(self.config.enrol_within),
            flash,
            &session.csrf,
            now_ms(),
        );
        html(
            status,
            pages::layout("Second factors", Some(&session.viewer()), &body),
        )
    }

    async fn factor_changed(
        &self,
        session: &Session,
        source: Option<std::net::IpAddr>,
        event: &str,
        factor: &str,
        credential: Option<&str>,
    ) -> Result<(), ConsoleError> {
        self.audit(
            Some(&session.record.subject),
            source,
            json!({
                "event": event,
                "subject": session.record.subject,
                "factor": factor,
                "credential_id": credential,
            }),
        )
        .await
    }
}

#[derive(Deserialize)]
pub struct FactorsQuery {
    done: Option<String>,
}

/// `GET /factors`.
pub async fn page(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Query(q): Query<FactorsQuery>,
) -> Response {
    let session = match c.session(&headers).await {
        Ok(Some(s)) => s,
        Ok(None) => return to_login("/factors"),
        Err(e) => return e.page(None),
    };
    let flash = match q.done.as_deref() {
        Some("totp") => Some("Your authenticator app is enrolled."),
        Some("totp-removed") => Some("Your authenticator app is removed."),
        Some("passkey") => Some("Your passkey is added."),
        Some("passkey-removed") => Some("The passkey is removed."),
        _ => None,
    };
    c.factors_page(&session, None, flash.map(|f| (f, true)), StatusCode::OK)
        .await
}

#[derive(Deserialize)]
pub struct CodeForm {
    csrf: Option<String>,
    code: Option<String>,
    credential: Option<String>,
}

/// Runs a form POST of the factors page: its checks, then `step`; errors shown on the page.
async fn form_post<F, Fut>(
    c: &Arc<Console>,
    headers: &HeaderMap,
    form: &CodeForm,
    step: F,
) -> Response
where
    F: FnOnce(Session) -> Fut,
    Fut: std::future::Future<Output = (Session, Result<Response, ConsoleError>)>,
{
    let session = match c.session(headers).await {
        Ok(Some(s)) => s,
        Ok(None) => return ConsoleError::SignIn.page(None),
        Err(e) => return e.page(None),
    };
    if let Err(e) = c
        .check_post(headers, &session, form.csrf.as_deref())
        .and_then(|()| c.fresh(&session))
    {
        return c
            .factors_page(&session, None, Some((&e.to_string(), false)), e.status())
            .await;
    }
    let (session, result) = step(session).await;
    match result {
        Ok(response) => response,
        Err(e) => {
            c.factors_page(&session, None, Some((&e.to_string(), false)), e.status())
                .await
        }
    }
}

/// `POST /factors/totp`: a new TOTP secret, shown once as a QR code.
pub async fn totp_begin(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<CodeForm>,
) -> Response {
    let c2 = c.clone();
    form_post(&c, &headers, &form, |session| async move {
        let c = c2;
        match begin_totp(&c.store, &c.sealer, &session.record.subject).await {
            Ok(enrolment) => {
                let page = c
                    .factors_page(
                        &session,
                        Some((&enrolment.qr_svg, &enrolment.typed)),
                        None,
                        StatusCode::OK,
                    )
                    .await;
                (session, Ok(page))
            }
            Err(e) => (session, Err(e.into())),
        }
    })
    .await
}

/// `POST /factors/totp/confirm`: the first code proves the app has the secret.
pub async fn totp_confirm(
    State(c): State<Arc<Console>>,
    peer: Option<axum::Extension<Peer>>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<CodeForm>,
) -> Response {
    totp_step(c, source(&peer), headers, form, true).await
}

/// `POST /factors/totp/remove`: with a current code.
pub async fn totp_remove(
    State(c): State<Arc<Console>>,
    peer: Option<axum::Extension<Peer>>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<CodeForm>,
) -> Response {
    totp_step(c, source(&peer), headers, form, false).await
}

/// Confirms (`confirm`) or removes the TOTP app of the signed-in approver, proved by a code.
async fn totp_step(
    c: Arc<Console>,
    source: Option<std::net::IpAddr>,
    headers: HeaderMap,
    form: CodeForm,
    confirm: bool,
) -> Response {
    let c2 = c.clone();
    let code = form.code.clone().unwrap_or_default();
    form_post(&c, &headers, &form, |session| async move {
        let c = c2;
        let subject = session.record.subject.clone();
        let result = async {
            c.checked_code(&subject, &code, confirm).await?;
            let event = if confirm {
                "factor_enrolled"
            } else {
                "factor_removed"
            };
            c.factor_changed(&session, source, event, "totp", None)
                .await?;
            if confirm {
                return Ok(see_other("/factors?done=totp"));
            }
            c.store.factors().remove_totp(&subject).await?;
            Ok(see_other("/factors?done=totp-removed"))
        }
        .await;
        (session, result)
    })
    .await
}

/// `POST /factors/passkeys/remove`.
pub async fn passkey_remove(
    State(c): State<Arc<Console>>,
    peer: Option<axum::Extension<Peer>>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<CodeForm>,
) -> Response {
    let c2 = c.clone();
    let credential = form.credential.clone().unwrap_or_default();
    form_post(&c, &headers, &form, |session| async move {
        let c = c2;
        let result = async {
            let bytes = credential_bytes(&credential)?;
            c.factor_changed(
                &session,
                source(&peer),
                "factor_removed",
                "webauthn",
                Some(&credential),
            )
            .await?;
            if !c
                .store
                .factors()
                .remove_webauthn(&session.record.subject, &bytes)
                .await?
            {
                return Err(ConsoleError::BadRequest(
                    "you have no passkey with that id".into(),
                ));
            }
            Ok(see_other("/factors?done=passkey-removed"))
        }
        .await;
        (session, result)
    })
    .await
}

/// `POST /factors/passkeys/start`: a WebAuthn registration for the signed-in approver.
pub async fn passkey_start(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let session = match c.signed_in(&headers).await {
        Ok(s) => s,
        Err(e) => return e.json(),
    };
    let result = async {
        c.check_post(&headers, &session, None)?;
        c.fresh(&session)?;
        let stored = c.stored_passkeys(&session.record.subject).await?;
        let user = PasskeyUser {
            id: session.record.subject.clone(),
            name: session.record.subject.clone(),
            display_name: session.record.display_name.clone(),
        };
        Ok::<_, ConsoleError>(c.passkeys.start_registration(&user, &stored)?)
    }
    .await;
    match result {
        Ok(started) => {
            axum::Json(json!({ "ceremony": started.ceremony, "options": started.options }))
                .into_response()
        }
        Err(e) => e.json(),
    }
}

#[derive(Deserialize)]
pub struct RegisterFinish {
    ceremony: String,
    credential: Value,
}

/// `POST /factors/passkeys/finish`: the new passkey, stored.
pub async fn passkey_finish(
    State(c): State<Arc<Console>>,
    peer: Option<axum::Extension<Peer>>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<RegisterFinish>,
) -> Response {
    let session = match c.signed_in(&headers).await {
        Ok(s) => s,
        Err(e) => return e.json(),
    };
    let result = async {
        c.check_post(&headers, &session, None)?;
        c.fresh(&session)?;
        let subject = &session.record.subject;
        let stored = c.stored_passkeys(subject).await?;
        let new = c.passkeys.finish_registration(
            &body.ceremony,
            subject,
            &stored,
            &body.credential.to_string(),
        )?;
        let bytes = credential_bytes(&new.credential_id)?;
        c.factor_changed(
            &session,
            source(&peer),
            "factor_enrolled",
            "webauthn",
            Some(&new.credential_id),
        )
        .await?;
        if !c
            .store
            .factors()
            .add_webauthn(subject, &bytes, new.json.clone(), new.counter)
            .await?
        {
            return Err(PasskeyError::AlreadyRegistered.into());
        }
        Ok::<(), ConsoleError>(())
    }
    .await;
    match result {
        Ok(()) => axum::Json(json!({ "redirect": "/factors?done=passkey" })).into_response(),
        Err(e) => e.json(),
    }
}
