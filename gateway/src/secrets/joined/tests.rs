use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::protocol::Protocol;
use crate::protocol::proposed::EventFramer;
use crate::secrets::redact::Redactor;

const SECRET: &str = "sk-live-Xy7Qz9Lm2Pk4";

fn echo() -> Arc<Echo> {
    Arc::new(Echo::new([Zeroizing::new(SECRET.to_owned())], []))
}

fn joined(protocol: Protocol) -> Joined {
    Joined::new(echo(), protocol.dialect())
}

/// Runs `events` (whole SSE events, each given as its own chunk) through `j`.
fn run(j: &mut Joined, events: &[String]) -> String {
    let mut out = Vec::new();
    for e in events {
        out.extend_from_slice(&j.push(e.as_bytes()));
    }
    out.extend_from_slice(&j.finish());
    String::from_utf8(out).unwrap()
}

/// The data of each event of `stream`, parsed (`[DONE]` left out).
fn datas(stream: &str) -> Vec<Value> {
    let mut framer = EventFramer::default();
    let mut all = Vec::new();
    framer.push(stream.as_bytes(), |e| all.push(e.to_vec()));
    all.into_iter()
        .filter_map(|e| event_data(&e))
        .filter(|d| d != b"[DONE]")
        .map(|d| serde_json::from_slice(&d).unwrap_or_else(|e| panic!("{e}: {stream}")))
        .collect()
}

