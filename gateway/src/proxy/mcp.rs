//! The request path of an MCP endpoint: after route and identify, each agent message is read
//! strictly (interpret), its session found, and — for what reaches a tool, prompt, resource
//! or completion — inspected, decided, held and forwarded to its server through the
//! session's upstream session, with the same stages and the same exchange as an LLM call.
//! Lists are assembled from every server and filtered item by item by Cedar; `initialize`,
//! `ping`, notifications and answers to the servers' own requests are session business
//! that reaches no tool.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use serde_json::{Map, Value, json};

use super::exchange::{Exchange, ProxyBody, digest};
use super::refusal::Refusal;
use super::stages::{context, decide, hold, inspect};
use crate::action::{Action, Facts, Findings, Principal, Resource, ToolFacts, Verb};
use crate::decision::Decision;
use crate::mcp::{
    Call, Endpoint, EventBody, Link, McpDenyStyle, McpError, SESSION_HEADER, Session,
    VERSION_HEADER, event,
};
use crate::pins::{CallStatus, PinVerdict, Pins};
use crate::protocol;
use crate::protocol::Shape;
use crate::protocol::mcp::McpShape;
use crate::protocol::mcp::jsonrpc::{self, Id, Kind, Message};
use crate::protocol::mcp::meaning::{self, Judged, ListKind, Meaning, Rewrite};
use crate::protocol::mcp::names;
use crate::route::Route;
use crate::snapshot::Snapshot;
use crate::text::{FIELD_MAX, Quoted, bounded};

