//! Tool calls a model proposes in a response, as every dialect hands them to the judge, and
//! the seam a dialect's response rewriter implements: bytes in, bytes out, each call judged
//! once its arguments are complete.

use bytes::Bytes;
use serde_json::Value;
use serde_json::error::Category;

use super::strict_json;

/// One tool call a model proposes, complete.
#[derive(Debug, Clone, Copy)]
pub struct ProposedCall<'a> {
    /// The call's id as the provider gave it (never matched on: agents rewrite ids).
    pub id: &'a str,
    /// The tool's name.
    pub name: &'a str,
    /// The arguments as JSON text (an object), as the model wrote them.
    pub arguments: &'a str,
}

/// What the judge says about one proposed call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The call reaches the agent unchanged.
    Allow,
    /// The call is removed; `text` tells the agent which call was refused and why.
    Deny { text: String },
}

/// Judges proposed calls, one at a time.
pub trait JudgeCalls: Send {
    /// The verdict on `call`.
    fn judge(&mut self, call: &ProposedCall<'_>) -> Verdict;

    /// Comes back to `mark` (a count of verdicts given): the calls met again are given their
    /// verdicts again, in order, as a rewriter replays what it read since.
    fn rewind(&mut self, _mark: usize) {}

    /// Whether the judge gives no more verdicts: the response proposed more than
    /// [`MAX_VERDICTS`] calls, and it ends as too large to judge.
    fn exhausted(&self) -> bool {
        false
    }
}

/// A response body rewritten as its proposed calls are judged: text flows through at once,
/// a call's parts are held until its arguments are complete, then released unchanged or
/// replaced.
pub trait ProposalRewriter: Send {
    /// Takes the next chunk of the upstream body: the bytes to send the agent now.
    fn push(&mut self, chunk: &[u8], judge: &mut dyn JudgeCalls) -> Bytes;

    /// The upstream body ended: whatever is still held, judged.
    fn finish(&mut self, judge: &mut dyn JudgeCalls) -> Bytes;

    /// Keeps the rewriter's state, the judge being at `mark`, to come back to with
    /// [`rewind`](Self::rewind): a call met after it may wait for a human, and the input since
    /// is then given again once it is settled.
    fn checkpoint(&mut self, mark: usize);

    /// Returns to the last checkpoint: what was pushed or finished since is forgotten (what
    /// came before it may be read again, `judge` replaying its verdicts).
    fn rewind(&mut self, judge: &mut dyn JudgeCalls);

    /// Why the stream was ended with an error instead of judged, once it was.
    fn unjudged(&self) -> Option<Unjudged> {
        None
    }
}

/// Splits a server-sent event stream into whole events (each with its blank-line end), as
/// the bytes arrive; partial events wait for the rest. Lines end as the event-stream rules
/// and the SDKs say: `\r\n`, `\n`, or a lone `\r`; an event ends at an empty line.
#[derive(Debug, Default, Clone)]
pub struct EventFramer {
    pending: Vec<u8>,
    /// Where in `pending` the line being read starts.
    line_start: usize,
    /// How far `pending` was searched for line ends.
    scanned: usize,
}

impl EventFramer {
    /// Appends `chunk`; calls `each` with every event it completes (raw bytes, terminator
    /// included).
    pub fn push(&mut self, chunk: &[u8], mut each: impl FnMut(&[u8])) {
        self.pending.extend_from_slice(chunk);
        let mut start = 0;
        while let Some((at, len)) = line_end(&self.pending, self.scanned) {
            let end = at + len;
            if at == self.line_start {
                // An empty line: the event ends.
                if let Some(event) = self.pending.get(start..end) {
                    each(event);
                }
                start = end;
            }
            self.line_start = end;
            self.scanned = end;
        }
        // What is left holds no line end but perhaps a final `\r`, read again with the byte
        // after it.
        let len = self.pending.len();
        self.scanned = if self.pending.last() == Some(&b'\r') {
            len.saturating_sub(1)
        } else {
            len
        };
        self.pending.drain(..start);
        self.line_start = self.line_start.saturating_sub(start);
        self.scanned = self.scanned.saturating_sub(start);
    }

    /// Bytes of the event not yet complete.
    pub fn held(&self) -> usize {
        self.pending.len()
    }

