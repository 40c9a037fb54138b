//! `source: google_service_account` with `subject: "{user}"`: a local Google token
//! endpoint that verifies the RFC 7523 assertion (signature with the key's public half,
//! `kid`, `iss`, `aud`, `scope`, `sub`, lifetime) and mints one token per user.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::json;

use super::{app_key, config, key_fragment, nonce, sweep};
use crate::support::{MintCall, MintServer, Sidekey, Upstream, assert_sidekey_error, proxy_get};

const EMAIL: &str = "mail-agent@proj.iam.gserviceaccount.com";
const SCOPE: &str = "https://www.googleapis.com/auth/gmail.readonly";

/// The verified `sub` of the assertion, or why it is not what Google requires.
fn verified_subject(call: &MintCall, token_uri: &str) -> Result<String, String> {
    let form = call.form();
    if form.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        return Err(format!("grant_type {:?}", form.get("grant_type")));
    }
    let assertion = form.get("assertion").ok_or("no assertion")?;
    let header = jsonwebtoken::decode_header(assertion).map_err(|e| e.to_string())?;
    if header.kid.as_deref() != Some("key-1") {
        return Err(format!("kid {:?}", header.kid));
    }
    let mut v = Validation::new(Algorithm::RS256);
    v.set_audience(&[token_uri]);
    v.set_issuer(&[EMAIL]);
    v.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    let key = DecodingKey::from_rsa_pem(app_key().1.as_bytes()).map_err(|e| e.to_string())?;
    let c = jsonwebtoken::decode::<serde_json::Value>(assertion, &key, &v)
        .map_err(|e| format!("assertion does not verify: {e}"))?
        .claims;
    if c["scope"] != SCOPE {
        return Err(format!("scope {}", c["scope"]));
    }
    let lifetime = c["exp"].as_u64().unwrap_or(0) - c["iat"].as_u64().unwrap_or(0);
    if lifetime > 3600 {
        return Err(format!("assertion lives {lifetime} s"));
    }
    c["sub"].as_str().map(String::from).ok_or("no sub".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_tokens_act_as_each_user_and_stay_apart() {
    let Google {
        server: google,
        minted,
        problems,
    } = Google::start();
    let token_uri = format!("{}/token", google.url());
    let key = json!({
        "type": "service_account", "project_id": "proj", "private_key_id": "key-1",
        "private_key": app_key().0, "client_email": EMAIL, "client_id": "1234",
        "token_uri": token_uri,
    });
    let up = Upstream::start();
    let creds = format!(
        "  gmail-user:
    source: google_service_account
    key: {{file: sa.json}}
    scopes: [{SCOPE}]
    subject: \"{{user}}\""
    );
    let routes =
        "  - {name: gmail, match: {host: api.test}, auth: assistant, credential: gmail-user}";
    let dir = crate::support::ConfigDir::new();
    dir.write("sa.json", key.to_string());
    let sk = Sidekey::start_in(dir, &config("", &up.host_port(), &creds, routes), &[]);
    let proxy = sk.proxy_addr;
    let get = |user: &'static str| async move {
        let url = "http://api.test/gmail/v1/users/me/messages";
        proxy_get(proxy, url, &[("x-sidekey-user", user)]).await
    };
    let users = ["alice@acme.test", "bob@acme.test"];
    let calls = users.into_iter().flat_map(|u| [get(u), get(u)]);
    for r in futures_util::future::join_all(calls).await {
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(*problems.lock().unwrap(), Vec::<String>::new());
    assert_eq!(
        google.count(),
        2,
        "one mint per user, concurrent calls coalesced"
    );
    assert_eq!(get("alice@acme.test").await.status, 200);
    assert_eq!(google.count(), 2, "alice's token is reused");
    let minted_now = minted.lock().unwrap().clone();
    let seen = up.requests();
    assert_eq!(seen.len(), 5);
    for r in &seen {
        let auth = r.header("authorization").expect("authorization");
        let owner = minted_now
            .iter()
            .find(|(_, t)| auth == format!("Bearer {t}"))
            .map(|(u, _)| u.clone());
        assert!(owner.is_some(), "upstream got a token nobody minted");
    }
    let alice = format!("Bearer {}", minted_now["alice@acme.test"]);
    assert_eq!(
        seen.iter()
            .filter(|r| r.header("authorization") == Some(&alice))
            .count(),
        3
    );

    // A refused delegation is the user's credential_expired; an outage is 503.
    let r = get("mallory@acme.test").await;
    assert_sidekey_error(&r, 401, "credential_expired");
    let mut secrets: Vec<String> = google
        .calls()
        .iter()
        .filter_map(|c| c.form().get("assertion").cloned())
        .collect();
    drop(google);
    let r = get("carol@acme.test").await;
    assert_sidekey_error(&r, 503, "credential_store_unavailable");
    assert_eq!(
        get("bob@acme.test").await.status,
        200,
        "a cached token outlives the outage"
    );

    secrets.extend(minted_now.values().cloned());
    secrets.push(key_fragment());
    sweep(&sk, &secrets).await;
}

/// A Google token endpoint minting one token per delegated user (`mallory@` is refused).
struct Google {
    server: MintServer,
    /// sub -> token
    minted: Arc<Mutex<HashMap<String, String>>>,
    problems: Arc<Mutex<Vec<String>>>,
}

impl Google {
    fn start() -> Google {
        let minted: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let problems: Arc<Mutex<Vec<String>>> = Arc::default();
        let (m, p) = (minted.clone(), problems.clone());
        let google = MintServer::start(Duration::from_millis(100), move |call| {
            // The assertion's `aud` must be the key's token_uri: this server's `/token`.
            let token_uri = format!("http://{}/token", call.header("host").unwrap_or_default());
            match verified_subject(call, &token_uri) {
                Err(why) => {
                    p.lock().unwrap().push(why);
                    (400, json!({"error": "invalid_grant"}))
                }
                // Delegation not granted for this user: a refusal.
                Ok(sub) if sub.starts_with("mallory") => (
                    401,
                    json!({"error": "unauthorized_client", "error_description": "Client is unauthorized"}),
                ),
                Ok(sub) => {
                    let token = format!("ya29.{}-{}", sub.split('@').next().unwrap_or(""), nonce());
                    m.lock().unwrap().insert(sub, token.clone());
                    (
                        200,
                        json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"}),
                    )
                }
            }
        });
        Google {
            server: google,
            minted,
            problems,
        }
    }
}
