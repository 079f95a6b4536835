//! `fake-llm [--port N] [--chunk-delay-ms N]`: the fake LLM upstream for manual use. Prints
//! `{"url": "http://127.0.0.1:PORT"}` once listening, then serves until interrupted.

use std::net::SocketAddr;
use std::time::Duration;
use warden_e2e::fake_llm::FakeLlm;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut port = 0u16;
    let mut chunk_delay = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => port = args.next().unwrap_or_default().parse()?,
            "--chunk-delay-ms" => {
                chunk_delay = Some(Duration::from_millis(
                    args.next().unwrap_or_default().parse()?,
                ))
            }
            "-h" | "--help" => {
                println!("usage: fake-llm [--port N] [--chunk-delay-ms N]");
                return Ok(());
            }
            other => anyhow::bail!(
                "unknown argument {other:?}; usage: fake-llm [--port N] [--chunk-delay-ms N]"
            ),
        }
    }
    let fake = FakeLlm::start_on(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    if let Some(delay) = chunk_delay {
        fake.set_chunk_delay(delay);
    }
    println!("{}", serde_json::json!({"url": fake.url()}));
    tokio::signal::ctrl_c().await?;
    Ok(())
}
