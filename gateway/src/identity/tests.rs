//! End-to-end tests of the identify stage: real keys, a discovery + JWKS server on
//! 127.0.0.1, and the public [`Identifier`] API.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderValue};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::config::{ClientCertificate, IdentityConfig, IssuerConfig, WardenIssuerConfig};
use super::{AuthError, Identifier, IdentityError, now_unix};

const RSA1: &[u8] = include_bytes!("testdata/rsa1.pem");
const RSA1_PUBLIC: &[u8] = include_bytes!("testdata/rsa1.pub.pem");
const RSA2: &[u8] = include_bytes!("testdata/rsa2.pem");
const EC256: &[u8] = include_bytes!("testdata/ec256.pem");
const EC384: &[u8] = include_bytes!("testdata/ec384.pem");
const ED25519: &[u8] = include_bytes!("testdata/ed25519.pem");

const AUDIENCE: &str = "warden-api";
/// Upper bound for anything a test waits on.
const TEST_DEADLINE: Duration = Duration::from_secs(15);

/// A test signing key and its public JWK.
struct TestKey {
    kid: &'static str,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
}

impl TestKey {
    fn new(kid: &'static str, alg: Algorithm, encoding: EncodingKey) -> TestKey {
        let mut jwk =
            serde_json::to_value(Jwk::from_encoding_key(&encoding, alg).unwrap()).unwrap();
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        TestKey {
            kid,
            alg,
            encoding,
            jwk,
        }
    }

    fn rsa1() -> TestKey {
        TestKey::new(
            "rsa-1",
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(RSA1).unwrap(),
        )
    }

    fn rsa2() -> TestKey {
        TestKey::new(
            "rsa-2",
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(RSA2).unwrap(),
        )
    }

    fn ec256() -> TestKey {
        TestKey::new(
            "ec-256",
            Algorithm::ES256,
            EncodingKey::from_ec_pem(EC256).unwrap(),
        )
    }

    fn ec384() -> TestKey {
        TestKey::new(
            "ec-384",
            Algorithm::ES384,
            EncodingKey::from_ec_pem(EC384).unwrap(),
        )
    }

    fn ed25519() -> TestKey {
        TestKey::new(
            "ed-1",
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(ED25519).unwrap(),
        )
    }

    fn sign(&self, claims: &Value) -> String {
        self.sign_as(self.alg, Some(self.kid), claims)
    }

    fn sign_as(&self, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

/// What the test IdP serves and counts.
struct IdpState {
    issuer: String,
    jwks: Mutex<Value>,
    jwks_failing: AtomicBool,
    jwks_delay_ms: AtomicU64,
    jwks_hits: AtomicUsize,
    /// While true, JWKS requests hang (until it turns false).
    jwks_held: tokio::sync::watch::Sender<bool>,
    /// The `jwks_uri` discovery names instead of `<issuer>/jwks`.
    jwks_uri: Mutex<Option<String>>,
}

/// A discovery + JWKS server on 127.0.0.1.
struct Idp {
    state: Arc<IdpState>,
    task: JoinHandle<()>,
}

impl Idp {
    async fn start(keys: &[&TestKey]) -> Idp {
        Idp::serve(TcpListener::bind("127.0.0.1:0").await.unwrap(), keys)
    }

    fn serve(listener: TcpListener, keys: &[&TestKey]) -> Idp {
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(IdpState {
            issuer: format!("http://{addr}"),
            jwks: Mutex::new(jwks(keys)),
            jwks_failing: AtomicBool::new(false),
            jwks_delay_ms: AtomicU64::new(0),
            jwks_hits: AtomicUsize::new(0),
            jwks_held: tokio::sync::watch::Sender::new(false),
            jwks_uri: Mutex::new(None),
        });
        let app = axum::Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(key_set))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Idp { state, task }
    }

    fn issuer(&self) -> String {
        self.state.issuer.clone()
    }

    fn set_keys(&self, keys: &[&TestKey]) {
        *self.state.jwks.lock().unwrap() = jwks(keys);
    }

    fn jwks_hits(&self) -> usize {
        self.state.jwks_hits.load(Ordering::SeqCst)
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn jwks(keys: &[&TestKey]) -> Value {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()})
}

async fn discovery(State(state): State<Arc<IdpState>>) -> Json<Value> {
    let jwks_uri = state.jwks_uri.lock().unwrap().clone();
    Json(json!({
        "issuer": state.issuer,
        "jwks_uri": jwks_uri.unwrap_or_else(|| format!("{}/jwks", state.issuer)),
        "id_token_signing_alg_values_supported": ["RS256"],
    }))
}

async fn key_set(State(state): State<Arc<IdpState>>) -> Response {
    state.jwks_hits.fetch_add(1, Ordering::SeqCst);
    let mut held = state.jwks_held.subscribe();
    // Never longer than the fetcher's own time limit: it hangs up first.
    let _ = tokio::time::timeout(TEST_DEADLINE, held.wait_for(|held| !*held)).await;
    let delay = state.jwks_delay_ms.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(delay)).await;
    if state.jwks_failing.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let body = state.jwks.lock().unwrap().clone();
    Json(body).into_response()
}

fn issuer_config(issuer: &str) -> IssuerConfig {
    IssuerConfig {
        issuer: issuer.to_owned(),
        audiences: vec!["other-api".into(), AUDIENCE.into()],
        algorithms: ["RS256", "PS256", "ES256", "ES384", "EdDSA"]
            .map(String::from)
            .to_vec(),
        jwks_uri: None,
        claims: None,
        ca_file: None,
        allow_private: Vec::new(),
    }
}

fn config(issuers: &[&str]) -> IdentityConfig {
    IdentityConfig {
        issuers: issuers.iter().map(|i| issuer_config(i)).collect(),
        jwks_min_refetch_interval: Duration::from_millis(200),
        ..IdentityConfig::default()
    }
}

