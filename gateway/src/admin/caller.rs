//! Who calls the admin API and whether they may: the caller's token verified by the same
//! [`Identifier`](crate::identity::Identifier) agents go through, the caller judged as a Cedar
//! `User` in its token's groups, the admin action (`admin:quarantine`, `admin:release`,
//! `admin:list`) decided by the loaded policies, and the decision recorded in the audit log
//! before anything is done. A refusal before a decision is recorded as `rejected`.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::SystemTime;

use axum::http::HeaderMap;

use super::error::{ApiError, Forbidden};
use crate::action::{Action, ActionContext, Principal, PrincipalKind, Resource, Verb};
use crate::audit::event::{AuditEvent, AuditPrincipal, EventKind};
use crate::decision::Decision;
use crate::identity::{AuthError, credential_from_headers};
use crate::shared::Shared;
use crate::text::{FIELD_MAX, bounded};

/// The route name admin records carry.
const ROUTE: &str = "admin";

/// An operator the policy allowed one admin action.
#[derive(Debug)]
pub struct Operator {
    /// The operator's principal id (its token's subject).
    pub subject: Arc<str>,
    /// The id of the decision record that allowed the action.
    pub decision_id: String,
}

impl Operator {
    /// Who did it, as a quarantine record keeps it: `admin:<subject>`.
    pub fn by(&self) -> String {
        format!("admin:{}", self.subject)
    }
}

/// What the listener saw of the caller's connection.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub IpAddr);

/// Authenticates the caller of `headers` and decides `verb` on `resource` for it: the
/// operator when the policy allows, else why not. Recorded either way.
pub async fn authorize(
    shared: &Shared,
    headers: &HeaderMap,
    peer: Option<Peer>,
    verb: Verb,
    resource: Resource,
) -> Result<Operator, ApiError> {
    let source_ip = peer.map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |p| p.0);
    let snapshot = shared.snapshot.load();
    let principal = match credential_from_headers(headers) {
        Some(token) => snapshot.identity.identify_token(token).await,
        None => Err(AuthError::MissingCredential),
    };
    let principal = match principal {
        Ok(principal) => as_user(&principal),
        Err(error) => {
            let mut event = event(EventKind::Rejected, &verb, &resource, source_ip);
            event.reasons = vec![error.to_string()];
            shared.audit.append_detached(event);
            return Err(ApiError::Unauthenticated(error));
        }
    };
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
        &action.resource,
        source_ip,
    );
    event.principal = AuditPrincipal {
        kind: PrincipalKind::User.audit_kind().into(),
        id: Arc::clone(&principal.id),
        issuer: Arc::clone(&principal.issuer),
    };
    event.decision_id = Arc::from(decision_id.as_str());
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

/// The token's principal as the admin API judges it: a `User` in the token's groups.
fn as_user(principal: &Principal) -> Arc<Principal> {
    Arc::new(Principal {
        kind: PrincipalKind::User,
        id: Arc::clone(&principal.id),
        issuer: Arc::clone(&principal.issuer),
        groups: principal.groups.clone(),
        ..Principal::anonymous()
    })
}

/// A record of an admin call on `resource`.
fn event(kind: EventKind, verb: &Verb, resource: &Resource, source_ip: IpAddr) -> AuditEvent {
    let mut event = AuditEvent::now(kind);
    event.action = verb.label();
    event.resource = Arc::from(resource.cedar_ref());
    event.route = Arc::from(ROUTE);
    event.source_ip = Some(source_ip);
    event
}
