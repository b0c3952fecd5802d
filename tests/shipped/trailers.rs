//! Finding 8 and its siblings: a body that ends with trailers (HTTP/2)
//! rather than with its last data frame. Every filter that reads bodies
//! decides at the end of the stream, whichever way it ends; identity headers
//! are no more accepted in trailers than in headers.

use std::time::Duration;

use serde_json::{Value, json};

use crate::h2::post_with_trailers;
use crate::world::{TransferGateway, bearer_claims, transfer};

const TIMEOUT: Duration = Duration::from_secs(10);

#[test]
fn a_protected_message_ending_with_trailers_is_decided_not_held() {
    let gateway = TransferGateway::start();
    let alice = format!("Bearer {}", gateway.token("alice"));
    let headers = [("content-type", "application/json"), ("authorization", alice.as_str())];
    let send = |body: &Value, trailers: &[(&str, &str)]| {
        post_with_trailers(
            gateway.envoy.addr(),
            "/",
            &headers,
            body.to_string().as_bytes(),
            trailers,
            TIMEOUT,
        )
        .unwrap_or_else(|e| panic!("the gateway did not answer: {e}"))
    };
    // A transfer: the challenge comes back at once, nothing reaches the agent.
    let started = std::time::Instant::now();
    let challenge = send(&transfer(None), &[("x-checksum", "abc")]);
    assert_eq!(challenge.status, 200, "{}", challenge.body_str());
    assert!(started.elapsed() < Duration::from_secs(5), "answered after {:?}", started.elapsed());
    let answer: Value = serde_json::from_slice(&challenge.body).unwrap();
    assert_eq!(answer["result"]["status"]["state"], "auth-required");
    assert!(gateway.agent.requests().is_empty());

    // After the authorization, a transfer with trailers carries the bank's
    // token, and a trailer cannot name another user.
    let task = gateway.authorized_task("alice");
    let done = send(&transfer(Some(&task)), &[("x-baton-user", "mallory")]);
    assert_eq!(done.status, 200, "{}", done.body_str());
    let seen = gateway.agent.requests().pop().unwrap();
    assert_eq!(bearer_claims(&seen).unwrap()["sub"], "alice");
    assert_eq!(seen.header_all("x-baton-user"), ["alice"]);
    // An underscored trailer is refused by the shipped listener itself
    // (the stream is reset: HTTP/2 has no status after the headers' turn).
    let underscored = post_with_trailers(
        gateway.envoy.addr(),
        "/",
        &headers,
        transfer(Some(&task)).to_string().as_bytes(),
        &[("x_baton_user", "mallory")],
        TIMEOUT,
    );
    let reset = Err("response: stream error received: unexpected internal error encountered".to_string());
    assert_eq!(underscored.map(|answer| answer.status), reset);
    assert_eq!(gateway.agent.requests().len(), 2, "it reached the agent");
    // A message that needs nothing passes too.
    let balance = crate::world::message(None, json!([{"kind": "data", "data": {"operation": "balance"}}]));
    assert_eq!(send(&balance, &[("x-checksum", "abc")]).status, 200);
    // And one too large is refused, not held.
    let mut huge = transfer(None);
    huge["params"]["message"]["parts"][0]["text"] = json!("x".repeat(2 * 1024 * 1024));
    assert_eq!(send(&huge, &[("x-checksum", "abc")]).status, 413);
}
