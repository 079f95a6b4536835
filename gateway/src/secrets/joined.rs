//! Redaction of an injected secret a model spreads over the deltas of a streamed answer: an
//! upstream that streams `"sk-"` in one event and `"live-…"` in the next has sent no byte
//! sequence that holds the secret, yet the agent's SDK joins the two strings and hands it over
//! whole. So each content channel of a stream (a choice's `content`, `refusal` or reasoning,
//! each of its tool calls' `arguments`, its legacy `function_call`'s `arguments`; an Anthropic
//! content block's text, JSON or thinking; a Responses output's text, refusal, arguments or
//! reasoning; a Gemini candidate's text) is read as the SDK joins it: its text decoded from
//! JSON, the part of it held back from the previous delta put in front. Which shape a stream's
//! events have is known from the request (its endpoint), not guessed per event: the keys of
//! other shapes are ignored.
//!
//! A secret found in the joined text is replaced in the delta that completes it: what came of
//! it in earlier deltas was held back, never sent, so the joined text reads `[REDACTED]` once
//! where the secret was. At the end of each delta only the longest suffix that could still
//! begin one of the secret's forms is held back (at most the longest form less a byte), and
//! it moves to the front of the channel's next delta; a channel that ends (its block stops,
//! its output is done, the stream ends or sends `[DONE]`) with text held gets it in one more
//! delta of its own, shaped as the channel's deltas are. A chat choice's channels end only
//! with the stream: an SDK joins deltas sent after a `finish_reason` too. Nothing else is
//! held: every event goes on at once, its text shortened by what is held, and the token
//! log probabilities of an event whose text changed (which carry the same pieces) emptied.
//!
//! The stream must be read to be redacted: an event whose data is not JSON (but for `[DONE]`),
//! or one larger than [`MAX_EVENT`], ends the stream with the dialect's error, as does a stream
//! holding text back in more than [`MAX_HELD_CHANNELS`] channels at once, or more than
//! [`MAX_HELD_BYTES`] for them all (held text and the fixed fields of the deltas that send
//! it).

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::echo::{Echo, REDACTED};
use crate::protocol::Dialect;
use crate::protocol::Endpoint;
use crate::protocol::proposed::{EventFramer, MAX_WHOLE_BODY, event_data, lines};

/// The error code a stream that cannot be read to be redacted ends with.
pub const UNREADABLE_CODE: &str = "response_unreadable";

/// What that error says.
pub const UNREADABLE: &str = "Warden could not read an event of the upstream's stream (not JSON, or larger than 32 MiB) to redact the credential it injected from it; the stream was ended here";

/// Largest event read whole; a larger one (or a partial event past it) ends the stream.
pub const MAX_EVENT: usize = MAX_WHOLE_BODY;

/// Most channels that hold text back at once (far more than any model streams in parallel).
pub const MAX_HELD_CHANNELS: usize = 256;

/// Most bytes a stream holds for its channels at once: their held text and the deltas that
/// would send it (ids, names), past which the stream ends with the error.
pub const MAX_HELD_BYTES: usize = 1 << 20;

/// The streamed shapes whose deltas are joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// OpenAI Chat Completions and completions, and the servers compatible with them.
    Chat,
    /// Anthropic messages.
    Anthropic,
    /// OpenAI Responses.
    Responses,
    /// Gemini `streamGenerateContent` (`alt=sse`).
    Gemini,
}

impl Kind {
    /// The shape of the stream that answers a call to `endpoint`, if it streams content.
    pub fn of(endpoint: Endpoint) -> Option<Kind> {
        match endpoint {
            Endpoint::ChatCompletions | Endpoint::Completions => Some(Kind::Chat),
            Endpoint::Responses => Some(Kind::Responses),
            Endpoint::Messages => Some(Kind::Anthropic),
            Endpoint::GenerateContent | Endpoint::StreamGenerateContent => Some(Kind::Gemini),
            Endpoint::Embeddings
            | Endpoint::ListModels
            | Endpoint::GetModel
            | Endpoint::CountTokens
            | Endpoint::EmbedContent
            | Endpoint::BatchEmbedContents => None,
        }
    }
}

