//! A2A JSON-RPC, both protocol versions: recognising message calls, reading
//! and removing `auth_credentials`, and writing the auth-required answers.
//!
//! v0.3: methods `message/send` and `message/stream`, parts with `kind`,
//! roles `user`/`agent`, results `{"kind": "task", ...}` and streamed
//! `{"kind": "status-update", ...}`, state `auth-required`.
//! v1.0: methods `SendMessage` and `SendStreamingMessage`, parts without
//! `kind`, roles `ROLE_USER`/`ROLE_AGENT`, results `{"task": {...}}` and
//! streamed `{"statusUpdate": {...}}`, state `TASK_STATE_AUTH_REQUIRED`.

use baton_filter_kit::reply::Reply;
use serde_json::{Map, Value, json};

/// The data-part key that carries a credential (MuleSoft-compatible location
/// `params.message.parts[].data.auth_credentials`).
pub const CREDENTIALS_KEY: &str = "auth_credentials";

/// JSON-RPC error: invalid JSON.
pub const PARSE_ERROR: i64 = -32700;
/// JSON-RPC error: not a valid request object.
pub const INVALID_REQUEST: i64 = -32600;
/// JSON-RPC error: invalid method parameters.
pub const INVALID_PARAMS: i64 = -32602;
/// JSON-RPC error: server error (reserved range), used when the gateway
/// cannot complete the authorization (IdP unavailable).
pub const SERVER_ERROR: i64 = -32000;

/// The A2A protocol version of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// A2A 0.3.
    V03,
    /// A2A 1.0.
    V10,
}

/// What a call does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// Send a message, answer with a task or message.
    Send,
    /// Send a message, answer with an event stream.
    Stream,
    /// Anything else (`tasks/get`, `GetTask`, ...): not a message.
    Other,
}

/// A parsed JSON-RPC request.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The request `id` (echoed in the answer).
    pub id: Value,
    /// Protocol version.
    pub version: Version,
    /// What it does.
    pub kind: CallKind,
    /// The whole request, for rewriting.
    pub body: Map<String, Value>,
}

/// Why a body is not an acceptable call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcError {
    /// JSON-RPC error code.
    pub code: i64,
    /// Message for the client.
    pub message: String,
    /// The request id when it could be read.
    pub id: Value,
}

impl RpcError {
    fn new(code: i64, message: &str, id: Value) -> Self {
        Self { code, message: message.to_string(), id }
    }
}

/// Parses a JSON-RPC request body.
pub fn parse_call(body: &[u8], a2a_version_header: Option<&str>) -> Result<Call, RpcError> {
    let value: Value = crate::strict_json::parse(body).map_err(|_| {
        RpcError::new(
            PARSE_ERROR,
            "Parse error: the body is not valid JSON, or names an object member twice",
            Value::Null,
        )
    })?;
    let Value::Object(object) = value else {
        return Err(RpcError::new(
            INVALID_REQUEST,
            "Invalid Request: not a JSON-RPC request object",
            Value::Null,
        ));
    };
    let id = match object.get("id") {
        Some(id @ (Value::String(_) | Value::Number(_) | Value::Null)) => id.clone(),
        None => Value::Null,
        Some(_) => {
            return Err(RpcError::new(
                INVALID_REQUEST,
                "Invalid Request: id must be a string or number",
                Value::Null,
            ));
        }
    };
    if object.get("jsonrpc") != Some(&Value::String("2.0".into())) {
        return Err(RpcError::new(INVALID_REQUEST, "Invalid Request: jsonrpc must be \"2.0\"", id));
    }
    let Some(Value::String(method)) = object.get("method") else {
        return Err(RpcError::new(INVALID_REQUEST, "Invalid Request: no method", id));
    };
    let (kind, version) = match method.as_str() {
        "message/send" => (CallKind::Send, Version::V03),
        "message/stream" => (CallKind::Stream, Version::V03),
        "SendMessage" => (CallKind::Send, Version::V10),
        "SendStreamingMessage" => (CallKind::Stream, Version::V10),
        other => {
            let v10 = a2a_version_header.is_some_and(|v| v.trim().starts_with('1'))
                || other.chars().next().is_some_and(char::is_uppercase);
            (CallKind::Other, if v10 { Version::V10 } else { Version::V03 })
        }
    };
    if kind != CallKind::Other {
        let message = object.get("params").and_then(|p| p.get("message"));
        let valid =
            message.and_then(Value::as_object).is_some_and(|m| m.get("parts").is_some_and(Value::is_array));
        if !valid {
            return Err(RpcError::new(
                INVALID_PARAMS,
                "Invalid params: params.message with parts is required",
                id,
            ));
        }
    }
    Ok(Call { id, version, kind, body: object })
}

impl Call {
    /// `params.message`.
    pub fn message(&self) -> Option<&Map<String, Value>> {
        self.body.get("params")?.get("message")?.as_object()
    }

    fn message_mut(&mut self) -> Option<&mut Map<String, Value>> {
        self.body.get_mut("params")?.get_mut("message")?.as_object_mut()
    }

