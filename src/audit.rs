//! The audit trail: one JSON line per request, written off the request path.
//!
//! Records are serialised by the request task into a shared buffer; one writer thread
//! wakes every few milliseconds and writes the batch to stdout (or `audit: {file}`), so
//! the request path never pays a thread wake-up or a syscall per record. At shutdown
//! [`AuditSink::flush`] writes everything queued: nothing is lost.

use std::borrow::Cow;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde::Serialize;

/// Longest user, host or path written; longer values are cut (and marked with `…`).
const MAX_FIELD: usize = 1024;

/// One audit record, as the contract names its fields. Never holds a token or query.
/// It borrows from the request's state: serialised once, on the request path, without
/// copying a field.
#[derive(Debug, Serialize)]
pub struct AuditRecord<'a> {
    pub ts: &'a str,
    pub request_id: &'a str,
    pub trace_id: Option<&'a str>,
    pub agent: &'a str,
    pub user: Option<Cow<'a, str>>,
    pub groups: Option<Vec<Cow<'a, str>>>,
    pub auth_context: &'static str,
    pub route: Option<&'a str>,
    pub credential: Option<&'a str>,
    pub decision: &'static str,
    pub error: Option<&'static str>,
    pub method: Cow<'a, str>,
    pub scheme: &'static str,
    pub host: Cow<'a, str>,
    pub path: Cow<'a, str>,
    pub status: u16,
    pub upstream_ms: Option<f64>,
    pub total_ms: f64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// One entry per JSON-RPC message of an MCP POST; null on other requests.
    pub mcp: Option<&'a [crate::mcp::gate::AuditEntry]>,
}

/// Cut a client-controlled value to a bounded length on a char boundary (borrowed as
/// it is when short enough, the usual case).
pub fn bounded(value: &str) -> Cow<'_, str> {
    if value.len() <= MAX_FIELD {
        return Cow::Borrowed(value);
    }
    let mut end = MAX_FIELD;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…", &value[..end]))
}

/// How often the writer thread wakes to write what has been queued. Batching keeps the
/// request path free of a thread wake-up per record.
const WRITE_INTERVAL: Duration = Duration::from_millis(20);

struct Queue {
    buf: Mutex<Vec<u8>>,
    /// Signalled to ask for an immediate write (flush) or to stop.
    wake: Condvar,
    stop: AtomicBool,
}

#[derive(Clone)]
pub struct AuditSink {
    queue: Arc<Queue>,
    writer: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl AuditSink {
    /// Start the writer thread on stdout or on `file` (appended, created if missing).
    pub fn start(file: Option<&Path>) -> std::io::Result<Self> {
        let out: Box<dyn Write + Send> = match file {
            Some(p) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            ),
            None => Box::new(std::io::stdout()),
        };
        let queue = Arc::new(Queue {
            buf: Mutex::new(Vec::with_capacity(64 * 1024)),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let q = queue.clone();
        let handle = std::thread::Builder::new()
            .name("sidekey-audit".into())
            .spawn(move || writer(&q, out))?;
        Ok(AuditSink {
            queue,
            writer: Arc::new(Mutex::new(Some(handle))),
        })
    }

    /// Queue one record; it is written within [`WRITE_INTERVAL`].
    pub fn write(&self, record: &AuditRecord) {
        self.write_event(record);
    }

    /// Queue any other audit line (the connect flow's `event: connect` records).
    pub fn write_event(&self, record: &impl Serialize) {
        let mut buf = lock(&self.queue.buf);
        let before = buf.len();
        match serde_json::to_writer(&mut *buf, record) {
            Ok(()) => buf.push(b'\n'),
            Err(e) => {
                buf.truncate(before);
                tracing::error!(error = %e, "cannot serialise audit record");
            }
        }
    }

    /// Write and flush everything queued so far, and stop the writer thread. Called
    /// once at shutdown, after the last request finished.
    pub fn flush(&self) {
        self.queue.stop.store(true, Ordering::SeqCst);
        self.queue.wake.notify_all();
        if let Some(handle) = lock(&self.writer).take() {
            let _ = handle.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn writer(q: &Queue, out: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    let mut batch = Vec::with_capacity(64 * 1024);
    loop {
        let stopping = {
            let guard = lock(&q.buf);
            let (mut guard, _) = q
                .wake
                .wait_timeout_while(guard, WRITE_INTERVAL, |_| !q.stop.load(Ordering::SeqCst))
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            std::mem::swap(&mut *guard, &mut batch);
            q.stop.load(Ordering::SeqCst)
        };
        if !batch.is_empty() {
            if let Err(e) = out.write_all(&batch).and_then(|()| out.flush()) {
                eprintln!("sidekey: cannot write audit records: {e}");
            }
            batch.clear();
        }
        if stopping {
            // Records queued after the stop flag (none, once requests have drained)
            // still get written before the thread ends.
            let rest = std::mem::take(&mut *lock(&q.buf));
            let _ = out.write_all(&rest).and_then(|()| out.flush());
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_cuts_on_char_boundaries() {
        let long = "é".repeat(MAX_FIELD);
        let cut = bounded(&long);
        assert!(cut.len() <= MAX_FIELD + "…".len());
        assert!(cut.ends_with('…'));
        assert_eq!(bounded("short"), "short");
    }

    #[test]
    fn records_reach_the_file_before_flush_returns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let sink = AuditSink::start(Some(&path)).unwrap();
        for i in 0..100 {
            let id = format!("r{i}");
            sink.write(&AuditRecord {
                ts: "t",
                request_id: &id,
                trace_id: None,
                agent: "a",
                user: Some("line\nbreak".into()),
                groups: None,
                auth_context: "none",
                route: None,
                credential: None,
                decision: "deny",
                error: Some("route_denied"),
                method: "GET".into(),
                scheme: "http",
                host: "h".into(),
                path: "/".into(),
                status: 403,
                upstream_ms: None,
                total_ms: 0.1,
                bytes_in: 0,
                bytes_out: 0,
                mcp: None,
            });
        }
        sink.flush();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 100);
        let v: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(v["user"], "line\nbreak");
        assert!(v["mcp"].is_null(), "mcp must be present and null: {v}");
    }
}
