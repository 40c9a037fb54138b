//! The interception CA (`tls.ca_cert` + `tls.ca_key`): loading and checking it,
//! generating a new one (`sidekey ca init`), and handing out per-host server configs
//! whose leaf certificates it signs (minting and caching live in `leaf`).

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use time::OffsetDateTime;

use super::leaf::{self, LeafCache};

pub(super) const CERT: &str = "tls.ca_cert";
pub(super) const KEY: &str = "tls.ca_key";

/// Why a CA could not be loaded, generated, written or used. Never holds key material.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        field: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{} holds no PEM certificate", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{} is not a valid certificate: {reason}", path.display())]
    BadCertificate { path: PathBuf, reason: String },
    #[error("{} is not a CA certificate (basicConstraints CA:TRUE is missing)", path.display())]
    NotCa { path: PathBuf },
    #[error("{} expired on {not_after}", path.display())]
    Expired {
        path: PathBuf,
        not_after: OffsetDateTime,
    },
    #[error("{} holds no unencrypted PEM private key", path.display())]
    NoKey { path: PathBuf },
    #[error("{} is not a usable private key: {reason}", path.display())]
    BadKey { path: PathBuf, reason: String },
    #[error("private key {} does not match tls.ca_cert", path.display())]
    KeyMismatch { path: PathBuf },
    #[error("{} cannot issue certificates that verify against it: {reason}", path.display())]
    Unusable { path: PathBuf, reason: String },
    #[error("{} already exists (use --force to overwrite)", path.display())]
    Exists { field: &'static str, path: PathBuf },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        field: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{} does not exist but its pair does: `tls.generate` creates both or neither (remove the other to start afresh)", path.display())]
    HalfPair { field: &'static str, path: PathBuf },
    #[error("cannot generate a CA: {0}")]
    Generate(String),
    #[error("cannot issue a certificate for {host:?}: {reason}")]
    Issue { host: String, reason: String },
}

impl CaError {
    /// The config key the problem is about: "tls.ca_cert" or "tls.ca_key".
    pub fn field(&self) -> &'static str {
        match self {
            Self::Read { field, .. }
            | Self::Exists { field, .. }
            | Self::Write { field, .. }
            | Self::HalfPair { field, .. } => field,
            Self::NoKey { .. } | Self::BadKey { .. } | Self::KeyMismatch { .. } => KEY,
            Self::Generate(_) => KEY,
            _ => CERT,
        }
    }
}

