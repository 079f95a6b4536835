//! One dispatch point over the destinations: a batch goes in, the destination's verdict on
//! each record comes out (delivered, to be tried again, or rejected for good).

use super::elastic::ElasticSink;
use super::splunk::SplunkSink;
use super::spool::Entry;
use super::syslog::SyslogSink;

/// A destination, ready to send.
pub enum Sink {
    Splunk(Box<SplunkSink>),
    Elastic(Box<ElasticSink>),
    Syslog(Box<SyslogSink>),
}

/// What the destination said about a batch it answered.
#[derive(Debug, Default, PartialEq)]
pub struct Verdict {
    /// Indexes (into the batch) of records to send again: the destination could not take
    /// them now (busy, a shard unavailable).
    pub retry: Vec<usize>,
    /// Indexes of records rejected for good, with the destination's reason.
    pub rejected: Vec<(usize, String)>,
}

impl Verdict {
    /// Every record delivered.
    pub fn delivered() -> Verdict {
        Verdict::default()
    }
}

/// Why a batch was not delivered as a whole.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Worth trying again later: the destination is down, busy, slow, or refused the
    /// credential (an operator may fix it).
    #[error("{0}")]
    Retry(String),
    /// The destination rejected the batch for good (its data, not its delivery): dead-letter
    /// it.
    #[error("{0}")]
    Rejected(String),
}

impl Sink {
    /// Sends `batch`; `Ok` once the destination acknowledged it (with per-record verdicts).
    pub async fn send(&mut self, batch: &[&Entry]) -> Result<Verdict, SendError> {
        match self {
            Sink::Splunk(s) => s.send(batch).await,
            Sink::Elastic(s) => s.send(batch).await,
            Sink::Syslog(s) => s.send(batch).await,
        }
    }
}
