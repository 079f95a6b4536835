//! Request bodies sent with a `Content-Encoding`: decoded before they are read, inspected and
//! judged, so that a compressed body hides nothing from detectors and field-reading policies.
//!
//! `gzip` (and its alias `x-gzip`), `deflate` (zlib, or raw deflate as some clients send it),
//! `br` and `zstd` are decoded, in the reverse of the order the header lists them; `identity`
//! is nothing to decode. What decodes to more than `limits.max_request_bytes` is refused (413),
//! whatever its compressed size, so a decompression bomb costs at most that much output (beside
//! the compressed body and, for stacked codings, the stage before; a zstd frame may reserve a
//! window of at most the limit, or the 8 MiB every encoder may ask); a body that does not decode as its header says is refused (400), and an encoding Warden cannot
//! decode is refused (415) rather than sent on uninspected. The decoded body is what goes
//! upstream, without the `Content-Encoding` header: what was judged is what is sent.

use std::io::Read;

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH};
use http::{HeaderMap, StatusCode};

use crate::text::Quoted;

/// Most codings one body may be wrapped in (`gzip, br` is two).
const MAX_CODINGS: usize = 4;

/// A content coding Warden decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Gzip,
    Deflate,
    Brotli,
    Zstd,
}

impl Coding {
    /// The coding `token` names (already lower-case); `None` for `identity`.
    fn of(token: &str) -> Result<Option<Coding>, EncodingError> {
        Ok(Some(match token {
            "identity" => return Ok(None),
            "gzip" | "x-gzip" => Coding::Gzip,
            "deflate" => Coding::Deflate,
            "br" => Coding::Brotli,
            "zstd" => Coding::Zstd,
            _ => {
                return Err(EncodingError::Unsupported {
                    encoding: Quoted::of(token),
                });
            }
        }))
    }

    /// The coding's name, as a header writes it.
    pub fn name(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
            Coding::Brotli => "br",
            Coding::Zstd => "zstd",
        }
    }
}

/// Why an encoded request body is refused.
#[derive(Debug, thiserror::Error)]
pub enum EncodingError {
    /// A coding Warden cannot decode, so could not inspect.
    #[error(
        "request body has Content-Encoding {encoding}, which Warden cannot decode to inspect; \
         send it uncompressed or as gzip, deflate, br or zstd"
    )]
    Unsupported {
        /// The coding as the header names it.
        encoding: Quoted,
    },
    /// More codings than [`MAX_CODINGS`].
    #[error(
        "request body has {count} content codings; at most {MAX_CODINGS} are decoded: send it \
         uncompressed or compressed once"
    )]
    TooManyCodings {
        /// How many the header lists.
        count: usize,
    },
    /// Decoded, larger than `limits.max_request_bytes`.
    #[error(
        "request body decompresses ({coding}) to more than the {limit}-byte limit \
         (limits.max_request_bytes); send less"
    )]
    TooLarge {
        /// The coding being decoded.
        coding: &'static str,
        /// The limit, bytes.
        limit: usize,
    },
    /// Not valid in the coding its header names.
    #[error(
        "request body is not valid {coding} as its Content-Encoding says ({detail}); send it \
         encoded as declared"
    )]
    Corrupt {
        /// The coding being decoded.
        coding: &'static str,
        /// What the decoder said.
        detail: String,
    },
}

impl EncodingError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            EncodingError::Unsupported { .. } | EncodingError::TooManyCodings { .. } => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            EncodingError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            EncodingError::Corrupt { .. } => StatusCode::BAD_REQUEST,
        }
    }

    /// The stable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            EncodingError::Unsupported { .. } | EncodingError::TooManyCodings { .. } => {
                "unsupported_content_encoding"
            }
            EncodingError::TooLarge { .. } => "request_too_large",
            EncodingError::Corrupt { .. } => "bad_content_encoding",
        }
    }
}