/// One channel: its shape, and three numbers that place it in its stream (choice, block,
/// output or candidate first; then a tool call, a content part or a summary; then which text).
type Key = (Kind, u64, u64, u64, u64);

/// How a channel's held text is sent once it ends: in a delta of its own, of this shape.
#[derive(Debug, Clone)]
enum Shape {
    /// A choice's `delta.<field>`, `delta.tool_calls[i].function.arguments`,
    /// `delta.function_call.arguments` (field `function_call`), or `text`.
    Chat {
        choice: u64,
        tool: Option<u64>,
        field: &'static str,
    },
    Anthropic {
        index: u64,
        delta_type: String,
        field: &'static str,
    },
    /// A delta event of this `type`, its fixed fields (which item, output, part, summary) as
    /// the event had them.
    Responses,
    /// An `output_text` delta of a content part (whose text began in `content_part.added`).
    ResponsesText {
        item_id: Value,
        output: u64,
        content: u64,
    },
    Gemini {
        candidate: u64,
        thought: bool,
    },
}

/// A delta in one event: its channel, where its text is (a JSON pointer) and its shape; and
/// where the token log probabilities that spell the same text are (an object's pointer, and
/// which of its arrays hold them), emptied when the text changes.
struct Delta {
    key: Key,
    pointer: String,
    shape: Shape,
    tokens: Option<(String, &'static [&'static str])>,
}

/// The arrays of a chat choice's `logprobs` that spell its text (Chat Completions' `content`
/// and `refusal`, a completion's `tokens`, `top_logprobs` and their offsets).
const CHAT_TOKENS: &[&str] = &[
    "content",
    "refusal",
    "tokens",
    "token_logprobs",
    "top_logprobs",
    "text_offset",
];

/// Which channels an event ends: those of one shape, and of one choice (block, output,
/// candidate) or all of them.
type End = (Kind, Option<u64>);

/// A channel holding text back.
struct Held {
    key: Key,
    /// The held text: the start of what may be one of the secret's forms.
    text: Zeroizing<String>,
    /// The event that sends it when the channel ends first: its `event:` lines, its JSON
    /// and where the text goes.
    name: Vec<u8>,
    template: Value,
    pointer: String,
    /// What it takes of [`MAX_HELD_BYTES`].
    size: usize,
}

/// Joins each channel's deltas and redacts the secret from the joined text.
pub struct Joined {
    echo: Arc<Echo>,
    framer: EventFramer,
    held: Vec<Held>,
    /// Secrets replaced in the joined text.
    count: usize,
    /// Of them, those that began in text held back from an earlier delta.
    spread: usize,
    /// The shape of the stream's events.
    kind: Kind,
    /// Whose error ends a stream that cannot be read.
    dialect: &'static dyn Dialect,
    failed: bool,
}

impl Joined {
    /// Joins the deltas of an event stream of `kind` in `dialect` to redact `echo` (the
    /// dialect's error ends the stream when it cannot be read).
    pub fn new(echo: Arc<Echo>, dialect: &'static dyn Dialect, kind: Kind) -> Joined {
        Joined {
            echo,
            framer: EventFramer::default(),
            held: Vec::new(),
            count: 0,
            spread: 0,
            kind,
            dialect,
            failed: false,
        }
    }

    /// How many secrets were replaced in the deltas' text.
    pub fn count(&self) -> usize {
        self.count
    }

    /// How many of them were spread over deltas: began in text held back from an earlier one.
    pub fn spread(&self) -> usize {
        self.spread
    }

