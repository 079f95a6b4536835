//! What became of a traced Warden's spans over a measured window, from its own `/metrics`
//! (`warden_trace_spans_total{result}`): whether its exporter kept up with the load, so that
//! the cost measured is the cost of exporting every span.

use serde::Serialize;

/// Spans by result over a measured window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TraceSpans {
    /// Accepted by the collector.
    pub exported: u64,
    /// Dropped: the export queue was full.
    pub dropped: u64,
    /// Lost in a failed export.
    pub failed: u64,
}

impl TraceSpans {
    /// The spans counted between `start` and `end`; `None` when Warden reports none by the
    /// end (tracing off).
    pub fn between(start: Option<TraceSpans>, end: Option<TraceSpans>) -> Option<TraceSpans> {
        let (start, end) = (start.unwrap_or_default(), end?);
        Some(TraceSpans {
            exported: end.exported.saturating_sub(start.exported),
            dropped: end.dropped.saturating_sub(start.dropped),
            failed: end.failed.saturating_sub(start.failed),
        })
    }
}

/// `warden_trace_spans_total` of a Prometheus text exposition; `None` when it has none (or
/// only zeros: tracing off).
pub fn parse(text: &str) -> Option<TraceSpans> {
    let mut spans = TraceSpans::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Some(result) = name
            .strip_prefix("warden_trace_spans_total{result=\"")
            .and_then(|r| r.strip_suffix("\"}"))
        else {
            continue;
        };
        let Ok(n) = value.parse::<f64>() else {
            continue;
        };
        let n = if n.is_finite() && n >= 0.0 {
            n as u64
        } else {
            0
        };
        match result {
            "exported" => spans.exported = n,
            "dropped" => spans.dropped = n,
            "failed" => spans.failed = n,
            _ => {}
        }
    }
    (spans != TraceSpans::default()).then_some(spans)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_result_and_the_window_is_the_difference() {
        let before = parse("warden_trace_spans_total{result=\"exported\"} 10\n");
        let after = parse(
            "# TYPE warden_trace_spans_total counter\n\
             warden_trace_spans_total{result=\"dropped\"} 3\n\
             warden_trace_spans_total{result=\"exported\"} 110\n\
             warden_trace_spans_total{result=\"failed\"} 0\n",
        );
        assert_eq!(
            TraceSpans::between(before, after),
            Some(TraceSpans {
                exported: 100,
                dropped: 3,
                failed: 0
            })
        );
        assert_eq!(
            parse("warden_trace_spans_total{result=\"exported\"} 0\n"),
            None
        );
    }
}
