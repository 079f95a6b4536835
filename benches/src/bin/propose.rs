//! `propose [--requests N] [--text N] [--gap-ms N]`: what judging the tool calls a model
//! proposes (docs/local-tools.md) costs a streamed Chat Completions response, in one run:
//! the same stream straight from the upstream, through Warden with `propose.enabled: false`,
//! and through Warden judging (the baseline pack's guardrails):
//!
//! - time to first token: from sending the request to the first text delta;
//! - text delta: from the upstream writing a text delta to the client reading it (judging
//!   must add nothing: text is never held);
//! - tool call released: from the upstream writing the finishing event to the client reading
//!   it; judging holds the call's deltas until then, decides it, and sends them with it.
//!
//! The upstream is in this process and writes each event on its own, `--gap-ms` apart; Warden
//! is `target/release/warden` (or `$WARDEN_BIN`), one worker, anonymous agents on loopback.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use warden_bench::process::{Proc, free_loopback_addr};

struct Args {
    requests: usize,
    text: usize,
    gap: Duration,
}

fn args() -> anyhow::Result<Args> {
    let mut args = Args {
        requests: 200,
        text: 20,
        gap: Duration::from_millis(2),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--requests" => args.requests = value()?.parse()?,
            "--text" => args.text = value()?.parse()?,
            "--gap-ms" => args.gap = Duration::from_millis(value()?.parse()?),
            other => bail!(
                "unknown argument {other:?}; usage: propose [--requests N] [--text N] [--gap-ms N]"
            ),
        }
    }
    Ok(args)
}

/// When the upstream wrote each event of the current stream.
type Sent = Arc<Mutex<Vec<Instant>>>;

