//! One dispatch point over the destinations: a batch goes in, the destination's verdict on
//! each record comes out (delivered, to be tried again, or rejected for good). A batch a
//! destination refuses as a whole for what one record holds (HTTP 413, a data error) is sent
//! in halves until the record is alone, and only that record is rejected.

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
        let sent = match self {
            Sink::Splunk(s) => s.send(batch).await,
            Sink::Elastic(s) => s.send(batch).await,
            Sink::Syslog(s) => s.send(batch).await,
        };
        match sent {
            Err(SendError::Rejected(why)) if batch.len() > 1 => self.split(batch, why).await,
            other => other,
        }
    }

    /// `batch` (two records or more), refused as a whole for what a record in it holds,
    /// sent again in two halves. Once the first half is taken, a second half that fails is
    /// to be sent again on its own (the first is not sent twice).
    async fn split(&mut self, batch: &[&Entry], why: String) -> Result<Verdict, SendError> {
        tracing::info!(events = batch.len(), first_seq = batch.first().map(|e| e.seq), reason = %why,
            "the SIEM refused a batch as a whole; sending it in halves to find the records it refuses");
        let (first, second) = batch.split_at(batch.len() / 2);
        let mut verdict = match Box::pin(self.send(first)).await {
            Err(SendError::Rejected(why)) => rejected_all(first.len(), &why),
            other => other?,
        };
        let rest = match Box::pin(self.send(second)).await {
            Ok(v) => v,
            Err(SendError::Rejected(why)) => rejected_all(second.len(), &why),
            Err(e) => {
                tracing::warn!(error = %e, events = second.len(),
                    first_seq = second.first().map(|e| e.seq),
                    "the second half of a batch the SIEM refused as a whole was not delivered");
                Verdict {
                    retry: (0..second.len()).collect(),
                    rejected: Vec::new(),
                }
            }
        };
        let offset = first.len();
        verdict.retry.extend(rest.retry.iter().map(|i| i + offset));
        verdict
            .rejected
            .extend(rest.rejected.into_iter().map(|(i, why)| (i + offset, why)));
        Ok(verdict)
    }
}

/// Every one of `len` records rejected for `why`.
fn rejected_all(len: usize, why: &str) -> Verdict {
    Verdict {
        retry: Vec::new(),
        rejected: (0..len).map(|i| (i, why.to_owned())).collect(),
    }
}
