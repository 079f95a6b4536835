//! Warden under test: a temporary configuration with authentication, Cedar and the audit log
//! on, a token issued by `warden token issue`, and `warden serve`. Every Warden of a run
//! (`warden-disk`, `warden-process`, `warden-baseline`, ...) shares one data directory, so one
//! token (signed with the key kept there) serves them all; each has its own audit log.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::HarnessError;
use crate::openbao;
use crate::process::Proc;

/// Environment variable the bench route reads its upstream credential from.
pub const KEY_ENV: &str = "BENCH_KEY";

/// The bench upstream's key, in [`KEY_ENV`] or in Vault.
pub const UPSTREAM_KEY: &str = "sk-bench-upstream-key";

/// Environment variable Warden reads its Vault token from.
pub const VAULT_TOKEN_ENV: &str = "BENCH_BAO_TOKEN";

/// Where the bench route's upstream credential comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// Environment variable [`KEY_ENV`].
    Env,
    /// KV secret [`openbao::KV_SECRET`], field [`openbao::KV_FIELD`], of the OpenBao at
    /// `address`, logged in with its root token.
    Vault { address: String },
}

/// Where the harness puts things for one Warden target.
#[derive(Debug, Clone)]
pub struct WardenSetup {
    /// The target's name: `warden-disk`, `warden-process`, `warden-baseline`.
    pub name: String,
    pub binary: PathBuf,
    /// Temporary directory shared by the run's Wardens: configs, data dir, policy copies.
    pub dir: PathBuf,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub upstream: SocketAddr,
    /// `audit.durability`; `None` leaves the key out (a binary from before the key takes
    /// its own default, `disk`'s guarantee).
    pub durability: Option<&'static str>,
    /// Diagnostics only: `log.access` (off in the measured setup, as nginx's `access_log
    /// off`).
    pub access_log: bool,
    /// `runtime.worker_threads` (0: one per core).
    pub workers: usize,
    /// Also an MCP endpoint `/mcp/bench` to the bench upstream's MCP server (`/mcp`), with a
    /// policy that lets the bench agent call its tools.
    pub mcp: bool,
    /// Export traces over OTLP to the bench upstream (`/v1/traces`), every request sampled.
    pub traces: bool,
    /// The route's upstream credential.
    pub credential: Credential,
    /// A `siem:` section (YAML, at the top level): the audit log shipped while the load runs.
    pub siem: Option<String>,
}

/// The federated name of the bench upstream's `echo` tool through Warden's MCP endpoint.
pub const MCP_TOOL: &str = "bench_echo";

/// The path of Warden's MCP endpoint in the bench configuration.
pub const MCP_PATH: &str = "/mcp/bench";

/// Lets the bench agent list and call the bench MCP server's tools.
const MCP_POLICY: &str = r#"@id("bench-mcp")
permit (principal, action in [Action::"mcp:list_tools", Action::"mcp:call_tool"], resource);
"#;

