//! The browser's sign-in at the users' IdP (`userBinding.primaryLogin`)
//! with a shared store: its OAuth `state` carries the sign-in itself,
//! sealed like an authorization's `state` ([`crate::sealed_state`]) but for
//! its own purpose and bound to the users' IdP (its issuer, the gateway's
//! client id there, the sign-in's redirect URI), so any replica serves the
//! sign-in's redirect from the request alone.
//!
//! It holds the link's `state` (the pending authorization, sealed), the
//! browser that started the sign-in (hex SHA-256 of its cookie), the OpenID
//! Connect nonce and the PKCE verifier. Its single use is a mark in the
//! store, as an authorization's is, named under this value and leased until
//! the authorization expires.

use baton_filter_kit::host::Host;
use baton_filter_kit::store::{StoreConfig, key_id_of};
use baton_token::secret::Secret;
use baton_token::{TokenHash, base64url, pkce};
use serde::{Deserialize, Serialize};

use crate::browser::{Answer, RedirectQuery, browser_id, cookie_value};
use crate::decision::{Engine, Request, Round, Verdict};
use crate::denial::{PageDenial, Step};
use crate::login;
use crate::metrics;
use crate::model::{AuthorizationServer, FilterConfig, PrimaryLogin};
use crate::sealed_state::{self, OpenedState, SealProblem, Use, bound_to_server};
use crate::store::StateProblem;

/// What a sign-in's `state` is bound to (with the users' IdP).
pub const PURPOSE: &[u8] = b"baton in-task-auth-code sign-in v1";
/// Longest sign-in `state` accepted: the link's `state` (at most
/// [`sealed_state::MAX_BOUND_STATE_CHARS`]) and the sign-in.
pub const MAX_CHARS: usize = 2048;
/// Kind of the store entry that marks a sign-in's `state` used.
const MARK_KIND: &str = "in-task sign-in used";

/// A sign-in started for the authorization of the link's `state`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    /// The link's `state` (sealed).
    #[serde(rename = "s")]
    pub state: String,
    /// The browser that started it.
    #[serde(rename = "b")]
    pub browser: String,
    /// The OpenID Connect nonce.
    #[serde(rename = "n")]
    pub nonce: String,
    /// The PKCE verifier.
    #[serde(rename = "v")]
    pub verifier: Secret,
}

/// A sign-in's `state`, opened.
#[derive(Debug)]
pub struct OpenedSignIn {
    /// The sign-in.
    pub sign_in: SignIn,
    /// The authorization it is for (the link's `state`, opened).
    pub authorization: OpenedState,
    /// The single use of this sign-in's `state` (the authorization's
    /// expiry, this value's own mark).
    pub use_of_sign_in: OpenedState,
}

/// Seals `sign_in` into the `state` sent to the users' IdP `server`.
pub fn seal(
    store: &StoreConfig,
    server: &AuthorizationServer,
    host: &dyn Host,
    sign_in: &SignIn,
) -> Result<String, SealProblem> {
    sealed_state::seal_value(store, host, &bound_to_server(PURPOSE, server), sign_in, MAX_CHARS)
}

/// Opens the sign-in's `state` from `server` (the users' IdP) and the
/// authorization it names (a `state` of `idp`, the secondary IdP).
pub fn open(
    store: &StoreConfig,
    server: &AuthorizationServer,
    idp: &AuthorizationServer,
    state: &str,
) -> Result<OpenedSignIn, StateProblem> {
    if state.len() > MAX_CHARS {
        return Err(StateProblem::Unknown);
    }
    let bytes = base64url::decode(state).map_err(|_| StateProblem::Unknown)?;
    let plaintext =
        store.keys.open(&bound_to_server(PURPOSE, server), &bytes).map_err(|_| StateProblem::Unknown)?;
    let sign_in: SignIn = serde_json::from_slice(&plaintext).map_err(|_| StateProblem::Unknown)?;
    let authorization = sealed_state::open(store, idp, &sign_in.state)?;
    let key_id = key_id_of(&bytes).map_err(|_| StateProblem::Unknown)?;
    let mark = store.key_under(key_id, MARK_KIND, &[&bytes]).ok_or(StateProblem::Unknown)?;
    let use_of_sign_in = OpenedState::with_mark(
        authorization.pending.clone(),
        mark,
        TokenHash::of_parts(&[b"sign-in-mark", state.as_bytes()]),
    );
    Ok(OpenedSignIn { sign_in, authorization, use_of_sign_in })
}

// ---------------------------------------------------------------------------
// The sign-in's steps with a shared store (`crate::login` without one).

