//! `envoy-configs/enforce-and-exchange.yaml`: verification, the route's
//! rule and the exchange in one pass of one filter, attacked as the two
//! filters are: only a token this Envoy verified, for a request the rules
//! allow, is exchanged, and only the exchanged token goes upstream.

use std::time::Duration;

use baton_harness::{Envoy, ShippedConfig, body_json};
use echo_backend::EchoBackend;
use http_kit::{ClientRequest, ClientResponse};
use mock_idp::{Endpoint, Fault, MockIdp};
use serde_json::json;

use crate::world::{FINPORT_AUDIENCE, bearer_claims, finport_idp, user_token};

struct Gateway {
    idp: MockIdp,
    backend: EchoBackend,
    envoy: Envoy,
}

impl Gateway {
    fn start() -> Self {
        let idp = finport_idp();
        let backend = EchoBackend::start().unwrap();
        let envoy = ShippedConfig::new("enforce-and-exchange.yaml")
            .port(9000, idp.port())
            .port(9001, backend.port())
            .env("BATON_BROKER_SECRET", mock_idp::DEMO_BROKER_SECRET)
            .start()
            .unwrap_or_else(|e| panic!("enforce-and-exchange.yaml did not start: {e}"));
        // The broker's own token (the actor) is fetched at start.
        assert!(
            envoy.wait_for(Duration::from_secs(10), |e| e.counter("baton_obo.idp.success") == 1),
            "the actor token was not fetched"
        );
        Gateway { idp, backend, envoy }
    }

    fn get(&self, path: &str, authorization: Option<&str>) -> ClientResponse {
        let mut request = ClientRequest::get(path);
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        self.envoy.send(&request)
    }
}

#[test]
fn a_verified_token_is_exchanged_and_only_the_exchanged_one_goes_upstream() {
    let g = Gateway::start();
    let alice = user_token(&g.idp, "alice");
    let answer = g.get("/portfolio/positions", Some(&format!("Bearer {alice}")));
    assert_eq!(answer.status, 200, "{}", answer.body_str());
    let seen = g.backend.requests();
    assert_eq!(seen.len(), 1);
    let claims = bearer_claims(&seen[0]).expect("a bearer token upstream");
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["aud"], json!("portfolio-agent"));
    assert_eq!(claims["act"]["sub"], "agent-broker", "the broker is named as actor: {claims}");
    assert!(!seen[0].header("authorization").unwrap().contains(&alice), "the user's own token went upstream");
    // Again: the cache, no second exchange.
    let exchanges = g.idp.calls(Endpoint::Token);
    assert_eq!(g.get("/portfolio/positions", Some(&format!("Bearer {alice}"))).status, 200);
    assert_eq!(g.idp.calls(Endpoint::Token), exchanges);
}

#[test]
fn a_request_it_refuses_costs_no_exchange_and_reaches_no_one() {
    let g = Gateway::start();
    let stranger = mock_idp::SigningKey::es256("stranger").unwrap();
    let forged = stranger.sign_compact(
        &json!({"alg": "ES256", "kid": g.idp.active_key("ES256").unwrap().kid(), "typ": "at+jwt"}),
        &g.idp.standard_claims("alice", FINPORT_AUDIENCE, 300),
    );
    let mut no_scope = g.idp.standard_claims("alice", FINPORT_AUDIENCE, 300);
    no_scope["scope"] = json!("openid");
    let no_scope = g.idp.mint(no_scope);
    let mut other_audience = g.idp.standard_claims("alice", "portfolio-agent", 300);
    other_audience["scope"] = json!("portfolio:read");
    let other_audience = g.idp.mint(other_audience);
    let alice = user_token(&g.idp, "alice");
    let calls_at_start = g.idp.calls(Endpoint::Token);
    for (name, path, authorization, status, error) in [
        ("no token", "/portfolio/positions", None, 401, None),
        ("garbage", "/portfolio/positions", Some("Bearer garbage".to_string()), 401, Some("invalid_token")),
        (
            "a forged token",
            "/portfolio/positions",
            Some(format!("Bearer {forged}")),
            401,
            Some("invalid_token"),
        ),
        (
            "another audience",
            "/portfolio/positions",
            Some(format!("Bearer {other_audience}")),
            401,
            Some("invalid_token"),
        ),
        (
            "no portfolio scope",
            "/portfolio/positions",
            Some(format!("Bearer {no_scope}")),
            403,
            Some("insufficient_scope"),
        ),
    ] {
        let refused = g.get(path, authorization.as_deref());
        assert_eq!(refused.status, status, "{name}: {}", refused.body_str());
        let challenge = refused.header("www-authenticate").unwrap_or_default();
        assert!(challenge.starts_with("Bearer"), "{name}: an RFC 6750 challenge, got {challenge:?}");
        if let Some(error) = error {
            assert!(challenge.contains(&format!("error=\"{error}\"")), "{name}: {challenge}");
        }
    }
    // A path no route covers is refused whoever asks (default deny).
    let unrouted = g.get("/admin", Some(&format!("Bearer {alice}")));
    assert_eq!(unrouted.status, 403, "{}", unrouted.body_str());
    assert_eq!(body_json(&unrouted)["error"], "access_denied");
    assert_eq!(g.idp.calls(Endpoint::Token), calls_at_start, "a refused request was exchanged");
    assert!(g.backend.requests().is_empty(), "a refused request reached the upstream");
}

#[test]
fn an_idp_that_fails_the_exchange_gets_a_503_and_nothing_is_forwarded() {
    let g = Gateway::start();
    let alice = user_token(&g.idp, "alice");
    g.idp.set_fault(Endpoint::Token, Fault::Status(503), None);
    let answer = g.get("/portfolio/positions", Some(&format!("Bearer {alice}")));
    assert_eq!(answer.status, 503, "{}", answer.body_str());
    assert_eq!(body_json(&answer)["error"], "temporarily_unavailable");
    assert!(g.backend.requests().is_empty(), "forwarded without the exchanged token");
    // The IdP back: the same request goes through.
    g.idp.clear_faults();
    assert!(
        g.envoy.wait_for(Duration::from_secs(10), |_| {
            g.get("/portfolio/positions", Some(&format!("Bearer {alice}"))).status == 200
        }),
        "no recovery after the IdP came back"
    );
}
