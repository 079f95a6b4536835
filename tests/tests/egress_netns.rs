//! The egress proxy to a server that is not on loopback: the test creates a network namespace
//! joined to the host by a veth pair (a private `10.77.x.y/30` network), starts Python's
//! `http.server` inside it on the namespace's address, and sends curl through Warden's forward
//! proxy to it. The private address is refused (and the server sees nothing) until a permit
//! with `@egress("internal")` names the host; then plain HTTP and a CONNECT tunnel reach it.
//!
//! Needs root (or CAP_NET_ADMIN) and iproute2 (`ip`): without them it fails and says so.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use warden_e2e::egress::{Dns, curl};
use warden_e2e::warden::{Warden, WardenBuilder, free_port};

const WAIT: Duration = Duration::from_secs(10);
const SERVER_PORT: u16 = 8080;
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

/// A network namespace with a veth pair to the host and an HTTP server inside it; all of it
/// removed when dropped.
struct Netns {
    name: String,
    host_veth: String,
    /// The namespace side's address, where the server listens.
    addr: String,
    server: Option<Child>,
    /// The server's request log (its stderr).
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Netns {
    /// Creates namespace number `n` of this process: addresses from the process id, so that
    /// parallel test processes do not collide.
    fn create(n: u32) -> Netns {
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
        let mut netns = Netns {
            name: name.clone(),
            host_veth: host_veth.clone(),
            addr: ns_addr.clone(),
            server: None,
            log: log.clone(),
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
        netns.server = Some(server);
        netns.wait_ready();
        netns
    }

    fn server_addr(&self) -> String {
        format!("{}:{SERVER_PORT}", self.addr)
    }

    /// Waits (at most 15 s) until the server accepts connections from the host side.
    fn wait_ready(&mut self) {
        let target: SocketAddr = self.server_addr().parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if std::net::TcpStream::connect_timeout(&target, Duration::from_millis(500)).is_ok() {
                return;
            }
            if let Some(status) = self
                .server
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "the server in the namespace exited: {status}: {}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the server in namespace {} did not listen on {target} within 15 s: {}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The server's request log so far.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
        let _ = ip(&["netns", "del", &self.name]);
        // Gone with the namespace (its peer was in it); removed here if it was not.
        let _ = ip(&["link", "del", &self.host_veth]);
    }
}

/// Warden with the egress proxy on a free port; every host permitted, none with
/// `@egress("internal")` yet.
async fn warden(dns: &Dns) -> (Warden, SocketAddr) {
    let anywhere = r#"
@id("egress-anywhere")
permit (principal is Agent, action in [Action::"egress:connect", Action::"egress:request"], resource);
"#;
    let egress = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let warden = WardenBuilder::with_upstream_url("http://127.0.0.1:9")
        .without_policy("e2e-permit-all.cedar")
        .set("/egress/listen", json!(egress.to_string()))
        .set("/egress/nameservers", json!([dns.addr.to_string()]))
        .set("/egress/connect_timeout", json!("3s"))
        .set("/egress/first_bytes_timeout", json!("5s"))
        .policy("anywhere.cedar", anywhere)
        .start()
        .await
        .expect("warden starts");
    (warden, egress)
}

#[tokio::test]
async fn a_server_in_a_network_namespace_is_refused_as_private_until_a_permit_allows_it() {
    let netns = Netns::create(0);
    let host = netns.addr.clone();
    let url = format!("http://{}/file", netns.server_addr());
    let dns = Dns::start(json!({})).await.unwrap();
    let (warden, proxy) = warden(&dns).await;
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
    assert!(
        !netns.log().contains("GET /file"),
        "the server saw a request: {}",
        netns.log()
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
    assert_eq!(
        netns.log().matches("\"GET /file HTTP/1.1\" 200").count(),
        2,
        "{}",
        netns.log()
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
