//! JSON Web Key Sets (RFC 7517) for signature verification: parsing and
//! checking only, no cryptography (see `verify` for that).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use serde_json::{Map, Value};

use crate::base64url;
use crate::header::{Algorithm, KeyFamily};

/// Smallest RSA modulus accepted (NIST SP 800-131A; jwt-simple agrees).
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted: bounds verification cost.
pub const MAX_RSA_BITS: usize = 8192;

/// Public key material of one JWK.
#[derive(Clone, PartialEq, Eq)]
pub enum KeyMaterial {
    /// EC P-256 point.
    EcP256 {
        /// x coordinate.
        x: [u8; 32],
        /// y coordinate.
        y: [u8; 32],
    },
    /// EC P-384 point.
    EcP384 {
        /// x coordinate.
        x: [u8; 48],
        /// y coordinate.
        y: [u8; 48],
    },
    /// RSA public key.
    Rsa {
        /// Modulus, big-endian, no leading zeros.
        n: Vec<u8>,
        /// Public exponent, big-endian.
        e: Vec<u8>,
    },
    /// Ed25519 public key.
    Ed25519 {
        /// The 32-byte public key.
        x: [u8; 32],
    },
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyMaterial::EcP256 { .. } => f.write_str("EcP256"),
            KeyMaterial::EcP384 { .. } => f.write_str("EcP384"),
            KeyMaterial::Rsa { n, .. } => write!(f, "Rsa({} bits)", rsa_bits(n)),
            KeyMaterial::Ed25519 { .. } => f.write_str("Ed25519"),
        }
    }
}

impl KeyMaterial {
    /// The algorithm family this key verifies.
    pub fn family(&self) -> KeyFamily {
        match self {
            KeyMaterial::EcP256 { .. } => KeyFamily::EcP256,
            KeyMaterial::EcP384 { .. } => KeyFamily::EcP384,
            KeyMaterial::Rsa { .. } => KeyFamily::Rsa,
            KeyMaterial::Ed25519 { .. } => KeyFamily::Ed25519,
        }
    }
}

/// One verification key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jwk {
    /// Key id.
    pub kid: Option<String>,
    /// The one algorithm this key is for, when the JWK says so.
    pub alg: Option<Algorithm>,
    /// The key.
    pub material: KeyMaterial,
}

impl Jwk {
    /// Whether this key may verify a signature made with `alg`: same family,
    /// and the JWK's own `alg`, when given, must match exactly.
    pub fn accepts(&self, alg: Algorithm) -> bool {
        self.material.family() == alg.family() && self.alg.is_none_or(|own| own == alg)
    }
}

/// Why one key of a set was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JwkError {
    /// The key is not a JSON object.
    NotAnObject,
    /// `kty` is missing or unsupported (`oct` keys are never accepted).
    UnsupportedKeyType,
    /// `crv` is missing or unsupported for the key type.
    UnsupportedCurve,
    /// `alg` is unknown, or does not fit the key type.
    UnsupportedAlgorithm,
    /// `use` is not `sig`, or `key_ops` does not include `verify`.
    NotForSignatures,
    /// A member is missing, not a string, or not base64url of the right length.
    InvalidMember(&'static str),
    /// RSA modulus outside the accepted size.
    RsaKeySize(usize),
    /// The JWK carries private key material: a published key set must not.
    PrivateKeyMaterial,
}

impl fmt::Display for JwkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwkError::NotAnObject => f.write_str("key is not a JSON object"),
            JwkError::UnsupportedKeyType => f.write_str("kty must be EC, RSA or OKP"),
            JwkError::UnsupportedCurve => f.write_str("crv must be P-256 or P-384 (EC) or Ed25519 (OKP)"),
            JwkError::UnsupportedAlgorithm => f.write_str("alg is unknown or does not fit the key type"),
            JwkError::NotForSignatures => f.write_str("key is not for signature verification (use/key_ops)"),
            JwkError::InvalidMember(name) => write!(f, "member {name} is missing or invalid"),
            JwkError::RsaKeySize(bits) => {
                write!(f, "RSA modulus of {bits} bits is outside {MIN_RSA_BITS}..={MAX_RSA_BITS}")
            }
            JwkError::PrivateKeyMaterial => f.write_str("key contains private key material"),
        }
    }
}

