//! Retention: which closed segments go, and what happens when the log reaches its bound.
//!
//! The writer thread asks, every minute (every second while the log is near or at its bound,
//! and right after a rotation), which of the oldest closed segments may be deleted: those
//! past `audit.retention.max_age`, or as many as keep the log under `max_bytes`, but only
//! those every SIEM sink has acknowledged ([`Acknowledged`]: from the start, its saved cursor
//! when authentic and matching the log, then what its shipper in this process reports; never
//! a cursor file a process other than Warden may have written). It
//! then appends a `retention` record naming them (with the last seq and hash of each, and each
//! sink's acknowledged seq), commits it under a signed checkpoint, and only then deletes
//! them: `warden audit verify` accepts a log that begins after seq N only when such a record
//! names a removed segment ending at N with the hash the log's first record chains to.
//!
//! When the log is over `max_bytes` and what is left is unacknowledged, `when_full` decides:
//! `refuse` (the default) marks the log full, and decision records (so requests) are refused
//! until a sink catches up; `delete_unshipped` deletes the oldest anyway, and the record names,
//! per sink, the records that sink will never receive.
//!
//! Right after a start, a sink counts as having acknowledged what its verified cursor says
//! (or nothing, without one), which is what its shipper reports when it starts: neither
//! decision waits for the shippers.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use super::acknowledged::Acknowledged;
use super::config::{RetentionConfig, WhenFull};
use super::event::{AuditEvent, EventKind};
use super::record::{ChainFields, Hash, to_hex};
use super::segment::{Line, Lines, list_segments};

/// How often retention looks when nothing is near the bound.
const INTERVAL: Duration = Duration::from_secs(60);
/// How often it looks while the log is near or at its bound (a sink catching up frees it).
const INTERVAL_FULL: Duration = Duration::from_secs(1);
/// "Near the bound": this share of `max_bytes`, in percent.
const NEAR_PERCENT: u64 = 90;
/// While full, records nobody waits for (outcomes, rejections) are still written up to this
/// share of `max_bytes` past it, in percent; beyond, they are counted lost.
pub const HEADROOM_PERCENT: u64 = 5;

/// The kind of the record retention appends before deleting.
pub const RETENTION_KIND: &str = "retention";

/// One segment file as retention sees it: its size and its first record's chain fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Its number (`audit-NNNNNN.jsonl`).
    pub number: u64,
    /// Its file name.
    pub name: String,
    /// Its size on disk, in bytes.
    pub bytes: u64,
    /// Its first record: seq, `prev` (the previous segment's last hash) and time; `None`
    /// for a segment without records yet.
    pub first: Option<(u64, Hash, SystemTime)>,
}

/// A closed segment chosen for deletion, with where it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    /// The segment.
    pub name: String,
    /// Its size.
    pub bytes: u64,
    /// Its first and last record's seq.
    pub first: u64,
    pub last: u64,
    /// Its last record's hash (the next segment's first `prev`).
    pub last_hash: Hash,
}

/// What retention decided on one look.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Segments to delete, oldest first.
    pub remove: Vec<Removal>,
    /// Why: `max_age`, `max_bytes` or `when_full`.
    pub reason: &'static str,
    /// Per sink, the seq range it has not received that `remove` takes (only with
    /// `delete_unshipped`).
    pub unshipped: BTreeMap<String, (u64, u64)>,
    /// Per sink, the last seq it acknowledged when the plan was made.
    pub acknowledged: BTreeMap<String, u64>,
    /// The log's size once `remove` is gone.
    pub bytes_after: u64,
    /// Over `max_bytes` with nothing more that may go (`refuse`).
    pub full: bool,
}