/// An identifier and the data dir holding Warden's key (kept alive with it).
async fn identifier(cfg: &IdentityConfig) -> (Identifier, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let id = Identifier::new(cfg, dir.path()).await.unwrap();
    (id, dir)
}

fn claims(issuer: &str) -> Value {
    let now = now_unix();
    json!({
        "iss": issuer, "aud": AUDIENCE, "sub": "agent-7", "iat": now, "exp": now + 600,
        "fleet": "billing", "owner": "team-a", "environment": "prod",
        "scope": "llm:chat tools:read", "groups": ["ops", "eu"],
    })
}

fn with(mut claims: Value, name: &str, value: Value) -> Value {
    claims[name] = value;
    claims
}

/// Asserts the token is refused and that the reason shows no part of it.
async fn refused(id: &Identifier, token: &str) -> AuthError {
    let err = id
        .identify_token(token, None)
        .await
        .expect_err("the token must be refused");
    let message = err.to_string();
    for part in token.split('.').filter(|p| p.len() >= 8) {
        assert!(
            !message.contains(part),
            "message shows the token: {message}"
        );
    }
    err
}

fn bearer(token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    headers
}

#[tokio::test]
async fn valid_rsa_token_becomes_principal_with_mapped_attributes() {
    let key = TestKey::rsa1();
    let idp = Idp::start(&[&key]).await;
    let (id, _dir) = identifier(&config(&[&idp.issuer()])).await;

    let p = id
        .identify(&bearer(&key.sign(&claims(&idp.issuer()))), None, None)
        .await
        .unwrap();

    assert_eq!(&*p.id, "agent-7");
    assert_eq!(*p.issuer, *idp.issuer());
    assert_eq!(p.fleet.as_deref(), Some("billing"));
    assert_eq!(p.owner.as_deref(), Some("team-a"));
    assert_eq!(p.environment.as_deref(), Some("prod"));
    assert_eq!(
        p.scopes.iter().map(|s| &**s).collect::<Vec<_>>(),
        ["llm:chat", "tools:read"]
    );
    assert_eq!(
        p.groups.iter().map(|s| &**s).collect::<Vec<_>>(),
        ["ops", "eu"]
    );
    assert!(p.expires_at.unwrap() > now_unix());
}

#[tokio::test]
async fn accepts_ec_p256_p384_and_ed25519_keys() {
    let keys = [TestKey::ec256(), TestKey::ec384(), TestKey::ed25519()];
    let idp = Idp::start(&keys.iter().collect::<Vec<_>>()).await;
    let (id, _dir) = identifier(&config(&[&idp.issuer()])).await;
    for key in &keys {
        let p = id
            .identify_token(&key.sign(&claims(&idp.issuer())), None)
            .await;
        assert_eq!(
            p.map(|p| p.id.to_string()),
            Ok("agent-7".to_string()),
            "{}",
            key.kid
        );
    }
}

#[tokio::test]
async fn accepts_token_without_kid_when_one_key_fits() {
    let key = TestKey::ec256();
    let idp = Idp::start(&[&TestKey::rsa1(), &key]).await;
    let (id, _dir) = identifier(&config(&[&idp.issuer()])).await;
    let token = key.sign_as(Algorithm::ES256, None, &claims(&idp.issuer()));
    assert!(id.identify_token(&token, None).await.is_ok());
}

#[tokio::test]
async fn a_token_without_kid_is_tried_against_at_most_four_keys() {
    let key = TestKey::ed25519();
    let idp = Idp::start(&[&key]).await;
    // Four more Ed25519 keys: public keys of nobody's, as a hostile JWKS publishes thousands.
    let mut keys = vec![key.jwk.clone()];
    for i in 0..4u8 {
        let mut other = key.jwk.clone();
        other["kid"] = json!(format!("other-{i}"));
        other["x"] = json!(URL_SAFE_NO_PAD.encode([i + 1; 32]));
        keys.push(other);
    }
    *idp.state.jwks.lock().unwrap() = json!({ "keys": keys });
    let (id, _dir) = identifier(&config(&[&idp.issuer()])).await;
    let token = key.sign_as(Algorithm::EdDSA, None, &claims(&idp.issuer()));

    let err = refused(&id, &token).await;
    assert_eq!(err.code(), "unknown_key");
    let text = err.to_string();
    assert!(
        text.contains("token has no `kid` and 5 keys") && text.contains("at most 4"),
        "{text}"
    );
    // Named by its `kid`, the same key verifies.
    assert!(
        id.identify_token(&key.sign(&claims(&idp.issuer())), None)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_certificate_alone_names_an_agent_only_when_certificates_are_principals() {
    let cert: Arc<str> = Arc::from("spiffe://fleet.example/agent/7");
    let (id, _dir) = identifier(&config(&[])).await;
    let err = id
        .identify(&HeaderMap::new(), Some(&cert), None)
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        "missing_credential",
        "attribute mode: a token is still needed"
    );

    let (open, _dir) = identifier(&IdentityConfig {
        required: false,
        ..config(&[])
    })
    .await;
    let p = open
        .identify(&HeaderMap::new(), Some(&cert), None)
        .await
        .unwrap();
    assert_eq!(&*p.id, "anonymous");
    assert_eq!(p.client_certificate.as_ref(), Some(&cert));

    let (by_cert, _dir) = identifier(&IdentityConfig {
        client_certificate: ClientCertificate::Principal,
        ..config(&[])
    })
    .await;
    let p = by_cert
        .identify(&HeaderMap::new(), Some(&cert), None)
        .await
        .unwrap();
    assert_eq!((&*p.id, &*p.issuer), (&*cert, "mtls"));
    assert_eq!(p.client_certificate.as_ref(), Some(&cert));
    let err = by_cert
        .identify(&HeaderMap::new(), None, None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "missing_credential", "no token, no certificate");
    let err = by_cert
        .identify(&bearer("sk-not-a-jwt"), Some(&cert), None)
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        "malformed_token",
        "a bad token is refused; the certificate does not stand in for it"
    );
}

