//! SSE answers of an MCP server, filtered event by event: each complete event is
//! passed on as soon as its blank line arrives, rewritten only when it answers one of
//! the POST's `tools/list` requests; every other event goes on byte for byte.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame};
use serde_json::Value;

use super::filter::{ListFilter, MAX_ANSWER_BYTES};
use crate::proxy::forward::{BoxError, UpstreamBody};

/// Rewrite one complete SSE event (its bytes up to and including the blank line).
/// `None`: pass it on as it is.
pub fn filter_event(event: &[u8], filter: &ListFilter) -> Option<Bytes> {
    let text = std::str::from_utf8(event).ok()?;
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let mut data: Vec<&str> = Vec::new();
    for l in &lines {
        if let Some(v) = l.strip_prefix("data")
            && (v.is_empty() || v.starts_with(':'))
        {
            let v = v.strip_prefix(':').unwrap_or(v);
            data.push(v.strip_prefix(' ').unwrap_or(v));
        }
    }
    if data.is_empty() {
        return None;
    }
    let mut v: Value = serde_json::from_str(&data.join("\n")).ok()?;
    if !filter.answer(&mut v) {
        return None;
    }
    let mut out = String::with_capacity(event.len());
    let mut wrote_data = false;
    for l in lines.iter().filter(|l| !l.is_empty()) {
        let is_data = l
            .strip_prefix("data")
            .is_some_and(|v| v.is_empty() || v.starts_with(':'));
        if !is_data {
            out.push_str(l);
            out.push('\n');
        } else if !wrote_data {
            wrote_data = true;
            out.push_str("data: ");
            out.push_str(&serde_json::to_string(&v).unwrap_or_default());
            out.push('\n');
        }
    }
    out.push('\n');
    Some(Bytes::from(out))
}

/// Where the first complete event of `buf` ends (after its blank line), scanning from
/// `from`; also where scanning may resume next time when there is none.
fn event_end(buf: &[u8], from: usize) -> Result<usize, usize> {
    let mut line_start = from;
    while let Some(i) = memchr::memchr(b'\n', &buf[line_start..]) {
        let nl = line_start + i;
        let line = &buf[line_start..nl];
        if line.is_empty() || line == b"\r" {
            return Ok(nl + 1);
        }
        line_start = nl + 1;
    }
    Err(line_start)
}

pin_project_lite::pin_project! {
    /// An SSE body filtered event by event.
    pub struct SseFilter {
        #[pin]
        inner: UpstreamBody,
        filter: ListFilter,
        buf: BytesMut,
        scanned: usize,
        ready: VecDeque<Frame<Bytes>>,
        done: bool,
    }
}

impl SseFilter {
    pub fn new(inner: UpstreamBody, filter: ListFilter) -> Self {
        SseFilter {
            inner,
            filter,
            buf: BytesMut::new(),
            scanned: 0,
            ready: VecDeque::new(),
            done: false,
        }
    }
}

/// Move every complete event of `buf` to `ready` (filtered where needed).
fn drain_events(
    buf: &mut BytesMut,
    scanned: &mut usize,
    ready: &mut VecDeque<Frame<Bytes>>,
    filter: &ListFilter,
) {
    let mut plain = 0;
    loop {
        match event_end(buf, (*scanned).max(plain)) {
            Ok(end) => {
                let event = &buf[plain..end];
                if let Some(rewritten) = filter_event(event, filter) {
                    if plain > 0 {
                        ready.push_back(Frame::data(buf.split_to(plain).freeze()));
                    }
                    let _ = buf.split_to(end - plain);
                    ready.push_back(Frame::data(rewritten));
                    plain = 0;
                    *scanned = 0;
                } else {
                    plain = end;
                }
            }
            Err(resume) => {
                // Untouched events go on at once, in one frame.
                if plain > 0 {
                    ready.push_back(Frame::data(buf.split_to(plain).freeze()));
                }
                *scanned = resume - plain;
                return;
            }
        }
    }
}

