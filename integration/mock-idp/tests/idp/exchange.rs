//! RFC 8693 token exchange and Entra on-behalf-of.

use mock_idp::{GRANT_JWT_BEARER, GRANT_TOKEN_EXCHANGE, SigningKey, TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_JWT};
use serde_json::{Value, json};

use crate::common::*;

fn user_token(idp: &mock_idp::MockIdp, extra: Value) -> String {
    let mut claims = idp.standard_claims("alice", "finport-api", 300);
    claims["scope"] = json!("portfolio.read portfolio.write");
    claims["acr"] = json!("urn:mfa");
    for (name, value) in extra.as_object().unwrap() {
        claims[name] = value.clone();
    }
    idp.mint(claims)
}

fn agent_token(idp: &mock_idp::MockIdp, sub: &str) -> String {
    idp.mint(idp.standard_claims(sub, "agent-broker", 300))
}

fn exchange(idp: &mock_idp::MockIdp, subject: &str, extra: &[(&str, &str)]) -> http_kit::ClientResponse {
    let mut pairs = vec![
        ("grant_type", GRANT_TOKEN_EXCHANGE),
        ("subject_token", subject),
        ("subject_token_type", TOKEN_TYPE_ACCESS_TOKEN),
    ];
    pairs.extend_from_slice(extra);
    token_request(idp, &pairs, Some(BROKER))
}

fn issued(response: &http_kit::ClientResponse) -> (Value, Value) {
    assert_eq!(response.status, 200, "{}", response.body_str());
    let body = response.json().unwrap();
    let claims = claims(body["access_token"].as_str().unwrap());
    (body, claims)
}

#[test]
fn exchange_with_actor_nests_the_previous_act_chain() {
    let idp = start();
    let subject = user_token(&idp, json!({"act": {"sub": "agent-a"}}));
    let actor = agent_token(&idp, "agent-b");
    let response = exchange(
        &idp,
        &subject,
        &[
            ("actor_token", &actor),
            ("actor_token_type", TOKEN_TYPE_ACCESS_TOKEN),
            ("audience", "portfolio-api"),
        ],
    );
    let (body, claims) = issued(&response);
    assert_eq!(body["issued_token_type"], TOKEN_TYPE_ACCESS_TOKEN);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 300);
    assert_eq!(body["scope"], "portfolio.read portfolio.write", "subject's scope kept");
    assert_eq!(response.header("cache-control"), Some("no-store"));
    assert!(verify_with_published_jwk(&idp, body["access_token"].as_str().unwrap()));
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["aud"], "portfolio-api");
    assert_eq!(claims["client_id"], "agent-broker");
    assert_eq!(claims["email"], "alice@example.com", "user claims copied");
    assert_eq!(claims["acr"], "urn:mfa", "authentication context carried");
    assert_eq!(claims["act"], json!({"sub": "agent-b", "act": {"sub": "agent-a"}}));
    assert_eq!(claims["iss"], idp.issuer().as_str());
}

#[test]
fn exchange_without_actor_keeps_the_subjects_act() {
    let idp = start();
    let chained = user_token(&idp, json!({"act": {"sub": "agent-a"}}));
    let (_, claims) = issued(&exchange(&idp, &chained, &[]));
    assert_eq!(claims["act"], json!({"sub": "agent-a"}));
    assert_eq!(claims["aud"], "agent-broker", "no audience requested: client fallback");
    let plain = user_token(&idp, json!({}));
    let (_, claims) = issued(&exchange(&idp, &plain, &[]));
    assert!(claims.get("act").is_none());
}

#[test]
fn may_act_restricts_who_can_act() {
    let idp = start();
    let subject = user_token(&idp, json!({"may_act": {"sub": "agent-b"}}));
    let wrong = agent_token(&idp, "agent-c");
    let refused =
        exchange(&idp, &subject, &[("actor_token", &wrong), ("actor_token_type", TOKEN_TYPE_ACCESS_TOKEN)]);
    assert_oauth_error(&refused, 400, "invalid_grant");
    let right = agent_token(&idp, "agent-b");
    let (_, claims) = issued(&exchange(
        &idp,
        &subject,
        &[("actor_token", &right), ("actor_token_type", TOKEN_TYPE_ACCESS_TOKEN)],
    ));
    assert_eq!(claims["act"], json!({"sub": "agent-b"}));
    assert!(claims.get("may_act").is_none());
}

#[test]
fn disallowed_audience_is_invalid_target() {
    let idp = start();
    let subject = user_token(&idp, json!({}));
    let response = token_request(
        &idp,
        &[
            ("grant_type", GRANT_TOKEN_EXCHANGE),
            ("client_id", "restricted-agent"),
            ("client_secret", "restricted-secret"),
            ("subject_token", &subject),
            ("subject_token_type", TOKEN_TYPE_ACCESS_TOKEN),
            ("resource", "https://ledger.example"),
        ],
        None,
    );
    assert_oauth_error(&response, 400, "invalid_target");
}

