//! A hostile remote MCP server cannot hold Warden's connections: an answer stream kept open
//! after its response (comments forever), or a JSON answer trickled a byte at a time, is read
//! no longer than the response (and a short grace for trailing notifications), the session,
//! and `mcp.request_timeout` allow. The server sees every such answer dropped, and an honest
//! call still goes through. A server whose name resolves to an internal address is not
//! dialled unless `upstream.allow_private` allows it, as for routes' upstreams.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use warden_e2e::egress::Dns;
use warden_e2e::mcp::{answered, end_session, initialize_raw, post_raw, tool_call};
use warden_e2e::warden::{Warden, WardenBuilder};

/// Answers the server is still sending, counted while hyper holds their bodies (a body is
/// dropped once its connection closes).
struct Open(Arc<AtomicUsize>);

impl Open {
    fn new(count: &Arc<AtomicUsize>) -> Open {
        count.fetch_add(1, Ordering::SeqCst);
        Open(Arc::clone(count))
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

type Body = BoxBody<Bytes, Infallible>;

/// A Streamable HTTP server: `hold` answers on an event stream, then keeps it open with a
/// comment every 100 ms; `trickle` announces 100000 bytes of JSON and sends one every
/// 100 ms; `honest` answers plainly.
struct Hostile {
    addr: SocketAddr,
    open: Arc<AtomicUsize>,
    /// Requests received.
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Hostile {
    async fn start() -> Hostile {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let (counted, received) = (Arc::clone(&open), Arc::clone(&requests));
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (counted, received) = (Arc::clone(&counted), Arc::clone(&received));
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        received.fetch_add(1, Ordering::SeqCst);
                        answer(req, Arc::clone(&counted))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Hostile {
            addr,
            open,
            requests,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

fn full(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body)).boxed());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, content_type.parse().unwrap());
    response
        .headers_mut()
        .insert("mcp-session-id", "hostile-1".parse().unwrap());
    response
}

/// A body that sends `first`, then `each` every 100 ms, forever, counted in `open`.
fn endless(first: Bytes, each: &'static [u8], open: &Arc<AtomicUsize>) -> Body {
    let guard = Open::new(open);
    let frames =
        futures_util::stream::unfold((Some(first), guard), move |(first, guard)| async move {
            let chunk = match first {
                Some(first) => first,
                None => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Bytes::from_static(each)
                }
            };
            Some((Ok::<_, Infallible>(Frame::data(chunk)), (None, guard)))
        });
    StreamBody::new(frames).boxed()
}

async fn answer(
    req: Request<Incoming>,
    open: Arc<AtomicUsize>,
) -> Result<Response<Body>, Infallible> {
    match *req.method() {
        Method::POST => {}
        Method::DELETE => return Ok(full(StatusCode::OK, "application/json", String::new())),
        _ => {
            return Ok(full(
                StatusCode::METHOD_NOT_ALLOWED,
                "application/json",
                String::new(),
            ));
        }
    }
    let body = req.into_body().collect().await.map(|b| b.to_bytes());
    let message: Value = body
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    let id = message["id"].clone();
    if id.is_null() {
        return Ok(full(
            StatusCode::ACCEPTED,
            "application/json",
            String::new(),
        ));
    }
    let result = |result: Value| json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string();
    let text = |t: &str| result(json!({"content": [{"type": "text", "text": t}]}));
    Ok(match message["method"].as_str().unwrap_or_default() {
        "initialize" => full(
            StatusCode::OK,
            "application/json",
            result(
                json!({"protocolVersion": "2025-11-25", "capabilities": {"tools": {}},
                          "serverInfo": {"name": "hostile", "version": "1"}}),
            ),
        ),
        "tools/list" => full(
            StatusCode::OK,
            "application/json",
            result(json!({"tools": [
                {"name": "hold", "inputSchema": {"type": "object"}},
                {"name": "trickle", "inputSchema": {"type": "object"}},
                {"name": "honest", "inputSchema": {"type": "object"}},
            ]})),
        ),
        "tools/call" => match message["params"]["name"].as_str().unwrap_or_default() {
            "hold" => {
                let first = Bytes::from(format!("event: message\ndata: {}\n\n", text("held")));
                let mut response = Response::new(endless(first, b": still here\n\n", &open));
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    "text/event-stream".parse().unwrap(),
                );
                response
            }
            "trickle" => {
                let mut response = Response::new(endless(Bytes::from_static(b"{"), b" ", &open));
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    "application/json".parse().unwrap(),
                );
                response
                    .headers_mut()
                    .insert(http::header::CONTENT_LENGTH, "100000".parse().unwrap());
                response
            }
            _ => full(StatusCode::OK, "application/json", text("honest")),
        },
        _ => full(StatusCode::OK, "application/json", result(json!({}))),
    })
}

