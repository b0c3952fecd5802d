//! Issued tokens: how long one may be used, and the cache that keeps them
//! for every worker. Shared entries are keyed by a hash of the exchange
//! inputs, never by a token; in worker memory an exchanged token is also
//! found by its target and subject token, so a repeated request costs no
//! hashing at all.

use std::rc::Rc;

use baton_filter_kit::cache::{LocalCache, SharedSlots, TokenMemo};
use baton_filter_kit::host::Host;
use baton_filter_kit::verifier::{CacheOutcome, MAX_LOCAL_ENTRIES};
use baton_token::TokenHash;
use baton_token::jwt::UnverifiedJwt;
use baton_token::oauth::TokenResponse;
use baton_token::secret::Secret;

/// A token the IdP issued, ready to inject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The token.
    pub token: Secret,
    /// `Bearer` or `N_A`.
    pub token_type: String,
    /// Last second it may be used (expiry minus the safety margin).
    pub use_until: u64,
    /// When a client-credentials token should be renewed in the background.
    pub refresh_at: u64,
    /// What audit lines say of it, worked out once rather than per request.
    pub audit: IssuedAudit,
}

/// An issued token as audit lines name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedAudit {
    /// Short hash of the token.
    pub short_hash: String,
    /// The `act` chain of a JWT (`a>b`), if any.
    pub act: Option<String>,
}

impl IssuedToken {
    /// A token ready to inject, with what audit lines say of it.
    pub fn new(token: Secret, token_type: String, use_until: u64, refresh_at: u64) -> Self {
        let act = UnverifiedJwt::parse(token.expose(), 64 * 1024)
            .ok()
            .and_then(|jwt| jwt.claims().act.as_ref().map(|act| act.chain().join(">")));
        let audit = IssuedAudit { short_hash: TokenHash::of(token.expose().as_bytes()).short(), act };
        Self { token, token_type, use_until, refresh_at, audit }
    }

    /// Whether it may still be injected at `now`.
    pub fn usable(&self, now: u64) -> bool {
        now < self.use_until
    }
}

/// Lifetime rules for a response received at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LifetimeRules {
    /// Seconds before expiry a token stops being used.
    pub margin_secs: u64,
    /// Lifetime when neither `expires_in` nor the token's `exp` says.
    pub default_secs: u64,
    /// The subject token's `exp`: an issued token is never used beyond it.
    pub not_after: Option<u64>,
}

/// How long an issued token may be used: the smallest of `expires_in`, the
/// issued token's own `exp` (when it is a JWT) and the subject token's
/// `exp`, minus the safety margin. `None` when that leaves nothing: the
/// token then serves the requests that waited for it and is not cached.
pub fn issued_token(response: TokenResponse, rules: LifetimeRules, now: u64) -> (IssuedToken, bool) {
    let own_exp = UnverifiedJwt::parse(response.access_token.expose(), 64 * 1024)
        .ok()
        .and_then(|jwt| jwt.claims().exp)
        .and_then(|exp| u64::try_from(exp).ok());
    let lifetime_end = match (response.expires_in, own_exp) {
        (Some(expires_in), Some(exp)) => (now + expires_in).min(exp),
        (Some(expires_in), None) => now + expires_in,
        (None, Some(exp)) => exp,
        (None, None) => now + rules.default_secs,
    };
    let expires_at = rules.not_after.map_or(lifetime_end, |not_after| lifetime_end.min(not_after));
    let use_until = expires_at.saturating_sub(rules.margin_secs);
    let cacheable = use_until > now;
    // Renew in the background once four fifths of the usable time passed.
    let refresh_at = now + use_until.saturating_sub(now) * 4 / 5;
    let use_until = if cacheable { use_until } else { expires_at };
    (IssuedToken::new(response.access_token, response.token_type, use_until, refresh_at), cacheable)
}

/// Issued tokens in this worker and in shared slots every worker reads.
#[derive(Debug)]
pub struct IssuedTokenCache {
    local: LocalCache<TokenHash, Rc<IssuedToken>>,
    by_subject: TokenMemo<Rc<IssuedToken>>,
    shared: SharedSlots,
}

