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
use deliver::{Delivery, Run};
use metrics::SiemMetrics;

use crate::audit::AuditLog;
use crate::vault::SecretStore;

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
