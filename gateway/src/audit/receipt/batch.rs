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
//! signature, as if it were signed by itself). No thread is woken for a receipt, unless a
//! response comes while the batch holding its leaf is being signed on another thread.
//!
//! The queue's lock is held only to push a leaf or take the queued batch out
//! ([`std::mem::replace`]): the signature (one Ed25519 signature and a tree of at most
//! [`BATCH_MAX`] leaves, tens of microseconds) and the receipts are made outside it, so a
//! request queueing its leaf on the proxy worker never sleeps while another thread signs. A
//! response whose leaf is still queued takes the queue out and signs it on its own thread; one
//! whose leaf another thread took out awaits that thread's answer ([`Pending::receipt`] is
//! asynchronous: the worker serves other connections meanwhile). A queue that reaches
//! [`BATCH_MAX`] is signed by the request that fills it, so leaves of requests that never
//! answer (a client gone) wait at most that long.

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
    /// Its place in the order leaves were queued (the queue is in that order).
    id: u64,
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
    /// Leaves queued since the last batch was taken out to be signed.
    queue: Mutex<Queue>,
    /// Called once a batch is taken out, before it is signed (tests hold a batch there).
    #[cfg(test)]
    signing: Option<Arc<dyn Fn() + Send + Sync>>,
}

/// The queued leaves, and the id the next one gets.
#[derive(Default)]
struct Queue {
    jobs: Vec<Job>,
    next: u64,
}

impl Queue {
    /// The queued batch, taken out to be signed (the queue left empty).
    fn take(&mut self) -> Vec<Job> {
        std::mem::replace(&mut self.jobs, Vec::with_capacity(BATCH_MAX))
    }
}

/// A queued receipt: [`Pending::receipt`] gives its `x-warden-receipt` value.
pub struct Pending {
    /// Its leaf's [`Job::id`].
    id: u64,
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
                queue: Mutex::new(Queue {
                    jobs: Vec::with_capacity(BATCH_MAX),
                    next: 0,
                }),
                #[cfg(test)]
                signing: None,
            }),
        }
    }

    /// Queues the receipt of `claims` for the next batch. The claims are serialised and
    /// hashed here, the lock held only to push the leaf; nothing is signed unless this fills
    /// the queue, and then outside the lock.
    pub fn queue(&self, claims: &Receipt) -> Pending {
        let json = serde_json::to_vec(claims).unwrap_or_default();
        let (done, signed) = oneshot::channel();
        let leaf = merkle::leaf_hash(&json);
        let mut queue = self.inner.lock();
        let id = queue.next;
        queue.next += 1;
        queue.jobs.push(Job {
            id,
            json,
            leaf,
            done,
        });
        let full = (queue.jobs.len() >= BATCH_MAX).then(|| queue.take());
        drop(queue);
        if let Some(batch) = full {
            self.inner.sign(batch);
        }
        Pending {
            id,
            signed,
            inner: Arc::clone(&self.inner),
        }
    }

    /// Signs every receipt queued by now (the audit writer's call after each commit, so that
    /// responses find their receipts signed). It never waits for a request: the lock is
    /// held by one only to push or take, and if it is, the round is skipped.
    pub fn sign_queued(&self) {
        let mut queue = match self.inner.queue.try_lock() {
            Ok(queue) => queue,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return,
        };
        // Most writer rounds find nothing queued: no batch is taken (nor a new one allocated).
        if queue.jobs.is_empty() {
            return;
        }
        let batch = queue.take();
        drop(queue);
        self.inner.sign(batch);
    }
}

impl Pending {
    /// Whether its batch is signed already (the receipt waits in the answer).
    #[cfg(test)]
    pub(crate) fn is_signed(&self) -> bool {
        !self.signed.is_empty()
    }

