//! The bearer-token verification pipeline every filter uses: cache, strict
//! parsing, issuer selection, algorithm and `typ` checks, key lookup (with a
//! refetch on an unknown `kid`), signature, claims, and caching the result.
//!
//! A token seen before is not verified again: verified tokens are cached in
//! the worker (found by the token itself, no hashing) and in shared slots
//! every worker reads (keyed by its SHA-256, computed on a worker miss).
//! Expiry is checked on every use, and a cached token whose key left the key
//! set is verified again.

use std::rc::Rc;

use baton_token::claims::Claims;
use baton_token::jwt::UnverifiedJwt;
use baton_token::verify::SignatureError;
use baton_token::{TokenHash, base64url, json};

use crate::cache::{SharedSlots, TokenMemo};
use crate::config::Provider;
use crate::host::Host;
use crate::keys::{JwksMetrics, KeyStore};

/// Upper bound of the per-worker cache, whatever the shared size.
pub const MAX_LOCAL_ENTRIES: usize = 4096;

/// A token that passed signature and claim validation.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    /// Index of the provider that issued it.
    pub provider: usize,
    /// The key that verified it.
    pub kid: Option<String>,
    /// Its claims.
    pub claims: Claims,
    /// The payload segment as received (forwarded as is when configured).
    pub payload_segment: String,
    /// The token's SHA-256, for audit lines and shared keys.
    pub hash: TokenHash,
}

/// Where a verified token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// This worker's memory.
    HitLocal,
    /// Shared data.
    HitShared,
    /// Verified now.
    Miss,
}

impl CacheOutcome {
    /// Label for audit lines.
    pub fn label(self) -> &'static str {
        match self {
            CacheOutcome::HitLocal => "hit_local",
            CacheOutcome::HitShared => "hit_shared",
            CacheOutcome::Miss => "miss",
        }
    }
}

/// Whether verification may ask to wait for keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyWait {
    /// First pass: waiting for a fetch is allowed.
    Allowed,
    /// Second pass after a fetch: decide with what is there.
    Exhausted,
}

/// Why a token was not accepted (yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyError {
    /// The token is not acceptable: 401 `invalid_token`.
    Invalid {
        /// A short, stable label for metrics and audit lines.
        reason: &'static str,
        /// What to tell the client.
        description: String,
    },
    /// Wait until this provider's keys have been (re)fetched, then retry
    /// with [`KeyWait::Exhausted`].
    AwaitKeys(usize),
    /// This provider's keys cannot be obtained: 503.
    KeysUnavailable(usize),
}

impl VerifyError {
    fn invalid(reason: &'static str, description: impl ToString) -> Self {
        VerifyError::Invalid { reason, description: description.to_string() }
    }
}

/// Providers, their keys, and the verified-token cache of one VM.
#[derive(Debug)]
pub struct TokenVerifier {
    providers: Rc<Vec<Provider>>,
    keys: KeyStore,
    local: TokenMemo<Rc<VerifiedToken>>,
    shared: SharedSlots,
    max_token_bytes: usize,
}

impl TokenVerifier {
    /// A verifier for `providers`. `prefix` names the filter and
    /// configuration in shared data (e.g. `baton.ce.<fingerprint>.`);
    /// `cache_slots` is the shared cache size (0 disables caching).
    pub fn new(
        providers: Rc<Vec<Provider>>,
        prefix: &str,
        cache_slots: u32,
        max_token_bytes: usize,
        metrics: JwksMetrics,
    ) -> Self {
        let keys = KeyStore::new(&providers, prefix, metrics);
        let local_capacity = (cache_slots as usize).min(MAX_LOCAL_ENTRIES);
        Self {
            providers,
            keys,
            local: TokenMemo::new(local_capacity),
            shared: SharedSlots::new(cache_slots, format!("{prefix}vt.")),
            max_token_bytes,
        }
    }

    /// The providers.
    pub fn providers(&self) -> &[Provider] {
        &self.providers
    }

