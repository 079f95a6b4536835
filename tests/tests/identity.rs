//! Agent identity with a real OpenID Provider: client_credentials JWTs are accepted and their
//! claims reach Cedar; every bad credential is refused with 401 in the provider's shape, a
//! reason, and a `rejected` audit record; JWKS rotation is picked up.

use serde_json::{Value, json};
use std::time::Duration;
use warden_e2e::fake_llm::{self, FakeLlm};
use warden_e2e::idp::{self, ALPHA, BETA, Forgery, Idp};
use warden_e2e::stack::openai_chat;
use warden_e2e::warden::{Warden, WardenBuilder};

/// Forbids `gpt-4.1` to the `payments` fleet and `o3` to the `researchers` group.
const CLAIM_POLICIES: &str = r#"
@id("e2e-payments-fleet-no-gpt41")
@reason("the payments fleet may not use gpt-4.1")
forbid (principal, action == Action::"llm:chat", resource == Model::"openai/gpt-4.1")
when { principal has fleet && principal.fleet == "payments" };

@id("e2e-researchers-no-o3")
@reason("researchers may not use o3")
forbid (principal in AgentGroup::"researchers", action == Action::"llm:chat", resource == Model::"openai/o3");
"#;

struct Setup {
    fake: FakeLlm,
    warden: Warden,
}

async fn setup(idp: &Idp, customize: impl FnOnce(WardenBuilder) -> WardenBuilder) -> Setup {
    let fake = FakeLlm::start().await.unwrap();
    let warden = customize(WardenBuilder::new(&fake).trust(idp))
        .start()
        .await
        .unwrap();
    Setup { fake, warden }
}

/// POSTs a chat request with `Authorization: Bearer <token>` (no header when `None`).
async fn chat(w: &Warden, token: Option<&str>, model: &str) -> (u16, String, Value) {
    let mut req = w
        .http()
        .post(w.url("/openai/chat/completions"))
        .json(&openai_chat(model, false));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let response = req.send().await.unwrap();
    let status = response.status().as_u16();
    let request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, request_id, body)
}

/// Asserts a 401 in OpenAI's error shape mentioning `needle`, and a `rejected` audit record
/// for that request whose reasons mention it too.
async fn assert_rejected(s: &Setup, token: Option<&str>, needle: &str) {
    let (status, request_id, body) = chat(&s.warden, token, "gpt-4o-mini").await;
    assert_eq!(status, 401, "{body}");
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    assert!(
        message.contains(needle),
        "401 message should say {needle:?}: {body}"
    );
    assert!(
        body["error"]["type"].is_string(),
        "OpenAI error shape: {body}"
    );
    let record = s
        .warden
        .wait_for_audit(Duration::from_secs(10), |r| {
            r["kind"] == "rejected"
                && (request_id.is_empty() || r["request_id"] == request_id.as_str())
        })
        .await
        .unwrap();
    let reasons = record["reasons"].to_string().to_lowercase();
    assert!(
        reasons.contains(needle),
        "audit reasons should say {needle:?}: {record}"
    );
    assert!(
        s.fake.requests().is_empty(),
        "a rejected request never reaches the provider"
    );
}

fn reply_text(body: &Value) -> &str {
    body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
}

#[tokio::test]
async fn idp_client_credentials_jwt_is_accepted_and_claims_reach_policies() {
    let idp = Idp::shared().await.unwrap();
    let s = setup(&idp, |b| b.policy("e2e-claims.cedar", CLAIM_POLICIES)).await;
    let alpha = idp.token(ALPHA).await.unwrap();
    let beta = idp.token(BETA).await.unwrap();

    let (status, _, body) = chat(&s.warden, Some(&alpha), "gpt-4.1").await;
    assert_eq!(status, 200);
    assert_eq!(
        reply_text(&body),
        fake_llm::full_text(),
        "research fleet may use gpt-4.1: {body}"
    );

    let (status, _, body) = chat(&s.warden, Some(&beta), "gpt-4.1").await;
    assert_eq!(status, 200, "a refusal is a completion: {body}");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert!(
        reply_text(&body).contains("the payments fleet may not use gpt-4.1"),
        "principal.fleet from the `fleet` claim: {body}"
    );

    let (_, _, body) = chat(&s.warden, Some(&alpha), "o3").await;
    assert!(
        reply_text(&body).contains("researchers may not use o3"),
        "groups claim → AgentGroup parents: {body}"
    );
    let (_, _, body) = chat(&s.warden, Some(&beta), "o3").await;
    assert_eq!(reply_text(&body), fake_llm::full_text(), "{body}");

    let record = s
        .warden
        .wait_for_audit(Duration::from_secs(10), |r| {
            r["kind"] == "decision" && r["principal"]["id"] == "agent-beta"
        })
        .await
        .unwrap();
    assert_eq!(record["principal"]["issuer"], idp.issuer());
    assert_eq!(
        s.fake.requests().len(),
        2,
        "only the two allowed calls reach the provider"
    );
    assert!(
        s.fake
            .requests()
            .iter()
            .all(|r| !r.contains(&alpha) && !r.contains(&beta)),
        "IdP tokens are never forwarded"
    );
}

