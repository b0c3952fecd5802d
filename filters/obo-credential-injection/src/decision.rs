//! The per-request decision: which target, which subject token, is it
//! acceptable, may this caller act for this user, and which token goes to
//! the upstream — from the cache, or after a call to the IdP.
//!
//! Plain Rust over the [`Host`] trait. The glue gathers the request, applies
//! the [`Verdict`], and runs the [`Job`]s the decision asks for.

use std::rc::Rc;

use baton_filter_kit::audit::AuditLine;
use baton_filter_kit::cache::TokenMemo;
use baton_filter_kit::credential::{Credential, TokenProblem, extract_token};
use baton_filter_kit::host::{Counter, Host, LogLevel};
use baton_filter_kit::matching::ambiguous_path;
use baton_filter_kit::runtime;
use baton_filter_kit::verifier::{
    CacheOutcome, KeyWait, MAX_LOCAL_ENTRIES, TokenVerifier, VerifiedToken, VerifyError,
};
use baton_token::TokenHash;
use baton_token::claims::Claims;
use baton_token::issued::{IssuedTokenExpectation, check_issued_token};
use baton_token::oauth::{OAuthErrorCode, TokenEndpointError, TokenResponse};
use baton_token::secret::Secret;

use baton_filter_kit::store::StoreConfig;

use crate::denial::Denial;
use crate::fleet_cache::{self, StoreRead, StoreWrites, Unused};
use crate::issued::{IssuedToken, IssuedTokenCache, LifetimeRules, issued_token};
use crate::jobs::{Job, credentials_job, user_job};
use crate::metrics;
use crate::model::{
    Actor, CallerSource, DefaultAction, FilterConfig, Idp, SubjectValidation, Target, TargetGrant,
};
use crate::subject::{UpstreamSubject, caller, check_delegation};

/// What the decision needs of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `:method`.
    pub method: String,
    /// `:path`.
    pub path: String,
    /// `:authority`.
    pub authority: String,
    /// Where the request names a second method (`X-HTTP-Method-Override`,
    /// `_method`), read when targets match methods.
    pub method_override: Option<&'static str>,
    /// The subject token header.
    pub credential: Credential,
    /// The URI SAN of the client certificate Envoy verified on this
    /// connection (read with `delegation.caller: peerCertificate` only).
    pub peer_certificate: Option<String>,
    /// claim-enforcement's record of the token it verified
    /// (`validation: claimEnforcement` only).
    pub verified_upstream: Option<Vec<u8>>,
}

/// What happens to a request: forwarded with the issued token in place of
/// the caller's, answered, or held for keys or a token endpoint call.
pub type Verdict = runtime::Verdict<()>;

/// The changes a forwarded request gets.
pub type Forward = runtime::Forward<()>;

/// Which pass of the decision this is.
#[derive(Debug, Clone, Copy)]
pub struct Round<'a> {
    /// 0 for the first pass; each wait adds one.
    pub number: u8,
    /// Whether waiting for keys is still allowed.
    pub keys: KeyWait,
    /// A token that just arrived for the key this request waited on, and
    /// how long the IdP took.
    pub fresh: Option<(&'a TokenHash, &'a Rc<IssuedToken>, u64)>,
    /// The call this request waited on failed (or it waited too long): the
    /// decision answers with that, with its own audit line.
    pub failed: Option<(&'a TokenHash, &'a Denial)>,
    /// What the store read this request waited on brought (with a `store`).
    pub store: Option<StoreStep<'a>>,
}

/// The end of a store read a request waited on.
#[derive(Debug, Clone, Copy)]
pub enum StoreStep<'a> {
    /// Its answer, for the cache key it looked for.
    Read(&'a TokenHash, &'a StoreRead),
    /// No answer in time.
    TimedOut,
}

impl StoreStep<'_> {
    /// Whether it is the read of `key`'s token.
    fn is_for(&self, key: &TokenHash) -> bool {
        match self {
            StoreStep::Read(read, _) => *read == key,
            StoreStep::TimedOut => true,
        }
    }
}

impl Round<'_> {
    /// The first pass.
    pub const FIRST: Round<'static> =
        Round { number: 0, keys: KeyWait::Allowed, fresh: None, failed: None, store: None };
}

