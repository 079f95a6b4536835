//! Why a request was refused or failed, by stage: one variant per stage's error, each knowing
//! its HTTP status, its stable code (the `x-warden-error` header, OpenAI's `code`) and how the
//! route's protocol shapes it.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;

use crate::approval::Hold;
use crate::audit::AuditError;
use crate::canary::Canaries;
use crate::config::DenyStyle;
use crate::egress::EgressError;
use crate::fleet::budget::sync::BudgetUnknown;
use crate::fleet::limits::{LimitAnswer, Limited};
use crate::fleet::quarantine;
use crate::identity::AuthError;
use crate::inspect::InspectConfig;
use crate::mcp::McpError;
use crate::observe::readable::Unreadable;
use crate::protocol::body::BodyError;
use crate::protocol::mcp::jsonrpc;
use crate::protocol::{self, NamedApproval, Protocol, ProtocolError, Shape};
use crate::proxy::redirect;
use crate::route::{Route, RouteError};
use crate::secrets::CredentialError;
use crate::state::quarantine::QuarantineRecord;
use crate::upstream::UpstreamError;
use crate::upstream::breaker::CircuitOpen;

/// A request that did not reach its upstream, or whose upstream exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// route: no route matches the path.
    #[error(transparent)]
    Route(#[from] RouteError),
    /// identify: no valid agent credential (or the identity provider is unreachable).
    #[error("authentication failed: {0}")]
    Identity(#[from] AuthError),
    /// interpret: the body is too large, too slow or unreadable.
    #[error(transparent)]
    Body(#[from] BodyError),
    /// interpret: the request is not one the route's protocol understands.
    #[error(transparent)]
    Interpret(#[from] ProtocolError),
    /// limit: the request is over a rate or concurrency limit (`rate_limits:`).
    #[error(transparent)]
    Limited(#[from] Limited),
    /// recall: the fleet's budget spend is too old to decide on and `budgets.on_stale` is
    /// `refuse`.
    #[error(transparent)]
    Budget(#[from] BudgetUnknown),
    /// hold: policy denied the request, or it needs an approval it cannot get.
    #[error(transparent)]
    Hold(#[from] Hold),
    /// decide: the decision could not be recorded and `audit.fail_closed` is on.
    /// The agent is not told why (the operator's log says): the error names files.
    #[error("{}", audit_refusal(.0))]
    Audit(#[source] AuditError),
    /// credential: the upstream credential is unavailable (fail closed), or the principal may
    /// not use the secret its route's path template chose.
    #[error("the upstream credential is unavailable: {0}")]
    Credential(#[from] CredentialError),
    /// credential: the upstream request cannot be built from this request.
    #[error("cannot build the upstream request: {0}")]
    UpstreamRequest(http::Error),
    /// forward: the upstream could not be reached or broke the exchange.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// An MCP message Warden cannot take (no session, a message it cannot judge), or whose
    /// server failed.
    #[error(transparent)]
    Mcp(#[from] McpError),
    /// Egress through the forward proxy: no proxy credential, a malformed destination, one
    /// that cannot be resolved or reached.
    #[error(transparent)]
    Egress(#[from] EgressError),
    /// forward: the upstream's circuit breaker is open (it failed repeatedly).
    #[error(transparent)]
    CircuitOpen(#[from] CircuitOpen),
    /// observe: the upstream's response must be read (judged, redacted, its usage read) and
    /// cannot be: compressed, or judged text not in UTF-8.
    #[error(transparent)]
    Unreadable(#[from] Unreadable),
    /// observe: the upstream redirected where the route does not pass it: on an LLM route
    /// anywhere, on a REST route to another origin (without `pass_redirects`) or outside the
    /// upstream's base path (`proxy/redirect.rs`).
    #[error(transparent)]
    Redirected(#[from] redirect::Refused),
    /// identify: the agent, or a group it is in, is quarantined.
    #[error("{}", quarantine::message(.0))]
    Quarantined(std::sync::Arc<QuarantineRecord>),
}

/// Where on the path a refusal happened, for the audit record it leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Before a decision: a `rejected` record.
    Rejected,
    /// After the decision record: an `outcome` record.
    Outcome,
    /// The audit log itself failed: nothing can be recorded.
    Nothing,
}

impl Refusal {
    /// The HTTP status the agent gets.
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::Route(_) => StatusCode::NOT_FOUND,
            Refusal::Identity(e) => e.status(),
            Refusal::Body(e) => e.status(),
            Refusal::Interpret(e) => e.status(),
            Refusal::Limited(_) => StatusCode::TOO_MANY_REQUESTS,
            Refusal::Budget(_) => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::Hold(Hold::Unavailable { .. }) => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::Hold(Hold::TooManyPending { .. }) => StatusCode::TOO_MANY_REQUESTS,
            Refusal::Hold(_) => StatusCode::FORBIDDEN,
            Refusal::Audit(_) => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::Credential(e) => e.status(),
            Refusal::UpstreamRequest(_) => StatusCode::BAD_REQUEST,
            Refusal::Upstream(e) => e.status(),
            Refusal::Mcp(e) => e.status(),
            Refusal::Egress(e) => e.status(),
            Refusal::Quarantined(_) => StatusCode::FORBIDDEN,
            Refusal::CircuitOpen(_) => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::Unreadable(e) => e.status(),
            Refusal::Redirected(e) => e.status(),
        }
    }

    /// The stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Route(_) => "no_route",
            Refusal::Identity(e) => e.code(),
            Refusal::Body(e) => e.code(),
            Refusal::Interpret(e) => e.code(),
            Refusal::Limited(e) => e.code(),
            Refusal::Budget(_) => BudgetUnknown::CODE,
            Refusal::Hold(e) => e.code(),
            Refusal::Audit(AuditError::Full { .. }) => "audit_full",
            Refusal::Audit(_) => "audit_unavailable",
            Refusal::Credential(e) => e.code(),
            Refusal::UpstreamRequest(_) => "invalid_upstream_request",
            Refusal::Upstream(e) => e.code(),
            Refusal::Mcp(e) => e.code(),
            Refusal::Egress(e) => e.code(),
            Refusal::Quarantined(_) => quarantine::CODE,
            Refusal::CircuitOpen(_) => "upstream_circuit_open",
            Refusal::Unreadable(e) => e.code(),
            Refusal::Redirected(_) => redirect::Refused::CODE,
        }
    }

    /// The message with what the agent is not told (the issuers trusted), for the log and the
    /// audit record.
    pub fn detailed(&self) -> String {
        match self {
            Refusal::Identity(e) => e.detailed(self.to_string()),
            _ => self.to_string(),
        }
    }

    /// Which record the refusal leaves.
    pub fn recorded(&self) -> Recorded {
        match self {
            Refusal::Route(_)
            | Refusal::Identity(_)
            | Refusal::Body(_)
            | Refusal::Interpret(_)
            | Refusal::Limited(_)
            | Refusal::Budget(_)
            | Refusal::Quarantined(_) => Recorded::Rejected,
            Refusal::Audit(_) => Recorded::Nothing,
            Refusal::Mcp(e) if e.after_decision() => Recorded::Outcome,
            Refusal::Mcp(_) => Recorded::Rejected,
            Refusal::Egress(e) if e.before_decision() => Recorded::Rejected,
            Refusal::Egress(_) => Recorded::Outcome,
            Refusal::Hold(_)
            | Refusal::Credential(_)
            | Refusal::UpstreamRequest(_)
            | Refusal::Upstream(_)
            | Refusal::CircuitOpen(_)
            | Refusal::Unreadable(_)
            | Refusal::Redirected(_) => Recorded::Outcome,
        }
    }

    /// The refusal's message as its record and the process log keep it
    /// ([`crate::scrubbed::message`]): bounded, what a content detector finds in it (the agent's own text it quotes: a
    /// path, a tool's or a method's name) replaced by `[redacted: <detector>]`. A canary in it,
    /// or a detector's match only its percent-decoding shows, withholds all of it but its code
    /// (the canary's hit raised as any other); `agent` is who sent the request, when known.
    pub fn recorded_message(
        &self,
        inspect: &InspectConfig,
        canaries: Option<&Canaries>,
        agent: Option<&str>,
        request_id: &str,
    ) -> String {
        let scrubbing = crate::scrubbed::Scrubbing {
            inspect,
            canaries,
            agent,
            request_id,
        };
        crate::scrubbed::message(self.code(), &self.detailed(), &scrubbing)
    }

    /// Whether the failure is Warden's side (an operator must look), not the agent's.
    pub fn is_ours(&self) -> bool {
        self.status().is_server_error()
    }

    /// The answer in the route's protocol (OpenAI's shape when no route matched). A policy
    /// refusal is a well-formed answer whose text explains it where the route asks for that
    /// (`on_deny: completion`) and the request has such a shape, else a 403 error; every other
    /// refusal is an error in the protocol's error shape.
    pub fn respond(
        &self,
        route: Option<&Route>,
        shape: Option<&Shape>,
        decision_id: &str,
    ) -> Response<Full<Bytes>> {
        if let Refusal::Mcp(e) = self {
            let id = match shape {
                Some(Shape::Mcp(mcp)) => &mcp.id,
                _ => &serde_json::Value::Null,
            };
            return e.respond_to(decision_id, id);
        }
        let dialect = route.map_or(Protocol::Openai, |r| r.protocol).dialect();
        if let Refusal::Limited(limited) = self {
            return limited_answer(limited, dialect, route, shape);
        }
        if let Refusal::Credential(e) = self
            && e.status().is_server_error()
        {
            return dialect.error(
                self.status(),
                self.code(),
                &crate::secrets::unavailable_to_agent(Some(decision_id)),
            );
        }
        let Refusal::Hold(hold) = self else {
            return dialect.error(self.status(), self.code(), &self.to_string());
        };
        if let Hold::Unavailable { .. } | Hold::TooManyPending { .. } = hold {
            return dialect.error(self.status(), self.code(), &self.to_string());
        }
        let reason = hold.reason();
        let link = match hold {
            Hold::Pending { link, .. } => link.as_deref(),
            _ => None,
        };
        let approval = hold.approval().map(|(id, status)| protocol::NamedApproval {
            id,
            status: status.as_str(),
            link,
        });
        let pending = approval.is_some_and(|a| a.is_pending());
        let completion = route.is_none_or(|r| r.on_deny == DenyStyle::Completion);
        let text = protocol::Refusal {
            reason: &reason,
            decision_id,
            finish: route.map(|r| r.refusal_finish).unwrap_or_default(),
            approval,
        };
        let mut response = match (completion, shape) {
            (true, Some(shape)) => match dialect.refusal(shape, &text) {
                Some(answer) => answer,
                None => dialect.error(StatusCode::FORBIDDEN, "request_denied", &text.message()),
            },
            (true, None) => dialect.error(StatusCode::FORBIDDEN, "request_denied", &text.message()),
            (false, _) if pending => dialect.error(
                StatusCode::FORBIDDEN,
                hold.code(),
                &format!(
                    "Warden holds this request for approval: {reason} (decision {decision_id})"
                ),
            ),
            (false, _) => dialect.error(
                StatusCode::FORBIDDEN,
                hold.code(),
                &format!("Warden denied this request: {reason} (decision {decision_id})"),
            ),
        };
        let label = if pending { "approval_required" } else { "deny" };
        response
            .headers_mut()
            .insert(protocol::DECISION_HEADER, HeaderValue::from_static(label));
        if let Some(NamedApproval { id, .. }) = approval
            && let Ok(v) = HeaderValue::try_from(id)
        {
            response.headers_mut().insert(APPROVAL_HEADER, v);
        }
        response
    }
}

/// The answer to a request over a limit: `429` with `retry-after` in the protocol's error shape
/// (a JSON-RPC error to the request's id for MCP), or, with `rate_limits.answer: refusal`, a
/// well-formed answer that says when to retry where the request has such a shape.
fn limited_answer(
    limited: &Limited,
    dialect: &dyn protocol::Dialect,
    route: Option<&Route>,
    shape: Option<&Shape>,
) -> Response<Full<Bytes>> {
    let message = limited.to_string();
    let refusal = match (limited.answer, shape) {
        (LimitAnswer::Refusal, Some(shape)) => dialect.refusal(
            shape,
            &protocol::Refusal {
                reason: &message,
                decision_id: "none",
                finish: route.map(|r| r.refusal_finish).unwrap_or_default(),
                approval: None,
            },
        ),
        _ => None,
    };
    let mut response = refusal.unwrap_or_else(|| match shape {
        Some(Shape::Mcp(mcp)) => {
            let mut body = jsonrpc::error(&mcp.id, jsonrpc::code::DENIED, &message);
            body["error"]["data"] = serde_json::json!({"code": limited.code()});
            protocol::json_response(StatusCode::TOO_MANY_REQUESTS, body.to_string())
        }
        _ => dialect.error(StatusCode::TOO_MANY_REQUESTS, limited.code(), &message),
    });
    let headers = response.headers_mut();
    headers.insert(
        http::header::RETRY_AFTER,
        HeaderValue::from(limited.retry_after_secs()),
    );
    headers.insert(
        protocol::ERROR_HEADER,
        HeaderValue::from_static(limited.code()),
    );
    response
}

/// The id of the approval a held request waits for.
pub const APPROVAL_HEADER: &str = "x-warden-approval-id";

/// What the agent is told when its decision could not be recorded.
fn audit_refusal(error: &AuditError) -> &'static str {
    match error {
        AuditError::Full { .. } => {
            "the audit log is full and has not reached the SIEM yet, so Warden refuses requests \
             until it does (audit.retention.when_full)"
        }
        _ => "the audit log cannot be written, so Warden refuses requests (audit.fail_closed)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn answer(refusal: &Refusal) -> (StatusCode, serde_json::Value) {
        let response = refusal.respond(None, None, "dec-7f3a");
        let status = response.status();
        let body = response.into_body().collect().await.map(|b| b.to_bytes());
        let body = body.unwrap_or_default();
        (
            status,
            serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        )
    }

    #[tokio::test]
    async fn an_upstream_failure_is_answered_under_the_agents_request_id() {
        let refusal = Refusal::Mcp(McpError::Link(crate::mcp::LinkError::Http {
            server: "evil".into(),
            reason: "the server answered HTTP 500".into(),
        }));
        let shape = Shape::Mcp(crate::protocol::mcp::McpShape {
            id: serde_json::json!(14),
            deny_as_tool_result: false,
            tool_call: true,
        });
        let response = refusal.respond(None, Some(&shape), "dec-1");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["id"], 14, "{body}");
        assert_eq!(body["error"]["code"], jsonrpc::code::UPSTREAM, "{body}");
        // Without a request read (no shape) there is no id to give.
        let (_, body) = answer(&refusal).await;
        assert!(body["id"].is_null(), "{body}");
    }

    #[tokio::test]
    async fn a_credential_failure_shows_the_agent_its_code_and_decision_not_vaults_address() {
        let refusal = Refusal::Credential(CredentialError::VaultDown {
            path: "secret/warden/openai".into(),
            reason: "vault at http://10.255.255.1:8200 is unreachable".into(),
        });
        let (status, body) = answer(&refusal).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"]["code"], "vault_unavailable", "{body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("decision dec-7f3a"), "{body}");
        assert!(
            !body.to_string().contains("10.255.255.1") && !body.to_string().contains("secret/"),
            "{body}"
        );
        // The log and the audit record keep the details.
        assert!(refusal.to_string().contains("10.255.255.1"), "{refusal}");

        let file = Refusal::Credential(CredentialError::File {
            file: "/etc/warden/keys/openai".into(),
            reason: "permission denied".into(),
        });
        let (_, body) = answer(&file).await;
        assert_eq!(body["error"]["code"], "credential_unavailable", "{body}");
        assert!(!body.to_string().contains("/etc/warden"), "{body}");
    }

    /// An approval lost to another identical request, or expired, is named as a pending one
    /// is: the agent and its operator can tell which approval was spent.
    #[tokio::test]
    async fn a_request_refused_on_a_spent_approval_is_told_its_id() {
        let spent = [
            (
                Hold::ApprovalUsed {
                    id: "apr_used".into(),
                },
                "approval_consumed",
                "consumed",
            ),
            (
                Hold::ApprovalExpired {
                    id: "apr_late".into(),
                },
                "approval_expired",
                "expired",
            ),
        ];
        for (hold, code, status) in spent {
            let (id, named) = hold.approval().unwrap();
            assert_eq!(named.as_str(), status);
            let id = id.to_owned();
            assert_eq!(hold.code(), code);
            let refusal = Refusal::Hold(hold);
            let response = refusal.respond(None, None, "dec-1");
            assert_eq!(response.headers()[APPROVAL_HEADER], *id, "{code}");
            assert_eq!(response.headers()[protocol::DECISION_HEADER], "deny");
            let body = response.into_body().collect().await.unwrap().to_bytes();
            let body = String::from_utf8_lossy(&body);
            assert!(body.contains(&id), "{status}: {body}");
        }
        // A refusal that names no approval carries no approval header.
        let denied = Refusal::Hold(Hold::Denied {
            reasons: vec!["no".into()],
        });
        assert!(
            denied
                .respond(None, None, "dec-1")
                .headers()
                .get(APPROVAL_HEADER)
                .is_none()
        );
    }
}
