//! OpenTelemetry traces (`traces:`): a SERVER span per request, and a CLIENT span for its
//! upstream call, exported over OTLP/HTTP from a thread of their own.
//!
//! A request's trace is started when it arrives ([`Traces::request`]): the agent's
//! `traceparent` is continued (same trace, its span the parent, its sampled flag honoured),
//! else a trace begins. The exchange (`proxy/exchange.rs`) tells the [`RequestTrace`] what it
//! learns; the spans are built once, when the response starts, and handed to the export queue
//! when its body ends (`span.rs` holds every attribute). Off, nothing of this exists: no
//! trace, no span, no header touched.

mod client;
mod context;
mod error;
mod export;
mod sampler;
mod span;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue};
use opentelemetry::trace::{SpanId, TraceId, TraceState};

pub use error::TraceError;
pub use export::SpanCounters;
pub use span::Answered;

use crate::action::{Facts, Resource, Verb};
use crate::decision::Decision;
use crate::protocol::{Protocol, Usage};
use crate::secrets::config::CredentialSource;
use crate::secrets::own;
use crate::telemetry::config::{HeaderSource, TracesConfig};
use crate::vault::SecretStore;
use export::Queue;
use sampler::Sampler;
use span::Asked;

/// Tracing for the life of the process: off, or sampling and the export queue.
#[derive(Clone, Default)]
pub struct Traces(Option<Arc<On>>);

struct On {
    sampler: Sampler,
    queue: Queue,
}

impl Traces {
    /// No tracing.
    pub fn off() -> Traces {
        Traces(None)
    }

    /// Tracing as `cfg` says (off when `None`): export headers read from their sources
    /// (`secrets` for Vault ones), the export thread started.
    pub async fn start(
        cfg: Option<&TracesConfig>,
        secrets: Option<&Arc<SecretStore>>,
        counters: SpanCounters,
    ) -> Result<Traces, TraceError> {
        let Some(cfg) = cfg else {
            return Ok(Traces::off());
        };
        let mut headers = HashMap::with_capacity(cfg.headers.len());
        for (name, source) in &cfg.headers {
            let value = match source {
                HeaderSource::Value(v) => zeroize::Zeroizing::new(v.clone()),
                HeaderSource::Secret(s) => read_secret(name, s, secrets).await?,
            };
            headers.insert(name.clone(), value);
        }
        let queue = Queue::start(cfg, headers, counters)?;
        tracing::info!(endpoint = %cfg.endpoint, sample_ratio = cfg.sample_ratio, "exporting traces over OTLP");
        Ok(Traces(Some(Arc::new(On {
            sampler: Sampler::new(cfg.sample_ratio),
            queue,
        }))))
    }

    /// The trace of a request that just arrived (`method`, `path`, `headers`); `None` when
    /// tracing is off.
    pub fn request(
        &self,
        method: &http::Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Option<Box<RequestTrace>> {
        let on = self.0.as_ref()?;
        let incoming = context::incoming(headers);
        let (trace_id, parent, state) = match incoming {
            Some((p, state)) => (p.trace_id, Some((p.span_id, p.sampled)), state),
            None => (TraceId::from(rand::random::<u128>().max(1)), None, None),
        };
        let sampled = on.sampler.sampled(trace_id, parent.map(|(_, s)| s));
        Some(Box::new(RequestTrace {
            trace_id,
            parent: parent.map(|(id, _)| id),
            server: new_span_id(),
            client: new_span_id(),
            sampled,
            state,
            start: SystemTime::now(),
            upstream_start: None,
            asked: None,
            policies: Vec::new(),
            line: sampled.then(|| (method.clone(), Box::from(&*crate::text::bounded(path, 256)))),
            on: Arc::clone(on),
        }))
    }

    /// Sends what is queued and stops exporting, waiting at most `within`.
    pub fn shutdown(&self, within: Duration) {
        if let Some(on) = &self.0 {
            on.queue.shutdown(within);
        }
    }
}

/// The secret value of export header `name`.
async fn read_secret(
    name: &str,
    source: &CredentialSource,
    secrets: Option<&Arc<SecretStore>>,
) -> Result<zeroize::Zeroizing<String>, TraceError> {
    let key = format!("traces.headers.{name}");
    let value = own::read(source, secrets, &key)
        .await
        .map_err(|source| TraceError::Header {
            name: name.to_owned(),
            source,
        })?;
    let value = zeroize::Zeroizing::new(value.trim().to_owned());
    if HeaderValue::try_from(value.as_str()).is_err() {
        return Err(TraceError::HeaderValue(name.to_owned()));
    }
    Ok(value)
}

fn new_span_id() -> SpanId {
    SpanId::from(rand::random::<u64>().max(1))
}

/// One request's trace: its identities, and what the spans will report.
pub struct RequestTrace {
    trace_id: TraceId,
    parent: Option<SpanId>,
    server: SpanId,
    client: SpanId,
    sampled: bool,
    state: Option<HeaderValue>,
    start: SystemTime,
    upstream_start: Option<SystemTime>,
    asked: Option<Asked>,
    policies: Vec<Arc<str>>,
    /// The request's method and path (sampled requests only).
    line: Option<(http::Method, Box<str>)>,
    on: Arc<On>,
}

impl RequestTrace {
    /// Leaves the path out of the spans: an egress request's path is the agent's, to any
    /// host, and may carry what inspection withholds from the records.
    pub fn withhold_path(&mut self) {
        if let Some((_, path)) = &mut self.line {
            *path = Box::from("");
        }
    }
}

impl RequestTrace {
    /// Sets the upstream request's `traceparent` to name Warden's CLIENT span (replacing the
    /// agent's), and its `tracestate` to the agent's.
    pub fn propagate(&self, headers: &mut HeaderMap) {
        headers.insert(
            "traceparent",
            context::traceparent(self.trace_id, self.client, self.sampled),
        );
        match &self.state {
            Some(state) => {
                headers.insert("tracestate", state.clone());
            }
            None => {
                headers.remove("tracestate");
            }
        }
    }

