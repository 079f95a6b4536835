//! A fake LLM provider on 127.0.0.1 that replays the response shapes of OpenAI, Anthropic and
//! Gemini faithfully (SSE framing, tool-call deltas, usage blocks) and records every request
//! it receives, so tests can assert on what Warden forwarded.
//!
//! Streams are sent chunk by chunk with a delay between chunks, each chunk its own write, so a
//! test can prove that Warden streams without buffering. A [`StreamGate`] holds every stream
//! after its first chunks until the test releases it.

mod anthropic;
mod body;
mod gemini;
mod openai;

use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::Value;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

pub use body::FakeBody;
pub use openai::{PROPOSE_PREFIX, call_id};

/// The assistant text every completion carries, one stream chunk per element.
pub const TEXT_CHUNKS: [&str; 9] = [
    "Warden ",
    "e2e: ",
    "the ",
    "fake ",
    "upstream ",
    "answers ",
    "in ",
    "several ",
    "chunks.",
];

/// Input tokens the fake reports in every usage block.
pub const PROMPT_TOKENS: u64 = 17;

/// Output tokens the fake reports in every usage block (one per text chunk).
pub const COMPLETION_TOKENS: u64 = TEXT_CHUNKS.len() as u64;

/// Arguments of every tool call the fake proposes (as a JSON text).
pub const TOOL_ARGUMENTS: &str = r#"{"location":"Paris","unit":"celsius"}"#;

/// The full assistant text.
pub fn full_text() -> String {
    TEXT_CHUNKS.concat()
}

/// One request as the fake upstream received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: Method,
    /// Path and query, e.g. `/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse`.
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl RecordedRequest {
    /// The value of header `name` as text, if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body parsed as JSON (`Value::Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// True when any header value or the body contains `needle`.
    pub fn contains(&self, needle: &str) -> bool {
        let in_headers = self.headers.values().any(|v| {
            v.as_bytes()
                .windows(needle.len())
                .any(|w| w == needle.as_bytes())
        });
        in_headers
            || self
                .body
                .windows(needle.len())
                .any(|w| w == needle.as_bytes())
    }
}

/// Which provider's shapes a request is answered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    OpenAi,
    Anthropic,
    Gemini,
}

/// A scripted upstream failure: every request is answered with this status and the
/// provider's own error body for it, until cleared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub status: StatusCode,
    /// `retry-after` header value, sent when set.
    pub retry_after: Option<String>,
}

impl Failure {
    /// 429 with the provider's rate-limit body and `retry-after: 7`.
    pub fn rate_limited() -> Failure {
        Failure {
            status: StatusCode::TOO_MANY_REQUESTS,
            retry_after: Some("7".into()),
        }
    }

    /// Any status with the provider's error body for it.
    pub fn status(status: StatusCode) -> Failure {
        Failure {
            status,
            retry_after: None,
        }
    }
}

/// Provider keys the fake requires, as the real providers do (401 otherwise).
#[derive(Debug, Clone, Default)]
pub struct RequiredKeys {
    /// `Authorization: Bearer <key>` on OpenAI paths.
    pub openai: Option<String>,
    /// `x-api-key: <key>` (or `Authorization: Bearer <key>`) on Anthropic paths.
    pub anthropic: Option<String>,
    /// `x-goog-api-key: <key>` (or `?key=`) on Gemini paths.
    pub gemini: Option<String>,
}

#[derive(Debug, Default)]
struct Knobs {
    failure: Option<Failure>,
    response_delay: Duration,
    chunk_delay: Duration,
    gate: Option<watch::Receiver<bool>>,
    keys: RequiredKeys,
    /// Answer in text even when tools are declared (as a model does when none fits).
    text_only: bool,
    /// Cut every stream (the connection, mid-body) after this many events.
    cut_after: Option<usize>,
    /// Pad whole OpenAI chat answers with this many bytes.
    pad: usize,
    /// Encode every answer so (an upstream Warden must not trust).
    encoding: Option<AnswerEncoding>,
    /// Responses API streams whose call items and final output carry other arguments than
    /// their deltas.
    diverge: bool,
    /// Every streamed answer is these raw events, whatever the request asked.
    script: Option<Vec<Bytes>>,
    /// The content type of the scripted streams, when not `text/event-stream`.
    script_type: Option<http::HeaderValue>,
    /// Headers added to every answer (an upstream that forges Warden's own).
    extra_headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

/// How an upstream Warden must not trust may encode its answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerEncoding {
    /// gzip with `content-encoding: gzip`, although Warden asked for `identity`: a whole
    /// answer in one piece, a stream chunk by chunk as it goes (each flushed).
    Gzip,
    /// `content-encoding: compress` (which Warden does not decode), the bytes as they were.
    Compress,
    /// `content-encoding: gzip` on bytes that are not gzip.
    NotGzip,
    /// UTF-16LE text with the content type as it was (no charset), as Python's `json.loads`
    /// reads bytes.
    Utf16Le,
    /// UTF-16LE text with `charset=utf-16le` in its content type.
    Utf16LeDeclared,
}

