//! The per-request decision for A2A messages: does this message need the
//! secondary credential, did it bring one (token, or code and state), is
//! there one stored for this user's task — and so: forward with the token
//! injected and the credential stripped, or answer with an auth-required
//! task. The OAuth redirect is in `callback`, agents' own challenges in
//! `response`.

use std::cell::RefCell;
use std::rc::Rc;

use baton_filter_kit::audit::AuditLine;
use baton_filter_kit::credential::{Credential, TokenProblem, extract_token};
use baton_filter_kit::handoff;
use baton_filter_kit::host::{Host, LogLevel};
use baton_filter_kit::matching::ambiguous_path;
use baton_filter_kit::store::{EtcdOperation, StoreCall};
use baton_filter_kit::token_calls::TokenCall;
use baton_filter_kit::verifier::{KeyWait, TokenVerifier, VerifiedToken, VerifyError};
use baton_token::TokenHash;
use baton_token::jwt::{DEFAULT_MAX_TOKEN_BYTES, UnverifiedJwt};
use baton_token::oauth::{Grant, OAuthErrorCode, TokenEndpointError, TokenRequest};
use baton_token::rules::AccessDecision;
use baton_token::secret::Secret;
use serde_json::{Map, Value};

pub use baton_filter_kit::reply::Reply;
use baton_filter_kit::runtime;

use crate::response::{AnswerContext, RpcAnswer};

use crate::a2a::{self, Call, CallKind, GatewayTaskState, TaskIds};
use crate::challenge::{IssueProblem, issue, random_id};
use crate::denial::Denial;
use crate::gateway_task;
use crate::metrics;
use crate::model::{
    AuthorizationServer, ConditionSource, FilterConfig, InvalidCredential, PrimaryVerification, Rule,
    is_agent_card, may_read_agent_card,
};
use crate::sealed_state::{self, MAX_BOUND_STATE_CHARS, MAX_LOCAL_STATE_CHARS, StoreOutcome, Use};
use crate::sealed_task::{self, Write};
use crate::store::{PendingAuthorization, StateProblem, Store, StoreFull, TaskRecord};

/// What the decision needs of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `:method`.
    pub method: String,
    /// `:path`, query included.
    pub path: String,
    /// `:authority`.
    pub authority: String,
    /// Where the request names a second method (`X-HTTP-Method-Override`,
    /// `_method`).
    pub method_override: Option<&'static str>,
    /// The header carrying the user's token.
    pub primary: Credential,
    /// claim-enforcement's record of the token it verified on this request
    /// (read only with `verifiedBy: claimEnforcement`).
    pub verified_upstream: Option<Vec<u8>>,
    /// `A2A-Version`, if sent.
    pub a2a_version: Option<String>,
    /// `Accept`, if sent.
    pub accept: Option<String>,
    /// `Cookie`, if sent (read on the browser's paths only).
    pub cookie: Option<String>,
    /// The body, once read (protected routes only).
    pub body: Option<Vec<u8>>,
    /// Store work the decision of this request started, across its rounds
    /// (step keys): its reply or the agent's answer waits for it.
    pub store_work: RefCell<Vec<TokenHash>>,
}

/// A token to remember for the task the agent's answer names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebind {
    /// The user.
    pub user: String,
    /// The task only the gateway knew, which the agent's task replaces.
    pub from_task: String,
    /// The token.
    pub token: Secret,
    /// Until when.
    pub expires_at: u64,
}

/// What happens to a request: forwarded (with what reading the agent's
/// answer needs, for messages), answered, held for its body, or held for
/// keys or a code exchange.
pub type Verdict = runtime::Verdict<AnswerContext>;

/// The changes a forwarded request gets.
pub type Forward = runtime::Forward<AnswerContext>;

/// How a call a request waited for ended: a code exchange, or (with a
/// shared store) a step of a `state`'s single use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExchangeOutcome {
    /// Tokens.
    Token {
        /// The access token.
        access: Secret,
        /// The ID token, when the server sent one.
        id_token: Option<Secret>,
    },
    /// The IdP refused the code (expired, used, wrong verifier).
    Refused(String),
    /// The IdP refused the gateway itself (its client, its request): a
    /// configuration fault, 502.
    GatewayRefused(String),
    /// The IdP could not be reached or answered garbage.
    Unavailable(String),
    /// A store step of a sealed `state`'s use (no code exchange).
    Store(StoreOutcome),
}

/// Which pass of the decision this is.
#[derive(Debug, Clone, Copy)]
pub struct Round<'a> {
    /// 0 for the first pass.
    pub number: u8,
    /// Whether waiting for keys is still allowed.
    pub keys: KeyWait,
    /// The code exchange this request waited for, by key, and its outcome.
    pub exchange: Option<(&'a TokenHash, &'a ExchangeOutcome)>,
}

impl<'a> Round<'a> {
    /// The first pass.
    pub const FIRST: Round<'static> = Round { number: 0, keys: KeyWait::Allowed, exchange: None };

    /// The outcome of the exchange keyed `key`, if this pass follows it.
    pub fn outcome_for(&self, key: &TokenHash) -> Option<&'a ExchangeOutcome> {
        self.exchange.filter(|(k, _)| *k == key).map(|(_, outcome)| outcome)
    }

    /// The outcome of the store step keyed `key`, if this pass follows it.
    pub fn store_step(&self, key: &TokenHash) -> Option<&'a StoreOutcome> {
        match self.outcome_for(key) {
            Some(ExchangeOutcome::Store(outcome)) => Some(outcome),
            _ => None,
        }
    }
}

/// Longest chain of waits for one request: the user's keys, a shared
/// store's read, lease and mark, the code exchange, the bank's keys, the
/// task record's lease and put (and a spare).
pub const MAX_ROUNDS: u8 = 9;

/// Where taking a `state` for use stands.
#[derive(Debug)]
pub(crate) enum Taken<R> {
    /// Taken: this request uses it.
    Pending(PendingAuthorization),
    /// Unknown, expired or used.
    Refused(StateProblem),
    /// A misuse, refused by the caller's check: the `state` is used up all
    /// the same (a misuse ends the authorization), and the request gets the
    /// check's refusal. `store_fault` says why a shared store could not
    /// mark it (the refusal stands: see [`Engine::take_state`]).
    Misused {
        /// The check's refusal.
        refusal: R,
        /// The shared store's fault while marking it used (audit label).
        store_fault: Option<&'static str>,
    },
    /// Wait for this store step (a shared store).
    Wait(StoreCall),
    /// The shared store is unavailable (audit label).
    Unavailable(&'static str),
}

/// A code relayed in a message: the code, its `state`, and the redirect's
/// `iss` if the client passed it on.
struct RelayedCode<'a> {
    code: &'a Secret,
    state: &'a str,
    iss: Option<&'a str>,
}

/// The VM-wide state decisions read and update.
#[derive(Debug)]
pub struct Engine {
    pub(crate) config: Rc<FilterConfig>,
    /// Secondary token verification.
    pub verifier: TokenVerifier,
    pub(crate) store: Store,
    /// With a shared store: store calls no request waits for (deletes of
    /// ended tasks' records, steps of writing a moved token).
    background: Vec<StoreCall>,
    /// Records being written in the background (one per user and task).
    sharing: Vec<TaskRecord>,
    /// Authorizations being ended in the background (a sign-in by someone
    /// else): their single-use mark's key.
    ending: Vec<Vec<u8>>,
    /// Deletes of ended tasks' records not yet answered, by step key.
    deleting: Vec<TokenHash>,
    /// Gates being written in the background: task, until.
    gating: Vec<(String, u64)>,
    /// The background store work started since the last
    /// [`Engine::take_fresh`] (step keys): what the request being decided
    /// (or the answer being read) waits for before the client has it.
    fresh: Vec<TokenHash>,
}

