//! Local MCP servers over stdio: Warden starts the process (command, args, env, working
//! directory), writes one JSON-RPC message per line to its stdin, reads one per line from its
//! stdout, and logs its stderr line by line at `info` with the server's name. When the process
//! dies, the requests in flight fail, and Warden starts it again with backoff (100 ms,
//! doubling, at most 30 s) and initialises it again: the agent's session goes on. The process
//! leads a process group of its own, ended with it (`process_group.rs`): what it started and
//! left in its group does not outlive it.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{ChildStdin, Command};
use tokio::sync::{Mutex, mpsc, watch};
use zeroize::Zeroizing;

use super::endpoint::StdioCommand;
use super::error::LinkError;
use super::process_group::{ProcessGroup, STOP_GRACE};
use super::router::{Router, State, closed as link_closed, handshake};
use super::sandbox;
use super::supervise::{self, Connection, Exit, Up};
use crate::secrets::redact::{Echo, MIN_ECHO, base64_forms};
use crate::text::{FIELD_MAX, bounded};

/// Longest line accepted from a server's stdout (one JSON-RPC message); a longer one is
/// dropped.
const MAX_LINE: usize = 16 * 1024 * 1024;
/// Longest stderr line logged (the rest is cut).
const MAX_LOG_LINE: usize = FIELD_MAX;
/// Messages waiting to be written to the process at most.
const QUEUE: usize = 256;

/// Local servers' processes running now (for the line Warden logs when it stops).
static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// How many local servers' processes run now.
pub fn running() -> usize {
    RUNNING.load(Ordering::Relaxed)
}

/// One process counted in [`RUNNING`] while it lives.
struct Running;

impl Running {
    fn count() -> Running {
        RUNNING.fetch_add(1, Ordering::Relaxed);
        Running
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Sends messages to a supervised local server.
pub struct StdioTransport {
    tx: mpsc::Sender<Value>,
}

impl StdioTransport {
    /// Starts the process and initialises it; later deaths are restarts, a failure of this
    /// first start is an error.
    pub async fn start(
        command: &Arc<StdioCommand>,
        router: &Arc<Router>,
        next_id: &Arc<AtomicI64>,
        init: Map<String, Value>,
        timeout: Duration,
        egress: Option<Arc<dyn sandbox::ServeEgress>>,
    ) -> Result<StdioTransport, LinkError> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let process = Process {
            command: Arc::clone(command),
            router: Arc::clone(router),
            next_id: Arc::clone(next_id),
            init,
            timeout,
            rx,
            egress,
        };
        supervise::start(process, router).await?;
        Ok(StdioTransport { tx })
    }

    /// Queues `message` for the process.
    pub async fn send(&self, message: Value) -> Result<(), LinkError> {
        self.tx.send(message).await.map_err(|_| LinkError::Closed {
            server: String::new(),
        })
    }
}

/// One local server for one upstream session, run (and run again) by the supervisor.
struct Process {
    command: Arc<StdioCommand>,
    router: Arc<Router>,
    next_id: Arc<AtomicI64>,
    init: Map<String, Value>,
    timeout: Duration,
    /// The messages for the process.
    rx: mpsc::Receiver<Value>,
    /// Who serves a process's egress (`sandbox.network: egress`) for the agent session.
    egress: Option<Arc<dyn sandbox::ServeEgress>>,
}

impl Connection for Process {
    const LOST: &'static str = "the MCP server exited; Warden is restarting it";
    const LOG: &'static str = "MCP server exited; restarting it";

