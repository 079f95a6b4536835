//! MCP test support: the real MCP servers of `tests/mcp/node_modules` (npm
//! `@modelcontextprotocol/server-everything` and `server-filesystem`, installed by
//! `tests/run`; over HTTP on 127.0.0.1 only, `tests/mcp/loopback.mjs`), a remote double that
//! reports the headers and notifications reaching it (`tests/mcp/double.py`),
//! the official MCP Python SDK driving a Warden endpoint (`tests/mcp/client.py`), and the
//! official TypeScript SDK's client through a connection that drops (`tests/mcp/resume_client.mjs`)
//! and running a tool as a task (`tests/mcp/tasks_client.mjs`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::process::Command;

use crate::paths;
use crate::process::Proc;
use crate::warden::{Warden, run_bounded};

/// How long a helper process (a Node MCP server, the Python double) may take to start: on a
/// loaded machine (two cores, tests and builds beside) Python has taken 40 s to import the
/// MCP SDK, so the bound is generous; it is reached only when something is wrong.
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// How long one run of `client.py` may take: the Python start and every step of its session
/// (a test's steps may wait on the test, which starts commands of its own meanwhile).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(300);

/// `tests/mcp`.
pub fn mcp_dir() -> PathBuf {
    paths::tests_dir().join("mcp")
}

/// Warden with the endpoint `/mcp/tools` on `calc`, the rug-pull test server
/// (`rugpull_server.mjs`: honest in its first session, poisoned from the second on; it counts
/// sessions in the file `sessions` of `state`), given `extra` arguments (`--after 2`, ...);
/// pins refreshed every 200 ms.
pub fn rugpull_warden(state: &Path, extra: &[&str]) -> crate::warden::WardenBuilder {
    let node = std::env::var("NODE").unwrap_or_else(|_| "node".into());
    let mut args = vec![
        json!(mcp_dir().join("rugpull_server.mjs")),
        json!("--state"),
        json!(state.join("sessions")),
    ];
    args.extend(extra.iter().map(|a| json!(a)));
    let server = json!({"name": "calc", "command": node, "args": args,
                        "sandbox": sandbox(&[state])});
    crate::warden::WardenBuilder::with_upstream_url("http://127.0.0.1:9")
        .set(
            "/mcp",
            json!({"servers": [server], "endpoints": [{"name": "tools", "servers": ["calc"]}]}),
        )
        .set("/pins", json!({"refresh_interval": "200ms"}))
}

/// The entry script of an npm MCP server package (`server-everything`, ...).
pub fn server_script(package: &str) -> PathBuf {
    mcp_dir()
        .join("node_modules/@modelcontextprotocol")
        .join(package)
        .join("dist/index.js")
}

fn node() -> String {
    std::env::var("NODE").unwrap_or_else(|_| "node".into())
}

/// `mcp.servers[].sandbox` of a server run from `tests/mcp`: it reads the scripts and packages
/// there (Warden sandboxes local servers by default), and writes in the directories `write`.
pub fn sandbox(write: &[&Path]) -> Value {
    json!({"read": [mcp_dir()], "write": write})
}

/// `mcp.servers[]` entry: server-everything over stdio, named `name`.
pub fn everything_stdio(name: &str) -> Value {
    json!({"name": name, "command": node(), "args": [server_script("server-everything"), "stdio"],
           "sandbox": sandbox(&[])})
}

/// `mcp.servers[]` entry: the honest rug-pull double over stdio, named `name`, appending the
/// `params._meta` of each `tools/call` it receives to `record` (one JSON line each).
pub fn recording_stdio(name: &str, record: &Path) -> Value {
    let dir = record.parent().unwrap_or(record);
    json!({"name": name, "command": node(),
           "args": [mcp_dir().join("rugpull_server.mjs"), "--record", record],
           "sandbox": sandbox(&[dir])})
}

/// `mcp.servers[]` entry: server-filesystem over stdio, named `name`, serving `root`.
pub fn filesystem_stdio(name: &str, root: &Path) -> Value {
    json!({"name": name, "command": node(), "args": [server_script("server-filesystem"), root],
           "sandbox": sandbox(&[root])})
}

