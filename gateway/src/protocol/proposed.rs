//! Tool calls a model proposes in a response, as every dialect hands them to the judge, and
//! the seam a dialect's response rewriter implements: bytes in, bytes out, each call judged
//! once its arguments are complete.

use bytes::Bytes;

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
}

/// A response body rewritten as its proposed calls are judged: text flows through at once,
/// a call's parts are held until its arguments are complete, then released unchanged or
/// replaced.
pub trait ProposalRewriter: Send {
    /// Takes the next chunk of the upstream body: the bytes to send the agent now.
    fn push(&mut self, chunk: &[u8], judge: &mut dyn JudgeCalls) -> Bytes;

    /// The upstream body ended: whatever is still held, judged.
    fn finish(&mut self, judge: &mut dyn JudgeCalls) -> Bytes;
}

/// Splits a server-sent event stream into whole events (each with its blank-line end), as
/// the bytes arrive; partial events wait for the rest.
#[derive(Debug, Default)]
pub struct EventFramer {
    pending: Vec<u8>,
}

impl EventFramer {
    /// Appends `chunk`; calls `each` with every event it completes (raw bytes, terminator
    /// included).
    pub fn push(&mut self, chunk: &[u8], mut each: impl FnMut(&[u8])) {
        self.pending.extend_from_slice(chunk);
        let mut start = 0;
        let mut i = 0;
        let bytes = &self.pending;
        while i < bytes.len() {
            // An event ends at an empty line: "\n\n", "\r\n\r\n", "\r\r".
            let end = match &bytes[i..] {
                [b'\r', b'\n', b'\r', b'\n', ..] => Some(i + 4),
                [b'\n', b'\n', ..] | [b'\r', b'\r', ..] => Some(i + 2),
                _ => None,
            };
            match end {
                Some(e) => {
                    each(&bytes[start..e]);
                    start = e;
                    i = e;
                }
                None => i += 1,
            }
        }
        self.pending.drain(..start);
    }

    /// What is left when the stream ends (an event without its blank line).
    pub fn rest(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.pending)
    }
}

/// The `data:` of one raw event, lines joined with `\n` (`None` when it has none).
pub fn event_data(event: &[u8]) -> Option<Vec<u8>> {
    let mut data: Option<Vec<u8>> = None;
    for line in event.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(value) = line.strip_prefix(b"data:") {
            let value = value.strip_prefix(b" ").unwrap_or(value);
            let d = data.get_or_insert_with(Vec::new);
            if !d.is_empty() {
                d.push(b'\n');
            }
            d.extend_from_slice(value);
        }
    }
    data
}
