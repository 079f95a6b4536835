use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use tempfile::TempDir;

use super::*;
use crate::action::{
    ActionContext, EgressFacts, Facts, Finding, Findings, HttpFacts, LlmFacts, Principal,
    PrincipalKind, Resource, ToolFacts, Verb,
};
use crate::policy::testing::{PolicyTestError, run_tests};

/// The schema declarations of every built-in REST connector.
fn built_in_connector_actions() -> Vec<SchemaFragment> {
    let connectors = crate::route::connector::Connectors::load(None).expect("built-in connectors");
    connectors
        .names()
        .into_iter()
        .filter_map(|name| {
            connectors.operations(name).map(|ops| SchemaFragment {
                origin: PathBuf::from(format!("connectors/{name}.yaml")),
                text: crate::protocol::rest::schema_fragment(ops),
            })
        })
        .collect()
}

/// The fragments of the connectors whose actions `policies` names (`Action::"github:...`):
/// loading every connector's actions for each example would only cost time.
fn actions_named_in(fragments: &[SchemaFragment], policies: &str) -> Vec<SchemaFragment> {
    fragments
        .iter()
        .filter(|f| {
            let ns = f.origin.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            policies.contains(&format!("\"{ns}:"))
        })
        .cloned()
        .collect()
}

pub(super) fn repo_policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

/// A policy directory with the repo's schema and the given files.
pub(crate) fn pack(files: &[(&str, &str)]) -> TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        repo_policies().join(SCHEMA_FILE),
        dir.path().join(SCHEMA_FILE),
    )
    .expect("copy schema");
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }
    dir
}

fn load(files: &[(&str, &str)]) -> Result<PolicyEngine, PolicyErrors> {
    let dir = pack(files);
    PolicyEngine::load(dir.path())
}

fn agent(id: &str) -> Principal {
    Principal {
        kind: PrincipalKind::Agent,
        id: Arc::from(id),
        issuer: Arc::from("https://idp.example.com"),
        fleet: None,
        owner: None,
        environment: Some(Arc::from("prod")),
        scopes: vec![Arc::from("llm")],
        groups: vec![Arc::from("engineering")],
        client_certificate: None,
        expires_at: None,
    }
}

fn chat(principal: Principal, provider: &str, model: &str) -> Action {
    Action {
        principal: Arc::new(principal),
        verb: Verb::LlmChat,
        resource: Resource::Model {
            provider: Arc::from(provider),
            name: model.to_owned(),
        },
        context: ActionContext {
            route: Arc::from("openai"),
            // Monday 2026-11-02 10:00:00 UTC.
            time: UNIX_EPOCH + Duration::from_secs(1_793_613_600),
            source_ip: IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)),
            tls: true,
            client_certificate: None,
            findings: Findings::none(),
            facts: Facts::Llm(LlmFacts {
                stream: true,
                max_tokens: Some(1000),
                tools: vec!["exec".into(), "read".into()],
                input_tokens: 200,
                cached_content: false,
            }),
            session: None,
            budget: None,
        },
    }
}

fn ids(list: &[&str]) -> Vec<Arc<str>> {
    list.iter().map(|s| Arc::from(*s)).collect()
}

const PERMIT_ALL: &str = r#"
@id("chat-any")
permit (principal, action == Action::"llm:chat", resource);
"#;

#[test]
fn repo_policy_pack_passes_its_decision_tests() {
    let report = match run_tests(&repo_policies()) {
        Ok(r) => r,
        Err(e) => panic!("policy tests could not run:\n{e}"),
    };
    assert!(
        report.cases.len() >= 10,
        "the baseline pack needs real coverage"
    );
    assert_eq!(report.failed(), 0, "\n{report}");
}

#[test]
fn every_example_validates_against_the_schema_alone_and_with_the_baseline() {
    let dir = repo_policies();
    let in_examples = |extension: &str| -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("examples"))
            .expect("examples dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == extension))
            .map(|p| PathBuf::from("examples").join(p.file_name().expect("name")))
            .collect();
        files.sort();
        files
    };
    let examples = in_examples("cedar");
    // The examples' schema fragments (an MCP server's tool arguments) load with each one.
    let fragments = in_examples("cedarschema");
    assert!(
        examples.len() >= 5,
        "expected the documented examples, found {examples:?}"
    );
    // The REST examples name the shipped connectors' actions, declared when a route uses them.
    let all_fragments = built_in_connector_actions();
    for example in &examples {
        let text = std::fs::read_to_string(dir.join(example)).expect("example");
        let connectors = actions_named_in(&all_fragments, &text);
        let mut files = fragments.clone();
        files.push(example.clone());
        if let Err(e) = PolicyEngine::load_files_with(&dir, &files, &connectors) {
            panic!("{} does not validate:\n{e}", example.display());
        }
    }
    let mut all = examples.clone();
    all.extend(fragments);
    all.push(PathBuf::from("baseline.cedar"));
    let engine =
        PolicyEngine::load_files_with(&dir, &all, &all_fragments).unwrap_or_else(|e| panic!("{e}"));
    assert!(engine.warnings().is_empty(), "{:?}", engine.warnings());
}

