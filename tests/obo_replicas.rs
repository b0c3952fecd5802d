//! obo-credential-injection on Envoy replicas sharing a real etcd (issue
//! 16, `store`): a token exchanged by one replica is injected by the other
//! with no IdP call; etcd holds it sealed under a keyed name (no token, no
//! subject token); a storm of one user's requests through a round-robin
//! balancer in front of three replicas makes one exchange; with etcd down
//! a replica exchanges at the IdP as without a store, and the request
//! succeeds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/support.rs"]
mod support;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use baton_harness::{Envoy, EnvoySpec, Etcd};
use echo_backend::EchoBackend;
use http_kit::ClientRequest;
use mock_idp::{DEMO_BROKER_SECRET, Endpoint, Fault, MockIdp};
use ring::rand::SecureRandom;
use serde_json::{Value, json};
use support::*;

fn config(idp: &MockIdp, etcd: &Etcd) -> Value {
    let mut secret = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut secret).unwrap();
    json!({
        "idps": [{"name": "corp", "cluster": "idp", "tokenPath": "/token", "timeoutMs": 1000,
                  "clientId": "agent-broker", "clientSecret": DEMO_BROKER_SECRET}],
        "subjectToken": {"validation": "jwks", "providers": [{
            "name": "corp", "issuer": idp.issuer(), "audiences": ["agent-broker"], "algorithms": ["ES256", "RS256"],
            "jwks": {"remote": {"cluster": "idp", "path": "/jwks", "timeoutMs": 1000}}}]},
        "targets": [
            {"name": "portfolio", "match": {"host": "portfolio.internal"}, "mode": "tokenExchange", "idp": "corp",
             "audiences": ["portfolio-agent"], "scope": "portfolio:read"}
        ],
        "store": {"etcd": {"cluster": "etcd", "authority": etcd.addr().to_string(), "timeoutMs": 1000},
                  "sealingKeys": [{"id": "k1", "secret": STANDARD.encode(secret)}], "currentKey": "k1"}
    })
}

fn replica(config: &Value, idp: &MockIdp, backend: &EchoBackend, etcd: &Etcd) -> Envoy {
    let spec = EnvoySpec::new(backend.addr())
        .cluster("idp", idp.addr())
        .cluster("etcd", etcd.addr())
        .filter("obo_credential_injection", config.clone());
    Envoy::start(&spec).unwrap_or_else(|error| panic!("Envoy did not start: {error}"))
}

fn user_token(idp: &MockIdp, sub: &str) -> String {
    let mut claims = idp.standard_claims(sub, "agent-broker", 300);
    claims["scope"] = json!("portfolio:read openid");
    claims["azp"] = json!("broker-app");
    idp.mint(claims)
}

fn call(envoy: &Envoy, token: &str) -> http_kit::ClientResponse {
    envoy.send(
        &ClientRequest::get("/api/positions")
            .header("host", "portfolio.internal")
            .header("authorization", &format!("Bearer {token}")),
    )
}

fn exchanges(idp: &MockIdp) -> usize {
    idp.token_requests()
        .iter()
        .filter(|r| r.grant_type.as_deref() == Some(mock_idp::GRANT_TOKEN_EXCHANGE))
        .count()
}