/// RFC 9728's well-known path.
const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";
/// Pages of one server's list Warden reads at most.
const MAX_PAGES: usize = 32;
/// Events of one response held for a slow agent.
const STREAM_BUFFER: usize = 16;
/// How often an idle event stream carries a comment, so proxies keep it open.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// The MCP stages for one request to `endpoint`, by HTTP method: POST a message, GET the
/// session's event stream, DELETE the session.
pub(super) async fn walk(
    snap: &Snapshot,
    ex: &mut Exchange,
    route: &Arc<Route>,
    endpoint: &Arc<Endpoint>,
    principal: Arc<Principal>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Refusal> {
    check_origin(ex, &req)?;
    let method = req.method().clone();
    match method {
        Method::POST => post(snap, ex, route, endpoint, principal, req).await,
        Method::GET => {
            let session = session(ex, req.headers(), &principal, route)?;
            events(session)
        }
        Method::DELETE => {
            let id = session_id(req.headers())?;
            ex.shared().mcp.end(id, &principal, &route.name)?;
            Ok(empty(StatusCode::OK))
        }
        other => Err(McpError::Method(Quoted::of(other.as_str())).into()),
    }
}

/// One message from the agent.
async fn post(
    snap: &Snapshot,
    ex: &mut Exchange,
    route: &Arc<Route>,
    endpoint: &Arc<Endpoint>,
    principal: Arc<Principal>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Refusal> {
    // interpret
    let (head, body) = req.into_parts();
    let body = protocol::body::read(body, &head.headers, &snap.config.limits).await?;
    let message = Message::parse(&body).map_err(McpError::from)?;
    let id = match &message.kind {
        Kind::Request { id, .. } => Some(id.clone()),
        _ => None,
    };
    let id_value = id.as_ref().map_or(Value::Null, Id::to_value);
    let meaning =
        meaning::interpret(&message, &endpoint.separator, &endpoint.names).map_err(|e| {
            McpError::Refused {
                id: id_value.clone(),
                code: e.code,
                message: e.message,
            }
        })?;
    if meaning == Meaning::Initialize {
        return initialize(ex, endpoint, &principal, &message, &id_value).await;
    }
    let session = session(ex, &head.headers, &principal, route)?;
    match (meaning, id) {
        (Meaning::Judged(judged), Some(id)) => {
            let request = Judging {
                snap,
                route,
                endpoint,
                session: &session,
                principal,
            };
            request.judged(ex, message, judged, id, &body).await
        }
        (Meaning::List(kind), _) => {
            list(snap, ex, route, &session, &principal, kind, &id_value).await
        }
        (Meaning::Reply, _) => reply(&session, message).await,
        _ => session_message(&session, message, &id_value).await,
    }
}

/// `initialize`: a new session, with one upstream session per server.
async fn initialize(
    ex: &mut Exchange,
    endpoint: &Arc<Endpoint>,
    principal: &Principal,
    message: &Message,
    id: &Value,
) -> Result<Response<ProxyBody>, Refusal> {
    let (session, result) = ex
        .shared()
        .mcp
        .open(endpoint, principal, message.params())
        .await?;
    ex.outcome(StatusCode::OK).mcp_result(None, None);
    let mut response = json_response(StatusCode::OK, &jsonrpc::result(id, result));
    if let Ok(v) = HeaderValue::from_str(&session.id) {
        response.headers_mut().insert(SESSION_HEADER, v);
    }
    Ok(response)
}

/// The session the request names, if it is the caller's.
fn session(
    ex: &Exchange,
    headers: &HeaderMap,
    principal: &Principal,
    route: &Route,
) -> Result<Arc<Session>, McpError> {
    let id = session_id(headers)?;
    let session = ex.shared().mcp.get(id, principal, &route.name)?;
    if let Some(v) = headers.get(VERSION_HEADER) {
        let found = v.to_str().unwrap_or_default();
        if found != session.version {
            return Err(McpError::Version {
                found: Quoted::of(found),
                expected: session.version.into(),
            });
        }
    }
    Ok(session)
}

fn session_id(headers: &HeaderMap) -> Result<&str, McpError> {
    headers
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or(McpError::MissingSession)
}

/// One judged request on its way to its server.
struct Judging<'a> {
    snap: &'a Snapshot,
    route: &'a Arc<Route>,
    endpoint: &'a Arc<Endpoint>,
    session: &'a Arc<Session>,
    principal: Arc<Principal>,
}

impl Judging<'_> {
    /// inspect → decide → hold → credential → forward → observe, for one request to one
    /// server.
    async fn judged(
        self,
        ex: &mut Exchange,
        mut message: Message,
        judged: Box<Judged>,
        id: Id,
        body: &[u8],
    ) -> Result<Response<ProxyBody>, Refusal> {
        let Judged {
            verb,
            resource,
            facts,
            findings,
            server,
            rewrite,
        } = *judged;
        let tool_call = verb == Verb::McpCallTool;
        let deny_as_tool_result = tool_call && self.endpoint.on_deny == McpDenyStyle::ToolResult;
        ex.interpreted(
            &verb,
            &resource,
            Shape::Mcp(McpShape {
                id: id.to_value(),
                deny_as_tool_result,
            }),
        );
        let arguments = match &facts {
            Facts::Tool(t) => serde_json::to_vec(&*t.arguments).unwrap_or_default(),
            _ => Vec::new(),
        };
        if !arguments.is_empty() {
            ex.digested(Arc::from(digest(&arguments)));
        }
        let mut findings = findings;
        // A tool whose definition changed since it was approved (a rug pull) is not called;
        // what the approved definition's description hides is a finding for policy.
        if let (true, Some(pins), Rewrite::Name(own)) =
            (tool_call, ex.shared().pins.clone(), &rewrite)
        {
            let hidden = self
                .pinned(ex, &pins, &server, own)
                .await
                .map_err(|message| McpError::Refused {
                    id: id.to_value(),
                    code: jsonrpc::code::DENIED,
                    message,
                })?;
            findings.0.extend(hidden);
        }
        let mut action = Action {
            principal: self.principal,
            verb,
            resource,
            context: context(ex, self.route, findings, facts),
        };
        inspect(&mut action, body);
        let decision = decide(self.snap, ex, &action, &arguments).await?;
        hold(&decision)?;
        // credential: the server's own, added by its upstream session (never the agent's).
        let link = self
            .session
            .link(&server)
            .cloned()
            .ok_or_else(|| McpError::ServerMissing(server.to_string()))?;
        rewrite.apply(message.params_mut());
        let method = message.method().unwrap_or_default().to_owned();
        let params = message.params().clone();
        // forward
        let t = Instant::now();
        let call = link.call(&method, params).await.map_err(McpError::from)?;
        self.session
            .started(id.clone(), Arc::clone(&server), call.upstream_id);
        // observe
        let flight = InFlight {
            session: Arc::clone(self.session),
            link,
            call,
            id,
            tool_call,
        };
        observe(ex, t, flight, self.endpoint.request_timeout).await
    }
}

/// One request sent to its server, its answer still to come.
struct InFlight {
    session: Arc<Session>,
    link: Arc<Link>,
    call: Call,
    /// The agent's id for it.
    id: Id,
    /// A `tools/call`, whose result's `isError` the outcome records.
    tool_call: bool,
}

