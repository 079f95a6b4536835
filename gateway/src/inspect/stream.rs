//! Inspection of a body that is too large to hold: the content detectors run over it chunk by
//! chunk, each chunk scanned after the last [`CARRY`] bytes of what came before, so a match
//! that straddles two chunks is seen whole while no more than a chunk and the carried window
//! is ever held. A match that reaches the end of what has come so far may be longer than it
//! looks: it is judged once more of the body (or its end) has come.

use std::sync::Arc;

use super::config::InspectConfig;
use super::{PRIVATE_KEY_DETECTOR, private_key, scan};
use crate::action::Finding;

/// Bytes of what came before that each chunk is scanned after: longer than any match the
/// detectors need to see whole (a PEM block's opening line, a key, an e-mail address, a value
/// assigned to a secret's name), with room for the context their patterns read around it.
pub const CARRY: usize = 4096;
/// A match that ends this close to the end of what has come is judged later.
const UNSETTLED: usize = 512;

/// The detectors over one body, as it streams by.
pub struct StreamScan {
    config: Arc<InspectConfig>,
    /// The carried window and the chunk being scanned.
    window: Vec<u8>,
    /// Where `window` starts in the body.
    start: u64,
    /// Detectors already reported (each once, at its first match, as whole-body inspection).
    reported: Vec<&'static str>,
    /// Bytes at the end of what has come that the detectors have not judged yet.
    unsettled: usize,
}

impl StreamScan {
    /// A scan with the detectors `config` enables.
    pub fn new(config: Arc<InspectConfig>) -> StreamScan {
        StreamScan {
            config,
            window: Vec::with_capacity(2 * CARRY),
            start: 0,
            reported: Vec::new(),
            unsettled: 0,
        }
    }

    /// What the detectors find in `chunk`, the next bytes of the body (`last`: the body ends
    /// with it), that they had not reported yet: each detector once, located by its byte in
    /// the whole body.
    pub fn feed(&mut self, chunk: &[u8], last: bool) -> Vec<Finding> {
        self.window.extend_from_slice(chunk);
        let settled = if last {
            self.window.len()
        } else {
            self.window.len().saturating_sub(UNSETTLED)
        };
        let mut found = Vec::new();
        let config = &*self.config;
        let mut matches = scan::spans(&self.window, config);
        if config.enabled(PRIVATE_KEY_DETECTOR)
            && let Some(at) = private_key(&self.window)
        {
            matches.push((PRIVATE_KEY_DETECTOR, at..at + 1));
        }
        for (detector, span) in matches {
            if span.end <= settled && !self.reported.contains(&detector) {
                self.reported.push(detector);
                found.push(Finding {
                    detector: Arc::from(detector),
                    location: format!("body, byte {}", self.start + span.start as u64),
                });
            }
        }
        self.unsettled = self.window.len() - settled;
        let keep = CARRY.max(self.unsettled);
        if self.window.len() > keep {
            let drop = self.window.len() - keep;
            self.window.drain(..drop);
            self.start += drop as u64;
        }
        found
    }

    /// How many bytes at the end of what has come the detectors have not judged yet (they
    /// are judged with what follows, or at the end): what must not leave yet.
    pub fn unsettled(&self) -> usize {
        self.unsettled
    }

    /// The carried window and the last chunk: what a canary search of the same chunk reads.
    pub fn window(&self) -> &[u8] {
        &self.window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AWS: &str = "AKIAIOSFODNN7EXAMPLE";

    fn streamed(body: &[u8], chunk: usize) -> Vec<String> {
        let mut scan = StreamScan::new(Arc::new(InspectConfig::default()));
        let mut found = Vec::new();
        let chunks: Vec<&[u8]> = body.chunks(chunk).collect();
        for (i, c) in chunks.iter().enumerate() {
            found.extend(scan.feed(c, i + 1 == chunks.len()));
            assert!(
                scan.window().len() <= CARRY + chunk,
                "the window stays bounded"
            );
        }
        found
            .iter()
            .map(|f| format!("{} at {}", f.detector, f.location))
            .collect()
    }

    #[test]
    fn a_match_across_any_chunk_boundary_is_found_once_where_it_starts() {
        let mut body = vec![b'x'; 20_000];
        body.extend_from_slice(format!(" key {AWS} and ").as_bytes());
        body.extend_from_slice(&[b'y'; 3000]);
        let at = 20_005;
        for chunk in [1, 7, 100, 1000, 4096, 8192, 20_003, 20_010, 64 * 1024] {
            assert_eq!(
                streamed(&body, chunk),
                [format!("aws_access_key at body, byte {at}")],
                "chunks of {chunk}"
            );
        }
    }

    #[test]
    fn findings_match_whole_body_inspection_and_a_truncated_look_alike_is_not_one() {
        let body = format!(
            "{}mail jane.doe@acme-corp.com\n-----BEGIN RSA PRIVATE KEY-----\nMIIE\n{}card 4111 1111 1111 1111 end",
            "a".repeat(9000),
            "b".repeat(7000)
        );
        let mut whole = crate::action::Findings::none();
        super::super::inspect(&mut whole, body.as_bytes(), &InspectConfig::default());
        let mut whole: Vec<String> = whole
            .0
            .iter()
            .map(|f| format!("{} at {}", f.detector, f.location))
            .collect();
        whole.sort();
        for chunk in [3, 333, 4096, 5000] {
            let mut found = streamed(body.as_bytes(), chunk);
            found.sort();
            assert_eq!(found, whole, "chunks of {chunk}");
        }
        // Digits at the end of what has come may go on: judged once more has come.
        let mut scan = StreamScan::new(Arc::new(InspectConfig::default()));
        assert!(scan.feed(b"card 4111 1111 1111 1111", false).is_empty());
        let found = scan.feed(b"1 end", true);
        assert!(found.is_empty(), "17 digits are no card: {found:?}");
        let mut scan = StreamScan::new(Arc::new(InspectConfig::default()));
        assert!(scan.feed(b"card 4111 1111 1111 1111", false).is_empty());
        assert_eq!(scan.feed(b" end", true).len(), 1);
    }
}
