//! Sealing what the shared store holds, and naming where it holds it.
//!
//! Each configured secret (with its key id) gives two keys, derived with
//! HKDF-SHA256 so neither is the secret itself:
//! - a ChaCha20-Poly1305 key that seals values (chosen over AES-GCM because
//!   wasm has no AES instructions: ChaCha20 is fast and constant-time in
//!   plain code);
//! - an HMAC-SHA256 key that turns a logical name (what kind of entry, for
//!   which user and task, ...) into the store key, hex, so a dump of the
//!   store shows no user, task or credential.
//!
//! A sealed value is `1 | id length | key id | nonce (12) | ciphertext | tag
//! (16)`: the key id travels in the clear so that any configured key opens
//! what it sealed (rotation: seal with the current key, open with any). The
//! nonce is random per seal (from the [`Host`]), and the associated data
//! binds the value to the key id and to where it is stored (`bound_to`, the
//! store key), so a value copied under another key does not open.
//!
//! Names from different keys differ. A single-use mark for something sealed
//! (a `state`) must be named under the key that sealed it
//! ([`StoreKeys::name_under`] with [`key_id_of`]): named under the current
//! key, a rotation would let a `state` sealed just before it be used again.

use core::fmt;

use baton_token::TokenHash;
use ring::aead::{self, Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::{hkdf, hmac};

use crate::host::Host;

/// Format version of a sealed value (its first byte).
const VERSION: u8 = 1;
/// HKDF salt: the derived keys are Baton's store keys and nothing else.
const HKDF_SALT: &[u8] = b"baton store keys v1";
/// Shortest secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;
/// Longest key id, in bytes.
pub const MAX_KEY_ID_BYTES: usize = 32;

/// Why a value was not sealed or did not open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealError {
    /// The host had no randomness for a nonce.
    NoRandomness,
    /// Not a sealed value of this format (too short, another version).
    Malformed,
    /// Sealed with a key id that is not configured (any more).
    UnknownKeyId(String),
    /// The value does not open: tampered with, copied from another store
    /// key, or sealed by another secret with the same id.
    NotAuthentic,
}

impl fmt::Display for SealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoRandomness => f.write_str("no randomness for a nonce"),
            Self::Malformed => f.write_str("not a sealed value"),
            Self::UnknownKeyId(id) => write!(f, "sealed with key id {id:?}, which is not configured"),
            Self::NotAuthentic => f.write_str("the sealed value does not open"),
        }
    }
}

/// A key id is refused: empty, too long, or not `[A-Za-z0-9._-]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// The id is not a valid key id.
    InvalidId,
    /// The secret is shorter than [`MIN_SECRET_BYTES`].
    ShortSecret(usize),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidId => write!(f, "must be 1 to {MAX_KEY_ID_BYTES} characters of A-Z a-z 0-9 . _ -"),
            Self::ShortSecret(len) => {
                write!(f, "must be at least {MIN_SECRET_BYTES} bytes of key material, got {len}")
            }
        }
    }
}

/// The two keys one secret gives.
struct StoreKey {
    id: String,
    sealing: LessSafeKey,
    naming: hmac::Key,
}

impl StoreKey {
    fn derive(id: &str, secret: &[u8]) -> Result<Self, KeyError> {
        let id_valid = !id.is_empty()
            && id.len() <= MAX_KEY_ID_BYTES
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !id_valid {
            return Err(KeyError::InvalidId);
        }
        if secret.len() < MIN_SECRET_BYTES {
            return Err(KeyError::ShortSecret(secret.len()));
        }
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, HKDF_SALT).extract(secret);
        // Expanding to 32 bytes (both key lengths) cannot fail: HKDF-SHA256
        // gives up to 8160 bytes. Either way there is no key, not a weak one.
        let sealing = prk
            .expand(&[b"seal"], &CHACHA20_POLY1305)
            .map(UnboundKey::from)
            .map_err(|_| KeyError::ShortSecret(secret.len()))?;
        let naming = prk
            .expand(&[b"name"], hmac::HMAC_SHA256)
            .map(hmac::Key::from)
            .map_err(|_| KeyError::ShortSecret(secret.len()))?;
        Ok(Self { id: id.to_string(), sealing: LessSafeKey::new(sealing), naming })
    }
}

/// The configured store keys: one current (seals, names), every one opens.
pub struct StoreKeys {
    keys: Vec<StoreKey>,
    current: usize,
}

impl fmt::Debug for StoreKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|key| key.id.as_str()).collect();
        f.debug_struct("StoreKeys").field("ids", &ids).field("current", &self.current_id()).finish()
    }
}

