//! Store behaviour under a paused tokio clock: caching until expiry minus the margin,
//! single-flight lookups and refreshes, check-and-set races between two stores sharing
//! one KV, `reject()`, outages and readiness. No test sleeps on the wall clock.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use secrecy::ExposeSecret;

use super::testing::{FakeOAuth, MemKv};
use super::*;
use crate::config::{ClientAuth, OAuthClient, SecretRef};

fn oauth_client() -> OAuthClient {
    OAuthClient {
        token_url: "http://127.0.0.1:9/token".into(),
        client_id: SecretRef::Vault {
            path: "claws/app".into(),
            field: "client_id".into(),
        },
        client_secret: None,
        scopes: vec![],
        client_auth: ClientAuth::Basic,
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

fn vault_spec(refresh: bool) -> Arc<CredentialSpec> {
    spec(
        "notion",
        SourceSpec::Vault {
            path: "users/{user}/notion".into(),
            refresh: refresh.then(oauth_client),
        },
    )
}

fn secret(at: &str, rt: &str, expires_in: u64) -> serde_json::Value {
    let exp = SystemTime::now() + Duration::from_secs(expires_in);
    serde_json::json!({"access_token": at, "refresh_token": rt, "expires_at": format_expiry(exp), "note": "kept"})
}

struct Rig {
    kv: Arc<MemKv>,
    oauth: Arc<FakeOAuth>,
    metrics: Arc<Metrics>,
    store: Arc<CredentialStore>,
}

fn rig_with(kv: Arc<MemKv>, oauth: Arc<FakeOAuth>) -> Rig {
    kv.put("claws/app", serde_json::json!({"client_id": "app-id"}));
    let metrics = Arc::new(Metrics::new().unwrap());
    let store = Arc::new(CredentialStore::with_backends(
        Some(kv.clone()),
        oauth.clone(),
        metrics.clone(),
    ));
    Rig {
        kv,
        oauth,
        metrics,
        store,
    }
}

fn rig() -> Rig {
    rig_with(
        Arc::new(MemKv::default()),
        Arc::new(FakeOAuth::new(3600, &["rt-0"])),
    )
}

fn lookups(m: &Metrics, result: &str) -> u64 {
    m.credential_lookups
        .with_label_values(&["notion", "vault", result])
        .get()
}

fn refreshes(m: &Metrics, result: &str) -> u64 {
    m.token_refreshes
        .with_label_values(&["notion", result])
        .get()
}

#[tokio::test(start_paused = true)]
async fn cached_until_expiry_minus_margin() {
    let r = rig();
    r.kv.put("users/alice/notion", secret("tok-a", "rt-0", 600));
    let s = vault_spec(false);
    assert_eq!(
        r.store
            .get(&s, Some("alice"))
            .await
            .unwrap()
            .access_token
            .expose_secret(),
        "tok-a"
    );
    r.store.get(&s, Some("alice")).await.unwrap();
    assert_eq!(r.kv.reads.load(Ordering::SeqCst), 1);
    tokio::time::advance(Duration::from_secs(530)).await;
    r.store.get(&s, Some("alice")).await.unwrap();
    assert_eq!(r.kv.reads.load(Ordering::SeqCst), 1);
    tokio::time::advance(Duration::from_secs(20)).await;
    r.store.get(&s, Some("alice")).await.unwrap();
    assert_eq!(
        r.kv.reads.load(Ordering::SeqCst),
        2,
        "re-read once past expires_at - margin"
    );
    assert_eq!(
        (lookups(&r.metrics, "hit"), lookups(&r.metrics, "miss")),
        (2, 2)
    );
    assert!(matches!(
        r.store.get(&s, Some("bob")).await,
        Err(CredError::Missing)
    ));
    assert!(matches!(
        r.store.get(&s, Some("..")).await,
        Err(CredError::Missing)
    ));
    assert_eq!(lookups(&r.metrics, "error"), 2);
}

#[tokio::test(start_paused = true)]
async fn concurrent_misses_make_one_read() {
    let r = rig();
    r.kv.put("users/alice/notion", secret("tok-a", "rt-0", 600));
    r.kv.delay_ms.store(20, Ordering::Relaxed);
    let before = r.kv.reads.load(Ordering::SeqCst);
    let s = vault_spec(false);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (store, s) = (r.store.clone(), s.clone());
            tokio::spawn(async move {
                store
                    .get(&s, Some("alice"))
                    .await
                    .map(|t| t.access_token.expose_secret().to_string())
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), "tok-a");
    }
    assert_eq!(r.kv.reads.load(Ordering::SeqCst) - before, 1);
    assert_eq!(r.store.flights.len(), 0);
}

#[tokio::test(start_paused = true)]
async fn near_expiry_refreshes_once_and_writes_back_with_cas() {
    let r = rig();
    r.kv.put("users/alice/notion", secret("old", "rt-0", 30));
    let s = vault_spec(true);
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (store, s) = (r.store.clone(), s.clone());
            tokio::spawn(async move {
                store
                    .get(&s, Some("alice"))
                    .await
                    .unwrap()
                    .access_token
                    .expose_secret()
                    .to_string()
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), "at-1");
    }
    assert_eq!(r.oauth.calls.load(Ordering::SeqCst), 1);
    assert_eq!(r.kv.version("users/alice/notion"), 2);
    assert_eq!(
        r.kv.field("users/alice/notion", "refresh_token").as_deref(),
        Some("rt-1")
    );
    assert_eq!(
        r.kv.field("users/alice/notion", "note").as_deref(),
        Some("kept")
    );
    assert_eq!(refreshes(&r.metrics, "success"), 1);
    // The refreshed token (1h) is now cached: no further reads or refreshes.
    tokio::time::advance(Duration::from_secs(3000)).await;
    r.store.get(&s, Some("alice")).await.unwrap();
    assert_eq!(r.oauth.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn two_stores_race_one_rotation() {
    let kv = Arc::new(MemKv::default());
    let oauth = Arc::new(FakeOAuth::new(3600, &["rt-0"]));
    let a = rig_with(kv.clone(), oauth.clone());
    let b = rig_with(kv.clone(), oauth.clone());
    kv.put("users/alice/notion", secret("old", "rt-0", 10));
    let s = vault_spec(true);
    let (ta, tb) = tokio::join!(
        a.store.get(&s, Some("alice")),
        b.store.get(&s, Some("alice"))
    );
    let (ta, tb) = (ta.unwrap(), tb.unwrap());
    assert_eq!(
        ta.access_token.expose_secret(),
        tb.access_token.expose_secret()
    );
    let stored_rt = kv.field("users/alice/notion", "refresh_token").unwrap();
    assert!(
        oauth.is_valid(&stored_rt),
        "the stored refresh token is the live one"
    );
    let total = |m: &Metrics, res| refreshes(m, res);
    assert_eq!(
        total(&a.metrics, "success") + total(&b.metrics, "success"),
        1
    );
    assert_eq!(
        total(&a.metrics, "conflict") + total(&b.metrics, "conflict"),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn revoked_refresh_token_is_expired() {
    let r = rig_with(
        Arc::new(MemKv::default()),
        Arc::new(FakeOAuth::new(3600, &[])),
    );
    r.kv.put("users/alice/notion", secret("old", "rt-revoked", 0));
    let s = vault_spec(true);
    assert!(matches!(
        r.store.get(&s, Some("alice")).await,
        Err(CredError::Expired)
    ));
    assert_eq!(refreshes(&r.metrics, "invalid_grant"), 1);
    // Without refresh configured an expired secret is expired too.
    assert!(matches!(
        r.store.get(&vault_spec(false), Some("alice")).await,
        Err(CredError::Expired)
    ));
}

#[tokio::test(start_paused = true)]
async fn a_dead_grant_is_quarantined_until_the_secret_changes() {
    let r = rig_with(
        Arc::new(MemKv::default()),
        Arc::new(FakeOAuth::new(3600, &["rt-live"])),
    );
    r.kv.put("users/alice/notion", secret("old", "rt-dead", 0));
    r.kv.put("users/bob/notion", secret("b", "rt-b", 3600));
    let s = vault_spec(true);
    for _ in 0..5 {
        assert!(matches!(
            r.store.get(&s, Some("alice")).await,
            Err(CredError::Expired)
        ));
    }
    assert_eq!(r.oauth.calls.load(Ordering::SeqCst), 1, "one token call");
    let held = |m: &Metrics| {
        m.credential_quarantines
            .with_label_values(&["notion"])
            .get()
    };
    assert_eq!(held(&r.metrics), 1);
    assert!(r.store.get(&s, Some("bob")).await.is_ok(), "only alice's");
    // A new version (a reconnect) releases it: the new grant is used.
    r.kv.put("users/alice/notion", secret("old", "rt-live", 0));
    let t = r.store.get(&s, Some("alice")).await.unwrap();
    assert_eq!(t.access_token.expose_secret(), "at-1");
    assert_eq!(r.oauth.calls.load(Ordering::SeqCst), 2);
    // Dead again; an explicit invalidation (a completed connect) releases it too.
    r.kv.put("users/carol/notion", secret("c", "rt-dead", 0));
    assert!(r.store.get(&s, Some("carol")).await.is_err());
    assert!(r.store.get(&s, Some("carol")).await.is_err());
    assert_eq!(r.oauth.calls.load(Ordering::SeqCst), 3);
    r.store.invalidate(&s, Some("carol")).await;
    assert!(r.store.get(&s, Some("carol")).await.is_err());
    assert_eq!(r.oauth.calls.load(Ordering::SeqCst), 4, "asked once more");
    assert_eq!(held(&r.metrics), 3);
}

#[tokio::test(start_paused = true)]
async fn reject_refreshes_once_for_all_callers() {
    let r = rig();
    r.kv.put("users/alice/notion", secret("old", "rt-0", 3600));
    let s = vault_spec(true);
    let old = r.store.get(&s, Some("alice")).await.unwrap();
    let (x, y) = tokio::join!(
        r.store.reject(&s, Some("alice"), &old),
        r.store.reject(&s, Some("alice"), &old)
    );
    assert_eq!(x.unwrap().access_token.expose_secret(), "at-1");
    assert_eq!(y.unwrap().access_token.expose_secret(), "at-1");
    assert_eq!(r.oauth.calls.load(Ordering::SeqCst), 1);
    // A store that did not see the refresh re-reads and finds the new token.
    let other = rig_with(r.kv.clone(), r.oauth.clone());
    assert_eq!(
        other
            .store
            .reject(&s, Some("alice"), &old)
            .await
            .unwrap()
            .access_token
            .expose_secret(),
        "at-1"
    );
    assert_eq!(r.oauth.calls.load(Ordering::SeqCst), 1);
    // No refresh configured: a rejected token is expired.
    r.kv.put("users/bob/notion", secret("b", "rt-x", 3600));
    let plain = vault_spec(false);
    let b = r.store.get(&plain, Some("bob")).await.unwrap();
    assert!(matches!(
        r.store.reject(&plain, Some("bob"), &b).await,
        Err(CredError::Expired)
    ));
}

#[tokio::test(start_paused = true)]
async fn outage_serves_usable_cache_only() {
    let r = rig();
    r.kv.put("users/alice/notion", secret("tok-a", "rt-0", 600));
    let s = vault_spec(false);
    assert!(r.store.readiness().is_ok());
    r.store.get(&s, Some("alice")).await.unwrap();
    r.kv.down.store(true, Ordering::Relaxed);
    assert!(r.store.readiness().is_ok(), "warm cache keeps /readyz up");
    tokio::time::advance(Duration::from_secs(560)).await;
    assert_eq!(
        r.store
            .get(&s, Some("alice"))
            .await
            .unwrap()
            .access_token
            .expose_secret(),
        "tok-a"
    );
    assert!(matches!(
        r.store.get(&s, Some("bob")).await,
        Err(CredError::Unavailable(_))
    ));
    tokio::time::advance(Duration::from_secs(40)).await;
    assert!(matches!(
        r.store.get(&s, Some("alice")).await,
        Err(CredError::Unavailable(_))
    ));
    assert!(
        r.store.readiness().is_err(),
        "Vault down and nothing usable cached"
    );
    r.kv.down.store(false, Ordering::Relaxed);
    assert!(r.store.get(&s, Some("alice")).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn client_credentials_cached_until_expiry() {
    let r = rig();
    let s = spec("svc", SourceSpec::ClientCredentials(oauth_client()));
    for _ in 0..10 {
        assert_eq!(
            r.store
                .get(&s, None)
                .await
                .unwrap()
                .access_token
                .expose_secret(),
            "at-1"
        );
    }
    assert_eq!(r.oauth.calls.load(Ordering::SeqCst), 1);
    tokio::time::advance(Duration::from_secs(3541)).await;
    assert_eq!(
        r.store
            .get(&s, None)
            .await
            .unwrap()
            .access_token
            .expose_secret(),
        "at-2"
    );
    // Token endpoint down near expiry: the still-valid token keeps serving.
    r.oauth.down.store(true, Ordering::Relaxed);
    tokio::time::advance(Duration::from_secs(3541)).await;
    assert_eq!(
        r.store
            .get(&s, None)
            .await
            .unwrap()
            .access_token
            .expose_secret(),
        "at-2"
    );
    let cold = spec("svc2", SourceSpec::ClientCredentials(oauth_client()));
    assert!(matches!(
        r.store.get(&cold, None).await,
        Err(CredError::Unavailable(_))
    ));
}
