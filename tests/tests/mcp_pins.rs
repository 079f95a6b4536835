//! Tool-definition pinning through Warden: a real stdio MCP server that changes a tool's
//! description between sessions (a rug pull, `tests/mcp/rugpull_server.mjs`) is caught: the
//! changed tool is hidden and its calls refused, the change is in the audit log with a diff,
//! and once an operator approves it with `warden tools approve` the agent sees it again. Its
//! prompt and resource descriptions turn with it and are pinned the same way.

use std::time::Duration;

use serde_json::{Value, json};
use warden_e2e::mcp::{self, answered, initialize_raw, post_raw};
use warden_e2e::warden::{Warden, WardenBuilder};

/// The strings under `key` of a client step's result (`names` of a list, `uris`).
fn listed(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .filter_map(|n| n.as_str().map(str::to_owned))
        .collect()
}

fn names(v: &Value) -> Vec<String> {
    listed(v, "names")
}

/// Warden with the endpoint `/mcp/tools` on `calc`, the rug-pulling server: honest in its
/// first session (process), poisoned from the second on (it counts sessions in `state`).
async fn rugpull_warden(state: &tempfile::TempDir) -> warden_e2e::warden::Warden {
    rugpull_builder(state).start().await.expect("warden starts")
}

fn rugpull_builder(state: &tempfile::TempDir) -> WardenBuilder {
    rugpull_builder_with(state, &[])
}

/// As [`rugpull_builder`], the server given `extra` arguments too (`--after 2`, ...).
fn rugpull_builder_with(state: &tempfile::TempDir, extra: &[&str]) -> WardenBuilder {
    mcp::rugpull_warden(state.path(), extra)
}

