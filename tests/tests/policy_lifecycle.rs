//! Policies as code: a shadow forbid is judged on live traffic and recorded without denying;
//! the policy set's version is in `/readyz`, `warden_policy_info` and every decision record; a
//! signed bundle that was tampered with is refused at start and on reload (the running set
//! stays), and an older signed bundle put back in place of a newer one is refused on reload and
//! after a restart, also by a fresh replica sharing the state store with one that loaded the
//! newer bundle; `warden policy explain` names the deciding policies with their reasons and says why
//! the others did not apply; `warden policy replay` reports approvals added and removed, and
//! counts what policy did not decide alone (a quarantine trigger's deny, refusals before
//! policy) as not re-judged instead of claiming they would flip.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use warden_e2e::fake_llm::FakeLlm;
use warden_e2e::paths;
use warden_e2e::stack::{Stack, openai_chat};
use warden_e2e::warden::{Warden, WardenBuilder, bundle_keygen, cli};

const SHADOW_FORBID: &str = r#"
@id("e2e-shadow-forbid-gpt41")
@mode("shadow")
@reason("gpt-4.1 is being withdrawn")
forbid (principal, action == Action::"llm:chat", resource == Model::"openai/gpt-4.1");
"#;

/// Runs `warden <args>` (no configuration) and returns its exit status, stdout and stderr.
async fn warden(args: &[&str]) -> (bool, String, String) {
    cli(args, Duration::from_secs(30)).await
}

/// A non-streamed chat with `model`: the answer's status and the request's decision record.
async fn chat(s: &Stack, model: &str) -> (u16, serde_json::Value) {
    let response = s
        .post("/openai/chat/completions", &openai_chat(model, false))
        .await
        .unwrap();
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let record = s
        .audit("decision", |r| r["request_id"] == id.as_str())
        .await
        .unwrap();
    (response.status().as_u16(), record)
}