    /// What is left when the stream ends (an event without its blank line).
    pub fn rest(&mut self) -> Vec<u8> {
        self.line_start = 0;
        self.scanned = 0;
        std::mem::take(&mut self.pending)
    }
}

/// The first line end in `bytes` at or after `from`: where it is and how long (`\r\n`: 2).
/// A `\r` that ends `bytes` is no line end yet: a `\n` may follow.
fn line_end(bytes: &[u8], from: usize) -> Option<(usize, usize)> {
    let rest = bytes.get(from..)?;
    let at = from + memchr::memchr2(b'\r', b'\n', rest)?;
    match bytes.get(at..) {
        Some([b'\r', b'\n', ..]) => Some((at, 2)),
        Some([b'\r']) => None,
        _ => Some((at, 1)),
    }
}

/// The lines of `text`, each without its end (`\r\n`, `\n` or a lone `\r`), as the
/// event-stream rules (and Python's `bytes.splitlines`) read them.
pub fn lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let text = rest?;
        match memchr::memchr2(b'\r', b'\n', text) {
            Some(at) => {
                let len = if text.get(at..at + 2) == Some(&b"\r\n"[..]) {
                    2
                } else {
                    1
                };
                rest = text.get(at + len..).filter(|r| !r.is_empty());
                text.get(..at)
            }
            None => {
                rest = None;
                Some(text)
            }
        }
    })
}

/// The byte-order mark a stream may start with, which clients skip.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The `data:` of one raw event, lines joined with `\n` (`None` when it has none). A line
/// `data` without a colon is an empty data line; a leading byte-order mark is skipped.
pub fn event_data(event: &[u8]) -> Option<Vec<u8>> {
    let event = event.strip_prefix(BOM).unwrap_or(event);
    let mut data: Option<Vec<u8>> = None;
    for line in lines(event) {
        let value = match line.strip_prefix(b"data") {
            Some([]) => &[][..],
            Some([b':', value @ ..]) => value.strip_prefix(b" ").unwrap_or(value),
            _ => continue,
        };
        match &mut data {
            Some(d) => {
                d.push(b'\n');
                d.extend_from_slice(value);
            }
            None => data = Some(value.to_vec()),
        }
    }
    data
}

/// Whether `event`, a whole event with no data, may go on ahead of events held before it:
/// one of comment lines only (a keep-alive, `: OPENROUTER PROCESSING`), which no client
/// reads and whose worth is in showing now that the stream is alive. An event with a field
/// keeps its place: `id` sets the last event id, which names the events before it (a client
/// reconnecting with `Last-Event-ID` would skip those still held); `retry` and `event`
/// dispatch nothing by the event-stream rules, but decoders the SDKs use (httpx-sse,
/// openai-python's) hand such a block over as an event of empty data, in its place.
pub fn goes_ahead_of_held(event: &[u8]) -> bool {
    let event = event.strip_prefix(BOM).unwrap_or(event);
    lines(event)
        .filter(|line| !line.is_empty())
        .all(|line| line.starts_with(b":"))
}

/// What a dialect does with each whole event of a stream.
pub trait EventRewriter: Send {
    /// One complete event (raw bytes, terminator included): what to send goes to `out`; an
    /// event whose calls cannot be judged ends the stream (with the dialect's error).
    fn event(
        &mut self,
        event: Vec<u8>,
        judge: &mut dyn JudgeCalls,
        out: &mut Vec<u8>,
    ) -> Result<(), Unjudged>;

    /// The stream ended: whatever is still held goes to `out`; calls that cannot be judged
    /// end the stream with the dialect's error.
    fn end(&mut self, judge: &mut dyn JudgeCalls, out: &mut Vec<u8>) -> Result<(), Unjudged>;

    /// Bytes of the events it holds back (those of calls not yet complete).
    fn held(&self) -> usize;
}

/// How a dialect's answers spell their calls, and what it makes of answers it cannot judge.
pub struct Judged {
    /// Lower-case ASCII text every call holds, found ignoring ASCII case: an event or a body
    /// that holds none of them (and no `\u` escape) holds no call and is not parsed. A needle
    /// that is (part of) a key holds no `s` or `k`, which Go's decoder also reads as `ſ` and
    /// `K`; one that is a value (a `type`) is compared exactly by every client.
    pub needles: &'static [&'static [u8]],
    /// The keys Warden reads to find and judge a call: an answer holding a key that differs
    /// from one of them only by case cannot be judged, nor one with a key given twice in an
    /// object ([`strict_json`]).
    pub keys: &'static [&'static str],
    /// Keys whose values are free-form maps (a call's arguments, a tool's schema echoed):
    /// clients read the keys beneath them exactly, so only a key given twice counts there.
    pub free: &'static [&'static str],
    /// Judges the calls of a whole body; whether it changed the JSON, or why its calls cannot
    /// be judged.
    pub judge_body: fn(&mut Value, &mut dyn JudgeCalls) -> Result<bool, Unjudged>,
    /// The error body that replaces an answer that cannot be judged.
    pub unjudged_body: fn(Unjudged) -> Value,
    /// A stream ends with that error as a named event (`event: error`, as Anthropic streams
    /// it), else as a `data:` event.
    pub named_error: bool,
}

