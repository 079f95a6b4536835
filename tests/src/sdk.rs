//! Runs the Python SDK callers in `tests/sdk/` (official `openai` and `anthropic` packages from
//! `tests/.venv`) and parses the JSON they print.

use anyhow::{Context, bail};
use serde_json::Value;
use std::time::Duration;
use tokio::process::Command;

use crate::paths;
use crate::warden::run_bounded;

/// Runs `tests/sdk/<script> <modes and flags>` with `BASE_URL` and `API_KEY` set; returns the
/// JSON object of its last stdout line, one key per mode. SDK errors appear as
/// `{"<mode>": {"error": {...}}}` (the script still exits 0). Batch modes in one call: each
/// Python start costs about a second.
pub async fn run(
    script: &str,
    base_url: &str,
    api_key: &str,
    args: &[&str],
) -> anyhow::Result<Value> {
    let python = paths::venv_python();
    if !python.is_file() {
        bail!(
            "{} is missing: run tests/run (it makes the venv from tests/sdk/requirements.txt)",
            python.display()
        );
    }
    let mut cmd = Command::new(python);
    cmd.arg(paths::sdk_script(script))
        .args(args)
        .env("BASE_URL", base_url)
        .env("API_KEY", api_key)
        .env("PYTHONUNBUFFERED", "1")
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("ANTHROPIC_BASE_URL");
    let out = run_bounded(cmd, Duration::from_secs(90)).await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!(
            "{script} {args:?} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
            out.status
        );
    }
    let last = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .with_context(|| format!("{script} printed nothing; stderr:\n{stderr}"))?;
    serde_json::from_str(last)
        .with_context(|| format!("{script} printed no JSON: {last}\nstderr:\n{stderr}"))
}
