//! What the writer reports about its commits: how many, how many records each held, how
//! long each took, how long flushes take, and how many records were lost. Served on
//! `/metrics`; an operator watches these to see the disk's flush latency, how well group
//! commit batches, and whether any record nobody waited for was lost.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, core::Collector};

/// Commit time buckets in seconds, from 50 µs (a fast fdatasync) to 1 s (a stalled disk).
const COMMIT_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0,
];

/// The writer's counters; cheap to clone (shared handles).
#[derive(Clone, Debug)]
pub struct CommitStats {
    /// Commits: one write (and, in `disk` durability, one fdatasync) each.
    pub commits: IntCounter,
    /// Of the commits, those made inline: by the appending thread itself, in `process`
    /// durability, rather than by the writer thread.
    pub inline_commits: IntCounter,
    /// Records committed.
    pub records: IntCounter,
    /// Time from a commit's first write to its records being answered.
    pub commit_seconds: Histogram,
    /// `process` durability: time of each flush (fdatasync) of what commits wrote.
    pub flush_seconds: Histogram,
    /// Records nobody waited for (outcomes, rejections, system records) that could not be
    /// written: a failed commit's, or appended once the log was closed.
    pub lost: IntCounter,
    /// Bytes of segment files, as retention last measured them (0 without retention).
    pub bytes: IntGauge,
    /// 1 while the log is full and decisions are refused (`when_full: refuse`).
    pub full: IntGauge,
    /// Segments retention deleted.
    pub deleted_segments: IntCounter,
    /// Records retention deleted before every sink had received them (`delete_unshipped`),
    /// counted once per sink.
    pub deleted_unshipped: IntCounter,
}

impl CommitStats {
    /// New, unregistered counters.
    pub fn new() -> CommitStats {
        CommitStats {
            commits: IntCounter::new(
                "warden_audit_commits_total",
                "Audit log commits (one write and one fdatasync each)",
            )
            .expect("static metric definition"),
            inline_commits: IntCounter::new(
                "warden_audit_inline_commits_total",
                "Audit log commits made by the appending thread itself (process durability), \
                 of warden_audit_commits_total",
            )
            .expect("static metric definition"),
            records: IntCounter::new("warden_audit_records_total", "Audit records committed")
                .expect("static metric definition"),
            commit_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "warden_audit_commit_duration_seconds",
                    "Time of one audit commit: its write and, in disk durability, its fdatasync",
                )
                .buckets(COMMIT_BUCKETS.to_vec()),
            )
            .expect("static metric definition"),
            flush_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "warden_audit_flush_duration_seconds",
                    "Time of one flush (fdatasync) of written audit records, in process durability",
                )
                .buckets(COMMIT_BUCKETS.to_vec()),
            )
            .expect("static metric definition"),
            lost: IntCounter::new(
                "warden_audit_records_lost_total",
                "Audit records nobody waited for (outcomes, rejections, system records) that \
                 could not be written",
            )
            .expect("static metric definition"),
            bytes: IntGauge::new(
                "warden_audit_bytes",
                "Bytes of audit segment files, as retention last measured them",
            )
            .expect("static metric definition"),
            full: IntGauge::new(
                "warden_audit_full",
                "1 while the audit log is at audit.retention.max_bytes with nothing deletable \
                 and decisions are refused",
            )
            .expect("static metric definition"),
            deleted_segments: IntCounter::new(
                "warden_audit_retention_deleted_segments_total",
                "Audit segments deleted by retention",
            )
            .expect("static metric definition"),
            deleted_unshipped: IntCounter::new(
                "warden_audit_retention_unshipped_records_total",
                "Audit records retention deleted before a SIEM sink received them \
                 (when_full: delete_unshipped), once per sink",
            )
            .expect("static metric definition"),
        }
    }

    /// The collectors, to register with a registry.
    pub fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.commits.clone()),
            Box::new(self.inline_commits.clone()),
            Box::new(self.records.clone()),
            Box::new(self.commit_seconds.clone()),
            Box::new(self.flush_seconds.clone()),
            Box::new(self.lost.clone()),
            Box::new(self.bytes.clone()),
            Box::new(self.full.clone()),
            Box::new(self.deleted_segments.clone()),
            Box::new(self.deleted_unshipped.clone()),
        ]
    }
}

impl Default for CommitStats {
    fn default() -> Self {
        CommitStats::new()
    }
}
