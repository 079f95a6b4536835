//! The egress proxy to a server that is not on loopback: the test creates a network namespace
//! joined to the host by a veth pair (a private `10.77.x.y/30` network), starts Python's
//! `http.server` inside it on the namespace's address, plus an HTTPS server (Python's `ssl`,
//! with a certificate for that address from a test CA), and sends curl and Python `requests`
//! and `httpx` (`HTTPS_PROXY`/`HTTP_PROXY`, trusting the test CA) through Warden's forward
//! proxy to them. The private address is refused (403, also on CONNECT, and the servers see
//! nothing) until a permit with `@egress("internal")` names the host; then plain HTTP, a
//! CONNECT tunnel and TLS through a tunnel reach it with the body intact.
//!
//! And an address of this host itself (a globally reachable address added to its loopback
//! interface) is refused as `this_host` although every host is permitted: an agent must not reach
//! Warden's own listeners through it.
//!
//! Needs root (or CAP_NET_ADMIN) and iproute2 (`ip`): without them it fails and says so.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use warden_e2e::egress::{Dns, Pki, assert_python_clients_served, curl, python_clients};
use warden_e2e::warden::{Warden, WardenBuilder, free_port};

const WAIT: Duration = Duration::from_secs(10);
const SERVER_PORT: u16 = 8080;
const TLS_PORT: u16 = 8443;
/// An HTTPS server: `http.server` serving a directory, its listening socket wrapped by `ssl`.
/// Arguments: address, port, directory, certificate, key.
const TLS_SERVER: &str = r#"
import functools, http.server, ssl, sys
addr, port, root, cert, key = sys.argv[1:6]
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=root)
server = http.server.ThreadingHTTPServer((addr, int(port)), handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"#;
/// What the server in the namespace serves as `/file`.
const FILE_BODY: &str = "served from inside the network namespace\nline two: 0123456789\n";

/// Runs `ip` with `args` (bounded by a timeout); its output, or an error with its stderr.
fn ip(args: &[&str]) -> Result<(), String> {
    let mut child = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run `ip` (is iproute2 installed?): {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            let mut stderr = String::new();
            if let Some(mut err) = child.stderr.take() {
                use std::io::Read;
                let _ = err.read_to_string(&mut stderr);
            }
            return if status.success() {
                Ok(())
            } else {
                Err(format!(
                    "ip {}: {status}: {}",
                    args.join(" "),
                    stderr.trim()
                ))
            };
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("ip {}: no answer within 10 s", args.join(" ")));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A network namespace with a veth pair to the host and an HTTP and an HTTPS server inside it;
/// all of it removed when dropped.
struct Netns {
    name: String,
    host_veth: String,
    /// The namespace side's address, where the server listens.
    addr: String,
    servers: Vec<Child>,
    /// The HTTP server's request log (its stderr).
    log: PathBuf,
    /// The HTTPS server's request log (its stderr).
    tls_log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Netns {
    /// Creates namespace number `n` of this process: addresses from the process id, so that
    /// parallel test processes do not collide.
    /// The HTTPS server's certificate, for the namespace's address, is signed by `pki`.
    fn create(n: u32, pki: &Pki) -> Netns {
        let pid = std::process::id();
        let index = (pid + n) % 16384;
        let (third, fourth) = (index / 64, (index % 64) * 4);
        let host_addr = format!("10.77.{third}.{}", fourth + 1);
        let ns_addr = format!("10.77.{third}.{}", fourth + 2);
        let name = format!("warden-e2e-{pid}-{n}");
        let host_veth = format!("we{index}h{n}");
        let ns_veth = format!("we{index}n{n}");
        // Leftovers of an earlier process with the same id.
        let _ = ip(&["netns", "del", &name]);
        let _ = ip(&["link", "del", &host_veth]);
        if let Err(e) = ip(&["netns", "add", &name]) {
            panic!(
                "this test creates a network namespace and needs root (or CAP_NET_ADMIN) and \
                 iproute2 (`ip`); `ip netns add {name}` failed: {e}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("server.log");
        let tls_log = dir.path().join("tls-server.log");
        let mut netns = Netns {
            name: name.clone(),
            host_veth: host_veth.clone(),
            addr: ns_addr.clone(),
            servers: Vec::new(),
            log: log.clone(),
            tls_log: tls_log.clone(),
            _dir: dir,
        };
        let steps: [&[&str]; 7] = [
            &[
                "link", "add", &host_veth, "type", "veth", "peer", "name", &ns_veth,
            ],
            &["link", "set", &ns_veth, "netns", &name],
            &["addr", "add", &format!("{host_addr}/30"), "dev", &host_veth],
            &["link", "set", &host_veth, "up"],
            &[
                "-n",
                &name,
                "addr",
                "add",
                &format!("{ns_addr}/30"),
                "dev",
                &ns_veth,
            ],
            &["-n", &name, "link", "set", &ns_veth, "up"],
            &["-n", &name, "link", "set", "lo", "up"],
        ];
        for step in steps {
            ip(step).unwrap_or_else(|e| panic!("setting up the namespace: {e}"));
        }
        let root = netns._dir.path().join("www");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("file"), FILE_BODY).unwrap();
        let server = Command::new("ip")
            .args(["netns", "exec", &name, "python3", "-u", "-m", "http.server"])
            .args(["--bind", &ns_addr, "--directory"])
            .arg(&root)
            .arg(SERVER_PORT.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("ip netns exec python3 -m http.server");
        netns.servers.push(server);
        netns.wait_ready(0, SERVER_PORT, &log);

        let (cert, key) = pki.write_server(netns._dir.path(), "server", &[&ns_addr]);
        let server = Command::new("ip")
            .args(["netns", "exec", &name, "python3", "-u", "-c", TLS_SERVER])
            .args([ns_addr.as_str(), &TLS_PORT.to_string()])
            .args([&root, &cert, &key])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&tls_log).unwrap())
            .spawn()
            .expect("ip netns exec python3 (HTTPS server)");
        netns.servers.push(server);
        netns.wait_ready(1, TLS_PORT, &tls_log);
        netns
    }

    fn server_addr(&self) -> String {
        format!("{}:{SERVER_PORT}", self.addr)
    }

    fn tls_server_addr(&self) -> String {
        format!("{}:{TLS_PORT}", self.addr)
    }

    /// Waits (at most 15 s) until server `index` accepts connections on `port` from the host
    /// side.
    fn wait_ready(&mut self, index: usize, port: u16, log: &std::path::Path) {
        let target: SocketAddr = format!("{}:{port}", self.addr).parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        let log = || std::fs::read_to_string(log).unwrap_or_default();
        loop {
            if std::net::TcpStream::connect_timeout(&target, Duration::from_millis(500)).is_ok() {
                return;
            }
            if let Some(status) = self.servers[index].try_wait().ok().flatten() {
                panic!("the server in the namespace exited: {status}: {}", log());
            }
            assert!(
                Instant::now() < deadline,
                "the server in namespace {} did not listen on {target} within 15 s: {}",
                self.name,
                log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The HTTP server's request log so far.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The HTTPS server's request log so far.
    fn tls_log(&self) -> String {
        std::fs::read_to_string(&self.tls_log).unwrap_or_default()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for mut server in self.servers.drain(..) {
            let _ = server.kill();
            let _ = server.wait();
        }
        let _ = ip(&["netns", "del", &self.name]);
        // Gone with the namespace (its peer was in it); removed here if it was not.
        let _ = ip(&["link", "del", &self.host_veth]);
    }
}

/// A globally reachable address of this host, added to its loopback interface (as a
/// service address often is, and as a cloud VM's public address is on its interface), from
/// the process id so that parallel test processes do not collide; removed when dropped.
struct OwnAddress {
    addr: String,
}

impl OwnAddress {
    fn add() -> OwnAddress {
        let index = std::process::id() % 65536;
        // 198.20.0.0/16 is outside 198.18.0.0/15 (benchmarking): global.
        let own = OwnAddress {
            addr: format!("198.20.{}.{}", index / 256, index % 256),
        };
        let _ = ip(&["addr", "del", &own.prefix(), "dev", "lo"]);
        ip(&["addr", "add", &own.prefix(), "dev", "lo"]).unwrap_or_else(|e| {
            panic!("adding an address of this host needs root (or CAP_NET_ADMIN): {e}")
        });
        own
    }

    fn prefix(&self) -> String {
        format!("{}/32", self.addr)
    }
}

impl Drop for OwnAddress {
    fn drop(&mut self) {
        let _ = ip(&["addr", "del", &self.prefix(), "dev", "lo"]);
    }
}

/// Warden with the egress proxy on a free port and more `settings` (a JSON pointer into the
/// configuration, its value); every host permitted, none with `@egress("internal")` yet.
async fn warden(dns: &Dns, settings: &[(&str, Value)]) -> (Warden, SocketAddr) {
    let anywhere = r#"
@id("egress-anywhere")
permit (principal is Agent, action in [Action::"egress:connect", Action::"egress:request"], resource);
"#;
    let egress = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let mut builder = WardenBuilder::with_upstream_url("http://127.0.0.1:9")
        .without_policy("e2e-permit-all.cedar")
        .set("/egress/listen", json!(egress.to_string()))
        .set("/egress/nameservers", json!([dns.addr.to_string()]))
        .set("/egress/connect_timeout", json!("3s"))
        .set("/egress/first_bytes_timeout", json!("5s"))
        .policy("anywhere.cedar", anywhere);
    for (pointer, value) in settings {
        builder = builder.set(pointer, value.clone());
    }
    (builder.start().await.expect("warden starts"), egress)
}

#[tokio::test]
async fn a_server_in_a_network_namespace_is_refused_as_private_until_a_permit_allows_it() {
    let pki = Pki::new();
    let netns = Netns::create(0, &pki);
    let ca = pki.write_ca(netns._dir.path());
    let host = netns.addr.clone();
    let url = format!("http://{}/file", netns.server_addr());
    let tls_url = format!("https://{}/file", netns.tls_server_addr());
    let dns = Dns::start(json!({})).await.unwrap();
    let (warden, proxy) = warden(&dns, &[]).await;
    let token = warden.token("build-bot").await.unwrap();

    // A permit matches, but the address is private: refused without reaching the server.
    let got = curl(proxy, Some(&token), &[&url]).await.unwrap();
    assert_eq!(got.status, 403, "{got:?}");
    assert!(
        got.body.contains(&format!("{host}, a private address"))
            && got.body.contains("@egress(\"internal\")"),
        "{got:?}"
    );
    let tunnel = curl(proxy, Some(&token), &["-p", &url]).await.unwrap();
    assert!(tunnel.stderr.contains("403"), "CONNECT: {tunnel:?}");
    let ca_arg = ca.to_str().unwrap();
    let tls = curl(proxy, Some(&token), &["--cacert", ca_arg, &tls_url])
        .await
        .unwrap();
    assert!(tls.stderr.contains("403"), "HTTPS: {tls:?}");
    // Python `requests` and `httpx`, configured by HTTPS_PROXY/HTTP_PROXY: the plain request
    // gets the 403, the HTTPS one a refused CONNECT.
    let python = python_clients(proxy, &token, &ca, &tls_url, &url)
        .await
        .unwrap();
    for client in ["requests", "httpx"] {
        let plain = &python[client]["http"];
        assert_eq!(plain["status"], 403, "{client} http: {python}");
        assert!(
            plain["body"]
                .as_str()
                .is_some_and(|b| b.contains(&format!("{host}, a private address"))),
            "{client} http: {python}"
        );
        let tunnelled = &python[client]["https"];
        assert!(
            tunnelled["error"]
                .as_str()
                .is_some_and(|e| e.contains("ProxyError") && e.contains("403")),
            "{client} https: {python}"
        );
    }
    assert!(
        !netns.log().contains("GET /file"),
        "the server saw a request: {}",
        netns.log()
    );
    assert!(
        !netns.tls_log().contains("GET /file"),
        "the HTTPS server saw a request: {}",
        netns.tls_log()
    );
    let denied = warden
        .wait_for_audit(WAIT, |r| {
            r["kind"] == "decision"
                && r["detail"]["egress"]["host"] == host.as_str()
                && r["decision"] == "deny"
        })
        .await
        .expect("the refusal is recorded");
    assert_eq!(denied["resource"], format!("Host::\"{host}\""));
    assert_eq!(denied["detail"]["egress"]["addresses"], json!([host]));
    assert_eq!(denied["detail"]["egress"]["classes"], json!(["private"]));

    // A permit with @egress("internal") for this host: plain HTTP reaches the server in the
    // namespace and the body arrives intact.
    let internal = format!(
        r#"
@id("egress-netns-server")
@egress("internal")
permit (
  principal is Agent,
  action in [Action::"egress:connect", Action::"egress:request"],
  resource == Host::"{host}"
);
"#
    );
    warden.write_policy("internal.cedar", &internal).unwrap();
    let reloaded = async {
        loop {
            let got = curl(proxy, Some(&token), &[&url]).await.unwrap();
            if got.status == 200 {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let got = tokio::time::timeout(Duration::from_secs(20), reloaded)
        .await
        .expect("the permit takes effect");
    assert_eq!(got.body, FILE_BODY, "{got:?}");
    // Through a CONNECT tunnel too.
    let tunnel = curl(proxy, Some(&token), &["-p", &url]).await.unwrap();
    assert_eq!(tunnel.status, 200, "CONNECT: {tunnel:?}");
    assert_eq!(tunnel.body, FILE_BODY, "CONNECT: {tunnel:?}");
    // TLS to the server inside a tunnel: curl, and Python `requests` and `httpx` trusting the
    // test CA; Python's plain requests too.
    let tls = curl(proxy, Some(&token), &["--cacert", ca_arg, &tls_url])
        .await
        .unwrap();
    assert_eq!(tls.status, 200, "HTTPS: {tls:?}");
    assert_eq!(tls.body, FILE_BODY, "HTTPS: {tls:?}");
    let python = python_clients(proxy, &token, &ca, &tls_url, &url)
        .await
        .unwrap();
    assert_python_clients_served(&python, Some(FILE_BODY));
    assert_eq!(
        netns.log().matches("\"GET /file HTTP/1.1\" 200").count(),
        4,
        "curl twice, requests and httpx once each: {}",
        netns.log()
    );
    assert_eq!(
        netns
            .tls_log()
            .matches("\"GET /file HTTP/1.1\" 200")
            .count(),
        3,
        "curl, requests and httpx once each: {}",
        netns.tls_log()
    );

    let allowed: Vec<Value> = warden
        .audit_records()
        .into_iter()
        .filter(|r| {
            r["kind"] == "decision"
                && r["detail"]["egress"]["host"] == host.as_str()
                && r["decision"] == "allow"
        })
        .collect();
    for action in ["egress:request", "egress:connect"] {
        let record = allowed
            .iter()
            .find(|r| r["action"] == action)
            .unwrap_or_else(|| panic!("an allow of {action}: {allowed:?}"));
        assert_eq!(record["detail"]["egress"]["classes"], json!(["private"]));
        assert!(
            record["policies"]
                .as_array()
                .unwrap()
                .contains(&json!("egress-netns-server")),
            "{record}"
        );
    }
}

#[tokio::test]
async fn wardens_own_global_address_is_this_host_and_refused_without_an_internal_permit() {
    let own = OwnAddress::add();
    let dns = Dns::start(json!({})).await.unwrap();
    // The proxy listens on every interface, so the own address reaches it.
    let port = free_port().unwrap();
    let listen = json!(format!("0.0.0.0:{port}"));
    let (warden, egress) = warden(&dns, &[("/listen/proxy", listen)]).await;
    let token = warden.token("build-bot").await.unwrap();
    let target = format!("{}:{port}", own.addr);

    // Every host is permitted, and the address is globally reachable, but it is Warden's
    // own: refused before anything is dialled, by CONNECT and by plain HTTP.
    let (_stream, head) = warden_e2e::egress::open_tunnel(egress, &target, &token)
        .await
        .unwrap();
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    let got = curl(egress, Some(&token), &[&format!("http://{target}/readyz")])
        .await
        .unwrap();
    assert_eq!(got.status, 403, "{got:?}");
    assert!(
        got.body
            .contains(&format!("{}, a this_host address", own.addr)),
        "{got:?}"
    );

    let denied = warden
        .wait_for_audit(WAIT, |r| {
            r["kind"] == "decision"
                && r["action"] == "egress:connect"
                && r["detail"]["egress"]["host"] == own.addr.as_str()
        })
        .await
        .expect("the refusal is recorded");
    assert_eq!(denied["decision"], "deny");
    assert_eq!(denied["detail"]["egress"]["classes"], json!(["this_host"]));
}
