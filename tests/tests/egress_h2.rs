//! The egress proxy over HTTP/2: a Rust client (hyper's HTTP/2 client, as HTTP/2 proxy clients
//! speak it) opens tunnels with `CONNECT` (RFC 9113 §8.5: `:authority` only) and with extended
//! `CONNECT` (RFC 8441, `:protocol connect-tcp` and the destination in the path), several on one
//! connection, to an HTTPS origin behind a name the test's DNS server answers. Each tunnel is
//! authenticated, judged, guarded and recorded as an HTTP/1.1 `CONNECT` is; over plaintext
//! (prior knowledge) and over TLS to the proxy (ALPN `h2`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use warden_e2e::egress::{Dns, Origin, Pki};
use warden_e2e::warden::{Warden, WardenBuilder, free_port};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const WAIT: Duration = Duration::from_secs(10);

/// `allowed.test` (on loopback, hence `@egress("internal")`) may be reached; `metadata.test`
/// is permitted too, but without `@egress("internal")`, so the address guard refuses it;
/// anything else is denied by default.
const POLICY: &str = r#"
@id("egress-allowed-test")
@egress("internal")
permit (
  principal is Agent,
  action == Action::"egress:connect",
  resource == Host::"allowed.test"
);

@id("egress-metadata-test")
permit (
  principal is Agent,
  action == Action::"egress:connect",
  resource == Host::"metadata.test"
);
"#;

/// An HTTPS origin for `allowed.test`, names answered by a DNS server of the test's own,
/// Warden's egress proxy (over TLS when `tls`), and a token of `build-bot`.
struct Setup {
    https: Origin,
    _dns: Dns,
    warden: Warden,
    proxy: SocketAddr,
    token: String,
    pki: Pki,
    _dir: tempfile::TempDir,
}

async fn setup(tls: bool) -> Setup {
    setup_with(tls, |builder| builder).await
}

/// [`setup`], with Warden's configuration changed by `change`.
async fn setup_with(tls: bool, change: impl FnOnce(WardenBuilder) -> WardenBuilder) -> Setup {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let https = Origin::start(LOOPBACK, 0, Some(pki.server(&["allowed.test"])))
        .await
        .unwrap();
    let dns = Dns::start(json!({
        "allowed.test": [["127.0.0.1"]],
        "denied.test": [["127.0.0.1"]],
        "metadata.test": [["169.254.169.254"]],
    }))
    .await
    .unwrap();
    let proxy = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let mut builder = WardenBuilder::with_upstream_url("http://127.0.0.1:9")
        .without_policy("e2e-permit-all.cedar")
        .policy("egress.cedar", POLICY)
        .set("/egress/listen", json!(proxy.to_string()))
        .set("/egress/nameservers", json!([dns.addr.to_string()]))
        .set("/egress/connect_timeout", json!("3s"))
        .set("/egress/first_bytes_timeout", json!("5s"));
    if tls {
        let (cert, key) = pki.write_server(dir.path(), "egress", &["proxy.test"]);
        builder = builder.set("/egress/tls", json!({"cert": cert, "key": key}));
    }
    let warden = change(builder).start().await.expect("warden starts");
    let token = warden.token("build-bot").await.unwrap();
    Setup {
        https,
        _dns: dns,
        warden,
        proxy,
        token,
        pki,
        _dir: dir,
    }
}

/// A TLS client configuration trusting the test CA only, offering `alpn`.
fn tls_client(pki: &Pki, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pki.ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// An HTTP/2 connection over `io` (prior knowledge).
async fn h2<I>(io: I) -> SendRequest<Empty<Bytes>>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .expect("HTTP/2 handshake with the egress proxy");
    tokio::spawn(connection);
    sender
}

/// How a tunnel is asked for.
#[derive(Clone, Copy)]
enum Ask {
    /// `CONNECT` with `:authority` host:port.
    Classic,
    /// Extended `CONNECT` with `:protocol connect-tcp`, the destination in the path.
    ConnectTcp,
}

