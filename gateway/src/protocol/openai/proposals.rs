//! Chat Completions responses with their proposed tool calls judged: `choices[].message
//! .tool_calls` in a JSON body, `choices[].delta.tool_calls` in a stream, and the deprecated
//! single call `message.function_call` / `delta.function_call` (which the SDKs still parse).
//! Text deltas pass at once; the events that carry a choice's calls are held until the choice
//! finishes (its calls' arguments complete), then released byte for byte when every call is
//! allowed, or rewritten without the refused calls (the others renumbered), an assistant text
//! naming the refused ones, and `finish_reason: stop` when no call is left.

use serde_json::{Map, Value};

use crate::protocol::proposed::{
    self, EventRewriter, JudgeCalls, Judged, ProposalRewriter, ProposedCall, Unjudged, Verdict,
    event_json,
};

/// How Chat Completions answers carry calls.
static CALLS: Judged = Judged {
    needles: &[b"tool_call", b"function_call"],
    keys: &[
        "choices",
        "message",
        "delta",
        "tool_calls",
        "function_call",
        "function",
        "name",
        "arguments",
        "index",
        "id",
        "type",
        "finish_reason",
    ],
    free: &[],
    judge_body: judge_whole,
    unjudged_body: unjudged,
    named_error: false,
};

/// The rewriter for a Chat Completions response (`event_stream`: streamed).
pub fn rewriter(event_stream: bool) -> Box<dyn ProposalRewriter> {
    proposed::rewriter(event_stream, Stream::default, &CALLS)
}

/// The error that replaces a body that cannot be judged (too large, or not JSON).
fn unjudged(why: Unjudged) -> Value {
    serde_json::json!({ "error": { "message": why.message(), "type": "warden_error", "code": why.code() } })
}

/// One call as its deltas build it.
#[derive(Debug, Default, Clone)]
struct Call {
    id: String,
    name: String,
    arguments: String,
}

/// What one choice holds back.
#[derive(Debug, Default, Clone)]
struct Held {
    /// The raw events, in order.
    events: Vec<Vec<u8>>,
    /// The calls by their delta index.
    calls: Vec<(u64, Call)>,
    /// The deprecated single call (`delta.function_call`), if the choice has one.
    function: Option<Call>,
}

#[derive(Debug, Default, Clone)]
struct Stream {
    /// Held events per choice index.
    held: Vec<(u64, Held)>,
}

impl EventRewriter for Stream {
    fn end(&mut self, judge: &mut dyn JudgeCalls, out: &mut Vec<u8>) {
        for (index, held) in std::mem::take(&mut self.held) {
            release(index, held, None, judge, out);
        }
    }

    fn event(
        &mut self,
        event: Vec<u8>,
        judge: &mut dyn JudgeCalls,
        out: &mut Vec<u8>,
    ) -> Result<(), Unjudged> {
        // Nothing held and no call in it: a text delta, sent as it is, unparsed.
        if self.held.is_empty() && !CALLS.may_mention(&event) {
            out.extend_from_slice(&event);
            return Ok(());
        }
        let Some(chunk) = CALLS.event_json(&event)? else {
            // `[DONE]`, comments, errors: whatever is held goes first.
            for (index, held) in std::mem::take(&mut self.held) {
                release(index, held, None, judge, out);
            }
            out.extend_from_slice(&event);
            return Ok(());
        };
        let choices = chunk
            .get("choices")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut holds = false;
        for choice in &choices {
            let index = choice.get("index").and_then(Value::as_u64).unwrap_or(0);
            let deltas = choice
                .pointer("/delta/tool_calls")
                .and_then(Value::as_array);
            let function = choice
                .pointer("/delta/function_call")
                .filter(|f| f.is_object());
            if deltas.is_none() && function.is_none() {
                continue;
            }
            holds = true;
            let held = self.held_for(index);
            for delta in deltas.into_iter().flatten() {
                let at = delta.get("index").and_then(Value::as_u64).unwrap_or(0);
                let call = match held.calls.iter_mut().find(|(i, _)| *i == at) {
                    Some((_, call)) => call,
                    None => {
                        held.calls.push((at, Call::default()));
                        &mut held.calls.last_mut().expect("just pushed").1
                    }
                };
                if let Some(id) = delta.get("id").and_then(Value::as_str) {
                    call.id.push_str(id);
                }
                call.add(delta.get("function"));
            }
            if function.is_some() {
                held.function
                    .get_or_insert_with(Call::default)
                    .add(function);
            }
        }
        let finished: Vec<u64> = choices
            .iter()
            .filter(|c| c.get("finish_reason").is_some_and(|r| !r.is_null()))
            .filter_map(|c| c.get("index").and_then(Value::as_u64).or(Some(0)))
            .filter(|i| self.held.iter().any(|(h, _)| h == i))
            .collect();
        if holds && finished.is_empty() {
            if let Some((_, held)) = self.held.iter_mut().find(|(i, _)| {
                choices
                    .iter()
                    .any(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == *i)
            }) {
                held.events.push(event);
            }
            return Ok(());
        }
        if finished.is_empty() {
            out.extend_from_slice(&event);
            return Ok(());
        }
        let mut event = Some(event);
        for index in finished {
            let Some(at) = self.held.iter().position(|(i, _)| *i == index) else {
                continue;
            };
            let (_, held) = self.held.remove(at);
            release(
                index,
                held,
                event.take().map(|e| (e, chunk.clone())),
                judge,
                out,
            );
        }
        if let Some(event) = event {
            out.extend_from_slice(&event);
        }
        Ok(())
    }
}

