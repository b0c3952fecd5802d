//! RFC 8693 token exchange and Entra's on-behalf-of flavour of the RFC 7523
//! JWT bearer grant.
//!
//! Scope rule for token exchange: without a `scope` parameter the issued
//! token keeps the subject token's scope. With one, the issued scope is
//! exactly the requested one, and each requested value must be carried by
//! the subject token or listed in the client's `allowed_scopes` (an empty
//! `allowed_scopes` adds nothing here: exchange may narrow, never widen,
//! unless the client is explicitly allowed the extra scope).

use serde_json::{Map, Value, json};

use crate::client_auth::AuthenticatedClient;
use crate::jwt::verify_own_token;
use crate::oauth_error::OAuthError;
use crate::params::{Params, scope_list};
use crate::state::{IdpState, lock, now_secs};
use crate::token_endpoint::{bearer_response, resolve_audience};

/// RFC 8693 §3 token type identifiers.
pub const TOKEN_TYPE_ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
/// A JWT that is not necessarily an access token.
pub const TOKEN_TYPE_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
/// An OIDC ID token.
pub const TOKEN_TYPE_ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";

const ACCEPTED_INPUT_TYPES: [&str; 3] = [TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_JWT, TOKEN_TYPE_ID_TOKEN];
/// Claims describing the original authentication, carried through exchanges.
const AUTHENTICATION_CLAIMS: [&str; 3] = ["acr", "amr", "auth_time"];

/// Verifies a presented token, naming the parameter in the error.
fn verify_presented(
    state: &IdpState,
    token: &str,
    parameter: &str,
) -> Result<Map<String, Value>, OAuthError> {
    let keys = lock(&state.keys);
    let claims = verify_own_token(&keys, &state.issuer, token, now_secs())
        .map_err(|why| OAuthError::invalid_grant(format!("{parameter}: {why}")))?;
    if claims.get("sub").and_then(Value::as_str).is_none() {
        return Err(OAuthError::invalid_grant(format!("{parameter}: missing sub")));
    }
    Ok(claims)
}

fn sub_of(claims: &Map<String, Value>) -> &str {
    claims.get("sub").and_then(Value::as_str).unwrap_or_default()
}

fn check_token_type(value: &str, parameter: &str) -> Result<(), OAuthError> {
    if ACCEPTED_INPUT_TYPES.contains(&value) {
        Ok(())
    } else {
        Err(OAuthError::invalid_request(format!("unsupported {parameter} {value:?}")))
    }
}

/// Claims every exchanged token starts from: the configured user's claims,
/// then `sub`, and the subject's authentication claims.
fn exchanged_claims(
    state: &IdpState,
    subject: &Map<String, Value>,
    client: &AuthenticatedClient,
) -> Map<String, Value> {
    let sub = sub_of(subject);
    let mut claims = state.user_claims(sub);
    claims.insert("sub".into(), json!(sub));
    for name in AUTHENTICATION_CLAIMS {
        if let Some(value) = subject.get(name) {
            claims.insert(name.into(), value.clone());
        }
    }
    claims.insert("client_id".into(), json!(client.registration.client_id));
    claims.insert("azp".into(), json!(client.registration.client_id));
    claims
}

pub(crate) fn token_exchange(
    state: &IdpState,
    client: &AuthenticatedClient,
    params: &Params,
) -> Result<Map<String, Value>, OAuthError> {
    let subject_token = params.require("subject_token")?;
    check_token_type(params.require("subject_token_type")?, "subject_token_type")?;
    let actor_token = match (params.get("actor_token"), params.get("actor_token_type")) {
        (Some(token), Some(token_type)) => {
            check_token_type(token_type, "actor_token_type")?;
            Some(token)
        }
        (Some(_), None) => return Err(OAuthError::invalid_request("actor_token requires actor_token_type")),
        (None, Some(_)) => return Err(OAuthError::invalid_request("actor_token_type without actor_token")),
        (None, None) => None,
    };
    let requested_type = params.get("requested_token_type").unwrap_or(TOKEN_TYPE_ACCESS_TOKEN);
    if requested_type != TOKEN_TYPE_ACCESS_TOKEN && requested_type != TOKEN_TYPE_JWT {
        return Err(OAuthError::invalid_request(format!(
            "cannot issue requested_token_type {requested_type:?}"
        )));
    }
    let subject = verify_presented(state, subject_token, "subject_token")?;
    let actor = actor_token.map(|token| verify_presented(state, token, "actor_token")).transpose()?;
    let aud = resolve_audience(&client.registration, params)?;
    let scope = exchanged_scope(&subject, client, params.get("scope"))?;

    let mut claims = exchanged_claims(state, &subject, client);
    claims.insert("aud".into(), aud);
    if let Some(scope) = &scope {
        claims.insert("scope".into(), json!(scope));
    }
    if let Some(act) = delegation_claim(&subject, actor.as_ref())? {
        claims.insert("act".into(), act);
    }
    let (typ, token_type) = if requested_type == TOKEN_TYPE_ACCESS_TOKEN {
        (state.config.typ.as_str(), "Bearer")
    } else {
        ("JWT", "N_A")
    };
    let token = state.sign_token(claims, typ)?;
    let mut body = bearer_response(state, token, scope.as_deref());
    body.insert("issued_token_type".into(), json!(requested_type));
    body.insert("token_type".into(), json!(token_type));
    Ok(body)
}

