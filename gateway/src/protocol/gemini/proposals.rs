//! `generateContent` and `streamGenerateContent` responses with their proposed calls judged:
//! `candidates[].content.parts[].functionCall`, or `function_call` (the google-genai SDKs
//! accept the field's snake_case name too). A Gemini function call arrives whole in one part, so a stream holds nothing: each event is judged as it passes, sent byte for byte
//! when every call in it is allowed, else rewritten with each refused call replaced by a text
//! part that names it. A JSON-array stream (no `alt=sse`) and a whole body are judged at
//! their end.

use serde_json::{Value, json};

use crate::protocol::proposed::{
    self, EventRewriter, JudgeCalls, Judged, ProposalRewriter, ProposedCall, Unjudged, Verdict,
};

/// A part's call, by either name the SDKs read it under.
const CALL_KEYS: [&str; 2] = ["functionCall", "function_call"];

/// How Gemini answers carry calls.
static CALLS: Judged = Judged {
    needles: &[b"functioncall", b"function_call"],
    keys: &[
        "candidates",
        "content",
        "parts",
        "functionCall",
        "function_call",
        "name",
        "args",
        "id",
        "partialArgs",
        "partial_args",
        "willContinue",
        "will_continue",
    ],
    free: &["args"],
    judge_body,
    unjudged_body: unjudged,
    named_error: false,
};

/// The rewriter for a Gemini response (`event_stream`: `alt=sse`).
pub fn rewriter(event_stream: bool) -> Box<dyn ProposalRewriter> {
    proposed::rewriter(event_stream, || Stream, &CALLS)
}

/// The error that replaces a body that cannot be judged (too large, or not JSON).
fn unjudged(why: Unjudged) -> Value {
    json!({"error": {"code": 502, "status": "UNAVAILABLE", "message": why.message()}})
}

#[derive(Debug, Default, Clone)]
struct Stream;

impl EventRewriter for Stream {
    /// Each event's calls are judged whole: nothing is held.
    fn held(&self) -> usize {
        0
    }

    fn end(&mut self, _judge: &mut dyn JudgeCalls, _out: &mut Vec<u8>) -> Result<(), Unjudged> {
        Ok(())
    }

    fn event(
        &mut self,
        event: Vec<u8>,
        judge: &mut dyn JudgeCalls,
        out: &mut Vec<u8>,
    ) -> Result<(), Unjudged> {
        if CALLS.may_mention(&event)
            && let Some(mut value) = CALLS.event_json(&event)?
            && judge_response(&mut value, judge)?
        {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(value.to_string().as_bytes());
            out.extend_from_slice(b"\r\n\r\n");
            return Ok(());
        }
        out.extend_from_slice(&event);
        Ok(())
    }
}

/// Judges a whole body: one response, or a JSON array of them (a stream without `alt=sse`).
fn judge_body(value: &mut Value, judge: &mut dyn JudgeCalls) -> Result<bool, Unjudged> {
    match value.as_array_mut() {
        // Every response is judged: no short circuit.
        Some(all) => {
            let mut changed = false;
            for one in all.iter_mut() {
                changed |= judge_response(one, judge)?;
            }
            Ok(changed)
        }
        None => judge_response(value, judge),
    }
}

/// Whether a call streams its arguments in pieces (`partialArgs`, `willContinue: true`, as
/// Gemini streams function-call arguments): Warden judges whole calls only, so such a call
/// cannot be judged.
fn streams_arguments(call: &Value) -> bool {
    ["partialArgs", "partial_args"]
        .iter()
        .any(|key| call.get(key).is_some_and(|v| !v.is_null()))
        || ["willContinue", "will_continue"]
            .iter()
            .any(|key| call.get(key).and_then(Value::as_bool) == Some(true))
}

