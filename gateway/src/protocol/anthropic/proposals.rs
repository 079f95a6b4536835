//! Messages responses with their proposed tool calls judged: `tool_use` blocks of a body,
//! and of a stream (`content_block_start` … `input_json_delta` … `content_block_stop`). Text
//! blocks, and the tools Anthropic runs itself (`server_tool_use`, `mcp_tool_use` and their
//! result blocks: no proposals), pass at once; a `tool_use` block is held until its stop (its
//! input complete), then released byte for byte when allowed, or dropped (later blocks
//! renumbered). Refused calls are named in a text block added before `message_delta`, whose
//! `stop_reason` becomes `end_turn` when no call is left.

use serde_json::{Value, json};

use crate::protocol::proposed::{
    self, EventRewriter, JudgeCalls, Judged, ProposalRewriter, ProposedCall, Unjudged, Verdict,
    event_json as parsed, is_event, write_named_event as write_event,
};

/// How Messages answers carry calls: a block whose `type` is `tool_use` (a value, which
/// clients compare exactly).
static CALLS: Judged = Judged {
    needles: &[b"\"tool_use\""],
    keys: &[
        "content",
        "content_block",
        "type",
        "id",
        "name",
        "input",
        "index",
        "delta",
        "partial_json",
        "stop_reason",
    ],
    free: &["input"],
    judge_body: judge_whole,
    unjudged_body: unjudged,
    named_error: true,
};

/// The rewriter for a Messages response (`event_stream`: streamed).
pub fn rewriter(event_stream: bool) -> Box<dyn ProposalRewriter> {
    proposed::rewriter(event_stream, Stream::default, &CALLS)
}

/// The error that replaces a body that cannot be judged (too large, or not JSON).
fn unjudged(why: Unjudged) -> Value {
    json!({"type": "error", "error": {"type": "api_error", "message": why.message()}})
}

/// A `tool_use` block being held.
#[derive(Debug, Default, Clone)]
struct Block {
    index: u64,
    id: String,
    name: String,
    input: String,
    events: Vec<Vec<u8>>,
    /// The events' bytes.
    bytes: usize,
}

#[derive(Debug, Default, Clone)]
struct Stream {
    held: Option<Block>,
    /// Blocks removed so far: later blocks' indices go down by this much.
    removed: u64,
    /// Blocks started so far (`content_block_start` events), as the upstream numbers them.
    started: u64,
    /// The indices of the blocks started so far.
    indices: Vec<u64>,
    /// `tool_use` blocks that stayed.
    kept: usize,
    /// What the agent is told about refused calls, not yet sent.
    refusals: Vec<String>,
}

impl EventRewriter for Stream {
    fn held(&self) -> usize {
        self.held.as_ref().map_or(0, |block| block.bytes)
    }

    fn end(&mut self, judge: &mut dyn JudgeCalls, out: &mut Vec<u8>) -> Result<(), Unjudged> {
        if let Some(block) = self.held.take() {
            self.release(block, judge, out);
        }
        self.say_refusals(out);
        Ok(())
    }

    fn event(
        &mut self,
        event: Vec<u8>,
        judge: &mut dyn JudgeCalls,
        out: &mut Vec<u8>,
    ) -> Result<(), Unjudged> {
        // Nothing held, removed or to say, and no call in it: sent as it is, unparsed.
        if self.held.is_none()
            && self.removed == 0
            && self.refusals.is_empty()
            && !CALLS.may_mention(&event)
        {
            if is_event(&event, "content_block_start") {
                let index = parsed(&event).and_then(|v| v.get("index").and_then(Value::as_u64));
                self.start(index)?;
            }
            out.extend_from_slice(&event);
            return Ok(());
        }
        let Some(value) = CALLS.event_json(&event)? else {
            out.extend_from_slice(&event);
            return Ok(());
        };
        let kind = value.get("type").and_then(Value::as_str).unwrap_or("");
        let index = value.get("index").and_then(Value::as_u64);
        if kind == "content_block_start" {
            self.start(index)?;
        }
        if kind == "message_start" && !no_content(&value) {
            return Err(Unjudged::Unreadable);
        }
        if let Some(block) = self.held.as_mut()
            && index == Some(block.index)
        {
            block.bytes += event.len();
            match kind {
                "content_block_delta" => {
                    if let Some(part) = value.pointer("/delta/partial_json").and_then(Value::as_str)
                    {
                        block.input.push_str(part);
                    }
                    block.events.push(event);
                }
                "content_block_stop" => {
                    block.events.push(event);
                    if let Some(block) = self.held.take() {
                        self.release(block, judge, out);
                    }
                }
                _ => block.events.push(event),
            }
            return Ok(());
        }
        if kind == "content_block_start"
            && value.pointer("/content_block/type").and_then(Value::as_str) == Some("tool_use")
        {
            let input = value
                .pointer("/content_block/input")
                .filter(|i| i.as_object().is_some_and(|o| !o.is_empty()))
                .map(Value::to_string)
                .unwrap_or_default();
            self.held = Some(Block {
                index: index.unwrap_or(0),
                id: str_at(&value, "/content_block/id"),
                name: str_at(&value, "/content_block/name"),
                input,
                bytes: event.len(),
                events: vec![event],
            });
            return Ok(());
        }
        if kind == "message_delta" {
            self.say_refusals(out);
            if self.kept == 0
                && value.pointer("/delta/stop_reason").and_then(Value::as_str) == Some("tool_use")
                && self.removed > 0
            {
                let mut value = value;
                value["delta"]["stop_reason"] = Value::from("end_turn");
                write_event(out, &value);
                return Ok(());
            }
        }
        self.pass(event, &value, index, out);
        Ok(())
    }
}

