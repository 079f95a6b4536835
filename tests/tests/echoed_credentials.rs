//! An upstream that echoes the credential Warden injected in a gzipped body and in HTTP/1.1
//! trailers: the agent gets the body decoded and redacted, on the wire as it arrives (a raw
//! HTTP/1.1 client that asks for trailers, `te: trailers`), the trailers redacted like the
//! body, and the secret nowhere in clear.

use serde_json::json;
use warden_e2e::fake_llm::FakeLlm;
use warden_e2e::stack::Stack;
use warden_e2e::trailing_echo::{TrailingEcho, get_with_trailers, get_without_trailers};
use warden_e2e::warden::{OPENAI_KEY, Warden, WardenBuilder};

const SECRET: &str = "sk-e2e-echoed-in-trailers-4242";

async fn stage() -> (FakeLlm, TrailingEcho, Warden, String) {
    let fake = FakeLlm::start().await.unwrap();
    let echo = TrailingEcho::start().await.unwrap();
    let warden = WardenBuilder::new(&fake)
        .set(
            "/routes/3",
            json!({"name": "echo", "prefix": "/echo", "connector": "openai",
                   "upstream": echo.url(), "credential": {"env": "E2E_ECHO_KEY"}}),
        )
        .env("E2E_ECHO_KEY", SECRET)
        .start()
        .await
        .unwrap();
    let token = warden.token("echo-agent").await.unwrap();
    (fake, echo, warden, token)
}

/// A stack (fake model, Warden, an agent's token) whose model streams `events` in answer to
/// the streamed requests that follow, until a test scripts others.
async fn streaming(events: Vec<String>) -> Stack {
    let s = Stack::start().await.unwrap();
    s.fake.script_streams(Some(events));
    s
}