    /// MCP: names Warden's CLIENT span in the message's `params._meta` (`traceparent`, and
    /// the agent's `tracestate`), where the OpenTelemetry MCP conventions carry trace context:
    /// a stdio server has no headers, and an HTTP server's session is shared by many calls.
    pub fn propagate_meta(&self, params: &mut serde_json::Map<String, serde_json::Value>) {
        use serde_json::Value;
        let meta = params
            .entry("_meta")
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
        let Value::Object(meta) = meta else {
            return; // not an object: the server would refuse what Warden added to it
        };
        let parent = context::traceparent(self.trace_id, self.client, self.sampled);
        if let Ok(parent) = parent.to_str() {
            meta.insert("traceparent".to_owned(), Value::from(parent));
        }
        match self.state.as_ref().and_then(|s| s.to_str().ok()) {
            Some(state) => {
                meta.insert("tracestate".to_owned(), Value::from(state));
            }
            None => {
                meta.remove("tracestate");
            }
        }
    }

    /// interpret: what the request asks for.
    pub fn interpreted(
        &mut self,
        verb: &Verb,
        resource: &Resource,
        facts: &Facts,
        protocol: Protocol,
    ) {
        if self.sampled {
            self.asked = Some(Asked::new(verb, resource, facts, protocol));
        }
    }

    /// decide: the policies that decided.
    pub fn decided(&mut self, decision: &Decision) {
        if self.sampled {
            self.policies = decision.policy_ids();
        }
    }

    /// forward: the upstream call began `seconds` ago.
    pub fn forwarded(&mut self, seconds: f64) {
        if self.sampled {
            self.upstream_start = SystemTime::now().checked_sub(Duration::from_secs_f64(seconds));
        }
    }

    /// The request's spans, built now that it is answered; `None` when it is not sampled.
    /// Boxed: the spans ride with the response body, which is moved as the response goes.
    pub fn answered(self: Box<Self>, answered: &Answered<'_>) -> Option<Box<OpenSpans>> {
        let RequestTrace {
            trace_id,
            parent,
            server,
            client,
            state,
            start,
            upstream_start,
            asked,
            policies,
            line,
            on,
            ..
        } = *self;
        let (method, path) = line?;
        let ids = span::Ids {
            trace_id,
            parent,
            server,
            client,
            state: state
                .as_ref()
                .and_then(|s| s.to_str().ok())
                .and_then(|s| s.parse::<TraceState>().ok())
                .unwrap_or_default(),
        };
        let request = span::Request {
            method: &method,
            path: &path,
            start,
            upstream_start,
            asked: &asked.unwrap_or_default(),
            policies: &policies,
        };
        Some(Box::new(OpenSpans {
            spans: span::open(&ids, &request, answered),
            on,
        }))
    }
}

/// A request's spans, waiting for its response body to end.
pub struct OpenSpans {
    spans: span::Open,
    on: Arc<On>,
}

impl OpenSpans {
    /// Ends the spans with the usage the response reported and why it failed, if it did, and
    /// queues them for export.
    pub fn end(self, usage: Usage, error: Option<&str>) {
        for span in self.spans.end(usage, error) {
            self.on.queue.push(span);
        }
    }
}
