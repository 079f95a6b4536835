//! A Splunk HTTP Event Collector double that follows Splunk's documented HEC contract (no
//! Splunk server installs here): token authentication with HEC's status codes and bodies,
//! the event endpoint's batch format (event objects one after the other, gzip or not),
//! channels (`X-Splunk-Request-Channel`, required with indexer acknowledgement), indexer
//! acknowledgement (`ackId` per channel, `/services/collector/ack`), and 503 "Server is busy"
//! back-pressure. Events are "indexed" a while after they arrive (`index_delay`): indexing
//! appends them to a file, flushed, and only then does their `ackId` read `true`. Events not
//! yet indexed are lost when the process is killed, as with a real indexer; that is what
//! acknowledgement protects against. A body limit (`max_body`: 413) and acknowledgements that
//! never come (`never_acknowledge`) stand for a proxy in front and a lost indexer. Runs in-process ([`Hec::start`]) or as the `hec-double`
//! binary (tests/src/bin/hec-double.rs), so a test can kill and restart it.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// How the double behaves.
#[derive(Debug, Clone)]
pub struct HecOptions {
    /// The one valid token.
    pub token: String,
    /// Indexer acknowledgement on (as a token setting).
    pub acks: bool,
    /// How long after it arrived an event is indexed.
    pub index_delay: Duration,
    /// Every Nth event request is answered 503 "Server is busy" (0: never).
    pub busy_every: u64,
    /// Where indexed events are appended, one JSON object a line.
    pub store: PathBuf,
    /// The largest request body taken, in bytes as sent (Splunk's `max_content_length`, a
    /// proxy's body limit): a larger one is answered 413 and nothing of it is indexed.
    pub max_body: Option<usize>,
    /// Acknowledgements never come: batches are indexed, their `ackId`s never read `true`
    /// (an indexer that lost them).
    pub never_acknowledge: bool,
}

/// HEC's answer bodies, as Splunk documents them.
fn reply(status: StatusCode, text: &str, code: u64) -> Response<Full<Bytes>> {
    json_response(status, json!({"text": text, "code": code}))
}

fn json_response(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    r
}

#[derive(Default)]
struct Channel {
    next_ack: u64,
    /// Acks indexed and not yet reported.
    indexed: HashSet<u64>,
}

struct State {
    options: HecOptions,
    channels: Mutex<HashMap<String, Channel>>,
    requests: AtomicU64,
    store: Mutex<std::fs::File>,
}

