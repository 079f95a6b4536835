//! An OTLP/HTTP traces receiver (`POST /v1/traces`, protobuf `ExportTraceServiceRequest`):
//! what Warden exports, decoded with the protocol's own messages (`opentelemetry-proto`).

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tokio::net::TcpListener;

/// One span as received, with its resource's `service.name`.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub service: String,
    pub span: Span,
}

impl ReceivedSpan {
    /// The trace id as 32 hex digits.
    pub fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }

    /// The span id as 16 hex digits.
    pub fn span_id(&self) -> String {
        hex(&self.span.span_id)
    }

    /// The parent span id as 16 hex digits (empty for a root span).
    pub fn parent_span_id(&self) -> String {
        hex(&self.span.parent_span_id)
    }

    /// Attribute `key`, if present.
    pub fn attr(&self, key: &str) -> Option<&any_value::Value> {
        self.span
            .attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v: &AnyValue| v.value.as_ref())
    }

    /// String attribute `key`.
    pub fn str(&self, key: &str) -> Option<&str> {
        match self.attr(key)? {
            any_value::Value::StringValue(s) => Some(s),
            _ => None,
        }
    }

    /// Integer attribute `key`.
    pub fn int(&self, key: &str) -> Option<i64> {
        match self.attr(key)? {
            any_value::Value::IntValue(n) => Some(*n),
            _ => None,
        }
    }

    /// String-array attribute `key` (non-string elements are left out).
    pub fn strs(&self, key: &str) -> Option<Vec<&str>> {
        match self.attr(key)? {
            any_value::Value::ArrayValue(a) => Some(
                a.values
                    .iter()
                    .filter_map(|v| match v.value.as_ref()? {
                        any_value::Value::StringValue(s) => Some(s.as_str()),
                        _ => None,
                    })
                    .collect(),
            ),
            _ => None,
        }
    }

    /// Boolean attribute `key`.
    pub fn bool(&self, key: &str) -> Option<bool> {
        match self.attr(key)? {
            any_value::Value::BoolValue(b) => Some(*b),
            _ => None,
        }
    }

    /// String-array attribute `key`.
    pub fn strings(&self, key: &str) -> Option<Vec<String>> {
        match self.attr(key)? {
            any_value::Value::ArrayValue(a) => Some(
                a.values
                    .iter()
                    .filter_map(|v| match &v.value {
                        Some(any_value::Value::StringValue(s)) => Some(s.clone()),
                        _ => None,
                    })
                    .collect(),
            ),
            _ => None,
        }
    }

    /// Every attribute key and its value as text, for messages and "never on a span" checks.
    pub fn dump(&self) -> String {
        format!("{} {:?}", self.span.name, self.span.attributes)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Default)]
struct State {
    spans: Mutex<Vec<ReceivedSpan>>,
    exports: Mutex<Vec<http::HeaderMap>>,
}

/// The receiver, on a free 127.0.0.1 port until dropped.
pub struct OtlpReceiver {
    port: u16,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for OtlpReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OtlpReceiver(127.0.0.1:{})", self.port)
    }
}

impl OtlpReceiver {
    /// Starts listening.
    pub async fn start() -> anyhow::Result<OtlpReceiver> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(State::default());
        let task = tokio::spawn(crate::serve::accept_loop(
            listener,
            Arc::clone(&state),
            handle,
        ));
        Ok(OtlpReceiver { port, state, task })
    }

    /// `http://127.0.0.1:<port>/v1/traces`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/v1/traces", self.port)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.state.spans.lock().unwrap().clone()
    }

    /// The headers of every export received so far.
    pub fn export_headers(&self) -> Vec<http::HeaderMap> {
        self.state.exports.lock().unwrap().clone()
    }

    /// Waits up to `timeout` for a span matching `pred`.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&ReceivedSpan) -> bool,
    ) -> anyhow::Result<ReceivedSpan> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(s) = self.spans().into_iter().find(|s| pred(s)) {
                return Ok(s);
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!(
                    "no matching span within {timeout:?}; received: {:#?}",
                    self.spans()
                        .iter()
                        .map(ReceivedSpan::dump)
                        .collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    req: http::Request<Incoming>,
    state: Arc<State>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let answer = |status: u16, body: Vec<u8>| {
        let mut r = http::Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/x-protobuf"),
        );
        r
    };
    if req.method() != http::Method::POST || req.uri().path() != "/v1/traces" {
        return Ok(answer(404, Vec::new()));
    }
    if req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_none_or(|v| v != "application/x-protobuf")
    {
        return Ok(answer(415, Vec::new()));
    }
    let headers = req.headers().clone();
    let Ok(body) = req.into_body().collect().await else {
        return Ok(answer(400, Vec::new()));
    };
    let Ok(export) = ExportTraceServiceRequest::decode(body.to_bytes()) else {
        return Ok(answer(400, Vec::new()));
    };
    state.exports.lock().unwrap().push(headers);
    let mut spans = state.spans.lock().unwrap();
    for rs in export.resource_spans {
        let service = rs
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .and_then(
                |kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(any_value::Value::StringValue(s)) => Some(s.clone()),
                    _ => None,
                },
            )
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for span in ss.spans {
                spans.push(ReceivedSpan {
                    service: service.clone(),
                    span,
                });
            }
        }
    }
    Ok(answer(
        200,
        ExportTraceServiceResponse::default().encode_to_vec(),
    ))
}
