//! Responses API answers with their proposed calls judged: the `output` items the agent's
//! client runs itself (`function_call`, `custom_tool_call`, `local_shell_call`, `shell_call`,
//! `apply_patch_call`, `computer_call`, and any other `*_call` but those OpenAI runs: web
//! and file search, code interpreter, image generation, remote MCP), in a body and in a
//! stream. In a stream such an item's events (`output_item.added`, its arguments' or input's
//! `.delta`/`.done`) are held until its `output_item.done` (the call complete), then released
//! byte for byte when allowed, or dropped. Later items' `output_index` and every later
//! `sequence_number` are renumbered once something was dropped or added. Refused calls are
//! named in an assistant `message` item added before `response.completed`, whose `output`
//! loses the refused items and gains that message.

use serde_json::{Map, Value, json};

use crate::protocol::proposed::{
    self, EventRewriter, JudgeCalls, Judged, ProposalRewriter, ProposedCall, Unjudged, Verdict,
    is_event, write_named_event as write_event,
};

/// The id of the message item that names refused calls.
const REFUSAL_ITEM_ID: &str = "msg_warden_refusal";

/// How Responses answers carry calls: every call item's type ends in `_call`.
static CALLS: Judged = Judged {
    needles: &[b"_call\""],
    keys: &[
        "output",
        "item",
        "type",
        "name",
        "arguments",
        "input",
        "action",
        "actions",
        "pending_safety_checks",
        "operation",
        "command",
        "commands",
        "call_id",
        "id",
        "output_index",
        "delta",
        "response",
    ],
    free: &[
        "tools",
        "text",
        "metadata",
        "instructions",
        "prompt",
        "env",
        // A file search result's attributes: keys the user chose.
        "attributes",
    ],
    judge_body: judge_whole,
    unjudged_body: unjudged,
    named_error: false,
};

/// Output items whose calls OpenAI runs, not the agent: results, not proposals.
const RUN_BY_OPENAI: &[&str] = &[
    "web_search_call",
    "file_search_call",
    "code_interpreter_call",
    "image_generation_call",
    "mcp_call",
];

/// The rewriter for a Responses answer (`event_stream`: streamed).
pub fn rewriter(event_stream: bool) -> Box<dyn ProposalRewriter> {
    proposed::rewriter(event_stream, Stream::default, &CALLS)
}

/// Whether an output item of type `kind` is a call the agent's client runs.
fn runs_locally(kind: &str) -> bool {
    kind.ends_with("_call") && !RUN_BY_OPENAI.contains(&kind)
}

/// The call an output item proposes, judged as `(id, tool, arguments)`; `streamed`: its
/// arguments or input as their deltas gave them. A `function_call` is its name and arguments;
/// a `custom_tool_call` (free-form input) its name and `{"input": <input>}`; a
/// `local_shell_call` is `local_shell` with its `action` (`command` argv, `working_directory`,
/// `env`, `timeout_ms`, `user`); a `shell_call` is `shell` with its `action` (`commands`,
/// lines run in turn, `timeout_ms`, `max_output_length`); an `apply_patch_call` is
/// `apply_patch` with its `operation` (`type`: `create_file`, `update_file`, `delete_file`;
/// `path`; `diff`); a `computer_call` is `computer` with its `action` (one) and `actions` (a
/// batch) as given, and `pending_safety_checks`; any other is its type less `_call`, with the
/// item less `type`, `id`, `call_id`, `status`.
fn local_call(item: &Value, streamed: &str) -> Option<(String, String, String)> {
    let kind = item.get("type").and_then(Value::as_str)?;
    if !runs_locally(kind) {
        return None;
    }
    let text = |key| item.get(key).and_then(Value::as_str).unwrap_or("");
    let given_or_streamed = |key| match text(key) {
        "" => streamed.to_owned(),
        given => given.to_owned(),
    };
    let field = |key| item.get(key).unwrap_or(&Value::Null).to_string();
    let fields = |keys: &[&str]| {
        let given = keys.iter().filter_map(|key| {
            let value = item.get(*key).filter(|v| !v.is_null())?;
            Some(((*key).to_owned(), value.clone()))
        });
        Value::Object(given.collect()).to_string()
    };
    let (name, arguments) = match kind {
        "function_call" => (text("name").to_owned(), given_or_streamed("arguments")),
        "custom_tool_call" => (
            text("name").to_owned(),
            json!({ "input": given_or_streamed("input") }).to_string(),
        ),
        "local_shell_call" => ("local_shell".to_owned(), field("action")),
        "shell_call" => ("shell".to_owned(), field("action")),
        "apply_patch_call" => ("apply_patch".to_owned(), field("operation")),
        "computer_call" => (
            "computer".to_owned(),
            fields(&["action", "actions", "pending_safety_checks"]),
        ),
        other => {
            let mut rest: Map<String, Value> = item.as_object().cloned().unwrap_or_default();
            for key in ["type", "id", "call_id", "status"] {
                rest.remove(key);
            }
            let name = other.strip_suffix("_call").unwrap_or(other);
            (name.to_owned(), Value::Object(rest).to_string())
        }
    };
    Some((text("call_id").to_owned(), name, arguments))
}

