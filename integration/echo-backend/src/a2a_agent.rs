//! An A2A echo agent (JSON-RPC, v0.3 and v1.0) for the in-task filter's
//! tests and the demo: it completes every message, telling what it
//! received — the bearer token's claims, the parts, whether any
//! `auth_credentials` reached it — and, for a message whose data part says
//! `"operation": "needs-bank-auth"`, answers with an auth-required task of
//! its own and no authorization URL (an agent-initiated challenge); one
//! whose data part says `"keepOpen": true` leaves its task open for more
//! (`input-required`). Streamed (`message/stream`, `SendStreamingMessage`),
//! the task comes first, working, then its status as the stream's last
//! event.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http_kit::{Reply, Request, Response};
use serde_json::{Value, json};

use crate::jwt_payload;

static NEXT_TASK: AtomicU64 = AtomicU64::new(1);

/// The agent card, pointing at `url`.
pub fn agent_card(url: &str) -> Value {
    json!({
        "name": "Transfer Agent",
        "description": "Moves money between accounts; needs the user's bank authorization for transfers.",
        "url": url,
        "version": "1.0.0",
        "protocolVersion": "0.3.0",
        "capabilities": {"streaming": true},
        "defaultInputModes": ["text/plain", "application/json"],
        "defaultOutputModes": ["text/plain"],
        "skills": [{"id": "transfer", "name": "Transfer", "description": "Transfer money", "tags": ["payments"]}]
    })
}

/// Answers an A2A JSON-RPC request.
pub fn reply(request: &Request) -> Reply {
    if request.path().ends_with("agent-card.json") || request.path() == "/.well-known/agent.json" {
        return Reply::Respond(Response::json(200, &agent_card("http://127.0.0.1/")));
    }
    let Ok(call) = serde_json::from_slice::<Value>(&request.body) else {
        return error(&Value::Null, -32700, "Parse error");
    };
    let id = call.get("id").cloned().unwrap_or(Value::Null);
    let method = call.get("method").and_then(Value::as_str).unwrap_or("");
    let v10 = matches!(method, "SendMessage" | "SendStreamingMessage");
    let streamed = matches!(method, "message/stream" | "SendStreamingMessage");
    let Some(message) = call.pointer("/params/message") else {
        return error(&id, -32602, "Invalid params");
    };
    let parts = message.get("parts").and_then(Value::as_array).cloned().unwrap_or_default();
    if parts.is_empty() {
        return error(&id, -32602, "Invalid params: a message needs at least one part");
    }
    let task_id = message
        .get("taskId")
        .and_then(Value::as_str)
        .map(String::from)
        .unwrap_or_else(|| format!("agent-task-{}", NEXT_TASK.fetch_add(1, Ordering::Relaxed)));
    let context_id = message.get("contextId").and_then(Value::as_str).unwrap_or("agent-context").to_string();
    let wants_auth =
        parts.iter().any(|part| part.pointer("/data/operation") == Some(&json!("needs-bank-auth")));
    let keep_open = parts.iter().any(|part| part.pointer("/data/keepOpen") == Some(&json!(true)));
    let claims = request
        .header("authorization")
        .and_then(|value| value.strip_prefix("Bearer "))
        .and_then(jwt_payload)
        .unwrap_or(Value::Null);
    let saw_credentials = request.body_str().contains("auth_credentials");
    let report = json!({"bearer_claims": claims, "parts_received": parts.len(), "auth_credentials_seen": saw_credentials,
                        "user_header": request.header("x-baton-user")});
    let (state, text) = if wants_auth {
        (
            if v10 { "TASK_STATE_AUTH_REQUIRED" } else { "auth-required" },
            "I need your bank's authorization to continue.",
        )
    } else if keep_open {
        (if v10 { "TASK_STATE_INPUT_REQUIRED" } else { "input-required" }, "Done. Anything else?")
    } else {
        (if v10 { "TASK_STATE_COMPLETED" } else { "completed" }, "Done.")
    };
    let task = if v10 {
        json!({"id": task_id, "contextId": context_id, "status": {"state": state, "message": {
            "role": "ROLE_AGENT", "messageId": format!("{task_id}-reply"), "parts": [{"text": text}, {"data": report}]}}})
    } else {
        json!({"kind": "task", "id": task_id, "contextId": context_id, "status": {"state": state, "message": {
            "kind": "message", "role": "agent", "messageId": format!("{task_id}-reply"),
            "parts": [{"kind": "text", "text": text}, {"kind": "data", "data": report}]}}})
    };
    if streamed {
        return stream(&id, v10, task);
    }
    let result = if v10 { json!({"task": task}) } else { task };
    Reply::Respond(Response::json(200, &json!({"jsonrpc": "2.0", "id": id, "result": result})))
}

/// The task as a stream: itself, working; then its status, final.
fn stream(id: &Value, v10: bool, task: Value) -> Reply {
    let mut working = task.clone();
    working["status"] = json!({"state": if v10 { "TASK_STATE_WORKING" } else { "working" }});
    let (task_id, context_id, status) = (&task["id"], &task["contextId"], &task["status"]);
    let (first, last) = if v10 {
        (
            json!({"task": working}),
            json!({"statusUpdate": {"taskId": task_id, "contextId": context_id, "status": status}}),
        )
    } else {
        (
            working,
            json!({"kind": "status-update", "taskId": task_id, "contextId": context_id, "status": status,
                   "final": true}),
        )
    };
    let events =
        [first, last].map(|result| json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string());
    crate::sse_reply(&[&events[0], &events[1]], Duration::from_millis(20))
}

fn error(id: &Value, code: i64, message: &str) -> Reply {
    Reply::Respond(Response::json(
        200,
        &json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}),
    ))
}
