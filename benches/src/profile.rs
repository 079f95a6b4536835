//! Optional CPU profile of a proxy during the measured window, with `perf` when it is
//! installed: a sampled call graph and a flat report of where the CPU time went.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::HarnessError;

/// Where one target's profile goes.
#[derive(Debug, Clone)]
pub struct ProfileFiles {
    /// `perf record` output.
    pub data: PathBuf,
    /// `perf report` flat text: top symbols by self time.
    pub report: PathBuf,
}

impl ProfileFiles {
    /// `<dir>/<target>.perf.data` and `<dir>/<target>.perf.txt`.
    pub fn new(dir: &Path, target: &str) -> ProfileFiles {
        ProfileFiles {
            data: dir.join(format!("{target}.perf.data")),
            report: dir.join(format!("{target}.perf.txt")),
        }
    }
}

/// Samples `pids` (999 Hz, call graphs) for `duration`, then writes the flat report.
pub async fn record(
    pids: &[u32],
    duration: Duration,
    files: &ProfileFiles,
) -> Result<(), HarnessError> {
    let pid_list = pids
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let seconds = format!("{:.3}", duration.as_secs_f64());
    let record = tokio::process::Command::new("perf")
        .args(["record", "-q", "-F", "999", "-g", "-p", &pid_list, "-o"])
        .arg(&files.data)
        .args(["--", "sleep", &seconds])
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|source| HarnessError::Spawn {
            what: "perf record",
            path: PathBuf::from("perf"),
            source,
        })?;
    check("perf record", &record)?;
    let report = tokio::process::Command::new("perf")
        .args([
            "report",
            "--stdio",
            "--no-children",
            "-g",
            "none",
            "--sort",
            "dso,symbol",
            "--percent-limit",
            "0.5",
            "-i",
        ])
        .arg(&files.data)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|source| HarnessError::Spawn {
            what: "perf report",
            path: PathBuf::from("perf"),
            source,
        })?;
    check("perf report", &report)?;
    std::fs::write(&files.report, &report.stdout).map_err(HarnessError::io(format!(
        "writing {}",
        files.report.display()
    )))
}

fn check(command: &str, output: &std::process::Output) -> Result<(), HarnessError> {
    if output.status.success() {
        Ok(())
    } else {
        Err(HarnessError::CommandFailed {
            command: command.into(),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}
