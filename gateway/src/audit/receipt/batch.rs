//! The receipt signer: one thread signs receipts a batch at a time, as the audit writer
//! commits records a group at a time.
//!
//! A request hands over its claims' leaf hash and waits (without blocking its worker) for
//! its place in a batch. The thread takes everything queued (up to [`BATCH_MAX`]), builds the
//! batch's Merkle tree, signs one head over its root, and answers each request with the head,
//! its index and its audit path. Alone, a request gets a batch of one (one signature, as if
//! it were signed by itself); under load the signature is shared by everyone who queued
//! while the previous batch was being signed.

use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};

use super::claims::Receipt;
use super::format;
use super::merkle::{self, Hash, Tree};
use crate::audit::answer::{self, Answered, Delivery, Mailbox, Waiter};
use crate::audit::signer::Signer;

/// The most receipts one signed head covers: the audit path stays at most 8 hashes.
pub const BATCH_MAX: usize = 256;

/// How long a request waits for its batch to be signed before it goes on without a receipt
/// (a batch is signed in well under a millisecond; only a stalled signer takes this long).
const WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(1);

/// The signer thread's stack: it hashes and signs, nothing deep.
const STACK_BYTES: usize = 256 * 1024;

/// A receipt's place in its signed batch.
#[derive(Debug)]
pub struct Placed {
    /// The batch's signed head (compact JWS), shared by the batch.
    head: Arc<str>,
    /// The leaf's index.
    index: usize,
    /// The leaf's audit path.
    path: Vec<Hash>,
}

thread_local! {
    static PLACED: std::cell::RefCell<Option<Mailbox<Placed>>> =
        const { std::cell::RefCell::new(None) };
}

impl Answered for Placed {
    fn mailbox_slot() -> &'static std::thread::LocalKey<std::cell::RefCell<Option<Mailbox<Self>>>> {
        &PLACED
    }
}

/// One receipt to place.
struct Job {
    leaf: Hash,
    done: Waiter<Placed>,
}

/// The handle requests sign receipts through; the thread stops when it is dropped.
pub struct BatchSigner {
    tx: Sender<Job>,
}

impl BatchSigner {
    /// Starts the signer thread, signing with `signer`.
    pub fn spawn(signer: Arc<Signer>) -> std::io::Result<BatchSigner> {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("warden-receipts".to_owned())
            .stack_size(STACK_BYTES)
            .spawn(move || run(&signer, &rx))?;
        Ok(BatchSigner { tx })
    }

    /// The receipt of `claims` (the `x-warden-receipt` value), once its batch is signed;
    /// `None` if the signer thread is gone.
    ///
    /// The claims are serialised and hashed here, on the caller's thread; the future holds
    /// only them and the answer's receiver.
    pub fn sign(&self, claims: &Receipt) -> impl Future<Output = Option<String>> + Send + use<> {
        let json = serde_json::to_vec(claims).unwrap_or_default();
        let (done, placed) = answer::waiter_for::<Placed>();
        let sent = self
            .tx
            .send(Job {
                leaf: merkle::leaf_hash(&json),
                done,
            })
            .is_ok();
        async move {
            if !sent {
                unsigned("the receipt signer has stopped");
                return None;
            }
            let placed = match tokio::time::timeout(WAIT_MAX, placed).await {
                Ok(Ok(placed)) => placed,
                Ok(Err(_)) => {
                    unsigned("the receipt signer stopped before signing the batch");
                    return None;
                }
                Err(_) => {
                    unsigned("the receipt signer did not sign within a second");
                    return None;
                }
            };
            Some(format::receipt(
                &placed.head,
                &json,
                placed.index,
                &placed.path,
            ))
        }
    }
}

/// Says, at most once a minute, why a response goes without its receipt (its decision
/// record is intact).
fn unsigned(why: &str) {
    static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = LAST.load(std::sync::atomic::Ordering::Relaxed);
    if now >= last + 60
        && LAST
            .compare_exchange(
                last,
                now,
                std::sync::atomic::Ordering::Relaxed,
                std::sync::atomic::Ordering::Relaxed,
            )
            .is_ok()
    {
        tracing::error!(
            reason = why,
            "responses go without x-warden-receipt (decision records are intact); restart Warden to sign receipts again"
        );
    }
}

/// The thread: waits for a receipt, takes everything queued behind it, signs them together.
fn run(signer: &Signer, rx: &Receiver<Job>) {
    let header = format::head_header(signer);
    let mut batch = Vec::with_capacity(BATCH_MAX);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < BATCH_MAX
            && let Ok(job) = rx.try_recv()
        {
            batch.push(job);
        }
        let leaves: Vec<Hash> = batch.iter().map(|job| job.leaf).collect();
        let Some((head, tree)) = sign_batch(signer, &header, leaves) else {
            batch.clear();
            continue;
        };
        let mut delivery = Delivery::default();
        for (index, job) in batch.drain(..).enumerate() {
            let placed = Placed {
                head: Arc::clone(&head),
                index,
                path: tree.path(index),
            };
            delivery.answer(job.done, placed);
        }
        delivery.send();
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

    #[tokio::test]
    async fn receipts_signed_together_each_verify_and_say_their_own_claims() {
        let signer = Arc::new(Signer::new(SigningKey::from_bytes(&[3; 32])));
        let keys = Keys::one(SigningKey::from_bytes(&[3; 32]).verifying_key());
        let batch = BatchSigner::spawn(signer).unwrap();
        // Handed over before any is awaited: the thread finds most of them queued.
        let pending: Vec<_> = (0..40)
            .map(|seq| batch.sign(&Receipt::example(seq)))
            .collect();
        let mut heads = std::collections::BTreeSet::new();
        for (seq, receipt) in (0..40).zip(pending) {
            let receipt = receipt.await.expect("a receipt");
            let verified = verify::verify(&receipt, &keys).expect("verifies");
            assert_eq!(verified.claims, Receipt::example(seq));
            assert!(verified.index < verified.size);
            heads.insert(receipt.split(format::SEPARATOR).next().unwrap().to_owned());
        }
        assert!(heads.len() < 40, "some receipts share a signed head");
    }

    #[tokio::test]
    async fn without_its_thread_a_receipt_is_not_signed() {
        let (tx, rx) = mpsc::channel();
        drop(rx);
        let batch = BatchSigner { tx };
        assert_eq!(batch.sign(&Receipt::example(1)).await, None);
    }
}
