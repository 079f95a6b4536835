//! A SaaS REST API double on 127.0.0.1: one server standing in for every shipped connector's
//! upstream, each under a base path of its own (`/github`, `/slack/api`, ...).
//!
//! It checks what a real API would: each base path requires its credential in its header (the
//! one Warden must inject), and it refuses any request that still carries an agent credential
//! (a Warden token in `Authorization`, `x-api-key`, `api-key` or `x-goog-api-key`). A request
//! that passes is answered 200 with `{"ok": true, "method", "path"}`; one that fails 401 with
//! why. Every request is recorded.

use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::json;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One request as the double received it.
#[derive(Debug, Clone)]
pub struct RestRequest {
    pub method: Method,
    /// Path and query.
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Whether the body arrived whole (not aborted mid-way); an aborted body is empty.
    pub complete: bool,
    /// Whether the double accepted it (credential right, no agent credential).
    pub accepted: bool,
}

/// What one base path requires: a header with an exact value.
#[derive(Debug, Clone)]
pub struct Credential {
    pub base: String,
    pub header: String,
    pub value: String,
}

#[derive(Debug, Default)]
struct State {
    required: Vec<Credential>,
    /// Texts that must never reach the API (the agents' tokens).
    forbidden: Vec<String>,
    requests: Vec<RestRequest>,
}

/// The running double; stops when dropped.
#[derive(Debug)]
pub struct FakeRest {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl Drop for FakeRest {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeRest {
    /// Starts on a free port, requiring `required` per base path and refusing requests that
    /// carry any of `forbidden`.
    pub async fn start(
        required: Vec<Credential>,
        forbidden: Vec<String>,
    ) -> std::io::Result<FakeRest> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            required,
            forbidden,
            requests: Vec::new(),
        }));
        let task = tokio::spawn(serve(listener, Arc::clone(&state)));
        Ok(FakeRest { addr, state, task })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Refuses requests carrying `text` from now on (an agent token issued after start).
    pub fn forbid(&self, text: &str) {
        self.lock().forbidden.push(text.to_owned());
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<RestRequest> {
        self.lock().requests.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn serve(listener: TcpListener, state: Arc<Mutex<State>>) {
    crate::serve::accept_loop(listener, state, handle).await;
}

async fn handle(
    req: http::Request<Incoming>,
    state: Arc<Mutex<State>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let (body, complete) = match body.collect().await {
        Ok(body) => (body.to_bytes(), true),
        Err(_) => (Bytes::new(), false),
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned());
    let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
    let problem = check(&state, &path, &parts.headers);
    state.requests.push(RestRequest {
        method: parts.method.clone(),
        path: path.clone(),
        headers: parts.headers.clone(),
        body,
        complete,
        accepted: problem.is_none(),
    });
    let (status, body) = match problem {
        None => (
            StatusCode::OK,
            json!({"ok": true, "method": parts.method.as_str(), "path": path}),
        ),
        Some(why) => (StatusCode::UNAUTHORIZED, json!({"ok": false, "error": why})),
    };
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        "application/json".parse().expect("static"),
    );
    Ok(response)
}

/// Why the API would refuse the request, if it would.
fn check(state: &State, path: &str, headers: &HeaderMap) -> Option<String> {
    for text in &state.forbidden {
        let leaked = headers.iter().any(|(_, v)| {
            v.as_bytes()
                .windows(text.len())
                .any(|w| w == text.as_bytes())
        });
        if leaked {
            return Some("an agent credential reached the API".into());
        }
    }
    let Some(required) = state
        .required
        .iter()
        .filter(|c| path.starts_with(&c.base))
        .max_by_key(|c| c.base.len())
    else {
        return Some(format!("no API is served at {path}"));
    };
    match headers.get(&required.header).and_then(|v| v.to_str().ok()) {
        Some(v) if v == required.value => None,
        Some(_) => Some(format!("wrong {} credential", required.header)),
        None => Some(format!("no {} credential", required.header)),
    }
}
