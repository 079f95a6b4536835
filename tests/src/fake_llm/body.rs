//! Response bodies of the fake upstream: a whole buffer, or chunks sent one by one.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// A response body: whole, or a channel of chunks each written as its own frame (`None`: the
/// body fails there, and the connection is cut mid-body).
#[derive(Debug)]
pub enum FakeBody {
    Full(Option<Bytes>),
    Chunks(mpsc::Receiver<Option<Bytes>>),
}

impl FakeBody {
    /// A body sent in one piece.
    pub fn full(bytes: impl Into<Bytes>) -> FakeBody {
        FakeBody::Full(Some(bytes.into()))
    }

    /// A streamed body and the sender feeding it; the body ends when the sender is dropped, and
    /// is cut short where it sends `None`.
    pub fn channel() -> (mpsc::Sender<Option<Bytes>>, FakeBody) {
        let (tx, rx) = mpsc::channel(1);
        (tx, FakeBody::Chunks(rx))
    }
}

impl Body for FakeBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.get_mut() {
            FakeBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            FakeBody::Chunks(rx) => rx.poll_recv(cx).map(|chunk| {
                chunk.map(|b| {
                    b.map(Frame::data)
                        .ok_or_else(|| std::io::Error::other("the fake upstream cut the body"))
                })
            }),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, FakeBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            FakeBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            FakeBody::Full(None) => SizeHint::with_exact(0),
            FakeBody::Chunks(_) => SizeHint::default(),
        }
    }
}
