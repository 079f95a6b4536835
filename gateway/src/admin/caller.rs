//! Who calls the admin API and whether they may: the caller's token verified as an
//! operator's (`admin.identity`: its own issuers and audiences, never an agent's token, see
//! `operators.rs`), the caller judged as a Cedar `User` (the operator's claim) with its issuer
//! as `principal.issuer` and its token's groups as `Group`s, the admin action
//! (`admin:quarantine`, `admin:release`, `admin:list`) decided by the loaded policies, and the
//! decision recorded in the audit log before anything is done. The caller is verified before
//! its request's body is read. A refusal before a decision is recorded as `rejected`
//! (unauthenticated ones folded per source beyond `audit.unauthenticated.per_source`).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

use super::error::{ApiError, Forbidden};
use super::operators::is_wardens_own;
use crate::action::{Action, ActionContext, Principal, PrincipalKind, Resource, Verb};
use crate::audit::event::{AuditEvent, AuditPrincipal, EventKind, Text};
use crate::decision::Decision;
use crate::identity::{AuthError, credential_from_headers};
use crate::scrubbed::{self, Scrubbing};
use crate::shared::Shared;
use crate::snapshot::Snapshot;
use crate::state::quarantine::Actor;
use crate::text::{FIELD_MAX, bounded};

/// The route name admin records carry.
const ROUTE: &str = "admin";

/// An operator the policy allowed one admin action.
#[derive(Debug)]
pub struct Operator {
    /// The operator's principal id (its token's subject, or the configured claim).
    pub subject: Arc<str>,
    /// The issuer that vouched for it.
    pub issuer: Arc<str>,
    /// The id of the decision record that allowed the action.
    pub decision_id: String,
}

impl Operator {
    /// Who did it, as a quarantine record keeps it: the subject of its issuer.
    pub fn by(&self) -> Actor {
        Actor::new(&*self.subject, &*self.issuer)
    }

    /// The answer to the call it was allowed: `status`, with what it did (`what`, as
    /// `described`), who did it and the decision that allowed it.
    pub fn answer(&self, status: StatusCode, what: &str, described: Value) -> (StatusCode, Value) {
        let mut body = serde_json::Map::new();
        body.insert(what.to_owned(), described);
        body.insert("operator".to_owned(), self.by().to_json());
        body.insert("decision_id".to_owned(), self.decision_id.clone().into());
        (status, Value::Object(body))
    }
}

/// What the listener saw of the caller's connection.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub IpAddr);

/// A caller verified as an operator, not yet judged.
#[derive(Debug)]
pub struct Caller {
    principal: Arc<Principal>,
    source_ip: IpAddr,
}

/// Authenticates the caller of `call` (its headers, and the peer the listener saw) and
/// decides `verb` on `resource` for it: the operator when the policy allows, else why not.
/// Recorded either way.
pub async fn authorize(
    shared: &Shared,
    call: &Parts,
    verb: Verb,
    resource: Resource,
) -> Result<Operator, ApiError> {
    let peer = call.extensions.get::<Peer>().copied();
    let caller = authenticate(shared, &call.headers, peer, &verb, Some(&resource)).await?;
    decide(shared, caller, verb, resource).await
}

/// Verifies the caller of `headers` as an operator, before anything else of the request is
/// read (its body included); a caller who is not one is refused and recorded `rejected` for
/// `verb` (on `resource` when it is known before the body is read).
pub async fn authenticate(
    shared: &Shared,
    headers: &HeaderMap,
    peer: Option<Peer>,
    verb: &Verb,
    resource: Option<&Resource>,
) -> Result<Caller, ApiError> {
    let snapshot = shared.snapshot.load();
    let identified = match peer {
        Some(Peer(source_ip)) => operator(&snapshot, headers).await.map(|p| (p, source_ip)),
        None => Err(ApiError::PeerUnknown),
    };
    match identified {
        Ok((principal, source_ip)) => Ok(Caller {
            principal,
            source_ip,
        }),
        Err(error) => {
            let mut event = event(EventKind::Rejected, verb, resource, peer.map(|p| p.0));
            let request_id = uuid::Uuid::now_v7().simple().to_string();
            let scrubbing = scrubbing(shared, &snapshot, &request_id);
            event.code = error.code().into();
            // What the caller sent (a token's issuer or claim, the name in the path) is
            // quoted as a refused agent's request is.
            event.reasons = vec![scrubbed::message(
                error.code(),
                &error.detailed(),
                &scrubbing,
            )];
            event.resource = quoted_resource(&event.resource, &scrubbing);
            event.request_id = Arc::from(request_id.as_str());
            shared.audit.append_refusal(event);
            Err(error)
        }
    }
}

