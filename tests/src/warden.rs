//! Runs the real `warden` binary: writes a temporary config and policy directory, starts
//! `warden serve` on free loopback ports, waits for `/readyz`, issues tokens, reads the audit
//! log, and kills the process on drop (printing its output when the test failed).

use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Output};
use std::time::Duration;
use tempfile::TempDir;
use tokio::process::Command;

use crate::fake_llm::{FakeLlm, RequiredKeys};
use crate::idp::Idp;
use crate::paths;
use crate::process::Proc;

/// Provider key Warden injects on the OpenAI route (`FAKE_OPENAI_KEY`).
pub const OPENAI_KEY: &str = "sk-fake-openai-provider-key-e2e";
/// Provider key Warden injects on the Anthropic route (`FAKE_ANTHROPIC_KEY`).
pub const ANTHROPIC_KEY: &str = "sk-ant-fake-provider-key-e2e";
/// Provider key Warden injects on the Gemini route (`FAKE_GEMINI_KEY`).
pub const GEMINI_KEY: &str = "AIza-fake-gemini-provider-key-e2e";

/// The audience Warden expects from the test IdP.
pub const AUDIENCE: &str = "warden";

/// A policy permitting everything, so tests add only the forbids they are about.
pub const PERMIT_ALL: &str = "@id(\"e2e-permit-all\")\npermit(principal, action, resource);\n";

/// Used when the repository has no `policies/schema.cedarschema`: the same model (agents and
/// users in groups; models in providers, tools in MCP servers or tool groups, operations in
/// APIs, hosts, secrets, approvals; every action and its context).
const FALLBACK_SCHEMA: &str = r#"
entity AgentGroup;
entity Agent in [AgentGroup] {
  issuer: String, fleet?: String, owner?: String, environment?: String, scopes: Set<String>,
  client_certificate?: String,
};
entity Group;
entity User in [Group] { issuer: String };
entity Provider;
entity Model in [Provider] { name: String, provider: String };
entity McpServer;
entity ToolGroup;
entity Tool in [McpServer, ToolGroup] { name: String, server?: String, group?: String };
entity Api;
entity Operation in [Api] { name: String, api: String } tags String;
entity Host { name: String };
entity Secret { path: String };
entity Approval { principal: String, action: String, resource: String };
type RequestContext = {
  route: String, time: Long, hour: Long, weekday: Long, source_ip: ipaddr, tls: Bool,
  client_certificate?: String, findings: Set<String>,
};
type LlmContext = {
  route: String, time: Long, hour: Long, weekday: Long, source_ip: ipaddr, tls: Bool,
  client_certificate?: String, findings: Set<String>,
  stream: Bool, max_tokens?: Long, tools: Set<String>, input_tokens: Long,
};
type HttpContext = {
  route: String, time: Long, hour: Long, weekday: Long, source_ip: ipaddr, tls: Bool,
  client_certificate?: String, findings: Set<String>, method: String, path: String,
};
type EgressContext = {
  route: String, time: Long, hour: Long, weekday: Long, source_ip: ipaddr, tls: Bool,
  client_certificate?: String, findings: Set<String>,
  port: Long, addresses: Set<ipaddr>, scheme: String, sni?: String, method?: String, path?: String,
};
action "llm:chat", "llm:embed" appliesTo { principal: [Agent], resource: [Model], context: LlmContext };
action "llm:models" appliesTo { principal: [Agent], resource: [Provider, Model], context: LlmContext };
action "mcp:list_tools", "mcp:read_resource", "mcp:get_prompt", "mcp:complete" appliesTo {
  principal: [Agent], resource: [McpServer], context: RequestContext,
};
action "mcp:call_tool", "tool:propose" appliesTo { principal: [Agent], resource: [Tool], context: RequestContext };
action "http:request" appliesTo { principal: [Agent], resource: [Api, Operation], context: HttpContext };
action "egress:connect", "egress:request" appliesTo { principal: [Agent], resource: [Host], context: EgressContext };
action "secret:use" appliesTo { principal: [Agent], resource: [Secret], context: RequestContext };
action "approval:decide" appliesTo { principal: [User], resource: [Approval], context: RequestContext };
"#;

/// The provider keys the fake upstream should require: the ones Warden injects.
pub fn provider_keys() -> RequiredKeys {
    RequiredKeys {
        openai: Some(OPENAI_KEY.into()),
        anthropic: Some(ANTHROPIC_KEY.into()),
        gemini: Some(GEMINI_KEY.into()),
    }
}

