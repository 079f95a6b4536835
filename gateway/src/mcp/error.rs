//! Why an MCP message was refused or failed before it reached, or while it was at, an
//! upstream server. Every error names what to do; none quotes more than a short, escaped
//! prefix of what the agent sent.

use http::StatusCode;
use serde_json::Value;

use super::resume::ResumeError;
use crate::protocol::mcp::jsonrpc::{self, MessageError};
use crate::upstream::breaker::CircuitOpen;

/// An MCP request Warden refuses, or whose upstream failed.
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    /// The body is not one JSON-RPC message Warden can judge.
    #[error(transparent)]
    Message(#[from] MessageError),
    /// A message Warden read but cannot judge or answer (unknown tool, unknown method):
    /// a JSON-RPC error to request `id`.
    #[error("{message}")]
    Refused {
        /// The request id.
        id: Value,
        /// The JSON-RPC error code.
        code: i64,
        /// What is wrong, and what to do.
        message: String,
    },
    /// A request other than `initialize` without `Mcp-Session-Id`.
    #[error(
        "this request needs the Mcp-Session-Id header that initialize answered; send initialize first"
    )]
    MissingSession,
    /// No session with that id for this principal (ended, expired, never issued, or another
    /// principal's).
    #[error("no such MCP session (it ended or expired): send initialize again")]
    UnknownSession,
    /// `MCP-Protocol-Version` names a revision Warden does not speak, or not the session's.
    #[error("MCP-Protocol-Version {found} is not supported here; this session speaks {expected}")]
    Version {
        /// The header's value, bounded.
        found: crate::text::Quoted,
        /// What the session negotiated (or the revisions Warden speaks).
        expected: String,
    },
    /// `initialize` on a legacy session that was initialised already.
    #[error(
        "this session is initialised already; open a new event stream (GET <endpoint>/sse) for a new session"
    )]
    Initialised,
    /// A message other than `initialize` on a legacy session not initialised yet.
    #[error("this session is not initialised: send initialize first")]
    NotInitialised,
    /// A POST of the legacy transport that names no session.
    #[error(
        "this request needs the session_id query parameter of the endpoint event (the URI to post to); open GET <endpoint>/sse first"
    )]
    LegacySessionMissing,
    /// Too many sessions are open.
    #[error("Warden has {0} MCP sessions open, its limit (mcp.max_sessions); retry later")]
    TooManySessions(usize),
    /// The agent holds as many sessions as one agent may.
    #[error(
        "this agent has {0} MCP sessions open, the most one agent may hold \
         (mcp.max_sessions_per_agent); end one (DELETE, or close its event stream) or retry \
         when one has expired"
    )]
    TooManyAgentSessions(usize),
    /// No server of the endpoint could be started or reached.
    #[error("no MCP server of this endpoint is available: {0}")]
    NoServer(String),
    /// The server the request is for is not available in this session.
    #[error("MCP server {0:?} is not available in this session; it failed to start")]
    ServerMissing(String),
    /// The upstream failed.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// The server's circuit breaker is open (it failed repeatedly): Warden answers at once
    /// without reaching it, a JSON-RPC error to request `id`.
    #[error("{open}")]
    CircuitOpen {
        /// The request id (null when Warden does not know it).
        id: Value,
        open: CircuitOpen,
        /// The request was decided (a call to a tool, a prompt, a resource) before.
        decided: bool,
    },
    /// A GET stream is already open for this session.
    #[error("this session's event stream is already open on another request")]
    StreamOpen,
    /// A `Last-Event-ID` that cannot be resumed.
    #[error(transparent)]
    Resume(#[from] ResumeError),
    /// A browser page of another origin.
    #[error("requests from origin {0} are refused: MCP endpoints answer their own origin only")]
    Origin(crate::text::Quoted),
    /// A request without a credential that names another host than this machine.
    #[error(
        "requests without a credential must name this machine as their host (localhost or a \
         loopback address), not {0}: a page that rebinds its name to Warden's address is \
         refused (DNS rebinding)"
    )]
    Host(crate::text::Quoted),
    /// The method is not one this path of an MCP endpoint answers.
    #[error("{method} is not an MCP method here: use {allowed}")]
    Method {
        method: crate::text::Quoted,
        /// What the path takes.
        allowed: &'static str,
    },
    /// A path below an MCP endpoint's prefix that is neither transport's.
    #[error(
        "no MCP endpoint at {path}: use {prefix} (Streamable HTTP) or {prefix}/sse (the legacy HTTP+SSE transport)"
    )]
    Path {
        path: crate::text::Quoted,
        /// The endpoint's prefix.
        prefix: String,
    },
}