/// What comes of a call before the agent is answered.
enum First {
    /// A message the server sent while it works: the answer is an event stream.
    Progress(Value),
    /// The response, with nothing before it: the answer is JSON.
    Done(Value),
    /// Nothing in time.
    Timeout,
}

/// Observe: the server's answer to the agent, as JSON when the response comes alone, else as
/// an event stream carrying the server's progress (and its requests) before the response. The
/// outcome is recorded when the response has passed.
async fn observe(
    ex: &mut Exchange,
    started: Instant,
    flight: InFlight,
    timeout: Duration,
) -> Result<Response<ProxyBody>, Refusal> {
    let InFlight {
        session,
        link,
        call,
        id,
        tool_call,
    } = flight;
    let Call {
        upstream_id,
        mut progress,
        mut done,
    } = call;
    let deadline = tokio::time::Instant::now() + timeout;
    let first = tokio::select! {
        biased;
        Some(m) = progress.recv() => First::Progress(m),
        r = &mut done => r.map_or(First::Timeout, First::Done),
        () = tokio::time::sleep_until(deadline) => First::Timeout,
    };
    ex.forwarded(started.elapsed().as_secs_f64());
    let outcome = ex.outcome(StatusCode::OK);
    let agent_id = id.to_value();
    match first {
        First::Done(response) => {
            let response = answer_as_agent(response, &agent_id);
            session.finished(&id);
            let (is_error, error) = result_of(&response, tool_call);
            outcome.mcp_result(is_error, error);
            Ok(json_response(StatusCode::OK, &response))
        }
        First::Timeout => {
            link.router.fail(upstream_id, "timed out");
            session.finished(&id);
            let message = format!(
                "the MCP server did not answer within {} s",
                timeout.as_secs()
            );
            let response = jsonrpc::error(&agent_id, jsonrpc::code::UPSTREAM, &message);
            outcome.mcp_result(None, Some(message));
            Ok(json_response(StatusCode::OK, &response))
        }
        First::Progress(first) => {
            let (tx, body) = EventBody::channel(STREAM_BUFFER);
            tokio::spawn(async move {
                let mut agent_gone = tx.send(event(&first)).await.is_err();
                let relayed = tokio::time::timeout_at(deadline, async {
                    while let Some(m) = progress.recv().await {
                        if !agent_gone {
                            agent_gone = tx.send(event(&m)).await.is_err();
                        }
                    }
                    (&mut done).await.ok()
                })
                .await;
                session.finished(&id);
                let (response, error) = match relayed {
                    Ok(Some(r)) => (answer_as_agent(r, &agent_id), None),
                    _ => {
                        let message = format!(
                            "the MCP server did not answer within {} s",
                            timeout.as_secs()
                        );
                        link.router.fail(upstream_id, "timed out");
                        (
                            jsonrpc::error(&agent_id, jsonrpc::code::UPSTREAM, &message),
                            Some(message),
                        )
                    }
                };
                if !agent_gone {
                    agent_gone = tx.send(event(&response)).await.is_err();
                }
                let (is_error, failed) = result_of(&response, tool_call);
                let error = error.or(failed).or_else(|| {
                    agent_gone.then(|| "the agent disconnected before the response".to_owned())
                });
                outcome.mcp_result(is_error, error);
            });
            Ok(event_stream(body))
        }
    }
}

/// The response with the agent's own id.
fn answer_as_agent(mut response: Value, id: &Value) -> Value {
    if let Some(map) = response.as_object_mut() {
        map.insert("id".into(), id.clone());
    }
    response
}

impl Judging<'_> {
    /// Whether `tool` of `server` may be called by what pinning knows of it: the findings of
    /// its approved definition, or why not. A tool never listed is listed now (every tool of
    /// the server is judged, pinned on first use), so an agent cannot call around the check.
    async fn pinned(
        &self,
        ex: &Exchange,
        pins: &Pins,
        server: &Arc<str>,
        tool: &str,
    ) -> Result<Vec<crate::action::Finding>, String> {
        let mut status = pins.call_status(server, tool);
        if status == CallStatus::Unknown
            && let Some(link) = self.session.link(server)
        {
            match read_all(link, ListKind::Tools).await {
                Ok(listed) => {
                    for item in &listed {
                        pin_check(ex, pins, server, item).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(server = %server, error = %e, "listing the server's tools to check their definitions failed");
                }
            }
            status = pins.call_status(server, tool);
        }
        // The lookups use the name as the server gave it; messages show it bounded.
        let shown = bounded(tool, crate::text::QUOTE_MAX);
        match status {
            CallStatus::Allowed => Ok(pins.findings(server, tool)),
            CallStatus::Held => Err(format!(
                "tool {server}/{shown} is held: its definition changed since it was approved; an \
                 operator reviews it with `warden tools diff {server} {shown}` and approves it \
                 with `warden tools approve {server} {shown}`"
            )),
            CallStatus::Unknown => Err(format!(
                "tool {server}/{shown} is not in the server's tools/list, so its definition \
                 cannot be checked; it is not called"
            )),
        }
    }
}

