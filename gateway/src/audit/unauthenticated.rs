//! Refusals of callers who were never identified, recorded within a bound
//! (`audit.unauthenticated`): per source address and refusal code, the first `per_source` of
//! each interval are recorded one by one, the rest are counted, and when the interval ends one
//! summary record per source and code says how many were left out and when the first and last
//! of them came. Anyone who can reach a listener can send such requests, as fast as they like:
//! recorded one by one they would fill a bounded log (`audit.retention.max_bytes` with
//! `when_full: refuse`) and stop every agent. Decisions about identified callers never come
//! here.
//!
//! The bookkeeping is bounded: at most `max_sources` sources and codes are tracked per
//! interval (refusals from further ones are folded into one count for all of them), and the
//! map is emptied when the interval ends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use serde_json::json;

use super::config::UnauthenticatedConfig;
use super::event::{AuditEvent, EventKind, Label, Text, Timestamp};

/// Where refusals came from, as they are counted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Source {
    /// One address (`None`: the listener did not say).
    Addr(Option<IpAddr>),
    /// Every source beyond `max_sources` in the interval.
    Untracked,
}

/// One source's refusals of one code in the current interval.
struct Count {
    recorded: u32,
    folded: u64,
    first: Option<Timestamp>,
    last: Option<Timestamp>,
    kind: EventKind,
    route: Text,
}

struct Window {
    started: Instant,
    counts: HashMap<(Source, Label), Count>,
}

/// The refusals of the current interval, counted per source and code.
pub struct Folder {
    config: UnauthenticatedConfig,
    window: Mutex<Window>,
}

impl Folder {
    /// An empty count, its first interval starting `now`.
    pub fn new(config: &UnauthenticatedConfig, now: Instant) -> Folder {
        Folder {
            config: config.clone(),
            window: Mutex::new(Window {
                started: now,
                counts: HashMap::new(),
            }),
        }
    }

    /// Counts `event`, a refusal of a caller never identified, at `now`: whether it is to be
    /// recorded (else it is folded into its interval's summary), and the summaries of an
    /// interval that ended before it.
    pub fn admit(&self, event: &AuditEvent, now: Instant) -> (bool, Vec<AuditEvent>) {
        let mut window = self.window.lock().unwrap_or_else(|p| p.into_inner());
        let summaries = self.roll(&mut window, now);
        let code = event.code.clone();
        let mut source = Source::Addr(event.source_ip);
        if !window.counts.contains_key(&(source.clone(), code.clone()))
            && window.counts.len() >= self.config.max_sources
        {
            source = Source::Untracked;
        }
        let count = window
            .counts
            .entry((source.clone(), code))
            .or_insert_with(|| Count {
                recorded: 0,
                folded: 0,
                first: None,
                last: None,
                kind: event.kind,
                route: event.route.clone(),
            });
        let record = source != Source::Untracked && count.recorded < self.config.per_source;
        if record {
            count.recorded += 1;
        } else {
            count.folded += 1;
            count.first.get_or_insert(event.time);
            count.last = Some(event.time);
        }
        (record, summaries)
    }

    /// The summaries of the interval, if it ended by `now` (a new one starts).
    pub fn due(&self, now: Instant) -> Vec<AuditEvent> {
        let mut window = self.window.lock().unwrap_or_else(|p| p.into_inner());
        self.roll(&mut window, now)
    }

    /// The summaries of the interval so far, whether or not it ended (at close).
    pub fn drain(&self) -> Vec<AuditEvent> {
        let mut window = self.window.lock().unwrap_or_else(|p| p.into_inner());
        self.summaries(std::mem::take(&mut window.counts))
    }

    fn roll(&self, window: &mut Window, now: Instant) -> Vec<AuditEvent> {
        if now.saturating_duration_since(window.started) < self.config.interval {
            return Vec::new();
        }
        window.started = now;
        self.summaries(std::mem::take(&mut window.counts))
    }

    fn summaries(&self, counts: HashMap<(Source, Label), Count>) -> Vec<AuditEvent> {
        counts
            .into_iter()
            .filter(|(_, count)| count.folded > 0)
            .map(|((source, code), count)| self.summary(source, code, count))
            .collect()
    }