/// Whether `headers` declare a content coding other than `identity`: such a body is read
/// whole, to be decoded before it is judged.
pub fn is_encoded(headers: &HeaderMap) -> bool {
    headers
        .get_all(CONTENT_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .any(|token| {
            let token = token.trim_ascii();
            !token.is_empty() && !token.eq_ignore_ascii_case(b"identity")
        })
}

/// `body` decoded as `headers` say it is encoded, each stage within `limit` bytes; the
/// `Content-Encoding` (and `Content-Length`) headers are then removed, since the decoded body
/// is what goes on. A body without a coding comes back as it is, its headers untouched.
pub fn decode(headers: &mut HeaderMap, body: Bytes, limit: usize) -> Result<Bytes, EncodingError> {
    let codings = codings(headers)?;
    if codings.is_empty() {
        if headers.contains_key(CONTENT_ENCODING) {
            headers.remove(CONTENT_ENCODING);
        }
        return Ok(body);
    }
    let mut body = body;
    // Codings are listed in the order they were applied: undone from the last.
    for coding in codings.into_iter().rev() {
        body = decode_one(coding, &body, limit)?;
    }
    headers.remove(CONTENT_ENCODING);
    headers.remove(CONTENT_LENGTH);
    Ok(body)
}

/// The codings `headers` list, in the order applied, without `identity`.
pub fn codings(headers: &HeaderMap) -> Result<Vec<Coding>, EncodingError> {
    let mut codings = Vec::new();
    for value in headers.get_all(CONTENT_ENCODING) {
        let text = value.to_str().map_err(|_| EncodingError::Unsupported {
            encoding: Quoted::of(&String::from_utf8_lossy(value.as_bytes())),
        })?;
        for token in text.split(',') {
            let token = token.trim().to_ascii_lowercase();
            if token.is_empty() {
                continue;
            }
            if let Some(coding) = Coding::of(&token)? {
                codings.push(coding);
            }
        }
    }
    if codings.len() > MAX_CODINGS {
        return Err(EncodingError::TooManyCodings {
            count: codings.len(),
        });
    }
    Ok(codings)
}

/// One coding undone, reading at most `limit + 1` bytes of its output.
fn decode_one(coding: Coding, body: &[u8], limit: usize) -> Result<Bytes, EncodingError> {
    let corrupt = |e: std::io::Error| EncodingError::Corrupt {
        coding: coding.name(),
        detail: e.to_string().chars().take(200).collect(),
    };
    // A frame may ask for a window of up to 128 MiB (2^27) by default. None larger than the
    // output allowed is needed, but encoders ask for up to 8 MiB (2^23, what RFC 8878 asks
    // every decoder to support) whatever the content's size.
    let window = usize::BITS - limit.saturating_sub(1).leading_zeros();
    let decoder = coding
        .decoder(body, window.clamp(23, 27))
        .map_err(corrupt)?;
    match bounded(decoder, limit).map_err(corrupt)? {
        Some(decoded) => Ok(Bytes::from(decoded)),
        None => Err(EncodingError::TooLarge {
            coding: coding.name(),
            limit,
        }),
    }
}

impl Coding {
    /// A reader of `input` decoded from this coding (a zstd frame may use a window of at most
    /// 2^`zstd_window_log` bytes). It reads `input` only as its output is read, so it also
    /// decodes a stream that arrives piece by piece: a read of `input` that fails with
    /// `WouldBlock` fails the same way, and the next read resumes where it stopped.
    pub fn decoder<'a, R: Read + Send + 'a>(
        self,
        input: R,
        zstd_window_log: u32,
    ) -> std::io::Result<Box<dyn Read + Send + 'a>> {
        Ok(match self {
            Coding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
            Coding::Deflate => Box::new(Deflate::Sniffing {
                input: Some(input),
                head: Vec::with_capacity(2),
            }),
            Coding::Brotli => Box::new(brotli::Decompressor::new(input, 8 * 1024)),
            Coding::Zstd => {
                let mut decoder = zstd::stream::read::Decoder::new(input)?;
                decoder.window_log_max(zstd_window_log)?;
                Box::new(decoder)
            }
        })
    }
}

