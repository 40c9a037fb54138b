//! The happy path once in a real browser: headless Chromium (selenium + chromedriver)
//! follows a connect link minted by `sidekey run` (which serves the pages itself on
//! `connect.listen`), signs in and consents at oidc-provider, and lands on sidekey's
//! page. The token is written as a 0600 JSON file and injected on the next call.

use super::{Stack, config, missing_link};
use crate::openbao::Upstream;
use crate::support::connect::{Proc, assert_absent};
use crate::support::run_py_json;

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_connects_an_account_into_a_private_file() {
    use std::os::unix::fs::PermissionsExt;
    let stack = Stack::start(3600);
    let up = Upstream::start().await;
    let source = "    source: file\n    file: tokens/{user}/notion.json\n";
    let yaml = config(
        &stack.connect_yaml(true, "  link_ttl: 5m\n"),
        source,
        &stack.oauth_yaml(None),
        &up,
        "",
    );
    let sk = Proc::start("run", &yaml, &[], &stack.env(&[]));
    assert_eq!(sk.connect.map(|c| c.port()), Some(stack.port));
    let user = "carol <c&o>";
    let link = missing_link(&sk, &stack, user).await;

    let profile = tempfile::tempdir().unwrap();
    let out = run_py_json(
        "connect_chromium.py",
        &[
            &link,
            "--login",
            user,
            "--profile",
            profile.path().to_str().unwrap(),
        ],
        &[],
    );
    let source_html = out["source"].as_str().unwrap();
    assert!(
        source_html.contains("data-sidekey-connect=\"connected\""),
        "{source_html}"
    );
    assert!(source_html.contains("notion-user"), "{source_html}");
    // The user id is shown HTML-escaped.
    assert!(
        source_html.contains("carol &lt;c&amp;o&gt;"),
        "{source_html}"
    );
    assert_eq!(out["title"], "Account connected");

    let file = sk.dir.path().join("tokens/carol%20%3Cc%26o%3E/notion.json");
    let meta = std::fs::metadata(&file).expect("the token file was written");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let map: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let access = map["access_token"].as_str().unwrap().to_string();
    let refresh = map["refresh_token"].as_str().unwrap().to_string();

    let r = sk.get(user, "http://api.test/v1/pages").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(up.last_auth(), Some(format!("Bearer {access}")));
    assert_eq!(sk.wait_connect_records(1)[0]["result"], "connected");

    let mut secrets = vec![access, refresh, stack.app_secret.clone()];
    secrets.extend(stack.provider.received_secrets());
    let output = sk.output();
    assert_absent(
        &[
            ("sidekey output", &output),
            ("the browser's page", source_html),
        ],
        &secrets,
    );
}