/// Most background store calls and records waiting (beyond it, a delete
/// is left to the record's lease, a write not made: counted).
const MAX_BACKGROUND: usize = 1024;

/// Who the request is for, as far as this Envoy verified it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// The user named by a verified token.
    User(String),
    /// No bearer token: nobody.
    Anonymous,
    /// A token claim-enforcement did not verify on this request
    /// (`verifiedBy: claimEnforcement`): nobody, and never its claims.
    NotVerifiedUpstream,
    /// A token this filter checked and refused.
    Refused {
        /// The credential was malformed rather than invalid.
        malformed: bool,
        /// Label for audit lines.
        reason: String,
        /// What the client is told.
        description: String,
    },
    /// Wait for the user's issuer's keys.
    AwaitKeys(usize),
    /// The user's issuer's keys cannot be obtained.
    KeysUnavailable,
}

/// Why a secondary token is not accepted.
pub(crate) enum Refusal {
    Invalid { reason: String, description: String },
    AwaitKeys(usize),
    KeysUnavailable,
}

impl Engine {
    /// Builds the state for a configuration.
    pub fn new(config: Rc<FilterConfig>) -> Self {
        let prefix = format!("baton.itac.{}.", config.fingerprint);
        let verifier = TokenVerifier::new(
            Rc::clone(&config.providers),
            &prefix,
            config.cache_entries,
            DEFAULT_MAX_TOKEN_BYTES,
            metrics::JWKS,
        );
        let store = Store::new(config.store_limits, &prefix);
        Self {
            config,
            verifier,
            store,
            background: Vec::new(),
            sharing: Vec::new(),
            ending: Vec::new(),
            deleting: Vec::new(),
            gating: Vec::new(),
            fresh: Vec::new(),
        }
    }

    /// Creates the store's slots in shared data: every VM, before its
    /// first request.
    pub fn init_shared_data(&self, host: &dyn Host) {
        self.store.init(host);
    }

    /// The configuration.
    pub fn config(&self) -> &FilterConfig {
        &self.config
    }

    /// The configuration, shared.
    pub fn shared_config(&self) -> Rc<FilterConfig> {
        Rc::clone(&self.config)
    }

    /// Longest `state` read: a sealed one with a shared store.
    pub(crate) fn max_state_chars(&self) -> usize {
        match self.config.shared_store {
            Some(_) => MAX_BOUND_STATE_CHARS,
            None => MAX_LOCAL_STATE_CHARS,
        }
    }

    /// What `state` stands for, used or not, expired or not: from this
    /// Envoy's store, or opened (a shared store).
    pub(crate) fn pending_state(&self, host: &dyn Host, state: &str) -> Option<PendingAuthorization> {
        match &self.config.shared_store {
            Some(shared) => {
                sealed_state::open(shared, &self.config.idp, state).ok().map(|opened| opened.pending)
            }
            None => self.store.peek_state(host, state),
        }
    }

    /// Takes `state` for use, once: in this Envoy's store at once; with a
    /// shared store, opened and then marked used in the store (read the
    /// mark; absent, lease and create it), a step per round. An unknown,
    /// expired or used `state` is refused. `check` says whether this
    /// request may use what the `state` stands for (its user, task and
    /// context; the redirect's `iss`): a request it refuses is a misuse,
    /// and a misuse ends the authorization: the `state` is used up all the
    /// same (in this Envoy in the same change; with a shared store by the
    /// same steps and mark), so its owner's later use is refused as reused
    /// and the user starts again.
    pub(crate) fn take_state<R>(
        &self,
        host: &dyn Host,
        state: &str,
        round: Round<'_>,
        check: impl Fn(&PendingAuthorization) -> Result<(), R>,
    ) -> Taken<R> {
        let Some(shared) = &self.config.shared_store else {
            let taken = self.store.modify_state(host, state, |pending| {
                let allowed = check(pending);
                pending.used = true;
                Ok(allowed)
            });
            return match taken {
                Ok((pending, Ok(()))) => Taken::Pending(pending),
                Ok((_, Err(refusal))) => Taken::Misused { refusal, store_fault: None },
                Err(problem) => Taken::Refused(problem),
            };
        };
        let opened = match sealed_state::open(shared, &self.config.idp, state) {
            Ok(opened) => opened,
            Err(problem) => return Taken::Refused(problem),
        };
        let step = sealed_state::use_step(&opened, round.store_step(&opened.step_key), host.now_unix_secs());
        match (step, check(&opened.pending)) {
            (Use::Wait(call), _) => Taken::Wait(call),
            (Use::Refused(problem), _) => Taken::Refused(problem),
            (Use::Used, Ok(())) => Taken::Pending(opened.pending),
            (Use::Used, Err(refusal)) => Taken::Misused { refusal, store_fault: None },
            (Use::Unavailable(why), Ok(())) => Taken::Unavailable(why),
            // The store could not mark a misused `state`: refused as the
            // misuse it is (not 503: nothing is forwarded or exchanged
            // either way). Safe: the `state` may stay usable, but only by
            // its rightful owner, whose own use is checked as every use is
            // (user, task, context, `iss`) and still needs the mark.
            (Use::Unavailable(why), Err(refusal)) => Taken::Misused { refusal, store_fault: Some(why) },
        }
    }

    /// The agent ended `task_id` (or the user canceled the task the
    /// gateway named): see [`Store::end_task`]. With a shared store, the
    /// task's gate and `user`'s record of it are deleted there too, from
    /// the root context (what the client gets next waits for it, see
    /// [`Engine::take_fresh`]; one not deleted lapses with its lease).
    pub fn end_task(&mut self, host: &dyn Host, user: Option<&str>, task_id: &str) {
        self.store.end_task(host, user, task_id);
        let Some(store) = &self.config.shared_store else {
            return;
        };
        let mut keys = vec![sealed_task::gate_key(store, task_id)];
        keys.extend(user.map(|user| sealed_task::key(store, user, task_id)));
        for key in keys {
            if self.background.len() >= MAX_BACKGROUND {
                host.log(
                    LogLevel::Warn,
                    "an ended task's record is left to its lease: too many deletes waiting",
                );
                return;
            }
            let step = TokenHash::of_parts(&[b"task-delete", &key]);
            self.background.push(StoreCall { key: step, operation: EtcdOperation::Delete { key } });
            self.deleting.push(step);
            self.fresh.push(step);
        }
    }

    /// With a shared store: writes `record` (just kept in this Envoy) to
    /// the store from the root context: a lease, then the put (what the
    /// client gets next waits for it, see [`Engine::take_fresh`]).
    pub fn share_in_background(&mut self, host: &dyn Host, record: &TaskRecord) {
        let Some(store) = &self.config.shared_store else {
            return;
        };
        if self.background.len() >= MAX_BACKGROUND || self.sharing.len() >= MAX_BACKGROUND {
            // Counted and logged as a write that failed.
            let full = StoreOutcome::Unavailable("too_many_waiting");
            let _ = sealed_task::write_step(store, host, None, Some(&full), true);
            return;
        }
        let Write::Wait(step) = sealed_task::write_step(store, host, Some(record), None, true) else {
            return;
        };
        let key = step.key;
        self.sharing.retain(|held| sealed_task::write_step_key(&held.user, &held.task_id, true) != key);
        self.sharing.push(record.clone());
        self.background.push(step);
        self.fresh.push(key);
    }

    /// The background store work started since the last call (see
    /// [`Engine::fresh`]).
    pub fn take_fresh(&mut self) -> Vec<TokenHash> {
        std::mem::take(&mut self.fresh)
    }

