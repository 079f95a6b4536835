//! The command line's own output. SIGPIPE stays ignored, as Rust leaves it, so that a write to
//! a socket or pipe whose peer has gone is an error that says what failed (a PostgreSQL state
//! store closing its Unix socket mid-write) rather than a silent death by signal. Only when
//! the reader of the command's stdout or stderr has gone (`warden policy test policies | head`)
//! does the command end as Unix tools do there: by SIGPIPE (exit status 141 in a shell), saying
//! nothing, instead of panicking in `println!` or reporting the pipe as its error.
//!
//! `main.rs` routes `print!`, `println!`, `eprint!` and `eprintln!` here; code that writes to
//! stdout with `write!` takes it from [`stdout`].

use std::fmt;
use std::io::{self, Write};

/// `print!`: `args` to stdout.
pub fn print(args: fmt::Arguments<'_>) {
    if let Err(e) = io::stdout().lock().write_fmt(args) {
        failed("stdout", e);
    }
}

/// `eprint!`: `args` to stderr.
pub fn eprint(args: fmt::Arguments<'_>) {
    if let Err(e) = io::stderr().lock().write_fmt(args) {
        failed("stderr", e);
    }
}

/// Stdout for `write!`: a reader that has gone ends the command as [`print`] does.
pub fn stdout() -> Stdout {
    Stdout(io::stdout().lock())
}

/// See [`stdout`].
pub struct Stdout(io::StdoutLock<'static>);

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf).map_err(reader_gone_or)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush().map_err(reader_gone_or)
    }
}

/// A write to the command's own output failed: quietly ends the command when the reader has
/// gone; otherwise fails as std's `print!` does.
fn failed(stream: &str, e: io::Error) -> ! {
    let e = reader_gone_or(e);
    panic!("failed printing to {stream}: {e}");
}

/// `e`, unless it says the reader has gone: then the process ends by SIGPIPE.
fn reader_gone_or(e: io::Error) -> io::Error {
    if e.kind() != io::ErrorKind::BrokenPipe {
        return e;
    }
    // SAFETY: restores SIGPIPE's default disposition and raises it in this thread, which ends
    // the process; no handler runs Rust code.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::raise(libc::SIGPIPE);
    }
    // Not reached unless the signal is blocked in this thread: the same status a shell shows.
    std::process::exit(128 + libc::SIGPIPE)
}