#[derive(Debug, Default)]
struct State {
    knobs: Mutex<Knobs>,
    requests: Mutex<Vec<RecordedRequest>>,
    request_seen: Notify,
    streams_started: AtomicUsize,
    streams_completed: AtomicUsize,
    streams_aborted: AtomicUsize,
}

impl State {
    fn knobs(&self) -> MutexGuard<'_, Knobs> {
        self.knobs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn requests(&self) -> MutexGuard<'_, Vec<RecordedRequest>> {
        self.requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Holds streams after their first chunks until [`StreamGate::release`] (or drop).
#[derive(Debug)]
pub struct StreamGate {
    open: watch::Sender<bool>,
}

impl StreamGate {
    /// Lets every held stream (and later ones) run to the end.
    pub fn release(&self) {
        self.open.send_replace(true);
    }
}

impl Drop for StreamGate {
    fn drop(&mut self) {
        self.release();
    }
}

/// The running fake upstream; stops when dropped.
#[derive(Debug)]
pub struct FakeLlm {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl FakeLlm {
    /// Starts on 127.0.0.1 with a free port and a 15 ms delay between stream chunks.
    pub async fn start() -> std::io::Result<FakeLlm> {
        FakeLlm::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts on `addr`.
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<FakeLlm> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::default());
        state.knobs().chunk_delay = Duration::from_millis(15);
        let task = tokio::spawn(serve(listener, state.clone()));
        Ok(FakeLlm { addr, state, task })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests().clone()
    }

    /// The most recent request, if any.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.state.requests().last().cloned()
    }

    /// Waits until at least `n` requests were received, up to `timeout`.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<RecordedRequest> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let seen = self.state.request_seen.notified();
            let requests = self.requests();
            if requests.len() >= n || tokio::time::Instant::now() >= deadline {
                return requests;
            }
            let _ = tokio::time::timeout_at(deadline, seen).await;
        }
    }

    /// Answers every request with `failure` until [`FakeLlm::clear_failure`].
    pub fn fail_with(&self, failure: Failure) {
        self.state.knobs().failure = Some(failure);
    }

    /// Stops failing requests.
    pub fn clear_failure(&self) {
        self.state.knobs().failure = None;
    }

    /// Waits this long before sending response headers.
    pub fn set_response_delay(&self, delay: Duration) {
        self.state.knobs().response_delay = delay;
    }

    /// Waits this long between stream chunks.
    pub fn set_chunk_delay(&self, delay: Duration) {
        self.state.knobs().chunk_delay = delay;
    }

    /// Requires these provider keys (401 in the provider's shape otherwise).
    pub fn require_keys(&self, keys: RequiredKeys) {
        self.state.knobs().keys = keys;
    }

    /// With `false`, answers every request in text as if it declared no tools (the default,
    /// `true`, proposes a call of the first declared tool until the conversation carries a tool
    /// result). An agent such as OpenClaw declares a dozen tools on every turn; this keeps its
    /// turn to one plain answer.
    pub fn propose_tools(&self, on: bool) {
        self.state.knobs().text_only = !on;
    }

    /// Cuts every stream started from now on after its first `events` events: the connection
    /// breaks mid-body, as when a provider fails, and the usage never comes.
    pub fn cut_streams_after(&self, events: usize) {
        self.state.knobs().cut_after = Some(events);
    }

    /// Pads every whole (not streamed) OpenAI chat answer from now on with `bytes` more bytes
    /// (a `padding` field), its usage block last as usual.
    pub fn pad_answers(&self, bytes: usize) {
        self.state.knobs().pad = bytes;
    }

    /// Encodes every answer from now on with `encoding` (`None`: plain UTF-8, uncompressed).
    pub fn encode_answers(&self, encoding: Option<AnswerEncoding>) {
        self.state.knobs().encoding = encoding;
    }

    /// With `true`, every Responses API stream from now on proposes its calls with arguments
    /// that differ between copies: the deltas and `function_call_arguments.done` carry the
    /// proposed arguments, the done item and `response.completed` `{"command":"ls"}`.
    pub fn diverge_responses(&self, on: bool) {
        self.state.knobs().diverge = on;
    }

    /// Answers every request that asks to stream (`"stream": true`), from now on, with
    /// `events` as they are: each its own write, paced as any stream, in any provider's
    /// shape and however malformed (`None`: the answers as built from the request again).
    /// Encoding, cutting and holding do not apply to them.
    pub fn script_streams(&self, events: Option<Vec<String>>) {
        self.state.knobs().script = events.map(|all| all.into_iter().map(Bytes::from).collect());
    }

    /// Sends the scripted streams with `content_type` (`None`: `text/event-stream`), as an
    /// upstream that mislabels its stream would.
    pub fn script_content_type(&self, content_type: Option<&'static str>) {
        self.state.knobs().script_type = content_type.map(http::HeaderValue::from_static);
    }

    /// Adds `headers` to every answer built from now on (scripted streams excepted), as an
    /// upstream that speaks in Warden's name (`x-warden-decision: deny`) would.
    pub fn add_headers(&self, headers: &[(&'static str, &'static str)]) {
        self.state.knobs().extra_headers = headers
            .iter()
            .map(|(name, value)| {
                (
                    http::HeaderName::from_static(name),
                    http::HeaderValue::from_static(value),
                )
            })
            .collect();
    }

    /// Holds every stream started from now on after its first chunks until the gate opens.
    pub fn hold_streams(&self) -> StreamGate {
        let (open, held) = watch::channel(false);
        self.state.knobs().gate = Some(held);
        StreamGate { open }
    }

    /// Streams begun so far.
    pub fn streams_started(&self) -> usize {
        self.state.streams_started.load(Ordering::SeqCst)
    }

    /// Streams whose last chunk was handed to the connection.
    pub fn streams_completed(&self) -> usize {
        self.state.streams_completed.load(Ordering::SeqCst)
    }

    /// Streams cut short because the peer went away.
    pub fn streams_aborted(&self) -> usize {
        self.state.streams_aborted.load(Ordering::SeqCst)
    }
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, state: Arc<State>) {
    crate::serve::accept_loop(listener, state, handle).await;
}

