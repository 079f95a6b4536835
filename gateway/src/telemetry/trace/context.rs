//! W3C Trace Context (`traceparent`, `tracestate`): what an agent's request continues, and
//! what goes upstream.

use http::{HeaderMap, HeaderValue};
use opentelemetry::trace::{SpanId, TraceId};

/// Longest `tracestate` passed on (W3C: at least 512 characters must be propagated; longer
/// ones may be dropped).
const TRACESTATE_MAX: usize = 512;

/// The agent's span, as its `traceparent` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parent {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    /// The agent's sampled flag.
    pub sampled: bool,
}

/// The parent named by `traceparent` (version 00, or a later version read as 00), if the
/// header is present, single and valid; with the request's `tracestate` when it is.
pub fn incoming(headers: &HeaderMap) -> Option<(Parent, Option<HeaderValue>)> {
    let mut values = headers.get_all("traceparent").iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let parent = parse_traceparent(value.as_bytes())?;
    Some((parent, tracestate(headers)))
}

/// `tracestate` as received (several headers joined with commas), when it is at most
/// [`TRACESTATE_MAX`] bytes of visible ASCII.
fn tracestate(headers: &HeaderMap) -> Option<HeaderValue> {
    let mut values = headers.get_all("tracestate").iter();
    let first = values.next()?;
    let joined = match values.next() {
        None => first.clone(),
        Some(second) => {
            let mut all = Vec::with_capacity(first.len() + second.len() + 1);
            all.extend_from_slice(first.as_bytes());
            for v in std::iter::once(second).chain(values) {
                all.push(b',');
                all.extend_from_slice(v.as_bytes());
            }
            HeaderValue::from_bytes(&all).ok()?
        }
    };
    let ok = !joined.is_empty()
        && joined.len() <= TRACESTATE_MAX
        && joined.as_bytes().iter().all(|b| (0x20..0x7f).contains(b));
    ok.then_some(joined)
}

/// Reads `version-traceid-parentid-flags`: lower-case hex, ids not all zero, version `ff`
/// refused; a later version may append fields after a `-`.
fn parse_traceparent(v: &[u8]) -> Option<Parent> {
    if v.len() < 55 || (v.len() > 55 && (v[..2] == *b"00" || v[55] != b'-')) {
        return None;
    }
    if v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let version = hex::<1>(&v[..2])?;
    if version[0] == 0xff {
        return None;
    }
    let trace_id = TraceId::from_bytes(hex::<16>(&v[3..35])?);
    let span_id = SpanId::from_bytes(hex::<8>(&v[36..52])?);
    let flags = hex::<1>(&v[53..55])?[0];
    if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
        return None;
    }
    Some(Parent {
        trace_id,
        span_id,
        sampled: flags & 1 == 1,
    })
}

/// `N` bytes from `2N` lower-case hex digits.
fn hex<const N: usize>(digits: &[u8]) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    if digits.len() != 2 * N {
        return None;
    }
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// The `traceparent` naming `span_id` of `trace_id`.
pub fn traceparent(trace_id: TraceId, span_id: SpanId, sampled: bool) -> HeaderValue {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 55];
    out[..3].copy_from_slice(b"00-");
    let mut at = 3;
    for b in trace_id.to_bytes() {
        out[at] = DIGITS[usize::from(b >> 4)];
        out[at + 1] = DIGITS[usize::from(b & 15)];
        at += 2;
    }
    out[at] = b'-';
    at += 1;
    for b in span_id.to_bytes() {
        out[at] = DIGITS[usize::from(b >> 4)];
        out[at + 1] = DIGITS[usize::from(b & 15)];
        at += 2;
    }
    out[at..].copy_from_slice(if sampled { b"-01" } else { b"-00" });
    HeaderValue::from_bytes(&out).expect("hex digits and dashes are a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn continues_a_valid_traceparent_with_its_tracestate() {
        let (parent, state) = incoming(&headers(&[
            ("traceparent", AGENT),
            ("tracestate", "a=1"),
            ("tracestate", "b=2"),
        ]))
        .expect("a parent");
        assert_eq!(
            parent.trace_id,
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()
        );
        assert_eq!(
            parent.span_id,
            SpanId::from_hex("00f067aa0ba902b7").unwrap()
        );
        assert!(parent.sampled);
        assert_eq!(state.unwrap(), "a=1,b=2");
    }

    #[test]
    fn refuses_malformed_traceparents() {
        for bad in [
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(incoming(&headers(&[("traceparent", bad)])), None, "{bad}");
        }
        assert_eq!(
            incoming(&headers(&[("traceparent", AGENT), ("traceparent", AGENT)])),
            None,
            "two traceparents are ambiguous"
        );
    }

    #[test]
    fn reads_a_later_version_as_version_00() {
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-more";
        let (parent, _) = incoming(&headers(&[("traceparent", later)])).expect("a parent");
        assert!(!parent.sampled);
    }

    #[test]
    fn drops_an_oversized_tracestate() {
        let long = format!("k={}", "v".repeat(600));
        let (_, state) =
            incoming(&headers(&[("traceparent", AGENT), ("tracestate", &long)])).unwrap();
        assert_eq!(state, None);
    }

    #[test]
    fn writes_the_traceparent_it_reads() {
        let (parent, _) = incoming(&headers(&[("traceparent", AGENT)])).unwrap();
        assert_eq!(
            traceparent(parent.trace_id, parent.span_id, parent.sampled),
            AGENT
        );
    }
}
