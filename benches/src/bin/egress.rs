//! `egress [--mib N] [--pings N] [--tunnels N] [--durability disk|process]`: what Warden's
//! egress proxy costs a CONNECT tunnel, against a direct connection to the same server, in one
//! run:
//!
//! - opening: time from TCP connect to the first echoed byte, through a new tunnel (auth,
//!   decision, its durable record, dial, first-bytes check) or directly, `--tunnels` times;
//! - round trip: 64-byte ping-pongs on one open connection, `--pings` times;
//! - throughput: `--mib` MiB sent up and echoed back down on one connection.
//!
//! Each through an HTTP/1.1 `CONNECT` tunnel and through an HTTP/2 one (a stream of one
//! prior-knowledge HTTP/2 connection opened beforehand, so its opening is a new stream, not a
//! new TCP connection).
//!
//! The server is an echo on 127.0.0.1 in this process; Warden is `target/release/warden` (or
//! `$WARDEN_BIN`), one worker thread, anonymous agents on loopback, a policy permitting the
//! loopback host. Load generator, server and Warden share the machine's cores.
//!
//! `egress https [...]` measures HTTPS requests instead: straight to an origin, through a
//! blind tunnel, and through a tunnel Warden intercepts (`egress.intercept`), in one run
//! (`https.rs`).

#[path = "egress/https.rs"]
mod https;

use std::fmt::Display;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::Empty;
use hyper::client::conn::http2::SendRequest;
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use warden_bench::process::{Proc, free_loopback_addr};

const POLICY: &str = r#"@id("bench-egress")
@egress("internal")
permit (principal, action == Action::"egress:connect", resource == Host::"127.0.0.1");
"#;

struct Args {
    mib: usize,
    pings: usize,
    tunnels: usize,
    durability: String,
}

fn args() -> anyhow::Result<Args> {
    let mut args = Args {
        mib: 256,
        pings: 20_000,
        tunnels: 500,
        durability: "disk".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--mib" => args.mib = value()?.parse()?,
            "--pings" => args.pings = value()?.parse()?,
            "--tunnels" => args.tunnels = value()?.parse()?,
            "--durability" => args.durability = value()?,
            other => bail!(
                "unknown argument {other:?}; usage: egress [--mib N] [--pings N] [--tunnels N] [--durability disk|process], or egress https --help"
            ),
        }
    }
    Ok(args)
}

fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("https") {
        let args = https::args(std::env::args().skip(2))?;
        return tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?
            .block_on(https::run(args));
    }
    let args = args()?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(tunnels(args))
}

async fn tunnels(args: Args) -> anyhow::Result<()> {
    let echo = echo_server().await?;
    let dir = tempfile::tempdir()?;
    let (warden, egress) = start_warden(dir.path(), &args.durability, POLICY, json!({}))?;

    println!(
        "egress bench: echo at {echo}, Warden egress at {egress} (audit.durability {}, 1 worker)",
        args.durability
    );
    println!(
        "{:<12} {:>12} {:>12} {:>12} {:>12} {:>12}",
        "", "direct", "tunnel", "added", "h2 tunnel", "h2 added"
    );
    let h2 = h2_connection(egress).await?;

    let direct = opening(args.tunnels, || direct_to(echo)).await?;
    let tunnel = opening(args.tunnels, || connect_via(egress, echo)).await?;
    let h2_tunnel = opening(args.tunnels, || connect_via_h2(h2.clone(), echo)).await?;
    row("open p50", &direct, &tunnel, &h2_tunnel, 0.5);
    row("open p99", &direct, &tunnel, &h2_tunnel, 0.99);

    let direct = ping_pong(&mut direct_to(echo).await?, args.pings).await?;
    let tunnel = ping_pong(&mut connect_via(egress, echo).await?, args.pings).await?;
    let h2_tunnel = ping_pong(&mut connect_via_h2(h2.clone(), echo).await?, args.pings).await?;
    row("rtt p50", &direct, &tunnel, &h2_tunnel, 0.5);
    row("rtt p99", &direct, &tunnel, &h2_tunnel, 0.99);

    let bytes = args.mib * 1024 * 1024;
    let direct = throughput(direct_to(echo).await?, bytes).await?;
    let tunnel = throughput(connect_via(egress, echo).await?, bytes).await?;
    let h2_tunnel = throughput(connect_via_h2(h2, echo).await?, bytes).await?;
    println!(
        "{:<12} {:>6.0} MiB/s {:>6.0} MiB/s {:>11.2}x {:>6.0} MiB/s {:>11.2}x",
        "throughput",
        direct,
        tunnel,
        tunnel / direct,
        h2_tunnel,
        h2_tunnel / direct
    );
    drop(warden);
    Ok(())
}

/// Prints the `q` quantile of `direct`, `tunnel` and `h2` (µs) and the differences.
fn row(name: &str, direct: &Histogram<u64>, tunnel: &Histogram<u64>, h2: &Histogram<u64>, q: f64) {
    let (d, t, h) = (
        direct.value_at_quantile(q),
        tunnel.value_at_quantile(q),
        h2.value_at_quantile(q),
    );
    println!(
        "{name:<12} {d:>9} µs {t:>9} µs {:>9} µs {h:>9} µs {:>9} µs",
        t.saturating_sub(d),
        h.saturating_sub(d)
    );
}

/// A server that echoes what it reads, on a free loopback port.
async fn echo_server() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    Ok(addr)
}

