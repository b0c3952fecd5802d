//! The browser's sign-in at the users' IdP (`userBinding.primaryLogin`),
//! which ties the person at the secondary IdP to the user who asked
//! (RFC 9700 §4.7, §2.1): an authorization link opens the gateway's start
//! path, not the bank. The gateway gives the browser a cookie and sends it
//! to sign in at the users' IdP (OpenID Connect, code + PKCE + nonce). Only
//! when the ID token names the user who asked does the browser go on to the
//! bank, and only that browser's redirect from the bank is accepted. A link
//! forwarded to someone else stops at the sign-in: they are not the user,
//! whatever they approve, and even if they open it willingly.
//!
//! Without a shared store the sign-in is kept with the pending
//! authorization in this Envoy; with one it travels sealed in its own
//! `state` and the bank gets a `state` bound to the browser
//! ([`crate::sealed_login`]).

use baton_filter_kit::host::Host;
use baton_filter_kit::verifier::VerifyError;
use baton_token::secret::Secret;
use baton_token::{TokenHash, pkce};
use serde_json::Value;

use crate::browser::{
    Answer, RedirectQuery, browser_id, cookie_value, new_cookie_value, read_redirect, set_cookie,
};
use crate::challenge::{random_id, random32};
use crate::decision::{Engine, ExchangeOutcome, MAX_ROUNDS, Request, Round, Verdict, code_exchange};
use crate::denial::{PageDenial, Step};
use crate::metrics;
use crate::model::PrimaryLogin;
use crate::sealed_login::{self, SignIn};
use crate::store::{PendingLogin, StateProblem};

/// The token endpoint index of the users' IdP (the bank's is 0).
pub const LOGIN_ENDPOINT: usize = 1;

/// `GET <startPath>?state=S`: the authorization link. Starts (or restarts)
/// the sign-in for the pending authorization `S` in this browser.
pub fn start(engine: &mut Engine, host: &dyn Host, request: &Request, login: &PrimaryLogin) -> Verdict {
    let config = engine.shared_config();
    let answer = Answer::new(host, config.audit_log, Step::Start, request);
    let (mut answer, query) = match read_redirect(answer, request, &["state"]) {
        Ok(read) => read,
        Err(refused) => return *refused,
    };
    let max_state = engine.max_state_chars();
    let Some(state) = query.single("state").filter(|s| !s.is_empty() && s.len() <= max_state) else {
        return answer.refuse(PageDenial::StateMissing(Step::Start));
    };
    answer.audit.token_as("state", state.as_bytes());
    let existing = cookie_value(request.cookie.as_deref(), &config.cookie).map(str::to_string);
    let randomness =
        (existing.or_else(|| new_cookie_value(host)), random_id(host), random_id(host), random32(host));
    let (Some(cookie), Some(nonce), Some(suffix), Some(verifier)) = randomness else {
        return answer.refuse(PageDenial::NoRandomness);
    };
    let browser = browser_id(&cookie);
    let verifier = pkce::verifier(&verifier);
    if let Some(shared) = &config.shared_store {
        let sign_in = SignIn { state: state.to_string(), browser, nonce, verifier };
        let set_cookie = Some(set_cookie(&config.cookie, &cookie, config.state_ttl_secs));
        return sealed_login::start(host, &config, shared, login, &sign_in, set_cookie, answer);
    }
    let login_state = format!("{state}.{suffix}");
    let started = engine.store.modify_state(host, state, |pending| {
        if let Some(bound) = &pending.browser {
            // Signed in already: this browser goes on to the bank again
            // (the link opened twice); another browser may not.
            return if *bound == browser { Ok(true) } else { Err(StateProblem::Reused) };
        }
        pending.login = Some(PendingLogin {
            state_hash: TokenHash::of(login_state.as_bytes()).to_hex(),
            verifier: verifier.clone(),
            nonce: nonce.clone(),
            browser: browser.clone(),
            expires_at: pending.expires_at,
            used: false,
        });
        Ok(false)
    });
    let set_cookie = Some(set_cookie(&config.cookie, &cookie, config.state_ttl_secs));
    match started {
        Ok((pending, signed_in)) => {
            answer.audit.set("user", &pending.user).set("task", &pending.task_id);
            if signed_in {
                let bank = config.idp.authorization_url(
                    state,
                    &pkce::s256_challenge(pending.verifier.expose()),
                    None,
                );
                return answer.redirect("signed_in_already", &bank, set_cookie);
            }
            host.count(metrics::SIGN_INS_STARTED);
            let challenge = pkce::s256_challenge(verifier.expose());
            let sign_in = login.server.authorization_url(&login_state, &challenge, Some(&nonce));
            answer.redirect("sign_in_started", &sign_in, set_cookie)
        }
        Err(problem) => answer.refuse(PageDenial::StateUnusable(Step::Start, problem.reason())),
    }
}

