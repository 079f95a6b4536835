//! Observe: the token usage a response reports, read as it streams by, chunk by chunk, with
//! bounded memory. What a body or event reports is the dialect's to read.

use bytes::Bytes;

use super::dialect::Dialect;
use super::sse::{SseDecoder, SseSink};
use super::usage::Usage;

/// Most bytes of a JSON body (or of one stream event) kept to read usage from; past it, usage
/// is given up rather than memory held.
pub const MAX_BUFFERED_BODY: usize = 4 * 1024 * 1024;

/// How the body is read.
#[derive(Debug)]
enum Mode {
    /// `text/event-stream`: decoded event by event.
    Events(SseDecoder),
    /// Anything else: buffered (up to [`MAX_BUFFERED_BODY`]) and parsed at the end. A body
    /// that arrives in one shared chunk is kept as that chunk, not copied.
    Json {
        body: Vec<u8>,
        first: Option<Bytes>,
        overflowed: bool,
    },
}

/// Observes a response body as it streams through, chunk by chunk, with bounded memory.
#[derive(Debug)]
pub struct UsageScanner {
    mode: Mode,
    reader: UsageReader,
}

impl UsageScanner {
    /// A scanner for a response in `dialect`; `event_stream` says the response content type is
    /// `text/event-stream`.
    pub fn new(dialect: &'static dyn Dialect, event_stream: bool) -> Self {
        let mode = if event_stream {
            Mode::Events(SseDecoder::new(MAX_BUFFERED_BODY))
        } else {
            Mode::Json {
                body: Vec::new(),
                first: None,
                overflowed: false,
            }
        };
        UsageScanner {
            mode,
            reader: UsageReader {
                dialect,
                usage: Usage::default(),
            },
        }
    }

    /// Observes the next chunk of the body, shared: a JSON body's first chunk is kept by
    /// reference (most bodies arrive whole), later ones are copied.
    pub fn feed_shared(&mut self, chunk: &Bytes) {
        if let Mode::Json {
            body,
            first: first @ None,
            overflowed: false,
        } = &mut self.mode
            && body.is_empty()
            && chunk.len() <= MAX_BUFFERED_BODY
        {
            *first = Some(chunk.clone());
            return;
        }
        self.feed(chunk);
    }

    /// Observes the next chunk of the body.
    pub fn feed(&mut self, chunk: &[u8]) {
        match &mut self.mode {
            Mode::Events(decoder) => decoder.feed(chunk, &mut self.reader),
            Mode::Json {
                body,
                first,
                overflowed,
            } => {
                if *overflowed {
                    return;
                }
                if let Some(first) = first.take() {
                    body.extend_from_slice(&first);
                }
                if body.len() + chunk.len() > MAX_BUFFERED_BODY {
                    *overflowed = true;
                    *body = Vec::new();
                    return;
                }
                body.extend_from_slice(chunk);
            }
        }
    }

    /// The usage the response reported (`None` figures: not reported, or not readable).
    pub fn finish(mut self) -> Usage {
        if let Mode::Json {
            body,
            first,
            overflowed: false,
        } = &self.mode
        {
            self.reader.read_json_body(first.as_deref().unwrap_or(body));
        }
        self.reader.usage
    }
}

/// Reads usage out of events and bodies of one dialect.
struct UsageReader {
    dialect: &'static dyn Dialect,
    usage: Usage,
}

impl std::fmt::Debug for UsageReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageReader")
            .field("dialect", &self.dialect.name())
            .field("usage", &self.usage)
            .finish()
    }
}

impl SseSink for UsageReader {
    fn wants(&self, event: &[u8]) -> bool {
        self.dialect.usage_event_wanted(event)
    }

    fn event(&mut self, event: &[u8], data: &[u8]) {
        if memchr::memmem::find(data, b"sage").is_none() {
            return; // neither `usage` nor `usageMetadata`: nothing to read (also `[DONE]`)
        }
        self.usage
            .update(self.dialect.usage_from_event(event, data));
    }
}