/// Pinning's verdict on one listed tool definition of `server`: whether it may be listed
/// (and called). A changed or unapproved definition is audited the first time it is seen; a
/// definition that cannot be checked (the state store failed) is hidden.
async fn pin_check(ex: &Exchange, pins: &Pins, server: &str, item: &Value) -> bool {
    match pins.check(server, item).await {
        Ok(check) => {
            if check.first_report
                && let PinVerdict::Changed(change) | PinVerdict::Unapproved(change) = &check.verdict
            {
                tracing::warn!(server, tool = %bounded(&change.tool, FIELD_MAX), digest = %change.digest, "an MCP tool definition is not the approved one: hidden and refused until an operator approves it");
                ex.tool_changed(change.audit_detail());
            }
            check.allows()
        }
        Err(e) => {
            tracing::warn!(server, error = %e, "an MCP tool definition could not be checked; it is hidden");
            false
        }
    }
}

/// A response's `isError` (a tool result's: absent is `false`) and its error message, for the
/// outcome record.
fn result_of(response: &Value, tool_call: bool) -> (Option<bool>, Option<String>) {
    let is_error = response.get("result").filter(|_| tool_call).map(|r| {
        r.get("isError")
            .and_then(Value::as_bool)
            .unwrap_or_default()
    });
    let error = response.get("error").map(|e| {
        let message = e.get("message").and_then(Value::as_str).unwrap_or("error");
        bounded(message, FIELD_MAX).into_owned()
    });
    (is_error, error)
}

/// A list assembled from every server of the session: each server's items the caller may use
/// (Cedar, item by item), under federated names.
async fn list(
    snap: &Snapshot,
    ex: &mut Exchange,
    route: &Route,
    session: &Session,
    principal: &Arc<Principal>,
    kind: ListKind,
    id: &Value,
) -> Result<Response<ProxyBody>, Refusal> {
    if kind == ListKind::Tools {
        ex.interpreted(
            &Verb::McpListTools,
            &Resource::McpServer {
                name: Arc::clone(&route.name),
            },
            Shape::Mcp(McpShape {
                id: id.clone(),
                deny_as_tool_result: false,
            }),
        );
    }
    // An item is listed when some call could be allowed: for tools, prompts and completions,
    // whose arguments are not known until the call, `may_allow` (no context-free forbid holds,
    // and a permit or the scope of a permit that reads the context does); the call itself is
    // judged on its arguments.
    let permits = |verb: Verb, resource: Resource| {
        let with_arguments = matches!(
            verb,
            Verb::McpCallTool | Verb::McpGetPrompt | Verb::McpComplete
        );
        let facts = if with_arguments {
            Facts::Tool(ToolFacts {
                arguments: Arc::new(Value::Object(Map::new())),
            })
        } else {
            Facts::None
        };
        let action = Action {
            principal: Arc::clone(principal),
            verb,
            resource,
            context: context(ex, route, Findings::none(), facts),
        };
        if with_arguments {
            snap.policy.may_allow(&action)
        } else {
            matches!(snap.policy.decide(&action), Decision::Allow { .. })
        }
    };
    let (field, is_uri) = kind.name_field();
    let mut items = Vec::new();
    let mut failures = Vec::new();
    for (server, link) in &session.links {
        let offers = link
            .initialized()
            .and_then(|i| {
                i.pointer(&format!("/capabilities/{}", kind.capability()))
                    .cloned()
            })
            .is_some();
        if !offers {
            continue;
        }
        let server_resource = || Resource::McpServer {
            name: Arc::clone(server),
        };
        if kind == ListKind::Tools && !permits(Verb::McpListTools, server_resource()) {
            continue;
        }
        let server_wide =
            (kind != ListKind::Tools).then(|| permits(kind.verb(), server_resource()));
        if server_wide == Some(false) {
            continue;
        }
        let listed = match read_all(link, kind).await {
            Ok(listed) => listed,
            Err(e) => {
                tracing::warn!(server = %server, error = %e, "listing failed; the server's items are left out");
                failures.push(server.to_string());
                continue;
            }
        };
        for mut item in listed {
            let Some(name) = item.get(field).and_then(Value::as_str).map(str::to_owned) else {
                continue;
            };
            if kind == ListKind::Tools {
                if let Some(pins) = ex.shared().pins.clone()
                    && !pin_check(ex, &pins, server, &item).await
                {
                    continue;
                }
                // A name that could hide from policy is not shown (calling it would be refused).
                let Ok(folded) = crate::protocol::check_identifier(&name) else {
                    continue;
                };
                let judged = folded.unwrap_or_else(|| name.clone());
                let tool = Resource::Tool {
                    server: Arc::clone(server),
                    name: judged,
                };
                if !permits(Verb::McpCallTool, tool) {
                    continue;
                }
            }
            let federated = if is_uri {
                names::prefix_uri(server, &name)
            } else {
                names::prefix(server, &endpoint_separator(route), &name)
            };
            if let Some(map) = item.as_object_mut() {
                map.insert(field.into(), Value::String(federated));
            }
            items.push(item);
        }
    }
    let mut result = Map::new();
    result.insert(kind.key().into(), Value::Array(items));
    if !failures.is_empty() {
        result.insert("_meta".into(), json!({"warden/unavailable": failures}));
    }
    ex.outcome(StatusCode::OK).mcp_result(None, None);
    Ok(json_response(
        StatusCode::OK,
        &jsonrpc::result(id, Value::Object(result)),
    ))
}

