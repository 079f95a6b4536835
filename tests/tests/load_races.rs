//! Races under load, against replicas on one PostgreSQL: an approved request sent 50 times at
//! once across two replicas goes upstream once, the others refused and recorded as what they
//! are; an approve and a deny racing from two replicas' command lines settle the approval once;
//! policies and a route reloaded while 32 connections run leave no request failed or judged by
//! a policy set other than the one its record names, lose no audit record and break no chain;
//! a rate-limit burst spread over three replicas stays within the bound docs/fleet.md states;
//! so does a budget spent by concurrent calls spread over three replicas;
//! a quarantine committed through one replica stops the agent on another within the stated
//! window while a burst runs there.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use warden_e2e::fake_llm::{COMPLETION_TOKENS, FakeLlm, PROMPT_TOKENS};
use warden_e2e::operator::{NEEDS_SRE, decide, enrol, oathtool, text};
use warden_e2e::postgres::Postgres;
use warden_e2e::stack::openai_chat;
use warden_e2e::warden::{
    Prepared, Warden, WardenBuilder, read_audit, replicas_on_one_store, run_bounded,
};

/// The agent-token and factor keys every replica shares (a factor sealed through one replica
/// opens at another).
const FACTOR_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// `N` replicas on a fresh PostgreSQL database `database`, named `replica-a`, `replica-b`…, each
/// refusing as errors (`on_deny: http_error`) so that a response's status and code say what was
/// decided, approvals answered at once (`pending`) and given by any of `operators` (all in
/// `sre`), and then set up by `more`.
async fn replicas<const N: usize>(
    upstream: &FakeLlm,
    database: &str,
    operators: &[&str],
    more: impl Fn(WardenBuilder) -> WardenBuilder,
) -> [Warden; N] {
    let state_url = Postgres::from_env().fresh_database(database);
    replicas_on_one_store(&state_url, |i| {
        let name = format!("replica-{}", char::from(b'a' + u8::try_from(i).unwrap()));
        more(replica(upstream, &name, operators))
    })
    .await
    .unwrap()
}

/// One replica named `name` (for its store, see [`replicas`]).
fn replica(upstream: &FakeLlm, name: &str, operators: &[&str]) -> WardenBuilder {
    let operators: Vec<Value> = operators
        .iter()
        .map(|o| json!({"subject": o, "groups": ["sre"]}))
        .collect();
    WardenBuilder::new(upstream)
        .set("/routes/0/on_deny", json!("http_error"))
        .set(
            "/approvals",
            json!({"mode": "pending", "console_url": "https://warden.example.com",
                   "factor_key": {"env": "FACTOR_KEY"}, "operators": operators}),
        )
        .set("/audit/replica_id", json!(name))
        .set("/audit/record_content", json!(true))
        .env("FACTOR_KEY", FACTOR_KEY)
}

/// A chat on `model` whose prompt carries `marker`.
fn chat_body(model: &str, marker: &str) -> Value {
    let mut body = openai_chat(model, false);
    body["messages"][0]["content"] = json!(format!("{marker}: what is the weather in Paris?"));
    body
}

/// What one request came to: status, Warden's error code and message (if refused), the
/// approval id it names in `x-warden-approval-id` (if any), its request id.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    code: Option<String>,
    approval: Option<String>,
    message: String,
    request_id: String,
}

