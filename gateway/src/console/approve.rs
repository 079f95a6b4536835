//! The pending approvals, one approval's page, and deciding it with a second factor: a TOTP
//! code (a form) or a passkey (two JSON calls around the browser's WebAuthn ceremony, the
//! assertion bound to this approval and its action digest).
//!
//! A decision is checked in this order, so that a refused one uses no code up: signed in,
//! same origin and CSRF token, the approval exists and is pending, who the SSO provider says
//! the approver is now (`recheck`), the approver may decide it
//! (`may_decide`), the wrong-code brake (shared by every replica), then the factor. It is written to the audit log
//! (durably) before it is cast; a refused attempt is audited too.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::app::{Console, Peer};
use super::error::{ConsoleError, html, see_other};
use super::pages::{self, Decide};
use super::session::{Session, source, to_login};
use crate::approval::attempts::Person;
use crate::approval::operator::{Approver, OperatorError, cast, checked_code, may_decide};
use crate::approval::passkey::{ActionBinding, PasskeyError};
use crate::state::approvals::{
    ApprovalFilter, ApprovalRecord, ApprovalStatus, SecondFactor, Vote, VoteDecision,
};
use crate::state::pins::now_ms;

impl Console {
    /// The approver a session is, as the rules see them now: with the groups the SSO
    /// provider names at this moment (`console.oidc.recheck_at_vote`), refused when it
    /// cannot say.
    pub(crate) async fn approver_now(&self, session: &Session) -> Result<Approver, ConsoleError> {
        Ok(self
            .recheck
            .approver(
                &self.sso,
                &self.sealer,
                &*self.store.sessions(),
                &session.id,
                &session.record,
            )
            .await?)
    }

    async fn record(&self, id: &str) -> Result<ApprovalRecord, ConsoleError> {
        self.store
            .approvals()
            .get(id)
            .await?
            .ok_or_else(|| ConsoleError::NotFound(id.to_owned()))
    }

    /// Whether `approver` may cast `decision` on `record` now (pending, and the rules allow).
    fn may(
        &self,
        approver: &Approver,
        record: &ApprovalRecord,
        decision: VoteDecision,
        source: Option<IpAddr>,
    ) -> Result<(), ConsoleError> {
        if record.status != ApprovalStatus::Pending {
            return Err(crate::approval::operator::not_pending(record).into());
        }
        if record.expires_ms <= now_ms() {
            return Err(OperatorError::NotPending {
                id: record.id.clone(),
                status: ApprovalStatus::Expired.to_string(),
            }
            .into());
        }
        let policy = self.shared.snapshot.load().policy.clone();
        may_decide(&policy, approver, record, decision, "console", source)?;
        Ok(())
    }