/// Why a whole key set was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JwksError {
    /// Not a JSON object with a `keys` array.
    Malformed,
    /// A key was refused (in strict mode), by its index in `keys`.
    Key {
        /// Position in `keys`.
        index: usize,
        /// Why.
        error: JwkError,
    },
    /// Two keys share a `kid`.
    DuplicateKid(String),
    /// No usable key at all.
    Empty,
}

impl fmt::Display for JwksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwksError::Malformed => f.write_str("not a JSON object with a keys array"),
            JwksError::Key { index, error } => write!(f, "keys[{index}]: {error}"),
            JwksError::DuplicateKid(kid) => write!(f, "kid {kid:?} appears twice"),
            JwksError::Empty => f.write_str("no usable signature key"),
        }
    }
}

/// A parsed key set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JwkSet {
    /// The usable keys, in document order.
    pub keys: Vec<Jwk>,
    /// Keys that were skipped (lenient parsing only), with the reason.
    pub skipped: Vec<(usize, JwkError)>,
}

impl JwkSet {
    /// Parses a key set from configuration: every key must be usable.
    pub fn parse_strict(json: &[u8]) -> Result<Self, JwksError> {
        let set = Self::parse_lenient(json)?;
        if let Some((index, error)) = set.skipped.first() {
            return Err(JwksError::Key { index: *index, error: error.clone() });
        }
        Ok(set)
    }

    /// Parses a key set fetched from an IdP: keys Baton cannot use (for
    /// encryption, other key types) are skipped, as IdPs often publish them,
    /// but at least one usable key must remain.
    pub fn parse_lenient(json: &[u8]) -> Result<Self, JwksError> {
        let document: Value = serde_json::from_slice(json).map_err(|_| JwksError::Malformed)?;
        let Some(Value::Array(entries)) = document.get("keys") else {
            return Err(JwksError::Malformed);
        };
        let mut set = JwkSet::default();
        for (index, entry) in entries.iter().enumerate() {
            match parse_jwk(entry) {
                Ok(jwk) => {
                    if let Some(kid) = &jwk.kid
                        && set.keys.iter().any(|k| k.kid.as_ref() == Some(kid))
                    {
                        return Err(JwksError::DuplicateKid(kid.clone()));
                    }
                    set.keys.push(jwk);
                }
                Err(error) => set.skipped.push((index, error)),
            }
        }
        if set.keys.is_empty() {
            return match set.skipped.first() {
                Some((index, error)) => Err(JwksError::Key { index: *index, error: error.clone() }),
                None => Err(JwksError::Empty),
            };
        }
        Ok(set)
    }

    /// The keys that may verify a token with this `kid` and `alg`. With a
    /// `kid`, at most the one key of that id; without, every key of the family.
    pub fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &'a Jwk> + 'a {
        self.keys.iter().filter(move |key| {
            key.accepts(alg)
                && match kid {
                    Some(kid) => key.kid.as_deref() == Some(kid),
                    None => true,
                }
        })
    }

    /// Whether a key with this id exists.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|key| key.kid.as_deref() == Some(kid))
    }
}

