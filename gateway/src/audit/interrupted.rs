//! Requests the previous run left in flight. A killed (or crashed) Warden writes no outcome
//! for the requests it was serving; their decision records were on disk before they were
//! forwarded. On open, the decision records of the last run (since its `start` record) that
//! no outcome record follows get one now, saying the request was interrupted.
//!
//! A run that ended with its `stop` record left nothing in flight, and nothing is read
//! beyond that record. Otherwise the run is read back from its end to its `start` record, one
//! segment at a time, keeping a few numbers per record.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::error::AuditError;
use super::event::{AuditEvent, AuditOutcome, EventKind, Timestamp};
use super::segment::{Line, Lines, list_segments};

/// What an interrupted request's outcome record says went wrong.
pub const INTERRUPTED: &str =
    "interrupted: Warden stopped (killed or crashed) while the request was in flight";

/// The fields of a record that tell where a run starts and which decisions have outcomes.
#[derive(Deserialize)]
struct Peek {
    seq: u64,
    time: Timestamp,
    kind: EventKind,
    #[serde(default)]
    decision_id: String,
    #[serde(default)]
    detail: Option<PeekDetail>,
}

#[derive(Deserialize)]
struct PeekDetail {
    #[serde(default)]
    event: Option<String>,
}

/// One record, as much of it as the reverse walk needs.
struct Entry {
    seq: u64,
    time: Timestamp,
    kind: EventKind,
    decision_id: String,
    /// A `start` or `stop` record: where the previous run begins (or the one before it ended).
    boundary: bool,
    /// Where its line is, to read a decision back whole.
    offset: u64,
    len: usize,
}

/// The outcome records to append for the decisions of the log's last run in `dir` that have
/// none, oldest first.
pub fn interrupted(dir: &Path) -> Result<Vec<AuditEvent>, AuditError> {
    let io = |action: &'static str, path: PathBuf| {
        move |source| AuditError::Io {
            action,
            path,
            source,
        }
    };
    let segments = list_segments(dir).map_err(io("list", dir.to_path_buf()))?;
    // Outcomes seen later in the run whose decisions the walk has not reached yet.
    let mut outcomes: HashMap<String, u32> = HashMap::new();
    let mut unfinished = Vec::new();
    let mut last_time: Option<Timestamp> = None;
    'segments: for (_, name) in segments.iter().rev() {
        let path = dir.join(name);
        let entries = read_entries(&path).map_err(io("read", path.clone()))?;
        let mut decisions = Vec::new();
        for entry in entries.iter().rev() {
            last_time.get_or_insert(entry.time);
            if entry.boundary {
                read_back(&path, &decisions, &mut unfinished).map_err(io("read", path.clone()))?;
                break 'segments;
            }
            match entry.kind {
                EventKind::Outcome if !entry.decision_id.is_empty() => {
                    *outcomes.entry(entry.decision_id.clone()).or_default() += 1;
                }
                EventKind::Decision if !entry.decision_id.is_empty() => {
                    match outcomes.get_mut(&entry.decision_id) {
                        Some(n) if *n > 1 => *n -= 1,
                        Some(_) => {
                            outcomes.remove(&entry.decision_id);
                        }
                        None => decisions.push(entry),
                    }
                }
                _ => {}
            }
        }
        read_back(&path, &decisions, &mut unfinished).map_err(io("read", path.clone()))?;
    }
    unfinished.sort_by_key(|(seq, _)| *seq);
    let ended = last_time.unwrap_or_else(Timestamp::now);
    Ok(unfinished
        .into_iter()
        .map(|(seq, decision)| outcome_of(seq, &decision, ended))
        .collect())
}

