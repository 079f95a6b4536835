//! The upstream client against test servers on 127.0.0.1.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::{UpstreamClient, UpstreamError};
use crate::config::{TlsConfig, UpstreamConfig};
use crate::listener::test_pki::TestCa;
use crate::listener::{ConnInfo, ServerTls, serve};

/// Every test finishes within this, or fails.
const BOUND: Duration = Duration::from_secs(20);

/// An upstream served by the listener: `/slow` answers after 2 s; `/redirect` answers 302 to
/// the cloud metadata address; anything else answers
/// "<version> port=<client port>" at once.
struct Upstream {
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
    _dir: Option<tempfile::TempDir>,
}

impl Upstream {
    async fn start(ca: Option<&TestCa>) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (dir, tls) = match ca {
            None => (None, None),
            Some(ca) => {
                let dir = tempfile::tempdir().expect("tempdir");
                let (cert, key) = ca
                    .server_cert(&["localhost", "127.0.0.1"])
                    .write(dir.path(), "upstream");
                let cfg = TlsConfig {
                    cert,
                    key,
                    client_ca: None,
                    require_client_cert: false,
                };
                (
                    Some(dir),
                    Some(ServerTls::load(&cfg).expect("upstream TLS")),
                )
            }
        };
        let handler = |req: Request<Incoming>, info: ConnInfo| async move {
            if req.uri().path() == "/slow" {
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            if req.uri().path() == "/redirect" {
                let mut moved = Response::new(Full::new(Bytes::new()));
                *moved.status_mut() = StatusCode::FOUND;
                moved.headers_mut().insert(
                    http::header::LOCATION,
                    http::HeaderValue::from_static("http://169.254.169.254/latest/meta-data/"),
                );
                return moved;
            }
            let text = format!("{:?} port={}", req.version(), info.peer.port());
            Response::new(Full::new(Bytes::from(text)))
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        tokio::spawn(serve(
            listener,
            tls,
            crate::listener::ConnectionCap::for_tests(1024),
            handler,
            shutdown,
            Duration::from_millis(100),
        ));
        Upstream {
            addr,
            _stop: stop,
            _dir: dir,
        }
    }

    fn url(&self, scheme: &str, path: &str) -> String {
        format!("{scheme}://{}{path}", self.addr)
    }
}

/// A client trusting only `ca` (written to a file), with a 500 ms response timeout.
fn client_trusting(ca: &TestCa, dir: &std::path::Path) -> UpstreamClient {
    let cfg = UpstreamConfig {
        ca_file: Some(ca.write(dir, "upstream-ca.crt")),
        ca_only: true,
        response_timeout: Duration::from_millis(500),
        ..UpstreamConfig::default()
    };
    UpstreamClient::new(&cfg).expect("client")
}

fn get(url: &str) -> Request<Full<Bytes>> {
    Request::get(url)
        .body(Full::new(Bytes::new()))
        .expect("request")
}

async fn body_text(response: Response<Incoming>) -> String {
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

async fn bounded<T>(test: impl Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, test)
        .await
        .expect("test exceeded its time bound")
}

#[tokio::test]
async fn reaches_tls_upstream_trusted_via_ca_file_over_h2() {
    bounded(async {
        let ca = TestCa::new("upstream");
        let upstream = Upstream::start(Some(&ca)).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let client = client_trusting(&ca, dir.path());

        let response = client
            .send(get(&upstream.url("https", "/")))
            .await
            .expect("response");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.version(), Version::HTTP_2, "ALPN h2 was not used");
        assert!(body_text(response).await.starts_with("HTTP/2.0 "));
    })
    .await;
}

#[tokio::test]
async fn ca_file_is_trusted_beside_system_roots() {
    bounded(async {
        let ca = TestCa::new("upstream");
        let upstream = Upstream::start(Some(&ca)).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = UpstreamConfig {
            ca_file: Some(ca.write(dir.path(), "ca.crt")),
            ..UpstreamConfig::default()
        };
        let client = UpstreamClient::new(&cfg).expect("client");
        let response = client
            .send(get(&upstream.url("https", "/")))
            .await
            .expect("response");
        assert_eq!(response.status(), StatusCode::OK);
    })
    .await;
}

#[tokio::test]
async fn refuses_upstream_signed_by_unknown_ca() {
    bounded(async {
        let trusted = TestCa::new("trusted");
        let unknown = TestCa::new("unknown");
        let upstream = Upstream::start(Some(&unknown)).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let client = client_trusting(&trusted, dir.path());

        let error = client
            .send(get(&upstream.url("https", "/")))
            .await
            .expect_err("untrusted");
        assert!(matches!(error, UpstreamError::Tls { .. }), "{error:?}");
        assert_eq!(error.status(), StatusCode::BAD_GATEWAY);
    })
    .await;
}

#[tokio::test]
async fn refused_connection_is_a_connect_error() {
    bounded(async {
        // Bound but never listening (and without SO_REUSEADDR) while the test runs: refuses
        // connections, and no server of a test beside this one can take the port.
        let closed = tokio::net::TcpSocket::new_v4().expect("socket");
        closed.bind("127.0.0.1:0".parse().unwrap()).expect("bind");
        let addr = closed.local_addr().expect("addr");
        let client = UpstreamClient::new(&UpstreamConfig::default()).expect("client");

        let error = client
            .send(get(&format!("http://{addr}/v1/chat")))
            .await
            .expect_err("refused");
        assert!(matches!(error, UpstreamError::Connect { .. }), "{error:?}");
        assert_eq!(error.status(), StatusCode::BAD_GATEWAY);
    })
    .await;
}

