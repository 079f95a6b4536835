//! Responses API answers with their proposed calls judged: `function_call` items of
//! `output`, in a body and in a stream. In a stream a `function_call` item's events
//! (`output_item.added`, `function_call_arguments.delta`/`.done`) are held until its
//! `output_item.done` (its arguments complete), then released byte for byte when allowed, or
//! dropped. Later items' `output_index` and every later `sequence_number` are renumbered once
//! something was dropped or added. Refused calls are named in an assistant `message` item
//! added before `response.completed`, whose `output` loses the refused items and gains that
//! message.

use serde_json::{Value, json};

use crate::protocol::proposed::{
    self, EventRewriter, JudgeCalls, ProposalRewriter, ProposedCall, Unjudged, Verdict,
    event_json as parsed, may_mention, mentions, write_named_event as write_event,
};

/// The id of the message item that names refused calls.
const REFUSAL_ITEM_ID: &str = "msg_warden_refusal";

/// The rewriter for a Responses answer (`event_stream`: streamed).
pub fn rewriter(event_stream: bool) -> Box<dyn ProposalRewriter> {
    proposed::rewriter(
        event_stream,
        Stream::default,
        b"\"function_call\"",
        judge_whole,
        unjudged,
    )
}

/// The error that replaces a body that cannot be judged (too large, or not JSON).
fn unjudged(why: Unjudged) -> Value {
    json!({"error": {"message": why.message(), "type": "warden_error", "code": why.code()}})
}

/// A `function_call` item being held.
#[derive(Debug, Default, Clone)]
struct Held {
    output_index: u64,
    events: Vec<(Vec<u8>, Value)>,
}

#[derive(Debug, Default, Clone)]
struct Stream {
    held: Vec<Held>,
    /// Items dropped so far, by their original `output_index`.
    dropped: Vec<u64>,
    /// Ids of the dropped items.
    dropped_ids: Vec<String>,
    /// Events added minus events dropped: what later `sequence_number`s move by.
    shift: i64,
    /// Items added so far (`response.output_item.added`), as the upstream numbers them.
    added: u64,
    refusals: Vec<String>,
    /// The refusal message item, once sent, for `response.completed`.
    said: Option<Value>,
}

impl EventRewriter for Stream {
    fn end(&mut self, judge: &mut dyn JudgeCalls, out: &mut Vec<u8>) {
        for held in std::mem::take(&mut self.held) {
            self.release(held, None, judge, out);
        }
    }

    fn event(&mut self, event: Vec<u8>, judge: &mut dyn JudgeCalls, out: &mut Vec<u8>) {
        // Nothing held, dropped or to say, and no call in it: sent as it is, unparsed.
        if self.held.is_empty()
            && self.dropped.is_empty()
            && self.refusals.is_empty()
            && self.shift == 0
            && !may_mention(&event, b"\"function_call\"")
        {
            if mentions(&event, b"response.output_item.added") {
                self.added += 1;
            }
            out.extend_from_slice(&event);
            return;
        }
        let Some(value) = parsed(&event) else {
            out.extend_from_slice(&event);
            return;
        };
        let kind = value.get("type").and_then(Value::as_str).unwrap_or("");
        let index = value.get("output_index").and_then(Value::as_u64);
        if kind == "response.output_item.added" {
            self.added += 1;
        }
        if let Some(i) = index
            && let Some(at) = self.held.iter().position(|h| h.output_index == i)
        {
            if kind == "response.output_item.done" {
                let held = self.held.remove(at);
                self.release(held, Some((event, value)), judge, out);
            } else {
                self.held[at].events.push((event, value));
            }
            return;
        }
        if kind == "response.output_item.added"
            && value.pointer("/item/type").and_then(Value::as_str) == Some("function_call")
        {
            self.held.push(Held {
                output_index: index.unwrap_or(0),
                events: vec![(event, value)],
            });
            return;
        }
        if matches!(
            kind,
            "response.completed" | "response.incomplete" | "response.failed"
        ) {
            self.say_refusals(&value, out);
            if !self.dropped_ids.is_empty() || self.said.is_some() {
                let mut value = value;
                if let Some(output) = value
                    .pointer_mut("/response/output")
                    .and_then(Value::as_array_mut)
                {
                    let dropped = &self.dropped_ids;
                    output.retain(|item| {
                        !item
                            .get("id")
                            .and_then(Value::as_str)
                            .is_some_and(|id| dropped.iter().any(|d| d == id))
                    });
                    output.extend(self.said.clone());
                }
                self.renumbered(value, out);
                return;
            }
        }
        self.pass(event, value, out);
    }
}

impl Stream {
    /// `output_index` `i` after the items dropped before it.
    fn lowered(&self, i: u64) -> u64 {
        i - self.dropped.iter().filter(|d| **d < i).count() as u64
    }

    /// Sends an event, renumbered when anything was dropped or added before it.
    fn pass(&self, event: Vec<u8>, value: Value, out: &mut Vec<u8>) {
        if self.shift == 0 && self.dropped.is_empty() {
            out.extend_from_slice(&event);
        } else {
            self.renumbered(value, out);
        }
    }

