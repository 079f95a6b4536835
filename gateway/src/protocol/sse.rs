//! Server-sent events: an incremental decoder with bounded memory, and a writer.
//!
//! Follows the WHATWG event-stream rules that matter for LLM streams: lines end with `\r\n`,
//! `\n` or `\r` (also when split across chunks), `data:` lines of one event join with `\n`,
//! one space after the colon is dropped, `:` lines are comments, a blank line dispatches.
//! Only the current event is held, up to a cap; a larger event is dropped, not buffered.

/// Receives decoded events.
pub trait SseSink {
    /// Whether the data of an event with this (non-empty) `event:` name is wanted; data of
    /// unwanted events is not buffered.
    fn wants(&self, _event: &[u8]) -> bool {
        true
    }

    /// One complete event: its `event:` name (empty when absent) and its joined `data:`.
    fn event(&mut self, event: &[u8], data: &[u8]);
}

/// Longest `event:` name kept; longer names are truncated (no provider uses one).
const MAX_EVENT_NAME: usize = 128;
/// Longest field name recognised (`event`, `data`, `id`, `retry`).
const MAX_FIELD_NAME: usize = 8;
/// A buffer this large is released after its event rather than kept for reuse.
const KEEP_CAPACITY: usize = 64 * 1024;

/// Where the bytes of the current line go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineState {
    /// Reading the field name, before any `:`.
    Field,
    /// Reading a `data:` value.
    Data,
    /// Reading an `event:` value.
    Event,
    /// Reading a value Warden ignores (`id:`, `retry:`, comments, unknown fields).
    Ignore,
}

/// Decodes a byte stream of server-sent events, chunk by chunk.
#[derive(Debug)]
pub struct SseDecoder {
    max_event_bytes: usize,
    state: LineState,
    /// At the start of a value: one leading space is still to be dropped.
    at_value_start: bool,
    /// The previous chunk ended in `\r`: a leading `\n` completes that line ending.
    pending_cr: bool,
    field: Vec<u8>,
    field_too_long: bool,
    event: Vec<u8>,
    data: Vec<u8>,
    has_data: bool,
    /// The current event's data is not kept (unwanted event, or over the cap).
    discard: bool,
    /// Events dropped because they were larger than the cap.
    oversized: u64,
}

impl SseDecoder {
    /// A decoder that keeps at most `max_event_bytes` of one event's data.
    pub fn new(max_event_bytes: usize) -> Self {
        SseDecoder {
            max_event_bytes,
            state: LineState::Field,
            at_value_start: false,
            pending_cr: false,
            field: Vec::with_capacity(MAX_FIELD_NAME),
            field_too_long: false,
            event: Vec::new(),
            data: Vec::new(),
            has_data: false,
            discard: false,
            oversized: 0,
        }
    }

    /// Events dropped so far because their data exceeded the cap.
    pub fn oversized_events(&self) -> u64 {
        self.oversized
    }

    /// Bytes of buffer this decoder holds now.
    pub fn held_bytes(&self) -> usize {
        self.field.capacity() + self.event.capacity() + self.data.capacity()
    }

    /// Decodes one chunk, calling `sink` for every event it completes.
    pub fn feed(&mut self, mut chunk: &[u8], sink: &mut impl SseSink) {
        if self.pending_cr {
            self.pending_cr = false;
            if let Some(rest) = chunk.strip_prefix(b"\n") {
                chunk = rest;
            }
        }
        while !chunk.is_empty() {
            let end = memchr::memchr2(b'\n', b'\r', chunk);
            let (content, rest) = match end {
                Some(i) => (&chunk[..i], Some(&chunk[i..])),
                None => (chunk, None),
            };
            self.take(content, sink);
            let Some(rest) = rest else { break };
            // `rest` starts with the line ending.
            let consumed = match rest {
                [b'\r', b'\n', ..] => 2,
                [b'\r'] => {
                    self.pending_cr = true;
                    1
                }
                _ => 1,
            };
            self.end_line(sink);
            chunk = &rest[consumed..];
        }
    }