    /// Starts the process, initialises it, and relays messages until it dies or the session
    /// ends.
    async fn run_once(&mut self, up: &mut Up, closed: &mut watch::Receiver<State>) -> Exit {
        if *closed.borrow() == State::Closed {
            return Exit::Closed;
        }
        let secret_env = match self.command.secret_values().await {
            Ok(values) => values,
            Err(reason) => {
                // The reason may name Vault's address or secret paths: the log's only.
                tracing::warn!(server = %self.router.server, error = %reason, "an MCP server's secret_env value is unavailable; it is not started (fail closed)");
                return Exit::Died(crate::secrets::unavailable_to_agent(None));
            }
        };
        // What the process could quote back of its secrets is redacted from its messages and
        // from what it writes to stderr (which goes to Warden's log).
        let echo = echoed(&secret_env);
        self.router.redact(&echo);
        // `entered`, the process's own directory, is removed when this returns: it has ended.
        // `group` ends the process with its group, when this returns at the latest.
        let (mut group, _running, mut entered) = match self.spawn(&secret_env) {
            Ok(started) => started,
            Err(Spawn::Sandbox(e)) => {
                // How to opt out goes to the log; the agent is told the server cannot start.
                tracing::error!(server = %self.router.server, error = %e, "a local MCP server cannot be sandboxed; it is not started (fail closed)");
                return Exit::Died(format!("the server cannot be sandboxed: {e}"));
            }
            Err(Spawn::Io(e)) => {
                return Exit::Died(format!(
                    "cannot start {}: {e}",
                    crate::text::Quoted::of(&self.command.program)
                ));
            }
        };
        // Its egress listener served until this returns (the process has ended): the guard
        // closes it.
        let _egress = match self.serve_egress(entered.as_mut()) {
            Ok(guard) => guard,
            Err(reason) => {
                tracing::error!(server = %self.router.server, error = %reason, "a local MCP server's egress (sandbox.network: egress) cannot be served; it is stopped (fail closed)");
                group.stop(STOP_GRACE).await;
                return Exit::Died(format!("the server's egress cannot be served: {reason}"));
            }
        };
        let child = group.child();
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Exit::Died("the process has no stdio".into());
        };
        let server = Arc::clone(&self.router.server);
        tokio::spawn(log_stderr(server, echo, BufReader::new(stderr)));
        let mut reader = tokio::spawn(read_stdout(
            Arc::clone(&self.router),
            BufReader::new(stdout),
        ));
        let stdin = Arc::new(Mutex::new(stdin));
        let shake = handshake(
            &self.router,
            &self.next_id,
            &self.init,
            self.timeout,
            |m, _| {
                let stdin = Arc::clone(&stdin);
                async move { write_line(&stdin, &m).await }
            },
        );
        let shaken = tokio::select! {
            r = shake => r,
            _ = &mut reader => Err("the process exited during initialize".into()),
        };
        if let Err(reason) = shaken {
            group.stop(STOP_GRACE).await;
            return Exit::Died(reason);
        }
        up.ready();
        loop {
            tokio::select! {
                message = self.rx.recv() => match message {
                    Some(m) => {
                        if let Err(e) = write_line(&stdin, &m).await {
                            group.stop(STOP_GRACE).await;
                            return Exit::Died(e.to_string());
                        }
                    }
                    None => {
                        group.stop(STOP_GRACE).await;
                        return Exit::Closed;
                    }
                },
                _ = &mut reader => {
                    let status = group.ended(STOP_GRACE).await;
                    return Exit::Died(format!("the process exited ({status})"));
                }
                _ = link_closed(closed) => {
                    group.stop(STOP_GRACE).await;
                    return Exit::Closed;
                }
            }
        }
    }
}

impl Process {
    /// Serves the egress listener the process handed over (`sandbox.network: egress`) for the
    /// session's agent; `None` when it has none.
    fn serve_egress(
        &self,
        entered: Option<&mut sandbox::Entered>,
    ) -> Result<Option<sandbox::EgressGuard>, String> {
        let Some(listener) = entered
            .map(sandbox::Entered::listener)
            .transpose()
            .map_err(|e| e.to_string())?
            .flatten()
        else {
            return Ok(None);
        };
        let max_connections = self
            .command
            .sandbox
            .as_ref()
            .map_or(sandbox::config::DEFAULT_EGRESS_MAX_CONNECTIONS, |s| {
                s.egress_max_connections
            });
        match &self.egress {
            Some(egress) => egress
                .serve(&self.router.server, listener, max_connections)
                .map(Some),
            None => Err("no egress proxy serves this session".to_owned()),
        }
    }

