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

/// Joins a stream of `kind` (in its provider's dialect).
fn joined(kind: Kind) -> Joined {
    let protocol = match kind {
        Kind::Anthropic => Protocol::Anthropic,
        Kind::Gemini => Protocol::Gemini,
        Kind::Chat | Kind::Responses => Protocol::Openai,
    };
    Joined::new(echo(), protocol.dialect(), kind)
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

/// The data of each event of `stream`, parsed (`[DONE]` and empty data left out).
fn datas(stream: &str) -> Vec<Value> {
    let mut framer = EventFramer::default();
    let mut all = Vec::new();
    framer.push(stream.as_bytes(), |e| all.push(e.to_vec()));
    all.into_iter()
        .filter_map(|e| event_data(&e))
        .filter(|d| d != b"[DONE]" && !d.is_empty())
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
        let mut j = joined(Kind::Chat);
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
            let mut j = joined(Kind::Chat);
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
    let mut j = joined(Kind::Chat);
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
    let mut j = joined(Kind::Chat);
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
    let mut j = Joined::new(slashed, Protocol::Openai.dialect(), Kind::Chat);
    let stream = run(&mut j, &events);
    assert_eq!(chat_joined(&stream)["0"], "key [REDACTED]!", "{stream}");
    assert!(!stream.contains("Qz9"), "{stream}");
}

#[test]
fn an_event_that_could_begin_the_secret_is_held_whole_then_released_byte_for_byte() {
    let mut j = joined(Kind::Chat);
    // Nothing near the secret: the event goes as it came, byte for byte.
    let plain = chat(0, "hello there", None);
    assert_eq!(&j.push(plain.as_bytes())[..], plain.as_bytes());
    // Ends with what could begin it: the event is held whole, and the events after it wait
    // behind it in order (another choice's, one with no delta)...
    let near = chat(0, "then sk-liv", None);
    let other = chat(1, "meanwhile", None);
    let role = "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"}}]}\n\n";
    assert!(j.push(near.as_bytes()).is_empty());
    assert!(j.push(other.as_bytes()).is_empty());
    assert!(j.push(role.as_bytes()).is_empty());
    assert_eq!(j.held(), near.len() + other.len() + role.len());
    // Not the secret after all: all of them go on as they came, in order.
    let decides = chat(0, "ely day", None);
    let out = j.push(decides.as_bytes());
    assert_eq!(
        std::str::from_utf8(&out).unwrap(),
        [near, other, role.to_owned(), decides].concat()
    );
    assert_eq!(j.held(), 0);
}

#[test]
fn a_stream_with_no_secret_passes_byte_for_byte_wherever_its_deltas_are_cut() {
    // Near misses of every length, cut at every pair of offsets into three deltas.
    let text = format!(
        "s sk-lively {} sk-live-Xy7Q7 end",
        &SECRET[..SECRET.len() - 1]
    );
    for a in 1..text.len() {
        for b in (a..text.len()).step_by(3) {
            let events = chat_stream(&text, &[a, b]);
            let mut j = joined(Kind::Chat);
            assert_eq!(run(&mut j, &events), events.concat(), "cut at {a}, {b}");
            assert_eq!(j.count(), 0);
        }
    }
}

#[test]
fn a_secret_rewrites_only_the_events_that_carry_a_piece_of_it() {
    let (a, b) = SECRET.split_at(9);
    let first = chat(0, &format!("key {a}"), None);
    let other = chat(1, "sk-lively", None);
    let last = chat(0, &format!("{b} ok"), None);
    let after = chat(1, " day", None);
    let events = [first, other.clone(), last, after.clone()];
    let mut j = joined(Kind::Chat);
    let stream = run(&mut j, &events);
    let sent: Vec<&str> = stream.split_inclusive("\n\n").collect();
    assert_eq!(sent.len(), 4, "{stream}");
    // `[REDACTED]` where the secret began, the rest of it gone from the event it ended in.
    assert_eq!(chat_joined(sent[0])["0"], "key [REDACTED]", "{stream}");
    assert_eq!(chat_joined(sent[2])["0"], " ok", "{stream}");
    // The other choice's events, held behind them, as they came.
    assert_eq!((sent[1], sent[3]), (other.as_str(), after.as_str()));
    assert_redacted_once(&chat_joined(&stream)["0"], "key [REDACTED] ok", &stream);
}

