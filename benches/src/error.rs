//! What can go wrong while setting up or running a measurement.

use std::path::PathBuf;
use std::time::Duration;

/// A harness failure, saying what failed and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A binary the harness starts is not there.
    #[error("{what} not found at {path}: {hint}")]
    MissingBinary {
        what: &'static str,
        path: PathBuf,
        hint: &'static str,
    },
    /// A child process could not be started.
    #[error("could not start {what} ({path}): {source}")]
    Spawn {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A child process exited before it became ready.
    #[error("{what} exited during start-up ({status}); its output: {output}")]
    ExitedEarly {
        what: &'static str,
        status: String,
        output: String,
    },
    /// A child process did not become ready in time.
    #[error("{what} was not ready at {addr} after {waited:?}; its output: {output}")]
    NotReady {
        what: &'static str,
        addr: String,
        waited: Duration,
        output: String,
    },
    /// A command the harness runs (e.g. `warden token issue`) failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    CommandFailed {
        command: String,
        status: String,
        stderr: String,
    },
    /// The target answered the probe request with something other than the upstream's reply.
    #[error(
        "{target} did not pass the request through to the upstream: HTTP {status}, body {body}"
    )]
    BadProbe {
        target: String,
        status: u16,
        body: String,
    },
    /// Every request of a run failed.
    #[error("{target}: no request succeeded ({errors} errors); first error: {first}")]
    NoSuccess {
        target: String,
        errors: u64,
        first: String,
    },
    /// Filesystem or socket trouble in the harness itself.
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

impl HarnessError {
    /// Wraps an I/O error with what the harness was doing.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> HarnessError {
        let context = context.into();
        move |source| HarnessError::Io { context, source }
    }
}