impl StoreKeys {
    /// One key, current.
    pub fn single(id: &str, secret: &[u8]) -> Result<Self, KeyError> {
        Ok(Self { keys: vec![StoreKey::derive(id, secret)?], current: 0 })
    }

    /// Adds a key (not current). A key id already present is refused as
    /// invalid (the caller names the field).
    pub fn add(&mut self, id: &str, secret: &[u8]) -> Result<(), KeyError> {
        if self.position(id).is_some() {
            return Err(KeyError::InvalidId);
        }
        self.keys.push(StoreKey::derive(id, secret)?);
        Ok(())
    }

    /// Makes key `id` the current one; false when there is none.
    pub fn set_current(&mut self, id: &str) -> bool {
        match self.position(id) {
            Some(index) => {
                self.current = index;
                true
            }
            None => false,
        }
    }

    /// Whether key `id` is configured.
    pub fn has(&self, id: &str) -> bool {
        self.position(id).is_some()
    }

    /// The id of the key that seals and names.
    pub fn current_id(&self) -> &str {
        self.keys.get(self.current).map_or("", |key| key.id.as_str())
    }

    fn position(&self, id: &str) -> Option<usize> {
        self.keys.iter().position(|key| key.id == id)
    }

    fn current(&self) -> Option<&StoreKey> {
        self.keys.get(self.current)
    }

    /// Seals `plaintext` with the current key, for storing under `bound_to`.
    pub fn seal(&self, host: &dyn Host, bound_to: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let key = self.current().ok_or(SealError::Malformed)?;
        let mut nonce = [0u8; NONCE_LEN];
        if !host.fill_random(&mut nonce) {
            return Err(SealError::NoRandomness);
        }
        let id = key.id.as_bytes();
        let id_len = u8::try_from(id.len()).map_err(|_| SealError::Malformed)?;
        let mut sealed = Vec::with_capacity(2 + id.len() + NONCE_LEN + plaintext.len() + aead::MAX_TAG_LEN);
        sealed.push(VERSION);
        sealed.push(id_len);
        sealed.extend_from_slice(id);
        sealed.extend_from_slice(&nonce);
        let mut in_out = plaintext.to_vec();
        key.sealing
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(associated_data(id, bound_to)),
                &mut in_out,
            )
            .map_err(|_| SealError::Malformed)?;
        sealed.extend_from_slice(&in_out);
        Ok(sealed)
    }

    /// Opens a value stored under `bound_to` with whichever configured key
    /// sealed it.
    pub fn open(&self, bound_to: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let parts = SealedParts::read(sealed)?;
        let key = self
            .position(parts.key_id)
            .and_then(|index| self.keys.get(index))
            .ok_or_else(|| SealError::UnknownKeyId(parts.key_id.to_string()))?;
        let mut in_out = parts.ciphertext.to_vec();
        let plaintext = key
            .sealing
            .open_in_place(
                Nonce::assume_unique_for_key(parts.nonce),
                Aad::from(associated_data(parts.key_id.as_bytes(), bound_to)),
                &mut in_out,
            )
            .map_err(|_| SealError::NotAuthentic)?;
        Ok(plaintext.to_vec())
    }

    /// The store name (hex, without the store's prefix) of the entry `kind`
    /// for `parts` (e.g. `("token", [user, task])`), under the current key.
    pub fn name(&self, kind: &str, parts: &[&[u8]]) -> String {
        self.current().map_or_else(String::new, |key| name_with(key, kind, parts))
    }

    /// Whether `name` (at least 32 hex digits) starts the name of entry
    /// `kind` for `parts` under one of the configured keys: a name made
    /// before a key rotation holds while its key is configured. Each
    /// comparison reads every digit (no early exit).
    pub fn names(&self, kind: &str, parts: &[&[u8]], name: &str) -> bool {
        name.len() >= 32
            && self.keys.iter().any(|key| {
                let full = name_with(key, kind, parts);
                full.len() >= name.len()
                    && full.as_bytes()[..name.len()]
                        .iter()
                        .zip(name.as_bytes())
                        .fold(0u8, |differ, (a, b)| differ | (a ^ b))
                        == 0
            })
    }

    /// As [`StoreKeys::name`] under key `key_id` (the key that sealed what
    /// the entry is about); `None` when that key is not configured.
    pub fn name_under(&self, key_id: &str, kind: &str, parts: &[&[u8]]) -> Option<String> {
        let key = self.keys.get(self.position(key_id)?)?;
        Some(name_with(key, kind, parts))
    }
}

/// The key id a sealed value names, in the clear.
pub fn key_id_of(sealed: &[u8]) -> Result<&str, SealError> {
    Ok(SealedParts::read(sealed)?.key_id)
}

