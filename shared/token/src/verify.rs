//! Signature verification (feature `verify`).
//!
//! Keys are imported once, when a key set is loaded; a request only hashes
//! and verifies. The token's `alg` selects the operation, and only a key of
//! that algorithm's family can be chosen (see [`Jwk::accepts`]), so a token
//! cannot make an RSA key act as an HMAC secret or an EC key as RSA.
//!
//! Backends, chosen by measuring them in Envoy's V8 (see `bench/README.md`):
//! - ES256: RustCrypto `p256` arithmetic with per-key precomputed multiples
//!   (the `baton-es256` crate), about five times faster than a plain
//!   verification;
//! - RS256/384/512 and PS256/384/512: `ring` (BoringSSL's code), about five
//!   times faster than the pure-Rust alternatives measured;
//! - ES384 and EdDSA (Ed25519): `ring`, which validates their public keys
//!   when it verifies (a P-256 point or an RSA key is checked at import).

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;

use ring::signature::{self as ring_signature, RsaParameters, RsaPublicKeyComponents};

use crate::header::Algorithm;
use crate::jwk::{Jwk, JwkSet, KeyMaterial};

use baton_es256::Es256Key;

/// How many keys are tried for a token without `kid`: bounds the work an
/// attacker can cause with one token.
pub const MAX_KEYS_WITHOUT_KID: usize = 4;

/// Why a signature was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureError {
    /// The `kid` names no key in the set.
    UnknownKey,
    /// No key in the set can verify this algorithm.
    NoKeyForAlgorithm,
    /// The signature does not verify.
    Invalid,
}

impl SignatureError {
    /// A short, stable label for metrics and audit lines.
    pub fn reason(self) -> &'static str {
        match self {
            SignatureError::UnknownKey => "unknown_kid",
            SignatureError::NoKeyForAlgorithm => "no_key_for_alg",
            SignatureError::Invalid => "bad_signature",
        }
    }
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignatureError::UnknownKey => f.write_str("token signing key is unknown"),
            SignatureError::NoKeyForAlgorithm => f.write_str("no key for the token algorithm"),
            SignatureError::Invalid => f.write_str("token signature is invalid"),
        }
    }
}

/// A key could not be imported into the crypto backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyImportError {
    /// The key's id, if any.
    pub kid: Option<String>,
}

impl fmt::Display for KeyImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kid {
            Some(kid) => write!(f, "key {kid:?} is not a valid public key"),
            None => f.write_str("a key without kid is not a valid public key"),
        }
    }
}

enum Backend {
    EcP256(Box<Es256Key>),
    /// Uncompressed SEC1 point.
    EcP384(Vec<u8>),
    Rsa(RsaPublicKeyComponents<Vec<u8>>),
    Ed25519([u8; 32]),
}

/// One imported verification key.
pub struct VerifyingKey {
    jwk: Jwk,
    backend: Backend,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.jwk.kid)
            .field("material", &self.jwk.material)
            .finish()
    }
}

/// RSA moduli accepted, in bits (RFC 7518 §3.3 asks for at least 2048).
const RSA_MODULUS_BITS: core::ops::RangeInclusive<usize> = 2048..=8192;

impl VerifyingKey {
    /// Imports a key: a P-256 point must be on the curve, an RSA key must
    /// have a 2048 to 8192-bit odd modulus and an odd exponent from 3 to
    /// 2^33 - 1.
    pub fn import(jwk: &Jwk) -> Result<Self, KeyImportError> {
        let fail = || KeyImportError { kid: jwk.kid.clone() };
        let backend = match &jwk.material {
            KeyMaterial::EcP256 { x, y } => {
                Backend::EcP256(Box::new(Es256Key::import(x, y).ok_or_else(fail)?))
            }
            KeyMaterial::EcP384 { x, y } => Backend::EcP384(sec1_point(x, y)),
            KeyMaterial::Rsa { n, e } => {
                if !rsa_key_acceptable(n, e) {
                    return Err(fail());
                }
                Backend::Rsa(RsaPublicKeyComponents { n: n.clone(), e: e.clone() })
            }
            KeyMaterial::Ed25519 { x } => Backend::Ed25519(*x),
        };
        Ok(Self { jwk: jwk.clone(), backend })
    }

