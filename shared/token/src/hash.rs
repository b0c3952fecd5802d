//! Token fingerprints: cache keys and log correlation without the token.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use sha2::{Digest, Sha256};

/// SHA-256 of a token's bytes.
///
/// Used as a cache key (the raw token is never a key) and, shortened, in audit
/// lines so that one request can be traced without logging the credential.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// Hashes a token.
    pub fn of(token: &[u8]) -> Self {
        Self(Sha256::digest(token).into())
    }

    /// Hashes several parts as one input, each prefixed by its length so that
    /// ("ab", "c") and ("a", "bc") differ.
    pub fn of_parts(parts: &[&[u8]]) -> Self {
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
        Self(hasher.finalize().into())
    }

    /// The digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Rebuilds a hash from its bytes (read back from a cache entry).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The first 8 bytes as a big-endian number (cache slot selection).
    pub fn prefix_u64(&self) -> u64 {
        let mut first = [0u8; 8];
        first.copy_from_slice(&self.0[..8]);
        u64::from_be_bytes(first)
    }

    /// Lower-case hex of the whole digest.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// Reads back [`TokenHash::to_hex`]'s 64 hex digits.
    pub fn from_hex(text: &str) -> Option<Self> {
        let text = text.as_bytes();
        if text.len() != 64 {
            return None;
        }
        let digit = |c: u8| char::from(c).to_digit(16).and_then(|d| u8::try_from(d).ok());
        let mut bytes = [0u8; 32];
        for (index, byte) in bytes.iter_mut().enumerate() {
            *byte = digit(text[2 * index])? << 4 | digit(text[2 * index + 1])?;
        }
        Some(Self(bytes))
    }

    /// The first 12 hex digits: enough to correlate log lines, far too few to
    /// help guess a token.
    pub fn short(&self) -> String {
        hex(&self.0[..6])
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({})", self.short())
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    // Bytes first: pushing chars checks each one's UTF-8 length.
    let mut out = Vec::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)]);
        out.push(DIGITS[usize::from(byte & 0x0f)]);
    }
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_reads_back() {
        let hash = TokenHash::of(b"t");
        assert_eq!(TokenHash::from_hex(&hash.to_hex()), Some(hash));
        assert_eq!(TokenHash::from_hex(&hash.to_hex()[1..]), None);
        assert_eq!(TokenHash::from_hex(&"g".repeat(64)), None);
    }

    #[test]
    fn known_digest() {
        assert_eq!(
            TokenHash::of(b"abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(TokenHash::of(b"abc").short(), "ba7816bf8f01");
    }

    #[test]
    fn parts_are_length_prefixed() {
        assert_ne!(TokenHash::of_parts(&[b"ab", b"c"]), TokenHash::of_parts(&[b"a", b"bc"]));
    }
}
