//! The listener end to end on 127.0.0.1: plaintext and TLS serving, ALPN, mTLS, certificate
//! reload and graceful shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, Version};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::test_pki::{Leaf, TestCa, client_config};
use super::{ConnInfo, ConnectionCap, HttpOptions, ServerTls, TlsError, serve_with};
use crate::config::TlsConfig;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type TestBody = UnsyncBoxBody<Bytes, Infallible>;

/// Every test finishes within this, or fails.
const BOUND: Duration = Duration::from_secs(20);

/// A running `serve` with a handler that reports what it saw.
struct TestServer {
    addr: SocketAddr,
    calls: Arc<AtomicUsize>,
    shutdown: Option<oneshot::Sender<()>>,
    done: JoinHandle<()>,
}

impl TestServer {
    async fn start(tls: Option<Arc<ServerTls>>, grace: Duration) -> TestServer {
        TestServer::start_capped(tls, grace, ConnectionCap::for_tests(1024)).await
    }

    async fn start_capped(
        tls: Option<Arc<ServerTls>>,
        grace: Duration,
        cap: ConnectionCap,
    ) -> TestServer {
        TestServer::start_with(tls, grace, cap, HttpOptions::default()).await
    }

    /// A plaintext server whose connections close after `idle_timeout` idle and carry at
    /// most `streams` HTTP/2 streams at once.
    async fn start_bounded(idle_timeout: Duration, streams: u32) -> TestServer {
        let options = HttpOptions::new(idle_timeout, streams);
        let cap = ConnectionCap::for_tests(8);
        TestServer::start_with(None, Duration::from_secs(1), cap, options).await
    }

    async fn start_with(
        tls: Option<Arc<ServerTls>>,
        grace: Duration,
        cap: ConnectionCap,
        options: HttpOptions,
    ) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let calls = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = oneshot::channel::<()>();
        let counter = Arc::clone(&calls);
        let handler = move |req: Request<Incoming>, info: ConnInfo| {
            counter.fetch_add(1, Ordering::SeqCst);
            async move { respond(req, info) }
        };
        let shutdown = async move {
            let _ = rx.await;
        };
        let done = tokio::spawn(serve_with(
            listener, tls, options, cap, handler, shutdown, grace,
        ));
        TestServer {
            addr,
            calls,
            shutdown: Some(tx),
            done,
        }
    }

    fn signal_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// `/slow`: four chunks 150 ms apart. `/forever`: a chunk every 100 ms for a minute.
/// Anything else: "<version> tls=<bool> id=<identity or ->".
fn respond(req: Request<Incoming>, info: ConnInfo) -> Response<TestBody> {
    let body = match req.uri().path() {
        "/slow" => chunks(4, Duration::from_millis(150)),
        "/forever" => chunks(600, Duration::from_millis(100)),
        _ => {
            let id = info.client_identity.as_deref().unwrap_or("-");
            let text = format!("{:?} tls={} id={id}", req.version(), info.tls);
            Full::new(Bytes::from(text)).boxed_unsync()
        }
    };
    Response::new(body)
}

fn chunks(count: usize, every: Duration) -> TestBody {
    let stream = futures_util::stream::unfold(0, move |i| async move {
        if i == count {
            return None;
        }
        tokio::time::sleep(every).await;
        Some((
            Ok::<_, Infallible>(Frame::data(Bytes::from(format!("chunk{i};")))),
            i + 1,
        ))
    });
    StreamBody::new(stream).boxed_unsync()
}

/// GET `path` over `io` with HTTP/2 or HTTP/1.1; returns the response version and body.
async fn get<I>(io: I, h2: bool, path: &str) -> Result<(Version, String), BoxError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(io);
    let response = if h2 {
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
        tokio::spawn(conn);
        let req = Request::get(format!("https://localhost{path}")).body(Empty::<Bytes>::new())?;
        sender.send_request(req).await?
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(conn);
        let req = Request::get(path)
            .header("host", "localhost")
            .body(Empty::<Bytes>::new())?;
        sender.send_request(req).await?
    };
    let version = response.version();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((version, String::from_utf8_lossy(&body).into_owned()))
}