async fn send(http: &reqwest::Client, url: &str, token: &str, body: &Value) -> Answer {
    let r = http
        .post(url)
        .bearer_auth(token)
        .timeout(Duration::from_secs(30))
        .json(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = r.status().as_u16();
    let header = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let approval = header("x-warden-approval-id");
    let request_id = header("x-request-id").unwrap_or_default();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    let code = body["error"]["code"].as_str().map(str::to_owned);
    let message = body["error"]["message"].as_str().unwrap_or("").to_owned();
    Answer {
        status,
        code,
        approval,
        message,
        request_id,
    }
}

/// How many requests `upstream` saw whose body carries `marker`.
fn upstream_saw(upstream: &FakeLlm, marker: &str) -> usize {
    upstream
        .requests()
        .iter()
        .filter(|r| r.contains(&format!("{marker}:")))
        .count()
}

/// `warden audit verify` on `setup`'s log (asserted to pass).
async fn verify(setup: &Prepared) {
    let mut cmd = setup.command();
    cmd.args(["audit", "verify"])
        .arg(setup.data_dir.join("audit"));
    let out = run_bounded(cmd, Duration::from_secs(60)).await.unwrap();
    assert!(
        out.status.success(),
        "warden audit verify {}: {}",
        setup.data_dir.display(),
        text(&out)
    );
}

/// Each record's `seq` is the one before it plus one (nothing lost, nothing duplicated).
fn assert_sequence(log: &[Value], who: &str) {
    for pair in log.windows(2) {
        assert_eq!(
            pair[1]["seq"].as_u64(),
            pair[0]["seq"].as_u64().map(|s| s + 1),
            "{who}: records out of sequence:\n{}\n{}",
            pair[0],
            pair[1]
        );
    }
}

#[tokio::test]
async fn an_approval_replayed_fifty_times_across_two_replicas_lets_exactly_one_through() {
    let upstream = FakeLlm::start().await.unwrap();
    let [a, b] = replicas(&upstream, "warden_e2e_load_replay", &["alice"], |r| {
        r.policy("needs-sre.cedar", NEEDS_SRE)
    })
    .await;
    let token = a.token("replayer").await.unwrap();
    let body = chat_body("gpt-4o", "replay");

    let asked = send(a.http(), &a.url("/openai/chat/completions"), &token, &body).await;
    assert_eq!(asked.code.as_deref(), Some("approval_pending"), "{asked:?}");
    let id = asked.approval.clone().unwrap();
    let alice = enrol(&a, "alice").await;
    let out = decide(&b, "approve", &id, "alice", &oathtool(&alice, 1)).await;
    assert!(out.status.success(), "{}", text(&out));

    // The approved request, 50 times at once, alternately through A and B.
    let http = reqwest::Client::new();
    let sends: Vec<_> = (0..50)
        .map(|n| {
            let url = if n % 2 == 0 { &a } else { &b }.url("/openai/chat/completions");
            let (http, token, body) = (http.clone(), token.clone(), body.clone());
            tokio::spawn(async move { send(&http, &url, &token, &body).await })
        })
        .collect();
    let mut answers = Vec::new();
    for s in sends {
        answers.push(s.await.unwrap());
    }

    let through: Vec<&Answer> = answers.iter().filter(|r| r.status == 200).collect();
    assert_eq!(through.len(), 1, "exactly one goes through: {answers:#?}");
    assert_eq!(
        upstream_saw(&upstream, "replay"),
        1,
        "the upstream saw the approved request once"
    );
    for r in answers.iter().filter(|r| r.status != 200) {
        assert_eq!(r.status, 403, "{r:?}");
        match r.code.as_deref() {
            // Lost the race for the approval: told it was used, naming it (in the text and
            // in `x-warden-approval-id`, as the pending answer named it).
            Some("approval_consumed") => {
                assert!(r.message.contains(&id), "{r:?}");
                assert_eq!(r.approval.as_deref(), Some(&*id), "{r:?}");
            }
            // Came after it was used: asks anew, never pointing at the used one as pending.
            Some("approval_pending") => assert_ne!(r.approval.as_deref(), Some(&*id), "{r:?}"),
            other => panic!("refused with {other:?}: {r:?}"),
        }
    }

    // Recorded as it happened: one `approval_used`, on the replica that forwarded; a decision
    // record for each request; chains verify.
    let a_setup = a.stop_and_take_setup().await;
    let b_setup = b.stop_and_take_setup().await;
    let logs: Vec<Value> = [&a_setup, &b_setup]
        .iter()
        .flat_map(|s| read_audit(&s.data_dir.join("audit")))
        .collect();
    let used: Vec<&Value> = logs
        .iter()
        .filter(|r| r["detail"]["event"] == "approval_used")
        .collect();
    assert_eq!(used.len(), 1, "{used:#?}");
    assert_eq!(used[0]["detail"]["approval_id"], json!(id));
    let decided: HashSet<&str> = logs
        .iter()
        .filter(|r| r["kind"] == "decision")
        .filter_map(|r| r["request_id"].as_str())
        .collect();
    for r in &answers {
        assert!(
            decided.contains(r.request_id.as_str()),
            "no decision record for {r:?}"
        );
    }
    for setup in [&a_setup, &b_setup] {
        verify(setup).await;
    }
}

#[tokio::test]
async fn an_approve_and_a_deny_racing_from_two_replicas_settle_the_approval_once() {
    let upstream = FakeLlm::start().await.unwrap();
    // Each approver can vote once per TOTP step (a code counts once): one pair per round.
    let pairs = [("alice", "dave"), ("carol", "erin")];
    let ops: Vec<&str> = pairs.iter().flat_map(|(x, y)| [*x, *y]).collect();
    let [a, b] = replicas(&upstream, "warden_e2e_load_vote_race", &ops, |r| {
        r.policy("needs-sre.cedar", NEEDS_SRE)
    })
    .await;
    let token = a.token("raced").await.unwrap();
    let mut secrets = HashMap::new();
    for who in &ops {
        secrets.insert(*who, enrol(&a, who).await);
    }

    for (round, (approver, denier)) in pairs.iter().enumerate() {
        let marker = format!("race-{round}");
        let body = chat_body("gpt-4o", &marker);
        let asked = send(a.http(), &a.url("/openai/chat/completions"), &token, &body).await;
        let id = asked.approval.clone().unwrap();
        let (yes_code, no_code) = (
            oathtool(&secrets[approver], 1),
            oathtool(&secrets[denier], 1),
        );
        let (yes, no) = tokio::join!(
            decide(&a, "approve", &id, approver, &yes_code),
            decide(&b, "deny", &id, denier, &no_code),
        );
        assert!(
            yes.status.success() != no.status.success(),
            "exactly one vote settles it:\napprove: {}\ndeny: {}",
            text(&yes),
            text(&no)
        );
        let loser = if yes.status.success() { &no } else { &yes };
        assert!(
            text(loser).contains("only a pending approval can be decided"),
            "the other is told it came too late: {}",
            text(loser)
        );
        // The request sent again ends as the winner said, through the other replica.
        let again = send(b.http(), &b.url("/openai/chat/completions"), &token, &body).await;
        if yes.status.success() {
            assert_eq!(again.status, 200, "{again:?}");
            assert_eq!(upstream_saw(&upstream, &marker), 1);
        } else {
            // Denied, it is never used: in `pending` mode the agent's retry asks anew
            // (docs/approvals.md).
            assert_eq!(again.code.as_deref(), Some("approval_pending"), "{again:?}");
            assert_ne!(again.approval.as_deref(), Some(&*id), "{again:?}");
            assert_eq!(upstream_saw(&upstream, &marker), 0);
        }
        let shown = text(&b.cli(&["approvals", "show", &id]).await.unwrap());
        let settled = if yes.status.success() {
            "consumed"
        } else {
            "denied"
        };
        assert!(shown.contains(settled), "{settled}: {shown}");
    }
}

/// Chats of `flipper` on gpt-4o-mini are denied while this is loaded.
const MINI_FORBIDDEN: &str = "@id(\"mini-forbidden\")\n@reason(\"not now\")\n\
    forbid (principal == Agent::\"flipper\", action == Action::\"llm:chat\", \
    resource == Model::\"openai/gpt-4o-mini\");\n";

/// Agents sending chats on `url` over `connections` connections until stopped; every answer.
fn load(
    url: String,
    token: String,
    connections: usize,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<(Instant, Answer)>>> {
    (0..connections)
        .map(|c| {
            let (url, token, stop) = (url.clone(), token.clone(), stop.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut answers = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    let sent = Instant::now();
                    let body = chat_body("gpt-4o-mini", &format!("load-{c}-{n}"));
                    answers.push((sent, send(&http, &url, &token, &body).await));
                    n += 1;
                }
                answers
            })
        })
        .collect()
}

