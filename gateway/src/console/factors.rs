//! An approver's second factors: enrolling an authenticator app (TOTP, with its QR code; the
//! secret sealed in the state store and shown once) and passkeys (WebAuthn registration), and
//! removing them. Changing factors needs a recent sign-in (`console.enrol_within`) and, once
//! the approver has a factor, proof with it first (`verify`); removing the TOTP app takes a
//! current code of it. Every change is audited with the proof it rested on, before it is
//! made; a change the store then refuses is audited as void.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::json;

use super::app::{Console, Peer};
use super::error::{ConsoleError, html, see_other};
use super::pages::{self, PasskeyRow, TotpState, Verification};
use super::session::{Session, source, to_login};
use super::verify::{CeremonyFinish, Proof};
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

    pub(crate) fn fresh(&self, session: &Session) -> Result<(), ConsoleError> {
        if session.is_fresh(self.config.enrol_within) {
            Ok(())
        } else {
            Err(ConsoleError::NotFresh(
                humantime::format_duration(self.config.enrol_within).to_string(),
            ))
        }
    }

    pub(crate) async fn factors_page(
        &self,
        headers: &HeaderMap,
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
        let verification = Verification::of(
            self.verified(headers, session).is_some(),
            totp.as_ref().is_some_and(|t| t.confirmed_ms.is_some()),
            !keys.is_empty(),
        );
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
            verification,
            flash,
            &session.csrf,
            now_ms(),
        );
        html(
            status,
            pages::layout("Second factors", Some(&session.viewer()), &body),
        )
    }

    /// Records a change of `session`'s factors before it is made (`event`: `factor_enrolled`
    /// or `factor_removed`), with the `proof` it rests on.
    async fn factor_changed(
        &self,
        session: &Session,
        source: Option<std::net::IpAddr>,
        change: Change<'_>,
    ) -> Result<(), ConsoleError> {
        self.audit(
            Some(&session.record.subject),
            source,
            json!({
                "event": change.event,
                "subject": session.record.subject,
                "factor": change.factor,
                "credential_id": change.credential,
                "proof": change.proof.as_str(),
            }),
        )
        .await
    }

    /// Records that a change audited by [`Console::factor_changed`] was not made after all.
    fn factor_change_void(
        &self,
        session: &Session,
        source: Option<std::net::IpAddr>,
        change: Change<'_>,
        error: &ConsoleError,
    ) {
        self.audit_detached(
            Some(&session.record.subject),
            source,
            json!({
                "event": "factor_change_void",
                "change": change.event,
                "subject": session.record.subject,
                "factor": change.factor,
                "credential_id": change.credential,
                "code": error.code(),
                "reason": error.to_string(),
            }),
        );
    }

    /// Makes `change` with `apply`: audited first, audited as void when `apply` fails.
    async fn change<T, F>(
        &self,
        session: &Session,
        source: Option<std::net::IpAddr>,
        change: Change<'_>,
        apply: F,
    ) -> Result<T, ConsoleError>
    where
        F: std::future::Future<Output = Result<T, ConsoleError>>,
    {
        self.factor_changed(session, source, change).await?;
        let done = apply.await;
        if let Err(e) = &done {
            self.factor_change_void(session, source, change, e);
        }
        done
    }
}

/// A change of an approver's factors, as the audit log records it.
#[derive(Debug, Clone, Copy)]
struct Change<'a> {
    event: &'static str,
    factor: &'static str,
    credential: Option<&'a str>,
    proof: Proof,
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
        Some("verified") => Some("Confirmed. You can change your factors for a few minutes."),
        _ => None,
    };
    c.factors_page(
        &headers,
        &session,
        None,
        flash.map(|f| (f, true)),
        StatusCode::OK,
    )
    .await
}

#[derive(Deserialize)]
pub struct CodeForm {
    csrf: Option<String>,
    code: Option<String>,
    credential: Option<String>,
}

/// What a form POST of the factors page must show first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Needs {
    /// Proof with an existing factor (or, with none, a recent sign-in).
    Proof,
    /// A recent sign-in only: the step proves itself (removing the TOTP app with its code).
    SignIn,
}