    /// Whether the background write or delete whose step key is `step` is
    /// still under way (an answer that made it is held until it is not).
    pub fn still_writing(&self, step: &TokenHash) -> bool {
        self.deleting.contains(step)
            || self.gating.iter().any(|(task, _)| sealed_task::gate_step_key(task) == *step)
            || self
                .sharing
                .iter()
                .any(|held| sealed_task::write_step_key(&held.user, &held.task_id, true) == *step)
    }

    /// With a shared store: marks the authorization whose single-use mark
    /// is `mark` (expiring at `expires_at`) used, in the background (a
    /// lease, then the mark), so that no one can use it after a sign-in by
    /// someone else. Best effort: a mark not made leaves the authorization
    /// to its owner's browser, the only one that can still complete it.
    pub fn end_authorization_in_background(&mut self, host: &dyn Host, mark: Vec<u8>, expires_at: u64) {
        if self.config.shared_store.is_none() || self.ending.len() >= MAX_BACKGROUND {
            return;
        }
        let left =
            expires_at.saturating_sub(host.now_unix_secs()).saturating_add(sealed_state::MARK_MARGIN_SECS);
        let step = ending_step_key(&mark);
        self.background.push(StoreCall {
            key: step,
            operation: EtcdOperation::GrantLease { ttl_secs: u32::try_from(left).unwrap_or(u32::MAX) },
        });
        self.ending.push(mark);
    }

    /// The background store calls waiting (see [`Engine::end_task`],
    /// [`Engine::share_in_background`]).
    pub fn take_background(&mut self) -> Vec<StoreCall> {
        std::mem::take(&mut self.background)
    }

    /// Whether background store calls are waiting.
    pub fn has_background(&self) -> bool {
        !self.background.is_empty()
    }

    /// The answer to background call `call`: a write's next step (or its
    /// end: written, or counted and logged as failed); a delete's fault is
    /// logged by [`sealed_state::outcome`] (the record lapses with its
    /// lease).
    pub fn finish_background(&mut self, host: &dyn Host, call: &StoreCall, outcome: &StoreOutcome) {
        let Some(store) = &self.config.shared_store else {
            return;
        };
        if let Some(at) = self.deleting.iter().position(|step| *step == call.key) {
            self.deleting.swap_remove(at);
            return;
        }
        if let Some(at) =
            self.gating.iter().position(|(task, _)| sealed_task::gate_step_key(task) == call.key)
        {
            let (task, until) = &self.gating[at];
            match sealed_task::gate_write_step(store, host, task, *until, Some(outcome)) {
                Some(next) => self.background.push(next),
                None => {
                    self.gating.swap_remove(at);
                }
            }
            return;
        }
        if let Some(at) = self.ending.iter().position(|mark| ending_step_key(mark) == call.key) {
            if let (EtcdOperation::GrantLease { .. }, StoreOutcome::Lease(lease)) = (&call.operation, outcome)
            {
                let key = self.ending[at].clone();
                let value = sealed_state::MARK_VALUE.to_vec();
                let operation = EtcdOperation::CreateIfAbsent { key, value, lease: *lease };
                self.background.push(StoreCall { key: call.key, operation });
                return;
            }
            self.ending.swap_remove(at);
            match outcome {
                StoreOutcome::Marked | StoreOutcome::AlreadyUsed => host.count(metrics::AUTHORIZATIONS_ENDED),
                _ => host.log(
                    LogLevel::Warn,
                    "an authorization signed in by someone else could not be ended in the store: only its user's \
                     browser can still complete it",
                ),
            }
            return;
        }
        let Some(at) = self
            .sharing
            .iter()
            .position(|held| sealed_task::write_step_key(&held.user, &held.task_id, true) == call.key)
        else {
            return;
        };
        match sealed_task::write_step(store, host, self.sharing.get(at), Some(outcome), true) {
            Write::Wait(next) => self.background.push(next),
            Write::Done => {
                self.sharing.swap_remove(at);
            }
        }
    }

    /// From now on every message of `task_id` needs the credential, for
    /// `taskLifetimeSeconds` (or until the agent ends the task); with a
    /// shared store, on every replica (the gate is written in the
    /// background, and what the client gets next waits for it).
    pub fn gate(&mut self, host: &dyn Host, user: &str, task_id: &str) -> Result<(), StoreFull> {
        let until = host.now_unix_secs() + self.config.task_lifetime_secs;
        self.store.gate_task(host, user, task_id, until)?;
        let Some(store) = &self.config.shared_store else {
            return Ok(());
        };
        if self.background.len() >= MAX_BACKGROUND || self.gating.len() >= MAX_BACKGROUND {
            host.count(metrics::STORE_WRITE_FAILED);
            host.log(LogLevel::Warn, "a task's gate was kept in this Envoy only: too many writes waiting");
            return Ok(());
        }
        if let Some(step) = sealed_task::gate_write_step(store, host, task_id, until, None) {
            self.gating.retain(|(task, _)| task != task_id);
            self.gating.push((task_id.to_string(), until));
            self.fresh.push(step.key);
            self.background.push(step);
        }
        Ok(())
    }

    /// The gate another replica wrote for `task_id` (until `until`), kept
    /// here.
    fn gate_here(&self, host: &dyn Host, user: &str, task_id: &str, until: u64) -> Result<(), StoreFull> {
        self.store.gate_task(host, user, task_id, until)
    }

    /// Who the request is for: the configured claim of the user's bearer
    /// token, verified by this filter or (on this very request) by
    /// claim-enforcement. An unverified token names nobody.
    pub fn identify(&mut self, host: &dyn Host, request: &Request, round: Round<'_>) -> Identity {
        let primary = &self.config.primary;
        let token = match extract_token(&request.primary, &primary.prefix) {
            Ok(token) => token,
            Err(TokenProblem::Missing) => return Identity::Anonymous,
            Err(TokenProblem::Malformed(why)) => {
                return Identity::Refused {
                    malformed: true,
                    reason: "invalid_request".into(),
                    description: why.to_string(),
                };
            }
        };
        let claims = match &primary.verification {
            PrimaryVerification::ClaimEnforcement => {
                if !handoff::records(request.verified_upstream.as_deref(), token) {
                    return Identity::NotVerifiedUpstream;
                }
                // claim-enforcement verified exactly this token on this
                // request: its claims are as trustworthy as its signature.
                match UnverifiedJwt::parse(token, DEFAULT_MAX_TOKEN_BYTES) {
                    Ok(jwt) => SubjectClaims::Decoded(Box::new(jwt.into_claims())),
                    Err(_) => return Identity::NotVerifiedUpstream,
                }
            }
            PrimaryVerification::Providers(providers) => {
                match self.verifier.verify(host, token, providers, round.keys) {
                    Ok((verified, _)) => SubjectClaims::Verified(verified),
                    Err(VerifyError::AwaitKeys(provider)) => return Identity::AwaitKeys(provider),
                    Err(VerifyError::KeysUnavailable(_)) => return Identity::KeysUnavailable,
                    Err(VerifyError::Invalid { reason, description }) => {
                        return Identity::Refused {
                            malformed: false,
                            reason: reason.to_string(),
                            description,
                        };
                    }
                }
            }
        };
        match claims.get().select(&primary.claim).and_then(Value::as_str) {
            Some(user) if !user.is_empty() && !user.chars().any(char::is_control) => {
                Identity::User(user.to_string())
            }
            _ => Identity::Refused {
                malformed: false,
                reason: "user_claim_missing".into(),
                description: format!("the token has no {} naming the user", primary.claim),
            },
        }
    }

    /// The identity header to set for the agent.
    fn identity(&self, user: Option<&str>) -> Vec<(String, Secret)> {
        match (&self.config.identity_header, user) {
            (Some(header), Some(user)) => vec![(header.clone(), Secret::new(user))],
            _ => Vec::new(),
        }
    }

