//! The receipt signer: receipts are signed a batch at a time, as the audit writer commits
//! records a group at a time.
//!
//! A decided request queues its claims' leaf hash ([`BatchSigner::queue`]) and goes on: its
//! receipt is needed only when its response starts, after the upstream has answered. After
//! each commit the audit writer signs every leaf queued by then ([`BatchSigner::sign_queued`]):
//! it builds the batch's Merkle tree, signs one head over its root, and answers each queued
//! request with its receipt (the head, its claims, its index and audit path). The requests it
//! answered queue theirs on their way upstream, so under load a batch is about a commit's
//! records and the signature is the writer's work, on a thread that is awake anyway, not the
//! worker's. A response that comes before the writer got to its leaf ([`Pending::receipt`])
//! signs every leaf queued by then on its own thread: alone, a request is a batch of one (one
//! signature, as if it were signed by itself). No thread is woken for a receipt.
//!
//! The queue's lock is held while a batch is signed (one Ed25519 signature and a tree of at
//! most [`BATCH_MAX`] leaves, tens of microseconds), so a request that finds its leaf gone
//! from the queue finds it answered as soon as it holds the lock; the writer skips a round
//! while a request holds it. A queue that reaches [`BATCH_MAX`] is signed by the request that
//! fills it, so leaves of requests that never answer (a client gone) wait at most that long.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;

use super::claims::Receipt;
use super::format;
use super::merkle::{self, Hash, Tree};
use crate::audit::signer::Signer;

/// The most receipts one signed head covers: the audit path stays at most 8 hashes.
pub const BATCH_MAX: usize = 256;

/// One queued receipt.
struct Job {
    /// The claims' JSON: the leaf's bytes, carried in the receipt.
    json: Vec<u8>,
    leaf: Hash,
    /// Answered with the receipt once its batch is signed.
    done: oneshot::Sender<String>,
}

/// Signs receipts a batch at a time with the audit key.
#[derive(Clone)]
pub struct BatchSigner {
    inner: Arc<Inner>,
}

struct Inner {
    signer: Arc<Signer>,
    /// The encoded JOSE header of every head ([`format::head_header`]).
    header: String,
    /// Leaves queued since the last batch was signed.
    queue: Mutex<Vec<Job>>,
}

/// A queued receipt: [`Pending::receipt`] gives its `x-warden-receipt` value.
pub struct Pending {
    signed: oneshot::Receiver<String>,
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").finish_non_exhaustive()
    }
}

impl BatchSigner {
    /// A signer of receipts with `signer`.
    pub fn new(signer: Arc<Signer>) -> BatchSigner {
        BatchSigner {
            inner: Arc::new(Inner {
                header: format::head_header(&signer),
                signer,
                queue: Mutex::new(Vec::with_capacity(BATCH_MAX)),
            }),
        }
    }

    /// Queues the receipt of `claims` for the next batch. The claims are serialised and
    /// hashed here; nothing is signed unless this fills the queue.
    pub fn queue(&self, claims: &Receipt) -> Pending {
        let json = serde_json::to_vec(claims).unwrap_or_default();
        let (done, signed) = oneshot::channel();
        let job = Job {
            leaf: merkle::leaf_hash(&json),
            json,
            done,
        };
        let mut queue = self.inner.lock();
        queue.push(job);
        if queue.len() >= BATCH_MAX {
            self.inner.sign(&mut queue);
        }
        drop(queue);
        Pending {
            signed,
            inner: Arc::clone(&self.inner),
        }
    }

    /// Signs every receipt queued by now, unless a request is signing (the audit writer's
    /// call after each commit, so that responses find their receipts signed).
    pub fn sign_queued(&self) {
        let mut queue = match self.inner.queue.try_lock() {
            Ok(queue) => queue,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return,
        };
        if !queue.is_empty() {
            self.inner.sign(&mut queue);
        }
    }
}

impl Pending {
    /// Whether its batch is signed already (the receipt waits in the answer).
    #[cfg(test)]
    pub(crate) fn is_signed(&self) -> bool {
        !self.signed.is_empty()
    }

