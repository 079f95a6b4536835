//! Chat Completions responses with their proposed tool calls judged: `choices[].message
//! .tool_calls` in a JSON body, `choices[].delta.tool_calls` in a stream (a `function` call,
//! or a `custom` tool's free-form `input`, judged as `{"input": <input>}`), and the
//! deprecated single call `message.function_call` / `delta.function_call` (which the SDKs
//! still parse). A call Warden cannot read (no name, neither a function nor a custom tool)
//! leaves the answer undelivered, as does a chunk that mixes several choices' calls.
//! Text deltas pass at once; the events that carry a choice's calls are held until the choice
//! finishes (its calls' arguments complete), then released byte for byte when every call is
//! allowed, or rewritten without the refused calls (the others renumbered), an assistant text
//! naming the refused ones, and `finish_reason: stop` when no call is left.

use serde_json::{Map, Value};

use crate::protocol::proposed::{
    self, EventRewriter, JudgeCalls, Judged, ProposalRewriter, ProposedCall, Unjudged, Verdict,
    event_json,
};
use crate::protocol::strict_json;

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
        "custom",
        "input",
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
    /// A function call's arguments.
    arguments: String,
    /// A custom tool call's free-form input.
    input: String,
    /// Pieces came under `function`.
    function: bool,
    /// Pieces came under `custom`.
    custom: bool,
}

/// What one choice holds back.
#[derive(Debug, Default, Clone)]
struct Held {
    /// The raw events, in order.
    events: Vec<Vec<u8>>,
    /// Their bytes.
    bytes: usize,
    /// The calls by their delta index.
    calls: Vec<(u64, Call)>,
    /// The deprecated single call (`delta.function_call`), if the choice has one.
    function: Option<Call>,
}

#[derive(Debug, Default, Clone)]
struct Stream {
    /// Held events per choice index.
    held: Vec<(u64, Held)>,
    /// Choices that finished (gave a `finish_reason`).
    ended: Vec<u64>,
}

impl EventRewriter for Stream {
    fn held(&self) -> usize {
        self.held.iter().map(|(_, held)| held.bytes).sum()
    }

    fn end(&mut self, judge: &mut dyn JudgeCalls, out: &mut Vec<u8>) -> Result<(), Unjudged> {
        for (index, held) in std::mem::take(&mut self.held) {
            release(index, held, None, judge, out)?;
        }
        Ok(())
    }

    fn event(
        &mut self,
        event: Vec<u8>,
        judge: &mut dyn JudgeCalls,
        out: &mut Vec<u8>,
    ) -> Result<(), Unjudged> {
        // Nothing held, no call in it and no choice it finishes: a text delta, sent as it
        // is, unparsed. A finish is read (once per choice), so that a call after it is known.
        if self.held.is_empty() && !CALLS.may_mention(&event) && !may_finish(&event) {
            out.extend_from_slice(&event);
            return Ok(());
        }
        let Some(chunk) = CALLS.event_json(&event)? else {
            if proposed::event_data(&event).is_none() {
                // A comment (a provider's keep-alive, `: OPENROUTER PROCESSING`), or a block of
                // other fields while nothing is held: it goes now. While calls are held,
                // `proposed::Events` keeps an `id:`/`retry:`/`event:` block back before it
                // reaches here (`goes_ahead_of_held`), so only comments pass held calls.
                out.extend_from_slice(&event);
                return Ok(());
            }
            // `[DONE]`, errors: whatever is held goes first.
            for (index, held) in std::mem::take(&mut self.held) {
                release(index, held, None, judge, out)?;
            }
            out.extend_from_slice(&event);
            return Ok(());
        };
        let choices = choices_of(&chunk)?;
        // The choice whose call deltas this chunk carries, and the held choice it finishes.
        let mut carries = None;
        let mut finishes = None;
        // Choices this chunk carries call deltas for or finishes while held: one event goes
        // with one choice's calls, so a chunk touching two cannot be held whole.
        let mut touched = 0;
        for (index, choice) in &choices {
            let deltas = choice
                .pointer("/delta/tool_calls")
                .and_then(Value::as_array);
            let function = choice
                .pointer("/delta/function_call")
                .filter(|f| f.is_object());
            let has_calls = deltas.is_some() || function.is_some();
            let finished = choice.get("finish_reason").is_some_and(|r| !r.is_null());
            if has_calls && self.ended.contains(index) {
                // A call after its choice finished: clients differ on what they make of it.
                return Err(Unjudged::Unreadable);
            }
            let held = self.held.iter().any(|(h, _)| h == index);
            if has_calls || (finished && held) {
                touched += 1;
            }
            if finished && !self.ended.contains(index) {
                // Each choice finishes once in the list: a stream that finishes more choices
                // than any request asks for is too large to judge.
                if self.ended.len() >= proposed::MAX_ITEMS {
                    return Err(Unjudged::StreamTooLarge);
                }
                self.ended.push(*index);
            }
            if finished && (held || has_calls) {
                finishes = Some(*index);
            }
            if !has_calls {
                continue;
            }
            carries = Some(*index);
            let held = self.held_for(*index)?;
            for delta in deltas.into_iter().flatten() {
                let at = delta.get("index").and_then(Value::as_u64).unwrap_or(0);
                if let Some(id) = delta.get("id").and_then(Value::as_str) {
                    held.call_at(at)?.id.push_str(id);
                }
                held.call_at(at)?.add(delta)?;
            }
            if let Some(function) = function {
                held.function
                    .get_or_insert_with(Call::default)
                    .add_pieces(function, false)?;
            }
        }
        if touched > 1 {
            return Err(Unjudged::Unreadable);
        }
        match (carries, finishes) {
            (_, Some(index)) => {
                if let Some(at) = self.held.iter().position(|(i, _)| *i == index) {
                    let (_, held) = self.held.remove(at);
                    release(index, held, Some((event, chunk)), judge, out)?;
                } else {
                    out.extend_from_slice(&event);
                }
            }
            (Some(index), None) => {
                let held = self.held_for(index)?;
                held.bytes += event.len();
                held.events.push(event);
            }
            (None, None) => out.extend_from_slice(&event),
        }
        Ok(())
    }
}

