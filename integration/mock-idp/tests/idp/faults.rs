//! Injected faults as a client sees them, call counts, and the admin API.

use core::time::Duration;
use std::io::ErrorKind;
use std::time::Instant;

use http_kit::{ClientRequest, send};
use mock_idp::{Endpoint, Fault};
use serde_json::json;

use crate::common::*;

const CC: (&str, &str) = ("grant_type", "client_credentials");

fn token_call(idp: &mock_idp::MockIdp) -> std::io::Result<http_kit::ClientResponse> {
    let request =
        ClientRequest::post_form("/token", &[CC]).header("Authorization", &basic(BROKER.0, BROKER.1));
    send(idp.addr(), &request, TIMEOUT)
}

#[test]
fn delay_then_normal_answer() {
    let idp = start();
    idp.set_fault(Endpoint::Jwks, Fault::Delay(Duration::from_millis(400)), Some(1));
    let started = Instant::now();
    let response = get(&idp, "/jwks");
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(response.status, 200);
    assert!(response.json().unwrap()["keys"].is_array());
}

#[test]
fn status_faults_carry_oauth_error_bodies() {
    let idp = start();
    idp.set_fault(Endpoint::Token, Fault::Status(503), Some(1));
    let unavailable = token_call(&idp).unwrap();
    assert_eq!(unavailable.status, 503);
    assert_eq!(unavailable.json().unwrap()["error"], "temporarily_unavailable");
    idp.set_fault(Endpoint::Token, Fault::Status(500), Some(1));
    assert_eq!(token_call(&idp).unwrap().json().unwrap()["error"], "server_error");
    assert_eq!(token_call(&idp).unwrap().status, 200, "faults expired");
}

#[test]
fn html_and_malformed_json_bodies() {
    let idp = start();
    idp.set_fault(Endpoint::Discovery, Fault::Html, Some(1));
    let html = get(&idp, "/.well-known/openid-configuration");
    assert_eq!(html.status, 200);
    assert!(html.header("content-type").unwrap().starts_with("text/html"));
    assert!(html.json().is_err());
    idp.set_fault(Endpoint::Token, Fault::MalformedJson, Some(1));
    let malformed = token_call(&idp).unwrap();
    assert_eq!((malformed.status, malformed.header("content-type")), (200, Some("application/json")));
    assert!(malformed.json().is_err());
}

#[test]
fn close_and_truncated_fail_on_the_client() {
    let idp = start();
    idp.set_fault(Endpoint::Token, Fault::Close, Some(1));
    assert_eq!(token_call(&idp).unwrap_err().kind(), ErrorKind::UnexpectedEof);
    idp.set_fault(Endpoint::Jwks, Fault::Truncated, Some(1));
    let error = send(idp.addr(), &ClientRequest::get("/jwks"), TIMEOUT).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::UnexpectedEof);
    assert_eq!(get(&idp, "/jwks").status, 200);
}

#[test]
fn json_and_oversized_bodies() {
    let idp = start();
    let odd = json!({"token_type": "Bearer", "expires_in": "abc"});
    idp.set_fault(Endpoint::Token, Fault::Json(odd.clone()), None);
    assert_eq!(token_call(&idp).unwrap().json().unwrap(), odd);
    assert_eq!(token_call(&idp).unwrap().json().unwrap(), odd, "armed until cleared");
    idp.clear_faults();
    assert_eq!(token_call(&idp).unwrap().status, 200);
    idp.set_fault(Endpoint::Jwks, Fault::Oversized(3 * 1024 * 1024), Some(1));
    let big = get(&idp, "/jwks");
    assert_eq!(big.body.len(), 3 * 1024 * 1024);
    assert!(big.json().is_ok());
}

#[test]
fn every_request_is_counted_including_faulted_ones() {
    let idp = start();
    idp.set_fault(Endpoint::Token, Fault::Close, Some(2));
    for _ in 0..2 {
        assert!(token_call(&idp).is_err());
    }
    assert_eq!(token_call(&idp).unwrap().status, 200);
    get(&idp, "/jwks");
    assert_eq!(idp.calls(Endpoint::Token), 3);
    assert_eq!(idp.calls(Endpoint::Jwks), 1);
    assert_eq!(idp.calls(Endpoint::Userinfo), 0);
    let faults: Vec<Option<String>> = idp.token_requests().into_iter().map(|r| r.fault).collect();
    assert_eq!(faults, vec![Some("close".to_string()), Some("close".to_string()), None]);
    idp.reset_calls();
    assert_eq!(idp.calls(Endpoint::Token), 0);
}

#[test]
fn admin_endpoints_arm_clear_and_count() {
    let idp = start();
    let admin = |request: ClientRequest| send(idp.addr(), &request, TIMEOUT).unwrap();
    let arm = admin(ClientRequest::post(
        "/admin/faults",
        "application/json",
        r#"{"endpoint":"token","fault":"status","status":503,"times":2}"#,
    ));
    assert_eq!(arm.status, 204, "{}", arm.body_str());
    assert_eq!(token_call(&idp).unwrap().status, 503);
    let delay = admin(ClientRequest::post(
        "/admin/faults",
        "application/json",
        r#"{"endpoint":"jwks","fault":"delay","delay_ms":10}"#,
    ));
    assert_eq!(delay.status, 204);
    assert_eq!(admin(ClientRequest::new("DELETE", "/admin/faults")).status, 204);
    assert_eq!(token_call(&idp).unwrap().status, 200);
    let calls = admin(ClientRequest::get("/admin/calls")).json().unwrap();
    assert_eq!(calls, json!({"discovery": 0, "jwks": 0, "authorize": 0, "token": 2, "userinfo": 0}));
    let bad = admin(ClientRequest::post(
        "/admin/faults",
        "application/json",
        r#"{"endpoint":"token","fault":"explode"}"#,
    ));
    assert_eq!(bad.status, 400);
    let minted = admin(ClientRequest::post(
        "/admin/mint",
        "application/json",
        r#"{"sub":"bob","aud":"api","claims":{"roles":["x"]}}"#,
    ));
    let token = minted.json().unwrap()["token"].as_str().unwrap().to_string();
    assert!(verify_with_published_jwk(&idp, &token));
    assert_eq!(claims(&token)["roles"], json!(["x"]));
}
