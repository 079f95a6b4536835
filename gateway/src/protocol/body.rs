//! Reading a request body whole, within the size and time the configuration allows
//! (`limits.max_request_bytes`, `limits.body_timeout`), or as far as inspection needs before
//! the rest streams on; a body with a `Content-Encoding` is read whole and decoded
//! (`encoding.rs`).

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::config::LimitsConfig;
use super::encoding::{self, EncodingError};

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Larger than `limits.max_request_bytes` (declared or as sent).
    #[error(
        "request body is larger than the {limit}-byte limit (limits.max_request_bytes); send less"
    )]
    TooLarge {
        /// The limit, bytes.
        limit: usize,
    },
    /// Not received whole within `limits.body_timeout`.
    #[error(
        "request body was not received within {}s (limits.body_timeout); send it in one go",
        after.as_secs_f64()
    )]
    Timeout {
        /// The time allowed.
        after: Duration,
    },
    /// The connection failed while the body was being read.
    #[error("could not read the request body: {0}")]
    Read(String),
    /// Its `Content-Encoding` could not be undone for inspection.
    #[error(transparent)]
    Encoding(#[from] EncodingError),
}

impl BodyError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Timeout { .. } => StatusCode::REQUEST_TIMEOUT,
            BodyError::Read(_) => StatusCode::BAD_REQUEST,
            BodyError::Encoding(e) => e.status(),
        }
    }

    /// The stable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            BodyError::TooLarge { .. } => "request_too_large",
            BodyError::Timeout { .. } => "request_body_timeout",
            BodyError::Read(_) => "body_read_failed",
            BodyError::Encoding(e) => e.code(),
        }
    }
}

/// Reads `body` whole. A declared `Content-Length` over the limit is refused before any byte
/// is read.
pub async fn read<B>(
    body: B,
    headers: &http::HeaderMap,
    limits: &LimitsConfig,
) -> Result<Bytes, BodyError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let limit = limits.max_request_bytes;
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    let collect = Limited::new(body, limit).collect();
    match tokio::time::timeout(limits.body_timeout, collect).await {
        Err(_) => Err(BodyError::Timeout {
            after: limits.body_timeout,
        }),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<LengthLimitError>() => Err(BodyError::TooLarge { limit }),
        Ok(Err(e)) => Err(BodyError::Read(e.to_string())),
    }
}

/// A body read as far as a bound: whole, or its first bytes and the rest still to come.
pub enum Head<B> {
    /// The body ended within the bound.
    Whole(Bytes),
    /// More than the bound: the bytes read so far (more than the bound) and the rest.
    Streaming(Bytes, B),
}

/// Reads `body` whole when it ends within `bound` bytes (at most
/// `limits.max_request_bytes`); otherwise stops once more than that is read and hands back the
/// rest unread, whatever its size: what streams on is never held whole. The bytes read must
/// come within `limits.body_timeout`.
pub async fn read_head<B>(
    mut body: B,
    limits: &LimitsConfig,
    bound: usize,
) -> Result<Head<B>, BodyError>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let bound = bound.min(limits.max_request_bytes);
    let read = async {
        let mut head = bytes::BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| BodyError::Read(e.to_string()))?;
            if let Ok(data) = frame.into_data() {
                head.extend_from_slice(&data);
                if head.len() > bound {
                    return Ok((head.freeze(), false));
                }
            }
        }
        Ok::<_, BodyError>((head.freeze(), true))
    };
    let (head, whole) = tokio::time::timeout(limits.body_timeout, read)
        .await
        .map_err(|_| BodyError::Timeout {
            after: limits.body_timeout,
        })??;
    Ok(if whole {
        Head::Whole(head)
    } else {
        Head::Streaming(head, body)
    })
}

/// Reads `body` for inspection: whole when `whole` or when it has a `Content-Encoding` (then
/// decoded within `limits.max_request_bytes`, its coding headers removed from `head`: the
/// decoded body is what goes on); otherwise as [`read_head`] does up to `stream_above`.
pub async fn read_for_inspection<B>(
    body: B,
    head: &mut http::request::Parts,
    limits: &LimitsConfig,
    whole: bool,
    stream_above: usize,
) -> Result<Head<B>, BodyError>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    if whole || encoding::is_encoded(&head.headers) {
        return Ok(Head::Whole(
            read_decoded(body, &mut head.headers, limits).await?,
        ));
    }
    read_head(body, limits, stream_above).await
}

