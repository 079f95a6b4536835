//! Requests the previous run left in flight. A killed (or crashed) Warden writes no outcome
//! for the requests it was serving; their decision records were on disk before they were
//! forwarded. On open, the decision records of the last run (since its `start` record) that
//! no outcome record follows get one now, saying the request was interrupted.
//!
//! A run that ended with its `stop` record left nothing in flight. Otherwise the run is read
//! back from its end to its `start` record (`read_back.rs`, which a start's key check shares).

use std::time::Duration;

use serde_json::json;

use super::event::{AuditEvent, AuditOutcome, EventKind, Timestamp};
use super::read_back::ReadBack;

/// What an interrupted request's outcome record says went wrong.
pub const INTERRUPTED: &str =
    "interrupted: Warden stopped (killed or crashed) while the request was in flight";

/// The outcome records to append for the decisions of the log's last run that have none, as
/// `back` found them, oldest first.
pub fn interrupted(back: &ReadBack) -> Vec<AuditEvent> {
    let ended = back.last_time.unwrap_or_else(Timestamp::now);
    back.unfinished
        .iter()
        .map(|(seq, decision)| outcome_of(*seq, decision, ended))
        .collect()
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
    use super::super::segment::list_segments;
    use super::super::verify::verify;
    use super::*;
    use std::path::Path;

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
