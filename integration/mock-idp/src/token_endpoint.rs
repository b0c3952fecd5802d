//! `POST /token`: request checks, client authentication, grant dispatch,
//! the client credentials grant, and the request log.
//!
//! Errors follow RFC 6749 §5.2 (400, or 401 for `invalid_client`), and
//! every response carries `cache-control: no-store`.

use http_kit::{Request, Response};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::client_auth::{AuthenticatedClient, authenticate, claimed_client_id};
use crate::code_grant;
use crate::config::{ClientRegistration, GRANT_JWT_BEARER, GRANT_TOKEN_EXCHANGE};
use crate::exchange;
use crate::faults::Fault;
use crate::oauth_error::OAuthError;
use crate::params::{Params, scope_list};
use crate::state::{IdpState, lock};

const SUPPORTED_GRANTS: [&str; 5] =
    ["authorization_code", "refresh_token", "client_credentials", GRANT_TOKEN_EXCHANGE, GRANT_JWT_BEARER];

/// What a token request asked for, as recorded by the IdP. Secrets and
/// token values are never kept, only whether tokens were present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordedTokenRequest {
    /// `grant_type` parameter.
    pub grant_type: Option<String>,
    /// Client id from Basic credentials or the `client_id` parameter.
    pub client_id: Option<String>,
    /// Authentication method used, once authenticated (`none` for public clients).
    pub auth_method: Option<String>,
    /// Every `audience` parameter, in order.
    pub audiences: Vec<String>,
    /// Every `resource` parameter, in order.
    pub resources: Vec<String>,
    /// `scope` parameter.
    pub scope: Option<String>,
    /// `requested_token_type` parameter.
    pub requested_token_type: Option<String>,
    /// Whether a `subject_token` was sent.
    pub has_subject_token: bool,
    /// `subject_token_type` parameter.
    pub subject_token_type: Option<String>,
    /// Whether an `actor_token` was sent.
    pub has_actor_token: bool,
    /// `actor_token_type` parameter.
    pub actor_token_type: Option<String>,
    /// Whether an `assertion` (JWT bearer / OBO) was sent.
    pub has_assertion: bool,
    /// `requested_token_use` parameter (OBO).
    pub requested_token_use: Option<String>,
    /// Status answered; `None` when an injected fault closed the connection.
    pub status: Option<u16>,
    /// OAuth `error` code answered, if any.
    pub error: Option<String>,
    /// Name of the injected fault served instead of the normal answer, if any.
    pub fault: Option<String>,
}

impl RecordedTokenRequest {
    fn new(request: &Request, params: &Params) -> Self {
        let owned = |name: &str| params.get(name).map(str::to_string);
        RecordedTokenRequest {
            grant_type: owned("grant_type"),
            client_id: claimed_client_id(request, params),
            auth_method: None,
            audiences: params.all("audience"),
            resources: params.all("resource"),
            scope: owned("scope"),
            requested_token_type: owned("requested_token_type"),
            has_subject_token: params.get("subject_token").is_some(),
            subject_token_type: owned("subject_token_type"),
            has_actor_token: params.get("actor_token").is_some(),
            actor_token_type: owned("actor_token_type"),
            has_assertion: params.get("assertion").is_some(),
            requested_token_use: owned("requested_token_use"),
            status: None,
            error: None,
            fault: None,
        }
    }
}

/// Handles a token request and logs it.
pub(crate) fn handle(state: &IdpState, request: &Request) -> Response {
    let params = Params::new(request.form_params());
    let mut record = RecordedTokenRequest::new(request, &params);
    let response = match process(state, request, &params, &mut record) {
        Ok(body) => Response::json(200, &Value::Object(body))
            .with_header("cache-control", "no-store")
            .with_header("pragma", "no-cache"),
        Err(error) => {
            record.error = Some(error.error.to_string());
            error.to_response()
        }
    };
    record.status = Some(response.status);
    lock(&state.token_log).push(record);
    response
}

/// Logs a token request answered by an injected fault instead of the handler.
pub(crate) fn record_fault(state: &IdpState, request: &Request, fault: &Fault) {
    let params = Params::new(request.form_params());
    let mut record = RecordedTokenRequest::new(request, &params);
    record.fault = Some(fault.name().to_string());
    record.status = match fault {
        Fault::Status(status) => Some(*status),
        Fault::Close => None,
        _ => Some(200),
    };
    lock(&state.token_log).push(record);
}

