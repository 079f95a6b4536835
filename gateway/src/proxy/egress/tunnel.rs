//! A `CONNECT` tunnel: judged when it is asked for (host, port, addresses), dialled to the
//! checked address before the agent hears `200`, then judged again on the client's first
//! bytes: a TLS ClientHello must name the tunnel's own host (no domain fronting), and the
//! policy sees what the tunnel carries (`scheme`, `sni`). Only then do bytes flow, both ways,
//! counted; the outcome record is written when the tunnel closes. A tunnel that carries plain
//! HTTP is served as HTTP instead: each request in it is walked as a plain-HTTP egress request
//! (`request.rs`) by the tunnel's agent, to the tunnel's destination. A TLS tunnel to a host
//! `egress.intercept` names is served by `intercepted.rs` instead: its TLS terminated, each
//! request inside walked the same way. Whenever a reload is applied, an open tunnel is judged
//! again by the new policies, as it was last judged (what it carries, once known), and
//! closed if they deny it.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::request::Via;
use super::{
    Worker, action, decide, destination, guard, hold_here, intercepted, look_up_once_held,
    quarantine, request, room,
};
use crate::action::{Action, EgressFacts, Facts, Findings, Principal, Verb};
use crate::decision::Decision;
use crate::egress::sni::{self, FirstBytes};
use crate::egress::{Destination, EgressError, Host, dial};
use crate::fleet::cut::Cut;
use crate::listener::ConnInfo;
use crate::policy::facts;
use crate::proxy::exchange::{Exchange, Judged, PendingOutcome, ProxyBody, TunnelDecisions};
use crate::proxy::refusal::Refusal;
use crate::proxy::stages::{limit, look_for_canaries, recall};
use crate::shared::Shared;
use crate::snapshot::Snapshot;

/// The scheme a tunnel is judged with before its first bytes show what it carries.
const ASKED: &str = "connect";

/// `detail.egress.judged` of the decision record of a tunnel's first bytes.
const FIRST_BYTES: &str = "first_bytes";
/// `detail.egress.judged` of the decision record of a tunnel whose client sent nothing within
/// `egress.server_first.wait` on a port where the server speaks first.
const SERVER_FIRST: &str = "server_first";
/// `detail.egress.judged` of the decision record of a reload that closes a tunnel.
const RELOAD: &str = "reload";
/// A decision record's `overruled_by`: the TLS server name was not the tunnel's host.
const OVERRULED_BY_SNI_MISMATCH: &str = "sni_mismatch";
/// A decision record's `overruled_by`: what the tunnel carries asked for an approval, which
/// the one given (or not given) when the tunnel was asked for settled.
const OVERRULED_BY_TUNNEL_APPROVAL: &str = "tunnel_approval";