/// What a handler needs to build a response.
pub(crate) struct Exchange {
    pub request: RecordedRequest,
    pub json: Value,
    pub stream: StreamCtl,
    /// Bytes of padding a whole OpenAI chat answer carries.
    pub pad: usize,
    /// Responses API call items differ from their deltas ([`FakeLlm::diverge_responses`]).
    pub diverge: bool,
}

/// Pacing and bookkeeping of one streamed response.
#[derive(Clone)]
pub(crate) struct StreamCtl {
    state: Arc<State>,
    pub chunk_delay: Duration,
    gate: Option<watch::Receiver<bool>>,
    cut_after: Option<usize>,
}

impl StreamCtl {
    /// Sends `events` one by one, holding at the gate after `hold_after` of them.
    pub fn spawn(self, events: Vec<Bytes>, hold_after: usize) -> FakeBody {
        let (tx, body) = FakeBody::channel();
        self.state.streams_started.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            for (i, event) in events.into_iter().enumerate() {
                if i > 0 {
                    tokio::time::sleep(self.chunk_delay).await;
                }
                if i == hold_after
                    && let Some(mut gate) = self.gate.clone()
                {
                    let _ = gate.wait_for(|open| *open).await;
                }
                if self.cut_after == Some(i) {
                    let _ = tx.send(None).await;
                    self.state.streams_aborted.fetch_add(1, Ordering::SeqCst);
                    return;
                }
                if tx.send(Some(event)).await.is_err() {
                    self.state.streams_aborted.fetch_add(1, Ordering::SeqCst);
                    return;
                }
            }
            self.state.streams_completed.fetch_add(1, Ordering::SeqCst);
        });
        body
    }
}