/// Decides `verb` on `resource` for `caller`: the operator when the policy allows, else why
/// not; the decision recorded before anything is done.
pub async fn decide(
    shared: &Shared,
    caller: Caller,
    verb: Verb,
    resource: Resource,
) -> Result<Operator, ApiError> {
    let snapshot = shared.snapshot.load();
    let Caller {
        principal,
        source_ip,
    } = caller;
    let action = Action {
        principal: Arc::clone(&principal),
        verb,
        resource,
        context: ActionContext {
            route: Arc::from(ROUTE),
            time: SystemTime::now(),
            source_ip,
            tls: snapshot.config.listen.admin_tls.is_some(),
            client_certificate: None,
            findings: Default::default(),
            facts: Default::default(),
            session: None,
            budget: None,
        },
    };
    let decision = snapshot.policy.decide(&action);
    let decision_id = uuid::Uuid::now_v7().simple().to_string();
    let mut event = event(
        EventKind::Decision,
        &action.verb,
        Some(&action.resource),
        Some(source_ip),
    );
    event.principal = AuditPrincipal {
        kind: PrincipalKind::User.audit_kind().into(),
        id: Arc::clone(&principal.id),
        issuer: Arc::clone(&principal.issuer),
    };
    event.decision_id = Arc::from(decision_id.as_str());
    if !matches!(decision, Decision::Allow { .. }) {
        // A refused caller's record quotes the name it sent as a refused request's does; an
        // allowed action's names exactly what was done.
        let scrubbing = scrubbing(shared, &snapshot, &decision_id);
        event.resource = quoted_resource(&event.resource, &scrubbing);
    }
    event.decision = decision.label().into();
    event.policies = decision.policy_ids();
    event.policy_version = Arc::clone(snapshot.policy.version());
    event.reasons = decision
        .reasons()
        .iter()
        .map(|r| bounded(r, FIELD_MAX).into_owned())
        .collect();
    shared.metrics.decided(decision.label(), &event.policies);
    if let Err(error) = shared.audit.append(event).await {
        tracing::error!(%error, action = %action.verb, "cannot record an admin decision");
        if snapshot.config.audit.fail_closed {
            return Err(ApiError::Audit(error.to_string()));
        }
    }
    match decision {
        Decision::Allow { .. } => Ok(Operator {
            subject: Arc::clone(&principal.id),
            issuer: Arc::clone(&principal.issuer),
            decision_id,
        }),
        other => Err(ApiError::Forbidden(Box::new(Forbidden {
            subject: principal.id.to_string(),
            action: action.verb.label(),
            resource: action.resource.cedar_ref(),
            reasons: match other.reasons().join("; ") {
                reasons if reasons.is_empty() => "no policy permits it".to_owned(),
                reasons => reasons,
            },
            policies: other.policy_ids().iter().map(|p| p.to_string()).collect(),
            decision_id,
        }))),
    }
}

/// The operator the request's token names, as the admin API judges it: verified by the
/// operators' identifier alone, so an agent's token never passes (a Warden agent token is
/// refused as such, an IdP token minted for agents by its audience).
async fn operator(snapshot: &Snapshot, headers: &HeaderMap) -> Result<Arc<Principal>, ApiError> {
    let token = credential_from_headers(headers)
        .ok_or(ApiError::Unauthenticated(AuthError::MissingCredential))?;
    let operators = snapshot
        .operators
        .as_ref()
        .ok_or(ApiError::NoOperatorIdentity)?;
    match operators.identify_token(token, None).await {
        Ok(principal) => Ok(as_user(&principal)),
        Err(AuthError::UntrustedIssuer { issuer, .. })
            if is_wardens_own(issuer.as_str(), &snapshot.config.identity) =>
        {
            Err(ApiError::AgentToken(issuer.as_str().to_owned()))
        }
        Err(AuthError::MissingClaim { claim, .. }) if names_operators(snapshot, &claim) => {
            Err(ApiError::NoOperatorClaim(claim))
        }
        Err(error) => Err(ApiError::Unauthenticated(error)),
    }
}

/// Whether `claim` is one that names operators (an issuer's `subject_claim`).
fn names_operators(snapshot: &Snapshot, claim: &str) -> bool {
    let mut issuers = snapshot
        .config
        .admin
        .identity
        .iter()
        .flat_map(|i| &i.issuers);
    issuers.any(|i| i.subject_claim == claim)
}

/// The token's principal as the admin API judges it: a `User` of its issuer, in the token's
/// groups.
fn as_user(principal: &Principal) -> Arc<Principal> {
    Arc::new(Principal {
        kind: PrincipalKind::User,
        id: Arc::clone(&principal.id),
        issuer: Arc::clone(&principal.issuer),
        groups: principal.groups.clone(),
        ..Principal::anonymous()
    })
}

/// How a refusal's record quotes what the caller sent: as the proxy's refusals do.
fn scrubbing<'a>(shared: &'a Shared, snapshot: &'a Snapshot, request_id: &'a str) -> Scrubbing<'a> {
    Scrubbing {
        inspect: &snapshot.config.inspect,
        canaries: shared.canaries().map(|c| &**c),
        agent: None,
        request_id,
    }
}

/// A refused call's resource (`Quarantine::"agent/<name in the path>"`) as its record keeps
/// it: scrubbed, or withheld.
fn quoted_resource(resource: &str, scrubbing: &Scrubbing<'_>) -> Text {
    match scrubbed::quoted(resource, scrubbing) {
        Ok(kept) => Arc::from(kept),
        Err(withheld) => Arc::from(format!("({withheld})")),
    }
}

/// A record of an admin call on `resource` (when known).
fn event(
    kind: EventKind,
    verb: &Verb,
    resource: Option<&Resource>,
    source_ip: Option<IpAddr>,
) -> AuditEvent {
    let mut event = AuditEvent::now(kind);
    event.action = verb.label();
    if let Some(resource) = resource {
        event.resource = Arc::from(resource.cedar_ref());
    }
    event.route = Arc::from(ROUTE);
    event.source_ip = source_ip;
    event
}