    /// Forwards with `set` and `body`; `answer` when the agent's answer is
    /// to be read. The identity header (and an injected one other than the
    /// user's own token header) come from this filter only, in no spelling
    /// a backend reads as the same name (`x_baton_user`).
    ///
    /// An answer the filter reads must come uncompressed: the request
    /// goes without `accept-encoding`.
    fn forward(
        &self,
        set: Vec<(String, Secret)>,
        body: Option<Vec<u8>>,
        answer: Option<AnswerContext>,
    ) -> Verdict {
        let mut strip: Vec<String> = self.config.identity_header.iter().cloned().collect();
        if self.config.inject_header != self.config.primary.header {
            strip.push(self.config.inject_header.clone());
        }
        let remove = if answer.is_some() { vec!["accept-encoding".to_string()] } else { Vec::new() };
        Verdict::Forward(Forward { strip, remove, set, body, answer, ..Forward::default() })
    }

    /// Forwards without the secondary credential: the verified user (if
    /// any) in the identity header.
    fn pass(&self, user: Option<String>) -> Verdict {
        self.forward(self.identity(user.as_deref()), None, None)
    }

    /// Decides what happens to `request`.
    pub fn decide(&mut self, host: &dyn Host, request: &Request, round: Round<'_>) -> Verdict {
        let config = Rc::clone(&self.config);
        // Rules, the agent card and the OAuth paths decide on this path only
        // if no other hop can read another one from it.
        if let Some(why) = ambiguous_path(&request.path) {
            return self.deny(
                host,
                &mut AuditLine::new(host, config.audit_log),
                &Value::Null,
                &Denial::AmbiguousPath(why),
            );
        }
        // Nor on this method, if rules look at methods and the agent may
        // act on another one.
        if let Some(second) = request.method_override
            && config.rules.iter().any(|rule| !rule.matcher.methods.is_empty())
        {
            let denial = Denial::AmbiguousMethod(second);
            return self.deny(host, &mut AuditLine::new(host, config.audit_log), &Value::Null, &denial);
        }
        if is_agent_card(&request.method, &request.path) {
            // Served naming the gateway, or not at all.
            return self.forward(Vec::new(), None, Some(AnswerContext::Card(Default::default())));
        }
        let path = request.path.split('?').next().unwrap_or("");
        if path == config.idp.redirect_path {
            return crate::callback::decide(self, host, request, round);
        }
        if let Some(login) = &config.binding.primary_login {
            if path == login.start_path {
                return crate::login::start(self, host, request, login);
            }
            if path == login.server.redirect_path {
                return crate::login::finish(self, host, request, login, round);
            }
        }
        let rule = config
            .rules
            .iter()
            .find(|r| r.matcher.matches(&request.method, &request.path, &request.authority));
        // A message a rule protects is decided once, whole: the user is
        // identified then, not twice (headers and body).
        if rule.is_some() && request.body.is_none() {
            return Verdict::ReadBody;
        }
        let user = match self.identify(host, request, round) {
            Identity::User(user) => Some(user),
            Identity::Anonymous | Identity::NotVerifiedUpstream => None,
            Identity::AwaitKeys(provider) if round.number < MAX_ROUNDS => {
                return Verdict::AwaitKeys(provider);
            }
            Identity::AwaitKeys(_) | Identity::KeysUnavailable => {
                let mut audit = AuditLine::new(host, config.audit_log);
                return self.deny(host, &mut audit, &Value::Null, &Denial::PrimaryKeysUnavailable);
            }
            Identity::Refused { malformed, reason, description } => {
                // Never forward a token this filter checked and refused.
                let denial = Denial::PrimaryRefused { malformed, reason, description };
                return self.deny(host, &mut AuditLine::new(host, config.audit_log), &Value::Null, &denial);
            }
        };
        let Some(rule) = rule else {
            if may_read_agent_card(&request.method, &request.path) {
                // A card under a prefix: served naming the gateway too.
                let card = Some(AnswerContext::Card(Default::default()));
                return self.forward(self.identity(user.as_deref()), None, card);
            }
            return self.pass(user);
        };
        let Some(body) = &request.body else {
            return Verdict::ReadBody;
        };
        let mut audit = AuditLine::new(host, config.audit_log);
        audit.set("rule", &rule.name);
        self.decide_message(host, request, body, rule, user, round, &mut audit)
    }