impl Judged {
    /// Whether `text` may hold a call: one of [`needles`](Self::needles) ignoring case, or a
    /// `\u` escape, which could spell one otherwise (`"tool\u005fcalls"` is `"tool_calls"`
    /// to a JSON parser). The cheap test that lets most events (text deltas) and most whole
    /// bodies (answers without calls) pass without being parsed.
    pub fn may_mention(&self, text: &[u8]) -> bool {
        self.needles
            .iter()
            .any(|needle| mentions_ignoring_case(text, needle))
            || mentions(text, b"\\u")
    }

    /// The JSON of a raw event's data: `Ok(None)` when it has none or it is not JSON (`[DONE]`,
    /// a comment) and [may not mention](Self::may_mention) a call; an error when it is JSON a
    /// client may read otherwise than Warden, or when it may mention a call but cannot be
    /// read exactly (no data, a lone surrogate, a number out of range, nesting too deep,
    /// text that is not UTF-8): what a client makes of it is unknown, so it is not delivered.
    pub fn event_json(&self, event: &[u8]) -> Result<Option<Value>, Unjudged> {
        let data = event_data(event);
        if data.as_deref() == Some(&b"[DONE]"[..]) {
            return Ok(None);
        }
        let unknown = || {
            if self.may_mention(event) {
                Err(Unjudged::Unreadable)
            } else {
                Ok(None)
            }
        };
        let Some(data) = data else {
            return unknown();
        };
        match strict_json::parse(&data, self.keys, self.free) {
            Ok(value) => Ok(Some(value)),
            // A key given twice, or one that differs from a key Warden reads only by case.
            Err(e) if e.classify() == Category::Data => Err(Unjudged::Unreadable),
            Err(_) => unknown(),
        }
    }

    /// The event a stream ends with when its calls cannot be judged.
    fn error_event(&self, why: Unjudged) -> Vec<u8> {
        let body = (self.unjudged_body)(why);
        let mut out = Vec::new();
        if self.named_error {
            out.extend_from_slice(b"event: error\n");
        }
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(body.to_string().as_bytes());
        out.extend_from_slice(b"\n\n");
        out
    }
}

/// A [`ProposalRewriter`] over an event stream: framed into whole events for `R`. An event
/// with no data that does not [go ahead of held events](goes_ahead_of_held) (an `id:`,
/// `retry:` or `event:` block) waits while `R` holds events, and goes on once it holds none,
/// after what released them.
pub struct Events<R> {
    framer: EventFramer,
    inner: R,
    judged: &'static Judged,
    /// Events with no data that came while `R` held events, in order, raw.
    waiting: Vec<u8>,
    /// An event could not be judged: the stream ended with an error, nothing more is sent.
    failed: Option<Unjudged>,
    /// What the checkpoints come back to.
    saved: Option<Box<Redo<R>>>,
    /// Bytes copied to keep checkpoints: states copied and input logged.
    copied: u64,
}

/// What a checkpoint comes back to without copying the state each time: a copy of the state
/// at an earlier checkpoint (its `base`, the judge then at `mark`), and the input pushed since,
/// read again on a rewind up to where the last checkpoint was (`at`). The copy is made again
/// only once the log outgrows the state (or [`REBASE_MIN`]), so that what is copied stays in
/// proportion to what is read, however slowly the upstream trickles a large event or call.
struct Redo<R> {
    framer: EventFramer,
    inner: R,
    waiting: Vec<u8>,
    failed: Option<Unjudged>,
    mark: usize,
    log: Vec<u8>,
    at: usize,
}

/// Input logged past which a checkpoint copies the state again, whatever its size.
const REBASE_MIN: usize = 64 * 1024;

impl<R: EventRewriter> Events<R> {
    /// Frames a stream for `inner`, in the dialect `judged` describes.
    pub fn new(inner: R, judged: &'static Judged) -> Self {
        Events {
            framer: EventFramer::default(),
            inner,
            judged,
            waiting: Vec::new(),
            failed: None,
            saved: None,
            copied: 0,
        }
    }

    /// Bytes copied so far to keep checkpoints.
    pub fn copied(&self) -> u64 {
        self.copied
    }

