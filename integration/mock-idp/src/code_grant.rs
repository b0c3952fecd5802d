//! The authorization code grant (with mandatory PKCE S256) and the
//! refresh token grant, which rotates refresh tokens on every use.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::client_auth::AuthenticatedClient;
use crate::keys::{b64url, random_token};
use crate::oauth_error::OAuthError;
use crate::params::{Params, scope_list};
use crate::state::{IdpState, RefreshGrant, lock, now_secs};
use crate::token_endpoint::bearer_response;

/// The user authorization behind a code or refresh token.
struct Authorization<'a> {
    client_id: &'a str,
    sub: &'a str,
    scope: Option<&'a str>,
    /// The resources authorized (RFC 8707), kept for refreshes.
    resources: &'a [String],
    /// The `aud` of the access token: the resources asked for at the token
    /// endpoint, else those authorized, else the client's default.
    audience: Value,
    acr: Option<&'a str>,
    auth_time: i64,
}

/// RFC 8707 §2.2: the token request may narrow the authorized resources,
/// never widen them; the result is the token's `aud`.
fn audience_for(
    client: &AuthenticatedClient,
    authorized: &[String],
    params: &Params,
) -> Result<Value, OAuthError> {
    let requested = params.all("resource");
    if let Some(extra) = requested.iter().find(|r| !authorized.contains(r)) {
        return Err(OAuthError::invalid_target(format!("resource {extra} was not authorized")));
    }
    let chosen = if requested.is_empty() { authorized.to_vec() } else { requested };
    Ok(match chosen.len() {
        0 => json!(client.registration.fallback_audience()),
        1 => json!(chosen[0]),
        _ => json!(chosen),
    })
}

/// RFC 7636 §4.1: 43-128 characters from the unreserved set.
fn valid_code_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// `BASE64URL(SHA256(verifier))`, the PKCE S256 code challenge (RFC 7636 §4.2).
pub fn s256_challenge(verifier: &str) -> String {
    b64url(&Sha256::digest(verifier.as_bytes()))
}

pub(crate) fn authorization_code(
    state: &IdpState,
    client: &AuthenticatedClient,
    params: &Params,
) -> Result<Map<String, Value>, OAuthError> {
    let code = params.require("code")?;
    let redirect_uri = params.require("redirect_uri")?;
    let verifier = params.require("code_verifier")?;
    if !valid_code_verifier(verifier) {
        return Err(OAuthError::invalid_request("code_verifier must be 43-128 unreserved characters"));
    }
    let now = now_secs();
    let granted = {
        let mut grants = lock(&state.grants);
        if grants.redeemed_codes.contains_key(code) {
            // A replayed code means it leaked: revoke what it produced.
            grants.revoke_code_family(code);
            return Err(OAuthError::invalid_grant("authorization code already used"));
        }
        let granted = grants
            .codes
            .remove(code)
            .ok_or_else(|| OAuthError::invalid_grant("unknown authorization code"))?;
        grants.redeemed_codes.insert(code.to_string(), now);
        granted
    };
    if granted.expires_at <= now {
        return Err(OAuthError::invalid_grant("authorization code expired"));
    }
    if granted.client_id != client.registration.client_id {
        return Err(OAuthError::invalid_grant("code was issued to another client"));
    }
    if granted.redirect_uri != redirect_uri {
        return Err(OAuthError::invalid_grant("redirect_uri does not match the authorization request"));
    }
    if s256_challenge(verifier) != granted.code_challenge {
        return Err(OAuthError::invalid_grant("code_verifier does not match the code_challenge"));
    }
    let authorization = Authorization {
        client_id: &granted.client_id,
        sub: &granted.sub,
        scope: granted.scope.as_deref(),
        resources: &granted.resources,
        audience: audience_for(client, &granted.resources, params)?,
        acr: granted.acr.as_deref(),
        auth_time: granted.auth_time,
    };
    let mut body = issue(state, client, &authorization, code, granted.scope.as_deref())?;
    if granted.scope.as_deref().is_some_and(|s| scope_list(s).contains(&"openid")) {
        let id_token = id_token(state, &authorization, granted.nonce.as_deref())?;
        body.insert("id_token".into(), json!(id_token));
    }
    Ok(body)
}