/// Names a refused subject token in the audit line (hashed only when the
/// line is written).
fn audit_subject(audit: &mut AuditLine, token: &str) {
    audit.token_as("subject", token.as_bytes());
}

/// Longest chain of waits for one request (keys, actor token, exchange).
const MAX_ROUNDS: u8 = 4;

/// The VM-wide state a decision reads and updates.
#[derive(Debug)]
pub struct Engine {
    config: Rc<FilterConfig>,
    /// Subject token verification (validation `jwks`).
    pub verifier: Option<TokenVerifier>,
    /// Issued tokens.
    pub cache: IssuedTokenCache,
    /// Tokens claim-enforcement verified (validation `claimEnforcement`),
    /// by the token itself: a known token's record is compared and its
    /// times checked, without hashing or parsing it again.
    upstream: TokenMemo<Rc<UpstreamSubject>>,
    /// Exchanged tokens to write to the store (with a `store`).
    pub writes: StoreWrites,
}

/// The subject token, once accepted.
struct Subject<'a> {
    token: &'a str,
    claims: SubjectClaims,
}

impl Subject<'_> {
    /// The token's SHA-256: known once verified, computed for a decoded one.
    fn hash(&self) -> TokenHash {
        match &self.claims {
            SubjectClaims::Verified(verified) => verified.hash,
            SubjectClaims::Upstream(upstream) => upstream.hash,
        }
    }
}

/// Claims of an accepted subject token: shared with the verification cache,
/// or decoded for this request.
enum SubjectClaims {
    Verified(Rc<VerifiedToken>),
    Upstream(Rc<UpstreamSubject>),
}

impl SubjectClaims {
    fn get(&self) -> &Claims {
        match self {
            SubjectClaims::Verified(verified) => &verified.claims,
            SubjectClaims::Upstream(upstream) => &upstream.claims,
        }
    }
}