async fn handle(
    req: http::Request<Incoming>,
    state: Arc<State>,
) -> Result<Response<FakeBody>, Infallible> {
    let (parts, incoming) = req.into_parts();
    let body = match incoming.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| parts.uri.path().to_owned());
    let request = RecordedRequest {
        method: parts.method,
        path,
        headers: parts.headers,
        body,
    };
    state.requests().push(request.clone());
    state.request_seen.notify_waiters();

    let script = state.knobs().script.clone();
    let script_type = state.knobs().script_type.clone();
    let extra_headers = state.knobs().extra_headers.clone();
    let (failure, delay, chunk_delay, gate, keys, text_only, cut_after, pad, encoding, diverge) = {
        let k = state.knobs();
        (
            k.failure.clone(),
            k.response_delay,
            k.chunk_delay,
            k.gate.clone(),
            k.keys.clone(),
            k.text_only,
            k.cut_after,
            k.pad,
            k.encoding,
            k.diverge,
        )
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let provider = provider_of(&request);
    if let Some(failure) = failure {
        return Ok(error_response(provider, &failure));
    }
    if let Some(status) = check_key(provider, &request, &keys) {
        return Ok(error_response(provider, &Failure::status(status)));
    }
    let mut json = if request.body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&request.body) {
            Ok(v) => v,
            Err(_) => {
                return Ok(error_response(
                    provider,
                    &Failure::status(StatusCode::BAD_REQUEST),
                ));
            }
        }
    };
    if text_only && let Some(object) = json.as_object_mut() {
        // The answer is built as for a request without tools; the recorded request keeps them.
        object.remove("tools");
    }
    let exchange = Exchange {
        request,
        json,
        stream: StreamCtl {
            state,
            chunk_delay,
            gate,
            cut_after,
        },
        pad,
        diverge,
    };
    if let Some(events) = script.filter(|_| exchange.json["stream"] == true) {
        let StreamCtl {
            state, chunk_delay, ..
        } = exchange.stream;
        let paced = StreamCtl {
            state,
            chunk_delay,
            gate: None,
            cut_after: None,
        };
        let mut response = sse_response(paced.spawn(events, usize::MAX));
        if let Some(content_type) = script_type {
            response
                .headers_mut()
                .insert(http::header::CONTENT_TYPE, content_type);
        }
        return Ok(response);
    }
    let response = match provider {
        Provider::OpenAi => openai::respond(exchange),
        Provider::Anthropic => anthropic::respond(exchange),
        Provider::Gemini => gemini::respond(exchange),
    };
    let response = response
        .unwrap_or_else(|| error_response(provider, &Failure::status(StatusCode::NOT_FOUND)));
    let mut response = match encoding {
        Some(encoding) => encoded(response, encoding).await,
        None => response,
    };
    for (name, value) in extra_headers {
        response.headers_mut().append(name, value);
    }
    Ok(response)
}

/// `response` encoded as `encoding` says: gzip as it streams, the rest whole (a stream is
/// sent in one piece once complete).
async fn encoded(response: Response<FakeBody>, encoding: AnswerEncoding) -> Response<FakeBody> {
    let (mut parts, body) = response.into_parts();
    parts.headers.remove(http::header::CONTENT_LENGTH);
    let coding = match encoding {
        AnswerEncoding::Gzip | AnswerEncoding::NotGzip => Some("gzip"),
        AnswerEncoding::Compress => Some("compress"),
        AnswerEncoding::Utf16Le | AnswerEncoding::Utf16LeDeclared => None,
    };
    if let Some(coding) = coding {
        parts.headers.insert(
            http::header::CONTENT_ENCODING,
            http::HeaderValue::from_static(coding),
        );
    }
    if encoding == AnswerEncoding::Gzip {
        return Response::from_parts(parts, gzipped(body));
    }
    let text = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let bytes = match encoding {
        AnswerEncoding::Utf16Le | AnswerEncoding::Utf16LeDeclared => {
            if encoding == AnswerEncoding::Utf16LeDeclared {
                parts.headers.insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json; charset=utf-16le"),
                );
            }
            String::from_utf8_lossy(&text)
                .encode_utf16()
                .flat_map(u16::to_le_bytes)
                .collect()
        }
        _ => text.to_vec(),
    };
    Response::from_parts(parts, FakeBody::full(bytes))
}

/// `body` gzipped as it streams: each chunk compressed and flushed as it comes, so that the
/// receiver can decode it before the end.
fn gzipped(mut body: FakeBody) -> FakeBody {
    use std::io::Write as _;
    let (tx, out) = FakeBody::channel();
    tokio::spawn(async move {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        while let Some(frame) = body.frame().await {
            let Ok(Some(data)) = frame.map(|f| f.into_data().ok()) else {
                let _ = tx.send(None).await;
                return;
            };
            let _ = gz.write_all(&data);
            let _ = gz.flush();
            let piece = std::mem::take(gz.get_mut());
            if tx.send(Some(Bytes::from(piece))).await.is_err() {
                return;
            }
        }
        let rest = gz.finish().unwrap_or_default();
        let _ = tx.send(Some(Bytes::from(rest))).await;
    });
    out
}

