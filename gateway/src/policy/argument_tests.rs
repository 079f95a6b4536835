//! Tool arguments in policies: typed by schema fragments, validated per tool at load, judged
//! on the arguments the agent sent.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Value, json};
use tempfile::TempDir;

use super::*;
use crate::action::{ActionContext, Facts, Findings, Principal, Resource, ToolFacts};
use crate::policy::testing::run_tests;
use crate::policy::tests::repo_policies;

/// The fragment `warden policy schema --from-mcp` wrote for the real
/// `@modelcontextprotocol/server-filesystem` (its tools/list is in
/// `gateway/tests/fixtures/server-filesystem.tools-list.json`).
fn filesystem_fragment() -> String {
    std::fs::read_to_string(repo_policies().join("examples/mcp-filesystem.cedarschema"))
        .expect("the filesystem fragment")
}

/// A policy directory with the repo's schema, the filesystem fragment and `files`.
fn pack(files: &[(&str, &str)]) -> TempDir {
    let fragment = filesystem_fragment();
    let mut all = vec![("mcp-filesystem.cedarschema", fragment.as_str())];
    all.extend_from_slice(files);
    super::tests::pack(&all)
}

fn load(files: &[(&str, &str)]) -> Result<PolicyEngine, PolicyErrors> {
    PolicyEngine::load(pack(files).path())
}

fn agent() -> Arc<Principal> {
    Arc::new(Principal {
        id: Arc::from("dev-bot"),
        issuer: Arc::from("https://idp.example.com"),
        ..Principal::anonymous()
    })
}

fn call(server: &str, tool: &str, arguments: Value) -> Action {
    Action {
        principal: agent(),
        verb: Verb::McpCallTool,
        resource: Resource::Tool {
            server: Arc::from(server),
            name: tool.to_owned(),
        },
        context: ActionContext {
            route: Arc::from("mcp"),
            time: UNIX_EPOCH + Duration::from_secs(1_793_613_600),
            source_ip: "10.0.0.1".parse().expect("ip"),
            tls: true,
            client_certificate: None,
            findings: Findings::none(),
            facts: Facts::Tool(ToolFacts {
                arguments: Arc::new(arguments),
            }),
            session: None,
            budget: None,
        },
    }
}

const SHARED_WRITES: &str = r#"
@id("shared-writes")
permit (principal, action == Action::"mcp:call_tool", resource == Tool::"filesystem/write_file")
when { context.arguments.path like "/srv/shared/*" };
"#;

#[test]
fn a_policy_on_write_file_arguments_validates_and_judges_the_path() {
    let engine = load(&[("writes.cedar", SHARED_WRITES)]).unwrap_or_else(|e| panic!("{e}"));
    let write = |path: &str| {
        engine.decide(&call(
            "filesystem",
            "write_file",
            json!({ "path": path, "content": "hello" }),
        ))
    };
    assert_eq!(
        write("/srv/shared/notes.txt"),
        Decision::Allow {
            policies: vec![Arc::from("shared-writes")]
        }
    );
    assert_eq!(write("/etc/passwd").label(), "deny");
    assert_eq!(write("/srv/sharedX/a").label(), "deny");
}

#[test]
fn a_policy_naming_an_argument_the_tool_lacks_fails_at_load_with_file_and_line() {
    let err = load(&[(
        "team/writes.cedar",
        "// shared folder only\n@id(\"shared-writes\")\npermit (principal, action == Action::\"mcp:call_tool\", resource == Tool::\"filesystem/write_file\")\nwhen { context.arguments.pathh like \"/srv/shared/*\" };\n",
    )])
    .expect_err("`pathh` is no argument of write_file");
    let text = err.to_string();
    let line = text.lines().next().expect("an error");
    assert!(line.contains("team/writes.cedar:4:"), "{text}");
    assert!(line.contains("pathh"), "{text}");
    assert!(line.contains("Tool::\"filesystem/write_file\""), "{text}");
}

