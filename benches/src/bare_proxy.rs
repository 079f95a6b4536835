//! The floor under Warden: a bare hyper-util reverse proxy on the same stack Warden serves
//! with (hyper-util's server, its pooled legacy client, one single-threaded tokio runtime as
//! each Warden worker) and none of Warden's stages. Warden's figure minus this one is what authentication, Cedar, the audit
//! log and the rest cost; this one minus nginx's is what the stack itself costs.

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

type Body = Either<Incoming, Full<Bytes>>;

/// Serves on `listener`, forwarding every request to `upstream` with its path and query kept,
/// the request body read whole first (as Warden reads it for its checks), the response
/// streamed back.
pub async fn serve(listener: TcpListener, upstream: SocketAddr) -> std::io::Result<()> {
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
        tokio::spawn(async move {
            let service = service_fn(move |req| forward(client.clone(), upstream, req));
            let _ = server.serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

async fn forward(
    client: Arc<Client<HttpConnector, Full<Bytes>>>,
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
    match client
        .request(Request::from_parts(parts, Full::new(body)))
        .await
    {
        Ok(response) => Ok(response.map(Either::Left)),
        Err(_) => Ok(status(StatusCode::BAD_GATEWAY)),
    }
}

fn status(code: StatusCode) -> Response<Body> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::new())));
    *response.status_mut() = code;
    response
}
