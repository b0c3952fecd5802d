//! The OAuth flows a user's browser would go through, done by the demo.

use std::time::Duration;

use http_kit::ClientRequest;
use mock_idp::{DEMO_REDIRECT_URI, MockIdp, s256_challenge};
use serde_json::Value;

/// The real browser flow, done by a program: /authorize (auto-approved by
/// the mock IdP), then the code and the PKCE verifier at /token.
pub fn sign_in(idp: &MockIdp, user: &str, acr: Option<&str>) -> Result<String, String> {
    let verifier = format!("demo-verifier-{}-{}", user, mock_idp::now_secs()).repeat(2);
    let mut query = vec![
        ("response_type", "code"),
        ("client_id", "finport-app"),
        ("redirect_uri", DEMO_REDIRECT_URI),
        ("scope", "openid portfolio:read"),
        ("state", "demo-state"),
        ("login_hint", user),
        ("code_challenge_method", "S256"),
    ];
    let challenge = s256_challenge(&verifier);
    query.push(("code_challenge", &challenge));
    if let Some(acr) = acr {
        query.push(("acr_values", acr));
    }
    let target = format!("/authorize?{}", http_kit::form_urlencode(&query));
    let redirect = http_kit::send(idp.addr(), &ClientRequest::get(&target), Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    let location = redirect.header("location").ok_or("no redirect from /authorize")?;
    let code = http_kit::parse_urlencoded(location.split_once('?').map_or("", |(_, q)| q))
        .into_iter()
        .find(|(name, _)| name == "code")
        .map(|(_, code)| code)
        .ok_or("no code in the redirect")?;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", DEMO_REDIRECT_URI),
        ("client_id", "finport-app"),
        ("code_verifier", verifier.as_str()),
    ];
    let response =
        http_kit::send(idp.addr(), &ClientRequest::post_form("/token", &form), Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
    let body: Value = response.json().map_err(|e| format!("token response: {e}"))?;
    body["access_token"].as_str().map(String::from).ok_or_else(|| format!("token endpoint said {body}"))
}