#[test]
fn baseline_allows_a_typical_chat_and_names_the_permit() {
    let engine = PolicyEngine::load(&repo_policies()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(engine.policy_count(), 13);
    let decision = engine.decide(&chat(agent("ci-bot"), "openai", "gpt-4o"));
    assert_eq!(
        decision,
        Decision::Allow {
            policies: ids(&["baseline-use-models"])
        }
    );
}

#[test]
fn forbid_with_reason_denies_with_that_reason_and_id() {
    let engine = load(&[(
        "p.cedar",
        &format!(
            "{PERMIT_ALL}\n@id(\"no-exec\")\n@reason(\"the exec tool is not allowed\")\n\
             forbid (principal, action == Action::\"llm:chat\", resource) when {{ context.tools.contains(\"exec\") }};"
        ),
    )])
    .unwrap_or_else(|e| panic!("{e}"));
    let decision = engine.decide(&chat(agent("ci-bot"), "openai", "gpt-4o"));
    assert_eq!(
        decision,
        Decision::Deny {
            reasons: vec!["the exec tool is not allowed".into()],
            policies: ids(&["no-exec"]),
        }
    );
}

#[test]
fn nothing_matching_is_a_default_deny_that_says_what_was_refused() {
    let engine = load(&[(
        "p.cedar",
        r#"@id("embed-only") permit (principal, action == Action::"llm:embed", resource);"#,
    )])
    .unwrap_or_else(|e| panic!("{e}"));
    let decision = engine.decide(&chat(agent("ci-bot"), "openai", "gpt-4o"));
    assert_eq!(
        decision,
        Decision::Deny {
            reasons: vec![
                r#"no policy permits llm:chat on Model::"openai/gpt-4o" for Agent::"ci-bot""#
                    .into()
            ],
            policies: Vec::new(),
        }
    );
}

#[test]
fn approval_permit_needs_approval_even_beside_a_plain_permit() {
    let dir = repo_policies();
    let files = [
        PathBuf::from("baseline.cedar"),
        PathBuf::from("examples/approval-required.cedar"),
    ];
    let engine = PolicyEngine::load_files(&dir, &files).unwrap_or_else(|e| panic!("{e}"));
    let decision = engine.decide(&chat(agent("ci-bot"), "anthropic", "claude-opus-4-1"));
    assert_eq!(
        decision,
        Decision::NeedsApproval {
            policy: Arc::from("opus-needs-approval"),
            approvers: vec![r#"Group::"sre""#.into(), r#"Group::"secops""#.into()],
            reason: Some("claude-opus-4-1 is expensive: a human approves each call".into()),
            ttl: Some(std::time::Duration::from_secs(30 * 60)),
            approvals: 1,
        }
    );
    // Another model is not affected.
    let other = engine.decide(&chat(agent("ci-bot"), "anthropic", "claude-sonnet-4-5"));
    assert_eq!(other.label(), "allow");
}

#[test]
fn forbid_beats_an_approval_permit() {
    let engine = load(&[(
        "p.cedar",
        r#"
        @id("ask") @approval("required") @approvers("Group::\"sre\"")
        permit (principal, action, resource);
        @id("stop") forbid (principal, action == Action::"llm:chat", resource) when { context.input_tokens > 100 };
        "#,
    )])
    .unwrap_or_else(|e| panic!("{e}"));
    let decision = engine.decide(&chat(agent("ci-bot"), "openai", "gpt-4o"));
    assert_eq!(
        decision,
        Decision::Deny {
            reasons: vec!["denied by policy stop".into()],
            policies: ids(&["stop"])
        }
    );
}

#[test]
fn the_strictest_approval_permit_decides_with_its_ttl_and_count() {
    let engine = load(&[(
        "p.cedar",
        r#"
        @id("one") @approval("required") @approval_ttl("1h")
        permit (principal, action, resource);
        @id("two-person") @approval("required") @approvers("Group::\"sre\"")
        @approval_ttl("15m") @approvals("2")
        permit (principal, action == Action::"llm:chat", resource);
        "#,
    )])
    .unwrap_or_else(|e| panic!("{e}"));
    let decision = engine.decide(&chat(agent("ci-bot"), "openai", "gpt-4o"));
    assert_eq!(
        decision,
        Decision::NeedsApproval {
            policy: Arc::from("two-person"),
            approvers: vec![r#"Group::"sre""#.into()],
            reason: None,
            ttl: Some(std::time::Duration::from_secs(15 * 60)),
            approvals: 2,
        }
    );
    assert_eq!(
        decision.reasons(),
        [r#"requires 2 approvals by Group::"sre" (policy two-person)"#]
    );
}

#[test]
fn decision_tests_check_the_number_of_approvals_and_the_ttl() {
    let dir = pack(&[
        (
            "p.cedar",
            r#"@id("two-person") @approval("required") @approval_ttl("15m") @approvals("2")
permit (principal, action == Action::"llm:chat", resource);
@id("one") @approval("required")
permit (principal, action == Action::"llm:embed", resource);
"#,
        ),
        (
            "tests/cases.yaml",
            "cases:
  - name: two-person rule for 15 minutes
    principal: { id: a }
    action: llm:chat
    resource: { provider: openai, model: gpt-4o }
    expect: approval_required
    approvals: 2
    approval_ttl: 15m
  - name: one approver, the default TTL
    principal: { id: a }
    action: llm:embed
    resource: { provider: openai, model: text-embedding-3-small }
    expect: approval_required
    approvals: 1
    approval_ttl: default
  - name: wrong expectations
    principal: { id: a }
    action: llm:chat
    resource: { provider: openai, model: gpt-4o }
    expect: approval_required
    approvals: 3
    approval_ttl: 1h
",
        ),
    ]);
    let report = run_tests(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((report.passed(), report.failed()), (2, 1), "\n{report}");
    let text = report.to_string();
    assert!(text.contains("2 approvals required, expected 3"), "{text}");
    assert!(text.contains("approval TTL is 15m, expected 1h"), "{text}");
}

#[test]
fn a_policy_directory_that_is_not_there_is_told_the_nearest_one() {
    let parent = tempfile::tempdir().unwrap();
    std::fs::create_dir(parent.path().join("policies")).unwrap();
    let e = PolicyEngine::load(&parent.path().join("polices"))
        .expect_err("no such directory")
        .to_string();
    assert!(
        e.contains(&format!(
            "no such directory (did you mean `{}`?)",
            parent.path().join("policies").display()
        )),
        "{e}"
    );
    let e = PolicyEngine::load(&parent.path().join("rules"))
        .expect_err("no such directory")
        .to_string();
    assert!(
        e.contains("no such directory: policy.dir") && !e.contains("did you mean"),
        "{e}"
    );
}

#[test]
fn duplicate_ids_are_reported_with_both_locations() {
    let err = load(&[
        (
            "a.cedar",
            "// first\n@id(\"same\")\npermit (principal, action, resource);\n",
        ),
        (
            "b.cedar",
            "\n\n\n  @id(\"same\")\nforbid (principal, action, resource);\n",
        ),
    ])
    .expect_err("duplicate ids must not load");
    let text = err.to_string();
    assert_eq!(err.0.len(), 1, "{text}");
    assert!(
        text.contains("b.cedar:4:3: duplicate policy id `same`"),
        "{text}"
    );
    assert!(text.contains("a.cedar:2:1"), "{text}");
}

#[test]
fn unknown_attribute_is_reported_at_its_file_line_and_column() {
    let err = load(&[(
        "sub/bad.cedar",
        "@id(\"ok\")\npermit (principal, action, resource);\n\n@id(\"typo\")\nforbid (principal, action, resource)\nwhen { principal.enviroment == \"prod\" };\n",
    )])
    .expect_err("a schema violation must not load");
    let text = err.to_string();
    assert!(text.contains("sub/bad.cedar:6:"), "{text}");
    assert!(text.contains("enviroment"), "{text}");
    assert!(text.contains("typo"), "{text}");
}

#[test]
fn syntax_errors_are_all_reported_with_positions() {
    let err = load(&[
        (
            "one.cedar",
            "@id(\"x\")\npermit (principal, action, resource)\nwhen { context.tls ==  };\n",
        ),
        ("two.cedar", "permit (principal, action resource);\n"),
    ])
    .expect_err("syntax errors must not load");
    let text = err.to_string();
    assert!(text.contains("one.cedar:3:"), "{text}");
    assert!(text.contains("two.cedar:1:"), "{text}");
    assert!(text.lines().all(|l| l.contains("syntax error")), "{text}");
}

#[test]
fn schema_syntax_errors_point_into_the_schema() {
    let dir = pack(&[("p.cedar", PERMIT_ALL)]);
    std::fs::write(
        dir.path().join(SCHEMA_FILE),
        "entity Agent {\n  issuer: Strin g,\n};\n",
    )
    .expect("write");
    let err = PolicyEngine::load(dir.path()).expect_err("bad schema");
    let text = err.to_string();
    assert!(text.contains("schema.cedarschema:2:"), "{text}");
}

#[test]
fn schema_out_of_step_with_warden_is_refused() {
    let dir = pack(&[("p.cedar", PERMIT_ALL)]);
    let schema = std::fs::read_to_string(dir.path().join(SCHEMA_FILE)).expect("read");
    let edited = schema.replace("  tls: Bool,", "");
    assert_ne!(schema, edited);
    std::fs::write(dir.path().join(SCHEMA_FILE), edited).expect("write");
    let err = PolicyEngine::load(dir.path()).expect_err("mismatched schema");
    let text = err.to_string();
    assert!(
        text.contains("schema does not match what Warden sends for `llm:chat`"),
        "{text}"
    );
}

#[test]
fn missing_schema_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("p.cedar"), PERMIT_ALL).expect("write");
    let err = PolicyEngine::load(dir.path()).expect_err("no schema");
    assert!(
        matches!(err.0[0].kind, PolicyErrorKind::MissingSchema),
        "{err}"
    );
}

#[test]
fn a_directory_with_more_policy_files_than_a_set_may_have_is_refused_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let many = dir.path().join("many");
    std::fs::create_dir(&many).expect("mkdir");
    for i in 0..=load::MAX_POLICY_FILES {
        std::fs::write(many.join(format!("p{i}.cedar")), "").expect("write");
    }
    let err = PolicyEngine::load(dir.path()).expect_err("too many files");
    assert_eq!(err.0.len(), 1, "{err}");
    assert!(
        matches!(
            err.0[0].kind,
            PolicyErrorKind::TooManyFiles { bound: 10_000 }
        ),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains(&dir.path().display().to_string()), "{text}");
    assert!(text.contains("at most 10000"), "{text}");
    let err = bundle_files(dir.path()).expect_err("too many files to bundle");
    assert!(err.to_string().contains("at most 10000"), "{err}");
    // At the bound, the set is read (and here refused for what it lacks, not for its size).
    std::fs::remove_file(many.join("p0.cedar")).expect("remove");
    let err = PolicyEngine::load(dir.path()).expect_err("no schema");
    assert!(
        !err.0
            .iter()
            .any(|e| matches!(e.kind, PolicyErrorKind::TooManyFiles { .. })),
        "{err}"
    );
}

#[test]
fn templates_are_refused() {
    let err = load(&[(
        "t.cedar",
        "@id(\"t\")\npermit (principal == ?principal, action, resource);",
    )])
    .expect_err("templates must not load");
    assert!(
        matches!(&err.0[0].kind, PolicyErrorKind::Template(id) if id == "t"),
        "{err}"
    );
}

#[test]
fn policy_without_id_is_named_after_its_file_and_line() {
    let engine = load(&[("dir/p.cedar", "\n\npermit (principal, action, resource);\n")])
        .unwrap_or_else(|e| panic!("{e}"));
    let decision = engine.decide(&chat(agent("ci-bot"), "openai", "gpt-4o"));
    assert_eq!(
        decision,
        Decision::Allow {
            policies: ids(&["dir/p.cedar:3"])
        }
    );
}

#[test]
fn tests_and_examples_directories_are_not_loaded() {
    let engine = load(&[
        ("p.cedar", PERMIT_ALL),
        ("examples/broken.cedar", "this is not cedar"),
        ("nested/tests/broken.cedar", "nor this"),
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(engine.policy_count(), 1);
}

#[test]
fn typed_context_carries_source_ip_hour_weekday_and_tls() {
    let engine = load(&[(
        "p.cedar",
        &format!(
            "{PERMIT_ALL}\n@id(\"office\") @reason(\"office\")\nforbid (principal, action == Action::\"llm:chat\", resource) when {{\
             context.source_ip.isInRange(ip(\"10.0.0.0/8\")) && context.hour == 10 && \
             context.weekday == 0 && context.tls && context.time == 1793613600 && \
             context.route == \"openai\" && context.stream && context has max_tokens }};"
        ),
    )])
    .unwrap_or_else(|e| panic!("{e}"));
    let action = chat(agent("ci-bot"), "openai", "gpt-4o");
    assert_eq!(engine.decide(&action).policy_ids(), ids(&["office"]));
    let mut elsewhere = action.clone();
    elsewhere.context.source_ip = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 1));
    assert_eq!(engine.decide(&elsewhere).label(), "allow");
    let mut later = action;
    later.context.time += Duration::from_secs(3600);
    assert_eq!(engine.decide(&later).label(), "allow");
}

#[test]
fn principal_attributes_and_groups_reach_policies() {
    let engine = load(&[(
        "p.cedar",
        r#"
        @id("eng-prod") permit (principal in AgentGroup::"engineering", action, resource is Model)
        when { principal has environment && principal.environment == "prod"
               && principal.scopes.contains("llm") && resource.provider == "openai"
               && resource.name == "gpt-4o" && resource in Provider::"openai" };
        "#,
    )])
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        engine.decide(&chat(agent("a"), "openai", "gpt-4o")).label(),
        "allow"
    );
    let mut staging = agent("b");
    staging.environment = Some(Arc::from("staging"));
    assert_eq!(
        engine.decide(&chat(staging, "openai", "gpt-4o")).label(),
        "deny"
    );
}

#[test]
fn changed_principal_with_the_same_id_is_not_served_from_the_cache() {
    let engine = load(&[(
        "p.cedar",
        r#"@id("eng") permit (principal in AgentGroup::"engineering", action, resource);"#,
    )])
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        engine
            .decide(&chat(agent("bot"), "openai", "gpt-4o"))
            .label(),
        "allow"
    );
    let mut moved = agent("bot");
    moved.groups = vec![Arc::from("sales")];
    assert_eq!(
        engine.decide(&chat(moved, "openai", "gpt-4o")).label(),
        "deny"
    );
}

#[test]
fn cached_entities_keep_each_resource_apart() {
    let engine = load(&[(
        "p.cedar",
        r#"@id("4o") permit (principal, action, resource == Model::"openai/gpt-4o");"#,
    )])
    .unwrap_or_else(|e| panic!("{e}"));
    let bot = Arc::new(agent("bot"));
    let on = |model: &str| {
        let mut a = chat(agent("unused"), "openai", model);
        a.principal = bot.clone();
        engine.decide(&a).label()
    };
    assert_eq!(
        [
            on("gpt-4o"),
            on("gpt-4o-mini"),
            on("gpt-4o"),
            on("gpt-4o-mini")
        ],
        ["allow", "deny", "allow", "deny"]
    );
}

