//! Signing keys, their public JWKs, and compact JWS signing.
//!
//! The header passed to [`SigningKey::sign_compact`] is used verbatim, so
//! tests can forge any `alg`/`kid`/`typ` combination on purpose.

use core::fmt;
use core::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use p256::pkcs8::EncodePublicKey as _;
use rand_core::{OsRng, RngCore};
use rsa::pkcs1v15;
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};
use sha2::Sha256;

/// Size of generated RSA keys.
const RSA_BITS: usize = 2048;

/// A JWS signature algorithm this IdP can sign with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum KeyAlg {
    /// ECDSA P-256 with SHA-256.
    #[serde(rename = "ES256")]
    Es256,
    /// ECDSA P-384 with SHA-384.
    #[serde(rename = "ES384")]
    Es384,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    #[serde(rename = "RS256")]
    Rs256,
    /// Ed25519 (RFC 8037).
    #[serde(rename = "EdDSA")]
    EdDsa,
}

impl KeyAlg {
    /// The JOSE `alg` name.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlg::Es256 => "ES256",
            KeyAlg::Es384 => "ES384",
            KeyAlg::Rs256 => "RS256",
            KeyAlg::EdDsa => "EdDSA",
        }
    }

    /// Every supported algorithm.
    pub const ALL: [KeyAlg; 4] = [KeyAlg::Es256, KeyAlg::Es384, KeyAlg::Rs256, KeyAlg::EdDsa];
}

impl fmt::Display for KeyAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyAlg {
    type Err = KeyError;

    fn from_str(name: &str) -> Result<Self, KeyError> {
        KeyAlg::ALL
            .into_iter()
            .find(|alg| alg.as_str() == name)
            .ok_or_else(|| KeyError::UnsupportedAlg(name.to_string()))
    }
}

/// Why a key could not be made or used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// The algorithm name is not one of [`KeyAlg`].
    UnsupportedAlg(String),
    /// No active key exists for the algorithm (see `MockIdp::rotate`).
    NoActiveKey(KeyAlg),
    /// The operating system's random source failed.
    Random(String),
    /// Key generation or encoding failed.
    Crypto(String),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::UnsupportedAlg(alg) => write!(f, "unsupported algorithm {alg:?}"),
            KeyError::NoActiveKey(alg) => write!(f, "no active {alg} key"),
            KeyError::Random(why) => write!(f, "random source failed: {why}"),
            KeyError::Crypto(why) => write!(f, "key operation failed: {why}"),
        }
    }
}

impl core::error::Error for KeyError {}

impl From<KeyError> for std::io::Error {
    fn from(error: KeyError) -> Self {
        std::io::Error::other(error)
    }
}

enum KeyMaterial {
    Es256(p256::ecdsa::SigningKey),
    Es384(p384::ecdsa::SigningKey),
    Rs256(Box<pkcs1v15::SigningKey<Sha256>>, rsa::RsaPublicKey),
    EdDsa(ed25519_compact::KeyPair),
}

/// A private signing key with its `kid`; cheap to share behind an `Arc`.
pub struct SigningKey {
    kid: String,
    alg: KeyAlg,
    material: KeyMaterial,
    public_key_der: Vec<u8>,
}

