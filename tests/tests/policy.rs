//! Cedar decisions as agents see them: a denied model is refused with a well-formed
//! completion that ends the turn normally, so the official SDKs and their helpers hand the
//! policy's reason to the person behind the agent (OpenAI `stop`, Responses `completed`,
//! Anthropic `end_turn`); with `refusal_finish: content_filter` the provider's marking returns;
//! with `on_deny: http_error` a 403 in the provider's shape. Model names that could hide from a
//! policy are refused or judged as what they look like.

use std::time::Duration;

use serde_json::{Value, json};
use warden_e2e::fake_llm::{self, FakeLlm};
use warden_e2e::paths;
use warden_e2e::sdk;
use warden_e2e::stack::{AGENT, Stack, openai_chat};
use warden_e2e::warden::{WardenBuilder, run_bounded};

const REASON: &str = "gpt-4.1 is not approved for e2e agents";

const FORBID_GPT41: &str = r#"
@id("e2e-forbid-gpt41")
@reason("gpt-4.1 is not approved for e2e agents")
forbid (principal, action == Action::"llm:chat", resource == Model::"openai/gpt-4.1");

@id("e2e-forbid-opus")
@reason("claude-opus-4-1 is reserved for humans")
forbid (principal, action == Action::"llm:chat", resource == Model::"anthropic/claude-opus-4-1");
"#;

#[tokio::test]
async fn denied_model_is_refused_with_a_completion_the_openai_sdk_and_its_helpers_show() {
    let s = Stack::start_with(|b| b.policy("e2e-forbid.cedar", FORBID_GPT41))
        .await
        .unwrap();
    let out = sdk::run(
        "openai_chat.py",
        &s.openai_base(),
        &s.token,
        &[
            "chat",
            "stream",
            "chat-stream-helper",
            "chat-parse",
            "responses-stream-helper",
            "responses",
            "--model",
            "gpt-4.1",
        ],
    )
    .await
    .unwrap();

    let decision = s
        .audit("decision", |r| r["decision"] == "deny")
        .await
        .unwrap();
    let decision_id = decision["decision_id"].as_str().unwrap();
    assert!(
        decision["reasons"].to_string().contains(REASON),
        "{decision}"
    );
    assert!(
        decision["policies"]
            .to_string()
            .contains("e2e-forbid-gpt41"),
        "{decision}"
    );
    assert_eq!(decision["principal"]["id"], "e2e-agent");

    let chat = &out["chat"];
    assert_eq!(
        chat["finish_reason"], "stop",
        "the refusal ends the turn: {out}"
    );
    let text = chat["content"].as_str().unwrap();
    assert!(text.contains(REASON), "the refusal explains itself: {text}");
    assert!(
        text.contains(decision_id),
        "the refusal names its decision id: {text}"
    );
    assert_eq!(chat["headers"]["x-warden-decision"], "deny");

    let stream = &out["stream"];
    assert_eq!(
        stream["finish_reason"], "stop",
        "a streamed request gets a streamed refusal: {out}"
    );
    assert!(
        stream["content"].as_str().unwrap().contains(REASON),
        "{out}"
    );

    // The SDK's helpers raise ContentFilterFinishReasonError on a content_filter finish; on
    // Warden's refusal they hand over the reason as the assistant's answer.
    let helper = &out["chat-stream-helper"];
    assert!(helper.get("error").is_none(), "no exception: {out}");
    assert_eq!(helper["finish_reason"], "stop", "{out}");
    assert!(helper["text"].as_str().unwrap().contains(REASON), "{out}");
    assert_eq!(helper["content"], helper["text"], "{out}");
    let parsed = &out["chat-parse"];
    assert!(parsed.get("error").is_none(), "no exception: {out}");
    assert_eq!(parsed["finish_reason"], "stop", "{out}");
    assert!(
        parsed["content"].as_str().unwrap().contains(REASON),
        "{out}"
    );
    assert_eq!(parsed["headers"]["x-warden-decision"], "deny");
    for mode in ["responses-stream-helper", "responses"] {
        let response = &out[mode];
        assert!(response.get("error").is_none(), "no exception: {out}");
        assert_eq!(response["status"], "completed", "{mode}: {out}");
        assert!(
            response["text"].as_str().unwrap().contains(REASON),
            "{mode}: {out}"
        );
    }

    assert!(
        s.fake.requests().is_empty(),
        "a denied request never reaches the provider"
    );
}