#[tokio::test]
async fn a_token_agent_carries_the_connections_certificate_as_an_attribute() {
    let key = TestKey::rsa1();
    let idp = Idp::start(&[&key]).await;
    let (id, _dir) = identifier(&config(&[&idp.issuer()])).await;
    let headers = bearer(&key.sign(&claims(&idp.issuer())));
    let cert: Arc<str> = Arc::from("agent-7.fleet.example");
    let with = id.identify(&headers, Some(&cert), None).await.unwrap();
    assert_eq!(&*with.id, "agent-7");
    assert_eq!(with.client_certificate.as_ref(), Some(&cert));
    let without = id.identify(&headers, None, None).await.unwrap();
    assert_eq!(
        without.client_certificate, None,
        "the cached principal is not changed"
    );
}

#[tokio::test]
async fn missing_credential_is_refused_when_required_and_anonymous_otherwise() {
    let (id, _dir) = identifier(&config(&[])).await;
    let err = id
        .identify(&HeaderMap::new(), None, None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "missing_credential");
    assert!(id.required());

    let (open, _dir) = identifier(&IdentityConfig {
        required: false,
        ..config(&[])
    })
    .await;
    assert!(!open.required());
    let p = open.identify(&HeaderMap::new(), None, None).await.unwrap();
    assert_eq!(&*p.id, "anonymous");
    let err = open
        .identify(&bearer("sk-not-a-jwt"), None, None)
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        "malformed_token",
        "a presented but invalid token is still refused"
    );
}

#[tokio::test]
async fn reads_token_from_x_api_key_and_api_key() {
    let key = TestKey::rsa1();
    let idp = Idp::start(&[&key]).await;
    let (id, _dir) = identifier(&config(&[&idp.issuer()])).await;
    let token = key.sign(&claims(&idp.issuer()));
    for name in ["x-api-key", "api-key", "x-goog-api-key"] {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_str(&token).unwrap());
        assert!(id.identify(&headers, None, None).await.is_ok(), "{name}");
    }
}

#[tokio::test]
async fn rejects_expired_token_naming_the_time_and_leeway() {
    let key = TestKey::rsa1();
    let idp = Idp::start(&[&key]).await;
    let (id, _dir) = identifier(&config(&[&idp.issuer()])).await;
    let exp = now_unix() - 120;
    let err = refused(
        &id,
        &key.sign(&with(claims(&idp.issuer()), "exp", json!(exp))),
    )
    .await;
    assert_eq!(err.code(), "expired");
    let expected = format!(
        "token expired at {} (leeway 30s)",
        super::error::UnixTime(exp)
    );
    assert_eq!(err.to_string(), expected);

    let within_leeway = with(claims(&idp.issuer()), "exp", json!(now_unix() - 5));
    assert!(
        id.identify_token(&key.sign(&within_leeway), None)
            .await
            .is_ok()
    );

    let no_exp = claims(&idp.issuer()).as_object().unwrap().clone();
    let mut no_exp = Value::Object(no_exp);
    no_exp.as_object_mut().unwrap().remove("exp");
    assert_eq!(
        refused(&id, &key.sign(&no_exp)).await.code(),
        "missing_claim"
    );
}

#[tokio::test]
async fn rejects_token_whose_nbf_is_in_the_future() {
    let key = TestKey::rsa1();
    let idp = Idp::start(&[&key]).await;
    let (id, _dir) = identifier(&config(&[&idp.issuer()])).await;
    let token = key.sign(&with(claims(&idp.issuer()), "nbf", json!(now_unix() + 300)));
    let err = refused(&id, &token).await;
    assert_eq!(err.code(), "not_yet_valid");
    assert!(
        err.to_string().starts_with("token is not valid before "),
        "{err}"
    );
}