    /// Appends line content (no line ending) to the current field or value.
    fn take(&mut self, mut bytes: &[u8], sink: &impl SseSink) {
        if self.state == LineState::Field {
            let Some(colon) = memchr::memchr(b':', bytes) else {
                self.push_field(bytes);
                return;
            };
            self.push_field(&bytes[..colon]);
            self.state = match (self.field_too_long, self.field.as_slice()) {
                (false, b"data") => LineState::Data,
                (false, b"event") => LineState::Event,
                _ => LineState::Ignore,
            };
            match self.state {
                LineState::Data => self.start_data_line(sink),
                LineState::Event => self.event.clear(),
                LineState::Field | LineState::Ignore => {}
            }
            self.at_value_start = true;
            bytes = &bytes[colon + 1..];
        }
        if bytes.is_empty() {
            return;
        }
        if self.at_value_start {
            self.at_value_start = false;
            if let Some(rest) = bytes.strip_prefix(b" ") {
                bytes = rest;
            }
        }
        match self.state {
            LineState::Data => self.push_data(bytes),
            LineState::Event => {
                let room = MAX_EVENT_NAME.saturating_sub(self.event.len());
                self.event
                    .extend_from_slice(&bytes[..bytes.len().min(room)]);
            }
            LineState::Field | LineState::Ignore => {}
        }
    }

    fn push_field(&mut self, bytes: &[u8]) {
        if self.field.len() + bytes.len() > MAX_FIELD_NAME {
            self.field_too_long = true;
        } else {
            self.field.extend_from_slice(bytes);
        }
    }

    /// A `data:` line begins: join it to earlier ones with `\n`; the data of a named,
    /// unwanted event is discarded from the start.
    fn start_data_line(&mut self, sink: &impl SseSink) {
        if !self.event.is_empty() && !self.discard && !sink.wants(&self.event) {
            self.discard = true;
            self.data.clear();
        }
        if !self.has_data {
            self.has_data = true;
            return;
        }
        self.push_data(b"\n");
    }

    fn push_data(&mut self, bytes: &[u8]) {
        if self.discard {
            return;
        }
        if self.data.len() + bytes.len() > self.max_event_bytes {
            self.discard = true;
            self.oversized += 1;
            self.data.clear();
            return;
        }
        self.data.extend_from_slice(bytes);
    }

    /// A line ended: a field without `:` is a whole-line field name; a blank line dispatches.
    fn end_line(&mut self, sink: &mut impl SseSink) {
        if self.state == LineState::Field {
            if self.field.is_empty() && !self.field_too_long {
                self.dispatch(sink);
            } else if !self.field_too_long && self.field == b"data" {
                self.start_data_line(sink);
            } else if !self.field_too_long && self.field == b"event" {
                self.event.clear();
            }
        }
        self.field.clear();
        self.field_too_long = false;
        self.state = LineState::Field;
        self.at_value_start = false;
    }

    fn dispatch(&mut self, sink: &mut impl SseSink) {
        let wanted = self.event.is_empty() || sink.wants(&self.event);
        if self.has_data && !self.discard && wanted {
            sink.event(&self.event, &self.data);
        }
        self.event.clear();
        self.data.clear();
        if self.data.capacity() > KEEP_CAPACITY {
            self.data = Vec::new();
        }
        self.has_data = false;
        self.discard = false;
    }
}

/// Writes server-sent events into one buffer (refusal answers).
#[derive(Default)]
pub struct SseWriter {
    out: String,
}

impl SseWriter {
    /// An event with only a `data:` line.
    pub fn data(&mut self, data: &serde_json::Value) {
        self.out.push_str("data: ");
        self.out.push_str(&data.to_string());
        self.out.push_str("\n\n");
    }

    /// An event with an `event:` line and a `data:` line.
    pub fn event(&mut self, name: &str, data: &serde_json::Value) {
        self.out.push_str("event: ");
        self.out.push_str(name);
        self.out.push('\n');
        self.data(data);
    }

    /// OpenAI's end-of-stream marker.
    pub fn done(&mut self) {
        self.out.push_str("data: [DONE]\n\n");
    }

    /// The stream text.
    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Collect {
        events: Vec<(String, String)>,
        reject: Option<&'static str>,
    }

    impl SseSink for Collect {
        fn wants(&self, event: &[u8]) -> bool {
            self.reject.is_none_or(|r| r.as_bytes() != event)
        }
        fn event(&mut self, event: &[u8], data: &[u8]) {
            self.events.push((
                String::from_utf8_lossy(event).into_owned(),
                String::from_utf8_lossy(data).into_owned(),
            ));
        }
    }