impl McpError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            McpError::Message(_)
            | McpError::MissingSession
            | McpError::LegacySessionMissing
            | McpError::Version { .. }
            | McpError::Initialised
            | McpError::NotInitialised => StatusCode::BAD_REQUEST,
            // A JSON-RPC error to the request, which the agent's SDK raises as the call's error.
            McpError::Refused { .. }
            | McpError::ServerMissing(_)
            | McpError::CircuitOpen { .. } => StatusCode::OK,
            McpError::UnknownSession | McpError::Path { .. } => StatusCode::NOT_FOUND,
            McpError::TooManySessions(_) => StatusCode::SERVICE_UNAVAILABLE,
            McpError::TooManyAgentSessions(_) => StatusCode::TOO_MANY_REQUESTS,
            McpError::NoServer(_) => StatusCode::BAD_GATEWAY,
            McpError::Link(e) => e.status(),
            McpError::StreamOpen => StatusCode::CONFLICT,
            McpError::Resume(ResumeError::Gone { .. }) => StatusCode::GONE,
            McpError::Resume(_) => StatusCode::BAD_REQUEST,
            McpError::Method { .. } => StatusCode::METHOD_NOT_ALLOWED,
            McpError::Origin(_) | McpError::Host(_) => StatusCode::FORBIDDEN,
        }
    }

    /// Warden's stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            McpError::Message(_) => "invalid_mcp_message",
            McpError::Refused { .. } => "mcp_request_refused",
            McpError::MissingSession | McpError::LegacySessionMissing => "mcp_session_missing",
            McpError::Initialised => "mcp_session_initialised",
            McpError::NotInitialised => "mcp_session_not_initialised",
            McpError::UnknownSession => "mcp_session_unknown",
            McpError::Version { .. } => "mcp_protocol_version",
            McpError::TooManySessions(_) => "mcp_sessions_exhausted",
            McpError::TooManyAgentSessions(_) => "mcp_agent_sessions_exhausted",
            McpError::NoServer(_) | McpError::ServerMissing(_) => "mcp_server_unavailable",
            McpError::Link(e) => e.code(),
            McpError::CircuitOpen { .. } => CIRCUIT_OPEN,
            McpError::StreamOpen => "mcp_stream_open",
            McpError::Resume(ResumeError::Gone { .. }) => "mcp_resume_gone",
            McpError::Resume(_) => "mcp_resume_unknown",
            McpError::Method { .. } => "method_not_allowed",
            McpError::Path { .. } => "mcp_path_unknown",
            McpError::Origin(_) | McpError::Host(_) => "mcp_origin_refused",
        }
    }

    /// Whether the request was already decided when this happened (its upstream failed).
    pub fn after_decision(&self) -> bool {
        matches!(
            self,
            McpError::Link(_)
                | McpError::ServerMissing(_)
                | McpError::CircuitOpen { decided: true, .. }
        )
    }

    /// The answer: the JSON-RPC error under the HTTP status, with Warden's code in
    /// `x-warden-error`; `decision_id` (empty: none) is named where the agent is told to look
    /// in the operator's log.
    pub fn respond(&self, decision_id: &str) -> http::Response<http_body_util::Full<bytes::Bytes>> {
        self.respond_to(decision_id, &Value::Null)
    }

    /// [`McpError::respond`] to the request `id` (the id of the agent's request, when the
    /// refusal comes after it was read: an upstream failure): an error the error does not
    /// name an id for is answered under it, so the agent can match it to its request.
    pub fn respond_to(
        &self,
        decision_id: &str,
        id: &Value,
    ) -> http::Response<http_body_util::Full<bytes::Bytes>> {
        let mut body = self.jsonrpc(decision_id);
        if body["id"].is_null() {
            body["id"] = id.clone();
        }
        let mut response = http::Response::new(http_body_util::Full::new(bytes::Bytes::from(
            body.to_string(),
        )));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        headers.insert(
            http::HeaderName::from_static("x-warden-error"),
            http::HeaderValue::from_static(self.code()),
        );
        if let McpError::CircuitOpen { open, .. } = self {
            headers.insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from(open.retry_after_secs()),
            );
        }
        response
    }

    /// The JSON-RPC error answered: with the request's id when Warden knows it. An
    /// unavailable upstream credential is told in generic words with `decision_id` (the
    /// failure, which names Vault's address or secret paths, stays in the log and the audit
    /// record).
    pub fn jsonrpc(&self, decision_id: &str) -> Value {
        let (id, code) = match self {
            McpError::Refused { id, code, .. } => (id.clone(), *code),
            McpError::CircuitOpen { id, .. } => (id.clone(), jsonrpc::code::UPSTREAM),
            McpError::Message(e) => (Value::Null, e.code()),
            McpError::Link(_) | McpError::NoServer(_) | McpError::ServerMissing(_) => {
                (Value::Null, jsonrpc::code::UPSTREAM)
            }
            _ => (Value::Null, jsonrpc::code::INVALID_REQUEST),
        };
        let message = match self {
            McpError::Link(LinkError::Credential { .. }) => {
                crate::secrets::unavailable_to_agent(Some(decision_id))
            }
            _ => self.to_string(),
        };
        let mut body = jsonrpc::error(&id, code, &message);
        body["error"]["data"] = match self {
            McpError::Link(LinkError::Credential { .. }) if !decision_id.is_empty() => {
                serde_json::json!({"code": self.code(), "decision_id": decision_id})
            }
            McpError::CircuitOpen { open, .. } => serde_json::json!({
                "code": self.code(),
                "upstream": &*open.upstream,
                "retry_after": open.retry_after_secs(),
            }),
            _ => serde_json::json!({"code": self.code()}),
        };
        body
    }
}

