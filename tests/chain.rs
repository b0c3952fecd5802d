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

/// What a deployment does with the requests of the test above: statuses,
/// challenges, what the backend saw, IdP calls.
fn outcomes(idp: &MockIdp, backend: &EchoBackend, envoy: &Envoy) -> Vec<String> {
    let alice = user_token(idp, "alice", "portfolio:read");
    let exchanges_before = idp.calls(Endpoint::Token);
    let mut seen = Vec::new();
    for token in [
        Some(alice.clone()),
        Some(alice),
        Some("not.a.token".into()),
        Some(user_token(idp, "bob", "profile")),
        None,
    ] {
        let response = match &token {
            Some(token) => envoy.get_with_token("/api/positions", token),
            None => envoy.get("/api/positions", &[]),
        };
        let upstream = (response.status == 200).then(|| {
            let last = backend.requests().last().cloned().unwrap();
            let issued = last.header("authorization").unwrap().trim_start_matches("Bearer ").to_string();
            let claims = decode_claims_unverified(&issued).unwrap();
            format!("sub={} aud={} x-user-id={:?}", claims["sub"], claims["aud"], last.header("x-user-id"))
        });
        seen.push(format!("{} {:?} {:?}", response.status, response.header("www-authenticate"), upstream));
    }
    seen.push(format!("exchanges={}", idp.calls(Endpoint::Token) - exchanges_before));
    seen
}

#[test]
fn the_chain_in_one_pass_of_one_filter_decides_as_the_two_filters_do() {
    let idp = idp();
    let backend = backend();
    let two =
        start(&idp, &backend, &[("claim_enforcement", ce(&idp)), ("obo_credential_injection", obo(&idp))]);
    let two_filters = outcomes(&idp, &backend, &two);
    drop(two);
    let one = start(
        &idp,
        &backend,
        &[(
            "enforce_and_exchange",
            json!({"claimEnforcement": ce(&idp), "oboCredentialInjection": obo(&idp)}),
        )],
    );
    let one_pass = outcomes(&idp, &backend, &one);
    assert_eq!(one_pass, two_filters);
    assert!(
        one_pass[0].starts_with("200 ")
            && one_pass[0].contains("alice")
            && one_pass[0].contains("portfolio-agent"),
        "{one_pass:?}"
    );
    assert_eq!(one_pass[5], "exchanges=1", "one exchange, then the cache; none for a refused request");
    // Both engines count as they do alone.
    assert_eq!(one.counter("baton_obo.injected"), 2);
    assert_eq!(one.counter("baton_ce.allowed"), 2);
    assert_eq!(
        one.counter("baton_ce.denied.invalid_token") + one.counter("baton_ce.denied.missing_token"),
        2
    );

    // An exchange that is not given the verified token is refused at load,
    // with one line naming the field.
    let mut jwks = obo(&idp);
    jwks["subjectToken"] = json!({"validation": "jwks", "providers": ce(&idp)["providers"]});
    let spec = EnvoySpec::new(backend.addr()).cluster("idp", idp.addr()).filter(
        "enforce_and_exchange",
        json!({"claimEnforcement": ce(&idp), "oboCredentialInjection": jwks}),
    );
    let error = Envoy::start(&spec).expect_err("refused at load");
    assert!(error.contains("oboCredentialInjection.subjectToken.validation"), "{error}");
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