    /// The message's `taskId`, if it continues a task.
    pub fn task_id(&self) -> Option<&str> {
        self.message()?.get("taskId")?.as_str()
    }

    /// The message's `contextId`.
    pub fn context_id(&self) -> Option<&str> {
        self.message()?.get("contextId")?.as_str()
    }

    /// The values at `pointer` in every data part that has it (an agent may
    /// act on any part, whatever its position or `kind`).
    pub fn data_at<'a>(&'a self, pointer: &'a str) -> impl Iterator<Item = &'a Value> {
        self.data_parts().filter_map(move |data| data.pointer(pointer))
    }

    /// The values at `pointer` in the message's metadata and the request's
    /// (`params.metadata`), where an agent may read either.
    pub fn metadata_at<'a>(&'a self, pointer: &'a str) -> impl Iterator<Item = &'a Value> {
        let message = self.message().and_then(|m| m.get("metadata"));
        let request = self.body.get("params").and_then(|p| p.get("metadata"));
        message.into_iter().chain(request).filter_map(move |metadata| metadata.pointer(pointer))
    }

    fn data_parts(&self) -> impl Iterator<Item = &Value> {
        self.message()
            .and_then(|m| m.get("parts"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|part| part.get("data"))
    }

    /// Every credential object in the message: in data parts, and in the
    /// message metadata.
    pub fn credentials(&self) -> Vec<&Map<String, Value>> {
        let mut found: Vec<&Map<String, Value>> =
            self.data_parts().filter_map(|data| data.get(CREDENTIALS_KEY)?.as_object()).collect();
        if let Some(in_metadata) = self
            .message()
            .and_then(|m| m.get("metadata"))
            .and_then(|m| m.get(CREDENTIALS_KEY))
            .and_then(Value::as_object)
        {
            found.push(in_metadata);
        }
        found
    }

    /// Whether any `auth_credentials` member is present (of any type).
    pub fn mentions_credentials(&self) -> bool {
        self.data_parts().any(|data| data.get(CREDENTIALS_KEY).is_some())
            || self
                .message()
                .and_then(|m| m.get("metadata"))
                .is_some_and(|m| m.get(CREDENTIALS_KEY).is_some())
    }

    /// Removes every credential from the message so none reaches the agent.
    /// A data part holding only the credential is dropped; if that leaves
    /// no part, a text part says the gateway took the credential (agents
    /// reject messages without parts).
    pub fn strip_credentials(&mut self) {
        let version = self.version;
        let Some(message) = self.message_mut() else {
            return;
        };
        if let Some(Value::Object(metadata)) = message.get_mut("metadata") {
            metadata.remove(CREDENTIALS_KEY);
        }
        if let Some(Value::Array(parts)) = message.get_mut("parts") {
            parts.retain_mut(|part| {
                let Some(Value::Object(data)) = part.get_mut("data") else {
                    return true;
                };
                if data.remove(CREDENTIALS_KEY).is_none() {
                    return true;
                }
                !data.is_empty()
            });
            if parts.is_empty() {
                parts.push(text_part(version, "Authorization was provided to the gateway."));
            }
        }
    }

    /// The request as bytes (after rewriting).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.body).unwrap_or_default()
    }
}

fn text_part(version: Version, text: &str) -> Value {
    match version {
        Version::V03 => json!({"kind": "text", "text": text}),
        Version::V10 => json!({"text": text}),
    }
}

fn data_part(version: Version, data: Value) -> Value {
    match version {
        Version::V03 => json!({"kind": "data", "data": data}),
        Version::V10 => json!({"data": data}),
    }
}

/// The ids of the task a challenge is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskIds {
    /// Task id.
    pub task_id: String,
    /// Context id.
    pub context_id: String,
}

/// The task status of an auth-required answer, with its message.
fn auth_required_status(
    version: Version,
    ids: &TaskIds,
    message_id: &str,
    text: &str,
    challenge: Value,
    timestamp: &str,
) -> Value {
    let parts = vec![text_part(version, text), data_part(version, json!({"authChallenge": challenge}))];
    match version {
        Version::V03 => json!({
            "state": "auth-required",
            "message": {"kind": "message", "role": "agent", "messageId": message_id,
                        "taskId": ids.task_id, "contextId": ids.context_id, "parts": parts},
            "timestamp": timestamp
        }),
        Version::V10 => json!({
            "state": "TASK_STATE_AUTH_REQUIRED",
            "message": {"role": "ROLE_AGENT", "messageId": message_id,
                        "taskId": ids.task_id, "contextId": ids.context_id, "parts": parts},
            "timestamp": timestamp
        }),
    }
}

/// An auth-required answer: the JSON-RPC response for a send call, or the
/// single final event of an event stream for a streaming call.
#[derive(Debug, Clone, PartialEq)]
pub struct Challenge {
    /// The JSON-RPC `result`.
    pub result: Value,
    /// Whether to answer as `text/event-stream`.
    pub stream: bool,
}