/// The answer (its head; the body still to read) to a streamed chat completion asked through
/// the stack's OpenAI route.
async fn ask_streamed_chat(s: &Stack) -> reqwest::Response {
    let body = json!({"model": "gpt-4o-mini", "stream": true,
        "messages": [{"role": "user", "content": "hi"}]});
    s.warden
        .http()
        .post(s.warden.url("/openai/chat/completions"))
        .bearer_auth(&s.token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// The status and text of the answer to a streamed chat completion asked through the stack's
/// OpenAI route.
async fn streamed_chat(s: &Stack) -> (u16, String) {
    let response = ask_streamed_chat(s).await;
    (response.status().as_u16(), response.text().await.unwrap())
}

/// Checks that `raw`, an answer as the agent received it, is the echo with the secret
/// redacted in its body, and nowhere in clear.
fn assert_redacted(raw: &str) {
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(
        !raw.contains(SECRET),
        "the secret never reaches the agent: {raw}"
    );
    let (body, _trailers) = body_and_trailers(raw);
    assert_eq!(body, r#"{"authorization":"Bearer [REDACTED]"}"#, "{raw}");
}

/// The answer's body (chunks joined) and trailer section, from its raw text.
fn body_and_trailers(raw: &str) -> (String, String) {
    let (_, mut rest) = raw.split_once("\r\n\r\n").expect("a head");
    let mut body = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").expect("a chunk size");
        let size = usize::from_str_radix(size.trim(), 16).expect("a hex chunk size");
        if size == 0 {
            return (body, after.to_owned());
        }
        body.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
}

#[tokio::test]
async fn a_credential_echoed_in_a_gzipped_body_reaches_the_agent_decoded_and_redacted() {
    let (_fake, _echo, warden, token) = stage().await;
    let raw = get_with_trailers(&warden.url(""), "/echo/models?gzip=1", &token)
        .await
        .unwrap();
    let head = raw.split("\r\n\r\n").next().unwrap_or_default();
    assert!(
        !head.to_ascii_lowercase().contains("content-encoding"),
        "served decoded: {raw}"
    );
    assert_redacted(&raw);
}

#[tokio::test]
async fn a_credential_echoed_in_an_http1_trailer_reaches_an_agent_that_asks_for_trailers_redacted()
{
    let (_fake, _echo, warden, token) = stage().await;
    for path in ["/echo/models", "/echo/models?gzip=1"] {
        let raw = get_with_trailers(&warden.url(""), path, &token)
            .await
            .unwrap();
        assert_redacted(&raw);
        // `te: trailers` went upstream (the echo sends its trailer only then), and the
        // `Trailer` declaration came back, without which hyper sends no trailer field.
        let head = raw.split("\r\n\r\n").next().unwrap_or_default();
        assert!(
            head.to_ascii_lowercase()
                .contains("\r\ntrailer: x-echo-authorization"),
            "{path}: {raw}"
        );
        let (_, trailers) = body_and_trailers(&raw);
        assert_eq!(
            trailers, "x-echo-authorization: Bearer [REDACTED]\r\n\r\n",
            "{path}: {raw}"
        );
    }
}

#[tokio::test]
async fn an_agent_that_does_not_ask_for_trailers_gets_neither_trailers_nor_their_declaration() {
    let (_fake, _echo, warden, token) = stage().await;
    let raw = get_without_trailers(&warden.url(""), "/echo/models", &token)
        .await
        .unwrap();
    assert_redacted(&raw);
    let head = raw.split("\r\n\r\n").next().unwrap_or_default();
    assert!(!head.to_ascii_lowercase().contains("\r\ntrailer:"), "{raw}");
    let (_, trailers) = body_and_trailers(&raw);
    assert_eq!(trailers, "\r\n", "{raw}");
}

/// A Chat Completions chunk with `content` in choice 0 (and `finish`).
fn chat_chunk(content: Option<&str>, finish: Option<&str>) -> String {
    let delta = match content {
        Some(text) => json!({"content": text}),
        None => json!({}),
    };
    let chunk = json!({"id": "chatcmpl-e2e", "object": "chat.completion.chunk", "created": 1,
        "model": "gpt-4o-mini", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
    format!("data: {chunk}\n\n")
}

/// An Anthropic event `name` with `data`.
fn sse(name: &str, data: &serde_json::Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// An Anthropic message stream whose one text block is `pieces`, a delta each.
fn anthropic_stream(pieces: &[&str]) -> Vec<String> {
    let mut events = vec![
        sse(
            "message_start",
            &json!({"type": "message_start", "message": {"id": "msg_e2e", "type": "message",
                "role": "assistant", "model": "claude-sonnet-4-5", "content": [],
                "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 5, "output_tokens": 1}}}),
        ),
        sse(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}}),
        ),
    ];
    for piece in pieces {
        events.push(sse(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": piece}}),
        ));
    }
    events.extend([
        sse(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": 0}),
        ),
        sse(
            "message_delta",
            &json!({"type": "message_delta", "delta": {"stop_reason": "end_turn",
                "stop_sequence": null}, "usage": {"output_tokens": 7}}),
        ),
        sse("message_stop", &json!({"type": "message_stop"})),
    ]);
    events
}

#[tokio::test]
async fn a_credential_a_model_streams_a_piece_per_delta_never_reaches_the_sdk_joined() {
    use warden_e2e::sdk;
    use warden_e2e::warden::ANTHROPIC_KEY;

    // The key Warden injected, streamed back in three deltas: no event holds it, the SDK's
    // joined text would.
    let (a, rest) = OPENAI_KEY.split_at(2);
    let (b, c) = rest.split_at(9);
    let mut events = vec![
        chat_chunk(Some("Your key is "), None),
        chat_chunk(Some(a), None),
        chat_chunk(Some(b), None),
        chat_chunk(Some(&format!("{c}, keep it.")), None),
        chat_chunk(None, Some("stop")),
    ];
    events.push("data: [DONE]\n\n".to_owned());
    let s = streaming(events).await;
    let out = sdk::run("openai_chat.py", &s.openai_base(), &s.token, &["stream"]).await;
    let (a, b) = ANTHROPIC_KEY.split_at(ANTHROPIC_KEY.len() / 2);
    s.fake.script_streams(Some(anthropic_stream(&[
        "The key: ",
        a,
        &format!("{b} (secret)."),
    ])));
    let anthropic = sdk::run(
        "anthropic_messages.py",
        &s.anthropic_base(),
        &s.token,
        &["stream"],
    )
    .await;
    s.fake.script_streams(None);
    let (out, anthropic) = (out.unwrap(), anthropic.unwrap());
    assert_eq!(
        out["stream"]["content"], "Your key is [REDACTED], keep it.",
        "{out}"
    );
    assert_eq!(out["stream"]["finish_reason"], "stop", "{out}");
    assert_eq!(
        anthropic["stream"]["text"], "The key: [REDACTED] (secret).",
        "{anthropic}"
    );
    assert_eq!(
        anthropic["stream"]["final_text"], "The key: [REDACTED] (secret).",
        "{anthropic}"
    );
    // Each outcome record says the credential was redacted, spread over deltas; none holds it.
    for route in ["openai", "anthropic"] {
        let record = s
            .warden
            .wait_for_audit(std::time::Duration::from_secs(10), |r| {
                r["route"] == route
                    && r["findings"].as_array().is_some_and(|f| {
                        f.iter().any(|f| {
                            f["detector"] == "credential_echo"
                                && f["location"]
                                    == "response: 1 redacted, 1 of them spread over streamed deltas"
                        })
                    })
            })
            .await
            .unwrap();
        assert_eq!(record["outcome"]["status"], 200, "{record}");
    }
    let audit = s
        .warden
        .audit_records()
        .iter()
        .map(serde_json::Value::to_string)
        .collect::<String>();
    assert!(
        !audit.contains(OPENAI_KEY) && !audit.contains(ANTHROPIC_KEY),
        "{audit}"
    );
}

#[tokio::test]
async fn a_stream_that_cannot_be_read_to_be_redacted_ends_with_an_error() {
    let (a, b) = OPENAI_KEY.split_at(6);
    let s = streaming(vec![
        chat_chunk(Some(&format!("key {a}")), None),
        "data: <not json>\n\n".to_owned(),
        chat_chunk(Some(b), None),
        chat_chunk(None, Some("stop")),
        "data: [DONE]\n\n".to_owned(),
    ])
    .await;
    let (_, text) = streamed_chat(&s).await;
    s.fake.script_streams(None);
    assert!(text.contains("response_unreadable"), "{text}");
    assert!(
        !text.contains(b) && !text.contains("[DONE]"),
        "nothing after the error: {text}"
    );
    let record = s
        .warden
        .wait_for_audit(std::time::Duration::from_secs(10), |r| {
            r["outcome"]["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("response_unreadable"))
        })
        .await
        .unwrap();
    assert!(!record.to_string().contains(OPENAI_KEY), "{record}");
}

#[tokio::test]
async fn a_streamed_answer_is_joined_whatever_its_content_types_case_and_refused_when_not_a_stream()
{
    let (a, b) = OPENAI_KEY.split_at(6);
    let s = streaming(vec![
        chat_chunk(Some(&format!("key {a}")), None),
        chat_chunk(Some(&format!("{b}.")), None),
        chat_chunk(None, Some("stop")),
        "data: [DONE]\n\n".to_owned(),
    ])
    .await;
    // A media type's case carries nothing: the stream is read as the SDK reads it.
    s.fake
        .script_content_type(Some("Text/Event-Stream; charset=utf-8"));
    let (status, text) = streamed_chat(&s).await;
    assert_eq!(status, 200, "{text}");
    assert!(!text.contains(b), "{text}");
    assert!(
        text.contains("[REDACTED]") && text.contains("[DONE]"),
        "{text}"
    );
    // An answer to a streamed request that says it is no stream: refused, as an SDK reads
    // it as a stream all the same.
    s.fake.script_content_type(Some("application/json"));
    let (status, text) = streamed_chat(&s).await;
    s.fake.script_content_type(None);
    s.fake.script_streams(None);
    assert_eq!(status, 502, "{text}");
    assert!(text.contains("response_unreadable"), "{text}");
    assert!(!text.contains(a), "{text}");
}

#[tokio::test]
async fn a_stream_that_only_comes_near_the_credential_reaches_the_agent_byte_for_byte() {
    // Each delta but the last ends with what could begin the injected key, which never
    // comes: the events are held until that is clear, then sent as the upstream cut them.
    let near = &OPENAI_KEY[..OPENAI_KEY.len() - 1];
    let events = vec![
        chat_chunk(Some("Keys look like sk"), None),
        chat_chunk(Some("-fake; mine is "), None),
        chat_chunk(Some(near), None),
        chat_chunk(Some("!, not a key"), None),
        chat_chunk(None, Some("stop")),
        "data: [DONE]\n\n".to_owned(),
    ];
    let s = streaming(events.clone()).await;
    let (_, text) = streamed_chat(&s).await;
    s.fake.script_streams(None);
    assert_eq!(text, events.concat());
}

/// What an OpenAI SDK joins of a chat stream: choice 0's content.
fn chat_content(stream: &str) -> String {
    stream
        .split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .filter_map(|data| serde_json::from_str::<serde_json::Value>(data).ok())
        .filter_map(|chunk| {
            chunk["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

#[tokio::test]
async fn events_held_while_a_model_pauses_after_what_could_begin_the_credential_go_on_within_a_second()
 {
    use std::time::{Duration, Instant};

    // The model pauses 3 s after each event, the first ending with what could begin the key
    // Warden injected: held, but not for the whole pause.
    let (a, b) = OPENAI_KEY.split_at(6);
    let s = streaming(vec![
        chat_chunk(Some(&format!("Your key is {a}")), None),
        chat_chunk(Some(&format!("{b}, keep it.")), None),
        chat_chunk(None, Some("stop")),
        "data: [DONE]\n\n".to_owned(),
    ])
    .await;
    s.fake.set_chunk_delay(Duration::from_secs(3));
    let started = Instant::now();
    let mut response = ask_streamed_chat(&s).await;
    assert_eq!(response.status(), 200);
    let mut first = Vec::new();
    while !first.windows(2).any(|w| w == b"\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(30), response.chunk())
            .await
            .expect("the stream goes on")
            .unwrap()
            .expect("more of the stream");
        first.extend_from_slice(&chunk);
    }
    let first_after = started.elapsed();
    let mut rest = Vec::new();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(30), response.chunk())
        .await
        .expect("the stream goes on")
        .unwrap()
    {
        rest.extend_from_slice(&chunk);
    }
    s.fake.script_streams(None);
    s.fake.set_chunk_delay(Duration::from_millis(15));
    let first = String::from_utf8(first).unwrap();
    let stream = [first.as_str(), std::str::from_utf8(&rest).unwrap()].concat();
    // The first event reached the agent while the model was silent (its next text would
    // have decided it, `[REDACTED]` in it), without what could begin the key...
    assert_eq!(chat_content(&first), "Your key is ", "{first}");
    assert!(!first.contains(a), "{first}");
    // Held for the bound (1 s), not for the model's whole 3 s pause.
    assert!(
        first_after >= Duration::from_millis(900) && first_after < Duration::from_millis(2500),
        "{first_after:?}"
    );
    // ...which went with the model's next text: the SDK joins the upstream's text, the key
    // redacted.
    assert_eq!(
        chat_content(&stream),
        "Your key is [REDACTED], keep it.",
        "{stream}"
    );
    assert!(
        !stream.contains(b) && stream.ends_with("data: [DONE]\n\n"),
        "{stream}"
    );
}