#[test]
fn unverifiable_subject_tokens_are_invalid_grant() {
    let idp = start();
    let expired = idp.mint(idp.standard_claims("alice", "finport-api", -5));
    assert_oauth_error(&exchange(&idp, &expired, &[]), 400, "invalid_grant");
    let foreign = SigningKey::es256("foreign").unwrap();
    let forged = foreign
        .sign_compact(&json!({"alg": "ES256", "kid": "foreign"}), &idp.standard_claims("alice", "x", 60));
    assert_oauth_error(&exchange(&idp, &forged, &[]), 400, "invalid_grant");
    let mut other_issuer = idp.standard_claims("alice", "x", 60);
    other_issuer["iss"] = json!("https://elsewhere.example");
    assert_oauth_error(&exchange(&idp, &idp.mint(other_issuer), &[]), 400, "invalid_grant");
    assert_oauth_error(&exchange(&idp, "not-a-jwt", &[]), 400, "invalid_grant");
    let bad_actor = idp.mint(idp.standard_claims("agent-b", "x", -5));
    let subject = user_token(&idp, json!({}));
    let response = exchange(
        &idp,
        &subject,
        &[("actor_token", &bad_actor), ("actor_token_type", TOKEN_TYPE_ACCESS_TOKEN)],
    );
    let body = assert_oauth_error(&response, 400, "invalid_grant");
    assert!(body["error_description"].as_str().unwrap().starts_with("actor_token"));
}

#[test]
fn actor_token_and_its_type_come_together() {
    let idp = start();
    let subject = user_token(&idp, json!({}));
    let type_only = exchange(&idp, &subject, &[("actor_token_type", TOKEN_TYPE_ACCESS_TOKEN)]);
    assert_oauth_error(&type_only, 400, "invalid_request");
    let actor = agent_token(&idp, "agent-b");
    assert_oauth_error(&exchange(&idp, &subject, &[("actor_token", &actor)]), 400, "invalid_request");
    let no_type = token_request(
        &idp,
        &[("grant_type", GRANT_TOKEN_EXCHANGE), ("subject_token", &subject)],
        Some(BROKER),
    );
    assert_oauth_error(&no_type, 400, "invalid_request");
    let odd_type =
        exchange(&idp, &subject, &[("requested_token_type", "urn:ietf:params:oauth:token-type:saml2")]);
    assert_oauth_error(&odd_type, 400, "invalid_request");
}

#[test]
fn scope_may_narrow_but_not_widen_and_jwt_type_is_n_a() {
    let idp = start();
    let subject = user_token(&idp, json!({}));
    let (body, claims) = issued(&exchange(&idp, &subject, &[("scope", "portfolio.read")]));
    assert_eq!(
        (body["scope"].as_str(), claims["scope"].as_str()),
        (Some("portfolio.read"), Some("portfolio.read"))
    );
    assert_oauth_error(&exchange(&idp, &subject, &[("scope", "portfolio.admin")]), 400, "invalid_scope");
    let response = exchange(&idp, &subject, &[("requested_token_type", TOKEN_TYPE_JWT)]);
    let (body, _) = issued(&response);
    assert_eq!(
        (body["issued_token_type"].as_str(), body["token_type"].as_str()),
        (Some(TOKEN_TYPE_JWT), Some("N_A"))
    );
    assert_eq!(header(body["access_token"].as_str().unwrap())["typ"], "JWT");
}

#[test]
fn entra_on_behalf_of() {
    let idp = start();
    let assertion = user_token(&idp, json!({}));
    let obo = |extra: &[(&str, &str)]| {
        let mut pairs = vec![("grant_type", GRANT_JWT_BEARER), ("assertion", assertion.as_str())];
        pairs.extend_from_slice(extra);
        token_request(&idp, &pairs, Some(BROKER))
    };
    let response = obo(&[("requested_token_use", "on_behalf_of"), ("scope", "api://portfolio/.default")]);
    let (body, claims) = issued(&response);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "api://portfolio/.default");
    assert_eq!(claims["aud"], "api://portfolio");
    assert_eq!((claims["sub"].as_str(), claims["azp"].as_str()), (Some("alice"), Some("agent-broker")));
    let (_, claims) = issued(&obo(&[("requested_token_use", "on_behalf_of"), ("scope", "portfolio.read")]));
    assert_eq!(claims["aud"], "agent-broker", "other scope forms: the client's default audience");
    assert_oauth_error(&obo(&[("scope", "api://portfolio/.default")]), 400, "invalid_request");
    assert_oauth_error(&obo(&[("requested_token_use", "on_behalf_of")]), 400, "invalid_request");
}
