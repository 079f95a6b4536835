//! Failure injection for the writer's tests: failed or torn writes, failed or held fsyncs,
//! held anchor writes, a writer thread held before it answers its waiters.
//! Outside tests, `Faults` is empty and every hook is a no-op.

pub use hooks::Faults;

#[cfg(not(test))]
mod hooks {
    use std::fs::File;
    use std::io;

    /// No faults outside tests.
    #[derive(Debug, Default)]
    pub struct Faults;

    impl Faults {
        /// Called before a segment write.
        #[inline(always)]
        pub fn before_write(&self, _file: &File, _bytes: &[u8], _offset: u64) -> io::Result<()> {
            Ok(())
        }

        /// Called before a segment fsync.
        #[inline(always)]
        pub fn before_sync(&self) -> io::Result<()> {
            Ok(())
        }

        /// Called before the anchor thread writes `head.json`.
        #[inline(always)]
        pub fn before_anchor(&self) {}

        /// Called when a segment reserves space.
        #[inline(always)]
        pub fn on_reserve(&self) {}

        /// Called before the writer thread answers a round's records (`waiters`: some wait).
        #[inline(always)]
        pub fn before_answer(&self, _waiters: bool) {}
    }
}

#[cfg(test)]
mod hooks {
    use std::fs::File;
    use std::io;
    use std::os::unix::fs::FileExt;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Faults a test arms; each counter is consumed one failure at a time.
    #[derive(Debug, Default)]
    pub struct Faults {
        /// Upcoming writes that put half their bytes in the file, then fail (disk full).
        pub torn_writes: AtomicU32,
        /// Upcoming fsyncs that fail (I/O error).
        pub failed_syncs: AtomicU32,
        /// When set, the next fsync waits until the test sends on (or drops) the channel.
        pub held_sync: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
        /// When set, the next anchor write waits until the test sends on (or drops) the channel.
        pub held_anchor: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
        /// When set, the next write whose bytes hold this text fails whole (ENOSPC); the
        /// text is then taken.
        pub failed_write_of: Mutex<Option<&'static str>>,
        /// When set, the next write whose bytes hold this text panics (a bug mid-commit);
        /// the text is then taken.
        pub panicking_write_of: Mutex<Option<&'static str>>,
        /// When set, the next write says so on the first channel, then waits until the test
        /// sends on (or drops) the second (a write stuck in the kernel).
        pub held_write: Mutex<Option<(std::sync::mpsc::Sender<()>, std::sync::mpsc::Receiver<()>)>>,
        /// The names of the threads that reserved segment space, in order.
        pub reserved_on: Mutex<Vec<String>>,
        /// When set, the next time the writer thread is about to answer waiters it says so
        /// on the first channel, then waits until the test sends on (or drops) the second.
        pub held_answer:
            Mutex<Option<(std::sync::mpsc::Sender<()>, std::sync::mpsc::Receiver<()>)>>,
    }

    /// Waits, if a test armed `slot`, until it sends on (or drops) the channel; once.
    fn wait_if_held(slot: &Mutex<Option<std::sync::mpsc::Receiver<()>>>) {
        let held = slot.lock().map(|mut h| h.take()).ok().flatten();
        if let Some(release) = held {
            let _ = release.recv();
        }
    }

    fn take_one(counter: &AtomicU32) -> bool {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    impl Faults {
        /// Tears the write when armed: half the bytes land, then ENOSPC; or fails it whole when
        /// it holds the text armed.
        pub fn before_write(&self, file: &File, bytes: &[u8], offset: u64) -> io::Result<()> {
            let held = self.held_write.lock().map(|mut h| h.take()).ok().flatten();
            if let Some((entered, release)) = held {
                let _ = entered.send(());
                let _ = release.recv();
            }
            let panicking = self
                .panicking_write_of
                .lock()
                .map(|mut text| {
                    text.take_if(|needle| {
                        bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
                    })
                })
                .ok()
                .flatten();
            if let Some(needle) = panicking {
                panic!("injected panic in the write of {needle}");
            }
            if take_one(&self.torn_writes) {
                file.write_all_at(&bytes[..bytes.len() / 2], offset)?;
                return Err(io::Error::from_raw_os_error(28));
            }
            let mut text = self
                .failed_write_of
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(needle) = *text
                && bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
            {
                *text = None;
                return Err(io::Error::from_raw_os_error(28));
            }
            Ok(())
        }

        /// Notes the thread reserving segment space.
        pub fn on_reserve(&self) {
            let name = std::thread::current().name().unwrap_or("").to_owned();
            if let Ok(mut on) = self.reserved_on.lock() {
                on.push(name);
            }
        }

        /// Holds the writer thread before it answers waiters, when armed.
        pub fn before_answer(&self, waiters: bool) {
            if !waiters {
                return;
            }
            let held = self.held_answer.lock().map(|mut h| h.take()).ok().flatten();
            if let Some((entered, release)) = held {
                let _ = entered.send(());
                let _ = release.recv();
            }
        }

        /// Holds the anchor write when armed.
        pub fn before_anchor(&self) {
            wait_if_held(&self.held_anchor);
        }

        /// Holds or fails the fsync when armed.
        pub fn before_sync(&self) -> io::Result<()> {
            wait_if_held(&self.held_sync);
            if take_one(&self.failed_syncs) {
                return Err(io::Error::from_raw_os_error(5));
            }
            Ok(())
        }
    }
}