fn parse_jwk(entry: &Value) -> Result<Jwk, JwkError> {
    let Value::Object(object) = entry else {
        return Err(JwkError::NotAnObject);
    };
    for private in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
        if object.contains_key(private) {
            return Err(JwkError::PrivateKeyMaterial);
        }
    }
    if let Some(key_use) = object.get("use")
        && key_use != "sig"
    {
        return Err(JwkError::NotForSignatures);
    }
    if let Some(ops) = object.get("key_ops") {
        let verifies = ops.as_array().is_some_and(|ops| ops.iter().any(|op| op == "verify"));
        if !verifies {
            return Err(JwkError::NotForSignatures);
        }
    }
    let kid = match object.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(JwkError::InvalidMember("kid")),
    };
    let material = match text(object, "kty")? {
        "EC" => match text(object, "crv")? {
            "P-256" => KeyMaterial::EcP256 { x: fixed(object, "x")?, y: fixed(object, "y")? },
            "P-384" => KeyMaterial::EcP384 { x: fixed(object, "x")?, y: fixed(object, "y")? },
            _ => return Err(JwkError::UnsupportedCurve),
        },
        "OKP" => match text(object, "crv")? {
            "Ed25519" => KeyMaterial::Ed25519 { x: fixed(object, "x")? },
            _ => return Err(JwkError::UnsupportedCurve),
        },
        "RSA" => {
            let n = strip_leading_zeros(bytes(object, "n")?);
            let e = strip_leading_zeros(bytes(object, "e")?);
            let bits = rsa_bits(&n);
            if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
                return Err(JwkError::RsaKeySize(bits));
            }
            if e.is_empty() || e.len() > 8 {
                return Err(JwkError::InvalidMember("e"));
            }
            KeyMaterial::Rsa { n, e }
        }
        _ => return Err(JwkError::UnsupportedKeyType),
    };
    let alg = match object.get("alg") {
        None => None,
        Some(Value::String(name)) => match Algorithm::from_name(name) {
            Some(alg) if alg.family() == material.family() => Some(alg),
            _ => return Err(JwkError::UnsupportedAlgorithm),
        },
        Some(_) => return Err(JwkError::UnsupportedAlgorithm),
    };
    Ok(Jwk { kid, alg, material })
}

fn text<'a>(object: &'a Map<String, Value>, name: &'static str) -> Result<&'a str, JwkError> {
    match object.get(name) {
        Some(Value::String(value)) => Ok(value),
        _ if name == "kty" => Err(JwkError::UnsupportedKeyType),
        _ if name == "crv" => Err(JwkError::UnsupportedCurve),
        _ => Err(JwkError::InvalidMember(name)),
    }
}

fn bytes(object: &Map<String, Value>, name: &'static str) -> Result<Vec<u8>, JwkError> {
    base64url::decode(text(object, name)?).map_err(|_| JwkError::InvalidMember(name))
}

fn fixed<const N: usize>(object: &Map<String, Value>, name: &'static str) -> Result<[u8; N], JwkError> {
    bytes(object, name)?.try_into().map_err(|_| JwkError::InvalidMember(name))
}

fn strip_leading_zeros(mut value: Vec<u8>) -> Vec<u8> {
    let zeros = value.iter().take_while(|b| **b == 0).count();
    value.drain(..zeros);
    value
}