/// A TLS connection to `addr` as `localhost`; returns the stream and the server's leaf.
async fn tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> Result<
    (
        tokio_rustls::client::TlsStream<TcpStream>,
        CertificateDer<'static>,
    ),
    BoxError,
> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost")?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await?;
    let leaf = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .ok_or("server presented no certificate")?
        .clone()
        .into_owned();
    Ok((tls, leaf))
}

/// A GET over TLS that follows the negotiated ALPN protocol.
async fn tls_get(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    path: &str,
) -> Result<(Version, String), BoxError> {
    let (tls, _) = tls_connect(addr, config).await?;
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    get(tls, h2, path).await
}

/// A directory holding `server.crt`/`server.key` (and `client-ca.crt` if asked).
struct TlsFiles {
    _dir: tempfile::TempDir,
    config: TlsConfig,
}

fn tls_files(server: &Leaf, client_ca: Option<&TestCa>, require_client_cert: bool) -> TlsFiles {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = server.write(dir.path(), "server");
    let client_ca = client_ca.map(|ca| ca.write(dir.path(), "client-ca.crt"));
    TlsFiles {
        config: TlsConfig {
            cert,
            key,
            client_ca,
            require_client_cert,
        },
        _dir: dir,
    }
}

/// A server on TLS with `ca`'s certificate for `localhost`, trusting `client_ca` for client
/// certificates (required or not); the files it loaded, kept while it runs.
async fn tls_server(
    ca: &TestCa,
    client_ca: Option<&TestCa>,
    require_client_cert: bool,
) -> (TlsFiles, TestServer) {
    let files = tls_files(
        &ca.server_cert(&["localhost"]),
        client_ca,
        require_client_cert,
    );
    let tls = ServerTls::load(&files.config).expect("load TLS");
    let server = TestServer::start(Some(tls), Duration::from_secs(1)).await;
    (files, server)
}

/// The response (its headers) to a GET of `path` on a new HTTP/1.1 connection to `addr`;
/// its body still to come.
async fn stream_from(addr: SocketAddr, path: &str) -> Response<Incoming> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("h1");
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", "localhost")
        .body(Empty::<Bytes>::new());
    sender
        .send_request(req.expect("request"))
        .await
        .expect("headers")
}

async fn bounded<T>(test: impl Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, test)
        .await
        .expect("test exceeded its time bound")
}

#[tokio::test]
async fn serves_plaintext_http1_request() {
    bounded(async {
        let server = TestServer::start(None, Duration::from_secs(1)).await;
        let tcp = TcpStream::connect(server.addr).await.expect("connect");
        let (version, body) = get(tcp, false, "/").await.expect("request");
        assert_eq!(version, Version::HTTP_11);
        assert_eq!(body, "HTTP/1.1 tls=false id=-");
    })
    .await;
}

#[tokio::test]
async fn serves_h2c_with_prior_knowledge_on_plaintext() {
    bounded(async {
        let server = TestServer::start(None, Duration::from_secs(1)).await;
        let tcp = TcpStream::connect(server.addr).await.expect("connect");
        let (version, body) = get(tcp, true, "/").await.expect("request");
        assert_eq!(version, Version::HTTP_2);
        assert_eq!(body, "HTTP/2.0 tls=false id=-");
    })
    .await;
}

#[tokio::test]
async fn negotiates_h2_by_alpn_under_tls() {
    bounded(async {
        let ca = TestCa::new("alpn");
        let (_files, server) = tls_server(&ca, None, true).await;

        let config = client_config(&ca, None, &[b"h2", b"http/1.1"]);
        let (stream, _) = tls_connect(server.addr, config).await.expect("handshake");
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (version, body) = get(stream, true, "/").await.expect("request");
        assert_eq!(version, Version::HTTP_2);
        assert_eq!(body, "HTTP/2.0 tls=true id=-");
    })
    .await;
}

