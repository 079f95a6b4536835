//! Shipping the audit log to SIEMs (`siem:`): to the Splunk HEC double (killed and restarted
//! while Warden is killed with -9, under load: every record arrives, duplicates within the
//! stated bound), to OpenSearch (osmem-server: ECS fields queryable, rejected items
//! dead-lettered, redelivery deduplicated by `_id`, `warden audit verify --against-siem`
//! finding a rewritten or cut local log, replica by replica), and to syslog over TCP and TLS
//! (RFC 5424). A record too large for the collector is dead-lettered alone; acknowledgements
//! that never come make re-sends ever rarer.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rcgen::{CertificateParams, KeyPair};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use warden_e2e::fake_llm::FakeLlm;
use warden_e2e::hec::indexed;
use warden_e2e::osmem::Osmem;
use warden_e2e::process::Proc;
use warden_e2e::stack::openai_chat;
use warden_e2e::syslog::Collector;
use warden_e2e::warden::{Warden, WardenBuilder, free_port, run_bounded};

const HEC_TOKEN: &str = "11111111-2222-3333-4444-555555555555";
/// `batch.max_events` of the test sinks: the most a restart may send twice.
const BATCH: usize = 40;

/// `(seq, id)` of every complete record in the log in `dir`: the id is the SHA-256 of the
/// line, as every sink sends it.
fn local_records(dir: &Path) -> Vec<(u64, String)> {
    local_lines(dir)
        .into_iter()
        .map(|(seq, id, _)| (seq, id))
        .collect()
}

/// `(seq, id, bytes)` of every complete record in the log in `dir`.
fn local_lines(dir: &Path) -> Vec<(u64, String, usize)> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("audit-") && n.ends_with(".jsonl"))
        .collect();
    names.sort();
    let mut out = Vec::new();
    for name in names {
        let bytes = std::fs::read(dir.join(&name)).unwrap();
        let data = &bytes[..bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len())];
        for line in data.split_inclusive(|&b| b == b'\n') {
            let Some(line) = line.strip_suffix(b"\n") else {
                continue;
            };
            let v: Value = serde_json::from_slice(line).unwrap();
            out.push((
                v["seq"].as_u64().unwrap(),
                hex::encode(Sha256::digest(line)),
                line.len(),
            ));
        }
    }
    out
}

/// The entries of a dead-letter file, and their record ids.
fn dead_letters(file: &Path) -> (Vec<Value>, HashSet<String>) {
    let dead: Vec<Value> = std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids = dead
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect();
    (dead, ids)
}

/// The sink settings every test uses: small batches, short waits.
fn quick(sink: Value) -> Value {
    let mut sink = sink;
    sink["batch"] = json!({"max_events": BATCH, "linger": "50ms"});
    sink["retry"] = json!({"initial": "50ms", "max": "500ms"});
    sink
}