/// What the associated data covers: the format, the key id, where the
/// value is stored. The id is length-prefixed, `bound_to` last: no two
/// different pairs give the same bytes.
fn associated_data(key_id: &[u8], bound_to: &[u8]) -> Vec<u8> {
    let mut data = Vec::with_capacity(2 + key_id.len() + bound_to.len());
    data.push(VERSION);
    data.push(u8::try_from(key_id.len()).unwrap_or(u8::MAX));
    data.extend_from_slice(key_id);
    data.extend_from_slice(bound_to);
    data
}

fn name_with(key: &StoreKey, kind: &str, parts: &[&[u8]]) -> String {
    let mut context = hmac::Context::with_key(&key.naming);
    for part in core::iter::once(kind.as_bytes()).chain(parts.iter().copied()) {
        context.update(&(part.len() as u64).to_be_bytes());
        context.update(part);
    }
    let tag = context.sign();
    let mut digest = [0u8; 32];
    digest.copy_from_slice(tag.as_ref());
    TokenHash::from_bytes(digest).to_hex()
}

/// A sealed value's fields.
struct SealedParts<'a> {
    key_id: &'a str,
    nonce: [u8; NONCE_LEN],
    ciphertext: &'a [u8],
}

impl<'a> SealedParts<'a> {
    fn read(sealed: &'a [u8]) -> Result<Self, SealError> {
        let [version, id_len, rest @ ..] = sealed else { return Err(SealError::Malformed) };
        if *version != VERSION {
            return Err(SealError::Malformed);
        }
        let (id, rest) = rest.split_at_checked(usize::from(*id_len)).ok_or(SealError::Malformed)?;
        let (nonce, ciphertext) = rest.split_at_checked(NONCE_LEN).ok_or(SealError::Malformed)?;
        if ciphertext.len() < CHACHA20_POLY1305.tag_len() {
            return Err(SealError::Malformed);
        }
        let key_id = core::str::from_utf8(id).map_err(|_| SealError::Malformed)?;
        let nonce = <[u8; NONCE_LEN]>::try_from(nonce).map_err(|_| SealError::Malformed)?;
        Ok(Self { key_id, nonce, ciphertext })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_host::TestHost;

    const SECRET_1: &[u8; 32] = b"0123456789abcdef0123456789abcdef";
    const SECRET_2: &[u8; 32] = b"fedcba9876543210fedcba9876543210";

    fn keys() -> StoreKeys {
        StoreKeys::single("k1", SECRET_1).unwrap()
    }

    #[test]
    fn a_value_round_trips_and_names_its_key_in_the_clear() {
        let host = TestHost::new(0);
        let sealed = keys().seal(&host, b"baton/abc", b"a bank token").unwrap();
        assert_eq!(key_id_of(&sealed), Ok("k1"));
        assert!(!sealed.windows(12).any(|w| w == b"a bank token"), "the plaintext shows");
        assert_eq!(keys().open(b"baton/abc", &sealed).unwrap(), b"a bank token");
        assert_eq!(keys().open(b"baton/abc", &keys().seal(&host, b"baton/abc", b"").unwrap()).unwrap(), b"");
    }

    #[test]
    fn another_key_or_secret_does_not_open() {
        let host = TestHost::new(0);
        let sealed = keys().seal(&host, b"baton/abc", b"v").unwrap();
        let other = StoreKeys::single("k2", SECRET_2).unwrap();
        assert_eq!(other.open(b"baton/abc", &sealed), Err(SealError::UnknownKeyId("k1".to_string())));
        let same_id_other_secret = StoreKeys::single("k1", SECRET_2).unwrap();
        assert_eq!(same_id_other_secret.open(b"baton/abc", &sealed), Err(SealError::NotAuthentic));
    }

    #[test]
    fn a_tampered_value_does_not_open() {
        let host = TestHost::new(0);
        let sealed = keys().seal(&host, b"baton/abc", b"a bank token").unwrap();
        for index in 0..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[index] ^= 0x01;
            let opened = keys().open(b"baton/abc", &tampered);
            assert!(opened.is_err(), "byte {index} changed and it still opens");
        }
        assert_eq!(keys().open(b"baton/abc", &sealed[..sealed.len() - 1]), Err(SealError::NotAuthentic));
        for short in [&sealed[..0], &sealed[..2], &sealed[..20]] {
            assert_eq!(keys().open(b"baton/abc", short), Err(SealError::Malformed));
        }
    }

