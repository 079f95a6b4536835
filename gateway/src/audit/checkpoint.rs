//! Signed checkpoints: every `audit.signing.checkpoint_records` records or
//! `checkpoint_interval`, right after a run's `start` record (in the same write), at each
//! segment's end and at shutdown, the writer appends a
//! `checkpoint` record whose Ed25519 signature covers the chain up to the record before it:
//!
//! ```json
//! {"seq":1001,"prev":"<hash of 1000>","time":"…","kind":"checkpoint","principal":{},
//!  "detail":{"from":1,"to":1000,"hash":"<hash of 1000>","key_id":"…","signature":"…"}}
//! ```
//!
//! Whoever rewrites the files can recompute every hash, but not the signature: a record
//! edited under a checkpoint no longer chains to the hash it signed, and records after the
//! last checkpoint are reported as unsigned. A checkpoint covers `from..=to`, the records
//! this writer appended since its previous checkpoint: records a killed writer left unsigned
//! stay unsigned (a restarted writer does not sign what it did not write).
//!
//! A running writer signs at least every `checkpoint_interval`, idle or not: when nothing was
//! written since its last checkpoint for an interval, it appends a *heartbeat*, a checkpoint
//! covering that previous checkpoint alone (`from` = `to` = its seq). So on a live log the
//! last signature is never older than the interval (plus a commit), and a log cut back to an
//! old checkpoint shows by the age of its last signature (`verify`'s `--live-window`). Since
//! a run's start record is signed at once, heartbeats begin with the run, and a live log's
//! unsigned start record is not a running Warden's.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use super::event::{AuditEvent, EventKind, Timestamp};
use super::record::{Hash, HexHash, to_hex};
use super::signer::Signer;

/// What a checkpoint record's `detail` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// First seq it covers.
    pub from: u64,
    /// Last seq it covers: the record right before the checkpoint.
    pub to: u64,
    /// Hash of record `to`'s line.
    pub hash: HexHash,
    /// The signing key's id (RFC 7638 thumbprint).
    pub key_id: String,
    /// base64url (no padding) Ed25519 signature of [`message`].
    pub signature: String,
}

/// The signed text: `warden-audit-checkpoint/v1 from=F to=T hash=<hex> time=<rfc3339>`.
pub fn message(from: u64, to: u64, hash: &Hash, time: &Timestamp) -> String {
    format!(
        "warden-audit-checkpoint/v1 from={from} to={to} hash={} time={time}",
        to_hex(hash)
    )
}

impl Checkpoint {
    /// The checkpoint record covering `from..=to`, where record `to` hashes to `hash`.
    pub fn event(signer: &Signer, from: u64, to: u64, hash: &Hash) -> AuditEvent {
        let mut event = AuditEvent::now(EventKind::Checkpoint);
        let signature = signer.sign(message(from, to, hash, &event.time).as_bytes());
        let checkpoint = Checkpoint {
            from,
            to,
            hash: HexHash(*hash),
            key_id: signer.key_id().to_owned(),
            signature: URL_SAFE_NO_PAD.encode(signature),
        };
        event.detail = serde_json::to_value(checkpoint).ok();
        event
    }

    /// The checkpoint of a record of kind `checkpoint`.
    pub fn of(event: &AuditEvent) -> Result<Checkpoint, CheckpointProblem> {
        let detail = event
            .detail
            .clone()
            .ok_or_else(|| CheckpointProblem::Malformed("no detail".to_owned()))?;
        serde_json::from_value(detail).map_err(|e| CheckpointProblem::Malformed(e.to_string()))
    }

    /// Checks the checkpoint at `seq`, whose record's `prev` is `prev`, written at `time`:
    /// it covers the record right before it, names that record's hash, and (when `keys` has
    /// any) its signature verifies with the key it names.
    pub fn check(
        &self,
        seq: u64,
        prev: &Hash,
        time: &Timestamp,
        keys: &Keys,
    ) -> Result<(), CheckpointProblem> {
        if self.to.checked_add(1) != Some(seq) || self.from > self.to {
            return Err(CheckpointProblem::Malformed(format!(
                "it covers seq {} to {} but stands at seq {seq}; a checkpoint covers up to the \
                 record right before it",
                self.from, self.to
            )));
        }
        if self.hash.0 != *prev {
            return Err(CheckpointProblem::Rewritten {
                from: self.from,
                to: self.to,
            });
        }
        if keys.is_empty() {
            return Ok(());
        }
        let key = keys
            .get(&self.key_id)
            .ok_or_else(|| CheckpointProblem::UnknownKey(self.key_id.clone()))?;
        let signature = URL_SAFE_NO_PAD
            .decode(&self.signature)
            .ok()
            .and_then(|s| <[u8; 64]>::try_from(s).ok())
            .ok_or_else(|| {
                CheckpointProblem::Malformed("signature is not 64 bytes of base64url".to_owned())
            })?;
        key.verify_strict(
            message(self.from, self.to, &self.hash.0, time).as_bytes(),
            &Signature::from_bytes(&signature),
        )
        .map_err(|_| CheckpointProblem::BadSignature(self.key_id.clone()))
    }
}

