//! What the egress proxy's tests put around Warden: a DNS server that answers each name in
//! turn (`tests/egress/dns.py`, dnslib), origin servers on loopback addresses (plain HTTP and
//! HTTPS with a test CA) that keep what they were asked, and the real clients agents use:
//! curl, Python `requests` and `httpx` (`tests/egress/clients.py`), Node's fetch through
//! undici's `ProxyAgent` (`tests/egress/fetch.mjs`) and `EnvHttpProxyAgent`
//! (`tests/egress/intercept_fetch.mjs`).

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio::task::JoinHandle;

use crate::paths;
use crate::process::Proc;
use crate::warden::run_bounded;

/// `tests/egress/`.
pub fn egress_dir() -> PathBuf {
    paths::tests_dir().join("egress")
}

/// The DNS server of `tests/egress/dns.py`; stops when dropped.
pub struct Dns {
    proc: Proc,
    /// Where it answers (UDP).
    pub addr: SocketAddr,
}

impl Dns {
    /// Starts it with `zones`: name → the answers it gives in turn (each a list of IPv4
    /// addresses).
    pub async fn start(zones: Value) -> anyhow::Result<Dns> {
        let python = paths::venv_python();
        if !python.is_file() {
            bail!("{} is missing: run tests/run", python.display());
        }
        let mut cmd = Command::new(python);
        cmd.arg(egress_dir().join("dns.py"))
            .arg(zones.to_string())
            .env("PYTHONUNBUFFERED", "1");
        let mut proc = Proc::spawn("dns", cmd)?;
        let first = tokio::time::timeout(Duration::from_secs(20), proc.next_stdout_line())
            .await
            .context("the DNS server did not start within 20 s")?
            .with_context(|| format!("the DNS server exited:\n{}", proc.output()))?;
        let port = serde_json::from_str::<Value>(&first)?["port"]
            .as_u64()
            .context("the DNS server printed no port")?;
        Ok(Dns {
            proc,
            addr: SocketAddr::from(([127, 0, 0, 1], u16::try_from(port)?)),
        })
    }

    /// The queries answered so far: `{"name", "type", "answer"}` each.
    pub fn queries(&self) -> Vec<Value> {
        self.proc
            .output()
            .lines()
            .filter_map(|l| l.strip_prefix("[out] "))
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v.get("name").is_some())
            .collect()
    }
}