/// Whether a chunk may finish a choice: it has a `finish_reason` whose value is not `null`.
/// Found by a byte search: every `_rea` (ASCII case ignored; it holds no `s` or `k`, so no
/// spelling a lenient decoder folds onto the key escapes it) that ends a key `…_reason` (`ſ`
/// for `s` too), followed by a colon and anything but `null`. Keys spelled with `\u` escapes are read
/// anyway ([`Judged::may_mention`]).
fn may_finish(event: &[u8]) -> bool {
    memchr::memchr_iter(b'_', event).any(|at| {
        let Some(after) = event
            .get(at + 1..at + 4)
            .filter(|rea| rea.eq_ignore_ascii_case(b"rea"))
            .and_then(|_| event.get(at + 4..))
        else {
            return false;
        };
        let Some(quote) = memchr::memchr(b'"', after) else {
            return false;
        };
        let ends_reason = after
            .get(..quote)
            .and_then(|rest| std::str::from_utf8(rest).ok())
            .is_some_and(|rest| strict_json::equal_folded(rest, "son"));
        if !ends_reason {
            return false;
        }
        // A key only when a colon follows (else text that ends so).
        after
            .get(quote + 1..)
            .and_then(|rest| rest.trim_ascii_start().strip_prefix(b":"))
            .is_some_and(|value| !value.trim_ascii_start().starts_with(b"null"))
    })
}

/// The choices of a chunk with their indices. A chunk a client may read otherwise cannot be
/// judged: `choices` that is not a list of objects, call deltas that are not, an `index` that
/// is not a number.
fn choices_of(chunk: &Value) -> Result<Vec<(u64, Value)>, Unjudged> {
    let all = match chunk.get("choices") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(all)) => all,
        Some(_) => return Err(Unjudged::Unreadable),
    };
    all.iter()
        .map(|choice| {
            let index = index_of(choice)?;
            read_each(choice.pointer("/delta/tool_calls"), index_of)?;
            Ok((index, choice.clone()))
        })
        .collect()
}

/// Reads each of `calls` (a list, or nothing) with `read`: `calls` that is no list, or a call
/// `read` cannot read, cannot be judged.
fn read_each<T>(
    calls: Option<&Value>,
    read: fn(&Value) -> Result<T, Unjudged>,
) -> Result<(), Unjudged> {
    match calls {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Array(calls)) => calls.iter().try_for_each(|call| read(call).map(drop)),
        Some(_) => Err(Unjudged::Unreadable),
    }
}

/// The `index` of a choice or a call delta (0 when it has none); one that is no object, or
/// whose index is no number, cannot be read.
fn index_of(value: &Value) -> Result<u64, Unjudged> {
    match value.as_object().map(|o| o.get("index")) {
        Some(None) => Ok(0),
        Some(Some(index)) => index.as_u64().ok_or(Unjudged::Unreadable),
        None => Err(Unjudged::Unreadable),
    }
}

