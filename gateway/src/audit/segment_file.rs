//! The segment the writer appends to: zero-filled space reserved ahead of the writes, so that a
//! flush carries data only, and a tail cut back after a failed write.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use super::anchor;
use super::faults::Faults;
use super::segment::segment_name;

/// Zero-filled space kept ahead of the writes: appends then overwrite blocks that are
/// allocated and written, so an fdatasync flushes data only, without the journal commit a
/// growing file size costs (ext4).
const RESERVE_BYTES: u64 = 1 << 20;
/// Source of the zeros written into reserved space.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// The segment being appended to.
pub struct SegmentFile {
    /// Its number (`audit-NNNNNN.jsonl`).
    pub number: u64,
    /// Its file name.
    pub name: String,
    /// Shared with the flusher thread, which flushes it in `process` durability.
    file: Arc<File>,
    /// Bytes written: the end of the data.
    pub len: u64,
    /// Size of the file: zeros from `len` to here are reserved space.
    allocated: u64,
    /// Reserve no space past this size (the segment size limit).
    limit: u64,
    /// A failed write or flush may have left bytes past `len`; cut them before writing again.
    dirty_tail: bool,
    faults: Arc<Faults>,
}

impl SegmentFile {
    /// Opens segment `number` to append after its first `len` bytes; only zeros may follow
    /// them (recovery saw to it). What it holds is flushed first: a log stopped by a kill in
    /// `process` durability leaves records the kernel has and the disk may not have yet.
    pub fn open(
        dir: &Path,
        number: u64,
        len: u64,
        limit: u64,
        faults: Arc<Faults>,
    ) -> io::Result<Self> {
        let name = segment_name(number);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(dir.join(&name))?;
        file.sync_data()?;
        let allocated = file.metadata()?.len().max(len);
        Ok(SegmentFile {
            number,
            name,
            file: Arc::new(file),
            len,
            allocated,
            limit,
            dirty_tail: false,
            faults,
        })
    }

    /// Creates segment `number` (or reuses it if it exists and is empty) and makes its
    /// directory entry durable.
    pub fn create(dir: &Path, number: u64, limit: u64, faults: Arc<Faults>) -> io::Result<Self> {
        let name = segment_name(number);
        let file = crate::private_files::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(&name))?;
        if file.metadata()?.len() != 0 {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{name} already exists and is not empty"),
            ));
        }
        anchor::sync_dir(dir)?;
        Ok(SegmentFile {
            number,
            name,
            file: Arc::new(file),
            len: 0,
            allocated: 0,
            limit,
            dirty_tail: false,
            faults,
        })
    }

    /// The open file, for the flusher.
    pub fn file(&self) -> Arc<File> {
        Arc::clone(&self.file)
    }

    /// The failures a test injects into its writes and flushes.
    pub fn faults(&self) -> Arc<Faults> {
        Arc::clone(&self.faults)
    }

    /// Cuts the reserved space (and any bytes of a failed write) off the end of the file.
    pub fn trim(&mut self) -> io::Result<()> {
        if self.allocated != self.len || self.dirty_tail {
            self.file.set_len(self.len)?;
            self.allocated = self.len;
            self.dirty_tail = false;
        }
        Ok(())
    }

    /// Whether `bytes` more can be written without reserving space or cutting a failed
    /// write's tail first: an inline commit (`writer/inline.rs`) writes then, and leaves
    /// the zero-filling (up to 16 writes of 64 KiB) to the writer thread.
    pub fn fits(&self, bytes: u64) -> bool {
        !self.dirty_tail && self.len + bytes <= self.allocated
    }

    /// Reserves the next [`RESERVE_BYTES`] once less than half of that is left (up to the
    /// segment size limit): the writer thread does it between its rounds, so that the
    /// appending threads' inline commits find the space reserved.
    pub fn reserve_ahead(&mut self) -> io::Result<()> {
        if !self.reserve_due() {
            return Ok(());
        }
        self.reserve(self.allocated + 1)
    }

    /// Whether [`reserve_ahead`](Self::reserve_ahead) would write (disk I/O) now.
    pub fn reserve_due(&self) -> bool {
        self.allocated < self.limit && self.allocated - self.len < RESERVE_BYTES / 2
    }

    /// Makes sure the file holds zeros up to at least `end`, reserving ahead. The new space
    /// and size become durable with the next flush, before anything written into it is
    /// answered as durable.
    fn reserve(&mut self, end: u64) -> io::Result<()> {
        if end <= self.allocated {
            return Ok(());
        }
        self.faults.on_reserve();
        let target = (self.allocated + RESERVE_BYTES).min(self.limit).max(end);
        let mut at = self.allocated;
        while at < target {
            let n = usize::try_from(target - at).map_or(ZEROS.len(), |n| n.min(ZEROS.len()));
            self.file.write_all_at(&ZEROS[..n], at)?;
            at += n as u64;
        }
        self.allocated = target;
        Ok(())
    }

    /// Writes `bytes` after the data; with `sync`, returns once they (and everything written
    /// before them) are durable.
    pub fn append(&mut self, bytes: &[u8], sync: bool) -> io::Result<()> {
        if self.dirty_tail {
            self.trim()?;
        }
        let result = self
            .reserve(self.len + bytes.len() as u64)
            .and_then(|()| self.faults.before_write(&self.file, bytes, self.len))
            .and_then(|()| self.file.write_all_at(bytes, self.len))
            .and_then(|()| if sync { self.sync() } else { Ok(()) });
        match result {
            Ok(()) => {
                self.len += bytes.len() as u64;
                Ok(())
            }
            Err(e) => {
                self.dirty_tail = true;
                Err(e)
            }
        }
    }

    /// A commit stopped part-way (it panicked): bytes past the data may be a partial
    /// write's; cut them before writing again.
    pub fn distrust_tail(&mut self) {
        self.dirty_tail = true;
    }

    /// Writes `bytes` again at `offset`, where they already are: after a failed flush the
    /// kernel may have dropped its dirty copy of them, and a later flush that succeeds says
    /// nothing about pages no longer dirty.
    pub fn rewrite(&self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        self.faults.before_write(&self.file, bytes, offset)?;
        self.file.write_all_at(bytes, offset)
    }

    /// Makes everything written so far durable (`fdatasync`).
    pub fn sync(&self) -> io::Result<()> {
        self.faults.before_sync()?;
        self.file.sync_data()
    }
}