pub(crate) fn refresh_token(
    state: &IdpState,
    client: &AuthenticatedClient,
    params: &Params,
) -> Result<Map<String, Value>, OAuthError> {
    let presented = params.require("refresh_token")?;
    let mut grants = lock(&state.grants);
    let grant = grants
        .refresh_tokens
        .get(presented)
        .ok_or_else(|| OAuthError::invalid_grant("unknown or already used refresh token"))?
        .clone();
    if grant.client_id != client.registration.client_id {
        return Err(OAuthError::invalid_grant("refresh token was issued to another client"));
    }
    // A narrower scope may be requested, never a wider one (RFC 6749 §6).
    let scope = match params.get("scope") {
        Some(requested) => {
            let original = grant.scope.as_deref().map(scope_list).unwrap_or_default();
            if let Some(extra) = scope_list(requested).into_iter().find(|s| !original.contains(s)) {
                return Err(OAuthError::invalid_scope(format!("scope {extra:?} was not originally granted")));
            }
            Some(requested)
        }
        None => grant.scope.as_deref(),
    };
    // Only a successful refresh consumes the token; errors leave it usable.
    grants.refresh_tokens.remove(presented);
    drop(grants);
    let authorization = Authorization {
        client_id: &grant.client_id,
        sub: &grant.sub,
        scope,
        resources: &grant.resources,
        audience: audience_for(client, &grant.resources, params)?,
        acr: grant.acr.as_deref(),
        auth_time: grant.auth_time,
    };
    // The new refresh token keeps the original scope (RFC 6749 §6).
    issue(state, client, &authorization, &grant.code, grant.scope.as_deref())
}

/// Access token claims for a user authorization: the user's extra claims,
/// overridden by the protocol claims.
fn user_access_claims(state: &IdpState, auth: &Authorization<'_>) -> Map<String, Value> {
    let mut claims = state.user_claims(auth.sub);
    claims.insert("sub".into(), json!(auth.sub));
    claims.insert("aud".into(), auth.audience.clone());
    claims.insert("client_id".into(), json!(auth.client_id));
    claims.insert("azp".into(), json!(auth.client_id));
    if let Some(scope) = auth.scope {
        claims.insert("scope".into(), json!(scope));
    }
    insert_authentication_claims(&mut claims, auth);
    claims
}

/// `acr` when requested, `amr` (`pwd`, plus `mfa` for a step-up) and `auth_time`.
fn insert_authentication_claims(claims: &mut Map<String, Value>, auth: &Authorization<'_>) {
    let mut amr = vec!["pwd"];
    if let Some(acr) = auth.acr {
        claims.insert("acr".into(), json!(acr));
        amr.push("mfa");
    }
    claims.insert("amr".into(), json!(amr));
    claims.insert("auth_time".into(), json!(auth.auth_time));
}

/// Signs an access token and, when the client may refresh, a new refresh
/// token standing for `refresh_scope`.
fn issue(
    state: &IdpState,
    client: &AuthenticatedClient,
    auth: &Authorization<'_>,
    code: &str,
    refresh_scope: Option<&str>,
) -> Result<Map<String, Value>, OAuthError> {
    let access_token = state.sign_token(user_access_claims(state, auth), &state.config.typ)?;
    let mut body = bearer_response(state, access_token, auth.scope);
    if client.registration.allows_grant("refresh_token") {
        let refresh_token = random_token::<32>()?;
        lock(&state.grants).refresh_tokens.insert(
            refresh_token.clone(),
            RefreshGrant {
                client_id: auth.client_id.to_string(),
                sub: auth.sub.to_string(),
                scope: refresh_scope.map(str::to_string),
                resources: auth.resources.to_vec(),
                acr: auth.acr.map(str::to_string),
                auth_time: auth.auth_time,
                code: code.to_string(),
            },
        );
        body.insert("refresh_token".into(), json!(refresh_token));
    }
    Ok(body)
}

/// An OIDC ID token: `aud` is the client, `nonce` echoed, `typ: JWT`.
fn id_token(state: &IdpState, auth: &Authorization<'_>, nonce: Option<&str>) -> Result<String, OAuthError> {
    let mut claims = state.user_claims(auth.sub);
    claims.insert("sub".into(), json!(auth.sub));
    claims.insert("aud".into(), json!(auth.client_id));
    claims.insert("azp".into(), json!(auth.client_id));
    if let Some(nonce) = nonce {
        claims.insert("nonce".into(), json!(nonce));
    }
    insert_authentication_claims(&mut claims, auth);
    state.sign_token(claims, "JWT")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s256_matches_rfc7636_appendix_b() {
        assert_eq!(
            s256_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn verifier_shape() {
        assert!(valid_code_verifier(&"a".repeat(43)));
        assert!(!valid_code_verifier(&"a".repeat(42)));
        assert!(!valid_code_verifier(&"a".repeat(129)));
        assert!(!valid_code_verifier(&format!("{}+", "a".repeat(43))));
    }
}