    #[allow(clippy::too_many_arguments)]
    fn decide_message(
        &mut self,
        host: &dyn Host,
        request: &Request,
        body: &[u8],
        rule: &Rule,
        user: Option<String>,
        round: Round<'_>,
        audit: &mut AuditLine,
    ) -> Verdict {
        let call = match a2a::parse_call(body, request.a2a_version.as_deref()) {
            Ok(call) => call,
            Err(error) => {
                let denial = Denial::JsonRpc { code: error.code, message: error.message };
                return self.deny(host, audit, &error.id, &denial);
            }
        };
        match call.kind {
            CallKind::Send | CallKind::Stream => {}
            CallKind::ExtendedCard => {
                let answer = RpcAnswer { card: true, ..RpcAnswer::of(user.clone()) };
                return self.forward(self.identity(user.as_deref()), None, Some(AnswerContext::Rpc(answer)));
            }
            CallKind::GetTask | CallKind::CancelTask | CallKind::SubscribeToTask => {
                return self.task_call(host, &call, user, round, audit);
            }
            CallKind::Other => return self.pass(user),
        }
        let Some(user) = user else {
            return self.deny(host, audit, &call.id, &Denial::NoUser);
        };
        audit.set("user", &user);
        if let Some(task) = call.task_id() {
            audit.set("task", task);
        }
        let identity = self.identity(Some(&user));
        let now = host.now_unix_secs();
        // With a shared store: the rest of writing the token this message
        // brought (kept in this Envoy already) to the store; then it goes
        // on with it, whatever the store said.
        let shared = self.config.shared_store.as_ref().map(|_| Rc::clone(&self.config));
        if let (Some(config), Some(task)) = (&shared, call.task_id())
            && let Some(store) = &config.shared_store
            && let Some(last) = round.store_step(&sealed_task::write_step_key(&user, task, false))
        {
            let record = self.store.task(host, &user, task);
            if let Write::Wait(step) =
                sealed_task::write_step(store, host, record.as_ref(), Some(last), false)
            {
                return Verdict::AwaitStore(Box::new(step));
            }
            return match record.as_ref().and_then(|record| record.usable_token(now)) {
                Some(token) => {
                    audit.set("credential", "message");
                    self.inject(host, call, user, identity, token, record, audit)
                }
                // Not reached: the record was kept the round before.
                None => self.challenge(host, &call, &user, None, audit),
            };
        }
        // A step needs the credential when the rule's condition holds, when
        // its task does (the gateway challenged it: every later message
        // needs it, whatever it says), or when it brings one (which is then
        // checked, never dropped unread).
        let condition = rule.when.as_ref().is_none_or(|when| condition_holds(&call, when));
        // The user's own record of the task says it is gated (one read
        // fewer); otherwise the task's gate, whoever was challenged.
        let record = call.task_id().and_then(|task| self.store.task(host, &user, task));
        let mut gated = !condition
            && (record.is_some() || call.task_id().is_some_and(|task| self.store.task_gated(host, task)));
        // Counted once per message (a later round finds the gate kept).
        let mut count_gated = gated && round.number == 0;
        if !condition && !gated && !call.mentions_credentials() {
            // With a shared store, another replica may have gated the task.
            match self.gated_elsewhere(host, &call, &user, round, audit) {
                Ok(true) => (gated, count_gated) = (true, true),
                Ok(false) => {
                    return self.forward(identity, None, Some(AnswerContext::Rpc(RpcAnswer::of(Some(user)))));
                }
                Err(verdict) => return *verdict,
            }
        }
        if gated {
            if count_gated {
                host.count(metrics::GATED_FOLLOW_UPS);
            }
            audit.set("gated", "task");
        }
        if call.mentions_credentials() && call.credentials().len() != 1 {
            return self.deny(host, audit, &call.id, &Denial::CredentialsAmbiguous);
        }

        let max_state = self.max_state_chars();
        let credential =
            call.credentials().first().copied().map(|object| parse_credential(object, max_state));
        let token = match credential {
            Some(Some(Credentials::Token(_))) if self.config.binding.secondary_claim.is_none() => {
                // Nothing would show whose token it is: only the gateway's
                // own flow binds a credential to the user.
                return self.deny(host, audit, &call.id, &Denial::TokenNotBindable);
            }
            Some(Some(Credentials::Token(token))) => token,
            Some(Some(Credentials::Code { code, state, iss })) => {
                let key = TokenHash::of(state.as_bytes());
                match round.outcome_for(&key) {
                    Some(ExchangeOutcome::Token { access, .. }) => access.clone(),
                    Some(ExchangeOutcome::Refused(why)) => {
                        audit.set("exchange", why);
                        return self.refuse_credential(
                            host,
                            &call,
                            &user,
                            "invalid_grant",
                            "the authorization code was refused",
                            audit,
                        );
                    }
                    Some(ExchangeOutcome::GatewayRefused(why)) => {
                        return self.deny(host, audit, &call.id, &Denial::GatewayRefused(why.clone()));
                    }
                    Some(ExchangeOutcome::Unavailable(why)) => {
                        return self.deny(host, audit, &call.id, &Denial::ExchangeUnavailable(why.clone()));
                    }
                    None | Some(ExchangeOutcome::Store(_)) => {
                        let relayed = RelayedCode { code: &code, state: &state, iss: iss.as_deref() };
                        return self.start_code_exchange(host, &call, &user, &relayed, round, audit);
                    }
                }
            }
            Some(None) => return self.deny(host, audit, &call.id, &Denial::CredentialsMalformed),
            None => match record.as_ref().and_then(|record| record.usable_token(now)) {
                Some(stored) => {
                    audit.set("credential", "stored");
                    return self.inject(host, call, user, identity, stored, record, audit);
                }
                None => return self.stored_elsewhere(host, call, user, identity, record, round, audit),
            },
        };
        match self.accept_token(host, &token, &user, round) {
            Ok(expires_at) => {
                let record = match record {
                    Some(record) => TaskRecord { token: Some(token.clone()), expires_at, ..record },
                    None => TaskRecord {
                        user: user.clone(),
                        task_id: call.task_id().unwrap_or("").to_string(),
                        gateway_task: false,
                        token: Some(token.clone()),
                        expires_at,
                        context_id: call.context_id().unwrap_or("").to_string(),
                        challenge: None,
                    },
                };
                let stored = record.task_id.is_empty()
                    || (self.store.put_task(host, &record).is_ok()
                        && self.gate(host, &user, &record.task_id).is_ok());
                if !stored {
                    // This message still carries it; the next ones will ask.
                    host.count(metrics::STORE_FULL);
                }
                // Kept here: with a shared store, for every replica too
                // (the message waits for the lease and the put, and goes
                // on with the token whatever the store says).
                if let (true, false, Some(config)) = (stored, record.task_id.is_empty(), &shared)
                    && let Some(store) = &config.shared_store
                    && let Write::Wait(step) =
                        sealed_task::write_step(store, host, Some(&record), None, false)
                {
                    return Verdict::AwaitStore(Box::new(step));
                }
                audit.set("credential", "message");
                self.inject(host, call, user, identity, token, Some(record), audit)
            }
            Err(Refusal::AwaitKeys(provider)) if round.number < MAX_ROUNDS => Verdict::AwaitKeys(provider),
            Err(Refusal::AwaitKeys(_) | Refusal::KeysUnavailable) => {
                self.deny(host, audit, &call.id, &Denial::KeysUnavailable)
            }
            Err(Refusal::Invalid { reason, description }) => {
                self.refuse_credential(host, &call, &user, &reason, &description, audit)
            }
        }
    }

    /// Whether the task of `call` (whose rule does not hold, on a replica
    /// that does not know it gated) was gated by another replica: its gate
    /// read from the shared store (a round the message waits for) and kept
    /// here. `Err` with the verdict while it waits, or a 503 when the store
    /// fails: a message of a gated task never goes without the token.
    fn gated_elsewhere(
        &mut self,
        host: &dyn Host,
        call: &Call,
        user: &str,
        round: Round<'_>,
        audit: &mut AuditLine,
    ) -> Result<bool, Box<Verdict>> {
        let config = Rc::clone(&self.config);
        let (Some(store), Some(task)) = (&config.shared_store, call.task_id()) else {
            return Ok(false);
        };
        let found = self.read_shared(host, call, sealed_task::read_gate(store, task), round, audit)?;
        let key = sealed_task::gate_key(store, task);
        let until =
            found.and_then(|value| sealed_task::open_gate(store, &key, value, task, host.now_unix_secs()));
        let Some(until) = until else {
            return Ok(false);
        };
        if self.gate_here(host, user, task, until).is_err() {
            host.count(metrics::STORE_FULL);
        }
        Ok(true)
    }

    /// A message that needs the credential, brings none, and finds no token
    /// for its task in this Envoy: with a shared store and a task, the
    /// store's record is read (a round the message waits for), opened and
    /// checked for this user and task, kept here, and injected. Absent,
    /// not opening, another user's or task's, or expired: challenged, as
    /// without a store. A store that does not answer, refuses or answers
    /// garbage: 503, nothing forwarded (a challenge would send the user
    /// round a redirect that cannot help while the store is down, and a
    /// forward would go without the token the rule requires).
    #[allow(clippy::too_many_arguments)]
    fn stored_elsewhere(
        &mut self,
        host: &dyn Host,
        call: Call,
        user: String,
        identity: Vec<(String, Secret)>,
        local: Option<TaskRecord>,
        round: Round<'_>,
        audit: &mut AuditLine,
    ) -> Verdict {
        let config = Rc::clone(&self.config);
        let (Some(store), Some(task)) = (&config.shared_store, call.task_id()) else {
            return self.challenge(host, &call, &user, None, audit);
        };
        let found = match self.read_shared(host, &call, sealed_task::read(store, &user, task), round, audit) {
            Ok(found) => found,
            Err(verdict) => return *verdict,
        };
        let found = found.and_then(|value| {
            let key = sealed_task::key(store, &user, task);
            let opened = sealed_task::open(store, &key, value, &user, task, host.now_unix_secs());
            if opened.is_none() {
                host.log(LogLevel::Info, "a task record in the store did not open for this message");
            }
            opened
        });
        let Some(found) = found else {
            return self.challenge(host, &call, &user, None, audit);
        };
        // Kept here for the task's next messages: what this Envoy knew of
        // the task (a task it named), with the token the store had; a task
        // the fleet named is the gateway's whichever replica wrote it.
        let named_by_the_fleet = gateway_task::recognizes(Some(store), &user, task);
        let mut record = match local {
            Some(local) => TaskRecord { token: found.token.clone(), expires_at: found.expires_at, ..local },
            None => found,
        };
        record.gateway_task |= named_by_the_fleet;
        let until = host.now_unix_secs() + self.config.task_lifetime_secs;
        if self.store.put_task(host, &record).is_err() || self.gate_here(host, &user, task, until).is_err() {
            // This message still carries it.
            host.count(metrics::STORE_FULL);
        }
        let Some(token) = record.usable_token(host.now_unix_secs()) else {
            return self.challenge(host, &call, &user, None, audit);
        };
        audit.set("credential", "shared_store");
        self.inject(host, call, user, identity, token, Some(record), audit)
    }