/// The error that replaces a body that cannot be judged (too large, or not JSON).
fn unjudged(why: Unjudged) -> Value {
    json!({"error": {"message": why.message(), "type": "warden_error", "code": why.code()}})
}

/// A call item being held: its raw events only (what `held` counts), each read again when
/// the item is released. Their parsed copies would cost many times their bytes (a number in
/// an array is two bytes of text and 32 of `Value`), past what `MAX_HELD` counts.
#[derive(Debug, Default, Clone)]
struct Held {
    output_index: u64,
    events: Vec<Vec<u8>>,
    /// The raw events' bytes.
    bytes: usize,
}

/// A held event, read again (it was read once as it came: it reads the same).
fn reread(event: &[u8]) -> Value {
    CALLS
        .event_json(event)
        .ok()
        .flatten()
        .unwrap_or(Value::Null)
}

#[derive(Debug, Default, Clone)]
struct Stream {
    held: Vec<Held>,
    /// Items dropped so far, by their original `output_index`.
    dropped: Vec<u64>,
    /// Ids of the dropped items.
    dropped_ids: Vec<String>,
    /// The call items judged so far (allowed or dropped): their ids, and the tool and
    /// arguments each was judged as.
    judged: Vec<(String, String, String)>,
    /// Events added minus events dropped: what later `sequence_number`s move by.
    shift: i64,
    /// Items added so far (`response.output_item.added`), as the upstream numbers them.
    added: u64,
    /// The `output_index` of each item added so far.
    indices: Vec<u64>,
    refusals: Vec<String>,
    /// The refusal message item, once sent, for `response.completed`.
    said: Option<Value>,
}

impl EventRewriter for Stream {
    fn held(&self) -> usize {
        self.held.iter().map(|held| held.bytes).sum()
    }

    fn end(&mut self, judge: &mut dyn JudgeCalls, out: &mut Vec<u8>) -> Result<(), Unjudged> {
        for held in std::mem::take(&mut self.held) {
            self.release(held, None, judge, out)?;
        }
        Ok(())
    }

    fn event(
        &mut self,
        event: Vec<u8>,
        judge: &mut dyn JudgeCalls,
        out: &mut Vec<u8>,
    ) -> Result<(), Unjudged> {
        // Nothing held, dropped or to say, and no call in it: sent as it is, unparsed.
        if self.held.is_empty()
            && self.dropped.is_empty()
            && self.refusals.is_empty()
            && self.shift == 0
            && !CALLS.may_mention(&event)
        {
            if is_event(&event, "response.output_item.added") {
                let index = proposed::event_json(&event)
                    .and_then(|v| v.get("output_index").and_then(Value::as_u64));
                self.add(index)?;
            }
            out.extend_from_slice(&event);
            return Ok(());
        }
        let Some(value) = CALLS.event_json(&event)? else {
            out.extend_from_slice(&event);
            return Ok(());
        };
        let kind = value.get("type").and_then(Value::as_str).unwrap_or("");
        let index = value.get("output_index").and_then(Value::as_u64);
        if kind == "response.output_item.added" {
            self.add(index)?;
        }
        if let Some(i) = index
            && let Some(at) = self.held.iter().position(|h| h.output_index == i)
        {
            if kind == "response.output_item.done" {
                let held = self.held.remove(at);
                self.release(held, Some((event, value)), judge, out)?;
            } else {
                self.held[at].bytes += event.len();
                self.held[at].events.push(event);
            }
            return Ok(());
        }
        let call_item = value
            .pointer("/item/type")
            .and_then(Value::as_str)
            .is_some_and(runs_locally);
        if call_item && kind == "response.output_item.added" {
            if self.held.len() >= proposed::MAX_CALLS {
                return Err(Unjudged::StreamTooLarge);
            }
            self.held.push(Held {
                output_index: index.unwrap_or(0),
                bytes: event.len(),
                events: vec![event],
            });
            return Ok(());
        }
        if call_item && kind == "response.output_item.done" {
            // Done without being added: judged as it stands.
            let held = Held {
                output_index: index.unwrap_or(0),
                events: Vec::new(),
                bytes: 0,
            };
            self.release(held, Some((event, value)), judge, out)?;
            return Ok(());
        }
        if matches!(
            kind,
            "response.completed" | "response.incomplete" | "response.failed"
        ) {
            let mut value = value;
            let changed = self.judge_final(&mut value, judge)?;
            self.say_refusals(&value, out);
            if changed || !self.dropped_ids.is_empty() || self.said.is_some() {
                if let Some(output) = value
                    .pointer_mut("/response/output")
                    .and_then(Value::as_array_mut)
                {
                    output.extend(self.said.clone());
                }
                self.renumbered(value, out);
                return Ok(());
            }
            self.pass(event, value, out);
            return Ok(());
        }
        self.pass(event, value, out);
        Ok(())
    }
}

