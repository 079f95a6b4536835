//! A compressed response decoded as it streams, so that Warden reads (judges, redacts, reads the
//! usage of) what the agent's client would decode, and serves it uncompressed.
//!
//! The codings are those a request body may come in (`gzip`, `deflate`, `br`, `zstd`, stacked
//! up to four), decoded by the same decoders. Memory stays bounded whatever the ratio: the
//! upstream is read one frame at a time, and a frame's output is handed on at most
//! [`CHUNK`] bytes at a time before anything more is read; a zstd frame may use a window of at
//! most 8 MiB (what RFC 9659 sets for the `zstd` content coding).

use std::collections::VecDeque;
use std::io::{ErrorKind, Read};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;

use crate::protocol::encoding::{self, Coding, EncodingError};

/// Most decoded bytes handed on at once.
pub const CHUNK: usize = 16 * 1024;

/// The largest zstd window a response may use: 2^23 bytes (RFC 9659).
const ZSTD_WINDOW_LOG: u32 = 23;

/// Why a compressed response stopped decoding part way.
#[derive(Debug, thiserror::Error)]
#[error(
    "the upstream's response is not valid {codings} as its content-encoding says ({detail}); \
     the rest was not delivered: the upstream must answer uncompressed or encoded as declared"
)]
pub struct Undecodable {
    /// The codings, as the header lists them.
    codings: String,
    /// What the decoder said.
    detail: String,
}

/// The compressed bytes received and not yet decoded, shared between the body (which adds
/// them) and the decoders (which read them).
#[derive(Debug, Default, Clone)]
struct Feed(Arc<Mutex<Fed>>);

#[derive(Debug, Default)]
struct Fed {
    bytes: VecDeque<u8>,
    /// The upstream's body has ended: nothing more will be added.
    ended: bool,
}

impl Feed {
    fn with<T>(&self, f: impl FnOnce(&mut Fed) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Read for Feed {
    /// What was received; `WouldBlock` when that is all read and more may come.
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.with(|fed| {
            if fed.bytes.is_empty() && !fed.ended {
                return Err(ErrorKind::WouldBlock.into());
            }
            fed.bytes.read(buf)
        })
    }
}

/// A response body's codings undone as its bytes arrive.
pub struct Decoder {
    feed: Feed,
    reader: Box<dyn Read + Send>,
    /// The codings, as the header lists them (for the error).
    codings: String,
    /// All was decoded: the decoders reached their end.
    finished: bool,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("codings", &self.codings)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl Decoder {
    /// A decoder of a body with `headers`, `None` when it has no coding (or only `identity`);
    /// an error when Warden cannot decode it.
    pub fn of(headers: &HeaderMap) -> Result<Option<Decoder>, EncodingError> {
        let codings = encoding::codings(headers)?;
        if codings.is_empty() {
            return Ok(None);
        }
        let names = codings
            .iter()
            .map(|c| c.name())
            .collect::<Vec<_>>()
            .join(", ");
        Ok(Some(Decoder::new(&codings, names)))
    }

    fn new(codings: &[Coding], names: String) -> Decoder {
        let feed = Feed::default();
        let mut reader: Box<dyn Read + Send> = Box::new(feed.clone());
        let mut failed = None;
        // Codings are listed in the order they were applied: undone from the last.
        for coding in codings.iter().rev() {
            match coding.decoder(reader, ZSTD_WINDOW_LOG) {
                Ok(decoder) => reader = decoder,
                Err(e) => {
                    // Only zstd fails here, before it reads anything: the error is the
                    // decoder's first read.
                    failed = Some(e);
                    reader = Box::new(std::io::empty());
                }
            }
        }
        let reader = match failed {
            Some(e) => Box::new(Failing(Some(e))),
            None => reader,
        };
        Decoder {
            feed,
            reader,
            codings: names,
            finished: false,
        }
    }

    /// Adds the compressed bytes `data` received.
    pub fn push(&mut self, data: &[u8]) {
        self.feed.with(|fed| fed.bytes.extend(data));
    }

    /// The upstream's body has ended.
    pub fn end(&mut self) {
        self.feed.with(|fed| fed.ended = true);
    }

    /// Whether all was decoded (the upstream's body ended and the decoders reached their end).
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// At most [`CHUNK`] more decoded bytes; `None` when more must be received first, or when
    /// all was decoded ([`Decoder::is_finished`]). A truncated or corrupt body fails it, and
    /// so do bytes after the end of what the codings encode, unless the decoder stops at its
    /// end and drops them (they are never handed on).
    pub fn pull(&mut self) -> Result<Option<Bytes>, Undecodable> {
        if self.finished {
            return Ok(None);
        }
        let mut out = BytesMut::zeroed(CHUNK);
        let mut n = 0;
        while n < CHUNK {
            match self.reader.read(&mut out[n..]) {
                Ok(0) => {
                    let (ended, left) = self.feed.with(|fed| (fed.ended, fed.bytes.len()));
                    if left != 0 {
                        return Err(self.undecodable(format!(
                            "{left} bytes after the end of the compressed data"
                        )));
                    }
                    // The codings ended: the body must end too (anything more is refused).
                    self.finished = ended;
                    break;
                }
                Ok(read) => n += read,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(self.undecodable(e.to_string())),
            }
        }
        out.truncate(n);
        Ok((n != 0).then(|| out.freeze()))
    }

    fn undecodable(&mut self, detail: String) -> Undecodable {
        self.finished = true;
        Undecodable {
            codings: self.codings.clone(),
            detail: detail.chars().take(200).collect(),
        }
    }
}

/// A reader whose first read fails with the error a decoder was built with.
struct Failing(Option<std::io::Error>);

impl Read for Failing {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Err(self
            .0
            .take()
            .unwrap_or_else(|| std::io::Error::other("the decoder failed")))
    }
}

#[cfg(test)]
mod tests {

