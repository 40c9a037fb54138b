//! The minted sources through the store, under a paused tokio clock: what each sends
//! (assertions verified with the public key), one mint for concurrent first calls,
//! reuse until expiry minus the margin and a new mint after, subjects kept apart,
//! outages and refusals. Keys are read from an in-memory KV (no blocking file reads
//! under the paused clock).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use super::testing::{FakeMint, FakeOAuth, MemKv};
use super::*;
use crate::config::{ClientAuth, GithubApp, GoogleServiceAccount, SecretRef, TokenExchange};
use crate::identity::{Identity, IdentityToken};

/// (private PKCS#8 PEM, public PEM), generated once per test binary.
fn keys() -> &'static (String, String) {
    static K: OnceLock<(String, String)> = OnceLock::new();
    K.get_or_init(|| {
        use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
        let k = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        (
            k.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
            k.to_public_key().to_public_key_pem(LineEnding::LF).unwrap(),
        )
    })
}

/// Verify an RS256 JWT with the test public key; its claims.
fn verified(jwt: &str, aud: Option<&str>) -> Value {
    let mut v = Validation::new(Algorithm::RS256);
    match aud {
        Some(a) => v.set_audience(&[a]),
        None => v.validate_aud = false,
    }
    let key = DecodingKey::from_rsa_pem(keys().1.as_bytes()).unwrap();
    jsonwebtoken::decode::<Value>(jwt, &key, &v).unwrap().claims
}

struct Rig {
    mint: Arc<FakeMint>,
    metrics: Arc<Metrics>,
    store: Arc<CredentialStore>,
}

fn rig(expires_in: u64) -> Rig {
    let kv = Arc::new(MemKv::default());
    let sa = json!({
        "type": "service_account", "client_email": "agent@proj.iam.gserviceaccount.com",
        "private_key_id": "kid-1", "private_key": keys().0, "token_uri": "https://oauth2.test/token",
    });
    kv.put(
        "keys/app",
        json!({"pem": keys().0, "sa": sa.to_string(), "sts_id": "sts-client", "sts_secret": "sts-s3cret"}),
    );
    let mint = Arc::new(FakeMint::new(expires_in));
    let metrics = Arc::new(Metrics::new().unwrap());
    let store = CredentialStore::with_backends(
        Some(kv),
        Arc::new(FakeOAuth::new(3600, &[])),
        metrics.clone(),
    )
    .with_minter(mint.clone());
    Rig {
        mint,
        metrics,
        store: Arc::new(store),
    }
}

fn kv_ref(field: &str) -> SecretRef {
    SecretRef::Vault {
        path: "keys/app".into(),
        field: field.into(),
    }
}

fn spec(name: &str, source: SourceSpec) -> Arc<CredentialSpec> {
    Arc::new(CredentialSpec::new(
        name,
        source,
        None,
        None,
        Duration::from_secs(300),
    ))
}

fn github() -> Arc<CredentialSpec> {
    spec(
        "gh",
        SourceSpec::GithubApp(GithubApp {
            app_id: 123456,
            installation_id: 7890,
            private_key: kv_ref("pem"),
            api_url: "https://gh.test/api/v3".into(),
            permissions: json!({"issues": "write"}).as_object().cloned(),
            repositories: Some(vec!["infra".into()]),
        }),
    )
}

fn gmail(subject: Option<&str>) -> Arc<CredentialSpec> {
    spec(
        "gmail",
        SourceSpec::GoogleServiceAccount(GoogleServiceAccount {
            key: kv_ref("sa"),
            scopes: vec!["https://www.googleapis.com/auth/gmail.readonly".into()],
            subject: subject.map(str::to_string),
        }),
    )
}

fn sts() -> Arc<CredentialSpec> {
    spec(
        "sts",
        SourceSpec::TokenExchange(TokenExchange {
            token_url: "https://sts.test/token".into(),
            client_id: Some(kv_ref("sts_id")),
            client_secret: Some(kv_ref("sts_secret")),
            client_auth: ClientAuth::Body,
            audience: Some("notion".into()),
            resource: None,
            scopes: vec!["read".into()],
            requested_token_type: None,
        }),
    )
}

