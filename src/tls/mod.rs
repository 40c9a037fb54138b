//! TLS for sidekey: the interception CA (`ca`), the leaf certificates it mints per
//! intercepted host (`leaf`), and the client side used for upstream connections
//! (`roots`: trust roots, trust bundle for agents, `sidekey ca env`).
//!
//! Every rustls config here is built with an explicit ring provider: the binary links
//! aws-lc-rs too, so rustls' process-default provider is ambiguous and
//! `ClientConfig::builder()` / `ServerConfig::builder()` would panic.

mod ca;
mod dev_ca;
mod leaf;
mod roots;

pub use ca::{CaError, CertificateAuthority};
pub use dev_ca::ensure_generated;
pub(crate) use roots::shell_quote;
pub use roots::{
    BUNDLE_ENV_VARS, RootsError, ca_env_lines, client_config, client_config_http1,
    write_trust_bundle,
};

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

/// The crypto provider every sidekey TLS config uses (ring).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// ALPN offered by default, most preferred first.
pub(crate) fn alpn_h2_http1() -> Vec<Vec<u8>> {
    vec![b"h2".to_vec(), b"http/1.1".to_vec()]
}

#[cfg(test)]
pub(crate) mod test_util {
    //! A real TLS handshake over an in-memory pipe, shared by the tests of this module.
    use std::sync::Arc;
    use std::time::Duration;

    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    /// Connects `client` to `server` as `name`, exchanges one message each way and
    /// returns the negotiated ALPN protocol, or the client-side error as text.
    pub async fn handshake(
        server: Arc<rustls::ServerConfig>,
        client: Arc<rustls::ClientConfig>,
        name: &str,
    ) -> Result<Option<Vec<u8>>, String> {
        let name = ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
        let (c, s) = tokio::io::duplex(1 << 16);
        let server = async move {
            let mut tls = TlsAcceptor::from(server).accept(s).await?;
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await?;
            tls.write_all(b"pong").await?;
            tls.flush().await
        };
        let client = async move {
            let mut tls = TlsConnector::from(client).connect(name, c).await?;
            let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
            tls.write_all(b"ping").await?;
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await?;
            assert_eq!(&buf, b"pong");
            Ok::<_, std::io::Error>(alpn)
        };
        let both = async { tokio::join!(server, client) };
        let (_, client) = tokio::time::timeout(Duration::from_secs(10), both)
            .await
            .map_err(|_| "handshake timed out".to_string())?;
        client.map_err(|e| e.to_string())
    }
}
