//! JWS signing for tokens a gateway itself issues (identity assertions):
//! ES256 and EdDSA (Ed25519), with `ring`, from a PKCS#8 PEM or a private
//! JWK, and the public JWK to publish for each key.
//!
//! Private key material never leaves this module except as signatures; the
//! `Debug` of a [`SigningKey`] shows only its id and algorithm.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use serde_json::{Value, json};

use crate::base64url;

/// An algorithm a gateway signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlgorithm {
    /// ECDSA P-256 SHA-256.
    Es256,
    /// Ed25519.
    EdDsa,
}

impl SigningAlgorithm {
    /// The JOSE name.
    pub fn name(self) -> &'static str {
        match self {
            SigningAlgorithm::Es256 => "ES256",
            SigningAlgorithm::EdDsa => "EdDSA",
        }
    }

    /// From the JOSE name.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "ES256" => Some(SigningAlgorithm::Es256),
            "EdDSA" => Some(SigningAlgorithm::EdDsa),
            _ => None,
        }
    }
}

/// Why a key could not be loaded, or a signature made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignError(pub String);

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

enum Pair {
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
}

/// A private key with its id.
pub struct SigningKey {
    kid: String,
    pair: Pair,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({}, {})", self.kid, self.algorithm().name())
    }
}

/// The DER inside a PEM block (`-----BEGIN PRIVATE KEY-----`, PKCS#8).
fn pem_der(pem: &str) -> Result<Vec<u8>, SignError> {
    let body: String =
        pem.lines().map(str::trim).filter(|line| !line.is_empty() && !line.starts_with("-----")).collect();
    if !pem.contains("-----BEGIN PRIVATE KEY-----") {
        return Err(SignError("expected a PKCS#8 PEM block (-----BEGIN PRIVATE KEY-----)".into()));
    }
    STANDARD.decode(body).map_err(|_| SignError("PEM body is not base64".into()))
}

fn b64_member(jwk: &Value, name: &str) -> Result<Vec<u8>, SignError> {
    let text = jwk[name].as_str().ok_or_else(|| SignError(format!("JWK member {name} is missing")))?;
    base64url::decode(text).map_err(|_| SignError(format!("JWK member {name} is not base64url")))
}

