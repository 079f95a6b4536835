//! Where things are: the repository, the `warden` binary, the IdP, the Python venv.

use std::path::{Path, PathBuf};

/// The repository root (parent of `tests/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// The `tests/` directory.
pub fn tests_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `warden` binary: `$WARDEN_BIN`, else `warden` in the target directory this test
/// executable was built into (`<target>/debug/deps/<test>` → `<target>/debug/warden`).
pub fn warden_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("WARDEN_BIN") {
        return PathBuf::from(bin);
    }
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(3) {
            let candidate = dir.join("warden");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    repo_root().join("target/debug/warden")
}

/// The Python interpreter of `tests/.venv` (made by `tests/run`).
pub fn venv_python() -> PathBuf {
    tests_dir().join(".venv/bin/python")
}

/// `tests/idp/server.mjs`.
pub fn idp_server() -> PathBuf {
    tests_dir().join("idp/server.mjs")
}

/// `tests/sdk/<script>`.
pub fn sdk_script(script: &str) -> PathBuf {
    tests_dir().join("sdk").join(script)
}

/// `tests/openclaw`: the npm project holding OpenClaw and the Node it runs on (`tests/run`
/// installs it).
pub fn openclaw_dir() -> PathBuf {
    tests_dir().join("openclaw")
}
