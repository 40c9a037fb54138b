//! Leaf certificates for intercepted hosts: minting one (rcgen, ECDSA P-256, signed by
//! the CA), turning it into a rustls `ServerConfig`, the per-host cache that makes
//! concurrent first uses of one host mint once, and the two X.509 facts read from the
//! CA certificate itself (basicConstraints CA flag, notAfter).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType, SerialNumber,
};
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

/// How long a leaf is valid (capped by the CA's notAfter).
const LEAF_LIFETIME: time::Duration = time::Duration::days(30);
/// Back-dating of a leaf's notBefore, for clients with a slightly slow clock.
const LEAF_BACKDATE: time::Duration = time::Duration::hours(1);

/// Parses `host` as the name a leaf is for: an IP literal (IPv6 may be bracketed) or
/// a DNS name. Returns the normalised name and its SAN.
pub(crate) fn host_san(host: &str) -> Result<(String, SanType), String> {
    let trimmed = host.trim();
    let bare = trimmed
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(trimmed);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok((ip.to_string(), SanType::IpAddress(ip)));
    }
    // "example.com." is the same name as "example.com"; clients send SNI without the dot.
    let name = bare.strip_suffix('.').unwrap_or(bare).to_ascii_lowercase();
    match ServerName::try_from(name.as_str()) {
        Ok(ServerName::DnsName(_)) => {}
        _ => return Err("not a valid DNS name or IP address".to_string()),
    }
    let ia5 = name.as_str().try_into().map_err(|e| format!("{e}"))?;
    Ok((name, SanType::DnsName(ia5)))
}

/// Mints a leaf for `host` and returns the chain `[leaf, chain_tail...]` and its key.
pub(crate) fn issue(
    issuer: &Issuer<'static, KeyPair>,
    chain_tail: &[CertificateDer<'static>],
    ca_not_after: OffsetDateTime,
    host: &str,
    provider: &CryptoProvider,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let (name, san) = host_san(host)?;
    let now = OffsetDateTime::now_utc();
    if ca_not_after <= now {
        return Err("the CA certificate has expired".to_string());
    }
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    if name.len() <= 64 {
        params.distinguished_name.push(DnType::CommonName, name);
    }
    params.subject_alt_names = vec![san];
    params.not_before = now - LEAF_BACKDATE;
    params.not_after = (now + LEAF_LIFETIME).min(ca_not_after);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial(provider)?);
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
    let cert = params.signed_by(&key, issuer).map_err(|e| e.to_string())?;
    let mut chain = Vec::with_capacity(1 + chain_tail.len());
    chain.push(cert.der().clone());
    chain.extend(chain_tail.iter().cloned());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    Ok((chain, key))
}

/// A rustls server config presenting `chain`, offering ALPN h2 and http/1.1.
pub(crate) fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<ServerConfig>, String> {
    let mut cfg = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| e.to_string())?;
    cfg.alpn_protocols = super::alpn_h2_http1();
    Ok(Arc::new(cfg))
}

/// A positive 16-byte random serial number.
pub(crate) fn random_serial(provider: &CryptoProvider) -> Result<SerialNumber, String> {
    let mut bytes = [0u8; 16];
    provider
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| "no randomness available".to_string())?;
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

/// Per-host cache of server configs: bounded, entries expire after `ttl`, and callers
/// racing on one missing host wait for the first one's mint instead of minting again.
pub(crate) struct LeafCache {
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    capacity: usize,
    ttl: Duration,
}

struct Slot {
    created: Instant,
    value: Mutex<Option<Arc<ServerConfig>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl LeafCache {
    pub(crate) fn new(capacity: usize, ttl: Duration) -> Self {
        let slots = Mutex::new(HashMap::new());
        Self {
            slots,
            capacity: capacity.max(1),
            ttl,
        }
    }

    pub(crate) fn len(&self) -> usize {
        lock(&self.slots).len()
    }

    /// The cached config for `key`, or the one `mint` makes (errors are not cached).
    pub(crate) fn get_or_mint<E>(
        &self,
        key: &str,
        mint: impl FnOnce() -> Result<Arc<ServerConfig>, E>,
    ) -> Result<Arc<ServerConfig>, E> {
        let slot = {
            let mut slots = lock(&self.slots);
            match slots.get(key) {
                Some(slot) if slot.created.elapsed() < self.ttl => slot.clone(),
                _ => {
                    if slots.len() >= self.capacity && !slots.contains_key(key) {
                        self.evict(&mut slots);
                    }
                    let slot = Arc::new(Slot {
                        created: Instant::now(),
                        value: Mutex::new(None),
                    });
                    slots.insert(key.to_string(), slot.clone());
                    slot
                }
            }
        };
        let mut value = lock(&slot.value);
        if let Some(cfg) = value.as_ref() {
            return Ok(cfg.clone());
        }
        let cfg = mint()?;
        *value = Some(cfg.clone());
        Ok(cfg)
    }

    /// Drops expired entries; if still full, the oldest one.
    fn evict(&self, slots: &mut HashMap<String, Arc<Slot>>) {
        slots.retain(|_, s| s.created.elapsed() < self.ttl);
        if slots.len() >= self.capacity {
            let oldest = slots
                .iter()
                .min_by_key(|(_, s)| s.created)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                slots.remove(&k);
            }
        }
    }
}