/// Sends chat requests from `tasks` tasks until `stop`; counts the ones answered.
fn load(warden: &Warden, token: &str, tasks: usize, stop: &Arc<AtomicBool>) -> Arc<AtomicUsize> {
    let done = Arc::new(AtomicUsize::new(0));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    for task in 0..tasks {
        let (client, url, token, stop, done) = (
            client.clone(),
            warden.url("/openai/chat/completions"),
            token.to_owned(),
            stop.clone(),
            done.clone(),
        );
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let body = openai_chat(&format!("m-{task}-{i}"), false);
                match client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await
                {
                    Ok(r) => {
                        let _ = r.bytes().await;
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                    // Warden is being killed: wait for it to come back.
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
    }
    done
}

/// The HEC double as a process on `port`, indexing into `store`.
async fn hec_process(port: u16, store: &Path) -> Proc {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_hec-double"));
    cmd.args(["--port", &port.to_string(), "--token", HEC_TOKEN])
        .arg("--store")
        .arg(store)
        .args(["--index-delay-ms", "150", "--busy-every", "7"]);
    for _ in 0..40 {
        let mut proc = Proc::spawn("hec-double", cmd_clone(&cmd)).unwrap();
        match tokio::time::timeout(Duration::from_secs(10), proc.next_stdout_line()).await {
            Ok(Some(_)) => return proc,
            // The port may linger a moment after a kill.
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
    panic!("the HEC double did not start on port {port}");
}

fn cmd_clone(cmd: &tokio::process::Command) -> tokio::process::Command {
    let std = cmd.as_std();
    let mut out = tokio::process::Command::new(std.get_program());
    out.args(std.get_args());
    out
}

/// Waits until `done` holds, or fails with `what` after `timeout`.
async fn wait_until(timeout: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "{what} after {timeout:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One metric's value for the sink, from the `/metrics` text.
fn metric(text: &str, name: &str, sink: &str) -> Option<f64> {
    let prefix = format!("{name}{{sink=\"{sink}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.parse().ok())
}

/// A destination that stays down: the lag gauges the shipped alert reads grow with the
/// outage, records written meanwhile counted, though the sink never acknowledged one.
#[tokio::test]
async fn the_lag_metrics_grow_while_the_siem_stays_down() {
    let upstream = FakeLlm::start().await.unwrap();
    // Nobody listens on this port: every delivery fails.
    let port = free_port().unwrap();
    let sink = quick(json!({"name": "down", "syslog": {"address": format!("127.0.0.1:{port}")}}));
    let warden = WardenBuilder::new(&upstream)
        .set("/siem", json!({"poll_interval": "20ms", "sinks": [sink]}))
        .start()
        .await
        .unwrap();
    chats(&warden, "lag-bot", 2).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let first = warden.metrics().await.unwrap();
    chats(&warden, "lag-bot", 3).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let then = warden.metrics().await.unwrap();
    let get = |text: &str, name: &str| metric(text, name, "down").unwrap_or(0.0);
    for name in [
        "warden_siem_lag_seconds",
        "warden_siem_oldest_undelivered_age_seconds",
    ] {
        assert!(
            get(&first, name) >= 2.0,
            "{name} 3 s into the outage:\n{first}"
        );
        assert!(
            get(&then, name) >= get(&first, name) + 1.0,
            "{name} grows:\n{first}\n{then}"
        );
    }
    // Three more chats: three decisions and three outcomes more behind.
    assert!(
        get(&then, "warden_siem_lag_events") >= get(&first, "warden_siem_lag_events") + 6.0,
        "records written during the outage count:\n{first}\n{then}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_record_reaches_splunk_through_kills_of_warden_and_of_the_collector() {
    let upstream = FakeLlm::start().await.unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    let store = store_dir.path().join("indexed.jsonl");
    let port = free_port().unwrap();
    let mut hec = hec_process(port, &store).await;
    let sink = quick(json!({
        "name": "splunk",
        "shape": "ecs",
        "splunk_hec": {
            "url": format!("http://127.0.0.1:{port}"),
            "token": {"env": "HEC_TOKEN"},
            "index": "warden",
            "ack_interval": "50ms",
            "ack_timeout": "2s",
            "timeout": "2s",
        }
    }));
    let warden = WardenBuilder::new(&upstream)
        .set("/siem", json!({"poll_interval": "20ms", "sinks": [sink]}))
        .env("HEC_TOKEN", HEC_TOKEN)
        .start()
        .await
        .unwrap();
    let token = warden.token("ship-bot").await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let done = load(&warden, &token, 4, &stop);
    let audit_dir = warden.audit_dir();

    // Mid-stream, the collector dies (events it had not indexed are lost) and comes back.
    wait_until(Duration::from_secs(30), "no events indexed", || {
        indexed(&store).len() > 100
    })
    .await;
    hec.signal(libc::SIGKILL).unwrap();
    hec.kill().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let hec_restarted = hec_process(port, &store).await;
    drop(hec);

    // Then Warden is killed with -9 mid-stream and started again on the same files.
    let before = done.load(Ordering::SeqCst);
    wait_until(
        Duration::from_secs(30),
        "no load after the collector restart",
        || done.load(Ordering::SeqCst) > before + 100,
    )
    .await;
    warden.signal(libc::SIGKILL).unwrap();
    let setup = warden.setup;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut warden = setup.spawn().unwrap();
    warden.wait_ready(Duration::from_secs(30)).await.unwrap();
    let after = done.load(Ordering::SeqCst);
    wait_until(
        Duration::from_secs(30),
        "no load after Warden's restart",
        || done.load(Ordering::SeqCst) > after + 100,
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Every record of the local log arrives; none is missing.
    let local = local_records(&audit_dir);
    let counts = |events: &[Value]| {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for e in events {
            let id = e["fields"]["event_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            *counts.entry(id).or_default() += 1;
        }
        counts
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let have = counts(&indexed(&store));
        let missing: Vec<u64> = local
            .iter()
            .filter(|(_, id)| !have.contains_key(id))
            .map(|(seq, _)| *seq)
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} records never reached Splunk, first seqs {:?}\n{}",
            missing.len(),
            local.len(),
            &missing[..missing.len().min(10)],
            warden.output()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let events = indexed(&store);
    let have = counts(&events);
    let duplicates: usize = have.values().map(|n| n - 1).sum();
    eprintln!(
        "{} records in the log, {} events indexed, {duplicates} duplicates",
        local.len(),
        events.len()
    );
    // At most the batch in flight at each interruption (the collector's kill, Warden's kill)
    // is sent twice.
    assert!(
        duplicates <= 2 * BATCH,
        "{duplicates} duplicates, more than the unacknowledged batch per restart ({BATCH} x 2)"
    );
    assert!(local.len() > 300, "a real stream: {} records", local.len());
    // Warden still runs and may have written records since `local` was read (a checkpoint,
    // a late outcome): compare with the log as it is now, which only grows.
    let now_in_log: HashSet<String> = local_records(&audit_dir)
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    let strangers: Vec<&String> = have.keys().filter(|id| !now_in_log.contains(*id)).collect();
    assert!(
        strangers.is_empty(),
        "only records of the log arrive; not in it: {strangers:?}"
    );
    // The events are the records in ECS, with Splunk's fields set.
    let e = events
        .iter()
        .find(|e| e["event"]["warden"]["kind"] == "decision")
        .expect("a decision");
    assert_eq!(e["index"], "warden");
    assert_eq!(e["sourcetype"], "warden:audit");
    assert_eq!(e["event"]["event"]["id"], e["fields"]["event_id"]);
    assert_eq!(e["event"]["user"]["id"], "ship-bot");
    // The cursor file holds the acknowledged seq, and the metrics say the sink caught up.
    wait_until(
        Duration::from_secs(10),
        "the cursor did not reach the head",
        || {
            let cursor: Value = std::fs::read(audit_dir.join("cursors/splunk.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            // At or past: a checkpoint may have been appended (and shipped) since.
            cursor["seq"].as_u64() >= local.last().map(|(s, _)| *s)
        },
    )
    .await;
    // The lag gauge is set on each poll, and a record written since (a checkpoint) is lag
    // until it is shipped: wait, bounded, for a poll that finds the sink caught up.
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = warden.metrics().await.unwrap();
        if metric(&text, "warden_siem_lag_events", "splunk") == Some(0.0) {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "the sink never caught up: lag {:?}",
            metric(&text, "warden_siem_lag_events", "splunk")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(metric(&text, "warden_siem_events_sent_total", "splunk").unwrap() > 0.0);
    assert!(
        metric(
            &text,
            "warden_siem_last_success_timestamp_seconds",
            "splunk"
        )
        .unwrap()
            > 0.0
    );
    let log = warden.output();
    assert!(!log.contains(HEC_TOKEN), "the token is never logged");
    drop(hec_restarted);
}

#[tokio::test]
async fn the_hec_double_answers_as_splunk_documents() {
    let dir = tempfile::tempdir().unwrap();
    let hec = warden_e2e::hec::Hec::start(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        warden_e2e::hec::HecOptions {
            token: HEC_TOKEN.into(),
            acks: true,
            index_delay: Duration::from_millis(10),
            busy_every: 3,
            store: dir.path().join("i.jsonl"),
            max_body: None,
            never_acknowledge: false,
        },
    )
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/services/collector/event", hec.url());
    let channel = "0aeeac95-ac74-4aa9-b30d-6c4c0ac581ba";
    let post = |auth: Option<&str>, channel: Option<&str>, body: &str| {
        let mut r = http.post(&url).body(body.to_owned());
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        if let Some(c) = channel {
            r = r.header("x-splunk-request-channel", c);
        }
        async move {
            let r = r.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let ok = r#"{"event":{"a":1}}{"event":"b"}"#;
    assert_eq!(
        post(None, Some(channel), ok).await,
        (401, json!({"text": "Token is required", "code": 2}))
    );
    assert_eq!(
        post(Some("Bearer x"), Some(channel), ok).await,
        (401, json!({"text": "Invalid authorization", "code": 3}))
    );
    assert_eq!(
        post(Some("Splunk wrong"), Some(channel), ok).await,
        (403, json!({"text": "Invalid token", "code": 4}))
    );
    let auth = format!("Splunk {HEC_TOKEN}");
    assert_eq!(
        post(Some(&auth), None, ok).await,
        (400, json!({"text": "Data channel is missing", "code": 10}))
    );
    let (status, first) = post(Some(&auth), Some(channel), ok).await;
    assert_eq!((status, first["code"].clone()), (200, json!(0)));
    assert_eq!(first["ackId"], 0);
    let (status, second) = post(Some(&auth), Some(channel), r#"{"nope":1}"#).await;
    assert_eq!(
        (status, second),
        (
            400,
            json!({"text": "Event field is required", "code": 12, "invalid-event-number": 0})
        )
    );
    // The third event request is refused as busy.
    assert_eq!(
        post(Some(&auth), Some(channel), ok).await,
        (503, json!({"text": "Server is busy", "code": 9}))
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ack = http
        .post(format!("{}/services/collector/ack", hec.url()))
        .header("authorization", &auth)
        .header("x-splunk-request-channel", channel)
        .body(r#"{"acks":[0,5]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(
        ack.json::<Value>().await.unwrap(),
        json!({"acks": {"0": true, "5": false}})
    );
    assert_eq!(indexed(&dir.path().join("i.jsonl")).len(), 2);
}

/// A Warden shipping to the in-process HEC double at `hec` as sink `splunk`.
fn splunk_warden(upstream: &FakeLlm, hec: &warden_e2e::hec::Hec, extra: Value) -> WardenBuilder {
    let mut splunk = json!({
        "url": hec.url(),
        "token": {"env": "HEC_TOKEN"},
        "ack_interval": "20ms",
        "timeout": "2s",
        "gzip": false,
    });
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        splunk[k] = v;
    }
    let sink = quick(json!({"name": "splunk", "shape": "raw", "splunk_hec": splunk}));
    WardenBuilder::new(upstream)
        .set("/siem", json!({"poll_interval": "20ms", "sinks": [sink]}))
        .env("HEC_TOKEN", HEC_TOKEN)
}

fn hec_options(store: &Path) -> warden_e2e::hec::HecOptions {
    warden_e2e::hec::HecOptions {
        token: HEC_TOKEN.into(),
        acks: true,
        index_delay: Duration::from_millis(10),
        busy_every: 0,
        store: store.to_path_buf(),
        max_body: None,
        never_acknowledge: false,
    }
}

#[tokio::test]
async fn a_record_too_large_for_splunk_is_dead_lettered_and_the_records_after_it_ship() {
    let upstream = FakeLlm::start().await.unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    let store = store_dir.path().join("indexed.jsonl");
    const MAX_BODY: usize = 64 * 1024;
    let hec = warden_e2e::hec::Hec::start(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        warden_e2e::hec::HecOptions {
            max_body: Some(MAX_BODY),
            ..hec_options(&store)
        },
    )
    .await
    .unwrap();
    // One batch holds the large record and its neighbours (a linger longer than the chats).
    let warden = splunk_warden(&upstream, &hec, json!({}))
        .set("/siem/sinks/0/batch/linger", json!("1s"))
        .set("/audit/record_content", json!(true))
        .start()
        .await
        .unwrap();
    let token = warden.token("big-bot").await.unwrap();
    let prompt: String = (0..20_000).map(|i| format!("w{i} ")).collect();
    for i in 0..7 {
        let mut body = openai_chat(&format!("gpt-{i}"), false);
        if i == 3 {
            body["messages"][0]["content"] = json!(prompt);
        }
        let r = warden
            .http()
            .post(warden.url("/openai/chat/completions"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
    let dir = warden.audit_dir();
    let dead_file = dir.join("dead-letter/splunk.jsonl");
    let shipped = || -> HashSet<String> {
        indexed(&store)
            .iter()
            .filter_map(|e| e["fields"]["event_id"].as_str().map(str::to_owned))
            .collect()
    };
    // The large record's: the ones longer than the body limit.
    let big = || -> HashSet<String> {
        local_lines(&dir)
            .into_iter()
            .filter(|(_, _, bytes)| *bytes > MAX_BODY)
            .map(|(_, id, _)| id)
            .collect()
    };
    wait_until(
        Duration::from_secs(30),
        "the sink is stuck: the records after the large one did not ship",
        || {
            let (shipped, big) = (shipped(), big());
            !dead_letters(&dead_file).0.is_empty()
                && local_records(&dir)
                    .iter()
                    .all(|(_, id)| big.contains(id) || shipped.contains(id))
        },
    )
    .await;
    let (dead, dead_ids) = dead_letters(&dead_file);
    let big = big();
    assert_eq!(big.len(), 1, "one record holds the large prompt");
    assert_eq!(dead_ids, big, "only the large record is dead-lettered");
    assert!(
        dead[0]["reason"].as_str().unwrap().contains("413"),
        "{}",
        dead[0]["reason"]
    );
    assert!(shipped().is_disjoint(&dead_ids));
    let text = warden.metrics().await.unwrap();
    assert_eq!(
        metric(&text, "warden_siem_events_dead_lettered_total", "splunk"),
        Some(1.0)
    );
}

#[tokio::test]
async fn a_batch_splunk_never_acknowledges_is_sent_again_ever_less_often() {
    let upstream = FakeLlm::start().await.unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    let store = store_dir.path().join("indexed.jsonl");
    let hec = warden_e2e::hec::Hec::start(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        warden_e2e::hec::HecOptions {
            never_acknowledge: true,
            ..hec_options(&store)
        },
    )
    .await
    .unwrap();
    let warden = splunk_warden(&upstream, &hec, json!({"ack_timeout": "300ms"}))
        .start()
        .await
        .unwrap();
    let first = |store: &Path| {
        indexed(store)
            .first()
            .and_then(|e| e["fields"]["event_id"].as_str().map(str::to_owned))
    };
    wait_until(Duration::from_secs(20), "nothing reached the HEC", || {
        first(&store).is_some()
    })
    .await;
    let id = first(&store).unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    // Unacknowledged, the batch is sent again after 0.3 s, then 0.6 s, 1.2 s, 2.4 s (each
    // plus the retry wait): at most 5 copies in 4 s, where a fixed wait sent 8 or more.
    let copies = indexed(&store)
        .iter()
        .filter(|e| e["fields"]["event_id"] == id.as_str())
        .count();
    assert!((2..=5).contains(&copies), "{copies} copies in 4 s");
    drop(warden);
}

/// A Warden shipping to `osmem` as sink `elastic` into `index`.
fn elastic_warden(upstream: &FakeLlm, osmem: &Osmem, index: &str) -> WardenBuilder {
    let sink = quick(json!({
        "name": "elastic",
        "elasticsearch": {"url": osmem.url(), "data_stream": index},
    }));
    WardenBuilder::new(upstream).set("/siem", json!({"poll_interval": "20ms", "sinks": [sink]}))
}

async fn chats(warden: &Warden, agent: &str, n: usize) {
    let token = warden.token(agent).await.unwrap();
    for i in 0..n {
        let r = warden
            .http()
            .post(warden.url("/openai/chat/completions"))
            .bearer_auth(&token)
            .json(&openai_chat(&format!("gpt-{i}"), false))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
}

/// Waits until `index` holds exactly the records of the log in `dir` (by `_id`).
async fn wait_shipped(osmem: &Osmem, index: &str, dir: &Path) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let docs = osmem.documents(index).await.unwrap();
        let ids: HashSet<&str> = docs.iter().filter_map(|d| d["_id"].as_str()).collect();
        let local = local_records(dir);
        if local.iter().all(|(_, id)| ids.contains(id.as_str())) {
            return docs;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} records in OpenSearch",
            ids.len(),
            local.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn records_reach_opensearch_in_ecs_once_each_even_when_sent_again() {
    let upstream = FakeLlm::start().await.unwrap();
    let osmem = Osmem::start().await.unwrap();
    let warden = elastic_warden(&upstream, &osmem, "logs-warden-default")
        .set("/audit/replica_id", json!("warden-es-0"))
        .start()
        .await
        .unwrap();
    chats(&warden, "elastic-bot", 5).await;
    let dir = warden.audit_dir();
    let docs = wait_shipped(&osmem, "logs-warden-default", &dir).await;
    // ECS fields, queryable: the decisions of one agent, found by a term query.
    let (status, found) = osmem
        .request(
            reqwest::Method::POST,
            "/logs-warden-default/_search",
            Some(json!({"size": 100, "query": {"bool": {"filter": [
                {"match_phrase": {"user.id": "elastic-bot"}},
                {"match_phrase": {"event.dataset": "warden.decision"}}
            ]}}})),
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    let hits = found["hits"]["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 5, "{found}");
    let doc = &hits[0]["_source"];
    assert_eq!(hits[0]["_id"], doc["event"]["id"], "_id is the stable id");
    assert_eq!(doc["event"]["action"], "llm:chat");
    assert_eq!(doc["event"]["outcome"], "success");
    assert_eq!(doc["ecs"]["version"], "8.11.0");
    assert!(doc["@timestamp"].is_string());
    assert!(doc["warden"]["seq"].is_u64());
    // The replica that wrote it (audit.replica_id), so several replicas' logs stay apart.
    assert_eq!(doc["service"]["node"]["name"], "warden-es-0", "{doc}");
    assert_eq!(doc["warden"]["replica"], "warden-es-0", "{doc}");

    // Sent again from the start (the cursor gone): the same documents, no duplicates.
    let setup = warden.stop_and_take_setup().await;
    let dir = setup.data_dir.join("audit");
    std::fs::remove_file(dir.join("cursors/elastic.json")).unwrap();
    let warden = setup.spawn().unwrap();
    let mut warden = warden;
    warden.wait_ready(Duration::from_secs(30)).await.unwrap();
    let again = wait_shipped(&osmem, "logs-warden-default", &dir).await;
    wait_until(
        Duration::from_secs(10),
        "the cursor did not come back",
        || dir.join("cursors/elastic.json").exists(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = osmem.documents("logs-warden-default").await.unwrap();
    let ids: HashSet<&str> = after.iter().filter_map(|d| d["_id"].as_str()).collect();
    assert_eq!(ids.len(), after.len(), "no document twice");
    assert!(after.len() >= docs.len() && again.len() >= docs.len());
    assert_eq!(after.len(), local_records(&dir).len());
}

#[tokio::test]
async fn a_record_opensearch_rejects_is_dead_lettered_not_dropped() {
    let upstream = FakeLlm::start().await.unwrap();
    let osmem = Osmem::start().await.unwrap();
    // A mapping that cannot take an agent's id: every record naming a user is rejected
    // (400, mapper_parsing_exception); the others are stored.
    let (status, _) = osmem
        .request(
            reqwest::Method::PUT,
            "/warden-strict",
            Some(json!({"mappings": {"properties": {"user": {"properties": {"id": {"type": "long"}}}}}})),
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    let warden = elastic_warden(&upstream, &osmem, "warden-strict")
        .start()
        .await
        .unwrap();
    chats(&warden, "strict-bot", 3).await;
    let dir = warden.audit_dir();
    let dead_file = dir.join("dead-letter/elastic.jsonl");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let local = local_records(&dir);
        let docs = osmem.documents("warden-strict").await.unwrap();
        let stored: HashSet<String> = docs
            .iter()
            .filter_map(|d| d["_id"].as_str().map(str::to_owned))
            .collect();
        let (dead, dead_ids) = dead_letters(&dead_file);
        // Every record is either stored or in the dead-letter file, with its reason.
        if local
            .iter()
            .all(|(_, id)| stored.contains(id) || dead_ids.contains(id))
            && !dead.is_empty()
        {
            assert!(dead.iter().all(|d| {
                d["reason"]
                    .as_str()
                    .unwrap()
                    .contains("mapper_parsing_exception")
            }));
            assert!(
                dead.iter()
                    .all(|d| d["record"]["principal"]["id"] == "strict-bot")
            );
            assert!(!stored.is_empty(), "records without a user are stored");
            assert!(stored.is_disjoint(&dead_ids));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "records neither stored nor dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The dead-letter file is written before the counter is raised: wait for the counter.
    loop {
        let text = warden.metrics().await.unwrap();
        let dead = metric(&text, "warden_siem_events_dead_lettered_total", "elastic");
        if dead.is_some_and(|n| n >= 6.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "dead-lettered counter at {dead:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `warden audit verify DIR --against-siem elastic` with `setup`'s configuration.
async fn verify_against(
    setup: &warden_e2e::warden::Prepared,
    dir: &Path,
) -> anyhow::Result<std::process::Output> {
    let mut cmd = setup.command();
    cmd.args(["audit", "verify"])
        .arg(dir)
        .args(["--against-siem", "elastic", "--config"])
        .arg(&setup.config_path);
    run_bounded(cmd, Duration::from_secs(30)).await
}

#[tokio::test]
async fn verify_against_the_siem_finds_a_rewritten_or_cut_local_log() {
    let upstream = FakeLlm::start().await.unwrap();
    let osmem = Osmem::start().await.unwrap();
    let warden = elastic_warden(&upstream, &osmem, "logs-warden-default")
        .start()
        .await
        .unwrap();
    chats(&warden, "verify-bot", 3).await;
    let setup = warden.stop_and_take_setup().await;
    let dir = setup.data_dir.join("audit");
    let mut warden = setup.spawn().unwrap();
    warden.wait_ready(Duration::from_secs(30)).await.unwrap();
    chats(&warden, "verify-bot", 2).await;
    wait_shipped(&osmem, "logs-warden-default", &dir).await;
    let setup = warden.stop_and_take_setup().await;
    wait_shipped(&osmem, "logs-warden-default", &dir).await;

    let out = verify_against(&setup, &dir).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("the local log matches the SIEM"),
        "{stdout}"
    );

    // A copy whose checkpoint was rewritten (hashes recomputed would not help: its id is the
    // SHA-256 of the line the SIEM holds).
    let rewritten = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        if entry.path().is_file() {
            std::fs::copy(entry.path(), rewritten.path().join(entry.file_name())).unwrap();
        }
    }
    for entry in std::fs::read_dir(rewritten.path()).unwrap().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        if text.contains("\"kind\":\"checkpoint\"") {
            std::fs::write(
                entry.path(),
                text.replace("\"signature\":\"", "\"signature\":\"x"),
            )
            .unwrap();
        }
    }
    let out = verify_against(&setup, rewritten.path()).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("checkpoint (seq ") && stderr.contains(") differs"),
        "{stderr}"
    );

    // The log deleted and started afresh: what the SIEM holds is not there.
    let deleted = tempfile::tempdir().unwrap();
    let out = verify_against(&setup, deleted.path()).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("is in the SIEM but not in the local log"),
        "{stderr}"
    );
}

#[tokio::test]
async fn verify_against_the_siem_compares_only_its_own_replicas_records() {
    let upstream = FakeLlm::start().await.unwrap();
    let osmem = Osmem::start().await.unwrap();
    // Two replicas ship to one data stream, as docs/deploy.md recommends: their seqs overlap.
    let mut setups = Vec::new();
    for (replica, n) in [("replica-a", 3), ("replica-b", 5)] {
        let warden = elastic_warden(&upstream, &osmem, "warden-shared")
            .set("/audit/replica_id", json!(replica))
            .start()
            .await
            .unwrap();
        chats(&warden, replica, n).await;
        let setup = warden.stop_and_take_setup().await;
        wait_shipped(&osmem, "warden-shared", &setup.data_dir.join("audit")).await;
        setups.push(setup);
    }
    for (setup, replica) in setups.iter().zip(["replica-a", "replica-b"]) {
        let out = verify_against(setup, &setup.data_dir.join("audit"))
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{replica}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(&format!(
                "the local log matches the SIEM (replica {replica})"
            )),
            "{stdout}"
        );
    }
    // Replica A's log deleted: its configured replica id still finds what it shipped.
    let deleted = tempfile::tempdir().unwrap();
    let out = verify_against(&setups[0], deleted.path()).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("is in the SIEM but not in the local log"),
        "{stderr}"
    );
}

/// A CA and a certificate for `127.0.0.1` signed by it: (CA PEM, server TLS config).
fn syslog_tls() -> (String, Arc<rustls::ServerConfig>) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::default();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    (ca_cert.pem(), Arc::new(config))
}

#[tokio::test]
async fn records_reach_syslog_over_tcp_and_tls_as_rfc_5424_messages() {
    let upstream = FakeLlm::start().await.unwrap();
    let tcp = Collector::tcp().await.unwrap();
    let (ca_pem, server) = syslog_tls();
    let tls = Collector::tls(server).await.unwrap();
    let ca_dir = tempfile::tempdir().unwrap();
    let ca_file = ca_dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let sinks = json!([
        quick(
            json!({"name": "syslog-tcp", "syslog": {"address": tcp.addr.to_string(), "format": "structured"}})
        ),
        quick(json!({"name": "syslog-tls", "shape": "ocsf", "syslog": {
            "address": tls.addr.to_string(), "tls": {"ca_file": ca_file}, "format": "json"}})),
    ]);
    let warden = WardenBuilder::new(&upstream)
        .set("/siem", json!({"poll_interval": "20ms", "sinks": sinks}))
        .start()
        .await
        .unwrap();
    chats(&warden, "syslog-bot", 3).await;
    let dir = warden.audit_dir();
    for collector in [&tcp, &tls] {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let local = local_records(&dir);
            let messages = collector.messages();
            let ids: HashSet<String> = messages
                .iter()
                .filter_map(|m| m.as_ref().ok())
                .filter_map(|m| m.data.get("warden@32473")?.get("id").cloned())
                .collect();
            if local.iter().all(|(_, id)| ids.contains(id)) {
                for m in &messages {
                    let m = m.as_ref().unwrap_or_else(|e| panic!("not RFC 5424: {e}"));
                    assert_eq!(m.version, 1);
                    assert_eq!(m.app, "warden");
                    assert_eq!(m.pri / 8, 13, "facility log audit");
                }
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {} records over syslog",
                ids.len(),
                local.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let decision = |c: &Collector| {
        c.messages()
            .into_iter()
            .filter_map(Result::ok)
            .find(|m| m.msgid == "decision")
            .unwrap()
    };
    let plain = decision(&tcp);
    assert_eq!(plain.data["warden@32473"]["principal"], "syslog-bot");
    assert!(
        plain.msg.starts_with("decision allow llm:chat"),
        "{}",
        plain.msg
    );
    let json_body = decision(&tls);
    let event: Value = serde_json::from_str(&json_body.msg).unwrap();
    assert_eq!(event["class_uid"], 6003, "OCSF API Activity");
    assert_eq!(
        event["metadata"]["uid"],
        json_body.data["warden@32473"]["id"].as_str()
    );
}

/// One chat request's status and body.
async fn chat_status(warden: &Warden, token: &str, i: usize) -> (u16, Value) {
    let r = warden
        .http()
        .post(warden.url("/openai/chat/completions"))
        .bearer_auth(token)
        .json(&openai_chat(&format!("full-{i}"), false))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_log_at_its_bound_refuses_while_splunk_is_down_and_recovers_once_it_has_shipped() {
    let upstream = FakeLlm::start().await.unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    let store = store_dir.path().join("indexed.jsonl");
    let port = free_port().unwrap();
    let hec = hec_process(port, &store).await;
    let sink = quick(json!({
        "name": "splunk",
        "splunk_hec": {
            "url": format!("http://127.0.0.1:{port}"),
            "token": {"env": "HEC_TOKEN"},
            "ack_interval": "50ms",
            "timeout": "1s",
        }
    }));
    let warden = WardenBuilder::new(&upstream)
        .set("/siem", json!({"poll_interval": "20ms", "sinks": [sink]}))
        .set("/audit/segment_bytes", json!(8192))
        .set("/audit/retention", json!({"max_bytes": 65536}))
        .env("HEC_TOKEN", HEC_TOKEN)
        .start()
        .await
        .unwrap();
    let token = warden.token("bound-bot").await.unwrap();
    let dir = warden.audit_dir();
    // While Splunk is up, the oldest segments are shipped and go (a request refused while
    // Splunk lags behind the bound is tried again).
    let deadline = Instant::now() + Duration::from_secs(30);
    for i in 0..80 {
        while let (503, body) = chat_status(&warden, &token, i).await {
            assert!(body.to_string().contains("audit_full"), "{body}");
            assert!(Instant::now() < deadline, "refused for 30 s with Splunk up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    wait_until(
        Duration::from_secs(20),
        "no segment deleted while Splunk was up",
        || !dir.join("audit-000001.jsonl").exists(),
    )
    .await;

    // Splunk goes away: the log fills up and decisions are refused, fail closed.
    drop(hec);
    let mut refused = None;
    for i in 0..2000 {
        let (status, body) = chat_status(&warden, &token, i).await;
        if status == 503 {
            refused = Some(body);
            break;
        }
        assert_eq!(status, 200, "{body}");
    }
    let body = refused.expect("the bounded log never refused a request");
    assert!(body.to_string().contains("audit_full"), "{body}");
    let ready = warden
        .http()
        .get(warden.admin_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    let metrics = warden.metrics().await.unwrap();
    assert!(metrics.contains("warden_audit_full 1"), "{metrics}");
    let kept = local_records(&dir);

    // Splunk is back: what it acknowledges goes, and requests are served again by themselves.
    let _hec = hec_process(port, &store).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut i = 0;
    loop {
        i += 1;
        let (status, body) = chat_status(&warden, &token, 10_000 + i).await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "still refused: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Nothing was deleted before Splunk had it.
    let have: HashSet<String> = indexed(&store)
        .iter()
        .filter_map(|e| e["fields"]["event_id"].as_str().map(str::to_owned))
        .collect();
    let now_local: HashSet<u64> = local_records(&dir).iter().map(|(s, _)| *s).collect();
    for (seq, id) in &kept {
        assert!(
            now_local.contains(seq) || have.contains(id),
            "record {seq} was deleted before Splunk received it"
        );
    }
    let setup = warden.stop_and_take_setup().await;
    let mut cmd = setup.command();
    cmd.args(["audit", "verify"])
        .arg(&dir)
        .args(["--require-signed", "--key"])
        .arg(setup.data_dir.join("keys/audit-signing.pem"));
    let out = run_bounded(cmd, Duration::from_secs(30)).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("removed by retention"), "{stdout}");
}

/// The ids (`fields.event_id`) of every event the HEC double indexed into `store`, in order,
/// repeats included.
fn hec_ids(store: &Path) -> Vec<String> {
    indexed(store)
        .iter()
        .filter_map(|e| e["fields"]["event_id"].as_str().map(str::to_owned))
        .collect()
}

/// The HEC double in this process (acknowledgements on), indexing into `store`.
async fn hec_in_process(store: &Path) -> warden_e2e::hec::Hec {
    warden_e2e::hec::Hec::start(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        hec_options(store),
    )
    .await
    .unwrap()
}

/// `warden audit verify DIR --require-signed --key <the audit key>` of a stopped setup.
async fn verify_signed(setup: &warden_e2e::warden::Prepared, dir: &Path) -> (bool, String) {
    let mut cmd = setup.command();
    cmd.args(["audit", "verify"])
        .arg(dir)
        .args(["--require-signed", "--key"])
        .arg(setup.data_dir.join("keys/audit-signing.pem"));
    let out = run_bounded(cmd, Duration::from_secs(30)).await.unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

#[tokio::test]
async fn a_forged_cursor_is_not_trusted_the_sink_ships_from_the_oldest_record_and_says_so() {
    let upstream = FakeLlm::start().await.unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    let store = store_dir.path().join("indexed.jsonl");
    let hec = hec_in_process(&store).await;
    let warden = splunk_warden(&upstream, &hec, json!({}))
        .start()
        .await
        .unwrap();
    chats(&warden, "cursor-bot", 3).await;
    let dir = warden.audit_dir();
    wait_until(
        Duration::from_secs(30),
        "the log never reached Splunk",
        || {
            let ids: HashSet<String> = hec_ids(&store).into_iter().collect();
            local_records(&dir).iter().all(|(_, id)| ids.contains(id))
        },
    )
    .await;
    let setup = warden.stop_and_take_setup().await;

    // The cursor Warden saved, with a mac made by someone without the audit key: it claims
    // what Warden's did, down to the record's id, but not with Warden's key.
    let cursor_file = dir.join("cursors/splunk.json");
    let genuine: Value = serde_json::from_slice(&std::fs::read(&cursor_file).unwrap()).unwrap();
    let claimed = genuine["seq"].as_u64().unwrap();
    assert!(claimed > 0, "{genuine}");
    let mut forged = genuine.clone();
    forged["mac"] = json!(hex::encode(Sha256::digest(b"a mac without the key")));
    assert_ne!(forged["mac"], genuine["mac"]);
    std::fs::write(&cursor_file, forged.to_string()).unwrap();
    let first_id = local_records(&dir)[0].1.clone();
    let copies = |ids: &[String]| ids.iter().filter(|id| **id == first_id).count();
    let before = copies(&hec_ids(&store));

    let mut warden = setup.spawn().unwrap();
    warden.wait_ready(Duration::from_secs(30)).await.unwrap();
    let untrusted = warden
        .wait_for_audit(Duration::from_secs(15), |r| {
            r["kind"] == "system" && r["detail"]["event"] == "siem_cursor_untrusted"
        })
        .await
        .unwrap();
    let detail = &untrusted["detail"];
    assert_eq!(detail["sink"], "splunk", "{untrusted}");
    assert_eq!(detail["claimed_seq"], claimed, "{untrusted}");
    assert!(
        detail["reason"]
            .as_str()
            .unwrap()
            .contains("not written by Warden with this audit key (no valid mac)"),
        "{untrusted}"
    );
    // Not trusted: the sink ships from the oldest record kept (seq 1 arrives again, with
    // the same id), the record saying so included.
    let untrusted_seq = untrusted["seq"].as_u64().unwrap();
    wait_until(
        Duration::from_secs(30),
        "the sink did not ship from the oldest record again",
        || {
            let ids = hec_ids(&store);
            let said = local_records(&dir)
                .into_iter()
                .find(|(seq, _)| *seq == untrusted_seq)
                .is_some_and(|(_, id)| ids.contains(&id));
            copies(&ids) > before && said
        },
    )
    .await;
    // Once Splunk acknowledged, Warden saves a cursor of its own again.
    wait_until(Duration::from_secs(10), "no authentic cursor", || {
        std::fs::read(&cursor_file)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .is_some_and(|c| c["mac"] != forged["mac"] && c["seq"].as_u64() > Some(claimed))
    })
    .await;
    let output = warden.output();
    assert!(
        output.contains("this SIEM sink's cursor is not trusted"),
        "{output}"
    );

    // The record is signed: a checkpoint covers it, as every record of the stopped log.
    let setup = warden.stop_and_take_setup().await;
    let (ok, said) = verify_signed(&setup, &dir).await;
    assert!(ok, "{said}");
    assert!(said.contains("every record covered"), "{said}");
}

#[tokio::test]
async fn recorded_content_is_shipped_as_recorded_with_credentials_masked_and_the_log_unchanged() {
    const AWS_KEY: &str = "AKIAQ3EGRT5KWZ7XJ2MD";
    let upstream = FakeLlm::start().await.unwrap();
    let osmem = Osmem::start().await.unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    let store = store_dir.path().join("indexed.jsonl");
    let hec = hec_in_process(&store).await;
    // Splunk in `raw` (the record as written), OpenSearch in ECS.
    let elastic = quick(json!({
        "name": "elastic",
        "elasticsearch": {"url": osmem.url(), "data_stream": "logs-warden-content"},
    }));
    let warden = splunk_warden(&upstream, &hec, json!({}))
        .set("/siem/sinks/1", elastic)
        .set("/audit/record_content", json!(true))
        .start()
        .await
        .unwrap();
    let token = warden.token("content-bot").await.unwrap();
    let mut body = openai_chat("gpt-4o-mini", false);
    body["messages"][0]["content"] = json!(format!("deploy with {AWS_KEY} tonight"));
    let r = warden
        .http()
        .post(warden.url("/openai/chat/completions"))
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let decision = warden
        .wait_for_audit(Duration::from_secs(10), |r| {
            r["kind"] == "decision" && r["principal"]["id"] == "content-bot"
        })
        .await
        .unwrap();
    let content = decision["content"].to_string();
    assert!(
        content.contains("deploy with [REDACTED:aws_access_key] tonight"),
        "the prompt is recorded, the key masked: {decision}"
    );
    let dir = warden.audit_dir();
    let seq = decision["seq"].as_u64().unwrap();
    let (_, id, _) = local_lines(&dir)
        .into_iter()
        .find(|(s, _, _)| *s == seq)
        .unwrap();
    let log_before: Vec<u8> = std::fs::read(dir.join("audit-000001.jsonl")).unwrap();

    // Splunk (raw): the event is the record as the log holds it, its id the hash of the line.
    wait_until(
        Duration::from_secs(30),
        "the decision never reached Splunk",
        || hec_ids(&store).contains(&id),
    )
    .await;
    let event = indexed(&store)
        .into_iter()
        .find(|e| e["fields"]["event_id"] == id.as_str())
        .unwrap();
    assert_eq!(event["event"], decision, "shipped as recorded");
    // OpenSearch (ECS): no content at all.
    let docs = wait_shipped(&osmem, "logs-warden-content", &dir).await;
    let doc = docs.iter().find(|d| d["_id"] == id.as_str()).unwrap();
    assert!(doc["_source"].get("content").is_none(), "{doc}");
    assert!(doc["_source"]["warden"].get("content").is_none(), "{doc}");
    assert_eq!(doc["_source"]["warden"]["seq"], seq, "{doc}");
    // The key is nowhere: not in the log, not at either destination.
    let everywhere = format!(
        "{}{}{}",
        String::from_utf8_lossy(&log_before),
        std::fs::read_to_string(&store).unwrap(),
        serde_json::to_string(&docs).unwrap()
    );
    assert!(!everywhere.contains(AWS_KEY), "the key was written down");

    // Shipping only read the log: its records are the bytes they were, and it verifies.
    let setup = warden.stop_and_take_setup().await;
    let log_after = std::fs::read(dir.join("audit-000001.jsonl")).unwrap();
    assert!(
        log_after.starts_with(log_before.split(|&b| b == 0).next().unwrap()),
        "the records written before shipping were changed"
    );
    let (ok, said) = verify_signed(&setup, &dir).await;
    assert!(ok, "{said}");
}