/// The index of a choice or call already read by [`choices_of`].
fn index_or_zero(value: &Value) -> u64 {
    value.get("index").and_then(Value::as_u64).unwrap_or(0)
}

/// [`index_or_zero`] of an object.
fn index_or_zero_in(object: &Map<String, Value>) -> u64 {
    object.get("index").and_then(Value::as_u64).unwrap_or(0)
}

impl Call {
    /// Adds a call delta's pieces: its `function` (`name`, `arguments`) or its `custom`
    /// (`name`, `input`).
    fn add(&mut self, delta: &Value) -> Result<(), Unjudged> {
        if let Some(function) = delta.get("function").filter(|f| !f.is_null()) {
            self.add_pieces(function, false)?;
        }
        if let Some(custom) = delta.get("custom").filter(|c| !c.is_null()) {
            self.add_pieces(custom, true)?;
        }
        Ok(())
    }

    /// Adds the `name` and `arguments` (`custom`: `input`) pieces of `part`; a part that is no
    /// object, or a piece that is no text, cannot be read. A name given in a second delta
    /// cannot be read either: openai-python appends it to the first, openai-node and OpenClaw
    /// replace the first with it (even the same name twice reads `execexec` or `exec`).
    fn add_pieces(&mut self, part: &Value, custom: bool) -> Result<(), Unjudged> {
        let part = part.as_object().ok_or(Unjudged::Unreadable)?;
        let piece = |key| match part.get(key) {
            None | Some(Value::Null) => Ok(""),
            Some(Value::String(text)) => Ok(text.as_str()),
            Some(_) => Err(Unjudged::Unreadable),
        };
        let name = piece("name")?;
        if !name.is_empty() && !self.name.is_empty() {
            return Err(Unjudged::Unreadable);
        }
        self.name.push_str(name);
        if custom {
            self.custom = true;
            self.input.push_str(piece("input")?);
        } else {
            self.function = true;
            self.arguments.push_str(piece("arguments")?);
        }
        Ok(())
    }

    /// The arguments the call is judged with: a function's, or `{"input": <input>}` for a
    /// custom tool. A call that is neither (or both), or has no name, cannot be judged.
    fn arguments(&self) -> Result<String, Unjudged> {
        if self.name.is_empty() {
            return Err(Unjudged::Unreadable);
        }
        match (self.function, self.custom) {
            (true, false) => Ok(self.arguments.clone()),
            (false, true) => Ok(serde_json::json!({ "input": self.input }).to_string()),
            _ => Err(Unjudged::Unreadable),
        }
    }
}

impl Held {
    /// The call at delta index `at`, started when new.
    fn call_at(&mut self, at: u64) -> Result<&mut Call, Unjudged> {
        entry(&mut self.calls, at)
    }
}

impl Stream {
    fn held_for(&mut self, index: u64) -> Result<&mut Held, Unjudged> {
        entry(&mut self.held, index)
    }
}

/// The value for `key` in `list`, a new one added when it has none; past
/// [`proposed::MAX_CALLS`] entries none is added (a hostile stream's hundred thousand
/// indexes, each looked up among the others), and the stream cannot be judged.
fn entry<T: Default>(list: &mut Vec<(u64, T)>, key: u64) -> Result<&mut T, Unjudged> {
    let position = match list.iter().position(|(k, _)| *k == key) {
        Some(position) => position,
        None if list.len() >= proposed::MAX_CALLS => return Err(Unjudged::StreamTooLarge),
        None => {
            list.push((key, T::default()));
            list.len() - 1
        }
    };
    Ok(&mut list[position].1)
}