    fn decode_split_everywhere(stream: &[u8], max: usize) -> Vec<Vec<(String, String)>> {
        let mut outcomes = Vec::new();
        for split in 0..=stream.len() {
            let mut decoder = SseDecoder::new(max);
            let mut sink = Collect::default();
            decoder.feed(&stream[..split], &mut sink);
            decoder.feed(&stream[split..], &mut sink);
            outcomes.push(sink.events);
        }
        // Byte by byte, too.
        let mut decoder = SseDecoder::new(max);
        let mut sink = Collect::default();
        for b in stream {
            decoder.feed(std::slice::from_ref(b), &mut sink);
        }
        outcomes.push(sink.events);
        outcomes
    }

    fn pair(event: &str, data: &str) -> (String, String) {
        (event.to_owned(), data.to_owned())
    }

    #[test]
    fn decodes_named_and_unnamed_events_with_any_line_ending_at_any_split() {
        let expected = vec![
            pair("message_start", "{\"a\":1}"),
            pair("", "{\"b\":2}"),
            pair("", "line1\nline2"),
            pair("ping", "x"),
        ];
        for ending in ["\n", "\r\n", "\r"] {
            let stream = format!(
                "event: message_start{e}data: {{\"a\":1}}{e}{e}: comment{e}data:{{\"b\":2}}{e}{e}\
                 data: line1{e}data: line2{e}id: 7{e}retry: 10{e}{e}event:ping{e}data: x{e}{e}",
                e = ending
            );
            for (i, got) in decode_split_everywhere(stream.as_bytes(), 1024)
                .into_iter()
                .enumerate()
            {
                assert_eq!(got, expected, "ending {ending:?}, split {i}");
            }
        }
    }

    #[test]
    fn event_without_blank_line_is_not_dispatched_yet() {
        let mut decoder = SseDecoder::new(1024);
        let mut sink = Collect::default();
        decoder.feed(b"data: partial", &mut sink);
        assert!(sink.events.is_empty());
        decoder.feed(b"\n\n", &mut sink);
        assert_eq!(sink.events, vec![pair("", "partial")]);
    }

    #[test]
    fn oversized_event_is_dropped_and_decoding_continues() {
        let big = "x".repeat(100);
        let stream = format!("data: {big}\n\ndata: small\n\n");
        for got in decode_split_everywhere(stream.as_bytes(), 50) {
            assert_eq!(got, vec![pair("", "small")]);
        }
        let mut decoder = SseDecoder::new(50);
        decoder.feed(stream.as_bytes(), &mut Collect::default());
        assert_eq!(decoder.oversized_events(), 1);
    }

    #[test]
    fn unwanted_named_events_are_not_buffered() {
        let mut decoder = SseDecoder::new(1 << 20);
        let mut sink = Collect {
            reject: Some("content_block_delta"),
            ..Collect::default()
        };
        let delta = "y".repeat(10_000);
        decoder.feed(
            format!("event: content_block_delta\ndata: {delta}\ndata: more\n").as_bytes(),
            &mut sink,
        );
        assert!(decoder.data.is_empty(), "unwanted data must not be held");
        decoder.feed(b"\nevent: message_delta\ndata: {}\n\n", &mut sink);
        assert_eq!(sink.events, vec![pair("message_delta", "{}")]);
    }

    #[test]
    fn memory_stays_bounded_on_an_endless_stream() {
        let mut decoder = SseDecoder::new(4096);
        let mut sink = Collect {
            reject: Some("never"),
            ..Collect::default()
        };
        let event = format!("data: {}\n\n", "z".repeat(1000));
        for _ in 0..10_000 {
            decoder.feed(event.as_bytes(), &mut sink);
            sink.events.clear();
        }
        assert!(decoder.data.capacity() <= 4096);
        // An endless single event never grows past the cap either.
        decoder.feed(b"data: ", &mut sink);
        for _ in 0..10_000 {
            decoder.feed(&[b'q'; 100], &mut sink);
        }
        assert!(
            decoder.data.capacity() <= 8192,
            "{}",
            decoder.data.capacity()
        );
    }

    #[test]
    fn only_events_with_data_lines_are_dispatched() {
        let mut decoder = SseDecoder::new(64);
        let mut sink = Collect::default();
        decoder.feed(b"event: x\n\n\n\ndata\n\n", &mut sink);
        // `data` without colon is an empty data line: dispatched with empty data.
        assert_eq!(sink.events, vec![pair("", "")]);
    }
}