/// server-everything serving `transport` (`streamableHttp`, `sse`) on `port` of 127.0.0.1,
/// once it accepts connections.
async fn serve_everything(transport: &str, port: u16) -> anyhow::Result<Proc> {
    let mut cmd = Command::new(node());
    cmd.arg("--import")
        .arg(mcp_dir().join("loopback.mjs"))
        .arg(server_script("server-everything"))
        .arg(transport)
        .env("PORT", port.to_string());
    let proc = Proc::spawn("server-everything", cmd)?;
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if tokio::time::Instant::now() > deadline {
            bail!(
                "server-everything did not listen on {port}:\n{}",
                proc.output()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(proc)
}

/// server-everything serving Streamable HTTP on a free port (`/mcp`).
#[derive(Debug)]
pub struct EverythingHttp {
    _proc: Proc,
    pub port: u16,
}

impl EverythingHttp {
    /// Starts it and waits until it accepts connections.
    pub async fn start() -> anyhow::Result<EverythingHttp> {
        let port = crate::warden::free_port()?;
        let proc = serve_everything("streamableHttp", port).await?;
        Ok(EverythingHttp { _proc: proc, port })
    }

    /// Its MCP endpoint.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }
}

/// server-everything serving the legacy HTTP+SSE transport (MCP 2024-11-05) on a free port:
/// its event stream at `/sse`, messages posted to `/message?sessionId=...`.
#[derive(Debug)]
pub struct EverythingSse {
    proc: Proc,
    pub port: u16,
}

impl EverythingSse {
    /// Starts it and waits until it accepts connections.
    pub async fn start() -> anyhow::Result<EverythingSse> {
        let port = crate::warden::free_port()?;
        let proc = serve_everything("sse", port).await?;
        Ok(EverythingSse { proc, port })
    }

    /// Kills it (its sessions and event streams end) and starts it again on the same port.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.proc.kill().await;
        self.proc = serve_everything("sse", self.port).await?;
        Ok(())
    }

    /// Its event stream.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/sse", self.port)
    }
}

/// The remote double (`tests/mcp/double.py`).
#[derive(Debug)]
pub struct Double {
    _proc: Proc,
    pub port: u16,
    /// It speaks the legacy HTTP+SSE transport.
    sse: bool,
}

impl Double {
    /// Starts it over Streamable HTTP.
    pub async fn start() -> anyhow::Result<Double> {
        Double::spawn(false).await
    }

    /// Starts it over the legacy HTTP+SSE transport.
    pub async fn start_sse() -> anyhow::Result<Double> {
        Double::spawn(true).await
    }

    async fn spawn(sse: bool) -> anyhow::Result<Double> {
        let mut cmd = Command::new(paths::venv_python());
        cmd.arg(mcp_dir().join("double.py"));
        if sse {
            cmd.arg("--sse");
        }
        let mut proc = Proc::spawn("mcp-double", cmd)?;
        let line = tokio::time::timeout(START_TIMEOUT, proc.next_stdout_line())
            .await
            .context("the MCP double said nothing")?
            .context("the MCP double exited")?;
        let port = serde_json::from_str::<Value>(&line)?["port"]
            .as_u64()
            .context("no port")? as u16;
        Ok(Double {
            _proc: proc,
            port,
            sse,
        })
    }

    /// Its MCP endpoint (its event stream, over the legacy transport).
    pub fn url(&self) -> String {
        let path = if self.sse { "sse" } else { "mcp" };
        format!("http://127.0.0.1:{}/{path}", self.port)
    }

    /// What has reached it so far, asked directly (not through Warden) with its
    /// `notifications` tool: `{"notifications": [...], "waits": [ids of wait calls]}`. Over
    /// Streamable HTTP only.
    pub async fn reached(&self) -> anyhow::Result<Value> {
        if self.sse {
            bail!("Double::reached asks a double over Streamable HTTP (Double::start)");
        }
        let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "notifications", "arguments": {}}});
        let answer: Value = reqwest::Client::new()
            .post(self.url())
            .timeout(Duration::from_secs(10))
            .json(&call)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let text = answer["result"]["content"][0]["text"]
            .as_str()
            .with_context(|| format!("the double's notifications answer: {answer}"))?;
        Ok(serde_json::from_str(text)?)
    }
}

/// How an agent reaches an MCP endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Streamable HTTP, at the endpoint's prefix.
    StreamableHttp,
    /// The legacy HTTP+SSE transport (MCP 2024-11-05): the event stream at `<prefix>/sse`,
    /// messages posted where its `endpoint` event says (the SDK's `sse_client`).
    LegacySse,
}

impl Transport {
    /// Both.
    pub const ALL: [Transport; 2] = [Transport::StreamableHttp, Transport::LegacySse];

    /// The URL an agent opens for the endpoint at `endpoint`.
    pub fn url(self, endpoint: &str) -> String {
        match self {
            Transport::StreamableHttp => endpoint.to_owned(),
            Transport::LegacySse => format!("{endpoint}/sse"),
        }
    }

