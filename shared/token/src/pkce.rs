//! PKCE (RFC 7636) and unguessable values: the gateway makes the verifier
//! and `state` itself, from randomness the caller supplies (WASI inside
//! Envoy; nothing here reads a random source).

use alloc::string::String;
use sha2::{Digest, Sha256};

use crate::base64url;
use crate::secret::Secret;

/// A code verifier from 32 random bytes: 43 base64url characters, the
/// high-entropy form RFC 7636 §4.1 recommends.
pub fn verifier(random: &[u8; 32]) -> Secret {
    Secret::new(base64url::encode(random))
}

/// The S256 code challenge of a verifier (RFC 7636 §4.2).
pub fn s256_challenge(verifier: &str) -> String {
    base64url::encode(&Sha256::digest(verifier.as_bytes()))
}

/// An opaque, unguessable value (a `state`, an id) from 32 random bytes.
pub fn opaque(random: &[u8; 32]) -> String {
    base64url::encode(random)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_7636_appendix_b_example() {
        assert_eq!(
            s256_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn verifiers_have_the_recommended_length() {
        let verifier = verifier(&[7; 32]);
        assert_eq!(verifier.expose().len(), 43);
        assert_ne!(opaque(&[1; 32]), opaque(&[2; 32]));
    }
}