/// Every complete record of segment `path`, in file order.
fn read_entries(path: &Path) -> std::io::Result<Vec<Entry>> {
    let mut lines = Lines::new(File::open(path)?);
    let mut entries = Vec::new();
    loop {
        let offset = lines.complete_len();
        let Some((_, Line::Complete(bytes))) = lines.next_line()? else {
            break;
        };
        // A line that does not read as a record is left to `warden audit verify`: recovery
        // has already checked the chain of this segment's end.
        let Ok(peek) = serde_json::from_slice::<Peek>(bytes) else {
            continue;
        };
        let boundary = peek.kind == EventKind::System
            && peek
                .detail
                .as_ref()
                .and_then(|d| d.event.as_deref())
                .is_some_and(|e| e == "start" || e == "stop");
        entries.push(Entry {
            seq: peek.seq,
            time: peek.time,
            kind: peek.kind,
            decision_id: peek.decision_id,
            boundary,
            offset,
            len: bytes.len(),
        });
    }
    Ok(entries)
}

/// Reads the decision records `decisions` (entries of segment `path`) back whole.
fn read_back(
    path: &Path,
    decisions: &[&Entry],
    out: &mut Vec<(u64, AuditEvent)>,
) -> std::io::Result<()> {
    if decisions.is_empty() {
        return Ok(());
    }
    let file = File::open(path)?;
    for entry in decisions {
        let mut line = vec![0; entry.len];
        file.read_exact_at(&mut line, entry.offset)?;
        if let Ok(event) = serde_json::from_slice::<AuditEvent>(&line) {
            out.push((entry.seq, event));
        }
    }
    Ok(())
}

