//! claim-enforcement's remote key sets inside a real Envoy: fetched at
//! start, rotated, unavailable at start and during refresh.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/support.rs"]
mod support;

use std::time::Duration;

use baton_harness::body_json;
use http_kit::ClientRequest;
use mock_idp::{Endpoint, Fault};
use serde_json::json;
use support::*;

#[test]
fn a_rotated_key_is_picked_up_on_first_sight_of_its_kid() {
    let idp = idp();
    let backend = backend();
    let envoy = envoy_with(ce_config(&idp), &idp, &backend, 1);
    assert_eq!(envoy.get_with_token("/orders", &idp.mint(claims(&idp, "alice"))).status, 200);
    let fetches_before = idp.calls(Endpoint::Jwks);

    std::thread::sleep(Duration::from_millis(1100)); // past minRefetchIntervalSeconds
    let new_kid = idp.rotate("ES256").unwrap();
    let token = idp.mint(claims(&idp, "alice"));
    let header = token.split('.').next().and_then(mock_idp::b64url_decode).unwrap();
    let header: serde_json::Value = serde_json::from_slice(&header).unwrap();
    assert_eq!(header["kid"], new_kid.as_str(), "signed with the rotated key");
    let response = envoy.get_with_token("/orders", &token);
    assert_eq!(response.status, 200, "{}", response.body_str());
    assert_eq!(idp.calls(Endpoint::Jwks), fetches_before + 1, "one refetch for the new kid {new_kid}");

    // Unknown kids right after a fetch do not cause a fetch each. The
    // interval is counted in whole seconds of the host clock: when the
    // second turns during these requests, one more fetch is allowed.
    let stranger = mock_idp::SigningKey::es256("stranger").unwrap();
    for i in 0..5 {
        let forged = stranger
            .sign_compact(&json!({"alg": "ES256", "kid": format!("random-{i}")}), &claims(&idp, "eve"));
        assert_eq!(envoy.get_with_token("/orders", &forged).status, 401);
    }
    assert!(idp.calls(Endpoint::Jwks) <= fetches_before + 2, "refetches are rate-limited");
}

#[test]
fn keys_unavailable_at_start_answer_503_then_recover() {
    let idp = idp();
    idp.set_fault(Endpoint::Jwks, Fault::Status(503), None);
    let backend = backend();
    let envoy = envoy_with(ce_config(&idp), &idp, &backend, 1);
    let token = idp.mint(claims(&idp, "alice"));

    // Failed fetches are retried every second or more: waits for the first.
    assert!(envoy.wait_for(Duration::from_secs(5), |e| e.counter("baton_ce.jwks.fetch_failure") >= 1));
    let response = envoy.get_with_token("/orders", &token);
    assert_eq!(response.status, 503, "{}", response.body_str());
    assert_eq!(body_json(&response)["error"], "temporarily_unavailable");
    assert_eq!(response.header("retry-after"), Some("5"));
    assert!(backend.requests().is_empty(), "nothing forwarded without keys");

    idp.clear_faults();
    let mut denied_while_recovering = 0;
    let recovered = envoy.wait_for(Duration::from_secs(10), |e| {
        let status = e.get_with_token("/orders", &token).status;
        denied_while_recovering += u64::from(status == 503);
        status == 200
    });
    assert!(recovered, "requests pass once the IdP serves keys again");
    assert_eq!(envoy.counter("baton_ce.jwks.fetch_success"), 1);
    assert_eq!(envoy.counter("baton_ce.denied.keys_unavailable"), 1 + denied_while_recovering);
    let warnings: Vec<String> =
        envoy.filter_logs().into_iter().filter(|l| l.contains("fetch failed")).collect();
    assert!(warnings[0].contains("HTTP status 503") && warnings[0].contains("no keys yet"), "{warnings:?}");
}

#[test]
fn a_failed_refresh_keeps_the_last_good_keys() {
    let idp = idp();
    let backend = backend();
    let mut config = ce_config(&idp);
    config["providers"][0]["jwks"]["remote"]["refreshIntervalSeconds"] = json!(1);
    let envoy = envoy_with(config, &idp, &backend, 1);
    // The key set is fetched again every second: waits for the first fetch.
    assert!(envoy.wait_for(Duration::from_secs(5), |e| e.counter("baton_ce.jwks.fetch_success") >= 1));

    // A closed connection, then a response cut off mid-body (no response
    // headers reach the filter at all). Refreshes go on every second or
    // more, so these wait for a count the failures pass through.
    idp.set_fault(Endpoint::Jwks, Fault::Close, None);
    assert!(envoy.wait_for(Duration::from_secs(6), |e| e.counter("baton_ce.jwks.fetch_failure") >= 2));
    idp.set_fault(Endpoint::Jwks, Fault::Truncated, None);
    assert!(envoy.wait_for(Duration::from_secs(12), |e| e.counter("baton_ce.jwks.fetch_failure") >= 3));
    let response = envoy.get_with_token("/orders", &idp.mint(claims(&idp, "bob")));
    assert_eq!(response.status, 200, "{}", response.body_str());
    let warning = envoy.filter_logs().into_iter().find(|l| l.contains("fetch failed")).unwrap();
    assert!(warning.contains("keeping the last good key set"), "{warning}");
}

#[test]
fn a_request_waiting_for_keys_keeps_its_body_and_is_forwarded_after() {
    let idp = idp();
    idp.set_fault(Endpoint::Jwks, Fault::Delay(Duration::from_millis(700)), Some(1));
    let backend = backend();
    let mut config = ce_config(&idp);
    config["routes"] = json!([{"match": {"pathPrefix": "/"}}]);
    let envoy = envoy_with(config, &idp, &backend, 1);
    let token = idp.mint(claims(&idp, "alice"));
    let body = br#"{"amount": 100, "to": "bob"}"#.to_vec();
    let response = envoy.send(
        &ClientRequest::post("/payments", "application/json", body.clone())
            .header("authorization", &format!("Bearer {token}")),
    );
    assert_eq!(response.status, 200, "{}", response.body_str());
    let seen = backend.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, body);
    assert_eq!(seen[0].header("x-user-id"), Some("alice"));
}

#[test]
fn idp_unreachable_answers_503_and_forwards_nothing() {
    let idp = idp();
    let backend = backend();
    // A cluster pointing at a port nobody listens on: bind, note, release.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let spec = baton_harness::EnvoySpec::new(backend.addr())
        .cluster("idp", closed)
        .filter("claim_enforcement", ce_config(&idp));
    let envoy = baton_harness::Envoy::start(&spec).unwrap();
    let token = idp.mint(claims(&idp, "alice"));
    let response = envoy.get_with_token("/orders", &token);
    assert_eq!(response.status, 503, "{}", response.body_str());
    assert_eq!(body_json(&response)["error"], "temporarily_unavailable");
    assert!(backend.requests().is_empty());
    // The fetch at start failed; retries (every second or more) may have too.
    assert!(envoy.counter("baton_ce.jwks.fetch_failure") >= 1);
}