async fn collect(
    workers: Vec<tokio::task::JoinHandle<Vec<(Instant, Answer)>>>,
) -> Vec<(Instant, Answer)> {
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    all
}

#[tokio::test]
async fn policies_and_a_route_reloaded_under_load_judge_each_request_by_one_set_and_lose_no_record()
{
    let upstream = FakeLlm::start().await.unwrap();
    upstream.set_response_delay(Duration::from_millis(20));
    let [a, b] = replicas(&upstream, "warden_e2e_load_reload", &["alice"], |r| r).await;
    let token = a.token("flipper").await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = load(
        a.url("/openai/chat/completions"),
        token.clone(),
        32,
        stop.clone(),
    );
    workers.extend(load(
        b.url("/openai/chat/completions"),
        token.clone(),
        8,
        stop.clone(),
    ));

    // A's policies flip four times (and a route is added), B reloads its unchanged
    // configuration twice, all while the load runs. The policy sets A ran: the one it started
    // with, and those of the reloads each flip brought (the file watcher may reload a flip
    // before the signal does: every reload after the write has the flip's policies).
    let applied = |log: &[Value]| -> Vec<String> {
        log.iter()
            .filter(|r| r["detail"]["event"] == "reload" && r["detail"]["result"] == "applied")
            .filter_map(|r| r["detail"]["policy_version"].as_str().map(str::to_owned))
            .collect()
    };
    let started: Vec<String> = a
        .audit_records()
        .iter()
        .filter(|r| r["detail"]["event"] == "start")
        .filter_map(|r| r["detail"]["policy_version"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(started.len(), 1, "{started:?}");
    let mut permitting: HashSet<String> = started.into_iter().collect();
    let mut forbidding: HashSet<String> = HashSet::new();
    tokio::time::sleep(Duration::from_millis(500)).await;
    for flip in 0..4 {
        let seen = applied(&a.audit_records()).len();
        if flip % 2 == 0 {
            a.write_policy("mini-forbidden.cedar", MINI_FORBIDDEN)
                .unwrap();
        } else {
            std::fs::remove_file(a.setup.policy_dir.join("mini-forbidden.cedar")).unwrap();
        }
        a.reload(|config| {
            if flip == 1 {
                let mut route = config["routes"][0].clone();
                route["name"] = json!("openai-again");
                route["prefix"] = json!("/openai-again");
                config["routes"].as_array_mut().unwrap().push(route);
            }
        })
        .await
        .unwrap();
        let set = if flip % 2 == 0 {
            &mut forbidding
        } else {
            &mut permitting
        };
        set.extend(applied(&a.audit_records()).into_iter().skip(seen));
        if flip % 2 == 1 {
            b.reload(|_| {}).await.unwrap();
        }
    }
    assert!(
        forbidding.is_disjoint(&permitting),
        "the two sets have versions of their own: {forbidding:?} {permitting:?}"
    );
    stop.store(true, Ordering::SeqCst);
    let answers = collect(workers).await;
    assert!(answers.len() > 100, "the load ran: {}", answers.len());
    println!("reload under load: {} requests", answers.len());

    // No request failed: each was allowed or refused by the forbid.
    for (_, r) in &answers {
        match (r.status, r.code.as_deref()) {
            (200, None) | (403, Some("policy_denied")) => {}
            _ => panic!("a request failed under reload: {r:?}"),
        }
    }
    let a_setup = a.stop_and_take_setup().await;
    let b_setup = b.stop_and_take_setup().await;
    let a_log = read_audit(&a_setup.data_dir.join("audit"));
    let b_log = read_audit(&b_setup.data_dir.join("audit"));

    // Every request has one decision record, whose decision is its policy set's and the
    // answer's.
    let mut decisions: HashMap<&str, &Value> = HashMap::new();
    for r in a_log
        .iter()
        .chain(&b_log)
        .filter(|r| r["kind"] == "decision")
    {
        if let Some(id) = r["request_id"].as_str() {
            assert!(
                decisions.insert(id, r).is_none(),
                "two decision records: {r}"
            );
        }
    }
    for (_, r) in &answers {
        let d = decisions
            .get(r.request_id.as_str())
            .unwrap_or_else(|| panic!("no decision record for {r:?}"));
        let allowed = r.status == 200;
        assert_eq!(d["decision"] == "allow", allowed, "{d} for {r:?}");
        if d["replica"] == "replica-a" {
            let version = d["policy_version"].as_str().unwrap().to_owned();
            if allowed {
                assert!(
                    permitting.contains(&version),
                    "allowed under {version}: {d}"
                );
            } else {
                assert!(forbidding.contains(&version), "denied under {version}: {d}");
                assert_eq!(d["policies"], json!(["mini-forbidden"]), "{d}");
            }
        } else {
            assert!(allowed, "B never loaded the forbid: {d}");
        }
    }

    // Both chains are whole: nothing lost or duplicated, and they verify.
    assert_sequence(&a_log, "A");
    assert_sequence(&b_log, "B");
    verify(&a_setup).await;
    verify(&b_setup).await;
}

#[tokio::test]
async fn a_rate_limit_burst_across_three_replicas_stays_within_the_documented_bound() {
    let upstream = FakeLlm::start().await.unwrap();
    // A burst of 10 and (nearly) no refill: what is admitted is the burst, plus what each
    // other replica admits before it hears of the others.
    const BURST: usize = 10;
    const SYNC_MS: u64 = 200;
    let limited = |builder: WardenBuilder| {
        builder.set(
            "/rate_limits",
            json!({"sync_interval": format!("{SYNC_MS}ms"), "rules": [
                {"scope": "agent", "match": "burster", "rate": 0.001, "burst": BURST}
            ]}),
        )
    };
    let [a, b, c] = replicas(&upstream, "warden_e2e_load_rate_burst", &["alice"], limited).await;
    // Each has read the store once: what it counts from.
    tokio::time::sleep(Duration::from_millis(4 * SYNC_MS)).await;
    let token = a.token("burster").await.unwrap();
    let urls: Vec<String> = [&a, &b, &c]
        .iter()
        .map(|w| w.url("/openai/chat/completions"))
        .collect();

    let burst = |n: usize, wave: &'static str| {
        let http = reqwest::Client::new();
        let sends: Vec<_> = (0..n)
            .map(|i| {
                let (http, url, token) = (http.clone(), urls[i % 3].clone(), token.clone());
                tokio::spawn(async move {
                    send(
                        &http,
                        &url,
                        &token,
                        &chat_body("gpt-4o-mini", &format!("{wave}-{i}")),
                    )
                    .await
                })
            })
            .collect::<Vec<_>>();
        async move {
            let mut answers = Vec::new();
            for s in sends {
                answers.push(s.await.unwrap());
            }
            answers
        }
    };

    // 150 at once, spread over the three: one gateway would admit BURST; docs/fleet.md lets
    // each other replica add `burst + 2 × rate × sync_interval` (the rate is negligible here).
    let answers = burst(150, "first").await;
    let admitted = answers.iter().filter(|r| r.status == 200).count();
    for r in answers.iter().filter(|r| r.status != 200) {
        assert_eq!(r.status, 429, "{r:?}");
    }
    let bound = BURST + 2 * BURST;
    println!("rate burst over three replicas: {admitted} of 150 admitted (bound {bound})");
    assert!(
        (BURST..=bound).contains(&admitted),
        "{admitted} admitted of 150; the bound is {bound}"
    );

    // Once every replica has heard of the others, the fleet's burst is spent everywhere.
    tokio::time::sleep(Duration::from_millis(6 * SYNC_MS)).await;
    let answers = burst(60, "second").await;
    let admitted = answers.iter().filter(|r| r.status == 200).count();
    assert_eq!(admitted, 0, "the fleet's burst is spent on every replica");
}

#[tokio::test]
async fn a_quarantine_committed_through_one_replica_stops_a_burst_on_another_within_a_second() {
    let upstream = FakeLlm::start().await.unwrap();
    upstream.set_response_delay(Duration::from_millis(10));
    let [a, b] = replicas(&upstream, "warden_e2e_load_quarantine", &["alice"], |r| r).await;
    let token = a.token("rogue").await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let workers = load(
        b.url("/openai/chat/completions"),
        token.clone(),
        16,
        stop.clone(),
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;

    let out = a
        .cli(&["agents", "quarantine", "rogue", "--reason", "mid-burst"])
        .await
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let committed = Instant::now();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stop.store(true, Ordering::SeqCst);
    let answers = collect(workers).await;

    let before = answers
        .iter()
        .filter(|(sent, r)| *sent < committed && r.status == 200)
        .count();
    assert!(before > 0, "the burst ran on B before the quarantine");
    let passed_after = answers
        .iter()
        .filter(|(sent, r)| *sent >= committed && r.status == 200)
        .count();
    println!("quarantine mid-burst: {passed_after} requests sent to B after the commit passed");
    let late: Vec<&Answer> = answers
        .iter()
        .filter(|(sent, r)| *sent >= committed + Duration::from_secs(1) && r.status == 200)
        .map(|(_, r)| r)
        .collect();
    assert!(
        late.is_empty(),
        "B let {} requests through more than a second after the quarantine was committed: {late:?}",
        late.len()
    );
    let after_window: Vec<&Answer> = answers
        .iter()
        .filter(|(sent, _)| *sent >= committed + Duration::from_secs(1))
        .map(|(_, r)| r)
        .collect();
    assert!(
        !after_window.is_empty(),
        "the burst went on past the window"
    );
    for r in after_window {
        assert_eq!(r.code.as_deref(), Some("agent_quarantined"), "{r:?}");
    }
}

/// The example budget rule, as shipped in `policies/examples/budgets.cedar`.
fn budget_rule() -> String {
    let pack = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/examples/budgets.cedar"),
    )
    .unwrap();
    let start = pack.find("@id(\"budget-exceeded-deny\")").unwrap();
    let end = start + pack[start..].find("};").unwrap() + 2;
    pack[start..end].to_owned()
}

#[tokio::test]
async fn a_budget_spent_by_concurrent_calls_across_three_replicas_stays_within_the_documented_bound()
 {
    let upstream = FakeLlm::start().await.unwrap();
    upstream.set_response_delay(Duration::from_millis(20));
    // Each call costs what the fake reports; the day's budget is 20 of them.
    const PER_CALL: u64 = PROMPT_TOKENS + COMPLETION_TOKENS;
    const BUDGET: u64 = 20 * PER_CALL;
    const SYNC_MS: u64 = 200;
    let budgeted = |builder: WardenBuilder| {
        builder
            .policy(
                "mini.cedar",
                "permit (principal, action == Action::\"llm:chat\", \
                 resource == Model::\"openai/gpt-4o-mini\");\n",
            )
            .policy("budgets.cedar", &budget_rule())
            .set(
                "/budgets",
                json!({"sync_interval": format!("{SYNC_MS}ms"), "stale_after": "10s",
                       "limits": [{"scope": "agent", "name": "spender", "period": "day",
                                   "tokens": BUDGET}]}),
            )
    };
    let [a, b, c] = replicas::<3>(
        &upstream,
        "warden_e2e_load_budget_burst",
        &["alice"],
        budgeted,
    )
    .await;
    // Each has read the store once: what it counts from.
    tokio::time::sleep(Duration::from_millis(4 * SYNC_MS)).await;
    let token = a.token("spender").await.unwrap();

    // Six connections (two a replica) send calls back to back for up to 6 s (at most 1500
    // calls). A call reserves its worst case (its input ceiling, over 8192 tokens) while in
    // flight, far more than the budget here, so a replica admits a call only while none of its
    // own is in flight: more connections a replica would only be refused for that.
    let started = Instant::now();
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..6)
        .map(|n| {
            let url = [&a, &b, &c][n % 3].url("/openai/chat/completions");
            let (token, sent) = (token.clone(), sent.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut answers = Vec::new();
                while started.elapsed() < Duration::from_secs(6)
                    && sent.fetch_add(1, Ordering::SeqCst) < 1500
                {
                    let at = Instant::now();
                    let body = chat_body("gpt-4o-mini", &format!("budget-{n}-{}", answers.len()));
                    let answer = send(&http, &url, &token, &body).await;
                    answers.push((at, Instant::now(), answer));
                }
                answers
            })
        })
        .collect();
    let mut answers = Vec::new();
    for w in workers {
        answers.extend(w.await.unwrap());
    }
    let admitted: Vec<&(Instant, Instant, Answer)> =
        answers.iter().filter(|(_, _, r)| r.status == 200).collect();
    for (_, _, r) in answers.iter().filter(|(_, _, r)| r.status != 200) {
        assert_eq!(
            (r.status, r.code.as_deref()),
            (403, Some("policy_denied")),
            "{r:?}"
        );
    }
    let spent = admitted.len() as u64 * PER_CALL;
    println!(
        "budget burst over three replicas: {} of {} calls admitted, {spent} tokens spent of a \
         {BUDGET}-token budget",
        admitted.len(),
        answers.len()
    );
    assert!(spent >= BUDGET, "the burst spent the budget: {spent}");

    // docs/fleet.md: a replica sees another's spend at most two sync intervals after it was
    // charged, so a call is judged on all the spend charged longer ago than that (here with a
    // second's room for a loaded machine). A call is charged before its answer arrives and
    // judged after it was sent: a call admitted while more than the budget had been answered
    // that long before it was sent was judged on a view older than the bound.
    let window = Duration::from_millis(2 * SYNC_MS + 1000);
    for (sent_at, _, r) in &admitted {
        let seen = admitted
            .iter()
            .filter(|(_, answered, _)| *answered + window < *sent_at)
            .count() as u64
            * PER_CALL;
        assert!(
            seen <= BUDGET,
            "{r:?} was admitted though {seen} tokens had been spent more than {window:?} \
             before it was sent (budget {BUDGET})"
        );
    }

    // Every replica's spend reaches the store: it holds what the admitted calls cost, and
    // once each replica has read it, the budget is spent on every one.
    tokio::time::sleep(Duration::from_millis(6 * SYNC_MS)).await;
    let out = b
        .cli(&[
            "budgets", "show", "--scope", "agent", "--name", "spender", "--json",
        ])
        .await
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    let day = shown
        .as_array()
        .and_then(|a| a.iter().find(|a| a["period"] == "day"))
        .unwrap_or_else(|| panic!("{shown}"));
    assert_eq!(
        day["input_tokens"].as_u64().unwrap() + day["output_tokens"].as_u64().unwrap(),
        spent,
        "{shown}"
    );
    let http = reqwest::Client::new();
    for w in [&a, &b, &c] {
        let body = chat_body("gpt-4o-mini", "after");
        let r = send(&http, &w.url("/openai/chat/completions"), &token, &body).await;
        assert_eq!(r.code.as_deref(), Some("policy_denied"), "{r:?}");
    }
}
