//! A tiny HTTP/1.1 server on loopback for the JWT tests: the recording upstream
//! behind `api.test`, and a JWKS endpoint whose document a test can change.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// A request as a test server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
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

/// A tiny HTTP/1.1 server on loopback: records each request and answers with
/// whatever `body` currently holds (as JSON). Used as upstream and as JWKS server.
pub struct TestServer {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub body: Arc<Mutex<String>>,
    pub hits: Arc<AtomicUsize>,
}

impl TestServer {
    pub fn start(body: &str) -> TestServer {
        Self::start_on(0, body)
    }

    /// Serve on a chosen loopback port (to bring up a server sidekey was told about).
    pub fn start_on(port: u16, body: &str) -> TestServer {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind");
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let body = Arc::new(Mutex::new(body.to_string()));
        let hits = Arc::new(AtomicUsize::new(0));
        let (s, b, h) = (seen.clone(), body.clone(), hits.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let (s, b, h) = (s.clone(), b.clone(), h.clone());
                std::thread::spawn(move || serve(stream, &s, &b, &h));
            }
        });
        TestServer {
            addr,
            seen,
            body,
            hits,
        }
    }

    pub fn set_body(&self, body: &str) {
        *self.body.lock().unwrap() = body.to_string();
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn last(&self) -> Option<Seen> {
        self.seen.lock().unwrap().last().cloned()
    }
}

fn serve(stream: TcpStream, seen: &Mutex<Vec<Seen>>, body: &Mutex<String>, hits: &AtomicUsize) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        let mut headers = Vec::new();
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let mut discard = vec![0; length];
        let _ = reader.read_exact(&mut discard);
        hits.fetch_add(1, Ordering::SeqCst);
        seen.lock().unwrap().push(Seen { path, headers });
        let text = body.lock().unwrap().clone();
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{text}",
            text.len()
        );
        if reader.get_mut().write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}