/// See the module docs for the rule.
fn exchanged_scope(
    subject: &Map<String, Value>,
    client: &AuthenticatedClient,
    requested: Option<&str>,
) -> Result<Option<String>, OAuthError> {
    let subject_scope = subject.get("scope").and_then(Value::as_str);
    let Some(requested) = requested else {
        return Ok(subject_scope.map(str::to_string));
    };
    let carried = subject_scope.map(scope_list).unwrap_or_default();
    let allowed = &client.registration.allowed_scopes;
    if let Some(denied) =
        scope_list(requested).into_iter().find(|s| !carried.contains(s) && !allowed.iter().any(|a| a == s))
    {
        return Err(OAuthError::invalid_scope(format!(
            "scope {denied:?} is neither in the subject token nor allowed for the client"
        )));
    }
    Ok(Some(requested.to_string()))
}

/// The `act` claim (RFC 8693 §4.1). With an actor: `{"sub": actor}` with
/// the subject's existing `act` nested as the prior chain, after checking
/// the subject's `may_act`. Without one: the subject's `act`, unchanged.
fn delegation_claim(
    subject: &Map<String, Value>,
    actor: Option<&Map<String, Value>>,
) -> Result<Option<Value>, OAuthError> {
    let prior = subject.get("act").cloned();
    let Some(actor) = actor else {
        return Ok(prior);
    };
    let actor_sub = sub_of(actor);
    if let Some(may_act) = subject.get("may_act") {
        let permitted = may_act.get("sub").and_then(Value::as_str);
        if permitted != Some(actor_sub) {
            return Err(OAuthError::invalid_grant(format!(
                "actor {actor_sub:?} is not permitted by the subject token's may_act"
            )));
        }
    }
    let mut act = Map::new();
    act.insert("sub".into(), json!(actor_sub));
    if let Some(prior) = prior {
        act.insert("act".into(), prior);
    }
    Ok(Some(Value::Object(act)))
}

/// Entra's on-behalf-of flow: `assertion` (the user's token),
/// `requested_token_use=on_behalf_of` and `scope` are required. The
/// audience is the resource of a `<resource>/.default` scope, otherwise the
/// client's default audience. No `act` claim, as with Entra; `azp` and
/// `client_id` name the middle-tier client.
pub(crate) fn on_behalf_of(
    state: &IdpState,
    client: &AuthenticatedClient,
    params: &Params,
) -> Result<Map<String, Value>, OAuthError> {
    let assertion = params.require("assertion")?;
    match params.get("requested_token_use") {
        Some("on_behalf_of") => {}
        Some(other) => {
            return Err(OAuthError::invalid_request(format!(
                "requested_token_use {other:?} is not supported"
            )));
        }
        None => return Err(OAuthError::invalid_request("missing requested_token_use")),
    }
    let scope = params.require("scope")?;
    let subject = verify_presented(state, assertion, "assertion")?;
    let registration = &client.registration;
    let aud = scope_list(scope)
        .into_iter()
        .find_map(|s| s.strip_suffix("/.default"))
        .unwrap_or_else(|| registration.fallback_audience())
        .to_string();
    if !registration.allows_audience(&aud) {
        return Err(OAuthError::invalid_target(format!("audience {aud:?} is not allowed for this client")));
    }
    let mut claims = exchanged_claims(state, &subject, client);
    claims.insert("aud".into(), json!(aud));
    claims.insert("scope".into(), json!(scope));
    let token = state.sign_token(claims, &state.config.typ)?;
    let mut body = bearer_response(state, token, Some(scope));
    body.insert("ext_expires_in".into(), json!(state.expires_in()));
    Ok(body)
}