#[tokio::test]
async fn denied_model_is_refused_with_a_message_that_ends_the_turn_for_the_anthropic_sdk() {
    let s = Stack::start_with(|b| b.policy("e2e-forbid.cedar", FORBID_GPT41))
        .await
        .unwrap();
    let out = sdk::run(
        "anthropic_messages.py",
        &s.anthropic_base(),
        &s.token,
        &["message", "stream", "--model", "claude-opus-4-1"],
    )
    .await
    .unwrap();
    let message = &out["message"];
    assert_eq!(message["stop_reason"], "end_turn", "{out}");
    assert!(
        message["text"]
            .as_str()
            .unwrap()
            .contains("claude-opus-4-1 is reserved for humans"),
        "{out}"
    );
    assert_eq!(message["headers"]["x-warden-decision"], "deny");
    // `messages.stream()` and `get_final_message()`, the helper agents build on.
    let stream = &out["stream"];
    assert!(stream.get("error").is_none(), "no exception: {out}");
    assert_eq!(stream["stop_reason"], "end_turn", "{out}");
    assert!(
        stream["text"]
            .as_str()
            .unwrap()
            .contains("reserved for humans"),
        "{out}"
    );
    assert_eq!(stream["final_text"], stream["text"], "{out}");
    assert_eq!(stream["headers"]["x-warden-decision"], "deny");
    assert!(s.fake.requests().is_empty());

    let allowed = sdk::run(
        "anthropic_messages.py",
        &s.anthropic_base(),
        &s.token,
        &["message"],
    )
    .await
    .unwrap();
    assert_eq!(
        allowed["message"]["text"],
        json!(fake_llm::full_text()),
        "other models still pass: {allowed}"
    );
}

#[tokio::test]
async fn on_deny_http_error_answers_403_in_the_provider_error_shape() {
    let s = Stack::start_with(|b| {
        b.policy("e2e-forbid.cedar", FORBID_GPT41)
            .set("/routes/0/on_deny", json!("http_error"))
    })
    .await
    .unwrap();
    let response = s
        .post("/openai/chat/completions", &openai_chat("gpt-4.1", false))
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(response.headers()["x-warden-decision"], "deny");
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"].as_str().unwrap().contains(REASON),
        "{body}"
    );

    let out = sdk::run(
        "openai_chat.py",
        &s.openai_base(),
        &s.token,
        &["chat", "--model", "gpt-4.1"],
    )
    .await
    .unwrap();
    assert_eq!(out["chat"]["error"]["status"], 403, "{out}");
    assert_eq!(out["chat"]["error"]["class"], "PermissionDeniedError");
    assert!(s.fake.requests().is_empty());
}

