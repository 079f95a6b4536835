//! One dispatch point over the destinations: a batch goes in, the destination's verdict on
//! each record comes out (delivered, to be tried again, or rejected for good).

use super::elastic::ElasticSink;
use super::splunk::SplunkSink;
use super::spool::Entry;
use super::syslog::SyslogSink;
use super::verdict::{SendError, Verdict};

/// A destination, ready to send.
pub enum Sink {
    Splunk(Box<SplunkSink>),
    Elastic(Box<ElasticSink>),
    Syslog(Box<SyslogSink>),
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
