//! claim-enforcement and obo-credential-injection on one listener: the OBO
//! filter trusts the token claim-enforcement verified (no keys of its own,
//! no second signature check), a request the first refuses costs the second
//! nothing, and the order matters.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/support.rs"]
mod support;

use baton_harness::{Envoy, EnvoySpec, body_json};
use echo_backend::EchoBackend;
use mock_idp::{DEMO_BROKER_SECRET, Endpoint, MockIdp, decode_claims_unverified};
use serde_json::{Value, json};
use support::*;

fn ce(idp: &MockIdp) -> Value {
    json!({
        "realm": "broker",
        "providers": [{"name": "corp", "issuer": idp.issuer(), "audiences": ["agent-broker"], "algorithms": ["ES256", "RS256"],
                       "jwks": {"remote": {"cluster": "idp", "path": "/jwks", "timeoutMs": 1000}}}],
        "routes": [{"name": "api", "match": {"pathPrefix": "/api"}, "require": {"scopes": {"allOf": ["portfolio:read"]}}}],
        "forwardClaims": [{"claim": "sub", "header": "x-user-id"}],
        "shareVerifiedToken": true
    })
}

fn obo(idp: &MockIdp) -> Value {
    json!({
        "idps": [{"name": "corp", "cluster": "idp", "tokenPath": "/token", "timeoutMs": 1000,
                  "clientId": "agent-broker", "clientSecret": DEMO_BROKER_SECRET}],
        "subjectToken": {"validation": "claimEnforcement", "issuers": [idp.issuer()], "audiences": ["agent-broker"]},
        "targets": [{"name": "portfolio", "mode": "tokenExchange", "idp": "corp",
                     "audiences": ["portfolio-agent"], "scope": "portfolio:read"}]
    })
}

fn start(idp: &MockIdp, backend: &EchoBackend, filters: &[(&str, Value)]) -> Envoy {
    let mut spec = EnvoySpec::new(backend.addr()).cluster("idp", idp.addr());
    for (name, config) in filters {
        spec = spec.filter(name, config.clone());
    }
    Envoy::start(&spec).unwrap_or_else(|e| panic!("Envoy did not start: {e}"))
}

fn user_token(idp: &MockIdp, sub: &str, scope: &str) -> String {
    let mut claims = idp.standard_claims(sub, "agent-broker", 300);
    claims["scope"] = json!(scope);
    idp.mint(claims)
}

#[test]
fn obo_uses_the_token_claim_enforcement_verified() {
    let idp = idp();
    let backend = backend();
    let envoy =
        start(&idp, &backend, &[("claim_enforcement", ce(&idp)), ("obo_credential_injection", obo(&idp))]);
    let alice = user_token(&idp, "alice", "portfolio:read");
    let response = envoy.get_with_token("/api/positions", &alice);
    assert_eq!(response.status, 200, "{}", response.body_str());
    let seen = &backend.requests()[0];
    let upstream = seen.header("authorization").unwrap().trim_start_matches("Bearer ").to_string();
    let claims = decode_claims_unverified(&upstream).unwrap();
    assert_eq!((claims["sub"].as_str(), claims["aud"].as_str()), (Some("alice"), Some("portfolio-agent")));
    assert_eq!(seen.header("x-user-id"), Some("alice"));
    // Only claim-enforcement fetched keys; the OBO filter has none.
    assert_eq!(idp.calls(Endpoint::Jwks), 1);
    assert_eq!(envoy.counter("baton_obo.jwks.fetch_success"), 0);
    assert_eq!(envoy.counter("baton_obo.injected"), 1);

    // Refused by the first filter: the second never runs, the IdP is not
    // asked for anything.
    let exchanges = idp.calls(Endpoint::Token);
    let refusals = [
        envoy.get_with_token("/api/positions", "not.a.token"),
        envoy.get_with_token("/api/positions", &user_token(&idp, "bob", "profile")),
        envoy.get("/api/positions", &[]),
    ];
    assert_eq!(refusals.iter().map(|r| r.status).collect::<Vec<_>>(), [401, 403, 401]);
    for refusal in &refusals {
        assert!(refusal.header("www-authenticate").unwrap().starts_with(r#"Bearer realm="broker""#));
    }
    assert_eq!(idp.calls(Endpoint::Token), exchanges, "a refused request cost an IdP call");
    assert_eq!(envoy.counter("baton_obo.injected") + envoy.counter("baton_obo.denied.invalid_token"), 1);
    assert_eq!(backend.requests().len(), 1);
}

#[test]
fn without_claim_enforcement_before_it_the_obo_filter_refuses() {
    let idp = idp();
    let backend = backend();
    let alice = user_token(&idp, "alice", "portfolio:read");
    // Alone, and in the wrong order: no record of a verified token.
    for filters in [
        vec![("obo_credential_injection", obo(&idp))],
        vec![("obo_credential_injection", obo(&idp)), ("claim_enforcement", ce(&idp))],
    ] {
        let envoy = start(&idp, &backend, &filters);
        let response = envoy.get_with_token("/api/positions", &alice);
        assert_eq!(response.status, 401, "{}", response.body_str());
        assert_eq!(body_json(&response)["error"], "invalid_token");
        assert!(response.header("www-authenticate").unwrap().contains("not verified by claim-enforcement"));
        assert_eq!(envoy.counter("baton_obo.denied.invalid_token"), 1);
    }
    assert_eq!(idp.calls(Endpoint::Token), 0);
    assert!(backend.requests().is_empty());
}
