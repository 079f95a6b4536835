use super::*;

struct DenyNamed(&'static [&'static str], Vec<(String, String)>);

impl JudgeCalls for DenyNamed {
    fn judge(&mut self, call: &ProposedCall<'_>) -> Verdict {
        self.1
            .push((call.name.to_owned(), call.arguments.to_owned()));
        if self.0.contains(&call.name) {
            Verdict::Deny {
                text: format!("refused {}", call.name),
            }
        } else {
            Verdict::Allow
        }
    }
}

fn ev(value: Value) -> String {
    format!(
        "event: {}\ndata: {value}\n\n",
        value["type"].as_str().unwrap_or_default()
    )
}

/// Text, then two `tool_use` blocks whose input arrives in pieces.
fn stream() -> String {
    let mut events = vec![
        ev(
            json!({"type":"message_start","message":{"id":"m","type":"message","role":"assistant","content":[],"model":"c","stop_reason":null,"usage":{"input_tokens":5,"output_tokens":1}}}),
        ),
        ev(
            json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
        ),
        ev(
            json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"On it."}}),
        ),
        ev(json!({"type":"content_block_stop","index":0})),
    ];
    for (i, (id, name, input)) in [
        (1, ("tu_1", "exec", r#"{"command":"rm -rf /"}"#)),
        (2, ("tu_2", "read", r#"{"path":"a.txt"}"#)),
    ] {
        events.push(ev(json!({"type":"content_block_start","index":i,"content_block":{"type":"tool_use","id":id,"name":name,"input":{}}})));
        for piece in input.as_bytes().chunks(4) {
            let piece = std::str::from_utf8(piece).unwrap_or_default();
            events.push(ev(json!({"type":"content_block_delta","index":i,"delta":{"type":"input_json_delta","partial_json":piece}})));
        }
        events.push(ev(json!({"type":"content_block_stop","index":i})));
    }
    events.push(ev(json!({"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":9}})));
    events.push(ev(json!({"type":"message_stop"})));
    events.concat()
}

fn run(judge: &mut DenyNamed) -> String {
    let mut rewriter = rewriter(true);
    let mut out = Vec::new();
    for piece in stream().as_bytes().chunks(11) {
        out.extend_from_slice(&rewriter.push(piece, judge));
    }
    out.extend_from_slice(&rewriter.finish(judge));
    String::from_utf8(out).unwrap_or_default()
}

/// (index, type, name or text) of every block started, and the stop reason.
fn blocks(out: &str) -> (Vec<(u64, String, String)>, String) {
    let mut blocks = Vec::new();
    let mut stop = String::new();
    for event in out.split("\n\n").filter(|e| !e.is_empty()) {
        let data = event.split("data: ").nth(1).unwrap_or_default();
        let v: Value = serde_json::from_str(data).unwrap_or(Value::Null);
        match v["type"].as_str() {
            Some("content_block_start") => blocks.push((
                v["index"].as_u64().unwrap_or(99),
                v["content_block"]["type"].as_str().unwrap_or("").to_owned(),
                v["content_block"]["name"].as_str().unwrap_or("").to_owned(),
            )),
            Some("content_block_delta") => {
                if let (Some(t), Some(last)) = (v["delta"]["text"].as_str(), blocks.last_mut()) {
                    last.2.push_str(t);
                }
            }
            Some("message_delta") => {
                stop = v["delta"]["stop_reason"].as_str().unwrap_or("").to_owned();
            }
            _ => {}
        }
    }
    (blocks, stop)
}

#[test]
fn allowed_tool_use_blocks_pass_byte_for_byte() {
    let mut judge = DenyNamed(&[], Vec::new());
    assert_eq!(run(&mut judge), stream());
    assert_eq!(
        judge.1,
        vec![
            ("exec".to_owned(), r#"{"command":"rm -rf /"}"#.to_owned()),
            ("read".to_owned(), r#"{"path":"a.txt"}"#.to_owned()),
        ]
    );
}

#[test]
fn a_refused_tool_use_is_dropped_later_blocks_renumbered_and_the_refusal_said() {
    let mut judge = DenyNamed(&["exec"], Vec::new());
    let out = run(&mut judge);
    assert!(!out.contains("tu_1") && !out.contains("rm -rf"), "{out}");
    let (blocks, stop) = blocks(&out);
    assert_eq!(
        blocks,
        vec![
            (0, "text".to_owned(), "On it.".to_owned()),
            (1, "tool_use".to_owned(), "read".to_owned()),
            (2, "text".to_owned(), "refused exec".to_owned()),
        ]
    );
    assert_eq!(stop, "tool_use");
}

#[test]
fn an_id_block_inside_a_held_tool_use_goes_after_it_and_a_comment_goes_at_once() {
    let events: Vec<String> = stream()
        .split_inclusive("\n\n")
        .map(str::to_owned)
        .collect();
    // In `exec`'s block, after its first input delta: the last event id, a keep-alive.
    let start = events
        .iter()
        .position(|e| e.contains("\"tu_1\""))
        .unwrap_or_default();
    let stop = events
        .iter()
        .position(|e| e.contains(r#"{"type":"content_block_stop","index":1}"#))
        .unwrap_or_default();
    let (id, ping) = ("id: 7\n\n", ": ping\n\n");
    let mut sent = events[..=start + 1].to_vec();
    sent.extend([id.to_owned(), ping.to_owned()]);
    sent.extend_from_slice(&events[start + 2..]);
    for denied in [&[][..], &["exec"][..]] {
        let mut judge = DenyNamed(denied, Vec::new());
        let mut rewriter = rewriter(true);
        let mut out = Vec::new();
        for piece in sent.concat().as_bytes().chunks(11) {
            out.extend_from_slice(&rewriter.push(piece, &mut judge));
        }
        out.extend_from_slice(&rewriter.finish(&mut judge));
        let out = String::from_utf8(out).unwrap_or_default();
        assert_eq!(out.matches("id: 7").count(), 1, "{out}");
        if denied.is_empty() {
            // The keep-alive ahead of the held block, the id block after its stop.
            let expected = [
                &events[..start],
                &[ping.to_owned()],
                &events[start..=stop],
                &[id.to_owned()],
                &events[stop + 1..],
            ]
            .concat();
            assert_eq!(out, expected.concat());
        } else {
            // The block is gone; the id block still follows where it was.
            assert!(!out.contains("tu_1"), "{out}");
            let (before, after) = out.split_once(id).unwrap_or_default();
            assert!(before.contains(ping) && before.contains("On it."), "{out}");
            assert!(
                after.contains("\"tu_2\"") && after.contains("refused exec"),
                "{out}"
            );
        }
    }
}

#[test]
fn with_every_call_refused_the_turn_ends() {
    let mut judge = DenyNamed(&["exec", "read"], Vec::new());
    let (blocks, stop) = blocks(&run(&mut judge));
    assert_eq!(
        blocks,
        vec![
            (0, "text".to_owned(), "On it.".to_owned()),
            (
                1,
                "text".to_owned(),
                "refused exec\nrefused read".to_owned()
            ),
        ]
    );
    assert_eq!(stop, "end_turn");
}

#[test]
fn a_whole_message_loses_its_refused_tool_use() {
    let body = json!({"id":"m","type":"message","role":"assistant","model":"c","stop_reason":"tool_use",
        "content":[{"type":"text","text":"On it."},{"type":"tool_use","id":"tu_1","name":"exec","input":{"command":"rm -rf /"}}],
        "usage":{"input_tokens":5,"output_tokens":9}}).to_string();
    let mut judge = DenyNamed(&["exec"], Vec::new());
    let mut rewriter = rewriter(false);
    let mut out = rewriter.push(body.as_bytes(), &mut judge).to_vec();
    out.extend_from_slice(&rewriter.finish(&mut judge));
    let v: Value = serde_json::from_slice(&out).unwrap_or(Value::Null);
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(
        v["content"],
        json!([{"type":"text","text":"On it."},{"type":"text","text":"refused exec"}])
    );
    assert_eq!(judge.1[0].1, r#"{"command":"rm -rf /"}"#);
}

#[test]
fn text_that_quotes_an_event_type_does_not_move_the_refusal() {
    let quoting = stream().replace("On it.", "content_block_start");
    let mut judge = DenyNamed(&["exec"], Vec::new());
    let mut rewriter = rewriter(true);
    let mut out = rewriter.push(quoting.as_bytes(), &mut judge).to_vec();
    out.extend_from_slice(&rewriter.finish(&mut judge));
    let (blocks, _) = blocks(&String::from_utf8(out).unwrap_or_default());
    assert_eq!(
        blocks,
        vec![
            (0, "text".to_owned(), "content_block_start".to_owned()),
            (1, "tool_use".to_owned(), "read".to_owned()),
            (2, "text".to_owned(), "refused exec".to_owned()),
        ]
    );
}

#[test]
fn a_block_key_a_lenient_decoder_reads_otherwise_ends_the_stream_with_an_error() {
    // `"Type"` is `type` to Go's encoding/json: Warden would see no `tool_use` block.
    let other = stream().replacen(
        r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use""#,
        r#"{"type":"content_block_start","index":1,"content_block":{"Type":"tool_use""#,
        1,
    );
    assert_ne!(other, stream());
    let mut judge = DenyNamed(&[], Vec::new());
    let mut rewriter = rewriter(true);
    let mut out = rewriter.push(other.as_bytes(), &mut judge).to_vec();
    out.extend_from_slice(&rewriter.finish(&mut judge));
    let out = String::from_utf8(out).unwrap_or_default();
    assert!(!out.contains("tu_1"), "{out}");
    assert!(
        out.ends_with(&format!(
            "event: error\ndata: {}\n\n",
            unjudged(Unjudged::Unreadable)
        )),
        "{out}"
    );
}

#[test]
fn arguments_may_use_any_keys_a_struct_field_differs_from_only_by_case() {
    // A call's input is a free-form map, read exactly by every client: `Type` there is no
    // block's `type`.
    let body = json!({"id":"m","type":"message","role":"assistant","model":"c","stop_reason":"tool_use",
        "content":[{"type":"tool_use","id":"tu_1","name":"exec","input":{"Type":"x","Name":"y","ID":1}}]})
    .to_string();
    let mut judge = DenyNamed(&[], Vec::new());
    let mut rewriter = rewriter(false);
    let mut out = rewriter.push(body.as_bytes(), &mut judge).to_vec();
    out.extend_from_slice(&rewriter.finish(&mut judge));
    assert_eq!(String::from_utf8(out).unwrap_or_default(), body);
    assert_eq!(judge.1.len(), 1);
}

/// The blocks Anthropic runs itself (a web search, a remote MCP server's tool) and their
/// results, between text, then a `tool_use` block; then more of Anthropic's.
fn with_server_tools() -> String {
    let start = |i: u64, block: Value| {
        ev(json!({"type":"content_block_start","index":i,"content_block":block}))
    };
    let delta =
        |i: u64, delta: Value| ev(json!({"type":"content_block_delta","index":i,"delta":delta}));
    let stop = |i: u64| ev(json!({"type":"content_block_stop","index":i}));
    let input =
        |i: u64, json: &str| delta(i, json!({"type":"input_json_delta","partial_json":json}));
    [
        ev(
            json!({"type":"message_start","message":{"id":"m","type":"message","role":"assistant","content":[],"model":"c","stop_reason":null,"usage":{"input_tokens":5,"output_tokens":1}}}),
        ),
        start(0, json!({"type":"text","text":""})),
        delta(0, json!({"type":"text_delta","text":"Searching."})),
        stop(0),
        start(1, json!({"type":"server_tool_use","id":"srvtoolu_1","name":"web_search","input":{}})),
        input(1, r#"{"query":"rm -rf"}"#),
        stop(1),
        start(2, json!({"type":"web_search_tool_result","tool_use_id":"srvtoolu_1","content":[{"type":"web_search_result","title":"t","url":"https://x.example/","encrypted_content":"e"}]})),
        stop(2),
        start(3, json!({"type":"tool_use","id":"tu_1","name":"exec","input":{}})),
        input(3, r#"{"command":"rm -rf /"}"#),
        stop(3),
        start(4, json!({"type":"mcp_tool_use","id":"mcptoolu_1","name":"exec","server_name":"s","input":{}})),
        input(4, r#"{"command":"ls"}"#),
        stop(4),
        start(5, json!({"type":"mcp_tool_result","tool_use_id":"mcptoolu_1","is_error":false,"content":[{"type":"text","text":"ok"}]})),
        stop(5),
        ev(json!({"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":9}})),
        ev(json!({"type":"message_stop"})),
    ]
    .concat()
}

/// Every block of `out` starts at the next index, and its deltas and stop follow under it.
fn well_formed(out: &str) {
    let mut open: Option<u64> = None;
    let mut next = 0;
    for event in out.split("\n\n").filter(|e| !e.is_empty()) {
        let data = event.split("data: ").nth(1).unwrap_or_default();
        let v: Value = serde_json::from_str(data).unwrap_or(Value::Null);
        let index = v["index"].as_u64();
        match v["type"].as_str() {
            Some("content_block_start") => {
                assert_eq!((open, index), (None, Some(next)), "{out}");
                open = index;
                next += 1;
            }
            Some("content_block_delta") => assert_eq!(index, open, "{out}"),
            Some("content_block_stop") => {
                assert_eq!(index, open, "{out}");
                open = None;
            }
            _ => assert_eq!(open, None, "{out}"),
        }
    }
}

#[test]
fn blocks_anthropic_runs_are_not_judged_nor_move_the_refusal() {
    let stream = with_server_tools();
    let mut allow = DenyNamed(&[], Vec::new());
    let mut passing = rewriter(true);
    let mut out = passing.push(stream.as_bytes(), &mut allow).to_vec();
    out.extend_from_slice(&passing.finish(&mut allow));
    assert_eq!(String::from_utf8(out).unwrap_or_default(), stream);
    // The `tool_use` block alone is a proposal: not the search, not the remote MCP call.
    assert_eq!(
        allow.1,
        vec![("exec".to_owned(), r#"{"command":"rm -rf /"}"#.to_owned())]
    );

    let mut deny = DenyNamed(&["exec"], Vec::new());
    let mut refusing = rewriter(true);
    let mut out = Vec::new();
    for piece in stream.as_bytes().chunks(7) {
        out.extend_from_slice(&refusing.push(piece, &mut deny));
    }
    out.extend_from_slice(&refusing.finish(&mut deny));
    let out = String::from_utf8(out).unwrap_or_default();
    assert!(!out.contains("tu_1") && !out.contains("rm -rf /"), "{out}");
    well_formed(&out);
    let (blocks, stop) = blocks(&out);
    let block = |i: u64, kind: &str, name: &str| (i, kind.to_owned(), name.to_owned());
    assert_eq!(
        blocks,
        vec![
            block(0, "text", "Searching."),
            block(1, "server_tool_use", "web_search"),
            block(2, "web_search_tool_result", ""),
            block(3, "mcp_tool_use", "exec"),
            block(4, "mcp_tool_result", ""),
            block(5, "text", "refused exec"),
        ]
    );
    // No call is left for the agent to run.
    assert_eq!(stop, "end_turn");

    let body = json!({"id":"m","type":"message","role":"assistant","model":"c","stop_reason":"tool_use","content":[
        {"type":"server_tool_use","id":"srvtoolu_1","name":"web_search","input":{"query":"q"}},
        {"type":"web_search_tool_result","tool_use_id":"srvtoolu_1","content":[]},
        {"type":"mcp_tool_use","id":"mcptoolu_1","name":"exec","server_name":"s","input":{"command":"ls"}},
        {"type":"mcp_tool_result","tool_use_id":"mcptoolu_1","is_error":false,"content":[]},
        {"type":"tool_use","id":"tu_1","name":"exec","input":{"command":"rm -rf /"}}]})
    .to_string();
    let mut deny = DenyNamed(&["exec"], Vec::new());
    let mut whole = rewriter(false);
    let mut out = whole.push(body.as_bytes(), &mut deny).to_vec();
    out.extend_from_slice(&whole.finish(&mut deny));
    let v: Value = serde_json::from_slice(&out).unwrap_or(Value::Null);
    let kinds: Vec<&str> = v["content"]
        .as_array()
        .map(|c| c.iter().filter_map(|b| b["type"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        kinds,
        [
            "server_tool_use",
            "web_search_tool_result",
            "mcp_tool_use",
            "mcp_tool_result",
            "text"
        ]
    );
    assert_eq!(deny.1.len(), 1);
    assert_eq!(v["stop_reason"], "end_turn");
}

/// What `events` become when `exec` is refused: the output, and the calls judged.
fn streamed(events: &[Value], event_names: &[&str]) -> (String, Vec<(String, String)>) {
    let text: String = events
        .iter()
        .zip(event_names.iter().copied().chain(std::iter::repeat("")))
        .map(|(value, name)| match name {
            "" => ev(value.clone()),
            name => format!("event: {name}\ndata: {value}\n\n"),
        })
        .collect();
    let mut judge = DenyNamed(&["exec"], Vec::new());
    let mut rewriter = rewriter(true);
    let mut out = Vec::new();
    for piece in text.as_bytes().chunks(9) {
        out.extend_from_slice(&rewriter.push(piece, &mut judge));
    }
    out.extend_from_slice(&rewriter.finish(&mut judge));
    (String::from_utf8(out).unwrap_or_default(), judge.1)
}

fn ends_unreadable(out: &str) -> bool {
    out.ends_with(&format!(
        "event: error\ndata: {}\n\n",
        unjudged(Unjudged::Unreadable)
    ))
}

fn message_start(content: Value) -> Value {
    json!({"type":"message_start","message":{"id":"m","type":"message","role":"assistant","content":content,"model":"c","stop_reason":null,"usage":{"input_tokens":5,"output_tokens":1}}})
}

fn tool_start(index: u64, id: &str, name: &str) -> Value {
    json!({"type":"content_block_start","index":index,"content_block":{"type":"tool_use","id":id,"name":name,"input":{}}})
}

#[test]
fn a_second_block_start_while_a_call_is_held_or_for_an_index_seen_ends_the_stream() {
    let input = json!({"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":r#"{"command":"rm -rf /"}"#}});
    let stop = json!({"type":"content_block_stop","index":0});
    let text_start =
        json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}});
    let other_text =
        json!({"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}});
    // The SDKs and OpenClaw add a block for each start: the second would reach the agent.
    for (name, events, names) in [
        (
            "a second start for the held index",
            vec![
                message_start(json!([])),
                tool_start(0, "tu_1", "read"),
                tool_start(0, "tu_2", "exec"),
                input.clone(),
                stop.clone(),
            ],
            vec![],
        ),
        (
            "a second start under `event: ping`",
            vec![
                message_start(json!([])),
                tool_start(0, "tu_1", "read"),
                input.clone(),
                tool_start(0, "tu_2", "exec"),
                stop.clone(),
            ],
            vec!["", "", "", "ping"],
        ),
        (
            "a text block started while a call is held",
            vec![
                message_start(json!([])),
                tool_start(0, "tu_1", "read"),
                other_text,
                input.clone(),
                stop.clone(),
            ],
            vec![],
        ),
        (
            "a call started at the index of a text block",
            vec![
                message_start(json!([])),
                text_start.clone(),
                json!({"type":"content_block_stop","index":0}),
                tool_start(0, "tu_2", "exec"),
                input.clone(),
                stop.clone(),
            ],
            vec![],
        ),
        (
            "a text block started twice",
            vec![
                message_start(json!([])),
                text_start.clone(),
                json!({"type":"content_block_stop","index":0}),
                text_start.clone(),
            ],
            vec![],
        ),
    ] {
        let (out, seen) = streamed(&events, &names);
        assert!(
            ends_unreadable(&out) && !out.contains("tu_2") && seen.is_empty(),
            "{name}: {out}"
        );
    }
    // One start per index, each after the previous block stopped: judged as before.
    let (out, seen) = streamed(
        &[
            message_start(json!([])),
            text_start,
            json!({"type":"content_block_stop","index":0}),
            tool_start(1, "tu_1", "read"),
            json!({"type":"content_block_stop","index":1}),
        ],
        &[],
    );
    assert!(!ends_unreadable(&out) && out.contains("tu_1"), "{out}");
    assert_eq!(seen, vec![("read".to_owned(), "{}".to_owned())]);
}

#[test]
fn a_message_start_that_carries_content_ends_the_stream() {
    // The SDKs keep the content `message_start` gives: a call there would be run unjudged.
    for content in [
        json!([{"type":"tool_use","id":"tu_1","name":"exec","input":{"command":"rm -rf /"}}]),
        json!([{"type":"tool_use","id":"tu_1","name":"read","input":{}}]),
        json!({"type":"tool_use","id":"tu_1","name":"exec","input":{}}),
    ] {
        let (out, seen) = streamed(
            &[
                message_start(content.clone()),
                json!({"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":9}}),
                json!({"type":"message_stop"}),
            ],
            &[],
        );
        assert!(
            ends_unreadable(&out) && !out.contains("tu_1") && seen.is_empty(),
            "{content}: {out}"
        );
    }
    for content in [json!([]), Value::Null] {
        let (out, _) = streamed(&[message_start(content.clone())], &[]);
        assert!(!ends_unreadable(&out), "{content}: {out}");
    }
}
