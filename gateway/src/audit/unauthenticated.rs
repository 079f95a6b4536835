//! Refusals of callers who were never identified, recorded within a bound
//! (`audit.unauthenticated`): per source and refusal code, the first `per_source` of each
//! interval are recorded one by one, and no more than `max_records` of all sources together;
//! the rest are counted, and when the interval ends one summary record per source and code
//! says how many were left out and when the first and last of them came. Anyone who can reach
//! a listener can send such requests, as fast as they like: recorded one by one they would
//! fill a bounded log (`audit.retention.max_bytes` with `when_full: refuse`) and stop every
//! agent. A source is a prefix, not an address: an IPv6 host has a /64 to rotate through at
//! no cost (`ipv6_prefix`), and a botnet of many addresses still meets `max_records`.
//! An identified agent's refusals before any decision (quarantined, rate limited, a body that
//! could not be read) are folded the same way per agent and code beyond
//! `audit.refusals.per_agent`: a quarantined agent could otherwise fill the log alone. Its
//! decisions (allowed, denied, held) never come here.
//!
//! The bookkeeping is bounded: at most `max_sources` sources and codes are tracked per
//! interval (refusals from further ones are folded into one count for all of them), and the
//! map is emptied when the interval ends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use ipnet::IpNet;
use serde_json::json;

use super::config::{RefusalsConfig, UnauthenticatedConfig};
use super::event::{AuditEvent, AuditPrincipal, EventKind, Label, Text, Timestamp};

/// Where refusals came from, as they are counted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Source {
    /// One prefix: an IPv4 address (`ipv4_prefix`), an IPv6 /64 (`ipv6_prefix`); `None`: the
    /// listener did not say.
    Prefix(Option<IpNet>),
    /// An identified agent (its id).
    Agent(Text),
    /// Every source beyond `max_sources` in the interval.
    Untracked,
}

impl Source {
    /// The prefix `addr` is counted in: IPv4 (an IPv4-mapped IPv6 address read as one) by
    /// `ipv4_prefix`, IPv6 by `ipv6_prefix`.
    fn of(addr: Option<IpAddr>, config: &UnauthenticatedConfig) -> Source {
        Source::Prefix(addr.map(|addr| {
            let addr = addr.to_canonical();
            let len = match addr {
                IpAddr::V4(_) => config.ipv4_prefix.min(32),
                IpAddr::V6(_) => config.ipv6_prefix.min(128),
            };
            IpNet::new(addr, len)
                .expect("the length is within the address's bits")
                .trunc()
        }))
    }
}

/// One source's refusals of one code in the current interval.
struct Count {
    recorded: u32,
    folded: u64,
    first: Option<Timestamp>,
    last: Option<Timestamp>,
    kind: EventKind,
    route: Text,
    /// Who, for an identified agent's refusals.
    principal: AuditPrincipal,
}

struct Window {
    started: Instant,
    /// Refusals recorded one by one in this interval, all sources together.
    recorded: u32,
    counts: HashMap<(Source, Label), Count>,
}

/// The refusals of the current interval, counted per source and code.
pub struct Folder {
    config: UnauthenticatedConfig,
    refusals: RefusalsConfig,
    window: Mutex<Window>,
}

impl Folder {
    /// An empty count, its first interval starting `now`.
    pub fn new(config: &UnauthenticatedConfig, refusals: &RefusalsConfig, now: Instant) -> Folder {
        Folder {
            config: config.clone(),
            refusals: refusals.clone(),
            window: Mutex::new(Window {
                started: now,
                recorded: 0,
                counts: HashMap::new(),
            }),
        }
    }

