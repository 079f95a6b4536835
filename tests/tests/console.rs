//! The approval console end to end: a real headless Chromium (playwright-core) signs in at the
//! real IdP (node `oidc-provider`, authorization code flow with PKCE, a test user's login and
//! password), reads the held action, and approves it with a TOTP code from the real `oathtool`
//! or with a passkey of Chromium's virtual authenticator; the request Warden holds then
//! completes. The refusals: wrong, expired and replayed codes, a code of another approver's
//! app, an approver outside the policy's group, approving one's own agent, a POST without the
//! CSRF token, an approval used once and not for other arguments, an expired approval, and,
//! asked of the IdP again at each vote, an approver removed from the group or disabled there
//! after signing in, and an IdP whose userinfo cannot answer (nothing decided); and a session
//! that outlives its short access token by refreshing it, fails closed while the IdP's token
//! endpoint is down, and ends once the IdP refuses to renew it (the account disabled); an
//! access token the IdP revoked before its expiry, renewed once; and a session that follows
//! its ID token, as long as refreshes bring new ones. Two approvers' sessions voting on one
//! approval at once: one decides it, the other is told it was decided already.
//!
//! Screenshots of the pages land in `target/console-screenshots/` (docs/approvals.md shows
//! them).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use warden_e2e::browser::Browser;
use warden_e2e::fake_llm::FakeLlm;
use warden_e2e::idp::Idp;
use warden_e2e::operator::oathtool;
use warden_e2e::stack::openai_chat;
use warden_e2e::warden::{ConsoleIdp, Warden, WardenBuilder};

/// Chat on gpt-4o waits for a member of `sre`; gpt-4o-mini too, and its approval lasts a
/// minute.
const POLICIES: &str = "@id(\"gpt4o-needs-sre\")\n@reason(\"gpt-4o costs money\")\n\
    @approval(\"required\")\n@approvers(\"Group::\\\"sre\\\"\")\n\
    permit (principal, action == Action::\"llm:chat\", resource == Model::\"openai/gpt-4o\");\n\
    @id(\"mini-needs-sre-soon\")\n@reason(\"a quick check\")\n@approval(\"required\")\n\
    @approvers(\"Group::\\\"sre\\\"\")\n@approval_ttl(\"1m\")\n\
    permit (principal, action == Action::\"llm:chat\", resource == Model::\"openai/gpt-4o-mini\");\n";

struct Stack {
    _upstream: FakeLlm,
    _idp: Idp,
    warden: Warden,
    console: String,
}

async fn start() -> Stack {
    start_with(&[]).await
}

/// The stack, the IdP started with `idp_env` besides the console's redirect.
async fn start_with(idp_env: &[(&str, &str)]) -> Stack {
    start_configured(idp_env, &[]).await
}

/// The stack, the IdP started with `idp_env`, Warden's configuration with `settings` (JSON
/// pointer, value) set after the console's.
async fn start_configured(idp_env: &[(&str, &str)], settings: &[(&str, Value)]) -> Stack {
    let upstream = FakeLlm::start().await.unwrap();
    let signing_in = ConsoleIdp::start_with(idp_env).await.unwrap();
    let mut builder = WardenBuilder::new(&upstream)
        .policy("needs-sre.cedar", POLICIES)
        .set("/approvals", json!({"mode": "wait", "wait_timeout": "2m"}))
        .console(&signing_in);
    for (pointer, value) in settings {
        builder = builder.set(pointer, value.clone());
    }
    let warden = builder.start().await.unwrap();
    Stack {
        _upstream: upstream,
        _idp: signing_in.idp,
        warden,
        console: signing_in.url,
    }
}

