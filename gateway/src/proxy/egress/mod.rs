//! The egress proxy's path: a forward proxy (`HTTPS_PROXY`, `HTTP_PROXY`) whose every
//! `CONNECT` and plain-HTTP request walks the same stages as the proxy's requests:
//!
//! identify (`Proxy-Authorization`) → interpret (the target) → inspect (a plain-HTTP
//! request's body, url and headers) → limit → decide (`egress:connect` / `egress:request` on
//! `Host::"<name>"`, the name resolved once unless it is denied by name alone or waits for an
//! approval, and the internal-address guard) → hold (then a name that waited is resolved and
//! guarded) → forward (dial the checked address) → record
//!
//! [`walk`] is that path on one screen; a tunnel's life after its `200` is in [`tunnel`], a
//! plain-HTTP request's exchange in [`request`], an intercepted TLS tunnel's requests in
//! [`intercepted`], refusals' plain-text answers in [`answer`].

pub(super) mod answer;
mod intercepted;
pub mod local;
pub mod local_server;
mod quiet;
mod request;
mod room;
mod target;
mod tunnel;

use std::sync::Arc;
use std::time::SystemTime;

use http::{Request, Response};
use hyper::body::Incoming;
use tracing::Instrument;

use super::BoxedResponse;
use super::exchange::{EGRESS_ROUTE, Exchange, ProxyBody};
use super::refusal::Refusal;
use super::stages::{decide_with, hold_here, quarantine};
use crate::action::{
    Action, ActionContext, EgressFacts, Facts, Findings, Principal, Resource, Verb,
};
use crate::decision::Decision;
use crate::egress::intercept::Interceptor;
use crate::egress::proxy_auth;
use crate::egress::resolve::ResolverSetupError;
use crate::egress::{Destination, EgressConfig, EgressError, Resolver};
use crate::identity::AuthError;
use crate::listener::{ConnInfo, Detached};
use crate::shared::Shared;
use crate::snapshot::Snapshot;
pub use room::AgentTunnels;
use target::Target;

/// What one worker's egress proxy holds: its resolver (and cache) and the settings bound at
/// start.
struct Worker {
    resolver: Resolver,
    config: EgressConfig,
    /// TLS interception for `egress.intercept.hosts`, when any.
    interceptor: Option<Arc<Interceptor>>,
    /// The open tunnels, which a shutdown gives its grace, then closes.
    tunnels: Detached,
    /// Each agent's open tunnels, shared by every worker: its idlest is closed to make room.
    agent_tunnels: AgentTunnels,
    /// Serving a local server's process (`sandbox.network: egress`): who it speaks for.
    local: Option<local::Local>,
}

/// The egress proxy's handler for one worker thread, with that worker's own resolver (built
/// here, so a bad resolver setting fails the start), the shared `interceptor`, and the
/// listener's `tunnels` (each tunnel held there while open) and `agent_tunnels` (each tunnel
/// counted there by its agent).
pub fn handler(
    shared: &Arc<Shared>,
    config: &EgressConfig,
    interceptor: Option<Arc<Interceptor>>,
    tunnels: &Detached,
    agent_tunnels: &AgentTunnels,
) -> Result<
    impl Fn(Request<Incoming>, ConnInfo) -> BoxedResponse + Clone + Send + Sync + 'static,
    ResolverSetupError,
> {
    let worker = Worker::new(config, interceptor, tunnels, agent_tunnels, None)?;
    Ok(serving(shared, worker))
}

impl Worker {
    /// A worker with its own resolver (built here, so a bad resolver setting fails the start),
    /// serving the agents' listener or, with `local`, one local server's process.
    fn new(
        config: &EgressConfig,
        interceptor: Option<Arc<Interceptor>>,
        tunnels: &Detached,
        agent_tunnels: &AgentTunnels,
        local: Option<local::Local>,
    ) -> Result<Self, ResolverSetupError> {
        Ok(Worker {
            resolver: Resolver::new(config)?,
            config: config.clone(),
            interceptor,
            tunnels: tunnels.clone(),
            agent_tunnels: agent_tunnels.clone(),
            local,
        })
    }