    /// The receipt (the `x-warden-receipt` value): signed already if another thread signed
    /// the batch it joined; signed now, with every receipt queued by then, if its leaf is
    /// still queued; awaited if another thread took its batch out and is signing it (the
    /// caller's thread serves others meanwhile). `None` only if its batch was lost (a panic
    /// while it was signed).
    pub async fn receipt(mut self) -> Option<String> {
        use tokio::sync::oneshot::error::TryRecvError;
        let signed = match self.signed.try_recv() {
            Ok(signed) => Some(signed),
            Err(TryRecvError::Closed) => None,
            Err(TryRecvError::Empty) => {
                // Not answered: its leaf is still queued, or a batch holding it was taken out
                // and is being signed on another thread.
                if let Some(batch) = self.inner.take_holding(self.id) {
                    self.inner.sign(batch);
                }
                self.signed.await.ok()
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
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Nothing panics with the lock held (a push, a take); were it poisoned, the queue is
        // still a list of leaves to sign.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The queued batch, taken out, if it holds the leaf `id` (the queue holds leaves in the
    /// order they came: it does if its first is not younger).
    fn take_holding(&self, id: u64) -> Option<Vec<Job>> {
        let mut queue = self.lock();
        let queued = queue.jobs.first().is_some_and(|first| first.id <= id);
        queued.then(|| queue.take())
    }

    /// Signs `batch` (taken out of the queue) as one batch and answers each leaf with its
    /// receipt, the queue's lock not held. A panic here drops the batch's answers: their
    /// requests go without receipts ([`unsigned`]).
    fn sign(&self, batch: Vec<Job>) {
        #[cfg(test)]
        if let Some(signing) = &self.signing {
            signing();
        }
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
    use futures_util::FutureExt;
    use std::sync::mpsc;
    use std::time::Duration;

    fn signer() -> (BatchSigner, Keys) {
        let signer = Arc::new(Signer::new(SigningKey::from_bytes(&[3; 32])));
        let keys = Keys::one(SigningKey::from_bytes(&[3; 32]).verifying_key());
        (BatchSigner::new(signer), keys)
    }

    /// A signer whose every batch, once taken out, waits before it is signed until the test
    /// sends on the returned channel; `taken` hears of each batch taken out.
    fn held_signer() -> (BatchSigner, Keys, mpsc::Receiver<()>, mpsc::Sender<()>) {
        let (mut batch, keys) = signer();
        let (taken_tx, taken) = mpsc::channel();
        let (release, release_rx) = mpsc::channel::<()>();
        let taken_tx = Mutex::new(taken_tx);
        let release_rx = Mutex::new(release_rx);
        Arc::get_mut(&mut batch.inner).unwrap().signing = Some(Arc::new(move || {
            let _ = taken_tx.lock().unwrap().send(());
            let _ = release_rx
                .lock()
                .unwrap()
                .recv_timeout(Duration::from_secs(10));
        }));
        (batch, keys, taken, release)
    }

    fn head(receipt: &str) -> String {
        receipt.split(format::SEPARATOR).next().unwrap().to_owned()
    }

    #[tokio::test]
    async fn receipts_queued_together_share_one_signed_head_and_each_says_its_own_claims() {
        let (batch, keys) = signer();
        let pending: Vec<_> = (0..40)
            .map(|seq| batch.queue(&Receipt::example(seq)))
            .collect();
        let mut heads = std::collections::BTreeSet::new();
        for (seq, pending) in (0..40).zip(pending) {
            let receipt = pending.receipt().await.expect("a receipt");
            let verified = verify::verify(&receipt, &keys).expect("verifies");
            assert_eq!(verified.claims, Receipt::example(seq));
            assert_eq!((verified.index, verified.size), (seq, 40));
            heads.insert(head(&receipt));
        }
        assert_eq!(heads.len(), 1, "the first to need a receipt signed all 40");
    }

    #[tokio::test]
    async fn a_receipt_queued_after_a_batch_was_signed_joins_the_next() {
        let (batch, keys) = signer();
        let first = batch.queue(&Receipt::example(1));
        let first = first.receipt().await.unwrap();
        let second = batch.queue(&Receipt::example(2)).receipt().await.unwrap();
        for receipt in [&first, &second] {
            let verified = verify::verify(receipt, &keys).unwrap();
            assert_eq!(
                (verified.index, verified.size),
                (0, 1),
                "a batch of one each"
            );
        }
    }

    #[tokio::test]
    async fn sign_queued_signs_every_queued_receipt_as_one_batch_before_anyone_asks() {
        let (batch, keys) = signer();
        let mut pending: Vec<_> = (0..5)
            .map(|seq| batch.queue(&Receipt::example(seq)))
            .collect();
        batch.sign_queued();
        assert!(batch.inner.lock().jobs.is_empty(), "every leaf signed");
        for (seq, pending) in (0..5).zip(&mut pending) {
            assert!(pending.signed.try_recv().is_ok(), "receipt {seq} answered");
        }
        // Nothing queued: nothing signed.
        batch.sign_queued();
        let later = batch.queue(&Receipt::example(7));
        batch.sign_queued();
        let verified = verify::verify(&later.receipt().await.unwrap(), &keys).unwrap();
        assert_eq!((verified.index, verified.size), (0, 1));
    }

    #[tokio::test]
    async fn sign_queued_does_not_wait_for_a_request_holding_the_queue() {
        let (batch, keys) = signer();
        let pending = batch.queue(&Receipt::example(1));
        {
            let held = batch.inner.lock();
            batch.sign_queued(); // does not wait for the lock
            assert_eq!(held.jobs.len(), 1);
        }
        let verified = verify::verify(&pending.receipt().await.unwrap(), &keys).unwrap();
        assert_eq!(verified.claims, Receipt::example(1));
    }

    #[tokio::test]
    async fn a_full_queue_is_signed_by_the_request_that_fills_it() {
        let (batch, keys) = signer();
        // Receipts nobody asks for (their clients gone) still leave the queue.
        for seq in 0..BATCH_MAX as u64 {
            drop(batch.queue(&Receipt::example(seq)));
        }
        assert!(
            batch.inner.lock().jobs.is_empty(),
            "signed when it reached the bound"
        );
        let next = batch.queue(&Receipt::example(999));
        assert_eq!(batch.inner.lock().jobs.len(), 1);
        let verified = verify::verify(&next.receipt().await.unwrap(), &keys).unwrap();
        assert_eq!((verified.index, verified.size), (0, 1));
    }

    #[tokio::test]
    async fn a_batch_being_signed_on_another_thread_blocks_neither_queue_nor_its_receipts() {
        let (batch, keys, taken, release) = held_signer();
        let first = batch.queue(&Receipt::example(1));
        // The audit writer's round takes the batch out and is held in its signature.
        let writer = {
            let batch = batch.clone();
            std::thread::spawn(move || batch.sign_queued())
        };
        taken.recv_timeout(Duration::from_secs(10)).unwrap();
        // A request on another thread queues its leaf without waiting for that signature.
        let (queued_tx, queued) = mpsc::channel();
        let request = {
            let batch = batch.clone();
            std::thread::spawn(move || {
                let pending = batch.queue(&Receipt::example(2));
                let _ = queued_tx.send(());
                pending
            })
        };
        queued
            .recv_timeout(Duration::from_secs(5))
            .expect("queue() returned while another thread signed");
        let second = request.join().unwrap();
        // The response of the leaf being signed does not block its thread: its receipt is
        // awaited, and signs no batch of its own.
        let mut receipt = Box::pin(first.receipt());
        assert!(
            (&mut receipt).now_or_never().is_none(),
            "not signed yet, and not waited for on this thread"
        );
        assert_eq!(
            batch.inner.lock().jobs.len(),
            1,
            "the later leaf left queued"
        );
        release.send(()).unwrap();
        let receipt = tokio::time::timeout(Duration::from_secs(10), receipt)
            .await
            .unwrap()
            .expect("the receipt, signed by the writer");
        let verified = verify::verify(&receipt, &keys).unwrap();
        assert_eq!(verified.claims, Receipt::example(1));
        assert_eq!((verified.index, verified.size), (0, 1));
        writer.join().unwrap();
        // The later leaf, still queued, is signed by its own response.
        release.send(()).unwrap();
        let verified = verify::verify(&second.receipt().await.unwrap(), &keys).unwrap();
        assert_eq!(verified.claims, Receipt::example(2));
    }

    #[tokio::test]
    async fn a_batch_lost_to_a_panic_leaves_its_responses_unsigned_not_hanging() {
        let (mut batch, _) = signer();
        Arc::get_mut(&mut batch.inner).unwrap().signing =
            Some(Arc::new(|| panic!("a signer that fails")));
        let pending = batch.queue(&Receipt::example(1));
        let writer = {
            let batch = batch.clone();
            std::thread::spawn(move || batch.sign_queued())
        };
        assert!(writer.join().is_err(), "the signing thread panicked");
        let receipt = tokio::time::timeout(Duration::from_secs(5), pending.receipt()).await;
        assert_eq!(receipt.expect("answered at once"), None);
    }

    #[test]
    fn requests_on_several_threads_each_get_a_receipt_that_verifies() {
        let (batch, keys) = signer();
        let batch = Arc::new(batch);
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let batch = Arc::clone(&batch);
                std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .build()
                        .unwrap();
                    (0..200u64)
                        .map(|i| {
                            let seq = t * 1000 + i;
                            let pending = batch.queue(&Receipt::example(seq));
                            let receipt = runtime.block_on(pending.receipt());
                            (seq, receipt.expect("a receipt"))
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
