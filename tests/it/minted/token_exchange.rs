//! `source: token_exchange`: a local STS that checks the RFC 8693 request (grant,
//! client authentication, audience, scope, no `requested_token_type` unless set) and
//! that the `subject_token` is exactly the identity JWT the caller sent.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use super::{config, nonce, sweep};
use crate::jwt_support::keys;
use crate::support::{MintServer, Sidekey, Upstream, assert_sidekey_error, base64, proxy_get};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_identity_jwt_is_exchanged_per_user_and_token() {
    let idp = keys::es256("idp-1");
    let jwt = |user: &str, jti: &str| {
        let claims = keys::claims_with(user, &["eng"], json!({"jti": jti}));
        keys::sign(&idp, &claims)
    };
    let (alice, alice2) = (jwt("alice", "1"), jwt("alice", "2"));
    let (bob, mallory) = (jwt("bob", "3"), jwt("mallory", "4"));
    let client_secret = format!("sts-secret-{}", nonce());
    let known = vec![alice.clone(), alice2.clone(), bob.clone()];
    let Sts {
        server: sts,
        issued,
        problems,
    } = Sts::start(known, &client_secret);
    let up = Upstream::start();
    let identity = "identity:
  header: x-sidekey-user
  mode: jwt
  jwt:
    jwks_file: jwks.json
    issuer: \"https://idp.example.test\"
    audiences: [sidekey-tests]
    algorithms: [ES256]
";
    let creds = format!(
        "  notion-exchanged:
    source: token_exchange
    token_url: {}/token
    client_id: {{env: STS_CLIENT_ID}}
    client_secret: {{env: STS_CLIENT_SECRET}}
    audience: notion
    scopes: [read_content]",
        sts.url()
    );
    let routes = "  - {name: notion, match: {host: api.test}, auth: assistant, credential: notion-exchanged}";
    let dir = crate::support::ConfigDir::new();
    dir.write("jwks.json", keys::jwks(&[&idp]));
    let env = [
        ("STS_CLIENT_ID", "sts-client"),
        ("STS_CLIENT_SECRET", client_secret.as_str()),
    ];
    let sk = Sidekey::start_in(
        dir,
        &config(identity, &up.host_port(), &creds, routes),
        &env,
    );
    let proxy = sk.proxy_addr;
    let get = |token: &str| {
        let header = format!("Bearer {token}");
        async move {
            proxy_get(
                proxy,
                "http://api.test/v1/pages",
                &[("x-sidekey-user", &header)],
            )
            .await
        }
    };
    let calls = [&alice, &alice, &bob].map(|t| get(t));
    for r in futures_util::future::join_all(calls).await {
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(*problems.lock().unwrap(), Vec::<String>::new());
    assert_eq!(sts.count(), 2, "one exchange per user and identity token");
    assert_eq!(get(&alice2).await.status, 200);
    assert_eq!(sts.count(), 3, "a new identity token is exchanged anew");
    let issued_now = issued.lock().unwrap().clone();
    let subjects: Vec<&String> = issued_now.iter().map(|(s, _)| s).collect();
    assert_eq!(subjects.iter().filter(|s| ***s == alice).count(), 1);
    assert!(subjects.contains(&&bob) && subjects.contains(&&alice2));
    // Each upstream call carries the token exchanged for that caller's JWT.
    let token_for = |jwt: &String| {
        let t = &issued_now
            .iter()
            .find(|(s, _)| s == jwt)
            .expect("exchanged")
            .1;
        format!("Bearer {t}")
    };
    let seen: Vec<String> = up
        .requests()
        .iter()
        .map(|r| r.header("authorization").unwrap_or_default().to_string())
        .collect();
    assert_eq!(seen.iter().filter(|a| **a == token_for(&alice)).count(), 2);
    assert_eq!(seen.iter().filter(|a| **a == token_for(&bob)).count(), 1);
    assert_eq!(seen.last(), Some(&token_for(&alice2)));

    // The STS refuses an unknown subject: the user's credential_expired.
    assert_sidekey_error(&get(&mallory).await, 401, "credential_expired");
    let mut secrets: Vec<String> = issued_now.iter().map(|(_, t)| t.clone()).collect();
    secrets.extend([alice, alice2, bob, mallory, client_secret]);
    sweep(&sk, &secrets).await;
}

/// An STS that knows which identity tokens callers hold (`known`) and exchanges each
/// for a new token, checking the whole RFC 8693 request.
struct Sts {
    server: MintServer,
    /// (subject_token, issued token)
    issued: Arc<Mutex<Vec<(String, String)>>>,
    problems: Arc<Mutex<Vec<String>>>,
}

impl Sts {
    fn start(known: Vec<String>, client_secret: &str) -> Sts {
        let issued: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let problems: Arc<Mutex<Vec<String>>> = Arc::default();
        let (i, p) = (issued.clone(), problems.clone());
        let basic = format!(
            "Basic {}",
            base64(format!("sts-client:{client_secret}").as_bytes())
        );
        let server = MintServer::start(Duration::from_millis(100), move |call| {
            let f = call.form();
            let want = [
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange",
                ),
                ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
                ("audience", "notion"),
                ("scope", "read_content"),
            ];
            let mut bad: Vec<String> = want
                .iter()
                .filter(|(key, v)| f.get(*key).map(String::as_str) != Some(*v))
                .map(|(key, _)| format!("{key}: {:?}", f.get(*key)))
                .collect();
            if f.contains_key("requested_token_type") || f.contains_key("resource") {
                bad.push("unset parameters were sent".into());
            }
            // client_secret_basic with the sidecar's own client.
            if call.header("authorization") != Some(basic.as_str()) {
                bad.push("wrong client authentication".into());
            }
            if !bad.is_empty() {
                p.lock().unwrap().extend(bad);
                return (400, json!({"error": "invalid_request"}));
            }
            let subject = f.get("subject_token").cloned().unwrap_or_default();
            if !known.contains(&subject) {
                return (400, json!({"error": "invalid_grant"}));
            }
            let token = format!("exchanged-{}", nonce());
            i.lock().unwrap().push((subject, token.clone()));
            (
                200,
                json!({"access_token": token, "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                     "token_type": "Bearer", "expires_in": 600}),
            )
        });
        Sts {
            server,
            issued,
            problems,
        }
    }
}