/// Name used by tests for keys outside any IdP.
pub type TestKey = SigningKey;

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).field("alg", &self.alg).finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A new key for `alg`.
    pub fn generate(alg: KeyAlg, kid: &str) -> Result<Self, KeyError> {
        match alg {
            KeyAlg::Es256 => Self::es256(kid),
            KeyAlg::Es384 => Self::es384(kid),
            KeyAlg::Rs256 => Self::rs256(kid),
            KeyAlg::EdDsa => Self::ed25519(kid),
        }
    }

    /// A new P-256 key (ES256).
    pub fn es256(kid: &str) -> Result<Self, KeyError> {
        let key = loop {
            // A random 32-byte string is a valid scalar except with
            // probability ~2^-32 (zero or above the group order): retry.
            if let Ok(key) = p256::ecdsa::SigningKey::from_slice(&random_bytes::<32>()?) {
                break key;
            }
        };
        let der = key.verifying_key().to_public_key_der().map_err(|e| KeyError::Crypto(e.to_string()))?;
        Ok(Self::assemble(kid, KeyAlg::Es256, KeyMaterial::Es256(key), der.as_bytes().to_vec()))
    }

    /// A new P-384 key (ES384).
    pub fn es384(kid: &str) -> Result<Self, KeyError> {
        let key = loop {
            if let Ok(key) = p384::ecdsa::SigningKey::from_slice(&random_bytes::<48>()?) {
                break key;
            }
        };
        let der = key.verifying_key().to_public_key_der().map_err(|e| KeyError::Crypto(e.to_string()))?;
        Ok(Self::assemble(kid, KeyAlg::Es384, KeyMaterial::Es384(key), der.as_bytes().to_vec()))
    }

    /// A new 2048-bit RSA key (RS256).
    pub fn rs256(kid: &str) -> Result<Self, KeyError> {
        let private =
            rsa::RsaPrivateKey::new(&mut OsRng, RSA_BITS).map_err(|e| KeyError::Crypto(e.to_string()))?;
        let public = private.to_public_key();
        let der = rsa::pkcs8::EncodePublicKey::to_public_key_der(&public)
            .map_err(|e| KeyError::Crypto(e.to_string()))?;
        let signer = Box::new(pkcs1v15::SigningKey::<Sha256>::new(private));
        Ok(Self::assemble(kid, KeyAlg::Rs256, KeyMaterial::Rs256(signer, public), der.as_bytes().to_vec()))
    }

    /// A new Ed25519 key (EdDSA).
    pub fn ed25519(kid: &str) -> Result<Self, KeyError> {
        let seed = ed25519_compact::Seed::new(random_bytes::<32>()?);
        let pair = ed25519_compact::KeyPair::from_seed(seed);
        // SubjectPublicKeyInfo for Ed25519 is a fixed prefix plus the key (RFC 8410).
        let mut der = vec![0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
        der.extend_from_slice(pair.pk.as_ref());
        Ok(Self::assemble(kid, KeyAlg::EdDsa, KeyMaterial::EdDsa(pair), der))
    }

    fn assemble(kid: &str, alg: KeyAlg, material: KeyMaterial, public_key_der: Vec<u8>) -> Self {
        SigningKey { kid: kid.to_string(), alg, material, public_key_der }
    }

    /// The key id published in the JWKS.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The JOSE algorithm name (`ES256`, `ES384`, `RS256`, `EdDSA`).
    pub fn alg(&self) -> &str {
        self.alg.as_str()
    }

    /// The algorithm as an enum.
    pub fn key_alg(&self) -> KeyAlg {
        self.alg
    }

    /// The public key as a JWK with `kid`, `alg` and `use: "sig"`.
    pub fn public_jwk(&self) -> Value {
        let mut jwk = match &self.material {
            KeyMaterial::Es256(key) => {
                let point = key.verifying_key().to_sec1_point(false);
                ec_jwk("P-256", point.x().map(|x| x.as_slice()), point.y().map(|y| y.as_slice()))
            }
            KeyMaterial::Es384(key) => {
                let point = key.verifying_key().to_sec1_point(false);
                ec_jwk("P-384", point.x().map(|x| x.as_slice()), point.y().map(|y| y.as_slice()))
            }
            KeyMaterial::Rs256(_, public) => json!({
                "kty": "RSA",
                "n": b64url(&public.n().to_bytes_be()),
                "e": b64url(&public.e().to_bytes_be()),
            }),
            KeyMaterial::EdDsa(pair) => json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "x": b64url(pair.pk.as_ref()),
            }),
        };
        jwk["kid"] = json!(self.kid);
        jwk["alg"] = json!(self.alg());
        jwk["use"] = json!("sig");
        jwk
    }

    /// DER SubjectPublicKeyInfo. For RSA these are the bytes an algorithm
    /// confusion attack would use as an HS256 secret.
    pub fn public_key_der(&self) -> &[u8] {
        &self.public_key_der
    }

    /// PEM (`-----BEGIN PUBLIC KEY-----`) of [`Self::public_key_der`], LF line endings.
    pub fn public_key_pem(&self) -> String {
        let encoded = STANDARD.encode(&self.public_key_der);
        let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
        for line in encoded.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        pem
    }

    /// Signs `header` and `claims` (serialized exactly as given) into a
    /// compact JWS. The signature is in JWS form whatever the header says:
    /// raw `r||s` for ECDSA, PKCS#1 v1.5 for RSA, Ed25519 for EdDSA.
    pub fn sign_compact(&self, header: &Value, claims: &Value) -> String {
        let signing_input = signing_input(header, claims);
        let signature = self.sign_bytes(signing_input.as_bytes());
        format!("{signing_input}.{}", b64url(&signature))
    }

    /// The raw JWS signature over `message`.
    pub fn sign_bytes(&self, message: &[u8]) -> Vec<u8> {
        match &self.material {
            KeyMaterial::Es256(key) => {
                let signature: p256::ecdsa::Signature = p256::ecdsa::signature::Signer::sign(key, message);
                signature.to_bytes().to_vec()
            }
            KeyMaterial::Es384(key) => {
                let signature: p384::ecdsa::Signature = p384::ecdsa::signature::Signer::sign(key, message);
                signature.to_bytes().to_vec()
            }
            KeyMaterial::Rs256(key, _) => {
                let signature = rsa::signature::Signer::sign(key.as_ref(), message);
                rsa::signature::SignatureEncoding::to_vec(&signature)
            }
            KeyMaterial::EdDsa(pair) => pair.sk.sign(message, None).to_vec(),
        }
    }

    /// Checks a raw JWS signature over `message` against this key's public half.
    pub fn verify_bytes(&self, message: &[u8], signature: &[u8]) -> bool {
        match &self.material {
            KeyMaterial::Es256(key) => p256::ecdsa::Signature::from_slice(signature).is_ok_and(|sig| {
                p256::ecdsa::signature::Verifier::verify(key.verifying_key(), message, &sig).is_ok()
            }),
            KeyMaterial::Es384(key) => p384::ecdsa::Signature::from_slice(signature).is_ok_and(|sig| {
                p384::ecdsa::signature::Verifier::verify(key.verifying_key(), message, &sig).is_ok()
            }),
            KeyMaterial::Rs256(_, public) => {
                let verifier = pkcs1v15::VerifyingKey::<Sha256>::new(public.clone());
                pkcs1v15::Signature::try_from(signature)
                    .is_ok_and(|sig| rsa::signature::Verifier::verify(&verifier, message, &sig).is_ok())
            }
            KeyMaterial::EdDsa(pair) => ed25519_compact::Signature::from_slice(signature)
                .is_ok_and(|sig| pair.pk.verify(message, &sig).is_ok()),
        }
    }
}

