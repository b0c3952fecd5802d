//! The echo backend over real HTTP on 127.0.0.1.
// Helpers outside #[test] functions fail loudly too: they are test code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use core::time::Duration;

use echo_backend::{EchoBackend, sse_reply};
use http_kit::{ClientRequest, Reply, Response, send};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(5);

#[test]
fn echoes_method_path_headers_body_and_records_the_request() {
    let backend = EchoBackend::start().unwrap();
    let request =
        ClientRequest::post("/api/x?y=1", "text/plain", "hello").header("X-Dup", "1").header("x-dup", "2");
    let response = send(backend.addr(), &request, TIMEOUT).unwrap();
    assert_eq!(response.status, 200);
    let echo = response.json().unwrap();
    assert_eq!(
        (echo["method"].as_str(), echo["path"].as_str(), echo["query"].as_str()),
        (Some("POST"), Some("/api/x"), Some("y=1"))
    );
    assert_eq!((echo["body"].as_str(), echo["body_encoding"].as_str()), (Some("hello"), Some("utf-8")));
    let headers = echo["headers"].as_array().unwrap();
    let dups: Vec<&serde_json::Value> = headers.iter().filter(|h| h[0] == "x-dup").collect();
    assert_eq!(dups, vec![&json!(["x-dup", "1"]), &json!(["x-dup", "2"])]);
    assert!(echo["bearer_claims"].is_null());

    let seen = backend.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header_all("x-dup"), vec!["1", "2"]);
    backend.clear();
    assert!(backend.requests().is_empty());
}

#[test]
fn decodes_bearer_jwt_claims_and_base64_encodes_binary_bodies() {
    let backend = EchoBackend::start().unwrap();
    // {"alg":"none"} . {"sub":"alice","act":{"sub":"agent"}} . (no signature check)
    let token = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSIsImFjdCI6eyJzdWIiOiJhZ2VudCJ9fQ.c2ln";
    let request = ClientRequest::post("/", "application/octet-stream", vec![0xff, 0x00, 0x10])
        .header("Authorization", &format!("Bearer {token}"));
    let echo = send(backend.addr(), &request, TIMEOUT).unwrap().json().unwrap();
    assert_eq!(echo["bearer_claims"], json!({"sub": "alice", "act": {"sub": "agent"}}));
    assert_eq!((echo["body"].as_str(), echo["body_encoding"].as_str()), (Some("/wAQ"), Some("base64")));
    let opaque = ClientRequest::get("/").header("authorization", "Bearer opaque-token");
    assert!(send(backend.addr(), &opaque, TIMEOUT).unwrap().json().unwrap()["bearer_claims"].is_null());
}

#[test]
fn status_paths_answer_that_status() {
    let backend = EchoBackend::start().unwrap();
    let response = send(backend.addr(), &ClientRequest::get("/status/503"), TIMEOUT).unwrap();
    assert_eq!(response.status, 503);
    assert_eq!(response.json().unwrap()["path"], "/status/503");
    assert_eq!(send(backend.addr(), &ClientRequest::get("/status/abc"), TIMEOUT).unwrap().status, 200);
}

#[test]
fn custom_handlers_take_over_paths_and_can_stream_sse() {
    let backend = EchoBackend::start().unwrap();
    backend
        .with_handler("/teapot", |_| Reply::Respond(Response::text(418, "short and stout")))
        .with_handler("/events", |_| sse_reply(&["one", "two\nlines"], Duration::from_millis(5)));
    let teapot = send(backend.addr(), &ClientRequest::get("/teapot/pour"), TIMEOUT).unwrap();
    assert_eq!((teapot.status, teapot.body_str().as_str()), (418, "short and stout"));
    let events = send(backend.addr(), &ClientRequest::get("/events"), TIMEOUT).unwrap();
    assert_eq!(events.header("content-type"), Some("text/event-stream"));
    assert_eq!(events.body_str(), "data: one\n\ndata: two\ndata: lines\n\n");
    assert_eq!(send(backend.addr(), &ClientRequest::get("/other"), TIMEOUT).unwrap().status, 200);
    assert_eq!(backend.requests().len(), 3, "handled requests are recorded too");
}