    /// The local server whose process this serves, for its facts.
    fn server(&self) -> Option<String> {
        self.local.as_ref().map(|l| l.server.to_string())
    }
}

/// The egress proxy's handler for the listener of one local server's process, speaking for
/// `local` (`local_server.rs`); otherwise as [`handler`].
fn local_handler(
    shared: &Arc<Shared>,
    config: &EgressConfig,
    parts: &local::LocalParts,
    local: local::Local,
) -> Result<
    impl Fn(Request<Incoming>, ConnInfo) -> BoxedResponse + Clone + Send + Sync + 'static,
    ResolverSetupError,
> {
    let worker = Worker::new(
        config,
        parts.interceptor.clone(),
        &parts.tunnels,
        &parts.agent_tunnels,
        Some(local),
    )?;
    Ok(serving(shared, worker))
}

/// The handler serving `worker`.
fn serving(
    shared: &Arc<Shared>,
    worker: Worker,
) -> impl Fn(Request<Incoming>, ConnInfo) -> BoxedResponse + Clone + Send + Sync + 'static {
    let worker = Arc::new(worker);
    let shared = Arc::clone(shared);
    move |req, conn| -> BoxedResponse {
        Box::pin(handle(Arc::clone(&shared), Arc::clone(&worker), req, conn))
    }
}

/// Handles one `CONNECT` or plain-HTTP request.
async fn handle(
    shared: Arc<Shared>,
    worker: Arc<Worker>,
    req: Request<Incoming>,
    conn: ConnInfo,
) -> Response<ProxyBody> {
    let snap = shared.snapshot.load_full();
    let mut ex = Exchange::new(
        shared,
        conn,
        snap.config.log.access,
        snap.config.audit.receipts,
        &req,
    );
    ex.egress();
    let span = tracing::debug_span!("egress", request_id = %ex.request_id(), principal = tracing::field::Empty);
    let result = walk(&snap, &worker, &mut ex, req).instrument(span).await;
    ex.finish(result).await
}