#[test]
fn a_server_wide_policy_is_checked_against_every_tool_of_the_server() {
    let err = load(&[(
        "p.cedar",
        "@id(\"fs\")\nforbid (principal, action == Action::\"mcp:call_tool\", resource in McpServer::\"filesystem\")\nwhen { context.arguments.path like \"/etc/*\" };",
    )])
    .expect_err("move_file has no `path`");
    let text = err.to_string();
    assert!(text.contains("p.cedar:3:"), "{text}");
    assert!(text.contains("filesystem/move_file"), "{text}");
    assert!(!text.contains("filesystem/write_file"), "{text}");
    let engine = load(&[(
        "p.cedar",
        "@id(\"all\") permit (principal, action == Action::\"mcp:call_tool\", resource);\n\
         @id(\"no-etc\") forbid (principal, action == Action::\"mcp:call_tool\", resource in McpServer::\"filesystem\")\n\
         when { context.arguments has path && context.arguments.path like \"/etc/*\" };",
    )])
    .unwrap_or_else(|e| panic!("{e}"));
    let read = engine.decide(&call(
        "filesystem",
        "read_text_file",
        json!({ "path": "/etc/shadow" }),
    ));
    assert_eq!(read.policy_ids(), vec![Arc::from("no-etc")]);
    let moved = engine.decide(&call(
        "filesystem",
        "move_file",
        json!({ "source": "/etc/shadow", "destination": "/tmp/x" }),
    ));
    assert_eq!(moved.label(), "allow");
}

#[test]
fn an_unconstrained_resource_reaches_tools_no_fragment_describes() {
    let err = load(&[(
        "p.cedar",
        "@id(\"any\")\nforbid (principal, action == Action::\"mcp:call_tool\", resource)\nwhen { context.arguments.path like \"/etc/*\" };",
    )])
    .expect_err("other servers' tools have no typed arguments");
    let text = err.to_string();
    assert!(
        text.contains("tools no schema fragment describes"),
        "{text}"
    );
    assert!(text.contains("warden policy schema --from-mcp"), "{text}");
}

#[test]
fn without_a_fragment_arguments_are_an_empty_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        repo_policies().join(SCHEMA_FILE),
        dir.path().join(SCHEMA_FILE),
    )
    .expect("schema");
    std::fs::write(
        dir.path().join("p.cedar"),
        "@id(\"gh\")\npermit (principal, action == Action::\"mcp:call_tool\", resource == Tool::\"github/create_issue\")\nwhen { context.arguments.title like \"bug:*\" };",
    )
    .expect("write");
    let err = PolicyEngine::load(dir.path()).expect_err("github's tools are not typed");
    let text = err.to_string();
    assert!(text.contains("p.cedar:3:"), "{text}");
    assert!(text.contains("title"), "{text}");
    assert!(
        text.contains("tools no schema fragment describes"),
        "{text}"
    );
}

#[test]
fn a_policy_on_a_tool_its_servers_fragment_does_not_list_fails_at_load() {
    let err = load(&[(
        "p.cedar",
        "@id(\"x\")\npermit (principal, action == Action::\"mcp:call_tool\", resource == Tool::\"filesystem/format_disk\")\nwhen { context.arguments has force };",
    )])
    .expect_err("format_disk is not in the fragment");
    assert!(err.to_string().contains("does not list"), "{err}");
}

#[test]
fn arguments_that_do_not_fit_the_tools_type_are_denied_with_the_reason() {
    let engine = load(&[("writes.cedar", SHARED_WRITES)]).unwrap_or_else(|e| panic!("{e}"));
    for (arguments, why) in [
        (
            json!({ "path": 7, "content": "x" }),
            "`path` is a number, not a string",
        ),
        (
            json!({ "path": "/srv/shared/a" }),
            "`content` is required and missing",
        ),
        (json!("not an object"), "is a string, not an object"),
    ] {
        let decision = engine.decide(&call("filesystem", "write_file", arguments));
        let Decision::Deny { reasons, policies } = decision else {
            panic!("{why}: not denied");
        };
        assert!(policies.is_empty());
        assert!(reasons[0].contains(why), "{reasons:?}");
        assert!(
            reasons[0].contains("mcp-filesystem.cedarschema"),
            "{reasons:?}"
        );
    }
}

