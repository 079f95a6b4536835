//! The load generator: N persistent HTTP/1.1 connections, each sending the same chat-completion
//! POST; a warm-up, then a measured window whose latencies go into a histogram.
//!
//! Two workloads: chat completions (one POST, one answer) and MCP `tools/call` (each
//! connection first opens an MCP session with `initialize` and `notifications/initialized`,
//! then sends its calls in that session, as an agent's MCP client does).
//!
//! Two shapes of load:
//! - **closed loop** (no rate): each connection sends its next request as soon as the last
//!   answer is in. This finds the most a target can serve; its latencies are mostly queueing.
//! - **open loop** (a rate): requests leave on a fixed schedule, the rate spread evenly over
//!   the connections. A request that has to wait because the previous answer on its
//!   connection came late is timed from when it was due, not from when it could leave, so a
//!   slow target is not flattered (coordinated omission). This is how the latency a hop adds
//!   is measured: every target at the same rate.

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{HeaderValue, Method, Request, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

use crate::HarnessError;
use crate::upstream::REPLY_MARKER;

/// Highest latency the histogram holds, microseconds (60 s).
const MAX_LATENCY_US: u64 = 60_000_000;

/// What to send, where, and for how long.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Name shown in errors (`direct`, `nginx`, `warden`).
    pub target: String,
    pub addr: SocketAddr,
    /// Request path, e.g. `/v1/chat/completions`.
    pub path: http::Uri,
    /// `Authorization` header value, sent on every request.
    pub authorization: Option<HeaderValue>,
    pub body: Bytes,
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Stop after this many requests in total (warm-up included), even if time remains.
    pub max_requests: u64,
    /// Open loop at this many requests per second in total; `None`: closed loop.
    pub rate: Option<f64>,
    /// What each request is.
    pub workload: Workload,
}

/// What the load sends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Workload {
    /// `body` as a chat-completion POST.
    #[default]
    Chat,
    /// MCP `tools/call` of the bench upstream's `echo` tool, named `tool` where the load is
    /// sent (`echo` direct, under its federated name through Warden), in a session per
    /// connection (`body` is the call's `text` argument).
    Mcp { tool: &'static str },
}

/// The MCP protocol revision the load speaks.
pub const MCP_PROTOCOL_VERSION: &str = "2025-11-25";

/// What one run measured (the warm-up excluded).
#[derive(Debug, Clone)]
pub struct LoadResult {
    /// Successful requests started in the measured window.
    pub requests: u64,
    /// Failed requests (non-2xx, connection errors) in the whole run.
    pub errors: u64,
    /// The first failure, for the report.
    pub first_error: Option<String>,
    /// Length of the measured window.
    pub elapsed: Duration,
    /// Latencies of successful measured requests, microseconds.
    pub histogram: Histogram<u64>,
}

impl LoadResult {
    /// Requests per second over the measured window.
    pub fn rps(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.requests as f64 / secs
        } else {
            0.0
        }
    }

    /// Latency at `quantile` (0.0–1.0), microseconds.
    pub fn latency_us(&self, quantile: f64) -> u64 {
        self.histogram.value_at_quantile(quantile)
    }
}

/// A chat-completion request body of about `bytes` bytes: a system and a user message, the
/// user message padded with prose.
pub fn chat_body(bytes: usize) -> Bytes {
    const HEAD: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a concise assistant."},{"role":"user","content":""#;
    const TAIL: &str = r#""}]}"#;
    const PROSE: &str =
        "Summarise the quarterly report for the operations team in three bullet points. ";
    let pad = bytes.saturating_sub(HEAD.len() + TAIL.len());
    let mut body = String::with_capacity(HEAD.len() + pad + TAIL.len());
    body.push_str(HEAD);
    body.extend(PROSE.chars().cycle().take(pad));
    body.push_str(TAIL);
    Bytes::from(body)
}

/// Sends one request and checks that the upstream's reply came back through the target.
pub async fn probe(spec: &LoadSpec) -> Result<(), HarnessError> {
    let (mut sender, session) = connect_for(spec).await?;
    let request = build_request(spec, session.as_ref(), 1);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| HarnessError::BadProbe {
            target: spec.target.clone(),
            status: 0,
            body: e.to_string(),
        })?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body = String::from_utf8_lossy(&body);
    let answered = match spec.workload {
        Workload::Chat => body.contains(REPLY_MARKER),
        // The tool's text, inside a JSON-RPC response (the chat reply carries the marker too).
        Workload::Mcp { .. } => body.contains(REPLY_MARKER) && body.contains(r#""jsonrpc""#),
    };
    if status == 200 && answered {
        Ok(())
    } else {
        Err(HarnessError::BadProbe {
            target: spec.target.clone(),
            status,
            body: body.chars().take(300).collect(),
        })
    }
}