    /// Whether the stream could not be read and was ended with the error.
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Bytes held: of an event not yet whole, and of text held back.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.framer.held() + self.held.iter().map(|h| h.text.len()).sum::<usize>()
    }

    /// The next chunk of the stream: what may be sent now.
    pub fn push(&mut self, chunk: &[u8]) -> Bytes {
        if self.failed {
            return Bytes::new();
        }
        let mut events = Vec::new();
        self.framer.push(chunk, |e| events.push(e.to_vec()));
        let mut out = Vec::with_capacity(chunk.len() + 64);
        for event in events {
            self.event(&event, &mut out);
            if self.failed {
                return Bytes::from(out);
            }
        }
        if self.framer.held() > MAX_EVENT {
            self.fail(&mut out);
        }
        Bytes::from(out)
    }

    /// The stream ended: the last event, if it had no blank line after it, and the text every
    /// channel still holds.
    pub fn finish(&mut self) -> Bytes {
        if self.failed {
            return Bytes::new();
        }
        let mut out = Vec::new();
        let rest = self.framer.rest();
        if !rest.is_empty() {
            self.event(&rest, &mut out);
        }
        if !self.failed {
            self.flush(|_| true, &mut out);
        }
        Bytes::from(out)
    }

    /// Ends the stream with the dialect's error: nothing more is read or held.
    fn fail(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.dialect.error_event(
            http::StatusCode::BAD_GATEWAY,
            UNREADABLE_CODE,
            UNREADABLE,
        ));
        self.failed = true;
        self.held.clear();
        self.framer.rest();
    }

    /// One whole event (raw, its blank line included).
    fn event(&mut self, raw: &[u8], out: &mut Vec<u8>) {
        if raw.len() > MAX_EVENT {
            return self.fail(out);
        }
        let Some(data) = event_data(raw) else {
            out.extend_from_slice(raw);
            return;
        };
        let data = data.trim_ascii();
        if data == b"[DONE]" {
            self.flush(|_| true, out);
            out.extend_from_slice(raw);
            return;
        }
        if data.is_empty() {
            out.extend_from_slice(raw);
            return;
        }
        let Ok(mut value) = serde_json::from_slice::<Value>(data) else {
            return self.fail(out);
        };
        let (deltas, ends) = deltas(&value, self.kind);
        if deltas.is_empty() && ends.is_empty() {
            out.extend_from_slice(raw);
            return;
        }
        let ended = |key: &Key| {
            ends.iter()
                .any(|(kind, first)| *kind == key.0 && first.is_none_or(|f| f == key.1))
        };
        let mut changed = false;
        // What each channel holds after this event's deltas so far (a candidate's text parts
        // follow one another in one event).
        let mut left: Vec<(usize, Zeroizing<String>)> = Vec::new();
        for (i, delta) in deltas.iter().enumerate() {
            let before = match left.iter().position(|(d, _)| deltas[*d].key == delta.key) {
                Some(at) => Some(left.swap_remove(at).1),
                None => self
                    .held
                    .iter()
                    .position(|h| h.key == delta.key)
                    .map(|at| self.held.swap_remove(at).text),
            };
            let rest = match value.pointer_mut(&delta.pointer) {
                Some(Value::String(text)) => {
                    let (rewritten, rest) = self.redact(before, text, ended(&delta.key));
                    if rewritten && let Some((at, arrays)) = &delta.tokens {
                        clear_tokens(&mut value, at, arrays);
                    }
                    changed |= rewritten;
                    rest
                }
                _ => before.unwrap_or_default(),
            };
            if !rest.is_empty() {
                left.push((i, rest));
            }
        }
        let lines = event_lines(raw);
        for (i, text) in left {
            let delta = &deltas[i];
            let (template, pointer, named) = template(&delta.shape, &value);
            // Named as the channel's deltas are, when the stream names its events.
            let name = match named {
                Some(named) if !lines.is_empty() => format!("event: {named}\n").into_bytes(),
                _ => lines.clone(),
            };
            let size = text.len() + name.len() + json_len(&template);
            self.held.push(Held {
                key: delta.key,
                text,
                name,
                template,
                pointer,
                size,
            });
        }
        // Channels this event ends send what they hold first.
        self.flush(ended, out);
        if self.held.len() > MAX_HELD_CHANNELS
            || self.held.iter().map(|h| h.size).sum::<usize>() > MAX_HELD_BYTES
        {
            return self.fail(out);
        }
        if changed {
            rewrite(raw, &value, out);
        } else {
            out.extend_from_slice(raw);
        }
    }

    /// `text`, a channel's delta, after `before` (what the channel held back): with every form
    /// of the secret the joined text holds replaced, and what could begin one at its end held
    /// back unless the channel `ends` here. Whether it changed, and what is held.
    fn redact(
        &mut self,
        before: Option<Zeroizing<String>>,
        text: &mut String,
        ends: bool,
    ) -> (bool, Zeroizing<String>) {
        let before = before.unwrap_or_default();
        let echo = &*self.echo;
        if before.is_empty()
            && echo.find(text.as_bytes(), 0).is_none()
            && (ends || echo.partial(text.as_bytes()) == 0)
        {
            return (false, Zeroizing::default());
        }
        let mut joined = Zeroizing::new(String::with_capacity(before.len() + text.len()));
        joined.push_str(&before);
        joined.push_str(text);
        let mut out = Zeroizing::new(Vec::with_capacity(joined.len()));
        let joined = joined.as_bytes();
        let mut i = 0;
        while let Some((at, end)) = echo.find(joined, i) {
            out.extend_from_slice(&joined[i..at]);
            out.extend_from_slice(REDACTED);
            self.count += 1;
            // Spread over deltas when it began in what an earlier one left.
            if at < before.len() {
                self.spread += 1;
            }
            i = end;
        }
        out.extend_from_slice(&joined[i..]);
        let mut keep = if ends { 0 } else { echo.partial(&out) };
        // A form begins on a character: were it not so, the whole character is held.
        while keep > 0 && keep < out.len() && (out[out.len() - keep] & 0xC0) == 0x80 {
            keep += 1;
        }
        let cut = out.len() - keep;
        let rest = Zeroizing::new(String::from_utf8_lossy(&out[cut..]).into_owned());
        // A form begins and ends on a character's boundary; were it not so, what is sent
        // loses the broken character rather than keeping a part of the secret.
        *text = String::from_utf8_lossy(&out[..cut]).into_owned();
        (true, rest)
    }

    /// Sends what the channels `which` picks hold, each as a delta of its own.
    fn flush(&mut self, which: impl Fn(&Key) -> bool, out: &mut Vec<u8>) {
        let mut i = 0;
        while i < self.held.len() {
            if !which(&self.held[i].key) {
                i += 1;
                continue;
            }
            let mut held = self.held.swap_remove(i);
            if let Some(slot) = held.template.pointer_mut(&held.pointer) {
                *slot = Value::String(std::mem::take(&mut *held.text));
            }
            out.extend_from_slice(&held.name);
            write_data(&held.template, out);
        }
    }
}