    fn client_name(self) -> &'static str {
        match self {
            Transport::StreamableHttp => "streamable_http",
            Transport::LegacySse => "sse",
        }
    }
}

/// Runs `steps` in one MCP session with `url` as `token`'s agent, through the official SDK
/// over Streamable HTTP; returns `{"initialize": ..., "steps": [...]}`.
pub async fn session(
    warden: &Warden,
    url: &str,
    token: &str,
    steps: Value,
) -> anyhow::Result<Value> {
    session_with(warden, url, token, steps, None).await
}

/// Runs `steps` in one session at `warden`'s `/mcp/tools` as the agent `e2e-agent` (a token
/// issued for it now), as [`session`] does.
pub async fn tools_session(warden: &Warden, steps: Value) -> anyhow::Result<Value> {
    let token = warden.token("e2e-agent").await?;
    session(warden, &warden.url("/mcp/tools"), &token, steps).await
}

/// As [`session`], the agent offering sampling and answering each request with `reply`.
pub async fn session_with(
    warden: &Warden,
    url: &str,
    token: &str,
    steps: Value,
    reply: Option<&str>,
) -> anyhow::Result<Value> {
    run_client(warden, url, token, steps, reply, Transport::StreamableHttp).await
}

/// As [`session`], over `transport` to the endpoint at `endpoint` (its prefix's URL).
pub async fn session_over(
    transport: Transport,
    warden: &Warden,
    endpoint: &str,
    token: &str,
    steps: Value,
) -> anyhow::Result<Value> {
    run_client(
        warden,
        &transport.url(endpoint),
        token,
        steps,
        None,
        transport,
    )
    .await
}

/// Runs `tests/mcp/client.py` over `transport`.
async fn run_client(
    warden: &Warden,
    url: &str,
    token: &str,
    steps: Value,
    reply: Option<&str>,
    transport: Transport,
) -> anyhow::Result<Value> {
    let python = paths::venv_python();
    let mut cmd = Command::new(&python);
    cmd.arg(mcp_dir().join("client.py"))
        .arg(url)
        .arg(steps.to_string())
        .args(reply)
        .env("TRANSPORT", transport.client_name())
        .env("API_KEY", token)
        .env("WARDEN_PID", warden.pid().unwrap_or_default().to_string())
        .env("PYTHONUNBUFFERED", "1");
    last_json_line(cmd, "client.py", CLIENT_TIMEOUT).await
}

/// Runs `cmd` (script `name`) for at most `timeout`: the last line it prints, as JSON.
async fn last_json_line(cmd: Command, name: &str, timeout: Duration) -> anyhow::Result<Value> {
    let out = run_bounded(cmd, timeout).await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!(
            "{name} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
            out.status
        );
    }
    let last = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .with_context(|| format!("{name} printed nothing; stderr:\n{stderr}"))?;
    serde_json::from_str(last).with_context(|| format!("{name} printed no JSON: {last}"))
}

/// Runs `tests/mcp/resume_client.mjs`: the official TypeScript SDK's client calls `tool` with
/// `arguments` at `url` as `token`'s agent, its first answer stream cut after its first chunk;
/// the JSON line it prints.
pub async fn call_through_cut_connection(
    url: &str,
    token: &str,
    tool: &str,
    arguments: &Value,
) -> anyhow::Result<Value> {
    let mut cmd = Command::new(node());
    cmd.arg(mcp_dir().join("resume_client.mjs"))
        .arg(url)
        .arg(token)
        .arg(tool)
        .arg(arguments.to_string());
    last_json_line(cmd, "resume_client.mjs", Duration::from_secs(60)).await
}

/// Runs `tests/mcp/tasks_client.mjs`: the official TypeScript SDK's client runs `tool` with
/// `arguments` as a task at `url` as `token`'s agent, then asks about the task as `other`'s
/// agent and from a second session of its own; the JSON line it prints.
pub async fn run_as_task(
    url: &str,
    token: &str,
    other: &str,
    tool: &str,
    arguments: &Value,
) -> anyhow::Result<Value> {
    let mut cmd = Command::new(node());
    cmd.arg(mcp_dir().join("tasks_client.mjs"))
        .arg(url)
        .arg(token)
        .arg(other)
        .arg(tool)
        .arg(arguments.to_string());
    last_json_line(cmd, "tasks_client.mjs", Duration::from_secs(90)).await
}

