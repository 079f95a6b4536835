//! The circuit breaker of MCP servers: a remote server that fails (5xx) and a local one that
//! cannot start are opened after the configured failures; while open, their requests are
//! answered at once with a JSON-RPC error to the request (`upstream_circuit_open`, naming the
//! server and when it is tried again) without a connection or a process reaching them; after
//! the cool-down a probe to the recovered server closes the breaker. A JSON-RPC error the
//! server answers itself is no failure. Metrics, logs and the audit show it. A reload that
//! changes a server's breaker settings reaches the sessions opened before it; one that leaves
//! them keeps the breaker's state.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use warden_e2e::breaker;
use warden_e2e::mcp::{self, initialize_raw, post_raw, tool_call};
use warden_e2e::warden::{Warden, WardenBuilder};

/// `warden_breaker_state` of MCP server `flaky`.
async fn state(w: &Warden) -> Option<f64> {
    breaker::state(&w.metrics().await.unwrap(), UPSTREAM)
}

/// One transition of each kind, in the metrics and the log.
async fn assert_one_round_trip(w: &Warden) {
    breaker::assert_one_round_trip(&w.metrics().await.unwrap(), &w.output(), UPSTREAM);
}

/// The breaker label of the MCP server of these tests.
const UPSTREAM: &str = "mcp:flaky";

/// The JSON-RPC error of an open breaker, answered to request `id`.
fn assert_open_answer(status: StatusCode, retry_after: Option<&str>, body: &Value, id: u64) {
    assert_eq!(status, 200, "a JSON-RPC error the SDK raises: {body}");
    assert_eq!(body["id"], id, "{body}");
    assert_eq!(
        body["error"]["data"]["code"], "upstream_circuit_open",
        "{body}"
    );
    assert_eq!(body["error"]["data"]["upstream"], "mcp:flaky", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("MCP server flaky") && message.contains("tries again in"),
        "{message}"
    );
    assert!(retry_after.is_some(), "retry-after");
}

async fn posted(
    w: &Warden,
    token: &str,
    session: Option<&str>,
    body: &Value,
) -> (StatusCode, Option<String>, Value) {
    let response = post_raw(w, "/mcp/tools", token, session, body)
        .await
        .unwrap();
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.json().await.unwrap_or(Value::Null);
    (status, retry_after, body)
}

fn initialize(id: u64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "initialize",
           "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                      "clientInfo": {"name": "t", "version": "1"}}})
}

/// Warden with endpoint `/mcp/tools` on server `server` (an `mcp.servers` entry), whose
/// breaker opens after `failures` failures for one second.
async fn warden(server: Value, failures: u32) -> Warden {
    warden_with(server, failures, "1s").await
}

/// Warden with endpoint `/mcp/tools` on server `server`, whose breaker opens after
/// `failures` failures for `open_for`.
async fn warden_with(mut server: Value, failures: u32, open_for: &str) -> Warden {
    server["breaker"] = json!({"failures": failures, "open_for": open_for, "probes": 1});
    WardenBuilder::with_upstream_url("http://127.0.0.1:9")
        .set(
            "/mcp",
            json!({"servers": [server], "endpoints": [{"name": "tools", "servers": ["flaky"]}]}),
        )
        .start()
        .await
        .expect("warden starts")
}