/// Builds the auth-required answer to `call`.
pub fn challenge_answer(
    call: &Call,
    ids: &TaskIds,
    message_id: &str,
    text: &str,
    challenge: Value,
    timestamp: &str,
) -> Challenge {
    let status = auth_required_status(call.version, ids, message_id, text, challenge, timestamp);
    let stream = call.kind == CallKind::Stream;
    let result = match (call.version, stream) {
        (Version::V03, false) => {
            json!({"kind": "task", "id": ids.task_id, "contextId": ids.context_id, "status": status})
        }
        (Version::V10, false) => {
            json!({"task": {"id": ids.task_id, "contextId": ids.context_id, "status": status}})
        }
        (Version::V03, true) => {
            json!({"kind": "status-update", "taskId": ids.task_id, "contextId": ids.context_id,
                                      "status": status, "final": true})
        }
        (Version::V10, true) => {
            json!({"statusUpdate": {"taskId": ids.task_id, "contextId": ids.context_id, "status": status}})
        }
    };
    Challenge { result, stream }
}

/// The body of a JSON-RPC response.
pub fn response_body(id: &Value, result: &Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string()
}

/// The body of an event stream holding one event.
pub fn event_stream_body(id: &Value, result: &Value) -> String {
    format!("data: {}\n\n", response_body(id, result))
}

/// The body of a JSON-RPC error response.
pub fn error_body(id: &Value, code: i64, message: &str) -> String {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}).to_string()
}

/// JSON-RPC error answers.
pub trait RpcReply {
    /// A JSON-RPC error with HTTP `status`, not cached.
    fn rpc_error(status: u16, id: &Value, code: i64, message: &str) -> Self;
}

impl RpcReply for Reply {
    fn rpc_error(status: u16, id: &Value, code: i64, message: &str) -> Self {
        Reply {
            status,
            headers: vec![("content-type", "application/json".into()), ("cache-control", "no-store".into())],
            body: error_body(id, code, message),
        }
    }
}

/// An agent's answer that asks for authorization without saying where to
/// get it: the task it is about, so the gateway can fill the challenge in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentChallenge {
    /// The task and context.
    pub ids: TaskIds,
    /// Protocol version of the answer.
    pub version: Version,
}

/// Finds an auth-required task in an agent's JSON-RPC answer whose status
/// message carries no `authChallenge.authorizationUrl`.
pub fn agent_challenge(response: &Value) -> Option<AgentChallenge> {
    let result = response.get("result")?;
    let (task, version) = match result.get("task") {
        Some(task) => (task, Version::V10),
        None if result.get("kind").and_then(Value::as_str) == Some("task") => (result, Version::V03),
        None => return None,
    };
    let status = task.get("status")?;
    let state = status.get("state")?.as_str()?;
    if state != "auth-required" && state != "TASK_STATE_AUTH_REQUIRED" {
        return None;
    }
    let has_url =
        status.get("message").and_then(|m| m.get("parts")).and_then(Value::as_array).is_some_and(|parts| {
            parts.iter().any(|part| {
                part.pointer("/data/authChallenge/authorizationUrl").is_some_and(Value::is_string)
            })
        });
    if has_url {
        return None;
    }
    let ids = TaskIds {
        task_id: task.get("id")?.as_str()?.to_string(),
        context_id: task.get("contextId").and_then(Value::as_str).unwrap_or("").to_string(),
    };
    Some(AgentChallenge { ids, version })
}

/// Adds the challenge to an agent's auth-required answer (found by
/// [`agent_challenge`]): a data part in the status message, which is
/// created (or given a list of parts) when the agent sent none.
pub fn enrich_agent_challenge(
    response: &mut Value,
    found: &AgentChallenge,
    message_id: &str,
    challenge: Value,
) {
    let task = match found.version {
        Version::V10 => response.pointer_mut("/result/task"),
        Version::V03 => response.pointer_mut("/result"),
    };
    let Some(Value::Object(task)) = task else {
        return;
    };
    let Some(Value::Object(status)) = task.get_mut("status") else {
        return;
    };
    if !status.get("message").is_some_and(Value::is_object) {
        let message = match found.version {
            Version::V03 => json!({"kind": "message", "role": "agent", "messageId": message_id,
                                   "taskId": found.ids.task_id, "contextId": found.ids.context_id, "parts": []}),
            Version::V10 => json!({"role": "ROLE_AGENT", "messageId": message_id,
                                   "taskId": found.ids.task_id, "contextId": found.ids.context_id, "parts": []}),
        };
        status.insert("message".into(), message);
    }
    // Likewise a message without a list of parts (malformed, but agents
    // send them) gets one: otherwise the challenge would be dropped while
    // the gateway had issued a state for it.
    if let Some(Value::Object(message)) = status.get_mut("message")
        && !message.get("parts").is_some_and(Value::is_array)
    {
        message.insert("parts".into(), Value::Array(Vec::new()));
    }
    if let Some(Value::Array(parts)) = status.get_mut("message").and_then(|m| m.get_mut("parts")) {
        // Drop an incomplete challenge the agent may have sent.
        parts.retain(|part| part.pointer("/data/authChallenge").is_none());
        parts.push(data_part(found.version, json!({"authChallenge": challenge})));
    }
}

#[cfg(test)]
#[path = "a2a_tests.rs"]
mod tests;