    /// The key's description (kid, pinned alg, material).
    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// Verifies `signature` over `signing_input` with `alg`.
    pub fn verify(
        &self,
        alg: Algorithm,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureError> {
        if !self.jwk.accepts(alg) {
            return Err(SignatureError::NoKeyForAlgorithm);
        }
        let valid = match &self.backend {
            Backend::EcP256(key) => key.verify(signing_input, signature),
            Backend::EcP384(point) => {
                ring_signature::UnparsedPublicKey::new(&ring_signature::ECDSA_P384_SHA384_FIXED, point)
                    .verify(signing_input, signature)
                    .is_ok()
            }
            Backend::Rsa(key) => {
                rsa_parameters(alg).is_some_and(|params| key.verify(params, signing_input, signature).is_ok())
            }
            Backend::Ed25519(key) => ring_signature::UnparsedPublicKey::new(&ring_signature::ED25519, key)
                .verify(signing_input, signature)
                .is_ok(),
        };
        if valid { Ok(()) } else { Err(SignatureError::Invalid) }
    }
}

fn sec1_point(x: &[u8], y: &[u8]) -> Vec<u8> {
    let mut point = Vec::with_capacity(1 + x.len() + y.len());
    point.push(0x04);
    point.extend_from_slice(x);
    point.extend_from_slice(y);
    point
}

/// What `ring` will verify with: checked at import, so a key it would
/// refuse is refused with the key set, not at the first token.
fn rsa_key_acceptable(n: &[u8], e: &[u8]) -> bool {
    let n = &n[n.iter().take_while(|b| **b == 0).count()..];
    let e = &e[e.iter().take_while(|b| **b == 0).count()..];
    let bits = n.first().map_or(0, |top| n.len() * 8 - top.leading_zeros() as usize);
    let exponent = (e.len() <= 5).then(|| e.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)));
    RSA_MODULUS_BITS.contains(&bits)
        && n.last().is_some_and(|low| low & 1 == 1)
        && exponent.is_some_and(|e| e & 1 == 1 && (3..(1 << 33)).contains(&e))
}

fn rsa_parameters(alg: Algorithm) -> Option<&'static RsaParameters> {
    match alg {
        Algorithm::RS256 => Some(&ring_signature::RSA_PKCS1_2048_8192_SHA256),
        Algorithm::RS384 => Some(&ring_signature::RSA_PKCS1_2048_8192_SHA384),
        Algorithm::RS512 => Some(&ring_signature::RSA_PKCS1_2048_8192_SHA512),
        Algorithm::PS256 => Some(&ring_signature::RSA_PSS_2048_8192_SHA256),
        Algorithm::PS384 => Some(&ring_signature::RSA_PSS_2048_8192_SHA384),
        Algorithm::PS512 => Some(&ring_signature::RSA_PSS_2048_8192_SHA512),
        Algorithm::ES256 | Algorithm::ES384 | Algorithm::EdDSA => None,
    }
}

/// Imported keys of one key set.
#[derive(Debug, Default)]
pub struct VerifierSet {
    /// Shared with the set a refetch replaces, for keys that did not
    /// change: an ES256 key's tables take tens of milliseconds to build.
    keys: Vec<Arc<VerifyingKey>>,
}

impl VerifierSet {
    /// Imports every key of a set. A key the backend refuses fails the set
    /// (strict, for configuration); see [`VerifierSet::import_lenient`].
    pub fn import(set: &JwkSet) -> Result<Self, KeyImportError> {
        let keys =
            set.keys.iter().map(|jwk| VerifyingKey::import(jwk).map(Arc::new)).collect::<Result<_, _>>()?;
        Ok(Self { keys })
    }