#[tokio::test]
async fn without_a_permit_every_request_is_denied_by_default() {
    let s = Stack::start_with(|b| b.without_policy("e2e-permit-all.cedar"))
        .await
        .unwrap();
    let response = s
        .post(
            "/openai/chat/completions",
            &openai_chat("gpt-4o-mini", false),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-warden-decision"], "deny");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["choices"][0]["finish_reason"], "stop", "{body}");
    let record = s
        .audit("decision", |r| r["decision"] == "deny")
        .await
        .unwrap();
    assert!(
        record["policies"].as_array().is_none_or(Vec::is_empty),
        "default deny names no policy: {record}"
    );
    assert!(s.fake.requests().is_empty());
}

#[tokio::test]
async fn refusal_finish_content_filter_brings_back_the_marking_and_the_openai_helpers_raise() {
    let s = Stack::start_with(|b| {
        b.policy("e2e-forbid.cedar", FORBID_GPT41)
            .set("/routes/0/refusal_finish", json!("content_filter"))
            .set("/routes/1/refusal_finish", json!("content_filter"))
    })
    .await
    .unwrap();
    let out = sdk::run(
        "openai_chat.py",
        &s.openai_base(),
        &s.token,
        &[
            "chat",
            "stream",
            "chat-stream-helper",
            "chat-parse",
            "responses",
            "--model",
            "gpt-4.1",
        ],
    )
    .await
    .unwrap();
    assert_eq!(out["chat"]["finish_reason"], "content_filter", "{out}");
    assert!(out["chat"]["content"].as_str().unwrap().contains(REASON));
    assert_eq!(out["chat"]["headers"]["x-warden-decision"], "deny");
    assert_eq!(out["stream"]["finish_reason"], "content_filter", "{out}");
    assert_eq!(out["responses"]["status"], "incomplete", "{out}");
    // What the default avoids: the helpers raise and the text never reaches the user.
    for mode in ["chat-stream-helper", "chat-parse"] {
        assert_eq!(
            out[mode]["error"]["class"], "ContentFilterFinishReasonError",
            "{mode}: {out}"
        );
    }

    let out = sdk::run(
        "anthropic_messages.py",
        &s.anthropic_base(),
        &s.token,
        &["message", "stream", "--model", "claude-opus-4-1"],
    )
    .await
    .unwrap();
    assert_eq!(out["message"]["stop_reason"], "refusal", "{out}");
    assert_eq!(out["stream"]["stop_reason"], "refusal", "{out}");
    assert!(s.fake.requests().is_empty());
}

const FORBID_DENIED_MODEL: &str = r#"
@id("e2e-forbid-denied-model")
@reason("denied-model is forbidden")
forbid (principal, action, resource == Model::"openai/denied-model");
"#;

#[tokio::test]
async fn model_names_cannot_slip_past_a_forbid_with_nul_bidi_or_look_alike_characters() {
    let s = Stack::start_with(|b| b.policy("e2e-forbid-denied.cedar", FORBID_DENIED_MODEL))
        .await
        .unwrap();
    for (sent, what) in [
        ("denied-model\u{0}", "NUL"),
        ("denied-model\u{202e}", "right-to-left override"),
        ("denied\u{2066}-model", "left-to-right isolate"),
        ("denied-\u{200b}model", "zero-width space"),
    ] {
        let response = s
            .post("/openai/chat/completions", &openai_chat(sent, false))
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{what}");
        assert_eq!(response.headers()["x-warden-error"], "invalid_identifier");
        let body: Value = response.json().await.unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("\"model\" field is not a valid name"),
            "{what}: {message}"
        );
        assert!(
            !message.contains("denied"),
            "the value is not echoed: {message}"
        );
    }
    // Cyrillic е, Greek ο, fullwidth letters: judged as the name they imitate.
    for sent in [
        "d\u{0435}nied-model",
        "denied-m\u{03bf}del",
        "\u{ff44}\u{ff45}\u{ff4e}\u{ff49}\u{ff45}\u{ff44}-model",
    ] {
        let response = s
            .post("/openai/chat/completions", &openai_chat(sent, false))
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{sent}");
        assert_eq!(response.headers()["x-warden-decision"], "deny", "{sent}");
        let body: Value = response.json().await.unwrap();
        assert!(
            body["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .contains("denied-model is forbidden"),
            "{body}"
        );
    }
    let record = s
        .audit("decision", |r| r["decision"] == "deny")
        .await
        .unwrap();
    assert_eq!(
        record["resource"], r#"Model::"openai/denied-model""#,
        "{record}"
    );
    let rejected = s
        .audit("rejected", |r| {
            r["reasons"].to_string().contains("not a valid name")
        })
        .await
        .unwrap();
    assert!(
        !rejected["reasons"].to_string().contains("denied"),
        "the record does not echo the value either: {rejected}"
    );
    assert!(s.fake.requests().is_empty(), "none reached the provider");

    let allowed = s
        .post(
            "/openai/chat/completions",
            &openai_chat("gpt-4o-mini", false),
        )
        .await
        .unwrap();
    assert_eq!(allowed.status(), 200);
    assert!(allowed.headers().get("x-warden-decision").is_none());
}

#[tokio::test]
async fn the_baseline_output_cap_counts_every_choice_a_request_asks_for() {
    let s = baseline_stack(&[]).await;
    let hi = json!([{"role": "user", "content": "hi"}]);
    // 128 answers of 32 768 tokens each pass a cap read per answer.
    let many = json!({"model": "gpt-4o-mini", "messages": hi, "n": 128, "max_tokens": 32768});
    let response = s.post("/openai/v1/chat/completions", &many).await.unwrap();
    assert_eq!(response.headers()["x-warden-decision"], "deny", "{many}");
    let record = s
        .audit("decision", |r| r["decision"] == "deny")
        .await
        .unwrap();
    assert!(
        record["policies"]
            .to_string()
            .contains("baseline-max-output-tokens"),
        "{record}"
    );
    let one = json!({"model": "gpt-4o-mini", "messages": hi, "n": 1, "max_tokens": 32768});
    let response = s.post("/openai/v1/chat/completions", &one).await.unwrap();
    assert!(
        response.headers().get("x-warden-decision").is_none(),
        "{one}"
    );
    assert_eq!(s.fake.requests().len(), 1);
}

/// Warden with the repository's baseline pack (and `extra` policies) in place of the
/// permit-all policy the tests start with, its OpenAI route on the upstream's root so that
/// agents send `/openai/v1/...` as OpenAI's own clients do.
async fn baseline_stack(extra: &[(&str, &str)]) -> Stack {
    let baseline = std::fs::read_to_string(paths::repo_root().join("policies/baseline.cedar"))
        .expect("the repository's baseline pack");
    let fake = FakeLlm::start().await.unwrap();
    let mut builder = WardenBuilder::new(&fake)
        .set("/routes/0/upstream", json!(fake.url()))
        .without_policy("e2e-permit-all.cedar")
        .policy("baseline.cedar", &baseline);
    for (name, text) in extra {
        builder = builder.policy(name, text);
    }
    let warden = builder.start().await.unwrap();
    let token = warden.token(AGENT).await.unwrap();
    Stack {
        fake,
        warden,
        token,
    }
}

/// `GET /openai/v1/models/{id}` through Warden with the agent's token.
async fn get_model(s: &Stack, id: &str) -> reqwest::Response {
    s.warden
        .http()
        .get(s.warden.url(&format!("/openai/v1/models/{id}")))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_baseline_lets_an_agent_describe_a_model() {
    let s = baseline_stack(&[]).await;
    let response = get_model(&s, "gpt-4o").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["id"], "gpt-4o", "{body}");
    let upstream = s.upstream_requests(1).await;
    assert_eq!(upstream.len(), 1);
    assert_eq!(upstream[0].path, "/v1/models/gpt-4o");
    let decision = s
        .audit("decision", |r| r["action"] == "llm:models")
        .await
        .unwrap();
    assert_eq!(decision["decision"], "allow", "{decision}");
    assert_eq!(
        decision["resource"], r#"Model::"openai/gpt-4o""#,
        "{decision}"
    );
    assert_eq!(
        decision["policies"],
        json!(["baseline-list-models"]),
        "{decision}"
    );
}

#[tokio::test]
async fn a_forbid_on_a_model_refuses_describing_it() {
    let s = baseline_stack(&[(
        "e2e-hide-gpt4o.cedar",
        r#"
@id("e2e-hide-gpt4o")
@reason("gpt-4o is not offered to e2e agents")
forbid (principal, action == Action::"llm:models", resource == Model::"openai/gpt-4o");
"#,
    )])
    .await;
    let response = get_model(&s, "gpt-4o").await;
    assert_eq!(response.status(), 403);
    assert_eq!(response.headers()["x-warden-decision"], "deny");
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("gpt-4o is not offered to e2e agents"),
        "{body}"
    );
    // Another model still passes.
    let other = get_model(&s, "gpt-4o-mini").await;
    let status = other.status();
    assert_eq!(status, 200, "{}", other.text().await.unwrap_or_default());
    let paths: Vec<String> = s
        .upstream_requests(1)
        .await
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(
        paths,
        ["/v1/models/gpt-4o-mini"],
        "the refused call never went upstream"
    );
}