#[tokio::test]
async fn serves_http1_under_tls_when_client_offers_only_http11() {
    bounded(async {
        let ca = TestCa::new("alpn1");
        let (_files, server) = tls_server(&ca, None, true).await;

        let config = client_config(&ca, None, &[b"http/1.1"]);
        let (version, body) = tls_get(server.addr, config, "/").await.expect("request");
        assert_eq!(version, Version::HTTP_11);
        assert_eq!(body, "HTTP/1.1 tls=true id=-");
    })
    .await;
}

#[tokio::test]
async fn required_client_cert_refuses_client_without_one() {
    bounded(async {
        let ca = TestCa::new("mtls");
        let (_files, server) = tls_server(&ca, Some(&ca), true).await;

        let config = client_config(&ca, None, &[b"http/1.1"]);
        let refused = tls_get(server.addr, config, "/").await;
        assert!(
            refused.is_err(),
            "a client without a certificate was served: {refused:?}"
        );
        assert_eq!(
            server.calls.load(Ordering::SeqCst),
            0,
            "the handler ran for a refused client"
        );
    })
    .await;
}

#[tokio::test]
async fn required_client_cert_refuses_certificate_from_another_ca() {
    bounded(async {
        let ca = TestCa::new("mtls");
        let stranger = TestCa::new("stranger");
        let (_files, server) = tls_server(&ca, Some(&ca), true).await;

        let leaf = stranger.client_cert(&["intruder.example"], None);
        let config = client_config(&ca, Some(&leaf), &[b"http/1.1"]);
        assert!(tls_get(server.addr, config, "/").await.is_err());
        assert_eq!(server.calls.load(Ordering::SeqCst), 0);
    })
    .await;
}

#[tokio::test]
async fn verified_client_cert_sets_client_identity() {
    bounded(async {
        let ca = TestCa::new("mtls");
        let (_files, server) = tls_server(&ca, Some(&ca), true).await;

        let leaf = ca.client_cert(&["agent-7.fleet.example"], Some("agent 7"));
        let config = client_config(&ca, Some(&leaf), &[b"h2"]);
        let (_, body) = tls_get(server.addr, config, "/").await.expect("request");
        assert_eq!(body, "HTTP/2.0 tls=true id=agent-7.fleet.example");
    })
    .await;
}

#[tokio::test]
async fn optional_client_cert_admits_client_without_one() {
    bounded(async {
        let ca = TestCa::new("mtls-optional");
        let (_files, server) = tls_server(&ca, Some(&ca), false).await;

        let anonymous = client_config(&ca, None, &[b"http/1.1"]);
        let (_, body) = tls_get(server.addr, anonymous, "/")
            .await
            .expect("anonymous request");
        assert_eq!(body, "HTTP/1.1 tls=true id=-");

        let leaf = ca.client_cert(&["spiffe://fleet.example/agent/3"], None);
        let named = client_config(&ca, Some(&leaf), &[b"http/1.1"]);
        let (_, body) = tls_get(server.addr, named, "/")
            .await
            .expect("named request");
        assert_eq!(body, "HTTP/1.1 tls=true id=spiffe://fleet.example/agent/3");
    })
    .await;
}

#[tokio::test]
async fn reload_serves_new_certificate_and_keeps_open_connections() {
    bounded(async {
        let ca = TestCa::new("reload");
        let (first, second) = (
            ca.server_cert(&["localhost"]),
            ca.server_cert(&["localhost"]),
        );
        let files = tls_files(&first, None, true);
        let tls = ServerTls::load(&files.config).expect("load TLS");
        let server = TestServer::start(Some(Arc::clone(&tls)), Duration::from_secs(1)).await;
        let config = client_config(&ca, None, &[b"http/1.1"]);

        // A keep-alive connection opened before the reload.
        let (stream, seen) = tls_connect(server.addr, Arc::clone(&config))
            .await
            .expect("tls");
        assert_eq!(seen, first.der);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("h1");
        tokio::spawn(conn);

        second.write(files._dir.path(), "server");
        tls.reload().expect("reload");

        let (_, seen) = tls_connect(server.addr, Arc::clone(&config))
            .await
            .expect("tls");
        assert_eq!(
            seen, second.der,
            "a new handshake still got the old certificate"
        );

        let req = Request::get("/")
            .header("host", "localhost")
            .body(Empty::<Bytes>::new());
        let response = sender.send_request(req.expect("request")).await;
        assert!(
            response.is_ok(),
            "the connection opened before the reload was dropped"
        );
    })
    .await;
}

