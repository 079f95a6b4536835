//! Reading circuit breakers from Warden's metrics: `warden_breaker_state{upstream}` and
//! `warden_breaker_transitions_total{upstream,to}`.

/// The value of the metric line that starts with `name` and has every one of `labels`.
pub fn metric(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|label| l.contains(label)))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

/// `warden_breaker_state` of `upstream` (0 closed, 1 half-open, 2 open).
pub fn state(metrics: &str, upstream: &str) -> Option<f64> {
    metric(
        metrics,
        "warden_breaker_state",
        &[&format!("upstream=\"{upstream}\"")],
    )
}

/// Asserts that the breaker of `upstream` went open, half-open and closed once each, in the
/// metrics and in the log (`log`: Warden's output).
pub fn assert_one_round_trip(metrics: &str, log: &str, upstream: &str) {
    for to in ["open", "half_open", "closed"] {
        assert_eq!(
            metric(
                metrics,
                "warden_breaker_transitions_total",
                &[&format!("upstream=\"{upstream}\""), &format!("to=\"{to}\"")]
            ),
            Some(1.0),
            "one transition to {to}: {metrics}"
        );
    }
    assert!(
        log.lines()
            .any(|l| l.contains("circuit breaker opened") && l.contains(upstream)),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("circuit breaker closed") && l.contains(upstream)),
        "{log}"
    );
}
