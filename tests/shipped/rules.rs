//! Finding 6 and its siblings: which messages need the bank's token. A
//! rule matches when any part an agent could act on matches, in any form an
//! agent could read as the configured value; a body whose meaning depends
//! on which duplicate member a parser keeps is refused.

use serde_json::json;

use crate::world::{TransferGateway, message};

#[test]
fn a_transfer_anywhere_in_the_message_needs_the_bank() {
    let gateway = TransferGateway::start();
    let transfer_like = [
        (
            "the review's: balance first, transfer second",
            json!([
            {"kind": "data", "data": {"operation": "balance"}},
            {"kind": "data", "data": {"operation": "transfer", "amount": 900, "to": "mallory"}}]),
        ),
        (
            "a data part without kind",
            json!([{"kind": "data", "data": {"operation": "balance"}}, {"data": {"operation": "transfer"}}]),
        ),
        (
            "a text part first",
            json!([{"kind": "text", "text": "check my balance"}, {"kind": "data", "data": {"operation": "transfer"}}]),
        ),
        ("case and whitespace", json!([{"kind": "data", "data": {"operation": " Transfer "}}])),
        ("a one-element list", json!([{"kind": "data", "data": {"operation": ["transfer"]}}])),
        ("full-width letters", json!([{"kind": "data", "data": {"operation": "ＴＲＡＮＳＦＥＲ"}}])),
        ("a zero-width space", json!([{"kind": "data", "data": {"operation": "trans\u{200b}fer"}}])),
    ];
    for (name, parts) in transfer_like {
        let answer = gateway.send_as("alice", &message(Some("t-rules"), parts));
        let body = baton_harness::body_json(&answer);
        assert_eq!(body["result"]["status"]["state"], "auth-required", "{name}: {}", answer.body_str());
    }
    assert!(gateway.agent.requests().is_empty(), "a transfer reached the agent without the bank's token");

    // A member named twice means what each parser decides: refused.
    let alice = format!("Bearer {}", gateway.token("alice"));
    let twice = br#"{"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": {"message": {"kind": "message",
        "role": "user", "messageId": "m", "parts": [{"kind": "data", "data": {"operation": "transfer", "operation": "balance"}}]}}}"#;
    let request = http_kit::ClientRequest::post("/", "application/json", twice.to_vec())
        .header("authorization", &alice);
    let refused = gateway.envoy.send(&request);
    assert_eq!(refused.status, 400, "{}", refused.body_str());
    assert_eq!(baton_harness::body_json(&refused)["error"]["code"], -32700);
    assert!(gateway.agent.requests().is_empty());

    // What is no transfer passes, without the bank's token.
    let balance =
        gateway.send_as("alice", &message(None, json!([{"kind": "data", "data": {"operation": "balance"}}])));
    assert_eq!(balance.status, 200);
    assert_eq!(gateway.agent.requests().len(), 1);
}
