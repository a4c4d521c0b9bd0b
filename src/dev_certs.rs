//! Development certificates, made on the user's machine: a throwaway CA that
//! can only vouch for `localhost`, 127.0.0.1 and ::1 (a critical
//! nameConstraints extension), and a localhost server certificate signed by it.
//!
//! Nothing here is used by the proxy itself: `wsguard demo` and
//! `wsguard dev-certs` (and so `certs/regen.sh`) call it. Private keys are
//! written with mode 0600 from the first byte, through a temporary file that
//! is renamed into place, so a reader never sees a half-written or
//! world-readable key.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    NameConstraints, SanType,
};
use rustls::client::danger::ServerCertVerifier as _;
use rustls::client::WebPkiServerVerifier;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::tls::TlsError;

/// File names inside a certificate directory (`certs/` in the repository).
pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const SERVER_CERT: &str = "localhost.crt";
pub const SERVER_KEY: &str = "localhost.key";

/// How to trust the CA, for log lines and the `dev-certs` output.
pub const TRUST_HINT: &str = "import it as an authority in the browser, or give it to clients \
     (curl --cacert, SSL_CERT_FILE); see certs/README.md";

const CA_DAYS: i64 = 3650;
// Apple's clients refuse server certificates valid for longer, even from a
// CA the user added.
const SERVER_DAYS: i64 = 825;
const KEY_MODE: u32 = 0o600;
const CERT_MODE: u32 = 0o644;

