//! The README's quick example is true: `config/dev.yaml` (its ports made ephemeral)
//! with `scripts/echo_upstream.py` as the upstream. A claw call's answer shows the
//! injected token masked, while the echo upstream prints the real one it received; an
//! assistant call injects the user's token; an unknown user gets `credential_missing`
//! with a signed connect link, connects through `scripts/dev_oauth_provider.py` (the
//! README's "Connecting users' accounts") and is injected next; an unrouted call
//! `route_denied`; the gateway serves the echo.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::*;

/// The echo upstream process; its stderr (the headers it received) captured.
struct Echo {
    child: Child,
    printed: Arc<Mutex<String>>,
}

impl Echo {
    fn start(port: u16) -> Echo {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/echo_upstream.py");
        let mut child = Command::new(Tool::Python.path())
            .arg(script)
            .arg(port.to_string())
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start scripts/echo_upstream.py");
        let printed = Arc::new(Mutex::new(String::new()));
        let sink = printed.clone();
        let stderr = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let echo = Echo { child, printed };
        echo.wait_for(&format!("echo upstream on http://127.0.0.1:{port}"));
        echo
    }

    fn printed(&self) -> String {
        self.printed.lock().unwrap().clone()
    }

    /// Waits until the echo upstream has printed `needle`.
    fn wait_for(&self, needle: &str) {
        let t0 = Instant::now();
        while !self.printed().contains(needle) {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "the echo upstream never printed {needle:?}; it printed:\n{}",
                self.printed()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `scripts/dev_oauth_provider.py` on `port`, redirecting to connect pages on `connect`.
struct DevProvider(Child);

impl DevProvider {
    fn start(port: u16, connect: u16) -> DevProvider {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/dev_oauth_provider.py");
        let mut child = Command::new(Tool::Python.path())
            .arg(script)
            .arg(port.to_string())
            .arg(format!("http://127.0.0.1:{connect}/callback"))
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start scripts/dev_oauth_provider.py");
        let mut line = String::new();
        let _ = BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line);
        assert!(line.contains("dev OAuth provider on"), "{line:?}");
        DevProvider(child)
    }
}

impl Drop for DevProvider {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Copies `from` (a directory tree) to `to`.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let dest = to.join(e.file_name());
        if e.path().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_quick_example_shows_the_injection() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let port = free_port();
    let echo = Echo::start(port);

    let (cport, pport) = (free_port(), free_port());
    let provider = DevProvider::start(pport, cport);
    let dev = std::fs::read_to_string(root.join("config/dev.yaml")).unwrap();
    let yaml = dev
        .replace("\nlisten: 127.0.0.1:15080\n", "\nlisten: 127.0.0.1:0\n")
        .replace(
            "\nadmin_listen: 127.0.0.1:15090\n",
            "\nadmin_listen: 127.0.0.1:0\n",
        )
        .replace("127.0.0.1:18080", &format!("127.0.0.1:{port}"))
        .replace("127.0.0.1:15091", &format!("127.0.0.1:{cport}"))
        .replace("127.0.0.1:18081", &format!("127.0.0.1:{pport}"));
    for fixed in ["15080", "15090", "18080", "15091", "18081"] {
        assert!(
            !yaml.contains(fixed),
            "config/dev.yaml changed shape: {fixed} still in it"
        );
    }
    let dir = ConfigDir::new();
    copy_tree(
        &root.join("config/dev-secrets"),
        &dir.path().join("dev-secrets"),
    );
    let sk = Sidekey::builder(&yaml).in_dir(dir).start_async().await;

    let ready = http_get(sk.admin_addr, "/readyz").await;
    assert_eq!((ready.status, ready.text().as_str()), (200, "ready\n"));

    // claw: the answer has the injected token masked, the upstream got the real one.
    let r = proxy_get(
        sk.proxy_addr,
        "http://echo.local/claw/hello",
        &[("authorization", "Bearer agent-made-this-up")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let masked = format!("Bearer {}", "*".repeat("dev-echo-bot-token".len()));
    assert_eq!(r.json()["headers"]["authorization"], masked.as_str());
    echo.wait_for("--- GET /claw/hello");
    echo.wait_for("    authorization: Bearer dev-echo-bot-token\n");
    assert!(
        !echo.printed().contains("agent-made-this-up"),
        "the agent's own Authorization reached the upstream:\n{}",
        echo.printed()
    );

    // assistant: alice's own token.
    let r = proxy_get(
        sk.proxy_addr,
        "http://echo.local/me/notes",
        &[("x-sidekey-user", "alice")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    echo.wait_for("    authorization: Bearer dev-notion-alice-token\n");

    // a user with no stored credential.
    let r = proxy_get(
        sk.proxy_addr,
        "http://echo.local/me/notes",
        &[("x-sidekey-user", "carol")],
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("x-sidekey-error"), Some("credential_missing"));
    let link = r.json()["connect_url"].as_str().unwrap().to_string();
    let prefix = format!("http://127.0.0.1:{cport}/connect/notion-user?t=");
    assert!(link.starts_with(&prefix), "{link}");
    // carol connects her account (the README's "Connecting users' accounts").
    let page = crate::support::connect::browse(&link, "carol", &[]);
    assert_eq!(page["status"], 200, "{page}");
    assert!(page["body"].as_str().unwrap().contains("Account connected"));
    let stored: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(sk.dir.path().join("dev-secrets/users/carol/notion.txt")).unwrap(),
    )
    .unwrap();
    let carol = stored["access_token"].as_str().unwrap().to_string();
    assert!(carol.starts_with("dev-at-"), "{carol}");
    let r = proxy_get(
        sk.proxy_addr,
        "http://echo.local/me/notes",
        &[("x-sidekey-user", "carol")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    echo.wait_for(&format!("    authorization: Bearer {carol}\n"));
    drop(provider);

    // nothing routes this path.
    let r = proxy_get(sk.proxy_addr, "http://echo.local/admin", &[]).await;
    assert_eq!(
        (r.status, r.header("x-sidekey-error")),
        (403, Some("route_denied"))
    );

    // gateway.
    let r = gateway_request(sk.proxy_addr, "GET", "/echo/anything", &[], empty()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["path"], "/anything");

    // One audit record per call, and no token in anything sidekey wrote.
    sk.wait_audit(5);
    let out = sk.all_output();
    for secret in [
        "dev-echo-bot-token",
        "dev-notion-alice-token",
        carol.as_str(),
    ] {
        assert!(!out.contains(secret), "{secret} in sidekey's output");
    }
}
