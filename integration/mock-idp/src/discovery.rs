//! Metadata and key publication: discovery documents, `/jwks`, `/userinfo`.

use http_kit::{Request, Response};
use serde_json::{Value, json};

use crate::config::{GRANT_JWT_BEARER, GRANT_TOKEN_EXCHANGE};
use crate::jwt::verify_own_token;
use crate::state::{IdpState, lock, now_secs};

/// The OpenID Connect discovery / RFC 8414 metadata document. Endpoint
/// URLs hang off the issuer, as a real IdP's do.
pub(crate) fn metadata(state: &IdpState) -> Value {
    let base = state.issuer.trim_end_matches('/');
    json!({
        "issuer": state.issuer,
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "jwks_uri": format!("{base}/jwks"),
        "userinfo_endpoint": format!("{base}/userinfo"),
        "grant_types_supported": [
            "authorization_code",
            "refresh_token",
            "client_credentials",
            GRANT_TOKEN_EXCHANGE,
            GRANT_JWT_BEARER,
        ],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "id_token_signing_alg_values_supported": state.signing_algs(),
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "subject_types_supported": ["public"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "acr", "amr", "nonce", "email", "name"],
        "authorization_response_iss_parameter_supported": true,
    })
}

pub(crate) fn discovery(state: &IdpState) -> Response {
    Response::json(200, &metadata(state))
}

pub(crate) fn jwks(state: &IdpState) -> Response {
    Response::json(200, &lock(&state.keys).jwks())
}

/// `/userinfo`: the user's claims for a valid bearer access token, else a
/// 401 with an RFC 6750 challenge.
pub(crate) fn userinfo(state: &IdpState, request: &Request) -> Response {
    let challenge = |extra: &str| {
        Response::json(401, &json!({"error": "invalid_token"}))
            .with_header("www-authenticate", &format!("Bearer realm=\"mock-idp\"{extra}"))
    };
    let Some(token) = request.bearer_token() else {
        return Response::empty(401).with_header("www-authenticate", "Bearer realm=\"mock-idp\"");
    };
    let verified = verify_own_token(&lock(&state.keys), &state.issuer, token, now_secs());
    let claims = match verified {
        Ok(claims) => claims,
        Err(why) => {
            let why = why.replace('"', "'");
            return challenge(&format!(", error=\"invalid_token\", error_description=\"{why}\""));
        }
    };
    let sub = claims.get("sub").and_then(Value::as_str).unwrap_or_default();
    let mut body = state.user_claims(sub);
    body.insert("sub".into(), json!(sub));
    Response::json(200, &Value::Object(body))
}
