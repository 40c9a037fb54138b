//! Request/response bodies for tests: empty, fixed bytes, a lazily generated
//! deterministic byte pattern (for large streams), and a channel-fed body.
//!
//! The pattern byte at absolute offset `i` is `(i % 251) as u8`, so both ends can
//! verify content and length of multi-megabyte streams without holding them.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};
use tokio::sync::mpsc;

/// The body type the client helpers send.
pub type ReqBody = BoxBody<Bytes, std::io::Error>;

pub const CHUNK: usize = 64 * 1024;

pub fn empty() -> ReqBody {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}

pub fn full(data: impl Into<Bytes>) -> ReqBody {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed()
}

/// The pattern bytes for `[off, off+len)`.
pub fn pattern_chunk(off: u64, len: usize) -> Bytes {
    let mut v = Vec::with_capacity(len);
    let mut x = (off % 251) as u8;
    for _ in 0..len {
        v.push(x);
        x = if x == 250 { 0 } else { x + 1 };
    }
    Bytes::from(v)
}

/// Checks `data` against the pattern starting at absolute offset `off`.
pub fn pattern_matches(off: u64, data: &[u8]) -> bool {
    let mut x = (off % 251) as u8;
    for &b in data {
        if b != x {
            return false;
        }
        x = if x == 250 { 0 } else { x + 1 };
    }
    true
}

/// A streamed body of `total` pattern bytes in 64 KiB frames, generated lazily.
/// With `exact_size` false the size is unknown (chunked on HTTP/1.1).
pub struct PatternBody {
    off: u64,
    total: u64,
    exact_size: bool,
}

impl Body for PatternBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if self.off >= self.total {
            return Poll::Ready(None);
        }
        let len = (self.total - self.off).min(CHUNK as u64) as usize;
        let chunk = pattern_chunk(self.off, len);
        self.off += len as u64;
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.exact_size && self.off >= self.total
    }

    fn size_hint(&self) -> SizeHint {
        if self.exact_size {
            SizeHint::with_exact(self.total - self.off)
        } else {
            SizeHint::default()
        }
    }
}

/// `total` pattern bytes, streamed with unknown length (chunked).
pub fn pattern_body(total: u64) -> ReqBody {
    PatternBody {
        off: 0,
        total,
        exact_size: false,
    }
    .boxed()
}

/// `total` pattern bytes, streamed with a known length (Content-Length).
pub fn pattern_body_sized(total: u64) -> ReqBody {
    PatternBody {
        off: 0,
        total,
        exact_size: true,
    }
    .boxed()
}

/// A body fed from a channel; the body ends when the sender is dropped.
pub struct ChanBody<E> {
    rx: mpsc::Receiver<Bytes>,
    _e: std::marker::PhantomData<fn() -> E>,
}

impl<E> ChanBody<E> {
    pub fn new(rx: mpsc::Receiver<Bytes>) -> Self {
        ChanBody {
            rx,
            _e: std::marker::PhantomData,
        }
    }
}

impl<E> Body for ChanBody<E> {
    type Data = Bytes;
    type Error = E;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, E>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(b)) => Poll::Ready(Some(Ok(Frame::data(b)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A request body the test pushes chunks into; drop the sender to end it.
pub fn channel_body() -> (mpsc::Sender<Bytes>, ReqBody) {
    let (tx, rx) = mpsc::channel(4);
    (tx, ChanBody::<std::io::Error>::new(rx).boxed())
}

/// A fixed body as the client's body type (for requests built with `Full`).
pub fn full_body(b: Full<Bytes>) -> ReqBody {
    b.map_err(|never| match never {}).boxed()
}