impl Plan {
    /// The `retention` record to commit before deleting.
    pub fn event(&self) -> AuditEvent {
        let mut event = AuditEvent::now(EventKind::Retention);
        let segments: Vec<Value> = self
            .remove
            .iter()
            .map(|r| {
                json!({
                    "segment": r.name,
                    "first": r.first,
                    "last": r.last,
                    "last_hash": to_hex(&r.last_hash),
                    "bytes": r.bytes,
                })
            })
            .collect();
        let unshipped: serde_json::Map<String, Value> = self
            .unshipped
            .iter()
            .map(|(sink, (from, to))| (sink.clone(), json!({"from": from, "to": to})))
            .collect();
        let mut detail = json!({
            "reason": self.reason,
            "removed": segments,
            "first_kept": self.remove.last().map_or(0, |r| r.last + 1),
        });
        if !unshipped.is_empty() {
            detail["unshipped"] = Value::Object(unshipped);
        }
        if !self.acknowledged.is_empty() {
            detail["acknowledged"] = json!(self.acknowledged);
        }
        event.detail = Some(detail);
        event
    }
}

/// What a `retention` record says was removed: each segment's last seq and hash.
pub fn removed_ends(detail: &Value) -> Vec<(u64, Hash)> {
    let Some(removed) = detail["removed"].as_array() else {
        return Vec::new();
    };
    removed
        .iter()
        .filter_map(|r| {
            let last = r["last"].as_u64()?;
            let hash = super::record::from_hex(r["last_hash"].as_str()?)?;
            Some((last, hash))
        })
        .collect()
}

/// The retention policy in force, and when it looks next.
#[derive(Debug)]
pub struct Retention {
    config: RetentionConfig,
    /// SIEM sinks whose acknowledgements hold segments back.
    holders: Vec<String>,
    /// What their destinations acknowledged (verified cursors at the start, then their
    /// shippers' reports).
    acknowledged: Acknowledged,
    next_look: Instant,
    /// The last look found the log near or at its bound.
    near: bool,
}

impl Retention {
    /// Retention by `config`, holding back what `holders` (SIEM sink names) have not
    /// acknowledged in `acknowledged`; `None` when the configuration keeps everything.
    pub fn new(
        config: &RetentionConfig,
        holders: Vec<String>,
        acknowledged: Acknowledged,
    ) -> Option<Retention> {
        if config.max_age.is_none() && config.max_bytes.is_none() {
            return None;
        }
        Some(Retention {
            config: config.clone(),
            holders,
            acknowledged,
            next_look: Instant::now(),
            near: false,
        })
    }

    /// When it looks next.
    pub fn next_look(&self) -> Instant {
        self.next_look
    }

    /// Looks at the next chance (a segment was just closed).
    pub fn look_soon(&mut self) {
        self.next_look = Instant::now();
    }

    /// The hard bound for records nobody waits for while the log is full.
    pub fn hard_bytes(&self) -> Option<u64> {
        self.config
            .max_bytes
            .map(|max| max.saturating_add(max / 100 * HEADROOM_PERCENT))
    }

    /// Looks at the log in `dir`: its segments and what the sinks acknowledged.
    pub fn look(&mut self, dir: &Path) -> io::Result<(Plan, u64)> {
        let segments = survey(dir)?;
        let acked: Vec<(String, u64)> = self
            .holders
            .iter()
            .map(|sink| (sink.clone(), self.acknowledged.get(sink)))
            .collect();
        let plan = plan(&self.config, &segments, &acked, SystemTime::now());
        let total: u64 = segments.iter().map(|s| s.bytes).sum();
        self.near = self
            .config
            .max_bytes
            .is_some_and(|max| plan.full || plan.bytes_after >= max / 100 * NEAR_PERCENT);
        self.next_look = Instant::now() + if self.near { INTERVAL_FULL } else { INTERVAL };
        Ok((plan, total))
    }
}

/// Every segment in `dir`, oldest first, with its size and first record.
pub fn survey(dir: &Path) -> io::Result<Vec<SegmentInfo>> {
    let mut out = Vec::new();
    for (number, name) in list_segments(dir)? {
        let path: PathBuf = dir.join(&name);
        let file = File::open(&path)?;
        let bytes = file.metadata()?.len();
        let mut lines = Lines::new(file);
        let first = match lines.next_line()? {
            Some((_, Line::Complete(line))) => first_record(line),
            _ => None,
        };
        out.push(SegmentInfo {
            number,
            name,
            bytes,
            first,
        });
    }
    Ok(out)
}