/// Judges a `CONNECT`, dials the destination and answers `200`; the tunnel runs in a task
/// of its own once the agent's connection is handed over.
pub(super) async fn open(
    snap: &Arc<Snapshot>,
    worker: &Arc<Worker>,
    ex: &mut Exchange,
    principal: Arc<Principal>,
    mut dest: Destination,
    head: &[u8],
    mut req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Refusal> {
    // Subscribed before the decision: a reload from now on judges the tunnel again.
    let reloads = ex.shared().reloads.subscribe();
    let facts = EgressFacts {
        port: dest.port,
        addresses: dest.addresses.clone(),
        scheme: ASKED.to_owned(),
        server: worker.server(),
        ..Default::default()
    };
    let mut detail = destination(&dest, &facts);
    // How the tunnel was asked for: `HTTP/1.1`, or `HTTP/2` (classic, or extended with its
    // `:protocol`).
    detail["http_version"] = serde_json::Value::from(format!("{:?}", req.version()));
    if let Some(protocol) = req.extensions().get::<hyper::ext::Protocol>() {
        detail["protocol"] = serde_json::Value::from(protocol.as_str());
    }
    let mut action = action(
        ex,
        principal,
        Verb::EgressConnect,
        &dest,
        facts,
        Findings::none(),
    );
    ex.egress_target("connect", &action.verb, &action.resource, detail);
    look_for_canaries(ex, &mut action, head, "CONNECT request");
    // What the name shows is judged before any DNS query is made for it.
    let host = dest.host.cedar_name();
    crate::inspect::inspect_host(
        &mut action.context.findings,
        &host,
        crate::inspect::CONNECT_TARGET,
        &snap.config.inspect,
    );
    // An agent at its tunnel cap makes room by having its longest-idle tunnel closed (none
    // closed when all carry bytes: the cap refuses then).
    worker
        .agent_tunnels
        .make_room(
            &action.principal.id,
            snap.config.egress.max_tunnels_per_agent,
            snap.config.egress.evict_idle_after(),
        )
        .await;
    // A tunnel holds its place in flight (`rate_limits` concurrency) until it closes.
    limit(snap, ex, &action)?;
    // Its session: the one the agent names (`sessions.header`), else its window.
    recall(
        snap,
        ex,
        &mut action,
        crate::fleet::session::named(&snap.config.sessions, req.headers()),
    )?;
    let decision = decide(
        snap,
        worker,
        ex,
        &mut action,
        &mut dest,
        &mut bytes::Bytes::new(),
    )
    .await?;
    hold_here(ex, &action, &decision).await?;
    look_up_once_held(snap, worker, ex, &mut action, &mut dest, &decision).await?;
    let approved = match decision {
        Decision::NeedsApproval { policy, .. } => Some(policy),
        _ => None,
    };
    // An HTTP/2 tunnel is one stream of a connection that holds one slot of the listener's
    // cap: the connection it dials takes a slot of its own (an HTTP/1 tunnel takes over its
    // connection's), and keeps the agent's connection from counting as idle.
    let slot = match req.version() {
        http::Version::HTTP_2 => Some(ex.conn().extra_slot().ok_or(EgressError::AtCapacity)?),
        _ => None,
    };
    let busy = ex.conn().busy();
    let t = Instant::now();
    let dialled = dial::dial(&dest, worker.config.connect_timeout).await;
    ex.forwarded(t.elapsed().as_secs_f64());
    let upstream = dialled?;
    let on_upgrade = hyper::upgrade::on(&mut req);
    let tunnel = Tunnel {
        worker: Arc::clone(worker),
        shared: Arc::clone(ex.shared()),
        conn: ex.conn().clone(),
        action,
        carries: Arc::default(),
        dest,
        approved,
        token: ex.token(),
        decisions: Arc::new(ex.tunnel_decisions()),
    };
    let cut = ex.cut();
    let outcome = ex.outcome(StatusCode::OK);
    // Held while the tunnel is open: a shutdown gives it the grace, then closes it.
    let held = worker.tunnels.hold();
    let closing = worker.tunnels.closing();
    // A local server's process's tunnel closes once the process's listener is no longer
    // served (the process ended).
    let ended = worker.local.as_ref().map(|local| local.ended());
    // Counted among its agent's tunnels until its outcome (which gives its places back).
    let registered = worker.agent_tunnels.register(&tunnel.action.principal.id);
    tokio::spawn(async move {
        tunnel
            .run(
                on_upgrade,
                upstream,
                cut,
                reloads,
                closing,
                ended,
                outcome,
                &registered,
            )
            .await;
        drop((held, slot, busy, registered));
    });
    Ok(Response::new(Either::Left(Full::new(Bytes::new()))))
}

/// An allowed tunnel, waiting for the agent's connection.
#[derive(Clone)]
struct Tunnel {
    worker: Arc<Worker>,
    shared: Arc<Shared>,
    /// The agent's connection to the proxy.
    conn: ConnInfo,
    /// The `egress:connect` the tunnel was asked for (scheme `connect`).
    action: Action,
    /// What its first bytes showed it carries (scheme, server name), once they did.
    carries: Arc<OnceLock<(&'static str, Option<String>)>>,
    dest: Destination,
    /// The policy whose approval the tunnel was given when it was asked for, if it needed
    /// one.
    approved: Option<Arc<str>>,
    /// The stamp of the Warden token the tunnel was opened with: each request it carries is
    /// refused once that token is revoked.
    token: Option<crate::identity::revocation::TokenStamp>,
    /// What records the tunnel's judgements after its `CONNECT`'s.
    decisions: Arc<TunnelDecisions>,
}

impl intercepted::Walk for Tunnel {
    fn walk<'a>(
        &'a self,
        req: Request<Incoming>,
        via: Via<'a>,
    ) -> impl Future<Output = Response<ProxyBody>> + Send + 'a {
        self.request(req, via)
    }
}

