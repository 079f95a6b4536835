//! Cedar decision: `PolicyEngine::decide` on a typical chat action with the repository's
//! `policies/`, and on an MCP `write_file` call judged on its arguments (the filesystem
//! example with its schema fragment). And what decision facts (`audit.decision_facts`) cost
//! a request: its decision record encoded without them and with them built and encoded.

use criterion::{Criterion, criterion_group, criterion_main};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;
use warden::action::{
    Action, ActionContext, Facts, Findings, LlmFacts, Principal, PrincipalKind, Resource,
    ToolFacts, Verb,
};
use warden::policy::PolicyEngine;

fn chat_action() -> Action {
    let principal = Principal {
        kind: PrincipalKind::Agent,
        id: Arc::from("bench"),
        issuer: Arc::from("warden"),
        fleet: Some(Arc::from("research")),
        owner: Some(Arc::from("team-ml")),
        environment: Some(Arc::from("prod")),
        scopes: vec![Arc::from("llm:chat")],
        groups: vec![Arc::from("default")],
        client_certificate: None,
        expires_at: None,
    };
    Action {
        principal: Arc::new(principal),
        verb: Verb::LlmChat,
        resource: Resource::Model {
            provider: Arc::from("openai"),
            name: "gpt-4o-mini".into(),
        },
        context: ActionContext {
            route: Arc::from("openai"),
            time: SystemTime::now(),
            source_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            tls: false,
            client_certificate: None,
            findings: Findings::none(),
            facts: Facts::Llm(LlmFacts {
                stream: true,
                max_tokens: Some(1024),
                tools: vec!["exec".into(), "read".into(), "web_fetch".into()],
                input_tokens: 250,
                cached_content: false,
            }),
            session: None,
            budget: None,
        },
    }
}

fn decide(c: &mut Criterion) {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let policies = manifest.parent().unwrap_or(manifest).join("policies");
    let engine = PolicyEngine::load(&policies).expect("the repository's policies load");
    let action = chat_action();
    c.bench_function("policy/decide_llm_chat", |b| {
        b.iter(|| engine.decide(&action))
    });
    let files = [
        "baseline.cedar",
        "examples/filesystem-writes.cedar",
        "examples/mcp-filesystem.cedarschema",
    ]
    .map(std::path::PathBuf::from);
    let engine = PolicyEngine::load_files(&policies, &files).expect("the filesystem example loads");
    let mut write = chat_action();
    write.verb = Verb::McpCallTool;
    write.resource = Resource::Tool {
        server: Arc::from("filesystem"),
        name: "write_file".into(),
    };
    write.context.facts = Facts::Tool(ToolFacts {
        arguments: Arc::new(serde_json::json!({
            "path": "/srv/shared/report.md",
            "content": "# Report\n".repeat(64),
        })),
    });
    assert_eq!(engine.decide(&write).label(), "allow");
    c.bench_function("policy/decide_mcp_write_file_arguments", |b| {
        b.iter(|| engine.decide(&write))
    });
}

/// The decision record of the chat action, with and without its facts: the CPU the facts add
/// to a request (building them from the action, encoding them into the record) and the bytes
/// they add to its record.
fn decision_facts(c: &mut Criterion) {
    use warden::policy::facts;
    let action = chat_action();
    let max = warden::audit::config::AuditConfig::default().decision_facts_max_bytes;
    let off = warden_bench::records::decision();
    let mut on = off.clone();
    on.facts = Some(facts::of(&action, false, max).expect("facts fit"));
    let size = |e: &warden::audit::event::AuditEvent| serde_json::to_vec(e).expect("encodes").len();
    println!(
        "decision record: {} bytes without facts, {} bytes with",
        size(&off),
        size(&on)
    );
    let mut group = c.benchmark_group("decision_facts");
    group.bench_function("record_off", |b| {
        b.iter(|| serde_json::to_vec(&off).expect("encodes"))
    });
    group.bench_function("record_on", |b| {
        b.iter(|| {
            let mut event = off.clone();
            event.facts = Some(facts::of(&action, false, max).expect("facts fit"));
            serde_json::to_vec(&event).expect("encodes")
        })
    });
    group.bench_function("record_off_cloned", |b| {
        b.iter(|| serde_json::to_vec(&off.clone()).expect("encodes"))
    });
    group.finish();
}

criterion_group!(benches, decide, decision_facts);
criterion_main!(benches);
