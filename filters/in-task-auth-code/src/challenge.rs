//! Making a challenge: an unguessable `state` and a PKCE pair, remembered
//! for the user and task (in this Envoy's store, or, with a shared store,
//! sealed into the `state` itself), and the `authChallenge` object a client
//! needs to send the user to the secondary IdP.

use baton_filter_kit::host::Host;
use baton_token::clock::rfc3339;
use baton_token::oauth::form_urlencode;

use crate::oauth_server::origin;
use baton_token::pkce;
use serde_json::{Value, json};

use crate::a2a::TaskIds;
use crate::model::FilterConfig;
use crate::sealed_state::{self, SealProblem};
use crate::store::{PendingAuthorization, Store, TaskRecord};

/// A challenge ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct IssuedChallenge {
    /// The `authChallenge` object.
    pub object: Value,
    /// The `state` (for audit, as a hash only).
    pub state: String,
}

/// Thirty-two random bytes, or `None` when the host has no randomness.
pub fn random32(host: &dyn Host) -> Option<[u8; 32]> {
    let mut bytes = [0u8; 32];
    host.fill_random(&mut bytes).then_some(bytes)
}

/// A random id for a task, context or message the gateway creates.
pub fn random_id(host: &dyn Host) -> Option<String> {
    random32(host).map(|bytes| pkce::opaque(&bytes)[..22].to_string())
}

/// Why no challenge could be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueProblem {
    /// The host gave no randomness.
    NoRandomness,
    /// The store is full (nothing was pushed out for it).
    StoreFull,
    /// With a shared store: the sealed `state` would be longer than a URL
    /// parameter may be (the user, task and context ids are too long).
    StateTooLong,
}

/// Creates a challenge for `user` and `ids`: remembers the state and PKCE
/// verifier, and, for a task the gateway named itself (`gateway_task`), a
/// task record that says so. `error` explains why an earlier credential
/// was refused.
pub fn issue(
    config: &FilterConfig,
    store: &Store,
    host: &dyn Host,
    user: &str,
    ids: &TaskIds,
    gateway_task: bool,
    error: Option<(&str, &str)>,
) -> Result<IssuedChallenge, IssueProblem> {
    let now = host.now_unix_secs();
    let (Some(state), Some(verifier)) = (random32(host), random32(host)) else {
        return Err(IssueProblem::NoRandomness);
    };
    let verifier = pkce::verifier(&verifier);
    let expires_at = now + config.state_ttl_secs;
    let full = |_| IssueProblem::StoreFull;
    let pending = PendingAuthorization {
        user: user.to_string(),
        task_id: ids.task_id.clone(),
        context_id: ids.context_id.clone(),
        verifier: verifier.clone(),
        expires_at,
        used: false,
        login: None,
        browser: None,
    };
    let state = match &config.shared_store {
        // Any replica opens it; nothing is kept here.
        Some(shared) => {
            sealed_state::seal(shared, &config.idp, host, &pending).map_err(|problem| match problem {
                SealProblem::NoRandomness => IssueProblem::NoRandomness,
                SealProblem::TooLong => IssueProblem::StateTooLong,
            })?
        }
        None => {
            let state = pkce::opaque(&state);
            store.put_state(host, &state, &pending).map_err(full)?;
            state
        }
    };
    let idp = &config.idp;
    // With a browser sign-in, the link opens the gateway first (which signs
    // the browser in as the user); the bank's URL is revealed only then.
    let url = match &config.binding.primary_login {
        Some(login) => format!(
            "{}{}?{}",
            origin(&idp.redirect_uri),
            login.start_path,
            form_urlencode(&[("state", &state)])
        ),
        None => idp.authorization_url(&state, &pkce::s256_challenge(verifier.expose()), None),
    };
    let mut object = json!({
        "authorizationUrl": url,
        "authorizationEndpoint": idp.authorization_endpoint,
        "tokenEndpoint": idp.token_endpoint_url,
        "scopes": idp.scopes,
        "audience": idp.audience,
        "secondaryAuthProvider": idp.name,
        "expiresAt": rfc3339(expires_at),
        "state": state,
        "redirectUri": idp.redirect_uri,
    });
    if let Some((code, description)) = error {
        object["error"] = json!(code);
        object["errorDescription"] = json!(description);
    }
    if gateway_task {
        // The gateway named this task: it answers GetTask with this
        // challenge until the task continues at the agent.
        store
            .put_task(
                host,
                &TaskRecord {
                    user: user.to_string(),
                    task_id: ids.task_id.clone(),
                    gateway_task: true,
                    token: None,
                    expires_at,
                    context_id: ids.context_id.clone(),
                    challenge: Some(object.clone()),
                },
            )
            .map_err(full)?;
    }
    Ok(IssuedChallenge { object, state })
}
