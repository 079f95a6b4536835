//! Observe: the token usage a provider reports, read from the response as it streams by.
//!
//! Figures are normalised across providers: input counts every prompt token the provider
//! processed (Anthropic `input_tokens` plus cache creation and cache reads, as OpenAI's
//! `prompt_tokens` already includes cached tokens; Gemini `promptTokenCount` plus
//! `toolUsePromptTokenCount`); output counts every generated token (Gemini
//! `candidatesTokenCount` plus `thoughtsTokenCount`, as OpenAI and Anthropic output counts
//! already include reasoning). When a stream reports usage several times, the last report of
//! each figure wins.

use bytes::Bytes;
use serde::Deserialize;

use super::sse::{SseDecoder, SseSink};
use super::{Dialect, Protocol};

/// Most bytes of a JSON body (or of one stream event) kept to read usage from; past it, usage
/// is given up rather than memory held.
pub const MAX_BUFFERED_BODY: usize = 4 * 1024 * 1024;

/// Tokens a response reports having used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Prompt tokens processed (including cached ones).
    pub input_tokens: Option<u64>,
    /// Tokens generated (including reasoning).
    pub output_tokens: Option<u64>,
}

impl Usage {
    /// Takes every figure `newer` reports, keeping the ones it does not.
    fn update(&mut self, newer: Usage) {
        if newer.input_tokens.is_some() {
            self.input_tokens = newer.input_tokens;
        }
        if newer.output_tokens.is_some() {
            self.output_tokens = newer.output_tokens;
        }
    }
}

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

/// Whether a `protocol` stream's event named `event` can carry usage.
pub(super) fn wanted(protocol: Protocol, event: &[u8]) -> bool {
    match protocol {
        Protocol::Anthropic => matches!(event, b"message_start" | b"message_delta"),
        // Responses names its events; only the terminal ones carry usage. Chat
        // Completions events are unnamed.
        Protocol::Openai => {
            !event.starts_with(b"response.")
                || matches!(
                    event,
                    b"response.completed" | b"response.incomplete" | b"response.failed"
                )
        }
        Protocol::Gemini => true,
    }
}

/// The usage one `protocol` stream event reports.
pub(super) fn from_event(protocol: Protocol, _event: &[u8], data: &[u8]) -> Usage {
    let found = match protocol {
        Protocol::Openai => serde_json::from_slice::<OpenaiBody>(data)
            .ok()
            .map(OpenaiBody::usage),
        Protocol::Anthropic => serde_json::from_slice::<AnthropicEvent>(data)
            .ok()
            .map(AnthropicEvent::usage),
        Protocol::Gemini => serde_json::from_slice::<GeminiBody>(data)
            .ok()
            .and_then(|b| b.usage_metadata)
            .map(GeminiUsage::usage),
    };
    found.unwrap_or_default()
}

/// The usage a complete `protocol` body reports (a Gemini JSON-array stream: the last report
/// of each figure wins).
pub(super) fn from_body(protocol: Protocol, body: &[u8]) -> Usage {
    match protocol {
        Protocol::Openai => serde_json::from_slice::<OpenaiBody>(body)
            .ok()
            .map(OpenaiBody::usage)
            .unwrap_or_default(),
        Protocol::Anthropic => serde_json::from_slice::<AnthropicEvent>(body)
            .ok()
            .map(AnthropicEvent::usage)
            .unwrap_or_default(),
        Protocol::Gemini => match serde_json::from_slice::<GeminiBodies>(body) {
            Ok(GeminiBodies::One(b)) => {
                b.usage_metadata.map(GeminiUsage::usage).unwrap_or_default()
            }
            Ok(GeminiBodies::Many(all)) => {
                let mut usage = Usage::default();
                for b in all {
                    if let Some(u) = b.usage_metadata {
                        usage.update(u.usage());
                    }
                }
                usage
            }
            Err(_) => Usage::default(),
        },
    }
}

/// OpenAI usage: Chat Completions / Completions / Embeddings (`prompt_tokens`,
/// `completion_tokens`) and Responses (`input_tokens`, `output_tokens`).
#[derive(Debug, Deserialize)]
struct OpenaiUsage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
}