impl Stream {
    /// Counts a block started at `index` (none: 0, as a client reads it). A block started
    /// while a `tool_use` block is held, or at an index started before, cannot be read: the
    /// SDKs and OpenClaw add a block for each start (deltas then go to the one last started
    /// at that index), so a second start would give the agent a call Warden never judged.
    fn start(&mut self, index: Option<u64>) -> Result<(), Unjudged> {
        let index = index.unwrap_or(0);
        if self.held.is_some() || self.indices.contains(&index) {
            return Err(Unjudged::Unreadable);
        }
        if self.indices.len() >= proposed::MAX_ITEMS {
            return Err(Unjudged::StreamTooLarge);
        }
        self.indices.push(index);
        self.started += 1;
        Ok(())
    }

    /// Sends `event` (its block index lowered past removed blocks).
    fn pass(&self, event: Vec<u8>, value: &Value, index: Option<u64>, out: &mut Vec<u8>) {
        match index {
            Some(i) if self.removed > 0 => {
                let mut value = value.clone();
                value["index"] = Value::from(i - self.removed.min(i));
                write_event(out, &value);
            }
            _ => out.extend_from_slice(&event),
        }
    }

    /// Judges a complete `tool_use` block: sent on, or dropped and its refusal kept.
    fn release(&mut self, block: Block, judge: &mut dyn JudgeCalls, out: &mut Vec<u8>) {
        let input = if block.input.is_empty() {
            "{}"
        } else {
            &block.input
        };
        let verdict = judge.judge(&ProposedCall {
            id: &block.id,
            name: &block.name,
            arguments: input,
        });
        match verdict {
            Verdict::Allow => {
                self.kept += 1;
                for event in block.events {
                    match parsed(&event) {
                        Some(value) => self.pass(event, &value, Some(block.index), out),
                        None => out.extend_from_slice(&event),
                    }
                }
            }
            Verdict::Deny { text } => {
                self.removed += 1;
                self.refusals.push(text);
            }
        }
    }

    /// A text block naming the refused calls, if any.
    fn say_refusals(&mut self, out: &mut Vec<u8>) {
        if self.refusals.is_empty() {
            return;
        }
        let text = std::mem::take(&mut self.refusals).join("\n");
        // After every block the agent got: those started, less those removed.
        let index = self.started - self.removed.min(self.started);
        self.started += 1;
        write_event(
            out,
            &json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}),
        );
        write_event(
            out,
            &json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}}),
        );
        write_event(out, &json!({"type": "content_block_stop", "index": index}));
    }
}

/// Whether a `message_start` gives its message with no content, as Anthropic does (blocks
/// come in `content_block_start` events): the SDKs keep content given there, which would be
/// delivered unjudged.
fn no_content(message_start: &Value) -> bool {
    match message_start.pointer("/message/content") {
        None | Some(Value::Null) => true,
        Some(Value::Array(blocks)) => blocks.is_empty(),
        Some(_) => false,
    }
}

fn str_at(value: &Value, pointer: &str) -> String {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned()
}

/// Judges every `tool_use` block of a complete Messages response; whether it changed.
fn judge_whole(response: &mut Value, judge: &mut dyn JudgeCalls) -> Result<bool, Unjudged> {
    let Some(content) = response.get_mut("content").and_then(Value::as_array_mut) else {
        return Ok(false);
    };
    let mut texts = Vec::new();
    let mut kept = 0;
    content.retain(|block| {
        if block.get("type").and_then(Value::as_str) != Some("tool_use") {
            return true;
        }
        let input = block
            .get("input")
            .map_or_else(|| "{}".to_owned(), Value::to_string);
        let verdict = judge.judge(&ProposedCall {
            id: block.get("id").and_then(Value::as_str).unwrap_or(""),
            name: block.get("name").and_then(Value::as_str).unwrap_or(""),
            arguments: &input,
        });
        match verdict {
            Verdict::Allow => {
                kept += 1;
                true
            }
            Verdict::Deny { text } => {
                texts.push(text);
                false
            }
        }
    });
    if texts.is_empty() {
        return Ok(false);
    }
    content.push(json!({"type": "text", "text": texts.join("\n")}));
    if kept == 0 && response.get("stop_reason").and_then(Value::as_str) == Some("tool_use") {
        response["stop_reason"] = Value::from("end_turn");
    }
    Ok(true)
}

#[cfg(test)]
mod tests;