/// The outcome record of the request `decision` (record `seq`) started, interrupted when the
/// run's last record was written at `ended`.
fn outcome_of(seq: u64, decision: &AuditEvent, ended: Timestamp) -> AuditEvent {
    let mut event = AuditEvent::now(EventKind::Outcome);
    event.request_id = decision.request_id.clone();
    event.decision_id = decision.decision_id.clone();
    event.principal = decision.principal.clone();
    event.action = decision.action.clone();
    event.resource = decision.resource.clone();
    event.route = decision.route.clone();
    event.source_ip = decision.source_ip;
    event.client_certificate = decision.client_certificate.clone();
    let ran = ended
        .0
        .duration_since(decision.time.0)
        .unwrap_or(Duration::ZERO);
    event.outcome = Some(AuditOutcome {
        latency_ms: ran.as_secs_f64() * 1000.0,
        error: Some(INTERRUPTED.to_owned()),
        ..Default::default()
    });
    event.detail = Some(json!({
        "event": "interrupted",
        "decision_seq": seq,
        "last_record_time": ended,
        "message": "the previous run ended without a stop record while this request was in \
                    flight: what the agent and the upstream saw is unknown; latency_ms is the \
                    time from the decision to the run's last record, a lower bound",
    }));
    event
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::super::config::AuditConfig;
    use super::super::log::AuditLog;
    use super::super::read::Reader;
    use super::super::replica::ReplicaIdSource;
    use super::super::verify::verify;
    use super::*;

    fn system(event: &str) -> AuditEvent {
        let mut e = AuditEvent::now(EventKind::System);
        e.detail = Some(json!({ "event": event }));
        e
    }

    fn decision(id: &str) -> AuditEvent {
        let mut e = AuditEvent::now(EventKind::Decision);
        e.request_id = format!("req-{id}").into();
        e.decision_id = id.into();
        e.principal.kind = "agent".into();
        e.principal.id = "billing-bot".into();
        e.action = "llm:chat".into();
        e.resource = "Model::\"openai/gpt-4o\"".into();
        e.route = "openai".into();
        e.decision = "allow".into();
        e
    }

    fn outcome(id: &str) -> AuditEvent {
        let mut e = AuditEvent::now(EventKind::Outcome);
        e.decision_id = id.into();
        e.outcome = Some(AuditOutcome {
            status: 200,
            ..Default::default()
        });
        e
    }

    fn config(replica: &str) -> AuditConfig {
        AuditConfig {
            replica_id: Some(ReplicaIdSource::Name(replica.into())),
            ..AuditConfig::default()
        }
    }

    /// One run of Warden as the log sees it: `events` committed, then the process gone
    /// (with a `stop` record only if `events` holds one).
    async fn run(dir: &Path, events: Vec<AuditEvent>) {
        let log = AuditLog::open(dir, &config("warden-0")).unwrap();
        for e in events {
            log.append(e).await.unwrap();
        }
        log.close().await.unwrap();
    }

    fn records(dir: &Path) -> Vec<Value> {
        Reader::new(dir)
            .next_batch()
            .unwrap()
            .into_iter()
            .map(|r| r.value)
            .collect()
    }

    fn interrupted_ids(records: &[Value]) -> Vec<&str> {
        records
            .iter()
            .filter(|r| r["detail"]["event"] == "interrupted")
            .map(|r| r["decision_id"].as_str().unwrap())
            .collect()
    }

    #[tokio::test]
    async fn decisions_left_without_an_outcome_by_a_killed_run_are_recorded_as_interrupted() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("audit");
        // An earlier run, stopped cleanly, with a decision whose outcome was lost to nothing.
        run(&dir, vec![system("start"), decision("old"), system("stop")]).await;
        // The run that is killed: a finished request, two in flight, a refusal.
        run(
            &dir,
            vec![
                system("start"),
                decision("done"),
                decision("flying-1"),
                outcome("done"),
                decision("flying-2"),
            ],
        )
        .await;

        run(&dir, vec![]).await;
        let all = records(&dir);
        assert_eq!(interrupted_ids(&all), ["flying-1", "flying-2"]);
        let record = all
            .iter()
            .find(|r| r["detail"]["event"] == "interrupted")
            .unwrap();
        assert_eq!(record["kind"], "outcome");
        assert_eq!(record["replica"], "warden-0");
        assert_eq!(record["request_id"], "req-flying-1");
        assert_eq!(record["principal"]["id"], "billing-bot");
        assert_eq!(record["action"], "llm:chat");
        assert_eq!(record["route"], "openai");
        assert_eq!(record["outcome"]["error"], INTERRUPTED);
        assert!(record["outcome"].get("status").is_none(), "{record}");
        assert!(
            record["detail"]["decision_seq"].as_u64().is_some(),
            "{record}"
        );
        verify(&dir).unwrap();

        // The next start finds them recorded: nothing is recorded twice.
        run(&dir, vec![]).await;
        assert_eq!(interrupted_ids(&records(&dir)).len(), 2);
        verify(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_run_that_stopped_leaves_nothing_to_record() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("audit");
        run(
            &dir,
            vec![system("start"), decision("a"), outcome("a"), system("stop")],
        )
        .await;
        run(&dir, vec![]).await;
        assert!(interrupted_ids(&records(&dir)).is_empty());
    }

    #[tokio::test]
    async fn a_killed_run_is_read_back_across_segments() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("audit");
        let cfg = AuditConfig {
            segment_bytes: 600,
            ..config("warden-0")
        };
        let log = AuditLog::open(&dir, &cfg).unwrap();
        log.append(system("start")).await.unwrap();
        log.append(decision("early")).await.unwrap();
        for i in 0..10 {
            let id = format!("filler-{i}");
            log.append(decision(&id)).await.unwrap();
            log.append(outcome(&id)).await.unwrap();
        }
        log.append(decision("late")).await.unwrap();
        log.close().await.unwrap();
        assert!(list_segments(&dir).unwrap().len() > 3, "several segments");

        run(&dir, vec![]).await;
        assert_eq!(interrupted_ids(&records(&dir)), ["early", "late"]);
        verify(&dir).unwrap();
    }

    #[tokio::test]
    async fn every_record_names_its_replica() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("audit");
        run(&dir, vec![system("start"), decision("a"), outcome("a")]).await;
        let all = records(&dir);
        assert!(!all.is_empty());
        for r in &all {
            assert_eq!(r["replica"], "warden-0", "{r}");
        }
    }
}
