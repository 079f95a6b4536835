//! Passkeys as the approval console will use them (`warden::approval::passkey`), proved with a
//! real browser: headless Chromium (Debian `chromium`, driven by playwright-core through
//! `tests/browser/drive.mjs`) with its virtual WebAuthn authenticator registers passkeys and
//! signs assertions on a small page served here on `http://localhost` (a secure context and a
//! valid relying party id, as `127.0.0.1` is not), whose JSON endpoints call the passkey module
//! and keep the stored passkeys as the state store will.
//!
//! It lives with the gateway's tests, not in `tests/tests/`, because it calls the library
//! directly: a dev-dependency of `warden-e2e` on `warden` would link the whole gateway into
//! every end-to-end test binary (about 270 MB each). Run it with
//! `NEXTEST_ARGS='-E binary(/^passkeys$/)' tests/run`, which installs Chromium and
//! playwright-core.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use warden::approval::passkey::{
    ActionBinding, PasskeyError, PasskeyUser, Passkeys, StoredPasskey,
};
use warden_e2e::browser::Browser;

/// The console stand-in: the relying party and each user's stored passkeys.
struct Console {
    passkeys: Passkeys,
    stored: Mutex<HashMap<String, Vec<StoredPasskey>>>,
}

impl Console {
    fn stored(&self, user: &str) -> Vec<StoredPasskey> {
        self.stored
            .lock()
            .unwrap()
            .get(user)
            .cloned()
            .unwrap_or_default()
    }
}

const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>passkeys</title></head>
<body><h1>Warden passkeys test page</h1>
<script>
async function post(path, body) {
  const r = await fetch(path, { method: 'POST', headers: { 'content-type': 'application/json' },
                                body: JSON.stringify(body) });
  return { status: r.status, ...(await r.json()) };
}
// Registers a new passkey for `user` on this browser's authenticator.
window.register = async (user) => {
  const s = await post('/register/start', { user });
  if (s.status !== 200) return s;
  const options = PublicKeyCredential.parseCreationOptionsFromJSON(s.options.publicKey);
  const credential = await navigator.credentials.create({ publicKey: options });
  return post('/register/finish', { user, ceremony: s.ceremony, credential: credential.toJSON() });
};
// Starts confirming `approval` (action `digest`) as `user`: {ceremony, options}.
window.start = (user, approval, digest) => post('/auth/start', { user, approval, digest });
// Signs the options' challenge with this browser's authenticator; `allow` (credential ids)
// replaces the credentials the server allowed, as a malicious page could.
window.sign = async (options, allow) => {
  const o = { ...options.publicKey };
  if (allow) o.allowCredentials = allow.map((id) => ({ type: 'public-key', id }));
  const credential = await navigator.credentials.get({
    publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(o),
  });
  return credential.toJSON();
};
window.finish = (user, ceremony, approval, digest, credential, intent) =>
  post('/auth/finish', { user, ceremony, approval, digest, credential, intent });
// The whole confirmation, as the console does it.
window.approve = async (user, approval, digest) => {
  const s = await start(user, approval, digest);
  if (s.status !== 200) return s;
  return finish(user, s.ceremony, approval, digest, await sign(s.options));
};
</script></body></html>"#;

