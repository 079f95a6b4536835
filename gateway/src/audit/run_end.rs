//! How the log's last run ended. A Warden that stops cleanly appends its `stop` record (a
//! signed log, a checkpoint after it); a last run without one is still being written, was
//! killed, or was cut back to a record before its end, such as one of its checkpoints.

use serde::Deserialize;

use super::event::{AuditEvent, EventKind};
use super::record::ChainKind;

/// The end of the log's last run, as its records (and the directory's lock) tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LastRun {
    /// It ended with its `stop` record, at this seq; only checkpoints follow it.
    Stopped {
        /// The stop record's seq.
        stop: u64,
    },
    /// A Warden holds the log's lock: the run is still being written.
    Live,
    /// No stop record ends it. It began at its `start` record (`None`: the log holds none).
    Open {
        /// The last run's start record, if the log holds one.
        start: Option<u64>,
    },
}

/// Follows `start` and `stop` records along the chain.
#[derive(Debug, Default)]
pub struct Runs {
    start: Option<u64>,
    stop: Option<u64>,
}

impl Runs {
    /// A record at `seq` of top-level `kind` went by: a `system` one is read for its event.
    pub fn record(&mut self, seq: u64, kind: ChainKind, line: &[u8]) {
        match kind {
            ChainKind::Checkpoint => {}
            ChainKind::System => match Boundary::of(line) {
                Some(Boundary::Start) => {
                    self.start = Some(seq);
                    self.stop = None;
                }
                Some(Boundary::Stop) => self.stop = Some(seq),
                None => self.stop = None,
            },
            ChainKind::Retention | ChainKind::Other => self.stop = None,
        }
    }

    /// How the last run ended; `live` when a Warden holds the log.
    pub fn last(&self, live: bool) -> LastRun {
        match (live, self.stop) {
            (true, _) => LastRun::Live,
            (false, Some(stop)) => LastRun::Stopped { stop },
            (false, None) => LastRun::Open { start: self.start },
        }
    }
}

/// A `system` record that begins or ends a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boundary {
    /// `{"event":"start"}`: a Warden started writing.
    Start,
    /// `{"event":"stop"}`: it stopped cleanly; its last record (but a checkpoint).
    Stop,
}

#[derive(Deserialize)]
struct System<'a> {
    #[serde(default, borrow)]
    detail: Option<Detail<'a>>,
}

#[derive(Deserialize)]
struct Detail<'a> {
    #[serde(default, borrow)]
    event: Option<&'a str>,
}

impl Boundary {
    /// The boundary a `system` record's line marks, if it marks one.
    pub fn of(line: &[u8]) -> Option<Boundary> {
        let system: System = serde_json::from_slice(line).ok()?;
        Boundary::named(system.detail?.event?)
    }

    /// The boundary `event` marks, before it is written: a `system` record whose
    /// `detail.event` names one.
    pub fn of_event(event: &AuditEvent) -> Option<Boundary> {
        if event.kind != EventKind::System {
            return None;
        }
        Boundary::named(event.detail.as_ref()?.get("event")?.as_str()?)
    }

    /// The boundary a `system` record's `detail.event` names, if it names one.
    pub fn named(event: &str) -> Option<Boundary> {
        match event {
            "start" => Some(Boundary::Start),
            "stop" => Some(Boundary::Stop),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(records: &[(ChainKind, &str)]) -> LastRun {
        let mut runs = Runs::default();
        for (i, (kind, line)) in records.iter().enumerate() {
            runs.record(i as u64 + 1, *kind, line.as_bytes());
        }
        runs.last(false)
    }

    const START: (ChainKind, &str) = (ChainKind::System, r#"{"detail":{"event":"start"}}"#);
    const STOP: (ChainKind, &str) = (ChainKind::System, r#"{"detail":{"event":"stop"}}"#);
    const CHECKPOINT: (ChainKind, &str) = (ChainKind::Checkpoint, "{}");
    const DECISION: (ChainKind, &str) = (ChainKind::Other, r#"{"detail":{"event":"stop"}}"#);

    #[test]
    fn a_run_ends_with_its_stop_record_and_the_closing_checkpoint() {
        assert_eq!(
            runs(&[START, DECISION, STOP, CHECKPOINT]),
            LastRun::Stopped { stop: 3 }
        );
        assert_eq!(runs(&[START, DECISION, STOP]), LastRun::Stopped { stop: 3 });
    }

    #[test]
    fn a_run_cut_back_to_a_checkpoint_before_its_stop_is_open() {
        assert_eq!(
            runs(&[START, STOP, START, DECISION, CHECKPOINT]),
            LastRun::Open { start: Some(3) }
        );
        // A `kind` other than system never ends a run, whatever its detail says.
        assert_eq!(runs(&[START, DECISION]), LastRun::Open { start: Some(1) });
        assert_eq!(runs(&[DECISION, CHECKPOINT]), LastRun::Open { start: None });
        // Records after a stop without a start: not a clean end either.
        assert_eq!(
            runs(&[START, STOP, DECISION, CHECKPOINT]),
            LastRun::Open { start: Some(1) }
        );
    }

    #[test]
    fn a_log_a_warden_holds_is_live_whatever_it_ends_with() {
        let mut runs = Runs::default();
        runs.record(1, START.0, START.1.as_bytes());
        assert_eq!(runs.last(true), LastRun::Live);
    }
}