    /// Gives `event` to the dialect, or keeps it waiting behind the events the dialect holds;
    /// one that cannot be judged ends the stream, as does an event larger than
    /// [`MAX_WHOLE_BODY`] or events held past [`MAX_HELD`].
    fn event(&mut self, event: Vec<u8>, judge: &mut dyn JudgeCalls, out: &mut Vec<u8>) {
        if self.failed.is_some() {
            return;
        }
        let judged = if event.len() > MAX_WHOLE_BODY {
            Err(Unjudged::StreamTooLarge)
        } else if self.keeps_place(&event) {
            // Read as the dialect reads an event with no data: one that may mention a call
            // cannot be judged.
            self.judged
                .event_json(&event)
                .map(|_| self.waiting.extend_from_slice(&event))
        } else {
            self.inner.event(event, judge, out)
        };
        let judged = judged.and_then(|()| {
            match self.inner.held() + self.waiting.len() > MAX_HELD || judge.exhausted() {
                true => Err(Unjudged::StreamTooLarge),
                false => Ok(()),
            }
        });
        match judged {
            Err(why) => self.fail(why, out),
            Ok(()) if self.inner.held() == 0 => out.append(&mut self.waiting),
            Ok(()) => {}
        }
    }

    /// Whether `event` waits behind the events the dialect holds: it has no data, it is no
    /// keep-alive, and the dialect holds events (which came before it).
    fn keeps_place(&self, event: &[u8]) -> bool {
        self.inner.held() > 0 && event_data(event).is_none() && !goes_ahead_of_held(event)
    }

    /// Ends the stream with the dialect's error for `why`; nothing more is read or held.
    fn fail(&mut self, why: Unjudged, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.judged.error_event(why));
        self.failed = Some(why);
        self.waiting = Vec::new();
        self.framer.rest();
    }
}

impl<R: EventRewriter + Clone> Events<R> {
    /// [`ProposalRewriter::push`] without keeping `chunk` for a rewind.
    fn read(&mut self, chunk: &[u8], judge: &mut dyn JudgeCalls) -> Bytes {
        if self.failed.is_some() {
            return Bytes::new();
        }
        let mut out = Vec::with_capacity(chunk.len());
        let mut events = Vec::new();
        self.framer.push(chunk, |e| events.push(e.to_vec()));
        for event in events {
            self.event(event, judge, &mut out);
        }
        // An event that never ends (a line of a gigabyte, lines without the blank one) is
        // not held past what one event may be.
        if self.failed.is_none() && self.framer.held() > MAX_WHOLE_BODY {
            self.fail(Unjudged::StreamTooLarge, &mut out);
        }
        Bytes::from(out)
    }
}

impl<R: EventRewriter + Clone> ProposalRewriter for Events<R> {
    fn push(&mut self, chunk: &[u8], judge: &mut dyn JudgeCalls) -> Bytes {
        if self.failed.is_none()
            && let Some(redo) = self.saved.as_mut()
        {
            redo.log.extend_from_slice(chunk);
            self.copied += chunk.len() as u64;
        }
        self.read(chunk, judge)
    }

    fn finish(&mut self, judge: &mut dyn JudgeCalls) -> Bytes {
        let mut out = Vec::new();
        let rest = self.framer.rest();
        if !rest.is_empty() {
            self.event(rest, judge, &mut out);
        }
        if self.failed.is_none() {
            let ended = self
                .inner
                .end(judge, &mut out)
                .and_then(|()| match judge.exhausted() {
                    true => Err(Unjudged::StreamTooLarge),
                    false => Ok(()),
                });
            match ended {
                Err(why) => {
                    out.extend_from_slice(&self.judged.error_event(why));
                    self.failed = Some(why);
                    self.waiting = Vec::new();
                }
                Ok(()) => out.append(&mut self.waiting),
            }
        }
        Bytes::from(out)
    }

    fn checkpoint(&mut self, mark: usize) {
        // The framer holds at most a partial event, the rewriter the parts of the calls it
        // holds and the events waiting behind them: bounded (`MAX_WHOLE_BODY`, `MAX_HELD`),
        // and copied only when the input logged since the last copy outgrew them.
        let state = self.framer.held() + self.inner.held() + self.waiting.len();
        if let Some(redo) = self.saved.as_mut()
            && redo.log.len() <= state.max(REBASE_MIN)
        {
            redo.at = redo.log.len();
            return;
        }
        self.copied += state as u64;
        self.saved = Some(Box::new(Redo {
            framer: self.framer.clone(),
            inner: self.inner.clone(),
            waiting: self.waiting.clone(),
            failed: self.failed,
            mark,
            log: Vec::new(),
            at: 0,
        }));
    }

    fn rewind(&mut self, judge: &mut dyn JudgeCalls) {
        let Some(redo) = self.saved.take() else {
            return;
        };
        let Redo {
            framer,
            inner,
            waiting,
            failed,
            mark,
            log,
            at,
        } = *redo;
        (self.framer, self.inner, self.waiting, self.failed) = (framer, inner, waiting, failed);
        // What came between the copy and the last checkpoint is read again, as it was then
        // (what it gave was sent then), the judge replaying its verdicts; the next
        // checkpoint copies the state again.
        judge.rewind(mark);
        if let Some(before) = log.get(..at).filter(|b| !b.is_empty()) {
            let _ = self.read(before, judge);
        }
    }