/// The arguments (a `function_call`'s) or input (a `custom_tool_call`'s) of a held call item,
/// the same in every copy the stream gives: the added item's with its deltas appended (what a
/// client accumulates), each `.done` event's, and the done item's (unless empty: left out). A
/// client may act on any of them (the SDK's `responses.stream()` hands over the deltas and the
/// final item both), so copies that differ cannot be judged: unreadable. Empty for other
/// items, which stream no deltas.
fn streamed_copy(held: &Held, item: &Value, done: Option<&Value>) -> Result<String, Unjudged> {
    let (key, delta, finished) = match item.get("type").and_then(Value::as_str) {
        Some("function_call") => (
            "arguments",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
        ),
        Some("custom_tool_call") => (
            "input",
            "response.custom_tool_call_input.delta",
            "response.custom_tool_call_input.done",
        ),
        _ => return Ok(String::new()),
    };
    // Each held event read again, one at a time: only the strings compared are kept.
    let mut added: Option<String> = None;
    let mut deltas: Option<String> = None;
    let mut copies: Vec<String> = Vec::new();
    for event in &held.events {
        let value = reread(event);
        match value.get("type").and_then(Value::as_str) {
            Some("response.output_item.added") if added.is_none() => {
                added = value
                    .pointer(&format!("/item/{key}"))
                    .and_then(Value::as_str)
                    .map(str::to_owned);
            }
            Some(kind) if kind == delta => {
                if let Some(piece) = value.get("delta").and_then(Value::as_str) {
                    deltas.get_or_insert_with(String::new).push_str(piece);
                }
            }
            Some(kind) if kind == finished => {
                if let Some(copy) = value.get(key).and_then(Value::as_str) {
                    copies.push(copy.to_owned());
                }
            }
            _ => {}
        }
    }
    // A done item with an empty one leaves it out (as the added item does).
    copies.extend(
        done.and_then(|v| v.pointer(&format!("/item/{key}")))
            .and_then(Value::as_str)
            .filter(|copy| !copy.is_empty())
            .map(str::to_owned),
    );
    let added = added.unwrap_or_default();
    let accumulated = (deltas.is_some() || !added.is_empty()).then(|| {
        let mut text = added;
        text.push_str(deltas.as_deref().unwrap_or(""));
        text
    });
    let first = accumulated
        .as_deref()
        .or(copies.first().map(String::as_str));
    if copies.iter().any(|copy| Some(copy.as_str()) != first) {
        return Err(Unjudged::Unreadable);
    }
    Ok(first.unwrap_or("").to_owned())
}

impl Stream {
    /// Counts an item added at `output_index` `index` (none: 0). A second item added at an
    /// index cannot be read: the SDK appends each added item to the output it builds, so the
    /// second would reach the agent beside the one Warden judges there.
    fn add(&mut self, index: Option<u64>) -> Result<(), Unjudged> {
        let index = index.unwrap_or(0);
        if self.indices.contains(&index) {
            return Err(Unjudged::Unreadable);
        }
        if self.indices.len() >= proposed::MAX_ITEMS {
            return Err(Unjudged::StreamTooLarge);
        }
        self.indices.push(index);
        self.added += 1;
        Ok(())
    }

