//! Segment files (`audit-000001.jsonl`, ...): naming, listing, and reading them line by line.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

const PREFIX: &str = "audit-";
const SUFFIX: &str = ".jsonl";

/// The file name of segment `number`.
pub fn segment_name(number: u64) -> String {
    format!("{PREFIX}{number:06}{SUFFIX}")
}

/// The number of a segment file name; `None` for any other file (side files, `head.json`).
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    if digits.len() < 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The segments in `dir`, oldest first, as (number, file name).
pub fn list_segments(dir: &Path) -> io::Result<Vec<(u64, String)>> {
    let mut segments = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if let Some(number) = parse_segment_name(&name) {
            segments.push((number, name));
        }
    }
    segments.sort_unstable();
    Ok(segments)
}

/// One line read from a segment.
pub enum Line<'a> {
    /// A line ended by a newline (the newline is not included).
    Complete(&'a [u8]),
    /// Bytes at the end of the file with no newline after them: a torn write.
    Torn(&'a [u8]),
}

/// Reads a segment line by line, tracking line numbers and byte offsets.
pub struct Lines {
    reader: BufReader<File>,
    buf: Vec<u8>,
    line_no: u64,
    complete_len: u64,
}

impl Lines {
    /// Starts reading `file` from its beginning.
    pub fn new(file: File) -> Lines {
        Lines {
            reader: BufReader::with_capacity(1 << 20, file),
            buf: Vec::with_capacity(4096),
            line_no: 0,
            complete_len: 0,
        }
    }

    /// The next line and its 1-based number, or `None` at the end of the file.
    pub fn next_line(&mut self) -> io::Result<Option<(u64, Line<'_>)>> {
        self.buf.clear();
        let read = self.reader.read_until(b'\n', &mut self.buf)?;
        if read == 0 {
            return Ok(None);
        }
        self.line_no += 1;
        match self.buf.split_last() {
            Some((b'\n', line)) => {
                self.complete_len += read as u64;
                Ok(Some((self.line_no, Line::Complete(line))))
            }
            _ => Ok(Some((self.line_no, Line::Torn(&self.buf)))),
        }
    }

    /// Bytes from the start of the file to the end of the last complete line.
    pub fn complete_len(&self) -> u64 {
        self.complete_len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn segment_names_round_trip_and_side_files_are_not_segments() {
        assert_eq!(segment_name(1), "audit-000001.jsonl");
        assert_eq!(parse_segment_name("audit-000001.jsonl"), Some(1));
        assert_eq!(parse_segment_name("audit-1234567.jsonl"), Some(1_234_567));
        assert_eq!(parse_segment_name("audit-000003.jsonl.torn-17"), None);
        assert_eq!(parse_segment_name("audit-12.jsonl"), None);
        assert_eq!(parse_segment_name("head.json"), None);
    }

    #[test]
    fn reports_a_final_line_without_newline_as_torn() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        File::create(&path)
            .unwrap()
            .write_all(b"one\ntwo\nthr")
            .unwrap();
        let mut lines = Lines::new(File::open(&path).unwrap());
        assert!(matches!(
            lines.next_line().unwrap(),
            Some((1, Line::Complete(b"one")))
        ));
        assert!(matches!(
            lines.next_line().unwrap(),
            Some((2, Line::Complete(b"two")))
        ));
        assert!(matches!(
            lines.next_line().unwrap(),
            Some((3, Line::Torn(b"thr")))
        ));
        assert_eq!(lines.complete_len(), 8);
        assert!(lines.next_line().unwrap().is_none());
    }
}