/// `GET <startPath>?state=S`: starts `sign_in` (for the link's `state`, in
/// the browser whose cookie `set_cookie` sets) at the users' IdP. Nothing
/// is kept: the sign-in travels in its own `state`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn start(
    host: &dyn Host,
    config: &FilterConfig,
    store: &StoreConfig,
    login: &PrimaryLogin,
    sign_in: &SignIn,
    set_cookie: Option<String>,
    mut answer: Answer<'_>,
) -> Verdict {
    let opened = match sealed_state::open(store, &config.idp, &sign_in.state) {
        Ok(opened) => opened,
        Err(problem) => return answer.refuse(PageDenial::StateUnusable(Step::Start, problem.reason())),
    };
    answer.audit.set("user", &opened.pending.user).set("task", &opened.pending.task_id);
    if host.now_unix_secs() >= opened.pending.expires_at {
        return answer.refuse(PageDenial::StateUnusable(Step::Start, StateProblem::Expired.reason()));
    }
    let login_state = match seal(store, &login.server, host, sign_in) {
        Ok(login_state) => login_state,
        Err(SealProblem::NoRandomness) => return answer.refuse(PageDenial::NoRandomness),
        Err(SealProblem::TooLong) => {
            return answer.refuse(PageDenial::StateUnusable(Step::Start, "state_too_long"));
        }
    };
    host.count(metrics::SIGN_INS_STARTED);
    let challenge = pkce::s256_challenge(sign_in.verifier.expose());
    let url = login.server.authorization_url(&login_state, &challenge, Some(&sign_in.nonce));
    answer.redirect("sign_in_started", &url, set_cookie)
}

/// The users' IdP's redirect back, with the sign-in's `state`: in the
/// browser that started it, used once (in the store), from the users' IdP;
/// its code exchanged; then, if the ID token names the user who asked, the
/// browser goes on to the bank with a `state` bound to it. Someone else's
/// sign-in ends the authorization (in the background).
#[allow(clippy::too_many_arguments)]
pub(crate) fn finish(
    engine: &mut Engine,
    host: &dyn Host,
    request: &Request,
    query: &RedirectQuery,
    login: &PrimaryLogin,
    login_state: &str,
    round: Round<'_>,
    mut answer: Answer<'_>,
) -> Verdict {
    let config = engine.shared_config();
    let Some(store) = &config.shared_store else {
        return answer.refuse(PageDenial::SignInUnknown);
    };
    let opened = match open(store, &login.server, &config.idp, login_state) {
        Ok(opened) => opened,
        Err(_) => return answer.refuse(PageDenial::SignInUnknown),
    };
    let pending = &opened.authorization.pending;
    answer.audit.token_as("state", opened.sign_in.state.as_bytes());
    answer.audit.set("user", &pending.user).set("task", &pending.task_id);
    let key = TokenHash::of(login_state.as_bytes());
    let Some(outcome) = round.outcome_for(&key) else {
        return arrived(host, request, query, login, login_state, &opened, round, config.as_ref(), answer);
    };
    let (signed_in, mut answer) =
        match login::signed_in_user(engine, host, login, outcome, &opened.sign_in.nonce, round, answer) {
            Ok(signed_in) => signed_in,
            Err(refused) => return *refused,
        };
    if signed_in.as_deref() != Some(pending.user.as_str()) {
        // Someone else's link: the authorization it stands for ends here,
        // so it cannot be retried by a third person either.
        engine.end_authorization_in_background(host, opened.authorization.mark.clone(), pending.expires_at);
        answer.audit.set("signed_in", signed_in.as_deref().unwrap_or("-"));
        return answer.refuse(PageDenial::UserMismatch);
    }
    let mut bound = pending.clone();
    bound.browser = Some(opened.sign_in.browser.clone());
    let state = match sealed_state::seal_bound(store, &config.idp, host, &bound, &opened.authorization.mark) {
        Ok(state) => state,
        Err(SealProblem::NoRandomness) => return answer.refuse(PageDenial::NoRandomness),
        Err(SealProblem::TooLong) => {
            return answer.refuse(PageDenial::StateUnusable(Step::SignIn, "state_too_long"));
        }
    };
    host.count(metrics::SIGN_INS_COMPLETED);
    let bank = config.idp.authorization_url(&state, &pkce::s256_challenge(pending.verifier.expose()), None);
    answer.redirect("signed_in", &bank, None)
}

/// The sign-in's redirect as it arrives: in the browser that started it
/// (login CSRF), used once across the fleet, from the users' IdP (RFC
/// 9207); then its code is exchanged.
#[allow(clippy::too_many_arguments)]
fn arrived(
    host: &dyn Host,
    request: &Request,
    query: &RedirectQuery,
    login: &PrimaryLogin,
    login_state: &str,
    opened: &OpenedSignIn,
    round: Round<'_>,
    config: &FilterConfig,
    mut answer: Answer<'_>,
) -> Verdict {
    let browser = cookie_value(request.cookie.as_deref(), &config.cookie).map(browser_id);
    if browser.as_deref() != Some(opened.sign_in.browser.as_str()) {
        return answer.refuse(PageDenial::SignInOtherBrowser);
    }
    let use_of_sign_in = &opened.use_of_sign_in;
    let last = round.store_step(&use_of_sign_in.step_key);
    match sealed_state::use_step(use_of_sign_in, last, host.now_unix_secs()) {
        Use::Wait(call) => return Verdict::AwaitStore(Box::new(call)),
        Use::Refused(problem) => {
            return answer.refuse(PageDenial::StateUnusable(Step::SignIn, problem.reason()));
        }
        Use::Unavailable(why) => {
            host.count(metrics::STORE_UNAVAILABLE);
            answer.audit.set("store", why);
            return answer.refuse(PageDenial::StoreUnavailable(Step::SignIn));
        }
        Use::Used => {}
    }
    login::exchange_code(login, query, login_state, &opened.sign_in.verifier, answer)
}

// Tested with the sign-in's other tests: `binding_tests.rs`, `fleet`.