#[tokio::test]
async fn rejects_token_from_an_untrusted_issuer() {
    let key = TestKey::rsa1();
    let idp = Idp::start(&[&key]).await;
    let (id, _dir) = identifier(&config(&[&idp.issuer()])).await;
    let token = key.sign(&with(
        claims(&idp.issuer()),
        "iss",
        json!("https://evil.example"),
    ));
    let err = refused(&id, &token).await;
    assert_eq!(err.code(), "untrusted_issuer");
    let told = err.to_string();
    assert!(
        told.starts_with(r#"token issuer "https://evil.example" is not trusted"#),
        "{told}"
    );
    assert!(
        !told.contains("warden") && !told.contains(&idp.issuer()),
        "the caller is not told which issuers are trusted: {told}"
    );
    let detail = format!(r#"trusted: "warden", "{}""#, idp.issuer());
    assert_eq!(err.detail().as_deref(), Some(detail.as_str()));
}

#[tokio::test]
async fn rejects_token_for_another_audience() {
    let key = TestKey::rsa1();
    let idp = Idp::start(&[&key]).await;
    let (id, _dir) = identifier(&config(&[&idp.issuer()])).await;
    let token = key.sign(&with(claims(&idp.issuer()), "aud", json!(["a"])));
    let err = refused(&id, &token).await;
    assert_eq!(err.code(), "wrong_audience");
    assert_eq!(
        err.to_string(),
        r#"audience ["a"] does not match any of ["other-api", "warden-api"]"#
    );

    let listed = with(claims(&idp.issuer()), "aud", json!(["a", AUDIENCE]));
    assert!(
        id.identify_token(&key.sign(&listed), None).await.is_ok(),
        "one matching audience is enough"
    );
}

#[tokio::test]
async fn rejects_unsigned_alg_none_token() {
    let idp = Idp::start(&[&TestKey::rsa1()]).await;
    let (id, _dir) = identifier(&config(&[&idp.issuer()])).await;
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"rsa-1"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims(&idp.issuer()).to_string());
    let err = refused(&id, &format!("{header}.{payload}.")).await;
    assert_eq!(err.code(), "algorithm_not_allowed");
}

#[tokio::test]
async fn rejects_token_signed_with_hs256_using_public_key() {
    let key = TestKey::rsa1();
    let idp = Idp::start(&[&key]).await;
    let (id, _dir) = identifier(&config(&[&idp.issuer()])).await;
    let forger = EncodingKey::from_secret(RSA1_PUBLIC);
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa-1".into());
    let token = jsonwebtoken::encode(&header, &claims(&idp.issuer()), &forger).unwrap();
    let err = refused(&id, &token).await;
    assert_eq!(err.code(), "algorithm_not_allowed");
    let expected = format!(
        r#"algorithm HS256 is not allowed for issuer {} (allowed: RS256, PS256, ES256, ES384, EdDSA)"#,
        idp.issuer()
    );
    assert_eq!(err.to_string(), expected);
}

#[tokio::test]
async fn refuses_hmac_algorithms_in_issuer_configuration() {
    let mut cfg = config(&["https://idp.example"]);
    cfg.issuers[0].algorithms = vec!["RS256".into(), "HS256".into()];
    let dir = tempfile::tempdir().unwrap();
    let err = Identifier::new(&cfg, dir.path())
        .await
        .err()
        .expect("HS256 must be refused");
    assert!(matches!(err, IdentityError::Config { .. }), "{err}");
    assert!(
        err.to_string().contains("identity.issuers[0].algorithms"),
        "{err}"
    );
}

#[tokio::test]
async fn rejects_token_whose_alg_does_not_fit_the_named_key() {
    let idp = Idp::start(&[&TestKey::rsa1(), &TestKey::ec256()]).await;
    let (id, _dir) = identifier(&config(&[&idp.issuer()])).await;
    let token = TestKey::ec256().sign_as(Algorithm::ES256, Some("rsa-1"), &claims(&idp.issuer()));
    let err = refused(&id, &token).await;
    assert_eq!(err.code(), "key_algorithm_mismatch");
    assert!(err.to_string().contains("RSA key"), "{err}");
}

#[tokio::test]
async fn rejects_token_with_tampered_payload() {
    let key = TestKey::rsa1();
    let idp = Idp::start(&[&key]).await;
    let (id, _dir) = identifier(&config(&[&idp.issuer()])).await;
    let token = key.sign(&claims(&idp.issuer()));
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1] =
        URL_SAFE_NO_PAD.encode(with(claims(&idp.issuer()), "sub", json!("admin")).to_string());
    let err = refused(&id, &parts.join(".")).await;
    assert_eq!(err.code(), "bad_signature");
}

#[tokio::test]
async fn rejects_unknown_kid_after_one_refetch() {
    let key = TestKey::rsa1();
    let idp = Idp::start(&[&key]).await;
    let (id, _dir) = identifier(&config(&[&idp.issuer()])).await;
    tokio::time::sleep(Duration::from_millis(250)).await;
    let hits = idp.jwks_hits();
    let token = TestKey::rsa2().sign(&claims(&idp.issuer()));
    let err = refused(&id, &token).await;
    assert_eq!(err.code(), "unknown_key");
    let expected = format!(
        r#"no key "rsa-2" in the JWKS of {} (refreshed just now)"#,
        idp.issuer()
    );
    assert_eq!(err.to_string(), expected);
    assert_eq!(
        idp.jwks_hits(),
        hits + 1,
        "an unknown kid triggers exactly one refetch"
    );
}

#[tokio::test]
async fn an_unknown_kid_whose_refetch_failed_says_the_refetch_failed() {
    let key = TestKey::rsa1();
    let idp = Idp::start(&[&key]).await;
    let (id, _dir) = identifier(&config(&[&idp.issuer()])).await;
    tokio::time::sleep(Duration::from_millis(250)).await;
    idp.state.jwks_failing.store(true, Ordering::SeqCst);
    let err = refused(&id, &TestKey::rsa2().sign(&claims(&idp.issuer()))).await;
    assert_eq!(err.code(), "issuer_unavailable", "{err}");
    assert_eq!(
        err.status(),
        http::StatusCode::SERVICE_UNAVAILABLE,
        "the key may be new: Warden's outage, not the agent's bad key"
    );
    let text = err.to_string();
    assert!(
        text.contains(
            "refetching the JWKS failed just now: its JWKS answered 503 Service Unavailable; \
             keys last fetched"
        ),
        "the refusal says the refetch failed, not that the keys are fresh: {text}"
    );
    assert!(text.contains("retry later"), "{text}");
    assert!(!text.contains("refreshed"), "{text}");
}

#[tokio::test]
async fn a_failed_refetch_is_told_in_a_bounded_text() {
    let key = TestKey::rsa1();
    let idp = Idp::start(&[&key]).await;
    let (id, _dir) = identifier(&config(&[&idp.issuer()])).await;
    tokio::time::sleep(Duration::from_millis(250)).await;
    // Not a JWKS: its parser's error quotes the string whole.
    *idp.state.jwks.lock().unwrap() = json!({ "keys": "x".repeat(100_000) });
    let err = refused(&id, &TestKey::rsa2().sign(&claims(&idp.issuer()))).await;
    let text = err.to_string();
    assert!(
        text.contains("refetching the JWKS failed just now: its JWKS is not usable"),
        "{text}"
    );
    assert!(
        !text.contains("xxxxxxxx"),
        "what the IdP sent is the log's: {text}"
    );
    assert!(text.len() < 1500, "{} bytes in every refusal", text.len());
}

#[tokio::test]
async fn accepts_rotated_key_after_refetch() {
    let (old, new) = (TestKey::rsa1(), TestKey::rsa2());
    let idp = Idp::start(&[&old]).await;
    let (id, _dir) = identifier(&config(&[&idp.issuer()])).await;
    assert!(
        id.identify_token(&old.sign(&claims(&idp.issuer())), None)
            .await
            .is_ok()
    );
    tokio::time::sleep(Duration::from_millis(250)).await;

    idp.set_keys(&[&old, &new]);
    let p = id
        .identify_token(&new.sign(&claims(&idp.issuer())), None)
        .await
        .unwrap();
    assert_eq!(&*p.id, "agent-7");
}

