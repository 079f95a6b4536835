//! A hostile or compromised LLM provider: what it answers must not speak in Warden's name.
//! Headers in Warden's namespace (`x-warden-decision: deny`, a forged `x-warden-decision-id`,
//! `x-warden-error`, `x-warden-approval-id`) never reach the agent; the decision id the agent
//! gets is the one Warden recorded. Nor do headers or trailers a provider could turn on the
//! agent's client or a browser (`alt-svc`, HSTS, CORS, `link` preloads), a redirect that would
//! send the agent past Warden (a REST API's within its origin comes back rewritten to the
//! route on Warden), or usage it could not have used, and the tokens are priced by the model the request
//! asked for whatever the answer calls it.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use warden_e2e::hostile::{self, Hostile};
use warden_e2e::stack::{Stack, openai_chat};
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
/// A chat on `model` through the hostile route, which must be refused 502 upstream_redirect
/// with no Location passed on: the refusal's message.
async fn refused_redirect(agent: &reqwest::Client, s: &Stack, model: &str) -> String {
    let refused = agent
        .post(s.warden.url("/hostile/chat/completions"))
        .bearer_auth(&s.token)
        .json(&openai_chat(model, false))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 502);
    assert!(refused.headers().get("location").is_none());
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_redirect", "{body}");
    body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn unfollowing() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[tokio::test]
async fn an_llm_routes_redirect_is_refused_wherever_it_leads_naming_its_origin_only() {
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
    let message = refused_redirect(&agent, &s, "gpt-4o-mini").await;
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
    // Within the upstream's own origin too: LLM APIs do not redirect their clients, and the
    // agent would be sent to the provider itself, around Warden.
    let message = refused_redirect(&agent, &s, "gpt-4.1-nano").await;
    assert!(message.contains(&upstream.url()), "{message}");
    assert!(!message.contains("other-place"), "{message}");
}

/// A REST route (the GitHub connector) to `upstream` under the base path `/api/v3`, as GitHub
/// Enterprise serves it, passing redirects to other origins or not.
async fn rest_stack(upstream: &Hostile, pass_redirects: bool) -> Stack {
    Stack::start_with(|b| {
        b.set(
            "/routes/3",
            json!({"name": "ghe", "prefix": "/ghe", "connector": "github",
                   "upstream": format!("{}/api/v3", upstream.url()),
                   "credential": {"env": "E2E_GHE_TOKEN"}, "pass_redirects": pass_redirects}),
        )
        .env("E2E_GHE_TOKEN", "ghp-e2e-hostile")
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_rest_routes_redirect_within_the_upstream_comes_back_through_warden() {
    // GitHub answers a renamed repository with a 301 to its new name, on its own origin.
    let origin = Arc::new(std::sync::OnceLock::<String>::new());
    let told = Arc::clone(&origin);
    let upstream = Hostile::start(Arc::new(move |head: &str, _: &[u8]| {
        let path = head.split(' ').nth(1).unwrap_or_default();
        let here = told.get().cloned().unwrap_or_default();
        let location = match path {
            "/api/v3/repos/old-org/old-name" => {
                format!("{here}/api/v3/repos/new-org/new-name?ref=main#readme")
            }
            "/api/v3/repos/old-org/relative" => "../new-org/new-name".to_owned(),
            "/api/v3/repos/old-org/sign-in" => format!("{here}/login?return_to=s3cret"),
            "/api/v3/repos/old-org/elsewhere" => "https://objects.example.com/x?sig=s3cret".into(),
            _ => {
                return hostile::whole(
                    "200 OK",
                    &[("content-type", "application/json")],
                    r#"{"full_name":"new-org/new-name"}"#,
                );
            }
        };
        hostile::whole("301 Moved Permanently", &[("location", &location)], "")
    }))
    .await
    .unwrap();
    origin.set(upstream.url()).unwrap();
    let agent = unfollowing();
    for pass_redirects in [false, true] {
        let s = rest_stack(&upstream, pass_redirects).await;
        let get = |path: &str| agent.get(s.warden.url(path)).bearer_auth(&s.token).send();
        // Absolute and relative: the Location is the route's address on Warden.
        for (asked, rewritten) in [
            (
                "/ghe/repos/old-org/old-name",
                "/ghe/repos/new-org/new-name?ref=main#readme",
            ),
            ("/ghe/repos/old-org/relative", "/ghe/repos/new-org/new-name"),
        ] {
            let moved = get(asked).await.unwrap();
            assert_eq!(moved.status(), 301, "{asked}");
            assert_eq!(moved.headers()["location"], rewritten, "{asked}");
        }
        // Followed, it comes back through Warden, judged and recorded, to the new name.
        let followed = get("/ghe/repos/new-org/new-name").await.unwrap();
        assert_eq!(followed.status(), 200);
        s.audit("decision", |r| {
            r["route"] == "ghe" && r["facts"]["context"]["path"] == "/repos/new-org/new-name"
        })
        .await
        .unwrap();
        // The upstream's own origin outside the base path: no request through the route
        // reaches it, so it is refused, naming the origin only.
        let refused = get("/ghe/repos/old-org/sign-in").await.unwrap();
        assert_eq!(refused.status(), 502);
        assert!(refused.headers().get("location").is_none());
        let body = refused.text().await.unwrap();
        assert!(body.contains("upstream_redirect"), "{body}");
        assert!(body.contains("outside the route's base path"), "{body}");
        assert!(
            !body.contains("s3cret") && !body.contains("login"),
            "{body}"
        );
        // Another origin: as pass_redirects says, as it was.
        let elsewhere = get("/ghe/repos/old-org/elsewhere").await.unwrap();
        if pass_redirects {
            assert_eq!(elsewhere.status(), 301);
            assert_eq!(
                elsewhere.headers()["location"],
                "https://objects.example.com/x?sig=s3cret"
            );
        } else {
            assert_eq!(elsewhere.status(), 502);
        }
    }
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
    let spent = s.spent_usd_today().await;
    assert!(spent > 0.0, "the tokens cost something: {spent}");
    // And what the clamped tokens cost at gpt-4o-mini's price (0.15 and 0.60 $/M), not what
    // fifty million would (7.50 $).
    let clamped = (input as f64 * 0.15 + 200.0 * 0.6) / 1e6;
    assert!((spent - clamped).abs() < 2e-6, "{spent} for {clamped}");
}
