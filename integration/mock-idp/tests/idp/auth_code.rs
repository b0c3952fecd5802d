//! /authorize and the authorization code + refresh token grants.

use mock_idp::DEMO_REDIRECT_URI;
use serde_json::json;

use crate::common::*;

#[test]
fn code_flow_with_pkce_issues_access_refresh_and_id_tokens() {
    let idp = start();
    let params = authorize(
        &idp,
        &[
            ("scope", "openid profile"),
            ("nonce", "n-1"),
            ("login_hint", "bob"),
            ("acr_values", "urn:mfa urn:other"),
            ("max_age", "300"),
        ],
    );
    assert_eq!(param(&params, "state"), Some("xyz"));
    assert_eq!(param(&params, "iss"), Some(idp.issuer().as_str()));
    let code = param(&params, "code").unwrap();
    let response = redeem(&idp, code);
    assert_eq!(response.status, 200, "{}", response.body_str());
    assert_eq!(response.header("cache-control"), Some("no-store"));
    let body = response.json().unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 300);
    assert_eq!(body["scope"], "openid profile");
    assert!(body["refresh_token"].as_str().unwrap().len() >= 32);

    let access = body["access_token"].as_str().unwrap();
    assert_eq!(header(access)["typ"], "at+jwt");
    assert!(verify_with_published_jwk(&idp, access));
    let at = claims(access);
    assert_eq!(at["iss"], idp.issuer().as_str());
    assert_eq!(at["sub"], "bob");
    assert_eq!(at["aud"], "finport-api", "client's default audience");
    assert_eq!((at["client_id"].as_str(), at["azp"].as_str()), (Some("finport-app"), Some("finport-app")));
    assert_eq!(at["scope"], "openid profile");
    assert_eq!(at["acr"], "urn:mfa");
    assert_eq!(at["amr"], json!(["pwd", "mfa"]));
    assert_eq!(at["email"], "bob@example.com");
    assert_eq!(at["exp"].as_i64().unwrap() - at["iat"].as_i64().unwrap(), 300);
    assert!(at["jti"].is_string() && at["nbf"].is_i64() && at["auth_time"].is_i64());

    let id_token = body["id_token"].as_str().unwrap();
    assert_eq!(header(id_token)["typ"], "JWT");
    assert!(verify_with_published_jwk(&idp, id_token));
    let id = claims(id_token);
    assert_eq!(
        (id["aud"].as_str(), id["nonce"].as_str(), id["sub"].as_str()),
        (Some("finport-app"), Some("n-1"), Some("bob"))
    );
}

#[test]
fn defaults_without_acr_or_openid() {
    let idp = start();
    let body = redeem(&idp, &code(&idp, &[("scope", "portfolio.read")])).json().unwrap();
    assert!(body.get("id_token").is_none());
    let at = claims(body["access_token"].as_str().unwrap());
    assert_eq!(at["sub"], "alice", "first configured user");
    assert!(at.get("acr").is_none());
    assert_eq!(at["amr"], json!(["pwd"]));
}

#[test]
fn wrong_verifier_is_invalid_grant() {
    let idp = start();
    let code = code(&idp, &[]);
    let response = token_request(
        &idp,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", "finport-app"),
            ("code", &code),
            ("redirect_uri", DEMO_REDIRECT_URI),
            ("code_verifier", &"x".repeat(43)),
        ],
        None,
    );
    assert_oauth_error(&response, 400, "invalid_grant");
    let short = token_request(
        &idp,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", "finport-app"),
            ("code", &code),
            ("redirect_uri", DEMO_REDIRECT_URI),
            ("code_verifier", "short"),
        ],
        None,
    );
    assert_oauth_error(&short, 400, "invalid_request");
}

#[test]
fn reused_code_is_invalid_grant_and_revokes_its_refresh_token() {
    let idp = start();
    let code = code(&idp, &[]);
    let first = redeem(&idp, &code).json().unwrap();
    assert_oauth_error(&redeem(&idp, &code), 400, "invalid_grant");
    let refresh = first["refresh_token"].as_str().unwrap();
    let response = token_request(
        &idp,
        &[("grant_type", "refresh_token"), ("client_id", "finport-app"), ("refresh_token", refresh)],
        None,
    );
    assert_oauth_error(&response, 400, "invalid_grant");
}

#[test]
fn redirect_uri_must_match_the_authorization_request() {
    let idp = start();
    let code = code(&idp, &[]);
    let response = token_request(
        &idp,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", "finport-app"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:8080/other"),
            ("code_verifier", VERIFIER),
        ],
        None,
    );
    assert_oauth_error(&response, 400, "invalid_grant");
}

