//! Rate limits (`rate:` per user and per credential) and upstream back-off (a 429/503
//! `Retry-After` honoured without going upstream), against the real binary with an
//! upstream that counts its hits.

use super::metric;
use crate::support::*;

const BOT: &str = "bot-token-5c1e9a";

fn head(up: &SlowDownUpstream) -> String {
    format!(
        "{}default: deny\nupstreams:\n  api.test: {up}\n  other.test: {up}\n  mail.test: {up}\ncredentials:\n  bot: {{source: env, env: BOT_TOKEN}}\n  per-user: {{source: file, file: 'tokens/{{user}}'}}\n",
        yaml_head("rate-agent"),
        up = up.host_port()
    )
}

fn user(u: &str) -> [(&str, &str); 1] {
    [("x-sidekey-user", u)]
}

#[track_caller]
fn assert_rate_limited(r: &Resp, max_retry_after: u64) -> u64 {
    assert_sidekey_error(r, 429, "rate_limited");
    let ra: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("Retry-After in whole seconds: {:?}", r.headers));
    assert!(
        (1..=max_retry_after).contains(&ra),
        "Retry-After {ra} not in 1..={max_retry_after}"
    );
    ra
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_per_user_refuses_over_the_limit_without_going_upstream() {
    let up = SlowDownUpstream::start().await;
    let cfg = format!(
        "{}routes:\n  - name: api\n    match: {{host: api.test}}\n    auth: claw\n    credential: bot\n    rate: {{limit: 2, per: 1h}}\n",
        head(&up)
    );
    let sk = Sidekey::start(&cfg, &[("BOT_TOKEN", BOT)]);
    let p = sk.proxy_addr;
    for _ in 0..2 {
        assert_eq!(
            proxy_get(p, "http://api.test/a", &user("alice"))
                .await
                .status,
            200
        );
    }
    let refused = proxy_get(p, "http://api.test/a", &user("alice")).await;
    // Two calls per hour: one comes back every 30 minutes.
    let ra = assert_rate_limited(&refused, 1800);
    assert!(ra > 1700, "Retry-After {ra}");
    assert_eq!(up.count(), 2, "the refused call never reached the upstream");
    // Bob has his own budget; calls without identity share the route's.
    for _ in 0..2 {
        assert_eq!(
            proxy_get(p, "http://api.test/b", &user("bob")).await.status,
            200
        );
        assert_eq!(proxy_get(p, "http://api.test/c", &[]).await.status, 200);
    }
    assert_rate_limited(&proxy_get(p, "http://api.test/c", &[]).await, 1800);
    assert_rate_limited(&proxy_get(p, "http://api.test/b", &user("bob")).await, 1800);
    assert_eq!(up.count(), 6);
    let rec = sk.audit_for(&request_id(&refused));
    assert_eq!(rec["error"], "rate_limited");
    assert_eq!(rec["route"], "api");
    assert_eq!(rec["status"], 429);
    assert!(rec["upstream_ms"].is_null());
    let limited = metric(
        &sk,
        "sidekey_rate_limited_total",
        &[("route", "api"), ("reason", "limit")],
    )
    .await;
    assert_eq!(limited, 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_per_credential_is_shared_by_its_routes_and_split_by_user_secrets() {
    let up = SlowDownUpstream::start().await;
    let dir = ConfigDir::new();
    dir.write("tokens/alice", "alice-token-77a1");
    dir.write("tokens/bob", "bob-token-9e3c");
    let rate = "rate: {limit: 2, per: 1h, key: credential}";
    let cfg = format!(
        "{}routes:\n  - name: api\n    match: {{host: api.test}}\n    auth: claw\n    credential: bot\n    {rate}\n  - name: other\n    match: {{host: other.test}}\n    auth: claw\n    credential: bot\n    {rate}\n  - name: mail\n    match: {{host: mail.test}}\n    auth: assistant\n    credential: per-user\n    {rate}\n",
        head(&up)
    );
    let sk = Sidekey::start_in(dir, &cfg, &[("BOT_TOKEN", BOT)]);
    let p = sk.proxy_addr;
    // The bot token's two calls, spent by two users on two routes.
    assert_eq!(
        proxy_get(p, "http://api.test/1", &user("alice"))
            .await
            .status,
        200
    );
    assert_eq!(
        proxy_get(p, "http://other.test/2", &user("bob"))
            .await
            .status,
        200
    );
    assert_rate_limited(
        &proxy_get(p, "http://api.test/3", &user("carol")).await,
        1800,
    );
    assert_rate_limited(&proxy_get(p, "http://other.test/4", &[]).await, 1800);
    // Per-user secrets: each user's own budget.
    for u in ["alice", "alice", "bob", "bob"] {
        assert_eq!(
            proxy_get(p, "http://mail.test/m", &user(u)).await.status,
            200
        );
    }
    assert_rate_limited(
        &proxy_get(p, "http://mail.test/m", &user("alice")).await,
        1800,
    );
    let auths: Vec<Option<String>> = up.hits().into_iter().map(|h| h.authorization).collect();
    assert_eq!(
        auths.len(),
        6,
        "refused calls never went upstream: {auths:?}"
    );
    assert_eq!(
        auths
            .iter()
            .filter(|a| a.as_deref() == Some(&format!("Bearer {BOT}")))
            .count(),
        2
    );
    for route in ["api", "other", "mail"] {
        let labels = [("route", route), ("reason", "limit")];
        let m = metric(&sk, "sidekey_rate_limited_total", &labels).await;
        assert_eq!(m, 1.0, "{route}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_retry_after_is_honoured_without_upstream_calls() {
    let up = SlowDownUpstream::start().await;
    let cfg = format!(
        "{}routes:\n  - name: api\n    match: {{host: api.test}}\n    auth: claw\n    credential: bot\n  - name: mail\n    match: {{host: mail.test}}\n    auth: claw\n    credential: bot\n",
        head(&up)
    );
    let sk = Sidekey::start(&cfg, &[("BOT_TOKEN", BOT)]);
    let p = sk.proxy_addr;
    // The upstream's own 429 goes back to the caller as it is.
    let first = proxy_get(p, "http://api.test/retry-after/429/120", &user("alice")).await;
    assert_eq!(first.status, 429);
    assert_eq!(
        first.header("x-sidekey-error"),
        None,
        "the upstream's answer"
    );
    assert_eq!(first.header("retry-after"), Some("120"));
    assert_eq!(up.count(), 1);
    // Then sidekey answers that route, credential and user itself.
    for _ in 0..5 {
        let r = proxy_get(p, "http://api.test/anything", &user("alice")).await;
        let ra = assert_rate_limited(&r, 120);
        assert!(ra >= 100, "remaining Retry-After {ra}");
    }
    assert_eq!(up.count(), 1, "no upstream call while Retry-After runs");
    // Other users, and the same credential on another route, still go upstream.
    assert_eq!(
        proxy_get(p, "http://api.test/x", &user("bob")).await.status,
        200
    );
    assert_eq!(
        proxy_get(p, "http://mail.test/x", &user("alice"))
            .await
            .status,
        200
    );
    assert_eq!(up.count(), 3);
    // A 503 with an HTTP-date, and an absurd delay capped at one hour.
    let date = httpdate_in(600);
    let path = format!("/retry-after/503/{}", date.replace(' ', "%20"));
    let r = proxy_get(p, &format!("http://api.test{path}"), &user("bob")).await;
    assert_eq!(r.status, 503);
    let ra = assert_rate_limited(&proxy_get(p, "http://api.test/y", &user("bob")).await, 600);
    assert!(ra >= 500, "{ra}");
    assert_eq!(
        proxy_get(p, "http://mail.test/retry-after/429/999999", &user("carol"))
            .await
            .status,
        429
    );
    assert_rate_limited(
        &proxy_get(p, "http://mail.test/z", &user("carol")).await,
        3600,
    );
    assert_eq!(up.count(), 5);
    let m = metric(
        &sk,
        "sidekey_rate_limited_total",
        &[("route", "api"), ("reason", "upstream")],
    )
    .await;
    assert_eq!(m, 6.0);
    assert!(sk.stderr_text().contains("upstream asked to slow down"));
    assert!(!sk.stderr_text().contains(BOT) && !sk.stdout_text().contains(BOT));
}

/// An IMF-fixdate `secs` seconds from now.
fn httpdate_in(secs: u64) -> String {
    httpdate::fmt_http_date(std::time::SystemTime::now() + std::time::Duration::from_secs(secs))
}
