//! `osmem-server` (pip `osmem-server`, installed by tests/run into tests/.venv): an in-memory
//! server speaking OpenSearch's REST API (`_bulk` with `create` and `_id`, `_search`, index
//! mappings; no data streams), one per test on a free port of 127.0.0.1.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::process::Command;

use crate::process::Proc;

/// The server binary: `$OSMEM_SERVER_BIN`, else the one the venv's package bundles.
pub fn osmem_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("OSMEM_SERVER_BIN") {
        return Ok(path.into());
    }
    let out = std::process::Command::new(crate::paths::venv_python())
        .args([
            "-c",
            "import osmem_server; print(osmem_server.resolve_binary())",
        ])
        .output()
        .context("cannot run tests/.venv/bin/python; run tests/run, which installs osmem-server")?;
    if !out.status.success() {
        bail!(
            "osmem-server is not installed in tests/.venv (tests/run installs it): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

/// A running server; killed when dropped.
pub struct Osmem {
    _proc: Proc,
    url: String,
    http: reqwest::Client,
}

impl Osmem {
    /// Starts a server on a free port.
    pub async fn start() -> anyhow::Result<Osmem> {
        let mut cmd = Command::new(osmem_binary()?);
        cmd.args([
            "--addr",
            "127.0.0.1:0",
            "--no-ja",
            "--no-stdin-watch",
            "--parent-pid",
        ])
        .arg(std::process::id().to_string());
        let mut proc = Proc::spawn("osmem-server", cmd)?;
        let line = tokio::time::timeout(Duration::from_secs(30), proc.next_stdout_line())
            .await
            .context("osmem-server said nothing in 30 s")?
            .context("osmem-server exited at start")?;
        let ready: Value = serde_json::from_str(&line)
            .with_context(|| format!("osmem-server printed {line:?}"))?;
        let url = ready["url"]
            .as_str()
            .context("osmem-server printed no url")?
            .to_owned();
        Ok(Osmem {
            _proc: proc,
            url,
            http: reqwest::Client::new(),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `METHOD path` with a JSON body: the answer's status and JSON.
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    /// Every document of `index` (up to 10,000), as `_search` hits.
    pub async fn documents(&self, index: &str) -> anyhow::Result<Vec<Value>> {
        let (status, v) = self
            .request(
                reqwest::Method::POST,
                &format!("/{index}/_search"),
                Some(serde_json::json!({"size": 10000, "query": {"match_all": {}}})),
            )
            .await?;
        if status == 404 {
            return Ok(Vec::new());
        }
        Ok(v["hits"]["hits"].as_array().cloned().unwrap_or_default())
    }
}