impl WardenSetup {
    /// Path of the generated configuration file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join(format!("{}.yaml", self.name))
    }

    /// The configuration: Warden-issued tokens required, the policy copy, the audit log in
    /// a directory of this target's own, one OpenAI route to the bench upstream (with a
    /// `vault:` section when its credential is in Vault).
    pub fn config(&self) -> String {
        let d = self.dir.display();
        let durability = self
            .durability
            .map_or_else(String::new, |d| format!("\n  durability: {d}"));
        format!(
            r#"data_dir: "{d}/data"
listen:
  proxy: "{proxy}"
  admin: "{admin}"
identity:
  required: true
policy:
  dir: "{d}/{name}-policies"
audit:
  dir: "{d}/{name}-audit"{durability}
log:
  access: {access}
runtime:
  worker_threads: {workers}
{traces}{vault}routes:
  - name: openai
    prefix: /openai
    connector: openai
    upstream: "http://{upstream}/v1"
    credential: {credential}
{mcp}{siem}"#,
            name = self.name,
            proxy = self.proxy,
            admin = self.admin,
            upstream = self.upstream,
            access = self.access_log,
            workers = self.workers,
            traces = if self.traces {
                format!(
                    "traces:\n  endpoint: \"http://{}/v1/traces\"\n",
                    self.upstream
                )
            } else {
                String::new()
            },
            vault = match &self.credential {
                Credential::Env => String::new(),
                Credential::Vault { address } => format!(
                    "vault:\n  address: \"{address}\"\n  auth: {{ method: token, token: {{ env: {VAULT_TOKEN_ENV} }} }}\n"
                ),
            },
            credential = match self.credential {
                Credential::Env => format!("{{ env: {KEY_ENV} }}"),
                Credential::Vault { .. } => format!(
                    "{{ vault: {{ kv: {}, field: {} }} }}",
                    openbao::KV_SECRET,
                    openbao::KV_FIELD
                ),
            },
            siem = self.siem.as_deref().unwrap_or_default(),
            mcp = if self.mcp {
                format!(
                    r#"mcp:
  servers:
    - name: bench
      url: "http://{}/mcp"
  endpoints:
    - name: bench
      servers: [bench]
"#,
                    self.upstream
                )
            } else {
                String::new()
            },
        )
    }

    /// Where this target's copy of the policies goes: its own, so a baseline binary can run
    /// the policies (and schema) of its own version.
    pub fn policies_dir(&self) -> PathBuf {
        self.dir.join(format!("{}-policies", self.name))
    }

    /// Writes the configuration and copies `policies` beside it.
    pub fn prepare(&self, policies: &Path) -> Result<(), HarnessError> {
        if !self.policies_dir().is_dir() {
            copy_dir(policies, &self.policies_dir())?;
        }
        if self.mcp {
            std::fs::write(self.policies_dir().join("bench-mcp.cedar"), MCP_POLICY)
                .map_err(HarnessError::io("writing the bench MCP policy"))?;
        }
        std::fs::create_dir_all(self.dir.join("data"))
            .map_err(HarnessError::io("creating the Warden data dir"))?;
        std::fs::write(self.config_path(), self.config())
            .map_err(HarnessError::io("writing the Warden config"))
    }

    /// `warden token issue --config FILE --agent bench --ttl 1h --create-key`: the bearer
    /// token (the key is made here when no gateway has started on this data dir yet).
    pub fn issue_token(&self) -> Result<String, HarnessError> {
        let mut command = Command::new(&self.binary);
        command
            .args(["token", "issue", "--config"])
            .arg(self.config_path())
            .args(["--agent", "bench", "--ttl", "1h", "--create-key"]);
        let shown = format!(
            "{} token issue --config {} --agent bench --ttl 1h --create-key",
            self.binary.display(),
            self.config_path().display()
        );
        let out = command.output().map_err(|source| HarnessError::Spawn {
            what: "warden token issue",
            path: self.binary.clone(),
            source,
        })?;
        let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !out.status.success() || token.is_empty() || token.contains(char::is_whitespace) {
            return Err(HarnessError::CommandFailed {
                command: shown,
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        Ok(token)
    }

    /// `warden serve --config FILE`; returns once `/readyz` on the admin listener answers 200.
    pub fn start(&self) -> Result<Proc, HarnessError> {
        let mut command = Command::new(&self.binary);
        command.args(["serve", "--config"]).arg(self.config_path());
        match self.credential {
            Credential::Env => command.env(KEY_ENV, UPSTREAM_KEY),
            Credential::Vault { .. } => command.env(VAULT_TOKEN_ENV, openbao::ROOT_TOKEN),
        };
        let out = self.dir.join(format!("{}.out", self.name));
        let mut proc = Proc::spawn("warden", command, &out)?;
        proc.wait_for_http_ok(self.admin, "/readyz")?;
        Ok(proc)
    }
}

/// The release `warden` binary: `$WARDEN_BIN`, else beside the running harness binary
/// (`target/release/`).
pub fn locate() -> Result<PathBuf, HarnessError> {
    let path = match std::env::var_os("WARDEN_BIN") {
        Some(path) => PathBuf::from(path),
        None => std::env::current_exe()
            .map_err(HarnessError::io("locating the harness binary"))?
            .with_file_name("warden"),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(HarnessError::MissingBinary {
            what: "the release warden binary",
            path,
            hint: "build it first with `cargo build --release -p warden` (or set $WARDEN_BIN)",
        })
    }
}

/// `warden --version` output.
pub fn version(binary: &Path) -> Option<String> {
    let out = Command::new(binary).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}

/// The repository's top directory.
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The repository's `policies/` directory.
pub fn repo_policies() -> PathBuf {
    repo_root().join("policies")
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), HarnessError> {
    std::fs::create_dir_all(to).map_err(HarnessError::io(format!("creating {}", to.display())))?;
    let entries =
        std::fs::read_dir(from).map_err(HarnessError::io(format!("reading {}", from.display())))?;
    for entry in entries {
        let entry = entry.map_err(HarnessError::io(format!("reading {}", from.display())))?;
        let source = entry.path();
        let target = to.join(entry.file_name());
        if source.is_dir() {
            copy_dir(&source, &target)?;
        } else {
            std::fs::copy(&source, &target)
                .map_err(HarnessError::io(format!("copying {}", source.display())))?;
        }
    }
    Ok(())
}

/// The `siem:` section of the `warden-siem` target: every record shipped in ECS to a syslog
/// collector at `collector` (the harness's, which reads and discards).
pub fn siem_section(collector: SocketAddr) -> String {
    format!(
        "siem:\n  sinks:\n    - name: bench\n      syslog: {{ address: \"{collector}\", format: json }}\n"
    )
}

/// A TCP collector on a free loopback port that reads and discards everything, on a thread
/// of its own (outside the measured processes).
pub fn discard_collector() -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    std::thread::Builder::new()
        .name("bench-syslog".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut stream = stream;
                    let _ = std::io::copy(&mut stream, &mut std::io::sink());
                });
            }
        })?;
    Ok(addr)
}