    /// Imports the keys the backend accepts, skipping the others (fetched
    /// sets). A key described exactly as one of `previous` (the set this
    /// one replaces) is that key, not imported again.
    pub fn import_lenient(set: &JwkSet, previous: Option<&VerifierSet>) -> (Self, usize) {
        let mut keys = Vec::with_capacity(set.keys.len());
        let mut skipped = 0;
        for jwk in &set.keys {
            let known = previous.and_then(|previous| previous.keys.iter().find(|key| key.jwk == *jwk));
            if let Some(key) = known {
                keys.push(Arc::clone(key));
                continue;
            }
            match VerifyingKey::import(jwk) {
                Ok(key) => keys.push(Arc::new(key)),
                Err(_) => skipped += 1,
            }
        }
        (Self { keys }, skipped)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there is no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether a key with this id exists.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|key| key.jwk.kid.as_deref() == Some(kid))
    }

    /// The ids of all keys (for logs: ids are public).
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().filter_map(|key| key.jwk.kid.as_deref())
    }

    /// Verifies with the key named by `kid`, or, without `kid`, with each key
    /// of the algorithm's family (at most [`MAX_KEYS_WITHOUT_KID`]).
    pub fn verify(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureError> {
        match kid {
            Some(kid) => {
                let key = self.keys.iter().find(|key| key.jwk.kid.as_deref() == Some(kid));
                match key {
                    None => Err(SignatureError::UnknownKey),
                    Some(key) => key.verify(alg, signing_input, signature),
                }
            }
            None => {
                let mut candidates = self.keys.iter().filter(|key| key.jwk.accepts(alg)).peekable();
                if candidates.peek().is_none() {
                    return Err(SignatureError::NoKeyForAlgorithm);
                }
                let verified = candidates
                    .take(MAX_KEYS_WITHOUT_KID)
                    .any(|key| key.verify(alg, signing_input, signature).is_ok());
                if verified { Ok(()) } else { Err(SignatureError::Invalid) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base64url::encode;
    use crate::jwk::JwkSet;
    use crate::jwt::{DEFAULT_MAX_TOKEN_BYTES, UnverifiedJwt};
    use alloc::format;
    use alloc::string::ToString;
    use alloc::vec;
    use jwt_simple::prelude::*;

    fn ec_jwk(kid: &str, public: &ES256PublicKey) -> String {
        let point = public.public_key().to_bytes_uncompressed();
        format!(
            r#"{{"kty":"EC","crv":"P-256","kid":"{kid}","x":"{}","y":"{}"}}"#,
            encode(&point[1..33]),
            encode(&point[33..])
        )
    }

    fn rsa_jwk(kid: &str, n: &[u8], e: &[u8]) -> String {
        format!(r#"{{"kty":"RSA","kid":"{kid}","n":"{}","e":"{}"}}"#, encode(n), encode(e))
    }

    fn set(keys: &[String]) -> VerifierSet {
        let json = format!(r#"{{"keys":[{}]}}"#, keys.join(","));
        VerifierSet::import(&JwkSet::parse_strict(json.as_bytes()).unwrap()).unwrap()
    }

    fn check(set: &VerifierSet, token: &str) -> Result<(), SignatureError> {
        let jwt = UnverifiedJwt::parse(token, DEFAULT_MAX_TOKEN_BYTES).unwrap();
        set.verify(
            jwt.header().kid.as_deref(),
            jwt.header().alg,
            jwt.signing_input().as_bytes(),
            jwt.signature(),
        )
    }

    fn claims() -> JWTClaims<NoCustomClaims> {
        jwt_simple::claims::Claims::create(jwt_simple::prelude::Duration::from_mins(5)).with_subject("alice")
    }

    #[test]
    fn es256_with_and_without_kid() {
        let key = ES256KeyPair::generate().with_key_id("k1");
        let other = ES256KeyPair::generate().with_key_id("k2");
        let keys = set(&[ec_jwk("k1", &key.public_key()), ec_jwk("k2", &other.public_key())]);
        assert_eq!(check(&keys, &key.sign(claims()).unwrap()), Ok(()));
        assert_eq!(check(&keys, &other.sign(claims()).unwrap()), Ok(()));

        let unnamed = ES256KeyPair::from_bytes(&key.to_bytes()).unwrap();
        assert_eq!(check(&keys, &unnamed.sign(claims()).unwrap()), Ok(()));

        let stranger = ES256KeyPair::generate().with_key_id("k1");
        assert_eq!(check(&keys, &stranger.sign(claims()).unwrap()), Err(SignatureError::Invalid));
        let unknown = ES256KeyPair::generate().with_key_id("k9");
        assert_eq!(check(&keys, &unknown.sign(claims()).unwrap()), Err(SignatureError::UnknownKey));
    }

    #[test]
    fn tampered_payload_fails() {
        let key = ES256KeyPair::generate().with_key_id("k1");
        let keys = set(&[ec_jwk("k1", &key.public_key())]);
        let token = key.sign(claims()).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let forged_payload = encode(br#"{"sub":"admin","exp":99999999999}"#);
        let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert_eq!(check(&keys, &forged), Err(SignatureError::Invalid));
        let stripped = format!("{}.{}.", parts[0], parts[1]);
        assert_eq!(check(&keys, &stripped), Err(SignatureError::Invalid));
    }

    #[test]
    fn rsa_pkcs1_and_pss() {
        let rs = RS256KeyPair::generate(2048).unwrap().with_key_id("r1");
        let components = rs.public_key().to_components();
        let keys = set(&[rsa_jwk("r1", &components.n, &components.e)]);
        assert_eq!(check(&keys, &rs.sign(claims()).unwrap()), Ok(()));
        let ps = PS256KeyPair::from_der(&rs.to_der().unwrap()).unwrap().with_key_id("r1");
        assert_eq!(check(&keys, &ps.sign(claims()).unwrap()), Ok(()));
        let rs512 = RS512KeyPair::from_der(&rs.to_der().unwrap()).unwrap().with_key_id("r1");
        assert_eq!(check(&keys, &rs512.sign(claims()).unwrap()), Ok(()));
        // An RS256 signature presented as PS256 does not verify.
        let token = rs.sign(claims()).unwrap();
        let header = encode(br#"{"alg":"PS256","kid":"r1"}"#);
        let (_, rest) = token.split_once('.').unwrap();
        assert_eq!(check(&keys, &format!("{header}.{rest}")), Err(SignatureError::Invalid));
    }

    #[test]
    fn es384_and_eddsa() {
        let es384 = ES384KeyPair::generate().with_key_id("p384");
        let point = es384.public_key().public_key().to_bytes_uncompressed();
        let ec384 = format!(
            r#"{{"kty":"EC","crv":"P-384","kid":"p384","x":"{}","y":"{}"}}"#,
            encode(&point[1..49]),
            encode(&point[49..])
        );
        let ed = Ed25519KeyPair::generate().with_key_id("ed");
        let okp = format!(
            r#"{{"kty":"OKP","crv":"Ed25519","kid":"ed","x":"{}"}}"#,
            encode(&ed.public_key().to_bytes())
        );
        let keys = set(&[ec384, okp]);
        assert_eq!(check(&keys, &es384.sign(claims()).unwrap()), Ok(()));
        assert_eq!(check(&keys, &ed.sign(claims()).unwrap()), Ok(()));
    }

    #[test]
    fn a_key_never_verifies_another_family() {
        let ec = ES256KeyPair::generate().with_key_id("shared");
        let keys = set(&[ec_jwk("shared", &ec.public_key())]);
        let token = ec.sign(claims()).unwrap();
        let (_, rest) = token.split_once('.').unwrap();
        let relabelled = format!("{}.{rest}", encode(br#"{"alg":"RS256","kid":"shared"}"#));
        assert_eq!(check(&keys, &relabelled), Err(SignatureError::NoKeyForAlgorithm));
        let no_kid = format!("{}.{rest}", encode(br#"{"alg":"EdDSA"}"#));
        assert_eq!(check(&keys, &no_kid), Err(SignatureError::NoKeyForAlgorithm));
    }

    #[test]
    fn rsa_keys_ring_would_refuse_are_refused_at_import() {
        let rs = RS256KeyPair::generate(2048).unwrap();
        let c = rs.public_key().to_components();
        assert!(rsa_key_acceptable(&c.n, &c.e));
        let mut padded = vec![0u8; 3];
        padded.extend_from_slice(&c.n);
        assert!(rsa_key_acceptable(&padded, &c.e), "leading zero bytes are not bits");
        assert!(!rsa_key_acceptable(&c.n[..128], &c.e), "1024 bits is too short");
        let mut even = c.n.clone();
        *even.last_mut().unwrap() &= 0xfe;
        assert!(!rsa_key_acceptable(&even, &c.e), "an even modulus");
        for e in [&[1u8][..], &[2], &[0x01, 0, 0, 0, 0, 1], &[]] {
            assert!(!rsa_key_acceptable(&c.n, e), "exponent {e:?}");
        }
    }

    #[test]
    fn a_refetched_set_keeps_the_keys_that_did_not_change() {
        let (k1, k2, k3) = (ES256KeyPair::generate(), ES256KeyPair::generate(), ES256KeyPair::generate());
        let parse = |keys: &[String]| {
            let json = format!(r#"{{"keys":[{}]}}"#, keys.join(","));
            JwkSet::parse_lenient(json.as_bytes()).unwrap()
        };
        let before = VerifierSet::import_lenient(
            &parse(&[ec_jwk("k1", &k1.public_key()), ec_jwk("k2", &k2.public_key())]),
            None,
        )
        .0;
        // k1 unchanged, k2 re-keyed under the same kid, k3 new.
        let after = parse(&[
            ec_jwk("k1", &k1.public_key()),
            ec_jwk("k2", &k3.public_key()),
            ec_jwk("k3", &k3.public_key()),
        ]);
        let (refetched, skipped) = VerifierSet::import_lenient(&after, Some(&before));
        assert_eq!((refetched.len(), skipped), (3, 0));
        assert!(Arc::ptr_eq(&refetched.keys[0], &before.keys[0]), "k1 is the same key");
        assert!(!Arc::ptr_eq(&refetched.keys[1], &before.keys[1]), "k2's material changed");
        // Each verifies with the material it is described by now.
        let token = |key: &ES256KeyPair, kid: &str| {
            ES256KeyPair::from_bytes(&key.to_bytes()).unwrap().with_key_id(kid).sign(claims()).unwrap()
        };
        assert_eq!(check(&refetched, &token(&k1, "k1")), Ok(()));
        assert_eq!(check(&refetched, &token(&k3, "k2")), Ok(()));
        assert_eq!(check(&refetched, &token(&k2, "k2")), Err(SignatureError::Invalid));
    }

    #[test]
    fn off_curve_point_is_refused_at_import() {
        let bad = format!(
            r#"{{"keys":[{{"kty":"EC","crv":"P-256","kid":"bad","x":"{}","y":"{}"}}]}}"#,
            encode(&[1; 32]),
            encode(&[2; 32])
        );
        let parsed = JwkSet::parse_strict(bad.as_bytes()).unwrap();
        assert_eq!(
            VerifierSet::import(&parsed).unwrap_err(),
            KeyImportError { kid: Some("bad".to_string()) }
        );
        let (lenient, skipped) = VerifierSet::import_lenient(&parsed, None);
        assert!(lenient.is_empty());
        assert_eq!(skipped, 1);
    }
}
