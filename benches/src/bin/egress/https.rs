//! `egress https [--requests N] [--opens N] [--seconds N] [--connections N] [--durability
//! disk|process]`: what Warden costs an HTTPS request, in one run, three ways to the same
//! origin (HTTP/1.1 over TLS 1.3, a 1 KiB POST answered with `ok`):
//!
//! - `direct`: straight to the origin;
//! - `tunnel`: through a `CONNECT` tunnel Warden does not intercept (TLS end to end);
//! - `intercepted`: through a tunnel to a host of `egress.intercept.hosts`: Warden answers the
//!   handshake with a leaf of its CA, judges, inspects and records each request as
//!   `egress:request`, and sends it on over TLS of its own.
//!
//! For each: the latency of `--requests` requests one after the other on one kept-alive
//! connection; requests per second of `--connections` kept-alive connections in a closed loop
//! for `--seconds`, with Warden's CPU per request; and opening: a new connection, its
//! handshake(s) and one request, `--opens` times (client session resumption off, as a fresh
//! process), with Warden's CPU per connection; for `intercepted` twice, to one host (its leaf
//! cached after the first) and to a new host each time (a leaf minted each time).
//!
//! Names resolve through a DNS responder in this process (any name: 127.0.0.1, TTL 0, so
//! every tunnel asks, as in the tests); the origin's certificate is of a CA of the bench's,
//! which the client and Warden's upstream side (`upstream_ca_only`) trust.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use warden_bench::process::{cpu_seconds, process_tree};
use warden_e2e::egress::Pki;

use super::{connect_via, micros, start_warden};

/// The host tunnels go to blind.
const TUNNEL_HOST: &str = "tunnel.bench.test";
/// The host whose tunnels Warden intercepts.
const INTERCEPT_HOST: &str = "intercept.bench.test";
/// Names under it are intercepted too: a new one per opening mints a leaf each time.
const MINT_DOMAIN: &str = "mint.bench.test";

const POLICY: &str = r#"@id("bench-egress-https")
@egress("internal")
permit (
  principal,
  action in [Action::"egress:connect", Action::"egress:request"],
  resource
);
"#;

pub struct Args {
    requests: usize,
    opens: usize,
    seconds: u64,
    connections: usize,
    durability: String,
}

const USAGE: &str = "usage: egress https [--requests N] [--opens N] [--seconds N] \
                     [--connections N] [--durability disk|process]";

pub fn args(mut it: impl Iterator<Item = String>) -> anyhow::Result<Args> {
    let mut args = Args {
        requests: 2000,
        opens: 300,
        seconds: 5,
        connections: 8,
        durability: "disk".into(),
    };
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .with_context(|| format!("{arg} needs a value; {USAGE}"))
        };
        match arg.as_str() {
            "--requests" => args.requests = value()?.parse()?,
            "--opens" => args.opens = value()?.parse()?,
            "--seconds" => args.seconds = value()?.parse()?,
            "--connections" => args.connections = value()?.parse()?,
            "--durability" => args.durability = value()?,
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}; {USAGE}"),
        }
    }
    if args.requests == 0 || args.opens == 0 || args.connections == 0 || args.seconds == 0 {
        bail!("--requests, --opens, --connections and --seconds must be at least 1");
    }
    Ok(args)
}

/// Which way a connection goes to the origin.
#[derive(Clone, Copy, PartialEq)]
enum Way {
    Direct,
    Tunnel,
    Intercepted,
}

/// What a connection needs: where the origin and the proxy are, and the client's TLS.
#[derive(Clone)]
struct Client {
    origin: SocketAddr,
    egress: SocketAddr,
    tls: TlsConnector,
    body: Bytes,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let load_before = load_average();
    let pki = Pki::new();
    let origin =
        origin(pki.server(&[TUNNEL_HOST, INTERCEPT_HOST, &format!("*.{MINT_DOMAIN}")])).await?;
    let dns = dns_responder().await?;
    let dir = tempfile::tempdir()?;
    let bench_ca = dir.path().join("bench-ca.pem");
    std::fs::write(&bench_ca, &pki.ca_pem)?;
    let extra = json!({
        "nameservers": [dns.to_string()],
        "intercept": {
            "hosts": [INTERCEPT_HOST, format!("*.{MINT_DOMAIN}")],
            "upstream_ca_file": bench_ca,
            "upstream_ca_only": true,
        },
    });
    let (warden, egress) = start_warden(dir.path(), &args.durability, POLICY, extra)?;
    let warden_ca = std::fs::read(dir.path().join("data/keys/egress-ca.pem"))
        .context("reading Warden's interception CA")?;
    let client = Client {
        origin,
        egress,
        tls: client_tls(&[pki.ca_pem.as_bytes(), warden_ca.as_slice()])?,
        body: Bytes::from(prose(1024)),
    };
    let pids = process_tree(warden.pid());
    let cpu = || cpu_seconds(&pids);

