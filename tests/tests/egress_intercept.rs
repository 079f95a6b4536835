//! TLS interception on the egress proxy (`egress.intercept`): for the hosts it names, Warden
//! terminates the agent's TLS with a certificate of its own CA (`warden egress ca`), judges and
//! inspects each request inside as `egress:request` (channel `egress_tls`), and forwards it
//! over TLS of its own to the real destination, whose certificate it verifies. curl, Python
//! `requests` and `httpx`, and Node's fetch (undici's `EnvHttpProxyAgent`, the CA from
//! `NODE_EXTRA_CA_CERTS`) go through it to origin servers on loopback with a test CA of their
//! own; other hosts keep a blind tunnel.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use warden_e2e::egress::{
    Curled, Dns, Origin, Pki, curl, node_fetch_intercepted, open_tunnel, python_intercepted,
    tls_trusting_offering,
};
use warden_e2e::warden::{Warden, WardenBuilder, free_port};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const WAIT: Duration = Duration::from_secs(10);
/// An AWS access key id of the documentation's: the `aws_access_key` detector finds it.
const AWS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";

/// Agents may reach the three test hosts (names on loopback, so `@egress("internal")`),
/// except with an AWS key in what they send.
const POLICIES: &str = r#"
@id("egress-test-hosts")
@egress("internal")
permit (
  principal is Agent,
  action in [Action::"egress:connect", Action::"egress:request"],
  resource
)
when { [Host::"intercepted.test", Host::"blind.test", Host::"untrusted.test"].contains(resource) };

@id("egress-no-aws-keys")
@reason("the request carries an AWS access key")
forbid (principal, action, resource)
when { context.findings.contains("aws_access_key") };
"#;

/// Origins on loopback: `origin` with a certificate of the test CA for `intercepted.test` and
/// `blind.test`, `untrusted` with one of another CA for `untrusted.test`; Warden intercepting
/// `intercepted.test` and `untrusted.test` and trusting only the test CA upstream.
struct Setup {
    origin: Origin,
    untrusted: Origin,
    _dns: Dns,
    warden: Warden,
    proxy: SocketAddr,
    token: String,
    /// The test CA (what the origins' certificates verify against).
    test_ca: PathBuf,
    /// Warden's interception CA, as `warden egress ca` printed it.
    warden_ca: PathBuf,
}

async fn setup() -> Setup {
    setup_with(&[]).await
}

/// [`setup`] with more `settings` (a JSON pointer into the configuration, its value).
async fn setup_with(settings: &[(&str, Value)]) -> Setup {
    let pki = Pki::new();
    let origin = Origin::start(
        LOOPBACK,
        0,
        Some(pki.server(&["intercepted.test", "blind.test"])),
    )
    .await
    .unwrap();
    let untrusted = Origin::start(LOOPBACK, 0, Some(Pki::new().server(&["untrusted.test"])))
        .await
        .unwrap();
    let dns = Dns::start(json!({
        "intercepted.test": [["127.0.0.1"]],
        "blind.test": [["127.0.0.1"]],
        "untrusted.test": [["127.0.0.1"]],
    }))
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let test_ca = pki.write_ca(dir.path());
    let proxy = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let mut builder = WardenBuilder::with_upstream_url("http://127.0.0.1:9")
        .without_policy("e2e-permit-all.cedar")
        .policy("egress.cedar", POLICIES)
        .set("/egress/listen", json!(proxy.to_string()))
        .set("/egress/nameservers", json!([dns.addr.to_string()]))
        .set("/egress/connect_timeout", json!("3s"))
        .set(
            "/egress/intercept",
            json!({
                "hosts": ["intercepted.test", "*.untrusted.test", "untrusted.test"],
                "upstream_ca_file": test_ca.to_str().unwrap(),
                "upstream_ca_only": true,
            }),
        )
        .set("/canaries", json!({"refresh_interval": "200ms"}))
        .set(
            "/fleet",
            json!({"quarantine": {"triggers": {"detectors": []}}}),
        );
    for (pointer, value) in settings {
        builder = builder.set(pointer, value.clone());
    }
    let warden = builder.start().await.expect("warden starts");
    let token = warden.token("build-bot").await.unwrap();
    let out = warden.cli(&["egress", "ca"]).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pem = String::from_utf8(out.stdout).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    assert_eq!(
        pem,
        std::fs::read_to_string(warden.setup.data_dir.join("keys/egress-ca.pem")).unwrap(),
        "the CA Warden created at start is the one printed"
    );
    let warden_ca = warden.setup.dir.path().join("warden-egress-ca.pem");
    std::fs::write(&warden_ca, pem).unwrap();
    // The test CA's file lives as long as the setup.
    let test_ca_kept = warden.setup.dir.path().join("test-ca.pem");
    std::fs::copy(&test_ca, &test_ca_kept).unwrap();
    Setup {
        origin,
        untrusted,
        _dns: dns,
        warden,
        proxy,
        token,
        test_ca: test_ca_kept,
        warden_ca,
    }
}