    /// Starts the process, in its sandbox unless it runs unsandboxed.
    /// Returns it, counted as running, with what its sandbox keeps (its own directory, its
    /// egress listener) when sandboxed, to be kept until it has ended.
    fn spawn(
        &self,
        secret_env: &[(String, Zeroizing<String>)],
    ) -> Result<(ProcessGroup, Running, Option<sandbox::Entered>), Spawn> {
        let c = &self.command;
        // Built before the fork: the child only enters it.
        let prepared = match &c.sandbox {
            Some(sandbox) => {
                // The program is found as the child's exec will: from its cwd and its PATH.
                let exec = sandbox::Exec {
                    program: &c.program,
                    cwd: c.cwd.as_deref(),
                    path: c
                        .env
                        .get("PATH")
                        .map(std::ffi::OsString::from)
                        .or_else(|| std::env::var_os("PATH")),
                };
                Some(sandbox.prepare(&exec).map_err(Spawn::Sandbox)?)
            }
            None => None,
        };
        let mut command = Command::new(&c.program);
        command
            .args(&c.args)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for key in ["PATH", "HOME", "LANG", "TMPDIR"] {
            if let Some(v) = std::env::var_os(key) {
                command.env(key, v);
            }
        }
        // A sandboxed server's HOME and TMPDIR are its process's own directory, unless `env`
        // says.
        let run = match prepared {
            Some(prepared) => Some(prepared.apply(&mut command)),
            None => {
                sandbox::harden(&mut command);
                None
            }
        };
        command.envs(&c.env);
        for (name, value) in secret_env {
            command.env(name, value.as_str());
        }
        // Last: no variable of the configuration overrides the proxy (refused at load too).
        if run.as_ref().is_some_and(sandbox::Entered::proxied) {
            command.envs(sandbox::proxy_env());
        }
        if let Some(dir) = &c.cwd {
            command.current_dir(dir);
        }
        // A group of its own (`sandbox::harden` and `Prepared::apply` make it its leader).
        let child = command.spawn().map_err(Spawn::Io)?;
        Ok((ProcessGroup::new(child), Running::count(), run))
    }
}

/// Why a process did not start.
enum Spawn {
    /// Its sandbox could not be built.
    Sandbox(sandbox::SandboxError),
    Io(std::io::Error),
}

/// Writes `message` as one line.
async fn write_line(stdin: &Mutex<ChildStdin>, message: &Value) -> Result<(), LinkError> {
    let mut line = serde_json::to_vec(message).unwrap_or_default();
    line.push(b'\n');
    let mut stdin = stdin.lock().await;
    let result = async {
        stdin.write_all(&line).await?;
        stdin.flush().await
    }
    .await;
    result.map_err(|e| LinkError::Http {
        server: String::new(),
        reason: format!("cannot write to the process: {e}"),
    })
}

/// Reads the server's messages until its stdout ends.
async fn read_stdout(router: Arc<Router>, mut out: impl AsyncBufRead + Unpin) {
    let mut line = Vec::new();
    loop {
        match read_line(&mut out, &mut line, MAX_LINE).await {
            Ok(Line::End) | Err(_) => return,
            Ok(Line::TooLong) => {
                tracing::warn!(server = %router.server, max = MAX_LINE, "MCP server wrote a line longer than Warden accepts; dropped");
            }
            Ok(Line::Complete) => {
                let text = line.trim_ascii();
                if text.is_empty() {
                    continue;
                }
                match serde_json::from_slice::<Value>(text) {
                    Ok(value) => router.dispatch(value, None).await,
                    Err(e) => {
                        tracing::info!(server = %router.server, error = %e, "MCP server wrote a line that is not JSON; dropped");
                    }
                }
            }
        }
    }
}

/// Logs the server's stderr, line by line, bounded, its `secret_env` values (`echo`) redacted:
/// a server that prints its configuration, or quotes its token in an error, must not put the
/// secret in Warden's log.
async fn log_stderr(server: Arc<str>, echo: Arc<Echo>, mut err: impl AsyncBufRead + Unpin) {
    let mut line = Vec::new();
    while let Ok(read @ (Line::Complete | Line::TooLong)) =
        read_line(&mut err, &mut line, MAX_LOG_LINE).await
    {
        let text = stderr_text(&echo, &line, read == Line::TooLong);
        let text = text.trim_end();
        if !text.is_empty() {
            tracing::info!(server = %server, line = %bounded(text, MAX_LOG_LINE), "MCP server stderr");
        }
    }
}

/// A line of the server's stderr as it may be logged: every form of `echo` replaced, and, of a
/// line `cut` at the bound, the bytes at its end that could begin one left out as well (the
/// rest of that secret was never read).
fn stderr_text(echo: &Echo, line: &[u8], cut: bool) -> String {
    let kept = match cut {
        true => line.len() - echo.partial(line),
        false => line.len(),
    };
    let mut out = Vec::with_capacity(kept);
    echo.replace(&line[..kept], &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// What [`read_line`] read.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// A line (without its `\n`) is in the buffer.
    Complete,
    /// The line was longer than the cap: the buffer holds its first `max` bytes, the rest
    /// was skipped.
    TooLong,
    /// The stream ended (a last unterminated line is dropped).
    End,
}

/// Reads one `\n`-terminated line into `buf`, keeping at most `max` bytes of it.
async fn read_line(
    reader: &mut (impl AsyncBufRead + Unpin),
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Line> {
    buf.clear();
    let mut too_long = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(Line::End);
        }
        let (chunk, done) = match memchr::memchr(b'\n', available) {
            Some(i) => (&available[..i], Some(i + 1)),
            None => (available, None),
        };
        let room = max.saturating_sub(buf.len());
        if chunk.len() > room {
            too_long = true;
        }
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = done.unwrap_or(available.len());
        reader.consume(used);
        if done.is_some() {
            return Ok(if too_long {
                Line::TooLong
            } else {
                Line::Complete
            });
        }
    }
}

