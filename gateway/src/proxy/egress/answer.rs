//! How the egress proxy answers a refusal: plain text an agent's HTTP client shows as it is,
//! with the status, the stable code (`x-warden-error`), for a missing or refused proxy
//! credential `Proxy-Authenticate`, and for a limit `Retry-After`. Over HTTP/1.1 the status
//! line's reason phrase carries the text too: clients that refuse a `CONNECT` show that line
//! and never the body (Python's `Tunnel connection failed: 403 …`, Go's `proxyconnect`, curl's
//! `-v`).

use bytes::Bytes;
use http::header::{CONTENT_TYPE, PROXY_AUTHENTICATE, RETRY_AFTER};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;
use hyper::ext::ReasonPhrase;

use crate::approval::Hold;
use crate::protocol;
use crate::proxy::refusal::{APPROVAL_HEADER, Refusal};

/// The longest reason phrase written, in bytes: the text is cut there (the body has it whole).
const MAX_REASON_BYTES: usize = 480;

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
    let reason = reason_phrase(status, &text);
    let mut response = Response::new(Full::new(Bytes::from(format!("{text}\n"))));
    *response.status_mut() = status;
    if let Some(reason) = reason {
        response.extensions_mut().insert(reason);
    }
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

/// `<canonical reason>: <text>` as an HTTP/1.1 reason phrase: visible ASCII and spaces only
/// (anything else becomes `?`), at most [`MAX_REASON_BYTES`]; a longer text is cut in its
/// middle, so its ending ` (decision <id>)`, which leads to the record, stays.
fn reason_phrase(status: StatusCode, text: &str) -> Option<ReasonPhrase> {
    const CUT: &str = " ...";
    let visible = |c: char| {
        if c == ' ' || c.is_ascii_graphic() {
            c
        } else {
            '?'
        }
    };
    let mut phrase = format!("{}: ", status.canonical_reason().unwrap_or("Refused"));
    let (head, tail) = match text.rfind(" (decision ") {
        Some(at) => text.split_at(at),
        None => (text, ""),
    };
    // Every char written is one byte, so counts of chars are lengths.
    let tail_len = tail.chars().count();
    if phrase.len() + head.chars().count() + tail_len <= MAX_REASON_BYTES {
        phrase.extend(head.chars().map(visible));
    } else {
        let room = MAX_REASON_BYTES.saturating_sub(phrase.len() + CUT.len() + tail_len);
        phrase.extend(head.chars().take(room).map(visible));
        phrase.push_str(CUT);
    }
    phrase.extend(tail.chars().map(visible));
    phrase.truncate(MAX_REASON_BYTES);
    ReasonPhrase::try_from(phrase.trim_end().as_bytes()).ok()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::fleet::limits::{LimitAnswer, LimitKind, Limited, Scope};

    #[test]
    fn the_reason_phrase_says_why_in_visible_ascii_within_its_bound() {
        let phrase = reason_phrase(
            StatusCode::FORBIDDEN,
            "Warden denied this egress: b\u{fc}cher.test\r\nx: y resolves to 10.0.0.1",
        )
        .unwrap();
        assert_eq!(
            phrase.as_bytes(),
            b"Forbidden: Warden denied this egress: b?cher.test??x: y resolves to 10.0.0.1"
        );
        let long = reason_phrase(StatusCode::FORBIDDEN, &"a".repeat(2000)).unwrap();
        assert_eq!(long.as_bytes().len(), MAX_REASON_BYTES);
        // A long reason loses its middle, never the decision id that leads to the record.
        let text = format!(
            "Warden denied this egress: no policy permits egress:connect on Host::\"{}\" (decision 01JEXAMPLE)",
            "h".repeat(600)
        );
        let cut = reason_phrase(StatusCode::FORBIDDEN, &text).unwrap();
        let cut = std::str::from_utf8(cut.as_bytes()).unwrap();
        assert!(cut.len() <= MAX_REASON_BYTES, "{}", cut.len());
        assert!(
            cut.starts_with("Forbidden: Warden denied this egress"),
            "{cut}"
        );
        assert!(cut.ends_with("hh ... (decision 01JEXAMPLE)"), "{cut}");
    }

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