#[tokio::test]
async fn a_redirect_is_passed_back_not_followed() {
    bounded(async {
        let upstream = Upstream::start(None).await;
        let client = UpstreamClient::new(&UpstreamConfig::default()).expect("client");
        let response = client
            .send(get(&upstream.url("http", "/redirect")))
            .await
            .expect("the 302 itself");
        assert_eq!(response.status(), StatusCode::FOUND);
        assert_eq!(
            response.headers()[http::header::LOCATION],
            "http://169.254.169.254/latest/meta-data/"
        );
    })
    .await;
}

#[tokio::test]
async fn localhost_reaches_loopback_without_allow_private() {
    bounded(async {
        let upstream = Upstream::start(None).await;
        let client = UpstreamClient::new(&UpstreamConfig::default()).expect("client");
        let url = format!("http://localhost:{}/", upstream.addr.port());
        let response = client.send(get(&url)).await.expect("response");
        assert_eq!(response.status(), StatusCode::OK);
    })
    .await;
}

#[tokio::test]
async fn slow_upstream_is_a_timeout() {
    bounded(async {
        let ca = TestCa::new("slow");
        let upstream = Upstream::start(Some(&ca)).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let client = client_trusting(&ca, dir.path());

        let error = client
            .send(get(&upstream.url("https", "/slow")))
            .await
            .expect_err("slow");
        assert!(matches!(error, UpstreamError::Timeout { .. }), "{error:?}");
        assert_eq!(error.status(), StatusCode::GATEWAY_TIMEOUT);
    })
    .await;
}

#[tokio::test]
async fn stalled_tls_handshake_is_a_connect_timeout() {
    bounded(async {
        // Accepts TCP, then never answers the ClientHello.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let cfg = UpstreamConfig {
            connect_timeout: Duration::from_millis(200),
            response_timeout: Duration::from_secs(10),
            ..UpstreamConfig::default()
        };
        let client = UpstreamClient::new(&cfg).expect("client");

        let started = std::time::Instant::now();
        let error = client
            .send(get(&format!("https://{addr}/")))
            .await
            .expect_err("stalled");
        assert!(
            matches!(error, UpstreamError::ConnectTimeout { .. }),
            "{error:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "waited for response_timeout"
        );
        assert_eq!(error.status(), StatusCode::GATEWAY_TIMEOUT);
    })
    .await;
}

#[tokio::test]
async fn malformed_response_is_a_protocol_error() {
    bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            if let Ok((mut socket, _)) = listener.accept().await {
                let _ = socket.write_all(b"this is not HTTP\r\n\r\n").await;
            }
        });
        let client = UpstreamClient::new(&UpstreamConfig::default()).expect("client");

        let error = client
            .send(get(&format!("http://{addr}/")))
            .await
            .expect_err("garbage");
        assert!(matches!(error, UpstreamError::Protocol { .. }), "{error:?}");
    })
    .await;
}

/// A hostile upstream answers `101 Switching Protocols` to a request that asked for no
/// upgrade: a protocol error (502), not an answer passed to the agent.
#[tokio::test]
async fn an_unasked_switching_protocols_answer_is_a_protocol_error() {
    bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            if let Ok((mut socket, _)) = listener.accept().await {
                // The request's head is read first: the answer is to it.
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n")
                    && socket.read(&mut byte).await.is_ok_and(|n| n == 1)
                {
                    head.push(byte[0]);
                }
                let _ = socket
                    .write_all(
                        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\
                          connection: upgrade\r\n\r\nraw bytes",
                    )
                    .await;
            }
        });
        let client = UpstreamClient::new(&UpstreamConfig::default()).expect("client");

        let error = client
            .send(get(&format!("http://{addr}/")))
            .await
            .expect_err("101 is no answer");
        assert!(matches!(error, UpstreamError::Protocol { .. }), "{error:?}");
        assert_eq!(error.status(), StatusCode::BAD_GATEWAY);
    })
    .await;
}

#[tokio::test]
async fn plain_http_upstream_keeps_its_connection_alive() {
    bounded(async {
        let upstream = Upstream::start(None).await;
        let client = UpstreamClient::new(&UpstreamConfig::default()).expect("client");

        let first = body_text(
            client
                .send(get(&upstream.url("http", "/")))
                .await
                .expect("1st"),
        )
        .await;
        let second = body_text(
            client
                .send(get(&upstream.url("http", "/")))
                .await
                .expect("2nd"),
        )
        .await;
        assert!(first.starts_with("HTTP/1.1 port="), "{first}");
        assert_eq!(
            first, second,
            "the second request did not reuse the pooled connection"
        );
    })
    .await;
}

#[tokio::test]
async fn relative_uri_is_refused_before_sending() {
    let client = UpstreamClient::new(&UpstreamConfig::default()).expect("client");
    let error = client.send(get("/v1/chat")).await.expect_err("relative");
    assert!(matches!(error, UpstreamError::NotAbsolute), "{error:?}");
}

#[test]
fn ca_only_without_ca_file_is_refused() {
    let cfg = UpstreamConfig {
        ca_only: true,
        ca_file: None,
        ..UpstreamConfig::default()
    };
    let error = UpstreamClient::new(&cfg).expect_err("nothing to trust");
    assert!(
        matches!(error, UpstreamError::CaOnlyWithoutFile),
        "{error:?}"
    );
}

#[test]
fn unreadable_ca_file_is_named_in_the_error() {
    let cfg = UpstreamConfig {
        ca_file: Some("/nonexistent/warden/ca.pem".into()),
        ..UpstreamConfig::default()
    };
    let error = UpstreamClient::new(&cfg).expect_err("missing CA file");
    assert!(
        error.to_string().contains("/nonexistent/warden/ca.pem"),
        "{error}"
    );
}
