//! JWT signature verification on ring, the crypto library rustls already links: as
//! jsonwebtoken's process-wide crypto provider, its verifier factory. RustCrypto's ES256
//! took 284 µs per token and RS256 92 µs (the auth duration histogram of the release
//! build); ring verifies each in a fraction of that. Signing and key utilities stay
//! RustCrypto's: wsguard never signs, and the tests that do are not on a hot path.

use jsonwebtoken::crypto::{rust_crypto, CryptoProvider, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{ErrorKind, Result};
use jsonwebtoken::signature::{self, Verifier};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind};
use ring::signature::{self as ring_sig, RsaPublicKeyComponents, UnparsedPublicKey};

/// The provider: ring verifies, RustCrypto does the rest.
static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: rust_crypto::DEFAULT_PROVIDER.signer_factory,
    verifier_factory: new_verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: RUST_CRYPTO.rsa_pub_components_from_private_key,
        rsa_pub_components_from_public_key: RUST_CRYPTO.rsa_pub_components_from_public_key,
        ec_pub_components_from_private_key: RUST_CRYPTO.ec_pub_components_from_private_key,
        ed_pub_components_from_private_key: RUST_CRYPTO.ed_pub_components_from_private_key,
        compute_digest: RUST_CRYPTO.compute_digest,
    },
};

const RUST_CRYPTO: &KeyUtils = &rust_crypto::DEFAULT_PROVIDER.key_utils;

/// Makes ring the verifier of every token this process decodes. Idempotent; call before
/// the first token is decoded or encoded (a provider, once chosen, stays: in a test process
/// that signed a token first, RustCrypto goes on verifying).
pub fn install() {
    if PROVIDER.install_default().is_err() {
        tracing::debug!("JWT crypto provider chosen earlier; ring does not verify here");
    }
}

/// One key ready to verify one algorithm.
struct RingVerifier {
    alg: Algorithm,
    key: Key,
}

enum Key {
    Hmac(ring::hmac::Key),
    /// A SubjectPublicKeyInfo's key bytes as ring reads them: an RSA PKCS#1 public key, an
    /// uncompressed EC point, or an Ed25519 key.
    Public(&'static dyn ring_sig::VerificationAlgorithm, Vec<u8>),
    /// An RSA key given as its modulus and exponent (from a JWK).
    Rsa(&'static ring_sig::RsaParameters, Vec<u8>, Vec<u8>),
}

fn new_verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    if key.family() != alg.family() {
        return Err(ErrorKind::InvalidKeyFormat.into());
    }
    let hmac =
        |a| -> Result<Key> { Ok(Key::Hmac(ring::hmac::Key::new(a, key.try_get_as_bytes()?))) };
    let public = |a: &'static dyn ring_sig::VerificationAlgorithm| -> Result<Key> {
        Ok(Key::Public(a, key.try_get_as_bytes()?.to_vec()))
    };
    let rsa = |params: &'static ring_sig::RsaParameters| -> Result<Key> {
        match key.kind() {
            DecodingKeyKind::SecretOrDer(der) => Ok(Key::Public(params, der.clone())),
            DecodingKeyKind::RsaModulusExponent { n, e } => {
                Ok(Key::Rsa(params, n.clone(), e.clone()))
            }
        }
    };
    let key = match alg {
        Algorithm::HS256 => hmac(ring::hmac::HMAC_SHA256)?,
        Algorithm::HS384 => hmac(ring::hmac::HMAC_SHA384)?,
        Algorithm::HS512 => hmac(ring::hmac::HMAC_SHA512)?,
        Algorithm::RS256 => rsa(&ring_sig::RSA_PKCS1_2048_8192_SHA256)?,
        Algorithm::RS384 => rsa(&ring_sig::RSA_PKCS1_2048_8192_SHA384)?,
        Algorithm::RS512 => rsa(&ring_sig::RSA_PKCS1_2048_8192_SHA512)?,
        Algorithm::PS256 => rsa(&ring_sig::RSA_PSS_2048_8192_SHA256)?,
        Algorithm::PS384 => rsa(&ring_sig::RSA_PSS_2048_8192_SHA384)?,
        Algorithm::PS512 => rsa(&ring_sig::RSA_PSS_2048_8192_SHA512)?,
        Algorithm::ES256 => public(&ring_sig::ECDSA_P256_SHA256_FIXED)?,
        Algorithm::ES384 => public(&ring_sig::ECDSA_P384_SHA384_FIXED)?,
        Algorithm::EdDSA => public(&ring_sig::ED25519)?,
        _ => return Err(ErrorKind::UnsupportedAlgorithm.into()),
    };
    Ok(Box::new(RingVerifier { alg: *alg, key }))
}