/// A remote MCP server (Streamable HTTP) that fails every POST with 500 while `failing`, and
/// counts the `tools/call` requests that reach it.
struct Flaky {
    addr: SocketAddr,
    failing: Arc<AtomicBool>,
    calls: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Flaky {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Flaky {
    async fn start() -> Flaky {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let failing = Arc::new(AtomicBool::new(false));
        let calls = Arc::new(AtomicUsize::new(0));
        let (f, c) = (Arc::clone(&failing), Arc::clone(&calls));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (f, c) = (Arc::clone(&f), Arc::clone(&c));
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        answer(req, Arc::clone(&f), Arc::clone(&c))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Flaky {
            addr,
            failing,
            calls,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

async fn answer(
    req: Request<Incoming>,
    failing: Arc<AtomicBool>,
    calls: Arc<AtomicUsize>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: StatusCode, body: Option<Value>| {
        let mut response = Response::new(Full::new(Bytes::from(
            body.map(|b| b.to_string()).unwrap_or_default(),
        )));
        *response.status_mut() = status;
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        response
            .headers_mut()
            .insert("mcp-session-id", http::HeaderValue::from_static("flaky-1"));
        Ok(response)
    };
    match *req.method() {
        Method::POST => {}
        Method::DELETE => return reply(StatusCode::OK, None),
        _ => return reply(StatusCode::METHOD_NOT_ALLOWED, None),
    }
    let body = req.into_body().collect().await.map(|b| b.to_bytes());
    let message: Value = body
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    let method = message["method"].as_str().unwrap_or_default();
    if method == "tools/call" {
        calls.fetch_add(1, Ordering::SeqCst);
    }
    if failing.load(Ordering::SeqCst) {
        return reply(StatusCode::INTERNAL_SERVER_ERROR, None);
    }
    let id = message["id"].clone();
    if id.is_null() {
        return reply(StatusCode::ACCEPTED, None);
    }
    let result = |result: Value| Some(json!({"jsonrpc": "2.0", "id": id, "result": result}));
    match method {
        "initialize" => reply(
            StatusCode::OK,
            result(
                json!({"protocolVersion": "2025-11-25", "capabilities": {"tools": {}},
                          "serverInfo": {"name": "flaky", "version": "1"}}),
            ),
        ),
        "tools/list" => reply(
            StatusCode::OK,
            result(json!({"tools": [
                {"name": "echo", "inputSchema": {"type": "object"}},
                {"name": "strict", "inputSchema": {"type": "object"}},
            ]})),
        ),
        "tools/call" if message["params"]["name"] == "strict" => reply(
            StatusCode::OK,
            Some(json!({"jsonrpc": "2.0", "id": id,
                        "error": {"code": -32602, "message": "invalid params: strict takes none"}})),
        ),
        "tools/call" => reply(
            StatusCode::OK,
            result(json!({"content": [{"type": "text", "text": "echoed"}], "isError": false})),
        ),
        _ => reply(StatusCode::OK, result(json!({}))),
    }
}

#[tokio::test]
async fn a_failing_remote_mcp_server_is_opened_answered_at_once_and_closed_by_a_probe() {
    let upstream = Flaky::start().await;
    let w = warden(json!({"name": "flaky", "url": upstream.url()}), 3).await;
    let token = w.token("agent-1").await.unwrap();
    let session = initialize_raw(&w, "/mcp/tools", &token).await.unwrap();
    let session = Some(session.as_str());
    let (_, _, body) = posted(&w, &token, session, &tool_call(2, "flaky_echo", json!({}))).await;
    assert_eq!(body["result"]["content"][0]["text"], "echoed", "{body}");

    // The server's own JSON-RPC errors are answers of a healthy server, not failures.
    for id in 3..7 {
        let (_, _, body) = posted(
            &w,
            &token,
            session,
            &tool_call(id, "flaky_strict", json!({})),
        )
        .await;
        assert_eq!(body["error"]["code"], -32602, "{body}");
    }
    assert_eq!(state(&w).await, Some(0.0), "still closed");

    upstream.failing.store(true, Ordering::SeqCst);
    let before = upstream.calls();
    failed_calls(&w, &token, session, 10..13).await;
    assert_eq!(upstream.calls(), before + 3);

    // Open: answered by Warden at once, the server not reached.
    refused_open(&w, &token, session, 42, 3).await;
    assert_eq!(upstream.calls(), before + 3, "no call while open");
    assert_eq!(state(&w).await, Some(2.0), "open is 2");
    // The call's outcome record (after its decision record) carries the refusal.
    w.wait_for_audit(Duration::from_secs(5), |r| {
        r["kind"] == "outcome"
            && r["outcome"]["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("Warden stopped calling MCP server flaky"))
    })
    .await
    .expect("the refusal is audited");

    // After the cool-down, a probe to the recovered server closes it.
    upstream.failing.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, _, body) = posted(&w, &token, session, &tool_call(50, "flaky_echo", json!({}))).await;
    assert_eq!(
        body["result"]["content"][0]["text"], "echoed",
        "the probe: {body}"
    );
    let (_, _, body) = posted(&w, &token, session, &tool_call(51, "flaky_echo", json!({}))).await;
    assert_eq!(
        body["result"]["content"][0]["text"], "echoed",
        "closed: {body}"
    );
    assert_eq!(upstream.calls(), before + 5);
    assert_eq!(state(&w).await, Some(0.0));
    assert_one_round_trip(&w).await;
}

/// A local server command that records each start in `starts`, then runs the honest MCP
/// server over stdio when `healthy` exists, else exits at once.
fn stdio_server(starts: &Path, healthy: &Path) -> Value {
    let node = std::env::var("NODE").unwrap_or_else(|_| "node".into());
    json!({"name": "flaky", "command": "sh", "args": [
        "-c", r#"echo start >> "$1"; [ -e "$2" ] && exec "$3" "$4"; exit 1"#, "sh",
        starts, healthy, node, mcp::mcp_dir().join("rugpull_server.mjs"),
    ], "sandbox": mcp::sandbox(&[starts.parent().unwrap_or(starts)])})
}

fn starts(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |s| s.lines().count())
}

#[tokio::test]
async fn a_local_mcp_server_that_cannot_start_is_opened_not_spawned_and_closed_by_a_probe() {
    let dir = tempfile::tempdir().unwrap();
    let (starts_file, healthy) = (dir.path().join("starts"), dir.path().join("healthy"));
    let w = warden(stdio_server(&starts_file, &healthy), 2).await;
    let token = w.token("agent-1").await.unwrap();

    for id in 1..3 {
        let (_, _, body) = posted(&w, &token, None, &initialize(id)).await;
        assert_eq!(
            body["error"]["data"]["code"], "mcp_server_unavailable",
            "the process exits at once: {body}"
        );
    }
    assert_eq!(starts(&starts_file), 2);
    assert_eq!(state(&w).await, Some(2.0), "open is 2");

    // Open: the agent's initialize is answered at once; no process is started.
    let (status, retry_after, body) = posted(&w, &token, None, &initialize(3)).await;
    assert_open_answer(status, retry_after.as_deref(), &body, 3);
    assert_eq!(starts(&starts_file), 2, "nothing spawned while open");
    w.wait_for_audit(Duration::from_secs(5), |r| {
        r["kind"] == "rejected" && r["code"] == "upstream_circuit_open"
    })
    .await
    .expect("the refusal is audited with its code");

    // After the cool-down, the probe starts the recovered server and closes the breaker.
    std::fs::write(&healthy, "").unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let session = initialize_raw(&w, "/mcp/tools", &token)
        .await
        .expect("the probe opens a session");
    assert_eq!(starts(&starts_file), 3);
    let (_, _, body) = posted(
        &w,
        &token,
        Some(&session),
        &tool_call(4, "flaky_add", json!({"a": 1, "b": 2})),
    )
    .await;
    assert!(body["result"].is_object(), "{body}");
    assert_eq!(state(&w).await, Some(0.0));
    assert_one_round_trip(&w).await;
}

/// Calls `flaky_echo` once per id in `ids` on `session` while the server fails: each reaches
/// the server and fails there.
async fn failed_calls(w: &Warden, token: &str, session: Option<&str>, ids: std::ops::Range<u64>) {
    for id in ids {
        let (_, _, body) = posted(w, token, session, &tool_call(id, "flaky_echo", json!({}))).await;
        assert_eq!(
            body["error"]["data"]["code"], "upstream_unavailable",
            "the server's own failure: {body}"
        );
    }
}

/// Calls `flaky_echo` on `session`, asserted answered by the open breaker after `failures`.
async fn refused_open(w: &Warden, token: &str, session: Option<&str>, id: u64, failures: u32) {
    let (status, retry_after, body) =
        posted(w, token, session, &tool_call(id, "flaky_echo", json!({}))).await;
    assert_open_answer(status, retry_after.as_deref(), &body, id);
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("after {failures} consecutive failures")),
        "{message}"
    );
}

#[tokio::test]
async fn a_session_opened_before_a_reload_follows_the_servers_new_breaker_settings() {
    let upstream = Flaky::start().await;
    let w = warden_with(json!({"name": "flaky", "url": upstream.url()}), 3, "30s").await;
    let token = w.token("agent-1").await.unwrap();
    let session = initialize_raw(&w, "/mcp/tools", &token).await.unwrap();
    let session = Some(session.as_str());
    let (_, _, body) = posted(&w, &token, session, &tool_call(2, "flaky_echo", json!({}))).await;
    assert_eq!(body["result"]["content"][0]["text"], "echoed", "{body}");
    upstream.failing.store(true, Ordering::SeqCst);
    failed_calls(&w, &token, session, 10..13).await;
    refused_open(&w, &token, session, 13, 3).await;
    let reached = upstream.calls();

    // A reload that rebuilds the MCP servers but leaves this one's breaker settings as they
    // were: its breaker stays open.
    w.reload(|config| config["mcp"]["request_timeout"] = json!("60s"))
        .await
        .unwrap();
    refused_open(&w, &token, session, 14, 3).await;
    assert_eq!(
        upstream.calls(),
        reached,
        "still open: nothing reached the server"
    );

    // A reload that lowers the server's threshold: the session opened before it calls through
    // a new breaker, closed, that opens after 2 failures.
    w.reload(|config| config["mcp"]["servers"][0]["breaker"]["failures"] = json!(2))
        .await
        .unwrap();
    assert_eq!(state(&w).await, Some(0.0), "a new breaker, closed");
    failed_calls(&w, &token, session, 20..22).await;
    refused_open(&w, &token, session, 22, 2).await;
    assert_eq!(upstream.calls(), reached + 2);
    assert_eq!(state(&w).await, Some(2.0), "open is 2");
}