impl Body for SseFilter {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        loop {
            if let Some(f) = this.ready.pop_front() {
                return Poll::Ready(Some(Ok(f)));
            }
            if *this.done {
                return Poll::Ready(None);
            }
            match this.inner.as_mut().poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        this.buf.extend_from_slice(&data);
                        drain_events(this.buf, this.scanned, this.ready, this.filter);
                        if this.buf.len() > MAX_ANSWER_BYTES {
                            return Poll::Ready(Some(Err(
                                "an SSE event of the MCP server is too large to filter".into(),
                            )));
                        }
                    }
                    Err(other) => this.ready.push_back(other),
                },
                Poll::Ready(None) => {
                    *this.done = true;
                    // An unterminated last event is still checked before it goes on.
                    if !this.buf.is_empty() {
                        let rest = this.buf.split().freeze();
                        let out = filter_event(&rest, this.filter).unwrap_or(rest);
                        this.ready.push_back(Frame::data(out));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http_body_util::BodyExt;
    use serde_json::json;
    use tokio::sync::mpsc;

    use super::*;
    use crate::mcp::filter::tests::{filter, list_answer};

    #[test]
    fn events_are_rewritten_only_when_they_answer_a_list() {
        let f = filter(vec![json!(1)]);
        let ev = format!(
            "event: message\r\nid: 9\r\ndata: {}\r\n\r\n",
            list_answer(1)
        );
        let out = String::from_utf8(filter_event(ev.as_bytes(), &f).unwrap().to_vec()).unwrap();
        let expected = json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": [{"name": "get_a"}], "nextCursor": "c2"}});
        assert_eq!(out, format!("event: message\nid: 9\ndata: {expected}\n\n"));
        let notice =
            "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n";
        assert!(filter_event(notice.as_bytes(), &f).is_none());
        assert!(filter_event(b": keep-alive\n\n", &f).is_none());
        // Multi-line data is joined before parsing.
        let split = format!(
            "data: {{\"jsonrpc\":\"2.0\",\"id\":1,\ndata: \"result\":{}}}\n\n",
            list_answer(1)["result"]
        );
        assert!(filter_event(split.as_bytes(), &f).is_some());
    }

    struct ChannelBody(mpsc::Receiver<Bytes>);

    impl Body for ChannelBody {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
        }
    }

    async fn next(body: &mut SseFilter) -> Option<Bytes> {
        let f = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("a frame in time")?;
        Some(f.expect("no error").into_data().expect("data"))
    }

    #[tokio::test]
    async fn other_events_pass_at_once_and_byte_for_byte() {
        let (tx, rx) = mpsc::channel(8);
        let mut body = SseFilter::new(ChannelBody(rx).boxed_unsync(), filter(vec![json!(1)]));
        let notice =
            "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"}\n\n";
        let (a, b) = notice.split_at(20);
        tx.send(Bytes::from(a)).await.unwrap();
        tx.send(Bytes::from(b)).await.unwrap();
        // The first event arrives while the stream is still open.
        assert_eq!(next(&mut body).await.unwrap(), notice.as_bytes());
        let list = format!("data: {}\n\n", list_answer(1));
        let (a, b) = list.split_at(30);
        tx.send(Bytes::from(a.to_string())).await.unwrap();
        tx.send(Bytes::from(format!("{b}: ping\n\n")))
            .await
            .unwrap();
        let filtered = next(&mut body).await.unwrap();
        let text = std::str::from_utf8(&filtered).unwrap();
        assert!(
            text.starts_with("data: ") && text.ends_with("\n\n"),
            "{text:?}"
        );
        assert!(
            !text.contains("drop_b") && text.contains("get_a") && text.contains("c2"),
            "{text}"
        );
        assert_eq!(next(&mut body).await.unwrap(), ": ping\n\n".as_bytes());
        drop(tx);
        assert!(next(&mut body).await.is_none());
    }
}
