//! What an LLM call that waits for approval asks, as approvers are shown it: the text of its
//! last user message (OpenAI Chat Completions and Responses, Anthropic Messages, Gemini), every
//! match of the inspect detectors masked (`[REDACTED:aws_access_key]`) before it is read,
//! bounded to [`PROMPT_MAX_CHARS`]. Only shown when the operator lets request content be kept
//! (`audit.record_content`), as a tool call's arguments are only shown to webhooks with
//! `include_arguments`.

use serde_json::{Value, json};

use crate::inspect::config::InspectConfig;
use crate::inspect::redact::redact;

/// The most characters of the last user message approvers are shown.
pub const PROMPT_MAX_CHARS: usize = 2000;

/// What `body` (an LLM request) asks, masked and bounded: `{"last_user_message": text,
/// "truncated": bool}`; `None` when no user message with text is found in it.
pub fn shown(body: &[u8], inspect: &InspectConfig) -> Option<Value> {
    let masked = redact(body, inspect, &|_| true);
    let body = masked.as_ref().map_or(body, |m| m.body.as_slice());
    let request: Value = serde_json::from_slice(body).ok()?;
    let text = last_user_text(&request)?;
    let truncated = text.chars().count() > PROMPT_MAX_CHARS;
    let text: String = if truncated {
        text.chars().take(PROMPT_MAX_CHARS).chain(['…']).collect()
    } else {
        text
    };
    Some(json!({ "last_user_message": text, "truncated": truncated }))
}

/// The text of the last user message of a request in any of the dialects: `messages` (Chat
/// Completions, Anthropic), `input` (Responses: a string, or items), `contents` (Gemini).
fn last_user_text(request: &Value) -> Option<String> {
    if let Some(Value::String(input)) = request.get("input") {
        return non_empty(input.clone());
    }
    let turns = ["messages", "input", "contents"]
        .iter()
        .find_map(|k| request.get(*k).and_then(Value::as_array))?;
    turns
        .iter()
        .rev()
        .filter(|turn| turn.get("role").and_then(Value::as_str) == Some("user"))
        .find_map(|turn| {
            let content = turn.get("content").or_else(|| turn.get("parts"))?;
            non_empty(text_of(content))
        })
}

/// The text of a message's content: a string, or the text of its parts (`text`, `input_text`
/// and Gemini's `{text}`), one per line; images, files and tool results are left out.
fn text_of(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter(|p| {
                matches!(
                    p.get("type").and_then(Value::as_str),
                    None | Some("text" | "input_text")
                )
            })
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn non_empty(text: String) -> Option<String> {
    (!text.trim().is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asks(body: Value) -> Option<String> {
        let shown = shown(body.to_string().as_bytes(), &InspectConfig::default())?;
        Some(shown["last_user_message"].as_str()?.to_owned())
    }

    #[test]
    fn the_last_user_message_is_read_in_every_dialect() {
        // Chat Completions: the last user turn, not the system prompt or the assistant's.
        let chat = json!({"model": "gpt-4o", "messages": [
            {"role": "system", "content": "you are a helpful agent"},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "an answer"},
            {"role": "user", "content": [{"type": "text", "text": "wire the money"},
                                         {"type": "image_url", "image_url": {"url": "data:"}}]},
        ]});
        assert_eq!(asks(chat).as_deref(), Some("wire the money"));
        // Anthropic: a tool result after the user's words is not what they asked.
        let anthropic = json!({"model": "claude", "system": "sys", "messages": [
            {"role": "user", "content": [{"type": "text", "text": "delete the old backups"}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "ls", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "a b"}]},
        ]});
        assert_eq!(asks(anthropic).as_deref(), Some("delete the old backups"));
        // Responses: a string input, or items.
        assert_eq!(
            asks(json!({"model": "gpt-4o", "input": "summarise the invoices"})).as_deref(),
            Some("summarise the invoices")
        );
        let responses = json!({"model": "gpt-4o", "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "rotate the keys"}]},
        ]});
        assert_eq!(asks(responses).as_deref(), Some("rotate the keys"));
        // Gemini.
        let gemini = json!({"contents": [
            {"role": "user", "parts": [{"text": "book the flight"}]},
            {"role": "model", "parts": [{"text": "which one?"}]},
        ]});
        assert_eq!(asks(gemini).as_deref(), Some("book the flight"));
        // Nothing a user said: nothing shown.
        assert_eq!(asks(json!({"model": "gpt-4o", "messages": []})), None);
        assert_eq!(shown(b"not json", &InspectConfig::default()), None);
    }

    #[test]
    fn secrets_in_the_prompt_are_masked_before_approvers_see_it() {
        let body = json!({"model": "gpt-4o", "messages": [
            {"role": "user", "content": "deploy with AKIAIOSFODNN7EXAMPLE please"},
        ]});
        let text = asks(body).unwrap();
        assert!(!text.contains("AKIAIOSFODNN7EXAMPLE"), "{text}");
        assert!(text.contains("[REDACTED:"), "{text}");
        assert!(
            text.starts_with("deploy with ") && text.ends_with(" please"),
            "{text}"
        );
    }

    #[test]
    fn a_long_prompt_is_bounded_and_says_so() {
        let long = "é".repeat(PROMPT_MAX_CHARS + 10);
        let body = json!({"messages": [{"role": "user", "content": long}]});
        let shown = shown(body.to_string().as_bytes(), &InspectConfig::default()).unwrap();
        let text = shown["last_user_message"].as_str().unwrap();
        assert_eq!(text.chars().count(), PROMPT_MAX_CHARS + 1);
        assert!(text.ends_with('…'));
        assert_eq!(shown["truncated"], true);
    }
}