    /// The final answer's `output` without the items dropped from the stream, and with the
    /// call items the stream never gave judged, refused ones dropped, their refusals kept to
    /// say; whether the output changed. Two call items with one id, or an item the stream gave
    /// otherwise (another tool or other arguments under the same id), cannot be told apart:
    /// unreadable.
    fn judge_final(
        &mut self,
        value: &mut Value,
        judge: &mut dyn JudgeCalls,
    ) -> Result<bool, Unjudged> {
        let Some(output) = value
            .pointer_mut("/response/output")
            .and_then(Value::as_array_mut)
        else {
            return Ok(false);
        };
        let mut ids: Vec<&str> = Vec::new();
        for item in output.iter() {
            let is_call = local_call(item, "").is_some();
            if let Some(id) = item.get("id").and_then(Value::as_str).filter(|_| is_call) {
                if ids.contains(&id) {
                    return Err(Unjudged::Unreadable);
                }
                ids.push(id);
            }
        }
        let before = output.len();
        let mut kept = Vec::with_capacity(before);
        for item in output.drain(..) {
            let id = item.get("id").and_then(Value::as_str);
            if id.is_some_and(|id| self.dropped_ids.iter().any(|d| d == id)) {
                continue;
            }
            let judged = id.zip(local_call(&item, "")).and_then(|(id, call)| {
                let (_, name, arguments) = self.judged.iter().find(|(j, _, _)| j == id)?;
                Some(*name == call.1 && *arguments == call.2)
            });
            // A call the stream gave otherwise than it was judged there: which one the client
            // runs is unknown.
            if judged == Some(false) {
                return Err(Unjudged::Unreadable);
            }
            if judged == Some(true) || keeps(&item, judge, &mut self.refusals) {
                kept.push(item);
            }
        }
        *output = kept;
        Ok(output.len() != before)
    }

    /// `output_index` `i` after the items dropped before it.
    fn lowered(&self, i: u64) -> u64 {
        let below = self.dropped.iter().filter(|d| **d < i).count();
        i.saturating_sub(u64::try_from(below).unwrap_or(u64::MAX))
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

    /// Judges a complete call item (`done`: its `output_item.done`); one whose id an item
    /// judged before had cannot be told apart from it: unreadable.
    fn release(
        &mut self,
        held: Held,
        done: Option<(Vec<u8>, Value)>,
        judge: &mut dyn JudgeCalls,
        out: &mut Vec<u8>,
    ) -> Result<(), Unjudged> {
        let item = match done.as_ref().and_then(|(_, v)| v.get("item")) {
            Some(item) => item.clone(),
            None => held
                .events
                .first()
                .map(|event| reread(event))
                .and_then(|mut v| v.get_mut("item").map(Value::take))
                .unwrap_or(Value::Null),
        };
        let streamed = streamed_copy(&held, &item, done.as_ref().map(|(_, v)| v))?;
        // Held for its type, so a call (an item without its type is judged as nameless).
        let (id, name, arguments) = local_call(&item, &streamed)
            .unwrap_or_else(|| (String::new(), String::new(), streamed));
        let item_id = item.get("id").and_then(Value::as_str);
        if item_id.is_some_and(|i| self.judged.iter().any(|(j, _, _)| j == i)) {
            return Err(Unjudged::Unreadable);
        }
        let verdict = judge.judge(&ProposedCall {
            id: &id,
            name: &name,
            arguments: &arguments,
        });
        if let Some(item_id) = item_id {
            self.judged.push((item_id.to_owned(), name, arguments));
        }
        match verdict {
            Verdict::Allow => {
                for event in held.events {
                    if self.shift == 0 && self.dropped.is_empty() {
                        out.extend_from_slice(&event);
                    } else {
                        self.renumbered(reread(&event), out);
                    }
                }
                if let Some((event, value)) = done {
                    self.pass(event, value, out);
                }
            }
            Verdict::Deny { text } => {
                self.shift -= held.events.len() as i64 + i64::from(done.is_some());
                if !self.dropped.contains(&held.output_index) {
                    self.dropped.push(held.output_index);
                }
                if let Some(id) = item.get("id").and_then(Value::as_str) {
                    self.dropped_ids.push(id.to_owned());
                }
                self.refusals.push(text);
            }
        }
        Ok(())
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

/// Whether `item` stays: it is no call the client runs, or one allowed (a refused one's text
/// goes to `refusals`).
fn keeps(item: &Value, judge: &mut dyn JudgeCalls, refusals: &mut Vec<String>) -> bool {
    let Some((id, name, arguments)) = local_call(item, "") else {
        return true;
    };
    let verdict = judge.judge(&ProposedCall {
        id: &id,
        name: &name,
        arguments: &arguments,
    });
    match verdict {
        Verdict::Allow => true,
        Verdict::Deny { text } => {
            refusals.push(text);
            false
        }
    }
}

/// Judges every call item of a complete answer; whether it changed.
fn judge_whole(value: &mut Value, judge: &mut dyn JudgeCalls) -> Result<bool, Unjudged> {
    let Some(output) = value.get_mut("output").and_then(Value::as_array_mut) else {
        return Ok(false);
    };
    let mut texts = Vec::new();
    output.retain(|item| keeps(item, judge, &mut texts));
    if texts.is_empty() {
        return Ok(false);
    }
    output.push(json!({"type": "message", "id": REFUSAL_ITEM_ID, "status": "completed", "role": "assistant",
        "content": [{"type": "output_text", "text": texts.join("\n"), "annotations": [], "logprobs": []}]}));
    Ok(true)
}

#[cfg(test)]
mod tests;