    /// Counts `event`, a refusal before any decision, of a caller never identified or of an
    /// identified agent, at `now`: whether it is to be recorded (else it is folded into its
    /// interval's summary), and the summaries of an interval that ended before it.
    pub fn admit(&self, event: &AuditEvent, now: Instant) -> (bool, Vec<AuditEvent>) {
        let mut window = self.window.lock().unwrap_or_else(|p| p.into_inner());
        let summaries = self.roll(&mut window, now);
        let code = event.code.clone();
        let mut source = if !event.principal.id.is_empty() {
            Source::Agent(event.principal.id.clone())
        } else {
            Source::of(event.source_ip, &self.config)
        };
        if !window.counts.contains_key(&(source.clone(), code.clone()))
            && window.counts.len() >= self.config.max_sources
        {
            source = Source::Untracked;
        }
        let within_budget = window.recorded < self.config.max_records;
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
                principal: event.principal.clone(),
            });
        let record = match source {
            Source::Untracked => false,
            // An agent's refusals have a bound of their own: an agent is known and answerable,
            // and its refusals must not be crowded out by a flood of strangers'.
            Source::Agent(_) => count.recorded < self.refusals.per_agent,
            Source::Prefix(_) => within_budget && count.recorded < self.config.per_source,
        };
        if record {
            count.recorded += 1;
            // `max_records` is the strangers' budget.
            if matches!(source, Source::Prefix(_)) {
                window.recorded += 1;
            }
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
        window.recorded = 0;
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
        event.principal = count.principal;
        if count.kind == EventKind::Rejected {
            event.decision = "rejected".into();
        }
        let counted = match &source {
            Source::Prefix(Some(prefix)) => Some(prefix.to_string()),
            _ => None,
        };
        let from = match &source {
            Source::Prefix(prefix) => {
                event.source_ip = prefix.map(|p| p.network());
                match &counted {
                    Some(prefix) => format!("source {prefix}"),
                    None => "a source the listener did not report".to_owned(),
                }
            }
            Source::Agent(id) => format!("agent {id}"),
            Source::Untracked => "sources beyond audit.unauthenticated.max_sources".to_owned(),
        };
        let (who, bound) = match &source {
            Source::Agent(_) => ("", "audit.refusals.per_agent"),
            _ => (" of callers never identified", "audit.unauthenticated"),
        };
        let (first, last) = (
            count.first.map(|t| t.to_string()).unwrap_or_default(),
            count.last.map(|t| t.to_string()).unwrap_or_default(),
        );
        event.reasons = vec![format!(
            "{} more refusals ({code}){who}, from {from}, between {first} and {last}, were \
             counted, not recorded one by one ({bound})",
            count.folded
        )];
        let name = match &source {
            Source::Agent(_) => "refusals_folded",
            _ => "unauthenticated_folded",
        };
        event.detail = Some(json!({
            "event": name,
            "code": code,
            "folded": count.folded,
            "first": first,
            "last": last,
            "source": counted,
            "untracked_sources": source == Source::Untracked,
            "per_source": match &source {
                Source::Agent(_) => self.refusals.per_agent,
                _ => self.config.per_source,
            },
            "max_records": self.config.max_records,
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
            max_records: 1000,
            interval: Duration::from_secs(10),
            max_sources: 2,
            ipv6_prefix: 64,
            ipv4_prefix: 32,
        }
    }

    fn refusal(ip: impl Into<IpAddr>, code: &'static str) -> AuditEvent {
        let mut event = AuditEvent::now(EventKind::Rejected);
        event.source_ip = Some(ip.into());
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
        let folder = Folder::new(&config(), &RefusalsConfig::default(), start);
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
    fn an_identified_agents_refusals_are_folded_per_agent_and_never_count_against_strangers() {
        let start = Instant::now();
        let config = UnauthenticatedConfig {
            max_records: 2,
            max_sources: 100,
            ..config()
        };
        let folder = Folder::new(&config, &RefusalsConfig { per_agent: 5 }, start);
        let mut rogue = refusal([10, 0, 0, 9], "agent_quarantined");
        rogue.principal.id = "rogue".into();
        rogue.principal.kind = "agent".into();
        // Another address changes nothing: the agent is the source.
        assert_eq!(admitted(&folder, &rogue, 800, start), 5);
        rogue.source_ip = Some([10, 0, 0, 10].into());
        assert_eq!(admitted(&folder, &rogue, 100, start), 0);
        let mut good = refusal([10, 0, 0, 9], "rate_limited");
        good.principal.id = "good".into();
        assert_eq!(
            admitted(&folder, &good, 3, start),
            3,
            "another agent has its own"
        );
        let stranger = refusal([10, 0, 0, 7], "no_route");
        assert_eq!(
            admitted(&folder, &stranger, 3, start),
            2,
            "agents' records take nothing of the strangers' budget"
        );

        let summaries = folder.drain();
        let of_rogue = summaries
            .iter()
            .find(|s| &*s.principal.id == "rogue")
            .unwrap();
        let detail = of_rogue.detail.as_ref().unwrap();
        assert_eq!(detail["event"], "refusals_folded");
        assert_eq!(detail["folded"], 895);
        assert_eq!(of_rogue.code, "agent_quarantined");
        assert!(
            of_rogue.reasons[0].contains("agent rogue")
                && of_rogue.reasons[0].contains("audit.refusals.per_agent"),
            "{of_rogue:?}"
        );
    }

    #[test]
    fn an_ended_interval_is_summed_up_without_further_traffic_and_at_close() {
        let start = Instant::now();
        let folder = Folder::new(&config(), &RefusalsConfig::default(), start);
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

    #[test]
    fn an_ipv6_source_is_its_prefix_and_an_ipv4_mapped_one_its_ipv4_address() {
        let start = Instant::now();
        let config = UnauthenticatedConfig {
            max_sources: 100,
            ..config()
        };
        let folder = Folder::new(&config, &RefusalsConfig::default(), start);
        // One host rotating through its /64: one source, one budget.
        let rotating: usize = (1..=50u16)
            .map(|host| {
                let addr = std::net::Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 0, 0, 0xbeef, host);
                admitted(&folder, &refusal(addr, "no_route"), 1, start)
            })
            .sum();
        assert_eq!(rotating, 3, "the /64 had one per_source budget");
        let next_prefix = std::net::Ipv6Addr::new(0x2001, 0xdb8, 1, 3, 0, 0, 0, 1);
        assert_eq!(
            admitted(&folder, &refusal(next_prefix, "no_route"), 1, start),
            1,
            "another /64 has its own"
        );
        // IPv4 by address, whether it comes as IPv4 or IPv4-mapped IPv6.
        let v4 = std::net::Ipv4Addr::new(198, 51, 100, 7);
        assert_eq!(admitted(&folder, &refusal(v4, "no_route"), 2, start), 2);
        let mapped = refusal(v4.to_ipv6_mapped(), "no_route");
        assert_eq!(
            admitted(&folder, &mapped, 2, start),
            1,
            "the mapped address is the same IPv4 source"
        );
        let other_v4 = std::net::Ipv4Addr::new(198, 51, 100, 8);
        assert_eq!(
            admitted(&folder, &refusal(other_v4, "no_route"), 3, start),
            3
        );

        let summaries = folder.drain();
        let of_64 = summaries
            .iter()
            .find(|s| s.detail.as_ref().unwrap()["source"] == "2001:db8:1:2::/64")
            .expect("the /64's summary");
        assert_eq!(of_64.detail.as_ref().unwrap()["folded"], 47);
        assert_eq!(
            of_64.source_ip,
            Some("2001:db8:1:2::".parse().unwrap()),
            "the prefix's first address"
        );
        assert!(
            of_64.reasons[0].contains("from source 2001:db8:1:2::/64"),
            "{:?}",
            of_64.reasons
        );
        let of_v4 = summaries
            .iter()
            .find(|s| s.detail.as_ref().unwrap()["source"] == "198.51.100.7/32")
            .expect("the IPv4 address's summary");
        assert_eq!(of_v4.detail.as_ref().unwrap()["folded"], 1);
        assert_eq!(of_v4.source_ip, Some(IpAddr::from(v4)));
        assert_eq!(summaries.len(), 2, "{summaries:?}");
    }

    #[test]
    fn beyond_max_records_every_source_is_folded_into_its_own_summary() {
        let start = Instant::now();
        let config = UnauthenticatedConfig {
            max_records: 10,
            max_sources: 8,
            ..config()
        };
        let folder = Folder::new(&config, &RefusalsConfig::default(), start);
        // A botnet: many addresses, each within its per_source.
        let recorded: usize = (1..=20u8)
            .map(|host| admitted(&folder, &refusal([203, 0, 113, host], "no_route"), 2, start))
            .sum();
        assert_eq!(recorded, 10, "no more than max_records in the interval");

        let summaries = folder.due(start + Duration::from_secs(10));
        let folded: u64 = summaries
            .iter()
            .map(|s| s.detail.as_ref().unwrap()["folded"].as_u64().unwrap())
            .sum();
        assert_eq!(folded, 30, "every refusal is counted");
        assert_eq!(
            summaries.len(),
            4,
            "the sources tracked past the budget (8 tracked, the first 5 wholly recorded) and \
             the untracked rest: {summaries:?}"
        );
        let untracked = summaries.iter().find(|s| s.source_ip.is_none()).unwrap();
        assert_eq!(untracked.detail.as_ref().unwrap()["folded"], 24);
        assert_eq!(untracked.detail.as_ref().unwrap()["max_records"], 10);

        let (record, _) = folder.admit(
            &refusal([203, 0, 113, 1], "no_route"),
            start + Duration::from_secs(10),
        );
        assert!(record, "a new interval has a new budget");
    }
}