impl Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        let checked = match &self.key {
            Key::Hmac(k) => ring::hmac::verify(k, msg, sig),
            Key::Public(a, bytes) => UnparsedPublicKey::new(*a, bytes).verify(msg, sig),
            Key::Rsa(params, n, e) => RsaPublicKeyComponents { n, e }.verify(params, msg, sig),
        };
        checked.map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::EncodingKey;

    fn fixture(name: &str) -> Vec<u8> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/jwt");
        std::fs::read(dir.join(name)).unwrap()
    }

    /// Signs with RustCrypto, verifies with ring: every algorithm family, each key form
    /// (PEM, JWK components), and a flipped bit refused.
    #[test]
    fn ring_verifies_what_rust_crypto_signs() {
        let secret = [7u8; 64];
        let cases: Vec<(Algorithm, EncodingKey, DecodingKey)> = vec![
            (
                Algorithm::HS256,
                EncodingKey::from_secret(&secret).unwrap(),
                DecodingKey::from_secret(&secret).unwrap(),
            ),
            (
                Algorithm::HS512,
                EncodingKey::from_secret(&secret).unwrap(),
                DecodingKey::from_secret(&secret).unwrap(),
            ),
            (
                Algorithm::RS256,
                EncodingKey::from_rsa_pem(&fixture("rs256.pem")).unwrap(),
                DecodingKey::from_rsa_pem(&fixture("rs256.pub.pem")).unwrap(),
            ),
            (
                Algorithm::PS256,
                EncodingKey::from_rsa_pem(&fixture("rs256.pem")).unwrap(),
                DecodingKey::from_rsa_pem(&fixture("rs256.pub.pem")).unwrap(),
            ),
            (
                Algorithm::ES256,
                EncodingKey::from_ec_pem(&fixture("es256.pem")).unwrap(),
                DecodingKey::from_ec_pem(&fixture("es256.pub.pem")).unwrap(),
            ),
            (
                Algorithm::ES384,
                EncodingKey::from_ec_pem(&fixture("es384.pem")).unwrap(),
                DecodingKey::from_ec_pem(&fixture("es384.pub.pem")).unwrap(),
            ),
            (
                Algorithm::EdDSA,
                EncodingKey::from_ed_pem(&fixture("ed25519.pem")).unwrap(),
                DecodingKey::from_ed_pem(&fixture("ed25519.pub.pem")).unwrap(),
            ),
        ];
        for (alg, signing, verifying) in cases {
            let signer = (rust_crypto::DEFAULT_PROVIDER.signer_factory)(&alg, &signing).unwrap();
            let msg = b"header.payload";
            let mut sig = signer.try_sign(msg).unwrap();
            let verifier = new_verifier(&alg, &verifying).unwrap();
            assert!(verifier.verify(msg, &sig).is_ok(), "{alg:?}");
            assert!(verifier.verify(b"header.payloaD", &sig).is_err(), "{alg:?}");
            sig[0] ^= 1;
            assert!(verifier.verify(msg, &sig).is_err(), "{alg:?}");
        }
    }

    #[test]
    fn rsa_from_jwk_components_verifies_and_families_do_not_mix() {
        let pem = fixture("rs256.pub.pem");
        let key = DecodingKey::from_rsa_pem(&pem).unwrap();
        let (n, e) =
            (rust_crypto::DEFAULT_PROVIDER
                .key_utils
                .rsa_pub_components_from_public_key)(key.try_get_as_bytes().unwrap())
            .unwrap();
        let components = DecodingKey::from_rsa_raw_components(&n, &e);
        let signing = EncodingKey::from_rsa_pem(&fixture("rs256.pem")).unwrap();
        let signer =
            (rust_crypto::DEFAULT_PROVIDER.signer_factory)(&Algorithm::RS256, &signing).unwrap();
        let sig = signer.try_sign(b"m").unwrap();
        let verifier = new_verifier(&Algorithm::RS256, &components).unwrap();
        assert!(verifier.verify(b"m", &sig).is_ok());
        // A public key never becomes an HMAC key.
        assert!(new_verifier(&Algorithm::HS256, &key).is_err());
        let secret = DecodingKey::from_secret(&[1; 32]).unwrap();
        assert!(new_verifier(&Algorithm::RS256, &secret).is_err());
    }
}