impl Engine {
    /// Builds the state for a configuration.
    pub fn new(config: Rc<FilterConfig>) -> Self {
        let prefix = format!("baton.obo.{}.", config.fingerprint);
        let verifier = match config.subject.as_ref().map(|s| &s.validation) {
            Some(SubjectValidation::Jwks(providers)) => Some(TokenVerifier::new(
                Rc::clone(providers),
                &prefix,
                config.cache_entries,
                baton_token::jwt::DEFAULT_MAX_TOKEN_BYTES,
                metrics::JWKS,
            )),
            _ => None,
        };
        let cache = IssuedTokenCache::new(config.cache_entries, &prefix);
        let upstream = TokenMemo::new(
            usize::try_from(config.cache_entries).unwrap_or(usize::MAX).min(MAX_LOCAL_ENTRIES),
        );
        Self { config, verifier, cache, upstream, writes: StoreWrites::default() }
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
    pub fn decide(&mut self, host: &dyn Host, request: &Request, round: Round<'_>) -> Verdict {
        let config = Rc::clone(&self.config);
        let mut audit = AuditLine::new(host, config.audit_log);
        // A target decides on this path only if no other hop can read
        // another one from it.
        if config.match_inputs.path
            && let Some(why) = ambiguous_path(&request.path)
        {
            audit.set("target", "-");
            return self.deny(host, audit, &Denial::AmbiguousPath(why));
        }
        if config.match_inputs.method
            && let Some(second) = request.method_override
        {
            audit.set("target", "-");
            return self.deny(host, audit, &Denial::AmbiguousMethod(second));
        }
        let Some((target_index, target)) = config
            .targets
            .iter()
            .enumerate()
            .find(|(_, t)| t.matcher.matches(&request.method, &request.path, &request.authority))
        else {
            audit.set("target", "-");
            return match config.default_action {
                DefaultAction::Deny => self.deny(host, audit, &Denial::NoTarget),
                DefaultAction::PassThrough => {
                    audit.allow("pass_through");
                    audit.emit(host);
                    host.count(metrics::PASS_THROUGH);
                    let remove = config.subject.iter().map(|s| s.header.clone()).collect();
                    Verdict::Forward(Forward { strip: remove, ..Forward::default() })
                }
            };
        };
        audit.set("target", &target.name).set("mode", target.mode().label());
        if target.destinations().next().is_some() {
            audit.set_with("audience", || target.destinations().collect::<Vec<_>>().join(","));
        }

        if let TargetGrant::ClientCredentials { grant, unauthenticated_callers } = &target.grant {
            // Service to service: the gateway's own token, no user involved,
            // for a caller this Envoy identified (unless the configuration
            // says, by name, that anyone may have it).
            if !unauthenticated_callers {
                let claims = match config.delegation.caller {
                    CallerSource::PeerCertificate => None,
                    CallerSource::TokenClient => {
                        match self.accept_subject(host, request, round, &mut audit) {
                            Ok(subject) => {
                                audit.hash_as("subject", &subject.hash());
                                if let Some(sub) = &subject.claims.get().sub {
                                    audit.set("sub", sub);
                                }
                                Some(subject.claims)
                            }
                            Err(verdict) => return verdict,
                        }
                    }
                };
                let claims = claims.as_ref().map(SubjectClaims::get);
                if let Err(verdict) =
                    self.check_caller(host, &mut audit, request, claims, target_index, target)
                {
                    return verdict;
                }
            }
            return match self.obtain(host, &grant.key, round) {
                Some((token, outcome, idp_ms)) => self.forward(host, audit, target, &token, outcome, idp_ms),
                None => self.wait_for(host, audit, round, credentials_job(grant, &config.idps[grant.idp])),
            };
        }

        let subject = match self.accept_subject(host, request, round, &mut audit) {
            Ok(subject) => subject,
            Err(verdict) => return verdict,
        };
        audit.hash_as("subject", &subject.hash());
        let claims = subject.claims.get();
        if let Some(sub) = &claims.sub {
            audit.set("sub", sub);
        }
        let caller = match self.check_caller(host, &mut audit, request, Some(claims), target_index, target) {
            Ok(caller) => caller,
            Err(verdict) => return verdict,
        };

        // This worker exchanged this very token for this target before: no
        // hashing, no shared data.
        let target_index = u32::try_from(target_index).unwrap_or(u32::MAX);
        if round.fresh.is_none()
            && let Some(token) = self.cache.exchanged(target_index, subject.token, host.now_unix_secs())
        {
            return self.forward(host, audit, target, &token, CacheOutcome::HitLocal, None);
        }
        let key = TokenHash::of_parts(&[target.digest.as_bytes(), subject.hash().as_bytes()]);
        if let Some((token, outcome, idp_ms)) = self.obtain(host, &key, round) {
            self.cache.remember_exchange(target_index, subject.token, Rc::clone(&token));
            return self.forward(host, audit, target, &token, outcome, idp_ms);
        }
        let exchange = match &target.grant {
            TargetGrant::IdentityAssertion { audiences } => {
                let caller = caller.as_deref();
                return self.assert_identity(
                    host,
                    audit,
                    target,
                    audiences,
                    target_index,
                    &subject,
                    caller,
                    key,
                );
            }
            TargetGrant::TokenExchange(exchange) => Some(exchange),
            TargetGrant::EntraOnBehalfOf(_) | TargetGrant::ClientCredentials { .. } => None,
        };
        let actor = match exchange.and_then(|exchange| exchange.actor.as_ref()) {
            None => None,
            Some(Actor::Static { token, token_type }) => Some((token.clone(), token_type.clone())),
            Some(Actor::ClientCredentials(grant)) => match self.obtain(host, &grant.key, round) {
                Some((token, _, _)) => {
                    Some((token.token.clone(), baton_token::oauth::TOKEN_TYPE_ACCESS_TOKEN.to_string()))
                }
                None => {
                    return self.wait_for(
                        host,
                        audit,
                        round,
                        credentials_job(grant, &config.idps[grant.idp]),
                    );
                }
            },
        };
        let subject_exp = claims.exp.and_then(|exp| u64::try_from(exp).ok());
        let Some(idp) = target.idp().and_then(|idp| config.idps.get(idp)) else {
            return self.unavailable(host, audit, "no_idp");
        };
        // The fleet's store, before the IdP: once per request (not again
        // after the IdP failed it), and only with a round left for the call.
        if let Some(store) = &config.store {
            let failed_here = round.failed.is_some_and(|(failed, _)| *failed == key);
            match round.store {
                Some(step) if step.is_for(&key) => {
                    let not_after = subject_exp.map(|exp| exp.saturating_sub(config.expiry_margin_secs));
                    if let Some(token) = self.stored_token(host, &mut audit, &key, idp, step, not_after) {
                        self.cache.put(key, Rc::clone(&token), host);
                        self.cache.remember_exchange(target_index, subject.token, Rc::clone(&token));
                        return self.forward_from(
                            host,
                            audit,
                            target,
                            &token,
                            "store",
                            metrics::STORE_HIT,
                            None,
                        );
                    }
                }
                _ if !failed_here && round.number + 1 < MAX_ROUNDS => {
                    return Verdict::AwaitStore(Box::new(fleet_cache::read(store, key, idp)));
                }
                _ => {}
            }
        }
        match user_job(target, idp, key, subject.token, subject_exp, actor) {
            Some(job) => self.wait_for(host, audit, round, job),
            None => self.unavailable(host, audit, "no_idp"),
        }
    }

    /// Who is calling, checked against the delegation policy for target
    /// `index`; a refusal is the verdict.
    // The error is the request's answer (a refusal or a wait), built once.
    #[allow(clippy::result_large_err)]
    fn check_caller(
        &self,
        host: &dyn Host,
        audit: &mut AuditLine,
        request: &Request,
        claims: Option<&Claims>,
        index: usize,
        target: &Target,
    ) -> Result<Option<String>, Verdict> {
        let delegation = &self.config.delegation;
        let caller = caller(delegation, request.peer_certificate.as_deref(), claims);
        if let Some(caller) = &caller {
            audit.set("caller", caller);
        }
        match check_delegation(delegation, caller.as_deref(), claims, index, target) {
            Ok(()) => Ok(caller),
            Err(description) => Err(self.deny(host, std::mem::take(audit), &Denial::Delegation(description))),
        }
    }

    /// Signs the gateway's own assertion for `subject` and `target`, caches
    /// it like an issued token, and forwards it.
    #[allow(clippy::too_many_arguments)]
    fn assert_identity(
        &mut self,
        host: &dyn Host,
        audit: AuditLine,
        target: &Target,
        audiences: &[String],
        target_index: u32,
        subject: &Subject<'_>,
        caller: Option<&str>,
        key: TokenHash,
    ) -> Verdict {
        let Some(issuer) = self.config.assertion.clone() else {
            return self.unavailable(host, audit, "no_assertion_configuration");
        };
        let mut random = [0u8; 16];
        if !host.fill_random(&mut random) {
            return self.unavailable(host, audit, "no_randomness");
        }
        let now = host.now_unix_secs();
        let jti = baton_token::base64url::encode(&random);
        let assertion = match issuer.mint(subject.claims.get(), audiences, caller, now, &jti) {
            Ok(assertion) => assertion,
            Err(error) => {
                host.log(LogLevel::Error, &format!("identity assertion not signed: {error}"));
                return self.unavailable(host, audit, "assertion_signing_failed");
            }
        };
        host.count(metrics::ASSERTIONS_SIGNED);
        // Reused until shortly before it expires: the margin, but never more
        // than half its life.
        let life = assertion.expires_at.saturating_sub(now);
        let use_until = assertion.expires_at - self.config.expiry_margin_secs.min(life / 2);
        let token = Rc::new(IssuedToken::new(assertion.token, "Bearer".to_string(), use_until, use_until));
        self.cache.put(key, Rc::clone(&token), host);
        self.cache.remember_exchange(target_index, subject.token, Rc::clone(&token));
        self.forward(host, audit, target, &token, CacheOutcome::Miss, None)
    }

    /// The token the store read found for `key`, opened and checked; what
    /// else it brought is counted and noted in the audit line.
    fn stored_token(
        &self,
        host: &dyn Host,
        audit: &mut AuditLine,
        key: &TokenHash,
        idp: &Idp,
        step: StoreStep<'_>,
        not_after: Option<u64>,
    ) -> Option<Rc<IssuedToken>> {
        let store = self.config.store.as_ref()?;
        let (counter, label) = match step {
            StoreStep::TimedOut => (metrics::STORE_UNAVAILABLE, "store_timed_out"),
            StoreStep::Read(_, StoreRead::Unavailable(label)) => (metrics::STORE_UNAVAILABLE, *label),
            StoreStep::Read(_, StoreRead::Absent) => (metrics::STORE_MISS, "miss"),
            StoreStep::Read(_, StoreRead::Found(sealed)) => {
                match fleet_cache::open(store, key, idp, sealed, host.now_unix_secs(), not_after) {
                    Ok(token) => return Some(Rc::new(token)),
                    Err(Unused::Expired) => (metrics::STORE_MISS, "expired"),
                    Err(Unused::Pending) => (metrics::STORE_MISS, "pending"),
                    Err(why) => {
                        host.log(
                            LogLevel::Warn,
                            &format!(
                                "a stored token was not used ({why:?}): another sealing key or tampering"
                            ),
                        );
                        (metrics::STORE_REJECTED, "rejected")
                    }
                }
            }
        };
        host.count(counter);
        audit.set("store", label);
        None
    }

    /// A usable token for `key`: the one that just arrived, or a cached one.
    fn obtain(
        &mut self,
        host: &dyn Host,
        key: &TokenHash,
        round: Round<'_>,
    ) -> Option<(Rc<IssuedToken>, CacheOutcome, Option<u64>)> {
        if let Some((fresh_key, token, idp_ms)) = round.fresh
            && fresh_key == key
        {
            return Some((Rc::clone(token), CacheOutcome::Miss, Some(idp_ms)));
        }
        self.cache.get(key, host).map(|(token, outcome)| (token, outcome, None))
    }

    // The error is the request's answer (a refusal or a wait), built once.
    #[allow(clippy::result_large_err)]
    fn accept_subject<'r>(
        &mut self,
        host: &dyn Host,
        request: &'r Request,
        round: Round<'_>,
        audit: &mut AuditLine,
    ) -> Result<Subject<'r>, Verdict> {
        let config = Rc::clone(&self.config);
        let Some(subject) = &config.subject else {
            return Err(self.unavailable(host, std::mem::take(audit), "no_subject_configuration"));
        };
        let token = match extract_token(&request.credential, &subject.prefix) {
            Ok(token) => token,
            Err(TokenProblem::Missing) => {
                return Err(self.deny(host, std::mem::take(audit), &Denial::MissingToken));
            }
            Err(TokenProblem::Malformed(why)) => {
                return Err(self.deny(host, std::mem::take(audit), &Denial::MalformedCredential(why)));
            }
        };
        let claims = match &subject.validation {
            SubjectValidation::ClaimEnforcement { issuers, audiences, clock_skew_secs } => {
                let (now, record) = (host.now_unix_secs(), request.verified_upstream.as_deref());
                // Remembered only once accepted; the record is checked on
                // every request.
                let accepted = match self.upstream.get(0, token) {
                    Some(known) => known.recheck(record, *clock_skew_secs, now).map(|()| known),
                    None => UpstreamSubject::accept(token, record, issuers, audiences, *clock_skew_secs, now)
                        .map(|accepted| {
                            let accepted = Rc::new(accepted);
                            self.upstream.insert(0, token, Rc::clone(&accepted));
                            accepted
                        }),
                };
                match accepted {
                    Ok(upstream) => SubjectClaims::Upstream(upstream),
                    Err(rejected) => {
                        audit_subject(audit, token);
                        return Err(self.invalid_token(
                            host,
                            std::mem::take(audit),
                            rejected.reason,
                            &rejected.description,
                        ));
                    }
                }
            }
            SubjectValidation::Jwks(_) => {
                let Some(verifier) = self.verifier.as_mut() else {
                    return Err(self.unavailable(host, std::mem::take(audit), "no_verifier"));
                };
                match verifier.verify(host, token, &[], round.keys) {
                    Ok((verified, _)) => SubjectClaims::Verified(verified),
                    Err(VerifyError::AwaitKeys(provider)) if round.number < MAX_ROUNDS => {
                        return Err(Verdict::AwaitKeys(provider));
                    }
                    Err(VerifyError::AwaitKeys(_)) | Err(VerifyError::KeysUnavailable(_)) => {
                        return Err(self.unavailable(host, std::mem::take(audit), "keys_unavailable"));
                    }
                    Err(VerifyError::Invalid { reason, description }) => {
                        audit_subject(audit, token);
                        return Err(self.invalid_token(host, std::mem::take(audit), reason, &description));
                    }
                }
            }
        };
        Ok(Subject { token, claims })
    }

    fn wait_for(&self, host: &dyn Host, mut audit: AuditLine, round: Round<'_>, job: Job) -> Verdict {
        if let Some((key, failure)) = round.failed
            && *key == job.key
        {
            if audit.enabled() {
                audit.set("idp_call", &job.label);
            }
            return self.deny(host, audit, failure);
        }
        // A request that already waited for this very key and still has no
        // token would wait forever: answer now.
        let again = round.fresh.is_some_and(|(key, _, _)| *key == job.key);
        if again || round.number >= MAX_ROUNDS {
            return self.unavailable(host, audit, "token_unavailable");
        }
        Verdict::AwaitCall(Box::new(job))
    }

    fn forward(
        &self,
        host: &dyn Host,
        audit: AuditLine,
        target: &Target,
        token: &IssuedToken,
        outcome: CacheOutcome,
        idp_ms: Option<u64>,
    ) -> Verdict {
        let counter = match outcome {
            CacheOutcome::HitLocal => metrics::CACHE_HIT_LOCAL,
            CacheOutcome::HitShared => metrics::CACHE_HIT_SHARED,
            CacheOutcome::Miss => metrics::CACHE_MISS,
        };
        self.forward_from(host, audit, target, token, outcome.label(), counter, idp_ms)
    }

    /// Forwards with `token`, found where `cache` says (audit label, and
    /// the counter of where it was found).
    #[allow(clippy::too_many_arguments)]
    fn forward_from(
        &self,
        host: &dyn Host,
        mut audit: AuditLine,
        target: &Target,
        token: &IssuedToken,
        cache: &str,
        counter: Counter,
        idp_ms: Option<u64>,
    ) -> Verdict {
        host.count(counter);
        host.count(metrics::INJECTED);
        audit.cache(cache);
        if let Some(idp_ms) = idp_ms {
            audit.set_with("idp_ms", || idp_ms.to_string());
        }
        audit.set("issued", &token.audit.short_hash);
        if let Some(act) = &token.audit.act {
            audit.set("act", act);
        }
        audit.allow("injected");
        audit.emit(host);
        let mut remove = Vec::new();
        if let Some(subject_header) = self.config.subject.as_ref().map(|s| &s.header)
            && *subject_header != target.inject.header
        {
            remove.push(subject_header.clone());
        }
        // The subject token and the injected header reach the upstream from
        // this filter only, in no other spelling a backend reads as the
        // same name.
        let mut strip = remove;
        strip.push(target.inject.header.clone());
        let value = Secret::new(format!("{}{}", target.inject.prefix, token.token.expose()));
        Verdict::Forward(Forward {
            strip,
            set: vec![(target.inject.header.clone(), value)],
            ..Forward::default()
        })
    }

    fn invalid_token(&self, host: &dyn Host, audit: AuditLine, reason: &str, description: &str) -> Verdict {
        let denial =
            Denial::InvalidToken { reason: reason.to_string(), description: description.to_string() };
        self.deny(host, audit, &denial)
    }

    fn unavailable(&self, host: &dyn Host, audit: AuditLine, reason: &str) -> Verdict {
        self.deny(host, audit, &Denial::Unavailable(reason.to_string()))
    }

    /// Answers with `denial`: its audit line, counter and reply.
    fn deny(&self, host: &dyn Host, mut audit: AuditLine, denial: &Denial) -> Verdict {
        let reply = denial.reply(self.config.realm.as_deref());
        audit.deny(reply.status, denial.reason());
        audit.emit(host);
        host.count(denial.counter());
        Verdict::Reply(reply)
    }

    /// Takes a token endpoint answer for `job`: a token is cached and
    /// returned; a failure is counted, logged and returned as the answer
    /// every request waiting for it gets.
    pub fn finish_job(
        &mut self,
        host: &dyn Host,
        job: &Job,
        status: Option<u16>,
        body: &[u8],
    ) -> Result<Rc<IssuedToken>, Denial> {
        let config = Rc::clone(&self.config);
        let idp_name = self.config.idps.get(job.endpoint).map_or("?", |idp| idp.name.as_str());
        match TokenResponse::parse(status, body, job.expectation()) {
            Ok(response) => {
                // A token for another audience (or from another issuer) is
                // valid somewhere else: never injected, never cached.
                let expect = IssuedTokenExpectation {
                    audiences: &job.expected_audiences,
                    issuer: job.expected_issuer.as_deref(),
                };
                if let Err(mismatch) = check_issued_token(response.access_token.expose(), expect) {
                    host.count(metrics::IDP_WRONG_AUDIENCE);
                    host.log(
                        LogLevel::Error,
                        &format!(
                            "idp={idp_name} call for {} issued a token not used: {mismatch}, asked for aud={:?} \
                             iss={:?} (does the IdP honour audience/resource for this grant? set the target's \
                             audiences, resources or expectedAudiences to what it issues)",
                            job.label, job.expected_audiences, job.expected_issuer
                        ),
                    );
                    return Err(Denial::WrongAudience);
                }
                host.count(metrics::IDP_SUCCESS);
                let rules = LifetimeRules {
                    margin_secs: self.config.expiry_margin_secs,
                    default_secs: self.config.default_lifetime_secs,
                    not_after: job.not_after,
                };
                let (token, cacheable) = issued_token(response, rules, host.now_unix_secs());
                let token = Rc::new(token);
                if cacheable {
                    self.cache.put(job.key, Rc::clone(&token), host);
                }
                // For the other replicas: a user's exchange (the gateway's
                // own tokens stay per Envoy), over the fleet's claim.
                if let Some((store, idp)) = fleet_store(&config, job) {
                    if cacheable {
                        self.writes.queue(host, store, job.key, idp, &token);
                    } else {
                        self.writes.release(store, job.key, idp);
                    }
                }
                Ok(token)
            }
            Err(error) => {
                if let Some((store, idp)) = fleet_store(&config, job) {
                    self.writes.release(store, job.key, idp);
                }
                host.count(match &error {
                    TokenEndpointError::Rejected { .. } => metrics::IDP_REJECTED,
                    TokenEndpointError::InvalidResponse(_) => metrics::IDP_INVALID_RESPONSE,
                    _ => metrics::IDP_UNAVAILABLE,
                });
                let (failure, level) = failure_for(&error, job.carries_caller_token);
                let whose = if matches!(failure, Denial::GatewayRefused(_)) {
                    "; the IdP refused the gateway's own request: check its client registration and this target"
                } else {
                    ""
                };
                host.log(level, &format!("idp={idp_name} call for {} failed: {error}{whose}", job.label));
                Err(failure)
            }
        }
    }
}