/// The decision records of `egress:request`s to `host`.
fn request_decisions(warden: &Warden, host: &str) -> Vec<Value> {
    warden
        .audit_records()
        .into_iter()
        .filter(|r| {
            r["kind"] == "decision"
                && r["action"] == "egress:request"
                && r["detail"]["egress"]["host"] == host
        })
        .collect()
}

fn detectors(record: &Value) -> Vec<String> {
    record["findings"]
        .as_array()
        .map(|f| {
            f.iter()
                .filter_map(|f| f["detector"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A canary token issued with `warden canary issue`, once Warden knows it: curl (trusting
/// Warden's CA) posts it to `url` until it is refused (the first may go through before the
/// state store's refresh); the canary and that refusal.
async fn planted_canary(s: &Setup, url: &str) -> (String, Curled) {
    let canary = s.warden.issue_canary("api-token", &[]).await.unwrap();
    let canary = canary.trim().to_owned();
    let ca = s.warden_ca.to_str().unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    let got = loop {
        let got = curl(
            s.proxy,
            Some(&s.token),
            &[
                "--cacert",
                ca,
                "--data-binary",
                &format!("token={canary}"),
                url,
            ],
        )
        .await
        .unwrap();
        if got.status == 403 || tokio::time::Instant::now() > deadline {
            break got;
        }
        // Not yet picked up from the state store: that request went through.
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    (canary, got)
}

#[tokio::test]
async fn requests_inside_an_intercepted_tunnel_are_judged_and_leaks_are_denied_with_403() {
    let s = setup().await;
    let ca = s.warden_ca.to_str().unwrap();
    let url = format!(
        "https://intercepted.test:{}/v1/upload",
        s.origin.addr.port()
    );

    // A normal request passes (curl speaks HTTP/2 to Warden here, Warden HTTP/1.1 upstream).
    let got = curl(s.proxy, Some(&s.token), &["--cacert", ca, &url])
        .await
        .unwrap();
    assert_eq!(got.status, 200, "{got:?}");
    let saw: Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(saw["path"], "/v1/upload");
    assert_eq!(saw["proxy_authorization"], false);
    assert_eq!(s.origin.seen().len(), 1);

    // The same with HTTP/1.1 to Warden, and a body that is let through.
    let got = curl(
        s.proxy,
        Some(&s.token),
        &[
            "--http1.1",
            "--cacert",
            ca,
            "--data-binary",
            "report=ok",
            &url,
        ],
    )
    .await
    .unwrap();
    assert_eq!(got.status, 200, "{got:?}");
    let saw: Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(saw["method"], "POST");
    assert_eq!(saw["body_len"], 9);

    // A body with an AWS key is denied inside the tunnel, and never reaches the origin; so is
    // one in `Authorization` or `Cookie`, which the destination gets as written, and in a
    // `Proxy-Authorization` inside the tunnel (no credential of Warden's there).
    let body = format!("aws_access_key_id={AWS_KEY}");
    let headers = ["Authorization", "Cookie", "Proxy-Authorization"]
        .map(|h| ("--http1.1", "-H", format!("{h}: k={AWS_KEY}")));
    let bodies = ["--http2", "--http1.1"].map(|v| (v, "--data-binary", body.clone()));
    for (version, flag, leak) in bodies.into_iter().chain(headers) {
        let got = curl(
            s.proxy,
            Some(&s.token),
            &[version, "--cacert", ca, flag, &leak, &url],
        )
        .await
        .unwrap();
        assert_eq!(got.status, 403, "{version} {leak}: {got:?}");
        assert!(
            got.body.contains("the request carries an AWS access key"),
            "{version} {leak}: {got:?}"
        );
    }
    assert_eq!(
        s.origin.seen().len(),
        2,
        "the denied requests did not arrive"
    );

    // A planted canary is denied whatever policy says.
    let (canary, got) = planted_canary(&s, &url).await;
    assert_eq!(got.status, 403, "{got:?}");
    assert!(got.body.contains("canary token"), "{got:?}");

    // Recorded as egress:request on the channel egress_tls, with what was found and never
    // the values.
    let decisions = request_decisions(&s.warden, "intercepted.test");
    let allowed = decisions
        .iter()
        .find(|r| r["decision"] == "allow")
        .expect("an allowed request's decision");
    assert_eq!(allowed["principal"]["id"], "build-bot");
    assert_eq!(allowed["detail"]["egress"]["channel"], "egress_tls");
    assert_eq!(allowed["detail"]["egress"]["scheme"], "https");
    assert_eq!(allowed["detail"]["egress"]["sni"], "intercepted.test");
    assert_eq!(allowed["detail"]["egress"]["path"], "/v1/upload");
    let aws: Vec<&Value> = decisions
        .iter()
        .filter(|r| detectors(r).contains(&"aws_access_key".to_owned()))
        .collect();
    assert_eq!(aws.len(), 5, "{decisions:#?}");
    for record in &aws {
        assert_eq!(record["decision"], "deny");
        assert_eq!(record["policies"], json!(["egress-no-aws-keys"]));
        assert_eq!(record["detail"]["egress"]["channel"], "egress_tls");
    }
    // The tunnel's own judgement on its ClientHello is a decision record too.
    let tunnel = s
        .warden
        .audit_records()
        .into_iter()
        .find(|r| {
            r["kind"] == "decision"
                && r["detail"]["egress"]["host"] == "intercepted.test"
                && r["detail"]["egress"]["judged"] == "first_bytes"
        })
        .expect("the tunnel's decision on its first bytes");
    assert_eq!(tunnel["action"], "egress:connect");
    assert_eq!(tunnel["decision"], "allow");
    assert_eq!(tunnel["detail"]["egress"]["scheme"], "https");
    assert_eq!(tunnel["detail"]["egress"]["sni"], "intercepted.test");
    let canary_record = decisions
        .iter()
        .find(|r| detectors(r).contains(&"canary".to_owned()))
        .expect("the canary's decision");
    assert_eq!(canary_record["policies"], json!(["warden/canary-token"]));
    let log = serde_json::to_string(&s.warden.audit_records()).unwrap();
    assert!(!log.contains(AWS_KEY), "the AWS key is in the audit log");
    assert!(!log.contains(&canary), "the canary is in the audit log");
    let metrics = s.warden.metrics().await.unwrap();
    assert!(
        metrics.contains("warden_canary_hits_total{channel=\"egress_tls\"} 1"),
        "{metrics}"
    );

    // Python requests and httpx, trusting only Warden's CA.
    let before = s.origin.seen().len();
    let got = python_intercepted(
        s.proxy,
        &s.token,
        &s.warden_ca,
        &url,
        &format!("key={AWS_KEY}"),
    )
    .await
    .unwrap();
    for client in ["requests", "httpx"] {
        assert_eq!(got[client]["get"]["status"], 200, "{client}: {got}");
        let saw: Value =
            serde_json::from_str(got[client]["get"]["body"].as_str().unwrap()).unwrap();
        assert_eq!(saw["path"], "/v1/upload", "{client}");
        assert_eq!(got[client]["post"]["status"], 403, "{client}: {got}");
        assert!(
            got[client]["post"]["body"]
                .as_str()
                .unwrap()
                .contains("AWS access key"),
            "{client}: {got}"
        );
    }
    assert_eq!(s.origin.seen().len(), before + 2, "only the GETs arrived");
}

#[tokio::test]
async fn a_host_not_intercepted_keeps_a_blind_tunnel_and_an_intercepted_one_shows_wardens_certificate()
 {
    let s = setup().await;
    let test_ca = s.test_ca.to_str().unwrap();
    let warden_ca = s.warden_ca.to_str().unwrap();
    let port = s.origin.addr.port();

    // blind.test: the client sees the origin's own certificate (the test CA verifies it,
    // Warden's does not) and the body is not inspected.
    let blind = format!("https://blind.test:{port}/x");
    let got = curl(
        s.proxy,
        Some(&s.token),
        &[
            "--cacert",
            test_ca,
            "--data-binary",
            &format!("k={AWS_KEY}"),
            &blind,
        ],
    )
    .await
    .unwrap();
    assert_eq!(got.status, 200, "{got:?}");
    let got = curl(s.proxy, Some(&s.token), &["--cacert", warden_ca, &blind])
        .await
        .unwrap();
    assert_eq!(
        got.status, 0,
        "Warden's CA does not verify the origin: {got:?}"
    );
    assert!(request_decisions(&s.warden, "blind.test").is_empty());

    // intercepted.test: the other way round.
    let intercepted = format!("https://intercepted.test:{port}/x");
    let got = curl(
        s.proxy,
        Some(&s.token),
        &["--cacert", test_ca, &intercepted],
    )
    .await
    .unwrap();
    assert_eq!(
        got.status, 0,
        "the origin's CA does not verify Warden's leaf: {got:?}"
    );
    handshake_refused_is_recorded(&s.warden).await;
}

#[tokio::test]
async fn an_intercepted_destination_with_an_untrusted_certificate_is_refused_with_502() {
    let s = setup().await;
    let ca = s.warden_ca.to_str().unwrap();
    let url = format!("https://untrusted.test:{}/secret", s.untrusted.addr.port());
    let got = curl(s.proxy, Some(&s.token), &["--cacert", ca, &url])
        .await
        .unwrap();
    assert_eq!(got.status, 502, "{got:?}");
    assert!(
        got.body
            .contains("the certificate of untrusted.test is not trusted"),
        "{got:?}"
    );
    assert!(s.untrusted.seen().is_empty(), "nothing was sent to it");
    let outcome = s
        .warden
        .wait_for_audit(WAIT, |r| {
            r["kind"] != "decision"
                && r["action"] == "egress:request"
                && r["detail"]["egress"]["host"] == "untrusted.test"
        })
        .await
        .unwrap();
    assert_eq!(outcome["outcome"]["status"], 502, "{outcome}");
}

#[tokio::test]
async fn node_fetch_trusting_wardens_ca_through_node_extra_ca_certs_is_intercepted_and_inspected() {
    let s = setup().await;
    let port = s.origin.addr.port();
    let intercepted = format!("https://intercepted.test:{port}/v1/upload");
    let blind = format!("https://blind.test:{port}/v1/upload");
    // Warden knows the canary before Node sends it (curl's refusal shows it).
    let (canary, refused) = planted_canary(&s, &intercepted).await;
    assert_eq!(refused.status, 403, "{refused:?}");
    let before = s.origin.seen().len();

    // Trusting Warden's CA (and nothing of the test CA's): the intercepted host answers, a key
    // or a canary in the body is refused inside the tunnel; the blind host shows its own
    // certificate, which Node does not trust.
    let got = node_fetch_intercepted(
        s.proxy,
        &s.token,
        &s.warden_ca,
        &json!([
            {"method": "GET", "url": intercepted},
            {"method": "POST", "url": intercepted, "body": "report=ok"},
            {"method": "POST", "url": intercepted, "body": format!("aws_access_key_id={AWS_KEY}")},
            {"method": "POST", "url": intercepted, "body": format!("token={canary}")},
            {"method": "GET", "url": blind},
        ]),
    )
    .await
    .unwrap();
    assert_eq!(got[0]["status"], 200, "{got}");
    let saw: Value = serde_json::from_str(got[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(saw["path"], "/v1/upload", "{got}");
    assert_eq!(saw["method"], "GET");
    assert_eq!(
        saw["proxy_authorization"], false,
        "the proxy credential stays with Warden"
    );
    assert_eq!(got[1]["status"], 200, "{got}");
    let saw: Value = serde_json::from_str(got[1]["body"].as_str().unwrap()).unwrap();
    assert_eq!(saw["body"], "report=ok", "{got}");
    assert_eq!(got[2]["status"], 403, "{got}");
    assert!(
        got[2]["body"]
            .as_str()
            .unwrap()
            .contains("the request carries an AWS access key"),
        "{got}"
    );
    assert_eq!(got[3]["status"], 403, "{got}");
    assert!(
        got[3]["body"].as_str().unwrap().contains("canary token"),
        "{got}"
    );
    assert!(
        got[4]["error"].is_string() && got[4].get("status").is_none(),
        "the blind host's own certificate is not Warden's: {got}"
    );
    let seen = s.origin.seen();
    assert_eq!(
        seen.len(),
        before + 2,
        "only the GET and the clean POST arrived"
    );
    assert!(
        seen.iter()
            .all(|r| !r["body"].as_str().unwrap_or("").contains(AWS_KEY)),
        "{seen:#?}"
    );

    // Recorded with the agent, on the channel egress_tls, by detector, never the values.
    let decisions = request_decisions(&s.warden, "intercepted.test");
    let node_allowed: Vec<&Value> = decisions
        .iter()
        .filter(|r| r["decision"] == "allow" && r["detail"]["egress"]["method"] == "GET")
        .collect();
    assert_eq!(node_allowed.len(), 1, "{decisions:#?}");
    assert_eq!(node_allowed[0]["principal"]["id"], "build-bot");
    assert_eq!(node_allowed[0]["detail"]["egress"]["channel"], "egress_tls");
    assert_eq!(node_allowed[0]["detail"]["egress"]["scheme"], "https");
    let aws = decisions
        .iter()
        .find(|r| detectors(r).contains(&"aws_access_key".to_owned()))
        .expect("the AWS key's decision");
    assert_eq!(aws["decision"], "deny");
    assert_eq!(aws["policies"], json!(["egress-no-aws-keys"]));
    let canaries: Vec<&Value> = decisions
        .iter()
        .filter(|r| detectors(r).contains(&"canary".to_owned()))
        .collect();
    assert_eq!(canaries.len(), 2, "curl's and Node's: {decisions:#?}");
    assert!(
        canaries
            .iter()
            .all(|r| r["decision"] == "deny" && r["policies"] == json!(["warden/canary-token"]))
    );
    let log = serde_json::to_string(&s.warden.audit_records()).unwrap();
    assert!(!log.contains(AWS_KEY), "the AWS key is in the audit log");
    assert!(!log.contains(&canary), "the canary is in the audit log");
    let metrics = s.warden.metrics().await.unwrap();
    assert!(
        metrics.contains("warden_canary_hits_total{channel=\"egress_tls\"} 2"),
        "{metrics}"
    );

    // Trusting the test CA only: the blind host's tunnel carries the key to the origin
    // uninspected (no egress:request is judged), and the intercepted host's leaf of
    // Warden's CA is refused.
    let got = node_fetch_intercepted(
        s.proxy,
        &s.token,
        &s.test_ca,
        &json!([
            {"method": "POST", "url": blind, "body": format!("k={AWS_KEY}")},
            {"method": "GET", "url": intercepted},
        ]),
    )
    .await
    .unwrap();
    assert_eq!(got[0]["status"], 200, "{got}");
    let saw: Value = serde_json::from_str(got[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(saw["host"], format!("blind.test:{port}"), "{got}");
    assert_eq!(saw["body_len"], format!("k={AWS_KEY}").len(), "{got}");
    assert!(request_decisions(&s.warden, "blind.test").is_empty());
    assert!(
        got[1]["error"].is_string() && got[1].get("status").is_none(),
        "Warden's leaf is not the test CA's: {got}"
    );
    handshake_refused_is_recorded(&s.warden).await;
}

/// Waits for a tunnel's outcome record saying the client refused Warden's leaf (the tunnel's
/// outcome when a client does not trust the interception CA).
async fn handshake_refused_is_recorded(warden: &Warden) {
    warden
        .wait_for_audit(WAIT, |r| {
            r["kind"] == "outcome"
                && r["action"] == "egress:connect"
                && r["outcome"]["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("interception CA"))
        })
        .await
        .unwrap();
}

/// A TLS connection through a tunnel to `intercepted.test`, HTTP/2 settled by ALPN with
/// Warden (trusting its interception CA); nothing sent inside yet.
async fn intercepted_h2(s: &Setup) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let target = format!("intercepted.test:{}", s.origin.addr.port());
    let (stream, head) = open_tunnel(s.proxy, &target, &s.token).await.unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let connector = tls_trusting_offering(&s.warden_ca, &[b"h2"]).unwrap();
    let name = rustls::pki_types::ServerName::try_from("intercepted.test").unwrap();
    let tls = connector.connect(name, stream).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    tls
}

#[tokio::test]
async fn an_intercepted_http2_connection_that_sends_no_request_in_time_is_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = setup_with(&[("/egress/first_bytes_timeout", json!("2s"))]).await;
    // Within the timeout and a tick of its watch, with room for a loaded machine.
    let bound = Duration::from_secs(6);

    // Nothing at all after the TLS handshake: not even the connection preface.
    let mut silent = intercepted_h2(&s).await;
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(bound, silent.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "a silent HTTP/2 connection stays open");

    // The preface and settings, then a request's HEADERS frame one byte every 300 ms (all
    // of it would take 12 s).
    let (mut reading, mut writing) = tokio::io::split(intercepted_h2(&s).await);
    writing
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    // HEADERS, 32 bytes, END_STREAM | END_HEADERS, stream 1; then indexed fields (`:method
    // GET`) one at a time.
    let mut frame = b"\x00\x00\x20\x01\x05\x00\x00\x00\x01".to_vec();
    frame.extend_from_slice(&[0x82; 32]);
    let trickle = tokio::spawn(async move {
        for byte in frame {
            if writing.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(bound, reading.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "a connection trickling its headers stays open"
    );
    trickle.abort();

    let closed_idle = || {
        s.warden
            .audit_records()
            .into_iter()
            .filter(|r| {
                r["kind"] == "outcome"
                    && r["outcome"]["error"].as_str().is_some_and(|e| {
                        e.contains("closed after 2s without a request (egress.first_bytes_timeout)")
                    })
            })
            .count()
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    while closed_idle() < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        closed_idle(),
        2,
        "both tunnels' records say why they were closed"
    );
    let metrics = s.warden.metrics().await.unwrap();
    assert!(
        metrics.contains(r#"warden_egress_tunnels_total{result="egress_tunnel_idle"} 2"#),
        "{metrics}"
    );
}
