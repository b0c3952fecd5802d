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
//! exchanged ([`crate::sealed_state`]); the token kept for the task is
//! written to the store too, sealed, before the page is answered
//! ([`crate::sealed_task`]), so the task's next message is served on any
//! replica. A failed write still completes the redirect here (counted and
//! logged): the token is kept in this Envoy.

use baton_filter_kit::host::Host;
use baton_token::TokenHash;
use baton_token::secret::Secret;
use serde_json::json;

use crate::browser::{Answer, RedirectQuery, browser_id, cookie_value};
use crate::decision::{
    Engine, ExchangeOutcome, MAX_ROUNDS, Refusal, Request, Round, Taken, Verdict, code_exchange,
};
use crate::denial::{PageDenial, Step};
use crate::gateway_task;
use crate::metrics;
use crate::sealed_task::{self, Write};
use crate::store::{PendingAuthorization, TaskRecord};

/// The redirect's names, each allowed once.
const PARAMETERS: [&str; 4] = ["code", "state", "error", "iss"];

/// Decides a request to the secondary IdP's redirect path.
pub fn decide(engine: &mut Engine, host: &dyn Host, request: &Request, round: Round<'_>) -> Verdict {
    let answer = Answer::new(host, engine.config.audit_log, Step::Bank, request);
    if request.method != "GET" {
        return answer.refuse(PageDenial::MethodNotAllowed);
    }
    let (mut answer, query) = (answer, RedirectQuery::of(&request.path));
    // A parameter twice is refused (RFC 6749 §3.1), but only after the
    // first `state` it names (the one a server reading the first of
    // repeated parameters would use) is used up: a misuse of a pending
    // authorization ends it, as any refused redirect naming one does.
    let duplicated = query.has_duplicates(&PARAMETERS);
    let max_state = engine.max_state_chars();
    let Some(state) = query.first("state").filter(|s| !s.is_empty() && s.len() <= max_state) else {
        return answer.refuse(if duplicated {
            PageDenial::DuplicateParameters
        } else {
            PageDenial::StateMissing(Step::Bank)
        });
    };
    answer.audit.token_as("state", state.as_bytes());
    let Some(pending) = engine.pending_state(host, state) else {
        return answer.refuse(if duplicated {
            PageDenial::DuplicateParameters
        } else {
            PageDenial::StateUnusable(Step::Bank, "state_unknown")
        });
    };
    answer.audit.set("user", &pending.user).set("task", &pending.task_id);
    // The rest of writing the token kept the round before to the store.
    let config = engine.shared_config();
    if let Some(store) = &config.shared_store
        && let Some(last) =
            round.store_step(&sealed_task::write_step_key(&pending.user, &pending.task_id, false))
    {
        let record = engine.store.task(host, &pending.user, &pending.task_id);
        if let Write::Wait(step) = sealed_task::write_step(store, host, record.as_ref(), Some(last), false) {
            return Verdict::AwaitStore(Box::new(step));
        }
        let token = record.and_then(|record| record.usable_token(host.now_unix_secs()));
        return authorized(&pending, token.as_ref(), answer);
    }
    match round.outcome_for(&TokenHash::of(state.as_bytes())) {
        None | Some(ExchangeOutcome::Store(_)) => {
            first_pass(engine, host, request, &query, duplicated, state, pending, round, answer)
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

/// Why a redirect that names a pending `state` is refused, once the
/// `state` is used up.
#[derive(Debug, Clone)]
enum RedirectRefusal<'q> {
    /// A parameter twice, a wrong or missing `iss`, or no `code`.
    Page(PageDenial),
    /// The IdP's `error`.
    IdpError(&'q str),
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
    duplicated: bool,
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
    // Whatever else refuses the redirect still uses the state up (with a
    // shared store, marks it used): a mix-up attempt (RFC 9207: a redirect
    // naming another server, or none from one that always names itself), a
    // parameter twice, the IdP's error, no code. The true redirect after it
    // is refused as reused, and the user starts again.
    let code = if duplicated {
        Err(RedirectRefusal::Page(PageDenial::DuplicateParameters))
    } else if let Err(problem) = config.idp.check_response_issuer(query.single("iss")) {
        Err(RedirectRefusal::Page(PageDenial::IssuerMismatch(Step::Bank, problem.reason())))
    } else if let Some(error) = query.single("error") {
        Err(RedirectRefusal::IdpError(error))
    } else {
        query
            .single("code")
            .filter(|c| !c.is_empty() && c.len() <= 2048)
            .ok_or(RedirectRefusal::Page(PageDenial::CodeMissing(Step::Bank)))
    };
    let refusal = match engine
        .take_state(host, state, round, |_| code.as_ref().map(|_| ()).map_err(Clone::clone))
    {
        Taken::Pending(pending) => match &code {
            Ok(code) => {
                let exchange = code_exchange(&config.idp, 0, state, &Secret::new(*code), &pending.verifier);
                return Verdict::AwaitCall(Box::new(exchange));
            }
            // Not reached: `check` passed only with a code.
            Err(refusal) => refusal.clone(),
        },
        Taken::Misused { refusal, store_fault } => {
            if let Some(why) = store_fault {
                host.count(metrics::STORE_UNAVAILABLE);
                answer.audit.set("store", why);
            }
            refusal
        }
        Taken::Refused(problem) => {
            return answer.refuse(PageDenial::StateUnusable(Step::Bank, problem.reason()));
        }
        Taken::Wait(call) => return Verdict::AwaitStore(Box::new(call)),
        Taken::Unavailable(why) => {
            answer.audit.set("store", why);
            return answer.refuse(PageDenial::StoreUnavailable(Step::Bank));
        }
    };
    match refusal {
        RedirectRefusal::Page(denial) => answer.refuse(denial),
        RedirectRefusal::IdpError(error) => answer.denied_by_idp(error),
    }
}

/// The page of a completed authorization.
fn authorized(pending: &PendingAuthorization, token: Option<&Secret>, mut answer: Answer<'_>) -> Verdict {
    if let Some(token) = token {
        answer.audit.token_as("secondary", token.expose().as_bytes());
    }
    answer.done(
        "authorized",
        "You may return to your agent: the task can continue.",
        json!({"status": "authorized", "taskId": pending.task_id, "contextId": pending.context_id}),
    )
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
            // The gateway's own task: this Envoy named it, or (with a store)
            // its id says the fleet did, whichever replica challenged.
            let gateway_task = engine
                .store
                .task(host, &pending.user, &pending.task_id)
                .is_some_and(|record| record.gateway_task)
                || gateway_task::recognizes(
                    engine.config().shared_store.as_ref(),
                    &pending.user,
                    &pending.task_id,
                );
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
            let config = engine.shared_config();
            if let Some(store) = &config.shared_store
                && let Write::Wait(step) = sealed_task::write_step(store, host, Some(&record), None, false)
            {
                return Verdict::AwaitStore(Box::new(step));
            }
            authorized(pending, Some(token), answer)
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