/// One JSON-RPC message posted raw (no SDK) to the Streamable HTTP endpoint at `path`, as
/// `token`'s agent, in `session` when given.
pub async fn post_raw(
    warden: &Warden,
    path: &str,
    token: &str,
    session: Option<&str>,
    body: &Value,
) -> anyhow::Result<reqwest::Response> {
    let mut request = warden
        .http()
        .post(warden.url(path))
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .json(body);
    if let Some(s) = session {
        request = request.header("mcp-session-id", s);
    }
    Ok(request.send().await?)
}

/// The JSON-RPC message Warden answered a raw post with, as JSON or as the event stream's
/// last message (`null` when there is none).
pub async fn answered(response: reqwest::Response) -> Value {
    let text = response.text().await.unwrap_or_default();
    if let Ok(value) = serde_json::from_str(&text) {
        return value;
    }
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str(d.trim()).ok())
        .next_back()
        .unwrap_or(Value::Null)
}

/// Opens a session raw at `path` as `token`'s agent: its `Mcp-Session-Id`.
pub async fn initialize_raw(warden: &Warden, path: &str, token: &str) -> anyhow::Result<String> {
    initialize_raw_with(warden, path, token, json!({})).await
}

/// As [`initialize_raw`], the agent declaring `capabilities`.
pub async fn initialize_raw_with(
    warden: &Warden,
    path: &str,
    token: &str,
    capabilities: Value,
) -> anyhow::Result<String> {
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": capabilities,
                   "clientInfo": {"name": "t", "version": "1"}}});
    let response = post_raw(warden, path, token, None, &init).await?;
    if response.status() != 200 {
        bail!("initialize answered {}", response.status());
    }
    Ok(response
        .headers()
        .get("mcp-session-id")
        .context("initialize answered no Mcp-Session-Id")?
        .to_str()?
        .to_owned())
}

/// Opens a session raw at `path` as `token`'s agent, and its event stream (GET): the session's
/// id and the stream.
pub async fn open_event_stream(
    warden: &Warden,
    path: &str,
    token: &str,
) -> anyhow::Result<(String, crate::sse::EventReader)> {
    let session = initialize_raw(warden, path, token).await?;
    let stream = session_stream(warden, path, token, &session).await?;
    Ok((session, stream))
}

/// Opens the event stream (GET) of `session` at `path` as `token`'s agent.
pub async fn session_stream(
    warden: &Warden,
    path: &str,
    token: &str,
    session: &str,
) -> anyhow::Result<crate::sse::EventReader> {
    let stream = warden
        .http()
        .get(warden.url(path))
        .bearer_auth(token)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", session)
        .send()
        .await?;
    if stream.status() != 200 {
        bail!("the event stream was answered {}", stream.status());
    }
    Ok(crate::sse::EventReader::new(stream))
}

/// Ends `session` at `path` as `token`'s agent (DELETE): the answer's status.
pub async fn end_session(
    warden: &Warden,
    path: &str,
    token: &str,
    session: &str,
) -> anyhow::Result<u16> {
    let response = warden
        .http()
        .delete(warden.url(path))
        .bearer_auth(token)
        .header("mcp-session-id", session)
        .send()
        .await?;
    Ok(response.status().as_u16())
}

/// Opens a legacy HTTP+SSE event stream at `path` (the endpoint's prefix) as `token`'s agent:
/// the stream, and the path its first event names for the session's messages.
pub async fn open_legacy_stream(
    warden: &Warden,
    path: &str,
    token: &str,
) -> anyhow::Result<(crate::sse::EventReader, String)> {
    let opened = warden
        .http()
        .get(warden.url(&format!("{path}/sse")))
        .bearer_auth(token)
        .header("accept", "text/event-stream")
        .send()
        .await?;
    if opened.status() != 200 {
        bail!("the legacy stream was answered {}", opened.status());
    }
    let mut stream = crate::sse::EventReader::new(opened);
    let endpoint = stream
        .next(Duration::from_secs(10))
        .await?
        .context("the stream ended before its endpoint event")?;
    if endpoint.name.as_deref() != Some("endpoint") {
        bail!("the first event is not the endpoint: {endpoint:?}");
    }
    Ok((stream, endpoint.data))
}

/// Whether `event` is Warden's last notice on a stream it cut: a logging notification at
/// level `error` with the stable `code` and a message that names `reason`.
pub fn is_cut_notice(event: &crate::sse::Event, code: &str, reason: &str) -> bool {
    let message = event.json();
    message["method"] == "notifications/message"
        && message["params"]["level"] == "error"
        && message["params"]["data"]["code"] == code
        && message["params"]["data"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(reason))
}

/// A raw `tools/call` of `tool` (its federated name) with `arguments`.
pub fn tool_call(id: u64, tool: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": tool, "arguments": arguments}})
}