/// A double running in this process.
pub struct Hec {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Hec {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Hec {
    /// Starts on `addr` (port 0: a free one).
    pub async fn start(addr: SocketAddr, options: HecOptions) -> std::io::Result<Hec> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let store = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&options.store)?;
        let state = Arc::new(State {
            options,
            channels: Mutex::new(HashMap::new()),
            requests: AtomicU64::new(0),
            store: Mutex::new(store),
        });
        let task = tokio::spawn(crate::serve::accept_loop(listener, state, handle));
        Ok(Hec { addr, task })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// The events indexed into `store` so far (a torn last line, from a kill, is left out).
pub fn indexed(store: &Path) -> Vec<Value> {
    std::fs::read_to_string(store)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

async fn handle(
    req: http::Request<Incoming>,
    state: Arc<State>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let query_channel = req.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("channel=").map(str::to_owned))
    });
    if path == "/services/collector/health" {
        return Ok(reply(StatusCode::OK, "HEC is healthy", 17));
    }
    let event_paths = [
        "/services/collector",
        "/services/collector/event",
        "/services/collector/event/1.0",
    ];
    let is_event = event_paths.contains(&path.as_str());
    if !is_event && path != "/services/collector/ack" {
        return Ok(reply(
            StatusCode::NOT_FOUND,
            "The requested URL was not found on this server.",
            404,
        ));
    }
    // Token: `Authorization: Splunk <token>`.
    let auth = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let Some(auth) = auth else {
        return Ok(reply(StatusCode::UNAUTHORIZED, "Token is required", 2));
    };
    let Some(token) = auth.strip_prefix("Splunk ") else {
        return Ok(reply(StatusCode::UNAUTHORIZED, "Invalid authorization", 3));
    };
    if token != state.options.token {
        return Ok(reply(StatusCode::FORBIDDEN, "Invalid token", 4));
    }
    let channel = req
        .headers()
        .get("x-splunk-request-channel")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(query_channel);
    if state.options.acks && channel.is_none() {
        return Ok(reply(
            StatusCode::BAD_REQUEST,
            "Data channel is missing",
            10,
        ));
    }
    if channel.as_deref().is_some_and(|c| !is_guid(c)) {
        return Ok(reply(StatusCode::BAD_REQUEST, "Invalid data channel", 11));
    }
    let gzip = req
        .headers()
        .get(http::header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let Ok(body) = req.into_body().collect().await.map(|b| b.to_bytes()) else {
        return Ok(reply(StatusCode::BAD_REQUEST, "Invalid data format", 6));
    };
    if let Some(max) = state.options.max_body
        && body.len() > max
    {
        let text = format!(
            "Content-Length of {} too large (maximum is {max})",
            body.len()
        );
        return Ok(json_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({"text": text}),
        ));
    }
    let body = if gzip {
        let mut out = Vec::new();
        if flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .is_err()
        {
            return Ok(reply(StatusCode::BAD_REQUEST, "Invalid data format", 6));
        }
        Bytes::from(out)
    } else {
        body
    };
    if path == "/services/collector/ack" {
        return Ok(ack(&state, channel.unwrap_or_default(), &body));
    }
    let n = state.requests.fetch_add(1, Ordering::SeqCst) + 1;
    if state.options.busy_every > 0 && n.is_multiple_of(state.options.busy_every) {
        return Ok(reply(StatusCode::SERVICE_UNAVAILABLE, "Server is busy", 9));
    }
    // The batch: event objects one after the other.
    let mut events = Vec::new();
    for (i, item) in serde_json::Deserializer::from_slice(&body)
        .into_iter::<Value>()
        .enumerate()
    {
        let invalid = |text: &str, code: u64| {
            json_response(
                StatusCode::BAD_REQUEST,
                json!({"text": text, "code": code, "invalid-event-number": i}),
            )
        };
        let Ok(event) = item else {
            return Ok(invalid("Invalid data format", 6));
        };
        match event.get("event") {
            None => return Ok(invalid("Event field is required", 12)),
            Some(Value::String(s)) if s.is_empty() => {
                return Ok(invalid("Event field cannot be blank", 13));
            }
            Some(Value::Null) => return Ok(invalid("Event field cannot be blank", 13)),
            Some(_) => events.push(event),
        }
    }
    if events.is_empty() {
        return Ok(reply(StatusCode::BAD_REQUEST, "No data", 5));
    }
    if !state.options.acks {
        index(&state, &events);
        return Ok(reply(StatusCode::OK, "Success", 0));
    }
    let channel = channel.unwrap_or_default();
    let ack_id = {
        let mut channels = state.channels.lock().unwrap_or_else(|p| p.into_inner());
        let entry = channels.entry(channel.clone()).or_default();
        let id = entry.next_ack;
        entry.next_ack += 1;
        id
    };
    // Indexed later; lost if the process dies first.
    let later = Arc::clone(&state);
    tokio::spawn(async move {
        tokio::time::sleep(later.options.index_delay).await;
        index(&later, &events);
        if later.options.never_acknowledge {
            return;
        }
        let mut channels = later.channels.lock().unwrap_or_else(|p| p.into_inner());
        channels.entry(channel).or_default().indexed.insert(ack_id);
    });
    Ok(json_response(
        StatusCode::OK,
        json!({"text": "Success", "code": 0, "ackId": ack_id}),
    ))
}

/// `/services/collector/ack`: `{"acks": [ids]}` → `{"acks": {"id": bool}}`; an id reported
/// `true` is forgotten.
fn ack(state: &State, channel: String, body: &[u8]) -> Response<Full<Bytes>> {
    if !state.options.acks {
        return reply(StatusCode::BAD_REQUEST, "ACK is disabled", 14);
    }
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return reply(StatusCode::BAD_REQUEST, "Invalid data format", 6);
    };
    let Some(ids) = request["acks"].as_array() else {
        return reply(StatusCode::BAD_REQUEST, "Invalid data format", 6);
    };
    let mut channels = state.channels.lock().unwrap_or_else(|p| p.into_inner());
    let Some(known) = channels.get_mut(&channel) else {
        return reply(StatusCode::BAD_REQUEST, "Invalid data channel", 11);
    };
    let mut answer = serde_json::Map::new();
    for id in ids.iter().filter_map(Value::as_u64) {
        answer.insert(id.to_string(), json!(known.indexed.remove(&id)));
    }
    json_response(StatusCode::OK, json!({"acks": answer}))
}

fn index(state: &State, events: &[Value]) {
    let mut text = Vec::new();
    for e in events {
        let _ = serde_json::to_writer(&mut text, e);
        text.push(b'\n');
    }
    let mut file = state.store.lock().unwrap_or_else(|p| p.into_inner());
    let _ = file.write_all(&text);
    let _ = file.sync_data();
}

fn is_guid(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}
