//! Response hygiene: the injected secret never reaches the agent.
//!
//! A compromised or careless upstream may echo the credential back (debug endpoints,
//! error pages, SSE logs). On injecting routes every response header and body is
//! scanned for the secret's forms (raw, percent-encoded, base64, base64url, and the
//! exact injected value) and each hit is overwritten with `*` of the same length, so
//! `Content-Length` and chunk framing stay valid. The body is scanned as it streams:
//! only a tail that could still be the start of a secret is held back between chunks,
//! so an SSE event that ends a chunk is delivered at once.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use base64::Engine;
use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use memchr::memmem;

/// The byte strings that must never reach the agent for one injected token.
#[derive(Clone)]
pub struct Secrets {
    patterns: Arc<Vec<Vec<u8>>>,
    finders: Arc<Vec<memmem::Finder<'static>>>,
    longest: usize,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets({} patterns, redacted)", self.patterns.len())
    }
}

impl Secrets {
    /// Patterns for `token`, plus any extra exact values (e.g. the Basic credential).
    pub fn new(token: &str, extra: &[&str]) -> Self {
        let b64 = base64::engine::general_purpose::STANDARD;
        let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut patterns: Vec<Vec<u8>> = vec![
            token.as_bytes().to_vec(),
            percent_encoding::utf8_percent_encode(token, percent_encoding::NON_ALPHANUMERIC)
                .to_string()
                .into_bytes(),
            b64.encode(token).trim_end_matches('=').as_bytes().to_vec(),
            b64url.encode(token).into_bytes(),
        ];
        patterns.extend(extra.iter().map(|e| e.as_bytes().to_vec()));
        patterns.retain(|p| p.len() >= 4);
        patterns.sort();
        patterns.dedup();
        let longest = patterns.iter().map(Vec::len).max().unwrap_or(0);
        let finders = patterns
            .iter()
            .map(|p| memmem::Finder::new(p).into_owned())
            .collect();
        Secrets {
            patterns: Arc::new(patterns),
            finders: Arc::new(finders),
            longest,
        }
    }

    /// Overwrite every occurrence in `buf` with `*`; returns whether anything was hit.
    pub fn mask(&self, buf: &mut [u8]) -> bool {
        let mut hit = false;
        for f in self.finders.iter() {
            let len = f.needle().len();
            let mut at = 0;
            while let Some(i) = f.find(&buf[at..]) {
                buf[at + i..at + i + len].fill(b'*');
                at += i + len;
                hit = true;
            }
        }
        hit
    }

    /// Whether `buf` holds any pattern.
    fn contains_any(&self, buf: &[u8]) -> bool {
        self.finders.iter().any(|f| f.find(buf).is_some())
    }

    /// How many trailing bytes of `buf` could be the start of a pattern.
    fn partial_tail(&self, buf: &[u8]) -> usize {
        let max = self.longest.saturating_sub(1).min(buf.len());
        (1..=max)
            .rev()
            .find(|&n| {
                let tail = &buf[buf.len() - n..];
                self.patterns
                    .iter()
                    .any(|p| p.len() > n && p.starts_with(tail))
            })
            .unwrap_or(0)
    }

    /// Mask header values in place, and drop headers whose *name* carries a secret;
    /// returns how many were changed.
    pub fn mask_headers(&self, headers: &mut HeaderMap) -> usize {
        let named: Vec<http::HeaderName> = headers
            .keys()
            .filter(|k| self.contains_any(k.as_str().as_bytes()))
            .cloned()
            .collect();
        let mut changed = named.len();
        for name in named {
            headers.remove(name);
        }
        for value in headers.values_mut() {
            if !self.contains_any(value.as_bytes()) {
                continue; // the usual case: nothing to copy
            }
            let mut bytes = value.as_bytes().to_vec();
            if self.mask(&mut bytes)
                && let Ok(v) = http::HeaderValue::from_bytes(&bytes)
            {
                *value = v;
                changed += 1;
            }
        }
        changed
    }
}