/// Judges the calls `held` for choice `index` and writes what the agent gets: the held events
/// unchanged when every call is allowed, else rewritten, then the refusal text, then the
/// finishing event (`finish`: raw and parsed), its reason `stop` when no call is left. Calls
/// that cannot be judged (no name, neither a function nor a custom tool) end the stream.
fn release(
    index: u64,
    held: Held,
    finish: Option<(Vec<u8>, Value)>,
    judge: &mut dyn JudgeCalls,
    out: &mut Vec<u8>,
) -> Result<(), Unjudged> {
    // Every call read before any is judged.
    let calls = held
        .calls
        .iter()
        .map(|(at, call)| Ok((*at, call, call.arguments()?)))
        .collect::<Result<Vec<_>, Unjudged>>()?;
    let function = match &held.function {
        Some(call) => Some((call, call.arguments()?)),
        None => None,
    };
    let mut refused: Vec<u64> = Vec::new();
    let mut texts: Vec<String> = Vec::new();
    let mut refuses = |call: &Call, arguments: &str| {
        let verdict = judge.judge(&ProposedCall {
            id: &call.id,
            name: &call.name,
            arguments,
        });
        match verdict {
            Verdict::Allow => false,
            Verdict::Deny { text } => {
                texts.push(text);
                true
            }
        }
    };
    for (at, call, arguments) in &calls {
        if refuses(call, arguments) {
            refused.push(*at);
        }
    }
    let function_refused = function
        .as_ref()
        .is_some_and(|(call, arguments)| refuses(call, arguments));
    let function_kept = function.is_some() && !function_refused;
    if refused.is_empty() && !function_refused {
        for event in &held.events {
            out.extend_from_slice(event);
        }
        if let Some((raw, _)) = finish {
            out.extend_from_slice(&raw);
        }
        return Ok(());
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
                for choice in choices.iter_mut().filter_map(Value::as_object_mut) {
                    if index_or_zero_in(choice) == index {
                        choice.insert("finish_reason".into(), Value::from(reason));
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
    Ok(())
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
        if index_or_zero(choice) != index {
            anything = true;
            continue;
        }
        let Some(delta) = choice.get_mut("delta").and_then(Value::as_object_mut) else {
            continue;
        };
        if let Some(Value::Array(calls)) = delta.get_mut("tool_calls") {
            calls.retain(|c| !refused.contains(&index_or_zero(c)));
            for call in calls.iter_mut().filter_map(Value::as_object_mut) {
                let old = index_or_zero_in(call);
                if let Some(new) = kept.iter().position(|k| *k == old) {
                    call.insert("index".into(), Value::from(new));
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

/// A call of a whole body as it is judged: its id, its tool, its arguments (a function's, or
/// `{"input": <input>}` for a custom tool). A call that is no object, has neither a
/// `function` nor a `custom` part (or both), no name, or arguments or input that are not
/// text, cannot be judged.
fn whole_call(call: &Value) -> Result<(String, String, String), Unjudged> {
    let part = |key| call.get(key).filter(|p| !p.is_null());
    let mut read = Call::default();
    match (part("function"), part("custom")) {
        (Some(function), None) => read.add_pieces(function, false)?,
        (None, Some(custom)) => read.add_pieces(custom, true)?,
        _ => return Err(Unjudged::Unreadable),
    }
    let arguments = read.arguments()?;
    let id = call.get("id").and_then(Value::as_str).unwrap_or("");
    Ok((id.to_owned(), read.name, arguments))
}

/// The verdict on one call of a whole body, as [`whole_call`] reads it.
fn verdict(judge: &mut dyn JudgeCalls, call: &Value) -> Result<Verdict, Unjudged> {
    let (id, name, arguments) = whole_call(call)?;
    Ok(judge.judge(&ProposedCall {
        id: &id,
        name: &name,
        arguments: &arguments,
    }))
}

/// Judges every `choices[].message.tool_calls[]` (and `message.function_call`) of a complete
/// response; whether it changed.
fn judge_whole(response: &mut Value, judge: &mut dyn JudgeCalls) -> Result<bool, Unjudged> {
    let Some(choices) = response.get_mut("choices").and_then(Value::as_array_mut) else {
        return Ok(false);
    };
    // Every call read before any is judged.
    for message in choices.iter().filter_map(|c| c.get("message")) {
        read_each(message.get("tool_calls"), whole_call)?;
        if let Some(function) = message.get("function_call").filter(|f| f.is_object()) {
            whole_call(&serde_json::json!({ "function": function }))?;
        }
    }
    let mut changed = false;
    for choice in choices.iter_mut().filter_map(Value::as_object_mut) {
        let Some(message) = choice.get_mut("message").and_then(Value::as_object_mut) else {
            continue;
        };
        let mut texts = Vec::new();
        if let Some(Value::Array(calls)) = message.get_mut("tool_calls") {
            let mut kept = Vec::with_capacity(calls.len());
            for call in calls.drain(..) {
                match verdict(judge, &call)? {
                    Verdict::Allow => kept.push(call),
                    Verdict::Deny { text } => texts.push(text),
                }
            }
            *calls = kept;
        }
        if let Some(function) = message.get("function_call").filter(|f| f.is_object()) {
            let call = serde_json::json!({ "function": function });
            if let Verdict::Deny { text } = verdict(judge, &call)? {
                texts.push(text);
                message.remove("function_call");
            }
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
            choice.insert("finish_reason".into(), Value::from("stop"));
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests;