    println!(
        "egress https bench: origin at {origin}, Warden egress at {egress} (audit.durability {}, \
         1 worker), load average {load_before}",
        args.durability
    );
    let ways = [
        (Way::Direct, "direct"),
        (Way::Tunnel, "tunnel"),
        (Way::Intercepted, "intercepted"),
    ];

    println!(
        "\nrequests on one kept-alive connection ({} each), µs",
        args.requests
    );
    println!(
        "{:<12} {:>8} {:>8} {:>10} {:>10}",
        "", "p50", "p99", "+p50", "+p99"
    );
    let mut direct = None;
    for (way, name) in ways {
        let mut sender = client.open(way, host(way)).await?;
        let hist = sequential(&mut sender, &client, way, args.requests).await?;
        let (p50, p99) = (hist.value_at_quantile(0.5), hist.value_at_quantile(0.99));
        let (d50, d99) = *direct.get_or_insert((p50, p99));
        println!(
            "{name:<12} {p50:>8} {p99:>8} {:>10} {:>10}",
            p50.saturating_sub(d50),
            p99.saturating_sub(d99)
        );
    }

    println!(
        "\nclosed loop, {} kept-alive connections, {} s each",
        args.connections, args.seconds
    );
    println!(
        "{:<12} {:>10} {:>8} {:>8} {:>16}",
        "", "req/s", "p50 µs", "p99 µs", "Warden CPU µs/r"
    );
    for (way, name) in ways {
        let before = cpu();
        let (count, hist, elapsed) =
            closed_loop(&client, way, args.connections, args.seconds).await?;
        let spent = cpu() - before;
        println!(
            "{name:<12} {:>10.0} {:>8} {:>8} {:>16}",
            count as f64 / elapsed.as_secs_f64(),
            hist.value_at_quantile(0.5),
            hist.value_at_quantile(0.99),
            per(way, spent, count)
        );
    }

    println!(
        "\nopening: connect, handshake(s), one request ({} each)",
        args.opens
    );
    println!(
        "{:<24} {:>8} {:>8} {:>10} {:>18}",
        "", "p50 µs", "p99 µs", "+p50", "Warden CPU µs/open"
    );
    let mut direct = None;
    let opening_ways = [
        (Way::Direct, "direct", false),
        (Way::Tunnel, "tunnel", false),
        (Way::Intercepted, "intercepted, leaf cached", false),
        (Way::Intercepted, "intercepted, leaf minted", true),
    ];
    for (round, (way, name, mint)) in opening_ways.into_iter().enumerate() {
        let before = cpu();
        let mut hist = Histogram::<u64>::new(3)?;
        for i in 0..args.opens {
            let host = if mint {
                format!("h{round}-{i}.{MINT_DOMAIN}")
            } else {
                host(way).to_owned()
            };
            let t = Instant::now();
            let mut sender = client.open(way, &host).await?;
            client.request(&mut sender, &host).await?;
            hist.record(micros(t.elapsed()))?;
        }
        let spent = cpu() - before;
        let p50 = hist.value_at_quantile(0.5);
        let d50 = *direct.get_or_insert(p50);
        println!(
            "{name:<24} {p50:>8} {:>8} {:>10} {:>18}",
            hist.value_at_quantile(0.99),
            p50.saturating_sub(d50),
            per(way, spent, args.opens as u64)
        );
    }
    println!("\nload average at the end: {}", load_average());
    drop(warden);
    Ok(())
}

/// The host a connection of `way` names (the mint case names its own).
fn host(way: Way) -> &'static str {
    match way {
        Way::Intercepted => INTERCEPT_HOST,
        Way::Direct | Way::Tunnel => TUNNEL_HOST,
    }
}

/// Warden's CPU per request or connection, µs; `–` for `direct` (Warden is not in the way).
fn per(way: Way, seconds: f64, count: u64) -> String {
    if way == Way::Direct || count == 0 {
        "–".to_owned()
    } else {
        format!("{:.1}", seconds * 1e6 / count as f64)
    }
}

impl Client {
    /// A new HTTP/1.1-over-TLS connection to `host` at the origin, the way `way` says.
    async fn open(&self, way: Way, host: &str) -> anyhow::Result<SendRequest<Full<Bytes>>> {
        let tcp = match way {
            Way::Direct => {
                let stream = TcpStream::connect(self.origin).await?;
                stream.set_nodelay(true)?;
                stream
            }
            Way::Tunnel | Way::Intercepted => {
                connect_via(self.egress, format!("{host}:{}", self.origin.port())).await?
            }
        };
        let name = ServerName::try_from(host.to_owned())?;
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .with_context(|| format!("TLS with {host} failed"))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(connection);
        Ok(sender)
    }