    /// Whether `approver` may see `record` at all: only someone who may decide it (approve or
    /// deny, whatever its status now) reads what an agent asked; others learn only that it
    /// is not theirs to decide.
    fn may_view(
        &self,
        approver: &Approver,
        record: &ApprovalRecord,
        source: Option<IpAddr>,
    ) -> Result<(), ConsoleError> {
        let policy = self.shared.snapshot.load().policy.clone();
        match may_decide(
            &policy,
            approver,
            record,
            VoteDecision::Deny,
            "console",
            source,
        ) {
            Ok(()) | Err(OperatorError::AlreadyVoted { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// What both passkey calls check first: same origin and CSRF token, the decision, the
    /// approval pending and the approver allowed (as the SSO provider names them now); then
    /// the approver's passkeys and what the assertion must be bound to.
    async fn passkey_checks(
        &self,
        headers: &HeaderMap,
        session: &Session,
        id: &str,
        decision: Option<&str>,
        source: Option<IpAddr>,
    ) -> Result<PasskeyChecked, ConsoleError> {
        self.check_post(headers, session, None)?;
        let decision = parse_decision(decision)?;
        let record = self.record(id).await?;
        let approver = self.approver_now(session).await?;
        self.may(&approver, &record, decision, source)?;
        let stored = self.stored_passkeys(&session.record.subject).await?;
        let binding = ActionBinding {
            approval_id: record.id.clone(),
            digest: record.digest.clone(),
            intent: decision.as_str().to_owned(),
        };
        Ok(PasskeyChecked {
            decision,
            record,
            approver,
            stored,
            binding,
        })
    }

    /// Finishes passkey ceremony `ceremony` of `session`'s approver for `binding` with the
    /// browser's `credential`, and stores the passkey's new counter (refused when another use
    /// raced it).
    pub(crate) async fn assert_passkey(
        &self,
        session: &Session,
        ceremony: &str,
        binding: &ActionBinding,
        credential: &Value,
    ) -> Result<(), ConsoleError> {
        let stored = self.stored_passkeys(&session.record.subject).await?;
        self.assert_passkey_of(session, &stored, ceremony, binding, credential)
            .await
    }

    async fn assert_passkey_of(
        &self,
        session: &Session,
        stored: &[crate::approval::passkey::StoredPasskey],
        ceremony: &str,
        binding: &ActionBinding,
        credential: &Value,
    ) -> Result<(), ConsoleError> {
        let subject = &session.record.subject;
        let done = self.passkeys.finish_authentication(
            ceremony,
            subject,
            binding,
            stored,
            &credential.to_string(),
        )?;
        let before = stored
            .iter()
            .find(|p| p.credential_id == done.passkey.credential_id)
            .map_or(0, |p| p.counter);
        let id_bytes = super::factors::credential_bytes(&done.passkey.credential_id)?;
        let used = self
            .store
            .factors()
            .use_webauthn(
                subject,
                &id_bytes,
                done.passkey.json.clone(),
                done.passkey.counter,
            )
            .await?;
        if !used {
            return Err(PasskeyError::CounterNotIncreased {
                stored: before,
                seen: done.passkey.counter,
            }
            .into());
        }
        Ok(())
    }

    /// Checks `code` against the TOTP app of `session`'s approver (confirming an enrolment
    /// with `confirm`), behind the wrong-code brake every replica shares, counted under every
    /// name they go by (the command line counts under the same ones).
    pub(crate) async fn checked_code(
        &self,
        session: &Session,
        code: &str,
        confirm: bool,
    ) -> Result<(), ConsoleError> {
        let person = Person::new(&session.record.subject, &session.record.aliases);
        Ok(checked_code(&self.store, &self.sealer, &person, code, confirm).await?)
    }

    /// Audits a refused attempt to decide.
    fn refused(
        &self,
        session: &Session,
        id: &str,
        factor: Option<SecondFactor>,
        source: Option<IpAddr>,
        error: &ConsoleError,
    ) {
        self.audit_detached(
            Some(&session.record.subject),
            source,
            json!({
                "event": "approval_vote_refused",
                "approval_id": id,
                "approver": session.record.subject,
                "factor": factor.map(SecondFactor::as_str),
                "code": error.code(),
                "reason": error.to_string(),
            }),
        );
    }

    /// Records `session`'s vote on `record` (as `approver`, who the rules allowed), confirmed
    /// with `factor`: audited first.
    async fn vote(
        &self,
        session: &Session,
        approver: &Approver,
        record: &ApprovalRecord,
        decision: VoteDecision,
        factor: SecondFactor,
        source: Option<IpAddr>,
    ) -> Result<ApprovalRecord, ConsoleError> {
        let subject = &session.record.subject;
        self.audit(
            Some(subject),
            source,
            json!({
                "event": "approval_vote",
                "approval_id": record.id,
                "action_digest": record.digest,
                "approver": subject,
                "approver_name": session.record.display_name,
                "approver_groups": approver.groups,
                "groups_confirmed_at_vote": self.recheck.enabled(),
                "decision": decision.as_str(),
                "factor": factor.as_str(),
                "agent": record.principal,
                "action": record.action,
                "resource": record.resource,
                "policy": record.policy,
            }),
        )
        .await?;
        let vote = Vote {
            approver: subject.clone(),
            names: session.record.aliases.clone(),
            decision,
            factor,
            source,
            at_ms: now_ms(),
        };
        match cast(&self.store, &record.id, vote).await {
            Ok(after) => Ok(after),
            Err(e) => {
                let e = ConsoleError::from(e);
                self.audit_detached(
                    Some(subject),
                    source,
                    json!({
                        "event": "approval_vote_void",
                        "approval_id": record.id,
                        "approver": subject,
                        "code": e.code(),
                        "reason": e.to_string(),
                    }),
                );
                Err(e)
            }
        }
    }

    /// What `session` (as `approver`) can do on `record`'s page.
    async fn decide_options(
        &self,
        session: &Session,
        approver: &Approver,
        record: &ApprovalRecord,
        source: Option<IpAddr>,
    ) -> Result<DecideOptions, ConsoleError> {
        let approve = match self.may(approver, record, VoteDecision::Approve, source) {
            Err(ConsoleError::Decide(
                OperatorError::NotPending { .. }
                | OperatorError::AlreadyDecided { .. }
                | OperatorError::Withdrawn { .. },
            )) => {
                return Ok(DecideOptions::Closed);
            }
            Err(ConsoleError::Decide(OperatorError::AlreadyVoted { .. })) => {
                return Ok(DecideOptions::NotAllowed(
                    "you have voted on it already; another approver must add theirs".into(),
                ));
            }
            // Their own agent's action: they may deny it, not approve it.
            Err(ConsoleError::Decide(OperatorError::OwnAgent { .. })) => false,
            Err(e) => return Ok(DecideOptions::NotAllowed(e.to_string())),
            Ok(()) => true,
        };
        if !approve && let Err(e) = self.may(approver, record, VoteDecision::Deny, source) {
            return Ok(DecideOptions::NotAllowed(e.to_string()));
        }
        let usable = self.usable_factors(&session.record.subject).await?;
        Ok(DecideOptions::Allowed {
            totp: usable.totp,
            passkeys: usable.passkeys,
            approve,
        })
    }

    /// `record`'s page for `session` (as `approver`), with `flash` above it.
    async fn detail_page(
        &self,
        session: &Session,
        approver: &Approver,
        source: Option<IpAddr>,
        record: &ApprovalRecord,
        flash: Option<(&str, bool)>,
        status: StatusCode,
    ) -> Response {
        let options = match self.decide_options(session, approver, record, source).await {
            Ok(o) => o,
            Err(e) => return e.page(Some(&session.viewer())),
        };
        let decide = match &options {
            DecideOptions::Closed => Decide::Closed,
            DecideOptions::NotAllowed(why) => Decide::NotAllowed(why),
            DecideOptions::Allowed {
                totp,
                passkeys,
                approve,
            } => Decide::Allowed {
                totp: *totp,
                passkeys: *passkeys,
                approve: *approve,
            },
        };
        let body = pages::detail(record, now_ms(), decide, flash, &session.csrf);
        html(
            status,
            pages::layout(
                &format!("Approval {}", record.id),
                Some(&session.viewer()),
                &body,
            ),
        )
    }
}

/// What the passkey calls' checks found.
struct PasskeyChecked {
    decision: VoteDecision,
    record: ApprovalRecord,
    approver: Approver,
    stored: Vec<crate::approval::passkey::StoredPasskey>,
    binding: ActionBinding,
}

enum DecideOptions {
    Allowed {
        totp: bool,
        passkeys: bool,
        approve: bool,
    },
    NotAllowed(String),
    Closed,
}

#[derive(Deserialize)]
pub struct Done {
    done: Option<String>,
}

/// `GET /approvals`: what waits, oldest first.
pub async fn list(
    State(c): State<Arc<Console>>,
    peer: Option<axum::Extension<Peer>>,
    headers: HeaderMap,
) -> Response {
    let session = match c.session(&headers).await {
        Ok(Some(s)) => s,
        Ok(None) => return to_login("/approvals"),
        Err(e) => return e.page(None),
    };
    let mut records = match c.store.approvals().list(ApprovalFilter::Pending).await {
        Ok(records) => records,
        Err(e) => return ConsoleError::from(e).page(Some(&session.viewer())),
    };
    let approver = match c.approver_now(&session).await {
        Ok(a) => a,
        Err(e) => return e.page(Some(&session.viewer())),
    };
    // Only what this approver may decide: what others' agents ask is not theirs to read.
    records.retain(|r| c.may_view(&approver, r, source(&peer)).is_ok());
    html(
        StatusCode::OK,
        pages::layout(
            "Pending approvals",
            Some(&session.viewer()),
            &pages::list(&records, now_ms(), None),
        ),
    )
}

/// `GET /approvals/{id}`: one approval with its whole context.
pub async fn show(
    State(c): State<Arc<Console>>,
    peer: Option<axum::Extension<Peer>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(done): Query<Done>,
) -> Response {
    let session = match c.session(&headers).await {
        Ok(Some(s)) => s,
        Ok(None) => return to_login(&format!("/approvals/{id}")),
        Err(e) => return e.page(None),
    };
    let record = match c.record(&id).await {
        Ok(r) => r,
        Err(e) => return e.page(Some(&session.viewer())),
    };
    let approver = match c.approver_now(&session).await {
        Ok(a) => a,
        Err(e) => return e.page(Some(&session.viewer())),
    };
    if let Err(e) = c.may_view(&approver, &record, source(&peer)) {
        return e.page(Some(&session.viewer()));
    }
    let flash = done.done.as_deref().and_then(|d| done_message(d, &record));
    c.detail_page(
        &session,
        &approver,
        source(&peer),
        &record,
        flash.as_deref().map(|m| (m, true)),
        StatusCode::OK,
    )
    .await
}

/// What the page says after a vote.
fn done_message(done: &str, record: &ApprovalRecord) -> Option<String> {
    let approvals = record
        .votes
        .iter()
        .filter(|v| v.decision == VoteDecision::Approve)
        .count();
    Some(match (done, record.status) {
        ("approve", ApprovalStatus::Pending) => format!(
            "Your approval is recorded: {approvals} of {} so far; the action waits for the rest.",
            record.required
        ),
        ("approve", _) => {
            "Approved. The agent's request goes on (once, for exactly this action).".into()
        }
        ("deny", _) => "Denied. The agent's request is refused.".into(),
        _ => return None,
    })
}

fn parse_decision(text: Option<&str>) -> Result<VoteDecision, ConsoleError> {
    match text {
        Some("approve") => Ok(VoteDecision::Approve),
        Some("deny") => Ok(VoteDecision::Deny),
        other => Err(ConsoleError::BadRequest(format!(
            "the decision must be approve or deny, not {:?}",
            other.unwrap_or("")
        ))),
    }
}

#[derive(Deserialize)]
pub struct DecideForm {
    csrf: Option<String>,
    decision: Option<String>,
    code: Option<String>,
}

/// `POST /approvals/{id}/decide`: approve or deny with a TOTP code.
pub async fn decide_totp(
    State(c): State<Arc<Console>>,
    peer: Option<axum::Extension<Peer>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    axum::Form(form): axum::Form<DecideForm>,
) -> Response {
    let source = source(&peer);
    let session = match c.session(&headers).await {
        Ok(Some(s)) => s,
        Ok(None) => return ConsoleError::SignIn.page(None),
        Err(e) => return e.page(None),
    };
    let record = match c.record(&id).await {
        Ok(r) => r,
        Err(e) => return e.page(Some(&session.viewer())),
    };
    // Who the SSO provider says they are now, once asked (the page after a refusal too).
    let mut fresh = None;
    let result = async {
        c.check_post(&headers, &session, form.csrf.as_deref())?;
        let decision = parse_decision(form.decision.as_deref())?;
        let approver = fresh.insert(c.approver_now(&session).await?);
        c.may(approver, &record, decision, source)?;
        let code = form.code.as_deref().unwrap_or_default();
        c.checked_code(&session, code, false).await?;
        c.vote(
            &session,
            approver,
            &record,
            decision,
            SecondFactor::Totp,
            source,
        )
        .await
        .map(|_| decision)
    }
    .await;
    match result {
        Ok(decision) => see_other(&format!("/approvals/{id}?done={}", decision.as_str())),
        Err(e) => {
            c.refused(&session, &id, Some(SecondFactor::Totp), source, &e);
            // The page with its context only for who may read it.
            let Some(approver) = fresh.filter(|a| c.may_view(a, &record, source).is_ok()) else {
                return e.page(Some(&session.viewer()));
            };
            let record = c.record(&id).await.unwrap_or(record);
            c.detail_page(
                &session,
                &approver,
                source,
                &record,
                Some((&e.to_string(), false)),
                e.status(),
            )
            .await
        }
    }
}

#[derive(Deserialize)]
pub struct PasskeyStart {
    decision: Option<String>,
}

/// `POST /approvals/{id}/passkey/start`: a WebAuthn challenge for this approval's action.
pub async fn passkey_start(
    State(c): State<Arc<Console>>,
    peer: Option<axum::Extension<Peer>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    axum::Json(body): axum::Json<PasskeyStart>,
) -> Response {
    let source = source(&peer);
    let session = match c.signed_in(&headers).await {
        Ok(s) => s,
        Err(e) => return e.json(),
    };
    let result = async {
        let checked = c
            .passkey_checks(&headers, &session, &id, body.decision.as_deref(), source)
            .await?;
        Ok::<_, ConsoleError>(c.passkeys.start_authentication(
            &session.record.subject,
            &checked.stored,
            &checked.binding,
        )?)
    }
    .await;
    if let Err(e) = &result {
        c.refused(&session, &id, Some(SecondFactor::Webauthn), source, e);
    }
    super::error::ceremony(result)
}

#[derive(Deserialize)]
pub struct PasskeyFinish {
    ceremony: String,
    decision: Option<String>,
    credential: Value,
}

/// `POST /approvals/{id}/passkey/finish`: the browser's assertion; the vote when it holds.
pub async fn passkey_finish(
    State(c): State<Arc<Console>>,
    peer: Option<axum::Extension<Peer>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    axum::Json(body): axum::Json<PasskeyFinish>,
) -> Response {
    let source = source(&peer);
    let session = match c.signed_in(&headers).await {
        Ok(s) => s,
        Err(e) => return e.json(),
    };
    let result = async {
        let checked = c
            .passkey_checks(&headers, &session, &id, body.decision.as_deref(), source)
            .await?;
        c.assert_passkey_of(
            &session,
            &checked.stored,
            &body.ceremony,
            &checked.binding,
            &body.credential,
        )
        .await?;
        let decision = checked.decision;
        c.vote(
            &session,
            &checked.approver,
            &checked.record,
            decision,
            SecondFactor::Webauthn,
            source,
        )
        .await
        .map(|after| (decision, after))
    }
    .await;
    match result {
        Ok((decision, after)) => axum::Json(json!({
            "status": after.status.as_str(),
            "redirect": format!("/approvals/{id}?done={}", decision.as_str()),
        }))
        .into_response(),
        Err(e) => {
            c.refused(&session, &id, Some(SecondFactor::Webauthn), source, &e);
            e.json()
        }
    }
}
