//! A webhook receiver on 127.0.0.1: keeps every request it gets (path, headers, exact body
//! bytes) and answers `200 ok`, as a Slack incoming webhook does. Stands for the chat or
//! automation endpoint approval notifications are posted to.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Path and query.
    pub path: String,
    pub headers: HeaderMap,
    /// The body as sent, byte for byte (a signature covers these bytes).
    pub body: Bytes,
}

impl Delivery {
    /// The body as JSON (`Value::Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }
}

/// The running receiver; stops when dropped.
pub struct Webhook {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Delivery>>>,
    task: JoinHandle<()>,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Webhook {
    /// Starts on a free port of 127.0.0.1.
    pub async fn start() -> std::io::Result<Webhook> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let got = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(crate::serve::accept_loop(
            listener,
            Arc::clone(&got),
            handle,
        ));
        Ok(Webhook { addr, got, task })
    }

    /// `http://127.0.0.1:PORT<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The requests posted to `path` so far.
    pub fn deliveries(&self, path: &str) -> Vec<Delivery> {
        self.got
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|d| d.path == path)
            .cloned()
            .collect()
    }

    /// The first request posted to `path`, waiting at most `timeout` for it.
    pub async fn delivery(&self, path: &str, timeout: Duration) -> anyhow::Result<Delivery> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(d) = self.deliveries(path).into_iter().next() {
                return Ok(d);
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!("nothing was posted to {path} within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn handle(
    req: http::Request<Incoming>,
    got: Arc<Mutex<Vec<Delivery>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (head, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    got.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Delivery {
            path: head
                .uri
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned(),
            headers: head.headers,
            body,
        });
    Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
}