    /// One POST of the body on `sender`, its answer read whole; an error unless `200 ok`.
    async fn request(
        &self,
        sender: &mut SendRequest<Full<Bytes>>,
        host: &str,
    ) -> anyhow::Result<()> {
        sender.ready().await?;
        let request = http::Request::post("/v1/upload")
            .header(http::header::HOST, format!("{host}:{}", self.origin.port()))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(self.body.clone()))?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        if status != http::StatusCode::OK || body.as_ref() != b"ok" {
            bail!(
                "{host}: {status} {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            );
        }
        Ok(())
    }
}

/// Microseconds of each of `n` requests one after the other on `sender`.
async fn sequential(
    sender: &mut SendRequest<Full<Bytes>>,
    client: &Client,
    way: Way,
    n: usize,
) -> anyhow::Result<Histogram<u64>> {
    let mut hist = Histogram::<u64>::new(3)?;
    for _ in 0..n {
        let t = Instant::now();
        client.request(sender, host(way)).await?;
        hist.record(micros(t.elapsed()))?;
    }
    Ok(hist)
}

/// `connections` kept-alive connections each sending requests one after the other for
/// `seconds` (after one warm-up second): how many were answered, their latencies, and the
/// measured time.
async fn closed_loop(
    client: &Client,
    way: Way,
    connections: usize,
    seconds: u64,
) -> anyhow::Result<(u64, Histogram<u64>, Duration)> {
    let start = Instant::now() + Duration::from_secs(1);
    let end = start + Duration::from_secs(seconds);
    let mut tasks = Vec::with_capacity(connections);
    for _ in 0..connections {
        let client = client.clone();
        let mut sender = client.open(way, host(way)).await?;
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new(3)?;
            loop {
                let t = Instant::now();
                if t >= end {
                    break;
                }
                client.request(&mut sender, host(way)).await?;
                if t >= start {
                    hist.record(micros(t.elapsed()))?;
                }
            }
            anyhow::Ok(hist)
        }));
    }
    let mut all = Histogram::<u64>::new(3)?;
    for task in tasks {
        all.add(task.await??)?;
    }
    Ok((all.len(), all, end - start))
}

/// About `bytes` of JSON a tool would upload: prose, nothing for a detector.
fn prose(bytes: usize) -> Vec<u8> {
    let mut text = String::new();
    while text.len() < bytes - 40 {
        text.push_str("The build of 2026-12-04 passed 1234 tests on the runner. ");
    }
    serde_json::to_vec(&json!({ "report": text })).expect("json")
}

/// The client's TLS: these CAs only (PEM), HTTP/1.1, no session resumption (each opening is
/// a full handshake, as a new process's).
fn client_tls(cas: &[&[u8]]) -> anyhow::Result<TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    for pem in cas {
        for cert in CertificateDer::pem_slice_iter(pem) {
            roots.add(cert?)?;
        }
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// An HTTPS origin on a free loopback port answering every request `200 ok` once it has read
/// the body.
async fn origin(tls: Arc<rustls::ServerConfig>) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let acceptor = TlsAcceptor::from(tls);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    |req: http::Request<hyper::body::Incoming>| async move {
                        let _ = req.into_body().collect().await?;
                        Ok::<_, hyper::Error>(http::Response::new(Full::new(Bytes::from_static(
                            b"ok",
                        ))))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// A DNS responder on a free loopback UDP port: every name's A record is 127.0.0.1 (TTL 0),
/// other types have none.
async fn dns_responder() -> anyhow::Result<SocketAddr> {
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    let addr = socket.local_addr()?;
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            if let Some(answer) = dns_answer(&buf[..n]) {
                let _ = socket.send_to(&answer, from).await;
            }
        }
    });
    Ok(addr)
}

/// The answer to one DNS query (its first question only); `None` when it is malformed.
fn dns_answer(query: &[u8]) -> Option<Vec<u8>> {
    let mut at = 12;
    while *query.get(at)? != 0 {
        at += 1 + usize::from(query[at]);
    }
    let qtype = u16::from_be_bytes([*query.get(at + 1)?, *query.get(at + 2)?]);
    let question = query.get(12..at + 5)?;
    let a = qtype == 1;
    let mut out = Vec::with_capacity(question.len() + 32);
    out.extend_from_slice(&query[..2]);
    // A response, recursion desired (as asked) and available, no error.
    out.extend_from_slice(&[0x80 | (query[2] & 0x01), 0x80]);
    out.extend_from_slice(&[0, 1, 0, u8::from(a), 0, 0, 0, 0]);
    out.extend_from_slice(question);
    if a {
        // The question's name (a pointer to it), A, IN, TTL 0, 4 bytes: 127.0.0.1.
        out.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 127, 0, 0, 1]);
    }
    Some(out)
}

/// The 1-, 5- and 15-minute load averages.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}
