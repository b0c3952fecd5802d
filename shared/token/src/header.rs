//! The JOSE header of a JWS (RFC 7515 §4) and the algorithms Baton accepts.

use alloc::string::{String, ToString};
use serde_json::{Map, Value};

/// Asymmetric JWS algorithms (RFC 7518 §3, RFC 8037). `none` and the HMAC
/// family are deliberately absent: a gateway verifies with public keys only,
/// so a token can never choose a symmetric algorithm and turn a public key
/// into an HMAC secret (RFC 8725 §2.1, §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// ECDSA P-384 with SHA-384.
    ES384,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// Ed25519 (RFC 8037).
    EdDSA,
}

/// The kind of key an algorithm needs. A key belongs to one family, so a key
/// published for ES256 can never verify an RS256 signature and vice versa.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyFamily {
    /// EC key on P-256.
    EcP256,
    /// EC key on P-384.
    EcP384,
    /// RSA key.
    Rsa,
    /// OKP key on Ed25519.
    Ed25519,
}

impl Algorithm {
    /// Every supported algorithm, for error messages that list valid choices.
    pub const ALL: [Algorithm; 9] = [
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::EdDSA,
    ];

    /// Parses an `alg` value. Names are case-sensitive (RFC 7515 §4.1.1), so
    /// `None`, `NONE` and `hs256` are simply unknown.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|alg| alg.name() == name)
    }

    /// The registered `alg` name.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    /// The key family this algorithm verifies with.
    pub fn family(self) -> KeyFamily {
        match self {
            Algorithm::ES256 => KeyFamily::EcP256,
            Algorithm::ES384 => KeyFamily::EcP384,
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => KeyFamily::Rsa,
            Algorithm::EdDSA => KeyFamily::Ed25519,
        }
    }
}

/// Why a JOSE header was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// No `alg` member, or not a string.
    MissingAlgorithm,
    /// `alg` is `none` in any spelling (RFC 8725 §3.1 forbids accepting it).
    AlgorithmNone,
    /// `alg` names an algorithm Baton does not verify (HMAC, unknown).
    UnsupportedAlgorithm,
    /// `crit` lists extensions; Baton understands none, and RFC 7515 §4.1.11
    /// requires rejecting a JWS whose critical extensions are not understood.
    UnsupportedCritical,
    /// A registered member has the wrong JSON type.
    InvalidMember(&'static str),
}

/// The members of a JOSE header that Baton reads.
///
/// `jku`, `x5u`, `x5c` and `jwk` are never read: keys come only from the
/// configured key set (RFC 8725 §3.10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoseHeader {
    /// The signature algorithm.
    pub alg: Algorithm,
    /// The key id, when the issuer names one.
    pub kid: Option<String>,
    /// The media type of the whole JWT (e.g. `at+jwt`, RFC 9068).
    pub typ: Option<String>,
}

impl JoseHeader {
    /// Reads a header from its (duplicate-free) JSON object.
    pub fn from_object(object: &Map<String, Value>) -> Result<Self, HeaderError> {
        let alg_name = match object.get("alg") {
            Some(Value::String(name)) => name.as_str(),
            _ => return Err(HeaderError::MissingAlgorithm),
        };
        let alg = match Algorithm::from_name(alg_name) {
            Some(alg) => alg,
            None if alg_name.eq_ignore_ascii_case("none") => {
                return Err(HeaderError::AlgorithmNone);
            }
            None => return Err(HeaderError::UnsupportedAlgorithm),
        };
        if object.contains_key("crit") {
            return Err(HeaderError::UnsupportedCritical);
        }
        Ok(Self { alg, kid: optional_string(object, "kid")?, typ: optional_string(object, "typ")? })
    }
}

fn optional_string(object: &Map<String, Value>, name: &'static str) -> Result<Option<String>, HeaderError> {
    match object.get(name) {
        None => Ok(None),
        Some(Value::String(value)) => Ok(Some(value.to_string())),
        Some(_) => Err(HeaderError::InvalidMember(name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::parse_object;

    fn header(json: &str) -> Result<JoseHeader, HeaderError> {
        JoseHeader::from_object(&parse_object(json.as_bytes()).unwrap())
    }

    #[test]
    fn reads_alg_kid_typ() {
        let h = header(r#"{"alg":"ES256","kid":"k1","typ":"at+jwt"}"#).unwrap();
        assert_eq!(h.alg, Algorithm::ES256);
        assert_eq!(h.kid.as_deref(), Some("k1"));
        assert_eq!(h.typ.as_deref(), Some("at+jwt"));
    }

    #[test]
    fn refuses_none_in_every_casing() {
        for alg in ["none", "None", "NONE", "nOnE"] {
            let json = alloc::format!(r#"{{"alg":"{alg}"}}"#);
            assert_eq!(header(&json), Err(HeaderError::AlgorithmNone), "{alg}");
        }
    }

    #[test]
    fn refuses_hmac_unknown_and_missing_alg() {
        assert_eq!(header(r#"{"alg":"HS256"}"#), Err(HeaderError::UnsupportedAlgorithm));
        assert_eq!(header(r#"{"alg":"es256"}"#), Err(HeaderError::UnsupportedAlgorithm));
        assert_eq!(header(r#"{"kid":"k"}"#), Err(HeaderError::MissingAlgorithm));
        assert_eq!(header(r#"{"alg":256}"#), Err(HeaderError::MissingAlgorithm));
    }

    #[test]
    fn refuses_crit_and_ill_typed_members() {
        assert_eq!(
            header(r#"{"alg":"ES256","crit":["exp"],"exp":1}"#),
            Err(HeaderError::UnsupportedCritical)
        );
        assert_eq!(header(r#"{"alg":"ES256","kid":7}"#), Err(HeaderError::InvalidMember("kid")));
    }

    #[test]
    fn ignores_key_location_hints() {
        let h = header(
            r#"{"alg":"RS256","jku":"https://evil.example/jwks","x5u":"https://evil.example/c","jwk":{"kty":"RSA"}}"#,
        )
        .unwrap();
        assert_eq!(h.alg, Algorithm::RS256);
        assert_eq!(h.kid, None);
    }

    #[test]
    fn every_algorithm_name_round_trips() {
        for alg in Algorithm::ALL {
            assert_eq!(Algorithm::from_name(alg.name()), Some(alg));
        }
    }
}