impl OpenaiUsage {
    fn usage(self) -> Usage {
        Usage {
            input_tokens: self.prompt_tokens.or(self.input_tokens),
            output_tokens: self.completion_tokens.or(self.output_tokens),
        }
    }
}

/// An OpenAI body or event: usage at the top (chat chunk, JSON body) or in `response`
/// (Responses `response.completed`).
#[derive(Debug, Deserialize)]
struct OpenaiBody {
    usage: Option<OpenaiUsage>,
    response: Option<OpenaiResponse>,
}

#[derive(Debug, Deserialize)]
struct OpenaiResponse {
    usage: Option<OpenaiUsage>,
}

impl OpenaiBody {
    fn usage(self) -> Usage {
        self.usage
            .or(self.response.and_then(|r| r.usage))
            .map(OpenaiUsage::usage)
            .unwrap_or_default()
    }
}

/// Anthropic usage (`message_start.message.usage`, `message_delta.usage`, a Messages body).
#[derive(Debug, Deserialize)]
struct AnthropicUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
}

impl AnthropicUsage {
    fn usage(self) -> Usage {
        let parts = [
            self.input_tokens,
            self.cache_creation_input_tokens,
            self.cache_read_input_tokens,
        ];
        let input = parts
            .iter()
            .any(Option::is_some)
            .then(|| parts.iter().flatten().sum());
        Usage {
            input_tokens: input,
            output_tokens: self.output_tokens,
        }
    }
}

/// An Anthropic event or body: usage at the top, or in `message` (`message_start`).
#[derive(Debug, Deserialize)]
struct AnthropicEvent {
    usage: Option<AnthropicUsage>,
    message: Option<AnthropicMessage>,
}

#[derive(Debug, Deserialize)]
struct AnthropicMessage {
    usage: Option<AnthropicUsage>,
}

impl AnthropicEvent {
    fn usage(self) -> Usage {
        self.usage
            .or(self.message.and_then(|m| m.usage))
            .map(AnthropicUsage::usage)
            .unwrap_or_default()
    }
}

/// Gemini `usageMetadata`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GeminiUsage {
    prompt_token_count: Option<u64>,
    tool_use_prompt_token_count: Option<u64>,
    candidates_token_count: Option<u64>,
    thoughts_token_count: Option<u64>,
}

impl GeminiUsage {
    fn usage(self) -> Usage {
        let sum = |a: Option<u64>, b: Option<u64>| a.map(|a| a + b.unwrap_or(0));
        Usage {
            input_tokens: sum(self.prompt_token_count, self.tool_use_prompt_token_count),
            output_tokens: sum(self.candidates_token_count, self.thoughts_token_count)
                .or(self.thoughts_token_count),
        }
    }
}

/// A Gemini response (or stream element).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GeminiBody {
    usage_metadata: Option<GeminiUsage>,
}