/// The `event:` lines of `raw` (each with a line end): what an event made from it carries.
fn event_lines(raw: &[u8]) -> Vec<u8> {
    let mut name = Vec::new();
    for line in lines(raw) {
        if line.starts_with(b"event") {
            name.extend_from_slice(line);
            name.push(b'\n');
        }
    }
    name
}

/// Empties the arrays `arrays` of the object at `at` in `event` (token log probabilities,
/// which spell the text of a delta that was changed).
fn clear_tokens(event: &mut Value, at: &str, arrays: &[&str]) {
    let Some(Value::Object(fields)) = event.pointer_mut(at) else {
        return;
    };
    for name in arrays {
        if let Some(Value::Array(items)) = fields.get_mut(*name) {
            items.clear();
        }
    }
}

/// How many bytes `value` takes written as JSON.
fn json_len(value: &Value) -> usize {
    crate::json_len::json_len(value)
}

/// Writes `value` as one `data:` line and the blank line that ends its event.
fn write_data(value: &Value, out: &mut Vec<u8>) {
    out.extend_from_slice(b"data: ");
    // A `Value` always serialises.
    let _ = serde_json::to_writer(&mut *out, value);
    out.extend_from_slice(b"\n\n");
}

/// `raw` with its data replaced by `value`: its other lines (`event:`, `id:`, comments) as
/// they were.
fn rewrite(raw: &[u8], value: &Value, out: &mut Vec<u8>) {
    let raw = raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw);
    for line in lines(raw) {
        if line.is_empty() || line.starts_with(b"data") {
            continue;
        }
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    write_data(value, out);
}

fn index(value: &Value, key: &str) -> Option<u64> {
    value.get(key).and_then(Value::as_u64)
}

fn is_text(value: &Value, key: &str) -> bool {
    value.get(key).is_some_and(Value::is_string)
}