#[tokio::test]
async fn a_cached_token_is_refused_once_its_key_is_withdrawn_from_the_jwks() {
    let (withdrawn, kept) = (TestKey::rsa1(), TestKey::rsa2());
    let idp = Idp::start(&[&withdrawn, &kept]).await;
    let (id, _dir) = identifier(&config(&[&idp.issuer()])).await;
    let old = withdrawn.sign(&claims(&idp.issuer()));
    let other = kept.sign(&claims(&idp.issuer()));
    assert!(id.identify_token(&old, None).await.is_ok());
    assert!(id.identify_token(&other, None).await.is_ok());
    assert_eq!(id.cached_tokens(), 2);

    // The IdP withdraws rsa-1 (compromised, say); a token naming an unknown key makes
    // Warden read the JWKS again.
    idp.set_keys(&[&kept]);
    tokio::time::sleep(Duration::from_millis(250)).await;
    let unknown = TestKey::ed25519().sign(&claims(&idp.issuer()));
    assert_eq!(refused(&id, &unknown).await.code(), "unknown_key");

    let err = refused(&id, &old).await;
    assert_eq!(err.code(), "unknown_key", "{err}");
    assert!(
        id.identify_token(&other, None).await.is_ok(),
        "a token of a key still published stays accepted"
    );
}

/// `n` requests at once, each with a token of `issuer` naming a key its JWKS lacks (`rsa-2`).
fn forged_at_once(
    id: impl Into<Arc<Identifier>>,
    issuer: &str,
    n: usize,
) -> Vec<JoinHandle<Result<Arc<crate::action::Principal>, AuthError>>> {
    let id = id.into();
    let forger = TestKey::rsa2();
    (0..n)
        .map(|i| {
            let id = Arc::clone(&id);
            let token = forger.sign(&with(claims(issuer), "jti", json!(i)));
            tokio::spawn(async move { id.identify_token(&token, None).await })
        })
        .collect()
}

#[tokio::test]
async fn concurrent_unknown_kid_requests_share_one_refetch() {
    let idp = Idp::start(&[&TestKey::rsa1()]).await;
    let cfg = IdentityConfig {
        jwks_min_refetch_interval: Duration::ZERO,
        ..config(&[&idp.issuer()])
    };
    let (id, _dir) = identifier(&cfg).await;
    idp.state.jwks_delay_ms.store(300, Ordering::SeqCst);
    let hits = idp.jwks_hits();
    let tasks = forged_at_once(id, &idp.issuer(), 16);
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap_err().code(), "unknown_key");
    }
    assert_eq!(
        idp.jwks_hits(),
        hits + 1,
        "16 concurrent requests share one fetch"
    );
}

#[tokio::test]
async fn unknown_kid_refetch_is_rate_limited() {
    let idp = Idp::start(&[&TestKey::rsa1()]).await;
    let cfg = IdentityConfig {
        jwks_min_refetch_interval: Duration::from_secs(30),
        ..config(&[&idp.issuer()])
    };
    let (id, _dir) = identifier(&cfg).await;
    let hits = idp.jwks_hits();
    for i in 0..5 {
        let token = TestKey::rsa2().sign(&with(claims(&idp.issuer()), "jti", json!(i)));
        assert_eq!(refused(&id, &token).await.code(), "unknown_key");
    }
    assert_eq!(
        idp.jwks_hits(),
        hits,
        "the startup fetch was less than 30s ago"
    );
}

