//! An upstream that answers every request with what it received: method, path and query, and
//! every header, as JSON (`{"method", "path", "headers": {name: value}}`), and the path and
//! `authorization` again in response headers (`content-location`, `x-echo-authorization`). It stands for an API
//! whose error messages quote the request (the credential with it), and lets a test see what
//! Warden sent. Every request is kept.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The running upstream; stops when dropped.
pub struct Echo {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Value>>>,
    task: JoinHandle<()>,
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Echo {
    /// Starts on a free port of 127.0.0.1.
    pub async fn start() -> std::io::Result<Echo> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(serve(listener, Arc::clone(&seen)));
        Ok(Echo { addr, seen, task })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What each request received, as answered.
    pub fn seen(&self) -> Vec<Value> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

async fn serve(listener: TcpListener, state: Arc<Mutex<Vec<Value>>>) {
    crate::serve::accept_loop(listener, state, handle).await;
}

async fn handle(
    req: http::Request<Incoming>,
    seen: Arc<Mutex<Vec<Value>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let headers: BTreeMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let answer = json!({
        "method": req.method().as_str(),
        "path": req.uri().path_and_query().map_or("/", |p| p.as_str()),
        "headers": headers,
    });
    seen.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(answer.clone());
    let mut response = Response::new(Full::new(Bytes::from(answer.to_string())));
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    // As a redirect or a debug header would quote them.
    if let Some(path) = answer["path"].as_str().and_then(|p| p.parse().ok()) {
        headers.insert(http::header::CONTENT_LOCATION, path);
    }
    if let Some(auth) = answer["headers"]["authorization"]
        .as_str()
        .and_then(|a| a.parse().ok())
    {
        headers.insert("x-echo-authorization", auth);
    }
    Ok(response)
}
