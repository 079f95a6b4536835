//! Durability answers: a request waiting for its decision record is told when the record is
//! durable (or why it is not).
//!
//! Told from the writer thread one by one, each answer would wake the waiting worker's event
//! loop from outside (an eventfd write, then an epoll return on the worker). A worker thread
//! that opened a mailbox ([`open_mailbox`]) instead receives all of one commit's answers in
//! one message and wakes its own requests, which costs nothing across threads.

use std::cell::RefCell;
use std::future::Future;

use tokio::sync::{mpsc, oneshot};

use super::log::AuditError;

/// The seq of the durable record, or why it is not durable.
pub type Answer = Result<u64, AuditError>;

type Delivered = Vec<(oneshot::Sender<Answer>, Answer)>;

/// Where one worker thread receives its answers.
#[derive(Clone, Debug)]
pub struct Mailbox(mpsc::UnboundedSender<Delivered>);

thread_local! {
    static MAILBOX: RefCell<Option<Mailbox>> = const { RefCell::new(None) };
}

/// Opens this thread's mailbox. The returned future hands the answers to the waiting
/// requests; spawn it on this thread's (current-thread) runtime. Appends made on this thread
/// from then on are answered through it.
pub fn open_mailbox() -> impl Future<Output = ()> + Send + 'static {
    let (tx, mut rx) = mpsc::unbounded_channel::<Delivered>();
    MAILBOX.with(|m| *m.borrow_mut() = Some(Mailbox(tx)));
    async move {
        while let Some(answers) = rx.recv().await {
            for (waiter, answer) in answers {
                let _ = waiter.send(answer);
            }
        }
    }
}

/// Someone waiting for a record to become durable.
#[derive(Debug)]
pub struct Waiter {
    tx: oneshot::Sender<Answer>,
    mailbox: Option<Mailbox>,
}

/// A waiter for the calling thread (through its mailbox when it opened one), and the
/// receiving end of its answer.
pub fn waiter() -> (Waiter, oneshot::Receiver<Answer>) {
    let (tx, rx) = oneshot::channel();
    let mailbox = MAILBOX.with(|m| m.borrow().clone());
    (Waiter { tx, mailbox }, rx)
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
            .find(|(m, _)| m.0.same_channel(&mailbox.0))
        {
            Some((_, batch)) => batch.push((waiter.tx, answer)),
            None => self.batches.push((mailbox, vec![(waiter.tx, answer)])),
        }
    }

    /// Sends every mailbox its batch. A mailbox whose thread is gone drops its waiters, who
    /// then see the log as closed.
    pub fn send(self) {
        for (mailbox, batch) in self.batches {
            let _ = mailbox.0.send(batch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_thread_with_a_mailbox_gets_a_commits_answers_in_one_delivery() {
        tokio::spawn(open_mailbox());
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
    fn a_thread_without_a_mailbox_is_answered_directly() {
        let (w, mut rx) = std::thread::spawn(waiter).join().unwrap();
        assert!(w.mailbox.is_none());
        let mut delivery = Delivery::default();
        delivery.answer(w, Ok(1));
        assert!(delivery.batches.is_empty());
        assert_eq!(rx.try_recv().unwrap().unwrap(), 1);
    }
}