/// gpt-4.1 only for agents of the `agents` namespace (the `fleet` their token's
/// `kubernetes.io.namespace` claim gives them).
const NAMESPACE_POLICY: &str = r#"
@id("e2e-k8s-agents-namespace-only")
@reason("gpt-4.1 is for the agents namespace")
forbid (principal, action == Action::"llm:chat", resource == Model::"openai/gpt-4.1")
unless { principal has fleet && principal.fleet == "agents" };
"#;

/// Agents in Kubernetes present projected service-account tokens from the cluster's OIDC
/// issuer (docs/deploy.md "Agents in Kubernetes"): the service account is the agent, its
/// namespace the fleet (a claim path into the `kubernetes.io` claim).
#[tokio::test]
async fn a_kubernetes_service_account_token_is_the_agent_and_its_namespace_the_fleet() {
    let idp = Idp::shared().await.unwrap();
    let s = setup(&idp, |b| {
        b.set(
            "/identity/issuers/0/claims",
            json!({"agent": "sub", "fleet": "/kubernetes.io/namespace"}),
        )
        .policy("e2e-k8s.cedar", NAMESPACE_POLICY)
    })
    .await;
    let token = idp
        .kubernetes_token("agents", "billing-bot", "billing-bot-7d9f6-x2l4q", "warden")
        .await
        .unwrap();
    let claims = idp::jwt_claims(&token).unwrap();
    assert_eq!(claims["sub"], "system:serviceaccount:agents:billing-bot");
    assert_eq!(
        claims["kubernetes.io"]["serviceaccount"]["name"],
        "billing-bot"
    );
    assert_eq!(claims["aud"], json!(["warden"]));
    // A token the cluster issued for another audience (the API server's) is refused.
    let api_server = idp
        .kubernetes_token(
            "agents",
            "billing-bot",
            "billing-bot-0",
            "https://kubernetes.default.svc",
        )
        .await
        .unwrap();
    assert_rejected(&s, Some(&api_server), "audience").await;

    let (status, _, body) = chat(&s.warden, Some(&token), "gpt-4.1").await;
    assert_eq!(status, 200);
    assert_eq!(reply_text(&body), fake_llm::full_text(), "{body}");
    let record = s
        .warden
        .wait_for_audit(Duration::from_secs(10), |r| r["kind"] == "decision")
        .await
        .unwrap();
    assert_eq!(
        record["principal"]["id"],
        "system:serviceaccount:agents:billing-bot"
    );
    assert_eq!(record["principal"]["issuer"], idp.issuer());
    assert_eq!(record["decision"], "allow");

    // The same service account name in another namespace is another agent, of another fleet.
    let other = idp
        .kubernetes_token("sandbox", "billing-bot", "billing-bot-0", "warden")
        .await
        .unwrap();
    let (status, _, body) = chat(&s.warden, Some(&other), "gpt-4.1").await;
    assert_eq!(status, 200, "a refusal is a completion: {body}");
    assert!(
        reply_text(&body).contains("gpt-4.1 is for the agents namespace"),
        "{body}"
    );
}

#[tokio::test]
async fn rejects_request_without_credential() {
    let idp = Idp::shared().await.unwrap();
    let s = setup(&idp, |b| b).await;
    assert_rejected(&s, None, "no credential").await;
}

#[tokio::test]
async fn rejects_expired_idp_token() {
    let idp = Idp::shared().await.unwrap();
    let s = setup(&idp, |b| b.set("/identity/leeway_seconds", json!(0))).await;
    let token = idp.token_for(ALPHA, idp::RESOURCE_SHORT).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_rejected(&s, Some(&token), "expired").await;
}

