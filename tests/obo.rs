//! obo-credential-injection inside a real Envoy against the mock IdP: each
//! mode end to end, what the upstream received, the cache, single flight,
//! the delegation policy and every IdP failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/support.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use baton_harness::{Envoy, EnvoySpec, body_json};
use echo_backend::EchoBackend;
use http_kit::ClientRequest;
use mock_idp::{
    ClientRegistration, DEMO_BROKER_SECRET, Endpoint, Fault, MockIdp, MockIdpConfig,
    decode_claims_unverified, now_secs,
};
use serde_json::{Value, json};
use support::*;

/// The OBO configuration the tests start from: four targets by host.
fn obo_config(idp: &MockIdp) -> Value {
    json!({
        "idps": [{"name": "corp", "cluster": "idp", "tokenPath": "/token", "timeoutMs": 1000,
                  "clientId": "agent-broker", "clientSecret": DEMO_BROKER_SECRET}],
        "subjectToken": {"validation": "jwks", "providers": [{
            "name": "corp", "issuer": idp.issuer(), "audiences": ["agent-broker"], "algorithms": ["ES256", "RS256"],
            "jwks": {"remote": {"cluster": "idp", "path": "/jwks", "timeoutMs": 1000}}}]},
        "targets": [
            {"name": "portfolio", "match": {"host": "portfolio.internal"}, "mode": "tokenExchange", "idp": "corp",
             "audiences": ["portfolio-agent"], "scope": "portfolio:read"},
            {"name": "portfolio-as-broker", "match": {"host": "portfolio-act.internal"}, "mode": "tokenExchange", "idp": "corp",
             "audiences": ["portfolio-agent"], "actor": {"clientCredentials": {"scope": "broker"}}},
            {"name": "market", "match": {"host": "market.internal"}, "mode": "clientCredentials", "idp": "corp",
             "audiences": ["market-data"], "scope": "quotes"},
            {"name": "graph", "match": {"host": "graph.internal"}, "mode": "entraOnBehalfOf", "idp": "corp",
             "scope": "api://portfolio/.default"}
        ]
    })
}

/// A user token for the broker (the subject token), minted by the IdP.
fn user_token(idp: &MockIdp, sub: &str) -> String {
    let mut claims = idp.standard_claims(sub, "agent-broker", 300);
    claims["scope"] = json!("portfolio:read openid");
    claims["azp"] = json!("broker-app");
    idp.mint(claims)
}

fn start(config: Value, idp: &MockIdp, backend: &EchoBackend, workers: u32) -> Envoy {
    let spec = EnvoySpec::new(backend.addr())
        .cluster("idp", idp.addr())
        .filter("obo_credential_injection", config)
        .concurrency(workers);
    Envoy::start(&spec).unwrap_or_else(|error| panic!("Envoy did not start: {error}"))
}

fn call(envoy: &Envoy, host: &str, token: Option<&str>) -> http_kit::ClientResponse {
    let mut request = ClientRequest::get("/api/positions").header("host", host);
    if let Some(token) = token {
        request = request.header("authorization", &format!("Bearer {token}"));
    }
    envoy.send(&request)
}

/// Claims of the bearer token the backend received last.
fn upstream_claims(backend: &EchoBackend) -> Value {
    let requests = backend.requests();
    let authorization = requests.last().unwrap().header("authorization").unwrap().to_string();
    decode_claims_unverified(authorization.strip_prefix("Bearer ").unwrap()).unwrap()
}

fn exchanges(idp: &MockIdp) -> usize {
    idp.token_requests()
        .iter()
        .filter(|r| r.grant_type.as_deref() == Some(mock_idp::GRANT_TOKEN_EXCHANGE))
        .count()
}