fn ec_jwk(crv: &str, x: Option<&[u8]>, y: Option<&[u8]>) -> Value {
    json!({
        "kty": "EC",
        "crv": crv,
        "x": b64url(x.unwrap_or_default()),
        "y": b64url(y.unwrap_or_default()),
    })
}

/// HS256-signs `header` and `claims` (used verbatim) with `secret`; for
/// algorithm-confusion tests, never used by the IdP itself.
pub fn sign_hs256(secret: &[u8], header: &Value, claims: &Value) -> String {
    let signing_input = signing_input(header, claims);
    // HMAC accepts keys of any length, so construction cannot fail.
    let tag = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(signing_input.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    };
    format!("{signing_input}.{}", b64url(&tag))
}

/// `base64url(header) "." base64url(claims)` of the exact JSON given.
pub fn signing_input(header: &Value, claims: &Value) -> String {
    format!("{}.{}", b64url(header.to_string().as_bytes()), b64url(claims.to_string().as_bytes()))
}

/// Base64url without padding, as JOSE uses everywhere.
pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url without padding; `None` when malformed.
pub fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// Bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], KeyError> {
    let mut bytes = [0u8; N];
    OsRng.try_fill_bytes(&mut bytes).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(bytes)
}

/// A random URL-safe token carrying `N` bytes of entropy (codes, jti, refresh tokens).
pub fn random_token<const N: usize>() -> Result<String, KeyError> {
    Ok(b64url(&random_bytes::<N>()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn split(token: &str) -> (String, Vec<u8>) {
        let (input, sig) = token.rsplit_once('.').unwrap();
        (input.to_string(), b64url_decode(sig).unwrap())
    }

    #[test]
    fn every_alg_signs_and_verifies_with_jws_sized_signatures() {
        for (alg, sig_len) in
            [(KeyAlg::Es256, 64), (KeyAlg::Es384, 96), (KeyAlg::Rs256, 256), (KeyAlg::EdDsa, 64)]
        {
            let key = SigningKey::generate(alg, "k").unwrap();
            let token = key.sign_compact(&json!({"alg": alg.as_str()}), &json!({"sub": "a"}));
            let (input, sig) = split(&token);
            assert_eq!(sig.len(), sig_len, "{alg}");
            assert!(key.verify_bytes(input.as_bytes(), &sig), "{alg}");
            assert!(!key.verify_bytes(b"other", &sig), "{alg}");
        }
    }

    #[test]
    fn header_is_used_verbatim() {
        let key = SigningKey::es256("k").unwrap();
        let header = json!({"alg": "none", "kid": "forged", "typ": "JWT"});
        let token = key.sign_compact(&header, &json!({}));
        let first = token.split('.').next().unwrap();
        assert_eq!(b64url_decode(first).unwrap(), header.to_string().into_bytes());
    }

    #[test]
    fn jwks_members_per_key_type() {
        let es = SigningKey::es256("e").unwrap().public_jwk();
        assert_eq!((es["kty"].as_str(), es["crv"].as_str()), (Some("EC"), Some("P-256")));
        assert_eq!(b64url_decode(es["x"].as_str().unwrap()).unwrap().len(), 32);
        assert_eq!(b64url_decode(es["y"].as_str().unwrap()).unwrap().len(), 32);
        let rs = SigningKey::rs256("r").unwrap();
        let jwk = rs.public_jwk();
        assert_eq!(jwk["e"], "AQAB");
        assert_eq!(b64url_decode(jwk["n"].as_str().unwrap()).unwrap().len(), 256);
        assert_eq!(
            (jwk["kid"].as_str(), jwk["alg"].as_str(), jwk["use"].as_str()),
            (Some("r"), Some("RS256"), Some("sig"))
        );
        assert!(rs.public_key_pem().starts_with("-----BEGIN PUBLIC KEY-----\nMIIBIjAN"));
        let ed = SigningKey::ed25519("d").unwrap().public_jwk();
        assert_eq!((ed["kty"].as_str(), ed["crv"].as_str()), (Some("OKP"), Some("Ed25519")));
    }

    #[test]
    fn hs256_matches_rfc7515_appendix_a1() {
        let secret = b64url_decode(
            "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow",
        )
        .unwrap();
        // Same header and claims bytes as the RFC example, so the tag must match.
        let tag = {
            let mut mac = Hmac::<Sha256>::new_from_slice(&secret).unwrap();
            mac.update(b"eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ");
            b64url(&mac.finalize().into_bytes())
        };
        assert_eq!(tag, "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
        let token = sign_hs256(b"secret", &json!({"alg": "HS256"}), &json!({"a": 1}));
        assert_eq!(token.split('.').count(), 3);
    }

    #[test]
    fn rsa_keygen_stays_fast_with_optimised_dependencies() {
        // The dev profile builds dependencies at opt-level 2 for this; at
        // opt-level 0 a 2048-bit key takes many seconds. Generous bound for CI.
        let started = Instant::now();
        SigningKey::rs256("timing").unwrap();
        assert!(started.elapsed().as_secs() < 5, "{:?}", started.elapsed());
    }
}