/// Every example with decision cases (`policies/examples/tests/<name>.yaml`), copied into a
/// policy directory beside the baseline (with the examples' schema fragments) as the policy
/// guide says, passes `warden policy validate` and `warden policy test` (for a REST
/// connector's, `rest-<connector>`, given a configuration whose route uses the connector).
#[tokio::test]
async fn the_examples_pass_warden_policy_validate_and_test_on_top_of_the_baseline() {
    let repo = paths::repo_root().join("policies");
    let cases: Vec<std::path::PathBuf> = std::fs::read_dir(repo.join("examples/tests"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    assert!(!cases.is_empty());
    for case_file in cases {
        let stem = case_file.file_stem().unwrap().to_str().unwrap().to_owned();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("tests")).unwrap();
        for (from, to) in [
            (
                repo.join("schema.cedarschema"),
                "schema.cedarschema".to_owned(),
            ),
            (repo.join("baseline.cedar"), "baseline.cedar".to_owned()),
            (
                repo.join(format!("examples/{stem}.cedar")),
                format!("{stem}.cedar"),
            ),
            (case_file.clone(), format!("tests/{stem}.yaml")),
        ] {
            std::fs::copy(&from, dir.path().join(to)).unwrap();
        }
        // The examples' schema fragments (an MCP server's tool arguments) come along.
        for entry in std::fs::read_dir(repo.join("examples")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|x| x == "cedarschema") {
                std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
            }
        }
        // A REST connector's example names its actions: declared when a route uses it.
        let config = stem.strip_prefix("rest-").map(|connector| {
            let path = dir.path().join("warden.yaml");
            std::fs::write(
                &path,
                format!("routes:\n  - {{ prefix: /api, connector: {connector} }}\n"),
            )
            .unwrap();
            path
        });
        for command in ["validate", "test"] {
            let mut cmd = tokio::process::Command::new(paths::warden_bin());
            cmd.args(["policy", command]).arg(dir.path());
            if let Some(config) = &config {
                cmd.arg("--config").arg(config);
            }
            let out = run_bounded(cmd, Duration::from_secs(30)).await.unwrap();
            assert!(
                out.status.success(),
                "warden policy {command} on {stem}:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