    fn unjudged(&self) -> Option<Unjudged> {
        self.failed
    }
}

/// A dialect's rewriter: `stream` for an event stream, else the body judged whole as
/// `judged` says.
pub fn rewriter<R: EventRewriter + Clone + 'static>(
    event_stream: bool,
    stream: impl FnOnce() -> R,
    judged: &'static Judged,
) -> Box<dyn ProposalRewriter> {
    if event_stream {
        Box::new(Events::new(stream(), judged))
    } else {
        Box::new(WholeBody::new(judged))
    }
}

/// Largest non-streamed body judged; a larger one is not delivered (it cannot be judged).
pub const MAX_WHOLE_BODY: usize = 32 * 1024 * 1024;

/// What a response larger than [`MAX_WHOLE_BODY`] is replaced by, in a dialect's error shape.
pub const TOO_LARGE: &str = "Warden could not judge the tool calls of a response larger than 32 MiB, or proposing more than 1024 calls; it was not delivered";

/// Most a stream holds back of the calls it judges (their events, until each call's
/// arguments are complete): twice a whole body, as a call's arguments stream in deltas that
/// each repeat the event's envelope.
pub const MAX_HELD: usize = 2 * MAX_WHOLE_BODY;

/// Most calls (and choices, or items, that hold calls) a stream holds at once, and most calls
/// of one response judged (`propose/judge.rs`): far more than any model proposes at once.
pub const MAX_CALLS: usize = 256;

/// Most calls of one response given a verdict: those past [`MAX_CALLS`] are refused unjudged,
/// and a response that proposes more than this many ends as too large to judge
/// (`response_too_large`), so that what the judge keeps of them stays bounded.
pub const MAX_VERDICTS: usize = 4 * MAX_CALLS;

/// Most choices, content blocks or output items one stream may give (each remembered, so that
/// a second one at the same index is caught): past it, the stream ends as too large to judge.
pub const MAX_ITEMS: usize = 4096;

/// What a stream is ended with when one of its events is larger than [`MAX_WHOLE_BODY`], the
/// events of the calls it holds larger than [`MAX_HELD`], or its calls held more than
/// [`MAX_CALLS`].
pub const STREAM_TOO_LARGE: &str = "Warden could not judge the tool calls of a stream larger than it holds (an event past 32 MiB, calls held past 64 MiB or more than 256 at once, more than 1024 calls, or more than 4096 items); the rest was not delivered";

/// What a response that is not JSON is replaced by: its calls cannot be judged (a byte-order
/// mark, UTF-16, a cut body; a compressed one is refused before it is read).
pub const UNREADABLE: &str =
    "Warden could not read the response as JSON to judge its tool calls; it was not delivered";

/// Why a whole body was not judged, and so not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unjudged {
    /// Larger than [`MAX_WHOLE_BODY`].
    TooLarge,
    /// A stream with an event larger than [`MAX_WHOLE_BODY`], calls held past [`MAX_HELD`],
    /// or more than [`MAX_CALLS`] held at once.
    StreamTooLarge,
    /// Not JSON.
    Unreadable,
}

impl Unjudged {
    /// The message of the error that replaces the body.
    pub fn message(self) -> &'static str {
        match self {
            Unjudged::TooLarge => TOO_LARGE,
            Unjudged::StreamTooLarge => STREAM_TOO_LARGE,
            Unjudged::Unreadable => UNREADABLE,
        }
    }

    /// The error's stable code, where the dialect's error shape has one.
    pub fn code(self) -> &'static str {
        match self {
            Unjudged::TooLarge | Unjudged::StreamTooLarge => "response_too_large",
            Unjudged::Unreadable => "response_unreadable",
        }
    }
}

/// A [`ProposalRewriter`] for a body judged whole: held until its end, then given to the
/// dialect's `judge_body` (which says whether it changed the JSON); sent unchanged when
/// nothing changed.
pub struct WholeBody {
    body: Vec<u8>,
    judged: &'static Judged,
    too_large: bool,
    /// The length and size verdict kept by the last checkpoint (the body only grows).
    saved: (usize, bool),
}

impl WholeBody {
    /// A body judged as `judged` says, replaced by its `unjudged_body(why)` past
    /// [`MAX_WHOLE_BODY`], when it is not JSON, or when it is ambiguous JSON.
    pub fn new(judged: &'static Judged) -> Self {
        WholeBody {
            body: Vec::new(),
            judged,
            too_large: false,
            saved: (0, false),
        }
    }
}

