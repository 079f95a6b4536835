use super::*;

struct DenyNamed(&'static [&'static str]);

impl JudgeCalls for DenyNamed {
    fn judge(&mut self, call: &ProposedCall<'_>) -> Verdict {
        if self.0.contains(&call.name) {
            Verdict::Deny {
                text: format!("refused {} {}", call.name, call.arguments),
            }
        } else {
            Verdict::Allow
        }
    }
}

/// A streamed answer with two function calls whose arguments arrive in pieces.
fn stream() -> String {
    let mut seq = 0;
    let mut events = Vec::new();
    let mut push = |mut v: Value| {
        v["sequence_number"] = json!(seq);
        seq += 1;
        events.push(format!(
            "event: {}\ndata: {v}\n\n",
            v["type"].as_str().unwrap_or_default()
        ));
    };
    push(
        json!({"type":"response.created","response":{"id":"r","output":[],"status":"in_progress"}}),
    );
    let calls = [
        ("fc_1", "call_1", "exec", r#"{"command":"rm -rf /"}"#),
        ("fc_2", "call_2", "read", r#"{"path":"a.txt"}"#),
    ];
    for (i, (id, call_id, name, args)) in calls.iter().enumerate() {
        push(
            json!({"type":"response.output_item.added","output_index":i,"item":{"type":"function_call","id":id,"call_id":call_id,"name":name,"arguments":"","status":"in_progress"}}),
        );
        for piece in args.as_bytes().chunks(5) {
            push(
                json!({"type":"response.function_call_arguments.delta","item_id":id,"output_index":i,"delta":std::str::from_utf8(piece).unwrap_or_default()}),
            );
        }
        push(
            json!({"type":"response.function_call_arguments.done","item_id":id,"output_index":i,"arguments":args}),
        );
        push(
            json!({"type":"response.output_item.done","output_index":i,"item":{"type":"function_call","id":id,"call_id":call_id,"name":name,"arguments":args,"status":"completed"}}),
        );
    }
    let output: Vec<Value> = calls
        .iter()
        .map(|(id, call_id, name, args)| json!({"type":"function_call","id":id,"call_id":call_id,"name":name,"arguments":args,"status":"completed"}))
        .collect();
    push(
        json!({"type":"response.completed","response":{"id":"r","output":output,"status":"completed","usage":{"input_tokens":3,"output_tokens":4,"total_tokens":7}}}),
    );
    events.concat()
}

fn run(judge: &mut DenyNamed) -> Vec<Value> {
    let mut rewriter = rewriter(true);
    let mut out = Vec::new();
    for piece in stream().as_bytes().chunks(13) {
        out.extend_from_slice(&rewriter.push(piece, judge));
    }
    out.extend_from_slice(&rewriter.finish(judge));
    String::from_utf8(out)
        .unwrap_or_default()
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            serde_json::from_str(e.split("data: ").nth(1).unwrap_or_default())
                .unwrap_or(Value::Null)
        })
        .collect()
}

#[test]
fn allowed_function_calls_pass_byte_for_byte() {
    let mut rewriter = rewriter(true);
    let mut out = rewriter
        .push(stream().as_bytes(), &mut DenyNamed(&[]))
        .to_vec();
    out.extend_from_slice(&rewriter.finish(&mut DenyNamed(&[])));
    assert_eq!(String::from_utf8(out).unwrap_or_default(), stream());
}

#[test]
fn a_refused_function_call_is_dropped_and_named_in_a_message_item() {
    let events = run(&mut DenyNamed(&["exec"]));
    let text = serde_json::to_string(&events).unwrap_or_default();
    assert!(!text.contains("call_1") && !text.contains("fc_1"), "{text}");
    // Sequence numbers stay consecutive; output indices too.
    let seqs: Vec<i64> = events
        .iter()
        .filter_map(|e| e["sequence_number"].as_i64())
        .collect();
    assert_eq!(seqs, (0..seqs.len() as i64).collect::<Vec<_>>(), "{text}");
    let added: Vec<(u64, String)> = events
        .iter()
        .filter(|e| e["type"] == "response.output_item.added")
        .map(|e| {
            (
                e["output_index"].as_u64().unwrap_or(99),
                e["item"]["type"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        added,
        vec![(0, "function_call".to_owned()), (1, "message".to_owned())]
    );
    let completed = events.last().cloned().unwrap_or(Value::Null);
    assert_eq!(completed["type"], "response.completed");
    let output = &completed["response"]["output"];
    assert_eq!(output[0]["name"], "read");
    assert_eq!(
        output[1]["content"][0]["text"],
        r#"refused exec {"command":"rm -rf /"}"#
    );
    assert_eq!(output.as_array().map(Vec::len), Some(2));
}

#[test]
fn a_whole_answer_loses_its_refused_function_call() {
    let body = json!({"id":"r","object":"response","status":"completed","output":[
        {"type":"function_call","id":"fc_1","call_id":"call_1","name":"exec","arguments":"{\"command\":\"rm -rf /\"}","status":"completed"}],
        "usage":{"input_tokens":3,"output_tokens":4,"total_tokens":7}}).to_string();
    let mut rewriter = rewriter(false);
    let mut out = rewriter
        .push(body.as_bytes(), &mut DenyNamed(&["exec"]))
        .to_vec();
    out.extend_from_slice(&rewriter.finish(&mut DenyNamed(&["exec"])));
    let v: Value = serde_json::from_slice(&out).unwrap_or(Value::Null);
    assert_eq!(v["output"].as_array().map(Vec::len), Some(1));
    assert_eq!(v["output"][0]["type"], "message");
    assert_eq!(v["usage"]["total_tokens"], 7);
}