/// The `policy_version` line of `/readyz`.
async fn ready_version(s: &Stack) -> String {
    let body = s
        .warden
        .http()
        .get(s.warden.admin_url("/readyz"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    body.lines()
        .find_map(|l| l.strip_prefix("policy_version: "))
        .unwrap_or_else(|| panic!("/readyz names no policy version: {body}"))
        .to_owned()
}

#[tokio::test]
async fn a_shadow_forbid_records_the_difference_without_denying() {
    let s = Stack::start_with(|b| b.policy("e2e-shadow.cedar", SHADOW_FORBID))
        .await
        .unwrap();
    let version = ready_version(&s).await;
    assert!(
        version.starts_with("sha256:") && version.len() == 71,
        "{version}"
    );

    let (status, record) = chat(&s, "gpt-4.1").await;
    assert_eq!(status, 200, "a shadow forbid never denies");
    assert_eq!(record["decision"], "allow", "{record}");
    assert_eq!(record["policy_version"], version.as_str(), "{record}");
    assert_eq!(record["shadow"]["decision"], "deny", "{record}");
    assert_eq!(
        record["shadow"]["policy"], "e2e-shadow-forbid-gpt41",
        "{record}"
    );
    assert_eq!(
        record["shadow"]["policies"],
        json!(["e2e-shadow-forbid-gpt41"]),
        "{record}"
    );

    // Where the shadow set agrees, the record says nothing of it.
    let (status, record) = chat(&s, "gpt-4o").await;
    assert_eq!(status, 200);
    assert!(record.get("shadow").is_none(), "{record}");
    assert_eq!(record["policy_version"], version.as_str(), "{record}");

    let metrics = s.warden.metrics().await.unwrap();
    assert!(
        metrics.contains("warden_shadow_differences_total{policy=\"e2e-shadow-forbid-gpt41\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("warden_policy_info{{version=\"{version}\"}} 1")),
        "{metrics}"
    );

    // Promoting is a file change and a reload: the forbid now denies, under a new version.
    s.warden
        .write_policy(
            "e2e-shadow.cedar",
            &SHADOW_FORBID.replace("@mode(\"shadow\")\n", ""),
        )
        .unwrap();
    s.warden.signal(libc::SIGHUP).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while ready_version(&s).await == version {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the promotion did not load:\n{}",
            s.warden.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let response = s
        .post("/openai/chat/completions", &openai_chat("gpt-4.1", false))
        .await
        .unwrap();
    assert_eq!(response.headers()["x-warden-decision"], "deny");
}

#[tokio::test]
async fn a_shadow_directory_is_judged_beside_the_enforced_set() {
    let candidate = tempfile::tempdir().unwrap();
    std::fs::copy(
        paths::repo_root().join("policies/schema.cedarschema"),
        candidate.path().join("schema.cedarschema"),
    )
    .unwrap();
    std::fs::write(
        candidate.path().join("candidate.cedar"),
        "@id(\"candidate-models\")\npermit (principal, action == Action::\"llm:chat\", resource == Model::\"openai/gpt-4o\");\n",
    )
    .unwrap();
    let s = Stack::start_with(|b| b.set("/policy/shadow_dir", json!(candidate.path())))
        .await
        .unwrap();
    let (status, record) = chat(&s, "gpt-4.1").await;
    assert_eq!(status, 200, "the enforced set still allows");
    // The candidate set permits gpt-4o only: it would deny gpt-4.1 by default, a difference
    // counted under the enforced permit it lacks.
    assert_eq!(record["shadow"]["decision"], "deny", "{record}");
    assert_eq!(record["shadow"]["policy"], "e2e-permit-all", "{record}");
    assert_ne!(
        record["shadow"]["version"], record["policy_version"],
        "{record}"
    );
}

#[tokio::test]
async fn a_tampered_signed_bundle_is_refused_at_start_and_on_reload() {
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = bundle_keygen(keys.path()).await;
    let fake = warden_e2e::fake_llm::FakeLlm::start().await.unwrap();
    let setup = warden_e2e::warden::WardenBuilder::new(&fake)
        .set("/policy/bundle/public_keys", json!([public]))
        .write()
        .unwrap();
    let policy_dir = setup.policy_dir.to_string_lossy().into_owned();

    // Unsigned: refused at start, with what to do.
    let mut unsigned = setup.spawn().unwrap();
    let status = unsigned.wait_exit(Duration::from_secs(30)).await.unwrap();
    assert!(!status.success());
    let output = unsigned.output();
    assert!(output.contains("is not a signed bundle"), "{output}");
    assert!(output.contains("warden policy bundle"), "{output}");
    let setup = unsigned.stop_and_take_setup().await;

    let (ok, out, err) = warden(&["policy", "bundle", &policy_dir, "--sign", &key]).await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("signed with key"), "{out}");
    let s = Stack::spawn(fake, setup).await.unwrap();
    let version = ready_version(&s).await;
    let allowed = s
        .post("/openai/chat/completions", &openai_chat("gpt-4.1", false))
        .await
        .unwrap();
    assert_eq!(allowed.status(), 200);

    // Tampered: a forbid slipped into the signed directory. The reload is refused and the
    // running set stays.
    s.warden
        .write_policy("e2e-forbid.cedar", warden_e2e::stack::FORBID_GPT41)
        .unwrap();
    s.warden.signal(libc::SIGHUP).unwrap();
    let refused = s
        .audit("system", |r| {
            r["detail"]["event"] == "reload" && r["detail"]["result"] == "refused"
        })
        .await
        .unwrap();
    assert!(
        refused["reasons"]
            .to_string()
            .contains("e2e-forbid.cedar is not in the manifest"),
        "{refused}"
    );
    assert_eq!(ready_version(&s).await, version, "the running set stays");
    let still = s
        .post("/openai/chat/completions", &openai_chat("gpt-4.1", false))
        .await
        .unwrap();
    assert_eq!(still.status(), 200, "the running set stays");

    // And refused at start.
    let setup = s.warden.stop_and_take_setup().await;
    let mut tampered = setup.spawn().unwrap();
    let status = tampered.wait_exit(Duration::from_secs(30)).await.unwrap();
    assert!(!status.success());
    let output = tampered.output();
    assert!(
        output.contains("e2e-forbid.cedar is not in the manifest"),
        "{output}"
    );

    // An edited file is named too.
    let setup = tampered.stop_and_take_setup().await;
    std::fs::remove_file(setup.policy_dir.join("e2e-forbid.cedar")).unwrap();
    std::fs::write(
        setup.policy_dir.join("e2e-permit-all.cedar"),
        "@id(\"e2e-permit-all\")\npermit(principal, action, resource) when { context.tls };\n",
    )
    .unwrap();
    let mut edited = setup.spawn().unwrap();
    assert!(
        !edited
            .wait_exit(Duration::from_secs(30))
            .await
            .unwrap()
            .success()
    );
    let output = edited.output();
    assert!(
        output.contains("e2e-permit-all.cedar was changed"),
        "{output}"
    );
}

#[tokio::test]
async fn an_older_signed_bundle_put_back_is_refused_on_reload_and_at_restart() {
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = bundle_keygen(keys.path()).await;
    let fake = FakeLlm::start().await.unwrap();
    let setup = WardenBuilder::new(&fake)
        .set("/policy/bundle/public_keys", json!([public]))
        .write()
        .unwrap();
    let policy_dir = setup.policy_dir.clone();
    let dir = policy_dir.to_string_lossy().into_owned();
    let sign = async || warden(&["policy", "bundle", &dir, "--sign", &key]).await;

    // Bundle A permits gpt-4.1; its manifest and signature are kept aside.
    let (ok, out, err) = sign().await;
    assert!(ok, "{out}{err}");
    let kept = keys.path().join("bundle-a");
    std::fs::create_dir(&kept).unwrap();
    for file in ["bundle.manifest", "bundle.sig"] {
        std::fs::copy(policy_dir.join(file), kept.join(file)).unwrap();
    }
    let s = Stack::spawn(fake, setup).await.unwrap();
    let version_a = ready_version(&s).await;

    // Bundle B, signed later, forbids it: applied.
    s.warden
        .write_policy("e2e-forbid.cedar", warden_e2e::stack::FORBID_GPT41)
        .unwrap();
    let (ok, out, err) = sign().await;
    assert!(ok, "{out}{err}");
    s.warden.signal(libc::SIGHUP).unwrap();
    let applied = s
        .audit("system", |r| {
            r["detail"]["event"] == "reload"
                && r["detail"]["result"] == "applied"
                && r["detail"]["policy_version"] != version_a.as_str()
        })
        .await
        .unwrap();
    let version_b = applied["detail"]["policy_version"]
        .as_str()
        .unwrap()
        .to_owned();
    // When the bundle in effect was signed, for an alert on a set that stops changing.
    let metrics = s.warden.metrics().await.unwrap();
    let signed: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("warden_policy_bundle_signed_timestamp_seconds "))
        .unwrap_or_else(|| panic!("no bundle signing time in\n{metrics}"))
        .parse()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(signed > 0 && signed <= now, "{signed}");
    let (status, record) = chat(&s, "gpt-4.1").await;
    assert_eq!(record["decision"], "deny", "{status} {record}");

    // A put back (its files, manifest and signature, all validly signed): refused as a
    // rollback, and B stays.
    std::fs::remove_file(policy_dir.join("e2e-forbid.cedar")).unwrap();
    for file in ["bundle.manifest", "bundle.sig"] {
        std::fs::copy(kept.join(file), policy_dir.join(file)).unwrap();
    }
    s.warden.signal(libc::SIGHUP).unwrap();
    let refused = s
        .audit("system", |r| {
            r["detail"]["event"] == "reload"
                && r["detail"]["result"] == "refused"
                && r["reasons"]
                    .to_string()
                    .contains("an older bundle put back is refused")
        })
        .await
        .unwrap();
    assert!(
        refused["reasons"].to_string().contains("sign it again"),
        "{refused}"
    );
    assert_eq!(ready_version(&s).await, version_b, "the running set stays");
    let (status, record) = chat(&s, "gpt-4.1").await;
    assert_eq!(record["decision"], "deny", "{status} {record}");

    // A restart remembers B: A is refused at start too.
    let setup = s.warden.stop_and_take_setup().await;
    let mut restarted = setup.spawn().unwrap();
    let status = restarted.wait_exit(Duration::from_secs(30)).await.unwrap();
    assert!(!status.success());
    let output = restarted.output();
    assert!(
        output.contains("an older bundle put back is refused"),
        "{output}"
    );

    // Going back on purpose is signing A again: it starts.
    let setup = restarted.stop_and_take_setup().await;
    let (ok, out, err) = sign().await;
    assert!(ok, "{out}{err}");
    let mut again = setup.spawn().unwrap();
    again.wait_ready(Duration::from_secs(30)).await.unwrap();
}

#[tokio::test]
async fn a_replica_refuses_a_bundle_older_than_one_another_replica_loaded() {
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = bundle_keygen(keys.path()).await;
    let pg = warden_e2e::postgres::Postgres::from_env();
    let state_url = pg.fresh_database("warden_e2e_bundle_floor");
    let fake = FakeLlm::start().await.unwrap();
    let replica = || {
        WardenBuilder::new(&fake)
            .set("/policy/bundle/public_keys", json!([public]))
            .replica_of(&state_url, None)
    };
    let sign = async |dir: &Path| {
        let dir = dir.to_str().unwrap();
        let (ok, out, err) = warden(&["policy", "bundle", dir, "--sign", &key]).await;
        assert!(ok, "{out}{err}");
    };
    // Three bundles signed one after the other: B's (T1), a later one of the same files
    // (T2), and A's (T3).
    let b = replica().write().unwrap();
    sign(&b.policy_dir).await;
    let later = replica().write().unwrap();
    sign(&later.policy_dir).await;
    let a = replica()
        .policy("e2e-forbid.cedar", warden_e2e::stack::FORBID_GPT41)
        .write()
        .unwrap();
    sign(&a.policy_dir).await;
    let mut b = b.spawn().unwrap();
    b.wait_ready(Duration::from_secs(30)).await.unwrap();
    let mut a = a.spawn().unwrap();
    a.wait_ready(Duration::from_secs(30)).await.unwrap();

    // B is handed the T2 bundle: newer than its own, older than A's. Its reload is refused,
    // as a rollback across the fleet, and its set stays.
    for file in ["bundle.manifest", "bundle.sig"] {
        std::fs::copy(later.policy_dir.join(file), b.setup.policy_dir.join(file)).unwrap();
    }
    b.signal(libc::SIGHUP).unwrap();
    let refused = b
        .wait_for_audit(Duration::from_secs(30), |r| {
            r["detail"]["event"] == "reload" && r["detail"]["result"] == "refused"
        })
        .await
        .unwrap();
    let reasons = refused["reasons"].to_string();
    assert!(
        reasons.contains("an older bundle put back is refused")
            && reasons.contains("a gateway sharing this state store already loaded"),
        "{refused}"
    );
    assert!(
        b.audit_records()
            .iter()
            .all(|r| r["detail"]["result"] != "applied"),
        "the running set stays"
    );

    // A fresh pod (a new data_dir: nothing remembered of its own) with the T2 bundle is
    // refused at start.
    let mut fresh = later.spawn().unwrap();
    let status = fresh.wait_exit(Duration::from_secs(30)).await.unwrap();
    assert!(!status.success());
    let output = fresh.output();
    assert!(
        output.contains("an older bundle put back is refused"),
        "{output}"
    );
    assert!(
        output.contains("a gateway sharing this state store already loaded"),
        "{output}"
    );
    assert!(
        !fresh.setup.data_dir.join("policy-bundle-signed").exists(),
        "a refused bundle is not remembered"
    );

    // Going back on purpose is signing the older set again: it starts.
    let setup = fresh.stop_and_take_setup().await;
    sign(&setup.policy_dir).await;
    let mut again = setup.spawn().unwrap();
    again.wait_ready(Duration::from_secs(30)).await.unwrap();
}

const EXPLAINED: &str = r#"
@id("models")
permit (principal is Agent, action == Action::"llm:chat", resource is Model);

@id("no-gpt41")
@reason("gpt-4.1 is not approved")
forbid (principal, action == Action::"llm:chat", resource == Model::"openai/gpt-4.1");

@id("ci-only-big-prompts")
@reason("only CI may send prompts this large")
forbid (principal, action == Action::"llm:chat", resource)
when { context.input_tokens > 1000 } unless { principal has fleet && principal.fleet == "ci" };

@id("deploys-need-approval")
@approval("required")
@approvers("Group::\"sre\"")
@reason("deploys change production")
permit (principal is Agent, action == Action::"mcp:call_tool", resource == Tool::"ops/deploy");
"#;

#[tokio::test]
async fn explain_names_the_deciding_policies_and_why_the_others_did_not_apply() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        paths::repo_root().join("policies/schema.cedarschema"),
        dir.path().join("schema.cedarschema"),
    )
    .unwrap();
    std::fs::write(dir.path().join("explained.cedar"), EXPLAINED).unwrap();
    let policies = dir.path().to_str().unwrap();
    let explain = |principal: &'static str,
                   action: &'static str,
                   resource: &'static str,
                   context: Option<&'static str>| {
        let context_file = dir.path().join("context.yaml");
        async move {
            let mut args = vec![
                "policy",
                "explain",
                policies,
                "--principal",
                principal,
                "--action",
                action,
                "--resource",
                resource,
            ];
            let path;
            if let Some(text) = context {
                std::fs::write(&context_file, text).unwrap();
                path = context_file.to_string_lossy().into_owned();
                args.extend(["--context", path.as_str()]);
            }
            let (ok, out, err) = warden(&args).await;
            assert!(ok, "{out}{err}");
            out
        }
    };

    let allow = explain(
        "{ id: ci-bot, fleet: ci }",
        "llm:chat",
        "Model::\"openai/gpt-4o\"",
        Some("input_tokens: 5000\n"),
    )
    .await;
    assert!(
        allow.starts_with("principal: Agent::\"ci-bot\"\ndecision: allow\n"),
        "{allow}"
    );
    let (determined, others) = allow.split_once("did not apply:").unwrap();
    assert!(determined.contains("models (permit"), "{allow}");
    assert!(
        others.contains("no-gpt41 (forbid") && others.contains("resource does not match"),
        "{allow}"
    );
    assert!(
        others.contains("ci-only-big-prompts (forbid") && others.contains("its condition is false"),
        "{allow}"
    );
    assert!(
        others.contains("deploys-need-approval (permit")
            && others.contains("action, resource does not match"),
        "{allow}"
    );

    let deny = explain(
        "{ id: web-bot, fleet: web }",
        "llm:chat",
        "{ provider: openai, model: gpt-4.1 }",
        Some("input_tokens: 5000\n"),
    )
    .await;
    assert!(deny.contains("\ndecision: deny\n"), "{deny}");
    let (determined, others) = deny.split_once("did not apply:").unwrap();
    assert!(
        determined.contains("no-gpt41 (forbid")
            && determined.contains("@reason: gpt-4.1 is not approved"),
        "{deny}"
    );
    assert!(
        determined.contains("ci-only-big-prompts (forbid")
            && determined.contains("@reason: only CI may send prompts this large"),
        "{deny}"
    );
    assert!(
        others.contains("models (permit") && others.contains("it holds, but a forbid decides"),
        "{deny}"
    );

    let approval = explain(
        "Agent::\"ops-bot\"",
        "mcp:call_tool",
        "Tool::\"ops/deploy\"",
        None,
    )
    .await;
    assert!(
        approval.contains("\ndecision: approval_required\n"),
        "{approval}"
    );
    assert!(
        approval.contains("requires approval by Group::\"sre\""),
        "{approval}"
    );
    let (determined, _) = approval.split_once("did not apply:").unwrap();
    assert!(
        determined.contains("deploys-need-approval (permit")
            && determined.contains("@reason: deploys change production"),
        "{approval}"
    );

    let nothing = explain(
        "Agent::\"ops-bot\"",
        "mcp:call_tool",
        "Tool::\"ops/restart\"",
        None,
    )
    .await;
    assert!(nothing.contains("\ndecision: deny\n"), "{nothing}");
    assert!(nothing.contains("no policy (default deny"), "{nothing}");

    let (ok, _, err) = warden(&[
        "policy",
        "explain",
        policies,
        "--principal",
        "Host::\"x\"",
        "--action",
        "llm:chat",
        "--resource",
        "Model::\"openai/gpt-4o\"",
    ])
    .await;
    assert!(!ok);
    assert!(err.contains("is not a principal type"), "{err}");
}