    /// The key store (the root context drives its fetches).
    pub fn keys(&mut self) -> &mut KeyStore {
        &mut self.keys
    }

    /// Verifies `token` against the providers `allowed` (all when empty).
    pub fn verify(
        &mut self,
        host: &dyn Host,
        token: &str,
        allowed: &[usize],
        wait: KeyWait,
    ) -> Result<(Rc<VerifiedToken>, CacheOutcome), VerifyError> {
        let (verified, outcome) = match self.cached_here(token) {
            Some(hit) => (hit, CacheOutcome::HitLocal),
            None => {
                let hash = TokenHash::of(token.as_bytes());
                match self.cached_shared(token, &hash, host) {
                    Some(hit) => (hit, CacheOutcome::HitShared),
                    None => (self.verify_fully(host, token, &hash, allowed, wait)?, CacheOutcome::Miss),
                }
            }
        };
        // A token verified for one route's issuer must still be from an
        // issuer this caller accepts.
        if !allowed.is_empty() && !allowed.contains(&verified.provider) {
            return Err(VerifyError::invalid(
                "issuer_not_accepted",
                "token issuer is not accepted for this route",
            ));
        }
        let Some(provider) = self.providers.get(verified.provider) else {
            self.local.remove(0, token);
            return Err(VerifyError::invalid("issuer_unknown", "token issuer is not accepted"));
        };
        // Expiry is re-checked on every use, cached or not.
        if let Err(error) = provider.policy.check_times(&verified.claims, host.now_unix_secs()) {
            self.local.remove(0, token);
            return Err(VerifyError::invalid(error.reason(), error));
        }
        Ok((verified, outcome))
    }

    /// This worker's entry for `token`, if its key is still in the set.
    fn cached_here(&mut self, token: &str) -> Option<Rc<VerifiedToken>> {
        let verified = self.local.get(0, token)?;
        if self.key_retired(&verified) {
            self.local.remove(0, token);
            return None;
        }
        Some(verified)
    }

    /// The shared entry for `token` (whose hash is `hash`), if its key is
    /// still in the set; remembered in this worker from then on.
    fn cached_shared(&mut self, token: &str, hash: &TokenHash, host: &dyn Host) -> Option<Rc<VerifiedToken>> {
        let verified = Rc::new(decode_entry(&self.shared.get(hash, host)?, *hash)?);
        if self.key_retired(&verified) {
            return None;
        }
        self.local.insert(0, token, Rc::clone(&verified));
        Some(verified)
    }

    /// A key retired from the provider's set takes its tokens with it.
    fn key_retired(&self, verified: &VerifiedToken) -> bool {
        match (&verified.kid, self.keys.current(verified.provider)) {
            (Some(kid), Some(keys)) => !keys.has_kid(kid),
            _ => false,
        }
    }