/// What a process could quote back of its `secret_env` values, built as an injected
/// credential's echo is (`secrets/injection.rs`): each value and its base64 forms, found however
/// JSON, a URL or HTML spells them; none shorter than [`MIN_ECHO`].
fn echoed(secret_env: &[(String, Zeroizing<String>)]) -> Arc<Echo> {
    let values: Vec<Zeroizing<String>> = secret_env.iter().map(|(_, v)| v.clone()).collect();
    let encodings: Vec<Zeroizing<String>> = values
        .iter()
        .filter(|v| v.len() >= MIN_ECHO)
        .flat_map(|v| base64_forms(v.as_bytes()))
        .collect();
    Arc::new(Echo::of_secret(values, encodings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_env_value_echoed_in_base64_is_redacted() {
        use base64::Engine as _;
        let secret = "fsSecretValue-9911-zzTop";
        let echo = echoed(&[("FS_SECRET".into(), Zeroizing::new(secret.into()))]);
        let b64 = base64::engine::general_purpose::STANDARD.encode(secret);
        let unpadded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
        let mut message = serde_json::json!({"content": [
            {"type": "text", "text": format!("plain={secret}")},
            {"type": "text", "text": format!("b64={b64}")},
            {"type": "text", "text": format!("url={unpadded}")},
        ]});
        let redacted = crate::secrets::redact::redact_json(&mut message, &echo);
        assert!(redacted >= 3, "{message}");
        let text = message.to_string();
        assert!(!text.contains(secret) && !text.contains(&b64), "{text}");
        assert!(!text.contains(&unpadded), "{text}");
        // A value too short to redact safely is left out rather than redacting noise.
        assert!(echoed(&[("K".into(), Zeroizing::new("abc".into()))]).is_empty());
    }

    #[test]
    fn a_secret_env_value_on_stderr_is_redacted_before_it_is_logged() {
        use base64::Engine as _;
        let secret = "ghp_stderrSecret-4242-xyz";
        let echo = echoed(&[("GITHUB_TOKEN".into(), Zeroizing::new(secret.into()))]);
        let b64 = base64::engine::general_purpose::STANDARD.encode(secret);
        let line = format!(
            "auth failed: token {secret} (env dump: {b64}) \\u0067hp_stderrSecret-4242-xyz"
        );
        let logged = stderr_text(&echo, line.as_bytes(), false);
        assert!(
            !logged.contains(secret) && !logged.contains(&b64),
            "{logged}"
        );
        assert!(
            logged.starts_with("auth failed: token [REDACTED]"),
            "{logged}"
        );
        // A line cut at the bound in the middle of the secret keeps none of its start.
        let cut = format!("token={}", &secret[..12]);
        let logged = stderr_text(&echo, cut.as_bytes(), true);
        assert_eq!(logged, "token=");
        // Without secrets, the line is logged as written.
        let none = echoed(&[]);
        assert_eq!(
            stderr_text(&none, b"listening on stdio", false),
            "listening on stdio"
        );
    }

    #[tokio::test]
    async fn lines_are_read_whole_and_long_ones_cut() {
        let input: &[u8] = b"{\"a\":1}\nabcdefghij\nlast-unterminated";
        let mut reader = BufReader::with_capacity(4, input);
        let mut buf = Vec::new();
        assert_eq!(
            read_line(&mut reader, &mut buf, 100).await.unwrap(),
            Line::Complete
        );
        assert_eq!(buf, b"{\"a\":1}");
        assert_eq!(
            read_line(&mut reader, &mut buf, 5).await.unwrap(),
            Line::TooLong
        );
        assert_eq!(buf, b"abcde");
        assert_eq!(
            read_line(&mut reader, &mut buf, 100).await.unwrap(),
            Line::End
        );
    }
}