#[test]
fn what_stays_undecided_never_passes_the_longest_form_and_the_end_decides_it() {
    let mut j = joined(Kind::Chat);
    let near = &SECRET[..SECRET.len() - 1];
    let first = chat(0, &format!("x {near}"), None);
    assert!(j.push(first.as_bytes()).is_empty());
    let undecided: usize = j
        .channels
        .iter()
        .map(|(_, u)| match u {
            Undecided::Held(pieces) => pieces
                .iter()
                .map(|p| j.text(p.seq, &p.delta).unwrap().len() - p.start)
                .sum(),
            Undecided::Moved(m) => m.text.len(),
        })
        .sum();
    assert_eq!(undecided, near.len());
    // The choice finishes: an SDK still joins what comes after, so the events stay held...
    assert!(j.push(chat_end()[0].as_bytes()).is_empty());
    // ...until `[DONE]`, which ends every channel: all go on as they came.
    let out = j.push(chat_end()[1].as_bytes());
    assert_eq!(
        std::str::from_utf8(&out).unwrap(),
        [first, chat_end().concat()].concat()
    );
    assert_eq!(j.held(), 0);
}

#[test]
fn held_events_past_their_bound_go_on_with_the_undecided_text_moved_to_the_next_delta() {
    let (a, b) = SECRET.split_at(6);
    let call = |args: &str| {
        let data = json!({"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "function": {"arguments": args}}]}}]});
        format!("data: {data}\n\n")
    };
    let big = "y".repeat(1000);
    let mut events = vec![chat(0, &format!("key {a}"), None)];
    events.extend((0..40).map(|_| call(&big)));
    events.push(chat(0, &format!("{b} ok"), None));
    events.extend(chat_end());
    let mut j = joined(Kind::Chat);
    let mut out = Vec::new();
    let mut released_before_the_end = false;
    for e in &events[..41] {
        let sent = j.push(e.as_bytes());
        released_before_the_end |= !sent.is_empty();
        out.extend_from_slice(&sent);
    }
    assert!(released_before_the_end, "held events are bounded");
    assert!(j.held() < MAX_HELD_EVENTS + 2048, "{}", j.held());
    for e in &events[41..] {
        out.extend_from_slice(&j.push(e.as_bytes()));
    }
    out.extend_from_slice(&j.finish());
    let stream = String::from_utf8(out).unwrap();
    assert_redacted_once(&chat_joined(&stream)["0"], "key [REDACTED] ok", &stream);
    assert_eq!(chat_joined(&stream)["0/0"], big.repeat(40));
    assert_eq!(j.spread(), 1);
    // Moved out and the channel ends first: the text goes in a delta of its own.
    let mut events = vec![chat(0, "key sk-li", None)];
    events.extend((0..40).map(|_| call(&big)));
    events.extend(chat_end());
    let stream = run(&mut joined(Kind::Chat), &events);
    assert_eq!(chat_joined(&stream)["0"], "key sk-li", "{stream}");
    assert!(stream.ends_with("data: [DONE]\n\n"));
    // Events with no delta (a role-only or empty delta, a usage chunk), empty `data:` and
    // `id:` lines are held behind an undecided channel too, and bounded as well.
    let pad = |n: usize| {
        let data = json!({"choices": [{"index": 0, "delta": {}}], "pad": "y".repeat(1000),
            "n": n});
        format!("data: {data}\n\n")
    };
    let id = format!("id: {}\n\n", "z".repeat(1000));
    let fillers: [Vec<String>; 2] = [
        (0..100).map(pad).collect(),
        (0..100)
            .flat_map(|_| [id.clone(), "data:\n\n".to_owned()])
            .collect(),
    ];
    for filler in fillers {
        let mut events = vec![chat(0, "yes", None)];
        events.extend(filler.iter().cloned());
        events.push(chat(0, " and no", None));
        events.extend(chat_end());
        let mut j = joined(Kind::Chat);
        let mut out = Vec::new();
        for e in &events {
            out.extend_from_slice(&j.push(e.as_bytes()));
            assert!(j.held() < MAX_HELD_EVENTS + 2048, "{}", j.held());
        }
        out.extend_from_slice(&j.finish());
        let stream = String::from_utf8(out).unwrap();
        assert_eq!(chat_joined(&stream)["0"], "yes and no");
        assert!(stream.contains(&filler.concat()), "they go on in order");
    }
}

#[test]
fn a_chat_choice_is_joined_after_its_finish_reason_too() {
    // The SDK joins a choice's deltas by its index, whatever came before: a `finish_reason`
    // does not end what it joins.
    let (a, b) = SECRET.split_at(7);
    let events = [
        chat(0, a, None),
        chat(0, "", Some("stop")),
        chat(0, b, None),
        "data: [DONE]\n\n".to_owned(),
    ];
    let mut j = joined(Kind::Chat);
    let stream = run(&mut j, &events);
    assert_redacted_once(&chat_joined(&stream)["0"], "[REDACTED]", &stream);
}

#[test]
fn text_held_at_the_end_of_the_stream_is_sent() {
    let mut j = joined(Kind::Chat);
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
        let mut j = joined(Kind::Anthropic);
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
    // Text held when its block stops goes on before the stop.
    let events = vec![
        anthropic(0, json!({"type": "text_delta", "text": "a sk-live"})),
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
            .to_owned(),
    ];
    let stream = run(&mut joined(Kind::Anthropic), &events);
    assert_eq!(anthropic_joined(&stream)[&0], "a sk-live", "{stream}");
    assert!(
        stream.find("sk-live").unwrap() < stream.find("content_block_stop").unwrap(),
        "{stream}"
    );
}

#[test]
fn a_delta_after_its_block_stops_or_its_output_is_done_is_still_joined() {
    // The SDKs' accumulators append a delta to its block (output) whatever came before: a
    // `content_block_stop` or `….done` ends nothing; `message_stop` (`response.completed`)
    // does.
    let (a, b) = SECRET.split_at(3);
    let stop = "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n";
    let message_stop = "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    let events = vec![
        anthropic(0, json!({"type": "text_delta", "text": format!("key {a}")})),
        stop.to_owned(),
        anthropic(0, json!({"type": "text_delta", "text": format!("{b} ok")})),
        message_stop.to_owned(),
    ];
    let mut j = joined(Kind::Anthropic);
    let stream = run(&mut j, &events);
    assert_eq!(
        anthropic_joined(&stream)[&0],
        "key [REDACTED] ok",
        "{stream}"
    );
    assert!(!stream.contains(b), "{stream}");
    assert_eq!(j.spread(), 1);
    // `message_stop` decides what is held: it goes on before it.
    let events = vec![
        anthropic(0, json!({"type": "text_delta", "text": "a sk-live"})),
        stop.to_owned(),
    ];
    let mut j = joined(Kind::Anthropic);
    let mut out = Vec::new();
    for e in &events {
        out.extend_from_slice(&j.push(e.as_bytes()));
    }
    assert!(out.is_empty(), "held past the block's stop");
    out.extend_from_slice(&j.push(message_stop.as_bytes()));
    assert_eq!(
        out,
        [events.concat(), message_stop.to_owned()]
            .concat()
            .as_bytes()
    );
    // Responses: a delta after its output's `….done`.
    let event = |data: Value| {
        let kind = data["type"].as_str().unwrap().to_owned();
        format!("event: {kind}\ndata: {data}\n\n")
    };
    let delta = |text: &str| {
        event(json!({"type": "response.output_text.delta", "item_id": "i",
            "output_index": 0, "content_index": 0, "delta": text}))
    };
    let events = vec![
        delta(&format!("key {a}")),
        event(json!({"type": "response.output_text.done", "item_id": "i",
            "output_index": 0, "content_index": 0, "text": format!("key {a}")})),
        event(
            json!({"type": "response.output_item.done", "output_index": 0,
            "item": {"id": "i", "type": "message"}}),
        ),
        delta(&format!("{b} ok")),
        event(json!({"type": "response.completed", "response": {"status": "completed"}})),
    ];
    let mut j = joined(Kind::Responses);
    let stream = run(&mut j, &events);
    let text: String = datas(&stream)
        .iter()
        .filter(|d| d["type"] == "response.output_text.delta")
        .map(|d| d["delta"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(text, "key [REDACTED] ok", "{stream}");
    assert!(!stream.contains(b), "{stream}");
}

#[test]
fn a_keep_alive_goes_on_at_once_while_events_are_held_and_id_lines_keep_their_place() {
    // Nothing held: a keep-alive goes on at once.
    let mut j = joined(Kind::Chat);
    assert_eq!(&j.push(b": keep-alive\n\n")[..], b": keep-alive\n\n");
    // Held: a keep-alive (comments only, after a byte-order mark too) still goes on at once,
    // ahead of what is held; an `id:` or `retry:` block waits in its place (the last event
    // id names the events before it), as does a comment that comes with one.
    let events = [
        chat(0, "yes", None),
        ": keep-alive\n\n".to_owned(),
        ": ping\r\n: pong\r\n\r\n".to_owned(),
        "id: 7\nretry: 100\n\n".to_owned(),
        ": and\nid: 8\n\n".to_owned(),
        chat(0, " no", None),
    ];
    let mut j = joined(Kind::Chat);
    assert!(j.push(events[0].as_bytes()).is_empty());
    for keep_alive in &events[1..3] {
        assert_eq!(&j.push(keep_alive.as_bytes())[..], keep_alive.as_bytes());
    }
    for e in &events[3..5] {
        assert!(j.push(e.as_bytes()).is_empty());
    }
    assert_eq!(
        run(&mut j, &events[5..]),
        [&events[0], &events[3], &events[4], &events[5]]
            .map(String::as_str)
            .concat()
    );
}

/// Polls `j` once: what it releases now, if anything.
fn released_now(j: &mut Joined) -> Option<Bytes> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match j.poll_release(&mut cx) {
        std::task::Poll::Ready(out) => Some(out),
        std::task::Poll::Pending => None,
    }
}

/// What `j` releases once its held events are past their bound, waited for at most `wait`.
async fn released_within(j: &mut Joined, wait: Duration) -> Bytes {
    tokio::time::timeout(wait, std::future::poll_fn(|cx| j.poll_release(cx)))
        .await
        .expect("held events are released past their time bound")
}

#[tokio::test]
async fn held_events_past_their_time_bound_go_on_without_the_undecided_text_while_the_upstream_is_silent()
 {
    const BOUND: Duration = Duration::from_millis(200);
    let (a, b) = SECRET.split_at(6);
    // What follows the pause: the rest of the secret, or text that makes it no secret.
    let endings = [
        (format!("{b} ok"), "key [REDACTED] ok".to_owned(), 1),
        ("ly day".to_owned(), format!("key {a}ly day"), 0),
        (String::new(), format!("key {a}"), 0),
    ];
    for (rest, expected, redacted) in endings {
        let mut j = joined(Kind::Chat).holding_at_most(BOUND);
        let mut stream = Vec::new();
        // Nothing held: no timer is set.
        let hello = chat(0, "hello ", None);
        stream.extend_from_slice(&j.push(hello.as_bytes()));
        assert!(released_now(&mut j).is_none() && !j.armed);
        // What could begin the secret, then the upstream is silent: held, and the timer set.
        let near = chat(0, &format!("key {a}"), None);
        let role = "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"}}]}\n\n";
        assert!(j.push(near.as_bytes()).is_empty());
        assert!(j.push(role.as_bytes()).is_empty());
        let held_at = Instant::now();
        assert!(released_now(&mut j).is_none() && j.armed);
        // Past the bound the held events go on, without what could begin the secret.
        let released = released_within(&mut j, BOUND * 20).await;
        assert!(held_at.elapsed() >= BOUND - Duration::from_millis(20));
        let released = String::from_utf8(released.to_vec()).unwrap();
        assert_eq!(chat_joined(&released)["0"], "key ", "{released}");
        assert!(
            !released.contains(a) && released.ends_with(role),
            "{released}"
        );
        assert_eq!(j.held(), a.len());
        assert!(released_now(&mut j).is_none() && !j.armed);
        stream.extend_from_slice(released.as_bytes());
        // The rest comes: the text the SDK joins is the upstream's, the secret redacted.
        let mut events = vec![];
        if !rest.is_empty() {
            events.push(chat(0, &rest, None));
        }
        events.extend(chat_end());
        stream.extend_from_slice(run(&mut j, &events).as_bytes());
        let stream = String::from_utf8(stream).unwrap();
        assert_eq!(
            chat_joined(&stream)["0"],
            format!("hello {expected}"),
            "{stream}"
        );
        assert!(!stream.contains(SECRET), "{stream}");
        assert_eq!((j.count(), j.spread()), (redacted, redacted));
    }
}