/// A Gemini JSON body: one response, or the array a non-SSE stream sends.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum GeminiBodies {
    One(GeminiBody),
    Many(Vec<GeminiBody>),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `body` split at every byte boundary (and byte by byte) and checks every outcome.
    fn assert_usage_at_every_split(
        protocol: Protocol,
        event_stream: bool,
        body: &str,
        want: Usage,
    ) {
        let bytes = body.as_bytes();
        for split in 0..=bytes.len() {
            let mut scanner = UsageScanner::new(protocol.dialect(), event_stream);
            scanner.feed(&bytes[..split]);
            scanner.feed(&bytes[split..]);
            assert_eq!(scanner.finish(), want, "split at {split}");
        }
        let mut scanner = UsageScanner::new(protocol.dialect(), event_stream);
        for b in bytes {
            scanner.feed(std::slice::from_ref(b));
        }
        assert_eq!(scanner.finish(), want, "byte by byte");
    }

    fn usage(input: u64, output: u64) -> Usage {
        Usage {
            input_tokens: Some(input),
            output_tokens: Some(output),
        }
    }

    const OPENAI_CHAT_STREAM: &str = concat!(
        "data: {\"id\":\"chatcmpl-C1\",\"object\":\"chat.completion.chunk\",\"created\":1762000000,\"model\":\"gpt-4.1-2025-04-14\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_1\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null,\"obfuscation\":\"x\"}\n\n",
        "data: {\"id\":\"chatcmpl-C1\",\"object\":\"chat.completion.chunk\",\"created\":1762000000,\"model\":\"gpt-4.1-2025-04-14\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_a\",\"type\":\"function\",\"function\":{\"name\":\"exec\",\"arguments\":\"\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-C1\",\"object\":\"chat.completion.chunk\",\"created\":1762000000,\"model\":\"gpt-4.1-2025-04-14\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"command\\\":\\\"ls\\\"}\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-C1\",\"object\":\"chat.completion.chunk\",\"created\":1762000000,\"model\":\"gpt-4.1-2025-04-14\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"tool_calls\"}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-C1\",\"object\":\"chat.completion.chunk\",\"created\":1762000000,\"model\":\"gpt-4.1-2025-04-14\",\"choices\":[],\"usage\":{\"prompt_tokens\":9120,\"completion_tokens\":18,\"total_tokens\":9138,\"prompt_tokens_details\":{\"cached_tokens\":8960,\"audio_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0}}}\n\n",
        "data: [DONE]\n\n",
    );

    #[test]
    fn reads_openai_chat_final_usage_chunk_at_every_split() {
        assert_usage_at_every_split(Protocol::Openai, true, OPENAI_CHAT_STREAM, usage(9120, 18));
        let crlf = OPENAI_CHAT_STREAM.replace("\n\n", "\r\n\r\n");
        assert_usage_at_every_split(Protocol::Openai, true, &crlf, usage(9120, 18));
    }

    #[test]
    fn openai_stream_without_usage_reports_none() {
        let without: String = OPENAI_CHAT_STREAM
            .split_inclusive("\n\n")
            .filter(|e| !e.contains("prompt_tokens"))
            .collect();
        assert_usage_at_every_split(Protocol::Openai, true, &without, Usage::default());
    }

    const RESPONSES_STREAM: &str = concat!(
        "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"in_progress\",\"output\":[],\"usage\":null}}\n\n",
        "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":4,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"Hi usage\"}\n\n",
        "event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":9,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"completed\",\"output\":[{\"type\":\"message\",\"content\":[{\"type\":\"output_text\",\"text\":\"Hi usage\"}]}],\"usage\":{\"input_tokens\":328,\"input_tokens_details\":{\"cached_tokens\":0},\"output_tokens\":52,\"output_tokens_details\":{\"reasoning_tokens\":32},\"total_tokens\":380}}}\n\n",
    );

    #[test]
    fn reads_openai_responses_completed_usage_at_every_split() {
        assert_usage_at_every_split(Protocol::Openai, true, RESPONSES_STREAM, usage(328, 52));
    }

    const ANTHROPIC_STREAM: &str = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5-20250929\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":12,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":7000,\"output_tokens\":1,\"service_tier\":\"standard\"}}}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: ping\ndata: {\"type\": \"ping\"}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"usage is fine\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":73}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );

    #[test]
    fn reads_anthropic_start_and_delta_usage_at_every_split() {
        assert_usage_at_every_split(Protocol::Anthropic, true, ANTHROPIC_STREAM, usage(7012, 73));
    }

    #[test]
    fn anthropic_events_without_event_lines_are_read_by_type() {
        let unnamed: String = ANTHROPIC_STREAM
            .lines()
            .filter(|l| !l.starts_with("event:"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_usage_at_every_split(Protocol::Anthropic, true, &unnamed, usage(7012, 73));
    }

    const GEMINI_SSE: &str = concat!(
        "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"The\"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 9,\"candidatesTokenCount\": 1,\"totalTokenCount\": 10},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"r1\"}\r\n\r\n",
        "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \" end\"}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 9,\"candidatesTokenCount\": 20,\"totalTokenCount\": 129,\"thoughtsTokenCount\": 100},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"r1\"}\r\n\r\n",
    );

    #[test]
    fn reads_gemini_sse_last_usage_metadata_at_every_split() {
        assert_usage_at_every_split(Protocol::Gemini, true, GEMINI_SSE, usage(9, 120));
    }

    #[test]
    fn reads_gemini_json_array_stream_last_element() {
        let array = format!(
            "[{},\r\n{}]",
            GEMINI_SSE
                .split("\r\n\r\n")
                .next()
                .unwrap_or("")
                .trim_start_matches("data: "),
            GEMINI_SSE
                .split("\r\n\r\n")
                .nth(1)
                .unwrap_or("")
                .trim_start_matches("data: ")
        );
        assert_usage_at_every_split(Protocol::Gemini, false, &array, usage(9, 120));
    }

    #[test]
    fn reads_non_streaming_bodies_of_each_protocol() {
        let chat = r#"{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"usage"},"finish_reason":"stop"}],"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29}}"#;
        assert_usage_at_every_split(Protocol::Openai, false, chat, usage(19, 10));
        let responses = r#"{"id":"resp_1","object":"response","status":"completed","usage":{"input_tokens":36,"output_tokens":87,"total_tokens":123}}"#;
        assert_usage_at_every_split(Protocol::Openai, false, responses, usage(36, 87));
        let embeddings = r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,-0.2]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}"#;
        assert_usage_at_every_split(
            Protocol::Openai,
            false,
            embeddings,
            Usage {
                input_tokens: Some(8),
                output_tokens: None,
            },
        );
        let message = r#"{"id":"msg_1","type":"message","role":"assistant","content":[{"type":"text","text":"Hi"}],"stop_reason":"end_turn","usage":{"input_tokens":2095,"cache_creation_input_tokens":5,"cache_read_input_tokens":0,"output_tokens":503}}"#;
        assert_usage_at_every_split(Protocol::Anthropic, false, message, usage(2100, 503));
        let gemini = r#"{"candidates":[{"content":{"parts":[{"text":"Hi"}],"role":"model"},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":2,"totalTokenCount":6}}"#;
        assert_usage_at_every_split(Protocol::Gemini, false, gemini, usage(4, 2));
    }

    #[test]
    fn error_bodies_and_garbage_report_no_usage() {
        for (protocol, body) in [
            (
                Protocol::Openai,
                r#"{"error":{"message":"bad","type":"invalid_request_error"}}"#,
            ),
            (
                Protocol::Anthropic,
                r#"{"type":"error","error":{"type":"overloaded_error","message":"x"}}"#,
            ),
            (Protocol::Gemini, "\u{1f}\u{8b} not json usage"),
        ] {
            let mut scanner = UsageScanner::new(protocol.dialect(), false);
            scanner.feed(body.as_bytes());
            assert_eq!(scanner.finish(), Usage::default());
        }
    }

    #[test]
    fn a_body_in_one_shared_chunk_is_read_without_a_copy_and_in_several_with_one() {
        let body = r#"{"id":"x","usage":{"prompt_tokens":3,"completion_tokens":4}}"#;
        let whole = Bytes::from(body);
        let mut scanner = UsageScanner::new(Protocol::Openai.dialect(), false);
        scanner.feed_shared(&whole);
        if let Mode::Json { body, first, .. } = &scanner.mode {
            assert_eq!(body.capacity(), 0, "nothing copied");
            assert_eq!(first.as_ref().map(|b| b.as_ptr()), Some(whole.as_ptr()));
        }
        assert_eq!(scanner.finish(), usage(3, 4));
        for split in [1, 10, body.len() - 1] {
            let mut scanner = UsageScanner::new(Protocol::Openai.dialect(), false);
            scanner.feed_shared(&whole.slice(..split));
            scanner.feed_shared(&whole.slice(split..));
            assert_eq!(scanner.finish(), usage(3, 4), "split at {split}");
        }
    }

    #[test]
    fn gives_up_on_bodies_past_the_cap_instead_of_holding_them() {
        let mut scanner = UsageScanner::new(Protocol::Openai.dialect(), false);
        scanner.feed(b"{\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1},\"pad\":\"");
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
        let mut scanner = UsageScanner::new(Protocol::Openai.dialect(), true);
        let chunk = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hello world\"}}],\"usage\":null}\n\n";
        for _ in 0..100_000 {
            scanner.feed(chunk.as_bytes());
        }
        if let Mode::Events(decoder) = &scanner.mode {
            assert_eq!(decoder.oversized_events(), 0);
            assert!(decoder.held_bytes() < 4096, "{}", decoder.held_bytes());
        }
        scanner.feed(b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":100000}}\n\ndata: [DONE]\n\n");
        assert_eq!(scanner.finish(), usage(5, 100_000));
    }
}
