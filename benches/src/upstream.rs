//! The bench upstream: a minimal hyper server answering chat completions with a fixed small
//! reply (usage included), so that the proxy in front of it, not the upstream, is measured;
//! and, on paths ending in `/mcp`, a minimal MCP server (Streamable HTTP, JSON answers) with
//! one tool, `echo`.

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

/// The session id the bench MCP server gives every session.
pub const MCP_SESSION: &str = "warden-bench-session";

/// `POST …/chat/completions` → the fixed reply; `POST …/mcp` → the MCP server; `POST
/// /v1/traces` → an OTLP collector's empty answer; anything
/// else → 404, so that a proxy rewriting the path wrongly shows up as errors instead of as
/// speed.
async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let post = request.method() == Method::POST;
    let path = request.uri().path();
    let is_chat = post && path.ends_with("/chat/completions");
    let is_mcp = post && path.ends_with("/mcp");
    // An OTLP/HTTP collector that accepts every export (`warden-traced`): an empty
    // `ExportTraceServiceResponse` is zero bytes.
    let is_otlp = post && path == "/v1/traces";
    // Read the whole body, as a real provider does before answering.
    let body = request.into_body().collect().await.map(|b| b.to_bytes());
    let (status, body, session) = match body {
        Ok(_) if is_chat => (StatusCode::OK, Bytes::from_static(REPLY.as_bytes()), false),
        Ok(_) if is_otlp => (StatusCode::OK, Bytes::new(), false),
        Ok(body) if is_mcp => match mcp(&body) {
            McpAnswer::Result(result, session) => (StatusCode::OK, result, session),
            McpAnswer::Accepted => (StatusCode::ACCEPTED, Bytes::new(), false),
            McpAnswer::Bad => (
                StatusCode::BAD_REQUEST,
                Bytes::from_static(br#"{"error":"not a JSON-RPC message"}"#),
                false,
            ),
        },
        _ => (
            StatusCode::NOT_FOUND,
            Bytes::from_static(br#"{"error":"not found"}"#),
            false,
        ),
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    if session {
        headers.insert(
            "mcp-session-id",
            header::HeaderValue::from_static(MCP_SESSION),
        );
    }
    Ok(response)
}

/// What the bench MCP server answers one message with.
enum McpAnswer {
    /// A JSON-RPC response; `true` when it opens a session.
    Result(Bytes, bool),
    /// A notification or a response: 202, no body.
    Accepted,
    /// Not a JSON-RPC message.
    Bad,
}

/// `initialize`, `tools/list`, `tools/call` of `echo` (its text back, after the reply
/// marker), `ping`; other requests get JSON-RPC's method-not-found.
fn mcp(body: &[u8]) -> McpAnswer {
    let Ok(message) = serde_json::from_slice::<serde_json::Value>(body) else {
        return McpAnswer::Bad;
    };
    let (Some(id), Some(method)) = (message.get("id"), message["method"].as_str()) else {
        return if message.get("method").is_some() || message.get("result").is_some() {
            McpAnswer::Accepted
        } else {
            McpAnswer::Bad
        };
    };
    let (outcome, session) = match method {
        "initialize" => (
            Ok(serde_json::json!({
                "protocolVersion": message["params"]["protocolVersion"]
                    .as_str()
                    .unwrap_or(crate::loadgen::MCP_PROTOCOL_VERSION),
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "warden-bench", "version": "1"},
            })),
            true,
        ),
        "ping" => (Ok(serde_json::json!({})), false),
        "tools/list" => (
            Ok(serde_json::json!({"tools": [{
                "name": "echo",
                "description": "Returns the text it is given.",
                "inputSchema": {
                    "type": "object",
                    "properties": {"text": {"type": "string"}},
                    "required": ["text"],
                },
            }]})),
            false,
        ),
        "tools/call" if message["params"]["name"] == "echo" => {
            let text = message["params"]["arguments"]["text"]
                .as_str()
                .unwrap_or_default();
            (
                Ok(serde_json::json!({
                    "content": [{"type": "text", "text": format!("{REPLY_MARKER} {text}")}],
                    "isError": false,
                })),
                false,
            )
        }
        _ => (
            Err(serde_json::json!({"code": -32601, "message": "method not found"})),
            false,
        ),
    };
    let answer = match outcome {
        Ok(result) => serde_json::json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err(error) => serde_json::json!({"jsonrpc": "2.0", "id": id, "error": error}),
    };
    McpAnswer::Result(Bytes::from(answer.to_string()), session)
}