/// A test CA, and a certificate it signs for the origins' names.
pub struct Pki {
    /// The CA certificate (PEM), which clients trust.
    pub ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    pub fn new() -> Pki {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "warden egress e2e CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let key = KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("CA");
        Pki {
            ca_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server configuration with a certificate for `names`.
    pub fn server(&self, names: &[&str]) -> Arc<rustls::ServerConfig> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let params = CertificateParams::new(names).expect("names");
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf");
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .expect("certificate");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// A certificate for `names` and its key, written (PEM) to `dir/<stem>.crt` and
    /// `dir/<stem>.key`, for a server that reads files (Warden's own listeners).
    pub fn write_server(&self, dir: &Path, stem: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let params = CertificateParams::new(names).expect("names");
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf");
        let (cert_path, key_path) = (
            dir.join(format!("{stem}.crt")),
            dir.join(format!("{stem}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).expect("write certificate");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        (cert_path, key_path)
    }

    /// The CA written to `dir/ca.pem`, for clients.
    pub fn write_ca(&self, dir: &Path) -> PathBuf {
        let path = dir.join("ca.pem");
        std::fs::write(&path, &self.ca_pem).expect("write CA");
        path
    }
}

impl Default for Pki {
    fn default() -> Self {
        Pki::new()
    }
}

/// An origin server on a loopback address: answers every request with what it saw, as JSON
/// (`{"origin", "method", "path", "host", "body_len"}`), over plain HTTP, or HTTPS when given
/// a TLS configuration. Stops when dropped.
pub struct Origin {
    /// Where it listens.
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Value>>>,
    connections: Arc<Mutex<usize>>,
    task: JoinHandle<()>,
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Origin {
    /// Starts on `ip:port` (port 0: a free one).
    pub async fn start(
        ip: IpAddr,
        port: u16,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> std::io::Result<Origin> {
        let listener = TcpListener::bind(SocketAddr::new(ip, port)).await?;
        let addr = listener.local_addr()?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(0));
        let task = tokio::spawn(serve(
            listener,
            tls.map(tokio_rustls::TlsAcceptor::from),
            Arc::clone(&seen),
            Arc::clone(&connections),
        ));
        Ok(Origin {
            addr,
            seen,
            connections,
            task,
        })
    }

    /// The requests it answered.
    pub fn seen(&self) -> Vec<Value> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The TCP connections it accepted.
    pub fn connections(&self) -> usize {
        *self.connections.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    seen: Arc<Mutex<Vec<Value>>>,
    connections: Arc<Mutex<usize>>,
) {
    let origin = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        *connections.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        let seen = Arc::clone(&seen);
        let tls = tls.clone();
        let origin = origin.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                answer(req, origin.clone(), Arc::clone(&seen))
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            match tls {
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        let _ = builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    }
                }
                None => {
                    let _ = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                }
            }
        });
    }
}

async fn answer(
    req: http::Request<Incoming>,
    origin: String,
    seen: Arc<Mutex<Vec<Value>>>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let (head, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let saw = json!({
        "origin": origin,
        "method": head.method.as_str(),
        "path": head.uri.path(),
        "host": head.headers.get(http::header::HOST).and_then(|v| v.to_str().ok()),
        "proxy_authorization": head.headers.get(http::header::PROXY_AUTHORIZATION).is_some(),
        "body_len": body.len(),
        "body": String::from_utf8_lossy(&body),
    });
    seen.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(saw.clone());
    Ok(http::Response::new(Full::new(Bytes::from(saw.to_string()))))
}

/// What curl answered: the status (0 when it got none) and the body, or its error.
#[derive(Debug)]
pub struct Curled {
    pub status: u16,
    pub body: String,
    pub stderr: String,
}

/// Runs curl through the proxy at `proxy` with `args` (URL included); `token`: sent as the
/// password of the proxy's Basic credentials.
pub async fn curl(proxy: SocketAddr, token: Option<&str>, args: &[&str]) -> anyhow::Result<Curled> {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "30", "-o", "-", "-w", "\n%{http_code}"])
        .arg("--proxy")
        .arg(format!("http://{proxy}"));
    if let Some(token) = token {
        cmd.arg("--proxy-user").arg(format!("agent:{token}"));
    }
    cmd.args(args)
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("no_proxy")
        .env_remove("NO_PROXY");
    let out = run_bounded(cmd, Duration::from_secs(45)).await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let (body, status) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    Ok(Curled {
        status: status.trim().parse().unwrap_or(0),
        body: body.to_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// `tests/egress/clients.py`: Python `requests` and `httpx` GET `https_url` and `http_url`
/// through the proxy, configured by `HTTPS_PROXY`/`HTTP_PROXY` with the token as the proxy
/// password.
pub async fn python_clients(
    proxy: SocketAddr,
    token: &str,
    ca: &Path,
    https_url: &str,
    http_url: &str,
) -> anyhow::Result<Value> {
    let proxy_url = format!("http://agent:{token}@{proxy}");
    let mut cmd = Command::new(paths::venv_python());
    cmd.arg(egress_dir().join("clients.py"))
        .args([https_url, http_url])
        .env("HTTPS_PROXY", &proxy_url)
        .env("HTTP_PROXY", &proxy_url)
        .env("CA_FILE", ca)
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .env_remove("ALL_PROXY");
    let out = run_bounded(cmd, Duration::from_secs(90)).await?;
    last_json_line(&out, "clients.py")
}

/// Asserts that both clients of [`python_clients`] were answered 200 over both schemes, with
/// `body` when given.
pub fn assert_python_clients_served(python: &Value, body: Option<&str>) {
    for client in ["requests", "httpx"] {
        for call in ["https", "http"] {
            let answer = &python[client][call];
            assert_eq!(answer["status"], 200, "{client} {call}: {python}");
            if let Some(body) = body {
                assert_eq!(answer["body"], body, "{client} {call}: {python}");
            }
        }
    }
}

/// `tests/egress/intercept_clients.py`: Python `requests` and `httpx` GET `url`, then POST
/// `body` to it, through the proxy (`HTTPS_PROXY`, the token as the proxy password), trusting
/// only `ca`.
pub async fn python_intercepted(
    proxy: SocketAddr,
    token: &str,
    ca: &Path,
    url: &str,
    body: &str,
) -> anyhow::Result<Value> {
    let proxy_url = format!("http://agent:{token}@{proxy}");
    let mut cmd = Command::new(paths::venv_python());
    cmd.arg(egress_dir().join("intercept_clients.py"))
        .args([url, body])
        .env("HTTPS_PROXY", &proxy_url)
        .env("CA_FILE", ca)
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .env_remove("ALL_PROXY");
    let out = run_bounded(cmd, Duration::from_secs(90)).await?;
    last_json_line(&out, "intercept_clients.py")
}

/// `tests/egress/fetch.mjs`: Node's fetch of each of `urls` through undici's `ProxyAgent`,
/// the token as a Bearer proxy credential.
pub async fn node_fetch(
    proxy: SocketAddr,
    token: &str,
    ca: &Path,
    urls: &[&str],
) -> anyhow::Result<Value> {
    let mut cmd = node_script("fetch.mjs")?;
    cmd.arg(format!("http://{proxy}"))
        .arg(token)
        .arg(ca)
        .args(urls);
    let out = run_bounded(cmd, Duration::from_secs(90)).await?;
    last_json_line(&out, "fetch.mjs")
}

/// `tests/egress/intercept_fetch.mjs`: Node's fetch of each of `requests` (`{"method", "url",
/// "body"?}`) through undici's `EnvHttpProxyAgent`, configured by the environment as agents
/// are: `HTTPS_PROXY` with the token as the proxy password, and `NODE_EXTRA_CA_CERTS=ca`.
pub async fn node_fetch_intercepted(
    proxy: SocketAddr,
    token: &str,
    ca: &Path,
    requests: &Value,
) -> anyhow::Result<Value> {
    let mut cmd = node_script("intercept_fetch.mjs")?;
    cmd.arg(requests.to_string())
        .env("HTTPS_PROXY", format!("http://agent:{token}@{proxy}"))
        .env("NODE_EXTRA_CA_CERTS", ca)
        .env_remove("https_proxy")
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy");
    let out = run_bounded(cmd, Duration::from_secs(90)).await?;
    last_json_line(&out, "intercept_fetch.mjs")
}

/// `node tests/egress/<script>`, run in `tests/egress` (where undici is installed).
fn node_script(script: &str) -> anyhow::Result<Command> {
    let dir = egress_dir();
    if !dir.join("node_modules/undici").is_dir() {
        bail!("tests/egress/node_modules/undici is missing: run tests/run");
    }
    let mut cmd = Command::new("node");
    cmd.current_dir(&dir).arg(dir.join(script));
    Ok(cmd)
}

fn last_json_line(out: &std::process::Output, what: &str) -> anyhow::Result<Value> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or("");
    serde_json::from_str(line).with_context(|| {
        format!(
            "{what} printed no JSON ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Opens a `CONNECT` tunnel to `target` (`host:port`) through the egress proxy at `proxy`, as
/// `token`: the connection once the proxy answered, and the head of that answer.
pub async fn open_tunnel(
    proxy: SocketAddr,
    target: &str,
    token: &str,
) -> anyhow::Result<(tokio::net::TcpStream, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(proxy).await?;
    let request = format!(
        "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: Bearer {token}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut head = vec![0u8; 1024];
    let n = stream.read(&mut head).await?;
    Ok((stream, String::from_utf8_lossy(&head[..n]).into_owned()))
}

/// A TLS client that trusts only the CA certificates of the PEM file `ca`.
pub fn tls_trusting(ca: &Path) -> anyhow::Result<tokio_rustls::TlsConnector> {
    tls_trusting_offering(ca, &[])
}

/// [`tls_trusting`], offering the ALPN protocols `alpn` (e.g. `h2`).
pub fn tls_trusting_offering(
    ca: &Path,
    alpn: &[&[u8]],
) -> anyhow::Result<tokio_rustls::TlsConnector> {
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read_to_string(ca).with_context(|| format!("{}", ca.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots.add(cert?)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut config = config;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Lets agents reach `allowed.test` (a name on loopback) through the egress proxy.
const ALLOWED_TEST: &str = r#"
@id("egress-allowed-test")
@egress("internal")
permit (
  principal is Agent,
  action in [Action::"egress:connect", Action::"egress:request"],
  resource == Host::"allowed.test"
);
"#;

/// What a test of an open TLS tunnel needs: `allowed.test`, an HTTPS origin on loopback with a
/// test CA's certificate, named by a DNS server of its own, and the egress proxy's address.
pub struct AllowedTls {
    pub pki: Pki,
    pub origin: Origin,
    pub dns: Dns,
    pub proxy: SocketAddr,
}

impl AllowedTls {
    /// Starts the origin and its DNS server; picks the proxy's address.
    pub async fn start() -> anyhow::Result<AllowedTls> {
        let pki = Pki::new();
        let origin = Origin::start(
            IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            0,
            Some(pki.server(&["allowed.test"])),
        )
        .await?;
        let dns = Dns::start(json!({"allowed.test": [["127.0.0.1"]]})).await?;
        let proxy = SocketAddr::from(([127, 0, 0, 1], crate::warden::free_port()?));
        Ok(AllowedTls {
            pki,
            origin,
            dns,
            proxy,
        })
    }

    /// `builder` with the egress proxy on, resolving with the test's DNS server, and a policy
    /// that lets agents reach `allowed.test` alone.
    pub fn egress(&self, builder: crate::warden::WardenBuilder) -> crate::warden::WardenBuilder {
        builder
            .without_policy("e2e-permit-all.cedar")
            .policy("egress.cedar", ALLOWED_TEST)
            .set("/egress/listen", json!(self.proxy.to_string()))
            .set("/egress/nameservers", json!([self.dns.addr.to_string()]))
    }

    /// TLS to `allowed.test` through a tunnel `token` opens through `warden`'s egress proxy
    /// (its bytes copied as they are), once a request through it was answered `200`.
    pub async fn tunnel(
        &self,
        warden: &crate::warden::Warden,
        token: &str,
    ) -> anyhow::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let wait = Duration::from_secs(10);
        let target = format!("allowed.test:{}", self.origin.addr.port());
        let (stream, head) = open_tunnel(self.proxy, &target, token).await?;
        if !head.starts_with("HTTP/1.1 200") {
            bail!("the tunnel was refused: {head}");
        }
        let connector = tls_trusting(&self.pki.write_ca(warden.setup.dir.path()))?;
        let name = rustls::pki_types::ServerName::try_from("allowed.test")?;
        let mut tls = tokio::time::timeout(wait, connector.connect(name, stream)).await??;
        tls.write_all(b"GET /before HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
            .await?;
        let mut answer = vec![0u8; 4096];
        let n = tokio::time::timeout(wait, tls.read(&mut answer)).await??;
        let answer = String::from_utf8_lossy(&answer[..n]);
        if !answer.starts_with("HTTP/1.1 200") {
            bail!("the origin answered through the tunnel: {answer}");
        }
        Ok(tls)
    }
}

/// Whether the tunnel under `tls` closes within `wait` (the client reads its end).
pub async fn closes_within<S: tokio::io::AsyncRead + Unpin>(tls: &mut S, wait: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    tokio::time::timeout(wait, async {
        let mut rest = vec![0u8; 4096];
        loop {
            match tls.read(&mut rest).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await
    .is_ok()
}

/// Asserts that `warden` recorded a tunnel of `agent` cut with an outcome error that starts
/// with `cut` and names `reason`, after bytes came down it, and counted it under `code`.
pub async fn assert_tunnel_cut(
    warden: &crate::warden::Warden,
    agent: &str,
    cut: &str,
    reason: &str,
    code: &str,
) {
    let record = warden
        .wait_for_audit(Duration::from_secs(10), |r| {
            r["kind"] == "outcome"
                && r["principal"]["id"] == agent
                && r["outcome"]["error"]
                    .as_str()
                    .is_some_and(|e| e.starts_with(cut))
        })
        .await
        .unwrap();
    assert!(
        record["outcome"]["error"]
            .as_str()
            .unwrap()
            .contains(reason),
        "{record}"
    );
    assert!(
        record["outcome"]["bytes_down"].as_u64().unwrap() > 0,
        "{record}"
    );
    let metrics = warden.metrics().await.unwrap();
    let counted = format!(r#"warden_egress_tunnels_total{{result="{code}"}} 1"#);
    assert!(metrics.contains(&counted), "{metrics}");
}