#[test]
fn token_exchange_gives_the_upstream_its_own_token_once() {
    let idp = idp();
    let backend = backend();
    let envoy = start(obo_config(&idp), &idp, &backend, 1);
    let alice = user_token(&idp, "alice");

    let response = call(&envoy, "portfolio.internal", Some(&alice));
    assert_eq!(response.status, 200, "{}", response.body_str());
    let seen = backend.requests();
    let authorization = seen[0].header("authorization").unwrap();
    assert!(!authorization.contains(&alice), "the original token reached the upstream");
    let claims = upstream_claims(&backend);
    assert_eq!((claims["sub"].as_str(), claims["aud"].as_str()), (Some("alice"), Some("portfolio-agent")));
    assert_eq!(claims["scope"], "portfolio:read");
    assert_eq!(claims["client_id"], "agent-broker");
    assert_eq!(claims["act"], Value::Null, "no actor configured on this target");

    let recorded = idp.token_requests();
    let exchange =
        recorded.iter().find(|r| r.grant_type.as_deref() == Some(mock_idp::GRANT_TOKEN_EXCHANGE)).unwrap();
    assert_eq!(exchange.audiences, ["portfolio-agent"]);
    assert!(exchange.has_subject_token && !exchange.has_actor_token);

    for _ in 0..5 {
        assert_eq!(call(&envoy, "portfolio.internal", Some(&alice)).status, 200);
    }
    assert_eq!(exchanges(&idp), 1, "later requests are served from the cache");
    assert_eq!(envoy.counter("baton_obo.cache.hit_local"), 5);
    let bob = user_token(&idp, "bob");
    assert_eq!(call(&envoy, "portfolio.internal", Some(&bob)).status, 200);
    assert_eq!(upstream_claims(&backend)["sub"], "bob");
    assert_eq!(exchanges(&idp), 2);

    let audit: Vec<String> = envoy.filter_logs().into_iter().filter(|l| l.contains(" audit ")).collect();
    assert!(
        audit[0].contains("target=portfolio")
            && audit[0].contains("sub=alice")
            && audit[0].contains("cache=miss"),
        "{}",
        audit[0]
    );
    assert!(audit[0].contains("idp_ms="), "{}", audit[0]);
    let logs = envoy.logs();
    assert!(!logs.contains(alice.split('.').nth(2).unwrap()), "a token reached the log");
    assert!(!logs.contains(DEMO_BROKER_SECRET), "the client secret reached the log");
}

#[test]
fn an_actor_token_makes_the_issued_token_name_the_gateway() {
    let idp = idp();
    let backend = backend();
    let envoy = start(obo_config(&idp), &idp, &backend, 1);
    let response = call(&envoy, "portfolio-act.internal", Some(&user_token(&idp, "alice")));
    assert_eq!(response.status, 200, "{}", response.body_str());
    let claims = upstream_claims(&backend);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["act"]["sub"], "agent-broker");
    let exchange = idp
        .token_requests()
        .into_iter()
        .find(|r| r.grant_type.as_deref() == Some(mock_idp::GRANT_TOKEN_EXCHANGE))
        .unwrap();
    assert!(exchange.has_actor_token);
}

