//! Redaction of an injected secret a model spreads over the deltas of a streamed answer: an
//! upstream that streams `"sk-"` in one event and `"live-…"` in the next has sent no byte
//! sequence that holds the secret, yet the agent's SDK joins the two strings and hands it over
//! whole. So each content channel of a stream (a choice's `content`, `refusal` or reasoning,
//! each of its tool calls' `arguments`, its legacy `function_call`'s `arguments`; an Anthropic
//! content block's text, JSON or thinking; a Responses output's text, refusal, arguments or
//! reasoning; a Gemini candidate's text) is read as the SDK joins it: its text decoded from
//! JSON, its deltas' text in order. Which shape a stream's
//! events have is known from the request (its endpoint), not guessed per event: the keys of
//! other shapes are ignored.
//!
//! Events are held, never cut. When a channel's joined text ends with what could still begin
//! one of the secret's forms (at most the longest form less a byte), the event that carries
//! it is held, and every event after it, in order, until the channel's next text decides: no
//! secret, and the held events go on byte for byte; a secret, and only the events that carry
//! a piece of it are written anew, `[REDACTED]` in the one where it begins and its other
//! pieces gone (their token log probabilities, which spell the same pieces, emptied). A
//! channel that ends decides too: what it held was no secret. Channels end only when the
//! answer does (the stream ends or sends `[DONE]`, Anthropic's `message_stop`, the Responses
//! `response.completed`, an error): the SDKs join text sent after a choice's `finish_reason`,
//! a block's `content_block_stop` or an output's `….done` too. A comment (a keep-alive) goes
//! on at once, ahead of held events: it carries nothing an SDK reads, and its worth is in
//! showing now that the stream is alive. A block of `retry:`, `id:` or `event:` lines goes on
//! in its place (the last event id names the events before it): at once when nothing is held
//! (the rule the proposed-call hold follows too: `protocol::proposed::goes_ahead_of_held`).
//!
//! Held events are bounded in bytes and in time: past [`MAX_HELD_EVENTS`] bytes of them, or
//! once the oldest was held [`MAX_HELD_TIME`] (the stream's wrapper polls
//! [`Joined::poll_release`], whose one timer is set only while something is held), each
//! channel's undecided text is moved out of them (they go on without it) to the front of the
//! channel's next delta, or into a delta of its own, shaped as the channel's deltas are, when
//! the channel ends: the text the SDK joins is the upstream's, only its cuts between deltas
//! move, and no byte of what could begin the secret goes out before it is decided.
//!
//! The stream must be read to be redacted: an event whose data is not JSON (but for `[DONE]`),
//! or one larger than [`MAX_EVENT`], ends the stream with the dialect's error, as does a stream
//! with more than [`MAX_HELD_CHANNELS`] channels undecided at once, or more than
//! [`MAX_HELD_BYTES`] of text moved out for them (that text and the fixed fields of the
//! deltas that would send it).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Map, Value};
use tokio::time::{Instant, Sleep};
use zeroize::Zeroizing;

use super::echo::{Echo, REDACTED};
use crate::json_len::json_len;
use crate::protocol::Dialect;
use crate::protocol::Endpoint;
use crate::protocol::proposed::{
    EventFramer, MAX_WHOLE_BODY, event_data, goes_ahead_of_held, lines,
};

/// The error code a stream that cannot be read to be redacted ends with.
pub const UNREADABLE_CODE: &str = "response_unreadable";

/// What that error says.
pub const UNREADABLE: &str = "Warden could not read an event of the upstream's stream (not JSON, or larger than 32 MiB) to redact the credential it injected from it; the stream was ended here";

/// Largest event read whole; a larger one (or a partial event past it) ends the stream.
pub const MAX_EVENT: usize = MAX_WHOLE_BODY;

/// Most channels undecided at once (far more than any model streams in parallel).
pub const MAX_HELD_CHANNELS: usize = 256;

/// Most bytes of events held at once; past it the undecided text is moved out of them and
/// they go on.
pub const MAX_HELD_EVENTS: usize = 32 << 10;

/// Longest an event is held; past it the undecided text is moved out of the held events and
/// they go on, whether or not the upstream sent more. Far above the gaps between a streaming
/// model's tokens (so a hold nearly always decides itself and the events go on byte for
/// byte), far below the idle timeouts of SDKs (minutes) and proxies (60 s is common): a
/// model that pauses after what could begin the secret (a long thought, a server-side tool,
/// a slow upstream) stalls what the agent sees for at most this long.
pub const MAX_HELD_TIME: Duration = Duration::from_secs(1);

