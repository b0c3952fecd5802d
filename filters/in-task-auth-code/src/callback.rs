//! The secondary IdP's redirect (the path of `secondaryIdp.redirectUri`):
//! the user's browser arrives with `code` and `state` after authorizing.
//! The filter checks who sent it (RFC 9207 `iss`) and, with
//! `userBinding.primaryLogin`, that this is the browser that signed in as
//! the user who asked; then exchanges the code itself (with the PKCE
//! verifier only it knows), validates the token, checks it names the user
//! (`secondaryClaim`), and keeps it for the user's task, so the next message
//! of that task carries it with nothing in the body.
//!
//! With a shared store the `state` is the sealed authorization: any replica
//! opens it, and its single use is settled in the store before the code is
//! exchanged ([`crate::sealed_state`]).

use std::convert::Infallible;

use baton_filter_kit::host::Host;
use baton_token::TokenHash;
use baton_token::secret::Secret;
use serde_json::json;

use crate::browser::{Answer, RedirectQuery, browser_id, cookie_value, read_redirect};
use crate::decision::{
    Engine, ExchangeOutcome, MAX_ROUNDS, Refusal, Request, Round, Taken, Verdict, code_exchange,
};
use crate::denial::{PageDenial, Step};
use crate::store::{PendingAuthorization, TaskRecord};

/// Decides a request to the secondary IdP's redirect path.
pub fn decide(engine: &mut Engine, host: &dyn Host, request: &Request, round: Round<'_>) -> Verdict {
    let answer = Answer::new(host, engine.config.audit_log, Step::Bank, request);
    let (mut answer, query) = match read_redirect(answer, request, &["code", "state", "error", "iss"]) {
        Ok(read) => read,
        Err(refused) => return *refused,
    };
    let max_state = engine.max_state_chars();
    let Some(state) = query.single("state").filter(|s| !s.is_empty() && s.len() <= max_state) else {
        return answer.refuse(PageDenial::StateMissing(Step::Bank));
    };
    answer.audit.token_as("state", state.as_bytes());
    let Some(pending) = engine.pending_state(host, state) else {
        return answer.refuse(PageDenial::StateUnusable(Step::Bank, "state_unknown"));
    };
    answer.audit.set("user", &pending.user).set("task", &pending.task_id);
    match round.outcome_for(&TokenHash::of(state.as_bytes())) {
        None | Some(ExchangeOutcome::Store(_)) => {
            first_pass(engine, host, request, &query, state, pending, round, answer)
        }
        Some(ExchangeOutcome::Token { access, .. }) => keep(engine, host, access, &pending, round, answer),
        Some(ExchangeOutcome::Refused(why)) => {
            answer.audit.set("exchange", why);
            answer.refuse(PageDenial::CodeRefused(Step::Bank))
        }
        Some(ExchangeOutcome::GatewayRefused(why)) => {
            answer.audit.set("exchange", why);
            answer.refuse(PageDenial::GatewayRefused(Step::Bank))
        }
        Some(ExchangeOutcome::Unavailable(why)) => {
            answer.audit.set("exchange", why);
            // The state is used up: only a new authorization can work.
            answer.refuse(PageDenial::IdpUnavailable(Step::Bank))
        }
    }
}

/// The redirect as it arrives: which browser brings it and who sent it;
/// then the state is used (whatever happens next: with a shared store, in
/// the rounds its single use takes) and the code exchanged.
#[allow(clippy::too_many_arguments)]
fn first_pass(
    engine: &mut Engine,
    host: &dyn Host,
    request: &Request,
    query: &RedirectQuery,
    state: &str,
    pending: PendingAuthorization,
    round: Round<'_>,
    mut answer: Answer<'_>,
) -> Verdict {
    let config = engine.shared_config();
    // With a browser sign-in, only the browser that signed in as the user
    // who asked may bring the code back (RFC 9700 §4.7): a link that went to
    // someone else ends here, whoever approved at the bank. The state stays
    // usable for the right browser.
    if config.binding.primary_login.is_some() {
        let browser = cookie_value(request.cookie.as_deref(), &config.cookie).map(browser_id);
        if browser.is_none() || pending.browser != browser {
            return answer.refuse(PageDenial::BrowserNotSignedIn);
        }
    }
    // Whatever refuses the redirect is decided before the state is used (a
    // shared store's mark included): a refused redirect leaves the state as
    // it was, for the one that brings the code.
    // RFC 9207: a redirect naming another server is a mix-up attempt.
    if let Err(problem) = config.idp.check_response_issuer(query.single("iss")) {
        return answer.refuse(PageDenial::IssuerMismatch(Step::Bank, problem.reason()));
    }
    if let Some(error) = query.single("error") {
        return answer.denied_by_idp(error);
    }
    let Some(code) = query.single("code").filter(|c| !c.is_empty() && c.len() <= 2048) else {
        return answer.refuse(PageDenial::CodeMissing(Step::Bank));
    };
    let pending = match engine.take_state(host, state, round, |_| Ok::<(), Infallible>(())) {
        Taken::Pending(pending) => pending,
        Taken::Denied(never) => match never {},
        Taken::Refused(problem) => {
            return answer.refuse(PageDenial::StateUnusable(Step::Bank, problem.reason()));
        }
        Taken::Wait(call) => return Verdict::AwaitStore(Box::new(call)),
        Taken::Unavailable(why) => {
            answer.audit.set("store", why);
            return answer.refuse(PageDenial::StoreUnavailable(Step::Bank));
        }
    };
    Verdict::AwaitCall(Box::new(code_exchange(&config.idp, 0, state, &Secret::new(code), &pending.verifier)))
}

/// The exchanged token: validated for the user and kept for the task.
fn keep(
    engine: &mut Engine,
    host: &dyn Host,
    token: &Secret,
    pending: &PendingAuthorization,
    round: Round<'_>,
    mut answer: Answer<'_>,
) -> Verdict {
    match engine.accept_token(host, token, &pending.user, round) {
        Ok(expires_at) => {
            let gateway_task = engine
                .store
                .task(host, &pending.user, &pending.task_id)
                .is_some_and(|record| record.gateway_task);
            let record = TaskRecord {
                user: pending.user.clone(),
                task_id: pending.task_id.clone(),
                gateway_task,
                token: Some(token.clone()),
                expires_at,
                context_id: pending.context_id.clone(),
                challenge: None,
            };
            if engine.store.put_task(host, &record).is_err()
                || engine.gate(host, &pending.user, &pending.task_id).is_err()
            {
                return answer.refuse(PageDenial::StoreFull);
            }
            answer.audit.token_as("secondary", token.expose().as_bytes());
            answer.done(
                "authorized",
                "You may return to your agent: the task can continue.",
                json!({"status": "authorized", "taskId": pending.task_id, "contextId": pending.context_id}),
            )
        }
        Err(Refusal::AwaitKeys(provider)) if round.number < MAX_ROUNDS => Verdict::AwaitKeys(provider),
        Err(Refusal::AwaitKeys(_) | Refusal::KeysUnavailable) => {
            answer.refuse(PageDenial::KeysUnavailable(Step::Bank))
        }
        Err(Refusal::Invalid { reason, description }) => {
            answer.audit.set("refused", &reason);
            answer.refuse(PageDenial::TokenRefused(description))
        }
    }
}