    /// Validates a secondary token for `user`: signature, issuer, audience,
    /// expiry, the configured requirements, and (`secondaryClaim`) that it
    /// names `user`. Returns when it expires.
    pub(crate) fn accept_token(
        &mut self,
        host: &dyn Host,
        token: &Secret,
        user: &str,
        round: Round<'_>,
    ) -> Result<u64, Refusal> {
        let verified =
            match self.verifier.verify(host, token.expose(), &self.config.idp.provider_ids, round.keys) {
                Ok((verified, _)) => verified,
                Err(VerifyError::AwaitKeys(provider)) => return Err(Refusal::AwaitKeys(provider)),
                Err(VerifyError::KeysUnavailable(_)) => return Err(Refusal::KeysUnavailable),
                Err(VerifyError::Invalid { reason, description }) => {
                    return Err(Refusal::Invalid { reason: reason.to_string(), description });
                }
            };
        let decision = self.config.requirement.evaluate(&verified.claims, host.now_unix_secs());
        if decision != AccessDecision::Granted {
            return Err(Refusal::Invalid {
                reason: decision.reason().to_string(),
                description: decision.description(),
            });
        }
        if let Some(claim) = &self.config.binding.secondary_claim
            && verified.claims.select(claim).and_then(Value::as_str) != Some(user)
        {
            host.count(metrics::BINDING_REFUSED);
            return Err(Refusal::Invalid {
                reason: "user_mismatch".into(),
                description: "the credential belongs to another user".into(),
            });
        }
        Ok(verified
            .claims
            .exp
            .and_then(|exp| u64::try_from(exp).ok())
            .unwrap_or_else(|| host.now_unix_secs() + self.config.state_ttl_secs))
    }

    /// A code relayed in `call` by `user`: the `state` is taken for it if
    /// the message may use it, and the code exchanged. A message that may
    /// not (another user's, task's or context's, an `iss` naming another
    /// server) is a misuse: refused, and the `state` used up by it.
    fn start_code_exchange(
        &mut self,
        host: &dyn Host,
        call: &Call,
        user: &str,
        relayed: &RelayedCode<'_>,
        round: Round<'_>,
        audit: &mut AuditLine,
    ) -> Verdict {
        if round.number >= MAX_ROUNDS {
            return self.deny(host, audit, &call.id, &Denial::TooManyRounds);
        }
        // Whether this message may use the state: its user, its task and
        // context, (with a browser sign-in) a browser that signed in as the
        // user, and the `iss` a client passes on from the redirect.
        let (task, context) = (call.task_id(), call.context_id());
        let signed_in_browser = self.config.binding.primary_login.is_some();
        let iss = relayed.iss;
        let check = |pending: &PendingAuthorization| {
            if pending.user != user {
                return Err(Denial::StateOtherUser);
            }
            // With a browser sign-in, a code counts only for an
            // authorization whose browser signed in as the user (it then
            // normally comes back through the redirect; a client that caught
            // it may send it here).
            if signed_in_browser && pending.browser.is_none() {
                return Err(Denial::BrowserNotSignedIn);
            }
            if task.is_some_and(|task| task != pending.task_id)
                || context.is_some_and(|context| context != pending.context_id)
            {
                return Err(Denial::StateOtherTask);
            }
            // A client that passes the redirect's `iss` on gets it checked
            // (RFC 9207), as at the redirect path: a mix-up attempt.
            if iss.is_some() && self.config.idp.check_response_issuer(iss).is_err() {
                return Err(Denial::IssuerMismatch);
            }
            Ok(())
        };
        let pending = match self.take_state(host, relayed.state, round, check) {
            Taken::Pending(pending) => pending,
            Taken::Misused { refusal, store_fault } => {
                if matches!(refusal, Denial::StateOtherUser) {
                    host.log(
                        LogLevel::Warn,
                        &format!("state issued to another user presented by user={user}"),
                    );
                }
                if let Some(why) = store_fault {
                    host.count(metrics::STORE_UNAVAILABLE);
                    audit.set("store", why);
                }
                return self.deny(host, audit, &call.id, &refusal);
            }
            Taken::Wait(step) => return Verdict::AwaitStore(Box::new(step)),
            Taken::Unavailable(why) => {
                return self.deny(host, audit, &call.id, &Denial::StoreUnavailable(why));
            }
            Taken::Refused(StateProblem::Expired) => {
                host.count(metrics::STATE_MISUSE);
                audit.set("state", "expired");
                return self.challenge(
                    host,
                    call,
                    user,
                    Some(("state_expired", "the authorization request expired; authorize again")),
                    audit,
                );
            }
            Taken::Refused(problem) => {
                return self.deny(host, audit, &call.id, &Denial::StateUnusable(problem.reason()));
            }
        };
        Verdict::AwaitCall(Box::new(code_exchange(
            &self.config.idp,
            0,
            relayed.state,
            relayed.code,
            &pending.verifier,
        )))
    }

    /// Forwards with the secondary token injected, the credential stripped,
    /// and a gateway-made task id removed (the agent does not know it).
    #[allow(clippy::too_many_arguments)]
    fn inject(
        &self,
        host: &dyn Host,
        mut call: Call,
        user: String,
        mut set: Vec<(String, Secret)>,
        token: Secret,
        record: Option<TaskRecord>,
        audit: &mut AuditLine,
    ) -> Verdict {
        let mut rewritten = false;
        if call.mentions_credentials() {
            call.strip_credentials();
            rewritten = true;
        }
        let gateway_task = record.as_ref().is_some_and(|record| record.gateway_task);
        if gateway_task {
            if let Some(message) =
                call.body.get_mut("params").and_then(|p| p.get_mut("message")).and_then(Value::as_object_mut)
            {
                message.remove("taskId");
            }
            rewritten = true;
        }
        audit.token_as("secondary", token.expose().as_bytes());
        audit.allow("injected").emit(host);
        host.count(metrics::TOKENS_INJECTED);
        let rebind = record.filter(|record| record.gateway_task).map(|record| Rebind {
            user: user.clone(),
            from_task: record.task_id,
            token: token.clone(),
            expires_at: record.expires_at,
        });
        set.push((
            self.config.inject_header.clone(),
            Secret::new(format!("{}{}", self.config.inject_prefix, token.expose())),
        ));
        let answer = RpcAnswer { rebind, ..RpcAnswer::of(Some(user)) };
        self.forward(set, rewritten.then(|| call.to_bytes()), Some(AnswerContext::Rpc(answer)))
    }

    fn refuse_credential(
        &mut self,
        host: &dyn Host,
        call: &Call,
        user: &str,
        reason: &str,
        description: &str,
        audit: &mut AuditLine,
    ) -> Verdict {
        host.count(metrics::VALIDATION_FAILURES);
        audit.set("refused", reason);
        match self.config.on_invalid_credential {
            InvalidCredential::Challenge => {
                self.challenge(host, call, user, Some(("invalid_token", description)), audit)
            }
            InvalidCredential::Reject => {
                let denial = Denial::CredentialRefused {
                    reason: reason.to_string(),
                    description: description.to_string(),
                };
                self.deny(host, audit, &call.id, &denial)
            }
        }
    }

    /// Answers request `id` with `denial`: its audit line, counter and
    /// JSON-RPC error.
    pub(crate) fn deny(
        &self,
        host: &dyn Host,
        audit: &mut AuditLine,
        id: &Value,
        denial: &Denial,
    ) -> Verdict {
        let reply = denial.reply(id, &self.config.idp.name);
        if let Some(counter) = denial.counter() {
            host.count(counter);
        }
        if let Denial::StoreUnavailable(why) = denial {
            audit.set("store", why);
        }
        audit.deny(reply.status, denial.reason()).emit(host);
        Verdict::Reply(reply)
    }

