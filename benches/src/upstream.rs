//! The bench upstream: a minimal hyper server answering chat completions with a fixed small
//! reply (usage included), so that the proxy in front of it, not the upstream, is measured.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use tokio::net::TcpListener;

/// A string only the bench upstream's reply contains: a probe finds it in the body when a
/// request went all the way through.
pub const REPLY_MARKER: &str = "chatcmpl-warden-bench";

/// The fixed chat-completion reply.
pub const REPLY: &str = concat!(
    r#"{"id":"chatcmpl-warden-bench","object":"chat.completion","created":1767225600,"#,
    r#""model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","#,
    r#""content":"Hello from the bench upstream."},"finish_reason":"stop"}],"#,
    r#""usage":{"prompt_tokens":250,"completion_tokens":7,"total_tokens":257}}"#
);

/// Serves until the listener fails; each connection is kept alive for as long as the
/// client wants.
pub async fn serve(listener: TcpListener) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            let service = service_fn(answer);
            // A client going away mid-request is normal at the end of a run.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// `POST …/chat/completions` → the fixed reply; anything else → 404, so that a proxy
/// rewriting the path wrongly shows up as errors instead of as speed.
async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let is_chat =
        request.method() == Method::POST && request.uri().path().ends_with("/chat/completions");
    // Read the whole body, as a real provider does before answering.
    let drained = request.into_body().collect().await.is_ok();
    let (status, body) = if is_chat && drained {
        (StatusCode::OK, Bytes::from_static(REPLY.as_bytes()))
    } else {
        (
            StatusCode::NOT_FOUND,
            Bytes::from_static(br#"{"error":"not found"}"#),
        )
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}