    use http::HeaderValue;
    use http::header::CONTENT_ENCODING;

    use super::*;
    use crate::protocol::encoding::tests::{brotli, deflated, gzip};

    const TEXT: &[u8] = b"data: {\"choices\":[{\"delta\":{\"content\":\"sk-echoed\"}}]}\n\n";

    fn decoder(encoding: &str) -> Decoder {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_ENCODING, HeaderValue::from_str(encoding).unwrap());
        Decoder::of(&h).unwrap().expect(encoding)
    }

    /// `body` fed to `d` `piece` bytes at a time, all it decodes pulled after each piece.
    fn stream(d: &mut Decoder, body: &[u8], piece: usize) -> Result<Vec<u8>, Undecodable> {
        let mut out = Vec::new();
        for piece in body.chunks(piece) {
            d.push(piece);
            while let Some(data) = d.pull()? {
                assert!(data.len() <= CHUNK);
                out.extend_from_slice(&data);
            }
            assert!(!d.is_finished());
        }
        d.end();
        while let Some(data) = d.pull()? {
            out.extend_from_slice(&data);
        }
        assert!(d.is_finished());
        Ok(out)
    }

    fn encodings() -> Vec<(&'static str, Vec<u8>)> {
        let [zlib, raw] = deflated(TEXT);
        let two_members = [gzip(&TEXT[..10]), gzip(&TEXT[10..])].concat();
        vec![
            ("gzip", gzip(TEXT)),
            ("x-gzip", two_members),
            ("deflate", zlib),
            ("deflate", raw),
            ("br", brotli(TEXT)),
            ("zstd", zstd::stream::encode_all(TEXT, 3).unwrap()),
            ("gzip, br", brotli(&gzip(TEXT))),
        ]
    }

    #[test]
    fn each_coding_decodes_whatever_pieces_the_body_arrives_in() {
        for (encoding, body) in encodings() {
            for piece in [1, 2, 7, body.len()] {
                let out = stream(&mut decoder(encoding), &body, piece).expect(encoding);
                assert_eq!(out, TEXT, "{encoding} in pieces of {piece}");
            }
        }
    }

    #[test]
    fn a_bomb_is_handed_on_a_chunk_at_a_time() {
        // 64 MiB of zeros in about 64 KiB: each pull gives at most CHUNK bytes.
        let bomb = gzip(&vec![0u8; 64 << 20]);
        let mut d = decoder("gzip");
        d.push(&bomb);
        let first = d.pull().unwrap().unwrap();
        assert_eq!(first.len(), CHUNK);
        let second = d.pull().unwrap().unwrap();
        assert_eq!(second.len(), CHUNK);
        assert!(!d.is_finished());
    }

    #[test]
    fn a_truncated_or_corrupt_body_fails_and_bytes_after_its_end_are_never_delivered() {
        for (encoding, body) in encodings() {
            let truncated = &body[..body.len() - 3];
            let failed = stream(&mut decoder(encoding), truncated, 5);
            assert!(failed.is_err(), "{encoding} truncated");
            // Bytes after the end are never delivered: the framing refuses them (gzip's next
            // member, zstd's next frame), or the decoder stops at its end (deflate's last
            // block, brotli's last meta-block) and drops them.
            let mut trailing = body.clone();
            trailing.extend_from_slice(b"more");
            if let Ok(out) = stream(&mut decoder(encoding), &trailing, 5) {
                assert_eq!(out, TEXT, "{encoding} with bytes after its end");
            }
        }
        for encoding in ["gzip", "zstd"] {
            let body = encodings()
                .into_iter()
                .find(|(e, _)| *e == encoding)
                .unwrap()
                .1;
            let failed = stream(&mut decoder(encoding), &[&body[..], b"more"].concat(), 5);
            assert!(failed.is_err(), "{encoding} with bytes after its end");
        }
        let failed = stream(&mut decoder("gzip"), TEXT, 5).unwrap_err();
        let message = failed.to_string();
        assert!(message.contains("not valid gzip"), "{message}");
        assert!(message.contains("must answer uncompressed"), "{message}");
    }

    #[test]
    fn a_coding_warden_cannot_decode_or_none_has_no_decoder() {
        let mut h = HeaderMap::new();
        assert!(Decoder::of(&h).unwrap().is_none());
        h.insert(CONTENT_ENCODING, HeaderValue::from_static("identity"));
        assert!(Decoder::of(&h).unwrap().is_none());
        h.insert(CONTENT_ENCODING, HeaderValue::from_static("compress"));
        assert!(Decoder::of(&h).is_err());
    }
}