    #[test]
    fn a_value_moved_to_another_store_key_does_not_open() {
        let host = TestHost::new(0);
        let sealed = keys().seal(&host, b"baton/abc", b"v").unwrap();
        assert_eq!(keys().open(b"baton/abd", &sealed), Err(SealError::NotAuthentic));
        assert_eq!(keys().open(b"", &sealed), Err(SealError::NotAuthentic));
    }

    #[test]
    fn rotation_seals_with_the_new_key_and_opens_with_both() {
        let host = TestHost::new(0);
        let old = keys().seal(&host, b"n", b"old").unwrap();
        let mut rotated = keys();
        rotated.add("k2", SECRET_2).unwrap();
        assert_eq!(rotated.add("k2", SECRET_1), Err(KeyError::InvalidId), "ids are unique");
        assert!(rotated.set_current("k2") && !rotated.set_current("k3"));
        assert_eq!(rotated.current_id(), "k2");
        let new = rotated.seal(&host, b"n", b"new").unwrap();
        assert_eq!(key_id_of(&new), Ok("k2"));
        assert_eq!(rotated.open(b"n", &old).unwrap(), b"old");
        assert_eq!(rotated.open(b"n", &new).unwrap(), b"new");
        assert!(keys().open(b"n", &new).is_err(), "the old set does not know k2");
    }

    #[test]
    fn nonces_differ_per_seal() {
        let host = TestHost::new(0);
        let a = keys().seal(&host, b"n", b"same").unwrap();
        let b = keys().seal(&host, b"n", b"same").unwrap();
        assert_ne!(a[4..16], b[4..16], "nonce repeated");
        assert_ne!(a, b);
    }

    #[test]
    fn keys_are_checked() {
        assert_eq!(StoreKeys::single("k1", &SECRET_1[..31]).unwrap_err(), KeyError::ShortSecret(31));
        for id in ["", "k 1", "k/1", &"k".repeat(33)] {
            assert_eq!(StoreKeys::single(id, SECRET_1).unwrap_err(), KeyError::InvalidId, "{id:?}");
        }
        let debug = format!("{:?}", keys());
        assert!(debug.contains("k1") && !debug.contains("0123456789"), "{debug}");
    }

    #[test]
    fn names_are_keyed_hashes_that_reveal_nothing() {
        let keys = keys();
        let name = keys.name("token", &[b"alice", b"task-1"]);
        assert_eq!(name.len(), 64);
        assert!(name.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(name, keys.name("token", &[b"alice", b"task-1"]), "not stable");
        // Every input changes the name; parts are not just concatenated.
        assert_ne!(name, keys.name("mark", &[b"alice", b"task-1"]));
        assert_ne!(name, keys.name("token", &[b"alic", b"etask-1"]));
        assert_ne!(name, keys.name("token", &[b"alice", b"task-2"]));
        // Not a plain hash: another secret names differently.
        let other = StoreKeys::single("k1", SECRET_2).unwrap();
        assert_ne!(name, other.name("token", &[b"alice", b"task-1"]));
        assert_eq!(keys.name_under("k1", "token", &[b"alice", b"task-1"]), Some(name));
        assert_eq!(keys.name_under("k9", "token", &[b"alice"]), None);
    }

    #[test]
    fn a_name_is_recognized_under_any_configured_key_and_no_other() {
        let mut keys = keys();
        let name = keys.name("task", &[b"alice", b"n1"]);
        assert!(keys.names("task", &[b"alice", b"n1"], &name));
        assert!(keys.names("task", &[b"alice", b"n1"], &name[..32]));
        assert!(!keys.names("task", &[b"alice", b"n1"], &name[..31]), "too short to mean anything");
        assert!(!keys.names("task", &[b"bob", b"n1"], &name[..32]));
        assert!(!keys.names("task", &[b"alice", b"n2"], &name[..32]));
        assert!(!keys.names("mark", &[b"alice", b"n1"], &name[..32]));
        let mut wrong = name[..32].to_string().into_bytes();
        wrong[31] = if wrong[31] == b'0' { b'1' } else { b'0' };
        assert!(!keys.names("task", &[b"alice", b"n1"], std::str::from_utf8(&wrong).unwrap()));
        // After a rotation, the earlier key's names hold while it is
        // configured; another fleet's keys never name it.
        keys.add("k2", SECRET_2).unwrap();
        assert!(keys.set_current("k2"));
        assert_ne!(keys.name("task", &[b"alice", b"n1"]), name);
        assert!(keys.names("task", &[b"alice", b"n1"], &name[..32]));
        let other = StoreKeys::single("k1", SECRET_2).unwrap();
        assert!(!other.names("task", &[b"alice", b"n1"], &name[..32]));
    }
}
