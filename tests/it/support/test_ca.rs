//! Certificates for HTTPS tests: a throwaway test CA (rcgen) that signs upstream
//! leaves, and sidekey's own interception CA made by `sidekey ca init`.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

// ---------------------------------------------------------------------------------------
// A test CA (rcgen)
// ---------------------------------------------------------------------------------------

/// A throwaway CA that signs leaf certificates.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub pem: String,
}

fn validity(p: &mut CertificateParams) {
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::days(1);
    p.not_after = now + time::Duration::days(30);
}

impl TestCa {
    /// A fresh self-signed CA (CA:TRUE, keyCertSign) with a unique subject.
    pub fn new(label: &str) -> TestCa {
        let key = KeyPair::generate().expect("generate CA key");
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            format!("{label} {:016x}", fastrand::u64(..)),
        );
        dn.push(DnType::OrganizationName, "sidekey tests");
        p.distinguished_name = dn;
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut p);
        let cert = p.self_signed(&key).expect("self-sign CA");
        TestCa {
            pem: cert.pem(),
            issuer: Issuer::new(p, key),
        }
    }

    /// A leaf (not a CA) for `names` (DNS names or IP literals), serverAuth.
    pub fn issue(&self, names: &[&str]) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let sans: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut p = CertificateParams::new(sans).expect("leaf SANs");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, names.first().copied().unwrap_or("leaf"));
        p.distinguished_name = dn;
        p.is_ca = IsCa::NoCa;
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.use_authority_key_identifier_extension = true;
        validity(&mut p);
        let key = KeyPair::generate().expect("generate leaf key");
        let cert = p.signed_by(&key, &self.issuer).expect("sign leaf");
        (
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
    }
}

/// The PEM of a CA that has signed nothing any test server presents.
pub fn unrelated_ca_pem() -> String {
    TestCa::new("unrelated test CA").pem
}

// ---------------------------------------------------------------------------------------
// sidekey's interception CA
// ---------------------------------------------------------------------------------------

/// `ca.crt` + `ca.key` written by `sidekey ca init --out DIR`.
#[derive(Debug, Clone)]
pub struct SidekeyCa {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl SidekeyCa {
    /// Runs `sidekey ca init --out <dir>/ca` and checks both files exist.
    pub fn init(dir: &Path) -> SidekeyCa {
        let out = dir.join("ca");
        let (code, stdout, stderr) =
            super::Sidekey::run_args(&["ca", "init", "--out", out.to_str().unwrap()], &[]);
        assert_eq!(
            code, 0,
            "sidekey ca init failed\nstdout: {stdout}\nstderr: {stderr}"
        );
        let ca = SidekeyCa {
            cert: out.join("ca.crt"),
            key: out.join("ca.key"),
        };
        assert!(ca.cert.is_file(), "ca init wrote no {}", ca.cert.display());
        assert!(ca.key.is_file(), "ca init wrote no {}", ca.key.display());
        ca
    }

    /// A `tls:` block with this CA and `upstream_roots` set to the given PEM paths.
    pub fn tls_yaml(&self, roots: &[&Path]) -> String {
        let roots: Vec<String> = roots
            .iter()
            .map(|p| format!("{:?}", p.to_str().unwrap()))
            .collect();
        format!(
            "tls:\n  ca_cert: {:?}\n  ca_key: {:?}\n  upstream_roots: [{}]\n",
            self.cert.to_str().unwrap(),
            self.key.to_str().unwrap(),
            roots.join(", ")
        )
    }

    /// Runs `sidekey ca env --ca ca.crt --bundle-out <dir>/bundle.pem`; returns the
    /// exported (NAME, VALUE) pairs.
    pub fn env(&self, bundle_out: &Path) -> Vec<(String, String)> {
        let (code, stdout, stderr) = super::Sidekey::run_args(
            &[
                "ca",
                "env",
                "--ca",
                self.cert.to_str().unwrap(),
                "--bundle-out",
                bundle_out.to_str().unwrap(),
            ],
            &[],
        );
        assert_eq!(
            code, 0,
            "sidekey ca env failed\nstdout: {stdout}\nstderr: {stderr}"
        );
        stdout
            .lines()
            .filter_map(|l| {
                let rest = l.trim().strip_prefix("export ")?;
                let (k, v) = rest.split_once('=')?;
                let v = v
                    .strip_prefix('\'')
                    .and_then(|v| v.strip_suffix('\''))
                    .unwrap_or(v)
                    .replace(r"'\''", "'");
                Some((k.to_string(), v))
            })
            .collect()
    }
}
