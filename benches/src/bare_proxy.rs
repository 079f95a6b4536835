//! The floor under Warden: a bare hyper-util reverse proxy on the same stack Warden serves
//! with (hyper-util's server, its pooled legacy client, one single-threaded tokio runtime as
//! each Warden worker) and none of Warden's stages. Warden's figure minus this one is what
//! authentication, Cedar, the audit log and the rest cost; this one minus nginx's is what the
//! stack itself costs.
//!
//! With an [`AuditLog`] (target `hyper-audit`) it is the floor under Warden's `disk`
//! durability: the same proxy that, like Warden, makes a decision record durable through
//! Warden's own audit writer before it calls the upstream and appends an outcome record after,
//! and does nothing else. No Warden that keeps the record on disk before the upstream call
//! with this writer can serve faster than this floor on the same machine.

use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use warden::audit::AuditLog;

use crate::inline_log::InlineLog;
use crate::records;

/// How the bare proxy records each request, if it does.
#[derive(Clone)]
pub enum Recorder {
    /// Through Warden's audit log (its writer thread).
    Log(Arc<AuditLog>),
    /// Encoded, chained and written by the worker itself (the experiment `hyper-inline`).
    Inline(Arc<InlineLog>),
}

type Body = Either<Incoming, Full<Bytes>>;

/// Serves on `listener`, forwarding every request to `upstream` with its path and query kept,
/// the request body read whole first (as Warden reads it for its checks), the response
/// streamed back. With `audit`, every request's decision record is durable before the
/// upstream call and its outcome record is appended after it, as Warden does.
pub async fn serve(
    listener: TcpListener,
    upstream: SocketAddr,
    audit: Option<Recorder>,
) -> std::io::Result<()> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Arc<Client<HttpConnector, Full<Bytes>>> = Arc::new(
        Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(64)
            .build(connector),
    );
    let server = Arc::new(auto::Builder::new(TokioExecutor::new()));
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let client = client.clone();
        let server = server.clone();
        let audit = audit.clone();
        tokio::spawn(async move {
            let service =
                service_fn(move |req| forward(client.clone(), audit.clone(), upstream, req));
            let _ = server.serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

async fn forward(
    client: Arc<Client<HttpConnector, Full<Bytes>>>,
    audit: Option<Recorder>,
    upstream: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let Ok(uri) = format!("http://{upstream}{path}").parse::<Uri>() else {
        return Ok(status(StatusCode::BAD_REQUEST));
    };
    parts.uri = uri;
    parts.headers.remove(http::header::HOST);
    let Ok(body) = body.collect().await.map(|c| c.to_bytes()) else {
        return Ok(status(StatusCode::BAD_REQUEST));
    };
    let recorded = match &audit {
        None => Ok(()),
        Some(Recorder::Log(log)) => log
            .append(records::decision())
            .await
            .map(|_| ())
            .map_err(|_| ()),
        Some(Recorder::Inline(log)) => log.append(&records::decision()).map_err(|_| ()),
    };
    if recorded.is_err() {
        return Ok(status(StatusCode::SERVICE_UNAVAILABLE));
    }
    let response = match client
        .request(Request::from_parts(parts, Full::new(body)))
        .await
    {
        Ok(response) => response.map(Either::Left),
        Err(_) => status(StatusCode::BAD_GATEWAY),
    };
    match &audit {
        None => {}
        Some(Recorder::Log(log)) => {
            log.append_detached(records::outcome(response.status().as_u16()))
        }
        Some(Recorder::Inline(log)) => {
            let _ = log.append(&records::outcome(response.status().as_u16()));
        }
    }
    Ok(response)
}

fn status(code: StatusCode) -> Response<Body> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::new())));
    *response.status_mut() = code;
    response
}