/// Reads `body` whole ([`read`]) and, when `headers` name a `Content-Encoding`, decodes it
/// within `limits.max_request_bytes`, its coding headers removed from `headers`: the decoded
/// body is what is judged and what goes on.
pub async fn read_decoded<B>(
    body: B,
    headers: &mut http::HeaderMap,
    limits: &LimitsConfig,
) -> Result<Bytes, BodyError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let read = read(body, headers, limits).await?;
    if !encoding::is_encoded(headers) {
        return Ok(read);
    }
    Ok(encoding::decode(headers, read, limits.max_request_bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, StreamBody};
    use hyper::body::Frame;

    fn limits(max: usize, timeout_ms: u64) -> LimitsConfig {
        LimitsConfig {
            max_request_bytes: max,
            body_timeout: Duration::from_millis(timeout_ms),
            ..LimitsConfig::default()
        }
    }

    #[tokio::test]
    async fn reads_a_body_within_the_limits() {
        let body = Full::new(Bytes::from_static(b"{\"model\":\"m\"}"));
        let read = read(body, &http::HeaderMap::new(), &limits(100, 1000)).await;
        assert_eq!(read.unwrap(), Bytes::from_static(b"{\"model\":\"m\"}"));
    }

    #[tokio::test]
    async fn a_declared_or_actual_oversized_body_is_refused() {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::CONTENT_LENGTH, "101".parse().unwrap());
        let declared = read(Full::new(Bytes::new()), &headers, &limits(100, 1000)).await;
        assert!(matches!(declared, Err(BodyError::TooLarge { limit: 100 })));
        let sent = read(
            Full::new(Bytes::from(vec![b'x'; 101])),
            &http::HeaderMap::new(),
            &limits(100, 1000),
        )
        .await;
        let error = sent.unwrap_err();
        assert_eq!(error.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(error.code(), "request_too_large");
    }

    #[tokio::test]
    async fn a_body_trickled_in_too_slowly_is_refused_in_bounded_time() {
        // One byte, then nothing: a client holding the connection open.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(1);
        tx.send(Ok(Frame::data(Bytes::from_static(b"{"))))
            .await
            .unwrap();
        let body = StreamBody::new(tokio_stream_from(rx));
        let started = std::time::Instant::now();
        let error = read(body, &http::HeaderMap::new(), &limits(100, 200))
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(error.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(error.code(), "request_body_timeout");
        assert!(error.to_string().contains("limits.body_timeout"), "{error}");
        drop(tx);
    }

    #[tokio::test]
    async fn an_encoded_body_is_read_whole_and_decoded_past_the_streaming_bound() {
        use std::io::Write as _;
        let text = vec![b'a'; 4096];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&text).unwrap();
        let (mut head, ()) = http::Request::builder()
            .header(http::header::CONTENT_ENCODING, "gzip")
            .body(())
            .unwrap()
            .into_parts();
        let body = Full::new(Bytes::from(gz.finish().unwrap()));
        let read = read_for_inspection(body, &mut head, &limits(8192, 1000), false, 16)
            .await
            .expect("decoded");
        assert!(
            matches!(read, Head::Whole(b) if b[..] == text[..]),
            "whole and decoded"
        );
        assert!(!head.headers.contains_key(http::header::CONTENT_ENCODING));
        let (mut plain, ()) = http::Request::new(()).into_parts();
        let body = Full::new(Bytes::from(text.clone()));
        let read = read_for_inspection(body, &mut plain, &limits(8192, 1000), false, 16)
            .await
            .expect("read");
        assert!(
            matches!(read, Head::Streaming(..)),
            "a plain body streams past the bound"
        );
    }

    #[tokio::test]
    async fn a_whole_body_is_decoded_as_its_content_encoding_says_and_refused_when_it_cannot_be() {
        use std::io::Write as _;
        let message = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(message).unwrap();
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::CONTENT_ENCODING, "gzip".parse().unwrap());
        let body = Full::new(Bytes::from(gz.finish().unwrap()));
        let read = read_decoded(body, &mut headers, &limits(8192, 1000)).await;
        assert_eq!(read.expect("decoded"), Bytes::from_static(message));
        assert!(!headers.contains_key(http::header::CONTENT_ENCODING));
        // A plain body is read as it is.
        let body = Full::new(Bytes::from_static(message));
        let read = read_decoded(body, &mut http::HeaderMap::new(), &limits(8192, 1000)).await;
        assert_eq!(read.expect("read"), Bytes::from_static(message));
        // A coding Warden cannot undo is refused, not read as malformed JSON.
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::CONTENT_ENCODING, "compress".parse().unwrap());
        let body = Full::new(Bytes::from_static(message));
        let error = read_decoded(body, &mut headers, &limits(8192, 1000))
            .await
            .unwrap_err();
        assert_eq!(error.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        // A bomb: what decodes past the limit is refused.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![b' '; 64 * 1024]).unwrap();
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::CONTENT_ENCODING, "gzip".parse().unwrap());
        let body = Full::new(Bytes::from(gz.finish().unwrap()));
        let error = read_decoded(body, &mut headers, &limits(8192, 1000))
            .await
            .unwrap_err();
        assert_eq!(error.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    /// The receiving end of a channel as a stream of frames.
    fn tokio_stream_from(
        mut rx: tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, std::io::Error>>,
    ) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, std::io::Error>> {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}