/// A file that could not be read, written or used, and what to do about it.
fn error(path: &Path, message: impl Into<String>) -> TlsError {
    TlsError {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// Where the CA and the server certificate live.
pub struct DevCerts {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl DevCerts {
    /// All four files in `dir`, under their usual names.
    pub fn in_dir(dir: &Path) -> Self {
        Self::for_server(&dir.join(SERVER_CERT), &dir.join(SERVER_KEY))
    }

    /// The server certificate at `cert` and `key` (a configuration's
    /// `tls_cert` and `tls_key`), with the CA in the directory of `cert`.
    pub fn for_server(cert: &Path, key: &Path) -> Self {
        let dir = cert.parent().unwrap_or(Path::new("."));
        Self {
            ca_cert: dir.join(CA_CERT),
            ca_key: dir.join(CA_KEY),
            cert: cert.to_owned(),
            key: key.to_owned(),
        }
    }

    /// Makes what is missing and returns the files it wrote: nothing if the
    /// server certificate and key exist; otherwise a new server pair, signed
    /// by the existing CA or by a new one if there is none. Half a pair (a
    /// certificate without its key or the reverse) is an error: replacing
    /// the other half would throw away something the user may rely on.
    pub fn ensure(&self) -> Result<Vec<PathBuf>, TlsError> {
        if pair_exists(&self.cert, &self.key)? {
            return Ok(Vec::new());
        }
        let mut written = Vec::new();
        let ca = if pair_exists(&self.ca_cert, &self.ca_key)? {
            Ca::load(&self.ca_cert, &self.ca_key)?
        } else {
            self.write_new_ca(&mut written)?
        };
        self.write_server(&ca, &mut written)?;
        Ok(written)
    }

    /// Replaces all four files with new ones. The new CA has to be trusted
    /// again wherever the old one was.
    pub fn regenerate(&self) -> Result<Vec<PathBuf>, TlsError> {
        let mut written = Vec::new();
        let ca = self.write_new_ca(&mut written)?;
        self.write_server(&ca, &mut written)?;
        Ok(written)
    }

    fn write_new_ca(&self, written: &mut Vec<PathBuf>) -> Result<Ca, TlsError> {
        let ca = Ca::new().map_err(|e| error(&self.ca_cert, format!("cannot make a CA: {e}")))?;
        write_file(&self.ca_key, &ca.issuer.key().serialize_pem(), KEY_MODE)?;
        written.push(self.ca_key.clone());
        write_file(&self.ca_cert, &ca.cert_pem, CERT_MODE)?;
        written.push(self.ca_cert.clone());
        Ok(ca)
    }

    fn write_server(&self, ca: &Ca, written: &mut Vec<PathBuf>) -> Result<(), TlsError> {
        let fail = |e: String| error(&self.cert, e);
        let key = KeyPair::generate().map_err(|e| fail(format!("cannot make a key: {e}")))?;
        let cert = server_params(localhost_names())
            .signed_by(&key, &ca.issuer)
            .map_err(|e| fail(format!("cannot sign: {e}")))?;
        // Catches a ca.key that does not belong to ca.crt before the browser does.
        verify(&ca.cert_der, cert.der(), "localhost").map_err(|e| {
            error(
                &self.ca_key,
                format!(
                    "the new certificate does not verify against {}: {e}; does this key belong \
                     to it? Run certs/regen.sh to start over with a new CA",
                    self.ca_cert.display()
                ),
            )
        })?;
        write_file(&self.key, &key.serialize_pem(), KEY_MODE)?;
        written.push(self.key.clone());
        write_file(&self.cert, &cert.pem(), CERT_MODE)?;
        written.push(self.cert.clone());
        Ok(())
    }
}

/// True if both files exist, false if neither does; an error for half a pair.
fn pair_exists(cert: &Path, key: &Path) -> Result<bool, TlsError> {
    let exists = |p: &Path| {
        p.try_exists()
            .map_err(|e| error(p, format!("cannot look for it: {e}")))
    };
    match (exists(cert)?, exists(key)?) {
        (true, true) => Ok(true),
        (false, false) => Ok(false),
        (has_cert, _) => {
            let (present, missing) = if has_cert { (cert, key) } else { (key, cert) };
            Err(error(
                missing,
                format!(
                    "missing, but {} exists; remove it to have both made anew, or run \
                     certs/regen.sh to replace every development certificate",
                    present.display()
                ),
            ))
        }
    }
}

/// The CA: its certificate and what signs with its key.
struct Ca {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new() -> Result<Self, rcgen::Error> {
        let key = KeyPair::generate()?;
        let params = ca_params();
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        })
    }

    fn load(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|e| error(p, format!("cannot read: {e}")))
        };
        let cert_pem = read(cert_path)?;
        let key = KeyPair::from_pem(&read(key_path)?)
            .map_err(|e| error(key_path, format!("not a usable PEM private key: {e}")))?;
        let bad_cert = |e: String| error(cert_path, format!("not a PEM CA certificate: {e}"));
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| bad_cert(e.to_string()))?;
        let issuer =
            Issuer::from_ca_cert_der(&cert_der, key).map_err(|e| bad_cert(e.to_string()))?;
        Ok(Self {
            cert_pem,
            cert_der,
            issuer,
        })
    }
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    // An hour back, for clocks a little behind this one.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(days);
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        "wsguard development CA (localhost only)",
    );
    dn.push(DnType::OrganizationName, "wsguard");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    // rcgen marks nameConstraints critical: a client that cannot enforce
    // them must refuse the CA rather than ignore them.
    params.name_constraints = Some(NameConstraints {
        permitted_subtrees: vec![
            GeneralSubtree::DnsName("localhost".into()),
            GeneralSubtree::IpAddress(CidrSubnet::from_addr_prefix(Ipv4Addr::LOCALHOST.into(), 32)),
            GeneralSubtree::IpAddress(CidrSubnet::from_addr_prefix(
                Ipv6Addr::LOCALHOST.into(),
                128,
            )),
        ],
        excluded_subtrees: Vec::new(),
    });
    validity(&mut params, CA_DAYS);
    params
}

fn localhost_names() -> Vec<SanType> {
    vec![
        SanType::DnsName("localhost".try_into().expect("a valid DNS name")),
        SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)),
    ]
}

fn server_params(names: Vec<SanType>) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "localhost");
    dn.push(DnType::OrganizationName, "wsguard (development only)");
    params.distinguished_name = dn;
    params.subject_alt_names = names;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, SERVER_DAYS);
    params
}

