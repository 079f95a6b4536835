//! Reading streamed responses as the client sees them: chunk arrival times and SSE events.

use bytes::Bytes;
use serde_json::Value;
use std::time::{Duration, Instant};

/// One body chunk and when it arrived.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub at: Instant,
    pub bytes: Bytes,
}

/// Reads the whole body of `response` chunk by chunk, noting when each arrived.
pub async fn read_chunks(
    mut response: reqwest::Response,
    timeout: Duration,
) -> anyhow::Result<Vec<Chunk>> {
    let mut chunks = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while let Some(bytes) = tokio::time::timeout_at(deadline, response.chunk()).await?? {
        chunks.push(Chunk {
            at: Instant::now(),
            bytes,
        });
    }
    Ok(chunks)
}

/// The concatenated body of `chunks` as text.
pub fn text_of(chunks: &[Chunk]) -> String {
    chunks
        .iter()
        .map(|c| String::from_utf8_lossy(&c.bytes))
        .collect()
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `event:` field, if any.
    pub name: Option<String>,
    /// `data:` lines joined with `\n`.
    pub data: String,
    /// `id:` field, if any.
    pub id: Option<String>,
}

impl Event {
    /// `data` parsed as JSON (`Value::Null` for `[DONE]` or non-JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or(Value::Null)
    }
}

/// Parses an SSE body (LF or CRLF line ends) into events; comments and empty events are skipped.
pub fn parse_events(body: &str) -> Vec<Event> {
    let normalized = body.replace("\r\n", "\n").replace('\r', "\n");
    normalized
        .split("\n\n")
        .filter_map(|block| {
            let mut name = None;
            let mut id = None;
            let mut data: Vec<&str> = Vec::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = Some(v.trim().to_owned());
                } else if let Some(v) = line.strip_prefix("id:") {
                    id = Some(v.trim().to_owned());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push(v.strip_prefix(' ').unwrap_or(v));
                }
            }
            (!data.is_empty()).then(|| Event {
                name,
                data: data.join("\n"),
                id,
            })
        })
        .collect()
}

/// The assistant text of an OpenAI chat completion stream: its content deltas, joined.
pub fn chat_text(events: &[Event]) -> String {
    events
        .iter()
        .filter_map(|e| {
            e.json()["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

/// Reads a live event stream event by event, as a client does (keep-alive comments skipped).
pub struct EventReader {
    response: reqwest::Response,
    buffer: String,
}

impl EventReader {
    /// Reads the events of `response`.
    pub fn new(response: reqwest::Response) -> EventReader {
        EventReader {
            response,
            buffer: String::new(),
        }
    }

    /// The next event with data, waiting at most `timeout`; `None` when the stream ended.
    pub async fn next(&mut self, timeout: Duration) -> anyhow::Result<Option<Event>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let normalized = self.buffer.replace("\r\n", "\n");
            if let Some(end) = normalized.find("\n\n") {
                self.buffer = normalized[end + 2..].to_owned();
                if let Some(event) = parse_events(&normalized[..end + 2]).pop() {
                    return Ok(Some(event));
                }
                continue;
            }
            match tokio::time::timeout_at(deadline, self.response.chunk()).await?? {
                Some(bytes) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                None => return Ok(None),
            }
        }
    }

    /// The events left until the stream ends; fails when it does not end within `wait`.
    pub async fn until_the_end(&mut self, wait: Duration) -> anyhow::Result<Vec<Event>> {
        let mut events = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Ok(Some(event)) => events.push(event),
                Ok(None) => return Ok(events),
                Err(e) => {
                    anyhow::bail!("the stream did not end within {wait:?}: {e}; saw {events:?}")
                }
            }
        }
    }
}