/// The users' IdP's redirect back (the path of `primaryLogin.redirectUri`).
pub fn finish(
    engine: &mut Engine,
    host: &dyn Host,
    request: &Request,
    login: &PrimaryLogin,
    round: Round<'_>,
) -> Verdict {
    let config = engine.shared_config();
    let answer = Answer::new(host, config.audit_log, Step::SignIn, request);
    let (mut answer, query) = match read_redirect(answer, request, &["code", "state", "error", "iss"]) {
        Ok(read) => read,
        Err(refused) => return *refused,
    };
    if config.shared_store.is_some() {
        let login_state =
            query.single("state").filter(|s| !s.is_empty() && s.len() <= sealed_login::MAX_CHARS);
        let Some(login_state) = login_state else {
            return answer.refuse(PageDenial::StateMissing(Step::SignIn));
        };
        return sealed_login::finish(engine, host, request, &query, login, login_state, round, answer);
    }
    let login_state = query.single("state").filter(|s| !s.is_empty() && s.len() <= 512);
    let Some((login_state, state)) =
        login_state.and_then(|l| l.rsplit_once('.').map(|(state, _)| (l, state)))
    else {
        return answer.refuse(PageDenial::StateMissing(Step::SignIn));
    };
    let key = TokenHash::of(login_state.as_bytes());
    answer.audit.token_as("state", state.as_bytes());
    let Some(pending) = engine.store.peek_state(host, state) else {
        return answer.refuse(PageDenial::StateUnusable(Step::SignIn, "state_unknown"));
    };
    answer.audit.set("user", &pending.user).set("task", &pending.task_id);
    let Some(started) = pending.login.clone().filter(|l| l.state_hash == key.to_hex()) else {
        return answer.refuse(PageDenial::SignInUnknown);
    };
    let Some(outcome) = round.outcome_for(&key) else {
        return arrived(engine, host, request, &query, login, state, login_state, &started, answer);
    };
    let (signed_in, mut answer) =
        match signed_in_user(engine, host, login, outcome, &started.nonce, round, answer) {
            Ok(signed_in) => signed_in,
            Err(refused) => return *refused,
        };
    if signed_in.as_deref() != Some(pending.user.as_str()) {
        // Someone else's link: the authorization it stands for ends here,
        // so it cannot be retried by a third person either.
        let _ = engine.store.consume_state(host, state);
        answer.audit.set("signed_in", signed_in.as_deref().unwrap_or("-"));
        return answer.refuse(PageDenial::UserMismatch);
    }
    let bound = engine.store.modify_state(host, state, |pending| {
        pending.browser = Some(started.browser.clone());
        Ok(())
    });
    match bound {
        Ok((pending, ())) => {
            host.count(metrics::SIGN_INS_COMPLETED);
            let bank =
                config.idp.authorization_url(state, &pkce::s256_challenge(pending.verifier.expose()), None);
            answer.redirect("signed_in", &bank, None)
        }
        Err(problem) => answer.refuse(PageDenial::StateUnusable(Step::SignIn, problem.reason())),
    }
}

