//! Strict base64url (RFC 4648 §5) without padding, as JWS compact
//! serialization requires (RFC 7515 §2).
//!
//! Decoding refuses padding, the standard alphabet's `+` and `/`, whitespace,
//! and non-canonical trailing bits, so one token has exactly one spelling and
//! a cache keyed by the token's bytes cannot be fooled by an alternative one.

use alloc::string::String;
use alloc::vec::Vec;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Why a base64url segment was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Base64Error;

/// Decodes canonical, unpadded base64url.
pub fn decode(input: &str) -> Result<Vec<u8>, Base64Error> {
    // The engine is configured strictly (no padding, canonical trailing bits);
    // it already refuses '+', '/', '=' and whitespace.
    URL_SAFE_NO_PAD.decode(input).map_err(|_| Base64Error)
}

/// Encodes as unpadded base64url.
pub fn encode(input: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for len in 0..40 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(decode(&encode(&data)).unwrap(), data);
        }
    }

    #[test]
    fn refuses_padding_standard_alphabet_and_whitespace() {
        assert_eq!(encode(b"\xfb\xff"), "-_8");
        assert!(decode("-_8").is_ok());
        assert!(decode("+/8").is_err());
        assert!(decode("-_8=").is_err());
        assert!(decode("-_ 8").is_err());
        assert!(decode("-_8\n").is_err());
    }

    #[test]
    fn refuses_non_canonical_trailing_bits() {
        // "QQ" is the canonical spelling of "A"; "QR" decodes to the same byte
        // with non-zero trailing bits.
        assert_eq!(decode("QQ").unwrap(), b"A");
        assert!(decode("QR").is_err());
    }

    #[test]
    fn refuses_impossible_length() {
        assert!(decode("Q").is_err());
    }
}
