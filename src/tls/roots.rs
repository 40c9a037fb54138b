//! The client side of TLS: which roots upstream certificates are verified against
//! (`tls.upstream_roots`: system store and/or PEM bundles), the trust bundle handed to
//! agents (system roots + sidekey's CA), and `sidekey ca env` shell lines.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// Environment variables that point common HTTP clients at a CA bundle file.
pub const BUNDLE_ENV_VARS: [&str; 8] = [
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "CARGO_HTTP_CAINFO",
    "GIT_SSL_CAINFO",
    "AWS_CA_BUNDLE",
    "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",
];

/// The Debian/Ubuntu/Alpine system bundle, used when rustls-native-certs finds nothing.
const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Why upstream trust roots or the trust bundle could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RootsError {
    #[error("no usable certificates found in the system trust store{0}")]
    NoSystemRoots(String),
    #[error("no upstream trust roots configured (neither system nor a PEM bundle)")]
    NoRoots,
    #[error("cannot read PEM bundle {}: {source}", path.display())]
    ReadBundle { path: PathBuf, source: io::Error },
    #[error("PEM bundle {} is not valid PEM: {reason}", path.display())]
    BadBundle { path: PathBuf, reason: String },
    #[error("PEM bundle {} holds no usable certificate", path.display())]
    EmptyBundle { path: PathBuf },
    #[error("cannot write trust bundle {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot build the TLS client config: {0}")]
    Config(#[from] rustls::Error),
}

/// Client TLS config for upstream connections, verifying against the system roots
/// (if `system`) and the PEM `bundles`; ALPN h2 + http/1.1. Loading the system store
/// takes a few milliseconds: build once and share the `Arc`.
pub fn client_config(system: bool, bundles: &[PathBuf]) -> Result<Arc<ClientConfig>, RootsError> {
    build(system, bundles, super::alpn_h2_http1())
}

/// Like [`client_config`] but offering only http/1.1 (for WebSocket upgrades).
pub fn client_config_http1(
    system: bool,
    bundles: &[PathBuf],
) -> Result<Arc<ClientConfig>, RootsError> {
    build(system, bundles, vec![b"http/1.1".to_vec()])
}

fn build(
    system: bool,
    bundles: &[PathBuf],
    alpn: Vec<Vec<u8>>,
) -> Result<Arc<ClientConfig>, RootsError> {
    let mut roots = RootCertStore::empty();
    if system {
        let (added, _) = roots.add_parsable_certificates(system_certs()?);
        if added == 0 {
            return Err(RootsError::NoSystemRoots(" (none parse)".into()));
        }
    }
    for path in bundles {
        let (added, _) = roots.add_parsable_certificates(read_bundle(path)?);
        if added == 0 {
            return Err(RootsError::EmptyBundle { path: path.clone() });
        }
    }
    if roots.is_empty() {
        return Err(RootsError::NoRoots);
    }
    let mut cfg = ClientConfig::builder_with_provider(super::provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn;
    Ok(Arc::new(cfg))
}

/// The system store's certificates; individual unreadable ones are skipped.
fn system_certs() -> Result<Vec<CertificateDer<'static>>, RootsError> {
    let found = rustls_native_certs::load_native_certs();
    if found.certs.is_empty() {
        let detail = match found.errors.first() {
            Some(e) => format!(": {e}"),
            None => String::new(),
        };
        return Err(RootsError::NoSystemRoots(detail));
    }
    Ok(found.certs)
}

fn read_bundle(path: &Path) -> Result<Vec<CertificateDer<'static>>, RootsError> {
    let bytes = fs::read(path).map_err(|source| RootsError::ReadBundle {
        path: path.into(),
        source,
    })?;
    let certs: Result<Vec<_>, _> = rustls_pemfile::certs(&mut bytes.as_slice()).collect();
    let certs = certs.map_err(|e| RootsError::BadBundle {
        path: path.into(),
        reason: e.to_string(),
    })?;
    if certs.is_empty() {
        return Err(RootsError::EmptyBundle { path: path.into() });
    }
    Ok(certs)
}

/// Writes the system roots followed by `ca_pem` to `out` (atomically, via a temporary
/// file beside it), for agents to trust sidekey's CA without losing the public roots.
pub fn write_trust_bundle(ca_pem: &str, out: &Path) -> Result<(), RootsError> {
    let ca_ders: HashSet<Vec<u8>> = rustls_pemfile::certs(&mut ca_pem.as_bytes())
        .filter_map(Result::ok)
        .map(|c| c.to_vec())
        .collect();
    let mut seen = HashSet::new();
    let mut bundle = String::new();
    for cert in rustls_native_certs::load_native_certs().certs {
        if !ca_ders.contains(cert.as_ref()) && seen.insert(cert.to_vec()) {
            bundle.push_str(&pem_encode(&cert));
        }
    }
    if bundle.is_empty() {
        bundle = fs::read_to_string(SYSTEM_BUNDLE).unwrap_or_default();
        if !bundle.is_empty() && !bundle.ends_with('\n') {
            bundle.push('\n');
        }
    }
    if bundle.is_empty() {
        return Err(RootsError::NoSystemRoots(format!(
            " (nor in {SYSTEM_BUNDLE})"
        )));
    }
    bundle.push_str(ca_pem);
    if !bundle.ends_with('\n') {
        bundle.push('\n');
    }
    let err = |source| RootsError::Write {
        path: out.into(),
        source,
    };
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = out.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    fs::write(&tmp, bundle).map_err(err)?;
    fs::rename(&tmp, out).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        err(e)
    })
}