#[test]
fn user_principals_never_reach_agent_actions() {
    let engine = load(&[("p.cedar", PERMIT_ALL)]).unwrap_or_else(|e| panic!("{e}"));
    let mut user = agent("alice");
    user.kind = PrincipalKind::User;
    let decision = engine.decide(&chat(user, "openai", "gpt-4o"));
    let Decision::Deny { reasons, policies } = decision else {
        panic!("a user must be denied, got {decision:?}");
    };
    assert!(policies.is_empty());
    assert!(
        reasons[0].contains("the schema allows llm:chat for Agent"),
        "{reasons:?}"
    );
}

#[test]
fn evaluation_errors_skip_the_policy_and_are_reported() {
    let engine = load(&[(
        "p.cedar",
        &format!(
            "{PERMIT_ALL}\n@id(\"overflow\")\nforbid (principal, action == Action::\"llm:chat\", resource) \
             when {{ context.input_tokens * 100000000000000000 > 0 }};"
        ),
    )])
    .unwrap_or_else(|e| panic!("{e}"));
    let verdict = engine.evaluate(&chat(agent("ci-bot"), "openai", "gpt-4o"));
    assert_eq!(
        verdict.decision,
        Decision::Allow {
            policies: ids(&["chat-any"])
        }
    );
    assert_eq!(verdict.errors.len(), 1);
    assert_eq!(&*verdict.errors[0].policy, "overflow");
}

#[test]
fn engine_is_shareable_across_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<PolicyEngine>();
}