fn reply(status: u16, body: Value) -> http::Response<Full<Bytes>> {
    http::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn refused(e: &PasskeyError) -> http::Response<Full<Bytes>> {
    reply(
        403,
        json!({"error": e.to_string(), "detail": format!("{e:?}")}),
    )
}

fn user(name: &str) -> PasskeyUser {
    PasskeyUser {
        id: format!("sub-{name}"),
        name: format!("{name}@example.com"),
        display_name: name.to_owned(),
    }
}

fn binding(body: &Value) -> ActionBinding {
    ActionBinding {
        approval_id: body["approval"].as_str().unwrap_or_default().to_owned(),
        digest: body["digest"].as_str().unwrap_or_default().to_owned(),
        intent: body["intent"].as_str().unwrap_or("approve").to_owned(),
    }
}

async fn handle(
    req: http::Request<hyper::body::Incoming>,
    console: Arc<Console>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    if req.method() == http::Method::GET {
        return Ok(http::Response::builder()
            .header("content-type", "text/html; charset=utf-8")
            .body(Full::new(Bytes::from_static(PAGE.as_bytes())))
            .unwrap());
    }
    let path = req.uri().path().to_owned();
    let body = match req.into_body().collect().await {
        Ok(b) => serde_json::from_slice::<Value>(&b.to_bytes()).unwrap_or(Value::Null),
        Err(_) => Value::Null,
    };
    let name = body["user"].as_str().unwrap_or_default().to_owned();
    let u = user(&name);
    let credential = body["credential"].to_string();
    let ceremony = body["ceremony"].as_str().unwrap_or_default();
    let p = &console.passkeys;
    Ok(match path.as_str() {
        "/register/start" => match p.start_registration(&u, &console.stored(&u.id)) {
            Ok(s) => reply(200, json!({"ceremony": s.ceremony, "options": s.options})),
            Err(e) => refused(&e),
        },
        "/register/finish" => {
            match p.finish_registration(ceremony, &u.id, &console.stored(&u.id), &credential) {
                Ok(stored) => {
                    let answer =
                        json!({"credential_id": stored.credential_id, "counter": stored.counter});
                    console
                        .stored
                        .lock()
                        .unwrap()
                        .entry(u.id.clone())
                        .or_default()
                        .push(stored);
                    reply(200, answer)
                }
                Err(e) => refused(&e),
            }
        }
        "/auth/start" => {
            match p.start_authentication(&u.id, &console.stored(&u.id), &binding(&body)) {
                Ok(s) => reply(200, json!({"ceremony": s.ceremony, "options": s.options})),
                Err(e) => refused(&e),
            }
        }
        "/auth/finish" => match p.finish_authentication(
            ceremony,
            &u.id,
            &binding(&body),
            &console.stored(&u.id),
            &credential,
        ) {
            Ok(done) => {
                let answer = json!({
                    "approved": body["approval"],
                    "credential_id": done.passkey.credential_id,
                    "counter": done.passkey.counter,
                    "user_verified": done.user_verified,
                });
                let mut stored = console.stored.lock().unwrap();
                for p in stored.entry(u.id.clone()).or_default() {
                    if p.credential_id == done.passkey.credential_id {
                        *p = done.passkey.clone();
                    }
                }
                reply(200, answer)
            }
            Err(e) => refused(&e),
        },
        _ => reply(404, json!({"error": "no such endpoint"})),
    })
}

/// Starts the console stand-in on `http://localhost:<port>`.
async fn start_console() -> (String, Arc<Console>, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://localhost:{}", listener.local_addr().unwrap().port());
    let console = Arc::new(Console {
        passkeys: Passkeys::new(&url).unwrap(),
        stored: Mutex::new(HashMap::new()),
    });
    let task = tokio::spawn(warden_e2e::serve::accept_loop(
        listener,
        Arc::clone(&console),
        handle,
    ));
    (url, console, task)
}

fn digest_of(action: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(action.as_bytes())))
}

/// Opens the page in a new Chromium with its own virtual authenticator.
async fn approver(name: &str, url: &str) -> Browser {
    let mut browser = Browser::launch(name).await.unwrap();
    browser.add_authenticator().await.unwrap();
    assert_eq!(browser.goto(&format!("{url}/")).await.unwrap(), Some(200));
    browser
}

fn js(value: &str) -> String {
    serde_json::to_string(value).unwrap()
}