/// The separator of the route's endpoint.
fn endpoint_separator(route: &Route) -> Arc<str> {
    route
        .mcp
        .as_ref()
        .map_or_else(|| Arc::from("_"), |e| Arc::clone(&e.separator))
}

/// Every page of one server's list.
async fn read_all(link: &Link, kind: ListKind) -> Result<Vec<Value>, McpError> {
    let mut items = Vec::new();
    let mut cursor: Option<Value> = None;
    for _ in 0..MAX_PAGES {
        let mut params = Map::new();
        if let Some(c) = cursor.take() {
            params.insert("cursor".into(), c);
        }
        let response = link.request(kind.method(), params).await?;
        let Some(result) = response.get("result") else {
            let why = response
                .pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or("no result");
            return Err(McpError::NoServer(bounded(why, FIELD_MAX).into_owned()));
        };
        if let Some(Value::Array(page)) = result.get(kind.key()) {
            items.extend(page.iter().cloned());
        }
        match result.get("nextCursor") {
            Some(c) if !c.is_null() => cursor = Some(c.clone()),
            _ => break,
        }
    }
    Ok(items)
}
/// `ping`, `logging/setLevel` and notifications: session business, answered by Warden or
/// sent on to every server.
async fn session_message(
    session: &Session,
    message: Message,
    id: &Value,
) -> Result<Response<ProxyBody>, Refusal> {
    let method = message.method().unwrap_or_default().to_owned();
    match method.as_str() {
        "ping" => {
            return Ok(json_response(
                StatusCode::OK,
                &jsonrpc::result(id, json!({})),
            ));
        }
        "logging/setLevel" => {
            for (_, link) in &session.links {
                let _ = link.request(&method, message.params().clone()).await;
            }
            return Ok(json_response(
                StatusCode::OK,
                &jsonrpc::result(id, json!({})),
            ));
        }
        // Warden initialised each server itself.
        "notifications/initialized" => {}
        "notifications/cancelled" => {
            let cancelled = message
                .params()
                .get("requestId")
                .and_then(|v| Id::from_value(v).ok())
                .and_then(|agent_id| session.in_flight(&agent_id));
            if let Some((server, upstream_id)) = cancelled
                && let Some(link) = session.link(&server)
            {
                let mut params = message.params().clone();
                params.insert("requestId".into(), Value::from(upstream_id));
                let _ = link.notify(&method, params).await;
            }
        }
        _ => {
            for (_, link) in &session.links {
                let _ = link.notify(&method, message.params().clone()).await;
            }
        }
    }
    Ok(empty(StatusCode::ACCEPTED))
}