impl Tunnel {
    /// Carries the tunnel until either side closes it, its agent is quarantined or the token
    /// it was opened with revoked (`cut`), a reload (`reloads`) brings policies that deny
    /// it, Warden shuts down and the grace is over (`closing`), the local server's process
    /// whose listener it came on ended (`ended`), or it is closed to make room
    /// for another of its agent's (`registered`) — both connections closed then — and
    /// records how it ended.
    #[allow(clippy::too_many_arguments)]
    async fn run(
        self,
        on_upgrade: OnUpgrade,
        upstream: TcpStream,
        mut cut: Option<Cut>,
        reloads: watch::Receiver<u64>,
        closing: impl Future<Output = ()>,
        ended: Option<impl Future<Output = ()>>,
        outcome: PendingOutcome,
        registered: &room::Registered,
    ) {
        let client = match on_upgrade.await {
            Ok(upgraded) => TokioIo::new(upgraded),
            Err(e) => {
                outcome.tunnel_closed(0, 0, Some(("egress_upgrade_failed", e.to_string())));
                return;
            }
        };
        let mut client = Counted::new(client).touching(&registered.activity);
        let upstream = Counted::new(upstream).touching(&registered.activity);
        let (up, down) = (Arc::clone(&client.read), Arc::clone(&upstream.read));
        let stopped = async {
            match cut.as_mut() {
                Some(cut) => cut.cut().await,
                None => std::future::pending().await,
            }
        };
        let carried = tokio::select! {
            carried = self.carry(&mut client, upstream) => carried,
            cause = stopped => Err((cause.code(), cause.outcome())),
            denied = self.denied_by_reload(reloads) => Err((denied.code(), denied.to_string())),
            () = closing => Err((EgressError::Shutdown.code(), EgressError::Shutdown.to_string())),
            () = async {
                match ended {
                    Some(ended) => ended.await,
                    None => std::future::pending().await,
                }
            } => Err((
                "egress_process_ended",
                "closed: the MCP server's process it served ended".to_owned(),
            )),
            () = registered.close.notified() => Err((
                "egress_tunnel_evicted",
                format!(
                    "closed after {} or more without a byte either way, to make room for \
                     another of its agent's tunnels (egress.max_tunnels_per_agent, \
                     egress.evict_idle_after)",
                    humantime::format_duration(self.worker.config.evict_idle_after())
                ),
            )),
        };
        let (up, down) = (up.load(Ordering::Relaxed), down.load(Ordering::Relaxed));
        outcome.tunnel_closed(up, down, carried.err());
    }