impl ProposalRewriter for WholeBody {
    fn push(&mut self, chunk: &[u8], _judge: &mut dyn JudgeCalls) -> Bytes {
        if self.body.len() + chunk.len() > MAX_WHOLE_BODY {
            self.too_large = true;
            self.body = Vec::new();
        } else if !self.too_large {
            self.body.extend_from_slice(chunk);
        }
        Bytes::new()
    }

    fn finish(&mut self, judge: &mut dyn JudgeCalls) -> Bytes {
        // The body stays until the next push or the end of the rewriter: a rewind gives it
        // again.
        let unjudged = |why| Bytes::from((self.judged.unjudged_body)(why).to_string());
        if self.too_large {
            return unjudged(Unjudged::TooLarge);
        }
        // Text that opens a JSON object and cannot mention a call holds none: sent unparsed.
        // Anything else is parsed, and what is not JSON (which an agent's client might still
        // read, decompressed or leniently), or JSON a client may read otherwise, cannot be
        // judged and is not delivered.
        if !self.judged.may_mention(&self.body) && opens_json_object(&self.body) {
            return Bytes::copy_from_slice(&self.body);
        }
        let Ok(mut value) = strict_json::parse(&self.body, self.judged.keys, self.judged.free)
        else {
            return unjudged(Unjudged::Unreadable);
        };
        match (self.judged.judge_body)(&mut value, judge) {
            _ if judge.exhausted() => unjudged(Unjudged::TooLarge),
            Ok(true) => Bytes::from(value.to_string()),
            Ok(false) => Bytes::copy_from_slice(&self.body),
            Err(why) => unjudged(why),
        }
    }

    fn checkpoint(&mut self, _mark: usize) {
        self.saved = (self.body.len(), self.too_large);
    }

    fn rewind(&mut self, _judge: &mut dyn JudgeCalls) {
        let (len, too_large) = self.saved;
        self.too_large = too_large;
        if !too_large {
            self.body.truncate(len);
        }
    }
}

/// Whether `body` is UTF-8 text without a NUL byte whose first non-blank byte opens a JSON
/// object. A NUL is valid UTF-8 but never JSON outside a string, where it is escaped: text
/// with one is UTF-16 or UTF-32 (`{\0"\0`), which clients detect and decode (Python's
/// `json.loads` of bytes), so it is parsed strictly, and refused, like any other.
fn opens_json_object(body: &[u8]) -> bool {
    body.trim_ascii_start().first() == Some(&b'{')
        && memchr::memchr(0, body).is_none()
        && std::str::from_utf8(body).is_ok()
}