/// The stable code of a request refused by an open circuit breaker (as on LLM and REST routes).
const CIRCUIT_OPEN: &str = "upstream_circuit_open";

/// Why an upstream server could not answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LinkError {
    /// The process could not be started.
    #[error("cannot start MCP server {server}: {reason}")]
    Spawn { server: String, reason: String },
    /// The server did not complete `initialize`.
    #[error("MCP server {server} did not initialise: {reason}")]
    Handshake { server: String, reason: String },
    /// The server is restarting and did not come back in time.
    #[error("MCP server {server} is unavailable (restarting); retry shortly")]
    Down { server: String },
    /// The server did not answer in time (`mcp.request_timeout`).
    #[error("MCP server {server} did not answer within {seconds} s")]
    Timeout { server: String, seconds: u64 },
    /// The HTTP exchange with a remote server failed.
    #[error("MCP server {server}: {reason}")]
    Http { server: String, reason: String },
    /// A remote server answered a message with an HTTP error.
    #[error("MCP server {server}: the server answered HTTP {status}")]
    Status { server: String, status: StatusCode },
    /// The server failed a request Warden sent it on its own (a list): it went away or broke
    /// the exchange.
    #[error("MCP server {server} failed: {reason}")]
    Failed { server: String, reason: String },
    /// The server's circuit breaker is open: it was not reached.
    #[error(transparent)]
    CircuitOpen(CircuitOpen),
    /// The upstream credential is unavailable (fail closed). `reason` is for the operator's
    /// log and the audit record only: the agent is told [`LinkError::shown`].
    #[error("the credential for MCP server {server} is unavailable: {reason}")]
    Credential {
        server: String,
        reason: String,
        /// The credential error's stable code (`vault_unavailable`, `credential_unavailable`).
        code: &'static str,
    },
    /// The session with the server was closed.
    #[error("the session with MCP server {server} is closed")]
    Closed { server: String },
}

impl LinkError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            LinkError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            LinkError::Credential { .. } | LinkError::Down { .. } | LinkError::CircuitOpen(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::BAD_GATEWAY,
        }
    }

    /// Warden's stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            LinkError::Timeout { .. } => "upstream_timeout",
            LinkError::Credential { code, .. } => code,
            LinkError::CircuitOpen(_) => CIRCUIT_OPEN,
            _ => "upstream_unavailable",
        }
    }

    /// What the agent may be told of this error: an unavailable credential in generic words
    /// (its reason names Vault's address or secret paths), anything else as it is.
    pub fn shown(&self) -> std::borrow::Cow<'_, str> {
        match self {
            LinkError::Credential { .. } => crate::secrets::unavailable_to_agent(None).into(),
            other => other.to_string().into(),
        }
    }

    /// Whether the error is the server's failure, which its circuit breaker counts: it could
    /// not be started or reached, broke the exchange, answered a 5xx or nothing in time. An
    /// unavailable credential, a session that ended, a 4xx answer say nothing of its health.
    pub fn server_failed(&self) -> bool {
        match self {
            LinkError::Spawn { .. }
            | LinkError::Handshake { .. }
            | LinkError::Down { .. }
            | LinkError::Timeout { .. }
            | LinkError::Http { .. }
            | LinkError::Failed { .. } => true,
            LinkError::Status { status, .. } => status.is_server_error(),
            LinkError::Credential { .. } | LinkError::Closed { .. } | LinkError::CircuitOpen(_) => {
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unavailable_credential_shows_the_agent_its_code_and_decision_not_vaults_address() {
        let unavailable = LinkError::Credential {
            server: "github".into(),
            reason: "vault is unreachable and the cached secret secret/mcp/github has expired: \
                     vault at http://10.255.255.1:8200 is unreachable"
                .into(),
            code: "vault_unavailable",
        };
        let error = McpError::Link(unavailable.clone());
        let body = error.jsonrpc("dec-7f3a");
        assert_eq!(body["error"]["data"]["code"], "vault_unavailable", "{body}");
        assert_eq!(body["error"]["data"]["decision_id"], "dec-7f3a", "{body}");
        let said = body.to_string();
        assert!(said.contains("decision dec-7f3a"), "{said}");
        assert!(
            !said.contains("10.255.255.1") && !said.contains("secret/"),
            "{said}"
        );
        let response = error.respond("dec-7f3a");
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()["x-warden-error"], "vault_unavailable");
        // Where it is told in words of its own (a server that could not start, a call that
        // could not be sent), generic too; the log and the audit record keep the reason.
        assert!(!unavailable.shown().contains("10.255.255.1"));
        assert!(!unavailable.shown().contains("secret/"));
        assert!(error.to_string().contains("10.255.255.1"), "{error}");
        // Other upstream failures are told as they are.
        let down = LinkError::Down {
            server: "github".into(),
        };
        assert_eq!(down.shown(), down.to_string());
    }
}
