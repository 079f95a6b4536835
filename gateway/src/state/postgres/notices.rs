//! The pool's connections, each driven by a task that logs what the server says besides
//! answers. `tokio-postgres` logs a server's NOTICE at INFO by itself, so every start printed
//! `relation "warden_schema" already exists, skipping` (the migration's `CREATE TABLE IF NOT
//! EXISTS`) as if a migration had gone wrong. Here a notice is logged at DEBUG, a WARNING at
//! WARN, and the known "already exists, skipping" not at all.

use std::future::Future;
use std::pin::Pin;

use deadpool_postgres::Connect;
use tokio::task::JoinHandle;
use tokio_postgres::error::{Severity, SqlState};
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{AsyncMessage, Client, Config, Error, Socket};

use crate::state::error::Causes;

/// How a server notice is logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NoticeLevel {
    /// Not at all: what Warden's own statements are known to cause.
    Quiet,
    Debug,
    Warn,
}

/// How to log a notice of `severity` (the server's unlocalised one; none before PostgreSQL 9.6)
/// and `code`.
pub(super) fn notice_level(severity: Option<Severity>, code: &SqlState) -> NoticeLevel {
    // `CREATE TABLE/INDEX IF NOT EXISTS` on what exists: "… already exists, skipping".
    if *code == SqlState::DUPLICATE_TABLE || *code == SqlState::DUPLICATE_OBJECT {
        return NoticeLevel::Quiet;
    }
    if severity == Some(Severity::Warning) {
        NoticeLevel::Warn
    } else {
        NoticeLevel::Debug
    }
}

/// Connects as `deadpool-postgres` does, driving the connection with [`notice_level`]'s logs.
pub(super) struct LoggingConnect<T> {
    pub(super) tls: T,
}

type Connected<'a> =
    Pin<Box<dyn Future<Output = Result<(Client, JoinHandle<()>), Error>> + Send + 'a>>;

impl<T> Connect for LoggingConnect<T>
where
    T: MakeTlsConnect<Socket> + Clone + Sync + Send + 'static,
    T::Stream: Sync + Send,
    T::TlsConnect: Sync + Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    fn connect(&self, pg_config: &Config) -> Connected<'_> {
        let tls = self.tls.clone();
        let pg_config = pg_config.clone();
        Box::pin(async move {
            let (client, mut connection) = pg_config.connect(tls).await?;
            let task = tokio::spawn(async move {
                while let Some(message) =
                    std::future::poll_fn(|cx| connection.poll_message(cx)).await
                {
                    match message {
                        Ok(AsyncMessage::Notice(notice)) => {
                            let (severity, code) = (notice.severity(), notice.code().code());
                            let message = notice.message();
                            match notice_level(notice.parsed_severity(), notice.code()) {
                                NoticeLevel::Quiet => {}
                                NoticeLevel::Debug => {
                                    tracing::debug!(severity, code, "PostgreSQL: {message}");
                                }
                                NoticeLevel::Warn => {
                                    tracing::warn!(severity, code, "PostgreSQL: {message}");
                                }
                            }
                        }
                        Ok(_) => {}
                        Err(error) => {
                            tracing::warn!(error = %Causes(&error), "a state store connection failed");
                            break;
                        }
                    }
                }
            });
            Ok((client, task))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_are_debug_warnings_warn_and_already_exists_skipping_is_quiet() {
        // `relation "warden_schema" already exists, skipping`, at every start.
        assert_eq!(
            notice_level(Some(Severity::Notice), &SqlState::DUPLICATE_TABLE),
            NoticeLevel::Quiet
        );
        assert_eq!(
            notice_level(Some(Severity::Notice), &SqlState::DUPLICATE_OBJECT),
            NoticeLevel::Quiet
        );
        // Any other notice is detail: `table "x" does not exist, skipping` of a DROP IF EXISTS.
        assert_eq!(
            notice_level(Some(Severity::Notice), &SqlState::UNDEFINED_TABLE),
            NoticeLevel::Debug
        );
        assert_eq!(
            notice_level(Some(Severity::Info), &SqlState::SUCCESSFUL_COMPLETION),
            NoticeLevel::Debug
        );
        assert_eq!(
            notice_level(
                Some(Severity::Warning),
                &SqlState::WARNING_DEPRECATED_FEATURE
            ),
            NoticeLevel::Warn
        );
        // A server that does not send the unlocalised severity: never louder than DEBUG.
        assert_eq!(
            notice_level(None, &SqlState::WARNING_DEPRECATED_FEATURE),
            NoticeLevel::Debug
        );
    }
}
