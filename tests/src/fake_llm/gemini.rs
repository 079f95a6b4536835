//! Gemini shapes: generateContent, streamGenerateContent (SSE with `alt=sse`, else a streamed
//! JSON array), countTokens.

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use serde_json::{Value, json};

use super::{
    COMPLETION_TOKENS, Exchange, FakeBody, PROMPT_TOKENS, TEXT_CHUNKS, TOOL_ARGUMENTS, full_text,
    json_response, sse_response,
};

pub(super) fn respond(ex: Exchange) -> Option<Response<FakeBody>> {
    let (path, query) = ex
        .request
        .path
        .split_once('?')
        .unwrap_or((ex.request.path.as_str(), ""));
    let rest = path
        .strip_prefix("/v1beta/models/")
        .or_else(|| path.strip_prefix("/v1/models/"))?;
    let (model, method) = rest.split_once(':')?;
    let model = model.to_owned();
    let sse = query.split('&').any(|kv| kv == "alt=sse");
    if ex.request.method != Method::POST {
        return None;
    }
    match method {
        "generateContent" => Some(json_response(&whole(&model, &ex.json))),
        "streamGenerateContent" => Some(stream(ex, &model, sse)),
        "countTokens" => Some(json_response(&json!({"totalTokens": PROMPT_TOKENS}))),
        _ => None,
    }
}

/// The provider's error body for `status`.
pub(super) fn error_body(status: StatusCode) -> Value {
    let (message, kind) = match status.as_u16() {
        400 => ("Invalid JSON payload received.", "INVALID_ARGUMENT"),
        401 | 403 => (
            "API key not valid. Please pass a valid API key.",
            "PERMISSION_DENIED",
        ),
        404 => ("Requested entity was not found.", "NOT_FOUND"),
        429 => (
            "Resource has been exhausted (e.g. check quota).",
            "RESOURCE_EXHAUSTED",
        ),
        503 => (
            "The model is overloaded. Please try again later.",
            "UNAVAILABLE",
        ),
        _ => ("Internal error encountered.", "INTERNAL"),
    };
    json!({"error": {"code": status.as_u16(), "message": message, "status": kind}})
}

/// The calls the model proposes: one per declared function whose description is
/// `propose:<arguments JSON>` (parallel calls, as a test asks for them).
fn calls_to_propose(json: &Value) -> Vec<(String, Value)> {
    let Some(tools) = json.get("tools").and_then(Value::as_array) else {
        return Vec::new();
    };
    let declarations = tools
        .iter()
        .filter_map(|t| t.get("functionDeclarations")?.as_array())
        .flatten();
    super::proposed_calls(declarations, "")
        .into_iter()
        .filter_map(|(name, args)| Some((name, serde_json::from_str(&args).ok()?)))
        .collect()
}

fn function_to_call(json: &Value) -> Option<String> {
    let tools = json.get("tools")?.as_array()?;
    let declaration = tools
        .iter()
        .find_map(|t| t.get("functionDeclarations")?.as_array()?.first())?;
    declaration.get("name")?.as_str().map(str::to_owned)
}

fn usage(candidates: u64) -> Value {
    let mut usage =
        json!({"promptTokenCount": PROMPT_TOKENS, "totalTokenCount": PROMPT_TOKENS + candidates});
    if candidates > 0 {
        usage["candidatesTokenCount"] = json!(candidates);
    }
    usage["promptTokensDetails"] = json!([{"modality": "TEXT", "tokenCount": PROMPT_TOKENS}]);
    usage
}

fn candidate(parts: Value, finish: Option<&str>) -> Value {
    let mut c = json!({"content": {"parts": parts, "role": "model"}, "index": 0});
    if let Some(reason) = finish {
        c["finishReason"] = json!(reason);
    }
    c
}

