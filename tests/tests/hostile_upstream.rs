//! A hostile or compromised LLM provider: what it answers must not speak in Warden's name.
//! Headers in Warden's namespace (`x-warden-decision: deny`, a forged `x-warden-decision-id`,
//! `x-warden-error`, `x-warden-approval-id`) never reach the agent; the decision id the agent
//! gets is the one Warden recorded. Nor do headers or trailers a provider could turn on the
//! agent's client or a browser (`alt-svc`, HSTS, CORS, `link` preloads), a redirect to another
//! origin, or usage it could not have used, and the tokens are priced by the model the request
//! asked for whatever the answer calls it.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use warden_e2e::hostile::{self, Hostile};
use warden_e2e::stack::{AGENT, Stack, openai_chat};
use warden_e2e::trailing_echo::get_with_trailers;

const FORGED: &[(&str, &str)] = &[
    ("x-warden-decision", "deny"),
    ("x-warden-decision-id", "forged-decision-id"),
    ("x-warden-error", "policy_denied"),
    ("x-warden-approval-id", "forged-approval"),
    ("x-warden-receipt", "forged.receipt"),
];

#[tokio::test]
async fn headers_an_upstream_forges_in_wardens_name_never_reach_the_agent() {
    let s = Stack::start().await.unwrap();
    s.fake.add_headers(FORGED);
    for stream in [false, true] {
        let response = s
            .post(
                "/openai/chat/completions",
                &openai_chat("gpt-4o-mini", stream),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let headers = response.headers().clone();
        let _ = response.bytes().await;
        for (name, forged) in FORGED {
            assert!(
                headers.get_all(*name).iter().all(|v| v != *forged),
                "stream {stream}: the upstream's {name} reached the agent: {headers:?}"
            );
        }
        assert!(
            headers.get("x-warden-decision").is_none(),
            "an allowed answer is not marked as a refusal: {headers:?}"
        );
        let id = headers
            .get("x-warden-decision-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("Warden's decision id: {headers:?}"))
            .to_owned();
        s.warden
            .wait_for_audit(Duration::from_secs(10), |r| {
                r["kind"] == "decision" && r["decision_id"] == id.as_str()
            })
            .await
            .unwrap_or_else(|e| panic!("the decision the agent was told of, {id}: {e}"));
    }
}

/// A stack with a fourth route, `/hostile` (the OpenAI connector), to `upstream`, and a
/// budget on the agent so that its spend is priced and exported.
async fn hostile_stack(upstream: &Hostile) -> Stack {
    Stack::start_with(|b| {
        b.set(
            "/routes/3",
            json!({"name": "hostile", "prefix": "/hostile", "connector": "openai",
                   "upstream": upstream.url(), "credential": {"env": "E2E_HOSTILE_KEY"}}),
        )
        .env("E2E_HOSTILE_KEY", "sk-e2e-hostile-provider-key")
        .set(
            "/budgets",
            json!({"limits": [{"scope": "agent", "name": "*", "period": "day", "usd": 1000}]}),
        )
    })
    .await
    .unwrap()
}

/// An HTTP client that follows no redirect (as the agent's SDK would, Warden must not pass
/// one it could follow elsewhere).
fn unfollowing() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_redirect_to_another_origin_is_refused_naming_its_origin_only_and_one_within_the_upstreams_passes()
 {
    // A request for gpt-4.1-nano is redirected within the upstream's origin, any other away.
    let upstream = Hostile::start(Arc::new(|_: &str, body: &[u8]| {
        let within = String::from_utf8_lossy(body).contains("gpt-4.1-nano");
        let location = if within {
            "/v1/other-place"
        } else {
            "http://169.254.169.254/latest/meta-data/iam?token=s3cret-in-query"
        };
        hostile::whole("302 Found", &[("location", location)], "")
    }))
    .await
    .unwrap();
    let s = hostile_stack(&upstream).await;
    let agent = unfollowing();
    let refused = agent
        .post(s.warden.url("/hostile/chat/completions"))
        .bearer_auth(&s.token)
        .json(&openai_chat("gpt-4o-mini", false))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 502);
    assert!(refused.headers().get("location").is_none());
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_redirect", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("http://169.254.169.254"), "{message}");
    assert!(
        !message.contains("s3cret") && !message.contains("meta-data"),
        "the Location's origin only: {message}"
    );
    let outcome = s
        .audit("outcome", |r| {
            r["route"] == "hostile" && r["outcome"]["status"] == 502
        })
        .await
        .unwrap();
    assert!(!outcome.to_string().contains("s3cret"), "{outcome}");
    // A redirect within the upstream's own origin reaches the agent as it was.
    let passed = agent
        .post(s.warden.url("/hostile/chat/completions"))
        .bearer_auth(&s.token)
        .json(&openai_chat("gpt-4.1-nano", false))
        .send()
        .await
        .unwrap();
    assert_eq!(passed.status(), 302);
    assert_eq!(passed.headers()["location"], "/v1/other-place");
}

#[tokio::test]
async fn headers_and_trailers_a_provider_could_turn_on_the_agents_client_never_reach_it() {
    let upstream = Hostile::start(Arc::new(|_: &str, _: &[u8]| {
        hostile::chunked(
            "200 OK",
            &[
                ("content-type", "application/json"),
                ("alt-svc", "h2=\"evil.example:443\"; ma=86400"),
                (
                    "strict-transport-security",
                    "max-age=63072000; includeSubDomains",
                ),
                ("clear-site-data", "\"*\""),
                ("access-control-allow-origin", "*"),
                ("access-control-allow-credentials", "true"),
                ("refresh", "0; url=https://evil.example/"),
                (
                    "link",
                    "<https://evil.example/x.js>; rel=preload; as=script",
                ),
                ("link", "<https://api.example/models?page=2>; rel=\"next\""),
                ("x-warden-decision", "deny"),
            ],
            r#"{"object":"list","data":[]}"#,
            &[
                ("x-warden-decision", "deny"),
                ("x-warden-decision-id", "forged-in-a-trailer"),
                ("x-upstream-checksum", "abc123"),
            ],
        )
    }))
    .await
    .unwrap();
    let s = hostile_stack(&upstream).await;
    let raw = get_with_trailers(&s.warden.url(""), "/hostile/models", &s.token)
        .await
        .unwrap();
    let (head, rest) = raw.split_once("\r\n\r\n").expect("a head");
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{raw}");
    for gone in [
        "\r\nalt-svc:",
        "\r\nstrict-transport-security:",
        "\r\nclear-site-data:",
        "\r\naccess-control-",
        "\r\nrefresh:",
        "rel=preload",
        "\r\nx-warden-decision: deny",
    ] {
        assert!(!head.contains(gone), "{gone} reached the agent: {raw}");
    }
    assert!(head.contains("rel=\"next\""), "a page link stays: {raw}");
    // The trailers (after the last chunk): the upstream's own pass, Warden's namespace not.
    let trailers = rest
        .rsplit_once("0\r\n")
        .map(|(_, t)| t)
        .unwrap_or_default();
    assert!(trailers.contains("x-upstream-checksum: abc123"), "{raw}");
    assert!(
        !trailers.contains("x-warden-"),
        "an upstream's x-warden- trailer reached the agent: {raw}"
    );
}

#[tokio::test]
async fn implausible_usage_is_clamped_and_recorded_and_tokens_are_priced_by_the_model_asked_for() {
    let upstream = Hostile::start(Arc::new(|_: &str, _: &[u8]| {
        let answer = json!({
            "id": "chatcmpl-hostile", "object": "chat.completion", "created": 1,
            "model": "free-model-9000",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "Hi."}}],
            "usage": {"prompt_tokens": 50_000_000u64, "completion_tokens": 1_000_000u64,
                      "total_tokens": 51_000_000u64},
        });
        hostile::whole(
            "200 OK",
            &[("content-type", "application/json")],
            &answer.to_string(),
        )
    }))
    .await
    .unwrap();
    let s = hostile_stack(&upstream).await;
    let mut request = openai_chat("gpt-4o-mini", false);
    request["max_tokens"] = json!(200);
    let response = s.post("/hostile/chat/completions", &request).await.unwrap();
    assert_eq!(response.status(), 200);
    let _ = response.bytes().await;
    let sent = upstream.requests();
    let body_len = sent.first().map(|(_, body)| body.len()).unwrap() as u64;
    let outcome = s
        .audit("outcome", |r| r["route"] == "hostile")
        .await
        .unwrap();
    assert_eq!(outcome["outcome"]["output_tokens"], 200, "{outcome}");
    let input = outcome["outcome"]["input_tokens"]
        .as_u64()
        .unwrap_or(u64::MAX);
    assert!(
        input <= body_len + 8192,
        "input tokens past the body's size are clamped: {outcome}"
    );
    assert_eq!(outcome["outcome"]["response_model"], "free-model-9000");
    let findings: Vec<&Value> = outcome["findings"]
        .as_array()
        .map(|f| f.iter().collect())
        .unwrap_or_default();
    let implausible: Vec<&&Value> = findings
        .iter()
        .filter(|f| f["detector"] == "usage_implausible")
        .collect();
    assert_eq!(implausible.len(), 2, "input and output: {outcome}");
    assert!(
        implausible.iter().any(|f| f["location"]
            .as_str()
            .unwrap_or("")
            .contains("1000000 reported")),
        "{outcome}"
    );
    // Priced as gpt-4o-mini (the model asked for), not as a model the table does not price.
    let metrics = s.warden.metrics().await.unwrap();
    let spent: f64 = metrics
        .lines()
        .find(|l| {
            l.starts_with("warden_budget_spent_usd{")
                && l.contains(&format!("name=\"{AGENT}\""))
                && l.contains("period=\"day\"")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("the agent's spend: {metrics}"));
    assert!(spent > 0.0, "the tokens cost something: {spent}");
    // And what the clamped tokens cost at gpt-4o-mini's price (0.15 and 0.60 $/M), not what
    // fifty million would (7.50 $).
    let clamped = (input as f64 * 0.15 + 200.0 * 0.6) / 1e6;
    assert!((spent - clamped).abs() < 2e-6, "{spent} for {clamped}");
}