fn first_record(line: &[u8]) -> Option<(u64, Hash, SystemTime)> {
    let fields = ChainFields::parse(line).ok()?;
    #[derive(serde::Deserialize)]
    struct Time<'a> {
        time: &'a str,
    }
    let time = serde_json::from_slice::<Time<'_>>(line)
        .ok()
        .and_then(|t| humantime::parse_rfc3339(t.time).ok())?;
    Some((fields.seq, fields.prev.0, time))
}

/// Decides which of the oldest closed segments go. A segment is closed when a later one
/// holds records: its last record is the one before that segment's first, whose time also
/// dates it (a little late, so it is kept a little longer, never shorter). `acked` holds,
/// per sink, the last seq it acknowledged.
pub fn plan(
    config: &RetentionConfig,
    segments: &[SegmentInfo],
    acked: &[(String, u64)],
    now: SystemTime,
) -> Plan {
    let total: u64 = segments.iter().map(|s| s.bytes).sum();
    let min_acked = acked.iter().map(|(_, seq)| *seq).min().unwrap_or(u64::MAX);
    let over = |bytes: u64| config.max_bytes.is_some_and(|max| bytes > max);
    let mut plan = Plan {
        bytes_after: total,
        acknowledged: acked.iter().cloned().collect(),
        ..Plan::default()
    };
    for pair in segments.windows(2) {
        let (this, next) = (&pair[0], &pair[1]);
        let (Some((first, _, _)), Some((next_first, last_hash, ended))) = (this.first, next.first)
        else {
            break;
        };
        let last = next_first.saturating_sub(1);
        let aged = config
            .max_age
            .is_some_and(|age| now.duration_since(ended).unwrap_or_default() >= age);
        let oversize = over(plan.bytes_after);
        if !aged && !oversize {
            break;
        }
        let shipped = last <= min_acked;
        let delete_unshipped = oversize && config.when_full == WhenFull::DeleteUnshipped;
        let forced = !shipped && delete_unshipped;
        if !shipped && !forced {
            plan.full = oversize && config.when_full == WhenFull::Refuse;
            break;
        }
        if forced {
            for &(ref sink, seq) in acked {
                if seq < last {
                    let from = (seq + 1).max(first);
                    plan.unshipped
                        .entry(sink.clone())
                        .and_modify(|range| range.1 = last)
                        .or_insert((from, last));
                }
            }
        }
        // The strongest reason any removal had: when_full, then max_bytes, then max_age.
        let reason = if forced {
            "when_full"
        } else if oversize {
            "max_bytes"
        } else {
            "max_age"
        };
        if plan.reason.is_empty() || rank(reason) > rank(plan.reason) {
            plan.reason = reason;
        }
        plan.bytes_after -= this.bytes;
        plan.remove.push(Removal {
            name: this.name.clone(),
            bytes: this.bytes,
            first,
            last,
            last_hash,
        });
    }
    if over(plan.bytes_after) && !plan.full && config.when_full == WhenFull::Refuse {
        // Nothing closed is left to delete (one segment, or only empty ones): still full.
        plan.full = true;
    }
    plan
}

