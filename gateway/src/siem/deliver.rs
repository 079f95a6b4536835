//! One sink's delivery loop: read a batch of durable records from the spool, send it, and
//! move the sink's cursor only once the destination acknowledged every record (or the
//! dead-letter file holds the ones it rejected for good). Failures are retried with backoff
//! and jitter, without end: the log is the buffer, and the cursor simply falls behind.
//!
//! A saved cursor is resumed from only when it is authentic (its `mac`) and matches the log
//! (`cursor_check`); otherwise the sink ships from the oldest record kept (the destination
//! sees some records again, each with its stable id) and a `system` record says why. What
//! the destination acknowledged is reported to the audit log ([`Acknowledged`]) for
//! retention, and records found gone before they were shipped are recorded in the chain.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use serde_json::json;
use tokio::sync::watch;

use crate::audit::AuditLog;
use crate::audit::event::{AuditEvent, EventKind};

use super::backoff::Backoff;
use super::config::{BatchConfig, RetryConfig};
use super::cursor::{Cursor, CursorKey};
use super::cursor_check::Saved;
use super::metrics::SiemMetrics;
use super::sink::Sink;
use super::spool::{Entry, Spool};
use super::verdict::SendError;

/// How often the lag gauges are set again while a batch waits to be retried: they grow with
/// an outage (so the alerts on them fire) rather than keep what they were when it began.
const LAG_REFRESH: Duration = Duration::from_secs(1);

/// What the lag gauges are computed from while a batch is being delivered.
#[derive(Clone, Copy)]
struct Behind<'a> {
    spool: &'a Spool,
    cursor: &'a Cursor,
}

/// What the shipper is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Run {
    /// Ship as records come.
    Ship,
    /// Ship what is durable now, until this instant at the latest, then stop.
    Drain(Instant),
}

/// Everything one sink's loop needs.
pub struct Delivery {
    pub name: String,
    pub dir: PathBuf,
    pub sink: Sink,
    pub batch: BatchConfig,
    pub retry: RetryConfig,
    pub poll: Duration,
    pub metrics: SiemMetrics,
    /// The log shipped: its key authenticates cursors, its retention learns what was
    /// acknowledged, and what goes wrong with the sink's position is recorded in it.
    pub audit: AuditLog,
}