/// Runs a form POST of the factors page: its checks, then `step` with the proof it rests on;
/// errors shown on the page.
async fn form_post<F, Fut>(
    c: &Arc<Console>,
    headers: &HeaderMap,
    form: &CodeForm,
    needs: Needs,
    step: F,
) -> Response
where
    F: FnOnce(Session, Proof) -> Fut,
    Fut: std::future::Future<Output = (Session, Result<Response, ConsoleError>)>,
{
    let session = match c.session(headers).await {
        Ok(Some(s)) => s,
        Ok(None) => return ConsoleError::SignIn.page(None),
        Err(e) => return e.page(None),
    };
    let checked = async {
        c.check_post(headers, &session, form.csrf.as_deref())?;
        match needs {
            Needs::Proof => c.proof(headers, &session).await,
            Needs::SignIn => c.fresh(&session).map(|()| Proof::Totp),
        }
    }
    .await;
    let proof = match checked {
        Ok(proof) => proof,
        Err(e) => {
            return c
                .factors_page(
                    headers,
                    &session,
                    None,
                    Some((&e.to_string(), false)),
                    e.status(),
                )
                .await;
        }
    };
    let (session, result) = step(session, proof).await;
    match result {
        Ok(response) => response,
        Err(e) => {
            c.factors_page(
                headers,
                &session,
                None,
                Some((&e.to_string(), false)),
                e.status(),
            )
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
    let headers2 = headers.clone();
    form_post(&c, &headers, &form, Needs::Proof, |session, _| async move {
        let c = c2;
        match begin_totp(&c.store, &c.sealer, &session.record.subject).await {
            Ok(enrolment) => {
                let page = c
                    .factors_page(
                        &headers2,
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
    let c2 = c.clone();
    let code = form.code.clone().unwrap_or_default();
    form_post(&c, &headers, &form, Needs::Proof, |session, proof| async move {
        let c = c2;
        let subject = session.record.subject.clone();
        let change = Change {
            event: "factor_enrolled",
            factor: "totp",
            credential: None,
            proof,
        };
        let result = async {
            let enrolled = c.store.factors().totp(&subject).await?;
            if enrolled.is_some_and(|t| t.confirmed_ms.is_some()) {
                return Err(ConsoleError::BadRequest(
                    "your authenticator app is enrolled already; remove it to enrol another"
                        .into(),
                ));
            }
            c.checked_code(&session, &code, true).await?;
            // Confirmed by the code; it counts only once it is recorded.
            if let Err(e) = c.factor_changed(&session, source(&peer), change).await {
                if let Err(gone) = c.store.factors().remove_totp(&subject).await {
                    tracing::warn!(error = %gone, "an unrecorded TOTP enrolment could not be removed");
                }
                return Err(e);
            }
            Ok(see_other("/factors?done=totp"))
        }
        .await;
        (session, result)
    })
    .await
}

/// `POST /factors/totp/remove`: with a current code of the app.
pub async fn totp_remove(
    State(c): State<Arc<Console>>,
    peer: Option<axum::Extension<Peer>>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<CodeForm>,
) -> Response {
    let c2 = c.clone();
    let code = form.code.clone().unwrap_or_default();
    form_post(
        &c,
        &headers,
        &form,
        Needs::SignIn,
        |session, proof| async move {
            let c = c2;
            let subject = session.record.subject.clone();
            let change = Change {
                event: "factor_removed",
                factor: "totp",
                credential: None,
                proof,
            };
            let result = async {
                c.checked_code(&session, &code, false).await?;
                c.change(&session, source(&peer), change, async {
                    Ok(c.store.factors().remove_totp(&subject).await?)
                })
                .await?;
                Ok(see_other("/factors?done=totp-removed"))
            }
            .await;
            (session, result)
        },
    )
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
    form_post(
        &c,
        &headers,
        &form,
        Needs::Proof,
        |session, proof| async move {
            let c = c2;
            let result = async {
                let bytes = credential_bytes(&credential)?;
                let subject = &session.record.subject;
                let theirs = c.store.factors().webauthn_credentials(subject).await?;
                if !theirs.iter().any(|k| k.credential_id == bytes) {
                    return Err(ConsoleError::BadRequest(
                        "you have no passkey with that id".into(),
                    ));
                }
                let change = Change {
                    event: "factor_removed",
                    factor: "webauthn",
                    credential: Some(&credential),
                    proof,
                };
                c.change(&session, source(&peer), change, async {
                    if c.store.factors().remove_webauthn(subject, &bytes).await? {
                        Ok(())
                    } else {
                        Err(ConsoleError::BadRequest(
                            "you have no passkey with that id".into(),
                        ))
                    }
                })
                .await?;
                Ok(see_other("/factors?done=passkey-removed"))
            }
            .await;
            (session, result)
        },
    )
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
        c.proof(&headers, &session).await?;
        let stored = c.stored_passkeys(&session.record.subject).await?;
        let user = PasskeyUser {
            id: session.record.subject.clone(),
            name: session.record.subject.clone(),
            display_name: session.record.display_name.clone(),
        };
        Ok::<_, ConsoleError>(c.passkeys.start_registration(&user, &stored)?)
    }
    .await;
    super::error::ceremony(result)
}

/// `POST /factors/passkeys/finish`: the new passkey, stored.
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
        let proof = c.proof(&headers, &session).await?;
        let subject = &session.record.subject;
        let stored = c.stored_passkeys(subject).await?;
        let new = c.passkeys.finish_registration(
            &body.ceremony,
            subject,
            &stored,
            &body.credential.to_string(),
        )?;
        let bytes = credential_bytes(&new.credential_id)?;
        let change = Change {
            event: "factor_enrolled",
            factor: "webauthn",
            credential: Some(&new.credential_id),
            proof,
        };
        c.change(&session, source(&peer), change, async {
            if c.store
                .factors()
                .add_webauthn(subject, &bytes, new.json.clone(), new.counter)
                .await?
            {
                Ok(())
            } else {
                Err(PasskeyError::AlreadyRegistered.into())
            }
        })
        .await
    }
    .await;
    match result {
        Ok(()) => axum::Json(json!({ "redirect": "/factors?done=passkey" })).into_response(),
        Err(e) => e.json(),
    }
}
