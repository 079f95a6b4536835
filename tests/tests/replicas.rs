//! Three Warden replicas behind a real load balancer (haproxy, checking each replica's
//! `/readyz`) on one PostgreSQL behave as one gateway: an approval opened through one replica
//! and given at the command line of another releases the held request, through the load
//! balancer; one replica killed with SIGKILL in the middle of a load loses only what it had in
//! flight (the others go on answering), every request the upstream saw has its decision record
//! in some replica's log, the killed replica records its in-flight requests as interrupted when
//! it starts again, every record names its replica, and every chain verifies. Tool pins are
//! shared too: a definition pinned through one replica judges the same tool at another.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use warden_e2e::fake_llm::FakeLlm;
use warden_e2e::haproxy::{Backend, Haproxy};
use warden_e2e::mcp;
use warden_e2e::operator::{NEEDS_SRE, approve, enrol, first_pending, text};
use warden_e2e::postgres::Postgres;
use warden_e2e::stack::openai_chat;
use warden_e2e::warden::{Prepared, WardenBuilder, read_audit, run_bounded};

/// The replicas' names: their `audit.replica_id` and haproxy's server names.
const NAMES: [&str; 3] = ["replica-a", "replica-b", "replica-c"];

/// One replica's setup: the shared database, factor key and agent-token key; its own data
/// directory, listeners and replica id (from the environment, as the chart would give a pod's
/// name).
fn replica(upstream: &FakeLlm, state_url: &str, name: &str, key: Option<&str>) -> WardenBuilder {
    let mut builder = WardenBuilder::new(upstream)
        .policy("needs-sre.cedar", NEEDS_SRE)
        .set(
            "/approvals",
            json!({
                "mode": "wait",
                "wait_timeout": "30s",
                "console_url": "https://warden.example.com",
                "factor_key": {"env": "FACTOR_KEY"},
                "operators": [{"subject": "alice", "groups": ["sre"]}],
            }),
        )
        .set("/state", json!({"postgres": {"url": {"env": "STATE_URL"}}}))
        .set("/audit/record_content", json!(true))
        .set("/audit/replica_id", json!({"env": "POD_NAME"}))
        .set(
            "/mcp",
            json!({"servers": [calc_server(false)], "endpoints": [{"name": "tools", "servers": ["calc"]}]}),
        )
        .env("STATE_URL", state_url)
        .env("FACTOR_KEY", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
        .env("POD_NAME", name);
    if let Some(key) = key {
        builder = builder.set("/identity/warden_issuer/key_file", json!(key));
    }
    builder
}

/// The MCP server every replica runs: `calc` (`tests/mcp/rugpull_server.mjs`), honest, or
/// offering a changed (poisoned) `add` when `poisoned`.
fn calc_server(poisoned: bool) -> Value {
    let node = std::env::var("NODE").unwrap_or_else(|_| "node".into());
    let mut args = vec![json!(mcp::mcp_dir().join("rugpull_server.mjs"))];
    if poisoned {
        args.push(json!("--poisoned"));
    }
    json!({"name": "calc", "command": node, "args": args, "sandbox": mcp::sandbox(&[])})
}

/// A chat through the load balancer whose prompt carries `marker`.
fn chat(marker: &str, model: &str) -> Value {
    let mut body = openai_chat(model, false);
    body["messages"][0]["content"] = json!(format!("{marker}: what is the weather in Paris?"));
    body
}

/// What one request of the load came to.
struct Sent {
    marker: String,
    /// Sent once haproxy had taken the killed replica out.
    after_down: bool,
    /// The status, or the error the client saw.
    result: Result<u16, String>,
}

/// Agents sending chats through the load balancer until told to stop.
struct Load {
    stop: Arc<AtomicBool>,
    down: Arc<AtomicBool>,
    answered: Arc<AtomicUsize>,
    workers: Vec<tokio::task::JoinHandle<Vec<Sent>>>,
}

impl Load {
    fn start(lb: &Haproxy, token: &str, workers: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let down = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicUsize::new(0));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let workers = (0..workers)
            .map(|w| {
                let (stop, down, answered) = (stop.clone(), down.clone(), answered.clone());
                let (http, url, token) = (
                    http.clone(),
                    lb.url("/openai/chat/completions"),
                    token.to_owned(),
                );
                tokio::spawn(async move {
                    let mut sent = Vec::new();
                    for n in 0.. {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let marker = format!("lb-{w}-{n}");
                        let after_down = down.load(Ordering::SeqCst);
                        let result = http
                            .post(&url)
                            .bearer_auth(&token)
                            .json(&chat(&marker, "gpt-4o-mini"))
                            .send()
                            .await;
                        let result = match result {
                            Ok(r) => {
                                let status = r.status().as_u16();
                                match r.bytes().await {
                                    Ok(_) => Ok(status),
                                    Err(e) => Err(e.to_string()),
                                }
                            }
                            Err(e) => Err(e.to_string()),
                        };
                        if result == Ok(200) {
                            answered.fetch_add(1, Ordering::SeqCst);
                        }
                        sent.push(Sent {
                            marker,
                            after_down,
                            result,
                        });
                    }
                    sent
                })
            })
            .collect();
        Load {
            stop,
            down,
            answered,
            workers,
        }
    }

    /// Waits until `n` more requests were answered 200 (at most 60 s).
    async fn answered(&self, n: usize) {
        let target = self.answered.load(Ordering::SeqCst) + n;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while self.answered.load(Ordering::SeqCst) < target {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the load got fewer than {n} answers within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn finish(self) -> Vec<Sent> {
        self.stop.store(true, Ordering::SeqCst);
        let mut all = Vec::new();
        for w in self.workers {
            all.extend(w.await.unwrap());
        }
        all
    }
}

/// The marker a record's recorded content (the prompt) carries, if any.
fn marker_of(record: &Value) -> Option<String> {
    let content = record.get("content")?.to_string();
    let start = content.find("lb-")?;
    let end = content[start..].find(':')? + start;
    Some(content[start..end].to_owned())
}

/// `warden audit verify <dir>` with `setup`'s configuration: its output, after asserting
/// success.
async fn verify(setup: &Prepared, dir: &std::path::Path) -> String {
    let mut cmd = setup.command();
    cmd.args(["audit", "verify"]).arg(dir);
    let out = run_bounded(cmd, Duration::from_secs(60)).await.unwrap();
    assert!(
        out.status.success(),
        "warden audit verify {}: {}",
        dir.display(),
        text(&out)
    );
    text(&out)
}

#[tokio::test]
async fn three_replicas_behind_a_load_balancer_share_approvals_and_survive_a_killed_replica() {
    let pg = Postgres::from_env();
    let state_url = pg.fresh_database("warden_e2e_three_replicas");
    let upstream = FakeLlm::start().await.unwrap();
    // Each request stays in flight a while, so that the killed replica has some.
    upstream.set_response_delay(Duration::from_millis(150));

    let a = replica(&upstream, &state_url, NAMES[0], None)
        .start()
        .await
        .unwrap();
    // One agent-token key for all: every replica accepts every token.
    let key = a.setup.data_dir.join("keys/agent-signing.pem");
    assert!(key.is_file(), "replica A made its agent-token key");
    let key = key.to_str().unwrap().to_owned();
    let mut b = replica(&upstream, &state_url, NAMES[1], Some(&key))
        .start()
        .await
        .unwrap();
    let c = replica(&upstream, &state_url, NAMES[2], Some(&key))
        .start()
        .await
        .unwrap();
    let backends: Vec<Backend> = [&a, &b, &c]
        .iter()
        .zip(NAMES)
        .map(|(w, name)| Backend {
            name: name.to_owned(),
            proxy: w.setup.proxy,
            admin: w.setup.admin,
        })
        .collect();
    let lb = Haproxy::start(&backends).await.unwrap();
    for name in NAMES {
        lb.wait_for(name, "UP", Duration::from_secs(20))
            .await
            .unwrap();
    }
    let token = a.token("billing-bot").await.unwrap();

    // An approval: the request waits on whichever replica the load balancer chose; alice,
    // enrolled through replica A's command line, approves it at replica C's; the request is
    // released, through the load balancer.
    let alice = enrol(&a, "alice").await;
    let held = {
        let (url, token) = (lb.url("/openai/chat/completions"), token.clone());
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .json(&chat("held", "gpt-4o"))
                .timeout(Duration::from_secs(40))
                .send()
                .await
        })
    };
    let id = first_pending(&c)
        .await
        .expect("replica C lists the approval another replica holds a request for");
    let out = approve(&c, &id, "alice", &alice).await;
    assert!(out.status.success(), "{}", text(&out));
    let released = held.await.unwrap().unwrap();
    assert_eq!(released.status(), 200, "the held request is released");
    assert!(released.headers().get("x-warden-approval-id").is_none());

    // An MCP session through the load balancer: it lives in the replica that opened it, where
    // haproxy keeps it (its mcp-session-id), one call after another.
    let add = json!({"op": "call", "name": "calc_add", "arguments": {"a": 2, "b": 3}});
    let r = mcp::session(
        &a,
        &lb.url("/mcp/tools"),
        &token,
        json!([{"op": "list_tools"}, add, add, add, add]),
    )
    .await
    .unwrap();
    for step in 1..=4 {
        assert_eq!(r["steps"][step]["isError"], false, "{r}");
    }

    // Load through the load balancer; replica B is killed in the middle of it.
    let load = Load::start(&lb, &token, 6);
    load.answered(30).await;
    b.signal(libc::SIGKILL).unwrap();
    b.wait_exit(Duration::from_secs(10)).await.unwrap();
    lb.wait_for(NAMES[1], "DOWN", Duration::from_secs(20))
        .await
        .unwrap();
    load.down.store(true, Ordering::SeqCst);
    load.answered(30).await;
    let sent = load.finish().await;

    let late: Vec<&Sent> = sent.iter().filter(|s| s.after_down).collect();
    assert!(!late.is_empty());
    for s in &late {
        assert_eq!(
            s.result,
            Ok(200),
            "{}: the other replicas answer everything sent once B is out\n{}",
            s.marker,
            lb.output()
        );
    }
    let failed: Vec<&Sent> = sent.iter().filter(|s| s.result != Ok(200)).collect();

    // B starts again on its own data directory and records what it had in flight.
    let b_setup = b.stop_and_take_setup().await;
    let mut b = b_setup.spawn().unwrap();
    b.wait_ready(Duration::from_secs(30)).await.unwrap();
    lb.wait_for(NAMES[1], "UP", Duration::from_secs(20))
        .await
        .unwrap();

    // Every replica stops; its log is complete.
    let setups: Vec<Prepared> = vec![
        a.stop_and_take_setup().await,
        b.stop_and_take_setup().await,
        c.stop_and_take_setup().await,
    ];
    let logs: Vec<Vec<Value>> = setups
        .iter()
        .map(|s| read_audit(&s.data_dir.join("audit")))
        .collect();

    // Every record names its replica; every chain verifies.
    for ((setup, log), name) in setups.iter().zip(&logs).zip(NAMES) {
        assert!(!log.is_empty());
        for r in log {
            assert_eq!(r["replica"], name, "{r}");
        }
        verify(setup, &setup.data_dir.join("audit")).await;
    }

    // Every request the upstream saw has its decision record in some replica's log.
    let decided: HashSet<String> = logs
        .iter()
        .flatten()
        .filter(|r| r["kind"] == "decision")
        .filter_map(marker_of)
        .collect();
    let seen: Vec<String> = upstream
        .requests()
        .iter()
        .filter_map(|r| {
            let body = String::from_utf8_lossy(&r.body).into_owned();
            let start = body.find("lb-")?;
            let end = body[start..].find(':')? + start;
            Some(body[start..end].to_owned())
        })
        .collect();
    assert!(
        seen.len() >= 60,
        "the upstream saw the load: {}",
        seen.len()
    );
    for marker in &seen {
        assert!(
            decided.contains(marker),
            "the upstream saw {marker}, and no replica recorded its decision"
        );
    }

    // Replica B: every decision has an outcome, the ones in flight at the kill one that says
    // they were interrupted; every request that failed at the agent and that B decided is
    // among them or has an outcome of its own.
    let b_log = &logs[1];
    let mut outcomes: HashMap<&str, Vec<&Value>> = HashMap::new();
    for r in b_log.iter().filter(|r| r["kind"] == "outcome") {
        if let Some(id) = r["decision_id"].as_str() {
            outcomes.entry(id).or_default().push(r);
        }
    }
    let decisions: Vec<&Value> = b_log.iter().filter(|r| r["kind"] == "decision").collect();
    for d in &decisions {
        let id = d["decision_id"].as_str().unwrap();
        assert!(
            outcomes.contains_key(id),
            "B's decision without outcome: {d}"
        );
    }
    let interrupted: Vec<&Value> = b_log
        .iter()
        .filter(|r| r["detail"]["event"] == "interrupted")
        .collect();
    assert!(
        !interrupted.is_empty(),
        "B had requests in flight when it was killed"
    );
    for r in &interrupted {
        assert_eq!(r["kind"], "outcome");
        assert!(
            r["outcome"]["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("interrupted")),
            "{r}"
        );
        let id = r["decision_id"].as_str().unwrap();
        assert!(
            decisions.iter().any(|d| d["decision_id"] == id),
            "an interrupted record names a decision of B's: {r}"
        );
    }
    let b_decided: HashMap<String, &str> = decisions
        .iter()
        .filter_map(|d| Some((marker_of(d)?, d["decision_id"].as_str()?)))
        .collect();
    for s in &failed {
        if let Some(id) = b_decided.get(&s.marker) {
            assert!(
                outcomes.contains_key(id),
                "{} failed at the agent ({:?}); B decided it and recorded no outcome",
                s.marker,
                s.result
            );
        }
    }
}

/// The tool names a `list_tools` step of `tests/mcp/client.py` reported.
fn tool_names(step: &Value) -> Vec<String> {
    step["names"]
        .as_array()
        .map(|n| {
            n.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_tool_pinned_through_one_replica_judges_the_tool_at_another() {
    let pg = Postgres::from_env();
    let state_url = pg.fresh_database("warden_e2e_replicas_pins");
    // The same MCP server on every replica; replica B's offers a changed (poisoned) `add`.
    let replica = |name: &str, poisoned: bool, key: Option<&str>| {
        let server = calc_server(poisoned);
        let mut builder = WardenBuilder::with_upstream_url("http://127.0.0.1:9")
            .set(
                "/mcp",
                json!({"servers": [server], "endpoints": [{"name": "tools", "servers": ["calc"]}]}),
            )
            .set("/pins", json!({"refresh_interval": "200ms"}))
            .set("/state", json!({"postgres": {"url": {"env": "STATE_URL"}}}))
            .set("/audit/replica_id", json!(name))
            .env("STATE_URL", &state_url);
        if let Some(key) = key {
            builder = builder.set("/identity/warden_issuer/key_file", json!(key));
        }
        builder.start()
    };
    let a = replica(NAMES[0], false, None).await.unwrap();
    let key = a.setup.data_dir.join("keys/agent-signing.pem");
    let key = key.to_str().unwrap().to_owned();
    let c = replica(NAMES[2], false, Some(&key)).await.unwrap();
    let agent = a.token("e2e-agent").await.unwrap();
    let add = json!({"op": "call", "name": "calc_add", "arguments": {"a": 2, "b": 3}});

    // Through replica A, the honest definition is pinned on first use, in PostgreSQL.
    let r = mcp::session(
        &a,
        &a.url("/mcp/tools"),
        &agent,
        json!([{"op": "list_tools"}, add]),
    )
    .await
    .unwrap();
    assert!(
        tool_names(&r["steps"][0]).contains(&"calc_add".to_owned()),
        "{r}"
    );
    assert_eq!(r["steps"][1]["isError"], false, "{r}");

    // Replica B never saw the honest definition: A's pin judges the changed one it is offered.
    let b = replica(NAMES[1], true, Some(&key)).await.unwrap();
    let r = mcp::session(
        &b,
        &b.url("/mcp/tools"),
        &agent,
        json!([{"op": "list_tools"}, add]),
    )
    .await
    .unwrap();
    assert!(
        !tool_names(&r["steps"][0]).contains(&"calc_add".to_owned()),
        "{r}"
    );
    let refused = r["steps"][1].to_string();
    assert!(refused.contains("warden tools approve"), "{r}");
    let change = b
        .wait_for_audit(Duration::from_secs(10), |r| r["kind"] == "tool_change")
        .await
        .unwrap();
    assert_eq!(change["replica"], NAMES[1]);
    assert!(
        change["detail"]["diff"]
            .as_str()
            .unwrap()
            .contains("id_rsa"),
        "{change}"
    );

    // Approved at replica C's command line, the new definition is B's to use.
    let out = c.cli(&["tools", "approve", "calc", "add"]).await.unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let mut listed = false;
    for _ in 0..20 {
        let r = mcp::session(
            &b,
            &b.url("/mcp/tools"),
            &agent,
            json!([{"op": "list_tools"}, add]),
        )
        .await
        .unwrap();
        if tool_names(&r["steps"][0]).contains(&"calc_add".to_owned()) {
            assert_eq!(r["steps"][1]["isError"], false, "{r}");
            listed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(listed, "the approval given at C reaches B:\n{}", b.output());
}