impl Call {
    /// Adds a delta's `function` (`name`, `arguments` pieces).
    fn add(&mut self, function: Option<&Value>) {
        let piece = |key| function.and_then(|f| f.get(key)).and_then(Value::as_str);
        if let Some(name) = piece("name") {
            self.name.push_str(name);
        }
        if let Some(args) = piece("arguments") {
            self.arguments.push_str(args);
        }
    }
}

impl Stream {
    fn held_for(&mut self, index: u64) -> &mut Held {
        if let Some(at) = self.held.iter().position(|(i, _)| *i == index) {
            return &mut self.held[at].1;
        }
        self.held.push((index, Held::default()));
        &mut self.held.last_mut().expect("just pushed").1
    }
}

/// Judges the calls `held` for choice `index` and writes what the agent gets: the held events
/// unchanged when every call is allowed, else rewritten, then the refusal text, then the
/// finishing event (`finish`: raw and parsed), its reason `stop` when no call is left.
fn release(
    index: u64,
    held: Held,
    finish: Option<(Vec<u8>, Value)>,
    judge: &mut dyn JudgeCalls,
    out: &mut Vec<u8>,
) {
    let mut refused: Vec<u64> = Vec::new();
    let mut texts: Vec<String> = Vec::new();
    let mut refuses = |call: &Call| {
        let verdict = judge.judge(&ProposedCall {
            id: &call.id,
            name: &call.name,
            arguments: &call.arguments,
        });
        match verdict {
            Verdict::Allow => false,
            Verdict::Deny { text } => {
                texts.push(text);
                true
            }
        }
    };
    for (at, call) in &held.calls {
        if refuses(call) {
            refused.push(*at);
        }
    }
    let function_refused = held.function.as_ref().is_some_and(&mut refuses);
    let function_kept = held.function.is_some() && !function_refused;
    if refused.is_empty() && !function_refused {
        for event in &held.events {
            out.extend_from_slice(event);
        }
        if let Some((raw, _)) = finish {
            out.extend_from_slice(&raw);
        }
        return;
    }
    // New indices for the calls that stay, in their order.
    let kept: Vec<u64> = held
        .calls
        .iter()
        .map(|(i, _)| *i)
        .filter(|i| !refused.contains(i))
        .collect();
    let mut template: Option<Value> = None;
    for raw in &held.events {
        let Some(mut chunk) = event_json(raw) else {
            continue;
        };
        if template.is_none() {
            template = Some(chunk.clone());
        }
        if strip_calls(&mut chunk, index, &refused, &kept, function_refused) {
            write_event(out, &chunk);
        }
    }
    let text = texts.join("\n");
    let base = finish
        .as_ref()
        .map(|(_, v)| v.clone())
        .or(template)
        .unwrap_or_else(|| Value::Object(Map::new()));
    let mut said = base.clone();
    set_choice(
        &mut said,
        serde_json::json!({ "index": index, "delta": { "content": text }, "finish_reason": null }),
    );
    if let Some(obj) = said.as_object_mut() {
        obj.remove("usage");
    }
    write_event(out, &said);
    let reason = if !kept.is_empty() {
        "tool_calls"
    } else if function_kept {
        "function_call"
    } else {
        "stop"
    };
    match finish {
        Some((_, mut chunk)) => {
            // The finishing event may carry call deltas of its own.
            strip_calls(&mut chunk, index, &refused, &kept, function_refused);
            if let Some(choices) = chunk.get_mut("choices").and_then(Value::as_array_mut) {
                for choice in choices.iter_mut() {
                    if choice.get("index").and_then(Value::as_u64).unwrap_or(0) == index {
                        choice["finish_reason"] = Value::from(reason);
                    }
                }
            }
            write_event(out, &chunk);
        }
        None => {
            let mut end = base;
            set_choice(
                &mut end,
                serde_json::json!({ "index": index, "delta": {}, "finish_reason": reason }),
            );
            if let Some(obj) = end.as_object_mut() {
                obj.remove("usage");
            }
            write_event(out, &end);
        }
    }
}