/// Why a checkpoint does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointProblem {
    /// The records it covers were rewritten: its signed hash is not the chain's.
    Rewritten { from: u64, to: u64 },
    /// Its signature does not verify with the key it names.
    BadSignature(String),
    /// It names a key that is not among the trusted ones.
    UnknownKey(String),
    /// It is signed by a key the log had moved off: a newer key signed checkpoints before it.
    RetiredKey(Box<RetiredSigner>),
    /// It is not a checkpoint record as Warden writes them.
    Malformed(String),
}

impl std::fmt::Display for CheckpointProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckpointProblem::Rewritten { from, to } => write!(
                f,
                "records seq {from} to {to} were rewritten: the hash this signed checkpoint \
                 covers them with is not the chain's (a record among them was edited, added or \
                 removed, and the hashes after it recomputed)"
            ),
            CheckpointProblem::BadSignature(kid) => write!(
                f,
                "forged checkpoint: its signature does not verify with key {kid}"
            ),
            CheckpointProblem::UnknownKey(kid) => write!(
                f,
                "checkpoint signed by key {kid}, which is not among the keys given (--key, \
                 --jwks): a replaced checkpoint, or the wrong key given"
            ),
            CheckpointProblem::RetiredKey(retired) => {
                let RetiredSigner { kid, newer, since } = &**retired;
                write!(
                    f,
                    "checkpoint signed by key {kid}, which this log had retired: key {newer} signs \
                 its checkpoints from seq {since} on, and a rotation is never undone (whoever \
                 holds the retired key could have written this)"
                )
            }
            CheckpointProblem::Malformed(reason) => write!(f, "malformed checkpoint: {reason}"),
        }
    }
}

/// A checkpoint's key that the log had retired, and the key that took over from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetiredSigner {
    /// The retired key it names.
    pub kid: String,
    /// The key that took over, and the seq of that key's first checkpoint.
    pub newer: String,
    pub since: u64,
}

/// The public keys checkpoints and receipts are checked with, by key id.
#[derive(Debug, Clone, Default)]
pub struct Keys(Vec<(String, VerifyingKey)>);

impl Keys {
    /// Keys by id.
    pub fn new(keys: Vec<(String, VerifyingKey)>) -> Keys {
        Keys(keys)
    }

    /// One key, named by its thumbprint.
    pub fn one(key: VerifyingKey) -> Keys {
        Keys(vec![(crate::keys::thumbprint(&key.to_bytes()), key)])
    }

    /// Whether no key was given (signatures are then not checked).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The key with id `kid`.
    pub fn get(&self, kid: &str) -> Option<&VerifyingKey> {
        self.0.iter().find(|(id, _)| id == kid).map(|(_, k)| k)
    }
}

/// When the writer appends a checkpoint.
pub struct Schedule {
    signer: Arc<Signer>,
    every: u64,
    interval: Duration,
    /// First seq written and not yet covered.
    from: u64,
    /// When the last checkpoint was written (or the writer started).
    since: Instant,
    /// Seq of the last checkpoint this writer wrote: what an idle heartbeat covers.
    last: Option<u64>,
}

impl Schedule {
    /// A schedule for a writer whose chain ends at `head_seq`: what it appends from now on.
    pub fn new(signer: Arc<Signer>, every: u64, interval: Duration, head_seq: u64) -> Schedule {
        Schedule {
            signer,
            every: every.max(1),
            interval,
            from: head_seq + 1,
            since: Instant::now(),
            last: None,
        }
    }

    /// Whether records up to `head_seq` include some not covered yet.
    pub fn pending(&self, head_seq: u64) -> bool {
        head_seq >= self.from
    }

    /// Whether a checkpoint is due with the chain at `head_seq`: enough records, or the
    /// interval passed since the last one.
    pub fn due(&self, head_seq: u64) -> bool {
        self.pending(head_seq)
            && (head_seq + 1 - self.from >= self.every || self.since.elapsed() >= self.interval)
    }

    /// When the interval makes a checkpoint due: if records wait for one, or, when the chain
    /// ends at this writer's last checkpoint, the idle heartbeat.
    pub fn deadline(&self, head_seq: u64) -> Option<Instant> {
        (self.pending(head_seq) || self.idle(head_seq)).then(|| self.since + self.interval)
    }

