//! TLS termination: builds the rustls server configuration from PEM files
//! (certificate chain plus a PKCS#8, PKCS#1 or SEC1 key) with rustls' own PEM
//! types, offering ALPN `http/1.1` only: WebSocket upgrades are HTTP/1.1.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::ring::default_provider;
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A start-up error that names the file and says what is wrong with it.
#[derive(Debug)]
pub struct TlsError {
    pub path: PathBuf,
    pub message: String,
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for TlsError {}

fn error(path: &Path, message: impl Into<String>) -> TlsError {
    TlsError {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// Loads the certificate chain and key and checks that they belong together.
pub fn server_config(cert_path: &Path, key_path: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| error(cert_path, format!("cannot read certificates: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(cert_path, format!("bad PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(error(cert_path, "no CERTIFICATE block found"));
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| {
        error(
            key_path,
            format!("cannot read a PKCS#8, PKCS#1 or SEC1 private key: {e}"),
        )
    })?;

    let provider = Arc::new(default_provider());
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| error(key_path, format!("unsupported private key: {e}")))?;
    let certified = CertifiedKey::new(certs, signing_key);
    certified.keys_match().map_err(|e| {
        error(
            key_path,
            format!(
                "key does not match the certificate {}: {e}",
                cert_path.display()
            ),
        )
    })?;

    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| error(cert_path, e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certs_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("certs")
    }

    #[test]
    fn dev_certificate_loads() {
        let dir = certs_dir();
        let config = server_config(&dir.join("localhost.crt"), &dir.join("localhost.key"))
            .expect("dev certificate loads");
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[test]
    fn missing_file_is_named() {
        let dir = certs_dir();
        let err = server_config(&dir.join("nope.crt"), &dir.join("localhost.key")).unwrap_err();
        assert!(err.to_string().contains("nope.crt"), "{err}");
    }

    #[test]
    fn mismatched_key_is_refused() {
        // The CA key does not belong to the server certificate.
        let dir = certs_dir();
        let err = server_config(&dir.join("localhost.crt"), &dir.join("ca.key")).unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
    }
}