impl SigningKey {
    /// A key from a PKCS#8 PEM private key.
    pub fn from_pem(kid: &str, algorithm: SigningAlgorithm, pem: &str) -> Result<Self, SignError> {
        let der = pem_der(pem)?;
        let pair = match algorithm {
            SigningAlgorithm::Es256 => Pair::Es256(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der, &SystemRandom::new())
                    .map_err(|_| SignError("not a P-256 PKCS#8 private key".into()))?,
            ),
            SigningAlgorithm::EdDsa => Pair::EdDsa(
                Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
                    .map_err(|_| SignError("not an Ed25519 PKCS#8 private key".into()))?,
            ),
        };
        Ok(Self { kid: kid.to_string(), pair })
    }

    /// A key from a private JWK (`EC`/`P-256` with `d`, `x`, `y`, or
    /// `OKP`/`Ed25519` with `d`, `x`); its `kid` unless `kid` is given.
    pub fn from_jwk(kid: Option<&str>, jwk: &Value) -> Result<Self, SignError> {
        let kid = kid
            .or_else(|| jwk["kid"].as_str())
            .ok_or_else(|| SignError("the key needs a kid".into()))?
            .to_string();
        let pair = match (jwk["kty"].as_str(), jwk["crv"].as_str()) {
            (Some("EC"), Some("P-256")) => {
                let mut public = alloc::vec![0x04];
                public.extend(b64_member(jwk, "x")?);
                public.extend(b64_member(jwk, "y")?);
                Pair::Es256(
                    EcdsaKeyPair::from_private_key_and_public_key(
                        &ECDSA_P256_SHA256_FIXED_SIGNING,
                        &b64_member(jwk, "d")?,
                        &public,
                        &SystemRandom::new(),
                    )
                    .map_err(|_| SignError("EC JWK: d, x and y are not one P-256 key".into()))?,
                )
            }
            (Some("OKP"), Some("Ed25519")) => Pair::EdDsa(
                Ed25519KeyPair::from_seed_and_public_key(&b64_member(jwk, "d")?, &b64_member(jwk, "x")?)
                    .map_err(|_| SignError("OKP JWK: d and x are not one Ed25519 key".into()))?,
            ),
            _ => return Err(SignError("only EC P-256 and OKP Ed25519 keys can sign".into())),
        };
        Ok(Self { kid, pair })
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm.
    pub fn algorithm(&self) -> SigningAlgorithm {
        match self.pair {
            Pair::Es256(_) => SigningAlgorithm::Es256,
            Pair::EdDsa(_) => SigningAlgorithm::EdDsa,
        }
    }

    /// The public JWK to publish (`kid`, `alg`, `use: sig`).
    pub fn public_jwk(&self) -> Value {
        match &self.pair {
            Pair::Es256(pair) => {
                // Uncompressed point: 0x04 || X || Y.
                let point = pair.public_key().as_ref();
                let (x, y) = point.get(1..).unwrap_or_default().split_at(point.len().saturating_sub(1) / 2);
                json!({"kty": "EC", "crv": "P-256", "x": base64url::encode(x), "y": base64url::encode(y),
                       "kid": self.kid, "alg": "ES256", "use": "sig"})
            }
            Pair::EdDsa(pair) => json!({"kty": "OKP", "crv": "Ed25519",
                "x": base64url::encode(pair.public_key().as_ref()), "kid": self.kid, "alg": "EdDSA", "use": "sig"}),
        }
    }

    /// A compact JWS of `payload` with header `{alg, kid, typ}`.
    pub fn sign_compact(&self, typ: &str, payload: &Value) -> Result<String, SignError> {
        let header = json!({"alg": self.algorithm().name(), "kid": self.kid, "typ": typ});
        let input = format!(
            "{}.{}",
            base64url::encode(header.to_string().as_bytes()),
            base64url::encode(payload.to_string().as_bytes())
        );
        let signature = match &self.pair {
            Pair::Es256(pair) => pair
                .sign(&SystemRandom::new(), input.as_bytes())
                .map_err(|_| SignError("ECDSA signing failed (no randomness?)".into()))?
                .as_ref()
                .to_vec(),
            Pair::EdDsa(pair) => pair.sign(input.as_bytes()).as_ref().to_vec(),
        };
        Ok(format!("{input}.{}", base64url::encode(&signature)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::jwk::JwkSet;
    use crate::jwt::{DEFAULT_MAX_TOKEN_BYTES, UnverifiedJwt};
    use crate::verify::VerifierSet;

    fn pem(der: &[u8]) -> String {
        format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", STANDARD.encode(der))
    }

    fn es256_pem() -> String {
        let rng = SystemRandom::new();
        pem(EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap().as_ref())
    }

    fn ed25519_pem() -> String {
        pem(Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap().as_ref())
    }

    /// Signs, then verifies with this crate's verifier against the
    /// published JWK (the verifier is tested against independent signers).
    fn round_trip(key: &SigningKey) {
        let token = key.sign_compact("at+jwt", &json!({"sub": "alice"})).unwrap();
        let set = JwkSet::parse_strict(json!({"keys": [key.public_jwk()]}).to_string().as_bytes()).unwrap();
        let verifiers = VerifierSet::import(&set).unwrap();
        let jwt = UnverifiedJwt::parse(&token, DEFAULT_MAX_TOKEN_BYTES).unwrap();
        assert_eq!(jwt.header().kid.as_deref(), Some(key.kid()));
        assert_eq!(jwt.header().typ.as_deref(), Some("at+jwt"));
        let (input, signature) = token.rsplit_once('.').unwrap();
        let signature = base64url::decode(signature).unwrap();
        let verified = verifiers.verify(Some(key.kid()), jwt.header().alg, input.as_bytes(), &signature);
        assert!(verified.is_ok(), "{token}");
        let tampered = verifiers.verify(Some(key.kid()), jwt.header().alg, b"x.y", &signature);
        assert!(tampered.is_err());
    }

    #[test]
    fn es256_and_eddsa_from_pem_sign_what_their_public_jwk_verifies() {
        round_trip(&SigningKey::from_pem("ec-1", SigningAlgorithm::Es256, &es256_pem()).unwrap());
        round_trip(&SigningKey::from_pem("ed-1", SigningAlgorithm::EdDsa, &ed25519_pem()).unwrap());
    }

    #[test]
    fn keys_from_private_jwks() {
        let pem_key = SigningKey::from_pem("ec-1", SigningAlgorithm::Es256, &es256_pem()).unwrap();
        // A private JWK needs `d`: the public one is refused.
        assert!(SigningKey::from_jwk(None, &pem_key.public_jwk()).is_err());
        let seed = [7u8; 32];
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "kid": "ed-jwk", "d": base64url::encode(&seed),
                         "x": base64url::encode(pair.public_key().as_ref())});
        let key = SigningKey::from_jwk(None, &jwk).unwrap();
        assert_eq!(key.kid(), "ed-jwk");
        round_trip(&key);
        let mut wrong = jwk.clone();
        wrong["x"] = json!(base64url::encode(&[1u8; 32]));
        assert!(SigningKey::from_jwk(None, &wrong).is_err());
    }

    #[test]
    fn bad_pem_is_refused_and_debug_shows_no_secret() {
        assert!(SigningKey::from_pem("k", SigningAlgorithm::Es256, "not a pem").is_err());
        assert!(SigningKey::from_pem("k", SigningAlgorithm::Es256, &ed25519_pem()).is_err());
        let key = SigningKey::from_pem("k", SigningAlgorithm::EdDsa, &ed25519_pem()).unwrap();
        assert_eq!(format!("{key:?}"), "SigningKey(k, EdDSA)");
    }
}