/// The bearer token the backend received last.
fn upstream_token(backend: &EchoBackend) -> String {
    let requests = backend.requests();
    let authorization = requests.last().unwrap().header("authorization").unwrap().to_string();
    authorization.strip_prefix("Bearer ").unwrap().to_string()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

/// Waits for the write that follows an exchange (no request waits for it).
fn written(envoy: &Envoy, etcd: &Etcd) -> Vec<(Vec<u8>, Vec<u8>)> {
    for _ in 0..50 {
        let entries = etcd.dump("baton/").unwrap_or_else(|e| panic!("{e}"));
        if !entries.is_empty() {
            return entries;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "nothing written; written={} failed={}",
        envoy.counter("baton_obo.store.written"),
        envoy.counter("baton_obo.store.write_failed")
    );
}

#[test]
fn a_token_exchanged_on_one_replica_is_injected_by_the_other_without_an_idp_call() {
    let (idp, backend) = (idp(), backend());
    let etcd = Etcd::start().unwrap_or_else(|e| panic!("{e}"));
    let config = config(&idp, &etcd);
    let (a, b) = (replica(&config, &idp, &backend, &etcd), replica(&config, &idp, &backend, &etcd));
    let alice = user_token(&idp, "alice");

    assert_eq!(call(&a, &alice).status, 200);
    assert_eq!(exchanges(&idp), 1);
    let issued = upstream_token(&backend);
    let entries = written(&a, &etcd);
    assert_eq!(entries.len(), 1);
    for (key, value) in &entries {
        for secret in [alice.as_bytes(), issued.as_bytes(), b"alice".as_slice()] {
            assert!(!contains(key, secret) && !contains(value, secret), "etcd shows a token or the user");
        }
    }

    let response = call(&b, &alice);
    assert_eq!(response.status, 200, "{}", response.body_str());
    assert_eq!(upstream_token(&backend), issued, "B injected A's token");
    assert_eq!(exchanges(&idp), 1, "no exchange on B");
    assert_eq!(b.counter("baton_obo.store.hit"), 1);
    for envoy in [&a, &b] {
        let logs = envoy.logs();
        assert!(!logs.contains(&alice) && !logs.contains(&issued), "a token was logged");
    }
}

#[test]
fn with_etcd_down_a_replica_exchanges_at_the_idp_and_the_request_succeeds() {
    let (idp, backend) = (idp(), backend());
    let mut etcd = Etcd::start().unwrap_or_else(|e| panic!("{e}"));
    let config = config(&idp, &etcd);
    let a = replica(&config, &idp, &backend, &etcd);
    etcd.kill();
    let bob = user_token(&idp, "bob");
    let response = call(&a, &bob);
    assert_eq!(response.status, 200, "{}", response.body_str());
    assert_eq!(exchanges(&idp), 1);
    assert!(a.counter("baton_obo.store.unavailable") >= 1);
    assert!(!a.logs().contains(&bob), "the subject token was logged");
}

#[test]
fn a_storm_through_a_balancer_in_front_of_three_replicas_makes_one_exchange() {
    let (idp, backend) = (idp(), backend());
    let etcd = Etcd::start().unwrap_or_else(|e| panic!("{e}"));
    let config = config(&idp, &etcd);
    let replicas: Vec<Envoy> = (0..3).map(|_| replica(&config, &idp, &backend, &etcd)).collect();
    let addrs: Vec<_> = replicas.iter().map(Envoy::addr).collect();
    let balancer = Envoy::start(&EnvoySpec::balancer(&addrs)).unwrap_or_else(|e| panic!("{e}"));
    // Each replica has its keys (a warm-up user's request through each).
    for envoy in &replicas {
        assert_eq!(call(envoy, &user_token(&idp, &format!("warm-up-{}", envoy.addr().port()))).status, 200);
    }
    let before = exchanges(&idp);
    // The IdP takes 400 ms over the first exchange: every replica's
    // requests arrive while it is out.
    idp.set_fault(Endpoint::Token, Fault::Delay(Duration::from_millis(400)), Some(1));
    let alice = user_token(&idp, "alice");
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let calls: Vec<_> = (0..30).map(|_| scope.spawn(|| call(&balancer, &alice).status)).collect();
        calls.into_iter().map(|call| call.join().unwrap()).collect()
    });
    assert!(statuses.iter().all(|status| *status == 200), "{statuses:?}");
    assert_eq!(exchanges(&idp) - before, 1, "one exchange for the fleet");
    let served: Vec<u64> = replicas.iter().map(|envoy| envoy.counter("baton_obo.injected")).collect();
    assert!(served.iter().all(|count| *count >= 2), "the balancer spread the requests: {served:?}");
    let led: u64 = replicas.iter().map(|envoy| envoy.counter("baton_obo.store.flight_led")).sum();
    let followed: u64 = replicas.iter().map(|envoy| envoy.counter("baton_obo.store.flight_followed")).sum();
    // The warm-ups each led their own; alice's was led once and followed
    // by the two others.
    assert_eq!((led, followed), (3 + 1, 2));
    // Every request upstream carried the same issued token.
    let issued: std::collections::BTreeSet<String> = backend
        .requests()
        .iter()
        .rev()
        .take(30)
        .map(|request| request.header("authorization").unwrap().to_string())
        .collect();
    assert_eq!(issued.len(), 1, "{issued:?}");
    for envoy in &replicas {
        assert!(!envoy.logs().contains(&alice), "the subject token was logged");
    }
}

/// enforce-and-exchange (the chain in one pass) shares its exchanges as
/// obo-credential-injection does: what one replica exchanged, another
/// injects with no IdP call.
#[test]
fn the_one_pass_module_shares_exchanges_through_the_store_too() {
    let (idp, backend) = (idp(), backend());
    let etcd = Etcd::start().unwrap_or_else(|e| panic!("{e}"));
    let mut exchange = config(&idp, &etcd);
    exchange["subjectToken"] = json!({"validation": "claimEnforcement", "issuers": [idp.issuer()]});
    let one_pass = json!({
        "claimEnforcement": {
            "providers": [{"name": "corp", "issuer": idp.issuer(), "audiences": ["agent-broker"],
                           "algorithms": ["ES256", "RS256"],
                           "jwks": {"remote": {"cluster": "idp", "path": "/jwks", "timeoutMs": 1000}}}],
            "routes": [{"name": "portfolio", "match": {"pathPrefix": "/"},
                        "require": {"scopes": {"allOf": ["portfolio:read"]}}}]
        },
        "oboCredentialInjection": exchange
    });
    let replica = || {
        let spec = EnvoySpec::new(backend.addr())
            .cluster("idp", idp.addr())
            .cluster("etcd", etcd.addr())
            .filter("enforce_and_exchange", one_pass.clone());
        Envoy::start(&spec).unwrap_or_else(|error| panic!("Envoy did not start: {error}"))
    };
    let (a, b) = (replica(), replica());
    let alice = user_token(&idp, "alice");
    assert_eq!(call(&a, &alice).status, 200);
    let issued = upstream_token(&backend);
    written(&a, &etcd);
    let response = call(&b, &alice);
    assert_eq!(response.status, 200, "{}", response.body_str());
    assert_eq!(upstream_token(&backend), issued, "B injected A's token");
    assert_eq!(exchanges(&idp), 1, "no exchange on B");
    assert_eq!(b.counter("baton_obo.store.hit"), 1);
    assert_eq!(a.counter("baton_obo.store.flight_led"), 1);
}