    /// Answers with an auth-required task (and remembers the challenge).
    fn challenge(
        &mut self,
        host: &dyn Host,
        call: &Call,
        user: &str,
        error: Option<(&str, &str)>,
        audit: &mut AuditLine,
    ) -> Verdict {
        let ids = (|| {
            Some(TaskIds {
                task_id: match call.task_id() {
                    Some(task) => task.to_string(),
                    None => gateway_task::new_id(self.config.shared_store.as_ref(), host, user)?,
                },
                context_id: match call.context_id() {
                    Some(context) => context.to_string(),
                    None => random_id(host)?,
                },
            })
        })();
        // The gateway's own task: one it names now, or one another replica
        // named for this user (recognized by its id).
        let gateway_task = call
            .task_id()
            .is_none_or(|task| gateway_task::recognizes(self.config.shared_store.as_ref(), user, task));
        let issued = ids
            .as_ref()
            .ok_or(IssueProblem::NoRandomness)
            .and_then(|ids| issue(&self.config, &self.store, host, user, ids, gateway_task, error));
        let (Some(ids), Ok(issued), Some(message_id)) = (ids, issued.as_ref(), random_id(host)) else {
            match issued.err() {
                // Full of other users' live authorizations: none is pushed
                // out, this one waits.
                Some(IssueProblem::StoreFull) => return self.deny(host, audit, &call.id, &Denial::StoreFull),
                Some(IssueProblem::StateTooLong) => {
                    return self.deny(host, audit, &call.id, &Denial::StateTooLong);
                }
                Some(IssueProblem::NoRandomness) | None => {
                    return self.deny(host, audit, &call.id, &Denial::NoRandomness);
                }
            }
        };
        let issued = issued.clone();
        if self.gate(host, user, &ids.task_id).is_err() {
            return self.deny(host, audit, &call.id, &Denial::StoreFull);
        }
        let text = self.challenge_text();
        let answer = a2a::challenge_answer(
            call,
            &ids,
            &message_id,
            &text,
            issued.object,
            &baton_token::clock::rfc3339(host.now_unix_secs()),
        );
        host.count(metrics::CHALLENGES);
        audit.set("task", &ids.task_id).token_as("state", issued.state.as_bytes());
        audit.deny(self.config.challenge_status, "auth_required").emit(host);
        // With a store, the gateway's task (its context and challenge) is
        // written for every replica; the reply waits for it (its next call
        // may land anywhere).
        if let Some(record) = gateway_task.then(|| self.store.task(host, user, &ids.task_id)).flatten() {
            self.share_in_background(host, &record);
        }
        Verdict::Reply(a2a::result_reply(
            self.config.challenge_status,
            &call.id,
            &answer.result,
            answer.stream,
        ))
    }

    /// What an auth-required status says.
    fn challenge_text(&self) -> String {
        format!(
            "This step needs your authorization at {}. Open the authorization URL, then continue the task.",
            self.config.idp.name
        )
    }

    /// `GetTask`, `CancelTask` or `SubscribeToTask`. A task only the
    /// gateway knows (it named it in a challenge to this user) is answered
    /// here: waiting for authorization, or canceled with its pending
    /// authorization. Any other task call goes to the agent, whose answer
    /// is read for the task's end.
    fn task_call(
        &mut self,
        host: &dyn Host,
        call: &Call,
        user: Option<String>,
        round: Round<'_>,
        audit: &mut AuditLine,
    ) -> Verdict {
        let record = match (&user, call.named_task()) {
            (Some(user), Some(task)) => match self.store.task(host, user, task).filter(|r| r.gateway_task) {
                Some(record) => Some(record),
                // A task another replica named for this user: its record
                // is in the store.
                None if gateway_task::recognizes(self.config.shared_store.as_ref(), user, task) => {
                    match self.gateway_task_elsewhere(host, call, user, task, round, audit) {
                        Ok(record) => record,
                        Err(verdict) => return *verdict,
                    }
                }
                None => None,
            },
            _ => None,
        };
        let Some(record) = record else {
            let answer = AnswerContext::Rpc(RpcAnswer::of(user.clone()));
            return self.forward(self.identity(user.as_deref()), None, Some(answer));
        };
        host.count(metrics::GATEWAY_TASK_CALLS);
        audit.set("user", &record.user).set("task", &record.task_id);
        let ids = TaskIds { task_id: record.task_id.clone(), context_id: record.context_id.clone() };
        let now = host.now_unix_secs();
        let timestamp = baton_token::clock::rfc3339(now);
        let result = if call.kind == CallKind::CancelTask {
            // The authorization it waited for can no longer complete.
            if let Some(state) =
                record.challenge.as_ref().and_then(|c| c.get("state")).and_then(Value::as_str)
            {
                let _ = self.store.consume_state(host, state);
                // A sealed `state` is used up in the store, for every
                // replica (best effort, as after someone else's sign-in).
                if let Some(store) = &self.config.shared_store
                    && let Ok(opened) = sealed_state::open(store, &self.config.idp, state)
                {
                    self.end_authorization_in_background(host, opened.mark, opened.pending.expires_at);
                }
            }
            // The gateway's own answer is not held for the delete: a record
            // left a moment longer serves its own user only.
            self.end_task(host, Some(&record.user), &record.task_id);
            host.count(metrics::TASKS_ENDED);
            audit.allow("gateway_task_canceled").emit(host);
            a2a::gateway_task(call, &ids, GatewayTaskState::Canceled, None, &timestamp)
        } else {
            let Some(message_id) = random_id(host) else {
                return self.deny(host, audit, &call.id, &Denial::NoRandomness);
            };
            let (text, challenge) = match record.usable_token(now) {
                Some(_) => (
                    format!("Authorized at {}. Send a message to continue the task.", self.config.idp.name),
                    None,
                ),
                None => (self.challenge_text(), record.challenge.clone()),
            };
            audit.allow("gateway_task_read").emit(host);
            let message = Some((message_id.as_str(), text.as_str(), challenge));
            a2a::gateway_task(call, &ids, GatewayTaskState::AuthRequired, message, &timestamp)
        };
        Verdict::Reply(a2a::result_reply(a2a::RESULT_STATUS, &call.id, &result, call.streams()))
    }

