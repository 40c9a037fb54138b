//! `tls.generate: true`: the development CA created on first run where `tls.ca_cert`
//! and `tls.ca_key` point, when neither file exists yet (the key 0600, its folder 0700).
//! Only the commands that serve (`run`, `run -- CMD`, `env`, `connect`) create it;
//! `sidekey check` never writes anything.

use std::fs;
use std::path::Path;

use super::ca::{CERT, KEY, write_new};
use super::{CaError, CertificateAuthority};

/// Create the CA pair `cert` + `key` (`tls.ca_cert`, `tls.ca_key` of a `generate: true`
/// config) when neither file exists. Returns whether it was created now; a present
/// pair is left as it is (and is checked by the config loader like any other CA).
pub fn ensure_generated(cert: &Path, key: &Path) -> Result<bool, CaError> {
    let tls = Pair {
        ca_cert: cert.to_path_buf(),
        ca_key: key.to_path_buf(),
    };
    let exists = |p: &Path| fs::symlink_metadata(p).is_ok();
    match (exists(&tls.ca_cert), exists(&tls.ca_key)) {
        (true, true) => return Ok(false),
        (true, false) => {
            return Err(CaError::HalfPair {
                field: KEY,
                path: tls.ca_key.clone(),
            });
        }
        (false, true) => {
            return Err(CaError::HalfPair {
                field: CERT,
                path: tls.ca_cert.clone(),
            });
        }
        (false, false) => {}
    }
    let (cert_pem, key_pem) = CertificateAuthority::generate()?;
    for (path, field) in [(&tls.ca_key, KEY), (&tls.ca_cert, CERT)] {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            make_dir(dir).map_err(|source| CaError::Write {
                field,
                path: dir.into(),
                source,
            })?;
        }
    }
    // The key first: a crash in between leaves a half pair, which is refused loudly
    // rather than silently regenerated under clients that trust the old certificate.
    write_new(&tls.ca_key, key_pem.as_bytes(), 0o600, KEY, false)?;
    write_new(&tls.ca_cert, cert_pem.as_bytes(), 0o644, CERT, false)?;
    CertificateAuthority::load(&tls.ca_cert, &tls.ca_key)?;
    Ok(true)
}

struct Pair {
    ca_cert: std::path::PathBuf,
    ca_key: std::path::PathBuf,
}

fn make_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn tls(dir: &Path) -> Pair {
        Pair {
            ca_cert: dir.join("ca/ca.crt"),
            ca_key: dir.join("ca/ca.key"),
        }
    }

    fn ensure(t: &Pair) -> Result<bool, CaError> {
        ensure_generated(&t.ca_cert, &t.ca_key)
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sidekey-devca-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn creates_a_loadable_pair_once_and_keeps_it() {
        let d = tmp("once");
        let t = tls(&d);
        assert!(ensure(&t).expect("generated"));
        let first = fs::read_to_string(&t.ca_cert).expect("cert written");
        CertificateAuthority::load(&t.ca_cert, &t.ca_key).expect("loadable");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&t.ca_key).expect("key").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(!ensure(&t).expect("second run"), "kept, not regenerated");
        assert_eq!(fs::read_to_string(&t.ca_cert).expect("cert"), first);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn with_half_a_pair_nothing_is_written() {
        let d = tmp("half");
        let t = tls(&d);
        fs::create_dir_all(d.join("ca")).expect("dir");
        fs::write(&t.ca_cert, "not a cert").expect("write");
        let e = ensure(&t).expect_err("half pair refused");
        assert_eq!(e.field(), "tls.ca_key");
        assert!(!t.ca_key.exists(), "nothing written");
        let _ = fs::remove_dir_all(&d);
    }
}
