//! `GET /authorize`: the authorization endpoint. It approves at once
//! ([`LoginMode::AutoApprove`]) or as the logged-in user, showing the login
//! form first when there is no session ([`LoginMode::Interactive`]).
//!
//! Problems with `client_id` or `redirect_uri` are answered with a 400
//! JSON error (never redirect to an unverified URI, RFC 6749 §4.1.2.1);
//! all later problems redirect back with `error`.

use http_kit::{Request, Response, form_urlencode};
use serde_json::json;

use crate::config::LoginMode;
use crate::keys::random_token;
use crate::login;
use crate::params::{Params, scope_list};
use crate::state::{AuthCode, IdpState, lock, now_secs};

/// How long an authorization code can be redeemed.
const CODE_LIFETIME_SECS: i64 = 60;
/// Scopes every client may request at `/authorize` (OIDC standard ones).
const OIDC_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];

pub(crate) fn handle(state: &IdpState, request: &Request) -> Response {
    let params = Params::new(request.query_params());
    let bad_request = |description: &str| {
        Response::json(400, &json!({"error": "invalid_request", "error_description": description}))
    };
    let Some(client) = params.get("client_id").and_then(|id| state.config.client(id)) else {
        return bad_request("unknown or missing client_id");
    };
    let Some(redirect_uri) = params
        .get("redirect_uri")
        .filter(|uri| client.redirect_uris.iter().any(|registered| registered == uri))
    else {
        return bad_request("redirect_uri missing or not registered for this client");
    };
    let state_param = params.get("state");
    let redirect = |pairs: &[(&str, &str)]| {
        let mut pairs = pairs.to_vec();
        if let Some(value) = state_param {
            pairs.push(("state", value));
        }
        // RFC 9207: the issuer lets the client detect mix-up attacks.
        pairs.push(("iss", &state.issuer));
        let separator = if redirect_uri.contains('?') { '&' } else { '?' };
        let location = format!("{redirect_uri}{separator}{}", form_urlencode(&pairs));
        Response::empty(302).with_header("location", &location)
    };
    let error =
        |code: &str, description: &str| redirect(&[("error", code), ("error_description", description)]);

    if params.get("response_type") != Some("code") {
        return error("unsupported_response_type", "response_type must be code");
    }
    if !client.allows_grant("authorization_code") {
        return error("unauthorized_client", "client may not use the authorization code grant");
    }
    let Some(challenge) = params.get("code_challenge") else {
        return error("invalid_request", "code_challenge is required (PKCE)");
    };
    // A missing method means `plain` (RFC 7636 §4.3), which is refused.
    if params.get("code_challenge_method") != Some("S256") {
        return error("invalid_request", "code_challenge_method must be S256");
    }
    if challenge.len() != 43 {
        return error("invalid_request", "code_challenge must be a base64url SHA-256 digest");
    }
    let scope = params.get("scope");
    if let Some(denied) = scope.map(scope_list).unwrap_or_default().into_iter().find(|s| {
        !OIDC_SCOPES.contains(s)
            && !client.allowed_scopes.is_empty()
            && !client.allowed_scopes.iter().any(|a| a == s)
    }) {
        return error("invalid_scope", &format!("scope {denied} is not allowed"));
    }
    // RFC 8707: the resources the token is for, each an absolute URI
    // without a fragment that the client may ask for.
    let resources = params.all("resource");
    if let Some(bad) = resources.iter().find(|r| !r.contains("://") || r.contains('#')) {
        return error("invalid_target", &format!("resource {bad} is not an absolute URI without a fragment"));
    }
    if let Some(denied) = resources.iter().find(|r| !client.allows_audience(r)) {
        return error("invalid_target", &format!("resource {denied} is not allowed for this client"));
    }
    if params.get("max_age").is_some_and(|v| v.parse::<u64>().is_err()) {
        return error("invalid_request", "max_age must be a non-negative integer");
    }
    let now = now_secs();
    let (sub, auth_time) = match state.config.login {
        // Auto-approval means the user has just authenticated, which
        // satisfies any max_age.
        LoginMode::AutoApprove => {
            let sub = params
                .get("login_hint")
                .map(str::to_string)
                .or_else(|| state.config.users.first().map(|u| u.sub.clone()))
                .unwrap_or_else(|| "alice".to_string());
            (sub, now)
        }
        // OIDC Core §3.1.2.1: `prompt=login` asks for a fresh login, an
        // older login than `max_age` needs one too, and `prompt=none` must
        // not show any page. `login_hint` only pre-fills the form.
        LoginMode::Interactive { .. } => {
            let prompts = params.get("prompt").map(scope_list).unwrap_or_default();
            let max_age = params.get("max_age").and_then(|v| v.parse::<i64>().ok());
            let session = login::current_session(state, request, now)
                .filter(|_| !prompts.contains(&"login"))
                .filter(|session| max_age.is_none_or(|max| now.saturating_sub(session.auth_time) <= max));
            match session {
                Some(session) => (session.sub, session.auth_time),
                None if prompts.contains(&"none") => {
                    return error("login_required", "the user is not logged in");
                }
                None => {
                    let hint = params.get("login_hint").unwrap_or_default();
                    return login::page(200, request.query().unwrap_or_default(), hint, None);
                }
            }
        }
    };
    let acr =
        params.get("acr_values").and_then(|values| scope_list(values).first().map(|v| (*v).to_string()));
    let Ok(code) = random_token::<32>() else {
        return error("server_error", "random source failed");
    };
    lock(&state.grants).codes.insert(
        code.clone(),
        AuthCode {
            client_id: client.client_id.clone(),
            redirect_uri: redirect_uri.to_string(),
            code_challenge: challenge.to_string(),
            sub,
            scope: scope.map(str::to_string),
            resources,
            acr,
            nonce: params.get("nonce").map(str::to_string),
            auth_time,
            expires_at: now + CODE_LIFETIME_SECS,
        },
    );
    redirect(&[("code", &code)])
}