/// Most bytes of text moved out of events a stream holds for its channels at once: that text
/// and the deltas that would send it (ids, names), past which the stream ends with the error.
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

/// How a channel's text moved out of the events is sent once it ends: in a delta of its own,
/// of this shape.
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
#[derive(Clone)]
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

/// An event held while a channel's text in it, or before it, is undecided.
struct Queued {
    /// Its place in the stream.
    seq: u64,
    /// The event as it came.
    raw: Vec<u8>,
    /// Its data, when it carries deltas (their text rewritten here).
    value: Option<Value>,
    /// Whether its text changed: it is written anew from `value`.
    changed: bool,
    /// When it was held (set once the chunk that brought it has been read).
    at: Option<Instant>,
}

/// Where a channel's text lies in a held event: the text of `delta` from byte `start` on.
struct Piece {
    seq: u64,
    delta: Delta,
    start: usize,
}

/// A channel's undecided text moved out of events already sent (held events outgrew
/// [`MAX_HELD_EVENTS`]): it goes in front of the channel's next delta, or in a delta of its
/// own when the channel ends.
struct Moved {
    text: Zeroizing<String>,
    /// The event that sends it when the channel ends first: its `event:` lines, its JSON
    /// and where the text goes.
    name: Vec<u8>,
    template: Value,
    pointer: String,
    /// What it takes of [`MAX_HELD_BYTES`].
    size: usize,
}

/// A channel whose joined text ends with what could begin one of the secret's forms.
enum Undecided {
    /// That text is in held events: the pieces, oldest first.
    Held(Vec<Piece>),
    /// It was moved out of them.
    Moved(Moved),
}

/// Joins each channel's deltas and redacts the secret from the joined text.
pub struct Joined {
    echo: Arc<Echo>,
    framer: EventFramer,
    /// Events held, in order.
    queue: VecDeque<Queued>,
    /// Their bytes.
    queued: usize,
    /// The place of the next event held.
    next: u64,
    /// The channels whose text is undecided.
    channels: Vec<(Key, Undecided)>,
    /// Secrets replaced in the joined text.
    count: usize,
    /// Of them, those that began in an earlier delta.
    spread: usize,
    /// The shape of the stream's events.
    kind: Kind,
    /// Whose error ends a stream that cannot be read.
    dialect: &'static dyn Dialect,
    failed: bool,
    /// How long an event may be held ([`MAX_HELD_TIME`]).
    hold_time: Duration,
    /// Wakes the stream when the oldest event held has been held that long: made at the
    /// first hold and kept for the stream's life, set again as each hold starts, parked
    /// [`PARKED`] ahead (it wakes no one) when nothing is held.
    timer: Option<Pin<Box<Sleep>>>,
    /// Whether the timer is set for what is held now (not parked, not elapsed).
    armed: bool,
    /// Timers made: one per stream at most.
    #[cfg(test)]
    timers_made: usize,
}

/// How far ahead the timer is parked while nothing is held: past any stream's life, so that
/// it never fires (tokio extends a pending timer's deadline in place, without waking).
const PARKED: Duration = Duration::from_secs(365 * 24 * 3600);

impl Joined {
    /// Joins the deltas of an event stream of `kind` in `dialect` to redact `echo` (the
    /// dialect's error ends the stream when it cannot be read).
    pub fn new(echo: Arc<Echo>, dialect: &'static dyn Dialect, kind: Kind) -> Joined {
        Joined {
            echo,
            framer: EventFramer::default(),
            queue: VecDeque::new(),
            queued: 0,
            next: 0,
            channels: Vec::new(),
            count: 0,
            spread: 0,
            kind,
            dialect,
            failed: false,
            hold_time: MAX_HELD_TIME,
            timer: None,
            armed: false,
            #[cfg(test)]
            timers_made: 0,
        }
    }

    /// The same, events held at most `hold_time` (tests).
    #[cfg(test)]
    pub fn holding_at_most(mut self, hold_time: Duration) -> Joined {
        self.hold_time = hold_time;
        self
    }

    /// How many secrets were replaced in the deltas' text.
    pub fn count(&self) -> usize {
        self.count
    }

