//! A hostile upstream written by hand over TCP (HTTP/1.1, one request per connection): every
//! request is read (its head, and its body by `content-length`) and answered with the bytes a
//! test scripted, as they are — any status, any headers, chunked bodies with trailers — so a
//! test can send what no well-behaved server library would. The request's head and body are
//! kept for the test to read.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// What the upstream answers a request, given its head (request line and headers) and body:
/// the raw bytes of a whole HTTP/1.1 response.
pub type Script = Arc<dyn Fn(&str, &[u8]) -> Vec<u8> + Send + Sync>;

/// The requests received (head, body), oldest first.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// The running upstream; stops when dropped.
pub struct Hostile {
    addr: SocketAddr,
    requests: Received,
    task: JoinHandle<()>,
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Hostile {
    /// Starts on a free port of 127.0.0.1, answering every request as `script` says.
    pub async fn start(script: Script) -> std::io::Result<Hostile> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let requests: Received = Arc::default();
        let kept = Arc::clone(&requests);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(answer(stream, Arc::clone(&script), Arc::clone(&kept)));
            }
        });
        Ok(Hostile {
            addr,
            requests,
            task,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The requests received so far (head, body), oldest first.
    pub fn requests(&self) -> Vec<(String, Vec<u8>)> {
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// A whole response: `status` line text (`200 OK`), `headers` (name, value), and `body` sent
/// with its length.
pub fn whole(status: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    ));
    out.into_bytes()
}

/// A chunked response: `status`, `headers`, `body` in one chunk, then `trailers` (declared in
/// a `trailer` header, as HTTP/1.1 requires for them to be passed on).
pub fn chunked(
    status: &str,
    headers: &[(&str, &str)],
    body: &str,
    trailers: &[(&str, &str)],
) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    let declared: Vec<&str> = trailers.iter().map(|(name, _)| *name).collect();
    if !declared.is_empty() {
        out.push_str(&format!("trailer: {}\r\n", declared.join(", ")));
    }
    out.push_str("transfer-encoding: chunked\r\nconnection: close\r\n\r\n");
    out.push_str(&format!("{:x}\r\n{body}\r\n0\r\n", body.len()));
    for (name, value) in trailers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// Reads one request and answers it as `script` says.
async fn answer(mut stream: TcpStream, script: Script, kept: Received) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let length = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())
                .flatten()
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await?;
    let out = script(&head, &body);
    kept.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((head, body));
    stream.write_all(&out).await?;
    stream.flush().await?;
    stream.shutdown().await
}
