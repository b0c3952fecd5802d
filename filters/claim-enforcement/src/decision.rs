//! The per-request decision: which route, which token, is it valid, does it
//! satisfy the route, and what the upstream or the client gets.
//!
//! Plain Rust over the [`Host`] trait, so every branch runs in native tests.
//! The proxy glue (`http.rs`, `root.rs`) only gathers the request and applies
//! the [`Verdict`].

use std::rc::Rc;

use baton_token::challenge::error_body;
use baton_token::jwt::{JwtError, UnverifiedJwt};
use baton_token::rules::AccessDecision;
use baton_token::validation::ValidationError;
use baton_token::verify::SignatureError;
use baton_token::{AuthChallenge, BearerError, TokenHash};
use serde_json::Value;

use crate::audit::AuditLine;
use crate::cache::{CacheOutcome, TokenCache, VerifiedToken};
use crate::config::FilterConfig;
use crate::host::{Host, LogLevel};
use crate::keys::KeyStore;
use crate::metrics::Metric;
use crate::routes::{self, RouteAction};

/// The credential header(s) of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// No token header.
    Absent,
    /// One token header, its raw value.
    One(Vec<u8>),
    /// The token header appears more than once: ambiguous, refused.
    Several,
}

/// What the decision needs of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `:method`.
    pub method: String,
    /// `:path`, query included.
    pub path: String,
    /// `:authority`.
    pub authority: String,
    /// The token header.
    pub credential: Credential,
}

/// Let the request through, with these changes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Forward {
    /// Headers to set (identity headers; incoming copies are already gone).
    pub set_headers: Vec<(String, String)>,
    /// Remove the token header before forwarding.
    pub remove_token: bool,
}

/// Answer the client directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// HTTP status.
    pub status: u16,
    /// Response headers (`www-authenticate`, `content-type`, ...).
    pub headers: Vec<(&'static str, String)>,
    /// JSON body.
    pub body: String,
}

/// The outcome for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Forward upstream.
    Forward(Forward),
    /// Local reply.
    Reject(Rejection),
    /// Hold the request until this provider's keys have been (re)fetched,
    /// then decide again.
    AwaitKeys {
        /// Provider index.
        provider: usize,
    },
}

/// Whether the decision may still ask to wait for keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyWait {
    /// First pass: waiting for a fetch is allowed.
    Allowed,
    /// Second pass after a fetch: decide with what is there.
    Exhausted,
}

enum Failure {
    /// Answer now; `reason` is the audit label.
    Reject { rejection: Rejection, reason: String },
    /// Wait for this provider's keys.
    Await(usize),
}

/// The VM-wide state a decision reads and updates.
#[derive(Debug)]
pub struct Engine {
    config: Rc<FilterConfig>,
    /// Keys per provider.
    pub keys: KeyStore,
    cache: TokenCache,
}

impl Engine {
    /// Builds the state for a configuration.
    pub fn new(config: Rc<FilterConfig>) -> Self {
        let keys = KeyStore::new(&config);
        let cache = TokenCache::new(config.cache_entries, &config.fingerprint);
        Self { config, keys, cache }
    }

    /// The configuration.
    pub fn config(&self) -> &FilterConfig {
        &self.config
    }

    /// The configuration, shared.
    pub fn shared_config(&self) -> Rc<FilterConfig> {
        Rc::clone(&self.config)
    }