fn process(
    state: &IdpState,
    request: &Request,
    params: &Params,
    record: &mut RecordedTokenRequest,
) -> Result<Map<String, Value>, OAuthError> {
    if !request.method.eq_ignore_ascii_case("POST") {
        return Err(OAuthError {
            status: 405,
            ..OAuthError::invalid_request("the token endpoint accepts POST only")
        });
    }
    let media_type =
        request.header("content-type").and_then(|v| v.split(';').next()).map(str::trim).unwrap_or_default();
    if !media_type.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(OAuthError::invalid_request("content-type must be application/x-www-form-urlencoded"));
    }
    params.reject_duplicates()?;
    let client = authenticate(&state.config, request, params)?;
    record.auth_method = Some(client.method.to_string());
    record.client_id = Some(client.registration.client_id.clone());
    let grant_type = params.require("grant_type")?;
    if !SUPPORTED_GRANTS.contains(&grant_type) {
        return Err(OAuthError::unsupported_grant_type(format!(
            "grant type {grant_type:?} is not supported"
        )));
    }
    if !client.registration.allows_grant(grant_type) {
        let description = format!("grant type {grant_type} is not allowed for this client");
        return Err(match state.config.quirks.unregistered_grant_error.as_str() {
            "invalid_request" => OAuthError::invalid_request(description),
            _ => OAuthError::unauthorized_client(description),
        });
    }
    match grant_type {
        "authorization_code" => code_grant::authorization_code(state, &client, params),
        "refresh_token" => code_grant::refresh_token(state, &client, params),
        "client_credentials" => client_credentials(state, &client, params),
        GRANT_TOKEN_EXCHANGE => exchange::token_exchange(state, &client, params),
        _ => exchange::on_behalf_of(state, &client, params),
    }
}

/// The `aud` of a token: every `audience` then `resource` parameter
/// (one value: a string, several: an array), or the client's default.
/// Each must be allowed for the client, else `invalid_target`.
pub(crate) fn resolve_audience(client: &ClientRegistration, params: &Params) -> Result<Value, OAuthError> {
    let mut requested: Vec<String> = Vec::new();
    for value in params.all("audience").into_iter().chain(params.all("resource")) {
        if !requested.contains(&value) {
            requested.push(value);
        }
    }
    if let Some(denied) = requested.iter().find(|aud| !client.allows_audience(aud)) {
        return Err(OAuthError::invalid_target(format!(
            "audience {denied:?} is not allowed for this client"
        )));
    }
    Ok(match requested.len() {
        0 => json!(client.fallback_audience()),
        1 => json!(requested[0]),
        _ => json!(requested),
    })
}

/// A Bearer token response body.
pub(crate) fn bearer_response(
    state: &IdpState,
    access_token: String,
    scope: Option<&str>,
) -> Map<String, Value> {
    let mut body = Map::new();
    body.insert("access_token".into(), json!(access_token));
    body.insert("token_type".into(), json!("Bearer"));
    body.insert("expires_in".into(), json!(state.expires_in()));
    if let Some(scope) = scope {
        body.insert("scope".into(), json!(scope));
    }
    body
}

/// Client credentials: the client acts for itself (`sub` = client id).
/// Requested scopes must be in `allowed_scopes` (when it is non-empty);
/// without a `scope` parameter the client gets all its allowed scopes.
fn client_credentials(
    state: &IdpState,
    client: &AuthenticatedClient,
    params: &Params,
) -> Result<Map<String, Value>, OAuthError> {
    let registration = &client.registration;
    if client.method == "none" {
        return Err(OAuthError::unauthorized_client("public clients cannot use client_credentials"));
    }
    let aud = if state.config.quirks.client_credentials_ignores_audience {
        let resources = params.all("resource");
        match resources.len() {
            0 => json!(registration.fallback_audience()),
            1 => json!(resources[0]),
            _ => json!(resources),
        }
    } else {
        resolve_audience(registration, params)?
    };
    let scope = match params.get("scope") {
        Some(requested) => {
            if let Some(denied) = scope_list(requested).into_iter().find(|s| {
                !registration.allowed_scopes.is_empty() && !registration.allowed_scopes.iter().any(|a| a == s)
            }) {
                return Err(OAuthError::invalid_scope(format!("scope {denied:?} is not allowed")));
            }
            Some(requested.to_string())
        }
        None if registration.allowed_scopes.is_empty() => None,
        None => Some(registration.allowed_scopes.join(" ")),
    };
    let mut claims = Map::new();
    claims.insert("sub".into(), json!(registration.client_id));
    claims.insert("aud".into(), aud);
    claims.insert("client_id".into(), json!(registration.client_id));
    if let Some(scope) = &scope {
        claims.insert("scope".into(), json!(scope));
    }
    let token = state.sign_token(claims, &state.config.typ)?;
    Ok(bearer_response(state, token, scope.as_deref()))
}