    /// What the shared store holds under `read`'s key, read in a round the
    /// request waits for: `Ok(None)` when absent; `Err` with the verdict
    /// while it waits, or a 503 when the store fails, answers garbage or
    /// does not answer (nothing forwarded).
    fn read_shared<'r>(
        &mut self,
        host: &dyn Host,
        call: &Call,
        read: StoreCall,
        round: Round<'r>,
        audit: &mut AuditLine,
    ) -> Result<Option<&'r [u8]>, Box<Verdict>> {
        match round.store_step(&read.key) {
            None => Err(Box::new(Verdict::AwaitStore(Box::new(read)))),
            Some(StoreOutcome::Unused) => Ok(None),
            Some(StoreOutcome::Found(value)) => Ok(Some(value)),
            Some(StoreOutcome::Unavailable(why)) => {
                Err(Box::new(self.deny(host, audit, &call.id, &Denial::StoreUnavailable(why))))
            }
            Some(_) => {
                let denial = Denial::StoreUnavailable("store_malformed");
                Err(Box::new(self.deny(host, audit, &call.id, &denial)))
            }
        }
    }

    /// The record of `user`'s task `task` that another replica named (see
    /// [`gateway_task`]), read from the store (a round the call waits
    /// for) and kept here: `Ok(None)` when the store has none (the task
    /// is over, or its record was never written); `Err` with the verdict
    /// while it waits, or a 503 when the store fails.
    fn gateway_task_elsewhere(
        &mut self,
        host: &dyn Host,
        call: &Call,
        user: &str,
        task: &str,
        round: Round<'_>,
        audit: &mut AuditLine,
    ) -> Result<Option<TaskRecord>, Box<Verdict>> {
        let config = Rc::clone(&self.config);
        let Some(store) = &config.shared_store else {
            return Ok(None);
        };
        let found = self.read_shared(host, call, sealed_task::read(store, user, task), round, audit)?;
        let key = sealed_task::key(store, user, task);
        let found =
            found.and_then(|value| sealed_task::open(store, &key, value, user, task, host.now_unix_secs()));
        let Some(mut record) = found else {
            return Ok(None);
        };
        record.gateway_task = true;
        if self.store.put_task(host, &record).is_err() {
            host.count(metrics::STORE_FULL);
        }
        Ok(Some(record))
    }

    /// Interprets the answer to code exchange `call`. Only `invalid_grant`
    /// is the code's fault (expired, used, another verifier); any other
    /// refusal is the gateway's own (its client or request), logged as an
    /// error naming the server.
    pub fn exchange_outcome(
        &self,
        host: &dyn Host,
        call: &TokenCall,
        status: Option<u16>,
        body: &[u8],
    ) -> ExchangeOutcome {
        let server = match (call.endpoint, &self.config.binding.primary_login) {
            (crate::login::LOGIN_ENDPOINT, Some(login)) => &login.server.name,
            _ => &self.config.idp.name,
        };
        match baton_token::oauth::TokenResponse::parse(status, body, Default::default()) {
            Ok(response) => {
                host.count(metrics::CODES_EXCHANGED);
                ExchangeOutcome::Token { access: response.access_token, id_token: response.id_token }
            }
            Err(error @ TokenEndpointError::Rejected { code: OAuthErrorCode::InvalidGrant, .. }) => {
                host.log(LogLevel::Info, &format!("idp={server} code exchange refused the code: {error}"));
                ExchangeOutcome::Refused(error.reason())
            }
            Err(error @ TokenEndpointError::Rejected { .. })
                if !matches!(error, TokenEndpointError::Rejected { code: OAuthErrorCode::Other(_), .. }) =>
            {
                host.count(metrics::GATEWAY_REFUSED);
                host.log(
                    LogLevel::Error,
                    &format!(
                        "idp={server} code exchange failed: {error}; the IdP refused the gateway's own request: \
                         check its client registration (client id, secret, redirect URI, grant types)"
                    ),
                );
                ExchangeOutcome::GatewayRefused(error.reason())
            }
            Err(error) => {
                host.log(LogLevel::Warn, &format!("idp={server} code exchange failed: {error}"));
                ExchangeOutcome::Unavailable(error.reason())
            }
        }
    }
}

/// Claims of the user's token: shared with the verification cache, or
/// decoded from a token claim-enforcement verified.
enum SubjectClaims {
    Verified(Rc<VerifiedToken>),
    Decoded(Box<baton_token::claims::Claims>),
}

impl SubjectClaims {
    fn get(&self) -> &baton_token::claims::Claims {
        match self {
            SubjectClaims::Verified(verified) => &verified.claims,
            SubjectClaims::Decoded(claims) => claims,
        }
    }
}

/// A credential object, read.
pub(crate) enum Credentials {
    Token(Secret),
    /// A code and its state, and the redirect's RFC 9207 `iss` when the
    /// client passed it on.
    Code {
        code: Secret,
        state: String,
        iss: Option<String>,
    },
}

/// Reads a credential object; a `state` longer than `max_state` is no
/// credential.
pub(crate) fn parse_credential(object: &Map<String, Value>, max_state: usize) -> Option<Credentials> {
    match (object.get("accessToken"), object.get("code"), object.get("state")) {
        (Some(Value::String(token)), None, None) if !token.is_empty() => {
            Some(Credentials::Token(Secret::new(token.clone())))
        }
        (None, Some(Value::String(code)), Some(Value::String(state)))
            if !code.is_empty() && code.len() <= 2048 && !state.is_empty() && state.len() <= max_state =>
        {
            let iss = match object.get("iss") {
                None => None,
                Some(Value::String(iss)) => Some(iss.clone()),
                Some(_) => return None,
            };
            Some(Credentials::Code { code: Secret::new(code.clone()), state: state.clone(), iss })
        }
        _ => None,
    }
}

/// The authorization code grant for `code` at `server` (token endpoint
/// `endpoint` of the filter's list; RFC 6749 §4.1.3 with the RFC 7636
/// verifier), keyed by the `state` it came back with.
pub fn code_exchange(
    server: &AuthorizationServer,
    endpoint: usize,
    state: &str,
    code: &Secret,
    verifier: &Secret,
) -> TokenCall {
    let request = TokenRequest {
        grant: Grant::AuthorizationCode {
            code: code.clone(),
            redirect_uri: server.redirect_uri.clone(),
            code_verifier: verifier.clone(),
        },
        audiences: Vec::new(),
        resources: Vec::new(),
        scope: None,
        extra: Vec::new(),
    };
    TokenCall {
        key: TokenHash::of(state.as_bytes()),
        endpoint,
        request: request.encode(&server.token_endpoint.client_auth),
        requested_token_type: None,
        token_exchange: false,
        carries_caller_token: true,
        // Verified in full against the server's providers once it arrives.
        expected_audiences: Vec::new(),
        expected_issuer: None,
        not_after: None,
        label: "authorization_code".into(),
    }
}

/// Whether the message holds the condition's value anywhere an agent could
/// read it: in any data part (or either metadata), as any value an agent
/// may read as equal to a configured one.
fn condition_holds(call: &Call, when: &crate::model::MessageCondition) -> bool {
    let holds = |value: &Value| when.values.iter().any(|wanted| same_to_agents(value, wanted));
    match when.source {
        ConditionSource::Data => call.data_at(&when.pointer).any(holds),
        ConditionSource::Metadata => call.metadata_at(&when.pointer).any(holds),
    }
}

/// Whether an agent could read `seen` as `wanted`: strings compared without
/// case, surrounding whitespace, invisible characters or full-width forms
/// ("Transfer ", "ＴＲＡＮＳＦＥＲ"); a list holding it; a number or boolean
/// written as text.
fn same_to_agents(seen: &Value, wanted: &Value) -> bool {
    match (seen, wanted) {
        (Value::Array(items), _) => items.iter().any(|item| same_to_agents(item, wanted)),
        (Value::String(a), Value::String(b)) => folded(a) == folded(b),
        (Value::String(text), scalar @ (Value::Number(_) | Value::Bool(_)))
        | (scalar @ (Value::Number(_) | Value::Bool(_)), Value::String(text)) => {
            let written = scalar.to_string();
            folded(text) == written
        }
        _ => seen == wanted,
    }
}

/// Text as an agent (or a model) would compare it.
fn folded(text: &str) -> String {
    text.chars()
        .filter(|c| !matches!(c, '\u{00ad}' | '\u{200b}'..='\u{200f}' | '\u{2060}'..='\u{2064}' | '\u{feff}'))
        .map(|c| match c {
            // Full-width ASCII forms read as the ASCII letters they show.
            '\u{ff01}'..='\u{ff5e}' => char::from_u32(c as u32 - 0xfee0).unwrap_or(c),
            '\u{3000}' => ' ',
            c => c,
        })
        .collect::<String>()
        .trim()
        .to_lowercase()
}

#[cfg(test)]
#[path = "decision_tests.rs"]
mod tests;

/// What the background steps of ending the authorization marked `mark`
/// are named by.
fn ending_step_key(mark: &[u8]) -> TokenHash {
    TokenHash::of_parts(&[b"end-authorization", mark])
}