/// The events of one answer: `text` deltas (`"t<i>"`), a call of `exec` whose arguments come
/// in 8 pieces, the finishing event, usage, `[DONE]`.
fn events(text: usize) -> Vec<String> {
    let chunk = |delta: &str, finish: &str| {
        format!(
            "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"finish_reason\":{finish}}}]}}\n\n"
        )
    };
    let mut out = vec![chunk(r#"{"role":"assistant","content":""}"#, "null")];
    for i in 0..text {
        out.push(chunk(&format!(r#"{{"content":"t{i} "}}"#), "null"));
    }
    out.push(chunk(
        r#"{"tool_calls":[{"index":0,"id":"call_bench","type":"function","function":{"name":"exec","arguments":""}}]}"#,
        "null",
    ));
    let arguments = r#"{\"command\":\"cargo test --workspace 2>&1 | tail -n 40\"}"#;
    let pieces: Vec<&str> = {
        let step = arguments.len().div_ceil(8);
        let mut v = Vec::new();
        let mut at = 0;
        while at < arguments.len() {
            let mut end = (at + step).min(arguments.len());
            // Never split an escape.
            while end < arguments.len() && arguments.as_bytes()[end - 1] == b'\\' {
                end += 1;
            }
            v.push(&arguments[at..end]);
            at = end;
        }
        v
    };
    for piece in pieces {
        out.push(chunk(
            &format!(r#"{{"tool_calls":[{{"index":0,"function":{{"arguments":"{piece}"}}}}]}}"#),
            "null",
        ));
    }
    out.push(chunk("{}", r#""tool_calls""#));
    out.push("data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":250,\"completion_tokens\":40,\"total_tokens\":290}}\n\n".into());
    out.push("data: [DONE]\n\n".into());
    out
}

/// An upstream that answers every request with [`events`], one HTTP chunk per event, `gap`
/// apart, noting when it wrote each.
async fn upstream(text: usize, gap: Duration, sent: Sent) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let events = Arc::new(events(text));
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let (events, sent) = (Arc::clone(&events), Arc::clone(&sent));
            tokio::spawn(async move {
                loop {
                    if read_request(&mut stream).await.is_err() {
                        return;
                    }
                    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
                    if stream.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    for event in events.iter() {
                        tokio::time::sleep(gap).await;
                        let framed = format!("{:x}\r\n{event}\r\n", event.len());
                        if stream.write_all(framed.as_bytes()).await.is_err() {
                            return;
                        }
                        if let Ok(mut s) = sent.lock() {
                            s.push(Instant::now());
                        }
                    }
                    if stream.write_all(b"0\r\n\r\n").await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(addr)
}

/// Reads one request (head and a `content-length` body).
async fn read_request(stream: &mut TcpStream) -> anyhow::Result<()> {
    let mut buf = Vec::with_capacity(4096);
    let mut byte = [0u8; 1024];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut byte).await?;
        if n == 0 {
            bail!("closed");
        }
        buf.extend_from_slice(&byte[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut byte).await?;
        if n == 0 {
            bail!("closed");
        }
        buf.extend_from_slice(&byte[..n]);
    }
    Ok(())
}

/// One row's figures out of a run's.
type Pick = fn(&Measured) -> &Histogram<u64>;

/// What one run of requests measured, in µs.
struct Measured {
    ttft: Histogram<u64>,
    text: Histogram<u64>,
    release: Histogram<u64>,
}

/// Sends `n` streamed requests to `target` (`host:port` and path), one after another on one
/// connection, and measures each.
async fn measure(
    target: SocketAddr,
    path: &str,
    n: usize,
    text: usize,
    sent: &Sent,
) -> anyhow::Result<Measured> {
    let mut m = Measured {
        ttft: Histogram::new(3)?,
        text: Histogram::new(3)?,
        release: Histogram::new(3)?,
    };
    let body = r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"run the tests"}],"tools":[{"type":"function","function":{"name":"exec","parameters":{"type":"object"}}}]}"#;
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: {target}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(target).await?;
    stream.set_nodelay(true)?;
    // Text delta `i` is event `1 + i`; the finishing event follows the call's 9 events.
    let finish_event = 1 + text + 9;
    for _ in 0..n {
        if let Ok(mut s) = sent.lock() {
            s.clear();
        }
        let start = Instant::now();
        stream.write_all(request.as_bytes()).await?;
        let mut seen = Vec::with_capacity(64 * 1024);
        let mut buf = vec![0u8; 64 * 1024];
        let mut next_text = 0;
        let mut text_at: Vec<Instant> = Vec::with_capacity(text);
        let mut finish_at = None;
        while !seen.ends_with(b"0\r\n\r\n") {
            let got = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
                .await
                .context("no answer within 10 s")??;
            if got == 0 {
                bail!("the connection closed mid-answer");
            }
            let now = Instant::now();
            seen.extend_from_slice(&buf[..got]);
            while next_text < text && contains(&seen, format!("\"t{next_text} \"").as_bytes()) {
                text_at.push(now);
                next_text += 1;
            }
            if finish_at.is_none() && contains(&seen, b"\"finish_reason\":\"tool_calls\"") {
                finish_at = Some(now);
            }
        }
        if next_text < text || finish_at.is_none() || !contains(&seen, b"call_bench") {
            bail!(
                "the answer lacks text or the call: {}",
                String::from_utf8_lossy(&seen)
            );
        }
        let sent = sent.lock().map(|s| s.clone()).unwrap_or_default();
        if let Some(first) = text_at.first() {
            m.ttft.record(micros(*first - start))?;
        }
        for (i, at) in text_at.iter().enumerate() {
            if let Some(s) = sent.get(1 + i) {
                m.text.record(micros(at.saturating_duration_since(*s)))?;
            }
        }
        if let (Some(at), Some(s)) = (finish_at, sent.get(finish_event)) {
            m.release.record(micros(at.saturating_duration_since(*s)))?;
        }
    }
    Ok(m)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    let sent: Sent = Arc::default();
    let up = upstream(args.text, args.gap, Arc::clone(&sent)).await?;
    let dir = tempfile::tempdir()?;
    let off = start_warden(dir.path(), "off", up, false)?;
    let on = start_warden(dir.path(), "on", up, true)?;
    println!(
        "propose bench: {} streamed answers per target, {} text deltas and one exec call ({} events, {} ms apart), 1 Warden worker",
        args.requests,
        args.text,
        args.text + 13,
        args.gap.as_millis()
    );
    let direct = measure(up, "/v1/chat/completions", args.requests, args.text, &sent).await?;
    let unjudged = measure(
        off.1,
        "/openai/chat/completions",
        args.requests,
        args.text,
        &sent,
    )
    .await?;
    let judged = measure(
        on.1,
        "/openai/chat/completions",
        args.requests,
        args.text,
        &sent,
    )
    .await?;
    println!(
        "{:<22} {:>9} {:>12} {:>12} {:>12}",
        "µs", "direct", "judging off", "judging on", "on - off"
    );
    let rows: [(&str, Pick); 3] = [
        ("time to first token", |m| &m.ttft),
        ("text delta", |m| &m.text),
        ("tool call released", |m| &m.release),
    ];
    for (name, of) in rows {
        for q in [0.5, 0.99] {
            let (d, f, n) = (
                of(&direct).value_at_quantile(q),
                of(&unjudged).value_at_quantile(q),
                of(&judged).value_at_quantile(q),
            );
            println!(
                "{:<22} {d:>9} {f:>12} {n:>12} {:>12}",
                format!("{name} p{}", (q * 100.0) as u32),
                i128::from(n) - i128::from(f)
            );
        }
    }
    drop((off, on));
    Ok(())
}

/// Warden in front of `upstream`, with the repository's baseline pack, judging proposed calls
/// or not; its process and proxy address.
fn start_warden(
    dir: &Path,
    name: &str,
    upstream: SocketAddr,
    judging: bool,
) -> anyhow::Result<(Proc, SocketAddr)> {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let policies = dir.join(format!("{name}-policies"));
    std::fs::create_dir_all(&policies)?;
    for file in ["schema.cedarschema", "baseline.cedar"] {
        std::fs::copy(repo.join("policies").join(file), policies.join(file))?;
    }
    let proxy = free_loopback_addr()?;
    let admin = free_loopback_addr()?;
    let config = serde_json::json!({
        "data_dir": dir.join(format!("{name}-data")),
        "policy": {"dir": policies},
        "identity": {"required": false},
        "listen": {"proxy": proxy.to_string(), "admin": admin.to_string()},
        "runtime": {"worker_threads": 1},
        "log": {"level": "warn"},
        "propose": {"enabled": judging},
        "routes": [{"name": "openai", "prefix": "/openai", "connector": "openai",
                    "upstream": format!("http://{upstream}/v1"), "credential": {"env": "BENCH_KEY"}}],
    });
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, serde_json::to_string_pretty(&config)?)?;
    let binary = std::env::var_os("WARDEN_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("target/release/warden"));
    let mut command = Command::new(&binary);
    command
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .env("BENCH_KEY", "sk-bench");
    let mut proc = Proc::spawn("warden", command, &dir.join(format!("{name}.log")))?;
    proc.wait_for_http_ok(admin, "/readyz")?;
    Ok((proc, proxy))
}