/// Warden with the egress proxy on a free port, `policy` its only policy and `egress_extra` more of
/// its `egress:` section; its process and the egress address.
fn start_warden(
    dir: &std::path::Path,
    durability: &str,
    policy: &str,
    egress_extra: serde_json::Value,
) -> anyhow::Result<(Proc, SocketAddr)> {
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies)?;
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::copy(
        repo.join("policies/schema.cedarschema"),
        policies.join("schema.cedarschema"),
    )?;
    std::fs::write(policies.join("egress.cedar"), policy)?;
    let proxy = free_loopback_addr()?;
    let admin = free_loopback_addr()?;
    let egress = free_loopback_addr()?;
    let mut egress_section = json!({"listen": egress.to_string()});
    if let (Some(section), Some(extra)) = (egress_section.as_object_mut(), egress_extra.as_object())
    {
        section.extend(extra.clone());
    }
    let config = json!({
        "data_dir": dir.join("data"),
        "policy": {"dir": policies},
        "identity": {"required": false},
        "listen": {"proxy": proxy.to_string(), "admin": admin.to_string()},
        "runtime": {"worker_threads": 1},
        "audit": {"durability": durability},
        "log": {"level": "warn"},
        "routes": [],
        "egress": egress_section,
    });
    let path = dir.join("warden.yaml");
    std::fs::write(&path, serde_json::to_string_pretty(&config)?)?;
    let binary = std::env::var_os("WARDEN_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("target/release/warden"));
    let mut command = Command::new(&binary);
    command.arg("serve").arg("--config").arg(&path);
    let mut proc = Proc::spawn("warden", command, &dir.join("warden.log"))?;
    proc.wait_for_http_ok(admin, "/readyz")?;
    Ok((proc, egress))
}

/// A direct connection to `target`.
async fn direct_to(target: SocketAddr) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect(target).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A tunnel to `target` (`host:port`) through the egress proxy at `egress`.
async fn connect_via(egress: SocketAddr, target: impl Display) -> std::io::Result<TcpStream> {
    let mut stream = TcpStream::connect(egress).await?;
    stream.set_nodelay(true)?;
    stream
        .write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await?;
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await? == 0 {
            return Err(std::io::Error::other("the proxy closed the connection"));
        }
        head.push(byte[0]);
    }
    if !head.starts_with(b"HTTP/1.1 200") {
        return Err(std::io::Error::other(format!(
            "the proxy refused the tunnel: {}",
            String::from_utf8_lossy(&head)
        )));
    }
    Ok(stream)
}

/// An HTTP/2 connection (prior knowledge) to the egress proxy at `egress`.
async fn h2_connection(egress: SocketAddr) -> anyhow::Result<SendRequest<Empty<Bytes>>> {
    let stream = TcpStream::connect(egress).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// A tunnel to `target` on a new stream of the HTTP/2 connection `h2`.
async fn connect_via_h2(
    mut h2: SendRequest<Empty<Bytes>>,
    target: SocketAddr,
) -> std::io::Result<TokioIo<Upgraded>> {
    let request = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(target.to_string())
        .body(Empty::new())
        .map_err(std::io::Error::other)?;
    let response = h2
        .send_request(request)
        .await
        .map_err(std::io::Error::other)?;
    if response.status() != http::StatusCode::OK {
        return Err(std::io::Error::other(format!(
            "the proxy refused the tunnel: {}",
            response.status()
        )));
    }
    let upgraded = hyper::upgrade::on(response)
        .await
        .map_err(std::io::Error::other)?;
    Ok(TokioIo::new(upgraded))
}

/// Microseconds from connecting to the first echoed byte, `n` times.
async fn opening<F, Fut, S>(n: usize, connect: F) -> anyhow::Result<Histogram<u64>>
where
    F: Fn() -> Fut,
    Fut: Future<Output = std::io::Result<S>>,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut hist = Histogram::<u64>::new(3)?;
    for _ in 0..n {
        let t = Instant::now();
        let mut stream = connect().await?;
        stream.write_all(b"x").await?;
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await?;
        hist.record(micros(t.elapsed()))?;
    }
    Ok(hist)
}

/// Microseconds per 64-byte round trip on `stream`, `n` times.
async fn ping_pong<S>(stream: &mut S, n: usize) -> anyhow::Result<Histogram<u64>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut hist = Histogram::<u64>::new(3)?;
    let ping = [7u8; 64];
    let mut pong = [0u8; 64];
    for _ in 0..n {
        let t = Instant::now();
        stream.write_all(&ping).await?;
        stream.read_exact(&mut pong).await?;
        hist.record(micros(t.elapsed()))?;
    }
    Ok(hist)
}

/// MiB/s of `bytes` sent and echoed back on `stream` (both directions at once).
async fn throughput<S>(stream: S, bytes: usize) -> anyhow::Result<f64>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut r, mut w) = tokio::io::split(stream);
    let chunk = vec![1u8; 64 * 1024];
    let t = Instant::now();
    let send = async {
        let mut sent = 0;
        while sent < bytes {
            let n = chunk.len().min(bytes - sent);
            w.write_all(&chunk[..n]).await?;
            sent += n;
        }
        Ok::<_, std::io::Error>(())
    };
    let receive = async {
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0;
        while got < bytes {
            let n = r.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::Error::other("closed early"));
            }
            got += n;
        }
        Ok(())
    };
    tokio::try_join!(send, receive)?;
    Ok(bytes as f64 / (1024.0 * 1024.0) / t.elapsed().as_secs_f64())
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