#[test]
fn test_runner_reports_a_mismatch_with_expected_and_actual() {
    let dir = pack(&[
        (
            "p.cedar",
            &format!(
                "{PERMIT_ALL}\n@id(\"big\") @reason(\"too big\")\nforbid (principal, action == Action::\"llm:chat\", resource) when {{ context.input_tokens > 10 }};"
            ),
        ),
        (
            "tests/cases.yaml",
            "cases:\n  - name: small passes\n    principal: { id: a }\n    action: llm:chat\n    resource: { provider: openai, model: gpt-4o }\n    expect: allow\n    policies: [chat-any]\n  - name: wrongly expected to pass\n    principal: { id: a }\n    action: llm:chat\n    resource: { provider: openai, model: gpt-4o }\n    context: { input_tokens: 11 }\n    expect: allow\n",
        ),
    ]);
    let report = run_tests(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((report.passed(), report.failed()), (1, 1));
    let text = report.to_string();
    assert!(text.contains("FAIL  wrongly expected to pass"), "{text}");
    assert!(text.contains("cases.yaml:8"), "{text}");
    assert!(text.contains("expected: allow"), "{text}");
    assert!(text.contains("actual:   deny by [big]: too big"), "{text}");
}

#[test]
fn test_runner_points_at_bad_case_files() {
    let dir = pack(&[
        ("p.cedar", PERMIT_ALL),
        (
            "tests/bad.yaml",
            "cases:\n  - name: typo\n    principal: { id: a }\n    action: llm:chat\n    resource: { provider: openai, model: gpt-4o }\n    expect: allow\n    expcet: deny\n",
        ),
        (
            "tests/worse.yaml",
            "cases:\n  - name: ok\n    principal: { id: a }\n    action: llm:chat\n    resource: { provider: openai, model: gpt-4o }\n    expect: allow\n  - name: unknown action\n    principal: { id: a }\n    action: llm:dance\n    resource: { provider: openai }\n    expect: deny\n",
        ),
    ]);
    let err = run_tests(dir.path()).expect_err("bad case files");
    let PolicyTestError::BadTestFiles(errors) = &err else {
        panic!("{err}")
    };
    assert_eq!(errors.len(), 2, "{err}");
    assert_eq!(errors[0].position.map(|p| p.0), Some(7), "{err}");
    assert!(errors[0].message.contains("expcet"), "{err}");
    assert_eq!(errors[1].position.map(|p| p.0), Some(7), "{err}");
    assert!(
        errors[1].message.contains("unknown action `llm:dance`"),
        "{err}"
    );
}

/// Cedar's own answer for `action` under the whole `set` (no slicing, no caches, no native
/// conditions): whether it allows, and the ids of the determining policies, sorted.
pub(super) fn cedar_answer(
    engine: &PolicyEngine,
    set: &PolicySet,
    action: &Action,
) -> (bool, Vec<String>) {
    let names = request::CedarNames::new().expect("names");
    let (p, a, r, context) = request::cedar_parts(
        &names,
        &request::IpCache::default(),
        context_keys::ContextKeys::all(),
        action,
        &engine.tools.arguments_of(&action.resource),
    )
    .expect("parts");
    let entities = engine
        .action_entities
        .clone()
        .add_entities(
            [
                names
                    .principal_entity(&action.principal)
                    .expect("principal"),
                names.resource_entity(&action.resource).expect("resource").1,
            ],
            None,
        )
        .expect("entities");
    let request = Request::new(p, a, r, context, None).expect("request");
    let response = Authorizer::new().is_authorized(&request, set, &entities);
    // `PolicySet::from_str` names policies policy0, policy1...: map to @id.
    let mut ids: Vec<String> = response
        .diagnostics()
        .reason()
        .filter_map(|id| set.policy(id)?.annotation("id").map(str::to_owned))
        .collect();
    ids.sort();
    (response.decision() == cedar_policy::Decision::Allow, ids)
}

/// Policies that read the context and policies that do not, permits and forbids of both.
const MIXED: &str = r#"
@id("fixed-permit-engineering")
permit (principal in AgentGroup::"engineering", action == Action::"llm:chat", resource);

@id("fixed-permit-mini")
permit (principal, action == Action::"llm:chat", resource)
when { resource.name == "gpt-4o-mini" };

@id("fixed-forbid-sales-gpt41")
@reason("sales may not use gpt-4.1")
forbid (principal, action == Action::"llm:chat", resource)
when { principal has fleet && principal.fleet == "sales" && resource.name == "gpt-4.1" };

@id("context-forbid-big")
@reason("too many input tokens")
forbid (principal, action == Action::"llm:chat", resource)
when { context.input_tokens > 1000 };

@id("context-permit-tls")
permit (principal, action == Action::"llm:chat", resource)
when { context.tls && principal has fleet && principal.fleet == "ops" };

@id("context-permit-finance-small")
permit (principal in AgentGroup::"finance", action in [Action::"llm:chat", Action::"llm:embed"], resource)
unless { context.input_tokens > 100 };

@id("context-forbid-exec-on-mini")
@reason("no exec on small models")
forbid (principal, action == Action::"llm:chat", resource == Model::"openai/gpt-4o-mini")
when { context.tools.contains("exec") };
"#;

#[test]
fn fixed_and_per_request_halves_give_cedars_answer_for_the_whole_set() {
    let dir = pack(&[("mixed.cedar", MIXED)]);
    let engine = PolicyEngine::load(dir.path()).expect("loads");
    // Every context-reading policy is judged as one expression (not the authorizer fallback).
    let conditions: Vec<&Condition> = engine
        .slices
        .iter()
        .flat_map(|s| s.conditions.values().map(|c| &**c))
        .collect();
    assert!(conditions.len() >= 4, "{conditions:?}");
    let mut native: Vec<&str> = Vec::new();
    for c in conditions {
        assert!(matches!(c.check, Check::Expression(_)), "{}", c.id);
        if c.native.is_some() {
            native.push(&c.id);
        }
    }
    // Those reading only the context are compiled; one reading the principal is not.
    native.sort_unstable();
    native.dedup();
    assert_eq!(
        native,
        [
            "context-forbid-big",
            "context-forbid-exec-on-mini",
            "context-permit-finance-small"
        ]
    );
    let whole = PolicySet::from_str(MIXED).expect("parses");
    let mut seen = std::collections::HashSet::new();
    for fleet in [None, Some("sales"), Some("ops")] {
        for group in ["engineering", "finance"] {
            for model in ["gpt-4o-mini", "gpt-4.1", "gpt-4o"] {
                for (input_tokens, tls, tools) in [
                    (10, true, vec![]),
                    (5000, true, vec!["exec".to_string()]),
                    (10, false, vec!["exec".to_string()]),
                ] {
                    let mut principal = agent("mixed-bot");
                    principal.fleet = fleet.map(Arc::from);
                    principal.groups = vec![Arc::from(group)];
                    let mut action = chat(principal, "openai", model);
                    action.context.tls = tls;
                    if let Some(llm) = action.context.facts.llm_mut() {
                        llm.input_tokens = input_tokens;
                        llm.tools = tools;
                    }
                    // Twice: the second answer comes from the cached fixed verdict.
                    let first = engine.decide(&action);
                    let second = engine.decide(&action);
                    assert_eq!(first, second);

                    let (cedar_allows, expected_ids) = cedar_answer(&engine, &whole, &action);
                    let (allowed, mut got_ids) = match &first {
                        Decision::Allow { policies } => (true, policies.clone()),
                        Decision::Deny { policies, .. } => (false, policies.clone()),
                        other => panic!("no approvals in this pack: {other:?}"),
                    };
                    got_ids.sort();
                    let got_ids: Vec<String> = got_ids.iter().map(|s| s.to_string()).collect();
                    let case = format!(
                        "fleet {fleet:?}, group {group}, {model}, {input_tokens} tokens, tls {tls}"
                    );
                    assert_eq!(allowed, cedar_allows, "{case}");
                    assert_eq!(got_ids, expected_ids, "{case}");
                    seen.insert((allowed, got_ids));
                }
            }
        }
    }
    assert!(
        seen.len() >= 5,
        "the matrix reaches allows and denies by fixed and per-request policies: {seen:?}"
    );
}

#[test]
fn a_principal_whose_claims_changed_is_judged_afresh() {
    let dir = pack(&[("mixed.cedar", MIXED)]);
    let engine = PolicyEngine::load(dir.path()).expect("loads");
    let mut principal = agent("shifty");
    principal.groups = vec![Arc::from("finance")];
    principal.fleet = Some(Arc::from("sales"));
    let sales = chat(principal.clone(), "openai", "gpt-4.1");
    assert!(matches!(engine.decide(&sales), Decision::Deny { .. }));
    // Same agent id, a new token with other claims: the cached verdict must not apply.
    principal.groups = vec![Arc::from("engineering")];
    principal.fleet = Some(Arc::from("research"));
    let research = chat(principal, "openai", "gpt-4.1");
    assert!(
        matches!(engine.decide(&research), Decision::Allow { .. }),
        "{:?}",
        engine.decide(&research)
    );
}

#[test]
fn only_a_scope_free_policy_becomes_a_conditions_expression() {
    let scoped = Policy::from_str(
        r#"forbid (principal, action == Action::"llm:chat", resource) when { context.input_tokens > 1 };"#,
    )
    .expect("parses");
    // The expression would drop the action constraint: the authorizer must judge it instead.
    assert!(scope_free_clauses(&scoped).is_none());
    let (_, unscoped) = split_scope(&scoped);
    let clauses = scope_free_clauses(&unscoped).expect("scope-free");
    assert!(conditions_expression(&clauses).is_some());
    assert!(NativeCondition::compile(&clauses).is_some());
}

// ---- the whole model: MCP, REST, egress, proposed tools, secrets, approvals ----------------

/// An action of `verb` by `principal` on `resource`, with `facts` and the usual common facts.
fn act(principal: Principal, verb: Verb, resource: Resource, facts: Facts) -> Action {
    let mut action = chat(principal, "openai", "gpt-4o");
    action.verb = verb;
    action.resource = resource;
    action.context.facts = facts;
    action
}

/// The facts of a proposed tool call that does nothing the baseline guards against.
fn proposed() -> Facts {
    Facts::Propose(Box::new(crate::action::ProposeFacts {
        command_parsed: true,
        ..Default::default()
    }))
}

/// The facts of a tool call with no arguments.
fn no_arguments() -> Facts {
    arguments(serde_json::json!({}))
}

/// The facts of a tool call with `arguments`.
fn arguments(arguments: serde_json::Value) -> Facts {
    Facts::Tool(ToolFacts {
        arguments: Arc::new(arguments),
    })
}

fn user(id: &str, groups: &[&str]) -> Principal {
    Principal {
        kind: PrincipalKind::User,
        groups: groups.iter().map(|g| Arc::from(*g)).collect(),
        environment: None,
        scopes: Vec::new(),
        ..agent(id)
    }
}

fn mcp_tool(server: &str, name: &str) -> Resource {
    Resource::Tool {
        server: Arc::from(server),
        name: name.to_owned(),
    }
}

fn operation(api: &str, name: &str, params: &[(&str, &str)]) -> Resource {
    Resource::Operation {
        api: Arc::from(api),
        name: Arc::from(name),
        params: params
            .iter()
            .map(|(k, v)| (Arc::from(*k), (*v).to_owned()))
            .collect(),
    }
}

fn host(name: &str) -> Resource {
    Resource::Host {
        name: name.to_owned(),
    }
}

fn agent_tool(name: &str, group: Option<&str>) -> Resource {
    Resource::AgentTool {
        name: name.to_owned(),
        group: group.map(Arc::from),
    }
}

fn http(method: &str, path: &str) -> Facts {
    Facts::Http(HttpFacts {
        method: method.into(),
        path: path.into(),
        fields: None,
        undeclared: Vec::new(),
    })
}

fn egress(port: u16, sni: Option<&str>) -> Facts {
    Facts::Egress(EgressFacts {
        port,
        addresses: vec![IpAddr::V4(Ipv4Addr::new(151, 101, 0, 223))],
        scheme: "https".into(),
        sni: sni.map(Into::into),
        method: None,
        path: None,
        server: None,
    })
}

fn approval(action: &str) -> Resource {
    owned_approval(action, None)
}

fn owned_approval(action: &str, owner: Option<&str>) -> Resource {
    Resource::Approval {
        id: Arc::from("a-1"),
        principal: Arc::from(r#"Agent::"ci-bot""#),
        action: Arc::from(action),
        resource: Arc::from(r#"Model::"anthropic/claude-opus-4-1""#),
        owner: owner.map(Arc::from),
    }
}

fn finding(detector: &str) -> Finding {
    Finding {
        detector: Arc::from(detector),
        location: "params.arguments.body".into(),
    }
}

/// Policies on every kind of action, by parent, attribute, tag and context fact.
const WHOLE_MODEL: &str = r#"
@id("github-read-tools")
permit (principal in AgentGroup::"engineering", action == Action::"mcp:call_tool", resource in McpServer::"github")
when { resource.name like "get_*" };

@id("github-list-tools")
permit (principal, action == Action::"mcp:list_tools", resource == McpServer::"github");

@id("mcp-servers")
permit (principal, action in [Action::"mcp:read_resource", Action::"mcp:get_prompt", Action::"mcp:complete"], resource);

@id("no-delete-tools")
@reason("tools that delete are refused")
forbid (principal, action == Action::"mcp:call_tool", resource)
when { resource has server && resource.name like "delete_*" };

@id("github-api")
permit (principal, action == Action::"http:request", resource in Api::"github")
when { context.method == "GET" || context.method == "POST" };

@id("acme-only")
@reason("acme repositories only")
forbid (principal, action == Action::"http:request", resource is Operation)
when { resource.hasTag("owner") && resource.getTag("owner") != "acme" };

@id("egress")
permit (principal, action in [Action::"egress:connect", Action::"egress:request"], resource)
when { resource.name like "*.pypi.org" || resource == Host::"pypi.org" };

@id("egress-443")
@reason("port 443 only")
forbid (principal, action == Action::"egress:connect", resource)
unless { context.port == 443 && context has sni && context.sni == resource.name };

@id("no-private-addresses")
@reason("private addresses")
forbid (principal, action == Action::"egress:connect", resource)
when { context.addresses.contains(ip("10.0.0.1")) };

@id("propose")
permit (principal, action == Action::"tool:propose", resource);

@id("no-shell")
@reason("no shell")
forbid (principal, action == Action::"tool:propose", resource in ToolGroup::"shell")
when { principal has environment && principal.environment == "prod" };

@id("ci-secrets")
permit (principal, action == Action::"secret:use", resource)
when { resource.path like "secret/ci/*" && context has client_certificate };

@id("sre-approves-llm")
permit (principal in Group::"sre", action == Action::"approval:decide", resource)
when { resource.action like "llm:*" && resource.principal == "Agent::\"ci-bot\"" };

@id("interns-agents-need-a-lead")
forbid (principal, action == Action::"approval:decide", resource)
when { resource has owner && resource.owner == "intern" && !(principal in Group::"leads") };

@id("no-canary")
@reason("a canary token leaves")
forbid (principal, action, resource)
when { context.findings.contains("canary") };

@id("certified-agents")
permit (principal, action == Action::"secret:use", resource)
when { principal has client_certificate && principal.client_certificate == "CN=vault-reader" };
"#;

fn whole_model() -> PolicyEngine {
    load(&[("whole.cedar", WHOLE_MODEL)]).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn mcp_tool_calls_are_judged_by_server_and_tool_name() {
    let engine = whole_model();
    let call = |name: &str| {
        engine.decide(&act(
            agent("dev-bot"),
            Verb::McpCallTool,
            mcp_tool("github", name),
            no_arguments(),
        ))
    };
    assert_eq!(
        call("get_issue"),
        Decision::Allow {
            policies: ids(&["github-read-tools"])
        }
    );
    assert_eq!(
        call("create_issue"),
        Decision::Deny {
            reasons: vec![
                r#"no policy permits mcp:call_tool on Tool::"github/create_issue" for Agent::"dev-bot""#
                    .into()
            ],
            policies: Vec::new(),
        }
    );
    assert_eq!(
        call("delete_repo"),
        Decision::Deny {
            reasons: vec!["tools that delete are refused".into()],
            policies: ids(&["no-delete-tools"]),
        }
    );
    // The same tool name on another server: the parent decides.
    let elsewhere = act(
        agent("dev-bot"),
        Verb::McpCallTool,
        mcp_tool("filesystem", "get_file"),
        no_arguments(),
    );
    assert_eq!(engine.decide(&elsewhere).label(), "deny");
    // Outside the group.
    let mut sales = agent("sales-bot");
    sales.groups = vec![Arc::from("sales")];
    let outsider = act(
        sales,
        Verb::McpCallTool,
        mcp_tool("github", "get_issue"),
        no_arguments(),
    );
    assert_eq!(engine.decide(&outsider).label(), "deny");
}

#[test]
fn mcp_server_actions_are_judged_on_the_server() {
    let engine = whole_model();
    let server = |name: &str| Resource::McpServer {
        name: Arc::from(name),
    };
    let on = |verb: Verb, name: &str| {
        let facts = match verb {
            Verb::McpListTools | Verb::McpReadResource => Facts::None,
            _ => no_arguments(),
        };
        engine
            .decide(&act(agent("dev-bot"), verb, server(name), facts))
            .policy_ids()
    };
    assert_eq!(
        on(Verb::McpListTools, "github"),
        ids(&["github-list-tools"])
    );
    assert!(on(Verb::McpListTools, "filesystem").is_empty());
    for verb in [Verb::McpReadResource, Verb::McpGetPrompt, Verb::McpComplete] {
        assert_eq!(on(verb, "filesystem"), ids(&["mcp-servers"]));
    }
}

#[test]
fn rest_operations_are_judged_by_api_method_and_path_parameters() {
    let engine = whole_model();
    let create = |owner: &str, method: &str| {
        act(
            agent("dev-bot"),
            Verb::HttpRequest,
            operation(
                "github",
                "issues.create",
                &[("owner", owner), ("repo", "app")],
            ),
            http(method, "/repos/x/app/issues"),
        )
    };
    assert_eq!(
        engine.decide(&create("acme", "POST")),
        Decision::Allow {
            policies: ids(&["github-api"])
        }
    );
    assert_eq!(
        engine.decide(&create("evil", "POST")),
        Decision::Deny {
            reasons: vec!["acme repositories only".into()],
            policies: ids(&["acme-only"]),
        }
    );
    assert_eq!(engine.decide(&create("acme", "DELETE")).label(), "deny");
    // An operation without the parameter, and the API itself.
    let bare = act(
        agent("dev-bot"),
        Verb::HttpRequest,
        operation("github", "meta.get", &[]),
        http("GET", "/meta"),
    );
    assert_eq!(engine.decide(&bare).label(), "allow");
    let api = act(
        agent("dev-bot"),
        Verb::HttpRequest,
        Resource::Api {
            name: Arc::from("github"),
        },
        http("GET", "/rate_limit"),
    );
    assert_eq!(engine.decide(&api).label(), "allow");
}

#[test]
fn egress_is_judged_by_host_port_sni_and_addresses() {
    let engine = whole_model();
    let connect = |name: &str, port: u16, sni: Option<&str>| {
        engine.decide(&act(
            agent("dev-bot"),
            Verb::EgressConnect,
            host(name),
            egress(port, sni),
        ))
    };
    assert_eq!(
        connect("pypi.org", 443, Some("pypi.org")),
        Decision::Allow {
            policies: ids(&["egress"])
        }
    );
    assert_eq!(
        connect("files.pypi.org", 443, Some("files.pypi.org")).label(),
        "allow"
    );
    assert_eq!(
        connect("pypi.org", 22, Some("pypi.org")).policy_ids(),
        ids(&["egress-443"])
    );
    // A tunnel whose TLS names another host, or none.
    assert_eq!(
        connect("pypi.org", 443, Some("attacker.example")).policy_ids(),
        ids(&["egress-443"])
    );
    assert_eq!(
        connect("pypi.org", 443, None).policy_ids(),
        ids(&["egress-443"])
    );
    assert_eq!(
        connect("attacker.example", 443, Some("attacker.example")).label(),
        "deny"
    );
    let mut private = act(
        agent("dev-bot"),
        Verb::EgressConnect,
        host("pypi.org"),
        egress(443, Some("pypi.org")),
    );
    if let Facts::Egress(e) = &mut private.context.facts {
        e.addresses.push(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
    }
    assert_eq!(
        engine.decide(&private).policy_ids(),
        ids(&["no-private-addresses"])
    );
    // A plain request is not held to the CONNECT rules.
    let request = act(
        agent("dev-bot"),
        Verb::EgressRequest,
        host("pypi.org"),
        egress(80, None),
    );
    assert_eq!(engine.decide(&request).label(), "allow");
}

#[test]
fn proposed_tools_are_judged_by_their_group_and_the_agent() {
    let engine = whole_model();
    let propose = |principal: Principal, tool: Resource| {
        engine
            .decide(&act(principal, Verb::ToolPropose, tool, proposed()))
            .policy_ids()
    };
    let prod = agent("prod-bot");
    let mut staging = agent("staging-bot");
    staging.environment = Some(Arc::from("staging"));
    assert_eq!(
        propose(prod.clone(), agent_tool("exec", Some("shell"))),
        ids(&["no-shell"])
    );
    assert_eq!(
        propose(staging, agent_tool("exec", Some("shell"))),
        ids(&["propose"])
    );
    assert_eq!(
        propose(prod.clone(), agent_tool("write", Some("files"))),
        ids(&["propose"])
    );
    // A tool the catalogue puts in no group.
    assert_eq!(propose(prod, agent_tool("exec", None)), ids(&["propose"]));
}

#[test]
fn secrets_are_judged_by_path_and_client_certificates() {
    let engine = whole_model();
    let secret = |path: &str| Resource::Secret {
        path: path.to_owned(),
    };
    let mut with_cert = act(
        agent("ci-bot"),
        Verb::SecretUse,
        secret("secret/ci/github"),
        Facts::None,
    );
    with_cert.context.client_certificate = Some(Arc::from("CN=ci-bot"));
    assert_eq!(engine.decide(&with_cert).policy_ids(), ids(&["ci-secrets"]));
    let mut without = with_cert.clone();
    without.context.client_certificate = None;
    assert_eq!(engine.decide(&without).label(), "deny");
    let mut elsewhere = with_cert.clone();
    elsewhere.resource = secret("secret/payments/stripe");
    assert_eq!(engine.decide(&elsewhere).label(), "deny");
    // The principal's certificate is an attribute of the agent.
    let mut reader = agent("reader");
    reader.client_certificate = Some(Arc::from("CN=vault-reader"));
    let by_principal = act(
        reader,
        Verb::SecretUse,
        secret("secret/payments/stripe"),
        Facts::None,
    );
    assert_eq!(
        engine.decide(&by_principal).policy_ids(),
        ids(&["certified-agents"])
    );
}

#[test]
fn approvals_are_decided_by_users_on_what_waits() {
    let engine = whole_model();
    let decide = |principal: Principal, action: &str| {
        engine.decide(&act(
            principal,
            Verb::ApprovalDecide,
            approval(action),
            Facts::None,
        ))
    };
    assert_eq!(
        decide(user("alice", &["sre"]), "llm:chat").policy_ids(),
        ids(&["sre-approves-llm"])
    );
    assert_eq!(
        decide(user("alice", &["sre"]), "secret:use").label(),
        "deny"
    );
    assert_eq!(decide(user("bob", &["sales"]), "llm:chat").label(), "deny");
    // Policy sees whose agent waits.
    let owned = |principal: Principal, owner: &str| {
        engine.decide(&act(
            principal,
            Verb::ApprovalDecide,
            owned_approval("llm:chat", Some(owner)),
            Facts::None,
        ))
    };
    assert_eq!(owned(user("alice", &["sre"]), "dave").label(), "allow");
    assert_eq!(
        owned(user("alice", &["sre"]), "intern").policy_ids(),
        ids(&["interns-agents-need-a-lead"])
    );
    assert_eq!(
        owned(user("alice", &["sre", "leads"]), "intern").label(),
        "allow"
    );
    // An agent is no approver: the schema says approval:decide is for users.
    let Decision::Deny { reasons, policies } = decide(agent("ci-bot"), "llm:chat") else {
        panic!("an agent must not decide approvals");
    };
    assert!(policies.is_empty());
    assert!(
        reasons[0].contains("the schema allows approval:decide for User on Approval only"),
        "{reasons:?}"
    );
}

#[test]
fn a_finding_is_refused_on_every_kind_of_action() {
    let engine = whole_model();
    let actions = [
        act(
            agent("dev-bot"),
            Verb::McpCallTool,
            mcp_tool("github", "get_issue"),
            no_arguments(),
        ),
        act(
            agent("dev-bot"),
            Verb::HttpRequest,
            operation("github", "issues.create", &[("owner", "acme")]),
            http("POST", "/repos/acme/app/issues"),
        ),
        act(
            agent("dev-bot"),
            Verb::EgressRequest,
            host("pypi.org"),
            egress(443, None),
        ),
        act(
            agent("dev-bot"),
            Verb::ToolPropose,
            agent_tool("write", None),
            proposed(),
        ),
    ];
    for mut action in actions {
        assert_eq!(engine.decide(&action).label(), "allow", "{}", action.verb);
        action.context.findings = Findings(vec![finding("email"), finding("canary")]);
        assert_eq!(
            engine.decide(&action),
            Decision::Deny {
                reasons: vec!["a canary token leaves".into()],
                policies: ids(&["no-canary"]),
            },
            "{}",
            action.verb
        );
    }
}

#[test]
fn the_whole_model_gives_cedars_answer() {
    let engine = whole_model();
    let whole = PolicySet::from_str(WHOLE_MODEL).expect("parses");
    let mut cert = agent("reader");
    cert.client_certificate = Some(Arc::from("CN=vault-reader"));
    let mut actions = vec![
        act(
            agent("a"),
            Verb::McpCallTool,
            mcp_tool("github", "get_issue"),
            no_arguments(),
        ),
        act(
            agent("a"),
            Verb::McpCallTool,
            mcp_tool("github", "delete_repo"),
            no_arguments(),
        ),
        act(
            agent("a"),
            Verb::HttpRequest,
            operation("github", "issues.create", &[("owner", "evil")]),
            http("POST", "/"),
        ),
        act(
            agent("a"),
            Verb::EgressConnect,
            host("pypi.org"),
            egress(443, Some("pypi.org")),
        ),
        act(
            agent("a"),
            Verb::EgressConnect,
            host("pypi.org"),
            egress(8443, None),
        ),
        act(
            agent("a"),
            Verb::ToolPropose,
            agent_tool("exec", Some("shell")),
            proposed(),
        ),
        act(
            cert,
            Verb::SecretUse,
            Resource::Secret {
                path: "secret/ci/x".into(),
            },
            Facts::None,
        ),
        act(
            user("alice", &["sre"]),
            Verb::ApprovalDecide,
            approval("llm:embed"),
            Facts::None,
        ),
    ];
    let with_findings: Vec<Action> = actions
        .iter()
        .map(|a| {
            let mut a = a.clone();
            a.context.findings = Findings(vec![finding("canary")]);
            a.context.client_certificate = Some(Arc::from("CN=a"));
            a
        })
        .collect();
    actions.extend(with_findings);
    let mut seen = std::collections::HashSet::new();
    for action in &actions {
        let decision = engine.decide(action);
        let (allows, expected) = cedar_answer(&engine, &whole, action);
        let mut got: Vec<String> = decision
            .policy_ids()
            .iter()
            .map(|s| s.to_string())
            .collect();
        got.sort();
        assert_eq!(decision.label() == "allow", allows, "{action:?}");
        assert_eq!(got, expected, "{action:?}");
        seen.insert((allows, got));
    }
    assert!(seen.len() >= 8, "{seen:?}");
}

#[test]
fn resource_types_the_schema_does_not_allow_are_denied_with_the_reason() {
    let engine = load(&[(
        "p.cedar",
        "@id(\"all\") permit (principal, action, resource);",
    )])
    .unwrap_or_else(|e| panic!("{e}"));
    let cases = [
        (
            act(agent("a"), Verb::McpCallTool, host("pypi.org"), Facts::None),
            "the schema allows mcp:call_tool for Agent on Tool only",
        ),
        (
            act(
                agent("a"),
                Verb::EgressConnect,
                mcp_tool("github", "x"),
                egress(443, None),
            ),
            "the schema allows egress:connect for Agent on Host only",
        ),
        (
            act(
                agent("a"),
                Verb::LlmChat,
                Resource::Provider {
                    name: Arc::from("openai"),
                },
                chat(agent("a"), "openai", "gpt-4o").context.facts,
            ),
            "the schema allows llm:chat for Agent on Model only",
        ),
        (
            act(
                user("u", &[]),
                Verb::SecretUse,
                Resource::Secret { path: "s".into() },
                Facts::None,
            ),
            "the schema allows secret:use for Agent on Secret only",
        ),
    ];
    for (action, why) in cases {
        let Decision::Deny { reasons, policies } = engine.decide(&action) else {
            panic!(
                "{} on {} must be denied",
                action.verb,
                action.resource.cedar_ref()
            );
        };
        assert!(policies.is_empty());
        assert!(reasons[0].starts_with("no policy permits"), "{reasons:?}");
        assert!(reasons[0].contains(why), "{reasons:?}");
    }
}

#[test]
fn an_action_with_facts_of_another_kind_is_denied_not_judged() {
    let engine = load(&[(
        "p.cedar",
        "@id(\"all\") permit (principal, action, resource);\n\
         @id(\"delete\") forbid (principal, action == Action::\"http:request\", resource) \
         when { context.method == \"DELETE\" };",
    )])
    .unwrap_or_else(|e| panic!("{e}"));
    // A REST call without its method would skip the forbid: refused instead.
    let verdict = engine.evaluate(&act(
        agent("a"),
        Verb::HttpRequest,
        operation("github", "repos.delete", &[]),
        Facts::None,
    ));
    let Decision::Deny { reasons, policies } = &verdict.decision else {
        panic!("{verdict:?}");
    };
    assert!(policies.is_empty());
    assert!(
        reasons[0].contains("request could not be judged")
            && reasons[0].contains("RequestContext")
            && reasons[0].contains("HttpContext"),
        "{reasons:?}"
    );
    assert_eq!(verdict.errors.len(), 1);
}

#[test]
fn a_connector_operation_declared_in_the_schema_is_judged_by_its_own_name() {
    let dir = pack(&[(
        "p.cedar",
        r#"@id("create") permit (principal, action == Action::"github:issues.create", resource in Api::"github");
           @id("not-on-friday") forbid (principal, action == Action::"github:issues.create", resource)
           when { context.method == "POST" && context.weekday == 4 };"#,
    )]);
    let schema_path = dir.path().join(SCHEMA_FILE);
    let mut schema = std::fs::read_to_string(&schema_path).expect("read");
    schema.push_str(
        "\naction \"github:issues.create\" appliesTo {\n  principal: [Agent],\n  \
         resource: [Operation],\n  context: HttpContext,\n};\n",
    );
    std::fs::write(&schema_path, schema).expect("write");
    let engine = PolicyEngine::load(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let verb = Verb::Operation(Arc::from("github:issues.create"));
    let mut action = act(
        agent("a"),
        verb,
        operation("github", "issues.create", &[("owner", "acme")]),
        http("POST", "/repos/acme/app/issues"),
    );
    assert_eq!(engine.decide(&action).policy_ids(), ids(&["create"]));
    // Friday 2026-11-06.
    action.context.time += Duration::from_secs(4 * 86_400);
    assert_eq!(engine.decide(&action).policy_ids(), ids(&["not-on-friday"]));
    // An operation the schema does not declare.
    let unknown = act(
        agent("a"),
        Verb::Operation(Arc::from("github:repos.delete")),
        operation("github", "repos.delete", &[]),
        http("DELETE", "/repos/acme/app"),
    );
    let Decision::Deny { reasons, .. } = engine.decide(&unknown) else {
        panic!("an undeclared operation must be denied");
    };
    assert!(
        reasons[0].contains("the schema does not declare github:repos.delete"),
        "{reasons:?}"
    );
}

#[test]
fn an_action_of_a_connector_no_route_uses_says_to_add_the_route() {
    let policies =
        r#"@id("issues") permit (principal, action == Action::"github:issues.create", resource);"#;
    let dir = pack(&[("p.cedar", policies)]);
    let err = PolicyEngine::load_with(dir.path(), &[])
        .expect_err("github's actions are not declared")
        .to_string();
    assert!(
        err.contains("no route uses `connector: github`")
            && err.contains("pass --config with a route that has `connector: github`"),
        "{err}"
    );
    assert!(!err.contains("did you mean"), "{err}");
    // With github's actions declared, a misspelt one keeps Cedar's guess.
    let typo = pack(&[(
        "p.cedar",
        r#"@id("issues") permit (principal, action == Action::"github:issues.creat", resource);"#,
    )]);
    let fragments = actions_named_in(&built_in_connector_actions(), policies);
    let err = PolicyEngine::load_with(typo.path(), &fragments)
        .expect_err("a misspelt action")
        .to_string();
    assert!(err.contains("did you mean"), "{err}");
    assert!(!err.contains("no route uses"), "{err}");
}

#[test]
fn a_connectors_actions_are_declared_by_its_fragment_and_judged_on_tags_and_fields() {
    let all = built_in_connector_actions();
    let fragments: Vec<SchemaFragment> = all
        .iter()
        .filter(|f| f.text.contains("\"github:") || f.text.contains("\"slack:"))
        .cloned()
        .collect();
    let dir = pack(&[(
        "p.cedar",
        r#"@id("app-issues") permit (principal, action == Action::"github:issues.create", resource)
           when { resource.hasTag("repo") && resource.getTag("repo") == "app" };
           @id("slack-read") permit (principal, action in Action::"slack:read", resource);
           @id("post") permit (principal, action == Action::"slack:chat.postMessage", resource);
           @id("secret-channel") forbid (principal, action == Action::"slack:chat.postMessage", resource)
           when { context.fields has channel && context.fields.channel == "C-SECRET" };"#,
    )]);
    let engine = PolicyEngine::load_with(dir.path(), &fragments).unwrap_or_else(|e| panic!("{e}"));
    let issue = |repo: &str| {
        act(
            agent("a"),
            Verb::Operation(Arc::from("github:issues.create")),
            operation(
                "github",
                "issues.create",
                &[("owner", "acme"), ("repo", repo)],
            ),
            http("POST", "/repos/acme/app/issues"),
        )
    };
    assert_eq!(
        engine.decide(&issue("app")).policy_ids(),
        ids(&["app-issues"])
    );
    assert!(matches!(
        engine.decide(&issue("payroll")),
        Decision::Deny { .. }
    ));
    let post = |channel: &str| {
        act(
            agent("a"),
            Verb::Operation(Arc::from("slack:chat.postMessage")),
            operation("slack", "chat.postMessage", &[]),
            Facts::Http(HttpFacts {
                method: "POST".into(),
                path: "/chat.postMessage".into(),
                fields: Some(vec![(
                    Arc::from("channel"),
                    crate::action::FieldValue::String(channel.into()),
                )]),
                undeclared: Vec::new(),
            }),
        )
    };
    assert_eq!(engine.decide(&post("C1")).policy_ids(), ids(&["post"]));
    assert_eq!(
        engine.decide(&post("C-SECRET")).policy_ids(),
        ids(&["secret-channel"])
    );
    // The same pair judged under two operations (a policy test may ask): each its own verdict.
    let mut listed = post("C1");
    listed.verb = Verb::Operation(Arc::from("slack:conversations.list"));
    assert_eq!(engine.decide(&listed).policy_ids(), ids(&["slack-read"]));
    assert_eq!(engine.decide(&post("C1")).policy_ids(), ids(&["post"]));

    // Without the fragments, a policy naming a connector action does not validate.
    let err = PolicyEngine::load(dir.path()).expect_err("undeclared actions");
    assert!(err.to_string().contains("github:issues.create"), "{err}");
    // A policy naming a field the operation does not have is refused at load, or, guarded,
    // warned about as one that can never apply.
    let typo = pack(&[(
        "p.cedar",
        r#"@id("typo") forbid (principal, action == Action::"slack:chat.postMessage", resource)
           when { context.fields.chanel == "C1" };"#,
    )]);
    let err = PolicyEngine::load_with(typo.path(), &fragments).expect_err("unknown field");
    assert!(err.to_string().contains("p.cedar:2"), "{err}");
    let guarded = pack(&[(
        "p.cedar",
        r#"@id("typo") forbid (principal, action == Action::"slack:chat.postMessage", resource)
           when { context.fields has chanel && context.fields.chanel == "C1" };"#,
    )]);
    let engine =
        PolicyEngine::load_with(guarded.path(), &fragments).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !engine.warnings().is_empty(),
        "an impossible policy is reported"
    );
}

#[test]
fn a_schema_action_with_a_context_warden_does_not_build_is_refused() {
    let dir = pack(&[("p.cedar", PERMIT_ALL)]);
    let schema_path = dir.path().join(SCHEMA_FILE);
    let mut schema = std::fs::read_to_string(&schema_path).expect("read");
    schema.push_str(
        "\naction \"github:issues.create\" appliesTo {\n  principal: [Agent],\n  \
         resource: [Operation],\n  context: RequestContext,\n};\n",
    );
    std::fs::write(&schema_path, schema).expect("write");
    let err = PolicyEngine::load(dir.path()).expect_err("mismatched schema");
    let text = err.to_string();
    assert!(
        text.contains("schema does not match what Warden sends for `github:issues.create`")
            && text.contains("HttpContext"),
        "{text}"
    );
}

#[test]
fn a_schema_without_one_of_wardens_actions_is_refused() {
    let dir = pack(&[("p.cedar", PERMIT_ALL)]);
    let schema_path = dir.path().join(SCHEMA_FILE);
    let schema = std::fs::read_to_string(&schema_path).expect("read");
    let edited = schema.replace(
        "action \"tool:propose\" appliesTo",
        "action \"tool:proposed\" appliesTo",
    );
    assert_ne!(schema, edited);
    std::fs::write(&schema_path, edited).expect("write");
    let err = PolicyEngine::load(dir.path()).expect_err("incomplete schema");
    let text = err.to_string();
    assert!(
        text.contains("what Warden sends for `tool:propose`: the schema does not declare it"),
        "{text}"
    );
}

#[test]
fn a_schema_whose_entities_lack_an_attribute_warden_sends_is_refused() {
    let dir = pack(&[("p.cedar", PERMIT_ALL)]);
    let schema_path = dir.path().join(SCHEMA_FILE);
    let schema = std::fs::read_to_string(&schema_path).expect("read");
    let edited = schema.replace("} tags String;", "};");
    assert_ne!(schema, edited);
    std::fs::write(&schema_path, edited).expect("write");
    let err = PolicyEngine::load(dir.path()).expect_err("schema without tags");
    let text = err.to_string();
    assert!(
        text.contains("what Warden sends for `http:request`") && text.contains("Operation"),
        "{text}"
    );
}

#[test]
fn the_baseline_lets_an_agent_describe_a_model_and_a_forbid_refuses_it() {
    let models = |resource: Resource| {
        let mut action = chat(agent("ci-bot"), "openai", "gpt-4o");
        action.verb = Verb::LlmModels;
        action.resource = resource;
        action
    };
    let gpt4o = Resource::Model {
        provider: Arc::from("openai"),
        name: "gpt-4o".into(),
    };
    let engine = PolicyEngine::load(&repo_policies()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        engine.decide(&models(gpt4o.clone())),
        Decision::Allow {
            policies: ids(&["baseline-list-models"])
        }
    );
    assert_eq!(
        engine.decide(&models(Resource::Provider {
            name: Arc::from("openai")
        })),
        Decision::Allow {
            policies: ids(&["baseline-list-models"])
        }
    );
    let dir = repo_policies();
    let forbid = pack(&[(
        "no-4o.cedar",
        "@id(\"hide-4o\") @reason(\"gpt-4o is not offered\")\n\
         forbid (principal, action == Action::\"llm:models\", resource == Model::\"openai/gpt-4o\");",
    )]);
    std::fs::copy(
        dir.join("baseline.cedar"),
        forbid.path().join("baseline.cedar"),
    )
    .expect("copy");
    let engine = PolicyEngine::load(forbid.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        engine.decide(&models(gpt4o)),
        Decision::Deny {
            reasons: vec!["gpt-4o is not offered".into()],
            policies: ids(&["hide-4o"]),
        }
    );
}

#[test]
fn every_example_passes_its_own_decision_cases_on_top_of_the_baseline() {
    let dir = repo_policies();
    let cases: Vec<PathBuf> = std::fs::read_dir(dir.join("examples/tests"))
        .expect("examples/tests")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    assert!(!cases.is_empty(), "the examples have decision cases");
    for case_file in cases {
        let stem = case_file
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("name");
        let example = dir.join("examples").join(format!("{stem}.cedar"));
        let text = std::fs::read_to_string(&example)
            .unwrap_or_else(|e| panic!("{} has no example beside it: {e}", case_file.display()));
        let cases_text = std::fs::read_to_string(&case_file).expect("cases");
        let baseline = std::fs::read_to_string(dir.join("baseline.cedar")).expect("baseline");
        let connectors = actions_named_in(&built_in_connector_actions(), &text);
        let mut files = vec![
            ("baseline.cedar".to_owned(), baseline),
            (format!("{stem}.cedar"), text),
            (format!("tests/{stem}.yaml"), cases_text),
        ];
        // The examples' schema fragments come along.
        for entry in std::fs::read_dir(dir.join("examples")).expect("examples") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|x| x == "cedarschema") {
                let name = path.file_name().and_then(|n| n.to_str()).expect("name");
                files.push((
                    name.to_owned(),
                    std::fs::read_to_string(&path).expect("read"),
                ));
            }
        }
        let files: Vec<(&str, &str)> = files
            .iter()
            .map(|(name, text)| (name.as_str(), text.as_str()))
            .collect();
        let assembled = pack(&files);
        let report = crate::policy::testing::run_tests_with(assembled.path(), &connectors)
            .unwrap_or_else(|e| panic!("{stem}: {e}"));
        assert!(report.cases.len() >= 10, "{stem} needs real coverage");
        assert_eq!(report.failed(), 0, "{stem}:\n{report}");
    }
}

#[test]
fn test_cases_name_every_kind_of_resource_and_fact() {
    let dir = pack(&[
        ("p.cedar", WHOLE_MODEL),
        (
            "tests/whole.yaml",
            r#"cases:
  - name: mcp tool
    principal: { id: a, groups: [engineering] }
    action: mcp:call_tool
    resource: { server: github, tool: get_issue }
    expect: allow
    policies: [github-read-tools]
  - name: operation with params and http facts
    principal: { id: a }
    action: http:request
    resource: { api: github, operation: issues.create, params: { owner: evil } }
    context: { method: POST, path: /repos/evil/x/issues }
    expect: deny
    policies: [acme-only]
  - name: egress facts
    principal: { id: a }
    action: egress:connect
    resource: { host: pypi.org }
    context: { port: 443, sni: pypi.org, addresses: [10.0.0.1] }
    expect: deny
    policies: [no-private-addresses]
  - name: agent tool in a group
    principal: { id: a, environment: prod }
    action: tool:propose
    resource: { tool: exec, group: shell }
    expect: deny
    policies: [no-shell]
  - name: secret with a certificate on the connection
    principal: { id: a }
    action: secret:use
    resource: { secret: secret/ci/x }
    context: { client_certificate: CN=a }
    expect: allow
    policies: [ci-secrets]
  - name: secret with a certificate on the principal
    principal: { id: a, client_certificate: CN=vault-reader }
    action: secret:use
    resource: { secret: secret/other }
    expect: allow
    policies: [certified-agents]
  - name: approval
    principal: { id: alice, kind: user, groups: [sre] }
    action: approval:decide
    resource: { approval: a-1, principal: 'Agent::"ci-bot"', action: llm:chat, resource: 'Model::"openai/gpt-4o"' }
    expect: allow
  - name: finding
    principal: { id: a }
    action: mcp:list_tools
    resource: { server: github }
    context: { findings: [canary] }
    expect: deny
    policies: [no-canary]
"#,
        ),
    ]);
    let report = run_tests(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((report.passed(), report.failed()), (8, 0), "\n{report}");
}

#[test]
fn test_cases_that_misname_a_resource_or_a_fact_say_what_to_write() {
    let case = |action: &str, resource: &str, context: &str| {
        format!(
            "  - name: c\n    principal: {{ id: a }}\n    action: {action}\n    resource: {resource}\n    context: {context}\n    expect: deny\n"
        )
    };
    let dir = pack(&[
        ("p.cedar", PERMIT_ALL),
        (
            "tests/bad.yaml",
            &format!(
                "cases:\n{}{}{}{}{}",
                case("mcp:call_tool", "{ provider: openai, model: gpt-4o }", "{}"),
                case("egress:connect", "{ host: pypi.org, tool: exec }", "{}"),
                case("egress:connect", "{ host: pypi.org }", "{ stream: true }"),
                case(
                    "llm:chat",
                    "{ provider: openai, model: gpt-4o }",
                    "{ port: 443, sni: x }"
                ),
                case(
                    "egress:connect",
                    "{ host: pypi.org }",
                    "{ addresses: [not-an-ip] }"
                ),
            ),
        ),
    ]);
    let err = run_tests(dir.path()).expect_err("bad cases");
    let PolicyTestError::BadTestFiles(errors) = &err else {
        panic!("{err}")
    };
    let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(messages.len(), 5, "{err}");
    assert!(
        messages[0].contains("resource is a Model; mcp:call_tool acts on Tool: write")
            && messages[0].contains("resource: { server: github, tool: create_issue }")
            && messages[0].contains("resource: { tool: exec, group: shell }"),
        "{}",
        messages[0]
    );
    assert!(
        messages[1].ends_with(
            "resource { tool, host } is no resource Warden knows; \
             egress:connect acts on Host: write resource: { host: pypi.org }"
        ),
        "{}",
        messages[1]
    );
    assert!(
        messages[2]
            .contains("context: stream not in the context of egress:connect (EgressContext)")
            && messages[2].contains("port, addresses, scheme, sni"),
        "{}",
        messages[2]
    );
    assert!(
        messages[3].contains("context: port, sni not in the context of llm:chat (LlmContext)"),
        "{}",
        messages[3]
    );
    assert!(
        messages[4].contains("`not-an-ip` is not an IP address"),
        "{}",
        messages[4]
    );
}

#[test]
fn a_policy_on_every_action_reads_the_facts_of_one_kind_behind_has() {
    let err = load(&[(
        "p.cedar",
        "@id(\"exec\")\nforbid (principal, action, resource) when { context.tools.contains(\"exec\") };",
    )])
    .expect_err("`tools` is not in every action's context");
    let text = err.to_string();
    assert!(
        text.contains(r#"attribute `tools` in context for Action::"mcp:call_tool" not found"#),
        "{text}"
    );
    let engine = load(&[(
        "p.cedar",
        "@id(\"all\") permit (principal, action, resource);\n\
         @id(\"exec\")\nforbid (principal, action, resource) \
         when { context has tools && context.tools.contains(\"exec\") };",
    )])
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        engine
            .decide(&chat(agent("a"), "openai", "gpt-4o"))
            .policy_ids(),
        ids(&["exec"])
    );
    let tool = act(
        agent("a"),
        Verb::McpCallTool,
        mcp_tool("github", "exec"),
        no_arguments(),
    );
    assert_eq!(engine.decide(&tool).policy_ids(), ids(&["all"]));
}

#[test]
fn a_deny_only_redact_forbids_determine_asks_for_the_detectors_they_name() {
    let engine = load(&[(
        "p.cedar",
        &format!(
            "{PERMIT_ALL}\n@id(\"redact-mail\")\n@on_match(\"redact\")\n\
             forbid (principal, action, resource) when {{ context.findings.containsAny([\"email\", \"phone\"]) }};\n\
             @id(\"no-gpt-4o\")\nforbid (principal, action, resource == Model::\"openai/gpt-4o\");"
        ),
    )])
    .unwrap_or_else(|e| panic!("{e}"));
    let deny = |policies: &[&str]| Decision::Deny {
        reasons: Vec::new(),
        policies: ids(policies),
    };
    assert_eq!(
        engine.redaction(&deny(&["redact-mail"])),
        Some(vec!["email", "phone"])
    );
    // Deny wins: another forbid took part, or nothing permitted.
    assert_eq!(engine.redaction(&deny(&["redact-mail", "no-gpt-4o"])), None);
    assert_eq!(engine.redaction(&deny(&[])), None);
    assert!(!engine.policy("redact-mail").unwrap().quarantines());
    let error = load(&[(
        "p.cedar",
        "@on_match(\"redact\")\npermit (principal, action, resource);",
    )])
    .unwrap_err()
    .to_string();
    assert!(error.contains("applies to forbid policies only"), "{error}");
}

#[test]
fn on_match_quarantine_marks_forbids_and_is_refused_on_permits_or_unknown_values() {
    let engine = load(&[(
        "p.cedar",
        &format!(
            "{PERMIT_ALL}\n@id(\"no-gpt-4o\")\n@on_match(\"quarantine\")\n\
             forbid (principal, action == Action::\"llm:chat\", resource == Model::\"openai/gpt-4o\");"
        ),
    )])
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(engine.policy("no-gpt-4o").unwrap().quarantines());
    for (text, expected) in [
        (
            "@on_match(\"quarantine\")\npermit (principal, action, resource);",
            "applies to forbid policies only",
        ),
        (
            "@on_match(\"quarantaine\")\nforbid (principal, action, resource);",
            "is not understood",
        ),
    ] {
        let error = load(&[("p.cedar", text)]).unwrap_err().to_string();
        assert!(error.contains(expected), "{error}");
    }
}

#[test]
fn a_shadow_policy_that_reads_the_addresses_needs_them_looked_up() {
    let by_name = r#"
@id("egress-allowed")
permit (principal, action == Action::"egress:connect", resource == Host::"allowed.test");
"#;
    let by_address = r#"
@id("egress-not-private")
@mode("shadow")
forbid (principal, action == Action::"egress:connect", resource)
when { context.addresses.contains(ip("10.0.0.1")) };
"#;
    let engine = load(&[("egress.cedar", by_name)]).unwrap_or_else(|e| panic!("{e}"));
    assert!(!engine.reads_addresses());
    let engine = load(&[("egress.cedar", by_name), ("shadow.cedar", by_address)])
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(engine.reads_addresses(), "its shadow set reads them");
}

/// A policy on every action is prepared once per load and shared by each action's slice:
/// loading a connector's thousand actions does not redo a policy's preparation (converting,
/// splitting and re-parsing its conditions) a thousand times.
#[test]
fn a_policy_on_every_action_is_prepared_once_and_shared_by_their_slices() {
    let dir = pack(&[(
        "any.cedar",
        r#"
@id("any-action-on-session")
forbid (principal, action, resource)
when { context has session && context.session.read_private };
"#,
    )]);
    let engine = PolicyEngine::load(dir.path()).expect("loads");
    let shared: Vec<&Arc<Condition>> = engine
        .slices
        .iter()
        .filter_map(|s| s.conditions.values().next())
        .collect();
    assert!(shared.len() > 10, "the policy applies to every action");
    assert!(
        shared.iter().all(|c| Arc::ptr_eq(c, shared[0])),
        "each slice holds the same prepared condition"
    );
    let scopes: usize = engine
        .slices
        .iter()
        .map(|s| s.scopes.policies().count())
        .sum();
    assert_eq!(scopes, shared.len(), "its scope is in each slice once");
}

// ---- what MCP servers answer: mcp:receive_result ------------------------------------------

/// The answer of `tool` on `server` in which the detectors found `detectors`.
fn answer(server: &str, tool: &str, detectors: &[&str]) -> Action {
    let mut action = act(
        agent("a"),
        Verb::McpReceiveResult,
        mcp_tool(server, tool),
        Facts::Answer(crate::action::AnswerFacts {
            server: server.into(),
            method: "tools/call".into(),
            locations: vec!["result.content[0].text".into()],
            arguments: Some(Arc::new(serde_json::json!({}))),
            uri: None,
        }),
    );
    action.context.findings = Findings(
        detectors
            .iter()
            .map(|d| Finding {
                detector: Arc::from(*d),
                location: "result.content[0].text".into(),
            })
            .collect(),
    );
    action
}

const WITHHOLD_INJECTIONS: &str = r#"
@id("withhold-injected-answers")
@reason("the answer carries instructions aimed at the model")
forbid (principal, action == Action::"mcp:receive_result", resource)
when { context.findings.contains("tool_instruction_override") && context.method == "tools/call"
       && context.locations.contains("result.content[0].text") };
"#;

#[test]
fn an_answer_is_withheld_only_when_a_forbid_holds_and_needs_no_permit() {
    let engine = load(&[("answers.cedar", WITHHOLD_INJECTIONS)]).expect("loads");
    assert!(engine.judges_answers());
    match engine.decide(&answer("web", "fetch", &["tool_instruction_override"])) {
        Decision::Deny { reasons, policies } => {
            assert_eq!(policies, ids(&["withhold-injected-answers"]));
            assert_eq!(
                reasons,
                ["the answer carries instructions aimed at the model"]
            );
        }
        other => panic!("withheld: {other:?}"),
    }
    // No permit names answers: a clean one passes all the same (not a default deny).
    assert_eq!(
        engine.decide(&answer("web", "fetch", &["email_address"])),
        Decision::Allow {
            policies: Vec::new()
        }
    );
}

#[test]
fn answers_are_judged_only_when_a_policy_names_the_action() {
    // The baseline's permits and forbids on every action (`action` unconstrained) do not
    // make answers judged; nor does a policy on another action.
    let baseline = PolicyEngine::load(&repo_policies()).expect("the baseline loads");
    assert!(!baseline.judges_answers());
    let any = load(&[(
        "any.cedar",
        r#"forbid (principal, action, resource) when { context.findings.contains("canary") };
           permit (principal, action == Action::"mcp:call_tool", resource);"#,
    )])
    .expect("loads");
    assert!(!any.judges_answers());
    let listed = load(&[(
        "listed.cedar",
        r#"forbid (principal, action in [Action::"mcp:receive_result", Action::"mcp:call_tool"], resource)
           when { context.findings.contains("tool_concealment") };"#,
    )])
    .expect("loads");
    assert!(listed.judges_answers());
}

#[test]
fn a_shadow_set_that_names_answers_has_them_judged_and_one_that_does_not_costs_nothing() {
    let named = load(&[(
        "shadow.cedar",
        r#"@mode("shadow")
forbid (principal, action == Action::"mcp:receive_result", resource)
when { context.findings.contains("tool_concealment") };"#,
    )])
    .expect("loads");
    assert!(named.judges_answers());
    // The enforced set alone names nothing: its decision passes the answer.
    assert!(matches!(
        named.decide(&answer("web", "fetch", &["tool_concealment"])),
        Decision::Allow { .. }
    ));
    let other = load(&[(
        "shadow.cedar",
        r#"@mode("shadow")
forbid (principal, action == Action::"mcp:call_tool", resource)
when { context.findings.contains("tool_concealment") };"#,
    )])
    .expect("loads");
    assert!(!other.judges_answers());
}

#[test]
fn an_approval_on_answers_is_refused_at_load_with_where_and_what_to_do() {
    let errors = load(&[(
        "held.cedar",
        r#"@id("hold-answers")
@approval("required")
permit (principal, action == Action::"mcp:receive_result", resource);"#,
    )])
    .expect_err("refused");
    let text = errors.to_string();
    assert!(text.contains("held.cedar:"), "{text}");
    assert!(text.contains("hold-answers"), "{text}");
    assert!(text.contains("cannot wait for an approval"), "{text}");
    // The baseline's approval permit on every action is not one on answers.
    PolicyEngine::load(&repo_policies()).expect("the baseline loads");
}

#[test]
fn a_session_that_read_an_injected_answer_is_refused_what_a_policy_says() {
    let engine = load(&[(
        "trifecta.cedar",
        r#"
@id("egress-all")
permit (principal, action == Action::"egress:connect", resource);

@id("no-egress-after-injection")
@reason("this session read an answer carrying instructions aimed at the model")
forbid (principal, action == Action::"egress:connect", resource)
when { context has session && context.session.answer_findings.contains("tool_instruction_override") };
"#,
    )])
    .expect("loads");
    assert!(engine.reads_session());
    let mut connect = act(
        agent("a"),
        Verb::EgressConnect,
        host("paste.example"),
        egress(443, None),
    );
    connect.context.session = Some(Box::new(crate::action::SessionFacts::default()));
    assert!(matches!(engine.decide(&connect), Decision::Allow { .. }));
    connect.context.session = Some(Box::new(crate::action::SessionFacts {
        answer_findings: vec![Arc::from("tool_instruction_override")],
        ..Default::default()
    }));
    match engine.decide(&connect) {
        Decision::Deny { policies, .. } => {
            assert_eq!(policies, ids(&["no-egress-after-injection"]))
        }
        other => panic!("refused: {other:?}"),
    }
}

#[test]
fn a_policy_on_every_action_does_not_reach_answers() {
    let engine = load(&[
        ("answers.cedar", WITHHOLD_INJECTIONS),
        (
            "every.cedar",
            r#"@id("no-emails-anywhere")
forbid (principal, action, resource) when { context.findings.contains("email_address") };"#,
        ),
    ])
    .expect("loads");
    assert!(matches!(
        engine.decide(&answer("web", "fetch", &["email_address"])),
        Decision::Allow { .. }
    ));
}

#[test]
fn models_the_loaded_policies_name_are_known_and_a_reload_takes_them_again() {
    let named = load(&[(
        "models.cedar",
        r#"
permit (principal, action == Action::"llm:chat", resource == Model::"openai/gpt-4o");
forbid (principal, action == Action::"llm:chat", resource)
when { resource == Model::"anthropic/claude-opus-4-1" };
"#,
    )])
    .expect("loads");
    assert!(named.names_model("gpt-4o"));
    assert!(named.names_model("claude-opus-4-1"));
    assert!(!named.names_model("gpt-made-up"));
    // A set loaded without them (a reload) knows them no more.
    let reloaded = load(&[(
        "models.cedar",
        r#"permit (principal, action == Action::"llm:chat", resource == Model::"openai/gpt-4.1");"#,
    )])
    .expect("loads");
    assert!(reloaded.names_model("gpt-4.1"));
    assert!(!reloaded.names_model("gpt-4o"));
}
