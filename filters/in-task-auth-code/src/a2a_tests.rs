//! A2A JSON-RPC in both versions, as the official SDKs send it.

use super::*;

fn v03(parts: Value) -> Vec<u8> {
    json!({"jsonrpc": "2.0", "id": "req-1", "method": "message/send", "params": {"message": {
        "kind": "message", "role": "user", "messageId": "m1", "taskId": "t1", "contextId": "c1", "parts": parts}}})
    .to_string()
    .into_bytes()
}

fn v10(method: &str, parts: Value) -> Vec<u8> {
    json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": {"message": {
        "role": "ROLE_USER", "messageId": "m1", "parts": parts}}})
    .to_string()
    .into_bytes()
}

#[test]
fn recognises_both_versions_and_kinds() {
    let call = parse_call(&v03(json!([{"kind": "text", "text": "hi"}])), None).unwrap();
    assert_eq!((call.version, call.kind, call.id.clone()), (Version::V03, CallKind::Send, json!("req-1")));
    assert_eq!((call.task_id(), call.context_id()), (Some("t1"), Some("c1")));
    let call = parse_call(&v10("SendStreamingMessage", json!([{"text": "hi"}])), Some("1.0")).unwrap();
    assert_eq!((call.version, call.kind, call.task_id()), (Version::V10, CallKind::Stream, None));
    let other = br#"{"jsonrpc":"2.0","id":1,"method":"ListTasks","params":{}}"#;
    assert_eq!(parse_call(other, Some("1.0")).unwrap().kind, CallKind::Other);
    assert_eq!(parse_call(other, Some("1.0")).unwrap().version, Version::V10);
    let other =
        br#"{"jsonrpc":"2.0","id":1,"method":"tasks/pushNotificationConfig/get","params":{"id":"t1"}}"#;
    assert_eq!(parse_call(other, None).unwrap().version, Version::V03);
}

