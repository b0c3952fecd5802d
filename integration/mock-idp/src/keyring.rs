//! The IdP's key set: published keys (the JWKS) and the active key per algorithm.

use core::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::{Value, json};

use crate::keys::{KeyAlg, KeyError, SigningKey, random_bytes};

/// Published keys plus the key each algorithm currently signs with.
#[derive(Debug)]
pub(crate) struct KeyRing {
    published: Vec<Arc<SigningKey>>,
    active: Vec<Arc<SigningKey>>,
}

static KID_COUNTER: AtomicU64 = AtomicU64::new(1);

/// A fresh kid such as `es256-3-9f2c01ab`; the random part keeps kids of
/// different IdPs in one process apart.
pub(crate) fn new_kid(alg: KeyAlg) -> Result<String, KeyError> {
    let serial = KID_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tag: String = random_bytes::<4>()?.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("{}-{serial}-{tag}", alg.as_str().to_ascii_lowercase()))
}

impl KeyRing {
    /// Publishes `provided` keys (the first per algorithm becomes active) and
    /// generates keys for the algorithms in `required` that are still missing.
    pub(crate) fn new(provided: &[Arc<SigningKey>], required: &[KeyAlg]) -> Result<KeyRing, KeyError> {
        let mut ring = KeyRing { published: Vec::new(), active: Vec::new() };
        for key in provided {
            ring.published.push(Arc::clone(key));
            if ring.active(key.key_alg()).is_none() {
                ring.active.push(Arc::clone(key));
            }
        }
        for alg in required {
            if ring.active(*alg).is_none() {
                ring.rotate(*alg)?;
            }
        }
        Ok(ring)
    }

    /// The key `alg` currently signs with.
    pub(crate) fn active(&self, alg: KeyAlg) -> Option<Arc<SigningKey>> {
        self.active.iter().find(|k| k.key_alg() == alg).cloned()
    }

    /// Generates, publishes and activates a new `alg` key; returns its kid.
    pub(crate) fn rotate(&mut self, alg: KeyAlg) -> Result<String, KeyError> {
        let key = Arc::new(SigningKey::generate(alg, &new_kid(alg)?)?);
        let kid = key.kid().to_string();
        self.published.push(Arc::clone(&key));
        self.active.retain(|k| k.key_alg() != alg);
        self.active.push(key);
        Ok(kid)
    }

    /// Removes `kid` from the JWKS. An active key keeps signing, which
    /// yields tokens whose kid nobody publishes; rotate to replace it.
    pub(crate) fn retire(&mut self, kid: &str) -> bool {
        let before = self.published.len();
        self.published.retain(|k| k.kid() != kid);
        self.published.len() != before
    }

    /// The published key with `kid`.
    pub(crate) fn published(&self, kid: &str) -> Option<Arc<SigningKey>> {
        self.published.iter().find(|k| k.kid() == kid).cloned()
    }

    /// Published keys of `alg`, newest first.
    pub(crate) fn published_for(&self, alg: KeyAlg) -> Vec<Arc<SigningKey>> {
        self.published.iter().rev().filter(|k| k.key_alg() == alg).cloned().collect()
    }

    /// The JWKS document.
    pub(crate) fn jwks(&self) -> Value {
        json!({"keys": self.published.iter().map(|k| k.public_jwk()).collect::<Vec<_>>()})
    }

    /// Algorithms with at least one published key.
    pub(crate) fn published_algs(&self) -> Vec<&'static str> {
        KeyAlg::ALL
            .into_iter()
            .filter(|alg| self.published.iter().any(|k| k.key_alg() == *alg))
            .map(KeyAlg::as_str)
            .collect()
    }
}
