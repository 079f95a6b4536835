//! Commit answers: a request waiting for its decision record is told when the record is
//! committed (or why it is not).
//!
//! Told from the writer thread one by one, each answer would wake the waiting thread's event
//! loop from outside (an eventfd write, then an epoll return). So a thread that appends from
//! a single-threaded tokio runtime (each proxy worker's) gets a mailbox, set up on its first
//! append: all of one commit's answers for that thread travel in one message, and a task on
//! the thread hands them to its waiting requests, which costs nothing across threads.
//! Elsewhere (a multi-threaded runtime, no runtime) each answer goes straight to its waiter.

use std::cell::RefCell;

use tokio::runtime::{self, Handle, RuntimeFlavor};
use tokio::sync::{mpsc, oneshot};

use super::error::AuditError;

/// The seq of the committed record, or why it is not committed.
pub type Answer = Result<u64, AuditError>;

type Delivered = Vec<(oneshot::Sender<Answer>, Answer)>;

thread_local! {
    static COMMITS: RefCell<Option<Mailbox>> = const { RefCell::new(None) };
}

/// Where one thread's requests receive their answers, on one runtime.
pub struct Mailbox {
    tx: mpsc::UnboundedSender<Delivered>,
    runtime: runtime::Id,
}

impl Clone for Mailbox {
    fn clone(&self) -> Self {
        Mailbox {
            tx: self.tx.clone(),
            runtime: self.runtime,
        }
    }
}

impl std::fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox")
            .field("runtime", &self.runtime)
            .finish_non_exhaustive()
    }
}

/// This thread's mailbox on the runtime it runs, opened on first use; `None` off a
/// single-threaded runtime, whose tasks could run on other threads than this one.
fn mailbox() -> Option<Mailbox> {
    let handle = Handle::try_current().ok()?;
    if handle.runtime_flavor() != RuntimeFlavor::CurrentThread {
        return None;
    }
    let runtime = handle.id();
    COMMITS.with(|cell| {
        let mut slot = cell.borrow_mut();
        // A mailbox of another runtime (or of one shut down) would never be read here.
        if let Some(mailbox) = slot.as_ref()
            && mailbox.runtime == runtime
            && !mailbox.tx.is_closed()
        {
            return Some(mailbox.clone());
        }
        let (tx, mut rx) = mpsc::unbounded_channel::<Delivered>();
        handle.spawn(async move {
            while let Some(answers) = rx.recv().await {
                for (waiter, answer) in answers {
                    let _ = waiter.send(answer);
                }
            }
        });
        let mailbox = Mailbox { tx, runtime };
        *slot = Some(mailbox.clone());
        Some(mailbox)
    })
}

/// Someone waiting for a record to be committed.
#[derive(Debug)]
pub struct Waiter {
    tx: oneshot::Sender<Answer>,
    mailbox: Option<Mailbox>,
}

/// A waiter for a commit, for the calling thread (through its mailbox when it runs a
/// single-threaded runtime), and the receiving end of its answer.
pub fn waiter() -> (Waiter, oneshot::Receiver<Answer>) {
    let (tx, rx) = oneshot::channel();
    (
        Waiter {
            tx,
            mailbox: mailbox(),
        },
        rx,
    )
}

/// The answers of one commit, gathered per mailbox and sent by [`Delivery::send`].
#[derive(Default)]
pub struct Delivery {
    batches: Vec<(Mailbox, Delivered)>,
}

impl Delivery {
    /// Answers `waiter` now (no mailbox) or with its mailbox's batch.
    pub fn answer(&mut self, waiter: Waiter, answer: Answer) {
        let Some(mailbox) = waiter.mailbox else {
            let _ = waiter.tx.send(answer);
            return;
        };
        match self
            .batches
            .iter_mut()
            .find(|(m, _)| m.tx.same_channel(&mailbox.tx))
        {
            Some((_, batch)) => batch.push((waiter.tx, answer)),
            None => self.batches.push((mailbox, vec![(waiter.tx, answer)])),
        }
    }

    /// Sends every mailbox its batch. A mailbox whose runtime is gone drops its waiters, who
    /// then see the log as closed.
    pub fn send(self) {
        for (mailbox, batch) in self.batches {
            let _ = mailbox.tx.send(batch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_single_threaded_runtime_gets_a_commits_answers_in_one_delivery() {
        let (first, first_rx) = waiter();
        let (second, second_rx) = waiter();
        assert!(first.mailbox.is_some() && second.mailbox.is_some());
        let mut delivery = Delivery::default();
        delivery.answer(first, Ok(7));
        delivery.answer(second, Err(AuditError::Closed));
        assert_eq!(delivery.batches.len(), 1, "one message for the thread");
        assert_eq!(delivery.batches[0].1.len(), 2);
        delivery.send();
        assert_eq!(first_rx.await.unwrap().unwrap(), 7);
        assert!(matches!(second_rx.await.unwrap(), Err(AuditError::Closed)));
    }

    #[test]
    fn each_runtime_on_a_thread_gets_its_own_mailbox() {
        let build = || {
            runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
        };
        let (one, two) = (build(), build());
        let (w1, rx1) = one.block_on(async { waiter() });
        // The first runtime still exists but no longer runs: its mailbox must not be reused.
        let (w2, rx2) = two.block_on(async { waiter() });
        let (m1, m2) = (w1.mailbox.clone().unwrap(), w2.mailbox.clone().unwrap());
        assert!(!m1.tx.same_channel(&m2.tx));
        let mut delivery = Delivery::default();
        delivery.answer(w2, Ok(2));
        delivery.send();
        assert_eq!(two.block_on(rx2).unwrap().unwrap(), 2);
        // A runtime shut down closes its mailbox; the next one opens a new one.
        drop(one);
        assert!(m1.tx.is_closed());
        drop(rx1);
        drop(w1);
        let three = build();
        let (w3, _rx3) = three.block_on(async { waiter() });
        assert!(!w3.mailbox.unwrap().tx.same_channel(&m1.tx));
    }

    #[test]
    fn off_a_single_threaded_runtime_answers_go_straight_to_the_waiter() {
        let (w, mut rx) = std::thread::spawn(waiter).join().unwrap();
        assert!(w.mailbox.is_none(), "no runtime");
        let mut delivery = Delivery::default();
        delivery.answer(w, Ok(1));
        assert!(delivery.batches.is_empty());
        assert_eq!(rx.try_recv().unwrap().unwrap(), 1);

        let multi = runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let (w, _rx) = multi.block_on(async { waiter() });
        assert!(
            w.mailbox.is_none(),
            "tasks of a multi-threaded runtime move between threads"
        );
    }
}