    fn renumbered(&self, mut value: Value, out: &mut Vec<u8>) {
        if let Some(seq) = value.get("sequence_number").and_then(Value::as_i64) {
            value["sequence_number"] = Value::from(seq + self.shift);
        }
        if let Some(i) = value.get("output_index").and_then(Value::as_u64) {
            value["output_index"] = Value::from(self.lowered(i));
        }
        write_event(out, &value);
    }

    /// Judges a complete `function_call` item (`done`: its `output_item.done`).
    fn release(
        &mut self,
        held: Held,
        done: Option<(Vec<u8>, Value)>,
        judge: &mut dyn JudgeCalls,
        out: &mut Vec<u8>,
    ) {
        let item = done
            .as_ref()
            .and_then(|(_, v)| v.get("item"))
            .or_else(|| held.events.first().and_then(|(_, v)| v.get("item")))
            .cloned()
            .unwrap_or(Value::Null);
        let streamed: String = held
            .events
            .iter()
            .filter_map(|(_, v)| v.get("delta").and_then(Value::as_str))
            .collect();
        let arguments = match item.get("arguments").and_then(Value::as_str) {
            Some(a) if !a.is_empty() => a.to_owned(),
            _ => streamed,
        };
        let verdict = judge.judge(&ProposedCall {
            id: item.get("call_id").and_then(Value::as_str).unwrap_or(""),
            name: item.get("name").and_then(Value::as_str).unwrap_or(""),
            arguments: &arguments,
        });
        match verdict {
            Verdict::Allow => {
                for (event, value) in held.events.into_iter().chain(done) {
                    self.pass(event, value, out);
                }
            }
            Verdict::Deny { text } => {
                self.shift -= held.events.len() as i64 + i64::from(done.is_some());
                self.dropped.push(held.output_index);
                if let Some(id) = item.get("id").and_then(Value::as_str) {
                    self.dropped_ids.push(id.to_owned());
                }
                self.refusals.push(text);
            }
        }
    }

    /// The message item naming refused calls, as the events a message item streams with,
    /// numbered before `completed` (whose `sequence_number` they take).
    fn say_refusals(&mut self, completed: &Value, out: &mut Vec<u8>) {
        if self.refusals.is_empty() {
            return;
        }
        let text = std::mem::take(&mut self.refusals).join("\n");
        // After every item the agent got: those added, less those dropped.
        let index = self.added - (self.dropped.len() as u64).min(self.added);
        self.added += 1;
        let first = completed
            .get("sequence_number")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            + self.shift;
        let part = |text: &str| json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []});
        let item = |status: &str, content: Value| json!({"type": "message", "id": REFUSAL_ITEM_ID, "status": status, "role": "assistant", "content": content});
        let done_item = item("completed", json!([part(&text)]));
        let events = [
            json!({"type": "response.output_item.added", "output_index": index, "item": item("in_progress", json!([]))}),
            json!({"type": "response.content_part.added", "item_id": REFUSAL_ITEM_ID, "output_index": index, "content_index": 0, "part": part("")}),
            json!({"type": "response.output_text.delta", "item_id": REFUSAL_ITEM_ID, "output_index": index, "content_index": 0, "delta": text, "logprobs": []}),
            json!({"type": "response.output_text.done", "item_id": REFUSAL_ITEM_ID, "output_index": index, "content_index": 0, "text": text, "logprobs": []}),
            json!({"type": "response.content_part.done", "item_id": REFUSAL_ITEM_ID, "output_index": index, "content_index": 0, "part": part(&text)}),
            json!({"type": "response.output_item.done", "output_index": index, "item": done_item}),
        ];
        let added = events.len() as i64;
        for (n, mut event) in events.into_iter().enumerate() {
            event["sequence_number"] = Value::from(first + n as i64);
            write_event(out, &event);
        }
        self.shift += added;
        self.said = Some(done_item);
    }
}

/// Judges every `function_call` item of a complete answer; whether it changed.
fn judge_whole(value: &mut Value, judge: &mut dyn JudgeCalls) -> bool {
    let Some(output) = value.get_mut("output").and_then(Value::as_array_mut) else {
        return false;
    };
    let mut texts = Vec::new();
    output.retain(|item| {
        if item.get("type").and_then(Value::as_str) != Some("function_call") {
            return true;
        }
        let verdict = judge.judge(&ProposedCall {
            id: item.get("call_id").and_then(Value::as_str).unwrap_or(""),
            name: item.get("name").and_then(Value::as_str).unwrap_or(""),
            arguments: item.get("arguments").and_then(Value::as_str).unwrap_or(""),
        });
        match verdict {
            Verdict::Allow => true,
            Verdict::Deny { text } => {
                texts.push(text);
                false
            }
        }
    });
    if texts.is_empty() {
        return false;
    }
    output.push(json!({"type": "message", "id": REFUSAL_ITEM_ID, "status": "completed", "role": "assistant",
        "content": [{"type": "output_text", "text": texts.join("\n"), "annotations": [], "logprobs": []}]}));
    true
}

#[cfg(test)]
mod tests;