#[tokio::test]
async fn keeps_previous_keys_when_a_refresh_fails() {
    let key = TestKey::rsa1();
    let idp = Idp::start(&[&key]).await;
    let (id, _dir) = identifier(&config(&[&idp.issuer()])).await;
    idp.state.jwks_failing.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(250)).await;
    let hits = idp.jwks_hits();
    let unknown = TestKey::rsa2().sign(&claims(&idp.issuer()));
    assert_eq!(refused(&id, &unknown).await.code(), "issuer_unavailable");
    assert_eq!(
        idp.jwks_hits(),
        hits + 1,
        "the refetch was attempted and failed"
    );
    assert!(
        id.verify_uncached(&key.sign(&claims(&idp.issuer())))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn fails_closed_while_idp_is_down_then_accepts_once_it_is_up() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    drop(listener);
    let issuer = format!("http://{addr}");
    let key = TestKey::rsa1();
    let (id, _dir) = identifier(&config(&[&issuer])).await;
    let token = key.sign(&claims(&issuer));

    let err = refused(&id, &token).await;
    assert_eq!(err.code(), "issuer_unavailable");
    assert!(err.to_string().contains(&issuer), "{err}");
    assert!(
        err.to_string()
            .contains("its discovery document could not be fetched"),
        "{err}"
    );

    let idp = Idp::serve(TcpListener::bind(addr).await.unwrap(), &[&key]);
    assert_eq!(idp.issuer(), issuer);
    let start = Instant::now();
    loop {
        match id.identify_token(&token, None).await {
            Ok(p) => {
                assert_eq!(&*p.id, "agent-7");
                break;
            }
            Err(e) => assert_eq!(e.code(), "issuer_unavailable", "{e}"),
        }
        assert!(
            start.elapsed() < TEST_DEADLINE,
            "keys never loaded after the IdP came up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn cache_hit_returns_same_principal_without_fetching_keys() {
    let key = TestKey::rsa1();
    let idp = Idp::start(&[&key]).await;
    let (id, _dir) = identifier(&config(&[&idp.issuer()])).await;
    let token = key.sign(&claims(&idp.issuer()));
    let first = id.identify_token(&token, None).await.unwrap();
    let hits = idp.jwks_hits();
    idp.state.jwks_failing.store(true, Ordering::SeqCst);
    let second = id.identify(&bearer(&token), None, None).await.unwrap();
    assert!(Arc::ptr_eq(&first, &second));
    assert_eq!(idp.jwks_hits(), hits);
    assert_eq!(id.cached_tokens(), 1);
}

#[tokio::test]
async fn warden_issued_token_round_trips() {
    let (id, _dir) = identifier(&config(&[])).await;
    let issuer = id
        .token_issuer()
        .expect("Warden issuer is on by default")
        .clone();
    let extra = [
        ("fleet".to_string(), json!("billing")),
        ("scope".to_string(), json!("llm:chat")),
    ];
    let token = issuer
        .issue("bot-1", Duration::from_secs(3600), &extra)
        .unwrap();
    let p = id.identify(&bearer(&token), None, None).await.unwrap();
    assert_eq!(&*p.id, "bot-1");
    assert_eq!(&*p.issuer, "warden");
    assert_eq!(p.fleet.as_deref(), Some("billing"));
    assert_eq!(p.scopes.first().map(|s| &**s), Some("llm:chat"));
    assert_eq!(issuer.jwks()["keys"][0]["kid"], issuer.key_id());
}

#[tokio::test]
async fn rejects_warden_token_signed_with_another_key() {
    let (id, _dir) = identifier(&config(&[])).await;
    let other_dir = tempfile::tempdir().unwrap();
    let other =
        super::TokenIssuer::load_or_create(&WardenIssuerConfig::default(), other_dir.path())
            .unwrap();
    let token = other.issue("bot-1", Duration::from_secs(60), &[]).unwrap();
    assert_eq!(refused(&id, &token).await.code(), "unknown_key");

    let (disabled, _dir) = identifier(&IdentityConfig {
        warden_issuer: WardenIssuerConfig {
            enabled: false,
            ..WardenIssuerConfig::default()
        },
        ..config(&[])
    })
    .await;
    assert!(disabled.token_issuer().is_none());
    assert_eq!(refused(&disabled, &token).await.code(), "untrusted_issuer");
}

/// A rotation: the old key moves to `previous_keys`; tokens it signed verify until they
/// expire, new tokens are signed with the new key, and the JWK Set publishes both.
#[tokio::test]
async fn a_retired_signing_key_in_previous_keys_still_verifies_its_tokens() {
    let old_dir = tempfile::tempdir().unwrap();
    let old =
        super::TokenIssuer::load_or_create(&WardenIssuerConfig::default(), old_dir.path()).unwrap();
    let old_token = old.issue("bot-1", Duration::from_secs(600), &[]).unwrap();
    let retired = old_dir.path().join("keys").join("agent-signing.pem");

    let (id, _dir) = identifier(&IdentityConfig {
        warden_issuer: WardenIssuerConfig {
            previous_keys: vec![retired.into()],
            ..WardenIssuerConfig::default()
        },
        ..config(&[])
    })
    .await;
    let p = id.identify(&bearer(&old_token), None, None).await.unwrap();
    assert_eq!(&*p.id, "bot-1");
    let issuer = id.token_issuer().unwrap().clone();
    assert_ne!(issuer.key_id(), old.key_id(), "signs with the new key");
    let new_token = issuer
        .issue("bot-2", Duration::from_secs(600), &[])
        .unwrap();
    let p = id.identify(&bearer(&new_token), None, None).await.unwrap();
    assert_eq!(&*p.id, "bot-2");
    let jwks = issuer.jwks();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, [issuer.key_id(), old.key_id()]);
    assert_eq!(
        issuer.signed_exp(&old_token),
        old.signed_exp(&old_token),
        "a revocation by the token reads its exp under the retired key too"
    );
}

/// A retired key with `until`: its tokens verify before it, and are refused `retired_key`
/// from it on, whatever their `exp`; past it the key leaves the published JWK Set.
#[tokio::test]
async fn a_retired_key_past_its_until_verifies_nothing_and_is_no_longer_published() {
    let old_dir = tempfile::tempdir().unwrap();
    let old =
        super::TokenIssuer::load_or_create(&WardenIssuerConfig::default(), old_dir.path()).unwrap();
    let old_token = old.issue("bot-1", Duration::from_secs(600), &[]).unwrap();
    let retired = old_dir.path().join("keys").join("agent-signing.pem");
    let now = std::time::SystemTime::now();
    let with_until = |until: std::time::SystemTime| IdentityConfig {
        warden_issuer: WardenIssuerConfig {
            previous_keys: vec![crate::keys::PreviousKey {
                path: retired.clone(),
                until: Some(until),
            }],
            ..WardenIssuerConfig::default()
        },
        ..config(&[])
    };
    let kids = |id: &Identifier| -> Vec<String> {
        id.token_issuer().unwrap().jwks()["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    };

    let (id, _dir) = identifier(&with_until(now + Duration::from_secs(3600))).await;
    let p = id.identify(&bearer(&old_token), None, None).await.unwrap();
    assert_eq!(&*p.id, "bot-1");
    assert!(kids(&id).contains(&old.key_id().to_owned()));

    let (id, _dir) = identifier(&with_until(now - Duration::from_secs(1))).await;
    let err = refused(&id, &old_token).await;
    assert_eq!(err.code(), "retired_key", "{err}");
    assert_eq!(err.status(), http::StatusCode::UNAUTHORIZED);
    assert!(err.to_string().contains(old.key_id()), "{err}");
    assert!(
        !kids(&id).contains(&old.key_id().to_owned()),
        "{:?}",
        kids(&id)
    );
    // The signing key's own tokens are unaffected.
    let new_token = id
        .token_issuer()
        .unwrap()
        .issue("bot-2", Duration::from_secs(600), &[])
        .unwrap();
    assert!(id.identify(&bearer(&new_token), None, None).await.is_ok());
}

/// A retired key's token is cached no longer than the key's `until`: the principal ends
/// then, even when the token's `exp` is later.
#[tokio::test]
async fn a_retired_keys_token_ends_at_the_keys_until() {
    let old_dir = tempfile::tempdir().unwrap();
    let old =
        super::TokenIssuer::load_or_create(&WardenIssuerConfig::default(), old_dir.path()).unwrap();
    let old_token = old.issue("bot-1", Duration::from_secs(3600), &[]).unwrap();
    let until = now_unix() + 120;
    let cfg = IdentityConfig {
        warden_issuer: WardenIssuerConfig {
            previous_keys: vec![crate::keys::PreviousKey {
                path: old_dir.path().join("keys").join("agent-signing.pem"),
                until: Some(std::time::UNIX_EPOCH + Duration::from_secs(until)),
            }],
            ..WardenIssuerConfig::default()
        },
        ..config(&[])
    };
    let (id, _dir) = identifier(&cfg).await;
    let p = id.identify(&bearer(&old_token), None, None).await.unwrap();
    assert_eq!(p.expires_at, Some(until));
}

/// A Warden token that says it was issued in the future is refused: its lifetime (`exp` -
/// `iat`) and its place before an agent's revocation would otherwise be what its signer
/// chose.
#[tokio::test]
async fn a_warden_token_issued_in_the_future_is_refused() {
    let (id, dir) = identifier(&config(&[])).await;
    let pem = std::fs::read(dir.path().join("keys").join("agent-signing.pem")).unwrap();
    let issuer = id.token_issuer().unwrap();
    let now = now_unix();
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(issuer.key_id().to_owned());
    let sign = |iat: u64| {
        let claims = json!({
            "iss": "warden", "aud": "warden", "sub": "bot", "jti": "j",
            "iat": iat, "exp": iat + 600,
        });
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ed_pem(&pem).unwrap()).unwrap()
    };
    let err = refused(&id, &sign(now + 3600)).await;
    assert_eq!(err.code(), "issued_in_future", "{err}");
    // Within the clock skew tolerated, it is accepted.
    assert!(id.identify_token(&sign(now + 5), None).await.is_ok());
}

/// A `previous_keys` entry holding the signing key itself, or a key listed twice, stops the
/// start naming the entry and the key.
#[tokio::test]
async fn a_previous_key_that_is_the_signing_key_or_listed_twice_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let current =
        super::TokenIssuer::load_or_create(&WardenIssuerConfig::default(), dir.path()).unwrap();
    let old_dir = tempfile::tempdir().unwrap();
    let old =
        super::TokenIssuer::load_or_create(&WardenIssuerConfig::default(), old_dir.path()).unwrap();
    let old_path = old_dir.path().join("keys").join("agent-signing.pem");
    for (previous, kid, named) in [
        (
            vec![current.key_file().to_path_buf().into()],
            current.key_id(),
            "identity.warden_issuer.previous_keys[0]",
        ),
        (
            vec![old_path.clone().into(), old_path.clone().into()],
            old.key_id(),
            "identity.warden_issuer.previous_keys[1]",
        ),
    ] {
        let cfg = IdentityConfig {
            warden_issuer: WardenIssuerConfig {
                previous_keys: previous,
                ..WardenIssuerConfig::default()
            },
            ..config(&[])
        };
        let Err(err) = Identifier::new(&cfg, dir.path()).await else {
            panic!("the start must be refused");
        };
        let err = err.to_string();
        assert!(err.contains(named) && err.contains(kid), "{err}");
    }
}

/// A retired key's `until` further than `max_ttl` from now is refused: no token signed before
/// a rotation made now lives that long.
#[tokio::test]
async fn a_retired_keys_until_beyond_max_ttl_is_refused() {
    let old_dir = tempfile::tempdir().unwrap();
    super::TokenIssuer::load_or_create(&WardenIssuerConfig::default(), old_dir.path()).unwrap();
    let max_ttl = Duration::from_secs(24 * 3600);
    let cfg = |until| IdentityConfig {
        warden_issuer: WardenIssuerConfig {
            max_ttl,
            previous_keys: vec![crate::keys::PreviousKey {
                path: old_dir.path().join("keys").join("agent-signing.pem"),
                until: Some(until),
            }],
            ..WardenIssuerConfig::default()
        },
        ..config(&[])
    };
    let now = std::time::SystemTime::now();
    let dir = tempfile::tempdir().unwrap();
    let Err(err) = Identifier::new(&cfg(now + max_ttl * 2), dir.path()).await else {
        panic!("an until beyond max_ttl must be refused");
    };
    let err = err.to_string();
    assert!(
        err.contains("identity.warden_issuer.previous_keys[0].until") && err.contains("max_ttl"),
        "{err}"
    );
    assert!(
        Identifier::new(&cfg(now + max_ttl / 2), dir.path())
            .await
            .is_ok()
    );
}

/// A `previous_keys` file that cannot be read stops the start, naming the file.
#[tokio::test]
async fn an_unreadable_previous_key_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("retired.pem");
    let cfg = IdentityConfig {
        warden_issuer: WardenIssuerConfig {
            previous_keys: vec![missing.clone().into()],
            ..WardenIssuerConfig::default()
        },
        ..config(&[])
    };
    let Err(err) = Identifier::new(&cfg, dir.path()).await else {
        panic!("a missing previous key must stop the start");
    };
    let err = err.to_string();
    assert!(err.contains(&missing.display().to_string()), "{err}");
}

