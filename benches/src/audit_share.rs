//! How much of Warden's time per request is the wait for its decision record to be durable,
//! read from Warden's own `/metrics` at both ends of a measured window.

use serde::Serialize;

/// The cumulative figures scraped at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AuditCounters {
    /// `warden_audit_wait_seconds`: sum (s) and count.
    pub wait: (f64, f64),
    /// `warden_request_duration_seconds`, every route: sum (s) and count.
    pub request: (f64, f64),
    /// `warden_audit_commit_duration_seconds`: sum (s) and count.
    pub commit: (f64, f64),
    /// `warden_audit_records_total`.
    pub records: f64,
}

/// The audit wait over a window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AuditShare {
    /// Mean wait of a decision for its record to be durable, µs.
    pub wait_us: f64,
    /// Mean time from request to response headers in Warden, µs.
    pub request_us: f64,
    /// The wait as a share of that time, percent.
    pub share_percent: f64,
    /// Mean duration of one commit, µs.
    pub commit_us: f64,
    /// Records per commit.
    pub records_per_commit: f64,
}

impl AuditCounters {
    /// Reads the figures out of a Prometheus text exposition; `None` if one is missing.
    pub fn parse(text: &str) -> Option<AuditCounters> {
        let mut c = AuditCounters::default();
        let mut seen = [false; 7];
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((name, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let metric = name.split('{').next().unwrap_or(name);
            let (slot, seen_at) = match metric {
                "warden_audit_wait_seconds_sum" => (&mut c.wait.0, 0),
                "warden_audit_wait_seconds_count" => (&mut c.wait.1, 1),
                "warden_request_duration_seconds_sum" => (&mut c.request.0, 2),
                "warden_request_duration_seconds_count" => (&mut c.request.1, 3),
                "warden_audit_commit_duration_seconds_sum" => (&mut c.commit.0, 4),
                "warden_audit_commit_duration_seconds_count" => (&mut c.commit.1, 5),
                "warden_audit_records_total" => (&mut c.records, 6),
                _ => continue,
            };
            // Label sets of one metric (routes) add up.
            *slot += value;
            seen[seen_at] = true;
        }
        seen.iter().all(|&s| s).then_some(c)
    }

    /// The figures of the window from `self` to `later`; `None` if nothing was answered in it.
    pub fn until(&self, later: &AuditCounters) -> Option<AuditShare> {
        let mean = |a: (f64, f64), b: (f64, f64)| {
            let n = b.1 - a.1;
            (n > 0.0).then(|| 1e6 * (b.0 - a.0) / n)
        };
        let wait_us = mean(self.wait, later.wait)?;
        let request_us = mean(self.request, later.request)?;
        let commit_us = mean(self.commit, later.commit)?;
        let commits = later.commit.1 - self.commit.1;
        Some(AuditShare {
            wait_us,
            request_us,
            share_percent: 100.0 * wait_us / request_us.max(f64::MIN_POSITIVE),
            commit_us,
            records_per_commit: (later.records - self.records) / commits,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "\
# HELP warden_audit_wait_seconds Time a decision record took to become durable
# TYPE warden_audit_wait_seconds histogram
warden_audit_wait_seconds_bucket{le=\"0.001\"} 10
warden_audit_wait_seconds_sum 0.02
warden_audit_wait_seconds_count 10
warden_request_duration_seconds_sum{route=\"a\"} 0.03
warden_request_duration_seconds_count{route=\"a\"} 6
warden_request_duration_seconds_sum{route=\"b\"} 0.02
warden_request_duration_seconds_count{route=\"b\"} 4
warden_audit_commit_duration_seconds_sum 0.004
warden_audit_commit_duration_seconds_count 4
warden_audit_records_total 20
";

    #[test]
    fn parses_and_adds_up_label_sets() {
        let c = AuditCounters::parse(BEFORE).expect("all present");
        assert_eq!(c.wait, (0.02, 10.0));
        assert_eq!(c.request, (0.05, 10.0));
        assert_eq!(c.commit, (0.004, 4.0));
        assert_eq!(c.records, 20.0);
    }

    #[test]
    fn a_missing_metric_gives_nothing() {
        let without = BEFORE.replace("warden_audit_records_total 20\n", "");
        assert_eq!(AuditCounters::parse(&without), None);
    }

    #[test]
    fn the_window_is_the_difference() {
        let before = AuditCounters::parse(BEFORE).expect("before");
        let later = AuditCounters {
            wait: (0.02 + 0.3, 10.0 + 100.0),
            request: (0.05 + 0.5, 10.0 + 100.0),
            commit: (0.004 + 0.01, 4.0 + 10.0),
            records: 20.0 + 200.0,
        };
        let share = before.until(&later).expect("window");
        assert!((share.wait_us - 3000.0).abs() < 1e-6, "{share:?}");
        assert!((share.request_us - 5000.0).abs() < 1e-6, "{share:?}");
        assert!((share.share_percent - 60.0).abs() < 1e-6, "{share:?}");
        assert!((share.commit_us - 1000.0).abs() < 1e-6, "{share:?}");
        assert!((share.records_per_commit - 20.0).abs() < 1e-9, "{share:?}");
        assert_eq!(before.until(&before), None, "an empty window");
    }
}