#[test]
fn authorize_rejects_bad_clients_without_redirecting() {
    let idp = start();
    let challenge = mock_idp::s256_challenge(VERIFIER);
    let query = |pairs: &[(&str, &str)]| format!("/authorize?{}", http_kit::form_urlencode(pairs));
    for pairs in [
        vec![("response_type", "code"), ("client_id", "nobody"), ("redirect_uri", DEMO_REDIRECT_URI)],
        vec![
            ("response_type", "code"),
            ("client_id", "finport-app"),
            ("redirect_uri", "http://evil.test/cb"),
        ],
        vec![("response_type", "code"), ("client_id", "finport-app")],
    ] {
        let response = get(&idp, &query(&pairs));
        assert_eq!(response.status, 400);
        assert!(response.header("location").is_none());
        assert_eq!(response.json().unwrap()["error"], "invalid_request");
    }
    let challenge = challenge.as_str();
    assert_eq!(redirect_error(&idp, &[("response_type", "token")]), "unsupported_response_type");
    assert_eq!(redirect_error(&idp, &[("response_type", "code")]), "invalid_request", "PKCE is required");
    let plain =
        [("response_type", "code"), ("code_challenge", challenge), ("code_challenge_method", "plain")];
    assert_eq!(redirect_error(&idp, &plain), "invalid_request");
    let implicit_plain = [("response_type", "code"), ("code_challenge", challenge)];
    assert_eq!(redirect_error(&idp, &implicit_plain), "invalid_request");
}

/// Runs /authorize expecting an error redirect; returns the `error` code.
fn redirect_error(idp: &mock_idp::MockIdp, extra: &[(&str, &str)]) -> String {
    let mut pairs = vec![("client_id", "finport-app"), ("redirect_uri", DEMO_REDIRECT_URI), ("state", "s")];
    pairs.extend_from_slice(extra);
    let response = get(idp, &format!("/authorize?{}", http_kit::form_urlencode(&pairs)));
    assert_eq!(response.status, 302);
    let location = response.header("location").unwrap().to_string();
    assert!(location.starts_with(DEMO_REDIRECT_URI));
    let params = http_kit::parse_urlencoded(location.split_once('?').unwrap().1);
    assert_eq!(param(&params, "state"), Some("s"));
    param(&params, "error").unwrap().to_string()
}

#[test]
fn refresh_rotates_the_refresh_token_and_keeps_the_authorization() {
    let idp = start();
    let first = redeem(&idp, &code(&idp, &[("acr_values", "urn:mfa"), ("scope", "a b")])).json().unwrap();
    let refresh = first["refresh_token"].as_str().unwrap();
    let refresh_with = |token: &str, scope: Option<&str>| {
        let mut pairs =
            vec![("grant_type", "refresh_token"), ("client_id", "finport-app"), ("refresh_token", token)];
        pairs.extend(scope.map(|s| ("scope", s)));
        token_request(&idp, &pairs, None)
    };
    let second = refresh_with(refresh, None);
    assert_eq!(second.status, 200, "{}", second.body_str());
    let second = second.json().unwrap();
    let new_refresh = second["refresh_token"].as_str().unwrap();
    assert_ne!(new_refresh, refresh);
    let (old, new) =
        (claims(first["access_token"].as_str().unwrap()), claims(second["access_token"].as_str().unwrap()));
    assert_ne!(old["jti"], new["jti"]);
    for name in ["sub", "aud", "scope", "acr", "amr", "auth_time", "client_id"] {
        assert_eq!(old[name], new[name], "{name}");
    }
    assert_oauth_error(&refresh_with(refresh, None), 400, "invalid_grant");
    assert_oauth_error(&refresh_with(new_refresh, Some("a c")), 400, "invalid_scope");
    let narrowed = refresh_with(new_refresh, Some("a")).json().unwrap();
    assert_eq!(narrowed["scope"], "a");
    assert_oauth_error(&refresh_with("never-issued", None), 400, "invalid_grant");
}

#[test]
fn resource_indicators_set_the_audience_and_may_only_narrow() {
    let idp = start();
    let (mcp, orders) = ("https://mcp.example.com/mcp", "https://orders.example.com/");
    // RFC 8707 §2.1: resources in the authorization request ...
    let body = redeem(&idp, &code(&idp, &[("resource", mcp)])).json().unwrap();
    assert_eq!(claims(body["access_token"].as_str().unwrap())["aud"], mcp);
    let two = code(&idp, &[("resource", mcp), ("resource", orders)]);
    let body = redeem(&idp, &two).json().unwrap();
    assert_eq!(claims(body["access_token"].as_str().unwrap())["aud"], json!([mcp, orders]));

    // ... narrowed at the token endpoint (§2.2), never widened.
    let narrowed = |code: &str, resource: &str| {
        token_request(
            &idp,
            &[
                ("grant_type", "authorization_code"),
                ("client_id", "finport-app"),
                ("code", code),
                ("redirect_uri", DEMO_REDIRECT_URI),
                ("code_verifier", VERIFIER),
                ("resource", resource),
            ],
            None,
        )
    };
    let body = narrowed(&code(&idp, &[("resource", mcp), ("resource", orders)]), orders).json().unwrap();
    assert_eq!(claims(body["access_token"].as_str().unwrap())["aud"], orders);
    let widened = narrowed(&code(&idp, &[("resource", mcp)]), orders);
    assert_oauth_error(&widened, 400, "invalid_target");

    // Not absolute, or with a fragment: invalid_target at /authorize.
    assert_eq!(redirect_error(&idp, &pkce(&[("resource", "mcp")])), "invalid_target");
    assert_eq!(redirect_error(&idp, &pkce(&[("resource", "https://mcp.example.com/#x")])), "invalid_target");
}

/// `extra` with a valid PKCE challenge and response type.
fn pkce<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut pairs = vec![
        ("response_type", "code"),
        ("code_challenge", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"),
        ("code_challenge_method", "S256"),
    ];
    pairs.extend_from_slice(extra);
    pairs
}