#[test]
fn client_credentials_carry_no_user_identity_and_are_prefetched() {
    let idp = idp();
    let backend = backend();
    let envoy = start(obo_config(&idp), &idp, &backend, 2);
    let cc_calls = || {
        idp.token_requests().iter().filter(|r| r.grant_type.as_deref() == Some("client_credentials")).count()
    };
    // Two grants are configured (the market target, the actor of
    // portfolio-as-broker): each is fetched at start, once for all workers.
    assert!(
        envoy.wait_for(Duration::from_secs(5), |_| cc_calls() >= 2),
        "client-credentials tokens are fetched at start"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(cc_calls(), 2, "one call per grant across the main thread and both workers");
    let calls_before = idp.calls(Endpoint::Token);
    let response = call(&envoy, "market.internal", Some(&user_token(&idp, "alice")));
    assert_eq!(response.status, 200, "{}", response.body_str());
    let claims = upstream_claims(&backend);
    assert_eq!((claims["sub"].as_str(), claims["aud"].as_str()), (Some("agent-broker"), Some("market-data")));
    assert_eq!(idp.calls(Endpoint::Token), calls_before, "served from the prefetched token");
    // The gateway's own token goes to verified callers only.
    let anonymous = call(&envoy, "market.internal", None);
    assert_eq!(anonymous.status, 401, "{}", anonymous.body_str());
    let garbage = call(&envoy, "market.internal", Some("garbage.not.verified"));
    assert_eq!(garbage.status, 401, "{}", garbage.body_str());
    assert_eq!(backend.requests().len(), 1, "only the verified caller got through");
}

#[test]
fn entra_on_behalf_of_end_to_end() {
    let idp = idp();
    let backend = backend();
    let envoy = start(obo_config(&idp), &idp, &backend, 1);
    let response = call(&envoy, "graph.internal", Some(&user_token(&idp, "alice")));
    assert_eq!(response.status, 200, "{}", response.body_str());
    let claims = upstream_claims(&backend);
    assert_eq!((claims["sub"].as_str(), claims["aud"].as_str()), (Some("alice"), Some("api://portfolio")));
    let on_behalf_of = idp
        .token_requests()
        .iter()
        .filter(|r| r.grant_type.as_deref() == Some(mock_idp::GRANT_JWT_BEARER))
        .count();
    assert_eq!(on_behalf_of, 1, "one jwt-bearer (on-behalf-of) grant");
}

#[test]
fn requests_without_a_target_and_bad_subject_tokens_never_reach_the_idp() {
    let idp = idp();
    let backend = backend();
    let envoy = start(obo_config(&idp), &idp, &backend, 1);
    let alice = user_token(&idp, "alice");
    let response = call(&envoy, "unknown.internal", Some(&alice));
    assert_eq!(response.status, 403);
    assert_eq!(body_json(&response)["error"], "access_denied");

    let mut claims = idp.standard_claims("alice", "agent-broker", 300);
    claims["exp"] = json!(now_secs() - 300);
    let expired = call(&envoy, "portfolio.internal", Some(&idp.mint(claims)));
    assert_eq!(expired.status, 401);
    assert!(expired.header("www-authenticate").unwrap().contains("token is expired"));
    let forged = mock_idp::SigningKey::es256(idp.active_key("ES256").unwrap().kid()).unwrap();
    let forged = forged.sign_compact(
        &json!({"alg": "ES256", "kid": forged.kid()}),
        &idp.standard_claims("alice", "agent-broker", 300),
    );
    assert_eq!(call(&envoy, "portfolio.internal", Some(&forged)).status, 401);
    assert_eq!(call(&envoy, "portfolio.internal", None).status, 401);
    let two = envoy.send(
        &ClientRequest::get("/api")
            .header("host", "portfolio.internal")
            .header("authorization", &format!("Bearer {alice}"))
            .header("authorization", "Bearer spoofed"),
    );
    assert_eq!(two.status, 400);

    assert_eq!(exchanges(&idp), 0, "no exchange for refused requests");
    assert!(backend.requests().is_empty(), "nothing forwarded");
}

#[test]
fn delegation_policy_allows_named_callers_only() {
    let idp = idp();
    let backend = backend();
    let mut config = obo_config(&idp);
    config["delegation"] = json!({"allow": [
        {"caller": "broker-app", "audiences": ["portfolio-agent"]},
        {"caller": "reports-app", "targets": ["market", "graph"]}
    ]});
    let envoy = start(config, &idp, &backend, 1);
    assert_eq!(call(&envoy, "portfolio.internal", Some(&user_token(&idp, "alice"))).status, 200);
    let mut claims = idp.standard_claims("alice", "agent-broker", 300);
    claims["azp"] = json!("rogue-app");
    let rogue = idp.mint(claims);
    let denied = call(&envoy, "portfolio.internal", Some(&rogue));
    assert_eq!(denied.status, 403);
    assert_eq!(
        body_json(&denied)["error_description"],
        "caller rogue-app may not obtain tokens for target portfolio"
    );
    // Nor the Entra target (a scope, no audience) nor the gateway's own token.
    for host in ["graph.internal", "market.internal"] {
        let denied = call(&envoy, host, Some(&rogue));
        assert_eq!(denied.status, 403, "{host}: {}", denied.body_str());
    }
    assert_eq!(exchanges(&idp), 1);
    assert_eq!(envoy.counter("baton_obo.denied.delegation"), 3);
}

#[test]
fn an_issued_token_is_exchanged_again_after_it_expires() {
    let config = MockIdpConfig { access_token_ttl: Duration::from_secs(2), ..MockIdpConfig::default() };
    let idp = MockIdp::start(config).unwrap();
    let backend = backend();
    let mut filter = obo_config(&idp);
    filter["cache"] = json!({"expiryMarginSeconds": 0});
    let envoy = start(filter, &idp, &backend, 1);
    // The subject token must outlive the issued tokens.
    let mut claims = idp.standard_claims("alice", "agent-broker", 300);
    claims["azp"] = json!("broker-app");
    claims["scope"] = json!("portfolio:read");
    let alice = idp.mint(claims);
    assert_eq!(call(&envoy, "portfolio.internal", Some(&alice)).status, 200);
    assert_eq!(call(&envoy, "portfolio.internal", Some(&alice)).status, 200);
    assert_eq!(exchanges(&idp), 1);
    std::thread::sleep(Duration::from_millis(2600));
    assert_eq!(call(&envoy, "portfolio.internal", Some(&alice)).status, 200);
    assert_eq!(exchanges(&idp), 2, "a new exchange after the TTL");
}

#[test]
fn concurrent_cold_requests_share_one_exchange_across_workers() {
    for workers in [1u32, 2] {
        let idp = Arc::new(idp());
        let backend = backend();
        let envoy = Arc::new(start(obo_config(&idp), &idp, &backend, workers));
        // Let keys and client credentials settle, then slow the exchange so
        // that all requests arrive while it runs.
        let alice = Arc::new(user_token(&idp, "alice"));
        assert_eq!(call(&envoy, "market.internal", Some(&alice)).status, 200);
        idp.set_fault(Endpoint::Token, Fault::Delay(Duration::from_millis(800)), Some(2));
        let threads: Vec<_> = (0..100)
            .map(|_| {
                let (envoy, alice) = (Arc::clone(&envoy), Arc::clone(&alice));
                std::thread::spawn(move || call(&envoy, "portfolio.internal", Some(&alice)).status)
            })
            .collect();
        let statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
        // One exchange for the key across workers: the call's lease is in
        // data the workers share.
        let cold = exchanges(&idp);
        assert_eq!(cold, 1, "exchanges for 100 requests on {workers} worker(s)");
        for _ in 0..20 {
            assert_eq!(call(&envoy, "portfolio.internal", Some(&alice)).status, 200);
        }
        assert_eq!(exchanges(&idp), cold, "warm cache: no further exchange");
        println!(
            "single flight: {workers} worker(s), 100 concurrent cold requests -> {cold} exchange(s); 20 warm -> 0"
        );
    }
}

#[test]
fn idp_failures_answer_with_their_status_and_recover() {
    let idp = idp();
    let backend = backend();
    let envoy = start(obo_config(&idp), &idp, &backend, 1);
    // keys and cc ready
    assert_eq!(call(&envoy, "market.internal", Some(&user_token(&idp, "alice"))).status, 200);
    let cases: Vec<(&str, Fault, u16)> = vec![
        ("503", Fault::Status(503), 503),
        ("500", Fault::Status(500), 503),
        ("connection closed", Fault::Close, 503),
        ("malformed json", Fault::MalformedJson, 503),
        ("html", Fault::Html, 503),
        ("no access_token", Fault::Json(json!({"token_type": "Bearer", "expires_in": 60})), 503),
        (
            "expires_in string",
            Fault::Json(json!({"access_token": "x", "token_type": "Bearer",
            "issued_token_type": "urn:ietf:params:oauth:token-type:access_token", "expires_in": "soon"})),
            503,
        ),
        ("slower than the timeout", Fault::Delay(Duration::from_millis(1500)), 503),
        ("truncated", Fault::Truncated, 503),
    ];
    for (index, (name, fault, status)) in cases.into_iter().enumerate() {
        idp.set_fault(Endpoint::Token, fault, Some(1));
        let user = user_token(&idp, &format!("user-{index}"));
        let response = call(&envoy, "portfolio.internal", Some(&user));
        assert_eq!(response.status, status, "{name}: {}", response.body_str());
        assert_eq!(body_json(&response)["error"], "temporarily_unavailable", "{name}");
        assert!(
            backend.requests().iter().all(|r| r.header("host") != Some("portfolio.internal")),
            "{name}: forwarded"
        );
        // Recovery: the next request for the same user succeeds.
        let next = call(&envoy, "portfolio.internal", Some(&user));
        assert_eq!(next.status, 200, "{name}: no recovery: {}", next.body_str());
        backend.clear();
    }
    // Each fault served once, each case failed once: status, closed, slow
    // and truncated are unavailability, the rest bodies that are no answer.
    assert_eq!(envoy.counter("baton_obo.denied.unavailable"), 9);
    assert_eq!(envoy.counter("baton_obo.idp.unavailable"), 5);
    assert_eq!(envoy.counter("baton_obo.idp.invalid_response"), 4);
}

#[test]
fn idp_refusals_are_401_or_403() {
    let config = MockIdpConfig {
        clients: vec![
            ClientRegistration::confidential("agent-broker", DEMO_BROKER_SECRET)
                .with_grant_types(&[
                    "client_credentials",
                    mock_idp::GRANT_TOKEN_EXCHANGE,
                    mock_idp::GRANT_JWT_BEARER,
                ])
                .with_allowed_audiences(&["portfolio-agent", "market-data"]),
        ],
        ..MockIdpConfig::default()
    };
    let idp = MockIdp::start(config).unwrap();
    let backend = backend();
    let mut filter = obo_config(&idp);
    filter["targets"][0]["audiences"] = json!(["ledger"]);
    let envoy = start(filter, &idp, &backend, 1);
    let alice = user_token(&idp, "alice");
    let refused = call(&envoy, "portfolio.internal", Some(&alice));
    assert_eq!(refused.status, 403, "{}", refused.body_str());
    assert!(body_json(&refused)["error_description"].as_str().unwrap().contains("invalid_target"));

    // The IdP retires the key alice's token was signed with, which the
    // filter still holds: the filter accepts the token, the IdP refuses it.
    let old = idp.active_key("ES256").unwrap().kid().to_string();
    idp.rotate("ES256").unwrap();
    assert!(idp.retire(&old));
    let refused = call(&envoy, "portfolio-act.internal", Some(&alice));
    assert_eq!(refused.status, 401, "{}", refused.body_str());
    assert!(refused.header("www-authenticate").unwrap().contains("invalid_grant"));
    assert!(backend.requests().is_empty());
}

#[test]
fn the_client_secret_can_stay_out_of_the_envoy_config() {
    let idp = idp();
    let backend = backend();
    let mut config = obo_config(&idp);
    config["idps"][0].as_object_mut().unwrap().remove("clientSecret");
    config["idps"][0]["clientSecretEnv"] = json!("BATON_BROKER_SECRET");
    let spec = EnvoySpec::new(backend.addr())
        .cluster("idp", idp.addr())
        .filter("obo_credential_injection", config)
        .env("BATON_BROKER_SECRET", DEMO_BROKER_SECRET);
    let envoy = Envoy::start(&spec).unwrap();
    let response = call(&envoy, "portfolio.internal", Some(&user_token(&idp, "alice")));
    assert_eq!(response.status, 200, "{}", response.body_str());
    assert_eq!(upstream_claims(&backend)["aud"], "portfolio-agent");
}

#[test]
fn client_credentials_tokens_are_renewed_before_they_expire() {
    let config = MockIdpConfig { access_token_ttl: Duration::from_secs(3), ..MockIdpConfig::default() };
    let idp = MockIdp::start(config).unwrap();
    let backend = backend();
    let mut filter = obo_config(&idp);
    filter["cache"] = json!({"expiryMarginSeconds": 0});
    let envoy = start(filter, &idp, &backend, 1);
    let market_calls = || {
        idp.token_requests()
            .iter()
            .filter(|r| {
                r.grant_type.as_deref() == Some("client_credentials") && r.audiences == ["market-data"]
            })
            .count()
    };
    assert!(envoy.wait_for(Duration::from_secs(5), |_| market_calls() == 1));
    // Renewed at four fifths of its 3 s life, with no request asking; and
    // again every 2.4 s, so how many renewals there were by the time the
    // counters are read depends on timing.
    assert!(envoy.wait_for(Duration::from_secs(6), |_| market_calls() >= 2), "not renewed");
    assert!(envoy.counter("baton_obo.credentials.refreshed") >= 1);
    let before = idp.calls(Endpoint::Token);
    assert_eq!(call(&envoy, "market.internal", Some(&user_token(&idp, "alice"))).status, 200);
    assert_eq!(idp.calls(Endpoint::Token), before, "requests use the renewed token");
}
