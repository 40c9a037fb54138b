//! Minted and signed credentials (`github_app`, `google_service_account`,
//! `token_exchange`, `inject: aws_sigv4`) against the real binary.
//!
//! Each token endpoint is a local [`MintServer`](crate::support::MintServer) that
//! VERIFIES what sidekey sends (the app JWT with the app's public key, the Google
//! assertion's claims, the STS `subject_token` against the caller's identity JWT) and
//! mints short-lived tokens; SigV4 signatures are recomputed by Python's botocore from
//! what the upstream received. Every test ends with a sweep of all of sidekey's output
//! (audit, logs, metrics) for the keys, assertions and tokens it used.

mod checks;
mod github_app;
mod google_sa;
mod sigv4;
mod token_exchange;

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::support::{Sidekey, http_get, yaml_head};

/// One RSA key pair for the test binary: (private PKCS#8 PEM, public PEM).
pub fn app_key() -> &'static (String, String) {
    static K: OnceLock<(String, String)> = OnceLock::new();
    K.get_or_init(|| {
        use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
        let k = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("rsa key");
        (
            k.to_pkcs8_pem(LineEnding::LF).expect("pem").to_string(),
            k.to_public_key()
                .to_public_key_pem(LineEnding::LF)
                .expect("pem"),
        )
    })
}

/// A distinctive line of the private key (what a leak of the key would contain).
pub fn key_fragment() -> String {
    app_key()
        .0
        .lines()
        .nth(3)
        .expect("a PEM body line")
        .to_string()
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// RFC 3339 for `secs` from now (GitHub's `expires_at`).
pub fn rfc3339_in(secs: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp((now() + secs) as i64).expect("time");
    t.format(&time::format_description::well_known::Rfc3339)
        .expect("format")
}

/// A random suffix so that every minted token is unique to its test.
pub fn nonce() -> String {
    format!("{:016x}", fastrand::u64(..))
}

/// A config: `identity` block (may be empty), `api.test` -> `upstream`, and the given
/// credentials and routes (indented YAML list/map bodies).
pub fn config(identity: &str, upstream: &str, creds: &str, routes: &str) -> String {
    format!(
        "{}default: deny\n{identity}upstreams:\n  api.test: {upstream}\ncredentials:\n{creds}\nroutes:\n{routes}\n",
        yaml_head("minted-test")
    )
}

/// Poll `cond` every 200 ms for up to `limit`.
pub async fn eventually<F, Fut>(limit: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// Panic if any secret appears anywhere sidekey wrote: stdout (audit), stderr (logs),
/// or the metrics page.
pub async fn sweep(sk: &Sidekey, secrets: &[String]) {
    tokio::time::sleep(Duration::from_millis(200)).await;
    let metrics = http_get(sk.admin_addr, "/metrics").await.text();
    let all = format!("{}\n{}\n{metrics}", sk.stdout_text(), sk.stderr_text());
    for (i, s) in secrets.iter().enumerate() {
        assert!(s.len() >= 8, "secret #{i} too short to sweep for");
        assert!(
            !all.contains(s.as_str()),
            "secret #{i} found in sidekey's output or metrics"
        );
    }
}