fn token(t: Result<Arc<Token>, CredError>) -> String {
    t.unwrap().access_token.expose_secret().to_string()
}

#[tokio::test(start_paused = true)]
async fn github_app_mints_once_and_again_after_expiry() {
    let r = rig(120);
    let s = github();
    let calls = (0..8).map(|_| r.store.get(&s, None));
    for t in futures_util::future::join_all(calls).await {
        assert_eq!(token(t), "minted-1");
    }
    assert_eq!(r.mint.calls(), 1, "concurrent first calls make one mint");
    let seen = r.mint.last();
    assert_eq!(
        seen.url,
        "https://gh.test/api/v3/app/installations/7890/access_tokens"
    );
    assert_eq!(
        seen.json,
        Some(json!({"permissions": {"issues": "write"}, "repositories": ["infra"]}))
    );
    let claims = verified(seen.bearer.as_deref().unwrap(), None);
    let now = assertion::now_secs();
    assert_eq!(claims["iss"], "123456");
    let (iat, exp) = (
        claims["iat"].as_u64().unwrap(),
        claims["exp"].as_u64().unwrap(),
    );
    assert!(
        iat <= now - 59 && iat >= now - 90,
        "iat backdated 60 s: {iat} vs {now}"
    );
    assert!(
        exp <= now + 600 && exp > now,
        "exp within 10 min: {exp} vs {now}"
    );

    // 120 s token: fresh for 60 s (the margin), then minted again.
    tokio::time::advance(Duration::from_secs(50)).await;
    assert_eq!(token(r.store.get(&s, None).await), "minted-1");
    assert_eq!(r.mint.calls(), 1);
    tokio::time::advance(Duration::from_secs(15)).await;
    assert_eq!(token(r.store.get(&s, None).await), "minted-2");
    assert_eq!(r.mint.calls(), 2);
    let refreshes = |res| {
        r.metrics
            .token_refreshes
            .with_label_values(&["gh", res])
            .get()
    };
    assert_eq!(refreshes("success"), 2);
}

#[tokio::test(start_paused = true)]
async fn google_assertion_per_subject() {
    let r = rig(3600);
    let s = gmail(Some("{user}"));
    assert!(s.per_user());
    assert_eq!(
        token(r.store.get(&s, Some("alice@acme.test")).await),
        "minted-1"
    );
    let form = r.mint.last();
    assert_eq!(form.url, "https://oauth2.test/token");
    assert_eq!(
        form.form("grant_type"),
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    );
    let claims = verified(
        form.form("assertion").unwrap(),
        Some("https://oauth2.test/token"),
    );
    assert_eq!(claims["iss"], "agent@proj.iam.gserviceaccount.com");
    assert_eq!(claims["sub"], "alice@acme.test");
    assert_eq!(
        claims["scope"],
        "https://www.googleapis.com/auth/gmail.readonly"
    );
    let lifetime = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
    assert!(lifetime <= 3600, "{lifetime}");
    let header = jsonwebtoken::decode_header(form.form("assertion").unwrap()).unwrap();
    assert_eq!(header.kid.as_deref(), Some("kid-1"));

    assert_eq!(
        token(r.store.get(&s, Some("bob@acme.test")).await),
        "minted-2"
    );
    assert_eq!(
        verified(r.mint.last().form("assertion").unwrap(), None)["sub"],
        "bob@acme.test"
    );
    assert_eq!(
        token(r.store.get(&s, Some("alice@acme.test")).await),
        "minted-1"
    );
    assert_eq!(r.mint.calls(), 2, "one mint per subject");

    // Without a subject the service account acts as itself: no `sub`.
    let r = rig(3600);
    token(r.store.get(&gmail(None), None).await);
    assert!(
        verified(r.mint.last().form("assertion").unwrap(), None)
            .get("sub")
            .is_none()
    );
}