impl IssuedTokenCache {
    /// A cache of `slots` shared entries under `prefix`.
    pub fn new(slots: u32, prefix: &str) -> Self {
        let local_capacity = (slots as usize).min(MAX_LOCAL_ENTRIES);
        Self {
            local: LocalCache::new(local_capacity),
            by_subject: TokenMemo::new(local_capacity),
            shared: SharedSlots::new(slots, format!("{prefix}issued.")),
        }
    }

    /// The usable token this worker exchanged `subject` for toward `target`.
    pub fn exchanged(&mut self, target: u32, subject: &str, now: u64) -> Option<Rc<IssuedToken>> {
        let token = self.by_subject.get(target, subject)?;
        if token.usable(now) {
            return Some(token);
        }
        self.by_subject.remove(target, subject);
        None
    }

    /// Remembers what `subject` was exchanged for toward `target`.
    pub fn remember_exchange(&mut self, target: u32, subject: &str, token: Rc<IssuedToken>) {
        self.by_subject.insert(target, subject, token);
    }

    /// A usable token for `key`.
    pub fn get(&mut self, key: &TokenHash, host: &dyn Host) -> Option<(Rc<IssuedToken>, CacheOutcome)> {
        let now = host.now_unix_secs();
        if let Some(token) = self.local.get(key) {
            if token.usable(now) {
                return Some((token, CacheOutcome::HitLocal));
            }
            self.local.remove(key);
        }
        let token = Rc::new(decode(&self.shared.get(key, host)?)?);
        if !token.usable(now) {
            return None;
        }
        self.local.insert(*key, Rc::clone(&token));
        Some((token, CacheOutcome::HitShared))
    }

    /// Stores a token for every worker.
    pub fn put(&mut self, key: TokenHash, token: Rc<IssuedToken>, host: &dyn Host) {
        self.shared.put(&key, &encode(&token), host);
        self.local.insert(key, token);
    }
}

/// Entry: version, use_until (u64 BE), refresh_at (u64 BE), token type
/// length (u8), token type, token.
const ENTRY_VERSION: u8 = 1;

/// An entry's bytes (shared data; sealed in the fleet's store).
pub(crate) fn encode(token: &IssuedToken) -> Vec<u8> {
    let token_type = token.token_type.as_bytes();
    let token_type = &token_type[..token_type.len().min(usize::from(u8::MAX))];
    let mut entry = Vec::with_capacity(18 + token_type.len() + token.token.expose().len());
    entry.push(ENTRY_VERSION);
    entry.extend_from_slice(&token.use_until.to_be_bytes());
    entry.extend_from_slice(&token.refresh_at.to_be_bytes());
    entry.push(u8::try_from(token_type.len()).unwrap_or(0));
    entry.extend_from_slice(token_type);
    entry.extend_from_slice(token.token.expose().as_bytes());
    entry
}