/// `warden tools approve calc ITEM`, then a wait until the running Warden has picked it up
/// (it reads the store every `pins.refresh_interval`, 200 ms): `picked_up` (a probe of what an
/// agent is shown, in a session of its own) is asked again, 100 ms apart, until it says so, at
/// most 100 times.
async fn approve(w: &Warden, item: &str, picked_up: impl AsyncFn() -> bool) {
    let approve = w.cli(&["tools", "approve", "calc", item]).await.unwrap();
    assert!(approve.status.success(), "{approve:?}");
    for _ in 0..100 {
        if picked_up().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the running Warden did not pick up the approval of {item}");
}

/// Whether a new session of `token`'s agent at `url` is shown the `list` step's item `name`.
async fn is_listed(w: &Warden, url: &str, token: &str, list: &str, name: &str) -> bool {
    let r = mcp::session(w, url, token, json!([{ "op": list }]))
        .await
        .unwrap();
    names(&r["steps"][0]).iter().any(|n| n == name)
}

fn uris(v: &Value) -> Vec<String> {
    listed(v, "uris")
}

#[tokio::test]
async fn a_rug_pull_is_hidden_refused_audited_and_usable_again_once_approved() {
    let state = tempfile::tempdir().unwrap();
    let w = rugpull_warden(&state).await;
    let agent = w.token("e2e-agent").await.unwrap();
    let url = w.url("/mcp/tools");
    let add = json!({"op": "call", "name": "calc_add", "arguments": {"a": 2, "b": 3}});

    // Session 1: the honest definition is pinned on first use.
    let r = mcp::session(&w, &url, &agent, json!([{"op": "list_tools"}, add]))
        .await
        .unwrap();
    assert!(
        names(&r["steps"][0]).contains(&"calc_add".to_owned()),
        "{r}"
    );
    assert_eq!(r["steps"][1]["isError"], false, "{r}");
    assert!(r["steps"][1]["text"].as_str().unwrap().contains('5'), "{r}");
    assert_eq!(
        r["initialize"]["instructions"], "Server calc: Use add for sums.",
        "the server's instructions are pinned on first use too: {r}"
    );

    // Session 2: the server now hides instructions in `add`. The tool is not listed and a
    // call is refused before it reaches the server.
    let r = mcp::session(&w, &url, &agent, json!([{"op": "list_tools"}, add]))
        .await
        .unwrap();
    assert!(
        !names(&r["steps"][0]).contains(&"calc_add".to_owned()),
        "{r}"
    );
    let refused = r["steps"][1].to_string();
    assert!(
        refused.contains("held") && refused.contains("warden tools approve"),
        "{r}"
    );
    // Its changed instructions are withheld from the agent too.
    assert!(
        r["initialize"]["instructions"].is_null(),
        "changed instructions reach no agent before they are approved: {r}"
    );

    // The audit log has the change, with the diff and what the detectors found.
    let change = w
        .audit_records()
        .into_iter()
        .find(|r| r["kind"] == "tool_change" && r["detail"]["tool"] == "add")
        .expect("a tool_change record");
    let detail = &change["detail"];
    assert_eq!(detail["server"], "calc");
    assert_eq!(detail["tool"], "add");
    assert!(
        detail["diff"].as_str().unwrap().contains("id_rsa"),
        "{change}"
    );
    assert!(
        detail["findings"].as_array().is_some_and(|f| !f.is_empty()),
        "{change}"
    );

    // The operator reviews and approves the new definition; the running Warden picks it up.
    let diff = w.cli(&["tools", "diff", "calc", "add"]).await.unwrap();
    assert!(diff.status.success(), "{diff:?}");
    assert!(String::from_utf8_lossy(&diff.stdout).contains("id_rsa"));
    approve(&w, "add", async || {
        is_listed(&w, &url, &agent, "list_tools", "calc_add").await
    })
    .await;
    let r = mcp::session(&w, &url, &agent, json!([{"op": "list_tools"}, add]))
        .await
        .unwrap();
    assert!(
        names(&r["steps"][0]).contains(&"calc_add".to_owned()),
        "{r}"
    );
    assert_eq!(r["steps"][1]["isError"], false, "{r}");
    assert!(
        r["initialize"]["instructions"].is_null(),
        "approving a tool approves not the instructions: {r}"
    );
}

#[tokio::test]
async fn changed_server_instructions_are_withheld_audited_and_shown_once_approved() {
    let state = tempfile::tempdir().unwrap();
    let w = rugpull_warden(&state).await;
    let agent = w.token("e2e-agent").await.unwrap();
    let url = w.url("/mcp/tools");
    let honest = mcp::session(&w, &url, &agent, json!([])).await.unwrap();
    assert_eq!(
        honest["initialize"]["instructions"], "Server calc: Use add for sums.",
        "{honest}"
    );
    let turned = mcp::session(&w, &url, &agent, json!([])).await.unwrap();
    assert!(turned["initialize"]["instructions"].is_null(), "{turned}");
    let change = w
        .wait_for_audit(Duration::from_secs(10), |r| {
            r["kind"] == "tool_change" && r["detail"]["tool"] == "(instructions)"
        })
        .await
        .unwrap();
    assert_eq!(change["detail"]["server"], "calc", "{change}");
    assert!(
        change["detail"]["diff"]
            .as_str()
            .unwrap()
            .contains("id_rsa"),
        "{change}"
    );
    approve(&w, "(instructions)", async || {
        let r = mcp::session(&w, &url, &agent, json!([])).await.unwrap();
        !r["initialize"]["instructions"].is_null()
    })
    .await;
    let approved = mcp::session(&w, &url, &agent, json!([])).await.unwrap();
    assert!(
        approved["initialize"]["instructions"]
            .as_str()
            .is_some_and(|i| i.contains("id_rsa")),
        "{approved}"
    );
}

#[tokio::test]
async fn a_changed_prompt_or_resource_is_withheld_refused_audited_and_restored_once_approved() {
    let state = tempfile::tempdir().unwrap();
    // What the detectors find in an approved prompt is in the policy's context.findings.
    let w = rugpull_builder(&state)
        .policy(
            "no-concealing-prompts.cedar",
            "@id(\"no-concealing-prompts\")\n\
             forbid(principal, action == Action::\"mcp:get_prompt\", resource)\n\
             when { context.findings.contains(\"tool_concealment\") };\n",
        )
        .start()
        .await
        .expect("warden starts");
    let agent = w.token("e2e-agent").await.unwrap();
    let url = w.url("/mcp/tools");
    let steps = json!([
        {"op": "list_prompts"},
        {"op": "get_prompt", "name": "calc_summarize", "arguments": {"text": "hi"}},
        {"op": "list_resources"},
        {"op": "read_resource", "uri": "calc+notes://today"},
        {"op": "get_prompt", "name": "calc_greet"},
    ]);

    // Session 1: the honest prompt and resource are pinned on first use.
    let r = mcp::session(&w, &url, &agent, steps.clone()).await.unwrap();
    assert!(
        names(&r["steps"][0]).contains(&"calc_summarize".to_owned()),
        "{r}"
    );
    assert_eq!(r["steps"][1]["messages"], 1, "{r}");
    assert!(
        uris(&r["steps"][2]).contains(&"calc+notes://today".to_owned()),
        "{r}"
    );
    assert_eq!(r["steps"][3]["texts"][0], "notes of notes://today", "{r}");

    // Session 2: their descriptions now hide instructions. They are withheld from the lists
    // and refused; the unchanged prompt is not.
    let r = mcp::session(&w, &url, &agent, steps.clone()).await.unwrap();
    assert!(
        !names(&r["steps"][0]).contains(&"calc_summarize".to_owned()),
        "{r}"
    );
    assert!(
        names(&r["steps"][0]).contains(&"calc_greet".to_owned()),
        "{r}"
    );
    let refused = r["steps"][1]["error"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        refused.contains("held")
            && refused.contains("warden tools approve calc 'prompt:summarize'"),
        "{r}"
    );
    assert!(
        !uris(&r["steps"][2]).contains(&"calc+notes://today".to_owned()),
        "{r}"
    );
    let refused = r["steps"][3]["error"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        refused.contains("held") && refused.contains("'resource:notes://today'"),
        "{r}"
    );
    assert_eq!(r["steps"][4]["messages"], 1, "{r}");

    // Both changes are audited with their diff and findings.
    for (tool, kind) in [
        ("prompt:summarize", "prompt"),
        ("resource:notes://today", "resource"),
    ] {
        let change = w
            .wait_for_audit(Duration::from_secs(10), |r| {
                r["kind"] == "tool_change" && r["detail"]["tool"] == tool
            })
            .await
            .unwrap();
        assert_eq!(change["detail"]["kind"], kind, "{change}");
        assert_eq!(change["detail"]["server"], "calc", "{change}");
        assert!(
            change["detail"]["diff"]
                .as_str()
                .unwrap()
                .contains("id_rsa"),
            "{change}"
        );
        assert!(
            change["detail"]["findings"]
                .as_array()
                .is_some_and(|f| !f.is_empty()),
            "{change}"
        );
    }

    // The operator sees them among the pins, reviews the prompt's diff, and approves it.
    let list = w.cli(&["tools", "list", "--server", "calc"]).await.unwrap();
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(
        listed.contains("calc/prompt:summarize  changed"),
        "{listed}"
    );
    assert!(
        listed.contains("calc/resource:notes://today  changed"),
        "{listed}"
    );
    let diff = w
        .cli(&["tools", "diff", "calc", "prompt:summarize"])
        .await
        .unwrap();
    assert!(diff.status.success(), "{diff:?}");
    let shown = String::from_utf8_lossy(&diff.stdout);
    assert!(
        shown.contains("id_rsa") && shown.contains("tool_concealment"),
        "{shown}"
    );
    approve(&w, "prompt:summarize", async || {
        is_listed(&w, &url, &agent, "list_prompts", "calc_summarize").await
    })
    .await;

    // Session 3: the approved prompt is listed again; getting it is judged with its findings
    // (here a policy forbids it). The resource, not approved, is still withheld.
    let r = mcp::session(&w, &url, &agent, steps).await.unwrap();
    assert!(
        names(&r["steps"][0]).contains(&"calc_summarize".to_owned()),
        "{r}"
    );
    let denied = r["steps"][1]["error"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(!denied.contains("held"), "{r}");
    assert!(
        r["steps"][1]["error"].is_object(),
        "the forbid on findings applies: {r}"
    );
    let decision = w
        .wait_for_audit(Duration::from_secs(10), |r| {
            r["action"] == "mcp:get_prompt" && r["decision"] == "deny"
        })
        .await
        .unwrap();
    assert!(
        decision.to_string().contains("no-concealing-prompts"),
        "{decision}"
    );
    assert!(
        decision["findings"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f["detector"] == "tool_concealment")),
        "{decision}"
    );
    assert!(
        !uris(&r["steps"][2]).contains(&"calc+notes://today".to_owned()),
        "{r}"
    );
    assert_eq!(r["steps"][4]["messages"], 1, "{r}");
}

/// One raw session (no SDK: URIs go exactly as written) at `/mcp/tools` as `token`'s agent:
/// the answer to each message, `(method, params)`, in order.
async fn raw_session(w: &Warden, token: &str, messages: &[(&str, Value)]) -> Vec<Value> {
    let session = initialize_raw(w, "/mcp/tools", token).await.unwrap();
    let mut answers = Vec::new();
    for (i, (method, params)) in messages.iter().enumerate() {
        let message = json!({"jsonrpc": "2.0", "id": 100 + i, "method": method, "params": params});
        let response = post_raw(w, "/mcp/tools", token, Some(&session), &message)
            .await
            .unwrap();
        answers.push(answered(response).await);
    }
    answers
}

fn read(uri: &str) -> (&'static str, Value) {
    ("resources/read", json!({"uri": uri}))
}

fn list_resources() -> (&'static str, Value) {
    ("resources/list", json!({}))
}

/// The text a read answered, or `None` when it was refused.
fn read_text(answer: &Value) -> Option<&str> {
    answer["result"]["contents"][0]["text"].as_str()
}

/// The message of a refusal (empty when it was not refused).
fn refusal(answer: &Value) -> &str {
    answer["error"]["message"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn another_spelling_of_a_held_uri_is_refused_and_an_unpinned_one_judged_by_policy() {
    let state = tempfile::tempdir().unwrap();
    let w = rugpull_warden(&state).await;
    let agent = w.token("e2e-agent").await.unwrap();
    // Session 1: the honest resource is pinned on first use.
    let a = raw_session(
        &w,
        &agent,
        &[
            list_resources(),
            read("calc+notes://today"),
            read("calc+NOTES://Today"),
        ],
    )
    .await;
    assert_eq!(read_text(&a[1]), Some("notes of notes://today"), "{a:?}");
    // The server is sent the spelling the pin check read, not the agent's.
    assert_eq!(read_text(&a[2]), Some("notes of notes://today"), "{a:?}");

    // Session 2: it turns; listed, it is held. Every spelling RFC 3986 calls the same URI is
    // held with it.
    let a = raw_session(
        &w,
        &agent,
        &[
            list_resources(),
            read("calc+NOTES://Today"),
            read("calc+notes://t%6Fday"),
            read("calc+notes://today"),
            read("calc+notes://tomorrow"),
            read("calc+other://x"),
        ],
    )
    .await;
    for (i, spelling) in [(1, "NOTES://Today"), (2, "t%6Fday"), (3, "today")] {
        assert!(
            refusal(&a[i]).contains("held") && refusal(&a[i]).contains("'resource:notes://today'"),
            "{spelling}: {}",
            a[i]
        );
    }
    // A URI under no pin (here the template's, which has not changed, and one the server
    // does not list) is judged by policy alone in tofu mode.
    assert_eq!(
        read_text(&a[4]),
        Some("notes of notes://tomorrow"),
        "{}",
        a[4]
    );
    assert_eq!(read_text(&a[5]), Some("notes of other://x"), "{}", a[5]);
}

#[tokio::test]
async fn in_approved_mode_a_uri_is_read_only_under_an_approved_pin_or_template() {
    let state = tempfile::tempdir().unwrap();
    let w = rugpull_builder_with(&state, &["--after", "100"])
        .set("/pins/mode", json!("approved"))
        .start()
        .await
        .expect("warden starts");
    let agent = w.token("e2e-agent").await.unwrap();
    let reads = [
        read("calc+notes://tomorrow"),
        read("calc+other://x"),
        read("calc+notes://a/b"),
    ];
    let a = raw_session(&w, &agent, &reads).await;
    assert!(
        refusal(&a[0]).contains("resource template")
            && refusal(&a[0]).contains("'resource-template:notes://{day}'"),
        "a URI its unapproved template matches is held: {}",
        a[0]
    );
    for answer in &a[1..] {
        assert!(
            refusal(answer).contains("pins mode `approved`"),
            "a URI under no pin and no template is refused: {answer}"
        );
    }

    approve(&w, "resource-template:notes://{day}", async || {
        let a = raw_session(&w, &agent, &reads[..1]).await;
        read_text(&a[0]).is_some()
    })
    .await;
    let a = raw_session(&w, &agent, &reads).await;
    assert_eq!(
        read_text(&a[0]),
        Some("notes of notes://tomorrow"),
        "{}",
        a[0]
    );
    assert!(refusal(&a[1]).contains("pins mode `approved`"), "{}", a[1]);
    assert!(
        refusal(&a[2]).contains("pins mode `approved`"),
        "a simple {{var}} spans no `/`: {}",
        a[2]
    );
}

#[tokio::test]
async fn a_read_is_refused_when_the_servers_listing_fails() {
    let state = tempfile::tempdir().unwrap();
    let w = rugpull_builder_with(&state, &["--fail", "resources/list"])
        .start()
        .await
        .expect("warden starts");
    let agent = w.token("e2e-agent").await.unwrap();
    let a = raw_session(&w, &agent, &[read("calc+notes://today")]).await;
    let message = refusal(&a[0]);
    assert!(
        message.contains("MCP server calc's resources/list")
            && message.contains("listing failed")
            && message.contains("try again later"),
        "{}",
        a[0]
    );
    assert_eq!(a[0]["error"]["code"], -32001, "{}", a[0]);
}

#[tokio::test]
async fn a_denied_agent_gets_the_policys_refusal_and_warden_lists_nothing_for_it() {
    let state = tempfile::tempdir().unwrap();
    let methods = state.path().join("methods");
    let methods_arg = methods.to_str().unwrap();
    let w = rugpull_builder_with(&state, &["--after", "2", "--methods", methods_arg])
        .policy(
            "denied.cedar",
            "@id(\"no-reading-for-denied\")\n\
             @reason(\"reading is not for this agent\")\n\
             forbid(principal == Agent::\"denied-agent\", action in \
             [Action::\"mcp:read_resource\", Action::\"mcp:get_prompt\"], resource);\n",
        )
        .start()
        .await
        .expect("warden starts");
    let denied = w.token("denied-agent").await.unwrap();
    let agent = w.token("e2e-agent").await.unwrap();
    let lists = || {
        std::fs::read_to_string(&methods)
            .unwrap_or_default()
            .lines()
            .filter(|m| matches!(*m, "prompts/list" | "resources/list"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let get_prompt = (
        "prompts/get",
        json!({"name": "calc_summarize", "arguments": {"text": "hi"}}),
    );

    // Session 0: items never seen; the denied agent is refused by policy before Warden lists
    // anything to check them.
    let a = raw_session(
        &w,
        &denied,
        &[get_prompt.clone(), read("calc+notes://today")],
    )
    .await;
    for answer in &a {
        assert!(
            refusal(answer).contains("reading is not for this agent"),
            "{answer}"
        );
    }
    assert_eq!(
        lists(),
        Vec::<String>::new(),
        "no listing for a denied request"
    );

    // Session 1: an allowed agent's read lists (and pins) the server's resources.
    let a = raw_session(&w, &agent, &[read("calc+notes://today")]).await;
    assert_eq!(read_text(&a[0]), Some("notes of notes://today"), "{}", a[0]);
    assert_eq!(lists(), ["resources/list"]);

    // Session 2: the resource turns and is held; session 3: the denied agent still gets the
    // policy's refusal, which says nothing of the pin.
    let a = raw_session(&w, &agent, &[list_resources(), read("calc+notes://today")]).await;
    assert!(refusal(&a[1]).contains("held"), "{}", a[1]);
    let a = raw_session(&w, &denied, &[read("calc+notes://today")]).await;
    assert!(
        refusal(&a[0]).contains("reading is not for this agent")
            && !refusal(&a[0]).contains("held"),
        "{}",
        a[0]
    );
}

#[tokio::test]
async fn a_presigned_uri_is_masked_in_the_audit_log_warden_s_log_and_tools_list() {
    let state = tempfile::tempdir().unwrap();
    let w = rugpull_builder_with(&state, &["--signed"])
        .set("/pins/mode", json!("approved"))
        .start()
        .await
        .expect("warden starts");
    let agent = w.token("e2e-agent").await.unwrap();
    let signed =
        "calc+https://files.example/r?X-Amz-Signature=5ec2e75ig&X-Amz-Credential=AKIAEXAMPLE";
    let a = raw_session(&w, &agent, &[list_resources(), read(signed)]).await;
    assert!(refusal(&a[1]).contains("held"), "{}", a[1]);
    // Names are shown and recorded up to 64 characters: the start of the masked key.
    let masked = "resource:https://files.example/r?X-Amz-Signature=***&X-Amz-Cred";
    let change = w
        .wait_for_audit(Duration::from_secs(10), |r| {
            r["kind"] == "tool_change"
                && r["detail"]["kind"] == "resource"
                && r["detail"]["tool"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("resource:https:"))
        })
        .await
        .unwrap();
    assert!(
        change["detail"]["tool"]
            .as_str()
            .unwrap()
            .starts_with(masked),
        "{change}"
    );
    let list = w.cli(&["tools", "list", "--server", "calc"]).await.unwrap();
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(listed.contains(&format!("calc/{masked}")), "{listed}");
    let audit: String = w.audit_records().iter().map(Value::to_string).collect();
    for secret in ["5ec2e75ig", "AKIAEXAMPLE"] {
        assert!(!audit.contains(secret), "the audit log holds {secret}");
        assert!(!listed.contains(secret), "warden tools list shows {secret}");
        assert!(!w.output().contains(secret), "Warden's log holds {secret}");
    }
}
