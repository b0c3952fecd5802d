//! State shared by the HTTP handlers and the `MockIdp` handle.

use core::sync::atomic::{AtomicU64, Ordering};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use crate::config::MockIdpConfig;
use crate::faults::FaultTable;
use crate::keyring::KeyRing;
use crate::keys::{KeyAlg, KeyError, random_token};
use crate::oauth_error::OAuthError;
use crate::session::SessionStore;
use crate::token_endpoint::RecordedTokenRequest;

/// Everything one IdP instance knows.
#[derive(Debug)]
pub(crate) struct IdpState {
    pub config: MockIdpConfig,
    pub issuer: String,
    /// `http://127.0.0.1:{port}`, where the endpoints are served.
    pub base_url: String,
    pub keys: Mutex<KeyRing>,
    pub faults: Mutex<FaultTable>,
    pub grants: Mutex<GrantStore>,
    /// Login sessions (interactive login only).
    pub sessions: Mutex<SessionStore>,
    pub token_log: Mutex<Vec<RecordedTokenRequest>>,
}

/// Locks a mutex, recovering from poisoning: one panicking test thread
/// must not break the IdP for the others.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A unique id for `jti`: random, or a counter if the OS RNG fails
/// (a `jti` needs uniqueness, not secrecy).
pub(crate) fn fresh_jti() -> String {
    static FALLBACK: AtomicU64 = AtomicU64::new(0);
    random_token::<16>()
        .unwrap_or_else(|_| format!("jti-{}-{}", now_secs(), FALLBACK.fetch_add(1, Ordering::Relaxed)))
}

impl IdpState {
    /// Adds `iss`, `iat`, `nbf`, `exp` and `jti` to `claims` (keeping any
    /// already set) and signs them with the active key of the configured algorithm.
    pub(crate) fn sign_token(&self, mut claims: Map<String, Value>, typ: &str) -> Result<String, OAuthError> {
        let now = now_secs();
        let ttl = i64::try_from(self.config.access_token_ttl.as_secs()).unwrap_or(i64::MAX);
        claims.entry("iss").or_insert_with(|| json!(self.issuer));
        claims.entry("iat").or_insert_with(|| json!(now));
        claims.entry("nbf").or_insert_with(|| json!(now));
        claims.entry("exp").or_insert_with(|| json!(now.saturating_add(ttl)));
        claims.entry("jti").or_insert_with(|| json!(fresh_jti()));
        let alg = self.config.signing_alg;
        let key = lock(&self.keys)
            .active(alg)
            .ok_or_else(|| OAuthError::server_error(format!("no active {alg} key")))?;
        let header = json!({"alg": key.alg(), "kid": key.kid(), "typ": typ});
        Ok(key.sign_compact(&header, &Value::Object(claims)))
    }

    /// Seconds an issued access token lives.
    pub(crate) fn expires_in(&self) -> u64 {
        self.config.access_token_ttl.as_secs()
    }

    /// The configured user's extra claims (empty for unknown users).
    pub(crate) fn user_claims(&self, sub: &str) -> Map<String, Value> {
        self.config.user(sub).map(|u| u.claims.clone()).unwrap_or_default()
    }

    /// Algorithms advertised in discovery.
    pub(crate) fn signing_algs(&self) -> Vec<&'static str> {
        let mut algs = lock(&self.keys).published_algs();
        let configured = self.config.signing_alg.as_str();
        if !algs.contains(&configured) {
            algs.push(configured);
        }
        algs
    }

    /// `iss`, `sub`, `aud`, `iat`, `nbf`, `exp` (now + `ttl_secs`, which may
    /// be negative for expired tokens) and a fresh `jti`.
    pub(crate) fn standard_claims(&self, sub: &str, aud: Value, ttl_secs: i64) -> Value {
        let now = now_secs();
        json!({
            "iss": self.issuer,
            "sub": sub,
            "aud": aud,
            "iat": now,
            "nbf": now,
            "exp": now.saturating_add(ttl_secs),
            "jti": fresh_jti(),
        })
    }

    /// Signs `claims` as given with the active `alg` key. The header is
    /// `{alg, kid, typ: "at+jwt"}` with `header_overrides` merged in; a
    /// `null` override removes the member.
    pub(crate) fn mint_with(
        &self,
        alg: &str,
        header_overrides: &Value,
        claims: &Value,
    ) -> Result<String, KeyError> {
        let alg: KeyAlg = alg.parse()?;
        let key = lock(&self.keys).active(alg).ok_or(KeyError::NoActiveKey(alg))?;
        let mut header = Map::new();
        header.insert("alg".into(), json!(key.alg()));
        header.insert("kid".into(), json!(key.kid()));
        header.insert("typ".into(), json!("at+jwt"));
        if let Value::Object(overrides) = header_overrides {
            for (name, value) in overrides {
                if value.is_null() {
                    header.remove(name);
                } else {
                    header.insert(name.clone(), value.clone());
                }
            }
        }
        Ok(key.sign_compact(&Value::Object(header), claims))
    }

    /// The algorithms that must have a key from the start.
    pub(crate) fn required_algs(config: &MockIdpConfig) -> Vec<KeyAlg> {
        let mut algs = vec![KeyAlg::Es256, KeyAlg::Rs256];
        if !algs.contains(&config.signing_alg) {
            algs.push(config.signing_alg);
        }
        algs
    }
}

/// An authorization code issued by `/authorize`, redeemable once.
#[derive(Debug, Clone)]
pub(crate) struct AuthCode {
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub sub: String,
    pub scope: Option<String>,
    /// RFC 8707 `resource` values of the authorization request.
    pub resources: Vec<String>,
    pub acr: Option<String>,
    pub nonce: Option<String>,
    pub auth_time: i64,
    pub expires_at: i64,
}

/// What a refresh token stands for: the original authorization.
#[derive(Debug, Clone)]
pub(crate) struct RefreshGrant {
    pub client_id: String,
    pub sub: String,
    pub scope: Option<String>,
    /// RFC 8707 resources of the original authorization.
    pub resources: Vec<String>,
    pub acr: Option<String>,
    pub auth_time: i64,
    /// The code the chain started from, so a replayed code can revoke it.
    pub code: String,
}

/// Outstanding codes and refresh tokens.
#[derive(Debug, Default)]
pub(crate) struct GrantStore {
    pub codes: HashMap<String, AuthCode>,
    /// Codes already redeemed, kept to detect replays.
    pub redeemed_codes: HashMap<String, i64>,
    pub refresh_tokens: HashMap<String, RefreshGrant>,
}

impl GrantStore {
    /// Revokes every refresh token descending from `code` (RFC 6749 §4.1.2).
    pub(crate) fn revoke_code_family(&mut self, code: &str) {
        self.refresh_tokens.retain(|_, grant| grant.code != code);
    }
}