    /// The record of what was folded for one source and code.
    fn summary(&self, source: Source, code: Label, count: Count) -> AuditEvent {
        let mut event = AuditEvent::now(count.kind);
        event.route = count.route;
        event.code = code.clone();
        if count.kind == EventKind::Rejected {
            event.decision = "rejected".into();
        }
        let from = match &source {
            Source::Addr(addr) => {
                event.source_ip = *addr;
                "this source"
            }
            Source::Untracked => "sources beyond audit.unauthenticated.max_sources",
        };
        let (first, last) = (
            count.first.map(|t| t.to_string()).unwrap_or_default(),
            count.last.map(|t| t.to_string()).unwrap_or_default(),
        );
        event.reasons = vec![format!(
            "{} more refusals ({code}) of callers never identified, from {from}, between {first} \
             and {last}, were counted, not recorded one by one (audit.unauthenticated)",
            count.folded
        )];
        event.detail = Some(json!({
            "event": "unauthenticated_folded",
            "code": code,
            "folded": count.folded,
            "first": first,
            "last": last,
            "untracked_sources": source == Source::Untracked,
            "per_source": self.config.per_source,
            "interval": humantime::format_duration(self.config.interval).to_string(),
        }));
        event
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn config() -> UnauthenticatedConfig {
        UnauthenticatedConfig {
            per_source: 3,
            interval: Duration::from_secs(10),
            max_sources: 2,
        }
    }

    fn refusal(ip: [u8; 4], code: &'static str) -> AuditEvent {
        let mut event = AuditEvent::now(EventKind::Rejected);
        event.source_ip = Some(IpAddr::from(ip));
        event.code = code.into();
        event.route = "none".into();
        event
    }

    fn admitted(folder: &Folder, event: &AuditEvent, n: usize, now: Instant) -> usize {
        (0..n)
            .filter(|_| {
                let (record, summaries) = folder.admit(event, now);
                assert!(summaries.is_empty(), "the interval has not ended");
                record
            })
            .count()
    }

    #[test]
    fn beyond_the_first_per_source_refusals_are_counted_in_one_summary() {
        let start = Instant::now();
        let folder = Folder::new(&config(), start);
        let a = refusal([10, 0, 0, 1], "no_route");
        let b = refusal([10, 0, 0, 2], "no_route");
        assert_eq!(admitted(&folder, &a, 200, start), 3);
        assert_eq!(
            admitted(&folder, &b, 2, start),
            2,
            "another source has its own"
        );
        let missing = refusal([10, 0, 0, 1], "missing_credential");
        assert_eq!(
            admitted(&folder, &missing, 1, start),
            0,
            "the tracked sources are full: a third (source, code) is counted, not recorded"
        );

        let (record, summaries) = folder.admit(&a, start + Duration::from_secs(10));
        assert!(record, "a new interval records again");
        assert_eq!(summaries.len(), 2, "{summaries:?}");
        let of_a = summaries
            .iter()
            .find(|s| s.source_ip == a.source_ip)
            .unwrap();
        let detail = of_a.detail.as_ref().unwrap();
        assert_eq!(detail["folded"], 197);
        assert_eq!(detail["code"], "no_route");
        assert_eq!(of_a.code, "no_route");
        assert_eq!(of_a.kind, EventKind::Rejected);
        assert!(of_a.reasons[0].contains("197 more refusals"), "{of_a:?}");
        let untracked = summaries.iter().find(|s| s.source_ip.is_none()).unwrap();
        assert_eq!(
            untracked.detail.as_ref().unwrap()["untracked_sources"],
            true
        );
        assert_eq!(untracked.detail.as_ref().unwrap()["folded"], 1);
    }

    #[test]
    fn an_ended_interval_is_summed_up_without_further_traffic_and_at_close() {
        let start = Instant::now();
        let folder = Folder::new(&config(), start);
        let a = refusal([10, 0, 0, 1], "missing_credential");
        admitted(&folder, &a, 5, start);
        assert!(folder.due(start + Duration::from_secs(9)).is_empty());
        let due = folder.due(start + Duration::from_secs(10));
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].detail.as_ref().unwrap()["folded"], 2);
        assert!(folder.due(start + Duration::from_secs(30)).is_empty());

        let later = start + Duration::from_secs(31);
        admitted(&folder, &a, 4, later);
        let drained = folder.drain();
        assert_eq!(drained.len(), 1);
        assert_eq!(drained[0].detail.as_ref().unwrap()["folded"], 1);
        assert!(folder.drain().is_empty());
    }
}