/// Runs the load: warm-up, then the measured window, then returns what was measured.
pub async fn run(spec: &LoadSpec) -> Result<LoadResult, HarnessError> {
    let started = Instant::now();
    let measure_from = started + spec.warmup;
    let measure_until = measure_from + spec.duration;
    let budget = Arc::new(AtomicU64::new(spec.max_requests));
    let mut tasks = Vec::with_capacity(spec.connections);
    for index in 0..spec.connections {
        let spec = spec.clone();
        let budget = budget.clone();
        let schedule = spec
            .rate
            .map(|rate| Schedule::new(&spec, rate, index, started));
        tasks.push(tokio::spawn(async move {
            drive_connection(&spec, measure_from, measure_until, &budget, schedule).await
        }));
    }
    let mut histogram = new_histogram();
    let (mut requests, mut errors, mut first_error) = (0, 0, None);
    let mut last_end = measure_from;
    for task in tasks {
        let outcome = task.await.map_err(|e| HarnessError::Io {
            context: format!("{}: a load connection task failed", spec.target),
            source: std::io::Error::other(e),
        })?;
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = histogram.add(&outcome.histogram);
        requests += outcome.requests;
        errors += outcome.errors;
        first_error = first_error.or(outcome.first_error);
        last_end = last_end.max(outcome.last_end);
    }
    if requests == 0 {
        return Err(HarnessError::NoSuccess {
            target: spec.target.clone(),
            errors,
            first: first_error.unwrap_or_else(|| "none recorded".into()),
        });
    }
    let elapsed = last_end
        .min(measure_until)
        .saturating_duration_since(measure_from);
    Ok(LoadResult {
        requests,
        errors,
        first_error,
        elapsed,
        histogram,
    })
}

/// When one connection's requests are due in an open-loop run.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    next: Instant,
    interval: Duration,
}

impl Schedule {
    /// Connection `index` of `spec.connections` sharing `rate` requests per second: one
    /// request every `connections / rate` seconds, the connections' turns spread evenly.
    fn new(spec: &LoadSpec, rate: f64, index: usize, started: Instant) -> Schedule {
        let connections = spec.connections.max(1) as f64;
        let interval = Duration::from_secs_f64(connections / rate.max(f64::MIN_POSITIVE));
        Schedule {
            next: started + interval.mul_f64(index as f64 / connections),
            interval,
        }
    }

    /// Waits for the next request's turn; returns the instant its latency counts from.
    ///
    /// Behind schedule (the previous answer came after this request was due), the request
    /// leaves at once and counts from when it was due. Otherwise it sleeps until due and
    /// counts from when it actually leaves, so the timer's own lateness is not charged to
    /// the target.
    async fn turn(&mut self) -> Instant {
        let due = self.next;
        self.next += self.interval;
        if Instant::now() >= due {
            return due;
        }
        tokio::time::sleep_until(due.into()).await;
        Instant::now()
    }
}

/// One connection's share of a run.
struct ConnectionOutcome {
    requests: u64,
    errors: u64,
    first_error: Option<String>,
    last_end: Instant,
    histogram: Histogram<u64>,
}

