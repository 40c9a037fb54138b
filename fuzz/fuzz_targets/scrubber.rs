//! Response scrubbing on an arbitrary token and an arbitrary chunking of a body that
//! carries it in every form sidekey masks (raw, percent-encoded, base64, base64url).
//!
//! After `ScrubBody`: the output has exactly the input's length; every byte is either
//! the input byte or `*`; no form of the token remains anywhere in the output; and
//! `Secrets::mask_headers` leaves no header value holding the token.
//!
//! Tokens shorter than 4 bytes are not masked by design (`Secrets` ignores them), and a
//! token containing `*` (the mask byte) could be rebuilt from masks, so both are skipped.
#![no_main]

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use base64::Engine;
use bytes::Bytes;
use http_body::{Body, Frame};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use sidekey::scrub::{ScrubBody, Secrets};

/// A body that hands out pre-cut chunks, always ready.
struct Chunks(VecDeque<Bytes>);

impl Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }
}

#[derive(Arbitrary, Debug)]
enum Piece {
    Noise(Vec<u8>),
    Raw,
    Percent,
    Base64,
    Base64Url,
    /// The first `n` bytes of the raw token (a near miss).
    Prefix(u8),
}

#[derive(Arbitrary, Debug)]
struct Input {
    token: String,
    pieces: Vec<Piece>,
    cuts: Vec<u16>,
}

fn forms(token: &str) -> Vec<Vec<u8>> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    vec![
        token.as_bytes().to_vec(),
        percent_encoding::utf8_percent_encode(token, percent_encoding::NON_ALPHANUMERIC)
            .to_string()
            .into_bytes(),
        b64.encode(token).trim_end_matches('=').as_bytes().to_vec(),
        b64url.encode(token).into_bytes(),
    ]
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

fuzz_target!(|input: Input| {
    let token = input.token.as_str();
    if token.len() < 4 || token.len() > 256 || token.contains('*') {
        return;
    }
    let forms = forms(token);
    let mut body = Vec::new();
    for p in input.pieces.iter().take(32) {
        match p {
            Piece::Noise(n) => body.extend_from_slice(&n[..n.len().min(256)]),
            Piece::Raw => body.extend_from_slice(&forms[0]),
            Piece::Percent => body.extend_from_slice(&forms[1]),
            Piece::Base64 => body.extend_from_slice(&forms[2]),
            Piece::Base64Url => body.extend_from_slice(&forms[3]),
            Piece::Prefix(n) => {
                let n = (*n as usize).min(token.len());
                body.extend_from_slice(&token.as_bytes()[..n]);
            }
        }
    }

    // Cut the body into chunks at the given offsets (empty chunks included).
    let mut chunks = VecDeque::new();
    let mut at = 0usize;
    for c in input.cuts.iter().take(64) {
        let len = (*c as usize) % (body.len().saturating_sub(at) + 1);
        chunks.push_back(Bytes::copy_from_slice(&body[at..at + len]));
        at += len;
    }
    chunks.push_back(Bytes::copy_from_slice(&body[at..]));

    let secrets = Secrets::new(token, &[]);
    let mut scrub = ScrubBody::new(Chunks(chunks), secrets.clone());
    let mut out = Vec::with_capacity(body.len());
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        match Pin::new(&mut scrub).poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Ok(d) = frame.into_data() {
                    out.extend_from_slice(&d);
                }
            }
            Poll::Ready(Some(Err(never))) => match never {},
            Poll::Ready(None) => break,
            Poll::Pending => panic!("an always-ready body made the scrubber wait"),
        }
    }

    assert_eq!(out.len(), body.len(), "scrubbing changed the length");
    for (i, (o, b)) in out.iter().zip(&body).enumerate() {
        assert!(
            o == b || *o == b'*',
            "byte {i} changed to {o:#x}, not to a mask"
        );
    }
    for (k, f) in forms.iter().enumerate() {
        assert!(
            !contains(&out, f),
            "form {k} of the token survived: {:?}",
            String::from_utf8_lossy(&out)
        );
    }

    // Header values: the same masking, in place.
    if let Ok(v) = http::HeaderValue::from_bytes(&body) {
        let mut h = http::HeaderMap::new();
        h.insert("x-echo", v);
        secrets.mask_headers(&mut h);
        let after = h["x-echo"].as_bytes();
        assert_eq!(after.len(), body.len());
        assert!(
            !contains(after, &forms[0]),
            "token survived in a header value"
        );
    }
});