    fn verify_fully(
        &mut self,
        host: &dyn Host,
        token: &str,
        hash: &TokenHash,
        allowed: &[usize],
        wait: KeyWait,
    ) -> Result<Rc<VerifiedToken>, VerifyError> {
        let providers = Rc::clone(&self.providers);
        let jwt = UnverifiedJwt::parse(token, self.max_token_bytes)
            .map_err(|error| VerifyError::invalid(error.reason(), &error))?;
        // The unverified issuer only selects the key set; verification and
        // the issuer check below decide whether it is true.
        let issuer = jwt.claims().iss.as_deref().unwrap_or("");
        let provider_id = providers
            .iter()
            .enumerate()
            .position(|(id, p)| p.policy.issuer == issuer && (allowed.is_empty() || allowed.contains(&id)))
            .ok_or_else(|| VerifyError::invalid("issuer_unknown", "token issuer is not accepted"))?;
        let provider = &providers[provider_id];
        provider
            .policy
            .check_header(jwt.header())
            .map_err(|error| VerifyError::invalid(error.reason(), &error))?;

        let kid = jwt.header().kid.as_deref();
        let keys = match self.keys.current(provider_id) {
            Some(keys) if kid.is_none_or(|kid| keys.has_kid(kid)) => keys,
            current => {
                // Missing keys, or a kid we do not know: perhaps another
                // worker already fetched newer keys; perhaps we should.
                if self.keys.sync(provider_id, host) {
                    return self.verify_fully(host, token, hash, allowed, wait);
                }
                let now = host.now_unix_secs();
                return Err(match current {
                    None if wait == KeyWait::Allowed && !self.keys.backing_off(provider_id, host, now) => {
                        VerifyError::AwaitKeys(provider_id)
                    }
                    None => VerifyError::KeysUnavailable(provider_id),
                    Some(_) if wait == KeyWait::Allowed && self.keys.refetch_allowed(provider_id, host) => {
                        self.keys.want_fetch(provider_id);
                        VerifyError::AwaitKeys(provider_id)
                    }
                    // The IdP may have rotated to this key while we cannot
                    // reach it: that is our outage, not the client's bad token.
                    Some(_) if self.keys.backing_off(provider_id, host, now) => {
                        VerifyError::KeysUnavailable(provider_id)
                    }
                    Some(_) => {
                        VerifyError::invalid(SignatureError::UnknownKey.reason(), SignatureError::UnknownKey)
                    }
                });
            }
        };
        keys.verify(kid, jwt.header().alg, jwt.signing_input().as_bytes(), jwt.signature())
            .map_err(|error| VerifyError::invalid(error.reason(), error))?;
        provider
            .policy
            .check_claims(jwt.claims(), host.now_unix_secs())
            .map_err(|error| VerifyError::invalid(error.reason(), &error))?;

        let verified = Rc::new(VerifiedToken {
            provider: provider_id,
            kid: kid.map(String::from),
            payload_segment: jwt.payload_segment().to_string(),
            claims: jwt.into_claims(),
            hash: *hash,
        });
        self.shared.put(hash, &encode_entry(&verified), host);
        self.local.insert(0, token, Rc::clone(&verified));
        Ok(verified)
    }
}

/// Entry layout after the slot's hash: version byte, provider (u16 BE), kid
/// length (u16 BE), kid, then the payload segment. Claims are re-parsed from
/// the payload on a shared hit, which is still far cheaper than a signature.
const ENTRY_VERSION: u8 = 1;

fn encode_entry(token: &VerifiedToken) -> Vec<u8> {
    let kid = token.kid.as_deref().unwrap_or("");
    let kid = if kid.len() <= usize::from(u16::MAX) { kid } else { "" };
    let mut entry = Vec::with_capacity(5 + kid.len() + token.payload_segment.len());
    entry.push(ENTRY_VERSION);
    entry.extend_from_slice(&u16::try_from(token.provider).unwrap_or(u16::MAX).to_be_bytes());
    entry.extend_from_slice(&u16::try_from(kid.len()).unwrap_or(0).to_be_bytes());
    entry.extend_from_slice(kid.as_bytes());
    entry.extend_from_slice(token.payload_segment.as_bytes());
    entry
}

fn decode_entry(entry: &[u8], hash: TokenHash) -> Option<VerifiedToken> {
    let (&version, rest) = entry.split_first()?;
    if version != ENTRY_VERSION || rest.len() < 4 {
        return None;
    }
    let provider = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
    let kid_len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
    let rest = &rest[4..];
    if rest.len() < kid_len {
        return None;
    }
    let (kid, payload) = rest.split_at(kid_len);
    let kid = std::str::from_utf8(kid).ok()?;
    let payload_segment = std::str::from_utf8(payload).ok()?;
    let claims =
        Claims::from_object(json::parse_object(&base64url::decode(payload_segment).ok()?).ok()?).ok()?;
    Some(VerifiedToken {
        provider,
        kid: (!kid.is_empty()).then(|| kid.to_string()),
        claims,
        payload_segment: payload_segment.to_string(),
        hash,
    })
}

#[cfg(test)]
#[path = "verifier_tests.rs"]
mod tests;
