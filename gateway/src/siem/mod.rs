//! Shipping the audit log to SIEMs: Splunk HTTP Event Collector, Elasticsearch/OpenSearch
//! `_bulk` and syslog (RFC 5424 over TCP or TLS), several at once.
//!
//! The audit log is the spool. Each sink reads it from its own durable cursor
//! (`<audit dir>/cursors/<sink>.json`, authenticated with a key derived from the audit key),
//! never past the durable head (`head.json`), sends
//! batches in the sink's event shape (ECS, OCSF or raw, each with the record's stable id),
//! and moves its cursor only when the destination acknowledged the batch. The shipper runs on
//! a thread of its own (`warden-siem`, one task per sink), apart from the request path.

pub mod against;
mod backoff;
pub mod config;
pub mod cursor;
mod cursor_check;
mod dead_letter;
mod deliver;
pub mod elastic;
mod elastic_auth;
mod elastic_template;
mod host;
mod http;
pub mod metrics;
mod setup;
mod sink;
mod splunk;
pub mod spool;
mod syslog;
mod verdict;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

pub use dead_letter::{DEAD_LETTER_DIR, path as dead_letter_path};
pub use http::SetupError;

use config::SiemConfig;
use cursor::CursorKey;
use deliver::{Delivery, Run};
use metrics::SiemMetrics;

use crate::audit::AuditLog;
use crate::audit::signer::Signer;
use crate::vault::SecretStore;

/// What each sink of `config` had acknowledged when Warden starts, for retention before its
/// shipper runs: the `seq` of its saved cursor when that cursor is authentic under `signer`'s
/// key and matches the log in `audit_dir` (where the shipper resumes), else 0 (it ships from
/// the oldest record kept). The shipper reports the same when it starts, so neither a full
/// log (`audit.retention.when_full`) nor retention waits for it.
pub fn acknowledged_at_start(
    config: &SiemConfig,
    audit_dir: &Path,
    signer: &Signer,
) -> Vec<(String, u64)> {
    let key = CursorKey::of(signer);
    config
        .sinks
        .iter()
        .map(|sink| {
            let seq = match cursor_check::saved(audit_dir, &sink.name, Some(&key)) {
                Ok(cursor_check::Saved::Trusted(cursor)) => cursor.seq,
                // Its shipper says why when it starts (or does not start, for a cursor it
                // cannot read).
                Ok(cursor_check::Saved::Missing | cursor_check::Saved::Untrusted { .. })
                | Err(_) => 0,
            };
            (sink.name.clone(), seq)
        })
        .collect()
}