/// What sidekey needs to know about its CA certificate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CertFacts {
    pub is_ca: bool,
    pub not_after: OffsetDateTime,
}

/// Reads basicConstraints.cA and notAfter from a DER certificate; None if malformed.
pub(crate) fn inspect(der: &[u8]) -> Option<CertFacts> {
    let mut outer = der;
    let mut cert = take(&mut outer, 0x30)?;
    let mut tbs = take(&mut cert, 0x30)?;
    if tbs.first() == Some(&0xa0) {
        next(&mut tbs)?; // version
    }
    take(&mut tbs, 0x02)?; // serialNumber
    take(&mut tbs, 0x30)?; // signature algorithm
    take(&mut tbs, 0x30)?; // issuer
    let mut validity = take(&mut tbs, 0x30)?;
    next(&mut validity)?; // notBefore
    let (tag, not_after) = next(&mut validity)?;
    let not_after = parse_time(tag, not_after)?;
    take(&mut tbs, 0x30)?; // subject
    take(&mut tbs, 0x30)?; // subjectPublicKeyInfo
    let mut is_ca = false;
    while let Some((tag, mut content)) = next(&mut tbs) {
        if tag != 0xa3 {
            continue; // issuerUniqueID / subjectUniqueID
        }
        let mut exts = take(&mut content, 0x30)?;
        while !exts.is_empty() {
            let mut ext = take(&mut exts, 0x30)?;
            let oid = take(&mut ext, 0x06)?;
            if ext.first() == Some(&0x01) {
                next(&mut ext)?; // critical
            }
            let mut value = take(&mut ext, 0x04)?;
            if oid == [0x55, 0x1d, 0x13] {
                let mut bc = take(&mut value, 0x30)?;
                if let Some((0x01, flag)) = next(&mut bc) {
                    is_ca = flag.first().is_some_and(|&b| b != 0);
                }
            }
        }
    }
    Some(CertFacts { is_ca, not_after })
}

/// One DER TLV from the front of `buf`: (tag, contents).
fn next<'a>(buf: &mut &'a [u8]) -> Option<(u8, &'a [u8])> {
    let (&tag, rest) = buf.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (len, rest) = rest.split_at(n);
        (
            len.iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b)),
            rest,
        )
    };
    if rest.len() < len {
        return None;
    }
    let (content, rest) = rest.split_at(len);
    *buf = rest;
    Some((tag, content))
}

fn take<'a>(buf: &mut &'a [u8], tag: u8) -> Option<&'a [u8]> {
    let (t, content) = next(buf)?;
    (t == tag).then_some(content)
}

