//! Warden's own upstream connections are guarded as egress is: a route's upstream written as a
//! host name that resolves (here by the egress tests' DNS server, `upstream.nameservers`) to
//! an address that is not globally reachable (cloud metadata, private, loopback) is refused
//! with a clear error in the provider's shape and recorded, unless `upstream.allow_private`
//! names the host or a network that holds the address.

use std::time::Duration;

use serde_json::{Value, json};
use warden_e2e::egress::Dns;
use warden_e2e::fake_llm::FakeLlm;
use warden_e2e::stack::{AGENT, send_chat, send_message};
use warden_e2e::warden::{Warden, WardenBuilder};

const WAIT: Duration = Duration::from_secs(10);

/// Warden with the OpenAI route to `openai` and the Anthropic route to `anthropic` (base
/// URLs), names resolved by `dns`, `allow_private` as given. The routes inject credentials
/// over plain http to names that are not loopback (`allow_plaintext`): what is tested here is
/// the address guard, behind the scheme check.
async fn warden(dns: &Dns, openai: &str, anthropic: &str, allow_private: Value) -> Warden {
    WardenBuilder::with_upstream_url(anthropic)
        .set("/routes/0/upstream", json!(format!("{openai}/v1")))
        .set("/routes/0/allow_plaintext", json!(true))
        .set("/routes/1/allow_plaintext", json!(true))
        .set("/routes/2/allow_plaintext", json!(true))
        .set("/upstream/nameservers", json!([dns.addr.to_string()]))
        .set("/upstream/allow_private", allow_private)
        .start()
        .await
        .expect("warden starts")
}

/// An OpenAI chat completion through `warden`: its status, `x-warden-error` and body.
async fn chat(warden: &Warden) -> (u16, String, Value) {
    let response = send_chat(warden, &warden.token(AGENT).await.unwrap()).await;
    let status = response.status().as_u16();
    let code = response
        .headers()
        .get("x-warden-error")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, code, response.json().await.unwrap())
}

/// An Anthropic message through `warden`: its status and body.
async fn message(warden: &Warden) -> (u16, Value) {
    let response = send_message(warden, &warden.token(AGENT).await.unwrap()).await;
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn an_upstream_name_on_an_internal_address_is_refused_and_recorded() {
    let fake = FakeLlm::start().await.unwrap();
    let port = fake.addr().port();
    let dns = Dns::start(json!({
        "metadata.test": [["169.254.169.254"]],
        "private.test": [["10.11.12.13"]],
    }))
    .await
    .unwrap();
    let warden = warden(
        &dns,
        &format!("http://metadata.test:{port}"),
        &format!("http://private.test:{port}"),
        json!([]),
    )
    .await;

    let (status, code, body) = chat(&warden).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(code, "upstream_address_refused", "{body}");
    let said = body["error"]["message"].as_str().unwrap();
    assert!(
        said.contains("metadata.test resolves to 169.254.169.254, a link_local address"),
        "{said}"
    );
    assert!(said.contains("upstream.allow_private"), "{said}");

    let (status, body) = message(&warden).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["type"], "error", "Anthropic's error shape: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("private.test resolves to 10.11.12.13, a private address"),
        "{body}"
    );
    assert!(fake.requests().is_empty(), "nothing reached the upstream");

    let record = warden
        .wait_for_audit(WAIT, |r| {
            r["outcome"]["status"] == 502
                && r["outcome"]["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("169.254.169.254"))
        })
        .await
        .unwrap();
    assert_eq!(record["route"], "openai", "{record}");
}

#[tokio::test]
async fn allow_private_lets_the_named_host_or_network_through() {
    let fake = FakeLlm::start().await.unwrap();
    let port = fake.addr().port();
    let dns = Dns::start(json!({
        "llm.test": [["127.0.0.1"]],
        "other.test": [["127.0.0.1"]],
    }))
    .await
    .unwrap();
    let openai = format!("http://llm.test:{port}");
    let anthropic = format!("http://other.test:{port}");

    // By host name: llm.test may be loopback, other.test may not.
    let by_name = warden(&dns, &openai, &anthropic, json!(["llm.test"])).await;
    let (status, _, body) = chat(&by_name).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(fake.requests().len(), 1);
    let (status, body) = message(&by_name).await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("other.test resolves to 127.0.0.1, a loopback address"),
        "{body}"
    );
    assert_eq!(fake.requests().len(), 1);
    drop(by_name);

    // By network: every name on loopback.
    let by_network = warden(&dns, &openai, &anthropic, json!(["127.0.0.0/8"])).await;
    let (status, body) = message(&by_network).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(fake.requests().len(), 2);
}

#[tokio::test]
async fn a_malformed_allow_private_entry_stops_the_start_with_its_key() {
    let started = WardenBuilder::with_upstream_url("http://127.0.0.1:9")
        .set("/upstream/allow_private", json!(["10.0.0.0/33"]))
        .start()
        .await;
    let error = format!("{:#}", started.expect_err("the start fails"));
    assert!(error.contains("allow_private"), "{error}");
    assert!(
        error.contains("is not an address, a network (10.0.0.0/8)"),
        "{error}"
    );
}