#[tokio::test]
async fn rejects_token_from_untrusted_issuer() {
    let trusted = Idp::shared().await.unwrap();
    let other = Idp::start().await.unwrap();
    let s = setup(&trusted, |b| b).await;
    let token = other.token(ALPHA).await.unwrap();
    assert_rejected(&s, Some(&token), "not trusted").await;
    // The agent is not told which issuers are trusted; the operator's record says.
    let (_, request_id, body) = chat(&s.warden, Some(&token), "gpt-4o-mini").await;
    assert_eq!(body["error"]["code"], "untrusted_issuer", "{body}");
    assert!(
        !body.to_string().contains(trusted.issuer()) && !body.to_string().contains("trusted:"),
        "the trusted issuers are not shown to the caller: {body}"
    );
    s.warden
        .wait_for_audit(Duration::from_secs(10), |r| {
            r["request_id"] == request_id.as_str()
                && r["reasons"][0]
                    .as_str()
                    .is_some_and(|m| m.contains(trusted.issuer()))
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn rejects_token_for_another_audience() {
    let idp = Idp::shared().await.unwrap();
    let s = setup(&idp, |b| b).await;
    let token = idp.token_for(ALPHA, idp::RESOURCE_OTHER).await.unwrap();
    assert_eq!(idp::jwt_claims(&token).unwrap()["aud"], "other-api");
    assert_rejected(&s, Some(&token), "audience").await;
}

#[tokio::test]
async fn rejects_unsigned_token_with_alg_none() {
    let idp = Idp::shared().await.unwrap();
    let s = setup(&idp, |b| b).await;
    let token = idp.forge(Forgery::AlgNone, ALPHA).await.unwrap();
    assert_rejected(&s, Some(&token), "none").await;
}

#[tokio::test]
async fn rejects_token_signed_with_hs256_using_public_key() {
    let idp = Idp::shared().await.unwrap();
    let s = setup(&idp, |b| b).await;
    let token = idp.forge(Forgery::Hs256WithPublicKey, ALPHA).await.unwrap();
    assert_rejected(&s, Some(&token), "hs256").await;
}

#[tokio::test]
async fn rejects_token_with_unknown_kid() {
    let idp = Idp::shared().await.unwrap();
    let s = setup(&idp, |b| b).await;
    let token = idp.forge(Forgery::UnpublishedKey, ALPHA).await.unwrap();
    let kid = idp::jwt_header(&token).unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_lowercase();
    assert_rejected(&s, Some(&token), &kid).await;
}

#[tokio::test]
async fn accepts_tokens_signed_with_a_rotated_key_after_jwks_refresh() {
    let idp = Idp::start().await.unwrap();
    let s = setup(&idp, |b| {
        b.set("/identity/jwks_min_refetch_interval", json!("1s"))
    })
    .await;
    let before = idp.token(ALPHA).await.unwrap();
    let (status, _, body) = chat(&s.warden, Some(&before), "gpt-4o-mini").await;
    assert_eq!(status, 200, "{body}");

    let kid = idp.rotate(true).await.unwrap();
    let after = idp.token(ALPHA).await.unwrap();
    assert_eq!(
        idp::jwt_header(&after).unwrap()["kid"],
        json!(kid),
        "the IdP signs with the new key"
    );
    // Past the refetch floor, an unknown kid makes Warden fetch the JWKS again.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (status, _, body) = chat(&s.warden, Some(&after), "gpt-4o-mini").await;
    assert_eq!(status, 200, "token with the rotated key: {body}");
    assert_eq!(reply_text(&body), fake_llm::full_text());
    let (status, _, _) = chat(&s.warden, Some(&before), "gpt-4o-mini").await;
    assert_eq!(
        status, 200,
        "the old key is still published, its tokens still valid"
    );
}

#[tokio::test]
async fn accepts_the_agent_credential_in_x_api_key_and_api_key_headers() {
    let idp = Idp::shared().await.unwrap();
    let s = setup(&idp, |b| b).await;
    let token = idp.token(ALPHA).await.unwrap();
    for header in ["x-api-key", "api-key"] {
        let response = s
            .warden
            .http()
            .post(s.warden.url("/openai/chat/completions"))
            .header(header, &token)
            .json(&openai_chat("gpt-4o-mini", false))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "credential in {header}");
    }
    let upstream = s.fake.requests();
    assert_eq!(upstream.len(), 2);
    assert!(
        upstream.iter().all(|r| !r.contains(&token)),
        "the agent credential is stripped from every header"
    );
}