#[test]
fn a_forbid_on_arguments_cannot_be_skipped_with_a_misfit() {
    let engine = load(&[(
        "p.cedar",
        "@id(\"all\") permit (principal, action == Action::\"mcp:call_tool\", resource);\n\
         @id(\"no-etc\") forbid (principal, action == Action::\"mcp:call_tool\", resource == Tool::\"filesystem/write_file\")\n\
         when { context.arguments.path like \"/etc/*\" };",
    )])
    .unwrap_or_else(|e| panic!("{e}"));
    // Sent as an array, the path would make Cedar's `like` fail and the forbid not apply.
    let sneaky = engine.decide(&call(
        "filesystem",
        "write_file",
        json!({ "path": ["/etc/passwd"], "content": "x" }),
    ));
    assert_eq!(sneaky.label(), "deny");
    let fine = engine.decide(&call(
        "filesystem",
        "write_file",
        json!({ "path": "/srv/a", "content": "x" }),
    ));
    assert_eq!(fine.label(), "allow");
}

#[test]
fn arguments_are_converted_only_for_the_tools_whose_policies_read_them() {
    let engine = load(&[(
        "p.cedar",
        "@id(\"all\") permit (principal, action == Action::\"mcp:call_tool\", resource);\n\
         @id(\"no-etc\") forbid (principal, action == Action::\"mcp:call_tool\", resource == Tool::\"filesystem/write_file\")\n\
         when { context.arguments.path like \"/etc/*\" };",
    )])
    .unwrap_or_else(|e| panic!("{e}"));
    // No policy reads read_text_file's arguments: they are not even looked at.
    let read = engine.decide(&call("filesystem", "read_text_file", json!({ "path": 1 })));
    assert_eq!(read.label(), "allow");
    // Nor those of a tool the fragment does not list.
    let unknown = engine.decide(&call("filesystem", "format_disk", json!({})));
    assert_eq!(unknown.label(), "allow");
}

#[test]
fn a_server_wide_policy_denies_a_tool_its_fragment_does_not_list() {
    let engine = load(&[(
        "p.cedar",
        "@id(\"all\") permit (principal, action == Action::\"mcp:call_tool\", resource);\n\
         @id(\"no-etc\") forbid (principal, action == Action::\"mcp:call_tool\", resource in McpServer::\"filesystem\")\n\
         when { context.arguments has path && context.arguments.path like \"/etc/*\" };",
    )])
    .unwrap_or_else(|e| panic!("{e}"));
    let Decision::Deny { reasons, .. } = engine.decide(&call(
        "filesystem",
        "format_disk",
        json!({ "path": "/etc" }),
    )) else {
        panic!("a new tool's arguments cannot be judged");
    };
    assert!(reasons[0].contains("does not list it"), "{reasons:?}");
}

#[test]
fn typed_arguments_give_cedars_answer() {
    let text = r#"
@id("edits") permit (principal, action == Action::"mcp:call_tool", resource == Tool::"filesystem/edit_file")
when { context.arguments.path like "/srv/*" && !(context.arguments has dryRun && context.arguments.dryRun) };
@id("tail") forbid (principal, action == Action::"mcp:call_tool", resource == Tool::"filesystem/read_text_file")
when { context.arguments has tail && context.arguments.tail.greaterThan(decimal("100.0")) };
@id("read") permit (principal, action == Action::"mcp:call_tool", resource == Tool::"filesystem/read_text_file");
@id("many") permit (principal, action == Action::"mcp:call_tool", resource == Tool::"filesystem/read_multiple_files")
when { context.arguments.paths.contains("/srv/a") };
"#;
    let engine = load(&[("p.cedar", text)]).unwrap_or_else(|e| panic!("{e}"));
    let whole = PolicySet::from_str(text).expect("parses");
    let cases = [
        call(
            "filesystem",
            "edit_file",
            json!({"path": "/srv/a", "edits": [{"oldText": "a", "newText": "b"}]}),
        ),
        call(
            "filesystem",
            "edit_file",
            json!({"path": "/srv/a", "edits": [], "dryRun": true}),
        ),
        call(
            "filesystem",
            "edit_file",
            json!({"path": "/etc/a", "edits": []}),
        ),
        call(
            "filesystem",
            "read_text_file",
            json!({"path": "/a", "tail": 500}),
        ),
        call(
            "filesystem",
            "read_text_file",
            json!({"path": "/a", "tail": 5}),
        ),
        call("filesystem", "read_text_file", json!({"path": "/a"})),
        call(
            "filesystem",
            "read_multiple_files",
            json!({"paths": ["/srv/b", "/srv/a"]}),
        ),
        call(
            "filesystem",
            "read_multiple_files",
            json!({"paths": ["/srv/b"]}),
        ),
    ];
    let mut labels = std::collections::HashSet::new();
    for action in &cases {
        let decision = engine.decide(action);
        let (allows, expected) = super::tests::cedar_answer(&engine, &whole, action);
        let mut got: Vec<String> = decision
            .policy_ids()
            .iter()
            .map(|s| s.to_string())
            .collect();
        got.sort();
        assert_eq!(decision.label() == "allow", allows, "{action:?}");
        assert_eq!(got, expected, "{action:?}");
        labels.insert(decision.label());
    }
    assert_eq!(labels.len(), 2);
}

