//! How the egress proxy answers a refusal: plain text an agent's HTTP client shows as it is,
//! with the status, the stable code (`x-warden-error`), for a missing or refused proxy
//! credential `Proxy-Authenticate`, and for a limit `Retry-After`.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, PROXY_AUTHENTICATE, RETRY_AFTER};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;

use crate::approval::Hold;
use crate::protocol;
use crate::proxy::refusal::{APPROVAL_HEADER, Refusal};

/// What the proxy asks for in a 407.
const CHALLENGE: &str = "Basic realm=\"warden egress\", Bearer realm=\"warden egress\"";

/// The answer to `refusal` of egress decided as `decision_id` (empty before a decision).
pub fn egress_answer(refusal: &Refusal, decision_id: &str) -> Response<Full<Bytes>> {
    let status = refusal.status();
    let text = match refusal {
        Refusal::Hold(hold @ Hold::Pending { .. }) => format!(
            "Warden holds this egress for approval: {} (decision {decision_id})",
            hold.reason()
        ),
        Refusal::Hold(hold) if status == StatusCode::FORBIDDEN => format!(
            "Warden denied this egress: {} (decision {decision_id})",
            hold.reason()
        ),
        Refusal::Quarantined(_) => refusal.to_string(),
        other => format!("Warden: {other}"),
    };
    let mut response = Response::new(Full::new(Bytes::from(format!("{text}\n"))));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Ok(code) = HeaderValue::from_str(refusal.code()) {
        headers.insert(protocol::ERROR_HEADER, code);
    }
    if status == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
        headers.insert(PROXY_AUTHENTICATE, HeaderValue::from_static(CHALLENGE));
    }
    if let Refusal::Limited(limited) = refusal {
        headers.insert(RETRY_AFTER, HeaderValue::from(limited.retry_after_secs()));
    }
    if let Refusal::Hold(hold) = refusal {
        let label = match hold {
            Hold::Pending { .. } => "approval_required",
            _ => "deny",
        };
        headers.insert(protocol::DECISION_HEADER, HeaderValue::from_static(label));
        if let Some((id, _)) = hold.approval()
            && let Ok(v) = HeaderValue::try_from(id)
        {
            headers.insert(APPROVAL_HEADER, v);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::fleet::limits::{LimitAnswer, LimitKind, Limited, Scope};

    #[test]
    fn a_limited_egress_says_when_to_retry() {
        let refusal = Refusal::Limited(Limited {
            scope: Scope::Agent,
            value: "build-bot".into(),
            rule: None,
            kind: LimitKind::AgentTunnels { max: 2 },
            retry_after: Duration::from_millis(1500),
            answer: LimitAnswer::Error,
        });
        let answer = egress_answer(&refusal, "");
        assert_eq!(answer.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(answer.headers()[RETRY_AFTER], "2");
        assert_eq!(
            answer.headers()[protocol::ERROR_HEADER],
            "concurrency_limited"
        );
    }
}