fn rsa_bits(n: &[u8]) -> usize {
    match n.first() {
        None => 0,
        Some(top) => (n.len() - 1) * 8 + (8 - top.leading_zeros() as usize),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base64url::encode;
    use alloc::format;

    fn ec_key(kid: &str) -> String {
        format!(
            r#"{{"kty":"EC","crv":"P-256","kid":"{kid}","x":"{}","y":"{}","use":"sig","alg":"ES256"}}"#,
            encode(&[1; 32]),
            encode(&[2; 32])
        )
    }

    fn rsa_key(bits: usize) -> String {
        let mut n = alloc::vec![0xffu8; bits / 8];
        n[0] = 0x80;
        format!(r#"{{"kty":"RSA","kid":"r","n":"{}","e":"AQAB"}}"#, encode(&n))
    }

    #[test]
    fn parses_ec_rsa_and_okp_keys() {
        let json = format!(
            r#"{{"keys":[{},{},{{"kty":"OKP","crv":"Ed25519","x":"{}","kid":"o"}}]}}"#,
            ec_key("e"),
            rsa_key(2048),
            encode(&[3; 32])
        );
        let set = JwkSet::parse_strict(json.as_bytes()).unwrap();
        assert_eq!(set.keys.len(), 3);
        assert!(set.keys[0].accepts(Algorithm::ES256) && !set.keys[0].accepts(Algorithm::ES384));
        assert!(set.keys[1].accepts(Algorithm::RS256) && set.keys[1].accepts(Algorithm::PS512));
        assert!(!set.keys[1].accepts(Algorithm::ES256));
        assert!(set.keys[2].accepts(Algorithm::EdDSA));
        assert_eq!(set.candidates(Some("r"), Algorithm::RS384).count(), 1);
        assert_eq!(set.candidates(Some("r"), Algorithm::ES256).count(), 0);
        assert_eq!(set.candidates(None, Algorithm::ES256).count(), 1);
    }

    #[test]
    fn jwk_alg_pins_the_algorithm() {
        let json = format!(
            r#"{{"keys":[{}]}}"#,
            rsa_key(2048).replace(r#""e":"AQAB""#, r#""e":"AQAB","alg":"RS256""#)
        );
        let set = JwkSet::parse_strict(json.as_bytes()).unwrap();
        assert!(set.keys[0].accepts(Algorithm::RS256));
        assert!(!set.keys[0].accepts(Algorithm::PS256));
    }

    #[test]
    fn refuses_weak_rsa_private_and_symmetric_keys() {
        let weak = format!(r#"{{"keys":[{}]}}"#, rsa_key(1024));
        assert_eq!(
            JwkSet::parse_strict(weak.as_bytes()),
            Err(JwksError::Key { index: 0, error: JwkError::RsaKeySize(1024) })
        );
        let private = format!(r#"{{"keys":[{}]}}"#, ec_key("e").replace(r#""use""#, r#""d":"AA","use""#));
        assert_eq!(
            JwkSet::parse_strict(private.as_bytes()),
            Err(JwksError::Key { index: 0, error: JwkError::PrivateKeyMaterial })
        );
        let oct = r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#;
        assert!(JwkSet::parse_strict(oct.as_bytes()).is_err());
    }

    #[test]
    fn refuses_mismatched_alg_wrong_lengths_and_duplicates() {
        let mismatched = format!(r#"{{"keys":[{}]}}"#, ec_key("e").replace("ES256", "RS256"));
        assert!(JwkSet::parse_strict(mismatched.as_bytes()).is_err());
        let short = format!(r#"{{"keys":[{}]}}"#, ec_key("e").replace(&encode(&[1; 32]), &encode(&[1; 31])));
        assert_eq!(
            JwkSet::parse_strict(short.as_bytes()),
            Err(JwksError::Key { index: 0, error: JwkError::InvalidMember("x") })
        );
        let dup = format!(r#"{{"keys":[{},{}]}}"#, ec_key("same"), ec_key("same"));
        assert_eq!(JwkSet::parse_strict(dup.as_bytes()), Err(JwksError::DuplicateKid("same".into())));
    }

    #[test]
    fn lenient_parsing_skips_unusable_keys_but_needs_one() {
        let mixed =
            format!(r#"{{"keys":[{{"kty":"RSA","use":"enc","n":"AQAB","e":"AQAB"}},{}]}}"#, ec_key("e"));
        let set = JwkSet::parse_lenient(mixed.as_bytes()).unwrap();
        assert_eq!(set.keys.len(), 1);
        assert_eq!(set.skipped, [(0, JwkError::NotForSignatures)]);
        assert!(JwkSet::parse_strict(mixed.as_bytes()).is_err());
        assert_eq!(JwkSet::parse_lenient(br#"{"keys":[]}"#), Err(JwksError::Empty));
        assert_eq!(JwkSet::parse_lenient(b"[]"), Err(JwksError::Malformed));
        assert_eq!(JwkSet::parse_lenient(b"<html>"), Err(JwksError::Malformed));
    }
}
