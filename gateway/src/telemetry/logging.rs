//! Process logs: `tracing` to stdout, JSON or text, written off the request path. When stdout
//! cannot keep up, lines are dropped rather than stalling requests; the audit log is the record.
//! Text is coloured only on a terminal (and never with `NO_COLOR` set), so files and log
//! collectors get plain lines.

use std::io::IsTerminal;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Lines waiting for stdout before new ones are dropped. The queue's slots are allocated (and
/// touched) up front: tracing-appender's default of 128,000 lines held 4 MiB of resident memory
/// for a process that logs a few lines a minute without the access log. 8,192 lines absorb a
/// stalled stdout for about half a second of access log at 16k requests/s.
const BUFFERED_LINES: usize = 8192;

/// Installs the global subscriber. Keep the guard alive until exit so buffered lines flush.
pub fn init(cfg: &LogConfig) -> WorkerGuard {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(BUFFERED_LINES)
        .finish(std::io::stdout());
    let colour = colour(
        std::io::stdout().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(colour)
        .with_target(false);
    let result = match cfg.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    if let Err(e) = result {
        eprintln!("warden: logging was already initialised: {e}");
    }
    guard
}

/// Whether text lines get colour codes: only on a terminal, and not when `NO_COLOR` is set to
/// anything but the empty string (<https://no-color.org>).
fn colour(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(colour(true, Some(OsStr::new(""))));
        assert!(!colour(true, Some(OsStr::new("1"))));
        assert!(!colour(false, None), "a pipe or a file gets plain text");
    }
}
