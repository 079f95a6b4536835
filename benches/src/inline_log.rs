//! Experiment: a hash-chained log written by the worker thread itself, with no writer thread:
//! each record encoded, chained (SHA-256 over the previous hash and the line) and handed to
//! the operating system with one `write` before the request goes on. What `process`
//! durability could cost with no hand-off between threads.

use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::Mutex;
use warden::audit::event::AuditEvent;

/// The log: its file and chain head behind one lock.
pub struct InlineLog {
    state: Mutex<State>,
}

struct State {
    file: File,
    seq: u64,
    prev: [u8; 32],
    buf: Vec<u8>,
}

impl InlineLog {
    /// Opens (creates) `records.jsonl` in `dir`.
    pub fn open(dir: &Path) -> io::Result<InlineLog> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("records.jsonl"))?;
        Ok(InlineLog {
            state: Mutex::new(State {
                file,
                seq: 0,
                prev: [0; 32],
                buf: Vec::with_capacity(2048),
            }),
        })
    }

    /// Encodes, chains and writes `event`; returns once the kernel has the line.
    pub fn append(&self, event: &AuditEvent) -> io::Result<()> {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let state = &mut *guard;
        state.seq += 1;
        state.buf.clear();
        state.buf.extend_from_slice(b"{\"seq\":");
        state
            .buf
            .extend_from_slice(itoa::Buffer::new().format(state.seq).as_bytes());
        state.buf.extend_from_slice(b",\"prev\":\"");
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for b in state.prev {
            state.buf.push(HEX[usize::from(b >> 4)]);
            state.buf.push(HEX[usize::from(b & 15)]);
        }
        state.buf.extend_from_slice(b"\",\"event\":");
        serde_json::to_writer(&mut state.buf, event).map_err(io::Error::other)?;
        state.buf.push(b'}');
        let hash: [u8; 32] = Sha256::digest(&state.buf).into();
        state.prev = hash;
        state.buf.push(b'\n');
        state.file.write_all(&state.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_line_names_the_hash_of_the_line_before() {
        let dir = tempfile::tempdir().unwrap();
        let log = InlineLog::open(dir.path()).unwrap();
        for _ in 0..3 {
            log.append(&crate::records::decision()).unwrap();
        }
        let text = std::fs::read_to_string(dir.path().join("records.jsonl")).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        let mut prev = [0u8; 32];
        for (i, line) in lines.iter().enumerate() {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(value["seq"], i as u64 + 1);
            let hex: String = prev.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(value["prev"], hex.as_str());
            assert_eq!(value["event"]["action"], "llm:chat");
            prev = Sha256::digest(line.as_bytes()).into();
        }
    }
}