/// The stages, in order.
async fn walk(
    snap: &Arc<Snapshot>,
    worker: &Arc<Worker>,
    ex: &mut Exchange,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Refusal> {
    let principal = match &worker.local {
        // The listener of a local server's process speaks for the agent that started it.
        Some(local) => {
            tracing::Span::current().record("principal", &*local.principal.id);
            ex.identified(&local.principal);
            // The session's token: revoked, its processes' egress is refused too.
            ex.identified_by_token(local.token.clone());
            ex.token_still_valid()
                .map_err(|e| Refusal::from(EgressError::Auth(e)))?;
            Arc::clone(&local.principal)
        }
        None => identify(snap, ex, &req).await?,
    };
    quarantine(ex, &principal)?;
    let target = Target::of(&req)?;
    let head = head(&req);
    // Looked up in `decide`, once the name could be allowed: a DNS query is itself a way out.
    let dest = Destination::unresolved(target.host, target.port);
    if target.connect {
        tunnel::open(snap, worker, ex, principal, dest, &head, req).await
    } else {
        request::forward(
            snap,
            worker,
            ex,
            principal,
            dest,
            &head,
            req,
            request::Via::Plain,
        )
        .await
    }
}

/// The request line and headers, where a canary may hide (the agent's own
/// `Proxy-Authorization` left out).
fn head(req: &Request<Incoming>) -> Vec<u8> {
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(req.method().as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(req.uri().to_string().as_bytes());
    for (name, value) in req.headers() {
        if name != http::header::PROXY_AUTHORIZATION {
            head.push(b'\n');
            head.extend_from_slice(name.as_str().as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
        }
    }
    head
}

/// Identify: the agent behind the token in `Proxy-Authorization`.
async fn identify(
    snap: &Snapshot,
    ex: &mut Exchange,
    req: &Request<Incoming>,
) -> Result<Arc<Principal>, Refusal> {
    let headers = match proxy_auth::token(req.headers()) {
        Ok(token) => proxy_auth::as_authorization(&token)?,
        // Without a credential the identify stage decides: refused when agents must
        // authenticate, the anonymous agent when they need not.
        Err(EgressError::MissingCredential) => http::HeaderMap::new(),
        Err(e) => {
            ex.unidentified(e.code());
            return Err(e.into());
        }
    };
    match snap
        .identity
        .identify_stamped(&headers, None, Some(&ex.shared().revocations))
        .await
    {
        Ok((principal, token)) => {
            tracing::Span::current().record("principal", &*principal.id);
            ex.identified(&principal);
            ex.identified_by_token(token);
            Ok(principal)
        }
        Err(AuthError::MissingCredential) => {
            ex.unidentified(EgressError::MissingCredential.code());
            Err(EgressError::MissingCredential.into())
        }
        Err(e) => {
            ex.unidentified(e.code());
            Err(EgressError::Auth(e).into())
        }
    }
}

/// The action of egress to `dest` by `principal` with `facts`.
fn action(
    ex: &Exchange,
    principal: Arc<Principal>,
    verb: Verb,
    dest: &Destination,
    facts: EgressFacts,
    findings: Findings,
) -> Action {
    let conn = ex.conn();
    Action {
        principal,
        verb,
        resource: Resource::Host {
            name: dest.host.cedar_name(),
        },
        context: ActionContext {
            route: Arc::from(EGRESS_ROUTE),
            time: SystemTime::now(),
            source_ip: conn.peer.ip(),
            tls: conn.tls,
            client_certificate: conn.client_identity.clone(),
            findings,
            facts: Facts::Egress(facts),
            session: None,
            budget: None,
        },
    }
}

/// Where egress goes, as its records keep it (`detail.egress`).
fn destination(dest: &Destination, facts: &EgressFacts) -> serde_json::Value {
    let mut detail = serde_json::json!({
        "host": dest.host.cedar_name(),
        "port": dest.port,
        "addresses": [],
        "classes": [],
        "scheme": facts.scheme,
        "channel": crate::canary::egress_channel(facts),
    });
    for (key, value) in [
        ("sni", &facts.sni),
        ("method", &facts.method),
        ("path", &facts.path),
        ("server", &facts.server),
    ] {
        if let Some(value) = value {
            // Bounded as a REST path is: a long path makes no long record.
            let kept = crate::text::Quoted::with_max(value, crate::text::PATH_MAX);
            detail[key] = serde_json::Value::from(kept.as_str());
        }
    }
    addresses_into(&mut detail, dest);
    detail
}

/// `dest`'s addresses and their classes into its record's `detail.egress`.
fn addresses_into(detail: &mut serde_json::Value, dest: &Destination) {
    detail["addresses"] = serde_json::json!(dest.addresses);
    detail["classes"] = dest.classes().iter().map(|c| c.as_str()).collect();
}

/// Decide: Cedar's verdict and the internal-address guard, recorded durably before
/// anything else happens (a plain-HTTP body as its digest, or itself with
/// `audit.record_content`), redacted in place when policy says so. A destination not looked
/// up yet is looked up first, unless its name alone is denied.
async fn decide(
    snap: &Snapshot,
    worker: &Worker,
    ex: &mut Exchange,
    action: &mut Action,
    dest: &mut Destination,
    content: &mut bytes::Bytes,
) -> Result<Decision, Refusal> {
    look_up(snap, worker, ex, action, dest).await?;
    decide_with(snap, ex, action, content, |decision| {
        guard(snap, dest, decision)
    })
    .await
}

/// Looks `dest` up, and gives `action` its addresses, unless the action is denied by its name
/// alone or waits for a human's approval: a name no policy lets through is never queried,
/// since a DNS query carries its name to the name's own servers (`<secret>.attacker.example`
/// would leak with the query), and one that needs an approval is queried once it has it
/// ([`look_up_once_held`]). When a loaded policy reads `context.addresses` they are needed to
/// judge, so the name is looked up first. The same action is then judged again by `decide`,
/// the same way.
async fn look_up(
    snap: &Snapshot,
    worker: &Worker,
    ex: &mut Exchange,
    action: &mut Action,
    dest: &mut Destination,
) -> Result<(), Refusal> {
    if !dest.is_unresolved() || not_yet(snap, action) {
        return Ok(());
    }
    resolve(worker, ex, action, dest).await
}

/// After the hold stage: a destination whose lookup waited for its approval is looked up now,
/// and the internal-address guard judges the addresses found (an approved name on an internal
/// address still needs a permit with `@egress("internal")`).
async fn look_up_once_held(
    snap: &Snapshot,
    worker: &Worker,
    ex: &mut Exchange,
    action: &mut Action,
    dest: &mut Destination,
    decision: &Decision,
) -> Result<(), Refusal> {
    if !dest.is_unresolved() || matches!(decision, Decision::Deny { .. }) {
        return Ok(());
    }
    resolve(worker, ex, action, dest).await?;
    match guard(snap, dest, decision.clone()) {
        Decision::Deny { reasons, .. } => Err(crate::approval::Hold::Denied { reasons }.into()),
        _ => Ok(()),
    }
}

/// Looks `dest` up and gives `action` and the record its addresses.
async fn resolve(
    worker: &Worker,
    ex: &mut Exchange,
    action: &mut Action,
    dest: &mut Destination,
) -> Result<(), Refusal> {
    dest.look_up(&worker.resolver).await?;
    if let Facts::Egress(facts) = &mut action.context.facts {
        facts.addresses.clone_from(&dest.addresses);
    }
    if let Some(detail) = ex.egress_destination() {
        addresses_into(detail, dest);
    }
    Ok(())
}

/// Whether `action`'s destination is not looked up before it is decided: a canary in it, or,
/// when no loaded policy reads `context.addresses`, Cedar's deny (unless a redaction may turn
/// it into an allow, and the host name carries no finding, which a query would carry out and
/// no redaction reaches) or its call for an approval. One not looked up now is looked up once
/// the request is allowed ([`look_up_once_held`]).
fn not_yet(snap: &Snapshot, action: &Action) -> bool {
    if crate::canary::hit(&action.context.findings) {
        return true;
    }
    if snap.policy.reads_addresses() {
        return false;
    }
    match snap.policy.decide(action) {
        Decision::NeedsApproval { .. } => true,
        deny @ Decision::Deny { .. } => {
            snap.policy.redaction(&deny).is_none()
                || crate::inspect::found_in_host(&action.context.findings)
        }
        Decision::Allow { .. } => false,
    }
}

/// A destination with an address that is not globally reachable (loopback, private,
/// link-local, ...) is allowed only by a permit with `@egress("internal")`: any other
/// allow becomes a deny that says so.
pub(super) fn guard(snap: &Snapshot, dest: &Destination, decision: Decision) -> Decision {
    let Some((ip, class)) = dest.internal() else {
        return decision;
    };
    let allowed = match &decision {
        Decision::Allow { policies } => snap.policy.allows_internal(policies),
        Decision::NeedsApproval { policy, .. } => {
            snap.policy.allows_internal(std::slice::from_ref(policy))
        }
        Decision::Deny { .. } => return decision,
    };
    if allowed {
        return decision;
    }
    Decision::Deny {
        reasons: vec![format!(
            "{} resolves to {ip}, a {class} address; egress reaches addresses that are not \
             globally reachable only when a permit with @egress(\"internal\") allows the host",
            dest.host.cedar_name()
        )],
        policies: Vec::new(),
    }
}