fn screenshots() -> PathBuf {
    let dir = warden_e2e::paths::repo_root().join("target/console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A chat request the gateway holds, sent in the background.
fn held(w: &Warden, token: &str, model: &str, content: &str) -> Held {
    let mut body = openai_chat(model, false);
    body["messages"][0]["content"] = json!(content);
    let request = w
        .http()
        .post(w.url("/openai/chat/completions"))
        .bearer_auth(token)
        .json(&body)
        .timeout(Duration::from_secs(150));
    tokio::spawn(request.send())
}

/// The id of the pending approval of `model` not among `known`, once the held request made it.
async fn new_approval(w: &Warden, resource: &str, known: &[String]) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = w.cli(&["approvals", "list"]).await.unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if let Some(id) = text
            .lines()
            .filter(|l| l.contains(resource))
            .filter_map(|l| l.split_whitespace().next())
            .find(|id| id.starts_with("apr_") && !known.iter().any(|k| k == id))
        {
            return id.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no new approval for {resource}: {text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Signs `login` in at the IdP through the console, ending on `path`.
async fn sign_in(b: &mut Browser, console: &str, login: &str, path: &str) {
    b.goto(&format!("{console}{path}")).await.unwrap();
    b.wait_for("#login").await.unwrap();
    b.fill("#login", login).await.unwrap();
    b.fill("#password", &format!("{login}-password"))
        .await
        .unwrap();
    b.click("#sign-in").await.unwrap();
    b.wait_for("header.top .who").await.unwrap();
    let url = b.url().await.unwrap();
    assert!(url.starts_with(&format!("{console}{path}")), "{url}");
    let who = b.text("header.top .who").await.unwrap();
    assert!(!who.is_empty());
}

/// Enrols an authenticator app on the factors page: its secret (base32) and the code that
/// confirmed it.
async fn enrol_totp(b: &mut Browser, console: &str, shot: Option<&str>) -> (String, String) {
    b.goto(&format!("{console}/factors")).await.unwrap();
    b.click("form[action='/factors/totp'] button")
        .await
        .unwrap();
    b.wait_for(".qr svg").await.unwrap();
    if let Some(name) = shot {
        b.screenshot(&screenshots().join(name)).await.unwrap();
    }
    let secret: String = b
        .text("code.secret")
        .await
        .unwrap()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let code = oathtool(&secret, 0);
    b.fill("#confirm-code", &code).await.unwrap();
    b.click("form[action='/factors/totp/confirm'] button")
        .await
        .unwrap();
    b.wait_for(".flash.ok").await.unwrap();
    let said = b.text(".flash.ok").await.unwrap();
    assert!(said.contains("enrolled"), "{said}");
    (secret, code)
}

/// Submits the TOTP form of approval `id` with `code` and `decision`: the flash shown.
async fn decide(b: &mut Browser, console: &str, id: &str, code: &str, decision: &str) -> String {
    b.goto(&format!("{console}/approvals/{id}")).await.unwrap();
    b.fill("#code", code).await.unwrap();
    b.click(&format!("form.totp button[value='{decision}']"))
        .await
        .unwrap();
    b.wait_for(".flash").await.unwrap();
    b.text(".flash").await.unwrap()
}

/// A POST from the page itself (same origin, with its cookies): `{status, body}`.
async fn page_post(b: &mut Browser, path: &str, form: &[(&str, &str)], csrf: bool) -> Value {
    let fields: serde_json::Map<String, Value> = form
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    let expression = format!(
        "(async () => {{ const f = new URLSearchParams({fields}); \
         if ({csrf}) f.set('csrf', document.querySelector('meta[name=csrf-token]').content); \
         const r = await fetch({path}, {{ method: 'POST', body: f }}); \
         return {{ status: r.status, body: await r.text() }}; }})()",
        fields = Value::Object(fields),
        path = serde_json::to_string(path).unwrap(),
    );
    b.eval(&expression).await.unwrap()
}

#[tokio::test]
async fn an_sre_signs_in_with_sso_and_approves_with_totp_and_the_held_request_completes() {
    let s = start().await;
    let (w, console) = (&s.warden, s.console.as_str());
    // dave (sre) owns the agent, by his verified e-mail address: he may not approve its
    // actions.
    let token = w
        .token_with("billing-bot", "1h", &[("owner", "dave@example.com")])
        .await
        .unwrap();
    // An approval that expires within a minute, asked first.
    let soon = held(w, &token, "gpt-4o-mini", "check the ledger");
    let soon_id = new_approval(w, "gpt-4o-mini", &[]).await;
    let soon_asked = Instant::now();
    let request = held(w, &token, "gpt-4o", "summarise the invoices");
    let id = new_approval(w, "Model::\"openai/gpt-4o\"", &[]).await;

    // Without a session, the console sends the browser to the SSO provider.
    let mut alice = Browser::launch("alice").await.unwrap();
    alice.goto(&format!("{console}/approvals")).await.unwrap();
    let at = alice.url().await.unwrap();
    assert!(at.starts_with(s._idp.issuer()), "{at}");
    // A wrong password stays at the provider.
    alice.fill("#login", "alice").await.unwrap();
    alice.fill("#password", "guess").await.unwrap();
    alice.click("#sign-in").await.unwrap();
    alice.wait_for("#error").await.unwrap();
    sign_in(&mut alice, console, "alice", "/approvals").await;
    assert_eq!(
        alice.text("header.top .who").await.unwrap(),
        "Alice Approver"
    );
    let listed = alice.text("main").await.unwrap();
    assert!(
        listed.contains("billing-bot") && listed.contains("gpt-4o costs money"),
        "{listed}"
    );
    alice
        .screenshot(&screenshots().join("console-pending.png"))
        .await
        .unwrap();
    let security = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{console}/approvals"))
        .send()
        .await
        .unwrap();
    assert_eq!(security.status(), 303, "to the sign-in");
    let csp = security.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );

    // No factor yet: the page says how to get one.
    alice
        .goto(&format!("{console}/approvals/{id}"))
        .await
        .unwrap();
    let page = alice.text("main").await.unwrap();
    assert!(page.contains("you have none yet"), "{page}");
    let (secret, first_code) =
        enrol_totp(&mut alice, console, Some("console-enrol-totp.png")).await;
    // With a factor, a session alone changes no factor: she must confirm with it first.
    alice.goto(&format!("{console}/factors")).await.unwrap();
    let page = alice.text("main").await.unwrap();
    assert!(page.contains("Confirm it is you"), "{page}");
    let unproved = page_post(
        &mut alice,
        "/factors/passkeys/remove",
        &[("credential", "AAAAAAAAAAAAAAAAAAAAAA")],
        true,
    )
    .await;
    assert_eq!(unproved["status"], 403, "{unproved}");
    assert!(
        unproved["body"]
            .as_str()
            .unwrap()
            .contains("it is you first"),
        "{unproved}"
    );

    // The approval's page shows the whole context.
    alice
        .goto(&format!("{console}/approvals/{id}"))
        .await
        .unwrap();
    let page = alice.text("main").await.unwrap();
    for expected in [
        "billing-bot",
        "llm:chat",
        "Model::\"openai/gpt-4o\"",
        "gpt4o-needs-sre",
        "gpt-4o costs money",
        "owned by dave",
        "sha256:",
        &id,
    ] {
        assert!(page.contains(expected), "{expected:?} in {page}");
    }
    alice
        .screenshot_full(&screenshots().join("console-approval.png"))
        .await
        .unwrap();
    // On a phone: nothing wider than the screen, and the decision within reach.
    alice.viewport(390, 844).await.unwrap();
    let overflow = alice
        .eval("document.documentElement.scrollWidth - window.innerWidth")
        .await
        .unwrap();
    assert!(
        overflow.as_i64().unwrap() <= 0,
        "no sideways scrolling: {overflow}"
    );
    alice
        .eval("document.querySelector('section.decide').scrollIntoView()")
        .await
        .unwrap();
    alice
        .screenshot(&screenshots().join("console-phone.png"))
        .await
        .unwrap();
    alice.viewport(1280, 800).await.unwrap();

    // Refused, each before anything changes: a wrong code, a code of two minutes ago, the code
    // that confirmed the enrolment (used), a POST without the CSRF token.
    let said = decide(&mut alice, console, &id, "000000", "approve").await;
    assert!(said.contains("code was refused"), "{said}");
    let said = decide(&mut alice, console, &id, &oathtool(&secret, -4), "approve").await;
    assert!(said.contains("code was refused"), "{said}");
    let said = decide(&mut alice, console, &id, &first_code, "approve").await;
    assert!(said.contains("already used"), "{said}");
    let forged = page_post(
        &mut alice,
        &format!("/approvals/{id}/decide"),
        &[("decision", "approve"), ("code", &oathtool(&secret, 1))],
        false,
    )
    .await;
    assert_eq!(forged["status"], 403, "{forged}");
    assert!(
        forged["body"].as_str().unwrap().contains("security token"),
        "{forged}"
    );
    alice
        .screenshot_full(&screenshots().join("console-refused.png"))
        .await
        .unwrap();
    assert!(!request.is_finished(), "the request still waits");

    // dave is in sre but owns the agent; carol is not in sre.
    let mut dave = Browser::launch("dave").await.unwrap();
    sign_in(&mut dave, console, "dave", &format!("/approvals/{id}")).await;
    let (dave_secret, _) = enrol_totp(&mut dave, console, None).await;
    dave.goto(&format!("{console}/approvals/{id}"))
        .await
        .unwrap();
    let page = dave.text("main").await.unwrap();
    assert!(page.contains("your own agent's action"), "{page}");
    assert_eq!(
        dave.eval("document.querySelectorAll('button[value=approve]').length")
            .await
            .unwrap(),
        0,
        "no Approve button for the agent's owner"
    );
    let own = page_post(
        &mut dave,
        &format!("/approvals/{id}/decide"),
        &[
            ("decision", "approve"),
            ("code", &oathtool(&dave_secret, 1)),
        ],
        true,
    )
    .await;
    assert_eq!(own["status"], 403, "{own}");
    assert!(own["body"].as_str().unwrap().contains("own agent"), "{own}");
    // A code from dave's app is no factor of alice's.
    let said = decide(
        &mut alice,
        console,
        &id,
        &oathtool(&dave_secret, 1),
        "approve",
    )
    .await;
    assert!(said.contains("code was refused"), "{said}");
    let mut carol = Browser::launch("carol").await.unwrap();
    sign_in(&mut carol, console, "carol", &format!("/approvals/{id}")).await;
    let page = carol.text("main").await.unwrap();
    assert!(
        page.contains("must be approved by a member of Group::\"sre\""),
        "{page}"
    );
    assert!(
        !page.contains("summarise the invoices") && !page.contains("billing-bot"),
        "what waits is shown only to those who may decide it: {page}"
    );
    carol.goto(&format!("{console}/approvals")).await.unwrap();
    let listed = carol.text("main").await.unwrap();
    assert!(
        listed.contains("Nothing waits for your decision") && !listed.contains("billing-bot"),
        "{listed}"
    );
    let outside = page_post(
        &mut carol,
        &format!("/approvals/{id}/decide"),
        &[("decision", "approve"), ("code", "123456")],
        true,
    )
    .await;
    assert_eq!(outside["status"], 403, "{outside}");
    assert!(
        !outside["body"]
            .as_str()
            .unwrap()
            .contains("summarise the invoices"),
        "a refused vote shows no context either: {outside}"
    );
    drop(carol);

    // Alice approves with the next code: the held request completes.
    let said = decide(&mut alice, console, &id, &oathtool(&secret, 1), "approve").await;
    assert!(said.contains("Approved"), "{said}");
    let approved_at = Instant::now();
    alice
        .screenshot(&screenshots().join("console-approved.png"))
        .await
        .unwrap();
    let r = request.await.unwrap().unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-warden-approval-id").is_none());
    let vote = audited(w, "approval_vote").await;
    assert_eq!(vote["detail"]["approval_id"], json!(id));
    assert_eq!(vote["detail"]["approver"], "alice");
    assert_eq!(vote["detail"]["factor"], "totp");
    assert_eq!(vote["detail"]["decision"], "approve");
    assert_eq!(vote["principal"]["id"], "alice");
    assert_eq!(vote["source_ip"], "127.0.0.1");
    let used = audited(w, "approval_used").await;
    assert_eq!(used["detail"]["approvers"][0]["approver"], "alice");
    let records = w.audit_records();
    let refused = refused_codes(&records);
    for code in [
        "wrong_code",
        "replayed_code",
        "csrf",
        "own_agent",
        "not_in_group",
    ] {
        assert!(refused.iter().any(|c| c == code), "{code} in {refused:?}");
    }
    assert!(
        !serde_json::to_string(&records).unwrap().contains(&secret),
        "no factor secret in the audit log"
    );

    // Used once: the same request again, and one with other arguments, each wait anew.
    let again = held(w, &token, "gpt-4o", "summarise the invoices");
    let again_id = new_approval(w, "Model::\"openai/gpt-4o\"", std::slice::from_ref(&id)).await;
    assert_ne!(again_id, id);
    let other = held(w, &token, "gpt-4o", "delete the invoices");
    let other_id = new_approval(
        w,
        "Model::\"openai/gpt-4o\"",
        &[id.clone(), again_id.clone()],
    )
    .await;
    assert_ne!(other_id, again_id);
    // The agent's owner may not approve its actions, but may deny them.
    let said = decide(
        &mut dave,
        console,
        &again_id,
        &oathtool(&dave_secret, 1),
        "deny",
    )
    .await;
    assert!(said.contains("Denied"), "{said}");
    let r = again.await.unwrap().unwrap();
    let body: Value = r.json().await.unwrap();
    let said = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(
        said.contains(&format!("approval {again_id} was denied by dave")),
        "a denied request is refused: {said}"
    );
    other.abort();

    // The minute-long approval expires into a refusal, and the console no longer takes votes.
    let left = Duration::from_secs(62).saturating_sub(soon_asked.elapsed());
    tokio::time::sleep(left).await;
    alice
        .goto(&format!("{console}/approvals/{soon_id}"))
        .await
        .unwrap();
    let page = alice.text("main").await.unwrap();
    assert!(page.contains("expired"), "{page}");
    let late = page_post(
        &mut alice,
        &format!("/approvals/{soon_id}/decide"),
        &[("decision", "approve"), ("code", &oathtool(&secret, 3))],
        true,
    )
    .await;
    assert_eq!(late["status"], 409, "{late}");
    let r = soon.await.unwrap().unwrap();
    let body: Value = r.json().await.unwrap();
    let said = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(
        said.contains(&format!("approval {soon_id} expired")),
        "an expired approval is refused: {said}"
    );

    // A code from her app proves it is her; then factors may change (for a while), and each
    // change is recorded with that proof. A code counts once: wait for a step after the last.
    tokio::time::sleep(Duration::from_secs(31).saturating_sub(approved_at.elapsed())).await;
    alice.goto(&format!("{console}/factors")).await.unwrap();
    alice
        .fill("#verify-code", &oathtool(&secret, 1))
        .await
        .unwrap();
    alice
        .click("form[action='/factors/verify'] button")
        .await
        .unwrap();
    alice.wait_for(".flash.ok").await.unwrap();
    let said = alice.text(".flash.ok").await.unwrap();
    assert!(said.contains("Confirmed"), "{said}");
    let proved = page_post(
        &mut alice,
        "/factors/passkeys/remove",
        &[("credential", "AAAAAAAAAAAAAAAAAAAAAA")],
        true,
    )
    .await;
    assert_eq!(proved["status"], 400, "past the proof: {proved}");
    assert!(
        proved["body"]
            .as_str()
            .unwrap()
            .contains("no passkey with that id"),
        "{proved}"
    );
    let verified = audited(w, "factors_verified").await;
    assert_eq!(verified["detail"]["factor"], "totp");
    let enrolled = w
        .audit_records()
        .into_iter()
        .find(|r| r["detail"]["event"] == "factor_enrolled" && r["principal"]["id"] == "alice")
        .unwrap();
    assert_eq!(enrolled["detail"]["proof"], "sign_in", "her first factor");
}

#[tokio::test]
async fn an_approver_registers_a_passkey_and_approves_with_it() {
    let s = start().await;
    let (w, console) = (&s.warden, s.console.as_str());
    let token = w.token("deploy-bot").await.unwrap();
    let request = held(w, &token, "gpt-4o", "roll out v2");
    let id = new_approval(w, "Model::\"openai/gpt-4o\"", &[]).await;

    let mut bob = Browser::launch("bob").await.unwrap();
    bob.add_authenticator().await.unwrap();
    sign_in(&mut bob, console, "bob", "/factors").await;
    bob.click("button[data-passkey-register]").await.unwrap();
    bob.wait_for(".flash.ok").await.unwrap();
    let page = bob.text("main").await.unwrap();
    assert!(page.contains("passkey is added"), "{page}");
    let on_authenticator = bob.credentials(false).await.unwrap();
    assert_eq!(on_authenticator.len(), 1);
    assert_eq!(on_authenticator[0]["rp_id"], "localhost");
    // With a passkey, another factor is added only after confirming with it.
    let unproved = page_post(&mut bob, "/factors/totp", &[], true).await;
    assert_eq!(unproved["status"], 403, "{unproved}");
    bob.goto(&format!("{console}/factors")).await.unwrap();
    bob.click("button[data-passkey-verify]").await.unwrap();
    bob.wait_for(".flash.ok").await.unwrap();
    let said = bob.text(".flash.ok").await.unwrap();
    assert!(said.contains("Confirmed"), "{said}");
    bob.screenshot(&screenshots().join("console-factors.png"))
        .await
        .unwrap();
    let (_, _) = enrol_totp(&mut bob, console, None).await;
    let totp_enrolled = w
        .wait_for_audit(Duration::from_secs(5), |r| {
            r["detail"]["event"] == "factor_enrolled" && r["detail"]["factor"] == "totp"
        })
        .await
        .unwrap();
    assert_eq!(totp_enrolled["detail"]["proof"], "webauthn");

    // A passkey start without the CSRF header is refused.
    bob.goto(&format!("{console}/approvals/{id}"))
        .await
        .unwrap();
    let forged = bob
        .eval(&format!(
            "fetch('/approvals/{id}/passkey/start', {{ method: 'POST', \
             headers: {{ 'content-type': 'application/json' }}, \
             body: JSON.stringify({{ decision: 'approve' }}) }}).then(r => r.status)"
        ))
        .await
        .unwrap();
    assert_eq!(forged, 403);

    // The passkey approves this action; the held request completes.
    bob.click("button[data-passkey-decision='approve']")
        .await
        .unwrap();
    bob.wait_for(".flash.ok").await.unwrap();
    let said = bob.text(".flash.ok").await.unwrap();
    assert!(said.contains("Approved"), "{said}");
    let r = request.await.unwrap().unwrap();
    assert_eq!(r.status(), 200);
    let vote = audited(w, "approval_vote").await;
    assert_eq!(vote["detail"]["approver"], "bob");
    assert_eq!(vote["detail"]["factor"], "webauthn");
    let enrolled = audited(w, "factor_enrolled").await;
    assert_eq!(enrolled["detail"]["factor"], "webauthn");

    // Signing out ends the session.
    bob.eval("document.querySelector('form.signout').submit()")
        .await
        .unwrap();
    bob.wait_for("a.button[href='/login']").await.unwrap();
    let after = bob
        .eval("fetch('/approvals', { redirect: 'manual' }).then(r => r.type)")
        .await
        .unwrap();
    assert_eq!(
        after, "opaqueredirect",
        "signed out, the console sends to the sign-in"
    );

    // Alice's authenticator also holds a copy of bob's passkey. Her own passkey is the only
    // one the console asks for; an assertion made with bob's is refused.
    let next = held(w, &token, "gpt-4o", "roll out v3");
    let next_id = new_approval(w, "Model::\"openai/gpt-4o\"", std::slice::from_ref(&id)).await;
    let bobs = bob.credentials(true).await.unwrap();
    let mut alice = Browser::launch("alice").await.unwrap();
    alice.add_authenticator().await.unwrap();
    alice.add_credential(&bobs[0]).await.unwrap();
    sign_in(&mut alice, console, "alice", "/factors").await;
    alice.click("button[data-passkey-register]").await.unwrap();
    alice.wait_for(".flash.ok").await.unwrap();
    alice
        .goto(&format!("{console}/approvals/{next_id}"))
        .await
        .unwrap();
    let bob_id = bobs[0]["credential_id"].as_str().unwrap();
    let with_bobs = alice
        .eval(&format!(
            "(async () => {{ \
               const headers = {{ 'content-type': 'application/json', 'x-csrf-token': \
                 document.querySelector('meta[name=csrf-token]').content }}; \
               const s = await (await fetch('/approvals/{next_id}/passkey/start', {{ method: 'POST', \
                 headers, body: JSON.stringify({{ decision: 'approve' }}) }})).json(); \
               const o = {{ ...s.options.publicKey, allowCredentials: \
                 [{{ type: 'public-key', id: '{bob_id}' }}] }}; \
               const c = await navigator.credentials.get({{ \
                 publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(o) }}); \
               const r = await fetch('/approvals/{next_id}/passkey/finish', {{ method: 'POST', \
                 headers, body: JSON.stringify({{ ceremony: s.ceremony, decision: 'approve', \
                 credential: c.toJSON() }}) }}); \
               return {{ status: r.status, body: await r.json() }}; }})()"
        ))
        .await
        .unwrap();
    assert_eq!(with_bobs["status"], 403, "{with_bobs}");
    assert_eq!(with_bobs["body"]["error"], "passkey_refused", "{with_bobs}");
    // With her own passkey, she approves.
    alice
        .goto(&format!("{console}/approvals/{next_id}"))
        .await
        .unwrap();
    alice
        .click("button[data-passkey-decision='approve']")
        .await
        .unwrap();
    alice.wait_for(".flash.ok").await.unwrap();
    let r = next.await.unwrap().unwrap();
    assert_eq!(r.status(), 200);
    let votes: Vec<_> = w
        .audit_records()
        .into_iter()
        .filter(|r| r["detail"]["event"] == "approval_vote")
        .map(|r| {
            r["detail"]["approver"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(votes, ["bob", "alice"]);
}

#[tokio::test]
async fn an_approver_removed_or_disabled_at_the_idp_cannot_vote_and_an_idp_outage_refuses_votes() {
    let s = start().await;
    let (w, idp, console) = (&s.warden, &s._idp, s.console.as_str());
    let (mut alice, secret, id, request) = held_for_alice(w, console).await;
    let decide_path = format!("/approvals/{id}/decide");

    // Removed from sre at the IdP, her session still says sre: the console asks the IdP, and
    // she may neither read what waits nor vote.
    idp.set_groups("alice", &["finance"]).await.unwrap();
    alice
        .goto(&format!("{console}/approvals/{id}"))
        .await
        .unwrap();
    let page = alice.text("main").await.unwrap();
    assert!(
        page.contains("must be approved by a member of Group::\"sre\"")
            && !page.contains("rotate the signing keys"),
        "{page}"
    );
    let not_in_group = ["must be approved by a member of Group::"];
    refused_vote(&mut alice, &decide_path, &secret, 403, &not_in_group).await;

    // Back in sre, but the IdP's userinfo cannot answer: refused, try again; still pending.
    idp.set_groups("alice", &["sre"]).await.unwrap();
    idp.fail_userinfo(true).await.unwrap();
    let try_again = [
        "onfirm your identity with the identity provider (the SSO provider",
        "answered HTTP 503",
        "try again",
    ];
    refused_vote(&mut alice, &decide_path, &secret, 503, &try_again).await;
    idp.fail_userinfo(false).await.unwrap();
    still_pending(w, &id, &request).await;

    // Her account disabled at the IdP: it refuses her token, and refuses to renew it too, so
    // her console session ends and she cannot vote.
    idp.set_disabled("alice", true).await.unwrap();
    refused_vote(&mut alice, &decide_path, &secret, 401, SESSION_ENDED).await;

    // Enabled again and in sre: she signs in again (her sign-in at the IdP holds, so no login
    // page), and her vote counts, with the groups the IdP named at that moment.
    idp.set_disabled("alice", false).await.unwrap();
    alice
        .goto(&format!("{console}/approvals/{id}"))
        .await
        .unwrap();
    alice.wait_for("header.top .who").await.unwrap();
    assert_eq!(sign_ins(w), 2, "signed in again");
    let said = decide(&mut alice, console, &id, &oathtool(&secret, 1), "approve").await;
    assert!(said.contains("Approved"), "{said}");
    let r = request.await.unwrap().unwrap();
    assert_eq!(r.status(), 200);
    let counted = audited(w, "approval_vote").await;
    assert_eq!(counted["detail"]["approver"], "alice");
    assert_eq!(counted["detail"]["approver_groups"], json!(["sre"]));
    assert_eq!(counted["detail"]["groups_confirmed_at_vote"], true);
    let refused = refused_codes(&w.audit_records());
    assert_eq!(
        refused,
        ["not_in_group", "idp_unavailable", "idp_session_ended"],
        "each refusal recorded with its reason"
    );
}

/// How long the console's access tokens at the IdP live in the refresh test.
const SHORT_TOKEN: Duration = Duration::from_secs(15);

#[tokio::test]
async fn a_session_outlives_its_short_access_token_and_ends_when_the_idp_no_longer_renews_it() {
    let ttl = SHORT_TOKEN.as_secs().to_string();
    let s = start_with(&[("IDP_CONSOLE_ACCESS_TOKEN_TTL", &ttl)]).await;
    let (w, idp, console) = (&s.warden, &s._idp, s.console.as_str());
    let (mut alice, secret, id, first) = held_for_alice(w, console).await;
    let signed_in = Instant::now();

    // Past the access token's lifetime, with the IdP's token endpoint down: the console cannot
    // renew it, so nothing is decided, the approval stays pending and no code is used.
    tokio::time::sleep_until((signed_in + SHORT_TOKEN + Duration::from_secs(1)).into()).await;
    idp.fail_token(true).await.unwrap();
    let decide_path = format!("/approvals/{id}/decide");
    refused_vote(&mut alice, &decide_path, &secret, 503, TOKEN_ENDPOINT_DOWN).await;
    still_pending(w, &id, &first).await;
    assert_eq!(idp.refreshes().await.unwrap(), 0);

    // The token endpoint back: the console refreshes the token, and her vote counts (with
    // the same code the refused vote did not use up).
    idp.fail_token(false).await.unwrap();
    let refreshed = Instant::now();
    let said = decide(&mut alice, console, &id, &oathtool(&secret, 1), "approve").await;
    assert!(said.contains("Approved"), "{said}");
    completes(first).await;
    assert!(idp.refreshes().await.unwrap() >= 1);
    let counted = audited(w, "approval_vote").await;
    assert_eq!(counted["detail"]["approver_groups"], json!(["sre"]));

    // Due again: the console renews it with the new refresh token the IdP rotated in (the spent
    // one would make the IdP revoke the whole sign-in), and shows what waits.
    let token = w.token("deploy-bot").await.unwrap();
    let second = held(w, &token, "gpt-4o", "delete the old keys");
    let id2 = new_approval(w, "Model::\"openai/gpt-4o\"", std::slice::from_ref(&id)).await;
    let before = idp.refreshes().await.unwrap();
    tokio::time::sleep_until((refreshed + SHORT_TOKEN + Duration::from_secs(1)).into()).await;
    let refreshed = Instant::now();
    alice
        .goto(&format!("{console}/approvals/{id2}"))
        .await
        .unwrap();
    let page = alice.text("main").await.unwrap();
    assert!(page.contains(&id2), "{page}");
    assert_eq!(idp.refreshes().await.unwrap(), before + 1, "renewed again");

    // Her account disabled at the IdP: once the token is due, the IdP refuses to renew it, and
    // her console session ends: sign in again.
    idp.set_disabled("alice", true).await.unwrap();
    tokio::time::sleep_until((refreshed + SHORT_TOKEN + Duration::from_secs(1)).into()).await;
    let decide_path = format!("/approvals/{id2}/decide");
    refused_vote(&mut alice, &decide_path, &secret, 401, SESSION_ENDED).await;
    alice.goto(&format!("{console}/approvals")).await.unwrap();
    let at = alice.url().await.unwrap();
    assert!(at.starts_with(idp.issuer()), "the session is gone: {at}");
    still_pending(w, &id2, &second).await;
    let refused = refused_codes(&w.audit_records());
    assert_eq!(refused, ["idp_unavailable", "idp_session_ended"]);
}

#[tokio::test]
async fn a_remembered_userinfo_answer_does_not_outlive_a_sign_in_the_idp_no_longer_renews() {
    // The provider's answer is remembered for 5 minutes; the access token lasts 15 s.
    let ttl = SHORT_TOKEN.as_secs().to_string();
    let remember = [("/console/oidc/userinfo_max_age", json!("5m"))];
    let s = start_configured(&[("IDP_CONSOLE_ACCESS_TOKEN_TTL", &ttl)], &remember).await;
    let (w, idp, console) = (&s.warden, &s._idp, s.console.as_str());
    let (mut alice, secret, id, first) = held_for_alice(w, console).await;
    let signed_in = Instant::now();
    // The approval's page: the provider names her groups, and the answer is remembered.
    alice
        .goto(&format!("{console}/approvals/{id}"))
        .await
        .unwrap();
    let page = alice.text("main").await.unwrap();
    assert!(page.contains(&id), "{page}");

    // Her account disabled at the IdP, and her access token due: the remembered answer does
    // not stand in for the refresh, which the IdP refuses, and her console session ends.
    idp.set_disabled("alice", true).await.unwrap();
    tokio::time::sleep_until((signed_in + SHORT_TOKEN + Duration::from_secs(1)).into()).await;
    let decide_path = format!("/approvals/{id}/decide");
    refused_vote(&mut alice, &decide_path, &secret, 401, SESSION_ENDED).await;
    still_pending(w, &id, &first).await;
    assert_eq!(refused_codes(&w.audit_records()), ["idp_session_ended"]);
}

#[tokio::test]
async fn an_access_token_the_idp_revoked_is_renewed_once_and_the_vote_counts() {
    let s = start().await;
    let (w, idp, console) = (&s.warden, &s._idp, s.console.as_str());
    let (mut alice, secret, id, request) = held_for_alice(w, console).await;
    let decide_path = format!("/approvals/{id}/decide");

    // The IdP revokes her access token an hour before it expires, and its token endpoint is
    // down: the console cannot renew it, so nothing is decided and no code is used.
    assert!(idp.revoke_access_tokens("alice").await.unwrap() >= 1);
    idp.fail_token(true).await.unwrap();
    refused_vote(&mut alice, &decide_path, &secret, 503, TOKEN_ENDPOINT_DOWN).await;
    still_pending(w, &id, &request).await;

    // The token endpoint back: the console renews the revoked token once with her refresh
    // token, asks the IdP again with the new one, and her vote counts (with the code the
    // refused vote did not use up), in the same session.
    idp.fail_token(false).await.unwrap();
    let before = idp.refreshes().await.unwrap();
    let said = decide(&mut alice, console, &id, &oathtool(&secret, 1), "approve").await;
    assert!(said.contains("Approved"), "{said}");
    assert_eq!(idp.refreshes().await.unwrap(), before + 1, "renewed once");
    completes(request).await;
    let counted = audited(w, "approval_vote").await;
    assert_eq!(counted["detail"]["approver"], "alice");
    assert_eq!(counted["detail"]["groups_confirmed_at_vote"], true);
    assert_eq!(sign_ins(w), 1, "never signed out");
    assert_eq!(refused_codes(&w.audit_records()), ["idp_unavailable"]);
}

/// How long the console's ID tokens at the IdP live in the ID-token test.
const SHORT_ID_TOKEN: Duration = Duration::from_secs(20);

#[tokio::test]
async fn a_session_that_follows_its_id_token_lasts_as_long_as_refreshes_renew_it() {
    let ttl = SHORT_ID_TOKEN.as_secs().to_string();
    let s = start_with(&[("IDP_CONSOLE_ID_TOKEN_TTL", &ttl)]).await;
    let (w, idp, console) = (&s.warden, &s._idp, s.console.as_str());
    let mut alice = Browser::launch("alice").await.unwrap();
    sign_in(&mut alice, console, "alice", "/approvals").await;
    // Taken once signed in (and below, once renewed): each wait then outlasts the ID token it
    // waits for, however long the sign-in and the pages took.
    let signed_in = Instant::now();
    assert_eq!(sign_ins(w), 1);
    // Past half the ID token's life, a page renews it: the refresh brings a new ID token.
    let half = SHORT_ID_TOKEN / 2 + Duration::from_secs(2);
    tokio::time::sleep_until((signed_in + half).into()).await;
    on_pending_list(&mut alice, console).await;
    let renewed = Instant::now();
    assert_eq!(
        idp.refreshes().await.unwrap(),
        1,
        "renewed for its ID token"
    );

    // Past the sign-in's ID token's expiry: the session follows the new one, still the same
    // session (the browser did not sign in again at the IdP behind the scenes).
    tokio::time::sleep_until((signed_in + SHORT_ID_TOKEN + Duration::from_secs(2)).into()).await;
    on_pending_list(&mut alice, console).await;
    assert_eq!(sign_ins(w), 1, "the same session, past the first ID token");

    // Left alone past the newest ID token's expiry, the session ends with it: the next page
    // signs her in anew.
    let newest = idp.refreshes().await.unwrap();
    assert!(newest >= 1);
    let last = if newest >= 2 { Instant::now() } else { renewed };
    tokio::time::sleep_until((last + SHORT_ID_TOKEN + Duration::from_secs(2)).into()).await;
    on_pending_list(&mut alice, console).await;
    assert_eq!(sign_ins(w), 2, "the session ended with its newest ID token");
}

/// Opens the pending list, signed in (anew if the session ended: the IdP's sign-in holds).
async fn on_pending_list(b: &mut Browser, console: &str) {
    let page = format!("{console}/approvals");
    b.goto(&page).await.unwrap();
    b.wait_for("header.top .who").await.unwrap();
    let at = b.url().await.unwrap();
    assert!(at.starts_with(&page), "{at}");
}

/// How many console sign-ins the audit log has recorded.
fn sign_ins(w: &Warden) -> usize {
    w.audit_records()
        .iter()
        .filter(|r| r["detail"]["event"] == "console_sign_in")
        .count()
}

/// The first audit record of console event `event`, waited for.
async fn audited(w: &Warden, event: &str) -> Value {
    w.wait_for_audit(Duration::from_secs(5), |r| r["detail"]["event"] == event)
        .await
        .unwrap()
}

/// The codes of the refused votes in `records`, in order.
fn refused_codes(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .filter(|r| r["detail"]["event"] == "approval_vote_refused")
        .map(|r| r["detail"]["code"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Approves at `path` with the next code of `secret`'s app, in a POST from the page (a refused
/// vote uses no code up): refused with `status`, the answer saying each of `says`.
async fn refused_vote(b: &mut Browser, path: &str, secret: &str, status: u16, says: &[&str]) {
    let code = oathtool(secret, 1);
    let answer = page_post(b, path, &[("decision", "approve"), ("code", &code)], true).await;
    assert_eq!(answer["status"], status, "{answer}");
    let body = answer["body"].as_str().unwrap_or_default();
    for said in says {
        assert!(body.contains(said), "{said:?} in {answer}");
    }
}

/// What a vote refused while the IdP's token endpoint is down says.
const TOKEN_ENDPOINT_DOWN: &[&str] = &[
    "onfirm your identity with the identity provider",
    "temporarily_unavailable",
    "try again",
];

/// What a vote refused once the IdP no longer renews the sign-in says.
const SESSION_ENDED: &[&str] = &["no longer renews your sign-in", "sign in again"];

/// A request held until its approval is decided.
type Held = tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>;

/// Alice, an approver, signed in at the console with an authenticator app enrolled, and a
/// chat of `deploy-bot` ("rotate the signing keys", gpt-4o) held for approval: her browser,
/// her app's secret, the approval's id and the held request.
async fn held_for_alice(w: &Warden, console: &str) -> (Browser, String, String, Held) {
    let token = w.token("deploy-bot").await.unwrap();
    let request = held(w, &token, "gpt-4o", "rotate the signing keys");
    let id = new_approval(w, "Model::\"openai/gpt-4o\"", &[]).await;
    let mut alice = Browser::launch("alice").await.unwrap();
    sign_in(&mut alice, console, "alice", "/factors").await;
    let (secret, _) = enrol_totp(&mut alice, console, None).await;
    (alice, secret, id, request)
}

/// Asserts that approval `id` is still pending (`warden approvals show`) and its `request`
/// still waits.
async fn still_pending(w: &Warden, id: &str, request: &Held) {
    let shown = w.cli(&["approvals", "show", id]).await.unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout).to_string();
    assert!(shown.contains("status:    pending"), "{shown}");
    assert!(!request.is_finished(), "the request still waits");
}

/// Waits (at most 30 s) for an approved `request` and asserts it completed.
async fn completes(request: Held) {
    let r = tokio::time::timeout(Duration::from_secs(30), request)
        .await
        .expect("the approved request completes")
        .unwrap()
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// What an approver reads of an agent's request cannot pass a look-alike letter for an ASCII
/// one, nor hide its tail: a prompt that names `boss@cоrp.com` (a Cyrillic `о`) and goes on
/// past what approvers are shown reads, in the pending list and on the approval's page, with
/// the look-alike as its escape, and the page says the message was cut.
#[tokio::test]
async fn an_approver_reads_look_alikes_as_escapes_and_is_told_when_a_message_was_cut() {
    let s = start_configured(&[], &[("/audit/record_content", json!(true))]).await;
    let (w, console) = (&s.warden, s.console.as_str());
    let token = w.token("refund-bot").await.unwrap();
    let asked = format!(
        "refund the order to boss@c\u{43e}rp.com {} and then close the account",
        "please ".repeat(300)
    );
    let request = held(w, &token, "gpt-4o", &asked);
    let id = new_approval(w, "Model::\"openai/gpt-4o\"", &[]).await;

    let mut alice = Browser::launch("alice").await.unwrap();
    sign_in(&mut alice, console, "alice", "/approvals").await;
    let listed = alice.text("main").await.unwrap();
    assert!(
        listed.contains(r"refund the order to boss@c\u{43e}rp.com please"),
        "the card shows what it asks, the look-alike escaped: {listed}"
    );
    assert!(!listed.contains('\u{43e}'), "{listed}");

    alice
        .goto(&format!("{console}/approvals/{id}"))
        .await
        .unwrap();
    let page = alice.text("main").await.unwrap();
    assert!(page.contains(r"boss@c\u{43e}rp.com"), "{page}");
    assert!(
        !page.contains('\u{43e}'),
        "a look-alike shown as is: {page}"
    );
    assert!(
        !page.contains("close the account"),
        "the tail is past what is kept"
    );
    assert!(
        page.contains("The message is longer than what is shown here"),
        "{page}"
    );
    request.abort();
    alice.close().await.unwrap();
}

/// Alice approves and Bob denies one approval at the same moment, each from a console
/// session of their own: one vote decides it, the other is answered 409 `already_decided`
/// saying how and by whom it was decided; the held request ends as the winner decided, and
/// the audit log records the loser's vote as not counted.
#[tokio::test]
async fn two_sessions_voting_on_one_approval_at_once_decide_it_once() {
    let s = start().await;
    let (w, console) = (&s.warden, s.console.as_str());
    let (mut alice, alice_secret, id, request) = held_for_alice(w, console).await;
    let mut bob = Browser::launch("bob").await.unwrap();
    sign_in(&mut bob, console, "bob", "/factors").await;
    let (bob_secret, _) = enrol_totp(&mut bob, console, None).await;
    let path = format!("/approvals/{id}");
    for b in [&mut alice, &mut bob] {
        b.goto(&format!("{console}{path}")).await.unwrap();
        b.wait_for("form.totp").await.unwrap();
    }
    let decide = format!("{path}/decide");
    let (alice_code, bob_code) = (oathtool(&alice_secret, 1), oathtool(&bob_secret, 1));
    let approve = [("decision", "approve"), ("code", alice_code.as_str())];
    let deny = [("decision", "deny"), ("code", bob_code.as_str())];
    let (approved, denied) = tokio::join!(
        page_post(&mut alice, &decide, &approve, true),
        page_post(&mut bob, &decide, &deny, true),
    );
    let won = |answer: &Value| answer["status"] == 200;
    assert!(
        won(&approved) != won(&denied),
        "exactly one vote decides it:\napprove: {approved}\ndeny: {denied}"
    );
    let (winner, loser, outcome) = if won(&approved) {
        ("alice", &denied, "approved")
    } else {
        ("bob", &approved, "denied")
    };
    assert_eq!(loser["status"], 409, "{loser}");
    let said = loser["body"].as_str().unwrap_or_default();
    // Approved, it may be used by the held request by then: "consumed by alice".
    let how = if outcome == "approved" {
        ["approved by alice", "consumed by alice"]
    } else {
        ["denied by bob"; 2]
    };
    assert!(
        said.contains("already decided") && how.iter().any(|h| said.contains(h)),
        "the other is told it was decided already, how and by whom: {said}"
    );
    assert!(said.contains("your vote was not counted"), "{said}");

    // The held request ends as the winner decided.
    let r = tokio::time::timeout(Duration::from_secs(30), request)
        .await
        .expect("the held request ends")
        .unwrap()
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let content = body["choices"][0]["message"]["content"].as_str().unwrap();
    if outcome == "approved" {
        assert!(
            content.contains("the fake upstream answers") && !content.contains(&id),
            "it went upstream: {content}"
        );
    } else {
        assert!(
            content.contains(&format!("approval {id} was denied by bob")),
            "{content}"
        );
    }
    // One vote counted: the loser's is recorded refused (or cast and voided), with its code.
    let loser_name = if winner == "alice" { "bob" } else { "alice" };
    let not_counted = w
        .wait_for_audit(Duration::from_secs(10), |r| {
            (r["detail"]["event"] == "approval_vote_refused"
                || r["detail"]["event"] == "approval_vote_void")
                && r["detail"]["approval_id"] == id.as_str()
        })
        .await
        .unwrap();
    assert_eq!(
        not_counted["detail"]["code"], "already_decided",
        "{not_counted}"
    );
    assert_eq!(
        not_counted["detail"]["approver"], loser_name,
        "{not_counted}"
    );
    let shown = w.cli(&["approvals", "show", &id]).await.unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout).to_string();
    assert!(
        shown.contains(winner) && !shown.contains(loser_name),
        "one vote stored: {shown}"
    );
}