#[test]
fn two_fragments_for_one_server_are_refused_naming_both() {
    let err = load(&[("more/fs-again.cedarschema", &filesystem_fragment())])
        .expect_err("one fragment per server");
    let text = err.to_string();
    assert!(text.contains("fs-again.cedarschema"), "{text}");
    assert!(text.contains("mcp-filesystem.cedarschema"), "{text}");
}

#[test]
fn a_broken_fragment_is_reported_with_its_file_and_line() {
    let err = load(&[(
        "github.cedarschema",
        "@mcp_server(\"github\")\nnamespace Mcp_github {\n  type x = { \"a\" String };\n}\n",
    )])
    .expect_err("a colon is missing");
    let text = err.to_string();
    assert!(text.contains("github.cedarschema:3:"), "{text}");
}

#[test]
fn decision_cases_give_tool_arguments() {
    let dir = pack(&[
        ("writes.cedar", SHARED_WRITES),
        (
            "tests/writes.yaml",
            r#"cases:
  - name: a write in the shared folder
    principal: { id: dev-bot }
    action: mcp:call_tool
    resource: { server: filesystem, tool: write_file }
    context: { arguments: { path: /srv/shared/a.txt, content: hi } }
    expect: allow
  - name: a write elsewhere
    principal: { id: dev-bot }
    action: mcp:call_tool
    resource: { server: filesystem, tool: write_file }
    context: { arguments: { path: /etc/passwd, content: hi } }
    expect: deny
  - name: arguments that do not fit
    principal: { id: dev-bot }
    action: mcp:call_tool
    resource: { server: filesystem, tool: write_file }
    context: { arguments: { path: /srv/shared/a.txt } }
    expect: deny
    reasons: ["`content` is required and missing"]
"#,
        ),
    ]);
    let report = run_tests(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.cases.len(), 3);
    assert_eq!(report.failed(), 0, "\n{report}");
}

#[test]
fn arguments_in_a_case_of_another_kind_of_action_are_an_error() {
    let dir = pack(&[
        ("writes.cedar", SHARED_WRITES),
        (
            "tests/bad.yaml",
            r#"cases:
  - name: chat with arguments
    principal: { id: dev-bot }
    action: llm:chat
    resource: { provider: openai, model: gpt-4o }
    context: { arguments: { path: /x } }
    expect: deny
"#,
        ),
    ]);
    let err = run_tests(dir.path()).expect_err("arguments belong to tool calls");
    let text = err.to_string();
    assert!(
        text.contains("arguments not in the context of llm:chat"),
        "{text}"
    );
}