/// A loaded CA that signs leaf certificates for intercepted hosts.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    /// The certificates of `tls.ca_cert`, the CA first; served after each leaf.
    chain: Vec<CertificateDer<'static>>,
    not_after: OffsetDateTime,
    provider: Arc<CryptoProvider>,
    leaves: LeafCache,
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("not_after", &self.not_after)
            .field("chain_len", &self.chain.len())
            .field("cached_leaves", &self.leaves.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

impl CertificateAuthority {
    /// Loads a PEM CA certificate (the first certificate of `cert`; any further ones are
    /// served as its chain) and its PEM private key (PKCS#8, SEC1 or PKCS#1; ECDSA
    /// P-256/P-384, RSA or Ed25519), and checks that they belong together.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, CaError> {
        let cert_bytes = read(cert, CERT)?;
        let mut chain = Vec::new();
        for item in rustls_pemfile::certs(&mut cert_bytes.as_slice()) {
            chain.push(item.map_err(|e| bad_cert(cert, format!("invalid PEM: {e}")))?);
        }
        let Some(ca_der) = chain.first().cloned() else {
            return Err(CaError::NoCertificate { path: cert.into() });
        };
        let facts = leaf::inspect(&ca_der).ok_or_else(|| bad_cert(cert, "malformed X.509"))?;
        if !facts.is_ca {
            return Err(CaError::NotCa { path: cert.into() });
        }
        if facts.not_after <= OffsetDateTime::now_utc() {
            return Err(CaError::Expired {
                path: cert.into(),
                not_after: facts.not_after,
            });
        }

        let provider = super::provider();
        let key_der = read_key(key)?;
        let bad_key = |reason: String| CaError::BadKey {
            path: key.into(),
            reason,
        };
        let signer = provider
            .key_provider
            .load_private_key(key_der.clone_key())
            .map_err(|e| bad_key(e.to_string()))?;
        let paired = CertifiedKey::new(vec![ca_der.clone()], signer);
        if paired.keys_match().is_err() {
            return Err(CaError::KeyMismatch { path: key.into() });
        }
        let key_pair = key_pair(&key_der).map_err(bad_key)?;
        let issuer = Issuer::from_ca_cert_der(&ca_der, key_pair)
            .map_err(|e| bad_cert(cert, e.to_string()))?;

        let ca = Self {
            issuer,
            chain,
            not_after: facts.not_after,
            provider,
            leaves: LeafCache::new(10_000, Duration::from_secs(24 * 60 * 60)),
        };
        ca.self_test().map_err(|reason| CaError::Unusable {
            path: cert.into(),
            reason,
        })?;
        Ok(ca)
    }

    /// Generates a new CA (ECDSA P-256, CN "sidekey local CA", 10 years, pathlen 0,
    /// keyCertSign + cRLSign). Returns (cert_pem, key_pem).
    pub fn generate() -> Result<(String, String), CaError> {
        let err = |e: rcgen::Error| CaError::Generate(e.to_string());
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(err)?;
        let now = OffsetDateTime::now_utc();
        // A random unit makes each generated CA's subject unique, so clients that
        // trust several sidekey CAs never confuse one for another.
        let serial = leaf::random_serial(&super::provider()).map_err(CaError::Generate)?;
        let id = serial.to_bytes()[1..5]
            .iter()
            .fold(String::new(), |s, b| s + &format!("{b:02x}"));
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "sidekey local CA");
        dn.push(DnType::OrganizationName, "sidekey");
        dn.push(DnType::OrganizationalUnitName, format!("ca-{id}"));
        let mut params = CertificateParams::default();
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(3650);
        params.serial_number = Some(serial);
        let cert = params.self_signed(&key).map_err(err)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Writes a new `ca.crt` and `ca.key` (mode 0600 from creation) into `dir`, creating
    /// it (mode 0700) if missing. Refuses to replace either file unless `force`.
    pub fn init_dir(dir: &Path, force: bool) -> Result<(PathBuf, PathBuf), CaError> {
        let (cert_path, key_path) = (dir.join("ca.crt"), dir.join("ca.key"));
        for (path, field) in [(&cert_path, CERT), (&key_path, KEY)] {
            if !force && fs::symlink_metadata(path).is_ok() {
                return Err(CaError::Exists {
                    field,
                    path: path.clone(),
                });
            }
        }
        let (cert_pem, key_pem) = Self::generate()?;
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir).map_err(|source| CaError::Write {
            field: KEY,
            path: dir.into(),
            source,
        })?;
        write_new(&key_path, key_pem.as_bytes(), 0o600, KEY, force)?;
        write_new(&cert_path, cert_pem.as_bytes(), 0o644, CERT, force)?;
        Ok((cert_path, key_path))
    }

    /// The CA certificate(s) as PEM, for clients to trust.
    #[cfg(test)]
    pub(crate) fn cert_pem(&self) -> String {
        self.chain
            .iter()
            .map(|c| super::roots::pem_encode(c))
            .collect()
    }

    /// A server config presenting a leaf for exactly `host` (DNS or IP SAN), chain
    /// [leaf, ca], ALPN h2 + http/1.1. Minted on first use, then cached per host.
    pub fn server_config(&self, host: &str) -> Result<Arc<rustls::ServerConfig>, CaError> {
        let issue_err = |reason| CaError::Issue {
            host: host.to_string(),
            reason,
        };
        let (name, _) = leaf::host_san(host).map_err(issue_err)?;
        self.leaves.get_or_mint(&name, || {
            let (chain, key) = self.issue(&name).map_err(issue_err)?;
            leaf::server_config(chain, key, &self.provider).map_err(issue_err)
        })
    }

    pub(crate) fn issue(
        &self,
        host: &str,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
        leaf::issue(
            &self.issuer,
            &self.chain,
            self.not_after,
            host,
            &self.provider,
        )
    }

    /// Mints a probe leaf and verifies it the way a client trusting the CA would, so a
    /// CA whose subject or algorithm rcgen cannot reproduce is refused at load time.
    fn self_test(&self) -> Result<(), String> {
        let name = "ca-self-test.sidekey.invalid";
        let (chain, _) = self.issue(name)?;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.chain[0].clone())
            .map_err(|e| e.to_string())?;
        let verifier =
            WebPkiServerVerifier::builder_with_provider(roots.into(), self.provider.clone())
                .build()
                .map_err(|e| e.to_string())?;
        let name = ServerName::try_from(name).map_err(|e| e.to_string())?;
        verifier
            .verify_server_cert(&chain[0], &chain[1..], &name, &[], UnixTime::now())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

