//! The export queue and its thread: finished spans wait in a bounded queue and go to the
//! collector in batches from a thread of their own (its own single-threaded runtime), so a
//! slow or absent collector never holds up a request; a full queue drops the span and counts
//! it. A span joins the queue under a short lock and wakes the thread only when it completes
//! a batch: waking it for every span cost more CPU than exporting it (docs/performance.md).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanExporter as _};
use prometheus::IntCounter;
use tokio::sync::{Notify, oneshot};
use zeroize::Zeroizing;

use super::client::CollectorClient;
use super::error::TraceError;
use crate::telemetry::config::TracesConfig;
use crate::upstream::config::UpstreamConfig;
use crate::upstream::{UpstreamClient, UpstreamError};

/// What happened to spans, for `warden_trace_spans_total{result}`.
#[derive(Clone)]
pub struct SpanCounters {
    /// Accepted by the collector.
    pub exported: IntCounter,
    /// Dropped because the queue was full.
    pub dropped: IntCounter,
    /// Lost in an export that failed.
    pub failed: IntCounter,
}

/// Where finished spans are handed over; never waits.
pub struct Queue {
    pending: Arc<Pending>,
    counters: SpanCounters,
    stop: Mutex<Option<(oneshot::Sender<()>, JoinHandle<()>)>>,
}

/// The spans waiting for the export thread, and how it is woken.
struct Pending {
    spans: Mutex<Vec<SpanData>>,
    /// Most spans waiting.
    max: usize,
    /// Spans in one export: the thread is woken when this many wait.
    batch: usize,
    batch_ready: Notify,
}

impl Pending {
    /// Up to one batch of the spans waiting.
    fn take_batch(&self) -> Vec<SpanData> {
        let mut spans = self.spans.lock().unwrap_or_else(|p| p.into_inner());
        if spans.len() <= self.batch {
            std::mem::take(&mut *spans)
        } else {
            spans.drain(..self.batch).collect()
        }
    }
}

impl Queue {
    /// Starts the export thread for `cfg`, sending `headers` with every export.
    pub fn start(
        cfg: &TracesConfig,
        headers: HashMap<String, Zeroizing<String>>,
        counters: SpanCounters,
    ) -> Result<Queue, TraceError> {
        let client = UpstreamClient::side_system(&UpstreamConfig {
            ca_file: cfg.ca_file.clone(),
            ca_only: false,
            connect_timeout: cfg.timeout.min(Duration::from_secs(5)),
            response_timeout: cfg.timeout,
            pool_max_idle_per_host: 2,
            ..UpstreamConfig::default()
        })
        .map_err(|e| match e {
            UpstreamError::CaFile(e) => TraceError::CaFile(e),
            other => TraceError::Client(other),
        })?;
        let headers = headers
            .into_iter()
            .map(|(k, v)| (k, v.as_str().to_owned()))
            .collect();
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(CollectorClient::new(client, cfg.timeout))
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(cfg.endpoint.as_str())
            .with_timeout(cfg.timeout)
            .with_headers(headers)
            .build()
            .map_err(|e| TraceError::Exporter(e.to_string()))?;
        exporter.set_resource(
            &Resource::builder_empty()
                .with_service_name(cfg.service_name.clone())
                .with_attribute(opentelemetry::KeyValue::new(
                    "service.version",
                    env!("CARGO_PKG_VERSION"),
                ))
                .build(),
        );
        let pending = Arc::new(Pending {
            spans: Mutex::new(Vec::new()),
            max: cfg.batch.max_queue_size,
            batch: cfg.batch.max_export_batch_size,
            batch_ready: Notify::new(),
        });
        let (stop, stopped) = oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(TraceError::Thread)?;
        let batcher = Batcher {
            exporter,
            pending: Arc::clone(&pending),
            counters: counters.clone(),
            delay: cfg.batch.scheduled_delay,
            endpoint: cfg.endpoint.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("warden-trace-export".into())
            .spawn(move || runtime.block_on(batcher.run(stopped)))
            .map_err(TraceError::Thread)?;
        Ok(Queue {
            pending,
            counters,
            stop: Mutex::new(Some((stop, thread))),
        })
    }

    /// Hands `span` to the export thread, or drops and counts it when the queue is full.
    pub fn push(&self, span: SpanData) {
        let p = &*self.pending;
        let waiting = {
            let mut spans = p.spans.lock().unwrap_or_else(|e| e.into_inner());
            if spans.len() >= p.max {
                None
            } else {
                spans.push(span);
                Some(spans.len())
            }
        };
        match waiting {
            None => self.counters.dropped.inc(),
            Some(n) if n == p.batch => p.batch_ready.notify_one(),
            Some(_) => {}
        }
    }

    /// Sends what is queued and stops the export thread, waiting at most `within`.
    pub fn shutdown(&self, within: Duration) {
        let Some((stop, thread)) = self.stop.lock().unwrap_or_else(|p| p.into_inner()).take()
        else {
            return;
        };
        let _ = stop.send(());
        let deadline = std::time::Instant::now() + within;
        while !thread.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if thread.is_finished() {
            let _ = thread.join();
        } else {
            tracing::warn!(
                ?within,
                "trace export did not finish in time; spans still queued are lost"
            );
        }
    }
}

/// The export thread's loop: a batch goes when it is full, when the oldest span has waited
/// `delay`, and at shutdown.
struct Batcher {
    exporter: opentelemetry_otlp::SpanExporter,
    pending: Arc<Pending>,
    counters: SpanCounters,
    delay: Duration,
    endpoint: String,
}

impl Batcher {
    async fn run(self, mut stop: oneshot::Receiver<()>) {
        loop {
            let stopping = tokio::select! {
                () = self.pending.batch_ready.notified() => false,
                () = tokio::time::sleep(self.delay) => false,
                _ = &mut stop => true,
            };
            // Everything waiting goes, a batch at a time: at shutdown, and when spans arrive
            // faster than one batch per export.
            loop {
                let batch = self.pending.take_batch();
                if batch.is_empty() {
                    break;
                }
                let full = batch.len() == self.pending.batch;
                self.export(batch).await;
                if !full && !stopping {
                    break;
                }
            }
            if stopping {
                return;
            }
        }
    }

    async fn export(&self, batch: Vec<SpanData>) {
        let n = batch.len() as u64;
        match self.exporter.export(batch).await {
            Ok(()) => self.counters.exported.inc_by(n),
            Err(e) => {
                self.counters.failed.inc_by(n);
                tracing::warn!(endpoint = %self.endpoint, spans = n, error = %e, "trace export failed; these spans are lost");
            }
        }
    }
}
