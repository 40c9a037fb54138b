//! `sidekey check` on connect configs: the contract's three refusals, each with its
//! YAML path and exit 2, and a valid connect config accepted.

use crate::support::{ConfigDir, Sidekey};

const KEY: &str = "0123456789abcdef0123456789abcdef-long-enough";

fn yaml(connect: &str, oauth: &str) -> String {
    format!(
        "version: 1\nagent: a\nlisten: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\n{connect}\
         credentials:\n  notion-user:\n    source: file\n    file: t/{{user}}.json\n{oauth}\
         routes:\n  - name: n\n    match: {{host: api.test}}\n    auth: assistant\n    credential: notion-user\n"
    )
}

const CONNECT: &str =
    "connect:\n  public_url: https://agents.example.com\n  signing_key: {env: K}\n";
const OAUTH: &str = "    oauth:\n      authorize_url: https://p.example/auth\n      token_url: https://p.example/token\n      client_id: {env: ID}\n      client_auth: post\n      scopes: [read_content]\n      authorize_params: {owner: user}\n";

fn check(yaml: &str, key: &str) -> (i32, String, String) {
    let dir = ConfigDir::new();
    Sidekey::check_in(&dir, yaml, &[("K", key), ("ID", "client")])
}

#[test]
fn a_valid_connect_config_passes() {
    let (code, out, err) = check(&yaml(CONNECT, OAUTH), KEY);
    assert_eq!(code, 0, "{out}\n{err}");
}

#[test]
fn a_short_signing_key_is_refused() {
    let (code, _, err) = check(&yaml(CONNECT, OAUTH), "only-31-bytes-long-0123456789ab");
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("connect.signing_key") && err.contains("32"),
        "{err}"
    );
    assert!(
        !err.contains("only-31-bytes"),
        "the key itself is never printed: {err}"
    );
    let (code, _, err) = check(&yaml(CONNECT, OAUTH), "");
    assert_eq!(code, 2, "{err}");
}

#[test]
fn a_connectable_credential_needs_public_url() {
    let (code, _, err) = check(&yaml("", OAUTH), KEY);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("credentials.notion-user.oauth.authorize_url"),
        "{err}"
    );
    assert!(err.contains("public_url"), "{err}");
    let no_url = "connect:\n  signing_key: {env: K}\n";
    let (code, _, err) = check(&yaml(no_url, OAUTH), KEY);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("connect.public_url") && err.contains("notion-user"),
        "{err}"
    );
}

#[test]
fn an_oauth_block_needs_token_url_and_client_id() {
    let no_token = OAUTH.replace("      token_url: https://p.example/token\n", "");
    let (code, _, err) = check(&yaml(CONNECT, &no_token), KEY);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("credentials.notion-user.oauth.token_url"),
        "{err}"
    );
    let no_id = OAUTH.replace("      client_id: {env: ID}\n", "");
    let (code, _, err) = check(&yaml(CONNECT, &no_id), KEY);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("credentials.notion-user.oauth.client_id"),
        "{err}"
    );
}

/// The connect service's config in deploy/kubernetes/connect-configmap.yaml is valid.
#[test]
fn the_deployed_connect_config_validates() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/kubernetes/connect-configmap.yaml");
    let doc: serde_norway::Value =
        serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let text = doc["data"]["sidekey.yaml"]
        .as_str()
        .expect("data.sidekey.yaml");
    let dir = ConfigDir::new();
    let (code, out, err) = Sidekey::check_in(&dir, text, &[("SIDEKEY_CONNECT_KEY", KEY)]);
    assert_eq!(code, 0, "{out}\n{err}");
}

/// An unset key variable: `check` passes with a warning (one config validates on
/// machines without every secret), `run` and `connect` refuse to start (exit 2).
#[test]
fn an_unset_signing_key_warns_in_check_and_stops_run() {
    let dir = ConfigDir::new();
    let text = yaml(CONNECT, OAUTH);
    let (code, out, err) = Sidekey::check_in(&dir, &text, &[("ID", "client")]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        err.contains("warning: connect.signing_key: environment variable K is not set"),
        "{err}"
    );
    for sub in ["run", "connect"] {
        let (code, _, err) = Sidekey::run_args(
            &[sub, "--config", dir.config_path().to_str().unwrap()],
            &[("ID", "client")],
        );
        assert_eq!(code, 2, "{sub}: {err}");
        assert!(
            err.contains("connect.signing_key") && err.contains("not set"),
            "{sub}: {err}"
        );
    }
}
