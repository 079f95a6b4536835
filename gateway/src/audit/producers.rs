//! The threads that append decision records, as the writer sees them: running or idle.
//!
//! Before a commit the writer waits briefly for stragglers (records that are about to be
//! appended), so that one synchronous write covers more of them. A proxy worker thread that
//! has gone idle (its event loop is about to block: no request of its own is ready to run)
//! cannot append until new input arrives, so once every registered worker is idle the writer
//! commits at once instead of sleeping out the wait. Worker runtimes report it through
//! tokio's `on_thread_park` / `on_thread_unpark` hooks ([`Producer::parked`],
//! [`Producer::unparked`]). With no worker registered (tools, tests) the wait is the plain
//! timed one.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::Instant;

/// The registered producer threads and the writer waiting on them.
#[derive(Debug, Default)]
pub struct Producers {
    /// Worker threads registered (see [`Producers::register`]).
    registered: AtomicUsize,
    /// Of those, the ones not idle.
    running: AtomicUsize,
    /// The writer is in its straggler wait and wants to hear when every worker is idle.
    writer_waiting: AtomicBool,
    /// The writer thread, to wake it.
    writer: OnceLock<Thread>,
}

impl Producers {
    /// Registers the calling thread as a running producer; it stays registered until the
    /// returned handle is dropped.
    pub fn register(self: &Arc<Self>) -> Producer {
        self.registered.fetch_add(1, Ordering::SeqCst);
        self.running.fetch_add(1, Ordering::SeqCst);
        Producer {
            producers: Arc::clone(self),
            idle: AtomicBool::new(false),
        }
    }

    /// Called once on the writer thread: the thread to wake.
    pub(super) fn set_writer(&self, writer: Thread) {
        let _ = self.writer.set(writer);
    }

    /// True when workers are registered and every one of them is idle.
    pub fn all_idle(&self) -> bool {
        self.registered.load(Ordering::SeqCst) > 0 && self.running.load(Ordering::SeqCst) == 0
    }

    /// Waits until `deadline`, or less if every registered worker is or becomes idle.
    /// Returns true if it ended early for that reason.
    pub(super) fn wait_while_running(&self, deadline: Instant) -> bool {
        self.writer_waiting.store(true, Ordering::SeqCst);
        let early = loop {
            // Checked after the flag is set: a worker going idle from here on sees the flag.
            if self.all_idle() {
                break true;
            }
            let now = Instant::now();
            if now >= deadline {
                break false;
            }
            std::thread::park_timeout(deadline - now);
        };
        self.writer_waiting.store(false, Ordering::SeqCst);
        early
    }

    fn went_idle(&self) {
        let was = self.running.fetch_sub(1, Ordering::SeqCst);
        if was == 1
            && self.writer_waiting.load(Ordering::SeqCst)
            && let Some(writer) = self.writer.get()
        {
            writer.unpark();
        }
    }

    fn went_running(&self) {
        self.running.fetch_add(1, Ordering::SeqCst);
    }
}

/// One registered producer thread. Its state changes come from that thread only.
#[derive(Debug)]
pub struct Producer {
    producers: Arc<Producers>,
    idle: AtomicBool,
}

impl Producer {
    /// The thread is about to block waiting for events (tokio's `on_thread_park`).
    pub fn parked(&self) {
        if !self.idle.swap(true, Ordering::Relaxed) {
            self.producers.went_idle();
        }
    }

    /// The thread has work again (tokio's `on_thread_unpark`).
    pub fn unparked(&self) {
        if self.idle.swap(false, Ordering::Relaxed) {
            self.producers.went_running();
        }
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        if !*self.idle.get_mut() {
            self.producers.running.fetch_sub(1, Ordering::SeqCst);
        }
        self.producers.registered.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn without_workers_the_wait_is_the_timed_one() {
        let producers = Producers::default();
        producers.set_writer(std::thread::current());
        let start = Instant::now();
        let early = producers.wait_while_running(start + Duration::from_millis(30));
        assert!(!early);
        assert!(start.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn an_idle_worker_ends_the_wait_at_once_and_a_running_one_does_not() {
        let producers = Arc::new(Producers::default());
        producers.set_writer(std::thread::current());
        let worker = producers.register();
        // Running: the wait lasts to its deadline.
        let start = Instant::now();
        assert!(!producers.wait_while_running(start + Duration::from_millis(30)));
        assert!(start.elapsed() >= Duration::from_millis(30));
        // Already idle: no wait.
        worker.parked();
        let start = Instant::now();
        assert!(producers.wait_while_running(start + Duration::from_secs(10)));
        assert!(start.elapsed() < Duration::from_secs(5));
        // Running again, then idle from another thread while the writer waits: woken early.
        worker.unparked();
        let producers_in_thread = Arc::clone(&producers);
        let parker = std::thread::spawn(move || {
            let worker = worker;
            std::thread::sleep(Duration::from_millis(50));
            worker.parked();
            // Keep it registered and idle until the writer has seen it.
            std::thread::sleep(Duration::from_millis(200));
            drop(worker);
            drop(producers_in_thread);
        });
        let start = Instant::now();
        assert!(producers.wait_while_running(start + Duration::from_secs(10)));
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(40) && waited < Duration::from_secs(5),
            "{waited:?}"
        );
        parker.join().expect("parker");
        assert!(!producers.all_idle(), "no worker registered any more");
    }

    #[test]
    fn every_worker_must_be_idle_and_repeated_hooks_count_once() {
        let producers = Arc::new(Producers::default());
        let a = producers.register();
        let b = producers.register();
        a.parked();
        a.parked();
        assert!(!producers.all_idle(), "b still runs");
        b.parked();
        assert!(producers.all_idle());
        a.unparked();
        a.unparked();
        assert!(!producers.all_idle());
        a.parked();
        assert!(producers.all_idle());
        // A worker that ends leaves the others' state right.
        drop(a);
        assert!(producers.all_idle());
        b.unparked();
        drop(b);
        assert!(!producers.all_idle());
        assert_eq!(producers.running.load(Ordering::SeqCst), 0);
        assert_eq!(producers.registered.load(Ordering::SeqCst), 0);
    }
}