/// Verifies `cert` for `name` against `ca` alone, as a rustls client would.
fn verify(ca: &CertificateDer<'_>, cert: &CertificateDer<'_>, name: &str) -> Result<(), String> {
    let mut roots = RootCertStore::empty();
    roots
        .add(ca.clone().into_owned())
        .map_err(|e| e.to_string())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from(name).map_err(|e| e.to_string())?;
    verifier
        .verify_server_cert(cert, &[], &name, &[], UnixTime::now())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Writes `contents` to `path` with `mode`: into a new temporary file beside
/// it (created with that mode, so never more readable), then renamed over it.
fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), TlsError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .map_err(|e| error(dir, format!("cannot create the directory: {e}")))?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        // A leftover from a run that died with the same process id.
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        error(path, format!("cannot write: {e}"))
    })
}

/// A fresh directory for a test, removed when dropped.
#[cfg(test)]
pub(crate) struct TestDir(pub PathBuf);

#[cfg(test)]
impl TestDir {
    pub(crate) fn new() -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("wsguard-dev-certs-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// A directory with all four files made by [`DevCerts::ensure`].
    pub(crate) fn with_dev_certs() -> (Self, DevCerts) {
        let dir = Self::new();
        let certs = DevCerts::in_dir(&dir.0);
        certs.ensure().unwrap();
        (dir, certs)
    }
}

#[cfg(test)]
impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;
    use x509_parser::extensions::GeneralName;
    use x509_parser::prelude::{FromDer as _, X509Certificate};

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn der(path: &Path) -> CertificateDer<'static> {
        CertificateDer::from_pem_file(path).unwrap()
    }

    #[test]
    fn ca_is_name_constrained_and_the_constraint_is_critical() {
        let ca = Ca::new().unwrap();
        let (_, cert) = X509Certificate::from_der(&ca.cert_der).unwrap();

        let nc = cert.name_constraints().unwrap().expect("nameConstraints");
        assert!(nc.critical, "nameConstraints must be critical");
        let nc = nc.value;
        assert!(nc.excluded_subtrees.is_none());
        let permitted: Vec<_> = nc
            .permitted_subtrees
            .as_ref()
            .expect("permitted subtrees")
            .iter()
            .map(|s| match &s.base {
                GeneralName::DNSName(n) => format!("dns:{n}"),
                GeneralName::IPAddress(b) => format!("ip:{b:02x?}"),
                other => format!("other:{other}"),
            })
            .collect();
        assert_eq!(
            permitted,
            [
                "dns:localhost".to_owned(),
                format!("ip:{:02x?}", [127, 0, 0, 1, 255, 255, 255, 255]),
                format!("ip:{:02x?}", {
                    let mut b = [0u8; 32];
                    b[15] = 1;
                    b[16..].fill(255);
                    b
                }),
            ]
        );

        let bc = cert.basic_constraints().unwrap().expect("basicConstraints");
        assert!(bc.value.ca);
        assert_eq!(bc.value.path_len_constraint, Some(0));
        let ku = cert.key_usage().unwrap().expect("keyUsage").value;
        assert!(ku.key_cert_sign());
    }

    #[test]
    fn localhost_is_accepted_and_every_other_name_refused() {
        let ca = Ca::new().unwrap();
        let key = KeyPair::generate().unwrap();
        let localhost = server_params(localhost_names())
            .signed_by(&key, &ca.issuer)
            .unwrap();
        for name in ["localhost", "127.0.0.1", "::1"] {
            verify(&ca.cert_der, localhost.der(), name).unwrap_or_else(|e| panic!("{name}: {e}"));
        }

        // Signed with the CA's own key, as someone holding a leaked ca.key
        // would: the name constraint still refuses them.
        let others = [
            (
                "evil.example",
                SanType::DnsName("evil.example".try_into().unwrap()),
            ),
            ("10.0.0.1", SanType::IpAddress("10.0.0.1".parse().unwrap())),
            ("::2", SanType::IpAddress("::2".parse().unwrap())),
        ];
        for (name, san) in others {
            let cert = server_params(vec![san])
                .signed_by(&key, &ca.issuer)
                .unwrap();
            let err = verify(&ca.cert_der, cert.der(), name).unwrap_err();
            assert!(err.contains("NameConstraintViolation"), "{name}: {err}");
        }
    }

    #[test]
    fn ensure_makes_a_ca_and_a_server_pair_with_private_keys() {
        let dir = TestDir::new();
        let certs = DevCerts::in_dir(&dir.0);
        let written = certs.ensure().unwrap();
        assert_eq!(
            written,
            [&*certs.ca_key, &certs.ca_cert, &certs.key, &certs.cert]
        );
        assert_eq!(mode(&certs.ca_key), 0o600);
        assert_eq!(mode(&certs.key), 0o600);
        verify(&der(&certs.ca_cert), &der(&certs.cert), "localhost").unwrap();
        let leftovers: Vec<_> = std::fs::read_dir(&dir.0)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");

        // Everything there: nothing is touched.
        let before = std::fs::read(&certs.cert).unwrap();
        assert!(certs.ensure().unwrap().is_empty());
        assert_eq!(std::fs::read(&certs.cert).unwrap(), before);
    }

    #[test]
    fn ensure_signs_a_missing_server_pair_with_the_existing_ca() {
        let (_dir, certs) = TestDir::with_dev_certs();
        let ca = std::fs::read(&certs.ca_cert).unwrap();
        std::fs::remove_file(&certs.cert).unwrap();
        std::fs::remove_file(&certs.key).unwrap();

        assert_eq!(certs.ensure().unwrap(), [&*certs.key, &certs.cert]);
        assert_eq!(std::fs::read(&certs.ca_cert).unwrap(), ca);
        verify(&der(&certs.ca_cert), &der(&certs.cert), "localhost").unwrap();
    }

    #[test]
    fn half_a_pair_is_refused_and_left_alone() {
        let dir = TestDir::new();
        let certs = DevCerts::in_dir(&dir.0);
        std::fs::write(&certs.key, "mine").unwrap();
        let err = certs.ensure().unwrap_err();
        assert_eq!(err.path, certs.cert);
        assert!(err.message.contains("localhost.key exists"), "{err}");
        assert_eq!(std::fs::read_to_string(&certs.key).unwrap(), "mine");
        assert!(!certs.ca_key.exists());
    }

    #[test]
    fn a_ca_key_that_does_not_match_is_named() {
        let (_dir, certs) = TestDir::with_dev_certs();
        for p in [&certs.cert, &certs.key] {
            std::fs::remove_file(p).unwrap();
        }
        let other = KeyPair::generate().unwrap().serialize_pem();
        std::fs::write(&certs.ca_key, other).unwrap();
        let err = certs.ensure().unwrap_err();
        assert_eq!(err.path, certs.ca_key);
        assert!(err.message.contains("does not verify"), "{err}");
        assert!(!certs.cert.exists());
    }

    #[test]
    fn regenerate_replaces_a_readable_key_with_a_private_one() {
        let (_dir, certs) = TestDir::with_dev_certs();
        let old_ca = std::fs::read(&certs.ca_cert).unwrap();
        // As an older tool or a careless copy might have left it.
        std::fs::set_permissions(&certs.key, std::fs::Permissions::from_mode(0o644)).unwrap();

        assert_eq!(certs.regenerate().unwrap().len(), 4);
        assert_ne!(std::fs::read(&certs.ca_cert).unwrap(), old_ca);
        assert_eq!(mode(&certs.key), 0o600);
        assert_eq!(mode(&certs.ca_key), 0o600);
        verify(&der(&certs.ca_cert), &der(&certs.cert), "localhost").unwrap();
    }

    #[test]
    fn the_ca_sits_beside_the_server_certificate() {
        let certs = DevCerts::for_server(Path::new("/x/a.pem"), Path::new("/y/b.pem"));
        assert_eq!(certs.ca_cert, Path::new("/x/ca.crt"));
        assert_eq!(certs.ca_key, Path::new("/x/ca.key"));
        assert_eq!(certs.key, Path::new("/y/b.pem"));
    }
}