#[tokio::test]
async fn reloader_notices_files_renamed_into_place() {
    bounded(async {
        let ca = TestCa::new("watch");
        let (first, second) = (
            ca.server_cert(&["localhost"]),
            ca.server_cert(&["localhost"]),
        );
        let files = tls_files(&first, None, true);
        let tls = ServerTls::load(&files.config).expect("load TLS");
        let (stop, stopped) = oneshot::channel::<()>();
        let reloader = tls.spawn_reloader_every(Duration::from_millis(50), async move {
            let _ = stopped.await;
        });
        let server = TestServer::start(Some(tls), Duration::from_secs(1)).await;
        let config = client_config(&ca, None, &[b"http/1.1"]);

        let (next_cert, next_key) = second.write(files._dir.path(), "next");
        std::fs::rename(next_key, &files.config.key).expect("rename key");
        std::fs::rename(next_cert, &files.config.cert).expect("rename cert");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let (_, seen) = tls_connect(server.addr, Arc::clone(&config))
                .await
                .expect("tls");
            if seen == second.der {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the reloader never picked up the new files"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = stop.send(());
        reloader.await.expect("reloader stops on shutdown");
    })
    .await;
}

#[tokio::test]
async fn broken_new_key_keeps_previous_configuration() {
    bounded(async {
        let ca = TestCa::new("broken");
        let first = ca.server_cert(&["localhost"]);
        let files = tls_files(&first, None, true);
        let tls = ServerTls::load(&files.config).expect("load TLS");
        let server = TestServer::start(Some(Arc::clone(&tls)), Duration::from_secs(1)).await;

        std::fs::write(&files.config.key, "not a key\n").expect("overwrite key");
        let error = tls
            .reload()
            .expect_err("a file without a key must not load");
        assert!(matches!(error, TlsError::NoPrivateKey { .. }), "{error:?}");

        let config = client_config(&ca, None, &[b"http/1.1"]);
        let (_, seen) = tls_connect(server.addr, config)
            .await
            .expect("still serving TLS");
        assert_eq!(seen, first.der);
    })
    .await;
}

#[test]
fn load_error_names_the_key_file_without_a_key() {
    let ca = TestCa::new("errors");
    let files = tls_files(&ca.server_cert(&["localhost"]), None, true);
    std::fs::write(&files.config.key, ca.cert_pem.as_bytes()).expect("overwrite key");
    let error = ServerTls::load(&files.config).expect_err("no key");
    let expected = format!("no private key found in {}", files.config.key.display());
    assert!(error.to_string().starts_with(&expected), "{error}");
}

#[test]
fn load_rejects_key_of_another_certificate() {
    let ca = TestCa::new("errors");
    let files = tls_files(&ca.server_cert(&["localhost"]), None, true);
    let other = ca.server_cert(&["localhost"]);
    std::fs::write(&files.config.key, &other.key_pem).expect("overwrite key");
    let error = ServerTls::load(&files.config).expect_err("mismatched key");
    assert!(matches!(error, TlsError::Key { .. }), "{error:?}");
}

#[test]
fn load_error_names_a_missing_file() {
    let ca = TestCa::new("errors");
    let mut files = tls_files(&ca.server_cert(&["localhost"]), None, true);
    files.config.cert = PathBuf::from("/nonexistent/warden/server.crt");
    let error = ServerTls::load(&files.config).expect_err("missing file");
    assert!(
        error.to_string().contains("/nonexistent/warden/server.crt"),
        "{error}"
    );
}

#[test]
fn load_rejects_client_ca_file_without_certificates() {
    let ca = TestCa::new("errors");
    let files = tls_files(&ca.server_cert(&["localhost"]), Some(&ca), true);
    let ca_path = files.config.client_ca.clone().expect("client CA path");
    std::fs::write(&ca_path, "").expect("empty CA file");
    let error = ServerTls::load(&files.config).expect_err("empty client CA");
    assert!(matches!(error, TlsError::ClientCa { .. }), "{error:?}");
}

#[tokio::test]
async fn shutdown_lets_in_flight_stream_finish_and_refuses_new_connections() {
    bounded(async {
        let mut server = TestServer::start(None, Duration::from_secs(10)).await;
        let response = stream_from(server.addr, "/slow").await;

        server.signal_shutdown();
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(server.addr).await.is_ok() {
            assert!(
                Instant::now() < deadline,
                "new connections still accepted after shutdown"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        let body = response
            .into_body()
            .collect()
            .await
            .expect("the stream completes");
        assert_eq!(body.to_bytes(), "chunk0;chunk1;chunk2;chunk3;");
        server
            .done
            .await
            .expect("serve returns once the stream is done");
    })
    .await;
}

#[tokio::test]
async fn shutdown_closes_what_outlives_the_grace_period() {
    bounded(async {
        let mut server = TestServer::start(None, Duration::from_millis(300)).await;
        let response = stream_from(server.addr, "/forever").await;

        let started = Instant::now();
        server.signal_shutdown();
        server.done.await.expect("serve returns");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "serve outlived its grace period"
        );
        assert!(
            response.into_body().collect().await.is_err(),
            "the endless stream was not cut"
        );
    })
    .await;
}

#[tokio::test]
async fn beyond_its_cap_a_listener_accepts_only_once_a_connection_closes() {
    bounded(async {
        let metrics = super::CapMetrics::new();
        let cap = ConnectionCap::new("test", 2, &metrics);
        let server = TestServer::start_capped(None, Duration::from_secs(1), cap).await;
        // Two idle connections hold the listener's two slots (served: a request answers).
        let mut held = Vec::new();
        for _ in 0..2 {
            let tcp = TcpStream::connect(server.addr).await.expect("connect");
            let io = TokioIo::new(tcp);
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            let req = Request::get("/")
                .header("host", "localhost")
                .body(Empty::<Bytes>::new())
                .unwrap();
            assert!(
                sender
                    .send_request(req)
                    .await
                    .unwrap()
                    .status()
                    .is_success()
            );
            held.push(sender);
        }
        // A third connects (the kernel's backlog takes it) but is not served while they stay.
        let third = TcpStream::connect(server.addr).await.expect("connect");
        let waiting = tokio::spawn(get(third, false, "/"));
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!waiting.is_finished(), "served beyond the cap");
        assert_eq!(server.calls.load(Ordering::SeqCst), 2);
        let text = render(&metrics);
        assert!(
            text.contains(r#"warden_listener_connection_cap_reached_total{listener="test"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"warden_listener_connections{listener="test"} 2"#),
            "{text}"
        );
        // One closes: the third is accepted and served.
        drop(held.pop());
        let (_, body) = waiting.await.unwrap().expect("served once a slot is free");
        assert_eq!(body, "HTTP/1.1 tls=false id=-");
    })
    .await;
}

/// An HTTP/1 connection to `addr` with one request answered (so it is served).
async fn served_connection(
    addr: SocketAddr,
) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get("/")
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    assert!(
        sender
            .send_request(req)
            .await
            .unwrap()
            .status()
            .is_success()
    );
    sender
}

#[tokio::test]
async fn a_listener_taking_slots_after_accept_holds_none_idle_and_closes_what_finds_none() {
    bounded(async {
        // One cap shared by many listeners (local servers' processes), each within a cap of
        // its own.
        let shared = ConnectionCap::for_tests(3);
        let options = HttpOptions {
            slot_after_accept: true,
            ..HttpOptions::default()
        };
        let first = TestServer::start_with(
            None,
            Duration::from_secs(1),
            shared.within(2),
            options.clone(),
        )
        .await;
        let _second =
            TestServer::start_with(None, Duration::from_secs(1), shared.within(2), options).await;
        // Listening takes no slot: all three are free.
        let taken: Vec<_> = (0..3).map(|_| shared.try_slot()).collect();
        assert!(taken.iter().all(Option::is_some), "a listener holds a slot");
        drop(taken);
        // The first listener serves two connections at most, whatever the shared cap has.
        let held = [
            served_connection(first.addr).await,
            served_connection(first.addr).await,
        ];
        let third = TcpStream::connect(first.addr).await.expect("connect");
        assert!(
            get(third, false, "/").await.is_err(),
            "served beyond its own cap"
        );
        // The shared cap has one left, which the other listener's process may take.
        let left = shared.try_slot();
        assert!(left.is_some());
        assert!(shared.try_slot().is_none());
        drop((held, left));
    })
    .await;
}

fn render(caps: &super::CapMetrics) -> String {
    let metrics = crate::telemetry::metrics::Metrics::new();
    metrics.register(caps.collectors());
    metrics.render()
}

/// An HTTP/2 connection (prior knowledge) to `addr`, its connection task's handle, and its
/// first request answered (so the server's settings are known).
async fn h2_connection(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    JoinHandle<Result<(), hyper::Error>>,
) {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("h2");
    let conn = tokio::spawn(conn);
    let first = sender
        .send_request(h2_get("/"))
        .await
        .expect("first request");
    first.into_body().collect().await.expect("first body");
    (sender, conn)
}

fn h2_get(path: &str) -> Request<Empty<Bytes>> {
    Request::get(format!("http://localhost{path}"))
        .body(Empty::<Bytes>::new())
        .expect("request")
}

#[tokio::test]
async fn an_idle_h2_connection_is_closed_after_its_idle_timeout_and_its_slot_freed() {
    bounded(async {
        let cap = ConnectionCap::for_tests(1);
        let options = HttpOptions::new(Duration::from_millis(400), 100);
        let server = TestServer::start_with(None, Duration::from_secs(1), cap, options).await;
        let (sender, conn) = h2_connection(server.addr).await;
        // A second connection waits for the only slot.
        let second = TcpStream::connect(server.addr).await.expect("connect");
        let waiting = tokio::spawn(get(second, true, "/"));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!conn.is_finished(), "closed before its idle timeout");
        // The first connection, still alive (it answers pings) but idle, is closed with a
        // GOAWAY, and the second is served in its slot.
        tokio::time::timeout(Duration::from_secs(5), conn)
            .await
            .expect("the idle connection is closed")
            .expect("its task")
            .expect("closed gracefully");
        let (version, _) = waiting
            .await
            .unwrap()
            .expect("served once the slot is free");
        assert_eq!(version, Version::HTTP_2);
        drop(sender);
    })
    .await;
}

