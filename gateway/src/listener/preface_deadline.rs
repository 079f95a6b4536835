//! A deadline on the first bytes of a connection, while hyper-util's auto builder reads them
//! to choose HTTP/1 or HTTP/2.
//!
//! That detection has no timeout of its own, so a client that connects and sends nothing (or
//! a partial HTTP/2 preface) would hold a task forever. Once the bytes settle the version
//! (a mismatch with the preface, the whole 24-byte preface, or EOF) the deadline is dropped:
//! from there hyper's HTTP/1 header-read timeout or HTTP/2 keep-alive take over.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Duration, Instant, Sleep};

/// The HTTP/2 client connection preface.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pin_project! {
    /// An I/O stream whose reads fail with `TimedOut` if the HTTP version is not settled in time.
    pub(super) struct PrefaceDeadline<I> {
        #[pin]
        io: I,
        #[pin]
        deadline: Sleep,
        // Preface bytes matched so far; `None` once the version is settled.
        matched: Option<usize>,
    }
}

impl<I> PrefaceDeadline<I> {
    /// Wraps `io`; the version must be settled within `limit` from now.
    pub(super) fn new(io: I, limit: Duration) -> Self {
        PrefaceDeadline {
            io,
            deadline: tokio::time::sleep_until(Instant::now() + limit),
            matched: Some(0),
        }
    }
}

impl<I: AsyncRead> AsyncRead for PrefaceDeadline<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let Some(matched) = *this.matched else {
            return this.io.poll_read(cx, buf);
        };
        if this.deadline.poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "client did not start an HTTP request in time",
            )));
        }
        let before = buf.filled().len();
        let polled = this.io.poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let fresh = &buf.filled()[before..];
            let end = matched + fresh.len();
            let settled =
                fresh.is_empty() || end >= H2_PREFACE.len() || H2_PREFACE[matched..end] != *fresh;
            *this.matched = if settled { None } else { Some(end) };
        }
        polled
    }
}

impl<I: AsyncWrite> AsyncWrite for PrefaceDeadline<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const LIMIT: Duration = Duration::from_millis(150);

    #[tokio::test]
    async fn silent_client_times_out() {
        let (client, server) = tokio::io::duplex(64);
        let mut guarded = Box::pin(PrefaceDeadline::new(server, LIMIT));
        let mut buf = [0u8; 24];
        let err = guarded
            .read(&mut buf)
            .await
            .expect_err("silent client must time out");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        drop(client);
    }

    #[tokio::test]
    async fn stalled_partial_h2_preface_times_out() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut guarded = Box::pin(PrefaceDeadline::new(server, LIMIT));
        client.write_all(&H2_PREFACE[..5]).await.expect("write");
        let mut buf = [0u8; 24];
        assert_eq!(guarded.read(&mut buf).await.expect("first bytes"), 5);
        let err = guarded
            .read(&mut buf)
            .await
            .expect_err("stalled preface must time out");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn http1_bytes_lift_the_deadline() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut guarded = Box::pin(PrefaceDeadline::new(server, LIMIT));
        client
            .write_all(b"GET / HTTP/1.1\r\n")
            .await
            .expect("write");
        let mut buf = [0u8; 64];
        assert_eq!(guarded.read(&mut buf).await.expect("request line"), 16);
        // Well past the deadline, an idle read is no longer cut short by it.
        tokio::time::sleep(LIMIT * 2).await;
        client.write_all(b"\r\n").await.expect("write");
        assert_eq!(guarded.read(&mut buf).await.expect("later bytes"), 2);
    }

    #[tokio::test]
    async fn full_h2_preface_lifts_the_deadline() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut guarded = Box::pin(PrefaceDeadline::new(server, LIMIT));
        client.write_all(H2_PREFACE).await.expect("write");
        let mut buf = [0u8; 24];
        guarded.read_exact(&mut buf).await.expect("preface");
        tokio::time::sleep(LIMIT * 2).await;
        client.write_all(b"x").await.expect("write");
        assert_eq!(guarded.read(&mut buf).await.expect("later bytes"), 1);
    }
}