/// What an OpenAI SDK makes of a chat stream: each choice's content and each tool call's
/// arguments, joined.
fn chat_joined(stream: &str) -> BTreeMap<String, String> {
    let mut joined = BTreeMap::<String, String>::new();
    for data in datas(stream) {
        for choice in data["choices"].as_array().into_iter().flatten() {
            let i = &choice["index"];
            if let Some(text) = choice["delta"]["content"].as_str() {
                joined.entry(format!("{i}")).or_default().push_str(text);
            }
            for call in choice["delta"]["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
            {
                if let Some(text) = call["function"]["arguments"].as_str() {
                    let t = &call["index"];
                    joined.entry(format!("{i}/{t}")).or_default().push_str(text);
                }
            }
        }
    }
    joined
}

fn chat(choice: u64, content: &str, finish: Option<&str>) -> String {
    let data = json!({"id": "c1", "object": "chat.completion.chunk", "created": 1,
        "model": "m", "choices": [{"index": choice, "delta": {"content": content},
        "finish_reason": finish}]});
    format!("data: {data}\n\n")
}

fn chat_end() -> Vec<String> {
    let data = json!({"id": "c1", "object": "chat.completion.chunk", "created": 1,
        "model": "m", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
    vec![format!("data: {data}\n\n"), "data: [DONE]\n\n".to_owned()]
}

/// A chat stream whose choice 0 streams `text` cut at `cuts`, a delta a piece, then ends.
fn chat_stream(text: &str, cuts: &[usize]) -> Vec<String> {
    let mut events: Vec<String> = pieces(text, cuts)
        .into_iter()
        .map(|p| chat(0, p, None))
        .collect();
    events.extend(chat_end());
    events
}

/// `text` cut at `cuts` (byte offsets, ascending).
fn pieces<'a>(text: &'a str, cuts: &[usize]) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut at = 0;
    for &cut in cuts {
        out.push(&text[at..cut]);
        at = cut;
    }
    out.push(&text[at..]);
    out
}

fn assert_redacted_once(joined: &str, expected: &str, stream: &str) {
    assert_eq!(joined, expected, "{stream}");
    assert!(!stream.contains(SECRET), "{stream}");
    assert_eq!(stream.matches("[REDACTED]").count(), 1, "{stream}");
}

#[test]
fn a_secret_split_at_every_offset_over_two_deltas_is_redacted_once_in_the_joined_text() {
    let text = format!("your key is {SECRET}, keep it");
    let start = text.find(SECRET).unwrap();
    for cut in start..=start + SECRET.len() {
        let events = chat_stream(&text, &[cut]);
        let mut j = joined(Protocol::Openai);
        let stream = run(&mut j, &events);
        let joined = chat_joined(&stream);
        assert_redacted_once(&joined["0"], "your key is [REDACTED], keep it", &stream);
        assert_eq!(j.count(), 1, "cut at {cut}");
        assert!(stream.ends_with("data: [DONE]\n\n"), "{stream}");
    }
}

#[test]
fn a_secret_split_at_every_pair_of_offsets_over_three_deltas_is_redacted_once() {
    let text = format!("k={SECRET}");
    for a in 1..text.len() {
        for b in a..text.len() {
            let events = chat_stream(&text, &[a, b]);
            let mut j = joined(Protocol::Openai);
            let stream = run(&mut j, &events);
            assert_redacted_once(&chat_joined(&stream)["0"], "k=[REDACTED]", &stream);
        }
    }
}

#[test]
fn choices_are_joined_each_on_its_own() {
    // Choice 0 spreads the secret over three deltas interleaved with choice 1's, which
    // spreads it over two; pieces of it in two choices are not one secret.
    let events = vec![
        chat(0, "a sk-li", None),
        chat(1, "b sk-live-Xy", None),
        chat(0, "ve-Xy7Q", None),
        chat(1, "7Qz9Lm2Pk4 b", None),
        chat(0, "z9Lm2Pk4 a", Some("stop")),
        chat(1, " sk-live-", None),
        chat(2, "Xy7Qz9Lm2Pk4", Some("stop")),
        chat(1, "", Some("stop")),
        "data: [DONE]\n\n".to_owned(),
    ];
    let mut j = joined(Protocol::Openai);
    let stream = run(&mut j, &events);
    let joined = chat_joined(&stream);
    assert_eq!(joined["0"], "a [REDACTED] a", "{stream}");
    assert_eq!(joined["1"], "b [REDACTED] b sk-live-", "{stream}");
    assert_eq!(joined["2"], "Xy7Qz9Lm2Pk4", "{stream}");
    assert_eq!(j.count(), 2);
}

#[test]
fn tool_call_arguments_are_joined_per_call() {
    let call = |t: u64, args: &str| {
        let data = json!({"id": "c1", "object": "chat.completion.chunk", "created": 1,
            "model": "m", "choices": [{"index": 0, "delta": {"tool_calls": [
                {"index": t, "function": {"arguments": args}}]}, "finish_reason": null}]});
        format!("data: {data}\n\n")
    };
    let events = vec![
        call(0, r#"{"cmd":"curl -H 'x: sk-live"#),
        call(1, r#"{"q":"sk-live-"#),
        call(0, r#"-Xy7Qz9Lm2Pk4' x"}"#),
        call(1, r#"nope"}"#),
        chat(0, "", Some("tool_calls")),
    ];
    let mut j = joined(Protocol::Openai);
    let stream = run(&mut j, &events);
    let joined = chat_joined(&stream);
    assert_eq!(
        joined["0/0"], r#"{"cmd":"curl -H 'x: [REDACTED]' x"}"#,
        "{stream}"
    );
    assert_eq!(joined["0/1"], r#"{"q":"sk-live-nope"}"#, "{stream}");
}

#[test]
fn json_escapes_inside_a_delta_are_read_as_the_sdk_decodes_them() {
    // `\u0073` is `s`, `\/` a slash: the secret's text, however the event spells it.
    let slashed = Arc::new(Echo::new([Zeroizing::new("sk/live-Xy7Qz9".to_owned())], []));
    let events = [
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"key \\u0073k\\/li\"}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ve-Xy\\u0037Qz9!\"}}]}\n\n",
    ]
    .map(str::to_owned);
    let mut j = Joined::new(slashed, Protocol::Openai.dialect());
    let stream = run(&mut j, &events);
    assert_eq!(chat_joined(&stream)["0"], "key [REDACTED]!", "{stream}");
    assert!(!stream.contains("Qz9"), "{stream}");
}

#[test]
fn only_what_could_begin_the_secret_is_held_back_and_the_rest_flows_at_once() {
    let mut j = joined(Protocol::Openai);
    // Nothing near the secret: the event goes as it came, byte for byte.
    let plain = chat(0, "hello there", None);
    assert_eq!(&j.push(plain.as_bytes())[..], plain.as_bytes());
    // Ends with what could begin it: only that is held; the event goes at once without it.
    let out = j.push(chat(0, "then sk-liv", None).as_bytes());
    assert_eq!(
        chat_joined(std::str::from_utf8(&out).unwrap())["0"],
        "then "
    );
    assert_eq!(j.held(), "sk-liv".len());
    // Not the secret after all: the held text goes in front of the next delta.
    let out = j.push(chat(0, "ely day", None).as_bytes());
    assert_eq!(
        chat_joined(std::str::from_utf8(&out).unwrap())["0"],
        "sk-lively day"
    );
    assert_eq!(j.held(), 0);
}

#[test]
fn what_is_held_never_passes_the_longest_form_and_is_sent_when_the_channel_ends() {
    let mut j = joined(Protocol::Openai);
    let near = &SECRET[..SECRET.len() - 1];
    let _ = j.push(chat(0, &format!("x {near}"), None).as_bytes());
    assert!(j.held() < SECRET.len(), "{}", j.held());
    // The choice finishes: what it held is sent in a delta of its own, before the finish.
    let out = j.push(chat_end()[0].as_bytes());
    let out = std::str::from_utf8(&out).unwrap();
    assert_eq!(chat_joined(out)["0"], near, "{out}");
    let finish = out.find("\"finish_reason\":\"stop\"").unwrap();
    assert!(out.find(near).unwrap() < finish, "{out}");
    assert_eq!(j.held(), 0);
}

#[test]
fn text_held_at_the_end_of_the_stream_is_sent() {
    let mut j = joined(Protocol::Openai);
    let stream = run(&mut j, &[chat(0, "ends in sk-li", None)]);
    assert_eq!(chat_joined(&stream)["0"], "ends in sk-li", "{stream}");
}

fn anthropic(index: u64, delta: Value) -> String {
    let data = json!({"type": "content_block_delta", "index": index, "delta": delta});
    format!("event: content_block_delta\ndata: {data}\n\n")
}

fn anthropic_joined(stream: &str) -> BTreeMap<u64, String> {
    let mut joined = BTreeMap::<u64, String>::new();
    for data in datas(stream) {
        if data["type"] == "content_block_delta" {
            let delta = &data["delta"];
            let text = delta["text"]
                .as_str()
                .or(delta["partial_json"].as_str())
                .unwrap();
            let i = data["index"].as_u64().unwrap();
            joined.entry(i).or_default().push_str(text);
        }
    }
    joined
}

#[test]
fn anthropic_text_and_tool_input_are_joined_per_content_block() {
    for cut in 1..SECRET.len() {
        let (a, b) = SECRET.split_at(cut);
        let stop = |i: u64| {
            format!(
                "event: content_block_stop\ndata: {}\n\n",
                json!({"type": "content_block_stop", "index": i})
            )
        };
        let events = vec![
            anthropic(0, json!({"type": "text_delta", "text": format!("key {a}")})),
            anthropic(0, json!({"type": "text_delta", "text": format!("{b} ok")})),
            stop(0),
            anthropic(
                1,
                json!({"type": "input_json_delta", "partial_json": format!("{{\"k\":\"{a}")}),
            ),
            anthropic(
                1,
                json!({"type": "input_json_delta", "partial_json": format!("{b}\"}}")}),
            ),
            stop(1),
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n".to_owned(),
        ];
        let mut j = joined(Protocol::Anthropic);
        let stream = run(&mut j, &events);
        let joined = anthropic_joined(&stream);
        assert_eq!(joined[&0], "key [REDACTED] ok", "{stream}");
        assert_eq!(joined[&1], r#"{"k":"[REDACTED]"}"#, "{stream}");
        assert!(!stream.contains(SECRET), "{stream}");
        // Every event keeps its name.
        assert_eq!(
            stream.matches("event: ").count(),
            stream.matches("data: ").count(),
            "{stream}"
        );
    }
    // A block that stops with text held gets it before its stop.
    let events = vec![
        anthropic(0, json!({"type": "text_delta", "text": "a sk-live"})),
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
            .to_owned(),
    ];
    let stream = run(&mut joined(Protocol::Anthropic), &events);
    assert_eq!(anthropic_joined(&stream)[&0], "a sk-live", "{stream}");
    assert!(
        stream.find("sk-live").unwrap() < stream.find("content_block_stop").unwrap(),
        "{stream}"
    );
}

#[test]
fn responses_text_and_arguments_deltas_are_joined() {
    let delta = |kind: &str, seq: u64, output: u64, text: &str| {
        let data = json!({"type": kind, "sequence_number": seq, "item_id": "i",
            "output_index": output, "content_index": 0, "delta": text});
        format!("event: {kind}\ndata: {data}\n\n")
    };
    let (a, b) = SECRET.split_at(7);
    let events = vec![
        delta("response.output_text.delta", 1, 0, &format!("see {a}")),
        delta("response.output_text.delta", 2, 0, &format!("{b}.")),
        delta(
            "response.function_call_arguments.delta",
            3,
            1,
            "{\"k\":\"sk-",
        ),
        delta("response.function_call_arguments.delta", 4, 1, &SECRET[3..]),
        delta("response.function_call_arguments.delta", 5, 1, "\"}"),
        format!(
            "event: response.completed\ndata: {}\n\n",
            json!({"type": "response.completed", "response": {"status": "completed"}})
        ),
    ];
    let mut j = joined(Protocol::Openai);
    let stream = run(&mut j, &events);
    let mut texts = BTreeMap::<u64, String>::new();
    for data in datas(&stream) {
        if let Some(d) = data["delta"].as_str() {
            texts
                .entry(data["output_index"].as_u64().unwrap())
                .or_default()
                .push_str(d);
        }
    }
    assert_eq!(texts[&0], "see [REDACTED].", "{stream}");
    assert_eq!(texts[&1], r#"{"k":"[REDACTED]"}"#, "{stream}");
    assert_eq!(j.count(), 2);
}

#[test]
fn gemini_text_parts_are_joined_per_candidate_within_and_across_chunks() {
    let chunk = |parts: Value, finish: Option<&str>| {
        let mut candidate = json!({"content": {"parts": parts, "role": "model"}, "index": 0});
        if let Some(f) = finish {
            candidate["finishReason"] = json!(f);
        }
        format!("data: {}\n\n", json!({"candidates": [candidate]}))
    };
    let events = vec![
        chunk(json!([{"text": "key sk-"}, {"text": "live-Xy"}]), None),
        chunk(json!([{"text": "7Qz9Lm2Pk4 done"}]), Some("STOP")),
    ];
    let mut j = joined(Protocol::Gemini);
    let stream = run(&mut j, &events);
    let mut text = String::new();
    for data in datas(&stream) {
        for part in data["candidates"][0]["content"]["parts"]
            .as_array()
            .unwrap()
        {
            text.push_str(part["text"].as_str().unwrap());
        }
    }
    assert_eq!(text, "key [REDACTED] done", "{stream}");
}

#[test]
fn an_event_that_is_not_json_ends_the_stream_with_the_dialects_error() {
    let mut j = joined(Protocol::Openai);
    let events = vec![
        chat(0, "fine, sk-li", None),
        "data: {not json\n\n".to_owned(),
        chat(0, "ve-Xy7Qz9Lm2Pk4", None),
    ];
    let stream = run(&mut j, &events);
    assert!(j.failed());
    assert!(
        !stream.contains("Xy7Qz9"),
        "nothing after the error: {stream}"
    );
    let last = datas(&stream).pop().unwrap();
    assert_eq!(last["error"]["code"], UNREADABLE_CODE, "{stream}");
    // Anthropic's error is a named event.
    let mut j = joined(Protocol::Anthropic);
    let stream = run(&mut j, &["event: x\ndata: <html>\n\n".to_owned()]);
    assert!(stream.starts_with("event: error\n"), "{stream}");
    // `[DONE]`, comments and events without data pass.
    let mut j = joined(Protocol::Openai);
    let events = [": ping\n\n", "event: ping\n\n", "data: [DONE]\n\n"].map(str::to_owned);
    assert_eq!(run(&mut j, &events), events.concat());
    assert!(!j.failed());
}

#[test]
fn what_providers_stream_besides_deltas_passes_as_it_came() {
    // Keep-alive comments, `retry:` and `id:` lines, an empty `data:`, Anthropic's `ping`
    // with its JSON, OpenAI's `[DONE]` as the stream's last bytes with no blank line after.
    let events = [
        ": keep-alive\n\n",
        "retry: 3000\nid: 7\n\n",
        "data:\n\n",
        "event: ping\ndata: {\"type\": \"ping\"}\n\n",
        "data: [DONE]",
    ]
    .map(str::to_owned);
    for protocol in [Protocol::Openai, Protocol::Anthropic, Protocol::Gemini] {
        let mut j = joined(protocol);
        assert_eq!(run(&mut j, &events), events.concat(), "{protocol:?}");
        assert!(!j.failed(), "{protocol:?}");
    }
    // Gemini ends its events with CRLF: they pass as they came, and a secret spread over two
    // of them is still joined.
    let gemini = |text: &str| {
        let data = json!({"candidates": [{"content": {"parts": [{"text": text}],
            "role": "model"}, "index": 0}]});
        format!("data: {data}\r\n\r\n")
    };
    let plain = [gemini("nothing to see"), gemini("here")];
    let mut j = joined(Protocol::Gemini);
    assert_eq!(run(&mut j, &plain), plain.concat());
    let mut j = joined(Protocol::Gemini);
    let stream = run(
        &mut j,
        &[gemini("key sk-li"), gemini("ve-Xy7Qz9Lm2Pk4 done")],
    );
    let text: String = datas(&stream)
        .iter()
        .map(|d| {
            d["candidates"][0]["content"]["parts"][0]["text"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(text, "key [REDACTED] done", "{stream}");
    assert!(!j.failed());
}

#[test]
fn too_many_channels_holding_text_end_the_stream() {
    let mut j = joined(Protocol::Openai);
    let events: Vec<String> = (0..=MAX_HELD_CHANNELS as u64)
        .map(|i| chat(i, "sk-live", None))
        .collect();
    let stream = run(&mut j, &events);
    assert!(j.failed(), "{stream}");
    assert!(j.held() == 0);
}

#[test]
fn the_redactor_joins_an_event_stream_split_anywhere_into_chunks() {
    // Whole events cut into chunks at every byte: the events are framed again, and the byte
    // level redaction after the join still sees the rest of the body.
    let events = chat_stream(&format!("a {SECRET} b"), &[5, 12]);
    let body = events.concat();
    for cut in 1..body.len() {
        let mut r = Redactor::new(echo())
            .unwrap()
            .joining(Protocol::Openai.dialect());
        let mut out = Vec::new();
        out.extend_from_slice(&r.push(Bytes::copy_from_slice(&body.as_bytes()[..cut])));
        out.extend_from_slice(&r.push(Bytes::copy_from_slice(&body.as_bytes()[cut..])));
        out.extend_from_slice(&r.finish());
        let stream = String::from_utf8(out).unwrap();
        assert_redacted_once(&chat_joined(&stream)["0"], "a [REDACTED] b", &stream);
        assert_eq!((r.count(), r.joined_count()), (1, 1), "cut at {cut}");
    }
    // Without joining, the pieces pass: what this module is for.
    let mut r = Redactor::new(echo()).unwrap();
    let mut out = Vec::new();
    out.extend_from_slice(&r.push(Bytes::from(body.clone())));
    out.extend_from_slice(&r.finish());
    let stream = String::from_utf8(out).unwrap();
    assert_eq!(chat_joined(&stream)["0"], format!("a {SECRET} b"));
}

#[test]
fn text_a_block_or_a_part_starts_with_is_joined_with_its_deltas() {
    // An Anthropic block that starts with text: the SDK puts its deltas after it.
    let start = |text: &str| {
        let data = json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": text}});
        format!("event: content_block_start\ndata: {data}\n\n")
    };
    let stop = "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n";
    let sdk_text = |stream: &str| {
        let mut text = String::new();
        for data in datas(stream) {
            if let Some(t) = data["content_block"]["text"].as_str() {
                text.push_str(t);
            }
            if let Some(t) = data["delta"]["text"].as_str() {
                text.push_str(t);
            }
        }
        text
    };
    let events = vec![
        start("sk-"),
        anthropic(
            0,
            json!({"type": "text_delta", "text": format!("{} x", &SECRET[3..])}),
        ),
        stop.to_owned(),
    ];
    let stream = run(&mut joined(Protocol::Anthropic), &events);
    assert_redacted_once(&sdk_text(&stream), "[REDACTED] x", &stream);
    // Held in the start and the block stops: sent as a delta, named as deltas are.
    let stream = run(
        &mut joined(Protocol::Anthropic),
        &[start("a sk-live"), stop.to_owned()],
    );
    assert_eq!(sdk_text(&stream), "a sk-live", "{stream}");
    assert!(
        stream.contains("event: content_block_delta\ndata: "),
        "{stream}"
    );
    // A Responses content part that starts with text.
    let added = json!({"type": "response.content_part.added", "item_id": "msg_1",
        "output_index": 0, "content_index": 0,
        "part": {"type": "output_text", "text": "sk-live-", "annotations": []}});
    let delta = json!({"type": "response.output_text.delta", "item_id": "msg_1",
        "output_index": 0, "content_index": 0, "delta": &SECRET[8..]});
    let events = [
        format!("event: response.content_part.added\ndata: {added}\n\n"),
        format!("event: response.output_text.delta\ndata: {delta}\n\n"),
    ];
    let stream = run(&mut joined(Protocol::Openai), &events);
    let mut text = String::new();
    for data in datas(&stream) {
        text.push_str(data["part"]["text"].as_str().unwrap_or_default());
        text.push_str(data["delta"].as_str().unwrap_or_default());
    }
    assert_redacted_once(&text, "[REDACTED]", &stream);
}