/// The agent's answer to a server's request, sent to that server under its own id.
async fn reply(session: &Session, message: Message) -> Result<Response<ProxyBody>, Refusal> {
    let Kind::Response { id } = &message.kind else {
        return Ok(empty(StatusCode::ACCEPTED));
    };
    match session.requests.take(id) {
        Some((server, original)) => {
            if let Some(link) = session.link(&server) {
                link.answer(message, original)
                    .await
                    .map_err(McpError::from)?;
            }
        }
        None => tracing::debug!(id = %id, "an answer to no request Warden sent; dropped"),
    }
    Ok(empty(StatusCode::ACCEPTED))
}

/// GET: the session's event stream (the servers' own requests and notifications).
fn events(session: Arc<Session>) -> Result<Response<ProxyBody>, Refusal> {
    let Some(mut rx) = session.take_events() else {
        return Err(McpError::StreamOpen.into());
    };
    let (tx, body) = EventBody::channel(STREAM_BUFFER);
    tokio::spawn(async move {
        let mut keepalive = tokio::time::interval(KEEPALIVE);
        keepalive.tick().await;
        loop {
            tokio::select! {
                m = rx.recv() => match m {
                    Some(m) => if tx.send(event(&m)).await.is_err() { break },
                    None => break,
                },
                _ = keepalive.tick() => {
                    if tx.send(Bytes::from_static(b": keepalive\n\n")).await.is_err() {
                        break;
                    }
                }
                () = tx.closed() => break,
            }
        }
        session.give_back_events(rx);
    });
    Ok(event_stream(body))
}

/// `/.well-known/oauth-protected-resource[/<endpoint prefix>]` (RFC 9728): the resource, and
/// the authorization servers whose tokens Warden accepts (the identity section's issuers).
/// `None` when the request is not for it.
pub(super) fn protected_resource(
    snap: &Snapshot,
    ex: &Exchange,
    req: &Request<Incoming>,
) -> Option<Response<ProxyBody>> {
    let rest = req.uri().path().strip_prefix(METADATA_PATH)?;
    if req.method() != Method::GET {
        return None;
    }
    let mut endpoints = snap.routes.iter().filter(|r| r.mcp.is_some());
    let resource_path = if rest.is_empty() || rest == "/" {
        endpoints.next()?;
        String::new()
    } else {
        endpoints.find(|r| r.prefix == rest)?.prefix.clone()
    };
    let origin = own_origin(ex, req);
    let issuers: Vec<&str> = snap
        .config
        .identity
        .issuers
        .iter()
        .map(|i| i.issuer.as_str())
        .collect();
    let body = json!({
        "resource": format!("{origin}{resource_path}"),
        "authorization_servers": issuers,
        "bearer_methods_supported": ["header"],
        "resource_name": "Warden MCP endpoint",
    });
    Some(json_response(StatusCode::OK, &body))
}

/// The protected resource metadata URL of the endpoint at `prefix`.
pub(super) fn metadata_url(ex: &Exchange, req: &Request<Incoming>, prefix: &str) -> String {
    format!("{}{METADATA_PATH}{prefix}", own_origin(ex, req))
}

/// `scheme://host[:port]` as the agent reached Warden (`localhost` when it named no valid
/// host).
fn own_origin(ex: &Exchange, req: &Request<Incoming>) -> String {
    let scheme = if ex.conn().tls { "https" } else { "http" };
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .and_then(|h| h.parse::<http::uri::Authority>().ok())
                .map(|a| a.as_str().to_owned())
        })
        .unwrap_or_else(|| "localhost".into());
    format!("{scheme}://{host}")
}

/// A browser's `Origin`, when sent, must be Warden's own (DNS rebinding: a page of another
/// site must not reach the endpoint through the agent's browser).
fn check_origin(ex: &Exchange, req: &Request<Incoming>) -> Result<(), McpError> {
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return Ok(());
    };
    let found = origin.to_str().unwrap_or_default();
    if found.eq_ignore_ascii_case(&own_origin(ex, req)) {
        Ok(())
    } else {
        Err(McpError::Origin(Quoted::of(found)))
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response<ProxyBody> {
    protocol::json_response(status, body.to_string()).map(Either::Left)
}

fn event_stream(body: EventBody) -> Response<ProxyBody> {
    let mut response = Response::new(Either::Right(Either::Right(body)));
    protocol::event_stream_headers(response.headers_mut());
    response
}

fn empty(status: StatusCode) -> Response<ProxyBody> {
    let mut response = Response::new(Either::Left(Full::new(Bytes::new())));
    *response.status_mut() = status;
    response
}
