//! Finding 3 and its siblings: the delegation broker's policy covers every
//! target. A caller it does not list gets nothing, whatever the target's
//! mode (a token exchange, Entra on-behalf-of with a scope only, the
//! broker's own client-credentials token), and a request without a token
//! this Envoy verified never gets the broker's own token.

use std::time::Duration;

use baton_harness::body_json;
use mock_idp::Endpoint;
use serde_json::json;

use crate::world::{Broker, FINPORT_AUDIENCE, bearer_claims};

/// The broker, once its own tokens (the market-data target, the actor)
/// are fetched at start.
fn broker() -> Broker {
    let broker = Broker::start();
    assert!(
        broker.envoy.wait_for(Duration::from_secs(10), |e| e.counter("baton_obo.idp.success") == 2),
        "the broker did not fetch its own tokens"
    );
    broker
}

const TARGETS: [&str; 4] = ["portfolio.internal", "ledger.internal", "market.internal", "reports.internal"];

#[test]
fn every_target_is_refused_to_a_caller_the_policy_does_not_list() {
    let broker = broker();
    let evil = format!("Bearer {}", broker.token_of("evil-app"));
    for host in TARGETS {
        let denied = broker.call("GET", host, Some(&evil));
        assert_eq!(denied.status, 403, "{host}: {}", denied.body_str());
        assert_eq!(body_json(&denied)["error"], "access_denied", "{host}");
    }
    assert!(broker.backend.requests().is_empty(), "a caller not listed reached an upstream");
    assert_eq!(broker.envoy.counter("baton_obo.denied.delegation"), 4);
}

#[test]
fn the_brokers_own_token_goes_to_verified_callers_only() {
    let broker = broker();
    let calls_at_start = broker.idp.calls(Endpoint::Token);
    let stranger = mock_idp::SigningKey::es256("stranger").unwrap();
    let forged = stranger.sign_compact(
        &json!({"alg": "ES256", "kid": broker.idp.active_key("ES256").unwrap().kid(), "typ": "at+jwt"}),
        &broker.idp.standard_claims("alice", FINPORT_AUDIENCE, 300),
    );
    for (name, authorization, status) in [
        ("no token", None, 401),
        ("garbage", Some("Bearer garbage".to_string()), 401),
        ("a forged token", Some(format!("Bearer {forged}")), 401),
        ("another scheme", Some("Basic YWxpY2U6cHc=".to_string()), 401),
    ] {
        for host in TARGETS {
            let refused = broker.call("GET", host, authorization.as_deref());
            assert_eq!(refused.status, status, "{name} to {host}: {}", refused.body_str());
            assert!(
                refused.header("www-authenticate").is_some_and(|c| c.starts_with("Bearer")),
                "{name} {host}"
            );
        }
    }
    assert!(broker.backend.requests().is_empty());
    assert_eq!(broker.idp.calls(Endpoint::Token), calls_at_start, "a refused request reached the IdP");
    // A method the ledger target does not cover, or a host no target names:
    // no target, no token.
    let app = format!("Bearer {}", broker.token_of("finport-app"));
    assert_eq!(broker.call("POST", "ledger.internal", Some(&app)).status, 403);
    assert_eq!(broker.call("GET", "admin.internal", Some(&app)).status, 403);

    // The caller the policy lists gets each upstream's own token.
    for (host, audience) in [
        ("portfolio.internal", "portfolio-agent"),
        ("ledger.internal", "https://ledger.internal/api"),
        ("market.internal", "market-data"),
    ] {
        let response = broker.call("GET", host, Some(&app));
        assert_eq!(response.status, 200, "{host}: {}", response.body_str());
        let claims = bearer_claims(broker.backend.requests().last().unwrap()).unwrap();
        assert_eq!(claims["aud"], audience, "{host}");
    }
}