#[test]
fn malformed_bodies_are_json_rpc_errors() {
    let code = |body: &[u8]| parse_call(body, None).unwrap_err().code;
    assert_eq!(code(b"{not json"), PARSE_ERROR);
    assert_eq!(code(b""), PARSE_ERROR);
    assert_eq!(code(b"[1,2]"), INVALID_REQUEST);
    assert_eq!(code(br#"{"jsonrpc":"1.0","id":1,"method":"message/send"}"#), INVALID_REQUEST);
    assert_eq!(code(br#"{"jsonrpc":"2.0","id":{"x":1},"method":"message/send"}"#), INVALID_REQUEST);
    assert_eq!(code(br#"{"jsonrpc":"2.0","id":1}"#), INVALID_REQUEST);
    assert_eq!(code(br#"{"jsonrpc":"2.0","id":1,"method":"message/send","params":{}}"#), INVALID_PARAMS);
    let error =
        parse_call(br#"{"jsonrpc":"2.0","id":9,"method":"SendMessage","params":{"message":{}}}"#, None)
            .unwrap_err();
    assert_eq!(error.id, json!(9), "the id is echoed when readable");
}

#[test]
fn finds_credentials_in_data_parts_and_metadata() {
    let call = parse_call(
        &v03(json!([
            {"kind": "text", "text": "transfer 100 to bob"},
            {"kind": "data", "data": {"operation": "transfer", "auth_credentials": {"accessToken": "t0k"}}}
        ])),
        None,
    )
    .unwrap();
    assert_eq!(call.credentials().len(), 1);
    assert_eq!(call.credentials()[0]["accessToken"], "t0k");
    assert_eq!(call.data_at("/operation").collect::<Vec<_>>(), [&json!("transfer")]);
    let mut with_metadata = parse_call(&v03(json!([{"kind": "text", "text": "x"}])), None).unwrap();
    with_metadata.body["params"]["message"]["metadata"] =
        json!({"auth_credentials": {"code": "c", "state": "s"}, "skill": "pay"});
    assert_eq!(with_metadata.credentials().len(), 1);
    assert_eq!(with_metadata.metadata_at("/skill").collect::<Vec<_>>(), [&json!("pay")]);
    with_metadata.body["params"]["metadata"] = json!({"skill": "refund"});
    assert_eq!(with_metadata.metadata_at("/skill").collect::<Vec<_>>(), [&json!("pay"), &json!("refund")]);
}

#[test]
fn every_data_part_is_read_whatever_its_position_or_kind() {
    let call = parse_call(
        &v03(json!([
            {"kind": "data", "data": {"operation": "balance"}},
            {"kind": "text", "text": "and"},
            {"data": {"operation": "transfer"}},
            {"kind": "data", "data": {"other": 1}}
        ])),
        None,
    )
    .unwrap();
    assert_eq!(call.data_at("/operation").collect::<Vec<_>>(), [&json!("balance"), &json!("transfer")]);
}

#[test]
fn a_member_named_twice_is_a_parse_error() {
    let body = br#"{"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": {"message": {"role": "user",
        "messageId": "m", "parts": [{"kind": "data", "data": {"operation": "balance", "operation": "transfer"}}]}}}"#;
    assert_eq!(parse_call(body, None).unwrap_err().code, PARSE_ERROR);
    let twice =
        br#"{"jsonrpc": "2.0", "id": 1, "method": "tasks/get", "method": "message/send", "params": {}}"#;
    assert_eq!(parse_call(twice, None).unwrap_err().code, PARSE_ERROR);
}

#[test]
fn stripping_keeps_other_data_and_never_leaves_a_message_empty() {
    let mut call = parse_call(
        &v03(json!([
            {"kind": "text", "text": "go"},
            {"kind": "data", "data": {"operation": "transfer", "auth_credentials": {"accessToken": "t0k"}}}
        ])),
        None,
    )
    .unwrap();
    call.strip_credentials();
    let body = String::from_utf8(call.to_bytes()).unwrap();
    assert!(!body.contains("t0k") && !body.contains(CREDENTIALS_KEY), "{body}");
    assert!(body.contains("\"operation\":\"transfer\""));

    let mut only = parse_call(
        &v10("SendMessage", json!([{"data": {"auth_credentials": {"accessToken": "t0k"}}}])),
        None,
    )
    .unwrap();
    only.strip_credentials();
    assert_eq!(
        only.message().unwrap()["parts"],
        json!([{"text": "Authorization was provided to the gateway."}])
    );
    let mut only =
        parse_call(&v03(json!([{"kind": "data", "data": {"auth_credentials": {}}}])), None).unwrap();
    only.strip_credentials();
    assert_eq!(only.message().unwrap()["parts"][0]["kind"], "text");
}

#[test]
fn challenge_answers_per_version_and_kind() {
    let ids = TaskIds { task_id: "t1".into(), context_id: "c1".into() };
    let challenge = json!({"authorizationUrl": "https://bank/authorize?x=1"});
    let send03 = parse_call(&v03(json!([{"kind": "text", "text": "x"}])), None).unwrap();
    let answer =
        challenge_answer(&send03, &ids, "gw-1", "Sign in", challenge.clone(), "2026-11-22T05:00:00Z");
    assert!(!answer.stream);
    assert_eq!(answer.result["kind"], "task");
    assert_eq!(answer.result["status"]["state"], "auth-required");
    assert_eq!(answer.result["status"]["message"]["role"], "agent");
    assert_eq!(answer.result["status"]["message"]["parts"][0], json!({"kind": "text", "text": "Sign in"}));
    assert_eq!(answer.result["status"]["message"]["parts"][1]["data"]["authChallenge"], challenge);
    let body = response_body(&send03.id, &answer.result);
    assert!(body.starts_with(r#"{"id":"req-1","jsonrpc":"2.0","result":"#), "{body}");

    let stream10 = parse_call(&v10("SendStreamingMessage", json!([{"text": "x"}])), None).unwrap();
    let answer =
        challenge_answer(&stream10, &ids, "gw-1", "Sign in", challenge.clone(), "2026-11-22T05:00:00Z");
    assert!(answer.stream);
    assert_eq!(answer.result["statusUpdate"]["status"]["state"], "TASK_STATE_AUTH_REQUIRED");
    assert_eq!(answer.result["statusUpdate"]["status"]["message"]["parts"][0], json!({"text": "Sign in"}));
    let events = event_stream_body(&stream10.id, &answer.result);
    assert!(events.starts_with("data: {") && events.ends_with("}\n\n"));

    let send10 = parse_call(&v10("SendMessage", json!([{"text": "x"}])), None).unwrap();
    let answer = challenge_answer(&send10, &ids, "gw-1", "Sign in", challenge, "2026-11-22T05:00:00Z");
    assert_eq!(answer.result["task"]["status"]["message"]["role"], "ROLE_AGENT");
}

trait ReplaceMethod {
    fn replace_method(&self) -> Vec<u8>;
}

impl ReplaceMethod for Vec<u8> {
    fn replace_method(&self) -> Vec<u8> {
        String::from_utf8_lossy(self).replace("message/send", "message/stream").into_bytes()
    }
}

#[test]
fn streaming_v03_answer_is_a_final_status_update() {
    let body = v03(json!([{"kind": "text", "text": "x"}])).replace_method();
    let call = parse_call(&body, None).unwrap();
    assert_eq!(call.kind, CallKind::Stream);
    let ids = TaskIds { task_id: "t1".into(), context_id: "c1".into() };
    let answer = challenge_answer(&call, &ids, "gw-1", "Sign in", json!({}), "2026-11-22T05:00:00Z");
    assert_eq!(answer.result["kind"], "status-update");
    assert_eq!(answer.result["final"], true);
}

#[test]
fn agent_challenges_without_a_url_are_found_and_enriched() {
    let v03_answer = json!({"jsonrpc": "2.0", "id": 1, "result": {"kind": "task", "id": "t9", "contextId": "c9",
        "status": {"state": "auth-required", "message": {"kind": "message", "role": "agent", "messageId": "a1",
            "parts": [{"kind": "text", "text": "I need your bank's permission"}]}}}});
    let found = agent_challenge(&v03_answer).unwrap();
    assert_eq!(found.ids, TaskIds { task_id: "t9".into(), context_id: "c9".into() });
    assert_eq!(found.version, Version::V03);
    let mut enriched = v03_answer.clone();
    enrich_agent_challenge(
        &mut enriched,
        &found,
        "gw-2",
        json!({"authorizationUrl": "https://bank/authorize"}),
    );
    let parts = &enriched["result"]["status"]["message"]["parts"];
    assert_eq!(parts[0]["text"], "I need your bank's permission", "the agent's words are kept");
    assert_eq!(
        parts[1],
        json!({"kind": "data", "data": {"authChallenge": {"authorizationUrl": "https://bank/authorize"}}})
    );
    assert!(agent_challenge(&enriched).is_none(), "complete now");

    let v10_bare = json!({"jsonrpc": "2.0", "id": 1, "result": {"task": {"id": "t2", "contextId": "c2",
        "status": {"state": "TASK_STATE_AUTH_REQUIRED"}}}});
    let found = agent_challenge(&v10_bare).unwrap();
    let mut enriched = v10_bare.clone();
    enrich_agent_challenge(&mut enriched, &found, "gw-3", json!({"authorizationUrl": "u"}));
    assert_eq!(enriched["result"]["task"]["status"]["message"]["role"], "ROLE_AGENT");
    assert_eq!(
        enriched["result"]["task"]["status"]["message"]["parts"][0],
        json!({"data": {"authChallenge": {"authorizationUrl": "u"}}})
    );

    for not_a_challenge in [
        json!({"jsonrpc": "2.0", "id": 1, "result": {"kind": "task", "id": "t", "status": {"state": "completed"}}}),
        json!({"jsonrpc": "2.0", "id": 1, "error": {"code": -32000, "message": "x"}}),
        json!({"jsonrpc": "2.0", "id": 1, "result": {"kind": "message", "parts": []}}),
    ] {
        assert!(agent_challenge(&not_a_challenge).is_none(), "{not_a_challenge}");
    }
}

#[test]
fn agent_challenges_whose_message_has_no_list_of_parts_are_still_completed() {
    // Found by fuzz/fuzz_targets/a2a_message.rs: a status message without
    // `parts` (or with a non-list) was left as it was, so the client got no
    // authorization URL although the gateway had issued a state for it.
    for parts in [None, Some(json!("see above")), Some(json!({"text": "x"}))] {
        let mut message = json!({"kind": "message", "role": "agent", "messageId": "a1"});
        if let Some(parts) = parts {
            message["parts"] = parts;
        }
        let answer = json!({"jsonrpc": "2.0", "id": 1, "result": {"kind": "task", "id": "t9", "contextId": "c9",
            "status": {"state": "auth-required", "message": message}}});
        let found = agent_challenge(&answer).unwrap();
        let mut enriched = answer.clone();
        enrich_agent_challenge(
            &mut enriched,
            &found,
            "gw-4",
            json!({"authorizationUrl": "https://bank/authorize"}),
        );
        assert_eq!(
            enriched["result"]["status"]["message"]["parts"],
            json!([{"kind": "data", "data": {"authChallenge": {"authorizationUrl": "https://bank/authorize"}}}])
        );
        assert_eq!(enriched["result"]["status"]["message"]["messageId"], "a1", "the agent's message is kept");
        assert!(agent_challenge(&enriched).is_none(), "complete now: {enriched}");
    }
}

#[test]
fn status_updates_in_a_stream_are_challenges_too() {
    for (event, holder) in [
        (
            json!({"jsonrpc": "2.0", "id": 1, "result": {"statusUpdate": {"taskId": "t5", "contextId": "c5",
                "status": {"state": "TASK_STATE_AUTH_REQUIRED"}}}}),
            "/result/statusUpdate",
        ),
        (
            json!({"jsonrpc": "2.0", "id": 1, "result": {"kind": "status-update", "taskId": "t5", "contextId": "c5",
                "status": {"state": "auth-required"}, "final": false}}),
            "/result",
        ),
    ] {
        let found = agent_challenge(&event).unwrap();
        assert_eq!(found.ids.task_id, "t5");
        let mut enriched = event.clone();
        enrich_agent_challenge(&mut enriched, &found, "gw-5", json!({"authorizationUrl": "u"}));
        let parts = enriched.pointer(&format!("{holder}/status/message/parts")).unwrap();
        assert_eq!(parts.as_array().unwrap().len(), 1);
        assert_eq!(parts[0]["data"]["authChallenge"]["authorizationUrl"], "u");
        assert_eq!(enriched.pointer(&format!("{holder}/status/message/taskId")).unwrap(), "t5");
        assert!(agent_challenge(&enriched).is_none());
    }
}

#[test]
fn every_shape_of_answer_names_its_task_and_final_states_end_it() {
    let cases = [
        (json!({"result": {"task": {"id": "a", "status": {"state": "TASK_STATE_COMPLETED"}}}}), "a", true),
        (
            json!({"result": {"id": "b", "contextId": "c", "status": {"state": "TASK_STATE_CANCELED"}}}),
            "b",
            true,
        ),
        (json!({"result": {"id": "b", "status": {"state": "TASK_STATE_CANCELLED"}}}), "b", true),
        (json!({"result": {"kind": "task", "id": "c", "status": {"state": "rejected"}}}), "c", true),
        (
            json!({"result": {"kind": "status-update", "taskId": "d", "status": {"state": "failed"}}}),
            "d",
            true,
        ),
        (
            json!({"result": {"statusUpdate": {"taskId": "e", "status": {"state": "TASK_STATE_WORKING"}}}}),
            "e",
            false,
        ),
        (json!({"result": {"artifactUpdate": {"taskId": "f", "artifact": {}}}}), "f", false),
        (json!({"result": {"message": {"taskId": "g", "parts": []}}}), "g", false),
        (json!({"result": {"kind": "message", "taskId": "h", "parts": []}}), "h", false),
        (json!({"result": {"kind": "task", "id": "i", "status": {"state": "input-required"}}}), "i", false),
    ];
    for (answer, task, is_final) in cases {
        let found = task_event(&answer).unwrap();
        assert_eq!(found.ids.task_id, task, "{answer}");
        assert_eq!(found.is_final(), is_final, "{answer}");
    }
    for nothing in [
        json!({"error": {"code": -32001, "message": "Task not found"}}),
        json!({"result": {"message": {"parts": []}}}),
        json!({"result": {"kind": "task", "status": {}}}),
        json!({"result": "text"}),
    ] {
        assert!(task_event(&nothing).is_none(), "{nothing}");
    }
}

#[test]
fn task_calls_name_their_task() {
    for (body, kind) in [
        (r#"{"jsonrpc":"2.0","id":1,"method":"GetTask","params":{"id":"t1"}}"#, CallKind::GetTask),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tasks/get","params":{"id":"t1","historyLength":2}}"#,
            CallKind::GetTask,
        ),
        (r#"{"jsonrpc":"2.0","id":1,"method":"CancelTask","params":{"id":"t1"}}"#, CallKind::CancelTask),
        (r#"{"jsonrpc":"2.0","id":1,"method":"tasks/cancel","params":{"id":"t1"}}"#, CallKind::CancelTask),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"SubscribeToTask","params":{"id":"t1"}}"#,
            CallKind::SubscribeToTask,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tasks/resubscribe","params":{"id":"t1"}}"#,
            CallKind::SubscribeToTask,
        ),
    ] {
        let call = parse_call(body.as_bytes(), None).unwrap();
        assert_eq!(call.kind, kind);
        assert_eq!(call.named_task(), Some("t1"));
    }
    let card = parse_call(br#"{"jsonrpc":"2.0","id":1,"method":"GetExtendedAgentCard"}"#, None).unwrap();
    assert_eq!(card.kind, CallKind::ExtendedCard);
    assert_eq!(card.named_task(), None);
}

#[test]
fn a_task_only_the_gateway_knows_answers_get_and_cancel_in_each_version() {
    let ids = TaskIds { task_id: "gw-t".into(), context_id: "gw-c".into() };
    let get =
        parse_call(br#"{"jsonrpc":"2.0","id":1,"method":"GetTask","params":{"id":"gw-t"}}"#, None).unwrap();
    let task = gateway_task(
        &get,
        &ids,
        GatewayTaskState::AuthRequired,
        Some(("m", "Authorize", Some(json!({"authorizationUrl": "u"})))),
        "t",
    );
    assert_eq!(task["id"], "gw-t");
    assert!(task.get("kind").is_none(), "a v1.0 task has no kind");
    assert_eq!(task["status"]["state"], "TASK_STATE_AUTH_REQUIRED");
    assert_eq!(task["status"]["message"]["parts"][1]["data"]["authChallenge"]["authorizationUrl"], "u");
    let cancel =
        parse_call(br#"{"jsonrpc":"2.0","id":1,"method":"tasks/cancel","params":{"id":"gw-t"}}"#, None)
            .unwrap();
    let task = gateway_task(&cancel, &ids, GatewayTaskState::Canceled, None, "t");
    assert_eq!(task["kind"], "task");
    assert_eq!(task["status"]["state"], "canceled");
    let subscribe =
        parse_call(br#"{"jsonrpc":"2.0","id":1,"method":"SubscribeToTask","params":{"id":"gw-t"}}"#, None)
            .unwrap();
    let event = gateway_task(
        &subscribe,
        &ids,
        GatewayTaskState::AuthRequired,
        Some(("m", "Authorized; continue", None)),
        "t",
    );
    assert_eq!(event["task"]["status"]["message"]["parts"][0]["text"], "Authorized; continue");
}