fn rank(reason: &str) -> u8 {
    match reason {
        "when_full" => 2,
        "max_bytes" => 1,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1 << 20;

    fn segments(n: u64, per: u64, bytes: u64, start: SystemTime) -> Vec<SegmentInfo> {
        (1..=n)
            .map(|i| SegmentInfo {
                number: i,
                name: format!("audit-{i:06}.jsonl"),
                bytes,
                first: Some((
                    (i - 1) * per + 1,
                    [i as u8; 32],
                    start + Duration::from_secs(i * 3600),
                )),
            })
            .collect()
    }

    fn cfg(max_age: Option<u64>, max_bytes: Option<u64>, when_full: WhenFull) -> RetentionConfig {
        RetentionConfig {
            max_age: max_age.map(|h| Duration::from_secs(h * 3600)),
            max_bytes,
            when_full,
        }
    }

    #[test]
    fn by_age_only_what_every_sink_acknowledged_goes() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let segs = segments(5, 100, MB, t0);
        let now = t0 + Duration::from_secs(5 * 3600 + 1800);
        let config = cfg(Some(3), None, WhenFull::Refuse);
        // Segment 1 ended when 2 began (t0+2h): 3.5 h ago; segment 2 ended at 3h: 2.5h ago.
        let plan = plan(&config, &segs, &[], now);
        assert_eq!(plan.remove.len(), 1);
        assert_eq!(plan.remove[0].name, "audit-000001.jsonl");
        assert_eq!((plan.remove[0].first, plan.remove[0].last), (1, 100));
        assert_eq!(plan.remove[0].last_hash, [2; 32]);
        assert_eq!(plan.reason, "max_age");
        // A sink that acknowledged only seq 99 holds segment 1 back.
        let held = super::plan(&config, &segs, &[("splunk".into(), 99)], now);
        assert!(held.remove.is_empty() && !held.full, "{held:?}");
        let shipped = super::plan(&config, &segs, &[("splunk".into(), 100)], now);
        assert_eq!(shipped.remove.len(), 1);
    }

    #[test]
    fn by_size_the_oldest_go_until_under_the_bound_and_the_last_segment_never() {
        let t0 = SystemTime::UNIX_EPOCH;
        let segs = segments(5, 100, 10 * MB, t0);
        let config = cfg(None, Some(25 * MB), WhenFull::Refuse);
        let plan = plan(&config, &segs, &[("elastic".into(), 1000)], t0);
        assert_eq!(plan.remove.len(), 3, "{plan:?}");
        assert_eq!(plan.bytes_after, 20 * MB);
        assert_eq!(plan.reason, "max_bytes");
        assert!(!plan.full);
        // One segment over the bound by itself: it is being written, nothing may go.
        let one = segments(1, 100, 30 * MB, t0);
        let plan = super::plan(&config, &one, &[], t0);
        assert!(plan.remove.is_empty() && plan.full);
    }

    #[test]
    fn full_refuses_by_default_and_delete_unshipped_names_what_each_sink_loses() {
        let t0 = SystemTime::UNIX_EPOCH;
        let segs = segments(5, 100, 10 * MB, t0);
        let acked = [("splunk".to_string(), 150), ("elastic".to_string(), 500)];
        let refuse = plan(
            &cfg(None, Some(25 * MB), WhenFull::Refuse),
            &segs,
            &acked,
            t0,
        );
        assert_eq!(refuse.remove.len(), 1, "segment 1 is shipped everywhere");
        assert!(refuse.full);
        let force = plan(
            &cfg(None, Some(25 * MB), WhenFull::DeleteUnshipped),
            &segs,
            &acked,
            t0,
        );
        assert_eq!(force.remove.len(), 3);
        assert!(!force.full);
        assert_eq!(force.reason, "when_full");
        assert_eq!(force.unshipped.get("splunk"), Some(&(151, 300)));
        assert_eq!(force.unshipped.get("elastic"), None);
        let event = force.event();
        let detail = event.detail.unwrap();
        assert_eq!(
            detail["unshipped"]["splunk"],
            json!({"from": 151, "to": 300})
        );
        assert_eq!(detail["first_kept"], 301);
        assert_eq!(
            detail["acknowledged"],
            json!({"splunk": 150, "elastic": 500})
        );
        assert_eq!(removed_ends(&detail).last(), Some(&(300, [4; 32])));
    }

    #[test]
    fn a_segment_without_records_after_it_is_not_known_closed() {
        let t0 = SystemTime::UNIX_EPOCH;
        let mut segs = segments(2, 100, 10 * MB, t0);
        segs[1].first = None;
        let plan = plan(
            &cfg(Some(1), Some(MB), WhenFull::DeleteUnshipped),
            &segs,
            &[],
            t0 + Duration::from_secs(86400),
        );
        assert!(plan.remove.is_empty());
    }
}