/// The approval console's address (`http://localhost:PORT`, a free port) and an IdP whose
/// console client may send approvers back to its callback: with
/// [`WardenBuilder::console`], a console approvers sign in to.
#[derive(Debug)]
pub struct ConsoleIdp {
    /// The IdP (its people: `alice`, ...).
    pub idp: Idp,
    /// The console's port on 127.0.0.1.
    pub port: u16,
    /// `http://localhost:PORT`, as browsers reach the console.
    pub url: String,
}

impl ConsoleIdp {
    /// Picks the console's port and starts the IdP for it.
    pub async fn start() -> anyhow::Result<ConsoleIdp> {
        ConsoleIdp::start_with(&[]).await
    }

    /// As [`ConsoleIdp::start`], the IdP given `env` besides the console's redirect.
    pub async fn start_with(env: &[(&str, &str)]) -> anyhow::Result<ConsoleIdp> {
        let port = free_port()?;
        let url = format!("http://localhost:{port}");
        let redirect = format!("{url}/auth/callback");
        let mut all = vec![("IDP_CONSOLE_REDIRECTS", redirect.as_str())];
        all.extend_from_slice(env);
        let idp = Idp::start_with(&all).await?;
        Ok(ConsoleIdp { idp, port, url })
    }
}

/// A free TCP port on 127.0.0.1 (bound, then released) for a server a test starts later.
///
/// Taken below Linux's ephemeral range (32768 and up), where the kernel picks the local ports
/// of the many outgoing connections tests make and the ports of servers bound to port 0: a
/// port found free there can be taken by one of those before the server binds it. Never the
/// same port twice in one test process; where in the range a process starts depends on its
/// id, so tests running beside each other start far apart.
pub fn free_port() -> anyhow::Result<u16> {
    use std::collections::HashSet;
    use std::sync::Mutex;
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static GIVEN: Mutex<Option<(u32, HashSet<u16>)>> = Mutex::new(None);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let (next, seen) = given.get_or_insert_with(|| {
        (
            std::process::id().wrapping_mul(2_654_435_761) % SPAN,
            HashSet::new(),
        )
    });
    for _ in 0..SPAN {
        // A stride prime to the span visits every port of it once.
        *next = (*next + 7_919) % SPAN;
        let port = (FIRST + *next) as u16;
        if seen.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            seen.insert(port);
            return Ok(port);
        }
    }
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A port on 127.0.0.1 that refuses connections for as long as this lives: its socket is
/// bound but never listens, and without `SO_REUSEADDR`, so no server of a test running
/// beside this one can take the port (a port merely found free and released can be, and then
/// answers where a refusal was expected).
#[derive(Debug)]
pub struct ClosedPort {
    _socket: tokio::net::TcpSocket,
    /// The port.
    pub port: u16,
}

