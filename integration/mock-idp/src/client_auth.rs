//! Client authentication at the token endpoint (RFC 6749 §2.3).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http_kit::{Request, percent_decode};

use crate::config::{AuthMethod, ClientRegistration, MockIdpConfig};
use crate::oauth_error::OAuthError;
use crate::params::Params;

/// A client that proved its identity (or a public client that named itself).
#[derive(Debug, Clone)]
pub(crate) struct AuthenticatedClient {
    pub registration: ClientRegistration,
    /// `client_secret_basic`, `client_secret_post` or `none`.
    pub method: &'static str,
}

/// Credentials from an `Authorization: Basic` header.
struct BasicCredentials {
    client_id: String,
    client_secret: String,
}

/// Decodes Basic credentials; per RFC 6749 §2.3.1 both parts are
/// form-urlencoded before base64. `Ok(None)` when no Basic header is sent.
fn basic_credentials(request: &Request) -> Result<Option<BasicCredentials>, OAuthError> {
    let Some(value) = request.header("authorization") else {
        return Ok(None);
    };
    let Some((scheme, encoded)) = value.split_once(' ') else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    let malformed = || OAuthError::invalid_client("malformed Basic credentials", true);
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| malformed())?;
    let text = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (id, secret) = text.split_once(':').ok_or_else(malformed)?;
    Ok(Some(BasicCredentials {
        client_id: percent_decode(id, true),
        client_secret: percent_decode(secret, true),
    }))
}

/// The client id a request claims, for the request log (never the secret).
pub(crate) fn claimed_client_id(request: &Request, params: &Params) -> Option<String> {
    match basic_credentials(request) {
        Ok(Some(basic)) => Some(basic.client_id),
        _ => params.get("client_id").map(str::to_string),
    }
}

/// Authenticates the client of a token request. Exactly one method may be
/// used; a method the client is not registered for is refused.
pub(crate) fn authenticate(
    config: &MockIdpConfig,
    request: &Request,
    params: &Params,
) -> Result<AuthenticatedClient, OAuthError> {
    let body_id = params.get("client_id");
    let body_secret = params.get("client_secret");
    if let Some(basic) = basic_credentials(request)? {
        let fail = |why: &str| OAuthError::invalid_client(why, true);
        if body_secret.is_some() {
            return Err(fail("more than one client authentication method used"));
        }
        if body_id.is_some_and(|id| id != basic.client_id) {
            return Err(fail("client_id does not match the Basic credentials"));
        }
        let client = config.client(&basic.client_id).ok_or_else(|| fail("unknown client"))?;
        check_secret(client, AuthMethod::ClientSecretBasic, &basic.client_secret).map_err(fail)?;
        return Ok(AuthenticatedClient {
            registration: client.clone(),
            method: AuthMethod::ClientSecretBasic.as_str(),
        });
    }
    let fail = |why: &str| OAuthError::invalid_client(why, false);
    let client_id = body_id.ok_or_else(|| fail("client authentication required"))?;
    let client = config.client(client_id).ok_or_else(|| fail("unknown client"))?;
    match body_secret {
        Some(secret) => {
            check_secret(client, AuthMethod::ClientSecretPost, secret).map_err(fail)?;
            Ok(AuthenticatedClient {
                registration: client.clone(),
                method: AuthMethod::ClientSecretPost.as_str(),
            })
        }
        None if client.client_secret.is_none() => {
            Ok(AuthenticatedClient { registration: client.clone(), method: "none" })
        }
        None => Err(fail("confidential client must authenticate")),
    }
}

fn check_secret(
    client: &ClientRegistration,
    method: AuthMethod,
    presented: &str,
) -> Result<(), &'static str> {
    let Some(expected) = &client.client_secret else {
        return Err("public client must not send a secret");
    };
    if !client.auth_methods.contains(&method) {
        return Err("authentication method not allowed for this client");
    }
    if !constant_time_eq(expected.as_bytes(), presented.as_bytes()) {
        return Err("client authentication failed");
    }
    Ok(())
}

/// Compares without an early exit, as a real server would for secrets.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