#[tokio::test]
async fn a_passkey_assertion_approves_only_the_action_and_user_it_was_made_for() {
    let (url, console, _server) = start_console().await;
    let d = digest_of(r#"{"action":"mcp:call_tool","resource":"Tool::\"deploy\""}"#);
    let d_other = digest_of(r#"{"action":"mcp:call_tool","resource":"Tool::\"drop_db\""}"#);

    // Alice registers a passkey on her browser's authenticator; user verification required.
    let mut alice = approver("alice", &url).await;
    let registered = alice.eval("register('alice')").await.unwrap();
    assert_eq!(registered["status"], 200, "{registered}");
    let alice_cred = registered["credential_id"].as_str().unwrap().to_owned();
    let on_authenticator = alice.credentials(false).await.unwrap();
    assert_eq!(on_authenticator.len(), 1);
    assert_eq!(on_authenticator[0]["credential_id"], alice_cred.as_str());
    assert_eq!(on_authenticator[0]["rp_id"], "localhost");
    let stored = console.stored("sub-alice");
    assert_eq!(stored.len(), 1);
    let mut counter = stored[0].counter;
    assert_eq!(
        u64::from(counter),
        on_authenticator[0]["sign_count"].as_u64().unwrap()
    );

    // A second registration on the same authenticator is refused by the authenticator
    // itself: the server excluded the passkey it already has.
    let again = alice
        .command(json!({"cmd": "eval", "expression": "register('alice')", "timeout_ms": 8000}))
        .await;
    let refusal = again
        .expect_err("a second passkey on one authenticator")
        .to_string();
    assert!(refusal.contains("InvalidStateError"), "{refusal}");
    assert_eq!(console.stored("sub-alice").len(), 1);

    // Approval A with digest D: succeeds, and the signature counter moves up.
    let ok = alice
        .eval(&format!("approve('alice', 'apr_A', {})", js(&d)))
        .await
        .unwrap();
    assert_eq!(ok["status"], 200, "{ok}");
    assert_eq!(ok["approved"], "apr_A");
    assert_eq!(ok["user_verified"], true);
    let now = console.stored("sub-alice")[0].counter;
    assert!(now > counter, "counter {counter} -> {now}");
    assert_eq!(ok["counter"], now);
    counter = now;

    // An assertion made for approval A (a ceremony started for A, signed, not yet sent) …
    let start_a = alice
        .eval(&format!("start('alice', 'apr_A', {})", js(&d)))
        .await
        .unwrap();
    let assertion_a = alice
        .eval(&format!("sign({})", start_a["options"]))
        .await
        .unwrap();
    let ceremony_a = start_a["ceremony"].as_str().unwrap().to_owned();
    // … is refused by a ceremony started for approval B (its challenge is not B's) …
    let start_b = alice
        .eval(&format!("start('alice', 'apr_B', {})", js(&d)))
        .await
        .unwrap();
    let replayed = alice
        .eval(&format!(
            "finish('alice', {}, 'apr_B', {}, {assertion_a})",
            start_b["ceremony"],
            js(&d)
        ))
        .await
        .unwrap();
    assert_eq!(replayed["status"], 403, "{replayed}");
    assert!(
        replayed["detail"]
            .as_str()
            .unwrap()
            .contains("MismatchedChallenge"),
        "{replayed}"
    );
    // … cannot finish A's ceremony for approval B, nor for A with another digest, nor to
    // deny what it was started to approve …
    for (approval, digest, intent, what) in [
        ("apr_B", &d, "approve", "approve of approval apr_B"),
        ("apr_A", &d_other, "approve", "approve of approval apr_A"),
        ("apr_A", &d, "deny", "deny of approval apr_A"),
    ] {
        let moved = alice
            .eval(&format!(
                "finish('alice', {}, {}, {}, {assertion_a}, {})",
                js(&ceremony_a),
                js(approval),
                js(digest),
                js(intent)
            ))
            .await
            .unwrap();
        assert_eq!(moved["status"], 403, "{moved}");
        assert!(
            moved["error"].as_str().unwrap().contains(&format!(
                "confirms approve of approval apr_A with digest {d}, not {what}"
            )),
            "{moved}"
        );
    }
    // … nor as another user …
    let as_bob = alice
        .eval(&format!(
            "finish('bob', {}, 'apr_A', {}, {assertion_a})",
            js(&ceremony_a),
            js(&d)
        ))
        .await
        .unwrap();
    assert_eq!(as_bob["status"], 403, "{as_bob}");
    assert!(
        as_bob["detail"].as_str().unwrap().contains("OtherUser"),
        "{as_bob}"
    );
    // … and is good for A alone, once.
    let good = alice
        .eval(&format!(
            "finish('alice', {}, 'apr_A', {}, {assertion_a})",
            js(&ceremony_a),
            js(&d)
        ))
        .await
        .unwrap();
    assert_eq!(good["status"], 200, "{good}");
    assert!(console.stored("sub-alice")[0].counter > counter);
    counter = console.stored("sub-alice")[0].counter;
    let twice = alice
        .eval(&format!(
            "finish('alice', {}, 'apr_A', {}, {assertion_a})",
            js(&ceremony_a),
            js(&d)
        ))
        .await
        .unwrap();
    assert_eq!(twice["status"], 403, "{twice}");
    assert!(
        twice["detail"]
            .as_str()
            .unwrap()
            .contains("UnknownCeremony"),
        "{twice}"
    );
    assert_eq!(console.stored("sub-alice")[0].counter, counter);

    // Two ceremonies signed in turn: the later assertion lands first; the earlier one, its
    // counter now behind the stored one, is refused although its own ceremony's challenge
    // and counter were good when it started.
    let mut signed = Vec::new();
    for approval in ["apr_E1", "apr_E2"] {
        let started = alice
            .eval(&format!("start('alice', {}, {})", js(approval), js(&d)))
            .await
            .unwrap();
        let assertion = alice
            .eval(&format!("sign({})", started["options"]))
            .await
            .unwrap();
        signed.push((approval, started["ceremony"].clone(), assertion));
    }
    let mut outcomes = Vec::new();
    for (approval, ceremony, assertion) in signed.iter().rev() {
        outcomes.push(
            alice
                .eval(&format!(
                    "finish('alice', {ceremony}, {}, {}, {assertion})",
                    js(approval),
                    js(&d)
                ))
                .await
                .unwrap(),
        );
    }
    assert_eq!(outcomes[0]["status"], 200, "{}", outcomes[0]);
    assert_eq!(outcomes[1]["status"], 403, "{}", outcomes[1]);
    assert!(
        outcomes[1]["error"]
            .as_str()
            .unwrap()
            .contains("signature counter went from"),
        "{}",
        outcomes[1]
    );
    counter = console.stored("sub-alice")[0].counter;
    assert_eq!(outcomes[0]["counter"], counter);

    // Bob, on his own browser and authenticator, registers his own passkey; an assertion his
    // authenticator makes over Alice's challenge (his page swapping in his credential) is
    // refused for Alice.
    let mut bob = approver("bob", &url).await;
    let bob_reg = bob.eval("register('bob')").await.unwrap();
    assert_eq!(bob_reg["status"], 200, "{bob_reg}");
    let bob_cred = bob_reg["credential_id"].as_str().unwrap().to_owned();
    assert_ne!(bob_cred, alice_cred);
    let start_alice = bob
        .eval(&format!("start('alice', 'apr_C', {})", js(&d)))
        .await
        .unwrap();
    let bobs_assertion = bob
        .eval(&format!(
            "sign({}, [{}])",
            start_alice["options"],
            js(&bob_cred)
        ))
        .await
        .unwrap();
    assert_eq!(bobs_assertion["id"], bob_cred.as_str());
    let crossed = bob
        .eval(&format!(
            "finish('alice', {}, 'apr_C', {}, {bobs_assertion})",
            start_alice["ceremony"],
            js(&d)
        ))
        .await
        .unwrap();
    assert_eq!(crossed["status"], 403, "{crossed}");
    assert!(
        crossed["detail"]
            .as_str()
            .unwrap()
            .contains("CredentialNotFound"),
        "{crossed}"
    );
    assert_eq!(console.stored("sub-alice")[0].counter, counter);
    // Bob's own passkey approves as Bob.
    let bob_ok = bob
        .eval(&format!("approve('bob', 'apr_C', {})", js(&d)))
        .await
        .unwrap();
    assert_eq!(bob_ok["status"], 200, "{bob_ok}");

    // A clone of Alice's authenticator (her key copied, its counter behind) is refused: the
    // signature counter did not move past the one stored.
    let mut exported = alice.credentials(true).await.unwrap().remove(0);
    exported["sign_count"] = json!(0);
    let mut clone = approver("clone", &url).await;
    clone.add_credential(&exported).await.unwrap();
    let cloned = clone
        .eval(&format!("approve('alice', 'apr_D', {})", js(&d)))
        .await
        .unwrap();
    assert_eq!(cloned["status"], 403, "{cloned}");
    assert!(
        cloned["detail"]
            .as_str()
            .unwrap()
            .contains("CredentialPossibleCompromise"),
        "{cloned}"
    );
    assert_eq!(console.stored("sub-alice")[0].counter, counter);
    // The real authenticator still approves, its counter still moving up.
    let still = alice
        .eval(&format!("approve('alice', 'apr_D', {})", js(&d)))
        .await
        .unwrap();
    assert_eq!(still["status"], 200, "{still}");
    assert!(console.stored("sub-alice")[0].counter > counter);

    for b in [alice, bob, clone] {
        b.close().await.unwrap();
    }
}