fn bad_cert(path: &Path, reason: impl Into<String>) -> CaError {
    CaError::BadCertificate {
        path: path.into(),
        reason: reason.into(),
    }
}

fn read(path: &Path, field: &'static str) -> Result<Vec<u8>, CaError> {
    fs::read(path).map_err(|source| CaError::Read {
        field,
        path: path.into(),
        source,
    })
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, CaError> {
    let bytes = read(path, KEY)?;
    match rustls_pemfile::private_key(&mut bytes.as_slice()) {
        Ok(Some(key)) => Ok(key),
        Ok(None) => Err(CaError::NoKey { path: path.into() }),
        Err(_) => Err(CaError::BadKey {
            path: path.into(),
            reason: "invalid PEM".into(),
        }),
    }
}

/// An rcgen signing key from any key encoding rustls reads. rcgen (on ring) takes only
/// PKCS#8, so SEC1 and PKCS#1 keys are wrapped into PKCS#8 first.
fn key_pair(der: &PrivateKeyDer<'_>) -> Result<KeyPair, String> {
    const EC: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    const P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
    const RSA: &[u8] = &[
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let candidates: Vec<Vec<u8>> = match der {
        PrivateKeyDer::Pkcs8(k) => vec![k.secret_pkcs8_der().to_vec()],
        PrivateKeyDer::Sec1(k) => [P256, P384]
            .iter()
            .map(|curve| pkcs8(&[EC, curve].concat(), k.secret_sec1_der()))
            .collect(),
        PrivateKeyDer::Pkcs1(k) => vec![pkcs8(RSA, k.secret_pkcs1_der())],
        _ => return Err("unsupported key encoding".into()),
    };
    candidates
        .into_iter()
        .find_map(|c| KeyPair::try_from(&PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(c))).ok())
        .ok_or_else(|| "unsupported key type (want ECDSA P-256/P-384, RSA or Ed25519)".into())
}

/// PKCS#8 PrivateKeyInfo { version 0, AlgorithmIdentifier { alg }, OCTET STRING key }.
fn pkcs8(alg: &[u8], key: &[u8]) -> Vec<u8> {
    let mut body = vec![0x02, 0x01, 0x00];
    body.extend(tlv(0x30, alg));
    body.extend(tlv(0x04, key));
    tlv(0x30, &body)
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = vec![tag];
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|&b| b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// Creates `path` with `mode` set at creation; with `replace`, removes an old file first.
pub(super) fn write_new(
    path: &Path,
    data: &[u8],
    mode: u32,
    field: &'static str,
    replace: bool,
) -> Result<(), CaError> {
    let err = |source| CaError::Write {
        field,
        path: path.into(),
        source,
    };
    if replace {
        match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(err(e)),
            _ => {}
        }
    }
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = opts.open(path).map_err(|e| match e.kind() {
        io::ErrorKind::AlreadyExists => CaError::Exists {
            field,
            path: path.into(),
        },
        _ => err(e),
    })?;
    file.write_all(data).map_err(err)?;
    file.sync_all().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, cert_pem: &str, key_pem: &str) -> (PathBuf, PathBuf) {
        let (c, k) = (dir.join("c.pem"), dir.join("k.pem"));
        fs::write(&c, cert_pem).unwrap();
        fs::write(&k, key_pem).unwrap();
        (c, k)
    }

    /// A self-signed certificate with the given CA flag, key algorithm and validity end.
    fn custom(
        is_ca: IsCa,
        alg: &'static rcgen::SignatureAlgorithm,
        days: i64,
    ) -> (String, KeyPair) {
        let key = KeyPair::generate_for(alg).unwrap();
        let mut params = CertificateParams::new(vec![]).unwrap();
        params.is_ca = is_ca;
        params.not_before = OffsetDateTime::now_utc() - time::Duration::days(2);
        params.not_after = OffsetDateTime::now_utc() + time::Duration::days(days);
        (params.self_signed(&key).unwrap().pem(), key)
    }

    #[test]
    fn generate_then_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_pem, key_pem) = CertificateAuthority::generate().unwrap();
        assert!(cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let (c, k) = write_pair(dir.path(), &cert_pem, &key_pem);
        let ca = CertificateAuthority::load(&c, &k).unwrap();
        assert_eq!(ca.cert_pem(), cert_pem, "re-encoded PEM equals rcgen's");
        let der = rustls_pemfile::certs(&mut cert_pem.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        let facts = leaf::inspect(&der).unwrap();
        assert!(facts.is_ca);
        let years = (facts.not_after - OffsetDateTime::now_utc()).whole_days();
        assert!((3649..=3650).contains(&years), "{years} days");
        assert_eq!(ca.not_after, facts.not_after);
    }

    #[test]
    fn mismatched_key_is_refused_on_the_key_field() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_pem, _) = CertificateAuthority::generate().unwrap();
        let (_, other_key) = CertificateAuthority::generate().unwrap();
        let (c, k) = write_pair(dir.path(), &cert_pem, &other_key);
        let err = CertificateAuthority::load(&c, &k).unwrap_err();
        assert!(matches!(err, CaError::KeyMismatch { .. }), "{err}");
        assert_eq!(err.field(), "tls.ca_key");
        let msg = err.to_string();
        assert!(msg.contains("does not match tls.ca_cert"), "{msg}");
        let key_body = other_key.lines().nth(1).unwrap();
        assert!(!msg.contains(key_body) && !format!("{err:?}").contains(key_body));
    }

    #[test]
    fn non_ca_certificates_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for is_ca in [IsCa::NoCa, IsCa::ExplicitNoCa] {
            let (cert_pem, key) = custom(is_ca, &PKCS_ECDSA_P256_SHA256, 30);
            let (c, k) = write_pair(dir.path(), &cert_pem, &key.serialize_pem());
            let err = CertificateAuthority::load(&c, &k).unwrap_err();
            assert!(matches!(err, CaError::NotCa { .. }), "{err}");
            assert_eq!(err.field(), "tls.ca_cert");
        }
    }

    #[test]
    fn expired_ca_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let (cert_pem, key) = custom(ca, &PKCS_ECDSA_P256_SHA256, -1);
        let (c, k) = write_pair(dir.path(), &cert_pem, &key.serialize_pem());
        let err = CertificateAuthority::load(&c, &k).unwrap_err();
        assert!(matches!(err, CaError::Expired { .. }), "{err}");
        assert_eq!(err.field(), "tls.ca_cert");
    }

    #[test]
    fn unreadable_and_non_pem_files_name_their_field() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_pem, key_pem) = CertificateAuthority::generate().unwrap();
        let (c, k) = write_pair(dir.path(), &cert_pem, &key_pem);
        let missing = dir.path().join("missing.pem");
        let err = CertificateAuthority::load(&missing, &k).unwrap_err();
        assert!(
            matches!(err, CaError::Read { .. }) && err.field() == "tls.ca_cert",
            "{err}"
        );
        let err = CertificateAuthority::load(&c, &missing).unwrap_err();
        assert!(
            matches!(err, CaError::Read { .. }) && err.field() == "tls.ca_key",
            "{err}"
        );
        // Swapped files: the key file holds no certificate, the cert file no key.
        let err = CertificateAuthority::load(&k, &k).unwrap_err();
        assert!(matches!(err, CaError::NoCertificate { .. }) && err.field() == "tls.ca_cert");
        let err = CertificateAuthority::load(&c, &c).unwrap_err();
        assert!(
            matches!(err, CaError::NoKey { .. }) && err.field() == "tls.ca_key",
            "{err}"
        );
        let junk = dir.path().join("junk");
        fs::write(
            &junk,
            "-----BEGIN PRIVATE KEY-----\nnot base64!\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let err = CertificateAuthority::load(&c, &junk).unwrap_err();
        assert_eq!(err.field(), "tls.ca_key", "{err}");
    }

    #[test]
    fn loads_other_key_types_and_encodings() {
        let dir = tempfile::tempdir().unwrap();
        let ca = IsCa::Ca(BasicConstraints::Unconstrained);
        for alg in [&rcgen::PKCS_ED25519, &rcgen::PKCS_ECDSA_P384_SHA384] {
            let (cert_pem, key) = custom(ca, alg, 30);
            let (c, k) = write_pair(dir.path(), &cert_pem, &key.serialize_pem());
            let loaded = CertificateAuthority::load(&c, &k).unwrap();
            loaded.server_config("api.example.com").unwrap();
        }
        // SEC1 ("EC PRIVATE KEY"), as `openssl ecparam -genkey` writes it.
        let (cert_pem, key) = custom(ca, &PKCS_ECDSA_P256_SHA256, 30);
        let mut pkcs8 = key.serialized_der();
        let mut info = leaf_tlv(&mut pkcs8, 0x30);
        leaf_tlv(&mut info, 0x02);
        leaf_tlv(&mut info, 0x30);
        let sec1 = leaf_tlv(&mut info, 0x04);
        let sec1_pem =
            super::super::roots::pem_encode(sec1).replace("CERTIFICATE", "EC PRIVATE KEY");
        let (c, k) = write_pair(dir.path(), &cert_pem, &sec1_pem);
        CertificateAuthority::load(&c, &k).unwrap();
    }

    fn leaf_tlv<'a>(buf: &mut &'a [u8], tag: u8) -> &'a [u8] {
        assert_eq!(buf[0], tag);
        let (len, hdr) = match buf[1] {
            n if n < 0x80 => (n as usize, 2),
            0x81 => (buf[2] as usize, 3),
            _ => ((buf[2] as usize) << 8 | buf[3] as usize, 4),
        };
        let content = &buf[hdr..hdr + len];
        *buf = &buf[hdr + len..];
        content
    }

    #[test]
    fn init_dir_writes_a_loadable_pair_and_refuses_to_overwrite() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("new/ca");
        let (c, k) = CertificateAuthority::init_dir(&dir, false).unwrap();
        CertificateAuthority::load(&c, &k).unwrap();
        let before = fs::read(&k).unwrap();
        let err = CertificateAuthority::init_dir(&dir, false).unwrap_err();
        assert!(matches!(err, CaError::Exists { .. }), "{err}");
        assert_eq!(
            fs::read(&k).unwrap(),
            before,
            "refusal leaves the key alone"
        );
        fs::remove_file(&k).unwrap();
        let err = CertificateAuthority::init_dir(&dir, false).unwrap_err();
        assert!(
            matches!(
                err,
                CaError::Exists {
                    field: "tls.ca_cert",
                    ..
                }
            ),
            "{err}"
        );
        let (c, k) = CertificateAuthority::init_dir(&dir, true).unwrap();
        CertificateAuthority::load(&c, &k).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn key_file_is_private_even_when_forced_over_a_public_one() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let (c, k) = CertificateAuthority::init_dir(dir.path(), false).unwrap();
        assert_eq!(mode(&k), 0o600);
        assert_eq!(mode(&c) & 0o600, 0o600);
        fs::set_permissions(&k, fs::Permissions::from_mode(0o644)).unwrap();
        let (_, k) = CertificateAuthority::init_dir(dir.path(), true).unwrap();
        assert_eq!(mode(&k), 0o600);
        let sub = dir.path().join("fresh");
        CertificateAuthority::init_dir(&sub, false).unwrap();
        assert_eq!(mode(&sub), 0o700);
    }

    #[test]
    fn debug_redacts_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_pem, key_pem) = CertificateAuthority::generate().unwrap();
        let (c, k) = write_pair(dir.path(), &cert_pem, &key_pem);
        let ca = CertificateAuthority::load(&c, &k).unwrap();
        let dbg = format!("{ca:?}");
        assert!(dbg.contains("<redacted>"), "{dbg}");
        for line in key_pem.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!dbg.contains(line), "{dbg}");
        }
    }
}
