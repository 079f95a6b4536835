//! `hec-double --port N --token T --store FILE [--no-acks] [--index-delay-ms N]
//! [--busy-every N]`: the Splunk HEC double (tests/src/hec.rs) as a process a test can kill.
//! Prints `{"url": "http://127.0.0.1:PORT"}` once listening, then serves until killed.

use std::net::SocketAddr;
use std::time::Duration;

use warden_e2e::hec::{Hec, HecOptions};

const USAGE: &str = "usage: hec-double --port N --token T --store FILE [--no-acks] [--index-delay-ms N] [--busy-every N]";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut port = 0u16;
    let mut options = HecOptions {
        token: String::new(),
        acks: true,
        index_delay: Duration::from_millis(200),
        busy_every: 0,
        store: "hec-events.jsonl".into(),
        max_body: None,
        never_acknowledge: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| anyhow::anyhow!("{arg} needs a value; {USAGE}"))
        };
        match arg.as_str() {
            "--port" => port = value()?.parse()?,
            "--token" => options.token = value()?,
            "--store" => options.store = value()?.into(),
            "--no-acks" => options.acks = false,
            "--index-delay-ms" => options.index_delay = Duration::from_millis(value()?.parse()?),
            "--busy-every" => options.busy_every = value()?.parse()?,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => anyhow::bail!("unknown argument {other:?}; {USAGE}"),
        }
    }
    if options.token.is_empty() {
        anyhow::bail!("--token is required; {USAGE}");
    }
    let hec = Hec::start(SocketAddr::from(([127, 0, 0, 1], port)), options).await?;
    println!("{}", serde_json::json!({"url": hec.url()}));
    std::future::pending::<()>().await;
    Ok(())
}
