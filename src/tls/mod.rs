//! PLACEHOLDER until the tls module lands (compiles the crate meanwhile).
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
#[error("{msg}")]
pub struct CaError { msg: String, field: &'static str }
impl CaError { pub fn field(&self) -> &'static str { self.field } }
pub struct CertificateAuthority;
impl CertificateAuthority {
    pub fn load(_c: &Path, _k: &Path) -> Result<Self, CaError> { Err(CaError { msg: "not built".into(), field: "tls.ca_cert" }) }
    pub fn init_dir(_d: &Path, _f: bool) -> Result<(PathBuf, PathBuf), CaError> { Err(CaError { msg: "not built".into(), field: "tls.ca_cert" }) }
    pub fn server_config(&self, _h: &str) -> Result<Arc<rustls::ServerConfig>, CaError> { Err(CaError { msg: "not built".into(), field: "tls.ca_cert" }) }
}
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RootsError(String);
fn build(system: bool, bundles: &[PathBuf], alpn: Vec<Vec<u8>>) -> Result<Arc<rustls::ClientConfig>, RootsError> {
    let mut roots = rustls::RootCertStore::empty();
    if system { for c in rustls_native_certs::load_native_certs().certs { let _ = roots.add(c); } }
    for b in bundles { let data = std::fs::read(b).map_err(|e| RootsError(e.to_string()))?; for c in rustls_pemfile::certs(&mut &data[..]).flatten() { let _ = roots.add(c); } }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider())).with_safe_default_protocol_versions().map_err(|e| RootsError(e.to_string()))?.with_root_certificates(roots).with_no_client_auth();
    cfg.alpn_protocols = alpn;
    Ok(Arc::new(cfg))
}
pub fn client_config(system: bool, bundles: &[PathBuf]) -> Result<Arc<rustls::ClientConfig>, RootsError> { build(system, bundles, vec![b"h2".to_vec(), b"http/1.1".to_vec()]) }
pub fn client_config_http1(system: bool, bundles: &[PathBuf]) -> Result<Arc<rustls::ClientConfig>, RootsError> { build(system, bundles, vec![b"http/1.1".to_vec()]) }
pub fn write_trust_bundle(_ca: &str, _out: &Path) -> Result<(), RootsError> { Err(RootsError("not built".into())) }
pub fn ca_env_lines(_p: &Path) -> Vec<String> { vec![] }
