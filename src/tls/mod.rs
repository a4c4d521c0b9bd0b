//! TLS termination: builds the rustls server configuration from PEM files
//! (certificate chain plus a PKCS#8, PKCS#1 or SEC1 key) with rustls' own PEM
//! types, offering ALPN `http/1.1` only: WebSocket upgrades are HTTP/1.1.
//! Sessions resume from stateless tickets, as nginx and HAProxy do by default.
//!
//! The connections themselves are wsguard's own [`TlsStream`]s ([`accept`]),
//! on rustls' unbuffered API, so that an idle connection holds no buffer; the
//! `stream` module explains how.

mod accept;
mod read;
mod stream;
mod write;

pub use accept::accept;
pub use stream::{TlsReadHalf, TlsStream, TlsWriteHalf};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::ring::default_provider;
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::{self, PemObject};
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

/// Why a PEM file could not be read; for a missing one, how to make one.
fn unreadable(what: &str, e: pem::Error) -> String {
    match e {
        pem::Error::Io(e) if e.kind() == std::io::ErrorKind::NotFound => {
            "no such file; for local testing, `wsguard demo` makes it, signed by a development CA \
             beside it (made too if missing), and certs/regen.sh makes a new CA and certificate \
             in certs/; see certs/README.md"
                .to_owned()
        }
        e => format!("cannot read {what}: {e}"),
    }
}

/// Loads the certificate chain and key and checks that they belong together.
pub fn server_config(cert_path: &Path, key_path: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| error(cert_path, unreadable("certificates", e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(cert_path, format!("bad PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(error(cert_path, "no CERTIFICATE block found"));
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| {
        error(
            key_path,
            unreadable("a PKCS#8, PKCS#1 or SEC1 private key", e),
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
    // Stateless tickets: a returning client skips the certificate and key exchange
    // work, and the server keeps no per-session state. The ticket key is random per
    // configuration, changes every 6 hours, and the one before is still accepted.
    config.ticketer = rustls::crypto::ring::Ticketer::new()
        .map_err(|e| error(cert_path, format!("cannot make session ticket keys: {e}")))?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_is_named_with_how_to_make_it() {
        let dir = Path::new("/nonexistent-wsguard-test");
        let err = server_config(&dir.join("nope.crt"), &dir.join("nope.key")).unwrap_err();
        assert_eq!(err.path, dir.join("nope.crt"));
        assert!(err.message.contains("no such file"), "{err}");
        assert!(err.message.contains("wsguard demo"), "{err}");
        assert!(err.message.contains("certs/regen.sh"), "{err}");
    }

    #[cfg(feature = "demo")]
    mod with_dev_certs {
        use super::*;
        use crate::dev_certs::TestDir;

        #[test]
        fn dev_certificate_loads() {
            let (_dir, certs) = TestDir::with_dev_certs();
            let config = server_config(&certs.cert, &certs.key).expect("dev certificate loads");
            assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        }

        #[test]
        fn missing_key_is_named_with_how_to_make_it() {
            let (_dir, certs) = TestDir::with_dev_certs();
            std::fs::remove_file(&certs.key).unwrap();
            let err = server_config(&certs.cert, &certs.key).unwrap_err();
            assert_eq!(err.path, certs.key);
            assert!(err.message.contains("wsguard demo"), "{err}");
        }

        #[test]
        fn mismatched_key_is_refused() {
            // The CA key does not belong to the server certificate.
            let (_dir, certs) = TestDir::with_dev_certs();
            let err = server_config(&certs.cert, &certs.ca_key).unwrap_err();
            assert!(err.to_string().contains("does not match"), "{err}");
        }
    }
}
