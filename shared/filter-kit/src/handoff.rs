//! The handoff between chained filters on one listener: claim-enforcement
//! records which token it verified, so obo-credential-injection after it
//! can trust that token without fetching keys or checking a signature.
//!
//! The record is a per-request Envoy filter state value (proxy-wasm
//! `set_property`, stored as `wasm.<name>`), which clients cannot set. It
//! holds the token's SHA-256, not the token, so an access log that prints
//! filter state prints no credential. The reader hashes the token it sees
//! and trusts it only when the hashes are equal.

use baton_token::TokenHash;

/// The property claim-enforcement sets for a verified token.
pub const VERIFIED_TOKEN_PROPERTY: &str = "baton.verified_token_sha256";

/// The property value for a verified token: its SHA-256 in hex.
pub fn verified_value(hash: &TokenHash) -> String {
    hash.to_hex()
}

/// Whether `property` (as read back) records exactly `token`.
pub fn records(property: Option<&[u8]>, token: &str) -> bool {
    property.is_some_and(|value| value == TokenHash::of(token.as_bytes()).to_hex().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_recorded_token_matches() {
        let value = verified_value(&TokenHash::of(b"a.b.c"));
        assert!(records(Some(value.as_bytes()), "a.b.c"));
        assert!(!records(Some(value.as_bytes()), "a.b.d"));
        assert!(!records(Some(b""), "a.b.c"));
        assert!(!records(None, "a.b.c"));
        assert_eq!(value.len(), 64);
    }
}
