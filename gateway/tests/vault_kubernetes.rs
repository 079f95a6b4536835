//! Warden's Kubernetes login to a real OpenBao dev server. Kubernetes itself cannot run here:
//! OpenBao's `kubernetes` auth method asks a double of the Kubernetes TokenReview API
//! (`POST /apis/authentication.k8s.io/v1/tokenreviews`, answering as the API server does) whether
//! the service-account token Warden presents is valid, then binds the service account's name
//! and namespace to a role.

mod common;

use std::sync::{Arc, Mutex};

use axum::routing::post;
use base64::Engine as _;
use common::openbao::OpenBao;
use serde_json::{Value, json};
use warden::vault::config::VaultAuth;
use warden::vault::{Vault, VaultError};

const NAMESPACE: &str = "ai";
const ACCOUNT: &str = "warden";
const UID: &str = "8d2f6c1e-0000-4000-8000-000000000001";

/// A service-account token in the legacy (secret-based) format. Its signature is not checked
/// by OpenBao without `pem_keys`: the TokenReview is what vouches for it.
fn service_account_token(account: &str) -> String {
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let header = json!({"alg": "RS256", "kid": "e2e"});
    let claims = json!({
        "iss": "kubernetes/serviceaccount",
        "kubernetes.io/serviceaccount/namespace": NAMESPACE,
        "kubernetes.io/serviceaccount/secret.name": format!("{account}-token"),
        "kubernetes.io/serviceaccount/service-account.name": account,
        "kubernetes.io/serviceaccount/service-account.uid": UID,
        "sub": format!("system:serviceaccount:{NAMESPACE}:{account}"),
    });
    format!(
        "{}.{}.{}",
        b64(&header),
        b64(&claims),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b"not-checked")
    )
}

/// The TokenReview double: tokens in `valid` are authenticated as their service account,
/// any other is not. Returns its base URL and the tokens it was asked about.
async fn token_review(valid: Vec<String>) -> (String, Arc<Mutex<Vec<String>>>) {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&asked);
    let app = axum::Router::new().route(
        "/apis/authentication.k8s.io/v1/tokenreviews",
        post(move |axum::Json(review): axum::Json<Value>| {
            let valid = valid.clone();
            let seen = Arc::clone(&seen);
            async move {
                let token = review["spec"]["token"].as_str().unwrap_or_default().to_owned();
                seen.lock().unwrap().push(token.clone());
                let status = if valid.contains(&token) {
                    json!({"authenticated": true, "user": {
                        "username": format!("system:serviceaccount:{NAMESPACE}:{ACCOUNT}"),
                        "uid": UID,
                        "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{NAMESPACE}")],
                    }})
                } else {
                    json!({"authenticated": false, "error": "invalid bearer token"})
                };
                axum::Json(json!({
                    "apiVersion": "authentication.k8s.io/v1",
                    "kind": "TokenReview",
                    "status": status,
                }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, asked)
}

/// The kubernetes auth method on `bao`, trusting the API server at `host`, with role `warden`
/// bound to service account `ai/warden`.
fn kubernetes_auth(bao: &OpenBao, dir: &std::path::Path, host: &str) {
    bao.warden_policy(dir);
    bao.run(&["auth", "enable", "kubernetes"]);
    // The API server double speaks plain HTTP on loopback; OpenBao still wants a CA.
    let ca = rcgen::generate_simple_self_signed(vec!["kubernetes.default".into()]).unwrap();
    let ca_file = dir.join("k8s-ca.pem");
    std::fs::write(&ca_file, ca.cert.pem()).unwrap();
    bao.run(&[
        "write",
        "auth/kubernetes/config",
        &format!("kubernetes_host={host}"),
        &format!("kubernetes_ca_cert=@{}", ca_file.display()),
        "disable_local_ca_jwt=true",
    ]);
    bao.run(&[
        "write",
        "auth/kubernetes/role/warden",
        &format!("bound_service_account_names={ACCOUNT}"),
        &format!("bound_service_account_namespaces={NAMESPACE}"),
        "token_policies=warden",
        "token_ttl=1h",
    ]);
}

#[tokio::test]
async fn kubernetes_login_with_the_pods_service_account_token_reads_kv_secrets() {
    let bao = OpenBao::start().await;
    let dir = tempfile::tempdir().unwrap();
    let token = service_account_token(ACCOUNT);
    let (host, asked) = token_review(vec![token.clone()]).await;
    kubernetes_auth(&bao, dir.path(), &host);
    bao.run(&["kv", "put", "secret/agents/k8s/openai", "api_key=sk-k8s"]);
    let jwt_path = dir.path().join("token");
    std::fs::write(&jwt_path, &token).unwrap();

    let vault = Vault::connect(bao.config(VaultAuth::Kubernetes {
        mount: "kubernetes".into(),
        role: "warden".into(),
        jwt_path: jwt_path.clone(),
    }))
    .await
    .unwrap();
    let secret = vault.kv("secret", "agents/k8s/openai", None).await.unwrap();
    assert_eq!(secret.data.get("api_key"), Some("sk-k8s"));
    assert_eq!(*asked.lock().unwrap(), vec![token.clone()]);

    // A token the API server does not vouch for (another account's, revoked) is refused.
    std::fs::write(&jwt_path, service_account_token("intruder")).unwrap();
    let e = Vault::connect(bao.config(VaultAuth::Kubernetes {
        mount: "kubernetes".into(),
        role: "warden".into(),
        jwt_path,
    }))
    .await
    .unwrap_err();
    assert!(
        matches!(&e, VaultError::Refused { status, .. } if status.is_client_error()),
        "{e:?}"
    );
    assert!(e.to_string().contains("Kubernetes login"), "{e}");
    assert!(
        !format!("{e:?}").contains("not-checked"),
        "the token is not shown"
    );
}