    /// Whether the chain ends at `head_seq` with this writer's last checkpoint (nothing was
    /// written since it).
    fn idle(&self, head_seq: u64) -> bool {
        self.last == Some(head_seq)
    }

    /// Whether the idle heartbeat is due with the chain at `head_seq`: nothing was written
    /// since this writer's last checkpoint, and that was an interval ago.
    pub fn heartbeat_due(&self, head_seq: u64) -> bool {
        self.idle(head_seq) && self.since.elapsed() >= self.interval
    }

    /// The heartbeat: a checkpoint covering this writer's last checkpoint, at `head`, alone.
    pub fn heartbeat(&self, head: (u64, Hash)) -> AuditEvent {
        Checkpoint::event(&self.signer, head.0, head.0, &head.1)
    }

    /// The checkpoint record covering what is uncovered up to `head`.
    pub fn checkpoint(&self, head: (u64, Hash)) -> AuditEvent {
        Checkpoint::event(&self.signer, self.from, head.0, &head.1)
    }

    /// The checkpoint at `seq` was written.
    pub fn written(&mut self, seq: u64) {
        self.from = seq + 1;
        self.since = Instant::now();
        self.last = Some(seq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::hash_line;

    fn signer() -> Signer {
        Signer::new(ed25519_dalek::SigningKey::from_bytes(&[7; 32]))
    }

    #[test]
    fn a_checkpoint_verifies_and_each_change_shows() {
        let signer = signer();
        let keys = Keys::one(ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key());
        let hash = hash_line(b"record 10");
        let event = Checkpoint::event(&signer, 1, 10, &hash);
        let cp = Checkpoint::of(&event).unwrap();
        assert_eq!(cp.check(11, &hash, &event.time, &keys), Ok(()));
        assert_eq!(
            cp.check(11, &hash_line(b"other"), &event.time, &keys),
            Err(CheckpointProblem::Rewritten { from: 1, to: 10 })
        );
        assert!(matches!(
            cp.check(12, &hash, &event.time, &keys),
            Err(CheckpointProblem::Malformed(_))
        ));
        let later = Timestamp(event.time.0 + Duration::from_secs(1));
        assert_eq!(
            cp.check(11, &hash, &later, &keys),
            Err(CheckpointProblem::BadSignature(cp.key_id.clone()))
        );
        let other = Keys::one(ed25519_dalek::SigningKey::from_bytes(&[8; 32]).verifying_key());
        assert!(matches!(
            cp.check(11, &hash, &event.time, &other),
            Err(CheckpointProblem::UnknownKey(_))
        ));
        let widened = Checkpoint {
            from: 0,
            ..cp.clone()
        };
        assert!(matches!(
            widened.check(11, &hash, &event.time, &keys),
            Err(CheckpointProblem::BadSignature(_))
        ));
        // Without keys, the chain facts are still checked.
        assert_eq!(cp.check(11, &hash, &event.time, &Keys::default()), Ok(()));
    }

    #[test]
    fn the_schedule_is_due_by_count_or_time() {
        let mut schedule = Schedule::new(Arc::new(signer()), 3, Duration::from_secs(3600), 5);
        assert!(!schedule.pending(5));
        assert!(!schedule.due(7));
        assert!(schedule.due(8));
        schedule.written(9);
        assert!(!schedule.pending(9));
        let quick = Schedule::new(Arc::new(signer()), 1000, Duration::ZERO, 0);
        assert!(quick.due(1));
        assert!(!quick.due(0));
    }

    #[test]
    fn an_idle_writer_heartbeats_only_after_its_own_checkpoint() {
        // Started on a chain another run wrote: nothing of its own to cover, no heartbeat.
        let mut schedule = Schedule::new(Arc::new(signer()), 1000, Duration::ZERO, 5);
        assert!(!schedule.heartbeat_due(5));
        assert_eq!(schedule.deadline(5), None);
        schedule.written(7);
        assert!(schedule.heartbeat_due(7));
        assert!(schedule.deadline(7).is_some());
        // Records after the checkpoint: a checkpoint of them is due, not a heartbeat.
        assert!(!schedule.heartbeat_due(8));
        assert!(schedule.due(8));
        let slow = {
            let mut s = Schedule::new(Arc::new(signer()), 1000, Duration::from_secs(3600), 0);
            s.written(3);
            s
        };
        assert!(!slow.heartbeat_due(3), "not before the interval passed");

        let keys = Keys::one(ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key());
        let hash = hash_line(b"checkpoint 7");
        let beat = schedule.heartbeat((7, hash));
        let cp = Checkpoint::of(&beat).unwrap();
        assert_eq!((cp.from, cp.to), (7, 7));
        assert_eq!(cp.check(8, &hash, &beat.time, &keys), Ok(()));
    }
}
