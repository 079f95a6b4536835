//! `siem [--events N]`: how fast Warden's shipper sends an audit log of N records (default
//! 100,000) to each sink: the Splunk HEC double (indexer acknowledgement on and off),
//! OpenSearch (`osmem-server`, from tests/.venv) and a syslog collector over TCP. Each sink
//! ships the same log from its own cursor, in ECS; the time is from the shipper's start to
//! its cursor reaching the last record.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};
use warden::audit::AuditLog;
use warden::audit::config::{AuditConfig, Durability};
use warden::audit::event::{AuditEvent, EventKind};
use warden::siem::Shipper;
use warden::siem::config::SiemConfig;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut events: u64 = 100_000;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--events" => events = args.next().context("--events N")?.parse()?,
            other => anyhow::bail!("unknown argument {other:?}; usage: siem [--events N]"),
        }
    }
    warden::listener::install_crypto_provider();
    let dir = tempfile::tempdir()?;
    let audit = dir.path().join("audit");
    write_log(&audit, events).await?;
    let head = warden::audit::read::durable_head(&audit)?.unwrap_or_default();
    println!("audit log: {head} records");

    let store = dir.path().join("hec.jsonl");
    let token = "bench-hec-token";
    // SAFETY: set before any thread of this process reads the environment.
    unsafe { std::env::set_var("BENCH_HEC_TOKEN", token) };
    let hec_options = |acks| warden_e2e::hec::HecOptions {
        token: token.into(),
        acks,
        index_delay: Duration::from_millis(20),
        busy_every: 0,
        store: store.clone(),
        max_body: None,
        never_acknowledge: false,
    };
    let local = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let hec_acks = warden_e2e::hec::Hec::start(local, hec_options(true)).await?;
    let hec_plain = warden_e2e::hec::Hec::start(local, hec_options(false)).await?;
    let osmem = warden_e2e::osmem::Osmem::start().await?;
    let syslog = warden_e2e::syslog::Collector::tcp().await?;
    let sinks = [
        json!({"name": "hec-acks", "batch": {"max_events": 2000},
               "splunk_hec": {"url": hec_acks.url(), "token": {"env": "BENCH_HEC_TOKEN"},
                              "ack_interval": "50ms"}}),
        json!({"name": "hec-no-acks", "batch": {"max_events": 2000},
               "splunk_hec": {"url": hec_plain.url(), "token": {"env": "BENCH_HEC_TOKEN"},
                              "acknowledgements": false}}),
        json!({"name": "opensearch", "batch": {"max_events": 2000},
               "elasticsearch": {"url": osmem.url()}}),
        json!({"name": "syslog", "batch": {"max_events": 2000},
               "syslog": {"address": syslog.addr.to_string()}}),
    ];
    // The shipper reports what it ships to the open log (retention, its own records).
    let log = AuditLog::open(&audit, &AuditConfig::default())?;
    println!("| sink | events | seconds | events/s |\n|---|---|---|---|");
    for sink in sinks {
        let name = sink["name"].as_str().unwrap_or_default().to_owned();
        let config: SiemConfig =
            serde_json::from_value(json!({"poll_interval": "10ms", "sinks": [sink]}))?;
        let start = Instant::now();
        let shipper = Shipper::start(&config, &log, &audit, None, Default::default())
            .await?
            .context("a shipper")?;
        let cursor = warden::siem::cursor::path(&audit, &name);
        loop {
            let seq = std::fs::read(&cursor)
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .and_then(|v| v["seq"].as_u64())
                .unwrap_or_default();
            if seq >= head {
                break;
            }
            anyhow::ensure!(
                start.elapsed() < Duration::from_secs(600),
                "{name}: only {seq} of {head} records acknowledged after 10 minutes"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let seconds = start.elapsed().as_secs_f64();
        shipper.stop(Duration::from_millis(100)).await;
        println!(
            "| {name} | {head} | {seconds:.2} | {:.0} |",
            head as f64 / seconds
        );
    }
    Ok(())
}

/// A log of `n` decision records like the proxy's, in `dir`.
async fn write_log(dir: &Path, n: u64) -> anyhow::Result<()> {
    let config = AuditConfig {
        durability: Durability::Process,
        ..AuditConfig::default()
    };
    let log = AuditLog::open(dir, &config)?;
    for i in 0..n {
        let mut e = AuditEvent::now(EventKind::Decision);
        e.principal.id = format!("agent-{}", i % 50).into();
        e.action = "llm:chat".into();
        e.resource = "Model::\"openai/gpt-4o\"".into();
        e.decision = "allow".into();
        e.request_id = format!("req-{i}").into();
        log.append_detached(e);
        if i % 1000 == 999 {
            // Let the writer keep up: the outbox is bounded by time, not by count.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    log.close().await?;
    Ok(())
}