    /// Decides what happens to `request`.
    pub fn decide(&mut self, host: &dyn Host, request: &Request, wait: KeyWait) -> Verdict {
        let config = Rc::clone(&self.config);
        let mut audit = AuditLine::new(config.audit_log);
        let route = routes::find(&config.routes, &request.method, &request.path, &request.authority);
        let (providers, requirement) = match route {
            None if config.allow_unmatched => {
                audit.route("-").allow("unmatched_allowed");
                return self.pass(host, audit);
            }
            None => {
                audit.route("-");
                let body = error_body("access_denied", "no route policy allows this request");
                return self.reject(host, audit, Metric::DeniedNoRoute, "no_route", plain(403, body));
            }
            Some(route) => {
                audit.route(&route.name);
                match &route.action {
                    RouteAction::Allow => {
                        audit.allow("public_route");
                        return self.pass(host, audit);
                    }
                    RouteAction::RequireToken { providers, requirement } => (providers, requirement),
                }
            }
        };

        let token = match extract_token(&request.credential, &config.token_source.prefix) {
            Ok(token) => token,
            Err(TokenProblem::Missing) => {
                let challenge = self.challenge(AuthChallenge::bearer());
                let body = error_body("unauthorized", "a bearer token is required");
                return self.reject(
                    host,
                    audit,
                    Metric::DeniedMissingToken,
                    "missing_token",
                    challenged(challenge, body),
                );
            }
            Err(TokenProblem::Malformed(reason)) => {
                let challenge = self.challenge(AuthChallenge::error(BearerError::InvalidRequest, reason));
                let body = error_body("invalid_request", reason);
                return self.reject(
                    host,
                    audit,
                    Metric::DeniedInvalidRequest,
                    "invalid_request",
                    challenged(challenge, body),
                );
            }
        };
        let hash = TokenHash::of(token.as_bytes());
        audit.token(&hash);

        let (verified, outcome) = match self.cached(&hash, host) {
            Some(hit) => hit,
            None => match self.verify(host, token, hash, providers, wait) {
                Ok(verified) => (verified, CacheOutcome::Miss),
                Err(Failure::Await(provider)) => return Verdict::AwaitKeys { provider },
                Err(Failure::Reject { rejection, reason }) => {
                    audit.deny(rejection.status, &reason);
                    audit.emit(host);
                    return Verdict::Reject(rejection);
                }
            },
        };
        host.count(match outcome {
            CacheOutcome::HitLocal => Metric::CacheHitLocal,
            CacheOutcome::HitShared => Metric::CacheHitShared,
            CacheOutcome::Miss => Metric::CacheMiss,
        });
        audit.cache(outcome);
        let Some(provider) = config.providers.get(verified.provider) else {
            self.cache.forget(&hash);
            return self.invalid_token(host, audit, "issuer_unknown", "token issuer is not accepted");
        };
        audit.identity(&provider.name, &verified.claims);

        // A token verified for another route's issuer must still be from an
        // issuer this route accepts.
        if !providers.is_empty() && !providers.contains(&verified.provider) {
            return self.invalid_token(
                host,
                audit,
                "issuer_not_accepted",
                "token issuer is not accepted for this route",
            );
        }
        // Expiry is re-checked on every use, cached or not.
        let now = host.now_unix_secs();
        if let Err(error) = provider.policy.check_times(&verified.claims, now) {
            self.cache.forget(&hash);
            return self.invalid_token(host, audit, error.reason(), &error.to_string());
        }

        match requirement.evaluate(&verified.claims, now) {
            AccessDecision::Granted => {
                audit.allow("granted");
                audit.emit(host);
                host.count(Metric::Allowed);
                Verdict::Forward(self.forward(host, &verified))
            }
            decision @ (AccessDecision::InsufficientScope | AccessDecision::ClaimMismatch { .. }) => {
                let description = decision.description();
                let challenge = self.challenge(
                    AuthChallenge::error(BearerError::InsufficientScope, description.clone())
                        .with_scope(requirement.scopes.named()),
                );
                let body = error_body("insufficient_scope", &description);
                self.reject(
                    host,
                    audit,
                    Metric::DeniedInsufficientScope,
                    decision.reason(),
                    challenged(challenge, body),
                )
            }
            decision @ AccessDecision::StepUpRequired => {
                let description = decision.description();
                let step_up = requirement.step_up.as_ref();
                let challenge = self.challenge(
                    AuthChallenge::error(BearerError::InsufficientUserAuthentication, description.clone())
                        .with_acr_values(
                            step_up.into_iter().flat_map(|s| s.acr_values.iter().map(String::as_str)),
                        )
                        .with_max_age(step_up.and_then(|s| s.max_age_seconds)),
                );
                let body = error_body("insufficient_user_authentication", &description);
                self.reject(host, audit, Metric::DeniedStepUp, decision.reason(), challenged(challenge, body))
            }
        }
    }

    fn cached(&mut self, hash: &TokenHash, host: &dyn Host) -> Option<(Rc<VerifiedToken>, CacheOutcome)> {
        let (token, outcome) = self.cache.get(hash, host)?;
        // A key retired from the provider's set takes its tokens with it.
        if let (Some(kid), Some(keys)) = (&token.kid, self.keys.current(token.provider))
            && !keys.has_kid(kid)
        {
            self.cache.forget(hash);
            return None;
        }
        Some((token, outcome))
    }