/// UTCTime (0x17, YYMMDDHHMMSSZ) or GeneralizedTime (0x18, YYYYMMDDHHMMSSZ).
fn parse_time(tag: u8, content: &[u8]) -> Option<OffsetDateTime> {
    let s = std::str::from_utf8(content).ok()?.strip_suffix('Z')?;
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (year, rest) = match (tag, s.len()) {
        (0x17, 12) => {
            let yy: i32 = s[..2].parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &s[2..])
        }
        (0x18, 14) => (s[..4].parse().ok()?, &s[4..]),
        _ => return None,
    };
    let n = |i: usize| rest.get(i..i + 2)?.parse::<u8>().ok();
    let date = Date::from_calendar_date(year, Month::try_from(n(0)?).ok()?, n(2)?).ok()?;
    let time = Time::from_hms(n(4)?, n(6)?, n(8)?).ok()?;
    Some(PrimitiveDateTime::new(date, time).assume_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::test_util::handshake;
    use crate::tls::{CaError, CertificateAuthority};

    fn new_ca() -> (tempfile::TempDir, CertificateAuthority) {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = CertificateAuthority::init_dir(dir.path(), false).unwrap();
        let ca = CertificateAuthority::load(&c, &k).unwrap();
        (dir, ca)
    }

    /// A client trusting only `ca`, with the same ALPN list a browser would send.
    fn client_trusting(ca: &CertificateAuthority) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut ca.cert_pem().as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let mut cfg = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(cfg)
    }

    #[tokio::test]
    async fn leaf_verifies_for_its_host_only() {
        let (_dir, ca) = new_ca();
        let server = ca.server_config("api.example.com").unwrap();
        let client = client_trusting(&ca);
        let alpn = handshake(server.clone(), client.clone(), "api.example.com").await;
        assert_eq!(alpn.unwrap().as_deref(), Some(&b"h2"[..]));
        let err = handshake(server, client, "other.example.com")
            .await
            .unwrap_err();
        assert!(err.contains("not valid for name"), "{err}");
    }

    #[tokio::test]
    async fn leaf_is_refused_by_a_client_trusting_another_ca() {
        let (_dir, ca) = new_ca();
        let (_dir2, other) = new_ca();
        let server = ca.server_config("api.example.com").unwrap();
        let err = handshake(server, client_trusting(&other), "api.example.com")
            .await
            .unwrap_err();
        assert!(err.contains("invalid peer certificate"), "{err}");
    }

    #[tokio::test]
    async fn ip_hosts_get_an_ip_san() {
        let (_dir, ca) = new_ca();
        let client = client_trusting(&ca);
        let v4 = ca.server_config("127.0.0.1").unwrap();
        handshake(v4.clone(), client.clone(), "127.0.0.1")
            .await
            .unwrap();
        assert!(handshake(v4, client.clone(), "localhost").await.is_err());
        let v6 = ca.server_config("[::1]").unwrap();
        handshake(v6, client, "::1").await.unwrap();
        let (_, san) = host_san("10.0.0.1").unwrap();
        assert!(matches!(san, SanType::IpAddress(_)));
        let (name, san) = host_san("API.Example.com.").unwrap();
        assert_eq!(name, "api.example.com");
        assert!(matches!(san, SanType::DnsName(_)));
    }

    #[test]
    fn bad_hosts_are_errors_not_panics() {
        let (_dir, ca) = new_ca();
        for host in [
            "",
            ".",
            "a b",
            "a..b",
            "bad_\u{e9}.com",
            "[::1",
            "*.example.com",
        ] {
            let err = ca.server_config(host).unwrap_err();
            assert!(matches!(err, CaError::Issue { .. }), "{host:?}: {err}");
        }
    }

    #[test]
    fn cache_returns_the_same_config_and_mints_once_under_contention() {
        let (_dir, ca) = new_ca();
        let a = ca.server_config("api.example.com").unwrap();
        let b = ca.server_config("API.example.com").unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(
            &a,
            &ca.server_config("b.example.com").unwrap()
        ));

        let ca = Arc::new(ca);
        let barrier = Arc::new(std::sync::Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (ca, barrier) = (ca.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    ca.server_config("race.example.com").unwrap()
                })
            })
            .collect();
        let got: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert!(got.iter().all(|c| Arc::ptr_eq(c, &got[0])));
    }

    #[test]
    fn cache_is_bounded_and_expires() {
        let minted = std::cell::Cell::new(0);
        let (_dir, ca) = new_ca();
        let cfg = ca.server_config("x.example.com").unwrap();
        let mint = || {
            minted.set(minted.get() + 1);
            Ok::<_, ()>(cfg.clone())
        };
        let cache = LeafCache::new(2, Duration::from_millis(500));
        for host in ["a", "b", "a", "c"] {
            cache.get_or_mint(host, mint).unwrap();
        }
        assert_eq!((minted.get(), cache.len()), (3, 2));
        cache.get_or_mint("a", mint).unwrap(); // "a" was the oldest: evicted by "c"
        assert_eq!(minted.get(), 4);
        std::thread::sleep(Duration::from_millis(600));
        cache.get_or_mint("c", mint).unwrap();
        assert_eq!(minted.get(), 5, "expired entry is minted again");
        assert!(
            cache
                .get_or_mint("d", || Err::<Arc<ServerConfig>, _>(()))
                .is_err()
        );
        cache.get_or_mint("d", mint).unwrap();
        assert_eq!(minted.get(), 6, "errors are not cached");
    }

    #[test]
    fn leaf_validity_is_capped_by_the_ca() {
        let (_dir, ca) = new_ca();
        let (chain, _) = ca.issue("api.example.com").unwrap();
        assert_eq!(chain.len(), 2, "[leaf, ca]");
        let now = OffsetDateTime::now_utc();
        let leaf = inspect(&chain[0]).unwrap();
        assert!(!leaf.is_ca);
        let days = (leaf.not_after - now).whole_days();
        assert!((29..=30).contains(&days), "{days}");

        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(vec![]).unwrap();
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let soon = (now + time::Duration::days(2))
            .replace_nanosecond(0)
            .unwrap();
        params.not_after = soon;
        let ca_der = params.self_signed(&key).unwrap().der().clone();
        let issuer = Issuer::new(params, key);
        let provider = crate::tls::provider();
        let (chain, _) = issue(&issuer, &[ca_der], soon, "h.example", &provider).unwrap();
        assert_eq!(inspect(&chain[0]).unwrap().not_after, soon);
    }

    #[test]
    fn parses_both_asn1_time_forms() {
        let t = |tag, s: &str| parse_time(tag, s.as_bytes()).map(|t| t.unix_timestamp());
        assert_eq!(t(0x17, "491231235959Z"), Some(2524607999));
        assert_eq!(t(0x17, "700101000000Z"), Some(0));
        assert_eq!(t(0x18, "20500101000000Z"), Some(2524608000));
        assert_eq!(t(0x18, "2050010100000Z"), None);
        assert_eq!(t(0x17, "49123123595+Z"), None);
        assert!(inspect(b"\x30\x03\x02\x01\x00").is_none());
    }
}
