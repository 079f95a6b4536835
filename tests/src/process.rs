//! Child processes whose output is kept for failure reports, killed when dropped.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A running child whose stdout and stderr lines are collected; killed on drop.
#[derive(Debug)]
pub struct Proc {
    /// Short name used in failure output.
    pub name: String,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    stdout_lines: mpsc::UnboundedReceiver<String>,
    readers: Vec<JoinHandle<()>>,
}

impl Proc {
    /// Spawns `cmd` with piped output.
    pub fn spawn(name: &str, mut cmd: Command) -> anyhow::Result<Proc> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start {name}: {e}"))?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, stdout_lines) = mpsc::unbounded_channel();
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(collect(out, "out", log.clone(), Some(tx)));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(collect(err, "err", log.clone(), None));
        }
        Ok(Proc {
            name: name.to_owned(),
            child,
            log,
            stdout_lines,
            readers,
        })
    }

    /// The next stdout line, or `None` once stdout closed.
    pub async fn next_stdout_line(&mut self) -> Option<String> {
        self.stdout_lines.recv().await
    }

    /// OS process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Everything the process printed so far, each line tagged `out`/`err`.
    pub fn output(&self) -> String {
        self.log.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    /// The exit status if the process has exited.
    pub fn try_exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits for the process to exit and for its last output lines to be collected.
    pub async fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        let status = self.child.wait().await?;
        for reader in self.readers.drain(..) {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), reader).await;
        }
        Ok(status)
    }

    /// Sends `signal` (e.g. `libc::SIGHUP`).
    pub fn signal(&self, signal: i32) -> anyhow::Result<()> {
        let pid = self
            .pid()
            .ok_or_else(|| anyhow::anyhow!("{} has already exited", self.name))?;
        let pid = i32::try_from(pid)?;
        // SAFETY: kill(2) with a pid we spawned and still own; no memory is touched.
        let rc = unsafe { libc::kill(pid, signal) };
        if rc != 0 {
            anyhow::bail!(
                "kill({pid}, {signal}) failed: {}",
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    }

    /// Kills the process and waits for it.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        if std::thread::panicking() {
            eprintln!(
                "----- output of {} -----\n{}\n----- end of {} -----",
                self.name,
                self.output(),
                self.name
            );
        }
    }
}

fn collect(
    stream: impl AsyncRead + Unpin + Send + 'static,
    tag: &'static str,
    log: Arc<Mutex<Vec<String>>>,
    lines_tx: Option<mpsc::UnboundedSender<String>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(mut l) = log.lock() {
                l.push(format!("[{tag}] {line}"));
            }
            if let Some(tx) = &lines_tx {
                let _ = tx.send(line);
            }
        }
    })
}