/// `export NAME='bundle'` lines for `sidekey ca env`, one per [`BUNDLE_ENV_VARS`].
pub fn ca_env_lines(bundle_path: &Path) -> Vec<String> {
    let value = shell_quote(&bundle_path.to_string_lossy());
    BUNDLE_ENV_VARS
        .iter()
        .map(|name| format!("export {name}={value}"))
        .collect()
}

/// POSIX single-quoting: 'it'\''s'.
pub(crate) fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// One DER certificate as a PEM block (64-column base64, trailing newline).
pub(crate) fn pem_encode(der: &[u8]) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = Vec::with_capacity(der.len().div_ceil(3) * 4);
    for chunk in der.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            let pad = i > chunk.len();
            b64.push(if pad {
                b'='
            } else {
                B64[(n >> (18 - 6 * i) & 0x3f) as usize]
            });
        }
    }
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::CertificateAuthority;
    use crate::tls::test_util::handshake;

    fn new_ca(dir: &Path) -> CertificateAuthority {
        let (c, k) = CertificateAuthority::init_dir(dir, false).unwrap();
        CertificateAuthority::load(&c, &k).unwrap()
    }

    #[tokio::test]
    async fn bundle_roots_trust_a_server_chaining_to_them() {
        let dir = tempfile::tempdir().unwrap();
        let ca = new_ca(&dir.path().join("a"));
        let other = new_ca(&dir.path().join("b"));
        let server = ca.server_config("api.example.com").unwrap();

        let bundle = dir.path().join("a/ca.crt");
        let client = client_config(false, std::slice::from_ref(&bundle)).unwrap();
        let alpn = handshake(server.clone(), client, "api.example.com")
            .await
            .unwrap();
        assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));

        let client = client_config_http1(false, std::slice::from_ref(&bundle)).unwrap();
        let alpn = handshake(server.clone(), client, "api.example.com")
            .await
            .unwrap();
        assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));

        let wrong = [dir.path().join("b/ca.crt")];
        let client = client_config(false, &wrong).unwrap();
        assert!(
            handshake(server.clone(), client, "api.example.com")
                .await
                .is_err()
        );
        drop(other);

        // System roots alone do not trust sidekey's CA.
        if let Ok(client) = client_config(true, &[]) {
            assert!(handshake(server, client, "api.example.com").await.is_err());
        }
    }

    #[test]
    fn system_roots_load() {
        let cfg = client_config(true, &[]).unwrap();
        assert_eq!(cfg.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
    }

    #[test]
    fn bad_bundles_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = client_config(false, &[missing]).unwrap_err();
        assert!(matches!(err, RootsError::ReadBundle { .. }), "{err}");
        let empty = dir.path().join("empty.pem");
        fs::write(&empty, "no certificates here\n").unwrap();
        let err = client_config(true, &[empty]).unwrap_err();
        assert!(matches!(err, RootsError::EmptyBundle { .. }), "{err}");
        assert!(matches!(
            client_config(false, &[]),
            Err(RootsError::NoRoots)
        ));
    }

    #[test]
    fn trust_bundle_is_system_roots_then_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let ca = new_ca(&dir.path().join("ca"));
        let out = dir.path().join("bundle.pem");
        fs::write(&out, "stale").unwrap();
        write_trust_bundle(&ca.cert_pem(), &out).unwrap();
        let text = fs::read_to_string(&out).unwrap();
        assert!(text.ends_with(&ca.cert_pem()));
        let certs: Vec<_> = rustls_pemfile::certs(&mut text.as_bytes())
            .map(|c| c.unwrap())
            .collect();
        assert!(certs.len() > 10, "system roots first: {}", certs.len());
        let mut roots = RootCertStore::empty();
        assert_eq!(
            roots.add_parsable_certificates(certs.clone()).1,
            0,
            "every cert parses"
        );
        // Writing again replaces the file rather than appending to it.
        write_trust_bundle(&ca.cert_pem(), &out).unwrap();
        let again = fs::read_to_string(&out).unwrap();
        assert_eq!(again.matches(&ca.cert_pem()).count(), 1);
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            2,
            "no temp file left"
        );
    }

    #[test]
    fn env_lines_export_every_variable_quoted() {
        let lines = ca_env_lines(Path::new("/tmp/it's here/bundle.pem"));
        assert_eq!(lines.len(), 8);
        assert_eq!(
            lines[0],
            r"export SSL_CERT_FILE='/tmp/it'\''s here/bundle.pem'"
        );
        for (line, name) in lines.iter().zip(BUNDLE_ENV_VARS) {
            assert!(line.starts_with(&format!("export {name}='")), "{line}");
        }
    }

    #[test]
    fn pem_encoding_round_trips() {
        for len in [0usize, 1, 2, 3, 47, 48, 49, 100] {
            let der: Vec<u8> = (0..len).map(|i| (i * 37 % 256) as u8).collect();
            let pem = pem_encode(&der);
            assert!(pem.lines().all(|l| l.len() <= 64));
            let back = rustls_pemfile::certs(&mut pem.as_bytes()).next();
            if len > 0 {
                assert_eq!(back.unwrap().unwrap().as_ref(), der.as_slice());
            }
        }
    }
}