/// Whom the sign-in's code exchange `outcome` names: its ID token verified
/// (the users' IdP's keys), for this sign-in's `nonce`, the configured
/// claim's value; or the page that refuses it.
#[allow(clippy::result_large_err)]
pub(crate) fn signed_in_user<'h>(
    engine: &mut Engine,
    host: &dyn Host,
    login: &PrimaryLogin,
    outcome: &ExchangeOutcome,
    nonce: &str,
    round: Round<'_>,
    mut answer: Answer<'h>,
) -> Result<(Option<String>, Answer<'h>), Box<Verdict>> {
    let refuse = |answer: Answer<'_>, denial| Err(Box::new(answer.refuse(denial)));
    let id_token = match outcome {
        ExchangeOutcome::Token { id_token: Some(id_token), .. } => id_token,
        ExchangeOutcome::Token { id_token: None, .. } => return refuse(answer, PageDenial::NoIdToken),
        ExchangeOutcome::Refused(why) => {
            answer.audit.set("exchange", why);
            return refuse(answer, PageDenial::CodeRefused(Step::SignIn));
        }
        ExchangeOutcome::GatewayRefused(why) => {
            answer.audit.set("exchange", why);
            return refuse(answer, PageDenial::GatewayRefused(Step::SignIn));
        }
        ExchangeOutcome::Unavailable(why) => {
            answer.audit.set("exchange", why);
            return refuse(answer, PageDenial::IdpUnavailable(Step::SignIn));
        }
        // Never under the sign-in's key.
        ExchangeOutcome::Store(_) => return refuse(answer, PageDenial::StoreUnavailable(Step::SignIn)),
    };
    let verified =
        match engine.verifier.verify(host, id_token.expose(), &login.server.provider_ids, round.keys) {
            Ok((verified, _)) => verified,
            Err(VerifyError::AwaitKeys(provider)) if round.number < MAX_ROUNDS => {
                return Err(Box::new(Verdict::AwaitKeys(provider)));
            }
            Err(VerifyError::AwaitKeys(_) | VerifyError::KeysUnavailable(_)) => {
                return refuse(answer, PageDenial::KeysUnavailable(Step::SignIn));
            }
            Err(VerifyError::Invalid { reason, .. }) => {
                answer.audit.set("refused", reason);
                return refuse(answer, PageDenial::IdTokenRefused);
            }
        };
    if verified.claims.select("nonce").and_then(Value::as_str) != Some(nonce) {
        return refuse(answer, PageDenial::NonceMismatch);
    }
    let claim = &engine.config.primary.claim;
    Ok((verified.claims.select(claim).and_then(Value::as_str).map(str::to_string), answer))
}

/// The sign-in's redirect as it arrives: in the browser that started it
/// (login CSRF), from the users' IdP (RFC 9207), once; then its code is
/// exchanged.
#[allow(clippy::too_many_arguments)]
fn arrived(
    engine: &mut Engine,
    host: &dyn Host,
    request: &Request,
    query: &RedirectQuery,
    login: &PrimaryLogin,
    state: &str,
    login_state: &str,
    started: &PendingLogin,
    answer: Answer<'_>,
) -> Verdict {
    let config = engine.shared_config();
    let browser = cookie_value(request.cookie.as_deref(), &config.cookie).map(browser_id);
    if browser.as_deref() != Some(started.browser.as_str()) {
        return answer.refuse(PageDenial::SignInOtherBrowser);
    }
    let used = engine.store.modify_state(host, state, |pending| match &mut pending.login {
        Some(current) if current.state_hash == started.state_hash && !current.used => {
            current.used = true;
            Ok(())
        }
        _ => Err(StateProblem::Reused),
    });
    if let Err(problem) = used {
        return answer.refuse(PageDenial::StateUnusable(Step::SignIn, problem.reason()));
    }
    exchange_code(login, query, login_state, &started.verifier, answer)
}

/// The sign-in's redirect, once its browser and single use are settled:
/// from the users' IdP (RFC 9207 `iss`), with a code, which is exchanged
/// (with the sign-in's PKCE `verifier`).
pub(crate) fn exchange_code(
    login: &PrimaryLogin,
    query: &RedirectQuery,
    login_state: &str,
    verifier: &Secret,
    answer: Answer<'_>,
) -> Verdict {
    if let Err(problem) = login.server.check_response_issuer(query.single("iss")) {
        return answer.refuse(PageDenial::IssuerMismatch(Step::SignIn, problem.reason()));
    }
    if let Some(error) = query.single("error") {
        return answer.denied_by_idp(error);
    }
    let Some(code) = query.single("code").filter(|c| !c.is_empty() && c.len() <= 2048) else {
        return answer.refuse(PageDenial::CodeMissing(Step::SignIn));
    };
    Verdict::AwaitCall(Box::new(code_exchange(
        &login.server,
        LOGIN_ENDPOINT,
        login_state,
        &Secret::new(code),
        verifier,
    )))
}

#[cfg(test)]
#[path = "binding_tests.rs"]
mod tests;