/// Writes `value` as a named event (`event: <its type>`), as Anthropic and the Responses API
/// stream them.
pub fn write_named_event(out: &mut Vec<u8>, value: &serde_json::Value) {
    let kind = value
        .get("type")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("");
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(value.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
}

/// `a` then `b`.
pub fn join(a: Bytes, b: Bytes) -> Bytes {
    if b.is_empty() {
        return a;
    }
    if a.is_empty() {
        return b;
    }
    let mut both = bytes::BytesMut::with_capacity(a.len() + b.len());
    both.extend_from_slice(&a);
    both.extend_from_slice(&b);
    both.freeze()
}

/// Whether `event` holds `needle` anywhere.
pub fn mentions(event: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(event, needle).is_some()
}

/// Whether `text` holds `needle` (lower-case ASCII) in any ASCII case.
fn mentions_ignoring_case(text: &[u8], needle: &[u8]) -> bool {
    let Some((first, rest)) = needle.split_first() else {
        return true;
    };
    memchr::memchr2_iter(first.to_ascii_lowercase(), first.to_ascii_uppercase(), text).any(|at| {
        text.get(at + 1..at + needle.len())
            .is_some_and(|after| after.eq_ignore_ascii_case(rest))
    })
}

/// Whether `event` is an event of type `kind` (its data's `type`): found by a byte search,
/// confirmed by parsing only the events that hold the bytes (text that quotes `kind` does
/// not count).
pub fn is_event(event: &[u8], kind: &str) -> bool {
    mentions(event, kind.as_bytes())
        && event_data(event)
            .and_then(|d| serde_json::from_slice::<Value>(&d).ok())
            .is_some_and(|v| v.get("type").and_then(Value::as_str) == Some(kind))
}

/// The JSON of a raw event's data, if it has any (for events already read strictly).
pub fn event_json(event: &[u8]) -> Option<Value> {
    event_data(event).and_then(|d| serde_json::from_slice(&d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_calls(_: &mut Value, _: &mut dyn JudgeCalls) -> Result<bool, Unjudged> {
        Ok(false)
    }

    static TEST: Judged = Judged {
        needles: &[b"tool_call"],
        keys: &["tool_calls"],
        free: &[],
        judge_body: no_calls,
        unjudged_body: |_| Value::Null,
        named_error: false,
    };

    /// The events `stream` is framed into, fed one byte at a time and all at once (the same).
    fn framed(stream: &[u8]) -> Vec<Vec<u8>> {
        let mut all = Vec::new();
        let mut framer = EventFramer::default();
        framer.push(stream, |e| all.push(e.to_vec()));
        let rest = framer.rest();
        if !rest.is_empty() {
            all.push(rest);
        }
        let mut bytewise = Vec::new();
        let mut framer = EventFramer::default();
        for byte in stream {
            framer.push(std::slice::from_ref(byte), |e| bytewise.push(e.to_vec()));
        }
        let rest = framer.rest();
        if !rest.is_empty() {
            bytewise.push(rest);
        }
        assert_eq!(all, bytewise, "{}", String::from_utf8_lossy(stream));
        all
    }

    #[test]
    fn events_end_at_an_empty_line_whatever_ends_the_lines() {
        let cases: &[(&str, &[&str])] = &[
            ("data: a\n\ndata: b\n\n", &["data: a\n\n", "data: b\n\n"]),
            (
                "data: a\r\n\r\ndata: b\r\r",
                &["data: a\r\n\r\n", "data: b\r\r"],
            ),
            (
                "data: a\n\r\ndata: b\r\n\rx",
                &["data: a\n\r\n", "data: b\r\n\r", "x"],
            ),
            ("data: a\r\rdata: b\n", &["data: a\r\r", "data: b\n"]),
            // `\r` then `\n` is one line end, not two.
            ("data: a\r\ndata: b\r\n", &["data: a\r\ndata: b\r\n"]),
        ];
        for (stream, events) in cases {
            let expected: Vec<Vec<u8>> = events.iter().map(|e| e.as_bytes().to_vec()).collect();
            assert_eq!(framed(stream.as_bytes()), expected, "{stream:?}");
        }
    }

    #[test]
    fn a_data_line_after_a_lone_carriage_return_is_data() {
        // Clients end a line at a lone `\r`: the comment does not hide the data.
        let event = b": c\rdata: {\"tool_calls\":[]}\n\n";
        assert_eq!(framed(event).len(), 1);
        assert_eq!(
            event_data(event).as_deref(),
            Some(&b"{\"tool_calls\":[]}"[..])
        );
        assert_eq!(
            event_data(b"data: a\rdata\r\ndata:b\n").as_deref(),
            Some(&b"a\n\nb"[..])
        );
        assert_eq!(
            event_data(b"\xEF\xBB\xBFdata: x\n\n").as_deref(),
            Some(&b"x"[..])
        );
        assert_eq!(event_data(b": comment\n\n"), None);
    }

    struct AllowAll;

    impl JudgeCalls for AllowAll {
        fn judge(&mut self, _: &ProposedCall<'_>) -> Verdict {
            Verdict::Allow
        }
    }

    /// A stream rewriter that holds every event it is given (as one holds a call's parts),
    /// counting the bytes each copy of it copies.
    struct Keeping {
        events: Vec<Vec<u8>>,
        bytes: usize,
        copied: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Clone for Keeping {
        fn clone(&self) -> Self {
            self.copied
                .fetch_add(self.bytes, std::sync::atomic::Ordering::Relaxed);
            Keeping {
                events: self.events.clone(),
                bytes: self.bytes,
                copied: std::sync::Arc::clone(&self.copied),
            }
        }
    }

    impl EventRewriter for Keeping {
        fn event(
            &mut self,
            event: Vec<u8>,
            _: &mut dyn JudgeCalls,
            _: &mut Vec<u8>,
        ) -> Result<(), Unjudged> {
            self.bytes += event.len();
            self.events.push(event);
            Ok(())
        }

        fn end(&mut self, _: &mut dyn JudgeCalls, _: &mut Vec<u8>) -> Result<(), Unjudged> {
            Ok(())
        }

        fn held(&self) -> usize {
            self.bytes
        }
    }

    fn keeping() -> (
        Events<Keeping>,
        std::sync::Arc<std::sync::atomic::AtomicUsize>,
    ) {
        let copied = std::sync::Arc::default();
        let inner = Keeping {
            events: Vec::new(),
            bytes: 0,
            copied: std::sync::Arc::clone(&copied),
        };
        (Events::new(inner, &TEST), copied)
    }

    /// A trickling upstream: a large call held, then a byte at a time, each push after a
    /// checkpoint (a judge that may hold a call). What checkpoints copy stays in proportion to
    /// what is read, not to what is held times the pushes.
    #[test]
    fn checkpoints_copy_in_proportion_to_what_is_read_however_slowly_it_comes() {
        let (mut events, copied) = keeping();
        let large = format!("data: {}\n\n", "x".repeat(1 << 20));
        events.checkpoint(0);
        events.push(large.as_bytes(), &mut AllowAll);
        // Then a partial event, and a long trickle of small events and partial ones.
        let trickle = ": k\n\ndata: y".repeat(400);
        let mut read = large.len();
        for byte in trickle.as_bytes().chunks(1) {
            events.checkpoint(0);
            events.push(byte, &mut AllowAll);
            read += 1;
        }
        let copied = copied.load(std::sync::atomic::Ordering::Relaxed) as u64 + events.copied();
        assert!(
            copied <= 4 * read as u64,
            "{copied} bytes copied for {read} read"
        );
    }

    /// A rewind comes back to the last checkpoint, what was read between the kept copy and it
    /// read again, the judge replaying from the copy's mark.
    #[test]
    fn a_rewind_comes_back_to_the_last_checkpoint_through_the_input_logged() {
        struct Marks(Vec<usize>);
        impl JudgeCalls for Marks {
            fn judge(&mut self, _: &ProposedCall<'_>) -> Verdict {
                Verdict::Allow
            }
            fn rewind(&mut self, mark: usize) {
                self.0.push(mark);
            }
        }
        let (mut events, _) = keeping();
        let mut judge = Marks(Vec::new());
        events.checkpoint(3);
        events.push(b"data: a\n\nda", &mut judge);
        events.checkpoint(4);
        events.push(b"ta: b\n\n", &mut judge);
        events.checkpoint(5);
        events.push(b"data: c\n\ndata: d", &mut judge);
        events.rewind(&mut judge);
        assert_eq!(judge.0, [3], "replayed from the copy's mark");
        assert_eq!(
            events.inner.events,
            [b"data: a\n\n".to_vec(), b"data: b\n\n".to_vec()],
            "the state of the last checkpoint"
        );
        assert_eq!(events.framer.held(), 0);
        // Given the same input again, it reads as it did.
        events.checkpoint(5);
        events.push(b"data: c\n\ndata: d", &mut judge);
        events.push(b"\n\n", &mut judge);
        assert_eq!(events.inner.events.len(), 4);
    }

    #[test]
    fn a_whole_body_in_utf16_or_utf32_is_not_delivered_unparsed() {
        let json = r#"{"tool_calls":[{"name":"exec"}]}"#;
        let utf16le: Vec<u8> = json.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let utf16be: Vec<u8> = json.encode_utf16().flat_map(u16::to_be_bytes).collect();
        let utf32le: Vec<u8> = json
            .chars()
            .flat_map(|c| (c as u32).to_le_bytes())
            .collect();
        for body in [utf16le, utf16be, utf32le] {
            let mut whole = WholeBody::new(&TEST);
            assert!(whole.push(&body, &mut AllowAll).is_empty());
            let out = whole.finish(&mut AllowAll);
            assert_eq!(out, Bytes::from(Value::Null.to_string()), "{body:?}");
        }
        // UTF-8 without a call still passes byte for byte, unparsed.
        let mut whole = WholeBody::new(&TEST);
        whole.push(b"{\"text\":\"hi\"}", &mut AllowAll);
        assert_eq!(
            whole.finish(&mut AllowAll),
            Bytes::from_static(b"{\"text\":\"hi\"}")
        );
    }

    #[test]
    fn an_event_that_may_mention_a_call_and_cannot_be_read_is_unreadable() {
        for event in [
            &b"data: {\"tool_calls\":\"\\ud800\"}\n\n"[..],
            b"data: {\"tool_calls\":1e400}\n\n",
            b"data: {\"tool_calls\":NaN}\n\n",
            b"data: {\"tool_calls\":\"\xff\"}\n\n",
            b"data: {\"tool_calls\":[\n\n",
            b"event: tool_calls\n\n",
            b": tool_call\n\n",
        ] {
            assert_eq!(
                TEST.event_json(event),
                Err(Unjudged::Unreadable),
                "{}",
                String::from_utf8_lossy(event)
            );
        }
        let deep = format!(
            "data: {{\"tool_calls\":{}1{}}}\n\n",
            "[".repeat(200),
            "]".repeat(200)
        );
        assert_eq!(TEST.event_json(deep.as_bytes()), Err(Unjudged::Unreadable));
        // What cannot hold a call, and `[DONE]`, pass.
        for event in [
            &b"data: [DONE]\n\n"[..],
            b": keep-alive\n\n",
            b"data: not json\n\n",
            b"event: ping\n\n",
        ] {
            assert_eq!(TEST.event_json(event), Ok(None));
        }
    }
}
