//! What a destination said about a batch: delivered, to be sent again, rejected for good.

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
    /// The destination rejected the batch for good for its data, not its delivery (too
    /// large, malformed): `Sink::send` sends it again in halves, so that only the records it
    /// refuses on their own are dead-lettered, not their neighbours.
    #[error("{0}")]
    Rejected(String),
}
