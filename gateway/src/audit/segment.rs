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
    /// Bytes at the end of the data (end of file or first NUL byte) with no newline after
    /// them: a torn write.
    Torn(&'a [u8]),
}

/// Non-zero bytes after the end of a segment's data (its first NUL byte): the zero-filled
/// space the writer reserves ahead holds something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stray {
    /// Offset of the first non-zero byte after the data end.
    pub offset: u64,
    /// Offset just past the last non-zero byte of the file.
    pub end: u64,
}

/// Reads a segment line by line, tracking line numbers and byte offsets.
///
/// A segment's data ends at the end of the file or at its first NUL byte, whichever comes
/// first: records never contain NUL (JSON escapes it), and the writer reserves space ahead of
/// its writes by filling it with zeros.
pub struct Lines {
    reader: BufReader<File>,
    buf: Vec<u8>,
    line_no: u64,
    complete_len: u64,
    /// Bytes taken from the reader so far.
    pos: u64,
    /// Set once the end of the data was reached.
    ended: bool,
    /// Non-zero bytes seen after the data end so far.
    stray: Option<Stray>,
}

impl Lines {
    /// Starts reading `file` from its beginning.
    pub fn new(file: File) -> Lines {
        Lines {
            reader: BufReader::with_capacity(1 << 20, file),
            buf: Vec::with_capacity(4096),
            line_no: 0,
            complete_len: 0,
            pos: 0,
            ended: false,
            stray: None,
        }
    }

    /// The next line and its 1-based number, or `None` at the end of the data.
    pub fn next_line(&mut self) -> io::Result<Option<(u64, Line<'_>)>> {
        if self.ended {
            return Ok(None);
        }
        self.buf.clear();
        let read = self.reader.read_until(b'\n', &mut self.buf)?;
        let start = self.pos;
        self.pos += read as u64;
        if read == 0 {
            self.ended = true;
            return Ok(None);
        }
        if let Some(nul) = self.buf.iter().position(|&b| b == 0) {
            self.ended = true;
            note_stray(&mut self.stray, start + nul as u64, &self.buf[nul..]);
            if nul == 0 {
                return Ok(None);
            }
            self.line_no += 1;
            return Ok(Some((self.line_no, Line::Torn(&self.buf[..nul]))));
        }
        self.line_no += 1;
        match self.buf.split_last() {
            Some((b'\n', line)) => {
                self.complete_len += read as u64;
                Ok(Some((self.line_no, Line::Complete(line))))
            }
            _ => {
                self.ended = true;
                Ok(Some((self.line_no, Line::Torn(&self.buf))))
            }
        }
    }

    /// Reads the rest of the file after the end of the data and reports any non-zero bytes
    /// in it. Call it once `next_line` returned `None` or a torn line.
    pub fn stray(&mut self) -> io::Result<Option<Stray>> {
        while !self.ended {
            self.next_line()?;
        }
        loop {
            let chunk = self.reader.fill_buf()?;
            if chunk.is_empty() {
                return Ok(self.stray);
            }
            let len = chunk.len();
            note_stray(&mut self.stray, self.pos, chunk);
            self.reader.consume(len);
            self.pos += len as u64;
        }
    }

    /// The number of the last line read (0 before the first).
    pub fn line_no(&self) -> u64 {
        self.line_no
    }

    /// Bytes from the start of the file to the end of the last complete line.
    pub fn complete_len(&self) -> u64 {
        self.complete_len
    }
}

/// Adds the non-zero bytes of `bytes`, which start at file offset `offset`, to `stray`.
fn note_stray(stray: &mut Option<Stray>, offset: u64, bytes: &[u8]) {
    let (Some(first), Some(last)) = (
        bytes.iter().position(|&b| b != 0),
        bytes.iter().rposition(|&b| b != 0),
    ) else {
        return;
    };
    let end = offset + last as u64 + 1;
    *stray = Some(match *stray {
        Some(seen) => Stray {
            offset: seen.offset,
            end,
        },
        None => Stray {
            offset: offset + first as u64,
            end,
        },
    });
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
        assert_eq!(lines.stray().unwrap(), None);
    }

    fn lines_of(bytes: &[u8]) -> (tempfile::TempDir, Lines) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        File::create(&path).unwrap().write_all(bytes).unwrap();
        let lines = Lines::new(File::open(&path).unwrap());
        (dir, lines)
    }

    #[test]
    fn data_ends_at_the_zero_filled_tail() {
        let mut bytes = b"one\ntwo\n".to_vec();
        bytes.resize(3 << 20, 0);
        let (_dir, mut lines) = lines_of(&bytes);
        assert!(matches!(
            lines.next_line().unwrap(),
            Some((1, Line::Complete(b"one")))
        ));
        assert!(matches!(
            lines.next_line().unwrap(),
            Some((2, Line::Complete(b"two")))
        ));
        assert!(lines.next_line().unwrap().is_none());
        assert_eq!(lines.complete_len(), 8);
        assert_eq!(lines.stray().unwrap(), None);
    }

    #[test]
    fn a_line_cut_by_zeros_is_torn() {
        let mut bytes = b"one\ntw".to_vec();
        bytes.resize(5000, 0);
        let (_dir, mut lines) = lines_of(&bytes);
        lines.next_line().unwrap();
        assert!(matches!(
            lines.next_line().unwrap(),
            Some((2, Line::Torn(b"tw")))
        ));
        assert!(lines.next_line().unwrap().is_none());
        assert_eq!(lines.complete_len(), 4);
        assert_eq!(lines.stray().unwrap(), None);
    }

    #[test]
    fn reports_bytes_after_the_zeros_as_stray() {
        let mut bytes = b"one\n".to_vec();
        bytes.resize(100, 0);
        bytes.extend_from_slice(b"x\n\0y");
        bytes.resize(3 << 20, 0);
        bytes.push(b'z');
        bytes.resize((3 << 20) + 10, 0);
        let (_dir, mut lines) = lines_of(&bytes);
        lines.next_line().unwrap();
        assert!(lines.next_line().unwrap().is_none());
        assert_eq!(
            lines.stray().unwrap(),
            Some(Stray {
                offset: 100,
                end: (3 << 20) + 1
            })
        );
    }
}