    /// How many of them were spread over deltas: began in an earlier one.
    pub fn spread(&self) -> usize {
        self.spread
    }

    /// Whether the stream could not be read and was ended with the error.
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Bytes held: of an event not yet whole, of events held and of text moved out of them.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.framer.held() + self.queued + self.moved().map(|m| m.text.len()).sum::<usize>()
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
            self.event(event, &mut out);
            if self.failed {
                return Bytes::from(out);
            }
        }
        if self.framer.held() > MAX_EVENT {
            self.fail(&mut out);
        }
        self.stamp();
        Bytes::from(out)
    }

    /// Notes when the events held by the chunk just read were held: now.
    fn stamp(&mut self) {
        if self.queue.back().is_none_or(|q| q.at.is_some()) {
            return;
        }
        let now = Instant::now();
        for queued in self.queue.iter_mut().rev() {
            if queued.at.is_some() {
                break;
            }
            queued.at = Some(now);
        }
    }

    /// Ready, with what may go on, once the oldest event held has been held [`MAX_HELD_TIME`]:
    /// the held events are released as past [`MAX_HELD_EVENTS`] (each channel's undecided
    /// text moved out of them, to go with its next delta). Pending while none has been held
    /// that long (the task is woken when one has) or nothing is held (the timer is parked
    /// then, and wakes no one: the caller is woken by its upstream).
    pub fn poll_release(&mut self, cx: &mut Context<'_>) -> Poll<Bytes> {
        let deadline = self
            .queue
            .front()
            .and_then(|q| q.at)
            .filter(|_| !self.failed)
            .map(|at| at + self.hold_time);
        let Some(deadline) = deadline else {
            self.park();
            return Poll::Pending;
        };
        let timer = match &mut self.timer {
            Some(timer) => {
                if !self.armed || timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                timer
            }
            None => {
                #[cfg(test)]
                {
                    self.timers_made += 1;
                }
                self.timer
                    .insert(Box::pin(tokio::time::sleep_until(deadline)))
            }
        };
        self.armed = true;
        ready!(timer.as_mut().poll(cx));
        // Elapsed: out of tokio's timer wheel until it is set again.
        self.armed = false;
        let mut out = Vec::new();
        self.move_out();
        self.settle(&mut out);
        Poll::Ready(Bytes::from(out))
    }

    /// Nothing is held: the timer, if set, is moved [`PARKED`] ahead, where it wakes no one
    /// (kept to be set again as the next hold starts).
    fn park(&mut self) {
        if let Some(timer) = self.timer.as_mut().filter(|_| self.armed) {
            timer.as_mut().reset(Instant::now() + PARKED);
        }
        self.armed = false;
    }

    /// The stream ended: the last event, if it had no blank line after it, and every event
    /// still held (each channel ends).
    pub fn finish(&mut self) -> Bytes {
        if self.failed {
            return Bytes::new();
        }
        let mut out = Vec::new();
        let rest = self.framer.rest();
        if !rest.is_empty() {
            self.event(rest, &mut out);
        }
        if !self.failed {
            self.end(|_| true);
            self.release(&mut out);
        }
        Bytes::from(out)
    }

    /// Ends the stream with the dialect's error: the events held before go on without the
    /// undecided text; nothing more is read or held.
    fn fail(&mut self, out: &mut Vec<u8>) {
        for (_, undecided) in std::mem::take(&mut self.channels) {
            if let Undecided::Held(pieces) = undecided {
                for piece in &pieces {
                    self.cut(piece);
                }
            }
        }
        self.release(out);
        out.extend_from_slice(&self.dialect.error_event(
            http::StatusCode::BAD_GATEWAY,
            UNREADABLE_CODE,
            UNREADABLE,
        ));
        self.failed = true;
        self.framer.rest();
    }

    /// One whole event (raw, its blank line included).
    fn event(&mut self, raw: Vec<u8>, out: &mut Vec<u8>) {
        if raw.len() > MAX_EVENT {
            return self.fail(out);
        }
        let Some(data) = event_data(&raw) else {
            if goes_ahead_of_held(&raw) {
                // A keep-alive: it goes on now, ahead of what is held.
                return out.extend_from_slice(&raw);
            }
            // `retry:`, `id:` or `event:`: nothing an SDK joins. It goes on at once when
            // nothing is held, else in its place after the events held.
            self.hold(raw, None);
            return self.settle(out);
        };
        let data = data.trim_ascii();
        if data == b"[DONE]" {
            self.end(|_| true);
            self.hold(raw, None);
            return self.settle(out);
        }
        if data.is_empty() {
            self.hold(raw, None);
            return self.settle(out);
        }
        let Ok(value) = serde_json::from_slice::<Value>(data) else {
            return self.fail(out);
        };
        let (deltas, ends) = deltas(&value, self.kind);
        if deltas.is_empty() && !ends {
            self.hold(raw, None);
            return self.settle(out);
        }
        // The channels this event ends with no text of their own are decided before it.
        if ends {
            self.end(|key| !deltas.iter().any(|d| d.key == *key));
        }
        let seq = self.hold(raw, Some(value));
        for (i, delta) in deltas.iter().enumerate() {
            // One that it ends with text ends after its last delta in the event (a Gemini
            // candidate's parts follow one another).
            let last = !deltas[i + 1..].iter().any(|d| d.key == delta.key);
            self.join(seq, delta, last && ends);
        }
        self.settle(out);
    }

    /// After an event was held: past [`MAX_HELD_EVENTS`] of them, the undecided text is moved
    /// out; past the other bounds, the stream ends with the error; else what may go on goes.
    fn settle(&mut self, out: &mut Vec<u8>) {
        if self.queued > MAX_HELD_EVENTS {
            self.move_out();
        }
        if self.channels.len() > MAX_HELD_CHANNELS
            || self.moved().map(|m| m.size).sum::<usize>() > MAX_HELD_BYTES
        {
            return self.fail(out);
        }
        self.release(out);
    }

    /// Holds `raw` (its data `value` when it carries deltas) after the events held; its place.
    fn hold(&mut self, raw: Vec<u8>, value: Option<Value>) -> u64 {
        let seq = self.next;
        self.next += 1;
        self.queued += raw.len();
        self.queue.push_back(Queued {
            seq,
            raw,
            value,
            changed: false,
            at: None,
        });
        seq
    }

    /// Sends the held events no undecided text is in (nor before), in order.
    fn release(&mut self, out: &mut Vec<u8>) {
        let oldest = self
            .channels
            .iter()
            .filter_map(|(_, undecided)| match undecided {
                Undecided::Held(pieces) => pieces.first().map(|p| p.seq),
                Undecided::Moved(_) => None,
            })
            .min();
        while self
            .queue
            .front()
            .is_some_and(|q| oldest.is_none_or(|seq| q.seq < seq))
        {
            let Some(queued) = self.queue.pop_front() else {
                break;
            };
            self.queued -= queued.raw.len();
            match (&queued.value, queued.changed) {
                (Some(value), true) => rewrite(&queued.raw, value, out),
                _ => out.extend_from_slice(&queued.raw),
            }
        }
    }

    /// Ends the channels `which` picks: text of theirs held in events was no secret (the
    /// events go on as they came); text moved out goes in a delta of its own, held in order.
    fn end(&mut self, which: impl Fn(&Key) -> bool) {
        let mut i = 0;
        while i < self.channels.len() {
            if !which(&self.channels[i].0) {
                i += 1;
                continue;
            }
            if let (_, Undecided::Moved(mut moved)) = self.channels.remove(i) {
                if let Some(slot) = moved.template.pointer_mut(&moved.pointer) {
                    *slot = Value::String(std::mem::take(&mut *moved.text));
                }
                let mut event = moved.name;
                write_data(&moved.template, &mut event);
                self.hold(event, None);
            }
        }
    }

    /// The text of `delta` in the held event `seq`, as the channel reads it.
    fn text(&self, seq: u64, delta: &Delta) -> Option<&str> {
        let front = self.queue.front()?.seq;
        let at = usize::try_from(seq.checked_sub(front)?).ok()?;
        self.queue
            .get(at)?
            .value
            .as_ref()?
            .pointer(&delta.pointer)?
            .as_str()
    }

    /// The held event `seq`'s data and whether it changed.
    fn value_mut(&mut self, seq: u64) -> Option<(&mut Value, &mut bool)> {
        let front = self.queue.front()?.seq;
        let at = usize::try_from(seq.checked_sub(front)?).ok()?;
        let queued = self.queue.get_mut(at)?;
        Some((queued.value.as_mut()?, &mut queued.changed))
    }

    /// Replaces the text of `piece` with `new` (what comes before it in its delta kept), its
    /// event's token log probabilities emptied; what was replaced.
    fn replace(&mut self, piece: &Piece, new: &str) -> Zeroizing<String> {
        let Some((value, changed)) = self.value_mut(piece.seq) else {
            return Zeroizing::default();
        };
        *changed = true;
        let mut old = Zeroizing::default();
        if let Some(Value::String(text)) = value.pointer_mut(&piece.delta.pointer) {
            // A piece starts on a character; were it not so, the whole delta goes.
            let start = if text.is_char_boundary(piece.start) {
                piece.start
            } else {
                0
            };
            *old = text.split_off(start);
            text.push_str(new);
        }
        if let Some((at, arrays)) = &piece.delta.tokens {
            clear_tokens(value, at, arrays);
        }
        old
    }

    /// Takes the text of `piece` out of its event.
    fn cut(&mut self, piece: &Piece) -> Zeroizing<String> {
        self.replace(piece, "")
    }

    /// The channels whose text was moved out of the events.
    fn moved(&self) -> impl Iterator<Item = &Moved> {
        self.channels.iter().filter_map(|(_, u)| match u {
            Undecided::Moved(moved) => Some(moved),
            Undecided::Held(_) => None,
        })
    }

    /// The held events outgrew [`MAX_HELD_EVENTS`]: each channel's undecided text is taken
    /// out of them (they go on without it), to go in front of its next delta or in a delta of
    /// its own.
    fn move_out(&mut self) {
        let channels = std::mem::take(&mut self.channels);
        for (key, undecided) in channels {
            let pieces = match undecided {
                Undecided::Held(pieces) => pieces,
                moved @ Undecided::Moved(_) => {
                    self.channels.push((key, moved));
                    continue;
                }
            };
            let mut text = Zeroizing::new(String::new());
            for piece in &pieces {
                text.push_str(&self.cut(piece));
            }
            let Some(last) = pieces.last() else {
                continue;
            };
            let front = self.queue.front().map_or(0, |q| q.seq);
            let Some(event) = usize::try_from(last.seq - front)
                .ok()
                .and_then(|at| self.queue.get(at))
            else {
                continue;
            };
            let lines = event_lines(&event.raw);
            let (template, pointer, named) = template(
                &last.delta.shape,
                event.value.as_ref().unwrap_or(&Value::Null),
            );
            // Named as the channel's deltas are, when the stream names its events.
            let name = match named {
                Some(named) if !lines.is_empty() => format!("event: {named}\n").into_bytes(),
                _ => lines,
            };
            let size = text.len() + name.len() + json_len(&template);
            self.channels.push((
                key,
                Undecided::Moved(Moved {
                    text,
                    name,
                    template,
                    pointer,
                    size,
                }),
            ));
        }
    }

    /// Joins the text of `delta`, in the held event `seq`, to what its channel holds
    /// undecided: every form of the secret the joined text holds is replaced in the events
    /// that carry it (`[REDACTED]` where it begins), and what could begin one at its end stays
    /// undecided unless the channel `ends` here.
    fn join(&mut self, seq: u64, delta: &Delta, ends: bool) {
        let at = self.channels.iter().position(|(k, _)| *k == delta.key);
        if at.is_none() {
            // The common case: nothing undecided, and nothing in this text to decide.
            let Some(text) = self.text(seq, delta) else {
                return;
            };
            let echo = &*self.echo;
            if echo.find(text.as_bytes(), 0).is_none()
                && (ends || echo.partial(text.as_bytes()) == 0)
            {
                return;
            }
        }
        let (mut pieces, moved_in) = match at.map(|at| self.channels.remove(at).1) {
            Some(Undecided::Held(pieces)) => (pieces, Zeroizing::default()),
            Some(Undecided::Moved(moved)) => (Vec::new(), moved.text),
            None => (Vec::new(), Zeroizing::default()),
        };
        pieces.push(Piece {
            seq,
            delta: delta.clone(),
            start: 0,
        });
        // The joined text, and where each piece is in it (text moved in goes in front of
        // this delta's).
        let mut joined = Zeroizing::new(Vec::new());
        let mut bounds = Vec::with_capacity(pieces.len());
        for (n, piece) in pieces.iter().enumerate() {
            let from = joined.len();
            if n + 1 == pieces.len() {
                joined.extend_from_slice(moved_in.as_bytes());
            }
            let text = self.text(piece.seq, &piece.delta).unwrap_or_default();
            joined.extend_from_slice(text.as_bytes().get(piece.start..).unwrap_or_default());
            bounds.push((from, joined.len()));
        }
        let before = bounds.last().map_or(0, |b| b.0) + moved_in.len();
        let mut found = Vec::new();
        let mut i = 0;
        while let Some((at, end)) = self.echo.find(&joined, i) {
            found.push((at, end));
            i = end;
        }
        self.count += found.len();
        self.spread += found.iter().filter(|(at, _)| *at < before).count();
        for (n, &(a, b)) in bounds.iter().enumerate() {
            let moved_here = n + 1 == bounds.len() && !moved_in.is_empty();
            if !moved_here && !found.iter().any(|&(at, end)| at < b && end > a) {
                continue;
            }
            let mut new = Zeroizing::new(Vec::with_capacity(b - a));
            let mut pos = a;
            for &(at, end) in &found {
                if end <= a || at >= b {
                    continue;
                }
                new.extend_from_slice(&joined[pos..at.max(a)]);
                if at >= a {
                    new.extend_from_slice(REDACTED);
                }
                pos = end.min(b);
            }
            new.extend_from_slice(&joined[pos..b]);
            // A form begins and ends on a character's boundary; were it not so, what is sent
            // loses the broken character rather than keeping a part of the secret.
            self.replace(&pieces[n], &String::from_utf8_lossy(&new));
        }
        // What stays undecided: the end of the joined text, as rewritten, that could begin a
        // form (never a part of what replaced one).
        let mut lens = Vec::with_capacity(pieces.len());
        let mut text = Zeroizing::new(Vec::with_capacity(joined.len()));
        for piece in &pieces {
            let rest = self
                .text(piece.seq, &piece.delta)
                .and_then(|t| t.get(piece.start..))
                .unwrap_or_default();
            lens.push(rest.len());
            text.extend_from_slice(rest.as_bytes());
        }
        let after = found
            .last()
            .map_or(text.len(), |&(_, end)| (joined.len() - end).min(text.len()));
        let mut keep = if ends {
            0
        } else {
            self.echo.partial(&text[text.len() - after..])
        };
        // A form begins on a character: were it not so, the whole character stays.
        while keep > 0 && keep < text.len() && (text[text.len() - keep] & 0xC0) == 0x80 {
            keep += 1;
        }
        let mut held = Vec::new();
        for (piece, len) in pieces.into_iter().zip(lens).rev() {
            if keep == 0 {
                break;
            }
            let take = len.min(keep);
            keep -= take;
            if take > 0 {
                held.push(Piece {
                    start: piece.start + len - take,
                    ..piece
                });
            }
        }
        held.reverse();
        if !held.is_empty() {
            self.channels.push((delta.key, Undecided::Held(held)));
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

/// The deltas `event`, an event of a `kind` stream, carries and whether it ends every channel
/// (the message or response is over), as the SDKs read them: the keys of other kinds' events
/// are not looked at.
fn deltas(event: &Value, kind: Kind) -> (Vec<Delta>, bool) {
    let mut deltas = Vec::new();
    let mut ends = false;
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
                gemini(candidates, &mut deltas);
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

/// Gemini: each candidate's text parts (thoughts apart). A candidate's channels end with the
/// stream only: the SDKs hand over each chunk's text (`chunk.text`, the candidate's text parts
/// joined, thoughts apart) and the agent joins the chunks', one sent after a `finishReason`
/// too (a chunk with the reason may be followed by more of it).
fn gemini(candidates: &[Value], deltas: &mut Vec<Delta>) {
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
    }
}

/// Anthropic messages: each content block's text, tool input JSON and thinking (and the text a
/// block starts with). The blocks end together, at `message_stop` or an error: the SDKs join
/// a delta sent after its block's `content_block_stop` (or the `message_delta`) too.
fn anthropic(event: &Value, kind: &str, deltas: &mut Vec<Delta>, ends: &mut bool) {
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
        "message_stop" | "error" => *ends = true,
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
/// a content part starts with). The outputs end together, at the response's end or an error:
/// the SDK joins a delta sent after its output's `….done` too.
fn responses(event: &Value, kind: &str, deltas: &mut Vec<Delta>, ends: &mut bool) {
    match kind {
        "error" | "response.completed" | "response.incomplete" | "response.failed" => {
            *ends = true;
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