#[tokio::test]
async fn uses_configured_jwks_uri_without_discovery() {
    let key = TestKey::rsa1();
    let idp = Idp::start(&[&key]).await;
    let issuer = "https://idp.example/tenant";
    let mut cfg = config(&[issuer]);
    cfg.issuers[0].jwks_uri = Some(format!("{}/jwks", idp.issuer()));
    let (id, _dir) = identifier(&cfg).await;
    let p = id
        .identify_token(&key.sign(&claims(issuer)), None)
        .await
        .unwrap();
    assert_eq!(&*p.issuer, issuer);
}

#[tokio::test]
async fn refuses_keys_when_discovery_names_another_issuer() {
    let key = TestKey::rsa1();
    let idp = Idp::start(&[&key]).await;
    let configured = format!("{}/", idp.issuer());
    let (id, _dir) = identifier(&config(&[&configured])).await;
    let err = refused(&id, &key.sign(&claims(&configured))).await;
    assert_eq!(err.code(), "issuer_unavailable");
    assert!(
        err.to_string()
            .contains("its discovery document names another issuer"),
        "{err}"
    );
    assert_eq!(
        idp.jwks_hits(),
        0,
        "keys are not fetched for a mismatched issuer"
    );
}

#[tokio::test]
async fn a_hanging_refetch_holds_requests_at_most_the_refetch_wait_and_known_keys_meanwhile() {
    let key = TestKey::rsa1();
    let idp = Idp::start(&[&key]).await;
    let cfg = IdentityConfig {
        jwks_min_refetch_interval: Duration::ZERO,
        jwks_refetch_wait: Duration::from_millis(200),
        ..config(&[&idp.issuer()])
    };
    let (id, _dir) = identifier(&cfg).await;
    let hits = idp.jwks_hits();
    // The IdP now takes requests and never answers (until released).
    idp.state.jwks_held.send_replace(true);
    let id = Arc::new(id);
    let tasks = forged_at_once(Arc::clone(&id), &idp.issuer(), 8);
    for task in tasks {
        let err = tokio::time::timeout(TEST_DEADLINE, task)
            .await
            .expect("a request waits for a hanging IdP at most identity.jwks_refetch_wait")
            .unwrap()
            .unwrap_err();
        assert_eq!(err.code(), "issuer_unavailable", "{err}");
        assert_eq!(err.status(), http::StatusCode::SERVICE_UNAVAILABLE);
        let text = err.to_string();
        assert!(
            text.contains(r#"key "rsa-2" is not among the keys of issuer"#)
                && text.contains("refetching the JWKS has run since"),
            "{text}"
        );
    }
    // A request arriving later waits for the same fetch: the IdP has one request.
    let late = TestKey::rsa2().sign(&with(claims(&idp.issuer()), "jti", json!("late")));
    assert_eq!(refused(&id, &late).await.code(), "issuer_unavailable");
    assert_eq!(
        idp.jwks_hits(),
        hits + 1,
        "one refetch in flight per issuer"
    );
    // A token of a key Warden has is verified while the refetch still hangs.
    let p = tokio::time::timeout(
        TEST_DEADLINE,
        id.verify_uncached(&key.sign(&claims(&idp.issuer()))),
    )
    .await
    .expect("a known key is not held behind a refetch")
    .unwrap();
    assert_eq!(&*p.id, "agent-7");
    assert_eq!(idp.jwks_hits(), hits + 1);
    assert!(*idp.state.jwks_held.borrow(), "the refetch still hangs");
    idp.state.jwks_held.send_replace(false);
}

#[tokio::test]
async fn a_refusal_names_the_issuer_and_what_to_do_not_its_urls() {
    let key = TestKey::rsa1();
    let idp = Idp::start(&[&key]).await;
    let issuer = "https://idp.example/tenant";
    let mut cfg = config(&[issuer]);
    // An internal JWKS URL, failing: agents must not learn it.
    cfg.issuers[0].jwks_uri = Some(format!("{}/jwks", idp.issuer()));
    idp.state.jwks_failing.store(true, Ordering::SeqCst);
    let (id, _dir) = identifier(&cfg).await;
    let err = refused(&id, &key.sign(&claims(issuer))).await;
    assert_eq!(err.code(), "issuer_unavailable");
    let text = err.to_string();
    assert!(text.contains(issuer), "the issuer is named: {text}");
    assert!(
        text.contains("its JWKS answered 503 Service Unavailable") && text.contains("retry later"),
        "{text}"
    );
    assert!(
        !text.contains("127.0.0.1") && !text.contains("/jwks"),
        "{text}"
    );
}

#[tokio::test]
async fn a_discovered_jwks_uri_at_an_internal_address_of_another_host_is_not_fetched() {
    let key = TestKey::rsa1();
    let idp = Idp::start(&[&key]).await;
    let port = idp.issuer().rsplit(':').next().unwrap().to_owned();
    // The issuer is 127.0.0.1: its discovery document points elsewhere on the host's
    // loopback network (another service of the host, to a hostile IdP).
    *idp.state.jwks_uri.lock().unwrap() = Some(format!("http://127.0.0.2:{port}/jwks"));
    let (id, _dir) = identifier(&config(&[&idp.issuer()])).await;
    let err = refused(&id, &key.sign(&claims(&idp.issuer()))).await;
    assert_eq!(err.code(), "issuer_unavailable");
    assert!(
        err.to_string().contains(
            "its discovery document names a JWKS at an address Warden does not fetch keys from"
        ),
        "{err}"
    );
    assert!(!err.to_string().contains("127.0.0.2"), "{err}");
}

#[tokio::test]
async fn a_refetch_wait_of_zero_or_past_30s_is_refused() {
    for wait in [Duration::ZERO, Duration::from_secs(31)] {
        let cfg = IdentityConfig {
            jwks_refetch_wait: wait,
            ..config(&[])
        };
        let dir = tempfile::tempdir().unwrap();
        let err = Identifier::new(&cfg, dir.path()).await.err().unwrap();
        assert!(
            err.to_string().contains("identity.jwks_refetch_wait"),
            "{err}"
        );
    }
}

#[test]
fn identifier_and_its_futures_can_cross_threads() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: &T) {}
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let id = runtime
        .block_on(Identifier::new(&config(&[]), dir.path()))
        .unwrap();
    send_sync(&id);
    let headers = HeaderMap::new();
    send(&id.identify(&headers, None, None));
    send(&id.identify_token("t", None));
}