pin_project_lite::pin_project! {
    /// A body with every secret masked as it streams.
    pub struct ScrubBody<B> {
        #[pin]
        inner: B,
        secrets: Secrets,
        carry: BytesMut,
        trailers: Option<HeaderMap>,
        done: bool,
    }
}

impl<B> ScrubBody<B> {
    pub fn new(inner: B, secrets: Secrets) -> Self {
        ScrubBody {
            inner,
            secrets,
            carry: BytesMut::new(),
            trailers: None,
            done: false,
        }
    }
}

impl<B: Body<Data = Bytes>> Body for ScrubBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        loop {
            if *this.done {
                if !this.carry.is_empty() {
                    let mut rest = std::mem::take(this.carry);
                    this.secrets.mask(&mut rest);
                    return Poll::Ready(Some(Ok(Frame::data(rest.freeze()))));
                }
                return Poll::Ready(this.trailers.take().map(|mut t| {
                    this.secrets.mask_headers(&mut t);
                    Ok(Frame::trailers(t))
                }));
            }
            match this.inner.as_mut().poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => *this.done = true,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    // Fast path: a clean chunk with nothing pending passes through
                    // without a copy.
                    Ok(data)
                        if this.carry.is_empty()
                            && !this.secrets.contains_any(&data)
                            && this.secrets.partial_tail(&data) == 0 =>
                    {
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Ok(data) => {
                        this.carry.extend_from_slice(&data);
                        this.secrets.mask(this.carry);
                        let keep = this.secrets.partial_tail(this.carry);
                        let ready = this.carry.split_to(this.carry.len() - keep);
                        if !ready.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(ready.freeze()))));
                        }
                    }
                    Err(frame) => {
                        if let Ok(t) = frame.into_trailers() {
                            *this.trailers = Some(t);
                        }
                    }
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.carry.is_empty() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    const TOKEN: &str = "xoxb-secret-1234";

    async fn scrub_chunks(chunks: Vec<&'static [u8]>) -> (Vec<Bytes>, Vec<u8>) {
        let stream = futures_util::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from_static(c)))),
        );
        let mut body = ScrubBody::new(StreamBody::new(stream), Secrets::new(TOKEN, &[]));
        let mut frames = Vec::new();
        while let Some(f) = body.frame().await {
            if let Ok(d) = f.unwrap().into_data() {
                frames.push(d);
            }
        }
        let all = frames.iter().flat_map(|b| b.iter().copied()).collect();
        (frames, all)
    }

    #[tokio::test]
    async fn masks_across_chunk_boundaries_with_same_length() {
        let (_, all) = scrub_chunks(vec![b"token=xoxb-sec", b"ret-1234; ok"]).await;
        assert_eq!(all, b"token=****************; ok");
    }

    #[tokio::test]
    async fn an_event_ending_a_chunk_is_not_held_back() {
        let (frames, _) = scrub_chunks(vec![b"data: first\n\n", b"data: second\n\n"]).await;
        assert_eq!(&frames[0][..], b"data: first\n\n");
    }

    #[tokio::test]
    async fn encoded_forms_are_masked() {
        let b64 = base64::engine::general_purpose::STANDARD.encode(TOKEN);
        let mut buf = format!("a {b64} b xoxb%2Dsecret%2D1234 c").into_bytes();
        assert!(Secrets::new(TOKEN, &[]).mask(&mut buf));
        let text = String::from_utf8(buf).unwrap();
        assert!(!text.contains(b64.trim_end_matches('=')));
        assert!(!text.contains("xoxb%2Dsecret"));
    }

    #[test]
    fn headers_are_masked() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-echo",
            http::HeaderValue::from_static("Bearer xoxb-secret-1234"),
        );
        assert_eq!(Secrets::new(TOKEN, &[]).mask_headers(&mut h), 1);
        assert_eq!(h["x-echo"], "Bearer ****************");
        assert!(!format!("{:?}", Secrets::new(TOKEN, &[])).contains("xoxb"));
    }
}