const FORBID_GPT4O: &str = r#"
@id("e2e-candidate-forbid-gpt4o")
@reason("gpt-4o is withdrawn")
forbid (principal, action == Action::"llm:chat", resource == Model::"openai/gpt-4o");
"#;

#[tokio::test]
async fn replay_reports_what_a_candidate_set_would_change_and_explain_takes_a_decision_id() {
    let s = Stack::start_with(|b| b.policy("e2e-forbid.cedar", warden_e2e::stack::FORBID_GPT41))
        .await
        .unwrap();
    let (status, allowed) = chat(&s, "gpt-4o").await;
    assert_eq!(status, 200);
    assert_eq!(allowed["decision"], "allow", "{allowed}");
    // The record carries what policy judged, as a test case writes it.
    assert_eq!(allowed["facts"]["action"], "llm:chat", "{allowed}");
    assert_eq!(
        allowed["facts"]["resource"],
        json!({"provider": "openai", "model": "gpt-4o"}),
        "{allowed}"
    );
    assert_eq!(
        allowed["facts"]["principal"]["id"], allowed["principal"]["id"],
        "{allowed}"
    );
    let (_, denied) = chat(&s, "gpt-4.1").await;
    assert_eq!(denied["decision"], "deny", "{denied}");
    let agent = allowed["principal"]["id"].as_str().unwrap().to_owned();
    let request_id = allowed["request_id"].as_str().unwrap().to_owned();
    let decision_id = denied["decision_id"].as_str().unwrap().to_owned();
    let decisions = s
        .warden
        .audit_records()
        .iter()
        .filter(|r| r["kind"] == "decision")
        .count();
    let setup = s.warden.stop_and_take_setup().await;
    let audit = setup.data_dir.join("audit");
    let audit = audit.to_str().unwrap();
    let enforced = setup.policy_dir.to_str().unwrap();

    // The candidate: the enforced set and a forbid of the model the first request used.
    let candidate = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&setup.policy_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, candidate.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(candidate.path().join("candidate.cedar"), FORBID_GPT4O).unwrap();
    let candidate = candidate.path().to_str().unwrap();

    let replay = [
        "policy",
        "replay",
        "--policies",
        candidate,
        "--audit",
        audit,
    ];
    let (ok, out, err) = warden(&replay).await;
    assert!(ok, "{out}{err}");
    assert!(
        out.starts_with(&format!("replayed {decisions} decisions: 1 would change\n")),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "allow-to-deny: 1\n  policy e2e-candidate-forbid-gpt4o, agent {agent}: 1 (e.g. {request_id})\n"
        )),
        "{out}"
    );
    assert!(
        !out.contains("deny-to-allow") && !out.contains("skipped"),
        "{out}"
    );

    let fail_on = |change: &'static str| {
        let mut args = replay.to_vec();
        args.extend(["--fail-on", change]);
        args
    };
    let (ok, out, _) = warden(&fail_on("allow-to-deny")).await;
    assert!(!ok, "a matching --fail-on exits non-zero: {out}");
    assert!(out.contains("failing: allow-to-deny"), "{out}");
    let (ok, out, err) = warden(&fail_on("deny-to-allow")).await;
    assert!(ok, "no deny-to-allow change: {out}{err}");
    let (ok, _, err) = warden(&fail_on("sometimes")).await;
    assert!(!ok && err.contains("--fail-on sometimes"), "{err}");

    // The enforced set itself changes nothing.
    let same = [
        "policy",
        "replay",
        "--policies",
        enforced,
        "--audit",
        audit,
        "--fail-on",
        "any",
    ];
    let (ok, out, err) = warden(&same).await;
    assert!(ok, "{out}{err}");
    assert!(
        out.starts_with(&format!("replayed {decisions} decisions: 0 would change\n")),
        "{out}"
    );

    let explain = [
        "policy",
        "explain",
        enforced,
        "--decision",
        &decision_id,
        "--audit",
        audit,
    ];
    let (ok, out, err) = warden(&explain).await;
    assert!(ok, "{out}{err}");
    assert!(
        out.starts_with("recorded: deny by [e2e-forbid-gpt41]"),
        "{out}"
    );
    let (determined, _) = out.split_once("did not apply:").unwrap();
    assert!(
        determined.contains("decision: deny") && determined.contains("e2e-forbid-gpt41 (forbid"),
        "{out}"
    );
    let unknown = [
        "policy",
        "explain",
        enforced,
        "--decision",
        "nope",
        "--audit",
        audit,
    ];
    let (ok, _, err) = warden(&unknown).await;
    assert!(
        !ok && err.contains("no decision record with decision_id nope"),
        "{err}"
    );
}