async fn drive_connection(
    spec: &LoadSpec,
    measure_from: Instant,
    measure_until: Instant,
    budget: &AtomicU64,
    mut schedule: Option<Schedule>,
) -> ConnectionOutcome {
    let mut out = ConnectionOutcome {
        requests: 0,
        errors: 0,
        first_error: None,
        last_end: measure_from,
        histogram: new_histogram(),
    };
    let mut sender: Option<(SendRequest<Full<Bytes>>, Option<HeaderValue>)> = None;
    let mut call_id: u64 = 0;
    while Instant::now() < measure_until {
        if budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_err()
        {
            break;
        }
        let (current, session) = match sender.as_mut() {
            Some((s, session)) => (s, &*session),
            None => match connect_for(spec).await {
                Ok(s) => {
                    let (s, session) = sender.insert(s);
                    (s, &*session)
                }
                Err(e) => {
                    out.fail(e.to_string());
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let start = match schedule.as_mut() {
            Some(schedule) => schedule.turn().await,
            None => Instant::now(),
        };
        call_id += 1;
        let request = build_request(spec, session.as_ref(), call_id);
        let result = exchange(current, request).await;
        let end = Instant::now();
        match result {
            Ok(()) => {
                if start >= measure_from && end <= measure_until {
                    out.requests += 1;
                    let micros = end.duration_since(start).as_micros();
                    out.histogram
                        .saturating_record(u64::try_from(micros).unwrap_or(u64::MAX));
                    out.last_end = end;
                }
            }
            Err(Failure::Status(e)) => out.fail(e),
            Err(Failure::Transport(e)) => {
                out.fail(e);
                sender = None;
            }
        }
    }
    out
}

impl ConnectionOutcome {
    fn fail(&mut self, error: String) {
        self.errors += 1;
        self.first_error.get_or_insert(error);
    }
}

/// Why one exchange failed.
enum Failure {
    /// The response was complete but not 2xx: the connection stays usable.
    Status(String),
    /// The connection broke: open a new one.
    Transport(String),
}

/// Sends one request and reads the whole response; a non-2xx status is a failure.
async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> Result<(), Failure> {
    let broken = |what: &str, e: hyper::Error| Failure::Transport(format!("{what}: {e}"));
    sender
        .ready()
        .await
        .map_err(|e| broken("connection not ready", e))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| broken("send", e))?;
    let status = response.status();
    response
        .into_body()
        .collect()
        .await
        .map_err(|e| broken("response body", e))?;
    if status.is_success() {
        Ok(())
    } else {
        Err(Failure::Status(format!("HTTP {status}")))
    }
}

/// Request `id` of a connection: the chat body, or a `tools/call` in the MCP `session`.
fn build_request(spec: &LoadSpec, session: Option<&HeaderValue>, id: u64) -> Request<Full<Bytes>> {
    match spec.workload {
        Workload::Chat => post(spec, spec.body.clone(), None),
        Workload::Mcp { tool } => post(spec, mcp_call(id, tool, &spec.body), session),
    }
}

/// A POST of `body` to the spec's path, with MCP's headers when in a `session`.
fn post(spec: &LoadSpec, body: Bytes, session: Option<&HeaderValue>) -> Request<Full<Bytes>> {
    let mut request = Request::new(Full::new(body));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = spec.path.clone();
    let headers = request.headers_mut();
    headers.insert(header::HOST, HeaderValue::from_static("bench.local"));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(auth) = &spec.authorization {
        headers.insert(header::AUTHORIZATION, auth.clone());
    }
    if matches!(spec.workload, Workload::Mcp { .. }) {
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        headers.insert(
            "mcp-protocol-version",
            HeaderValue::from_static(MCP_PROTOCOL_VERSION),
        );
        if let Some(session) = session {
            headers.insert("mcp-session-id", session.clone());
        }
    }
    request
}

/// A `tools/call` of `tool` (the bench upstream's `echo`) with `text` as its argument.
pub fn mcp_call(id: u64, tool: &str, text: &[u8]) -> Bytes {
    let text = String::from_utf8_lossy(text);
    let call = serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": "tools/call",
        "params": {"name": tool, "arguments": {"text": text}},
    });
    Bytes::from(call.to_string())
}

/// A connection ready for the spec's workload: for MCP, with its session opened
/// (`initialize`, then `notifications/initialized`) and the session id the server gave.
async fn connect_for(
    spec: &LoadSpec,
) -> Result<(SendRequest<Full<Bytes>>, Option<HeaderValue>), HarnessError> {
    let mut sender = connect(spec.addr).await?;
    if spec.workload == Workload::Chat {
        return Ok((sender, None));
    }
    let failed = |what: &str, detail: String| HarnessError::BadProbe {
        target: spec.target.clone(),
        status: 0,
        body: format!("MCP {what}: {detail}"),
    };
    let initialize = serde_json::json!({
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": MCP_PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "warden-bench", "version": "1"},
        },
    });
    let response = sender
        .send_request(post(spec, Bytes::from(initialize.to_string()), None))
        .await
        .map_err(|e| failed("initialize", e.to_string()))?;
    let status = response.status();
    let session = response.headers().get("mcp-session-id").cloned();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| failed("initialize", e.to_string()))?
        .to_bytes();
    if !status.is_success() {
        let body: String = String::from_utf8_lossy(&body).chars().take(300).collect();
        return Err(failed("initialize", format!("HTTP {status}: {body}")));
    }
    let initialized =
        Bytes::from_static(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    sender
        .ready()
        .await
        .map_err(|e| failed("initialized", e.to_string()))?;
    let response = sender
        .send_request(post(spec, initialized, session.as_ref()))
        .await
        .map_err(|e| failed("initialized", e.to_string()))?;
    let status = response.status();
    let _ = response.into_body().collect().await;
    if !status.is_success() {
        return Err(failed("initialized", format!("HTTP {status}")));
    }
    // The connection takes the next request only once it has finished with this answer.
    sender
        .ready()
        .await
        .map_err(|e| failed("initialized", e.to_string()))?;
    Ok((sender, session))
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>, HarnessError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(HarnessError::io(format!("connecting to {addr}")))?;
    stream
        .set_nodelay(true)
        .map_err(HarnessError::io("setting TCP_NODELAY"))?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| HarnessError::Io {
            context: format!("HTTP/1.1 handshake with {addr}"),
            source: std::io::Error::other(e),
        })?;
    tokio::spawn(async move {
        // Ends when the peer closes; the request side sees and reports that.
        let _ = connection.await;
    });
    Ok(sender)
}

fn new_histogram() -> Histogram<u64> {
    // Fixed, valid bounds: 1 µs to 60 s at 3 significant digits.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("constant histogram bounds are valid")
}