    fn verify(
        &mut self,
        host: &dyn Host,
        token: &str,
        hash: TokenHash,
        route_providers: &[usize],
        wait: KeyWait,
    ) -> Result<Rc<VerifiedToken>, Failure> {
        let config = Rc::clone(&self.config);
        let jwt = UnverifiedJwt::parse(token, config.max_token_bytes).map_err(|error: JwtError| {
            self.invalid_token_failure(host, error.reason(), &error.to_string())
        })?;
        // The unverified issuer only selects the key set; verification and
        // the issuer check below decide whether it is true.
        let issuer = jwt.claims().iss.as_deref().unwrap_or("");
        let provider_id = config
            .providers
            .iter()
            .enumerate()
            .position(|(id, p)| {
                p.policy.issuer == issuer && (route_providers.is_empty() || route_providers.contains(&id))
            })
            .ok_or_else(|| {
                self.invalid_token_failure(host, "issuer_unknown", "token issuer is not accepted")
            })?;
        let provider = &config.providers[provider_id];
        provider.policy.check_header(jwt.header()).map_err(|error: ValidationError| {
            self.invalid_token_failure(host, error.reason(), &error.to_string())
        })?;

        let kid = jwt.header().kid.as_deref();
        let keys = match self.keys.current(provider_id) {
            Some(keys) if kid.is_none_or(|kid| keys.has_kid(kid)) => keys,
            current => {
                // Missing keys, or a kid we do not know: perhaps another
                // worker already fetched newer keys; perhaps we should.
                if self.keys.sync(provider_id, host) {
                    return self.verify(host, token, hash, route_providers, wait);
                }
                let now = host.now_unix_secs();
                match current {
                    None if wait == KeyWait::Allowed && !self.keys.backing_off(provider_id, host, now) => {
                        return Err(Failure::Await(provider_id));
                    }
                    None => {
                        let reason = format!("keys_unavailable:{}", provider.name);
                        return Err(Failure::Reject { rejection: self.unavailable(host), reason });
                    }
                    Some(_) if wait == KeyWait::Allowed && self.keys.refetch_allowed(provider_id, host) => {
                        self.keys.want_fetch(provider_id);
                        return Err(Failure::Await(provider_id));
                    }
                    Some(_) => {
                        let error = SignatureError::UnknownKey;
                        return Err(self.invalid_token_failure(host, error.reason(), &error.to_string()));
                    }
                }
            }
        };
        keys.verify(kid, jwt.header().alg, jwt.signing_input().as_bytes(), jwt.signature())
            .map_err(|error| self.invalid_token_failure(host, error.reason(), &error.to_string()))?;
        provider
            .policy
            .check_claims(jwt.claims(), host.now_unix_secs())
            .map_err(|error| self.invalid_token_failure(host, error.reason(), &error.to_string()))?;

        let verified = Rc::new(VerifiedToken {
            provider: provider_id,
            kid: kid.map(String::from),
            payload_segment: jwt.payload_segment().to_string(),
            claims: jwt.into_claims(),
        });
        self.cache.put(hash, Rc::clone(&verified), host);
        Ok(verified)
    }

    fn forward(&self, host: &dyn Host, verified: &VerifiedToken) -> Forward {
        let mut set_headers = Vec::with_capacity(self.config.forward_claims.len() + 1);
        for claim in &self.config.forward_claims {
            let Some(value) = verified.claims.select(&claim.claim) else {
                continue;
            };
            match header_value(value) {
                Some(text) => set_headers.push((claim.header.clone(), text)),
                None => {
                    host.count(Metric::ClaimHeaderSkipped);
                    host.log(
                        LogLevel::Warn,
                        &format!("claim {} not forwarded: its value cannot be a header value", claim.claim),
                    );
                }
            }
        }
        if let Some(header) = &self.config.forward_payload_header {
            set_headers.push((header.clone(), verified.payload_segment.clone()));
        }
        Forward { set_headers, remove_token: !self.config.forward_token }
    }

    fn pass(&self, host: &dyn Host, audit: AuditLine) -> Verdict {
        audit.emit(host);
        host.count(Metric::AllowedPublic);
        Verdict::Forward(Forward::default())
    }

    fn reject(
        &self,
        host: &dyn Host,
        mut audit: AuditLine,
        metric: Metric,
        reason: &str,
        rejection: Rejection,
    ) -> Verdict {
        audit.deny(rejection.status, reason);
        audit.emit(host);
        host.count(metric);
        Verdict::Reject(rejection)
    }