/// Chat with o3 waits for an approval.
const HELD_O3: &str = r#"
@id("e2e-held-o3")
@approval("required")
permit (principal, action == Action::"llm:chat", resource == Model::"openai/o3");
"#;

/// The candidate's new rule: chat with gpt-4o-mini waits for an approval.
const MINI_NEEDS_APPROVAL: &str = r#"
@id("e2e-candidate-mini-needs-approval")
@approval("required")
permit (principal, action == Action::"llm:chat", resource == Model::"openai/gpt-4o-mini");
"#;

/// A chat with `model` saying `content`, as `token`: the answer's status and request id.
async fn ask(w: &Warden, token: &str, model: &str, content: &str) -> (u16, String) {
    let mut body = openai_chat(model, false);
    body["messages"][0]["content"] = json!(content);
    let response = w
        .http()
        .post(w.url("/openai/chat/completions"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    (response.status().as_u16(), id)
}

#[tokio::test]
async fn replay_reports_approvals_added_and_removed_and_does_not_rejudge_what_policy_did_not_decide()
 {
    let upstream = FakeLlm::start().await.unwrap();
    let w = WardenBuilder::new(&upstream)
        .policy("e2e-forbid.cedar", warden_e2e::stack::FORBID_GPT41)
        .policy("e2e-held.cedar", HELD_O3)
        .set("/approvals", json!({"mode": "pending"}))
        .set(
            "/fleet/quarantine/triggers",
            json!({"detectors": ["private_key"]}),
        )
        .set(
            "/rate_limits",
            json!({"rules": [{"scope": "agent", "rate": 0.001, "burst": 2}]}),
        )
        .start()
        .await
        .unwrap();
    let ci = w.token("ci-bot").await.unwrap();
    let (status, _) = ask(&w, &ci, "gpt-4o", "hello").await;
    assert_eq!(status, 200);
    let (_, forbidden) = ask(&w, &ci, "gpt-4.1", "hello").await;
    // Held for approval by the enforced set.
    let reviewer = w.token("reviewer").await.unwrap();
    let (_, held) = ask(&w, &reviewer, "o3", "hello").await;
    // Policy allows it; the quarantine trigger on the key it carries denies it.
    let leaker = w.token("leaker").await.unwrap();
    let (_, leaked) = ask(
        &w,
        &leaker,
        "gpt-4o-mini",
        "deploy with -----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----",
    )
    .await;
    // Refused before policy: quarantined, and over its rate limit.
    let (status, _) = ask(&w, &leaker, "gpt-4o-mini", "hello").await;
    assert_eq!(status, 403);
    let busy = w.token("busy-bot").await.unwrap();
    let mut allowed = Vec::new();
    for _ in 0..2 {
        let (status, id) = ask(&w, &busy, "gpt-4o-mini", "hello").await;
        assert_eq!(status, 200);
        allowed.push(id);
    }
    let (status, _) = ask(&w, &busy, "gpt-4o-mini", "hello").await;
    assert_eq!(status, 429);
    let leaked_record = w
        .wait_for_audit(Duration::from_secs(5), |r| {
            r["kind"] == "decision" && r["request_id"] == leaked.as_str()
        })
        .await
        .unwrap();
    assert_eq!(leaked_record["decision"], "deny", "{leaked_record}");
    assert_eq!(
        leaked_record["overruled_by"], "quarantine",
        "{leaked_record}"
    );
    for code in ["agent_quarantined", "rate_limited"] {
        let rejected = w
            .wait_for_audit(Duration::from_secs(5), |r| {
                r["kind"] == "rejected" && r["code"] == code
            })
            .await;
        assert!(rejected.is_ok(), "no rejected record with code {code}");
    }
    let decisions = w
        .audit_records()
        .iter()
        .filter(|r| r["kind"] == "decision")
        .count();
    assert_eq!(decisions, 6, "{:#?}", w.audit_records());
    let setup = w.stop_and_take_setup().await;
    let audit = setup.data_dir.join("audit");

    // The candidate: without the gpt-4.1 forbid and the o3 approval, with an approval on
    // gpt-4o-mini.
    let candidate = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&setup.policy_dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if path.is_file() && name != "e2e-forbid.cedar" && name != "e2e-held.cedar" {
            std::fs::copy(&path, candidate.path().join(name)).unwrap();
        }
    }
    std::fs::write(
        candidate.path().join("candidate.cedar"),
        MINI_NEEDS_APPROVAL,
    )
    .unwrap();
    let (ok, out, err) = warden(&[
        "policy",
        "replay",
        "--policies",
        candidate.path().to_str().unwrap(),
        "--audit",
        audit.to_str().unwrap(),
        "--fail-on",
        "approval-removed",
    ])
    .await;
    assert!(!ok, "an approval removed fails: {out}{err}");
    assert_eq!(
        out,
        format!(
            "replayed 5 decisions: 4 would change\n\
             not re-judged 1: a quarantine trigger denied it, not policy\n\
             not re-judged 1: a rate limit refused it before policy judged it\n\
             not re-judged 1: the agent was quarantined: refused before policy judged it\n\
             deny-to-allow: 1\n  policy e2e-forbid-gpt41, agent ci-bot: 1 (e.g. {forbidden})\n\
             approval-added: 2\n  policy e2e-candidate-mini-needs-approval, agent busy-bot: 2 (e.g. {}, {})\n\
             approval-removed: 1\n  policy e2e-held-o3, agent reviewer: 1 (e.g. {held})\n\
             failing: approval-removed\n",
            allowed[0], allowed[1]
        )
    );
}