/// Counts the wake-ups of the task it stands for.
#[derive(Default)]
struct Wakes(std::sync::atomic::AtomicUsize);

impl std::task::Wake for Wakes {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test]
async fn one_timer_serves_every_hold_and_wakes_no_one_once_nothing_is_held() {
    const BOUND: Duration = Duration::from_millis(100);
    let wakes = Arc::new(Wakes::default());
    let waker = std::task::Waker::from(Arc::clone(&wakes));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut j = joined(Kind::Chat).holding_at_most(BOUND);
    // Two holds, each decided by the upstream before its bound: no secret.
    for (near, rest) in [("key sk-", "ly day"), (" and sk-", "etch")] {
        assert!(j.push(chat(0, near, None).as_bytes()).is_empty());
        assert!(j.poll_release(&mut cx).is_pending() && j.armed);
        assert_eq!(j.timers_made, 1, "one timer");
        assert!(!j.push(chat(0, rest, None).as_bytes()).is_empty());
        // Nothing held: the timer is kept, parked.
        assert!(j.poll_release(&mut cx).is_pending());
        assert!(!j.armed && j.timer.is_some());
    }
    // Past both holds' deadlines: the parked timer woke no one.
    tokio::time::sleep(BOUND * 4).await;
    assert_eq!(wakes.0.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert!(j.poll_release(&mut cx).is_pending());
}

#[tokio::test]
async fn the_time_bound_counts_from_when_the_oldest_held_event_was_held() {
    const BOUND: Duration = Duration::from_millis(300);
    let mut j = joined(Kind::Chat).holding_at_most(BOUND);
    assert!(j.push(chat(0, "key sk-", None).as_bytes()).is_empty());
    let held_at = Instant::now();
    assert!(released_now(&mut j).is_none());
    let deadline = j.timer.as_ref().map(|t| t.deadline());
    tokio::time::sleep(BOUND / 2).await;
    // More events held behind it, and a keep-alive, do not move the bound.
    assert!(j.push(chat(1, "other", None).as_bytes()).is_empty());
    assert!(!j.push(b": keep-alive\n\n").is_empty());
    assert!(released_now(&mut j).is_none());
    assert_eq!(j.timer.as_ref().map(|t| t.deadline()), deadline);
    let released = released_within(&mut j, BOUND * 20).await;
    let waited = held_at.elapsed();
    assert!(waited >= BOUND - Duration::from_millis(20), "{waited:?}");
    let released = String::from_utf8(released.to_vec()).unwrap();
    assert_eq!(chat_joined(&released)["0"], "key ", "{released}");
    assert_eq!(chat_joined(&released)["1"], "other", "{released}");
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
    let mut j = joined(Kind::Responses);
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
    let mut j = joined(Kind::Gemini);
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
fn a_gemini_candidate_is_joined_after_its_finish_reason_too() {
    // The SDKs hand the agent each chunk's text (`chunk.text`) and it joins them all: a
    // `finishReason` does not end what it joins.
    let chunk = |text: &str, finish: Option<&str>| {
        let mut candidate = json!({"content": {"parts": [{"text": text}], "role": "model"},
            "index": 0});
        if let Some(f) = finish {
            candidate["finishReason"] = json!(f);
        }
        format!("data: {}\r\n\r\n", json!({"candidates": [candidate]}))
    };
    let text = |stream: &str| -> String {
        datas(stream)
            .iter()
            .filter_map(|d| d["candidates"][0]["content"]["parts"][0]["text"].as_str())
            .collect()
    };
    let usage = "data: {\"usageMetadata\":{\"totalTokenCount\":9}}\r\n\r\n".to_owned();
    let events = [
        chunk("key sk-li", Some("STOP")),
        chunk("ve-Xy7Qz9Lm2Pk4", None),
        usage.clone(),
    ];
    let stream = run(&mut joined(Kind::Gemini), &events);
    assert_redacted_once(&text(&stream), "key [REDACTED]", &stream);
    // No secret: byte for byte.
    let events = [chunk("key sk-li", Some("STOP")), chunk("ly", None), usage];
    assert_eq!(run(&mut joined(Kind::Gemini), &events), events.concat());
}

#[test]
fn an_event_that_is_not_json_ends_the_stream_with_the_dialects_error() {
    let mut j = joined(Kind::Chat);
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
    let mut j = joined(Kind::Anthropic);
    let stream = run(&mut j, &["event: x\ndata: <html>\n\n".to_owned()]);
    assert!(stream.starts_with("event: error\n"), "{stream}");
    // `[DONE]`, comments and events without data pass.
    let mut j = joined(Kind::Chat);
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
    for kind in [Kind::Chat, Kind::Responses, Kind::Anthropic, Kind::Gemini] {
        let mut j = joined(kind);
        assert_eq!(run(&mut j, &events), events.concat(), "{kind:?}");
        assert!(!j.failed(), "{kind:?}");
    }
    // Gemini ends its events with CRLF: they pass as they came, and a secret spread over two
    // of them is still joined.
    let gemini = |text: &str| {
        let data = json!({"candidates": [{"content": {"parts": [{"text": text}],
            "role": "model"}, "index": 0}]});
        format!("data: {data}\r\n\r\n")
    };
    let plain = [gemini("nothing to see"), gemini("here")];
    let mut j = joined(Kind::Gemini);
    assert_eq!(run(&mut j, &plain), plain.concat());
    let mut j = joined(Kind::Gemini);
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
    let mut j = joined(Kind::Chat);
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
            .joining(Protocol::Openai.dialect(), Kind::Chat);
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
    let stream = run(&mut joined(Kind::Anthropic), &events);
    assert_redacted_once(&sdk_text(&stream), "[REDACTED] x", &stream);
    // Held with the start and the block stops: both go on as they came.
    let events = [start("a sk-live"), stop.to_owned()];
    let stream = run(&mut joined(Kind::Anthropic), &events);
    assert_eq!(stream, events.concat());
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
    let stream = run(&mut joined(Kind::Responses), &events);
    let mut text = String::new();
    for data in datas(&stream) {
        text.push_str(data["part"]["text"].as_str().unwrap_or_default());
        text.push_str(data["delta"].as_str().unwrap_or_default());
    }
    assert_redacted_once(&text, "[REDACTED]", &stream);
}

/// The text at `pointer` in each event of `stream`, joined.
fn joined_at(stream: &str, pointer: &str) -> String {
    datas(stream)
        .iter()
        .filter_map(|d| {
            d.pointer(pointer)
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect()
}

#[test]
fn legacy_function_call_arguments_are_joined() {
    let (a, b) = SECRET.split_at(7);
    let call = |args: &str, finish: Option<&str>| {
        let data = json!({"id": "c", "object": "chat.completion.chunk", "created": 1,
            "model": "m", "choices": [{"index": 0, "delta": {"function_call": {"arguments": args}},
            "finish_reason": finish}]});
        format!("data: {data}\n\n")
    };
    let events = [
        call(&format!("{{\"k\":\"{a}"), None),
        call(&format!("{b}\"}}"), Some("function_call")),
        call("", None),
    ];
    let mut j = joined(Kind::Chat);
    let stream = run(&mut j, &events);
    let args = joined_at(&stream, "/choices/0/delta/function_call/arguments");
    assert_redacted_once(&args, r#"{"k":"[REDACTED]"}"#, &stream);
    // Held at the end: sent in a function call delta of its own.
    let stream = run(&mut joined(Kind::Chat), &[call("{\"k\":\"sk-li", None)]);
    let args = joined_at(&stream, "/choices/0/delta/function_call/arguments");
    assert_eq!(args, "{\"k\":\"sk-li", "{stream}");
}

#[test]
fn token_log_probabilities_are_emptied_in_an_event_whose_text_changed() {
    let (a, b) = SECRET.split_at(7);
    let chat_event = |d: &str| {
        let data = json!({"id": "c", "object": "chat.completion.chunk", "created": 1,
            "model": "m", "choices": [{"index": 0, "delta": {"content": d},
            "logprobs": {"content": [{"token": d, "logprob": 0.0, "bytes": d.as_bytes(),
            "top_logprobs": [{"token": d, "logprob": 0.0, "bytes": null}]}], "refusal": null},
            "finish_reason": null}]});
        format!("data: {data}\n\n")
    };
    let plain = chat_event("hello ");
    let events = [plain.clone(), chat_event(a), chat_event(b)];
    let stream = run(&mut joined(Kind::Chat), &events);
    assert_redacted_once(&chat_joined(&stream)["0"], "hello [REDACTED]", &stream);
    assert!(!stream.contains(a), "{stream}");
    // An event left as it was keeps them.
    assert!(stream.starts_with(&plain), "{stream}");
    let all = datas(&stream);
    assert_eq!(
        all[1]["choices"][0]["logprobs"]["content"],
        json!([]),
        "{stream}"
    );
    // Responses: the delta event's own `logprobs`.
    let responses_event = |d: &str| {
        let data = json!({"type": "response.output_text.delta", "item_id": "i",
            "output_index": 0, "content_index": 0, "delta": d,
            "logprobs": [{"token": d, "logprob": 0.0, "top_logprobs": []}]});
        format!("event: response.output_text.delta\ndata: {data}\n\n")
    };
    let stream = run(
        &mut joined(Kind::Responses),
        &[responses_event(a), responses_event(b)],
    );
    assert_redacted_once(&joined_at(&stream, "/delta"), "[REDACTED]", &stream);
    assert!(!stream.contains(a), "{stream}");
}

#[test]
fn the_stream_kind_comes_from_the_request_and_other_kinds_keys_are_ignored() {
    let (a, b) = SECRET.split_at(7);
    // A Responses event with a `choices` key: the SDK joins its `delta`.
    let responses = |d: &str| {
        let data = json!({"type": "response.output_text.delta", "item_id": "i",
            "output_index": 0, "content_index": 0, "delta": d, "choices": []});
        format!("data: {data}\n\n")
    };
    let stream = run(&mut joined(Kind::Responses), &[responses(a), responses(b)]);
    assert_redacted_once(&joined_at(&stream, "/delta"), "[REDACTED]", &stream);
    // An Anthropic event with `choices` and `candidates` keys.
    let anthropic_event = |d: &str| {
        let data = json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": d}, "choices": [], "candidates": []});
        format!("event: content_block_delta\ndata: {data}\n\n")
    };
    let stream = run(
        &mut joined(Kind::Anthropic),
        &[anthropic_event(a), anthropic_event(b)],
    );
    assert_redacted_once(&joined_at(&stream, "/delta/text"), "[REDACTED]", &stream);
    // A chat chunk with a `type` key is a chat chunk.
    let typed_chat = |d: &str| {
        let data = json!({"type": "response.output_text.delta", "delta": "x",
            "choices": [{"index": 0, "delta": {"content": d}, "finish_reason": null}]});
        format!("data: {data}\n\n")
    };
    let stream = run(&mut joined(Kind::Chat), &[typed_chat(a), typed_chat(b)]);
    assert_redacted_once(&chat_joined(&stream)["0"], "[REDACTED]", &stream);
    // The shapes of the stream's endpoint.
    assert_eq!(Kind::of(Endpoint::Responses), Some(Kind::Responses));
    assert_eq!(Kind::of(Endpoint::Completions), Some(Kind::Chat));
    assert_eq!(Kind::of(Endpoint::Messages), Some(Kind::Anthropic));
    assert_eq!(
        Kind::of(Endpoint::StreamGenerateContent),
        Some(Kind::Gemini)
    );
    assert_eq!(Kind::of(Endpoint::Embeddings), None);
}

#[test]
fn text_moved_out_of_a_responses_event_keeps_only_the_fixed_fields_of_its_event() {
    let pad = "x".repeat(1 << 16);
    let events: Vec<String> = (0..64)
        .map(|n| {
            let data = json!({"type": format!("response.r{n}.delta"), "item_id": "i",
                "output_index": 0, "content_index": 0, "sequence_number": n,
                "delta": "s", "obfuscation": pad});
            format!("data: {data}\n\n")
        })
        .collect();
    let mut j = joined(Kind::Responses);
    for e in &events {
        let _ = j.push(e.as_bytes());
    }
    assert!(!j.failed());
    // Each event outgrew what is held: its text was moved out, with only what places it.
    assert_eq!(j.moved().count(), 64);
    for moved in j.moved() {
        let fields = moved.template.as_object().unwrap();
        assert!(!fields.contains_key("obfuscation"), "{fields:?}");
        assert!(moved.size < 256, "{}", moved.size);
    }
    // Sent at the end as deltas of their own, placed as the channel's were.
    let last = datas(std::str::from_utf8(&j.finish()).unwrap());
    assert_eq!(last.len(), 64);
    assert_eq!(last[0]["item_id"], "i");
    assert_eq!(last[0]["delta"], "s");
}

#[test]
fn the_bytes_held_for_a_stream_are_capped() {
    // Each channel's delta would be sent with a large item id: past the cap, the stream ends
    // with the error rather than hold them.
    let id = "i".repeat(MAX_HELD_BYTES / 8);
    let events: Vec<String> = (0..16)
        .map(|n| {
            let data = json!({"type": "response.output_text.delta", "item_id": id,
                "output_index": n, "content_index": 0, "delta": "sk-li"});
            format!("data: {data}\n\n")
        })
        .collect();
    let mut j = joined(Kind::Responses);
    let stream = run(&mut j, &events);
    assert!(j.failed(), "{}", stream.len());
    assert_eq!(
        datas(&stream).pop().unwrap()["error"]["code"],
        UNREADABLE_CODE
    );
    assert!(
        stream.matches("\"item_id\"").count() <= 9,
        "{}",
        stream.len()
    );
    assert_eq!(j.held(), 0);
    // Under it, nothing fails.
    let mut j = joined(Kind::Responses);
    let _ = run(&mut j, &events[..7]);
    assert!(!j.failed());
}

#[test]
fn only_a_secret_begun_in_an_earlier_delta_counts_as_spread_over_deltas() {
    let whole = |r: &mut Redactor, events: Vec<String>| {
        let _ = r.push(Bytes::from(events.concat()));
        let _ = r.finish();
    };
    // Whole in one delta (even one whose channel held text before it).
    let mut r = Redactor::new(echo())
        .unwrap()
        .joining(Protocol::Openai.dialect(), Kind::Chat);
    let mut events = vec![
        chat(0, "a s", None),
        chat(0, &format!("o {SECRET} end"), None),
    ];
    events.extend(chat_end());
    whole(&mut r, events);
    assert_eq!((r.count(), r.joined_count()), (1, 0));
    // Begun in one delta, ended in the next; and one more whole.
    let mut r = Redactor::new(echo())
        .unwrap()
        .joining(Protocol::Openai.dialect(), Kind::Chat);
    let mut events = vec![
        chat(0, &SECRET[..5], None),
        chat(0, &format!("{} and {SECRET}", &SECRET[5..]), None),
    ];
    events.extend(chat_end());
    whole(&mut r, events);
    assert_eq!((r.count(), r.joined_count()), (2, 1));
}

#[test]
fn an_escaped_secret_in_anthropic_tool_input_spread_over_deltas_is_redacted() {
    let escaped = SECRET.replacen('-', "\\u002d", 2);
    let input = format!("{{\"k\":\"{escaped}\"}}");
    let (a, b) = input.split_at(12);
    let delta = |p: &str| anthropic(0, json!({"type": "input_json_delta", "partial_json": p}));
    let stream = run(&mut joined(Kind::Anthropic), &[delta(a), delta(b)]);
    let text: String = anthropic_joined(&stream).into_values().collect();
    assert_eq!(text, r#"{"k":"[REDACTED]"}"#, "{stream}");
}