/// Replaces a chunk's choices with `choice` alone.
fn set_choice(chunk: &mut Value, choice: Value) {
    if let Some(obj) = chunk.as_object_mut() {
        obj.insert("choices".into(), Value::Array(vec![choice]));
    }
}

/// Removes the refused calls' deltas (and the single `function_call`'s, when `function` was
/// refused) from choice `index` of `chunk` and renumbers the kept ones; whether anything is
/// left to send.
fn strip_calls(
    chunk: &mut Value,
    index: u64,
    refused: &[u64],
    kept: &[u64],
    function: bool,
) -> bool {
    let Some(choices) = chunk.get_mut("choices").and_then(Value::as_array_mut) else {
        return true;
    };
    let mut anything = false;
    for choice in choices.iter_mut() {
        if choice.get("index").and_then(Value::as_u64).unwrap_or(0) != index {
            anything = true;
            continue;
        }
        let Some(delta) = choice.get_mut("delta").and_then(Value::as_object_mut) else {
            continue;
        };
        if let Some(Value::Array(calls)) = delta.get_mut("tool_calls") {
            calls.retain(|c| {
                !refused.contains(&c.get("index").and_then(Value::as_u64).unwrap_or(0))
            });
            for call in calls.iter_mut() {
                let old = call.get("index").and_then(Value::as_u64).unwrap_or(0);
                if let Some(new) = kept.iter().position(|k| *k == old) {
                    call["index"] = Value::from(new);
                }
            }
            if calls.is_empty() {
                delta.remove("tool_calls");
            }
        }
        if function {
            delta.remove("function_call");
        }
        if !delta.is_empty() {
            anything = true;
        }
    }
    anything
}

fn write_event(out: &mut Vec<u8>, chunk: &Value) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(chunk.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
}

/// The verdict on one call of a whole body (`function`: its `function` object).
fn verdict(judge: &mut dyn JudgeCalls, id: &Value, function: Option<&Value>) -> Verdict {
    let field = |key| {
        function
            .and_then(|f| f.get(key))
            .and_then(Value::as_str)
            .unwrap_or("")
    };
    judge.judge(&ProposedCall {
        id: id.as_str().unwrap_or(""),
        name: field("name"),
        arguments: field("arguments"),
    })
}

/// Judges every `choices[].message.tool_calls[]` (and `message.function_call`) of a complete
/// response; whether it changed.
fn judge_whole(response: &mut Value, judge: &mut dyn JudgeCalls) -> bool {
    let Some(choices) = response.get_mut("choices").and_then(Value::as_array_mut) else {
        return false;
    };
    let mut changed = false;
    for choice in choices.iter_mut() {
        let Some(message) = choice.get_mut("message").and_then(Value::as_object_mut) else {
            continue;
        };
        let mut texts = Vec::new();
        if let Some(Value::Array(calls)) = message.get_mut("tool_calls") {
            calls.retain(
                |call| match verdict(judge, &call["id"], call.get("function")) {
                    Verdict::Allow => true,
                    Verdict::Deny { text } => {
                        texts.push(text);
                        false
                    }
                },
            );
        }
        let function = message.get("function_call").filter(|f| f.is_object());
        if let Some(Verdict::Deny { text }) =
            function.map(|f| verdict(judge, &Value::Null, Some(f)))
        {
            texts.push(text);
            message.remove("function_call");
        }
        if texts.is_empty() {
            continue;
        }
        changed = true;
        let no_calls = message
            .get("tool_calls")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        let none_left = no_calls && !message.contains_key("function_call");
        if no_calls {
            message.remove("tool_calls");
        }
        let mut content = message
            .get("content")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        if !content.is_empty() {
            content.push_str("\n\n");
        }
        content.push_str(&texts.join("\n"));
        message.insert("content".into(), Value::from(content));
        if none_left {
            choice["finish_reason"] = Value::from("stop");
        }
    }
    changed
}

#[cfg(test)]
mod tests;