/// Asks `proxy` for a tunnel to `host:port`, with `token` as the proxy credential.
async fn connect(
    proxy: &mut SendRequest<Empty<Bytes>>,
    ask: Ask,
    host: &str,
    port: u16,
    token: Option<&str>,
) -> Response<Incoming> {
    let mut req = Request::builder().method(Method::CONNECT);
    req = match ask {
        Ask::Classic => req.uri(format!("{host}:{port}")),
        Ask::ConnectTcp => req.uri(format!(
            "https://proxy.test/.well-known/masque/tcp/{host}/{port}/"
        )),
    };
    if let Some(token) = token {
        req = req.header(http::header::PROXY_AUTHORIZATION, format!("Bearer {token}"));
    }
    let mut req = req.body(Empty::new()).unwrap();
    if let Ask::ConnectTcp = ask {
        req.extensions_mut()
            .insert(hyper::ext::Protocol::from_static("connect-tcp"));
    }
    proxy.ready().await.expect("the connection takes a stream");
    tokio::time::timeout(WAIT, proxy.send_request(req))
        .await
        .expect("the proxy answers in time")
        .expect("the proxy answers")
}

/// Through the tunnel `response` opened: TLS to `allowed.test` (trusting the test CA), one
/// HTTP/1.1 `GET path`, and the origin's answer (what it saw); then a clean close.
async fn get_through(response: Response<Incoming>, pki: &Pki, path: String) -> Value {
    assert_eq!(response.status(), StatusCode::OK, "{response:?}");
    let upgraded = tokio::time::timeout(WAIT, hyper::upgrade::on(response))
        .await
        .unwrap()
        .expect("the tunnel opens");
    let name = rustls::pki_types::ServerName::try_from("allowed.test").unwrap();
    let mut tls = tokio::time::timeout(
        WAIT,
        tls_client(pki, &[b"http/1.1"]).connect(name, TokioIo::new(upgraded)),
    )
    .await
    .unwrap()
    .expect("TLS to the origin through the tunnel");
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, tls.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let _ = tls.shutdown().await;
    let answer = String::from_utf8(answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let (_, body) = answer.split_once("\r\n\r\n").unwrap();
    serde_json::from_str(body).unwrap()
}

/// The text of a refusal, with its `x-warden-error` code.
async fn refusal(response: Response<Incoming>) -> (StatusCode, String, String) {
    let status = response.status();
    let code = response
        .headers()
        .get("x-warden-error")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = tokio::time::timeout(WAIT, response.into_body().collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    (status, code, String::from_utf8_lossy(&body).into_owned())
}

/// Several tunnels at once on one HTTP/2 connection, classic and `connect-tcp`; each reaches
/// the origin and is recorded with its decision and how it was asked for.
async fn tunnels_multiplexed(setup: &Setup, mut proxy: SendRequest<Empty<Bytes>>) {
    let port = setup.https.addr.port();
    let mut asked = Vec::new();
    for (i, ask) in [Ask::Classic, Ask::Classic, Ask::Classic, Ask::ConnectTcp]
        .into_iter()
        .enumerate()
    {
        // Every tunnel is open (answered 200) before any carries a byte: they share the
        // connection at the same time.
        let response = connect(&mut proxy, ask, "allowed.test", port, Some(&setup.token)).await;
        asked.push(get_through(response, &setup.pki, format!("/h2/{i}")));
    }
    let seen = futures_util::future::join_all(asked).await;
    for (i, saw) in seen.iter().enumerate() {
        assert_eq!(saw["path"], format!("/h2/{i}"), "{saw}");
        assert_eq!(saw["proxy_authorization"], false, "{saw}");
    }
    assert_eq!(setup.https.connections(), 4);

    let warden = &setup.warden;
    let records: Vec<Value> = warden
        .audit_records()
        .into_iter()
        .filter(|r| r["kind"] == "decision" && r["detail"]["egress"]["host"] == "allowed.test")
        .collect();
    // Each tunnel judged again on its first bytes, in a decision record of its own.
    let judged = records
        .iter()
        .filter(|r| r["detail"]["egress"]["judged"] == "first_bytes")
        .count();
    assert_eq!(judged, 4, "{records:#?}");
    let decisions: Vec<Value> = records
        .into_iter()
        .filter(|r| r["detail"]["egress"]["scheme"] == "connect")
        .collect();
    assert_eq!(decisions.len(), 4, "{decisions:#?}");
    for record in &decisions {
        assert_eq!(record["action"], "egress:connect");
        assert_eq!(record["decision"], "allow");
        assert_eq!(record["principal"]["id"], "build-bot");
        assert_eq!(record["detail"]["egress"]["http_version"], "HTTP/2.0");
    }
    assert_eq!(
        decisions
            .iter()
            .filter(|r| r["detail"]["egress"]["protocol"] == "connect-tcp")
            .count(),
        1
    );
    // Each tunnel's outcome: closed cleanly, its bytes counted.
    let wait_closed = async {
        loop {
            let closed = warden
                .audit_records()
                .into_iter()
                .filter(|r| {
                    r["kind"] == "outcome"
                        && r["outcome"]["bytes_down"].as_u64().is_some_and(|b| b > 0)
                })
                .collect::<Vec<_>>();
            if closed.len() == 4 {
                return closed;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let closed = tokio::time::timeout(WAIT, wait_closed)
        .await
        .expect("every tunnel's outcome is recorded");
    for record in closed {
        assert!(record["outcome"]["error"].is_null(), "{record}");
        assert!(
            record["outcome"]["bytes_up"].as_u64().unwrap() > 0,
            "{record}"
        );
    }
    let metrics = warden.metrics().await.unwrap();
    assert!(
        metrics.contains(r#"warden_egress_tunnels_total{result="closed"} 4"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn http2_connect_tunnels_share_one_prior_knowledge_connection() {
    let setup = setup(false).await;
    let stream = tokio::net::TcpStream::connect(setup.proxy).await.unwrap();
    tunnels_multiplexed(&setup, h2(stream).await).await;
}

#[tokio::test]
async fn http2_connect_over_tls_to_the_proxy_negotiates_h2_by_alpn() {
    let setup = setup(true).await;
    let stream = tokio::net::TcpStream::connect(setup.proxy).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("proxy.test").unwrap();
    let tls = tls_client(&setup.pki, &[b"h2", b"http/1.1"])
        .connect(name, stream)
        .await
        .expect("TLS to the egress proxy");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    tunnels_multiplexed(&setup, h2(tls).await).await;
}

#[tokio::test]
async fn http2_connect_refusals_get_the_same_statuses_as_http1() {
    let setup = setup(false).await;
    let port = setup.https.addr.port();
    let stream = tokio::net::TcpStream::connect(setup.proxy).await.unwrap();
    let mut proxy = h2(stream).await;
    let token = Some(setup.token.as_str());

    // No credential: 407 with the challenge, on a stream of the connection, which lives on.
    let response = connect(&mut proxy, Ask::Classic, "allowed.test", port, None).await;
    assert_eq!(
        response
            .headers()
            .get(http::header::PROXY_AUTHENTICATE)
            .and_then(|v| v.to_str().ok()),
        Some("Basic realm=\"warden egress\", Bearer realm=\"warden egress\"")
    );
    let (status, code, text) = refusal(response).await;
    assert_eq!(status, StatusCode::PROXY_AUTHENTICATION_REQUIRED, "{text}");
    assert_eq!(code, "proxy_credential_missing");
    assert!(text.contains("needs Proxy-Authorization"), "{text}");
    let response = connect(&mut proxy, Ask::ConnectTcp, "allowed.test", port, None).await;
    assert_eq!(
        refusal(response).await.0,
        StatusCode::PROXY_AUTHENTICATION_REQUIRED
    );

    // No policy permits denied.test: 403, and no connection to it.
    for ask in [Ask::Classic, Ask::ConnectTcp] {
        let response = connect(&mut proxy, ask, "denied.test", port, token).await;
        let (status, _, text) = refusal(response).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
        assert!(text.contains("Warden denied this egress"), "{text}");
    }
    // metadata.test is permitted, but resolves to a link-local address: the guard refuses.
    let response = connect(&mut proxy, Ask::Classic, "metadata.test", 80, token).await;
    let (status, _, text) = refusal(response).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
    assert!(
        text.contains("metadata.test resolves to 169.254.169.254, a link_local address"),
        "{text}"
    );
    // Extended CONNECT for anything but a TCP tunnel, or with a path that names no
    // destination: 400 that says what is served.
    let mut websocket = Request::builder()
        .method(Method::CONNECT)
        .uri("https://allowed.test/chat")
        .header(
            http::header::PROXY_AUTHORIZATION,
            format!("Bearer {}", setup.token),
        )
        .body(Empty::new())
        .unwrap();
    websocket
        .extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    let response = proxy.send_request(websocket).await.unwrap();
    let (status, code, text) = refusal(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert_eq!(code, "egress_bad_target");
    assert!(text.contains(":protocol connect-tcp"), "{text}");

    // The same connection still carries a tunnel that is allowed.
    let response = connect(&mut proxy, Ask::Classic, "allowed.test", port, token).await;
    let saw = get_through(response, &setup.pki, "/after-refusals".into()).await;
    assert_eq!(saw["path"], "/after-refusals");
    assert_eq!(setup.https.connections(), 1, "refused tunnels never dial");

    let metrics = setup.warden.metrics().await.unwrap();
    assert!(
        metrics.contains(r#"warden_egress_total{kind="none",result="unauthenticated"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"warden_egress_total{kind="connect",result="denied"} 3"#),
        "{metrics}"
    );
    let guarded = setup
        .warden
        .wait_for_audit(WAIT, |r| {
            r["kind"] == "decision" && r["detail"]["egress"]["host"] == "metadata.test"
        })
        .await
        .unwrap();
    assert_eq!(guarded["decision"], "deny");
    assert_eq!(
        guarded["detail"]["egress"]["classes"],
        json!(["link_local"])
    );
    assert_eq!(guarded["detail"]["egress"]["http_version"], "HTTP/2.0");
}

/// Each HTTP/2 tunnel dials a connection under its client's one, so it takes a slot of
/// `listen.max_connections.egress` of its own: beyond the cap it is refused at once. An open
/// tunnel keeps its connection busy past `listen.idle_timeout.egress`.
#[tokio::test]
async fn http2_tunnels_take_slots_of_the_egress_cap_and_keep_their_connection_busy() {
    // One worker, whose accept loop holds a slot for the next connection: with the
    // connection's and one tunnel's, three.
    let setup = setup_with(false, |builder| {
        builder
            .set("/runtime/worker_threads", json!(1))
            .set("/listen/max_connections/egress", json!(3))
            .set("/listen/idle_timeout/egress", json!("1s"))
    })
    .await;
    let port = setup.https.addr.port();
    let token = Some(setup.token.as_str());
    let stream = tokio::net::TcpStream::connect(setup.proxy).await.unwrap();
    let mut proxy = h2(stream).await;
    // The connection holds one slot, its first tunnel the last.
    let first = connect(&mut proxy, Ask::Classic, "allowed.test", port, token).await;
    assert_eq!(first.status(), StatusCode::OK);
    let second = connect(&mut proxy, Ask::ConnectTcp, "allowed.test", port, token).await;
    let (status, code, text) = refusal(second).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    assert_eq!(code, "egress_at_capacity", "{text}");
    assert!(text.contains("listen.max_connections.egress"), "{text}");

    // Past the idle timeout, the open tunnel still carries its bytes.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let saw = get_through(first, &setup.pki, "/after-idle".into()).await;
    assert_eq!(saw["path"], "/after-idle", "{saw}");

    // Once it closed, its slot is free for another tunnel on the same connection.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let again = connect(&mut proxy, Ask::Classic, "allowed.test", port, token).await;
        if again.status() == StatusCode::OK {
            break;
        }
        let (status, code, _) = refusal(again).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, "egress_at_capacity")
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the tunnel's slot never came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = setup.warden.metrics().await.unwrap();
    assert!(
        metrics.contains(r#"warden_listener_connection_cap_reached_total{listener="egress"}"#),
        "{metrics}"
    );
}
