//! Shipping the audit log to SIEMs: Splunk HTTP Event Collector, Elasticsearch/OpenSearch
//! `_bulk` and syslog (RFC 5424 over TCP or TLS), several at once.
//!
//! The audit log is the spool. Each sink reads it from its own durable cursor
//! (`<audit dir>/cursors/<sink>.json`), never past the durable head (`head.json`), sends
//! batches in the sink's event shape (ECS, OCSF or raw, each with the record's stable id),
//! and moves its cursor only when the destination acknowledged the batch. The shipper runs on
//! a thread of its own (`warden-siem`, one task per sink), apart from the request path.

pub mod against;
mod backoff;
pub mod config;
pub mod cursor;
mod dead_letter;
mod deliver;
pub mod elastic;
mod http;
pub mod metrics;
mod sink;
mod splunk;
pub mod spool;
mod syslog;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

pub use dead_letter::{DEAD_LETTER_DIR, path as dead_letter_path};
pub use http::SetupError;

use config::{Destination, SiemConfig, SinkConfig};
use deliver::{Delivery, Run};
use metrics::SiemMetrics;
use sink::Sink;

use crate::vault::SecretStore;

/// The running shipper: a thread with one task per sink.
pub struct Shipper {
    run: watch::Sender<Run>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Shipper {
    /// Sets up every sink of `config` (reading their secrets now, on the caller's runtime)
    /// and starts shipping the log in `audit_dir`; `None` when there are no sinks.
    pub async fn start(
        config: &SiemConfig,
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
                sink: build(&format!("siem.sinks[{i}]"), sink, vault.clone()).await?,
                batch: sink.batch.clone(),
                retry: sink.retry.clone(),
                poll: config.poll(),
                metrics: metrics.clone(),
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

/// The sink of `config`, its secrets read (`key` names it in errors).
async fn build(
    key: &str,
    config: &SinkConfig,
    vault: Option<Arc<SecretStore>>,
) -> Result<Sink, SetupError> {
    let invalid = |k: &str, reason: String| SetupError::Client {
        key: format!("{key}.{k}"),
        reason,
    };
    match config.destination() {
        Some(Destination::Splunk(s)) => {
            let k = format!("{key}.splunk_hec");
            let client = http::client(&k, s.ca_file.as_deref(), s.timeout)?;
            let token = http::Secret::read(&s.token, &format!("{k}.token"), vault).await?;
            splunk::SplunkSink::new(s.clone(), config.shape, client, token)
                .map(|s| Sink::Splunk(Box::new(s)))
                .map_err(|e| invalid("splunk_hec.url", e))
        }
        Some(Destination::Elastic(e)) => {
            let k = format!("{key}.elasticsearch");
            let client = http::client(&k, e.ca_file.as_deref(), e.timeout)?;
            let auth = elastic_auth(&k, e, vault).await?;
            elastic::ElasticSink::new(e.clone(), config.shape, client, auth)
                .map(|s| Sink::Elastic(Box::new(s)))
                .map_err(|err| invalid("elasticsearch.url", err))
        }
        Some(Destination::Syslog(s)) => {
            syslog::SyslogSink::new(&format!("{key}.syslog"), s.clone(), config.shape)
                .map(|s| Sink::Syslog(Box::new(s)))
        }
        None => Err(invalid(
            "",
            "needs exactly one destination: splunk_hec, elasticsearch or syslog".into(),
        )),
    }
}

/// The credential of an Elasticsearch sink, read now.
pub async fn elastic_auth(
    key: &str,
    config: &config::ElasticConfig,
    vault: Option<Arc<SecretStore>>,
) -> Result<elastic::Auth, SetupError> {
    let Some(auth) = &config.auth else {
        return Ok(elastic::Auth::None);
    };
    if let Some(source) = &auth.api_key {
        let key = format!("{key}.auth.api_key");
        return Ok(elastic::Auth::ApiKey(
            http::Secret::read(source, &key, vault).await?,
        ));
    }
    match (&auth.username, &auth.password) {
        (Some(username), Some(source)) => Ok(elastic::Auth::Basic {
            username: username.clone(),
            password: http::Secret::read(source, &format!("{key}.auth.password"), vault).await?,
        }),
        _ => Err(SetupError::Secret {
            key: format!("{key}.auth"),
            reason: "give either api_key, or username and password".into(),
        }),
    }
}

/// This machine's host name (`HOSTNAME` of syslog, `host` of Splunk events).
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname(2) writes at most `buf.len()` bytes into the buffer we own.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "warden".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
