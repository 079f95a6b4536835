//! The MCP dialect: JSON-RPC messages read strictly (`jsonrpc.rs`), federated names
//! (`names.rs`), what each message asks for (`meaning.rs`; a server's requests to the agent:
//! `server_ask.rs`), and MCP's answers to refusals and
//! errors (here). Sessions and the upstream servers are `crate::mcp`'s.

pub mod jsonrpc;
pub mod meaning;
pub mod names;
pub mod server_ask;
pub mod shape;

pub use shape::McpShape;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};

use crate::protocol::dialect::{Dialect, Inbound, Interpreted, Shape};
use crate::protocol::errors::ProtocolError;
use crate::protocol::refusal::{self as refusals, Refusal};
use crate::protocol::response;
use crate::protocol::usage::Usage;
use crate::text::Quoted;

/// The MCP dialect (JSON-RPC 2.0, over Streamable HTTP or the legacy HTTP+SSE transport).
pub struct Mcp;

impl Dialect for Mcp {
    fn name(&self) -> &'static str {
        "mcp"
    }

    /// MCP messages are read by the MCP endpoint with its session (`proxy/mcp/message.rs`); a plain
    /// request to an MCP route never gets here.
    fn interpret(&self, request: &Inbound<'_>) -> Result<Interpreted, ProtocolError> {
        Err(ProtocolError::UnsupportedEndpoint {
            dialect: "mcp",
            method: Quoted::of(request.method.as_str()),
            path: Quoted::of(request.path),
        })
    }

    /// A denied tool call is a tool result with `isError: true` whose text gives the reason
    /// and the decision id (the model can adapt), unless the endpoint asks for JSON-RPC
    /// errors; any other denied request is a JSON-RPC error. A tool call that waits for an
    /// approval is a tool result either way, its text saying which approval, where an
    /// approver decides and to call again once approved; the approval is also in the result's
    /// `_meta` (`warden/approval`: id, status, url) or the error's `data`, as is the approval
    /// a request was refused on (denied, expired, used by another request, withdrawn).
    fn refusal(&self, shape: &Shape, refusal: &Refusal<'_>) -> Option<Response<Full<Bytes>>> {
        let Shape::Mcp(shape) = shape else {
            return None;
        };
        let text = refusal.message();
        let approval = refusal
            .approval
            .map(|a| json!({"id": a.id, "status": a.status, "url": a.link}));
        let body = if shape.deny_as_tool_result || (shape.tool_call && refusal.is_pending()) {
            let mut result = json!({"content": [{"type": "text", "text": text}], "isError": true});
            if let Some(approval) = approval {
                result["_meta"] = json!({ "warden/approval": approval });
            }
            jsonrpc::result(&shape.id, result)
        } else {
            let mut e = jsonrpc::error(&shape.id, jsonrpc::code::DENIED, &text);
            e["error"]["data"] = json!({"decision_id": refusal.decision_id});
            if let Some(approval) = approval {
                e["error"]["data"]["approval"] = approval;
            }
            e
        };
        Some(refusals::mark(
            response::json(StatusCode::OK, body.to_string()),
            refusal,
        ))
    }

    /// A JSON-RPC error (id `null`: the message could not be read, or was not reached) with
    /// Warden's code in `error.data.code`, under the HTTP status.
    fn error(&self, status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
        let rpc = match status {
            StatusCode::BAD_REQUEST => jsonrpc::code::INVALID_REQUEST,
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => {
                jsonrpc::code::INVALID_REQUEST
            }
            s if s.is_server_error() => jsonrpc::code::UPSTREAM,
            _ => jsonrpc::code::INTERNAL_ERROR,
        };
        let mut body = jsonrpc::error(&Value::Null, rpc, message);
        body["error"]["data"] = json!({"code": code});
        response::error(status, code, &body)
    }

    fn usage_event_wanted(&self, _event: &[u8]) -> bool {
        false
    }

    fn usage_from_event(&self, _event: &[u8], _data: &[u8]) -> Usage {
        Usage::default()
    }

    fn usage_from_body(&self, _body: &[u8]) -> Usage {
        Usage::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(deny_as_tool_result: bool) -> (Response<Full<Bytes>>, Value) {
        answer_to(deny_as_tool_result, true, None)
    }

    fn answer_to(
        deny_as_tool_result: bool,
        tool_call: bool,
        approval: Option<crate::protocol::NamedApproval<'_>>,
    ) -> (Response<Full<Bytes>>, Value) {
        let shape = Shape::Mcp(McpShape {
            id: json!("call-7"),
            deny_as_tool_result,
            tool_call,
        });
        let refusal = Refusal {
            reason: "writes stay in the workspace",
            decision_id: "d123",
            finish: Default::default(),
            approval,
        };
        let response = Mcp.refusal(&shape, &refusal).expect("an answer");
        let body = http_body_util::BodyExt::collect(response.body().clone());
        let bytes = futures_util::FutureExt::now_or_never(body)
            .expect("ready")
            .expect("body")
            .to_bytes();
        let value = serde_json::from_slice(&bytes).expect("JSON");
        (response, value)
    }

    #[test]
    fn a_denied_tool_call_is_a_tool_result_the_model_reads() {
        let (response, body) = answer(true);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["x-warden-decision"], "deny");
        assert_eq!(body["id"], "call-7");
        assert_eq!(body["result"]["isError"], true);
        let text = body["result"]["content"][0]["text"].as_str().unwrap();
        assert!(
            text.contains("writes stay in the workspace") && text.contains("d123"),
            "{text}"
        );
    }

    #[test]
    fn a_tool_call_pending_approval_is_a_tool_result_naming_it_even_where_denials_are_errors() {
        let pending = crate::protocol::NamedApproval {
            id: "apr_0123",
            status: "pending",
            link: Some("https://warden.example.com/approvals/apr_0123"),
        };
        for deny_as_tool_result in [true, false] {
            let (response, body) = answer_to(deny_as_tool_result, true, Some(pending));
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(body["result"]["isError"], true, "{body}");
            let text = body["result"]["content"][0]["text"].as_str().unwrap();
            assert!(
                text.contains("holding this request for a human's approval"),
                "{text}"
            );
            assert_eq!(
                body["result"]["_meta"]["warden/approval"],
                json!({"id": "apr_0123", "status": "pending",
                       "url": "https://warden.example.com/approvals/apr_0123"})
            );
        }
        // A prompt or resource has no result to carry it: a JSON-RPC error that names it.
        let (_, body) = answer_to(false, false, Some(pending));
        assert_eq!(body["error"]["code"], jsonrpc::code::DENIED);
        assert_eq!(body["error"]["data"]["approval"]["id"], "apr_0123");
    }

    /// A request refused on an approval (used by another request first, expired) names it
    /// as a pending one is named, with where it stands, and is refused as any denial is.
    #[test]
    fn a_call_refused_on_a_spent_approval_names_it_and_how_it_was_spent() {
        for status in ["consumed", "expired"] {
            let spent = crate::protocol::NamedApproval {
                id: "apr_0123",
                status,
                link: None,
            };
            let named = json!({"id": "apr_0123", "status": status, "url": null});
            let (_, body) = answer_to(true, true, Some(spent));
            assert_eq!(body["result"]["_meta"]["warden/approval"], named, "{body}");
            let text = body["result"]["content"][0]["text"].as_str().unwrap();
            assert!(text.contains("Warden blocked this request"), "{text}");
            let (_, body) = answer_to(false, true, Some(spent));
            assert_eq!(body["error"]["code"], jsonrpc::code::DENIED, "{body}");
            assert_eq!(body["error"]["data"]["approval"], named, "{body}");
        }
    }

    #[test]
    fn or_a_jsonrpc_error_with_the_decision_id() {
        let (_, body) = answer(false);
        assert_eq!(body["id"], "call-7");
        assert_eq!(body["error"]["code"], jsonrpc::code::DENIED);
        assert_eq!(body["error"]["data"]["decision_id"], "d123");
    }
}