fn whole(model: &str, json: &Value) -> Value {
    let proposed = calls_to_propose(json);
    let parts = match function_to_call(json) {
        Some(_) if !proposed.is_empty() => Value::from(
            proposed
                .iter()
                .map(|(name, args)| json!({"functionCall": {"name": name, "args": args}}))
                .collect::<Vec<_>>(),
        ),
        Some(name) => {
            json!([{"functionCall": {"name": name, "args": serde_json::from_str::<Value>(TOOL_ARGUMENTS).unwrap_or(Value::Null)}}])
        }
        None => json!([{"text": full_text()}]),
    };
    json!({
        "candidates": [candidate(parts, Some("STOP"))],
        "usageMetadata": usage(COMPLETION_TOKENS),
        "modelVersion": model, "responseId": "fakeW4RD3N"
    })
}

/// The events of a stream that proposes `calls`: a text, one call per event, then the end
/// with the usage.
fn call_events(model: &str, calls: &[(String, Value)]) -> Vec<Value> {
    let event = |parts: Value, finish: Option<&str>, produced: u64| {
        json!({
            "candidates": [candidate(parts, finish)],
            "usageMetadata": usage(produced),
            "modelVersion": model, "responseId": "fakeW4RD3N"
        })
    };
    let mut events = vec![event(json!([{"text": TEXT_CHUNKS[0]}]), None, 0)];
    for (name, args) in calls {
        events.push(event(
            json!([{"functionCall": {"name": name, "args": args}}]),
            None,
            0,
        ));
    }
    events.push(event(
        json!([{"text": ""}]),
        Some("STOP"),
        COMPLETION_TOKENS,
    ));
    events
}

/// `bytes` in three writes: a reader must join an event's pieces.
fn in_pieces(bytes: &[u8]) -> Vec<Bytes> {
    let third = bytes.len().div_ceil(3).max(1);
    bytes.chunks(third).map(Bytes::copy_from_slice).collect()
}

fn stream(ex: Exchange, model: &str, sse: bool) -> Response<FakeBody> {
    let calls = calls_to_propose(&ex.json);
    if !calls.is_empty() {
        let values = call_events(model, &calls);
        let count = values.len();
        let mut writes = Vec::new();
        for (i, v) in values.iter().enumerate() {
            let text = if sse {
                format!("data: {v}\r\n\r\n")
            } else {
                let open = if i == 0 { "[" } else { "" };
                let close = if i + 1 == count { "]" } else { "\r\n," };
                format!("{open}{v}{close}")
            };
            writes.extend(in_pieces(text.as_bytes()));
        }
        let mut response = if sse {
            sse_response(ex.stream.spawn(writes, 1))
        } else {
            Response::new(ex.stream.spawn(writes, 1))
        };
        if !sse {
            response.headers_mut().insert(
                "content-type",
                http::HeaderValue::from_static("application/json; charset=UTF-8"),
            );
        }
        return response;
    }
    let last = TEXT_CHUNKS.len() - 1;
    let values: Vec<Value> = TEXT_CHUNKS
        .iter()
        .enumerate()
        .map(|(i, piece)| {
            let finish = (i == last).then_some("STOP");
            let produced = if i == last { COMPLETION_TOKENS } else { 0 };
            json!({
                "candidates": [candidate(json!([{"text": piece}]), finish)],
                "usageMetadata": usage(produced),
                "modelVersion": model, "responseId": "fakeW4RD3N"
            })
        })
        .collect();
    if sse {
        // Gemini frames its events with CRLF line ends.
        let events = values
            .iter()
            .map(|v| Bytes::from(format!("data: {v}\r\n\r\n")))
            .collect();
        return sse_response(ex.stream.spawn(events, 1));
    }
    let count = values.len();
    let events = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let open = if i == 0 { "[" } else { "" };
            let close = if i + 1 == count { "]" } else { "\r\n," };
            Bytes::from(format!("{open}{v}{close}"))
        })
        .collect();
    let mut response = Response::new(ex.stream.spawn(events, 1));
    response.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    response
}