fn identity(user: &str, jwt: &str, exp_in: u64) -> Identity {
    Identity {
        user: user.into(),
        groups: Some(vec![]),
        token: Some(IdentityToken::new(jwt, assertion::now_secs() + exp_in)),
    }
}

#[tokio::test(start_paused = true)]
async fn token_exchange_per_user_and_identity_token() {
    let r = rig(3600);
    let s = sts();
    let alice = identity("alice", "jwt-alice-1", 600);
    let got = r
        .store
        .get_for(&s, Subject::of(Some(&alice)))
        .await
        .unwrap();
    let sent = r.mint.last();
    assert_eq!(
        sent.form("grant_type"),
        Some("urn:ietf:params:oauth:grant-type:token-exchange")
    );
    assert_eq!(sent.form("subject_token"), Some("jwt-alice-1"));
    assert_eq!(
        sent.form("subject_token_type"),
        Some("urn:ietf:params:oauth:token-type:jwt")
    );
    assert_eq!(sent.form("audience"), Some("notion"));
    assert_eq!(sent.form("scope"), Some("read"));
    assert_eq!(
        sent.client,
        Some(("sts-client".to_string(), Some("sts-s3cret".to_string())))
    );
    assert_eq!(sent.form("resource"), None);
    assert_eq!(
        sent.form("requested_token_type"),
        None,
        "sent only when set"
    );
    // The 1 h token is capped at the identity token's expiry.
    let left = got.remaining(std::time::SystemTime::now()).unwrap();
    assert!(left <= Duration::from_secs(600), "{left:?}");

    r.store
        .get_for(&s, Subject::of(Some(&alice)))
        .await
        .unwrap();
    assert_eq!(r.mint.calls(), 1, "same user and identity token: cached");
    let alice2 = identity("alice", "jwt-alice-2", 600);
    assert_eq!(
        token(r.store.get_for(&s, Subject::of(Some(&alice2))).await),
        "minted-2"
    );
    let bob = identity("bob", "jwt-bob", 600);
    assert_eq!(
        token(r.store.get_for(&s, Subject::of(Some(&bob))).await),
        "minted-3"
    );
    assert_eq!(r.mint.last().form("subject_token"), Some("jwt-bob"));
    // No identity token (trusted mode): nothing to exchange.
    assert!(matches!(
        r.store.get(&s, Some("carol")).await,
        Err(CredError::Missing)
    ));
}

#[tokio::test(start_paused = true)]
async fn outages_and_refusals() {
    let r = rig(120);
    let (gh, sa) = (github(), gmail(Some("{user}")));
    r.mint
        .down
        .store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(matches!(
        r.store.get(&gh, None).await,
        Err(CredError::Unavailable(_))
    ));
    r.mint
        .down
        .store(false, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(token(r.store.get(&gh, None).await), "minted-2");
    // Stale but still usable: an outage keeps serving the cached token.
    tokio::time::advance(Duration::from_secs(70)).await;
    r.mint
        .down
        .store(true, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(token(r.store.get(&gh, None).await), "minted-2");
    r.mint
        .down
        .store(false, std::sync::atomic::Ordering::Relaxed);
    // Refusals: a claw's is `Refused` (502), an assistant's `Expired` (401).
    r.mint
        .refuse
        .store(true, std::sync::atomic::Ordering::Relaxed);
    tokio::time::advance(Duration::from_secs(60)).await;
    assert!(matches!(
        r.store.get(&gh, None).await,
        Err(CredError::Refused(_))
    ));
    assert!(matches!(
        r.store.get(&sa, Some("alice")).await,
        Err(CredError::Expired)
    ));
    let refused = r
        .metrics
        .token_refreshes
        .with_label_values(&["gh", "refused"])
        .get();
    assert_eq!(refused, 1);
}