async fn warden(server: &Hostile) -> Warden {
    WardenBuilder::with_upstream_url("http://127.0.0.1:9")
        .set(
            "/mcp",
            json!({"servers": [{"name": "hostile", "url": server.url(),
                                "breaker": {"failures": 0}}],
                   "endpoints": [{"name": "tools", "servers": ["hostile"]}],
                   "request_timeout": "3s"}),
        )
        .start()
        .await
        .expect("warden starts")
}

#[tokio::test]
async fn answers_a_server_keeps_open_do_not_hold_warden_s_connections() {
    let server = Hostile::start().await;
    let w = warden(&server).await;
    let token = w.token("agent-1").await.unwrap();
    for round in 0..3u64 {
        let session = initialize_raw(&w, "/mcp/tools", &token).await.unwrap();
        let s = Some(session.as_str());
        for i in 0..2 {
            let call = tool_call(10 + round * 10 + i, "hostile_hold", json!({}));
            let response = post_raw(&w, "/mcp/tools", &token, s, &call).await.unwrap();
            let body = answered(response).await;
            assert_eq!(body["result"]["content"][0]["text"], "held", "{body}");
        }
        let call = tool_call(19 + round * 10, "hostile_trickle", json!({}));
        let response = post_raw(&w, "/mcp/tools", &token, s, &call).await.unwrap();
        let body = answered(response).await;
        assert!(body["error"].is_object(), "a trickled answer fails: {body}");
        assert_eq!(
            end_session(&w, "/mcp/tools", &token, &session)
                .await
                .unwrap(),
            200
        );
    }
    // Every answer the server kept open is dropped by Warden within a bounded wait: the
    // request timeout (3 s) and the trailing grace (2 s) have long passed by then.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while server.open() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(server.open(), 0, "answers Warden still reads");

    let session = initialize_raw(&w, "/mcp/tools", &token).await.unwrap();
    let call = tool_call(99, "hostile_honest", json!({}));
    let response = post_raw(&w, "/mcp/tools", &token, Some(&session), &call)
        .await
        .unwrap();
    let body = answered(response).await;
    assert_eq!(body["result"]["content"][0]["text"], "honest", "{body}");
}

/// Warden with the server at `http://hostile.test:<port>/mcp`, the name resolved by `dns`,
/// `allow_private` as given.
async fn warden_by_name(server: &Hostile, dns: &Dns, allow_private: Value) -> Warden {
    let url = format!("http://hostile.test:{}/mcp", server.addr.port());
    WardenBuilder::with_upstream_url("http://127.0.0.1:9")
        .set(
            "/mcp",
            json!({"servers": [{"name": "hostile", "url": url, "breaker": {"failures": 0}}],
                   "endpoints": [{"name": "tools", "servers": ["hostile"]}]}),
        )
        .set("/upstream/nameservers", json!([dns.addr.to_string()]))
        .set("/upstream/allow_private", allow_private)
        .start()
        .await
        .expect("warden starts")
}

#[tokio::test]
async fn a_server_name_on_an_internal_address_is_not_dialled_unless_allowed() {
    let server = Hostile::start().await;
    let dns = Dns::start(json!({"hostile.test": [["127.0.0.1"]]}))
        .await
        .unwrap();
    let w = warden_by_name(&server, &dns, json!([])).await;
    let token = w.token("agent-1").await.unwrap();
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "t", "version": "1"}}});
    let response = post_raw(&w, "/mcp/tools", &token, None, &init)
        .await
        .unwrap();
    let body = answered(response).await;
    assert_eq!(
        body["error"]["data"]["code"], "mcp_server_unavailable",
        "{body}"
    );
    assert_eq!(server.requests(), 0, "the server was dialled");
    let log = w.output();
    assert!(
        log.contains("hostile.test resolves to 127.0.0.1, a loopback address"),
        "{log}"
    );
    drop(w);

    // Allowed by name, it is reached.
    let w = warden_by_name(&server, &dns, json!(["hostile.test"])).await;
    let token = w.token("agent-1").await.unwrap();
    let session = initialize_raw(&w, "/mcp/tools", &token).await.unwrap();
    let call = tool_call(2, "hostile_honest", json!({}));
    let response = post_raw(&w, "/mcp/tools", &token, Some(&session), &call)
        .await
        .unwrap();
    let body = answered(response).await;
    assert_eq!(body["result"]["content"][0]["text"], "honest", "{body}");
}
