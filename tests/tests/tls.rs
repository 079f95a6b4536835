//! TLS on the agent listener, from the configuration file: HTTP/2 by ALPN, and client
//! certificates when `client_ca` is set.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde_json::json;
use std::path::Path;
use std::time::Duration;
use warden_e2e::fake_llm::FakeLlm;
use warden_e2e::stack::{AGENT, openai_chat};
use warden_e2e::warden::WardenBuilder;

/// A test CA and what it signs.
struct Pki {
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "warden e2e CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Pki {
            ca_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// `(cert_pem, key_pem)` for `names`, usable for `purpose`.
    fn leaf(&self, names: &[&str], purpose: ExtendedKeyUsagePurpose) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![purpose];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// A client trusting `pki`, optionally presenting a client certificate.
fn client(pki: &Pki, identity: Option<(String, String)>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap())
        .timeout(Duration::from_secs(20));
    if let Some((cert, key)) = identity {
        builder = builder
            .identity(reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).unwrap());
    }
    builder.build().unwrap()
}

/// A small chat completion request to `url`.
async fn chat(
    client: &reqwest::Client,
    url: &str,
    token: &str,
) -> reqwest::Result<reqwest::Response> {
    client
        .post(url)
        .bearer_auth(token)
        .json(&openai_chat("gpt-4o-mini", false))
        .send()
        .await
}

#[tokio::test]
async fn serves_agents_over_tls_with_http2_negotiated_by_alpn() {
    let fake = FakeLlm::start().await.unwrap();
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = pki.leaf(
        &["127.0.0.1", "localhost"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let tls = json!({ "cert": write(dir.path(), "proxy.crt", &cert), "key": write(dir.path(), "proxy.key", &key) });
    // Only TLS callers may chat: a 200 proves the policy context saw `tls: true`.
    let tls_only = "@id(\"tls-only\")\n@reason(\"TLS required\")\nforbid (principal, action, resource) unless { context.tls };\n";
    let warden = WardenBuilder::new(&fake)
        .set("/listen/tls", tls)
        .policy("tls-only.cedar", tls_only)
        .start()
        .await
        .unwrap();
    let token = warden.token(AGENT).await.unwrap();
    let url = format!("https://{}/openai/chat/completions", warden.setup.proxy);

    let response = chat(&client(&pki, None), &url, &token).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.version(),
        reqwest::Version::HTTP_2,
        "ALPN must negotiate h2"
    );
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion", "{body}");
    assert_eq!(body["choices"][0]["finish_reason"], "stop", "{body}");

    // The TLS port does not also speak plaintext.
    let plain = reqwest::Client::new()
        .post(format!(
            "http://{}/openai/chat/completions",
            warden.setup.proxy
        ))
        .bearer_auth(&token)
        .json(&openai_chat("gpt-4o-mini", false))
        .send()
        .await;
    assert!(
        plain.map(|r| r.status() != 200).unwrap_or(true),
        "plaintext must not be served on a TLS listener"
    );
}

#[tokio::test]
async fn requires_a_client_certificate_when_client_ca_is_configured() {
    let fake = FakeLlm::start().await.unwrap();
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = pki.leaf(&["127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth);
    let tls = json!({
        "cert": write(dir.path(), "proxy.crt", &cert),
        "key": write(dir.path(), "proxy.key", &key),
        "client_ca": write(dir.path(), "ca.crt", &pki.ca_pem),
    });
    let warden = WardenBuilder::new(&fake)
        .set("/listen/tls", tls)
        .start()
        .await
        .unwrap();
    let token = warden.token(AGENT).await.unwrap();
    let url = format!("https://{}/openai/chat/completions", warden.setup.proxy);

    let without = chat(&client(&pki, None), &url, &token).await;
    assert!(
        without.is_err(),
        "a client without a certificate must be refused: {without:?}"
    );

    let agent_cert = pki.leaf(
        &["agent-1.fleet.example"],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let with = chat(&client(&pki, Some(agent_cert)), &url, &token)
        .await
        .unwrap();
    assert_eq!(with.status(), 200);
}

#[tokio::test]
async fn a_client_certificate_is_recorded_and_can_identify_the_agent() {
    let fake = FakeLlm::start().await.unwrap();
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = pki.leaf(&["127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth);
    let tls = json!({
        "cert": write(dir.path(), "proxy.crt", &cert),
        "key": write(dir.path(), "proxy.key", &key),
        "client_ca": write(dir.path(), "ca.crt", &pki.ca_pem),
        "require_client_cert": false,
    });
    // Policy sees the certificate: callers without one are refused whoever they are.
    let certified_only = "@id(\"certified-only\")\n@reason(\"a client certificate is required\")\nforbid (principal, action, resource) unless { context has client_certificate };\n";
    let warden = WardenBuilder::new(&fake)
        .set("/listen/tls", tls)
        .set("/identity/client_certificate", json!("principal"))
        .policy("certified-only.cedar", certified_only)
        .start()
        .await
        .unwrap();
    let url = format!("https://{}/openai/chat/completions", warden.setup.proxy);
    let agent_cert = pki.leaf(
        &["agent-7.fleet.example"],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let agent = client(&pki, Some(agent_cert));

    // No token: the certificate names the agent.
    let by_certificate = agent
        .post(&url)
        .json(&openai_chat("gpt-4o-mini", false))
        .send()
        .await
        .unwrap();
    assert_eq!(by_certificate.status(), 200);
    let record = warden
        .wait_for_audit(Duration::from_secs(10), |r| {
            r["kind"] == "decision" && r["principal"]["issuer"] == "mtls"
        })
        .await
        .unwrap();
    assert_eq!(record["principal"]["id"], "agent-7.fleet.example");
    assert_eq!(record["client_certificate"], "agent-7.fleet.example");

    // A token names the agent; the certificate is still recorded beside it.
    let token = warden.token(AGENT).await.unwrap();
    assert_eq!(chat(&agent, &url, &token).await.unwrap().status(), 200);
    let record = warden
        .wait_for_audit(Duration::from_secs(10), |r| {
            r["kind"] == "decision" && r["principal"]["id"] == AGENT
        })
        .await
        .unwrap();
    assert_eq!(record["client_certificate"], "agent-7.fleet.example");

    // A token without a certificate: identified, but refused by the policy on the context.
    let uncertified = chat(&client(&pki, None), &url, &token).await.unwrap();
    assert_eq!(uncertified.status(), 200, "a refusal that explains itself");
    assert_eq!(uncertified.headers()["x-warden-decision"], "deny");
    let body: serde_json::Value = uncertified.json().await.unwrap();
    assert!(
        body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains("a client certificate is required"),
        "{body}"
    );
}
