//! The JWT tests' recording upstream behind `api.test` and their JWKS endpoint: the
//! one `support::Upstream`, answering every request with the JSON document a test can
//! change.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::support;

/// A request as a test server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The request target: path and query.
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Records each request and answers 200 with whatever `body` currently holds (as
/// JSON). Used as upstream and as JWKS server.
pub struct TestServer {
    pub addr: SocketAddr,
    body: Arc<Mutex<String>>,
    server: support::Upstream,
}

impl TestServer {
    pub fn start(body: &str) -> TestServer {
        Self::start_on(0, body)
    }

    /// Serve on a chosen loopback port (to bring up a server sidekey was told about).
    pub fn start_on(port: u16, body: &str) -> TestServer {
        let body = Arc::new(Mutex::new(body.to_string()));
        let current = body.clone();
        let server = support::Upstream::builder()
            .port(port)
            .responder(support::responder(move |_| {
                let text = current.lock().unwrap().clone();
                http::Response::builder()
                    .header("content-type", "application/json")
                    .body(text.into())
                    .ok()
            }))
            .start();
        TestServer {
            addr: server.addr,
            body,
            server,
        }
    }

    pub fn set_body(&self, body: &str) {
        *self.body.lock().unwrap() = body.to_string();
    }

    /// Requests answered so far.
    pub fn hits(&self) -> usize {
        self.server.count()
    }

    pub fn last(&self) -> Option<Seen> {
        self.server.requests().pop().map(|r| Seen {
            path: match &r.query {
                Some(q) => format!("{}?{q}", r.path),
                None => r.path.clone(),
            },
            headers: r.headers,
        })
    }
}