/// The store and the IdP of `job`, when its token is shared with the fleet
/// (a user's exchange, with a `store`).
pub fn fleet_store<'c>(config: &'c FilterConfig, job: &Job) -> Option<(&'c StoreConfig, &'c Idp)> {
    let store = config.store.as_ref()?;
    let idp = config.idps.get(job.endpoint)?;
    job.carries_caller_token.then_some((store, idp))
}

/// What a failed call means, and how loudly it is logged. Only a call that
/// carried the caller's token (an exchange, an on-behalf-of assertion) can
/// fail because of the caller, and then only as `invalid_grant` (the token
/// is revoked or expired at the IdP) or `invalid_target`/`invalid_scope`
/// (the IdP will not issue this token for this user). Every other RFC 6749
/// refusal, and any refusal of the gateway's own client-credentials call
/// (for a target, or as an actor), is the gateway's; an error code outside
/// RFC 6749's (`server_error`) means the IdP is not serving.
fn failure_for(error: &TokenEndpointError, carries_caller_token: bool) -> (Denial, LogLevel) {
    let reason = error.reason();
    match error {
        TokenEndpointError::Rejected { code: code @ OAuthErrorCode::InvalidGrant, .. }
            if carries_caller_token =>
        {
            (Denial::SubjectRefusedByIdp { reason, code: code.as_str().to_string() }, LogLevel::Info)
        }
        TokenEndpointError::Rejected {
            code: code @ (OAuthErrorCode::InvalidTarget | OAuthErrorCode::InvalidScope),
            ..
        } if carries_caller_token => {
            (Denial::TargetRefusedByIdp { reason, code: code.as_str().to_string() }, LogLevel::Warn)
        }
        // `server_error`, `temporarily_unavailable` or a code of its own:
        // the IdP is not serving properly.
        TokenEndpointError::Rejected { code: OAuthErrorCode::Other(_), .. } => {
            (Denial::IdpUnavailable(reason), LogLevel::Warn)
        }
        TokenEndpointError::Rejected { .. } => (Denial::GatewayRefused(reason), LogLevel::Error),
        _ => (Denial::IdpUnavailable(reason), LogLevel::Warn),
    }
}

#[cfg(test)]
#[path = "decision_tests.rs"]
mod tests;