    /// Reads and judges the first bytes, then copies both ways until either side closes or
    /// neither sends a byte for `egress.tunnel_idle_timeout`. The connection dialled
    /// upstream is closed at once when the tunnel is served as HTTP or intercepted (their
    /// requests leave over connections of their own).
    async fn carry<C, U>(
        &self,
        client: &mut Counted<C>,
        mut upstream: Counted<U>,
    ) -> Result<(), (&'static str, String)>
    where
        C: AsyncRead + AsyncWrite + Unpin + Send,
        U: AsyncRead + AsyncWrite + Unpin,
    {
        let refused = |e: EgressError| (e.code(), e.to_string());
        let config = &self.worker.config;
        let server_first = config.server_first.wait_on(self.dest.port);
        let opening = first_bytes(client, config.first_bytes_timeout, server_first)
            .await
            .map_err(refused)?;
        let (first, seen, silent) = match opening {
            // The agent closed the tunnel before sending anything.
            Opening::Closed => return Ok(()),
            Opening::Sent(first, seen) => (first, seen, false),
            // A port where the server speaks first: judged as `tcp`, then connected.
            Opening::Silent => (Vec::new(), FirstBytes::Other, true),
        };
        let carries_http = seen == FirstBytes::Http;
        let intercept = self.intercepting(&seen);
        self.judge(seen, silent).await.map_err(refused)?;
        if let Some((interceptor, sni)) = intercept {
            // TLS to an intercepted host: Warden's own TLS on both sides, and a connection of
            // its own to the destination.
            drop(upstream);
            let (dest, config) = (&self.dest, &self.worker.config);
            let client = client.replaying(first);
            return intercepted::serve(self.clone(), dest, config, &interceptor, client, sni).await;
        }
        if carries_http {
            // Plain HTTP in a tunnel (what OpenClaw's web_fetch sends for http:// URLs): each
            // request is judged, inspected and forwarded as an absolute-form one would be.
            drop(upstream);
            return self.serve_http(client.replaying(first)).await;
        }
        upstream
            .write_all(&first)
            .await
            .map_err(|e| ("egress_tunnel_error", e.to_string()))?;
        let idle = self.worker.config.tunnel_idle_timeout;
        let moved = (Arc::clone(&client.read), Arc::clone(&upstream.read));
        let copied = tokio::select! {
            copied = tokio::io::copy_bidirectional(client, &mut upstream) => copied,
            () = idle_for(idle, moved) => {
                return Err((
                    "egress_tunnel_idle",
                    format!(
                        "closed after {} without a byte either way (egress.tunnel_idle_timeout)",
                        humantime::format_duration(idle)
                    ),
                ));
            }
        };
        match copied {
            Ok(_) => Ok(()),
            // A peer that resets at the end of its exchange is how many close a tunnel.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(()),
            Err(e) => Err(("egress_tunnel_error", e.to_string())),
        }
    }

    /// Serves the plain-HTTP requests the tunnel carries, each as `egress:request` on the
    /// tunnel's host, by the agent that opened it.
    async fn serve_http<C>(&self, io: &mut Counted<C>) -> Result<(), (&'static str, String)>
    where
        C: AsyncRead + AsyncWrite + Unpin,
    {
        let service = hyper::service::service_fn(|req| async move {
            Ok::<_, std::convert::Infallible>(self.request(req, Via::Tunnelled).await)
        });
        hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(self.worker.config.first_bytes_timeout)
            .serve_connection(TokioIo::new(io), service)
            .await
            .map_err(|e| ("egress_tunnel_error", e.to_string()))
    }

    /// The interceptor, and the server name the agent sent, when the tunnel carries TLS to a
    /// host `egress.intercept` names.
    fn intercepting(
        &self,
        seen: &FirstBytes,
    ) -> Option<(Arc<crate::egress::intercept::Interceptor>, Option<String>)> {
        let FirstBytes::Tls(hello) = seen else {
            return None;
        };
        let interceptor = self.worker.interceptor.as_ref()?;
        interceptor
            .intercepts(&self.dest.host)
            .then(|| (Arc::clone(interceptor), hello.sni.clone()))
    }

    /// One request in the tunnel (plain HTTP, or out of its intercepted TLS), walked with an
    /// exchange of its own.
    pub(super) async fn request(
        &self,
        req: Request<Incoming>,
        via: Via<'_>,
    ) -> Response<ProxyBody> {
        let snap = self.shared.snapshot.load_full();
        let mut ex = Exchange::new(
            Arc::clone(&self.shared),
            self.conn.clone(),
            snap.config.log.access,
            snap.config.audit.receipts,
            &req,
        );
        ex.egress();
        let principal = Arc::clone(&self.action.principal);
        ex.identified(&principal);
        ex.identified_by_token(self.token.clone());
        let head = super::head(&req);
        let allowed = quarantine(&ex, &principal)
            .and_then(|()| ex.token_still_valid().map_err(Refusal::from));
        let result = match allowed {
            Ok(()) => {
                request::forward(
                    &snap,
                    &self.worker,
                    &mut ex,
                    principal,
                    self.dest.clone(),
                    &head,
                    req,
                    via,
                )
                .await
            }
            Err(refusal) => Err(refusal),
        };
        ex.finish(result).await
    }

    /// What the first bytes show, judged: a TLS server name must be the tunnel's host, and
    /// policy sees the tunnel's scheme and server name. The judgement is a decision record of
    /// its own, written before a byte goes on; `silent`: the client sent nothing on a port
    /// where the server speaks first (`egress.server_first`).
    async fn judge(&self, seen: FirstBytes, silent: bool) -> Result<(), EgressError> {
        let (scheme, sni) = match seen {
            FirstBytes::Tls(hello) => ("https", hello.sni),
            FirstBytes::Http => ("http", None),
            FirstBytes::Other | FirstBytes::NeedMore => ("tcp", None),
        };
        let fronted = sni
            .as_ref()
            .filter(|sni| !matches!(&self.dest.host, Host::Name(name) if name == *sni))
            .map(|sni| EgressError::SniMismatch {
                host: self.dest.host.cedar_name(),
                sni: sni.clone(),
            });
        let _ = self.carries.set((scheme, sni));
        let snap = self.shared.snapshot.load_full();
        let (decision, judged) = match &fronted {
            // Not policy's to judge: the server name is not the host the tunnel was judged for.
            Some(mismatch) => (
                Decision::Deny {
                    reasons: vec![mismatch.to_string()],
                    policies: Vec::new(),
                },
                Judged {
                    version: Arc::clone(snap.policy.version()),
                    shadow: None,
                    facts: None,
                    overruled_by: Some(OVERRULED_BY_SNI_MISMATCH),
                },
            ),
            None => self.judged(&snap),
        };
        let judgement = if silent { SERVER_FIRST } else { FIRST_BYTES };
        self.record(&snap, &decision, judged, judgement)
            .await
            .map_err(|e| EgressError::AuditUnavailable(e.to_string()))?;
        if let Some(mismatch) = fronted {
            return Err(mismatch);
        }
        refused(decision).map_err(EgressError::TunnelDenied)
    }

    /// Records a judgement of the tunnel after its `CONNECT`'s (`judgement`: which), with
    /// what it carries.
    async fn record(
        &self,
        snap: &Snapshot,
        decision: &Decision,
        judged: Judged,
        judgement: &'static str,
    ) -> Result<(), crate::audit::AuditError> {
        let mut carries = vec![("judged", serde_json::Value::from(judgement))];
        if let Some((scheme, sni)) = self.carries.get() {
            carries.push(("scheme", serde_json::Value::from(*scheme)));
            if let Some(sni) = sni {
                carries.push(("sni", serde_json::Value::from(sni.as_str())));
            }
        }
        self.decisions
            .record(decision, judged, &carries, snap.config.audit.fail_closed)
            .await
    }

    /// Waits for the first reload whose policies deny the tunnel as it was last judged;
    /// pending for as long as none does.
    async fn denied_by_reload(&self, mut reloads: watch::Receiver<u64>) -> EgressError {
        loop {
            if reloads.changed().await.is_err() {
                return std::future::pending().await;
            }
            let snap = self.shared.snapshot.load_full();
            let (decision, judged) = self.judged(&snap);
            if let Err(why) = refused(decision.clone()) {
                tracing::info!(host = %self.dest.host.cedar_name(), reason = %why, "closing an egress tunnel the reloaded policies deny");
                // Closed whatever becomes of its record (the outcome record says why too).
                let _ = self.record(&snap, &decision, judged, RELOAD).await;
                return EgressError::ReloadDenied(why);
            }
        }
    }

    /// The tunnel as `snap`'s policies and the internal-address guard judge it now (what it
    /// carries, once its first bytes showed it): the decision that stands — an approval the
    /// tunnel was given when it was asked for allows it, one it was not given denies it — and
    /// how it was judged, for its record.
    fn judged(&self, snap: &Snapshot) -> (Decision, Judged) {
        let mut action = self.action.clone();
        action.context.time = SystemTime::now();
        let scheme = match (self.carries.get(), &mut action.context.facts) {
            (Some((scheme, sni)), Facts::Egress(facts)) => {
                facts.scheme = (*scheme).to_owned();
                facts.sni.clone_from(sni);
                *scheme
            }
            _ => ASKED,
        };
        let cedar = snap.policy.decide(&action);
        let shadow = snap.policy.shadow_difference(&action, &cedar);
        let cedar_label = cedar.label();
        let guarded = guard(snap, &self.dest, cedar);
        let mut overruled_by =
            (guarded.label() != cedar_label).then_some(facts::OVERRULED_BY_INTERNAL_ADDRESS);
        let decision = match guarded {
            // An approval the tunnel needed was settled when it was asked for; what it
            // carries may not ask for one it was not given.
            Decision::NeedsApproval { policy, .. } if self.approved.as_ref() == Some(&policy) => {
                overruled_by = Some(OVERRULED_BY_TUNNEL_APPROVAL);
                Decision::Allow {
                    policies: vec![policy],
                }
            }
            Decision::NeedsApproval { policy, .. } => {
                overruled_by = Some(OVERRULED_BY_TUNNEL_APPROVAL);
                Decision::Deny {
                    reasons: vec![format!(
                        "what the tunnel carries ({scheme}) needs an approval under policy \
                         {policy}, which the tunnel was not given when it was asked for"
                    )],
                    policies: vec![policy],
                }
            }
            other => other,
        };
        let audit = &snap.config.audit;
        let judged = Judged {
            version: Arc::clone(snap.policy.version()),
            shadow,
            facts: audit.decision_facts.then(|| {
                facts::of(
                    &action,
                    audit.record_content,
                    audit.decision_facts_max_bytes,
                )
            }),
            overruled_by,
        };
        (decision, judged)
    }
}

/// `Err` with why, when `decision` denies.
fn refused(decision: Decision) -> Result<(), String> {
    match decision {
        Decision::Deny { reasons, policies } => Err(format!(
            "{} (policies: {})",
            reasons.join("; "),
            policies
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
        _ => Ok(()),
    }
}

/// Returns once neither counter of `moved` (bytes read from either side) has grown for
/// `idle`.
async fn idle_for(idle: Duration, moved: (Arc<AtomicU64>, Arc<AtomicU64>)) {
    super::quiet::quiet_for(idle, || {
        Some(moved.0.load(Ordering::Relaxed) + moved.1.load(Ordering::Relaxed))
    })
    .await;
}

/// How a tunnel's client began.
enum Opening {
    /// It closed the tunnel before sending anything.
    Closed,
    /// Its first bytes, and what they show the tunnel carries.
    Sent(Vec<u8>, FirstBytes),
    /// It sent nothing within `egress.server_first.wait`, on a port listed there.
    Silent,
}

/// The client's first bytes, read until they show what the tunnel carries, within `timeout`;
/// with `server_first` (a port where the server speaks first), [`Opening::Silent`] when not a
/// byte arrives within that wait.
async fn first_bytes<C: AsyncRead + Unpin>(
    client: &mut C,
    timeout: Duration,
    server_first: Option<Duration>,
) -> Result<Opening, EgressError> {
    let mut buf = Vec::with_capacity(2048);
    let read = async {
        let mut chunk = [0u8; 4096];
        loop {
            let reading = client.read(&mut chunk);
            let n = match server_first.filter(|_| buf.is_empty()) {
                // `read` is cancel-safe: nothing is lost when the wait ends first.
                Some(wait) => match tokio::time::timeout(wait, reading).await {
                    Ok(n) => n,
                    Err(_) => return Ok(Opening::Silent),
                },
                None => reading.await,
            }
            .map_err(|e| EgressError::Client(e.to_string()))?;
            if n == 0 {
                return Ok::<_, EgressError>(if buf.is_empty() {
                    Opening::Closed
                } else {
                    Opening::Sent(std::mem::take(&mut buf), FirstBytes::Other)
                });
            }
            buf.extend_from_slice(&chunk[..n]);
            match sni::read(&buf)? {
                FirstBytes::NeedMore if buf.len() < sni::HELLO_MAX => continue,
                FirstBytes::NeedMore => return Err(sni::HelloError::TooLong.into()),
                seen => return Ok(Opening::Sent(std::mem::take(&mut buf), seen)),
            }
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| EgressError::FirstBytesTimeout)?
}

/// A stream that counts the bytes read from it, and can have bytes it already gave read
/// again (uncounted) before the rest.
struct Counted<T> {
    inner: T,
    /// Bytes read from it so far (shared: the idle watch and the outcome read it).
    read: Arc<AtomicU64>,
    /// Touched as bytes are read or written (its agent's idlest tunnel makes room).
    activity: Option<room::Activity>,
    replay: Vec<u8>,
    replayed: usize,
}

impl<T> Counted<T> {
    fn new(inner: T) -> Self {
        Counted {
            inner,
            read: Arc::new(AtomicU64::new(0)),
            activity: None,
            replay: Vec::new(),
            replayed: 0,
        }
    }

    fn touching(mut self, activity: &room::Activity) -> Self {
        self.activity = Some(activity.clone());
        self
    }

    fn touch(&self, n: usize) {
        if n > 0
            && let Some(activity) = &self.activity
        {
            activity.touch();
        }
    }

    /// Reads `bytes` (already read from it) again first.
    fn replaying(&mut self, bytes: Vec<u8>) -> &mut Self {
        self.replay = bytes;
        self.replayed = 0;
        self
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.replayed < self.replay.len() {
            let at = self.replayed;
            let n = buf.remaining().min(self.replay.len() - at);
            buf.put_slice(&self.replay[at..at + n]);
            self.replayed += n;
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        self.touch(n);
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            self.touch(n);
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