/// A `deflate` body decoded as zlib (RFC 1950), as it should be, or as raw deflate (RFC 1951),
/// as some clients send it: which one its first two bytes say.
enum Deflate<R: Read> {
    /// Reading the first two bytes (`head`).
    Sniffing {
        input: Option<R>,
        head: Vec<u8>,
    },
    Zlib(flate2::read::ZlibDecoder<std::io::Chain<std::io::Cursor<Vec<u8>>, R>>),
    Raw(flate2::read::DeflateDecoder<std::io::Chain<std::io::Cursor<Vec<u8>>, R>>),
}

impl<R: Read> Read for Deflate<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            match self {
                Deflate::Zlib(decoder) => return decoder.read(buf),
                Deflate::Raw(decoder) => return decoder.read(buf),
                Deflate::Sniffing { input, head } => {
                    let Some(reader) = input.as_mut() else {
                        return Ok(0);
                    };
                    let mut byte = [0u8; 2];
                    let wanted = 2 - head.len();
                    let n = reader.read(&mut byte[..wanted])?;
                    head.extend_from_slice(&byte[..n]);
                    if n != 0 && head.len() < 2 {
                        continue;
                    }
                    let (Some(input), head) = (input.take(), std::mem::take(head)) else {
                        return Ok(0);
                    };
                    let zlib = is_zlib(&head);
                    let input = std::io::Cursor::new(head).chain(input);
                    *self = if zlib {
                        Deflate::Zlib(flate2::read::ZlibDecoder::new(input))
                    } else {
                        Deflate::Raw(flate2::read::DeflateDecoder::new(input))
                    };
                }
            }
        }
    }
}

/// What `reader` yields, or `None` when that is more than `limit` bytes (only `limit + 1` of
/// them are ever read).
fn bounded(reader: impl Read, limit: usize) -> std::io::Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map(|n| (n <= limit).then_some(out))
}