/// A small stable number for a Responses event type (its delta's channel).
fn type_id(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The deltas `event`, an event of a `kind` stream, carries and the channels it ends, as the
/// SDKs read them: the keys of other kinds' events are not looked at.
fn deltas(event: &Value, kind: Kind) -> (Vec<Delta>, Vec<End>) {
    let mut deltas = Vec::new();
    let mut ends = Vec::new();
    let array = |key| event.get(key).and_then(Value::as_array);
    let typed = event.get("type").and_then(Value::as_str);
    match kind {
        Kind::Chat => {
            if let Some(choices) = array("choices") {
                chat(choices, &mut deltas);
            }
        }
        Kind::Gemini => {
            if let Some(candidates) = array("candidates") {
                gemini(candidates, &mut deltas, &mut ends);
            }
        }
        Kind::Anthropic => {
            if let Some(name) = typed {
                anthropic(event, name, &mut deltas, &mut ends);
            }
        }
        Kind::Responses => {
            if let Some(name) = typed {
                responses(event, name, &mut deltas, &mut ends);
            }
        }
    }
    (deltas, ends)
}

/// Chat Completions: each choice's `delta` fields, tool call arguments and legacy function
/// call arguments (and a completion's `text`). A choice's channels end with the stream only:
/// an SDK joins what comes after its `finish_reason` too.
fn chat(choices: &[Value], deltas: &mut Vec<Delta>) {
    const FIELDS: [&str; 4] = ["content", "refusal", "reasoning_content", "reasoning"];
    for (at, choice) in choices.iter().enumerate() {
        let i = index(choice, "index").unwrap_or(at as u64);
        let tokens = || Some((format!("/choices/{at}/logprobs"), CHAT_TOKENS));
        if let Some(delta) = choice.get("delta") {
            for (n, field) in FIELDS.into_iter().enumerate() {
                if is_text(delta, field) {
                    deltas.push(Delta {
                        key: (Kind::Chat, i, 0, 0, n as u64),
                        pointer: format!("/choices/{at}/delta/{field}"),
                        shape: Shape::Chat {
                            choice: i,
                            tool: None,
                            field,
                        },
                        tokens: tokens(),
                    });
                }
            }
            if delta
                .get("function_call")
                .is_some_and(|f| is_text(f, "arguments"))
            {
                deltas.push(Delta {
                    key: (Kind::Chat, i, 3, 0, 0),
                    pointer: format!("/choices/{at}/delta/function_call/arguments"),
                    shape: Shape::Chat {
                        choice: i,
                        tool: None,
                        field: "function_call",
                    },
                    tokens: tokens(),
                });
            }
            let calls = delta.get("tool_calls").and_then(Value::as_array);
            for (c, call) in calls.into_iter().flatten().enumerate() {
                let t = index(call, "index").unwrap_or(c as u64);
                if call
                    .get("function")
                    .is_some_and(|f| is_text(f, "arguments"))
                {
                    deltas.push(Delta {
                        key: (Kind::Chat, i, 1, t, 0),
                        pointer: format!("/choices/{at}/delta/tool_calls/{c}/function/arguments"),
                        shape: Shape::Chat {
                            choice: i,
                            tool: Some(t),
                            field: "arguments",
                        },
                        tokens: tokens(),
                    });
                }
            }
        }
        if is_text(choice, "text") {
            deltas.push(Delta {
                key: (Kind::Chat, i, 2, 0, 0),
                pointer: format!("/choices/{at}/text"),
                shape: Shape::Chat {
                    choice: i,
                    tool: None,
                    field: "text",
                },
                tokens: tokens(),
            });
        }
    }
}

/// Gemini: each candidate's text parts (thoughts apart); a candidate with a `finishReason`
/// ends.
fn gemini(candidates: &[Value], deltas: &mut Vec<Delta>, ends: &mut Vec<End>) {
    for (at, candidate) in candidates.iter().enumerate() {
        let i = index(candidate, "index").unwrap_or(at as u64);
        let parts = candidate
            .get("content")
            .and_then(|c| c.get("parts"))
            .and_then(Value::as_array);
        for (p, part) in parts.into_iter().flatten().enumerate() {
            if is_text(part, "text") {
                let thought = part.get("thought").and_then(Value::as_bool) == Some(true);
                deltas.push(Delta {
                    key: (Kind::Gemini, i, u64::from(thought), 0, 0),
                    pointer: format!("/candidates/{at}/content/parts/{p}/text"),
                    shape: Shape::Gemini {
                        candidate: i,
                        thought,
                    },
                    tokens: Some((
                        format!("/candidates/{at}/logprobsResult"),
                        &["topCandidates", "chosenCandidates"],
                    )),
                });
            }
        }
        if candidate.get("finishReason").is_some_and(|f| !f.is_null()) {
            ends.push((Kind::Gemini, Some(i)));
        }
    }
}

/// Anthropic messages: each content block's text, tool input JSON and thinking (and the text a
/// block starts with); a block ends at its stop, all of them at the message's end or an error.
fn anthropic(event: &Value, kind: &str, deltas: &mut Vec<Delta>, ends: &mut Vec<End>) {
    match kind {
        "content_block_delta" => {
            let i = index(event, "index").unwrap_or(0);
            let Some(delta) = event.get("delta") else {
                return;
            };
            let delta_type = delta.get("type").and_then(Value::as_str).unwrap_or("");
            let (n, field) = match delta_type {
                "text_delta" => (0, "text"),
                "input_json_delta" => (1, "partial_json"),
                "thinking_delta" => (2, "thinking"),
                _ => return,
            };
            if is_text(delta, field) {
                deltas.push(anthropic_delta(i, n, delta_type, field, "delta"));
            }
        }
        // A block may start with text, which the SDK puts before its deltas.
        "content_block_start" => {
            let i = index(event, "index").unwrap_or(0);
            let Some(block) = event.get("content_block") else {
                return;
            };
            let (n, delta_type, field) = match block.get("type").and_then(Value::as_str) {
                Some("text") => (0, "text_delta", "text"),
                Some("thinking") => (2, "thinking_delta", "thinking"),
                _ => return,
            };
            if is_text(block, field) {
                deltas.push(anthropic_delta(i, n, delta_type, field, "content_block"));
            }
        }
        "content_block_stop" => ends.push((Kind::Anthropic, index(event, "index"))),
        "message_delta" | "message_stop" | "error" => ends.push((Kind::Anthropic, None)),
        _ => {}
    }
}

/// An Anthropic text channel's delta: block `index`, its `n`th kind of text (`delta_type`,
/// in `field` of the event's `object`: `delta` or `content_block`).
fn anthropic_delta(
    index: u64,
    n: u64,
    delta_type: &str,
    field: &'static str,
    object: &str,
) -> Delta {
    Delta {
        key: (Kind::Anthropic, index, n, 0, 0),
        pointer: format!("/{object}/{field}"),
        shape: Shape::Anthropic {
            index,
            delta_type: delta_type.to_owned(),
            field,
        },
        tokens: None,
    }
}

/// OpenAI Responses: each output's (content part's, summary's) `….delta` of text (and the text
/// a content part starts with); an output ends at its `….done`, all of them at the response's
/// end or an error.
fn responses(event: &Value, kind: &str, deltas: &mut Vec<Delta>, ends: &mut Vec<End>) {
    match kind {
        "error" | "response.completed" | "response.incomplete" | "response.failed" => {
            ends.push((Kind::Responses, None));
        }
        // A content part may start with text, which the SDK puts before its deltas.
        "response.content_part.added" => {
            let Some(part) = event.get("part") else {
                return;
            };
            let text_type = match part.get("type").and_then(Value::as_str) {
                Some("output_text") => "response.output_text.delta",
                Some("refusal") => "response.refusal.delta",
                _ => return,
            };
            let field = if text_type == "response.refusal.delta" {
                "refusal"
            } else {
                "text"
            };
            if is_text(part, field) {
                let output = index(event, "output_index").unwrap_or(0);
                let content = index(event, "content_index").unwrap_or(0);
                deltas.push(Delta {
                    key: (Kind::Responses, output, content, 0, type_id(text_type)),
                    pointer: format!("/part/{field}"),
                    shape: Shape::ResponsesText {
                        item_id: event.get("item_id").cloned().unwrap_or(Value::Null),
                        output,
                        content,
                    },
                    tokens: None,
                });
            }
        }
        // Audio comes as base64 a delta at a time, each decoded on its own: not text.
        _ if kind.ends_with(".delta")
            && !kind.ends_with("audio.delta")
            && is_text(event, "delta") =>
        {
            deltas.push(Delta {
                key: (
                    Kind::Responses,
                    index(event, "output_index").unwrap_or(0),
                    index(event, "content_index").unwrap_or(0),
                    index(event, "summary_index").unwrap_or(0),
                    type_id(kind),
                ),
                pointer: "/delta".to_owned(),
                shape: Shape::Responses,
                tokens: Some((String::new(), &["logprobs"])),
            });
        }
        _ if kind.ends_with(".done") => {
            if let Some(output) = index(event, "output_index") {
                ends.push((Kind::Responses, Some(output)));
            }
        }
        _ => {}
    }
}

/// The fields of `event` a delta made from it keeps (its id, model, times).
fn head(event: &Value, keys: &[&str]) -> Map<String, Value> {
    keys.iter()
        .filter_map(|k| Some(((*k).to_owned(), event.get(*k)?.clone())))
        .collect()
}

/// A delta of `shape` that carries only its text (empty, at the pointer given), made from
/// `event`, an event of the channel; and the event name it takes where events are named, when
/// not `event`'s.
fn template(shape: &Shape, event: &Value) -> (Value, String, Option<&'static str>) {
    match shape {
        Shape::Chat {
            choice,
            tool,
            field,
        } => {
            let mut head = head(
                event,
                &["id", "object", "created", "model", "system_fingerprint"],
            );
            let (choice_value, pointer) = match (tool, *field) {
                (Some(t), _) => (
                    serde_json::json!({"index": choice, "delta": {"tool_calls": [
                        {"index": t, "function": {"arguments": ""}}]}, "finish_reason": null}),
                    "/choices/0/delta/tool_calls/0/function/arguments".to_owned(),
                ),
                (None, "text") => (
                    serde_json::json!({"index": choice, "text": "", "finish_reason": null}),
                    "/choices/0/text".to_owned(),
                ),
                (None, "function_call") => (
                    serde_json::json!({"index": choice, "delta": {"function_call":
                        {"arguments": ""}}, "finish_reason": null}),
                    "/choices/0/delta/function_call/arguments".to_owned(),
                ),
                (None, field) => (
                    serde_json::json!({"index": choice, "delta": {field: ""},
                        "finish_reason": null}),
                    format!("/choices/0/delta/{field}"),
                ),
            };
            head.insert("choices".to_owned(), Value::Array(vec![choice_value]));
            (Value::Object(head), pointer, None)
        }
        Shape::Anthropic {
            index,
            delta_type,
            field,
        } => (
            serde_json::json!({"type": "content_block_delta", "index": index,
                "delta": {"type": delta_type, *field: ""}}),
            format!("/delta/{field}"),
            Some("content_block_delta"),
        ),
        Shape::Responses => {
            // Its fixed fields only: what places the delta, never the rest of the event.
            let mut fields = head(
                event,
                &[
                    "type",
                    "item_id",
                    "output_index",
                    "content_index",
                    "summary_index",
                ],
            );
            fields.insert("delta".to_owned(), Value::String(String::new()));
            if event.get("logprobs").is_some_and(Value::is_array) {
                fields.insert("logprobs".to_owned(), Value::Array(Vec::new()));
            }
            (Value::Object(fields), "/delta".to_owned(), None)
        }
        Shape::ResponsesText {
            item_id,
            output,
            content,
        } => {
            let kind = match event.pointer("/part/type").and_then(Value::as_str) {
                Some("refusal") => "response.refusal.delta",
                _ => "response.output_text.delta",
            };
            (
                serde_json::json!({"type": kind, "item_id": item_id, "output_index": output,
                    "content_index": content, "delta": ""}),
                "/delta".to_owned(),
                Some(kind),
            )
        }
        Shape::Gemini { candidate, thought } => {
            let mut head = head(event, &["modelVersion", "responseId"]);
            let part = match thought {
                true => serde_json::json!({"text": "", "thought": true}),
                false => serde_json::json!({"text": ""}),
            };
            head.insert(
                "candidates".to_owned(),
                serde_json::json!([{"content": {"parts": [part], "role": "model"},
                    "index": candidate}]),
            );
            (
                Value::Object(head),
                "/candidates/0/content/parts/0/text".to_owned(),
                None,
            )
        }
    }
}

#[cfg(test)]
mod tests;