impl UsageReader {
    /// Reads usage from a complete JSON body.
    fn read_json_body(&mut self, body: &[u8]) {
        self.usage.update(self.dialect.usage_from_body(body));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::protocol::dialect::{Inbound, Interpreted, Shape};
    use crate::protocol::errors::ProtocolError;
    use crate::protocol::refusal::Refusal;
    use http::{Response, StatusCode};
    use http_body_util::Full;

    /// Feeds `body` to a scanner of `dialect` split at every byte boundary (and byte by byte)
    /// and checks every outcome.
    pub(crate) fn assert_usage_at_every_split(
        dialect: &'static dyn Dialect,
        event_stream: bool,
        body: &str,
        want: Usage,
    ) {
        let bytes = body.as_bytes();
        for split in 0..=bytes.len() {
            let mut scanner = UsageScanner::new(dialect, event_stream);
            scanner.feed(&bytes[..split]);
            scanner.feed(&bytes[split..]);
            assert_eq!(tokens(&scanner.finish()), tokens(&want), "split at {split}");
        }
        let mut scanner = UsageScanner::new(dialect, event_stream);
        for b in bytes {
            scanner.feed(std::slice::from_ref(b));
        }
        assert_eq!(tokens(&scanner.finish()), tokens(&want), "byte by byte");
    }

    fn tokens(usage: &Usage) -> (Option<u64>, Option<u64>) {
        (usage.input_tokens, usage.output_tokens)
    }

    /// The model and finish reasons a scanner of `dialect` reads from the whole `body`.
    pub(crate) fn response_of(
        dialect: &'static dyn Dialect,
        event_stream: bool,
        body: &str,
    ) -> (Option<String>, Vec<String>) {
        let mut scanner = UsageScanner::new(dialect, event_stream);
        scanner.feed(body.as_bytes());
        let usage = scanner.finish();
        (
            usage.model.map(String::from),
            usage.finish_reasons.iter().map(|r| r.to_string()).collect(),
        )
    }

    /// Both figures reported.
    pub(crate) fn usage(input: u64, output: u64) -> Usage {
        Usage {
            input_tokens: Some(input),
            output_tokens: Some(output),
            ..Usage::default()
        }
    }

    /// A dialect that reads `{"usage": {"in": n, "out": n}}` from bodies and unnamed events.
    struct Plain;

    #[derive(serde::Deserialize)]
    struct PlainBody {
        usage: Option<PlainUsage>,
    }

    #[derive(serde::Deserialize)]
    struct PlainUsage {
        #[serde(rename = "in")]
        input: Option<u64>,
        out: Option<u64>,
    }

    impl Dialect for Plain {
        fn name(&self) -> &'static str {
            "plain"
        }
        fn interpret(&self, _: &Inbound<'_>) -> Result<Interpreted, ProtocolError> {
            Err(ProtocolError::NotAnObject { found: "a test" })
        }
        fn refusal(&self, _: &Shape, _: &Refusal<'_>) -> Option<Response<Full<Bytes>>> {
            None
        }
        fn error(&self, status: StatusCode, _: &str, _: &str) -> Response<Full<Bytes>> {
            let mut response = Response::new(Full::default());
            *response.status_mut() = status;
            response
        }
        fn usage_event_wanted(&self, event: &[u8]) -> bool {
            event != b"skip"
        }
        fn usage_from_event(&self, _: &[u8], data: &[u8]) -> Usage {
            self.usage_from_body(data)
        }
        fn usage_from_body(&self, body: &[u8]) -> Usage {
            serde_json::from_slice::<PlainBody>(body)
                .ok()
                .and_then(|b| b.usage)
                .map(|u| Usage {
                    input_tokens: u.input,
                    output_tokens: u.out,
                    ..Usage::default()
                })
                .unwrap_or_default()
        }
    }

    #[test]
    fn reads_events_at_every_split_and_skips_unwanted_ones() {
        let stream = concat!(
            "data: {\"usage\":{\"in\":3}}\n\n",
            "event: skip\ndata: {\"usage\":{\"in\":100,\"out\":100}}\n\n",
            ": comment\n\n",
            "data: {\"text\":\"no figures\"}\n\n",
            "data: {\"usage\":{\"out\":4}}\r\n\r\n",
            "data: [DONE]\n\n",
        );
        assert_usage_at_every_split(&Plain, true, stream, usage(3, 4));
    }

    #[test]
    fn a_body_in_one_shared_chunk_is_read_without_a_copy_and_in_several_with_one() {
        let body = r#"{"id":"x","usage":{"in":3,"out":4}}"#;
        let whole = Bytes::from(body);
        let mut scanner = UsageScanner::new(&Plain, false);
        scanner.feed_shared(&whole);
        if let Mode::Json { body, first, .. } = &scanner.mode {
            assert_eq!(body.capacity(), 0, "nothing copied");
            assert_eq!(first.as_ref().map(|b| b.as_ptr()), Some(whole.as_ptr()));
        }
        assert_eq!(scanner.finish(), usage(3, 4));
        for split in [1, 10, body.len() - 1] {
            let mut scanner = UsageScanner::new(&Plain, false);
            scanner.feed_shared(&whole.slice(..split));
            scanner.feed_shared(&whole.slice(split..));
            assert_eq!(scanner.finish(), usage(3, 4), "split at {split}");
        }
    }

    #[test]
    fn gives_up_on_bodies_past_the_cap_instead_of_holding_them() {
        let mut scanner = UsageScanner::new(&Plain, false);
        scanner.feed(b"{\"usage\":{\"in\":1,\"out\":1},\"pad\":\"");
        let pad = vec![b'a'; 1024 * 1024];
        for _ in 0..5 {
            scanner.feed(&pad);
        }
        if let Mode::Json {
            body, overflowed, ..
        } = &scanner.mode
        {
            assert!(*overflowed);
            assert_eq!(body.capacity(), 0);
        }
        scanner.feed(b"\"}");
        assert_eq!(scanner.finish(), Usage::default());
    }

    #[test]
    fn endless_stream_keeps_memory_bounded_and_still_reads_usage() {
        let mut scanner = UsageScanner::new(&Plain, true);
        let chunk = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hello world\"}}],\"usage\":null}\n\n";
        for _ in 0..100_000 {
            scanner.feed(chunk.as_bytes());
        }
        if let Mode::Events(decoder) = &scanner.mode {
            assert_eq!(decoder.oversized_events(), 0);
            assert!(decoder.held_bytes() < 4096, "{}", decoder.held_bytes());
        }
        scanner.feed(b"data: {\"usage\":{\"in\":5,\"out\":100000}}\n\ndata: [DONE]\n\n");
        assert_eq!(scanner.finish(), usage(5, 100_000));
    }
}
