//! obo-credential-injection on two Envoy replicas sharing a real etcd
//! (issue 16, `store`): a token exchanged by one replica is injected by the
//! other with no IdP call; etcd holds it sealed under a keyed name (no
//! token, no subject token); with etcd down a replica exchanges at the IdP
//! as without a store, and the request succeeds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/support.rs"]
mod support;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use baton_harness::{Envoy, EnvoySpec, Etcd};
use echo_backend::EchoBackend;
use http_kit::ClientRequest;
use mock_idp::{DEMO_BROKER_SECRET, MockIdp};
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
