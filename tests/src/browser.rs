//! A real headless Chromium (Debian `chromium`) for the end-to-end tests, driven by
//! `tests/browser/drive.mjs` (npm `playwright-core`), with an optional virtual WebAuthn
//! authenticator (Chromium's DevTools `WebAuthn` domain): one browser, one page per
//! [`Browser`]; every command waits a bounded time; the browser is killed when dropped.
//!
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! use warden_e2e::browser::Browser;
//! let mut browser = Browser::launch("approver").await?;
//! browser.add_authenticator().await?;
//! browser.goto("http://localhost:8080/").await?;
//! let title = browser.eval("document.title").await?;
//! browser.screenshot(std::path::Path::new("/tmp/console.png")).await?;
//! # let _ = title; Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::paths;

/// How long one command may take in the page (the driver's own bound).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(15);
/// How long Chromium may take to start on a busy machine.
pub const LAUNCH_TIMEOUT: Duration = Duration::from_secs(90);

/// `tests/browser`: the npm project holding playwright-core (`tests/run` installs it).
pub fn browser_dir() -> PathBuf {
    paths::tests_dir().join("browser")
}

/// A running headless Chromium with one page.
#[derive(Debug)]
pub struct Browser {
    name: String,
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: Arc<Mutex<Vec<String>>>,
    /// Chromium's version.
    pub version: String,
}

/// A command the driver refused or that failed in the page.
#[derive(Debug, thiserror::Error)]
#[error("browser {browser}: {command} failed: {error}{}", page_log_text(.page_log))]
pub struct CommandFailed {
    /// The browser's name.
    pub browser: String,
    /// The command's name.
    pub command: String,
    /// What the driver said.
    pub error: String,
    /// The page's last console lines and errors before the failure.
    pub page_log: Vec<String>,
}

fn page_log_text(log: &[String]) -> String {
    if log.is_empty() {
        String::new()
    } else {
        format!("\n  page: {}", log.join("\n  page: "))
    }
}