/// Whether `body` starts with a zlib header (RFC 1950), as `deflate` should; some clients send
/// raw deflate (RFC 1951) instead, which is decoded too.
fn is_zlib(body: &[u8]) -> bool {
    match body {
        [cmf, flg, ..] => cmf & 0x0f == 8 && (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0,
        _ => false,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::Write;

    use super::*;

    const TEXT: &[u8] = br#"{"title":"key AKIAIOSFODNN7EXAMPLE leaked"}"#;

    fn headers(encoding: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_ENCODING, encoding.parse().unwrap());
        h.insert(CONTENT_LENGTH, "10".parse().unwrap());
        h
    }

    /// `data` gzipped.
    pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// `data` in brotli.
    /// `data` as `deflate` is sent: zlib-wrapped (RFC 1950), and raw (RFC 1951) as some
    /// servers send it.
    pub(crate) fn deflated(data: &[u8]) -> [Vec<u8>; 2] {
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        zlib.write_all(data).unwrap();
        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        raw.write_all(data).unwrap();
        [zlib.finish().unwrap(), raw.finish().unwrap()]
    }

    pub(crate) fn brotli(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
        w.write_all(data).unwrap();
        drop(w);
        out
    }

    #[test]
    fn each_coding_is_decoded_and_its_headers_removed() {
        let [zlib, raw] = deflated(TEXT);
        let zstd = zstd::stream::encode_all(TEXT, 3).unwrap();
        for (encoding, body) in [
            ("gzip", gzip(TEXT)),
            ("x-gzip", gzip(TEXT)),
            ("deflate", zlib),
            ("Deflate", raw),
            ("br", brotli(TEXT)),
            ("zstd", zstd),
            ("identity, gzip", gzip(TEXT)),
        ] {
            let mut h = headers(encoding);
            assert!(is_encoded(&h), "{encoding}");
            let decoded = decode(&mut h, Bytes::from(body), 1024).expect(encoding);
            assert_eq!(&decoded[..], TEXT, "{encoding}");
            assert!(!h.contains_key(CONTENT_ENCODING), "{encoding}");
            assert!(!h.contains_key(CONTENT_LENGTH), "{encoding}");
        }
    }

    #[test]
    fn a_zstd_frame_asking_for_a_window_past_what_the_limit_needs_is_refused() {
        use std::io::Write as _;
        let framed = |window_log: u32| {
            let mut e = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
            e.set_parameter(zstd::stream::raw::CParameter::WindowLog(window_log))
                .unwrap();
            e.write_all(TEXT).unwrap();
            e.finish().unwrap()
        };
        // 128 MiB of window reserved for a body allowed 1 MiB: refused unread.
        let refused = decode(&mut headers("zstd"), Bytes::from(framed(27)), 1 << 20);
        assert!(
            matches!(refused, Err(EncodingError::Corrupt { .. })),
            "{refused:?}"
        );
        // 8 MiB, what encoders ask whatever the size, is served.
        let served = decode(&mut headers("zstd"), Bytes::from(framed(23)), 1 << 20).unwrap();
        assert_eq!(&served[..], TEXT);
    }

    #[test]
    fn stacked_codings_are_undone_from_the_last_applied() {
        let mut h = headers("gzip, br");
        let body = brotli(&gzip(TEXT));
        assert_eq!(&decode(&mut h, Bytes::from(body), 1024).unwrap()[..], TEXT);
        let mut h = headers("gzip,gzip,gzip,gzip,gzip");
        let refused = decode(&mut h, Bytes::from(gzip(TEXT)), 1024).unwrap_err();
        assert_eq!(refused.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }

    #[test]
    fn a_body_without_a_coding_is_left_as_it_is() {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_LENGTH, "3".parse().unwrap());
        assert!(!is_encoded(&h));
        assert!(!is_encoded(&headers("identity")));
        let body = Bytes::from_static(b"abc");
        assert_eq!(decode(&mut h, body.clone(), 1).unwrap(), body);
        assert!(h.contains_key(CONTENT_LENGTH));
    }

    #[test]
    fn a_decompression_bomb_is_refused_having_read_at_most_the_limit() {
        // 64 MiB of zeros: about 64 KiB compressed.
        let bomb = gzip(&vec![0u8; 64 << 20]);
        assert!(bomb.len() < 128 << 10);
        let refused = decode(&mut headers("gzip"), Bytes::from(bomb), 1 << 20).unwrap_err();
        assert_eq!(refused.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(
            refused.to_string().contains("limits.max_request_bytes"),
            "{refused}"
        );
        let exact = decode(&mut headers("gzip"), Bytes::from(gzip(TEXT)), TEXT.len());
        assert!(exact.is_ok(), "exactly the limit is within it");
        let over = decode(
            &mut headers("gzip"),
            Bytes::from(gzip(TEXT)),
            TEXT.len() - 1,
        );
        assert!(matches!(over, Err(EncodingError::TooLarge { .. })));
    }

    #[test]
    fn an_unknown_coding_or_a_corrupt_body_is_refused_with_what_to_do() {
        let unknown = decode(&mut headers("compress"), Bytes::from_static(b"x"), 10).unwrap_err();
        assert_eq!(unknown.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(unknown.code(), "unsupported_content_encoding");
        assert!(
            unknown.to_string().contains("Content-Encoding compress"),
            "{unknown}"
        );
        assert!(unknown.to_string().contains("send it uncompressed"));
        let corrupt = decode(&mut headers("gzip"), Bytes::from_static(TEXT), 1024).unwrap_err();
        assert_eq!(corrupt.status(), StatusCode::BAD_REQUEST);
        assert_eq!(corrupt.code(), "bad_content_encoding");
        let corrupt = decode(&mut headers("zstd"), Bytes::from_static(TEXT), 1024).unwrap_err();
        assert_eq!(corrupt.status(), StatusCode::BAD_REQUEST);
    }
}
