//! The audit trail: one JSON line per request, written off the request path.
//!
//! Records are serialised by the request task and handed to one writer thread over a
//! channel, which writes them to stdout (or `audit: {file}`) and flushes whenever the
//! queue runs dry, so a record is visible as soon as the writer is idle. [`AuditSink::
//! flush`] waits for everything queued before it: shutdown loses nothing.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;

use serde::Serialize;

/// Longest user, host or path written; longer values are cut (and marked with `…`).
const MAX_FIELD: usize = 1024;

/// One audit record, as the contract names its fields. Never holds a token or query.
#[derive(Debug, Serialize)]
pub struct AuditRecord {
    pub ts: String,
    pub request_id: String,
    pub trace_id: Option<String>,
    pub agent: Arc<str>,
    pub user: Option<String>,
    pub groups: Option<Vec<String>>,
    pub auth_context: &'static str,
    pub route: Option<Arc<str>>,
    pub credential: Option<Arc<str>>,
    pub decision: &'static str,
    pub error: Option<&'static str>,
    pub method: String,
    pub scheme: &'static str,
    pub host: String,
    pub path: String,
    pub status: u16,
    pub upstream_ms: Option<f64>,
    pub total_ms: f64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// Cut a client-controlled value to a bounded length on a char boundary.
pub fn bounded(value: &str) -> String {
    if value.len() <= MAX_FIELD {
        return value.to_string();
    }
    let mut end = MAX_FIELD;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &value[..end])
}

enum Msg {
    Line(Vec<u8>),
    Flush(mpsc::SyncSender<()>),
}

#[derive(Clone)]
pub struct AuditSink {
    tx: mpsc::Sender<Msg>,
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
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("sidekey-audit".into())
            .spawn(move || writer(rx, out))?;
        Ok(AuditSink { tx })
    }

    pub fn write(&self, record: &AuditRecord) {
        match serde_json::to_vec(record) {
            Ok(mut line) => {
                line.push(b'\n');
                if self.tx.send(Msg::Line(line)).is_err() {
                    tracing::error!("audit writer is gone; record lost");
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot serialise audit record"),
        }
    }

    /// Block until everything queued so far is written and flushed.
    pub fn flush(&self) {
        let (done_tx, done_rx) = mpsc::sync_channel(1);
        if self.tx.send(Msg::Flush(done_tx)).is_ok() {
            let _ = done_rx.recv_timeout(std::time::Duration::from_secs(5));
        }
    }
}

fn writer(rx: mpsc::Receiver<Msg>, out: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Line(line) => {
                    if let Err(e) = out.write_all(&line) {
                        eprintln!("sidekey: cannot write audit record: {e}");
                    }
                }
                Msg::Flush(done) => {
                    let _ = out.flush();
                    let _ = done.send(());
                }
            }
            next = rx.try_recv().ok();
        }
        let _ = out.flush();
    }
    let _ = out.flush();
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
            sink.write(&AuditRecord {
                ts: "t".into(),
                request_id: format!("r{i}"),
                trace_id: None,
                agent: Arc::from("a"),
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
            });
        }
        sink.flush();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 100);
        let v: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(v["user"], "line\nbreak");
    }
}
