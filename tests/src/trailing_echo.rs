//! An upstream written by hand over TCP (HTTP/1.1, one request per connection) that answers
//! every request in chunked encoding: a JSON body quoting the request's `authorization`, split
//! across two chunks in the middle of it, and a trailer (`x-echo-authorization`) quoting it
//! again, as an API that echoes or signs its request in trailers would; like hyper's server,
//! it sends the trailer only to a request that asks with `te: trailers`. When the request's
//! query holds `gzip`, the body is gzipped, each chunk flushed as it goes.

use std::io::Write as _;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The running upstream; stops when dropped.
pub struct TrailingEcho {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for TrailingEcho {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TrailingEcho {
    /// Starts on a free port of 127.0.0.1.
    pub async fn start() -> std::io::Result<TrailingEcho> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(answer(stream));
            }
        });
        Ok(TrailingEcho { addr, task })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Reads one request's head (its body, if any, is left unread) and answers it.
async fn answer(mut stream: TcpStream) -> std::io::Result<()> {
    let head = read_head(&mut stream).await?;
    let request_line = head.lines().next().unwrap_or_default().to_owned();
    let header = |wanted: &str| {
        head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case(wanted)
                .then(|| value.trim().to_owned())
        })
    };
    let authorization = header("authorization").unwrap_or_default();
    let asks_trailers = header("te").is_some_and(|te| {
        te.split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
    });
    let gzip = request_line
        .split_whitespace()
        .nth(1)
        .and_then(|target| target.split_once('?'))
        .is_some_and(|(_, query)| query.contains("gzip"));
    let body = format!("{{\"authorization\":\"{authorization}\"}}");
    let (first, second) = body.split_at(body.len() / 2);
    let mut out = String::from(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\
         trailer: x-echo-authorization\r\nconnection: close\r\n",
    );
    if gzip {
        out.push_str("content-encoding: gzip\r\n");
    }
    out.push_str("\r\n");
    stream.write_all(out.as_bytes()).await?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for piece in [first, second] {
        let data = if gzip {
            gz.write_all(piece.as_bytes())?;
            gz.flush()?;
            std::mem::take(gz.get_mut())
        } else {
            piece.as_bytes().to_vec()
        };
        write_chunk(&mut stream, &data).await?;
    }
    if gzip {
        write_chunk(&mut stream, &gz.finish()?).await?;
    }
    let end = match asks_trailers {
        true => format!("0\r\nx-echo-authorization: {authorization}\r\n\r\n"),
        false => "0\r\n\r\n".to_owned(),
    };
    stream.write_all(end.as_bytes()).await?;
    stream.shutdown().await
}

async fn write_chunk(stream: &mut TcpStream, data: &[u8]) -> std::io::Result<()> {
    stream
        .write_all(format!("{:x}\r\n", data.len()).as_bytes())
        .await?;
    stream.write_all(data).await?;
    stream.write_all(b"\r\n").await?;
    stream.flush().await
}

/// The request's head, up to its blank line.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await? == 0 {
            break;
        }
        head.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// `GET path` sent by hand to `base` (`http://HOST:PORT`) with `te: trailers` and the bearer
/// `token`: the whole answer as it came on the wire (status line, headers, chunks and
/// trailers), the connection closed after it.
pub async fn get_with_trailers(base: &str, path: &str, token: &str) -> std::io::Result<String> {
    get_raw(base, path, token, "te: trailers\r\n").await
}

/// As [`get_with_trailers`], without asking for trailers.
pub async fn get_without_trailers(base: &str, path: &str, token: &str) -> std::io::Result<String> {
    get_raw(base, path, token, "").await
}

/// `GET path` with the bearer `token` and the header lines `more`, read to its end.
async fn get_raw(base: &str, path: &str, token: &str, more: &str) -> std::io::Result<String> {
    let host = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(host).await?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {token}\r\n\
         {more}connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    Ok(String::from_utf8_lossy(&raw).into_owned())
}