impl Browser {
    /// Starts Chromium (`$WARDEN_E2E_CHROMIUM`, default `/usr/bin/chromium`) through the
    /// driver; `name` appears in errors.
    pub async fn launch(name: &str) -> anyhow::Result<Browser> {
        let dir = browser_dir();
        if !dir.join("node_modules/playwright-core").is_dir() {
            bail!(
                "{} is missing: run tests/run (it installs Debian chromium and runs `npm ci` in \
                 tests/browser)",
                dir.join("node_modules/playwright-core").display()
            );
        }
        let mut child = Command::new("node")
            .arg(dir.join("drive.mjs"))
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("cannot run node tests/browser/drive.mjs")?;
        let stdin = child.stdin.take().context("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("no stdout")?).lines();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        if let Some(err) = child.stderr.take() {
            let log = Arc::clone(&stderr);
            tokio::spawn(async move {
                let mut lines = BufReader::new(err).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Ok(mut l) = log.lock() {
                        l.push(line);
                    }
                }
            });
        }
        let mut browser = Browser {
            name: name.to_owned(),
            child,
            stdin,
            stdout,
            stderr,
            version: String::new(),
        };
        let ready = browser.answer("launch", LAUNCH_TIMEOUT).await?;
        browser.version = ready["version"].as_str().unwrap_or_default().to_owned();
        Ok(browser)
    }

    /// Sends `command` (`{"cmd": ..., ...}`, see `tests/browser/drive.mjs`) and returns its
    /// answer, waiting at most its `timeout_ms` (default [`COMMAND_TIMEOUT`]) plus a margin.
    pub async fn command(&mut self, command: Value) -> anyhow::Result<Value> {
        let name = command["cmd"].as_str().unwrap_or("?").to_owned();
        let bound = command["timeout_ms"]
            .as_u64()
            .map(Duration::from_millis)
            .unwrap_or(COMMAND_TIMEOUT)
            + Duration::from_secs(10);
        let mut line = command.to_string();
        line.push('\n');
        self.stdin
            .write_all(line.as_bytes())
            .await
            .with_context(|| format!("browser {}: cannot send {name}{}", self.name, self.tail()))?;
        self.stdin.flush().await?;
        self.answer(&name, bound).await
    }

    async fn answer(&mut self, command: &str, bound: Duration) -> anyhow::Result<Value> {
        let line = match tokio::time::timeout(bound, self.stdout.next_line()).await {
            Err(_) => bail!(
                "browser {}: no answer to {command} within {bound:?}{}",
                self.name,
                self.tail()
            ),
            Ok(Err(e)) => bail!(
                "browser {}: reading its answer: {e}{}",
                self.name,
                self.tail()
            ),
            Ok(Ok(None)) => bail!(
                "browser {}: the driver exited before answering {command}{}",
                self.name,
                self.tail()
            ),
            Ok(Ok(Some(line))) => line,
        };
        let answer: Value = serde_json::from_str(&line)
            .with_context(|| format!("browser {}: not JSON: {line}", self.name))?;
        if answer["ok"] != true {
            return Err(CommandFailed {
                browser: self.name.clone(),
                command: command.to_owned(),
                error: answer["error"].as_str().unwrap_or(&line).to_owned(),
                page_log: answer["page_log"]
                    .as_array()
                    .map(|l| {
                        l.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default(),
            }
            .into());
        }
        Ok(answer)
    }

    fn tail(&self) -> String {
        let lines = self.stderr.lock().map(|l| l.clone()).unwrap_or_default();
        let start = lines.len().saturating_sub(20);
        if lines.is_empty() {
            String::new()
        } else {
            format!("\n  stderr: {}", lines[start..].join("\n  stderr: "))
        }
    }

    /// Adds a virtual authenticator: CTAP2, internal (platform) transport, resident keys,
    /// user verification that succeeds, presence simulated. Returns its id.
    pub async fn add_authenticator(&mut self) -> anyhow::Result<String> {
        let a = self.command(json!({"cmd": "authenticator"})).await?;
        Ok(a["authenticator_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// The virtual authenticator's credentials (`credential_id`, `rp_id`, `user_handle`,
    /// `sign_count`, `resident`; `private_key` too when asked).
    pub async fn credentials(&mut self, with_private_keys: bool) -> anyhow::Result<Vec<Value>> {
        let a = self
            .command(json!({"cmd": "credentials", "with_private_keys": with_private_keys}))
            .await?;
        Ok(a["credentials"].as_array().cloned().unwrap_or_default())
    }

    /// Puts `credential` (as [`Browser::credentials`] gives it, with its private key) into
    /// the virtual authenticator.
    pub async fn add_credential(&mut self, credential: &Value) -> anyhow::Result<()> {
        self.command(json!({"cmd": "add_credential", "credential": credential}))
            .await
            .map(drop)
    }

    /// Opens `url`; returns the HTTP status.
    pub async fn goto(&mut self, url: &str) -> anyhow::Result<Option<u16>> {
        let a = self.command(json!({"cmd": "goto", "url": url})).await?;
        Ok(a["status"].as_u64().and_then(|s| u16::try_from(s).ok()))
    }

    /// Evaluates `expression` in the page (a promise is awaited) and returns its JSON value.
    pub async fn eval(&mut self, expression: &str) -> anyhow::Result<Value> {
        let a = self
            .command(json!({"cmd": "eval", "expression": expression}))
            .await?;
        Ok(a["value"].clone())
    }

    /// Clicks the element `selector` names.
    pub async fn click(&mut self, selector: &str) -> anyhow::Result<()> {
        self.command(json!({"cmd": "click", "selector": selector}))
            .await
            .map(drop)
    }

    /// Types `value` into the field `selector` names.
    pub async fn fill(&mut self, selector: &str, value: &str) -> anyhow::Result<()> {
        self.command(json!({"cmd": "fill", "selector": selector, "value": value}))
            .await
            .map(drop)
    }

    /// Waits for `selector` to appear.
    pub async fn wait_for(&mut self, selector: &str) -> anyhow::Result<()> {
        self.command(json!({"cmd": "wait", "selector": selector}))
            .await
            .map(drop)
    }

    /// The text content of the element `selector` names.
    pub async fn text(&mut self, selector: &str) -> anyhow::Result<String> {
        let a = self
            .command(json!({"cmd": "text", "selector": selector}))
            .await?;
        Ok(a["value"].as_str().unwrap_or_default().to_owned())
    }

    /// The page's current URL.
    pub async fn url(&mut self) -> anyhow::Result<String> {
        let a = self.command(json!({"cmd": "url"})).await?;
        Ok(a["url"].as_str().unwrap_or_default().to_owned())
    }

    /// Writes a PNG of the page (the viewport, 1280×800) to `path`.
    pub async fn screenshot(&mut self, path: &Path) -> anyhow::Result<()> {
        self.command(json!({"cmd": "screenshot", "path": path}))
            .await
            .map(drop)
    }

    /// Writes a PNG of the whole page, beyond the viewport, to `path`.
    pub async fn screenshot_full(&mut self, path: &Path) -> anyhow::Result<()> {
        self.command(json!({"cmd": "screenshot", "path": path, "full_page": true}))
            .await
            .map(drop)
    }

    /// Resizes the viewport (`390`×`844` is a phone's).
    pub async fn viewport(&mut self, width: u32, height: u32) -> anyhow::Result<()> {
        self.command(json!({"cmd": "viewport", "width": width, "height": height}))
            .await
            .map(drop)
    }

    /// Closes the browser and waits for the driver to exit.
    pub async fn close(mut self) -> anyhow::Result<()> {
        let _ = self.command(json!({"cmd": "close"})).await;
        match tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await {
            Ok(status) => {
                status?;
            }
            Err(_) => {
                let _ = self.child.kill().await;
            }
        }
        Ok(())
    }
}