/// Anthropic requests carry `anthropic-version`; Gemini paths start with `/v1beta` or `/v1/models/…:`.
fn provider_of(req: &RecordedRequest) -> Provider {
    let path = req.path.split('?').next().unwrap_or("");
    if path.starts_with("/v1beta/") || (path.starts_with("/v1/models/") && path.contains(':')) {
        Provider::Gemini
    } else if req.headers.contains_key("anthropic-version")
        || path == "/v1/messages"
        || path.starts_with("/v1/messages/")
    {
        Provider::Anthropic
    } else {
        Provider::OpenAi
    }
}

fn check_key(provider: Provider, req: &RecordedRequest, keys: &RequiredKeys) -> Option<StatusCode> {
    let ok = match provider {
        Provider::OpenAi => keys
            .openai
            .as_ref()
            .is_none_or(|k| req.header("authorization") == Some(&format!("Bearer {k}"))),
        Provider::Anthropic => {
            if !req.headers.contains_key("anthropic-version") {
                return Some(StatusCode::BAD_REQUEST);
            }
            // Anthropic takes the key in `x-api-key`; recent SDKs send `Authorization: Bearer`.
            keys.anthropic.as_ref().is_none_or(|k| {
                req.header("x-api-key") == Some(k.as_str())
                    || req.header("authorization") == Some(&format!("Bearer {k}"))
            })
        }
        Provider::Gemini => keys.gemini.as_ref().is_none_or(|k| {
            req.header("x-goog-api-key") == Some(k.as_str())
                || req.path.contains(&format!("key={k}"))
        }),
    };
    (!ok).then_some(StatusCode::UNAUTHORIZED)
}

/// The provider's own error response for `failure`.
pub fn error_response(provider: Provider, failure: &Failure) -> Response<FakeBody> {
    let body = match provider {
        Provider::OpenAi => openai::error_body(failure.status),
        Provider::Anthropic => anthropic::error_body(failure.status),
        Provider::Gemini => gemini::error_body(failure.status),
    };
    let mut builder = Response::builder()
        .status(failure.status)
        .header("content-type", "application/json");
    if let Some(retry) = &failure.retry_after {
        builder = builder.header("retry-after", retry.as_str());
    }
    if provider == Provider::OpenAi && failure.status == StatusCode::TOO_MANY_REQUESTS {
        builder = builder
            .header("x-ratelimit-remaining-requests", "0")
            .header("x-ratelimit-reset-requests", "7s");
    }
    builder
        .body(FakeBody::full(body.to_string()))
        .unwrap_or_else(|_| Response::new(FakeBody::full("")))
}

/// A JSON response with status 200.
pub(crate) fn json_response(value: &Value) -> Response<FakeBody> {
    let mut response = Response::new(FakeBody::full(value.to_string()));
    response.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// A 200 `text/event-stream` response streaming `body`.
pub(crate) fn sse_response(body: FakeBody) -> Response<FakeBody> {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        "content-type",
        http::HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    headers.insert("cache-control", http::HeaderValue::from_static("no-cache"));
    response
}

/// An SSE `data:` event.
pub(crate) fn data_event(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

/// An SSE event with a name.
pub(crate) fn named_event(name: &str, value: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {value}\n\n"))
}

/// Splits `s` into `n` roughly equal pieces on char boundaries (at least one piece).
pub(crate) fn fragments(s: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    let size = chars.len().div_ceil(n.max(1)).max(1);
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

/// The calls `tools` make the model propose: each tool (its fields in the object at pointer
/// `at`: `""` or `/function`) whose `description` is `propose:<arguments JSON>`, as its
/// name and the arguments' text.
pub(crate) fn proposed_calls<'a>(
    tools: impl IntoIterator<Item = &'a Value>,
    at: &str,
) -> Vec<(String, String)> {
    tools
        .into_iter()
        .filter_map(|t| {
            let tool = t.pointer(at)?;
            let name = tool.get("name")?.as_str()?;
            let args = tool
                .get("description")?
                .as_str()?
                .strip_prefix(PROPOSE_PREFIX)?;
            Some((name.to_owned(), args.to_owned()))
        })
        .collect()
}

/// The id of the `n`th of several proposed calls: `first`, then `first1`, `first2`, ...
pub(crate) fn nth_id(first: &str, n: usize) -> String {
    if n == 0 {
        first.to_owned()
    } else {
        format!("{first}{n}")
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