#[test]
fn a_tool_a_call_could_use_is_listed_without_its_arguments() {
    let engine = load(&[
        ("writes.cedar", SHARED_WRITES),
        (
            "no-delete.cedar",
            "@id(\"no-move\") forbid (principal, action == Action::\"mcp:call_tool\", resource == Tool::\"filesystem/move_file\");\n\
             @id(\"all-moves\") permit (principal, action == Action::\"mcp:call_tool\", resource == Tool::\"filesystem/move_file\");",
        ),
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    // No arguments: the call itself does not fit write_file's type, but some call would be
    // allowed, so the tool is one to list.
    let bare = call("filesystem", "write_file", json!({}));
    assert_eq!(engine.decide(&bare).label(), "deny");
    assert!(engine.may_allow(&bare));
    // Forbidden whatever the arguments.
    assert!(!engine.may_allow(&call("filesystem", "move_file", json!({}))));
    // Permitted by nothing.
    assert!(!engine.may_allow(&call("filesystem", "read_text_file", json!({}))));
}

// ---- the arguments of the call an answer answers (mcp:receive_result) ---------------------

/// The answer of `filesystem/<tool>` to a call with `arguments` (`None`: not kept), in which
/// the detectors found `detectors`.
fn answer_of(tool: &str, arguments: Option<Value>, detectors: &[&str]) -> Action {
    let mut action = call("filesystem", tool, json!({}));
    action.verb = Verb::McpReceiveResult;
    action.context.findings = Findings(
        detectors
            .iter()
            .map(|d| crate::action::Finding {
                detector: Arc::from(*d),
                location: "result.content[0].text".into(),
            })
            .collect(),
    );
    action.context.facts = Facts::Answer(crate::action::AnswerFacts {
        server: "filesystem".into(),
        method: "tools/call".into(),
        locations: vec!["result.content[0].text".into()],
        arguments: arguments.map(Arc::new),
        uri: None,
    });
    action
}

const ENV_SECRETS: &str = r#"
@id("withhold-env-secrets")
@reason("a .env file's secrets stay on disk")
forbid (principal, action == Action::"mcp:receive_result",
        resource == Tool::"filesystem/read_text_file")
when { context.arguments.path like "*.env" && context.findings.contains("aws_access_key") };
"#;

#[test]
fn a_forbid_on_answers_reads_the_typed_arguments_of_the_call_they_answer() {
    let engine = load(&[("answers.cedar", ENV_SECRETS)]).unwrap_or_else(|e| panic!("{e}"));
    let judge = |path: &str, detectors: &[&str]| {
        engine.decide(&answer_of(
            "read_text_file",
            Some(json!({ "path": path })),
            detectors,
        ))
    };
    match judge("/srv/app/.env", &["aws_access_key"]) {
        Decision::Deny { policies, .. } => assert_eq!(&*policies[0], "withhold-env-secrets"),
        other => panic!("withheld: {other:?}"),
    }
    assert!(matches!(
        judge("/srv/app/README.md", &["aws_access_key"]),
        Decision::Allow { .. }
    ));
    assert!(matches!(
        judge("/srv/app/.env", &[]),
        Decision::Allow { .. }
    ));
    // Arguments Warden did not keep (a task's) cannot be judged: withheld, not guessed.
    match engine.decide(&answer_of("read_text_file", None, &["aws_access_key"])) {
        Decision::Deny { reasons, .. } => {
            assert!(reasons[0].contains("were not kept"), "{reasons:?}")
        }
        other => panic!("withheld: {other:?}"),
    }
}

#[test]
fn a_policy_on_a_servers_answers_reads_arguments_only_behind_a_guard() {
    // A server's own answers (its prompts' and resources') have untyped arguments: an
    // unguarded read is refused at load, saying so and what to do.
    let err = load(&[(
        "answers.cedar",
        r#"@id("env-answers")
forbid (principal, action == Action::"mcp:receive_result", resource in McpServer::"filesystem")
when { context.arguments.path like "*.env" };"#,
    )])
    .expect_err("prompts and resources have no typed path");
    let text = err.to_string();
    assert!(
        text.contains("env-answers") && text.contains("prompts and resources"),
        "{text}"
    );
    // Guarded, it loads and judges the tools' answers.
    let engine = load(&[(
        "answers.cedar",
        r#"@id("env-answers")
forbid (principal, action == Action::"mcp:receive_result", resource in McpServer::"filesystem")
when { context.arguments has path && context.arguments.path like "*.env" };"#,
    )])
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        engine.decide(&answer_of(
            "read_text_file",
            Some(json!({"path": "/srv/.env"})),
            &[]
        )),
        Decision::Deny { .. }
    ));
    // A field the tool lacks is an error for that tool, as on mcp:call_tool.
    let err = load(&[(
        "answers.cedar",
        r#"@id("pathh")
forbid (principal, action == Action::"mcp:receive_result", resource == Tool::"filesystem/read_text_file")
when { context.arguments.pathh like "*.env" };"#,
    )])
    .expect_err("`pathh` is no argument of read_text_file");
    assert!(err.to_string().contains("pathh"), "{err}");
}

#[test]
fn an_approval_on_answers_is_refused_in_a_shadow_set_too() {
    let err = load(&[(
        "answers.cedar",
        r#"@id("hold-answers")
@mode("shadow")
@approval("required")
permit (principal, action == Action::"mcp:receive_result", resource);"#,
    )])
    .expect_err("refused");
    assert!(
        err.to_string().contains("cannot wait for an approval"),
        "{err}"
    );
}