impl ClosedPort {
    /// Binds one.
    pub fn new() -> anyhow::Result<ClosedPort> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let port = socket.local_addr()?.port();
        Ok(ClosedPort {
            _socket: socket,
            port,
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// Builds a Warden setup: config (as JSON, which is YAML), policies, environment.
#[derive(Debug, Clone)]
pub struct WardenBuilder {
    config: Value,
    policies: Vec<(String, String)>,
    env: Vec<(String, String)>,
}

impl WardenBuilder {
    /// Routes `/openai`, `/anthropic`, `/gemini` to `upstream` with the fake provider keys,
    /// identity required (Warden tokens), everything permitted. Makes `upstream` require the
    /// provider keys Warden is given.
    pub fn new(upstream: &FakeLlm) -> WardenBuilder {
        upstream.require_keys(provider_keys());
        WardenBuilder::with_upstream_url(&upstream.url())
    }

    /// Same routes, to an upstream base URL (e.g. a closed port).
    pub fn with_upstream_url(base: &str) -> WardenBuilder {
        let config = json!({
            "identity": {
                "required": true,
                "issuers": [],
                "claims": {"agent": "sub", "fleet": "fleet", "owner": "owner",
                           "environment": "environment", "groups": "groups"}
            },
            "audit": {"durability": "disk"},
            "log": {"level": "info", "format": "json"},
            "routes": [
                {"name": "openai", "prefix": "/openai", "connector": "openai",
                 "upstream": format!("{base}/v1"), "credential": {"env": "FAKE_OPENAI_KEY"}},
                {"name": "anthropic", "prefix": "/anthropic", "connector": "anthropic",
                 "upstream": base, "credential": {"env": "FAKE_ANTHROPIC_KEY"}},
                {"name": "gemini", "prefix": "/gemini", "connector": "gemini",
                 "upstream": base, "credential": {"env": "FAKE_GEMINI_KEY"}}
            ]
        });
        WardenBuilder {
            config,
            policies: vec![("e2e-permit-all.cedar".into(), PERMIT_ALL.into())],
            env: vec![
                ("FAKE_OPENAI_KEY".into(), OPENAI_KEY.into()),
                ("FAKE_ANTHROPIC_KEY".into(), ANTHROPIC_KEY.into()),
                ("FAKE_GEMINI_KEY".into(), GEMINI_KEY.into()),
            ],
        }
    }

    /// The approval console on `console`'s port, approvers signing in at its IdP (the public
    /// client `warden-console`, scopes `profile`, `email`, `groups`), approvals linking to it.
    pub fn console(self, console: &ConsoleIdp) -> WardenBuilder {
        self.set("/approvals/console_url", json!(console.url))
            .set(
                "/console/listen",
                json!(format!("127.0.0.1:{}", console.port)),
            )
            .set(
                "/console/oidc",
                json!({
                    "issuer": console.idp.issuer(),
                    "client_id": "warden-console",
                    "scopes": ["profile", "email", "groups"],
                }),
            )
    }

    /// Trusts `idp` as an issuer with audience `warden`.
    pub fn trust(self, idp: &Idp) -> WardenBuilder {
        self.trust_issuer(idp.issuer(), &[AUDIENCE])
    }

    /// Trusts `issuer` for `audiences`.
    pub fn trust_issuer(mut self, issuer: &str, audiences: &[&str]) -> WardenBuilder {
        if let Some(list) = self
            .config
            .pointer_mut("/identity/issuers")
            .and_then(Value::as_array_mut)
        {
            list.push(json!({"issuer": issuer, "audiences": audiences}));
        }
        self
    }

    /// Sets the config value at JSON pointer `pointer` (e.g. `/limits/max_request_bytes`,
    /// `/routes/0/on_deny`), creating objects on the way; array indexes must exist, or be one
    /// past the end (`/routes/3` appends a fourth route).
    pub fn set(mut self, pointer: &str, value: Value) -> WardenBuilder {
        set_pointer(&mut self.config, pointer, value);
        self
    }

    /// Adds (or replaces) policy file `name` in the policy directory.
    pub fn policy(mut self, name: &str, text: &str) -> WardenBuilder {
        self.policies.retain(|(n, _)| n != name);
        self.policies.push((name.into(), text.into()));
        self
    }

    /// Removes policy file `name` (e.g. the default `e2e-permit-all.cedar`).
    pub fn without_policy(mut self, name: &str) -> WardenBuilder {
        self.policies.retain(|(n, _)| n != name);
        self
    }

    /// Sets an environment variable of the Warden process.
    pub fn env(mut self, key: &str, value: &str) -> WardenBuilder {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
        self
    }

    /// A replica: its state in the PostgreSQL database at `state_url` (passed in `STATE_URL`),
    /// and, when `signer` is given, its Warden tokens signed with `signer`'s key, so that each
    /// replica accepts the other's tokens.
    pub fn replica_of(self, state_url: &str, signer: Option<&Warden>) -> WardenBuilder {
        let builder = self
            .set("/state", json!({"postgres": {"url": {"env": "STATE_URL"}}}))
            .env("STATE_URL", state_url);
        match signer {
            Some(signer) => {
                let key = signer.setup.data_dir.join("keys/agent-signing.pem");
                builder.set("/identity/warden_issuer/key_file", json!(key))
            }
            None => builder,
        }
    }

    /// Writes the config and policy directory into a new temporary directory.
    pub fn write(mut self) -> anyhow::Result<Prepared> {
        let dir = tempfile::Builder::new().prefix("warden-e2e-").tempdir()?;
        let data_dir = dir.path().join("data");
        let policy_dir = dir.path().join("policies");
        std::fs::create_dir_all(&data_dir)?;
        std::fs::create_dir_all(&policy_dir)?;
        let schema = paths::repo_root().join("policies/schema.cedarschema");
        match std::fs::read_to_string(&schema) {
            Ok(text) => std::fs::write(policy_dir.join("schema.cedarschema"), text)?,
            Err(_) => std::fs::write(policy_dir.join("schema.cedarschema"), FALLBACK_SCHEMA)?,
        }
        for (name, text) in &self.policies {
            std::fs::write(policy_dir.join(name), text)?;
        }
        let proxy = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        if self.config.pointer("/listen/proxy").is_none() {
            set_pointer(&mut self.config, "/listen/proxy", json!(proxy.to_string()));
        }
        if self.config.pointer("/listen/admin").is_none() {
            set_pointer(&mut self.config, "/listen/admin", json!(admin.to_string()));
        }
        set_pointer(&mut self.config, "/data_dir", json!(data_dir));
        set_pointer(&mut self.config, "/policy/dir", json!(policy_dir));
        let config_path = dir.path().join("warden.yaml");
        std::fs::write(&config_path, serde_json::to_string_pretty(&self.config)?)?;
        let proxy = parse_addr(&self.config, "/listen/proxy").unwrap_or(proxy);
        let admin = parse_addr(&self.config, "/listen/admin").unwrap_or(admin);
        Ok(Prepared {
            dir,
            config_path,
            data_dir,
            policy_dir,
            proxy,
            admin,
            env: self.env,
        })
    }

    /// Writes everything, starts `warden serve` and waits until `/readyz` answers 200.
    pub async fn start(self) -> anyhow::Result<Warden> {
        let mut warden = self.write()?.spawn()?;
        warden.wait_ready(Duration::from_secs(30)).await?;
        Ok(warden)
    }
}

fn parse_addr(config: &Value, pointer: &str) -> Option<SocketAddr> {
    config.pointer(pointer)?.as_str()?.parse().ok()
}

fn set_pointer(root: &mut Value, pointer: &str, value: Value) {
    let keys: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
    let Some((last, parents)) = keys.split_last() else {
        return;
    };
    let mut node = root;
    for key in parents {
        node = match node {
            Value::Array(items) => match key.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                Some(item) => item,
                None => return,
            },
            other => {
                if !other.is_object() {
                    *other = json!({});
                }
                let Some(object) = other.as_object_mut() else {
                    return;
                };
                object.entry(key.to_string()).or_insert_with(|| json!({}))
            }
        };
    }
    match node {
        Value::Array(items) => match last.parse::<usize>() {
            // One past the end appends.
            Ok(i) if i == items.len() => items.push(value),
            Ok(i) => {
                if let Some(slot) = items.get_mut(i) {
                    *slot = value;
                }
            }
            Err(_) => {}
        },
        other => {
            if !other.is_object() {
                *other = json!({});
            }
            if let Some(object) = other.as_object_mut() {
                object.insert(last.to_string(), value);
            }
        }
    }
}

/// A written setup, not yet started.
#[derive(Debug)]
pub struct Prepared {
    pub dir: TempDir,
    pub config_path: PathBuf,
    pub data_dir: PathBuf,
    pub policy_dir: PathBuf,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    env: Vec<(String, String)>,
}

/// The `$USER` the tests' `warden` commands run with: the operator that quarantine, release,
/// revoke and floor reset record when no `--as` names one.
pub const OPERATOR: &str = "e2e-operator";

impl Prepared {
    /// A `warden` command with this setup's environment.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(paths::warden_bin());
        // The operator that commands acting on the store record when no --as names one (CI
        // shells may have no $USER); a setup's own environment may name another.
        cmd.env("USER", OPERATOR);
        cmd.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd.env_remove("RUST_LOG").kill_on_drop(true);
        cmd
    }

    /// Starts `warden serve --config <file>` without waiting for readiness.
    pub fn spawn(self) -> anyhow::Result<Warden> {
        self.spawn_with(&[])
    }

    /// [`spawn`](Self::spawn) with `extra` arguments after `serve`'s own.
    pub fn spawn_with(self, extra: &[&str]) -> anyhow::Result<Warden> {
        let bin = paths::warden_bin();
        if !bin.is_file() {
            bail!(
                "{} not found: build it first (cargo build -p warden) or set WARDEN_BIN",
                bin.display()
            );
        }
        let mut cmd = self.command();
        cmd.arg("serve").arg("--config").arg(&self.config_path);
        cmd.args(extra);
        let proc = Proc::spawn("warden", cmd)?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Warden {
            setup: self,
            proc,
            http,
        })
    }
}