/// The running shipper: a thread with one task per sink.
pub struct Shipper {
    run: watch::Sender<Run>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Shipper {
    /// Sets up every sink of `config` (reading their secrets now, on the caller's runtime)
    /// and starts shipping `audit`, the log in `audit_dir`; `None` when there are no sinks.
    pub async fn start(
        config: &SiemConfig,
        audit: &AuditLog,
        audit_dir: &Path,
        vault: Option<Arc<SecretStore>>,
        metrics: SiemMetrics,
    ) -> Result<Option<Shipper>, SetupError> {
        if config.sinks.is_empty() {
            return Ok(None);
        }
        let mut deliveries = Vec::new();
        for (i, sink) in config.sinks.iter().enumerate() {
            deliveries.push(Delivery {
                name: sink.name.clone(),
                dir: audit_dir.to_path_buf(),
                sink: setup::build(&format!("siem.sinks[{i}]"), sink, vault.clone()).await?,
                batch: sink.batch.clone(),
                retry: sink.retry.clone(),
                poll: config.poll(),
                metrics: metrics.clone(),
                audit: audit.clone(),
            });
        }
        let (run, watch) = watch::channel(Run::Ship);
        let thread = std::thread::Builder::new()
            .name("warden-siem".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start the SIEM shipper's runtime");
                        return;
                    }
                };
                runtime.block_on(async move {
                    let tasks: Vec<_> = deliveries
                        .into_iter()
                        .map(|d| tokio::spawn(d.run(watch.clone())))
                        .collect();
                    for task in tasks {
                        let _ = task.await;
                    }
                });
            })
            .map_err(|e| SetupError::Client {
                key: "siem".into(),
                reason: format!("cannot start the shipper thread: {e}"),
            })?;
        Ok(Some(Shipper {
            run,
            thread: Some(thread),
        }))
    }

    /// Ships what the log holds now for up to `grace`, then stops.
    pub async fn stop(mut self, grace: Duration) {
        let deadline = Instant::now() + grace;
        let _ = self.run.send(Run::Drain(deadline));
        let Some(thread) = self.thread.take() else {
            return;
        };
        // A send in flight may outlast the deadline by its own timeout; don't wait for it.
        while !thread.is_finished() && Instant::now() < deadline + Duration::from_millis(500) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if thread.is_finished() {
            let _ = thread.join();
        } else {
            tracing::warn!(
                "SIEM shipper still sending at shutdown; what it has not acknowledged is sent after the next start"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::audit::config::{AuditConfig, RetentionConfig, WhenFull};
    use crate::audit::event::{AuditEvent, EventKind};
    use crate::audit::read::segments;
    use crate::siem::cursor::Cursor;
    use crate::siem::spool::{Entry, Spool};

    fn signer() -> Arc<Signer> {
        Arc::new(Signer::new(ed25519_dalek::SigningKey::from_bytes(&[7; 32])))
    }

    fn sinks(names: &[&str]) -> SiemConfig {
        let sinks: Vec<serde_json::Value> = names
            .iter()
            .map(|name| serde_json::json!({ "name": name }))
            .collect();
        serde_json::from_value(serde_json::json!({ "sinks": sinks })).unwrap()
    }

    fn first_segment(dir: &Path) -> u64 {
        segments(dir).unwrap()[0].0
    }

    /// A log whose size bounds it at 4 segments of 2 KiB, refusing decisions when full.
    fn bounded() -> AuditConfig {
        AuditConfig {
            segment_bytes: 2048,
            retention: RetentionConfig {
                max_bytes: Some(4 * 2048),
                when_full: WhenFull::Refuse,
                ..RetentionConfig::default()
            },
            ..AuditConfig::default()
        }
    }

    #[tokio::test]
    async fn a_verified_cursor_counts_as_acknowledged_from_the_start_and_a_full_log_does_not_wait()
    {
        // A first run, without retention, ships everything to splunk: its shipper saved an
        // authentic cursor at the last record. A cursor at the same place without a valid mac
        // (written by something else) is elastic's.
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("audit");
        let unbounded = AuditConfig {
            segment_bytes: 2048,
            ..AuditConfig::default()
        };
        let log = AuditLog::open_signed(&dir, &unbounded, signer(), Vec::new()).unwrap();
        for _ in 0..120 {
            let mut event = AuditEvent::now(EventKind::Decision);
            event.decision = "allow".into();
            log.append(event).await.unwrap();
        }
        log.close().await.unwrap();
        let head = log.head().0;
        let mut all = Vec::new();
        Spool::new(&dir, "splunk", &Cursor::default())
            .read(head, usize::MAX, usize::MAX, &mut all)
            .unwrap();
        let last = all.last().map(Entry::cursor).unwrap();
        assert_eq!(last.seq, head);
        let key = CursorKey::of(&signer());
        last.save(&dir, "splunk", Some(&key)).unwrap();
        last.save(&dir, "elastic", None).unwrap();
        assert!(segments(&dir).unwrap().len() > 5);

        let at_start =
            acknowledged_at_start(&sinks(&["splunk", "elastic", "new"]), &dir, &signer());
        assert_eq!(
            at_start,
            [
                ("splunk".to_string(), head),
                ("elastic".to_string(), 0),
                ("new".to_string(), 0)
            ]
        );

        // The next run is bounded and refuses decisions when full: with splunk's verified
        // position, retention frees the log at once, before any shipper has started.
        let at_start = acknowledged_at_start(&sinks(&["splunk"]), &dir, &signer());
        let log = AuditLog::open_signed(&dir, &bounded(), signer(), at_start).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while first_segment(&dir) == 1 {
            assert!(
                Instant::now() < deadline,
                "retention waited for a shipper that never ran"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(!log.is_full());
        log.append(AuditEvent::now(EventKind::Decision))
            .await
            .expect("decisions are not refused at start");
        log.close().await.unwrap();
    }
}