#[tokio::test]
async fn an_h2_connection_with_a_stream_open_is_not_idle() {
    bounded(async {
        let server = TestServer::start_bounded(Duration::from_millis(200), 100).await;
        let (mut sender, conn) = h2_connection(server.addr).await;
        // Four chunks 150 ms apart: longer than the idle timeout, never idle meanwhile.
        let slow = sender.send_request(h2_get("/slow")).await.expect("headers");
        let body = slow.into_body().collect().await.expect("the whole stream");
        assert_eq!(body.to_bytes(), "chunk0;chunk1;chunk2;chunk3;");
        assert!(!conn.is_finished());
    })
    .await;
}

#[tokio::test]
async fn an_h2_stream_beyond_max_concurrent_streams_waits_for_one_to_end() {
    bounded(async {
        let server = TestServer::start_bounded(Duration::from_secs(30), 2).await;
        let (mut sender, _conn) = h2_connection(server.addr).await;
        let mut open = Vec::new();
        for _ in 0..2 {
            open.push(
                sender
                    .send_request(h2_get("/forever"))
                    .await
                    .expect("headers"),
            );
        }
        let third = tokio::spawn(sender.send_request(h2_get("/")));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!third.is_finished(), "a third stream was served beside two");
        assert_eq!(
            server.calls.load(Ordering::SeqCst),
            3,
            "the first request and two streams"
        );
        // One stream ends (the client resets it): the third goes.
        drop(open.pop());
        let third = tokio::time::timeout(Duration::from_secs(5), third)
            .await
            .expect("the third stream goes once one ends")
            .unwrap()
            .expect("answered");
        assert!(third.status().is_success());
    })
    .await;
}