/// A running `warden serve`.
#[derive(Debug)]
pub struct Warden {
    pub setup: Prepared,
    proc: Proc,
    http: reqwest::Client,
}

impl Warden {
    /// Polls `GET /readyz` on the admin listener until 200, failing early if Warden exits.
    pub async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let url = self.admin_url("/readyz");
        loop {
            if self.proc.try_exit_status().is_some() {
                let status = self.proc.wait().await?;
                bail!(
                    "warden exited with {status} before it was ready:\n{}",
                    self.proc.output()
                );
            }
            let probe = self
                .http
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if probe.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "warden not ready at {url} after {timeout:?}:\n{}",
                    self.proc.output()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process id of `warden serve`.
    pub fn pid(&self) -> Option<u32> {
        self.proc.pid()
    }

    /// `http://<proxy><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.setup.proxy)
    }

    /// `http://<admin><path>`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.setup.admin)
    }

    /// An HTTP client with a 30 s timeout.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Runs `warden <args>` with this setup's environment, `--config` appended.
    pub async fn cli(&self, args: &[&str]) -> anyhow::Result<Output> {
        let mut cmd = self.setup.command();
        cmd.args(args).arg("--config").arg(&self.setup.config_path);
        run_bounded(cmd, Duration::from_secs(30)).await
    }

    /// `warden token issue --agent <agent> --ttl <ttl> [--claim k=v]...`: the token.
    pub async fn token_with(
        &self,
        agent: &str,
        ttl: &str,
        claims: &[(&str, &str)],
    ) -> anyhow::Result<String> {
        let mut args = vec!["token", "issue", "--agent", agent, "--ttl", ttl];
        let pairs: Vec<String> = claims.iter().map(|(k, v)| format!("{k}={v}")).collect();
        for pair in &pairs {
            args.push("--claim");
            args.push(pair);
        }
        let out = self.cli(&args).await?;
        if !out.status.success() {
            bail!(
                "warden token issue failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let token = String::from_utf8(out.stdout)?.trim().to_owned();
        if token.is_empty() {
            bail!("warden token issue printed no token");
        }
        Ok(token)
    }

    /// `warden canary issue --kind <kind> --label e2e [extra]`: what it printed.
    pub async fn issue_canary(&self, kind: &str, extra: &[&str]) -> anyhow::Result<String> {
        let mut args = vec!["canary", "issue", "--kind", kind, "--label", "e2e"];
        args.extend_from_slice(extra);
        let out = self.cli(&args).await?;
        if !out.status.success() {
            bail!(
                "warden canary issue failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8(out.stdout)?)
    }

    /// A one-hour Warden token for `agent`.
    pub async fn token(&self, agent: &str) -> anyhow::Result<String> {
        self.token_with(agent, "1h", &[]).await
    }

    /// Every audit record written so far, in file order.
    pub fn audit_records(&self) -> Vec<Value> {
        read_audit(&self.audit_dir())
    }

    /// `<data_dir>/audit`.
    pub fn audit_dir(&self) -> PathBuf {
        self.setup.data_dir.join("audit")
    }

    /// Waits until an audit record satisfies `pred`; returns it.
    pub async fn wait_for_audit(
        &self,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(found) = self.audit_records().into_iter().find(|r| pred(r)) {
                return Ok(found);
            }
            if tokio::time::Instant::now() >= deadline {
                let records = self.audit_records();
                bail!(
                    "no matching audit record after {timeout:?}; {} records:\n{}",
                    records.len(),
                    records
                        .iter()
                        .map(Value::to_string)
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// `GET /metrics` text.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        Ok(self
            .http
            .get(self.admin_url("/metrics"))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?)
    }

    /// Writes (or replaces) a policy file in the live policy directory.
    pub fn write_policy(&self, name: &str, text: &str) -> anyhow::Result<()> {
        std::fs::write(self.setup.policy_dir.join(name), text)
            .with_context(|| format!("writing policy {name}"))
    }

    /// Edits the config file with `edit` (as JSON, which is YAML; replaced whole, as an editor
    /// does), sends SIGHUP and waits up to 20 s for a reload to be applied (its audit record),
    /// then until no other reload follows within a second (the file watcher reloads a change
    /// too), so that what runs afterwards is the edited configuration.
    pub async fn reload(&self, edit: impl FnOnce(&mut Value)) -> anyhow::Result<()> {
        let applied = |records: &[Value]| {
            records
                .iter()
                .filter(|r| r["detail"]["event"] == "reload" && r["detail"]["result"] == "applied")
                .count()
        };
        let before = applied(&self.audit_records());
        let path = &self.setup.config_path;
        let mut config: Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
        edit(&mut config);
        let edited = path.with_extension("edited");
        std::fs::write(&edited, serde_json::to_string_pretty(&config)?)?;
        std::fs::rename(&edited, path)?;
        self.signal(libc::SIGHUP)?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while applied(&self.audit_records()) == before {
            if tokio::time::Instant::now() >= deadline {
                bail!("no reload applied within 20 s:\n{}", self.output());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        loop {
            let seen = applied(&self.audit_records());
            tokio::time::sleep(Duration::from_secs(1)).await;
            if applied(&self.audit_records()) == seen {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("reloads still following each other after 20 s");
            }
        }
    }

    /// Sends a signal to the Warden process.
    pub fn signal(&self, signal: i32) -> anyhow::Result<()> {
        self.proc.signal(signal)
    }

    /// Waits up to `timeout` for Warden to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        match tokio::time::timeout(timeout, self.proc.wait()).await {
            Ok(status) => Ok(status?),
            Err(_) => bail!(
                "warden still running after {timeout:?}:\n{}",
                self.proc.output()
            ),
        }
    }

    /// Everything Warden printed so far.
    pub fn output(&self) -> String {
        self.proc.output()
    }

    /// Stops Warden (SIGTERM, then up to 15 s for it to exit) and hands back its setup, so a
    /// test can start it again on the same files.
    pub async fn stop_and_take_setup(mut self) -> Prepared {
        let _ = self.proc.signal(libc::SIGTERM);
        let _ = tokio::time::timeout(Duration::from_secs(15), self.proc.wait()).await;
        self.setup
    }
}

/// `N` replicas on the state store at `state_url`, started one after another from `replica(i)`
/// for `i` in `0..N`: each [`WardenBuilder::replica_of`] the store, every one after the first
/// signing its Warden tokens with the first's key, so that each accepts the others' tokens.
pub async fn replicas_on_one_store<const N: usize>(
    state_url: &str,
    replica: impl Fn(usize) -> WardenBuilder,
) -> anyhow::Result<[Warden; N]> {
    let mut started: Vec<Warden> = Vec::with_capacity(N);
    for i in 0..N {
        let builder = replica(i).replica_of(state_url, started.first());
        started.push(builder.start().await?);
    }
    match started.try_into() {
        Ok(all) => Ok(all),
        Err(_) => unreachable!("{N} replicas were started"),
    }
}

/// `warden ARGS…` (the binary under test, `RUST_LOG` unset) within `timeout`: whether it
/// succeeded, its stdout and its stderr.
pub async fn cli(args: &[&str], timeout: Duration) -> (bool, String, String) {
    let mut cmd = Command::new(paths::warden_bin());
    cmd.args(args).env("USER", OPERATOR).env_remove("RUST_LOG");
    let out = run_bounded(cmd, timeout).await.unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `warden policy keygen` of a bundle signing key in `dir`: the private and the public key's
/// paths.
pub async fn bundle_keygen(dir: &Path) -> (String, String) {
    let key = dir.join("bundle-signing.pem");
    let (ok, out, err) = cli(
        &["policy", "keygen", key.to_str().unwrap()],
        Duration::from_secs(30),
    )
    .await;
    assert!(ok, "{out}{err}");
    let public = dir.join("bundle-signing.pub");
    assert!(public.is_file(), "{out}");
    (
        key.to_string_lossy().into_owned(),
        public.to_string_lossy().into_owned(),
    )
}

/// Runs `cmd` to completion within `timeout`, capturing its output.
pub async fn run_bounded(mut cmd: Command, timeout: Duration) -> anyhow::Result<Output> {
    cmd.stdin(std::process::Stdio::null()).kill_on_drop(true);
    match tokio::time::timeout(timeout, cmd.output()).await {
        Ok(out) => Ok(out?),
        Err(_) => bail!("command did not finish within {timeout:?}: {cmd:?}"),
    }
}

/// Parses every `*.jsonl` file in `dir` (sorted by name); unparsable lines become strings.
pub fn read_audit(dir: &Path) -> Vec<Value> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|text| {
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| serde_json::from_str(l).unwrap_or_else(|_| Value::String(l.to_owned())))
                .collect::<Vec<_>>()
        })
        .collect()
}