    /// The receipt (the `x-warden-receipt` value): signed already if another request signed
    /// the batch it joined, or signed now with every receipt queued since.
    pub fn receipt(mut self) -> Option<String> {
        use tokio::sync::oneshot::error::TryRecvError;
        let signed = match self.signed.try_recv() {
            Ok(signed) => Some(signed),
            Err(TryRecvError::Closed) => None,
            Err(TryRecvError::Empty) => {
                // Not answered: the leaf is still queued, or a batch holding it is being
                // signed, and is answered once that request lets go of the queue. Signed
                // while this one waited for the lock, it needs no batch of its own.
                let mut queue = self.inner.lock();
                match self.signed.try_recv() {
                    Err(TryRecvError::Empty) if !queue.is_empty() => {
                        self.inner.sign(&mut queue);
                        drop(queue);
                        self.signed.try_recv().ok()
                    }
                    answered => answered.ok(),
                }
            }
        };
        if signed.is_none() {
            unsigned();
        }
        signed
    }
}

/// Says, at most once a minute, that a response goes without its receipt: its batch was
/// lost (a panic while it was signed). The decision record is intact.
fn unsigned() {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = now();
    let last = LAST.load(Relaxed);
    if now >= last + 60 && LAST.compare_exchange(last, now, Relaxed, Relaxed).is_ok() {
        tracing::error!(
            "a response goes without x-warden-receipt: its batch was not signed (its decision record is intact)"
        );
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Vec<Job>> {
        // A panic while signing leaves the queue as it was: still a list of leaves to sign.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Signs every leaf in `queue` as one batch and answers each with its receipt (the
    /// queue's lock held).
    fn sign(&self, queue: &mut Vec<Job>) {
        let batch = std::mem::replace(queue, Vec::with_capacity(BATCH_MAX));
        let leaves: Vec<Hash> = batch.iter().map(|job| job.leaf).collect();
        let Some((head, tree)) = sign_batch(&self.signer, &self.header, leaves) else {
            return;
        };
        for (index, job) in batch.into_iter().enumerate() {
            if job.done.is_closed() {
                continue; // a request gone (its client left) no longer waits for it
            }
            let receipt = format::receipt(&head, &job.json, index, &tree.path(index));
            let _ = job.done.send(receipt);
        }
    }
}

/// The signed head (compact JWS) of the batch whose leaf hashes are `leaves`, and its tree
/// (`header`: [`format::head_header`]); `None` for no leaves.
pub fn sign_batch(signer: &Signer, header: &str, leaves: Vec<Hash>) -> Option<(Arc<str>, Tree)> {
    let tree = Tree::new(leaves)?;
    let head = format::sign_head(signer, header, &tree.root(), tree.size(), now());
    Some((Arc::from(head), tree))
}

/// Seconds since the epoch.
fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::checkpoint::Keys;
    use crate::audit::receipt::verify;
    use ed25519_dalek::SigningKey;

    fn signer() -> (BatchSigner, Keys) {
        let signer = Arc::new(Signer::new(SigningKey::from_bytes(&[3; 32])));
        let keys = Keys::one(SigningKey::from_bytes(&[3; 32]).verifying_key());
        (BatchSigner::new(signer), keys)
    }

    fn head(receipt: &str) -> String {
        receipt.split(format::SEPARATOR).next().unwrap().to_owned()
    }

    #[test]
    fn receipts_queued_together_share_one_signed_head_and_each_says_its_own_claims() {
        let (batch, keys) = signer();
        let pending: Vec<_> = (0..40)
            .map(|seq| batch.queue(&Receipt::example(seq)))
            .collect();
        let mut heads = std::collections::BTreeSet::new();
        for (seq, pending) in (0..40).zip(pending) {
            let receipt = pending.receipt().expect("a receipt");
            let verified = verify::verify(&receipt, &keys).expect("verifies");
            assert_eq!(verified.claims, Receipt::example(seq));
            assert_eq!((verified.index, verified.size), (seq, 40));
            heads.insert(head(&receipt));
        }
        assert_eq!(heads.len(), 1, "the first to need a receipt signed all 40");
    }

    #[test]
    fn a_receipt_queued_after_a_batch_was_signed_joins_the_next() {
        let (batch, keys) = signer();
        let first = batch.queue(&Receipt::example(1));
        let first = first.receipt().unwrap();
        let second = batch.queue(&Receipt::example(2)).receipt().unwrap();
        for receipt in [&first, &second] {
            let verified = verify::verify(receipt, &keys).unwrap();
            assert_eq!(
                (verified.index, verified.size),
                (0, 1),
                "a batch of one each"
            );
        }
    }

    #[test]
    fn sign_queued_signs_every_queued_receipt_as_one_batch_before_anyone_asks() {
        let (batch, keys) = signer();
        let mut pending: Vec<_> = (0..5)
            .map(|seq| batch.queue(&Receipt::example(seq)))
            .collect();
        batch.sign_queued();
        assert!(batch.inner.lock().is_empty(), "every leaf signed");
        for (seq, pending) in (0..5).zip(&mut pending) {
            assert!(pending.signed.try_recv().is_ok(), "receipt {seq} answered");
        }
        // Nothing queued: nothing signed.
        batch.sign_queued();
        let later = batch.queue(&Receipt::example(7));
        batch.sign_queued();
        let verified = verify::verify(&later.receipt().unwrap(), &keys).unwrap();
        assert_eq!((verified.index, verified.size), (0, 1));
    }

    #[test]
    fn sign_queued_leaves_the_queue_to_a_request_signing_it() {
        let (batch, keys) = signer();
        let pending = batch.queue(&Receipt::example(1));
        let held = batch.inner.lock();
        batch.sign_queued(); // does not wait for the lock
        assert_eq!(held.len(), 1);
        drop(held);
        let verified = verify::verify(&pending.receipt().unwrap(), &keys).unwrap();
        assert_eq!(verified.claims, Receipt::example(1));
    }

    #[test]
    fn a_full_queue_is_signed_by_the_request_that_fills_it() {
        let (batch, keys) = signer();
        // Receipts nobody asks for (their clients gone) still leave the queue.
        for seq in 0..BATCH_MAX as u64 {
            drop(batch.queue(&Receipt::example(seq)));
        }
        assert!(
            batch.inner.lock().is_empty(),
            "signed when it reached the bound"
        );
        let next = batch.queue(&Receipt::example(999));
        assert_eq!(batch.inner.lock().len(), 1);
        let verified = verify::verify(&next.receipt().unwrap(), &keys).unwrap();
        assert_eq!((verified.index, verified.size), (0, 1));
    }

    #[test]
    fn a_receipt_signed_while_its_request_waited_for_the_queue_signs_no_batch_of_its_own() {
        let (batch, keys) = signer();
        let waiting = batch.queue(&Receipt::example(1));
        let mut queue = batch.inner.lock();
        let thread = std::thread::spawn(move || waiting.receipt());
        // The thread finds its receipt unanswered and waits for the lock held here, while
        // this "other request" signs the batch holding it, then queues a leaf of its own.
        std::thread::sleep(std::time::Duration::from_millis(100));
        batch.inner.sign(&mut queue);
        let (done, _signed) = oneshot::channel();
        queue.push(Job {
            json: b"later".to_vec(),
            leaf: merkle::leaf_hash(b"later"),
            done,
        });
        drop(queue);
        let receipt = thread.join().unwrap().expect("a receipt");
        assert!(verify::verify(&receipt, &keys).is_ok());
        assert_eq!(
            batch.inner.lock().len(),
            1,
            "the later leaf is left for its own request"
        );
    }

    #[test]
    fn requests_on_several_threads_each_get_a_receipt_that_verifies() {
        let (batch, keys) = signer();
        let batch = Arc::new(batch);
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let batch = Arc::clone(&batch);
                std::thread::spawn(move || {
                    (0..200u64)
                        .map(|i| {
                            let seq = t * 1000 + i;
                            let pending = batch.queue(&Receipt::example(seq));
                            (seq, pending.receipt().expect("a receipt"))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for thread in threads {
            for (seq, receipt) in thread.join().unwrap() {
                let verified = verify::verify(&receipt, &keys).expect("verifies");
                assert_eq!(verified.claims, Receipt::example(seq));
            }
        }
    }
}