impl Delivery {
    /// Runs until told to stop (after draining).
    pub async fn run(mut self, mut run: watch::Receiver<Run>) {
        let key = self.audit.signer().map(|s| CursorKey::of(s));
        let saved = match super::cursor_check::saved(&self.dir, &self.name, key.as_ref()) {
            Ok(saved) => saved,
            Err(e) => {
                tracing::error!(sink = %self.name, error = %e, "SIEM sink not started");
                return;
            }
        };
        let mut cursor = self.resume(saved);
        self.audit.acknowledged().set(&self.name, cursor.seq);
        tracing::info!(sink = %self.name, acknowledged_seq = cursor.seq, "SIEM sink shipping");
        let mut spool = Spool::new(&self.dir, &self.name, &cursor);
        let mut backoff = Backoff::new(&self.retry);
        let mut batch: Vec<Entry> = Vec::new();
        let mut first_seen: Option<Instant> = None;
        loop {
            let mode = *run.borrow();
            if matches!(mode, Run::Drain(deadline) if Instant::now() >= deadline) {
                return;
            }
            let head = match spool.durable_head() {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(sink = %self.name, error = %e, "cannot read the audit log's head");
                    if self.wait(&mut run, self.poll).await {
                        return;
                    }
                    continue;
                }
            };
            let read = spool.read(
                head,
                self.batch.max_events,
                self.batch.max_bytes,
                &mut batch,
            );
            for (from, to) in spool.take_missing() {
                self.record("siem_records_missing", json!({
                    "from": from,
                    "to": to,
                    "message": "records this sink had not acknowledged were no longer in the log when it came to ship them; its destination will never receive them",
                }));
            }
            if let Err(e) = read {
                tracing::error!(sink = %self.name, error = %e, "cannot read the audit log");
                let wait = backoff.next_wait();
                if self.wait(&mut run, wait).await {
                    return;
                }
                continue;
            }
            self.lag(head, &cursor, batch.first());
            if batch.is_empty() {
                first_seen = None;
                if let Run::Drain(_) = mode {
                    return;
                }
                if self.wait(&mut run, self.poll).await {
                    return;
                }
                continue;
            }
            let since = *first_seen.get_or_insert_with(Instant::now);
            let bytes: usize = batch.iter().map(|e| e.bytes).sum();
            let full = batch.len() >= self.batch.max_events || bytes >= self.batch.max_bytes;
            if !full && mode == Run::Ship && since.elapsed() < self.batch.linger {
                let wait = self.poll.min(self.batch.linger - since.elapsed());
                if self.wait(&mut run, wait).await {
                    return;
                }
                continue;
            }
            let behind = Behind {
                spool: &spool,
                cursor: &cursor,
            };
            if !self.deliver(&batch, &mut backoff, &mut run, behind).await {
                return;
            }
            let last = batch.last().map(Entry::cursor).unwrap_or_default();
            if let Err(e) = last.save(&self.dir, &self.name, key.as_ref()) {
                tracing::error!(sink = %self.name, error = %e, "cannot save the SIEM cursor; a restart will send this batch again");
            }
            self.audit.acknowledged().set(&self.name, last.seq);
            cursor = last;
            batch.clear();
            first_seen = None;
            if backoff.failures > 0 {
                tracing::info!(sink = %self.name, failed_attempts = backoff.failures,
                    acknowledged_seq = cursor.seq, "SIEM delivery succeeds again");
            }
            backoff.reset();
            self.lag(head, &cursor, None);
            self.metrics
                .last_success
                .with_label_values(&[&self.name])
                .set(unix_now());
        }
    }

    /// The cursor to resume from: the saved one when it is authentic and matches the log,
    /// else the start of the log (with an error and a `system` record saying why).
    fn resume(&self, saved: Saved) -> Cursor {
        let (claimed, why) = match saved {
            Saved::Missing => return Cursor::default(),
            Saved::Trusted(cursor) => return cursor,
            Saved::Untrusted { claimed, why } => (claimed, why),
        };
        tracing::error!(sink = %self.name, claimed_seq = claimed, reason = %why,
            "this SIEM sink's cursor is not trusted; shipping from the oldest record kept (the destination may receive some records again, with the same ids)");
        self.record(
            "siem_cursor_untrusted",
            json!({
                "claimed_seq": claimed,
                "reason": why,
                "message": "the sink ships from the oldest record kept; retention waits for what it acknowledges now",
            }),
        );
        Cursor::default()
    }

    /// Appends a `system` record about this sink to the log (not waiting for it).
    fn record(&self, event: &str, mut detail: serde_json::Value) {
        detail["event"] = event.into();
        detail["sink"] = self.name.clone().into();
        let mut record = AuditEvent::now(EventKind::System);
        record.detail = Some(detail);
        self.audit.append_detached(record);
    }

    /// Sends `batch` until every record is acknowledged or dead-lettered; `false` when the
    /// shipper stopped first (the cursor stays where it was).
    async fn deliver(
        &mut self,
        batch: &[Entry],
        backoff: &mut Backoff,
        run: &mut watch::Receiver<Run>,
        behind: Behind<'_>,
    ) -> bool {
        let mut pending: Vec<&Entry> = batch.iter().collect();
        loop {
            let result = self.sink.send(&pending).await;
            let sent = pending.len();
            let (retry, rejected): (Vec<&Entry>, Vec<(&Entry, String)>) = match result {
                Ok(verdict) => (
                    verdict
                        .retry
                        .iter()
                        .filter_map(|&i| pending.get(i).copied())
                        .collect(),
                    verdict
                        .rejected
                        .into_iter()
                        .filter_map(|(i, why)| pending.get(i).map(|e| (*e, why)))
                        .collect(),
                ),
                Err(SendError::Rejected(why)) => (
                    Vec::new(),
                    pending.iter().map(|e| (*e, why.clone())).collect(),
                ),
                Err(SendError::Retry(why)) => {
                    self.metrics
                        .failed
                        .with_label_values(&[&self.name])
                        .inc_by(sent as u64);
                    let wait = backoff.next_wait();
                    tracing::warn!(sink = %self.name, error = %why, events = sent,
                        first_seq = pending.first().map(|e| e.seq), attempt = backoff.failures,
                        retry_in = ?wait, "SIEM delivery failed; will try again");
                    if self
                        .wait_retry(run, wait, behind, pending.first().copied())
                        .await
                    {
                        return false;
                    }
                    continue;
                }
            };
            if !rejected.is_empty() {
                let letters: Vec<(&Entry, &str)> =
                    rejected.iter().map(|(e, why)| (*e, why.as_str())).collect();
                if let Err(e) = super::dead_letter::write(&self.dir, &self.name, &letters) {
                    // Not written: the records stay undelivered and are tried again.
                    tracing::error!(sink = %self.name, error = %e, "cannot dead-letter rejected records; will try again");
                    let wait = backoff.next_wait();
                    if self
                        .wait_retry(run, wait, behind, pending.first().copied())
                        .await
                    {
                        return false;
                    }
                    continue;
                }
                for (entry, why) in &rejected {
                    tracing::warn!(sink = %self.name, seq = entry.seq, id = %entry.record.id,
                        reason = %why, "the SIEM rejected a record; kept in the dead-letter file");
                }
                self.metrics
                    .dead_lettered
                    .with_label_values(&[&self.name])
                    .inc_by(rejected.len() as u64);
            }
            let delivered = sent - retry.len() - rejected.len();
            self.metrics
                .sent
                .with_label_values(&[&self.name])
                .inc_by(delivered as u64);
            if retry.is_empty() {
                return true;
            }
            self.metrics
                .failed
                .with_label_values(&[&self.name])
                .inc_by(retry.len() as u64);
            let wait = backoff.next_wait();
            tracing::warn!(sink = %self.name, events = retry.len(), retry_in = ?wait,
                "the SIEM could not take some records now; sending them again");
            pending = retry;
            if self
                .wait_retry(run, wait, behind, pending.first().copied())
                .await
            {
                return false;
            }
        }
    }

    /// Sets the lag gauges: records durable but not acknowledged, and their age.
    fn lag(&self, head: u64, cursor: &Cursor, oldest: Option<&Entry>) {
        let label = [self.name.as_str()];
        let behind = head.saturating_sub(cursor.seq);
        self.metrics
            .lag_events
            .with_label_values(&label)
            .set(behind as i64);
        let age = |time: Option<SystemTime>| {
            time.and_then(|t| SystemTime::now().duration_since(t).ok())
                .map(|d| d.as_secs_f64())
        };
        let (lag, oldest) = if behind == 0 {
            (0.0, 0.0)
        } else {
            let oldest = oldest.and_then(|e| age(e.record.time()));
            // Nothing acknowledged yet: the sink is behind since the oldest record.
            let lag = age(humantime::parse_rfc3339(&cursor.time).ok()).or(oldest);
            (lag.unwrap_or(0.0), oldest.unwrap_or(0.0))
        };
        self.metrics.lag_seconds.with_label_values(&label).set(lag);
        self.metrics
            .oldest_undelivered_seconds
            .with_label_values(&label)
            .set(oldest);
    }

    /// Waits `wait`, or less when asked to stop; `true` when the loop should end now.
    async fn wait(&self, run: &mut watch::Receiver<Run>, wait: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(wait) => false,
            changed = run.changed() => changed.is_err(),
        }
    }

    /// Waits before a retry, or less when told to drain or stop, setting the lag gauges every
    /// [`LAG_REFRESH`] from the log's head and `oldest`, the oldest record not acknowledged;
    /// `true` when draining ran out of time (or the shipper is gone).
    async fn wait_retry(
        &self,
        run: &mut watch::Receiver<Run>,
        wait: Duration,
        behind: Behind<'_>,
        oldest: Option<&Entry>,
    ) -> bool {
        let until = Instant::now() + wait;
        loop {
            if let Ok(head) = behind.spool.durable_head() {
                self.lag(head, behind.cursor, oldest);
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(left.min(LAG_REFRESH)) => {}
                changed = run.changed() => {
                    if changed.is_err() {
                        return true;
                    }
                    break;
                }
            }
        }
        matches!(*run.borrow(), Run::Drain(deadline) if Instant::now() >= deadline)
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditLog;
    use crate::audit::config::AuditConfig;
    use crate::audit::event::{AuditEvent, EventKind};
    use crate::siem::config::{EventShape, SyslogConfig};
    use crate::siem::cursor::Loaded;
    use crate::siem::syslog::SyslogSink;
    use tokio::io::AsyncReadExt;

    async fn log_of(dir: &std::path::Path, n: usize) -> AuditLog {
        let log = AuditLog::open(dir, &AuditConfig::default()).unwrap();
        for _ in 0..n {
            log.append(AuditEvent::now(EventKind::System))
                .await
                .unwrap();
        }
        log
    }

    fn delivery(
        log: &AuditLog,
        dir: &std::path::Path,
        addr: std::net::SocketAddr,
        batch: BatchConfig,
    ) -> Delivery {
        let config: SyslogConfig =
            serde_json::from_value(serde_json::json!({"address": addr.to_string()})).unwrap();
        Delivery {
            name: "t".into(),
            dir: dir.to_path_buf(),
            sink: Sink::Syslog(Box::new(
                SyslogSink::new("t", config, EventShape::Raw).unwrap(),
            )),
            batch,
            retry: RetryConfig {
                initial: Duration::from_millis(20),
                max: Duration::from_millis(50),
            },
            poll: Duration::from_millis(10),
            metrics: SiemMetrics::new(),
            audit: log.clone(),
        }
    }

    fn cursor_seq(dir: &std::path::Path) -> u64 {
        match Cursor::load(dir, "t", None).unwrap() {
            Loaded::Missing => 0,
            Loaded::Authentic(c) | Loaded::Unauthentic(c) => c.seq,
        }
    }

    #[tokio::test]
    async fn the_cursor_moves_only_once_the_destination_took_the_batch() {
        let dir = tempfile::tempdir().unwrap();
        let log = log_of(dir.path(), 5).await;
        // A port nobody listens on yet.
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        let batch = BatchConfig {
            max_events: 2,
            max_bytes: usize::MAX,
            linger: Duration::from_millis(10),
        };
        let d = delivery(&log, dir.path(), addr, batch);
        let metrics = d.metrics.clone();
        let (run, watch) = watch::channel(Run::Ship);
        let task = tokio::spawn(d.run(watch));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            cursor_seq(dir.path()),
            0,
            "nothing acknowledged, nothing moved"
        );
        assert!(metrics.failed.with_label_values(&["t"]).get() > 0);
        assert_eq!(metrics.lag_events.with_label_values(&["t"]).get(), 5);
        assert_eq!(log.acknowledged().get("t"), 0);
        // The collector comes up: everything is delivered, in batches of at most 2.
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let reader = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut all = Vec::new();
            let _ = stream.read_to_end(&mut all).await;
            all
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while cursor_seq(dir.path()) < 5 {
            assert!(
                Instant::now() < deadline,
                "the cursor did not reach the head"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(metrics.sent.with_label_values(&["t"]).get(), 5);
        assert_eq!(log.acknowledged().get("t"), 5, "retention learns it");
        assert_eq!(metrics.lag_events.with_label_values(&["t"]).get(), 0);
        run.send(Run::Drain(Instant::now())).unwrap();
        task.await.unwrap();
        let text = String::from_utf8(reader.await.unwrap()).unwrap();
        assert_eq!(text.matches("<110>1 ").count(), 5, "{text}");
    }

    #[tokio::test]
    async fn the_lag_grows_while_the_destination_stays_down() {
        let dir = tempfile::tempdir().unwrap();
        let log = log_of(dir.path(), 5).await;
        // A port nobody listens on: every delivery fails.
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        let batch = BatchConfig {
            max_events: 100,
            max_bytes: usize::MAX,
            linger: Duration::from_millis(10),
        };
        let mut d = delivery(&log, dir.path(), addr, batch);
        // One wait between tries (1.5 to 3 s) outlasts what is checked below.
        d.retry = RetryConfig {
            initial: Duration::from_secs(3),
            max: Duration::from_secs(3),
        };
        let metrics = d.metrics.clone();
        let (run, watch) = watch::channel(Run::Ship);
        let task = tokio::spawn(d.run(watch));
        let deadline = Instant::now() + Duration::from_secs(5);
        while metrics.failed.with_label_values(&["t"]).get() == 0 {
            assert!(Instant::now() < deadline, "no delivery was tried");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Records written while the destination is down count as behind, and the oldest
        // one not acknowledged ages, before the next try.
        for _ in 0..3 {
            log.append(AuditEvent::now(EventKind::System))
                .await
                .unwrap();
        }
        let deadline = Instant::now() + Duration::from_millis(1400);
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(metrics.lag_events.with_label_values(&["t"]).get(), 8);
        let oldest = metrics
            .oldest_undelivered_seconds
            .with_label_values(&["t"])
            .get();
        assert!(
            oldest >= 1.0,
            "the oldest undelivered record's age: {oldest}"
        );
        let lag = metrics.lag_seconds.with_label_values(&["t"]).get();
        assert!(lag >= 1.0, "the lag in seconds: {lag}");
        run.send(Run::Drain(Instant::now())).unwrap();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_cursor_warden_did_not_write_is_not_trusted_and_the_log_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let log = log_of(dir.path(), 5).await;
        // A valid-looking cursor at seq 4, built from the log itself, without a valid mac.
        let mut all = Vec::new();
        Spool::new(dir.path(), "t", &Cursor::default())
            .read(5, 100, usize::MAX, &mut all)
            .unwrap();
        let forged = all[3].cursor();
        std::fs::create_dir_all(dir.path().join("cursors")).unwrap();
        std::fs::write(
            dir.path().join("cursors/t.json"),
            serde_json::to_vec(&forged).unwrap(),
        )
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let reader = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut all = Vec::new();
            let _ = stream.read_to_end(&mut all).await;
            all
        });
        let batch = BatchConfig {
            max_events: 100,
            max_bytes: usize::MAX,
            linger: Duration::from_millis(10),
        };
        let (run, watch) = watch::channel(Run::Ship);
        let task = tokio::spawn(delivery(&log, dir.path(), addr, batch).run(watch));
        // Everything from seq 1, and the record saying why, is shipped.
        let deadline = Instant::now() + Duration::from_secs(10);
        while log.acknowledged().get("t") < 6 {
            assert!(Instant::now() < deadline, "not shipped from the start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        run.send(Run::Drain(Instant::now())).unwrap();
        task.await.unwrap();
        log.close().await.unwrap();
        let text = String::from_utf8(reader.await.unwrap()).unwrap();
        assert!(text.contains(r#"seq="1""#), "{text}");
        let mut untrusted = Vec::new();
        crate::audit::read::Reader::new(dir.path())
            .each_new(|r| {
                if r.value["detail"]["event"] == "siem_cursor_untrusted" {
                    untrusted.push(r.value);
                }
            })
            .unwrap();
        assert_eq!(untrusted.len(), 1);
        assert_eq!(untrusted[0]["detail"]["claimed_seq"], 4);
        assert_eq!(untrusted[0]["detail"]["sink"], "t");
    }

    #[tokio::test]
    async fn a_batch_that_is_not_full_waits_for_its_linger() {
        let dir = tempfile::tempdir().unwrap();
        let log = log_of(dir.path(), 3).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _accept = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let _ = stream.read_to_end(&mut Vec::new()).await;
        });
        let batch = BatchConfig {
            max_events: 100,
            max_bytes: usize::MAX,
            linger: Duration::from_millis(400),
        };
        let (run, watch) = watch::channel(Run::Ship);
        let start = Instant::now();
        let task = tokio::spawn(delivery(&log, dir.path(), addr, batch).run(watch));
        while cursor_seq(dir.path()) < 3 {
            assert!(start.elapsed() < Duration::from_secs(10));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            start.elapsed() >= Duration::from_millis(400),
            "{:?}",
            start.elapsed()
        );
        run.send(Run::Drain(Instant::now())).unwrap();
        task.await.unwrap();
    }
}