/// Judges the function calls of one `GenerateContentResponse`; whether it changed. A call
/// whose arguments come in pieces cannot be judged.
fn judge_response(response: &mut Value, judge: &mut dyn JudgeCalls) -> Result<bool, Unjudged> {
    let Some(candidates) = response.get_mut("candidates").and_then(Value::as_array_mut) else {
        return Ok(false);
    };
    let calls = candidates
        .iter()
        .filter_map(|c| c.pointer("/content/parts").and_then(Value::as_array))
        .flatten()
        .flat_map(|part| CALL_KEYS.iter().filter_map(|key| part.get(key)));
    for call in calls {
        if streams_arguments(call) {
            return Err(Unjudged::Unreadable);
        }
    }
    let mut changed = false;
    for candidate in candidates.iter_mut() {
        let Some(parts) = candidate
            .pointer_mut("/content/parts")
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        for part in parts.iter_mut() {
            // Both names are judged when a part holds both: which one an SDK reads varies.
            let mut texts = Vec::new();
            for call in CALL_KEYS.iter().filter_map(|key| part.get(key)) {
                let args = call
                    .get("args")
                    .map_or_else(|| "{}".to_owned(), Value::to_string);
                let verdict = judge.judge(&ProposedCall {
                    id: call.get("id").and_then(Value::as_str).unwrap_or(""),
                    name: call.get("name").and_then(Value::as_str).unwrap_or(""),
                    arguments: &args,
                });
                if let Verdict::Deny { text } = verdict {
                    texts.push(text);
                }
            }
            if !texts.is_empty() {
                *part = json!({ "text": texts.join("\n") });
                changed = true;
            }
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct DenyExec;

    impl JudgeCalls for DenyExec {
        fn judge(&mut self, call: &ProposedCall<'_>) -> Verdict {
            if call.name == "exec" {
                Verdict::Deny {
                    text: format!("refused exec {}", call.arguments),
                }
            } else {
                Verdict::Allow
            }
        }
    }

    /// What a stream of one event, `response`, becomes when `exec` is refused.
    /// What the agent gets for the whole answer `body` (calls to `exec` refused).
    fn whole(body: &str) -> Vec<u8> {
        let mut rewriter = rewriter(false);
        let mut out = rewriter.push(body.as_bytes(), &mut DenyExec).to_vec();
        out.extend_from_slice(&rewriter.finish(&mut DenyExec));
        out
    }

    fn streamed(response: &str) -> String {
        let mut stream = rewriter(true);
        let mut out = stream
            .push(
                format!("data: {response}\r\n\r\n").as_bytes(),
                &mut DenyExec,
            )
            .to_vec();
        out.extend_from_slice(&stream.finish(&mut DenyExec));
        String::from_utf8(out).unwrap_or_default()
    }

    fn response(name: &str) -> Value {
        json!({"candidates": [{"content": {"role": "model", "parts": [
            {"functionCall": {"name": name, "args": {"command": "rm -rf /"}}}]},
            "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 4}})
    }

    #[test]
    fn an_allowed_call_streams_through_and_a_refused_one_becomes_text() {
        let allowed = format!("data: {}\r\n\r\n", response("read"));
        let refused = format!("data: {}\r\n\r\n", response("exec"));
        let mut rewriter = rewriter(true);
        let mut out = Vec::new();
        for piece in format!("{allowed}{refused}").as_bytes().chunks(9) {
            out.extend_from_slice(&rewriter.push(piece, &mut DenyExec));
        }
        out.extend_from_slice(&rewriter.finish(&mut DenyExec));
        let out = String::from_utf8(out).unwrap_or_default();
        assert!(out.starts_with(&allowed), "{out}");
        let second: Value =
            serde_json::from_str(out[allowed.len()..].trim_start_matches("data: ").trim_end())
                .unwrap_or(Value::Null);
        assert_eq!(
            second["candidates"][0]["content"]["parts"],
            json!([{"text": r#"refused exec {"command":"rm -rf /"}"#}])
        );
        assert_eq!(second["usageMetadata"]["candidatesTokenCount"], 4);
    }

    #[test]
    fn a_json_array_stream_is_judged_whole() {
        let body = json!([response("read"), response("exec")]).to_string();
        let v: Value = serde_json::from_slice(&whole(&body)).unwrap_or(Value::Null);
        assert!(v[0]["candidates"][0]["content"]["parts"][0]["functionCall"].is_object());
        assert!(v[1]["candidates"][0]["content"]["parts"][0]["text"].is_string());
    }

    #[test]
    fn a_call_spelled_in_snake_case_is_judged_too() {
        // The google-genai SDKs read `function_call` as `functionCall`.
        let snake = response("exec")
            .to_string()
            .replace("functionCall", "function_call");
        let v: Value = serde_json::from_slice(&whole(&snake)).unwrap_or(Value::Null);
        assert_eq!(
            v["candidates"][0]["content"]["parts"],
            json!([{"text": r#"refused exec {"command":"rm -rf /"}"#}])
        );
        let out = streamed(&snake);
        assert!(
            !out.contains("function_call") && out.contains("refused exec"),
            "{out}"
        );
    }

    #[test]
    fn a_call_key_in_another_case_is_not_delivered() {
        // Go's encoding/json reads `FunctionCall` as `functionCall`.
        let other = response("exec")
            .to_string()
            .replace("functionCall", "FunctionCall");
        let v: Value = serde_json::from_slice(&whole(&other)).unwrap_or(Value::Null);
        assert_eq!(v["error"]["message"], Unjudged::Unreadable.message(), "{v}");
    }

    #[test]
    fn a_call_whose_arguments_stream_in_pieces_is_not_delivered() {
        for piece in [
            json!({"name": "exec", "partialArgs": [{"jsonPath": "$.command", "stringValue": "rm"}], "willContinue": true}),
            json!({"name": "exec", "willContinue": true}),
            json!({"name": "exec", "partial_args": []}),
        ] {
            let body = json!({"candidates": [{"content": {"role": "model", "parts": [
                {"functionCall": piece}]}}]})
            .to_string();
            let v: Value = serde_json::from_slice(&whole(&body)).unwrap_or(Value::Null);
            assert_eq!(v["error"]["message"], Unjudged::Unreadable.message(), "{v}");

            let out = streamed(&body);
            assert!(
                !out.contains("exec") && out.contains(Unjudged::Unreadable.message()),
                "{out}"
            );
        }
    }

    #[test]
    fn arguments_may_use_any_keys() {
        let body = json!({"candidates": [{"content": {"role": "model", "parts": [
            {"functionCall": {"name": "read", "args": {"Name": "a", "FunctionCall": 1}}}]}}]})
        .to_string();
        assert_eq!(String::from_utf8(whole(&body)).unwrap_or_default(), body);
    }
}