    fn invalid_token(
        &self,
        host: &dyn Host,
        mut audit: AuditLine,
        reason: &str,
        description: &str,
    ) -> Verdict {
        let rejection = self.invalid_token_rejection(description);
        audit.deny(rejection.status, reason);
        audit.emit(host);
        host.count(Metric::DeniedInvalidToken);
        Verdict::Reject(rejection)
    }

    fn invalid_token_failure(&self, host: &dyn Host, reason: &str, description: &str) -> Failure {
        host.count(Metric::DeniedInvalidToken);
        Failure::Reject { rejection: self.invalid_token_rejection(description), reason: reason.to_string() }
    }

    fn invalid_token_rejection(&self, description: &str) -> Rejection {
        let challenge = self.challenge(AuthChallenge::error(BearerError::InvalidToken, description));
        challenged(challenge, error_body("invalid_token", description))
    }

    fn unavailable(&self, host: &dyn Host) -> Rejection {
        host.count(Metric::DeniedKeysUnavailable);
        let mut rejection = plain(
            503,
            error_body("temporarily_unavailable", "the token issuer's keys are not available; retry shortly"),
        );
        rejection.headers.push(("retry-after", "5".to_string()));
        rejection
    }

    fn challenge(&self, challenge: AuthChallenge) -> AuthChallenge {
        challenge
            .with_realm(self.config.realm.as_deref())
            .with_resource_metadata(self.config.resource_metadata.as_deref())
    }
}

fn challenged(challenge: AuthChallenge, body: String) -> Rejection {
    let mut rejection = plain(challenge.status(), body);
    rejection.headers.insert(0, ("www-authenticate", challenge.header_value()));
    rejection
}

fn plain(status: u16, body: String) -> Rejection {
    Rejection {
        status,
        headers: vec![
            ("content-type", "application/json".to_string()),
            ("cache-control", "no-store".to_string()),
        ],
        body,
    }
}

enum TokenProblem {
    Missing,
    Malformed(&'static str),
}

/// Reads the token from the credential header: `prefix` (the scheme,
/// case-insensitive per RFC 9110 §11.1) then the token (RFC 6750 §2.1
/// `b64token`). A header with another scheme counts as no token.
fn extract_token<'a>(credential: &'a Credential, prefix: &str) -> Result<&'a str, TokenProblem> {
    let raw = match credential {
        Credential::Absent => return Err(TokenProblem::Missing),
        Credential::Several => return Err(TokenProblem::Malformed("more than one credential header")),
        Credential::One(raw) => raw,
    };
    let text =
        std::str::from_utf8(raw).map_err(|_| TokenProblem::Malformed("credential is not valid text"))?;
    let text = text.trim_matches([' ', '\t']);
    let token = if prefix.is_empty() {
        text
    } else {
        let scheme = prefix.trim_end();
        match text.get(..scheme.len()) {
            Some(head) if head.eq_ignore_ascii_case(scheme) => {
                let rest = &text[scheme.len()..];
                if rest.is_empty() {
                    return Err(TokenProblem::Malformed("bearer credential is empty"));
                }
                if scheme.len() < prefix.len() && !rest.starts_with([' ', '\t']) {
                    // e.g. "Bearerabc" or "Bearers x": another scheme.
                    return Err(TokenProblem::Missing);
                }
                rest.trim_start_matches([' ', '\t'])
            }
            _ => return Err(TokenProblem::Missing),
        }
    };
    if token.is_empty() {
        return Err(TokenProblem::Malformed("bearer credential is empty"));
    }
    // Only what breaks the header syntax is a malformed request; anything
    // else reaches the JWT parser and is an invalid token.
    if !token.bytes().all(|b| b.is_ascii_graphic() && !b"\"\\,".contains(&b)) {
        return Err(TokenProblem::Malformed("bearer credential has invalid characters"));
    }
    Ok(token)
}

/// A claim as a header value: strings as they are, arrays joined with
/// commas, objects as compact JSON. `None` when the value contains characters
/// no header value may hold.
fn header_value(value: &Value) -> Option<String> {
    let text = match value {
        Value::Null => return None,
        Value::String(text) => text.clone(),
        Value::Bool(_) | Value::Number(_) | Value::Object(_) => value.to_string(),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(","),
    };
    let valid = text.chars().all(|c| c == '\t' || !c.is_control());
    valid.then_some(text)
}

#[cfg(test)]
#[path = "decision_tests.rs"]
mod tests;