/// An entry read back; `None` when it is not one.
pub(crate) fn decode(entry: &[u8]) -> Option<IssuedToken> {
    let (&version, rest) = entry.split_first()?;
    if version != ENTRY_VERSION || rest.len() < 17 {
        return None;
    }
    let number = |bytes: &[u8]| {
        let mut buf = [0u8; 8];
        buf.copy_from_slice(bytes);
        u64::from_be_bytes(buf)
    };
    let use_until = number(&rest[..8]);
    let refresh_at = number(&rest[8..16]);
    let type_len = usize::from(rest[16]);
    let rest = &rest[17..];
    if rest.len() < type_len {
        return None;
    }
    let (token_type, token) = rest.split_at(type_len);
    Some(IssuedToken::new(
        Secret::new(std::str::from_utf8(token).ok()?),
        std::str::from_utf8(token_type).ok()?.to_string(),
        use_until,
        refresh_at,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_filter_kit::test_host::TestHost;
    use baton_token::base64url::encode as b64;

    const NOW: u64 = 1_800_000_000;

    fn response(token: &str, expires_in: Option<u64>) -> TokenResponse {
        TokenResponse {
            access_token: Secret::new(token),
            token_type: "Bearer".into(),
            issued_token_type: None,
            expires_in,
            scope: None,
            id_token: None,
        }
    }

    fn jwt_with_exp(exp: u64) -> String {
        format!("{}.{}.c2ln", b64(br#"{"alg":"ES256"}"#), b64(format!(r#"{{"exp":{exp}}}"#).as_bytes()))
    }

    const RULES: LifetimeRules = LifetimeRules { margin_secs: 30, default_secs: 60, not_after: None };

    #[test]
    fn lifetime_is_the_smallest_bound_minus_the_margin() {
        let (token, cacheable) = issued_token(response("opaque", Some(300)), RULES, NOW);
        assert!(cacheable);
        assert_eq!(token.use_until, NOW + 270);
        assert_eq!(token.refresh_at, NOW + 216);
        let (token, _) = issued_token(response(&jwt_with_exp(NOW + 100), Some(300)), RULES, NOW);
        assert_eq!(token.use_until, NOW + 70, "the token's own exp is earlier");
        let subject_bound = LifetimeRules { not_after: Some(NOW + 90), ..RULES };
        let (token, _) = issued_token(response("opaque", Some(300)), subject_bound, NOW);
        assert_eq!(token.use_until, NOW + 60, "never beyond the subject token's exp");
        let (token, _) = issued_token(response("opaque", None), RULES, NOW);
        assert_eq!(token.use_until, NOW + 30, "default lifetime when nothing says");
    }

    #[test]
    fn a_token_shorter_than_the_margin_is_not_cached() {
        let (token, cacheable) = issued_token(response("opaque", Some(20)), RULES, NOW);
        assert!(!cacheable);
        assert!(token.usable(NOW), "it still serves the requests that waited");
        let (_, cacheable) = issued_token(response("opaque", Some(0)), RULES, NOW);
        assert!(!cacheable);
    }

    #[test]
    fn cached_tokens_are_shared_and_expire() {
        let host = TestHost::new(NOW);
        let key = TokenHash::of(b"exchange inputs");
        let mut worker_a = IssuedTokenCache::new(10, "t.");
        let mut worker_b = IssuedTokenCache::new(10, "t.");
        let (token, _) = issued_token(response("issued.jwt.sig", Some(300)), RULES, NOW);
        worker_a.put(key, Rc::new(token.clone()), &host);
        assert_eq!(worker_a.get(&key, &host).unwrap().1, CacheOutcome::HitLocal);
        let (shared, outcome) = worker_b.get(&key, &host).unwrap();
        assert_eq!((shared.as_ref(), outcome), (&token, CacheOutcome::HitShared));
        host.set_now(NOW + 270);
        assert!(worker_a.get(&key, &host).is_none());
        assert!(worker_b.get(&key, &host).is_none());
    }

    #[test]
    fn exchanged_tokens_are_found_by_target_and_subject_until_unusable() {
        let mut cache = IssuedTokenCache::new(10, "t.");
        let (token, _) = issued_token(response("issued.jwt.sig", Some(300)), RULES, NOW);
        cache.remember_exchange(2, "subject.jwt.sig", Rc::new(token));
        assert!(cache.exchanged(2, "subject.jwt.sig", NOW).is_some());
        assert!(cache.exchanged(3, "subject.jwt.sig", NOW).is_none(), "another target");
        assert!(cache.exchanged(2, "other.jwt.sig", NOW).is_none(), "another subject");
        assert!(cache.exchanged(2, "subject.jwt.sig", NOW + 270).is_none(), "past its use");
        assert!(cache.exchanged(2, "subject.jwt.sig", NOW).is_none(), "forgotten once unusable");
    }

    #[test]
    fn audit_facts_are_worked_out_once() {
        let act = format!(
            "{}.{}.c2ln",
            b64(br#"{"alg":"ES256"}"#),
            b64(br#"{"act":{"sub":"broker","act":{"sub":"gateway"}}}"#)
        );
        let token = IssuedToken::new(Secret::new(act.clone()), "Bearer".into(), 7, 5);
        assert_eq!(token.audit.act.as_deref(), Some("broker>gateway"));
        assert_eq!(token.audit.short_hash, TokenHash::of(act.as_bytes()).short());
        assert_eq!(IssuedToken::new(Secret::new("opaque"), "Bearer".into(), 7, 5).audit.act, None);
    }

    #[test]
    fn entries_round_trip_and_refuse_corruption() {
        let token = IssuedToken::new(Secret::new("t0k3n"), "N_A".into(), 7, 5);
        let entry = encode(&token);
        assert_eq!(decode(&entry), Some(token));
        assert_eq!(decode(&entry[..10]), None);
        let mut wrong_version = entry.clone();
        wrong_version[0] = 2;
        assert_eq!(decode(&wrong_version), None);
    }
}
